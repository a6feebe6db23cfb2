//! SIG4, the receipt (settlement completion receipt): store → center and
//! wallet. The store's signed word that it was paid and what it delivers.

use serde::{Deserialize, Serialize};

use super::{MessageError, Reference, field_error};
use crate::digest::Sha256Digest;
use crate::ids::{OrderId, SettlementId, StoreId};
use crate::jws::{self, Claims, JwsError, MessageKind, Verified};
use crate::keys::{KeyDirectory, SigningKey};
use crate::time::Clock;

/// How the goods reach the cardholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryKind {
    /// Digital content; the reference names the download.
    Download,
    /// Physical goods; the reference is the shipment's.
    Shipment,
    /// Nothing to deliver (a service, a donation).
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    pub kind: DeliveryKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ReceiptDraft", into = "ReceiptDraft")]
pub struct Receipt {
    /// The settlement acknowledged.
    settlement_id: SettlementId,
    /// SHA-256 of the completion token the store accepted.
    completion_hash: Sha256Digest,
    /// The store's order that is now paid.
    order_id: OrderId,
    /// The signing store (equals `iss`) and the member store, if any.
    store: StoreId,
    member: Option<StoreId>,
    /// What the cardholder receives.
    delivery: Delivery,
}

#[derive(Serialize, Deserialize)]
/// The fields of a Receipt, checked by [`Receipt::new`]; also its wire form.
#[derive(Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ReceiptDraft {
    pub settlement_id: SettlementId,
    pub completion_hash: Sha256Digest,
    pub order_id: OrderId,
    pub store: StoreId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<StoreId>,
    pub delivery: Delivery,
}

impl Receipt {
    pub fn new(d: ReceiptDraft) -> Result<Receipt, MessageError> {
        if d.delivery.kind != DeliveryKind::None && d.delivery.reference.is_none() {
            return Err(field_error("delivery.reference", "is required for a download or shipment"));
        }
        Ok(Receipt {
            settlement_id: d.settlement_id,
            completion_hash: d.completion_hash,
            order_id: d.order_id,
            store: d.store,
            member: d.member,
            delivery: d.delivery,
        })
    }

    pub fn settlement_id(&self) -> &SettlementId {
        &self.settlement_id
    }
    pub fn completion_hash(&self) -> Sha256Digest {
        self.completion_hash
    }
    pub fn order_id(&self) -> &OrderId {
        &self.order_id
    }
    pub fn store(&self) -> &StoreId {
        &self.store
    }
    pub fn member(&self) -> Option<&StoreId> {
        self.member.as_ref()
    }
    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }
}

impl TryFrom<ReceiptDraft> for Receipt {
    type Error = MessageError;
    fn try_from(w: ReceiptDraft) -> Result<Self, MessageError> {
        Receipt::new(w)
    }
}

impl From<Receipt> for ReceiptDraft {
    fn from(r: Receipt) -> Self {
        ReceiptDraft {
            settlement_id: r.settlement_id,
            completion_hash: r.completion_hash,
            order_id: r.order_id,
            store: r.store,
            member: r.member,
            delivery: r.delivery,
        }
    }
}

impl MessageKind for Receipt {
    const TYP: &'static str = "kessai-receipt+jwt";
    const BODY: &'static str = "receipt";

    fn check_claims(&self, claims: &Claims) -> Result<(), JwsError> {
        if !claims.issuer().is_store(&self.store) {
            return Err(field_error("store", "must be the issuer of the receipt").into());
        }
        Ok(())
    }
}

/// Signs a receipt (SIG4) with the store's key.
pub fn sign(claims: &Claims, receipt: &Receipt, key: &SigningKey) -> Result<String, JwsError> {
    jws::sign(claims, receipt, key)
}

/// Verifies a receipt against the registered store keys.
pub fn verify(token: &str, keys: &KeyDirectory, clock: &dyn Clock) -> Result<Verified<Receipt>, JwsError> {
    jws::verify(token, keys, clock)
}
