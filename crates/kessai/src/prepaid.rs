//! `kessai wallet prepaid`: the member's virtual prepaid cards (#18, seed
//! 003/004 FIG. 5–7 and 12–15). Every request is signed with the member's
//! key (passwords A and B); credit card data comes from environment
//! variables or files only, never from the command line.

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use kessai_core::ids::PrepaidId;
use kessai_core::messages::prepaid::FundingMethod;
use kessai_core::{Currency, Money};
use kessai_wallet::prepaid::{Funding, new_request_id};
use kessai_wallet::{PaymentCardInput, Wallet, WalletConfig};

use crate::member::{PasswordA, PasswordB};

#[derive(Subcommand, Debug)]
pub enum PrepaidCommand {
    /// Open a virtual prepaid card funded with AMOUNT: by credit card at
    /// once, or by transfer or cash once the center receives the money
    /// (the answer says where to send it and what to quote).
    Open {
        #[command(flatten)]
        funding: FundingArgs,
        #[command(flatten)]
        signer: SignerArgs,
    },
    /// Add AMOUNT to one of the member's prepaid cards.
    Fund {
        /// The prepaid card (`vpc_…`).
        #[arg(long)]
        card: String,
        #[command(flatten)]
        funding: FundingArgs,
        #[command(flatten)]
        signer: SignerArgs,
    },
    /// The member's prepaid cards: balance, expiry, fundings and payments.
    Show {
        /// Only this card.
        #[arg(long)]
        card: Option<String>,
        #[command(flatten)]
        signer: SignerArgs,
    },
    /// Move AMOUNT from a prepaid card onto the IC card in the reader (which
    /// the operator linked to the member): through the card's secure
    /// session, SIG5 checked.
    ToCard {
        /// The prepaid card (`vpc_…`).
        #[arg(long)]
        card: String,
        /// Amount in minor units (JPY: yen).
        amount: u64,
        #[arg(long, default_value = "JPY")]
        currency: String,
        #[command(flatten)]
        signer: SignerArgs,
    },
    /// Pay a store's bill from a prepaid card: BILL_URL answers {"bill",
    /// "return_url"} (the store's /orders/{id}/bill).
    Pay {
        bill_url: String,
        /// The prepaid card (`vpc_…`).
        #[arg(long)]
        card: String,
        #[command(flatten)]
        signer: SignerArgs,
    },
}

#[derive(Args, Debug)]
pub struct SignerArgs {
    /// The member number (`m-…`).
    #[arg(long)]
    member: String,
    #[command(flatten)]
    a: PasswordA,
    #[command(flatten)]
    b: PasswordB,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum Method {
    Credit,
    BankTransfer,
    PostalTransfer,
    Cash,
}

#[derive(Args, Debug)]
pub struct FundingArgs {
    /// Amount in minor units (JPY: yen).
    amount: u64,
    #[arg(long, default_value = "JPY")]
    currency: String,
    #[arg(long, value_enum)]
    method: Method,
    /// The request's id, to send the same request again after a lost
    /// answer (default: a new one).
    #[arg(long)]
    request_id: Option<String>,
    /// Credit: environment variable holding the card number.
    #[arg(long)]
    card_number_env: Option<String>,
    /// Credit: expiry, MM/YY.
    #[arg(long)]
    expiry: Option<String>,
    /// Credit: environment variable holding the security code.
    #[arg(long)]
    cvc_env: Option<String>,
}

impl FundingArgs {
    fn method(&self) -> FundingMethod {
        match self.method {
            Method::Credit => FundingMethod::Credit,
            Method::BankTransfer => FundingMethod::BankTransfer,
            Method::PostalTransfer => FundingMethod::PostalTransfer,
            Method::Cash => FundingMethod::Cash,
        }
    }

    fn amount(&self) -> anyhow::Result<Money> {
        let currency = Currency::parse(&self.currency).context("the currency")?;
        Ok(Money::new(self.amount, currency)?)
    }

    fn card(&self) -> anyhow::Result<Option<PaymentCardInput>> {
        match (&self.card_number_env, &self.expiry, &self.cvc_env) {
            (None, None, None) => Ok(None),
            (Some(number), Some(expiry), Some(cvc)) => {
                let number = secret(number)?;
                let cvc = secret(cvc)?;
                Ok(Some(PaymentCardInput::parse(&number, expiry, &cvc)?))
            }
            _ => anyhow::bail!("--card-number-env, --expiry and --cvc-env come together"),
        }
    }

    fn request_id(&self) -> anyhow::Result<kessai_core::ids::RequestId> {
        match &self.request_id {
            Some(id) => Ok(kessai_core::ids::RequestId::parse(id)?),
            None => Ok(new_request_id()),
        }
    }
}

fn secret(var: &str) -> anyhow::Result<zeroize::Zeroizing<String>> {
    std::env::var(var).map(zeroize::Zeroizing::new).with_context(|| format!("environment variable {var} is not set"))
}

fn prepaid_id(text: &str) -> anyhow::Result<PrepaidId> {
    PrepaidId::parse(text).context("the prepaid card id")
}

pub fn run(config: &WalletConfig, runtime: &tokio::runtime::Runtime, command: PrepaidCommand) -> anyhow::Result<()> {
    let signer_of = |s: &SignerArgs| -> anyhow::Result<_> {
        let (id, key, _) = crate::member::signer(config, &s.member, &s.a, &s.b)?;
        Ok((id, key))
    };
    runtime.block_on(async {
        let wallet = Wallet::open(config.clone()).await?;
        let done = match command {
            PrepaidCommand::Open { funding, signer } => {
                let s = signer_of(&signer)?;
                let card = funding.card()?;
                let f = wallet
                    .prepaid_fund(&s, funding.request_id()?, None, funding.amount()?, funding.method(), card.as_ref())
                    .await?;
                print_funding(&f);
                Ok(())
            }
            PrepaidCommand::Fund { card, funding, signer } => {
                let s = signer_of(&signer)?;
                let payment = funding.card()?;
                let f = wallet
                    .prepaid_fund(
                        &s,
                        funding.request_id()?,
                        Some(prepaid_id(&card)?),
                        funding.amount()?,
                        funding.method(),
                        payment.as_ref(),
                    )
                    .await?;
                print_funding(&f);
                Ok(())
            }
            PrepaidCommand::Show { card, signer } => {
                let s = signer_of(&signer)?;
                let card = card.as_deref().map(prepaid_id).transpose()?;
                for c in wallet.prepaid_cards(&s, card).await? {
                    println!("prepaid card {}  {}  balance {}", c.prepaid_id, c.status, c.balance);
                    if let Some(at) = c.value_expires_at {
                        println!("  value usable until {}", at.utc());
                    }
                    for f in &c.fundings {
                        println!("  funding  {}  {}  {}  {}", f.funding_id, f.method.as_str(), f.amount, f.status);
                    }
                    for p in &c.payments {
                        println!(
                            "  payment  {}  {} order {}  {}  → {}",
                            p.payment_id, p.store_name, p.order_id, p.amount, p.balance_after
                        );
                    }
                }
                Ok(())
            }
            PrepaidCommand::ToCard { card, amount, currency, signer } => {
                let s = signer_of(&signer)?;
                let amount = Money::new(amount, Currency::parse(&currency).context("the currency")?)?;
                let progress = &mut |_| {};
                let done = wallet.prepaid_to_card(&s, new_request_id(), prepaid_id(&card)?, amount, progress).await?;
                println!(
                    "moved {} from {card} onto card {}; the card holds {}",
                    done.amount, done.card_id, done.balance_after
                );
                Ok(())
            }
            PrepaidCommand::Pay { bill_url, card, signer } => {
                let s = signer_of(&signer)?;
                let hand_off = kessai_wallet::hand_off(&wallet, &bill_url).await?;
                let paid = wallet.pay_prepaid(&s, &hand_off.bill, &hand_off.return_url, &prepaid_id(&card)?).await?;
                println!(
                    "paid {} to {} (order {}) from {}: settlement {}",
                    paid.amount, paid.store_name, paid.order_id, paid.prepaid_id, paid.settlement_id
                );
                println!("completion (SIG3) verified; new balance {}", paid.balance);
                match wallet.prepaid_receipt(&paid, &hand_off.bill).await? {
                    Some(_) => println!("receipt (SIG4) verified"),
                    None => println!("the store's receipt is late"),
                }
                Ok(())
            }
        };
        wallet.records().close().await;
        done
    })
}

fn print_funding(f: &Funding) {
    println!("funding {}  card {}  {}  {}  {}", f.funding_id, f.prepaid_id, f.method.as_str(), f.amount, f.status);
    if let Some(r) = &f.reference {
        println!("  quote this reference: {r}");
    }
    if let Some(to) = &f.pay_to {
        println!("  send the money to:    {to}");
    }
    if let Some(at) = f.expires_at {
        println!("  before:               {}", at.utc());
    }
    if let Some(why) = &f.reason {
        println!("  {why}");
    }
}
