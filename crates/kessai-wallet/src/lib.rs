//! The kessai wallet (the patent's client device, FIG. 16–20): it reads the
//! card through a reader, relays the center's sealed commands (which it
//! cannot read or forge), checks every signature, and shows the
//! cardholder what will happen before it happens.
//!
//! - [`wallet::Wallet`]: the purchase as a chain of checked steps, cancel
//!   and recovery.
//! - [`charge`]: adding value to the card, paid by credit card (SIG5
//!   checked before the sealed CREDIT is relayed), and its recovery.
//! - [`checks`]: what SIG2, SIG3 and SIG4 must say (pure).
//! - [`center`]: the center's HTTP API with persisted Idempotency-Keys.
//! - [`card`]: readers by configuration (in-process image, vpcd, PC/SC).
//! - [`records`]: the local SQLite history.
//! - [`web`]: the local web UI (127.0.0.1 only).
//!
//! Invariant: the sealed DEBIT goes to the card only after SIG2 verified
//! against the center's keys and matched the bill, the card and the
//! DEBIT's own bytes, and after the cardholder agreed. The sealed CREDIT
//! goes to the card only after SIG5 verified and matched the card, the
//! amount and the CREDIT's own bytes. Payment card data is never stored.

pub mod card;
pub mod center;
pub mod charge;
pub mod charge_records;
mod charge_recovery;
pub mod checks;
pub mod config;
pub mod limits;
pub mod member;
mod pages;
pub mod prepaid;
pub mod records;
mod settle;
mod token_pay;
pub mod wallet;
pub mod web;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use kessai_core::ids::SettlementId;
use serde::Deserialize;

pub use card::{ApduObserver, CardSummary};
pub use charge::{ChargeError, ChargeOutcome, ChargeProgress, PaymentCardInput, decline_message};
pub use charge_records::{ChargePhase, ChargeRecord, UpdateKind};
pub use config::{CenterSettings, ReaderConfig, WalletConfig};
pub use kessai_api::TokenSessionReply;
pub use kessai_api::request::TokenSessionCreate;
pub use records::{LocalPhase, Record};
pub use wallet::{
    Completed, ConsentView, LineView, Outcome, PayError, Progress, ReceiptView, ReviewView, Wallet, safe_return_url,
};

/// Runs the web UI on `config.listen` (loopback only) until `shutdown`.
pub async fn run(config: WalletConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let listen = config.listen;
    let wallet = Arc::new(Wallet::open(config).await?);
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    tracing::info!(listen = %listener.local_addr()?, "wallet UI serving");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let sweeping = tokio::spawn(cancel_abandoned_offers(Arc::clone(&wallet), stopped));
    let served = kessai_http::serve_plain(web::router(Arc::clone(&wallet)), listener, shutdown).await;
    let _ = stop.send(true);
    let _ = sweeping.await;
    served?;
    wallet.records().close().await;
    Ok(())
}

/// Cancels offers the cardholder left unanswered, every
/// [`limits::ABANDONED_SWEEP_S`] (M2: a hold never outlives the
/// cardholder's attention by long).
async fn cancel_abandoned_offers(wallet: Arc<Wallet>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let every = std::time::Duration::from_secs(limits::ABANDONED_SWEEP_S);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        match wallet.cancel_abandoned(wallet.now_s()).await {
            Ok(ended) if !ended.is_empty() => tracing::info!(count = ended.len(), "cancelled abandoned offers"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "looking for abandoned offers"),
        }
    }
}

/// How `pay` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayOutcome {
    /// Paid; SIG3 verified, and SIG4 unless the store is late.
    Paid { completed_settlement: SettlementId, receipt: Option<ReceiptView>, balance_after: kessai_core::Money },
    /// The cardholder declined; the settlement was cancelled.
    Declined(Outcome),
}

/// What a store's bill URL answers: the bill (SIG1) and where the
/// cardholder returns.
#[derive(Debug, Deserialize)]
pub struct HandOff {
    pub bill: String,
    pub return_url: String,
}

/// `kessai wallet pay BILL_URL`: fetches `{"bill","return_url"}`, runs the
/// purchase, asks `consent`, and reports each step to `progress`.
pub async fn pay(
    config: WalletConfig,
    bill_url: &str,
    consent: impl Fn(&ConsentView) -> bool,
    progress: impl FnMut(Progress) + Send,
) -> Result<PayOutcome, PayError> {
    pay_as(config, None, bill_url, consent, progress).await
}

/// As [`pay`], as registered member `member` (its number and the signing
/// key its passwords opened): the purchase carries the member's signed
/// payment instruction (#12).
pub async fn pay_as(
    config: WalletConfig,
    member: Option<(kessai_core::ids::PartyId, kessai_core::keys::SigningKey)>,
    bill_url: &str,
    consent: impl Fn(&ConsentView) -> bool,
    mut progress: impl FnMut(Progress) + Send,
) -> Result<PayOutcome, PayError> {
    let (wallet, hand_off) = open_for(config, member, bill_url).await?;
    let offered = wallet.begin(&hand_off.bill, &hand_off.return_url, &mut progress).await?;
    let view = offered.view();
    if !consent(&view) {
        let outcome = wallet.cancel(view.settlement_id.as_str(), &view.consent_token).await?;
        return Ok(PayOutcome::Declined(outcome));
    }
    let relayed = wallet.relay_debit(offered).await?;
    progress(Progress::DebitRelayed);
    let completed = wallet.complete(relayed).await?;
    progress(Progress::Completed);
    let receipt = receipt_of(&wallet, &completed, &mut progress).await?;
    wallet.records().close().await;
    Ok(PayOutcome::Paid { completed_settlement: completed.settlement_id, receipt, balance_after: view.balance_after })
}

/// `kessai wallet pay BILL_URL --token tok_…`: as [`pay`], the bill paid
/// with deposit token `token` on the card instead of its balance (#21).
/// `consent` sees the bill (before anything is sent to the center); the
/// choice of the token is the cardholder's consent to redeem it.
pub async fn pay_with_token(
    config: WalletConfig,
    member: Option<(kessai_core::ids::PartyId, kessai_core::keys::SigningKey)>,
    bill_url: &str,
    token: &str,
    consent: impl Fn(&ReviewView) -> bool,
    mut progress: impl FnMut(Progress) + Send,
) -> Result<PayOutcome, PayError> {
    let (wallet, hand_off) = open_for(config, None, bill_url).await?;
    let review = wallet.review(&hand_off.bill, &hand_off.return_url)?;
    if !consent(&review) {
        wallet.records().close().await;
        return Ok(PayOutcome::Declined(Outcome::Voided { reason: "declined before anything was sent".into() }));
    }
    let completed =
        wallet.pay_by_token(&hand_off.bill, &hand_off.return_url, token, member.as_ref(), &mut progress).await?;
    let receipt = receipt_of(&wallet, &completed, &mut progress).await?;
    let balance_after = wallet.card_summary().await.map_err(PayError::from)?.balance;
    wallet.records().close().await;
    Ok(PayOutcome::Paid { completed_settlement: completed.settlement_id, receipt, balance_after })
}

/// The wallet, paying as `member` if given, and what `bill_url` hands over.
async fn open_for(
    config: WalletConfig,
    member: Option<(kessai_core::ids::PartyId, kessai_core::keys::SigningKey)>,
    bill_url: &str,
) -> Result<(Wallet, HandOff), PayError> {
    let wallet = Wallet::open(config).await.map_err(|e| PayError::Setup(format!("{e:#}")))?;
    let wallet = match member {
        Some((id, key)) => wallet.with_member(id, key),
        None => wallet,
    };
    let hand_off = hand_off(&wallet, bill_url).await?;
    Ok((wallet, hand_off))
}

/// The store's receipt (SIG4) for a completed payment, verified; `None` if
/// the store is late (`kessai wallet history` shows it later).
async fn receipt_of(
    wallet: &Wallet,
    completed: &Completed,
    progress: &mut (impl FnMut(Progress) + Send),
) -> Result<Option<ReceiptView>, PayError> {
    progress(Progress::WaitingForReceipt);
    match wallet.wait_receipt(completed.settlement_id.as_str()).await {
        Ok(r) => {
            progress(Progress::ReceiptVerified);
            Ok(Some(r))
        }
        Err(PayError::ReceiptNotYet) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The bill and return URL a store's `BILL_URL` hands over.
pub async fn hand_off(wallet: &Wallet, bill_url: &str) -> Result<HandOff, PayError> {
    let (status, bytes) = wallet.http().get(bill_url).await.map_err(|e| PayError::HandOff(e.to_string()))?;
    if !status.is_success() {
        return Err(PayError::HandOff(format!("{bill_url} answered {status}")));
    }
    serde_json::from_slice(&bytes).map_err(|e| PayError::HandOff(e.to_string()))
}

/// The card in the reader (display balance).
pub async fn balance(config: WalletConfig) -> anyhow::Result<CardSummary> {
    let wallet = Wallet::open(config).await?;
    let summary = wallet.card_summary().await?;
    wallet.records().close().await;
    Ok(summary)
}

/// The recorded settlements, newest first.
pub async fn history(config: WalletConfig) -> anyhow::Result<Vec<Record>> {
    let wallet = Wallet::open(config).await?;
    let records = wallet.records().recent(limits::MAX_HISTORY_RECORDS).await?;
    wallet.records().close().await;
    Ok(records)
}

/// The card's own log (read through a secure session the center opens).
pub async fn card_log(config: WalletConfig) -> anyhow::Result<Vec<kessai_api::LogEntry>> {
    let wallet = Wallet::open(config).await?;
    let log = wallet.card_log().await;
    wallet.records().close().await;
    Ok(log?)
}

/// A token session with the card (see [`Wallet::token_session`]).
pub async fn token_session(
    config: WalletConfig,
    asked: kessai_api::request::TokenSessionCreate,
) -> anyhow::Result<kessai_api::TokenSessionReply> {
    let wallet = Wallet::open(config).await?;
    let reply = wallet.token_session(&asked).await;
    wallet.records().close().await;
    Ok(reply?)
}

/// Recovery for every recorded settlement whose DEBIT may be outstanding,
/// then for every charge that did not end (see [`recover_charges`] for
/// the charges' outcomes).
pub async fn recover(config: WalletConfig) -> anyhow::Result<Vec<(SettlementId, Outcome)>> {
    let wallet = Wallet::open(config).await?;
    let outcomes = wallet.recover_all(&mut |_| {}).await?;
    for (charge, outcome) in wallet.recover_charges().await? {
        tracing::info!(%charge, ?outcome, "charge recovered");
    }
    wallet.records().close().await;
    Ok(outcomes)
}

/// Recovery for every recorded charge that did not end: `(charge id, outcome)`.
pub async fn recover_charges(config: WalletConfig) -> anyhow::Result<Vec<(String, Outcome)>> {
    let wallet = Wallet::open(config).await?;
    let outcomes = wallet.recover_charges().await;
    wallet.records().close().await;
    Ok(outcomes?)
}

/// `kessai wallet decrease`: gives `amount` of the card's value back to
/// the credit card that paid charge `charge_id`.
pub async fn decrease(
    config: WalletConfig,
    charge_id: &str,
    amount: kessai_core::Money,
    mut progress: impl FnMut(ChargeProgress) + Send,
) -> Result<ChargeOutcome, ChargeError> {
    let wallet = Wallet::open(config).await.map_err(|e| ChargeError::Setup(format!("{e:#}")))?;
    let outcome = wallet.decrease(charge_id, amount, &mut progress).await;
    wallet.records().close().await;
    outcome
}

/// `kessai wallet collect`: presents the card and applies what is owed to
/// it (stores' refunds) or by it (corrections).
pub async fn collect(
    config: WalletConfig,
    mut progress: impl FnMut(ChargeProgress) + Send,
) -> Result<Vec<ChargeOutcome>, ChargeError> {
    let wallet = Wallet::open(config).await.map_err(|e| ChargeError::Setup(format!("{e:#}")))?;
    let outcome = wallet.apply_owed(&mut progress).await;
    wallet.records().close().await;
    outcome
}

/// `kessai wallet charge`: adds `amount` to the card in the reader, paid
/// with `card_input`, and reports each step to `progress`.
pub async fn charge(
    config: WalletConfig,
    amount: kessai_core::Money,
    card_input: PaymentCardInput,
    mut progress: impl FnMut(ChargeProgress) + Send,
) -> Result<ChargeOutcome, ChargeError> {
    let wallet = Wallet::open(config).await.map_err(|e| ChargeError::Setup(format!("{e:#}")))?;
    let outcome = wallet.charge(amount, card_input, &mut progress).await;
    wallet.records().close().await;
    outcome
}
