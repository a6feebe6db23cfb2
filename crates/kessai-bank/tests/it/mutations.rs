//! Thousands of damaged bank files, derived from the fixtures by a seeded
//! generator: flipped bits, overwritten, inserted, deleted and duplicated
//! bytes, truncations. Reading any of them must return, never panic; a
//! failure prints the seed and mutation that replay it.

use std::panic::{AssertUnwindSafe, catch_unwind};

use kessai_bank::camt::{DraftEntry, EntryKind};
use kessai_bank::limits::MAX_ENTRIES;
use kessai_bank::{camt054, pain002, parse, read_outcomes, rf, zengin};
use kessai_core::Currency;
use kessai_core::time::Timestamp;

use crate::common::{Rng, batch, date, money, vector, zengin_line};

/// Bytes that matter to the formats, so mutations hit the parsers' edges
/// more often than uniformly random bytes would.
const INTERESTING: &[u8] = b"0123456789 <>/&;\"'=.-+\r\n\x00\x7F\x80\xA1\xDF\xE0\xFF129RFBOOKCRDTDBIT";

fn mutate(rng: &mut Rng, input: &[u8]) -> (Vec<u8>, String) {
    let mut out = input.to_vec();
    let at = rng.index(out.len());
    let how = rng.below(7);
    let what = match how {
        0 => {
            let bit = rng.below(8);
            if let Some(b) = out.get_mut(at) {
                *b ^= 1 << bit;
            }
            format!("flip bit {bit} at {at}")
        }
        1 => {
            let byte = if rng.chance(2) { *rng.pick(INTERESTING) } else { u8::try_from(rng.below(256)).unwrap() };
            if let Some(b) = out.get_mut(at) {
                *b = byte;
            }
            format!("set {byte:#04x} at {at}")
        }
        2 => {
            out.truncate(at);
            format!("truncate at {at}")
        }
        3 => {
            let len = 1 + rng.index(40);
            out.drain(at..(at + len).min(out.len()));
            format!("delete {len} at {at}")
        }
        4 => {
            let len = 1 + rng.index(8);
            let bytes: Vec<u8> = (0..len).map(|_| *rng.pick(INTERESTING)).collect();
            out.splice(at..at, bytes.iter().copied());
            format!("insert {bytes:?} at {at}")
        }
        5 => {
            let len = 1 + rng.index(400);
            let chunk: Vec<u8> = out[at..(at + len).min(out.len())].to_vec();
            out.splice(at..at, chunk);
            format!("duplicate {len} at {at}")
        }
        _ => {
            // Several small changes at once.
            let mut notes = Vec::new();
            for _ in 0..4 {
                let (next, note) = mutate(rng, &out);
                out = next;
                notes.push(note);
            }
            notes.join(", ")
        }
    };
    (out, what)
}

fn survive_mutations(name: &str, input: &[u8], seed: u64, rounds: usize) -> usize {
    let mut rng = Rng::new(seed);
    let mut accepted = 0;
    for round in 0..rounds {
        let (bytes, what) = mutate(&mut rng, input);
        let outcome = catch_unwind(AssertUnwindSafe(|| parse(&bytes)));
        match outcome {
            Ok(Ok(statement)) => {
                accepted += 1;
                assert!(statement.credits.len() + statement.debits <= MAX_ENTRIES);
                let mut keys: Vec<&str> = statement.credits.iter().map(|c| c.entry_key.as_str()).collect();
                keys.sort_unstable();
                keys.dedup();
                assert_eq!(keys.len(), statement.credits.len(), "{name} seed {seed} round {round}: {what}");
            }
            Ok(Err(e)) => {
                // Every refusal can be shown to a person.
                assert!(!e.to_string().is_empty());
            }
            Err(_) => panic!("{name}: parse panicked, seed {seed} round {round}: {what}"),
        }
    }
    accepted
}

fn written_notification() -> Vec<u8> {
    let mut draft =
        camt054::NotificationDraft::new("NTF-1", "JP-POOL-1", Timestamp::from_unix_s(1_777_600_000)).unwrap();
    let on = date("2026-05-01");
    draft
        .push(
            DraftEntry::new(EntryKind::Credit, money(5_000, Currency::JPY), on, "B-1")
                .unwrap()
                .with_reference(rf::make("KS000042").unwrap())
                .with_remitter("ﾔﾏﾀﾞ ﾀﾛｳ")
                .unwrap()
                .with_remittance("RF92 MEMBER7")
                .unwrap(),
        )
        .unwrap();
    draft.push(DraftEntry::new(EntryKind::CreditReversal, money(5_000, Currency::JPY), on, "B-1").unwrap()).unwrap();
    camt054::write(&draft).into_bytes()
}

#[test]
fn damaged_zengin_files_never_panic() {
    let accepted = survive_mutations("zengin", &vector("zengin-transfer-notice.bin"), 1, 3_000);
    // Most damage is caught (a byte in a blank dummy area is not damage).
    assert!(accepted < 1_500, "{accepted} of 3000 damaged files accepted");
}

#[test]
fn damaged_camt_statements_never_panic() {
    survive_mutations("camt053", &vector("camt053-bank.xml"), 2, 3_000);
}

#[test]
fn damaged_camt_notifications_never_panic() {
    survive_mutations("camt054", &written_notification(), 3, 2_000);
}

/// Like [`survive_mutations`], for the payout outcome reader.
fn survive_outcome_mutations(name: &str, input: &[u8], seed: u64, rounds: usize) -> usize {
    let mut rng = Rng::new(seed);
    let mut accepted = 0;
    for round in 0..rounds {
        let (bytes, what) = mutate(&mut rng, input);
        match catch_unwind(AssertUnwindSafe(|| read_outcomes(&bytes))) {
            Ok(Ok(report)) => {
                accepted += 1;
                assert!(report.outcomes.len() <= MAX_ENTRIES);
                let mut keys: Vec<&str> = report.outcomes.iter().map(|o| o.entry_key.as_str()).collect();
                keys.sort_unstable();
                keys.dedup();
                assert_eq!(keys.len(), report.outcomes.len(), "{name} seed {seed} round {round}: {what}");
            }
            Ok(Err(e)) => assert!(!e.to_string().is_empty()),
            Err(_) => panic!("{name}: read_outcomes panicked, seed {seed} round {round}: {what}"),
        }
    }
    accepted
}

fn written_result() -> Vec<u8> {
    let lines = (0..4).map(|n| zengin_line(&format!("PO{n}"), 1_000 * (n + 1))).collect();
    let results = [
        zengin::TransferResult::Transferred,
        zengin::TransferResult::NoSuchAccount,
        zengin::TransferResult::NameMismatch,
        zengin::TransferResult::InsufficientFunds,
    ];
    zengin::write_transfer_result(&batch(lines), &results).unwrap()
}

#[test]
fn damaged_zengin_results_never_panic() {
    let accepted = survive_outcome_mutations("zengin result", &written_result(), 4, 3_000);
    assert!(accepted < 1_500, "{accepted} of 3000 damaged files accepted");
}

#[test]
fn damaged_status_reports_never_panic() {
    let xml = pain002::write(&crate::outcomes::status_report()).unwrap();
    survive_outcome_mutations("pain002", xml.as_bytes(), 5, 2_000);
}

#[test]
fn damaged_payout_notifications_never_panic() {
    let xml = camt054::write(&crate::outcomes::payout_notification());
    survive_outcome_mutations("camt054 payouts", xml.as_bytes(), 6, 1_500);
    survive_outcome_mutations("camt054 batch", crate::outcomes::BATCH_BOOKED.as_bytes(), 7, 1_500);
    // The credit reader meets the same files.
    survive_mutations("camt054 payouts (credits)", xml.as_bytes(), 8, 1_000);
}
