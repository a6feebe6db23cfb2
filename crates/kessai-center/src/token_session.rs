//! A secure session with a card about its deposit tokens (#21): storing the
//! tokens issued to it, or redeeming one it holds for value. Sans-I/O like
//! the other card sessions: commands out and answers in, through the
//! security server.
//!
//! The wallet opens it (`create`: INITIALIZE UPDATE, every card id alike),
//! relays the card's answer (`authenticate`: the cryptogram checked, then
//! whether the card and the token may take part, then EXTERNAL
//! AUTHENTICATE, the log commands and the token commands in one batch) and
//! the batch's answers (`finish`). Only an R-MACed `9000` moves a token;
//! an error status word is sent bare by the card, so it proves nothing and
//! changes nothing.
//!
//! Each token carries two transaction ids fixed at its request, one for
//! its STORE and one for its REDEEM. A command whose answer was lost is
//! sent again unchanged in a later session, and the card answers it as the
//! first time; so a token is stored and redeemed once, and the card's log
//! and the books name the same transactions.

use kessai_card::tokens::{
    LIST_TOKENS_MAX, TOKEN_CAPACITY, list_tokens_command, parse_list, redeem_token_command, store_token_command,
};
use kessai_core::ids::CardId;
use kessai_core::random::Random;
use kessai_core::time::Timestamp;
use kessai_core::token::TokenId;
use kessai_scp03::{CommandApdu, ResponseApdu, StatusWord};
use serde::{Deserialize, Serialize};

use crate::card_session::{Pending, Sealed, Session, bad_answer, collect_commands};
use crate::db::TokenRow;
use crate::purchase::{CardRecord, CardRegistryStatus, Context, StepError};
use crate::runner::run_step;
use crate::security::SealedState;
use crate::service::{Answer, Center, CenterError};
use crate::statement::LogEntry;

pub use kessai_api::{CardToken, TokenRedeemed, TokenRefusal, TokenSessionPhase, TokenSessionReply, TokenStatus};

/// Most tokens one session stores.
pub const TOKENS_PER_SESSION: usize = 3;

/// What a token session is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TokenPurpose {
    /// Store the tokens issued to the card.
    Deliver,
    /// Redeem this stored token for value owed to the card.
    Redeem { token: TokenId },
    /// Read the card's token table (nothing on the card changes).
    List,
}

/// A token as the card listed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    pub token: TokenId,
    pub key_version: u8,
    pub currency: String,
    pub amount_minor: u64,
    pub expires_unix_s: u64,
    pub redeemed: bool,
    pub counter: u32,
}

/// What the card gave up for a redemption: its counter at the REDEEM and
/// the sealed token, for the provider to check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GivenUp {
    pub token: TokenId,
    pub counter: u32,
    #[serde(with = "hex::serde")]
    pub sealed: Vec<u8>,
    /// The time the REDEEM command carried: what the card checked the
    /// expiry against, and the provider checks it against again.
    pub at: Timestamp,
}

/// A token session as stored between the wallet's requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenSession {
    pub id: String,
    pub card_id: CardId,
    pub key_version: u8,
    pub purpose: TokenPurpose,
    pub phase: TokenSessionPhase,
    pub scp: Option<SealedState>,
    /// The batch's sealed commands awaiting their answers.
    pub pending: Vec<Pending>,
    /// The tokens whose STORE or REDEEM is in the batch, in order.
    pub sent: Vec<TokenId>,
    /// When the batch was sealed (the time in its token commands).
    pub sealed_at: Option<Timestamp>,
    /// The card's log records read in the batch (kept in the step's write).
    pub collected: Vec<LogEntry>,
    /// Tokens the card proved it holds, with its counter for each.
    pub stored: Vec<(TokenId, u32)>,
    /// The token the card proved it gave up (redeem).
    pub given_up: Option<GivenUp>,
    /// The card's token table (list).
    #[serde(default)]
    pub listed: Vec<Listed>,
    /// Tokens not moved, and why (the card's bare refusal, or the
    /// provider's).
    pub refused: Vec<(TokenId, String)>,
    pub created_at: Timestamp,
}

impl TokenSession {
    /// Opens a session with card `card_id` (every card id alike: whether it
    /// may take part is answered once it proved itself).
    pub fn create<R: Random + ?Sized>(
        ctx: &mut Context<'_, R>,
        card_id: CardId,
        key_version: u8,
        purpose: TokenPurpose,
    ) -> Result<(TokenSession, CommandApdu), StepError> {
        let mut raw = [0u8; 16];
        ctx.rng.fill_bytes(&mut raw);
        let mut d = TokenSession {
            id: format!("tks_{}", hex::encode(raw)),
            card_id,
            key_version,
            purpose,
            phase: TokenSessionPhase::Authenticating,
            scp: None,
            pending: Vec::new(),
            sent: Vec::new(),
            sealed_at: None,
            collected: Vec::new(),
            stored: Vec::new(),
            given_up: None,
            listed: Vec::new(),
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
    /// (`through`: what the center holds of its log) and the token
    /// commands: a STORE TOKEN for each of `tokens` issued to it and
    /// unexpired (at most [`TOKENS_PER_SESSION`]), or the REDEEM TOKEN of
    /// the token redeemed, which must be the card's, stored (or redeemed by
    /// its own transaction, whose answer was lost) and unexpired.
    pub fn authenticate<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answer: &ResponseApdu,
        card: Option<&CardRecord>,
        member: Option<&str>,
        through: Option<u32>,
        tokens: &[TokenRow],
    ) -> Result<(TokenSession, Vec<CommandApdu>), StepError> {
        if self.phase != TokenSessionPhase::Authenticating {
            return Err(StepError::BadCardAnswer("the token session is not authenticating".into()));
        }
        let now = ctx.now;
        let mut sealed_at = now;
        // Listing writes nothing on the card, so it collects nothing.
        let mut then = if self.purpose == TokenPurpose::List { Vec::new() } else { collect_commands(through) };
        let mut sent = Vec::new();
        let mine = tokens.iter().filter(|t| t.card_id == self.card_id);
        match self.purpose {
            TokenPurpose::Deliver => {
                // Only the card's member's tokens: a card linked to another
                // member since the request takes none of them.
                let due = mine.filter(|t| {
                    t.status == TokenStatus::Issued
                        && t.expires_at.is_some_and(|e| now < e)
                        && member.is_some_and(|m| m == t.member)
                });
                for t in due.take(TOKENS_PER_SESSION) {
                    let sealed = t.sealed.as_deref().ok_or_else(|| bad_answer("an issued token without its bytes"))?;
                    let tx = kessai_card::protocol::TxId(*t.store_tx.as_bytes());
                    then.push((Sealed::Token, store_token_command(tx, now.unix_s(), sealed)));
                    sent.push(t.id);
                }
            }
            TokenPurpose::List => {
                let page = u8::try_from(LIST_TOKENS_MAX).unwrap_or(4);
                for first in (0..TOKEN_CAPACITY).step_by(LIST_TOKENS_MAX) {
                    let first = u8::try_from(first).unwrap_or(u8::MAX);
                    then.push((Sealed::Token, list_tokens_command(first, page)));
                }
            }
            TokenPurpose::Redeem { token } => {
                let t = mine.into_iter().find(|t| t.id == token);
                // Before the cryptogram nothing is said of the card or the
                // token; the session is opened, then refused below.
                if let Some(t) = t.filter(|t| redeemable(t, now, member).is_ok()) {
                    let tx = kessai_card::protocol::TxId(*t.redeem_tx.as_bytes());
                    let at = redeem_time(t, now);
                    then.push((Sealed::Token, redeem_token_command(t.id.0, tx, at.unix_s())));
                    sent.push(t.id);
                    sealed_at = at;
                }
            }
        }
        let (commands, pending) = self.session().open_batch(ctx, answer, &then)?;
        let card = card.filter(|c| c.id == self.card_id).ok_or(StepError::UnknownCard(self.card_id))?;
        if card.status != CardRegistryStatus::Active {
            return Err(StepError::CardNotActive(card.id));
        }
        if let TokenPurpose::Redeem { token } = self.purpose {
            let t = tokens.iter().find(|t| t.id == token && t.card_id == self.card_id);
            let t = t.ok_or_else(|| StepError::TokenRefused(format!("the card holds no token {token}")))?;
            redeemable(t, now, member).map_err(StepError::TokenRefused)?;
        }
        self.pending = pending;
        self.sent = sent;
        self.sealed_at = Some(sealed_at);
        self.phase = TokenSessionPhase::Sent;
        Ok((self, commands))
    }

    /// The batch's answers: the log records read, and each token command's
    /// answer: `9000` R-MACed (STORE: the card's counter and the token's
    /// id; REDEEM: the counter and the sealed token) or an error status
    /// word (unproven: nothing moves).
    pub fn finish<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answers: &[ResponseApdu],
    ) -> Result<TokenSession, StepError> {
        if self.phase != TokenSessionPhase::Sent {
            return Err(StepError::BadCardAnswer("the token session's batch is not out".into()));
        }
        let pending = std::mem::take(&mut self.pending);
        let read = self.session().read_batch(ctx, answers, true, &pending)?;
        if self.purpose == TokenPurpose::List {
            for plain in &read.tokens {
                crate::card_session::completed(plain)?;
                let (_, entries) = parse_list(plain.data()).map_err(bad_answer)?;
                self.listed.extend(entries.iter().map(|e| Listed {
                    token: TokenId(e.token_id),
                    key_version: e.key_version,
                    currency: e.currency.as_str().to_owned(),
                    amount_minor: e.amount_minor,
                    expires_unix_s: e.expires_unix_s,
                    redeemed: e.redeemed,
                    counter: e.counter,
                }));
            }
        } else if read.tokens.len() != self.sent.len() {
            return Err(bad_answer("an answer for each token command"));
        }
        let at = self.sealed_at.unwrap_or(self.created_at);
        for (id, plain) in self.sent.iter().zip(&read.tokens) {
            let data = plain.data();
            match self.purpose {
                _ if plain.sw() != StatusWord::from(0x9000u16) => self.refused.push((*id, refusal(plain.sw()))),
                TokenPurpose::Deliver => {
                    if data.len() != 20 || data[4..] != id.0 {
                        return Err(bad_answer("STORE TOKEN answered for another token"));
                    }
                    self.stored.push((*id, counter_of(data)?));
                }
                TokenPurpose::List => {}
                TokenPurpose::Redeem { .. } => {
                    if data.len() < 4 + kessai_card::tokens::MIN_SEALED_LEN || data[9..25] != id.0 {
                        return Err(bad_answer("REDEEM TOKEN answered for another token"));
                    }
                    let (counter, sealed) = (counter_of(data)?, data[4..].to_vec());
                    self.given_up = Some(GivenUp { token: *id, counter, sealed, at });
                }
            }
        }
        self.collected = read.collected;
        self.phase = TokenSessionPhase::Done;
        self.session().end();
        Ok(self)
    }
}

fn counter_of(data: &[u8]) -> Result<u32, StepError> {
    let bytes: [u8; 4] = data.get(..4).and_then(|b| b.try_into().ok()).ok_or_else(|| bad_answer("no counter"))?;
    Ok(u32::from_be_bytes(bytes))
}

/// The time a REDEEM TOKEN of `t` carries: the first one's, if one was
/// sealed before, else `now`.
fn redeem_time(t: &TokenRow, now: Timestamp) -> Timestamp {
    t.redeem_sent_at.unwrap_or(now)
}

/// Whether the center offers token `t` for redemption at `now` to a card
/// of `member`: stored, the card's member's, and unexpired at the time its
/// REDEEM carries.
pub(crate) fn redeemable(t: &TokenRow, now: Timestamp, member: Option<&str>) -> Result<(), String> {
    match t.status {
        TokenStatus::Stored => {}
        TokenStatus::Redeemed => return Err(format!("token {} was redeemed", t.id)),
        status if status.paid_back() => {
            return Err(format!("token {} expired: its value is paid back to the depositor's account", t.id));
        }
        other => return Err(format!("token {} is {}, not on the card", t.id, other.as_str())),
    }
    if member != Some(t.member.as_str()) {
        return Err(format!("token {} is another member's than the card's", t.id));
    }
    match t.expires_at {
        Some(e) if redeem_time(t, now) < e => Ok(()),
        _ => Err(format!("token {} expired: its value goes back to the depositor's account", t.id)),
    }
}

/// What a card's refusal of STORE TOKEN or REDEEM TOKEN means (PROTOCOL
/// §4.5).
fn refusal(sw: StatusWord) -> String {
    let why = match u16::from(sw) {
        0x6A8C => "the token expired",
        0x6A84 => "the card's token table is full",
        0x6A8B => "the card's log is full of records not yet collected",
        0x6A89 => "the card holds another token under this id, or took this transaction for another",
        0x6A8D => "the card redeemed this token by another transaction",
        0x6A88 => "the card holds no such token",
        0x6A80 => "the card refused the token's form or currency",
        _ => "the card refused",
    };
    format!("{why} ({:04X})", u16::from(sw))
}

/// The card's listed tokens, with what the center knows of each (`known`:
/// the card's tokens as the center has them).
fn on_card(d: &TokenSession, known: &[TokenRow]) -> Option<Vec<CardToken>> {
    if d.purpose != TokenPurpose::List || d.phase != TokenSessionPhase::Done {
        return None;
    }
    let listed = d.listed.iter().filter_map(|l| {
        let currency = kessai_core::Currency::parse(&l.currency).ok()?;
        let row = known.iter().find(|t| t.id == l.token);
        Some(CardToken {
            token_id: l.token.to_string(),
            amount: kessai_core::Money::new(l.amount_minor, currency).ok()?,
            expires_at: l.expires_unix_s,
            key_version: l.key_version,
            redeemed: l.redeemed,
            counter: l.counter,
            status: row.map(|t| t.status),
            deposited_on: row.and_then(|t| t.deposited_on.clone()),
        })
    });
    Some(listed.collect())
}

fn session_reply(d: &TokenSession, apdus: &[CommandApdu]) -> TokenSessionReply {
    TokenSessionReply {
        session_id: d.id.clone(),
        phase: d.phase,
        apdus: apdus.iter().map(|c| hex::encode(c.to_bytes())).collect(),
        stored: d.stored.iter().map(|(id, _)| id.to_string()).collect(),
        redeemed: None,
        on_card: None,
        refused: d
            .refused
            .iter()
            .map(|(id, why)| TokenRefusal { token_id: id.to_string(), reason: why.clone() })
            .collect(),
        access_token: None,
    }
}

impl Center {
    fn token_session_answer(&self, d: &TokenSession, apdus: &[CommandApdu]) -> TokenSessionReply {
        TokenSessionReply { access_token: Some(self.security.access_token(&d.id)), ..session_reply(d, apdus) }
    }

    /// POST /v1/cards/{card}/token-sessions: a session to store the card's
    /// issued tokens, or to redeem one.
    pub async fn token_session_create(
        &self,
        card_id: CardId,
        purpose: TokenPurpose,
    ) -> Result<TokenSessionReply, CenterError> {
        let key_version = self.session_key_version(card_id).await?;
        let mut rng = self.random.generator();
        let (d, init) = TokenSession::create(&mut self.ctx(rng.as_mut()), card_id, key_version, purpose)?;
        self.db.insert_card_session(&d).await?;
        Ok(self.token_session_answer(&d, &[init]))
    }

    async fn token_session_load(&self, id: &str) -> Result<(TokenSession, i64), CenterError> {
        self.db
            .card_session::<TokenSession>(id)
            .await?
            .ok_or_else(|| CenterError::UnknownTokenSession(id.chars().take(64).collect()))
    }

    /// The card's answer to INITIALIZE UPDATE: the batch of token commands.
    pub async fn token_session_authenticate(
        &self,
        id: &str,
        answers: Vec<ResponseApdu>,
        answer_as: Option<Answer>,
    ) -> Result<TokenSessionReply, CenterError> {
        let answer = answers.first().ok_or(StepError::WrongAnswerCount { expected: 1, got: 0 })?;
        let opened = self.token_session_load(id).await?;
        let card_id = opened.0.card_id;
        let card = self.db.card(&card_id).await?;
        let member = self.db.card_member(&card_id).await?.map(|(m, _)| m);
        let through = self.db.collected_through(&card_id).await?;
        let tokens = self.db.tokens_of_card(&card_id).await?;
        let mut first = Some(opened);
        let found: Result<(_, TokenSessionReply), CenterError> = run_step!(
            load: async {
                match first.take() {
                    Some(found) => Ok(found),
                    None => self.token_session_load(id).await,
                }
            },
            transition: |d: TokenSession| {
                let mut rng = self.random.generator();
                Ok::<_, CenterError>(d.authenticate(&mut self.ctx(rng.as_mut()), answer, card.as_ref(), member.as_deref(), through, &tokens)?)
            },
            store: |stepped, version| self.store_token_session(&stepped.0, &stepped.1, version, None, answer_as.as_ref()),
        );
        Ok(found?.1)
    }

    /// The card's answers to the batch, in one write with the log records
    /// read: the tokens it proved it holds are `stored`; the token it
    /// proved it gave up, once the provider honours it, is `redeemed` and
    /// its value owed to the card.
    pub async fn token_session_finish(
        &self,
        id: &str,
        answers: Vec<ResponseApdu>,
        answer_as: Option<Answer>,
    ) -> Result<TokenSessionReply, CenterError> {
        let found: Result<(_, TokenSessionReply), CenterError> = run_step!(
            load: self.token_session_load(id),
            transition: |d: TokenSession| {
                let mut rng = self.random.generator();
                Ok::<_, CenterError>((d.finish(&mut self.ctx(rng.as_mut()), &answers)?, Vec::<CommandApdu>::new()))
            },
            store: |stepped, version| self.finish_token_session(&stepped.0, version, answer_as.as_ref()),
        );
        let reply = found?.1;
        for stored in &reply.stored {
            tracing::info!(session = %id, token = %stored, "token stored on the card");
        }
        if let Some(r) = &reply.redeemed {
            match &r.settlement_id {
                Some(paid) => {
                    tracing::info!(session = %id, token = %r.token_id, settlement = %paid, amount = %r.amount, "token redeemed; it paid the bill")
                }
                None => {
                    tracing::info!(session = %id, token = %r.token_id, amount = %r.amount, "token redeemed; its value is owed to the card")
                }
            }
        }
        Ok(reply)
    }

    /// The provider's check of the token the card gave up: the owed item
    /// it becomes, or (the provider refuses it) nothing, with why. What the
    /// card gave up must be the bytes the center stored on it.
    async fn honour(&self, d: &mut TokenSession) -> Result<Option<crate::db::Redemption>, CenterError> {
        if let (TokenPurpose::Redeem { token }, None) = (d.purpose, &d.given_up) {
            d.given_up = self.given_up_by_log(d, token).await?;
            if d.given_up.is_some() {
                d.refused.retain(|(id, _)| *id != token);
            }
        }
        let Some(given) = d.given_up.clone() else { return Ok(None) };
        let token = self.db.token(&given.token).await?.filter(|t| t.card_id == d.card_id);
        let token = token.ok_or_else(|| StepError::TokenRefused(format!("no token {}", given.token)))?;
        let provider = self.tokens.as_ref().map(|t| &t.provider);
        let checked = match provider {
            None => Err("this center redeems no deposit tokens".to_owned()),
            Some(_) if token.sealed.as_deref() != Some(&given.sealed[..]) => {
                Err("the card gave up other bytes than it was given".to_owned())
            }
            // Expired, its payback not yet made: redeemed only if the
            // provider honoured this REDEEM before (its answer lost).
            Some(p) if token.status == TokenStatus::Expired => {
                match p.held_redemption(&token.id, &token.redeem_tx).await? {
                    Some(_) => Ok(()),
                    None => {
                        Err("it expired unredeemed and its value is paid back to the depositor's account".to_owned())
                    }
                }
            }
            Some(_) if token.status.paid_back() => {
                Err("it expired unredeemed and its value is paid back to the depositor's account".to_owned())
            }
            // The provider honoured it before and this center wrote that
            // down: answered as it went, without asking again.
            Some(_) if token.status == TokenStatus::Redeemed => Ok(()),
            Some(p) => {
                // The provider is asked only for a card still active: a
                // card already lost keeps the token's value outstanding,
                // for its payback. Once the provider honoured it (asked
                // while the card was active, its answer lost), the
                // redemption is written whatever befell the card since:
                // its value follows the card's replacement.
                let card = self.db.card(&d.card_id).await?;
                if card.is_some_and(|c| c.status == CardRegistryStatus::Active) {
                    p.redeem(&given.sealed, &token.redeem_tx, given.at).await?.map(|_| ())
                } else {
                    if p.held_redemption(&token.id, &token.redeem_tx).await?.is_none() {
                        return Err(crate::db::DbError::BooksRefused {
                            what: "the token's redemption",
                            code: "card_not_active",
                        }
                        .into());
                    }
                    Ok(())
                }
            }
        };
        match checked {
            Ok(_) => self.redemption_of(&token, &given).await.map(Some),
            Err(why) => {
                tracing::warn!(session = %d.id, token = %given.token, why = %why, "the credit service provider refused a redeemed token");
                d.refused.push((given.token, format!("the credit service provider refused it: {why}")));
                d.given_up = None;
                Ok(None)
            }
        }
    }

    /// What an honoured token becomes: the bill of the settlement the
    /// cardholder chose it for, if that still waits for it, and what it
    /// held beyond that owed to the card; or, none waiting, all of it owed
    /// to the card. A token redeemed before (by the same REDEEM: the
    /// register checks it) is answered as that redemption went.
    async fn redemption_of(&self, token: &TokenRow, given: &GivenUp) -> Result<crate::db::Redemption, CenterError> {
        let now = self.clock.now();
        let chosen = match token.chosen_by.as_deref().map(kessai_core::ids::SettlementId::parse) {
            Some(Ok(id)) => self.db.settlement(&id).await?,
            _ => None,
        };
        if token.status == TokenStatus::Redeemed {
            let paid =
                chosen.filter(|(s, _)| s.phase() == kessai_api::Phase::Completed && s.paid_by_token == Some(token.id));
            let owed = self.db.owed(&crate::owed::token_owed_id(&token.id)).await?;
            let before = crate::db::WrittenBefore {
                settlement_id: paid.map(|(s, _)| s.id.to_string()),
                owed: owed.map(|o| (o.id, o.body.amount)),
            };
            return Ok(crate::db::Redemption::written_before(token, Some(given.counter), given.at, before));
        }
        if let Some((s, version)) = chosen.filter(|(s, _)| s.phase() == kessai_api::Phase::PayingByToken) {
            let id = s.id.clone();
            let mut rng = self.random.generator();
            let completed =
                s.complete_by_token(&mut self.ctx(rng.as_mut()), token.id, &given.sealed, token.amount, given.counter);
            match completed {
                Ok((s, _)) => {
                    let r = crate::db::Redemption::paying(token, Some(given.counter), given.at, now, s, version)?;
                    return self.owed_to_replacement::<CenterError>(r).await;
                }
                Err(e) => {
                    tracing::warn!(settlement = %id, token = %token.id, error = %e, "the token cannot pay the bill it was chosen for; its value is owed to the card")
                }
            }
        }
        self.owed_to_replacement::<CenterError>(crate::db::Redemption::of(token, Some(given.counter), given.at, now)?)
            .await
    }

    /// A redemption written for a card no longer active (the provider
    /// honoured it while the card was): what it owes goes to the card's
    /// replacement if the card was replaced meanwhile (a replacement moves
    /// only what was owed before it), else to the card (moved with the
    /// rest when it is replaced).
    pub(crate) async fn owed_to_replacement<E: From<crate::db::DbError> + From<crate::books::BooksError>>(
        &self,
        r: crate::db::Redemption,
    ) -> Result<crate::db::Redemption, E> {
        let card = r.token.card_id;
        let now_at = self.current_card(card).await?;
        if now_at == card {
            return Ok(r);
        }
        tracing::info!(token = %r.token.id, card = %card, to = %now_at, "a redemption for a replaced card: owed to its replacement");
        Ok(r.owing_to(now_at, self.clock.now())?)
    }

    /// The redemption of `token` as the card's collected log proves it (its
    /// REDEEM transaction's record, read R-MACed in this session or an
    /// earlier one), when the card no longer answers for it: it made room
    /// in a full table by dropping the redeemed entry once that record was
    /// collected, so a REDEEM whose first answer was lost meets `6A88`.
    /// What it gave up is the bytes the center stored.
    async fn given_up_by_log(&self, d: &TokenSession, token: TokenId) -> Result<Option<GivenUp>, CenterError> {
        let Some(t) = self.db.token(&token).await?.filter(|t| t.card_id == d.card_id) else { return Ok(None) };
        let (Some(sealed), TokenStatus::Stored) = (t.sealed.clone(), t.status) else { return Ok(None) };
        let tx = hex::encode(t.redeem_tx.as_bytes());
        let proves = |e: &&LogEntry| {
            e.kind == kessai_api::LogKind::TokenRedeemed
                && e.transaction_id == tx
                && e.amount_minor == t.amount.amount_minor()
        };
        let found = match d.collected.iter().find(proves) {
            Some(e) => Some(e.clone()),
            None => self.db.collected_log(&d.card_id).await?.iter().find(proves).cloned(),
        };
        Ok(found.map(|e| GivenUp { token, counter: e.counter, sealed, at: Timestamp::from_unix_s(e.time_unix_s) }))
    }

    /// Stores the finished session `d`, with the provider's verdict on the
    /// token it redeemed, if any.
    async fn finish_token_session(
        &self,
        d: &TokenSession,
        version: i64,
        answer_as: Option<&Answer>,
    ) -> Result<TokenSessionReply, CenterError> {
        // What moved meanwhile is read again: a settlement the token pays
        // (cancelled, abandoned: then the card is owed the value), or the
        // token, redeemed by another finish of the same REDEEM (then this
        // answers what that one did).
        let mut attempt = 0;
        loop {
            let mut d = d.clone();
            let redemption = self.honour(&mut d).await?;
            let fresh = redemption.as_ref().is_some_and(|r| r.before.is_none());
            match self.store_token_session(&d, &[], version, redemption.as_ref(), answer_as).await {
                Err(CenterError::Db(e)) if e.is_retryable() && attempt < crate::limits::STEP_RETRIES_MAX => {
                    attempt += 1
                }
                // The redemption's rows moved, not this session's: read
                // them again (a session that moved is the caller's).
                Err(CenterError::Db(crate::db::DbError::Conflict))
                    if fresh
                        && attempt < crate::limits::STEP_RETRIES_MAX
                        && self.token_session_load(&d.id).await?.1 == version =>
                {
                    attempt += 1
                }
                Ok(reply) => {
                    if let Some(paid) = redemption.and_then(|r| r.paid) {
                        self.count_outcome(&paid.settlement);
                        self.completed.push(crate::delivery::Deliverable::Settlement(Box::new(paid.settlement)));
                    }
                    return Ok(reply);
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn store_token_session(
        &self,
        d: &TokenSession,
        apdus: &[CommandApdu],
        version: i64,
        redemption: Option<&crate::db::Redemption>,
        answer_as: Option<&Answer>,
    ) -> Result<TokenSessionReply, CenterError> {
        let mut answered = self.token_session_answer(d, apdus);
        if d.purpose == TokenPurpose::List && d.phase == TokenSessionPhase::Done {
            answered.on_card = on_card(d, &self.db.tokens_of_card(&d.card_id).await?);
        }
        answered.redeemed = redemption.map(|r| match &r.before {
            Some(before) => TokenRedeemed {
                token_id: r.token.id.to_string(),
                amount: r.token.amount,
                settlement_id: before.settlement_id.clone(),
                owed_id: before.owed.as_ref().map(|(id, _)| id.clone()),
                owed: before.owed.as_ref().map(|(_, amount)| *amount),
            },
            None => TokenRedeemed {
                token_id: r.token.id.to_string(),
                amount: r.token.amount,
                settlement_id: r.paid.as_ref().map(|p| p.settlement.id.to_string()),
                owed_id: r.owed.as_ref().map(|(o, _)| o.id.clone()),
                owed: r.owed.as_ref().map(|(o, _)| o.body.amount),
            },
        });
        let save = answer_as.map(|a| a.saved(&answered)).transpose()?;
        self.db.update_token_session(d, version, redemption, self.clock.now(), save).await?;
        Ok(answered)
    }
}
