//! Finishing charges that did not end (a crash, a lost answer, a refused
//! SIG5): ask the center what it knows; otherwise a new secure session in
//! which the card says whether it applied the CREDIT. Completed exactly
//! once, or voided only when the card proves it never applied it.

use kessai_api::{ErrorCode, Phase, request};

use crate::center::ChargeReply;
use crate::charge::{ChargeError, ChargeOutcome};
use crate::charge_records::{ChargePhase, ChargeRecord, ChargeUpdate};
use crate::limits::MAX_RECOVERIES_PER_RUN;
use crate::wallet::{Outcome, Wallet};

impl Wallet {
    /// Recovery for every recorded charge that did not end; each outcome
    /// recorded. Returns `(charge id, outcome)` pairs.
    pub async fn recover_charges(&self) -> Result<Vec<(String, Outcome)>, ChargeError> {
        let _turn = self.conversation.lock().await;
        let mut outcomes = Vec::new();
        for rec in self.records.charges_needing_recovery(MAX_RECOVERIES_PER_RUN).await? {
            let Some(id) = rec.charge_id.clone() else { continue };
            let outcome = self.recover_charge_record(&rec).await;
            outcomes.push((id, outcome));
        }
        Ok(outcomes)
    }

    /// The recovery flow for one charge. The caller holds the conversation.
    pub(crate) async fn recover_charge_record(&self, rec: &ChargeRecord) -> Outcome {
        match self.try_recover_charge(rec).await {
            Ok(outcome) => outcome,
            Err(ChargeError::Center(e)) if e.code() == Some(ErrorCode::NeedsAudit) => Outcome::NeedsAudit,
            Err(e) => {
                tracing::warn!(charge = %rec.local_id, error = %e, "charge recovery did not finish");
                Outcome::Failed { reason: e.to_string() }
            }
        }
    }

    async fn try_recover_charge(&self, rec: &ChargeRecord) -> Result<Outcome, ChargeError> {
        let id = rec.charge_id.clone().ok_or_else(|| ChargeError::UnknownCharge(rec.local_id.clone()))?;
        let now = self.center.charge(&id).await?;
        match now.phase.as_str() {
            "completed" => return self.record_completed_outcome(rec, &now).await,
            "voided" => return self.record_charge_void(rec, now.reason.as_deref()).await,
            // No CREDIT exists yet: cancelling releases the authorization.
            "authenticating" | "reading_balance" => {
                let r = self.post_charge_step(rec, "cancel", &format!("/v1/value-updates/{id}/cancel")).await?;
                return self.record_charge_void(rec, r.reason.as_deref()).await;
            }
            _ => {}
        }
        let card = self.card.summary().await?;
        if card.card_id != rec.card_id {
            return Ok(Outcome::WrongCard { expected: rec.card_id });
        }
        let run = self.records.charge_recovery_runs(&rec.local_id).await? + 1;
        let base = format!("/v1/value-updates/{id}");
        let r = self.post_charge_step(rec, &format!("recover#{run}"), &format!("{base}/recover")).await?;
        let r = self
            .relay_charge_step(rec, &format!("recover/authenticate#{run}"), &format!("{base}/recover/authenticate"), &r)
            .await?;
        let r = self
            .relay_charge_step(rec, &format!("recover/status#{run}"), &format!("{base}/recover/status"), &r)
            .await?;
        if r.phase == Phase::Completed {
            return self.record_completed_outcome(rec, &r).await;
        }
        let r = self
            .relay_charge_step(rec, &format!("recover/balance#{run}"), &format!("{base}/recover/balance"), &r)
            .await?;
        if r.phase != Phase::Voided {
            return Err(ChargeError::UnexpectedReply { step: "recover/balance", phase: r.phase, apdus: r.apdus.len() });
        }
        self.record_charge_void(rec, r.reason.as_deref()).await
    }

    async fn post_charge_step(&self, rec: &ChargeRecord, step: &str, path: &str) -> Result<ChargeReply, ChargeError> {
        let key =
            self.records.charge_step_key(&rec.local_id, step, &crate::wallet::random_token("w-"), self.now_s()).await?;
        Ok(self.center.post(path, &request::Nothing {}, &key).await?)
    }

    async fn relay_charge_step(
        &self,
        rec: &ChargeRecord,
        step: &str,
        path: &str,
        reply: &ChargeReply,
    ) -> Result<ChargeReply, ChargeError> {
        let answers = self.card.relay_hex(&reply.apdus).await?;
        let key =
            self.records.charge_step_key(&rec.local_id, step, &crate::wallet::random_token("w-"), self.now_s()).await?;
        Ok(self.center.post(path, &request::Answers { responses: answers }, &key).await?)
    }

    async fn record_completed_outcome(&self, rec: &ChargeRecord, r: &ChargeReply) -> Result<Outcome, ChargeError> {
        let _: ChargeOutcome = self.record_charge_completed(rec, r).await?;
        Ok(Outcome::Completed)
    }

    async fn record_charge_void(&self, rec: &ChargeRecord, reason: Option<&str>) -> Result<Outcome, ChargeError> {
        let reason = reason.unwrap_or("voided by the center").to_owned();
        let local = match &rec.reason {
            Some(why) => format!("{reason} ({why})"),
            None => reason.clone(),
        };
        let update = ChargeUpdate { phase: Some(ChargePhase::Voided), reason: Some(&local), ..Default::default() };
        self.records.update_charge(&rec.local_id, &update, self.now_s()).await?;
        Ok(Outcome::Voided { reason })
    }
}
