//! Issuer master keys in a PKCS#11 token (SoftHSM2, from
//! scripts/with-softhsm): the token computes what the keys in memory
//! compute, never gives a key out, and a key it would give out is refused.

use std::collections::BTreeMap;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass};
use kessai_center::hsm::{self, Pkcs11Keys};
use kessai_center::keystore::issuer_keys_fingerprint;
use kessai_center::security::{InMemoryKeys, IssuerKeys, SecurityError};
use kessai_core::ids::CardId;
use kessai_scp03::KeyVersion;

use crate::world::{KVN, masters, token_config};

fn prefix(test: &str) -> String {
    format!("kessai-{test}-{}", std::process::id())
}

#[test]
fn keys_in_the_token_derive_what_the_same_keys_in_memory_derive() {
    let Some((config, pin)) = token_config(&prefix("same")) else { return };
    let source = BTreeMap::from([(KVN, masters(0x40)), (2, masters(0x70))]);
    let created = hsm::import(&config, &pin, &source).unwrap();
    assert_eq!(created.iter().map(|c| c.version).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(
        created[0].labels,
        [
            format!("{}-01-enc", config.label_prefix),
            format!("{}-01-mac", config.label_prefix),
            format!("{}-01-dek", config.label_prefix)
        ]
    );
    let token = Pkcs11Keys::open(&config, &pin).unwrap();
    let memory = InMemoryKeys::new(source);
    assert_eq!(token.versions(), [1, 2]);
    for version in [1u8, 2] {
        for n in 0..4u8 {
            let card = CardId::from_bytes([0x4b, 0x45, 0x53, 0x53, 0x41, 0x49, version, n]);
            let kvn = KeyVersion::new(version).unwrap();
            let (a, b) = (token.diversify(&card, kvn).unwrap(), memory.diversify(&card, kvn).unwrap());
            assert_eq!(a.enc.expose(), b.enc.expose());
            assert_eq!(a.mac.expose(), b.mac.expose());
            assert_eq!(a.dek.expose(), b.dek.expose());
            assert_ne!(a.enc.expose(), a.mac.expose());
        }
    }
    // One fingerprint for the same keys wherever they are (the database's
    // key set check holds across a move into the token).
    assert_eq!(token.check_values().unwrap(), memory.check_values().unwrap());
    assert_eq!(
        issuer_keys_fingerprint(&token.check_values().unwrap()),
        issuer_keys_fingerprint(&memory.check_values().unwrap())
    );
    let unknown = token.diversify(&CardId::from_bytes([1; 8]), KeyVersion::new(3).unwrap());
    assert_eq!(unknown.unwrap_err(), SecurityError::UnknownKeyVersion(3));
    // Importing a version the token has is refused, and changes nothing.
    let again = hsm::import(&config, &pin, &BTreeMap::from([(2, masters(0x10))])).unwrap_err();
    assert!(again.to_string().contains("already holds"), "{again}");
    assert_eq!(Pkcs11Keys::open(&config, &pin).unwrap().check_values().unwrap(), memory.check_values().unwrap());
}

#[test]
fn the_token_never_gives_out_a_master_key_nor_uses_it_but_for_cmac() {
    let Some((config, pin)) = token_config(&prefix("sealed")) else { return };
    hsm::import(&config, &pin, &BTreeMap::from([(KVN, masters(0x40))])).unwrap();
    let token = Pkcs11Keys::open(&config, &pin).unwrap();
    let handles = token.handles(KVN).unwrap();
    token
        .with_session(|session| {
            for handle in handles {
                // C_GetAttributeValue on CKA_VALUE: CKR_ATTRIBUTE_SENSITIVE.
                let info = session.get_attribute_info(handle, &[AttributeType::Value]).unwrap();
                assert!(matches!(info.as_slice(), [AttributeInfo::Sensitive]), "{info:?}");
                let read = session.get_attributes(handle, &[AttributeType::Value]).unwrap();
                assert!(!read.iter().any(|a| matches!(a, Attribute::Value(_))), "CKA_VALUE came out: {read:?}");
                let flags =
                    session.get_attributes(handle, &[AttributeType::Extractable, AttributeType::Sensitive]).unwrap();
                assert!(flags.contains(&Attribute::Extractable(false)) && flags.contains(&Attribute::Sensitive(true)));
                // Not an encryption key either: no ECB oracle over it.
                assert!(session.encrypt(&Mechanism::AesEcb, handle, &[0u8; 16]).is_err());
                // Nor can it be made extractable again.
                assert!(session.update_attributes(handle, &[Attribute::Extractable(true)]).is_err());
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_master_key_the_token_would_give_out_is_refused() {
    let Some((config, pin)) = token_config(&prefix("open")) else { return };
    let plain = masters(0x22);
    // A guarded version 9, for a logged-in session to plant with.
    hsm::generate(&config, &pin, 9).unwrap();
    let token = Pkcs11Keys::open(&config, &pin).unwrap();
    // Another tool put readable keys in the token under kessai's labels.
    token
        .with_session(|session| {
            for (part, key) in ["enc", "mac", "dek"].iter().zip([&plain.enc, &plain.mac, &plain.dek]) {
                let label = format!("{}-05-{part}", config.label_prefix);
                session
                    .create_object(&[
                        Attribute::Class(ObjectClass::SECRET_KEY),
                        Attribute::KeyType(KeyType::AES),
                        Attribute::Label(label.into_bytes()),
                        Attribute::Token(true),
                        Attribute::Private(true),
                        Attribute::Sensitive(false),
                        Attribute::Extractable(true),
                        Attribute::Sign(true),
                        Attribute::Value(key.expose().to_vec()),
                    ])
                    .unwrap();
            }
            Ok(())
        })
        .unwrap();
    let refused = Pkcs11Keys::open(&config, &pin).unwrap_err();
    assert!(refused.to_string().contains("can be read out"), "{refused}");
}

#[test]
fn generated_keys_exist_only_in_the_token_and_a_missing_one_is_refused() {
    let Some((config, pin)) = token_config(&prefix("gen")) else { return };
    let none = Pkcs11Keys::open(&config, &pin).unwrap_err();
    assert!(none.to_string().contains("holds no issuer master keys"), "{none}");
    let created = hsm::generate(&config, &pin, 3).unwrap();
    assert_eq!(created.labels.len(), 3);
    let token = Pkcs11Keys::open(&config, &pin).unwrap();
    assert_eq!(token.versions(), [3]);
    let card = CardId::from_bytes([7; 8]);
    let kvn = KeyVersion::new(3).unwrap();
    let keys = token.diversify(&card, kvn).unwrap();
    assert_eq!(keys.enc.expose(), token.diversify(&card, kvn).unwrap().enc.expose(), "deterministic");
    assert!(hsm::generate(&config, &pin, 3).unwrap_err().to_string().contains("already holds"));
    // A version with one of its three keys gone is refused, not half used.
    token
        .with_session(|session| {
            let [_, mac, _] = token.handles(3).unwrap();
            session.destroy_object(mac).unwrap();
            Ok(())
        })
        .unwrap();
    let half = Pkcs11Keys::open(&config, &pin).unwrap_err();
    assert!(half.to_string().contains("lacks one of its three keys"), "{half}");
}

#[test]
fn an_unknown_token_is_refused_by_name() {
    let Some((mut config, pin)) = token_config(&prefix("unknown")) else { return };
    config.token_label = "no-such-token".into();
    let refused = Pkcs11Keys::open(&config, &pin).unwrap_err();
    assert!(refused.to_string().contains("no token labelled \"no-such-token\""), "{refused}");
}

/// The center's Ed25519 signing key made in the token: it signs what its
/// public key verifies (ed25519-dalek, not the token, checks), its private
/// half never comes out, and a second key under the label is refused.
#[test]
fn a_signing_key_in_the_token_signs_and_never_comes_out() {
    use kessai_core::keys::JwsSigner;
    let Some((mut config, pin)) = token_config(&prefix("sign")) else { return };
    config.signing_key_label = Some(format!("{}-center-signing", config.label_prefix));
    let public = hsm::generate_signing_key(&config, &pin).unwrap();
    let signer = hsm::Pkcs11Signer::open(&config, &pin).unwrap();
    assert_eq!(signer.public(), public);
    assert_eq!(signer.kid(), public.kid());
    let signature = signer.try_sign(b"SIG3 signing input").unwrap();
    assert!(public.verify(b"SIG3 signing input", &signature));
    assert!(!public.verify(b"another input", &signature));
    // A whole JWS (a sample bill, signed as its issuer would), verified by
    // kessai's verifier against the token's public key.
    let mut keys = kessai_core::keys::KeyDirectory::new();
    let issuer = kessai_core::ids::PartyId::parse(kessai_core::samples::MALL).unwrap();
    keys.insert(issuer, public.clone(), kessai_core::keys::Validity::always()).unwrap();
    let mut rng = kessai_core::random::SeededRandom::new(3);
    let (claims, body) = kessai_core::samples::bill(&mut rng, crate::world::NOW).unwrap();
    let token = kessai_core::jws::sign(&claims, &body, &signer).unwrap();
    let clock = kessai_core::time::FixedClock::new(crate::world::NOW);
    let verified = kessai_core::jws::verify::<kessai_core::messages::bill::Bill>(&token, &keys, &clock).unwrap();
    assert_eq!(verified.claims().id(), claims.id());
    signer
        .with_private(|session, private| {
            let info = session.get_attribute_info(private, &[AttributeType::Value]).unwrap();
            assert!(matches!(info.as_slice(), [AttributeInfo::Sensitive]), "{info:?}");
            assert!(session.update_attributes(private, &[Attribute::Extractable(true)]).is_err());
            Ok(())
        })
        .unwrap();
    let again = hsm::generate_signing_key(&config, &pin).unwrap_err();
    assert!(again.to_string().contains("already holds"), "{again}");
    config.signing_key_label = Some("no-such-key".into());
    let missing = hsm::Pkcs11Signer::open(&config, &pin).unwrap_err();
    assert!(missing.to_string().contains("0 private and 0 public"), "{missing}");
}
