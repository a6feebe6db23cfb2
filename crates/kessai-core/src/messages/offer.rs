//! SIG2, the settlement offer (settlement information): center → wallet.
//! The wallet shows it at consent and relays the sealed DEBIT only if the
//! offer verifies and matches the bill the store handed over.

use serde::{Deserialize, Serialize};

use super::{DisplayText, MessageError, field_error, require_positive, require_same_currency};
use crate::digest::Sha256Digest;
use crate::ids::{CardId, SettlementId, StoreId, TransactionId};
use crate::jws::{self, Claims, JwsError, MessageKind, Verified};
use crate::keys::KeyDirectory;
use crate::money::Money;
use crate::time::Clock;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "OfferDraft", into = "OfferDraft")]
pub struct Offer {
    /// The center's settlement this offer belongs to.
    settlement_id: SettlementId,
    /// SHA-256 of the exact bill token: ties the offer to what the store asked.
    bill_hash: Sha256Digest,
    /// The card the balance was read from and that will be debited.
    card_id: CardId,
    /// The card transaction id inside the sealed DEBIT (applied at most once).
    transaction_id: TransactionId,
    /// The balance read inside the secure session, shown at consent.
    balance: Money,
    /// What will be debited.
    amount: Money,
    /// Merchant of record and member store, as on the bill.
    store: StoreId,
    member: Option<StoreId>,
    /// The name shown at consent, as registered at the center.
    store_name: DisplayText,
    /// SHA-256 of the sealed DEBIT command the wallet will relay, so the
    /// wallet relays exactly the command the center signed for.
    debit_hash: Sha256Digest,
}

#[derive(Serialize, Deserialize)]
/// The fields of an Offer, checked by [`Offer::new`]; also its wire form.
#[derive(Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct OfferDraft {
    pub settlement_id: SettlementId,
    pub bill_hash: Sha256Digest,
    pub card_id: CardId,
    pub transaction_id: TransactionId,
    pub balance: Money,
    pub amount: Money,
    pub store: StoreId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<StoreId>,
    pub store_name: DisplayText,
    pub debit_hash: Sha256Digest,
}

impl Offer {
    pub fn new(d: OfferDraft) -> Result<Offer, MessageError> {
        require_positive("amount", &d.amount)?;
        require_same_currency("amount", &d.balance, &d.amount)?;
        if d.amount.amount_minor() > d.balance.amount_minor() {
            return Err(field_error("amount", "exceeds the card balance"));
        }
        Ok(Offer {
            settlement_id: d.settlement_id,
            bill_hash: d.bill_hash,
            card_id: d.card_id,
            transaction_id: d.transaction_id,
            balance: d.balance,
            amount: d.amount,
            store: d.store,
            member: d.member,
            store_name: d.store_name,
            debit_hash: d.debit_hash,
        })
    }

    pub fn settlement_id(&self) -> &SettlementId {
        &self.settlement_id
    }
    pub fn bill_hash(&self) -> Sha256Digest {
        self.bill_hash
    }
    pub fn card_id(&self) -> CardId {
        self.card_id
    }
    pub fn transaction_id(&self) -> TransactionId {
        self.transaction_id
    }
    pub fn balance(&self) -> Money {
        self.balance
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
    pub fn store_name(&self) -> &DisplayText {
        &self.store_name
    }
    pub fn debit_hash(&self) -> Sha256Digest {
        self.debit_hash
    }
}

impl TryFrom<OfferDraft> for Offer {
    type Error = MessageError;
    fn try_from(w: OfferDraft) -> Result<Self, MessageError> {
        Offer::new(w)
    }
}

impl From<Offer> for OfferDraft {
    fn from(o: Offer) -> Self {
        OfferDraft {
            settlement_id: o.settlement_id,
            bill_hash: o.bill_hash,
            card_id: o.card_id,
            transaction_id: o.transaction_id,
            balance: o.balance,
            amount: o.amount,
            store: o.store,
            member: o.member,
            store_name: o.store_name,
            debit_hash: o.debit_hash,
        }
    }
}

impl MessageKind for Offer {
    const TYP: &'static str = "kessai-offer+jwt";
    const BODY: &'static str = "offer";

    fn check_claims(&self, _claims: &Claims) -> Result<(), JwsError> {
        Ok(())
    }
}

/// Signs an offer (SIG2) with the center's key.
pub fn sign(claims: &Claims, offer: &Offer, key: &(impl crate::keys::JwsSigner + ?Sized)) -> Result<String, JwsError> {
    jws::sign(claims, offer, key)
}

/// Verifies an offer; `keys` must hold only the center's keys.
pub fn verify(token: &str, keys: &KeyDirectory, clock: &dyn Clock) -> Result<Verified<Offer>, JwsError> {
    jws::verify(token, keys, clock)
}
