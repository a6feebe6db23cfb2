//! SIG5, the value update: center → wallet. Announces a sealed CREDIT (a
//! charge) or a center-initiated DEBIT (refund to the issuer, correction)
//! before the wallet relays it to the card.

use serde::{Deserialize, Serialize};

use super::{MessageError, Reference, field_error, require_positive, require_same_currency};
use crate::digest::Sha256Digest;
use crate::ids::{CardId, TransactionId, UpdateId};
use crate::jws::{self, Claims, JwsError, MessageKind, Verified};
use crate::keys::KeyDirectory;
use crate::money::Money;
use crate::time::Clock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Credit,
    Debit,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ValueUpdateDraft", into = "ValueUpdateDraft")]
pub struct ValueUpdate {
    /// The center's id for this update.
    update_id: UpdateId,
    /// The card changed and the card transaction id in the sealed command.
    card_id: CardId,
    transaction_id: TransactionId,
    /// Value added (credit) or removed (debit).
    direction: Direction,
    amount: Money,
    /// The balance read securely before, and what it will be after.
    balance_before: Money,
    balance_after: Money,
    /// The credit authorisation or other funding this rests on.
    funding_ref: Reference,
    /// SHA-256 of the sealed command the wallet will relay.
    command_hash: Sha256Digest,
}

#[derive(Serialize, Deserialize)]
/// The fields of a ValueUpdate, checked by [`ValueUpdate::new`]; also its wire form.
#[derive(Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ValueUpdateDraft {
    pub update_id: UpdateId,
    pub card_id: CardId,
    pub transaction_id: TransactionId,
    pub direction: Direction,
    pub amount: Money,
    pub balance_before: Money,
    pub balance_after: Money,
    pub funding_ref: Reference,
    pub command_hash: Sha256Digest,
}

impl ValueUpdate {
    /// Checks that `balance_after` is `balance_before` plus or minus the amount.
    pub fn new(d: ValueUpdateDraft) -> Result<ValueUpdate, MessageError> {
        require_positive("amount", &d.amount)?;
        require_same_currency("amount", &d.balance_before, &d.amount)?;
        require_same_currency("balance_after", &d.balance_before, &d.balance_after)?;
        let expected = match d.direction {
            Direction::Credit => d.balance_before.checked_add(&d.amount),
            Direction::Debit => d.balance_before.checked_sub(&d.amount),
        }
        .map_err(|e| field_error("balance_after", e))?;
        if expected != d.balance_after {
            return Err(field_error("balance_after", "is not balance_before with the amount applied"));
        }
        Ok(ValueUpdate {
            update_id: d.update_id,
            card_id: d.card_id,
            transaction_id: d.transaction_id,
            direction: d.direction,
            amount: d.amount,
            balance_before: d.balance_before,
            balance_after: d.balance_after,
            funding_ref: d.funding_ref,
            command_hash: d.command_hash,
        })
    }

    pub fn update_id(&self) -> &UpdateId {
        &self.update_id
    }
    pub fn card_id(&self) -> CardId {
        self.card_id
    }
    pub fn transaction_id(&self) -> TransactionId {
        self.transaction_id
    }
    pub fn direction(&self) -> Direction {
        self.direction
    }
    pub fn amount(&self) -> Money {
        self.amount
    }
    pub fn balance_before(&self) -> Money {
        self.balance_before
    }
    pub fn balance_after(&self) -> Money {
        self.balance_after
    }
    pub fn funding_ref(&self) -> &Reference {
        &self.funding_ref
    }
    pub fn command_hash(&self) -> Sha256Digest {
        self.command_hash
    }
}

impl TryFrom<ValueUpdateDraft> for ValueUpdate {
    type Error = MessageError;
    fn try_from(w: ValueUpdateDraft) -> Result<Self, MessageError> {
        ValueUpdate::new(w)
    }
}

impl From<ValueUpdate> for ValueUpdateDraft {
    fn from(v: ValueUpdate) -> Self {
        ValueUpdateDraft {
            update_id: v.update_id,
            card_id: v.card_id,
            transaction_id: v.transaction_id,
            direction: v.direction,
            amount: v.amount,
            balance_before: v.balance_before,
            balance_after: v.balance_after,
            funding_ref: v.funding_ref,
            command_hash: v.command_hash,
        }
    }
}

impl MessageKind for ValueUpdate {
    const TYP: &'static str = "kessai-value-update+jwt";
    const BODY: &'static str = "value_update";

    fn check_claims(&self, _claims: &Claims) -> Result<(), JwsError> {
        Ok(())
    }
}

/// Signs a value update (SIG5) with the center's key.
pub fn sign(
    claims: &Claims,
    update: &ValueUpdate,
    key: &(impl crate::keys::JwsSigner + ?Sized),
) -> Result<String, JwsError> {
    jws::sign(claims, update, key)
}

/// Verifies a value update; `keys` must hold only the center's keys.
pub fn verify(token: &str, keys: &KeyDirectory, clock: &dyn Clock) -> Result<Verified<ValueUpdate>, JwsError> {
    jws::verify(token, keys, clock)
}
