//! The center's HTTP API as the wallet uses it (PROTOCOL §7.1): POSTs with
//! an Idempotency-Key, retried with the same key after a transport failure
//! or a server error (or the same key still in progress); the center's
//! JWKS cached for [`CENTER_KEYS_TTL`] (fetched again on an unknown key
//! id); a store's keys as the center vouches for them; each access token
//! the center answers kept in the wallet's records and sent back.

use std::time::Duration;

use kessai_api::{ErrorBody, ErrorCode};
use kessai_core::ids::PartyId;
use kessai_core::jws::{self, JwsError, MessageKind, Verified};
use kessai_core::keys::KeyDirectory;
use kessai_core::time::Clock;
use kessai_http::{ClientError, HttpsClient};
use serde_json::Value;
use tokio::sync::RwLock;

use crate::limits::{CENTER_KEYS_TTL, MAX_POST_ATTEMPTS, POST_RETRY_PAUSE_MS};
use crate::records::Records;

/// Why a call to the center (or a store's key set) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CenterError {
    #[error("the center could not be reached: {0}")]
    Transport(#[from] ClientError),
    /// `code` is the name as sent; [`CenterError::code`] is it as this
    /// build knows it.
    #[error("the center refused ({status} {code}): {message}")]
    Refused { status: u16, code: String, message: String },
    #[error("the center's answer is malformed: {0}")]
    BadReply(String),
    #[error("the key set at {url} is unusable: {reason}")]
    Keys { url: String, reason: String },
    #[error("the center's access token could not be recorded: {0}")]
    Records(#[from] sqlx::Error),
}

impl CenterError {
    /// The error code of a refusal (`needs_audit`, …), if this build
    /// knows it.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            CenterError::Refused { code, .. } => ErrorCode::parse(code),
            _ => None,
        }
    }
}

/// One purchase step's answer (PROTOCOL §5) and one value-update step's
/// (PROTOCOL §9), as the center writes them.
pub use kessai_api::{StepReply, UpdateReply as ChargeReply};

/// The center seen from the wallet.
#[derive(Debug)]
pub struct CenterClient {
    http: HttpsClient,
    url: String,
    party: PartyId,
    /// The center's keys and when they were fetched.
    keys: RwLock<Option<(std::time::Instant, KeyDirectory)>>,
    records: Records,
}

fn refusal(status: u16, body: &[u8]) -> CenterError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => CenterError::Refused { status, code: error.code_name, message: error.message },
        // Not the error shape (a proxy's page, say): refused, with no code.
        Err(_) => CenterError::Refused { status, code: String::new(), message: format!("HTTP {status}") },
    }
}

impl CenterClient {
    pub fn new(http: HttpsClient, url: &str, party: PartyId, records: Records) -> CenterClient {
        CenterClient { http, url: url.to_owned(), party, keys: RwLock::new(None), records }
    }

    /// The `Authorization` header for a request on `path`: the access
    /// token of the settlement, value update, statement or token session it names, as the
    /// center handed it to this wallet (M4); none for other paths.
    async fn access(&self, path: &str) -> Result<Option<String>, CenterError> {
        let Some(id) = path_id(path) else { return Ok(None) };
        Ok(self.records.access(id).await?.map(|token| format!("Bearer {token}")))
    }

    /// Records the access token an answer carries, before anything acts on
    /// the answer: a wallet that restarts can still recover what it opened.
    async fn keep_access(&self, bytes: &[u8]) -> Result<(), CenterError> {
        let Ok(v) = serde_json::from_slice::<Value>(bytes) else { return Ok(()) };
        let id = ["settlement_id", "update_id", "statement_id", "session_id"].iter().find_map(|k| v[*k].as_str());
        if let (Some(id), Some(token)) = (id, v["access_token"].as_str()) {
            let now_s = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            self.records.save_access(id, token, now_s).await?;
        }
        Ok(())
    }

    /// GETs `path` with its access token.
    async fn get(&self, path: &str) -> Result<(axum::http::StatusCode, axum::body::Bytes), CenterError> {
        let access = self.access(path).await?;
        let headers: Vec<(&str, &str)> = access.iter().map(|a| ("authorization", a.as_str())).collect();
        let (status, _, bytes) = self.http.get_with(&format!("{}{path}", self.url), &headers).await?;
        Ok((status, bytes))
    }

    pub fn http(&self) -> &HttpsClient {
        &self.http
    }

    /// POSTs one step under `key`; the same key on every attempt.
    pub async fn step<B: serde::Serialize + Sync>(
        &self,
        path: &str,
        body: &B,
        key: &str,
    ) -> Result<StepReply, CenterError> {
        self.post(path, body, key).await
    }

    /// POSTs under `key` (retried with the same key on transport errors and
    /// 5xx) and reads the answer as `T`.
    pub async fn post<T: serde::de::DeserializeOwned, B: serde::Serialize + Sync>(
        &self,
        path: &str,
        body: &B,
        key: &str,
    ) -> Result<T, CenterError> {
        let url = format!("{}{path}", self.url);
        let access = self.access(path).await?;
        let mut headers = vec![("idempotency-key", key)];
        headers.extend(access.iter().map(|a| ("authorization", a.as_str())));
        let mut attempt = 1;
        loop {
            let answer = self.http.post_json(&url, body, &headers).await;
            // A server error, or the same key still being worked on (this
            // wallet's own earlier attempt, which it stopped waiting for).
            let retry = match &answer {
                Err(_) => true,
                Ok((status, bytes)) => {
                    status.is_server_error()
                        || (status.as_u16() == 409 && refusal(409, bytes).code() == Some(ErrorCode::RequestInProgress))
                }
            };
            if !retry || attempt >= MAX_POST_ATTEMPTS {
                let (status, bytes) = answer?;
                if !status.is_success() {
                    return Err(refusal(status.as_u16(), &bytes));
                }
                self.keep_access(&bytes).await?;
                return serde_json::from_slice(&bytes).map_err(|e| CenterError::BadReply(e.to_string()));
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(POST_RETRY_PAUSE_MS)).await;
        }
    }

    /// `GET /v1/settlements/{id}`.
    pub async fn settlement(&self, id: &str) -> Result<Value, CenterError> {
        let (status, bytes) = self.get(&format!("/v1/settlements/{id}")).await?;
        if !status.is_success() {
            return Err(refusal(status.as_u16(), &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| CenterError::BadReply(e.to_string()))
    }

    /// `GET /v1/value-updates/{id}`.
    pub async fn charge(&self, id: &str) -> Result<ChargeReply, CenterError> {
        let (status, bytes) = self.get(&format!("/v1/value-updates/{id}")).await?;
        if !status.is_success() {
            return Err(refusal(status.as_u16(), &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| CenterError::BadReply(e.to_string()))
    }

    /// The center's keys: cached, or fetched when `refresh` or not yet known.
    pub async fn keys(&self, refresh: bool) -> Result<KeyDirectory, VerifyError> {
        let cached = if refresh { None } else { self.cached_keys().await };
        match cached {
            Some(k) => Ok(k),
            None => self.refresh_keys().await,
        }
    }

    /// `GET /v1/settlements/{id}/receipt`: the SIG4 token, or `None` while
    /// the store has not answered (`404 receipt_not_yet`).
    pub async fn receipt(&self, id: &str) -> Result<Option<String>, CenterError> {
        let (status, bytes) = self.get(&format!("/v1/settlements/{id}/receipt")).await?;
        if !status.is_success() {
            let e = refusal(status.as_u16(), &bytes);
            return if e.code() == Some(ErrorCode::ReceiptNotYet) { Ok(None) } else { Err(e) };
        }
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| CenterError::BadReply(e.to_string()))?;
        v["receipt"].as_str().map(|s| Some(s.to_owned())).ok_or_else(|| CenterError::BadReply("no receipt".into()))
    }

    /// M3: the keys the center vouches for store `owner` (registered there,
    /// not revoked): what a store's receipt is checked against.
    pub async fn store_keys(&self, owner: &PartyId) -> Result<KeyDirectory, CenterError> {
        let url = format!("{}/v1/stores/{}/jwks.json", self.url, owner.as_str());
        fetch_jwks(&self.http, &url, owner).await
    }

    /// Verifies a center-signed token (SIG2, SIG3) against the center's
    /// keys; on an unknown key id fetches the JWKS again, once.
    pub async fn verify<M: MessageKind>(&self, token: &str, clock: &dyn Clock) -> Result<Verified<M>, VerifyError> {
        let cached = self.cached_keys().await;
        let keys = match cached {
            Some(k) => k,
            None => self.refresh_keys().await?,
        };
        match jws::verify::<M>(token, &keys, clock) {
            Err(JwsError::UnknownKey(_)) => {
                let keys = self.refresh_keys().await?;
                jws::verify::<M>(token, &keys, clock).map_err(VerifyError::Signature)
            }
            other => other.map_err(VerifyError::Signature),
        }
    }

    /// The center's keys as last fetched, while younger than
    /// [`CENTER_KEYS_TTL`].
    async fn cached_keys(&self) -> Option<KeyDirectory> {
        let cached = self.keys.read().await;
        cached.as_ref().filter(|(at, _)| at.elapsed() < CENTER_KEYS_TTL).map(|(_, keys)| keys.clone())
    }

    async fn refresh_keys(&self) -> Result<KeyDirectory, VerifyError> {
        let url = format!("{}/.well-known/jwks.json", self.url);
        let keys = fetch_jwks(&self.http, &url, &self.party).await?;
        *self.keys.write().await = Some((std::time::Instant::now(), keys.clone()));
        Ok(keys)
    }
}

/// Why a signed message was not accepted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("the signer's keys could not be fetched: {0}")]
    Keys(#[from] CenterError),
    #[error("the signature does not verify: {0}")]
    Signature(JwsError),
}

/// Fetches a JWKS; every key in it belongs to `owner`.
pub async fn fetch_jwks(http: &HttpsClient, url: &str, owner: &PartyId) -> Result<KeyDirectory, CenterError> {
    let bad = |reason: String| CenterError::Keys { url: url.to_owned(), reason };
    let (status, bytes) = http.get(url).await?;
    if !status.is_success() {
        return Err(bad(format!("HTTP {status}")));
    }
    let mut keys = KeyDirectory::new();
    keys.insert_jwks(owner, &bytes).map_err(|e| bad(e.to_string()))?;
    Ok(keys)
}

/// The settlement, value update, statement or token session id a center
/// path names: `/v1/settlements/{id}…`, `/v1/value-updates/{id}…`,
/// `/v1/charges/{id}…`, `/v1/statements/{id}…`, `/v1/token-sessions/{id}…`.
fn path_id(path: &str) -> Option<&str> {
    let rest = ["/v1/settlements/", "/v1/value-updates/", "/v1/charges/", "/v1/statements/", "/v1/token-sessions/"]
        .iter()
        .find_map(|prefix| path.strip_prefix(prefix))?;
    let id = rest.split('/').next().unwrap_or_default();
    (!id.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::path_id;

    #[test]
    fn the_id_of_a_path_is_its_segment_after_the_collection() {
        assert_eq!(path_id("/v1/settlements/stl_1/complete"), Some("stl_1"));
        assert_eq!(path_id("/v1/settlements/stl_1"), Some("stl_1"));
        assert_eq!(path_id("/v1/value-updates/vup_2/recover/status"), Some("vup_2"));
        assert_eq!(path_id("/v1/statements/stm_3/read"), Some("stm_3"));
        assert_eq!(path_id("/v1/token-sessions/tks_4/finish"), Some("tks_4"));
        assert_eq!(path_id("/v1/settlements"), None);
        assert_eq!(path_id("/v1/settlements/"), None);
        assert_eq!(path_id("/v1/cards/4b45535341490001/owed/apply"), None);
    }
}
