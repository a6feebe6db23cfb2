//! Zengin 総合振込 (general transfers, 種別コード 21): the fixed-length
//! file of the Japanese Bankers Association in which a company asks its
//! bank to pay many accounts at once — here, a center paying its stores.
//! [`write_transfer_request`] writes it from a [`PayoutBatch`];
//! [`write_transfer_result`] writes the simulated bank's answer, which
//! [`crate::read_outcomes`] reads. Both are re-exported from
//! [`crate::zengin`].
//!
//! Layout (120-byte records, JIS X 0201, each record followed by CR LF as
//! [`crate::zengin::write_transfer_notice`] does with its 200-byte ones),
//! as member banks publish the JBA format, e.g. 群馬銀行「全銀協制定
//! ファイルフォーマット【総合振込】」
//! (<https://expydoc.com/doc/11700435/>), with the field positions of the
//! EDI variant (EDI情報 over 顧客コード1/2, 識別表示 `Y`) as banks' upload
//! guides give them. Offsets count from 0.
//!
//! | record | offset | width | field |
//! |---|---|---|---|
//! | header `1` | 0 | N(1) | データ区分 `1` |
//! | | 1 | N(2) | 種別コード `21` (総合振込) |
//! | | 3 | N(1) | コード区分 `0` (JIS) |
//! | | 4 | N(10) | 振込依頼人コード (the bank's code for the center) |
//! | | 14 | C(40) | 振込依頼人名 |
//! | | 54 | N(4) | 振込指定日 MMDD (the execution date) |
//! | | 58 | N(4) | 仕向銀行番号 |
//! | | 62 | C(15) | 仕向銀行名 |
//! | | 77 | N(3) | 仕向支店番号 |
//! | | 80 | C(15) | 仕向支店名 |
//! | | 95 | N(1) | 預金種目 (依頼人: 1 普通, 2 当座, 9 その他) |
//! | | 96 | N(7) | 口座番号 (依頼人) |
//! | | 103 | C(17) | ダミー |
//! | data `2` | 0 | N(1) | データ区分 `2` |
//! | | 1 | N(4) | 被仕向銀行番号 |
//! | | 5 | C(15) | 被仕向銀行名 — blank: see below |
//! | | 20 | N(3) | 被仕向支店番号 |
//! | | 23 | C(15) | 被仕向支店名 — blank |
//! | | 38 | N(4) | 手形交換所番号 — unused, blank (`0000` is read too) |
//! | | 42 | N(1) | 預金種目 (1 普通, 2 当座, 4 貯蓄, 9 その他) |
//! | | 43 | N(7) | 口座番号 |
//! | | 50 | C(30) | 受取人名 |
//! | | 80 | N(10) | 振込金額 (yen) |
//! | | 90 | N(1) | 新規コード `0` |
//! | | 91 | C(20) | EDI情報: the payout's end-to-end id |
//! | | 111 | N(1) | 振込指定区分 `7` (テレ為替) |
//! | | 112 | C(1) | 識別表示 `Y` (91–110 is EDI情報, not 顧客コード1/2) |
//! | | 113 | C(7) | ダミー; in a result, its first byte is the 振込結果コード |
//! | trailer `8` | 0 | N(1) | データ区分 `8` |
//! | | 1 | N(6) | 合計件数 |
//! | | 7 | N(12) | 合計金額 |
//! | | 19 | C(101) | ダミー |
//! | end `9` | 0 | N(1) | データ区分 `9`, then C(119) ダミー |
//!
//! The payee's bank and branch names are not known to the center (a store
//! registers codes, not names): they are written blank, and banks fill
//! them from the codes, which are what routes the transfer. The
//! remittance text has no field and is dropped; the end-to-end id travels
//! as EDI情報, which the receiving bank passes on to the store in its
//! 振込入金通知 (see [`crate::zengin`]). Only yen, only Zengin payees.
//!
//! ## The result file
//!
//! What a bank returns about a 総合振込 is not standardized by the JBA:
//! its record formats define a result code only for 預金口座振替 (the
//! data record's 振替結果コード: 0 振替済, 1 資金不足, 2 取引なし, 3
//! 預金者の都合, 4 依頼書なし, 8 委託者の都合, 9 その他), and banks
//! report failed transfers (振込不能) on their web screens (e.g. 琉球銀行's
//! 「不能理由」 list,
//! <https://www.ryugin.co.jp/service/app-internet_banking/internet-banking/biz/explanation3>)
//! or in formats of their own. Searches of public bank guides found no
//! common 総合振込 result layout. So kessai defines one, as close to what
//! banks already exchange as it can be: the request file itself, every
//! record unchanged, with a one-digit 振込結果コード in the first byte of
//! each data record's ダミー (offset 113), its values modelled on
//! 預金口座振替's, each mapped to a payout status and the ISO 20022
//! reason code kessai reports for it:
//!
//! | code | meaning | status | reason |
//! |---|---|---|---|
//! | `0` | 振込済 (paid) | Settled | – |
//! | `1` | 資金不足 (the center's account could not cover it) | Rejected | `AM04` |
//! | `2` | 取引なし (no such account) | Returned | `AC01` |
//! | `3` | 口座解約・停止 (account closed or frozen) | Returned | `AC04` |
//! | `4` | 名義相違 (holder's name differs) | Returned | `BE01` |
//! | `8` | 依頼人の都合 (cancelled by the center) | Rejected | `CUST` |
//! | `9` | その他 (any other failure) | Returned | `MS03` |
//!
//! A failed transfer after the debit is Returned: a 総合振込 debits the
//! batch total on the transfer date and credits a failed transfer back
//! (不能返却). A request read as a result is refused (its result codes are
//! blank). Each outcome's key is `振込依頼人コード/MMDD/EDI情報`: the
//! header has no year, and the center's end-to-end ids do not repeat.

use kessai_core::{Currency, Money};

use crate::limits::{ZENGIN_MAX_AMOUNT, ZENGIN_MAX_TOTAL, ZENGIN_TRANSFER_RECORD_BYTES};
use crate::payout::{Outcomes, PayeeAccount, PayoutBatch, PayoutFormat, PayoutOutcome, PayoutReport, PayoutStatus};
use crate::zengin::{Record, RecordOut, Records, tiles};
use crate::{BankFileError, jisx0201};

const RECORD: usize = ZENGIN_TRANSFER_RECORD_BYTES;

/// Header record (データ区分 1).
mod header {
    use crate::zengin::Field;
    pub(super) const KIND: Field = Field::new("データ区分", 0, 1);
    pub(super) const TYPE_CODE: Field = Field::new("種別コード", 1, 2);
    pub(super) const CODE_SET: Field = Field::new("コード区分", 3, 1);
    pub(super) const REQUESTER_CODE: Field = Field::new("振込依頼人コード", 4, 10);
    pub(super) const REQUESTER_NAME: Field = Field::new("振込依頼人名", 14, 40);
    pub(super) const DATE: Field = Field::new("振込指定日", 54, 4);
    pub(super) const BANK_CODE: Field = Field::new("仕向銀行番号", 58, 4);
    pub(super) const BANK_NAME: Field = Field::new("仕向銀行名", 62, 15);
    pub(super) const BRANCH_CODE: Field = Field::new("仕向支店番号", 77, 3);
    pub(super) const BRANCH_NAME: Field = Field::new("仕向支店名", 80, 15);
    pub(super) const DEPOSIT_TYPE: Field = Field::new("預金種目(依頼人)", 95, 1);
    pub(super) const ACCOUNT_NUMBER: Field = Field::new("口座番号(依頼人)", 96, 7);
    pub(super) const DUMMY: Field = Field::new("ダミー", 103, 17);
    pub(super) const ALL: [Field; 13] = [
        KIND,
        TYPE_CODE,
        CODE_SET,
        REQUESTER_CODE,
        REQUESTER_NAME,
        DATE,
        BANK_CODE,
        BANK_NAME,
        BRANCH_CODE,
        BRANCH_NAME,
        DEPOSIT_TYPE,
        ACCOUNT_NUMBER,
        DUMMY,
    ];
}

/// Data record (データ区分 2), one per payout.
mod data {
    use crate::zengin::Field;
    pub(super) const KIND: Field = Field::new("データ区分", 0, 1);
    pub(super) const BANK_CODE: Field = Field::new("被仕向銀行番号", 1, 4);
    pub(super) const BANK_NAME: Field = Field::new("被仕向銀行名", 5, 15);
    pub(super) const BRANCH_CODE: Field = Field::new("被仕向支店番号", 20, 3);
    pub(super) const BRANCH_NAME: Field = Field::new("被仕向支店名", 23, 15);
    pub(super) const CLEARING_HOUSE: Field = Field::new("手形交換所番号", 38, 4);
    pub(super) const DEPOSIT_TYPE: Field = Field::new("預金種目", 42, 1);
    pub(super) const ACCOUNT_NUMBER: Field = Field::new("口座番号", 43, 7);
    pub(super) const PAYEE_NAME: Field = Field::new("受取人名", 50, 30);
    pub(super) const AMOUNT: Field = Field::new("振込金額", 80, 10);
    pub(super) const NEW_CODE: Field = Field::new("新規コード", 90, 1);
    pub(super) const EDI: Field = Field::new("EDI情報", 91, 20);
    pub(super) const TRANSFER_KIND: Field = Field::new("振込指定区分", 111, 1);
    pub(super) const EDI_MARK: Field = Field::new("識別表示", 112, 1);
    pub(super) const RESULT: Field = Field::new("振込結果コード", 113, 1);
    pub(super) const DUMMY: Field = Field::new("ダミー", 114, 6);
    pub(super) const ALL: [Field; 16] = [
        KIND,
        BANK_CODE,
        BANK_NAME,
        BRANCH_CODE,
        BRANCH_NAME,
        CLEARING_HOUSE,
        DEPOSIT_TYPE,
        ACCOUNT_NUMBER,
        PAYEE_NAME,
        AMOUNT,
        NEW_CODE,
        EDI,
        TRANSFER_KIND,
        EDI_MARK,
        RESULT,
        DUMMY,
    ];
}

/// Trailer record (データ区分 8).
mod trailer {
    use crate::zengin::Field;
    pub(super) const KIND: Field = Field::new("データ区分", 0, 1);
    pub(super) const COUNT: Field = Field::new("合計件数", 1, 6);
    pub(super) const TOTAL: Field = Field::new("合計金額", 7, 12);
    pub(super) const DUMMY: Field = Field::new("ダミー", 19, 101);
    pub(super) const ALL: [Field; 4] = [KIND, COUNT, TOTAL, DUMMY];
}

/// End record (データ区分 9).
mod end {
    use crate::zengin::Field;
    pub(super) const KIND: Field = Field::new("データ区分", 0, 1);
    pub(super) const DUMMY: Field = Field::new("ダミー", 1, 119);
    pub(super) const ALL: [Field; 2] = [KIND, DUMMY];
}

const _: () = assert!(tiles(&header::ALL, RECORD));
const _: () = assert!(tiles(&data::ALL, RECORD));
const _: () = assert!(tiles(&trailer::ALL, RECORD));
const _: () = assert!(tiles(&end::ALL, RECORD));
// The amount fields hold exactly the amounts the limits name, and EDI情報
// an end-to-end id.
const _: () = assert!(data::AMOUNT.len == 10 && trailer::TOTAL.len == 12);
const _: () = assert!(ZENGIN_MAX_AMOUNT == 10u64.pow(10) - 1 && ZENGIN_MAX_TOTAL == 10u64.pow(12) - 1);
const _: () = assert!(data::EDI.len == crate::limits::MAX_END_TO_END_ID_CHARS);

/// What the bank did with one transfer, as a result file's 振込結果コード
/// says it (the table in the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransferResult {
    /// `0` 振込済.
    Transferred,
    /// `1` 資金不足.
    InsufficientFunds,
    /// `2` 取引なし.
    NoSuchAccount,
    /// `3` 口座解約・停止.
    AccountClosed,
    /// `4` 名義相違.
    NameMismatch,
    /// `8` 依頼人の都合.
    CancelledByRequester,
    /// `9` その他.
    Other,
}

impl TransferResult {
    const ALL: [TransferResult; 7] = [
        TransferResult::Transferred,
        TransferResult::InsufficientFunds,
        TransferResult::NoSuchAccount,
        TransferResult::AccountClosed,
        TransferResult::NameMismatch,
        TransferResult::CancelledByRequester,
        TransferResult::Other,
    ];

    /// The 振込結果コード digit.
    pub fn code(self) -> u8 {
        match self {
            TransferResult::Transferred => b'0',
            TransferResult::InsufficientFunds => b'1',
            TransferResult::NoSuchAccount => b'2',
            TransferResult::AccountClosed => b'3',
            TransferResult::NameMismatch => b'4',
            TransferResult::CancelledByRequester => b'8',
            TransferResult::Other => b'9',
        }
    }

    fn from_code(code: u8) -> Option<TransferResult> {
        TransferResult::ALL.into_iter().find(|r| r.code() == code)
    }

    /// What the result means for the payout.
    pub fn status(self) -> PayoutStatus {
        match self {
            TransferResult::Transferred => PayoutStatus::Settled,
            TransferResult::InsufficientFunds | TransferResult::CancelledByRequester => PayoutStatus::Rejected,
            TransferResult::NoSuchAccount
            | TransferResult::AccountClosed
            | TransferResult::NameMismatch
            | TransferResult::Other => PayoutStatus::Returned,
        }
    }

    /// The ISO 20022 reason code reported for a failure.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            TransferResult::Transferred => None,
            TransferResult::InsufficientFunds => Some("AM04"),
            TransferResult::NoSuchAccount => Some("AC01"),
            TransferResult::AccountClosed => Some("AC04"),
            TransferResult::NameMismatch => Some("BE01"),
            TransferResult::CancelledByRequester => Some("CUST"),
            TransferResult::Other => Some("MS03"),
        }
    }
}

// ---------------------------------------------------------------------------
// Writing.

/// The batch as a 総合振込 request: JIS X 0201, 120-byte records each
/// followed by CR LF. Refuses a batch [`PayoutBatch::check`] refuses, one
/// whose debtor has no Zengin account, one not in yen, an IBAN payee, an
/// amount over 10 digits and a total over 12.
pub fn write_transfer_request(batch: &PayoutBatch) -> Result<Vec<u8>, BankFileError> {
    write(batch, None)
}

/// The simulated bank's result for a request: the same records, each data
/// record carrying the result of its line (`results[i]` for
/// `batch.lines[i]`). Refuses what [`write_transfer_request`] refuses, and
/// a result count that is not the line count.
pub fn write_transfer_result(batch: &PayoutBatch, results: &[TransferResult]) -> Result<Vec<u8>, BankFileError> {
    if results.len() != batch.lines.len() {
        return Err(BankFileError::BadText {
            field: "transfer results",
            text: format!("{} results for {} lines", results.len(), batch.lines.len()),
            expected: "one result per payout line",
        });
    }
    write(batch, Some(results))
}

fn write(batch: &PayoutBatch, results: Option<&[TransferResult]>) -> Result<Vec<u8>, BankFileError> {
    batch.check()?;
    let debtor = batch
        .debtor
        .zengin
        .as_ref()
        .ok_or_else(|| BankFileError::Missing { at: "debtor Zengin account (振込依頼人)".into() })?;
    let found = batch.currency();
    if found != Currency::JPY {
        return Err(BankFileError::WrongCurrency { field: data::AMOUNT.name, found, expected: Currency::JPY });
    }
    let mut records: Vec<RecordOut<RECORD>> = Vec::with_capacity(batch.lines.len() + 3);
    let mut h = RecordOut::new(b'1');
    h.put(header::TYPE_CODE, b"21");
    h.put(header::CODE_SET, b"0");
    h.number(header::REQUESTER_CODE, debtor.requester_code)?;
    h.text(header::REQUESTER_NAME, &debtor.requester_name)?;
    h.put(header::DATE, batch.execution_date.mmdd().as_bytes());
    h.number(header::BANK_CODE, u64::from(debtor.bank_code))?;
    h.text(header::BANK_NAME, &debtor.bank_name)?;
    h.number(header::BRANCH_CODE, u64::from(debtor.branch_code))?;
    h.text(header::BRANCH_NAME, &debtor.branch_name)?;
    h.number(header::DEPOSIT_TYPE, u64::from(debtor.deposit_type))?;
    h.number(header::ACCOUNT_NUMBER, u64::from(debtor.number))?;
    records.push(h);
    let mut total: u64 = 0;
    for (i, line) in batch.lines.iter().enumerate() {
        let PayeeAccount::Zengin(payee) = &line.payee else {
            return Err(BankFileError::PayeeNotSupported {
                end_to_end_id: line.end_to_end_id.clone(),
                format: "a Zengin 総合振込",
                payee: "an IBAN account (pay it by pain.001)",
            });
        };
        let yen = line.amount.amount_minor();
        let mut d = RecordOut::new(b'2');
        d.number(data::BANK_CODE, u64::from(payee.bank_code))?;
        d.number(data::BRANCH_CODE, u64::from(payee.branch_code))?;
        d.number(data::DEPOSIT_TYPE, u64::from(payee.deposit_type))?;
        d.number(data::ACCOUNT_NUMBER, u64::from(payee.number))?;
        d.text(data::PAYEE_NAME, &payee.holder)?;
        d.number(data::AMOUNT, yen)?;
        d.put(data::NEW_CODE, b"0");
        d.text(data::EDI, &line.end_to_end_id)?;
        d.put(data::TRANSFER_KIND, b"7");
        d.put(data::EDI_MARK, b"Y");
        if let Some(result) = results.and_then(|r| r.get(i)) {
            d.put(data::RESULT, &[result.code()]);
        }
        records.push(d);
        // Each amount fits 10 digits and there are at most
        // MAX_PAYOUT_LINES of them: no overflow (limits.rs).
        total += yen;
    }
    let mut t = RecordOut::new(b'8');
    t.number(trailer::COUNT, u64::try_from(batch.lines.len()).unwrap_or(u64::MAX))?;
    t.number(trailer::TOTAL, total)?;
    records.push(t);
    records.push(RecordOut::new(b'9'));
    Ok(records.iter().flat_map(|r| r.0.iter().chain(b"\r\n")).copied().collect())
}

// ---------------------------------------------------------------------------
// Reading a result.

/// What the reader expects next.
enum Expect {
    Header,
    DataOrTrailer(Group),
    HeaderOrEnd,
    Nothing,
}

/// The group (one requester and day) being read.
struct Group {
    /// `振込依頼人コード/MMDD`.
    id: String,
    count: u64,
    total: u64,
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
}

/// Reads a whole 総合振込 result.
pub(crate) fn read_result(bytes: &[u8]) -> Result<PayoutReport, BankFileError> {
    let mut out = Outcomes::new();
    let mut ids = Vec::new();
    let mut expect = Expect::Header;
    let mut records = Records::new(bytes, RECORD);
    while !records.done() {
        if matches!(expect, Expect::Nothing) {
            return Err(BankFileError::AfterEnd { record: records.number + 1 });
        }
        let r = records.next_record()?.map_err(|len| BankFileError::ShortRecord {
            record: records.number,
            len,
            width: RECORD,
        })?;
        expect = match (expect, r.bytes.first().copied()) {
            (Expect::Header | Expect::HeaderOrEnd, Some(b'1')) => {
                let group = read_header(&r)?;
                ids.push(group.id.clone());
                Expect::DataOrTrailer(group)
            }
            (Expect::HeaderOrEnd, Some(b'9')) => Expect::Nothing,
            (Expect::DataOrTrailer(mut group), Some(b'2')) => {
                // Outcomes::push stops the file at MAX_ENTRIES records.
                out.push(read_data(&r, &mut group)?)?;
                Expect::DataOrTrailer(group)
            }
            (Expect::DataOrTrailer(group), Some(b'8')) => {
                check_trailer(&r, &group)?;
                Expect::HeaderOrEnd
            }
            (expect, first) => {
                return Err(BankFileError::UnexpectedRecord {
                    record: r.number,
                    expected: expect.describe(),
                    found: first.and_then(jisx0201::decode).unwrap_or('?'),
                });
            }
        };
    }
    match expect {
        Expect::Nothing => Ok(PayoutReport {
            format: PayoutFormat::ZenginTransferResult,
            id: ids.join(","),
            outcomes: out.finish(),
            group_rejected: None,
        }),
        other => Err(BankFileError::EndsEarly { expected: other.describe() }),
    }
}

fn read_header(r: &Record) -> Result<Group, BankFileError> {
    if r.raw(header::TYPE_CODE) != b"21" {
        return Err(r.bad(header::TYPE_CODE, "21 (総合振込)"));
    }
    if r.raw(header::CODE_SET) != b"0" {
        return Err(r.bad(header::CODE_SET, "0 (JIS)"));
    }
    let code = r.number(header::REQUESTER_CODE)?;
    let date = r.number(header::DATE)?;
    if !(1..=12).contains(&(date / 100)) || !(1..=31).contains(&(date % 100)) {
        return Err(r.bad(header::DATE, "a day MMDD"));
    }
    for f in [header::BANK_CODE, header::BRANCH_CODE, header::DEPOSIT_TYPE, header::ACCOUNT_NUMBER] {
        r.number(f)?;
    }
    Ok(Group { id: format!("{code:010}/{date:04}"), count: 0, total: 0 })
}

fn read_data(r: &Record, group: &mut Group) -> Result<PayoutOutcome, BankFileError> {
    for f in [data::BANK_CODE, data::BRANCH_CODE, data::ACCOUNT_NUMBER] {
        r.number(f)?;
    }
    r.optional_number(data::CLEARING_HOUSE)?;
    if !matches!(r.raw(data::DEPOSIT_TYPE), b"1" | b"2" | b"4" | b"9") {
        return Err(r.bad(data::DEPOSIT_TYPE, "1, 2, 4 or 9 (預金種目)"));
    }
    let yen = r.number(data::AMOUNT)?;
    r.optional_number(data::NEW_CODE)?;
    r.optional_number(data::TRANSFER_KIND)?;
    if r.raw(data::EDI_MARK) != b"Y" {
        return Err(r.bad(data::EDI_MARK, "Y (EDI情報 carries the payout's id)"));
    }
    let end_to_end_id = r.text(data::EDI).ok_or_else(|| r.bad(data::EDI, "the payout's end-to-end id"))?;
    let result = r
        .raw(data::RESULT)
        .first()
        .copied()
        .and_then(TransferResult::from_code)
        .ok_or_else(|| r.bad(data::RESULT, "a result code 0, 1, 2, 3, 4, 8 or 9 (a request has none)"))?;
    group.count += 1;
    // At most MAX_ENTRIES amounts of 10 digits: no overflow (limits.rs).
    group.total += yen;
    Ok(PayoutOutcome {
        entry_key: format!("{}/{end_to_end_id}", group.id),
        end_to_end_id,
        status: result.status(),
        amount: Some(Money::new(yen, Currency::JPY).map_err(|_| r.bad(data::AMOUNT, "an amount kessai handles"))?),
        reason: result.reason().map(str::to_owned),
        booked_on: None,
    })
}

fn check_trailer(r: &Record, group: &Group) -> Result<(), BankFileError> {
    for (field, counted) in [(trailer::COUNT, group.count), (trailer::TOTAL, group.total)] {
        let stated = r.number(field)?;
        if stated != counted {
            return Err(BankFileError::TrailerMismatch { record: r.number, field: field.name, stated, counted });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_codes_round_trip_and_mean_one_thing_each() {
        for result in TransferResult::ALL {
            assert_eq!(TransferResult::from_code(result.code()), Some(result));
            assert_eq!(result.reason().is_none(), result.status() == PayoutStatus::Settled);
        }
        for code in [b' ', b'5', b'6', b'7', b'A'] {
            assert_eq!(TransferResult::from_code(code), None);
        }
    }
}
