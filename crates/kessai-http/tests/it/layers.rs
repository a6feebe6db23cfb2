//! The standard layers, error shape and ops routes, in-process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use kessai_http::{ApiError, ErrorCode, HttpMetrics, Limits, RequestId, apply_standard_layers, ops_routes};

use crate::{call, layered};

fn app() -> Router {
    Router::new()
        .route("/echo", post(|body: String| async move { body }))
        .route("/id", get(|axum::Extension(id): axum::Extension<RequestId>| async move { id.0 }))
        .route(
            "/refuse",
            get(|| async {
                ApiError::new(ErrorCode::OrderAlreadyPaid, "the order is already paid").with_param("order_id")
            }),
        )
        .route("/boom", get(|| async { ApiError::internal("db password=hunter2 at /srv/db") }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route("/items/{id}", get(|| async { "item" }))
}

fn get_req(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn errors_have_the_exact_shape() {
    let (router, _) = layered(app(), &Limits::default());
    let (response, body) = call(&router, get_req("/refuse")).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(
        body,
        r#"{"error":{"type":"conflict","code":"order_already_paid","number":1527,"message":"the order is already paid","param":"order_id"}}"#
    );
    let (response, body) = call(&router, get_req("/boom")).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"]["type"], "internal");
    assert_eq!(json["error"]["param"], serde_json::Value::Null);
    assert!(!body.contains("hunter2"), "internal details never reach the client");
}

#[tokio::test]
async fn body_over_the_limit_is_413_in_the_error_shape() {
    let limits = Limits { max_body_bytes: 16, ..Limits::default() };
    let (router, _) = layered(app(), &limits);
    let ok = Request::post("/echo").body(Body::from("short")).unwrap();
    let (response, body) = call(&router, ok).await;
    assert_eq!((response.status(), body.as_str()), (StatusCode::OK, "short"));

    // Declared too large: refused before reading.
    let declared = Request::post("/echo").header("content-length", "17").body(Body::from("x".repeat(17))).unwrap();
    let (response, body) = call(&router, declared).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"]["code"], "body_too_large");
    assert_eq!(json["error"]["type"], "invalid_request");

    // Undeclared (no Content-Length): refused while reading.
    let streamed = Request::post("/echo").body(Body::from("y".repeat(40))).unwrap();
    let (response, body) = call(&router, streamed).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body.contains(r#""code":"body_too_large""#), "{body}");
}

#[tokio::test]
async fn rate_limit_answers_429_in_the_error_shape() {
    let limits = Limits { rate_per_client_per_s: 1, rate_burst: 2, ..Limits::default() };
    let (router, _) = layered(app(), &limits);
    for _ in 0..2 {
        let (response, _) = call(&router, get_req("/items/1")).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let (response, body) = call(&router, get_req("/items/1")).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(
        body,
        r#"{"error":{"type":"rate_limited","code":"rate_limited","number":1801,"message":"too many requests from this client; retry later","param":null}}"#
    );
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let (router, _) = layered(app(), &Limits::default());
    let given = Request::get("/id").header("x-request-id", "abc-123").body(Body::empty()).unwrap();
    let (response, body) = call(&router, given).await;
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    assert_eq!(body, "abc-123", "the handler sees the same id");

    let (response, body) = call(&router, get_req("/id")).await;
    let generated = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(generated.starts_with("req_") && generated.len() == 36, "{generated}");
    assert_eq!(body, generated);
    let (other, _) = call(&router, get_req("/id")).await;
    assert_ne!(other.headers()["x-request-id"], generated.as_str(), "ids are unique");

    let hostile = Request::get("/id").header("x-request-id", "x".repeat(200)).body(Body::empty()).unwrap();
    let (response, _) = call(&router, hostile).await;
    assert!(response.headers()["x-request-id"].to_str().unwrap().starts_with("req_"), "overlong ids are replaced");
}

#[tokio::test]
async fn slow_handlers_time_out_with_503() {
    let limits = Limits { request_timeout_ms: 100, ..Limits::default() };
    let (router, _) = layered(app(), &limits);
    let (response, body) = call(&router, get_req("/slow")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"]["type"], "unavailable");
    assert_eq!(json["error"]["code"], "request_timeout");
}

#[tokio::test]
async fn metrics_count_requests_by_matched_route_and_status() {
    let metrics = HttpMetrics::new("shop");
    let ready = Arc::new(AtomicBool::new(false));
    let metrics_router = Router::new().merge(app());
    let router = apply_standard_layers(metrics_router, &Limits::default(), &metrics);
    let metrics = Arc::new(metrics);
    let ops = ops_routes(Arc::clone(&metrics), Arc::clone(&ready));
    for id in ["1", "2", "3"] {
        call(&router, get_req(&format!("/items/{id}"))).await;
    }
    call(&router, get_req("/refuse")).await;
    // L6: business volumes, for a client certificate of the deployment only.
    let (response, text) = call(&ops, get_req("/metrics")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{text}");
    assert!(text.contains("client_certificate_required") && !text.contains("http_requests_total"), "{text}");
    let mut scrape = get_req("/metrics");
    scrape.extensions_mut().insert(kessai_http::PeerIdentity::new("monitoring", kessai_http::Party::Monitor));
    let (response, text) = call(&ops, scrape).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        text.contains(r#"http_requests_total{service="shop",method="GET",route="/items/{id}",status="200"} 3"#),
        "{text}"
    );
    assert!(text.contains(r#"route="/refuse",status="409""#), "{text}");
    assert!(text.contains("http_request_duration_seconds_bucket"), "{text}");
    assert!(!text.contains("/items/1"), "raw paths are not labels");

    let (response, body) = call(&ops, get_req("/healthz")).await;
    assert_eq!((response.status(), body.as_str()), (StatusCode::OK, "ok"));
    let (response, body) = call(&ops, get_req("/readyz")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains(r#""code":"not_ready""#));
    ready.store(true, Ordering::SeqCst);
    let (response, _) = call(&ops, get_req("/readyz")).await;
    assert_eq!(response.status(), StatusCode::OK);
}
