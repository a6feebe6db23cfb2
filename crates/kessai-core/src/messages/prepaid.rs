//! The member's prepaid request (プリペイド要求, seed 003/004 FIG. 12–15):
//! member → center. Signed in the wallet with the member's key (passwords
//! A and B), so value the center issues to a virtual prepaid card, and what
//! it tells of one, answers only the member's own provable request.
//!
//! One message kind for the three things a member asks of its prepaid
//! cards: open one funded with an amount, fund one it holds, or inquire
//! (balance and history). `request_id` is the member's own id for the
//! request: signed again after a lost answer, the same request id is the
//! same request, never a second issue of value.

use serde::{Deserialize, Serialize};

use super::{MessageError, field_error, require_positive};
use crate::ids::{CardId, PartyId, PrepaidId, RequestId};
use crate::jws::{self, Claims, JwsError, MessageKind, Verified};
use crate::keys::{KeyDirectory, SigningKey};
use crate::money::Money;
use crate::time::Clock;

/// What the member asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrepaidAction {
    /// A new virtual prepaid card, funded with `amount` by `method`.
    Open,
    /// `amount` more on `account`, by `method`.
    Fund,
    /// The balance and history of `account`, or of every card of the
    /// member.
    Inquire,
    /// `amount` of `account`'s value onto the member's IC card `card_id`
    /// (a value update funded by the prepaid card, through SIG5).
    ToCard,
    /// A bank deposit token (seed 002) of `amount` for the member's IC card
    /// `card_id`, paid by bank transfer to the pool account under the
    /// reference the answer gives; `token` names where its value goes back
    /// if it is never redeemed, and the member's credit card.
    DepositToken,
}

/// What a deposit token request names beyond an amount and a card
/// (FIG. 12's bank account and credit card).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenTerms {
    /// The member's own account, where an unredeemed token's value is
    /// paid back: `BBBB-SSS-T-NNNNNNN` (Zengin) or an IBAN.
    pub refund_account: String,
    /// Its holder's name as the bank has it (Zengin: half-width kana or
    /// Latin capitals), for the payback's bank file; without it the
    /// member's registered name is used, which an operator may have to
    /// correct (a name in kanji is no Zengin holder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_holder: Option<String>,
    /// The member's credit card as `last4:NNNN` or a network token
    /// `ntk:…`, never its number.
    pub card_ref: String,
}

/// How the member pays the center for value (FIG. 12–15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FundingMethod {
    /// A credit card, authorized by the credit authorizer (FIG. 12).
    Credit,
    /// A bank transfer to the center's pool account (FIG. 13).
    BankTransfer,
    /// A postal transfer to the center's postal account (FIG. 14).
    PostalTransfer,
    /// Cash sent by registered mail, recorded by operators (FIG. 15).
    Cash,
}

impl FundingMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            FundingMethod::Credit => "credit",
            FundingMethod::BankTransfer => "bank_transfer",
            FundingMethod::PostalTransfer => "postal_transfer",
            FundingMethod::Cash => "cash",
        }
    }

    pub fn parse(s: &str) -> Option<FundingMethod> {
        [FundingMethod::Credit, FundingMethod::BankTransfer, FundingMethod::PostalTransfer, FundingMethod::Cash]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PrepaidRequestDraft", into = "PrepaidRequestDraft")]
pub struct PrepaidRequest {
    /// The member asking (equals `iss`).
    member: PartyId,
    /// The member's id for this request: one request issues value once.
    request_id: RequestId,
    action: PrepaidAction,
    /// The card funded or inquired of; none when opening (and, inquiring,
    /// for every card of the member).
    account: Option<PrepaidId>,
    /// What is to be funded (open, fund): positive; its currency is the
    /// card's.
    amount: Option<Money>,
    /// How the member pays (open, fund).
    method: Option<FundingMethod>,
    /// The member's IC card the value goes to (to_card), or the token is
    /// for (deposit_token).
    card_id: Option<CardId>,
    /// A deposit token's terms (deposit_token only).
    token: Option<TokenTerms>,
}

/// The fields of a PrepaidRequest, checked by [`PrepaidRequest::new`]; also
/// its wire form.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrepaidRequestDraft {
    pub member: PartyId,
    pub request_id: RequestId,
    pub action: PrepaidAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<PrepaidId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<FundingMethod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_id: Option<CardId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenTerms>,
}

impl PrepaidRequest {
    pub fn new(d: PrepaidRequestDraft) -> Result<PrepaidRequest, MessageError> {
        match d.action {
            PrepaidAction::Open | PrepaidAction::Fund => {
                let amount = d.amount.ok_or_else(|| field_error("amount", "is required to open or fund"))?;
                require_positive("amount", &amount)?;
                if d.method.is_none() {
                    return Err(field_error("method", "is required to open or fund"));
                }
            }
            PrepaidAction::Inquire => {
                if d.amount.is_some() || d.method.is_some() {
                    return Err(field_error("amount", "an inquiry names no amount and no method"));
                }
            }
            PrepaidAction::ToCard => {
                let amount = d.amount.ok_or_else(|| field_error("amount", "is required to move value"))?;
                require_positive("amount", &amount)?;
                if d.method.is_some() {
                    return Err(field_error("method", "moving value is paid by the prepaid card"));
                }
            }
            PrepaidAction::DepositToken => {
                let amount = d.amount.ok_or_else(|| field_error("amount", "is required for a deposit token"))?;
                require_positive("amount", &amount)?;
                if d.method != Some(FundingMethod::BankTransfer) {
                    return Err(field_error("method", "a deposit token is paid by bank transfer"));
                }
                let terms = d.token.as_ref().ok_or_else(|| field_error("token", "is required for a deposit token"))?;
                crate::token::check_bank_account(&terms.refund_account)
                    .map_err(|_| field_error("token.refund_account", "BBBB-SSS-T-NNNNNNN (Zengin) or an IBAN"))?;
                crate::token::check_card_ref(&terms.card_ref)
                    .map_err(|_| field_error("token.card_ref", "last4:NNNN or ntk:…, never a card number"))?;
                if let Some(holder) = &terms.refund_holder {
                    let fits =
                        !holder.trim().is_empty() && holder.len() <= 120 && !holder.chars().any(char::is_control);
                    if !fits || crate::token::holds_a_card_number(holder) {
                        return Err(field_error("token.refund_holder", "the account holder's name, 1 to 120 bytes"));
                    }
                }
            }
        }
        let names_card = matches!(d.action, PrepaidAction::ToCard | PrepaidAction::DepositToken);
        if names_card != d.card_id.is_some() {
            return Err(field_error("card_id", "names the IC card value moves to or a token is for, and only then"));
        }
        if (d.action == PrepaidAction::DepositToken) != d.token.is_some() {
            return Err(field_error("token", "is named by a deposit token request, and only by it"));
        }
        match (d.action, &d.account) {
            (PrepaidAction::Open | PrepaidAction::DepositToken, Some(_)) => {
                return Err(field_error("account", "a new card or a token names no prepaid card"));
            }
            (PrepaidAction::Fund | PrepaidAction::ToCard, None) => {
                return Err(field_error("account", "is required to fund or move value"));
            }
            _ => {}
        }
        Ok(PrepaidRequest {
            member: d.member,
            request_id: d.request_id,
            action: d.action,
            account: d.account,
            amount: d.amount,
            method: d.method,
            card_id: d.card_id,
            token: d.token,
        })
    }

    pub fn member(&self) -> &PartyId {
        &self.member
    }
    pub fn request_id(&self) -> &RequestId {
        &self.request_id
    }
    pub fn action(&self) -> PrepaidAction {
        self.action
    }
    pub fn account(&self) -> Option<&PrepaidId> {
        self.account.as_ref()
    }
    /// Present for open and fund.
    pub fn amount(&self) -> Option<Money> {
        self.amount
    }
    /// Present for open and fund.
    pub fn method(&self) -> Option<FundingMethod> {
        self.method
    }
    /// Present for to_card and deposit_token.
    pub fn card_id(&self) -> Option<CardId> {
        self.card_id
    }
    /// Present for deposit_token.
    pub fn token(&self) -> Option<&TokenTerms> {
        self.token.as_ref()
    }
}

impl TryFrom<PrepaidRequestDraft> for PrepaidRequest {
    type Error = MessageError;
    fn try_from(d: PrepaidRequestDraft) -> Result<Self, MessageError> {
        PrepaidRequest::new(d)
    }
}

impl From<PrepaidRequest> for PrepaidRequestDraft {
    fn from(p: PrepaidRequest) -> Self {
        PrepaidRequestDraft {
            member: p.member,
            request_id: p.request_id,
            action: p.action,
            account: p.account,
            amount: p.amount,
            method: p.method,
            card_id: p.card_id,
            token: p.token,
        }
    }
}

impl MessageKind for PrepaidRequest {
    const TYP: &'static str = "kessai-prepaid-request+jwt";
    const AUDIENCE_REQUIRED: bool = true;
    const BODY: &'static str = "prepaid_request";

    fn check_claims(&self, claims: &Claims) -> Result<(), JwsError> {
        if claims.issuer() != &self.member {
            return Err(field_error("member", "must be the issuer of the request").into());
        }
        Ok(())
    }
}

/// Signs a prepaid request with the member's key.
pub fn sign(claims: &Claims, request: &PrepaidRequest, key: &SigningKey) -> Result<String, JwsError> {
    jws::sign(claims, request, key)
}

/// Verifies a prepaid request against the member's registered key, by the
/// center `center` it must be addressed to.
pub fn verify(
    token: &str,
    keys: &KeyDirectory,
    clock: &dyn Clock,
    center: &PartyId,
) -> Result<Verified<PrepaidRequest>, JwsError> {
    jws::verify_for(token, keys, clock, center)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Currency;

    fn draft(action: PrepaidAction) -> PrepaidRequestDraft {
        PrepaidRequestDraft {
            member: PartyId::parse("m-00000000000000aa").unwrap(),
            request_id: RequestId::parse("r-1").unwrap(),
            action,
            account: None,
            amount: Some(Money::new(5_000, Currency::JPY).unwrap()),
            method: Some(FundingMethod::BankTransfer),
            card_id: None,
            token: None,
        }
    }

    #[test]
    fn each_action_names_exactly_what_it_needs() {
        assert!(PrepaidRequest::new(draft(PrepaidAction::Open)).is_ok());
        let account = Some(PrepaidId::parse("vpc_1").unwrap());
        assert!(
            PrepaidRequest::new(PrepaidRequestDraft { account: account.clone(), ..draft(PrepaidAction::Fund) }).is_ok()
        );
        // Opening names no card; funding needs one.
        assert!(
            PrepaidRequest::new(PrepaidRequestDraft { account: account.clone(), ..draft(PrepaidAction::Open) })
                .is_err()
        );
        assert!(PrepaidRequest::new(draft(PrepaidAction::Fund)).is_err());
        // No amount, a zero amount, no method.
        assert!(PrepaidRequest::new(PrepaidRequestDraft { amount: None, ..draft(PrepaidAction::Open) }).is_err());
        let zero = Some(Money::zero(Currency::JPY));
        assert!(PrepaidRequest::new(PrepaidRequestDraft { amount: zero, ..draft(PrepaidAction::Open) }).is_err());
        assert!(PrepaidRequest::new(PrepaidRequestDraft { method: None, ..draft(PrepaidAction::Open) }).is_err());
        // An inquiry asks for nothing to be paid.
        assert!(PrepaidRequest::new(draft(PrepaidAction::Inquire)).is_err());
        let inquiry = PrepaidRequestDraft {
            amount: None,
            method: None,
            account: account.clone(),
            ..draft(PrepaidAction::Inquire)
        };
        assert!(PrepaidRequest::new(inquiry).is_ok());
        // Moving value names the IC card, and only moving does.
        let card = Some(CardId::from_bytes([1; 8]));
        let to_card = PrepaidRequestDraft {
            method: None,
            account: account.clone(),
            card_id: card,
            ..draft(PrepaidAction::ToCard)
        };
        assert!(PrepaidRequest::new(to_card.clone()).is_ok());
        assert!(PrepaidRequest::new(PrepaidRequestDraft { card_id: None, ..to_card.clone() }).is_err());
        assert!(PrepaidRequest::new(PrepaidRequestDraft { account: None, ..to_card.clone() }).is_err());
        assert!(PrepaidRequest::new(PrepaidRequestDraft { method: Some(FundingMethod::Cash), ..to_card }).is_err());
        assert!(PrepaidRequest::new(PrepaidRequestDraft { card_id: card, ..draft(PrepaidAction::Open) }).is_err());
        // A deposit token names the IC card, its terms, and bank transfer.
        let terms = TokenTerms {
            refund_account: "0001-002-1-1234567".into(),
            card_ref: "last4:4242".into(),
            refund_holder: None,
        };
        let token =
            PrepaidRequestDraft { card_id: card, token: Some(terms.clone()), ..draft(PrepaidAction::DepositToken) };
        assert!(PrepaidRequest::new(token.clone()).is_ok());
        for bad in [
            PrepaidRequestDraft { token: None, ..token.clone() },
            PrepaidRequestDraft { card_id: None, ..token.clone() },
            PrepaidRequestDraft { account: account.clone(), ..token.clone() },
            PrepaidRequestDraft { method: Some(FundingMethod::Cash), ..token.clone() },
            PrepaidRequestDraft { amount: None, ..token.clone() },
            PrepaidRequestDraft {
                token: Some(TokenTerms { card_ref: "4242424242424242".into(), ..terms.clone() }),
                ..token.clone()
            },
            PrepaidRequestDraft {
                token: Some(TokenTerms { card_ref: "ntk:4242424242424242".into(), ..terms.clone() }),
                ..token.clone()
            },
            PrepaidRequestDraft {
                token: Some(TokenTerms { refund_account: "my account".into(), ..terms.clone() }),
                ..token.clone()
            },
            // Terms only on a deposit token request.
            PrepaidRequestDraft { token: Some(terms.clone()), ..draft(PrepaidAction::Open) },
        ] {
            assert!(PrepaidRequest::new(bad.clone()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn methods_round_trip_by_name() {
        for m in
            [FundingMethod::Credit, FundingMethod::BankTransfer, FundingMethod::PostalTransfer, FundingMethod::Cash]
        {
            assert_eq!(FundingMethod::parse(m.as_str()), Some(m));
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{}\"", m.as_str()));
        }
        assert_eq!(FundingMethod::parse("gift"), None);
    }
}
