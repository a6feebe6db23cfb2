//! The JWS compact parser and every message verifier: any string is read
//! or refused without a panic, and none verifies against keys that never
//! signed it (a forgery would need Ed25519 broken).
#![no_main]

use std::sync::OnceLock;

use kessai_core::ids::PartyId;
use kessai_core::jws;
use kessai_core::keys::{KeyDirectory, SigningKey, Validity};
use kessai_core::messages::{bill, completion, offer, receipt, refund, value_update};
use kessai_core::random::SeededRandom;
use kessai_core::time::{FixedClock, Timestamp};
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static KeyDirectory {
    static KEYS: OnceLock<KeyDirectory> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut dir = KeyDirectory::new();
        let mut rng = SeededRandom::new(7);
        for party in ["kessai-mall", "center"] {
            let key = SigningKey::generate(&mut rng);
            dir.insert(PartyId::parse(party).expect("party"), key.public(), Validity::always()).expect("insert");
        }
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let _ = jws::inspect_unverified(token);
    let clock = FixedClock::new(Timestamp::from_unix_s(1_800_000_000));
    let keys = keys();
    let center = PartyId::parse("center").expect("party");
    assert!(bill::verify(token, keys, &clock, &center).is_err(), "a bill verified that no key signed");
    assert!(offer::verify(token, keys, &clock).is_err());
    assert!(completion::verify(token, keys, &clock).is_err());
    assert!(receipt::verify(token, keys, &clock).is_err());
    assert!(refund::verify(token, keys, &clock, &center).is_err());
    assert!(value_update::verify(token, keys, &clock).is_err());
});
