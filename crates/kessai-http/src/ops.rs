//! The operational endpoints every party serves.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::error::{ApiError, ErrorCode};
use crate::metrics::HttpMetrics;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /healthz` (200 `ok` while the process runs), `GET /readyz` (200
/// when `ready` is set, else 503 in the error shape) and `GET /metrics`,
/// which tells business volumes and so answers only a caller with a client
/// certificate of the deployment's CA (a monitoring agent's, an
/// operator's): 401 `client_certificate_required` otherwise (L6).
pub fn ops_routes(metrics: Arc<HttpMetrics>, ready: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.load(Ordering::SeqCst);
                async move {
                    if ready {
                        "ready".into_response()
                    } else {
                        ApiError::new(ErrorCode::NotReady, "not ready").into_response()
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move |peer: Option<axum::Extension<crate::PeerIdentity>>| {
                let text = peer.is_some().then(|| metrics.render());
                async move {
                    match text {
                        Some(text) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
                        None => ApiError::new(
                            ErrorCode::ClientCertificateRequired,
                            "the metrics answer a client certificate of this deployment only",
                        )
                        .into_response(),
                    }
                }
            }),
        )
}
