//! `kessai bank serve`'s configuration: a TOML file, checked before
//! anything starts. Relative paths are relative to `data_dir`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::ensure;
use kessai_core::Currency;
use kessai_http::Limits;
use kessai_http::party::ServiceTls;
use serde::Deserialize;

/// The environment variable that may hold the KEK (64 hex digits).
pub const KEK_ENV: &str = "KESSAI_BANK_KEK";
/// Requests a second one client (a center) may make by default.
pub const CLIENT_RATE_PER_S: u32 = 2_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BankConfig {
    /// The bank's id, as tokens name it (Zengin code or BIC).
    pub bank_id: String,
    /// The pool account (an IBAN or the bank's own account id), as its
    /// statements name it.
    pub pool_account: String,
    /// The pool account's currency.
    #[serde(default = "jpy")]
    pub currency: Currency,
    /// Address to listen on (HTTPS, mutual TLS).
    pub listen: SocketAddr,
    /// Key versions and the delivery key (`keys/`), the register
    /// (`register.sqlite`).
    pub data_dir: PathBuf,
    /// The KEK's file (64 hex digits, mode 0600); else `KESSAI_BANK_KEK`.
    #[serde(default)]
    pub kek_file: Option<PathBuf>,
    pub tls: ServiceTls,
    /// The client certificates (acting as the center) that may read the
    /// pool account's statements and have tokens made of its deposits.
    pub centers: Vec<String>,
    pub tokens: TokenSettings,
    #[serde(default = "bank_limits")]
    pub limits: Limits,
}

/// The credit service provider whose key versions seal this bank's tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// The provider's id, as tokens name it (its `provider_id`).
    pub provider_id: String,
    /// The provider's service, `https://…`; without it the bank seals with
    /// the versions it holds and fetches none.
    #[serde(default)]
    pub provider_url: Option<String>,
    /// The CA the provider's certificate chains to; default `tls.ca_dir`'s.
    #[serde(default)]
    pub provider_ca: Option<PathBuf>,
    /// The bank's client certificate (acting as the bank) in `tls.ca_dir`,
    /// to fetch the provider's key versions.
    #[serde(default = "bank_name")]
    pub client_name: String,
    /// How long a token pays after its deposit (seconds), unless its key
    /// version stops redeeming sooner.
    #[serde(default = "lifetime")]
    pub lifetime_s: u64,
    /// How often the key versions are fetched (seconds).
    #[serde(default = "fetch_every")]
    pub fetch_every_s: u64,
}

fn jpy() -> Currency {
    Currency::JPY
}

fn bank_name() -> String {
    "bank".into()
}

fn lifetime() -> u64 {
    180 * 86_400
}

fn fetch_every() -> u64 {
    600
}

fn bank_limits() -> Limits {
    Limits { rate_per_client_per_s: CLIENT_RATE_PER_S, rate_burst: 2 * CLIENT_RATE_PER_S, ..Limits::default() }
}

/// Text a token may carry in one of its fields.
fn token_field(name: &str, value: &str) -> anyhow::Result<()> {
    ensure!(
        !value.trim().is_empty()
            && value.len() <= kessai_core::token::MAX_FIELD_BYTES
            && !value.chars().any(char::is_control)
            && !kessai_core::token::holds_a_card_number(value),
        "{name}: 1 to 40 bytes of text, no card number"
    );
    Ok(())
}

impl kessai_http::party::ServiceConfig for BankConfig {
    const KEK_ENV: &'static str = KEK_ENV;

    fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn kek_file(&self) -> Option<&Path> {
        self.kek_file.as_deref()
    }

    fn tls(&self) -> &ServiceTls {
        &self.tls
    }

    fn check(&self) -> anyhow::Result<()> {
        token_field("bank_id", &self.bank_id)?;
        token_field("tokens.provider_id", &self.tokens.provider_id)?;
        ensure!(
            (1..=34).contains(&self.pool_account.len()) && self.pool_account.bytes().all(|b| b.is_ascii_alphanumeric()),
            "pool_account: 1 to 34 letters and digits (an IBAN's length at most)"
        );
        ensure!(!self.centers.is_empty(), "centers: at least one");
        ensure!((1..=10 * 366 * 86_400).contains(&self.tokens.lifetime_s), "tokens.lifetime_s: 1 s to ten years");
        ensure!(self.tokens.fetch_every_s >= 1, "tokens.fetch_every_s: at least 1");
        if let Some(url) = &self.tokens.provider_url {
            ensure!(url.starts_with("https://") && url.len() <= 2048, "tokens.provider_url: an https:// URL");
        }
        Ok(())
    }
}
