//! `kessai wallet`: the cardholder's side, as a local web UI or commands.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use kessai_wallet::{ChargeError, ChargeProgress, ConsentView, PayOutcome, Progress, WalletConfig};

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
        /// Pay as this registered member (`m-…`): the member keystore's key
        /// (passwords A and B) signs the payment instruction.
        #[arg(long)]
        member: Option<String>,
        #[command(flatten)]
        a: crate::member::PasswordA,
        #[command(flatten)]
        b: crate::member::PasswordB,
        /// Pay with this bank deposit token on the card (`tok_…`, as
        /// `kessai wallet tokens` lists them) instead of its balance; what
        /// it holds beyond the bill goes onto the card.
        #[arg(long)]
        token: Option<String>,
    },
    /// The card's id and display balance.
    Balance,
    /// The card's own log (through a secure session), then this wallet's payments.
    History,
    /// Finish interrupted payments: ask the card, through the center, what happened.
    Recover,
    /// Give card value back to the credit card that paid a charge (a
    /// decrease): the card is debited, then the credit card refunded.
    Decrease {
        /// The charge (`vup_…`, as `kessai wallet charge` printed it).
        #[arg(long)]
        charge: String,
        /// Amount in minor units (JPY: yen).
        amount: u64,
    },
    /// Present the card: apply what the center owes it (stores' refunds)
    /// or it owes (corrections). Purchases do this first, too.
    Collect,
    /// Add value to the card, paid by credit card. The card data is read
    /// from environment variables or files only, never from the command line.
    Charge {
        /// Amount in minor units (JPY: yen).
        amount: u64,
        /// Environment variable holding the credit card number.
        #[arg(long, conflicts_with = "card_number_file", required_unless_present = "card_number_file")]
        card_number_env: Option<String>,
        /// File holding the credit card number (first line).
        #[arg(long)]
        card_number_file: Option<std::path::PathBuf>,
        /// Expiry, MM/YY.
        #[arg(long)]
        expiry: String,
        /// Environment variable holding the security code (CVC).
        #[arg(long)]
        cvc_env: String,
    },
    /// The card's bank deposit tokens (seed 002): list them (the card's
    /// own table, read through a secure session), store those issued to
    /// it, or redeem one for card value.
    Tokens {
        /// Store on the card the tokens the center issued to it.
        #[arg(long, conflicts_with = "redeem")]
        store: bool,
        /// Redeem this token (`tok_…`): its value is owed to the card and
        /// credited at once (as `kessai wallet collect` does).
        #[arg(long)]
        redeem: Option<String>,
    },
    /// The member keystore: a signing key under two passwords, and the
    /// member's purchase history (seed 003/004, FIG. 10–11).
    #[command(subcommand)]
    Member(crate::member::MemberCommand),
    /// The member's virtual prepaid cards: value held by the center,
    /// funded by credit card, transfer or cash (seed 003/004).
    #[command(subcommand)]
    Prepaid(crate::prepaid::PrepaidCommand),
}

pub fn run(config_path: &Path, command: WalletCommand) -> anyhow::Result<()> {
    let config = WalletConfig::load(config_path).with_context(|| format!("loading {}", config_path.display()))?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match command {
        WalletCommand::Member(command) => crate::member::run(&config, &runtime, command),
        WalletCommand::Prepaid(command) => crate::prepaid::run(&config, &runtime, command),
        WalletCommand::Serve => {
            kessai_http::init_json_logs("wallet");
            eprintln!("wallet on http://{}", config.listen);
            runtime.block_on(kessai_wallet::run(config, crate::store::shutdown_signal()))
        }
        WalletCommand::Pay { bill_url, yes, member, a, b, token } => {
            let (member, password_a) = match member {
                Some(id) => {
                    let (id, key, password_a) = crate::member::signer(&config, &id, &a, &b)?;
                    (Some((id, key)), Some(password_a))
                }
                None => (None, None),
            };
            let paid = runtime.block_on(pay(config.clone(), member, &bill_url, yes, token.as_deref()))?;
            // A member's purchase goes into its keystore's history (FIG. 10).
            if let (Some(settlement), Some(a)) = (paid, password_a) {
                let records = runtime.block_on(kessai_wallet::history(config.clone()))?;
                let record = records.iter().find(|r| r.settlement_id.as_ref().is_some_and(|s| *s == settlement));
                if let Some(record) = record {
                    crate::member::record_purchase(&config, &a, record)?;
                }
            }
            Ok(())
        }
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
        WalletCommand::Charge { amount, card_number_env, card_number_file, expiry, cvc_env } => {
            let number = match (card_number_env, card_number_file) {
                (Some(var), _) => secret_env(&var)?,
                (None, Some(path)) => {
                    let text = zeroize::Zeroizing::new(
                        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
                    );
                    zeroize::Zeroizing::new(text.lines().next().unwrap_or_default().trim().to_owned())
                }
                (None, None) => anyhow::bail!("give --card-number-env or --card-number-file"),
            };
            let cvc = secret_env(&cvc_env)?;
            let card = kessai_wallet::PaymentCardInput::parse(&number, &expiry, &cvc)?;
            drop((number, cvc));
            let amount = kessai_core::Money::new(amount, kessai_core::Currency::JPY)?;
            runtime.block_on(charge(config, amount, card))
        }
        WalletCommand::Decrease { charge, amount } => {
            let amount = kessai_core::Money::new(amount, kessai_core::Currency::JPY)?;
            let done = runtime.block_on(kessai_wallet::decrease(config, &charge, amount, print_charge_progress))?;
            println!(
                "{} went back to the credit card ({}); the card holds {}",
                done.amount, done.funding_ref, done.balance_after
            );
            Ok(())
        }
        WalletCommand::Collect => {
            let done = runtime.block_on(kessai_wallet::collect(config, print_charge_progress))?;
            if done.is_empty() {
                println!("nothing is owed to or by this card");
            }
            for d in done {
                let verb = match d.direction {
                    kessai_core::messages::value_update::Direction::Credit => "credited",
                    kessai_core::messages::value_update::Direction::Debit => "debited",
                };
                println!("{verb} {} ({}); the card holds {}", d.amount, d.funding_ref, d.balance_after);
            }
            Ok(())
        }
        WalletCommand::Tokens { store, redeem } => {
            use kessai_wallet::TokenSessionCreate;
            if store {
                let done = runtime
                    .block_on(kessai_wallet::token_session(config.clone(), TokenSessionCreate::default()))
                    .context("storing the card's tokens")?;
                print_token_refusals(&done);
                println!("stored {} token(s)", done.stored.len());
            }
            if let Some(token) = redeem {
                let asked = TokenSessionCreate { redeem: Some(token), list: false };
                let done = runtime
                    .block_on(kessai_wallet::token_session(config.clone(), asked))
                    .context("redeeming the token")?;
                print_token_refusals(&done);
                if let Some(r) = &done.redeemed {
                    println!("token {} redeemed: {} is owed to the card", r.token_id, r.amount);
                    let credited = runtime.block_on(kessai_wallet::collect(config.clone(), print_charge_progress))?;
                    for d in credited {
                        println!("credited {} ({}); the card holds {}", d.amount, d.funding_ref, d.balance_after);
                    }
                }
            }
            let asked = TokenSessionCreate { redeem: None, list: true };
            let listed =
                runtime.block_on(kessai_wallet::token_session(config, asked)).context("listing the card's tokens")?;
            let tokens = listed.on_card.unwrap_or_default();
            println!("the card's deposit tokens (read through a secure session)");
            println!("{:<36} {:>14} {:<20} {:<9} {:<10}", "token", "amount", "expires (UTC)", "state", "deposited");
            for t in &tokens {
                let expires = kessai_core::time::Timestamp::from_unix_s(t.expires_at).utc();
                let state = if t.redeemed { "redeemed" } else { "held" };
                let deposited = t.deposited_on.as_deref().unwrap_or("-");
                println!("{:<36} {:>14} {:<20} {state:<9} {deposited:<10}", t.token_id, t.amount.to_string(), expires);
            }
            if tokens.is_empty() {
                println!("(none)");
            }
            Ok(())
        }
        WalletCommand::Recover => {
            // Charges first, so that they are reported; then payments.
            let charges = runtime.block_on(kessai_wallet::recover_charges(config.clone()))?;
            let payments = runtime.block_on(kessai_wallet::recover(config))?;
            if charges.is_empty() && payments.is_empty() {
                println!("nothing to recover");
            }
            for (id, outcome) in charges {
                println!("charge {id}: {outcome:?}");
            }
            for (id, outcome) in payments {
                println!("payment {id}: {outcome:?}");
            }
            Ok(())
        }
    }
}

fn print_token_refusals(done: &kessai_wallet::TokenSessionReply) {
    for r in &done.refused {
        println!("token {}: {}", r.token_id, r.reason);
    }
}

fn ask(view: &ConsentView) -> bool {
    show_bill(&view.store_name, &view.order_id, &view.lines);
    println!("  amount     {}", view.amount);
    println!("  balance    {}  →  {}", view.balance, view.balance_after);
    yes_or_no(&format!("Pay {} from card {}? [y/N] ", view.amount, view.card_id))
}

/// The consent to pay a bill with a deposit token, asked on the terminal.
fn ask_token(view: &kessai_wallet::ReviewView, token: &str) -> bool {
    show_bill(&view.store_name, &view.order_id, &view.lines);
    println!("  amount     {}", view.total);
    yes_or_no(&format!(
        "Pay {} with deposit token {token} (what it holds beyond the bill goes onto the card)? [y/N] ",
        view.total
    ))
}

fn show_bill(store: &str, order: &str, lines: &[kessai_wallet::LineView]) {
    println!();
    println!("  store      {store}");
    println!("  order      {order}");
    for line in lines {
        println!(
            "  {:<40} {:>4} × {:>14} = {:>14}",
            line.name,
            line.quantity,
            line.unit_price.to_string(),
            line.amount.to_string()
        );
    }
}

fn yes_or_no(question: &str) -> bool {
    print!("{question}");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim(), "y" | "Y" | "yes")
}

/// Pays; answers the settlement, if it completed.
async fn pay(
    config: WalletConfig,
    member: Option<(kessai_core::ids::PartyId, kessai_core::keys::SigningKey)>,
    bill_url: &str,
    yes: bool,
    token: Option<&str>,
) -> anyhow::Result<Option<kessai_core::ids::SettlementId>> {
    let progress = |p: Progress| eprintln!("  … {}", describe(&p));
    let outcome = match token {
        Some(token) => {
            let consent = move |view: &kessai_wallet::ReviewView| if yes { true } else { ask_token(view, token) };
            kessai_wallet::pay_with_token(config, member, bill_url, token, consent, progress).await?
        }
        None => {
            let consent = move |view: &ConsentView| if yes { true } else { ask(view) };
            kessai_wallet::pay_as(config, member, bill_url, consent, progress).await?
        }
    };
    match outcome {
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
            Ok(Some(completed_settlement))
        }
        PayOutcome::Declined(outcome) => {
            println!("not paid: {outcome:?}; nothing was charged");
            Ok(None)
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

fn secret_env(var: &str) -> anyhow::Result<zeroize::Zeroizing<String>> {
    std::env::var(var).map(zeroize::Zeroizing::new).with_context(|| format!("environment variable {var} is not set"))
}

async fn charge(
    config: WalletConfig,
    amount: kessai_core::Money,
    card: kessai_wallet::PaymentCardInput,
) -> anyhow::Result<()> {
    let progress = |p: ChargeProgress| eprintln!("  … {}", describe_charge(&p));
    match kessai_wallet::charge(config, amount, card, progress).await {
        Ok(done) => {
            println!("charged {} to card {}: charge {}", done.amount, done.card_id, done.charge_id);
            println!("balance now {}", done.balance_after);
            Ok(())
        }
        Err(ChargeError::Declined { message, .. }) => anyhow::bail!("{message}"),
        Err(e) => Err(e.into()),
    }
}

/// Progress of a decrease or an owed update (no credit card is authorized).
fn print_charge_progress(p: ChargeProgress) {
    let line = match &p {
        ChargeProgress::Authorized { charge_id } => format!("value update {charge_id} opened"),
        ChargeProgress::CreditRelayed => "sealed command relayed to the card".into(),
        ChargeProgress::Completed { balance_after } => format!("completed; balance {balance_after}"),
        other => describe_charge(other),
    };
    eprintln!("  … {line}");
}

fn describe_charge(p: &ChargeProgress) -> String {
    match p {
        ChargeProgress::CardRead(c) => format!("card {} read (display balance {})", c.card_id, c.balance),
        ChargeProgress::Authorized { charge_id } => format!("credit card authorized; charge {charge_id} opened"),
        ChargeProgress::CardAuthenticated => "card and center authenticated each other (SCP03)".into(),
        ChargeProgress::ValueUpdateVerified { balance_before, balance_after } => {
            format!("value update (SIG5) verified: {balance_before} → {balance_after}")
        }
        ChargeProgress::CreditRelayed => "sealed CREDIT relayed to the card".into(),
        ChargeProgress::Completed { balance_after } => format!("charge completed; balance {balance_after}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::WalletCommand;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: WalletCommand,
    }

    #[test]
    fn a_card_number_is_never_taken_from_the_command_line() {
        let argv = ["w", "charge", "5000", "--card-number", "4242424242424242", "--expiry", "12/30", "--cvc-env", "C"];
        assert!(Cli::try_parse_from(argv).is_err(), "no argument takes the number itself");
        let argv = ["w", "charge", "5000", "--expiry", "12/30", "--cvc-env", "C"];
        assert!(Cli::try_parse_from(argv).is_err(), "the number's source is required");
        let argv = ["w", "charge", "5000", "--card-number-env", "N", "--expiry", "12/30", "--cvc-env", "C"];
        let Ok(Cli { command: WalletCommand::Charge { amount, card_number_env, .. } }) = Cli::try_parse_from(argv)
        else {
            panic!("a charge with the number in an environment variable parses");
        };
        assert_eq!((amount, card_number_env.as_deref()), (5_000, Some("N")));
    }
}
