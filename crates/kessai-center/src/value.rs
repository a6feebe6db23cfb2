//! The value updates of DESIGN §5 as a state machine over a persisted
//! [`ValueUpdate`], like [`crate::purchase::Settlement`]: every transition takes
//! the update by value and returns the next one. One machine serves every
//! [`Purpose`]: a charge paid by credit card (a sealed CREDIT), a decrease
//! back to the credit card that paid (a center-initiated sealed DEBIT), and
//! what the center owes a card or a card owes the center — a purchase
//! refund (CREDIT) or an operator's correction (DEBIT) — applied at the
//! card's next presentation.
//!
//! ```text
//! create (authorized) ──► Authenticating ──authenticate──► ReadingBalance ──offer──► Offered ──complete──► Completed
//!                              │                              │                        │
//!                            cancel                 cancel / over max balance      begin_recovery
//!                              ▼                              ▼                        ▼
//!                            Voided ◄────────────────────────┘            Recovering ──► RecoveringStatus ──► Completed
//!                              ▲                                                              │
//!                              └─────────────────────── resolve_balance ◄── RecoveringBalance ◄┘
//! ```
//!
//! The same rule as purchases: once the sealed command has left the center
//! (phase `Offered`), nothing voids the update until the card itself says,
//! inside a new secure session, that it did not apply it. Nothing is posted
//! (or captured, or refunded to a credit card) without the card's sealed
//! confirmation.

use kessai_card::protocol::{
    CardStatus as CardChipStatus, TransferKind, TransferRequest, TxId, TxResult, TxStatus, credit_command,
    debit_command, read_balance_command, transaction_status_command,
};
use kessai_core::Money;
use kessai_core::digest::Sha256Digest;
use kessai_core::ids::{CardId, MessageId, TransactionId, UpdateId};
use kessai_core::jws::{Claims, JwsError};
use kessai_core::messages::Reference;
use kessai_core::messages::value_update::{self, Direction, ValueUpdate as UpdateMessage, ValueUpdateDraft};
use kessai_core::random::Random;
use kessai_core::time::Timestamp;
use kessai_scp03::{ApduError, CommandApdu, ResponseApdu};
use serde::{Deserialize, Serialize};

use crate::card_session::{
    CardTxState, Pending, Probe, Sealed, ack_of, bad_answer, balance_report, collect_commands, completed, in_session,
    never_applied,
};
use crate::limits::VALUE_UPDATE_LIFETIME_S;
use crate::purchase::{Context, StepError};
use crate::security::{SealedState, SecurityError};
use crate::statement::LogEntry;

pub use kessai_api::Purpose;
use kessai_api::{ErrorCode, Reason};

fn credit() -> Direction {
    Direction::Credit
}

/// Where a value update stands: the same phases as a settlement's, the
/// command a CREDIT or a DEBIT.
pub type UpdatePhase = crate::purchase::Phase;

/// Every way a charge step can be refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateStepError {
    #[error("step {step} is not allowed while the charge is {phase:?}; expected {expected}")]
    OutOfOrder { step: &'static str, phase: UpdatePhase, expected: &'static str },
    /// The card, the secure channel or signing refused (shared with purchases).
    #[error(transparent)]
    Card(#[from] StepError),
    /// A charge whose card has not proven itself has no authorization yet.
    #[error("the charge is not authorized yet")]
    NotAuthorized,
}

impl From<SecurityError> for UpdateStepError {
    fn from(e: SecurityError) -> Self {
        UpdateStepError::Card(StepError::Security(e))
    }
}

impl From<JwsError> for UpdateStepError {
    fn from(e: JwsError) -> Self {
        UpdateStepError::Card(StepError::Signing(e))
    }
}

impl From<ApduError> for UpdateStepError {
    fn from(e: ApduError) -> Self {
        UpdateStepError::Card(StepError::from(e))
    }
}

/// What a value update made when it sealed its command: what recovery
/// compares against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateOffered {
    /// The balance read inside the secure session.
    pub balance_minor: u64,
    /// The card's counter when the balance was read: an applied command was
    /// applied as counter + 1.
    pub counter_at_offer: u32,
    /// SHA-256 of the sealed command's bytes.
    pub command_hash: Sha256Digest,
    /// The signed value update (SIG5).
    pub value_update_token: String,
}

/// What the card's sealed answer proved it applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateApplied {
    pub card_counter: u32,
    pub balance_after_minor: u64,
}

/// Where a value update stands (see [`CardTxState`]).
pub type UpdateState = CardTxState<UpdateOffered, UpdateApplied>;

/// A value update (a charge, a decrease, an owed item applied), stored like
/// a settlement: as the flat record of earlier releases (`UpdateRecord`),
/// checked to hold what its phase needs when read. No payment card data is
/// ever in it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "UpdateRecord", into = "UpdateRecord")]
pub struct ValueUpdate {
    /// The update id (`vup_…`).
    pub id: UpdateId,
    /// A CREDIT (charge, refund) or a DEBIT (decrease, correction).
    pub direction: Direction,
    pub purpose: Purpose,
    pub card_id: CardId,
    pub key_version: u8,
    /// The card's maximum balance, from the registry at creation.
    pub max_balance_minor: u64,
    pub amount: Money,
    /// The card transaction id inside the sealed command; also the pending
    /// ledger transfer's id.
    pub transaction_id: TransactionId,
    /// The SIG5 `funding_ref`: the authorizer's reference (`auth_…`) of a
    /// charge or of the charge a decrease goes back to; the owed item's id.
    /// A charge has none until the card proved itself and the authorizer
    /// approved (its authenticate step, M5).
    pub authorization: Option<Reference>,
    pub created_at: Timestamp,
    /// The day (UTC, Unix seconds at 00:00) whose charge limit a charge
    /// reserved; released if it is voided.
    pub charge_day_s: Option<u64>,
    /// The sealed commands of the last batch awaiting their answers.
    pub pending: Vec<Pending>,
    /// The card's log records the last step read (kept by the step's write
    /// in `center_card_log`, not in the record).
    pub collected: Vec<LogEntry>,
    state: UpdateState,
}

/// A value update as stored: one flat JSON object.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UpdateRecord {
    id: UpdateId,
    phase: UpdatePhase,
    #[serde(default = "credit")]
    direction: Direction,
    #[serde(default)]
    purpose: Purpose,
    card_id: CardId,
    key_version: u8,
    max_balance_minor: u64,
    amount: Money,
    transaction_id: TransactionId,
    #[serde(default)]
    authorization: Option<Reference>,
    scp: Option<SealedState>,
    balance_minor: Option<u64>,
    counter_at_offer: Option<u32>,
    command_hash: Option<Sha256Digest>,
    value_update_token: Option<String>,
    card_counter: Option<u32>,
    balance_after_minor: Option<u64>,
    created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    charge_day_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pending: Vec<Pending>,
    outcome_reason: Option<String>,
    outcome_code: Option<String>,
}

impl TryFrom<UpdateRecord> for ValueUpdate {
    type Error = &'static str;

    fn try_from(r: UpdateRecord) -> Result<ValueUpdate, &'static str> {
        const UNFIT: &str = "a value update's record does not hold what its phase needs";
        let offer = match (r.balance_minor, r.counter_at_offer, r.command_hash, r.value_update_token) {
            (Some(balance_minor), Some(counter_at_offer), Some(command_hash), Some(value_update_token)) => {
                Some(UpdateOffered { balance_minor, counter_at_offer, command_hash, value_update_token })
            }
            _ => None,
        };
        let applied = match (r.card_counter, r.balance_after_minor) {
            (Some(card_counter), Some(balance_after_minor)) => {
                Some(UpdateApplied { card_counter, balance_after_minor })
            }
            _ => None,
        };
        let scp = r.scp;
        let state = match r.phase {
            UpdatePhase::Authenticating => UpdateState::Authenticating { scp: scp.ok_or(UNFIT)? },
            UpdatePhase::ReadingBalance => UpdateState::ReadingBalance { scp: scp.ok_or(UNFIT)? },
            UpdatePhase::PayingByToken => return Err(UNFIT),
            UpdatePhase::Offered => UpdateState::Offered { scp: scp.ok_or(UNFIT)?, offer: offer.ok_or(UNFIT)? },
            UpdatePhase::Recovering => UpdateState::Recovering { scp: scp.ok_or(UNFIT)?, offer: offer.ok_or(UNFIT)? },
            UpdatePhase::RecoveringStatus => {
                UpdateState::RecoveringStatus { scp: scp.ok_or(UNFIT)?, offer: offer.ok_or(UNFIT)? }
            }
            UpdatePhase::RecoveringBalance => {
                UpdateState::RecoveringBalance { scp: scp.ok_or(UNFIT)?, offer: offer.ok_or(UNFIT)? }
            }
            UpdatePhase::Completed => {
                UpdateState::Completed { offer: offer.ok_or(UNFIT)?, done: applied.ok_or(UNFIT)? }
            }
            UpdatePhase::Voided => UpdateState::Voided {
                balance_minor: r.balance_minor,
                offer,
                done: applied,
                code: match r.outcome_code.as_deref() {
                    None => Reason::Unstated,
                    Some(name) => Reason::parse(name).ok_or(UNFIT)?,
                },
                reason: r.outcome_reason.unwrap_or_default(),
            },
        };
        Ok(ValueUpdate {
            id: r.id,
            direction: r.direction,
            purpose: r.purpose,
            card_id: r.card_id,
            key_version: r.key_version,
            max_balance_minor: r.max_balance_minor,
            amount: r.amount,
            transaction_id: r.transaction_id,
            authorization: r.authorization,
            created_at: r.created_at,
            charge_day_s: r.charge_day_s,
            pending: r.pending,
            collected: Vec::new(),
            state,
        })
    }
}

impl From<ValueUpdate> for UpdateRecord {
    fn from(u: ValueUpdate) -> UpdateRecord {
        let phase = u.state.phase();
        let scp = u.state.scp().cloned();
        let offer = u.state.offer().cloned();
        let applied = u.state.done().copied();
        let (mut outcome_code, mut outcome_reason, mut balance_minor) =
            (None, None, offer.as_ref().map(|o| o.balance_minor));
        if let UpdateState::Voided { balance_minor: b, code, reason, .. } = u.state {
            (outcome_code, outcome_reason, balance_minor) = (Some(code.as_str().to_owned()), Some(reason), b);
        }
        UpdateRecord {
            id: u.id,
            phase,
            direction: u.direction,
            purpose: u.purpose,
            card_id: u.card_id,
            key_version: u.key_version,
            max_balance_minor: u.max_balance_minor,
            amount: u.amount,
            transaction_id: u.transaction_id,
            authorization: u.authorization,
            scp,
            balance_minor,
            counter_at_offer: offer.as_ref().map(|o| o.counter_at_offer),
            command_hash: offer.as_ref().map(|o| o.command_hash),
            value_update_token: offer.map(|o| o.value_update_token),
            card_counter: applied.map(|a| a.card_counter),
            balance_after_minor: applied.map(|a| a.balance_after_minor),
            created_at: u.created_at,
            charge_day_s: u.charge_day_s,
            pending: u.pending,
            outcome_reason,
            outcome_code,
        }
    }
}

/// What `create` needs: the card and the key version its session opens
/// under, the direction, purpose and amount, and the funding reference.
/// The caller checked what it may know of the card: a charge, nothing
/// until the card proved itself (M4); a decrease or an owed item, that
/// the card is registered, active and in the amount's currency.
#[derive(Debug)]
pub struct NewUpdate {
    pub id: UpdateId,
    pub card_id: CardId,
    pub key_version: u8,
    /// The card's maximum balance as registered (for a card not
    /// registered, the center's per-payment limit: it is refused after
    /// its proof anyway).
    pub max_balance_minor: u64,
    pub direction: Direction,
    pub purpose: Purpose,
    pub amount: Money,
    /// `None` for a charge: it is authorized at its authenticate step.
    pub authorization: Option<Reference>,
}

impl ValueUpdate {
    /// Opens a value update and returns the INITIALIZE UPDATE.
    pub fn create<R: Random + ?Sized>(
        ctx: &mut Context<'_, R>,
        input: NewUpdate,
    ) -> Result<(ValueUpdate, CommandApdu), UpdateStepError> {
        let transaction_id = TransactionId::generate(ctx.rng);
        let (card_id, key_version) = (input.card_id, input.key_version);
        let (init, scp) = in_session(&card_id, input.id.as_str(), None, |s| s.begin(ctx, key_version))?;
        let update = ValueUpdate {
            transaction_id,
            id: input.id,
            direction: input.direction,
            purpose: input.purpose,
            card_id,
            key_version,
            max_balance_minor: input.max_balance_minor,
            amount: input.amount,
            authorization: input.authorization,
            created_at: ctx.now,
            charge_day_s: None,
            pending: Vec::new(),
            collected: Vec::new(),
            state: UpdateState::Authenticating { scp },
        };
        Ok((update, init))
    }

    /// Where it stands.
    pub fn state(&self) -> &UpdateState {
        &self.state
    }

    pub fn phase(&self) -> UpdatePhase {
        self.state.phase()
    }

    /// What it made when it sealed its command, once it did.
    pub fn offer_made(&self) -> Option<&UpdateOffered> {
        self.state.offer()
    }

    /// Whether its command was sealed (so its books hold exists).
    pub fn command_sealed(&self) -> bool {
        self.state.offer().is_some()
    }

    /// The balance read inside the secure session, once read.
    pub fn balance_minor(&self) -> Option<u64> {
        match &self.state {
            UpdateState::Voided { balance_minor, .. } => *balance_minor,
            state => state.offer().map(|o| o.balance_minor),
        }
    }

    /// What the card proved it applied, once it did.
    pub fn applied(&self) -> Option<UpdateApplied> {
        self.state.done().copied()
    }

    /// Why it was voided: a stable code and a reason.
    pub fn outcome(&self) -> Option<(Reason, &str)> {
        self.state.outcome()
    }

    fn out_of_order(&self, step: &'static str, expected: &'static str) -> UpdateStepError {
        UpdateStepError::OutOfOrder { step, phase: self.phase(), expected }
    }

    /// A charge the card applied whose authorization could not be captured:
    /// not completed, since nothing funds it. Its value is taken back from
    /// the card by an owed item made in the same transaction.
    pub fn funding_refused(mut self) -> ValueUpdate {
        self.void(Reason::FundingRefused, "the card applied the credit, but its authorization could not be captured");
        self
    }

    /// Checks the card cryptogram; returns EXTERNAL AUTHENTICATE and,
    /// sealed, the log commands (LOG COLLECTED through `through`, READ LOG
    /// of the uncollected) and READ BALANCE.
    pub fn authenticate<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answer: &ResponseApdu,
        through: Option<u32>,
    ) -> Result<(ValueUpdate, Vec<CommandApdu>), UpdateStepError> {
        let UpdateState::Authenticating { scp } = &self.state else {
            return Err(self.out_of_order("authenticate", "authenticating"));
        };
        let mut then = collect_commands(through);
        then.push((Sealed::ReadBalance, read_balance_command()));
        let ((commands, pending), scp) =
            in_session(&self.card_id, self.id.as_str(), Some(scp.clone()), |s| s.open_batch(ctx, answer, &then))?;
        self.pending = pending;
        self.state = UpdateState::ReadingBalance { scp };
        Ok((self, commands))
    }

    /// The transfer request the sealed CREDIT (or DEBIT) carries. Counterpart: the
    /// first 8 bytes of SHA-256(authorization reference); order reference:
    /// the first 16 bytes of SHA-256(update id) — so the card's log names
    /// the funding and the update.
    pub fn transfer_request(&self) -> Result<TransferRequest, UpdateStepError> {
        let funding = Sha256Digest::of(self.funding()?.as_str().as_bytes());
        let update = Sha256Digest::of(self.id.as_str().as_bytes());
        let mut counterpart = [0u8; 8];
        counterpart.copy_from_slice(&funding.as_bytes()[..8]);
        let mut order_ref = [0u8; 16];
        order_ref.copy_from_slice(&update.as_bytes()[..16]);
        Ok(TransferRequest {
            tx_id: TxId(*self.transaction_id.as_bytes()),
            amount_minor: self.amount.amount_minor(),
            counterpart,
            order_ref,
            time_unix_s: self.created_at.unix_s(),
        })
    }

    /// What funds it (SIG5's `funding_ref`): refused for a charge not yet
    /// authorized, which can therefore never be offered.
    pub fn funding(&self) -> Result<&Reference, UpdateStepError> {
        self.authorization.as_ref().ok_or(UpdateStepError::NotAuthorized)
    }

    /// A charge whose card proved itself, authorized by the authorizer.
    pub fn authorized(mut self, authorization: Reference) -> ValueUpdate {
        self.authorization = Some(authorization);
        self
    }

    /// Ends a charge the authorizer (or a limit checked once the card
    /// proved itself) refused, before any command: `code` says why.
    pub fn refused(self, code: Reason, reason: &str) -> Result<ValueUpdate, UpdateStepError> {
        self.void_before_command("refuse", code, reason)
    }

    /// Reads the sealed balance; if the update fits (a credit under the
    /// card's maximum, a debit within the balance), seals the CREDIT or
    /// DEBIT and signs the value update (SIG5). Otherwise the update is
    /// voided — safe, no command was ever issued.
    pub fn offer<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answers: &[ResponseApdu],
    ) -> Result<(ValueUpdate, UpdateOffer), UpdateStepError> {
        let UpdateState::ReadingBalance { scp } = &self.state else {
            return Err(self.out_of_order("offer", "reading_balance"));
        };
        let pending = std::mem::take(&mut self.pending);
        let (read, scp) = in_session(&self.card_id, self.id.as_str(), Some(scp.clone()), |s| {
            s.read_batch(ctx, answers, true, &pending)
        })?;
        self.collected = read.collected;
        let balance = read.balance.ok_or_else(|| bad_answer("no balance read"))?;
        let report = balance_report(&self.card_id, self.amount.currency(), &balance)?;
        if report.status != CardChipStatus::Active {
            return Err(StepError::CardNotActive(self.card_id).into());
        }
        let currency = self.amount.currency();
        let before = Money::new(report.balance_minor, currency).map_err(bad_answer)?;
        let voided = |code: Reason, reason: &str| UpdateState::Voided {
            balance_minor: Some(report.balance_minor),
            offer: None,
            done: None,
            code,
            reason: reason.to_owned(),
        };
        let (after, command) = match self.direction {
            Direction::Credit => {
                let after =
                    before.checked_add(&self.amount).ok().filter(|a| a.amount_minor() <= report.max_balance_minor);
                let Some(after) = after else {
                    self.state = voided(
                        Reason::Refused(ErrorCode::OverMaxBalance),
                        "the credit would take the card over its maximum balance",
                    );
                    return Ok((self, UpdateOffer::OverMaxBalance { balance: before }));
                };
                (after, credit_command(&self.transfer_request()?))
            }
            Direction::Debit => {
                let Ok(after) = before.checked_sub(&self.amount) else {
                    self.state = voided(
                        Reason::Refused(ErrorCode::InsufficientBalance),
                        "the card holds less than the amount to take off",
                    );
                    return Ok((self, UpdateOffer::InsufficientBalance { balance: before }));
                };
                (after, debit_command(&self.transfer_request()?))
            }
        };
        // What this step read of the log is kept with its write: the card
        // may drop it from now on (before the command, so a full log never
        // refuses it).
        let mut then = ack_of(&self.collected);
        then.push((Sealed::Transfer, command));
        let ((commands, pending), scp) =
            in_session(&self.card_id, self.id.as_str(), Some(scp), |s| s.seal_batch(ctx, &then))?;
        let wire = commands.last().cloned().ok_or_else(|| bad_answer("no command sealed"))?;
        let command_hash = Sha256Digest::of(&wire.to_bytes());
        let token = self.sign_value_update(ctx, before, after, command_hash)?;
        let offer = UpdateOffered {
            balance_minor: report.balance_minor,
            counter_at_offer: report.counter,
            command_hash,
            value_update_token: token.clone(),
        };
        self.pending = pending;
        self.state = UpdateState::Offered { scp, offer };
        Ok((self, UpdateOffer::Offered { value_update: token, commands }))
    }

    fn sign_value_update<R: Random + ?Sized>(
        &self,
        ctx: &mut Context<'_, R>,
        before: Money,
        after: Money,
        command_hash: Sha256Digest,
    ) -> Result<String, UpdateStepError> {
        let update = UpdateMessage::new(ValueUpdateDraft {
            update_id: self.id.clone(),
            card_id: self.card_id,
            transaction_id: self.transaction_id,
            direction: self.direction,
            amount: self.amount,
            balance_before: before,
            balance_after: after,
            funding_ref: self.funding()?.clone(),
            command_hash,
        })
        .map_err(|e| StepError::Signing(e.into()))?;
        let claims =
            Claims::for_lifetime(ctx.center.clone(), MessageId::generate(ctx.rng), ctx.now, VALUE_UPDATE_LIFETIME_S)?;
        Ok(value_update::sign(&claims, &update, ctx.center_key)?)
    }

    /// Checks the card's sealed answer to the CREDIT or DEBIT (the last of
    /// `answers`, one per command of the balance step's batch). An answer
    /// that does not prove it leaves the update `Offered`, for recovery.
    pub fn complete<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answers: &[ResponseApdu],
    ) -> Result<ValueUpdate, UpdateStepError> {
        let UpdateState::Offered { scp, offer } = &self.state else {
            return Err(self.out_of_order("complete", "offered"));
        };
        let offer = offer.clone();
        let pending = if self.pending.is_empty() {
            // Updates offered before batches: the command alone.
            vec![Pending { kind: Sealed::Transfer, scp: scp.clone() }]
        } else {
            self.pending.clone()
        };
        let (read, _) = in_session(&self.card_id, self.id.as_str(), Some(scp.clone()), |s| {
            s.read_batch(ctx, answers, false, &pending)
        })?;
        let plain = read.transfer.ok_or_else(|| bad_answer("no command answered"))?;
        completed(&plain)?;
        let TxStatus::Applied(result) = TxStatus::parse(plain.data()).map_err(bad_answer)? else {
            return Err(StepError::WrongTransaction.into());
        };
        self.finish(&result, offer)?;
        self.pending = Vec::new();
        Ok(self)
    }

    fn finish(&mut self, result: &TxResult, offer: UpdateOffered) -> Result<(), StepError> {
        let kind = match self.direction {
            Direction::Credit => TransferKind::Credit,
            Direction::Debit => TransferKind::Debit,
        };
        if result.tx_id.0 != *self.transaction_id.as_bytes()
            || result.kind != kind
            || result.amount_minor != self.amount.amount_minor()
        {
            return Err(StepError::WrongTransaction);
        }
        let applied = UpdateApplied { card_counter: result.counter, balance_after_minor: result.balance_after_minor };
        self.state = UpdateState::Completed { offer, done: applied };
        Ok(())
    }

    fn void(&mut self, code: Reason, reason: &str) {
        self.state = UpdateState::Voided {
            balance_minor: self.balance_minor(),
            offer: self.state.offer().cloned(),
            done: self.state.done().copied(),
            code,
            reason: reason.to_owned(),
        };
    }

    /// Voids an update before its command was sealed.
    fn void_before_command(
        mut self,
        step: &'static str,
        code: Reason,
        reason: &str,
    ) -> Result<ValueUpdate, UpdateStepError> {
        match self.state {
            UpdateState::Authenticating { .. } | UpdateState::ReadingBalance { .. } => {
                self.void(code, reason);
                Ok(self)
            }
            _ => Err(self.out_of_order(step, "authenticating or reading_balance")),
        }
    }

    /// The same create presented again before any CREDIT exists (a wallet
    /// or center that restarted): begin a fresh session.
    pub fn restart_session<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
    ) -> Result<(ValueUpdate, CommandApdu), UpdateStepError> {
        if !matches!(self.state, UpdateState::Authenticating { .. } | UpdateState::ReadingBalance { .. }) {
            return Err(self.out_of_order("restart", "authenticating or reading_balance"));
        }
        let key_version = self.key_version;
        let (init, scp) = in_session(&self.card_id, self.id.as_str(), None, |s| s.begin(ctx, key_version))?;
        self.pending = Vec::new();
        self.state = UpdateState::Authenticating { scp };
        Ok((self, init))
    }

    /// The wallet gave up before any CREDIT was issued: void at once.
    pub fn cancel(self, reason: &str) -> Result<ValueUpdate, UpdateStepError> {
        self.void_before_command("cancel", Reason::Cancelled, reason)
    }

    /// Ends a value update the wallet left before its command was sealed,
    /// once past its deadline (the sweep): no command exists, so none can
    /// apply.
    pub fn abandon(self) -> Result<ValueUpdate, UpdateStepError> {
        self.void_before_command("abandon", Reason::Abandoned, "abandoned before the command was issued")
    }

    /// Starts a new secure session to ask the card about the CREDIT (which
    /// also ends the old session, so the old CREDIT can never apply later).
    pub fn begin_recovery<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
    ) -> Result<(ValueUpdate, CommandApdu), UpdateStepError> {
        let Some((_, offer)) = self.state.command_out() else {
            return Err(self.out_of_order("recover", "offered or recovering"));
        };
        let offer = offer.clone();
        let key_version = self.key_version;
        let (init, scp) = in_session(&self.card_id, self.id.as_str(), None, |s| s.begin(ctx, key_version))?;
        self.pending = Vec::new();
        self.state = UpdateState::Recovering { scp, offer };
        Ok((self, init))
    }

    /// EXTERNAL AUTHENTICATE, the log commands and a sealed TRANSACTION
    /// STATUS.
    pub fn recovery_authenticate<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answer: &ResponseApdu,
        through: Option<u32>,
    ) -> Result<(ValueUpdate, Vec<CommandApdu>), UpdateStepError> {
        let UpdateState::Recovering { scp, offer } = &self.state else {
            return Err(self.out_of_order("recovery_authenticate", "recovering"));
        };
        let offer = offer.clone();
        let tx = TxId(*self.transaction_id.as_bytes());
        let mut then = collect_commands(through);
        then.push((Sealed::TransactionStatus, transaction_status_command(&tx)));
        let ((commands, pending), scp) =
            in_session(&self.card_id, self.id.as_str(), Some(scp.clone()), |s| s.open_batch(ctx, answer, &then))?;
        self.pending = pending;
        self.state = UpdateState::RecoveringStatus { scp, offer };
        Ok((self, commands))
    }

    /// Applied → completed; unknown → one more sealed READ BALANCE.
    pub fn resolve<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answers: &[ResponseApdu],
    ) -> Result<(ValueUpdate, UpdateResolution), UpdateStepError> {
        let UpdateState::RecoveringStatus { scp, offer } = &self.state else {
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
                self.finish(&result, offer)?;
                Ok((self, UpdateResolution::Completed))
            }
            Probe::NotKnown => {
                let (command, scp) =
                    in_session(&self.card_id, self.id.as_str(), Some(scp), |s| s.seal(ctx, &read_balance_command()))?;
                self.state = UpdateState::RecoveringBalance { scp, offer };
                Ok((self, UpdateResolution::NeedsBalance { command }))
            }
        }
    }

    /// The card did not know the transaction: void it if the capacity rule
    /// proves it was never applied (`card_session::never_applied`).
    pub fn resolve_balance<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answer: &ResponseApdu,
    ) -> Result<ValueUpdate, UpdateStepError> {
        let UpdateState::RecoveringBalance { scp, offer } = &self.state else {
            return Err(self.out_of_order("resolve_balance", "recovering_balance"));
        };
        let counter_at_offer = offer.counter_at_offer;
        let (plain, _) = in_session(&self.card_id, self.id.as_str(), Some(scp.clone()), |s| s.unseal(ctx, answer))?;
        // A card blocked since the offer can still tell us what happened.
        let report = balance_report(&self.card_id, self.amount.currency(), &plain)?;
        never_applied(Some(counter_at_offer), &report)?;
        self.void(Reason::NotApplied, "the card reports the credit was not applied");
        Ok(self)
    }
}

/// What `offer` produced.
#[derive(Debug)]
pub enum UpdateOffer {
    /// The value update (SIG5) and the sealed commands for the wallet: the
    /// CREDIT (or DEBIT) last, a LOG COLLECTED before it when the step read
    /// the card's log.
    Offered { value_update: String, commands: Vec<CommandApdu> },
    /// The card holds too much for this credit; the update is voided.
    OverMaxBalance { balance: Money },
    /// The card holds too little for this debit; the update is voided.
    InsufficientBalance { balance: Money },
}

/// What a recovery step decided.
#[derive(Debug, PartialEq, Eq)]
pub enum UpdateResolution {
    Completed,
    /// Relay this sealed READ BALANCE and call `resolve_balance`.
    NeedsBalance {
        command: CommandApdu,
    },
}
