//! A store with a fake center (its JWKS over real TLS), a local CA, a
//! fixed clock, and helpers that walk the shop like a browser would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use axum::routing;
use http_body_util::BodyExt;
use kessai_core::digest::Sha256Digest;
use kessai_core::ids::{CardRef, MessageId, PartyId, SettlementId, StoreId, TransactionId};
use kessai_core::jws::{Claims, Verified};
use kessai_core::keys::{KeyDirectory, SigningKey, Validity};
use kessai_core::messages::bill::{self, Bill};
use kessai_core::messages::completion::{self, Completion, CompletionDraft};
use kessai_core::random::OsRandom;
use kessai_core::time::{Clock, FixedClock, SystemClock};
use kessai_http::{Party, PeerIdentity};
use kessai_store::{AppState, Catalog, Db, DemoSettings, StoreConfig, router};
use kessai_tls::{CaDir, Role};
use tokio::sync::oneshot;
use tower::ServiceExt;

/// The member API token of "bookshop" in tests.
pub const BOOKSHOP_TOKEN: &str = "bookshop-secret-token";

pub struct FakeCenter {
    pub url: String,
    pub jwks: Arc<RwLock<String>>,
    pub fetches: Arc<AtomicUsize>,
    /// What the center answers for a bill (`none`, `open`, `voided`,
    /// `paid`), by (store, bill id); a bill not here is answered 503.
    pub bills: Arc<RwLock<std::collections::HashMap<(String, String), String>>>,
    _stop: oneshot::Sender<()>,
}

impl FakeCenter {
    /// Publishes exactly these keys from now on.
    pub fn publish(&self, keys: &[&SigningKey]) {
        let mut dir = KeyDirectory::new();
        for k in keys {
            dir.insert(PartyId::parse("center").unwrap(), k.public(), Validity::always()).unwrap();
        }
        *self.jwks.write().unwrap() = serde_json::to_string(&dir.jwks(None)).unwrap();
    }
}

pub struct World {
    pub _tmp: tempfile::TempDir,
    pub ca: CaDir,
    pub config: StoreConfig,
    pub state: AppState,
    pub app: Router,
    pub clock: Arc<FixedClock>,
    pub center: FakeCenter,
    pub center_key: SigningKey,
}

pub fn pki(dir: &std::path::Path) -> CaDir {
    let ca = CaDir::new(dir.join("pki"));
    ca.init().unwrap();
    ca.issue(Role::Server, "localhost", &["127.0.0.1".into()]).unwrap();
    for (client, party) in [("center", Party::Center), ("bookshop", Party::Store), ("record-shop", Party::Store)] {
        ca.issue(Role::Client(party), client, &[]).unwrap();
    }
    ca
}

async fn fake_center(ca: &CaDir) -> FakeCenter {
    let jwks = Arc::new(RwLock::new(r#"{"keys":[]}"#.to_owned()));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (j, f) = (Arc::clone(&jwks), Arc::clone(&fetches));
    let bills = Arc::new(RwLock::new(std::collections::HashMap::<(String, String), String>::new()));
    let b = Arc::clone(&bills);
    let app = Router::new()
        .route(
            "/.well-known/jwks.json",
            routing::get(move || {
                f.fetch_add(1, Ordering::SeqCst);
                let body = j.read().unwrap().clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], body) }
            }),
        )
        .route("/v1/payouts", routing::get(fake_payouts))
        .route("/v1/payouts/{id}", routing::get(fake_payout))
        .route(
            "/v1/stores/{store}/bills/{bill_id}",
            routing::get(move |axum::extract::Path((store, bill_id)): axum::extract::Path<(String, String)>| {
                let known = b.read().unwrap().get(&(store.clone(), bill_id.clone())).cloned();
                async move {
                    use axum::response::IntoResponse;
                    match known {
                        Some(state) => axum::Json(serde_json::json!({ "store": store, "bill_id": bill_id,
                                                                      "state": state }))
                        .into_response(),
                        None => StatusCode::SERVICE_UNAVAILABLE.into_response(),
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let tls = Arc::new(kessai_tls::server_config(ca, "localhost", None).unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(kessai_http::serve(app, listener, tls, async {
        let _ = rx.await;
    }));
    FakeCenter { url, jwks, fetches, bills, _stop: tx }
}

pub fn demo_config(tmp: &std::path::Path, center_url: &str) -> StoreConfig {
    let mut config = StoreConfig::demo(DemoSettings {
        data_dir: tmp.join("store"),
        ca_dir: tmp.join("pki"),
        server_name: "localhost".into(),
        client_name: None,
        listen: "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
        public_url: "https://shop.kessai.test".into(),
        center_id: "center".into(),
        center_url: center_url.into(),
        wallet_url: "http://127.0.0.1:8480".into(),
    })
    .unwrap();
    config.center.jwks_refetch_min_interval_ms = 0;
    config.members[0].api_token_sha256 = Some(hex_sha256(BOOKSHOP_TOKEN));
    config
}

pub fn hex_sha256(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// A store on SQLite in a temporary directory.
pub async fn world() -> World {
    world_with(|_| {}).await
}

pub async fn world_with(tweak: impl FnOnce(&mut StoreConfig)) -> World {
    let tmp = tempfile::tempdir().unwrap();
    let ca = pki(tmp.path());
    let center = fake_center(&ca).await;
    let mut config = demo_config(tmp.path(), &center.url);
    tweak(&mut config);
    let clock = Arc::new(FixedClock::new(SystemClock.now()));
    let state = AppState::open(config.clone(), clock.clone()).await.unwrap();
    finish(tmp, ca, config, state, clock, center)
}

/// A store on the given database (PostgreSQL tests).
pub async fn world_on(db: Db) -> World {
    let tmp = tempfile::tempdir().unwrap();
    let ca = pki(tmp.path());
    let center = fake_center(&ca).await;
    let config = demo_config(tmp.path(), &center.url);
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let catalog = Catalog::load(&config.resolve(&config.catalog), &config).unwrap();
    let merchant = kessai_merchant::Merchant::new(
        config.mall_id.clone(),
        SigningKey::generate(&mut OsRandom),
        PartyId::parse("center").unwrap(),
    );
    let clock = Arc::new(FixedClock::new(SystemClock.now()));
    let state = AppState::with_parts(config.clone(), catalog, db, merchant, clock.clone()).unwrap();
    finish(tmp, ca, config, state, clock, center)
}

fn finish(
    tmp: tempfile::TempDir,
    ca: CaDir,
    config: StoreConfig,
    state: AppState,
    clock: Arc<FixedClock>,
    center: FakeCenter,
) -> World {
    let center_key = SigningKey::generate(&mut OsRandom);
    center.publish(&[&center_key]);
    let app = router(state.clone());
    World { _tmp: tmp, ca, config, state, app, clock, center, center_key }
}

/// A response as a test sees it.
pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn location(&self) -> &str {
        self.headers[header::LOCATION].to_str().unwrap()
    }
    /// The `<title>` text.
    pub fn title(&self) -> String {
        let start = self.body.find("<title>").expect("a title") + 7;
        let end = self.body[start..].find("</title>").unwrap() + start;
        self.body[start..end].to_owned()
    }
}

pub async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response: Response<Body> = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    Answer { status: parts.status, headers: parts.headers, body: String::from_utf8_lossy(&bytes).into_owned() }
}

pub async fn get(app: &Router, uri: &str) -> Answer {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

pub async fn get_with_cookie(app: &Router, uri: &str, cookie: &str) -> Answer {
    send(app, Request::get(uri).header(header::COOKIE, cookie).body(Body::empty()).unwrap()).await
}

pub async fn post_form(app: &Router, uri: &str, form: &str, cookie: Option<&str>) -> Answer {
    let mut req = Request::post(uri).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    send(app, req.body(Body::from(form.to_owned())).unwrap()).await
}

/// The `name=value` part of a response's Set-Cookie.
pub fn cookie_of(answer: &Answer) -> String {
    let set = answer.headers[header::SET_COOKIE].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

/// Adds items to `member`'s cart and places the order; the order id.
pub async fn place_order(w: &World, member: &str, items: &[(&str, u32)]) -> String {
    let mut cookie = String::new();
    for (sku, qty) in items {
        let a =
            post_form(&w.app, &format!("/shops/{member}/cart"), &format!("sku={sku}&quantity={qty}"), Some(&cookie))
                .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
        cookie = cookie_of(&a);
    }
    let a = post_form(&w.app, &format!("/shops/{member}/orders"), "method=kessai-card", Some(&cookie)).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    a.location().strip_prefix("/orders/").unwrap().to_owned()
}

/// The mall's public keys, from its JWKS endpoint.
pub async fn mall_keys(w: &World) -> KeyDirectory {
    let a = get(&w.app, "/.well-known/jwks.json").await;
    assert_eq!(a.status, StatusCode::OK);
    let mut keys = KeyDirectory::new();
    keys.insert_jwks(&PartyId::parse("kessai-mall").unwrap(), a.body.as_bytes()).unwrap();
    keys
}

/// The order's bill, verified with the mall's published key.
pub async fn bill_of(w: &World, order_id: &str) -> (String, Verified<Bill>) {
    let a = get(&w.app, &format!("/orders/{order_id}/bill")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let token = a.json()["bill"].as_str().unwrap().to_owned();
    let verified = bill::verify(
        &token,
        &mall_keys(w).await,
        w.clock.as_ref(),
        &kessai_core::ids::PartyId::parse("center").unwrap(),
    )
    .unwrap();
    (token, verified)
}

/// What the center would sign for this bill.
pub fn completion_for(w: &World, bill_token: &str, bill: &Bill) -> CompletionDraft {
    let mut rng = OsRandom;
    CompletionDraft {
        settlement_id: SettlementId::generate(&mut rng),
        bill_hash: Sha256Digest::of_token(bill_token),
        card_ref: CardRef::parse("c7Yx1pQ2rS3tU4vW5xY6zA").unwrap(),
        transaction_id: TransactionId::generate(&mut rng),
        amount: bill.total(),
        store: StoreId::parse("kessai-mall").unwrap(),
        member: bill.member().cloned(),
        card_counter: 1,
        completed_at: w.clock.now(),
    }
}

pub fn sign_completion(w: &World, key: &SigningKey, draft: CompletionDraft) -> String {
    let claims =
        Claims::for_lifetime(PartyId::parse("center").unwrap(), MessageId::generate(&mut OsRandom), w.clock.now(), 600)
            .unwrap();
    completion::sign(&claims, &Completion::new(draft).unwrap(), key).unwrap()
}

/// POSTs a completion as if over mutual TLS from `peer` (None: no client
/// certificate).
pub async fn deliver(w: &World, token: &str, peer: Option<&str>) -> Answer {
    let body = serde_json::json!({ "completion": token }).to_string();
    let mut req = Request::post("/v1/completions")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    if let Some(p) = peer {
        req.extensions_mut().insert(self::peer(p));
    }
    send(&w.app, req).await
}

/// Places an order and pays it; (order id, receipt token, completion token).
pub async fn paid_order(w: &World, member: &str, items: &[(&str, u32)]) -> (String, String, String) {
    let order_id = place_order(w, member, items).await;
    let (token, bill) = bill_of(w, &order_id).await;
    let completion = sign_completion(w, &w.center_key, completion_for(w, &token, bill.message()));
    let a = deliver(w, &completion, Some("center")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    (order_id, a.json()["receipt"].as_str().unwrap().to_owned(), completion)
}

/// The fake center's payouts: one of the bookshop's (`po_…01`) and one of
/// the record shop's (`po_…02`), as the center answers the mall.
pub fn fake_payout_of(id: &str) -> Option<serde_json::Value> {
    let (store, amount) = match id {
        "po_00000000000000000000000000000001" => ("bookshop", 8_014),
        "po_00000000000000000000000000000002" => ("record-shop", 900),
        _ => return None,
    };
    Some(serde_json::json!({
        "payout_id": id, "run": "clr_1800000000", "store": store, "currency": "JPY",
        "gross_minor": amount + 300, "refunds_minor": 0, "other_minor": 0, "fees_minor": 300, "amount_minor": amount,
        "items": 2, "fee_bp": 325, "fee_fixed_minor": 10, "status": "in_transit", "reason": null,
        "bank_reference": "KS0123456789ABCDEF01", "created_at": 1_800_000_000u64, "updated_at": 1_800_000_000u64,
        "lines": [
            {"kind": "purchase", "reference": "stl_1", "amount_minor": amount + 800, "fee_minor": 300, "at": 1},
            {"kind": "refund", "reference": "=cmd|' /C calc'!A0", "amount_minor": -500, "fee_minor": 0, "at": 2}
        ]
    }))
}

async fn fake_payouts(
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::Json<serde_json::Value> {
    let store = q.get("store").cloned().unwrap_or_default();
    let payouts: Vec<serde_json::Value> =
        ["po_00000000000000000000000000000001", "po_00000000000000000000000000000002"]
            .iter()
            .filter_map(|id| fake_payout_of(id))
            .filter(|p| p["store"] == store.as_str())
            .collect();
    axum::Json(serde_json::json!({ "store": store, "payouts": payouts }))
}

async fn fake_payout(axum::extract::Path(id): axum::extract::Path<String>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match fake_payout_of(&id) {
        Some(p) => axum::Json(p).into_response(),
        None => {
            (axum::http::StatusCode::NOT_FOUND, axum::Json(serde_json::json!({"error": {"code": "unknown_payout"}})))
                .into_response()
        }
    }
}

/// The verified certificate an in-process request carries: `center` acts as
/// the center, any other name as a store; `PARTY/NAME` names the party.
pub fn peer(spec: &str) -> PeerIdentity {
    match spec.split_once('/') {
        Some((party, name)) => PeerIdentity::new(name, Party::parse(party).expect("a party's name")),
        None => PeerIdentity::new(spec, if spec == "center" { Party::Center } else { Party::Store }),
    }
}
