//! Bank files, both ways round: money coming into the center's pool
//! account, and money the center pays out to stores.
//!
//! Funding prepaid cards by bank transfer (seed 003/004, FIG. 13–14): a
//! member transfers money to the center's pool account quoting a payment
//! reference; the center reads the bank's files and matches each incoming
//! credit by reference and amount. Paying stores (issue #19, item 3): the
//! center sends its bank a file of payouts, one per store account, and
//! reads back what became of each.
//!
//! No I/O: the caller reads the file and passes its bytes; dates and times
//! are passed in, never read from a clock.
//!
//! - [`parse`] reads what a bank sends: ISO 20022 camt.053 statements and
//!   camt.054 notifications (versions 02–08), and Zengin 振込入金通知
//!   (transfer credit notifications, JBA 200-byte records), into one
//!   [`Statement`] of [`Credit`]s.
//! - [`rf`]: ISO 11649 creditor references, the payment reference payers
//!   quote, found in structured or free text.
//! - [`camt053`], [`camt054`] and [`zengin`] write the same files, for the
//!   simulated bank and the tests.
//! - [`payout`]: a store's account (`zengin:…` or `iban:…`, checked: IBAN
//!   MOD 97-10 and country lengths, BIC, the names each format can carry)
//!   and a [`PayoutBatch`]; [`pain001`] writes it as ISO 20022
//!   pain.001.001.09, [`zengin::write_transfer_request`] as a Zengin
//!   総合振込 (種別コード 21, 120-byte records).
//! - [`read_outcomes`] reads the answer into a [`PayoutReport`]: a pain.002
//!   status report (versions 03–10), the debtor account's camt.054 or
//!   camt.053 (settled debits, returns), or a Zengin 総合振込 result (a
//!   layout kessai defines, since the JBA has none: see
//!   [`zengin_transfer`]). [`pain002::write`], the camt writers and
//!   [`zengin::write_transfer_result`] write them for the simulated bank.
//! - [`limits`]: every bound, each exceeded one a [`BankFileError`].
//!
//! ```
//! use kessai_bank::{camt::{DraftEntry, EntryKind}, camt054, rf, Date};
//! use kessai_core::{time::Timestamp, Currency, Money};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut draft = camt054::NotificationDraft::new("N-1", "JP-POOL-1", Timestamp::from_unix_s(1_800_000_000))?;
//! let booked = Date::parse("2027-01-15").ok_or("date")?;
//! let reference = rf::make("42")?;
//! draft.push(
//!     DraftEntry::new(EntryKind::Credit, Money::new(5_000, Currency::JPY)?, booked, "B-1")?
//!         .with_reference(reference.clone())
//!         .with_remitter("Yamada Taro")?,
//! )?;
//! let statement = kessai_bank::parse(camt054::write(&draft).as_bytes())?;
//! assert_eq!(statement.credits[0].reference, Some(reference));
//! assert_eq!(statement.credits[0].amount.amount_minor(), 5_000);
//! # Ok(())
//! # }
//! ```

use std::collections::HashSet;

use kessai_core::{Currency, Money};

pub mod camt;
pub mod camt053;
pub mod camt054;
mod date;
mod iban;
mod jisx0201;
pub mod limits;
pub mod pain001;
pub mod pain002;
pub mod payout;
pub mod rf;
mod xml_out;
pub mod zengin;
pub mod zengin_transfer;

pub use date::Date;
pub use payout::{GroupRejected, PayoutBatch, PayoutFormat, PayoutOutcome, PayoutReport, PayoutStatus, read_outcomes};
pub use rf::Reference;

use limits::{MAX_ENTRIES, MAX_FILE_BYTES};

/// Which kind of bank file a [`Statement`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// ISO 20022 BankToCustomerStatement, `camt.053.001.<version>`.
    Camt053 { version: u8 },
    /// ISO 20022 BankToCustomerDebitCreditNotification, `camt.054.001.<version>`.
    Camt054 { version: u8 },
    /// Zengin 振込入金通知 (種別コード 01), JIS X 0201, 200-byte records.
    ZenginTransferNotice,
}

/// What one bank file says about money coming in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub format: Format,
    /// The statement's or notification's id (`Stmt/Id`, `Ntfctn/Id`); a
    /// Zengin file has none, so `作成日/勘定日(自)/勘定日(至)`. A file of
    /// several statements lists their ids, comma-separated, in file order.
    pub id: String,
    /// The credited account (IBAN, the bank's own id, or for Zengin
    /// `bank-branch-type-number`); several accounts comma-separated, in
    /// file order. Each credit's `entry_key` starts with its own account.
    pub account: String,
    /// Every booked credit and every booked reversal of one, in file order.
    pub credits: Vec<Credit>,
    /// Booked entries that are not credits (debits, reversals of debits,
    /// and returns of our own payments): counted so a reader can tell the
    /// file was complete, not returned. What they say about payouts,
    /// [`read_outcomes`] reads.
    pub debits: usize,
}

/// One booked credit to the account, or the reversal of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credit {
    /// Stable across re-deliveries of the same entry: `account/bank
    /// reference` (camt: `AcctSvcrRef`, else the transaction's, else
    /// `NtryRef`, else `statement id#ordinal`; Zengin: `勘定日/照会番号`),
    /// with `/reversal` appended for a reversal. Unique within a file.
    pub entry_key: String,
    /// Booking date (勘定日), `YYYY-MM-DD`.
    pub booked_on: String,
    pub amount: Money,
    /// The first valid creditor reference quoted with the payment.
    pub reference: Option<Reference>,
    /// The payer's name as the bank reports it (for Zengin half-width
    /// katakana, decoded to U+FF61–U+FF9F).
    pub remitter: Option<String>,
    /// Zengin 振込依頼人コード (the payer's code from the sending bank),
    /// when not zero; camt files have none.
    pub remitter_code: Option<String>,
    /// Free remittance text (camt `Ustrd` lines joined by a space; Zengin
    /// EDI情報).
    pub remittance: Option<String>,
    /// True if this entry takes back an earlier credit (camt: a `DBIT`
    /// entry with `RvslInd` true; Zengin: 取消区分 1). Its amount is the
    /// amount taken back.
    pub reversal: bool,
}

/// Why a bank file (or a draft of one) was refused. Each variant says what
/// and where: a record number for Zengin (counted from 1), an element path
/// for XML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BankFileError {
    #[error("the file has {size} bytes, more than the {max} we read")]
    FileTooLarge { size: usize, max: usize },
    #[error("the file has more than {max} entries")]
    TooManyEntries { max: usize },
    #[error("not a bank file kessai reads: expected ISO 20022 camt.053/camt.054 XML or a Zengin 振込入金通知")]
    UnknownFormat,
    #[error("{at}: {len} characters, more than the {max} we keep")]
    TextTooLong { at: String, len: usize, max: usize },
    #[error("entry {key:?} appears twice in one file")]
    DuplicateEntry { key: String },
    #[error("{at}: {text:?} is not a date")]
    BadDate { at: String, text: String },
    #[error("{at}: amount {text:?} refused: {problem}")]
    BadAmount { at: String, text: String, problem: AmountProblem },
    #[error("{at}: currency {code:?} is not one kessai settles in")]
    UnknownCurrency { at: String, code: String },

    #[error("the XML is not UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("the XML has a DOCTYPE; DTDs and entities are refused")]
    Doctype,
    #[error("the XML is not well-formed: {0}")]
    Xml(String),
    #[error("the XML has more than {max} nodes")]
    TooManyNodes { max: u32 },
    #[error("XML namespace {0:?} is not camt.053 or camt.054, versions 02 to 08")]
    UnknownNamespace(String),
    #[error("{at}: missing")]
    Missing { at: String },
    #[error("{at}: {found:?} is not {expected}")]
    BadValue { at: String, found: String, expected: &'static str },

    #[error("record {record}: the file ends after {len} of its 200 bytes")]
    Truncated { record: usize, len: usize },
    #[error("record {record}, byte {column}: 0x{byte:02X} is not a printable JIS X 0201 character")]
    BadByte { record: usize, column: usize, byte: u8 },
    #[error("record {record}: expected {expected}, found data kind {found:?}")]
    UnexpectedRecord { record: usize, expected: &'static str, found: char },
    #[error("record {record}: {field} is {found:?}, expected {expected}")]
    BadField { record: usize, field: &'static str, found: String, expected: &'static str },
    #[error("record {record}: the trailer's {field} is {stated}, the data records give {counted}")]
    TrailerMismatch { record: usize, field: &'static str, stated: u64, counted: u64 },
    #[error("the file ends where {expected} should follow")]
    EndsEarly { expected: &'static str },
    #[error("record {record}: bytes after the end record")]
    AfterEnd { record: usize },

    #[error("{field}: {character:?} cannot be written in JIS X 0201")]
    NotRepresentable { field: &'static str, character: char },
    #[error("{field}: {len} characters do not fit in {width}")]
    DoesNotFit { field: &'static str, len: usize, width: usize },
    #[error("{field}: {value} is more than {max}")]
    OutOfRange { field: &'static str, value: u64, max: u64 },
    #[error("{field}: {date} is not a Reiwa date (2019-05-01 to 2117-12-31), which Zengin files need")]
    OutsideReiwa { field: &'static str, date: Date },
    #[error("{field}: {found} where {expected} is needed")]
    WrongCurrency { field: &'static str, found: Currency, expected: Currency },
    #[error("{field}: {text:?} refused: {expected}")]
    BadText { field: &'static str, text: String, expected: &'static str },

    #[error("a payout batch needs at least one line")]
    NoPayouts,
    #[error("a payout batch holds at most {max} lines")]
    TooManyPayouts { max: usize },
    #[error("payout {end_to_end_id}: an amount of zero is not a payout")]
    ZeroPayout { end_to_end_id: String },
    #[error("{at}: {problem}")]
    BadAccount { at: String, problem: payout::AccountError },
    #[error("payout {end_to_end_id}: {format} cannot pay {payee}")]
    PayeeNotSupported { end_to_end_id: String, format: &'static str, payee: &'static str },
    #[error("record {record}: the file ends after {len} of its {width} bytes")]
    ShortRecord { record: usize, len: usize, width: usize },
    #[error(
        "not a payout outcome file kessai reads: expected ISO 20022 pain.002 or camt.053/camt.054 XML, or a Zengin 総合振込 result"
    )]
    UnknownOutcomeFormat,
    #[error("XML namespace {0:?} is not pain.002 (versions 03 to 10) or camt.053/camt.054 (versions 02 to 08)")]
    UnknownOutcomeNamespace(String),
}

/// What is wrong with a decimal amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmountProblem {
    #[error("not a decimal number")]
    NotDecimal,
    #[error("negative")]
    Negative,
    #[error("more than the currency's {exponent} fraction digits")]
    TooManyFractionDigits { exponent: u8 },
    #[error("larger than the largest amount kessai handles")]
    TooLarge,
}

/// Reads a bank file, detecting its format: XML (after an optional UTF-8
/// byte-order mark and blanks) is ISO 20022 camt.053 or camt.054, a file
/// starting with a Zengin header record (`1`) is a 振込入金通知.
pub fn parse(bytes: &[u8]) -> Result<Statement, BankFileError> {
    match sniff(bytes)? {
        Sniffed::Xml(text) => camt::parse(text),
        Sniffed::Zengin => zengin::parse(bytes),
        Sniffed::Unknown => Err(BankFileError::UnknownFormat),
    }
}

/// What a bank file looks like from its first bytes.
pub(crate) enum Sniffed<'a> {
    /// XML (after an optional UTF-8 byte-order mark and blanks): its text.
    Xml(&'a str),
    /// Fixed-length Zengin records: the file starts with a header (`1`).
    Zengin,
    Unknown,
}

/// Tells XML from Zengin records, refusing a file over
/// [`MAX_FILE_BYTES`] and XML that is not UTF-8.
pub(crate) fn sniff(bytes: &[u8]) -> Result<Sniffed<'_>, BankFileError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(BankFileError::FileTooLarge { size: bytes.len(), max: MAX_FILE_BYTES });
    }
    let without_bom = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    Ok(match without_bom.iter().find(|b| !b" \t\r\n".contains(b)) {
        Some(b'<') => Sniffed::Xml(
            std::str::from_utf8(without_bom)
                .map_err(|e| BankFileError::NotUtf8 { offset: e.valid_up_to() + (bytes.len() - without_bom.len()) })?,
        ),
        Some(b'1') if bytes.first() == Some(&b'1') => Sniffed::Zengin,
        _ => Sniffed::Unknown,
    })
}

/// Gathers a file's statements into one [`Statement`], enforcing the
/// entry limit and unique entry keys.
#[derive(Debug)]
struct Collector {
    ids: Vec<String>,
    accounts: Vec<String>,
    credits: Vec<Credit>,
    keys: HashSet<String>,
    debits: usize,
}

impl Collector {
    fn new() -> Collector {
        Collector { ids: Vec::new(), accounts: Vec::new(), credits: Vec::new(), keys: HashSet::new(), debits: 0 }
    }

    /// A statement (camt `Stmt`/`Ntfctn`, Zengin header) begins.
    fn report(&mut self, id: String, account: &str) {
        self.ids.push(id);
        if !self.accounts.iter().any(|a| a == account) {
            self.accounts.push(account.to_owned());
        }
    }

    fn credit(&mut self, credit: Credit) -> Result<(), BankFileError> {
        self.one_more()?;
        if !self.keys.insert(credit.entry_key.clone()) {
            return Err(BankFileError::DuplicateEntry { key: credit.entry_key });
        }
        self.credits.push(credit);
        Ok(())
    }

    fn debit(&mut self) -> Result<(), BankFileError> {
        self.one_more()?;
        self.debits += 1;
        Ok(())
    }

    fn one_more(&self) -> Result<(), BankFileError> {
        if self.credits.len() + self.debits >= MAX_ENTRIES {
            return Err(BankFileError::TooManyEntries { max: MAX_ENTRIES });
        }
        Ok(())
    }

    fn finish(self, format: Format) -> Statement {
        // `one_more` counted every entry against MAX_ENTRIES.
        assert!(self.credits.len() + self.debits <= MAX_ENTRIES);
        Statement {
            format,
            id: self.ids.join(","),
            account: self.accounts.join(","),
            credits: self.credits,
            debits: self.debits,
        }
    }
}

/// Checks a kept text field against a limit, in characters.
fn limited(at: impl FnOnce() -> String, text: &str, max: usize) -> Result<(), BankFileError> {
    let len = text.chars().count();
    if len > max {
        return Err(BankFileError::TextTooLong { at: at(), len, max });
    }
    Ok(())
}

/// Converts a decimal amount exactly to minor units of `currency`:
/// digits with at most one point, an optional leading `+`, blanks around
/// (as `xs:decimal` allows). Extra fraction digits are accepted only if
/// they are zeros (`1200.00` yen is 1200 yen), since nothing is lost.
fn decimal_to_minor(text: &str, currency: Currency) -> Result<Money, AmountProblem> {
    let t = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
    if t.len() > limits::MAX_AMOUNT_TEXT_BYTES {
        return Err(AmountProblem::NotDecimal);
    }
    if t.starts_with('-') {
        return Err(AmountProblem::Negative);
    }
    let t = t.strip_prefix('+').unwrap_or(t);
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return Err(AmountProblem::NotDecimal);
    }
    let exponent = currency.exponent();
    let frac = frac.trim_end_matches('0');
    if frac.len() > usize::from(exponent) {
        return Err(AmountProblem::TooManyFractionDigits { exponent });
    }
    let int = int.trim_start_matches('0');
    // 10^18 major units are beyond any allowed amount whatever the
    // exponent, and 18 digits fit in u128 with room to scale.
    if int.len() > 18 {
        return Err(AmountProblem::TooLarge);
    }
    let as_number = |s: &str| s.bytes().fold(0u128, |n, d| n * 10 + u128::from(d - b'0'));
    let scale = 10u128.pow(u32::from(exponent));
    let minor = as_number(frac) * 10u128.pow(u32::from(exponent) - u32::try_from(frac.len()).unwrap_or(0));
    let total = as_number(int) * scale + minor;
    let total = u64::try_from(total).map_err(|_| AmountProblem::TooLarge)?;
    Money::new(total, currency).map_err(|_| AmountProblem::TooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_convert_exactly_or_are_refused() {
        let (jpy, usd) = (Currency::JPY, Currency::USD);
        let ok = [
            ("1200", jpy, 1200),
            (" 1200 ", jpy, 1200),
            ("1200.00", jpy, 1200),
            ("+5", jpy, 5),
            ("12.34", usd, 1234),
            ("12.3", usd, 1230),
            ("12.", usd, 1200),
            (".5", usd, 50),
            ("0", usd, 0),
            ("0001.10", usd, 110),
            ("1000000000000000", jpy, 1_000_000_000_000_000),
        ];
        for (text, currency, minor) in ok {
            assert_eq!(decimal_to_minor(text, currency).map(|m| m.amount_minor()), Ok(minor), "{text}");
        }
        let bad = [
            ("12.5", jpy, AmountProblem::TooManyFractionDigits { exponent: 0 }),
            ("12.345", usd, AmountProblem::TooManyFractionDigits { exponent: 2 }),
            ("-1", jpy, AmountProblem::Negative),
            ("-0.00", usd, AmountProblem::Negative),
            ("1000000000000001", jpy, AmountProblem::TooLarge),
            ("10000000000000.01", usd, AmountProblem::TooLarge),
            ("9999999999999999999999", jpy, AmountProblem::TooLarge),
            ("", jpy, AmountProblem::NotDecimal),
            (".", usd, AmountProblem::NotDecimal),
            ("1,200", jpy, AmountProblem::NotDecimal),
            ("1e3", jpy, AmountProblem::NotDecimal),
            ("1.2.3", usd, AmountProblem::NotDecimal),
            ("１２", jpy, AmountProblem::NotDecimal),
            ("++1", jpy, AmountProblem::NotDecimal),
        ];
        for (text, currency, problem) in bad {
            assert_eq!(decimal_to_minor(text, currency), Err(problem), "{text}");
        }
    }

    #[test]
    fn unknown_bytes_are_no_format() {
        for bytes in [&b""[..], b"   ", b"%PDF-1.7", b"\xEF\xBB\xBF", b"2rest"] {
            assert_eq!(parse(bytes), Err(BankFileError::UnknownFormat), "{bytes:?}");
        }
        let big = vec![b' '; MAX_FILE_BYTES + 1];
        assert!(matches!(parse(&big), Err(BankFileError::FileTooLarge { .. })));
        assert_eq!(parse(b"<a>\xFF</a>"), Err(BankFileError::NotUtf8 { offset: 3 }));
    }
}
