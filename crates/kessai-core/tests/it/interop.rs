//! A JOSE implementation that is not ours (PyJWT on pyca/cryptography)
//! verifies a token of every kind against our JWKS.

use std::io::Write;
use std::process::{Command, Stdio};

use kessai_core::keys::{SigningKey, Validity};
use kessai_core::messages::{bill, completion, offer, receipt, refund, value_update};
use kessai_core::random::OsRandom;
use kessai_core::samples;
use kessai_core::time::{Clock, SystemClock};

use crate::fixtures::party;

#[test]
fn pyjwt_verifies_every_kind_against_our_jwks() {
    let Some(python) = kessai_testkit::external_tool("KESSAI_PYTHON", None, "Python venv with PyJWT") else { return };
    // Real time: PyJWT checks exp/iat against its own clock.
    let now = SystemClock.now();
    let mut rng = OsRandom;
    let (mall, center) = (SigningKey::generate(&mut rng), SigningKey::generate(&mut rng));
    let mut keys = kessai_core::keys::KeyDirectory::new();
    keys.insert(party(samples::MALL), mall.public(), Validity::always()).unwrap();
    keys.insert(party(samples::CENTER), center.public(), Validity::always()).unwrap();

    let (c, b) = samples::bill(&mut rng, now).unwrap();
    let bill_t = bill::sign(&c, &b, &mall).unwrap();
    let (c, o) = samples::offer(&mut rng, now, &bill_t).unwrap();
    let offer_t = offer::sign(&c, &o, &center).unwrap();
    let (c, d) = samples::completion(&mut rng, now, &o).unwrap();
    let done_t = completion::sign(&c, &d, &center).unwrap();
    let (c, r) = samples::receipt(&mut rng, now, &d, &done_t).unwrap();
    let receipt_t = receipt::sign(&c, &r, &mall).unwrap();
    let (c, v) = samples::value_update(&mut rng, now).unwrap();
    let update_t = value_update::sign(&c, &v, &center).unwrap();
    let (c, r) = samples::refund(&mut rng, now).unwrap();
    let refund_t = refund::sign(&c, &r, &mall).unwrap();
    // A member's registration and payment instruction (#12), signed with
    // the member's key.
    let member_key = SigningKey::generate(&mut rng);
    let member = party("m-0123456789abcdef");
    keys.insert(member.clone(), member_key.public(), Validity::always()).unwrap();
    let claims = |rng: &mut OsRandom| {
        kessai_core::jws::Claims::for_lifetime(member.clone(), kessai_core::ids::MessageId::generate(rng), now, 300)
            .unwrap()
    };
    use kessai_core::messages::{instruction, registration};
    let registration_t = registration::sign(
        &claims(&mut rng),
        &registration::Registration::new(registration::RegistrationDraft {
            member: member.clone(),
            activation_code: "K7QX-2M9P-ZT4R-8D1A".into(),
            details: registration::MemberDetails::General {
                name: kessai_core::messages::DisplayText::parse("Hanako Yamada").unwrap(),
                address: kessai_core::messages::DisplayText::parse("Tokyo").unwrap(),
                birth_date: "1990-04-01".into(),
            },
            key: kessai_core::jwk::Ed25519Jwk::new(member_key.public().as_bytes(), None, None),
        })
        .unwrap(),
        &member_key,
    )
    .unwrap();
    let instruction_t = instruction::sign(
        &claims(&mut rng).with_audience(party(samples::CENTER)),
        &instruction::PaymentInstruction::new(instruction::InstructionDraft {
            member: member.clone(),
            card_id: Some(kessai_core::ids::CardId::from_bytes([1; 8])),
            prepaid_id: None,
            bill_hash: kessai_core::digest::Sha256Digest::of(bill_t.as_bytes()),
            amount: b.total(),
            store: party(samples::MALL).as_str().parse().unwrap(),
        })
        .unwrap(),
        &member_key,
    )
    .unwrap();
    // A payment claim and the center's statement of it (#19).
    use kessai_core::messages::claim;
    let line = claim::ClaimLine { settlement_id: o.settlement_id().clone(), amount: b.total() };
    let mall_claims = |rng: &mut OsRandom, who: &str| {
        kessai_core::jws::Claims::for_lifetime(party(who), kessai_core::ids::MessageId::generate(rng), now, 300)
            .unwrap()
    };
    let claim_t = claim::sign(
        &mall_claims(&mut rng, samples::MALL).with_audience(party(samples::CENTER)),
        &claim::PaymentClaim::new(claim::PaymentClaimDraft {
            claim_id: kessai_core::ids::ClaimId::parse("claim-1").unwrap(),
            store: samples::MALL.parse().unwrap(),
            payee: samples::MEMBER.parse().unwrap(),
            cutoff: now,
            currency: b.total().currency(),
            lines: vec![line.clone()],
        })
        .unwrap(),
        &mall,
    )
    .unwrap();
    let fee = kessai_core::Money::new(100, b.total().currency()).unwrap();
    let net = kessai_core::Money::new(b.total().amount_minor() - 100, b.total().currency()).unwrap();
    let statement_t = claim::sign_statement(
        &mall_claims(&mut rng, samples::CENTER),
        &claim::ClaimStatement::new(claim::ClaimStatementDraft {
            claim_id: kessai_core::ids::ClaimId::parse("claim-1").unwrap(),
            payee: samples::MEMBER.parse().unwrap(),
            cutoff: now,
            lines: vec![claim::AcceptedLine { settlement_id: line.settlement_id, amount: b.total(), fee }],
            amount: net,
            fees: fee,
            accepted_at: now,
        })
        .unwrap(),
        &center,
    )
    .unwrap();
    let tokens = serde_json::json!({
        "bill": bill_t, "offer": offer_t, "completion": done_t, "receipt": receipt_t, "value_update": update_t,
        "refund": refund_t, "registration": registration_t, "instruction": instruction_t,
        "claim": claim_t, "claim_statement": statement_t,
    });
    let mut tampered = bill_t.clone().into_bytes();
    let mid = tampered.len() / 2;
    tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
    let request = serde_json::json!({
        "jwks": keys.jwks(None),
        "tokens": tokens,
        "typ": {
            "bill": "kessai-bill+jwt", "offer": "kessai-offer+jwt", "completion": "kessai-completion+jwt",
            "receipt": "kessai-receipt+jwt", "value_update": "kessai-value-update+jwt",
            "refund": "kessai-refund+jwt", "registration": "kessai-registration+jwt",
            "instruction": "kessai-payment-instruction+jwt",
            "claim": "kessai-payment-claim+jwt", "claim_statement": "kessai-claim-statement+jwt",
        },
        "tampered": String::from_utf8(tampered).unwrap(),
        "audience": samples::CENTER,
    });

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/verify_pyjwt.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "PyJWT refused our tokens: {}", String::from_utf8_lossy(&out.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (kind, token) in tokens.as_object().unwrap() {
        let claims = &seen["verified"][kind];
        let (_, ours) = kessai_core::jws::inspect_unverified(token.as_str().unwrap()).unwrap();
        assert_eq!(claims, &ours, "PyJWT's view of the {kind} payload equals ours");
    }
    assert_eq!(seen["tampered_refused"], true, "PyJWT accepted a tampered token: {seen}");
    // The kinds sent to the center name it as their audience, and PyJWT
    // checked that (RFC 7519 §4.1.3); the others name none.
    for kind in ["bill", "refund", "instruction", "claim"] {
        assert_eq!(seen["verified"][kind]["aud"], samples::CENTER, "{kind}");
    }
    for kind in ["offer", "completion", "receipt", "value_update", "registration", "claim_statement"] {
        assert!(seen["verified"][kind].get("aud").is_none(), "{kind}");
    }
    assert_eq!(seen["wrong_audience_refused"], true, "PyJWT took a bill for another center: {seen}");
}

/// jwcrypto opens a JWE we made for a key (ECDH-ES on X25519, A256GCM),
/// and we open one jwcrypto made: the registration envelope is standard.
#[test]
fn jwcrypto_opens_our_jwe_and_we_open_its() {
    use kessai_core::jwe::{self, EncryptionKey};
    let Some(python) = kessai_testkit::external_tool("KESSAI_PYTHON", None, "Python venv with jwcrypto") else {
        return;
    };
    let center = EncryptionKey::generate(&mut OsRandom);
    let ours =
        jwe::encrypt(b"registration from kessai", center.public(), "kessai-registration+jwe", "JWT", &mut OsRandom)
            .unwrap();
    let mut key = serde_json::to_value(center.public().to_jwk()).unwrap();
    key["d"] = kessai_core::base64url::encode(center.secret_bytes()).into();
    let request = serde_json::json!({ "key": key, "token": ours, "message": "registration from jwcrypto" });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/jwe_jwcrypto.py");
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "jwcrypto: {}", String::from_utf8_lossy(&out.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["opened"], "registration from kessai");
    assert_eq!(seen["typ"], "kessai-registration+jwe");
    let (header, plain) = jwe::decrypt(seen["made"].as_str().unwrap(), &center).unwrap();
    assert_eq!(&plain[..], b"registration from jwcrypto");
    assert_eq!(header.alg, "ECDH-ES");
}
