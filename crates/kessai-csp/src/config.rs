//! `kessai csp`'s configuration: a TOML file, checked before anything
//! starts. Relative paths are relative to `data_dir`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use kessai_core::jwe::EncryptionPublicKey;
use kessai_core::jwe::X25519Jwk;
use kessai_http::Limits;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::Client;

/// How far a card's REDEEM time may be ahead of the provider's clock.
pub const CLOCK_SKEW_S: u64 = 300;
/// The largest configuration file read.
const MAX_CONFIG_BYTES: u64 = 64 * 1024;
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
    pub tls: TlsSettings,
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
pub struct TlsSettings {
    /// The CA directory (`kessai pki`) holding the provider's certificate.
    pub ca_dir: PathBuf,
    /// The server certificate's name in `ca_dir`.
    pub server_name: String,
    /// The CA clients' certificates must chain to; default `ca_dir/ca.crt`.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    /// Its client certificate's name.
    pub name: String,
    /// The bank's X25519 key (a JWK, `kessai center token-delivery-key`)
    /// token keys are sealed to.
    #[serde(default)]
    pub delivery_key: Option<X25519Jwk>,
}

impl ProviderConfig {
    pub fn from_toml(text: &str) -> anyhow::Result<ProviderConfig> {
        let config: ProviderConfig = toml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    pub fn load(path: &Path) -> anyhow::Result<ProviderConfig> {
        let size = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
        ensure!(size <= MAX_CONFIG_BYTES, "{} is larger than {MAX_CONFIG_BYTES} bytes", path.display());
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        ProviderConfig::from_toml(&text).with_context(|| format!("{}", path.display()))
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

    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() { p.to_owned() } else { self.data_dir.join(p) }
    }

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

    /// The KEK: `KESSAI_CSP_KEK`, else the file (mode 0600).
    pub fn read_kek(&self) -> anyhow::Result<Zeroizing<[u8; 32]>> {
        let text = match std::env::var(KEK_ENV) {
            Ok(hex) => Zeroizing::new(hex),
            Err(_) => {
                let Some(file) = &self.kek_file else { bail!("no KEK: set kek_file or {KEK_ENV}") };
                let bytes = kessai_tls::read_secret_file(&self.resolve(file))?;
                Zeroizing::new(String::from_utf8(bytes.to_vec()).context("the KEK file is not text")?)
            }
        };
        let raw = Zeroizing::new(hex::decode(text.trim()).map_err(|_| anyhow::anyhow!("the KEK: 64 hex digits"))?);
        let mut kek = Zeroizing::new([0u8; 32]);
        ensure!(raw.len() == 32, "the KEK: 64 hex digits");
        kek.copy_from_slice(&raw);
        Ok(kek)
    }

    /// The KEK's file, made (mode 0600) if the configuration names one that
    /// is not there. Answers whether it made it.
    pub fn init_kek(&self) -> anyhow::Result<bool> {
        let Some(file) = &self.kek_file else { return Ok(false) };
        let path = self.resolve(file);
        if path.exists() {
            return Ok(false);
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut kek = Zeroizing::new([0u8; 32]);
        kessai_core::random::Random::fill_bytes(&mut kessai_core::random::OsRandom, &mut kek[..]);
        kessai_tls::write_new_file(&path, Zeroizing::new(hex::encode(*kek)).as_bytes(), true)?;
        Ok(true)
    }
}
