//! Charging the card by credit card (issue #8): the real center, an
//! emulated card image, the wallet library. The card's balance on its
//! image is what the cardholder sees.

use kessai_core::{Currency, Money};
use kessai_wallet::{ChargeError, ChargePhase, PaymentCardInput, Wallet, WalletConfig};

use crate::proxy::{self, Tamper};
use crate::world::World;

const GOOD_CARD: &str = "4242424242424242";

fn yen(n: u64) -> Money {
    Money::new(n, Currency::JPY).unwrap()
}

fn card(number: &str) -> PaymentCardInput {
    PaymentCardInput::parse(number, "12/30", "123").unwrap()
}

/// Every byte the wallet wrote to its data directory.
fn wallet_files(config: &WalletConfig) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(&config.data_dir).unwrap() {
        all.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn center_charge_phase(w: &World, id: &str) -> String {
    let v = w.center_get(&format!("/v1/value-updates/{id}"), id).await;
    v["phase"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_charge_adds_the_amount_to_the_card_and_stores_no_card_data() {
    let w = World::new(40, 20_000).await;
    let config = w.wallet_config(&w.center_url);
    let mut steps = Vec::new();
    let done = kessai_wallet::charge(config.clone(), yen(5_000), card(GOOD_CARD), |p| steps.push(p)).await.unwrap();
    assert_eq!(done.balance_after, yen(25_000), "the new balance shown");
    assert_eq!(w.card_state().0, 25_000, "the card holds the value");
    assert_eq!(center_charge_phase(&w, &done.charge_id).await, "completed");
    assert_eq!(steps.len(), 6, "every step reported: {steps:?}");

    let wallet = Wallet::open(config.clone()).await.unwrap();
    let charges = wallet.records().recent_charges(10).await.unwrap();
    assert_eq!(charges.len(), 1);
    let c = &charges[0];
    assert_eq!((c.phase, c.amount, c.balance_after_minor), (ChargePhase::Completed, yen(5_000), Some(25_000)));
    assert_eq!(c.charge_id.as_deref(), Some(done.charge_id.as_str()));
    assert!(c.funding_ref.as_deref().is_some_and(|f| f.starts_with("auth_")), "{c:?}");
    wallet.records().close().await;
    let files = wallet_files(&config);
    assert!(contains(&files, &done.charge_id), "the charge is in the wallet's database");
    for secret in [GOOD_CARD, "4242 4242", "12/30"] {
        assert!(!contains(&files, secret), "{secret} must not be stored");
    }
    assert_eq!(format!("{:?}", card(GOOD_CARD)), "PaymentCardInput(***)");
}

#[tokio::test]
async fn each_refusal_gives_its_message_and_charges_nothing() {
    let w = World::new(41, 20_000).await;
    let config = w.wallet_config(&w.center_url);
    let cases = [
        ("4000000000000002", 1_000, "card_declined", "declined"),
        ("4000000000009995", 1_000, "insufficient_funds", "insufficient funds"),
        ("4000000000000069", 1_000, "expired_card", "expired"),
        ("4000000000000119", 1_000, "processing_error", "could not process"),
        ("4242424242424241", 1_000, "invalid_card_number", "not valid"),
        (GOOD_CARD, 90_000, "over_max_balance", "maximum balance"),
    ];
    for (number, amount, code, words) in cases {
        let e = kessai_wallet::charge(config.clone(), yen(amount), card(number), |_| {}).await.unwrap_err();
        let ChargeError::Declined { code: got, .. } = &e else { panic!("{code}: {e:?}") };
        assert_eq!(got.as_str(), code);
        let message = e.to_string();
        assert!(message.contains(words) && message.ends_with("Nothing was charged."), "{message}");
        assert!(!message.contains(number), "the card number is not echoed");
        assert_eq!(w.card_state().0, 20_000, "{code}: the card is unchanged");
    }
    let wallet = Wallet::open(config).await.unwrap();
    let charges = wallet.records().recent_charges(10).await.unwrap();
    assert_eq!(charges.len(), 6);
    assert!(charges.iter().all(|c| c.phase == ChargePhase::Failed), "{charges:?}");
    assert!(
        matches!(PaymentCardInput::parse("4242", "12/30", "123"), Err(ChargeError::BadCardInput(_))),
        "a short number is refused before anything is sent"
    );
}

#[tokio::test]
async fn a_value_update_that_does_not_verify_or_match_is_never_relayed() {
    for (n, tamper) in [(42, Tamper::ValueUpdateSignature), (43, Tamper::DebitByte)] {
        let w = World::new(n, 20_000).await;
        let (proxy_url, _stop) = proxy::start(&w, tamper.clone()).await;
        let wallet = Wallet::open(w.wallet_config(&proxy_url)).await.unwrap();
        let before = w.card_state();
        let e = wallet.charge(yen(5_000), card(GOOD_CARD), &mut |_| {}).await.unwrap_err();
        assert!(matches!(e, ChargeError::ValueUpdateRefused(_)), "{tamper:?}: {e}");
        assert!(e.to_string().contains("nothing was charged"), "{e}");
        assert_eq!(w.card_state(), before, "{tamper:?}: no CREDIT reached the card");
        let c = wallet.records().recent_charges(1).await.unwrap().remove(0);
        assert_eq!(c.phase, ChargePhase::Voided, "{c:?}");
        assert!(c.credit_answer.is_none(), "nothing was relayed");
        assert_eq!(center_charge_phase(&w, c.charge_id.as_deref().unwrap()).await, "voided");
    }
}

#[tokio::test]
async fn an_interrupted_charge_is_finished_by_recover_exactly_once() {
    let w = World::new(44, 20_000).await;
    let config = w.wallet_config(&w.center_url);
    let charge_id = {
        let wallet = Wallet::open(config.clone()).await.unwrap();
        let offered = wallet.begin_charge(yen(5_000), card(GOOD_CARD), &mut |_| {}).await.unwrap();
        let id = offered.charge_id().to_owned();
        let _relayed = wallet.relay_credit(offered).await.unwrap();
        wallet.records().close().await;
        id
        // The wallet "crashes": the card was credited, the center never heard.
    };
    assert_eq!(w.card_state().0, 25_000, "the card applied the CREDIT");
    assert_eq!(center_charge_phase(&w, &charge_id).await, "offered");

    let payments = kessai_wallet::recover(config.clone()).await.unwrap();
    assert!(payments.is_empty(), "no payments: {payments:?}");
    assert_eq!(center_charge_phase(&w, &charge_id).await, "completed");
    assert_eq!(w.card_state().0, 25_000, "credited once, not twice");

    let again = kessai_wallet::recover_charges(config.clone()).await.unwrap();
    assert!(again.is_empty(), "nothing left to recover: {again:?}");
    assert_eq!(w.card_state().0, 25_000);
    let wallet = Wallet::open(config).await.unwrap();
    let c = wallet.records().recent_charges(1).await.unwrap().remove(0);
    assert_eq!((c.phase, c.balance_after_minor), (ChargePhase::Completed, Some(25_000)));
}

mod pages {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use kessai_wallet::{ChargePhase, Wallet, web};

    use super::{GOOD_CARD, contains, wallet_files};
    use crate::world::{World, encode, form, input_value, send};

    fn get(path: &str) -> Request<Body> {
        Request::get(path).body(Body::empty()).unwrap()
    }

    fn charge_form(token: &str, amount: &str, number: &str) -> Request<Body> {
        let body = format!(
            "form_token={token}&currency=JPY&amount={amount}&card_number={}&expiry={}&cvc=123",
            encode(number),
            encode("12/30")
        );
        form("/charges", &body, "")
    }

    #[tokio::test]
    async fn charging_through_the_pages_shows_the_card_then_the_new_balance() {
        let w = World::new(45, 20_000).await;
        let config = w.wallet_config(&w.center_url);
        let wallet = Arc::new(Wallet::open(config.clone()).await.unwrap());
        let ui = web::router(Arc::clone(&wallet));

        let (_, _, top) = send(&ui, get("/")).await;
        assert!(top.contains("href=\"/charge\""), "the top page links to Charge: {top}");
        let (status, _, put) = send(&ui, get("/charge")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(put.contains("Put your card on the reader") && put.contains("href=\"/charge/card\""), "{put}");
        let (status, headers, page) = send(&ui, get("/charge/card")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page.contains("JPY 20,000"), "the balance read from the card: {page}");
        assert!(page.contains("No charges yet."), "the (empty) history");
        assert!(page.contains("autocomplete=\"cc-number\"") && page.contains("autocomplete=\"cc-csc\""), "{page}");
        assert!(page.contains("<label for=\"card_number\">"), "labelled fields");
        assert!(!page.contains("<script"), "no JavaScript");
        assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
        assert!(headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("default-src 'none'"));
        let token = input_value(&page, "form_token");
        // The amount is in the card's currency (L6: no hard-coded yen).
        assert_eq!(input_value(&page, "currency"), "JPY");
        assert!(page.contains("Amount (JPY)"), "{page}");
        let (status, _, refused) = send(&ui, charge_form(&token, "50.5", GOOD_CARD)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "yen have no fraction: {refused}");
        assert_eq!(w.card_state().0, 20_000);

        let (status, _, page) = send(&ui, charge_form("forged", "5000", GOOD_CARD)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "another site's form is refused: {page}");
        assert_eq!(w.card_state().0, 20_000);

        let (status, _, page) = send(&ui, charge_form(&token, "5000", "4000000000000002")).await;
        assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{page}");
        assert!(page.contains("Your credit card was declined. Nothing was charged."), "{page}");
        assert!(!page.contains("4000000000000002"), "the number is not echoed");
        assert_eq!(w.card_state().0, 20_000, "a decline changes nothing");

        let (status, _, page) = send(&ui, charge_form(&token, "5000", GOOD_CARD)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page.contains("Charge complete") && page.contains("JPY 25,000"), "the new balance: {page}");
        assert!(page.contains("href=\"/\""), "back to the top");
        assert!(!page.contains(GOOD_CARD), "{page}");
        assert_eq!(w.card_state().0, 25_000, "the card holds the value");

        let (_, _, page) = send(&ui, get("/charge/card")).await;
        assert!(page.contains("JPY 25,000") && page.contains("completed"), "the history shows it: {page}");
        let charges = wallet.records().recent_charges(10).await.unwrap();
        assert_eq!(charges[0].phase, ChargePhase::Completed);
        wallet.records().close().await;
        let files = wallet_files(&config);
        assert!(!contains(&files, GOOD_CARD) && !contains(&files, "4000000000000002"), "no card number stored");
    }
}
