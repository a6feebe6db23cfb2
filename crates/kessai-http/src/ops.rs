//! The operational endpoints every party serves.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::error::{ApiError, ErrorType};
use crate::metrics::HttpMetrics;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /healthz` (200 `ok` while the process runs), `GET /readyz` (200
/// when `ready` is set, else 503 in the error shape) and `GET /metrics`.
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
                        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, ErrorType::Unavailable, "not_ready", "not ready")
                            .into_response()
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let text = metrics.render();
                async move { ([(header::CONTENT_TYPE, OPENMETRICS)], text) }
            }),
        )
}
