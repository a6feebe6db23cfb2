//! The wallet's part of a charge (issue #8; PROTOCOL §9): add value to the
//! card, paid by credit card. The center authorizes the credit card, reads
//! the card's balance in a secure session and hands out a sealed CREDIT
//! with its value update (SIG5); the wallet checks SIG5 against the card,
//! the amount and the CREDIT's exact bytes before the CREDIT goes to the
//! card, then lets the center complete.
//!
//! A charge is a chain of values, each made only by the step before:
//! [`ChargeOffered`] (SIG5 verified) → [`CreditRelayed`] → [`ChargeOutcome`].
//!
//! The same chain runs the other value updates, which differ only in how
//! they are opened: a decrease (value back to the credit card of a charge,
//! a sealed DEBIT; `POST /v1/decreases`) and what is owed when the card is
//! presented (a store's refund: CREDIT; an operator's correction: DEBIT;
//! `POST /v1/cards/{id}/owed/apply`). SIG5 is checked for the direction
//! and amount the wallet expects in every case.
//!
//! The payment card's number, expiry and CVC live only in
//! [`PaymentCardInput`] (zeroized on drop, printed as `***`), go to the
//! center once in the create request, and are never stored or logged.

use kessai_api::{ErrorCode, Phase, Reason, request};
use kessai_core::Money;
use kessai_core::ids::CardId;
use kessai_core::messages::value_update::Direction;
use kessai_core::messages::value_update_check::{ExpectedUpdate, ValueUpdateRefused, verify_value_update};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::card::{CardError, CardSummary};
use crate::center::{CenterError, ChargeReply, VerifyError};
use crate::charge_records::{ChargePhase, ChargeRecord, ChargeUpdate, UpdateKind};
use crate::limits::MAX_OWED_PER_PRESENTATION;
use crate::wallet::{Outcome, Wallet, random_token};

/// Why a charge did not go through.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChargeError {
    #[error("the payment card details are incomplete: {0}")]
    BadCardInput(&'static str),
    #[error("{message}")]
    Declined { code: Reason, message: String },
    #[error("card: {0}")]
    Card(#[from] CardError),
    #[error("the card is blocked")]
    CardBlocked,
    #[error(transparent)]
    Center(#[from] CenterError),
    #[error("the center answered {step} with phase {phase:?} and {apdus} commands")]
    UnexpectedReply { step: &'static str, phase: Phase, apdus: usize },
    #[error("the center's keys could not be used: {0}; nothing was relayed")]
    Keys(VerifyError),
    #[error("the value update (SIG5) was refused: {0}; nothing was relayed and nothing was charged")]
    ValueUpdateRefused(ValueUpdateRefused),
    #[error("the charge was voided: {0}. Nothing was charged.")]
    Voided(String),
    #[error("this wallet has no charge {0}")]
    UnknownCharge(String),
    #[error("local records: {0}")]
    Records(#[from] sqlx::Error),
    #[error("the wallet could not start: {0}")]
    Setup(String),
}

/// What the cardholder reads when the card applied a charge's credit but
/// its credit card payment could not be completed.
const FUNDING_REFUSED: &str = "The credit card payment could not be completed. The value added to the card will be \
                               taken back the next time the card is used.";

/// What the cardholder reads when a charge ends for `reason`, for the
/// refusals after which nothing exists to undo (the charge simply ends);
/// `None` for any other reason.
pub fn decline_message(reason: Reason) -> Option<&'static str> {
    let Reason::Refused(code) = reason else { return None };
    Some(match code {
        ErrorCode::CardDeclined => "Your credit card was declined. Nothing was charged.",
        ErrorCode::InsufficientFunds => "Your credit card has insufficient funds. Nothing was charged.",
        ErrorCode::ExpiredCard => "Your credit card has expired. Nothing was charged.",
        ErrorCode::ProcessingError => {
            "The credit card company could not process the charge. Try again later. Nothing was charged."
        }
        ErrorCode::InvalidCardNumber => {
            "The credit card number is not valid. Check it and try again. Nothing was charged."
        }
        ErrorCode::InvalidExpiry => "The expiry date is not valid (MM/YY). Nothing was charged.",
        ErrorCode::InvalidCvc => "The security code (CVC) is not valid. Nothing was charged.",
        ErrorCode::OverMaxBalance => "This amount would take the card over its maximum balance. Nothing was charged.",
        ErrorCode::OverDailyLimit => "This amount is over the card's daily charge limit. Nothing was charged.",
        ErrorCode::AmountOutOfRange => "The amount is outside what can be charged at once. Nothing was charged.",
        ErrorCode::OverCharge => "That is more than is left of the charge to give back. Nothing was changed.",
        ErrorCode::NotDecreasable => "That charge cannot be given back to its credit card. Nothing was changed.",
        ErrorCode::InsufficientBalance => "The card holds less than that. Nothing was changed.",
        _ => return None,
    })
}

/// A payment card's number, expiry and CVC: zeroized on drop, `***` when
/// printed, never stored.
pub struct PaymentCardInput {
    number: Zeroizing<String>,
    expiry: Zeroizing<String>,
    cvc: Zeroizing<String>,
}

impl std::fmt::Debug for PaymentCardInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PaymentCardInput(***)")
    }
}

impl PaymentCardInput {
    /// Checks the shape only (the center checks the number's Luhn digit
    /// and asks the card company): 12–19 digits (spaces allowed), `MM/YY`,
    /// a 3- or 4-digit CVC.
    pub fn parse(number: &str, expiry: &str, cvc: &str) -> Result<PaymentCardInput, ChargeError> {
        let digits: Zeroizing<String> = Zeroizing::new(number.chars().filter(|c| *c != ' ' && *c != '-').collect());
        if !(12..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ChargeError::BadCardInput("the card number must have 12 to 19 digits"));
        }
        let e = expiry.trim().as_bytes();
        let month_ok = e.len() == 5
            && e[2] == b'/'
            && [e[0], e[1], e[3], e[4]].iter().all(u8::is_ascii_digit)
            && (1..=12).contains(&((e[0] - b'0') * 10 + (e[1] - b'0')));
        if !month_ok {
            return Err(ChargeError::BadCardInput("the expiry must be MM/YY"));
        }
        let cvc = cvc.trim();
        if !(3..=4).contains(&cvc.len()) || !cvc.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ChargeError::BadCardInput("the security code must have 3 or 4 digits"));
        }
        Ok(PaymentCardInput {
            number: digits,
            expiry: Zeroizing::new(expiry.trim().to_owned()),
            cvc: Zeroizing::new(cvc.to_owned()),
        })
    }
}

impl PaymentCardInput {
    /// The authenticate step's body: the card's answers and this card
    /// (its fields zeroized when the body is dropped).
    pub(crate) fn authenticate(self, responses: Vec<String>) -> request::ChargeAuthenticate {
        let PaymentCardInput { number, expiry, cvc } = self;
        request::ChargeAuthenticate { responses, card_number: Some(number), expiry: Some(expiry), cvc: Some(cvc) }
    }

    /// A prepaid request's body with this card beside it (funding by credit
    /// card).
    pub(crate) fn prepaid(&self, request: String) -> request::SubmitPrepaidRequest {
        request::SubmitPrepaidRequest {
            request,
            card_number: Some(self.number.clone()),
            expiry: Some(self.expiry.clone()),
            cvc: Some(self.cvc.clone()),
        }
    }
}

/// Progress lines for the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChargeProgress {
    CardRead(CardSummary),
    /// The center verified the card's cryptogram.
    CardAuthenticated,
    /// Then the credit card was authorized (a charge; other value updates
    /// need no authorization): the charge goes on at the center.
    Authorized {
        charge_id: String,
    },
    ValueUpdateVerified {
        balance_before: Money,
        balance_after: Money,
    },
    CreditRelayed,
    Completed {
        balance_after: Money,
    },
}

/// SIG5 verified and tied to the card, the amount and the sealed CREDIT.
#[derive(Debug)]
pub struct ChargeOffered {
    pub(crate) record: ChargeRecord,
    pub(crate) charge_id: String,
    /// What rides ahead of the CREDIT in the same batch: a LOG COLLECTED.
    pub(crate) before: Vec<Vec<u8>>,
    pub(crate) credit: Vec<u8>,
    pub balance_before: Money,
    pub balance_after: Money,
}

impl ChargeOffered {
    pub fn charge_id(&self) -> &str {
        &self.charge_id
    }
}

/// The CREDIT reached the card; its answers (the batch's) are recorded.
#[derive(Debug)]
pub struct CreditRelayed {
    pub(crate) record: ChargeRecord,
    pub(crate) charge_id: String,
    pub(crate) answers: Vec<String>,
}

/// A completed charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeOutcome {
    pub charge_id: String,
    pub card_id: CardId,
    pub amount: Money,
    /// The card's balance after the update, from its sealed answer.
    pub balance_after: Money,
    pub funding_ref: String,
    /// A charge or a refund added value; a decrease or correction took it off.
    pub direction: Direction,
    pub kind: UpdateKind,
}

/// How a value update is opened at the center.
enum Opening {
    /// `POST /v1/charges`; the payment card goes with the authenticate step
    /// (sent once, then dropped).
    Charge(PaymentCardInput),
    /// `POST /v1/decreases`: back to the credit card of charge `charge_id`.
    Decrease { charge_id: String },
    /// Already opened (an owed item the center handed out).
    Opened(Box<ChargeReply>),
    /// `POST /v1/prepaid/requests`: the member's signed request to move
    /// value from a prepaid card onto this card (#18).
    Prepaid(request::SubmitPrepaidRequest),
}

/// A value update step's batch of sealed commands (see
/// [`crate::wallet::batch_fits`]).
fn expect_batch(
    step: &'static str,
    r: &ChargeReply,
    phase: Phase,
    opens: bool,
    last: &[u8],
) -> Result<(), ChargeError> {
    if r.phase != phase || !crate::wallet::batch_fits(&r.apdus, opens, last) {
        return Err(ChargeError::UnexpectedReply { step, phase: r.phase, apdus: r.apdus.len() });
    }
    Ok(())
}

fn expect(step: &'static str, r: &ChargeReply, phase: Phase, apdus: usize) -> Result<(), ChargeError> {
    if r.phase != phase || r.apdus.len() != apdus {
        return Err(ChargeError::UnexpectedReply { step, phase: r.phase, apdus: r.apdus.len() });
    }
    Ok(())
}

fn refusal_of(e: CenterError) -> ChargeError {
    let reason = e.code().map(Reason::Refused);
    match reason.and_then(|r| decline_message(r).map(|message| (r, message))) {
        Some((code, message)) => ChargeError::Declined { code, message: message.to_owned() },
        None => ChargeError::Center(e),
    }
}

impl Wallet {
    async fn set_charge(&self, local_id: &str, update: ChargeUpdate<'_>) -> Result<(), ChargeError> {
        Ok(self.records.update_charge(local_id, &update, self.now_s()).await?)
    }

    /// POSTs a charge step under the charge's persisted key for `step`.
    async fn charge_post<B: serde::Serialize + Sync>(
        &self,
        local_id: &str,
        step: &str,
        path: &str,
        body: &B,
    ) -> Result<ChargeReply, ChargeError> {
        let key = self.records.charge_step_key(local_id, step, &random_token("w-"), self.now_s()).await?;
        Ok(self.center.post(path, body, &key).await?)
    }

    async fn charge_relay_step(
        &self,
        local_id: &str,
        step: &str,
        path: &str,
        reply: &ChargeReply,
    ) -> Result<ChargeReply, ChargeError> {
        let answers = self.card.relay_hex(&reply.apdus).await?;
        self.charge_post(local_id, step, path, &request::Answers { responses: answers }).await
    }

    /// Reads the card, opens the charge, lets the center authenticate the
    /// card and, with the card proven, authorize the payment card (sent here,
    /// once, with the card's answer, then dropped), read its balance, and
    /// verifies SIG5. A refused SIG5 is undone through recovery; nothing is
    /// relayed.
    pub async fn begin_charge(
        &self,
        amount: Money,
        payment: PaymentCardInput,
        progress: &mut (dyn FnMut(ChargeProgress) + Send),
    ) -> Result<ChargeOffered, ChargeError> {
        self.begin_update(("chg_", UpdateKind::Charge, Direction::Credit), amount, Opening::Charge(payment), progress)
            .await
    }

    /// Reads the card, opens a decrease of `amount` back to the credit card
    /// of charge `charge_id` (the cardholder asked for it), and verifies
    /// SIG5 for exactly that DEBIT.
    pub async fn begin_decrease(
        &self,
        charge_id: &str,
        amount: Money,
        progress: &mut (dyn FnMut(ChargeProgress) + Send),
    ) -> Result<ChargeOffered, ChargeError> {
        let opening = Opening::Decrease { charge_id: charge_id.to_owned() };
        self.begin_update(("dec_", UpdateKind::Decrease, Direction::Debit), amount, opening, progress).await
    }

    /// Moves value from the member's prepaid card onto the card in the
    /// reader: `request(card id)` is the member's signed request naming it
    /// (#18 ④), sent as the update's create; then as a charge, SIG5 checked.
    pub async fn begin_from_prepaid(
        &self,
        amount: Money,
        request: impl FnOnce(CardId) -> Result<request::SubmitPrepaidRequest, ChargeError>,
        progress: &mut (dyn FnMut(ChargeProgress) + Send),
    ) -> Result<ChargeOffered, ChargeError> {
        let card = {
            let _turn = self.conversation.lock().await;
            self.card.summary().await?
        };
        let opening = Opening::Prepaid(request(card.card_id)?);
        self.begin_update(("pre_", UpdateKind::FromPrepaid, Direction::Credit), amount, opening, progress).await
    }

    /// Reads the card, records the update (`prefix`: of its local id),
    /// opens it at the center and verifies SIG5; records why if it stops.
    async fn begin_update(
        &self,
        (prefix, kind, direction): (&str, UpdateKind, Direction),
        amount: Money,
        opening: Opening,
        progress: &mut (dyn FnMut(ChargeProgress) + Send),
    ) -> Result<ChargeOffered, ChargeError> {
        let _turn = self.conversation.lock().await;
        let card = self.card.summary().await?;
        progress(ChargeProgress::CardRead(card));
        if card.blocked {
            return Err(ChargeError::CardBlocked);
        }
        let local_id = random_token(prefix);
        self.records.insert_charge(&local_id, card.card_id, (kind, direction), amount, self.now_s()).await?;
        let result = self.open_update(&local_id, card.card_id, (direction, amount), opening, progress).await;
        if let Err(e) = &result {
            self.note_charge_failure(&local_id, e).await;
        }
        result
    }

    async fn open_update(
        &self,
        local_id: &str,
        card_id: CardId,
        (direction, amount): (Direction, Money),
        opening: Opening,
        progress: &mut (dyn FnMut(ChargeProgress) + Send),
    ) -> Result<ChargeOffered, ChargeError> {
        let (r, payment) = match opening {
            Opening::Charge(payment) => {
                let body = request::CreateCharge { card_id: card_id.to_string(), amount };
                let r = self.charge_post(local_id, "create", "/v1/charges", &body).await.map_err(refusal_of_charge)?;
                (r, Some(payment))
            }
            Opening::Decrease { charge_id } => {
                let body = request::CreateDecrease { card_id: card_id.to_string(), charge_id, amount };
                (self.charge_post(local_id, "create", "/v1/decreases", &body).await.map_err(refusal_of_charge)?, None)
            }
            Opening::Opened(r) => (*r, None),
            Opening::Prepaid(body) => {
                let r = self.charge_post(local_id, "create", "/v1/prepaid/requests", &body).await;
                (r.map_err(refusal_of_charge)?, None)
            }
        };
        expect("create", &r, Phase::Authenticating, 1)?;
        let update =
            ChargeUpdate { charge_id: Some(&r.charge_id), funding_ref: r.funding_ref.as_deref(), ..Default::default() };
        self.set_charge(local_id, update).await?;
        let base = format!("/v1/value-updates/{}", r.charge_id);
        let r = self.authenticate_update(local_id, &base, &r, payment).await.map_err(refusal_of_charge)?;
        expect_batch("authenticate", &r, Phase::ReadingBalance, true, &[kessai_card::protocol::INS_READ_BALANCE])?;
        progress(ChargeProgress::CardAuthenticated);
        let update = ChargeUpdate { funding_ref: r.funding_ref.as_deref(), ..Default::default() };
        self.set_charge(local_id, update).await?;
        progress(ChargeProgress::Authorized { charge_id: r.charge_id.clone() });
        let r = self
            .charge_relay_step(local_id, "balance", &format!("{base}/balance"), &r)
            .await
            .map_err(refusal_of_charge)?;
        if r.phase == Phase::Voided {
            let code = r.reason_code;
            let reason = r.reason.clone().unwrap_or_else(|| "voided by the center".into());
            self.set_charge(
                local_id,
                ChargeUpdate { phase: Some(ChargePhase::Voided), reason: Some(&reason), ..Default::default() },
            )
            .await?;
            return Err(match code.and_then(|c| decline_message(c).map(|m| (c, m))) {
                Some((code, message)) => ChargeError::Declined { code, message: message.to_owned() },
                None => ChargeError::Voided(reason),
            });
        }
        let transfers = [kessai_card::protocol::INS_CREDIT, kessai_card::protocol::INS_DEBIT];
        expect_batch("balance", &r, Phase::Offered, false, &transfers)?;
        let offered = self.accept_value_update(local_id, card_id, (direction, amount), &r).await?;
        progress(ChargeProgress::ValueUpdateVerified {
            balance_before: offered.balance_before,
            balance_after: offered.balance_after,
        });
        Ok(offered)
    }

    /// The authenticate step: the card's answer and, for a charge, the
    /// payment card, the only request that carries it. The center asks the
    /// authorizer only once the card's answer proved the card.
    async fn authenticate_update(
        &self,
        local_id: &str,
        base: &str,
        r: &ChargeReply,
        payment: Option<PaymentCardInput>,
    ) -> Result<ChargeReply, ChargeError> {
        let answers = self.card.relay_hex(&r.apdus).await?;
        // The payment card's fields are zeroized when the body is dropped.
        let body = match payment {
            Some(payment) => payment.authenticate(answers),
            None => request::ChargeAuthenticate { responses: answers, ..Default::default() },
        };
        self.charge_post(local_id, "authenticate", &format!("{base}/authenticate"), &body).await
    }

    /// Records why a charge stopped. Once the center may hold a CREDIT
    /// (offered, relayed) the phase stays, for `recover`.
    async fn note_charge_failure(&self, local_id: &str, e: &ChargeError) {
        let current = self.records.charge_by_local_id(local_id).await.ok().flatten().map(|r| r.phase);
        let phase = (current == Some(ChargePhase::Started)).then_some(ChargePhase::Failed);
        let reason = match e {
            ChargeError::Declined { code, .. } => code.to_string(),
            other => other.to_string(),
        };
        let update = ChargeUpdate { phase, reason: Some(&reason), ..Default::default() };
        if let Err(db) = self.records.update_charge(local_id, &update, self.now_s()).await {
            tracing::warn!(error = %db, "recording a failed charge");
        }
        // A charge the center opened but that stopped before its CREDIT
        // existed still holds an authorization: release it.
        if phase == Some(ChargePhase::Failed) && !matches!(e, ChargeError::Declined { .. }) {
            self.cancel_open_charge(local_id).await;
        }
    }

    async fn cancel_open_charge(&self, local_id: &str) {
        let Ok(Some(rec)) = self.records.charge_by_local_id(local_id).await else { return };
        let Some(id) = rec.charge_id else { return };
        if let Err(e) =
            self.charge_post(local_id, "cancel", &format!("/v1/value-updates/{id}/cancel"), &request::Nothing {}).await
        {
            tracing::warn!(charge = %id, error = %e, "cancelling an unfinished charge");
        }
    }

    /// SIG5: verify against the center's keys and tie it to this charge,
    /// the card in the reader, the amount and the sealed CREDIT's exact
    /// bytes; refuse a replay. On refusal, undo through recovery.
    async fn accept_value_update(
        &self,
        local_id: &str,
        card_id: CardId,
        (direction, amount): (Direction, Money),
        r: &ChargeReply,
    ) -> Result<ChargeOffered, ChargeError> {
        let token = r.value_update.clone().unwrap_or_default();
        // The CREDIT (or DEBIT) is last; a LOG COLLECTED may lead it.
        let mut commands: Vec<Vec<u8>> = r.apdus.iter().map(|h| hex::decode(h).unwrap_or_default()).collect();
        let credit = commands.pop().unwrap_or_default();
        let joined = r.apdus.join(" ");
        let update = ChargeUpdate {
            phase: Some(ChargePhase::Offered),
            value_update: Some(&token),
            credit: Some(&joined),
            ..Default::default()
        };
        self.set_charge(local_id, update).await?;
        let expected = ExpectedUpdate { update_id: &r.charge_id, card_id, direction, amount, command: &credit };
        match self.check_value_update(&token, expected).await {
            Ok((balance_before, balance_after)) => {
                let record = self.charge_record(local_id).await?;
                let before = commands;
                Ok(ChargeOffered {
                    record,
                    charge_id: r.charge_id.clone(),
                    before,
                    credit,
                    balance_before,
                    balance_after,
                })
            }
            Err(e) => {
                tracing::warn!(charge = %r.charge_id, error = %e, "value update refused; undoing");
                let reason = e.to_string();
                self.set_charge(local_id, ChargeUpdate { reason: Some(&reason), ..Default::default() }).await?;
                let rec = self.charge_record(local_id).await?;
                let outcome = self.recover_charge_record(&rec).await;
                tracing::info!(charge = %r.charge_id, ?outcome, "refused value update undone");
                Err(e)
            }
        }
    }

    async fn check_value_update(
        &self,
        token: &str,
        expected: ExpectedUpdate<'_>,
    ) -> Result<(Money, Money), ChargeError> {
        let attempt = |keys: kessai_core::keys::KeyDirectory| {
            let mut jti = None;
            let checked = verify_value_update(token, &keys, self.clock.as_ref(), expected, &mut |id| {
                jti = Some(id.to_owned());
                false
            });
            (checked, jti)
        };
        let keys = self.center.keys(false).await.map_err(ChargeError::Keys)?;
        let (mut checked, mut jti) = attempt(keys);
        if matches!(checked, Err(ValueUpdateRefused::Token(kessai_core::jws::JwsError::UnknownKey(_)))) {
            let keys = self.center.keys(true).await.map_err(ChargeError::Keys)?;
            (checked, jti) = attempt(keys);
        }
        let verified = checked.map_err(ChargeError::ValueUpdateRefused)?;
        let jti = jti.unwrap_or_default();
        if !self.records.first_sight_of_value_update(&jti, self.now_s()).await? {
            return Err(ChargeError::ValueUpdateRefused(ValueUpdateRefused::Replayed(jti)));
        }
        let v = verified.message();
        Ok((v.balance_before(), v.balance_after()))
    }

    pub(crate) async fn charge_record(&self, local_id: &str) -> Result<ChargeRecord, ChargeError> {
        self.records.charge_by_local_id(local_id).await?.ok_or_else(|| ChargeError::UnknownCharge(local_id.into()))
    }

    /// Relays exactly the sealed CREDIT SIG5 names and records the card's answer.
    pub async fn relay_credit(&self, offered: ChargeOffered) -> Result<CreditRelayed, ChargeError> {
        let ChargeOffered { record, charge_id, mut before, credit, .. } = offered;
        before.push(credit);
        let _turn = self.conversation.lock().await;
        let answers: Vec<String> = self.card.transmit_all(before).await?.iter().map(hex::encode).collect();
        let joined = answers.join(" ");
        let update = ChargeUpdate {
            phase: Some(ChargePhase::CreditRelayed),
            credit_answer: Some(&joined),
            ..Default::default()
        };
        self.set_charge(&record.local_id, update).await?;
        Ok(CreditRelayed { record, charge_id, answers })
    }

    /// Hands the card's answer to the center, which captures the
    /// authorization and posts the transfer.
    pub async fn complete_charge(&self, relayed: CreditRelayed) -> Result<ChargeOutcome, ChargeError> {
        let CreditRelayed { record, charge_id, answers } = relayed;
        let path = format!("/v1/value-updates/{charge_id}/complete");
        let r = self.charge_post(&record.local_id, "complete", &path, &request::Answers { responses: answers }).await?;
        if r.phase == Phase::Voided && r.reason_code == Some(Reason::FundingRefused) {
            // The card applied the credit, but the credit card payment could
            // not be completed: the center takes the value back from the
            // card at its next use, and the books never showed it.
            let reason = r.reason.clone().unwrap_or_else(|| "the credit card payment was refused".into());
            let update = ChargeUpdate { phase: Some(ChargePhase::Voided), reason: Some(&reason), ..Default::default() };
            self.set_charge(&record.local_id, update).await?;
            return Err(ChargeError::Declined { code: Reason::FundingRefused, message: FUNDING_REFUSED.into() });
        }
        expect("complete", &r, Phase::Completed, 0)?;
        self.record_charge_completed(&record, &r).await
    }

    pub(crate) async fn record_charge_completed(
        &self,
        record: &ChargeRecord,
        r: &ChargeReply,
    ) -> Result<ChargeOutcome, ChargeError> {
        let after = r.balance_after_minor.unwrap_or_default();
        let update = ChargeUpdate {
            phase: Some(ChargePhase::Completed),
            balance_after_minor: Some(after),
            ..Default::default()
        };
        self.set_charge(&record.local_id, update).await?;
        let currency = record.amount.currency();
        Ok(ChargeOutcome {
            charge_id: r.charge_id.clone(),
            card_id: record.card_id,
            amount: record.amount,
            balance_after: Money::new(after, currency).map_err(|e| ChargeError::Setup(e.to_string()))?,
            funding_ref: r.funding_ref.clone().or_else(|| record.funding_ref.clone()).unwrap_or_default(),
            direction: record.direction,
            kind: record.kind,
        })
    }

    /// The whole charge: open and verify, relay, complete.
    pub async fn charge(
        &self,
        amount: Money,
        payment: PaymentCardInput,
        progress: &mut (dyn FnMut(ChargeProgress) + Send),
    ) -> Result<ChargeOutcome, ChargeError> {
        let offered = self.begin_charge(amount, payment, progress).await?;
        let relayed = self.relay_credit(offered).await?;
        progress(ChargeProgress::CreditRelayed);
        let done = self.complete_charge(relayed).await?;
        progress(ChargeProgress::Completed { balance_after: done.balance_after });
        Ok(done)
    }
}

impl Wallet {
    /// `kessai wallet decrease`: value back to the credit card of a charge.
    pub async fn decrease(
        &self,
        charge_id: &str,
        amount: Money,
        progress: &mut (dyn FnMut(ChargeProgress) + Send),
    ) -> Result<ChargeOutcome, ChargeError> {
        let offered = self.begin_decrease(charge_id, amount, progress).await?;
        let relayed = self.relay_credit(offered).await?;
        progress(ChargeProgress::CreditRelayed);
        let done = self.complete_charge(relayed).await?;
        progress(ChargeProgress::Completed { balance_after: done.balance_after });
        Ok(done)
    }

    /// The card is presented: applies what the center owes it (a store's
    /// refund) or it owes (an operator's correction), oldest first, each
    /// through its own secure session with SIG5 checked. An item the center
    /// was already applying in a session that stopped is recovered first.
    pub async fn apply_owed(
        &self,
        progress: &mut (dyn FnMut(ChargeProgress) + Send),
    ) -> Result<Vec<ChargeOutcome>, ChargeError> {
        self.apply_owed_from(None, false, progress).await
    }

    /// [`Wallet::apply_owed`], for a caller that has just read the card
    /// (`read`: its id, active): the card is read again only after an
    /// update changed it. With `credits_only` (a payment in progress, whose
    /// pages show no corrections) only what the card is owed is applied;
    /// what it owes waits for `collect`, which shows each (L4).
    pub(crate) async fn apply_owed_from(
        &self,
        mut read: Option<CardId>,
        credits_only: bool,
        progress: &mut (dyn FnMut(ChargeProgress) + Send),
    ) -> Result<Vec<ChargeOutcome>, ChargeError> {
        let mut applied = Vec::new();
        for _ in 0..MAX_OWED_PER_PRESENTATION {
            let offered = {
                let _turn = self.conversation.lock().await;
                let card_id = match read.take() {
                    Some(id) => id,
                    None => {
                        let card = self.card.summary().await?;
                        if card.blocked {
                            return Err(ChargeError::CardBlocked);
                        }
                        card.card_id
                    }
                };
                let path = format!("/v1/cards/{card_id}/owed/apply");
                let body = request::OwedApply { credits_only };
                let answer: Value = self.center.post(&path, &body, &random_token("w-owed-")).await?;
                if answer.get("nothing_owed").and_then(Value::as_bool) == Some(true) {
                    break;
                }
                let r: ChargeReply = serde_json::from_value(answer)
                    .map_err(|e| ChargeError::Center(CenterError::BadReply(e.to_string())))?;
                let (direction, amount) = (r.direction, r.amount);
                let local_id = match self.records.charge_by_center_id(&r.charge_id).await? {
                    Some(rec) => rec.local_id,
                    None => {
                        let local_id = random_token("own_");
                        let kind = (UpdateKind::Owed, direction);
                        self.records.insert_charge(&local_id, card_id, kind, amount, self.now_s()).await?;
                        let update = ChargeUpdate { charge_id: Some(&r.charge_id), ..Default::default() };
                        self.set_charge(&local_id, update).await?;
                        local_id
                    }
                };
                if r.phase != Phase::Authenticating {
                    // A session that stopped after its command was sealed:
                    // the card says what happened; then the next round.
                    let rec = self.charge_record(&local_id).await?;
                    let outcome = self.recover_charge_record(&rec).await;
                    tracing::info!(update = %r.charge_id, ?outcome, "an interrupted owed update recovered");
                    if matches!(outcome, Outcome::Failed { .. } | Outcome::NeedsAudit | Outcome::WrongCard { .. }) {
                        return Err(ChargeError::Voided(format!(
                            "an earlier update could not be finished: {outcome:?}"
                        )));
                    }
                    continue;
                }
                let opening = Opening::Opened(Box::new(r));
                let result = self.open_update(&local_id, card_id, (direction, amount), opening, progress).await;
                if let Err(e) = &result {
                    self.note_charge_failure(&local_id, e).await;
                }
                match result {
                    Ok(offered) => offered,
                    // Voided at the balance step (a correction over the
                    // balance): still owed; the next one cannot go first.
                    Err(ChargeError::Declined { .. } | ChargeError::Voided(_)) => break,
                    Err(e) => return Err(e),
                }
            };
            let relayed = self.relay_credit(offered).await?;
            progress(ChargeProgress::CreditRelayed);
            let done = self.complete_charge(relayed).await?;
            progress(ChargeProgress::Completed { balance_after: done.balance_after });
            applied.push(done);
        }
        Ok(applied)
    }
}

fn refusal_of_charge(e: ChargeError) -> ChargeError {
    match e {
        ChargeError::Center(c) => refusal_of(c),
        other => other,
    }
}
