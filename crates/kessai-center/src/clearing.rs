//! Clearing (#19; seed 003/004 paragraphs 0019–0020, FIG. 9): the center
//! pays each store what its purchases came to, less refunds and fees, into
//! the store's bank account.
//!
//! Every write that moves a store's payable in the books also records an
//! *item* of it in the same transaction (`books::Entries`): a purchase the
//! card confirmed or a payment from a prepaid card (+), a refund held for a
//! card or credited to a prepaid card (−), a refund cancelled (+), a
//! returned payout put back (+). So what is open on a store's payable is
//! always the sum of its open items, and a payout says which items it paid.
//!
//! A clearing run (`kessai center clearing run --cutoff …`) has an id
//! derived from its cutoff, claimed by one instance at a time under a lease
//! (`center_clearing_runs`). For each store and currency with open items up
//! to the cutoff it makes, in one transaction, one payout (id derived from
//! the run, the store and the currency): the items taken, their fees (per
//! item, [`item_fee`]), the books (store payable → payouts in transit, and
//! → fees), the payout row. The run is idempotent: a store paid by this run
//! is skipped, an item is taken once (`payout_id IS NULL`), and a run
//! stopped anywhere (a crash, a lost lease) is finished by running it
//! again. Items that net to nothing or less stay open for a later run.
//!
//! The payouts leave as a bank file (`pain.001.001.09` or Zengin 総合振込),
//! written from the payout rows whenever asked, so the same run always
//! gives the same file. What the bank says comes back as a file too
//! (`pain.002`, `camt.054`, a Zengin result): settled moves payouts in
//! transit → the center's bank pool; rejected or returned puts the amount
//! back on the store's payable (an item, paid by a later run) and marks the
//! payout failed. Each entry of such a file is taken once.

use kessai_api::TokenStatus;
use kessai_bank::payout::{Debtor, PayeeAccount, PayoutBatch, PayoutLine, PayoutStatus, ZenginDebtor};
use kessai_core::ids::StoreId;
use kessai_core::time::Timestamp;
use kessai_core::token::TokenId;
use kessai_core::{Currency, Money};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::books::{BooksError, Entries};
pub use crate::db::{ClearStore, Cleared, ItemRow, PayoutRow, RunClaim, RunRow, item_fee, payout_totals};
use crate::db::{DbError, EventTaken, Payback, PaybackRow, PayoutEvent, TokenRow};
use crate::limits::STEP_RETRIES_MAX;
use crate::service::Center;

/// Stores cleared in one transaction.
const STORES_PER_WRITE: usize = 64;
/// Stores read per page of a run.
const STORES_PER_PAGE: i64 = 1_024;
/// How long a run's claim holds without being renewed (each write renews
/// it): an instance that died mid-run is taken over after this.
const LEASE_S: u64 = 120;
/// Most payouts one listing or file returns.
pub const MAX_PAYOUTS: i64 = 100_000;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClearingError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Books(#[from] BooksError),
    #[error("the cutoff {cutoff} is in the future: a run clears only what is past")]
    FutureCutoff { cutoff: Timestamp },
    #[error("another instance ({holder}) is running clearing {run} until {until}; try again after")]
    Held { run: String, holder: String, until: Timestamp },
    #[error("the instance lost its claim on clearing {0} (another took it over); run it again")]
    LostClaim(String),
    #[error("no clearing run {0}")]
    UnknownRun(String),
    #[error("clearing {0} has no payouts in {1}")]
    NothingToPay(String, Currency),
    #[error("the bank file: {0}")]
    BankFile(String),
    #[error("the payer account in [clearing.debtor] is not set for {0}")]
    NoDebtor(&'static str),
    #[error("no store {0}")]
    UnknownStore(String),
    #[error("{0}")]
    BadAccount(String),
    #[error("store {0}'s bank account changed meanwhile: look again")]
    AccountChanged(String),
    #[error("no deposit token {0}")]
    UnknownToken(String),
    #[error("token {0}: {1}")]
    TokenNotPayable(String, String),
}

/// The center's clearing settings (configuration `[clearing]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClearingPolicy {
    /// The fee on each purchase or payment, in basis points (1/100 %), for
    /// stores without a schedule of their own.
    pub fee_bp: u32,
    /// The fixed part of that fee, in minor units.
    pub fee_fixed_minor: u64,
    /// The center's own account that payouts are paid from.
    pub debtor: DebtorConfig,
    /// How long after a deposit token's expiry (seconds) a run pays it
    /// back: a redemption the card made just before it settles first.
    pub token_payback_after_s: u64,
}

impl Default for ClearingPolicy {
    fn default() -> ClearingPolicy {
        ClearingPolicy {
            fee_bp: 0,
            fee_fixed_minor: 0,
            debtor: DebtorConfig::default(),
            token_payback_after_s: 7 * 86_400,
        }
    }
}

/// The center's account as bank files name it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DebtorConfig {
    pub name: String,
    pub iban: Option<String>,
    pub bic: Option<String>,
    /// 依頼人コード, 10 digits, given by the bank.
    pub zengin_requester_code: Option<u64>,
    /// 依頼人名, half-width kana.
    pub zengin_requester_name: Option<String>,
    pub zengin_bank_code: Option<u16>,
    pub zengin_bank_name: Option<String>,
    pub zengin_branch_code: Option<u16>,
    pub zengin_branch_name: Option<String>,
    /// 1 普通, 2 当座.
    pub zengin_deposit_type: Option<u8>,
    pub zengin_number: Option<u32>,
}

impl Default for DebtorConfig {
    /// The simulated bank's account of the center (`kessai bank`), as the
    /// prepaid pool is: Kessai Bank (0999), head office (001), ordinary
    /// 1234567.
    fn default() -> DebtorConfig {
        DebtorConfig {
            name: "KESSAI CENTER".into(),
            iban: None,
            bic: None,
            zengin_requester_code: Some(1_234_567_890),
            zengin_requester_name: Some("ｹﾂｻｲｾﾝﾀ-".into()),
            zengin_bank_code: Some(999),
            zengin_bank_name: Some("ｹｯｻｲｷﾞﾝｺｳ".into()),
            zengin_branch_code: Some(1),
            zengin_branch_name: Some("ﾎﾝﾃﾝ".into()),
            zengin_deposit_type: Some(1),
            zengin_number: Some(1_234_567),
        }
    }
}

impl DebtorConfig {
    fn debtor(&self) -> Debtor {
        let zengin = match (
            self.zengin_requester_code,
            &self.zengin_requester_name,
            self.zengin_bank_code,
            self.zengin_branch_code,
            self.zengin_deposit_type,
            self.zengin_number,
        ) {
            (
                Some(requester_code),
                Some(requester_name),
                Some(bank_code),
                Some(branch_code),
                Some(deposit_type),
                Some(number),
            ) => Some(ZenginDebtor {
                requester_code,
                requester_name: requester_name.clone(),
                bank_code,
                bank_name: self.zengin_bank_name.clone().unwrap_or_default(),
                branch_code,
                branch_name: self.zengin_branch_name.clone().unwrap_or_default(),
                deposit_type,
                number,
            }),
            _ => None,
        };
        Debtor { name: self.name.clone(), iban: self.iban.clone(), bic: self.bic.clone(), zengin }
    }
}

/// The file a run's payouts leave in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// ISO 20022 CustomerCreditTransferInitiation `pain.001.001.09`.
    Pain001,
    /// Zengin 総合振込 (JPY, Japanese accounts).
    Zengin,
}

/// A run's id: its cutoff's.
pub fn run_id(cutoff: Timestamp) -> String {
    format!("clr_{}", cutoff.unix_s())
}

fn derived_hex(label: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new().chain_update(b"kessai-clearing\0").chain_update(label);
    for part in parts {
        h = h.chain_update([0]).chain_update(part.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A payout's id: one per run, store and currency.
pub fn payout_id(run: &str, store: &StoreId, currency: Currency) -> String {
    format!("po_{}", &derived_hex("payout", &[run, store.as_str(), currency.code()])[..32])
}

/// What the bank files quote for a payout (pain.001 EndToEndId, Zengin
/// EDI): `KS` and 18 uppercase hex digits (72 bits) of its id, 20
/// characters, which both formats carry.
pub fn bank_ref(payout: &str) -> String {
    format!("KS{}", derived_hex("bank-ref", &[payout])[..18].to_ascii_uppercase())
}

/// A token's refund account (`BBBB-SSS-T-NNNNNNN` or an IBAN) with its
/// holder, as a bank file carries it.
pub fn refund_payee(account: &str, holder: &str) -> Result<PayeeAccount, kessai_bank::payout::AccountError> {
    // An IBAN's text names no BIC (`::`), so a holder that starts like
    // one (`COBADEFF:…`) stays the holder.
    let text = if account.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        format!("zengin:{account}:{holder}")
    } else {
        format!("iban:{account}::{holder}")
    };
    text.parse::<PayeeAccount>()
}

/// A token's payback's id: one per run and token.
pub fn payback_id(run: &str, token: &TokenId) -> String {
    format!("tpb_{}", &derived_hex("token-payback", &[run, &token.to_string()])[..32])
}

/// What the bank files quote for a payback: `KT` and 18 uppercase hex
/// digits of its id (a payout's start `KS`).
pub fn payback_bank_ref(payback: &str) -> String {
    format!("{PAYBACK_REF_PREFIX}{}", derived_hex("bank-ref", &[payback])[..18].to_ascii_uppercase())
}

const PAYBACK_REF_PREFIX: &str = "KT";

/// The id of the bank file of run `run`'s payouts in `currency`
/// (pain.001 `MsgId`), as a pain.002 rejecting it whole quotes it.
pub fn batch_id(run: &str, currency: Currency) -> String {
    format!("{run}-{}", currency.code())
}

/// What a clearing run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunReport {
    pub run: String,
    pub cutoff: u64,
    /// Payouts made by this call.
    pub payouts: u64,
    /// What they came to, per currency (minor units).
    pub paid: Vec<(Currency, u64)>,
    /// Stores this run had paid before (a resumed or repeated run).
    pub paid_before: u64,
    /// Stores whose open items net to nothing or less: carried.
    pub carried: u64,
    /// Stores skipped, with why (no or an invalid bank account).
    pub skipped: Vec<(StoreId, String)>,
    /// Whether the run was done before this call (nothing was done).
    pub done_before: bool,
    /// Expired deposit tokens paid back by this call, and what they came
    /// to per currency (minor units).
    pub paybacks: u64,
    pub paid_back: Vec<(Currency, u64)>,
    /// Expired tokens not paid back, with why (their refund account cannot
    /// be paid: an operator corrects it).
    pub paybacks_skipped: Vec<(String, String)>,
}

/// What importing a bank's file about payouts did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeReport {
    pub file: String,
    pub format: String,
    pub settled: u64,
    pub failed: u64,
    /// Entries recorded for the operator (an unknown reference, a payout
    /// no longer in transit, another amount).
    pub review: u64,
    /// Entries that say nothing final yet (pending).
    pub pending: u64,
    /// Entries imported before.
    pub already_imported: u64,
}

impl Center {
    fn fee_of(&self, found: Option<(u32, u64)>) -> (u32, u64) {
        found.unwrap_or((self.clearing.fee_bp, self.clearing.fee_fixed_minor))
    }

    /// Runs (or resumes, or finds done) the clearing up to `cutoff`: one
    /// payout per store and currency with open items (see the module doc).
    pub async fn clearing_run(&self, cutoff: Timestamp) -> Result<RunReport, ClearingError> {
        let now = self.clock.now();
        if cutoff > now {
            return Err(ClearingError::FutureCutoff { cutoff });
        }
        let run = run_id(cutoff);
        let mut token = [0u8; 8];
        self.random.generator().fill_bytes(&mut token);
        let holder: String = token.iter().map(|b| format!("{b:02x}")).collect();
        let mut report = RunReport { run: run.clone(), cutoff: cutoff.unix_s(), ..RunReport::default() };
        match self.db.claim_clearing_run(&run, cutoff, &holder, now, lease_until(now)).await? {
            RunClaim::Claimed(_) => {}
            RunClaim::Done(_) => {
                report.done_before = true;
                return Ok(report);
            }
            RunClaim::Held(r) => {
                return Err(ClearingError::Held { run, holder: r.claimed_by, until: r.claimed_until });
            }
        }
        let mut after: Option<(StoreId, Currency)> = None;
        loop {
            let page = self.db.stores_to_clear(cutoff, after.as_ref(), STORES_PER_PAGE).await?;
            let Some(last) = page.last().cloned() else { break };
            for chunk in page.chunks(STORES_PER_WRITE) {
                let mut work = Vec::with_capacity(chunk.len());
                for (store, currency) in chunk {
                    match self.payee_of(store).await? {
                        Ok(account) => {
                            let (fee_bp, fee_fixed_minor) = self.fee_of(self.db.store_fee(store, *currency).await?);
                            let claimed_only = self.db.paid_on_claim(store).await?;
                            let id = payout_id(&run, store, *currency);
                            work.push(ClearStore {
                                run_id: run.clone(),
                                holder: holder.clone(),
                                bank_ref: bank_ref(&id),
                                payout_id: id,
                                store: store.clone(),
                                currency: *currency,
                                cutoff,
                                payee_account: account.to_string(),
                                fee_bp,
                                fee_fixed_minor,
                                claimed_only,
                            });
                        }
                        Err(why) => report.skipped.push((store.clone(), why)),
                    }
                }
                let now = self.renew_claim(&run, cutoff, &holder).await?;
                // A store this run paid is skipped when run again.
                let cleared = held_write(&run, || self.db.clear_stores(work.clone(), payout_books, now)).await?;
                for c in cleared {
                    match c {
                        Cleared::Paid(p) => {
                            let p = *p;
                            report.payouts += 1;
                            add_to(&mut report.paid, p.currency, p.amount_minor);
                            tracing::info!(payout = %p.id, store = %p.store, amount = p.amount_minor, currency = %p.currency, fees = p.fees_minor, items = p.items, "payout made");
                        }
                        Cleared::Before => report.paid_before += 1,
                        Cleared::Carried { .. } => report.carried += 1,
                    }
                }
            }
            after = Some(last);
        }
        self.pay_back_tokens(&run, &holder, cutoff, &mut report).await?;
        if !self.db.finish_clearing_run(&run, &holder, self.clock.now()).await? {
            return Err(ClearingError::LostClaim(run));
        }
        tracing::info!(run = %report.run, payouts = report.payouts, before = report.paid_before, carried = report.carried, skipped = report.skipped.len(), "clearing run done");
        Ok(report)
    }

    /// Pays back, in run `run`, every deposit token expired by the cutoff
    /// less [`ClearingPolicy::token_payback_after_s`] and not redeemed:
    /// its value to its refund account (or where an operator corrected it
    /// to), a line of the run's bank file. A token the provider honoured
    /// meanwhile is left; one whose account cannot be paid is skipped with
    /// why.
    async fn pay_back_tokens(
        &self,
        run: &str,
        holder: &str,
        cutoff: Timestamp,
        report: &mut RunReport,
    ) -> Result<(), ClearingError> {
        let due = Timestamp::from_unix_s(cutoff.unix_s().saturating_sub(self.clearing.token_payback_after_s));
        let mut after = String::new();
        // The provider out of reach once: the rest of this run's paybacks
        // are skipped for it, not each waited for.
        let mut unreachable: Option<String> = None;
        // The run's lease is kept while the provider is asked (each call
        // may take its timeout).
        let mut renewed = std::time::Instant::now();
        loop {
            let page = self.db.tokens_to_pay_back(due, &after, STORES_PER_WRITE as i64).await?;
            let Some(last) = page.last() else { break };
            after = last.id.to_string();
            let mut work = Vec::with_capacity(page.len());
            for t in &page {
                let payee = match self.payback_payee(t).await? {
                    Ok(payee) => payee,
                    Err(why) => {
                        // Not payable; but a redemption the provider holds
                        // needs no payee.
                        let why = self.write_honoured_redemption(t).await?.unwrap_or(why);
                        report.paybacks_skipped.push((t.id.to_string(), why));
                        continue;
                    }
                };
                let key_version =
                    t.key_version.ok_or_else(|| DbError::Corrupt(format!("token {} has no key version", t.id)))?;
                // The provider's register takes it for its payback first
                // (once: asked again, it answers alike), so it is never
                // both paid back and redeemed.
                if let Some(why) = &unreachable {
                    report.paybacks_skipped.push((t.id.to_string(), why.clone()));
                    continue;
                }
                if renewed.elapsed() > std::time::Duration::from_secs(LEASE_S / 4) {
                    self.renew_claim(run, cutoff, holder).await?;
                    renewed = std::time::Instant::now();
                }
                match self.payback_honoured(t).await {
                    Ok(()) => {}
                    Err(Ok(why)) => {
                        let why = match self.write_honoured_redemption(t).await? {
                            Some(written) => written,
                            None => why,
                        };
                        report.paybacks_skipped.push((t.id.to_string(), why));
                        continue;
                    }
                    Err(Err(why)) => {
                        report.paybacks_skipped.push((t.id.to_string(), why.clone()));
                        unreachable = Some(why);
                        continue;
                    }
                }
                let id = payback_id(run, &t.id);
                let now = self.clock.now();
                work.push(Payback {
                    books: Entries::token_payback(&id, t.amount)?,
                    key_version,
                    row: PaybackRow {
                        bank_ref: payback_bank_ref(&id),
                        id,
                        token_id: t.id,
                        run_id: run.to_owned(),
                        amount: t.amount,
                        payee_account: payee.to_string(),
                        status: "in_transit".into(),
                        reason: None,
                        created_at: now,
                        updated_at: now,
                    },
                });
            }
            if work.is_empty() {
                continue;
            }
            let now = self.renew_claim(run, cutoff, holder).await?;
            let made = held_write(run, || self.db.pay_back_tokens(run, holder, work.clone(), now)).await?;
            for (p, made) in work.iter().zip(made) {
                if !made {
                    continue;
                }
                let (c, minor) = (p.row.amount.currency(), p.row.amount.amount_minor());
                report.paybacks += 1;
                add_to(&mut report.paid_back, c, minor);
                tracing::info!(payback = %p.row.id, token = %p.row.token_id, amount = %p.row.amount, "expired token paid back");
            }
        }
        Ok(())
    }

    /// A token whose payback the provider refuses because it honoured the
    /// card's REDEEM of it (this token's REDEEM transaction, in its
    /// register): the card gave it up, and the finish that writes the
    /// redemption never came (the card lost, or out of use). The
    /// redemption is written from the register: the value owed to the card
    /// (or its replacement), never paid back. What was written, or `None`.
    async fn write_honoured_redemption(&self, t: &TokenRow) -> Result<Option<String>, ClearingError> {
        let Some(tokens) = self.tokens.as_ref() else { return Ok(None) };
        let held = match tokens.provider.held_redemption(&t.id, &t.redeem_tx).await {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::warn!(token = %t.id, error = %e, "reading the provider's register");
                return Ok(None);
            }
        };
        let tx = hex::encode(t.redeem_tx.as_bytes());
        // The card's record of it, if its log was collected: its counter
        // and time; else the register's time.
        let record = self.db.collected_log(&t.card_id).await?.into_iter().find(|e| {
            e.kind == kessai_api::LogKind::TokenRedeemed
                && e.transaction_id == tx
                && e.amount_minor == t.amount.amount_minor()
        });
        let (counter, at) = match record {
            Some(e) => (Some(e.counter), Timestamp::from_unix_s(e.time_unix_s)),
            None => (None, Timestamp::from_unix_s(held.entered_at)),
        };
        let mut attempt = 0;
        let to = loop {
            let now = self.clock.now();
            let r = crate::db::Redemption::of(t, counter, at, now)?;
            let r = self.owed_to_replacement::<ClearingError>(r).await?;
            let to = r.owed.as_ref().map(|(o, _)| o.body.card_id).unwrap_or(t.card_id);
            match self.db.write_redemption(&r, now).await {
                Ok(()) => break to,
                // Written meanwhile (the card's finish came after all), or
                // its card replaced since its target was read: read again.
                Err(DbError::Conflict) if attempt < crate::limits::STEP_RETRIES_MAX => {
                    if self.db.token(&t.id).await?.is_some_and(|now| now.status == TokenStatus::Redeemed) {
                        return Ok(None);
                    }
                    attempt += 1;
                }
                Err(e) if e.is_retryable() && attempt < crate::limits::STEP_RETRIES_MAX => attempt += 1,
                Err(e) => {
                    tracing::error!(token = %t.id, error = %e, "writing a redemption the provider honoured");
                    return Ok(Some(format!(
                        "the provider honoured its redemption, which could not be written ({e}); asked again next run"
                    )));
                }
            }
        };
        tracing::warn!(token = %t.id, card = %to, amount = %t.amount, "a redemption the provider honoured, never finished by the card: written from its register");
        Ok(Some(format!(
            "not paid back: the card gave it up and the credit service provider honoured that; its redemption is \
             written now, {} owed to card {to}",
            t.amount
        )))
    }

    /// Whether the credit service provider honours expired token `t`'s
    /// payback; why not: `Ok(why)` for this token alone (its refusal, an
    /// answer out of protocol, nothing to ask with), `Err(why)` the
    /// provider down (asked again next run, and not again in this one).
    async fn payback_honoured(&self, t: &TokenRow) -> Result<(), Result<String, String>> {
        let no = |why: &str| Ok(why.to_owned());
        let provider =
            self.tokens.as_ref().map(|p| &p.provider).ok_or_else(|| no("no credit service provider is configured"))?;
        let sealed = t.sealed.as_deref().ok_or_else(|| no("the token has no sealed bytes"))?;
        match provider.pay_back(sealed).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(why)) => Err(Ok(format!("the credit service provider refuses its payback: {why}"))),
            Err(e) if e.is_down() => Err(Err(format!("{e}; asked again in the next run"))),
            Err(e) => Err(Ok(format!("{e}; asked again in the next run"))),
        }
    }

    /// Where expired token `t` is paid back: where an operator said, or
    /// its refund account in the member's name; or why it cannot be.
    async fn payback_payee(&self, t: &TokenRow) -> Result<Result<PayeeAccount, String>, ClearingError> {
        if let Some(text) = &t.payback_account {
            return Ok(text.parse::<PayeeAccount>().map_err(|e| format!("the corrected account: {e}")));
        }
        if let Some(holder) = &t.refund_holder {
            return Ok(refund_payee(&t.refund_account, holder)
                .map_err(|e| format!("the refund account with the holder the member gave: {e}; correct it")));
        }
        let Some(member) = self.db.member(&t.member).await? else {
            return Ok(Err("the token's member is not registered".into()));
        };
        let holder = crate::tokens::member_name(&member.details);
        Ok(refund_payee(&t.refund_account, &holder)
            .map_err(|e| format!("the refund account in the member's name ({holder}): {e}; correct it")))
    }

    /// Renews `holder`'s lease on run `run` (refused if another instance
    /// took it over); the time it was renewed at.
    async fn renew_claim(&self, run: &str, cutoff: Timestamp, holder: &str) -> Result<Timestamp, ClearingError> {
        let now = self.clock.now();
        match self.db.claim_clearing_run(run, cutoff, holder, now, lease_until(now)).await? {
            RunClaim::Claimed(_) => Ok(now),
            _ => Err(ClearingError::LostClaim(run.to_owned())),
        }
    }

    /// The store's bank account, or why it cannot be paid.
    async fn payee_of(&self, store: &StoreId) -> Result<Result<PayeeAccount, String>, ClearingError> {
        let Some(record) = self.db.store(store).await? else {
            return Ok(Err("the store is not registered".into()));
        };
        Ok(match record.bank_account.as_deref().map(str::trim) {
            None | Some("") => Err("the store has no bank account".into()),
            Some(text) => text.parse::<PayeeAccount>().map_err(|e| format!("the store's bank account: {e}")),
        })
    }

    /// The bank file of run `run`'s payouts in `currency`, in `format`:
    /// the same bytes every time it is asked.
    pub async fn payout_file(
        &self,
        run: &str,
        currency: Currency,
        format: FileFormat,
    ) -> Result<Vec<u8>, ClearingError> {
        let batch = self.payout_batch(run, currency).await?;
        if format == FileFormat::Zengin && batch.debtor.zengin.is_none() {
            return Err(ClearingError::NoDebtor("Zengin"));
        }
        match format {
            FileFormat::Pain001 => kessai_bank::pain001::write(&batch).map(String::into_bytes),
            FileFormat::Zengin => kessai_bank::zengin::write_transfer_request(&batch),
        }
        .map_err(|e| ClearingError::BankFile(e.to_string()))
    }

    /// Run `run`'s payouts in `currency` as a bank file carries them, in
    /// order of their bank references.
    pub async fn payout_batch(&self, run: &str, currency: Currency) -> Result<PayoutBatch, ClearingError> {
        let found = self.db.clearing_run(run).await?.ok_or_else(|| ClearingError::UnknownRun(run.to_owned()))?;
        let mut payouts = self.db.payouts(Some(run), None, MAX_PAYOUTS).await?;
        payouts.retain(|p| p.currency == currency);
        let mut paybacks = self.db.paybacks(Some(run), None, MAX_PAYOUTS).await?;
        paybacks.retain(|p| p.amount.currency() == currency);
        let line = |id: &str, bank_ref: &str, account: &str, amount: Money, remittance: String| {
            let payee = account
                .parse::<PayeeAccount>()
                .map_err(|e| ClearingError::BankFile(format!("{id}: the account stored with it: {e}")))?;
            Ok(PayoutLine { end_to_end_id: bank_ref.to_owned(), amount, payee, remittance })
        };
        let mut lines = payouts
            .iter()
            .map(|p| {
                let amount =
                    Money::new(p.amount_minor, p.currency).map_err(|e| ClearingError::BankFile(e.to_string()))?;
                line(&p.id, &p.bank_ref, &p.payee_account, amount, format!("KESSAI PAYOUT {} {}", p.run_id, p.id))
            })
            .chain(paybacks.iter().map(|p| {
                line(&p.id, &p.bank_ref, &p.payee_account, p.amount, format!("KESSAI TOKEN PAYBACK {}", p.token_id))
            }))
            .collect::<Result<Vec<PayoutLine>, ClearingError>>()?;
        if lines.is_empty() {
            return Err(ClearingError::NothingToPay(run.to_owned(), currency));
        }
        lines.sort_by(|a, b| a.end_to_end_id.cmp(&b.end_to_end_id));
        // Paid the day after the run started.
        let execution_date = kessai_bank::Date::of(Timestamp::from_unix_s(found.created_at.unix_s() + 86_400));
        PayoutBatch::new(
            &batch_id(&found.id, currency),
            found.created_at,
            execution_date,
            self.clearing.debtor.debtor(),
            lines,
        )
        .map_err(|e| ClearingError::BankFile(e.to_string()))
    }

    /// An operator corrects where a store is paid (a payout came back:
    /// the account was closed, its name did not match): `account` in any
    /// form a bank file carries, kept in its normal form. What came back
    /// is on the store's payable again; the next run pays it there.
    pub async fn correct_bank_account(
        &self,
        store: &StoreId,
        seen: Option<&str>,
        account: &str,
        reason: &str,
        by: &crate::console::Actor,
    ) -> Result<String, ClearingError> {
        let record = self.db.store(store).await?.ok_or_else(|| ClearingError::UnknownStore(store.to_string()))?;
        let account = account
            .trim()
            .parse::<kessai_bank::payout::PayeeAccount>()
            .map_err(|e| ClearingError::BadAccount(format!("the bank account: {e}")))?
            .to_string();
        let was = record.bank_account.unwrap_or_default();
        // What the operator saw must still be the account: a correction
        // made meanwhile is not overwritten.
        if seen.is_some_and(|seen| seen != was) {
            return Err(ClearingError::AccountChanged(store.to_string()));
        }
        if was == account {
            return Err(ClearingError::BadAccount(format!("store {store} is paid to that account already")));
        }
        let trail = by.did(
            "store_bank_account",
            store.as_str(),
            serde_json::json!({ "bank_account": was, "reason": serde_json::Value::Null }),
            serde_json::json!({ "bank_account": account, "reason": reason }),
        );
        if !self.db.set_bank_account(store, &was, &account, self.clock.now(), trail).await? {
            return Err(ClearingError::AccountChanged(store.to_string()));
        }
        tracing::info!(%store, operator = %by.name, "store's bank account corrected");
        Ok(account)
    }

    /// An operator says where expired token `token` is paid back (its
    /// payback came back, or its refund account cannot be paid in the
    /// member's name): `account` in any form a bank file carries, with the
    /// holder. The token must still be `seen`; the next run pays it there.
    pub async fn correct_payback_account(
        &self,
        token: &TokenId,
        seen: Option<TokenStatus>,
        account: &str,
        reason: &str,
        by: &crate::console::Actor,
    ) -> Result<String, ClearingError> {
        let t = self.db.token(token).await?.ok_or_else(|| ClearingError::UnknownToken(token.to_string()))?;
        let not = |why: &str| ClearingError::TokenNotPayable(token.to_string(), why.to_owned());
        if !matches!(
            t.status,
            TokenStatus::Issued | TokenStatus::Stored | TokenStatus::Expired | TokenStatus::PaybackFailed
        ) {
            return Err(not(&format!("it is {}, not waiting for a payback", t.status.as_str())));
        }
        let now = self.clock.now();
        // Within the week after the expiry a REDEEM the card answered just
        // before it may still settle (§13.5): a run pays nothing back yet.
        let due = Timestamp::from_unix_s(now.unix_s().saturating_sub(self.clearing.token_payback_after_s));
        let on_card = matches!(t.status, TokenStatus::Issued | TokenStatus::Stored);
        if t.expires_at.is_none_or(|e| e > now) {
            return Err(not("it has not expired: it is redeemed on the card, not paid back"));
        }
        if on_card && t.expires_at.is_some_and(|e| e > due) {
            return Err(not("a redemption the card made before its expiry may still settle; correct it after"));
        }
        if seen.is_some_and(|seen| seen != t.status) {
            return Err(not("it changed meanwhile: look again"));
        }
        let account = account
            .trim()
            .parse::<PayeeAccount>()
            .map_err(|e| ClearingError::BadAccount(format!("the bank account: {e}")))?
            .to_string();
        let trail = by.did(
            "token_payback_account",
            &token.to_string(),
            serde_json::json!({ "status": t.status.as_str(), "account": t.payback_account }),
            serde_json::json!({ "status": "expired", "account": account, "reason": reason }),
        );
        if !self.db.set_payback_account(token, t.status, &account, now, due, trail).await? {
            return Err(not("it changed meanwhile: look again"));
        }
        tracing::info!(%token, operator = %by.name, "token's payback account corrected");
        Ok(account)
    }

    /// Imports what the bank says of payouts (pain.002, camt.054, a Zengin
    /// result): each entry once.
    pub async fn import_payout_outcomes(&self, bytes: &[u8]) -> Result<OutcomeReport, ClearingError> {
        let read = kessai_bank::read_outcomes(bytes).map_err(|e| ClearingError::BankFile(e.to_string()))?;
        let mut report =
            OutcomeReport { file: read.id.clone(), format: format!("{:?}", read.format), ..OutcomeReport::default() };
        let mut outcomes = read.outcomes.clone();
        if let Some(group) = &read.group_rejected {
            // The whole file refused: every payout it carried failed.
            let run = group.original_message_id.rsplit_once('-').map(|(run, _)| run).unwrap_or_default();
            let payouts = self.db.payouts(Some(run), None, MAX_PAYOUTS).await?;
            let paybacks = self.db.paybacks(Some(run), None, MAX_PAYOUTS).await?;
            let carried = payouts
                .iter()
                .map(|p| (batch_id(&p.run_id, p.currency), &p.bank_ref))
                .chain(paybacks.iter().map(|p| (batch_id(&p.run_id, p.amount.currency()), &p.bank_ref)));
            for (batch, bank_ref) in carried {
                if batch != group.original_message_id {
                    continue;
                }
                outcomes.push(kessai_bank::PayoutOutcome {
                    end_to_end_id: bank_ref.clone(),
                    status: PayoutStatus::Rejected,
                    amount: None,
                    reason: group.reason.clone(),
                    booked_on: None,
                    entry_key: format!("{}/group/{}", read.id, bank_ref),
                });
            }
        }
        for outcome in &outcomes {
            let (status, reason) = match outcome.status {
                PayoutStatus::Settled => ("settled", outcome.reason.clone()),
                PayoutStatus::Rejected | PayoutStatus::Returned => ("failed", outcome.reason.clone()),
                _ => {
                    report.pending += 1;
                    continue;
                }
            };
            let event = PayoutEvent {
                entry_key: format!("payout:{}", outcome.entry_key),
                file: read.id.chars().take(140).collect(),
                bank_ref: outcome.end_to_end_id.clone(),
                status: status.to_owned(),
                reason,
            };
            let amount = outcome.amount;
            let taken = if event.bank_ref.starts_with(PAYBACK_REF_PREFIX) {
                self.take_payback_event(event, amount).await?
            } else {
                match self.take_event(&event, amount, status).await {
                    Err(DbError::Inconsistent(why)) => {
                        let review = PayoutEvent { status: "review".into(), reason: Some(why), ..event };
                        self.db.take_payout_event(review, Box::new(|_| unreachable_effect()), self.clock.now()).await?.0
                    }
                    other => other?,
                }
            };
            match (taken, status) {
                (EventTaken::Applied, "settled") => report.settled += 1,
                (EventTaken::Applied, _) => report.failed += 1,
                (EventTaken::Review, _) => report.review += 1,
                (EventTaken::Before, _) => report.already_imported += 1,
            }
        }
        tracing::info!(file = %report.file, settled = report.settled, failed = report.failed, review = report.review, "payout outcomes imported");
        Ok(report)
    }
}

impl Center {
    /// Records one entry of the bank's file with its effect on the payout
    /// (run again after a deadlock with a concurrent write).
    async fn take_event(
        &self,
        event: &PayoutEvent,
        amount: Option<Money>,
        status: &'static str,
    ) -> Result<EventTaken, DbError> {
        let mut attempt = 0;
        loop {
            let effect: crate::db::OutcomeEffect = Box::new(move |p: &PayoutRow| {
                if let Some(a) = amount
                    && (a.amount_minor() != p.amount_minor || a.currency() != p.currency)
                {
                    return Err(DbError::Inconsistent(format!(
                        "the bank says {a} for payout {} of {} {}",
                        p.id, p.amount_minor, p.currency
                    )));
                }
                let money = Money::new(p.amount_minor, p.currency).map_err(|e| DbError::Corrupt(e.to_string()))?;
                let entries = if status == "settled" {
                    Entries::payout_settled(&p.id, money)
                } else {
                    Entries::payout_returned(&p.id, &p.store, money)
                };
                Ok((status.to_owned(), entries.map_err(|e| DbError::Inconsistent(e.to_string()))?))
            });
            match self.db.take_payout_event(event.clone(), effect, self.clock.now()).await {
                Err(e) if e.is_retryable() && attempt < STEP_RETRIES_MAX => attempt += 1,
                other => return other.map(|(taken, _)| taken),
            }
        }
    }
}

impl Center {
    /// Records one entry of the bank's file about a token's payback (run
    /// again after a deadlock with a concurrent write).
    async fn take_payback_event(&self, event: PayoutEvent, amount: Option<Money>) -> Result<EventTaken, DbError> {
        let mut attempt = 0;
        loop {
            match self.db.take_payback_event(event.clone(), amount, self.clock.now()).await {
                Err(e) if e.is_retryable() && attempt < STEP_RETRIES_MAX => attempt += 1,
                other => return other,
            }
        }
    }
}

/// Until when a claim taken or renewed at `now` holds.
fn lease_until(now: Timestamp) -> Timestamp {
    Timestamp::from_unix_s(now.unix_s().saturating_add(LEASE_S))
}

/// A write of run `run` under its claim: run again after a deadlock with a
/// concurrent write (PostgreSQL); the claim gone (`Conflict`), the run is
/// lost to another instance.
async fn held_write<T, F, W>(run: &str, write: W) -> Result<T, ClearingError>
where
    W: Fn() -> F,
    F: std::future::Future<Output = Result<T, DbError>>,
{
    let mut attempt = 0;
    loop {
        match write().await {
            Err(DbError::Conflict) => return Err(ClearingError::LostClaim(run.to_owned())),
            Err(e) if e.is_retryable() && attempt < STEP_RETRIES_MAX => attempt += 1,
            other => return Ok(other?),
        }
    }
}

/// Adds `minor` to `currency`'s sum in `totals`.
fn add_to(totals: &mut Vec<(Currency, u64)>, currency: Currency, minor: u64) {
    match totals.iter_mut().find(|(c, _)| *c == currency) {
        Some((_, sum)) => *sum = sum.saturating_add(minor),
        None => totals.push((currency, minor)),
    }
}

/// A review event has no effect (`take_payout_event` never calls it).
fn unreachable_effect() -> Result<(String, Entries), DbError> {
    Err(DbError::Inconsistent("a review entry changes no payout".into()))
}

/// The books of a payout: store payable → payouts in transit (what is
/// sent) and → fees.
fn payout_books(p: &PayoutRow) -> Result<Entries, DbError> {
    let net = Money::new(p.amount_minor, p.currency).map_err(|e| DbError::Corrupt(e.to_string()))?;
    let fees = Money::new(p.fees_minor, p.currency).map_err(|e| DbError::Corrupt(e.to_string()))?;
    Entries::payout(&p.id, &p.store, net, fees).map_err(|e| DbError::Inconsistent(e.to_string()))
}

/// For `kessai bench clearing` only: `stores` synthetic stores
/// (`bench-<n>`, each with a bank account) and `settlements` purchase
/// items among them (amounts 100 to 10,000 yen) at `at`, with books that
/// agree (`Entries::bench_payables`). Returns what the items sum to.
pub async fn seed_for_bench(
    center: &Center,
    stores: u32,
    settlements: u64,
    at: Timestamp,
) -> Result<u64, ClearingError> {
    center.db.seed_bench(stores, settlements, at).await?;
    let sums = center.db.open_by_store().await?;
    let mut total = 0u64;
    for chunk in sums.chunks(1_000) {
        let payables = chunk
            .iter()
            .map(|(store, minor)| {
                total += minor;
                Ok((store.clone(), Money::new(*minor, Currency::JPY).map_err(|e| DbError::Corrupt(e.to_string()))?))
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        center.books.apply(Entries::bench_payables(&payables)?, at.unix_s()).await?;
    }
    Ok(total)
}

/// Why a payment claim was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimError {
    #[error("the claim does not verify: {0}")]
    Refused(kessai_core::jws::JwsError),
    #[error("{signer} may not claim for {payee}: only the store or its mall")]
    NotPayee { signer: StoreId, payee: StoreId },
    #[error("claim id {0} was used before for another claim")]
    ClaimIdReused(String),
    /// Settlements the books do not hold as claimed: none is accepted.
    #[error("the claim asks for more than the books hold: {}", .0.iter().map(|(s, why)| format!("{s} ({why})")).collect::<Vec<_>>().join(", "))]
    Differs(Vec<(String, String)>),
    #[error("the books kept changing under the claim; send it again")]
    Busy,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("signing the statement: {0}")]
    Signing(String),
}

pub use kessai_api::views::ClaimReply;

impl Center {
    /// A store's signed payment claim (FIG. 9): every settlement checked
    /// against the books (open for the payee up to the cutoff, not paid,
    /// not claimed, claimed for no more than it comes to after its
    /// refunds); accepted whole with a signed statement, or refused whole
    /// naming the settlements that differ. The same claim id again answers
    /// the same statement.
    pub async fn claim_payment(&self, token: &str) -> Result<ClaimReply, ClaimError> {
        use kessai_core::messages::claim::{self, AcceptedLine, ClaimStatement, ClaimStatementDraft};

        let keys = self.db.store_keys().await?;
        let verified =
            claim::verify(token, &keys, self.clock.as_ref(), &self.center_id).map_err(ClaimError::Refused)?;
        let c = verified.message();
        let payee = c.payee();
        let by_mall = self.db.store(payee).await?.and_then(|r| r.mall).is_some_and(|m| &m == c.store());
        if c.store() != payee && !by_mall {
            return Err(ClaimError::NotPayee { signer: c.store().clone(), payee: payee.clone() });
        }
        let key = format!("{} {}", c.store(), c.claim_id());
        let asked = serde_json::to_string(c).map_err(|e| ClaimError::Db(DbError::Corrupt(e.to_string())))?;
        let request_hash = kessai_core::digest::Sha256Digest::of(asked.as_bytes()).to_string();
        let fee = self.fee_of(self.db.store_fee(payee, c.currency()).await?);
        let money =
            |minor| Money::new(minor, c.currency()).map_err(|e| ClaimError::Db(DbError::Corrupt(e.to_string())));
        for _ in 0..=STEP_RETRIES_MAX {
            if let Some((hash, statement)) = self.db.claim(&key).await? {
                return if hash == request_hash {
                    Ok(ClaimReply { statement })
                } else {
                    Err(ClaimError::ClaimIdReused(c.claim_id().to_string()))
                };
            }
            let mut lines = Vec::with_capacity(c.lines().len());
            let mut accepted = Vec::with_capacity(c.lines().len());
            let mut differs = Vec::new();
            for line in c.lines() {
                let settlement = line.settlement_id.as_str();
                let figure = self.db.claim_figure(payee, c.currency(), settlement, c.cutoff()).await?;
                let Some(purchase) = figure.purchase_minor else {
                    differs.push((settlement.to_owned(), "not a purchase open for this store up to the cutoff".into()));
                    continue;
                };
                let line_fee = item_fee("purchase", i64::try_from(purchase).unwrap_or(i64::MAX), fee.0, fee.1);
                let net = u64::try_from(figure.net_minor).unwrap_or(0);
                if line.amount.amount_minor() > net {
                    differs.push((settlement.to_owned(), format!("the books hold {net}")));
                } else if net <= line_fee {
                    differs.push((settlement.to_owned(), "its refunds leave nothing due after its fee".into()));
                } else {
                    lines.push(AcceptedLine {
                        settlement_id: line.settlement_id.clone(),
                        amount: money(net)?,
                        fee: money(line_fee)?,
                    });
                    accepted.push((settlement.to_owned(), figure));
                }
            }
            if !differs.is_empty() {
                tracing::info!(claim = %key, payee = %payee, differing = differs.len(), "payment claim refused");
                return Err(ClaimError::Differs(differs));
            }
            let gross: u64 = lines.iter().map(|l| l.amount.amount_minor()).sum();
            let fees: u64 = lines.iter().map(|l| l.fee.amount_minor()).sum();
            let now = self.clock.now();
            let statement = ClaimStatement::new(ClaimStatementDraft {
                claim_id: c.claim_id().clone(),
                payee: payee.clone(),
                cutoff: c.cutoff(),
                lines,
                amount: money(gross - fees)?,
                fees: money(fees)?,
                accepted_at: now,
            })
            .map_err(|e| ClaimError::Signing(e.to_string()))?;
            let mut generator = self.random.generator();
            let claims = kessai_core::jws::Claims::for_lifetime(
                self.center_id.clone(),
                kessai_core::ids::MessageId::generate(&mut *generator),
                now,
                crate::limits::COMPLETION_LIFETIME_S,
            )
            .map_err(|e| ClaimError::Signing(e.to_string()))?;
            let signed = claim::sign_statement(&claims, &statement, self.center_key.as_ref())
                .map_err(|e| ClaimError::Signing(e.to_string()))?;
            let record = crate::db::ClaimRecord {
                key: key.clone(),
                claim_id: c.claim_id().to_string(),
                payee: payee.clone(),
                currency: c.currency(),
                cutoff: c.cutoff(),
                request_hash: request_hash.clone(),
                statement: signed.clone(),
                lines: accepted,
            };
            match self.db.take_claim(record, now).await {
                Ok(crate::db::ClaimTaken::Recorded) => {
                    tracing::info!(claim = %key, payee = %payee, amount = gross - fees, "payment claim accepted");
                    return Ok(ClaimReply { statement: signed });
                }
                // Recorded meanwhile (a retry racing itself): answered above.
                Ok(crate::db::ClaimTaken::Before { .. } | crate::db::ClaimTaken::Changed) => {}
                Err(DbError::Conflict) => {}
                Err(e) if e.is_retryable() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(ClaimError::Busy)
    }
}
