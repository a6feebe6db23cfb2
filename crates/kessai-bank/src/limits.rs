//! Every bound kessai-bank enforces, in one place.
//!
//! A bank file comes from outside: each limit is checked before the work it
//! bounds, and exceeding one is an error naming it, never a truncation. The
//! compile-time assertions at the bottom keep the limits consistent with
//! each other and with the formats.

use kessai_core::limits::MAX_AMOUNT_MINOR;

/// Largest bank file we read, checked before any parsing.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

/// Most entries (camt `Ntry`, Zengin data records) in one file, credits and
/// debits together.
pub const MAX_ENTRIES: usize = 200_000;

/// Most XML nodes (elements, attributes' text, text runs) one file may
/// hold, so a file of tiny elements cannot make the tree take gigabytes.
/// A real entry has about 60 nodes; a 16 MiB statement holds at most a
/// few hundred thousand.
pub const MAX_XML_NODES: u32 = 2_000_000;

/// Longest text field we keep (a name, one remittance line), in characters.
/// ISO 20022 `Max140Text` fits exactly.
pub const MAX_TEXT_CHARS: usize = 140;

/// Longest remittance text we keep: a camt entry's unstructured lines
/// joined by spaces.
pub const MAX_REMITTANCE_CHARS: usize = 4 * MAX_TEXT_CHARS;

/// Longest identifier we keep (statement id, account, entry reference).
/// ISO 20022 `Max35Text` fits.
pub const MAX_ID_CHARS: usize = 35;

/// Most characters of a decimal amount we look at (ISO 20022 allows 18
/// digits, a point and surrounding blanks).
pub const MAX_AMOUNT_TEXT_BYTES: usize = 40;

/// Length of every Zengin record, without the optional CR LF.
pub const ZENGIN_RECORD_BYTES: usize = 200;

/// Largest Zengin amount: the data record's 金額 is N(10).
pub const ZENGIN_MAX_AMOUNT: u64 = 9_999_999_999;

/// Largest Zengin total: the trailer's 振込合計金額 is N(12).
pub const ZENGIN_MAX_TOTAL: u64 = 999_999_999_999;

/// Largest Zengin record count: the trailer's 振込合計件数 is N(6).
pub const ZENGIN_MAX_COUNT: usize = 999_999;

/// Length of every record of a Zengin 総合振込 (種別コード 21) request or
/// result, without the optional CR LF.
pub const ZENGIN_TRANSFER_RECORD_BYTES: usize = 120;

/// Most lines in one payout batch. A center pays each store once per
/// batch; banks cap a 総合振込 file well below this.
pub const MAX_PAYOUT_LINES: usize = 100_000;

/// Longest end-to-end id of a payout line: Zengin's EDI情報 is C(20), and
/// pain.001's `EndToEndId` (Max35Text) holds it too.
pub const MAX_END_TO_END_ID_CHARS: usize = 20;

/// Longest payee name in a Zengin 総合振込: 受取人名 is C(30).
pub const ZENGIN_PAYEE_NAME_CHARS: usize = 30;

/// Longest requester name in a Zengin header: 振込依頼人名 is C(40).
pub const ZENGIN_REQUESTER_NAME_CHARS: usize = 40;

/// Longest bank or branch name in a Zengin header: C(15).
pub const ZENGIN_BANK_NAME_CHARS: usize = 15;

/// Largest 振込依頼人コード: N(10).
pub const ZENGIN_MAX_REQUESTER_CODE: u64 = 9_999_999_999;

/// Longest account holder name for an IBAN payee: the 70 characters SEPA
/// (EPC) lets a credit transfer carry for a name, well inside pain.001's
/// Max140Text.
pub const MAX_IBAN_HOLDER_CHARS: usize = 70;

/// Longest IBAN (ISO 13616): a country code, two check digits and at
/// most 30 letters and digits.
pub const MAX_IBAN_CHARS: usize = 34;

/// Longest ISO 20022 external code we write or accept as one (a status,
/// status reason or return reason code: `Max4Text`, `RJCT`, `AC04`).
pub const MAX_CODE_CHARS: usize = 4;

/// Longest one-line account text an operator types (`zengin:…`, `iban:…`),
/// in bytes, checked before it is parsed.
pub const MAX_ACCOUNT_TEXT_BYTES: usize = 256;

// A schema-valid camt text (Max140Text) and every Zengin text field are
// never refused for length.
const _: () = assert!(MAX_TEXT_CHARS >= 140);
const _: () = assert!(MAX_ID_CHARS >= 35);
// An entry key is an account, a reference and a suffix: it stays printable.
const _: () = assert!(MAX_ID_CHARS * 3 < 200);
// Every Zengin amount is a valid Money, and a trailer total of the most
// records we accept can be summed in u64 without overflow.
const _: () = assert!(ZENGIN_MAX_AMOUNT <= MAX_AMOUNT_MINOR);
const _: () = assert!((MAX_ENTRIES as u128) * (ZENGIN_MAX_AMOUNT as u128) < u64::MAX as u128);
// The trailer's count field can hold every file we accept.
const _: () = assert!(MAX_ENTRIES <= ZENGIN_MAX_COUNT);
// A camt balance is at most MAX_AMOUNT_MINOR, well inside ISO 20022's 18
// total digits, and the sum of a statement's entries cannot overflow i128.
const _: () = assert!(MAX_AMOUNT_MINOR < 1_000_000_000_000_000_000);
const _: () = assert!((MAX_ENTRIES as u128) * (MAX_AMOUNT_MINOR as u128) < i128::MAX as u128);
const _: () = assert!(MAX_ENTRIES <= u32::MAX as usize);
// A payout batch fits every format it is written in: the Zengin trailer's
// count, a reader's entry limit, pain.001's NbOfTxs (Max15NumericText).
const _: () = assert!(MAX_PAYOUT_LINES <= ZENGIN_MAX_COUNT && MAX_PAYOUT_LINES <= MAX_ENTRIES);
// An end-to-end id fits Zengin's EDI情報 (C(20)) and ISO 20022's Max35Text.
const _: () = assert!(MAX_END_TO_END_ID_CHARS <= 20 && MAX_END_TO_END_ID_CHARS <= MAX_ID_CHARS);
// A one-line account text holds the longest account it may name: an IBAN
// printed in groups of four (34 + 8 spaces), a BIC (11) and a 70-character
// Latin name with the separators; or a Zengin account with a 30-character
// name typed in full-width katakana (3 bytes each in UTF-8).
const _: () = assert!(
    MAX_ACCOUNT_TEXT_BYTES >= "iban:".len() + MAX_IBAN_CHARS + MAX_IBAN_CHARS / 4 + 1 + 11 + 1 + MAX_IBAN_HOLDER_CHARS
);
const _: () = assert!(MAX_ACCOUNT_TEXT_BYTES >= "zengin:".len() + 18 + 1 + ZENGIN_PAYEE_NAME_CHARS * 3);
