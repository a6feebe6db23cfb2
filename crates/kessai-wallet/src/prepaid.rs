//! The member's virtual prepaid cards (#18, seed 003/004 FIG. 5–7 and
//! 12–15), as the wallet asks for them: every request signed with the
//! member's key (passwords A and B), so only the member opens, funds,
//! inquires of or pays from its cards.
//!
//! A payment needs no IC card: the wallet signs the member's payment
//! instruction naming the prepaid card, the center answers the completion
//! (SIG3) and the new balance, and the wallet checks SIG3 against the bill
//! before it believes either, then the store's receipt (SIG4) as for a card
//! payment.

use kessai_api::request;
use kessai_core::Money;
use kessai_core::digest::Sha256Digest;
use kessai_core::ids::{MessageId, PartyId, PrepaidId, RequestId};
use kessai_core::jws::Claims;
use kessai_core::keys::SigningKey;
use kessai_core::messages::completion::Completion;
use kessai_core::messages::instruction::{self, InstructionDraft, PaymentInstruction};
use kessai_core::messages::prepaid::{self, FundingMethod, PrepaidAction, PrepaidRequest, PrepaidRequestDraft};
use kessai_core::messages::receipt;
use kessai_core::random::{OsRandom, Random as _};
use serde::Deserialize;
use serde_json::Value;

use crate::center::VerifyError;
use crate::charge::PaymentCardInput;
use crate::checks::{self, HandedBill};
use crate::limits::{RECEIPT_POLL_INTERVAL_MS, RECEIPT_POLLS};
use crate::wallet::{PayError, Wallet, handed};

/// The member's prepaid card ids, one a line, next to the keystore.
pub const CARDS_FILE: &str = "prepaid-cards";

/// How long a prepaid request or instruction is good for: it is sent
/// within seconds of signing.
const REQUEST_LIFETIME_S: u64 = 300;

pub use kessai_api::views::{Funding, PaymentLine, PrepaidCard};

#[derive(Deserialize)]
struct Inquiry {
    cards: Vec<PrepaidCard>,
}

#[derive(Deserialize)]
struct PaymentAnswer {
    settlement_id: String,
    prepaid_id: String,
    completion: String,
    balance: Money,
}

/// A payment from a prepaid card, its completion (SIG3) checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepaidPaid {
    pub settlement_id: String,
    pub prepaid_id: String,
    pub amount: Money,
    /// The card's new balance (新残高), as the center answered it with SIG3.
    pub balance: Money,
    pub completion: String,
    pub store_name: String,
    pub order_id: String,
}

/// The signing member: its number and key (opened by passwords A and B).
pub type Signer = (PartyId, SigningKey);

/// The claims of a member's request to the center `center` (its audience).
fn claims(member: &PartyId, center: &PartyId, now: kessai_core::time::Timestamp) -> Result<Claims, PayError> {
    Claims::for_lifetime(member.clone(), MessageId::generate(&mut OsRandom), now, REQUEST_LIFETIME_S)
        .map(|c| c.with_audience(center.clone()))
        .map_err(|e| PayError::HandOff(format!("signing: {e}")))
}

/// A fresh request id (the center knows a request signed again by it).
pub fn new_request_id() -> RequestId {
    let mut bytes = [0u8; 16];
    OsRandom.fill_bytes(&mut bytes);
    // 32 hex digits: always a valid id.
    RequestId::parse(&format!("req_{}", hex::encode(bytes))).unwrap_or_else(|_| unreachable!("hex is a valid id"))
}

impl Wallet {
    /// Sends a signed prepaid request; `card` (credit only) goes beside it.
    async fn prepaid_post(
        &self,
        signer: &Signer,
        draft: PrepaidRequestDraft,
        card: Option<&PaymentCardInput>,
    ) -> Result<Value, PayError> {
        let (member, key) = signer;
        let body = PrepaidRequest::new(draft).map_err(|e| PayError::HandOff(e.to_string()))?;
        let request_id = body.request_id().clone();
        let token = prepaid::sign(&claims(member, &self.config.center.party_id, self.clock.now())?, &body, key)
            .map_err(|e| PayError::HandOff(format!("signing the prepaid request: {e}")))?;
        let body = match card {
            Some(card) => card.prepaid(token),
            None => request::SubmitPrepaidRequest { request: token, card_number: None, expiry: None, cvc: None },
        };
        // The request id is the request: a retry under the same key (or,
        // after a crash, the same request signed again) is the same one.
        let key = format!("prepaid-{member}-{request_id}");
        Ok(self.center.post::<Value, _>("/v1/prepaid/requests", &body, &key).await?)
    }

    /// Funds the member's card `account` with `amount` more by `method`
    /// (`card`: the credit card, for `credit`), or with `account` `None`
    /// opens a new card funded so. A transfer or cash answers the
    /// reference to quote and where to send the money.
    pub async fn prepaid_fund(
        &self,
        signer: &Signer,
        request_id: RequestId,
        account: Option<PrepaidId>,
        amount: Money,
        method: FundingMethod,
        card: Option<&PaymentCardInput>,
    ) -> Result<Funding, PayError> {
        let opening = account.is_none();
        let action = if opening { PrepaidAction::Open } else { PrepaidAction::Fund };
        let draft = PrepaidRequestDraft {
            member: signer.0.clone(),
            request_id,
            action,
            account,
            amount: Some(amount),
            method: Some(method),
            card_id: None,
            token: None,
        };
        let f = funding(self.prepaid_post(signer, draft, card).await?)?;
        if opening && f.status != kessai_api::views::FundingStatus::Declined {
            self.remember_prepaid_card(&f.prepaid_id)?;
        }
        Ok(f)
    }

    /// Asks for a bank deposit token (seed 002) of `amount` for the
    /// member's IC card `card_id`: the answer is the reference the bank
    /// transfer to the pool account must quote. `terms` name where an
    /// unredeemed token's value goes back and the member's credit card
    /// (its last four digits or a network token, never its number).
    pub async fn deposit_token(
        &self,
        signer: &Signer,
        request_id: RequestId,
        card_id: kessai_core::ids::CardId,
        amount: Money,
        terms: kessai_core::messages::prepaid::TokenTerms,
    ) -> Result<kessai_api::views::DepositToken, PayError> {
        let draft = PrepaidRequestDraft {
            member: signer.0.clone(),
            request_id,
            action: PrepaidAction::DepositToken,
            account: None,
            amount: Some(amount),
            method: Some(FundingMethod::BankTransfer),
            card_id: Some(card_id),
            token: Some(terms),
        };
        let answer = self.prepaid_post(signer, draft, None).await?;
        serde_json::from_value(answer).map_err(|e| PayError::HandOff(format!("the center's token: {e}")))
    }

    /// The member's prepaid cards this wallet opened (or saw in an
    /// inquiry), as kept next to the keystore ([`CARDS_FILE`]): what its
    /// pages offer to pay from. Ids only; their value is the center's.
    pub fn known_prepaid_cards(&self) -> Vec<PrepaidId> {
        let text = std::fs::read_to_string(self.config.data_dir.join(CARDS_FILE)).unwrap_or_default();
        text.lines().filter_map(|l| PrepaidId::parse(l.trim()).ok()).collect()
    }

    /// Adds `id` to [`CARDS_FILE`]: written whole to a new file, synced,
    /// renamed over the old one.
    fn remember_prepaid_card(&self, id: &str) -> Result<(), PayError> {
        let id = PrepaidId::parse(id).map_err(|e| PayError::HandOff(format!("the center's card id: {e}")))?;
        let mut known = self.known_prepaid_cards();
        if known.contains(&id) {
            return Ok(());
        }
        known.push(id);
        let text: String = known.iter().map(|c| format!("{c}\n")).collect();
        let path = self.config.data_dir.join(CARDS_FILE);
        let new = path.with_extension("new");
        let write = || -> std::io::Result<()> {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&new)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&new, &path)?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| PayError::Setup(format!("keeping the prepaid card's id in {}: {e}", path.display())))
    }

    /// The member's prepaid cards (or one), with balance and history.
    pub async fn prepaid_cards(
        &self,
        signer: &Signer,
        account: Option<PrepaidId>,
    ) -> Result<Vec<PrepaidCard>, PayError> {
        let draft = PrepaidRequestDraft {
            member: signer.0.clone(),
            request_id: new_request_id(),
            action: PrepaidAction::Inquire,
            account,
            amount: None,
            method: None,
            card_id: None,
            token: None,
        };
        let answer = self.prepaid_post(signer, draft, None).await?;
        let inquiry: Inquiry =
            serde_json::from_value(answer).map_err(|e| PayError::HandOff(format!("the center's answer: {e}")))?;
        for c in &inquiry.cards {
            self.remember_prepaid_card(&c.prepaid_id)?;
        }
        Ok(inquiry.cards)
    }

    /// Pays `bill_token` (handed over with `return_url`) from the member's
    /// prepaid card `account`: the member's instruction signed, the
    /// center's completion (SIG3) checked against the bill.
    pub async fn pay_prepaid(
        &self,
        signer: &Signer,
        bill_token: &str,
        return_url: &str,
        account: &PrepaidId,
    ) -> Result<PrepaidPaid, PayError> {
        let bill = self.for_this_center(handed(bill_token, return_url)?)?;
        let (member, key) = signer;
        let draft = InstructionDraft {
            member: member.clone(),
            card_id: None,
            prepaid_id: Some(account.clone()),
            bill_hash: bill.hash(),
            amount: bill.bill().total(),
            store: bill.bill().store().clone(),
        };
        let body = PaymentInstruction::new(draft).map_err(|e| PayError::HandOff(e.to_string()))?;
        let token = instruction::sign(&claims(member, &self.config.center.party_id, self.clock.now())?, &body, key)
            .map_err(|e| PayError::HandOff(format!("signing the payment instruction: {e}")))?;
        // One bill from one card: the same key for every attempt, so a lost
        // answer is answered again, never paid again.
        let key = prepaid_payment_key(&bill, account);
        let answer: PaymentAnswer = self
            .center
            .post(
                "/v1/prepaid/payments",
                &request::PrepaidPay { bill: bill.token().to_owned(), instruction: token },
                &key,
            )
            .await?;
        let verified = self
            .center
            .verify::<Completion>(&answer.completion, self.clock.as_ref())
            .await
            .map_err(PayError::CompletionUnverified)?;
        checks::check_bill_completion(&verified, &answer.settlement_id, &bill).map_err(PayError::CompletionMismatch)?;
        if answer.prepaid_id != account.as_str() || answer.balance.currency() != bill.bill().total().currency() {
            return Err(PayError::HandOff("the center answered for another prepaid card".into()));
        }
        Ok(PrepaidPaid {
            settlement_id: answer.settlement_id,
            prepaid_id: answer.prepaid_id,
            amount: verified.message().amount(),
            balance: answer.balance,
            completion: answer.completion,
            store_name: bill.bill().store_name().as_str().to_owned(),
            order_id: bill.bill().order_id().to_string(),
        })
    }

    /// Waits (bounded) for the store's receipt (SIG4) of a prepaid payment,
    /// checked against the keys the center vouches for the bill's store.
    /// `Ok(None)`: not yet.
    pub async fn prepaid_receipt(&self, paid: &PrepaidPaid, bill_token: &str) -> Result<Option<String>, PayError> {
        let bill = HandedBill::parse(bill_token)?;
        for _ in 0..RECEIPT_POLLS {
            if let Some(token) = self.center.receipt(&paid.settlement_id).await? {
                let keys = self
                    .center
                    .store_keys(bill.issuer())
                    .await
                    .map_err(|e| PayError::ReceiptUnverified(VerifyError::Keys(e)))?;
                let verified = receipt::verify(&token, &keys, self.clock.as_ref())
                    .map_err(|e| PayError::ReceiptUnverified(VerifyError::Signature(e)))?;
                let id = kessai_core::ids::SettlementId::parse(&paid.settlement_id)
                    .map_err(|e| PayError::UnknownSettlement(e.to_string()))?;
                checks::check_receipt(&verified, &id, &paid.completion, &bill).map_err(PayError::ReceiptMismatch)?;
                return Ok(Some(token));
            }
            tokio::time::sleep(std::time::Duration::from_millis(RECEIPT_POLL_INTERVAL_MS)).await;
        }
        Ok(None)
    }
}

impl Wallet {
    /// Moves `amount` from the member's prepaid card `account` onto the IC
    /// card in the reader (#18 ④): the member's signed request, then the
    /// card's secure session as a charge's, SIG5 checked before the CREDIT
    /// is relayed.
    pub async fn prepaid_to_card(
        &self,
        signer: &Signer,
        request_id: RequestId,
        account: PrepaidId,
        amount: Money,
        progress: &mut (dyn FnMut(crate::ChargeProgress) + Send),
    ) -> Result<crate::ChargeOutcome, crate::ChargeError> {
        let (member, key) = signer;
        let (now, center) = (self.clock.now(), &self.config.center.party_id);
        let request = |card_id| -> Result<request::SubmitPrepaidRequest, crate::ChargeError> {
            let draft = PrepaidRequestDraft {
                member: member.clone(),
                request_id,
                action: PrepaidAction::ToCard,
                account: Some(account),
                amount: Some(amount),
                method: None,
                card_id: Some(card_id),
                token: None,
            };
            let sign = || -> Result<String, kessai_core::jws::JwsError> {
                let body = PrepaidRequest::new(draft)?;
                let claims =
                    Claims::for_lifetime(member.clone(), MessageId::generate(&mut OsRandom), now, REQUEST_LIFETIME_S)?
                        .with_audience(center.clone());
                prepaid::sign(&claims, &body, key)
            };
            let token = sign().map_err(|e| crate::ChargeError::Setup(format!("signing the prepaid request: {e}")))?;
            Ok(request::SubmitPrepaidRequest { request: token, card_number: None, expiry: None, cvc: None })
        };
        let offered = self.begin_from_prepaid(amount, request, progress).await?;
        let relayed = self.relay_credit(offered).await?;
        progress(crate::ChargeProgress::CreditRelayed);
        let done = self.complete_charge(relayed).await?;
        progress(crate::ChargeProgress::Completed { balance_after: done.balance_after });
        Ok(done)
    }
}

/// The Idempotency-Key of paying `bill` from `account`.
fn prepaid_payment_key(bill: &HandedBill, account: &PrepaidId) -> String {
    let digest = Sha256Digest::of([bill.hash().as_bytes(), account.as_str().as_bytes()].concat().as_slice());
    format!("prepaid-pay-{}", hex::encode(&digest.as_bytes()[..16]))
}

fn funding(answer: Value) -> Result<Funding, PayError> {
    serde_json::from_value(answer).map_err(|e| PayError::HandOff(format!("the center's answer: {e}")))
}
