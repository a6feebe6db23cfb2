//! kessai-bank's integration tests: the published vectors and our
//! hand-made bank files read to exact credits, every writer's output read
//! back and validated against the official ISO 20022 schemas, every
//! refusal named, and thousands of mutated files read without a panic;
//! the same for payouts to stores: accounts, pain.001 and Zengin 総合振込
//! written, pain.002, camt.054 and Zengin results read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod mutations;
mod outcomes;
mod pain001;
mod payouts;
mod refusals;
mod round_trip;
mod vectors;
mod xsd;
mod zengin_transfer;
