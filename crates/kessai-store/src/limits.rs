//! Every bound of the store, in one place.

use kessai_core::limits::{MAX_LINE_ITEMS, MAX_TOKEN_LIFETIME_S};

/// Largest configuration or catalog file read.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// Most products in a catalog.
pub const MAX_PRODUCTS: usize = 1_000;
/// Most member stores in a mall.
pub const MAX_MEMBERS: usize = 64;
/// Longest product description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 4_000;
/// Largest content file delivered (read into memory to serve it).
pub const MAX_CONTENT_BYTES: u64 = 32 * 1024 * 1024;
/// Most distinct products in a cart: one bill line each.
pub const MAX_CART_ITEMS: usize = MAX_LINE_ITEMS;
/// Largest quantity of one product in a cart.
pub const MAX_CART_QUANTITY: u32 = 99;
/// Default time a bill can be paid.
pub const DEFAULT_BILL_LIFETIME_S: u64 = 30 * 60;
/// Default time download links work after payment.
pub const DEFAULT_DOWNLOAD_TTL_S: u64 = 24 * 60 * 60;
/// Longest allowed download link lifetime.
pub const MAX_DOWNLOAD_TTL_S: u64 = 30 * 24 * 60 * 60;
/// Validity of a receipt token (SIG4).
pub const RECEIPT_LIFETIME_S: u64 = MAX_TOKEN_LIFETIME_S;
/// Default least time between two fetches of the center's JWKS triggered
/// by an unknown key id (a stranger cannot make us hammer the center).
pub const DEFAULT_JWKS_REFETCH_MIN_INTERVAL_MS: u64 = 10_000;
/// Age after which the cached center JWKS is refreshed on next use.
pub const JWKS_MAX_AGE_MS: u64 = 5 * 60 * 1000;
/// Time the store waits for the center's JWKS.
pub const JWKS_FETCH_TIMEOUT_MS: u64 = 5_000;
/// Time the store waits for the center's API (a member's payouts).
pub const CENTER_API_TIMEOUT_MS: u64 = 10_000;
/// Largest answer about payouts the store takes from the center.
pub const MAX_PAYOUTS_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// Random bytes in a download token (128 bits: unguessable).
pub const DOWNLOAD_TOKEN_BYTES: usize = 16;
/// Random bytes in the unguessable part of an order number.
pub const ORDER_SECRET_BYTES: usize = 16;
/// Most orders listed in one member orders view.
pub const MAX_ORDERS_LISTED: i64 = 500;
/// Most connections in the database pool.
pub const DB_POOL_CONNECTIONS_MAX: u32 = 8;
/// Time a SQLite writer waits for the lock.
pub const SQLITE_BUSY_TIMEOUT_MS: u64 = 5_000;

const _: () = assert!(MAX_CART_ITEMS <= MAX_LINE_ITEMS);
const _: () = assert!(DEFAULT_BILL_LIFETIME_S <= MAX_TOKEN_LIFETIME_S);
const _: () = assert!(DEFAULT_DOWNLOAD_TTL_S <= MAX_DOWNLOAD_TTL_S);
const _: () = assert!(DOWNLOAD_TOKEN_BYTES * 8 >= 128);
const _: () = assert!(ORDER_SECRET_BYTES * 8 >= 128);
/// How long past its bill's expiry an unpaid order is kept before the
/// purge asks the center whether anything can still pay it (L1). Longer
/// than any clock skew between store and center.
pub const UNPAID_ORDER_GRACE_S: i64 = 24 * 60 * 60;
/// How often the purge runs.
pub const PURGE_INTERVAL_S: u64 = 60 * 60;
/// Largest answer about one bill the store reads from the center.
pub const MAX_BILL_ANSWER_BYTES: usize = 4 * 1024;
/// Orders the purge reads from the database at a time.
pub const PURGE_BATCH_MAX: i64 = 200;
/// Most orders one purge run looks at (each is one question to the center).
pub const PURGE_RUN_MAX: u64 = 2_000;
