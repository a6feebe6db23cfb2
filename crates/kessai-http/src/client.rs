//! A small HTTPS client over our own rustls configuration.

use std::fmt;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use crate::limits::{CLIENT_CONNECT_TIMEOUT_MS, MAX_RESPONSE_BYTES};

/// Why a request could not be made or answered. An HTTP error status is
/// not a `ClientError`: it comes back with its body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("invalid URL {0:?}")]
    InvalidUrl(String),
    #[error("invalid header {0:?}")]
    InvalidHeader(String),
    #[error("request body could not be encoded: {0}")]
    Encode(String),
    #[error("request failed: {0}")]
    Request(String),
    #[error("no complete answer within {0} ms")]
    Timeout(u64),
    #[error("response body exceeds {MAX_RESPONSE_BYTES} bytes")]
    ResponseTooLarge,
    #[error("response body could not be read: {0}")]
    Body(String),
}

/// HTTPS only (plain `http://` URLs are refused), HTTP/1.1, with the given
/// rustls configuration (its roots and, for mutual TLS, its client
/// certificate). Every request, body included, is bounded by `timeout_ms`
/// and responses by [`MAX_RESPONSE_BYTES`]. Cheap to clone.
#[derive(Clone)]
pub struct HttpsClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout_ms: u64,
}

impl fmt::Debug for HttpsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsClient").field("timeout_ms", &self.timeout_ms).finish_non_exhaustive()
    }
}

impl HttpsClient {
    pub fn new(tls: rustls::ClientConfig, timeout_ms: u64) -> HttpsClient {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_millis(CLIENT_CONNECT_TIMEOUT_MS)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        HttpsClient { client: Client::builder(TokioExecutor::new()).build(connector), timeout_ms }
    }

    /// POSTs `body` as JSON with extra `headers`; returns status and body.
    pub async fn post_json<T: Serialize>(
        &self,
        url: &str,
        body: &T,
        headers: &[(&str, &str)],
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let json = serde_json::to_vec(body).map_err(|e| ClientError::Encode(e.to_string()))?;
        let mut request = request(Method::POST, url, Bytes::from(json))?;
        request.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        add_headers(&mut request, headers)?;
        self.send(request).await
    }

    /// POSTs `fields` as an HTML form (`application/x-www-form-urlencoded`)
    /// with extra `headers` (a `Cookie`, say), as a browser submits a form.
    /// Redirects are not followed: a 303 comes back with its `Location`
    /// and `Set-Cookie` headers.
    pub async fn post_form(
        &self,
        url: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Result<(StatusCode, HeaderMap, Bytes), ClientError> {
        let body = form_urlencoded(fields);
        let mut request = request(Method::POST, url, Bytes::from(body))?;
        request
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        add_headers(&mut request, headers)?;
        self.send_full(request).await
    }

    /// GETs `url` with extra `headers`; returns status, headers and body
    /// (redirects are not followed).
    pub async fn get_with(
        &self,
        url: &str,
        headers: &[(&str, &str)],
    ) -> Result<(StatusCode, HeaderMap, Bytes), ClientError> {
        let mut request = request(Method::GET, url, Bytes::new())?;
        add_headers(&mut request, headers)?;
        self.send_full(request).await
    }

    /// GETs `url`; returns status and body.
    pub async fn get(&self, url: &str) -> Result<(StatusCode, Bytes), ClientError> {
        self.send(request(Method::GET, url, Bytes::new())?).await
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), ClientError> {
        self.send_full(request).await.map(|(status, _, body)| (status, body))
    }

    async fn send_full(&self, request: Request<Full<Bytes>>) -> Result<(StatusCode, HeaderMap, Bytes), ClientError> {
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| ClientError::Request(chain(&e)))?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES).collect().await.map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                    ClientError::ResponseTooLarge
                } else {
                    ClientError::Body(e.to_string())
                }
            })?;
            Ok((status, headers, body.to_bytes()))
        };
        tokio::time::timeout(Duration::from_millis(self.timeout_ms), exchange)
            .await
            .map_err(|_| ClientError::Timeout(self.timeout_ms))?
    }
}

fn add_headers(request: &mut Request<Full<Bytes>>, headers: &[(&str, &str)]) -> Result<(), ClientError> {
    for (name, value) in headers {
        let name = HeaderName::try_from(*name).map_err(|_| ClientError::InvalidHeader((*name).to_owned()))?;
        let value = HeaderValue::try_from(*value).map_err(|_| ClientError::InvalidHeader(name.to_string()))?;
        request.headers_mut().insert(name, value);
    }
    Ok(())
}

/// `application/x-www-form-urlencoded` as the WHATWG URL standard writes
/// it: `*-._` and alphanumerics as they are, space as `+`, every other
/// byte of the UTF-8 as `%XX`.
fn form_urlencoded(fields: &[(&str, &str)]) -> String {
    fn encode(out: &mut String, s: &str) {
        for b in s.bytes() {
            match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(char::from(b)),
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
    }
    let mut out = String::new();
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode(&mut out, name);
        out.push('=');
        encode(&mut out, value);
    }
    out
}

fn request(method: Method, url: &str, body: Bytes) -> Result<Request<Full<Bytes>>, ClientError> {
    let uri: Uri = url.parse().map_err(|_| ClientError::InvalidUrl(url.chars().take(200).collect()))?;
    if uri.scheme_str() != Some("https") || uri.host().is_none() {
        return Err(ClientError::InvalidUrl(url.chars().take(200).collect()));
    }
    Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::new(body))
        .map_err(|_| ClientError::InvalidUrl(url.chars().take(200).collect()))
}

/// An error with its causes, so "connection refused" or the TLS alert is
/// visible and not only "client error (Connect)".
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
