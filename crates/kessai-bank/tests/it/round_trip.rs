//! What the writers write, the reader reads back to the same credits: a
//! few drafts by hand, then hundreds drawn from a seeded generator.

use kessai_bank::camt::{DraftEntry, EntryKind};
use kessai_bank::zengin::{NoticeDraft, NoticeEntry, ZenginAccount, write_transfer_notice};
use kessai_bank::{Credit, Format, Statement, camt053, camt054, parse, rf};
use kessai_core::time::Timestamp;
use kessai_core::{Currency, Money};

use crate::common::{Rng, date, money};

const CREATED: Timestamp = Timestamp::from_unix_s(1_777_600_000);

/// The credit a reader must make of a camt draft entry, if any.
fn expected_camt(account: &str, e: &DraftEntry) -> Option<Credit> {
    let reversal = match e.kind() {
        EntryKind::Credit => false,
        EntryKind::CreditReversal => true,
        EntryKind::Debit => return None,
    };
    let suffix = if reversal { "/reversal" } else { "" };
    // A reference in the free text counts when the structured one is absent.
    let reference = e.reference().cloned().or_else(|| e.remittance().and_then(rf::find));
    Some(Credit {
        entry_key: format!("{account}/{}{suffix}", e.bank_reference()),
        booked_on: e.booked_on().to_string(),
        amount: e.amount(),
        reference,
        remitter: e.remitter().map(str::to_owned),
        remitter_code: None,
        remittance: e.remittance().map(str::to_owned),
        reversal,
    })
}

fn hand_made_entries(currency: Currency) -> Vec<DraftEntry> {
    let on = date("2026-05-01");
    vec![
        DraftEntry::new(EntryKind::Credit, money(120_000, currency), on, "B-0001")
            .unwrap()
            .with_reference(rf::make("KS000042").unwrap())
            .with_remitter("山田 太郎 & <Co> \"quoted\" 'single'")
            .unwrap()
            .with_remittance("Card top-up ]]> <![CDATA[ &amp;")
            .unwrap(),
        DraftEntry::new(EntryKind::Credit, money(1, currency), date("2026-05-02"), "B-0002").unwrap(),
        DraftEntry::new(EntryKind::Debit, money(300, currency), on, "B-0003").unwrap().with_remitter("Fee").unwrap(),
        DraftEntry::new(EntryKind::CreditReversal, money(120_000, currency), on, "B-0004")
            .unwrap()
            .with_reference(rf::make("KS000042").unwrap()),
        DraftEntry::new(EntryKind::Credit, money(0, currency), on, "B-0005")
            .unwrap()
            .with_remittance("paid for RF92 MEMBER7 thanks")
            .unwrap(),
    ]
}

#[test]
fn a_written_statement_reads_back_to_its_credits() {
    for (currency, account) in [(Currency::JPY, "JP-POOL-1"), (Currency::USD, "DE89370400440532013000")] {
        let mut draft = camt053::StatementDraft::new("STMT-1", account, CREATED, money(5_000, currency)).unwrap();
        for e in hand_made_entries(currency) {
            draft.push(e).unwrap();
        }
        let statement = parse(camt053::write(&draft).as_bytes()).unwrap();
        let want = Statement {
            format: Format::Camt053 { version: 8 },
            id: "STMT-1".into(),
            account: account.into(),
            credits: draft.entries().iter().filter_map(|e| expected_camt(account, e)).collect(),
            debits: 1,
        };
        assert_eq!(statement, want, "{currency}");
        assert_eq!(draft.closing_balance_minor(), 5_000 + 120_000 + 1 - 300 - 120_000);
    }
}

#[test]
fn a_written_notification_reads_back_to_its_credits() {
    let mut draft = camt054::NotificationDraft::new("NTF-1", "JP-POOL-1", CREATED).unwrap();
    for e in hand_made_entries(Currency::JPY) {
        draft.push(e).unwrap();
    }
    let statement = parse(camt054::write(&draft).as_bytes()).unwrap();
    assert_eq!(statement.format, Format::Camt054 { version: 8 });
    assert_eq!(
        statement.credits,
        draft.entries().iter().filter_map(|e| expected_camt("JP-POOL-1", e)).collect::<Vec<_>>()
    );
    assert_eq!(statement.credits.last().unwrap().reference, Some(rf::make("MEMBER7").unwrap()));
}

#[test]
fn drafts_refuse_what_a_reader_would_refuse() {
    let on = date("2026-05-01");
    let mut draft = camt053::StatementDraft::new("S", "JP-POOL-1", CREATED, money(0, Currency::JPY)).unwrap();
    let usd = DraftEntry::new(EntryKind::Credit, money(1, Currency::USD), on, "X").unwrap();
    assert!(matches!(draft.push(usd), Err(kessai_bank::BankFileError::WrongCurrency { .. })));
    draft.push(DraftEntry::new(EntryKind::Credit, money(1, Currency::JPY), on, "X").unwrap()).unwrap();
    let again = DraftEntry::new(EntryKind::Credit, money(2, Currency::JPY), on, "X").unwrap();
    assert!(matches!(draft.push(again), Err(kessai_bank::BankFileError::DuplicateEntry { .. })));
    // Its reversal has a key of its own.
    draft.push(DraftEntry::new(EntryKind::CreditReversal, money(1, Currency::JPY), on, "X").unwrap()).unwrap();
    let overdraw =
        DraftEntry::new(EntryKind::Debit, money(kessai_core::limits::MAX_AMOUNT_MINOR, Currency::JPY), on, "Y")
            .unwrap();
    draft.push(overdraw.clone()).unwrap();
    assert!(matches!(draft.push(overdraw), Err(kessai_bank::BankFileError::OutOfRange { .. })));
    for bad_id in ["", "   ", "x\u{7}", &"x".repeat(36)] {
        assert!(camt054::NotificationDraft::new(bad_id, "A", CREATED).is_err(), "{bad_id:?}");
    }
}

fn zengin_account() -> ZenginAccount {
    ZenginAccount {
        bank_code: 5,
        bank_name: "ｷｯｻｲｷﾞﾝｺｳ".into(),
        branch_code: 1,
        branch_name: "ﾎﾝﾃﾝ".into(),
        deposit_type: 2,
        number: 7_654_321,
        name: "ｹｯｻｲｾﾝﾀｰ".into(),
    }
}

/// The credit a reader must make of a Zengin draft entry, the record being
/// the `n`-th of the file (the header is record 1).
fn expected_zengin(account: &ZenginAccount, e: &NoticeEntry, record: usize) -> Credit {
    let name = match &e.reference {
        Some(r) => format!("{r} {}", e.remitter.trim()).trim_end().to_owned(),
        None => e.remitter.trim().to_owned(),
    };
    let local = if e.inquiry_number == 0 { format!("#{record}") } else { format!("{:06}", e.inquiry_number) };
    let suffix = if e.cancellation { "/reversal" } else { "" };
    Credit {
        entry_key: format!("{}/{}/{local}{suffix}", account.key(), e.booked_on),
        booked_on: e.booked_on.to_string(),
        amount: e.amount,
        reference: e.edi.as_deref().and_then(rf::find).or_else(|| rf::find(&name)),
        remitter: (!name.is_empty()).then_some(name),
        remitter_code: e.remitter_code.filter(|c| *c != 0).map(|c| format!("{c:010}")),
        remittance: e.edi.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned),
        reversal: e.cancellation,
    }
}

#[test]
fn a_written_zengin_notice_reads_back_to_its_credits() {
    let base = NoticeEntry {
        inquiry_number: 1,
        booked_on: date("2026-05-01"),
        amount: money(5_000, Currency::JPY),
        remitter_code: None,
        remitter: "ﾔﾏﾀﾞ ﾀﾛｳ".into(),
        reference: Some(rf::make("KS000042").unwrap()),
        edi: None,
        cancellation: false,
    };
    let entries = vec![
        base.clone(),
        NoticeEntry { inquiry_number: 2, remitter_code: Some(42), edi: Some("RF92MEMBER7".into()), ..base.clone() },
        NoticeEntry { inquiry_number: 0, reference: None, remitter: "ｽｽﾞｷ(ｶ".into(), ..base.clone() },
        NoticeEntry { cancellation: true, ..base.clone() },
        NoticeEntry {
            inquiry_number: 3,
            amount: money(9_999_999_999, Currency::JPY),
            booked_on: date("2026-05-03"),
            ..base
        },
    ];
    let account = zengin_account();
    let draft = NoticeDraft { account: account.clone(), created_on: date("2026-05-04"), entries };
    let statement = parse(&write_transfer_notice(&draft).unwrap()).unwrap();
    let want = Statement {
        format: Format::ZenginTransferNotice,
        id: "2026-05-04/2026-05-01/2026-05-03".into(),
        account: "0005-001-2-7654321".into(),
        credits: draft.entries.iter().enumerate().map(|(i, e)| expected_zengin(&account, e, i + 2)).collect(),
        debits: 0,
    };
    assert_eq!(statement, want);
    assert_eq!(statement.credits[1].reference, Some(rf::make("MEMBER7").unwrap()), "EDI first");
}

const LATIN: &[char] =
    &['A', 'b', 'Z', '0', '9', ' ', '&', '<', '>', '"', '\'', '-', '.', 'é', '山', '田', 'ﾔ', 'ﾞ', '😀'];
const KANA: &[char] = &['ｱ', 'ｲ', 'ｳ', 'ｶ', 'ﾞ', 'ﾟ', 'ﾝ', 'ｰ', ' ', '(', ')', '.', '-', 'A', 'Z', '0', '9'];
const BODY: &[char] = &['A', 'K', 'S', 'Z', '0', '1', '7', '9'];

fn random_reference(rng: &mut Rng) -> rf::Reference {
    let len = 1 + rng.index(21);
    rf::make(&rng.text(BODY, len)).unwrap()
}

fn random_camt_entry(rng: &mut Rng, currency: Currency, n: usize) -> DraftEntry {
    let kind = *rng.pick(&[EntryKind::Credit, EntryKind::Credit, EntryKind::Debit, EntryKind::CreditReversal]);
    let amount = money(rng.below(1_000_000_000), currency);
    let mut e = DraftEntry::new(kind, amount, rng.date(), &format!("REF-{n}-{}", rng.below(1000))).unwrap();
    if rng.chance(2) {
        e = e.with_reference(random_reference(rng));
    }
    if rng.chance(2) {
        let len = 1 + rng.index(140);
        let name = rng.text(LATIN, len);
        e = e.clone().with_remitter(&name).unwrap_or(e);
    }
    if rng.chance(2) {
        let len = 1 + rng.index(140);
        let text = rng.text(LATIN, len);
        e = e.clone().with_remittance(&text).unwrap_or(e);
    }
    e
}

#[test]
fn random_camt_drafts_read_back_to_their_credits() {
    let mut rng = Rng::new(20260501);
    for round in 0..300 {
        let currency = *rng.pick(&[Currency::JPY, Currency::USD, Currency::parse("EUR").unwrap()]);
        let account = if rng.chance(2) { "DE89370400440532013000" } else { "0001-101-1-1234567" };
        let count = rng.index(12);
        let mut statement =
            camt053::StatementDraft::new("S", account, CREATED, money(10_000_000_000, currency)).unwrap();
        let mut notification = camt054::NotificationDraft::new("N", account, CREATED).unwrap();
        for n in 0..count {
            let e = random_camt_entry(&mut rng, currency, n);
            statement.push(e.clone()).unwrap();
            notification.push(e).unwrap();
        }
        let want: Vec<Credit> = statement.entries().iter().filter_map(|e| expected_camt(account, e)).collect();
        let debits = statement.entries().iter().filter(|e| e.kind() == EntryKind::Debit).count();
        for xml in [camt053::write(&statement), camt054::write(&notification)] {
            let read = parse(xml.as_bytes()).unwrap_or_else(|e| panic!("round {round}: {e}\n{xml}"));
            assert_eq!(read.credits, want, "round {round}\n{xml}");
            assert_eq!(read.debits, debits, "round {round}");
        }
    }
}

#[test]
fn random_zengin_drafts_read_back_to_their_credits() {
    let mut rng = Rng::new(880501);
    let account = zengin_account();
    for round in 0..300 {
        let count = rng.index(10);
        let entries: Vec<NoticeEntry> = (0..count)
            .map(|n| NoticeEntry {
                // Unique, or 0 (none) now and then.
                inquiry_number: if rng.chance(5) { 0 } else { u32::try_from(n).unwrap() * 1000 + 1 },
                booked_on: rng.date(),
                amount: Money::new(rng.below(10_000_000_000), Currency::JPY).unwrap(),
                remitter_code: rng.chance(2).then(|| rng.below(10_000_000_000)),
                remitter: {
                    let len = rng.index(20);
                    rng.text(KANA, len)
                },
                reference: rng.chance(2).then(|| {
                    let len = 1 + rng.index(12);
                    rf::make(&rng.text(BODY, len)).unwrap()
                }),
                edi: rng.chance(3).then(|| {
                    let len = rng.index(21);
                    rng.text(KANA, len)
                }),
                cancellation: rng.chance(4),
            })
            .collect();
        let draft = NoticeDraft { account: account.clone(), created_on: rng.date(), entries };
        let bytes = write_transfer_notice(&draft).unwrap();
        let read = parse(&bytes).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let want: Vec<Credit> =
            draft.entries.iter().enumerate().map(|(i, e)| expected_zengin(&account, e, i + 2)).collect();
        assert_eq!(read.credits, want, "round {round}");
    }
}
