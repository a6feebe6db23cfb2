//! The wallet's part of a purchase (patent ST7, ST15–ST18, ST20): read the
//! card, relay the center's sealed commands, check SIG2 before the DEBIT
//! goes to the card, check SIG3 and SIG4 after; cancel and recovery.
//!
//! A purchase is a chain of values, each made only by the step before:
//! [`Offered`] (SIG2 verified and tied to the bill, card and DEBIT) →
//! [`DebitRelayed`] → [`Completed`] (SIG3 verified) → [`ReceiptView`]
//! (SIG4 verified).

use std::sync::Arc;

use axum::http::Uri;
use kessai_api::{LogEntry, Phase, StatementPhase, StatementReply, TokenSessionPhase, TokenSessionReply, request};
use kessai_core::Money;
use kessai_core::ids::{CardId, SettlementId};
use kessai_core::jws::{self, Verified};
use kessai_core::messages::offer::Offer;
use kessai_core::profile::Profile;
use kessai_core::random::{OsRandom, Random};
use kessai_core::time::{Clock, SystemClock};
use kessai_http::HttpsClient;
use tokio::sync::Mutex;

use crate::card::{ApduObserver, CardError, CardSlot, CardSummary};
use crate::center::{CenterClient, CenterError, StepReply, VerifyError};
use crate::checks::{self, HandedBill, Mismatch, UnreadableBill};
use crate::config::WalletConfig;
use crate::limits::{
    ABANDONED_OFFER_S, CENTER_TIMEOUT_MS, MAX_BILL_BYTES, MAX_RECOVERIES_PER_RUN, MAX_RETURN_URL_BYTES, RANDOM_ID_BYTES,
};
use crate::records::{LocalPhase, NewPayment, Record, Records, Update};

/// Why a payment step did not go through.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PayError {
    #[error("the store's return address {0:?} is not a safe https:// URL")]
    UnsafeReturnUrl(String),
    /// The member keystore did not open (a wrong password, a damaged file).
    #[error("your member key could not be opened: {0}")]
    MemberKey(String),
    /// The return URL is not at the origin the store signed into its bill.
    #[error("the return address {url:?} is not at the store's own address {origin}")]
    NotTheStoresAddress { url: String, origin: String },
    #[error("the bill does not say where its store is; it cannot be paid from this wallet")]
    BillWithoutOrigin,
    /// The bill is addressed to another center than this wallet's (L6).
    #[error("the bill is for the center {found:?}; this wallet pays through {expected:?}")]
    OtherCenter { found: String, expected: String },
    #[error("the bill is larger than {MAX_BILL_BYTES} bytes")]
    BillTooLarge,
    #[error(transparent)]
    BillUnreadable(#[from] UnreadableBill),
    #[error("the store's bill hand-off is invalid: {0}")]
    HandOff(String),
    #[error("card: {0}")]
    Card(#[from] CardError),
    #[error("the card is blocked")]
    CardBlocked,
    #[error(transparent)]
    Center(#[from] CenterError),
    #[error("the center answered {step} with phase {phase:?} and {apdus} commands")]
    UnexpectedReply { step: &'static str, phase: Phase, apdus: usize },
    #[error("the offer (SIG2) was refused: {0}; nothing was relayed")]
    OfferUnverified(VerifyError),
    #[error("the offer (SIG2) does not match: {0}; nothing was relayed")]
    OfferMismatch(Mismatch),
    #[error("Insufficient balance: your card holds {balance}; the bill is {amount}. Nothing was charged.")]
    Insufficient { balance: Money, amount: Money },
    #[error("the settlement was voided: {0}. Nothing was charged.")]
    Voided(String),
    /// A token's redemption went to the card and did not come back
    /// confirmed: the card may have given the token up.
    #[error(
        "the card may have given up deposit token {token}, and the center did not confirm the payment ({why}); \
         run `kessai wallet recover` to finish it: the bill is paid if the store still waits, \
         else the token's value goes onto your card, never both"
    )]
    TokenUnfinished { token: String, why: String },
    #[error("the completion (SIG3) was refused: {0}")]
    CompletionUnverified(VerifyError),
    #[error("the completion (SIG3) does not match: {0}")]
    CompletionMismatch(Mismatch),
    #[error("the receipt (SIG4) was refused: {0}")]
    ReceiptUnverified(VerifyError),
    #[error("the receipt (SIG4) does not match: {0}")]
    ReceiptMismatch(Mismatch),
    #[error("the store has not sent its receipt yet")]
    ReceiptNotYet,
    #[error("this wallet has no settlement {0}")]
    UnknownSettlement(String),
    #[error("settlement is {found:?}, not {expected}")]
    WrongPhase { expected: &'static str, found: LocalPhase },
    #[error("the consent form does not belong to this settlement")]
    BadConsentToken,
    #[error("local records: {0}")]
    Records(#[from] sqlx::Error),
    #[error("the wallet could not start: {0}")]
    Setup(String),
}

/// How a recovery (or a cancel) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The card had applied the DEBIT; SIG3 verified. Charged once.
    Completed,
    /// The card proved it never applied it. Nothing was charged.
    Voided { reason: String },
    /// The card in the reader is another one; try again with the right card.
    WrongCard { expected: CardId },
    /// The card cannot prove it; the center keeps it pending for audit.
    NeedsAudit,
    /// The recovery could not run now; it stays recorded for the next try.
    Failed { reason: String },
}

/// Progress lines for the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progress {
    CardRead(CardSummary),
    SettlementOpened(SettlementId),
    CardAuthenticated,
    OfferVerified,
    DebitRelayed,
    Completed,
    WaitingForReceipt,
    ReceiptVerified,
    Recovering(SettlementId),
}

/// One line of the bill, for the consent page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineView {
    pub name: String,
    pub quantity: u32,
    pub unit_price: Money,
    pub amount: Money,
}

/// A bill a store's page handed over, as the store describes it, shown
/// before anything is sent to the center (M2): the cardholder's click on
/// its form (same origin, with the wallet's form token) starts the
/// settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewView {
    pub store_name: String,
    pub order_id: String,
    pub lines: Vec<LineView>,
    pub total: Money,
    pub bill: String,
    pub return_url: String,
    pub form_token: String,
    /// The registered member this wallet pays as (its keystore and member
    /// number are here): the review asks for passwords A and B (#12).
    pub member: Option<String>,
    /// The member's virtual prepaid cards this wallet knows (#18): the
    /// review offers to pay from one.
    pub prepaid_cards: Vec<String>,
    /// The store's page asked for the virtual prepaid card (FIG. 14's
    /// choice of payment): that way is offered first.
    pub prepaid_first: bool,
    /// In the second embodiment (FIG. 21's balance confirmation): the
    /// balance the wallet read from the card itself, shown with the bill
    /// before anything is sent to the center.
    pub card_balance: Option<Money>,
}

/// What the cardholder agrees to (FIG. 18).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentView {
    pub settlement_id: SettlementId,
    pub store_name: String,
    pub order_id: String,
    pub lines: Vec<LineView>,
    pub amount: Money,
    /// The balance the center read inside the secure session (`offer`), or
    /// the one the wallet read from the card (second embodiment).
    pub balance: Money,
    pub balance_after: Money,
    pub card_id: CardId,
    pub consent_token: String,
    /// Whether the center signed an offer (SIG2) for this: the `offer`
    /// profile. Without one the card alone checks amount and balance.
    pub signed_offer: bool,
}

/// What the cardholder is asked to agree to: in the `offer` profile SIG2,
/// verified and tied to the bill, the card and the sealed DEBIT; in the
/// second embodiment (no SIG2) the bill and the balance the wallet read
/// itself, with the sealed commands the center answered (EXTERNAL
/// AUTHENTICATE, READ BALANCE in `confirmed`, DEBIT), which the wallet
/// cannot read.
#[derive(Debug)]
pub struct Offered {
    pub(crate) record: Record,
    pub(crate) bill: HandedBill,
    pub(crate) settlement_id: SettlementId,
    pub(crate) offer: Option<Verified<Offer>>,
    /// The balance shown: SIG2's, or as the wallet read it.
    pub(crate) balance: Money,
    pub(crate) commands: Vec<Vec<u8>>,
}

/// The sealed commands reached the card; its answers are recorded.
#[derive(Debug)]
pub struct DebitRelayed {
    pub(crate) record: Record,
    pub(crate) settlement_id: SettlementId,
    pub(crate) answers: Vec<String>,
}

/// SIG3 verified.
#[derive(Debug)]
pub struct Completed {
    pub settlement_id: SettlementId,
    pub amount: Money,
    pub card_counter: u32,
    pub return_url: String,
}

/// SIG4 verified: what the store will deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptView {
    pub settlement_id: SettlementId,
    pub order_id: String,
    pub delivery: String,
    pub reference: Option<String>,
    pub return_url: String,
}

impl Offered {
    pub fn settlement_id(&self) -> &SettlementId {
        &self.settlement_id
    }

    /// The profile the purchase runs in.
    pub fn profile(&self) -> Profile {
        let reads_balance = self.commands.iter().any(|c| c.get(1) == Some(&kessai_card::protocol::INS_READ_BALANCE));
        match (&self.offer, reads_balance) {
            (Some(_), _) => Profile::Offer,
            (None, true) => Profile::Confirmed,
            (None, false) => Profile::Direct,
        }
    }

    pub fn view(&self) -> ConsentView {
        let b = self.bill.bill();
        let store_name = match &self.offer {
            Some(offer) => offer.message().store_name().as_str().to_owned(),
            None => b.store_name().as_str().to_owned(),
        };
        let amount = b.total();
        ConsentView {
            settlement_id: self.settlement_id.clone(),
            store_name,
            order_id: b.order_id().to_string(),
            lines: line_views(b),
            amount,
            balance: self.balance,
            // An offer guarantees amount ≤ balance in one currency, and the
            // center seals no DEBIT above the balance the wallet read.
            balance_after: self.balance.checked_sub(&amount).unwrap_or_else(|_| Money::zero(amount.currency())),
            card_id: self.record.card_id,
            consent_token: self.record.consent_token.clone(),
            signed_offer: self.offer.is_some(),
        }
    }
}

/// The checks on a handed-over bill that need nobody else: a return URL
/// the wallet may send the browser to, a bill of bounded size that reads.
/// The return URL must lie at the origin the store signed into its bill
/// (M3): a page posting a genuine bill with its own return URL cannot send
/// the cardholder, or the wallet's key fetch, anywhere else.
pub(crate) fn handed(bill_token: &str, return_url: &str) -> Result<HandedBill, PayError> {
    safe_return_url(return_url)?;
    if bill_token.len() > MAX_BILL_BYTES {
        return Err(PayError::BillTooLarge);
    }
    let handed = HandedBill::parse(bill_token)?;
    let at = kessai_core::messages::WebOrigin::of_url(return_url).ok();
    match handed.bill().origin() {
        Some(origin) if at.as_ref() == Some(origin) => Ok(handed),
        Some(origin) => Err(PayError::NotTheStoresAddress {
            url: return_url.chars().take(100).collect(),
            origin: origin.to_string(),
        }),
        None => Err(PayError::BillWithoutOrigin),
    }
}

impl Wallet {
    /// A bill addressed to this wallet's center (L6): one for another
    /// center is refused before anything is asked of the card or the center.
    pub(crate) fn for_this_center(&self, bill: HandedBill) -> Result<HandedBill, PayError> {
        let expected = &self.config.center.party_id;
        match bill.audience() {
            Some(aud) if aud == expected => Ok(bill),
            found => Err(PayError::OtherCenter {
                found: found.map(ToString::to_string).unwrap_or_default(),
                expected: expected.to_string(),
            }),
        }
    }
}

/// `return_url` if the wallet may link or send the cardholder there: it
/// passes every check of [`handed`] with `bill_token`.
pub fn bound_return_url<'a>(bill_token: &str, return_url: &'a str) -> Option<&'a str> {
    handed(bill_token, return_url).ok().map(|_| return_url)
}

fn line_views(b: &kessai_core::messages::bill::Bill) -> Vec<LineView> {
    b.lines()
        .iter()
        .map(|l| LineView {
            name: l.name().as_str().to_owned(),
            quantity: l.quantity(),
            unit_price: l.unit_price(),
            amount: l.amount(),
        })
        .collect()
}

/// A `return_url` the wallet may send the browser to: https only.
pub fn safe_return_url(s: &str) -> Result<Uri, PayError> {
    let unsafe_url = || PayError::UnsafeReturnUrl(s.chars().take(100).collect());
    if s.len() > MAX_RETURN_URL_BYTES || s.chars().any(|c| c.is_control() || c == '"' || c == '<' || c == '>') {
        return Err(unsafe_url());
    }
    let uri: Uri = s.parse().map_err(|_| unsafe_url())?;
    if uri.scheme_str() != Some("https") || uri.host().is_none_or(str::is_empty) {
        return Err(unsafe_url());
    }
    Ok(uri)
}

/// Compares a token a page sent back with the one it was given, in time
/// that depends on neither's content (only on the length, which is public).
pub(crate) fn same_token(sent: &str, given: &str) -> bool {
    sent.len() == given.len() && sent.bytes().zip(given.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// How long a member's payment instruction is good for: the balance step
/// follows its signing within seconds.
const INSTRUCTION_LIFETIME_S: u64 = 300;

pub(crate) fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; RANDOM_ID_BYTES];
    OsRandom.fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// The wallet: configuration, the center, the card, the local records.
pub struct Wallet {
    pub(crate) config: WalletConfig,
    pub(crate) center: CenterClient,
    pub(crate) records: Records,
    pub(crate) card: CardSlot,
    pub(crate) clock: Arc<dyn Clock>,
    /// One conversation with the card at a time.
    pub(crate) conversation: Mutex<()>,
    /// 128 random bits drawn at launch and put in every form the wallet
    /// serves before anything reaches the center (the charge form, the
    /// bill's review): other sites, which cannot read the wallet's pages,
    /// cannot post them.
    pub(crate) form_token: String,
    /// The registered member paying with this wallet, with the signing key
    /// passwords A and B opened: each purchase then carries the member's
    /// signed payment instruction (#12, FIG. 7 ①).
    pub(crate) member: Option<(kessai_core::ids::PartyId, kessai_core::keys::SigningKey)>,
    /// For a member paying through the pages: the keystore as password A
    /// opened it at the review (its key, not the password), by settlement,
    /// until the purchase completes and goes into the history.
    pub(crate) member_sessions: std::sync::Mutex<std::collections::HashMap<String, MemberSession>>,
}

/// The keystore a member's password A opened for one purchase, and when.
#[derive(Debug)]
pub struct MemberSession(kessai_core::member_store::Opened, std::time::Instant);

/// The member paying through the pages: its number, the signing key, and
/// the keystore as password A opened it.
#[derive(Debug)]
pub struct MemberSigner {
    pub member: kessai_core::ids::PartyId,
    pub key: kessai_core::keys::SigningKey,
    pub session: MemberSession,
}

impl std::fmt::Debug for Wallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wallet").field("center", &self.config.center.url).finish_non_exhaustive()
    }
}

impl Wallet {
    /// Opens the local records and prepares the reader and the center client.
    pub async fn open(config: WalletConfig) -> anyhow::Result<Wallet> {
        use anyhow::Context as _;
        config.check()?;
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let path = config.data_dir.join("wallet.sqlite");
        let records = Records::open(&path).await.with_context(|| format!("opening {}", path.display()))?;
        let tls = kessai_tls::client_config(&config.ca_file, None)
            .with_context(|| format!("TLS trust from {}", config.ca_file.display()))?;
        let http = HttpsClient::new(tls, CENTER_TIMEOUT_MS);
        let center = CenterClient::new(http, &config.center.url, config.center.party_id.clone(), records.clone());
        let card = CardSlot::new(&config.reader, |p| config.resolve(p)).context("opening the card reader")?;
        Ok(Wallet {
            config,
            center,
            records,
            card,
            clock: Arc::new(SystemClock),
            conversation: Mutex::new(()),
            form_token: random_token(""),
            member: None,
            member_sessions: std::sync::Mutex::default(),
        })
    }

    /// The same wallet paying as registered member `member`, with the
    /// signing key the member's passwords opened: each purchase carries the
    /// member's signed payment instruction for its bill (#12).
    pub fn with_member(mut self, member: kessai_core::ids::PartyId, key: kessai_core::keys::SigningKey) -> Wallet {
        self.member = Some((member, key));
        self
    }

    /// The payment instruction of `member` for `bill` paid by `card`.
    pub(crate) fn instruction(
        &self,
        member: Option<&(kessai_core::ids::PartyId, kessai_core::keys::SigningKey)>,
        bill: &HandedBill,
        card: kessai_core::ids::CardId,
    ) -> Result<Option<String>, PayError> {
        use kessai_core::jws::Claims;
        use kessai_core::messages::instruction::{self, InstructionDraft, PaymentInstruction};
        let Some((member, key)) = member else { return Ok(None) };
        let sign = || -> Result<String, kessai_core::jws::JwsError> {
            let draft = InstructionDraft {
                member: member.clone(),
                card_id: Some(card),
                prepaid_id: None,
                bill_hash: bill.hash(),
                amount: bill.bill().total(),
                store: bill.bill().store().clone(),
            };
            let body = PaymentInstruction::new(draft)?;
            let jti = kessai_core::ids::MessageId::generate(&mut kessai_core::random::OsRandom);
            let claims = Claims::for_lifetime(member.clone(), jti, self.clock.now(), INSTRUCTION_LIFETIME_S)?
                .with_audience(self.config.center.party_id.clone());
            instruction::sign(&claims, &body, key)
        };
        sign().map(Some).map_err(|e| PayError::HandOff(format!("signing the payment instruction: {e}")))
    }

    /// The same wallet telling time by `clock` (tests: a wallet opened
    /// again a day later).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Wallet {
        self.clock = clock;
        self
    }

    pub fn config(&self) -> &WalletConfig {
        &self.config
    }

    pub fn records(&self) -> &Records {
        &self.records
    }

    /// The card's own log, newest first: the center opens a secure session
    /// (only it can), the wallet relays INITIALIZE UPDATE, EXTERNAL
    /// AUTHENTICATE and the sealed READ LOG pages, and the center returns the
    /// records it unsealed. Nothing on the card changes.
    pub async fn card_log(&self) -> Result<Vec<LogEntry>, PayError> {
        let _one_at_a_time = self.conversation.lock().await;
        let summary = self.card.summary().await?;
        let mut nonce = [0u8; 16];
        kessai_core::random::Random::fill_bytes(&mut kessai_core::random::OsRandom, &mut nonce);
        let tag = hex::encode(nonce);
        let path = format!("/v1/cards/{}/statements", summary.card_id);
        let mut reply: StatementReply = self.center.post(&path, &request::Nothing {}, &format!("stm-{tag}-0")).await?;
        let id = reply.statement_id.clone();
        let mut step = "authenticate";
        for n in 1..=crate::limits::MAX_STATEMENT_STEPS {
            if reply.phase == StatementPhase::Done {
                // The center kept the log and tells the card so (LOG
                // COLLECTED): relayed, its answer needs no reply.
                if !reply.apdus.is_empty()
                    && let Err(e) = self.card.relay_hex(&reply.apdus).await
                {
                    tracing::warn!(error = %e, "the card did not take the center's LOG COLLECTED");
                }
                return Ok(reply.entries.unwrap_or_default());
            }
            let answers = self.card.relay_hex(&reply.apdus).await?;
            let body = request::Answers { responses: answers };
            reply = self.center.post(&format!("/v1/statements/{id}/{step}"), &body, &format!("stm-{tag}-{n}")).await?;
            step = "read";
        }
        Err(PayError::HandOff("the card's log did not end within the page limit".into()))
    }

    /// A token session (#21) with the card, through the center: `asked`
    /// stores the card's issued deposit tokens (`{}`), redeems one
    /// (`redeem`) or lists the card's token table (`list`). The wallet
    /// relays INITIALIZE UPDATE and then the sealed batch; the center
    /// answers what the card proved.
    pub async fn token_session(&self, asked: &request::TokenSessionCreate) -> Result<TokenSessionReply, PayError> {
        let _one_at_a_time = self.conversation.lock().await;
        self.token_session_held(asked).await
    }

    /// [`Wallet::token_session`] for a caller that holds the conversation
    /// with the card.
    pub(crate) async fn token_session_held(
        &self,
        asked: &request::TokenSessionCreate,
    ) -> Result<TokenSessionReply, PayError> {
        let summary = self.card.summary().await?;
        let mut nonce = [0u8; 16];
        kessai_core::random::Random::fill_bytes(&mut kessai_core::random::OsRandom, &mut nonce);
        let tag = hex::encode(nonce);
        let path = format!("/v1/cards/{}/token-sessions", summary.card_id);
        let mut reply: TokenSessionReply = self.center.post(&path, asked, &format!("tks-{tag}-0")).await?;
        let id = reply.session_id.clone();
        // What the session may send the card, checked before it is relayed:
        // a listing reads only, and a delivery or a redemption does only
        // what it was asked (the wallet cannot read the sealed commands).
        let token_ins = match asked {
            request::TokenSessionCreate { list: true, .. } => kessai_card::tokens::INS_LIST_TOKENS,
            request::TokenSessionCreate { redeem: Some(_), .. } => kessai_card::tokens::INS_REDEEM_TOKEN,
            _ => kessai_card::tokens::INS_STORE_TOKEN,
        };
        for (n, step) in ["authenticate", "finish"].iter().enumerate() {
            let fits = if n == 0 { opening_fits(&reply.apdus) } else { token_batch_fits(&reply.apdus, token_ins) };
            if !fits {
                return Err(PayError::UnexpectedReply {
                    step: "token session",
                    phase: Phase::Authenticating,
                    apdus: reply.apdus.len(),
                });
            }
            let answers = self.card.relay_hex(&reply.apdus).await?;
            let body = request::Answers { responses: answers };
            let key = format!("tks-{tag}-{}", n + 1);
            reply = self.center.post(&format!("/v1/token-sessions/{id}/{step}"), &body, &key).await?;
        }
        if reply.phase != TokenSessionPhase::Done {
            return Err(PayError::HandOff("the token session did not end".into()));
        }
        Ok(reply)
    }

    /// Reports every command this wallet sends to the card, with the
    /// card's answer, to `observer` (a transcript; see [`ApduObserver`]).
    pub fn observe_apdus(&mut self, observer: ApduObserver) {
        self.card.observe(observer);
    }

    pub fn http(&self) -> &HttpsClient {
        self.center.http()
    }

    /// The wallet's clock now (unix s).
    pub fn now_s(&self) -> i64 {
        i64::try_from(self.clock.now().unix_s()).unwrap_or(i64::MAX)
    }

    /// The card in the reader (display balance, not authenticated).
    pub async fn card_summary(&self) -> Result<CardSummary, CardError> {
        let _turn = self.conversation.lock().await;
        self.card.summary().await
    }

    pub(crate) async fn set(&self, payment_id: &str, update: Update<'_>) -> Result<(), PayError> {
        Ok(self.records.update(payment_id, &update, self.now_s()).await?)
    }

    /// POSTs a step under the payment's persisted key for `step`.
    pub(crate) async fn post<B: serde::Serialize + Sync>(
        &self,
        rec: &Record,
        step: &str,
        path: &str,
        body: &B,
    ) -> Result<StepReply, PayError> {
        let key = self.records.step_key(&rec.payment_id, step, &random_token("w-"), self.now_s()).await?;
        Ok(self.center.step(path, body, &key).await?)
    }

    pub(crate) async fn relay_step(
        &self,
        rec: &Record,
        step: &str,
        path: &str,
        reply: &StepReply,
    ) -> Result<StepReply, PayError> {
        let answers = self.card.relay_hex(&reply.apdus).await?;
        self.post(rec, step, path, &request::Answers { responses: answers }).await
    }
}

/// A token session's opening: INITIALIZE UPDATE alone.
fn opening_fits(apdus: &[String]) -> bool {
    let [only] = apdus else { return false };
    only.get(..4).is_some_and(|h| h.eq_ignore_ascii_case("8050"))
}

/// A token session's batch: EXTERNAL AUTHENTICATE, then only the log's
/// commands and the token command `ins` (any number of them), all sealed.
fn token_batch_fits(apdus: &[String], ins: u8) -> bool {
    use kessai_card::protocol::{CLA_SECURE, INS_EXTERNAL_AUTHENTICATE, INS_LOG_COLLECTED, INS_READ_LOG};
    let heads: Option<Vec<(u8, u8)>> = apdus
        .iter()
        .map(|h| hex::decode(h.get(..4).unwrap_or_default()).ok().and_then(|b| Some((*b.first()?, *b.get(1)?))))
        .collect();
    let Some(heads) = heads else { return false };
    let Some(((CLA_SECURE, INS_EXTERNAL_AUTHENTICATE), rest)) = heads.split_first() else { return false };
    rest.iter().all(|(cla, i)| *cla == CLA_SECURE && [INS_LOG_COLLECTED, INS_READ_LOG, ins].contains(i))
}

/// A batch of commands the center sealed for the card: EXTERNAL
/// AUTHENTICATE first if `opens`, a command whose INS is one of `last` last,
/// and between them only the log's (LOG COLLECTED, READ LOG) and READ
/// BALANCE, all sealed (CLA `84`). The wallet cannot read them; it checks
/// that nothing else rides along.
pub(crate) fn batch_fits(apdus: &[String], opens: bool, last: &[u8]) -> bool {
    use kessai_card::protocol::{
        CLA_SECURE, INS_EXTERNAL_AUTHENTICATE, INS_LOG_COLLECTED, INS_READ_BALANCE, INS_READ_LOG,
    };
    let heads: Option<Vec<(u8, u8)>> = apdus
        .iter()
        .map(|h| hex::decode(h.get(..4).unwrap_or_default()).ok().and_then(|b| Some((*b.first()?, *b.get(1)?))))
        .collect();
    let Some(heads) = heads else { return false };
    let body = match (opens, heads.split_first()) {
        (true, Some(((CLA_SECURE, INS_EXTERNAL_AUTHENTICATE), rest))) => rest,
        (false, _) => heads.as_slice(),
        _ => return false,
    };
    let Some(((CLA_SECURE, ins), between)) = body.split_last() else { return false };
    let allowed = [INS_LOG_COLLECTED, INS_READ_LOG, INS_READ_BALANCE];
    last.contains(ins) && between.iter().all(|(cla, i)| *cla == CLA_SECURE && allowed.contains(i))
}

/// [`batch_fits`] for a purchase step's reply in `phase`.
pub(crate) fn expect_batch(
    step: &'static str,
    reply: &StepReply,
    phase: Phase,
    opens: bool,
    last: u8,
) -> Result<(), PayError> {
    if reply.phase != phase || !batch_fits(&reply.apdus, opens, &[last]) {
        return Err(PayError::UnexpectedReply { step, phase: reply.phase, apdus: reply.apdus.len() });
    }
    Ok(())
}

pub(crate) fn expect(step: &'static str, reply: &StepReply, phase: Phase, apdus: usize) -> Result<(), PayError> {
    if reply.phase != phase || reply.apdus.len() != apdus {
        return Err(PayError::UnexpectedReply { step, phase: reply.phase, apdus: reply.apdus.len() });
    }
    Ok(())
}

/// The offer's content from a token this wallet verified before storing it.
pub(crate) fn stored_offer(token: Option<&str>) -> Result<Offer, PayError> {
    let bad = |why: String| PayError::OfferUnverified(VerifyError::Signature(jws::JwsError::InvalidMessage(why)));
    let (_, payload) = jws::inspect_unverified(token.unwrap_or_default()).map_err(|e| bad(e.to_string()))?;
    serde_json::from_value(payload["offer"].clone()).map_err(|e| bad(e.to_string()))
}

impl Wallet {
    /// ST7–ST15: reads the card, opens the settlement, lets the center
    /// authenticate the card and read its balance, and verifies the offer.
    /// A refused offer is cancelled through recovery; nothing is relayed.
    pub async fn begin(
        &self,
        bill_token: &str,
        return_url: &str,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Offered, PayError> {
        self.begin_as(bill_token, return_url, self.member.as_ref(), progress).await
    }

    /// The purchase profile this wallet asks for (its configuration).
    pub fn profile(&self) -> Profile {
        self.config.profile
    }

    /// As [`Wallet::begin`], paying as `member` (its number and the signing
    /// key the member's passwords opened): the balance step carries the
    /// member's signed payment instruction (#12).
    pub async fn begin_as(
        &self,
        bill_token: &str,
        return_url: &str,
        member: Option<&(kessai_core::ids::PartyId, kessai_core::keys::SigningKey)>,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Offered, PayError> {
        let bill = self.for_this_center(handed(bill_token, return_url)?)?;
        let turn = self.conversation.lock().await;
        let mut card = self.card.summary().await?;
        progress(Progress::CardRead(card));
        if card.blocked {
            return Err(PayError::CardBlocked);
        }
        drop(turn);
        // The card is presented: what is owed to it (a refund) or by it (a
        // correction) is applied first. A failure here never stops the
        // purchase; the item stays owed for the next presentation.
        let applied = self.apply_owed_from(Some(card.card_id), true, &mut |_| {}).await;
        let _turn = self.conversation.lock().await;
        match applied {
            Ok(applied) if !applied.is_empty() => {
                tracing::info!(count = applied.len(), "owed updates applied");
                card = self.card.summary().await?;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "applying owed updates"),
        }
        let rec = self.start_record(&bill, return_url, card.card_id).await?;
        match self.negotiate(rec, bill, &card, member, progress).await {
            Ok(offered) => Ok(offered),
            Err((payment_id, e)) => {
                self.note_failure(&payment_id, &e).await;
                Err(e)
            }
        }
    }

    /// The bill as the store's page handed it over, checked locally only:
    /// nothing is sent to the center and nothing is recorded (M2).
    pub fn review(&self, bill_token: &str, return_url: &str) -> Result<ReviewView, PayError> {
        let handed = self.for_this_center(handed(bill_token, return_url)?)?;
        let b = handed.bill();
        Ok(ReviewView {
            store_name: b.store_name().as_str().to_owned(),
            order_id: b.order_id().to_string(),
            lines: line_views(b),
            total: b.total(),
            bill: bill_token.to_owned(),
            return_url: return_url.to_owned(),
            form_token: self.form_token.clone(),
            member: self.member_number(),
            prepaid_cards: match self.member_number() {
                Some(_) => self.known_prepaid_cards().iter().map(ToString::to_string).collect(),
                None => Vec::new(),
            },
            prepaid_first: false,
            card_balance: None,
        })
    }

    /// The member number this wallet registered (written by `kessai wallet
    /// member register` next to the keystore), if it holds a keystore.
    pub fn member_number(&self) -> Option<String> {
        if !crate::member::MemberFile::in_dir(&self.config.data_dir).exists() {
            return None;
        }
        crate::member::member_number(&self.config.data_dir)
    }

    /// The member's number and signing key, from the keystore opened with
    /// passwords A and B (A only, in the [0028] variant).
    pub fn member_signer(
        &self,
        a: &kessai_core::keyfile::Passphrase,
        b: Option<&kessai_core::keyfile::Passphrase>,
    ) -> Result<MemberSigner, PayError> {
        let number =
            self.member_number().ok_or_else(|| PayError::HandOff("this wallet holds no member keystore".into()))?;
        let store = crate::member::MemberFile::in_dir(&self.config.data_dir);
        let opened = store.open(a).map_err(|e| PayError::MemberKey(e.to_string()))?;
        let b = match opened.variant() {
            kessai_core::member_store::Variant::TwoPasswords => b,
            _ => None,
        };
        let key = opened.signing_key(b).map_err(|e| PayError::MemberKey(e.to_string()))?;
        let member = kessai_core::ids::PartyId::parse(&number).map_err(|e| PayError::HandOff(e.to_string()))?;
        Ok(MemberSigner { member, key, session: MemberSession(opened, std::time::Instant::now()) })
    }

    /// Keeps `session` for settlement `id` until it completes or ends. At
    /// most [`crate::limits::MEMBER_SESSIONS`] are kept; past that the
    /// oldest purchase goes unrecorded (and says so in the log).
    pub fn hold_member_session(&self, id: &str, session: MemberSession) {
        let mut held = self.member_sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let oldest = held.iter().min_by_key(|(_, MemberSession(_, at))| *at).map(|(id, _)| id.clone());
        if let Some(oldest) = oldest.filter(|_| held.len() >= crate::limits::MEMBER_SESSIONS) {
            tracing::warn!(settlement = oldest, "a member's purchase will not go into its history: too many open");
            held.remove(&oldest);
        }
        held.insert(id.to_owned(), session);
    }

    /// Forgets the member session of settlement `id` (cancelled, voided).
    pub fn drop_member_session(&self, id: &str) {
        self.member_sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
    }

    /// The completed purchase `id` goes into the member's history (FIG. 10)
    /// with the keystore key held for it. The payment is done either way:
    /// a failure here is logged, not raised.
    pub async fn record_member_purchase(&self, id: &str) {
        let held = self.member_sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
        if let Some(session) = held {
            self.record_member_purchase_with(id, session).await;
        }
    }

    /// The completed purchase `id` goes into the member's history with
    /// `session`, the keystore as password A opened it for this purchase
    /// (not held for later). Logged, not raised, if it cannot be written.
    pub async fn record_member_purchase_with(&self, id: &str, session: MemberSession) {
        let MemberSession(opened, _) = session;
        let record = match self.record(id).await {
            Ok(r) => r,
            Err(e) => return tracing::warn!(settlement = id, error = %e, "the member's history was not written"),
        };
        let entry = crate::member::history_entry(&record, self.clock.now());
        let store = crate::member::MemberFile::in_dir(&self.config.data_dir);
        let written = tokio::task::spawn_blocking(move || {
            store.record_opened(&opened, entry, &mut kessai_core::random::OsRandom)
        })
        .await;
        match written {
            Ok(Ok(())) => tracing::info!(settlement = id, "the purchase went into the member's history"),
            Ok(Err(e)) => tracing::warn!(settlement = id, error = %e, "the member's history was not written"),
            Err(e) => tracing::warn!(settlement = id, error = %e, "the member's history was not written"),
        }
    }

    /// A payment from the member's virtual prepaid card goes into the
    /// member's history (FIG. 10) with the keystore as password A opened it
    /// for that payment. The payment is done either way: a failure here is
    /// logged, not raised.
    pub async fn record_prepaid_purchase(&self, session: MemberSession, paid: &crate::prepaid::PrepaidPaid) {
        let MemberSession(opened, _) = session;
        if opened.history.iter().any(|h| h.settlement_id == paid.settlement_id) {
            return; // Answered again (a reload): recorded already.
        }
        let entry = kessai_core::member_store::HistoryEntry {
            at: self.clock.now(),
            store: paid.store_name.clone(),
            order_id: paid.order_id.clone(),
            amount: paid.amount,
            settlement_id: paid.settlement_id.clone(),
        };
        let store = crate::member::MemberFile::in_dir(&self.config.data_dir);
        let written = tokio::task::spawn_blocking(move || {
            store.record_opened(&opened, entry, &mut kessai_core::random::OsRandom)
        })
        .await;
        match written {
            Ok(Ok(())) => {
                tracing::info!(settlement = %paid.settlement_id, "the prepaid payment went into the member's history")
            }
            Ok(Err(e)) => {
                tracing::warn!(settlement = %paid.settlement_id, error = %e, "the member's history was not written")
            }
            Err(e) => {
                tracing::warn!(settlement = %paid.settlement_id, error = %e, "the member's history was not written")
            }
        }
    }

    /// Whether `token` is this launch's form token.
    pub fn is_form_token(&self, token: &str) -> bool {
        same_token(token, &self.form_token)
    }

    /// Cancels every offer the cardholder left unanswered for
    /// [`ABANDONED_OFFER_S`] before `now_s` (a closed tab, a page never
    /// seen): recovery voids it at the center and releases its hold.
    /// Returns what each ended as.
    pub async fn cancel_abandoned(&self, now_s: i64) -> Result<Vec<(SettlementId, Outcome)>, PayError> {
        let cutoff = now_s.saturating_sub(i64::try_from(ABANDONED_OFFER_S).unwrap_or(i64::MAX));
        let _turn = self.conversation.lock().await;
        let mut ended = Vec::new();
        for rec in self.records.offered_before(cutoff, MAX_RECOVERIES_PER_RUN).await? {
            let Some(sid) = rec.settlement_id.clone() else { continue };
            tracing::info!(settlement = %sid, "cancelling an offer the cardholder left unanswered");
            ended.push((sid, self.recover_record(&rec).await));
        }
        Ok(ended)
    }

    pub(crate) async fn start_record(
        &self,
        bill: &HandedBill,
        return_url: &str,
        card: CardId,
    ) -> Result<Record, PayError> {
        let b = bill.bill();
        let payment_id = random_token("pay_");
        let new = NewPayment {
            payment_id: &payment_id,
            store: b.store().as_str(),
            member: b.member().map(|m| m.as_str()),
            store_name: b.store_name().as_str(),
            order_id: b.order_id().as_str(),
            amount: b.total(),
            card_id: card,
            bill: bill.token(),
            return_url,
            consent_token: &random_token(""),
        };
        self.records.insert(&new, self.now_s()).await?;
        self.records.by_payment(&payment_id).await?.ok_or_else(|| PayError::UnknownSettlement(payment_id))
    }

    /// Records why a payment stopped, unless a DEBIT may be outstanding
    /// (then the phase stays, for `recover`).
    pub(crate) async fn note_failure(&self, payment_id: &str, e: &PayError) {
        let phase = match e {
            // The card may have given the token up: not a payment that
            // stopped before anything reached the card.
            PayError::Insufficient { .. } | PayError::Voided(_) | PayError::TokenUnfinished { .. } => None,
            _ => Some(LocalPhase::Failed),
        };
        let current = self.records.by_payment(payment_id).await.ok().flatten().map(|r| r.phase);
        let phase = phase.filter(|_| current == Some(LocalPhase::Started));
        let reason = e.to_string();
        let update = Update { phase, reason: Some(&reason), ..Update::default() };
        if let Err(db) = self.records.update(payment_id, &update, self.now_s()).await {
            tracing::warn!(error = %db, "recording a failed payment");
        }
    }

    async fn negotiate(
        &self,
        rec: Record,
        bill: HandedBill,
        card: &CardSummary,
        member: Option<&(kessai_core::ids::PartyId, kessai_core::keys::SigningKey)>,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Offered, (String, PayError)> {
        let id = rec.payment_id.clone();
        let fail = |e: PayError| (id.clone(), e);
        let profile = self.profile();
        let instruction = self.instruction(member, &bill, rec.card_id).map_err(fail)?;
        // The second embodiment: the balance the cardholder saw (FIG. 21),
        // and a member's instruction now rather than at the balance step.
        let second = profile != Profile::Offer;
        let read =
            second.then(|| request::CardRead { balance_minor: card.balance.amount_minor(), counter: card.counter });
        let opened = self.open_settlement(&rec, &bill, profile, read, if second { instruction.clone() } else { None });
        let (r, sid) = opened.await.map_err(fail)?;
        progress(Progress::SettlementOpened(sid.clone()));
        if r.phase == Phase::Voided {
            return Err(fail(self.voided_at_offer(&rec, &bill, &r).await));
        }
        let rec = Record { settlement_id: Some(sid.clone()), ..rec };
        if profile != Profile::Offer {
            expect_batch("create", &r, Phase::Offered, true, kessai_card::protocol::INS_DEBIT).map_err(fail)?;
            progress(Progress::CardAuthenticated);
            return self.accept_sealed(rec, bill, sid, card.balance, &r).await.map_err(fail);
        }
        expect_batch("create", &r, Phase::ReadingBalance, true, kessai_card::protocol::INS_READ_BALANCE)
            .or_else(|_| expect_batch("create", &r, Phase::ReadingBalance, true, kessai_card::protocol::INS_READ_LOG))
            .map_err(fail)?;
        progress(Progress::CardAuthenticated);
        let answers = self.card.relay_hex(&r.apdus).await.map_err(|e| fail(e.into()))?;
        let body = request::BalanceAnswers { responses: answers, instruction };
        let base = format!("/v1/settlements/{sid}");
        let r = self.post(&rec, "balance", &format!("{base}/balance"), &body).await.map_err(fail)?;
        if r.phase == Phase::Voided {
            return Err(fail(self.voided_at_offer(&rec, &bill, &r).await));
        }
        expect_batch("balance", &r, Phase::Offered, false, kessai_card::protocol::INS_DEBIT).map_err(fail)?;
        let offered = self.accept_offer(rec, bill, &r).await.map_err(fail)?;
        progress(Progress::OfferVerified);
        Ok(offered)
    }

    /// Opens the card's session (INITIALIZE UPDATE under the challenge
    /// bound to this bill and card, PROTOCOL §5) and then the settlement,
    /// recording its id: the center's answer to the create.
    pub(crate) async fn open_settlement(
        &self,
        rec: &Record,
        bill: &HandedBill,
        profile: Profile,
        card_read: Option<request::CardRead>,
        instruction: Option<String>,
    ) -> Result<(StepReply, SettlementId), PayError> {
        let challenge = kessai_card::protocol::purchase_host_challenge(
            bill.hash().as_bytes(),
            &kessai_card::protocol::CardId(*rec.card_id.as_bytes()),
        );
        let init = hex::encode(kessai_card::protocol::initialize_update_command(&challenge).to_bytes());
        let opening = self.card.relay_hex(&[init]).await?;
        let create = request::CreateSettlement {
            bill: bill.token().to_owned(),
            card_id: rec.card_id.to_string(),
            profile,
            initialize_update: opening.first().cloned().unwrap_or_default(),
            card_read,
            instruction,
        };
        let r = self.post(rec, "create", "/v1/settlements", &create).await?;
        let sid = SettlementId::parse(&r.settlement_id).map_err(|e| PayError::HandOff(e.to_string()))?;
        self.set(&rec.payment_id, Update { settlement_id: Some(sid.as_str()), ..Update::default() }).await?;
        Ok((r, sid))
    }

    /// The second embodiment's answer: the sealed commands, recorded with
    /// the balance the wallet read; the cardholder agrees next.
    async fn accept_sealed(
        &self,
        rec: Record,
        bill: HandedBill,
        settlement_id: SettlementId,
        balance: Money,
        r: &StepReply,
    ) -> Result<Offered, PayError> {
        let commands = r.apdus.iter().map(hex::decode).collect::<Result<Vec<_>, _>>();
        let commands = commands.map_err(|e| PayError::HandOff(format!("a sealed command is not hex: {e}")))?;
        let joined = r.apdus.join(" ");
        let update = Update {
            phase: Some(LocalPhase::Offered),
            balance_minor: Some(balance.amount_minor()),
            debit: Some(&joined),
            ..Update::default()
        };
        self.set(&rec.payment_id, update).await?;
        let record = self.records.by_payment(&rec.payment_id).await?.unwrap_or(rec);
        Ok(Offered { record, bill, settlement_id, offer: None, balance, commands })
    }

    async fn voided_at_offer(&self, rec: &Record, bill: &HandedBill, r: &StepReply) -> PayError {
        let reason = r.reason.clone().unwrap_or_else(|| "voided by the center".into());
        let update = Update {
            phase: Some(LocalPhase::Voided),
            reason: Some(&reason),
            balance_minor: r.balance_minor,
            ..Update::default()
        };
        if let Err(e) = self.set(&rec.payment_id, update).await {
            return e;
        }
        let amount = bill.bill().total();
        match r.balance_minor.map(|b| Money::new(b, amount.currency())) {
            Some(Ok(balance)) if balance.amount_minor() < amount.amount_minor() => {
                PayError::Insufficient { balance, amount }
            }
            _ => PayError::Voided(reason),
        }
    }

    /// SIG2: verify, tie to bill, card and DEBIT (the last command); record.
    /// On refusal, cancel through recovery (the DEBIT exists at the center).
    async fn accept_offer(&self, rec: Record, bill: HandedBill, r: &StepReply) -> Result<Offered, PayError> {
        let token = r.offer.clone().unwrap_or_default();
        let debit = hex::decode(r.apdus.last().map(String::as_str).unwrap_or_default()).unwrap_or_default();
        let checked = match self.center.verify::<Offer>(&token, self.clock.as_ref()).await {
            Err(e) => Err(PayError::OfferUnverified(e)),
            Ok(offer) => checks::check_offer(&offer, &r.settlement_id, &bill, rec.card_id, &debit)
                .map(|()| offer)
                .map_err(PayError::OfferMismatch),
        };
        let offer = match checked {
            Ok(offer) => offer,
            Err(e) => {
                tracing::warn!(settlement = %r.settlement_id, error = %e, "offer refused; cancelling");
                let reason = e.to_string();
                let update = Update { phase: Some(LocalPhase::Offered), reason: Some(&reason), ..Update::default() };
                self.set(&rec.payment_id, update).await?;
                let rec = self.records.by_payment(&rec.payment_id).await?.unwrap_or(rec);
                let outcome = self.recover_record(&rec).await;
                tracing::info!(settlement = %r.settlement_id, ?outcome, "refused offer cancelled");
                return Err(e);
            }
        };
        let balance = offer.message().balance();
        let joined = r.apdus.join(" ");
        let update = Update {
            phase: Some(LocalPhase::Offered),
            balance_minor: Some(balance.amount_minor()),
            offer: Some(&token),
            debit: Some(&joined),
            ..Update::default()
        };
        self.set(&rec.payment_id, update).await?;
        let record = self.records.by_payment(&rec.payment_id).await?.unwrap_or(rec);
        let settlement_id = offer.message().settlement_id().clone();
        let commands = r.apdus.iter().map(|h| hex::decode(h).unwrap_or_default()).collect();
        Ok(Offered { record, bill, settlement_id, offer: Some(offer), balance, commands })
    }

    /// An offer recorded earlier, verified again (the consent page posts back).
    pub async fn offered(&self, settlement_id: &str) -> Result<Offered, PayError> {
        let rec = self.record(settlement_id).await?;
        if rec.phase != LocalPhase::Offered {
            return Err(PayError::WrongPhase { expected: "offered", found: rec.phase });
        }
        let bill = HandedBill::parse(&rec.bill)?;
        let commands: Vec<Vec<u8>> =
            rec.debit.as_deref().unwrap_or_default().split(' ').map(|h| hex::decode(h).unwrap_or_default()).collect();
        let sid = SettlementId::parse(settlement_id).map_err(|e| PayError::HandOff(e.to_string()))?;
        let currency = bill.bill().total().currency();
        let Some(token) = rec.offer.clone() else {
            let balance = Money::new(rec.balance_minor.unwrap_or_default(), currency)
                .map_err(|e| PayError::HandOff(format!("the recorded balance: {e}")))?;
            return Ok(Offered { record: rec, bill, settlement_id: sid, offer: None, balance, commands });
        };
        let offer =
            self.center.verify::<Offer>(&token, self.clock.as_ref()).await.map_err(PayError::OfferUnverified)?;
        let debit = commands.last().cloned().unwrap_or_default();
        checks::check_offer(&offer, settlement_id, &bill, rec.card_id, &debit).map_err(PayError::OfferMismatch)?;
        let balance = offer.message().balance();
        Ok(Offered { record: rec, bill, settlement_id: sid, offer: Some(offer), balance, commands })
    }

    /// The record of a settlement.
    pub async fn record(&self, settlement_id: &str) -> Result<Record, PayError> {
        self.records
            .by_settlement(settlement_id)
            .await?
            .ok_or_else(|| PayError::UnknownSettlement(settlement_id.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::{opening_fits, token_batch_fits};
    use kessai_card::tokens::{INS_LIST_TOKENS, INS_REDEEM_TOKEN, INS_STORE_TOKEN};

    fn apdu(cla: u8, ins: u8) -> String {
        format!("{cla:02x}{ins:02x}0000")
    }

    #[test]
    fn a_token_session_relays_only_what_it_was_opened_for() {
        assert!(opening_fits(&[apdu(0x80, 0x50)]));
        assert!(!opening_fits(&[apdu(0x80, 0x50), apdu(0x84, 0x82)]));
        assert!(!opening_fits(&[apdu(0x84, 0x82)]));
        let listing = [
            apdu(0x84, 0x82),
            apdu(0x84, 0x3c),
            apdu(0x84, 0x36),
            apdu(0x84, INS_LIST_TOKENS),
            apdu(0x84, INS_LIST_TOKENS),
        ];
        assert!(token_batch_fits(&listing, INS_LIST_TOKENS));
        // A listing that would redeem or store is refused before the card.
        let redeeming = [apdu(0x84, 0x82), apdu(0x84, INS_LIST_TOKENS), apdu(0x84, INS_REDEEM_TOKEN)];
        assert!(!token_batch_fits(&redeeming, INS_LIST_TOKENS));
        assert!(token_batch_fits(&redeeming[..2], INS_LIST_TOKENS));
        assert!(!token_batch_fits(&[apdu(0x84, 0x82), apdu(0x84, INS_STORE_TOKEN)], INS_REDEEM_TOKEN));
        // Unsealed, or without EXTERNAL AUTHENTICATE first: refused.
        assert!(!token_batch_fits(&[apdu(0x84, 0x82), apdu(0x80, INS_LIST_TOKENS)], INS_LIST_TOKENS));
        assert!(!token_batch_fits(&[apdu(0x84, INS_LIST_TOKENS)], INS_LIST_TOKENS));
        assert!(!token_batch_fits(&["zz".into()], INS_LIST_TOKENS));
    }
}
