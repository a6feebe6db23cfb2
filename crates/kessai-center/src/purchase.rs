//! The purchase protocol of DESIGN §4 as a state machine over a persisted
//! [`Settlement`]. Every transition takes the settlement by value and
//! returns the next one (or an error naming what was expected), so a step
//! out of order cannot be expressed as a valid result.
//!
//! ```text
//! create ──► Authenticating ──authenticate──► ReadingBalance ──offer──► Offered ──complete──► Completed
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
use kessai_core::keys::SigningKey;
use kessai_core::messages::DisplayText;
use kessai_core::messages::bill::Bill;
use kessai_core::messages::completion::{self, Completion, CompletionDraft};
use kessai_core::messages::offer::{self, Offer, OfferDraft};
use kessai_core::random::Random;
use kessai_core::time::Timestamp;
use kessai_core::{Currency, Money};
use kessai_scp03::{ApduError, CommandApdu, ResponseApdu, StatusWord};
use serde::{Deserialize, Serialize};

use crate::card_session::{Probe, Session, bad_answer, balance_report, completed, never_applied, transaction_status};
use crate::limits::{COMPLETION_LIFETIME_S, OFFER_LIFETIME_S, SETTLEMENT_TIMEOUT_S};
use crate::security::{SealedState, SecurityError, SecurityServer};

/// Where a settlement stands. Stored as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// INITIALIZE UPDATE sent; waiting for the card's answer.
    Authenticating,
    /// EXTERNAL AUTHENTICATE and READ BALANCE sent.
    ReadingBalance,
    /// Offer signed and sealed DEBIT handed out; the transfer is pending.
    Offered,
    /// A new session was begun to ask the card what happened.
    Recovering,
    /// TRANSACTION STATUS sent in the new session.
    RecoveringStatus,
    /// The card did not know the transaction; READ BALANCE sent to compare
    /// its counter with the one at the offer.
    RecoveringBalance,
    /// The card confirmed the debit; the transfer is posted.
    Completed,
    /// Provably not applied; the transfer (if any) is voided.
    Voided,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Authenticating => "authenticating",
            Phase::ReadingBalance => "reading_balance",
            Phase::Offered => "offered",
            Phase::Recovering => "recovering",
            Phase::RecoveringStatus => "recovering_status",
            Phase::RecoveringBalance => "recovering_balance",
            Phase::Completed => "completed",
            Phase::Voided => "voided",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        [
            Phase::Authenticating,
            Phase::ReadingBalance,
            Phase::Offered,
            Phase::Recovering,
            Phase::RecoveringStatus,
            Phase::RecoveringBalance,
            Phase::Completed,
            Phase::Voided,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }

    /// Whether a sealed DEBIT may have reached the card.
    pub fn debit_issued(self) -> bool {
        matches!(self, Phase::Offered | Phase::Recovering | Phase::RecoveringStatus | Phase::RecoveringBalance)
    }
}

/// A card as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRecord {
    pub id: CardId,
    pub key_version: u8,
    pub status: CardRegistryStatus,
    pub currency: Currency,
    pub max_balance_minor: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardRegistryStatus {
    Active,
    Blocked,
    Lost,
}

/// Every way a step can be refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StepError {
    #[error("step {step} is not allowed while the settlement is {phase:?}; expected {expected}")]
    OutOfOrder { step: &'static str, phase: Phase, expected: &'static str },
    #[error("card {0} is not active")]
    CardNotActive(CardId),
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

/// A settlement as stored. Everything a later step (on any center
/// instance) needs is here; the SCP03 state only sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settlement {
    pub id: SettlementId,
    pub phase: Phase,
    pub bill: BillFacts,
    pub card_id: CardId,
    pub key_version: u8,
    pub transaction_id: TransactionId,
    pub scp: Option<SealedState>,
    /// The balance read inside the secure session.
    pub balance_minor: Option<u64>,
    /// The card's transaction counter when the balance was read: if the
    /// DEBIT was applied, it was applied as counter + 1.
    pub counter_at_offer: Option<u32>,
    pub debit_hash: Option<Sha256Digest>,
    pub offer_token: Option<String>,
    pub completion_token: Option<String>,
    /// The store's signed receipt (SIG4), once delivered.
    #[serde(default)]
    pub receipt_token: Option<String>,
    pub card_counter: Option<u32>,
    pub created_at: Timestamp,
    pub deadline: Timestamp,
    pub outcome_reason: Option<String>,
    /// A stable code for why it was voided: `insufficient_balance`,
    /// `cancelled`, `not_applied`, `card_lost`.
    #[serde(default)]
    pub outcome_code: Option<String>,
}

/// What every step needs from its surroundings. Clock and randomness are
/// passed in so a run can be replayed.
#[allow(missing_debug_implementations)] // holds a random source; keys print elsewhere as ***
pub struct Context<'a, R: Random + ?Sized> {
    pub security: &'a SecurityServer,
    pub center: &'a PartyId,
    pub center_key: &'a SigningKey,
    pub now: Timestamp,
    pub rng: &'a mut R,
}

fn expect(step: &'static str, phase: Phase, expected: Phase) -> Result<(), StepError> {
    if phase != expected {
        return Err(StepError::OutOfOrder { step, phase, expected: expected.as_str() });
    }
    Ok(())
}

/// What `create` needs to know about the card and the limits.
#[derive(Debug)]
pub struct CreateInput<'b> {
    pub bill: &'b Verified<Bill>,
    pub registered_name: DisplayText,
    pub card: &'b CardRecord,
    /// The largest single payment the center accepts.
    pub max_amount_minor: u64,
}

impl Settlement {
    /// Opens a settlement for a verified bill and a registered card, and
    /// returns the INITIALIZE UPDATE to relay.
    pub fn create<R: Random + ?Sized>(
        ctx: &mut Context<'_, R>,
        input: CreateInput<'_>,
    ) -> Result<(Settlement, CommandApdu), StepError> {
        let card = input.card;
        let facts = BillFacts::from_verified(input.bill, input.registered_name);
        if card.status != CardRegistryStatus::Active {
            return Err(StepError::CardNotActive(card.id));
        }
        if facts.amount.currency() != card.currency {
            return Err(StepError::CurrencyMismatch { bill: facts.amount.currency(), card: card.currency });
        }
        let limit_minor = input.max_amount_minor.min(card.max_balance_minor);
        if facts.amount.amount_minor() > limit_minor {
            let limit = Money::new(limit_minor, card.currency).unwrap_or(facts.amount);
            return Err(StepError::AmountOverLimit { amount: facts.amount, limit });
        }
        let id = SettlementId::generate(ctx.rng);
        let mut settlement = Settlement {
            transaction_id: TransactionId::generate(ctx.rng),
            id,
            phase: Phase::Authenticating,
            bill: facts,
            card_id: card.id,
            key_version: card.key_version,
            scp: None,
            balance_minor: None,
            counter_at_offer: None,
            debit_hash: None,
            offer_token: None,
            completion_token: None,
            receipt_token: None,
            card_counter: None,
            created_at: ctx.now,
            deadline: ctx.now.checked_add_s(SETTLEMENT_TIMEOUT_S).unwrap_or(ctx.now),
            outcome_reason: None,
            outcome_code: None,
        };
        let init = settlement.session().begin(ctx, card.key_version)?;
        Ok((settlement, init))
    }

    /// Whether the record holds exactly what its phase needs: an open
    /// session before the end, the offer and what recovery must compare
    /// once the DEBIT is out, the completion once completed, the reason
    /// once voided. Checked before every write and after every read, so a
    /// completed settlement without its completion is never stored or used.
    pub fn check_consistent(&self) -> Result<(), &'static str> {
        let offered = self.offer_token.is_some() && self.debit_hash.is_some() && self.counter_at_offer.is_some();
        let ok = match self.phase {
            Phase::Authenticating | Phase::ReadingBalance => self.scp.is_some(),
            Phase::Offered => self.scp.is_some() && offered,
            Phase::Recovering | Phase::RecoveringStatus | Phase::RecoveringBalance => self.scp.is_some() && offered,
            Phase::Completed => self.scp.is_none() && self.completion_token.is_some() && self.card_counter.is_some(),
            Phase::Voided => self.scp.is_none() && self.outcome_code.is_some(),
        };
        if ok { Ok(()) } else { Err("a settlement's record does not hold what its phase needs") }
    }

    /// This settlement's secure session with its card.
    fn session(&mut self) -> Session<'_> {
        Session::new(&self.card_id, self.id.as_str(), &mut self.scp)
    }

    /// Checks the card cryptogram; returns EXTERNAL AUTHENTICATE and a
    /// sealed READ BALANCE, to relay in that order.
    pub fn authenticate<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answer: &ResponseApdu,
    ) -> Result<(Settlement, Vec<CommandApdu>), StepError> {
        expect("authenticate", self.phase, Phase::Authenticating)?;
        let commands = self.session().open(ctx, answer, &[read_balance_command()])?;
        self.phase = Phase::ReadingBalance;
        Ok((self, commands))
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
        expect("offer", self.phase, Phase::ReadingBalance)?;
        let plain = self.session().after_open(ctx, answers, 1)?;
        let report = self.balance_report(&plain[0])?;
        let currency = self.bill.amount.currency();
        let balance =
            Money::new(report.balance_minor, currency).map_err(|e| StepError::BadCardAnswer(e.to_string()))?;
        self.balance_minor = Some(report.balance_minor);
        if report.balance_minor < self.bill.amount.amount_minor() {
            let amount = self.bill.amount;
            self.void("insufficient_balance", "insufficient balance");
            return Ok((self, OfferOutcome::Insufficient { balance, amount }));
        }
        let debit = debit_command(&self.transfer_request());
        let wire = self.session().seal(ctx, &debit)?;
        let debit_hash = Sha256Digest::of(&wire.to_bytes());
        let token = self.sign_offer(ctx, balance, debit_hash)?;
        self.counter_at_offer = Some(report.counter);
        self.debit_hash = Some(debit_hash);
        self.offer_token = Some(token.clone());
        self.phase = Phase::Offered;
        Ok((self, OfferOutcome::Offered { offer: token, debit: wire }))
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
    /// (SIG3). An answer that does not prove the debit leaves the
    /// settlement `Offered`, for recovery.
    pub fn complete<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answer: &ResponseApdu,
    ) -> Result<(Settlement, String), StepError> {
        expect("complete", self.phase, Phase::Offered)?;
        let plain = self.session().unseal(ctx, answer)?;
        completed(&plain)?;
        let status = TxStatus::parse(plain.data()).map_err(bad_answer)?;
        let TxStatus::Applied(result) = status else { return Err(StepError::WrongTransaction) };
        let token = self.finish(ctx, &result)?;
        Ok((self, token))
    }

    fn finish<R: Random + ?Sized>(
        &mut self,
        ctx: &mut Context<'_, R>,
        result: &kessai_card::protocol::TxResult,
    ) -> Result<String, StepError> {
        if result.tx_id.0 != *self.transaction_id.as_bytes()
            || result.kind != TransferKind::Debit
            || result.amount_minor != self.bill.amount.amount_minor()
        {
            return Err(StepError::WrongTransaction);
        }
        let draft = CompletionDraft {
            settlement_id: self.id.clone(),
            bill_hash: self.bill.bill_hash,
            card_id: self.card_id,
            transaction_id: self.transaction_id,
            amount: self.bill.amount,
            store: self.bill.store.clone(),
            member: self.bill.member.clone(),
            card_counter: result.counter,
            completed_at: ctx.now,
        };
        let done = Completion::new(draft).map_err(|e| StepError::Signing(e.into()))?;
        let claims =
            Claims::for_lifetime(ctx.center.clone(), MessageId::generate(ctx.rng), ctx.now, COMPLETION_LIFETIME_S)?;
        let token = completion::sign(&claims, &done, ctx.center_key)?;
        self.card_counter = Some(result.counter);
        self.completion_token = Some(token.clone());
        self.session().end();
        self.phase = Phase::Completed;
        Ok(token)
    }

    fn void(&mut self, code: &str, reason: &str) {
        self.phase = Phase::Voided;
        self.session().end();
        self.outcome_code = Some(code.to_owned());
        self.outcome_reason = Some(reason.to_owned());
    }

    /// The same bill presented again before any DEBIT exists (a wallet that
    /// restarted, a browser that posted twice): begin a fresh session so the
    /// purchase can go on. After the DEBIT only recovery may touch it.
    pub fn restart_session<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
    ) -> Result<(Settlement, CommandApdu), StepError> {
        if !matches!(self.phase, Phase::Authenticating | Phase::ReadingBalance) {
            return Err(StepError::OutOfOrder {
                step: "restart",
                phase: self.phase,
                expected: "authenticating or reading_balance",
            });
        }
        let key_version = self.key_version;
        let init = self.session().begin(ctx, key_version)?;
        self.phase = Phase::Authenticating;
        Ok((self, init))
    }

    /// The cardholder declined, or the wallet gave up, before any DEBIT was
    /// issued: void at once. After the DEBIT was issued only the card can
    /// settle it (`begin_recovery`).
    pub fn cancel(mut self, reason: &str) -> Result<Settlement, StepError> {
        match self.phase {
            Phase::Authenticating | Phase::ReadingBalance => {
                self.void("cancelled", reason);
                Ok(self)
            }
            phase => {
                Err(StepError::OutOfOrder { step: "cancel", phase, expected: "authenticating or reading_balance" })
            }
        }
    }

    /// Ends a settlement the wallet left before its DEBIT was sealed, once
    /// past its deadline (the sweep): no DEBIT exists, so none can apply.
    pub fn abandon(mut self) -> Result<Settlement, StepError> {
        match self.phase {
            Phase::Authenticating | Phase::ReadingBalance => {
                self.void("abandoned", "abandoned before the debit was issued");
                Ok(self)
            }
            phase => {
                Err(StepError::OutOfOrder { step: "abandon", phase, expected: "authenticating or reading_balance" })
            }
        }
    }

    /// Voids a settlement whose DEBIT may be outstanding without the card's
    /// answer — allowed only once the settlement is past its deadline AND
    /// the card is reported lost, and the reason is recorded. (A lost card
    /// will never be presented again to say what happened.)
    pub fn void_lost_card(mut self, card: &CardRecord, now: Timestamp, reason: &str) -> Result<Settlement, StepError> {
        if !self.phase.debit_issued() {
            return Err(StepError::OutOfOrder {
                step: "void_lost",
                phase: self.phase,
                expected: "offered or recovering",
            });
        }
        if card.id != self.card_id || card.status != CardRegistryStatus::Lost {
            return Err(StepError::CardNotLost(self.card_id));
        }
        if now <= self.deadline {
            return Err(StepError::BeforeDeadline { deadline: self.deadline });
        }
        self.void("card_lost", &format!("card reported lost: {reason}"));
        Ok(self)
    }

    /// Starts a new secure session to ask the card about the DEBIT. Allowed
    /// whenever a DEBIT may be outstanding; a recovery interrupted midway
    /// starts again.
    pub fn begin_recovery<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
    ) -> Result<(Settlement, CommandApdu), StepError> {
        if !self.phase.debit_issued() {
            return Err(StepError::OutOfOrder {
                step: "recover",
                phase: self.phase,
                expected: "offered or recovering",
            });
        }
        let key_version = self.key_version;
        let init = self.session().begin(ctx, key_version)?;
        self.phase = Phase::Recovering;
        Ok((self, init))
    }

    /// Checks the card cryptogram of the recovery session; returns EXTERNAL
    /// AUTHENTICATE and a sealed TRANSACTION STATUS. (One sealed command per
    /// round trip: each answer's R-MAC chains on its own command.)
    pub fn recovery_authenticate<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answer: &ResponseApdu,
    ) -> Result<(Settlement, Vec<CommandApdu>), StepError> {
        expect("recovery_authenticate", self.phase, Phase::Recovering)?;
        let tx = TxId(*self.transaction_id.as_bytes());
        let commands = self.session().open(ctx, answer, &[transaction_status_command(&tx)])?;
        self.phase = Phase::RecoveringStatus;
        Ok((self, commands))
    }

    /// Decides from the card's sealed TRANSACTION STATUS: applied → completed
    /// with SIG3; unknown → one more sealed READ BALANCE to be sure.
    pub fn resolve<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answers: &[ResponseApdu],
    ) -> Result<(Settlement, Resolution), StepError> {
        expect("resolve", self.phase, Phase::RecoveringStatus)?;
        let plain = self.session().after_open(ctx, answers, 1)?;
        match transaction_status(&plain[0], &self.transaction_id)? {
            Probe::Applied(result) => {
                let token = self.finish(ctx, &result)?;
                Ok((self, Resolution::Completed { completion: token }))
            }
            Probe::NotKnown => {
                let command = self.session().seal(ctx, &read_balance_command())?;
                self.phase = Phase::RecoveringBalance;
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
        expect("resolve_balance", self.phase, Phase::RecoveringBalance)?;
        let plain = self.session().unseal(ctx, answer)?;
        // A card blocked since the offer can still tell us what happened.
        let report = balance_report(&self.card_id, self.bill.amount.currency(), &plain)?;
        never_applied(self.counter_at_offer, &report)?;
        self.void("not_applied", "the card reports the transaction was not applied");
        Ok((self, Resolution::Voided))
    }
}

/// What `offer` produced.
#[derive(Debug)]
pub enum OfferOutcome {
    /// The offer (SIG2) and the sealed DEBIT for the wallet.
    Offered { offer: String, debit: CommandApdu },
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
