//! Bank deposit tokens at the center (seed 002, #21): a member's deposit
//! into the pool account becomes a token on the member's IC card, sealed
//! under a key of the credit service provider.
//!
//! ```text
//! request ─► awaiting ─statement's credit matches─► issued ─STORE TOKEN proven─► stored
//!               └─ not received in time ─► lapsed
//! ```
//!
//! - **Request.** The member signs a prepaid request `deposit_token` naming
//!   its IC card, the amount, the account an unredeemed token's value goes
//!   back to and its credit card (`last4:` or `ntk:`, never a number). The
//!   answer is an ISO 11649 reference the transfer must quote.
//! - **Issue.** A credit on the pool account's statement quoting that
//!   reference, of that amount, in time, makes the token: every FIG. 12
//!   field, sealed by [`TokenBank`] (the bank's side, which holds the key
//!   versions the provider delivered) under the version issuing then, its
//!   expiry no later than that version redeems. In the transaction that
//!   takes the credit: the token row (`issued`, with its sealed bytes) and
//!   the books, bank pool → tokens outstanding. A credit that cannot make a
//!   token (no version issues, another amount, too late) waits in suspense
//!   for an operator, as any credit that matches nothing.
//! - **Delivery.** The wallet relays a secure session ([`TokenDelivery`]):
//!   the log commands, then one sealed STORE TOKEN per token issued to the
//!   card. A token is `stored` only on the card's R-MACed answer naming it;
//!   an error status word (sent bare, unproven) changes nothing, and the
//!   token is offered again next time. STORE TOKEN of bytes the card holds
//!   answers as the first time, and each token's STORE carries one
//!   transaction id fixed at issue, so a lost answer is made good by
//!   sending it again, and the card's log and the books name the same
//!   transaction.

use kessai_api::TokenStatus;
use kessai_card::tokens::store_token_command;
use kessai_core::Money;
use kessai_core::ids::{CardId, TransactionId};
use kessai_core::messages::prepaid::PrepaidRequest;
use kessai_core::messages::registration::MemberDetails;
use kessai_core::random::Random;
use kessai_core::time::Timestamp;
use kessai_core::token::{DepositToken, TokenError, TokenId, TokenKeyring};
use kessai_scp03::{CommandApdu, ResponseApdu, StatusWord};
use serde::{Deserialize, Serialize};

use crate::books::Entries;
use crate::card_session::{Pending, Sealed, Session, bad_answer, collect_commands};
use crate::db::{BankCreditRow, CreditIssues, TokenRow};
use crate::prepaid::{PrepaidError, PrepaidReply};
use crate::purchase::{CardRecord, CardRegistryStatus, Context, StepError};
use crate::runner::run_step;
use crate::security::SealedState;
use crate::service::{Answer, Center, CenterError};
use crate::statement::LogEntry;

pub use kessai_api::views::DepositToken as TokenView;
pub use kessai_api::{TokenDeliveryPhase, TokenDeliveryReply};

/// Most tokens one delivery session stores.
pub const TOKENS_PER_DELIVERY: usize = 3;

/// The center's rules for deposit tokens (configuration `[tokens]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenPolicy {
    /// How long a token pays after its deposit (seconds), unless its key
    /// version stops redeeming sooner.
    pub lifetime_s: u64,
    /// The pool account's bank, as the token names it (Zengin code or BIC).
    pub bank_id: String,
    /// The credit service provider whose keys seal the tokens.
    pub provider_id: String,
}

impl Default for TokenPolicy {
    fn default() -> TokenPolicy {
        TokenPolicy { lifetime_s: 180 * 86_400, bank_id: "0999".into(), provider_id: "kessai-csp".into() }
    }
}

/// The bank's side of token issuing: the key versions the credit service
/// provider delivered (`TokenKey::open_delivery`), and the rules.
#[derive(Debug)]
pub struct TokenBank {
    pub keyring: TokenKeyring,
    pub policy: TokenPolicy,
}

fn refused(e: impl std::fmt::Display) -> PrepaidError {
    PrepaidError::Refused(e.to_string())
}

/// The member's name as a token carries it: at most the field's 40 bytes,
/// cut at a character.
fn token_name(details: &str) -> String {
    let name = match serde_json::from_str::<MemberDetails>(details) {
        Ok(MemberDetails::General { name, .. }) => name.as_str().to_owned(),
        Ok(MemberDetails::Store { business_name, .. }) => business_name.as_str().to_owned(),
        Err(_) => String::new(),
    };
    let mut out = String::new();
    for c in name.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > kessai_core::token::MAX_FIELD_BYTES {
            break;
        }
        out.push(c);
    }
    if out.trim().is_empty() { "member".into() } else { out }
}

/// A token as its member sees it.
pub fn token_view(t: &TokenRow, pay_to: &str) -> TokenView {
    TokenView {
        token_id: t.id.to_string(),
        card_id: t.card_id.to_string(),
        request_id: t.request_id.clone(),
        amount: t.amount,
        status: t.status,
        reference: t.reference.clone(),
        pay_to: (t.status == TokenStatus::Awaiting).then(|| pay_to.to_owned()),
        awaiting_until: (t.status == TokenStatus::Awaiting).then_some(t.awaiting_until),
        deposited_on: t.deposited_on.clone(),
        expires_at: t.expires_at,
        key_version: t.key_version,
        created_at: t.created_at,
    }
}

impl Center {
    /// A member's `deposit_token` request (signed, checked by the caller):
    /// a token awaiting its deposit under a new reference. The card must be
    /// the member's, active, and of the amount's currency. The same request
    /// again is answered with the token as it stands.
    pub(crate) async fn deposit_token_request(&self, request: &PrepaidRequest) -> Result<PrepaidReply, PrepaidError> {
        let bank = self.tokens.as_ref().ok_or_else(|| refused("this center issues no deposit tokens"))?;
        let member = request.member().as_str();
        let (Some(amount), Some(card_id), Some(terms)) = (request.amount(), request.card_id(), request.token()) else {
            return Err(refused("a deposit token names its amount, IC card and terms"));
        };
        if let Some(found) = self.db.token_by_request(member, request.request_id().as_str()).await? {
            return self.same_token_request(found, request);
        }
        if amount.amount_minor() > self.max_amount_minor {
            let limit = Money::new(self.max_amount_minor, amount.currency()).map_err(refused)?;
            return Err(PrepaidError::OverLimit { amount, limit });
        }
        if !matches!(self.db.card_member(&card_id).await?, Some((m, _)) if m == member) {
            return Err(PrepaidError::NotMembersCard(card_id));
        }
        let card = self.db.card(&card_id).await?.ok_or(PrepaidError::NotMembersCard(card_id))?;
        if card.status != CardRegistryStatus::Active {
            return Err(refused(format!("card {card_id} is not active")));
        }
        if card.currency != amount.currency() {
            return Err(PrepaidError::Currency { card: card.currency, asked: amount.currency() });
        }
        let now = self.clock.now();
        let mut rng = self.random.generator();
        let mut store_tx = [0u8; 16];
        rng.fill_bytes(&mut store_tx);
        let row = TokenRow {
            id: TokenId::generate(rng.as_mut()),
            member: member.to_owned(),
            request_id: request.request_id().as_str().to_owned(),
            card_id,
            amount,
            status: TokenStatus::Awaiting,
            reference: crate::prepaid::new_reference(rng.as_mut()),
            refund_account: terms.refund_account.clone(),
            card_ref: terms.card_ref.clone(),
            awaiting_until: Timestamp::from_unix_s(now.unix_s().saturating_add(self.prepaid.awaiting_s)),
            store_tx: TransactionId::from_bytes(store_tx),
            entry_key: None,
            deposited_on: None,
            key_version: None,
            expires_at: None,
            sealed: None,
            stored_counter: None,
            created_at: now,
            updated_at: now,
        };
        if let Some(found) = self.db.insert_token(&row).await? {
            return self.same_token_request(found, request);
        }
        tracing::info!(token = %row.id, card = %card_id, amount = %amount, provider = %bank.policy.provider_id, "deposit token awaiting its deposit");
        Ok(PrepaidReply::Token(Box::new(token_view(&row, &self.prepaid.bank_pool))))
    }

    fn same_token_request(&self, found: TokenRow, request: &PrepaidRequest) -> Result<PrepaidReply, PrepaidError> {
        let same = Some(found.amount) == request.amount()
            && Some(found.card_id) == request.card_id()
            && request
                .token()
                .is_some_and(|t| t.refund_account == found.refund_account && t.card_ref == found.card_ref);
        if !same {
            return Err(PrepaidError::RequestIdReused(request.request_id().to_string()));
        }
        Ok(PrepaidReply::Token(Box::new(token_view(&found, &self.prepaid.bank_pool))))
    }

    /// A member's tokens, newest first.
    pub async fn tokens_of(&self, member: &str) -> Result<Vec<TokenView>, CenterError> {
        let rows = self.db.tokens_of_member(member).await?;
        Ok(rows.iter().map(|t| token_view(t, &self.prepaid.bank_pool)).collect())
    }

    /// Ends the token requests whose deposit did not arrive in time.
    pub async fn lapse_token_requests(&self) -> Result<u64, CenterError> {
        Ok(self.db.lapse_tokens(self.clock.now()).await?)
    }

    /// A pool account credit quoting token `t`'s reference: the token made
    /// and issued in the credit's transaction, or why not (the credit then
    /// goes to suspense). `Ok(None)`: the credit was imported before.
    pub(crate) async fn issue_token_for(
        &self,
        t: TokenRow,
        mut credit: BankCreditRow,
        booked_on: &str,
    ) -> Result<Result<Option<&'static str>, String>, PrepaidError> {
        let now = self.clock.now();
        let Some(bank) = self.tokens.as_ref() else {
            return Ok(Err("this center issues no deposit tokens".into()));
        };
        let why_not = match &t {
            t if t.status != TokenStatus::Awaiting => Some(format!("the token request is {}", t.status.as_str())),
            t if t.awaiting_until < now => Some("the token request expired".to_owned()),
            t if t.amount != credit.amount => Some(format!("{} received for a token of {}", credit.amount, t.amount)),
            _ => None,
        };
        if let Some(why) = why_not {
            return Ok(Err(why));
        }
        let Some(key_until) = bank.keyring.issuing_until(now) else {
            return Ok(Err(TokenError::NoIssuingKey.to_string()));
        };
        let lifetime_end = Timestamp::from_unix_s(now.unix_s().saturating_add(bank.policy.lifetime_s));
        let expires_at = lifetime_end.min(key_until);
        let user_name = match self.db.member(&t.member).await? {
            Some(m) => token_name(&m.details),
            None => return Ok(Err("the token's member is not registered".into())),
        };
        let token = DepositToken {
            token_id: t.id,
            user_name,
            user_id: t.member.clone(),
            amount: t.amount,
            deposited_at: now,
            expires_at,
            bank_id: bank.policy.bank_id.clone(),
            bank_account: t.refund_account.clone(),
            card_company_id: bank.policy.provider_id.clone(),
            card_ref: t.card_ref.clone(),
        };
        let mut rng = self.random.generator();
        let sealed = match bank.keyring.seal(&token, now, rng.as_mut()) {
            Ok(sealed) => sealed,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let header = kessai_core::token::TokenHeader::read(&sealed).map_err(refused)?;
        credit.status = "matched".into();
        credit.funding_id = Some(t.id.to_string());
        let issued = TokenRow {
            status: TokenStatus::Issued,
            entry_key: Some(credit.entry_key.clone()),
            deposited_on: Some(booked_on.to_owned()),
            key_version: Some(header.key_version),
            expires_at: Some(expires_at),
            sealed: Some(sealed),
            updated_at: now,
            ..t
        };
        let entries = Entries::token_issued(&issued.id.to_string(), issued.amount)?;
        let taken = self.db.take_bank_credit(&credit, Some(CreditIssues::Token(&issued)), entries, now, None).await?;
        if taken == crate::db::CreditTaken::Recorded {
            tracing::info!(token = %issued.id, card = %issued.card_id, amount = %issued.amount, key_version = header.key_version, "deposit received; token issued");
        }
        Ok(Ok(taken.recorded("matched")))
    }
}

/// A token delivery session as stored between the wallet's requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenDelivery {
    pub id: String,
    pub card_id: CardId,
    pub key_version: u8,
    pub phase: TokenDeliveryPhase,
    pub scp: Option<SealedState>,
    /// The batch's sealed commands awaiting their answers.
    pub pending: Vec<Pending>,
    /// The tokens whose STORE TOKEN is in the batch, in order.
    pub sent: Vec<TokenId>,
    /// The card's log records read in the batch (kept in the step's write).
    pub collected: Vec<LogEntry>,
    /// Tokens the card proved it holds, with its counter for each.
    pub stored: Vec<(TokenId, u32)>,
    /// Tokens the card did not take, with what it answered (unproven: an
    /// error status word is not R-MACed, so nothing changes for them).
    pub refused: Vec<(TokenId, String)>,
    pub created_at: Timestamp,
}

impl TokenDelivery {
    /// Opens a delivery session for card `card_id` (every card id alike:
    /// whether it may take tokens is answered once it proved itself).
    pub fn create<R: Random + ?Sized>(
        ctx: &mut Context<'_, R>,
        card_id: CardId,
        key_version: u8,
    ) -> Result<(TokenDelivery, CommandApdu), StepError> {
        let mut raw = [0u8; 16];
        ctx.rng.fill_bytes(&mut raw);
        let mut d = TokenDelivery {
            id: format!("tdl_{}", hex::encode(raw)),
            card_id,
            key_version,
            phase: TokenDeliveryPhase::Authenticating,
            scp: None,
            pending: Vec::new(),
            sent: Vec::new(),
            collected: Vec::new(),
            stored: Vec::new(),
            refused: Vec::new(),
            created_at: ctx.now,
        };
        let init = d.session().begin(ctx, key_version)?;
        Ok((d, init))
    }

    fn session(&mut self) -> Session<'_> {
        Session::new(&self.card_id, &self.id, &mut self.scp)
    }

    /// The card proved itself (INITIALIZE UPDATE's `answer`): if it is
    /// registered and active, EXTERNAL AUTHENTICATE, the log commands
    /// (`through`: what the center holds of its log) and a sealed STORE
    /// TOKEN for each of `tokens` (issued to it, unexpired), at most
    /// [`TOKENS_PER_DELIVERY`].
    pub fn authenticate<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answer: &ResponseApdu,
        card: Option<&CardRecord>,
        through: Option<u32>,
        tokens: &[TokenRow],
    ) -> Result<(TokenDelivery, Vec<CommandApdu>), StepError> {
        if self.phase != TokenDeliveryPhase::Authenticating {
            return Err(StepError::BadCardAnswer("the delivery is not authenticating".into()));
        }
        let mut then = collect_commands(through);
        let mut sent = Vec::new();
        for t in tokens.iter().filter(|t| t.card_id == self.card_id).take(TOKENS_PER_DELIVERY) {
            let sealed = t.sealed.as_deref().ok_or_else(|| bad_answer("an issued token without its bytes"))?;
            let tx = kessai_card::protocol::TxId(*t.store_tx.as_bytes());
            then.push((Sealed::Token, store_token_command(tx, ctx.now.unix_s(), sealed)));
            sent.push(t.id);
        }
        let (commands, pending) = {
            let mut s = self.session();
            // The card's cryptogram is checked before anything is said of
            // the card (M4).
            s.open_batch(ctx, answer, &then)?
        };
        let card = card.filter(|c| c.id == self.card_id).ok_or(StepError::UnknownCard(self.card_id))?;
        if card.status != CardRegistryStatus::Active {
            return Err(StepError::CardNotActive(card.id));
        }
        self.pending = pending;
        self.sent = sent;
        self.phase = TokenDeliveryPhase::Storing;
        Ok((self, commands))
    }

    /// The batch's answers: the log records read, and each STORE TOKEN's
    /// answer: `9000` R-MACed with the card's counter and the token's id
    /// (stored), or an error status word (refused, unproven).
    pub fn finish<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answers: &[ResponseApdu],
    ) -> Result<TokenDelivery, StepError> {
        if self.phase != TokenDeliveryPhase::Storing {
            return Err(StepError::BadCardAnswer("the delivery is not storing".into()));
        }
        let pending = std::mem::take(&mut self.pending);
        let read = self.session().read_batch(ctx, answers, true, &pending)?;
        if read.tokens.len() != self.sent.len() {
            return Err(bad_answer("an answer for each STORE TOKEN"));
        }
        for (id, plain) in self.sent.iter().zip(&read.tokens) {
            if plain.sw() == StatusWord::from(0x9000u16) {
                let data = plain.data();
                if data.len() != 20 || data[4..] != id.0 {
                    return Err(bad_answer("STORE TOKEN answered for another token"));
                }
                let counter = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                self.stored.push((*id, counter));
            } else {
                self.refused.push((*id, store_refusal(plain.sw())));
            }
        }
        self.collected = read.collected;
        self.phase = TokenDeliveryPhase::Done;
        self.session().end();
        Ok(self)
    }
}

/// What a card's refusal of STORE TOKEN means (PROTOCOL §4.4).
fn store_refusal(sw: StatusWord) -> String {
    let why = match u16::from(sw) {
        0x6A8C => "the token expired",
        0x6A84 => "the card's token table is full",
        0x6A8B => "the card's log is full of records not yet collected",
        0x6A89 => "the card holds another token under this id, or took this transaction for another",
        0x6A8D => "the card redeemed this token already",
        0x6A80 => "the card refused the token's form or currency",
        _ => "the card refused",
    };
    format!("{why} ({:04X})", u16::from(sw))
}

fn delivery_reply(d: &TokenDelivery, apdus: &[CommandApdu]) -> TokenDeliveryReply {
    TokenDeliveryReply {
        delivery_id: d.id.clone(),
        phase: d.phase,
        apdus: apdus.iter().map(|c| hex::encode(c.to_bytes())).collect(),
        stored: d.stored.iter().map(|(id, _)| id.to_string()).collect(),
        refused: d
            .refused
            .iter()
            .map(|(id, why)| kessai_api::TokenRefusal { token_id: id.to_string(), reason: why.clone() })
            .collect(),
        access_token: None,
    }
}

impl Center {
    fn delivery_answer(&self, d: &TokenDelivery, apdus: &[CommandApdu]) -> TokenDeliveryReply {
        TokenDeliveryReply { access_token: Some(self.security.access_token(&d.id)), ..delivery_reply(d, apdus) }
    }

    /// POST /v1/cards/{card}/token-deliveries: a session to store the
    /// card's issued tokens.
    pub async fn token_delivery_create(&self, card_id: CardId) -> Result<TokenDeliveryReply, CenterError> {
        let key_version = self.session_key_version(card_id).await?;
        let mut rng = self.random.generator();
        let (d, init) = TokenDelivery::create(&mut self.ctx(rng.as_mut()), card_id, key_version)?;
        self.db.insert_card_session(&d).await?;
        Ok(self.delivery_answer(&d, &[init]))
    }

    async fn delivery_load(&self, id: &str) -> Result<(TokenDelivery, i64), CenterError> {
        self.db
            .card_session::<TokenDelivery>(id)
            .await?
            .ok_or_else(|| CenterError::UnknownTokenDelivery(id.chars().take(64).collect()))
    }

    /// The card's answer to INITIALIZE UPDATE: the batch that stores its
    /// tokens.
    pub async fn token_delivery_authenticate(
        &self,
        id: &str,
        answers: Vec<ResponseApdu>,
        answer_as: Option<Answer>,
    ) -> Result<TokenDeliveryReply, CenterError> {
        let answer = answers.first().ok_or(StepError::WrongAnswerCount { expected: 1, got: 0 })?;
        let opened = self.delivery_load(id).await?;
        let card_id = opened.0.card_id;
        let card = self.db.card(&card_id).await?;
        let through = self.db.collected_through(&card_id).await?;
        let now = self.clock.now();
        let tokens = self.db.tokens_to_store(&card_id, now).await?;
        let mut first = Some(opened);
        let found: Result<(_, TokenDeliveryReply), CenterError> = run_step!(
            load: async {
                match first.take() {
                    Some(found) => Ok(found),
                    None => self.delivery_load(id).await,
                }
            },
            transition: |d: TokenDelivery| {
                let mut rng = self.random.generator();
                Ok::<_, CenterError>(d.authenticate(&mut self.ctx(rng.as_mut()), answer, card.as_ref(), through, &tokens)?)
            },
            store: |stepped, version| self.store_delivery(&stepped.0, &stepped.1, version, answer_as.as_ref()),
        );
        Ok(found?.1)
    }

    /// The card's answers to the batch: the tokens it proved it holds are
    /// `stored`, with the log records read, in one write.
    pub async fn token_delivery_finish(
        &self,
        id: &str,
        answers: Vec<ResponseApdu>,
        answer_as: Option<Answer>,
    ) -> Result<TokenDeliveryReply, CenterError> {
        let found: Result<(_, TokenDeliveryReply), CenterError> = run_step!(
            load: self.delivery_load(id),
            transition: |d: TokenDelivery| {
                let mut rng = self.random.generator();
                Ok::<_, CenterError>((d.finish(&mut self.ctx(rng.as_mut()), &answers)?, Vec::new()))
            },
            store: |stepped, version| self.store_delivery(&stepped.0, &stepped.1, version, answer_as.as_ref()),
        );
        let reply = found?.1;
        for stored in &reply.stored {
            tracing::info!(delivery = %id, token = %stored, "token stored on the card");
        }
        Ok(reply)
    }

    async fn store_delivery(
        &self,
        d: &TokenDelivery,
        apdus: &[CommandApdu],
        version: i64,
        answer_as: Option<&Answer>,
    ) -> Result<TokenDeliveryReply, CenterError> {
        let answered = self.delivery_answer(d, apdus);
        let save = answer_as.map(|a| a.saved(&answered)).transpose()?;
        self.db.update_token_delivery(d, version, self.clock.now(), save).await?;
        Ok(answered)
    }
}
