//! The store's configuration: a TOML file, then `KESSAI_STORE_*`
//! environment overrides, checked before anything starts.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use kessai_core::ids::{PartyId, StoreId};
use kessai_core::limits::MAX_TOKEN_LIFETIME_S;
use kessai_core::messages::DisplayText;
use kessai_http::Limits;
use serde::Deserialize;

use crate::limits::{
    DEFAULT_BILL_LIFETIME_S, DEFAULT_DOWNLOAD_TTL_S, DEFAULT_JWKS_REFETCH_MIN_INTERVAL_MS, MAX_CONFIG_BYTES,
    MAX_DOWNLOAD_TTL_S, MAX_MEMBERS,
};

/// Everything `kessai store` needs. Relative paths are relative to
/// `data_dir`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The mall's party id: signs every bill and receipt (`iss`, `bill.store`).
    pub mall_id: StoreId,
    /// The mall's name, shown on every page.
    pub mall_name: DisplayText,
    /// Address to listen on (HTTPS).
    pub listen: SocketAddr,
    /// How browsers and the center reach the store, e.g. `https://127.0.0.1:8443`.
    pub public_url: String,
    /// The cardholder's wallet UI, e.g. `http://127.0.0.1:8480`; bills are
    /// posted to `{wallet_url}/pay`.
    pub wallet_url: String,
    /// Directory for the SQLite file, the mall's signing key and content.
    pub data_dir: PathBuf,
    /// `postgres://…` to use PostgreSQL; absent means SQLite in `data_dir`.
    #[serde(default)]
    pub database_url: Option<String>,
    /// The catalog TOML file.
    pub catalog: PathBuf,
    /// The mall's Ed25519 signing key (PKCS#8 PEM, mode 0600); made on
    /// first start. Sealed under a passphrase (`KESSAI_STORE_KEY_PASSPHRASE`,
    /// else `signing_key_passphrase_file`, else a prompt) or plain.
    #[serde(default = "default_key_file")]
    pub signing_key: PathBuf,
    /// A file (mode 0600) whose first line is the signing key's passphrase.
    #[serde(default)]
    pub signing_key_passphrase_file: Option<PathBuf>,
    #[serde(default = "default_bill_lifetime")]
    pub bill_lifetime_s: u64,
    #[serde(default = "default_download_ttl")]
    pub download_ttl_s: u64,
    pub tls: TlsSettings,
    pub center: CenterSettings,
    pub members: Vec<MemberConfig>,
    #[serde(default)]
    pub limits: Limits,
}

/// Certificates from a kessai CA directory (`kessai pki`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The CA directory holding the store's certificates.
    pub ca_dir: PathBuf,
    /// The server certificate's name in `ca_dir`.
    pub server_name: String,
    /// The client certificate's name in `ca_dir`, presented when fetching
    /// the center's JWKS (optional).
    #[serde(default)]
    pub client_name: Option<String>,
    /// CA certificate that client certificates (the center's, members')
    /// and the center's server certificate must chain to; default
    /// `ca_dir/ca.crt`.
    #[serde(default)]
    pub trust: Option<PathBuf>,
}

/// The settlement center the store accepts completions from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CenterSettings {
    /// The center's party id: CN of its client certificate and `iss` of SIG3.
    pub party_id: PartyId,
    /// The center's base URL; its keys are at `{url}/.well-known/jwks.json`.
    pub url: String,
    /// Least time between JWKS fetches caused by an unknown key id.
    #[serde(default = "default_refetch_interval")]
    pub jwks_refetch_min_interval_ms: u64,
}

/// One member store of the mall.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    pub id: StoreId,
    pub name: DisplayText,
    /// SHA-256 (hex) of the member's API token for `/members/{id}/orders`;
    /// without it, only the member's client certificate (CN = id) works.
    #[serde(default)]
    pub api_token_sha256: Option<String>,
}

fn default_key_file() -> PathBuf {
    PathBuf::from("mall.key")
}
fn default_bill_lifetime() -> u64 {
    DEFAULT_BILL_LIFETIME_S
}
fn default_download_ttl() -> u64 {
    DEFAULT_DOWNLOAD_TTL_S
}
fn default_refetch_interval() -> u64 {
    DEFAULT_JWKS_REFETCH_MIN_INTERVAL_MS
}

/// The environment variables that override the file.
pub const ENV_OVERRIDES: &[&str] = &[
    "KESSAI_STORE_LISTEN",
    "KESSAI_STORE_PUBLIC_URL",
    "KESSAI_STORE_WALLET_URL",
    "KESSAI_STORE_DATA_DIR",
    "KESSAI_STORE_DATABASE_URL",
    "KESSAI_STORE_CATALOG",
    "KESSAI_STORE_CENTER_URL",
    "KESSAI_STORE_CENTER_ID",
];

impl StoreConfig {
    /// Reads `path`, applies the `KESSAI_STORE_*` environment, checks it.
    pub fn load(path: &Path) -> anyhow::Result<StoreConfig> {
        let size = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
        ensure!(size <= MAX_CONFIG_BYTES, "{} is larger than {MAX_CONFIG_BYTES} bytes", path.display());
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut config = StoreConfig::from_toml(&text).with_context(|| format!("in {}", path.display()))?;
        config.apply_env(|name| std::env::var(name).ok())?;
        config.check()?;
        Ok(config)
    }

    /// Parses TOML (without environment overrides or checks).
    pub fn from_toml(text: &str) -> anyhow::Result<StoreConfig> {
        Ok(toml::from_str(text)?)
    }

    /// Applies overrides from `lookup` (the environment, in production).
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        for name in ENV_OVERRIDES {
            let Some(value) = lookup(name) else { continue };
            let bad = || format!("{name}={value:?} is invalid");
            match *name {
                "KESSAI_STORE_LISTEN" => self.listen = value.parse().with_context(bad)?,
                "KESSAI_STORE_PUBLIC_URL" => self.public_url = value,
                "KESSAI_STORE_WALLET_URL" => self.wallet_url = value,
                "KESSAI_STORE_DATA_DIR" => self.data_dir = PathBuf::from(value),
                "KESSAI_STORE_DATABASE_URL" => self.database_url = Some(value).filter(|v| !v.is_empty()),
                "KESSAI_STORE_CATALOG" => self.catalog = PathBuf::from(value),
                "KESSAI_STORE_CENTER_URL" => self.center.url = value,
                "KESSAI_STORE_CENTER_ID" => self.center.party_id = PartyId::parse(&value).with_context(bad)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// Refuses a configuration that cannot work.
    pub fn check(&self) -> anyhow::Result<()> {
        ensure!(self.public_url.starts_with("https://"), "public_url must be an https:// URL");
        kessai_core::messages::WebOrigin::of_url(&self.public_url)
            .map_err(|e| anyhow::anyhow!("public_url: its origin goes into every bill: {e}"))?;
        ensure!(
            self.wallet_url.starts_with("http://") || self.wallet_url.starts_with("https://"),
            "wallet_url must be an http(s):// URL"
        );
        ensure!(self.center.url.starts_with("https://"), "center.url must be an https:// URL");
        for url in [&self.public_url, &self.wallet_url, &self.center.url] {
            ensure!(
                !url.ends_with('/') && !url.contains(['"', '<', '>', ' ']),
                "URL {url:?} must not end in / or contain quotes"
            );
        }
        ensure!(
            (60..=MAX_TOKEN_LIFETIME_S).contains(&self.bill_lifetime_s),
            "bill_lifetime_s must be 60 to {MAX_TOKEN_LIFETIME_S}"
        );
        ensure!(
            (60..=MAX_DOWNLOAD_TTL_S).contains(&self.download_ttl_s),
            "download_ttl_s must be 60 to {MAX_DOWNLOAD_TTL_S}"
        );
        if let Some(url) = &self.database_url {
            ensure!(
                url.starts_with("postgres://") || url.starts_with("postgresql://"),
                "database_url must be postgres://…"
            );
        }
        self.limits.check().map_err(anyhow::Error::msg)?;
        self.check_members()
    }

    fn check_members(&self) -> anyhow::Result<()> {
        ensure!(!self.members.is_empty() && self.members.len() <= MAX_MEMBERS, "a mall has 1 to {MAX_MEMBERS} members");
        let mut seen = HashSet::new();
        for m in &self.members {
            ensure!(m.id != self.mall_id, "member {} has the mall's own id", m.id);
            ensure!(seen.insert(&m.id), "member {} appears twice", m.id);
            if let Some(h) = &m.api_token_sha256 {
                let ok = h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit());
                if !ok {
                    bail!("member {}: api_token_sha256 must be 64 hex digits", m.id);
                }
            }
        }
        Ok(())
    }

    /// A path from the configuration, relative to `data_dir` unless absolute.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() { path.to_owned() } else { self.data_dir.join(path) }
    }

    pub fn member(&self, id: &str) -> Option<&MemberConfig> {
        self.members.iter().find(|m| m.id.as_str() == id)
    }

    /// The CA certificate the store trusts for client certificates and
    /// the center's server certificate.
    pub fn trust_anchor(&self) -> PathBuf {
        let dir = self.resolve(&self.tls.ca_dir);
        self.tls.trust.as_ref().map_or_else(|| dir.join("ca.crt"), |p| self.resolve(p))
    }
}
