//! The wallet's configuration (TOML), checked before anything starts.
//!
//! ```toml
//! data_dir = "/home/me/.kessai/wallet"   # SQLite file; relative paths below are relative to it
//! listen = "127.0.0.1:8480"              # the web UI; loopback only
//! ca_file = "/home/me/.kessai/pki/ca.crt" # the kessai CA the center's certificate chains to
//!
//! [center]
//! url = "https://127.0.0.1:8440"
//! party_id = "center"
//!
//! [reader]
//! kind = "in-process"                    # or "vpcd" (listen = "127.0.0.1:35963") or "pcsc" (name = "…")
//! image = "card.img"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use kessai_core::ids::PartyId;
use kessai_core::profile::Profile;
use serde::Deserialize;

use crate::limits::MAX_CONFIG_BYTES;

/// Everything the wallet needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletConfig {
    /// Directory of the local database (`wallet.sqlite`).
    pub data_dir: PathBuf,
    /// The web UI's address; must be a loopback address.
    pub listen: SocketAddr,
    /// The CA certificate (PEM) the center's and stores' certificates chain to.
    pub ca_file: PathBuf,
    pub center: CenterSettings,
    pub reader: ReaderConfig,
    /// How purchases run (PROTOCOL §5.1): `offer` (the center signs an
    /// offer, SIG2; 3 round trips, the default), `confirmed` or `direct`
    /// (the second embodiment: the wallet reads and shows the balance
    /// itself; 2 round trips, no SIG2). The store's policy at the center
    /// may refuse a profile.
    #[serde(default = "offer_profile")]
    pub profile: Profile,
}

fn offer_profile() -> Profile {
    Profile::Offer
}

/// The settlement center.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CenterSettings {
    /// Base URL, `https://…` without a trailing slash.
    pub url: String,
    /// The center's party id: the owner of every key in its JWKS, `iss` of SIG2 and SIG3.
    pub party_id: PartyId,
}

/// Which card reader to use.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ReaderConfig {
    /// An emulated card in this process, from its image file.
    InProcess { image: PathBuf },
    /// Listen like vpcd; the card process (`kessai card serve --vpcd`) connects.
    Vpcd { listen: SocketAddr },
    /// A PC/SC reader whose name contains `name` (feature `pcsc`).
    Pcsc { name: String },
}

impl WalletConfig {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> anyhow::Result<WalletConfig> {
        let size = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
        ensure!(size <= MAX_CONFIG_BYTES, "{} is larger than {MAX_CONFIG_BYTES} bytes", path.display());
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config = WalletConfig::from_toml(&text).with_context(|| format!("in {}", path.display()))?;
        config.check()?;
        Ok(config)
    }

    /// Parses TOML (without checks).
    pub fn from_toml(text: &str) -> anyhow::Result<WalletConfig> {
        Ok(toml::from_str(text)?)
    }

    /// A wallet for `kessai up`: UI on 127.0.0.1:8480, the card image in
    /// process, the center called "center".
    pub fn demo(data_dir: PathBuf, center_url: &str, ca_file: PathBuf, card_image: PathBuf) -> anyhow::Result<Self> {
        let config = WalletConfig {
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 8480)),
            ca_file,
            center: CenterSettings { url: center_url.to_owned(), party_id: PartyId::parse("center")? },
            reader: ReaderConfig::InProcess { image: card_image },
            profile: Profile::Offer,
        };
        config.check()?;
        Ok(config)
    }

    /// Refuses a configuration that cannot work or would be unsafe.
    pub fn check(&self) -> anyhow::Result<()> {
        ensure!(self.listen.ip().is_loopback(), "listen must be a loopback address (127.0.0.1 or ::1)");
        let url = &self.center.url;
        ensure!(url.starts_with("https://"), "center.url must be an https:// URL");
        ensure!(!url.ends_with('/') && !url.contains(['"', '<', '>', ' ']), "center.url {url:?} must not end in /");
        if let ReaderConfig::Vpcd { listen } = &self.reader {
            ensure!(listen.ip().is_loopback(), "reader.listen must be a loopback address");
        }
        if let ReaderConfig::Pcsc { name } = &self.reader {
            ensure!(!name.is_empty(), "reader.name must not be empty");
        }
        Ok(())
    }

    /// A path from the configuration, relative to `data_dir` unless absolute.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() { path.to_owned() } else { self.data_dir.join(path) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
data_dir = "/tmp/w"
listen = "127.0.0.1:8480"
ca_file = "/tmp/ca.crt"
[center]
url = "https://127.0.0.1:8440"
party_id = "center"
[reader]
kind = "vpcd"
listen = "127.0.0.1:35963"
"#;

    #[test]
    fn parses_the_documented_format() {
        let c = WalletConfig::from_toml(SAMPLE).unwrap();
        assert!(c.check().is_ok());
        assert_eq!(c.reader, ReaderConfig::Vpcd { listen: "127.0.0.1:35963".parse().unwrap() });
    }

    #[test]
    fn refuses_a_ui_reachable_from_the_network_and_plain_http_to_the_center() {
        let c = WalletConfig::from_toml(&SAMPLE.replace("127.0.0.1:8480", "0.0.0.0:8480")).unwrap();
        assert!(c.check().is_err());
        let c = WalletConfig::from_toml(&SAMPLE.replace("https://127", "http://127")).unwrap();
        assert!(c.check().is_err());
    }
}
