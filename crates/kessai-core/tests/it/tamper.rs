//! Tampered, misdirected, stale and forged tokens are refused, each with
//! its own error.

use kessai_core::base64url;
use kessai_core::jws::{JwsError, Part};
use kessai_core::keys::{KeyDirectory, SigningKey, Validity};
use kessai_core::limits::{CLOCK_SKEW_S, MAX_TOKEN_BYTES};
use kessai_core::messages::bill;
use kessai_core::random::SeededRandom;
use kessai_core::samples;
use kessai_core::time::Timestamp;

use crate::fixtures::{NOW, World, everyone, party, verify_as};

/// Which part of the token byte `i` is in.
fn part_of(token: &str, i: usize) -> Part {
    let first = token.find('.').unwrap();
    let last = token.rfind('.').unwrap();
    if i < first {
        Part::Header
    } else if i < last {
        Part::Payload
    } else {
        Part::Signature
    }
}

fn allowed(part: Part, e: &JwsError) -> bool {
    use JwsError::*;
    match part {
        Part::Header => matches!(
            e,
            Malformed
                | BadBase64(Part::Header)
                | BadHeader(_)
                | UnsupportedAlgorithm(_)
                | WrongType { .. }
                | UnknownKey(_)
        ),
        // The signature is checked over the raw bytes before the payload is
        // decoded, so any change to the payload is a bad signature.
        Part::Payload => matches!(e, Malformed | BadSignature),
        Part::Signature => matches!(e, Malformed | BadBase64(Part::Signature) | BadSignature),
    }
}

#[test]
fn flipping_any_single_byte_of_any_kind_is_refused() {
    let mut w = World::new(10);
    let tokens = w.tokens();
    for (kind, token) in tokens.all() {
        verify_as(&w, kind, token).unwrap();
        for i in 0..token.len() {
            for mask in [0x01u8, 0x20] {
                let mut bytes = token.as_bytes().to_vec();
                bytes[i] ^= mask;
                let Ok(tampered) = String::from_utf8(bytes) else { continue };
                let err = verify_as(&w, kind, &tampered).expect_err("tampered token verified");
                let part = part_of(token, i);
                assert!(allowed(part, &err), "{kind}: byte {i} ({part:?}) ^ {mask:#x} gave {err:?}");
                assert!(!err.to_string().is_empty());
            }
        }
    }
}

#[test]
fn a_token_of_one_kind_is_never_accepted_as_another() {
    let mut w = World::new(11);
    let tokens = w.tokens();
    let all = everyone(&w);
    let mut open = World::new(11);
    open.store_keys = all.clone();
    open.center_keys = all;
    for (kind, token) in tokens.all() {
        verify_as(&open, kind, token).unwrap();
        for (other, _) in tokens.all() {
            if other == kind {
                continue;
            }
            match verify_as(&open, other, token) {
                Err(JwsError::WrongType { found, .. }) => assert!(found.contains(&kind.replace('_', "-"))),
                r => panic!("{kind} presented as {other} gave {r:?}"),
            }
        }
    }
}

#[test]
fn expired_and_not_yet_valid_tokens_are_refused() {
    let mut w = World::new(12);
    let tokens = w.tokens();
    let exp = NOW.unix_s() + samples::LIFETIME_S;
    for (kind, token) in tokens.all() {
        w.clock.set(Timestamp::from_unix_s(exp + CLOCK_SKEW_S));
        verify_as(&w, kind, token).unwrap();
        w.clock.set(Timestamp::from_unix_s(exp + CLOCK_SKEW_S + 1));
        assert!(matches!(verify_as(&w, kind, token), Err(JwsError::Expired { .. })), "{kind}");
        w.clock.set(Timestamp::from_unix_s(NOW.unix_s() - CLOCK_SKEW_S - 1));
        assert!(matches!(verify_as(&w, kind, token), Err(JwsError::NotYetValid { .. })), "{kind}");
        w.clock.set(NOW);
    }
}

#[test]
fn not_before_is_honoured() {
    let mut w = World::new(13);
    let (claims, b) = samples::bill(&mut w.rng, NOW).unwrap();
    let later = Timestamp::from_unix_s(NOW.unix_s() + 300);
    let token = bill::sign(&claims.with_not_before(later).unwrap(), &b, &w.mall_key).unwrap();
    assert!(matches!(
        bill::verify(&token, &w.store_keys, &w.clock, &kessai_core::ids::PartyId::parse("center").unwrap()),
        Err(JwsError::NotYetValid { .. })
    ));
    w.clock.set(later);
    bill::verify(&token, &w.store_keys, &w.clock, &kessai_core::ids::PartyId::parse("center").unwrap()).unwrap();
}

#[test]
fn unknown_revoked_and_retired_keys_are_refused() {
    let mut w = World::new(14);
    let tokens = w.tokens();
    let empty = KeyDirectory::new();
    assert!(matches!(
        bill::verify(&tokens.bill, &empty, &w.clock, &kessai_core::ids::PartyId::parse("center").unwrap()),
        Err(JwsError::UnknownKey(_))
    ));
    // Signed by a key nobody registered, claiming the mall's identity.
    let mut rng = SeededRandom::new(99);
    let stranger = SigningKey::generate(&mut rng);
    let (c, b) = samples::bill(&mut rng, NOW).unwrap();
    let forged = bill::sign(&c, &b, &stranger).unwrap();
    assert!(matches!(
        bill::verify(&forged, &w.store_keys, &w.clock, &kessai_core::ids::PartyId::parse("center").unwrap()),
        Err(JwsError::UnknownKey(_))
    ));

    let mut retired = w.store_keys.clone();
    let window = Validity { not_before: None, not_after: Some(Timestamp::from_unix_s(NOW.unix_s() - 1)) };
    retired.insert(party(samples::MALL), w.mall_key.public(), window).unwrap();
    assert!(matches!(
        bill::verify(&tokens.bill, &retired, &w.clock, &kessai_core::ids::PartyId::parse("center").unwrap()),
        Err(JwsError::KeyNotValidNow(_))
    ));

    w.store_keys.revoke(w.mall_key.kid()).unwrap();
    assert!(matches!(
        bill::verify(&tokens.bill, &w.store_keys, &w.clock, &kessai_core::ids::PartyId::parse("center").unwrap()),
        Err(JwsError::RevokedKey(_))
    ));
}

#[test]
fn a_key_signing_for_another_party_is_refused() {
    let mut w = World::new(15);
    // The mall's key registered to the mall, but the token says the center
    // issued it: an offer forged by a store.
    let (c, o) = samples::offer(&mut w.rng, NOW, "bill").unwrap();
    let forged = kessai_core::messages::offer::sign(&c, &o, &w.mall_key).unwrap();
    let all = everyone(&w);
    assert!(matches!(
        kessai_core::messages::offer::verify(&forged, &all, &w.clock),
        Err(JwsError::IssuerMismatch { .. })
    ));
}

#[test]
fn oversize_tokens_are_refused_before_parsing() {
    let w = World::new(16);
    let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
    assert!(matches!(
        bill::verify(&huge, &w.store_keys, &w.clock, &kessai_core::ids::PartyId::parse("center").unwrap()),
        Err(JwsError::TooLarge { .. })
    ));
}

/// Builds a token by hand, to say what our signer never would.
fn raw_token(header: &str, payload: &str, key: &SigningKey) -> String {
    let input = format!("{}.{}", base64url::encode(header.as_bytes()), base64url::encode(payload.as_bytes()));
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", base64url::encode(&sig))
}

fn bill_payload(w: &mut World) -> serde_json::Value {
    let mut w2 = World::new(17);
    std::mem::swap(&mut w.rng, &mut w2.rng);
    let token = w2.tokens().bill;
    kessai_core::jws::inspect_unverified(&token).unwrap().1
}

#[test]
fn other_algorithms_and_alg_none_are_refused() {
    let mut w = World::new(18);
    let payload = bill_payload(&mut w).to_string();
    let kid = w.mall_key.kid().to_string();
    for alg in ["none", "HS256", "RS256", "ES256", "Ed25519", "EdDSA ", "eddsa"] {
        let header = format!(r#"{{"alg":"{alg}","kid":"{kid}","typ":"kessai-bill+jwt"}}"#);
        let signed = raw_token(&header, &payload, &w.mall_key);
        let unsigned = format!("{}.", signed.rsplit_once('.').unwrap().0);
        for token in [signed, unsigned] {
            match bill::verify(&token, &w.store_keys, &w.clock, &kessai_core::ids::PartyId::parse("center").unwrap()) {
                Err(JwsError::UnsupportedAlgorithm(a)) => assert_eq!(a, alg),
                r => panic!("alg {alg:?} gave {r:?}"),
            }
        }
    }
    let good = format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"kessai-bill+jwt"}}"#);
    bill::verify(
        &raw_token(&good, &payload, &w.mall_key),
        &w.store_keys,
        &w.clock,
        &kessai_core::ids::PartyId::parse("center").unwrap(),
    )
    .unwrap();
}

#[test]
fn headers_and_payloads_we_never_write_are_refused() {
    let mut w = World::new(19);
    let payload = bill_payload(&mut w);
    let kid = w.mall_key.kid().to_string();
    let header = format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"kessai-bill+jwt"}}"#);
    let check = |h: &str, p: &str| {
        bill::verify(
            &raw_token(h, p, &w.mall_key),
            &w.store_keys,
            &w.clock,
            &kessai_core::ids::PartyId::parse("center").unwrap(),
        )
    };

    let crit = format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"kessai-bill+jwt","crit":["exp"]}}"#);
    assert!(matches!(check(&crit, &payload.to_string()), Err(JwsError::CriticalHeader)));
    let extra = format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"kessai-bill+jwt","jku":"https://x"}}"#);
    assert!(matches!(check(&extra, &payload.to_string()), Err(JwsError::BadHeader(_))));
    let no_typ = format!(r#"{{"alg":"EdDSA","kid":"{kid}"}}"#);
    assert!(matches!(check(&no_typ, &payload.to_string()), Err(JwsError::WrongType { .. })));

    let mut p = payload.clone();
    p["admin"] = true.into();
    assert!(matches!(check(&header, &p.to_string()), Err(JwsError::BadPayload(_))));
    let mut p = payload.clone();
    p["bill"]["total"]["amount_minor"] = 1.into();
    assert!(matches!(check(&header, &p.to_string()), Err(JwsError::BadPayload(m)) if m.contains("total")));
    let mut p = payload.clone();
    p["bill"]["store"] = "another-mall".into();
    assert!(matches!(check(&header, &p.to_string()), Err(JwsError::InvalidMessage(_))));
    let mut p = payload.clone();
    p["iss"] = "another-mall".into();
    assert!(matches!(check(&header, &p.to_string()), Err(JwsError::IssuerMismatch { .. })));
    let mut p = payload.clone();
    p["exp"] = (NOW.unix_s() + 2 * 86_400).into();
    assert!(matches!(check(&header, &p.to_string()), Err(JwsError::BadClaims(_))));
    let dup = payload.to_string().replacen("{", r#"{"iss":"kessai-mall","#, 1);
    assert!(matches!(check(&header, &dup), Err(JwsError::BadPayload(m)) if m.contains("duplicate")));
    let mut p = payload.clone();
    p.as_object_mut().unwrap().remove("jti");
    assert!(matches!(check(&header, &p.to_string()), Err(JwsError::BadPayload(m)) if m.contains("jti")));
    let mut p = payload.clone();
    p["bill"]["lines"][0]["amount"]["amount_minor"] = (-5).into();
    assert!(matches!(check(&header, &p.to_string()), Err(JwsError::BadPayload(_))));
}

/// L6: a bill names the center it is for. Another center that knows the
/// store's key refuses it; a bill naming none is refused by everyone (a
/// wallet that only reads it too); a kind that names no audience may not
/// carry one.
#[test]
fn a_bill_is_for_its_one_center() {
    let mut w = World::new(21);
    let payload = bill_payload(&mut w);
    let kid = w.mall_key.kid().to_string();
    let header = format!(r#"{{"alg":"EdDSA","kid":"{kid}","typ":"kessai-bill+jwt"}}"#);
    assert_eq!(payload["aud"], "center", "{payload}");
    let center = party("center");
    bill::verify(&raw_token(&header, &payload.to_string(), &w.mall_key), &w.store_keys, &w.clock, &center).unwrap();

    // The same bill at another center that shares the store's key.
    let token = raw_token(&header, &payload.to_string(), &w.mall_key);
    match bill::verify(&token, &w.store_keys, &w.clock, &party("center-b")) {
        Err(JwsError::WrongAudience { expected, found }) => {
            assert_eq!((expected.as_str(), found.as_str()), ("center-b", "center"))
        }
        r => panic!("{r:?}"),
    }
    // Addressed to another center, or to none: refused here; naming none,
    // refused by a reader too.
    let mut other = payload.clone();
    other["aud"] = "center-b".into();
    let token = raw_token(&header, &other.to_string(), &w.mall_key);
    assert!(matches!(bill::verify(&token, &w.store_keys, &w.clock, &center), Err(JwsError::WrongAudience { .. })));
    let mut none = payload.clone();
    none.as_object_mut().unwrap().remove("aud");
    let token = raw_token(&header, &none.to_string(), &w.mall_key);
    assert!(matches!(bill::verify(&token, &w.store_keys, &w.clock, &center), Err(JwsError::MissingAudience)));
    let read = kessai_core::jws::verify::<bill::Bill>(&token, &w.store_keys, &w.clock);
    assert!(matches!(read, Err(JwsError::MissingAudience)), "{read:?}");
    let mut twice = payload.to_string();
    twice.insert_str(1, r#""aud":"center-b","#);
    let token = raw_token(&header, &twice, &w.mall_key);
    assert!(
        matches!(bill::verify(&token, &w.store_keys, &w.clock, &center), Err(JwsError::BadPayload(m)) if m.contains("duplicate"))
    );

    // Signing refuses both mistakes before anything is signed.
    let (claims, b) = samples::bill(&mut w.rng, NOW).unwrap();
    assert_eq!(claims.audience(), Some(&center));
    let jti = kessai_core::ids::MessageId::generate(&mut w.rng);
    let unaddressed = kessai_core::jws::Claims::for_lifetime(party("kessai-mall"), jti, NOW, 600).unwrap();
    assert!(matches!(bill::sign(&unaddressed, &b, &w.mall_key), Err(JwsError::MissingAudience)));
    let (offer_claims, offer) = samples::offer(&mut w.rng, NOW, "x.y.z").unwrap();
    let addressed = offer_claims.with_audience(party("kessai-mall"));
    let r = kessai_core::messages::offer::sign(&addressed, &offer, &w.center_key);
    assert!(matches!(r, Err(JwsError::BadClaims(_))), "{r:?}");
}
