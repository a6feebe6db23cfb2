//! The center's HTTP API as the wallet uses it (PROTOCOL §7.1): POSTs with
//! an Idempotency-Key, retried with the same key after a transport failure
//! or a server error; the center's JWKS fetched once and cached (fetched
//! again on an unknown key id); a store's JWKS fetched from its origin.

use std::time::Duration;

use kessai_core::ids::PartyId;
use kessai_core::jws::{self, JwsError, MessageKind, Verified};
use kessai_core::keys::KeyDirectory;
use kessai_core::time::Clock;
use kessai_http::{ClientError, HttpsClient};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::RwLock;

use crate::limits::{MAX_POST_ATTEMPTS, POST_RETRY_PAUSE_MS};

/// Why a call to the center (or a store's key set) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CenterError {
    #[error("the center could not be reached: {0}")]
    Transport(#[from] ClientError),
    #[error("the center refused ({status} {code}): {message}")]
    Refused { status: u16, code: String, message: String },
    #[error("the center's answer is malformed: {0}")]
    BadReply(String),
    #[error("the key set at {url} is unusable: {reason}")]
    Keys { url: String, reason: String },
}

impl CenterError {
    /// The stable error code of a refusal (`needs_audit`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            CenterError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// One step's answer: `{"settlement_id", "phase", "apdus", …}`.
#[derive(Debug, Clone, Deserialize)]
pub struct StepReply {
    pub settlement_id: String,
    pub phase: String,
    #[serde(default)]
    pub apdus: Vec<String>,
    #[serde(default)]
    pub offer: Option<String>,
    #[serde(default)]
    pub completion: Option<String>,
    #[serde(default)]
    pub balance_minor: Option<u64>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// One charge step's answer (PROTOCOL §9): `{"charge_id", "phase", "apdus", …}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChargeReply {
    pub charge_id: String,
    pub phase: String,
    #[serde(default)]
    pub apdus: Vec<String>,
    #[serde(default)]
    pub funding_ref: Option<String>,
    #[serde(default)]
    pub value_update: Option<String>,
    #[serde(default)]
    pub balance_minor: Option<u64>,
    #[serde(default)]
    pub balance_after_minor: Option<u64>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub reason_code: Option<String>,
    /// `credit` or `debit` (older centers: charges only, credit).
    #[serde(default)]
    pub direction: Option<String>,
    /// The amount the center says the update moves.
    #[serde(default)]
    pub amount: Option<kessai_core::Money>,
}

/// The center seen from the wallet.
#[derive(Debug)]
pub struct CenterClient {
    http: HttpsClient,
    url: String,
    party: PartyId,
    keys: RwLock<Option<KeyDirectory>>,
}

fn refusal(status: u16, body: &[u8]) -> CenterError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let field = |name: &str| v["error"][name].as_str().unwrap_or_default().to_owned();
    CenterError::Refused { status, code: field("code"), message: field("message") }
}

impl CenterClient {
    pub fn new(http: HttpsClient, url: &str, party: PartyId) -> CenterClient {
        CenterClient { http, url: url.to_owned(), party, keys: RwLock::new(None) }
    }

    pub fn http(&self) -> &HttpsClient {
        &self.http
    }

    /// POSTs one step under `key`; the same key on every attempt.
    pub async fn step(&self, path: &str, body: &Value, key: &str) -> Result<StepReply, CenterError> {
        self.post(path, body, key).await
    }

    /// POSTs under `key` (retried with the same key on transport errors and
    /// 5xx) and reads the answer as `T`.
    pub async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
        key: &str,
    ) -> Result<T, CenterError> {
        let url = format!("{}{path}", self.url);
        let mut attempt = 1;
        loop {
            let answer = self.http.post_json(&url, body, &[("idempotency-key", key)]).await;
            let retry = match &answer {
                Err(_) => true,
                Ok((status, _)) => status.is_server_error(),
            };
            if !retry || attempt >= MAX_POST_ATTEMPTS {
                let (status, bytes) = answer?;
                if !status.is_success() {
                    return Err(refusal(status.as_u16(), &bytes));
                }
                return serde_json::from_slice(&bytes).map_err(|e| CenterError::BadReply(e.to_string()));
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(POST_RETRY_PAUSE_MS)).await;
        }
    }

    /// `GET /v1/settlements/{id}`.
    pub async fn settlement(&self, id: &str) -> Result<Value, CenterError> {
        let (status, bytes) = self.http.get(&format!("{}/v1/settlements/{id}", self.url)).await?;
        if !status.is_success() {
            return Err(refusal(status.as_u16(), &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| CenterError::BadReply(e.to_string()))
    }

    /// `GET /v1/value-updates/{id}`.
    pub async fn charge(&self, id: &str) -> Result<ChargeReply, CenterError> {
        let (status, bytes) = self.http.get(&format!("{}/v1/value-updates/{id}", self.url)).await?;
        if !status.is_success() {
            return Err(refusal(status.as_u16(), &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| CenterError::BadReply(e.to_string()))
    }

    /// The center's keys: cached, or fetched when `refresh` or not yet known.
    pub async fn keys(&self, refresh: bool) -> Result<KeyDirectory, VerifyError> {
        let cached = if refresh { None } else { self.keys.read().await.clone() };
        match cached {
            Some(k) => Ok(k),
            None => self.refresh_keys().await,
        }
    }

    /// `GET /v1/settlements/{id}/receipt`: the SIG4 token, or `None` while
    /// the store has not answered (`404 receipt_not_yet`).
    pub async fn receipt(&self, id: &str) -> Result<Option<String>, CenterError> {
        let (status, bytes) = self.http.get(&format!("{}/v1/settlements/{id}/receipt", self.url)).await?;
        if !status.is_success() {
            let e = refusal(status.as_u16(), &bytes);
            return if e.code() == Some("receipt_not_yet") { Ok(None) } else { Err(e) };
        }
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| CenterError::BadReply(e.to_string()))?;
        v["receipt"].as_str().map(|s| Some(s.to_owned())).ok_or_else(|| CenterError::BadReply("no receipt".into()))
    }

    /// Verifies a center-signed token (SIG2, SIG3) against the center's
    /// keys; on an unknown key id fetches the JWKS again, once.
    pub async fn verify<M: MessageKind>(&self, token: &str, clock: &dyn Clock) -> Result<Verified<M>, VerifyError> {
        let cached = self.keys.read().await.clone();
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

    async fn refresh_keys(&self) -> Result<KeyDirectory, VerifyError> {
        let url = format!("{}/.well-known/jwks.json", self.url);
        let keys = fetch_jwks(&self.http, &url, &self.party).await?;
        *self.keys.write().await = Some(keys.clone());
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
