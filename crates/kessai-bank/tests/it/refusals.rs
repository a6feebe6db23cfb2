//! Every way a bank file is refused, each with its own error naming what
//! is wrong and where. One table per format: a label, the bytes, the error.

use kessai_bank::limits::{MAX_ENTRIES, MAX_FILE_BYTES, MAX_TEXT_CHARS, MAX_XML_NODES};
use kessai_bank::{AmountProblem, BankFileError as E, parse};

use crate::common::vector;

/// The Zengin fixture with `bytes` written at `at`.
fn zengin_with(at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut file = vector("zengin-transfer-notice.bin");
    file[at..at + bytes.len()].copy_from_slice(bytes);
    file
}

// Where records start in the fixture (see zengin-transfer-notice.md).
const R1: usize = 0;
const R2: usize = 202;
const R3: usize = 404;
const R5: usize = 806;
const R6: usize = 1_008;
const R7: usize = 1_210;

fn bad_field(record: usize, field: &'static str, found: &str, expected: &'static str) -> E {
    E::BadField { record, field, found: found.into(), expected }
}

#[test]
fn zengin_files_are_refused_for_what_is_wrong_with_them() {
    let fixture = vector("zengin-transfer-notice.bin");
    let mut one_more_record = fixture.clone();
    one_more_record.extend_from_slice(&fixture[R7..]);
    let cases: Vec<(&str, Vec<u8>, E)> = vec![
        ("truncated mid-record", fixture[..1_100].to_vec(), E::Truncated { record: 6, len: 92 }),
        ("truncated in the header", fixture[..10].to_vec(), E::Truncated { record: 1, len: 10 }),
        ("a dangling CR", [&fixture[..], b"\r"].concat(), E::AfterEnd { record: 8 }),
        (
            "trailer count disagrees",
            zengin_with(R6 + 1, b"000005"),
            E::TrailerMismatch { record: 6, field: "振込合計件数", stated: 5, counted: 4 },
        ),
        (
            "trailer total disagrees",
            zengin_with(R3 + 19, b"0000012001"),
            E::TrailerMismatch { record: 6, field: "振込合計金額", stated: 25_000, counted: 25_001 },
        ),
        (
            "trailer cancellation total disagrees",
            zengin_with(R6 + 25, b"000000005001"),
            E::TrailerMismatch { record: 6, field: "取消合計金額", stated: 5_001, counted: 5_000 },
        ),
        ("a byte outside JIS X 0201", zengin_with(R2 + 49, b"\x80"), E::BadByte { record: 2, column: 50, byte: 0x80 }),
        ("a Shift_JIS kanji", zengin_with(R3 + 60, b"\x8E\x52"), E::BadByte { record: 3, column: 61, byte: 0x8E }),
        ("a UTF-8 kanji", zengin_with(R3 + 60, "山".as_bytes()), E::BadByte { record: 3, column: 61, byte: 0xE5 }),
        ("a control byte", zengin_with(R1 + 199, b"\t"), E::BadByte { record: 1, column: 200, byte: 0x09 }),
        ("LF only between records", zengin_with(R1 + 200, b"\n "), E::BadByte { record: 2, column: 1, byte: 0x0A }),
        ("no end record", fixture[..R7].to_vec(), E::EndsEarly { expected: "a header (1) or end (9) record" }),
        (
            "no trailer",
            [&fixture[..R6], &fixture[R7..]].concat(),
            E::UnexpectedRecord { record: 6, expected: "a data (2) or trailer (8) record", found: '9' },
        ),
        ("a record after the end", one_more_record, E::AfterEnd { record: 8 }),
        ("data before a header", fixture[R2..].to_vec(), E::UnknownFormat),
        ("an amount with a blank", zengin_with(R2 + 19, b"00000 5000"), bad_field(2, "金額", "00000 5000", "digits")),
        ("no such day", zengin_with(R2 + 7, b"080230"), bad_field(2, "勘定日", "080230", "a Reiwa date YYMMDD (令和)")),
        (
            "a Heisei date",
            zengin_with(R1 + 4, b"010430"),
            bad_field(1, "作成日", "010430", "a Reiwa date YYMMDD (令和)"),
        ),
        ("EBCDIC", zengin_with(R1 + 3, b"1"), bad_field(1, "コード区分", "1", "0 (JIS)")),
        (
            "another kind of Zengin file",
            zengin_with(R1 + 1, b"03"),
            bad_field(1, "種別コード", "03", "01 (振込入金通知)"),
        ),
        ("a bad cancellation flag", zengin_with(R2 + 127, b"2"), bad_field(2, "取消区分", "2", "blank, 0 or 1 (取消)")),
        (
            "a credit notified twice",
            zengin_with(R5 + 127, b"0"),
            E::DuplicateEntry { key: "0001-101-1-1234567/2026-05-01/000123".into() },
        ),
    ];
    for (label, bytes, want) in cases {
        assert_eq!(parse(&bytes), Err(want), "{label}");
    }
}

fn fixture_xml() -> String {
    String::from_utf8(vector("camt053-bank.xml")).unwrap()
}

/// The camt fixture with the first `from` replaced by `to`.
fn xml_with(from: &str, to: &str) -> Vec<u8> {
    let xml = fixture_xml();
    assert!(xml.contains(from), "{from}");
    xml.replacen(from, to, 1).into_bytes()
}

const NTRY1: &str = "BkToCstmrStmt/Stmt[1]/Ntry[1]";

fn huge_document(inner: &str, count: usize, item: &str) -> Vec<u8> {
    let mut xml = String::from(r#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>"#);
    xml.push_str(inner);
    xml.push_str(&item.repeat(count));
    xml.push_str("</Stmt></BkToCstmrStmt></Document>");
    xml.into_bytes()
}

#[test]
fn camt_files_are_refused_for_what_is_wrong_with_them() {
    let stmt_head = "<Stmt><Id>S</Id><Acct><Id><IBAN>DE89370400440532013000</IBAN></Id></Acct>";
    let long = "x".repeat(MAX_TEXT_CHARS + 1);
    let cases: Vec<(&str, Vec<u8>, E)> = vec![
        ("a DOCTYPE", xml_with("<Document", "<!DOCTYPE Document>\n<Document"), E::Doctype),
        (
            "entities in a DTD",
            xml_with("<Document", "<!DOCTYPE d [<!ENTITY a \"aaaa\"><!ENTITY b \"&a;&a;&a;\">]>\n<Document"),
            E::Doctype,
        ),
        (
            "too many fraction digits",
            xml_with(">250.00<", ">250.001<"),
            E::BadAmount {
                at: format!("{NTRY1}/Amt"),
                text: "250.001".into(),
                problem: AmountProblem::TooManyFractionDigits { exponent: 2 },
            },
        ),
        (
            "a negative amount",
            xml_with(">250.00<", ">-250.00<"),
            E::BadAmount { at: format!("{NTRY1}/Amt"), text: "-250.00".into(), problem: AmountProblem::Negative },
        ),
        (
            "an amount too large",
            xml_with(">250.00<", ">10000000000000.01<"),
            E::BadAmount {
                at: format!("{NTRY1}/Amt"),
                text: "10000000000000.01".into(),
                problem: AmountProblem::TooLarge,
            },
        ),
        (
            "not a number",
            xml_with(">250.00<", ">250,00<"),
            E::BadAmount { at: format!("{NTRY1}/Amt"), text: "250,00".into(), problem: AmountProblem::NotDecimal },
        ),
        ("a missing amount", xml_with(r#"<Amt Ccy="EUR">250.00</Amt>"#, ""), E::Missing { at: format!("{NTRY1}/Amt") }),
        ("an empty amount", xml_with(r#">250.00<"#, "><"), E::Missing { at: format!("{NTRY1}/Amt") }),
        (
            "a missing currency",
            xml_with(r#"<Amt Ccy="EUR">250.00"#, "<Amt>250.00"),
            E::Missing { at: format!("{NTRY1}/Amt/@Ccy") },
        ),
        (
            "an unknown currency",
            xml_with(r#"<Amt Ccy="EUR">250.00"#, r#"<Amt Ccy="XXX">250.00"#),
            E::UnknownCurrency { at: format!("{NTRY1}/Amt"), code: "XXX".into() },
        ),
        (
            "an unknown version",
            xml_with("camt.053.001.08\"", "camt.053.001.09\""),
            E::UnknownNamespace("urn:iso:std:iso:20022:tech:xsd:camt.053.001.09".into()),
        ),
        (
            "another message",
            xml_with("camt.053.001.08\"", "camt.052.001.08\""),
            E::UnknownNamespace("urn:iso:std:iso:20022:tech:xsd:camt.052.001.08".into()),
        ),
        (
            "no namespace",
            xml_with(r#" xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08""#, ""),
            E::UnknownNamespace(String::new()),
        ),
        (
            "another root",
            xml_with("<Document xmlns=", "<Doc xmlns=").replace_last_close(),
            E::BadValue { at: "/".into(), found: "Doc".into(), expected: "a Document element" },
        ),
        (
            "a booking date that is no day",
            xml_with("<Dt>2026-05-01</Dt>\n        </BookgDt>", "<Dt>2026-02-30</Dt>\n        </BookgDt>"),
            E::BadDate { at: format!("{NTRY1}/BookgDt/Dt"), text: "2026-02-30".into() },
        ),
        (
            "a credit without booking date",
            xml_with("<BookgDt>\n          <Dt>2026-05-01</Dt>\n        </BookgDt>", ""),
            E::Missing { at: format!("{NTRY1}/BookgDt") },
        ),
        (
            "a direction that is neither",
            xml_with("<CdtDbtInd>CRDT</CdtDbtInd>\n        <Sts>", "<CdtDbtInd>CRED</CdtDbtInd>\n        <Sts>"),
            E::BadValue { at: format!("{NTRY1}/CdtDbtInd"), found: "CRED".into(), expected: "CRDT or DBIT" },
        ),
        (
            "no status",
            xml_with("<Sts>\n          <Cd>BOOK</Cd>\n        </Sts>", ""),
            E::Missing { at: format!("{NTRY1}/Sts") },
        ),
        (
            "no statement id",
            xml_with("<Id>2026-05-01-DE89-001</Id>", ""),
            E::Missing { at: "BkToCstmrStmt/Stmt[1]/Id".into() },
        ),
        (
            "no account",
            xml_with("<IBAN>DE89370400440532013000</IBAN>", ""),
            E::Missing { at: "BkToCstmrStmt/Stmt[1]/Acct/Id/IBAN".into() },
        ),
        (
            "a remittance line too long",
            xml_with("<Ustrd>Gift for Hanako</Ustrd>", &format!("<Ustrd>{long}</Ustrd>")),
            E::TextTooLong {
                at: "BkToCstmrStmt/Stmt[1]/Ntry[3]/NtryDtls/TxDtls[1]/RmtInf/Ustrd[1]".into(),
                len: MAX_TEXT_CHARS + 1,
                max: MAX_TEXT_CHARS,
            },
        ),
        (
            "two credits with one bank reference",
            xml_with("<NtryRef>3</NtryRef>", "<AcctSvcrRef>2026050100001234</AcctSvcrRef>"),
            E::DuplicateEntry { key: "DE89370400440532013000/2026050100001234".into() },
        ),
        ("not well-formed", vector("camt053-bank.xml")[..2_000].to_vec(), E::Xml("placeholder".into())),
        ("not UTF-8", xml_with("Gift for Hanako", "Gift f\u{0}r Hanako").replace_nul(0xFF), E::NotUtf8 { offset: 0 }),
        ("not a statement at all", b"%PDF-1.7".to_vec(), E::UnknownFormat),
        (
            "too many entries",
            huge_document(stmt_head, MAX_ENTRIES + 1, "<Ntry/>"),
            E::TooManyEntries { max: MAX_ENTRIES },
        ),
        (
            "too many nodes",
            huge_document(stmt_head, usize::try_from(MAX_XML_NODES).unwrap(), "<x/>"),
            E::TooManyNodes { max: MAX_XML_NODES },
        ),
        (
            "too large",
            vec![b' '; MAX_FILE_BYTES + 1],
            E::FileTooLarge { size: MAX_FILE_BYTES + 1, max: MAX_FILE_BYTES },
        ),
    ];
    for (label, bytes, want) in cases {
        let got = parse(&bytes);
        match (&got, &want) {
            // The parser's own words vary; the variant is what matters.
            (Err(E::Xml(_)), E::Xml(_)) => {}
            (Err(E::NotUtf8 { .. }), E::NotUtf8 { .. }) => {}
            _ => assert_eq!(got, Err(want), "{label}"),
        }
    }
}

/// Small helpers for building broken inputs.
trait Broken {
    fn replace_last_close(self) -> Vec<u8>;
    fn replace_nul(self, byte: u8) -> Vec<u8>;
}

impl Broken for Vec<u8> {
    /// `</Document>` → `</Doc>`, to match a renamed root.
    fn replace_last_close(self) -> Vec<u8> {
        String::from_utf8(self).unwrap().replace("</Document>", "</Doc>").into_bytes()
    }

    /// The first NUL byte → `byte`.
    fn replace_nul(mut self, byte: u8) -> Vec<u8> {
        let at = self.iter().position(|b| *b == 0).unwrap();
        self[at] = byte;
        self
    }
}

#[test]
fn refusals_say_where() {
    // A person fixing a file needs the record and the field, or the path.
    let zengin = parse(&zengin_with(R3 + 19, b"00000X2000")).unwrap_err().to_string();
    assert_eq!(zengin, "record 3: 金額 is \"00000X2000\", expected digits");
    let xml = parse(&xml_with(">250.00<", ">250.001<")).unwrap_err().to_string();
    assert_eq!(xml, format!("{NTRY1}/Amt: amount \"250.001\" refused: more than the currency's 2 fraction digits"));
}

/// The written Zengin result of four payouts (PO0–PO3, 1,000–4,000 yen),
/// with `bytes` at `at`. Records are 122 bytes apart (120 and CR LF).
fn result_with(at: usize, bytes: &[u8]) -> Vec<u8> {
    use kessai_bank::zengin::{TransferResult as T, write_transfer_result};
    let lines = (0..4).map(|n| crate::common::zengin_line(&format!("PO{n}"), 1_000 * (n + 1))).collect();
    let results = [T::Transferred, T::NoSuchAccount, T::NameMismatch, T::InsufficientFunds];
    let mut file = write_transfer_result(&crate::common::batch(lines), &results).unwrap();
    file[at..at + bytes.len()].copy_from_slice(bytes);
    file
}

const Z1: usize = 0;
const Z2: usize = 122;
const Z3: usize = 244;
const Z6: usize = 610;
const Z7: usize = 732;

#[test]
fn zengin_results_are_refused_for_what_is_wrong_with_them() {
    use kessai_bank::read_outcomes;
    let file = result_with(0, b"1");
    let mut one_more = file.clone();
    one_more.extend_from_slice(&file[Z7..]);
    let cases: Vec<(&str, Vec<u8>, E)> = vec![
        ("truncated mid-record", file[..300].to_vec(), E::ShortRecord { record: 3, len: 56, width: 120 }),
        ("a dangling CR", [&file[..], b"\r"].concat(), E::AfterEnd { record: 8 }),
        ("a record after the end", one_more, E::AfterEnd { record: 8 }),
        (
            "trailer count disagrees",
            result_with(Z6 + 1, b"000005"),
            E::TrailerMismatch { record: 6, field: "合計件数", stated: 5, counted: 4 },
        ),
        (
            "trailer total disagrees",
            result_with(Z2 + 80, b"0000001001"),
            E::TrailerMismatch { record: 6, field: "合計金額", stated: 10_000, counted: 10_001 },
        ),
        ("a byte outside JIS X 0201", result_with(Z2 + 50, b"\x80"), E::BadByte { record: 2, column: 51, byte: 0x80 }),
        ("a salary transfer", result_with(Z1 + 1, b"11"), bad_field(1, "種別コード", "11", "21 (総合振込)")),
        ("EBCDIC", result_with(Z1 + 3, b"1"), bad_field(1, "コード区分", "1", "0 (JIS)")),
        ("no such day", result_with(Z1 + 54, b"1332"), bad_field(1, "振込指定日", "1332", "a day MMDD")),
        (
            "no EDI mark",
            result_with(Z2 + 112, b" "),
            bad_field(2, "識別表示", " ", "Y (EDI情報 carries the payout's id)"),
        ),
        (
            "no EDI",
            result_with(Z2 + 91, &[b' '; 20]),
            bad_field(2, "EDI情報", &" ".repeat(20), "the payout's end-to-end id"),
        ),
        (
            "an unknown result",
            result_with(Z3 + 113, b"5"),
            bad_field(3, "振込結果コード", "5", "a result code 0, 1, 2, 3, 4, 8 or 9 (a request has none)"),
        ),
        ("deposit type 3", result_with(Z2 + 42, b"3"), bad_field(2, "預金種目", "3", "1, 2, 4 or 9 (預金種目)")),
        (
            "an amount with a blank",
            result_with(Z2 + 80, b"00000 1000"),
            bad_field(2, "振込金額", "00000 1000", "digits"),
        ),
        ("no end record", file[..Z7].to_vec(), E::EndsEarly { expected: "a header (1) or end (9) record" }),
        (
            "no trailer",
            [&file[..Z6], &file[Z7..]].concat(),
            E::UnexpectedRecord { record: 6, expected: "a data (2) or trailer (8) record", found: '9' },
        ),
        ("one payout twice", result_with(Z3 + 91, b"PO0"), E::DuplicateEntry { key: "1234567890/0507/PO0".into() }),
        ("data before a header", file[Z2..].to_vec(), E::UnknownOutcomeFormat),
        ("a transfer notice", vector("zengin-transfer-notice.bin"), bad_field(1, "種別コード", "01", "21 (総合振込)")),
    ];
    for (label, bytes, want) in cases {
        assert_eq!(read_outcomes(&bytes), Err(want), "{label}");
    }
}

/// The written status report with the first `from` replaced by `to`.
fn report_with(from: &str, to: &str) -> Vec<u8> {
    let xml = kessai_bank::pain002::write(&crate::outcomes::status_report()).unwrap();
    assert!(xml.contains(from), "{from}");
    xml.replacen(from, to, 1).into_bytes()
}

#[test]
fn outcome_files_are_refused_for_what_is_wrong_with_them() {
    use kessai_bank::read_outcomes;
    let tx1 = "CstmrPmtStsRpt/OrgnlPmtInfAndSts[1]/TxInfAndSts[1]";
    let many_transactions = {
        let head = r#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"><CstmrPmtStsRpt><GrpHdr><MsgId>M</MsgId></GrpHdr><OrgnlGrpInfAndSts><OrgnlMsgId>B</OrgnlMsgId></OrgnlGrpInfAndSts><OrgnlPmtInfAndSts><OrgnlPmtInfId>B</OrgnlPmtInfId>"#;
        let mut xml = String::from(head);
        xml.push_str(&"<TxInfAndSts/>".repeat(MAX_ENTRIES + 1));
        xml.push_str("</OrgnlPmtInfAndSts></CstmrPmtStsRpt></Document>");
        xml.into_bytes()
    };
    let cases: Vec<(&str, Vec<u8>, E)> = vec![
        ("a DOCTYPE", report_with("<Document", "<!DOCTYPE Document>\n<Document"), E::Doctype),
        (
            "a newer version",
            report_with("pain.002.001.10\"", "pain.002.001.11\""),
            E::UnknownOutcomeNamespace("urn:iso:std:iso:20022:tech:xsd:pain.002.001.11".into()),
        ),
        (
            "another message",
            report_with("pain.002.001.10\"", "camt.052.001.08\""),
            E::UnknownOutcomeNamespace("urn:iso:std:iso:20022:tech:xsd:camt.052.001.08".into()),
        ),
        (
            "no report id",
            report_with("<MsgId>STS-1</MsgId>", ""),
            E::Missing { at: "CstmrPmtStsRpt/GrpHdr/MsgId".into() },
        ),
        (
            "no original message id",
            report_with("<OrgnlMsgId>PAYOUT-2026-05-07</OrgnlMsgId>", ""),
            E::Missing { at: "CstmrPmtStsRpt/OrgnlGrpInfAndSts/OrgnlMsgId".into() },
        ),
        (
            "no end-to-end id",
            report_with("<OrgnlEndToEndId>PO1</OrgnlEndToEndId>", ""),
            E::Missing { at: format!("{tx1}/OrgnlEndToEndId") },
        ),
        (
            "one payout twice",
            report_with("<OrgnlEndToEndId>PO2</OrgnlEndToEndId>", "<OrgnlEndToEndId>PO1</OrgnlEndToEndId>"),
            E::DuplicateEntry { key: "STS-1/PO1".into() },
        ),
        (
            "an amount that is no number",
            report_with(">12000<", ">12,000<"),
            E::BadAmount {
                at: format!("{tx1}/OrgnlTxRef/Amt/InstdAmt"),
                text: "12,000".into(),
                problem: AmountProblem::NotDecimal,
            },
        ),
        (
            "an unknown currency",
            report_with("Ccy=\"JPY\"", "Ccy=\"XXX\""),
            E::UnknownCurrency { at: format!("{tx1}/OrgnlTxRef/Amt/InstdAmt"), code: "XXX".into() },
        ),
        (
            "an id too long",
            report_with("<OrgnlEndToEndId>PO1<", &format!("<OrgnlEndToEndId>{}<", "P".repeat(36))),
            E::TextTooLong { at: format!("{tx1}/OrgnlEndToEndId"), len: 36, max: 35 },
        ),
        ("too many transactions", many_transactions, E::TooManyEntries { max: MAX_ENTRIES }),
        (
            "another root",
            report_with("<Document xmlns=", "<Doc xmlns=").replace_last_close(),
            E::BadValue { at: "/".into(), found: "Doc".into(), expected: "a Document element" },
        ),
        ("not XML", report_with("</CstmrPmtStsRpt>", "</CstmrPmtStsRp>"), E::Xml("placeholder".into())),
        ("not UTF-8", report_with("STS-1", "STS-\u{0}").replace_nul(0xFF), E::NotUtf8 { offset: 0 }),
        ("nothing we read", b"%PDF-1.7".to_vec(), E::UnknownOutcomeFormat),
        ("empty", Vec::new(), E::UnknownOutcomeFormat),
        (
            "too large",
            vec![b' '; MAX_FILE_BYTES + 1],
            E::FileTooLarge { size: MAX_FILE_BYTES + 1, max: MAX_FILE_BYTES },
        ),
    ];
    for (label, bytes, want) in cases {
        let got = read_outcomes(&bytes);
        match (&got, &want) {
            (Err(E::Xml(_)), E::Xml(_)) | (Err(E::NotUtf8 { .. }), E::NotUtf8 { .. }) => {}
            _ => assert_eq!(got, Err(want), "{label}"),
        }
    }
    // A camt file's problems are the credit reader's, said the same way.
    let bad_camt = xml_with("<Id>2026-05-01-DE89-001</Id>", "");
    assert_eq!(read_outcomes(&bad_camt).err(), parse(&bad_camt).err());
    assert!(read_outcomes(&bad_camt).is_err());
}
