//! Delivers completions (SIG3) to stores over mutual TLS and keeps their
//! receipts (SIG4). State lives in the database — a completed settlement
//! without a receipt is undelivered, due for an attempt at its
//! `delivery_due` — so any instance delivers after any crash, and several
//! instances deliver each completion once: the instance whose step completed
//! it delivers it at once (the step gave it a lease,
//! [`DELIVERY_LEASE_S`]); a sweep takes a due one only by claiming it (a
//! compare-and-set that moves its due time past the lease); a failed attempt
//! makes it due again after a backoff every instance sees. The store's
//! answer is idempotent, so a completion delivered twice (a lease that ran
//! out mid-attempt) is still accepted once. Payments from virtual prepaid
//! cards (#18) carry a completion too, and are delivered the same way from
//! their own table.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kessai_core::ids::{SettlementId, StoreId};
use kessai_core::time::Timestamp;
use kessai_http::HttpsClient;
use serde::Deserialize;

use crate::db::MAX_LIST;
use crate::limits::{DELIVERY_BACKOFF_MAX_S, DELIVERY_BACKOFF_MIN_S, DELIVERY_LEASE_S};
use crate::prepaid::PrepaidPayment;
use crate::purchase::Settlement;
use crate::service::Center;

/// A completion to deliver: a card settlement's, or a prepaid payment's.
#[derive(Debug, Clone)]
pub enum Deliverable {
    Settlement(Box<Settlement>),
    Prepaid(Box<PrepaidPayment>),
}

impl Deliverable {
    fn id(&self) -> &SettlementId {
        match self {
            Deliverable::Settlement(s) => &s.id,
            Deliverable::Prepaid(p) => &p.id,
        }
    }

    /// The merchant of record, whose notify URL gets the completion.
    fn store(&self) -> &StoreId {
        match self {
            Deliverable::Settlement(s) => &s.bill.store,
            Deliverable::Prepaid(p) => &p.bill.store,
        }
    }

    fn completion(&self) -> Option<&str> {
        match self {
            Deliverable::Settlement(s) => s.completion_token(),
            Deliverable::Prepaid(p) => Some(&p.completion_token),
        }
    }

    fn receipted(&self) -> bool {
        match self {
            Deliverable::Settlement(s) => s.receipt_token().is_some(),
            Deliverable::Prepaid(p) => p.receipt_token.is_some(),
        }
    }
}

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
    /// Per store: its notify URL as read, and when.
    notify_urls: HashMap<StoreId, (Instant, Option<String>)>,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer").finish_non_exhaustive()
    }
}

impl Deliverer {
    pub fn new(center: Arc<Center>, client: HttpsClient) -> Deliverer {
        Deliverer { center, client, notify_urls: HashMap::new() }
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
                        // Completed by this instance, which holds their
                        // lease: first attempts, unclaimed.
                        for s in settlements {
                            self.attempt(&s, 0).await;
                        }
                    }
                    _ = stop.changed() => return,
                }
            }
        }
    }

    /// One pass over the completions due for delivery (at most a page),
    /// each claimed before it is attempted; returns how many were
    /// delivered. A completion another instance claimed, or delivered, is
    /// left to it.
    pub async fn sweep(&mut self) -> usize {
        let now = self.center.clock.now();
        let due = match self.center.db.due_deliveries(now, MAX_LIST).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "listing the completions due for delivery");
                return 0;
            }
        };
        let until = Timestamp::from_unix_s(now.unix_s().saturating_add(DELIVERY_LEASE_S));
        let mut delivered = 0;
        for d in due {
            match self.center.db.claim_delivery(&d, until).await {
                Ok(true) => {
                    let s = Deliverable::Settlement(Box::new(d.settlement));
                    delivered += usize::from(self.attempt(&s, d.attempts).await);
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(settlement = %d.settlement.id, error = %e, "claiming a delivery"),
            }
        }
        let due = match self.center.db.due_prepaid_deliveries(now, MAX_LIST).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "listing the prepaid payments due for delivery");
                return delivered;
            }
        };
        for d in due {
            match self.center.db.claim_prepaid_delivery(&d, until).await {
                Ok(true) => {
                    let p = Deliverable::Prepaid(Box::new(d.payment));
                    delivered += usize::from(self.attempt(&p, d.attempts).await);
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(settlement = %d.payment.id, error = %e, "claiming a delivery"),
            }
        }
        delivered
    }

    /// Delivers `s`, whose delivery this instance holds and which failed
    /// `attempts` times before; true if delivered now. A failure makes it
    /// due again after the backoff.
    async fn attempt(&mut self, s: &Deliverable, attempts: u64) -> bool {
        if s.receipted() {
            return false;
        }
        let why = match self.deliver(s).await {
            Ok(()) => return true,
            Err(why) => why,
        };
        let attempts = attempts.saturating_add(1);
        match why {
            NotDelivered::NoUrl => {
                // Nothing was tried: it is looked at again when the lease
                // this instance holds ends, with no write now.
                tracing::debug!(settlement = %s.id(), "completion waits for its store's notify URL");
                return false;
            }
            NotDelivered::Failed(why) => {
                tracing::warn!(settlement = %s.id(), attempts, error = %why, "completion not delivered; will retry");
            }
        }
        let next = Timestamp::from_unix_s(self.center.clock.now().unix_s().saturating_add(backoff_s(attempts)));
        let failed = match s {
            Deliverable::Settlement(_) => self.center.db.delivery_failed(s.id(), next).await,
            Deliverable::Prepaid(_) => self.center.db.prepaid_delivery_failed(s.id(), next).await,
        };
        if let Err(e) = failed {
            // Due again when the lease ends.
            tracing::warn!(settlement = %s.id(), error = %e, "recording a failed delivery");
        }
        false
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

    async fn deliver(&mut self, s: &Deliverable) -> Result<(), NotDelivered> {
        let url = self.notify_url(s.store()).await.map_err(NotDelivered::Failed)?.ok_or(NotDelivered::NoUrl)?;
        self.send(s, &url).await.map_err(NotDelivered::Failed)
    }

    async fn send(&self, s: &Deliverable, url: &str) -> Result<(), String> {
        let completion = s.completion().ok_or("no completion")?;
        let body = serde_json::json!({ "completion": completion });
        let (status, bytes) = self.client.post_json(url, &body, &[]).await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!(
                "store answered {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            ));
        }
        let answer: ReceiptBody = serde_json::from_slice(&bytes).map_err(|e| format!("store answer: {e}"))?;
        self.center.accept_receipt(s.id().as_str(), &answer.receipt).await.map_err(|e| e.to_string())
    }
}

/// The wait after the `attempts`-th failure in a row.
fn backoff_s(attempts: u64) -> u64 {
    let doublings = u32::try_from(attempts.saturating_sub(1)).unwrap_or(u32::MAX).min(16);
    DELIVERY_BACKOFF_MIN_S.saturating_mul(1 << doublings).min(DELIVERY_BACKOFF_MAX_S)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_backoff_doubles_to_its_ceiling() {
        let waits: Vec<u64> = (1..=9).map(super::backoff_s).collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(super::backoff_s(u64::MAX), 60);
    }
}
