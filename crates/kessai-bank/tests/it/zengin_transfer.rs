//! Zengin 総合振込 requests and results, checked by a parser of the
//! 120-byte layout written here from the layout itself (the table in
//! `src/zengin_transfer.rs` and the bank guide it cites), sharing no code
//! with the crate: what the writer writes, it reads back to the same
//! payouts and totals.

use kessai_bank::limits::{MAX_PAYOUT_LINES, ZENGIN_MAX_AMOUNT};
use kessai_bank::payout::{Debtor, PayeeAccount, PayoutLine, ZenginPayee};
use kessai_bank::zengin::{TransferResult, write_transfer_request, write_transfer_result};
use kessai_bank::{BankFileError as E, PayoutBatch, PayoutFormat, PayoutStatus, read_outcomes};
use kessai_core::Currency;

use crate::common::{PAYOUT_CREATED, Rng, batch, date, debtor, iban_line, money, zengin_line};

/// One record's fields, by 1-based column and width as the layout lists
/// them.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn raw(&self, column: usize, width: usize) -> &[u8] {
        &self.0[column - 1..column - 1 + width]
    }

    fn digits(&self, column: usize, width: usize) -> u64 {
        let raw = self.raw(column, width);
        assert!(raw.iter().all(u8::is_ascii_digit), "column {column}: {raw:?} is not N({width})");
        raw.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0'))
    }

    /// A C field: JIS X 0201 decoded by hand (0x5C is ¥, 0xA1–0xDF the
    /// half-width katakana U+FF61–U+FF9F), trailing spaces dropped.
    fn text(&self, column: usize, width: usize) -> String {
        let decoded: String = self
            .raw(column, width)
            .iter()
            .map(|&b| match b {
                0x5C => '¥',
                0x20..=0x7D => char::from(b),
                0xA1..=0xDF => char::from_u32(0xFF61 + u32::from(b - 0xA1)).unwrap(),
                _ => panic!("byte {b:#04x} is not JIS X 0201 text"),
            })
            .collect();
        decoded.trim_end_matches(' ').to_owned()
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Header {
    requester_code: u64,
    requester_name: String,
    mmdd: String,
    bank_code: u64,
    bank_name: String,
    branch_code: u64,
    branch_name: String,
    deposit_type: u64,
    number: u64,
}

#[derive(Debug, PartialEq, Eq)]
struct Transfer {
    bank_code: u64,
    branch_code: u64,
    deposit_type: u64,
    number: u64,
    holder: String,
    yen: u64,
    edi: String,
    /// The result file's code; a space in a request.
    result: u8,
}

#[derive(Debug)]
struct Parsed {
    header: Header,
    transfers: Vec<Transfer>,
    count: u64,
    total: u64,
}

/// Parses a file of one header, data records, a trailer and the end
/// record, each exactly 120 bytes followed by CR LF.
fn parse(bytes: &[u8]) -> Parsed {
    assert_eq!(bytes.len() % 122, 0, "whole records of 120 bytes and CR LF");
    let records: Vec<&[u8]> = bytes.chunks(122).collect();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(&r[120..], b"\r\n", "record {} ends in CR LF", i + 1);
        assert!(r[..120].iter().all(|b| *b != b'\r' && *b != b'\n'), "record {} is 120 bytes of data", i + 1);
    }
    let (first, rest) = records.split_first().unwrap();
    let (last, rest) = rest.split_last().unwrap();
    let (trailer, data) = rest.split_last().unwrap();
    let h = Fields(first);
    assert_eq!(h.raw(1, 1), b"1", "データ区分");
    assert_eq!(h.raw(2, 2), b"21", "種別コード");
    assert_eq!(h.raw(4, 1), b"0", "コード区分");
    assert_eq!(h.text(104, 17), "", "header ダミー");
    let header = Header {
        requester_code: h.digits(5, 10),
        requester_name: h.text(15, 40),
        mmdd: String::from_utf8(h.raw(55, 4).to_vec()).unwrap(),
        bank_code: h.digits(59, 4),
        bank_name: h.text(63, 15),
        branch_code: h.digits(78, 3),
        branch_name: h.text(81, 15),
        deposit_type: h.digits(96, 1),
        number: h.digits(97, 7),
    };
    let transfers = data
        .iter()
        .map(|r| {
            let d = Fields(r);
            assert_eq!(d.raw(1, 1), b"2");
            assert_eq!(d.text(6, 15), "", "被仕向銀行名 is left to the bank");
            assert_eq!(d.text(24, 15), "", "被仕向支店名 is left to the bank");
            assert_eq!(d.raw(39, 4), b"    ", "手形交換所番号 unused");
            assert_eq!(d.raw(91, 1), b"0", "新規コード");
            assert_eq!(d.raw(112, 1), b"7", "振込指定区分 テレ振込");
            assert_eq!(d.raw(113, 1), b"Y", "識別表示: EDI");
            assert_eq!(d.raw(115, 6), b"      ", "ダミー");
            Transfer {
                bank_code: d.digits(2, 4),
                branch_code: d.digits(21, 3),
                deposit_type: d.digits(43, 1),
                number: d.digits(44, 7),
                holder: d.text(51, 30),
                yen: d.digits(81, 10),
                edi: d.text(92, 20),
                result: d.raw(114, 1)[0],
            }
        })
        .collect();
    let t = Fields(trailer);
    assert_eq!(t.raw(1, 1), b"8");
    assert_eq!(t.text(20, 101), "");
    let e = Fields(last);
    assert_eq!(e.raw(1, 1), b"9");
    assert_eq!(e.text(2, 119), "");
    Parsed { header, transfers, count: t.digits(2, 6), total: t.digits(8, 12) }
}

/// What the parser must find for a batch.
fn expected(batch: &PayoutBatch, results: Option<&[TransferResult]>) -> Vec<Transfer> {
    batch
        .lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let PayeeAccount::Zengin(p) = &line.payee else { panic!("a Zengin payee") };
            Transfer {
                bank_code: u64::from(p.bank_code),
                branch_code: u64::from(p.branch_code),
                deposit_type: u64::from(p.deposit_type),
                number: u64::from(p.number),
                holder: p.holder.clone(),
                yen: line.amount.amount_minor(),
                edi: line.end_to_end_id.clone(),
                result: results.map_or(b' ', |r| r[i].code()),
            }
        })
        .collect()
}

fn check_written(batch: &PayoutBatch, bytes: &[u8], results: Option<&[TransferResult]>) {
    let parsed = parse(bytes);
    let z = batch.debtor.zengin.as_ref().unwrap();
    assert_eq!(
        parsed.header,
        Header {
            requester_code: z.requester_code,
            requester_name: z.requester_name.clone(),
            mmdd: batch.execution_date.to_string()[5..].replace('-', ""),
            bank_code: u64::from(z.bank_code),
            bank_name: z.bank_name.clone(),
            branch_code: u64::from(z.branch_code),
            branch_name: z.branch_name.clone(),
            deposit_type: u64::from(z.deposit_type),
            number: u64::from(z.number),
        }
    );
    assert_eq!(parsed.transfers, expected(batch, results));
    assert_eq!(parsed.count, u64::try_from(batch.lines.len()).unwrap());
    assert_eq!(u128::from(parsed.total), batch.total_minor());
    assert_eq!(parsed.total, parsed.transfers.iter().map(|t| t.yen).sum::<u64>());
}

fn payee(bank: u16, branch: u16, deposit_type: u8, number: u32, holder: &str) -> PayeeAccount {
    PayeeAccount::Zengin(ZenginPayee::new(bank, branch, deposit_type, number, holder).unwrap())
}

fn hand_made() -> PayoutBatch {
    let line = |id: &str, yen: u64, payee: PayeeAccount| PayoutLine {
        end_to_end_id: id.into(),
        amount: money(yen, Currency::JPY),
        payee,
        remittance: "dropped by Zengin".into(),
    };
    batch(vec![
        line("PO1", 12_000, payee(1, 101, 1, 1_234_567, "ﾔﾏﾀﾞ ｼﾖｳﾃﾝ")),
        line("PO2", ZENGIN_MAX_AMOUNT, payee(9999, 999, 2, 9_999_999, "ｶ)ｹﾂｻｲ ｼﾞﾕｰｽ")),
        line("A1B2C3D4E5F6G7H8I9J0", 1, payee(0, 0, 4, 0, &"ﾊﾟ".repeat(15))),
        line("PO4", 500, payee(33, 5, 9, 42, "ABC(1)-2/3.4,¥ｦ")),
    ])
}

#[test]
fn a_written_request_reads_back_to_its_payouts() {
    let batch = hand_made();
    let bytes = write_transfer_request(&batch).unwrap();
    assert_eq!(bytes.len(), (4 + 3) * 122);
    check_written(&batch, &bytes, None);
    assert_eq!(&bytes[..14], b"12101234567890", "データ区分, 種別コード, コード区分, 依頼人コード");
    assert_eq!(&bytes[54..58], b"0507", "振込指定日");
    // A request is not a result: its result codes are blank.
    assert_eq!(
        read_outcomes(&bytes),
        Err(E::BadField {
            record: 2,
            field: "振込結果コード",
            found: " ".into(),
            expected: "a result code 0, 1, 2, 3, 4, 8 or 9 (a request has none)"
        })
    );
}

#[test]
fn a_written_result_reads_back_to_its_outcomes() {
    let batch = hand_made();
    let results = [
        TransferResult::Transferred,
        TransferResult::NoSuchAccount,
        TransferResult::InsufficientFunds,
        TransferResult::Other,
    ];
    let bytes = write_transfer_result(&batch, &results).unwrap();
    check_written(&batch, &bytes, Some(&results));
    let report = read_outcomes(&bytes).unwrap();
    assert_eq!(report.format, PayoutFormat::ZenginTransferResult);
    assert_eq!(report.id, "1234567890/0507");
    assert_eq!(report.group_rejected, None);
    let got: Vec<(&str, PayoutStatus, Option<&str>, u64, &str)> = report
        .outcomes
        .iter()
        .map(|o| {
            (
                o.end_to_end_id.as_str(),
                o.status,
                o.reason.as_deref(),
                o.amount.unwrap().amount_minor(),
                o.entry_key.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("PO1", PayoutStatus::Settled, None, 12_000, "1234567890/0507/PO1"),
            ("PO2", PayoutStatus::Returned, Some("AC01"), ZENGIN_MAX_AMOUNT, "1234567890/0507/PO2"),
            ("A1B2C3D4E5F6G7H8I9J0", PayoutStatus::Rejected, Some("AM04"), 1, "1234567890/0507/A1B2C3D4E5F6G7H8I9J0"),
            ("PO4", PayoutStatus::Returned, Some("MS03"), 500, "1234567890/0507/PO4"),
        ]
    );
    assert!(report.outcomes.iter().all(|o| o.booked_on.is_none()));
    // Reading twice gives the same keys.
    assert_eq!(read_outcomes(&bytes).unwrap(), report);
}

#[test]
fn every_result_code_reads_back() {
    let all = [
        (TransferResult::Transferred, PayoutStatus::Settled, None),
        (TransferResult::InsufficientFunds, PayoutStatus::Rejected, Some("AM04")),
        (TransferResult::NoSuchAccount, PayoutStatus::Returned, Some("AC01")),
        (TransferResult::AccountClosed, PayoutStatus::Returned, Some("AC04")),
        (TransferResult::NameMismatch, PayoutStatus::Returned, Some("BE01")),
        (TransferResult::CancelledByRequester, PayoutStatus::Rejected, Some("CUST")),
        (TransferResult::Other, PayoutStatus::Returned, Some("MS03")),
    ];
    let lines = (0..all.len()).map(|n| zengin_line(&format!("P{n}"), 100)).collect();
    let batch = batch(lines);
    let results: Vec<TransferResult> = all.iter().map(|(r, _, _)| *r).collect();
    let report = read_outcomes(&write_transfer_result(&batch, &results).unwrap()).unwrap();
    for ((_, status, reason), outcome) in all.iter().zip(&report.outcomes) {
        assert_eq!((outcome.status, outcome.reason.as_deref()), (*status, *reason), "{}", outcome.end_to_end_id);
    }
}

#[test]
fn random_batches_read_back_exactly() {
    let mut rng = Rng::new(21);
    let kana = ['ｱ', 'ｲ', 'ｶ', 'ﾞ', 'ﾟ', 'ﾝ', ' ', '(', ')', '.', '-', 'A', 'Z', '0', '9'];
    let results = [
        TransferResult::Transferred,
        TransferResult::NoSuchAccount,
        TransferResult::AccountClosed,
        TransferResult::NameMismatch,
        TransferResult::Other,
    ];
    for round in 0..200 {
        let count = 1 + rng.index(30);
        let lines: Vec<PayoutLine> = (0..count)
            .map(|n| {
                let holder = loop {
                    let len = 1 + rng.index(30);
                    let text = rng.text(&kana, len);
                    if !text.trim().is_empty() && text.trim() == text {
                        break text;
                    }
                };
                PayoutLine {
                    end_to_end_id: format!("R{round}N{n}"),
                    amount: money(1 + rng.below(ZENGIN_MAX_AMOUNT), Currency::JPY),
                    payee: payee(
                        u16::try_from(rng.below(10_000)).unwrap(),
                        u16::try_from(rng.below(1_000)).unwrap(),
                        *rng.pick(&[1, 2, 4, 9]),
                        u32::try_from(rng.below(10_000_000)).unwrap(),
                        &holder,
                    ),
                    remittance: String::new(),
                }
            })
            .collect();
        let batch = PayoutBatch::new("B", PAYOUT_CREATED, rng.date(), debtor(), lines).unwrap();
        let outcome: Vec<TransferResult> = (0..count).map(|_| *rng.pick(&results)).collect();
        let request = write_transfer_request(&batch).unwrap();
        check_written(&batch, &request, None);
        let result = write_transfer_result(&batch, &outcome).unwrap();
        check_written(&batch, &result, Some(&outcome));
        let report = read_outcomes(&result).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(report.outcomes.len(), count);
        for ((line, result), got) in batch.lines.iter().zip(&outcome).zip(&report.outcomes) {
            assert_eq!(got.end_to_end_id, line.end_to_end_id);
            assert_eq!(got.amount, Some(line.amount));
            assert_eq!(got.status, result.status());
        }
    }
}

#[test]
fn the_writers_refuse_what_a_transfer_cannot_carry() {
    let hand = |lines: Vec<PayoutLine>| PayoutBatch {
        id: "B".into(),
        created_at: PAYOUT_CREATED,
        execution_date: date("2026-05-07"),
        debtor: debtor(),
        lines,
    };
    let eur = Currency::parse("EUR").unwrap();
    let over = ZENGIN_MAX_AMOUNT + 1;
    let cases: Vec<(&str, PayoutBatch, E)> = vec![
        (
            "an amount over 10 digits",
            batch(vec![zengin_line("PO1", over)]),
            E::OutOfRange { field: "振込金額", value: over, max: ZENGIN_MAX_AMOUNT },
        ),
        (
            "a total over 12 digits",
            batch((0..101).map(|n| zengin_line(&format!("P{n}"), ZENGIN_MAX_AMOUNT)).collect()),
            E::OutOfRange { field: "合計金額", value: 101 * ZENGIN_MAX_AMOUNT, max: 999_999_999_999 },
        ),
        (
            "not yen",
            batch(vec![PayoutLine { amount: money(100, eur), ..zengin_line("PO1", 1) }]),
            E::WrongCurrency { field: "振込金額", found: eur, expected: Currency::JPY },
        ),
        (
            "an IBAN payee",
            batch(vec![PayoutLine { amount: money(1, Currency::JPY), ..iban_line("PO2", 1) }]),
            E::PayeeNotSupported {
                end_to_end_id: "PO2".into(),
                format: "a Zengin 総合振込",
                payee: "an IBAN account (pay it by pain.001)",
            },
        ),
        (
            "too many lines",
            hand((0..=MAX_PAYOUT_LINES).map(|n| zengin_line(&format!("P{n}"), 1)).collect()),
            E::TooManyPayouts { max: MAX_PAYOUT_LINES },
        ),
        ("no lines", hand(vec![]), E::NoPayouts),
        (
            "a debtor without a Zengin contract",
            PayoutBatch { debtor: Debtor { zengin: None, ..debtor() }, ..batch(vec![zengin_line("PO1", 1)]) },
            E::Missing { at: "debtor Zengin account (振込依頼人)".into() },
        ),
        (
            "an e2e id Zengin cannot carry",
            hand(vec![zengin_line("po1", 1)]),
            E::BadText {
                field: "end-to-end id",
                text: "po1".into(),
                expected: "1-20 upper-case ASCII letters and digits",
            },
        ),
    ];
    for (label, batch, want) in cases {
        assert_eq!(write_transfer_request(&batch).err(), Some(want.clone()), "{label}");
        let results = vec![TransferResult::Transferred; batch.lines.len()];
        assert_eq!(write_transfer_result(&batch, &results).err(), Some(want), "{label} (result)");
    }
    let ok = batch(vec![zengin_line("PO1", 1)]);
    assert_eq!(
        write_transfer_result(&ok, &[]),
        Err(E::BadText {
            field: "transfer results",
            text: "0 results for 1 lines".into(),
            expected: "one result per payout line"
        })
    );
}
