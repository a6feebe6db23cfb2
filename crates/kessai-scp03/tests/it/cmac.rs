//! AES-CMAC: RFC 4493 §4 examples and Wycheproof `aes_cmac_test.json`.

use kessai_scp03::crypto::aes_cmac;

use crate::{key, unhex};

#[test]
fn rfc4493_examples() {
    let k = key("2b7e151628aed2a6abf7158809cf4f3c");
    let msg = unhex(concat!(
        "6bc1bee22e409f96e93d7e117393172a",
        "ae2d8a571e03ac9c9eb76fac45af8e51",
        "30c81c46a35ce411e5fbc1191a0a52ef",
        "f69f2445df4f9b17ad2b417be66c3710"
    ));
    let cases = [
        (0, "bb1d6929e95937287fa37d129b756746"),
        (16, "070a16b46b4d4144f79bdd9dd04a287c"),
        (40, "dfa66747de9ae63030ca32611497c827"),
        (64, "51f0bebf7e3b9d92fc49741779363cfe"),
    ];
    for (len, tag) in cases {
        assert_eq!(aes_cmac(&k, &[&msg[..len]]).to_vec(), unhex(tag), "Mlen = {len}");
        // The same message split in pieces gives the same tag.
        let (a, b) = msg[..len].split_at(len / 3);
        assert_eq!(aes_cmac(&k, &[a, b]).to_vec(), unhex(tag));
    }
}

#[test]
fn wycheproof_aes_cmac_128() {
    let set = wycheproof::mac::TestSet::load(wycheproof::mac::TestName::AesCmac).unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for group in set.test_groups.iter().filter(|g| g.key_size == 128) {
        for test in &group.tests {
            let k = kessai_scp03::Aes128Key::from_slice(&test.key).expect("128-bit group");
            let full = aes_cmac(&k, &[&test.msg]);
            let matches = full[..group.tag_size / 8] == test.tag[..];
            if test.result.must_fail() {
                assert!(!matches, "tcId {} must not verify: {}", test.tc_id, test.comment);
                invalid += 1;
            } else {
                assert!(matches, "tcId {} must verify: {}", test.tc_id, test.comment);
                valid += 1;
            }
        }
    }
    assert!(valid > 20 && invalid > 20, "ran {valid} valid and {invalid} invalid cases");
}
