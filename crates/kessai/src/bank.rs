//! `kessai bank`: a simulated bank for tests and `kessai up`. It writes the
//! statements a real bank sends the center about its pool or postal
//! account (ISO 20022 camt.053 or camt.054, or a Zengin transfer notice),
//! with the credits members' transfers made.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use kessai_bank::camt::{DraftEntry, EntryKind};
use kessai_bank::{Date, rf};
use kessai_core::time::{Clock as _, SystemClock};
use kessai_core::{Currency, Money};

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

pub fn run(command: BankCommand) -> anyhow::Result<()> {
    let BankCommand::Statement { format, out, id, credits } = command;
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
