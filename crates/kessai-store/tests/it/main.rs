//! The store: pages, completions, downloads, mall isolation, storage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod completions;
mod config;
mod downloads;
mod members;
mod pages;
mod postgres;
mod retention;
mod serving;
mod support;
