//! The examination of card logs against the books (seed 001's information
//! management server "carefully examines" the collected logs).
//!
//! Card logs are collected when a statement session reads them
//! (`center_card_log`). The audit reads them and what the books say each
//! card did (completed settlements: debits; applied value updates: credits
//! and debits; the issuance credit), and names every difference, by kind:
//! a transfer on the card the books do not hold (`missing_in_books`), one
//! the books hold within the collected range that the card's log lacks
//! (`missing_on_card`), one whose kind, amount or counter differs
//! (`amount_differs`), counters that skip (`gap`), one transaction id on
//! two records or two records for one counter (`replay`), and a last
//! balance other than the books' float (`balance_differs`). A difference
//! is recorded once and stays open until an operator resolves it. The
//! audit only reads the books; it never changes them.

use kessai_core::ids::CardId;
use kessai_core::time::Timestamp;
use serde::Serialize;

use crate::books::initial_value_id;
use crate::purchase::{Phase, Settlement};
use crate::service::{Center, CenterError};
use crate::statement::{LogEntry, LogKind};
use crate::value::ValueUpdate;
use kessai_core::messages::value_update::Direction;

/// What kind of difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DifferenceKind {
    MissingInBooks,
    MissingOnCard,
    AmountDiffers,
    Gap,
    Replay,
    BalanceDiffers,
}

impl DifferenceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DifferenceKind::MissingInBooks => "missing_in_books",
            DifferenceKind::MissingOnCard => "missing_on_card",
            DifferenceKind::AmountDiffers => "amount_differs",
            DifferenceKind::Gap => "gap",
            DifferenceKind::Replay => "replay",
            DifferenceKind::BalanceDiffers => "balance_differs",
        }
    }
}

/// One difference between a card's log and the books.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub card_id: CardId,
    pub kind: DifferenceKind,
    /// The card counter it is at (the first missing one, for a gap).
    pub counter: u32,
    /// The transaction, hex; empty for a gap or a balance.
    pub transaction_id: String,
    pub detail: String,
}

impl Difference {
    /// `aud_` and 32 hex digits of SHA-256 over what identifies it: the same
    /// difference found by any instance, in any run, has the same id.
    pub fn id(&self) -> String {
        let key = format!("{}\n{}\n{}\n{}", self.card_id, self.kind.as_str(), self.counter, self.transaction_id);
        let digest = kessai_core::digest::Sha256Digest::of(key.as_bytes()).to_string();
        format!("aud_{}", &digest[..32])
    }
}

/// A difference as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DifferenceRow {
    pub id: String,
    pub card_id: String,
    pub kind: String,
    pub counter: u64,
    pub transaction_id: String,
    pub detail: String,
    pub found_at: u64,
    /// `open` or `resolved`.
    pub status: String,
    pub resolved_by: Option<String>,
    pub note: Option<String>,
}

/// A card transaction as the books hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookEntry {
    pub transaction_id: String,
    /// Which way, as the card's log says it.
    pub kind: LogKind,
    pub amount_minor: u64,
    /// The card's counter after it, when the card's sealed answer named it.
    pub counter: Option<u32>,
    /// Sealed and not yet settled either way: the card may or may not have
    /// applied it, and recovery will say.
    pub pending: bool,
    /// Which record: a settlement or value update id, or `issuance`.
    pub what: String,
}

/// What the books hold of a card: its settlements and value updates whose
/// sealed command left the center, and the issuance credit (`issued`: its
/// amount, if the books posted one).
pub fn book_entries(
    card: &CardId,
    settlements: &[Settlement],
    updates: &[ValueUpdate],
    issued: Option<u64>,
) -> Vec<BookEntry> {
    let mut entries = Vec::new();
    for s in settlements {
        let pending = s.phase().debit_issued();
        let counter = s.completion().map(|c| c.card_counter);
        if s.phase() == Phase::Completed || pending {
            entries.push(BookEntry {
                transaction_id: hex::encode(s.transaction_id.as_bytes()),
                kind: LogKind::Debit,
                amount_minor: s.bill.amount.amount_minor(),
                counter,
                pending,
                what: s.id.to_string(),
            });
        }
    }
    for u in updates {
        let pending = u.phase().debit_issued();
        let applied = u.applied();
        if applied.is_some() || pending {
            entries.push(BookEntry {
                transaction_id: hex::encode(u.transaction_id.as_bytes()),
                kind: match u.direction {
                    Direction::Credit => LogKind::Credit,
                    Direction::Debit => LogKind::Debit,
                },
                amount_minor: u.amount.amount_minor(),
                counter: applied.map(|a| a.card_counter),
                pending,
                what: u.id.to_string(),
            });
        }
    }
    if let Some(amount_minor) = issued {
        entries.push(BookEntry {
            transaction_id: hex::encode(initial_value_id(card).to_be_bytes()),
            kind: LogKind::Credit,
            amount_minor,
            counter: None,
            pending: false,
            what: "issuance".into(),
        });
    }
    entries
}

/// Examines one card's collected `log` (oldest first) against the books'
/// `entries` and the card's float (`(posted, held)`). Pure.
pub fn examine(card: &CardId, log: &[LogEntry], entries: &[BookEntry], float: Option<(u64, u64)>) -> Vec<Difference> {
    use std::collections::{BTreeMap, HashMap};
    let mut found = Vec::new();
    let mut differ = |kind, counter, tx: &str, detail: String| {
        found.push(Difference { card_id: *card, kind, counter, transaction_id: tx.to_owned(), detail });
    };
    // Replays: one transaction id on records at several counters, or
    // several records for one counter.
    let mut by_counter: BTreeMap<u32, Vec<&LogEntry>> = BTreeMap::new();
    let mut first_seen: HashMap<&str, u32> = HashMap::new();
    for e in log {
        by_counter.entry(e.counter).or_default().push(e);
        match first_seen.get(e.transaction_id.as_str()) {
            Some(first) if *first != e.counter => differ(
                DifferenceKind::Replay,
                e.counter,
                &e.transaction_id,
                format!("transaction {} again at counter {} (first at {first})", e.transaction_id, e.counter),
            ),
            Some(_) => {}
            None => {
                first_seen.insert(&e.transaction_id, e.counter);
            }
        }
    }
    for (counter, records) in &by_counter {
        if records.len() > 1 {
            differ(
                DifferenceKind::Replay,
                *counter,
                "",
                format!("the card reported {} different records for counter {counter}", records.len()),
            );
        }
    }
    // Gaps between the counters collected.
    let counters: Vec<u32> = by_counter.keys().copied().collect();
    for pair in counters.windows(2) {
        if let [a, b] = pair
            && *b > a.saturating_add(1)
        {
            differ(
                DifferenceKind::Gap,
                a + 1,
                "",
                format!("counters {} to {} are not in the card's log as collected", a + 1, b - 1),
            );
        }
    }
    // Each record against the books.
    let books: HashMap<&str, &BookEntry> = entries.iter().map(|b| (b.transaction_id.as_str(), b)).collect();
    for e in log {
        if first_seen.get(e.transaction_id.as_str()).is_some_and(|first| *first != e.counter) {
            continue; // named a replay above
        }
        match books.get(e.transaction_id.as_str()) {
            None => differ(
                DifferenceKind::MissingInBooks,
                e.counter,
                &e.transaction_id,
                format!("the card's {} of {} at counter {} is not in the books", e.kind, e.amount_minor, e.counter),
            ),
            Some(b) if b.kind != e.kind || b.amount_minor != e.amount_minor => differ(
                DifferenceKind::AmountDiffers,
                e.counter,
                &e.transaction_id,
                format!(
                    "the card has a {} of {}, the books ({}) a {} of {}",
                    e.kind, e.amount_minor, b.what, b.kind, b.amount_minor
                ),
            ),
            Some(b) if b.counter.is_some_and(|c| c != e.counter) => differ(
                DifferenceKind::AmountDiffers,
                e.counter,
                &e.transaction_id,
                format!("the card applied it at counter {}, the books ({}) at {:?}", e.counter, b.what, b.counter),
            ),
            Some(_) => {}
        }
    }
    // What the books hold within the collected range that the card lacks.
    if let (Some(low), Some(high)) = (counters.first(), counters.last()) {
        for b in entries {
            if let Some(c) = b.counter.filter(|c| (low..=high).contains(&c))
                && !first_seen.contains_key(b.transaction_id.as_str())
            {
                differ(
                    DifferenceKind::MissingOnCard,
                    c,
                    &b.transaction_id,
                    format!(
                        "the books' {} {} of {} at counter {c} is not in the card's log",
                        b.what, b.kind, b.amount_minor
                    ),
                );
            }
        }
        // The last balance, when the books know nothing after it and hold
        // nothing pending.
        let newest = by_counter.get(high).and_then(|r| r.first());
        let later = entries.iter().any(|b| b.pending || b.counter.is_some_and(|c| c > *high));
        if let (Some(newest), Some((posted, 0)), false) = (newest, float, later)
            && newest.balance_after_minor != posted
        {
            differ(
                DifferenceKind::BalanceDiffers,
                *high,
                "",
                format!("the card's last balance is {}, the books' float {posted}", newest.balance_after_minor),
            );
        }
    }
    found
}

/// What one audit run found.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub cards: usize,
    pub records: usize,
    pub differences: Vec<Difference>,
    /// How many of them were not recorded before.
    pub new: u64,
}

impl Center {
    /// Examines every card whose log was collected; records the differences
    /// found (each once). Reads the books only.
    pub async fn audit(&self, now: Timestamp) -> Result<AuditReport, CenterError> {
        let cards = self.db.collected_cards().await?;
        let (mut records, mut differences) = (0, Vec::new());
        for card in &cards {
            let log = self.db.collected_log(card).await?;
            let (settlements, updates) = self.db.card_history(card).await?;
            let issued = self
                .books
                .ledger()
                .lookup_transfers(&[initial_value_id(card)])
                .await
                .map_err(crate::books::BooksError::from)?
                .first()
                .map(|t| t.amount_minor);
            let mut entries = book_entries(card, &settlements, &updates, issued);
            entries.extend(self.db.token_book_entries(card).await?);
            let float = self.books.card_float(card).await?;
            records += log.len();
            differences.extend(examine(card, &log, &entries, float));
        }
        let new = self.db.record_differences(&differences, now).await?;
        Ok(AuditReport { cards: cards.len(), records, differences, new })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: LogKind, tx: &str, amount_minor: u64, counter: u32, balance: u64) -> LogEntry {
        LogEntry {
            kind,
            transaction_id: tx.into(),
            amount_minor,
            counter,
            balance_after_minor: balance,
            counterpart: "00".repeat(8),
            time_unix_s: 1_790_000_000,
        }
    }

    /// A token the card says it stored or gave up, which no book of the
    /// center's holds (the center issues none yet, #21): an operator is
    /// told, never a guess made.
    #[test]
    fn a_token_record_the_books_lack_is_a_difference() {
        let card = CardId::from_bytes([1; 8]);
        let books = [BookEntry {
            transaction_id: "aa".into(),
            kind: LogKind::Credit,
            amount_minor: 500,
            counter: Some(1),
            pending: false,
            what: "issuance".into(),
        }];
        let log = [
            entry(LogKind::Credit, "aa", 500, 1, 500),
            entry(LogKind::TokenStored, "bb", 12_000, 2, 500),
            entry(LogKind::TokenRedeemed, "cc", 12_000, 3, 500),
        ];
        let found = examine(&card, &log, &books, Some((500, 0)));
        let named: Vec<_> = found.iter().map(|d| (d.kind, d.counter, d.transaction_id.as_str())).collect();
        assert_eq!(
            named,
            [(DifferenceKind::MissingInBooks, 2, "bb"), (DifferenceKind::MissingInBooks, 3, "cc")],
            "{found:?}"
        );
        assert!(found[0].detail.contains("token_stored of 12000"), "{}", found[0].detail);
    }
}
