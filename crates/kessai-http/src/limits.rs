//! Every bound of the HTTP layer, in one place.

use serde::Deserialize;

/// Default largest request body.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Default time a request may take, body reading included.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 15_000;
/// Default sustained requests per second per client.
pub const DEFAULT_RATE_PER_CLIENT_PER_S: u32 = 50;
/// Default burst per client above the sustained rate.
pub const DEFAULT_RATE_BURST: u32 = 100;

/// Most connections served at once; further clients wait in the backlog.
pub const MAX_CONNECTIONS: usize = 512;
/// Most connections one client address holds at once (L6): a quarter of
/// the slots, so no one client can take them all. Beyond it a new
/// connection from that address is closed at once. (A load balancer in
/// front keeps its backend connections below it.)
pub const MAX_CONNECTIONS_PER_CLIENT: usize = MAX_CONNECTIONS / 4;
/// Time a TLS handshake may take before the connection is dropped.
pub const TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
/// Time a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Time open connections get to finish after shutdown was asked for.
pub const SHUTDOWN_GRACE_MS: u64 = 10_000;
/// Most clients the rate limiter tracks at once. Beyond it, idle clients
/// are forgotten; if none is idle, new clients are refused until some are.
pub const MAX_RATE_LIMITED_CLIENTS: usize = 10_000;
/// Longest `x-request-id` taken from a client; longer ones are replaced.
pub const MAX_REQUEST_ID_BYTES: usize = 64;
/// Largest response body [`crate::HttpsClient`] reads.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Time [`crate::HttpsClient`] may take to open a TCP connection.
pub const CLIENT_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Largest accepted `max_body_bytes` setting.
pub const MAX_BODY_BYTES_CEILING: usize = 16 * 1024 * 1024;

const _: () = assert!(DEFAULT_MAX_BODY_BYTES <= MAX_BODY_BYTES_CEILING);
const _: () = assert!(DEFAULT_RATE_BURST >= DEFAULT_RATE_PER_CLIENT_PER_S);
const _: () = assert!(HEADER_READ_TIMEOUT_MS <= DEFAULT_REQUEST_TIMEOUT_MS);

/// Per-request limits of [`crate::apply_standard_layers`]; embeddable in a
/// party's TOML configuration (every field optional).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body; larger requests get 413.
    pub max_body_bytes: usize,
    /// Time a request may take, body reading included; then 503.
    pub request_timeout_ms: u64,
    /// Sustained requests per second per client (peer certificate name, or
    /// remote IP); 0 turns the rate limit off.
    pub rate_per_client_per_s: u32,
    /// Requests a client may make at once above the sustained rate.
    pub rate_burst: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            rate_per_client_per_s: DEFAULT_RATE_PER_CLIENT_PER_S,
            rate_burst: DEFAULT_RATE_BURST,
        }
    }
}

impl Limits {
    /// Refuses settings that cannot work (zero body, zero timeout, a burst
    /// below one request, a body limit above the ceiling).
    pub fn check(&self) -> Result<(), String> {
        if self.max_body_bytes == 0 || self.max_body_bytes > MAX_BODY_BYTES_CEILING {
            return Err(format!("max_body_bytes must be 1 to {MAX_BODY_BYTES_CEILING}"));
        }
        if self.request_timeout_ms == 0 {
            return Err("request_timeout_ms must be positive".into());
        }
        if self.rate_per_client_per_s > 0 && self.rate_burst == 0 {
            return Err("rate_burst must be at least 1 when rate limiting is on".into());
        }
        Ok(())
    }
}
