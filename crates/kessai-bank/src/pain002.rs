//! ISO 20022 pain.002 (CustomerPaymentStatusReport): the bank's answer to
//! a pain.001, read by [`crate::read_outcomes`] and written by [`write`]
//! for the simulated bank and the tests.
//!
//! Reading accepts versions 03 to 10: the elements read have kept their
//! names and nesting across them (`OrgnlGrpInfAndSts/OrgnlMsgId`,
//! `GrpSts`, `OrgnlPmtInfAndSts/OrgnlPmtInfId`, `PmtInfSts`,
//! `TxInfAndSts/OrgnlEndToEndId`, `TxSts`, `StsRsnInf/Rsn/Cd`,
//! `OrgnlTxRef/Amt/InstdAmt`). Each transaction reported becomes a
//! [`PayoutOutcome`]:
//!
//! - `RJCT`: [`PayoutStatus::Rejected`], with the first `StsRsnInf` reason
//!   code;
//! - `ACSC` (settlement completed on the debtor's account) and `ACCC`
//!   (on the creditor's): [`PayoutStatus::Settled`];
//! - anything else (`RCVD`, `ACTC`, `ACCP`, `ACSP`, `ACWC`, `PDNG`, …):
//!   [`PayoutStatus::Pending`], reported and changing nothing.
//!
//! A transaction without a `TxSts` has its payment information block's
//! status, else the group's. A group status (or the one payment
//! information block's, whose id our pain.001 makes the message id) of
//! `RJCT` rejects the whole batch: the report says so in
//! [`PayoutReport::group_rejected`], since a bank need not list the
//! transactions of a batch it refused. A rejected payment information
//! block with another id than the message's is refused: kessai writes one
//! block per message and cannot tell which of its lines such a report
//! means. Other group statuses change nothing by themselves.

use std::collections::HashSet;

use kessai_core::Money;
use kessai_core::time::Timestamp;
use roxmltree::Node;

use crate::camt::{Names, date_time, decimal, draft_text, missing, money};
use crate::limits::{MAX_CODE_CHARS, MAX_ENTRIES, MAX_ID_CHARS};
use crate::payout::{GroupRejected, Outcomes, PayoutFormat, PayoutOutcome, PayoutReport, PayoutStatus};
use crate::xml_out::XmlOut;
use crate::{BankFileError, pain001};

/// The namespace written.
pub const NAMESPACE: &str = "urn:iso:std:iso:20022:tech:xsd:pain.002.001.10";

const NAMESPACE_PREFIX: &str = "urn:iso:std:iso:20022:tech:xsd:pain.002.001.";
/// Versions read.
const VERSIONS: std::ops::RangeInclusive<u8> = 3..=10;

/// The version of a pain.002 namespace we read.
pub(crate) fn version_of(namespace: &str) -> Option<u8> {
    let version = namespace.strip_prefix(NAMESPACE_PREFIX)?;
    let two_digits = version.len() == 2 && version.bytes().all(|b| b.is_ascii_digit());
    version.parse().ok().filter(|v| two_digits && VERSIONS.contains(v))
}

// ---------------------------------------------------------------------------
// Reading.

/// A status code as a payout's state.
fn status_of(code: Option<&str>) -> PayoutStatus {
    match code {
        Some("RJCT") => PayoutStatus::Rejected,
        Some("ACSC" | "ACCC") => PayoutStatus::Settled,
        _ => PayoutStatus::Pending,
    }
}

/// A status and the reason its first `StsRsnInf` gives.
struct Status {
    code: Option<String>,
    reason: Option<String>,
}

impl Status {
    fn read(x: &Names, node: Node, element: &str, at: &str) -> Result<Status, BankFileError> {
        let code = x.text(node, element, at, MAX_ID_CHARS)?;
        let reason = match x.child(node, "StsRsnInf") {
            Some(info) => x.reason(info, &format!("{at}/StsRsnInf"))?,
            None => None,
        };
        Ok(Status { code, reason })
    }
}

/// Reads a pain.002 document.
pub(crate) fn read(doc: &roxmltree::Document, version: u8) -> Result<PayoutReport, BankFileError> {
    let root = doc.root_element();
    let x = Names { ns: root.tag_name().namespace().unwrap_or("") };
    x.root(root)?;
    let report = x.child(root, "CstmrPmtStsRpt").ok_or_else(|| missing("CstmrPmtStsRpt"))?;
    let at = "CstmrPmtStsRpt";
    let header = x.child(report, "GrpHdr").ok_or_else(|| missing(&format!("{at}/GrpHdr")))?;
    let id = x.required(header, "MsgId", &format!("{at}/GrpHdr"), MAX_ID_CHARS)?;
    let group_at = format!("{at}/OrgnlGrpInfAndSts");
    let group = x.child(report, "OrgnlGrpInfAndSts").ok_or_else(|| missing(&group_at))?;
    let original_message_id = x.required(group, "OrgnlMsgId", &group_at, MAX_ID_CHARS)?;
    let group_status = Status::read(&x, group, "GrpSts", &group_at)?;
    let rejected = |status: &Status| GroupRejected {
        original_message_id: original_message_id.clone(),
        reason: status.reason.clone(),
    };
    let mut group_rejected = (group_status.code.as_deref() == Some("RJCT")).then(|| rejected(&group_status));

    let blocks: Vec<Node> = x.children(report, "OrgnlPmtInfAndSts").collect();
    let transactions: usize = blocks.iter().map(|b| x.children(*b, "TxInfAndSts").count()).sum();
    if transactions > MAX_ENTRIES {
        return Err(BankFileError::TooManyEntries { max: MAX_ENTRIES });
    }
    let mut out = Outcomes::new();
    for (i, block) in blocks.iter().enumerate() {
        let at = format!("{at}/OrgnlPmtInfAndSts[{}]", i + 1);
        let block_id = x.required(*block, "OrgnlPmtInfId", &at, MAX_ID_CHARS)?;
        let block_status = Status::read(&x, *block, "PmtInfSts", &at)?;
        if block_status.code.as_deref() == Some("RJCT") {
            if block_id != original_message_id {
                let found = block_id.chars().take(40).collect();
                let expected = "the id of the message (kessai writes one payment information block per message)";
                return Err(BankFileError::BadValue { at: format!("{at}/OrgnlPmtInfId"), found, expected });
            }
            group_rejected.get_or_insert_with(|| rejected(&block_status));
        }
        // A transaction without a status has its block's, else the group's.
        let inherited = if block_status.code.is_some() { &block_status } else { &group_status };
        for (j, tx) in x.children(*block, "TxInfAndSts").enumerate() {
            let at = format!("{at}/TxInfAndSts[{}]", j + 1);
            let end_to_end_id = x.required(tx, "OrgnlEndToEndId", &at, MAX_ID_CHARS)?;
            let own = Status::read(&x, tx, "TxSts", &at)?;
            let status = if own.code.is_some() { &own } else { inherited };
            let amount = match x.path(tx, &["OrgnlTxRef", "Amt", "InstdAmt"]) {
                Some(amt) => Some(money(amt, &format!("{at}/OrgnlTxRef/Amt/InstdAmt"))?),
                None => None,
            };
            out.push(PayoutOutcome {
                entry_key: format!("{id}/{end_to_end_id}"),
                end_to_end_id,
                status: status_of(status.code.as_deref()),
                amount,
                reason: own.reason.clone().or_else(|| status.reason.clone()),
                booked_on: None,
            })?;
        }
    }
    Ok(PayoutReport { format: PayoutFormat::Pain002 { version }, id, outcomes: out.finish(), group_rejected })
}

// ---------------------------------------------------------------------------
// Writing (version 10).

/// A status report to write: what the bank says about one pain.001.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// The report's own id (`GrpHdr/MsgId`), 1–35 characters.
    pub message_id: String,
    pub created_at: Timestamp,
    /// The batch reported on: its pain.001 `MsgId` (and `PmtInfId`).
    pub original_message_id: String,
    /// The whole batch's status (`GrpSts`: `RJCT`, `ACCP`, `PART`, …).
    pub group_status: Option<String>,
    /// The reason code for the group status.
    pub group_reason: Option<String>,
    /// Each transaction reported, in order.
    pub transactions: Vec<TransactionStatus>,
}

/// One transaction's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionStatus {
    /// The payout's end-to-end id (`OrgnlEndToEndId`).
    pub end_to_end_id: String,
    /// `TxSts`: `RJCT`, `ACSC`, `ACCC`, `ACSP`, `ACTC`, `PDNG`, …
    pub status: String,
    /// The reason code (`StsRsnInf/Rsn/Cd`), e.g. `AC04`.
    pub reason: Option<String>,
    /// The amount of the original transaction (`OrgnlTxRef/Amt/InstdAmt`).
    pub amount: Option<Money>,
}

/// A status or reason code: 1–4 upper-case letters and digits, as ISO
/// 20022's external code lists spell them.
fn code(field: &'static str, code: &str) -> Result<(), BankFileError> {
    let ok = (1..=MAX_CODE_CHARS).contains(&code.len())
        && code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if !ok {
        let text = code.chars().take(40).collect();
        return Err(BankFileError::BadText { field, text, expected: "1-4 upper-case letters and digits" });
    }
    Ok(())
}

/// The report as pain.002.001.10 XML, valid against the official schema
/// (`tests/vectors/pain.002.001.10.xsd`). Refuses what a reader would
/// refuse: ids that do not fit, malformed codes, one end-to-end id twice,
/// too many transactions.
pub fn write(report: &StatusReport) -> Result<String, BankFileError> {
    draft_text("message id", &report.message_id, MAX_ID_CHARS)?;
    draft_text("original message id", &report.original_message_id, MAX_ID_CHARS)?;
    if let Some(status) = &report.group_status {
        code("group status", status)?;
    }
    if let Some(reason) = &report.group_reason {
        code("group reason", reason)?;
    }
    if report.transactions.len() > MAX_ENTRIES {
        return Err(BankFileError::TooManyEntries { max: MAX_ENTRIES });
    }
    let mut seen = HashSet::new();
    for tx in &report.transactions {
        draft_text("end-to-end id", &tx.end_to_end_id, MAX_ID_CHARS)?;
        if !seen.insert(tx.end_to_end_id.trim()) {
            return Err(BankFileError::DuplicateEntry { key: format!("{}/{}", report.message_id, tx.end_to_end_id) });
        }
        code("transaction status", &tx.status)?;
        if let Some(reason) = &tx.reason {
            code("transaction reason", reason)?;
        }
    }

    let mut x = XmlOut::document(NAMESPACE);
    x.open("CstmrPmtStsRpt");
    x.open("GrpHdr");
    x.leaf("MsgId", report.message_id.trim());
    x.leaf("CreDtTm", &date_time(report.created_at));
    x.close();
    x.open("OrgnlGrpInfAndSts");
    x.leaf("OrgnlMsgId", report.original_message_id.trim());
    x.leaf("OrgnlMsgNmId", pain001::MESSAGE_NAME);
    if let Some(status) = &report.group_status {
        x.leaf("GrpSts", status);
    }
    reason(&mut x, report.group_reason.as_deref());
    x.close();
    if !report.transactions.is_empty() {
        x.open("OrgnlPmtInfAndSts");
        x.leaf("OrgnlPmtInfId", report.original_message_id.trim());
        for tx in &report.transactions {
            x.open("TxInfAndSts");
            x.leaf("OrgnlEndToEndId", tx.end_to_end_id.trim());
            x.leaf("TxSts", &tx.status);
            reason(&mut x, tx.reason.as_deref());
            if let Some(amount) = tx.amount {
                let currency = amount.currency();
                x.open("OrgnlTxRef");
                x.open("Amt");
                let text = decimal(u128::from(amount.amount_minor()), currency.exponent());
                x.leaf_with("InstdAmt", "Ccy", currency.code(), &text);
                x.close();
                x.close();
            }
            x.close();
        }
    }
    Ok(x.finish())
}

fn reason(x: &mut XmlOut, code: Option<&str>) {
    if let Some(code) = code {
        x.open("StsRsnInf");
        x.open("Rsn");
        x.leaf("Cd", code);
        x.close();
        x.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_name_the_versions_read() {
        assert_eq!(version_of(NAMESPACE), Some(10));
        assert_eq!(version_of(&format!("{NAMESPACE_PREFIX}03")), Some(3));
        for bad in ["02", "11", "1", "+9", "010", ""] {
            assert_eq!(version_of(&format!("{NAMESPACE_PREFIX}{bad}")), None, "{bad}");
        }
        assert_eq!(version_of("urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"), None);
    }

    #[test]
    fn statuses_map_to_what_they_mean_for_a_payout() {
        assert_eq!(status_of(Some("RJCT")), PayoutStatus::Rejected);
        assert_eq!(status_of(Some("ACSC")), PayoutStatus::Settled);
        assert_eq!(status_of(Some("ACCC")), PayoutStatus::Settled);
        for pending in [Some("ACTC"), Some("ACSP"), Some("PDNG"), Some("ACCP"), Some("RCVD"), None] {
            assert_eq!(status_of(pending), PayoutStatus::Pending, "{pending:?}");
        }
    }
}
