//! kessai-wallet's integration tests: the real center, the real store and
//! an emulated card image, all on loopback with real TLS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod charge;
mod cli;
mod member;
mod prepaid;
mod proxy;
mod purchase;
mod recovery;
mod refund;
mod refusals;
mod tokens;
mod world;
