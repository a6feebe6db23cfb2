//! The center as it runs: HTTPS on loopback with certificates from a local
//! CA, the admin API behind the admin's client certificate, a wallet that
//! only relays, and a store (built on the merchant library) that receives
//! SIG3 over mutual TLS and answers SIG4 — first down, then up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Extension, Json, Router};
use kessai_center::config::CenterConfig;
use kessai_center::keystore::{self, Kek};
use kessai_core::ids::{OrderId, PartyId, StoreId};
use kessai_core::keys::{KeyDirectory, SigningKey};
use kessai_core::messages::DisplayText;
use kessai_core::messages::bill::LineItem;
use kessai_core::messages::receipt::{Delivery, DeliveryKind};
use kessai_core::random::{OsRandom, SeededRandom};
use kessai_core::time::SystemClock;
use kessai_core::{Currency, Money};
use kessai_http::{HttpsClient, PeerIdentity};
use kessai_merchant::{BillRequest, Merchant, OpenOrder};
use kessai_tls::{CaDir, ClientAuth, Party, Role};
use serde_json::{Value, json};

use crate::world::{access_for, card_id, funded_card, keep_access, masters, relay_json};

struct TestStore {
    merchant: Merchant,
    center_keys: KeyDirectory,
    order: OpenOrder,
    accepted: std::sync::Mutex<u32>,
}

async fn completions(
    State(store): State<Arc<TestStore>>,
    peer: Option<Extension<PeerIdentity>>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, kessai_http::ApiError> {
    let Some(Extension(PeerIdentity { name, .. })) = peer else {
        return Err(kessai_http::ApiError::new(kessai_http::ErrorCode::ClientCertificateRequired, "x"));
    };
    assert_eq!(name, "center", "only the center delivers completions");
    let token = body["completion"].as_str().unwrap_or_default();
    let paid = store
        .merchant
        .check_completion(token, &store.center_keys, &store.order, &SystemClock)
        .map_err(|e| kessai_http::ApiError::new(kessai_http::ErrorCode::InvalidCompletion, e.to_string()))?;
    let delivery = Delivery { kind: DeliveryKind::None, reference: None };
    let receipt = store.merchant.sign_receipt(&paid, delivery, 3600, &mut OsRandom, &SystemClock).unwrap();
    *store.accepted.lock().unwrap() += 1;
    Ok(Json(json!({ "receipt": receipt })))
}

fn center_config(dir: &std::path::Path) -> CenterConfig {
    let text = format!(
        r#"party_id = "center"
listen = "127.0.0.1:0"
public_url = "https://127.0.0.1"
data_dir = "{}"
kek_file = "{}"
delivery_interval_ms = 50
[tls]
ca_dir = "{}"
server_name = "localhost"
client_name = "center"
"#,
        dir.join("center").display(),
        dir.join("center-kek.hex").display(),
        dir.join("ca").display()
    );
    CenterConfig::from_toml(&text).unwrap()
}

async fn wallet_post(c: &HttpsClient, url: &str, key: &str, body: &Value) -> (u16, Value) {
    let bearer = access_for(url);
    let mut headers = vec![("idempotency-key", key)];
    headers.extend(bearer.iter().map(|b| ("authorization", b.as_str())));
    let (status, bytes) = c.post_json(url, body, &headers).await.unwrap();
    let answer = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    keep_access(&answer);
    (status.as_u16(), answer)
}

/// GETs a settlement's path as its wallet: with its access token.
async fn wallet_get(c: &HttpsClient, url: &str) -> (axum::http::StatusCode, axum::body::Bytes) {
    let bearer = access_for(url).expect("the wallet was handed the access token");
    let (status, _, bytes) = c.get_with(url, &[("authorization", &bearer)]).await.unwrap();
    (status, bytes)
}

#[tokio::test]
async fn purchase_over_tls_with_admin_mtls_and_delivery_to_a_store_that_comes_up_late() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = CaDir::new(tmp.path().join("ca"));
    ca.init().unwrap();
    ca.issue(Role::Server, "localhost", &["127.0.0.1".into()]).unwrap();
    for (client, party) in [("center", Party::Center), ("admin", Party::Operator), ("someone", Party::Store)] {
        ca.issue(Role::Client(party), client, &[]).unwrap();
    }
    // The issuer's master keys, sealed under a KEK, before the center starts.
    let config = center_config(tmp.path());
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let kek = Kek::generate(&mut OsRandom);
    kessai_tls::write_new_file(config.kek_file.as_deref().unwrap(), kek.to_hex().as_bytes(), true).unwrap();
    let sealed = keystore::seal(&BTreeMap::from([(1u8, masters(0x40))]), &kek, &mut OsRandom);
    kessai_tls::write_new_file(&config.data_dir.join("issuer-master-keys.sealed"), &sealed, true).unwrap();
    kessai_center::app::init(&config, None).await.unwrap();
    let center = Arc::new(kessai_center::app::open(&config).await.unwrap());
    let center_public = center.center_key.public();
    let held = center.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let center_url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let config = config.clone();
        async move {
            kessai_center::app::serve_on(&config, center, listener, async {
                let _ = stop_rx.await;
            })
            .await
        }
    });

    // The store: keys, an open order, and a port it will listen on later.
    let mut rng = SeededRandom::new(5);
    let mall = StoreId::parse("kessai-mall").unwrap();
    let merchant = Merchant::new(mall.clone(), SigningKey::generate(&mut rng), PartyId::parse("center").unwrap());
    let line =
        LineItem::new("ebook", DisplayText::parse("E-book").unwrap(), 1, Money::new(3_000, Currency::JPY).unwrap())
            .unwrap();
    let bill_for = |order: &str| BillRequest {
        order_id: OrderId::parse(order).unwrap(),
        member: None,
        store_name: DisplayText::parse("Kessai Mall").unwrap(),
        lines: vec![
            LineItem::new("ebook", DisplayText::parse("E-book").unwrap(), 1, Money::new(3_000, Currency::JPY).unwrap())
                .unwrap(),
        ],
        lifetime_s: 900,
        origin: kessai_core::messages::WebOrigin::parse("https://shop.kessai.test").unwrap(),
    };
    let request = BillRequest {
        order_id: OrderId::parse("ord-1").unwrap(),
        member: None,
        store_name: DisplayText::parse("Kessai Mall").unwrap(),
        lines: vec![line],
        lifetime_s: 900,
        origin: kessai_core::messages::WebOrigin::parse("https://shop.kessai.test").unwrap(),
    };
    let bill = merchant.sign_bill(request, &mut rng, &SystemClock).unwrap();
    let store_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let store_port = store_listener.local_addr().unwrap().port();
    drop(store_listener); // down for now

    // Admin registers the store and the card over mutual TLS.
    let admin_tls = kessai_tls::client_config(&ca.ca_cert(), Some((&ca, "admin"))).unwrap();
    let admin = HttpsClient::new(admin_tls, 10_000);
    let store_body = json!({
        "id": "kessai-mall", "name": "Kessai Mall",
        "notify_url": format!("https://127.0.0.1:{store_port}/v1/completions"),
        "jwks": merchant.jwks(),
    });
    let (status, _) = admin.post_json(&format!("{center_url}/v1/admin/stores"), &store_body, &[]).await.unwrap();
    assert_eq!(status.as_u16(), 200);
    let plain =
        json!({ "id": "kessai-mall", "name": "Kessai Mall", "notify_url": "http://127.0.0.1:1/v1/completions" });
    let (status, body) = admin.post_json(&format!("{center_url}/v1/admin/stores"), &plain, &[]).await.unwrap();
    assert_eq!(status.as_u16(), 400, "a plain-http notify URL is refused, not dropped");
    assert!(String::from_utf8_lossy(&body).contains("bad_notify_url"));
    // L3: no store takes a role's name, as its id or its certificate's.
    for (id, client_name) in [("admin", None), ("center", None), ("fine-shop", Some("admin"))] {
        let body = json!({ "id": id, "name": "Impostor", "client_name": client_name });
        let (status, answer) = admin.post_json(&format!("{center_url}/v1/admin/stores"), &body, &[]).await.unwrap();
        assert_eq!(status.as_u16(), 400, "{id}");
        assert!(String::from_utf8_lossy(&answer).contains("reserved_store_id"), "{id}");
    }
    let card_body = json!({ "card_id": card_id(1).to_string(), "key_version": 1, "currency": "JPY",
                            "max_balance_minor": 100_000, "initial_value_minor": 20_000 });
    let (status, _) = admin.post_json(&format!("{center_url}/v1/admin/cards"), &card_body, &[]).await.unwrap();
    assert_eq!(status.as_u16(), 201);
    // Someone else's certificate, or none, cannot administer.
    let other = HttpsClient::new(kessai_tls::client_config(&ca.ca_cert(), Some((&ca, "someone"))).unwrap(), 10_000);
    let (status, _) = other.post_json(&format!("{center_url}/v1/admin/cards"), &card_body, &[]).await.unwrap();
    assert_eq!(status.as_u16(), 403);
    let wallet = HttpsClient::new(kessai_tls::client_config(&ca.ca_cert(), None).unwrap(), 10_000);
    let (status, _) = wallet.post_json(&format!("{center_url}/v1/admin/cards"), &card_body, &[]).await.unwrap();
    assert_eq!(status.as_u16(), 401);
    // The certificate first: a body the API would refuse tells them nothing.
    let junk = json!({ "not": "a card" });
    let (status, _) = other.post_json(&format!("{center_url}/v1/admin/cards"), &junk, &[]).await.unwrap();
    assert_eq!(status.as_u16(), 403);
    // L3: a store's certificate named "admin", by the same CA, is a store's:
    // the admin API refuses it in a real handshake (by name alone it passed).
    let as_store = CaDir::new(tmp.path().join("ca-copy"));
    std::fs::create_dir_all(tmp.path().join("ca-copy")).unwrap();
    for f in ["ca.crt", "ca.key"] {
        std::fs::copy(tmp.path().join("ca").join(f), tmp.path().join("ca-copy").join(f)).unwrap();
    }
    as_store.issue(Role::Client(Party::Store), "admin", &[]).unwrap();
    let named_admin =
        HttpsClient::new(kessai_tls::client_config(&ca.ca_cert(), Some((&as_store, "admin"))).unwrap(), 10_000);
    let (status, body) = named_admin.post_json(&format!("{center_url}/v1/admin/cards"), &card_body, &[]).await.unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status.as_u16(), body["error"]["code"].as_str()), (403, Some("not_admin")), "{body}");
    let (status, _) = wallet.post_json(&format!("{center_url}/v1/admin/cards"), &junk, &[]).await.unwrap();
    assert_eq!(status.as_u16(), 401);

    // The wallet runs the purchase, relaying to the card.
    let mut card = funded_card(1, 20_000);
    let opening = crate::world::opening(&mut card, bill.token(), card_id(1));
    let create = json!({
        "bill": bill.token(),
        "card_id": card_id(1).to_string(),
        "initialize_update": hex::encode(opening.to_bytes()),
    });
    let (status, r) = wallet_post(&wallet, &format!("{center_url}/v1/settlements"), "w1", &create).await;
    assert_eq!(status, 200, "{r}");
    let id = r["settlement_id"].as_str().unwrap().to_owned();
    let base = format!("{center_url}/v1/settlements/{id}");
    let (_, r) = wallet_post(&wallet, &format!("{base}/balance"), "w3", &relay_json(&mut card, &r)).await;
    assert_eq!(r["phase"], "offered", "{r}");
    let (_, r) = wallet_post(&wallet, &format!("{base}/complete"), "w4", &relay_json(&mut card, &r)).await;
    assert_eq!(r["phase"], "completed", "{r}");

    // The store is down: no receipt yet. Then it comes up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = wallet_get(&wallet, &format!("{base}/receipt")).await;
    assert_eq!(status.as_u16(), 404);
    let center_keys = {
        let mut k = KeyDirectory::new();
        k.insert(PartyId::parse("center").unwrap(), center_public, kessai_core::keys::Validity::always()).unwrap();
        k
    };
    let store = Arc::new(TestStore { merchant, center_keys, order: bill.open_order(), accepted: Default::default() });
    let store_tls = kessai_tls::server_config_with(&ca, "localhost", ClientAuth::Required(&ca.ca_cert())).unwrap();
    let app = Router::new().route("/v1/completions", post(completions)).with_state(store.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", store_port)).await.unwrap();
    tokio::spawn(kessai_http::serve(app, listener, Arc::new(store_tls), std::future::pending()));
    let mut receipt = Value::Null;
    for _ in 0..100 {
        let (status, bytes) = wallet_get(&wallet, &format!("{base}/receipt")).await;
        if status.is_success() {
            receipt = serde_json::from_slice(&bytes).unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(receipt["receipt"].is_string(), "the receipt arrived once the store was up");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(*store.accepted.lock().unwrap(), 1, "delivered once");

    let (status, bytes) = admin.get(&format!("{center_url}/v1/admin/settlements?phase=completed")).await.unwrap();
    let listing: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(status.as_u16(), 200);
    assert_eq!(listing["settlements"][0]["receipt"], true);
    let (status, bytes) = wallet.get(&format!("{center_url}/.well-known/jwks.json")).await.unwrap();
    assert!(status.is_success() && String::from_utf8_lossy(&bytes).contains("Ed25519"));

    // L5: the admin revokes the mall's key; a bill it signs is refused from
    // then on. Another store's name with that key id is an unknown key.
    let kid = store_body["jwks"]["keys"][0]["kid"].as_str().unwrap().to_owned();
    let revoke = |store: &str| format!("{center_url}/v1/admin/stores/{store}/keys/{kid}/revoke");
    let (status, _) = admin.post_json(&revoke("other-shop"), &json!({}), &[]).await.unwrap();
    assert_eq!(status.as_u16(), 404);
    let (status, _) = wallet.post_json(&revoke("kessai-mall"), &json!({}), &[]).await.unwrap();
    assert_eq!(status.as_u16(), 401, "only the admin revokes");
    let (status, _) = admin.post_json(&revoke("kessai-mall"), &json!({}), &[]).await.unwrap();
    assert_eq!(status.as_u16(), 200);
    let late = store.merchant.sign_bill(bill_for("ord-2"), &mut rng, &SystemClock).unwrap();
    let create = json!({ "bill": late.token(), "card_id": card_id(1).to_string(), "initialize_update": "9000" });
    let (status, r) = wallet_post(&wallet, &format!("{center_url}/v1/settlements"), "w5", &create).await;
    assert_eq!((status, r["error"]["code"].as_str()), (422, Some("bill_revoked_key")), "{r}");

    // Ready while its databases answer; once one cannot (closed here, as a
    // stopped writer would be), /readyz says so within a check or two.
    let readyz = |wallet: HttpsClient, url: String| async move { wallet.get(&url).await.unwrap().0.as_u16() };
    let url = format!("{center_url}/readyz");
    assert_eq!(readyz(wallet.clone(), url.clone()).await, 200);
    held.books.ledger().close().await;
    let mut status = 200;
    for _ in 0..60 {
        status = readyz(wallet.clone(), url.clone()).await;
        if status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 503, "not ready once the ledger is closed");
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}
