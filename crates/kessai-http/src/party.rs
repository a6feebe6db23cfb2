//! What the parties that run as their own services beside the center (the
//! credit service provider, `kessai csp`; the bank, `kessai bank serve`)
//! share: their TLS settings, a KEK of their own, a configuration file
//! read with a bound, and who may call a route.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use kessai_core::random::OsRandom;
use kessai_core::token::{TokenKey, TokenKeyring};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::{ApiError, ErrorCode, Party, PeerIdentity};

/// The largest configuration file read.
const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// A party service's TLS: its server certificate in a `kessai pki` CA
/// directory; client certificates required, chaining to `client_ca`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceTls {
    /// The CA directory (`kessai pki`) holding the service's certificate.
    pub ca_dir: PathBuf,
    /// The server certificate's name in `ca_dir`.
    pub server_name: String,
    /// The CA clients' certificates must chain to; default `ca_dir/ca.crt`.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

impl ServiceTls {
    /// The server's TLS, paths resolved by `resolve`; a client certificate
    /// is required.
    pub fn server_config(&self, resolve: impl Fn(&Path) -> PathBuf) -> anyhow::Result<rustls::ServerConfig> {
        let ca = kessai_tls::CaDir::new(resolve(&self.ca_dir));
        let client_ca = self.client_ca.as_deref().map(&resolve).unwrap_or_else(|| ca.ca_cert());
        kessai_tls::server_config_with(&ca, &self.server_name, kessai_tls::ClientAuth::Required(&client_ca))
            .context("the service's TLS")
    }
}

/// A party service's configuration: a TOML file, checked before anything
/// starts; relative paths are relative to its data directory; a KEK of its
/// own, from the environment or a file.
pub trait ServiceConfig: serde::de::DeserializeOwned {
    /// The environment variable that may hold the KEK (64 hex digits).
    const KEK_ENV: &'static str;

    fn data_dir(&self) -> &Path;
    /// The KEK's file (64 hex digits, mode 0600), if named.
    fn kek_file(&self) -> Option<&Path>;
    fn tls(&self) -> &ServiceTls;
    /// Refuses a configuration the service could not run under.
    fn check(&self) -> anyhow::Result<()>;

    fn from_toml(text: &str) -> anyhow::Result<Self> {
        let config: Self = toml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    /// The file at `path`, refused past 64 KiB.
    fn load(path: &Path) -> anyhow::Result<Self> {
        let size = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
        ensure!(size <= MAX_CONFIG_BYTES, "{} is larger than {MAX_CONFIG_BYTES} bytes", path.display());
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("{}", path.display()))
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() { p.to_owned() } else { self.data_dir().join(p) }
    }

    /// The KEK: [`Self::KEK_ENV`], else the file.
    fn read_kek(&self) -> anyhow::Result<Zeroizing<[u8; 32]>> {
        read_kek(Self::KEK_ENV, self.kek_file().map(|f| self.resolve(f)).as_deref())
    }

    /// The KEK's file, made (mode 0600) if the configuration names one that
    /// is not there. Answers whether it made it.
    fn init_kek(&self) -> anyhow::Result<bool> {
        match self.kek_file() {
            Some(file) => init_kek(&self.resolve(file)),
            None => Ok(false),
        }
    }

    /// The server's TLS: its certificate, client certificates required.
    fn server_tls(&self) -> anyhow::Result<rustls::ServerConfig> {
        self.tls().server_config(|p| self.resolve(p))
    }
}

/// A party's KEK: the environment variable `env` (64 hex digits), else
/// `file` (mode 0600).
fn read_kek(env: &str, file: Option<&Path>) -> anyhow::Result<Zeroizing<[u8; 32]>> {
    let text = match std::env::var(env) {
        Ok(hex) => Zeroizing::new(hex),
        Err(_) => {
            let Some(file) = file else { bail!("no KEK: set kek_file or {env}") };
            let bytes = kessai_tls::read_secret_file(file)?;
            Zeroizing::new(String::from_utf8(bytes.to_vec()).context("the KEK file is not text")?)
        }
    };
    let raw = Zeroizing::new(hex::decode(text.trim()).map_err(|_| anyhow::anyhow!("the KEK: 64 hex digits"))?);
    ensure!(raw.len() == 32, "the KEK: 64 hex digits");
    let mut kek = Zeroizing::new([0u8; 32]);
    kek.copy_from_slice(&raw);
    Ok(kek)
}

/// A new random KEK written to `path` (mode 0600, never over a file there).
/// Answers whether it made it.
fn init_kek(path: &Path) -> anyhow::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut kek = Zeroizing::new([0u8; 32]);
    kessai_core::random::Random::fill_bytes(&mut kessai_core::random::OsRandom, &mut kek[..]);
    kessai_tls::write_new_file(path, Zeroizing::new(hex::encode(*kek)).as_bytes(), true)?;
    Ok(true)
}

/// The caller's name, if its client certificate acts as `party`; else
/// `code` (a certificate of another party) or `client_certificate_required`.
pub fn acting(peer: Option<&PeerIdentity>, party: Party, code: ErrorCode) -> Result<&str, ApiError> {
    match peer {
        None => Err(ApiError::new(ErrorCode::ClientCertificateRequired, "this service answers over mutual TLS only")),
        Some(p) => p.acting_as(party).ok_or_else(|| {
            ApiError::new(code, format!("this client certificate does not act as the {}", party.as_str()))
        }),
    }
}

/// The deposit token key versions sealed in `dir` (`v<N>.sealed`; other
/// files, a delivery key say, are not read), oldest first.
pub fn read_keys(dir: &Path, kek: &[u8; 32]) -> anyhow::Result<TokenKeyring> {
    let mut ring = TokenKeyring::new();
    let mut files = match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.map(|e| e.path())).collect::<Result<Vec<_>, _>>()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ring),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    files.retain(|p| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('v') && n.ends_with(".sealed"))
    });
    files.sort();
    for path in files {
        let bytes = kessai_tls::read_secret_file(&path)?;
        let key = TokenKey::open_at_rest(&bytes, kek).with_context(|| format!("{}", path.display()))?;
        anyhow::ensure!(
            path.file_name().is_some_and(|n| n == format!("v{}.sealed", key.version).as_str()),
            "{} holds version {}",
            path.display(),
            key.version
        );
        ring.add(key)?;
    }
    Ok(ring)
}

/// Writes `key` sealed under `kek` as `dir/v<N>.sealed` (the directory made
/// private if it is not there); a file there already is refused.
pub fn keep_key(dir: &Path, kek: &[u8; 32], key: &TokenKey) -> anyhow::Result<()> {
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700).create(dir)?;
    let path = dir.join(format!("v{}.sealed", key.version));
    kessai_tls::write_new_file(&path, &key.seal_at_rest(kek, &mut OsRandom)?, true)
        .with_context(|| format!("writing {}", path.display()))
}
