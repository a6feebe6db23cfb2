//! Every bound kessai enforces, in one place (TigerBeetle style).
//!
//! A limit that a peer can hit is checked before the work it bounds; the
//! compile-time assertions at the bottom keep the limits consistent with
//! each other.

/// Largest compact JWS we accept, checked before any parsing.
pub const MAX_TOKEN_BYTES: usize = 48 * 1024;

/// Largest JWKS document we accept.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;

/// Most keys a JWKS or a key directory may hold.
pub const MAX_KEYS: usize = 64;

/// Most keys a registry's directory holds (every store key registered with
/// the center, revoked ones included).
pub const MAX_REGISTRY_KEYS: usize = 100_000;

/// Most line items on one bill.
pub const MAX_LINE_ITEMS: usize = 50;

/// Largest quantity on one line.
pub const MAX_QUANTITY: u32 = 10_000;

/// Largest amount of one payment, one line or one balance, in minor units.
/// Kept below 2^53 so that every JSON implementation (JavaScript, Python
/// floats) reads it exactly.
pub const MAX_AMOUNT_MINOR: u64 = 1_000_000_000_000_000;

/// Longest human-readable text (item names, store names), in bytes.
pub const MAX_TEXT_BYTES: usize = 200;

/// Longest textual identifier (bill, order, settlement, store ids).
pub const MAX_ID_BYTES: usize = 64;

/// Longest free-form reference (funding reference, delivery reference).
pub const MAX_REFERENCE_BYTES: usize = 512;

/// Longest a signed message may be valid (`exp - iat`).
pub const MAX_TOKEN_LIFETIME_S: u64 = 24 * 60 * 60;

/// Clock skew tolerated between parties when checking `iat`, `nbf`, `exp`.
pub const CLOCK_SKEW_S: u64 = 60;

/// Largest PEM key file we read.
pub const MAX_KEY_FILE_BYTES: usize = 16 * 1024;

/// Argon2id cost for passphrase-sealed key files (RFC 9106 second
/// recommended option: 64 MiB, 3 passes, 4 lanes).
pub const KEYFILE_ARGON2_MEMORY_KIB: u32 = 64 * 1024;
/// See [`KEYFILE_ARGON2_MEMORY_KIB`].
pub const KEYFILE_ARGON2_PASSES: u32 = 3;
/// See [`KEYFILE_ARGON2_MEMORY_KIB`].
pub const KEYFILE_ARGON2_LANES: u32 = 4;
/// Upper bounds on what we accept from a key file's header, so a hostile
/// file cannot make us allocate gigabytes.
pub const KEYFILE_ARGON2_MAX_MEMORY_KIB: u32 = 1024 * 1024;
/// See [`KEYFILE_ARGON2_MAX_MEMORY_KIB`].
pub const KEYFILE_ARGON2_MAX_PASSES: u32 = 16;

const _: () = assert!(MAX_AMOUNT_MINOR < (1u64 << 53));
// A bill's total is the sum of its lines: it must not overflow u64 even at
// the extremes, so checked arithmetic is the only guard ever needed.
const _: () = assert!((MAX_LINE_ITEMS as u128) * (MAX_AMOUNT_MINOR as u128) < u64::MAX as u128);
const _: () = assert!(MAX_ID_BYTES <= MAX_TEXT_BYTES);
// The largest bill we allow must fit in a token: per line the sku, a name
// whose every byte might need escaping, and about 160 bytes of JSON, all
// grown by a third by base64, plus room for claims, header and signature.
const _: () = assert!(MAX_LINE_ITEMS * (MAX_ID_BYTES + 2 * MAX_TEXT_BYTES + 160) * 4 / 3 + 4096 <= MAX_TOKEN_BYTES);
const _: () = assert!(CLOCK_SKEW_S < MAX_TOKEN_LIFETIME_S);
const _: () = assert!(MAX_JWKS_BYTES >= MAX_KEYS * 256);
const _: () = assert!(MAX_REGISTRY_KEYS >= MAX_KEYS);
const _: () = assert!(KEYFILE_ARGON2_MEMORY_KIB <= KEYFILE_ARGON2_MAX_MEMORY_KIB);
const _: () = assert!(KEYFILE_ARGON2_PASSES <= KEYFILE_ARGON2_MAX_PASSES);
