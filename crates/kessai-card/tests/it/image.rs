//! Personalization, public info, the image file.

use kessai_card::image::{IMAGE_LEN, SLOT_LEN};
use kessai_card::protocol::CardId;
use kessai_card::{Card, Durability, FileStorage, ImageError, KeySource, create_image_file, personalize, public_info};
use kessai_scp03::KeyVersion;
use kessai_scp03::diversify::{MasterKeys, diversify};

use crate::{credit, keys, personalization, session, terminal_with};

#[test]
fn a_new_card_is_empty_and_tells_no_keys() {
    let image = personalize(&personalization()).unwrap();
    assert_eq!(image.len(), IMAGE_LEN);
    assert_eq!(&image[..4], b"KSCI");
    assert!(image[SLOT_LEN..].iter().all(|&b| b == 0), "slot B starts empty");
    let info = public_info(&image).unwrap();
    assert_eq!((info.balance_minor, info.counter, info.key_version), (0, 0, 1));
    assert_eq!(info.currency.as_str(), "JPY");
    assert!(!format!("{info:?}").contains("kessai-test"), "no key in public info");
    let card = Card::open(kessai_card::MemoryStorage::new(image.to_vec())).unwrap();
    assert!(!format!("{card:?}").contains("kessai-test"), "keys never print");
}

#[test]
fn corruption_is_detected() {
    let mut image = personalize(&personalization()).unwrap().to_vec();
    image[40] ^= 1;
    assert!(matches!(public_info(&image), Err(ImageError::NoValidSlot { .. })));
    assert!(matches!(public_info(&image[1..]), Err(ImageError::Length(_))));
}

#[test]
fn diversified_keys_open_a_session() {
    let master = MasterKeys {
        enc: kessai_scp03::Aes128Key::new([1; 16]),
        mac: kessai_scp03::Aes128Key::new([2; 16]),
        dek: kessai_scp03::Aes128Key::new([3; 16]),
    };
    let version = KeyVersion::new(0x20).unwrap();
    let mut p = personalization();
    p.card_id = CardId([9, 8, 7, 6, 5, 4, 3, 2]);
    p.keys = KeySource::Diversified { master: master.clone(), version };
    let card = Card::open(kessai_card::MemoryStorage::new(personalize(&p).unwrap().to_vec())).unwrap();
    let mut t = terminal_with(card);
    t.select().unwrap();
    assert!(t.open_session(keys(), [1; 8]).is_err(), "the test keys are not this card's");
    let card_keys = diversify(&master, &p.card_id.0, version);
    let opened = t.open_session(card_keys, [1; 8]);
    assert!(opened.is_ok());
}

#[test]
fn image_file_is_private_and_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.img");
    let info = create_image_file(&path, &personalization()).unwrap();
    assert_eq!(info.balance_minor, 0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert!(create_image_file(&path, &personalization()).is_err(), "never overwrites a card");
    let card = Card::open(FileStorage::open(&path, Durability::Fsync).unwrap()).unwrap();
    let mut t = kessai_card::terminal::Terminal::new(kessai_card::transport::InProcessReader::new(card));
    t.select().unwrap();
    let s = t.open_session(keys(), [4; 8]).unwrap();
    let (_, r) = t.secure(s, &kessai_card::protocol::credit_command(&crate::request(1, 42))).unwrap();
    assert_eq!(r.sw().raw(), 0x9000);
    drop(t);
    let image = std::fs::read(&path).unwrap();
    assert_eq!(public_info(&image).unwrap().balance_minor, 42);
    let _ = (credit, session);
}
