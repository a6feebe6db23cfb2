//! ISO 20022 camt.053 (BankToCustomerStatement) and camt.054
//! (BankToCustomerDebitCreditNotification): the reader behind
//! [`crate::parse`], and the entries both writers ([`crate::camt053`],
//! [`crate::camt054`]) take.
//!
//! Reading accepts versions 02 to 08 of both messages. The parts we read
//! have kept their names across versions except two, and both spellings
//! are read in every version: the entry status (`<Sts>BOOK</Sts>` up to
//! 07, `<Sts><Cd>BOOK</Cd></Sts>` in 08) and the debtor's name
//! (`Dbtr/Nm` up to 07, `Dbtr/Pty/Nm` in 08). Only elements in the
//! document's own namespace count, so a foreign element cannot stand in
//! for one of ours. DTDs are refused outright: no entity is ever expanded.
//!
//! A reversal of a credit is booked as a `DBIT` entry with `RvslInd`
//! true (ISO 20022: the indicator shows the entry undoes one of the
//! opposite direction); it is returned as a [`Credit`] with `reversal`
//! set. A `CRDT` entry with `RvslInd` true undoes a debit: it is money back
//! from our own payment, not a member's, and is counted with the debits.
//! So is a `CRDT` entry that returns one of our payments: one whose
//! transaction carries return information (`RtrInf`), or whose bank
//! transaction code is Payments / credit transfer (`ICDT` or `RCDT`) /
//! `RRTN`, the return sub-family public camt readers and samples use for
//! a credit transfer sent back (no copy of ISO's external code list was at
//! hand to cite; `RtrInf` alone is enough, and our writer sends both).
//!
//! The same files tell the center what became of its payouts to stores
//! ([`crate::read_outcomes`]): each booked `DBIT` transaction quoting an
//! `EndToEndId` is a payout settled, each return (above) quoting one is a
//! payout returned, with the reason code of its `RtrInf`.

use kessai_core::limits::MAX_AMOUNT_MINOR;
use kessai_core::time::Timestamp;
use kessai_core::{Currency, Money};
use roxmltree::Node;

use crate::limits::{MAX_ENTRIES, MAX_ID_CHARS, MAX_REMITTANCE_CHARS, MAX_TEXT_CHARS, MAX_XML_NODES};
use crate::payout::{Outcomes, PayoutFormat, PayoutOutcome, PayoutReport, PayoutStatus};
use crate::rf::{self, Reference};
use crate::xml_out::XmlOut;
use crate::{BankFileError, Collector, Credit, Date, Format, Statement, decimal_to_minor, limited};

const NAMESPACE_PREFIX: &str = "urn:iso:std:iso:20022:tech:xsd:";
/// Versions read: `.001.02` to `.001.08`.
const VERSIONS: std::ops::RangeInclusive<u8> = 2..=8;

/// Which of the two messages a document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Statement,
    Notification,
}

impl Kind {
    fn container(self) -> &'static str {
        match self {
            Kind::Statement => "BkToCstmrStmt",
            Kind::Notification => "BkToCstmrDbtCdtNtfctn",
        }
    }

    fn report(self) -> &'static str {
        match self {
            Kind::Statement => "Stmt",
            Kind::Notification => "Ntfctn",
        }
    }

    fn format(self, version: u8) -> Format {
        match self {
            Kind::Statement => Format::Camt053 { version },
            Kind::Notification => Format::Camt054 { version },
        }
    }

    fn payout_format(self, version: u8) -> PayoutFormat {
        match self {
            Kind::Statement => PayoutFormat::Camt053 { version },
            Kind::Notification => PayoutFormat::Camt054 { version },
        }
    }

    /// The namespace of version 08, the one we write.
    pub(crate) fn namespace_08(self) -> &'static str {
        match self {
            Kind::Statement => crate::camt053::NAMESPACE,
            Kind::Notification => crate::camt054::NAMESPACE,
        }
    }
}

pub(crate) fn kind_of(namespace: &str) -> Option<(Kind, u8)> {
    let rest = namespace.strip_prefix(NAMESPACE_PREFIX)?;
    let (kind, version) = match (rest.strip_prefix("camt.053.001."), rest.strip_prefix("camt.054.001.")) {
        (Some(v), _) => (Kind::Statement, v),
        (_, Some(v)) => (Kind::Notification, v),
        _ => return None,
    };
    let two_digits = version.len() == 2 && version.bytes().all(|b| b.is_ascii_digit());
    let version: u8 = version.parse().ok().filter(|v| two_digits && VERSIONS.contains(v))?;
    Some((kind, version))
}

/// Parses an ISO 20022 document: no DTD (so no entity is ever expanded),
/// at most [`MAX_XML_NODES`] nodes.
pub(crate) fn document(text: &str) -> Result<roxmltree::Document<'_>, BankFileError> {
    // roxmltree accepts a DOCTYPE without an internal subset even with
    // DTDs off; we refuse any.
    if text.contains("<!DOCTYPE") {
        return Err(BankFileError::Doctype);
    }
    let options = roxmltree::ParsingOptions { allow_dtd: false, nodes_limit: MAX_XML_NODES, ..Default::default() };
    roxmltree::Document::parse_with_options(text, options).map_err(|e| match e {
        roxmltree::Error::DtdDetected => BankFileError::Doctype,
        roxmltree::Error::NodesLimitReached => BankFileError::TooManyNodes { max: MAX_XML_NODES },
        other => BankFileError::Xml(other.to_string()),
    })
}

/// Reads a camt.053 or camt.054 document.
pub(crate) fn parse(text: &str) -> Result<Statement, BankFileError> {
    let doc = document(text)?;
    let root = doc.root_element();
    let namespace = root.tag_name().namespace().unwrap_or("");
    let (kind, version) =
        kind_of(namespace).ok_or_else(|| BankFileError::UnknownNamespace(namespace.chars().take(100).collect()))?;
    let x = Names { ns: namespace };
    let reports = report_nodes(&x, root, kind)?;
    let mut out = Collector::new();
    for (i, report) in reports.iter().enumerate() {
        read_report(&x, *report, &format!("{}/{}[{}]", kind.container(), kind.report(), i + 1), &mut out)?;
    }
    Ok(out.finish(kind.format(version)))
}

/// The document's statements or notifications, refused if there are none
/// or they hold more than [`MAX_ENTRIES`] entries together.
fn report_nodes<'a, 'i>(x: &Names, root: Node<'a, 'i>, kind: Kind) -> Result<Vec<Node<'a, 'i>>, BankFileError> {
    x.root(root)?;
    let container = x.child(root, kind.container()).ok_or_else(|| missing(kind.container()))?;
    let reports: Vec<Node> = x.children(container, kind.report()).collect();
    if reports.is_empty() {
        return Err(missing(&format!("{}/{}", kind.container(), kind.report())));
    }
    let entries: usize = reports.iter().map(|r| x.children(*r, "Ntry").count()).sum();
    if entries > MAX_ENTRIES {
        return Err(BankFileError::TooManyEntries { max: MAX_ENTRIES });
    }
    Ok(reports)
}

pub(crate) fn missing(at: &str) -> BankFileError {
    BankFileError::Missing { at: at.to_owned() }
}

/// Element lookups within the document's namespace.
pub(crate) struct Names<'n> {
    pub(crate) ns: &'n str,
}

impl Names<'_> {
    fn is(&self, node: Node, name: &str) -> bool {
        node.is_element() && node.tag_name().name() == name && node.tag_name().namespace() == Some(self.ns)
    }

    /// Refuses a root element that is not our namespace's `Document`.
    pub(crate) fn root(&self, root: Node) -> Result<(), BankFileError> {
        if !self.is(root, "Document") {
            let found = root.tag_name().name().chars().take(40).collect();
            return Err(BankFileError::BadValue { at: "/".into(), found, expected: "a Document element" });
        }
        Ok(())
    }

    pub(crate) fn child<'a, 'i>(&self, node: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
        node.children().find(|n| self.is(*n, name))
    }

    pub(crate) fn children<'a, 'i>(&self, node: Node<'a, 'i>, name: &str) -> impl Iterator<Item = Node<'a, 'i>> {
        node.children().filter(move |n| self.is(*n, name))
    }

    pub(crate) fn path<'a, 'i>(&self, node: Node<'a, 'i>, names: &[&str]) -> Option<Node<'a, 'i>> {
        names.iter().try_fold(node, |n, name| self.child(n, name))
    }

    /// The trimmed text of a child element, `None` if absent or blank,
    /// refused if longer than `max` characters.
    pub(crate) fn text(&self, node: Node, name: &str, at: &str, max: usize) -> Result<Option<String>, BankFileError> {
        self.child(node, name).map(|n| text_of(n, &format!("{at}/{name}"), max)).transpose().map(Option::flatten)
    }

    pub(crate) fn required(&self, node: Node, name: &str, at: &str, max: usize) -> Result<String, BankFileError> {
        self.text(node, name, at, max)?.ok_or_else(|| missing(&format!("{at}/{name}")))
    }

    /// A reason code: the `Rsn/Cd` (or `Rsn/Prtry`) of a status or return
    /// reason element.
    pub(crate) fn reason(&self, info: Node, at: &str) -> Result<Option<String>, BankFileError> {
        let Some(reason) = self.child(info, "Rsn") else { return Ok(None) };
        let at = format!("{at}/Rsn");
        Ok(self.text(reason, "Cd", &at, MAX_ID_CHARS)?.or(self.text(reason, "Prtry", &at, MAX_ID_CHARS)?))
    }
}

/// An element's own text (all its text and CDATA children, comments left
/// out), trimmed of XML blanks; `None` if blank.
pub(crate) fn text_of(node: Node, at: &str, max: usize) -> Result<Option<String>, BankFileError> {
    let joined: String = node.children().filter(Node::is_text).filter_map(|t| t.text()).collect();
    let trimmed = joined.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
    limited(|| at.to_owned(), trimmed, max)?;
    Ok((!trimmed.is_empty()).then(|| trimmed.to_owned()))
}

/// What a report (`Stmt` or `Ntfctn`) says about itself.
struct Report {
    id: String,
    account: String,
}

/// A report's id and account.
fn report_header(x: &Names, report: Node, at: &str) -> Result<Report, BankFileError> {
    let id = x.required(report, "Id", at, MAX_ID_CHARS)?;
    let ids = x.path(report, &["Acct", "Id"]).ok_or_else(|| missing(&format!("{at}/Acct/Id")))?;
    let account = match (x.text(ids, "IBAN", &format!("{at}/Acct/Id"), MAX_ID_CHARS)?, x.child(ids, "Othr")) {
        (Some(iban), _) => iban,
        (None, Some(other)) => x.required(other, "Id", &format!("{at}/Acct/Id/Othr"), MAX_ID_CHARS)?,
        (None, None) => return Err(missing(&format!("{at}/Acct/Id/IBAN"))),
    };
    Ok(Report { id, account })
}

fn read_report(x: &Names, report: Node, at: &str, out: &mut Collector) -> Result<(), BankFileError> {
    let here = report_header(x, report, at)?;
    out.report(here.id.clone(), &here.account);
    for (j, ntry) in x.children(report, "Ntry").enumerate() {
        match read_entry(x, ntry, &format!("{at}/Ntry[{}]", j + 1), &here, j + 1)? {
            Booked::Credit(credit) => out.credit(credit)?,
            Booked::Other => out.debit()?,
            Booked::No => {}
        }
    }
    Ok(())
}

/// What an entry is, once read.
enum Booked {
    /// A credit, or the reversal of one.
    Credit(Credit),
    /// A booked debit, or the reversal of one.
    Other,
    /// Not booked (pending, information only): not counted.
    No,
}

/// An entry's `RvslInd`, false when absent.
fn reversal_indicator(x: &Names, ntry: Node, at: &str) -> Result<bool, BankFileError> {
    match x.text(ntry, "RvslInd", at, MAX_ID_CHARS)?.as_deref() {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(other) => Err(bad(&format!("{at}/RvslInd"), other, "true or false")),
    }
}

/// An entry's status code (`BOOK`, `PDNG`, `INFO`…), in either spelling.
fn entry_status(x: &Names, ntry: Node, at: &str) -> Result<Option<String>, BankFileError> {
    let status = x.child(ntry, "Sts").ok_or_else(|| missing(&format!("{at}/Sts")))?;
    match x.child(status, "Cd").or_else(|| x.child(status, "Prtry")) {
        Some(inner) => text_of(inner, &format!("{at}/Sts"), MAX_ID_CHARS),
        None => text_of(status, &format!("{at}/Sts"), MAX_ID_CHARS),
    }
}

/// Whether a credit entry returns one of our own payments: a transaction
/// with return information, or the bank transaction code PMNT / ICDT or
/// RCDT / RRTN on the entry or a transaction.
fn is_return(x: &Names, ntry: Node, transactions: &[Node]) -> bool {
    fn code_of<'a>(node: Option<Node<'a, '_>>) -> Option<&'a str> {
        node.and_then(|n| n.text()).map(str::trim)
    }
    let return_code = |holder: Node| {
        x.path(holder, &["BkTxCd", "Domn"]).is_some_and(|domain| {
            let family = x.child(domain, "Fmly");
            code_of(x.child(domain, "Cd")) == Some("PMNT")
                && matches!(code_of(family.and_then(|f| x.child(f, "Cd"))), Some("ICDT" | "RCDT"))
                && code_of(family.and_then(|f| x.child(f, "SubFmlyCd"))) == Some("RRTN")
        })
    };
    return_code(ntry) || transactions.iter().any(|tx| x.child(*tx, "RtrInf").is_some() || return_code(*tx))
}

fn transactions_of<'a, 'i>(x: &Names, ntry: Node<'a, 'i>) -> Vec<Node<'a, 'i>> {
    x.children(ntry, "NtryDtls").flat_map(|d| x.children(d, "TxDtls")).collect()
}

fn read_entry(x: &Names, ntry: Node, at: &str, report: &Report, ordinal: usize) -> Result<Booked, BankFileError> {
    let direction = x.required(ntry, "CdtDbtInd", at, MAX_ID_CHARS)?;
    let reversal = reversal_indicator(x, ntry, at)?;
    let code = entry_status(x, ntry, at)?;
    let transactions = transactions_of(x, ntry);
    let takes_back_credit = match (direction.as_str(), reversal) {
        // Money back from our own payment is not a member's credit.
        ("CRDT", false) if is_return(x, ntry, &transactions) => {
            return Ok(if code.as_deref() == Some("BOOK") { Booked::Other } else { Booked::No });
        }
        ("CRDT", false) => false,
        ("DBIT", true) => true,
        ("CRDT" | "DBIT", _) => return Ok(if code.as_deref() == Some("BOOK") { Booked::Other } else { Booked::No }),
        (other, _) => return Err(bad(&format!("{at}/CdtDbtInd"), other, "CRDT or DBIT")),
    };
    if code.as_deref() != Some("BOOK") {
        return Ok(Booked::No);
    }
    let mut entry_key = format!("{}/{}", report.account, bank_reference(x, ntry, &transactions, at, report, ordinal)?);
    if takes_back_credit {
        entry_key.push_str("/reversal");
    }
    let remittance = Remittance::read(x, &transactions, at)?;
    Ok(Booked::Credit(Credit {
        entry_key,
        booked_on: booking_date(x, ntry, at)?.to_string(),
        amount: amount(x, ntry, at)?,
        reference: remittance.reference,
        remitter: remitter(x, &transactions, at)?,
        remitter_code: None,
        remittance: remittance.text,
        reversal: takes_back_credit,
    }))
}

fn bad(at: &str, found: &str, expected: &'static str) -> BankFileError {
    BankFileError::BadValue { at: at.to_owned(), found: found.chars().take(40).collect(), expected }
}

fn amount(x: &Names, ntry: Node, at: &str) -> Result<Money, BankFileError> {
    let at = format!("{at}/Amt");
    money(x.child(ntry, "Amt").ok_or_else(|| missing(&at))?, &at)
}

/// An amount element: a decimal in the currency its `Ccy` names.
pub(crate) fn money(amt: Node, at: &str) -> Result<Money, BankFileError> {
    let code = amt.attribute("Ccy").ok_or_else(|| missing(&format!("{at}/@Ccy")))?;
    let currency = Currency::parse(code.trim())
        .map_err(|_| BankFileError::UnknownCurrency { at: at.to_owned(), code: code.chars().take(8).collect() })?;
    let text = text_of(amt, at, crate::limits::MAX_AMOUNT_TEXT_BYTES)?.ok_or_else(|| missing(at))?;
    decimal_to_minor(&text, currency).map_err(|problem| BankFileError::BadAmount { at: at.to_owned(), text, problem })
}

/// `BookgDt/Dt`, or the date part of `BookgDt/DtTm` (the bank's local
/// date, as written).
fn booking_date(x: &Names, ntry: Node, at: &str) -> Result<Date, BankFileError> {
    let at = format!("{at}/BookgDt");
    let booking = x.child(ntry, "BookgDt").ok_or_else(|| missing(&at))?;
    if let Some(date) = x.text(booking, "Dt", &at, MAX_ID_CHARS)? {
        return Date::parse(&date).ok_or(BankFileError::BadDate { at: format!("{at}/Dt"), text: date });
    }
    let date_time = x.text(booking, "DtTm", &at, MAX_ID_CHARS)?.ok_or_else(|| missing(&format!("{at}/Dt")))?;
    let date = date_time.get(..10).filter(|_| date_time.get(10..11) == Some("T")).and_then(Date::parse);
    date.ok_or(BankFileError::BadDate { at: format!("{at}/DtTm"), text: date_time })
}

/// The bank's reference for the entry: its `AcctSvcrRef`, else its first
/// transaction's, else its `NtryRef`, else the statement id and the
/// entry's position (stable only as long as the bank resends the same
/// statement unchanged).
fn bank_reference(
    x: &Names,
    ntry: Node,
    transactions: &[Node],
    at: &str,
    report: &Report,
    ordinal: usize,
) -> Result<String, BankFileError> {
    if let Some(r) = x.text(ntry, "AcctSvcrRef", at, MAX_ID_CHARS)? {
        return Ok(r);
    }
    for (i, tx) in transactions.iter().enumerate() {
        if let Some(refs) = x.child(*tx, "Refs") {
            let at = format!("{at}/NtryDtls/TxDtls[{}]/Refs", i + 1);
            if let Some(r) = x.text(refs, "AcctSvcrRef", &at, MAX_ID_CHARS)? {
                return Ok(r);
            }
        }
    }
    if let Some(r) = x.text(ntry, "NtryRef", at, MAX_ID_CHARS)? {
        return Ok(r);
    }
    Ok(format!("{}#{ordinal}", report.id))
}

/// The payer: `RltdPties/Dbtr/Pty/Nm` (version 08) or `RltdPties/Dbtr/Nm`
/// (earlier), from the first transaction that names one.
fn remitter(x: &Names, transactions: &[Node], at: &str) -> Result<Option<String>, BankFileError> {
    for (i, tx) in transactions.iter().enumerate() {
        let Some(debtor) = x.path(*tx, &["RltdPties", "Dbtr"]) else { continue };
        let at = format!("{at}/NtryDtls/TxDtls[{}]/RltdPties/Dbtr", i + 1);
        let party = x.child(debtor, "Pty").unwrap_or(debtor);
        if let Some(name) = x.text(party, "Nm", &at, MAX_TEXT_CHARS)? {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// An entry's remittance information.
struct Remittance {
    reference: Option<Reference>,
    text: Option<String>,
}

impl Remittance {
    /// The first valid creditor reference in `Strd/CdtrRefInf/Ref`, else in
    /// the `Ustrd` lines; the `Ustrd` lines joined by a space.
    fn read(x: &Names, transactions: &[Node], at: &str) -> Result<Remittance, BankFileError> {
        let mut structured = Vec::new();
        let mut lines = Vec::new();
        for (i, tx) in transactions.iter().enumerate() {
            let Some(info) = x.child(*tx, "RmtInf") else { continue };
            let at = format!("{at}/NtryDtls/TxDtls[{}]/RmtInf", i + 1);
            for (k, line) in x.children(info, "Ustrd").enumerate() {
                lines.extend(text_of(line, &format!("{at}/Ustrd[{}]", k + 1), MAX_TEXT_CHARS)?);
            }
            for (k, strd) in x.children(info, "Strd").enumerate() {
                if let Some(creditor_ref) = x.child(strd, "CdtrRefInf") {
                    let at = format!("{at}/Strd[{}]/CdtrRefInf", k + 1);
                    structured.extend(x.text(creditor_ref, "Ref", &at, MAX_TEXT_CHARS)?);
                }
            }
        }
        let reference = structured.iter().chain(&lines).find_map(|t| rf::find(t));
        let text = lines.join(" ");
        limited(|| format!("{at}/NtryDtls/TxDtls/RmtInf/Ustrd"), &text, MAX_REMITTANCE_CHARS)?;
        Ok(Remittance { reference, text: (!text.is_empty()).then_some(text) })
    }
}

// ---------------------------------------------------------------------------
// Payout outcomes: the debtor account's side.

/// Reads the payouts a camt.053 or camt.054 reports: booked (or pending)
/// debits quoting an `EndToEndId` as settled, returns quoting one as
/// returned. Entries that are neither, and transactions without an
/// end-to-end id (or with `NOTPROVIDED`), say nothing about a payout.
pub(crate) fn read_outcomes(doc: &roxmltree::Document, kind: Kind, version: u8) -> Result<PayoutReport, BankFileError> {
    let root = doc.root_element();
    let x = Names { ns: root.tag_name().namespace().unwrap_or("") };
    let reports = report_nodes(&x, root, kind)?;
    let mut out = Outcomes::new();
    let mut ids = Vec::with_capacity(reports.len());
    for (i, report) in reports.iter().enumerate() {
        let at = format!("{}/{}[{}]", kind.container(), kind.report(), i + 1);
        let here = report_header(&x, *report, &at)?;
        for (j, ntry) in x.children(*report, "Ntry").enumerate() {
            entry_outcomes(&x, ntry, &format!("{at}/Ntry[{}]", j + 1), &here, j + 1, &mut out)?;
        }
        ids.push(here.id);
    }
    Ok(PayoutReport {
        format: kind.payout_format(version),
        id: ids.join(","),
        outcomes: out.finish(),
        group_rejected: None,
    })
}

fn entry_outcomes(
    x: &Names,
    ntry: Node,
    at: &str,
    report: &Report,
    ordinal: usize,
    out: &mut Outcomes,
) -> Result<(), BankFileError> {
    let direction = x.required(ntry, "CdtDbtInd", at, MAX_ID_CHARS)?;
    let reversal = reversal_indicator(x, ntry, at)?;
    let booked = match entry_status(x, ntry, at)?.as_deref() {
        Some("BOOK") => true,
        Some("PDNG") => false,
        _ => return Ok(()),
    };
    let transactions = transactions_of(x, ntry);
    let settled = match (direction.as_str(), reversal) {
        ("DBIT", false) => true,
        ("CRDT", true) => false,
        ("CRDT", false) if is_return(x, ntry, &transactions) => false,
        ("CRDT" | "DBIT", _) => return Ok(()),
        (other, _) => return Err(bad(&format!("{at}/CdtDbtInd"), other, "CRDT or DBIT")),
    };
    let status = match (booked, settled) {
        (false, _) => PayoutStatus::Pending,
        (true, true) => PayoutStatus::Settled,
        (true, false) => PayoutStatus::Returned,
    };
    let booked_on = match (booked, x.child(ntry, "BookgDt")) {
        (false, None) => None,
        _ => Some(booking_date(x, ntry, at)?),
    };
    let reference = bank_reference(x, ntry, &transactions, at, report, ordinal)?;
    for (i, tx) in transactions.iter().enumerate() {
        let tx_at = format!("{at}/NtryDtls/TxDtls[{}]", i + 1);
        let Some(refs) = x.child(*tx, "Refs") else { continue };
        let Some(end_to_end_id) = x.text(refs, "EndToEndId", &format!("{tx_at}/Refs"), MAX_ID_CHARS)? else {
            continue;
        };
        let return_info = x.child(*tx, "RtrInf");
        // A debit that returns a credit it received is not a payout.
        if end_to_end_id == "NOTPROVIDED" || (settled && return_info.is_some()) {
            continue;
        }
        let reason = return_info.map(|info| x.reason(info, &format!("{tx_at}/RtrInf"))).transpose()?.flatten();
        let amount = match (x.child(*tx, "Amt"), x.path(*tx, &["AmtDtls", "TxAmt", "Amt"])) {
            (Some(amt), _) => Some(money(amt, &format!("{tx_at}/Amt"))?),
            (None, Some(amt)) => Some(money(amt, &format!("{tx_at}/AmtDtls/TxAmt/Amt"))?),
            // The only transaction of its entry: the entry's amount is its own.
            (None, None) if transactions.len() == 1 => Some(amount(x, ntry, at)?),
            (None, None) => None,
        };
        out.push(PayoutOutcome {
            entry_key: format!("{}/{reference}/{end_to_end_id}", report.account),
            end_to_end_id,
            status,
            amount,
            reason,
            booked_on,
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Drafts: what the writers take.

/// Which way an entry moves money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// Money in: a payer's transfer.
    Credit,
    /// Money out.
    Debit,
    /// An earlier credit taken back (written as `DBIT` with `RvslInd`).
    CreditReversal,
}

/// One entry of a statement or notification to write. Valid once built:
/// every text fits its ISO 20022 field and holds no control character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftEntry {
    kind: EntryKind,
    amount: Money,
    booked_on: Date,
    bank_reference: String,
    reference: Option<Reference>,
    remitter: Option<String>,
    remittance: Option<String>,
    end_to_end_id: Option<String>,
    return_reason: Option<String>,
}

impl DraftEntry {
    /// An entry of `amount` booked on `booked_on`; `bank_reference` is the
    /// bank's own reference for it (`AcctSvcrRef`, 1–35 characters), which
    /// a reader turns into the entry key.
    pub fn new(
        kind: EntryKind,
        amount: Money,
        booked_on: Date,
        bank_reference: &str,
    ) -> Result<DraftEntry, BankFileError> {
        let bank_reference = draft_text("bank reference", bank_reference, MAX_ID_CHARS)?;
        Ok(DraftEntry {
            kind,
            amount,
            booked_on,
            bank_reference,
            reference: None,
            remitter: None,
            remittance: None,
            end_to_end_id: None,
            return_reason: None,
        })
    }

    /// The creditor reference the payer quoted, written as structured
    /// remittance (`Strd/CdtrRefInf`, type SCOR issued by ISO).
    pub fn with_reference(mut self, reference: Reference) -> DraftEntry {
        self.reference = Some(reference);
        self
    }

    /// The payer's (for a debit: the payee's) name, 1–140 characters.
    pub fn with_remitter(mut self, name: &str) -> Result<DraftEntry, BankFileError> {
        self.remitter = Some(draft_text("remitter", name, MAX_TEXT_CHARS)?);
        Ok(self)
    }

    /// One line of free remittance text (`Ustrd`), 1–140 characters.
    pub fn with_remittance(mut self, text: &str) -> Result<DraftEntry, BankFileError> {
        self.remittance = Some(draft_text("remittance", text, MAX_TEXT_CHARS)?);
        Ok(self)
    }

    /// The end-to-end id the payer gave the transfer (`Refs/EndToEndId`,
    /// 1–35 characters): for a debit, the center's id of a payout it
    /// settles; for a return, the id of the payout sent back.
    pub fn with_end_to_end_id(mut self, id: &str) -> Result<DraftEntry, BankFileError> {
        self.end_to_end_id = Some(draft_text("end-to-end id", id, MAX_ID_CHARS)?);
        Ok(self)
    }

    /// Makes a credit the return of one of our payments: the ISO 20022
    /// return reason code (`RtrInf/Rsn/Cd`, 1–4 upper-case letters and
    /// digits such as `AC04`), written with the bank transaction code
    /// PMNT / ICDT / RRTN. Refused for other entries: only money coming
    /// back is a return.
    pub fn with_return_reason(mut self, code: &str) -> Result<DraftEntry, BankFileError> {
        let ok = (1..=crate::limits::MAX_CODE_CHARS).contains(&code.len())
            && code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !ok || self.kind != EntryKind::Credit {
            let expected = "a return reason (1-4 upper-case letters and digits) on a credit";
            return Err(BankFileError::BadText {
                field: "return reason",
                text: code.chars().take(40).collect(),
                expected,
            });
        }
        self.return_reason = Some(code.to_owned());
        Ok(self)
    }

    pub fn kind(&self) -> EntryKind {
        self.kind
    }

    pub fn end_to_end_id(&self) -> Option<&str> {
        self.end_to_end_id.as_deref()
    }

    pub fn return_reason(&self) -> Option<&str> {
        self.return_reason.as_deref()
    }

    pub fn amount(&self) -> Money {
        self.amount
    }

    pub fn booked_on(&self) -> Date {
        self.booked_on
    }

    pub fn bank_reference(&self) -> &str {
        &self.bank_reference
    }

    pub fn reference(&self) -> Option<&Reference> {
        self.reference.as_ref()
    }

    pub fn remitter(&self) -> Option<&str> {
        self.remitter.as_deref()
    }

    pub fn remittance(&self) -> Option<&str> {
        self.remittance.as_deref()
    }

    /// The key a reader gives this entry if it is a credit.
    fn credit_key(&self, account: &str) -> Option<String> {
        match self.kind {
            EntryKind::Credit if self.return_reason.is_some() => None,
            EntryKind::Credit => Some(format!("{account}/{}", self.bank_reference)),
            EntryKind::CreditReversal => Some(format!("{account}/{}/reversal", self.bank_reference)),
            EntryKind::Debit => None,
        }
    }

    /// The key [`crate::read_outcomes`] gives this entry if it reports a
    /// payout (a debit or a return quoting an end-to-end id).
    fn outcome_key(&self, account: &str) -> Option<String> {
        let id = self.end_to_end_id.as_ref().filter(|id| *id != "NOTPROVIDED")?;
        let reports = match self.kind {
            EntryKind::Debit => self.return_reason.is_none(),
            EntryKind::Credit => self.return_reason.is_some(),
            EntryKind::CreditReversal => false,
        };
        reports.then(|| format!("{account}/{}/{id}", self.bank_reference))
    }
}

/// Text for an ISO 20022 field: trimmed, 1–`max` characters, none of them
/// a control character or a non-character XML forbids.
pub(crate) fn draft_text(field: &'static str, text: &str, max: usize) -> Result<String, BankFileError> {
    let trimmed = text.trim();
    let refuse = |expected| BankFileError::BadText { field, text: text.chars().take(40).collect(), expected };
    if trimmed.is_empty() {
        return Err(refuse("some text"));
    }
    if trimmed.chars().any(|c| c.is_control() || matches!(c, '\u{FFFE}' | '\u{FFFF}')) {
        return Err(refuse("no control characters"));
    }
    let len = trimmed.chars().count();
    if len > max {
        return Err(BankFileError::DoesNotFit { field, len, width: max });
    }
    Ok(trimmed.to_owned())
}

/// An account: an IBAN, or the bank's own identifier, 1–34 ASCII letters,
/// digits and hyphens.
fn draft_account(text: &str) -> Result<String, BankFileError> {
    let ok = !text.is_empty() && text.len() <= 34 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !ok {
        let text = text.chars().take(40).collect();
        return Err(BankFileError::BadText { field: "account", text, expected: "1-34 ASCII letters, digits, hyphens" });
    }
    Ok(text.to_owned())
}

/// Whether `account` is written as an IBAN (ISO 20022's IBAN2007Identifier
/// pattern `[A-Z]{2}[0-9]{2}[a-zA-Z0-9]{1,30}`) or as another identifier.
fn is_iban(account: &str) -> bool {
    let b = account.as_bytes();
    b.len() >= 5
        && b.len() <= 34
        && b[..2].iter().all(u8::is_ascii_uppercase)
        && b[2..4].iter().all(u8::is_ascii_digit)
        && b[4..].iter().all(u8::is_ascii_alphanumeric)
}

/// What both writers' drafts hold: the report's header and its entries,
/// checked as they are added so the written file reads back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReportDraft {
    pub(crate) id: String,
    pub(crate) account: String,
    pub(crate) created_at: Timestamp,
    pub(crate) entries: Vec<DraftEntry>,
}

impl ReportDraft {
    pub(crate) fn new(id: &str, account: &str, created_at: Timestamp) -> Result<ReportDraft, BankFileError> {
        Ok(ReportDraft {
            id: draft_text("id", id, MAX_ID_CHARS)?,
            account: draft_account(account)?,
            created_at,
            entries: Vec::new(),
        })
    }

    /// Refuses an entry a reader would refuse the file for: one too many,
    /// or a credit (or a payout's debit or return) whose key an earlier one
    /// has.
    pub(crate) fn check(&self, entry: &DraftEntry) -> Result<(), BankFileError> {
        if self.entries.len() >= MAX_ENTRIES {
            return Err(BankFileError::TooManyEntries { max: MAX_ENTRIES });
        }
        let keys: [fn(&DraftEntry, &str) -> Option<String>; 2] = [DraftEntry::credit_key, DraftEntry::outcome_key];
        for key_of in keys {
            if let Some(key) = key_of(entry, &self.account)
                && self.entries.iter().any(|e| key_of(e, &self.account).as_ref() == Some(&key))
            {
                return Err(BankFileError::DuplicateEntry { key });
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Writing (version 08).

/// An amount in minor units as an ISO 20022 decimal: `1200`, `12.34`.
pub(crate) fn decimal(minor: u128, exponent: u8) -> String {
    let scale = 10u128.pow(u32::from(exponent));
    match exponent {
        0 => minor.to_string(),
        _ => format!("{}.{:0width$}", minor / scale, minor % scale, width = usize::from(exponent)),
    }
}

pub(crate) fn date_time(at: Timestamp) -> String {
    let (date, secs) = Date::from_unix_s(at.unix_s());
    format!("{date}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// A balance for camt.053: signed minor units, at most
/// [`MAX_AMOUNT_MINOR`] either way (the statement draft keeps it so).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Balance {
    pub(crate) code: &'static str,
    pub(crate) minor: i128,
    pub(crate) currency: Currency,
    pub(crate) on: Date,
}

/// Writes a whole document: group header, one report, its entries.
pub(crate) fn write(kind: Kind, draft: &ReportDraft, balances: &[Balance]) -> String {
    let mut x = XmlOut::document(kind.namespace_08());
    x.open(kind.container());
    x.open("GrpHdr");
    x.leaf("MsgId", &draft.id);
    x.leaf("CreDtTm", &date_time(draft.created_at));
    x.close();
    x.open(kind.report());
    x.leaf("Id", &draft.id);
    x.leaf("CreDtTm", &date_time(draft.created_at));
    x.open("Acct");
    x.open("Id");
    if is_iban(&draft.account) {
        x.leaf("IBAN", &draft.account);
    } else {
        x.open("Othr");
        x.leaf("Id", &draft.account);
        x.close();
    }
    x.close();
    if let Some(balance) = balances.first() {
        x.leaf("Ccy", balance.currency.code());
    }
    x.close();
    for balance in balances {
        write_balance(&mut x, balance);
    }
    for entry in &draft.entries {
        write_entry(&mut x, entry);
    }
    x.finish()
}

fn write_balance(x: &mut XmlOut, balance: &Balance) {
    assert!(balance.minor.unsigned_abs() <= u128::from(MAX_AMOUNT_MINOR), "the draft keeps balances in range");
    x.open("Bal");
    x.open("Tp");
    x.open("CdOrPrtry");
    x.leaf("Cd", balance.code);
    x.close();
    x.close();
    let amount = decimal(balance.minor.unsigned_abs(), balance.currency.exponent());
    x.leaf_with("Amt", "Ccy", balance.currency.code(), &amount);
    x.leaf("CdtDbtInd", if balance.minor < 0 { "DBIT" } else { "CRDT" });
    x.open("Dt");
    x.leaf("Dt", &balance.on.to_string());
    x.close();
    x.close();
}

fn write_entry(x: &mut XmlOut, entry: &DraftEntry) {
    let currency = entry.amount.currency();
    let amount = decimal(u128::from(entry.amount.amount_minor()), currency.exponent());
    let direction = if entry.kind == EntryKind::Credit { "CRDT" } else { "DBIT" };
    x.open("Ntry");
    x.leaf_with("Amt", "Ccy", currency.code(), &amount);
    x.leaf("CdtDbtInd", direction);
    if entry.kind == EntryKind::CreditReversal {
        x.leaf("RvslInd", "true");
    }
    x.open("Sts");
    x.leaf("Cd", "BOOK");
    x.close();
    for element in ["BookgDt", "ValDt"] {
        x.open(element);
        x.leaf("Dt", &entry.booked_on.to_string());
        x.close();
    }
    x.leaf("AcctSvcrRef", &entry.bank_reference);
    write_transaction_code(x, entry);
    x.open("NtryDtls");
    x.open("TxDtls");
    x.open("Refs");
    x.leaf("AcctSvcrRef", &entry.bank_reference);
    if let Some(id) = &entry.end_to_end_id {
        x.leaf("EndToEndId", id);
    }
    x.close();
    x.leaf_with("Amt", "Ccy", currency.code(), &amount);
    x.leaf("CdtDbtInd", direction);
    if let Some(name) = &entry.remitter {
        x.open("RltdPties");
        x.open(if entry.kind == EntryKind::Debit { "Cdtr" } else { "Dbtr" });
        x.open("Pty");
        x.leaf("Nm", name);
        x.close();
        x.close();
        x.close();
    }
    write_remittance(x, entry);
    if let Some(code) = &entry.return_reason {
        x.open("RtrInf");
        x.open("Rsn");
        x.leaf("Cd", code);
        x.close();
        x.close();
    }
    x.close();
    x.close();
    x.close();
}

/// ISO 20022 bank transaction code: Payments, received or issued credit
/// transfer, domestic; an issued one returned for a return.
fn write_transaction_code(x: &mut XmlOut, entry: &DraftEntry) {
    let (family, sub_family) = match entry.kind {
        EntryKind::Debit => ("ICDT", "DMCT"),
        EntryKind::Credit if entry.return_reason.is_some() => ("ICDT", "RRTN"),
        EntryKind::Credit | EntryKind::CreditReversal => ("RCDT", "DMCT"),
    };
    x.open("BkTxCd");
    x.open("Domn");
    x.leaf("Cd", "PMNT");
    x.open("Fmly");
    x.leaf("Cd", family);
    x.leaf("SubFmlyCd", sub_family);
    x.close();
    x.close();
    x.close();
}

fn write_remittance(x: &mut XmlOut, entry: &DraftEntry) {
    if entry.reference.is_none() && entry.remittance.is_none() {
        return;
    }
    x.open("RmtInf");
    if let Some(text) = &entry.remittance {
        x.leaf("Ustrd", text);
    }
    if let Some(reference) = &entry.reference {
        x.open("Strd");
        x.open("CdtrRefInf");
        x.open("Tp");
        x.open("CdOrPrtry");
        x.leaf("Cd", "SCOR");
        x.close();
        x.leaf("Issr", "ISO");
        x.close();
        x.leaf("Ref", reference.as_str());
        x.close();
        x.close();
    }
    x.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_name_kind_and_version() {
        let ns = |s: &str| format!("{NAMESPACE_PREFIX}{s}");
        assert_eq!(kind_of(&ns("camt.053.001.02")), Some((Kind::Statement, 2)));
        assert_eq!(kind_of(&ns("camt.054.001.08")), Some((Kind::Notification, 8)));
        for bad in ["camt.053.001.01", "camt.053.001.09", "camt.052.001.08", "camt.053.001.8", "camt.053.001.+8", ""] {
            assert_eq!(kind_of(&ns(bad)), None, "{bad}");
        }
        assert_eq!(kind_of("camt.053.001.08"), None);
    }

    #[test]
    fn decimals_and_times_are_written_as_iso_20022_wants() {
        assert_eq!(decimal(1200, 0), "1200");
        assert_eq!(decimal(1205, 2), "12.05");
        assert_eq!(decimal(5, 2), "0.05");
        assert_eq!(date_time(Timestamp::from_unix_s(1_800_000_000)), "2027-01-15T08:00:00Z");
    }

    #[test]
    fn accounts_are_written_as_iban_only_when_they_look_like_one() {
        assert!(is_iban("DE89370400440532013000"));
        assert!(!is_iban("0001-001-1-1234567"));
        assert!(!is_iban("de89370400440532013000"));
        assert!(draft_account("JP-POOL-1").is_ok());
        for bad in ["", "a b", "a/b", "a,b", "ÄB12", &"1".repeat(35)] {
            assert!(draft_account(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn draft_texts_are_trimmed_and_bounded() {
        assert_eq!(draft_text("f", "  Yamada  ", 10).unwrap(), "Yamada");
        assert!(matches!(draft_text("f", "   ", 10), Err(BankFileError::BadText { .. })));
        assert!(matches!(draft_text("f", "a\u{0}b", 10), Err(BankFileError::BadText { .. })));
        assert!(matches!(draft_text("f", "a\nb", 10), Err(BankFileError::BadText { .. })));
        assert_eq!(draft_text("f", "ｱｲｳ", 2), Err(BankFileError::DoesNotFit { field: "f", len: 3, width: 2 }));
    }
}
