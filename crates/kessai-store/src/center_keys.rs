//! The center's public keys, fetched from its JWKS and cached.
//!
//! Rotation: a completion signed with a key id we do not know makes us
//! fetch the JWKS again — at most once per `refetch_min_interval`, so
//! tokens with made-up key ids cannot make us hammer the center. The cache
//! is also refreshed when older than [`JWKS_MAX_AGE_MS`]. If a fetch
//! fails, the last good key set stays in use.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use kessai_core::ids::PartyId;
use kessai_core::jws::{JwsError, Verified};
use kessai_core::keys::KeyDirectory;
use kessai_core::messages::completion::Completion;
use kessai_core::time::Clock;
use kessai_http::HttpsClient;
use kessai_merchant::{CompletionError, Merchant};
use tokio::sync::Mutex;

use crate::limits::JWKS_MAX_AGE_MS;

/// Why the center's keys could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeysError {
    #[error("the center's keys are not available: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Completion(#[from] CompletionError),
}

#[derive(Debug, Default)]
struct Cache {
    keys: Option<Arc<KeyDirectory>>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
}

/// The center's keys as last fetched.
#[derive(Debug)]
pub struct CenterKeys {
    client: HttpsClient,
    jwks_url: String,
    center: PartyId,
    refetch_min_interval: Duration,
    cache: Mutex<Cache>,
}

impl CenterKeys {
    pub fn new(client: HttpsClient, jwks_url: String, center: PartyId, refetch_min_interval_ms: u64) -> CenterKeys {
        CenterKeys {
            client,
            jwks_url,
            center,
            refetch_min_interval: Duration::from_millis(refetch_min_interval_ms),
            cache: Mutex::default(),
        }
    }

    /// Verifies a completion with the center's current keys, refetching
    /// them once if the token names a key we do not know.
    pub async fn verify(
        &self,
        merchant: &Merchant,
        token: &str,
        clock: &dyn Clock,
    ) -> Result<Verified<Completion>, KeysError> {
        let keys = self.current(false).await?;
        match merchant.verify_completion(token, &keys, clock) {
            Err(CompletionError::Token(JwsError::UnknownKey(_))) => {
                let keys = self.current(true).await?;
                Ok(merchant.verify_completion(token, &keys, clock)?)
            }
            other => Ok(other?),
        }
    }

    /// The cached keys; fetched first if there are none, if they are old,
    /// or if `unknown_kid` and the last attempt is long enough ago.
    async fn current(&self, unknown_kid: bool) -> Result<Arc<KeyDirectory>, KeysError> {
        let mut cache = self.cache.lock().await;
        let now = Instant::now();
        let stale = cache.fetched_at.is_none_or(|t| now.duration_since(t) > Duration::from_millis(JWKS_MAX_AGE_MS));
        let may_retry = cache.attempted_at.is_none_or(|t| now.duration_since(t) >= self.refetch_min_interval);
        let want = cache.keys.is_none() || stale || unknown_kid;
        if want && may_retry {
            cache.attempted_at = Some(now);
            match self.fetch().await {
                Ok(keys) => {
                    tracing::info!(keys = keys.len(), url = %self.jwks_url, "fetched the center's JWKS");
                    cache.keys = Some(Arc::new(keys));
                    cache.fetched_at = Some(now);
                }
                Err(e) => tracing::warn!(error = %e, url = %self.jwks_url, "fetching the center's JWKS failed"),
            }
        }
        cache.keys.clone().ok_or_else(|| KeysError::Unavailable("no key set fetched yet".into()))
    }

    async fn fetch(&self) -> Result<KeyDirectory, String> {
        let (status, body) = self.client.get(&self.jwks_url).await.map_err(|e| e.to_string())?;
        if status != StatusCode::OK {
            return Err(format!("status {status}"));
        }
        let mut keys = KeyDirectory::new();
        keys.insert_jwks(&self.center, &body).map_err(|e| e.to_string())?;
        Ok(keys)
    }
}
