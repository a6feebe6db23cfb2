//! Anti-tearing: cut the power at every write step of DEBIT, CREDIT, LOG
//! COLLECTED, PUT KEY and (`tokens.rs`) STORE TOKEN and REDEEM TOKEN and
//! prove the card restarts with the old or the new state, never a mix, and
//! that a state it answered `9000` for is durable.

use kessai_card::protocol::{LogRecord, TransferKind, TransferRequest, credit_command, debit_command};
use kessai_card::terminal::Terminal;
use kessai_card::transport::InProcessReader;
use kessai_card::{Card, MemoryStorage, PowerCutStorage};
use kessai_scp03::CommandApdu;

use crate::{credit, keys, request, session, terminal};

/// A card with `credits` credits of 100 applied (ids 1..=credits), its
/// log collected through `collected` as it went (at most).
fn prepared_collected(credits: u8, collected: u32) -> MemoryStorage {
    let mut t = terminal();
    let mut s = session(&mut t);
    for n in 1..=credits {
        s = credit(&mut t, s, n, 100);
        s = crate::collected(&mut t, s, u32::from(n).min(collected));
    }
    t.into_reader().into_card().into_storage().after_power_cut(false)
}

/// A card with `credits` credits of 100 applied, its log collected.
fn prepared(credits: u8) -> MemoryStorage {
    prepared_collected(credits, u32::MAX)
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Snapshot {
    balance: u64,
    counter: u32,
    collected: u32,
    log: Vec<LogRecord>,
    pub(crate) tokens: Vec<kessai_card::tokens::TokenEntry>,
}

fn snapshot<S: kessai_card::Storage>(card: &Card<S>) -> Snapshot {
    card.state().check().unwrap();
    let info = card.state().public_info();
    Snapshot {
        balance: info.balance_minor,
        counter: info.counter,
        collected: card.state().log_collected(),
        log: card.state().log().copied().collect(),
        tokens: card.state().tokens().to_vec(),
    }
}

/// Runs `plain` with the power cut at operation `cut` (None: no cut);
/// returns the SW, the storage, and how many operations the command took.
fn run(base: &MemoryStorage, plain: &CommandApdu, cut: Option<usize>) -> (u16, MemoryStorage, usize) {
    let card = Card::open(PowerCutStorage::new(base.clone(), None)).unwrap();
    let mut t = Terminal::new(InProcessReader::new(card));
    t.select().unwrap();
    let s = t.open_session(keys(), [9; 8]).unwrap();
    let storage = t.reader_mut().card_mut().storage_mut();
    let ops_before = storage.ops();
    if let Some(k) = cut {
        storage.arm(k);
    }
    let (_, r) = t.secure(s, plain).unwrap();
    let storage = t.into_reader().into_card().into_storage();
    let ops = storage.ops() - ops_before;
    (r.sw().raw(), storage.into_inner(), ops)
}

fn check_every_cut(credits: u8, kind: TransferKind, req: TransferRequest, min_ops: usize) {
    let plain = match kind {
        TransferKind::Debit => debit_command(&req),
        _ => credit_command(&req),
    };
    let new = check_every_cut_of(&prepared(credits), &plain, min_ops);
    assert_eq!(new.log.last().unwrap().request, req);
}

/// Every power cut during `plain` on `base` leaves the old or the new
/// state, never a mix; returns the new one.
pub(crate) fn check_every_cut_of(base: &MemoryStorage, plain: &CommandApdu, min_ops: usize) -> Snapshot {
    let base = base.clone();
    let old = snapshot(&Card::open(base.clone()).unwrap());
    let (sw, done, ops) = run(&base, plain, None);
    assert_eq!(sw, 0x9000);
    let new = snapshot(&Card::open(done.after_power_cut(false)).unwrap());
    assert_ne!(old, new);
    assert!(ops >= min_ops, "expected at least {min_ops} write steps, got {ops}");
    for cut in 0..ops {
        let (sw, storage, _) = run(&base, plain, Some(cut));
        assert_eq!(sw, 0x6581, "cut at op {cut}: memory failure reported");
        for keep_unsynced in [false, true] {
            let card = Card::open(storage.after_power_cut(keep_unsynced)).unwrap();
            let after = snapshot(&card);
            assert!(
                after == old || after == new,
                "cut at op {cut}/{ops} (keep unsynced {keep_unsynced}): mixed state {after:?}"
            );
            if !keep_unsynced {
                assert_eq!(after, old, "nothing was synced, so the old state must win");
            }
        }
    }
    new
}

#[test]
fn debit_on_a_small_card() {
    check_every_cut(3, TransferKind::Debit, request(200, 250), 2);
}

#[test]
fn credit_on_a_small_card() {
    check_every_cut(3, TransferKind::Credit, request(200, 250), 2);
}

#[test]
fn debit_on_a_full_card_spanning_several_pages() {
    // More transfers than the log holds: the log has wrapped and the slot
    // takes more than one page write.
    check_every_cut(70, TransferKind::Debit, request(200, 250), 3);
}

#[test]
fn credit_on_a_full_card_spanning_several_pages() {
    check_every_cut(70, TransferKind::Credit, request(200, 250), 3);
}

/// PUT KEY: a power cut at every write step leaves the old keys or the
/// new ones (a session opens under exactly one set), never a mix, and the
/// value untouched.
#[test]
fn put_key_on_a_full_card() {
    use kessai_card::protocol::put_key_command;
    let base = prepared(70);
    let old = keys();
    let new = crate::rekey::keys_v2();
    let plain = put_key_command(old.version, &new, &old.dek);
    let before = snapshot(&Card::open(base.clone()).unwrap());
    let (sw, done, ops) = run(&base, &plain, None);
    assert_eq!(sw, 0x9000);
    assert!(ops >= 2, "expected at least 2 write steps, got {ops}");
    let opens = |storage: MemoryStorage, keys: kessai_scp03::StaticKeys| {
        let card = Card::open(storage).unwrap();
        let mut t = Terminal::new(InProcessReader::new(card));
        t.select().unwrap();
        t.open_session(keys, [3; 8]).is_ok()
    };
    assert!(opens(done.after_power_cut(false), new.clone()));
    for cut in 0..ops {
        let (sw, storage, _) = run(&base, &plain, Some(cut));
        assert_eq!(sw, 0x6581, "cut at op {cut}: memory failure reported");
        for keep_unsynced in [false, true] {
            let after = storage.after_power_cut(keep_unsynced);
            let (with_old, with_new) = (opens(after.clone(), old.clone()), opens(after.clone(), new.clone()));
            assert!(with_old != with_new, "cut at op {cut} (keep unsynced {keep_unsynced}): exactly one key set");
            if !keep_unsynced {
                assert!(with_old, "nothing was synced, so the old keys must win");
            }
            let card = Card::open(after).unwrap();
            let now = snapshot(&card);
            assert_eq!((now.balance, now.counter, now.log), (before.balance, before.counter, before.log.clone()));
            let version = card.state().public_info().key_version;
            assert_eq!(version, if with_new { 2 } else { 1 }, "the key version the card reports is its keys'");
        }
    }
}
