//! `kessai admin`: the center's admin API from the command line, over
//! mutual TLS with the admin's client certificate.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

#[derive(Args, Debug)]
pub struct AdminArgs {
    /// The center's base URL, e.g. https://127.0.0.1:8440.
    #[arg(long, value_name = "URL")]
    center: String,
    /// The kessai CA directory holding ca.crt and the admin certificate.
    #[arg(long, value_name = "DIR")]
    ca_dir: PathBuf,
    /// The admin client certificate's name in the CA directory.
    #[arg(long, default_value = "admin")]
    name: String,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Register (or update) a store, with its public keys.
    RegisterStore {
        #[arg(long)]
        id: String,
        #[arg(long)]
        display_name: String,
        /// The mall this store is a member of.
        #[arg(long)]
        mall: Option<String>,
        /// Where completions are delivered (https://…/v1/completions).
        #[arg(long)]
        notify_url: Option<String>,
        /// The store's JWKS file (its bill-signing keys).
        #[arg(long, value_name = "FILE")]
        jwks: Option<PathBuf>,
        /// Where its payouts go: `zengin:BBBB-SSS-T-NNNNNNN:HOLDER` (holder
        /// in half-width kana) or `iban:IBAN[:BIC]:HOLDER`.
        #[arg(long)]
        bank_account: Option<String>,
    },
    /// Register an issued card.
    RegisterCard {
        #[arg(long)]
        card_id: String,
        #[arg(long, default_value_t = 1)]
        key_version: u8,
        #[arg(long, default_value = "JPY")]
        currency: String,
        #[arg(long)]
        max_balance: u64,
    },
    /// Block a card, or report it lost, with a reason.
    SetCardStatus {
        #[arg(long)]
        card_id: String,
        /// blocked or lost
        #[arg(long)]
        status: String,
        #[arg(long)]
        reason: String,
    },
    /// Revoke one of a store's keys (a leaked or retired bill-signing key):
    /// bills and refunds it signs are refused from then on.
    RevokeStoreKey {
        /// The store.
        #[arg(long)]
        id: String,
        /// The key's id (`kid` in the store's JWKS).
        #[arg(long)]
        kid: String,
    },
    /// List settlements, newest first.
    Settlements {
        #[arg(long)]
        card: Option<String>,
        #[arg(long)]
        phase: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Take value off a card at its next presentation (a correction), held
    /// on its float at once. The same reference is the same correction.
    Correction {
        #[arg(long)]
        card_id: String,
        /// The operator's ticket number.
        #[arg(long)]
        reference: String,
        /// Amount in minor units (JPY: yen).
        #[arg(long)]
        amount: u64,
        #[arg(long, default_value = "JPY")]
        currency: String,
        #[arg(long)]
        reason: String,
    },
    /// What a card is owed (refunds) or owes (corrections), not yet applied.
    Owed {
        #[arg(long)]
        card_id: String,
    },
    /// Cancel a correction no session is applying.
    CancelCorrection {
        /// The owed item's id (`owe_…`).
        owed_id: String,
    },
    /// Replace a lost or blocked card: its value and the refunds still owed
    /// to it go to the new card, credited at its next presentation.
    ReplaceCard {
        /// The lost or blocked card.
        #[arg(long)]
        card_id: String,
        /// The card that takes over (registered, active, same currency).
        #[arg(long)]
        replacement: String,
        #[arg(long)]
        reason: String,
    },
    /// Membership applications waiting for approval (or approved ones).
    Applications {
        #[arg(long, default_value = "received")]
        status: String,
    },
    /// Approve an application: the member number and activation code go to
    /// the outbox letter.
    Approve {
        /// The application (`app_…`).
        application_id: String,
    },
    /// The letters to print or mail (member numbers, activation codes).
    Outbox,
    /// A letter was sent: its text, with the code, is wiped.
    LetterSent {
        /// The letter (`ltr_…`).
        letter_id: String,
    },
    /// Revoke a member's key reported lost; a new letter goes to the outbox.
    RevokeMember {
        /// The member (`m-…`).
        member: String,
        #[arg(long)]
        reason: String,
    },
    /// Link a card to a member: its purchases then need the member's signed
    /// payment instruction.
    LinkCard {
        #[arg(long)]
        card_id: String,
        /// The member (`m-…`); omit to unlink the card.
        #[arg(long)]
        member: Option<String>,
        /// Let the card pay without the member's instruction.
        #[arg(long)]
        no_instruction: bool,
    },
    /// Prepaid fundings in a status: awaiting (transfers and cash not yet
    /// received), counted (cash waiting for a second operator), …
    Fundings {
        #[arg(long, default_value = "awaiting")]
        status: String,
    },
    /// Record cash received by registered mail for a funding: the amount
    /// this operator (this certificate) counted.
    Cash {
        funding_id: String,
        /// Minor units.
        #[arg(long)]
        amount: u64,
        #[arg(long, default_value = "JPY")]
        currency: String,
    },
    /// Bank credits in a status: suspense (the queue), review (reversals),
    /// matched, applied, returned.
    BankCredits {
        #[arg(long, default_value = "suspense")]
        status: String,
    },
    /// Apply a credit held in suspense to a funding awaiting its money.
    ApplyCredit {
        #[arg(long)]
        entry_key: String,
        #[arg(long)]
        funding_id: String,
    },
    /// Send a credit held in suspense back to whoever paid it; the reason
    /// says how.
    ReturnCredit {
        #[arg(long)]
        entry_key: String,
        #[arg(long)]
        reason: String,
    },
}

pub fn run(args: AdminArgs) -> anyhow::Result<()> {
    let ca = kessai_tls::CaDir::new(&args.ca_dir);
    let tls = kessai_tls::client_config(&ca.ca_cert(), Some((&ca, &args.name))).context("admin TLS identity")?;
    let client = kessai_http::HttpsClient::new(tls, 15_000);
    let base = args.center.trim_end_matches('/').to_owned();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let (path, body) = request(args.command)?;
    let (status, bytes) = runtime.block_on(async {
        match body {
            Some(b) => client.post_json(&format!("{base}{path}"), &b, &[]).await,
            None => client.get(&format!("{base}{path}")).await,
        }
    })?;
    let text = String::from_utf8_lossy(&bytes);
    if !status.is_success() {
        bail!("the center answered {status}: {text}");
    }
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::String(text.into_owned()));
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

fn request(command: AdminCommand) -> anyhow::Result<(String, Option<Value>)> {
    Ok(match command {
        AdminCommand::RegisterStore { id, display_name, mall, notify_url, jwks, bank_account } => {
            let jwks: Option<Value> = jwks
                .map(|p| -> anyhow::Result<Value> {
                    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
                    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", p.display()))
                })
                .transpose()?;
            let body = json!({ "id": id, "name": display_name, "mall": mall, "notify_url": notify_url, "jwks": jwks,
                               "bank_account": bank_account });
            ("/v1/admin/stores".into(), Some(body))
        }
        AdminCommand::RegisterCard { card_id, key_version, currency, max_balance } => {
            let body = json!({ "card_id": card_id, "key_version": key_version, "currency": currency,
                               "max_balance_minor": max_balance });
            ("/v1/admin/cards".into(), Some(body))
        }
        AdminCommand::SetCardStatus { card_id, status, reason } => {
            (format!("/v1/admin/cards/{card_id}/status"), Some(json!({ "status": status, "reason": reason })))
        }
        AdminCommand::RevokeStoreKey { id, kid } => {
            (format!("/v1/admin/stores/{id}/keys/{kid}/revoke"), Some(json!({})))
        }
        AdminCommand::Settlements { card, phase, limit } => {
            let mut q = format!("/v1/admin/settlements?limit={limit}");
            if let Some(c) = card {
                q.push_str(&format!("&card={c}"));
            }
            if let Some(p) = phase {
                q.push_str(&format!("&phase={p}"));
            }
            (q, None)
        }
        AdminCommand::Correction { card_id, reference, amount, currency, reason } => {
            let body = json!({ "reference": reference, "reason": reason,
                               "amount": { "amount_minor": amount, "currency": currency } });
            (format!("/v1/admin/cards/{card_id}/corrections"), Some(body))
        }
        AdminCommand::Owed { card_id } => (format!("/v1/admin/cards/{card_id}/owed"), None),
        AdminCommand::CancelCorrection { owed_id } => (format!("/v1/admin/owed/{owed_id}/cancel"), Some(json!({}))),
        AdminCommand::Applications { status } => (format!("/v1/admin/applications?status={status}"), None),
        AdminCommand::Approve { application_id } => {
            (format!("/v1/admin/applications/{application_id}/approve"), Some(json!({})))
        }
        AdminCommand::Outbox => ("/v1/admin/outbox".into(), None),
        AdminCommand::LetterSent { letter_id } => (format!("/v1/admin/outbox/{letter_id}/sent"), Some(json!({}))),
        AdminCommand::RevokeMember { member, reason } => {
            (format!("/v1/admin/members/{member}/revoke"), Some(json!({ "reason": reason })))
        }
        AdminCommand::LinkCard { card_id, member, no_instruction } => (
            format!("/v1/admin/cards/{card_id}/member"),
            Some(json!({ "member": member, "instruction_required": !no_instruction })),
        ),
        AdminCommand::Fundings { status } => (format!("/v1/admin/fundings?status={status}"), None),
        AdminCommand::Cash { funding_id, amount, currency } => (
            format!("/v1/admin/fundings/{funding_id}/cash"),
            Some(json!({ "amount": { "amount_minor": amount, "currency": currency } })),
        ),
        AdminCommand::BankCredits { status } => (format!("/v1/admin/bank-credits?status={status}"), None),
        AdminCommand::ApplyCredit { entry_key, funding_id } => {
            ("/v1/admin/bank-credits/apply".into(), Some(json!({ "entry_key": entry_key, "funding_id": funding_id })))
        }
        AdminCommand::ReturnCredit { entry_key, reason } => {
            ("/v1/admin/bank-credits/return".into(), Some(json!({ "entry_key": entry_key, "reason": reason })))
        }
        AdminCommand::ReplaceCard { card_id, replacement, reason } => (
            format!("/v1/admin/cards/{card_id}/replace"),
            Some(json!({ "replacement": replacement, "reason": reason })),
        ),
    })
}
