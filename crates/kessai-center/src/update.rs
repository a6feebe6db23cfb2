//! Value updates on the application server: charges paid by credit card
//! (DESIGN §5), decreases back to the credit card, and owed items. A
//! charge's create checks the card and the limits and opens it; the
//! authorizer is asked only in its authenticate step, once the card proved
//! itself (M5), with the payment card that step carries. Each later step runs as
//! purchases do: load → transition (pure, in [`crate::value`]) → the money
//! secured (a capture, or a refund to the credit card, idempotent at the
//! authorizer) → one transaction with the compare-and-set, the books'
//! entries and the stored answer → releases (an authorization voided only
//! after the void committed). No credit is posted before its capture.

use kessai_api::{ErrorCode, Reason};
use kessai_core::Money;
use kessai_core::ids::{CardId, UpdateId};
use kessai_core::jws::JwsError;
use kessai_core::random::Random;
use kessai_scp03::{CommandApdu, ResponseApdu};

use kessai_core::messages::Reference;

use crate::authorizer::{AuthFuture, AuthorizationRequest, Authorizer, AuthorizerError, PaymentCard};
use crate::books::{BooksError, Entries};
use crate::db::DbError;
use crate::db::{Alongside, Reservation};
use crate::limits::{
    CHARGE_ATTEMPT_WINDOW_S, CHARGE_ATTEMPTS_PER_CARD, CHARGE_ATTEMPTS_PER_PAN, DAY_S, MIN_CHARGE_MINOR,
    daily_charge_limit_minor,
};
use crate::purchase::{CardRegistryStatus, Context, StepError};
use crate::runner::{StepFailure, run_step};
use crate::service::{Answer, Center};
use crate::value::{
    NewUpdate, Purpose, UpdateOffer, UpdatePhase, UpdateResolution, UpdateState, UpdateStepError, ValueUpdate,
};
use kessai_core::messages::value_update::Direction;

/// Why a charge request was refused. The HTTP layer maps each to a status
/// and a stable code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    #[error(transparent)]
    Authorizer(#[from] AuthorizerError),
    #[error("card {0} is not registered")]
    UnknownCard(CardId),
    #[error("no value update {0}")]
    UnknownUpdate(String),
    #[error("amount {amount} is outside {min_minor}..={max_minor} minor units")]
    AmountOutOfRange { amount: Money, min_minor: u64, max_minor: u64 },
    /// Too many charge attempts for this card or payment card number of
    /// late (velocity limits, M5).
    #[error("too many charge attempts for this card of late; try again later")]
    TooManyAttempts,
    #[error("the card holds or awaits {held_minor}; adding {amount} passes its maximum {max_minor}")]
    OverMaxBalance { held_minor: u64, amount: Money, max_minor: u64 },
    #[error("the card was charged {charged_minor} today; adding {amount} passes the daily limit {limit_minor}")]
    OverDailyLimit { charged_minor: u64, amount: Money, limit_minor: u64 },
    #[error("charge {0} exists for another card or amount")]
    ChargeIdInUse(String),
    /// A charge's authenticate step carries the payment card it is paid by.
    #[error("the payment card (card_number, expiry, cvc) is required to authorize charge {0}")]
    PaymentCardRequired(String),
    #[error("APDU {0}")]
    BadApdu(String),
    #[error(transparent)]
    Step(#[from] UpdateStepError),
    #[error("the books refused the transfer: {0}")]
    Books(#[from] BooksError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the refund request was refused: {0}")]
    Refund(JwsError),
    #[error("no settlement {0} of this store")]
    UnknownSettlement(String),
    #[error("not refundable: {0}")]
    NotRefundable(String),
    #[error("store {member} is not a member of {mall}")]
    NotAMember { member: String, mall: String },
    #[error("refund {0} exists with another settlement or amount")]
    RefundIdInUse(String),
    #[error("refunding {amount} passes the purchase of {purchase}: {refunded_minor} is refunded already")]
    OverRefund { purchase: Money, refunded_minor: u64, amount: Money },
    #[error("the reason must be 1 to {0} bytes of text")]
    BadReason(usize),
    #[error("bad reference: {0}")]
    BadReference(String),
    #[error("nothing owed {0}")]
    UnknownOwed(String),
    #[error("cannot cancel: {0}")]
    NotCancellable(String),
    #[error("cannot replace: {0}")]
    NotReplaceable(String),
    #[error("the books do not show that much on the card ({0})")]
    CorrectionOverFloat(&'static str),
    #[error("cannot decrease: {0}")]
    NotDecreasable(String),
    #[error("decreasing {amount} passes charge {charged}: {decreased_minor} went back already")]
    DecreaseOverCharge { charged: Money, decreased_minor: u64, amount: Money },
}

impl StepFailure for UpdateError {
    fn is_retryable(&self) -> bool {
        match self {
            UpdateError::Db(e) | UpdateError::Books(BooksError::Db(e)) => e.is_retryable(),
            _ => false,
        }
    }
}

impl From<StepError> for UpdateError {
    fn from(e: StepError) -> Self {
        UpdateError::Step(UpdateStepError::Card(e))
    }
}

pub use kessai_api::UpdateReply;

/// Builds the reply for a charge as it stands.
pub fn update_reply(c: &ValueUpdate, apdus: &[CommandApdu]) -> UpdateReply {
    UpdateReply {
        update_id: c.id.to_string(),
        charge_id: c.id.to_string(),
        phase: c.phase(),
        direction: c.direction,
        purpose: c.purpose.clone(),
        apdus: apdus.iter().map(|a| hex::encode(a.to_bytes())).collect(),
        amount: c.amount,
        funding_ref: c.authorization.as_ref().map(|a| a.as_str().to_owned()),
        value_update: match c.state() {
            UpdateState::Offered { offer, .. } => Some(offer.value_update_token.clone()),
            _ => None,
        },
        balance_minor: c.balance_minor(),
        balance_after_minor: c.applied().map(|a| a.balance_after_minor),
        reason: c.outcome().map(|(_, reason)| reason.to_owned()),
        reason_code: c.outcome().map(|(code, _)| code),
        access_token: None,
    }
}

/// What `create_charge` is asked. The payment card comes later, with the
/// authenticate step (M5).
#[derive(Debug)]
pub struct ChargeRequest {
    /// The charge's id. The API derives it from the Idempotency-Key, so a
    /// create retried after a crash names the same charge and the stored
    /// charge is found.
    pub id: UpdateId,
    pub card_id: CardId,
    pub amount: Money,
}

/// What `create_decrease` is asked.
#[derive(Debug)]
pub struct DecreaseRequest {
    /// The decrease's id (derived from the Idempotency-Key, like a charge's).
    pub id: UpdateId,
    pub card_id: CardId,
    /// The completed charge whose credit card gets the value back.
    pub charge_id: UpdateId,
    pub amount: Money,
}

/// For steps whose effect never reaches the authorizer.
#[derive(Debug)]
struct NoAuthorizer;

impl Authorizer for NoAuthorizer {
    fn authorize<'a>(&'a self, _: AuthorizationRequest<'a>) -> AuthFuture<'a, Reference> {
        Box::pin(async { Err(AuthorizerError::Unavailable("not on this path".into())) })
    }
    fn capture<'a>(&'a self, _: &'a Reference, _: Money) -> AuthFuture<'a, ()> {
        Box::pin(async { Err(AuthorizerError::Unavailable("not on this path".into())) })
    }
    fn void<'a>(&'a self, _: &'a Reference) -> AuthFuture<'a, ()> {
        Box::pin(async { Err(AuthorizerError::Unavailable("not on this path".into())) })
    }
    fn refund<'a>(&'a self, _: &'a Reference, _: Money, _: &'a str) -> AuthFuture<'a, ()> {
        Box::pin(async { Err(AuthorizerError::Unavailable("not on this path".into())) })
    }
}

/// Run again from a fresh load when a PostgreSQL transaction lost a
/// serialization conflict, hence `Fn`.
type UpdateTransition<'a> = Box<
    dyn Fn(ValueUpdate, &mut Context<'_, dyn Random + Send>) -> Result<Stepped, UpdateStepError> + Send + Sync + 'a,
>;

/// A transition's result and what must happen before it is stored.
struct Stepped {
    update: ValueUpdate,
    apdus: Vec<CommandApdu>,
    effect: Effect,
}

#[derive(Debug, Clone, Copy)]
enum Effect {
    None,
    /// The sealed command is leaving: hold the transfer.
    Hold,
    /// The card confirmed: post the transfer (and capture the
    /// authorization, or refund the credit card).
    Complete,
    /// Not applied (or never issued): void the hold, if any, and the
    /// authorization.
    Void,
}

fn stepped(update: ValueUpdate, apdus: Vec<CommandApdu>, effect: Effect) -> Result<Stepped, UpdateStepError> {
    Ok(Stepped { update, apdus, effect })
}

fn first(answers: &[ResponseApdu]) -> Result<&ResponseApdu, UpdateStepError> {
    answers.first().ok_or(UpdateStepError::Card(StepError::WrongAnswerCount { expected: 1, got: 0 }))
}

impl Center {
    /// A value update step's answer with its access token (M4): for its
    /// own routes, whose callers hold it already, and for its create.
    pub(crate) fn update_answer(&self, c: &ValueUpdate, apdus: &[CommandApdu]) -> UpdateReply {
        UpdateReply { access_token: Some(self.security.access_token(c.id.as_str())), ..update_reply(c, apdus) }
    }

    /// The limits that are the center's, whatever the card: the amount
    /// between the smallest charge and the per-payment and per-day limits
    /// of its currency. Told at create.
    fn check_charge_amount(&self, amount: Money) -> Result<(), UpdateError> {
        let max_minor = self.max_amount_minor.min(daily_charge_limit_minor(amount.currency()));
        if !(MIN_CHARGE_MINOR..=max_minor).contains(&amount.amount_minor()) {
            return Err(UpdateError::AmountOutOfRange { amount, min_minor: MIN_CHARGE_MINOR, max_minor });
        }
        Ok(())
    }

    /// The card's own limits, for a charge whose card just proved itself
    /// (M4: until then every card id is answered alike): registered and
    /// active, in the charge's currency, and the card's maximum balance
    /// (the books' float plus credits already on their way).
    async fn admit_charge(&self, charge: &ValueUpdate) -> Result<(), UpdateError> {
        let card = self.db.card(&charge.card_id).await?.ok_or(UpdateError::UnknownCard(charge.card_id))?;
        if card.status != CardRegistryStatus::Active {
            return Err(StepError::CardNotActive(card.id).into());
        }
        let amount = charge.amount;
        if amount.currency() != card.currency {
            return Err(StepError::CurrencyMismatch { bill: amount.currency(), card: card.currency }.into());
        }
        let float_minor = self.books.card_float(&card.id).await?.map_or(0, |(posted, _)| posted);
        let held_minor = float_minor.saturating_add(self.books.card_credits_pending(&card.id).await?);
        if held_minor.saturating_add(amount.amount_minor()) > card.max_balance_minor {
            return Err(UpdateError::OverMaxBalance { held_minor, amount, max_minor: card.max_balance_minor });
        }
        Ok(())
    }

    /// Reserves `amount` of the card's charge limit for today (UTC) for
    /// charge `charge`, by compare-and-set: concurrent charges can never pass
    /// it together, and a charge reserves once however often it asks.
    /// Given back when the charge is voided.
    async fn reserve_daily(&self, charge: &UpdateId, card: &CardId, amount: Money) -> Result<(), UpdateError> {
        let now = self.clock.now().unix_s();
        let day = now - now % DAY_S;
        let limit_minor = daily_charge_limit_minor(amount.currency());
        if let Err(charged_minor) =
            self.db.reserve_charge(charge.as_str(), card, day, amount.amount_minor(), limit_minor).await?
        {
            return Err(UpdateError::OverDailyLimit { charged_minor, amount, limit_minor });
        }
        Ok(())
    }

    /// POST /v1/charges: the center's limits on the amount, then the charge
    /// and its INITIALIZE UPDATE, for any card id alike (an unlisted one
    /// under the newest key version). The card's own limits, the
    /// authorization and the day's reservation wait for the card's proof,
    /// in [`Center::update_authenticate`].
    pub async fn create_charge(&self, request: ChargeRequest) -> Result<UpdateReply, UpdateError> {
        if let Some((existing, _)) = self.db.value_update(request.id.as_str()).await? {
            return self.resume_charge(existing, &request).await;
        }
        self.check_charge_amount(request.amount)?;
        let (key_version, max_balance_minor) = match self.db.card(&request.card_id).await? {
            Some(card) => (card.key_version, card.max_balance_minor),
            None => (
                self.security.newest_key_version().ok_or(UpdateError::UnknownCard(request.card_id))?,
                self.max_amount_minor,
            ),
        };
        let mut rng = self.random.generator();
        let (charge, init) = {
            let mut ctx = self.ctx(rng.as_mut());
            let input = NewUpdate {
                id: request.id.clone(),
                card_id: request.card_id,
                key_version,
                max_balance_minor,
                direction: Direction::Credit,
                purpose: Purpose::Charge,
                amount: request.amount,
                authorization: None,
            };
            ValueUpdate::create(&mut ctx, input)?
        };
        match self.db.insert_update(&charge, self.clock.now()).await {
            Ok(()) => Ok(self.update_answer(&charge, &[init])),
            // The same create at the same time: the first one's charge.
            Err(e) if e.is_unique_violation() => match self.db.value_update(request.id.as_str()).await? {
                Some((existing, _)) => self.resume_charge(existing, &request).await,
                None => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// A charge's authenticate step: the card's cryptogram is checked
    /// first; only then are the velocity limits counted, the day's limit
    /// reserved and the authorizer asked, with `payment_card` (dropped, and
    /// zeroized, here). Approved: the charge goes on, authorized, in the
    /// step's compare-and-set. Refused by a limit or declined: the charge
    /// ends voided with that code, in the same way, and the refusal is
    /// answered. The authorizer unavailable: nothing is stored, and the
    /// same step may be sent again.
    async fn authenticate_charge(
        &self,
        authorizer: &dyn Authorizer,
        (charge, version): (ValueUpdate, i64),
        answers: &[ResponseApdu],
        payment_card: Option<PaymentCard>,
        answer: Option<&Answer>,
    ) -> Result<UpdateReply, UpdateError> {
        let payment_card = payment_card.ok_or_else(|| UpdateError::PaymentCardRequired(charge.id.to_string()))?;
        let through = self.db.collected_through(&charge.card_id).await?;
        let mut rng = self.random.generator();
        let (proven, apdus) = charge.clone().authenticate(&mut self.ctx(rng.as_mut()), first(answers)?, through)?;
        let admitted = self.admit_charge(&proven).await;
        let refused = match admitted {
            Err(refused) => refused,
            Ok(()) => match self.authorize_proven(authorizer, &proven, &payment_card).await {
                Ok(authorization) => {
                    drop(payment_card);
                    let stepped = Stepped { update: proven.authorized(authorization), apdus, effect: Effect::None };
                    return self.store_update_step(authorizer, &stepped, version, answer).await;
                }
                Err(refused) => refused,
            },
        };
        drop(payment_card);
        let code = match &refused {
            UpdateError::Authorizer(e) if e.is_decline() => e.code(),
            UpdateError::TooManyAttempts => ErrorCode::TooManyAttempts,
            UpdateError::OverDailyLimit { .. } => ErrorCode::OverDailyLimit,
            UpdateError::UnknownCard(_) => ErrorCode::UnknownCard,
            UpdateError::OverMaxBalance { .. } => ErrorCode::OverMaxBalance,
            UpdateError::Step(UpdateStepError::Card(StepError::CardNotActive(_))) => ErrorCode::CardNotActive,
            UpdateError::Step(UpdateStepError::Card(StepError::CurrencyMismatch { .. })) => ErrorCode::CurrencyMismatch,
            // Not a refusal of this charge (the authorizer or the database
            // did not answer): nothing is stored; the step may be retried.
            _ => return Err(refused),
        };
        let ended = charge.refused(Reason::Refused(code), &refused.to_string())?;
        let stepped = Stepped { update: ended, apdus: Vec::new(), effect: Effect::Void };
        // The refusal is the answer, stored with the void by the API layer.
        self.store_update_step(authorizer, &stepped, version, None).await?;
        Err(refused)
    }

    /// For a charge whose card just proved itself: the velocity limits
    /// (every attempt counts, declined ones too: a card id and a list of
    /// stolen numbers make no oracle), the day's reservation, the
    /// authorization. A refused authorization gives the reservation back.
    async fn authorize_proven(
        &self,
        authorizer: &dyn Authorizer,
        charge: &ValueUpdate,
        payment_card: &PaymentCard,
    ) -> Result<Reference, UpdateError> {
        let now = self.clock.now();
        let since = kessai_core::time::Timestamp::from_unix_s(now.unix_s().saturating_sub(CHARGE_ATTEMPT_WINDOW_S));
        let pan = self.security.pan_fingerprint(payment_card.number());
        let (by_card, by_pan) = self.db.record_charge_attempt(&charge.card_id, &pan, now, since).await?;
        if by_card > CHARGE_ATTEMPTS_PER_CARD || by_pan > CHARGE_ATTEMPTS_PER_PAN {
            tracing::warn!(card = %charge.card_id, by_card, by_pan, "charge attempts over the velocity limits");
            return Err(UpdateError::TooManyAttempts);
        }
        self.reserve_daily(&charge.id, &charge.card_id, charge.amount).await?;
        let request =
            AuthorizationRequest { card: payment_card, amount: charge.amount, charge_id: charge.id.as_str(), now };
        match authorizer.authorize(request).await {
            Ok(authorization) => Ok(authorization),
            Err(e) => {
                // A retry of this step authorizes again (the authorizer
                // answers the same charge id alike) and reserves again.
                self.db.release_charge(charge.id.as_str()).await?;
                Err(e.into())
            }
        }
    }

    /// The same create again (a crash after the charge was stored): before
    /// any CREDIT exists, a fresh session so the wallet can go on; later,
    /// the charge as it stands (the wallet then recovers).
    async fn resume_charge(&self, existing: ValueUpdate, request: &ChargeRequest) -> Result<UpdateReply, UpdateError> {
        if existing.card_id != request.card_id || existing.amount != request.amount {
            return Err(UpdateError::ChargeIdInUse(existing.id.to_string()));
        }
        self.resume_value_update(existing).await
    }

    /// Any value update found again: before its command exists, a fresh
    /// secure session so the wallet can go on; later, as it stands (the
    /// wallet then recovers it).
    pub(crate) async fn resume_value_update(&self, existing: ValueUpdate) -> Result<UpdateReply, UpdateError> {
        if !matches!(existing.phase(), UpdatePhase::Authenticating | UpdatePhase::ReadingBalance) {
            return Ok(self.update_answer(&existing, &[]));
        }
        // The authorizer is not called on this path.
        let t: UpdateTransition<'_> = Box::new(|c, ctx| {
            let (charge, init) = c.restart_session(ctx)?;
            stepped(charge, vec![init], Effect::None)
        });
        self.update_step(&NoAuthorizer, existing.id.as_str(), t, None).await
    }

    /// A decrease: card value back to the credit card that paid charge
    /// `charge_id`, by a center-initiated sealed DEBIT with SIG5. At most
    /// what that charge put on the card, less what went back already
    /// (reserved in the same transaction that stores the decrease). The
    /// credit card is refunded only when the card confirms the DEBIT.
    /// A value update moving `amount` from prepaid card `prepaid_id` onto
    /// registered, active IC card `card_id` (#18), on a request the caller
    /// checked is the member's (of both cards). Id `id`: the same request
    /// again answers the update as it stands.
    pub(crate) async fn create_from_prepaid(
        &self,
        id: UpdateId,
        card_id: CardId,
        prepaid_id: &kessai_core::ids::PrepaidId,
        amount: Money,
    ) -> Result<UpdateReply, UpdateError> {
        let purpose = Purpose::FromPrepaid { prepaid_id: prepaid_id.clone() };
        if let Some((existing, _)) = self.db.value_update(id.as_str()).await? {
            if existing.card_id != card_id || existing.amount != amount || existing.purpose != purpose {
                return Err(UpdateError::ChargeIdInUse(existing.id.to_string()));
            }
            return self.resume_value_update(existing).await;
        }
        let card = self.db.card(&card_id).await?.ok_or(UpdateError::UnknownCard(card_id))?;
        if card.status != CardRegistryStatus::Active {
            return Err(StepError::CardNotActive(card.id).into());
        }
        if amount.currency() != card.currency {
            return Err(StepError::CurrencyMismatch { bill: amount.currency(), card: card.currency }.into());
        }
        // SIG5's `funding_ref`: the prepaid card that pays for it.
        let funding = Reference::parse(prepaid_id.as_str()).map_err(|e| UpdateError::BadApdu(e.to_string()))?;
        let mut rng = self.random.generator();
        let (update, init) = {
            let mut ctx = self.ctx(rng.as_mut());
            let input = NewUpdate {
                id,
                card_id: card.id,
                key_version: card.key_version,
                max_balance_minor: card.max_balance_minor,
                direction: Direction::Credit,
                purpose,
                amount,
                authorization: Some(funding),
            };
            ValueUpdate::create(&mut ctx, input)?
        };
        match self.db.insert_update(&update, self.clock.now()).await {
            Ok(()) => Ok(self.update_answer(&update, &[init])),
            Err(e) if e.is_unique_violation() => match self.db.value_update(update.id.as_str()).await? {
                Some((existing, _)) => self.resume_value_update(existing).await,
                None => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    pub async fn create_decrease(&self, request: DecreaseRequest) -> Result<UpdateReply, UpdateError> {
        let purpose = Purpose::RefundToCreditCard { charge_id: request.charge_id.clone() };
        if let Some((existing, _)) = self.db.value_update(request.id.as_str()).await? {
            if existing.card_id != request.card_id || existing.amount != request.amount || existing.purpose != purpose {
                return Err(UpdateError::ChargeIdInUse(existing.id.to_string()));
            }
            return self.resume_value_update(existing).await;
        }
        let (parent, _) = self.load_update(request.charge_id.as_str()).await?;
        if parent.purpose != Purpose::Charge || parent.card_id != request.card_id {
            return Err(UpdateError::NotDecreasable(format!(
                "{} is not a charge of card {}",
                parent.id, request.card_id
            )));
        }
        if parent.phase() != UpdatePhase::Completed {
            return Err(UpdateError::NotDecreasable(format!("charge {} is {}", parent.id, parent.phase().as_str())));
        }
        if request.amount.currency() != parent.amount.currency() || request.amount.is_zero() {
            return Err(UpdateError::AmountOutOfRange {
                amount: request.amount,
                min_minor: 1,
                max_minor: parent.amount.amount_minor(),
            });
        }
        let card = self.db.card(&request.card_id).await?.ok_or(UpdateError::UnknownCard(request.card_id))?;
        if card.status != CardRegistryStatus::Active {
            return Err(StepError::CardNotActive(card.id).into());
        }
        let mut rng = self.random.generator();
        let (charge, init) = {
            let mut ctx = self.ctx(rng.as_mut());
            let input = NewUpdate {
                id: request.id,
                card_id: card.id,
                key_version: card.key_version,
                max_balance_minor: card.max_balance_minor,
                direction: Direction::Debit,
                purpose,
                amount: request.amount,
                authorization: parent.authorization.clone(),
            };
            ValueUpdate::create(&mut ctx, input)?
        };
        match self
            .db
            .insert_decrease(&charge, parent.id.as_str(), parent.amount.amount_minor(), self.clock.now())
            .await?
        {
            Ok(()) => Ok(self.update_answer(&charge, &[init])),
            Err(decreased_minor) => {
                Err(UpdateError::DecreaseOverCharge { charged: parent.amount, decreased_minor, amount: request.amount })
            }
        }
    }

    pub(crate) async fn load_update(&self, id: &str) -> Result<(ValueUpdate, i64), UpdateError> {
        if UpdateId::parse(id).is_err() {
            return Err(UpdateError::UnknownUpdate(id.chars().take(64).collect()));
        }
        self.db.value_update(id).await?.ok_or_else(|| UpdateError::UnknownUpdate(id.to_owned()))
    }

    /// The stored charge, for status queries.
    pub async fn value_update(&self, id: &str) -> Result<ValueUpdate, UpdateError> {
        Ok(self.load_update(id).await?.0)
    }

    /// Load → transition → secure the funding → one transaction (the
    /// compare-and-set, the books' entries and what the ending changes
    /// beside it) → releases. On PostgreSQL a transaction that lost a
    /// serialization conflict runs the whole step again from the load.
    async fn update_step(
        &self,
        authorizer: &dyn Authorizer,
        id: &str,
        transition: UpdateTransition<'_>,
        answer: Option<Answer>,
    ) -> Result<UpdateReply, UpdateError> {
        let found: Result<(Stepped, UpdateReply), UpdateError> = run_step!(
            load: self.load_update(id),
            transition: |update| {
                let mut rng = self.random.generator();
                transition(update, &mut self.ctx(rng.as_mut())).map_err(UpdateError::from)
            },
            store: |stepped, version| self.store_update_step(authorizer, &stepped, version, answer.as_ref()),
        );
        Ok(found?.1)
    }

    /// The money secured (a capture, or a refund to the credit card), then
    /// one transaction, then the releases.
    async fn store_update_step(
        &self,
        authorizer: &dyn Authorizer,
        stepped: &Stepped,
        version: i64,
        answer: Option<&Answer>,
    ) -> Result<UpdateReply, UpdateError> {
        let c = &stepped.update;
        let effects = value_effects(c, stepped.effect)?;
        if let Some(funding) = effects.secure
            && let Err(e) = funding.run(authorizer, c).await
        {
            if e.is_final() && matches!(funding, AuthorizerCall::Capture) {
                return self.funding_refused(c.clone(), version, answer).await;
            }
            return Err(e.into());
        }
        let reply = self.update_answer(c, &stepped.apdus);
        let save = answer.map(|a| a.saved(&reply)).transpose()?;
        let now = self.clock.now();
        self.db
            .store_update_with(c, version, now, effects.alongside, effects.entries, save)
            .await
            .map_err(BooksError::from)?;
        if let Some(funding) = effects.release
            && let Err(e) = funding.run(authorizer, c).await
        {
            // The value update ended; an authorization left open
            // expires at the acquirer on its own.
            tracing::warn!(value_update = %c.id, error = %e, "releasing the authorization failed");
        }
        Ok(reply)
    }

    /// The card applied a charge's CREDIT, but its authorization can never
    /// be captured (voided or expired at the acquirer): nothing funds the
    /// value. In one transaction the pending credit is voided (the books
    /// never post it), the charge ends `funding_refused`, its day's
    /// reservation goes back, and an owed item takes the value off the card
    /// at its next presentation. Until then the card cannot spend it: the
    /// books do not show it.
    async fn funding_refused(
        &self,
        applied: ValueUpdate,
        version: i64,
        answer: Option<&Answer>,
    ) -> Result<UpdateReply, UpdateError> {
        let u = applied.funding_refused();
        let now = self.clock.now();
        let owed = crate::owed::unfunded(&u, now);
        let entries = Entries::charge_resolve(&u.transaction_id, u.amount, false)?;
        let reply = self.update_answer(&u, &[]);
        let save = answer.map(|a| a.saved(&reply)).transpose()?;
        let alongside = Alongside::Unfunded { owed: &owed, reservation: reservation(&u) };
        self.db.store_update_with(&u, version, now, alongside, entries, save).await.map_err(BooksError::from)?;
        tracing::warn!(value_update = %u.id, card = %u.card_id, "a charge's funding was refused after the card applied it; its value is owed back");
        Ok(reply)
    }

    /// The authenticate step. A charge not yet authorized is authorized
    /// here, after the card's proof, with `payment_card`; any other value
    /// update needs none (one sent anyway is dropped unused).
    pub async fn update_authenticate(
        &self,
        authorizer: &dyn Authorizer,
        id: &str,
        answers: Vec<ResponseApdu>,
        payment_card: Option<PaymentCard>,
        answer: Option<Answer>,
    ) -> Result<UpdateReply, UpdateError> {
        let found = self.load_update(id).await?;
        if found.0.purpose == Purpose::Charge && found.0.authorization.is_none() {
            return self.authenticate_charge(authorizer, found, &answers, payment_card, answer.as_ref()).await;
        }
        drop(payment_card);
        let through = self.db.collected_through(&found.0.card_id).await?;
        let t: UpdateTransition<'_> = Box::new(move |c, ctx| {
            let (charge, apdus) = c.authenticate(ctx, first(&answers)?, through)?;
            stepped(charge, apdus, Effect::None)
        });
        self.update_step(authorizer, id, t, answer).await
    }

    /// The balance step: SIG5 and the sealed CREDIT, with the funding held
    /// in the books before the CREDIT leaves; or voided, over the maximum.
    pub async fn update_offer(
        &self,
        authorizer: &dyn Authorizer,
        id: &str,
        answers: Vec<ResponseApdu>,
        answer: Option<Answer>,
    ) -> Result<UpdateReply, UpdateError> {
        let t: UpdateTransition<'_> = Box::new(move |c, ctx| match c.offer(ctx, &answers)? {
            (charge, UpdateOffer::Offered { commands, .. }) => stepped(charge, commands, Effect::Hold),
            (charge, UpdateOffer::OverMaxBalance { .. } | UpdateOffer::InsufficientBalance { .. }) => {
                stepped(charge, vec![], Effect::Void)
            }
        });
        self.update_step(authorizer, id, t, answer).await
    }

    pub async fn update_complete(
        &self,
        authorizer: &dyn Authorizer,
        id: &str,
        answers: Vec<ResponseApdu>,
        answer: Option<Answer>,
    ) -> Result<UpdateReply, UpdateError> {
        let t: UpdateTransition<'_> = Box::new(move |c, ctx| {
            let charge = c.complete(ctx, &answers)?;
            stepped(charge, vec![], Effect::Complete)
        });
        self.update_step(authorizer, id, t, answer).await
    }

    pub async fn update_cancel(
        &self,
        authorizer: &dyn Authorizer,
        id: &str,
        answer: Option<Answer>,
    ) -> Result<UpdateReply, UpdateError> {
        let t: UpdateTransition<'_> = Box::new(|c, _| {
            let charge = c.cancel("cancelled before the credit was issued")?;
            stepped(charge, vec![], Effect::Void)
        });
        self.update_step(authorizer, id, t, answer).await
    }

    /// Ends a value update abandoned before its command (the sweep).
    pub(crate) async fn abandon_value_update(
        &self,
        authorizer: &dyn Authorizer,
        id: &str,
    ) -> Result<UpdateReply, UpdateError> {
        let t: UpdateTransition<'_> = Box::new(|c, _| stepped(c.abandon()?, vec![], Effect::Void));
        self.update_step(authorizer, id, t, None).await
    }

    pub async fn update_recover(
        &self,
        authorizer: &dyn Authorizer,
        id: &str,
        answer: Option<Answer>,
    ) -> Result<UpdateReply, UpdateError> {
        let t: UpdateTransition<'_> = Box::new(|c, ctx| {
            let (charge, init) = c.begin_recovery(ctx)?;
            stepped(charge, vec![init], Effect::None)
        });
        self.update_step(authorizer, id, t, answer).await
    }

    pub async fn update_recover_authenticate(
        &self,
        authorizer: &dyn Authorizer,
        id: &str,
        answers: Vec<ResponseApdu>,
        answer: Option<Answer>,
    ) -> Result<UpdateReply, UpdateError> {
        let found = self.load_update(id).await?;
        let through = self.db.collected_through(&found.0.card_id).await?;
        let t: UpdateTransition<'_> = Box::new(move |c, ctx| {
            let (charge, apdus) = c.recovery_authenticate(ctx, first(&answers)?, through)?;
            stepped(charge, apdus, Effect::None)
        });
        self.update_step(authorizer, id, t, answer).await
    }

    pub async fn update_recover_status(
        &self,
        authorizer: &dyn Authorizer,
        id: &str,
        answers: Vec<ResponseApdu>,
        answer: Option<Answer>,
    ) -> Result<UpdateReply, UpdateError> {
        let t: UpdateTransition<'_> = Box::new(move |c, ctx| match c.resolve(ctx, &answers)? {
            (charge, UpdateResolution::Completed) => stepped(charge, vec![], Effect::Complete),
            (charge, UpdateResolution::NeedsBalance { command }) => stepped(charge, vec![command], Effect::None),
        });
        self.update_step(authorizer, id, t, answer).await
    }

    pub async fn update_recover_balance(
        &self,
        authorizer: &dyn Authorizer,
        id: &str,
        answers: Vec<ResponseApdu>,
        answer: Option<Answer>,
    ) -> Result<UpdateReply, UpdateError> {
        let t: UpdateTransition<'_> = Box::new(move |c, ctx| {
            let charge = c.resolve_balance(ctx, first(&answers)?)?;
            stepped(charge, vec![], Effect::Void)
        });
        self.update_step(authorizer, id, t, answer).await
    }
}

/// What a value update's step does beyond its own row.
struct Effects<'c> {
    /// The books' entries, applied in the step's transaction.
    entries: Entries,
    /// What the ending changes beside the row, in the same transaction.
    alongside: Alongside<'c>,
    /// Run before the transaction: the money is secured (captured, or
    /// refunded to the credit card) before the books post the value. Only
    /// after the card proved the command applied, which no other request
    /// can contradict, and idempotent at the authorizer, so a retry or a
    /// concurrent identical step repeats it harmlessly. If it fails, nothing
    /// is posted: the credit stays pending, which the card cannot spend.
    secure: Option<AuthorizerCall>,
    /// Run only after the transaction committed, so that only the request
    /// that won the row releases anything (a cancel racing the balance step
    /// never voids an authorization a live CREDIT depends on).
    release: Option<AuthorizerCall>,
}

/// A call to the authorizer.
#[derive(Debug, Clone, Copy)]
enum AuthorizerCall {
    Capture,
    VoidAuthorization,
    RefundToCreditCard,
}

impl AuthorizerCall {
    async fn run(self, authorizer: &dyn Authorizer, c: &ValueUpdate) -> Result<(), AuthorizerError> {
        let Some(authorization) = &c.authorization else {
            // A charge ended before it was authorized: nothing to void. (A
            // capture or refund is never asked of one: it was never offered.)
            return match self {
                AuthorizerCall::VoidAuthorization => Ok(()),
                _ => Err(AuthorizerError::UnknownAuthorization(c.id.to_string())),
            };
        };
        match self {
            AuthorizerCall::Capture => authorizer.capture(authorization, c.amount).await,
            AuthorizerCall::VoidAuthorization => authorizer.void(authorization).await,
            AuthorizerCall::RefundToCreditCard => authorizer.refund(authorization, c.amount, c.id.as_str()).await,
        }
    }
}

/// What charge `u` reserved of its day's limit: the reservation keyed by
/// it, and for a charge stored before those, the day it recorded.
fn reservation(u: &ValueUpdate) -> Reservation<'_> {
    Reservation { charge: u.id.as_str(), legacy: u.charge_day_s.map(|day| (&u.card_id, day, u.amount.amount_minor())) }
}

/// Where a value update's value comes from or goes to: what its hold, its
/// completion and its void mean for the books, for the party outside that
/// funds it, and for the rows beside it. A new funding channel (a bank
/// transfer, cash, a center-held account) is one more implementation.
trait Funding<'u> {
    /// The sealed command is leaving.
    fn hold(&self, u: &'u ValueUpdate) -> Result<Effects<'u>, BooksError>;
    /// The card confirmed the command.
    fn complete(&self, u: &'u ValueUpdate) -> Result<Effects<'u>, BooksError>;
    /// The command was never issued, or provably not applied. `held`: it was
    /// issued, so its hold exists.
    fn void(&self, u: &'u ValueUpdate, held: bool) -> Result<Effects<'u>, BooksError>;
}

impl Effects<'_> {
    fn books(entries: Entries) -> Self {
        Effects { entries, alongside: Alongside::Nothing, secure: None, release: None }
    }
}

/// A charge: credit funding → card float, paid by credit card. The
/// authorization is captured before the credit is posted.
struct CreditCard;

impl<'u> Funding<'u> for CreditCard {
    fn hold(&self, u: &'u ValueUpdate) -> Result<Effects<'u>, BooksError> {
        Ok(Effects::books(Entries::charge_hold(&u.transaction_id, &u.card_id, u.amount)?))
    }

    fn complete(&self, u: &'u ValueUpdate) -> Result<Effects<'u>, BooksError> {
        let entries = Entries::charge_resolve(&u.transaction_id, u.amount, true)?;
        Ok(Effects { secure: Some(AuthorizerCall::Capture), ..Effects::books(entries) })
    }

    fn void(&self, u: &'u ValueUpdate, held: bool) -> Result<Effects<'u>, BooksError> {
        let entries = if held { Entries::charge_resolve(&u.transaction_id, u.amount, false)? } else { Entries::none() };
        let alongside = Alongside::ChargeReleased(reservation(u));
        Ok(Effects { alongside, release: Some(AuthorizerCall::VoidAuthorization), ..Effects::books(entries) })
    }
}

/// A decrease: card float → credit funding, the value refunded to the
/// credit card that paid charge `charge_id` once the card confirms.
struct BackToCreditCard<'u> {
    charge_id: &'u UpdateId,
}

impl<'u> Funding<'u> for BackToCreditCard<'u> {
    fn hold(&self, u: &'u ValueUpdate) -> Result<Effects<'u>, BooksError> {
        Ok(Effects::books(Entries::decrease_hold(&u.transaction_id, &u.card_id, u.amount)?))
    }

    fn complete(&self, u: &'u ValueUpdate) -> Result<Effects<'u>, BooksError> {
        let entries = Entries::decrease_resolve(&u.transaction_id, u.amount, true)?;
        Ok(Effects { secure: Some(AuthorizerCall::RefundToCreditCard), ..Effects::books(entries) })
    }

    fn void(&self, u: &'u ValueUpdate, held: bool) -> Result<Effects<'u>, BooksError> {
        let entries =
            if held { Entries::decrease_resolve(&u.transaction_id, u.amount, false)? } else { Entries::none() };
        let alongside =
            Alongside::DecreaseReleased { charge_id: self.charge_id.as_str(), amount_minor: u.amount.amount_minor() };
        Ok(Effects { alongside, ..Effects::books(entries) })
    }
}

/// An owed item (a store's refund, an operator's correction), held in the
/// books when it arose: applying it posts that hold.
struct OwedItem<'u> {
    owed_id: &'u str,
}

impl<'u> Funding<'u> for OwedItem<'u> {
    fn hold(&self, _: &'u ValueUpdate) -> Result<Effects<'u>, BooksError> {
        Ok(Effects::books(Entries::none()))
    }

    fn complete(&self, u: &'u ValueUpdate) -> Result<Effects<'u>, BooksError> {
        // Code 0: the post carries its hold's code (a refund's, a
        // correction's, a replacement's).
        let entries = Entries::owed_resolve(self.owed_id, u.amount, 0, true)?;
        Ok(Effects { alongside: Alongside::OwedApplied(self.owed_id), ..Effects::books(entries) })
    }

    fn void(&self, _: &'u ValueUpdate, _: bool) -> Result<Effects<'u>, BooksError> {
        Ok(Effects { alongside: Alongside::OwedReleased(self.owed_id), ..Effects::books(Entries::none()) })
    }
}

/// Value the card holds that its funding never paid, taken back: the books
/// never posted it, so nothing is posted; the owed item is settled.
struct Unbooked<'u> {
    owed_id: &'u str,
}

impl<'u> Funding<'u> for Unbooked<'u> {
    fn hold(&self, _: &'u ValueUpdate) -> Result<Effects<'u>, BooksError> {
        Ok(Effects::books(Entries::none()))
    }

    fn complete(&self, _: &'u ValueUpdate) -> Result<Effects<'u>, BooksError> {
        Ok(Effects { alongside: Alongside::OwedApplied(self.owed_id), ..Effects::books(Entries::none()) })
    }

    fn void(&self, _: &'u ValueUpdate, _: bool) -> Result<Effects<'u>, BooksError> {
        Ok(Effects { alongside: Alongside::OwedReleased(self.owed_id), ..Effects::books(Entries::none()) })
    }
}

/// Value moved from a member's virtual prepaid card (#18): prepaid → card
/// float, held when the CREDIT is sealed (refused beyond the prepaid card's
/// value), posted when the card confirms.
struct FromPrepaidCard<'u> {
    prepaid_id: &'u kessai_core::ids::PrepaidId,
}

impl<'u> Funding<'u> for FromPrepaidCard<'u> {
    fn hold(&self, u: &'u ValueUpdate) -> Result<Effects<'u>, BooksError> {
        Ok(Effects::books(Entries::prepaid_to_card_hold(&u.transaction_id, self.prepaid_id, &u.card_id, u.amount)?))
    }

    fn complete(&self, u: &'u ValueUpdate) -> Result<Effects<'u>, BooksError> {
        Ok(Effects::books(Entries::prepaid_to_card_resolve(&u.transaction_id, u.amount, true)?))
    }

    fn void(&self, u: &'u ValueUpdate, held: bool) -> Result<Effects<'u>, BooksError> {
        let entries =
            if held { Entries::prepaid_to_card_resolve(&u.transaction_id, u.amount, false)? } else { Entries::none() };
        Ok(Effects::books(entries))
    }
}

/// The funding behind a value update.
fn funding_of(purpose: &Purpose) -> Box<dyn Funding<'_> + '_> {
    match purpose {
        Purpose::Charge => Box::new(CreditCard),
        Purpose::RefundToCreditCard { charge_id } => Box::new(BackToCreditCard { charge_id }),
        Purpose::Owed { owed_id } => Box::new(OwedItem { owed_id }),
        Purpose::TakeBackUnfunded { owed_id } => Box::new(Unbooked { owed_id }),
        Purpose::FromPrepaid { prepaid_id } => Box::new(FromPrepaidCard { prepaid_id }),
    }
}

/// What a step means for the books, the authorizer, and (stored with the
/// step) the rows beside the value update.
fn value_effects(c: &ValueUpdate, effect: Effect) -> Result<Effects<'_>, BooksError> {
    let funding = funding_of(&c.purpose);
    match effect {
        Effect::None => Ok(Effects::books(Entries::none())),
        Effect::Hold => funding.hold(c),
        Effect::Complete => funding.complete(c),
        // A hold exists exactly when a command was sealed.
        Effect::Void => funding.void(c, c.command_sealed()),
    }
}
