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

/// How long a value update (SIG5) is valid: the wallet relays the CREDIT
/// within it.
pub const VALUE_UPDATE_LIFETIME_S: u64 = 10 * 60;

/// Most value one card may be charged per UTC day, in the card's minor
/// units (JPY 100,000), counting completed and pending charges.
pub const DAILY_CHARGE_LIMIT_MINOR: u64 = 100_000;

/// Smallest charge, in minor units.
pub const MIN_CHARGE_MINOR: u64 = 1;

/// Seconds in a UTC day (Unix time has no leap seconds).
pub const DAY_S: u64 = 86_400;

const _: () = assert!(VALUE_UPDATE_LIFETIME_S <= kessai_core::limits::MAX_TOKEN_LIFETIME_S);
const _: () = assert!(MIN_CHARGE_MINOR >= 1 && MIN_CHARGE_MINOR <= DAILY_CHARGE_LIMIT_MINOR);
