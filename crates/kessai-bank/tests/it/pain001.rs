//! pain.001 files as the center writes them: valid against the official
//! schema (xmllint), and saying what the batch says when read back with a
//! plain XML parser.

use kessai_bank::payout::{Debtor, PayeeAccount, PayoutLine};
use kessai_bank::{PayoutBatch, pain001};
use kessai_core::Currency;
use roxmltree::{Document, Node};

use crate::common::{PAYOUT_CREATED, Rng, batch, date, debtor, iban_line, money, zengin_debtor, zengin_line};
use crate::xsd::{validate, xmllint};

fn child<'a, 'i>(node: Node<'a, 'i>, name: &str) -> Node<'a, 'i> {
    node.children().find(|n| n.has_tag_name((pain001::NAMESPACE, name))).unwrap_or_else(|| panic!("no {name}"))
}

fn path<'a, 'i>(node: Node<'a, 'i>, names: &[&str]) -> Node<'a, 'i> {
    names.iter().fold(node, |n, name| child(n, name))
}

fn text<'a>(node: Node<'a, '_>, names: &[&str]) -> &'a str {
    path(node, names).text().unwrap_or("")
}

fn has(node: Node, name: &str) -> bool {
    node.children().any(|n| n.has_tag_name((pain001::NAMESPACE, name)))
}

/// Reads the file back and checks it against the batch, field by field.
fn check(batch: &PayoutBatch, xml: &str) {
    let doc = Document::parse(xml).unwrap();
    let root = doc.root_element();
    assert!(root.has_tag_name((pain001::NAMESPACE, "Document")));
    let initiation = child(root, "CstmrCdtTrfInitn");
    let header = child(initiation, "GrpHdr");
    let block = child(initiation, "PmtInf");
    let count = batch.lines.len().to_string();
    let exponent = u32::from(batch.currency().exponent());
    let decimal = |minor: u128| -> String {
        let scale = 10u128.pow(exponent);
        if exponent == 0 { minor.to_string() } else { format!("{}.{:02}", minor / scale, minor % scale) }
    };
    assert_eq!(text(header, &["MsgId"]), batch.id);
    assert_eq!(text(header, &["NbOfTxs"]), count);
    assert_eq!(text(header, &["CtrlSum"]), decimal(batch.total_minor()));
    assert_eq!(text(header, &["InitgPty", "Nm"]), batch.debtor.name);
    assert_eq!(text(block, &["PmtInfId"]), batch.id);
    assert_eq!(text(block, &["PmtMtd"]), "TRF");
    assert_eq!(text(block, &["BtchBookg"]), "true");
    assert_eq!(text(block, &["NbOfTxs"]), count);
    assert_eq!(text(block, &["CtrlSum"]), decimal(batch.total_minor()));
    assert_eq!(text(block, &["ReqdExctnDt", "Dt"]), batch.execution_date.to_string());
    assert_eq!(text(block, &["Dbtr", "Nm"]), batch.debtor.name);
    match (&batch.debtor.iban, &batch.debtor.zengin) {
        (Some(iban), _) => assert_eq!(text(block, &["DbtrAcct", "Id", "IBAN"]), iban),
        (None, Some(z)) => {
            assert_eq!(text(block, &["DbtrAcct", "Id", "Othr", "Id"]), format!("{:07}", z.number));
            assert_eq!(text(block, &["DbtrAcct", "Tp", "Prtry"]), z.deposit_type.to_string());
        }
        (None, None) => panic!("a batch's debtor has an account"),
    }
    let agent = path(block, &["DbtrAgt", "FinInstnId"]);
    if let Some(bic) = &batch.debtor.bic {
        assert_eq!(text(agent, &["BICFI"]), bic);
    }
    if let Some(z) = &batch.debtor.zengin {
        assert_eq!(text(agent, &["ClrSysMmbId", "ClrSysId", "Cd"]), "JPZGN");
        assert_eq!(text(agent, &["ClrSysMmbId", "MmbId"]), format!("{:04}{:03}", z.bank_code, z.branch_code));
    }
    if batch.debtor.bic.is_none() && batch.debtor.zengin.is_none() {
        assert_eq!(text(agent, &["Othr", "Id"]), "NOTPROVIDED");
    }
    let transactions: Vec<Node> =
        block.children().filter(|n| n.has_tag_name((pain001::NAMESPACE, "CdtTrfTxInf"))).collect();
    assert_eq!(transactions.len(), batch.lines.len());
    let mut sum = 0u128;
    for (tx, line) in transactions.iter().zip(&batch.lines) {
        assert_eq!(text(*tx, &["PmtId", "EndToEndId"]), line.end_to_end_id);
        let amount = path(*tx, &["Amt", "InstdAmt"]);
        assert_eq!(amount.attribute("Ccy"), Some(line.amount.currency().code()));
        assert_eq!(amount.text(), Some(decimal(u128::from(line.amount.amount_minor())).as_str()));
        sum += u128::from(line.amount.amount_minor());
        assert_eq!(text(*tx, &["Cdtr", "Nm"]), line.payee.holder());
        match &line.payee {
            PayeeAccount::Iban(p) => {
                assert_eq!(text(*tx, &["CdtrAcct", "Id", "IBAN"]), p.iban);
                match &p.bic {
                    Some(bic) => assert_eq!(text(*tx, &["CdtrAgt", "FinInstnId", "BICFI"]), bic),
                    None => assert!(!has(*tx, "CdtrAgt")),
                }
            }
            PayeeAccount::Zengin(p) => {
                let agent = path(*tx, &["CdtrAgt", "FinInstnId", "ClrSysMmbId"]);
                assert_eq!(text(agent, &["ClrSysId", "Cd"]), "JPZGN");
                assert_eq!(text(agent, &["MmbId"]), format!("{:04}{:03}", p.bank_code, p.branch_code));
                assert_eq!(text(*tx, &["CdtrAcct", "Id", "Othr", "Id"]), format!("{:07}", p.number));
                assert_eq!(text(*tx, &["CdtrAcct", "Tp", "Prtry"]), p.deposit_type.to_string());
            }
        }
        if line.remittance.is_empty() {
            assert!(!has(*tx, "RmtInf"));
        } else {
            assert_eq!(text(*tx, &["RmtInf", "Ustrd"]), line.remittance);
        }
    }
    assert_eq!(sum, batch.total_minor());
}

/// Writes, checks against the schema (when xmllint is there) and reads
/// back.
fn write_and_check(batch: &PayoutBatch) -> String {
    let xml = pain001::write(batch).unwrap();
    check(batch, &xml);
    if let Some(xmllint) = xmllint() {
        validate(&xmllint, "pain.001.001.09.xsd", &xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    }
    xml
}

#[test]
fn iban_payees_in_euro() {
    let mut second = iban_line("PO2", 1);
    second.payee = "iban:DE89370400440532013000:Muster GmbH".parse().unwrap();
    second.remittance = String::new();
    let xml = write_and_check(&batch(vec![iban_line("PO1", 123_456), second]));
    assert!(xml.contains("<InstdAmt Ccy=\"EUR\">1234.56</InstdAmt>"), "{xml}");
    assert!(xml.contains("<CtrlSum>1234.57</CtrlSum>"), "{xml}");
    assert!(xml.contains("<Nm>Boulangerie d&apos;Ici</Nm>"), "{xml}");
}

#[test]
fn zengin_payees_in_yen() {
    let mut others = zengin_line("PO2", 9_999_999_999);
    others.payee = "zengin:9999-000-4-0000001:ｶ)ｹﾂｻｲ".parse().unwrap();
    let xml = write_and_check(&batch(vec![zengin_line("PO1", 12_000), others]));
    assert!(xml.contains("<InstdAmt Ccy=\"JPY\">12000</InstdAmt>"), "{xml}");
    assert!(xml.contains("<MmbId>0001101</MmbId>"), "{xml}");
    assert!(xml.contains("<MmbId>9999000</MmbId>"), "{xml}");
    assert!(xml.contains("<CtrlSum>10000011999</CtrlSum>"), "{xml}");
}

#[test]
fn one_line_and_many() {
    write_and_check(&batch(vec![zengin_line("ONE", 1)]));
    let many: Vec<PayoutLine> = (0..500).map(|n| zengin_line(&format!("P{n}"), 1 + n)).collect();
    write_and_check(&batch(many));
}

#[test]
fn names_and_texts_needing_escaping() {
    let mut line = zengin_line("PO1", 1);
    line.remittance = "Sales <May> & \"June\" 'ok' ]]> 売上".into();
    let debtor = Debtor { name: "Kessai <Center> & \"Co\" 'KK' 決済".into(), ..debtor() };
    let batch = PayoutBatch::new("B<&>\"'", PAYOUT_CREATED, date("2026-05-07"), debtor, vec![line]).unwrap();
    let xml = write_and_check(&batch);
    assert!(xml.contains("<MsgId>B&lt;&amp;&gt;&quot;&apos;</MsgId>"), "{xml}");
}

#[test]
fn debtors_named_only_one_way() {
    // Only a Zengin account: the account by number, the bank by its code.
    let zengin_only = Debtor { iban: None, bic: None, ..debtor() };
    let batch =
        PayoutBatch::new("B", PAYOUT_CREATED, date("2026-05-07"), zengin_only, vec![zengin_line("P", 5)]).unwrap();
    write_and_check(&batch);
    // Only an IBAN: the bank is not provided.
    let iban_only = Debtor { bic: None, zengin: None, ..debtor() };
    let batch = PayoutBatch::new("B", PAYOUT_CREATED, date("2026-05-07"), iban_only, vec![iban_line("P", 5)]).unwrap();
    let xml = write_and_check(&batch);
    assert!(xml.contains("<Id>NOTPROVIDED</Id>"), "{xml}");
    let with_bic = Debtor { zengin: Some(zengin_debtor()), ..debtor() };
    write_and_check(
        &PayoutBatch::new("B", PAYOUT_CREATED, date("2026-05-07"), with_bic, vec![iban_line("P", 5)]).unwrap(),
    );
}

#[test]
fn random_batches_stay_valid() {
    let mut rng = Rng::new(1_001);
    let latin = ['a', 'Z', '0', ' ', '/', '-', '?', ':', '(', ')', '.', ',', '\'', '+'];
    let free = ['a', 'Z', '0', ' ', '&', '<', '>', '"', '\'', ']', 'ü', '円', 'ｶ', '\u{10FFFD}'];
    // xmllint runs once per round: keep the rounds few.
    for round in 0..12 {
        let currency = *rng.pick(&[Currency::JPY, Currency::USD, Currency::parse("EUR").unwrap()]);
        let count = 1 + rng.index(20);
        let lines: Vec<PayoutLine> = (0..count)
            .map(|n| {
                let payee: PayeeAccount = if rng.chance(2) {
                    let len = rng.index(60);
                    let holder = format!("X{}", rng.text(&latin, len).trim_end());
                    let bic = if rng.chance(2) { ":DEUTDEFF500" } else { "" };
                    format!("iban:GB82WEST12345698765432{bic}:{holder}").parse().unwrap()
                } else {
                    format!(
                        "zengin:{:04}-{:03}-1-{:07}:ｱｲｳ",
                        rng.below(10_000),
                        rng.below(1_000),
                        rng.below(10_000_000)
                    )
                    .parse()
                    .unwrap()
                };
                let len = rng.index(100);
                let remittance = if rng.chance(3) { String::new() } else { format!("r{}", rng.text(&free, len)) };
                PayoutLine {
                    end_to_end_id: format!("R{round}L{n}"),
                    amount: money(1 + rng.below(1_000_000_000), currency),
                    payee,
                    remittance: remittance.trim().to_owned(),
                }
            })
            .collect();
        let batch = PayoutBatch::new(&format!("B-{round}"), PAYOUT_CREATED, rng.date(), debtor(), lines).unwrap();
        write_and_check(&batch);
    }
}

#[test]
fn the_writer_refuses_a_batch_its_checks_refuse() {
    let mut batch = batch(vec![zengin_line("PO1", 1)]);
    batch.lines[0].end_to_end_id = "po1".into();
    assert!(matches!(pain001::write(&batch), Err(kessai_bank::BankFileError::BadText { field: "end-to-end id", .. })));
    batch.lines.clear();
    assert_eq!(pain001::write(&batch), Err(kessai_bank::BankFileError::NoPayouts));
}

#[test]
fn the_schema_check_does_refuse_an_invalid_initiation() {
    // Without its debtor account a pain.001 is invalid: proves the check runs.
    let Some(xmllint) = xmllint() else { return };
    let xml = pain001::write(&batch(vec![zengin_line("PO1", 1)])).unwrap();
    let start = xml.find("<DbtrAcct>").unwrap();
    let end = xml.find("</DbtrAcct>").unwrap() + "</DbtrAcct>".len();
    assert!(validate(&xmllint, "pain.001.001.09.xsd", &format!("{}{}", &xml[..start], &xml[end..])).is_err());
}
