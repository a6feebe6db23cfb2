//! `kessai card`: make, inspect and serve emulated cards.

use std::net::ToSocketAddrs;
use std::path::Path;

use anyhow::{Context, bail};
use kessai_card::image::{KeySource, Personalization, create_image_file, public_info};
use kessai_card::protocol::{CardId, Currency, PublicInfo};
use kessai_card::storage::Durability;
use kessai_card::transport::vpcd::serve_vpcd_image;
use kessai_core::random::{OsRandom, Random};
use kessai_scp03::diversify::MasterKeys;
use kessai_scp03::keys::{Aes128Key, KeyVersion, StaticKeys};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// A key file: three AES-128 keys as hex, for either the issuer's master
/// keys or one card's static keys. Created with mode 0600.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyTriple {
    enc: Zeroizing<String>,
    mac: Zeroizing<String>,
    dek: Zeroizing<String>,
}

fn aes_key(name: &str, hex_text: &str) -> anyhow::Result<Aes128Key> {
    let bytes = Zeroizing::new(hex::decode(hex_text).with_context(|| format!("{name}: not hex"))?);
    Aes128Key::from_slice(&bytes).with_context(|| format!("{name}: an AES-128 key is 16 bytes (32 hex digits)"))
}

fn read_triple(path: &Path) -> anyhow::Result<(Aes128Key, Aes128Key, Aes128Key)> {
    let text = Zeroizing::new(std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?);
    let t: KeyTriple = serde_json::from_str(&text).with_context(|| format!("{}: not a key file", path.display()))?;
    Ok((aes_key("enc", &t.enc)?, aes_key("mac", &t.mac)?, aes_key("dek", &t.dek)?))
}

/// `kessai card master-keys --out FILE`: fresh issuer master keys.
pub fn generate_master_keys(out: &Path) -> anyhow::Result<()> {
    let mut bytes = Zeroizing::new([0u8; 48]);
    OsRandom.fill_bytes(&mut bytes[..]);
    let triple = KeyTriple {
        enc: Zeroizing::new(hex::encode(&bytes[..16])),
        mac: Zeroizing::new(hex::encode(&bytes[16..32])),
        dek: Zeroizing::new(hex::encode(&bytes[32..])),
    };
    let text = Zeroizing::new(serde_json::to_string_pretty(&triple)?);
    kessai_tls::write_new_file(out, text.as_bytes(), true).with_context(|| format!("writing {}", out.display()))?;
    println!("wrote issuer master keys to {} (mode 0600)", out.display());
    Ok(())
}

pub struct PersonalizeArgs<'a> {
    pub out: &'a Path,
    pub card_id: &'a str,
    pub currency: &'a str,
    pub max_balance_minor: u64,
    pub key_version: u8,
    pub master_keys: Option<&'a Path>,
    pub static_keys: Option<&'a Path>,
}

/// `kessai card personalize`: a new card image.
pub fn personalize(a: &PersonalizeArgs<'_>) -> anyhow::Result<()> {
    let id = kessai_core::ids::CardId::parse(a.card_id).context("--card-id")?;
    let currency = Currency::new(a.currency).map_err(|e| anyhow::anyhow!("--currency: {e}"))?;
    kessai_core::Currency::parse(a.currency).context("--currency")?;
    let version = KeyVersion::new(a.key_version).context("--key-version must be 1 to 127")?;
    let keys = match (a.master_keys, a.static_keys) {
        (Some(path), None) => {
            let (enc, mac, dek) = read_triple(path)?;
            KeySource::Diversified { master: MasterKeys { enc, mac, dek }, version }
        }
        (None, Some(path)) => {
            let (enc, mac, dek) = read_triple(path)?;
            KeySource::Explicit(StaticKeys { version, enc, mac, dek })
        }
        _ => bail!("give exactly one of --master-keys FILE or --static-keys FILE"),
    };
    let p = Personalization { card_id: CardId(*id.as_bytes()), keys, currency, max_balance_minor: a.max_balance_minor };
    let info = create_image_file(a.out, &p).with_context(|| format!("writing {}", a.out.display()))?;
    println!("personalized {} (mode 0600)", a.out.display());
    print_info(&info);
    Ok(())
}

fn print_info(info: &PublicInfo) {
    println!("  card id        {}", info.card_id);
    println!("  key version    {:#04x}", info.key_version);
    println!("  currency       {}", info.currency.as_str());
    println!("  balance        {} minor units", info.balance_minor);
    println!("  maximum        {} minor units", info.max_balance_minor);
    println!("  status         {:?}", info.status);
    println!("  transactions   {}", info.counter);
}

/// `kessai card info`: the public data of an image, never its keys.
pub fn info(image: &Path) -> anyhow::Result<()> {
    let bytes = Zeroizing::new(std::fs::read(image).with_context(|| format!("reading {}", image.display()))?);
    let info = public_info(&bytes).with_context(|| format!("{}: not a valid card image", image.display()))?;
    println!("{}", image.display());
    print_info(&info);
    Ok(())
}

/// `kessai card serve`: the card as a vpcd client until vpcd hangs up.
pub fn serve(image: &Path, vpcd: &str, no_fsync: bool) -> anyhow::Result<()> {
    let addr = vpcd
        .to_socket_addrs()
        .with_context(|| format!("--vpcd {vpcd}"))?
        .next()
        .with_context(|| format!("--vpcd {vpcd}: no address"))?;
    let durability = if no_fsync { Durability::NoFsync } else { Durability::Fsync };
    eprintln!("card {} connecting to vpcd at {addr}", image.display());
    serve_vpcd_image(image, durability, addr).with_context(|| format!("serving {}", image.display()))?;
    eprintln!("vpcd closed the connection");
    Ok(())
}

/// `kessai bench card`: full secure DEBIT sessions per second.
pub fn bench(sessions: usize) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("kessai-bench-card-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let options = kessai_card::bench::BenchOptions { sessions, dir: dir.clone() };
    let result = kessai_card::bench::run(&options, &mut std::io::stdout());
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    result?;
    Ok(())
}
