//! Card statements: the card's own log, read through a secure session.
//!
//! The log is readable only inside a level-33 session, and only the center
//! can open one, so the wallet asks the center: INITIALIZE UPDATE, then
//! EXTERNAL AUTHENTICATE with a sealed READ LOG, then one sealed READ LOG per
//! page (3 records; each answer's R-MAC chains on its own command) until the
//! card has no more or the page limit is reached. The center unseals each
//! page and returns the records; nothing on the card changes.

use kessai_card::limits::{LOG_CAPACITY, READ_LOG_MAX_RECORDS};
use kessai_card::protocol::{TransferKind, parse_log, read_log_command};
use kessai_core::ids::CardId;
use kessai_core::random::Random;
use kessai_core::time::Timestamp;
use kessai_scp03::{CommandApdu, ResponseApdu};
use serde::{Deserialize, Serialize};

use crate::card_session::{Session, bad_answer, completed};
use crate::purchase::{CardRecord, CardRegistryStatus, Context, StepError};
use crate::runner::run_step;
use crate::security::SealedState;
use crate::service::{Answer, CenterError};

pub use kessai_api::{LogEntry, LogKind, StatementPhase, StatementReply};

/// A log record as the card keeps it, as the cardholder is shown it.
pub fn log_entry(r: &kessai_card::protocol::LogRecord) -> LogEntry {
    LogEntry {
        kind: match r.kind {
            TransferKind::Debit => LogKind::Debit,
            TransferKind::Credit => LogKind::Credit,
            TransferKind::TokenStored => LogKind::TokenStored,
            TransferKind::TokenRedeemed => LogKind::TokenRedeemed,
        },
        transaction_id: hex::encode(r.request.tx_id.0),
        amount_minor: r.request.amount_minor,
        counter: r.counter,
        balance_after_minor: r.balance_after_minor,
        counterpart: hex::encode(r.request.counterpart),
        time_unix_s: r.request.time_unix_s,
    }
}

/// A statement session as stored between the wallet's requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Statement {
    pub id: String,
    pub card_id: CardId,
    pub key_version: u8,
    pub phase: StatementPhase,
    pub scp: Option<SealedState>,
    /// Records read so far, newest first.
    pub entries: Vec<LogEntry>,
    pub created_at: Timestamp,
}

fn page_size() -> u8 {
    // READ_LOG_MAX_RECORDS is 3: fits a u8 by construction.
    u8::try_from(READ_LOG_MAX_RECORDS).unwrap_or(3)
}

impl Statement {
    /// Opens a statement session for card `card_id` under `key_version`
    /// (for a card not registered, the newest the center holds): every card
    /// id alike, so a card id alone tells nothing (M4); whether this card
    /// may read is answered once it proved itself ([`Statement::admit`]).
    pub fn create<R: Random + ?Sized>(
        ctx: &mut Context<'_, R>,
        card_id: CardId,
        key_version: u8,
    ) -> Result<(Statement, CommandApdu), StepError> {
        let mut raw = [0u8; 16];
        ctx.rng.fill_bytes(&mut raw);
        let id = format!("stm_{}", hex::encode(raw));
        let mut s = Statement {
            id,
            card_id,
            key_version,
            phase: StatementPhase::Authenticating,
            scp: None,
            entries: Vec::new(),
            created_at: ctx.now,
        };
        let init = s.session().begin(ctx, key_version)?;
        Ok((s, init))
    }

    /// Whether the card that just proved itself may read its log here:
    /// registered (`card`, as the registry has it) and not reported lost.
    pub fn admit(&self, card: Option<&CardRecord>) -> Result<(), StepError> {
        let card = card.filter(|c| c.id == self.card_id).ok_or(StepError::UnknownCard(self.card_id))?;
        if card.status == CardRegistryStatus::Lost {
            return Err(StepError::CardNotActive(card.id));
        }
        Ok(())
    }

    /// This statement's secure session with its card.
    fn session(&mut self) -> Session<'_> {
        Session::new(&self.card_id, &self.id, &mut self.scp)
    }

    /// Card cryptogram checked; EXTERNAL AUTHENTICATE and the first sealed READ LOG.
    pub fn authenticate<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answer: &ResponseApdu,
    ) -> Result<(Statement, Vec<CommandApdu>), StepError> {
        if self.phase != StatementPhase::Authenticating {
            return Err(StepError::BadCardAnswer("statement is not authenticating".into()));
        }
        let commands = self.session().open(ctx, answer, &[read_log_command(0, page_size())])?;
        self.phase = StatementPhase::Reading;
        Ok((self, commands))
    }

    /// One page: the answers are `[EXTERNAL AUTHENTICATE, READ LOG]` the first
    /// time and `[READ LOG]` after. Returns the next sealed READ LOG, if any.
    pub fn read<R: Random + ?Sized>(
        mut self,
        ctx: &mut Context<'_, R>,
        answers: &[ResponseApdu],
        max_entries: usize,
    ) -> Result<(Statement, Option<CommandApdu>), StepError> {
        if self.phase != StatementPhase::Reading {
            return Err(StepError::BadCardAnswer("statement is not reading".into()));
        }
        let page = match answers {
            [_, _] if self.entries.is_empty() => self.session().after_open(ctx, answers, 1)?.remove(0),
            [page] => self.session().unseal(ctx, page)?,
            _ => return Err(StepError::WrongAnswerCount { expected: 1, got: answers.len() }),
        };
        completed(&page)?;
        let records = parse_log(page.data()).map_err(bad_answer)?;
        let full_page = records.len() == usize::from(page_size());
        self.entries.extend(records.iter().map(log_entry));
        let read_so_far = self.entries.len();
        if !full_page || read_so_far >= max_entries.min(LOG_CAPACITY) {
            // The whole log is read: the center keeps it (in the same
            // write), and tells the card it holds it through the newest
            // record, so the card may drop what is older when its log fills.
            let newest = self.entries.first().map(|e| e.counter).filter(|c| *c > 0);
            let ack = newest.map(|c| self.session().seal(ctx, &kessai_card::protocol::log_collected_command(c)));
            let ack = ack.transpose()?;
            self.phase = StatementPhase::Done;
            self.session().end();
            return Ok((self, ack));
        }
        let skip = u8::try_from(read_so_far).map_err(|_| StepError::BadCardAnswer("log too long".into()))?;
        let next = self.session().seal(ctx, &read_log_command(skip, page_size()))?;
        Ok((self, Some(next)))
    }
}

fn reply(s: &Statement, apdus: &[CommandApdu]) -> StatementReply {
    StatementReply {
        statement_id: s.id.clone(),
        phase: s.phase,
        apdus: apdus.iter().map(|c| hex::encode(c.to_bytes())).collect(),
        entries: (s.phase == StatementPhase::Done).then(|| s.entries.clone()),
        access_token: None,
    }
}

/// Most log records one statement returns.
pub const MAX_STATEMENT_ENTRIES: usize = LOG_CAPACITY;

impl crate::service::Center {
    /// A statement step's answer with its access token (M4).
    fn statement_answer(&self, s: &Statement, apdus: &[CommandApdu]) -> StatementReply {
        StatementReply { access_token: Some(self.security.access_token(&s.id)), ..reply(s, apdus) }
    }

    /// The key version a session with card `card_id` opens under: the
    /// registered card's, else the newest the center holds (every card id
    /// alike, M4).
    pub(crate) async fn session_key_version(&self, card_id: CardId) -> Result<u8, CenterError> {
        Ok(match self.db.card(&card_id).await? {
            Some(card) => card.key_version,
            None => self.security.newest_key_version().ok_or(CenterError::UnknownCard(card_id))?,
        })
    }

    /// POST /v1/cards/{card}/statements: a session to read the card's log.
    pub async fn statement_create(&self, card_id: CardId) -> Result<StatementReply, CenterError> {
        let key_version = self.session_key_version(card_id).await?;
        let mut rng = self.random.generator();
        let (s, init) = Statement::create(&mut self.ctx(rng.as_mut()), card_id, key_version)?;
        self.db.insert_card_session(&s).await?;
        Ok(self.statement_answer(&s, &[init]))
    }

    async fn statement_load(&self, id: &str) -> Result<(Statement, i64), CenterError> {
        self.db
            .card_session::<Statement>(id)
            .await?
            .ok_or_else(|| CenterError::UnknownStatement(id.chars().take(64).collect()))
    }

    pub async fn statement_authenticate(
        &self,
        id: &str,
        answers: Vec<ResponseApdu>,
        answer_as: Option<Answer>,
    ) -> Result<StatementReply, CenterError> {
        let answer = answers.first().ok_or(StepError::WrongAnswerCount { expected: 1, got: 0 })?;
        // Read once for its card; a retried step reads it again.
        let opened = self.statement_load(id).await?;
        let card = self.db.card(&opened.0.card_id).await?;
        let mut first = Some(opened);
        let found: Result<(_, StatementReply), CenterError> = run_step!(
            load: async {
                match first.take() {
                    Some(found) => Ok(found),
                    None => self.statement_load(id).await,
                }
            },
            transition: |statement: Statement| {
                let mut rng = self.random.generator();
                let proven = statement.authenticate(&mut self.ctx(rng.as_mut()), answer)?;
                // The card proved itself: now, and only now, whether it may read.
                proven.0.admit(card.as_ref())?;
                Ok(proven)
            },
            store: |stepped, version| self.store_statement(&stepped.0, &stepped.1, version, answer_as.as_ref()),
        );
        Ok(found?.1)
    }

    /// Stores a statement step and its answer in one transaction.
    async fn store_statement(
        &self,
        s: &Statement,
        apdus: &[CommandApdu],
        version: i64,
        answer_as: Option<&Answer>,
    ) -> Result<StatementReply, CenterError> {
        let answered = self.statement_answer(s, apdus);
        let save = answer_as.map(|a| a.saved(&answered)).transpose()?;
        self.db.update_statement(s, version, self.clock.now(), save).await?;
        Ok(answered)
    }

    pub async fn statement_read(
        &self,
        id: &str,
        answers: Vec<ResponseApdu>,
        answer_as: Option<Answer>,
    ) -> Result<StatementReply, CenterError> {
        let found: Result<(_, StatementReply), CenterError> = run_step!(
            load: self.statement_load(id),
            transition: |statement: Statement| {
                let mut rng = self.random.generator();
                let (s, next) = statement.read(&mut self.ctx(rng.as_mut()), &answers, MAX_STATEMENT_ENTRIES)?;
                Ok::<_, CenterError>((s, next.into_iter().collect::<Vec<_>>()))
            },
            store: |stepped, version| self.store_statement(&stepped.0, &stepped.1, version, answer_as.as_ref()),
        );
        Ok(found?.1)
    }
}
