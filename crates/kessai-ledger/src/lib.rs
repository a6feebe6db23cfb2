//! The kessai ledger: double-entry bookkeeping with TigerBeetle's semantics, stored in
//! SQLite (embedded default) or PostgreSQL (production, several center instances).
//!
//! - Accounts hold one currency and four balances in minor units: debits and credits,
//!   each pending and posted.
//! - Transfers are immutable and carry client-chosen ids, so a retried batch is
//!   answered `exists` instead of moving money twice. A transfer is single-phase,
//!   or *pending* and then *posted* (in full or in part), *voided*, or *expired* —
//!   exactly once.
//! - Batches apply in one database transaction and answer one result code per
//!   refused event (`result`), with stable numbers.
//! - `Ledger::check` verifies the invariants: every currency sums to zero, no account
//!   breaks its flags, stored balances equal the sums of the transfers, and no pending
//!   transfer is resolved twice.
//!
//! Invariant: the ledger never reads a clock; callers pass `now_unix_s`. (Only
//! `bench` reads a monotonic timer, to measure.)

pub mod bench;
mod check;
mod engine;
mod error;
pub mod limits;
mod result;
mod store;
mod types;
pub mod wal;
pub mod within;

pub use check::InvariantViolation;
pub use error::Error;
pub use result::{CreateAccountResult, CreateAccountsResult, CreateTransferResult, CreateTransfersResult};
pub use store::{BackendKind, HistoryCursor, HistoryPage, KindTotal, Ledger};
pub use types::{
    Account, AccountFlags, AccountKind, Balances, Currency, CurrencyError, NewAccount, NewTransfer, PendingState,
    Transfer, TransferFlags,
};
