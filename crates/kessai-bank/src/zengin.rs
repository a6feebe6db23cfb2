//! Zengin 振込入金通知 (transfer credit notification, 種別コード 01): the
//! fixed-length file of the Japanese Bankers Association (全銀協制定
//! フォーマット) in which a Japanese bank reports transfers credited to an
//! account. Reading is [`crate::parse`]; [`write_transfer_notice`] writes
//! one for the simulated bank. The 総合振込 a center pays stores with
//! (120-byte records) is in [`crate::zengin_transfer`], its functions
//! re-exported here.
//!
//! Layout (フォーマットA, 200-byte records), as published by a member bank:
//! 阿波銀行「振込入金通知（全銀協制定フォーマット）」,
//! <http://www.awabank.co.jp/houjin/service/fb/zengin/tsuchi/> (header and
//! data records: every field, width and padding rule). The trailer's and
//! end record's fields, and the rule that the trailer's 振込合計件数/金額
//! cover every data record with 取消合計件数/金額 the cancelled subset,
//! follow the open-source reader Diva.Zengin
//! (github.com/diva-osaka/Diva.Zengin, `Records/振込入金通知Trailer.cs`,
//! `Formats/振込入金通知A.cs`), which the bank page's excerpt we found did
//! not reach. Byte offsets below count from 0.
//!
//! | record | offset | width | field |
//! |---|---|---|---|
//! | header `1` | 0 | N(1) | データ区分 `1` |
//! | | 1 | N(2) | 種別コード `01` |
//! | | 3 | N(1) | コード区分 `0` (JIS; `1` EBCDIC is refused) |
//! | | 4 | N(6) | 作成日 YYMMDD, Japanese era |
//! | | 10 | N(6) | 勘定日(自) |
//! | | 16 | N(6) | 勘定日(至) |
//! | | 22 | N(4) | 銀行コード |
//! | | 26 | C(15) | 銀行名 |
//! | | 41 | N(3) | 支店コード |
//! | | 44 | C(15) | 支店名 |
//! | | 59 | N(1) | 預金種目 (1 普通, 2 当座, 4 貯蓄) |
//! | | 60 | N(7) | 口座番号 |
//! | | 67 | C(40) | 口座名 |
//! | | 107 | C(93) | ダミー |
//! | data `2` | 0 | N(1) | データ区分 `2` |
//! | | 1 | N(6) | 照会番号 (the bank's inquiry number; optional) |
//! | | 7 | N(6) | 勘定日 (booking date) |
//! | | 13 | N(6) | 起算日 (value date) |
//! | | 19 | N(10) | 金額 (yen) |
//! | | 29 | N(10) | うち他店券金額 (of which other banks' cheques) |
//! | | 39 | N(10) | 振込依頼人コード (optional) |
//! | | 49 | C(48) | 振込依頼人名 (remitter, half-width kana) |
//! | | 97 | C(15) | 仕向銀行名 (sending bank) |
//! | | 112 | C(15) | 仕向店名 (sending branch) |
//! | | 127 | N(1) | 取消区分 (`1`: this record cancels a notified credit) |
//! | | 128 | C(20) | EDI情報 |
//! | | 148 | C(52) | ダミー |
//! | trailer `8` | 0 | N(1) | データ区分 `8` |
//! | | 1 | N(6) | 振込合計件数 (data records) |
//! | | 7 | N(12) | 振込合計金額 (sum of 金額) |
//! | | 19 | N(6) | 取消合計件数 (optional) |
//! | | 25 | N(12) | 取消合計金額 (optional) |
//! | | 37 | C(163) | ダミー |
//! | end `9` | 0 | N(1) | データ区分 `9`, then C(199) ダミー |
//!
//! N fields are digits, right-aligned and zero-padded; C fields are JIS X
//! 0201 text (digits, upper-case letters, half-width katakana, a few
//! symbols), left-aligned and space-padded. An optional field may be all
//! spaces. Records may be followed by CR LF. A file may hold several
//! header–data–trailer groups (several accounts) before its end record.
//!
//! Dates are YYMMDD in the Japanese era (和暦). Only Reiwa (令和, from
//! 2019-05-01) is read and written: the six digits do not say the era, and
//! no file we read predates it.
//!
//! The payment reference: payers type it before their name, and our
//! simulated bank writes it there (`RF… ﾔﾏﾀﾞ ﾀﾛｳ`); EDI情報 is read first,
//! then the name.

use kessai_core::{Currency, Money};

pub use crate::zengin_transfer::{TransferResult, write_transfer_request, write_transfer_result};

use crate::limits::{MAX_ENTRIES, ZENGIN_MAX_AMOUNT, ZENGIN_MAX_TOTAL, ZENGIN_RECORD_BYTES};
use crate::rf::{self, Reference};
use crate::{BankFileError, Collector, Credit, Date, Format, Statement, jisx0201};

const RECORD: usize = ZENGIN_RECORD_BYTES;

/// A field: its name in the JBA layout, and its bytes within a record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub(crate) name: &'static str,
    pub(crate) at: usize,
    pub(crate) len: usize,
}

impl Field {
    pub(crate) const fn new(name: &'static str, at: usize, len: usize) -> Field {
        Field { name, at, len }
    }
}

/// Whether fields, in order, cover a record of `width` bytes exactly
/// without gaps.
pub(crate) const fn tiles(fields: &[Field], width: usize) -> bool {
    let mut at = 0;
    let mut i = 0;
    while i < fields.len() {
        if fields[i].at != at {
            return false;
        }
        at += fields[i].len;
        i += 1;
    }
    at == width
}

/// Header record (データ区分 1).
mod header {
    use super::Field;
    pub(super) const KIND: Field = Field::new("データ区分", 0, 1);
    pub(super) const TYPE_CODE: Field = Field::new("種別コード", 1, 2);
    pub(super) const CODE_SET: Field = Field::new("コード区分", 3, 1);
    pub(super) const CREATED_ON: Field = Field::new("作成日", 4, 6);
    pub(super) const BOOKED_FROM: Field = Field::new("勘定日(自)", 10, 6);
    pub(super) const BOOKED_TO: Field = Field::new("勘定日(至)", 16, 6);
    pub(super) const BANK_CODE: Field = Field::new("銀行コード", 22, 4);
    pub(super) const BANK_NAME: Field = Field::new("銀行名", 26, 15);
    pub(super) const BRANCH_CODE: Field = Field::new("支店コード", 41, 3);
    pub(super) const BRANCH_NAME: Field = Field::new("支店名", 44, 15);
    pub(super) const DEPOSIT_TYPE: Field = Field::new("預金種目", 59, 1);
    pub(super) const ACCOUNT_NUMBER: Field = Field::new("口座番号", 60, 7);
    pub(super) const ACCOUNT_NAME: Field = Field::new("口座名", 67, 40);
    pub(super) const DUMMY: Field = Field::new("ダミー", 107, 93);
    pub(super) const ALL: [Field; 14] = [
        KIND,
        TYPE_CODE,
        CODE_SET,
        CREATED_ON,
        BOOKED_FROM,
        BOOKED_TO,
        BANK_CODE,
        BANK_NAME,
        BRANCH_CODE,
        BRANCH_NAME,
        DEPOSIT_TYPE,
        ACCOUNT_NUMBER,
        ACCOUNT_NAME,
        DUMMY,
    ];
}

/// Data record (データ区分 2), one per credit or cancellation.
mod data {
    use super::Field;
    pub(super) const KIND: Field = Field::new("データ区分", 0, 1);
    pub(super) const INQUIRY_NUMBER: Field = Field::new("照会番号", 1, 6);
    pub(super) const BOOKED_ON: Field = Field::new("勘定日", 7, 6);
    pub(super) const VALUE_DATE: Field = Field::new("起算日", 13, 6);
    pub(super) const AMOUNT: Field = Field::new("金額", 19, 10);
    pub(super) const OTHER_BANK_CHEQUES: Field = Field::new("うち他店券金額", 29, 10);
    pub(super) const REMITTER_CODE: Field = Field::new("振込依頼人コード", 39, 10);
    pub(super) const REMITTER_NAME: Field = Field::new("振込依頼人名", 49, 48);
    pub(super) const SENDING_BANK: Field = Field::new("仕向銀行名", 97, 15);
    pub(super) const SENDING_BRANCH: Field = Field::new("仕向店名", 112, 15);
    pub(super) const CANCELLATION: Field = Field::new("取消区分", 127, 1);
    pub(super) const EDI: Field = Field::new("EDI情報", 128, 20);
    pub(super) const DUMMY: Field = Field::new("ダミー", 148, 52);
    pub(super) const ALL: [Field; 13] = [
        KIND,
        INQUIRY_NUMBER,
        BOOKED_ON,
        VALUE_DATE,
        AMOUNT,
        OTHER_BANK_CHEQUES,
        REMITTER_CODE,
        REMITTER_NAME,
        SENDING_BANK,
        SENDING_BRANCH,
        CANCELLATION,
        EDI,
        DUMMY,
    ];
}

/// Trailer record (データ区分 8), closing a group.
mod trailer {
    use super::Field;
    pub(super) const KIND: Field = Field::new("データ区分", 0, 1);
    pub(super) const COUNT: Field = Field::new("振込合計件数", 1, 6);
    pub(super) const TOTAL: Field = Field::new("振込合計金額", 7, 12);
    pub(super) const CANCELLED_COUNT: Field = Field::new("取消合計件数", 19, 6);
    pub(super) const CANCELLED_TOTAL: Field = Field::new("取消合計金額", 25, 12);
    pub(super) const DUMMY: Field = Field::new("ダミー", 37, 163);
    pub(super) const ALL: [Field; 6] = [KIND, COUNT, TOTAL, CANCELLED_COUNT, CANCELLED_TOTAL, DUMMY];
}

/// End record (データ区分 9), closing the file.
mod end {
    use super::Field;
    pub(super) const KIND: Field = Field::new("データ区分", 0, 1);
    pub(super) const DUMMY: Field = Field::new("ダミー", 1, 199);
    pub(super) const ALL: [Field; 2] = [KIND, DUMMY];
}

const _: () = assert!(tiles(&header::ALL, RECORD));
const _: () = assert!(tiles(&data::ALL, RECORD));
const _: () = assert!(tiles(&trailer::ALL, RECORD));
const _: () = assert!(tiles(&end::ALL, RECORD));
// The amount fields hold exactly the amounts the limits name.
const _: () = assert!(data::AMOUNT.len == 10 && trailer::TOTAL.len == 12);
const _: () = assert!(ZENGIN_MAX_AMOUNT == 10u64.pow(10) - 1 && ZENGIN_MAX_TOTAL == 10u64.pow(12) - 1);

// ---------------------------------------------------------------------------
// Reading.

/// One fixed-width record, every byte already checked printable.
pub(crate) struct Record<'a> {
    pub(crate) bytes: &'a [u8],
    /// Position in the file, from 1.
    pub(crate) number: usize,
}

impl Record<'_> {
    pub(crate) fn raw(&self, f: Field) -> &[u8] {
        self.bytes.get(f.at..f.at + f.len).unwrap_or(&[])
    }

    /// A C field, decoded and trimmed; `None` if blank.
    pub(crate) fn text(&self, f: Field) -> Option<String> {
        let decoded: String = self.raw(f).iter().filter_map(|b| jisx0201::decode(*b)).collect();
        let trimmed = decoded.trim_matches(' ');
        (!trimmed.is_empty()).then(|| trimmed.to_owned())
    }

    pub(crate) fn bad(&self, f: Field, expected: &'static str) -> BankFileError {
        let found = self.raw(f).iter().filter_map(|b| jisx0201::decode(*b)).collect();
        BankFileError::BadField { record: self.number, field: f.name, found, expected }
    }

    /// An N field: digits only.
    pub(crate) fn number(&self, f: Field) -> Result<u64, BankFileError> {
        let raw = self.raw(f);
        if raw.is_empty() || !raw.iter().all(u8::is_ascii_digit) {
            return Err(self.bad(f, "digits"));
        }
        Ok(raw.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
    }

    /// An optional N field: digits, or all spaces for none.
    pub(crate) fn optional_number(&self, f: Field) -> Result<Option<u64>, BankFileError> {
        if self.raw(f).iter().all(|b| *b == b' ') {
            return Ok(None);
        }
        self.number(f).map(Some).map_err(|_| self.bad(f, "digits or spaces"))
    }

    fn date(&self, f: Field) -> Result<Date, BankFileError> {
        Date::from_reiwa_yymmdd(self.raw(f)).map_err(|_| self.bad(f, "a Reiwa date YYMMDD (令和)"))
    }
}

/// Cuts a file into records of `width` bytes, each optionally followed by
/// CR LF, every byte checked printable JIS X 0201 before the record is
/// handed out.
pub(crate) struct Records<'a> {
    bytes: &'a [u8],
    width: usize,
    pos: usize,
    /// Records handed out so far.
    pub(crate) number: usize,
}

impl<'a> Records<'a> {
    pub(crate) fn new(bytes: &'a [u8], width: usize) -> Records<'a> {
        Records { bytes, width, pos: 0, number: 0 }
    }

    /// Whether every byte has been handed out.
    pub(crate) fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// The next record; `Err(len)` if the file ends `len` bytes into it.
    pub(crate) fn next_record(&mut self) -> Result<Result<Record<'a>, usize>, BankFileError> {
        self.number += 1;
        let rest = self.bytes.get(self.pos..).unwrap_or(&[]);
        let Some(record) = rest.get(..self.width) else {
            return Ok(Err(rest.len()));
        };
        if let Some(i) = record.iter().position(|b| !jisx0201::is_printable(*b)) {
            return Err(BankFileError::BadByte { record: self.number, column: i + 1, byte: record[i] });
        }
        self.pos += self.width;
        if self.bytes.get(self.pos..self.pos + 2) == Some(b"\r\n") {
            self.pos += 2;
        }
        Ok(Ok(Record { bytes: record, number: self.number }))
    }
}

/// What the reader expects next; each record moves it on.
enum Expect {
    Header,
    DataOrTrailer(Group),
    HeaderOrEnd,
    Nothing,
}

/// The group (one account) being read, and what its trailer must say.
struct Group {
    account: String,
    count: u64,
    total: u64,
    cancelled_count: u64,
    cancelled_total: u64,
}

impl Expect {
    fn describe(&self) -> &'static str {
        match self {
            Expect::Header => "a header record (1)",
            Expect::DataOrTrailer(_) => "a data (2) or trailer (8) record",
            Expect::HeaderOrEnd => "a header (1) or end (9) record",
            Expect::Nothing => "nothing after the end record",
        }
    }

    fn step(self, r: &Record, out: &mut Collector) -> Result<Expect, BankFileError> {
        match (self, r.bytes.first().copied()) {
            (Expect::Header | Expect::HeaderOrEnd, Some(b'1')) => Ok(Expect::DataOrTrailer(read_header(r, out)?)),
            (Expect::HeaderOrEnd, Some(b'9')) => Ok(Expect::Nothing),
            (Expect::DataOrTrailer(mut group), Some(b'2')) => {
                read_data(r, &mut group, out)?;
                Ok(Expect::DataOrTrailer(group))
            }
            (Expect::DataOrTrailer(group), Some(b'8')) => {
                check_trailer(r, &group)?;
                Ok(Expect::HeaderOrEnd)
            }
            (expect, first) => Err(BankFileError::UnexpectedRecord {
                record: r.number,
                expected: expect.describe(),
                found: first.and_then(jisx0201::decode).unwrap_or('?'),
            }),
        }
    }
}

/// Reads a whole 振込入金通知.
pub(crate) fn parse(bytes: &[u8]) -> Result<Statement, BankFileError> {
    let mut out = Collector::new();
    let mut expect = Expect::Header;
    let mut records = Records::new(bytes, RECORD);
    while !records.done() {
        if matches!(expect, Expect::Nothing) {
            return Err(BankFileError::AfterEnd { record: records.number + 1 });
        }
        let record = records.next_record()?.map_err(|len| BankFileError::Truncated { record: records.number, len })?;
        expect = expect.step(&record, &mut out)?;
    }
    match expect {
        Expect::Nothing => Ok(out.finish(Format::ZenginTransferNotice)),
        other => Err(BankFileError::EndsEarly { expected: other.describe() }),
    }
}

fn read_header(r: &Record, out: &mut Collector) -> Result<Group, BankFileError> {
    if r.raw(header::TYPE_CODE) != b"01" {
        return Err(r.bad(header::TYPE_CODE, "01 (振込入金通知)"));
    }
    if r.raw(header::CODE_SET) != b"0" {
        return Err(r.bad(header::CODE_SET, "0 (JIS)"));
    }
    let created = r.date(header::CREATED_ON)?;
    let from = r.date(header::BOOKED_FROM)?;
    let to = r.date(header::BOOKED_TO)?;
    let account = format!(
        "{:04}-{:03}-{}-{:07}",
        r.number(header::BANK_CODE)?,
        r.number(header::BRANCH_CODE)?,
        r.number(header::DEPOSIT_TYPE)?,
        r.number(header::ACCOUNT_NUMBER)?,
    );
    out.report(format!("{created}/{from}/{to}"), &account);
    Ok(Group { account, count: 0, total: 0, cancelled_count: 0, cancelled_total: 0 })
}

fn read_data(r: &Record, group: &mut Group, out: &mut Collector) -> Result<(), BankFileError> {
    let inquiry = r.optional_number(data::INQUIRY_NUMBER)?.filter(|n| *n != 0);
    let booked_on = r.date(data::BOOKED_ON)?;
    if r.optional_number(data::VALUE_DATE)?.is_some() {
        r.date(data::VALUE_DATE)?;
    }
    let yen = r.number(data::AMOUNT)?;
    r.optional_number(data::OTHER_BANK_CHEQUES)?;
    let remitter_code = r.optional_number(data::REMITTER_CODE)?.filter(|n| *n != 0);
    let cancellation = match r.raw(data::CANCELLATION) {
        b" " | b"0" => false,
        b"1" => true,
        _ => return Err(r.bad(data::CANCELLATION, "blank, 0 or 1 (取消)")),
    };
    let remitter = r.text(data::REMITTER_NAME);
    let edi = r.text(data::EDI);
    let reference = edi.as_deref().and_then(rf::find).or_else(|| remitter.as_deref().and_then(rf::find));
    let local = match inquiry {
        Some(n) => format!("{n:06}"),
        // No inquiry number: the record's position, stable only while the
        // bank resends the same file.
        None => format!("#{}", r.number),
    };
    let suffix = if cancellation { "/reversal" } else { "" };
    group.count += 1;
    group.total += yen;
    if cancellation {
        group.cancelled_count += 1;
        group.cancelled_total += yen;
    }
    out.credit(Credit {
        entry_key: format!("{}/{booked_on}/{local}{suffix}", group.account),
        booked_on: booked_on.to_string(),
        amount: Money::new(yen, Currency::JPY).map_err(|_| r.bad(data::AMOUNT, "an amount kessai handles"))?,
        reference,
        remitter,
        remitter_code: remitter_code.map(|_| String::from_utf8_lossy(r.raw(data::REMITTER_CODE)).into_owned()),
        remittance: edi,
        reversal: cancellation,
    })
}

/// The trailer must agree with the group's data records; the cancellation
/// totals are optional (blank: not stated).
fn check_trailer(r: &Record, group: &Group) -> Result<(), BankFileError> {
    let checks = [
        (trailer::COUNT, Some(r.number(trailer::COUNT)?), group.count),
        (trailer::TOTAL, Some(r.number(trailer::TOTAL)?), group.total),
        (trailer::CANCELLED_COUNT, r.optional_number(trailer::CANCELLED_COUNT)?, group.cancelled_count),
        (trailer::CANCELLED_TOTAL, r.optional_number(trailer::CANCELLED_TOTAL)?, group.cancelled_total),
    ];
    for (field, stated, counted) in checks {
        if let Some(stated) = stated.filter(|s| *s != counted) {
            return Err(BankFileError::TrailerMismatch { record: r.number, field: field.name, stated, counted });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Writing.

/// The credited account, as the header names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZenginAccount {
    /// 銀行コード, 0–9999.
    pub bank_code: u16,
    /// 銀行名, up to 15 JIS X 0201 characters (half-width kana).
    pub bank_name: String,
    /// 支店コード, 0–999.
    pub branch_code: u16,
    /// 支店名, up to 15 characters.
    pub branch_name: String,
    /// 預金種目: 1 普通, 2 当座, 4 貯蓄.
    pub deposit_type: u8,
    /// 口座番号, 0–9,999,999.
    pub number: u32,
    /// 口座名, up to 40 characters.
    pub name: String,
}

impl ZenginAccount {
    /// The center's postal transfer account as the simulated bank (`kessai
    /// bank`) and the tests name it.
    pub fn simulated_postal() -> ZenginAccount {
        ZenginAccount {
            bank_code: 9900,
            bank_name: "ﾕｳﾁﾖ".into(),
            branch_code: 19,
            branch_name: "ｾﾞﾛｲﾁｷﾕｳ".into(),
            deposit_type: 1,
            number: 1_234_567,
            name: "ｹｯｻｲｾﾝﾀｰ".into(),
        }
    }

    /// The account as [`crate::Statement::account`] and entry keys name it:
    /// `bank-branch-type-number`.
    pub fn key(&self) -> String {
        format!("{:04}-{:03}-{}-{:07}", self.bank_code, self.branch_code, self.deposit_type, self.number)
    }
}

/// One credit (or cancellation of one) to notify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeEntry {
    /// 照会番号, the bank's inquiry number, 1–999,999 (0: none).
    pub inquiry_number: u32,
    /// 勘定日 (and 起算日).
    pub booked_on: Date,
    /// In yen, at most 9,999,999,999.
    pub amount: Money,
    /// 振込依頼人コード, up to 10 digits (`None` writes zeros).
    pub remitter_code: Option<u64>,
    /// The payer's name as the bank received it (half-width kana).
    pub remitter: String,
    /// The reference the payer typed; written before the name in
    /// 振込依頼人名 (`RF… NAME`), which must then still fit 48 characters.
    pub reference: Option<Reference>,
    /// EDI情報, up to 20 characters.
    pub edi: Option<String>,
    /// 取消区分 1: this record cancels an earlier notified credit.
    pub cancellation: bool,
}

/// A 振込入金通知 to write: one account, its credits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeDraft {
    pub account: ZenginAccount,
    /// 作成日.
    pub created_on: Date,
    pub entries: Vec<NoticeEntry>,
}

/// A record of `N` bytes being written: starts as spaces, fields set one
/// by one.
pub(crate) struct RecordOut<const N: usize = RECORD>(pub(crate) [u8; N]);

impl<const N: usize> RecordOut<N> {
    pub(crate) fn new(kind: u8) -> RecordOut<N> {
        let mut bytes = [b' '; N];
        bytes[0] = kind;
        RecordOut(bytes)
    }

    pub(crate) fn put(&mut self, f: Field, bytes: &[u8]) {
        assert!(bytes.len() == f.len, "{} is {} bytes wide", f.name, f.len);
        self.0[f.at..f.at + f.len].copy_from_slice(bytes);
    }

    /// Right-aligned, zero-padded.
    pub(crate) fn number(&mut self, f: Field, value: u64) -> Result<(), BankFileError> {
        let max = 10u64.pow(u32::try_from(f.len).unwrap_or(19)) - 1;
        if value > max {
            return Err(BankFileError::OutOfRange { field: f.name, value, max });
        }
        self.put(f, format!("{value:0width$}", width = f.len).as_bytes());
        Ok(())
    }

    /// Left-aligned, space-padded, every character in JIS X 0201.
    pub(crate) fn text(&mut self, f: Field, text: &str) -> Result<(), BankFileError> {
        let mut bytes = Vec::with_capacity(f.len);
        for c in text.chars() {
            bytes.push(jisx0201::encode(c).ok_or(BankFileError::NotRepresentable { field: f.name, character: c })?);
        }
        if bytes.len() > f.len {
            return Err(BankFileError::DoesNotFit { field: f.name, len: bytes.len(), width: f.len });
        }
        bytes.resize(f.len, b' ');
        self.put(f, &bytes);
        Ok(())
    }

    fn date(&mut self, f: Field, date: Date) -> Result<(), BankFileError> {
        let yymmdd = date.reiwa_yymmdd().map_err(|_| BankFileError::OutsideReiwa { field: f.name, date })?;
        self.put(f, yymmdd.as_bytes());
        Ok(())
    }
}

/// The notice as Zengin bytes, each record followed by CR LF. Refuses
/// text JIS X 0201 cannot hold, values wider than their fields, dates
/// outside Reiwa, amounts not in yen, and entries a reader would refuse
/// (two credits with the same key, too many).
pub fn write_transfer_notice(draft: &NoticeDraft) -> Result<Vec<u8>, BankFileError> {
    if draft.entries.len() > MAX_ENTRIES {
        return Err(BankFileError::TooManyEntries { max: MAX_ENTRIES });
    }
    check_unique(&draft.entries)?;
    let mut records = vec![header_record(draft)?];
    let (mut total, mut cancelled_count, mut cancelled_total) = (0u64, 0u64, 0u64);
    for entry in &draft.entries {
        records.push(data_record(entry)?);
        total += entry.amount.amount_minor();
        if entry.cancellation {
            cancelled_count += 1;
            cancelled_total += entry.amount.amount_minor();
        }
    }
    let mut last = RecordOut::new(b'8');
    last.number(trailer::COUNT, u64::try_from(draft.entries.len()).unwrap_or(u64::MAX))?;
    last.number(trailer::TOTAL, total)?;
    last.number(trailer::CANCELLED_COUNT, cancelled_count)?;
    last.number(trailer::CANCELLED_TOTAL, cancelled_total)?;
    records.push(last);
    records.push(RecordOut::new(b'9'));
    Ok(records.iter().flat_map(|r| r.0.iter().chain(b"\r\n")).copied().collect())
}

fn check_unique(entries: &[NoticeEntry]) -> Result<(), BankFileError> {
    let mut seen = std::collections::HashSet::new();
    for e in entries.iter().filter(|e| e.inquiry_number != 0) {
        if !seen.insert((e.booked_on, e.inquiry_number, e.cancellation)) {
            let key = format!("{}/{:06}", e.booked_on, e.inquiry_number);
            return Err(BankFileError::DuplicateEntry { key });
        }
    }
    Ok(())
}

fn header_record(draft: &NoticeDraft) -> Result<RecordOut, BankFileError> {
    let a = &draft.account;
    let from = draft.entries.iter().map(|e| e.booked_on).min().unwrap_or(draft.created_on);
    let to = draft.entries.iter().map(|e| e.booked_on).max().unwrap_or(draft.created_on);
    let mut r = RecordOut::new(b'1');
    r.put(header::TYPE_CODE, b"01");
    r.put(header::CODE_SET, b"0");
    r.date(header::CREATED_ON, draft.created_on)?;
    r.date(header::BOOKED_FROM, from)?;
    r.date(header::BOOKED_TO, to)?;
    r.number(header::BANK_CODE, u64::from(a.bank_code))?;
    r.text(header::BANK_NAME, &a.bank_name)?;
    r.number(header::BRANCH_CODE, u64::from(a.branch_code))?;
    r.text(header::BRANCH_NAME, &a.branch_name)?;
    r.number(header::DEPOSIT_TYPE, u64::from(a.deposit_type))?;
    r.number(header::ACCOUNT_NUMBER, u64::from(a.number))?;
    r.text(header::ACCOUNT_NAME, &a.name)?;
    Ok(r)
}

fn data_record(e: &NoticeEntry) -> Result<RecordOut, BankFileError> {
    let found = e.amount.currency();
    if found != Currency::JPY {
        return Err(BankFileError::WrongCurrency { field: data::AMOUNT.name, found, expected: Currency::JPY });
    }
    let mut r = RecordOut::new(b'2');
    r.number(data::INQUIRY_NUMBER, u64::from(e.inquiry_number))?;
    r.date(data::BOOKED_ON, e.booked_on)?;
    r.date(data::VALUE_DATE, e.booked_on)?;
    r.number(data::AMOUNT, e.amount.amount_minor())?;
    r.number(data::OTHER_BANK_CHEQUES, 0)?;
    r.number(data::REMITTER_CODE, e.remitter_code.unwrap_or(0))?;
    let name = match &e.reference {
        Some(reference) => format!("{reference} {}", e.remitter.trim()),
        None => e.remitter.trim().to_owned(),
    };
    r.text(data::REMITTER_NAME, name.trim_end())?;
    r.put(data::CANCELLATION, if e.cancellation { b"1" } else { b"0" });
    r.text(data::EDI, e.edi.as_deref().unwrap_or(""))?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> ZenginAccount {
        ZenginAccount {
            bank_code: 1,
            bank_name: "ｷｯｻｲ".into(),
            branch_code: 101,
            branch_name: "ﾎﾝﾃﾝ".into(),
            deposit_type: 1,
            number: 1_234_567,
            name: "ｹｯｻｲｾﾝﾀｰ".into(),
        }
    }

    fn entry(inquiry_number: u32, yen: u64) -> NoticeEntry {
        NoticeEntry {
            inquiry_number,
            booked_on: Date::parse("2026-05-01").unwrap(),
            amount: Money::new(yen, Currency::JPY).unwrap(),
            remitter_code: None,
            remitter: "ﾔﾏﾀﾞ ﾀﾛｳ".into(),
            reference: None,
            edi: None,
            cancellation: false,
        }
    }

    fn draft(entries: Vec<NoticeEntry>) -> NoticeDraft {
        NoticeDraft { account: account(), created_on: Date::parse("2026-05-02").unwrap(), entries }
    }

    #[test]
    fn records_are_200_bytes_and_crlf_separated() {
        let bytes = write_transfer_notice(&draft(vec![entry(1, 5_000)])).unwrap();
        assert_eq!(bytes.len(), 4 * (RECORD + 2));
        for (i, record) in bytes.chunks(RECORD + 2).enumerate() {
            assert_eq!(&record[RECORD..], b"\r\n");
            assert_eq!(record[0], b"1289"[i]);
        }
        assert_eq!(&bytes[..22], b"1010080502080501080501");
    }

    #[test]
    fn the_writer_refuses_what_the_layout_cannot_hold() {
        let cases: Vec<(NoticeDraft, BankFileError)> = vec![
            (
                draft(vec![NoticeEntry { remitter: "山田".into(), ..entry(1, 1) }]),
                BankFileError::NotRepresentable { field: "振込依頼人名", character: '山' },
            ),
            (
                draft(vec![NoticeEntry { remitter: "ｱ".repeat(49), ..entry(1, 1) }]),
                BankFileError::DoesNotFit { field: "振込依頼人名", len: 49, width: 48 },
            ),
            (
                draft(vec![entry(1, 10_000_000_000)]),
                BankFileError::OutOfRange { field: "金額", value: 10_000_000_000, max: 9_999_999_999 },
            ),
            (
                draft(vec![NoticeEntry { amount: Money::new(1, Currency::USD).unwrap(), ..entry(1, 1) }]),
                BankFileError::WrongCurrency { field: "金額", found: Currency::USD, expected: Currency::JPY },
            ),
            (
                draft(vec![entry(1_000_000, 1)]),
                BankFileError::OutOfRange { field: "照会番号", value: 1_000_000, max: 999_999 },
            ),
            (draft(vec![entry(7, 1), entry(7, 2)]), BankFileError::DuplicateEntry { key: "2026-05-01/000007".into() }),
            (
                NoticeDraft { created_on: Date::parse("2019-04-30").unwrap(), ..draft(vec![]) },
                BankFileError::OutsideReiwa { field: "作成日", date: Date::parse("2019-04-30").unwrap() },
            ),
        ];
        for (d, want) in cases {
            assert_eq!(write_transfer_notice(&d).err(), Some(want.clone()), "{want}");
        }
    }
}
