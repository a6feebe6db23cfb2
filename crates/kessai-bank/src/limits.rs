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
