//! A ready-made mall for `kessai up`: two member stores and a catalog
//! with downloadable content made on the spot.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use kessai_core::ids::{PartyId, StoreId};
use kessai_core::messages::DisplayText;

use crate::config::{CenterSettings, MemberConfig, StoreConfig, TlsSettings};
use crate::limits::{DEFAULT_BILL_LIFETIME_S, DEFAULT_DOWNLOAD_TTL_S, DEFAULT_JWKS_REFETCH_MIN_INTERVAL_MS};

/// Where the demo mall's parts are.
#[derive(Debug, Clone)]
pub struct DemoSettings {
    /// The store's data directory (catalog, content, key, SQLite file).
    pub data_dir: PathBuf,
    /// A kessai CA directory with the store's server certificate.
    pub ca_dir: PathBuf,
    /// The server certificate's name in `ca_dir`.
    pub server_name: String,
    /// The client certificate's name in `ca_dir` (for fetching the
    /// center's JWKS), if any.
    pub client_name: Option<String>,
    pub listen: SocketAddr,
    pub public_url: String,
    pub center_id: String,
    pub center_url: String,
    pub wallet_url: String,
}

const CATALOG: &str = r#"# The demo mall's catalog.
[[products]]
member = "bookshop"
sku = "ebook-kessai-001"
name = "A Short Guide to Stored Value (e-book)"
description = "How money moves from an IC card to a store, in ten pages of plain text."
price_minor = 1200
currency = "JPY"
content = "content/stored-value-guide.txt"

[[products]]
member = "bookshop"
sku = "print-poster-01"
name = "Settlement Flow Poster (printed)"
description = "The twenty steps of a purchase on one A2 poster, shipped in a tube."
price_minor = 2500
currency = "JPY"
physical = true

[[products]]
member = "record-shop"
sku = "audio-chime-01"
name = "Kissa Chime (single)"
description = "One second of a 440 Hz chime, as a WAV file."
price_minor = 300
currency = "JPY"
content = "content/kissa-chime.wav"
"#;

const GUIDE: &str = "A Short Guide to Stored Value\n\n\
1. The card holds the balance and a symmetric key, never a private key.\n\
2. The store signs a bill; the center checks it.\n\
3. The center talks to the card through your wallet over a secure channel.\n\
4. You see the amount and your balance before anything is paid.\n\
5. The card debits itself and says so under its key; the center signs a completion.\n\
6. The store checks the completion and answers with a signed receipt.\n";

/// One second of a 440 Hz tone: 8 kHz, 8-bit mono PCM in a WAV file.
fn chime_wav() -> Vec<u8> {
    const RATE: u32 = 8_000;
    let samples: Vec<u8> = (0..RATE)
        .map(|i| {
            // A triangle wave at 440 Hz, fading out; integer arithmetic only.
            let phase = (i * 440 * 2 * 255 / RATE) % 510;
            let tri = if phase < 255 { phase } else { 510 - phase };
            let fade = RATE - i;
            let centred = (i64::from(tri) - 128) * i64::from(fade) / i64::from(RATE);
            u8::try_from(centred + 128).unwrap_or(128)
        })
        .collect();
    let data_len = u32::try_from(samples.len()).unwrap_or(0);
    let mut wav = Vec::with_capacity(44 + samples.len());
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&RATE.to_le_bytes());
    wav.extend_from_slice(&RATE.to_le_bytes()); // bytes per second
    wav.extend_from_slice(&1u16.to_le_bytes()); // block align
    wav.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    wav.extend_from_slice(&samples);
    wav
}

fn write_if_missing(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    if !path.exists() {
        std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

impl StoreConfig {
    /// The demo mall "kessai-mall" with members "bookshop" and
    /// "record-shop"; writes `catalog.toml` and the content files into
    /// `data_dir` unless they exist.
    pub fn demo(s: DemoSettings) -> anyhow::Result<StoreConfig> {
        let content = s.data_dir.join("content");
        std::fs::create_dir_all(&content).with_context(|| format!("creating {}", content.display()))?;
        write_if_missing(&s.data_dir.join("catalog.toml"), CATALOG.as_bytes())?;
        write_if_missing(&content.join("stored-value-guide.txt"), GUIDE.as_bytes())?;
        write_if_missing(&content.join("kissa-chime.wav"), &chime_wav())?;
        let member = |id: &str, name: &str| -> anyhow::Result<MemberConfig> {
            Ok(MemberConfig { id: StoreId::parse(id)?, name: DisplayText::parse(name)?, api_token_sha256: None })
        };
        let config = StoreConfig {
            mall_id: StoreId::parse("kessai-mall")?,
            mall_name: DisplayText::parse("Kessai Mall")?,
            listen: s.listen,
            public_url: s.public_url,
            wallet_url: s.wallet_url,
            data_dir: s.data_dir,
            database_url: None,
            catalog: PathBuf::from("catalog.toml"),
            signing_key: PathBuf::from("mall.key"),
            signing_key_passphrase_file: None,
            bill_lifetime_s: DEFAULT_BILL_LIFETIME_S,
            download_ttl_s: DEFAULT_DOWNLOAD_TTL_S,
            tls: TlsSettings { ca_dir: s.ca_dir, server_name: s.server_name, client_name: s.client_name, trust: None },
            center: CenterSettings {
                party_id: PartyId::parse(&s.center_id)?,
                url: s.center_url,
                jwks_refetch_min_interval_ms: DEFAULT_JWKS_REFETCH_MIN_INTERVAL_MS,
            },
            members: vec![member("bookshop", "Kessai Books")?, member("record-shop", "Kissa Records")?],
            limits: kessai_http::Limits::default(),
        };
        config.check()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_chime_is_a_wav_of_one_second() {
        let wav = super::chime_wav();
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(&wav[8..16], b"WAVEfmt ");
        assert_eq!(wav.len(), 44 + 8_000);
    }
}
