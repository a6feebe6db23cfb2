//! `kessai csp`'s configuration: a TOML file, checked before anything
//! starts. Relative paths are relative to `data_dir`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use kessai_core::jwe::EncryptionPublicKey;
use kessai_core::jwe::X25519Jwk;
use kessai_http::Limits;
use serde::Deserialize;

use crate::Client;

/// How far a card's REDEEM time may be ahead of the provider's clock.
pub const CLOCK_SKEW_S: u64 = 300;
/// The environment variable that may hold the KEK (64 hex digits).
pub const KEK_ENV: &str = "KESSAI_CSP_KEK";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The provider's id, as tokens name it (`tokens.provider_id` at the
    /// center).
    pub provider_id: String,
    /// Address to listen on (HTTPS, mutual TLS).
    pub listen: SocketAddr,
    /// Key versions (`keys/`), the register (`register.sqlite`).
    pub data_dir: PathBuf,
    /// The KEK's file (64 hex digits, mode 0600); else `KESSAI_CSP_KEK`.
    #[serde(default)]
    pub kek_file: Option<PathBuf>,
    pub tls: kessai_http::party::ServiceTls,
    /// Who may call: each a client certificate's name; a bank's (acting
    /// as the bank) with its key, to receive token keys; a center's
    /// (acting as the center), to redeem and pay back tokens.
    pub clients: Vec<ClientSettings>,
    /// Its clients are a few servers, each asking for all of its
    /// cardholders: a client's rate is [`CLIENT_RATE_PER_S`] by default,
    /// not a browser's.
    #[serde(default = "provider_limits")]
    pub limits: Limits,
}

/// Requests a second one client (a center) may make by default.
pub const CLIENT_RATE_PER_S: u32 = 5_000;

fn provider_limits() -> Limits {
    Limits { rate_per_client_per_s: CLIENT_RATE_PER_S, rate_burst: 2 * CLIENT_RATE_PER_S, ..Limits::default() }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    /// Its client certificate's name.
    pub name: String,
    /// The bank's X25519 key (a JWK, `kessai bank --config bank.toml init`)
    /// token keys are sealed to.
    #[serde(default)]
    pub delivery_key: Option<X25519Jwk>,
}

impl kessai_http::party::ServiceConfig for ProviderConfig {
    const KEK_ENV: &'static str = KEK_ENV;

    fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn kek_file(&self) -> Option<&Path> {
        self.kek_file.as_deref()
    }

    fn tls(&self) -> &kessai_http::party::ServiceTls {
        &self.tls
    }

    fn check(&self) -> anyhow::Result<()> {
        let id = &self.provider_id;
        ensure!(
            !id.trim().is_empty()
                && id.len() <= kessai_core::token::MAX_FIELD_BYTES
                && !id.chars().any(char::is_control)
                && !kessai_core::token::holds_a_card_number(id),
            "provider_id: 1 to 40 bytes of text, no card number"
        );
        ensure!(!self.clients.is_empty(), "clients: at least one");
        self.clients()?;
        Ok(())
    }
}

impl ProviderConfig {
    /// The clients, their delivery keys checked; a name twice is refused.
    pub fn clients(&self) -> anyhow::Result<Vec<Client>> {
        let mut out: Vec<Client> = Vec::new();
        for c in &self.clients {
            ensure!(
                !c.name.is_empty() && !out.iter().any(|o| o.name == c.name),
                "clients: {:?} twice or empty",
                c.name
            );
            let delivery_key = c
                .delivery_key
                .as_ref()
                .map(EncryptionPublicKey::from_jwk)
                .transpose()
                .with_context(|| format!("clients: {}'s delivery_key", c.name))?;
            out.push(Client { name: c.name.clone(), delivery_key });
        }
        Ok(out)
    }
}
