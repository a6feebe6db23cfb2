//! kessai-center's integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod db;
mod purchase;
mod world;
