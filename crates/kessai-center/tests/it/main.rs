//! kessai-center's integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api;
mod audit;
mod charge;
mod charge_api;
mod clearing;
mod db;
mod failover;
mod faults;
mod hsm;
mod keys;
mod members;
mod prepaid;
mod profiles;
mod purchase;
mod refund;
mod service;
mod statement;
mod tls;
mod world;
