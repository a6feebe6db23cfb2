//! `kessai bank`: the bank service provider (seed 002, #21) as its own
//! service (`kessai_bsp`): the pool account, the deposits booked to it and
//! its statements, the provider's token key versions delivered to it, and
//! the tokens it makes of deposits. `kessai bank statement` writes the
//! statement files a real bank sends the center about its pool or postal
//! account (ISO 20022 camt.053 or camt.054, or a Zengin transfer notice),
//! for tests and operators without a bank service.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use kessai_bank::camt::{DraftEntry, EntryKind};
use kessai_bank::{Date, rf};
use kessai_core::time::{Clock as _, SystemClock};
use kessai_core::{Currency, Money};
use kessai_http::party::ServiceConfig as _;

#[derive(Subcommand, Debug)]
pub enum BankCommand {
    /// Write a statement with credits, booked today (UTC).
    Statement {
        #[arg(long, value_enum, default_value = "camt053")]
        format: Format,
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
        /// The statement's id (default: from the time).
        #[arg(long)]
        id: Option<String>,
        /// A credit: AMOUNT (minor units, JPY) and what the payer quoted,
        /// `AMOUNT:REFERENCE` or `AMOUNT:` for none; repeat for more.
        #[arg(long = "credit", value_name = "AMOUNT:REFERENCE", required = true)]
        credits: Vec<String>,
    },
    #[command(flatten)]
    Service(ServiceCommand),
}

/// The bank service provider's commands (they need `--config`).
#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// Make the data directory, the KEK file the configuration names, and
    /// the delivery key, if they are not there; print the delivery key's
    /// public half (the JWK the provider's configuration names as this
    /// bank's `delivery_key`).
    Init,
    /// Fetch the key versions the provider delivers now, keep the new ones,
    /// and list those held. A serving bank fetches them itself.
    Keys,
    /// Book a deposit to the pool account (this simulated bank's teller).
    Deposit {
        /// Minor units of the pool account's currency.
        #[arg(long)]
        amount: u64,
        /// The creditor reference (RF…) the payer quoted.
        #[arg(long)]
        reference: Option<String>,
        #[arg(long, default_value = "KESSAI MEMBER")]
        remitter: String,
    },
    /// Serve the bank's API over mutual TLS.
    Serve,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum Format {
    Camt053,
    Camt054,
    Zengin,
}

fn credit(text: &str) -> anyhow::Result<(Money, Option<rf::Reference>)> {
    let (amount, reference) = text.split_once(':').unwrap_or((text, ""));
    let amount: u64 = amount.parse().with_context(|| format!("the amount of {text:?}"))?;
    let reference = match reference.trim() {
        "" => None,
        r => Some(rf::Reference::parse(r).map_err(|e| anyhow::anyhow!("the reference {r:?}: {e}"))?),
    };
    Ok((Money::new(amount, Currency::JPY)?, reference))
}

pub fn run(config: Option<&std::path::Path>, command: BankCommand) -> anyhow::Result<()> {
    let (format, out, id, credits) = match command {
        BankCommand::Statement { format, out, id, credits } => (format, out, id, credits),
        BankCommand::Service(command) => {
            let path = config.context("--config: the bank's configuration")?;
            return service(&kessai_bsp::BankConfig::load(path)?, command);
        }
    };
    let now = SystemClock.now();
    let today = Date::of(now);
    let id = id.unwrap_or_else(|| format!("SIM-{}", now.unix_s()));
    let credits = credits.iter().map(|c| credit(c)).collect::<anyhow::Result<Vec<_>>>()?;
    let bytes = match format {
        Format::Camt053 | Format::Camt054 => {
            let mut entries = Vec::new();
            for (n, (amount, reference)) in credits.iter().enumerate() {
                let mut entry = DraftEntry::new(EntryKind::Credit, *amount, today, &format!("{id}-{}", n + 1))?;
                if let Some(r) = reference {
                    entry = entry.with_reference(r.clone());
                }
                entries.push(entry.with_remitter("KESSAI MEMBER")?);
            }
            let account = "JP00KESSAIPOOL0001";
            if matches!(format, Format::Camt053) {
                let mut draft =
                    kessai_bank::camt053::StatementDraft::new(&id, account, now, Money::zero(Currency::JPY))?;
                for e in entries {
                    draft.push(e)?;
                }
                kessai_bank::camt053::write(&draft).into_bytes()
            } else {
                let mut draft = kessai_bank::camt054::NotificationDraft::new(&id, account, now)?;
                for e in entries {
                    draft.push(e)?;
                }
                kessai_bank::camt054::write(&draft).into_bytes()
            }
        }
        Format::Zengin => {
            use kessai_bank::zengin::{NoticeDraft, NoticeEntry, ZenginAccount};
            let account = ZenginAccount::simulated_postal();
            let mut entries = Vec::new();
            for (n, (amount, reference)) in credits.into_iter().enumerate() {
                let Ok(inquiry_number) = u32::try_from(n + 1) else { bail!("too many credits") };
                entries.push(NoticeEntry {
                    inquiry_number,
                    booked_on: today,
                    amount,
                    remitter_code: None,
                    remitter: "ｹｯｻｲ ｶｲｲﾝ".into(),
                    reference,
                    edi: None,
                    cancellation: false,
                });
            }
            kessai_bank::zengin::write_transfer_notice(&NoticeDraft { account, created_on: today, entries })?
        }
    };
    std::fs::write(&out, bytes).with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {} ({} credits)", out.display(), credits_count(&out)?);
    Ok(())
}

/// The credits the written file holds, read back as the center will.
fn credits_count(path: &std::path::Path) -> anyhow::Result<usize> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(kessai_bank::parse(&bytes)?.credits.len())
}

/// The bank service's commands.
fn service(config: &kessai_bsp::BankConfig, command: ServiceCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let open = || async { kessai_bsp::Bank::open(config, Arc::new(SystemClock)).await };
    match command {
        ServiceCommand::Init => {
            std::fs::create_dir_all(&config.data_dir)
                .with_context(|| format!("creating {}", config.data_dir.display()))?;
            config.init_kek()?;
            let jwk = kessai_bsp::delivery_key_once(&config.data_dir.join(kessai_bsp::KEYS_DIR), &*config.read_kek()?)?;
            println!("{}", serde_json::to_string(&jwk)?);
            Ok(())
        }
        ServiceCommand::Keys => runtime.block_on(async {
            let bank = open().await?;
            let fetched = bank.fetch_keys().await;
            for k in bank.keyring().keys() {
                println!("{}", k.describe());
            }
            bank.register().close().await;
            println!("new versions: {:?}", fetched?);
            anyhow::Ok(())
        }),
        ServiceCommand::Deposit { amount, reference, remitter } => runtime.block_on(async {
            let bank = open().await?;
            let reference = reference
                .map(|r| rf::Reference::parse(&r).map_err(|e| anyhow::anyhow!("the reference {r:?}: {e}")))
                .transpose()?;
            let entry = bank.deposit(Money::new(amount, bank.currency)?, reference.as_ref(), &remitter).await;
            bank.register().close().await;
            println!("booked deposit {}/D{}", bank.pool_account, entry?);
            anyhow::Ok(())
        }),
        ServiceCommand::Serve => {
            kessai_http::init_json_logs("bank");
            runtime.block_on(async move {
                let bank = Arc::new(open().await?);
                let listener = tokio::net::TcpListener::bind(config.listen)
                    .await
                    .with_context(|| format!("listening on {}", config.listen))?;
                eprintln!("bank {} (pool account {}) listening on {}", bank.bank_id, bank.pool_account, config.listen);
                let fetching =
                    tokio::spawn(kessai_bsp::fetch_keys_every(Arc::clone(&bank), config.tokens.fetch_every_s));
                let served = kessai_bsp::api::serve_on(config, bank, listener, crate::store::shutdown_signal()).await;
                fetching.abort();
                served
            })
        }
    }
}
