//! The member's payment instruction (支払指示, seed 003/004 FIG. 7 ①):
//! member → center. Signed in the wallet with the member's key, which only
//! passwords A and B open, so a payment by a registered member's card is
//! the member's provable consent: the center checks it against the key in
//! the member ledger before it seals the DEBIT.
//!
//! It binds the bill (its hash, so one instruction pays one bill), what
//! pays (the member's IC card, or one of its virtual prepaid cards, #18
//! FIG. 6–7), the amount and the store; it is signed when the member
//! agrees, before the settlement exists.

use serde::{Deserialize, Serialize};

use super::{MessageError, field_error, require_positive};
use crate::digest::Sha256Digest;
use crate::ids::{CardId, PartyId, PrepaidId, StoreId};
use crate::jws::{self, Claims, JwsError, MessageKind, Verified};
use crate::keys::{KeyDirectory, SigningKey};
use crate::money::Money;
use crate::time::Clock;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "InstructionDraft", into = "InstructionDraft")]
pub struct PaymentInstruction {
    /// The member paying (equals `iss`).
    member: PartyId,
    /// The member's IC card the payment is from, or
    card_id: Option<CardId>,
    /// the member's virtual prepaid card it is from: exactly one of the two.
    prepaid_id: Option<PrepaidId>,
    /// SHA-256 of the exact bill token agreed to.
    bill_hash: Sha256Digest,
    /// The bill's total.
    amount: Money,
    /// The bill's store (merchant of record).
    store: StoreId,
}

/// The fields of a PaymentInstruction, checked by [`PaymentInstruction::new`]; also its wire form.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstructionDraft {
    pub member: PartyId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_id: Option<CardId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepaid_id: Option<PrepaidId>,
    pub bill_hash: Sha256Digest,
    pub amount: Money,
    pub store: StoreId,
}

impl PaymentInstruction {
    pub fn new(d: InstructionDraft) -> Result<PaymentInstruction, MessageError> {
        require_positive("amount", &d.amount)?;
        if d.card_id.is_some() == d.prepaid_id.is_some() {
            return Err(field_error("card_id", "exactly one of card_id and prepaid_id names what pays"));
        }
        Ok(PaymentInstruction {
            member: d.member,
            card_id: d.card_id,
            prepaid_id: d.prepaid_id,
            bill_hash: d.bill_hash,
            amount: d.amount,
            store: d.store,
        })
    }

    pub fn member(&self) -> &PartyId {
        &self.member
    }
    /// The IC card that pays, if an IC card does.
    pub fn card_id(&self) -> Option<CardId> {
        self.card_id
    }
    /// The virtual prepaid card that pays, if one does.
    pub fn prepaid_id(&self) -> Option<&PrepaidId> {
        self.prepaid_id.as_ref()
    }
    pub fn bill_hash(&self) -> Sha256Digest {
        self.bill_hash
    }
    pub fn amount(&self) -> Money {
        self.amount
    }
    pub fn store(&self) -> &StoreId {
        &self.store
    }
}

impl TryFrom<InstructionDraft> for PaymentInstruction {
    type Error = MessageError;
    fn try_from(d: InstructionDraft) -> Result<Self, MessageError> {
        PaymentInstruction::new(d)
    }
}

impl From<PaymentInstruction> for InstructionDraft {
    fn from(p: PaymentInstruction) -> Self {
        InstructionDraft {
            member: p.member,
            card_id: p.card_id,
            prepaid_id: p.prepaid_id,
            bill_hash: p.bill_hash,
            amount: p.amount,
            store: p.store,
        }
    }
}

impl MessageKind for PaymentInstruction {
    const TYP: &'static str = "kessai-payment-instruction+jwt";
    const AUDIENCE_REQUIRED: bool = true;
    const BODY: &'static str = "instruction";

    fn check_claims(&self, claims: &Claims) -> Result<(), JwsError> {
        if claims.issuer() != &self.member {
            return Err(field_error("member", "must be the issuer of the instruction").into());
        }
        Ok(())
    }
}

/// Signs an instruction with the member's key.
pub fn sign(claims: &Claims, instruction: &PaymentInstruction, key: &SigningKey) -> Result<String, JwsError> {
    jws::sign(claims, instruction, key)
}

/// Verifies an instruction against the member ledger's keys, by the center
/// `center` it must be addressed to.
pub fn verify(
    token: &str,
    keys: &KeyDirectory,
    clock: &dyn Clock,
    center: &PartyId,
) -> Result<Verified<PaymentInstruction>, JwsError> {
    jws::verify_for(token, keys, clock, center)
}
