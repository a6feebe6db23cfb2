//! kessai-http against real TLS on loopback and through the router.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod layers;
mod tls;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response};
use http_body_util::BodyExt;
use kessai_http::{HttpMetrics, Limits, apply_standard_layers};
use tower::ServiceExt;

/// Sends one request through the router in-process.
pub async fn call(router: &Router, request: Request<Body>) -> (Response<()>, String) {
    let response = router.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (Response::from_parts(parts, ()), String::from_utf8(bytes.to_vec()).unwrap())
}

pub fn layered(router: Router, limits: &Limits) -> (Router, Arc<HttpMetrics>) {
    let metrics = HttpMetrics::new("test");
    let router = apply_standard_layers(router, limits, &metrics);
    (router, Arc::new(metrics))
}
