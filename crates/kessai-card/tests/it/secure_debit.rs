//! A full secure DEBIT, in process, with the kessai-scp03 host side.

use kessai_card::protocol::{
    BalanceReport, CardStatus, TransferKind, TxStatus, debit_command, parse_log, read_balance_command,
    read_log_command, transaction_status_command,
};
use kessai_scp03::StatusWord;

use crate::{MAX_BALANCE, credit, request, session, terminal};

#[test]
fn credit_then_debit_with_log_and_status() {
    let mut t = terminal();
    let s = session(&mut t);
    let s = credit(&mut t, s, 1, 10_000);

    let (s, r) = t.secure(s, &read_balance_command()).unwrap();
    let report = BalanceReport::parse(r.data()).unwrap();
    assert_eq!((report.balance_minor, report.counter), (10_000, 1));
    assert_eq!(report.max_balance_minor, MAX_BALANCE);
    assert_eq!(report.currency.as_str(), "JPY");
    assert_eq!(report.status, CardStatus::Active);

    let (s, r) = t.secure(s, &debit_command(&request(2, 2_500))).unwrap();
    assert_eq!(r.sw(), StatusWord::Success);
    let TxStatus::Applied(result) = TxStatus::parse(r.data()).unwrap() else { panic!() };
    assert_eq!((result.kind, result.amount_minor), (TransferKind::Debit, 2_500));
    assert_eq!((result.counter, result.balance_after_minor), (2, 7_500));

    let (s, r) = t.secure(s, &read_log_command(0, 3)).unwrap();
    let log = parse_log(r.data()).unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].request, request(2, 2_500), "newest first");
    assert_eq!(log[1].kind, TransferKind::Credit);

    let (s, r) = t.secure(s, &transaction_status_command(&request(2, 1).tx_id)).unwrap();
    assert_eq!(TxStatus::parse(r.data()).unwrap(), TxStatus::Applied(result));
    let (_, r) = t.secure(s, &transaction_status_command(&request(9, 1).tx_id)).unwrap();
    assert_eq!(TxStatus::parse(r.data()).unwrap(), TxStatus::Unknown(request(9, 1).tx_id));

    let card = t.into_reader().into_card();
    assert_eq!(card.state().public_info().balance_minor, 7_500);
    card.state().check().unwrap();
}

#[test]
fn state_survives_a_restart() {
    let mut t = terminal();
    let s = session(&mut t);
    let s = credit(&mut t, s, 1, 500);
    let (_, r) = t.secure(s, &debit_command(&request(2, 200))).unwrap();
    assert_eq!(r.sw(), StatusWord::Success);
    let storage = t.into_reader().into_card().into_storage().after_power_cut(false);
    let card = kessai_card::Card::open(storage).unwrap();
    assert_eq!(card.state().public_info().balance_minor, 300);
    assert_eq!(card.state().public_info().counter, 2);
    assert_eq!(card.state().log().count(), 2);
}

#[test]
fn the_wire_hides_amounts_and_balances() {
    let mut t = terminal();
    let mut s = session(&mut t);
    let plain = debit_command(&request(7, 0x1234_5678));
    let wire = s.wrap(&plain).unwrap().to_bytes();
    let amount = 0x1234_5678u64.to_be_bytes();
    assert!(!wire.windows(8).any(|w| w == amount), "amount must not travel in clear");
    assert!(!wire.windows(16).any(|w| w == [7u8; 16]), "tx id must not travel in clear");
}
