//! A crash after every database operation of every step: a fault injected
//! after the n-th operation of the center's writes, for every n until a run
//! meets none. Each fault is a crash at that point (the step's transaction
//! never commits); the center restarts and the wallet, the store or the
//! operator retries what failed, with the same request. Afterwards the
//! books hold nothing pending, every balance follows the card, the store's
//! payable is its purchases less its refunds, the ledger checks, and the
//! card pays again.

use kessai_card::terminal::Terminal;
use kessai_center::authorizer::{AuthorizationState, PaymentCard};
use kessai_center::owed::Applying;
use kessai_center::purchase::Phase;
use kessai_center::update::{ChargeRequest, DecreaseRequest, UpdateReply};
use kessai_center::value::UpdatePhase;
use kessai_core::Currency;
use kessai_core::ids::{SettlementId, UpdateId};
use kessai_core::messages::bill;
use kessai_core::random::OsRandom;
use kessai_core::samples;

use crate::charge::{APPROVE, Charging, jpy, relay};
use crate::refund::{member, refund_token, relay_step, stores};
use crate::world::{CardReader, NOW, balance_of, card_id, funded_card};

/// Runs `$call`; if it failed at the injected fault, restarts the center and
/// runs the same call again, which must succeed.
macro_rules! survive {
    ($c:ident, $call:expr) => {{
        match $call.await {
            Ok(done) => done,
            Err(e) => {
                assert!(format!("{e:?}").contains("injected fault"), "only the injected fault fails: {e:?}");
                $c.restart().await;
                $call.await.unwrap()
            }
        }
    }};
}

/// A value update from its INITIALIZE UPDATE to completed, each step
/// surviving the fault; a charge is paid by card number `paid_by`.
async fn run_update(c: &mut Charging, card: &mut Terminal<CardReader>, r: UpdateReply, paid_by: Option<&str>) {
    let id = r.charge_id.clone();
    let answers = relay(card, &r);
    let payment = || paid_by.map(|number| PaymentCard::parse(number, "12/30", "123").unwrap());
    let r = survive!(c, c.center.update_authenticate(c.sim.as_ref(), &id, answers.clone(), payment(), None));
    let answers = relay(card, &r);
    let r = survive!(c, c.center.update_offer(c.sim.as_ref(), &id, answers.clone(), None));
    let answers = relay(card, &r);
    let r = survive!(c, c.center.update_complete(c.sim.as_ref(), &id, answers.clone(), None));
    assert_eq!(r.phase, UpdatePhase::Completed);
    Terminal::select(card).unwrap();
}

/// One run with a fault after operation `n`; whether the fault fired.
async fn run(mut c: Charging, n: u64) -> bool {
    let key = stores(&c).await;
    c.register(1, 20_000).await;
    let mut card = funded_card(1, 20_000);
    c.center.db.faults().fail_at(n);

    // 1. A charge of JPY 5,000 paid by credit card.
    let charge_id = UpdateId::generate(&mut OsRandom);
    let request = || ChargeRequest { id: charge_id.clone(), card_id: card_id(1), amount: jpy(5_000) };
    let r = survive!(c, c.center.create_charge(request()));
    let id = r.charge_id.clone();
    run_update(&mut c, &mut card, r, Some(APPROVE)).await;

    // 2. A purchase of the sample bill (JPY 11,360).
    let (claims, b) = samples::bill(&mut OsRandom, NOW).unwrap();
    let token = bill::sign(&claims.clone().with_audience(crate::center_party()), &b, &key).unwrap();
    let opened = crate::world::opening(&mut card, &token, card_id(1));
    let r = survive!(c, c.center.create(crate::world::offer_create(&token, card_id(1), opened.clone()), None));
    let sid = r.settlement_id.clone();
    let answers = relay_step(&mut card, &r);
    let r = survive!(c, c.center.offer(&sid, answers.clone(), Default::default()));
    let answers = relay_step(&mut card, &r);
    let r = survive!(c, c.center.complete(&sid, answers.clone(), Default::default()));
    assert_eq!(r.phase, Phase::Completed);
    Terminal::select(&mut card).unwrap();

    // 3. The store refunds JPY 2,000; the card is presented and credited.
    let settlement = SettlementId::parse(&sid).unwrap();
    let refund = refund_token(&key, &settlement, "rf_fault_1", 2_000);
    survive!(c, c.center.request_refund(&refund));
    let update = UpdateId::generate(&mut OsRandom);
    let r = match survive!(c, c.center.apply_owed(card_id(1), update.clone())) {
        Applying::Update(r) => *r,
        Applying::Nothing => panic!("the refund is owed"),
    };
    run_update(&mut c, &mut card, r, None).await;

    // 4. JPY 1,000 back to the credit card that paid the charge.
    let decrease_id = UpdateId::generate(&mut OsRandom);
    let request = || DecreaseRequest {
        id: decrease_id.clone(),
        card_id: card_id(1),
        charge_id: UpdateId::parse(&id).unwrap(),
        amount: jpy(1_000),
    };
    let r = survive!(c, c.center.create_decrease(request()));
    run_update(&mut c, &mut card, r, None).await;

    let fired = !c.center.db.faults().armed();
    c.center.db.faults().fail_at(0);
    // The books: nothing pending, the card's float is its balance, the
    // store's payable its purchase less its refund, the authorizer owed the
    // charge less the decrease.
    let expected = 20_000 + 5_000 - 11_360 + 2_000 - 1_000;
    assert_eq!(balance_of(&mut card), expected, "fault at {n}");
    c.check_books(1, &mut card).await;
    let books = &c.center.books;
    assert_eq!(books.store_payable(&member(), Currency::JPY).await.unwrap(), 11_360 - 2_000, "fault at {n}");
    assert_eq!(books.credit_funding(Currency::JPY).await.unwrap(), 5_000 - 1_000, "fault at {n}");
    assert_eq!(
        c.auth_state(c.center.value_update(&id).await.unwrap().authorization.unwrap().as_str()).await,
        AuthorizationState::Captured
    );
    // The card pays again.
    let (claims, b) = samples::bill(&mut OsRandom, NOW).unwrap();
    let token = bill::sign(&claims.clone().with_audience(crate::center_party()), &b, &key).unwrap();
    let r = c.center.create(crate::world::offer_request(&mut card, &token, card_id(1)), None).await.unwrap();
    let sid = r.settlement_id.clone();
    let r = c.center.offer(&sid, relay_step(&mut card, &r), Default::default()).await.unwrap();
    let r = c.center.complete(&sid, relay_step(&mut card, &r), Default::default()).await.unwrap();
    assert_eq!(r.phase, Phase::Completed);
    assert_eq!(balance_of(&mut card), expected - 11_360);
    c.check_books(1, &mut card).await;
    fired
}

#[tokio::test]
async fn a_crash_after_any_database_operation_of_any_step_loses_and_creates_nothing_on_sqlite() {
    let mut n = 1;
    while run(Charging::new().await, n).await {
        n += 1;
        assert!(n < 1_000, "the flows end");
    }
    assert!(n > 40, "every step's operations were crashed after: {n}");
}

#[tokio::test]
async fn a_crash_after_any_database_operation_of_any_step_loses_and_creates_nothing_on_postgres() {
    let mut n = 1;
    loop {
        let Some(c) = Charging::on_postgres("faults").await else { return };
        if !run(c, n).await {
            break;
        }
        n += 1;
        assert!(n < 1_000, "the flows end");
    }
    // Fewer than on SQLite: a step's compare-and-set there is preceded by a
    // version check (group commit), here it takes the row lock itself.
    assert!(n > 30, "every step's operations were crashed after: {n}");
}

/// A purchase in the second embodiment (`confirmed`) under the same
/// crashes: its create, which holds the amount with the new settlement in
/// one transaction, and its complete.
async fn second_embodiment_run(mut c: Charging, n: u64) -> bool {
    use kessai_core::profile::Profile;
    let key = stores(&c).await;
    c.register(1, 20_000).await;
    let mut card = funded_card(1, 20_000);
    c.center.db.faults().fail_at(n);
    let (claims, b) = samples::bill(&mut OsRandom, NOW).unwrap();
    let token = bill::sign(&claims.clone().with_audience(crate::center_party()), &b, &key).unwrap();
    let r = survive!(c, c.center.create(crate::profiles::create_in(&mut card, &token, 1, Profile::Confirmed), None));
    assert_eq!(r.phase, Phase::Offered);
    let sid = r.settlement_id.clone();
    let answers = relay_step(&mut card, &r);
    let r = survive!(c, c.center.complete(&sid, answers.clone(), Default::default()));
    assert_eq!(r.phase, Phase::Completed);
    let fired = !c.center.db.faults().armed();
    c.center.db.faults().fail_at(0);
    assert_eq!(balance_of(&mut card), 20_000 - 11_360, "fault at {n}");
    c.check_books(1, &mut card).await;
    assert_eq!(c.center.books.store_payable(&member(), Currency::JPY).await.unwrap(), 11_360, "fault at {n}");
    fired
}

#[tokio::test]
async fn a_crash_after_any_database_operation_of_a_second_embodiment_purchase_loses_and_creates_nothing() {
    let mut n = 1;
    while second_embodiment_run(Charging::new().await, n).await {
        n += 1;
        assert!(n < 1_000, "the flow ends");
    }
    assert!(n > 5, "every write was crashed after: {n}");
    let mut n = 1;
    loop {
        let Some(c) = Charging::on_postgres("faults_second").await else { return };
        if !second_embodiment_run(c, n).await {
            break;
        }
        n += 1;
        assert!(n < 1_000, "the flow ends");
    }
    assert!(n > 5, "every write was crashed after on PostgreSQL: {n}");
}

/// Virtual prepaid cards (#18) under the same crashes: a card opened by a
/// bank transfer the statement pays, cash recorded, a credit funding, a
/// payment to a store and its refund, each write crashed after in turn.
async fn prepaid_run(mut c: Charging, n: u64) -> bool {
    use kessai_center::prepaid::StatementSource;
    use kessai_core::ids::PrepaidId;
    use kessai_core::messages::prepaid::{FundingMethod, PrepaidAction};
    use kessai_core::random::SeededRandom;

    use crate::prepaid::{bill_of, camt, conserved_in, funding, instruction_for, request, value_of};

    let key = stores(&c).await;
    let mut rng = SeededRandom::new(n);
    let m = crate::prepaid::member(&c.center, &mut rng).await;
    c.center.db.faults().fail_at(n);

    let open =
        request(&c.center, &m, "r-1", PrepaidAction::Open, None, Some(30_000), Some(FundingMethod::BankTransfer));
    let f = funding(survive!(c, c.center.prepaid_request(&open, None, c.sim.as_ref())));
    let card = PrepaidId::parse(&f.prepaid_id).unwrap();
    let statement = camt("STMT-F", &[(30_000, f.reference.as_deref(), "F-1"), (400, None, "F-2")]);
    survive!(c, c.center.import_statement(&statement, StatementSource::Bank));

    let cash = request(&c.center, &m, "r-2", PrepaidAction::Fund, Some(&card), Some(5_000), Some(FundingMethod::Cash));
    let f = funding(survive!(c, c.center.prepaid_request(&cash, None, c.sim.as_ref())));
    survive!(c, c.center.record_cash(&f.funding_id, jpy(5_000), &crate::operator("admin")));

    let credit =
        request(&c.center, &m, "r-3", PrepaidAction::Fund, Some(&card), Some(2_000), Some(FundingMethod::Credit));
    let approved = || PaymentCard::parse(APPROVE, "12/30", "123").unwrap();
    survive!(c, c.center.prepaid_request(&credit, Some(&approved()), c.sim.as_ref()));

    let bill = bill_of(&c.center, &key, &mut rng);
    let instruction = instruction_for(&c.center, &m, &bill, &card, jpy(11_360), &m.key);
    let paid = survive!(c, c.center.pay_from_prepaid(&bill, &instruction, None));
    let settlement = SettlementId::parse(&paid.settlement_id).unwrap();
    let refund = refund_token(&key, &settlement, "rf_prepaid_1", 1_000);
    survive!(c, c.center.request_refund(&refund));

    let fired = !c.center.db.faults().armed();
    c.center.db.faults().fail_at(0);
    assert_eq!(value_of(&c.center, &card).await, 30_000 + 5_000 + 2_000 - 11_360 + 1_000, "fault at {n}");
    assert_eq!(c.center.books.suspense(Currency::JPY).await.unwrap(), 400, "fault at {n}");
    assert_eq!(c.center.books.store_payable(&member(), Currency::JPY).await.unwrap(), 11_360 - 1_000, "fault at {n}");
    // One authorization for the one credit funding, captured.
    let auths = c.sim.authorizations().await.unwrap();
    assert_eq!(auths.len(), 1, "fault at {n}: {auths:?}");
    assert_eq!(auths[0].state, AuthorizationState::Captured, "fault at {n}");
    conserved_in(&c.center, &[&card]).await;
    // The card pays again.
    let bill = bill_of(&c.center, &key, &mut rng);
    let instruction = instruction_for(&c.center, &m, &bill, &card, jpy(11_360), &m.key);
    c.center.pay_from_prepaid(&bill, &instruction, None).await.unwrap();
    fired
}

#[tokio::test]
async fn a_crash_after_any_database_operation_of_prepaid_cards_loses_and_creates_nothing() {
    let mut n = 1;
    while prepaid_run(Charging::new().await, n).await {
        n += 1;
        assert!(n < 1_000, "the flows end");
    }
    assert!(n > 15, "every write was crashed after: {n}");
}
