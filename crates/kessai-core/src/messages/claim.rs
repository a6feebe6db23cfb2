//! The payment claim (代金請求, seed 003/004 ¶0019, FIG. 9): store →
//! center, and the center's signed statement of what it accepts.
//!
//! A store (or its mall, for a member store) names the completed
//! settlements it claims up to a cut-off and what it believes each comes
//! to after its refunds. The center checks every line against its own
//! books: a settlement it does not hold open for that store, or one
//! claimed for more than the books show, refuses the whole claim, naming
//! those settlements. An accepted claim is answered with a
//! [`ClaimStatement`] signed by the center: each settlement at the books'
//! figure, its fee, and the total the next clearing run pays.
//!
//! The store chooses the claim id; the same id sent again names the same
//! claim, so nothing is claimed twice by sending it twice.

use serde::{Deserialize, Serialize};

use super::{MessageError, field_error};
use crate::ids::{ClaimId, PartyId, SettlementId, StoreId};
use crate::jws::{self, Claims, JwsError, MessageKind, Verified};
use crate::keys::{KeyDirectory, SigningKey};
use crate::money::{Currency, Money};
use crate::time::{Clock, Timestamp};

/// Most settlements one claim names.
pub const MAX_CLAIM_LINES: usize = 1_000;

/// One settlement claimed and what the store believes it comes to (its
/// amount less its refunds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimLine {
    pub settlement_id: SettlementId,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PaymentClaimDraft", into = "PaymentClaimDraft")]
pub struct PaymentClaim {
    claim_id: ClaimId,
    /// The signing store (equals `iss`): the payee or its mall.
    store: StoreId,
    /// Whose payable is claimed.
    payee: StoreId,
    /// Settlements completed up to this time.
    cutoff: Timestamp,
    currency: Currency,
    lines: Vec<ClaimLine>,
}

/// The fields of a PaymentClaim, checked by [`PaymentClaim::new`]; also its wire form.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentClaimDraft {
    pub claim_id: ClaimId,
    pub store: StoreId,
    pub payee: StoreId,
    pub cutoff: Timestamp,
    pub currency: Currency,
    pub lines: Vec<ClaimLine>,
}

impl PaymentClaim {
    /// A claim of 1 to [`MAX_CLAIM_LINES`] distinct settlements, every
    /// amount in the claim's currency.
    pub fn new(d: PaymentClaimDraft) -> Result<PaymentClaim, MessageError> {
        if d.lines.is_empty() || d.lines.len() > MAX_CLAIM_LINES {
            return Err(field_error("lines", format!("1 to {MAX_CLAIM_LINES} settlements")));
        }
        let mut seen = std::collections::HashSet::with_capacity(d.lines.len());
        for line in &d.lines {
            if line.amount.currency() != d.currency {
                return Err(field_error("lines", "every amount must be in the claim's currency"));
            }
            if !seen.insert(line.settlement_id.as_str()) {
                return Err(field_error("lines", format!("{} is claimed twice", line.settlement_id)));
            }
        }
        Ok(PaymentClaim {
            claim_id: d.claim_id,
            store: d.store,
            payee: d.payee,
            cutoff: d.cutoff,
            currency: d.currency,
            lines: d.lines,
        })
    }

    pub fn claim_id(&self) -> &ClaimId {
        &self.claim_id
    }
    pub fn store(&self) -> &StoreId {
        &self.store
    }
    pub fn payee(&self) -> &StoreId {
        &self.payee
    }
    pub fn cutoff(&self) -> Timestamp {
        self.cutoff
    }
    pub fn currency(&self) -> Currency {
        self.currency
    }
    pub fn lines(&self) -> &[ClaimLine] {
        &self.lines
    }
}

impl TryFrom<PaymentClaimDraft> for PaymentClaim {
    type Error = MessageError;
    fn try_from(w: PaymentClaimDraft) -> Result<Self, MessageError> {
        PaymentClaim::new(w)
    }
}

impl From<PaymentClaim> for PaymentClaimDraft {
    fn from(c: PaymentClaim) -> Self {
        PaymentClaimDraft {
            claim_id: c.claim_id,
            store: c.store,
            payee: c.payee,
            cutoff: c.cutoff,
            currency: c.currency,
            lines: c.lines,
        }
    }
}

impl MessageKind for PaymentClaim {
    const TYP: &'static str = "kessai-payment-claim+jwt";
    const AUDIENCE_REQUIRED: bool = true;
    const BODY: &'static str = "claim";

    fn check_claims(&self, claims: &Claims) -> Result<(), JwsError> {
        if !claims.issuer().is_store(&self.store) {
            return Err(field_error("store", "must be the issuer of the claim").into());
        }
        if self.cutoff > claims.issued_at() {
            return Err(field_error("cutoff", "is after the claim was issued").into());
        }
        Ok(())
    }
}

/// Signs a payment claim with the store's key.
pub fn sign(claims: &Claims, claim: &PaymentClaim, key: &SigningKey) -> Result<String, JwsError> {
    jws::sign(claims, claim, key)
}

/// Verifies a payment claim against the registered store keys, by the
/// center `center` it must be addressed to.
pub fn verify(
    token: &str,
    keys: &KeyDirectory,
    clock: &dyn Clock,
    center: &PartyId,
) -> Result<Verified<PaymentClaim>, JwsError> {
    jws::verify_for(token, keys, clock, center)
}

/// One settlement accepted: what the books show it comes to after its
/// refunds, and its fee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptedLine {
    pub settlement_id: SettlementId,
    pub amount: Money,
    pub fee: Money,
}

/// The center's answer to an accepted claim (center → store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ClaimStatementDraft", into = "ClaimStatementDraft")]
pub struct ClaimStatement {
    claim_id: ClaimId,
    payee: StoreId,
    cutoff: Timestamp,
    lines: Vec<AcceptedLine>,
    /// The lines' amounts less their fees: what the next clearing run
    /// pays for this claim.
    amount: Money,
    fees: Money,
    accepted_at: Timestamp,
}

/// The fields of a ClaimStatement, checked by [`ClaimStatement::new`]; also its wire form.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimStatementDraft {
    pub claim_id: ClaimId,
    pub payee: StoreId,
    pub cutoff: Timestamp,
    pub lines: Vec<AcceptedLine>,
    pub amount: Money,
    pub fees: Money,
    pub accepted_at: Timestamp,
}

impl ClaimStatement {
    /// A statement whose totals are its lines'.
    pub fn new(d: ClaimStatementDraft) -> Result<ClaimStatement, MessageError> {
        let currency = d.amount.currency();
        let (mut gross, mut fees) = (0u64, 0u64);
        for line in &d.lines {
            if line.amount.currency() != currency || line.fee.currency() != currency {
                return Err(field_error("lines", "every amount must be in the statement's currency"));
            }
            if line.fee.amount_minor() > line.amount.amount_minor() {
                return Err(field_error("lines", "a fee is never more than its settlement"));
            }
            gross = gross.saturating_add(line.amount.amount_minor());
            fees = fees.saturating_add(line.fee.amount_minor());
        }
        if d.lines.is_empty()
            || d.fees != Money::new(fees, currency).map_err(|e| field_error("fees", e))?
            || d.amount.amount_minor() != gross - fees
        {
            return Err(field_error("amount", "must be the lines' amounts less their fees"));
        }
        Ok(ClaimStatement {
            claim_id: d.claim_id,
            payee: d.payee,
            cutoff: d.cutoff,
            lines: d.lines,
            amount: d.amount,
            fees: d.fees,
            accepted_at: d.accepted_at,
        })
    }

    pub fn claim_id(&self) -> &ClaimId {
        &self.claim_id
    }
    pub fn payee(&self) -> &StoreId {
        &self.payee
    }
    pub fn cutoff(&self) -> Timestamp {
        self.cutoff
    }
    pub fn lines(&self) -> &[AcceptedLine] {
        &self.lines
    }
    pub fn amount(&self) -> Money {
        self.amount
    }
    pub fn fees(&self) -> Money {
        self.fees
    }
    pub fn accepted_at(&self) -> Timestamp {
        self.accepted_at
    }
}

impl TryFrom<ClaimStatementDraft> for ClaimStatement {
    type Error = MessageError;
    fn try_from(w: ClaimStatementDraft) -> Result<Self, MessageError> {
        ClaimStatement::new(w)
    }
}

impl From<ClaimStatement> for ClaimStatementDraft {
    fn from(s: ClaimStatement) -> Self {
        ClaimStatementDraft {
            claim_id: s.claim_id,
            payee: s.payee,
            cutoff: s.cutoff,
            lines: s.lines,
            amount: s.amount,
            fees: s.fees,
            accepted_at: s.accepted_at,
        }
    }
}

impl MessageKind for ClaimStatement {
    const TYP: &'static str = "kessai-claim-statement+jwt";
    const BODY: &'static str = "claim_statement";

    fn check_claims(&self, claims: &Claims) -> Result<(), JwsError> {
        if self.accepted_at > claims.issued_at() {
            return Err(field_error("accepted_at", "is after the statement was issued").into());
        }
        Ok(())
    }
}

/// Signs a claim statement with the center's key.
pub fn sign_statement(
    claims: &Claims,
    statement: &ClaimStatement,
    key: &(impl crate::keys::JwsSigner + ?Sized),
) -> Result<String, JwsError> {
    jws::sign(claims, statement, key)
}

/// Verifies a claim statement; `keys` must hold only the center's keys.
pub fn verify_statement(
    token: &str,
    keys: &KeyDirectory,
    clock: &dyn Clock,
) -> Result<Verified<ClaimStatement>, JwsError> {
    jws::verify(token, keys, clock)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpy(minor: u64) -> Money {
        Money::new(minor, Currency::JPY).unwrap()
    }

    fn line(n: u8, minor: u64) -> ClaimLine {
        ClaimLine { settlement_id: SettlementId::parse(&format!("stl_{n:032x}")).unwrap(), amount: jpy(minor) }
    }

    fn draft(lines: Vec<ClaimLine>) -> PaymentClaimDraft {
        PaymentClaimDraft {
            claim_id: ClaimId::parse("claim-1").unwrap(),
            store: StoreId::parse("kessai-mall").unwrap(),
            payee: StoreId::parse("bookshop").unwrap(),
            cutoff: Timestamp::from_unix_s(1_800_000_000),
            currency: Currency::JPY,
            lines,
        }
    }

    #[test]
    fn a_claim_names_each_settlement_once_in_its_currency() {
        assert!(PaymentClaim::new(draft(vec![line(1, 100), line(2, 200)])).is_ok());
        assert!(PaymentClaim::new(draft(vec![])).is_err(), "nothing claimed");
        assert!(PaymentClaim::new(draft(vec![line(1, 100), line(1, 100)])).is_err(), "twice");
        let usd = ClaimLine { amount: Money::new(1, Currency::parse("USD").unwrap()).unwrap(), ..line(3, 1) };
        assert!(PaymentClaim::new(draft(vec![usd])).is_err(), "another currency");
        let many = (0..=MAX_CLAIM_LINES).map(|n| line(u8::try_from(n % 250).unwrap(), 1)).collect();
        assert!(PaymentClaim::new(draft(many)).is_err(), "too many");
    }

    #[test]
    fn a_statement_adds_up() {
        let accepted =
            |amount, fee| AcceptedLine { settlement_id: line(1, 1).settlement_id, amount: jpy(amount), fee: jpy(fee) };
        let statement = |lines, amount, fees| {
            ClaimStatement::new(ClaimStatementDraft {
                claim_id: ClaimId::parse("claim-1").unwrap(),
                payee: StoreId::parse("bookshop").unwrap(),
                cutoff: Timestamp::from_unix_s(1),
                lines,
                amount: jpy(amount),
                fees: jpy(fees),
                accepted_at: Timestamp::from_unix_s(2),
            })
        };
        assert!(statement(vec![accepted(1_000, 10)], 990, 10).is_ok());
        assert!(statement(vec![accepted(1_000, 10)], 1_000, 10).is_err(), "the fee not taken off");
        assert!(statement(vec![accepted(1_000, 10)], 990, 0).is_err(), "fees that are not the lines'");
        assert!(statement(vec![accepted(5, 10)], 0, 10).is_err(), "a fee above its settlement");
        assert!(statement(vec![], 0, 0).is_err(), "nothing accepted");
    }
}
