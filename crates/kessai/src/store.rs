//! `kessai store`: the mall's web shop, until Ctrl-C or SIGTERM; and
//! `kessai store refund`: the mall's signed refund of a purchase.

use std::path::Path;

use anyhow::Context;

/// What `kessai store` does besides serving.
#[derive(clap::Subcommand, Debug)]
pub enum StoreAction {
    /// Refund all or part of a completed purchase: the center reverses the
    /// member store's payable and credits the buyer's card when it is next
    /// presented. Sending the same refund id again never refunds twice.
    Refund {
        /// The settlement (`stl_…`) of the purchase.
        #[arg(long)]
        settlement: String,
        /// Amount in minor units (JPY: yen).
        #[arg(long)]
        amount: u64,
        /// Shown to the cardholder and kept by the center.
        #[arg(long)]
        reason: String,
        /// The store's id for this refund (default: derived from the
        /// settlement and amount, so a retry is the same refund).
        #[arg(long)]
        refund_id: Option<String>,
    },
    /// Claim payment (代金請求) for a member store's orders paid up to the
    /// cut-off: signed with the mall's key; the center checks each
    /// settlement against its books and answers a signed statement (or
    /// names the settlements that differ).
    Claim {
        /// The member store whose orders are claimed.
        #[arg(long)]
        member: String,
        /// The mall's id for this claim (default: derived from the member
        /// and the cut-off, so a retry is the same claim).
        #[arg(long)]
        claim_id: Option<String>,
        /// `now` or unix seconds.
        #[arg(long, default_value = "now")]
        cutoff: String,
        /// `stl_…=AMOUNT`: claim a settlement at what is left of it (after
        /// a refund) rather than its order's total.
        #[arg(long = "amount", value_name = "SETTLEMENT=AMOUNT")]
        amounts: Vec<String>,
        /// A settlement to leave out.
        #[arg(long)]
        exclude: Vec<String>,
    },
}

pub fn act(config_path: &Path, action: StoreAction) -> anyhow::Result<()> {
    let config =
        kessai_store::StoreConfig::load(config_path).with_context(|| format!("loading {}", config_path.display()))?;
    match action {
        StoreAction::Refund { settlement, amount, reason, refund_id } => {
            let refund_id = refund_id.unwrap_or_else(|| format!("rf-{settlement}-{amount}"));
            let order = kessai_store::refund::RefundOrder {
                refund_id: kessai_core::ids::RefundId::parse(&refund_id).context("--refund-id")?,
                settlement_id: kessai_core::ids::SettlementId::parse(&settlement).context("--settlement")?,
                amount: kessai_core::Money::new(amount, kessai_core::Currency::JPY)?,
                reason: kessai_core::messages::DisplayText::parse(&reason).context("--reason")?,
            };
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let answer = runtime.block_on(kessai_store::refund::request_refund(&config, order))?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
            Ok(())
        }
        StoreAction::Claim { member, claim_id, cutoff, amounts, exclude } => {
            use kessai_core::ids::{ClaimId, SettlementId, StoreId};
            use kessai_core::time::Clock as _;
            let cutoff = match cutoff.as_str() {
                "now" => kessai_core::time::SystemClock.now(),
                s => kessai_core::time::Timestamp::from_unix_s(s.parse().context("--cutoff: `now` or unix seconds")?),
            };
            let claim_id = claim_id.unwrap_or_else(|| format!("claim-{member}-{}", cutoff.unix_s()));
            let amounts = amounts
                .iter()
                .map(|a| {
                    let (s, m) = a.split_once('=').context("--amount: stl_…=AMOUNT")?;
                    Ok((SettlementId::parse(s)?, kessai_core::Money::new(m.parse()?, kessai_core::Currency::JPY)?))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let order = kessai_store::claim::ClaimOrder {
                claim_id: ClaimId::parse(&claim_id).context("--claim-id")?,
                member: StoreId::parse(&member).context("--member")?,
                cutoff,
                amounts,
                exclude: exclude.iter().map(|s| SettlementId::parse(s)).collect::<Result<_, _>>()?,
            };
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            let statement = runtime.block_on(async {
                let db = kessai_store::open_db(&config).await?;
                kessai_store::claim::send_claim(&config, &db, order).await
            })?;
            println!(
                "claim {} for {} accepted: {} settlements, {} less {} in fees (statement verified)",
                statement.claim_id(),
                statement.payee(),
                statement.lines().len(),
                statement.amount(),
                statement.fees()
            );
            Ok(())
        }
    }
}

pub fn run(config_path: &Path) -> anyhow::Result<()> {
    kessai_http::init_json_logs("store");
    let config =
        kessai_store::StoreConfig::load(config_path).with_context(|| format!("loading {}", config_path.display()))?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        eprintln!("store {} listening on {}", config.mall_id, config.listen);
        kessai_store::run(config, shutdown_signal()).await
    })
}

/// Resolves on Ctrl-C or SIGTERM, so the server drains and stops cleanly.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
