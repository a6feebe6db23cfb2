//! Paying a store's bill with a bank deposit token on the card (#21, seed
//! 002; PROTOCOL §13.6) instead of its balance: the settlement is opened
//! as any purchase, the token is chosen for it, and the token's
//! redemption, proven by the card, completes it (SIG3). What the token
//! held beyond the bill is owed to the card, and taken while the card is
//! still in the reader.

use kessai_api::{Phase, request};
use kessai_core::profile::Profile;

use crate::checks::HandedBill;
use crate::records::{LocalPhase, Record, Update};
use crate::wallet::{Completed, PayError, Progress, Wallet, expect, handed};

impl Wallet {
    /// Pays the bill the store's page handed over (`bill_token`, to return
    /// to `return_url`) with deposit token `token` on the card in the
    /// reader, as `member` if given (its number and the key its passwords
    /// opened: a member's card pays on its instruction). The cardholder's
    /// consent is the choice of the token: the caller asks it (the bill as
    /// [`Wallet::review`] shows it, and the token) before calling. SIG3 is
    /// checked against the bill.
    pub async fn pay_by_token(
        &self,
        bill_token: &str,
        return_url: &str,
        token: &str,
        member: Option<&(kessai_core::ids::PartyId, kessai_core::keys::SigningKey)>,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Completed, PayError> {
        let bill = self.for_this_center(handed(bill_token, return_url)?)?;
        let turn = self.conversation.lock().await;
        let card = self.card.summary().await?;
        progress(Progress::CardRead(card));
        if card.blocked {
            return Err(PayError::CardBlocked);
        }
        let rec = self.start_record(&bill, return_url, card.card_id).await?;
        let chosen = self.choose_token(&rec, &bill, token, member, progress).await;
        drop(turn);
        let paid = match chosen {
            Ok(rec) => self.redeem_for(rec, token).await,
            Err(e) => Err(e),
        };
        let completed = match paid {
            Ok(completed) => completed,
            Err(e) => {
                self.note_failure(&rec.payment_id, &e).await;
                return Err(e);
            }
        };
        progress(Progress::Completed);
        // The change, owed to the card, is taken while it is here; if that
        // fails it stays owed for the card's next presentation.
        if let Err(e) = self.apply_owed_from(Some(card.card_id), true, &mut |_| {}).await {
            tracing::warn!(error = %e, "taking what the token held beyond the bill");
        }
        Ok(completed)
    }

    /// Opens the settlement (the `offer` profile: nothing of the purchase
    /// sealed yet) and chooses the token for it.
    async fn choose_token(
        &self,
        rec: &Record,
        bill: &HandedBill,
        token: &str,
        member: Option<&(kessai_core::ids::PartyId, kessai_core::keys::SigningKey)>,
        progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<Record, PayError> {
        let (r, sid) = self.open_settlement(rec, bill, Profile::Offer, None, None).await?;
        progress(Progress::SettlementOpened(sid.clone()));
        if r.phase == Phase::Voided {
            return Err(PayError::Voided(r.reason.unwrap_or_else(|| "voided by the center".into())));
        }
        let rec = Record { settlement_id: Some(sid.clone()), ..rec.clone() };
        // A member's card pays on the member's instruction, as with its
        // balance (#12).
        let instruction = self.instruction(member, bill, rec.card_id)?;
        let body = request::PayByToken { token_id: token.to_owned(), instruction };
        // Recorded before it is asked: once the center takes the choice the
        // token's redemption pays this bill, its answer lost or not, and
        // `recover` finishes it (only if the center took it).
        let chosen = Update { phase: Some(LocalPhase::TokenChosen), token_id: Some(token), ..Update::default() };
        self.set(&rec.payment_id, chosen).await?;
        let rec = Record { phase: LocalPhase::TokenChosen, token_id: Some(token.to_owned()), ..rec };
        let r = match self.post(&rec, "token", &format!("/v1/settlements/{sid}/token"), &body).await {
            // Refused (4xx): the choice did not land; nothing to recover.
            Err(PayError::Center(e @ crate::center::CenterError::Refused { status: 400..=499, .. })) => {
                let why = e.to_string();
                let failed = Update { phase: Some(LocalPhase::Failed), reason: Some(&why), ..Update::default() };
                self.set(&rec.payment_id, failed).await?;
                return Err(PayError::Center(e));
            }
            other => other?,
        };
        expect("token", &r, Phase::PayingByToken, 0)?;
        Ok(rec)
    }

    /// Redeems the token through a token session: its redemption must name
    /// this settlement; then SIG3, checked against the bill.
    async fn redeem_for(&self, rec: Record, token: &str) -> Result<Completed, PayError> {
        let sid = rec.settlement_id.clone().ok_or_else(|| PayError::UnknownSettlement(rec.payment_id.clone()))?;
        let asked = request::TokenSessionCreate { redeem: Some(token.to_owned()), list: false };
        // From here the REDEEM may reach the card: a failure is not "nothing
        // happened".
        let unfinished = |why: String| PayError::TokenUnfinished { token: token.to_owned(), why };
        let done = self.token_session(&asked).await.map_err(|e| unfinished(e.to_string()))?;
        let paid = done.redeemed.as_ref().and_then(|r| r.settlement_id.as_deref());
        if paid != Some(sid.as_str()) {
            let why = match (&done.redeemed, done.refused.first()) {
                (Some(_), _) => {
                    "the token was redeemed, but the settlement had ended: its value is owed to the card".to_owned()
                }
                (None, Some(refused)) => format!("the token was not redeemed: {}", refused.reason),
                (None, None) => "the token was not redeemed".to_owned(),
            };
            return Err(PayError::Voided(why));
        }
        let settlement = self.center.settlement(sid.as_str()).await.map_err(|e| unfinished(e.to_string()))?;
        let completion = settlement["completion"].as_str().unwrap_or_default().to_owned();
        self.accept_completion(&rec, &completion).await
    }

    /// Recovery of a purchase whose token was chosen (the caller holds the
    /// conversation with the card, and the center's settlement still waits
    /// for the token): the token's redemption is asked again, as the card
    /// and the center's record of it now stand, then the settlement read
    /// again. Completed: SIG3 checked and kept; ended meanwhile: voided (the
    /// token's value, if the card gave it up, is owed to the card).
    pub(crate) async fn recover_token_purchase(
        &self,
        rec: &Record,
        sid: &kessai_core::ids::SettlementId,
    ) -> Result<Option<crate::wallet::Outcome>, PayError> {
        let token = rec.token_id.clone().ok_or_else(|| PayError::UnknownSettlement(rec.payment_id.clone()))?;
        // Only a choice the center took is redeemed: a token not chosen
        // (the choice's answer lost before it landed) stays on the card,
        // and the settlement ends unpaid.
        let settlement = self.center.settlement(sid.as_str()).await?;
        if settlement["phase"].as_str() != Some(Phase::PayingByToken.as_str()) {
            return Ok(None);
        }
        let asked = request::TokenSessionCreate { redeem: Some(token.clone()), list: false };
        let done = self.token_session_held(&asked).await?;
        if let Some(refused) = done.refused.first() {
            tracing::warn!(payment = %rec.payment_id, token = %token, why = %refused.reason, "the token's redemption was refused again");
        }
        self.known_end(rec, sid).await
    }
}
