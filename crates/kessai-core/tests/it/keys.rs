//! Key files, JWKS in and out, rotation and revocation.

use kessai_core::ids::PartyId;
use kessai_core::jwk::{self, JwkError};
use kessai_core::keyfile::{self, KeyFileError, Passphrase};
use kessai_core::keys::{KeyDirectory, KeyError, SigningKey, Validity};
use kessai_core::random::SeededRandom;
use kessai_core::time::Timestamp;

fn key(seed: u64) -> SigningKey {
    SigningKey::generate(&mut SeededRandom::new(seed))
}

fn party(s: &str) -> PartyId {
    PartyId::parse(s).unwrap()
}

#[test]
fn plain_pkcs8_pem_round_trips_and_other_tools_can_read_it() {
    let k = key(1);
    let pem = keyfile::encode_plain(&k);
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    // RFC 8410 §10.3: an Ed25519 PKCS#8 v1 key is 48 bytes of DER, whose
    // base64 starts with this fixed prefix (version 0, OID 1.3.101.112).
    assert!(pem.contains("MC4CAQAwBQYDK2VwBCIEI"));
    let back = keyfile::decode(&pem, None).unwrap();
    assert_eq!(back.kid(), k.kid());
    assert_eq!(keyfile::decode(&pem, Some(&Passphrase::new("x".into()))).unwrap_err(), KeyFileError::NotEncrypted);
}

#[test]
fn sealed_key_needs_the_right_passphrase_and_detects_tampering() {
    let k = key(2);
    let pass = Passphrase::new("correct horse battery staple".into());
    let mut rng = SeededRandom::new(3);
    let pem = keyfile::encode_sealed_with_cost(&k, &pass, &mut rng, 64, 1);
    assert!(keyfile::is_sealed(&pem));
    assert!(!pem.contains("MC4CAQAwBQYDK2VwBCIEI"), "sealed file must not hold the plain key");
    assert_eq!(keyfile::decode(&pem, Some(&pass)).unwrap().kid(), k.kid());
    assert_eq!(keyfile::decode(&pem, None).unwrap_err(), KeyFileError::PassphraseRequired);
    let wrong = Passphrase::new("Correct horse battery staple".into());
    assert_eq!(keyfile::decode(&pem, Some(&wrong)).unwrap_err(), KeyFileError::WrongPassphraseOrCorrupt);

    // Change one base64 character of the body at several places: header
    // (parameters), salt, ciphertext. Each is refused, none panics.
    let lines: Vec<&str> = pem.lines().collect();
    let body: String = lines[1..lines.len() - 1].concat();
    for at in [3usize, 10, 30, 50, 80, body.len() - 5] {
        let mut changed = body.as_bytes().to_vec();
        changed[at] = if changed[at] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(changed).unwrap();
        let text = format!("{}\n{changed}\n{}\n", lines[0], lines[lines.len() - 1]);
        assert!(keyfile::decode(&text, Some(&pass)).is_err(), "tampered at {at}");
    }
}

#[test]
fn key_files_refuse_garbage_and_unknown_labels() {
    assert_eq!(keyfile::decode("hello", None).unwrap_err(), KeyFileError::NotPem);
    let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert!(matches!(keyfile::decode(cert, None), Err(KeyFileError::UnknownLabel(_))));
    let bad = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    assert_eq!(keyfile::decode(bad, None).unwrap_err(), KeyFileError::BadPkcs8);
    assert_eq!(keyfile::decode(&"A".repeat(20_000), None).unwrap_err(), KeyFileError::TooLarge);
}

#[test]
fn secrets_never_print() {
    let k = key(4);
    let debug = format!("{k:?}");
    assert!(debug.contains("***"));
    let pem = keyfile::encode_plain(&k);
    let body = pem.lines().nth(1).unwrap();
    assert!(!debug.contains(body));
    assert_eq!(format!("{:?}", Passphrase::new("hunter2".into())), "Passphrase(***)");
}

#[test]
fn jwks_round_trips_with_windows_and_omits_revoked_keys() {
    let (a, b, c) = (key(5), key(6), key(7));
    let mall = party("kessai-mall");
    let mut dir = KeyDirectory::new();
    let next = Validity { not_before: Some(Timestamp::from_unix_s(2_000)), not_after: None };
    dir.insert(mall.clone(), a.public(), Validity::always()).unwrap();
    dir.insert(mall.clone(), b.public(), next).unwrap();
    dir.insert(mall.clone(), c.public(), Validity::always()).unwrap();
    dir.revoke(c.kid()).unwrap();
    let jwks = serde_json::to_vec(&dir.jwks(Some(&mall))).unwrap();
    let text = String::from_utf8(jwks.clone()).unwrap();
    assert!(text.contains(a.kid().as_str()) && text.contains(b.kid().as_str()));
    assert!(!text.contains(c.kid().as_str()), "revoked key published");
    assert!(text.contains(r#""nbf":2000"#));

    let mut copy = KeyDirectory::new();
    assert_eq!(copy.insert_jwks(&mall, &jwks).unwrap(), 2);
    let entry = copy.entry(b.kid().as_str()).unwrap();
    assert_eq!(entry.validity, next);
    assert!(!entry.validity.contains(Timestamp::from_unix_s(1_999)));
    assert!(entry.validity.contains(Timestamp::from_unix_s(2_000)));
    // A revoked key cannot come back through an update.
    assert_eq!(dir.insert(mall, c.public(), Validity::always()), Err(KeyError::Revoked(c.kid().clone())));
}

#[test]
fn a_key_belongs_to_one_party() {
    let k = key(8);
    let mut dir = KeyDirectory::new();
    dir.insert(party("store-a"), k.public(), Validity::always()).unwrap();
    assert!(matches!(
        dir.insert(party("store-b"), k.public(), Validity::always()),
        Err(KeyError::OwnedByAnother { .. })
    ));
}

#[test]
fn jwks_input_is_checked() {
    let k = key(9);
    let good = serde_json::to_value(k.public().to_jwk(Validity::always())).unwrap();
    let set = |v: serde_json::Value| serde_json::to_vec(&serde_json::json!({ "keys": [v] })).unwrap();

    let mut wrong_kid = good.clone();
    wrong_kid["kid"] = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs".into();
    assert!(matches!(jwk::parse_jwks(&set(wrong_kid)), Err(JwkError::KidMismatch { .. })));
    let mut private = good.clone();
    private["d"] = "AAAA".into();
    assert_eq!(jwk::parse_jwks(&set(private)).unwrap_err(), JwkError::PrivateKeyMaterial);
    let mut rsa = good.clone();
    rsa["kty"] = "RSA".into();
    assert!(matches!(jwk::parse_jwks(&set(rsa)), Err(JwkError::UnsupportedKeyType(_))));
    let mut enc = good.clone();
    enc["use"] = "enc".into();
    assert_eq!(jwk::parse_jwks(&set(enc)).unwrap_err(), JwkError::WrongUse);
    let mut short = good.clone();
    short["x"] = "AQAB".into();
    assert_eq!(jwk::parse_jwks(&set(short)).unwrap_err(), JwkError::BadPublicKey);
    let mut window = good.clone();
    window["nbf"] = 10.into();
    window["exp"] = 5.into();
    assert_eq!(jwk::parse_jwks(&set(window)).unwrap_err(), JwkError::EmptyWindow);
    let many = serde_json::json!({ "keys": vec![good.clone(); 65] });
    assert_eq!(jwk::parse_jwks(&serde_json::to_vec(&many).unwrap()).unwrap_err(), JwkError::TooManyKeys);
    // A small-order point is a valid encoding but a weak key: refused.
    let mut weak = good.clone();
    weak["x"] = kessai_core::base64url::encode(&[0u8; 32]).into();
    weak.as_object_mut().unwrap().remove("kid");
    let mut dir = KeyDirectory::new();
    assert!(dir.insert_jwks(&party("x"), &set(weak)).is_err());
    assert!(dir.is_empty(), "a failed JWKS import changes nothing");
}
