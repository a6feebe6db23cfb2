//! The provider's HTTP API, over mutual TLS only (PROTOCOL.md §13.7).
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/v1/token-keys` | every key version still redeeming, sealed to the calling bank |
//! | POST | `/v1/redemptions` | `{"token", "transaction", "at"}` → the token honoured for that REDEEM |
//! | POST | `/v1/paybacks` | `{"token"}` → the expired token honoured for its payback |
//! | POST | `/v1/checks` | `{"token"}` → what the token opens to, if the provider would honour it now (enters nothing) |
//! | GET | `/v1/tokens/{token_id}` | what the register holds for the token, entered by this client |
//! | GET | `/healthz`, `/readyz`, `/metrics` | operations |

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use kessai_api::provider::{Checked, Honoured, KeyDeliveries};
use kessai_core::random::OsRandom;
use kessai_http::party::{ServiceConfig as _, acting};
use kessai_http::{ApiError, ErrorCode, HttpMetrics, Party, PeerIdentity, apply_standard_layers, ops_routes};
use serde::de::DeserializeOwned;

use crate::{Provider, ProviderConfig, Refused};

/// Who is calling: a client certificate acting as the center (its uses of
/// tokens).
fn caller(peer: Option<&PeerIdentity>) -> Result<&str, ApiError> {
    acting(peer, Party::Center, ErrorCode::NotTheCenter)
}

fn answer(refused: Refused) -> ApiError {
    match refused {
        Refused::NotAClient(m) => ApiError::new(ErrorCode::NotTheCenter, m),
        Refused::Malformed(m) => ApiError::new(ErrorCode::BadSealedToken, m),
        Refused::Token(m) => ApiError::new(ErrorCode::TokenRefused, m),
        Refused::NotNow(m) => ApiError::new(ErrorCode::ProviderUnavailable, m),
        Refused::NotHeld(m) => ApiError::new(ErrorCode::TokenNotHeld, m),
        e @ (Refused::Register(_) | Refused::Key(_)) => ApiError::internal(e),
    }
}

fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::new(ErrorCode::BadJson, format!("request body: {e}")))
}

async fn token_keys(
    State(provider): State<Arc<Provider>>,
    peer: Option<Extension<PeerIdentity>>,
) -> Result<Json<KeyDeliveries>, ApiError> {
    // Token keys go to a bank only.
    let client = acting(peer.as_ref().map(|p| &p.0), Party::Bank, ErrorCode::NotTheBank)?;
    let sent = provider.deliveries(client, &mut OsRandom).map_err(|e| match e {
        // A bank's certificate the provider does not list.
        Refused::NotAClient(m) => ApiError::new(ErrorCode::NotTheBank, m),
        other => answer(other),
    })?;
    let versions: Vec<u8> = sent.deliveries.iter().map(|d| d.version).collect();
    tracing::info!(client, ?versions, "token key versions delivered");
    Ok(Json(sent))
}

async fn redemptions(
    State(provider): State<Arc<Provider>>,
    peer: Option<Extension<PeerIdentity>>,
    bytes: Bytes,
) -> Result<Json<Honoured>, ApiError> {
    let client = caller(peer.as_ref().map(|p| &p.0))?;
    logged(client, "redemption", provider.redeem(client, &body(&bytes)?).await)
}

async fn paybacks(
    State(provider): State<Arc<Provider>>,
    peer: Option<Extension<PeerIdentity>>,
    bytes: Bytes,
) -> Result<Json<Honoured>, ApiError> {
    let client = caller(peer.as_ref().map(|p| &p.0))?;
    logged(client, "payback", provider.pay_back(client, &body(&bytes)?).await)
}

async fn checks(
    State(provider): State<Arc<Provider>>,
    peer: Option<Extension<PeerIdentity>>,
    bytes: Bytes,
) -> Result<Json<Checked>, ApiError> {
    let client = caller(peer.as_ref().map(|p| &p.0))?;
    match provider.check(client, &body(&bytes)?) {
        Ok(c) => Ok(Json(c)),
        Err(e) => {
            tracing::warn!(client, error = %e, "token refused on its check");
            Err(answer(e))
        }
    }
}

async fn held(
    State(provider): State<Arc<Provider>>,
    peer: Option<Extension<PeerIdentity>>,
    axum::extract::Path(token_id): axum::extract::Path<String>,
) -> Result<Json<Honoured>, ApiError> {
    let client = caller(peer.as_ref().map(|p| &p.0))?;
    provider.held_for_client(client, &token_id).await.map(Json).map_err(answer)
}

/// The verdict on a `use` of a token, logged and answered.
fn logged(client: &str, use_: &str, verdict: Result<Honoured, Refused>) -> Result<Json<Honoured>, ApiError> {
    match verdict {
        Ok(h) => {
            tracing::info!(client, token = %h.token_id, amount = %h.amount, first = h.first, "token honoured for its {use_}");
            Ok(Json(h))
        }
        Err(e) => {
            tracing::warn!(client, error = %e, "token refused for its {use_}");
            Err(answer(e))
        }
    }
}

/// Every route, with the standard layers.
pub fn router(provider: Arc<Provider>, config: &ProviderConfig, ready: Arc<AtomicBool>) -> Router {
    let metrics = Arc::new(HttpMetrics::new("csp"));
    let app = Router::new()
        .route("/v1/token-keys", get(token_keys))
        .route("/v1/redemptions", post(redemptions))
        .route("/v1/paybacks", post(paybacks))
        .route("/v1/checks", post(checks))
        .route("/v1/tokens/{token_id}", get(held))
        .fallback(kessai_http::not_found_fallback)
        .with_state(provider)
        .merge(ops_routes(Arc::clone(&metrics), ready));
    apply_standard_layers(app, &config.limits, &metrics)
}

/// The provider's TLS: its certificate, and client certificates required.
pub fn server_tls(config: &ProviderConfig) -> anyhow::Result<rustls::ServerConfig> {
    config.server_tls().context("the provider's TLS")
}

/// Serves `provider` on `listener` until `shutdown`.
pub async fn serve_on(
    config: &ProviderConfig,
    provider: Arc<Provider>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let tls = Arc::new(server_tls(config)?);
    let versions: Vec<u8> = provider.keyring().keys().map(|k| k.version).collect();
    tracing::info!(listen = %listener.local_addr()?, provider = %provider.id, ?versions, "credit service provider serving");
    let ready = Arc::new(AtomicBool::new(true));
    let served = kessai_http::serve(router(provider, config, Arc::clone(&ready)), listener, tls, shutdown).await;
    ready.store(false, Ordering::SeqCst);
    served?;
    Ok(())
}
