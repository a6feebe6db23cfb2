//! Store accounts as an operator types them, and payout batches: what is
//! accepted prints back the same, what is refused says why.

use kessai_bank::limits::MAX_PAYOUT_LINES;
use kessai_bank::payout::{AccountError as A, Debtor, IbanPayee, PayeeAccount, PayoutLine, ZenginPayee};
use kessai_bank::{BankFileError as E, PayoutBatch};
use kessai_core::Currency;

use crate::common::{PAYOUT_CREATED, Rng, date, debtor, iban_line, money, zengin_debtor, zengin_line};

#[test]
fn accounts_print_back_as_typed_once_normalized() {
    let cases = [
        ("zengin:0001-101-1-1234567:ﾔﾏﾀﾞ ｼﾖｳﾃﾝ", "zengin:0001-101-1-1234567:ﾔﾏﾀﾞ ｼﾖｳﾃﾝ"),
        ("zengin:9999-999-9-9999999:ｶ)ｹｯｻｲ", "zengin:9999-999-9-9999999:ｶ)ｹﾂｻｲ"),
        ("  ZENGIN:0000-000-2-0000000: カ）ヤマダショウテン ", "zengin:0000-000-2-0000000:ｶ)ﾔﾏﾀﾞｼﾖｳﾃﾝ"),
        ("zengin:0005-001-4-0000001:ABC ｼﾖｳｶｲ", "zengin:0005-001-4-0000001:ABC ｼﾖｳｶｲ"),
        ("iban:DE89370400440532013000:Muster GmbH", "iban:DE89370400440532013000:Muster GmbH"),
        ("iban:de89 3704 0044 0532 0130 00:cobadeff:Muster", "iban:DE89370400440532013000:COBADEFF:Muster"),
        (
            "iban:GB82WEST12345698765432:NWBKGB2L:O'Neil + Sons, Ltd.",
            "iban:GB82WEST12345698765432:NWBKGB2L:O'Neil + Sons, Ltd.",
        ),
        // A holder whose name starts like a BIC and a colon: an empty BIC
        // field keeps it the holder's.
        ("iban:NL91ABNA0417164300::ABCDEFGH: shop", "iban:NL91ABNA0417164300::ABCDEFGH: shop"),
        ("iban:NL91ABNA0417164300:Shop: Amsterdam", "iban:NL91ABNA0417164300:Shop: Amsterdam"),
        // Not a BIC's shape: the start of the name.
        ("iban:DE89370400440532013000:DEUTDE:X", "iban:DE89370400440532013000:DEUTDE:X"),
        ("iban:BR1800360305000010009795493C1:Loja", "iban:BR1800360305000010009795493C1:Loja"),
    ];
    for (typed, printed) in cases {
        let account: PayeeAccount = typed.parse().unwrap_or_else(|e| panic!("{typed}: {e}"));
        assert_eq!(account.to_string(), printed, "{typed}");
        assert_eq!(printed.parse::<PayeeAccount>().unwrap(), account, "{printed}");
        account.check().unwrap();
    }
    let z: PayeeAccount = "zengin:0001-101-1-1234567:ﾔﾏﾀﾞ".parse().unwrap();
    assert_eq!(
        z,
        PayeeAccount::Zengin(ZenginPayee {
            bank_code: 1,
            branch_code: 101,
            deposit_type: 1,
            number: 1_234_567,
            holder: "ﾔﾏﾀﾞ".into()
        })
    );
    let i: PayeeAccount = "iban:DE89370400440532013000:COBADEFFXXX:A".parse().unwrap();
    assert_eq!(
        i,
        PayeeAccount::Iban(IbanPayee {
            iban: "DE89370400440532013000".into(),
            bic: Some("COBADEFFXXX".into()),
            holder: "A".into()
        })
    );
}

#[test]
fn accounts_are_refused_for_what_is_wrong_with_them() {
    let numbers = |found: &str| A::ZenginNumbers { found: found.into() };
    let long = format!("zengin:0001-101-1-1234567:{}", "ｱ".repeat(31));
    let cases: Vec<(&str, A)> = vec![
        ("", A::UnknownScheme),
        ("bank:0001", A::UnknownScheme),
        ("0001-101-1-1234567:ﾔﾏﾀﾞ", A::UnknownScheme),
        ("zengin:0001-101-1-123456:ﾔﾏﾀﾞ", numbers("0001-101-1-123456")),
        ("zengin:001-101-1-1234567:ﾔﾏﾀﾞ", numbers("001-101-1-1234567")),
        ("zengin:0001-101-1-12345678:ﾔﾏﾀﾞ", numbers("0001-101-1-12345678")),
        ("zengin:0001/101/1/1234567:ﾔﾏﾀﾞ", numbers("0001/101/1/1234567")),
        ("zengin:０００１-101-1-1234567:ﾔﾏﾀﾞ", numbers("０００１-101-1-1234567")),
        ("zengin:0001-101-3-1234567:ﾔﾏﾀﾞ", A::DepositType(3)),
        ("zengin:0001-101-1-1234567", A::NoName),
        ("zengin:0001-101-1-1234567:  ", A::NoName),
        ("zengin:0001-101-1-1234567:山田商店", A::NotZengin { character: '山' }),
        ("zengin:0001-101-1-1234567:A&B", A::NotZengin { character: '&' }),
        (&long, A::NameTooLong { len: 31, max: 30 }),
        ("iban:DE89370400440532013001:X", A::IbanCheckDigits { iban: "DE89370400440532013001".into() }),
        (
            "iban:DE8937040044053201300:X",
            A::IbanLength { iban: "DE8937040044053201300".into(), country: "DE".into(), len: 21, expected: 22 },
        ),
        ("iban:DE00370400440532013000:X", A::IbanReservedCheckDigits { iban: "DE00370400440532013000".into() }),
        // Japan has no IBAN: the general rules apply, and fail.
        ("iban:JP12345:X", A::IbanCheckDigits { iban: "JP12345".into() }),
        ("iban:1234:X", A::IbanShape { iban: "1234".into() }),
        ("iban:DE89370400440532013000:Müller", A::NotLatin { character: 'ü' }),
        ("iban:DE89370400440532013000:A & B", A::NotLatin { character: '&' }),
        ("iban:DE89370400440532013000", A::NoName),
        ("iban:DE89370400440532013000:COBADEFF:", A::NoName),
    ];
    for (typed, want) in cases {
        assert_eq!(typed.parse::<PayeeAccount>(), Err(want.clone()), "{typed:?}");
        assert!(!want.to_string().is_empty());
    }
    let huge = format!("iban:DE89370400440532013000:{}", "A".repeat(300));
    assert!(matches!(huge.parse::<PayeeAccount>(), Err(A::TooLong { .. })));
    let holder = "A".repeat(71);
    assert_eq!(
        format!("iban:DE89370400440532013000:{holder}").parse::<PayeeAccount>(),
        Err(A::NameTooLong { len: 71, max: 70 })
    );
}

#[test]
fn hand_built_accounts_are_checked_too() {
    let z = ZenginPayee { bank_code: 10_000, branch_code: 1, deposit_type: 1, number: 1, holder: "ｱ".into() };
    assert_eq!(z.check(), Err(A::TooManyDigits { field: "bank code", value: 10_000, digits: 4 }));
    let z = ZenginPayee { bank_code: 1, branch_code: 1_000, deposit_type: 1, number: 1, holder: "ｱ".into() };
    assert_eq!(z.check(), Err(A::TooManyDigits { field: "branch code", value: 1_000, digits: 3 }));
    let z = ZenginPayee { bank_code: 1, branch_code: 1, deposit_type: 1, number: 10_000_000, holder: "ｱ".into() };
    assert_eq!(z.check(), Err(A::TooManyDigits { field: "account number", value: 10_000_000, digits: 7 }));
    let z = ZenginPayee { bank_code: 1, branch_code: 1, deposit_type: 1, number: 1, holder: "ア".into() };
    assert_eq!(z.check(), Err(A::NotZengin { character: 'ア' }));
    let z = ZenginPayee { bank_code: 1, branch_code: 1, deposit_type: 1, number: 1, holder: " ｱ".into() };
    assert_eq!(z.check(), Err(A::Blanks));
    let i = IbanPayee { iban: "DE89 3704 0044 0532 0130 00".into(), bic: None, holder: "A".into() };
    assert!(matches!(i.check(), Err(A::IbanShape { .. })));
    let i = IbanPayee { iban: "DE89370400440532013000".into(), bic: Some("cobadeff".into()), holder: "A".into() };
    assert!(matches!(i.check(), Err(A::BadBic(_))));
}

#[test]
fn random_accounts_round_trip_through_their_text() {
    let mut rng = Rng::new(193);
    let kana = ['ｱ', 'ｶ', 'ﾞ', 'ﾟ', 'ﾝ', 'ｦ', ' ', '(', ')', '.', '-', '/', ',', 'A', 'Z', '0', '9', '｢', '｣', '¥'];
    let latin = ['a', 'Z', '0', ' ', '/', '-', '?', ':', '(', ')', '.', ',', '\'', '+'];
    let ibans = ["DE89370400440532013000", "GB82WEST12345698765432", "FR1420041010050500013M02606", "NO9386011117947"];
    for round in 0..500 {
        let account = if rng.chance(2) {
            let len = 1 + rng.index(30);
            let holder = rng.text(&kana, len);
            let deposit_type = *rng.pick(&[1u8, 2, 4, 9]);
            let bank = u16::try_from(rng.below(10_000)).unwrap();
            let branch = u16::try_from(rng.below(1_000)).unwrap();
            let number = u32::try_from(rng.below(10_000_000)).unwrap();
            match ZenginPayee::new(bank, branch, deposit_type, number, &holder) {
                Ok(z) => PayeeAccount::Zengin(z),
                // Blank names are refused; trimmed ones are other names.
                Err(_) => continue,
            }
        } else {
            let len = 1 + rng.index(70);
            let holder = rng.text(&latin, len);
            let bic = rng.chance(2).then_some("COBADEFF");
            let iban = *rng.pick(&ibans);
            match IbanPayee::new(iban, bic, &holder) {
                Ok(i) => PayeeAccount::Iban(i),
                Err(_) => continue,
            }
        };
        let text = account.to_string();
        assert_eq!(text.parse::<PayeeAccount>().as_ref(), Ok(&account), "round {round}: {text:?}");
    }
}

#[test]
fn batches_are_normalized_and_checked_once_built() {
    let mut typed = debtor();
    typed.iban = Some("de89 3704 0044 0532 0130 00".into());
    typed.bic = Some("cobadeffxxx".into());
    let mut zengin = zengin_debtor();
    zengin.requester_name = "ケッサイセンター".into();
    typed.zengin = Some(zengin);
    let mut line = zengin_line("PO1", 1_000);
    line.payee = PayeeAccount::Zengin(ZenginPayee {
        bank_code: 1,
        branch_code: 101,
        deposit_type: 1,
        number: 1_234_567,
        holder: "ヤマダ　ショウテン".into(),
    });
    let batch = PayoutBatch::new(" B-1 ", PAYOUT_CREATED, date("2026-05-07"), typed, vec![line]).unwrap();
    assert_eq!(batch.id, "B-1");
    assert_eq!(batch.debtor.iban.as_deref(), Some("DE89370400440532013000"));
    assert_eq!(batch.debtor.bic.as_deref(), Some("COBADEFFXXX"));
    assert_eq!(batch.debtor.zengin.as_ref().unwrap().requester_name, "ｹﾂｻｲｾﾝﾀ-");
    assert_eq!(batch.lines[0].payee.holder(), "ﾔﾏﾀﾞ ｼﾖｳﾃﾝ");
    assert_eq!(batch.total_minor(), 1_000);
    assert_eq!(batch.currency(), Currency::JPY);
    batch.check().unwrap();
}

#[test]
fn batches_refuse_what_no_file_can_carry() {
    let new = |id: &str, debtor: Debtor, lines: Vec<PayoutLine>| {
        PayoutBatch::new(id, PAYOUT_CREATED, date("2026-05-07"), debtor, lines).err()
    };
    let ok = || vec![zengin_line("PO1", 1)];
    let bad_id = |text: &str| E::BadText {
        field: "batch id",
        text: text.into(),
        expected: "1-35 printable ASCII characters without spaces",
    };
    let bad_e2e = |text: &str| E::BadText {
        field: "end-to-end id",
        text: text.into(),
        expected: "1-20 upper-case ASCII letters and digits",
    };
    let no_account = Debtor { iban: None, zengin: None, ..debtor() };
    let cases: Vec<(&str, Option<E>)> = vec![
        ("empty id", new("", debtor(), ok())),
        ("id with a space", new("B 1", debtor(), ok())),
        ("id too long", new(&"B".repeat(36), debtor(), ok())),
        ("id not ASCII", new("支払1", debtor(), ok())),
        ("no lines", new("B", debtor(), vec![])),
        ("e2e lower case", new("B", debtor(), vec![zengin_line("po1", 1)])),
        ("e2e too long", new("B", debtor(), vec![zengin_line(&"P".repeat(21), 1)])),
        ("e2e with a dash", new("B", debtor(), vec![zengin_line("PO-1", 1)])),
        ("e2e twice", new("B", debtor(), vec![zengin_line("PO1", 1), zengin_line("PO1", 2)])),
        ("two currencies", new("B", debtor(), vec![zengin_line("PO1", 1), iban_line("PO2", 1)])),
        ("zero", new("B", debtor(), vec![zengin_line("PO1", 0)])),
        (
            "remittance too long",
            new("B", debtor(), vec![PayoutLine { remittance: "r".repeat(141), ..zengin_line("PO1", 1) }]),
        ),
        (
            "remittance with a control",
            new("B", debtor(), vec![PayoutLine { remittance: "a\u{7}b".into(), ..zengin_line("PO1", 1) }]),
        ),
        ("debtor without account", new("B", no_account, ok())),
        ("debtor without name", new("B", Debtor { name: " ".into(), ..debtor() }, ok())),
        ("debtor IBAN wrong", new("B", Debtor { iban: Some("DE89370400440532013001".into()), ..debtor() }, ok())),
        (
            "total too large",
            new(
                "B",
                debtor(),
                vec![
                    zengin_line("PO1", kessai_core::limits::MAX_AMOUNT_MINOR),
                    zengin_line("PO2", kessai_core::limits::MAX_AMOUNT_MINOR),
                ],
            ),
        ),
    ];
    let want: Vec<(&str, E)> = vec![
        ("empty id", bad_id("")),
        ("id with a space", bad_id("B 1")),
        ("id too long", bad_id(&"B".repeat(36))),
        ("id not ASCII", bad_id("支払1")),
        ("no lines", E::NoPayouts),
        ("e2e lower case", bad_e2e("po1")),
        ("e2e too long", bad_e2e(&"P".repeat(21))),
        ("e2e with a dash", bad_e2e("PO-1")),
        ("e2e twice", E::DuplicateEntry { key: "PO1".into() }),
        (
            "two currencies",
            E::WrongCurrency {
                field: "payout amount",
                found: Currency::parse("EUR").unwrap(),
                expected: Currency::JPY,
            },
        ),
        ("zero", E::ZeroPayout { end_to_end_id: "PO1".into() }),
        ("remittance too long", E::DoesNotFit { field: "remittance", len: 141, width: 140 }),
        (
            "remittance with a control",
            E::BadText { field: "remittance", text: "a\u{7}b".into(), expected: "no control characters" },
        ),
        ("debtor without account", E::Missing { at: "debtor account (an IBAN or a Zengin account)".into() }),
        ("debtor without name", E::BadText { field: "debtor name", text: String::new(), expected: "some text" }),
        (
            "debtor IBAN wrong",
            E::BadAccount {
                at: "debtor IBAN".into(),
                problem: A::IbanCheckDigits { iban: "DE89370400440532013001".into() },
            },
        ),
        (
            "total too large",
            E::OutOfRange {
                field: "batch total",
                value: 2 * kessai_core::limits::MAX_AMOUNT_MINOR,
                max: kessai_core::limits::MAX_AMOUNT_MINOR,
            },
        ),
    ];
    for ((label, got), (_, want)) in cases.into_iter().zip(want) {
        assert_eq!(got, Some(want), "{label}");
    }
    // Too many lines, built or hand-made.
    let many: Vec<PayoutLine> = (0..=MAX_PAYOUT_LINES).map(|n| zengin_line(&format!("P{n}"), 1)).collect();
    assert_eq!(new("B", debtor(), many.clone()), Some(E::TooManyPayouts { max: MAX_PAYOUT_LINES }));
    let hand_made = PayoutBatch {
        id: "B".into(),
        created_at: PAYOUT_CREATED,
        execution_date: date("2026-05-07"),
        debtor: debtor(),
        lines: many,
    };
    assert_eq!(hand_made.check(), Err(E::TooManyPayouts { max: MAX_PAYOUT_LINES }));
    // A payee refused says which payout.
    let mut line = zengin_line("PO7", 1);
    line.payee = PayeeAccount::Zengin(ZenginPayee { deposit_type: 3, ..zengin_payee() });
    assert_eq!(
        new("B", debtor(), vec![line]),
        Some(E::BadAccount { at: "payout PO7 payee".into(), problem: A::DepositType(3) })
    );
    assert_eq!(money(1, Currency::JPY).amount_minor(), 1);
}

fn zengin_payee() -> ZenginPayee {
    ZenginPayee { bank_code: 1, branch_code: 101, deposit_type: 1, number: 1, holder: "ｱ".into() }
}
