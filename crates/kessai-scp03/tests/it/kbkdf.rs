//! NIST CAVP SP 800-108 counter-mode KDF, CMAC-AES128, r = 8.

use kessai_scp03::crypto::kdf_counter_cmac;

use crate::{key, unhex, vector_file};

#[derive(serde::Deserialize)]
struct File {
    source: String,
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    ki: String,
    before: String,
    after: String,
    ko: String,
}

#[test]
fn cavp_counter_mode_cmac_aes128_r8() {
    let file: File = serde_json::from_str(&vector_file("kbkdf_ctr_cmac_aes128.json")).unwrap();
    assert!(file.source.contains("CAVP"));
    assert!(file.cases.len() >= 5);
    for case in &file.cases {
        let expected = unhex(&case.ko);
        let mut out = vec![0u8; expected.len()];
        kdf_counter_cmac(&key(&case.ki), &unhex(&case.before), &unhex(&case.after), &mut out).unwrap();
        assert_eq!(out, expected, "{}", case.name);
    }
}
