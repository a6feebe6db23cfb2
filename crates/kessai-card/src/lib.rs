//! The kessai e-money card: an ISO 7816-4 application with a stored balance,
//! a transaction log and SCP03 static keys, emulated in software.
//!
//! - [`Card`] is a sans-I/O state machine, `process(command) -> response`,
//!   over a [`Storage`] trait (its only I/O).
//! - [`image`] is the anti-tearing memory format (two slots with generation
//!   and SHA-256) and personalization.
//! - [`protocol`] is the AID, the instruction codes and every data layout,
//!   shared with the host side.
//! - [`transport`] moves APDUs: in-process, the vsmartcard vpcd socket
//!   protocol, and PC/SC (feature `pcsc`).
//! - [`tokens`] is the table of bank deposit tokens (seed 002) and its
//!   commands.
//! - [`bench`] measures full secure DEBIT sessions per second.
//!
//! Invariants: the card never holds a private key; it knows nothing of HTTP;
//! balance, counter and log change together or not at all; a refused
//! command changes nothing.

pub mod app;
pub mod bench;
pub mod image;
pub mod limits;
pub mod protocol;
pub mod state;
pub mod storage;
pub mod terminal;
pub mod tokens;
pub mod transport;

pub use app::{Card, CardError};
pub use image::{ImageError, KeySource, Personalization, create_image_file, personalize, public_info};
pub use protocol::{CardId, Currency, TransferRequest, TxId};
pub use storage::{Durability, FileStorage, MemoryStorage, PowerCutStorage, Storage};
