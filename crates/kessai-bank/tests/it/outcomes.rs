//! What banks answer about payouts, read to exact outcomes: pain.002
//! status reports (written and hand-made, several versions), the debtor
//! account's camt.054 (settled debits, batch bookings, returns), and how
//! those files meet the credit reader.

use kessai_bank::camt::{DraftEntry, EntryKind};
use kessai_bank::pain002::{self, StatusReport, TransactionStatus};
use kessai_bank::{
    BankFileError as E, GroupRejected, PayoutFormat, PayoutOutcome, PayoutReport, PayoutStatus, camt054, parse,
    read_outcomes,
};
use kessai_core::time::Timestamp;
use kessai_core::{Currency, Money};

use crate::common::{date, money};

const CREATED: Timestamp = Timestamp::from_unix_s(1_777_700_000);

fn yen(n: u64) -> Money {
    money(n, Currency::JPY)
}

fn outcome(key: &str, id: &str, status: PayoutStatus) -> PayoutOutcome {
    PayoutOutcome {
        end_to_end_id: id.into(),
        status,
        amount: None,
        reason: None,
        booked_on: None,
        entry_key: key.into(),
    }
}

fn tx(id: &str, status: &str, reason: Option<&str>, amount: Option<Money>) -> TransactionStatus {
    TransactionStatus { end_to_end_id: id.into(), status: status.into(), reason: reason.map(Into::into), amount }
}

pub fn status_report() -> StatusReport {
    StatusReport {
        message_id: "STS-1".into(),
        created_at: CREATED,
        original_message_id: "PAYOUT-2026-05-07".into(),
        group_status: Some("PART".into()),
        group_reason: None,
        transactions: vec![
            tx("PO1", "ACSC", None, Some(yen(12_000))),
            tx("PO2", "RJCT", Some("AC04"), Some(yen(500))),
            tx("PO3", "ACSP", None, None),
            tx("PO4", "ACCC", None, None),
            tx("PO5", "PDNG", Some("NARR"), None),
        ],
    }
}

#[test]
fn a_written_status_report_reads_back_to_its_outcomes() {
    let xml = pain002::write(&status_report()).unwrap();
    let report = read_outcomes(xml.as_bytes()).unwrap();
    let want = PayoutReport {
        format: PayoutFormat::Pain002 { version: 10 },
        id: "STS-1".into(),
        outcomes: vec![
            PayoutOutcome { amount: Some(yen(12_000)), ..outcome("STS-1/PO1", "PO1", PayoutStatus::Settled) },
            PayoutOutcome {
                amount: Some(yen(500)),
                reason: Some("AC04".into()),
                ..outcome("STS-1/PO2", "PO2", PayoutStatus::Rejected)
            },
            outcome("STS-1/PO3", "PO3", PayoutStatus::Pending),
            outcome("STS-1/PO4", "PO4", PayoutStatus::Settled),
            PayoutOutcome { reason: Some("NARR".into()), ..outcome("STS-1/PO5", "PO5", PayoutStatus::Pending) },
        ],
        group_rejected: None,
    };
    assert_eq!(report, want);
}

#[test]
fn a_rejected_group_rejects_the_whole_batch() {
    let whole = StatusReport {
        group_status: Some("RJCT".into()),
        group_reason: Some("AM04".into()),
        transactions: vec![],
        ..status_report()
    };
    let report = read_outcomes(pain002::write(&whole).unwrap().as_bytes()).unwrap();
    assert_eq!(
        report.group_rejected,
        Some(GroupRejected { original_message_id: "PAYOUT-2026-05-07".into(), reason: Some("AM04".into()) })
    );
    assert!(report.outcomes.is_empty());
    // A batch rejected as a whole may list its transactions too.
    let listed = StatusReport { transactions: vec![tx("PO1", "RJCT", None, None)], ..whole };
    let report = read_outcomes(pain002::write(&listed).unwrap().as_bytes()).unwrap();
    assert_eq!(report.outcomes[0].status, PayoutStatus::Rejected);
    assert!(report.group_rejected.is_some());
}

/// A hand-made pain.002: `version`, a payment information status, a
/// transaction without a status of its own.
fn hand_made(version: &str, block_id: &str, block_status: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.002.001.{version}">
  <CstmrPmtStsRpt>
    <GrpHdr><MsgId>BANK-STS-9</MsgId><CreDtTm>2026-05-07T09:00:00</CreDtTm></GrpHdr>
    <OrgnlGrpInfAndSts>
      <OrgnlMsgId>PAYOUT-2026-05-07</OrgnlMsgId><OrgnlMsgNmId>pain.001.001.09</OrgnlMsgNmId>
    </OrgnlGrpInfAndSts>
    <OrgnlPmtInfAndSts>
      <OrgnlPmtInfId>{block_id}</OrgnlPmtInfId>
      <PmtInfSts>{block_status}</PmtInfSts>
      <StsRsnInf><Rsn><Cd>DT01</Cd></Rsn></StsRsnInf>
      <TxInfAndSts>
        <OrgnlEndToEndId>PO1</OrgnlEndToEndId>
      </TxInfAndSts>
      <TxInfAndSts>
        <OrgnlEndToEndId>PO2</OrgnlEndToEndId>
        <TxSts>ACSC</TxSts>
        <OrgnlTxRef><Amt><InstdAmt Ccy="EUR">10.50</InstdAmt></Amt></OrgnlTxRef>
      </TxInfAndSts>
    </OrgnlPmtInfAndSts>
  </CstmrPmtStsRpt>
</Document>"#
    )
}

#[test]
fn older_versions_and_block_statuses_read_alike() {
    for version in ["03", "05", "09", "10"] {
        let report = read_outcomes(hand_made(version, "PAYOUT-2026-05-07", "ACCP").as_bytes()).unwrap();
        assert_eq!(report.format, PayoutFormat::Pain002 { version: version.parse().unwrap() });
        assert_eq!(report.id, "BANK-STS-9");
        assert_eq!(report.group_rejected, None);
        assert_eq!(
            report.outcomes,
            vec![
                // No status of its own: the block's (accepted, pending).
                PayoutOutcome {
                    reason: Some("DT01".into()),
                    ..outcome("BANK-STS-9/PO1", "PO1", PayoutStatus::Pending)
                },
                PayoutOutcome {
                    amount: Some(money(1_050, Currency::parse("EUR").unwrap())),
                    ..outcome("BANK-STS-9/PO2", "PO2", PayoutStatus::Settled)
                },
            ],
            "pain.002.001.{version}"
        );
    }
    // The block (whose id is the batch's) rejected: the whole batch is.
    let report = read_outcomes(hand_made("10", "PAYOUT-2026-05-07", "RJCT").as_bytes()).unwrap();
    assert_eq!(
        report.group_rejected,
        Some(GroupRejected { original_message_id: "PAYOUT-2026-05-07".into(), reason: Some("DT01".into()) })
    );
    assert_eq!(report.outcomes[0].status, PayoutStatus::Rejected);
    assert_eq!(report.outcomes[1].status, PayoutStatus::Settled);
    // Another block rejected: not one kessai wrote.
    assert_eq!(
        read_outcomes(hand_made("10", "OTHER-BLOCK", "RJCT").as_bytes()),
        Err(E::BadValue {
            at: "CstmrPmtStsRpt/OrgnlPmtInfAndSts[1]/OrgnlPmtInfId".into(),
            found: "OTHER-BLOCK".into(),
            expected: "the id of the message (kessai writes one payment information block per message)",
        })
    );
}

/// The center's account notification: payouts settled one by one, and
/// returned.
pub fn payout_notification() -> camt054::NotificationDraft {
    let on = date("2026-05-08");
    let mut draft = camt054::NotificationDraft::new("NTF-PAY-1", "DE89370400440532013000", CREATED).unwrap();
    let entries = [
        DraftEntry::new(EntryKind::Debit, yen(12_000), on, "D-1").unwrap().with_end_to_end_id("PO1").unwrap(),
        DraftEntry::new(EntryKind::Debit, yen(800), on, "D-2")
            .unwrap()
            .with_end_to_end_id("PO2")
            .unwrap()
            .with_remitter("ﾔﾏﾀﾞ ｼﾖｳﾃﾝ")
            .unwrap(),
        DraftEntry::new(EntryKind::Credit, yen(800), date("2026-05-09"), "R-1")
            .unwrap()
            .with_end_to_end_id("PO2")
            .unwrap()
            .with_return_reason("AC04")
            .unwrap(),
        // A member's top-up: not a payout, and still a credit.
        DraftEntry::new(EntryKind::Credit, yen(5_000), on, "C-1")
            .unwrap()
            .with_reference(kessai_bank::rf::make("KS000042").unwrap()),
        // A debit without an end-to-end id says nothing about payouts.
        DraftEntry::new(EntryKind::Debit, yen(300), on, "FEE-1").unwrap(),
    ];
    for e in entries {
        draft.push(e).unwrap();
    }
    draft
}

#[test]
fn a_notification_reports_settled_and_returned_payouts() {
    let xml = camt054::write(&payout_notification());
    let report = read_outcomes(xml.as_bytes()).unwrap();
    let account = "DE89370400440532013000";
    assert_eq!(report.format, PayoutFormat::Camt054 { version: 8 });
    assert_eq!(report.id, "NTF-PAY-1");
    assert_eq!(
        report.outcomes,
        vec![
            PayoutOutcome {
                amount: Some(yen(12_000)),
                booked_on: Some(date("2026-05-08")),
                ..outcome(&format!("{account}/D-1/PO1"), "PO1", PayoutStatus::Settled)
            },
            PayoutOutcome {
                amount: Some(yen(800)),
                booked_on: Some(date("2026-05-08")),
                ..outcome(&format!("{account}/D-2/PO2"), "PO2", PayoutStatus::Settled)
            },
            PayoutOutcome {
                amount: Some(yen(800)),
                booked_on: Some(date("2026-05-09")),
                reason: Some("AC04".into()),
                ..outcome(&format!("{account}/R-1/PO2"), "PO2", PayoutStatus::Returned)
            },
        ]
    );
    // The credit reader sees the top-up as a credit, the return as money
    // back from our own payment (with the debits), not a member's.
    let statement = parse(xml.as_bytes()).unwrap();
    assert_eq!(statement.credits.len(), 1);
    assert_eq!(statement.credits[0].entry_key, format!("{account}/C-1"));
    assert_eq!(statement.debits, 4);
}

/// A batch booking as banks write it: one debit for the batch, each
/// payout a transaction quoting its end-to-end id; a return marked only
/// by its bank transaction code; a pending debit; an old-style
/// transaction amount.
pub const BATCH_BOOKED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.08">
  <BkToCstmrDbtCdtNtfctn>
    <GrpHdr><MsgId>N-77</MsgId><CreDtTm>2026-05-08T18:00:00</CreDtTm></GrpHdr>
    <Ntfctn>
      <Id>N-77</Id>
      <Acct><Id><Othr><Id>0005-001-1-7654321</Id></Othr></Id></Acct>
      <Ntry>
        <Amt Ccy="JPY">13000</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
        <BookgDt><Dt>2026-05-07</Dt></BookgDt><AcctSvcrRef>BATCH-9</AcctSvcrRef>
        <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>ICDT</Cd><SubFmlyCd>DMCT</SubFmlyCd></Fmly></Domn></BkTxCd>
        <NtryDtls>
          <Btch><NbOfTxs>3</NbOfTxs></Btch>
          <TxDtls><Refs><EndToEndId>PO1</EndToEndId></Refs><Amt Ccy="JPY">12000</Amt><CdtDbtInd>DBIT</CdtDbtInd></TxDtls>
          <TxDtls><Refs><EndToEndId>PO2</EndToEndId></Refs><AmtDtls><TxAmt><Amt Ccy="JPY">700</Amt></TxAmt></AmtDtls></TxDtls>
          <TxDtls><Refs><EndToEndId>PO3</EndToEndId></Refs><Amt Ccy="JPY">300</Amt><CdtDbtInd>DBIT</CdtDbtInd></TxDtls>
          <TxDtls><Refs><EndToEndId>NOTPROVIDED</EndToEndId></Refs></TxDtls>
        </NtryDtls>
      </Ntry>
      <Ntry>
        <Amt Ccy="JPY">300</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts><Cd>BOOK</Cd></Sts>
        <BookgDt><Dt>2026-05-09</Dt></BookgDt><AcctSvcrRef>RET-3</AcctSvcrRef>
        <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>ICDT</Cd><SubFmlyCd>RRTN</SubFmlyCd></Fmly></Domn></BkTxCd>
        <NtryDtls><TxDtls><Refs><EndToEndId>PO3</EndToEndId></Refs></TxDtls></NtryDtls>
      </Ntry>
      <Ntry>
        <Amt Ccy="JPY">400</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>PDNG</Cd></Sts>
        <AcctSvcrRef>PEND-4</AcctSvcrRef>
        <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>ICDT</Cd><SubFmlyCd>DMCT</SubFmlyCd></Fmly></Domn></BkTxCd>
        <NtryDtls><TxDtls><Refs><EndToEndId>PO4</EndToEndId></Refs></TxDtls></NtryDtls>
      </Ntry>
      <Ntry>
        <Amt Ccy="JPY">1</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts><Cd>INFO</Cd></Sts>
        <BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>ICDT</Cd><SubFmlyCd>DMCT</SubFmlyCd></Fmly></Domn></BkTxCd>
        <NtryDtls><TxDtls><Refs><EndToEndId>PO5</EndToEndId></Refs></TxDtls></NtryDtls>
      </Ntry>
    </Ntfctn>
  </BkToCstmrDbtCdtNtfctn>
</Document>"#;

#[test]
fn a_batch_booking_reports_each_payout_of_it() {
    let report = read_outcomes(BATCH_BOOKED.as_bytes()).unwrap();
    let account = "0005-001-1-7654321";
    let booked = |key: &str, id: &str, n: u64, on: &str| PayoutOutcome {
        amount: Some(yen(n)),
        booked_on: Some(date(on)),
        ..outcome(&format!("{account}/{key}/{id}"), id, PayoutStatus::Settled)
    };
    assert_eq!(
        report.outcomes,
        vec![
            booked("BATCH-9", "PO1", 12_000, "2026-05-07"),
            booked("BATCH-9", "PO2", 700, "2026-05-07"),
            booked("BATCH-9", "PO3", 300, "2026-05-07"),
            PayoutOutcome { status: PayoutStatus::Returned, ..booked("RET-3", "PO3", 300, "2026-05-09") },
            PayoutOutcome {
                amount: Some(yen(400)),
                ..outcome(&format!("{account}/PEND-4/PO4"), "PO4", PayoutStatus::Pending)
            },
        ]
    );
    // The return is no member's credit either.
    let statement = parse(BATCH_BOOKED.as_bytes()).unwrap();
    assert!(statement.credits.is_empty());
    assert_eq!(statement.debits, 2);
}

#[test]
fn drafts_refuse_returns_that_are_not_credits_and_repeated_payout_keys() {
    let on = date("2026-05-08");
    let debit = DraftEntry::new(EntryKind::Debit, yen(1), on, "D").unwrap();
    assert!(matches!(debit.clone().with_return_reason("AC04"), Err(E::BadText { field: "return reason", .. })));
    let credit = DraftEntry::new(EntryKind::Credit, yen(1), on, "C").unwrap();
    for bad in ["", "ac04", "AC045", "A-1"] {
        assert!(credit.clone().with_return_reason(bad).is_err(), "{bad:?}");
    }
    assert!(credit.clone().with_end_to_end_id(&"E".repeat(36)).is_err());
    let mut draft = camt054::NotificationDraft::new("N", "JP-POOL-1", CREATED).unwrap();
    draft.push(debit.clone().with_end_to_end_id("PO1").unwrap()).unwrap();
    assert_eq!(
        draft.push(debit.with_end_to_end_id("PO1").unwrap()),
        Err(E::DuplicateEntry { key: "JP-POOL-1/D/PO1".into() })
    );
    // Two returns under one bank reference are two keys when their ids differ.
    let ret = |id: &str| credit.clone().with_end_to_end_id(id).unwrap().with_return_reason("AC01").unwrap();
    draft.push(ret("PO1")).unwrap();
    draft.push(ret("PO2")).unwrap();
    assert!(matches!(draft.push(ret("PO2")), Err(E::DuplicateEntry { .. })));
}
