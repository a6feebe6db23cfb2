//! The bank's HTTP API, over mutual TLS only (PROTOCOL.md §13.8).
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/v1/statements/{day}?after=N` | the pool account's statement of the day so far (camt.053), a page of deposits after entry N; `kessai-next-after` names the next page's |
//! | POST | `/v1/tokens` | a [`SealRequest`] → the token the deposit pays for, made once |
//! | GET | `/healthz`, `/readyz`, `/metrics` | operations |

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use kessai_api::bank::{SealRequest, Sealed};
use kessai_http::party::{ServiceConfig as _, acting};
use kessai_http::{ApiError, ErrorCode, HttpMetrics, Party, PeerIdentity, apply_standard_layers, ops_routes};

use crate::{Bank, BankConfig, Refused};

/// Who is calling: a client certificate acting as the center.
fn caller(peer: Option<&PeerIdentity>) -> Result<&str, ApiError> {
    acting(peer, Party::Center, ErrorCode::NotTheCenter)
}

fn answer(refused: Refused) -> ApiError {
    match refused {
        Refused::NotAClient(m) => ApiError::new(ErrorCode::NotTheCenter, m),
        Refused::Malformed(m) => ApiError::new(ErrorCode::BadJson, m),
        Refused::Deposit(m) => ApiError::new(ErrorCode::DepositRefused, m),
        Refused::NotNow(m) => ApiError::new(ErrorCode::BankUnavailable, m),
        e @ (Refused::Register(_) | Refused::Key(_)) => ApiError::internal(e),
    }
}

async fn statement(
    State(bank): State<Arc<Bank>>,
    peer: Option<Extension<PeerIdentity>>,
    axum::extract::Path(day): axum::extract::Path<String>,
    axum::extract::Query(page): axum::extract::Query<Page>,
) -> Result<Response, ApiError> {
    let client = caller(peer.as_ref().map(|p| &p.0))?;
    if kessai_bank::Date::parse(&day).is_none() {
        return Err(ApiError::new(ErrorCode::BadDay, format!("{day:?}: not YYYY-MM-DD")));
    }
    let (xml, next) = bank.statement(client, &day, page.after.unwrap_or(0)).await.map_err(answer)?;
    let mut response = ([(header::CONTENT_TYPE, "application/xml")], xml).into_response();
    if let Some(n) = next {
        response.headers_mut().insert(NEXT_AFTER, axum::http::HeaderValue::from(n));
    }
    Ok(response)
}

/// The header naming the entry the next page of a statement starts after.
pub const NEXT_AFTER: &str = "kessai-next-after";

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    after: Option<u64>,
}

async fn tokens(
    State(bank): State<Arc<Bank>>,
    peer: Option<Extension<PeerIdentity>>,
    bytes: Bytes,
) -> Result<Json<Sealed>, ApiError> {
    let client = caller(peer.as_ref().map(|p| &p.0))?;
    let req: SealRequest =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::new(ErrorCode::BadJson, format!("request body: {e}")))?;
    match bank.seal(client, &req).await {
        Ok(sealed) => Ok(Json(sealed)),
        Err(e) => {
            tracing::warn!(client, deposit = %req.deposit, token = %req.token_id, error = %e, "no token made of the deposit");
            Err(answer(e))
        }
    }
}

/// Every route, with the standard layers.
pub fn router(bank: Arc<Bank>, config: &BankConfig, ready: Arc<AtomicBool>) -> Router {
    let metrics = Arc::new(HttpMetrics::new("bank"));
    let app = Router::new()
        .route("/v1/statements/{day}", get(statement))
        .route("/v1/tokens", post(tokens))
        .fallback(kessai_http::not_found_fallback)
        .with_state(bank)
        .merge(ops_routes(Arc::clone(&metrics), ready));
    apply_standard_layers(app, &config.limits, &metrics)
}

/// Serves `bank` on `listener` until `shutdown`.
pub async fn serve_on(
    config: &BankConfig,
    bank: Arc<Bank>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let tls = Arc::new(config.server_tls().context("the bank's TLS")?);
    let versions: Vec<u8> = bank.keyring().keys().map(|k| k.version).collect();
    tracing::info!(listen = %listener.local_addr()?, bank = %bank.bank_id, account = %bank.pool_account, ?versions, "bank service provider serving");
    let ready = Arc::new(AtomicBool::new(true));
    let served = kessai_http::serve(router(bank, config, Arc::clone(&ready)), listener, tls, shutdown).await;
    ready.store(false, Ordering::SeqCst);
    served?;
    Ok(())
}
