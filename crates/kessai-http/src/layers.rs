//! The standard request layer: request id, span, rate limit, body limit,
//! timeout and metrics, with every refusal in the error shape.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use kessai_core::random::{OsRandom, Random};
use tracing::Instrument;

use crate::error::{ApiError, ErrorCode};
use crate::limits::{Limits, MAX_RATE_LIMITED_CLIENTS, MAX_REQUEST_ID_BYTES};
use crate::metrics::{HttpMetrics, Recorder};
use crate::peer::PeerIdentity;

const X_REQUEST_ID: &str = "x-request-id";

/// The request's id (from `x-request-id`, or generated), as a request
/// extension; echoed in the response's `x-request-id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

struct Standard {
    limits: Limits,
    recorder: Recorder,
    rate: RateLimiter,
}

/// Wraps every route of `router` (and its fallback) in the standard layer.
/// Apply it last, after all routes were added.
///
/// Order per request: request id and span → rate limit (429) → declared
/// size (413) → timeout (503) around reading the body (413 past the limit)
/// and the handler → metrics by matched route and status → `x-request-id`.
pub fn apply_standard_layers(router: Router, limits: &Limits, metrics: &HttpMetrics) -> Router {
    let state = Arc::new(Standard {
        limits: limits.clone(),
        recorder: metrics.recorder(),
        rate: RateLimiter::new(limits.rate_per_client_per_s, limits.rate_burst),
    });
    router.layer(axum::middleware::from_fn_with_state(state, standard))
}

/// A fallback handler answering 404 in the error shape.
pub async fn not_found_fallback() -> ApiError {
    ApiError::new(ErrorCode::RouteNotFound, "no such route")
}

async fn standard(State(s): State<Arc<Standard>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id_of(&req);
    let method = req.method().as_str().to_owned();
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_owned();
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut response = guarded(&s, req, next).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    s.recorder.observe(&method, &route, status, elapsed);
    span.in_scope(|| tracing::info!(status, elapsed_ms = elapsed.as_millis() as u64, "request answered"));
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    response
}

/// Keeps a client's id if it is short visible ASCII, else makes one.
fn request_id_of(req: &Request) -> String {
    let given = req.headers().get(X_REQUEST_ID).and_then(|v| v.to_str().ok());
    match given {
        Some(id) if !id.is_empty() && id.len() <= MAX_REQUEST_ID_BYTES && id.bytes().all(|b| b.is_ascii_graphic()) => {
            id.to_owned()
        }
        _ => {
            let mut bytes = [0u8; 16];
            OsRandom.fill_bytes(&mut bytes);
            format!("req_{}", hex::encode(bytes))
        }
    }
}

fn client_key(req: &Request) -> String {
    if let Some(peer) = req.extensions().get::<PeerIdentity>() {
        return format!("peer:{}", peer.name);
    }
    match req.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => format!("ip:{}", addr.ip()),
        None => "unknown".to_owned(),
    }
}

async fn guarded(s: &Standard, req: Request, next: Next) -> Response {
    if let Err(retry_after_s) = s.rate.admit(&client_key(&req), Instant::now()) {
        let mut response =
            ApiError::new(ErrorCode::RateLimited, "too many requests from this client; retry later").into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
        return response;
    }
    let max = s.limits.max_body_bytes;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return too_large(max).into_response();
    }
    let work = async move {
        let (parts, body) = req.into_parts();
        let bytes = match Limited::new(body, max).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(max).into_response(),
            Err(_) => {
                return ApiError::new(ErrorCode::BodyUnreadable, "the request body could not be read").into_response();
            }
        };
        next.run(Request::from_parts(parts, Body::from(bytes))).await
    };
    match tokio::time::timeout(Duration::from_millis(s.limits.request_timeout_ms), work).await {
        Ok(response) => response,
        Err(_) => {
            ApiError::new(ErrorCode::RequestTimeout, "the request took too long and was abandoned").into_response()
        }
    }
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(ErrorCode::BodyTooLarge, format!("the request body exceeds {max} bytes"))
}

/// Token buckets per client: `rate` tokens per second, at most `burst`.
struct RateLimiter {
    rate_per_s: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refilled(self, now: Instant, rate_per_s: f64, burst: f64) -> Bucket {
        let gained = now.saturating_duration_since(self.at).as_secs_f64() * rate_per_s;
        Bucket { tokens: (self.tokens + gained).min(burst), at: now }
    }
}

impl RateLimiter {
    fn new(rate_per_s: u32, burst: u32) -> RateLimiter {
        RateLimiter { rate_per_s: f64::from(rate_per_s), burst: f64::from(burst.max(1)), buckets: Mutex::default() }
    }

    /// Takes one token for `client`, or says after how many seconds to retry.
    fn admit(&self, client: &str, now: Instant) -> Result<(), u64> {
        if self.rate_per_s <= 0.0 {
            return Ok(());
        }
        // A poisoned lock only means another request panicked mid-update;
        // the buckets are still usable numbers.
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.contains_key(client) && buckets.len() >= MAX_RATE_LIMITED_CLIENTS {
            let (rate, burst) = (self.rate_per_s, self.burst);
            buckets.retain(|_, b| b.refilled(now, rate, burst).tokens < burst);
            if buckets.len() >= MAX_RATE_LIMITED_CLIENTS {
                return Err(1);
            }
        }
        let bucket = buckets.entry(client.to_owned()).or_insert(Bucket { tokens: self.burst, at: now });
        let mut current = bucket.refilled(now, self.rate_per_s, self.burst);
        if current.tokens >= 1.0 {
            current.tokens -= 1.0;
            *bucket = current;
            return Ok(());
        }
        *bucket = current;
        Err(((1.0 - current.tokens) / self.rate_per_s).ceil().max(1.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let limiter = RateLimiter::new(2, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.admit("a", t0), Ok(()));
        }
        assert_eq!(limiter.admit("a", t0), Err(1));
        assert_eq!(limiter.admit("b", t0), Ok(()), "clients are independent");
        assert_eq!(limiter.admit("a", t0 + Duration::from_millis(500)), Ok(()));
        assert!(limiter.admit("a", t0 + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn zero_rate_means_no_limit() {
        let limiter = RateLimiter::new(0, 0);
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert_eq!(limiter.admit("a", t0), Ok(()));
        }
    }
}
