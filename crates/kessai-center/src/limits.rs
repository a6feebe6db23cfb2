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
pub const MAX_APDUS_PER_STEP: usize = 6;

/// Largest sealed SCP03 state we store or accept back.
pub const MAX_SEALED_STATE_BYTES: usize = 1024;

const _: () = assert!(OFFER_LIFETIME_S <= SETTLEMENT_TIMEOUT_S);
const _: () = assert!(COMPLETION_LIFETIME_S <= kessai_core::limits::MAX_TOKEN_LIFETIME_S);

/// How long a value update (SIG5) is valid: the wallet relays the CREDIT
/// within it.
pub const VALUE_UPDATE_LIFETIME_S: u64 = 10 * 60;

/// Most value one card may be charged per UTC day, in major units of its
/// currency (about JPY 100,000 each), counting completed and pending
/// charges. A currency not listed cannot be charged.
const DAILY_CHARGE_LIMIT_MAJOR: &[(&str, u64)] = &[
    ("AUD", 1_000),
    ("CAD", 900),
    ("CHF", 600),
    ("CNY", 5_000),
    ("EUR", 600),
    ("GBP", 500),
    ("HKD", 5_000),
    ("JPY", 100_000),
    ("KRW", 900_000),
    ("NZD", 1_100),
    ("SGD", 900),
    ("TWD", 20_000),
    ("USD", 650),
];

/// The daily charge limit of a card in `currency`, in its minor units
/// (L2: JPY 100,000, USD 650.00, KRW 900,000); 0 for a currency with none.
pub fn daily_charge_limit_minor(currency: kessai_core::Currency) -> u64 {
    DAILY_CHARGE_LIMIT_MAJOR
        .iter()
        .find(|(code, _)| *code == currency.code())
        .map_or(0, |(_, major)| major.saturating_mul(10u64.pow(u32::from(currency.exponent()))))
}

/// Smallest charge, in minor units.
pub const MIN_CHARGE_MINOR: u64 = 1;

/// Seconds in a UTC day (Unix time has no leap seconds).
pub const DAY_S: u64 = 86_400;

const _: () = assert!(VALUE_UPDATE_LIFETIME_S <= kessai_core::limits::MAX_TOKEN_LIFETIME_S);
const _: () = assert!(MIN_CHARGE_MINOR >= 1);

/// Times a step runs again from its load when its PostgreSQL transaction
/// lost a serialization conflict to a concurrent one (SQLite never does).
pub const STEP_RETRIES_MAX: u32 = 8;

/// A settlement or value update still before its sealed command (opening
/// the secure session, reading the balance) this long after it was opened
/// is abandoned: the sweep voids it. No value is held by it (the hold is
/// made in the transaction that issues the command), but a bill stays in use
/// and a charge's authorization and daily reservation stay taken until then.
pub const ABANDONED_AFTER_S: u64 = SETTLEMENT_TIMEOUT_S;

/// Most abandoned rows one sweep pass voids.
pub const SWEEP_BATCH_MAX: i64 = 100;

const _: () = assert!(ABANDONED_AFTER_S >= OFFER_LIFETIME_S && ABANDONED_AFTER_S >= VALUE_UPDATE_LIFETIME_S);

/// How long an instance holds a completion it is delivering (from the step
/// that completed it, or its sweep's claim) before another instance's sweep
/// may take it: longer than one delivery attempt may last.
pub const DELIVERY_LEASE_S: u64 = 30;

/// The wait after a completion's first failed delivery, doubled after each
/// further failure up to [`DELIVERY_BACKOFF_MAX_S`].
pub const DELIVERY_BACKOFF_MIN_S: u64 = 1;
pub const DELIVERY_BACKOFF_MAX_S: u64 = 60;

/// How long an Idempotency-Key's stored answer is kept: far longer than any
/// wallet or store retries a request (they retry within minutes, and a
/// wallet's recovery starts new requests). Older answers are purged, at
/// most [`PURGE_BATCH_MAX`] per sweep, so the table does not grow forever.
pub const IDEMPOTENCY_RETENTION_S: u64 = 7 * DAY_S;
pub const PURGE_BATCH_MAX: i64 = 1_000;

/// Charge attempts (authorizations asked, declined ones included) per
/// kessai card, and per payment card number, in [`CHARGE_ATTEMPT_WINDOW_S`]:
/// past either, `POST /v1/charges` answers 429 `too_many_attempts` before
/// the authorizer is asked (M5: a card id and a list of stolen numbers make
/// no card-testing oracle).
pub const CHARGE_ATTEMPTS_PER_CARD: u64 = 10;
pub const CHARGE_ATTEMPTS_PER_PAN: u64 = 5;
pub const CHARGE_ATTEMPT_WINDOW_S: u64 = 3_600;

/// Seconds between two runs of the examination of collected card logs
/// (`crate::audit`) in a running center; `kessai center audit` runs it at
/// once.
pub const AUDIT_INTERVAL_S: u64 = 3_600;

#[cfg(test)]
mod tests {
    use kessai_core::Currency;

    use super::{DAILY_CHARGE_LIMIT_MAJOR, daily_charge_limit_minor};

    #[test]
    fn the_daily_charge_limit_is_per_currency_in_its_minor_units() {
        assert_eq!(daily_charge_limit_minor(Currency::JPY), 100_000);
        assert_eq!(daily_charge_limit_minor(Currency::USD), 65_000, "USD 650.00, not USD 1,000");
        assert_eq!(daily_charge_limit_minor(Currency::parse("KRW").unwrap()), 900_000, "KRW has no minor unit");
        for (code, major) in DAILY_CHARGE_LIMIT_MAJOR {
            let currency = Currency::parse(code).unwrap();
            assert!(daily_charge_limit_minor(currency) >= *major, "{code}");
        }
    }
}
