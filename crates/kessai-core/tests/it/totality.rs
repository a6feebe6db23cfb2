//! Every parse function is total: arbitrary bytes, and arbitrary damage to
//! valid tokens, give an error and never a panic.

use proptest::prelude::*;

use kessai_core::messages::{bill, completion, offer, receipt, refund, value_update};
use kessai_core::{jwk, jws, keyfile};

use crate::fixtures::{World, verify_as};

fn every_parser(w: &World, text: &str, bytes: &[u8]) {
    for kind in ["bill", "offer", "completion", "receipt", "value_update", "refund"] {
        let _ = verify_as(w, kind, text);
    }
    let _ = jws::inspect_unverified(text);
    let _ = jwk::parse_jwk(bytes);
    let _ = jwk::parse_jwks(bytes);
    let _ = keyfile::decode(text, None);
    let _ = keyfile::decode(text, Some(&keyfile::Passphrase::new("p".into())));
    let _ = serde_json::from_slice::<kessai_core::Money>(bytes);
    let _ = serde_json::from_slice::<kessai_core::ids::CardId>(bytes);
    let _ = serde_json::from_slice::<bill::Bill>(bytes);
    let _ = serde_json::from_slice::<offer::Offer>(bytes);
    let _ = serde_json::from_slice::<completion::Completion>(bytes);
    let _ = serde_json::from_slice::<receipt::Receipt>(bytes);
    let _ = serde_json::from_slice::<value_update::ValueUpdate>(bytes);
    let _ = serde_json::from_slice::<refund::RefundRequest>(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let w = World::new(1);
        let text = String::from_utf8_lossy(&bytes);
        every_parser(&w, &text, &bytes);
    }

    #[test]
    fn damaged_tokens_never_panic_and_never_verify(
        kind in 0usize..6,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 1..6),
    ) {
        let mut w = World::new(2);
        let tokens = w.tokens();
        let (name, token) = tokens.all()[kind];
        let mut bytes = token.as_bytes().to_vec();
        for (at, op, b) in edits {
            let i = at.index(bytes.len().max(1));
            match op {
                0 if !bytes.is_empty() => bytes[i] = b,
                1 if !bytes.is_empty() => { bytes.remove(i); }
                2 => bytes.insert(i.min(bytes.len()), b),
                _ => bytes.truncate(i),
            }
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        every_parser(&w, &text, &bytes);
        if text != token {
            prop_assert!(verify_as(&w, name, &text).is_err(), "damaged {} verified", name);
        }
    }
}
