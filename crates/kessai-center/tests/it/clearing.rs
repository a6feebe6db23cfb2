//! Clearing (#19): stores paid what their purchases came to, less refunds
//! and fees, to the yen; a run pays nothing twice, survives a crash after
//! any write and a racing run; the bank's file says what happened.

use kessai_center::clearing::{ClearingError, RunReport, bank_ref, payout_id, run_id};
use kessai_center::db::{PayoutRow, StoreRecord};
use kessai_center::service::Center;
use kessai_core::Currency;
use kessai_core::ids::{BillId, MessageId, OrderId, PrepaidId, RefundId, SettlementId, StoreId};
use kessai_core::jws::Claims;
use kessai_core::keys::{SigningKey, Validity};
use kessai_core::messages::bill::{self, Bill, BillDraft, LineItem};
use kessai_core::messages::instruction::{self, InstructionDraft, PaymentInstruction};
use kessai_core::messages::refund::{self, RefundRequest, RefundRequestDraft};
use kessai_core::messages::{DisplayText, Nonce};
use kessai_core::random::{OsRandom, SeededRandom};
use kessai_core::samples;
use kessai_core::time::{FixedClock, Timestamp};

use crate::prepaid::{Member, funded, jpy};
use crate::service::{Setup, setup};
use crate::world::NOW;

const ZENGIN_A: &str = "zengin:0001-001-1-1234567:ﾔﾏﾀﾞｼﾖｳﾃﾝ";
const ZENGIN_B: &str = "zengin:0005-123-1-7654321:ｶ)ｻｸﾗﾌﾞﾂｻﾝ";
const ZENGIN_BOOKS: &str = "zengin:0009-200-2-0000042:ｷﾖｳﾄﾎﾝﾔ";

/// A store of the test: its id and key.
pub(crate) struct Shop {
    pub(crate) id: StoreId,
    key: SigningKey,
}

/// Registers store `id` with `key` and a bank account (if any).
pub(crate) async fn shop(c: &Center, id: &str, account: Option<&str>, rng: &mut SeededRandom) -> Shop {
    let key = SigningKey::generate(rng);
    let store = StoreRecord {
        id: StoreId::parse(id).unwrap(),
        name: DisplayText::parse(id).unwrap(),
        mall: None,
        notify_url: None,
        client_name: None,
        bank_account: account.map(str::to_owned),
    };
    c.db.put_store(&store, NOW).await.unwrap();
    c.db.put_store_key(&store.id, &key.public(), Validity::always()).await.unwrap();
    Shop { id: store.id, key }
}

/// A bill of `shop` for `minor` yen, signed at the center's time.
fn bill_of(c: &Center, shop: &Shop, minor: u64, rng: &mut SeededRandom) -> String {
    let mut serial = [0u8; 6];
    kessai_core::random::Random::fill_bytes(rng, &mut serial);
    let bill = Bill::new(BillDraft {
        bill_id: BillId::parse(&format!("bill-{}", serial.iter().map(|b| format!("{b:02x}")).collect::<String>()))
            .unwrap(),
        order_id: OrderId::parse("ord-1").unwrap(),
        store: shop.id.clone(),
        member: None,
        store_name: DisplayText::parse(shop.id.as_str()).unwrap(),
        lines: vec![LineItem::new("item-1", DisplayText::parse("an item").unwrap(), 1, jpy(minor)).unwrap()],
        nonce: Nonce::generate(rng),
        origin: None,
    })
    .unwrap();
    let claims = Claims::for_lifetime(
        kessai_core::ids::PartyId::parse(shop.id.as_str()).unwrap(),
        MessageId::generate(&mut OsRandom),
        c.clock.now(),
        600,
    )
    .unwrap();
    bill::sign(&claims.clone().with_audience(crate::center_party()), &bill, &shop.key).unwrap()
}

/// A bill of `shop` for `minor` yen and `m`'s instruction to pay it from
/// prepaid card `card`.
pub(crate) fn instruction_token(
    c: &Center,
    m: &Member,
    card: &PrepaidId,
    shop: &Shop,
    minor: u64,
    rng: &mut SeededRandom,
) -> (String, String) {
    let bill = bill_of(c, shop, minor, rng);
    let draft = InstructionDraft {
        member: m.id.clone(),
        card_id: None,
        prepaid_id: Some(card.clone()),
        bill_hash: kessai_core::digest::Sha256Digest::of_token(&bill),
        amount: jpy(minor),
        store: shop.id.clone(),
    };
    let claims = Claims::for_lifetime(m.id.clone(), MessageId::generate(&mut OsRandom), c.clock.now(), 300).unwrap();
    let token = instruction::sign(
        &claims.clone().with_audience(crate::center_party()),
        &PaymentInstruction::new(draft).unwrap(),
        &m.key,
    )
    .unwrap();
    (bill, token)
}

/// `m` pays `minor` yen to `shop` from prepaid card `card`: the payment's
/// settlement id.
async fn pay(
    c: &Center,
    m: &Member,
    card: &PrepaidId,
    shop: &Shop,
    minor: u64,
    rng: &mut SeededRandom,
) -> SettlementId {
    let (bill, token) = instruction_token(c, m, card, shop, minor, rng);
    let paid = c.pay_from_prepaid(&bill, &token, None).await.unwrap();
    SettlementId::parse(&paid.settlement_id).unwrap()
}

/// `shop` refunds `minor` yen of `settlement`.
async fn refund(c: &Center, shop: &Shop, settlement: &SettlementId, refund_id: &str, minor: u64) {
    let party = kessai_core::ids::PartyId::parse(shop.id.as_str()).unwrap();
    let claims = Claims::for_lifetime(party, MessageId::generate(&mut OsRandom), c.clock.now(), 600).unwrap();
    let r = RefundRequest::new(RefundRequestDraft {
        refund_id: RefundId::parse(refund_id).unwrap(),
        settlement_id: settlement.clone(),
        store: shop.id.clone(),
        amount: jpy(minor),
        reason: DisplayText::parse("returned").unwrap(),
    })
    .unwrap();
    c.request_refund(&refund::sign(&claims.clone().with_audience(crate::center_party()), &r, &shop.key).unwrap())
        .await
        .unwrap();
}

/// The fee on one purchase, as the schedule says it (written here again,
/// not taken from the center): the percentage rounded half up, plus the
/// fixed part, never more than the purchase.
fn fee(minor: u64, bp: u64, fixed: u64) -> u64 {
    let percent = minor * bp / 10_000 + u64::from((minor * bp) % 10_000 >= 5_000);
    (percent + fixed).min(minor)
}

/// What each store is owed at the cutoff, computed from what the test did.
struct Expected {
    store: StoreId,
    gross: u64,
    refunds: u64,
    fees: u64,
}

impl Expected {
    fn net(&self) -> u64 {
        self.gross - self.refunds - self.fees
    }
}

/// Three stores with accounts (one with its own fee), one without; prepaid
/// payments and refunds, and an IC card purchase at the bookshop.
struct Scene {
    s: Setup,
    a: Shop,
    b: Shop,
    no_account: Shop,
    m: Member,
    card: PrepaidId,
    expected: Vec<Expected>,
}

async fn scene() -> Scene {
    scene_on(setup().await).await
}

async fn scene_on(mut s: Setup) -> Scene {
    s.center.clearing.fee_bp = 100;
    let a = shop(&s.center, "store-a", Some(ZENGIN_A), &mut s.rng).await;
    let b = shop(&s.center, "store-b", Some(ZENGIN_B), &mut s.rng).await;
    let no_account = shop(&s.center, "store-c", None, &mut s.rng).await;
    s.center.db.set_store_fee(&a.id, Currency::JPY, 325, 10, NOW).await.unwrap();
    let books = StoreId::parse(samples::MEMBER).unwrap();
    let record = s.center.db.store(&books).await.unwrap().unwrap();
    s.center.db.put_store(&StoreRecord { bank_account: Some(ZENGIN_BOOKS.into()), ..record }, NOW).await.unwrap();
    let (m, card) = funded(&mut s, 90_000).await;
    let rng = &mut s.rng;
    let c = &s.center;
    for minor in [1_000, 2_999, 15] {
        pay(c, &m, &card, &a, minor, rng).await;
    }
    let refunded = pay(c, &m, &card, &a, 4_000, rng).await;
    refund(c, &a, &refunded, "rf-a-1", 500).await;
    for minor in [5_000, 7] {
        pay(c, &m, &card, &b, minor, rng).await;
    }
    pay(c, &m, &card, &no_account, 3_000, rng).await;
    // The bookshop: one IC card purchase of the sample bill, refunded in
    // part (held for the card), and one prepaid payment.
    crate::service::register_card(&s, 1, 50_000).await;
    let mut ic = crate::world::funded_card(1, 50_000);
    let done = crate::service::purchase(&mut s, 1, &mut ic).await.unwrap();
    let settlement = SettlementId::parse(&done.settlement_id).unwrap();
    let token = crate::refund::refund_token(&s.mall_key, &settlement, "rf-books-1", 1_000);
    s.center.request_refund(&token).await.unwrap();
    let bill = crate::prepaid::sample_bill(&mut s);
    let token = crate::prepaid::instruction_for(&s.center, &m, &bill, &card, jpy(11_360), &m.key);
    s.center.pay_from_prepaid(&bill, &token, None).await.unwrap();
    let expected = vec![
        Expected {
            store: a.id.clone(),
            gross: 1_000 + 2_999 + 15 + 4_000,
            refunds: 500,
            fees: fee(1_000, 325, 10) + fee(2_999, 325, 10) + fee(15, 325, 10) + fee(4_000, 325, 10),
        },
        Expected { store: b.id.clone(), gross: 5_007, refunds: 0, fees: fee(5_000, 100, 0) + fee(7, 100, 0) },
        Expected { store: books, gross: 2 * 11_360, refunds: 1_000, fees: 2 * fee(11_360, 100, 0) },
    ];
    Scene { s, a, b, no_account, m, card, expected }
}

fn payout_of<'p>(payouts: &'p [PayoutRow], store: &StoreId) -> &'p PayoutRow {
    payouts.iter().find(|p| &p.store == store).unwrap_or_else(|| panic!("no payout for {store}"))
}

/// The books agree with the payouts: each paid store has nothing open,
/// payouts in transit and fees are what the payouts say, the store without
/// an account still has its payment open, and the ledger's invariants hold.
async fn books_agree(c: &Center, expected: &[Expected], payouts: &[PayoutRow], no_account: &StoreId) {
    c.books.ledger().check().await.unwrap();
    let mut sent = 0u64;
    let mut fees = 0u64;
    for e in expected {
        let p = payout_of(payouts, &e.store);
        assert_eq!(
            (p.gross_minor, p.refunds_minor, p.fees_minor, p.amount_minor),
            (e.gross, e.refunds, e.fees, e.net()),
            "{}",
            e.store
        );
        assert_eq!(c.books.store_open(&e.store, Currency::JPY).await.unwrap(), 0, "{}", e.store);
        assert_eq!(c.db.open_payable(&e.store, Currency::JPY).await.unwrap(), 0, "{}", e.store);
        let items = c.db.payout_items(&p.id).await.unwrap();
        assert_eq!(u64::try_from(items.len()).unwrap(), p.items);
        let summed: i64 = items.iter().map(|i| i.amount_minor).sum();
        assert_eq!(summed, i64::try_from(e.gross - e.refunds).unwrap(), "the items are what was paid and refunded");
        sent += p.amount_minor;
        fees += p.fees_minor;
    }
    assert_eq!(payouts.len(), expected.len(), "one payout per store with an account: {payouts:?}");
    assert_eq!(c.books.in_transit(Currency::JPY).await.unwrap(), i128::from(sent));
    assert_eq!(c.books.fees(Currency::JPY).await.unwrap(), fees);
    assert_eq!(c.books.store_open(no_account, Currency::JPY).await.unwrap(), 3_000);
    assert_eq!(c.db.open_payable(no_account, Currency::JPY).await.unwrap(), 3_000);
}

#[tokio::test]
async fn a_clearing_run_pays_each_store_its_purchases_less_refunds_and_fees_to_the_yen_and_nothing_twice() {
    let sc = scene().await;
    let c = &sc.s.center;
    // Per item, rounded half up: 32.5 -> 33 (+10), 97.4675 -> 97 (+10),
    // 0.4875 -> 0 (+10), 130 (+10).
    assert_eq!(sc.expected[0].fees, 43 + 107 + 10 + 140);
    assert_eq!(sc.expected[0].net(), 8_014 - 500 - 300);

    let report = c.clearing_run(NOW).await.unwrap();
    assert_eq!(report.payouts, 3);
    assert_eq!(report.skipped, vec![(sc.no_account.id.clone(), "the store has no bank account".to_owned())]);
    let total: u64 = sc.expected.iter().map(Expected::net).sum();
    assert_eq!(report.paid, vec![(Currency::JPY, total)]);
    let payouts = c.db.payouts(Some(&run_id(NOW)), None, 100).await.unwrap();
    books_agree(c, &sc.expected, &payouts, &sc.no_account.id).await;
    for p in &payouts {
        assert_eq!(p.id, payout_id(&run_id(NOW), &p.store, Currency::JPY));
        assert_eq!(p.bank_ref, bank_ref(&p.id));
        assert_eq!(p.bank_ref.len(), 20);
        assert_eq!(p.status, "in_transit");
    }

    // The same run again: done, nothing paid.
    let again = c.clearing_run(NOW).await.unwrap();
    assert!(again.done_before);
    // A later run: nothing new but the store without an account.
    let later = Timestamp::from_unix_s(NOW.unix_s() + 60);
    let mut s = sc.s;
    s.center.clock = std::sync::Arc::new(FixedClock::new(Timestamp::from_unix_s(NOW.unix_s() + 120)));
    let c = &s.center;
    let report = c.clearing_run(later).await.unwrap();
    assert_eq!((report.payouts, report.skipped.len()), (0, 1));
    // A payment after the first run is paid by the next, alone.
    let mut rng = SeededRandom::new(5);
    pay(c, &sc.m, &sc.card, &sc.b, 2_000, &mut rng).await;
    let next = Timestamp::from_unix_s(NOW.unix_s() + 120);
    let report = c.clearing_run(next).await.unwrap();
    assert_eq!(report.payouts, 1);
    let p = c.db.payouts(Some(&run_id(next)), None, 100).await.unwrap();
    assert_eq!(
        (p[0].store.clone(), p[0].gross_minor, p[0].fees_minor, p[0].amount_minor),
        (sc.b.id.clone(), 2_000, 20, 1_980)
    );
    // A cutoff in the future is refused.
    let future = Timestamp::from_unix_s(NOW.unix_s() + 3_600);
    assert!(matches!(c.clearing_run(future).await, Err(ClearingError::FutureCutoff { .. })));
}

#[tokio::test]
async fn refunds_beyond_what_is_open_are_carried_not_paid() {
    let mut s = setup().await;
    let a = shop(&s.center, "store-a", Some(ZENGIN_A), &mut s.rng).await;
    let (m, card) = funded(&mut s, 90_000).await;
    let rng = &mut s.rng;
    let first = pay(&s.center, &m, &card, &a, 10_000, rng).await;
    s.center.clearing_run(NOW).await.unwrap();
    // Refunded after it was paid out: the store owes it; nothing is paid
    // until its sales cover it.
    s.center.clock = std::sync::Arc::new(FixedClock::new(Timestamp::from_unix_s(NOW.unix_s() + 100)));
    refund(&s.center, &a, &first, "rf-1", 4_000).await;
    pay(&s.center, &m, &card, &a, 3_000, &mut s.rng).await;
    let report = s.center.clearing_run(Timestamp::from_unix_s(NOW.unix_s() + 100)).await.unwrap();
    assert_eq!((report.payouts, report.carried), (0, 1));
    assert_eq!(s.center.db.open_payable(&a.id, Currency::JPY).await.unwrap(), -1_000);
    assert_eq!(s.center.books.store_open(&a.id, Currency::JPY).await.unwrap(), -1_000);
    s.center.clock = std::sync::Arc::new(FixedClock::new(Timestamp::from_unix_s(NOW.unix_s() + 200)));
    pay(&s.center, &m, &card, &a, 5_000, &mut s.rng).await;
    let report = s.center.clearing_run(Timestamp::from_unix_s(NOW.unix_s() + 200)).await.unwrap();
    assert_eq!(report.payouts, 1);
    let p = s.center.db.payouts(Some(&run_id(Timestamp::from_unix_s(NOW.unix_s() + 200))), None, 10).await.unwrap();
    assert_eq!((p[0].gross_minor, p[0].refunds_minor, p[0].amount_minor), (8_000, 4_000, 4_000));
    s.center.books.ledger().check().await.unwrap();
}

/// The payouts of a completed run, from a scene crashed after its `n`-th
/// write and run again: `None` once the run had fewer writes than `n`.
async fn crashed_run(n: u64) -> Option<()> {
    let sc = scene().await;
    let c = &sc.s.center;
    c.db.faults().fail_at(n);
    let first = c.clearing_run(NOW).await;
    let fired = !c.db.faults().armed();
    c.db.faults().fail_at(0);
    if !fired {
        first.unwrap();
    } else {
        // The instance died: its claim lapses, and the run is run again.
        let mut s = sc.s;
        s.center.clock = std::sync::Arc::new(FixedClock::new(Timestamp::from_unix_s(NOW.unix_s() + 600)));
        assert!(first.is_err(), "a fault at {n} fails the run");
        let report: RunReport =
            s.center.clearing_run(NOW).await.unwrap_or_else(|e| panic!("after a fault at {n}: {e}"));
        assert!(!report.done_before, "fault at {n}");
        let payouts = s.center.db.payouts(Some(&run_id(NOW)), None, 100).await.unwrap();
        books_agree(&s.center, &sc.expected, &payouts, &sc.no_account.id).await;
        return Some(());
    }
    let payouts = c.db.payouts(Some(&run_id(NOW)), None, 100).await.unwrap();
    books_agree(c, &sc.expected, &payouts, &sc.no_account.id).await;
    None
}

#[tokio::test]
async fn a_crash_after_any_write_of_a_clearing_run_leaves_books_the_next_run_completes() {
    let mut n = 1;
    while crashed_run(n).await.is_some() {
        n += 1;
        assert!(n < 500, "the run ends");
    }
    assert!(n > 10, "every write of the run was crashed after: {n}");
}

/// Two runs of one clearing at once (two instances, each with its own
/// claim token): each store is paid once, the loser is told another runs
/// it, and running it again finds it done.
async fn racing(sc: Scene) {
    let c = &sc.s.center;
    let runs = tokio::join!(c.clearing_run(NOW), c.clearing_run(NOW));
    let runs = [runs.0, runs.1];
    for r in &runs {
        if let Err(e) = r {
            assert!(matches!(e, ClearingError::Held { .. } | ClearingError::LostClaim(_)), "{e:?}");
        }
    }
    let ok: Vec<&RunReport> = runs.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert!(!ok.is_empty(), "{runs:?}");
    let made: u64 = ok.iter().map(|r| r.payouts).sum();
    assert_eq!(made, 3, "each store paid once: {runs:?}");
    assert!(c.clearing_run(NOW).await.unwrap().done_before);
    let payouts = c.db.payouts(Some(&run_id(NOW)), None, 100).await.unwrap();
    books_agree(c, &sc.expected, &payouts, &sc.no_account.id).await;
}

#[tokio::test]
async fn two_runs_of_one_clearing_at_once_pay_each_store_once() {
    racing(scene().await).await;
}

#[tokio::test]
async fn two_runs_of_one_clearing_at_once_pay_each_store_once_on_postgres() {
    let Some(s) = crate::service::setup_on_postgres("clearing_race").await else { return };
    racing(scene_on(s).await).await;
}

/// libxml2's verdict on `xml` against the official pain.001.001.09 schema
/// kept by kessai-bank: an implementation that is not ours.
fn valid_pain001(xml: &[u8]) {
    let Some(xmllint) = kessai_testkit::tool_on_path("xmllint", "KESSAI_XMLLINT") else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("payouts.xml");
    std::fs::write(&file, xml).unwrap();
    let schema =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../kessai-bank/tests/vectors/pain.001.001.09.xsd");
    let out =
        std::process::Command::new(xmllint).arg("--noout").arg("--schema").arg(schema).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(xml));
}

fn booked_today() -> kessai_bank::Date {
    kessai_bank::Date::new(2026, 11, 18).unwrap()
}

/// The center's account, debited for `payouts` (bank reference, amount),
/// as the bank notifies it (camt.054).
pub(crate) fn debits(id: &str, payouts: &[(&str, u64)]) -> Vec<u8> {
    use kessai_bank::camt::{DraftEntry, EntryKind};
    let mut draft = kessai_bank::camt054::NotificationDraft::new(id, "JP00KESSAIPOOL0001", NOW).unwrap();
    for (n, (reference, minor)) in payouts.iter().enumerate() {
        let entry = DraftEntry::new(EntryKind::Debit, jpy(*minor), booked_today(), &format!("{id}-{n}")).unwrap();
        draft.push(entry.with_end_to_end_id(reference).unwrap()).unwrap();
    }
    kessai_bank::camt054::write(&draft).into_bytes()
}

#[tokio::test]
async fn the_bank_files_carry_every_payout_and_the_banks_answer_settles_or_returns_each_once() {
    use kessai_bank::pain002::{self, StatusReport, TransactionStatus};
    use kessai_bank::zengin::TransferResult;
    use kessai_center::clearing::{FileFormat, batch_id};

    let mut sc = scene().await;
    let c = &sc.s.center;
    c.clearing_run(NOW).await.unwrap();
    let run = run_id(NOW);
    let payouts = c.db.payouts(Some(&run), None, 100).await.unwrap();

    // pain.001: valid against the schema, every payout in it, the same
    // bytes every time it is asked.
    let xml = c.payout_file(&run, Currency::JPY, FileFormat::Pain001).await.unwrap();
    assert_eq!(xml, c.payout_file(&run, Currency::JPY, FileFormat::Pain001).await.unwrap());
    valid_pain001(&xml);
    let text = String::from_utf8(xml).unwrap();
    for p in &payouts {
        assert!(text.contains(&format!("<EndToEndId>{}</EndToEndId>", p.bank_ref)), "{text}");
        assert!(text.contains(&format!(">{}</InstdAmt>", p.amount_minor)), "{text}");
    }
    // Zengin 総合振込: header, a data record a payout, trailer, end; 120
    // bytes and CRLF each; each payout's reference in its EDI field.
    let zengin = c.payout_file(&run, Currency::JPY, FileFormat::Zengin).await.unwrap();
    assert_eq!(zengin.len(), (payouts.len() + 3) * 122);
    for p in &payouts {
        assert!(zengin.windows(20).any(|w| w == p.bank_ref.as_bytes()), "{}", p.bank_ref);
    }
    assert!(matches!(
        c.payout_file("clr_1", Currency::JPY, FileFormat::Pain001).await,
        Err(ClearingError::UnknownRun(_))
    ));

    let of = |store: &StoreId| payout_of(&payouts, store).clone();
    let (a, b, books) = (of(&sc.a.id), of(&sc.b.id), of(&StoreId::parse(samples::MEMBER).unwrap()));
    let in_transit = |c: &Center| {
        let c = c.books.clone();
        async move { c.in_transit(Currency::JPY).await.unwrap() }
    };
    let all = i128::from(a.amount_minor + b.amount_minor + books.amount_minor);
    assert_eq!(in_transit(c).await, all);

    // pain.002: B's payout rejected (no such account), A's in process.
    let report = pain002::write(&StatusReport {
        message_id: "RPT-1".into(),
        created_at: NOW,
        original_message_id: batch_id(&run, Currency::JPY),
        group_status: None,
        group_reason: None,
        transactions: vec![
            TransactionStatus {
                end_to_end_id: b.bank_ref.clone(),
                status: "RJCT".into(),
                reason: Some("AC04".into()),
                amount: Some(jpy(b.amount_minor)),
            },
            TransactionStatus { end_to_end_id: a.bank_ref.clone(), status: "ACSP".into(), reason: None, amount: None },
        ],
    })
    .unwrap();
    let r = c.import_payout_outcomes(report.as_bytes()).await.unwrap();
    assert_eq!((r.failed, r.pending, r.settled, r.review), (1, 1, 0, 0));
    let failed = c.db.payout(&b.id).await.unwrap().unwrap();
    assert_eq!((failed.status.as_str(), failed.reason.as_deref()), ("failed", Some("AC04")));
    assert_eq!(
        c.books.store_open(&b.store, Currency::JPY).await.unwrap(),
        i128::from(b.amount_minor),
        "back on B's payable"
    );
    assert_eq!(c.db.open_payable(&b.store, Currency::JPY).await.unwrap(), i64::try_from(b.amount_minor).unwrap());
    assert_eq!(in_transit(c).await, all - i128::from(b.amount_minor));
    // The same file again changes nothing.
    let again = c.import_payout_outcomes(report.as_bytes()).await.unwrap();
    assert_eq!((again.failed, again.already_imported), (0, 1));
    assert_eq!(c.db.open_payable(&b.store, Currency::JPY).await.unwrap(), i64::try_from(b.amount_minor).unwrap());

    // camt.054 of the center's account: A's payout debited, so settled
    // (the money left the bank pool); a debit quoting no payout of ours
    // and one of another amount than B's go to the operator, changing
    // nothing.
    let pool_before = c.books.received(kessai_center::books::Receiving::BankPool, Currency::JPY).await.unwrap();
    let notice = debits("N-1", &[(&a.bank_ref, a.amount_minor), ("KS000000000000000000", 5), (&books.bank_ref, 1)]);
    let r = c.import_payout_outcomes(&notice).await.unwrap();
    assert_eq!((r.settled, r.failed, r.review), (1, 0, 2));
    assert_eq!(c.db.payout(&a.id).await.unwrap().unwrap().status, "settled");
    assert_eq!(c.db.payout(&books.id).await.unwrap().unwrap().status, "in_transit", "another amount settles nothing");
    let pool_after = c.books.received(kessai_center::books::Receiving::BankPool, Currency::JPY).await.unwrap();
    assert_eq!(pool_before - pool_after, i128::from(a.amount_minor));
    assert_eq!(c.db.payout_events_to_review(10).await.unwrap().len(), 2);
    assert_eq!(c.import_payout_outcomes(&notice).await.unwrap().already_imported, 3);

    // The Zengin result: the bookshop's transfer could not be made (no
    // such account); A's and B's lines say what the center knows already
    // (recorded for review, changing nothing).
    let batch = c.payout_batch(&run, Currency::JPY).await.unwrap();
    let results: Vec<TransferResult> = batch
        .lines
        .iter()
        .map(|l| {
            if l.end_to_end_id == books.bank_ref { TransferResult::NoSuchAccount } else { TransferResult::Transferred }
        })
        .collect();
    let result = kessai_bank::zengin::write_transfer_result(&batch, &results).unwrap();
    let r = c.import_payout_outcomes(&result).await.unwrap();
    assert_eq!((r.failed, r.settled, r.review), (1, 0, 2));
    assert_eq!(c.db.payout(&books.id).await.unwrap().unwrap().status, "failed");
    assert_eq!(in_transit(c).await, 0);
    c.books.ledger().check().await.unwrap();
    // Truncated or foreign files are refused whole.
    assert!(matches!(c.import_payout_outcomes(&result[..result.len() - 50]).await, Err(ClearingError::BankFile(_))));
    assert!(matches!(c.import_payout_outcomes(b"<Document/>").await, Err(ClearingError::BankFile(_))));

    // The next run pays what came back, without a second fee.
    sc.s.center.clock = std::sync::Arc::new(FixedClock::new(Timestamp::from_unix_s(NOW.unix_s() + 60)));
    let c = &sc.s.center;
    let next = Timestamp::from_unix_s(NOW.unix_s() + 60);
    let report = c.clearing_run(next).await.unwrap();
    assert_eq!(report.payouts, 2);
    let repaid = c.db.payouts(Some(&run_id(next)), None, 10).await.unwrap();
    for (before, now) in [(&b, payout_of(&repaid, &b.store)), (&books, payout_of(&repaid, &books.store))] {
        assert_eq!((now.amount_minor, now.fees_minor, now.gross_minor), (before.amount_minor, 0, 0));
        assert_eq!(now.other_minor, i64::try_from(before.amount_minor).unwrap());
    }
    // A pain.002 refusing that whole batch fails both.
    let whole = pain002::write(&StatusReport {
        message_id: "RPT-2".into(),
        created_at: NOW,
        original_message_id: batch_id(&run_id(next), Currency::JPY),
        group_status: Some("RJCT".into()),
        group_reason: Some("AM04".into()),
        transactions: vec![],
    })
    .unwrap();
    let r = c.import_payout_outcomes(whole.as_bytes()).await.unwrap();
    assert_eq!(r.failed, 2);
    assert_eq!(c.books.store_open(&b.store, Currency::JPY).await.unwrap(), i128::from(b.amount_minor));
    assert_eq!(c.import_payout_outcomes(whole.as_bytes()).await.unwrap().already_imported, 2);
    c.books.ledger().check().await.unwrap();
}

/// A database as schema v7 left it (payments made, no payable items):
/// opened by this build, each store's payable opens with what it held,
/// once, and the next run pays it.
#[tokio::test]
async fn books_from_before_clearing_open_each_payable_once() {
    let mut sc = scene().await;
    let stores = [sc.a.id.clone(), sc.b.id.clone(), StoreId::parse(samples::MEMBER).unwrap(), sc.no_account.id.clone()];
    let mut held = Vec::new();
    for s in &stores {
        held.push(sc.s.center.books.store_open(s, Currency::JPY).await.unwrap());
    }
    sc.s.center.db.close().await;
    let path = sc.s._dir.path().join("center.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TABLE center_payable_items; DROP TABLE center_store_fees; DROP TABLE center_clearing_runs;
         DROP TABLE center_payouts; DROP TABLE center_payout_events; DROP TABLE center_store_settings;
         DROP TABLE center_claims; DELETE FROM kessai_center_schema WHERE version >= 8;",
    )
    .unwrap();
    drop(conn);
    let url = format!("sqlite:{}", path.display());
    for _ in 0..2 {
        let db = kessai_center::db::CenterDb::open(&url).await.unwrap();
        for (s, open) in stores.iter().zip(&held) {
            assert_eq!(i128::from(db.open_payable(s, Currency::JPY).await.unwrap()), *open, "{s}");
        }
        db.close().await;
    }
    let db = kessai_center::db::CenterDb::open(&url).await.unwrap();
    sc.s.center.books = kessai_center::books::Books::new(db.clone());
    sc.s.center.db = db;
    let report = sc.s.center.clearing_run(NOW).await.unwrap();
    assert_eq!(report.payouts, 3);
    for s in &stores[..3] {
        assert_eq!(sc.s.center.books.store_open(s, Currency::JPY).await.unwrap(), 0, "{s}");
    }
    sc.s.center.books.ledger().check().await.unwrap();
}

/// A store's statement over its mutual TLS identity: its own payouts, each
/// with its settlements, refunds and fees; a mall reads its member stores';
/// to anyone else (another store, no certificate) a payout is unknown.
#[tokio::test]
async fn a_store_reads_its_own_payouts_and_a_mall_its_members_and_nobody_else() {
    use serde_json::Value;

    let sc = scene().await;
    sc.s.center.clearing_run(NOW).await.unwrap();
    let expected_a = sc.expected[0].net();
    let Scene { s, a, .. } = sc;
    let Setup { _dir, center, .. } = s;
    let app = kessai_center::clearing_api::routes(std::sync::Arc::new(center));
    let read = |path: String, peer: Option<&'static str>| {
        let app = app.clone();
        async move { crate::api::send(&app, axum::http::Request::get(path), Value::Null, peer).await }
    };

    let (status, list) = read("/v1/payouts".into(), Some("store-a")).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["store"], a.id.as_str());
    let payouts = list["payouts"].as_array().unwrap();
    assert_eq!(payouts.len(), 1);
    assert_eq!(payouts[0]["amount_minor"], expected_a);
    assert_eq!((payouts[0]["fee_bp"].as_u64(), payouts[0]["status"].as_str()), (Some(325), Some("in_transit")));
    let id = payouts[0]["payout_id"].as_str().unwrap().to_owned();

    // The statement: every line, its fee; they sum to what was sent.
    let (status, statement) = read(format!("/v1/payouts/{id}"), Some("store-a")).await;
    assert_eq!(status, 200, "{statement}");
    let lines = statement["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 5, "four payments and a refund: {statement}");
    let sum: i64 = lines.iter().map(|l| l["amount_minor"].as_i64().unwrap() - l["fee_minor"].as_i64().unwrap()).sum();
    assert_eq!(sum, i64::try_from(expected_a).unwrap());
    assert!(lines.iter().any(|l| l["kind"] == "prepaid_refund" && l["amount_minor"] == -500 && l["fee_minor"] == 0));
    assert!(lines.iter().any(|l| l["kind"] == "prepaid_payment" && l["amount_minor"] == 1_000 && l["fee_minor"] == 43));

    // Nobody else reads it, and nobody learns it exists.
    for peer in [Some("store-b"), Some("kessai-mall"), None] {
        let (status, answer) = read(format!("/v1/payouts/{id}"), peer).await;
        assert_eq!((status.as_u16(), answer["error"]["code"].as_str()), (404, Some("unknown_payout")), "{peer:?}");
        let (status, answer) = read("/v1/payouts?store=store-a".into(), peer).await;
        assert_eq!((status.as_u16(), answer["error"]["code"].as_str()), (404, Some("unknown_store")), "{peer:?}");
    }
    let (status, _) = read("/v1/payouts/po_00000000000000000000000000000000".into(), Some("store-a")).await;
    assert_eq!(status, 404);
    // The mall reads its member store's; the member store its own.
    for peer in ["kessai-mall", "bookshop"] {
        let (status, list) = read("/v1/payouts?store=bookshop".into(), Some(peer)).await;
        assert_eq!(status, 200, "{peer}: {list}");
        assert_eq!(list["payouts"].as_array().unwrap().len(), 1, "{peer}");
    }
}

/// `shop`'s payment claim `claim_id` for `payee`, signed with `key`.
fn claim_of(
    c: &Center,
    signer: &StoreId,
    key: &SigningKey,
    payee: &StoreId,
    claim_id: &str,
    lines: &[(&SettlementId, u64)],
) -> String {
    use kessai_core::messages::claim::{self, ClaimLine, PaymentClaim, PaymentClaimDraft};
    let draft = PaymentClaimDraft {
        claim_id: kessai_core::ids::ClaimId::parse(claim_id).unwrap(),
        store: signer.clone(),
        payee: payee.clone(),
        cutoff: c.clock.now(),
        currency: Currency::JPY,
        lines: lines.iter().map(|(s, minor)| ClaimLine { settlement_id: (*s).clone(), amount: jpy(*minor) }).collect(),
    };
    let party = kessai_core::ids::PartyId::parse(signer.as_str()).unwrap();
    let claims = Claims::for_lifetime(party, MessageId::generate(&mut OsRandom), c.clock.now(), 600).unwrap();
    claim::sign(&claims.clone().with_audience(crate::center_party()), &PaymentClaim::new(draft).unwrap(), key).unwrap()
}

/// FIG. 9: a store paid on claim claims its settlements; the center
/// checks each against its books, answers a signed statement, and the run
/// pays exactly what was claimed (less refunds and fees); an over-claim, a
/// replay, a reused claim id, a settlement claimed twice and a claim
/// signed by another store change nothing.
#[tokio::test]
async fn a_store_paid_on_claim_is_paid_what_its_accepted_claims_name_and_nothing_more() {
    use kessai_center::clearing::ClaimError;
    use kessai_core::messages::claim;

    let mut s = setup().await;
    let a = shop(&s.center, "store-a", Some(ZENGIN_A), &mut s.rng).await;
    let b = shop(&s.center, "store-b", Some(ZENGIN_B), &mut s.rng).await;
    s.center.db.set_store_fee(&a.id, Currency::JPY, 100, 0, NOW).await.unwrap();
    s.center.db.set_paid_on_claim(&a.id, true, NOW).await.unwrap();
    let (m, card) = funded(&mut s, 90_000).await;
    let c = &s.center;
    let rng = &mut s.rng;
    let first = pay(c, &m, &card, &a, 10_000, rng).await;
    let second = pay(c, &m, &card, &a, 5_000, rng).await;
    let unclaimed = pay(c, &m, &card, &a, 3_000, rng).await;
    let of_b = pay(c, &m, &card, &b, 7_000, rng).await;
    refund(c, &a, &second, "rf-1", 1_000).await;

    // Over-claims: the refunded settlement at its full amount, another
    // store's settlement, one that does not exist. Refused whole, naming
    // exactly those; nothing is marked.
    let ghost = SettlementId::parse("stl_00000000000000000000000000000000").unwrap();
    let over = claim_of(
        c,
        &a.id,
        &a.key,
        &a.id,
        "claim-1",
        &[(&first, 10_000), (&second, 5_000), (&of_b, 7_000), (&ghost, 1)],
    );
    let Err(ClaimError::Differs(differs)) = c.claim_payment(&over).await else { panic!("an over-claim is refused") };
    let named: Vec<&str> = differs.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(named, vec![second.as_str(), of_b.as_str(), ghost.as_str()], "{differs:?}");
    // Signed by another store for store-a: refused.
    let foreign = claim_of(c, &b.id, &b.key, &a.id, "claim-x", &[(&first, 10_000)]);
    assert!(matches!(c.claim_payment(&foreign).await, Err(ClaimError::NotPayee { .. })));
    // Store-a's claim signed with store-b's key: it does not verify.
    let forged = claim_of(c, &a.id, &b.key, &a.id, "claim-y", &[(&first, 10_000)]);
    assert!(matches!(c.claim_payment(&forged).await, Err(ClaimError::Refused(_))));

    // The right claim: each settlement at the books' figure.
    let right = claim_of(c, &a.id, &a.key, &a.id, "claim-1", &[(&first, 10_000), (&second, 4_000)]);
    let reply = c.claim_payment(&right).await.unwrap();
    let mut keys = kessai_core::keys::KeyDirectory::new();
    keys.insert(c.center_id.clone(), c.center_key.public(), Validity::always()).unwrap();
    let verified = claim::verify_statement(&reply.statement, &keys, c.clock.as_ref()).unwrap();
    let statement = verified.message();
    assert_eq!(statement.lines().len(), 2);
    assert_eq!((statement.amount(), statement.fees()), (jpy(14_000 - 150), jpy(150)), "1 % of each purchase");
    // Replayed, or signed again: the same statement. The same id asking
    // something else, or the same settlement under another id: refused.
    assert_eq!(c.claim_payment(&right).await.unwrap(), reply);
    let resigned = claim_of(c, &a.id, &a.key, &a.id, "claim-1", &[(&first, 10_000), (&second, 4_000)]);
    assert_eq!(c.claim_payment(&resigned).await.unwrap(), reply);
    let reused = claim_of(c, &a.id, &a.key, &a.id, "claim-1", &[(&first, 10_000)]);
    assert!(matches!(c.claim_payment(&reused).await, Err(ClaimError::ClaimIdReused(_))));
    let twice = claim_of(c, &a.id, &a.key, &a.id, "claim-2", &[(&first, 10_000)]);
    assert!(matches!(c.claim_payment(&twice).await, Err(ClaimError::Differs(_))));

    // The run pays store-a what the claim accepted (its refund taken off
    // as it always is) and keeps the unclaimed purchase open; store-b,
    // paid by every run, is paid all.
    let report = c.clearing_run(NOW).await.unwrap();
    assert_eq!(report.payouts, 2);
    let payouts = c.db.payouts(Some(&run_id(NOW)), None, 10).await.unwrap();
    let pa = payout_of(&payouts, &a.id);
    assert_eq!((pa.gross_minor, pa.refunds_minor, pa.fees_minor, pa.amount_minor), (15_000, 1_000, 150, 13_850));
    assert_eq!(c.db.open_payable(&a.id, Currency::JPY).await.unwrap(), 3_000);
    assert_eq!(c.books.store_open(&a.id, Currency::JPY).await.unwrap(), 3_000);
    assert_eq!(payout_of(&payouts, &b.id).amount_minor, 7_000);
    // The unclaimed one, claimed later, is paid by the next run.
    s.center.clock = std::sync::Arc::new(FixedClock::new(Timestamp::from_unix_s(NOW.unix_s() + 60)));
    let c = &s.center;
    let later = claim_of(c, &a.id, &a.key, &a.id, "claim-3", &[(&unclaimed, 3_000)]);
    c.claim_payment(&later).await.unwrap();
    let next = c.clearing_run(Timestamp::from_unix_s(NOW.unix_s() + 60)).await.unwrap();
    assert_eq!(next.paid, vec![(Currency::JPY, 2_970)]);
    c.books.ledger().check().await.unwrap();
}

/// Two claims naming one settlement at once: exactly one is accepted, the
/// other refused naming it; the run pays the accepted one only.
async fn racing_claims(mut s: Setup) {
    use kessai_center::clearing::ClaimError;

    let a = shop(&s.center, "store-a", Some(ZENGIN_A), &mut s.rng).await;
    s.center.db.set_paid_on_claim(&a.id, true, NOW).await.unwrap();
    let (m, card) = funded(&mut s, 90_000).await;
    let c = &s.center;
    let rng = &mut s.rng;
    let (x, y, z) = (
        pay(c, &m, &card, &a, 1_000, rng).await,
        pay(c, &m, &card, &a, 2_000, rng).await,
        pay(c, &m, &card, &a, 4_000, rng).await,
    );
    let one = claim_of(c, &a.id, &a.key, &a.id, "claim-r1", &[(&x, 1_000), (&y, 2_000)]);
    let two = claim_of(c, &a.id, &a.key, &a.id, "claim-r2", &[(&y, 2_000), (&z, 4_000)]);
    let (r1, r2) = tokio::join!(c.claim_payment(&one), c.claim_payment(&two));
    let paid = match (&r1, &r2) {
        (Ok(_), Err(ClaimError::Differs(d))) | (Err(ClaimError::Differs(d)), Ok(_)) => {
            assert_eq!(d.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(), vec![y.as_str()], "{d:?}");
            if r1.is_ok() { 3_000 } else { 6_000 }
        }
        other => panic!("exactly one claim is accepted: {other:?}"),
    };
    let report = c.clearing_run(NOW).await.unwrap();
    assert_eq!(report.paid, vec![(Currency::JPY, paid)]);
    assert_eq!(c.db.open_payable(&a.id, Currency::JPY).await.unwrap(), 7_000 - i64::try_from(paid).unwrap());
    c.books.ledger().check().await.unwrap();
}

#[tokio::test]
async fn two_claims_naming_one_settlement_at_once_accept_one() {
    racing_claims(setup().await).await;
}

#[tokio::test]
async fn two_claims_naming_one_settlement_at_once_accept_one_on_postgres() {
    let Some(s) = crate::service::setup_on_postgres("claims_race").await else { return };
    racing_claims(s).await;
}

/// `POST /v1/claims`: the statement, or a refusal with a stable code.
#[tokio::test]
async fn the_claims_route_answers_the_statement_or_a_stable_refusal() {
    use serde_json::{Value, json};

    let mut s = setup().await;
    let a = shop(&s.center, "store-a", Some(ZENGIN_A), &mut s.rng).await;
    let (m, card) = funded(&mut s, 90_000).await;
    let paid = pay(&s.center, &m, &card, &a, 1_000, &mut s.rng).await;
    let over = claim_of(&s.center, &a.id, &a.key, &a.id, "claim-1", &[(&paid, 1_001)]);
    let right = claim_of(&s.center, &a.id, &a.key, &a.id, "claim-2", &[(&paid, 1_000)]);
    let Setup { _dir, center, .. } = s;
    let app = kessai_center::clearing_api::routes(std::sync::Arc::new(center));
    let post = |key: &'static str, body: Value| {
        let app = app.clone();
        async move {
            let req = axum::http::Request::post("/v1/claims").header("idempotency-key", key);
            crate::api::send(&app, req, body, Some("store-a")).await
        }
    };
    let (status, answer) = post("k-1", json!({ "claim": over })).await;
    assert_eq!((status.as_u16(), answer["error"]["code"].as_str()), (409, Some("claim_differs")), "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains(paid.as_str()), "{answer}");
    let (status, answer) = post("k-2", json!({ "claim": right })).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["statement"].as_str().unwrap().split('.').count() == 3, "{answer}");
    let (status, answer) = post("k-3", json!({ "claim": "not a token" })).await;
    assert_eq!((status.as_u16(), answer["error"]["code"].as_str()), (403, Some("claim_refused")), "{answer}");
    let (status, _) = post("k-4", json!({ "claims": right })).await;
    assert_eq!(status, 400);
}

/// A claim and a bank's rejection after a run, each crashed after its
/// `n`-th database operation, then sent again: they end as if nothing had
/// crashed. `false` once neither had `n` operations.
async fn crashed_claim_and_answer(n: u64) -> bool {
    use kessai_bank::pain002::{self, StatusReport, TransactionStatus};
    use kessai_center::clearing::batch_id;

    let mut s = setup().await;
    let a = shop(&s.center, "store-a", Some(ZENGIN_A), &mut s.rng).await;
    let b = shop(&s.center, "store-b", Some(ZENGIN_B), &mut s.rng).await;
    s.center.db.set_paid_on_claim(&a.id, true, NOW).await.unwrap();
    let (m, card) = funded(&mut s, 90_000).await;
    let c = &s.center;
    let (x, y) = (pay(c, &m, &card, &a, 1_000, &mut s.rng).await, pay(c, &m, &card, &a, 2_000, &mut s.rng).await);
    pay(c, &m, &card, &b, 5_000, &mut s.rng).await;
    c.clearing_run(NOW).await.unwrap();
    let paid = c.db.payouts(Some(&run_id(NOW)), None, 10).await.unwrap();
    assert_eq!(paid.len(), 1, "store-a is paid on claim only");
    let claim = claim_of(c, &a.id, &a.key, &a.id, "claim-1", &[(&x, 1_000), (&y, 2_000)]);
    let reject = pain002::write(&StatusReport {
        message_id: "RPT-1".into(),
        created_at: NOW,
        original_message_id: batch_id(&run_id(NOW), Currency::JPY),
        group_status: None,
        group_reason: None,
        transactions: vec![TransactionStatus {
            end_to_end_id: paid[0].bank_ref.clone(),
            status: "RJCT".into(),
            reason: Some("AC04".into()),
            amount: None,
        }],
    })
    .unwrap();

    c.db.faults().fail_at(n);
    let _ = c.claim_payment(&claim).await;
    let _ = c.import_payout_outcomes(reject.as_bytes()).await;
    let fired = !c.db.faults().armed();
    c.db.faults().fail_at(0);
    // Sent again, as the mall and the operator would.
    let statement = c.claim_payment(&claim).await.unwrap_or_else(|e| panic!("fault at {n}: {e}"));
    assert!(!statement.statement.is_empty());
    c.import_payout_outcomes(reject.as_bytes()).await.unwrap();
    assert_eq!(c.db.payout(&paid[0].id).await.unwrap().unwrap().status, "failed", "fault at {n}");
    assert_eq!(c.books.store_open(&b.id, Currency::JPY).await.unwrap(), 5_000, "fault at {n}");
    assert_eq!(c.db.open_payable(&b.id, Currency::JPY).await.unwrap(), 5_000, "fault at {n}");
    assert_eq!(c.books.in_transit(Currency::JPY).await.unwrap(), 0, "fault at {n}");
    // The next run pays the claim and the returned payout, once.
    s.center.clock = std::sync::Arc::new(FixedClock::new(Timestamp::from_unix_s(NOW.unix_s() + 60)));
    let report = s.center.clearing_run(Timestamp::from_unix_s(NOW.unix_s() + 60)).await.unwrap();
    assert_eq!(report.paid, vec![(Currency::JPY, 8_000)], "fault at {n}");
    s.center.books.ledger().check().await.unwrap();
    fired
}

#[tokio::test]
async fn a_crash_after_any_write_of_a_claim_or_a_banks_answer_leaves_nothing_half_done() {
    let mut n = 1;
    while crashed_claim_and_answer(n).await {
        n += 1;
        assert!(n < 200, "the flows end");
    }
    assert!(n > 4, "every write was crashed after: {n}");
}

/// A clearing run while members keep paying the store: every payment is
/// either in the run's payout or still open, never both, never neither.
async fn clearing_while_paying(mut s: Setup) {
    let a = shop(&s.center, "store-a", Some(ZENGIN_A), &mut s.rng).await;
    let (m, card) = funded(&mut s, 90_000).await;
    let c = &s.center;
    let mut rng = SeededRandom::new(11);
    for _ in 0..20 {
        pay(c, &m, &card, &a, 100, &mut rng).await;
    }
    let paying = async {
        for _ in 0..40 {
            pay(c, &m, &card, &a, 100, &mut rng).await;
        }
    };
    let (report, ()) = tokio::join!(c.clearing_run(NOW), paying);
    let report = report.unwrap();
    let paid: u64 = report.paid.iter().map(|(_, minor)| minor).sum();
    let open = c.db.open_payable(&a.id, Currency::JPY).await.unwrap();
    assert!(paid >= 2_000, "what was paid before the run is in it: {paid}");
    assert_eq!(i64::try_from(paid).unwrap() + open, 6_000, "each payment in the payout or open");
    assert_eq!(c.books.store_open(&a.id, Currency::JPY).await.unwrap(), i128::from(open));
    assert_eq!(c.books.in_transit(Currency::JPY).await.unwrap(), i128::from(paid));
    c.books.ledger().check().await.unwrap();
}

#[tokio::test]
async fn a_clearing_run_while_members_pay_takes_each_payment_once() {
    clearing_while_paying(setup().await).await;
}

#[tokio::test]
async fn a_clearing_run_while_members_pay_takes_each_payment_once_on_postgres() {
    let Some(s) = crate::service::setup_on_postgres("clearing_while_paying").await else { return };
    clearing_while_paying(s).await;
}

/// Sums read from the books alone, by what each transfer is for (its
/// code) and which account it moved: per store, what its payable was
/// credited and debited; and what the prepaid card was funded from.
#[derive(Debug, Default, PartialEq, Eq)]
struct FromBooks {
    ic_sales: (i64, i64),
    prepaid_sales: (i64, i64),
    ic_refunds: (i64, i64),
    prepaid_refunds: (i64, i64),
    fees: (i64, i64),
    payouts: (i64, i64),
}

fn counted(slot: &mut (i64, i64), amount: u64) {
    slot.0 += 1;
    slot.1 += i64::try_from(amount).unwrap();
}

/// Walks every shard of `store`'s payable through the ledger's history.
async fn store_from_books(c: &Center, store: &StoreId) -> FromBooks {
    use kessai_center::books::{self, CODE_FEE, CODE_PAYOUT, CODE_PREPAID_PAYMENT, CODE_PURCHASE, CODE_REFUND};
    use kessai_ledger::TransferFlags;
    let mut f = FromBooks::default();
    for account in books::store_payable_ids(store, Currency::JPY) {
        let mut cursor = None;
        loop {
            let page = c.books.ledger().account_history(account, cursor, 100).await.unwrap();
            for t in &page.transfers {
                let (credit, posts) = (t.credit_account_id == account, t.flags.contains(TransferFlags::POST_PENDING));
                let pending = t.flags.contains(TransferFlags::PENDING);
                match t.code {
                    CODE_PURCHASE if credit && posts => counted(&mut f.ic_sales, t.amount_minor),
                    CODE_PREPAID_PAYMENT if credit => counted(&mut f.prepaid_sales, t.amount_minor),
                    CODE_REFUND if !credit && pending => counted(&mut f.ic_refunds, t.amount_minor),
                    CODE_REFUND if !credit && !posts && !t.flags.contains(TransferFlags::VOID_PENDING) => {
                        counted(&mut f.prepaid_refunds, t.amount_minor)
                    }
                    CODE_FEE if !credit => counted(&mut f.fees, t.amount_minor),
                    CODE_PAYOUT if !credit => counted(&mut f.payouts, t.amount_minor),
                    _ => {}
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
    f
}

fn figure(f: kessai_center::statistics::Figure) -> (i64, i64) {
    (f.count, f.amount_minor)
}

#[tokio::test]
async fn the_statistics_of_a_known_day_equal_the_sums_of_the_books_and_the_pdf_prints_them() {
    statistics_of_a_known_day(scene().await).await;
}

#[tokio::test]
async fn the_statistics_of_a_known_day_equal_the_sums_of_the_books_on_postgres() {
    let Some(s) = crate::service::setup_on_postgres("statistics").await else { return };
    statistics_of_a_known_day(scene_on(s).await).await;
}

async fn statistics_of_a_known_day(sc: Scene) {
    use kessai_center::statistics::{Measure, Period, Report, money};
    let c = &sc.s.center;
    c.clearing_run(NOW).await.unwrap();
    let day = kessai_bank::Date::of(NOW).to_string();
    let report = Report::make(c, Period::parse(&day, &day, "day", "JPY").unwrap()).await.unwrap();

    // By store, each figure is what the books say the store's payable did.
    let mut stores = vec![sc.a.id.clone(), sc.b.id.clone(), sc.no_account.id.clone()];
    stores.push(StoreId::parse(samples::MEMBER).unwrap());
    let mut total = FromBooks::default();
    for store in &stores {
        let books = store_from_books(c, store).await;
        let row = report.by_store.iter().find(|r| r.label == store.as_str()).unwrap_or_else(|| panic!("{store}"));
        let ours = FromBooks {
            ic_sales: figure(row.get(Measure::IcCardSales)),
            prepaid_sales: figure(row.get(Measure::PrepaidSales)),
            ic_refunds: figure(row.get(Measure::IcCardRefunds)),
            prepaid_refunds: figure(row.get(Measure::PrepaidRefunds)),
            fees: figure(row.get(Measure::Fees)),
            payouts: figure(row.get(Measure::Payouts)),
        };
        assert_eq!(ours, books, "{store}");
        for (sum, part) in [
            (&mut total.ic_sales, books.ic_sales),
            (&mut total.prepaid_sales, books.prepaid_sales),
            (&mut total.ic_refunds, books.ic_refunds),
            (&mut total.prepaid_refunds, books.prepaid_refunds),
            (&mut total.fees, books.fees),
            (&mut total.payouts, books.payouts),
        ] {
            sum.0 += part.0;
            sum.1 += part.1;
        }
    }
    assert_eq!(report.by_store.len(), stores.len());
    // And what the test did, written out: eight prepaid payments, one IC
    // card purchase of the sample bill, a refund of each kind, the fees
    // and net payouts the clearing test computes.
    assert_eq!(total.prepaid_sales, (8, 1_000 + 2_999 + 15 + 4_000 + 5_000 + 7 + 3_000 + 11_360));
    assert_eq!((total.ic_sales, total.ic_refunds, total.prepaid_refunds), ((1, 11_360), (1, 1_000), (1, 500)));
    let fees: u64 = sc.expected.iter().map(|e| e.fees).sum();
    let net: u64 = sc.expected.iter().map(Expected::net).sum();
    assert_eq!((total.fees.1, total.payouts), (i64::try_from(fees).unwrap(), (3, i64::try_from(net).unwrap())));
    let day_row = &report.by_period[0];
    assert_eq!((report.by_period.len(), day_row.label.as_str()), (1, day.as_str()));
    for (m, expected) in [
        (Measure::IcCardSales, total.ic_sales),
        (Measure::PrepaidSales, total.prepaid_sales),
        (Measure::IcCardRefunds, total.ic_refunds),
        (Measure::PrepaidRefunds, total.prepaid_refunds),
        (Measure::Payouts, total.payouts),
    ] {
        assert_eq!(figure(day_row.get(m)), expected, "{m:?} by day");
        assert_eq!(figure(report.totals.get(m)), expected, "{m:?} in total");
    }
    // Funding: the one cash funding, as the prepaid card's account shows it.
    let prepaid = kessai_center::books::prepaid_account_id(&sc.card);
    let history = c.books.ledger().account_history(prepaid, None, 100).await.unwrap();
    let funded: Vec<u64> = history
        .transfers
        .iter()
        .filter(|t| t.code == kessai_center::books::CODE_PREPAID_FUNDING && t.credit_account_id == prepaid)
        .map(|t| t.amount_minor)
        .collect();
    assert_eq!(funded, [90_000]);
    assert_eq!(figure(report.totals.get(Measure::FundingCash)), (1, 90_000));
    assert_eq!(figure(report.totals.get(Measure::FundingCredit)), (0, 0));
    // A later change of the funding (as a credit card's capture a day
    // later) leaves it counted on the day its value was issued.
    let issued = c.db.fundings_in(kessai_center::prepaid::FundingStatus::Issued, 10).await.unwrap();
    let later = Timestamp::from_unix_s(NOW.unix_s() + 2 * 86_400);
    let moved = kessai_center::db::FundingRow {
        status: kessai_center::prepaid::FundingStatus::Captured,
        updated_at: later,
        ..issued[0].clone()
    };
    let none = kessai_center::books::Entries::none();
    let issued_status = kessai_center::prepaid::FundingStatus::Issued;
    assert!(c.db.change_funding(&moved, issued_status, none, later, None).await.unwrap());
    let again = Report::make(c, Period::parse(&day, &day, "day", "JPY").unwrap()).await.unwrap();
    assert_eq!(figure(again.totals.get(Measure::FundingCash)), (1, 90_000), "still on its issue day");
    let that_day = kessai_bank::Date::of(later).to_string();
    let then = Report::make(c, Period::parse(&that_day, &that_day, "day", "JPY").unwrap()).await.unwrap();
    assert_eq!(figure(then.totals.get(Measure::FundingCash)), (0, 0));
    // The float: each card's account as the ledger has it.
    let ic = kessai_center::books::card_float_id(&crate::world::card_id(1));
    let accounts = c.books.ledger().lookup_accounts(&[ic, prepaid]).await.unwrap();
    let posted = |a: &kessai_ledger::Account| i64::try_from(a.credits_posted_minor - a.debits_posted_minor).unwrap();
    assert_eq!((posted(&accounts[0]), posted(&accounts[1])), (50_000 - 11_360, 90_000 - 27_381 + 500));
    let float: Vec<(u64, i64)> = report.float.iter().map(|f| (f.accounts, f.posted_minor)).collect();
    assert_eq!(float, [(1, posted(&accounts[0])), (1, posted(&accounts[1]))]);

    // By month, the same totals in one row.
    let month = Report::make(c, Period::parse(&day, &day, "month", "JPY").unwrap()).await.unwrap();
    assert_eq!((month.by_period.len(), &month.totals.figures), (1, &report.totals.figures));
    // A day with nothing: empty rows, and still the float.
    let quiet = Report::make(c, Period::parse("2020-01-01", "2020-01-03", "day", "JPY").unwrap()).await.unwrap();
    assert!(quiet.by_period.iter().all(|r| r.figures.is_empty()) && quiet.by_store.is_empty());
    assert_eq!(quiet.by_period.len(), 3);
    assert_eq!(quiet.float, report.float);

    // The CSV says the same.
    let csv = report.csv();
    let line = format!("day,{day},sales_prepaid,{},{},JPY\r\n", total.prepaid_sales.0, total.prepaid_sales.1);
    assert!(csv.contains(&line), "{csv}");
    assert!(csv.contains(&format!("store,{},fees,", sc.a.id)), "{csv}");

    // The console shows it to a viewer: tables, charts, the CSV and PDF.
    let center = std::sync::Arc::new(sc.s.center);
    let c = &center;
    let app = crate::console::app(c);
    crate::console::give_login(&c.db, "viewer", kessai_center::db::Role::Viewer, "viewer-password-12").await;
    let viewer = crate::console::log_in(&app, "viewer", "viewer-password-12").await;
    let ask = |path: String| {
        let (app, viewer) = (app.clone(), viewer.clone());
        async move { crate::console::ask(&app, "GET", &path, Some("viewer"), Some(&viewer), None).await }
    };
    let query = format!("from={day}&to={day}&by=day&currency=JPY");
    let (status, _, page) = ask(format!("/console/statistics?{query}")).await;
    assert_eq!(status, axum::http::StatusCode::OK, "{page}");
    for shown in
        ["id=\"chart-sales\"", "id=\"chart-funding\"", "<rect", "id=\"by-store\"", &money(37_241, Currency::JPY)]
    {
        assert!(page.contains(shown), "{shown} in {page}");
    }
    let (status, headers, body) = ask(format!("/console/statistics.csv?{query}")).await;
    assert_eq!(
        (status, headers[axum::http::header::CONTENT_TYPE].to_str().unwrap()),
        (axum::http::StatusCode::OK, "text/csv; charset=utf-8")
    );
    assert_eq!(body, csv);
    let (status, headers, body) = ask(format!("/console/statistics.pdf?{query}")).await;
    assert_eq!(
        (status, headers[axum::http::header::CONTENT_TYPE].to_str().unwrap()),
        (axum::http::StatusCode::OK, "application/pdf")
    );
    assert!(body.starts_with("%PDF-"));
    for bad in [
        "from=2026-13-01&to=2026-12-01",
        "from=2026-12-02&to=2026-12-01",
        "from=2020-01-01&to=2026-12-01",
        "by=week&from=2026-12-01&to=2026-12-01",
    ] {
        let (status, _, page) = ask(format!("/console/statistics.pdf?{bad}")).await;
        assert_eq!(status, axum::http::StatusCode::BAD_REQUEST, "{bad}: {page}");
        assert!(page.contains("id=\"refused\""), "{page}");
    }
    // The search page: a kind, its filters, and what it refuses.
    let (status, _, page) = ask(format!("/console?kind=prepaid-payments&store={}&min=1000", sc.a.id)).await;
    assert_eq!(status, axum::http::StatusCode::OK, "{page}");
    assert!(page.contains("id=\"prepaid-payments\""), "{page}");
    assert_eq!(page.matches("<tr>").count(), 1 + 3, "a header and 1,000, 2,999, 4,000: {page}");
    for (query, why) in [
        ("kind=fundings&store=store-a", "prepaid fundings are not searched by store"),
        ("kind=payouts&min=ten", "is not an amount in minor units"),
        ("kind=differences&max=5", "audit differences have no amount"),
        ("kind=nothing", "nothing to search called"),
        ("kind=settlements&from=2026-02-30", "is not a day"),
        ("kind=settlements&after=1.x%27%20OR%201=1", "not a page of this listing"),
    ] {
        let (status, _, page) = ask(format!("/console?{query}")).await;
        assert_eq!(status, axum::http::StatusCode::OK);
        assert!(page.contains(why) && page.contains("role=\"alert\""), "{query}: {page}");
        assert!(!page.contains("<tbody>"), "{query}: no listing");
    }
    let (status, _, _) = crate::console::ask(&app, "GET", "/console/statistics.csv", Some("viewer"), None, None).await;
    assert_eq!(status, axum::http::StatusCode::SEE_OTHER, "no session, no figures");

    // The PDF renders, and its totals are these.
    let Some(pdftoppm) = kessai_testkit::tool_on_path("pdftoppm", "KESSAI_PDFTOPPM") else { return };
    let dir = tempfile::tempdir().unwrap();
    let pdf = dir.path().join("report.pdf");
    std::fs::write(&pdf, report.pdf()).unwrap();
    let out = std::process::Command::new(&pdftoppm)
        .args(["-png", "-r", "60"])
        .arg(&pdf)
        .arg(dir.path().join("page"))
        .output()
        .unwrap();
    assert!(out.status.success(), "pdftoppm: {}", String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(dir.path().join("page-1.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 2_000, "a page was drawn");
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-artifacts/statistics");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::copy(dir.path().join("page-1.png"), artifacts.join("report-page-1.png")).unwrap();
    let pdftotext = pdftoppm.with_file_name("pdftotext");
    let out = std::process::Command::new(&pdftotext).args(["-layout"]).arg(&pdf).arg("-").output().unwrap();
    assert!(out.status.success(), "pdftotext: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let line_of = |what: &str| {
        text.lines().find(|l| l.trim_start().starts_with(what)).unwrap_or_else(|| panic!("no {what:?} in {text}"))
    };
    let words = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>().join(" ");
    let jpy = Currency::JPY;
    assert!(words(line_of("Total Prepaid sales")).ends_with(&format!("8 {}", money(total.prepaid_sales.1, jpy))));
    assert!(words(line_of("Total IC card sales")).ends_with(&format!("1 {}", money(11_360, jpy))));
    assert!(words(line_of("Total Fees")).ends_with(&money(total.fees.1, jpy)));
    assert!(words(line_of("Total Payouts ")).ends_with(&format!("3 {}", money(total.payouts.1, jpy))));
    let net_sales = total.ic_sales.1 + total.prepaid_sales.1 - total.ic_refunds.1 - total.prepaid_refunds.1;
    assert!(words(line_of("Total net sales")).ends_with(&money(net_sales, jpy)));
}

fn search(kind: kessai_center::db::SearchKind) -> kessai_center::db::Search {
    kessai_center::db::Search {
        kind,
        card: String::new(),
        member: String::new(),
        store: String::new(),
        state: String::new(),
        from: None,
        to: None,
        min_minor: None,
        max_minor: None,
        currency: None,
        after: None,
        limit: 50,
    }
}

#[tokio::test]
async fn searches_find_by_every_filter_and_paging_skips_nothing_while_payments_arrive() {
    searches_of(scene().await).await;
}

#[tokio::test]
async fn searches_find_by_every_filter_and_paging_skips_nothing_on_postgres() {
    let Some(s) = crate::service::setup_on_postgres("search").await else { return };
    searches_of(scene_on(s).await).await;
}

async fn searches_of(mut sc: Scene) {
    use kessai_center::db::{Search, SearchKind};
    sc.s.center.clearing_run(NOW).await.unwrap();
    let c = &sc.s.center;
    let ids = |rows: &[kessai_center::db::Found]| rows.iter().map(|f| f.id.clone()).collect::<Vec<_>>();
    let find = |q: Search| async move { c.db.search(&q).await.unwrap() };

    // Prepaid payments: all eight; by store; by amount; by both bounds.
    let all = find(search(SearchKind::PrepaidPayments)).await;
    assert_eq!((all.rows.len(), all.next.is_none()), (8, true));
    // A page that holds the last row says there is no next; one short of
    // it, that there is, and the next page holds the one left.
    let exact = find(Search { limit: 8, ..search(SearchKind::PrepaidPayments) }).await;
    assert_eq!((exact.rows.len(), exact.next.is_none()), (8, true));
    let short = find(Search { limit: 7, ..search(SearchKind::PrepaidPayments) }).await;
    assert!(short.next.is_some());
    let rest = find(Search { limit: 7, after: short.next, ..search(SearchKind::PrepaidPayments) }).await;
    assert_eq!((rest.rows.len(), rest.next.is_none()), (1, true));
    assert!(all.rows.iter().all(|f| f.member.as_deref() == Some(sc.m.id.as_str())));
    let at_a = find(Search { store: sc.a.id.to_string(), ..search(SearchKind::PrepaidPayments) }).await;
    let mut amounts: Vec<u64> = at_a.rows.iter().map(|f| f.amount.unwrap().amount_minor()).collect();
    amounts.sort_unstable();
    assert_eq!(amounts, [15, 1_000, 2_999, 4_000]);
    let refunded = at_a.rows.iter().filter(|f| f.state == "refunded").count();
    assert_eq!(refunded, 1, "the 4,000 payment was refunded in part");
    let big = Search { min_minor: Some(3_000), max_minor: Some(5_000), ..search(SearchKind::PrepaidPayments) };
    let mut amounts: Vec<u64> = find(big.clone()).await.rows.iter().map(|f| f.amount.unwrap().amount_minor()).collect();
    amounts.sort_unstable();
    assert_eq!(amounts, [3_000, 4_000, 5_000]);
    // Those bounds in dollars: no yen payment is within them.
    let in_dollars = Search { currency: Some(Currency::parse("USD").unwrap()), ..big };
    assert!(find(in_dollars).await.rows.is_empty());
    // A member who paid nothing, a day with nothing: nothing.
    let other = Search { member: "mem-nobody".into(), ..search(SearchKind::PrepaidPayments) };
    assert!(find(other).await.rows.is_empty());
    let day = kessai_bank::Date::of(NOW).unix_day();
    let before = Search { to: Some(day * 86_400), ..search(SearchKind::PrepaidPayments) };
    assert!(find(before).await.rows.is_empty());
    let that_day =
        Search { from: Some(day * 86_400), to: Some((day + 1) * 86_400), ..search(SearchKind::PrepaidPayments) };
    assert_eq!(find(that_day).await.rows.len(), 8);

    // Settlements (the one IC card purchase), by card and state.
    let card = crate::world::card_id(1).to_string();
    let bought =
        find(Search { card: card.clone(), state: "completed".into(), ..search(SearchKind::Settlements) }).await;
    assert_eq!(bought.rows.len(), 1);
    assert_eq!(bought.rows[0].amount.unwrap().amount_minor(), 11_360);
    assert!(
        find(Search { card: card.clone(), state: "voided".into(), ..search(SearchKind::Settlements) })
            .await
            .rows
            .is_empty()
    );
    // Refunds of each kind, fundings, payouts.
    let refunds = find(Search { card, ..search(SearchKind::Refunds) }).await;
    assert_eq!(refunds.rows.iter().map(|f| f.amount.unwrap().amount_minor()).collect::<Vec<_>>(), [1_000]);
    let prepaid_refunds = find(Search { store: sc.a.id.to_string(), ..search(SearchKind::PrepaidRefunds) }).await;
    assert_eq!(prepaid_refunds.rows.iter().map(|f| f.amount.unwrap().amount_minor()).collect::<Vec<_>>(), [500]);
    let fundings = find(Search { state: "issued".into(), ..search(SearchKind::Fundings) }).await;
    assert_eq!((fundings.rows.len(), fundings.rows[0].what.as_str()), (1, "cash"));
    let payouts = find(Search { state: "in_transit".into(), ..search(SearchKind::Payouts) }).await;
    let net: u64 = payouts.rows.iter().map(|f| f.amount.unwrap().amount_minor()).sum();
    assert_eq!(net, sc.expected.iter().map(Expected::net).sum::<u64>());
    let at_b = find(Search { store: sc.b.id.to_string(), ..search(SearchKind::Payouts) }).await;
    assert_eq!(at_b.rows.len(), 1);
    assert!(find(search(SearchKind::Differences)).await.rows.is_empty());

    // Paging three at a time while payments arrive between pages: every
    // payment there at the start is listed exactly once.
    let first = ids(&all.rows);
    let mut seen: Vec<String> = Vec::new();
    let mut after = None;
    let mut rng = SeededRandom::new(77);
    loop {
        let page = find(Search { limit: 3, after, ..search(SearchKind::PrepaidPayments) }).await;
        seen.extend(ids(&page.rows));
        pay(c, &sc.m, &sc.card, &sc.b, 11, &mut rng).await;
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    for id in &first {
        assert_eq!(seen.iter().filter(|s| *s == id).count(), 1, "{id} listed once: {seen:?}");
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "nothing twice: {seen:?}");
    // Filtered by amount, a page may read more rows than it shows, and
    // goes on from the last row it read.
    let small = Search { max_minor: Some(11), limit: 2, ..search(SearchKind::PrepaidPayments) };
    let page = find(small.clone()).await;
    assert!(page.rows.iter().all(|f| f.amount.unwrap().amount_minor() <= 11));
    assert_eq!(page.rows.len(), 2);
    let rest = find(Search { after: page.next.clone(), ..small }).await;
    assert!(ids(&rest.rows).iter().all(|id| !ids(&page.rows).contains(id)));
    sc.s.rng = rng;
}

/// The failed-payouts queue: a payout the bank rejected is listed, a
/// viewer may not correct the store's account, an approver may (a
/// malformed account and a stale page refused), the change is trailed, and
/// the next run pays what came back to the corrected account.
#[tokio::test]
async fn a_failed_payout_is_queued_and_the_next_run_pays_the_account_an_approver_corrected() {
    use axum::http::StatusCode;
    use kessai_bank::pain002::{self, StatusReport, TransactionStatus};
    let mut sc = scene().await;
    sc.s.center.clearing_run(NOW).await.unwrap();
    let run = run_id(NOW);
    let payouts = sc.s.center.db.payouts(Some(&run), None, 100).await.unwrap();
    let b = payout_of(&payouts, &sc.b.id).clone();
    let report = pain002::write(&StatusReport {
        message_id: "RPT-Q".into(),
        created_at: NOW,
        original_message_id: kessai_center::clearing::batch_id(&run, Currency::JPY),
        group_status: None,
        group_reason: None,
        transactions: vec![TransactionStatus {
            end_to_end_id: b.bank_ref.clone(),
            status: "RJCT".into(),
            reason: Some("AC04".into()),
            amount: Some(jpy(b.amount_minor)),
        }],
    })
    .unwrap();
    assert_eq!(sc.s.center.import_payout_outcomes(report.as_bytes()).await.unwrap().failed, 1);
    let next = Timestamp::from_unix_s(NOW.unix_s() + 60);
    sc.s.center.clock = std::sync::Arc::new(FixedClock::new(next));
    let center = std::sync::Arc::new(sc.s.center);
    let app = crate::console::app(&center);
    let (give, log_in, ask) = (crate::console::give_login, crate::console::log_in, crate::console::ask);
    give(&center.db, "admin", kessai_center::db::Role::Approver, "approver-password-1").await;
    give(&center.db, "viewer", kessai_center::db::Role::Viewer, "viewer-password-12").await;
    let approver = log_in(&app, "admin", "approver-password-1").await;
    let viewer = log_in(&app, "viewer", "viewer-password-12").await;

    let (status, _, page) = ask(&app, "GET", "/console/payouts", Some("viewer"), Some(&viewer), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(&b.id) && page.contains("AC04") && page.contains("it would fail again"), "{page}");
    let path = format!("/console/payouts/{}/account", sc.b.id);
    let token = crate::console::form_token(&page);
    let fixed = "zengin:0005-123-1-7654322:ｶ)ｻｸﾗﾌﾞﾂｻﾝ";
    let form = |was: &str, account: &str| {
        let enc = |t: &str| t.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
        format!("form_token={token}&was={}&account={}&reason=the+store+sent+its+new+account", enc(was), enc(account))
    };
    let (status, _, _) =
        ask(&app, "POST", &path, Some("viewer"), Some(&viewer), Some(&form(&b.payee_account, fixed))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a viewer changes nothing");
    let (_, _, page) = ask(&app, "GET", "/console/payouts", Some("admin"), Some(&approver), None).await;
    let token = crate::console::form_token(&page);
    let form = |was: &str, account: &str| {
        let enc = |t: &str| t.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
        format!("form_token={token}&was={}&account={}&reason=the+store+sent+its+new+account", enc(was), enc(account))
    };
    for (was, account, expected) in [
        (b.payee_account.as_str(), "zengin:0005-123", StatusCode::BAD_REQUEST),
        (b.payee_account.as_str(), b.payee_account.as_str(), StatusCode::BAD_REQUEST),
        ("zengin:0009-999-1-0000001:ﾍﾞﾂ", fixed, StatusCode::CONFLICT),
    ] {
        let (status, _, page) =
            ask(&app, "POST", &path, Some("admin"), Some(&approver), Some(&form(was, account))).await;
        assert_eq!(status, expected, "{account}: {page}");
    }
    // The right form and session, posted from another origin: refused.
    let good = form(&b.payee_account, fixed);
    let foreign = crate::console::post_from(&app, "https://rebound.example:8440", &path, "admin", &approver, &good);
    assert_eq!(foreign.await, StatusCode::FORBIDDEN, "another origin");
    assert_eq!(
        center.db.store(&sc.b.id).await.unwrap().unwrap().bank_account.as_deref(),
        Some(b.payee_account.as_str())
    );
    let (status, _, page) =
        ask(&app, "POST", &path, Some("admin"), Some(&approver), Some(&form(&b.payee_account, fixed))).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let now = center.db.store(&sc.b.id).await.unwrap().unwrap().bank_account.unwrap();
    assert_ne!(now, b.payee_account);
    let trail = center.db.trail(Some(sc.b.id.as_str()), None, 10).await.unwrap();
    assert_eq!(trail.iter().map(|t| t.entry.action.as_str()).collect::<Vec<_>>(), ["store_bank_account"]);
    assert!(trail[0].entry.before.contains(&b.payee_account) && trail[0].entry.after.contains(&now));
    let (_, _, page) = ask(&app, "GET", "/console/payouts", Some("viewer"), Some(&viewer), None).await;
    assert!(!page.contains("it would fail again"), "{page}");

    // The next run pays B what came back, to the corrected account.
    center.clearing_run(next).await.unwrap();
    let repaid = center.db.payouts(Some(&run_id(next)), None, 10).await.unwrap();
    let again = payout_of(&repaid, &sc.b.id);
    assert_eq!((again.amount_minor, again.payee_account.as_str()), (b.amount_minor, now.as_str()));
    center.books.ledger().check().await.unwrap();
}

/// A crash after any write of an account correction leaves the old account
/// and no trail row, or the new account and its row.
#[tokio::test]
async fn a_crash_at_any_write_of_an_account_correction_leaves_both_or_neither() {
    let (mut finished, mut crashed) = (false, 0);
    for n in 1..=12 {
        let mut s = setup().await;
        let shop = shop(&s.center, "store-x", Some(ZENGIN_A), &mut s.rng).await;
        let c = &s.center;
        let was = c.db.store(&shop.id).await.unwrap().unwrap().bank_account.unwrap();
        c.db.faults().fail_at(n);
        let first = c.correct_bank_account(&shop.id, Some(&was), ZENGIN_B, "closed", crate::tester()).await;
        let fired = !c.db.faults().armed();
        c.db.faults().fail_at(0);
        let account = || async { c.db.store(&shop.id).await.unwrap().unwrap().bank_account.unwrap() };
        if fired {
            crashed += 1;
            assert!(first.is_err(), "a fault at write {n} fails the correction");
            assert_eq!(account().await, was, "after a fault at {n}");
            assert!(c.db.trail(Some(shop.id.as_str()), None, 10).await.unwrap().is_empty());
            c.correct_bank_account(&shop.id, Some(&was), ZENGIN_B, "closed", crate::tester()).await.unwrap();
        } else {
            first.unwrap();
        }
        assert_ne!(account().await, was);
        assert_eq!(c.db.trail(Some(shop.id.as_str()), None, 10).await.unwrap().len(), 1, "fault at {n}");
        // Asked again with what the page showed before: refused, as stale.
        let stale = c.correct_bank_account(&shop.id, Some(&was), ZENGIN_BOOKS, "again", crate::tester()).await;
        assert!(matches!(stale, Err(ClearingError::AccountChanged(_))), "{stale:?}");
        if !fired {
            finished = true;
            break;
        }
    }
    assert!(finished && crashed > 0, "every write of it was crashed at ({crashed}), and then it completed");
}
