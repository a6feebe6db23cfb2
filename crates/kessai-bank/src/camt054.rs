//! Writing ISO 20022 camt.054.001.08 (BankToCustomerDebitCreditNotification),
//! as the simulated bank notifies single credits. Reading is
//! [`crate::parse`].
//!
//! The output is valid against the official ISO 20022 schema
//! (`tests/vectors/camt.054.001.08.xsd`, checked by the tests with
//! xmllint): one notification, its entries in the order pushed.

use kessai_core::time::Timestamp;

use crate::BankFileError;
use crate::camt::{DraftEntry, Kind, ReportDraft};

/// The namespace written.
pub const NAMESPACE: &str = "urn:iso:std:iso:20022:tech:xsd:camt.054.001.08";

/// A notification to write; [`write`] cannot fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationDraft {
    report: ReportDraft,
}

impl NotificationDraft {
    /// A notification `id` (1–35 characters, also the message id) for
    /// `account` (an IBAN or the bank's own id), created at `created_at`.
    pub fn new(id: &str, account: &str, created_at: Timestamp) -> Result<NotificationDraft, BankFileError> {
        Ok(NotificationDraft { report: ReportDraft::new(id, account, created_at)? })
    }

    /// Adds an entry, refusing a credit whose bank reference an earlier
    /// credit has, or one entry too many.
    pub fn push(&mut self, entry: DraftEntry) -> Result<(), BankFileError> {
        self.report.check(&entry)?;
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
}

/// The notification as camt.054.001.08 XML.
pub fn write(draft: &NotificationDraft) -> String {
    crate::camt::write(Kind::Notification, &draft.report, &[])
}
