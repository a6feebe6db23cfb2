//! A man in the middle between the wallet and the center: forwards every
//! request over TLS and changes one thing on the way.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, Request, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use kessai_http::HttpsClient;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::world::World;

#[derive(Clone, Debug)]
pub enum Tamper {
    /// Changes nothing: counts the wallet's requests.
    Nothing,
    /// Changes one byte of the sealed DEBIT in the offer step's answer.
    DebitByte,
    /// Changes one character of SIG2's signature.
    OfferSignature,
    /// Opens the settlement with this other bill instead of the wallet's.
    SwapBill(String),
    /// Changes one character of SIG5's signature (a charge's balance step).
    ValueUpdateSignature,
}

struct Proxy {
    upstream: String,
    http: HttpsClient,
    tamper: Tamper,
    calls: Calls,
}

/// Every request the proxy forwarded, as `METHOD path`.
pub type Calls = Arc<std::sync::Mutex<Vec<String>>>;

fn tamper_offer_step(tamper: &Tamper, body: &[u8]) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(body).unwrap();
    match tamper {
        Tamper::DebitByte => {
            // The DEBIT is the last command (a LOG COLLECTED may lead).
            let last = v["apdus"].as_array().unwrap().len() - 1;
            let mut debit = hex::decode(v["apdus"][last].as_str().unwrap()).unwrap();
            debit[10] ^= 0x01;
            v["apdus"][last] = json!(hex::encode(debit));
        }
        Tamper::OfferSignature => {
            let offer = v["offer"].as_str().unwrap().to_owned();
            let at = offer.len() - 20;
            let flipped = if &offer[at..=at] == "A" { "B" } else { "A" };
            v["offer"] = json!(format!("{}{flipped}{}", &offer[..at], &offer[at + 1..]));
        }
        Tamper::ValueUpdateSignature => {
            let token = v["value_update"].as_str().unwrap().to_owned();
            let at = token.len() - 20;
            let flipped = if &token[at..=at] == "A" { "B" } else { "A" };
            v["value_update"] = json!(format!("{}{flipped}{}", &token[..at], &token[at + 1..]));
        }
        Tamper::SwapBill(_) | Tamper::Nothing => {}
    }
    serde_json::to_vec(&v).unwrap()
}

async fn forward(State(p): State<Arc<Proxy>>, req: Request<Body>) -> Response {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    p.calls.lock().unwrap().push(format!("{method} {path}"));
    let [key, access] = ["idempotency-key", "authorization"]
        .map(|name| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned));
    let bytes = req.into_body().collect().await.unwrap().to_bytes();
    let url = format!("{}{path}", p.upstream);
    let (status, body) = if method == Method::GET {
        let headers: Vec<(&str, &str)> = access.iter().map(|a| ("authorization", a.as_str())).collect();
        let (status, _, body) = p.http.get_with(&url, &headers).await.unwrap();
        (status, body)
    } else {
        let mut v: Value = serde_json::from_slice(&bytes).unwrap();
        if let (Tamper::SwapBill(other), "/v1/settlements") = (&p.tamper, path.as_str()) {
            v["bill"] = json!(other);
        }
        let mut headers: Vec<(&str, &str)> = key.iter().map(|k| ("idempotency-key", k.as_str())).collect();
        headers.extend(access.iter().map(|a| ("authorization", a.as_str())));
        p.http.post_json(&url, &v, &headers).await.unwrap()
    };
    let is_offer_step = path.ends_with("/balance") && !path.contains("/recover/");
    let body = if is_offer_step && status.is_success() { tamper_offer_step(&p.tamper, &body) } else { body.to_vec() };
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Starts the proxy in front of the world's center; its URL and its stop.
pub async fn start(w: &World, tamper: Tamper) -> (String, oneshot::Sender<()>) {
    let (url, stop, _) = start_counting(w, tamper).await;
    (url, stop)
}

/// As [`start`], with the requests it forwards.
pub async fn start_counting(w: &World, tamper: Tamper) -> (String, oneshot::Sender<()>, Calls) {
    let calls = Calls::default();
    let proxy = Arc::new(Proxy { upstream: w.center_url.clone(), http: w.http.clone(), tamper, calls: calls.clone() });
    let app = Router::new().fallback(forward).with_state(proxy);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let tls = Arc::new(kessai_tls::server_config(&w.ca, "localhost", None).unwrap());
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(kessai_http::serve(app, listener, tls, async {
        let _ = rx.await;
    }));
    (url, tx, calls)
}
