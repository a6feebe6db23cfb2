//! What the wallet, a store and a member send the center, as they write it
//! and the center reads it: every body refuses members it does not know.
//! Payment card fields are zeroized when dropped, on both sides.

use kessai_core::Money;
use kessai_core::profile::Profile;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::formats;

fn offer() -> Profile {
    Profile::Offer
}

/// `POST /v1/settlements`: a bill, the card, and the card's answer to the
/// wallet's INITIALIZE UPDATE (PROTOCOL §5).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSettlement {
    /// SIG1, the store's signed bill.
    #[schemars(with = "formats::Jws")]
    pub bill: String,
    #[schemars(with = "formats::CardId")]
    pub card_id: String,
    #[serde(default = "offer")]
    #[schemars(with = "formats::ProfileName")]
    pub profile: Profile,
    /// The card's answer to INITIALIZE UPDATE, hex.
    #[schemars(with = "formats::ApduHex")]
    pub initialize_update: String,
    /// What the wallet read from the card in the clear (the second
    /// embodiment's profiles only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_read: Option<CardRead>,
    /// A member's payment instruction (confirmed and direct).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<formats::Jws>")]
    pub instruction: Option<String>,
}

/// The balance and counter the wallet read with GET DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CardRead {
    #[schemars(range(max = u64::MAX))]
    pub balance_minor: u64,
    #[schemars(range(max = u32::MAX))]
    pub counter: u32,
}

/// A step's relayed card answers, hex (data, then SW1 SW2).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Answers {
    #[schemars(with = "Vec<formats::ApduHex>", length(max = 6))]
    pub responses: Vec<String>,
}

/// Paying a settlement's bill with a bank deposit token on the card
/// (#21) instead of its balance.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PayByToken {
    #[schemars(with = "formats::TokenId")]
    pub token_id: String,
    /// A member's card: the member's payment instruction for this bill
    /// (§10.4), as the balance step takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<formats::Jws>")]
    pub instruction: Option<String>,
}

/// Opening a token session (#21): with neither field, the card's issued
/// deposit tokens are stored on it; with `redeem`, that token is redeemed;
/// with `list: true`, the card's token table is read.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenSessionCreate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<formats::TokenId>")]
    pub redeem: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub list: bool,
}

/// The offer profile's balance step: the card's answers and, for a
/// member's card, the member's payment instruction.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BalanceAnswers {
    #[schemars(with = "Vec<formats::ApduHex>", length(max = 6))]
    pub responses: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<formats::Jws>")]
    pub instruction: Option<String>,
}

/// A step with no body of its own (`cancel`, `recover`, a statement's
/// create).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Nothing {}

/// `POST /v1/charges`: which card and how much; no payment card data (that
/// comes with the authenticate step, once the card has proven itself).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCharge {
    #[schemars(with = "formats::CardId")]
    pub card_id: String,
    #[schemars(with = "formats::Money")]
    pub amount: Money,
}

/// `POST /v1/decreases`: value back to the credit card of charge
/// `charge_id`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDecrease {
    #[schemars(with = "formats::CardId")]
    pub card_id: String,
    #[schemars(with = "formats::UpdateId")]
    pub charge_id: String,
    #[schemars(with = "formats::Money")]
    pub amount: Money,
}

/// `POST /v1/value-updates/{id}/authenticate`: the card's answers and, for
/// a charge, the payment card it is paid by.
#[derive(Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChargeAuthenticate {
    #[schemars(with = "Vec<formats::ApduHex>", length(max = 6))]
    pub responses: Vec<String>,
    /// The payment card (charges only): number, expiry (`MM/YY`) and
    /// security code, all three or none; never signed, hashed or stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<formats::CardNumber>")]
    pub card_number: Option<Zeroizing<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<formats::Expiry>")]
    pub expiry: Option<Zeroizing<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<formats::Cvc>")]
    pub cvc: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for ChargeAuthenticate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChargeAuthenticate").field("responses", &self.responses).finish_non_exhaustive()
    }
}

/// `POST /v1/cards/{id}/owed/apply`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OwedApply {
    /// Apply only what adds value (a card that cannot take a debit now).
    #[serde(default)]
    pub credits_only: bool,
}

/// `POST /v1/refunds`: a store's signed refund request.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRefund {
    /// `kessai-refund+jwt`.
    #[schemars(with = "formats::Jws")]
    pub refund: String,
}

/// `POST /v1/prepaid/requests`: a member's signed request and, for one paid
/// by credit card, the card beside it.
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("dependentRequired" = {
    "card_number": ["expiry", "cvc"],
    "expiry": ["card_number", "cvc"],
    "cvc": ["card_number", "expiry"]
}))]
pub struct SubmitPrepaidRequest {
    /// `kessai-prepaid-request+jwt`.
    #[schemars(with = "formats::Jws")]
    pub request: String,
    /// The payment card (charges only): number, expiry (`MM/YY`) and
    /// security code, all three or none; never signed, hashed or stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<formats::CardNumber>")]
    pub card_number: Option<Zeroizing<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<formats::Expiry>")]
    pub expiry: Option<Zeroizing<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<formats::Cvc>")]
    pub cvc: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for SubmitPrepaidRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubmitPrepaidRequest").field("request", &self.request).finish_non_exhaustive()
    }
}

/// `POST /v1/prepaid/payments`: a bill paid from a member's prepaid card.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrepaidPay {
    /// SIG1.
    #[schemars(with = "formats::Jws")]
    pub bill: String,
    /// The member's payment instruction naming the prepaid card.
    #[schemars(with = "formats::Jws")]
    pub instruction: String,
}

/// `POST /v1/members/applications`: who applies (PROTOCOL §10).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberApplication {
    /// `general` or `store`.
    #[schemars(with = "formats::ApplicationKind")]
    pub kind: String,
    #[schemars(with = "formats::Line200")]
    pub name: String,
    #[schemars(with = "formats::Line200")]
    pub contact: String,
}

/// `POST /v1/members/registrations`: the JWE around the signed registration.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRegistration {
    #[schemars(with = "formats::Jwe")]
    pub registration: String,
}

/// `POST /v1/members/key-replacements`: signed with the current key.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitKeyReplacement {
    /// `kessai-key-replacement+jwt`.
    #[schemars(with = "formats::Jws")]
    pub replacement: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_read_back_and_refuse_what_they_do_not_know() {
        let create: CreateSettlement =
            serde_json::from_str(r#"{"bill":"b","card_id":"c","initialize_update":"9000"}"#).unwrap();
        assert_eq!((create.profile, create.card_read, create.instruction.as_deref()), (Profile::Offer, None, None));
        let text = serde_json::to_string(&create).unwrap();
        assert_eq!(text, r#"{"bill":"b","card_id":"c","profile":"offer","initialize_update":"9000"}"#);
        assert!(
            serde_json::from_str::<CreateSettlement>(r#"{"bill":"b","card_id":"c","initialize_update":"","x":1}"#)
                .is_err()
        );

        let auth: ChargeAuthenticate =
            serde_json::from_str(r#"{"responses":["9000"],"card_number":"4242","expiry":"12/30","cvc":"123"}"#)
                .unwrap();
        assert_eq!(auth.card_number.as_deref().map(String::as_str), Some("4242"));
        assert!(!format!("{auth:?}").contains("4242"), "never printed");
        assert!(serde_json::from_str::<ChargeAuthenticate>(r#"{"responses":[],"pan":"4242"}"#).is_err());
        let bare = serde_json::to_string(&ChargeAuthenticate::default());
        assert_eq!(bare.unwrap(), r#"{"responses":[]}"#);
        assert!(serde_json::from_str::<Nothing>(r#"{"a":1}"#).is_err());
        let answers = BalanceAnswers { responses: vec!["9000".into()], instruction: None };
        assert_eq!(serde_json::to_string(&answers).unwrap(), r#"{"responses":["9000"]}"#);
        assert!(serde_json::from_str::<Answers>(r#"{"responses":[],"instruction":"x"}"#).is_err());
    }
}
