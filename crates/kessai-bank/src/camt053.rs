//! Writing ISO 20022 camt.053.001.08 (BankToCustomerStatement), as the
//! simulated bank sends the center's pool account statement. Reading is
//! [`crate::parse`].
//!
//! The output is valid against the official ISO 20022 schema
//! (`tests/vectors/camt.053.001.08.xsd`, checked by the tests with
//! xmllint): one statement, an opening (`OPBD`) and a closing (`CLBD`)
//! balance on the creation date, then the entries in the order pushed.

use kessai_core::Money;
use kessai_core::limits::MAX_AMOUNT_MINOR;
use kessai_core::time::Timestamp;

use crate::BankFileError;
use crate::camt::{Balance, DraftEntry, EntryKind, Kind, ReportDraft};

/// The namespace written.
pub const NAMESPACE: &str = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08";

/// A statement to write. Every entry is in the opening balance's currency
/// and the closing balance stays within ±[`MAX_AMOUNT_MINOR`], so
/// [`write`] cannot fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementDraft {
    report: ReportDraft,
    opening_balance: Money,
    closing_minor: i128,
}

impl StatementDraft {
    /// A statement `id` (1–35 characters, also the message id) of
    /// `account` (an IBAN or the bank's own id), created at `created_at`.
    pub fn new(
        id: &str,
        account: &str,
        created_at: Timestamp,
        opening_balance: Money,
    ) -> Result<StatementDraft, BankFileError> {
        Ok(StatementDraft {
            report: ReportDraft::new(id, account, created_at)?,
            opening_balance,
            closing_minor: i128::from(opening_balance.amount_minor()),
        })
    }

    /// Adds an entry, refusing another currency, a closing balance out of
    /// range, a credit whose bank reference an earlier credit has, or one
    /// entry too many.
    pub fn push(&mut self, entry: DraftEntry) -> Result<(), BankFileError> {
        let expected = self.opening_balance.currency();
        let found = entry.amount().currency();
        if found != expected {
            return Err(BankFileError::WrongCurrency { field: "entry amount", found, expected });
        }
        self.report.check(&entry)?;
        let amount = i128::from(entry.amount().amount_minor());
        let closing = match entry.kind() {
            EntryKind::Credit => self.closing_minor + amount,
            EntryKind::Debit | EntryKind::CreditReversal => self.closing_minor - amount,
        };
        let magnitude = u64::try_from(closing.unsigned_abs()).unwrap_or(u64::MAX);
        if magnitude > MAX_AMOUNT_MINOR {
            return Err(BankFileError::OutOfRange {
                field: "closing balance",
                value: magnitude,
                max: MAX_AMOUNT_MINOR,
            });
        }
        self.closing_minor = closing;
        self.report.entries.push(entry);
        Ok(())
    }

    pub fn id(&self) -> &str {
        &self.report.id
    }

    pub fn account(&self) -> &str {
        &self.report.account
    }

    pub fn entries(&self) -> &[DraftEntry] {
        &self.report.entries
    }

    /// Opening balance plus credits minus debits and reversals, in minor
    /// units (negative: overdrawn).
    pub fn closing_balance_minor(&self) -> i128 {
        self.closing_minor
    }
}

/// The statement as camt.053.001.08 XML.
pub fn write(draft: &StatementDraft) -> String {
    let (on, _) = crate::Date::from_unix_s(draft.report.created_at.unix_s());
    let currency = draft.opening_balance.currency();
    let balances = [
        Balance { code: "OPBD", minor: i128::from(draft.opening_balance.amount_minor()), currency, on },
        Balance { code: "CLBD", minor: draft.closing_minor, currency, on },
    ];
    crate::camt::write(Kind::Statement, &draft.report, &balances)
}
