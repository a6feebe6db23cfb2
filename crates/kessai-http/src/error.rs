//! The one error shape of every kessai HTTP API.

use std::fmt;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The broad class of an error, for clients that branch on it.
/// Serialised in `snake_case` (`invalid_request`, `rate_limited`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorType {
    /// The request is malformed or fails validation (4xx).
    InvalidRequest,
    /// The client did not prove who it is.
    Authentication,
    /// The client is known but may not do this.
    Forbidden,
    /// The thing asked for does not exist (for this client).
    NotFound,
    /// The request conflicts with the current state (e.g. a retried id with
    /// different content).
    Conflict,
    /// Too many requests from this client.
    RateLimited,
    /// The service cannot answer now (timeout, overload, dependency down).
    Unavailable,
    /// A fault on our side; details are only in our logs.
    Internal,
}

/// An error answer: `{"error":{"type":..,"code":..,"message":..,"param":..}}`.
///
/// `code` is a stable machine-readable string (`body_too_large`); `message`
/// is for people and must never contain secrets or internals; `param` names
/// the request field at fault, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: ErrorType,
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    #[serde(rename = "type")]
    kind: ErrorType,
    code: &'a str,
    message: &'a str,
    param: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: ErrorType, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, kind, code, message: message.into(), param: None }
    }

    /// Names the request field at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> ApiError {
        self.param = Some(param.into());
        self
    }

    /// A 500 whose detail goes to the log only; the client sees a generic
    /// message, so no internals (SQL, paths, peers) leak.
    pub fn internal(log_detail: impl fmt::Display) -> ApiError {
        tracing::error!(detail = %log_detail, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::Internal,
            "internal_error",
            "an internal error occurred; it has been logged",
        )
    }

    /// A 404 in the error shape.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, ErrorType::NotFound, code, message)
    }

    /// A 400 in the error shape.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorType::InvalidRequest, code, message)
    }

    /// The JSON body exactly as sent.
    pub fn to_json(&self) -> String {
        let body = Body {
            error: Inner { kind: self.kind, code: self.code, message: &self.message, param: self.param.as_deref() },
        };
        // Serialising plain strings and a unit enum into a String cannot
        // fail; the fallback keeps the shape even so.
        serde_json::to_string(&body).unwrap_or_else(|_| {
            r#"{"error":{"type":"internal","code":"internal_error","message":"error","param":null}}"#.to_owned()
        })
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, [(header::CONTENT_TYPE, "application/json")], self.to_json()).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_is_exact() {
        let e = ApiError::new(StatusCode::BAD_REQUEST, ErrorType::InvalidRequest, "bad_amount", "amount is zero")
            .with_param("amount");
        assert_eq!(
            e.to_json(),
            r#"{"error":{"type":"invalid_request","code":"bad_amount","message":"amount is zero","param":"amount"}}"#
        );
        let e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorType::RateLimited, "rate_limited", "slow down");
        assert_eq!(
            e.to_json(),
            r#"{"error":{"type":"rate_limited","code":"rate_limited","message":"slow down","param":null}}"#
        );
    }

    #[test]
    fn internal_hides_the_detail() {
        let e = ApiError::internal("SELECT * FROM secrets failed at /var/lib/x");
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.to_json().contains("secrets"));
        assert!(!e.to_json().contains("/var/lib"));
    }
}
