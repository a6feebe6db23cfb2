//! `kessai csp`: the credit service provider (seed 002, #21) as its own
//! service: its token key versions, their delivery to the bank, and the
//! register of the tokens it honoured (`kessai_csp`).

use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use kessai_core::time::{Clock as _, SystemClock, Timestamp};
use kessai_csp::ProviderConfig;
use kessai_http::party::ServiceConfig as _;

#[derive(Subcommand, Debug)]
pub enum CspCommand {
    /// Make the KEK file the configuration names, if it is not there.
    Init,
    /// Add a token key version (default: one above the newest): it issues
    /// from FROM_DAYS from now for ISSUE_DAYS, and redeems until
    /// REDEEM_DAYS after it starts issuing. Rotation is a new version
    /// starting to issue before the last stops; banks fetch it.
    KeyNew {
        #[arg(long)]
        version: Option<u8>,
        #[arg(long, default_value_t = 0)]
        from_days: u64,
        #[arg(long, default_value_t = 365)]
        issue_days: u64,
        #[arg(long, default_value_t = 730)]
        redeem_days: u64,
    },
    /// List the key versions held, with their windows.
    Keys,
    /// Take over the token key versions a center made itself before the
    /// provider ran apart (the removed `kessai center token-key`): each
    /// re-sealed under the provider's KEK, so the tokens sealed under them
    /// still redeem. A version the provider holds must be the very key.
    KeyImport {
        /// The center's configuration (its KEK and `token-keys/`).
        #[arg(long, value_name = "FILE")]
        center_config: std::path::PathBuf,
    },
    /// What the register holds for a token.
    Held {
        /// The token id (`tok_…`).
        token: String,
    },
    /// Serve the provider's API over mutual TLS.
    Serve,
}

pub fn run(config_path: &std::path::Path, command: CspCommand) -> anyhow::Result<()> {
    let config = ProviderConfig::load(config_path)?;
    match command {
        CspCommand::Init => {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating {}", config.data_dir.display()))?;
            let made = config.init_kek()?;
            println!("{}", if made { "KEK file made" } else { "KEK in place" });
            Ok(())
        }
        CspCommand::KeyNew { version, from_days, issue_days, redeem_days } => {
            anyhow::ensure!(issue_days > 0 && redeem_days >= issue_days, "redeem days must be at least the issue days");
            let now = SystemClock.now();
            let at = |days: u64| Timestamp::from_unix_s(now.unix_s().saturating_add(days.saturating_mul(86_400)));
            let kek = config.read_kek()?;
            let (from, until, redeem) = (at(from_days), at(from_days + issue_days), at(from_days + redeem_days));
            let dir = config.data_dir.join(kessai_csp::KEYS_DIR);
            let version = kessai_csp::add_key(&dir, &kek, version, (from, until), redeem)?;
            println!(
                "token key version {version}: issues {} .. {}, redeems until {}",
                from.utc(),
                until.utc(),
                redeem.utc()
            );
            Ok(())
        }
        CspCommand::Keys => {
            let kek = config.read_kek()?;
            let ring = kessai_csp::read_keys(&config.data_dir.join(kessai_csp::KEYS_DIR), &kek)?;
            for k in ring.keys() {
                println!("{}", k.describe());
            }
            Ok(())
        }
        CspCommand::KeyImport { center_config } => {
            let center = kessai_center::config::CenterConfig::load(&center_config)
                .with_context(|| format!("loading {}", center_config.display()))?;
            let imported = import_center_keys(&center, &config)?;
            println!("versions taken over: {imported:?}");
            Ok(())
        }
        CspCommand::Held { token } => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let path = config.data_dir.join(kessai_csp::REGISTER_FILE);
                let register = kessai_csp::Register::open(&path).await?;
                match register.held(&token).await? {
                    Some(e) => println!(
                        "{}\t{:?}\t{}\tv{}\t{}\tby {}\tat {}",
                        e.token_id,
                        e.held_for,
                        e.amount,
                        e.key_version,
                        e.transaction.as_deref().unwrap_or("-"),
                        e.client,
                        e.entered_at.utc()
                    ),
                    None => println!("{token}: not in the register"),
                }
                register.close().await;
                anyhow::Ok(())
            })
        }
        CspCommand::Serve => {
            kessai_http::init_json_logs("csp");
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(async move {
                let provider = Arc::new(kessai_csp::Provider::open(&config, Arc::new(SystemClock)).await?);
                let listener = tokio::net::TcpListener::bind(config.listen)
                    .await
                    .with_context(|| format!("listening on {}", config.listen))?;
                eprintln!("credit service provider {} listening on {}", config.provider_id, config.listen);
                kessai_csp::api::serve_on(&config, provider, listener, crate::store::shutdown_signal()).await
            })
        }
    }
}

/// Where a center kept token key versions before the bank and the provider
/// ran as their own services (under its data directory, sealed under its
/// KEK).
const CENTER_TOKEN_KEYS_DIR: &str = "token-keys";

/// Re-seals under the provider's KEK the token key versions `center` holds
/// in `token-keys/` (a center that made its own keys) that the provider
/// does not; a version both hold must be
/// the very key. Answers the versions taken over.
pub fn import_center_keys(
    center: &kessai_center::config::CenterConfig,
    csp: &ProviderConfig,
) -> anyhow::Result<Vec<u8>> {
    let center_kek = kessai_center::app::read_kek(center)?;
    let theirs = kessai_csp::read_keys(&center.data_dir.join(CENTER_TOKEN_KEYS_DIR), center_kek.bytes())?;
    let kek = csp.read_kek()?;
    let dir = csp.data_dir.join(kessai_csp::KEYS_DIR);
    let ours = kessai_csp::read_keys(&dir, &kek)?;
    let mut taken = Vec::new();
    for key in theirs.keys() {
        if let Some(held) = ours.keys().find(|k| k.version == key.version) {
            anyhow::ensure!(held.same_as(key), "version {} is held already as another key", key.version);
            continue;
        }
        kessai_csp::keep_key(&dir, &kek, key)?;
        taken.push(key.version);
    }
    Ok(taken)
}
