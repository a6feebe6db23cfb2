//! What the wallet checks before it relays a sealed CREDIT or a
//! center-initiated DEBIT: the value update (SIG5) verifies against the
//! center's keys, is fresh, has not been seen before, and announces exactly
//! this card, this direction, this amount and these command bytes. Pure: clock and the replay memory are passed in.

use crate::Clock;
use crate::Money;
use crate::digest::Sha256Digest;
use crate::ids::CardId;
use crate::jws::{JwsError, Verified};
use crate::keys::KeyDirectory;
use crate::messages::value_update::{self, Direction, ValueUpdate};

/// Why a value update is refused. Nothing is relayed on any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueUpdateRefused {
    #[error("the value update does not verify: {0}")]
    Token(JwsError),
    #[error("the value update was already used (message {0})")]
    Replayed(String),
    #[error("it is for card {found}, but the card in the reader is {expected}")]
    Card { expected: String, found: String },
    #[error("it announces a {found:?}, not a {expected:?}")]
    Direction { expected: Direction, found: Direction },
    #[error("it announces {found}, but the cardholder asked for {expected}")]
    Amount { expected: String, found: String },
    #[error("the sealed command is not the one it signed (command hash)")]
    CommandHash,
    #[error("it names update {found}, not {expected}")]
    Update { expected: String, found: String },
}

/// What the wallet expects the value update to say.
#[derive(Debug, Clone, Copy)]
pub struct ExpectedUpdate<'a> {
    /// The value update (charge, decrease, refund credit) the wallet is driving.
    pub update_id: &'a str,
    /// The card in the reader (GET DATA `DF10`).
    pub card_id: CardId,
    /// A charge or refund credit adds value; a decrease removes it.
    pub direction: Direction,
    /// What the cardholder asked for, or what the center said it owes.
    pub amount: Money,
    /// The exact sealed command about to be relayed.
    pub command: &'a [u8],
}

/// Verifies SIG5 and ties it to the card, the amount and the command.
/// `seen` answers whether this message id (`jti`) was already accepted, and
/// remembers it; a replayed token is refused even if everything matches.
pub fn verify_value_update(
    token: &str,
    center_keys: &KeyDirectory,
    clock: &dyn Clock,
    expected: ExpectedUpdate<'_>,
    seen: &mut dyn FnMut(&str) -> bool,
) -> Result<Verified<ValueUpdate>, ValueUpdateRefused> {
    let verified = value_update::verify(token, center_keys, clock).map_err(ValueUpdateRefused::Token)?;
    let v = verified.message();
    if v.update_id().as_str() != expected.update_id {
        return Err(ValueUpdateRefused::Update {
            expected: expected.update_id.to_owned(),
            found: v.update_id().to_string(),
        });
    }
    if v.card_id() != expected.card_id {
        return Err(ValueUpdateRefused::Card {
            expected: expected.card_id.to_string(),
            found: v.card_id().to_string(),
        });
    }
    if v.direction() != expected.direction {
        return Err(ValueUpdateRefused::Direction { expected: expected.direction, found: v.direction() });
    }
    if v.amount() != expected.amount {
        return Err(ValueUpdateRefused::Amount {
            expected: expected.amount.to_string(),
            found: v.amount().to_string(),
        });
    }
    if !v.command_hash().ct_eq(&Sha256Digest::of(expected.command)) {
        return Err(ValueUpdateRefused::CommandHash);
    }
    let jti = verified.claims().id().as_str();
    if seen(jti) {
        return Err(ValueUpdateRefused::Replayed(jti.to_owned()));
    }
    Ok(verified)
}
