//! The refund request: store → center. The store's signed word that it
//! gives back all or part of a completed purchase. The center reverses the
//! store's payable and owes the card a credit, applied the next time the
//! card is presented.
//!
//! The store chooses the refund id; the same id sent again (a retry, or the
//! same token replayed) names the same refund, so a refund can never be
//! paid twice by sending it twice.

use serde::{Deserialize, Serialize};

use super::{DisplayText, MessageError, field_error, require_positive};
use crate::ids::{PartyId, RefundId, SettlementId, StoreId};
use crate::jws::{self, Claims, JwsError, MessageKind, Verified};
use crate::keys::{KeyDirectory, SigningKey};
use crate::money::Money;
use crate::time::Clock;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RefundRequestDraft", into = "RefundRequestDraft")]
pub struct RefundRequest {
    /// The store's id for this refund; unique per store.
    refund_id: RefundId,
    /// The completed settlement refunded.
    settlement_id: SettlementId,
    /// The signing store (equals `iss`): the store the bill named.
    store: StoreId,
    /// What goes back to the card: positive, at most what is left of the
    /// purchase (the center checks the sum).
    amount: Money,
    /// Shown to the cardholder and in the center's records.
    reason: DisplayText,
}

/// The fields of a RefundRequest, checked by [`RefundRequest::new`]; also its wire form.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRequestDraft {
    pub refund_id: RefundId,
    pub settlement_id: SettlementId,
    pub store: StoreId,
    pub amount: Money,
    pub reason: DisplayText,
}

impl RefundRequest {
    pub fn new(d: RefundRequestDraft) -> Result<RefundRequest, MessageError> {
        require_positive("amount", &d.amount)?;
        Ok(RefundRequest {
            refund_id: d.refund_id,
            settlement_id: d.settlement_id,
            store: d.store,
            amount: d.amount,
            reason: d.reason,
        })
    }

    pub fn refund_id(&self) -> &RefundId {
        &self.refund_id
    }
    pub fn settlement_id(&self) -> &SettlementId {
        &self.settlement_id
    }
    pub fn store(&self) -> &StoreId {
        &self.store
    }
    pub fn amount(&self) -> Money {
        self.amount
    }
    pub fn reason(&self) -> &DisplayText {
        &self.reason
    }
}

impl TryFrom<RefundRequestDraft> for RefundRequest {
    type Error = MessageError;
    fn try_from(w: RefundRequestDraft) -> Result<Self, MessageError> {
        RefundRequest::new(w)
    }
}

impl From<RefundRequest> for RefundRequestDraft {
    fn from(r: RefundRequest) -> Self {
        RefundRequestDraft {
            refund_id: r.refund_id,
            settlement_id: r.settlement_id,
            store: r.store,
            amount: r.amount,
            reason: r.reason,
        }
    }
}

impl MessageKind for RefundRequest {
    const TYP: &'static str = "kessai-refund+jwt";
    const AUDIENCE_REQUIRED: bool = true;
    const BODY: &'static str = "refund";

    fn check_claims(&self, claims: &Claims) -> Result<(), JwsError> {
        if !claims.issuer().is_store(&self.store) {
            return Err(field_error("store", "must be the issuer of the refund request").into());
        }
        Ok(())
    }
}

/// Signs a refund request with the store's key.
pub fn sign(claims: &Claims, refund: &RefundRequest, key: &SigningKey) -> Result<String, JwsError> {
    jws::sign(claims, refund, key)
}

/// Verifies a refund request against the registered store keys, by the
/// center `center` it must be addressed to.
pub fn verify(
    token: &str,
    keys: &KeyDirectory,
    clock: &dyn Clock,
    center: &PartyId,
) -> Result<Verified<RefundRequest>, JwsError> {
    jws::verify_for(token, keys, clock, center)
}
