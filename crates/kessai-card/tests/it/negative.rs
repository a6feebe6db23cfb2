//! Every refusal: the documented status word, and nothing changed.

use kessai_card::protocol::{
    self, credit_command, debit_command, get_data_command, read_balance_command, read_log_command, select_command,
    transaction_status_command,
};
use kessai_scp03::{CommandApdu, Header, HostHandshake, ResponseApdu, SecurityLevel};

use crate::{InProcess, MAX_BALANCE, credit, keys, request, session, sw, terminal};

fn image(t: &mut InProcess) -> Vec<u8> {
    t.reader_mut().card().storage().image().to_vec()
}

fn raw(t: &mut InProcess, bytes: &[u8]) -> ResponseApdu {
    ResponseApdu::parse(&kessai_card::transport::Reader::transmit(t.reader_mut(), bytes).unwrap()).unwrap()
}

fn cmd(cla: u8, ins: u8, p1: u8, p2: u8, data: &[u8]) -> CommandApdu {
    CommandApdu::new(Header { cla, ins, p1, p2 }, data.to_vec(), Some(256)).unwrap()
}

/// Sealed commands the card must refuse inside a good session.
#[test]
fn refused_inside_a_session() {
    let mut t = terminal();
    let s = session(&mut t);
    let mut s = credit(&mut t, s, 1, 1_000);
    let mut short = debit_command(&request(2, 5)).data().to_vec();
    short.pop();
    let cases: Vec<(&str, CommandApdu, u16)> = vec![
        ("debit above balance", debit_command(&request(2, 1_001)), 0x6985),
        ("credit above maximum", credit_command(&request(3, MAX_BALANCE)), 0x6A84),
        ("zero amount", debit_command(&request(4, 0)), 0x6A80),
        ("id reused, other request", debit_command(&request(1, 5)), 0x6A89),
        ("debit data one byte short", cmd(0x80, 0x32, 0, 0, &short), 0x6700),
        ("read balance with data", cmd(0x80, 0x30, 0, 0, &[0]), 0x6700),
        ("read balance bad P1", cmd(0x80, 0x30, 1, 0, &[]), 0x6A86),
        ("read log of zero records", read_log_command(0, 0), 0x6A86),
        ("read log of too many", read_log_command(0, 4), 0x6A86),
        ("status with short id", cmd(0x80, 0x38, 0, 0, &[1; 15]), 0x6700),
        ("unknown instruction", cmd(0x80, 0x40, 0, 0, &[]), 0x6D00),
        ("unknown GET DATA tag", get_data_command(0xDF7F), 0x6A88),
    ];
    for (label, plain, expected) in cases {
        let before = image(&mut t);
        let (next, r) = t.secure(s, &plain).unwrap();
        s = next;
        assert_eq!(sw(&r), expected, "{label}");
        assert!(r.data().is_empty(), "{label}: errors carry no data");
        assert_eq!(image(&mut t), before, "{label}: nothing may change");
    }
    // The session is still good afterwards.
    let (_, r) = t.secure(s, &read_balance_command()).unwrap();
    assert_eq!(protocol::BalanceReport::parse(r.data()).unwrap().balance_minor, 1_000);
}

#[test]
fn a_retry_gets_the_first_answer_and_changes_nothing() {
    let mut t = terminal();
    let s = session(&mut t);
    let s = credit(&mut t, s, 1, 1_000);
    let (s, first) = t.secure(s, &debit_command(&request(2, 300))).unwrap();
    assert_eq!(sw(&first), 0x9000);
    let before = image(&mut t);
    let (s, again) = t.secure(s, &debit_command(&request(2, 300))).unwrap();
    assert_eq!(again, first);
    assert_eq!(image(&mut t), before);
    let (_, r) = t.secure(s, &read_balance_command()).unwrap();
    assert_eq!(protocol::BalanceReport::parse(r.data()).unwrap().balance_minor, 700);
}

#[test]
fn a_command_without_mac_ends_the_session() {
    let mut t = terminal();
    let s = session(&mut t);
    let mut s = credit(&mut t, s, 1, 1_000);
    let before = image(&mut t);
    // Plain (CLA 80) debit: below the session's level.
    assert_eq!(sw(&t.transmit(&debit_command(&request(2, 10))).unwrap()), 0x6982);
    // The session is gone: even a correctly sealed command is refused.
    let wire = s.wrap(&read_balance_command()).unwrap();
    assert_eq!(sw(&t.transmit(&wire).unwrap()), 0x6982);
    assert_eq!(image(&mut t), before);
}

#[test]
fn a_wrong_mac_ends_the_session() {
    let mut t = terminal();
    let s = session(&mut t);
    let mut s = credit(&mut t, s, 1, 1_000);
    let before = image(&mut t);
    let mut wire = s.wrap(&debit_command(&request(2, 10))).unwrap().to_bytes();
    let at = wire.len() - 2; // last MAC byte (Le follows)
    wire[at] ^= 0x01;
    assert_eq!(sw(&raw(&mut t, &wire)), 0x6982);
    let wire = s.wrap(&read_balance_command()).unwrap();
    assert_eq!(sw(&t.transmit(&wire).unwrap()), 0x6982, "session ended");
    assert_eq!(image(&mut t), before);
}

#[test]
fn a_replayed_command_is_refused() {
    let mut t = terminal();
    let s = session(&mut t);
    let mut s = credit(&mut t, s, 1, 1_000);
    let wire = s.wrap(&debit_command(&request(2, 10))).unwrap();
    assert_eq!(sw(&t.transmit(&wire).unwrap()), 0x9000);
    let before = image(&mut t);
    assert_eq!(sw(&t.transmit(&wire).unwrap()), 0x6982);
    assert_eq!(image(&mut t), before);
    // Replayed into a new session it fails too.
    let _ = session(&mut t);
    let before = image(&mut t);
    assert_eq!(sw(&t.transmit(&wire).unwrap()), 0x6982);
    assert_eq!(image(&mut t), before);
}

#[test]
fn wrong_key_version_and_wrong_keys() {
    let mut t = terminal();
    t.select().unwrap();
    let before = image(&mut t);
    let iu = cmd(0x80, 0x50, 0x02, 0x00, &[0; 8]);
    assert_eq!(sw(&t.transmit(&iu).unwrap()), 0x6A88);
    assert_eq!(image(&mut t), before, "a refused INITIALIZE UPDATE spends no counter");
    // Right version, wrong MAC key: the host refuses the card cryptogram,
    // and a forged EXTERNAL AUTHENTICATE is refused by the card.
    let mut wrong = keys();
    wrong.mac = kessai_scp03::Aes128Key::new([0x55; 16]);
    let handshake = HostHandshake::new(wrong, SecurityLevel::FULL, [1; 8]);
    let answer = t.transmit(&handshake.initialize_update()).unwrap();
    assert!(handshake.clone().card_response(&answer).is_err());
    let ea = cmd(0x84, 0x82, 0x33, 0x00, &[0; 16]);
    let ea = CommandApdu::new(ea.header(), ea.data().to_vec(), None).unwrap();
    assert_eq!(sw(&t.transmit(&ea).unwrap()), 0x6300);
    assert_eq!(sw(&t.transmit(&read_balance_command()).unwrap()), 0x6982);
}

#[test]
fn a_session_below_level_33_gets_no_money_commands() {
    let mut t = terminal();
    t.select().unwrap();
    let handshake = HostHandshake::new(keys(), SecurityLevel::C_MAC_R_MAC, [2; 8]);
    let answer = t.transmit(&handshake.initialize_update()).unwrap();
    let opening = handshake.card_response(&answer).unwrap();
    assert_eq!(sw(&t.transmit(&opening.external_authenticate).unwrap()), 0x9000);
    let before = image(&mut t);
    let (_, r) = t.secure(opening.session, &credit_command(&request(1, 10))).unwrap();
    assert_eq!(sw(&r), 0x6982);
    assert_eq!(image(&mut t), before);
}

#[test]
fn plain_level_refusals() {
    let mut t = terminal();
    let before = image(&mut t);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("before SELECT", get_data_command(protocol::tag::CARD_ID).to_bytes(), 0x6D00),
        ("other AID", vec![0x00, 0xA4, 0x04, 0x00, 0x05, 0xA0, 0, 0, 0, 1], 0x6A82),
        ("SELECT bad P1", vec![0x00, 0xA4, 0x00, 0x00, 0x02, 0x3F, 0x00], 0x6A86),
        ("SELECT", select_command().to_bytes(), 0x9000),
        ("too short", vec![0x80], 0x6700),
        ("Lc beyond the data", vec![0x80, 0x32, 0, 0, 0x38, 1, 2], 0x6700),
        ("trailing bytes", vec![0x80, 0x30, 0, 0, 1, 0, 0, 0], 0x6700),
        ("unknown class", vec![0xA0, 0xB0, 0, 0, 0], 0x6E00),
        ("unknown INS", vec![0x80, 0x10, 0, 0], 0x6D00),
        ("EXTERNAL AUTHENTICATE first", cmd(0x84, 0x82, 0x33, 0, &[0; 16]).to_bytes(), 0x6985),
        ("sealed command, no session", cmd(0x84, 0x30, 0, 0, &[0; 8]).to_bytes(), 0x6982),
        ("plain debit", debit_command(&request(1, 1)).to_bytes(), 0x6982),
        ("status, no session", transaction_status_command(&request(1, 1).tx_id).to_bytes(), 0x6982),
        ("IU with 7 bytes", cmd(0x80, 0x50, 0, 0, &[0; 7]).to_bytes(), 0x6700),
        ("IU bad P2", cmd(0x80, 0x50, 0, 1, &[0; 8]).to_bytes(), 0x6A86),
        ("GET DATA with data", cmd(0x80, 0xCA, 0xDF, 0x01, &[1]).to_bytes(), 0x6700),
    ];
    for (label, bytes, expected) in cases {
        assert_eq!(sw(&raw(&mut t, &bytes)), expected, "{label}");
    }
    assert_eq!(image(&mut t), before);
    let r = raw(&mut t, &get_data_command(protocol::tag::ALL).to_bytes());
    let info = protocol::PublicInfo::parse(r.data()).unwrap();
    assert_eq!((info.balance_minor, info.counter, info.key_version), (0, 0, 1));
}

#[test]
fn a_blocked_card_moves_no_value() {
    let mut t = terminal();
    let s = session(&mut t);
    let s = credit(&mut t, s, 1, 1_000);
    let (s, r) = t.secure(s, &protocol::block_command()).unwrap();
    assert_eq!(sw(&r), 0x9000);
    let before = image(&mut t);
    let (s, r) = t.secure(s, &debit_command(&request(2, 10))).unwrap();
    assert_eq!(sw(&r), 0x6A81);
    // The first credit's retry still gets its answer.
    let (_, r) = t.secure(s, &credit_command(&request(1, 1_000))).unwrap();
    assert_eq!(sw(&r), 0x9000);
    assert_eq!(image(&mut t), before);
    assert_eq!(sw(&t.transmit(&select_command()).unwrap()), 0x6283);
}

#[test]
fn reselect_and_a_new_initialize_update_end_the_session() {
    let mut t = terminal();
    let mut s = session(&mut t);
    // A new INITIALIZE UPDATE: the old session is gone.
    let handshake = HostHandshake::new(keys(), SecurityLevel::FULL, [3; 8]);
    assert_eq!(sw(&t.transmit(&handshake.initialize_update()).unwrap()), 0x9000);
    let wire = s.wrap(&read_balance_command()).unwrap();
    assert_eq!(sw(&t.transmit(&wire).unwrap()), 0x6982);
    // Re-SELECT: the new session is gone too.
    let mut s = session(&mut t);
    t.select().unwrap();
    let wire = s.wrap(&read_balance_command()).unwrap();
    assert_eq!(sw(&t.transmit(&wire).unwrap()), 0x6982);
}
