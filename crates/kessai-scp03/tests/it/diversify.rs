//! Static key diversification against values computed independently.

use kessai_scp03::KeyVersion;
use kessai_scp03::diversify::{MasterKeys, diversify};

use crate::{key, unhex, vector_file};

#[derive(serde::Deserialize)]
struct File {
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    master_enc: String,
    master_mac: String,
    master_dek: String,
    card_id: String,
    key_version: String,
    enc: String,
    mac: String,
    dek: String,
}

#[test]
fn known_answers() {
    let file: File = serde_json::from_str(&vector_file("diversification.json")).unwrap();
    assert!(file.cases.len() >= 3);
    for case in &file.cases {
        let master = MasterKeys { enc: key(&case.master_enc), mac: key(&case.master_mac), dek: key(&case.master_dek) };
        let card_id: [u8; 8] = unhex(&case.card_id).try_into().unwrap();
        let version = KeyVersion::new(unhex(&case.key_version)[0]).unwrap();
        let keys = diversify(&master, &card_id, version);
        assert_eq!(keys.version, version);
        assert_eq!(keys.enc, key(&case.enc), "ENC of card {}", case.card_id);
        assert_eq!(keys.mac, key(&case.mac), "MAC of card {}", case.card_id);
        assert_eq!(keys.dek, key(&case.dek), "DEK of card {}", case.card_id);
    }
}

#[test]
fn different_cards_get_different_keys() {
    let master = MasterKeys { enc: key(&"11".repeat(16)), mac: key(&"22".repeat(16)), dek: key(&"33".repeat(16)) };
    let v = KeyVersion::new(1).unwrap();
    let a = diversify(&master, &[0, 0, 0, 0, 0, 0, 0, 1], v);
    let b = diversify(&master, &[0, 0, 0, 0, 0, 0, 0, 2], v);
    assert_ne!(a.enc, b.enc);
    assert_ne!(a.mac, b.mac);
    assert_ne!(a.enc, a.mac);
}
