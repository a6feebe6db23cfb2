//! One world per test: a CA, the real center (HTTPS, admin over mutual
//! TLS), the real demo mall, and a card image personalized with keys
//! diversified from the center's master keys, funded by a secure CREDIT.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use kessai_card::protocol::{CardId as ChipCardId, Currency as ChipCurrency, TransferRequest, TxId, credit_command};
use kessai_card::terminal::Terminal;
use kessai_card::transport::InProcessReader;
use kessai_card::{Card, Durability, FileStorage, KeySource, Personalization, create_image_file, public_info};
use kessai_center::config::CenterConfig;
use kessai_center::keystore::{self, Kek};
use kessai_core::ids::CardId;
use kessai_core::random::OsRandom;
use kessai_core::time::SystemClock;
use kessai_http::HttpsClient;
use kessai_scp03::diversify::{MasterKeys, diversify};
use kessai_scp03::{Aes128Key, KeyVersion};
use kessai_store::{AppState, DemoSettings, StoreConfig};
use kessai_tls::{CaDir, Party, Role};
use kessai_wallet::{ReaderConfig, WalletConfig};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tower::ServiceExt;

pub const KVN: u8 = 1;

pub fn masters() -> MasterKeys {
    MasterKeys { enc: Aes128Key::new([0x40; 16]), mac: Aes128Key::new([0x41; 16]), dek: Aes128Key::new([0x42; 16]) }
}

pub fn card_id(n: u8) -> CardId {
    CardId::from_bytes([0x4B, 0x45, 0x53, 0x53, 0x41, 0x49, 0x00, n])
}

pub struct World {
    pub tmp: tempfile::TempDir,
    pub ca: CaDir,
    pub center_url: String,
    pub store_url: String,
    /// The store's pages, in process, on the same database as the served store.
    pub shop: Router,
    pub image: PathBuf,
    pub http: HttpsClient,
    /// The served store's configuration (its key signs refunds).
    pub store_config: StoreConfig,
    _stops: Vec<oneshot::Sender<()>>,
}

pub fn center_config(dir: &Path) -> CenterConfig {
    let text = format!(
        "party_id = \"center\"\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://127.0.0.1\"\ndata_dir = \"{}\"\n\
         kek_file = \"{}\"\ndelivery_interval_ms = 50\n[tls]\nca_dir = \"{}\"\nserver_name = \"localhost\"\nclient_name = \"center\"\n",
        dir.join("center").display(),
        dir.join("center-kek.hex").display(),
        dir.join("ca").display()
    );
    CenterConfig::from_toml(&text).unwrap()
}

async fn start_center(dir: &Path, tokens: Option<Arc<kessai_center::tokens::Tokens>>) -> (String, oneshot::Sender<()>) {
    let config = center_config(dir);
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let kek = Kek::generate(&mut OsRandom);
    kessai_tls::write_new_file(config.kek_file.as_deref().unwrap(), kek.to_hex().as_bytes(), true).unwrap();
    let sealed = keystore::seal(&BTreeMap::from([(KVN, masters())]), &kek, &mut OsRandom);
    kessai_tls::write_new_file(&config.data_dir.join("issuer-master-keys.sealed"), &sealed, true).unwrap();
    kessai_center::app::init(&config, None).await.unwrap();
    let mut center = kessai_center::app::open(&config).await.unwrap();
    center.tokens = tokens;
    let center = Arc::new(center);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        kessai_center::app::serve_on(&config, center, listener, async {
            let _ = rx.await;
        })
        .await
    });
    (url, tx)
}

async fn start_store(dir: &Path, center_url: &str) -> (String, StoreConfig, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let url = format!("https://127.0.0.1:{}", addr.port());
    let config = StoreConfig::demo(DemoSettings {
        data_dir: dir.join("store"),
        ca_dir: dir.join("ca"),
        server_name: "localhost".into(),
        client_name: None,
        listen: addr,
        public_url: url.clone(),
        center_id: "center".into(),
        center_url: center_url.into(),
        wallet_url: "http://127.0.0.1:8480".into(),
    })
    .unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let served = config.clone();
    tokio::spawn(async move {
        kessai_store::serve_on(served, listener, async {
            let _ = rx.await;
        })
        .await
    });
    (url, config, tx)
}

async fn get_until_ok(http: &HttpsClient, url: &str) -> String {
    for _ in 0..100 {
        if let Ok((status, bytes)) = http.get(url).await
            && status.is_success()
        {
            return String::from_utf8(bytes.to_vec()).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never answered");
}

async fn admin_post(admin: &HttpsClient, url: &str, body: &Value) {
    let (status, bytes) = admin.post_json(url, body, &[]).await.unwrap();
    assert!(status.is_success(), "{url}: {status} {}", String::from_utf8_lossy(&bytes));
}

/// A personalized card image holding `balance`, put there by a secure CREDIT.
fn card_image(path: &Path, id: CardId, balance: u64) {
    let p = Personalization {
        card_id: ChipCardId(*id.as_bytes()),
        keys: KeySource::Diversified { master: masters(), version: KeyVersion::new(KVN).unwrap() },
        currency: ChipCurrency::new("JPY").unwrap(),
        max_balance_minor: 100_000,
    };
    create_image_file(path, &p).unwrap();
    let card = Card::open(FileStorage::open(path, Durability::Fsync).unwrap()).unwrap();
    let mut t = Terminal::new(InProcessReader::new(card));
    t.select().unwrap();
    let keys = diversify(&masters(), id.as_bytes(), KeyVersion::new(KVN).unwrap());
    let session = t.open_session(keys, [1; 8]).unwrap();
    let request = TransferRequest {
        tx_id: TxId([0xF0; 16]),
        amount_minor: balance,
        counterpart: *b"FUNDING!",
        order_ref: [0; 16],
        time_unix_s: 1_795_000_000,
    };
    let (_, r) = t.secure(session, &credit_command(&request)).unwrap();
    assert_eq!(r.sw().raw(), 0x9000, "funding credit");
}

impl World {
    /// Center, store and a card `n` holding `balance` (JPY), registered at the center.
    pub async fn new(n: u8, balance: u64) -> World {
        World::new_with(n, balance, None).await
    }

    /// As [`World::new`], the center with these deposit token parties.
    pub async fn new_with(n: u8, balance: u64, tokens: Option<Arc<kessai_center::tokens::Tokens>>) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let ca = CaDir::new(tmp.path().join("ca"));
        ca.init().unwrap();
        ca.issue(Role::Server, "localhost", &["127.0.0.1".into()]).unwrap();
        for (client, party) in [("center", Party::Center), ("admin", Party::Operator)] {
            ca.issue(Role::Client(party), client, &[]).unwrap();
        }
        let (center_url, stop_center) = start_center(tmp.path(), tokens).await;
        let (store_url, store_config, stop_store) = start_store(tmp.path(), &center_url).await;
        let http = HttpsClient::new(kessai_tls::client_config(&ca.ca_cert(), None).unwrap(), 10_000);
        let jwks = get_until_ok(&http, &format!("{store_url}/.well-known/jwks.json")).await;
        let admin = HttpsClient::new(kessai_tls::client_config(&ca.ca_cert(), Some((&ca, "admin"))).unwrap(), 10_000);
        let stores = format!("{center_url}/v1/admin/stores");
        let mall = json!({ "id": "kessai-mall", "name": "Kessai Mall",
            "notify_url": format!("{store_url}/v1/completions"), "jwks": serde_json::from_str::<Value>(&jwks).unwrap() });
        admin_post(&admin, &stores, &mall).await;
        admin_post(&admin, &stores, &json!({ "id": "bookshop", "name": "Kessai Books", "mall": "kessai-mall" })).await;
        let card = card_id(n);
        let image = tmp.path().join("card.img");
        card_image(&image, card, balance);
        let body = json!({ "card_id": card.to_string(), "key_version": KVN, "currency": "JPY",
            "max_balance_minor": 100_000, "initial_value_minor": balance });
        admin_post(&admin, &format!("{center_url}/v1/admin/cards"), &body).await;
        let state = AppState::open(store_config.clone(), Arc::new(SystemClock)).await.unwrap();
        let shop = kessai_store::router(state);
        let stops = vec![stop_center, stop_store];
        World { tmp, ca, center_url, store_url, shop, image, http, store_config, _stops: stops }
    }

    pub fn wallet_config(&self, center_url: &str) -> WalletConfig {
        WalletConfig {
            data_dir: self.tmp.path().join("wallet"),
            listen: "127.0.0.1:0".parse().unwrap(),
            ca_file: self.ca.ca_cert(),
            center: kessai_wallet::CenterSettings {
                url: center_url.to_owned(),
                party_id: kessai_core::ids::PartyId::parse("center").unwrap(),
            },
            reader: ReaderConfig::InProcess { image: self.image.clone() },
            profile: kessai_core::profile::Profile::Offer,
        }
    }

    /// The card's balance and transaction counter, from its image file.
    pub fn card_state(&self) -> (u64, u32) {
        let info = public_info(&std::fs::read(&self.image).unwrap()).unwrap();
        (info.balance_minor, info.counter)
    }

    /// Places an order at the bookshop; its bill hand-off `(order id, bill, return_url)`.
    pub async fn order(&self, items: &[(&str, u32)]) -> (String, String, String) {
        let mut cookie = String::new();
        for (sku, qty) in items {
            let a = send(&self.shop, form("/shops/bookshop/cart", &format!("sku={sku}&quantity={qty}"), &cookie)).await;
            assert_eq!(a.0, StatusCode::SEE_OTHER, "{}", a.2);
            let set = a.1.get(header::SET_COOKIE).unwrap().to_str().unwrap();
            cookie = set.split(';').next().unwrap().to_owned();
        }
        let a = send(&self.shop, form("/shops/bookshop/orders", "method=kessai-card", &cookie)).await;
        assert_eq!(a.0, StatusCode::SEE_OTHER, "{}", a.2);
        let order = a.1[header::LOCATION].to_str().unwrap().strip_prefix("/orders/").unwrap().to_owned();
        let a = send(&self.shop, Request::get(format!("/orders/{order}/bill")).body(Body::empty()).unwrap()).await;
        let v: Value = serde_json::from_str(&a.2).unwrap();
        (order, v["bill"].as_str().unwrap().to_owned(), v["return_url"].as_str().unwrap().to_owned())
    }

    /// The store's completion page for an order.
    pub async fn order_page(&self, order: &str) -> String {
        send(&self.shop, Request::get(format!("/orders/{order}/complete")).body(Body::empty()).unwrap()).await.2
    }

    /// The center's books for the card: what they say it holds (posted),
    /// and what is held on it for purchases in flight.
    pub async fn center_float(&self) -> (u64, u64) {
        let card = public_info(&std::fs::read(&self.image).unwrap()).unwrap().card_id;
        let card = kessai_core::ids::CardId::from_bytes(card.0);
        let path = self.tmp.path().join("center").join("center.sqlite");
        let db = kessai_center::db::CenterDb::open(&format!("sqlite:{}", path.display())).await.unwrap();
        let float = kessai_center::books::Books::new(db.clone()).card_float(&card).await.unwrap().unwrap();
        db.close().await;
        float
    }

    /// The center's view of a settlement.
    pub async fn center_phase(&self, settlement: &str) -> String {
        let v = self.center_get(&format!("/v1/settlements/{settlement}"), settlement).await;
        v["phase"].as_str().unwrap_or_default().to_owned()
    }

    /// GETs a center path on `id` with the access token the wallet keeps
    /// for it (which this reads from the wallet's own records), as the
    /// wallet would; asserts the answer is 200.
    pub async fn center_get(&self, path: &str, id: &str) -> Value {
        let records =
            kessai_wallet::records::Records::open(&self.tmp.path().join("wallet").join("wallet.sqlite")).await.unwrap();
        let token = records.access(id).await.unwrap().expect("the wallet kept the access token");
        records.close().await;
        let url = format!("{}{path}", self.center_url);
        let bearer = format!("Bearer {token}");
        let (status, _, bytes) = self.http.get_with(&url, &[("authorization", &bearer)]).await.unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
        // Without it, the center answers as for an id it does not know (M4).
        let (refused, _) = self.http.get(&url).await.unwrap();
        assert_eq!(refused, 404);
        serde_json::from_slice(&bytes).unwrap()
    }
}

/// The wallet's address in the tests: requests come from its own pages.
pub const WALLET_HOST: &str = "127.0.0.1:8480";

pub fn form(uri: &str, body: &str, cookie: &str) -> Request<Body> {
    let mut req = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ORIGIN, format!("http://{WALLET_HOST}"));
    if !cookie.is_empty() {
        req = req.header(header::COOKIE, cookie);
    }
    req.body(Body::from(body.to_owned())).unwrap()
}

/// Percent-encodes a form value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn send(app: &Router, mut req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
    if !req.headers().contains_key(header::HOST) {
        req.headers_mut().insert(header::HOST, axum::http::HeaderValue::from_static(WALLET_HOST));
    }
    let response = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, String::from_utf8_lossy(&bytes).into_owned())
}

/// The value of `<input name="{name}" value="…">` in a page.
pub fn input_value(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).unwrap_or_else(|| panic!("no {name} in {page}")) + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}
