//! The center's configuration: TOML with environment overrides
//! (`KESSAI_CENTER_*`). Paths are relative to `data_dir`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use kessai_core::ids::PartyId;
use serde::Deserialize;

/// Largest configuration file read.
const MAX_CONFIG_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CenterConfig {
    /// The center's party id: `iss` of its messages, CN of its client certificate.
    pub party_id: PartyId,
    pub listen: SocketAddr,
    /// How parties reach it, e.g. `https://127.0.0.1:8440`.
    pub public_url: String,
    pub data_dir: PathBuf,
    /// `sqlite:PATH` or `postgres://…`; default SQLite `data_dir/center.sqlite`.
    #[serde(default)]
    pub database_url: Option<String>,
    /// The ledger's database: a SQLite path, or `postgres://…`; default
    /// SQLite `data_dir/ledger.sqlite`.
    #[serde(default)]
    pub ledger_url: Option<String>,
    /// The center's Ed25519 signing key (PKCS#8 PEM, mode 0600), sealed
    /// under a passphrase (`KESSAI_CENTER_KEY_PASSPHRASE`, else
    /// `signing_key_passphrase_file`, else a prompt) or plain.
    #[serde(default = "default_signing_key")]
    pub signing_key: PathBuf,
    /// A file (mode 0600) whose first line is the signing key's passphrase.
    #[serde(default)]
    pub signing_key_passphrase_file: Option<PathBuf>,
    /// Public JWK files (`kessai keys generate` prints one) published in
    /// the center's JWKS beside the signing key's, with their validity:
    /// the next key before it signs, and the previous one while what it
    /// signed (undelivered completions) must still verify. README,
    /// "Rotating the center's signing key".
    #[serde(default)]
    pub published_keys: Vec<PathBuf>,
    /// Issuer master keys, sealed under the KEK.
    #[serde(default = "default_master_keys")]
    pub master_keys: PathBuf,
    /// A file holding the KEK in hex (mode 0600); `KESSAI_CENTER_KEK` wins.
    /// No default, and never inside `data_dir`: the KEK does not sit beside
    /// the keys it seals.
    #[serde(default)]
    pub kek_file: Option<PathBuf>,
    /// The largest single payment accepted, in minor units.
    #[serde(default = "default_max_amount")]
    pub max_amount_minor: u64,
    /// How often undelivered completions are retried.
    #[serde(default = "default_delivery_interval_ms")]
    pub delivery_interval_ms: u64,
    pub tls: TlsSection,
    #[serde(default)]
    pub limits: kessai_http::Limits,
    /// Virtual prepaid cards: value lifetime, limits, where money is sent.
    #[serde(default)]
    pub prepaid: crate::prepaid::PrepaidPolicy,
    /// Clearing: fees, and the account payouts are paid from.
    #[serde(default)]
    pub clearing: crate::clearing::ClearingPolicy,
    /// Bank deposit tokens (#21): their lifetime, the pool's bank and the
    /// credit service provider. Tokens are issued only once a key version
    /// is in `data_dir/token-keys` (`kessai center token-key`).
    #[serde(default)]
    pub tokens: crate::tokens::TokenPolicy,
    /// Issuer master keys in a PKCS#11 token instead of `master_keys`.
    #[serde(default)]
    pub hsm: Option<crate::hsm::HsmConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// A kessai CA directory (`kessai pki`).
    pub ca_dir: PathBuf,
    /// The center's server certificate name in `ca_dir`.
    pub server_name: String,
    /// The center's client certificate name, for mutual TLS to stores.
    pub client_name: String,
    /// The client certificate name that may use the admin API.
    #[serde(default = "default_admin")]
    pub admin_name: String,
    /// Further operators' client certificate names: each may use the admin
    /// API as the admin does, under its own name, so that work needing two
    /// people (cash above the dual-control limit) is done by two
    /// certificates.
    #[serde(default)]
    pub operator_names: Vec<String>,
}

fn default_signing_key() -> PathBuf {
    "center.key".into()
}
fn default_master_keys() -> PathBuf {
    "issuer-master-keys.sealed".into()
}
fn default_max_amount() -> u64 {
    1_000_000
}
fn default_delivery_interval_ms() -> u64 {
    1_000
}
fn default_admin() -> String {
    "admin".into()
}

impl CenterConfig {
    pub fn from_toml(text: &str) -> anyhow::Result<CenterConfig> {
        Ok(toml::from_str(text)?)
    }

    pub fn load(path: &Path) -> anyhow::Result<CenterConfig> {
        let size = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
        ensure!(size <= MAX_CONFIG_BYTES, "{} is larger than {MAX_CONFIG_BYTES} bytes", path.display());
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut config = CenterConfig::from_toml(&text).with_context(|| format!("in {}", path.display()))?;
        config.apply_env(|name| std::env::var(name).ok())?;
        config.check()?;
        Ok(config)
    }

    /// `KESSAI_CENTER_{LISTEN, PUBLIC_URL, DATA_DIR, DATABASE_URL, LEDGER_URL}`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        if let Some(v) = var("KESSAI_CENTER_LISTEN") {
            self.listen = v.parse().context("KESSAI_CENTER_LISTEN")?;
        }
        if let Some(v) = var("KESSAI_CENTER_PUBLIC_URL") {
            self.public_url = v;
        }
        if let Some(v) = var("KESSAI_CENTER_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = var("KESSAI_CENTER_DATABASE_URL") {
            self.database_url = Some(v);
        }
        if let Some(v) = var("KESSAI_CENTER_LEDGER_URL") {
            self.ledger_url = Some(v);
        }
        Ok(())
    }

    pub fn check(&self) -> anyhow::Result<()> {
        ensure!(self.public_url.starts_with("https://"), "public_url must be https://");
        ensure!(self.max_amount_minor > 0, "max_amount_minor must be positive");
        ensure!(self.delivery_interval_ms >= 10, "delivery_interval_ms must be at least 10");
        self.limits.check().map_err(anyhow::Error::msg)?;
        if let Some(kek) = &self.kek_file {
            ensure!(
                !self.inside_data_dir(kek),
                "kek_file {} is inside the data directory {}: the KEK must not sit beside the keys it seals; \
                 keep it elsewhere (e.g. /etc/kessai/center-kek.hex, mode 0600) or give it in KESSAI_CENTER_KEK",
                self.resolve(kek).display(),
                self.data_dir.display()
            );
        }
        Ok(())
    }

    /// Whether `p` (as `resolve` reads it) lies inside `data_dir`, by its
    /// path and, where both exist, by where they really are.
    fn inside_data_dir(&self, p: &Path) -> bool {
        let path = self.resolve(p);
        if path.starts_with(&self.data_dir) {
            return true;
        }
        let real_dir = self.data_dir.canonicalize();
        let real_parent = path.parent().map(Path::canonicalize);
        matches!((real_dir, real_parent), (Ok(dir), Some(Ok(parent))) if parent.starts_with(&dir))
    }

    /// Whether the center signs with a key in its PKCS#11 token
    /// (`[hsm] signing_key_label`) rather than the `signing_key` file.
    pub fn signs_in_token(&self) -> bool {
        self.hsm.as_ref().is_some_and(|h| h.signing_key_label.is_some())
    }

    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() { p.to_owned() } else { self.data_dir.join(p) }
    }

    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| format!("sqlite:{}", self.data_dir.join("center.sqlite").display()))
    }
}
