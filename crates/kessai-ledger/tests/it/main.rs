#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The ledger's one integration test binary. Every PostgreSQL test reads
//! `KESSAI_TEST_DATABASE_URL` (set by `scripts/with-postgres`); without it the test
//! is skipped, or fails when `CI=true`.

mod api;
mod conformance;
mod durability;
mod invariants;
mod support;
mod wal;
mod within;
