//! SIG3 in, SIG4 out: checks, idempotency, rotation, mutual TLS.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::http::StatusCode;
use kessai_core::digest::Sha256Digest;
use kessai_core::ids::{PartyId, StoreId};
use kessai_core::keys::{KeyDirectory, SigningKey};
use kessai_core::messages::completion::CompletionDraft;
use kessai_core::messages::receipt::{self, DeliveryKind};
use kessai_core::random::OsRandom;
use kessai_core::{Currency, Money};
use kessai_http::HttpsClient;
use kessai_tls::client_config;

use crate::support::*;

#[tokio::test]
async fn a_valid_completion_marks_the_order_paid_and_returns_a_receipt_repeats_get_the_same() {
    let w = world().await;
    let order_id = place_order(&w, "bookshop", &[("ebook-kessai-001", 1)]).await;
    let (bill_token, bill) = bill_of(&w, &order_id).await;
    let completion = sign_completion(&w, &w.center_key, completion_for(&w, &bill_token, bill.message()));
    let first = deliver(&w, &completion, Some("center")).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let receipt_token = first.json()["receipt"].as_str().unwrap().to_owned();

    let verified = receipt::verify(&receipt_token, &mall_keys(&w).await, w.clock.as_ref()).unwrap();
    let r = verified.message();
    assert_eq!(r.completion_hash(), Sha256Digest::of_token(&completion));
    assert_eq!(r.order_id().as_str(), order_id);
    assert_eq!(r.store().as_str(), "kessai-mall");
    assert_eq!(r.member().unwrap().as_str(), "bookshop", "the right member is credited");
    assert_eq!(r.delivery().kind, DeliveryKind::Download);
    assert_eq!(
        r.delivery().reference.as_ref().unwrap().as_str(),
        format!("https://shop.kessai.test/orders/{order_id}/complete")
    );

    let row = w.state.db.order(&order_id).await.unwrap().unwrap();
    assert!(row.paid);
    for _ in 0..2 {
        let again = deliver(&w, &completion, Some("center")).await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(again.body, first.body, "a repeat gets the same receipt byte for byte");
    }
    // Even after the completion token itself expired, a repeat is answered.
    w.clock.advance_s(3_600);
    assert_eq!(deliver(&w, &completion, Some("center")).await.body, first.body);

    // A different completion for the paid order is a conflict.
    let other = sign_completion(&w, &w.center_key, completion_for(&w, &bill_token, bill.message()));
    let conflict = deliver(&w, &other, Some("center")).await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    assert_eq!(conflict.json()["error"]["code"], "order_already_paid");
}

type Tweak = fn(&mut CompletionDraft);
/// label, peer certificate name, change, signing key (default: the center's), status, error code.
type Case<'a> = (&'a str, Option<&'a str>, Tweak, Option<&'a SigningKey>, StatusCode, &'a str);

#[tokio::test]
async fn refused_completions_change_nothing() {
    let w = world().await;
    let order_id = place_order(&w, "bookshop", &[("ebook-kessai-001", 1)]).await;
    let (bill_token, bill) = bill_of(&w, &order_id).await;
    let stranger = SigningKey::generate(&mut OsRandom);
    let cases: Vec<Case<'_>> = vec![
        (
            "wrong amount",
            Some("center"),
            |d| d.amount = Money::new(1_199, Currency::JPY).unwrap(),
            None,
            StatusCode::CONFLICT,
            "amount_mismatch",
        ),
        (
            "wrong currency",
            Some("center"),
            |d| d.amount = Money::new(1_200, Currency::USD).unwrap(),
            None,
            StatusCode::CONFLICT,
            "amount_mismatch",
        ),
        (
            "unknown order",
            Some("center"),
            |d| d.bill_hash = Sha256Digest::of(b"no such bill"),
            None,
            StatusCode::NOT_FOUND,
            "unknown_order",
        ),
        (
            "another member store",
            Some("center"),
            |d| d.member = Some(StoreId::parse("record-shop").unwrap()),
            None,
            StatusCode::CONFLICT,
            "wrong_member",
        ),
        (
            "another mall",
            Some("center"),
            |d| d.store = StoreId::parse("other-mall").unwrap(),
            None,
            StatusCode::CONFLICT,
            "wrong_store",
        ),
        (
            "key the center never published",
            Some("center"),
            |_| {},
            Some(&stranger),
            StatusCode::BAD_REQUEST,
            "completion_unknown_key",
        ),
        ("no client certificate", None, |_| {}, None, StatusCode::UNAUTHORIZED, "client_certificate_required"),
        (
            "a member's certificate, not the center's",
            Some("bookshop"),
            |_| {},
            None,
            StatusCode::FORBIDDEN,
            "not_the_center",
        ),
        (
            // L3: the center's name on a store's certificate is a store's.
            "a store's certificate named center",
            Some("store/center"),
            |_| {},
            None,
            StatusCode::FORBIDDEN,
            "not_the_center",
        ),
    ];
    for (label, peer, tweak, key, status, code) in cases {
        let mut draft = completion_for(&w, &bill_token, bill.message());
        tweak(&mut draft);
        let token = sign_completion(&w, key.unwrap_or(&w.center_key), draft);
        let a = deliver(&w, &token, peer).await;
        assert_eq!(a.status, status, "{label}: {}", a.body);
        assert_eq!(a.json()["error"]["code"], code, "{label}");
        let row = w.state.db.order(&order_id).await.unwrap().unwrap();
        assert!(!row.paid && row.receipt_token.is_none(), "{label}: the order is unchanged");
    }

    // A bad signature: the right key, a flipped byte in the signature.
    let good = sign_completion(&w, &w.center_key, completion_for(&w, &bill_token, bill.message()));
    let (head, sig) = good.rsplit_once('.').unwrap();
    let (first, rest) = sig.split_at(1);
    let flipped = format!("{}{rest}", if first == "A" { "B" } else { "A" });
    let a = deliver(&w, &format!("{head}.{flipped}"), Some("center")).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json()["error"]["code"], "bad_signature");
    assert_eq!(a.json()["error"]["param"], "completion");
    // Garbage JSON.
    let junk = deliver(&w, "not-a-token", Some("center")).await;
    assert_eq!(junk.json()["error"]["code"], "invalid_completion");
    assert!(!w.state.db.order(&order_id).await.unwrap().unwrap().paid);

    // And the untouched order can still be paid properly.
    assert_eq!(deliver(&w, &good, Some("center")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_center_keys_rotate_and_unknown_kids_refetch_at_a_bounded_rate() {
    let w = world().await;
    let order_a = place_order(&w, "bookshop", &[("ebook-kessai-001", 1)]).await;
    let order_b = place_order(&w, "bookshop", &[("ebook-kessai-001", 2)]).await;
    let (token_a, bill_a) = bill_of(&w, &order_a).await;
    let first = sign_completion(&w, &w.center_key, completion_for(&w, &token_a, bill_a.message()));
    assert_eq!(deliver(&w, &first, Some("center")).await.status, StatusCode::OK);
    assert_eq!(w.center.fetches.load(Ordering::SeqCst), 1, "fetched once, then cached");

    // The center rotates to a new key; the store learns it on first sight.
    let next = SigningKey::generate(&mut OsRandom);
    w.center.publish(&[&next]);
    let (token_b, bill_b) = bill_of(&w, &order_b).await;
    let second = sign_completion(&w, &next, completion_for(&w, &token_b, bill_b.message()));
    let a = deliver(&w, &second, Some("center")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(w.center.fetches.load(Ordering::SeqCst), 2);
    // The retired key is gone from the center's JWKS, so it no longer verifies.
    let order_c = place_order(&w, "bookshop", &[("print-poster-01", 1)]).await;
    let (token_c, bill_c) = bill_of(&w, &order_c).await;
    let old = sign_completion(&w, &w.center_key, completion_for(&w, &token_c, bill_c.message()));
    assert_eq!(deliver(&w, &old, Some("center")).await.json()["error"]["code"], "completion_unknown_key");
}

#[tokio::test]
async fn unknown_kids_cannot_make_the_store_hammer_the_center() {
    let w = world_with(|c| c.center.jwks_refetch_min_interval_ms = 60_000).await;
    let order_id = place_order(&w, "bookshop", &[("ebook-kessai-001", 1)]).await;
    let (token, bill) = bill_of(&w, &order_id).await;
    for _ in 0..5 {
        let forged =
            sign_completion(&w, &SigningKey::generate(&mut OsRandom), completion_for(&w, &token, bill.message()));
        assert_eq!(deliver(&w, &forged, Some("center")).await.status, StatusCode::BAD_REQUEST);
    }
    assert_eq!(w.center.fetches.load(Ordering::SeqCst), 1, "one fetch, then the refetch bound holds");
}

#[tokio::test]
async fn completions_arrive_over_real_mutual_tls_from_the_center_only() {
    let w = world().await;
    let order_id = place_order(&w, "bookshop", &[("ebook-kessai-001", 1)]).await;
    let (bill_token, bill) = bill_of(&w, &order_id).await;
    let completion = sign_completion(&w, &w.center_key, completion_for(&w, &bill_token, bill.message()));

    let tls = Arc::new(kessai_store::server_tls(&w.config).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://127.0.0.1:{}/v1/completions", listener.local_addr().unwrap().port());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(kessai_http::serve(kessai_store::router(w.state.clone()), listener, tls, async {
        let _ = rx.await;
    }));
    let body = serde_json::json!({ "completion": completion });
    let ca = w.ca.ca_cert();

    let browser = HttpsClient::new(client_config(&ca, None).unwrap(), 5_000);
    let (status, answer) = browser.post_json(&url, &body, &[]).await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer:?}");
    let member = HttpsClient::new(client_config(&ca, Some((&w.ca, "bookshop"))).unwrap(), 5_000);
    let (status, _) = member.post_json(&url, &body, &[]).await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!w.state.db.order(&order_id).await.unwrap().unwrap().paid);

    let center = HttpsClient::new(client_config(&ca, Some((&w.ca, "center"))).unwrap(), 5_000);
    let (status, answer) = center.post_json(&url, &body, &[]).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{answer:?}");
    let receipt: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    let mut keys = KeyDirectory::new();
    keys.insert_jwks(
        &PartyId::parse("kessai-mall").unwrap(),
        get(&w.app, "/.well-known/jwks.json").await.body.as_bytes(),
    )
    .unwrap();
    assert!(receipt::verify(receipt["receipt"].as_str().unwrap(), &keys, w.clock.as_ref()).is_ok());
    // Browsers (no certificate) still get the shop's pages on the same port.
    let (status, _) = browser.get(&url.replace("/v1/completions", "/")).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// M7: the store was unreachable until the completion expired. Delivered by
/// the center over mutual TLS, it still pays the order (verified as of its
/// own lifetime); expired or not, a forged one is refused as before.
#[tokio::test]
async fn a_completion_that_expired_before_the_store_could_be_reached_still_pays_the_order() {
    let w = world().await;
    let order_id = place_order(&w, "bookshop", &[("ebook-kessai-001", 1)]).await;
    let (bill_token, bill) = bill_of(&w, &order_id).await;
    let completion = sign_completion(&w, &w.center_key, completion_for(&w, &bill_token, bill.message()));
    let stranger = SigningKey::generate(&mut OsRandom);
    let forged = sign_completion(&w, &stranger, completion_for(&w, &bill_token, bill.message()));
    // A day later (the completion lived 600 s).
    w.clock.advance_s(86_400);
    let refused = deliver(&w, &forged, Some("center")).await;
    assert_eq!(
        (refused.status, refused.json()["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("completion_unknown_key"))
    );
    assert!(!w.state.db.order(&order_id).await.unwrap().unwrap().paid);
    let paid = deliver(&w, &completion, Some("center")).await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.body);
    assert!(w.state.db.order(&order_id).await.unwrap().unwrap().paid);
    // Not from the center, even a fresh one is refused.
    let other = sign_completion(&w, &w.center_key, completion_for(&w, &bill_token, bill.message()));
    assert_eq!(deliver(&w, &other, Some("bookshop")).await.status, StatusCode::FORBIDDEN);
}
