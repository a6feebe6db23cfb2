//! Published known answers through our own verification path.

use kessai_core::keys::{PublicKey, SigningKey};

/// RFC 8032 §7.1, TEST 1–3: (secret, public, message, signature).
const RFC8032: &[(&str, &str, &str, &str)] = &[
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
    (
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ),
];

fn arr<const N: usize>(h: &str) -> [u8; N] {
    hex::decode(h).unwrap().try_into().unwrap()
}

#[test]
fn rfc8032_section_7_1_sign_and_verify() {
    for (secret, public, msg, sig) in RFC8032 {
        let key = SigningKey::from_seed(&arr(secret));
        assert_eq!(key.public().as_bytes(), &arr::<32>(public), "public key of {secret}");
        let msg = hex::decode(msg).unwrap();
        let signature = key.sign(&msg);
        assert_eq!(signature, arr::<64>(sig), "signature for {secret}");
        let verifier = PublicKey::from_bytes(&arr(public)).unwrap();
        assert!(verifier.verify(&msg, &signature));
        let mut other = msg.clone();
        other.push(0);
        assert!(!verifier.verify(&other, &signature));
    }
}

/// Wycheproof's Ed25519 suite: every "valid" case verifies and every
/// "invalid" case is refused, by PublicKey::from_bytes or by verify.
#[test]
fn wycheproof_ed25519() {
    use wycheproof::TestResult;
    let set = wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519).unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for group in set.test_groups {
        let pk: [u8; 32] = group.key.pk.as_ref().try_into().unwrap();
        let key = PublicKey::from_bytes(&pk);
        for test in group.tests {
            let accepted = match (&key, <[u8; 64]>::try_from(test.sig.as_ref())) {
                (Ok(key), Ok(sig)) => key.verify(&test.msg, &sig),
                _ => false,
            };
            match test.result {
                TestResult::Valid => {
                    assert!(accepted, "tcId {} ({}) must verify", test.tc_id, test.comment);
                    valid += 1;
                }
                TestResult::Invalid => {
                    assert!(!accepted, "tcId {} ({}) must be refused", test.tc_id, test.comment);
                    invalid += 1;
                }
                TestResult::Acceptable => {}
            }
        }
    }
    assert!(valid > 50 && invalid > 50, "suite loaded: {valid} valid, {invalid} invalid");
}
