//! What the writers produce is valid against the official ISO 20022
//! schemas (tests/vectors/README.md says where they come from), checked by
//! an implementation that is not ours: libxml2's xmllint.

use std::path::{Path, PathBuf};
use std::process::Command;

use kessai_bank::camt::{DraftEntry, EntryKind};
use kessai_bank::{camt053, camt054, rf};
use kessai_core::Currency;
use kessai_core::time::Timestamp;

use crate::common::{Rng, date, money, vector_path};

pub fn xmllint() -> Option<PathBuf> {
    kessai_testkit::tool_on_path("xmllint", "KESSAI_XMLLINT")
}

/// xmllint's verdict on `xml` against `schema`: `Ok` or its messages.
pub fn validate(xmllint: &Path, schema: &str, xml: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("document.xml");
    std::fs::write(&file, xml).unwrap();
    let out = Command::new(xmllint)
        .args(["--noout", "--nonet", "--schema"])
        .arg(vector_path(schema))
        .arg(&file)
        .output()
        .unwrap();
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

fn entries(currency: Currency) -> Vec<DraftEntry> {
    let on = date("2026-05-01");
    vec![
        DraftEntry::new(EntryKind::Credit, money(123_456, currency), on, "B-1")
            .unwrap()
            .with_reference(rf::make("KS000042").unwrap())
            .with_remitter("山田 太郎 & <Co> \"x\" 'y' ﾔﾏﾀﾞ")
            .unwrap()
            .with_remittance(&"Top-up ]]> & more ".repeat(7))
            .unwrap(),
        DraftEntry::new(EntryKind::Credit, money(0, currency), on, "B-2").unwrap(),
        DraftEntry::new(EntryKind::Debit, money(99, currency), on, "B-3").unwrap().with_remitter("Payee").unwrap(),
        DraftEntry::new(EntryKind::CreditReversal, money(5, currency), on, "B-4")
            .unwrap()
            .with_reference(rf::make("1").unwrap())
            .with_remitter("Original payer")
            .unwrap(),
    ]
}

#[test]
fn written_statements_are_valid_camt_053_001_08() {
    let Some(xmllint) = xmllint() else { return };
    let created = Timestamp::from_unix_s(1_777_600_000);
    // An IBAN and another identifier, decimals and none, a balance that
    // ends below zero.
    for (account, currency, opening) in
        [("DE89370400440532013000", Currency::USD, 1_000_000), ("0001-101-1-1234567", Currency::JPY, 0)]
    {
        let mut draft =
            camt053::StatementDraft::new("STMT-2026-05-01", account, created, money(opening, currency)).unwrap();
        for e in entries(currency) {
            draft.push(e).unwrap();
        }
        let xml = camt053::write(&draft);
        validate(&xmllint, "camt.053.001.08.xsd", &xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    }
}

#[test]
fn written_notifications_are_valid_camt_054_001_08() {
    let Some(xmllint) = xmllint() else { return };
    let created = Timestamp::from_unix_s(1_777_600_000);
    let mut draft = camt054::NotificationDraft::new("NTF-1", "JP-POOL-1", created).unwrap();
    for e in entries(Currency::JPY) {
        draft.push(e).unwrap();
    }
    let xml = camt054::write(&draft);
    validate(&xmllint, "camt.054.001.08.xsd", &xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let empty = camt054::write(&camt054::NotificationDraft::new("NTF-2", "JP-POOL-1", created).unwrap());
    validate(&xmllint, "camt.054.001.08.xsd", &empty).unwrap_or_else(|e| panic!("{e}\n{empty}"));
}

#[test]
fn random_drafts_stay_valid() {
    let Some(xmllint) = xmllint() else { return };
    let mut rng = Rng::new(54);
    let alphabet = ['a', 'Z', '0', ' ', '&', '<', '>', '"', '\'', ']', 'ü', '円', 'ｶ', '\u{10FFFD}'];
    for _ in 0..10 {
        let mut draft = camt053::StatementDraft::new(
            "S",
            "DE89370400440532013000",
            Timestamp::from_unix_s(rng.below(4_000_000_000)),
            money(0, Currency::USD),
        )
        .unwrap();
        for n in 0..5 {
            let kind = *rng.pick(&[EntryKind::Credit, EntryKind::Debit, EntryKind::CreditReversal]);
            let len = 1 + rng.index(140);
            let text = rng.text(&alphabet, len);
            let e = DraftEntry::new(kind, money(rng.below(1_000_000), Currency::USD), rng.date(), &format!("R{n}"))
                .unwrap();
            let e = e.clone().with_remittance(&text).unwrap_or(e);
            let e = e.clone().with_remitter(&text).unwrap_or(e);
            draft.push(e).unwrap();
        }
        let xml = camt053::write(&draft);
        validate(&xmllint, "camt.053.001.08.xsd", &xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    }
}

#[test]
fn the_hand_made_bank_statement_is_valid_too() {
    let Some(xmllint) = xmllint() else { return };
    let xml = std::fs::read_to_string(vector_path("camt053-bank.xml")).unwrap();
    validate(&xmllint, "camt.053.001.08.xsd", &xml).unwrap();
}

#[test]
fn the_schema_check_does_refuse_an_invalid_statement() {
    // Without balances a camt.053 is invalid: proves the check runs.
    let Some(xmllint) = xmllint() else { return };
    let mut draft =
        camt053::StatementDraft::new("S", "JP-POOL-1", Timestamp::from_unix_s(0), money(0, Currency::JPY)).unwrap();
    draft.push(entries(Currency::JPY).remove(1)).unwrap();
    let xml = camt053::write(&draft);
    let start = xml.find("<Bal>").unwrap();
    let end = xml.rfind("</Bal>").unwrap() + "</Bal>".len();
    let without_balances = format!("{}{}", &xml[..start], &xml[end..]);
    assert!(validate(&xmllint, "camt.053.001.08.xsd", &without_balances).is_err());
}

#[test]
fn written_status_reports_are_valid_pain_002_001_10() {
    let Some(xmllint) = xmllint() else { return };
    let full = crate::outcomes::status_report();
    let rejected = kessai_bank::pain002::StatusReport {
        group_status: Some("RJCT".into()),
        group_reason: Some("AM04".into()),
        transactions: vec![],
        ..full.clone()
    };
    let escaped = kessai_bank::pain002::StatusReport {
        message_id: "STS <&> \"'".into(),
        original_message_id: "B&<1>".into(),
        ..full.clone()
    };
    for report in [full, rejected, escaped] {
        let xml = kessai_bank::pain002::write(&report).unwrap();
        validate(&xmllint, "pain.002.001.10.xsd", &xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    }
}

#[test]
fn notifications_of_payouts_are_valid_camt_054_001_08() {
    let Some(xmllint) = xmllint() else { return };
    let xml = camt054::write(&crate::outcomes::payout_notification());
    validate(&xmllint, "camt.054.001.08.xsd", &xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    validate(&xmllint, "camt.054.001.08.xsd", crate::outcomes::BATCH_BOOKED).unwrap();
}
