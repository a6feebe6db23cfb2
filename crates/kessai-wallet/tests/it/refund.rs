//! Refunds and decreases end to end (issue #8): the store signs a refund
//! with its own client over real TLS, the wallet applies it the next time
//! the card is presented; the cardholder gives value back to the credit
//! card of a charge. The card's image is what the cardholder holds.

use kessai_core::ids::{RefundId, SettlementId};
use kessai_core::messages::DisplayText;
use kessai_core::messages::value_update::Direction;
use kessai_core::{Currency, Money};
use kessai_store::refund::{RefundOrder, request_refund};
use kessai_wallet::{ChargeError, PayOutcome, PaymentCardInput, UpdateKind};
use serde_json::Value;

use crate::world::World;

fn yen(n: u64) -> Money {
    Money::new(n, Currency::JPY).unwrap()
}

fn refund(settlement: &SettlementId, id: &str, amount: u64) -> RefundOrder {
    RefundOrder {
        refund_id: RefundId::parse(id).unwrap(),
        settlement_id: settlement.clone(),
        amount: yen(amount),
        reason: DisplayText::parse("the download was damaged").unwrap(),
    }
}

async fn center_update(w: &World, id: &str) -> Value {
    w.center_get(&format!("/v1/value-updates/{id}"), id).await
}

#[tokio::test]
async fn a_store_refund_reaches_the_card_when_it_is_next_presented() {
    let w = World::new(50, 20_000).await;
    let config = w.wallet_config(&w.center_url);
    let (order, _, _) = w.order(&[("ebook-kessai-001", 2)]).await;
    let bill_url = format!("{}/orders/{order}/bill", w.store_url);
    let paid = kessai_wallet::pay(config.clone(), &bill_url, |_| true, |_| {}).await.unwrap();
    let PayOutcome::Paid { completed_settlement, .. } = paid else { panic!("paid") };
    assert_eq!(w.card_state().0, 17_600);

    // The store refunds JPY 1,000 with its signed request; the card is not there yet.
    let answer = request_refund(&w.store_config, refund(&completed_settlement, "rf-1", 1_000)).await.unwrap();
    assert_eq!((answer["status"].as_str(), answer["refunded_minor"].as_u64()), (Some("owed"), Some(1_000)));
    // Sent again (a retry): the same refund, not a second one.
    let again = request_refund(&w.store_config, refund(&completed_settlement, "rf-1", 1_000)).await.unwrap();
    assert_eq!(again["owed_id"], answer["owed_id"]);
    assert_eq!(again["refunded_minor"].as_u64(), Some(1_000));
    // More than the rest of the purchase is refused by the center.
    let over = request_refund(&w.store_config, refund(&completed_settlement, "rf-2", 1_401)).await.unwrap_err();
    assert!(format!("{over:#}").contains("over_refund"), "{over:#}");
    assert_eq!(w.card_state().0, 17_600, "nothing reaches the card before it is presented");

    // The card is presented: the refund is credited, SIG5 checked.
    let applied = kessai_wallet::collect(config.clone(), |_| {}).await.unwrap();
    assert_eq!(applied.len(), 1, "{applied:?}");
    let a = &applied[0];
    assert_eq!(
        (a.direction, a.kind, a.amount, a.balance_after),
        (Direction::Credit, UpdateKind::Owed, yen(1_000), yen(18_600))
    );
    assert_eq!(a.funding_ref, answer["owed_id"].as_str().unwrap());
    assert_eq!(w.card_state().0, 18_600);
    assert_eq!(center_update(&w, &a.charge_id).await["phase"], "completed");
    // Presented again: nothing more.
    assert!(kessai_wallet::collect(config.clone(), |_| {}).await.unwrap().is_empty());

    // A second refund is applied by the next purchase, before it is paid.
    request_refund(&w.store_config, refund(&completed_settlement, "rf-3", 400)).await.unwrap();
    // The mall kept the center's total of refunds: its payment claim asks
    // for what is left of the purchase (#19).
    let db = kessai_store::open_db(&w.store_config).await.unwrap();
    assert_eq!(db.refunded(completed_settlement.as_str()).await.unwrap(), 1_400);
    let order_of = kessai_store::claim::ClaimOrder {
        claim_id: kessai_core::ids::ClaimId::parse("claim-1").unwrap(),
        member: kessai_core::ids::StoreId::parse("bookshop").unwrap(),
        cutoff: kessai_core::time::Timestamp::from_unix_s(u64::MAX / 4),
        amounts: vec![],
        exclude: vec![],
    };
    let lines = kessai_store::claim::claim_lines(&db, &order_of).await.unwrap();
    let line = lines.iter().find(|l| l.settlement_id == completed_settlement).unwrap();
    assert_eq!(line.amount, yen(2_400 - 1_400));
    db.close().await;
    let (order, _, _) = w.order(&[("ebook-kessai-001", 1)]).await;
    let bill_url = format!("{}/orders/{order}/bill", w.store_url);
    kessai_wallet::pay(config, &bill_url, |_| true, |_| {}).await.unwrap();
    assert_eq!(w.card_state().0, 18_600 + 400 - 1_200, "refund credited, then the purchase debited");
}

#[tokio::test]
async fn a_decrease_gives_value_back_to_the_credit_card_of_a_charge() {
    let w = World::new(51, 10_000).await;
    let config = w.wallet_config(&w.center_url);
    let card = PaymentCardInput::parse("4242424242424242", "12/30", "123").unwrap();
    let charge = kessai_wallet::charge(config.clone(), yen(5_000), card, |_| {}).await.unwrap();
    assert_eq!(w.card_state().0, 15_000);

    let done = kessai_wallet::decrease(config.clone(), &charge.charge_id, yen(2_000), |_| {}).await.unwrap();
    assert_eq!((done.direction, done.kind, done.balance_after), (Direction::Debit, UpdateKind::Decrease, yen(13_000)));
    assert_eq!(done.funding_ref, charge.funding_ref, "back to the charge's credit card");
    assert_eq!(w.card_state().0, 13_000);
    let update = center_update(&w, &done.charge_id).await;
    assert_eq!((update["phase"].as_str(), update["direction"].as_str()), (Some("completed"), Some("debit")));

    // More than is left of the charge: refused, nothing changes.
    let e = kessai_wallet::decrease(config.clone(), &charge.charge_id, yen(3_001), |_| {}).await.unwrap_err();
    assert!(matches!(&e, ChargeError::Declined { code, .. } if code.as_str() == "over_charge"), "{e:?}");
    // Not a charge of this card.
    let e = kessai_wallet::decrease(config, &done.charge_id, yen(1), |_| {}).await.unwrap_err();
    assert!(matches!(&e, ChargeError::Declined { code, .. } if code.as_str() == "not_decreasable"), "{e:?}");
    assert_eq!(w.card_state().0, 13_000);
}

/// L4: in the middle of a payment the wallet applies what the card is owed
/// (a refund), never what it owes (an operator's correction), which its
/// pages do not show; `collect`, which reports each, applies that.
#[tokio::test]
async fn a_payment_applies_no_correction_behind_the_cardholders_back() {
    let w = World::new(51, 20_000).await;
    let config = w.wallet_config(&w.center_url);
    let card = kessai_card::public_info(&std::fs::read(&w.image).unwrap()).unwrap().card_id;
    let card = kessai_core::ids::CardId::from_bytes(card.0);
    let admin = kessai_http::HttpsClient::new(
        kessai_tls::client_config(&w.ca.ca_cert(), Some((&w.ca, "admin"))).unwrap(),
        10_000,
    );
    let body = serde_json::json!({ "reference": "ticket-7", "amount": yen(300), "reason": "double credit" });
    let (status, answer) =
        admin.post_json(&format!("{}/v1/admin/cards/{card}/corrections", w.center_url), &body, &[]).await.unwrap();
    assert!(status.is_success(), "{}", String::from_utf8_lossy(&answer));
    // A payment: the card pays the bill, and nothing else.
    let (order, _, _) = w.order(&[("ebook-kessai-001", 1)]).await;
    let bill_url = format!("{}/orders/{order}/bill", w.store_url);
    kessai_wallet::pay(config.clone(), &bill_url, |_| true, |_| {}).await.unwrap();
    assert_eq!(w.card_state().0, 20_000 - 1_200, "the correction is not taken during the payment");
    // Collected, with the cardholder told: now it is.
    let applied = kessai_wallet::collect(config, |_| {}).await.unwrap();
    assert_eq!(applied.len(), 1, "{applied:?}");
    assert_eq!((applied[0].direction, applied[0].amount), (Direction::Debit, yen(300)));
    assert_eq!(w.card_state().0, 20_000 - 1_200 - 300);
}
