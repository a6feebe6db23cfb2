//! The purchase protocol of DESIGN §4 as a state machine over a persisted
//! [`Settlement`]. Every transition takes the settlement by value and
//! returns the next one (or an error naming what was expected), so a step
//! out of order cannot be expressed as a valid result.
//!
//! ```text
//! create ──► Authenticating ──authenticate──► ReadingBalance ──offer──► Offered ──complete──► Completed
//!                 └──────────── authenticate_and_debit (confirmed, direct) ──────►┘
//!                 │                                │                     │
//!               cancel                   cancel / insufficient        begin_recovery
//!                 ▼                                ▼                     ▼
//!               Voided ◄──────────────────────────┘          Recovering ──recovery_authenticate──►
//!                 ▲                                           RecoveringStatus ──resolve──► Completed | Voided
//!                 └──────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! The rule that makes this safe: once the sealed DEBIT has left the center
//! (phase `Offered`), nothing voids the settlement until the card itself
//! says, inside a new secure session, that the transaction was not applied.
//! A new session ends the old one on the card, so the old DEBIT can never
//! be applied afterwards. Nothing posts without the card's sealed answer.

use kessai_card::protocol::{
    BalanceReport, CardStatus as CardChipStatus, TransferKind, TransferRequest, TxId, TxStatus, debit_command,
    read_balance_command, transaction_status_command,
};
use kessai_core::digest::Sha256Digest;
use kessai_core::ids::{BillId, CardId, MessageId, OrderId, PartyId, SettlementId, StoreId, TransactionId};
use kessai_core::jws::{Claims, JwsError, Verified};
use kessai_core::messages::DisplayText;
use kessai_core::messages::bill::Bill;
use kessai_core::messages::completion::{self, Completion, CompletionDraft};
use kessai_core::messages::offer::{self, Offer, OfferDraft};
use kessai_core::profile::Profile;
use kessai_core::random::Random;
use kessai_core::time::Timestamp;
use kessai_core::token::TokenId;
use kessai_core::{Currency, Money};
use kessai_scp03::{ApduError, CommandApdu, ResponseApdu, StatusWord};
use serde::{Deserialize, Serialize};

use crate::card_session::{
    CardTxState, Pending, Probe, Sealed, ack_of, bad_answer, balance_report, collect_commands, completed, in_session,
    never_applied,
};
use crate::limits::{COMPLETION_LIFETIME_S, OFFER_LIFETIME_S, SETTLEMENT_TIMEOUT_S};
use crate::security::{SealedState, SecurityError, SecurityServer};
use crate::statement::LogEntry;

use kessai_api::ErrorCode;
pub use kessai_api::{Phase, Reason};

/// A card as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRecord {
    pub id: CardId,
    pub key_version: u8,
    pub status: CardRegistryStatus,
    pub currency: Currency,
    pub max_balance_minor: u64,
}

/// A card's status in the registry.
pub use kessai_api::admin::CardStatus as CardRegistryStatus;

/// Every way a step can be refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StepError {
    #[error("step {step} is not allowed while the settlement is {phase:?}; expected {expected}")]
    OutOfOrder { step: &'static str, phase: Phase, expected: &'static str },
    #[error("card {0} is not active")]
    CardNotActive(CardId),
    /// A deposit token the session cannot redeem: redeemed, expired, or not
    /// the card's.
    #[error("{0}")]
    TokenRefused(String),
    #[error("card {0} is not registered")]
    UnknownCard(CardId),
    #[error("the bill is in {bill} but the card holds {card}")]
    CurrencyMismatch { bill: Currency, card: Currency },
    #[error("amount {amount} exceeds the limit {limit}")]
    AmountOverLimit { amount: Money, limit: Money },
    #[error("insufficient balance: the card holds {balance}, the bill asks {amount}")]
    InsufficientBalance { balance: Money, amount: Money },
    #[error("the card answered {0}")]
    CardRefused(StatusWord),
    #[error("the card's answer is malformed: {0}")]
    BadCardAnswer(String),
    #[error("expected {expected} card answers, got {got}")]
    WrongAnswerCount { expected: usize, got: usize },
    #[error("the card reported another transaction than the one issued")]
    WrongTransaction,
    /// A member's card pays only on the member's signed instruction.
    #[error("card of member {0}: the member's signed payment instruction is needed")]
    InstructionRequired(String),
    #[error("the payment instruction is refused: {0}")]
    InstructionRefused(String),
    #[error("the session opening was answered before (card sequence counter {seen}, last {last}); open a new one")]
    ReplayedOpening { seen: u32, last: u32 },
    #[error("the card cannot say whether the transaction was applied (too many later transactions); audit needed")]
    Undecidable,
    #[error("card {0} is not reported lost; only the card can settle this")]
    CardNotLost(CardId),
    #[error("the settlement may still be completed by the card until {deadline}")]
    BeforeDeadline { deadline: Timestamp },
    #[error(transparent)]
    Security(#[from] SecurityError),
    #[error("signing: {0}")]
    Signing(#[from] JwsError),
}

impl From<ApduError> for StepError {
    fn from(e: ApduError) -> Self {
        StepError::BadCardAnswer(e.to_string())
    }
}

/// The facts of the bill the settlement pays, kept for every later step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillFacts {
    pub bill_id: BillId,
    pub order_id: OrderId,
    pub store: StoreId,
    pub member: Option<StoreId>,
    pub store_name: DisplayText,
    pub amount: Money,
    pub bill_hash: Sha256Digest,
    /// When the bill itself expires.
    pub bill_expires_at: Timestamp,
}

impl BillFacts {
    pub fn from_verified(bill: &Verified<Bill>, registered_name: DisplayText) -> BillFacts {
        let b = bill.message();
        BillFacts {
            bill_id: b.bill_id().clone(),
            order_id: b.order_id().clone(),
            store: b.store().clone(),
            member: b.member().cloned(),
            store_name: registered_name,
            amount: b.total(),
            bill_hash: bill.token_hash(),
            bill_expires_at: bill.claims().expires_at(),
        }
    }

    /// The store that is paid.
    pub fn payee(&self) -> &StoreId {
        self.member.as_ref().unwrap_or(&self.store)
    }
}

/// A batch of commands for the card, and the sealed ones awaiting answers.
type Batch = (Vec<CommandApdu>, Vec<Pending>);

/// What a settlement made when it sealed its DEBIT: what recovery compares
/// against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferMade {
    /// The balance: read inside the secure session (`offer`), or as the
    /// wallet read it in the clear (`confirmed`, `direct`).
    pub balance_minor: u64,
    /// The card's transaction counter when the balance was read (as the
    /// wallet read it, in `confirmed` and `direct`): if the DEBIT was
    /// applied, it was applied as counter + 1.
    pub counter_at_offer: u32,
    /// SHA-256 of the sealed DEBIT's bytes.
    pub debit_hash: Sha256Digest,
    /// The signed offer (SIG2): in the `offer` profile only.
    pub offer_token: Option<String>,
}

/// What the wallet read from the card in the clear (GET DATA `DF10`)
/// before it asked the center, in the second embodiment: claims, not
/// proofs. The card itself refuses a DEBIT above its balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CardClaim {
    pub balance_minor: u64,
    pub counter: u32,
}

/// What the card proved of a completed purchase, and the store's receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebitConfirmed {
    /// The signed completion (SIG3).
    pub completion_token: String,
    pub card_counter: u32,
    /// The store's signed receipt (SIG4), once delivered.
    pub receipt_token: Option<String>,
}

/// Where a settlement stands (see [`CardTxState`]).
pub type PurchaseState = CardTxState<OfferMade, DebitConfirmed>;

/// A settlement. Everything a later step (on any center instance) needs is
/// here. Stored as the flat record of earlier releases (`SettlementRecord`),
/// which is checked to hold what its phase needs when read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "SettlementRecord", into = "SettlementRecord")]
pub struct Settlement {
    pub id: SettlementId,
    pub bill: BillFacts,
    pub card_id: CardId,
    pub key_version: u8,
    pub transaction_id: TransactionId,
    pub created_at: Timestamp,
    pub deadline: Timestamp,
    /// How this purchase runs.
    pub profile: Profile,
    /// The card's SCP03 sequence counter in the last INITIALIZE UPDATE
    /// answer taken: a later opening must name a higher one.
    pub card_sequence: Option<u32>,
    /// The sealed commands of the last batch awaiting their answers, each
    /// with the session as of it.
    pub pending: Vec<Pending>,
    /// The card's log records the last step read (not stored with the
    /// record: the step's write keeps them in `center_card_log`).
    pub collected: Vec<LogEntry>,
    /// The bank deposit token the cardholder pays with (seed 002), if
    /// they chose one instead of the card's balance.
    pub paid_by_token: Option<TokenId>,
    state: PurchaseState,
}

/// A settlement as stored: one flat JSON object, the phase's data in
/// optional fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SettlementRecord {
    id: SettlementId,
    phase: Phase,
    bill: BillFacts,
    card_id: CardId,
    key_version: u8,
    transaction_id: TransactionId,
    scp: Option<SealedState>,
    balance_minor: Option<u64>,
    counter_at_offer: Option<u32>,
    debit_hash: Option<Sha256Digest>,
    offer_token: Option<String>,
    #[serde(default)]
    pending: Vec<Pending>,
    // Records from before profiles existed are all `offer`.
    #[serde(default = "offer_profile")]
    profile: Profile,
    #[serde(default)]
    card_sequence: Option<u32>,
    completion_token: Option<String>,
    #[serde(default)]
    receipt_token: Option<String>,
    card_counter: Option<u32>,
    created_at: Timestamp,
    deadline: Timestamp,
    outcome_reason: Option<String>,
    #[serde(default)]
    outcome_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    paid_by_token: Option<TokenId>,
}

fn offer_profile() -> Profile {
    Profile::Offer
}

impl TryFrom<SettlementRecord> for Settlement {
    type Error = &'static str;

    fn try_from(r: SettlementRecord) -> Result<Settlement, &'static str> {
        const UNFIT: &str = "a settlement's record does not hold what its phase needs";
        let offer = match (r.balance_minor, r.counter_at_offer, r.debit_hash) {
            (Some(balance_minor), Some(counter_at_offer), Some(debit_hash)) => {
                // A token pays with no offer signed, whatever the profile.
                if r.profile.signs_offer() != r.offer_token.is_some() && r.paid_by_token.is_none() {
                    return Err(UNFIT);
                }
                Some(OfferMade { balance_minor, counter_at_offer, debit_hash, offer_token: r.offer_token })
            }
            _ => None,
        };
        let scp = r.scp;
        let state = match r.phase {
            Phase::Authenticating => PurchaseState::Authenticating { scp: scp.ok_or(UNFIT)? },
            Phase::ReadingBalance => PurchaseState::ReadingBalance { scp: scp.ok_or(UNFIT)? },
            Phase::PayingByToken if r.paid_by_token.is_some() => {
                PurchaseState::ReadingBalance { scp: scp.ok_or(UNFIT)? }
            }
            Phase::PayingByToken => return Err(UNFIT),
            Phase::Offered => PurchaseState::Offered { scp: scp.ok_or(UNFIT)?, offer: offer.ok_or(UNFIT)? },
            Phase::Recovering => PurchaseState::Recovering { scp: scp.ok_or(UNFIT)?, offer: offer.ok_or(UNFIT)? },
            Phase::RecoveringStatus => {
                PurchaseState::RecoveringStatus { scp: scp.ok_or(UNFIT)?, offer: offer.ok_or(UNFIT)? }
            }
            Phase::RecoveringBalance => {
                PurchaseState::RecoveringBalance { scp: scp.ok_or(UNFIT)?, offer: offer.ok_or(UNFIT)? }
            }
            Phase::Completed => PurchaseState::Completed {
                offer: offer.ok_or(UNFIT)?,
                done: DebitConfirmed {
                    completion_token: r.completion_token.ok_or(UNFIT)?,
                    card_counter: r.card_counter.ok_or(UNFIT)?,
                    receipt_token: r.receipt_token,
                },
            },
            Phase::Voided => PurchaseState::Voided {
                balance_minor: r.balance_minor,
                offer,
                done: None,
                // Records from before outcome codes existed have none.
                code: match r.outcome_code.as_deref() {
                    None => Reason::Unstated,
                    Some(name) => Reason::parse(name).ok_or(UNFIT)?,
                },
                reason: r.outcome_reason.unwrap_or_default(),
            },
        };
        Ok(Settlement {
            id: r.id,
            bill: r.bill,
            card_id: r.card_id,
            key_version: r.key_version,
            transaction_id: r.transaction_id,
            created_at: r.created_at,
            deadline: r.deadline,
            profile: r.profile,
            card_sequence: r.card_sequence,
            pending: r.pending,
            collected: Vec::new(),
            paid_by_token: r.paid_by_token,
            state,
        })
    }
}

impl From<Settlement> for SettlementRecord {
    fn from(s: Settlement) -> SettlementRecord {
        let phase = s.phase();
        let scp = s.state.scp().cloned();
        let offer = s.state.offer().cloned();
        let (mut completion_token, mut card_counter, mut receipt_token) = (None, None, None);
        let (mut outcome_code, mut outcome_reason, mut balance_minor) =
            (None, None, offer.as_ref().map(|o| o.balance_minor));
        match s.state {
            PurchaseState::Completed { done, .. } => {
                (completion_token, card_counter, receipt_token) =
                    (Some(done.completion_token), Some(done.card_counter), done.receipt_token);
            }
            PurchaseState::Voided { balance_minor: b, code, reason, .. } => {
                (outcome_code, outcome_reason, balance_minor) = (Some(code.as_str().to_owned()), Some(reason), b);
            }
            _ => {}
        }
        SettlementRecord {
            id: s.id,
            phase,
            bill: s.bill,
            card_id: s.card_id,
            key_version: s.key_version,
            transaction_id: s.transaction_id,
            scp,
            balance_minor,
            counter_at_offer: offer.as_ref().map(|o| o.counter_at_offer),
            debit_hash: offer.as_ref().map(|o| o.debit_hash),
            pending: s.pending,
            offer_token: offer.and_then(|o| o.offer_token),
            profile: s.profile,
            card_sequence: s.card_sequence,
            completion_token,
            receipt_token,
            card_counter,
            created_at: s.created_at,
            deadline: s.deadline,
            outcome_reason,
            outcome_code,
            paid_by_token: s.paid_by_token,
        }
    }
}

/// What every step needs from its surroundings. Clock and randomness are
/// passed in so a run can be replayed.
#[allow(missing_debug_implementations)] // holds a random source; keys print elsewhere as ***
pub struct Context<'a, R: Random + ?Sized> {
    pub security: &'a SecurityServer,
    pub center: &'a PartyId,
    pub center_key: &'a dyn kessai_core::keys::JwsSigner,
    pub now: Timestamp,
    pub rng: &'a mut R,
}

/// What `create` needs: the bill, the card's id and the key version its
/// session opens under (as the card named it in its INITIALIZE UPDATE
/// answer), the profile and the limits. Nothing else about the card: a
/// card not registered, or not active, is opened alike, and refused only
/// after it proved itself ([`Settlement::admit`]), so that a card id alone
/// tells nobody whether such a card exists (M4).
#[derive(Debug)]
pub struct CreateInput<'b> {
    pub bill: &'b Verified<Bill>,
    pub registered_name: DisplayText,
    pub card_id: CardId,
    pub key_version: u8,
    pub profile: Profile,
    /// The largest single payment the center accepts.
    pub max_amount_minor: u64,
}

/// The key version a card named in its INITIALIZE UPDATE answer (checked
/// with the cryptogram after it).
pub fn opening_key_version(answer: &ResponseApdu) -> Result<u8, StepError> {
    completed(answer)?;
    Ok(kessai_scp03::InitializeUpdateResponse::parse(answer.data()).map_err(bad_answer)?.key_version)
}

/// A purchase's host challenge ([`kessai_card::protocol::purchase_host_challenge`]).
fn bound_challenge(bill_hash: &Sha256Digest, card: &CardId) -> [u8; 8] {
    kessai_card::protocol::purchase_host_challenge(
        bill_hash.as_bytes(),
        &kessai_card::protocol::CardId(*card.as_bytes()),
    )
}

impl Settlement {
    /// Opens a settlement for a verified bill and a card id, waiting for
    /// the answer to the INITIALIZE UPDATE the wallet sent already, under
    /// the challenge bound to the bill and card; returns that command (what
    /// the wallet relayed).
    pub fn create<R: Random + ?Sized>(
        ctx: &mut Context<'_, R>,
        input: CreateInput<'_>,
    ) -> Result<(Settlement, CommandApdu), StepError> {
        let facts = BillFacts::from_verified(input.bill, input.registered_name);
        if facts.amount.amount_minor() > input.max_amount_minor {
            let limit = Money::new(input.max_amount_minor, facts.amount.currency()).unwrap_or(facts.amount);
            return Err(StepError::AmountOverLimit { amount: facts.amount, limit });
        }
        let id = SettlementId::generate(ctx.rng);
        let transaction_id = TransactionId::generate(ctx.rng);
        let (card_id, key_version) = (input.card_id, input.key_version);
        let challenge = bound_challenge(&facts.bill_hash, &card_id);
        let ((), scp) = in_session(&card_id, id.as_str(), None, |s| s.begin_bound(ctx, key_version, challenge))?;
        let settlement = Settlement {
            transaction_id,
            id,
            bill: facts,
            card_id,
            key_version,
            created_at: ctx.now,
            deadline: ctx.now.checked_add_s(SETTLEMENT_TIMEOUT_S).unwrap_or(ctx.now),
            profile: input.profile,
            card_sequence: None,
            pending: Vec::new(),
            collected: Vec::new(),
            paid_by_token: None,
            state: PurchaseState::Authenticating { scp },
        };
        let init = kessai_card::protocol::initialize_update_command(&challenge);
        Ok((settlement, init))
    }

    /// Where it stands.
    pub fn state(&self) -> &PurchaseState {
        &self.state
    }

    pub fn phase(&self) -> Phase {
        match (&self.state, &self.paid_by_token) {
            // The session the create opened was left for the token's own.
            (PurchaseState::ReadingBalance { .. }, Some(_)) => Phase::PayingByToken,
            (state, _) => state.phase(),
        }
    }

    /// The offer it made, once it made one.
    pub fn offer_made(&self) -> Option<&OfferMade> {
        self.state.offer()
    }

    /// What the card proved, once completed.
    pub fn completion(&self) -> Option<&DebitConfirmed> {
        self.state.done()
    }

    /// The balance read inside the secure session, once read.
    pub fn balance_minor(&self) -> Option<u64> {
        match &self.state {
            PurchaseState::Voided { balance_minor, .. } => *balance_minor,
            state => state.offer().map(|o| o.balance_minor),
        }
    }

    /// The signed completion (SIG3), once completed.
    pub fn completion_token(&self) -> Option<&str> {
        self.completion().map(|c| c.completion_token.as_str())
    }

    /// The store's signed receipt (SIG4), once delivered.
    pub fn receipt_token(&self) -> Option<&str> {
        self.completion().and_then(|c| c.receipt_token.as_deref())
    }

    /// Why it was voided: a stable code (`insufficient_balance`,
    /// `cancelled`, `not_applied`, `card_lost`, `abandoned`) and a reason.
    pub fn outcome(&self) -> Option<(Reason, &str)> {
        self.state.outcome()
    }

    /// The store's receipt (SIG4), once checked against the completion.
    pub fn with_receipt(mut self, token: String) -> Result<Settlement, StepError> {
        let phase = self.phase();
        match &mut self.state {
            PurchaseState::Completed { done, .. } => done.receipt_token = Some(token),
            _ => return Err(StepError::OutOfOrder { step: "receipt", phase, expected: "completed" }),
        }
        Ok(self)
    }

    fn out_of_order(&self, step: &'static str, expected: &'static str) -> StepError {
        StepError::OutOfOrder { step, phase: self.phase(), expected }
    }

    /// The open session and the offer of a settlement whose DEBIT is out.
    fn debit_out(&self, step: &'static str) -> Result<(SealedState, OfferMade), StepError> {
        match self.state.command_out() {
            Some((scp, offer)) => Ok((scp.clone(), offer.clone())),
            None => Err(self.out_of_order(step, "offered or recovering")),
        }
    }

    /// Checks the card cryptogram; returns EXTERNAL AUTHENTICATE and, sealed,
    /// the log commands (LOG COLLECTED through `through`, what the center
    /// holds of the card's log; READ LOG of the oldest records still
    /// uncollected) and READ BALANCE, to relay in that order.
    pub fn authenticate<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answer: &ResponseApdu,
        through: Option<u32>,
    ) -> Result<(Settlement, Vec<CommandApdu>), StepError> {
        if self.profile != Profile::Offer {
            return Err(self.out_of_order("authenticate", "a purchase in the offer profile"));
        }
        let mut then = collect_commands(through);
        then.push((Sealed::ReadBalance, read_balance_command()));
        let ((commands, pending), scp) = self.open_session(ctx, answer, &then)?;
        self.pending = pending;
        self.state = PurchaseState::ReadingBalance { scp };
        Ok((self, commands))
    }

    /// Checks the INITIALIZE UPDATE answer (not an older session's: its
    /// sequence counter may not be below the last one seen) and the card
    /// cryptogram; seals `then` after EXTERNAL AUTHENTICATE.
    fn open_session<R: Random + ?Sized>(
        &mut self,
        ctx: &mut Context<'_, R>,
        answer: &ResponseApdu,
        then: &[(Sealed, CommandApdu)],
    ) -> Result<(Batch, SealedState), StepError> {
        let PurchaseState::Authenticating { scp } = &self.state else {
            return Err(self.out_of_order("authenticate", "authenticating"));
        };
        completed(answer)?;
        let seen = kessai_scp03::InitializeUpdateResponse::parse(answer.data()).map_err(bad_answer)?;
        let seen = seen.sequence_counter.get();
        // The same opening again is the session the card is in (a retry);
        // an older one is not.
        if let Some(last) = self.card_sequence.filter(|last| seen < *last) {
            return Err(StepError::ReplayedOpening { seen, last });
        }
        let opened =
            in_session(&self.card_id, self.id.as_str(), Some(scp.clone()), |s| s.open_batch(ctx, answer, then))?;
        self.card_sequence = Some(seen);
        Ok(opened)
    }

    /// The second embodiment (`confirmed`, `direct`): checks the card
    /// cryptogram and, if the balance the wallet read covers the bill,
    /// seals (READ BALANCE, for `confirmed', and) the DEBIT after EXTERNAL
    /// AUTHENTICATE, with no offer: the wallet showed the bill and the
    /// balance before it asked, and relays all of them at once after the
    /// cardholder agrees. A balance short of the bill voids the settlement
    /// before anything is sealed.
    pub fn authenticate_and_debit<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answer: &ResponseApdu,
        claim: CardClaim,
        through: Option<u32>,
    ) -> Result<(Settlement, Vec<CommandApdu>), StepError> {
        if self.profile == Profile::Offer {
            return Err(self.out_of_order("authenticate_and_debit", "a purchase in the confirmed or direct profile"));
        }
        if claim.balance_minor < self.bill.amount.amount_minor() {
            // Checked only once the card proved itself, like every refusal.
            self.open_session(ctx, answer, &[])?;
            self.state = PurchaseState::Voided {
                balance_minor: Some(claim.balance_minor),
                offer: None,
                done: None,
                code: Reason::Refused(ErrorCode::InsufficientBalance),
                reason: "insufficient balance".into(),
            };
            return Ok((self, Vec::new()));
        }
        let mut then = collect_commands(through);
        if self.profile == Profile::Confirmed {
            then.push((Sealed::ReadBalance, read_balance_command()));
        }
        then.push((Sealed::Transfer, debit_command(&self.transfer_request())));
        let ((commands, pending), scp) = self.open_session(ctx, answer, &then)?;
        let debit_hash = Sha256Digest::of(&commands.last().map(CommandApdu::to_bytes).unwrap_or_default());
        let offer = OfferMade {
            balance_minor: claim.balance_minor,
            counter_at_offer: claim.counter,
            debit_hash,
            offer_token: None,
        };
        self.pending = pending;
        self.state = PurchaseState::Offered { scp, offer };
        Ok((self, commands))
    }

    /// Whether the card that just proved itself ([`Settlement::authenticate`])
    /// may pay this bill: registered (`card`, as the registry has it),
    /// active, in the bill's currency, and able to hold the amount. The
    /// center asks this in the same step as the proof, before anything is
    /// read or stored, so every card id is answered alike until then.
    pub fn admit(&self, card: Option<&CardRecord>) -> Result<(), StepError> {
        let card = card.filter(|c| c.id == self.card_id).ok_or(StepError::UnknownCard(self.card_id))?;
        if card.status != CardRegistryStatus::Active {
            return Err(StepError::CardNotActive(card.id));
        }
        if self.bill.amount.currency() != card.currency {
            return Err(StepError::CurrencyMismatch { bill: self.bill.amount.currency(), card: card.currency });
        }
        if self.bill.amount.amount_minor() > card.max_balance_minor {
            let limit = Money::new(card.max_balance_minor, card.currency).unwrap_or(self.bill.amount);
            return Err(StepError::AmountOverLimit { amount: self.bill.amount, limit });
        }
        Ok(())
    }

    /// The balance read at the balance step, from a card that must be active.
    fn balance_report(&self, answer: &ResponseApdu) -> Result<BalanceReport, StepError> {
        let report = balance_report(&self.card_id, self.bill.amount.currency(), answer)?;
        if report.status != CardChipStatus::Active {
            return Err(StepError::CardNotActive(self.card_id));
        }
        Ok(report)
    }

    /// The transfer request the sealed DEBIT carries. Counterpart: the first
    /// 8 bytes of SHA-256(payee store id); order reference: the first 16
    /// bytes of the bill hash — so the card's log names store and bill.
    pub fn transfer_request(&self) -> TransferRequest {
        let payee = Sha256Digest::of(self.bill.payee().as_str().as_bytes());
        let mut counterpart = [0u8; 8];
        counterpart.copy_from_slice(&payee.as_bytes()[..8]);
        let mut order_ref = [0u8; 16];
        order_ref.copy_from_slice(&self.bill.bill_hash.as_bytes()[..16]);
        TransferRequest {
            tx_id: TxId(*self.transaction_id.as_bytes()),
            amount_minor: self.bill.amount.amount_minor(),
            counterpart,
            order_ref,
            time_unix_s: self.created_at.unix_s(),
        }
    }

    /// Reads the sealed balance; if it suffices, seals the DEBIT and signs
    /// the offer (SIG2). On insufficient balance the settlement is voided —
    /// safe, because no DEBIT was ever issued.
    pub fn offer<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answers: &[ResponseApdu],
    ) -> Result<(Settlement, OfferOutcome), StepError> {
        let (PurchaseState::ReadingBalance { scp }, None) = (&self.state, self.paid_by_token) else {
            return Err(self.out_of_order("offer", "reading_balance"));
        };
        let pending = std::mem::take(&mut self.pending);
        let (read, scp) = in_session(&self.card_id, self.id.as_str(), Some(scp.clone()), |s| {
            s.read_batch(ctx, answers, true, &pending)
        })?;
        self.collected = read.collected;
        let report = self.balance_report(read.balance.as_ref().ok_or_else(|| bad_answer("no balance read"))?)?;
        let currency = self.bill.amount.currency();
        let balance =
            Money::new(report.balance_minor, currency).map_err(|e| StepError::BadCardAnswer(e.to_string()))?;
        if report.balance_minor < self.bill.amount.amount_minor() {
            let amount = self.bill.amount;
            self.state = PurchaseState::Voided {
                balance_minor: Some(report.balance_minor),
                offer: None,
                done: None,
                code: Reason::Refused(ErrorCode::InsufficientBalance),
                reason: "insufficient balance".into(),
            };
            return Ok((self, OfferOutcome::Insufficient { balance, amount }));
        }
        // What this step read of the log is collected with its write: the
        // card may drop it from now on.
        let mut then = ack_of(&self.collected);
        then.push((Sealed::Transfer, debit_command(&self.transfer_request())));
        let ((commands, pending), scp) =
            in_session(&self.card_id, self.id.as_str(), Some(scp), |s| s.seal_batch(ctx, &then))?;
        let debit = commands.last().cloned().ok_or_else(|| bad_answer("no DEBIT sealed"))?;
        let debit_hash = Sha256Digest::of(&debit.to_bytes());
        let token = self.sign_offer(ctx, balance, debit_hash)?;
        let offer = OfferMade {
            balance_minor: report.balance_minor,
            counter_at_offer: report.counter,
            debit_hash,
            offer_token: Some(token.clone()),
        };
        self.pending = pending;
        self.state = PurchaseState::Offered { scp, offer };
        Ok((self, OfferOutcome::Offered { offer: token, commands }))
    }

    fn sign_offer<R: Random + ?Sized>(
        &self,
        ctx: &mut Context<'_, R>,
        balance: Money,
        debit_hash: Sha256Digest,
    ) -> Result<String, StepError> {
        let offer = Offer::new(OfferDraft {
            settlement_id: self.id.clone(),
            bill_hash: self.bill.bill_hash,
            card_id: self.card_id,
            transaction_id: self.transaction_id,
            balance,
            amount: self.bill.amount,
            store: self.bill.store.clone(),
            member: self.bill.member.clone(),
            store_name: self.bill.store_name.clone(),
            debit_hash,
        })
        .map_err(|e| StepError::Signing(e.into()))?;
        let claims = Claims::for_lifetime(ctx.center.clone(), MessageId::generate(ctx.rng), ctx.now, OFFER_LIFETIME_S)?;
        Ok(offer::sign(&claims, &offer, ctx.center_key)?)
    }

    /// Checks the card's sealed answer to DEBIT and signs the completion
    /// (SIG3). In the second embodiment the answers to EXTERNAL
    /// AUTHENTICATE and (in `confirmed`) READ BALANCE come first. An answer
    /// that does not prove the debit leaves the settlement `Offered`, for
    /// recovery.
    pub fn complete<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answers: &[ResponseApdu],
    ) -> Result<(Settlement, String), StepError> {
        let PurchaseState::Offered { scp, offer } = &self.state else {
            return Err(self.out_of_order("complete", "offered"));
        };
        let (scp, mut offer) = (scp.clone(), offer.clone());
        // In the second embodiment the batch began with EXTERNAL AUTHENTICATE.
        let opened = self.profile != Profile::Offer;
        let pending = self.pending.clone();
        let (read, _) =
            in_session(&self.card_id, self.id.as_str(), Some(scp), |s| s.read_batch(ctx, answers, opened, &pending))?;
        if let Some(balance) = &read.balance {
            // The balance the card reported under its R-MAC, before the
            // DEBIT: recovery compares against its counter from now on.
            let report = balance_report(&self.card_id, self.bill.amount.currency(), balance)?;
            (offer.balance_minor, offer.counter_at_offer) = (report.balance_minor, report.counter);
        }
        let plain = read.transfer.ok_or_else(|| bad_answer("no DEBIT answered"))?;
        completed(&plain)?;
        let status = TxStatus::parse(plain.data()).map_err(bad_answer)?;
        let TxStatus::Applied(result) = status else { return Err(StepError::WrongTransaction) };
        let token = self.finish(ctx, &result, offer)?;
        self.collected = read.collected;
        self.pending = Vec::new();
        Ok((self, token))
    }

    /// The card proved the DEBIT applied: SIG3, and the settlement completed.
    fn finish<R: Random + ?Sized>(
        &mut self,
        ctx: &mut Context<'_, R>,
        result: &kessai_card::protocol::TxResult,
        offer: OfferMade,
    ) -> Result<String, StepError> {
        if result.tx_id.0 != *self.transaction_id.as_bytes()
            || result.kind != TransferKind::Debit
            || result.amount_minor != self.bill.amount.amount_minor()
        {
            return Err(StepError::WrongTransaction);
        }
        self.sign_completion(ctx, result.counter, offer)
    }

    /// SIG3 for what the card proved at `counter`, and the settlement
    /// completed.
    fn sign_completion<R: Random + ?Sized>(
        &mut self,
        ctx: &mut Context<'_, R>,
        counter: u32,
        offer: OfferMade,
    ) -> Result<String, StepError> {
        let draft = CompletionDraft {
            settlement_id: self.id.clone(),
            bill_hash: self.bill.bill_hash,
            card_ref: ctx.security.card_ref(&self.bill.store, &self.card_id),
            transaction_id: self.transaction_id,
            amount: self.bill.amount,
            store: self.bill.store.clone(),
            member: self.bill.member.clone(),
            card_counter: counter,
            completed_at: ctx.now,
        };
        let done = Completion::new(draft).map_err(|e| StepError::Signing(e.into()))?;
        let claims =
            Claims::for_lifetime(ctx.center.clone(), MessageId::generate(ctx.rng), ctx.now, COMPLETION_LIFETIME_S)?;
        let token = completion::sign(&claims, &done, ctx.center_key)?;
        let done = DebitConfirmed { completion_token: token.clone(), card_counter: counter, receipt_token: None };
        self.state = PurchaseState::Completed { offer, done };
        Ok(token)
    }

    /// The cardholder pays with deposit token `token` (seed 002) instead
    /// of the balance: from `reading_balance`, before anything of the
    /// purchase was sealed. The settlement names the token's REDEEM
    /// transaction from now on (what the card's log will show); the same
    /// token again is the same step.
    pub fn pay_by_token(mut self, token: TokenId, redeem_tx: TransactionId) -> Result<Settlement, StepError> {
        match (&self.state, self.paid_by_token) {
            (PurchaseState::ReadingBalance { .. }, None) => {}
            (PurchaseState::ReadingBalance { .. }, Some(chosen)) if chosen == token => return Ok(self),
            _ => return Err(self.out_of_order("token", "reading_balance")),
        }
        self.paid_by_token = Some(token);
        self.transaction_id = redeem_tx;
        self.pending = Vec::new();
        Ok(self)
    }

    /// The card gave up the token this settlement is paid with, at
    /// `counter`, and the provider honoured it (`sealed`: its bytes;
    /// `amount`: its value): SIG3, and the settlement completed.
    pub fn complete_by_token<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        token: TokenId,
        sealed: &[u8],
        amount: Money,
        counter: u32,
    ) -> Result<(Settlement, String), StepError> {
        if self.phase() != Phase::PayingByToken || self.paid_by_token != Some(token) {
            return Err(self.out_of_order("token redeemed", "paying_by_token"));
        }
        if amount.currency() != self.bill.amount.currency() || amount.amount_minor() < self.bill.amount.amount_minor() {
            return Err(StepError::TokenRefused(format!("token {token} of {amount} cannot pay {}", self.bill.amount)));
        }
        // What the card gave up stands where a DEBIT's offer would: the
        // funds (the token's value), the counter before, the bytes' hash.
        let offer = OfferMade {
            balance_minor: amount.amount_minor(),
            counter_at_offer: counter.saturating_sub(1),
            debit_hash: Sha256Digest::of(sealed),
            offer_token: None,
        };
        let signed = self.sign_completion(ctx, counter, offer)?;
        Ok((self, signed))
    }

    fn void(&mut self, code: Reason, reason: &str) {
        self.state = PurchaseState::Voided {
            balance_minor: self.balance_minor(),
            offer: self.state.offer().cloned(),
            done: None,
            code,
            reason: reason.to_owned(),
        };
    }

    /// Voids a settlement before its DEBIT was sealed.
    fn void_before_debit(mut self, step: &'static str, code: Reason, reason: &str) -> Result<Settlement, StepError> {
        match self.state {
            PurchaseState::Authenticating { .. } | PurchaseState::ReadingBalance { .. } => {
                self.void(code, reason);
                Ok(self)
            }
            _ => Err(self.out_of_order(step, "authenticating or reading_balance")),
        }
    }

    /// The same bill presented again before any DEBIT exists (a wallet that
    /// restarted, a browser that posted twice): begin a fresh session so the
    /// purchase can go on. After the DEBIT only recovery may touch it.
    /// The wallet opened a new session (its INITIALIZE UPDATE answer comes
    /// next, in `profile` under `key_version`); the settlement waits for it.
    pub fn restart_session<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        key_version: u8,
        profile: Profile,
    ) -> Result<Settlement, StepError> {
        // A token's REDEEM may be out: only its redemption or a void ends it.
        if !matches!(self.state, PurchaseState::Authenticating { .. } | PurchaseState::ReadingBalance { .. })
            || self.paid_by_token.is_some()
        {
            return Err(self.out_of_order("restart", "authenticating or reading_balance"));
        }
        let challenge = bound_challenge(&self.bill.bill_hash, &self.card_id);
        let ((), scp) =
            in_session(&self.card_id, self.id.as_str(), None, |s| s.begin_bound(ctx, key_version, challenge))?;
        (self.key_version, self.profile) = (key_version, profile);
        self.pending = Vec::new();
        self.state = PurchaseState::Authenticating { scp };
        Ok(self)
    }

    /// The cardholder declined, or the wallet gave up, before any DEBIT was
    /// issued: void at once. After the DEBIT was issued only the card can
    /// settle it (`begin_recovery`).
    pub fn cancel(self, reason: &str) -> Result<Settlement, StepError> {
        self.void_before_debit("cancel", Reason::Cancelled, reason)
    }

    /// Ends a settlement the wallet left before its DEBIT was sealed, once
    /// past its deadline (the sweep): no DEBIT exists, so none can apply.
    pub fn abandon(self) -> Result<Settlement, StepError> {
        self.void_before_debit("abandon", Reason::Abandoned, "abandoned before the debit was issued")
    }

    /// Voids a settlement whose DEBIT may be outstanding without the card's
    /// answer — allowed only once the settlement is past its deadline AND
    /// the card is reported lost, and the reason is recorded. (A lost card
    /// will never be presented again to say what happened.)
    pub fn void_lost_card(mut self, card: &CardRecord, now: Timestamp, reason: &str) -> Result<Settlement, StepError> {
        self.debit_out("void_lost")?;
        if card.id != self.card_id || card.status != CardRegistryStatus::Lost {
            return Err(StepError::CardNotLost(self.card_id));
        }
        if now <= self.deadline {
            return Err(StepError::BeforeDeadline { deadline: self.deadline });
        }
        self.void(Reason::Refused(ErrorCode::CardLost), &format!("card reported lost: {reason}"));
        Ok(self)
    }

    /// Starts a new secure session to ask the card about the DEBIT. Allowed
    /// whenever a DEBIT may be outstanding; a recovery interrupted midway
    /// starts again.
    pub fn begin_recovery<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
    ) -> Result<(Settlement, CommandApdu), StepError> {
        let (_, offer) = self.debit_out("recover")?;
        let key_version = self.key_version;
        let (init, scp) = in_session(&self.card_id, self.id.as_str(), None, |s| s.begin(ctx, key_version))?;
        self.pending = Vec::new();
        self.state = PurchaseState::Recovering { scp, offer };
        Ok((self, init))
    }

    /// Checks the card cryptogram of the recovery session; returns EXTERNAL
    /// AUTHENTICATE and a sealed TRANSACTION STATUS. (One sealed command per
    /// round trip: each answer's R-MAC chains on its own command.)
    pub fn recovery_authenticate<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answer: &ResponseApdu,
        through: Option<u32>,
    ) -> Result<(Settlement, Vec<CommandApdu>), StepError> {
        let PurchaseState::Recovering { scp, offer } = &self.state else {
            return Err(self.out_of_order("recovery_authenticate", "recovering"));
        };
        let offer = offer.clone();
        let tx = TxId(*self.transaction_id.as_bytes());
        let mut then = collect_commands(through);
        then.push((Sealed::TransactionStatus, transaction_status_command(&tx)));
        let ((commands, pending), scp) =
            in_session(&self.card_id, self.id.as_str(), Some(scp.clone()), |s| s.open_batch(ctx, answer, &then))?;
        self.pending = pending;
        self.state = PurchaseState::RecoveringStatus { scp, offer };
        Ok((self, commands))
    }

    /// Decides from the card's sealed TRANSACTION STATUS: applied → completed
    /// with SIG3; unknown → one more sealed READ BALANCE to be sure.
    pub fn resolve<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answers: &[ResponseApdu],
    ) -> Result<(Settlement, Resolution), StepError> {
        let PurchaseState::RecoveringStatus { scp, offer } = &self.state else {
            return Err(self.out_of_order("resolve", "recovering_status"));
        };
        let offer = offer.clone();
        let (pending, tx) = (std::mem::take(&mut self.pending), self.transaction_id);
        let ((collected, probe), scp) = in_session(&self.card_id, self.id.as_str(), Some(scp.clone()), |s| {
            s.read_probe(ctx, answers, &pending, &tx)
        })?;
        self.collected = collected;
        match probe {
            Probe::Applied(result) => {
                let token = self.finish(ctx, &result, offer)?;
                Ok((self, Resolution::Completed { completion: token }))
            }
            Probe::NotKnown => {
                let (command, scp) =
                    in_session(&self.card_id, self.id.as_str(), Some(scp), |s| s.seal(ctx, &read_balance_command()))?;
                self.state = PurchaseState::RecoveringBalance { scp, offer };
                Ok((self, Resolution::NeedsBalance { command }))
            }
        }
    }

    /// The card did not know the transaction: void it if the capacity rule
    /// proves it was never applied (`card_session::never_applied`).
    pub fn resolve_balance<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answer: &ResponseApdu,
    ) -> Result<(Settlement, Resolution), StepError> {
        let PurchaseState::RecoveringBalance { scp, offer } = &self.state else {
            return Err(self.out_of_order("resolve_balance", "recovering_balance"));
        };
        let counter_at_offer = offer.counter_at_offer;
        let (plain, _) = in_session(&self.card_id, self.id.as_str(), Some(scp.clone()), |s| s.unseal(ctx, answer))?;
        // A card blocked since the offer can still tell us what happened.
        let report = balance_report(&self.card_id, self.bill.amount.currency(), &plain)?;
        never_applied(Some(counter_at_offer), &report)?;
        self.void(Reason::NotApplied, "the card reports the transaction was not applied");
        Ok((self, Resolution::Voided))
    }
}

/// What `offer` produced.
#[derive(Debug)]
pub enum OfferOutcome {
    /// The offer (SIG2) and the sealed commands for the wallet: the DEBIT
    /// last, a LOG COLLECTED before it when the step read the card's log.
    Offered { offer: String, commands: Vec<CommandApdu> },
    /// The card holds too little; the settlement is voided.
    Insufficient { balance: Money, amount: Money },
}

/// What a recovery step decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolution {
    Completed {
        completion: String,
    },
    /// Relay this sealed READ BALANCE and call `resolve_balance`.
    NeedsBalance {
        command: CommandApdu,
    },
    Voided,
}
