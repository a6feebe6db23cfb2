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
