//! `kessai wallet`: the cardholder's side, as a local web UI or commands.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use kessai_wallet::{ConsentView, PayOutcome, Progress, WalletConfig};

#[derive(Subcommand, Debug)]
pub enum WalletCommand {
    /// Serve the wallet's web UI on 127.0.0.1 until Ctrl-C.
    Serve,
    /// Pay a bill: BILL_URL answers {"bill", "return_url"} (the store's /orders/{id}/bill).
    Pay {
        bill_url: String,
        /// Agree without asking (scripts); otherwise the consent is asked on the terminal.
        #[arg(long)]
        yes: bool,
    },
    /// The card's id and display balance.
    Balance,
    /// The card's own log (through a secure session), then this wallet's payments.
    History,
    /// Finish interrupted payments: ask the card, through the center, what happened.
    Recover,
}

pub fn run(config_path: &Path, command: WalletCommand) -> anyhow::Result<()> {
    let config = WalletConfig::load(config_path).with_context(|| format!("loading {}", config_path.display()))?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match command {
        WalletCommand::Serve => {
            kessai_http::init_json_logs("wallet");
            eprintln!("wallet on http://{}", config.listen);
            runtime.block_on(kessai_wallet::run(config, crate::store::shutdown_signal()))
        }
        WalletCommand::Pay { bill_url, yes } => runtime.block_on(pay(config, &bill_url, yes)),
        WalletCommand::Balance => {
            let card = runtime.block_on(kessai_wallet::balance(config))?;
            println!("card      {}", card.card_id);
            println!("balance   {}", card.balance);
            println!("maximum   {}", card.max_balance);
            println!("status    {}", if card.blocked { "blocked" } else { "active" });
            Ok(())
        }
        WalletCommand::History => {
            let log = runtime.block_on(kessai_wallet::card_log(config.clone())).context("reading the card's log")?;
            println!("the card's log (read through a secure session, newest first)");
            println!("{:>7} {:<6} {:>14} {:>14}  {:<32}", "counter", "kind", "amount", "balance after", "transaction");
            for e in &log {
                println!(
                    "{:>7} {:<6} {:>14} {:>14}  {:<32}",
                    e.counter, e.kind, e.amount_minor, e.balance_after_minor, e.transaction_id
                );
            }
            println!();
            println!("payments made with this wallet");
            let records = runtime.block_on(kessai_wallet::history(config))?;
            println!("{:<36} {:<20} {:<14} {:>16}  phase", "settlement", "store", "order", "amount");
            for r in records {
                let id = r.settlement_id.map_or_else(|| "-".to_owned(), |s| s.to_string());
                let order: String = r.order_id.chars().take(14).collect();
                println!(
                    "{id:<36} {:<20} {order:<14} {:>16}  {}",
                    r.store_name,
                    r.amount.to_string(),
                    r.phase.as_str()
                );
            }
            Ok(())
        }
        WalletCommand::Recover => {
            let outcomes = runtime.block_on(kessai_wallet::recover(config))?;
            if outcomes.is_empty() {
                println!("nothing to recover");
            }
            for (id, outcome) in outcomes {
                println!("{id}: {outcome:?}");
            }
            Ok(())
        }
    }
}

fn ask(view: &ConsentView) -> bool {
    println!();
    println!("  store      {}", view.store_name);
    println!("  order      {}", view.order_id);
    for line in &view.lines {
        println!(
            "  {:<40} {:>4} × {:>14} = {:>14}",
            line.name,
            line.quantity,
            line.unit_price.to_string(),
            line.amount.to_string()
        );
    }
    println!("  amount     {}", view.amount);
    println!("  balance    {}  →  {}", view.balance, view.balance_after);
    print!("Pay {} from card {}? [y/N] ", view.amount, view.card_id);
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim(), "y" | "Y" | "yes")
}

async fn pay(config: WalletConfig, bill_url: &str, yes: bool) -> anyhow::Result<()> {
    let consent = move |view: &ConsentView| if yes { true } else { ask(view) };
    let progress = |p: Progress| eprintln!("  … {}", describe(&p));
    match kessai_wallet::pay(config, bill_url, consent, progress).await? {
        PayOutcome::Paid { completed_settlement, receipt, balance_after } => {
            println!("paid: settlement {completed_settlement}; balance now {balance_after}");
            match receipt {
                Some(r) => println!(
                    "receipt for order {} verified; {}: {}",
                    r.order_id,
                    r.delivery,
                    r.reference.unwrap_or_default()
                ),
                None => println!("the store's receipt is late; `kessai wallet history` will show it"),
            }
            Ok(())
        }
        PayOutcome::Declined(outcome) => {
            println!("not paid: {outcome:?}; nothing was charged");
            Ok(())
        }
        other => anyhow::bail!("unexpected outcome: {other:?}"),
    }
}

fn describe(p: &Progress) -> String {
    match p {
        Progress::CardRead(c) => format!("card {} read (display balance {})", c.card_id, c.balance),
        Progress::SettlementOpened(id) => format!("settlement {id} opened at the center"),
        Progress::CardAuthenticated => "card and center authenticated each other (SCP03)".into(),
        Progress::OfferVerified => "offer (SIG2) verified against the bill and the card".into(),
        Progress::DebitRelayed => "sealed DEBIT relayed to the card".into(),
        Progress::Completed => "completion (SIG3) verified".into(),
        Progress::WaitingForReceipt => "waiting for the store's receipt".into(),
        Progress::ReceiptVerified => "receipt (SIG4) verified".into(),
        Progress::Recovering(id) => format!("recovering settlement {id}"),
        other => format!("{other:?}"),
    }
}
