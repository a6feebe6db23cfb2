//! kessai-bank's integration tests: the published vectors and our
//! hand-made bank files read to exact credits, every writer's output read
//! back and validated against the official ISO 20022 schemas, every
//! refusal named, and thousands of mutated files read without a panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod mutations;
mod refusals;
mod round_trip;
mod vectors;
mod xsd;
