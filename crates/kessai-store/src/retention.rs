//! Unpaid orders are not kept for ever (review L1: the shop's checkout is
//! open to anyone, so its orders could fill the disk).
//!
//! An order whose bill expired more than [`UNPAID_ORDER_GRACE_S`] ago is
//! deleted, with its bill and download links, once the center says nothing
//! can pay the bill any more: no settlement names it, or its one settlement
//! was voided (the center takes no new settlement for an expired bill). An
//! order whose settlement is under way, or paid (its completion is on its
//! way), is kept; so is every order while the center cannot be asked.
//! Paid orders are the mall's records and are never purged here.

use kessai_api::{BillAnswer, BillState};
use kessai_http::ClientError;

use crate::AppState;
use crate::limits::{MAX_BILL_ANSWER_BYTES, PURGE_BATCH_MAX, PURGE_RUN_MAX, UNPAID_ORDER_GRACE_S};

/// What one purge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Orders deleted.
    pub deleted: u64,
    /// Orders kept: their bill may still be paid.
    pub kept: u64,
}

/// Why a purge stopped early (nothing it had not checked was deleted).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PurgeError {
    #[error("the store's database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("the center could not be asked: {0}")]
    Center(String),
}

impl From<ClientError> for PurgeError {
    fn from(e: ClientError) -> Self {
        PurgeError::Center(e.to_string())
    }
}

async fn bill_state(state: &AppState, bill_id: &str) -> Result<BillState, PurgeError> {
    let url = format!("{}/v1/stores/{}/bills/{bill_id}", state.config.center.url, state.config.mall_id);
    let (status, body) = state.center_api.get(&url).await?;
    if !status.is_success() || body.len() > MAX_BILL_ANSWER_BYTES {
        return Err(PurgeError::Center(format!("it answered {status} to {url}")));
    }
    let answer: BillAnswer =
        serde_json::from_slice(&body).map_err(|e| PurgeError::Center(format!("its answer is not a bill's: {e}")))?;
    Ok(answer.state)
}

/// One purge at `now_s` (unix seconds): every unpaid order past its
/// grace, oldest first, [`PURGE_BATCH_MAX`] at a time, at most
/// [`PURGE_RUN_MAX`] in one run (orders kept do not hold back the rest:
/// the run goes on past them).
pub async fn purge_unpayable(state: &AppState, now_s: i64) -> Result<Purged, PurgeError> {
    let before = now_s.saturating_sub(UNPAID_ORDER_GRACE_S);
    let mut purged = Purged::default();
    let mut after: Option<(i64, String)> = None;
    while purged.deleted + purged.kept < PURGE_RUN_MAX {
        let batch = state.db.unpaid_expired(before, after.as_ref(), PURGE_BATCH_MAX).await?;
        let Some(last) = batch.last() else { break };
        after = Some((last.expires_at, last.order_id.clone()));
        for order in &batch {
            match bill_state(state, &order.bill_id).await? {
                BillState::None | BillState::Voided => {
                    if state.db.purge_unpaid(&order.order_id).await? {
                        purged.deleted += 1;
                    }
                }
                BillState::Open | BillState::Paid => purged.kept += 1,
            }
        }
    }
    Ok(purged)
}
