//! Our hand-made bank files, each read to exactly the credits a person
//! reading the file would list.

use kessai_bank::{Credit, Format, Statement, parse};
use kessai_core::Currency;

use crate::common::{credit, money, rf, vector};

#[test]
fn a_bank_statement_reads_to_its_credits_and_reversal() {
    let iban = "DE89370400440532013000";
    let eur = |cents| money(cents, Currency::parse("EUR").unwrap());
    let want = Statement {
        format: Format::Camt053 { version: 8 },
        id: "2026-05-01-DE89-001".into(),
        account: iban.into(),
        credits: vec![
            Credit {
                reference: rf("RF18539007547034"),
                remitter: Some("Erika Mustermann".into()),
                ..credit(&format!("{iban}/2026050100001234"), "2026-05-01", eur(25_000))
            },
            Credit {
                reference: rf("RF96KS000042"),
                remitter: Some("Max Mustermann & Co.".into()),
                remittance: Some("Top-up card rf96 ks00 0042 thank you".into()),
                ..credit(&format!("{iban}/2026050100001240"), "2026-05-01", eur(10_050))
            },
            Credit {
                remittance: Some("Gift for Hanako".into()),
                ..credit(&format!("{iban}/3"), "2026-05-01", eur(5_000))
            },
            Credit {
                reference: rf("RF69KS000043"),
                remitter: Some("Taro Yamada".into()),
                reversal: true,
                ..credit(&format!("{iban}/2026050100001300/reversal"), "2026-05-01", eur(11_000))
            },
        ],
        // The fee; the pending credit is not counted at all.
        debits: 1,
    };
    assert_eq!(parse(&vector("camt053-bank.xml")).unwrap(), want);
}

#[test]
fn a_zengin_transfer_notice_reads_to_its_credits_and_cancellation() {
    let account = "0001-101-1-1234567";
    let yen = |n| money(n, Currency::JPY);
    let yamada = Some("RF18539007547034 ﾔﾏﾀﾞ ﾀﾛｳ".to_owned());
    let want = Statement {
        format: Format::ZenginTransferNotice,
        id: "2026-05-02/2026-05-01/2026-05-01".into(),
        account: account.into(),
        credits: vec![
            Credit {
                reference: rf("RF18539007547034"),
                remitter: yamada.clone(),
                ..credit(&format!("{account}/2026-05-01/000123"), "2026-05-01", yen(5_000))
            },
            Credit {
                reference: rf("RF96KS000042"),
                remitter: Some("ｻﾄｳ ﾊﾅｺ".into()),
                remitter_code: Some("1234567890".into()),
                remittance: Some("RF96KS000042".into()),
                ..credit(&format!("{account}/2026-05-01/000124"), "2026-05-01", yen(12_000))
            },
            // No 照会番号: keyed by its record number.
            Credit {
                remitter: Some("ｽｽﾞｷ ｲﾁﾛｳ".into()),
                ..credit(&format!("{account}/2026-05-01/#4"), "2026-05-01", yen(3_000))
            },
            Credit {
                reference: rf("RF18539007547034"),
                remitter: yamada,
                reversal: true,
                ..credit(&format!("{account}/2026-05-01/000123/reversal"), "2026-05-01", yen(5_000))
            },
        ],
        debits: 0,
    };
    assert_eq!(parse(&vector("zengin-transfer-notice.bin")).unwrap(), want);
}

#[test]
fn the_zengin_fixture_is_what_its_description_says() {
    // Guards the byte-by-byte description in zengin-transfer-notice.md.
    let bytes = vector("zengin-transfer-notice.bin");
    assert_eq!(bytes.len(), 1_412);
    for (start, kind) in [(0, b'1'), (202, b'2'), (404, b'2'), (606, b'2'), (806, b'2'), (1_008, b'8'), (1_210, b'9')] {
        assert_eq!(bytes[start], kind, "record at {start}");
    }
    assert_eq!(&bytes[806 - 2..806], b"  ", "no CR LF between records 4 and 5");
    assert_eq!(&bytes[202 + 49..202 + 65], b"RF18539007547034");
    assert_eq!(&bytes[202 + 66..202 + 70], b"\xD4\xCF\xC0\xDE", "ﾔﾏﾀﾞ in JIS X 0201");
}

#[test]
fn older_versions_spell_status_and_debtor_their_own_way() {
    // camt.053.001.02 and camt.054.001.04: `<Sts>BOOK</Sts>`, `Dbtr/Nm`,
    // an `Othr` account.
    for (kind, container, report) in [("053", "BkToCstmrStmt", "Stmt"), ("054", "BkToCstmrDbtCdtNtfctn", "Ntfctn")] {
        let version = if kind == "053" { "02" } else { "04" };
        let xml = format!(
            r#"<?xml version="1.0"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.{kind}.001.{version}">
 <{container}><GrpHdr><MsgId>M</MsgId><CreDtTm>2026-05-01T10:00:00</CreDtTm></GrpHdr>
  <{report}><Id>S-1</Id><Acct><Id><Othr><Id>0005-001-1-7654321</Id></Othr></Id></Acct>
   <Ntry><Amt Ccy="JPY">1200</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>
    <BookgDt><Dt>2026-05-01</Dt></BookgDt><AcctSvcrRef>A1</AcctSvcrRef>
    <NtryDtls><TxDtls><RltdPties><Dbtr><Nm>ﾔﾏﾀﾞ ﾀﾛｳ</Nm></Dbtr></RltdPties>
     <RmtInf><Ustrd>RF92MEMBER7</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>
   <Ntry><Amt Ccy="JPY">1</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>INFO</Sts><BookgDt><Dt>2026-05-01</Dt></BookgDt></Ntry>
  </{report}></{container}></Document>"#
        );
        let statement = parse(xml.as_bytes()).unwrap();
        let v: u8 = version.parse().unwrap();
        let format = if kind == "053" { Format::Camt053 { version: v } } else { Format::Camt054 { version: v } };
        assert_eq!(statement.format, format);
        assert_eq!(
            statement.credits,
            vec![Credit {
                reference: rf("RF92MEMBER7"),
                remitter: Some("ﾔﾏﾀﾞ ﾀﾛｳ".into()),
                remittance: Some("RF92MEMBER7".into()),
                ..credit("0005-001-1-7654321/A1", "2026-05-01", money(1200, Currency::JPY))
            }],
            "camt.{kind}.001.{version}"
        );
        assert_eq!(statement.debits, 0);
    }
}

#[test]
fn several_statements_in_one_file_all_count_each_keyed_by_its_account() {
    let stmt = |id: &str, iban: &str, reference: &str| {
        format!(
            r#"<Stmt><Id>{id}</Id><Acct><Id><IBAN>{iban}</IBAN></Id></Acct>
             <Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">0</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-05-01</Dt></Dt></Bal>
             <Ntry><Amt Ccy="EUR">1.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
              <BookgDt><Dt>2026-05-01</Dt></BookgDt><AcctSvcrRef>{reference}</AcctSvcrRef><BkTxCd/></Ntry></Stmt>"#
        )
    };
    let xml = format!(
        r#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.08"><BkToCstmrStmt>
           <GrpHdr><MsgId>M</MsgId><CreDtTm>2026-05-01T10:00:00</CreDtTm></GrpHdr>{}{}{}</BkToCstmrStmt></Document>"#,
        stmt("S-A", "DE89370400440532013000", "R1"),
        stmt("S-B", "DE02120300000000202051", "R1"),
        stmt("S-C", "DE89370400440532013000", "R2"),
    );
    let statement = parse(xml.as_bytes()).unwrap();
    assert_eq!(statement.id, "S-A,S-B,S-C");
    assert_eq!(statement.account, "DE89370400440532013000,DE02120300000000202051");
    let keys: Vec<&str> = statement.credits.iter().map(|c| c.entry_key.as_str()).collect();
    assert_eq!(keys, ["DE89370400440532013000/R1", "DE02120300000000202051/R1", "DE89370400440532013000/R2"]);
}

#[test]
fn entries_without_any_bank_reference_are_keyed_by_statement_and_position() {
    let xml = r#"<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08"><BkToCstmrDbtCdtNtfctn>
        <GrpHdr><MsgId>M</MsgId><CreDtTm>2026-05-01T10:00:00</CreDtTm></GrpHdr>
        <Ntfctn><Id>N-9</Id><Acct><Id><IBAN>DE89370400440532013000</IBAN></Id></Acct>
         <Ntry><Amt Ccy="EUR">2</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts><BkTxCd/></Ntry>
         <Ntry><Amt Ccy="EUR">1</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts><BookgDt><Dt>2026-05-01</Dt></BookgDt><BkTxCd/></Ntry>
         <Ntry><Amt Ccy="EUR">3</Amt><CdtDbtInd>CRDT</CdtDbtInd><RvslInd>true</RvslInd><Sts><Cd>BOOK</Cd></Sts><BkTxCd/></Ntry>
        </Ntfctn></BkToCstmrDbtCdtNtfctn></Document>"#;
    let statement = parse(xml.as_bytes()).unwrap();
    assert_eq!(statement.credits.len(), 1);
    assert_eq!(statement.credits[0].entry_key, "DE89370400440532013000/N-9#2");
    // A debit, and a reversed debit (money back from our own payment).
    assert_eq!(statement.debits, 2);
}
