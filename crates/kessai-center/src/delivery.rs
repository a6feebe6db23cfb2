//! Delivers completions (SIG3) to stores over mutual TLS and keeps their
//! receipts (SIG4). State lives in the database — a completed settlement
//! without a receipt is undelivered — so any instance delivers after any
//! crash; the store's answer is idempotent, so a completion delivered twice
//! is still accepted once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kessai_core::ids::{SettlementId, StoreId};
use kessai_http::HttpsClient;
use serde::Deserialize;

use crate::db::{MAX_LIST, UndeliveredCursor};
use crate::purchase::Settlement;
use crate::service::Center;

/// Longest wait between two attempts for one settlement.
const MAX_BACKOFF_MS: u64 = 60_000;
/// First wait after a failed attempt.
const FIRST_BACKOFF_MS: u64 = 500;
/// Most settlements whose retry pacing is remembered.
const MAX_BACKOFF_ENTRIES: usize = 10_000;
/// How long a store's notify URL is used before it is read again (a change
/// through the admin API reaches delivery within this).
const NOTIFY_URL_TTL: Duration = Duration::from_secs(1);
/// Most stores whose notify URL is remembered.
const MAX_NOTIFY_URLS: usize = 10_000;

/// Why an attempt did not deliver.
enum NotDelivered {
    /// The store has no notify URL (yet): nothing to send to.
    NoUrl,
    Failed(String),
}

#[derive(Deserialize)]
struct ReceiptBody {
    receipt: String,
}

pub struct Deliverer {
    center: Arc<Center>,
    client: HttpsClient,
    /// Per settlement: failed attempts and when to try next (pacing only;
    /// losing it on restart just means an earlier retry).
    backoff: HashMap<SettlementId, (u32, Instant)>,
    /// Per store: its notify URL as read, and when.
    notify_urls: HashMap<StoreId, (Instant, Option<String>)>,
    /// Where the next sweep reads from, and when it last started at the oldest.
    cursor: UndeliveredCursor,
    wrapped: Instant,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer").field("waiting", &self.backoff.len()).finish()
    }
}

impl Deliverer {
    pub fn new(center: Arc<Center>, client: HttpsClient) -> Deliverer {
        Deliverer {
            center,
            client,
            backoff: HashMap::new(),
            notify_urls: HashMap::new(),
            cursor: UndeliveredCursor::default(),
            wrapped: Instant::now(),
        }
    }

    /// Sweeps every `interval`; in between, delivers each settlement as it
    /// completes (as committed, not read again; any that fails is left to
    /// the sweeps).
    pub async fn run(mut self, interval: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        let completed = self.center.completed.clone();
        loop {
            let delivered = self.sweep().await;
            if delivered > 0 {
                tracing::info!(delivered, "completions delivered");
            }
            let next_sweep = tokio::time::Instant::now() + interval;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(next_sweep) => break,
                    settlements = completed.next() => {
                        for s in settlements {
                            self.attempt(&s).await;
                        }
                    }
                    _ = stop.changed() => return,
                }
            }
        }
    }

    /// One pass over a page of completed settlements without a receipt:
    /// the page after the last one swept, or the oldest once the last page
    /// was short or [`MAX_BACKOFF_MS`] went by since the sweeps last started
    /// there. So every undelivered completion is tried again within (backlog
    /// / page) sweeps, even when more than a page of older ones keeps
    /// failing (a store down, or without a notify URL), and within about
    /// [`MAX_BACKOFF_MS`] even if one completed behind the cursor.
    pub async fn sweep(&mut self) -> usize {
        if self.wrapped.elapsed() >= Duration::from_millis(MAX_BACKOFF_MS) {
            self.cursor = UndeliveredCursor::default();
        }
        if self.cursor == UndeliveredCursor::default() {
            self.wrapped = Instant::now();
        }
        let completed = match self.center.db.undelivered_after(&self.cursor, MAX_LIST).await {
            Ok((list, next)) => {
                self.cursor = next;
                list
            }
            Err(e) => {
                tracing::warn!(error = %e, "listing undelivered completions");
                return 0;
            }
        };
        let mut delivered = 0;
        for s in &completed {
            delivered += usize::from(self.attempt(s).await);
        }
        delivered
    }

    /// Delivers `s` unless it has its receipt or waits for its next attempt;
    /// true if delivered now.
    async fn attempt(&mut self, s: &Settlement) -> bool {
        if s.receipt_token().is_some() || self.backoff.get(&s.id).is_some_and(|(_, next)| *next > Instant::now()) {
            return false;
        }
        match self.deliver(s).await {
            Ok(()) => {
                self.backoff.remove(&s.id);
                true
            }
            Err(not) => {
                let attempts = self.backoff.get(&s.id).map_or(0, |(n, _)| *n) + 1;
                let wait = FIRST_BACKOFF_MS.saturating_mul(1 << attempts.min(16)).min(MAX_BACKOFF_MS);
                match not {
                    NotDelivered::NoUrl => {
                        tracing::debug!(settlement = %s.id, attempts, "completion waits for its store's notify URL");
                    }
                    NotDelivered::Failed(why) => {
                        tracing::warn!(settlement = %s.id, attempts, error = %why, "completion not delivered; will retry");
                    }
                }
                if self.backoff.len() >= MAX_BACKOFF_ENTRIES {
                    let now = Instant::now();
                    self.backoff.retain(|_, (_, next)| *next > now);
                }
                if self.backoff.len() < MAX_BACKOFF_ENTRIES || self.backoff.contains_key(&s.id) {
                    self.backoff.insert(s.id.clone(), (attempts, Instant::now() + Duration::from_millis(wait)));
                }
                false
            }
        }
    }

    /// The notify URL of `store`, read at most every [`NOTIFY_URL_TTL`].
    async fn notify_url(&mut self, store: &StoreId) -> Result<Option<String>, String> {
        if let Some((at, url)) = self.notify_urls.get(store)
            && at.elapsed() < NOTIFY_URL_TTL
        {
            return Ok(url.clone());
        }
        let read_at = Instant::now();
        let url = self.center.db.store(store).await.map_err(|e| e.to_string())?.and_then(|st| st.notify_url);
        if self.notify_urls.len() >= MAX_NOTIFY_URLS {
            self.notify_urls.retain(|_, (at, _)| at.elapsed() < NOTIFY_URL_TTL);
        }
        if self.notify_urls.len() < MAX_NOTIFY_URLS || self.notify_urls.contains_key(store) {
            self.notify_urls.insert(store.clone(), (read_at, url.clone()));
        }
        Ok(url)
    }

    async fn deliver(&mut self, s: &Settlement) -> Result<(), NotDelivered> {
        let url = self.notify_url(&s.bill.store).await.map_err(NotDelivered::Failed)?.ok_or(NotDelivered::NoUrl)?;
        self.send(s, &url).await.map_err(NotDelivered::Failed)
    }

    async fn send(&self, s: &Settlement, url: &str) -> Result<(), String> {
        let completion = s.completion_token().ok_or("no completion")?;
        let body = serde_json::json!({ "completion": completion });
        let (status, bytes) = self.client.post_json(url, &body, &[]).await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!(
                "store answered {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            ));
        }
        let answer: ReceiptBody = serde_json::from_slice(&bytes).map_err(|e| format!("store answer: {e}"))?;
        self.center.accept_receipt(s.id.as_str(), &answer.receipt).await.map_err(|e| e.to_string())
    }
}
