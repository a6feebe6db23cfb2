//! The application server: runs each protocol step against the stored
//! settlement, in a fixed order — load → transition (pure, in
//! [`crate::purchase`], over the shared card session in `card_session`) →
//! one database transaction holding the compare-and-set of the row, the
//! books' entries and the request's stored answer. A step that fails
//! changes nothing stored; a step whose reply was lost is answered again
//! from its stored answer; on PostgreSQL a step that lost a serialization
//! conflict runs again from its load. Also here: registration of stores and
//! cards, each one transaction, and the sweep of abandoned steps.

use std::sync::Arc;

use kessai_api::ErrorCode;
use kessai_core::digest::Sha256Digest;
use kessai_core::ids::{CardId, PartyId, SettlementId};
use kessai_core::jws::JwsError;
use kessai_core::keys::{PublicKey, Validity};
use kessai_core::messages::{bill, receipt};
use kessai_core::random::{Entropy, Random};
use kessai_core::time::Timestamp;
use kessai_core::token::TokenId;
use kessai_core::{Clock, Money};
use kessai_scp03::{CommandApdu, ResponseApdu};
use serde::Serialize;

use crate::authorizer::Authorizer;
use crate::books::{Books, BooksError, Entries, initial_value_id};
use crate::db::{CenterDb, DbError, SavedResponse, StoreRecord};
use crate::limits::{ABANDONED_AFTER_S, MAX_APDU_BYTES, MAX_APDUS_PER_STEP, SWEEP_BATCH_MAX};
use crate::purchase::{
    CardClaim, CardRecord, Context, CreateInput, OfferOutcome, Phase, PurchaseState, Resolution, Settlement, StepError,
};
use crate::runner::{StepFailure, run_step};
use crate::security::SecurityServer;
use kessai_core::profile::Profile;

/// Why a request was refused. The HTTP layer maps each to a status and a
/// stable code; none carries internals to the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CenterError {
    #[error("the bill was refused: {0}")]
    Bill(JwsError),
    #[error("the bill's store {0} is not registered")]
    UnknownStore(String),
    #[error("card {0} is not registered")]
    UnknownCard(CardId),
    #[error("no settlement {0}")]
    UnknownSettlement(String),
    #[error("no statement {0}")]
    UnknownStatement(String),
    #[error("no token session {0}")]
    UnknownTokenSession(String),
    #[error("this bill is already being settled with card {0}")]
    BillInUse(CardId),
    /// The bill names a member store that is not a member of the store
    /// that signed it.
    #[error("store {member} is not a member of {mall}")]
    NotAMember { member: String, mall: String },
    #[error("APDU {0}")]
    BadApdu(String),
    #[error(transparent)]
    Step(#[from] StepError),
    #[error("the books refused the transfer: {0}")]
    Books(#[from] BooksError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the receipt was refused: {0}")]
    Receipt(String),
    /// A registration the center refuses: `code` says which rule.
    #[error("{message}")]
    Registration { code: ErrorCode, message: String },
    /// The store does not accept purchases in this profile.
    #[error("store {store} does not accept purchases in the {profile} profile")]
    ProfileRefused { store: String, profile: Profile },
    /// A request that does not fit its route: `code` says which rule.
    #[error("{1}")]
    Invalid(ErrorCode, &'static str),
    /// The credit service provider did not answer: nothing was written.
    #[error(transparent)]
    Provider(#[from] crate::tokens::ProviderUnreachable),
    /// The bank did not answer: nothing was written.
    #[error(transparent)]
    Bank(#[from] crate::tokens::BankUnreachable),
}

/// What the wallet's create asks (`POST /v1/settlements`).
#[derive(Debug)]
pub struct CreateRequest<'a> {
    pub bill: &'a str,
    pub card_id: CardId,
    pub profile: Profile,
    /// The card's answer to the INITIALIZE UPDATE the wallet sent under the
    /// purchase's bound host challenge.
    pub opening: ResponseApdu,
    /// What the wallet read from the card in the clear (`confirmed`,
    /// `direct`; none in `offer`).
    pub claim: Option<CardClaim>,
    /// A member's payment instruction (`confirmed`, `direct`; in `offer`
    /// it goes with the balance step).
    pub instruction: Option<&'a str>,
}

/// Why a member's payment instruction does not let a purchase go on.
#[derive(Debug, Clone)]
pub(crate) enum InstructionRefusal {
    /// None was given; the member's number.
    Required(String),
    Refused(String),
}

impl From<InstructionRefusal> for StepError {
    fn from(r: InstructionRefusal) -> StepError {
        match r {
            InstructionRefusal::Required(member) => StepError::InstructionRequired(member),
            InstructionRefusal::Refused(why) => StepError::InstructionRefused(why),
        }
    }
}

pub use kessai_api::StepReply;

fn reply(s: &Settlement, apdus: &[CommandApdu]) -> StepReply {
    StepReply {
        settlement_id: s.id.to_string(),
        phase: s.phase(),
        apdus: apdus.iter().map(|c| hex::encode(c.to_bytes())).collect(),
        offer: match s.state() {
            PurchaseState::Offered { offer, .. } => offer.offer_token.clone(),
            _ => None,
        },
        completion: s.completion_token().map(str::to_owned),
        balance_minor: s.balance_minor(),
        reason: s.outcome().map(|(_, reason)| reason.to_owned()),
        reason_code: s.outcome().map(|(code, _)| code),
        access_token: None,
    }
}

/// Parses the card's answers relayed by the wallet (hex, bounded).
pub fn parse_answers(hex_answers: &[String]) -> Result<Vec<ResponseApdu>, CenterError> {
    if hex_answers.len() > MAX_APDUS_PER_STEP {
        return Err(CenterError::BadApdu(format!("at most {MAX_APDUS_PER_STEP} answers per step")));
    }
    hex_answers
        .iter()
        .map(|h| {
            if h.len() > 2 * MAX_APDU_BYTES {
                return Err(CenterError::BadApdu("answer too long".into()));
            }
            let bytes = hex::decode(h).map_err(|_| CenterError::BadApdu("answer is not hex".into()))?;
            ResponseApdu::parse(&bytes).map_err(|e| CenterError::BadApdu(e.to_string()))
        })
        .collect()
}

/// The request's Idempotency-Key and fingerprint, handed by the HTTP layer
/// to a step whose reply is exactly the route's answer: the step stores that
/// answer in its own transaction, so a retry after a crash gets it, never
/// `step_out_of_order`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub key: String,
    /// The request's fingerprint (SHA-256, hex).
    pub hash: String,
    /// Set once the step's write stored the answer.
    pub stored: crate::db::Stored,
}

impl Answer {
    /// What to store for this request once its step answered `reply`.
    pub(crate) fn saved(&self, reply: &impl Serialize) -> Result<SavedResponse, DbError> {
        let body = serde_json::to_string(reply).map_err(|e| DbError::Corrupt(e.to_string()))?;
        Ok(SavedResponse {
            key: self.key.clone(),
            hash: self.hash.clone(),
            status: 200,
            body,
            stored: self.stored.clone(),
        })
    }
}

/// How a purchase step is asked: the answer to store with it, and the
/// settlement as the HTTP layer read it with the key's stored answer (one
/// statement for both), used by the step's first load if it is that one.
#[derive(Debug, Default)]
pub struct StepCall {
    pub answer: Option<Answer>,
    pub read: Option<(Settlement, i64)>,
    /// The operator's trail row, for a step an operator takes (void-lost).
    pub trail: Option<crate::db::TrailEntry>,
}

impl From<Option<Answer>> for StepCall {
    fn from(answer: Option<Answer>) -> StepCall {
        StepCall { answer, read: None, trail: None }
    }
}

/// Longest notify URL a store may register.
const MAX_NOTIFY_URL_BYTES: usize = 512;

/// Most just-completed settlements kept for the deliverer; past that, the
/// periodic sweep (which reads the database) delivers the rest.
const MAX_JUST_COMPLETED: usize = 10_000;

/// Settlements just completed, as committed, handed to the deliverer in
/// memory (so it need not read them again) — a hint only: the database stays
/// the truth, and the deliverer's periodic sweep finds whatever a crash or a
/// full list lost.
#[derive(Debug, Default)]
pub struct Completions {
    settlements: std::sync::Mutex<Vec<crate::delivery::Deliverable>>,
    added: tokio::sync::Notify,
}

impl Completions {
    pub fn push(&self, settlement: crate::delivery::Deliverable) {
        let mut list = self.settlements.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if list.len() < MAX_JUST_COMPLETED {
            list.push(settlement);
        }
        drop(list);
        self.added.notify_one();
    }

    /// Waits until at least one settlement was pushed since the last call,
    /// and takes them all.
    pub async fn next(&self) -> Vec<crate::delivery::Deliverable> {
        loop {
            self.added.notified().await;
            let list = std::mem::take(&mut *self.settlements.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
            if !list.is_empty() {
                return list;
            }
        }
    }
}

/// Settlements that ended, by outcome (`completed`, `voided`), for
/// Prometheus. Per-step latency is the HTTP layer's histogram per route.
/// Names no store may take: they name roles whose certificates carry them.
pub const RESERVED_STORE_IDS: &[&str] = &["admin", "center", "kessai-center", "operator", "root"];

pub type OutcomeCounter =
    prometheus_client::metrics::family::Family<Vec<(String, String)>, prometheus_client::metrics::counter::Counter>;

pub struct Center {
    pub db: CenterDb,
    pub books: Books,
    pub security: SecurityServer,
    pub center_id: PartyId,
    /// What signs SIG2, SIG3, SIG5 and claim statements: a key file's key,
    /// or one in the PKCS#11 token (`[hsm] signing_key_label`).
    pub center_key: Arc<dyn kessai_core::keys::JwsSigner>,
    /// Keys the JWKS publishes beside `center_key`'s: the next and the
    /// previous one of a rotation (`CenterConfig::published_keys`).
    pub published_keys: Vec<kessai_core::jwk::Ed25519Jwk>,
    pub clock: Arc<dyn Clock>,
    /// Where every step draws its randomness (challenges, ids, nonces), so
    /// that a whole run can replay from a seed, as the clock is passed in.
    pub random: Arc<dyn Entropy>,
    pub max_amount_minor: u64,
    pub outcomes: OutcomeCounter,
    /// Settlements just completed, so their completions are delivered to
    /// the store at once rather than at the next sweep.
    pub completed: Arc<Completions>,
    /// The Idempotency-Keys whose request this instance is working on.
    pub in_flight: crate::api::InFlight,
    /// The rules for virtual prepaid cards (#18).
    pub prepaid: crate::prepaid::PrepaidPolicy,
    /// Fees and the center's paying account (#19).
    pub clearing: crate::clearing::ClearingPolicy,
    /// The parties of deposit tokens (#21), each its own service: the bank
    /// that makes them of deposits and the credit service provider that
    /// honours them, if this center issues tokens.
    pub tokens: Option<Arc<crate::tokens::Tokens>>,
}

impl std::fmt::Debug for Center {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Center").field("center_id", &self.center_id).field("center_key", self.center_key.kid()).finish()
    }
}

/// One step's transition, given the loaded settlement.
/// Run again from a fresh load when a PostgreSQL transaction lost a
/// serialization conflict, hence `Fn`.
type Transition<'a> =
    Box<dyn Fn(Settlement, &mut Context<'_, dyn Random + Send>) -> Result<Stepped, StepError> + Send + Sync + 'a>;

/// A transition's result and what the books must do before it is stored.
struct Stepped {
    settlement: Settlement,
    apdus: Vec<CommandApdu>,
    effect: Effect,
}

enum Effect {
    None,
    Hold,
    Post,
    Void,
    /// Void the hold if one is pending: a settlement ended before its DEBIT
    /// was sealed holds nothing, except one left by a version that committed
    /// the hold and the settlement apart (see `merge`).
    Release,
}

/// A mall bills for its own members only: the money goes to the member's
/// payable (`store`, as registered) and its name is what the payer agrees
/// to.
pub(crate) fn bill_within_mall(
    bill: &kessai_core::jws::Verified<kessai_core::messages::bill::Bill>,
    store: &StoreRecord,
) -> Result<(), CenterError> {
    if let Some(member) = bill.message().member()
        && store.mall.as_ref() != Some(bill.message().store())
    {
        return Err(CenterError::NotAMember { member: member.to_string(), mall: bill.message().store().to_string() });
    }
    Ok(())
}

/// Whether a store's receipt (SIG4) is for payment `id` and this exact
/// completion: signed by the bill's merchant of record, for its order.
pub(crate) fn receipt_matches(
    r: &kessai_core::messages::receipt::Receipt,
    id: &SettlementId,
    completion: &str,
    bill: &crate::purchase::BillFacts,
) -> Result<(), CenterError> {
    if r.settlement_id() != id
        || r.completion_hash() != Sha256Digest::of_token(completion)
        || r.store() != &bill.store
        || r.order_id() != &bill.order_id
    {
        return Err(CenterError::Receipt("the receipt does not match this settlement".into()));
    }
    Ok(())
}

/// A write's error as the client sees it: a refusal of the books is the
/// books' (`books_refused`), anything else the database's.
pub(crate) fn stored(e: DbError) -> CenterError {
    match BooksError::from(e) {
        BooksError::Db(e) => CenterError::Db(e),
        refused => CenterError::Books(refused),
    }
}

impl StepFailure for CenterError {
    fn is_retryable(&self) -> bool {
        matches!(self, CenterError::Db(e) if e.is_retryable())
    }
}

impl Center {
    /// POST /v1/settlements: checks SIG1 against the registered store keys
    /// and the store's accepted profiles, opens the settlement with the
    /// card's answer to the INITIALIZE UPDATE the wallet sent already, and
    /// after the card's proof admits it and answers EXTERNAL AUTHENTICATE
    /// with the sealed READ BALANCE (`offer`), or with the sealed (READ
    /// BALANCE and) DEBIT and the hold in the books (`confirmed`, `direct`).
    pub async fn create(&self, req: CreateRequest<'_>, answer: Option<Answer>) -> Result<StepReply, CenterError> {
        let keys = self.db.store_keys().await?;
        let verified =
            bill::verify(req.bill, &keys, self.clock.as_ref(), &self.center_id).map_err(CenterError::Bill)?;
        let payee = verified.message().payee();
        let (store, card, through) = self.db.purchase_reads(payee, &req.card_id).await?;
        let (store, profiles) = store.ok_or_else(|| CenterError::UnknownStore(payee.to_string()))?;
        bill_within_mall(&verified, &store)?;
        if !profiles.accepts(req.profile) {
            return Err(CenterError::ProfileRefused { store: payee.to_string(), profile: req.profile });
        }
        let claim = match (req.profile, req.claim) {
            (Profile::Offer, None) => None,
            (Profile::Offer, Some(_)) => {
                return Err(CenterError::Invalid(
                    ErrorCode::CardReadUnexpected,
                    "the offer profile reads the balance itself",
                ));
            }
            (_, Some(claim)) => Some(claim),
            (_, None) => {
                return Err(CenterError::Invalid(
                    ErrorCode::CardReadRequired,
                    "this profile needs the balance the wallet read",
                ));
            }
        };
        // The card is told apart only after it proved itself (M4): every
        // refusal below is raised after the cryptogram verified.
        let key_version = crate::purchase::opening_key_version(&req.opening)?;
        let card_id = req.card_id;
        let facts = crate::purchase::BillFacts::from_verified(&verified, store.name.clone());
        let refusal = match claim {
            Some(_) => self.instruction_verdict(&card_id, &facts, req.instruction).await?,
            None if req.instruction.is_some() => {
                return Err(CenterError::Invalid(
                    ErrorCode::InstructionUnexpected,
                    "the offer profile takes it at the balance step",
                ));
            }
            None => None,
        };
        let (profile, opening) = (req.profile, req.opening);
        let open = move |s: Settlement, ctx: &mut Context<'_, dyn Random + Send>| -> Result<Stepped, StepError> {
            let (settlement, apdus) = match claim {
                None => s.authenticate(ctx, &opening, through)?,
                Some(claim) => s.authenticate_and_debit(ctx, &opening, claim, through)?,
            };
            // The card proved itself: now, and only now, whether it may pay.
            settlement.admit(card.as_ref())?;
            if let Some(refused) = refusal.clone() {
                return Err(refused.into());
            }
            let effect = if settlement.phase() == Phase::Offered { Effect::Hold } else { Effect::None };
            Ok(Stepped { settlement, apdus, effect })
        };
        let mut rng = self.random.generator();
        let mut ctx = self.ctx(rng.as_mut());
        let input = CreateInput {
            bill: &verified,
            registered_name: store.name.clone(),
            card_id,
            key_version,
            profile,
            max_amount_minor: self.max_amount_minor,
        };
        let (settlement, _) = Settlement::create(&mut ctx, input)?;
        let stepped = open(settlement, &mut ctx)?;
        let created = self.reply(&stepped.settlement, &stepped.apdus);
        // A write that failed retryably (two holds opening the same new
        // ledger account at once, a deadlock) is written again.
        let mut attempt = 0;
        let inserted = loop {
            let response = answer.as_ref().map(|a| a.saved(&created)).transpose()?;
            let entries = self.entries(&stepped).await?;
            match self.db.insert_settlement_answering(&stepped.settlement, self.clock.now(), response, entries).await {
                Err(e) if e.is_retryable() && attempt < crate::limits::STEP_RETRIES_MAX => attempt += 1,
                done => break done,
            }
        };
        match inserted {
            Ok(None) => {
                self.count_outcome(&stepped.settlement);
                Ok(created)
            }
            Ok(Some((existing, _))) if existing.card_id != card_id => Err(CenterError::BillInUse(existing.card_id)),
            // The same bill again before any DEBIT exists (a wallet that
            // restarted, a browser that posted twice), in a new session the
            // wallet opened: the purchase goes on. Later, the settlement as
            // it stands.
            Ok(Some((existing, _))) if matches!(existing.phase(), Phase::Authenticating | Phase::ReadingBalance) => {
                let id = existing.id.to_string();
                self.step(
                    &id,
                    Box::new(move |s, ctx| open(s.restart_session(ctx, key_version, profile)?, ctx)),
                    answer.into(),
                )
                .await
            }
            Ok(Some((existing, _))) => Ok(reply(&existing, &[])),
            Err(e) => Err(stored(e)),
        }
    }

    /// A step's answer with the settlement's access token: for its own
    /// routes, whose callers hold the token already, and for its create.
    fn reply(&self, s: &Settlement, apdus: &[CommandApdu]) -> StepReply {
        let access_token = Some(self.security.access_token(s.id.as_str()));
        StepReply { access_token, ..reply(s, apdus) }
    }

    /// What a transition needs from the center, with `rng` drawn for it.
    pub(crate) fn ctx<'a>(&'a self, rng: &'a mut (dyn Random + Send + 'static)) -> Context<'a, dyn Random + Send> {
        Context {
            security: &self.security,
            center: &self.center_id,
            center_key: self.center_key.as_ref(),
            now: self.clock.now(),
            rng,
        }
    }

    /// The settlement and its version: `read` if it is that settlement (the
    /// HTTP layer read it with the stored answer), else from the database.
    async fn load(&self, id: &str, read: Option<(Settlement, i64)>) -> Result<(Settlement, i64), CenterError> {
        let sid = SettlementId::parse(id).map_err(|_| CenterError::UnknownSettlement(id.chars().take(64).collect()))?;
        if let Some(found) = read.filter(|(s, _)| s.id == sid) {
            return Ok(found);
        }
        self.db.settlement(&sid).await?.ok_or_else(|| CenterError::UnknownSettlement(id.to_owned()))
    }

    /// Load → transition → one transaction: the compare-and-set, the books'
    /// effect and the stored answer. On PostgreSQL a transaction that lost a
    /// serialization conflict runs the whole step again from the load.
    async fn step(&self, id: &str, transition: Transition<'_>, call: StepCall) -> Result<StepReply, CenterError> {
        let StepCall { answer, mut read, trail } = call;
        let found: Result<(Stepped, ()), CenterError> = run_step!(
            load: self.load(id, read.take()),
            transition: |settlement| {
                let mut rng = self.random.generator();
                transition(settlement, &mut self.ctx(rng.as_mut())).map_err(CenterError::from)
            },
            store: |stepped, version| self.store_step(&stepped, version, answer.as_ref(), trail.clone()),
        );
        let (stepped, ()) = found?;
        let s = &stepped.settlement;
        self.count_outcome(s);
        if s.phase() == Phase::Completed {
            self.completed.push(crate::delivery::Deliverable::Settlement(Box::new(s.clone())));
        }
        Ok(self.reply(s, &stepped.apdus))
    }

    pub(crate) fn count_outcome(&self, s: &Settlement) {
        if matches!(s.phase(), Phase::Completed | Phase::Voided) {
            self.outcomes.get_or_create(&vec![("outcome".to_owned(), s.phase().as_str().to_owned())]).inc();
        }
    }

    async fn store_step(
        &self,
        stepped: &Stepped,
        version: i64,
        answer: Option<&Answer>,
        trail: Option<crate::db::TrailEntry>,
    ) -> Result<(), CenterError> {
        let s = &stepped.settlement;
        let entries = self.entries(stepped).await?;
        let response = answer.map(|a| a.saved(&self.reply(s, &stepped.apdus))).transpose()?;
        // The card's log records the step read are kept with it.
        self.db
            .update_settlement_answering(
                s,
                version,
                self.clock.now(),
                crate::db::StepExtras { response, entries, collected: &s.collected, trail },
            )
            .await
            .map_err(stored)
    }

    /// What the books do for a step's effect.
    async fn entries(&self, stepped: &Stepped) -> Result<Entries, CenterError> {
        let s = &stepped.settlement;
        let (tx, amount) = (&s.transaction_id, s.bill.amount);
        Ok(match stepped.effect {
            Effect::None => Entries::none(),
            Effect::Hold => Entries::purchase_hold(tx, &s.card_id, s.bill.payee(), amount)?,
            Effect::Post => Entries::purchase_post(tx, s.bill.payee(), s.id.as_str(), amount)?,
            Effect::Void => Entries::purchase_void(tx, amount)?,
            Effect::Release => {
                let states =
                    self.books.ledger().lookup_pending_states(&[tx.as_u128()]).await.map_err(BooksError::from)?;
                match states.first() {
                    Some((_, kessai_ledger::PendingState::Pending)) => Entries::purchase_void(tx, amount)?,
                    _ => Entries::none(),
                }
            }
        })
    }

    /// The balance step: the offer (SIG2) and the sealed DEBIT, with the
    /// purchase held in the books before the DEBIT leaves. A member's card
    /// also needs the member's signed payment instruction for this bill
    /// (#12, FIG. 7 ①), checked before anything is sealed.
    pub async fn offer(&self, id: &str, answers: Vec<ResponseApdu>, call: StepCall) -> Result<StepReply, CenterError> {
        self.offer_instructed(id, answers, None, call).await
    }

    /// As [`Center::offer`], with the member's payment instruction.
    pub async fn offer_instructed(
        &self,
        id: &str,
        answers: Vec<ResponseApdu>,
        instruction: Option<&str>,
        call: StepCall,
    ) -> Result<StepReply, CenterError> {
        let (settlement, version) = self.load(id, call.read.clone()).await?;
        if let Some(refused) = self.instruction_verdict(&settlement.card_id, &settlement.bill, instruction).await? {
            return Err(StepError::from(refused).into());
        }
        let call = StepCall { read: Some((settlement, version)), ..call };
        self.step(
            id,
            Box::new(move |s, ctx| match s.offer(ctx, &answers)? {
                (settlement, OfferOutcome::Offered { commands, .. }) => {
                    Ok(Stepped { settlement, apdus: commands, effect: Effect::Hold })
                }
                (settlement, OfferOutcome::Insufficient { .. }) => {
                    Ok(Stepped { settlement, apdus: vec![], effect: Effect::None })
                }
            }),
            call,
        )
        .await
    }

    /// A purchase by a member's card needs the member's instruction: signed
    /// by the member's registered key (active, in its window), for this
    /// bill, card, amount and store. Other cards need none. Returns why it
    /// is refused, if it is (raised by the caller after the card's proof).
    async fn instruction_verdict(
        &self,
        card: &CardId,
        bill: &crate::purchase::BillFacts,
        instruction: Option<&str>,
    ) -> Result<Option<InstructionRefusal>, CenterError> {
        use kessai_core::messages::instruction;
        let Some((member, true)) = self.db.card_member(card).await? else { return Ok(None) };
        let refused = |why: String| Ok(Some(InstructionRefusal::Refused(why)));
        let Some(token) = instruction else { return Ok(Some(InstructionRefusal::Required(member))) };
        let Some(row) = self.db.member(&member).await?.filter(|m| m.status == "active") else {
            return refused(format!("member {member} has no active key"));
        };
        let keys = match crate::members::member_keys(&row) {
            Ok(keys) => keys,
            Err(why) => return refused(why),
        };
        let verified = match instruction::verify(token, &keys, self.clock.as_ref(), &self.center_id) {
            Ok(verified) => verified,
            Err(e) => return refused(e.to_string()),
        };
        let i = verified.message();
        if i.card_id() != Some(*card)
            || !i.bill_hash().ct_eq(&bill.bill_hash)
            || i.amount() != bill.amount
            || i.store() != &bill.store
        {
            return refused("it is for another bill, card, amount or store".into());
        }
        Ok(None)
    }

    pub async fn complete(
        &self,
        id: &str,
        answers: Vec<ResponseApdu>,
        call: StepCall,
    ) -> Result<StepReply, CenterError> {
        self.step(
            id,
            Box::new(move |s, ctx| {
                let (settlement, _) = s.complete(ctx, &answers)?;
                Ok(Stepped { settlement, apdus: vec![], effect: Effect::Post })
            }),
            call,
        )
        .await
    }

    pub async fn cancel(&self, id: &str, call: StepCall) -> Result<StepReply, CenterError> {
        self.step(
            id,
            Box::new(|s, _| {
                let settlement = s.cancel("cancelled by the cardholder before the debit")?;
                Ok(Stepped { settlement, apdus: vec![], effect: Effect::Release })
            }),
            call,
        )
        .await
    }

    /// POST /v1/settlements/{id}/token: the cardholder pays the bill with
    /// bank deposit token `token` on the card instead of its balance (seed
    /// 002), from `reading_balance` (nothing of the purchase sealed). The
    /// token must be stored on the settlement's card, the card's member's,
    /// unexpired, in the bill's currency and at least the bill, and chosen
    /// for no other settlement waiting for it; the bill paid by no prepaid
    /// card; a member's card needs the member's instruction. The settlement is then `paying_by_token`: the wallet redeems
    /// the token in a token session (`POST /v1/cards/{card}/token-sessions`
    /// `{"redeem"}`), whose redemption completes it (SIG3).
    pub async fn pay_by_token(
        &self,
        id: &str,
        token: TokenId,
        instruction: Option<&str>,
        call: StepCall,
    ) -> Result<StepReply, CenterError> {
        // A member's card pays a bill with a token only on the member's
        // instruction, as with its balance.
        let (settlement, version) = self.load(id, call.read.clone()).await?;
        if settlement.phase() == Phase::ReadingBalance
            && let Some(refused) = self.instruction_verdict(&settlement.card_id, &settlement.bill, instruction).await?
        {
            return Err(StepError::from(refused).into());
        }
        let call = StepCall { read: Some((settlement, version)), ..call };
        let found = self.db.token(&token).await?;
        let (card, member) = match &found {
            Some(t) => (Some(t.card_id), self.db.card_member(&t.card_id).await?.map(|(m, _)| m)),
            None => (None, None),
        };
        // Another settlement the token was chosen for, still waiting for it
        // (the write checks it again, with the token still stored).
        let mut taken = None;
        if let Some(other) = found.as_ref().and_then(|t| t.chosen_by.clone()).filter(|o| o != id)
            && let Ok(other) = SettlementId::parse(&other)
            && self.db.settlement(&other).await?.is_some_and(|(o, _)| o.phase() == Phase::PayingByToken)
        {
            taken = Some(other);
        }
        let now = self.clock.now();
        let refuse = |why: String| StepError::TokenRefused(why);
        let stepped = self
            .step(
                id,
                Box::new(move |s, _| {
                    let t = found.as_ref().filter(|_| card == Some(s.card_id));
                    let t = t.ok_or_else(|| refuse(format!("no token {token} on this card")))?;
                    if s.phase() == Phase::ReadingBalance {
                        crate::token_session::redeemable(t, now, member.as_deref()).map_err(refuse)?;
                        if t.amount.currency() != s.bill.amount.currency()
                            || t.amount.amount_minor() < s.bill.amount.amount_minor()
                        {
                            return Err(refuse(format!("token {token} of {} cannot pay {}", t.amount, s.bill.amount)));
                        }
                        if let Some(other) = &taken {
                            return Err(refuse(format!("token {token} was chosen to pay settlement {other} already")));
                        }
                    }
                    let settlement = s.pay_by_token(token, t.redeem_tx)?;
                    Ok(Stepped { settlement, apdus: vec![], effect: Effect::None })
                }),
                call,
            )
            .await;
        match stepped {
            Err(CenterError::Books(BooksError::Refused { code: "token_not_stored", .. })) => {
                Err(StepError::TokenRefused(format!(
                    "token {token} was redeemed, or chosen to pay another settlement, meanwhile"
                ))
                .into())
            }
            other => other,
        }
    }

    pub async fn recover(&self, id: &str, call: StepCall) -> Result<StepReply, CenterError> {
        self.step(
            id,
            Box::new(|s, ctx| {
                let (settlement, init) = s.begin_recovery(ctx)?;
                Ok(Stepped { settlement, apdus: vec![init], effect: Effect::None })
            }),
            call,
        )
        .await
    }

    pub async fn recover_authenticate(
        &self,
        id: &str,
        answers: Vec<ResponseApdu>,
        call: StepCall,
    ) -> Result<StepReply, CenterError> {
        let (settlement, version) = self.load(id, call.read.clone()).await?;
        let through = self.db.collected_through(&settlement.card_id).await?;
        let call = StepCall { read: Some((settlement, version)), ..call };
        self.step(
            id,
            Box::new(move |s, ctx| {
                let answer = answers.first().ok_or(StepError::WrongAnswerCount { expected: 1, got: 0 })?;
                let (settlement, apdus) = s.recovery_authenticate(ctx, answer, through)?;
                Ok(Stepped { settlement, apdus, effect: Effect::None })
            }),
            call,
        )
        .await
    }

    pub async fn recover_status(
        &self,
        id: &str,
        answers: Vec<ResponseApdu>,
        call: StepCall,
    ) -> Result<StepReply, CenterError> {
        self.step(
            id,
            Box::new(move |s, ctx| match s.resolve(ctx, &answers)? {
                (settlement, Resolution::Completed { .. }) => {
                    Ok(Stepped { settlement, apdus: vec![], effect: Effect::Post })
                }
                (settlement, Resolution::NeedsBalance { command }) => {
                    Ok(Stepped { settlement, apdus: vec![command], effect: Effect::None })
                }
                (settlement, Resolution::Voided) => Ok(Stepped { settlement, apdus: vec![], effect: Effect::Void }),
            }),
            call,
        )
        .await
    }

    pub async fn recover_balance(
        &self,
        id: &str,
        answers: Vec<ResponseApdu>,
        call: StepCall,
    ) -> Result<StepReply, CenterError> {
        self.step(
            id,
            Box::new(move |s, ctx| {
                let answer = answers.first().ok_or(StepError::WrongAnswerCount { expected: 1, got: 0 })?;
                let (settlement, _) = s.resolve_balance(ctx, answer)?;
                Ok(Stepped { settlement, apdus: vec![], effect: Effect::Void })
            }),
            call,
        )
        .await
    }

    /// Voids a settlement of a card reported lost, past its deadline, with
    /// the reason recorded (admin only).
    pub async fn void_lost_card(
        &self,
        id: &str,
        reason: &str,
        by: &crate::console::Actor,
    ) -> Result<StepReply, CenterError> {
        let (s, _) = self.load(id, None).await?;
        let trail = by.did(
            "settlement_voided_lost",
            id,
            serde_json::json!({ "phase": s.phase().as_str() }),
            serde_json::json!({ "phase": "voided", "reason": reason }),
        );
        let card = self.db.card(&s.card_id).await?.ok_or(CenterError::UnknownCard(s.card_id))?;
        let now = self.clock.now();
        let reason = reason.to_owned();
        self.step(
            id,
            Box::new(move |s, _| {
                let settlement = s.void_lost_card(&card, now, &reason)?;
                Ok(Stepped { settlement, apdus: vec![], effect: Effect::Void })
            }),
            StepCall { trail: Some(trail), ..StepCall::default() },
        )
        .await
    }

    /// Voids what was abandoned before its sealed command, opened at least
    /// [`ABANDONED_AFTER_S`] before `now`: settlements (and any hold an
    /// older version left with one), then value updates (their daily
    /// reservation, owed item or decreased amount released, and a charge's
    /// authorization voided). Any instance may run it at any time: each row
    /// ends by compare-and-set, so of two sweepers (or a sweeper and the
    /// wallet) exactly one ends it. Returns how many it ended.
    pub async fn sweep_abandoned(&self, authorizer: &dyn Authorizer, now: Timestamp) -> Result<usize, CenterError> {
        let before = Timestamp::from_unix_s(now.unix_s().saturating_sub(ABANDONED_AFTER_S));
        let mut ended = 0;
        for id in self.db.abandoned(false, before, SWEEP_BATCH_MAX).await? {
            let abandon: Transition<'_> =
                Box::new(|s, _| Ok(Stepped { settlement: s.abandon()?, apdus: vec![], effect: Effect::Release }));
            match self.step(&id, abandon, StepCall::default()).await {
                Ok(_) => ended += 1,
                // Another sweeper, or the wallet, moved it first.
                Err(CenterError::Step(StepError::OutOfOrder { .. }) | CenterError::Db(DbError::Conflict)) => {}
                Err(e) => tracing::warn!(settlement = %id, error = %e, "could not end an abandoned settlement"),
            }
        }
        for id in self.db.abandoned(true, before, SWEEP_BATCH_MAX).await? {
            match self.abandon_value_update(authorizer, &id).await {
                Ok(_) => ended += 1,
                Err(crate::update::UpdateError::Step(crate::value::UpdateStepError::OutOfOrder { .. }))
                | Err(crate::update::UpdateError::Db(DbError::Conflict)) => {}
                Err(e) => tracing::warn!(value_update = %id, error = %e, "could not end an abandoned value update"),
            }
        }
        Ok(ended)
    }

    /// Registers (or updates) a store with its signing keys, in one
    /// transaction. A store that receives completions must take them over
    /// mutual TLS: its notify URL is `https://`. A member names its mall,
    /// which must be registered.
    pub async fn register_store(
        &self,
        store: &StoreRecord,
        keys: &[(PublicKey, Validity)],
        by: &crate::console::Actor,
    ) -> Result<(), CenterError> {
        // A store's id is also the name its client certificate carries
        // (refunds, a member's orders at its mall): it must not be a role's
        // name (L3).
        let id = store.id.as_str();
        if RESERVED_STORE_IDS.contains(&id) || id == self.center_id.as_str() {
            return Err(CenterError::Registration {
                code: ErrorCode::ReservedStoreId,
                message: format!("{id} names a role (the center, an admin), not a store"),
            });
        }
        if let Some(url) = &store.notify_url
            && (!url.starts_with("https://") || url.len() > MAX_NOTIFY_URL_BYTES)
        {
            return Err(CenterError::Registration {
                code: ErrorCode::BadNotifyUrl,
                message: "notify_url must be an https:// URL (completions go over mutual TLS)".into(),
            });
        }
        if let Some(mall) = &store.mall
            && mall != &store.id
            && self.db.store(mall).await?.is_none()
        {
            return Err(CenterError::Registration {
                code: ErrorCode::UnknownMall,
                message: format!("mall {mall} is not registered"),
            });
        }
        // Every registered key is in the directory bills are checked with,
        // which holds at most MAX_REGISTRY_KEYS: refuse here rather than
        // fail every bill later.
        if !keys.is_empty()
            && self.db.store_key_count().await?.saturating_add(keys.len()) > kessai_core::limits::MAX_REGISTRY_KEYS
        {
            return Err(CenterError::Registration {
                code: ErrorCode::TooManyKeys,
                message: format!("the registry holds at most {} store keys", kessai_core::limits::MAX_REGISTRY_KEYS),
            });
        }
        let before = self.db.store(&store.id).await?.map(|s| s.name.as_str().to_owned());
        let after = serde_json::json!({
            "name": store.name.as_str(), "mall": store.mall.as_ref().map(|m| m.to_string()),
            "notify_url": store.notify_url, "client_name": store.client_name,
            "bank_account": store.bank_account.is_some(), "keys_added": keys.len(),
        });
        let trail = by.did("store_registered", store.id.as_str(), serde_json::json!({ "name": before }), after);
        self.db.put_store_with_keys(store, keys, self.clock.now(), Some(trail)).await.map_err(stored)
    }

    /// Registers a card issued with `initial` value on it: its registry row,
    /// its accounts and the issuance, in one transaction. (The caller put
    /// the value on the card; its id is derived from the card, so a retry
    /// cannot issue twice.)
    pub async fn register_card(
        &self,
        record: &CardRecord,
        initial: Option<Money>,
        by: &crate::console::Actor,
    ) -> Result<(), CenterError> {
        let mut entries = Entries::open_card(&record.id, record.currency)?;
        if let Some(amount) = initial.filter(|a| !a.is_zero()) {
            entries = Entries::issue(initial_value_id(&record.id), &record.id, amount)?;
        }
        let after = serde_json::json!({
            "key_version": record.key_version, "currency": record.currency.code(),
            "max_balance_minor": record.max_balance_minor,
            "initial_minor": initial.map(|m| m.amount_minor()).unwrap_or(0),
        });
        let trail = by.did("card_registered", &record.id.to_string(), serde_json::Value::Null, after);
        self.db.put_card_with(record, self.clock.now(), entries, Some(trail)).await.map_err(stored)
    }

    /// The stored settlement, for status queries.
    pub async fn settlement(&self, id: &str) -> Result<Settlement, CenterError> {
        Ok(self.load(id, None).await?.0)
    }

    /// Stores the store's receipt (SIG4) for a completed settlement after
    /// checking it: signed by the paid store's merchant of record, for this
    /// settlement and this exact completion token.
    /// A payment from a prepaid card (same id space) takes its receipt
    /// alike.
    pub async fn accept_receipt(&self, id: &str, token: &str) -> Result<(), CenterError> {
        let (s, version) = match self.load(id, None).await {
            Err(CenterError::UnknownSettlement(unknown)) => {
                let found = match SettlementId::parse(id) {
                    Ok(sid) => self.db.prepaid_payment(&sid).await?,
                    Err(_) => None,
                };
                return match found {
                    Some((p, version)) => self.accept_prepaid_receipt(p, version, token).await,
                    None => Err(CenterError::UnknownSettlement(unknown)),
                };
            }
            found => found?,
        };
        let completion = s.completion_token().ok_or_else(|| CenterError::Receipt("not completed".into()))?;
        let keys = self.db.store_keys().await?;
        let verified =
            receipt::verify(token, &keys, self.clock.as_ref()).map_err(|e| CenterError::Receipt(e.to_string()))?;
        receipt_matches(verified.message(), &s.id, completion, &s.bill)?;
        if s.receipt_token().is_some() {
            return Ok(());
        }
        let s = s.with_receipt(token.to_owned())?;
        self.db.update_settlement(&s, version, self.clock.now()).await?;
        Ok(())
    }
}
