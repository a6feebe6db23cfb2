//! PUT KEY (#23 item 3): a card's static keys replaced by a new key version
//! inside a level-33 session, all three at once, each checked against its
//! check value; every refusal changes nothing.

use kessai_card::protocol::{
    INS_PUT_KEY, PUT_KEY_P2, get_data_command, key_check_value, put_key_command, put_key_response, read_balance_command,
};
use kessai_card::transport::Reader as _;
use kessai_scp03::{Aes128Key, CommandApdu, Header, KeyVersion, StaticKeys};

use crate::{InProcess, credit, keys, session, terminal};

/// The test card's keys of version 2.
pub fn keys_v2() -> StaticKeys {
    StaticKeys {
        version: KeyVersion::new(0x02).unwrap(),
        enc: Aes128Key::new(*b"kessai-v2-ENC!!!"),
        mac: Aes128Key::new(*b"kessai-v2-MAC!!!"),
        dek: Aes128Key::new(*b"kessai-v2-DEK!!!"),
    }
}

fn key_version(t: &mut InProcess) -> u8 {
    let answer = t.reader_mut().transmit(&get_data_command(0xDF02).to_bytes()).unwrap();
    assert_eq!(answer[answer.len() - 2..], [0x90, 0x00]);
    answer[0]
}

/// PUT KEY with `data` in place of the real key data.
fn put_key_raw(p1: u8, p2: u8, data: &[u8]) -> CommandApdu {
    CommandApdu::new(Header { cla: 0x80, ins: INS_PUT_KEY, p1, p2 }, data.to_vec(), Some(256)).unwrap()
}

#[test]
fn put_key_replaces_the_static_keys_and_ends_the_session() {
    let mut t = terminal();
    let s = session(&mut t);
    let s = credit(&mut t, s, 1, 700);
    let old = keys();
    let (s, r) = t.secure(s, &put_key_command(old.version, &keys_v2(), &old.dek)).unwrap();
    assert_eq!(r.sw().raw(), 0x9000);
    assert_eq!(r.data(), put_key_response(&keys_v2()));
    assert_eq!(r.data()[1..4], key_check_value(&keys_v2().enc));
    // The session the keys were put in is over.
    let after = t.secure(s, &read_balance_command());
    assert!(after.is_err() || after.unwrap().1.sw().raw() == 0x6982, "no command after PUT KEY in its session");
    assert_eq!(key_version(&mut t), 2);
    // The old keys open nothing; the new ones open a session on the same
    // value.
    t.select().unwrap();
    assert!(t.open_session(keys(), [1; 8]).is_err(), "the old keys are gone");
    t.select().unwrap();
    let s = t.open_session(keys_v2(), [2; 8]).unwrap();
    let (_, r) = t.secure(s, &read_balance_command()).unwrap();
    assert_eq!(r.sw().raw(), 0x9000);
    assert_eq!(u64::from_be_bytes(r.data()[..8].try_into().unwrap()), 700);
}

#[test]
fn put_key_refusals_change_nothing() {
    let old = keys();
    let good = put_key_command(old.version, &keys_v2(), &old.dek);
    let data = good.data().to_vec();
    let mut bad_kcv = data.clone();
    bad_kcv[21] ^= 1;
    let mut bad_type = data.clone();
    bad_type[1] = 0x80;
    let same_version = put_key_command(old.version, &StaticKeys { version: old.version, ..keys_v2() }, &old.dek);
    let under_other_dek = put_key_command(old.version, &keys_v2(), &keys_v2().dek);
    let cases = [
        (put_key_raw(0x05, PUT_KEY_P2, &data), 0x6A88, "P1 names a version the card lacks"),
        (put_key_raw(0x01, 0x01, &data), 0x6A86, "P2 not 81"),
        (put_key_raw(0x01, PUT_KEY_P2, &bad_kcv), 0x6A80, "a check value wrong"),
        (put_key_raw(0x01, PUT_KEY_P2, &bad_type), 0x6A80, "not an AES key"),
        (put_key_raw(0x01, PUT_KEY_P2, &data[..69]), 0x6700, "short"),
        (same_version, 0x6A80, "the same version again"),
        (under_other_dek, 0x6A80, "encrypted under another DEK"),
    ];
    let mut t = terminal();
    for (cmd, sw, why) in cases {
        let s = session(&mut t);
        let (_, r) = t.secure(s, &cmd).unwrap();
        assert_eq!(r.sw().raw(), sw, "{why}");
        assert_eq!(key_version(&mut t), 1, "{why}: nothing changed");
    }
    // Outside a session: refused before anything is read.
    t.select().unwrap();
    let answer = t.reader_mut().transmit(&good.to_bytes()).unwrap();
    assert_eq!(answer, [0x69, 0x82]);
    // The old keys still work.
    let s = session(&mut t);
    let (_, r) = t.secure(s, &read_balance_command()).unwrap();
    assert_eq!(r.sw().raw(), 0x9000);
}
