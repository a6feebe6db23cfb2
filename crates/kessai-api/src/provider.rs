//! The credit service provider's API (seed 002, FIG. 6; PROTOCOL.md §13.7):
//! what the bank (for its token keys) and the center (for the uses of
//! tokens) send it and what it answers, over mutual TLS.

use kessai_core::Money;
use serde::{Deserialize, Serialize};

/// `GET /v1/token-keys`: every key version still redeeming, each sealed to
/// the asking bank's key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyDeliveries {
    pub provider_id: String,
    pub deliveries: Vec<KeyDelivery>,
}

/// One key version, as a compact JWE (`kessai-token-key+jwe`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyDelivery {
    pub version: u8,
    pub jwe: String,
}

/// `POST /v1/redemptions`: a token a card gave up, with the REDEEM that
/// gave it up.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedemptionRequest {
    /// The sealed token, base64url.
    pub token: String,
    /// The card's REDEEM transaction id, 32 hex digits.
    pub transaction: String,
    /// The time in the card's REDEEM command, unix s.
    pub at: u64,
}

/// `POST /v1/paybacks`: an expired token the center pays back to its
/// depositor.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaybackRequest {
    /// The sealed token, base64url.
    pub token: String,
}

/// What the provider's register holds a token for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldFor {
    Redemption,
    Payback,
}

/// The provider honours a token: it is entered in its register, for this
/// use, once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Honoured {
    pub token_id: String,
    pub key_version: u8,
    pub amount: Money,
    pub held_for: HeldFor,
    /// The REDEEM transaction (a redemption only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
    /// When the register took it, unix s.
    pub entered_at: u64,
    /// False when this answers a call made before (the same redemption, or
    /// a payback again).
    pub first: bool,
}

/// `POST /v1/checks`: is this a token the provider would honour now (its
/// MAC under a version it holds, not expired)? Enters nothing: the center
/// asks it of a token the bank made before it issues it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    /// The sealed token, base64url.
    pub token: String,
}

/// The token checked: what it opened to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checked {
    pub token_id: String,
    pub key_version: u8,
    pub amount: Money,
    /// Unix s.
    pub expires_at: u64,
}
