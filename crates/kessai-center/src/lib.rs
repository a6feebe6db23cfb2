//! The settlement center (DESIGN §1, §4): the application server that runs
//! the purchase protocol, the security server that alone holds issuer keys
//! and speaks SCP03 to cards, and the information management that keeps
//! the registry, settlements and ledger.
//!
//! This crate's core is sans-I/O: [`security::SecurityServer`] and
//! [`purchase`] take bytes and return bytes; the HTTP service and the
//! database sit around them.

pub mod admin;
pub mod api;
pub mod app;
pub mod audit;
pub mod authorizer;
pub mod books;
pub mod card_session;
pub mod clearing;
pub mod clearing_api;
pub mod config;
pub mod console;
pub mod db;
pub mod delivery;
mod fast_read;
pub mod hsm;
pub mod issue;
pub mod key_set;
pub mod keystore;
pub mod limits;
pub mod member_pages;
pub mod members;
pub mod merge;
pub mod openapi;
pub mod owed;
pub mod prepaid;
pub mod prepaid_api;
pub mod purchase;
mod runner;
mod schema;
pub mod update;
pub mod update_api;

pub mod security;
pub mod service;
pub mod statement;
pub mod statistics;
pub mod token_session;
pub mod tokens;
pub mod value;
mod writer;
