//! After consent (ST16–ST18, ST20): relay the DEBIT, complete, check SIG3,
//! fetch and check SIG4; and the ways back: cancel and recovery.

use std::sync::Arc;
use std::time::Duration;

use kessai_api::{ErrorCode, Phase, request};
use kessai_core::ids::{PartyId, SettlementId};
use kessai_core::messages::completion::Completion;
use kessai_core::messages::receipt::{self, DeliveryKind, Receipt};
use kessai_core::time::{Clock, FixedClock, Timestamp};

use crate::center::VerifyError;
use crate::checks::{self, HandedBill};
use crate::limits::{MAX_RECOVERIES_PER_RUN, RECEIPT_POLL_INTERVAL_MS, RECEIPT_POLLS};
use crate::records::{LocalPhase, Record, Update};
use crate::wallet::{
    Completed, DebitRelayed, Offered, Outcome, PayError, Progress, ReceiptView, Wallet, expect, expect_batch,
    stored_offer,
};

impl Wallet {
    /// ST16: relays exactly the sealed DEBIT SIG2 names (checked again by
    /// hash), or in the second embodiment the sealed commands the center
    /// answered the create with, and records the card's answers.
    pub async fn relay_debit(&self, offered: Offered) -> Result<DebitRelayed, PayError> {
        let Offered { record, bill, settlement_id, offer, commands, .. } = offered;
        // Only what the center's batch may hold rides along with the DEBIT
        // (checked again here: the commands come from the records).
        let commands_hex: Vec<String> = commands.iter().map(hex::encode).collect();
        if !crate::wallet::batch_fits(&commands_hex, offer.is_none(), &[kessai_card::protocol::INS_DEBIT]) {
            return Err(PayError::UnexpectedReply {
                step: "offered",
                phase: Phase::Offered,
                apdus: commands_hex.len(),
            });
        }
        if let Some(offer) = &offer {
            let debit = commands.last().map(Vec::as_slice).unwrap_or_default();
            checks::check_offer(offer, settlement_id.as_str(), &bill, record.card_id, debit)
                .map_err(PayError::OfferMismatch)?;
        }
        let _turn = self.conversation.lock().await;
        let answers = self.card.transmit_all(commands).await?;
        let answers: Vec<String> = answers.iter().map(hex::encode).collect();
        let joined = answers.join(" ");
        let update = Update { phase: Some(LocalPhase::DebitRelayed), debit_answer: Some(&joined), ..Update::default() };
        self.set(&record.payment_id, update).await?;
        Ok(DebitRelayed { record, settlement_id, answers })
    }

    /// ST17–ST18: hands the card's answers to the center; checks SIG3.
    pub async fn complete(&self, relayed: DebitRelayed) -> Result<Completed, PayError> {
        let DebitRelayed { record, settlement_id, answers } = relayed;
        let path = format!("/v1/settlements/{settlement_id}/complete");
        let r = self.post(&record, "complete", &path, &request::Answers { responses: answers }).await?;
        expect("complete", &r, Phase::Completed, 0)?;
        self.accept_completion(&record, r.completion.as_deref().unwrap_or_default()).await
    }

    /// Consent given: relay, then complete.
    pub async fn consent(&self, offered: Offered, token: &str) -> Result<Completed, PayError> {
        if !crate::wallet::same_token(token, &offered.record.consent_token) {
            return Err(PayError::BadConsentToken);
        }
        let relayed = self.relay_debit(offered).await?;
        self.complete(relayed).await
    }

    /// SIG3 verified and tied to the offer the cardholder agreed to, or
    /// (second embodiment, no offer) to the bill and the settlement.
    pub(crate) async fn accept_completion(&self, rec: &Record, token: &str) -> Result<Completed, PayError> {
        let verified = self
            .center
            .verify::<Completion>(token, self.clock.as_ref())
            .await
            .map_err(PayError::CompletionUnverified)?;
        let matched = match (&rec.offer, &rec.settlement_id) {
            (Some(_), _) => checks::check_completion(&verified, &stored_offer(rec.offer.as_deref())?),
            (None, Some(sid)) => checks::check_bill_completion(&verified, sid.as_str(), &HandedBill::parse(&rec.bill)?),
            (None, None) => return Err(PayError::UnknownSettlement(rec.payment_id.clone())),
        };
        matched.map_err(PayError::CompletionMismatch)?;
        let update = Update { phase: Some(LocalPhase::Completed), completion: Some(token), ..Update::default() };
        self.set(&rec.payment_id, update).await?;
        let c = verified.message();
        Ok(Completed {
            settlement_id: c.settlement_id().clone(),
            amount: c.amount(),
            card_counter: c.card_counter(),
            return_url: rec.return_url.clone(),
        })
    }

    /// One look for SIG4: verified against the store's keys (from the
    /// origin of `return_url`, owner = the bill's issuer) and recorded.
    pub async fn poll_receipt(&self, settlement_id: &str) -> Result<Option<ReceiptView>, PayError> {
        let rec = self.record(settlement_id).await?;
        let completion = match (&rec.completion, rec.phase) {
            (Some(c), LocalPhase::Completed | LocalPhase::Receipted) => c.clone(),
            _ => return Err(PayError::WrongPhase { expected: "completed", found: rec.phase }),
        };
        // A receipt recorded before is checked as of when it was recorded
        // (M7): a historical proof stays valid after its `exp`.
        let (token, as_of): (String, Arc<dyn Clock>) = match rec.receipt.clone() {
            Some(t) => (t, Arc::new(FixedClock::new(Timestamp::from_unix_s(rec.updated_at.max(0).unsigned_abs())))),
            None => match self.center.receipt(settlement_id).await? {
                Some(t) => (t, Arc::clone(&self.clock)),
                None => return Ok(None),
            },
        };
        let bill = HandedBill::parse(&rec.bill)?;
        let verified = self.verify_receipt(&bill, &token, as_of.as_ref()).await?;
        let sid = SettlementId::parse(settlement_id).map_err(|e| PayError::UnknownSettlement(e.to_string()))?;
        checks::check_receipt(&verified, &sid, &completion, &bill).map_err(PayError::ReceiptMismatch)?;
        if rec.phase != LocalPhase::Receipted {
            let update = Update { phase: Some(LocalPhase::Receipted), receipt: Some(&token), ..Update::default() };
            self.set(&rec.payment_id, update).await?;
        }
        let r = verified.message();
        Ok(Some(ReceiptView {
            settlement_id: sid,
            order_id: r.order_id().to_string(),
            delivery: match r.delivery().kind {
                DeliveryKind::Download => "download",
                DeliveryKind::Shipment => "shipment",
                _ => "none",
            }
            .to_owned(),
            reference: r.delivery().reference.as_ref().map(|x| x.as_str().to_owned()),
            return_url: rec.return_url.clone(),
        }))
    }

    /// SIG4 against the keys the center vouches for the bill's issuer (M3):
    /// registered there by the operator and not revoked, never what the
    /// store's web host (or one posing as it) serves.
    async fn verify_receipt(
        &self,
        bill: &HandedBill,
        token: &str,
        clock: &dyn Clock,
    ) -> Result<kessai_core::jws::Verified<Receipt>, PayError> {
        let owner: &PartyId = bill.issuer();
        let keys =
            self.center.store_keys(owner).await.map_err(|e| PayError::ReceiptUnverified(VerifyError::Keys(e)))?;
        receipt::verify(token, &keys, clock).map_err(|e| PayError::ReceiptUnverified(VerifyError::Signature(e)))
    }

    /// Polls for SIG4 a bounded number of times.
    pub async fn wait_receipt(&self, settlement_id: &str) -> Result<ReceiptView, PayError> {
        for _ in 0..RECEIPT_POLLS {
            if let Some(view) = self.poll_receipt(settlement_id).await? {
                return Ok(view);
            }
            tokio::time::sleep(Duration::from_millis(RECEIPT_POLL_INTERVAL_MS)).await;
        }
        Err(PayError::ReceiptNotYet)
    }

    /// Cancel at consent. The sealed DEBIT already exists, so the center
    /// voids only after the card, in a new session, proves it never
    /// applied it (the recovery flow); the card is untouched.
    pub async fn cancel(&self, settlement_id: &str, token: &str) -> Result<Outcome, PayError> {
        let rec = self.record(settlement_id).await?;
        if !crate::wallet::same_token(token, &rec.consent_token) {
            return Err(PayError::BadConsentToken);
        }
        if rec.phase != LocalPhase::Offered {
            return Err(PayError::WrongPhase { expected: "offered", found: rec.phase });
        }
        let _turn = self.conversation.lock().await;
        Ok(self.recover_record(&rec).await)
    }

    /// Runs recovery for every recorded settlement whose DEBIT may be
    /// outstanding, and records each outcome.
    pub async fn recover_all(
        &self,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Vec<(SettlementId, Outcome)>, PayError> {
        let _turn = self.conversation.lock().await;
        let mut outcomes = Vec::new();
        for rec in self.records.needing_recovery(MAX_RECOVERIES_PER_RUN).await? {
            let Some(sid) = rec.settlement_id.clone() else { continue };
            progress(Progress::Recovering(sid.clone()));
            let outcome = self.recover_record(&rec).await;
            outcomes.push((sid, outcome));
        }
        Ok(outcomes)
    }

    /// The recovery flow for one settlement, with its outcome recorded.
    /// The caller holds the conversation with the card.
    pub(crate) async fn recover_record(&self, rec: &Record) -> Outcome {
        match self.try_recover(rec).await {
            Ok(outcome) => outcome,
            Err(PayError::Center(e)) if e.code() == Some(ErrorCode::NeedsAudit) => Outcome::NeedsAudit,
            Err(e) => {
                tracing::warn!(payment = %rec.payment_id, error = %e, "recovery did not finish");
                Outcome::Failed { reason: e.to_string() }
            }
        }
    }

    async fn try_recover(&self, rec: &Record) -> Result<Outcome, PayError> {
        let sid = rec.settlement_id.clone().ok_or_else(|| PayError::UnknownSettlement(rec.payment_id.clone()))?;
        if let Some(outcome) = self.known_end(rec, &sid).await? {
            return Ok(outcome);
        }
        let card = self.card.summary().await?;
        if card.card_id != rec.card_id {
            return Ok(Outcome::WrongCard { expected: rec.card_id });
        }
        if rec.phase == LocalPhase::TokenChosen {
            return match self.recover_token_purchase(rec, &sid).await? {
                Some(outcome) => Ok(outcome),
                None => Ok(Outcome::Failed { reason: "the settlement still waits for its token's redemption".into() }),
            };
        }
        let run = self.records.recovery_runs(&rec.payment_id).await? + 1;
        let base = format!("/v1/settlements/{sid}");
        let r = self.post(rec, &format!("recover#{run}"), &format!("{base}/recover"), &request::Nothing {}).await?;
        expect("recover", &r, Phase::Recovering, 1)?;
        let step = format!("recover/authenticate#{run}");
        let r = self.relay_step(rec, &step, &format!("{base}/recover/authenticate"), &r).await?;
        expect_batch(
            "recover/authenticate",
            &r,
            Phase::RecoveringStatus,
            true,
            kessai_card::protocol::INS_TRANSACTION_STATUS,
        )?;
        let step = format!("recover/status#{run}");
        let r = self.relay_step(rec, &step, &format!("{base}/recover/status"), &r).await?;
        if r.phase == Phase::Completed {
            self.accept_completion(rec, r.completion.as_deref().unwrap_or_default()).await?;
            return Ok(Outcome::Completed);
        }
        expect("recover/status", &r, Phase::RecoveringBalance, 1)?;
        let step = format!("recover/balance#{run}");
        let r = self.relay_step(rec, &step, &format!("{base}/recover/balance"), &r).await?;
        expect("recover/balance", &r, Phase::Voided, 0)?;
        self.record_void(rec, r.reason.as_deref()).await
    }

    /// What the center already settled (a crash after it answered).
    pub(crate) async fn known_end(&self, rec: &Record, sid: &SettlementId) -> Result<Option<Outcome>, PayError> {
        let s = self.center.settlement(sid.as_str()).await?;
        match s["phase"].as_str() {
            Some("completed") => {
                self.accept_completion(rec, s["completion"].as_str().unwrap_or_default()).await?;
                Ok(Some(Outcome::Completed))
            }
            Some("voided") => self.record_void(rec, s["reason"].as_str()).await.map(Some),
            _ => Ok(None),
        }
    }

    async fn record_void(&self, rec: &Record, reason: Option<&str>) -> Result<Outcome, PayError> {
        let reason = reason.unwrap_or("voided by the center").to_owned();
        let local = match &rec.reason {
            Some(why) => format!("{reason} ({why})"),
            None => reason.clone(),
        };
        let update = Update { phase: Some(LocalPhase::Voided), reason: Some(&local), ..Update::default() };
        self.set(&rec.payment_id, update).await?;
        Ok(Outcome::Voided { reason })
    }
}
