//! The bank service provider's API (seed 002, FIG. 2 and FIG. 6; PROTOCOL.md
//! §13.8): the pool account's statements, and the tokens the bank makes of
//! deposits on it, for the center over mutual TLS.

use kessai_core::Money;
use serde::{Deserialize, Serialize};

/// `POST /v1/tokens`: the center asks the bank to make the token a deposit
/// on the pool account pays for. Every field but `deposit` and
/// `reference` goes into the token (FIG. 12).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealRequest {
    /// The deposit as the bank's statement names it: `<account>/<entry
    /// reference>` (the center's entry key for the credit).
    pub deposit: String,
    /// The creditor reference (ISO 11649) the deposit quoted.
    pub reference: String,
    pub token_id: String,
    /// What was deposited, and what the token pays.
    pub amount: Money,
    pub user_name: String,
    pub user_id: String,
    /// The depositor's account, where an unredeemed token's value goes back.
    pub bank_account: String,
    /// The credit card, `last4:NNNN` or `ntk:…`, never a number.
    pub card_ref: String,
}

/// The token made: sealed under the credit service provider's key version
/// issuing at the deposit. Asked again, the same token (`first` false).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    pub token_id: String,
    /// The sealed token, base64url.
    pub token: String,
    pub key_version: u8,
    /// When the bank booked the deposit, unix s.
    pub deposited_at: u64,
    /// The token's expiry, unix s.
    pub expires_at: u64,
    pub first: bool,
}
