//! Value decrease and purchase refunds (issue #8), over real storage and a
//! real emulated card: a decrease back to the credit card of a charge, a
//! store's signed refund of a purchase (credited at the card's next
//! presentation), and an operator's correction. After each scenario the
//! books follow the card and the ledger's invariants hold.

use kessai_card::terminal::Terminal;
use kessai_center::authorizer::{AuthorizationState, Authorizer};
use kessai_center::books::{CODE_REFUND, Entries};
use kessai_center::owed::{Applying, OwedStatus};
use kessai_center::purchase::Phase;
use kessai_center::service::{StepReply, parse_answers};
use kessai_center::update::{DecreaseRequest, UpdateError, UpdateReply};
use kessai_center::value::{Purpose, UpdatePhase};
use kessai_core::Currency;
use kessai_core::ids::{MessageId, PartyId, RefundId, SettlementId, StoreId, UpdateId};
use kessai_core::jws::{Claims, JwsError};
use kessai_core::keys::SigningKey;
use kessai_core::messages::refund::{self, RefundRequest, RefundRequestDraft};
use kessai_core::messages::value_update::Direction;
use kessai_core::messages::value_update_check::{ExpectedUpdate, verify_value_update};
use kessai_core::messages::{DisplayText, bill};
use kessai_core::random::{OsRandom, SeededRandom};
use kessai_core::samples;
use kessai_core::time::FixedClock;
use kessai_scp03::CommandApdu;

use crate::charge::{Charging, commands, jpy, recover, relay, to_offer};
use crate::world::{CardReader, NOW, balance_of, card_id, funded_card};

/// The sample bill's total.
const PURCHASE: u64 = 11_360;

pub(crate) fn member() -> StoreId {
    StoreId::parse(samples::MEMBER).unwrap()
}

/// Registers the mall and its member store; returns the mall's key.
pub(crate) async fn stores(c: &Charging) -> SigningKey {
    let key = SigningKey::generate(&mut SeededRandom::new(91));
    crate::world::register_mall(&c.center.db, &key).await;
    key
}

pub(crate) fn relay_step(card: &mut Terminal<CardReader>, reply: &StepReply) -> Vec<kessai_scp03::ResponseApdu> {
    let hex: Vec<String> = reply
        .apdus
        .iter()
        .map(|h| {
            let cmd = CommandApdu::parse(&hex::decode(h).unwrap()).unwrap();
            hex::encode(crate::world::relay(card, &cmd).to_bytes())
        })
        .collect();
    parse_answers(&hex).unwrap()
}

/// A completed purchase of the sample bill (JPY 11,360) with card `n`.
async fn purchase(c: &Charging, key: &SigningKey, card: &mut Terminal<CardReader>, n: u8) -> SettlementId {
    let (claims, b) = samples::bill(&mut OsRandom, NOW).unwrap();
    let token = bill::sign(&claims.clone().with_audience(crate::center_party()), &b, key).unwrap();
    let r = c.center.create(crate::world::offer_request(card, &token, card_id(n)), Default::default()).await.unwrap();
    let id = r.settlement_id.clone();
    let r = c.center.offer(&id, relay_step(card, &r), Default::default()).await.unwrap();
    let r = c.center.complete(&id, relay_step(card, &r), Default::default()).await.unwrap();
    assert_eq!(r.phase, Phase::Completed);
    Terminal::select(card).unwrap();
    SettlementId::parse(&id).unwrap()
}

pub(crate) fn refund_token(key: &SigningKey, settlement: &SettlementId, refund_id: &str, amount: u64) -> String {
    let mall = PartyId::parse(samples::MALL).unwrap();
    let claims = Claims::for_lifetime(mall, MessageId::generate(&mut OsRandom), NOW, 600).unwrap();
    let r = RefundRequest::new(RefundRequestDraft {
        refund_id: RefundId::parse(refund_id).unwrap(),
        settlement_id: settlement.clone(),
        store: StoreId::parse(samples::MALL).unwrap(),
        amount: jpy(amount),
        reason: DisplayText::parse("returned: damaged file").unwrap(),
    })
    .unwrap();
    refund::sign(&claims.clone().with_audience(crate::center_party()), &r, key).unwrap()
}

/// Runs a value update from its INITIALIZE UPDATE to its end (completed,
/// or voided at the balance step).
async fn run_update(c: &Charging, card: &mut Terminal<CardReader>, r: UpdateReply) -> UpdateReply {
    let sim = c.sim.as_ref();
    let id = r.charge_id.clone();
    let r = c.center.update_authenticate(sim, &id, relay(card, &r), None, None).await.unwrap();
    let r = c.center.update_offer(sim, &id, relay(card, &r), Default::default()).await.unwrap();
    if r.phase == UpdatePhase::Voided {
        Terminal::select(card).unwrap();
        return r;
    }
    let done = c.center.update_complete(sim, &id, relay(card, &r), Default::default()).await.unwrap();
    Terminal::select(card).unwrap();
    done
}

/// The card is presented: applies everything owed, in order.
async fn present(c: &Charging, card: &mut Terminal<CardReader>, n: u8) -> Vec<UpdateReply> {
    let mut done = Vec::new();
    for _ in 0..10 {
        match c.center.apply_owed(card_id(n), UpdateId::generate(&mut OsRandom)).await.unwrap() {
            Applying::Nothing => return done,
            Applying::Update(r) => done.push(run_update(c, card, *r).await),
        }
    }
    panic!("an owed item is applied again and again");
}

async fn payable(c: &Charging) -> u64 {
    c.center.books.store_payable(&member(), Currency::JPY).await.unwrap()
}

#[tokio::test]
async fn a_partial_refund_reverses_the_payable_and_credits_the_card_at_its_next_presentation() {
    let c = Charging::new().await;
    let key = stores(&c).await;
    c.register(1, 50_000).await;
    let mut card = funded_card(1, 50_000);
    let settlement = purchase(&c, &key, &mut card, 1).await;
    assert_eq!((balance_of(&mut card), payable(&c).await), (50_000 - PURCHASE, PURCHASE));

    // step 1: the store asks, signed, for JPY 5,000 back.
    let reply = c.center.request_refund(&refund_token(&key, &settlement, "rf-1", 5_000)).await.unwrap();
    assert_eq!(
        (reply.status, reply.direction, reply.refunded_minor),
        (OwedStatus::Owed, Direction::Credit, Some(5_000))
    );
    // step 2: the payable is reversed at once (held), the card's credit pending.
    assert_eq!(c.center.books.card_credits_pending(&card_id(1)).await.unwrap(), 5_000);
    assert_eq!(balance_of(&mut card), 50_000 - PURCHASE, "nothing reaches the card before it is presented");
    // step 3: the card is presented; the center opens a value update for the refund.
    let r = match c.center.apply_owed(card_id(1), UpdateId::generate(&mut OsRandom)).await.unwrap() {
        Applying::Update(r) => *r,
        Applying::Nothing => panic!("the refund is owed"),
    };
    assert_eq!((r.direction, &r.purpose), (Direction::Credit, &Purpose::Owed { owed_id: reply.owed_id.clone() }));
    assert_eq!(r.amount, jpy(5_000));
    // step 4: SIG5 announces the CREDIT; the wallet checks it like a charge's.
    let sim = c.sim.as_ref();
    let id = r.charge_id.clone();
    let r = c.center.update_authenticate(sim, &id, relay(&mut card, &r), None, None).await.unwrap();
    let r = c.center.update_offer(sim, &id, relay(&mut card, &r), Default::default()).await.unwrap();
    let credit = commands(&r).pop().unwrap().to_bytes();
    let expected = ExpectedUpdate {
        update_id: &id,
        card_id: card_id(1),
        direction: Direction::Credit,
        amount: jpy(5_000),
        command: &credit,
    };
    let token = r.value_update.clone().unwrap();
    let v = verify_value_update(&token, &c.center_keys(), &FixedClock::new(NOW), expected, &mut |_| false).unwrap();
    assert_eq!(v.message().funding_ref().as_str(), reply.owed_id);
    // step 5: the card credits; the center posts the refund.
    let done = c.center.update_complete(sim, &id, relay(&mut card, &r), Default::default()).await.unwrap();
    assert_eq!(done.phase, UpdatePhase::Completed);
    assert_eq!(balance_of(&mut card), 50_000 - PURCHASE + 5_000);
    assert_eq!(payable(&c).await, PURCHASE - 5_000, "the store's payable is reversed by the refund");
    let owed = c.center.db.owed(&reply.owed_id).await.unwrap().unwrap();
    assert_eq!((owed.status, owed.applied_by.map(|u| u.to_string())), (OwedStatus::Applied, Some(id)));
    // Presented again: nothing more is owed.
    Terminal::select(&mut card).unwrap();
    assert!(present(&c, &mut card, 1).await.is_empty());
    c.check_books(1, &mut card).await;
}

#[tokio::test]
async fn refunds_never_sum_past_the_purchase() {
    let c = Charging::new().await;
    let key = stores(&c).await;
    c.register(2, 50_000).await;
    let mut card = funded_card(2, 50_000);
    let settlement = purchase(&c, &key, &mut card, 2).await;

    // A refund larger than the purchase is refused, and moves nothing.
    let err = c.center.request_refund(&refund_token(&key, &settlement, "rf-big", PURCHASE + 1)).await.unwrap_err();
    assert!(matches!(err, UpdateError::OverRefund { refunded_minor: 0, .. }), "{err:?}");
    assert_eq!(c.center.books.card_credits_pending(&card_id(2)).await.unwrap(), 0);

    // Four refunds of 3,000 at once against 11,360: exactly three fit.
    let tokens: Vec<String> = (0..4).map(|i| refund_token(&key, &settlement, &format!("rf-{i}"), 3_000)).collect();
    let center = &c.center;
    let (a, b, d, e) = tokio::join!(
        center.request_refund(&tokens[0]),
        center.request_refund(&tokens[1]),
        center.request_refund(&tokens[2]),
        center.request_refund(&tokens[3]),
    );
    let results = [a, b, d, e];
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(accepted, 3, "{results:?}");
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| matches!(e, UpdateError::OverRefund { .. })));
    assert_eq!(c.center.db.settlement_refunded(&settlement).await.unwrap(), 9_000);

    // The same refund again (a retry, a replayed token): the same refund, nothing more.
    let first = results.iter().find_map(|r| r.as_ref().ok()).unwrap().clone();
    let again = c.center.request_refund(&tokens[results.iter().position(Result::is_ok).unwrap()]).await.unwrap();
    assert_eq!(again.owed_id, first.owed_id);
    assert_eq!(c.center.db.settlement_refunded(&settlement).await.unwrap(), 9_000);
    // The same refund id with another amount is refused.
    let taken = results.iter().position(Result::is_ok).unwrap();
    let reused = refund_token(&key, &settlement, &format!("rf-{taken}"), 1_000);
    assert!(matches!(c.center.request_refund(&reused).await, Err(UpdateError::RefundIdInUse(_))));
    // What is left (2,360) can still be refunded; one yen more cannot.
    c.center.request_refund(&refund_token(&key, &settlement, "rf-rest", PURCHASE - 9_000)).await.unwrap();
    let err = c.center.request_refund(&refund_token(&key, &settlement, "rf-more", 1)).await.unwrap_err();
    assert!(matches!(err, UpdateError::OverRefund { refunded_minor: PURCHASE, .. }), "{err:?}");

    // Presented: every refund reaches the card once; the payable is reversed in full.
    let applied = present(&c, &mut card, 2).await;
    assert_eq!(applied.len(), 4);
    assert!(applied.iter().all(|r| r.phase == UpdatePhase::Completed));
    assert_eq!(balance_of(&mut card), 50_000);
    assert_eq!(payable(&c).await, 0);
    c.check_books(2, &mut card).await;
}

#[tokio::test]
async fn refund_requests_not_from_the_store_or_not_refundable_are_refused() {
    let c = Charging::new().await;
    let key = stores(&c).await;
    c.register(3, 50_000).await;
    let mut card = funded_card(3, 50_000);
    let settlement = purchase(&c, &key, &mut card, 3).await;

    // Signed with a key the center does not know.
    let stranger = SigningKey::generate(&mut SeededRandom::new(5));
    let forged = refund_token(&stranger, &settlement, "rf-x", 100);
    assert!(matches!(c.center.request_refund(&forged).await, Err(UpdateError::Refund(JwsError::UnknownKey(_)))));
    // Tampered: one byte of the payload changed.
    let good = refund_token(&key, &settlement, "rf-y", 100);
    let mut bytes = good.clone().into_bytes();
    let dot = good.find('.').unwrap() + 5;
    bytes[dot] = if bytes[dot] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    assert!(matches!(c.center.request_refund(&tampered).await, Err(UpdateError::Refund(_))));
    // A settlement that does not exist.
    let missing = SettlementId::parse("stl_00000000000000000000000000000000").unwrap();
    let err = c.center.request_refund(&refund_token(&key, &missing, "rf-z", 100)).await.unwrap_err();
    assert!(matches!(err, UpdateError::UnknownSettlement(_)), "{err:?}");
    // A settlement not completed (cancelled before its DEBIT).
    let (claims, b) = samples::bill(&mut OsRandom, NOW).unwrap();
    let (token, mut three) =
        (bill::sign(&claims.clone().with_audience(crate::center_party()), &b, &key).unwrap(), funded_card(3, 50_000));
    let r = c.center.create(crate::world::offer_request(&mut three, &token, card_id(3)), None).await.unwrap();
    c.center.cancel(&r.settlement_id, Default::default()).await.unwrap();
    let open = SettlementId::parse(&r.settlement_id).unwrap();
    let err = c.center.request_refund(&refund_token(&key, &open, "rf-w", 100)).await.unwrap_err();
    assert!(matches!(err, UpdateError::NotRefundable(_)), "{err:?}");
    // An expired request.
    let mall = PartyId::parse(samples::MALL).unwrap();
    let old = Claims::for_lifetime(
        mall,
        MessageId::generate(&mut OsRandom),
        kessai_core::time::Timestamp::from_unix_s(NOW.unix_s() - 1_000),
        600,
    );
    let body = RefundRequest::new(RefundRequestDraft {
        refund_id: RefundId::parse("rf-old").unwrap(),
        settlement_id: settlement.clone(),
        store: StoreId::parse(samples::MALL).unwrap(),
        amount: jpy(100),
        reason: DisplayText::parse("late").unwrap(),
    })
    .unwrap();
    let expired = refund::sign(&old.unwrap().with_audience(crate::center_party()), &body, &key).unwrap();
    assert!(matches!(c.center.request_refund(&expired).await, Err(UpdateError::Refund(JwsError::Expired { .. }))));
    // Nothing of it moved anything.
    assert_eq!(c.center.db.settlement_refunded(&settlement).await.unwrap(), 0);
    assert!(c.center.owed_for_card(&card_id(3)).await.unwrap().is_empty());
    c.check_books(3, &mut card).await;
}

/// A completed charge of `amount` to card `n`; its id.
async fn charged(c: &Charging, card: &mut Terminal<CardReader>, n: u8, amount: u64) -> String {
    let r = to_offer(c, card, n, amount).await;
    let done =
        c.center.update_complete(c.sim.as_ref(), &r.charge_id, relay(card, &r), Default::default()).await.unwrap();
    assert_eq!(done.phase, UpdatePhase::Completed);
    Terminal::select(card).unwrap();
    r.charge_id
}

async fn decrease(c: &Charging, n: u8, charge: &str, amount: u64) -> Result<UpdateReply, UpdateError> {
    let request = DecreaseRequest {
        id: UpdateId::generate(&mut OsRandom),
        card_id: card_id(n),
        charge_id: UpdateId::parse(charge).unwrap(),
        amount: jpy(amount),
    };
    c.center.create_decrease(request).await
}

async fn refunded_to_credit_card(c: &Charging, funding_ref: &str) -> u64 {
    let auth = c.sim.authorizations().await.unwrap().into_iter().find(|a| a.reference.as_str() == funding_ref).unwrap();
    assert_eq!(auth.state, AuthorizationState::Captured);
    auth.refunds.values().sum()
}

#[tokio::test]
async fn a_decrease_goes_back_to_the_credit_card_only_when_the_card_confirms() {
    let c = Charging::new().await;
    c.register(4, 10_000).await;
    let mut card = funded_card(4, 10_000);
    let charge = charged(&c, &mut card, 4, 5_000).await;
    let funding = c.center.value_update(&charge).await.unwrap().authorization.unwrap().as_str().to_owned();

    // step 1: a decrease of 2,000 back to the charge's credit card.
    let r = decrease(&c, 4, &charge, 2_000).await.unwrap();
    assert_eq!((r.direction, r.phase), (Direction::Debit, UpdatePhase::Authenticating));
    assert_eq!(r.funding_ref.as_deref(), Some(funding.as_str()), "it names the charge's authorization");
    let sim = c.sim.as_ref();
    let id = r.charge_id.clone();
    let r = c.center.update_authenticate(sim, &id, relay(&mut card, &r), None, None).await.unwrap();
    // step 2: SIG5 (debit) and the sealed DEBIT; the value is held on the float.
    let r = c.center.update_offer(sim, &id, relay(&mut card, &r), Default::default()).await.unwrap();
    assert_eq!(r.phase, UpdatePhase::Offered);
    let debit = commands(&r).pop().unwrap().to_bytes();
    assert_eq!(debit[..2], [0x84, 0x32], "a sealed DEBIT");
    let expected = ExpectedUpdate {
        update_id: &id,
        card_id: card_id(4),
        direction: Direction::Debit,
        amount: jpy(2_000),
        command: &debit,
    };
    let token = r.value_update.clone().unwrap();
    let v = verify_value_update(&token, &c.center_keys(), &FixedClock::new(NOW), expected, &mut |_| false).unwrap();
    assert_eq!((v.message().balance_before(), v.message().balance_after()), (jpy(15_000), jpy(13_000)));
    // A wallet expecting a credit refuses it.
    let as_credit = ExpectedUpdate { direction: Direction::Credit, ..expected };
    assert!(verify_value_update(&token, &c.center_keys(), &FixedClock::new(NOW), as_credit, &mut |_| false).is_err());
    assert_eq!(refunded_to_credit_card(&c, &funding).await, 0, "nothing refunded before the card confirms");
    assert_eq!(c.center.books.card_float(&card_id(4)).await.unwrap().unwrap(), (15_000, 2_000));
    // step 3: the card debits; the center posts and refunds the credit card.
    let done = c.center.update_complete(sim, &id, relay(&mut card, &r), Default::default()).await.unwrap();
    assert_eq!((done.phase, done.balance_after_minor), (UpdatePhase::Completed, Some(13_000)));
    assert_eq!(refunded_to_credit_card(&c, &funding).await, 2_000);
    assert_eq!(c.center.books.credit_funding(Currency::JPY).await.unwrap(), 3_000);
    Terminal::select(&mut card).unwrap();
    c.check_books(4, &mut card).await;

    // More than what is left of the charge is refused before any session.
    let err = decrease(&c, 4, &charge, 3_001).await.unwrap_err();
    assert!(matches!(err, UpdateError::DecreaseOverCharge { decreased_minor: 2_000, .. }), "{err:?}");
    // A decrease of a decrease, or of another card's charge, is refused.
    assert!(matches!(decrease(&c, 4, &id, 1).await, Err(UpdateError::NotDecreasable(_))));
    c.register(5, 0).await;
    assert!(matches!(decrease(&c, 5, &charge, 1).await, Err(UpdateError::NotDecreasable(_))));
    // The rest goes back; then nothing more.
    let r = decrease(&c, 4, &charge, 3_000).await.unwrap();
    assert_eq!(run_update(&c, &mut card, r).await.phase, UpdatePhase::Completed);
    assert_eq!(refunded_to_credit_card(&c, &funding).await, 5_000);
    assert!(matches!(decrease(&c, 4, &charge, 1).await, Err(UpdateError::DecreaseOverCharge { .. })));
    assert_eq!(balance_of(&mut card), 10_000);
    assert_eq!(c.center.books.credit_funding(Currency::JPY).await.unwrap(), 0);
    c.check_books(4, &mut card).await;
}

#[tokio::test]
async fn a_correction_is_held_at_once_and_taken_off_at_the_next_presentation() {
    let c = Charging::new().await;
    c.register(6, 10_000).await;
    let mut card = funded_card(6, 10_000);

    // Beyond what the books show on the card: refused, nothing held.
    let err = c
        .center
        .add_correction(card_id(6), "TICKET-0", jpy(10_001), "double issuance", crate::tester())
        .await
        .unwrap_err();
    assert!(matches!(err, UpdateError::CorrectionOverFloat(_)), "{err:?}");
    assert_eq!(c.center.books.card_float(&card_id(6)).await.unwrap().unwrap(), (10_000, 0));

    // Made, then cancelled before the card was presented: the hold is voided.
    let o =
        c.center.add_correction(card_id(6), "TICKET-1", jpy(1_500), "double issuance", crate::tester()).await.unwrap();
    assert_eq!(c.center.books.card_float(&card_id(6)).await.unwrap().unwrap(), (10_000, 1_500));
    let again =
        c.center.add_correction(card_id(6), "TICKET-1", jpy(1_500), "double issuance", crate::tester()).await.unwrap();
    assert_eq!(again.owed_id, o.owed_id, "the same reference is the same correction");
    assert_eq!(c.center.cancel_correction(&o.owed_id, crate::tester()).await.unwrap().status, OwedStatus::Cancelled);
    assert_eq!(c.center.books.card_float(&card_id(6)).await.unwrap().unwrap(), (10_000, 0));
    assert!(present(&c, &mut card, 6).await.is_empty());

    // Made and presented: the card is debited once.
    let o = c.center.add_correction(card_id(6), "TICKET-2", jpy(2_500), "wrong top-up", crate::tester()).await.unwrap();
    let applied = present(&c, &mut card, 6).await;
    assert_eq!(applied.len(), 1);
    assert_eq!((applied[0].direction, applied[0].phase), (Direction::Debit, UpdatePhase::Completed));
    assert_eq!(balance_of(&mut card), 7_500);
    assert!(matches!(
        c.center.cancel_correction(&o.owed_id, crate::tester()).await,
        Err(UpdateError::NotCancellable(_))
    ));
    c.check_books(6, &mut card).await;
}

#[tokio::test]
async fn a_decrease_over_the_card_balance_is_voided_and_can_be_asked_again() {
    let c = Charging::new().await;
    c.register(7, 0).await;
    let mut card = funded_card(7, 0);
    let charge = charged(&c, &mut card, 7, 5_000).await;
    // The card spends most of it (an operator's correction here).
    c.center.add_correction(card_id(7), "TICKET-7", jpy(4_000), "test", crate::tester()).await.unwrap();
    present(&c, &mut card, 7).await;
    assert_eq!(balance_of(&mut card), 1_000);

    let r = decrease(&c, 7, &charge, 5_000).await.unwrap();
    let v = run_update(&c, &mut card, r).await;
    assert_eq!((v.phase, v.reason_code.map(|r| r.as_str())), (UpdatePhase::Voided, Some("insufficient_balance")));
    // Released: what the card holds can still go back.
    let r = decrease(&c, 7, &charge, 1_000).await.unwrap();
    assert_eq!(run_update(&c, &mut card, r).await.phase, UpdatePhase::Completed);
    let funding = c.center.value_update(&charge).await.unwrap().authorization.unwrap().as_str().to_owned();
    assert_eq!(refunded_to_credit_card(&c, &funding).await, 1_000);
    assert_eq!(balance_of(&mut card), 0);
    c.check_books(7, &mut card).await;
}

#[tokio::test]
async fn a_crash_at_every_step_of_a_decrease_and_a_refund_credit_is_handled_exactly_once() {
    let mut c = Charging::new().await;
    let key = stores(&c).await;
    c.register(8, 50_000).await;
    let mut card = funded_card(8, 50_000);
    let charge = charged(&c, &mut card, 8, 5_000).await;
    let funding = c.center.value_update(&charge).await.unwrap().authorization.unwrap().as_str().to_owned();
    let sim = c.sim.clone();

    // A decrease with a restart after every step, and the card's answer lost.
    let r = decrease(&c, 8, &charge, 2_000).await.unwrap();
    let id = r.charge_id.clone();
    c.restart().await;
    let r = c.center.update_authenticate(sim.as_ref(), &id, relay(&mut card, &r), None, None).await.unwrap();
    c.restart().await;
    let answers = relay(&mut card, &r);
    let stored = c.center.value_update(&id).await.unwrap();
    // A crash after the hold but before the row: the retry meets `exists`.
    let hold = Entries::decrease_hold(&stored.transaction_id, &card_id(8), jpy(2_000)).unwrap();
    c.center.books.apply(hold, NOW.unix_s()).await.unwrap();
    c.restart().await;
    let r = c.center.update_offer(sim.as_ref(), &id, answers, Default::default()).await.unwrap();
    assert_eq!(c.center.books.card_float(&card_id(8)).await.unwrap().unwrap().1, 2_000, "held once");
    c.restart().await;
    let answer = relay(&mut card, &r); // the card debited; the answer is lost
    Terminal::select(&mut card).unwrap();
    // A crash after posting and refunding but before the row.
    let post = Entries::decrease_resolve(&stored.transaction_id, jpy(2_000), true).unwrap();
    c.center.books.apply(post, NOW.unix_s()).await.unwrap();
    let reference = kessai_core::messages::Reference::parse(&funding).unwrap();
    sim.refund(&reference, jpy(2_000), &id).await.unwrap();
    c.restart().await;
    let done = recover(&c, &mut card, &id).await;
    assert_eq!(done.phase, UpdatePhase::Completed);
    c.restart().await;
    assert!(
        c.center.update_complete(sim.as_ref(), &id, answer, Default::default()).await.is_err(),
        "the lost answer changes nothing"
    );
    assert_eq!(refunded_to_credit_card(&c, &funding).await, 2_000, "refunded exactly once");
    assert_eq!(balance_of(&mut card), 53_000);
    c.check_books(8, &mut card).await;

    // A refund credit: the store asks twice across a restart; the card's
    // session is interrupted after the CREDIT was sealed but before it
    // reached the card; recovery voids that session and the refund is owed
    // again; the next presentation applies it once.
    let settlement = purchase(&c, &key, &mut card, 8).await;
    let token = refund_token(&key, &settlement, "rf-crash", 4_000);
    let owed = c.center.request_refund(&token).await.unwrap();
    c.restart().await;
    assert_eq!(c.center.request_refund(&token).await.unwrap().owed_id, owed.owed_id);
    let r = match c.center.apply_owed(card_id(8), UpdateId::generate(&mut OsRandom)).await.unwrap() {
        Applying::Update(r) => *r,
        Applying::Nothing => panic!("owed"),
    };
    let id = r.charge_id.clone();
    let r = c.center.update_authenticate(sim.as_ref(), &id, relay(&mut card, &r), None, None).await.unwrap();
    let _sealed_credit =
        c.center.update_offer(sim.as_ref(), &id, relay(&mut card, &r), Default::default()).await.unwrap();
    c.restart().await;
    Terminal::select(&mut card).unwrap();
    // Presented again while that session is open: the same session comes back, to recover.
    match c.center.apply_owed(card_id(8), UpdateId::generate(&mut OsRandom)).await.unwrap() {
        Applying::Update(again) => {
            assert_eq!((again.charge_id.as_str(), again.phase), (id.as_str(), UpdatePhase::Offered))
        }
        Applying::Nothing => panic!("still owed"),
    }
    let v = recover(&c, &mut card, &id).await;
    assert_eq!((v.phase, v.reason_code.map(|r| r.as_str())), (UpdatePhase::Voided, Some("not_applied")));
    Terminal::select(&mut card).unwrap();
    let applied = present(&c, &mut card, 8).await;
    assert_eq!(applied.len(), 1);
    assert_eq!(applied[0].phase, UpdatePhase::Completed);
    assert_eq!(balance_of(&mut card), 53_000 - PURCHASE + 4_000, "credited exactly once");
    assert_eq!(payable(&c).await, PURCHASE - 4_000);
    let status = c.center.db.owed(&owed.owed_id).await.unwrap().unwrap().status;
    assert_eq!(status, OwedStatus::Applied);
    // Posting the refund again is `exists`, never a second credit.
    let post = Entries::owed_resolve(&owed.owed_id, jpy(4_000), CODE_REFUND, true).unwrap();
    c.center.books.apply(post, NOW.unix_s()).await.unwrap();
    assert_eq!(payable(&c).await, PURCHASE - 4_000);
    c.check_books(8, &mut card).await;
}

/// M6: a store bills and refunds only for its own members. A registered
/// store that names another mall's member in its bill is refused at once
/// (nothing stored, nothing held); a mall whose member left it can no longer
/// refund that member's purchases.
#[tokio::test]
async fn a_store_bills_and_refunds_only_for_its_own_members() {
    use kessai_core::messages::bill::{Bill, BillDraft, LineItem};
    let c = Charging::new().await;
    let key = stores(&c).await;
    c.register(4, 50_000).await;
    let mut card = funded_card(4, 50_000);
    // A rogue store, registered with its own key, bills for the mall's
    // member.
    let rogue = StoreId::parse("rogue-shop").unwrap();
    let rogue_key = SigningKey::generate(&mut SeededRandom::new(92));
    let record = kessai_center::db::StoreRecord {
        id: rogue.clone(),
        name: DisplayText::parse("Rogue").unwrap(),
        mall: None,
        notify_url: None,
        client_name: None,
        bank_account: None,
    };
    c.center.db.put_store(&record, NOW).await.unwrap();
    c.center.db.put_store_key(&rogue, &rogue_key.public(), kessai_core::keys::Validity::always()).await.unwrap();
    let price = kessai_core::Money::new(2_000, Currency::JPY).unwrap();
    let b = Bill::new(BillDraft {
        bill_id: kessai_core::ids::BillId::parse("bill-rogue-1").unwrap(),
        order_id: kessai_core::ids::OrderId::parse("ord-rogue-1").unwrap(),
        store: rogue.clone(),
        member: Some(member()),
        store_name: DisplayText::parse("Kessai Books").unwrap(),
        lines: vec![LineItem::new("x", DisplayText::parse("X").unwrap(), 1, price).unwrap()],
        nonce: kessai_core::messages::Nonce::generate(&mut OsRandom),
        origin: None,
    })
    .unwrap();
    let claims =
        Claims::for_lifetime(PartyId::parse("rogue-shop").unwrap(), MessageId::generate(&mut OsRandom), NOW, 600)
            .unwrap();
    let token = bill::sign(&claims.clone().with_audience(crate::center_party()), &b, &rogue_key).unwrap();
    let refused =
        c.center.create(crate::world::offer_create(&token, card_id(4), crate::world::no_opening()), None).await;
    assert!(
        matches!(&refused, Err(kessai_center::service::CenterError::NotAMember { member: m, mall }) if m == "bookshop" && mall == "rogue-shop"),
        "{refused:?}"
    );
    assert!(c.center.db.list_settlements(&Default::default()).await.unwrap().settlements.is_empty(), "nothing stored");
    assert_eq!(c.center.books.card_float(&card_id(4)).await.unwrap(), Some((50_000, 0)), "nothing held");
    // The mall's own bill for its member settles; then the member leaves
    // the mall, and the mall's refund of that purchase is refused.
    let settlement = purchase(&c, &key, &mut card, 4).await;
    let left = kessai_center::db::StoreRecord {
        id: member(),
        name: DisplayText::parse("Kessai Books").unwrap(),
        mall: None,
        notify_url: None,
        client_name: None,
        bank_account: None,
    };
    c.center.db.put_store(&left, NOW).await.unwrap();
    let refused = c.center.request_refund(&refund_token(&key, &settlement, "rf-left", 1_000)).await;
    assert!(matches!(refused, Err(UpdateError::NotAMember { .. })), "{refused:?}");
    assert_eq!(payable(&c).await, PURCHASE, "the member's payable is untouched");
    c.check_books(4, &mut card).await;
}

/// M8: a refund owed to a lost or blocked card could never be applied, and
/// would hold the store's payable forever: it is refused, nothing held.
#[tokio::test]
async fn a_refund_to_a_card_that_is_not_active_is_refused() {
    let c = Charging::new().await;
    let key = stores(&c).await;
    c.register(5, 50_000).await;
    let mut card = funded_card(5, 50_000);
    let settlement = purchase(&c, &key, &mut card, 5).await;
    crate::world::report_lost(&c.center.db, card_id(5)).await;
    let refused = c.center.request_refund(&refund_token(&key, &settlement, "rf-lost", 1_000)).await;
    assert!(matches!(&refused, Err(UpdateError::NotRefundable(why)) if why.contains("not active")), "{refused:?}");
    assert_eq!(payable(&c).await, PURCHASE, "nothing held against the payable");
    assert_eq!(c.center.books.card_credits_pending(&card_id(5)).await.unwrap(), 0);
    assert!(c.center.db.owed_for_card(&card_id(5), 10).await.unwrap().is_empty());
}

/// POSTs `body` to `app` under Idempotency-Key `key`, as `peer` (the name
/// of a verified client certificate; None: none presented).
async fn post_as(
    app: &axum::Router,
    path: &str,
    key: &str,
    body: serde_json::Value,
    peer: Option<&str>,
) -> (axum::http::StatusCode, serde_json::Value) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut req = axum::http::Request::post(path)
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    if let Some(name) = peer {
        req.extensions_mut().insert(crate::peer(name));
    }
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// M10: Idempotency-Keys are scoped by the caller. Someone without the
/// mall's certificate who posts garbage first under the mall's predictable
/// refund key neither blocks the mall's refund nor, replaying the mall's
/// request under that key, reads the mall's stored answer.
#[tokio::test]
async fn idempotency_keys_are_the_callers_own_on_sqlite() {
    idempotency_keys_are_the_callers_own(Charging::new().await).await;
}

#[tokio::test]
async fn idempotency_keys_are_the_callers_own_on_postgres() {
    let Some(c) = Charging::on_postgres("idem_scope").await else { return };
    idempotency_keys_are_the_callers_own(c).await;
}

async fn idempotency_keys_are_the_callers_own(c: Charging) {
    let key = stores(&c).await;
    c.register(6, 50_000).await;
    let mut card = funded_card(6, 50_000);
    let settlement = purchase(&c, &key, &mut card, 6).await;
    let center = std::sync::Arc::new(crate::charge::open_center(&c.url).await);
    let app = kessai_center::update_api::routes(center, c.sim.clone());
    let idem = "refund-kessai-mall-rf-7";
    // 1. Squatting: garbage under the mall's key, no certificate.
    let (status, _) = post_as(&app, "/v1/refunds", idem, serde_json::json!({ "refund": "garbage" }), None).await;
    assert!(status.is_client_error(), "{status}");
    // 2. The mall's genuine refund under the same key goes through.
    let genuine = serde_json::json!({ "refund": refund_token(&key, &settlement, "rf-7", 1_000) });
    let (status, answer) = post_as(&app, "/v1/refunds", idem, genuine.clone(), Some("kessai-mall")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["refunded_minor"], 1_000);
    // 3. Replayed by someone else under the key: not the mall's answer.
    let (status, stolen) = post_as(&app, "/v1/refunds", idem, genuine.clone(), None).await;
    assert_eq!(status, 422, "{stolen}");
    assert_eq!(stolen["error"]["code"], "idempotency_key_reused");
    // 4. The mall's retry gets its answer again, byte for byte the same.
    let (status, again) = post_as(&app, "/v1/refunds", idem, genuine, Some("kessai-mall")).await;
    assert_eq!((status, again), (axum::http::StatusCode::OK, answer));
    assert_eq!(c.center.books.card_credits_pending(&card_id(6)).await.unwrap(), 1_000, "refunded once");
}

/// M4 (in part): anyone may present any card id to owed/apply, so an
/// unknown card, a lost one and one owed nothing answer alike: nothing
/// owed. What a lost card is owed stays owed; nothing is applied to it.
#[tokio::test]
async fn owed_apply_answers_alike_for_unknown_lost_and_settled_cards() {
    let c = Charging::new().await;
    let key = stores(&c).await;
    c.register(7, 50_000).await;
    c.register(9, 50_000).await;
    let mut card = funded_card(7, 50_000);
    let settlement = purchase(&c, &key, &mut card, 7).await;
    c.center.request_refund(&refund_token(&key, &settlement, "rf-lost-later", 1_000)).await.unwrap();
    crate::world::report_lost(&c.center.db, card_id(7)).await;
    for n in [7, 9, 99] {
        let answer = c.center.apply_owed(card_id(n), UpdateId::generate(&mut OsRandom)).await.unwrap();
        assert!(matches!(answer, Applying::Nothing), "card {n}: {answer:?}");
    }
    let owed = c.center.db.owed_for_card(&card_id(7), 10).await.unwrap();
    assert_eq!((owed.len(), owed[0].status), (1, OwedStatus::Owed), "the lost card's refund stays owed");
}

/// M4: an owed item being applied belongs, before its command exists, to
/// the presentation that opened it. Another presentation of the card id
/// (anyone may send one) is told nothing is owed: it neither restarts the
/// session, which would make the cardholder's authentication fail, nor
/// learns the item or the session's access token. The first goes on.
#[tokio::test]
async fn a_second_presentation_does_not_take_over_an_owed_session() {
    let c = Charging::new().await;
    let key = stores(&c).await;
    c.register(5, 50_000).await;
    let mut card = funded_card(5, 50_000);
    let settlement = purchase(&c, &key, &mut card, 5).await;
    c.center.request_refund(&refund_token(&key, &settlement, "rf-taken-over", 1_000)).await.unwrap();
    let first = match c.center.apply_owed(card_id(5), UpdateId::generate(&mut OsRandom)).await.unwrap() {
        Applying::Update(r) => *r,
        Applying::Nothing => panic!("owed"),
    };
    let answers = relay(&mut card, &first);
    let other = c.center.apply_owed(card_id(5), UpdateId::generate(&mut OsRandom)).await.unwrap();
    assert!(matches!(other, Applying::Nothing), "{other:?}");
    let sim = c.sim.as_ref();
    let id = first.charge_id.clone();
    let r = c.center.update_authenticate(sim, &id, answers, None, None).await.unwrap();
    let r = c.center.update_offer(sim, &id, relay(&mut card, &r), Default::default()).await.unwrap();
    let done = c.center.update_complete(sim, &id, relay(&mut card, &r), Default::default()).await.unwrap();
    assert_eq!(done.phase, UpdatePhase::Completed);
    assert_eq!(balance_of(&mut card), 50_000 - PURCHASE + 1_000);
    c.check_books(5, &mut card).await;
}

/// L4: a refund the card cannot take now (it would pass the card's maximum
/// balance) waits without holding back what comes after it: a correction
/// behind it is applied; the refund stays owed until the card has room.
#[tokio::test]
async fn an_owed_credit_that_does_not_fit_waits_without_blocking_the_rest() {
    let c = Charging::new().await;
    let key = stores(&c).await;
    c.register(8, 100_000).await;
    let mut card = funded_card(8, 100_000);
    let settlement = purchase(&c, &key, &mut card, 8).await;
    charged(&c, &mut card, 8, 11_000).await;
    assert_eq!(balance_of(&mut card), 100_000 - PURCHASE + 11_000);
    // 99,640 + 11,360 passes the maximum of 100,000.
    let refund = c.center.request_refund(&refund_token(&key, &settlement, "rf-full", PURCHASE)).await.unwrap();
    let correction = c.center.add_correction(card_id(8), "TICKET-9", jpy(500), "fee", crate::tester()).await.unwrap();
    let applied = present(&c, &mut card, 8).await;
    assert_eq!(applied.len(), 1, "only the correction applies: {applied:?}");
    assert_eq!((applied[0].direction, applied[0].phase), (Direction::Debit, UpdatePhase::Completed));
    assert_eq!(balance_of(&mut card), 100_000 - PURCHASE + 11_000 - 500);
    assert_eq!(c.center.db.owed(&correction.owed_id).await.unwrap().unwrap().status, OwedStatus::Applied);
    assert_eq!(c.center.db.owed(&refund.owed_id).await.unwrap().unwrap().status, OwedStatus::Owed, "still owed");
    // The books follow the card; the refund is held, waiting.
    let (float, held) = c.center.books.card_float(&card_id(8)).await.unwrap().unwrap();
    assert_eq!((float, held), (balance_of(&mut card), 0));
    assert_eq!(c.center.books.card_credits_pending(&card_id(8)).await.unwrap(), PURCHASE);
    c.center.books.ledger().check().await.unwrap();
}

/// M8: a lost card's value and the refunds still owed to it go to the card
/// that replaces it, in one transaction: the value held old float → new
/// float, each refund's hold voided and made again toward the new card.
/// The new card is credited at its next presentation; the old card's books
/// end empty; nothing is created or lost. Refused for an active card, for
/// one with value in flight, and by a second, different replacement.
#[tokio::test]
async fn a_lost_cards_value_and_refunds_go_to_the_card_that_replaces_it() {
    let c = Charging::new().await;
    let key = stores(&c).await;
    for n in [11, 12, 13, 14] {
        c.register(n, if n == 11 || n == 14 { 50_000 } else { 1_000 }).await;
    }
    let mut old = funded_card(11, 50_000);
    let settlement = purchase(&c, &key, &mut old, 11).await;
    let refund = c.center.request_refund(&refund_token(&key, &settlement, "rf-before-loss", 2_000)).await.unwrap();
    let refused = c.center.replace_card(card_id(11), card_id(12), "lost", crate::tester()).await.unwrap_err();
    assert!(matches!(refused, UpdateError::NotReplaceable(_)), "an active card: {refused:?}");
    // Only a registered member's card, and only to another card of that
    // member, as for a registered transit card; the link is made while the
    // card is active (a lost card's member no longer changes).
    let anonymous = card_id(15);
    c.center.db.put_card(&crate::world::record(15), crate::world::NOW).await.unwrap();
    crate::world::report_lost(&c.center.db, anonymous).await;
    let unregistered = c.center.replace_card(anonymous, card_id(13), "lost", crate::tester()).await.unwrap_err();
    assert!(format!("{unregistered}").contains("not a registered member's"), "{unregistered}");
    let after_loss = c.center.db.link_card_member(
        &anonymous,
        Some("m-anyone"),
        false,
        crate::world::NOW,
        crate::trail("card_member"),
    );
    assert!(!after_loss.await.unwrap(), "a lost card's member is not changed");
    let member = crate::world::registered_member(&c.center, 31, &[card_id(11), card_id(13), card_id(14)]).await;
    crate::world::report_lost(&c.center.db, card_id(11)).await;
    let stranger = crate::world::registered_member(&c.center, 32, &[]).await;
    let not_theirs = c.center.replace_card(card_id(11), card_id(12), "lost", crate::tester()).await.unwrap_err();
    assert!(format!("{not_theirs}").contains(&format!("is not member {member}'s")), "{not_theirs}");
    let twelve = card_id(12);
    let linked =
        c.center.db.link_card_member(&twelve, Some(&stranger), false, crate::world::NOW, crate::trail("card_member"));
    assert!(linked.await.unwrap());
    let others = c.center.replace_card(card_id(11), card_id(12), "lost", crate::tester()).await.unwrap_err();
    assert!(format!("{others}").contains("link it to the member first"), "another member's card: {others}");
    assert!(c.center.db.owed_for_card(&card_id(12), 10).await.unwrap().is_empty(), "nothing moved");
    let linked =
        c.center.db.link_card_member(&twelve, Some(&member), false, crate::world::NOW, crate::trail("card_member"));
    assert!(linked.await.unwrap());

    let done =
        c.center.replace_card(card_id(11), card_id(12), "reported lost at the counter", crate::tester()).await.unwrap();
    let value = 50_000 - PURCHASE;
    let replacement = done.replacement.clone().expect("the old card held value");
    assert_eq!((replacement.amount, replacement.card_id.as_str()), (jpy(value), card_id(12).to_string().as_str()));
    assert_eq!(done.moved.len(), 1);
    assert_eq!((done.moved[0].amount, done.moved[0].card_id.clone()), (jpy(2_000), card_id(12).to_string()));
    assert_eq!(c.center.db.owed(&refund.owed_id).await.unwrap().unwrap().status, OwedStatus::Moved);
    // Asked again: what was done, and nothing more; by another card: refused.
    let again =
        c.center.replace_card(card_id(11), card_id(12), "reported lost at the counter", crate::tester()).await.unwrap();
    assert_eq!((again.replacement, again.moved.len()), (done.replacement.clone(), 0));
    let other = c.center.replace_card(card_id(11), card_id(13), "twice", crate::tester()).await.unwrap_err();
    assert!(matches!(other, UpdateError::NotReplaceable(_)), "{other:?}");
    assert_eq!(payable(&c).await, PURCHASE, "the refund stays held, posted at its application");

    // The new card is presented: the refund and the value arrive.
    let mut new = funded_card(12, 1_000);
    let applied = present(&c, &mut new, 12).await;
    assert_eq!(applied.len(), 2, "{applied:?}");
    assert_eq!(balance_of(&mut new), 1_000 + value + 2_000);
    c.check_books(12, &mut new).await;
    assert_eq!(c.center.books.card_float(&card_id(11)).await.unwrap().unwrap(), (0, 0), "the old card holds nothing");
    assert_eq!(c.center.books.card_credits_pending(&card_id(11)).await.unwrap(), 0);
    assert_eq!(payable(&c).await, PURCHASE - 2_000, "the store's payable reversed once");

    // A card whose DEBIT may be out (an offered settlement) is not replaced
    // until that is settled: the card alone, or void-lost, can say.
    let mut busy = funded_card(14, 50_000);
    let (claims, b) = samples::bill(&mut OsRandom, NOW).unwrap();
    let token = bill::sign(&claims.clone().with_audience(crate::center_party()), &b, &key).unwrap();
    let r =
        c.center.create(crate::world::offer_request(&mut busy, &token, card_id(14)), Default::default()).await.unwrap();
    let sid = r.settlement_id.clone();
    let r = c.center.offer(&sid, relay_step(&mut busy, &r), Default::default()).await.unwrap();
    assert_eq!(r.phase, Phase::Offered);
    crate::world::report_lost(&c.center.db, card_id(14)).await;
    let held = c.center.replace_card(card_id(14), card_id(13), "lost", crate::tester()).await.unwrap_err();
    assert!(matches!(held, UpdateError::NotReplaceable(_)), "{held:?}");
    assert!(c.center.db.owed_for_card(&card_id(13), 10).await.unwrap().is_empty(), "nothing moved");
    c.center.books.ledger().check().await.unwrap();
}
