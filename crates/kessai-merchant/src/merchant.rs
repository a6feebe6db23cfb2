//! Signing bills and receipts, checking completions.

use kessai_core::digest::Sha256Digest;
use kessai_core::ids::{BillId, IdError, MessageId, OrderId, PartyId, RefundId, SettlementId, StoreId};
use kessai_core::jwk::Jwks;
use kessai_core::jws::{Claims, JwsError, Verified};
use kessai_core::keys::{KeyDirectory, SigningKey, Validity};
use kessai_core::messages::bill::{self, Bill, BillDraft, LineItem};
use kessai_core::messages::completion::{self, Completion};
use kessai_core::messages::receipt::{self, Delivery, Receipt, ReceiptDraft};
use kessai_core::messages::refund::{self, RefundRequest, RefundRequestDraft};
use kessai_core::messages::{DisplayText, MessageError, Nonce};
use kessai_core::random::Random;
use kessai_core::time::{Clock, Timestamp};
use kessai_core::{Currency, Money};
use serde::{Deserialize, Serialize};

/// Why a bill or receipt could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MerchantError {
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error(transparent)]
    Jws(#[from] JwsError),
    #[error(transparent)]
    Id(#[from] IdError),
}

/// How long a signed refund request is valid: long enough for retries,
/// short enough that a leaked one is soon useless (the refund id makes a
/// replay harmless anyway).
pub const REFUND_LIFETIME_S: u64 = 600;

/// Why a completion was refused. Nothing about the order may change on
/// any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompletionError {
    #[error("completion token refused: {0}")]
    Token(#[from] JwsError),
    #[error("completion issued by {found:?}, not by the center {expected:?}")]
    WrongIssuer { expected: String, found: String },
    #[error("completion is for another bill than the order's")]
    BillMismatch,
    #[error("completion is in {found}, the order in {expected}")]
    CurrencyMismatch { expected: Currency, found: Currency },
    #[error("completion pays {found}, the order is for {expected}")]
    AmountMismatch { expected: Money, found: Money },
    #[error("completion credits store {found:?}, not {expected:?}")]
    WrongStore { expected: String, found: String },
    #[error("completion credits member store {found:?}, the order belongs to {expected:?}")]
    WrongMember { expected: Option<String>, found: Option<String> },
}

/// What the merchant chooses for a bill.
#[derive(Debug, Clone)]
pub struct BillRequest {
    /// The order this bill settles; the completion is matched back to it.
    pub order_id: OrderId,
    /// In a mall: the member store credited (must differ from the mall).
    pub member: Option<StoreId>,
    /// The name the cardholder sees at consent.
    pub store_name: DisplayText,
    /// What is bought; the total is their sum.
    pub lines: Vec<LineItem>,
    /// How long the bill can be paid, in seconds (at most a day).
    pub lifetime_s: u64,
    /// Where the store serves its pages: the wallet returns the cardholder
    /// only there (and fetches the store's keys there).
    pub origin: kessai_core::messages::WebOrigin,
}

/// A signed bill: the compact token to hand to the wallet, and what it says.
#[derive(Debug, Clone)]
pub struct SignedBill {
    token: String,
    bill: Bill,
    claims: Claims,
}

impl SignedBill {
    /// The compact JWS (SIG1).
    pub fn token(&self) -> &str {
        &self.token
    }
    pub fn bill(&self) -> &Bill {
        &self.bill
    }
    /// SHA-256 of the token: the completion carries it back.
    pub fn hash(&self) -> Sha256Digest {
        Sha256Digest::of_token(&self.token)
    }
    pub fn expires_at(&self) -> Timestamp {
        self.claims.expires_at()
    }
    /// What the merchant must keep to check the completion later.
    pub fn open_order(&self) -> OpenOrder {
        OpenOrder {
            order_id: self.bill.order_id().clone(),
            bill_hash: self.hash(),
            total: self.bill.total(),
            store: self.bill.store().clone(),
            member: self.bill.member().cloned(),
        }
    }
}

/// An order awaiting payment, as the merchant stored it when it signed
/// the bill: a completion must match every field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenOrder {
    order_id: OrderId,
    bill_hash: Sha256Digest,
    total: Money,
    store: StoreId,
    member: Option<StoreId>,
}

impl OpenOrder {
    /// Rebuilds an open order from storage.
    pub fn new(
        order_id: OrderId,
        bill_hash: Sha256Digest,
        total: Money,
        store: StoreId,
        member: Option<StoreId>,
    ) -> OpenOrder {
        OpenOrder { order_id, bill_hash, total, store, member }
    }
    pub fn order_id(&self) -> &OrderId {
        &self.order_id
    }
    pub fn bill_hash(&self) -> Sha256Digest {
        self.bill_hash
    }
    pub fn total(&self) -> Money {
        self.total
    }
    pub fn store(&self) -> &StoreId {
        &self.store
    }
    pub fn member(&self) -> Option<&StoreId> {
        self.member.as_ref()
    }
}

/// Proof that a completion verified AND matched an open order; only
/// [`Merchant::match_order`] makes one, and receipts are signed from it.
#[derive(Debug, Clone)]
pub struct Paid {
    completion: Verified<Completion>,
    order: OpenOrder,
}

impl Paid {
    pub fn completion(&self) -> &Verified<Completion> {
        &self.completion
    }
    pub fn order(&self) -> &OpenOrder {
        &self.order
    }
    /// SHA-256 of the exact completion token (the receipt binds to it).
    pub fn completion_hash(&self) -> Sha256Digest {
        self.completion.token_hash()
    }
}

/// A store (or mall) that signs bills and receipts with its key and
/// accepts completions from one center.
#[derive(Debug)]
pub struct Merchant {
    store: StoreId,
    key: SigningKey,
    center: PartyId,
}

impl Merchant {
    pub fn new(store: StoreId, key: SigningKey, center: PartyId) -> Merchant {
        Merchant { store, key, center }
    }

    pub fn store(&self) -> &StoreId {
        &self.store
    }

    /// The public key to publish at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> Jwks {
        Jwks { keys: vec![self.key.public().to_jwk(Validity::always())] }
    }

    /// Signs a bill (SIG1) with a fresh bill id and nonce.
    pub fn sign_bill<R: Random + ?Sized>(
        &self,
        request: BillRequest,
        rng: &mut R,
        clock: &dyn Clock,
    ) -> Result<SignedBill, MerchantError> {
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let bill = Bill::new(BillDraft {
            bill_id: BillId::parse(&format!("bill_{}", hex::encode(id)))?,
            order_id: request.order_id,
            store: self.store.clone(),
            member: request.member,
            store_name: request.store_name,
            lines: request.lines,
            nonce: Nonce::generate(rng),
            origin: Some(request.origin),
        })?;
        let claims = self.claims(rng, clock, request.lifetime_s)?.with_audience(self.center.clone());
        let token = bill::sign(&claims, &bill, &self.key)?;
        Ok(SignedBill { token, bill, claims })
    }

    /// Verifies a completion token against the center's keys (from its
    /// JWKS) and checks that the center issued it. Call
    /// [`Merchant::match_order`] next with the order its bill hash names.
    pub fn verify_completion(
        &self,
        token: &str,
        center_keys: &KeyDirectory,
        clock: &dyn Clock,
    ) -> Result<Verified<Completion>, CompletionError> {
        let verified = completion::verify(token, center_keys, clock)?;
        if verified.claims().issuer() != &self.center {
            return Err(CompletionError::WrongIssuer {
                expected: self.center.to_string(),
                found: verified.claims().issuer().to_string(),
            });
        }
        Ok(verified)
    }

    /// Checks that a verified completion pays exactly `order`: its bill,
    /// currency, amount, store and member store.
    pub fn match_order(&self, completion: Verified<Completion>, order: &OpenOrder) -> Result<Paid, CompletionError> {
        let c = completion.message();
        if !c.bill_hash().ct_eq(&order.bill_hash) {
            return Err(CompletionError::BillMismatch);
        }
        if c.amount().currency() != order.total.currency() {
            return Err(CompletionError::CurrencyMismatch {
                expected: order.total.currency(),
                found: c.amount().currency(),
            });
        }
        if c.amount() != order.total {
            return Err(CompletionError::AmountMismatch { expected: order.total, found: c.amount() });
        }
        if c.store() != &self.store || order.store != self.store {
            return Err(CompletionError::WrongStore { expected: self.store.to_string(), found: c.store().to_string() });
        }
        if c.member() != order.member.as_ref() {
            return Err(CompletionError::WrongMember {
                expected: order.member.as_ref().map(ToString::to_string),
                found: c.member().map(ToString::to_string),
            });
        }
        Ok(Paid { completion, order: order.clone() })
    }

    /// [`Merchant::verify_completion`] then [`Merchant::match_order`].
    pub fn check_completion(
        &self,
        token: &str,
        center_keys: &KeyDirectory,
        order: &OpenOrder,
        clock: &dyn Clock,
    ) -> Result<Paid, CompletionError> {
        let verified = self.verify_completion(token, center_keys, clock)?;
        self.match_order(verified, order)
    }

    /// Signs the receipt (SIG4) for a paid order.
    pub fn sign_receipt<R: Random + ?Sized>(
        &self,
        paid: &Paid,
        delivery: Delivery,
        lifetime_s: u64,
        rng: &mut R,
        clock: &dyn Clock,
    ) -> Result<String, MerchantError> {
        let completion = paid.completion.message();
        let receipt = Receipt::new(ReceiptDraft {
            settlement_id: completion.settlement_id().clone(),
            completion_hash: paid.completion_hash(),
            order_id: paid.order.order_id.clone(),
            store: self.store.clone(),
            member: paid.order.member.clone(),
            delivery,
        })?;
        let claims = self.claims(rng, clock, lifetime_s)?;
        Ok(receipt::sign(&claims, &receipt, &self.key)?)
    }

    /// Signs a refund request for all or part of a completed settlement.
    /// `refund_id` is the store's own id for it: sending the same refund
    /// again (a retry) never refunds twice. The center answers how much of
    /// the purchase is refunded so far, and refuses past the purchase.
    pub fn sign_refund<R: Random + ?Sized>(
        &self,
        refund_id: RefundId,
        settlement_id: SettlementId,
        amount: Money,
        reason: DisplayText,
        rng: &mut R,
        clock: &dyn Clock,
    ) -> Result<String, MerchantError> {
        let request = RefundRequest::new(RefundRequestDraft {
            refund_id,
            settlement_id,
            store: self.store.clone(),
            amount,
            reason,
        })?;
        let claims = self.claims(rng, clock, REFUND_LIFETIME_S)?.with_audience(self.center.clone());
        Ok(refund::sign(&claims, &request, &self.key)?)
    }

    /// Signs a payment claim (#19) for `payee` (this store, or one of its
    /// members): the settlements completed up to `cutoff` and what each
    /// comes to.
    pub fn sign_claim<R: Random + ?Sized>(
        &self,
        claim_id: kessai_core::ids::ClaimId,
        payee: StoreId,
        cutoff: Timestamp,
        lines: Vec<kessai_core::messages::claim::ClaimLine>,
        rng: &mut R,
        clock: &dyn Clock,
    ) -> Result<String, MerchantError> {
        use kessai_core::messages::claim::{self, PaymentClaim, PaymentClaimDraft};
        let currency = lines.first().map_or(Currency::JPY, |l| l.amount.currency());
        let claim = PaymentClaim::new(PaymentClaimDraft {
            claim_id,
            store: self.store.clone(),
            payee,
            cutoff,
            currency,
            lines,
        })?;
        let claims = self.claims(rng, clock, REFUND_LIFETIME_S)?.with_audience(self.center.clone());
        Ok(claim::sign(&claims, &claim, &self.key)?)
    }

    fn claims<R: Random + ?Sized>(&self, rng: &mut R, clock: &dyn Clock, lifetime_s: u64) -> Result<Claims, JwsError> {
        Claims::for_lifetime(PartyId::from(self.store.clone()), MessageId::generate(rng), clock.now(), lifetime_s)
    }
}
