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

/// An image of format 1 (before the log's collected mark) still opens: as
/// a card whose log nothing has collected yet, everything else the same;
/// its first commit writes format 3.
#[test]
fn a_format_1_image_opens_as_nothing_collected() {
    use sha2::Digest as _;
    let mut t = terminal_with(
        Card::open(kessai_card::MemoryStorage::new(personalize(&personalization()).unwrap().to_vec())).unwrap(),
    );
    let s = session(&mut t);
    let s = credit(&mut t, s, 1, 500);
    let s = crate::collected(&mut t, s, 1);
    let _ = credit(&mut t, s, 2, 100); // writes the mark with it
    let v2 = t.into_reader().into_card().into_storage().after_power_cut(false).image().to_vec();
    let current = if v2[SLOT_LEN..SLOT_LEN + 4] == *b"KSCI"
        && u64::from_be_bytes(v2[SLOT_LEN + 8..SLOT_LEN + 16].try_into().unwrap())
            > u64::from_be_bytes(v2[8..16].try_into().unwrap())
    {
        &v2[SLOT_LEN..]
    } else {
        &v2[..SLOT_LEN]
    };
    let len = usize::try_from(u32::from_be_bytes(current[16..20].try_into().unwrap())).unwrap();
    let body = &current[20..20 + len];
    // The mark's 4 bytes follow the status byte at body offset 85; format
    // 3 ends with the token table (here its count, 0).
    assert_eq!(body[85..89], 1u32.to_be_bytes());
    assert_eq!(body.last(), Some(&0u8), "no tokens");
    let image_of = |version: u16, body: &[u8]| {
        let mut slot = Vec::new();
        slot.extend_from_slice(b"KSCI");
        slot.extend_from_slice(&version.to_be_bytes());
        slot.extend_from_slice(&[0, 0]);
        slot.extend_from_slice(&current[8..16]);
        slot.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
        slot.extend_from_slice(body);
        let checksum = sha2::Sha256::digest(&slot);
        slot.extend_from_slice(&checksum);
        let mut image = vec![0u8; IMAGE_LEN];
        image[..slot.len()].copy_from_slice(&slot);
        image
    };
    let v1 = image_of(1, &[&body[..85], &body[89..body.len() - 1]].concat());
    let card = Card::open(kessai_card::MemoryStorage::new(v1.clone())).unwrap();
    assert_eq!(card.state().log_collected(), 0, "nothing collected yet");
    assert_eq!(card.state().public_info().balance_minor, 600);
    assert!(card.state().tokens().is_empty());
    assert_eq!(public_info(&v1).unwrap().counter, 2);
    // Format 2: the mark, no token table; read as no tokens.
    let v2 = image_of(2, &body[..body.len() - 1]);
    let card = Card::open(kessai_card::MemoryStorage::new(v2)).unwrap();
    assert_eq!((card.state().log_collected(), card.state().tokens().len()), (1, 0));
    // Format 2 with a token table, or 3 without one: refused.
    assert!(Card::open(kessai_card::MemoryStorage::new(image_of(2, body))).is_err());
    assert!(Card::open(kessai_card::MemoryStorage::new(image_of(3, &body[..body.len() - 1]))).is_err());
}
