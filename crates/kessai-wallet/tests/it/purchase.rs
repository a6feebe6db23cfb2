//! A cardholder pays through the wallet's web pages, the way a browser
//! posts the store's bill form.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use kessai_wallet::{LocalPhase, Wallet, web};

use crate::world::{World, encode, form, input_value, send};

pub fn settlement_of(consent_page: &str) -> String {
    let start = consent_page.find("action=\"/settlements/").unwrap() + "action=\"/settlements/".len();
    consent_page[start..].split('/').next().unwrap().to_owned()
}

async fn open_ui(w: &World) -> (Arc<Wallet>, axum::Router) {
    let wallet = Arc::new(Wallet::open(w.wallet_config(&w.center_url)).await.unwrap());
    let app = web::router(Arc::clone(&wallet));
    (wallet, app)
}

/// What a store's page posts: the bill, from the store's origin.
pub(crate) fn pay_form(bill: &str, return_url: &str) -> Request<Body> {
    let mut req = form("/pay", &format!("bill={}&return_url={}", encode(bill), encode(return_url)), "");
    req.headers_mut().insert(header::ORIGIN, "https://shop.kessai.test".parse().unwrap());
    req.headers_mut().insert("sec-fetch-site", "cross-site".parse().unwrap());
    req
}

/// The cardholder continues from the review page: same origin, with the
/// review form's fields.
fn start_form(review: &str) -> Request<Body> {
    form("/pay/start", &review_fields(review), "")
}

/// The review form's fields (bill, return URL, form token), form-encoded.
pub(crate) fn review_fields(review: &str) -> String {
    format!(
        "bill={}&return_url={}&form_token={}",
        encode(&input_value(review, "bill")),
        encode(&html_unescape(&input_value(review, "return_url"))),
        input_value(review, "form_token")
    )
}

fn html_unescape(s: &str) -> String {
    s.replace("&amp;", "&").replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">")
}

/// The store's page posts the bill; the cardholder reviews it and
/// continues: the consent page (or what refused).
async fn review_and_continue(
    ui: &axum::Router,
    bill: &str,
    return_url: &str,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let (status, _, review) = send(ui, pay_form(bill, return_url)).await;
    assert_eq!(status, StatusCode::OK, "{review}");
    assert!(review.contains("Review the bill"), "{review}");
    send(ui, start_form(&review)).await
}

#[tokio::test]
async fn paying_through_the_web_ui_shows_consent_then_returns_to_the_store_with_a_verified_receipt() {
    let w = World::new(1, 20_000).await;
    let (wallet, ui) = open_ui(&w).await;
    let (order, bill, return_url) = w.order(&[("ebook-kessai-001", 2)]).await;

    let (status, headers, page) = review_and_continue(&ui, &bill, &return_url).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Kessai Books"), "the store's name: {page}");
    assert!(page.contains("A Short Guide to Stored Value"), "the items");
    assert!(page.contains("JPY 2,400"), "the amount");
    assert!(page.contains("JPY 20,000"), "the balance now");
    assert!(page.contains("JPY 17,600"), "the balance after");
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY", "the consent page cannot be framed");
    assert_eq!(w.card_state().0, 20_000, "nothing is taken before consent");

    let settlement = settlement_of(&page);
    let token = input_value(&page, "consent_token");
    let consent = form(&format!("/settlements/{settlement}/consent"), &format!("consent_token={token}"), "");
    let (status, _, page) = send(&ui, consent).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("http-equiv=\"refresh\""), "the processing page refreshes without JavaScript");
    assert_eq!(w.card_state().0, 17_600, "the card paid once");

    let mut location = None;
    for _ in 0..100 {
        let get = Request::get(format!("/settlements/{settlement}")).body(Body::empty()).unwrap();
        let (status, headers, _) = send(&ui, get).await;
        if status == StatusCode::SEE_OTHER {
            location = Some(headers[header::LOCATION].to_str().unwrap().to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(location.as_deref(), Some(return_url.as_str()), "back to the store once SIG4 verified");
    assert!(w.order_page(&order).await.contains("Payment received"), "the store's order is paid");
    assert_eq!(w.card_state().0, 17_600, "charged exactly once");
    let record = wallet.record(&settlement).await.unwrap();
    assert_eq!(record.phase, LocalPhase::Receipted);
    assert!(record.receipt.is_some() && record.completion.is_some());
    let home = send(&ui, Request::get("/").body(Body::empty()).unwrap()).await.2;
    assert!(home.contains("receipted") && home.contains("JPY 17,600"), "history and balance: {home}");

    // M7: two days later the stored receipt, long past its `exp`, is still
    // the verified proof it was when it was recorded.
    let later = kessai_core::time::FixedClock::new(kessai_core::time::Timestamp::from_unix_s(
        u64::try_from(record.updated_at).unwrap() + 2 * 86_400,
    ));
    let aged = Wallet::open(w.wallet_config(&w.center_url)).await.unwrap().with_clock(Arc::new(later));
    let view = aged.poll_receipt(&settlement).await.unwrap().expect("the recorded receipt");
    assert_eq!(view.order_id, order);

    // M3: a receipt is checked against the keys the center vouches for the
    // store, not what the store's web host serves: once the operator
    // revokes the mall's key, its receipts prove nothing, though the
    // store's host still serves that key.
    let path = w.tmp.path().join("center").join("center.sqlite");
    let db = kessai_center::db::CenterDb::open(&format!("sqlite:{}", path.display())).await.unwrap();
    let mall = kessai_core::ids::PartyId::parse("kessai-mall").unwrap();
    for key in db.store_keys().await.unwrap().jwks(Some(&mall)).keys {
        let trail = kessai_center::console::Actor::api("test").did(
            "store_key_revoked",
            &key.kid,
            serde_json::Value::Null,
            serde_json::Value::Null,
        );
        db.revoke_store_key(
            &kessai_core::jwk::KeyId::parse(&key.kid).unwrap(),
            kessai_core::time::Timestamp::from_unix_s(0),
            trail,
        )
        .await
        .unwrap();
    }
    db.close().await;
    tokio::time::sleep(Duration::from_millis(1_200)).await; // the serving center's key cache
    let refused = wallet.poll_receipt(&settlement).await.unwrap_err();
    assert!(matches!(refused, kessai_wallet::PayError::ReceiptUnverified(_)), "{refused}");
}

#[tokio::test]
async fn cancelling_at_consent_charges_nothing_and_voids_the_settlement() {
    let w = World::new(2, 20_000).await;
    let (wallet, ui) = open_ui(&w).await;
    let (_, bill, return_url) = w.order(&[("ebook-kessai-001", 1)]).await;
    let before = w.card_state();
    let (status, _, page) = review_and_continue(&ui, &bill, &return_url).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let settlement = settlement_of(&page);
    let token = input_value(&page, "consent_token");

    let wrong = form(&format!("/settlements/{settlement}/cancel"), "consent_token=not-this-one", "");
    assert_eq!(send(&ui, wrong).await.0, StatusCode::FORBIDDEN, "a form from elsewhere cannot cancel");
    let cancel = form(&format!("/settlements/{settlement}/cancel"), &format!("consent_token={token}"), "");
    let (status, _, page) = send(&ui, cancel).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Cancelled; nothing was charged."), "{page}");
    assert!(page.contains(&format!("href=\"{return_url}\"")), "a link back to the store");
    assert_eq!(w.card_state(), before, "the card is untouched");
    assert_eq!(w.center_phase(&settlement).await, "voided");
    assert_eq!(wallet.record(&settlement).await.unwrap().phase, LocalPhase::Voided);
    let consent = form(&format!("/settlements/{settlement}/consent"), &format!("consent_token={token}"), "");
    assert_eq!(send(&ui, consent).await.0, StatusCode::CONFLICT, "a cancelled payment cannot be agreed to");
    assert_eq!(w.card_state(), before);
}

#[tokio::test]
async fn insufficient_balance_is_said_plainly_and_nothing_is_charged() {
    let w = World::new(3, 1_000).await;
    let (wallet, ui) = open_ui(&w).await;
    let (_, bill, return_url) = w.order(&[("ebook-kessai-001", 1)]).await;
    let (status, _, page) = review_and_continue(&ui, &bill, &return_url).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{page}");
    assert!(
        page.contains("Insufficient balance: your card holds JPY 1,000; the bill is JPY 1,200. Nothing was charged."),
        "{page}"
    );
    assert_eq!(w.card_state().0, 1_000);
    let records = wallet.records().recent(10).await.unwrap();
    assert_eq!(records[0].phase, LocalPhase::Voided);
}

#[tokio::test]
async fn a_return_url_that_is_not_https_is_refused_before_anything_happens() {
    let w = World::new(4, 20_000).await;
    let (wallet, ui) = open_ui(&w).await;
    let (_, bill, _) = w.order(&[("ebook-kessai-001", 1)]).await;
    let (status, _, page) = send(&ui, pay_form(&bill, "http://evil.example/steal")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(!page.contains("href=\"http://evil"), "no link to it");
    assert!(wallet.records().recent(10).await.unwrap().is_empty(), "no settlement was opened");
}

/// H1: a page on another host name rebound to 127.0.0.1, or on another
/// origin, gets nothing from the wallet and cannot make the card pay: its
/// `Host` is refused, and a consent posted from another origin (even with a
/// consent token read by the cardholder's own page) changes nothing.
#[tokio::test]
async fn a_page_on_another_host_or_origin_cannot_read_or_pay() {
    let w = World::new(3, 20_000).await;
    let (_wallet, ui) = open_ui(&w).await;
    let rebound = |mut req: Request<Body>| {
        req.headers_mut().insert(header::HOST, "rebound.example:8480".parse().unwrap());
        req
    };
    // 1. A rebound page reads nothing and starts nothing.
    let home = send(&ui, rebound(Request::get("/").body(Body::empty()).unwrap())).await;
    assert_eq!(home.0, StatusCode::FORBIDDEN);
    assert!(!home.2.contains("JPY 20,000"), "no balance leaks: {}", home.2);
    let (_, bill, return_url) = w.order(&[("ebook-kessai-001", 1)]).await;
    let refused = send(&ui, rebound(pay_form(&bill, &return_url))).await;
    assert_eq!(refused.0, StatusCode::FORBIDDEN);
    assert!(!refused.2.contains("consent_token"), "no consent token leaks");

    // 2. The cardholder's own page shows the consent; a post from another
    //    origin, or one the browser marks cross-site, is refused.
    let (status, _, page) = review_and_continue(&ui, &bill, &return_url).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let settlement = settlement_of(&page);
    let token = input_value(&page, "consent_token");
    let path = format!("/settlements/{settlement}/consent");
    let body = format!("consent_token={token}");
    let mut foreign = form(&path, &body, "");
    foreign.headers_mut().insert(header::ORIGIN, "http://rebound.example:8480".parse().unwrap());
    assert_eq!(send(&ui, foreign).await.0, StatusCode::FORBIDDEN);
    let mut no_origin = form(&path, &body, "");
    no_origin.headers_mut().remove(header::ORIGIN);
    assert_eq!(send(&ui, no_origin).await.0, StatusCode::FORBIDDEN, "a post without an Origin (curl)");
    let mut cross_site = form(&path, &body, "");
    cross_site.headers_mut().insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_eq!(send(&ui, cross_site).await.0, StatusCode::FORBIDDEN);
    assert_eq!(w.card_state().0, 20_000, "nothing was paid");

    // 3. The cardholder's own consent goes through.
    let (status, _, page) = send(&ui, form(&path, &body, "")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(w.card_state().0, 20_000 - 1_200, "paid once, on the cardholder's consent");
}

/// M2: a page on any site can post bills to `/pay` (that is how stores
/// hand them over), but that only shows the bill: nothing reaches the
/// center and nothing is held until the cardholder continues from the
/// wallet's own page, with its form token. Another site cannot continue
/// for them, and an offer the cardholder leaves unanswered is cancelled by
/// the wallet, its hold released.
#[tokio::test]
async fn a_bill_posted_from_any_site_holds_nothing_until_the_cardholder_continues() {
    let w = World::new(5, 20_000).await;
    let (wallet, ui) = open_ui(&w).await;
    // 1. Hidden forms post bills: each only renders a review.
    let mut reviews = Vec::new();
    for _ in 0..3 {
        let (_, bill, return_url) = w.order(&[("ebook-kessai-001", 1)]).await;
        let (status, _, review) = send(&ui, pay_form(&bill, &return_url)).await;
        assert_eq!(status, StatusCode::OK, "{review}");
        assert!(review.contains("Nothing has been sent to the center"), "{review}");
        reviews.push(review);
    }
    assert!(wallet.records().recent(10).await.unwrap().is_empty(), "no settlement was opened");
    assert_eq!(w.center_float().await, (20_000, 0), "nothing is held on the card");
    // 2. Continuing from another site, or without the form token, is
    //    refused and starts nothing.
    let mut foreign = start_form(&reviews[0]);
    foreign.headers_mut().insert(header::ORIGIN, "https://shop.kessai.test".parse().unwrap());
    assert_eq!(send(&ui, foreign).await.0, StatusCode::FORBIDDEN);
    let bill = encode(&input_value(&reviews[0], "bill"));
    let return_url = encode(&html_unescape(&input_value(&reviews[0], "return_url")));
    let guessed = form("/pay/start", &format!("bill={bill}&return_url={return_url}&form_token=0000"), "");
    assert_eq!(send(&ui, guessed).await.0, StatusCode::FORBIDDEN);
    assert!(wallet.records().recent(10).await.unwrap().is_empty(), "still nothing opened");
    // 3. The cardholder continues: the offer holds the amount; left
    //    unanswered past the offer's lifetime, the wallet cancels it.
    let (status, _, consent) = send(&ui, start_form(&reviews[1])).await;
    assert_eq!(status, StatusCode::OK, "{consent}");
    assert_eq!(w.center_float().await, (20_000, 1_200), "held while the cardholder decides");
    let settlement = settlement_of(&consent);
    assert!(wallet.cancel_abandoned(wallet.now_s()).await.unwrap().is_empty(), "not yet abandoned");
    let later = wallet.now_s() + i64::try_from(kessai_wallet::limits::ABANDONED_OFFER_S).unwrap() + 1;
    let ended = wallet.cancel_abandoned(later).await.unwrap();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(w.center_phase(&settlement).await, "voided");
    assert_eq!(w.center_float().await, (20_000, 0), "the hold is released");
    assert_eq!(wallet.record(&settlement).await.unwrap().phase, LocalPhase::Voided);
    assert_eq!(w.card_state().0, 20_000, "nothing was paid");
}

/// M3: the store signs its web origin into the bill; a page that posts a
/// genuine bill with a return URL anywhere else (to phish, or to make the
/// wallet fetch keys there) is refused before anything happens, and no
/// link to it is shown.
#[tokio::test]
async fn a_return_url_outside_the_store_origin_in_the_bill_is_refused() {
    let w = World::new(7, 20_000).await;
    let (wallet, ui) = open_ui(&w).await;
    let (_, bill, return_url) = w.order(&[("ebook-kessai-001", 1)]).await;
    let origin = kessai_core::messages::WebOrigin::of_url(&return_url).unwrap();
    let lookalike = format!("{}.phish.example/orders/x/complete", origin.as_str());
    for elsewhere in ["https://phish.example/orders/x/complete", lookalike.as_str(), "https://127.0.0.2:1/x"] {
        let (status, _, page) = send(&ui, pay_form(&bill, elsewhere)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{elsewhere}: {page}");
        assert!(!page.contains(&format!("href=\"{elsewhere}")), "no link to it: {page}");
    }
    assert!(wallet.records().recent(10).await.unwrap().is_empty(), "no settlement was opened");
    // The store's own return URL is accepted.
    let (status, _, review) = send(&ui, pay_form(&bill, &return_url)).await;
    assert_eq!(status, StatusCode::OK, "{review}");
}

/// A purchase in each profile through the wallet's pages, against a real
/// center and store, its round trips to the center counted by a proxy:
/// `offer` takes 3 (with SIG2), `confirmed` and `direct` 2 (no SIG2; the
/// review shows the balance the wallet read from the card first, FIG. 21).
#[tokio::test]
async fn a_purchase_in_each_profile_takes_its_round_trips_and_is_receipted() {
    use kessai_core::profile::Profile;
    for (n, profile) in [(21, Profile::Offer), (22, Profile::Confirmed), (23, Profile::Direct)] {
        let w = World::new(n, 20_000).await;
        let (proxy_url, _stop, calls) = crate::proxy::start_counting(&w, crate::proxy::Tamper::Nothing).await;
        let config = kessai_wallet::WalletConfig { profile, ..w.wallet_config(&proxy_url) };
        let wallet = Arc::new(Wallet::open(config).await.unwrap());
        let ui = web::router(Arc::clone(&wallet));
        let (order, bill, return_url) = w.order(&[("ebook-kessai-001", 1)]).await;

        let (status, _, review) = send(&ui, pay_form(&bill, &return_url)).await;
        assert_eq!(status, StatusCode::OK, "{review}");
        let shows_balance = review.contains("id=\"card-balance\"");
        assert_eq!(shows_balance, profile != Profile::Offer, "{profile}: the card's balance on the review: {review}");
        assert!(calls.lock().unwrap().is_empty(), "{profile}: nothing sent to the center before continuing");
        let (status, _, page) = send(&ui, start_form(&review)).await;
        assert_eq!(status, StatusCode::OK, "{profile}: {page}");
        assert!(page.contains("JPY 1,200") && page.contains("JPY 18,800"), "{profile}: amount and balance after");
        assert_eq!(page.contains("id=\"unsigned\""), profile != Profile::Offer, "{profile}: {page}");
        assert_eq!(w.card_state().0, 20_000, "{profile}: nothing taken before consent");
        let settlement = settlement_of(&page);
        let token = input_value(&page, "consent_token");
        let consent = form(&format!("/settlements/{settlement}/consent"), &format!("consent_token={token}"), "");
        let (status, _, page) = send(&ui, consent).await;
        assert_eq!(status, StatusCode::OK, "{profile}: {page}");
        assert_eq!(w.card_state().0, 18_800, "{profile}: the card paid once");
        let steps: Vec<String> =
            calls.lock().unwrap().iter().filter(|c| c.starts_with("POST /v1/settlements")).cloned().collect();
        assert_eq!(steps.len(), profile.round_trips(), "{profile}: {steps:?}");
        for _ in 0..100 {
            if wallet.poll_receipt(&settlement).await.unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(wallet.record(&settlement).await.unwrap().phase, LocalPhase::Receipted, "{profile}");
        assert!(w.order_page(&order).await.contains("Payment received"), "{profile}: the store's order is paid");
        assert_eq!(w.center_phase(&settlement).await, "completed", "{profile}");
    }
}

/// Cancelling at consent in the second embodiment: the sealed DEBIT was
/// handed out with the create, so the wallet ends it through recovery; the
/// card proves it never applied it and the hold is released.
#[tokio::test]
async fn cancelling_a_second_embodiment_purchase_at_consent_charges_nothing() {
    let w = World::new(24, 20_000).await;
    let config = kessai_wallet::WalletConfig {
        profile: kessai_core::profile::Profile::Confirmed,
        ..w.wallet_config(&w.center_url)
    };
    let wallet = Arc::new(Wallet::open(config).await.unwrap());
    let ui = web::router(Arc::clone(&wallet));
    let (_, bill, return_url) = w.order(&[("ebook-kessai-001", 1)]).await;
    let (status, _, page) = review_and_continue(&ui, &bill, &return_url).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let settlement = settlement_of(&page);
    let token = input_value(&page, "consent_token");
    let cancel = form(&format!("/settlements/{settlement}/cancel"), &format!("consent_token={token}"), "");
    let (status, _, page) = send(&ui, cancel).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(w.card_state().0, 20_000, "nothing charged");
    assert_eq!(w.center_phase(&settlement).await, "voided");
    assert_eq!(wallet.record(&settlement).await.unwrap().phase, LocalPhase::Voided);
}

/// The card's own history in the wallet's pages (#20): read through the
/// center on the cardholder's click only; the center keeps what it read.
#[tokio::test]
async fn the_cards_history_is_shown_on_the_cardholders_click_only() {
    let w = World::new(25, 20_000).await;
    let (wallet, ui) = open_ui(&w).await;
    let (_, bill, return_url) = w.order(&[("ebook-kessai-001", 1)]).await;
    let (status, _, page) = review_and_continue(&ui, &bill, &return_url).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let settlement = settlement_of(&page);
    let token = input_value(&page, "consent_token");
    let consent = form(&format!("/settlements/{settlement}/consent"), &format!("consent_token={token}"), "");
    assert_eq!(send(&ui, consent).await.0, StatusCode::OK);

    let (status, _, ask) = send(&ui, Request::get("/card").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{ask}");
    let form_token = input_value(&ask, "form_token");
    // Another site's post, or a guessed token: nothing is read.
    let mut foreign = form("/card/history", &format!("form_token={form_token}"), "");
    foreign.headers_mut().insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    assert_eq!(send(&ui, foreign).await.0, StatusCode::FORBIDDEN);
    assert_eq!(send(&ui, form("/card/history", "form_token=guess", "")).await.0, StatusCode::FORBIDDEN);
    let (status, _, history) = send(&ui, form("/card/history", &format!("form_token={form_token}"), "")).await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert_eq!(history.matches("<tr class=").count(), 2, "the funding and the purchase: {history}");
    assert!(history.contains("JPY 1,200") && history.contains("JPY 18,800"), "{history}");
    assert_eq!(w.card_state().0, 18_800, "reading moved nothing");
    drop(wallet);
}
