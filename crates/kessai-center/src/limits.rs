//! The center's bounds, in one place.

/// How long a settlement may take from bill to card confirmation before it
/// can no longer be offered (the card must still answer before a void).
pub const SETTLEMENT_TIMEOUT_S: u64 = 15 * 60;

/// How long a signed offer (SIG2) is valid: the cardholder's consent time.
pub const OFFER_LIFETIME_S: u64 = 10 * 60;

/// How long completions (SIG3) are valid for the store to act on.
pub const COMPLETION_LIFETIME_S: u64 = 24 * 60 * 60;

/// Largest APDU (hex-decoded) the center accepts from a wallet.
pub const MAX_APDU_BYTES: usize = 4096;

/// Most APDU responses one request may carry.
pub const MAX_APDUS_PER_STEP: usize = 4;

/// Largest sealed SCP03 state we store or accept back.
pub const MAX_SEALED_STATE_BYTES: usize = 1024;

const _: () = assert!(OFFER_LIFETIME_S <= SETTLEMENT_TIMEOUT_S);
const _: () = assert!(COMPLETION_LIFETIME_S <= kessai_core::limits::MAX_TOKEN_LIFETIME_S);
