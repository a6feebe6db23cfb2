//! kessai-core's integration tests: one binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod fixtures;
mod interop;
mod keys;
mod messages;
mod tamper;
mod totality;
mod vectors;
