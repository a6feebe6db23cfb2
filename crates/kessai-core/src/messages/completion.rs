//! SIG3, the settlement completion (ACN): center → store and wallet.
//! Issued only after the card's sealed confirmation; the store ships on it.

use serde::{Deserialize, Serialize};

use super::{MessageError, field_error, require_positive};
use crate::digest::Sha256Digest;
use crate::ids::{CardRef, SettlementId, StoreId, TransactionId};
use crate::jws::{self, Claims, JwsError, MessageKind, Verified};
use crate::keys::KeyDirectory;
use crate::money::Money;
use crate::time::{Clock, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CompletionDraft", into = "CompletionDraft")]
pub struct Completion {
    /// The settlement that completed.
    settlement_id: SettlementId,
    /// SHA-256 of the bill token: the store matches it to its open order.
    bill_hash: Sha256Digest,
    /// The card that paid, as this store knows it (a per-store pseudonym,
    /// never the card id: M4), and its transaction id, for audit against
    /// the card log.
    card_ref: CardRef,
    transaction_id: TransactionId,
    /// What was debited; the store checks it against the order.
    amount: Money,
    /// Merchant of record and the member store credited.
    store: StoreId,
    member: Option<StoreId>,
    /// The card's transaction counter after the debit, from its sealed answer.
    card_counter: u32,
    /// When the center posted the transfer.
    completed_at: Timestamp,
}

#[derive(Serialize, Deserialize)]
/// The fields of a Completion, checked by [`Completion::new`]; also its wire form.
#[derive(Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct CompletionDraft {
    pub settlement_id: SettlementId,
    pub bill_hash: Sha256Digest,
    pub card_ref: CardRef,
    pub transaction_id: TransactionId,
    pub amount: Money,
    pub store: StoreId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<StoreId>,
    pub card_counter: u32,
    pub completed_at: Timestamp,
}

impl Completion {
    pub fn new(d: CompletionDraft) -> Result<Completion, MessageError> {
        require_positive("amount", &d.amount)?;
        if d.card_counter == 0 {
            return Err(field_error("card_counter", "a card that debited has counted at least one transaction"));
        }
        Ok(Completion {
            settlement_id: d.settlement_id,
            bill_hash: d.bill_hash,
            card_ref: d.card_ref,
            transaction_id: d.transaction_id,
            amount: d.amount,
            store: d.store,
            member: d.member,
            card_counter: d.card_counter,
            completed_at: d.completed_at,
        })
    }

    pub fn settlement_id(&self) -> &SettlementId {
        &self.settlement_id
    }
    pub fn bill_hash(&self) -> Sha256Digest {
        self.bill_hash
    }
    pub fn card_ref(&self) -> &CardRef {
        &self.card_ref
    }
    pub fn transaction_id(&self) -> TransactionId {
        self.transaction_id
    }
    pub fn amount(&self) -> Money {
        self.amount
    }
    pub fn store(&self) -> &StoreId {
        &self.store
    }
    pub fn member(&self) -> Option<&StoreId> {
        self.member.as_ref()
    }
    pub fn card_counter(&self) -> u32 {
        self.card_counter
    }
    pub fn completed_at(&self) -> Timestamp {
        self.completed_at
    }
}

impl TryFrom<CompletionDraft> for Completion {
    type Error = MessageError;
    fn try_from(w: CompletionDraft) -> Result<Self, MessageError> {
        Completion::new(w)
    }
}

impl From<Completion> for CompletionDraft {
    fn from(c: Completion) -> Self {
        CompletionDraft {
            settlement_id: c.settlement_id,
            bill_hash: c.bill_hash,
            card_ref: c.card_ref,
            transaction_id: c.transaction_id,
            amount: c.amount,
            store: c.store,
            member: c.member,
            card_counter: c.card_counter,
            completed_at: c.completed_at,
        }
    }
}

impl MessageKind for Completion {
    const TYP: &'static str = "kessai-completion+jwt";
    const BODY: &'static str = "completion";

    fn check_claims(&self, claims: &Claims) -> Result<(), JwsError> {
        if self.completed_at > claims.issued_at() {
            return Err(field_error("completed_at", "is after the message was issued").into());
        }
        Ok(())
    }
}

/// Signs a completion (SIG3) with the center's key.
pub fn sign(
    claims: &Claims,
    completion: &Completion,
    key: &(impl crate::keys::JwsSigner + ?Sized),
) -> Result<String, JwsError> {
    jws::sign(claims, completion, key)
}

/// Verifies a completion; `keys` must hold only the center's keys.
pub fn verify(token: &str, keys: &KeyDirectory, clock: &dyn Clock) -> Result<Verified<Completion>, JwsError> {
    jws::verify(token, keys, clock)
}
