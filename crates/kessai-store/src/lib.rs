//! `kessai store`: a mall of member stores (patent FIG. 8, 12–15, 20).
//!
//! The mall signs every bill (SIG1) with its key for one member store,
//! accepts the center's completions (SIG3) over mutual TLS at
//! `POST /v1/completions`, answers with a receipt (SIG4) and then lets the
//! buyer download what they paid for. See [`router`] for every route.
//!
//! Invariants:
//! - an order is marked paid only by a completion that verified against
//!   the center's keys and matched the order's bill hash, amount,
//!   currency, store and member store — in one transaction with its receipt;
//! - a refused completion changes nothing;
//! - a download works only for a paid order, until its links expire;
//! - a member store sees only its own orders.

mod api;
pub mod cart;
pub mod catalog;
mod center_keys;
pub mod claim;
pub mod config;
pub mod db;
pub mod demo;
pub mod limits;
mod pages;
mod payouts;
pub mod refund;
pub mod retention;
mod web;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use axum::Router;
use axum::routing::{get, post};
use kessai_core::keyfile;
use kessai_core::keys::SigningKey;
use kessai_core::random::OsRandom;
use kessai_core::time::{Clock, SystemClock};
use kessai_http::{HttpMetrics, HttpsClient, apply_standard_layers, ops_routes};
use kessai_merchant::Merchant;
use prometheus_metrics::StoreMetrics;

pub use catalog::Catalog;
pub use center_keys::CenterKeys;
pub use config::StoreConfig;
pub use db::Db;
pub use demo::DemoSettings;

use crate::limits::{CENTER_API_TIMEOUT_MS, JWKS_FETCH_TIMEOUT_MS};

mod prometheus_metrics {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;

    /// The store's own metrics.
    #[derive(Debug, Clone, Default)]
    pub struct StoreMetrics {
        pub orders: Counter,
        pub completions: Family<Vec<(&'static str, String)>, Counter>,
    }
}

/// Everything the handlers share.
pub struct Inner {
    pub config: StoreConfig,
    pub catalog: Catalog,
    pub db: Db,
    pub merchant: Merchant,
    pub center_keys: CenterKeys,
    /// The center's API, as the mall (its client certificate): member
    /// stores' payouts (#19).
    pub center_api: HttpsClient,
    pub clock: Arc<dyn Clock>,
    metrics: Arc<HttpMetrics>,
    store_metrics: StoreMetrics,
    ready: Arc<AtomicBool>,
}

/// The shared state of the store's handlers. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner").field("mall", &self.config.mall_id).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("mall", &self.0.config.mall_id).finish_non_exhaustive()
    }
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Opens the database (migrating it), reads the catalog and the mall's
    /// key (making one on first start) and prepares the center's JWKS.
    pub async fn open(config: StoreConfig, clock: Arc<dyn Clock>) -> anyhow::Result<AppState> {
        config.check()?;
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let catalog = Catalog::load(&config.resolve(&config.catalog), &config)?;
        let key = signing_key(&config)?;
        let merchant = Merchant::new(config.mall_id.clone(), key, config.center.party_id.clone());
        let db = open_db(&config).await?;
        AppState::with_parts(config, catalog, db, merchant, clock)
    }

    /// Builds the state from opened parts (tests use their own database).
    pub fn with_parts(
        config: StoreConfig,
        catalog: Catalog,
        db: Db,
        merchant: Merchant,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<AppState> {
        let identity = config.tls.client_name.as_deref();
        let ca_dir = kessai_tls::CaDir::new(config.resolve(&config.tls.ca_dir));
        let client_tls = kessai_tls::client_config(&config.trust_anchor(), identity.map(|name| (&ca_dir, name)))
            .context("TLS client configuration for the center")?;
        let jwks_url = format!("{}/.well-known/jwks.json", config.center.url);
        let center_api = HttpsClient::new(client_tls.clone(), CENTER_API_TIMEOUT_MS);
        let center_keys = CenterKeys::new(
            HttpsClient::new(client_tls, JWKS_FETCH_TIMEOUT_MS),
            jwks_url,
            config.center.party_id.clone(),
            config.center.jwks_refetch_min_interval_ms,
        );
        let mut metrics = HttpMetrics::new("store");
        let store_metrics = StoreMetrics::default();
        let registry = metrics.registry_mut();
        registry.register("store_orders", "Orders placed", store_metrics.orders.clone());
        registry.register("store_completions", "Completions received, by outcome", store_metrics.completions.clone());
        // The accepted series exists from the start, at 0 (ops/prometheus).
        drop(store_metrics.completions.get_or_create(&vec![("outcome", "accepted".to_owned())]));
        Ok(AppState(Arc::new(Inner {
            config,
            catalog,
            db,
            merchant,
            center_keys,
            center_api,
            clock,
            metrics: Arc::new(metrics),
            store_metrics,
            ready: Arc::new(AtomicBool::new(true)),
        })))
    }
}

/// The store's database as its configuration names it (migrated).
pub async fn open_db(config: &StoreConfig) -> anyhow::Result<Db> {
    Ok(match &config.database_url {
        Some(url) => Db::open_postgres(url, None).await.context("opening PostgreSQL")?,
        None => {
            let path = config.data_dir.join("store.sqlite");
            Db::open_sqlite(&path).await.with_context(|| format!("opening {}", path.display()))?
        }
    })
}

/// Reads the mall's signing key, or makes and saves one (mode 0600; sealed
/// when a passphrase is given: `kessai_http::keys`).
pub fn signing_key(config: &StoreConfig) -> anyhow::Result<SigningKey> {
    let path = config.resolve(&config.signing_key);
    let from = kessai_http::keys::PassphraseFrom {
        env_var: "KESSAI_STORE_KEY_PASSPHRASE",
        file: config.signing_key_passphrase_file.as_deref(),
    };
    if !path.exists() {
        let key = SigningKey::generate(&mut OsRandom);
        let pem = match from.read_given()? {
            Some(passphrase) => keyfile::encode_sealed(&key, &passphrase, &mut OsRandom),
            None => keyfile::encode_plain(&key),
        };
        kessai_tls::write_new_file(&path, pem.as_bytes(), true)?;
        tracing::info!(path = %path.display(), kid = %key.kid(), "made the mall's signing key");
        return Ok(key);
    }
    kessai_http::keys::load_signing_key(&path, from).with_context(|| "the mall's signing key")
}

/// Every route of the store, with the standard layers.
///
/// | method | path | what |
/// |---|---|---|
/// | GET | `/` | the mall: member stores |
/// | GET | `/shops/{member}` | a member store's products |
/// | GET | `/shops/{member}/products/{sku}` | a product page |
/// | GET, POST | `/shops/{member}/cart` | the cart; POST `sku`, `quantity` (0 removes) |
/// | GET | `/shops/{member}/estimate` | the estimate (FIG. 13) |
/// | GET | `/shops/{member}/checkout` | payment method selection (FIG. 14) |
/// | POST | `/shops/{member}/orders` | places the order, signs the bill, 303 to the bill page |
/// | GET | `/orders/{order_id}` | the bill with the pay action (FIG. 15) |
/// | GET | `/orders/{order_id}/bill` | `{"bill", "return_url"}` for `kessai wallet pay` |
/// | GET | `/orders/{order_id}/complete` | the completion page with downloads (FIG. 20) |
/// | GET | `/download/{token}` | a paid download |
/// | POST | `/v1/completions` | SIG3 from the center (mutual TLS) → SIG4 |
/// | GET | `/members/{member}/orders` | a member's own orders (its client certificate or API token) |
/// | GET | `/.well-known/jwks.json` | the mall's public key |
/// | GET | `/healthz`, `/readyz`, `/metrics` | operations |
pub fn router(state: AppState) -> Router {
    let limits = state.config.limits.clone();
    let metrics = Arc::clone(&state.metrics);
    let ready = Arc::clone(&state.ready);
    let policy = page_policy(&state.config.wallet_url);
    let app = Router::new()
        .route("/", get(web::home))
        .route("/shops/{member}", get(web::shop))
        .route("/shops/{member}/products/{sku}", get(web::product))
        .route("/shops/{member}/cart", get(web::cart).post(web::update_cart))
        .route("/shops/{member}/estimate", get(web::estimate))
        .route("/shops/{member}/checkout", get(web::checkout))
        .route("/shops/{member}/orders", post(web::place_order))
        .route("/orders/{order_id}", get(web::bill))
        .route("/orders/{order_id}/complete", get(web::completion))
        .route("/download/{token}", get(web::download))
        .route("/orders/{order_id}/bill", get(api::bill))
        .route("/v1/completions", post(api::completion))
        .route("/members/{member}/orders", get(api::member_orders))
        .route("/members/{member}/payouts", get(payouts::list))
        .route("/members/{member}/payouts.csv", get(payouts::list_csv))
        .route("/members/{member}/payouts/{id}", get(payouts::show))
        .route("/members/{member}/payouts/{id}/csv", get(payouts::show_csv))
        .route("/.well-known/jwks.json", get(api::jwks))
        .fallback(web::not_found)
        .with_state(state)
        .layer(axum::middleware::map_response(move |mut response: axum::response::Response| {
            let policy = policy.clone();
            async move {
                let h = response.headers_mut();
                h.insert(axum::http::header::CONTENT_SECURITY_POLICY, policy);
                h.insert(axum::http::header::X_FRAME_OPTIONS, axum::http::HeaderValue::from_static("DENY"));
                h.insert(
                    axum::http::header::REFERRER_POLICY,
                    axum::http::HeaderValue::from_static("strict-origin-when-cross-origin"),
                );
                response
            }
        }))
        .merge(ops_routes(Arc::clone(&metrics), ready));
    apply_standard_layers(app, &limits, &metrics)
}

/// The store's pages (L6): no scripts at all, its own style only, no
/// framing (the bill page must not be clickjacked), and forms that post
/// only to the store and to the cardholder's wallet (the bill's Pay form).
fn page_policy(wallet_url: &str) -> axum::http::HeaderValue {
    let wallet = wallet_url.trim_end_matches('/');
    let policy = format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self' {wallet}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    axum::http::HeaderValue::from_str(&policy)
        .unwrap_or_else(|_| axum::http::HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"))
}

/// The store's TLS: its server certificate; client certificates are
/// asked for and verified against the trust anchor but optional, since
/// browsers have none. Routes that need one (completions, member orders)
/// check the [`kessai_http::PeerIdentity`] themselves.
pub fn server_tls(config: &StoreConfig) -> anyhow::Result<rustls::ServerConfig> {
    let ca_dir = kessai_tls::CaDir::new(config.resolve(&config.tls.ca_dir));
    let trust = config.trust_anchor();
    let auth = kessai_tls::ClientAuth::Optional(&trust);
    kessai_tls::server_config_with(&ca_dir, &config.tls.server_name, auth)
        .with_context(|| format!("TLS for {} from {}", config.tls.server_name, ca_dir.ca_cert().display()))
}

/// Purges unpayable orders every [`limits::PURGE_INTERVAL_S`] (L1), the
/// first time a minute after the start.
async fn purge_loop(state: AppState) {
    let mut next = std::time::Duration::from_secs(60);
    loop {
        tokio::time::sleep(next).await;
        next = std::time::Duration::from_secs(limits::PURGE_INTERVAL_S);
        let now_s = i64::try_from(state.clock.now().unix_s()).unwrap_or(i64::MAX);
        match retention::purge_unpayable(&state, now_s).await {
            Ok(p) if p.deleted > 0 || p.kept > 0 => {
                tracing::info!(deleted = p.deleted, kept = p.kept, "purged unpaid orders nothing can pay")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "the purge of unpaid orders stopped; it runs again later"),
        }
    }
}

/// Runs the store on `config.listen` until `shutdown` completes.
pub async fn run(config: StoreConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    serve_on(config, listener, shutdown).await
}

/// Runs the store on an already bound listener (tests and `kessai up`
/// bind port 0 and read the port back).
pub async fn serve_on(
    config: StoreConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let tls = Arc::new(server_tls(&config)?);
    let state = AppState::open(config, Arc::new(SystemClock)).await?;
    tracing::info!(
        listen = %listener.local_addr()?,
        mall = %state.config.mall_id,
        kid = %state.merchant.jwks().keys.first().map(|k| k.kid.as_str()).unwrap_or(""),
        "store serving"
    );
    let db = state.db.clone();
    let ready = Arc::clone(&state.ready);
    let purge = tokio::spawn(purge_loop(state.clone()));
    let served = kessai_http::serve(router(state), listener, tls, shutdown).await;
    purge.abort();
    served?;
    ready.store(false, Ordering::SeqCst);
    db.close().await;
    Ok(())
}
