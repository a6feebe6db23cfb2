//! Every bound the wallet keeps, in one place.

use kessai_core::limits::MAX_TOKEN_BYTES;

/// Largest configuration file read.
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024;
/// Time one request to the center (or a store's JWKS) may take.
pub const CENTER_TIMEOUT_MS: u64 = 15_000;
/// Attempts of one POST (same Idempotency-Key) after a transport failure
/// or a server error.
pub const MAX_POST_ATTEMPTS: u32 = 3;
/// Pause between those attempts.
pub const POST_RETRY_PAUSE_MS: u64 = 200;
/// Polls of `GET /v1/settlements/{id}/receipt` before giving up for now.
pub const RECEIPT_POLLS: u32 = 50;
/// Pause between receipt polls.
pub const RECEIPT_POLL_INTERVAL_MS: u64 = 200;
/// How long the processing page keeps refreshing after completion before
/// it says the store is late.
pub const RECEIPT_WAIT_S: u64 = 120;
/// Seconds between refreshes of the processing page.
pub const PROCESSING_REFRESH_S: u32 = 1;
/// Time one exchange with the card (or waiting for a vpcd card to
/// connect) may take before the wallet reports no card.
pub const CARD_WAIT_MS: u64 = 10_000;
/// Commands the center may send in one step (PROTOCOL §5: at most 6, as
/// a token session's batch is: EXTERNAL AUTHENTICATE, two log commands and
/// three STORE TOKEN).
pub const MAX_APDUS_PER_STEP: usize = 6;
/// Largest command the wallet relays, in bytes (an extended APDU).
pub const MAX_APDU_BYTES: usize = 4_096;
/// Largest bill token accepted from a store's page.
pub const MAX_BILL_BYTES: usize = MAX_TOKEN_BYTES;
/// Largest `return_url` accepted.
pub const MAX_RETURN_URL_BYTES: usize = 2_048;
/// Records shown on the home page.
pub const RECENT_RECORDS: i64 = 10;
/// Records returned by `history`.
pub const MAX_HISTORY_RECORDS: i64 = 1_000;
/// Settlements one `recover` run looks at.
pub const MAX_RECOVERIES_PER_RUN: i64 = 100;
/// Random bytes in local payment ids, consent tokens and idempotency keys.
pub const RANDOM_ID_BYTES: usize = 16;
/// SQLite busy timeout.
pub const SQLITE_BUSY_TIMEOUT_MS: u64 = 5_000;
/// Connections in the SQLite pool.
pub const DB_POOL_CONNECTIONS_MAX: u32 = 4;

const _: () = assert!(MAX_POST_ATTEMPTS >= 1);
const _: () = assert!(RECEIPT_POLLS as u64 * RECEIPT_POLL_INTERVAL_MS <= RECEIPT_WAIT_S * 1_000);
const _: () = assert!(MAX_RECOVERIES_PER_RUN <= MAX_HISTORY_RECORDS);

/// Most requests one card-log reading may take (one per page of 3 records
/// of the card's 64, plus the handshake).
pub const MAX_STATEMENT_STEPS: usize = 30;

/// Most owed items (refunds, corrections) applied in one presentation of
/// the card; the rest wait for the next.
pub const MAX_OWED_PER_PRESENTATION: usize = 16;
/// An offer the cardholder neither agreed to nor cancelled is cancelled by
/// the wallet (recovery voids it and releases the hold) once it is this old:
/// the center's offer lifetime.
pub const ABANDONED_OFFER_S: u64 = 600;
/// How often `wallet serve` looks for abandoned offers.
pub const ABANDONED_SWEEP_S: u64 = 30;

/// How long the wallet trusts the center's keys as it fetched them (L5): a
/// key the center stopped publishing (rotated out, revoked) is dropped by
/// then. A token under a key it does not know yet fetches them at once.
pub const CENTER_KEYS_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// Members' purchases under way through the pages whose keystore key the
/// wallet holds until they complete (each is a few hundred bytes).
pub const MEMBER_SESSIONS: usize = 32;
