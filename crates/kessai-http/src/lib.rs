//! kessai's HTTP conventions, shared by every party (center, store, wallet).
//!
//! - [`ApiError`]: the one error shape, `{"error":{"type","code","message","param"}}`.
//! - [`apply_standard_layers`]: request ids, a tracing span per request, a
//!   body size limit, a timeout, a per-client rate limit and request metrics,
//!   every refusal in the error shape.
//! - [`HttpMetrics`] and [`ops_routes`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`serve`]: HTTPS (and mutual TLS) with tokio-rustls and hyper; the
//!   verified client certificate's name reaches handlers as [`PeerIdentity`].
//!   [`serve_plain`]: plain HTTP on a loopback address only.
//! - [`HttpsClient`]: a small HTTPS client over our own rustls configuration.
//! - [`init_json_logs`]: JSON logs on stderr.
//!
//! Every bound lives in [`limits`].

mod client;
mod error;
pub mod keys;
mod layers;
pub mod limits;
mod logs;
pub mod loopback;
mod metrics;
mod ops;
pub mod party;
mod peer;
mod serve;

pub use client::{ClientError, HttpsClient};
pub use error::{ApiError, ErrorCode, ErrorType};
pub use layers::{RequestId, apply_standard_layers, not_found_fallback};
pub use limits::Limits;
pub use logs::init_json_logs;
pub use metrics::HttpMetrics;
pub use ops::ops_routes;
pub use peer::{Party, PeerIdentity};
pub use serve::{serve, serve_plain};
