//! `kessai center clearing`: pay stores (#19): run a clearing, write its
//! bank file, import what the bank says, list payouts, set fees.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use kessai_center::clearing::FileFormat;
use kessai_center::config::CenterConfig;
use kessai_core::Currency;
use kessai_core::ids::StoreId;
use kessai_core::time::Timestamp;

#[derive(Subcommand, Debug)]
pub enum ClearingCommand {
    /// Pay every store what is open on its payable up to the cutoff: one
    /// payout per store and currency (purchases less refunds less fees).
    /// Running it again pays nothing twice and finishes a run that stopped.
    Run {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// `now`, unix seconds, or a UTC date `YYYY-MM-DD` (its midnight).
        #[arg(long)]
        cutoff: String,
    },
    /// Write the bank file of a run's payouts (the same bytes every time).
    File {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The run's id (`clr_…`, printed by `run`).
        #[arg(long)]
        run: String,
        #[arg(long, default_value = "JPY")]
        currency: String,
        #[arg(long, value_enum, default_value = "zengin")]
        format: Format,
        /// Where to write it (mode 0600).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Import what the bank says of payouts (pain.002, camt.054, a Zengin
    /// result file): settled, or rejected and returned to the store's
    /// payable. Importing a file again changes nothing.
    Import {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        file: PathBuf,
    },
    /// List payouts (of one run, or one store).
    Payouts {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[arg(long)]
        run: Option<String>,
        #[arg(long)]
        store: Option<String>,
    },
    /// List the paybacks of expired deposit tokens (of one run, or one
    /// token): each a line of its run's bank file.
    Paybacks {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[arg(long)]
        run: Option<String>,
        #[arg(long)]
        token: Option<String>,
    },
    /// Say where an expired deposit token is paid back, when its payback
    /// came back or its refund account cannot be paid in the member's
    /// name: the next run pays it there.
    PaybackAccount {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[arg(long)]
        token: String,
        /// `zengin:BBBB-SSS-T-NNNNNNN:HOLDER` or `iban:IBAN[:BIC]:HOLDER`.
        #[arg(long)]
        account: String,
        /// Who corrects it (recorded in the operators' trail).
        #[arg(long)]
        by: String,
        /// Why (recorded with it).
        #[arg(long)]
        reason: String,
    },
    /// How a store is paid: by every run (`scheduled`, the default) or
    /// only for what its accepted payment claims named (`on-claim`).
    Mode {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[arg(long)]
        store: String,
        #[arg(long, value_enum)]
        mode: PayoutMode,
    },
    /// Set a store's fee on each purchase, from its next payout.
    Fee {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        #[arg(long)]
        store: String,
        #[arg(long, default_value = "JPY")]
        currency: String,
        /// Basis points (1/100 %) of each purchase, rounded half up.
        #[arg(long)]
        percent_bp: u32,
        /// A fixed part per purchase, in minor units.
        #[arg(long, default_value_t = 0)]
        fixed_minor: u64,
    },
}

#[derive(Copy, Clone, Debug, clap::ValueEnum)]
pub enum PayoutMode {
    Scheduled,
    OnClaim,
}

#[derive(Copy, Clone, Debug, clap::ValueEnum)]
pub enum Format {
    /// ISO 20022 pain.001.001.09.
    Pain001,
    /// Zengin 総合振込 (120-byte records).
    Zengin,
}

/// Days from 1970-01-01 to a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `now`, unix seconds, or `YYYY-MM-DD` (UTC midnight).
fn cutoff(text: &str, now: Timestamp) -> anyhow::Result<Timestamp> {
    if text == "now" {
        return Ok(now);
    }
    if let Ok(s) = text.parse::<u64>() {
        return Ok(Timestamp::from_unix_s(s));
    }
    let parts: Vec<&str> = text.split('-').collect();
    let [y, m, d] = parts.as_slice() else {
        anyhow::bail!("--cutoff: `now`, unix seconds or YYYY-MM-DD, not {text:?}")
    };
    let (y, m, d): (i64, i64, i64) = (y.parse()?, m.parse()?, d.parse()?);
    anyhow::ensure!(
        (1..=12).contains(&m) && (1..=31).contains(&d) && (1970..=9999).contains(&y),
        "--cutoff: no such date {text}"
    );
    let (back_y, back_m, back_d, _) = kessai_core::time::civil(days_from_civil(y, m, d) * 86_400);
    anyhow::ensure!((back_y, i64::from(back_m), i64::from(back_d)) == (y, m, d), "--cutoff: no such date {text}");
    Ok(Timestamp::from_unix_s(u64::try_from(days_from_civil(y, m, d) * 86_400)?))
}

pub fn run(runtime: &tokio::runtime::Runtime, command: ClearingCommand) -> anyhow::Result<()> {
    let config_path = match &command {
        ClearingCommand::Run { config, .. }
        | ClearingCommand::File { config, .. }
        | ClearingCommand::Import { config, .. }
        | ClearingCommand::Payouts { config, .. }
        | ClearingCommand::Paybacks { config, .. }
        | ClearingCommand::PaybackAccount { config, .. }
        | ClearingCommand::Mode { config, .. }
        | ClearingCommand::Fee { config, .. } => config.clone(),
    };
    let config = CenterConfig::load(&config_path).with_context(|| format!("loading {}", config_path.display()))?;
    runtime.block_on(async {
        let center = kessai_center::app::open(&config).await?;
        let out = act(&center, command).await;
        center.db.close().await;
        out
    })
}

async fn act(center: &kessai_center::service::Center, command: ClearingCommand) -> anyhow::Result<()> {
    match command {
        ClearingCommand::Run { cutoff: text, .. } => {
            let at = cutoff(&text, center.clock.now())?;
            let r = center.clearing_run(at).await?;
            if r.done_before {
                println!("clearing {} was done before: nothing to do", r.run);
                return Ok(());
            }
            let paid: Vec<String> = r.paid.iter().map(|(c, minor)| format!("{minor} {c}")).collect();
            println!(
                "clearing {}: {} payouts ({}), {} paid before, {} carried (nothing due), {} skipped",
                r.run,
                r.payouts,
                if paid.is_empty() { "nothing".to_owned() } else { paid.join(", ") },
                r.paid_before,
                r.carried,
                r.skipped.len()
            );
            for (store, why) in &r.skipped {
                println!("  skipped {store}: {why}");
            }
            if r.paybacks > 0 || !r.paybacks_skipped.is_empty() {
                let back: Vec<String> = r.paid_back.iter().map(|(c, minor)| format!("{minor} {c}")).collect();
                println!(
                    "  {} expired deposit tokens paid back ({}), {} skipped",
                    r.paybacks,
                    if back.is_empty() { "nothing".to_owned() } else { back.join(", ") },
                    r.paybacks_skipped.len()
                );
            }
            for (token, why) in &r.paybacks_skipped {
                println!("  skipped {token}: {why}");
            }
        }
        ClearingCommand::File { run, currency, format, out, .. } => {
            let currency = Currency::parse(&currency).context("--currency")?;
            let format = match format {
                Format::Pain001 => FileFormat::Pain001,
                Format::Zengin => FileFormat::Zengin,
            };
            let bytes = center.payout_file(&run, currency, format).await?;
            kessai_tls::write_new_file(&out, &bytes, true).with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {} ({} bytes)", out.display(), bytes.len());
        }
        ClearingCommand::Import { file, .. } => {
            let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let r =
                center.import_payout_outcomes(&bytes).await.with_context(|| format!("importing {}", file.display()))?;
            println!(
                "{} ({}): {} settled, {} failed (back on the stores' payables), {} to review, {} pending, {} imported before",
                r.file, r.format, r.settled, r.failed, r.review, r.pending, r.already_imported
            );
        }
        ClearingCommand::Payouts { run, store, .. } => {
            let store = store.map(|s| StoreId::parse(&s)).transpose().context("--store")?;
            let payouts =
                center.db.payouts(run.as_deref(), store.as_ref(), kessai_center::clearing::MAX_PAYOUTS).await?;
            println!(
                "{:<35} {:<16} {:>12} {:>10} {:>10} {:>8}  {:<10} bank ref",
                "payout", "store", "amount", "gross", "fees", "items", "status"
            );
            for p in payouts {
                println!(
                    "{:<35} {:<16} {:>12} {:>10} {:>10} {:>8}  {:<10} {}",
                    p.id,
                    p.store.as_str(),
                    format!("{} {}", p.amount_minor, p.currency),
                    p.gross_minor,
                    p.fees_minor,
                    p.items,
                    p.status,
                    p.bank_ref
                );
            }
        }
        ClearingCommand::Paybacks { run, token, .. } => {
            let token = token.map(|t| kessai_core::token::TokenId::parse(&t)).transpose().context("--token")?;
            let paybacks =
                center.db.paybacks(run.as_deref(), token.as_ref(), kessai_center::clearing::MAX_PAYOUTS).await?;
            println!("{:<36} {:<30} {:>12}  {:<10} bank ref", "payback", "token", "amount", "status");
            for p in paybacks {
                println!(
                    "{:<36} {:<30} {:>12}  {:<10} {}",
                    p.id,
                    p.token_id.to_string(),
                    p.amount.to_string(),
                    p.status,
                    p.bank_ref
                );
            }
        }
        ClearingCommand::PaybackAccount { token, account, by, reason, .. } => {
            let token = kessai_core::token::TokenId::parse(&token).context("--token")?;
            anyhow::ensure!(
                !by.trim().is_empty() && !reason.trim().is_empty(),
                "--by and --reason must say who and why"
            );
            let by = kessai_center::console::Actor { name: by, role: "cli".into() };
            let account = center.correct_payback_account(&token, None, &account, reason.trim(), &by).await?;
            println!("{token} is paid back to {account} by the next clearing run");
        }
        ClearingCommand::Mode { store, mode, .. } => {
            let store = StoreId::parse(&store).context("--store")?;
            let on_claim = matches!(mode, PayoutMode::OnClaim);
            center.db.set_paid_on_claim(&store, on_claim, center.clock.now()).await?;
            println!("{store} is paid {}", if on_claim { "for what its accepted claims name" } else { "by every run" });
        }
        ClearingCommand::Fee { store, currency, percent_bp, fixed_minor, .. } => {
            let store = StoreId::parse(&store).context("--store")?;
            let currency = Currency::parse(&currency).context("--currency")?;
            anyhow::ensure!(percent_bp <= 10_000, "--percent-bp: at most 10000 (100 %)");
            center.db.set_store_fee(&store, currency, percent_bp, fixed_minor, center.clock.now()).await?;
            println!(
                "fee of {store} in {currency}: {percent_bp} bp + {fixed_minor} per purchase, from its next payout"
            );
        }
    }
    Ok(())
}
