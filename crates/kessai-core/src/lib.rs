//! The sans-I/O core of kessai.
//!
//! Everything here is pure: no sockets, files, clocks or global randomness.
//! Time comes in through [`time::Clock`] and randomness through
//! [`random::Random`], so any run can be replayed from a seed.
//!
//! - [`money`]: amounts in integer minor units with an ISO 4217 currency.
//! - [`ids`]: identifiers that validate on construction.
//! - [`limits`]: every bound in one place.
//! - [`jws`]: JWS compact serialisation with Ed25519 (RFC 7515, RFC 8037).
//! - [`jwk`] and [`keys`]: public keys as JWK/JWKS, the key directory,
//!   signing keys that zeroize on drop.
//! - [`keyfile`]: PKCS#8 PEM key files, optionally sealed under a passphrase.
//! - [`messages`]: the five signed message kinds SIG1–SIG5.

pub mod at_rest;
pub mod base64url;
pub mod digest;
pub mod ids;
pub mod jwe;
pub mod jwk;
pub mod jws;
pub mod keyfile;
pub mod keys;
pub mod limits;
pub mod member_store;
pub mod messages;
pub mod money;
pub mod profile;
pub mod random;
pub mod samples;
pub mod time;
pub mod token;

pub use digest::Sha256Digest;
pub use money::{Currency, Money};
pub use time::{Clock, Timestamp};
