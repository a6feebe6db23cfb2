//! The one error shape of every kessai HTTP API.

use std::fmt;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use kessai_api::{ErrorBody, ErrorDetail};
pub use kessai_api::{ErrorCode, ErrorType};

/// An error answer: `{"error":{"type","code","number","message","param"}}`.
///
/// The code fixes the status and the type ([`ErrorCode`]); `message` is for
/// people and must never contain secrets or internals; `param` names the
/// request field at fault, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub param: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into(), param: None }
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
        ApiError::new(ErrorCode::InternalError, "an internal error occurred; it has been logged")
    }

    /// The HTTP status, the code's.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The JSON body exactly as sent.
    pub fn to_json(&self) -> String {
        let body = ErrorBody { error: ErrorDetail::new(self.code, self.message.clone(), self.param.clone()) };
        // Serialising strings, numbers and a unit enum into a String cannot
        // fail; the fallback keeps the shape even so.
        serde_json::to_string(&body).unwrap_or_else(|_| {
            r#"{"error":{"type":"internal","code":"internal_error","number":1901,"message":"error","param":null}}"#
                .to_owned()
        })
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.code.status(), self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), [(header::CONTENT_TYPE, "application/json")], self.to_json()).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_is_exact() {
        let e = ApiError::new(ErrorCode::AmountOutOfRange, "amount is zero").with_param("amount");
        assert_eq!(e.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            e.to_json(),
            r#"{"error":{"type":"invalid_request","code":"amount_out_of_range","number":1712,"message":"amount is zero","param":"amount"}}"#
        );
        let e = ApiError::new(ErrorCode::RateLimited, "slow down");
        assert_eq!(e.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            e.to_json(),
            r#"{"error":{"type":"rate_limited","code":"rate_limited","number":1801,"message":"slow down","param":null}}"#
        );
    }

    #[test]
    fn internal_hides_the_detail() {
        let e = ApiError::internal("SELECT * FROM secrets failed at /var/lib/x");
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.to_json().contains("secrets"));
        assert!(!e.to_json().contains("/var/lib"));
    }
}
