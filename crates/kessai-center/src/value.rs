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

use crate::card_session::{Probe, Session, bad_answer, balance_report, completed, never_applied, transaction_status};
use crate::limits::VALUE_UPDATE_LIFETIME_S;
use crate::purchase::{CardRecord, CardRegistryStatus, Context, StepError};
use crate::security::{SealedState, SecurityError};

/// What a value update is for. Stored in the record; records made before
/// decreases and refunds existed are charges.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Purpose {
    /// Value bought with a credit card; the authorization funds it.
    #[default]
    Charge,
    /// Card value given back to the credit card that paid charge
    /// `charge_id` (a decrease); `authorization` is that charge's.
    RefundToCreditCard { charge_id: UpdateId },
    /// Applies what is owed (`owed_id`: a purchase refund or a correction,
    /// see [`crate::owed`]).
    Owed { owed_id: String },
    /// Takes off the card value its funding never paid (owed item
    /// `owed_id`, see [`crate::owed::OwedKind::Unfunded`]); the books never
    /// posted it, so nothing is posted.
    TakeBackUnfunded { owed_id: String },
}

impl Purpose {
    /// Its stored name.
    pub fn name(&self) -> &'static str {
        match self {
            Purpose::Charge => "charge",
            Purpose::RefundToCreditCard { .. } => "refund_to_credit_card",
            Purpose::Owed { .. } => "owed",
            Purpose::TakeBackUnfunded { .. } => "take_back_unfunded",
        }
    }
}

fn credit() -> Direction {
    Direction::Credit
}

/// Where a charge stands. Stored as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdatePhase {
    /// Authorized; INITIALIZE UPDATE sent.
    Authenticating,
    /// EXTERNAL AUTHENTICATE and READ BALANCE sent.
    ReadingBalance,
    /// SIG5 signed and the sealed CREDIT (or DEBIT) handed out; the
    /// transfer is pending in the books.
    Offered,
    /// A new session was begun to ask the card what happened.
    Recovering,
    /// TRANSACTION STATUS sent in the new session.
    RecoveringStatus,
    /// The card did not know the transaction; READ BALANCE sent.
    RecoveringBalance,
    /// The card confirmed the credit; captured and posted.
    Completed,
    /// Provably not applied; authorization and pending transfer voided.
    Voided,
}

impl UpdatePhase {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdatePhase::Authenticating => "authenticating",
            UpdatePhase::ReadingBalance => "reading_balance",
            UpdatePhase::Offered => "offered",
            UpdatePhase::Recovering => "recovering",
            UpdatePhase::RecoveringStatus => "recovering_status",
            UpdatePhase::RecoveringBalance => "recovering_balance",
            UpdatePhase::Completed => "completed",
            UpdatePhase::Voided => "voided",
        }
    }

    /// Whether a sealed CREDIT may have reached the card.
    pub fn credit_issued(self) -> bool {
        matches!(
            self,
            UpdatePhase::Offered
                | UpdatePhase::Recovering
                | UpdatePhase::RecoveringStatus
                | UpdatePhase::RecoveringBalance
        )
    }

    /// Whether the charge has ended.
    pub fn is_final(self) -> bool {
        matches!(self, UpdatePhase::Completed | UpdatePhase::Voided)
    }
}

/// Every way a charge step can be refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateStepError {
    #[error("step {step} is not allowed while the charge is {phase:?}; expected {expected}")]
    OutOfOrder { step: &'static str, phase: UpdatePhase, expected: &'static str },
    /// The card, the secure channel or signing refused (shared with purchases).
    #[error(transparent)]
    Card(#[from] StepError),
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

/// A charge as stored. No payment card data: only the authorizer's reference.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ValueUpdate {
    /// The update id (`vup_…`), also the charge's id.
    pub id: UpdateId,
    pub phase: UpdatePhase,
    /// A CREDIT (charge, refund) or a DEBIT (decrease, correction).
    #[serde(default = "credit")]
    pub direction: Direction,
    #[serde(default)]
    pub purpose: Purpose,
    pub card_id: CardId,
    pub key_version: u8,
    /// The card's maximum balance, from the registry at creation.
    pub max_balance_minor: u64,
    pub amount: Money,
    /// The card transaction id inside the sealed CREDIT; also the pending
    /// ledger transfer's id.
    pub transaction_id: TransactionId,
    /// The SIG5 `funding_ref`: the authorizer's reference (`auth_…`) of a
    /// charge or of the charge a decrease goes back to; the owed item's id.
    pub authorization: Reference,
    pub scp: Option<SealedState>,
    pub balance_minor: Option<u64>,
    /// The card's counter when the balance was read: an applied CREDIT was
    /// applied as counter + 1.
    pub counter_at_offer: Option<u32>,
    pub command_hash: Option<Sha256Digest>,
    /// The signed value update (SIG5).
    pub value_update_token: Option<String>,
    pub card_counter: Option<u32>,
    pub balance_after_minor: Option<u64>,
    pub created_at: Timestamp,
    /// The day (UTC, Unix seconds at 00:00) whose charge limit a charge
    /// reserved; released if it is voided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_day_s: Option<u64>,
    pub outcome_reason: Option<String>,
    /// Why it was voided: `cancelled`, `over_max_balance`,
    /// `insufficient_balance`, `not_applied`.
    pub outcome_code: Option<String>,
}

fn expect(step: &'static str, phase: UpdatePhase, expected: UpdatePhase) -> Result<(), UpdateStepError> {
    if phase != expected {
        return Err(UpdateStepError::OutOfOrder { step, phase, expected: expected.as_str() });
    }
    Ok(())
}

/// What `create` needs: the registered card, the direction, purpose and
/// amount, and the funding reference. Limits were checked before.
#[derive(Debug)]
pub struct NewUpdate<'b> {
    pub id: UpdateId,
    pub card: &'b CardRecord,
    pub direction: Direction,
    pub purpose: Purpose,
    pub amount: Money,
    pub authorization: Reference,
}

impl ValueUpdate {
    /// Opens an authorized charge and returns the INITIALIZE UPDATE.
    pub fn create<R: Random + ?Sized>(
        ctx: &mut Context<'_, R>,
        input: NewUpdate<'_>,
    ) -> Result<(ValueUpdate, CommandApdu), UpdateStepError> {
        let card = input.card;
        if card.status != CardRegistryStatus::Active {
            return Err(StepError::CardNotActive(card.id).into());
        }
        if input.amount.currency() != card.currency {
            return Err(StepError::CurrencyMismatch { bill: input.amount.currency(), card: card.currency }.into());
        }
        let mut charge = ValueUpdate {
            transaction_id: TransactionId::generate(ctx.rng),
            id: input.id,
            phase: UpdatePhase::Authenticating,
            direction: input.direction,
            purpose: input.purpose,
            card_id: card.id,
            key_version: card.key_version,
            max_balance_minor: card.max_balance_minor,
            amount: input.amount,
            authorization: input.authorization,
            scp: None,
            balance_minor: None,
            counter_at_offer: None,
            command_hash: None,
            value_update_token: None,
            card_counter: None,
            balance_after_minor: None,
            created_at: ctx.now,
            charge_day_s: None,
            outcome_reason: None,
            outcome_code: None,
        };
        let init = charge.session().begin(ctx, card.key_version)?;
        Ok((charge, init))
    }

    /// Whether the record holds exactly what its phase needs (as
    /// `Settlement::check_consistent`): checked before every write and after
    /// every read.
    pub fn check_consistent(&self) -> Result<(), &'static str> {
        let offered =
            self.value_update_token.is_some() && self.command_hash.is_some() && self.counter_at_offer.is_some();
        let ok = match self.phase {
            UpdatePhase::Authenticating | UpdatePhase::ReadingBalance => self.scp.is_some(),
            UpdatePhase::Offered
            | UpdatePhase::Recovering
            | UpdatePhase::RecoveringStatus
            | UpdatePhase::RecoveringBalance => self.scp.is_some() && offered,
            UpdatePhase::Completed => {
                self.scp.is_none() && self.card_counter.is_some() && self.balance_after_minor.is_some()
            }
            UpdatePhase::Voided => self.scp.is_none() && self.outcome_code.is_some(),
        };
        if ok { Ok(()) } else { Err("a value update's record does not hold what its phase needs") }
    }

    /// A charge the card applied whose authorization could not be captured:
    /// not completed, since nothing funds it. Its value is taken back from
    /// the card by an owed item made in the same transaction.
    pub fn funding_refused(mut self) -> ValueUpdate {
        self.void("funding_refused", "the card applied the credit, but its authorization could not be captured");
        self
    }

    /// This update's secure session with its card.
    fn session(&mut self) -> Session<'_> {
        Session::new(&self.card_id, self.id.as_str(), &mut self.scp)
    }

    /// Checks the card cryptogram; returns EXTERNAL AUTHENTICATE and a
    /// sealed READ BALANCE.
    pub fn authenticate<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answer: &ResponseApdu,
    ) -> Result<(ValueUpdate, Vec<CommandApdu>), UpdateStepError> {
        expect("authenticate", self.phase, UpdatePhase::Authenticating)?;
        let commands = self.session().open(ctx, answer, &[read_balance_command()])?;
        self.phase = UpdatePhase::ReadingBalance;
        Ok((self, commands))
    }

    /// The transfer request the sealed CREDIT (or DEBIT) carries. Counterpart: the
    /// first 8 bytes of SHA-256(authorization reference); order reference:
    /// the first 16 bytes of SHA-256(update id) — so the card's log names
    /// the funding and the update.
    pub fn transfer_request(&self) -> TransferRequest {
        let funding = Sha256Digest::of(self.authorization.as_str().as_bytes());
        let update = Sha256Digest::of(self.id.as_str().as_bytes());
        let mut counterpart = [0u8; 8];
        counterpart.copy_from_slice(&funding.as_bytes()[..8]);
        let mut order_ref = [0u8; 16];
        order_ref.copy_from_slice(&update.as_bytes()[..16]);
        TransferRequest {
            tx_id: TxId(*self.transaction_id.as_bytes()),
            amount_minor: self.amount.amount_minor(),
            counterpart,
            order_ref,
            time_unix_s: self.created_at.unix_s(),
        }
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
        expect("offer", self.phase, UpdatePhase::ReadingBalance)?;
        let plain = self.session().after_open(ctx, answers, 1)?;
        let report = balance_report(&self.card_id, self.amount.currency(), &plain[0])?;
        if report.status != CardChipStatus::Active {
            return Err(StepError::CardNotActive(self.card_id).into());
        }
        self.balance_minor = Some(report.balance_minor);
        let currency = self.amount.currency();
        let before = Money::new(report.balance_minor, currency).map_err(bad_answer)?;
        let (after, command) = match self.direction {
            Direction::Credit => {
                let after =
                    before.checked_add(&self.amount).ok().filter(|a| a.amount_minor() <= report.max_balance_minor);
                let Some(after) = after else {
                    self.void("over_max_balance", "the credit would take the card over its maximum balance");
                    return Ok((self, UpdateOffer::OverMaxBalance { balance: before }));
                };
                (after, credit_command(&self.transfer_request()))
            }
            Direction::Debit => {
                let Ok(after) = before.checked_sub(&self.amount) else {
                    self.void("insufficient_balance", "the card holds less than the amount to take off");
                    return Ok((self, UpdateOffer::InsufficientBalance { balance: before }));
                };
                (after, debit_command(&self.transfer_request()))
            }
        };
        let wire = self.session().seal(ctx, &command)?;
        let command_hash = Sha256Digest::of(&wire.to_bytes());
        let token = self.sign_value_update(ctx, before, after, command_hash)?;
        self.counter_at_offer = Some(report.counter);
        self.command_hash = Some(command_hash);
        self.value_update_token = Some(token.clone());
        self.phase = UpdatePhase::Offered;
        Ok((self, UpdateOffer::Offered { value_update: token, credit: wire }))
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
            funding_ref: self.authorization.clone(),
            command_hash,
        })
        .map_err(|e| StepError::Signing(e.into()))?;
        let claims =
            Claims::for_lifetime(ctx.center.clone(), MessageId::generate(ctx.rng), ctx.now, VALUE_UPDATE_LIFETIME_S)?;
        Ok(value_update::sign(&claims, &update, ctx.center_key)?)
    }

    /// Checks the card's sealed answer to the CREDIT or DEBIT. An answer
    /// that does not prove it leaves the update `Offered`, for recovery.
    pub fn complete<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answer: &ResponseApdu,
    ) -> Result<ValueUpdate, UpdateStepError> {
        expect("complete", self.phase, UpdatePhase::Offered)?;
        let plain = self.session().unseal(ctx, answer)?;
        completed(&plain)?;
        let TxStatus::Applied(result) = TxStatus::parse(plain.data()).map_err(bad_answer)? else {
            return Err(StepError::WrongTransaction.into());
        };
        self.finish(&result)?;
        Ok(self)
    }

    fn finish(&mut self, result: &TxResult) -> Result<(), StepError> {
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
        self.card_counter = Some(result.counter);
        self.balance_after_minor = Some(result.balance_after_minor);
        self.session().end();
        self.phase = UpdatePhase::Completed;
        Ok(())
    }

    fn void(&mut self, code: &str, reason: &str) {
        self.phase = UpdatePhase::Voided;
        self.session().end();
        self.outcome_code = Some(code.to_owned());
        self.outcome_reason = Some(reason.to_owned());
    }

    /// The same create presented again before any CREDIT exists (a wallet
    /// or center that restarted): begin a fresh session.
    pub fn restart_session<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
    ) -> Result<(ValueUpdate, CommandApdu), UpdateStepError> {
        if !matches!(self.phase, UpdatePhase::Authenticating | UpdatePhase::ReadingBalance) {
            return Err(UpdateStepError::OutOfOrder {
                step: "restart",
                phase: self.phase,
                expected: "authenticating or reading_balance",
            });
        }
        let key_version = self.key_version;
        let init = self.session().begin(ctx, key_version)?;
        self.phase = UpdatePhase::Authenticating;
        Ok((self, init))
    }

    /// The wallet gave up before any CREDIT was issued: void at once.
    pub fn cancel(mut self, reason: &str) -> Result<ValueUpdate, UpdateStepError> {
        match self.phase {
            UpdatePhase::Authenticating | UpdatePhase::ReadingBalance => {
                self.void("cancelled", reason);
                Ok(self)
            }
            phase => Err(UpdateStepError::OutOfOrder {
                step: "cancel",
                phase,
                expected: "authenticating or reading_balance",
            }),
        }
    }

    /// Ends a value update the wallet left before its command was sealed,
    /// once past its deadline (the sweep): no command exists, so none can
    /// apply.
    pub fn abandon(mut self) -> Result<ValueUpdate, UpdateStepError> {
        match self.phase {
            UpdatePhase::Authenticating | UpdatePhase::ReadingBalance => {
                self.void("abandoned", "abandoned before the command was issued");
                Ok(self)
            }
            phase => Err(UpdateStepError::OutOfOrder {
                step: "abandon",
                phase,
                expected: "authenticating or reading_balance",
            }),
        }
    }

    /// Starts a new secure session to ask the card about the CREDIT (which
    /// also ends the old session, so the old CREDIT can never apply later).
    pub fn begin_recovery<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
    ) -> Result<(ValueUpdate, CommandApdu), UpdateStepError> {
        if !self.phase.credit_issued() {
            return Err(UpdateStepError::OutOfOrder {
                step: "recover",
                phase: self.phase,
                expected: "offered or recovering",
            });
        }
        let key_version = self.key_version;
        let init = self.session().begin(ctx, key_version)?;
        self.phase = UpdatePhase::Recovering;
        Ok((self, init))
    }

    /// EXTERNAL AUTHENTICATE and a sealed TRANSACTION STATUS.
    pub fn recovery_authenticate<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answer: &ResponseApdu,
    ) -> Result<(ValueUpdate, Vec<CommandApdu>), UpdateStepError> {
        expect("recovery_authenticate", self.phase, UpdatePhase::Recovering)?;
        let tx = TxId(*self.transaction_id.as_bytes());
        let commands = self.session().open(ctx, answer, &[transaction_status_command(&tx)])?;
        self.phase = UpdatePhase::RecoveringStatus;
        Ok((self, commands))
    }

    /// Applied → completed; unknown → one more sealed READ BALANCE.
    pub fn resolve<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answers: &[ResponseApdu],
    ) -> Result<(ValueUpdate, UpdateResolution), UpdateStepError> {
        expect("resolve", self.phase, UpdatePhase::RecoveringStatus)?;
        let plain = self.session().after_open(ctx, answers, 1)?;
        match transaction_status(&plain[0], &self.transaction_id)? {
            Probe::Applied(result) => {
                self.finish(&result)?;
                Ok((self, UpdateResolution::Completed))
            }
            Probe::NotKnown => {
                let command = self.session().seal(ctx, &read_balance_command())?;
                self.phase = UpdatePhase::RecoveringBalance;
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
        expect("resolve_balance", self.phase, UpdatePhase::RecoveringBalance)?;
        let plain = self.session().unseal(ctx, answer)?;
        // A card blocked since the offer can still tell us what happened.
        let report = balance_report(&self.card_id, self.amount.currency(), &plain)?;
        never_applied(self.counter_at_offer, &report)?;
        self.void("not_applied", "the card reports the credit was not applied");
        Ok(self)
    }
}

/// What `offer` produced.
#[derive(Debug)]
pub enum UpdateOffer {
    /// The value update (SIG5) and the sealed CREDIT (or DEBIT) for the wallet.
    Offered { value_update: String, credit: CommandApdu },
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
