//! Host and card cores talking to each other in memory, and every way a
//! session must refuse to go on.

use kessai_scp03::{
    Aid, CardHandshake, CardIdentity, CardSession, CommandApdu, Header, HostHandshake, HostSession, HostState,
    KeyVersion, ResponseApdu, ScpError, SecurityLevel, SequenceCounter, StaticKeys, StatusWord,
};

use crate::key;

fn keys() -> StaticKeys {
    StaticKeys {
        version: KeyVersion::new(0x30).unwrap(),
        enc: key("404142434445464748494a4b4c4d4e4f"),
        mac: key("505152535455565758595a5b5c5d5e5f"),
        dek: key("606162636465666768696a6b6c6d6e6f"),
    }
}

fn identity() -> CardIdentity {
    CardIdentity {
        aid: Aid::new(&[0xF0, 0x4B, 0x45, 0x53, 0x53, 0x41, 0x49, 0x01]).unwrap(),
        key_diversification_data: [1, 2, 3, 4, 5, 6, 7, 8, 0, 0],
    }
}

fn open(level: SecurityLevel, seq: u32) -> (HostSession, CardSession) {
    let host = HostHandshake::new(keys(), level, [0xA5; 8]);
    let seq = SequenceCounter::new(seq).unwrap();
    let (card, answer) =
        CardHandshake::initialize_update(&keys(), &identity(), seq, &host.initialize_update()).unwrap();
    let opening = host.card_response(&answer).unwrap();
    assert_eq!(opening.card.sequence_counter, seq);
    let (card, ok) = card.external_authenticate(&opening.external_authenticate).unwrap();
    opening.session.check_external_authenticate(&ok).unwrap();
    (opening.session, card)
}

fn cmd(data: &[u8], le: Option<usize>) -> CommandApdu {
    CommandApdu::new(Header { cla: 0x80, ins: 0x32, p1: 0, p2: 0 }, data.to_vec(), le).unwrap()
}

#[test]
fn round_trips_at_every_level_and_size() {
    for raw in [0x01, 0x03, 0x11, 0x13, 0x33] {
        let level = SecurityLevel::new(raw).unwrap();
        let (mut host, mut card) = open(level, 7);
        for len in [0usize, 1, 15, 16, 17, 200, 238, 300] {
            let plain = cmd(&vec![0x5A; len], Some(256));
            let wire = host.wrap(&plain).unwrap();
            if level.c_decryption() && len > 0 {
                assert!(!wire.data().starts_with(&vec![0x5A; len.min(8)]), "data is encrypted");
            }
            let (next, seen) = card.unwrap_command(&CommandApdu::parse(&wire.to_bytes()).unwrap()).unwrap();
            card = next;
            assert_eq!(seen, plain, "level {raw:02x} len {len}");
            let answer = ResponseApdu::new(vec![0xC3; len], StatusWord::Success).unwrap();
            let wrapped = card.wrap_response(&answer).unwrap();
            let (next, unwrapped) = host.unwrap(&ResponseApdu::parse(&wrapped.to_bytes()).unwrap()).unwrap();
            host = next;
            assert_eq!(unwrapped, answer, "level {raw:02x} len {len}");
        }
    }
}

#[test]
fn wrong_mac_ends_the_card_session() {
    let (mut host, card) = open(SecurityLevel::FULL, 2);
    let mut bytes = host.wrap(&cmd(&[1, 2, 3], None)).unwrap().to_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let err = card.unwrap_command(&CommandApdu::parse(&bytes).unwrap()).unwrap_err();
    assert_eq!(err, ScpError::CommandMacMismatch);
}

#[test]
fn replayed_command_is_refused() {
    let (mut host, card) = open(SecurityLevel::FULL, 3);
    let wire = host.wrap(&cmd(&[9; 20], None)).unwrap();
    let (card, _) = card.unwrap_command(&wire).unwrap();
    assert_eq!(card.unwrap_command(&wire).unwrap_err(), ScpError::CommandMacMismatch);
}

#[test]
fn plain_command_is_refused_in_session() {
    let (_, card) = open(SecurityLevel::C_MAC, 4);
    assert_eq!(card.unwrap_command(&cmd(&[1; 8], None)).unwrap_err(), ScpError::CommandNotSecured);
}

#[test]
fn forged_response_is_refused() {
    let (mut host, card) = open(SecurityLevel::FULL, 5);
    let wire = host.wrap(&cmd(&[], Some(256))).unwrap();
    let (card, _) = card.unwrap_command(&wire).unwrap();
    let wrapped = card.wrap_response(&ResponseApdu::new(vec![1; 12], StatusWord::Success).unwrap()).unwrap();
    let mut bytes = wrapped.to_bytes();
    bytes[0] ^= 0x80;
    let err = host.unwrap(&ResponseApdu::parse(&bytes).unwrap()).unwrap_err();
    assert_eq!(err, ScpError::ResponseMacMismatch);
}

#[test]
fn errors_go_out_bare_and_come_back_unchanged() {
    let (mut host, card) = open(SecurityLevel::FULL, 6);
    let wire = host.wrap(&cmd(&[], Some(256))).unwrap();
    let (card, _) = card.unwrap_command(&wire).unwrap();
    let error = ResponseApdu::status(StatusWord::ConditionsNotSatisfied);
    let wrapped = card.wrap_response(&error).unwrap();
    assert_eq!(wrapped, error);
    let (_, seen) = host.unwrap(&wrapped).unwrap();
    assert_eq!(seen, error);
    // A completed response without its R-MAC is refused.
    let (mut host, _) = open(SecurityLevel::FULL, 6);
    host.wrap(&cmd(&[], None)).unwrap();
    let bare_ok = ResponseApdu::status(StatusWord::Success);
    assert_eq!(host.unwrap(&bare_ok).unwrap_err(), ScpError::MissingResponseMac);
}

#[test]
fn wrong_keys_fail_the_handshake() {
    let mut other = keys();
    other.mac = key("000102030405060708090a0b0c0d0e0f");
    let host = HostHandshake::new(other, SecurityLevel::FULL, [1; 8]);
    let seq = SequenceCounter::new(1).unwrap();
    let (card, answer) =
        CardHandshake::initialize_update(&keys(), &identity(), seq, &host.initialize_update()).unwrap();
    assert_eq!(host.clone().card_response(&answer).unwrap_err(), ScpError::CardCryptogramMismatch);
    // A host that ignores the check still cannot authenticate.
    let forged = HostHandshake::new(keys(), SecurityLevel::FULL, [2; 8]);
    let opening = forged
        .card_response(&CardHandshake::initialize_update(&keys(), &identity(), seq, &forged_iu()).unwrap().1)
        .unwrap();
    assert_eq!(
        card.external_authenticate(&opening.external_authenticate).unwrap_err(),
        ScpError::HostCryptogramMismatch
    );
}

fn forged_iu() -> CommandApdu {
    HostHandshake::new(keys(), SecurityLevel::FULL, [2; 8]).initialize_update()
}

#[test]
fn unknown_key_version_is_refused() {
    let mut v = keys();
    v.version = KeyVersion::new(0x31).unwrap();
    let host = HostHandshake::new(v, SecurityLevel::FULL, [1; 8]);
    let seq = SequenceCounter::new(1).unwrap();
    let err = CardHandshake::initialize_update(&keys(), &identity(), seq, &host.initialize_update()).unwrap_err();
    assert_eq!(err, ScpError::KeyVersionNotFound { requested: 0x31 });
}

#[test]
fn card_challenge_changes_with_the_counter() {
    let host = HostHandshake::new(keys(), SecurityLevel::FULL, [1; 8]);
    let iu = host.initialize_update();
    let answer = |n| {
        let seq = SequenceCounter::new(n).unwrap();
        CardHandshake::initialize_update(&keys(), &identity(), seq, &iu).unwrap().1
    };
    assert_ne!(answer(1).data()[13..21], answer(2).data()[13..21]);
    assert!(SequenceCounter::new(0xFF_FFFF).unwrap().next().is_err());
}

#[test]
fn stored_state_is_checked() {
    let (host, _) = open(SecurityLevel::FULL, 9);
    let bytes = HostState::Open(host).to_bytes();
    assert_eq!(bytes.len(), kessai_scp03::host::OPEN_STATE_LEN);
    let mut bad = bytes.to_vec();
    bad[0] = b'X';
    assert_eq!(HostState::from_bytes(&bad).unwrap_err(), ScpError::StateBadMagic);
    let mut bad = bytes.to_vec();
    bad[4] = 2;
    assert_eq!(HostState::from_bytes(&bad).unwrap_err(), ScpError::StateUnsupportedVersion(2));
    let mut bad = bytes.to_vec();
    bad[5] = 9;
    assert_eq!(HostState::from_bytes(&bad).unwrap_err(), ScpError::StateUnknownKind(9));
    assert!(matches!(HostState::from_bytes(&bytes[..bytes.len() - 1]).unwrap_err(), ScpError::StateLength { .. }));
    let mut long = bytes.to_vec();
    long.push(0);
    assert!(matches!(HostState::from_bytes(&long).unwrap_err(), ScpError::StateLength { .. }));
    let mut bad = bytes.to_vec();
    bad[7] = 0x31;
    assert_eq!(HostState::from_bytes(&bad).unwrap_err(), ScpError::StateInvalidField("level"));
    assert!(!format!("{:?}", HostState::from_bytes(&bytes).unwrap()).contains("Aes"));
}
