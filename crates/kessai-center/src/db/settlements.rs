//! Settlements, statements, and the delivery of completions.

use super::group::{Grouper, Step, StepKind, Written};
use super::*;

/// Which settlements [`Db::list_settlements`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementQuery {
    pub card: Option<CardId>,
    pub phase: Option<Phase>,
    /// The store that signed the bill.
    pub store: Option<StoreId>,
    /// Created at or after.
    pub from: Option<Timestamp>,
    /// Created before.
    pub to: Option<Timestamp>,
    /// Only rows after this one in the listing's order (the last row of the
    /// page before).
    pub before: Option<ListCursor>,
    pub limit: i64,
}

impl Default for SettlementQuery {
    fn default() -> SettlementQuery {
        SettlementQuery { card: None, phase: None, store: None, from: None, to: None, before: None, limit: 100 }
    }
}

/// One page of [`Db::list_settlements`].
#[derive(Debug, Clone)]
pub struct SettlementPage {
    pub settlements: Vec<Settlement>,
    /// Where the next page starts, if this one was full.
    pub next: Option<ListCursor>,
}

/// A row's place in a listing: its creation time and id, written
/// `CREATED_AT.ID` on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListCursor {
    pub created_at: i64,
    pub id: String,
}

impl ListCursor {
    /// `CREATED_AT.ID` as [`Display`](std::fmt::Display) writes it: 1 to
    /// 18 digits, then an id the center issues (`stl_` and 32 lowercase hex
    /// digits); anything else is not a cursor.
    pub fn parse(text: &str) -> Option<ListCursor> {
        let (at, id) = text.split_once('.')?;
        if at.is_empty() || at.len() > 18 || !at.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let issued = id
            .strip_prefix("stl_")
            .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        if !issued {
            return None;
        }
        Some(ListCursor { created_at: at.parse().ok()?, id: id.to_owned() })
    }

    /// A cursor of any of the console's listings (`crate::db::Search`):
    /// as [`ListCursor::parse`], the id 1 to 100 letters, digits, `_`,
    /// `-` or `:`.
    pub fn parse_any(text: &str) -> Option<ListCursor> {
        let (at, id) = text.split_once('.')?;
        let fits = |b: u8| b.is_ascii_alphanumeric() || b"_-:".contains(&b);
        if at.is_empty() || at.len() > 18 || !at.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if id.is_empty() || id.len() > 100 || !id.bytes().all(fits) {
            return None;
        }
        Some(ListCursor { created_at: at.parse().ok()?, id: id.to_owned() })
    }
}

impl std::fmt::Display for ListCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.created_at, self.id)
    }
}

pub use kessai_api::BillState;

/// What a settlement's step writes beside its row, in the same
/// transaction.
#[derive(Debug, Default)]
pub struct StepExtras<'a> {
    /// The answer to the request's Idempotency-Key.
    pub response: Option<SavedResponse>,
    /// The step's books entries.
    pub entries: Entries,
    /// The card's log records the step read.
    pub collected: &'a [crate::statement::LogEntry],
    /// The operator's trail row, for a step an operator takes.
    pub trail: Option<TrailEntry>,
}

/// A card session kept between the wallet's requests as one JSON record
/// with a version (a statement, a token session): its table's statements.
pub trait SessionRecord: serde::Serialize + serde::de::DeserializeOwned {
    /// `(id, card_id, record, version 1, created_at)` from `$1..$4`.
    const INSERT: &'static str;
    /// `record, version` of the row `$1`.
    const SELECT: &'static str;
    /// `record = $1, version + 1` of the row `$2` at version `$3`.
    const UPDATE: &'static str;
    fn id(&self) -> &str;
    fn card(&self) -> &CardId;
    fn created_at(&self) -> Timestamp;
}

/// [`SessionRecord`] for `$record`, kept in `$table`.
macro_rules! card_session_table {
    ($record:ty, $table:literal) => {
        impl $crate::db::SessionRecord for $record {
            const INSERT: &'static str = concat!(
                "INSERT INTO ",
                $table,
                " (id, card_id, record, version, created_at) VALUES ($1, $2, $3, 1, $4)"
            );
            const SELECT: &'static str = concat!("SELECT record, version FROM ", $table, " WHERE id = $1");
            const UPDATE: &'static str =
                concat!("UPDATE ", $table, " SET record = $1, version = version + 1 WHERE id = $2 AND version = $3");
            fn id(&self) -> &str {
                &self.id
            }
            fn card(&self) -> &CardId {
                &self.card_id
            }
            fn created_at(&self) -> Timestamp {
                self.created_at
            }
        }
    };
}

card_session_table!(crate::statement::Statement, "center_statements");
card_session_table!(crate::token_session::TokenSession, "center_token_sessions");

impl CenterDb {
    /// Stores a new settlement. If the store already has a settlement for
    /// this bill id, returns that one instead (a duplicate bill).
    pub async fn insert_settlement(
        &self,
        s: &Settlement,
        now: Timestamp,
    ) -> Result<Option<(Settlement, i64)>, DbError> {
        self.insert_settlement_answering(s, now, None, Entries::none()).await
    }

    /// Inserts a new settlement (its bill not seen before) with, in the same
    /// transaction, the books' `entries` (a hold, when the create sealed
    /// its DEBIT already) and `response` as its Idempotency-Key's answer.
    /// If the bill has a settlement already, nothing is written and that
    /// one is returned with its version.
    pub async fn insert_settlement_answering(
        &self,
        s: &Settlement,
        now: Timestamp,
        response: Option<SavedResponse>,
        entries: Entries,
    ) -> Result<Option<(Settlement, i64)>, DbError> {
        let insert = Stmt::new(INSERT_SETTLEMENT_SQL)
            .bind(s.id.as_str().to_owned())
            .bind(s.bill.store.as_str().to_owned())
            .bind(s.bill.bill_id.as_str().to_owned())
            .bind(s.card_id.to_string())
            .bind(s.phase().as_str().to_owned())
            .bind(settlement_record(s)?)
            .bind(to_i64(now.unix_s())?);
        let existing = || {
            Stmt::new("SELECT record, version FROM center_settlements WHERE store = $1 AND bill_id = $2")
                .bind(s.bill.store.as_str().to_owned())
                .bind(s.bill.bill_id.as_str().to_owned())
        };
        let (first_look, existing) = (existing(), existing());
        let (save, stored) = idempotency::saving(response, now)?;
        let guard = (!entries.is_empty())
            .then(|| BillGuard { store: s.bill.store.clone(), bill_id: s.bill.bill_id.as_str().to_owned() });
        let (now_s, what) = (now.unix_s(), s.id.to_string());
        if let Some(group) = &self.group {
            let kind = StepKind::Insert { id: what, insert, existing };
            let step = Step { kind, entries, guard, tidy: Vec::new(), save, now_s };
            let existing = match group.write(step).await? {
                Written::Existing(found) => Some(*found),
                Written::Inserted | Written::Updated => None,
            };
            if existing.is_none() {
                stored.iter().for_each(Stored::mark);
            }
            return Ok(existing);
        }
        let inserted = self
            .write(move |mut conn| {
                Box::pin(async move {
                    if !entries.is_empty() && !conn.is_postgres() {
                        // SQLite shares one transaction among a group of
                        // writes: look before writing anything, so that a
                        // bill seen before or the books refusing leaves it
                        // clean (the writer runs one write at a time).
                        if let Some(found) = conn.fetch_optional(first_look, settlement_row).await? {
                            return Ok(Some(found));
                        }
                    }
                    if let Some(guard) = guard {
                        guard.check(&mut conn).await?;
                    }
                    if conn.is_postgres() || entries.is_empty() {
                        if conn.execute(insert).await? != 1 {
                            return Ok(Some(conn.fetch_one(existing, settlement_row).await?));
                        }
                        conn.books(&entries, now_s).await?;
                    } else {
                        conn.books(&entries, now_s).await?;
                        if conn.execute(insert).await? != 1 {
                            return Err(DbError::Inconsistent(format!("{what} was inserted meanwhile")));
                        }
                    }
                    if let Some(save) = save {
                        conn.execute(save).await?;
                    }
                    Ok(None)
                })
            })
            .await?;
        if inserted.is_none() {
            stored.iter().for_each(Stored::mark);
        }
        Ok(inserted)
    }

    /// A settlement and the version to name when updating it.
    pub async fn settlement(&self, id: &SettlementId) -> Result<Option<(Settlement, i64)>, DbError> {
        let row = sqlx::query("SELECT record, version FROM center_settlements WHERE id = $1")
            .bind(id.as_str().to_owned())
            .fetch_optional(&mut *self.read().await?)
            .await?;
        row.map(|r| settlement_row(&r)).transpose()
    }

    /// Writes `s` if the row is still at `version`.
    pub async fn update_settlement(&self, s: &Settlement, version: i64, now: Timestamp) -> Result<(), DbError> {
        self.update_settlement_answering(s, version, now, StepExtras::default()).await
    }

    /// Writes `s` if the row is still at `version` and, in the same
    /// transaction, applies the step's books `entries` and remembers
    /// `response` as the answer to its Idempotency-Key: the step, its ledger
    /// effect and its stored answer commit together or not at all.
    pub async fn update_settlement_answering(
        &self,
        s: &Settlement,
        version: i64,
        now: Timestamp,
        extras: StepExtras<'_>,
    ) -> Result<(), DbError> {
        let StepExtras { response, entries, collected, trail } = extras;
        let check = Stmt::new("SELECT version FROM center_settlements WHERE id = $1").bind(s.id.as_str().to_owned());
        let update = settlement_update(s, version, now)?;
        let (save, stored) = idempotency::saving(response, now)?;
        let now_s = now.unix_s();
        // A record read again adds nothing, so these may change no row.
        let (also, tidy) = (Vec::new(), super::audit::collect_statements(&s.card_id, collected, now)?);
        // Only the offer enters `offered` (recovery leaves it): the hold,
        // made only if no prepaid payment paid the bill; so does the
        // cardholder's choice of a token to pay it.
        let guard = matches!(s.phase(), Phase::Offered | Phase::PayingByToken).then(|| bill_guard(s));
        let choice = match (s.phase(), s.paid_by_token) {
            (Phase::PayingByToken, Some(token)) => Some(token_choice(&token, &s.id)),
            _ => None,
        };
        let what = s.id.to_string();
        let trail = trail.map(|t| (t, now));
        // A step without a token's choice or an operator's trail is written
        // in a group on PostgreSQL.
        if let (Some(group), None, None) = (&self.group, &choice, &trail)
            && also.is_empty()
            && Grouper::takes(&tidy)
        {
            let kind = StepKind::Update { id: what, version, update };
            group.write(Step { kind, entries, guard, tidy, save, now_s }).await?;
            stored.iter().for_each(Stored::mark);
            return Ok(());
        }
        let step = StepWrite { check, version, entries, now_s, update, also, tidy, save, guard, choice, what, trail };
        self.write(move |mut conn| Box::pin(async move { step.run(&mut conn).await })).await?;
        stored.iter().for_each(Stored::mark);
        Ok(())
    }

    /// Settlements matching `q`, newest first (by creation, then id), at
    /// most `q.limit`. Paging by [`SettlementQuery::before`] (the last row
    /// of the previous page) never skips or repeats a row, whatever is
    /// created meanwhile: new rows sort before the first page.
    pub async fn list_settlements(&self, q: &SettlementQuery) -> Result<SettlementPage, DbError> {
        let limit = q.limit.clamp(1, MAX_LIST);
        let rows = sqlx::query(
            "SELECT record, version, created_at, id FROM center_settlements
             WHERE ($1 IS NULL OR card_id = $1) AND ($2 IS NULL OR phase = $2) AND ($3 IS NULL OR store = $3)
               AND ($4 IS NULL OR created_at >= $4) AND ($5 IS NULL OR created_at < $5)
               AND ($6 IS NULL OR created_at < $6 OR (created_at = $6 AND id < $7))
             ORDER BY created_at DESC, id DESC LIMIT $8",
        )
        .bind(q.card.map(|c| c.to_string()))
        .bind(q.phase.map(|p| p.as_str().to_owned()))
        .bind(q.store.as_ref().map(|s| s.as_str().to_owned()))
        .bind(q.from.map(|t| to_i64(t.unix_s())).transpose()?)
        .bind(q.to.map(|t| to_i64(t.unix_s())).transpose()?)
        .bind(q.before.as_ref().map(|c| c.created_at))
        .bind(q.before.as_ref().map(|c| c.id.clone()).unwrap_or_default())
        .bind(limit)
        .fetch_all(&mut *self.read().await?)
        .await?;
        let settlements = rows.iter().map(|r| settlement_row(r).map(|(s, _)| s)).collect::<Result<Vec<_>, _>>()?;
        // The last row's place, from the columns the listing sorts by.
        let next = match rows.last() {
            Some(r) if rows.len() == usize::try_from(limit).unwrap_or(usize::MAX) => {
                Some(ListCursor { created_at: r.try_get("created_at")?, id: r.try_get("id")? })
            }
            _ => None,
        };
        Ok(SettlementPage { settlements, next })
    }

    /// What became of a store's bill: paid from a prepaid card, or the
    /// phase of the one settlement the bill may have (`UNIQUE (store,
    /// bill_id)`), or nothing yet.
    pub async fn bill_state(&self, store: &StoreId, bill_id: &str) -> Result<BillState, DbError> {
        let mut conn = self.read().await?;
        let paid = sqlx::query("SELECT id FROM center_prepaid_payments WHERE store = $1 AND bill_id = $2")
            .bind(store.as_str().to_owned())
            .bind(bill_id.to_owned())
            .fetch_optional(&mut *conn)
            .await?;
        if paid.is_some() {
            return Ok(BillState::Paid);
        }
        let row = sqlx::query("SELECT phase FROM center_settlements WHERE store = $1 AND bill_id = $2")
            .bind(store.as_str().to_owned())
            .bind(bill_id.to_owned())
            .fetch_optional(&mut *conn)
            .await?;
        let Some(row) = row else { return Ok(BillState::None) };
        let phase: String = row.try_get("phase")?;
        Ok(match Phase::parse(&phase) {
            Some(Phase::Completed) => BillState::Paid,
            Some(Phase::Voided) => BillState::Voided,
            Some(_) => BillState::Open,
            None => return Err(DbError::Corrupt(format!("settlement phase {phase:?}"))),
        })
    }

    /// Deletes statements opened before `before`, at most `limit` (L1: a
    /// statement holds the card's whole log, which its holder read then).
    pub async fn purge_statements(&self, before: Timestamp, limit: i64) -> Result<u64, DbError> {
        let purge = Stmt::new(
            "DELETE FROM center_statements WHERE id IN
             (SELECT id FROM center_statements WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
        )
        .bind(to_i64(before.unix_s())?)
        .bind(limit.max(1));
        self.execute(purge).await
    }

    /// Stores a new card session's record (version 1).
    pub async fn insert_card_session<T: SessionRecord>(&self, record: &T) -> Result<(), DbError> {
        let query = Stmt::new(T::INSERT)
            .bind(record.id().to_owned())
            .bind(record.card().to_string())
            .bind(serde_json::to_string(record).map_err(corrupt)?)
            .bind(to_i64(record.created_at().unix_s())?);
        self.execute(query).await?;
        Ok(())
    }

    /// A card session's record and its version.
    pub async fn card_session<T: SessionRecord>(&self, id: &str) -> Result<Option<(T, i64)>, DbError> {
        let row = sqlx::query(T::SELECT).bind(id.to_owned()).fetch_optional(&mut *self.read().await?).await?;
        row.map(|r| {
            let record: String = r.try_get("record")?;
            Ok((serde_json::from_str(&record).map_err(corrupt)?, r.try_get("version")?))
        })
        .transpose()
    }

    /// Writes `record` if its row is still at `version`, with `also` (what
    /// the step changes beside it), the deposit token it `redeems` if any,
    /// and `response` for its Idempotency-Key, in one transaction.
    pub(super) async fn update_card_session<T: SessionRecord>(
        &self,
        record: &T,
        version: i64,
        also: Vec<Stmt>,
        redeems: Option<super::tokens::RedemptionWrite>,
        now: Timestamp,
        response: Option<SavedResponse>,
    ) -> Result<(), DbError> {
        let query = Stmt::new(T::UPDATE)
            .bind(serde_json::to_string(record).map_err(corrupt)?)
            .bind(record.id().to_owned())
            .bind(version);
        let (save, stored) = idempotency::saving(response, now)?;
        let now_s = now.unix_s();
        self.write(move |mut conn| {
            Box::pin(async move {
                // A redemption's checks read only, before anything is
                // written: refused or lost, the transaction stays clean.
                let mut redeems = redeems;
                if let Some(r) = &mut redeems {
                    r.check(&mut conn).await?;
                }
                if conn.execute(query).await? != 1 {
                    return Err(DbError::Conflict);
                }
                // The card's log records after the books, as every write
                // takes them (one lock order with the group writer's).
                let (logs, rows): (Vec<Stmt>, Vec<Stmt>) =
                    also.into_iter().partition(|s| s.sql() == super::audit::CARD_LOG_SQL);
                for statement in rows {
                    conn.execute(statement).await?;
                }
                if let Some(r) = redeems {
                    r.write(&mut conn, now_s).await?;
                }
                for statement in logs {
                    conn.execute(statement).await?;
                }
                if let Some(save) = save {
                    conn.execute(save).await?;
                }
                Ok(())
            })
        })
        .await?;
        stored.iter().for_each(Stored::mark);
        Ok(())
    }

    /// Writes statement `s` (see [`CenterDb::update_card_session`]); once it is
    /// done, the card's log it read is collected with it (`center_card_log`,
    /// for the examination of card logs).
    pub async fn update_statement(
        &self,
        s: &crate::statement::Statement,
        version: i64,
        now: Timestamp,
        response: Option<SavedResponse>,
    ) -> Result<(), DbError> {
        let collect = match s.phase {
            crate::statement::StatementPhase::Done => super::audit::collect_statements(&s.card_id, &s.entries, now)?,
            _ => Vec::new(),
        };
        self.update_card_session(s, version, collect, None, now, response).await
    }

    /// Completed settlements whose receipt is not stored yet, oldest first
    /// (audit and tests; delivery takes [`CenterDb::due_deliveries`]).
    pub async fn undelivered(&self, limit: i64) -> Result<Vec<Settlement>, DbError> {
        let rows = sqlx::query(
            "SELECT record, version FROM center_settlements WHERE phase = 'completed' AND delivered = 0
             ORDER BY updated_at, id LIMIT $1",
        )
        .bind(limit.clamp(1, MAX_LIST))
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(|r| settlement_row(r).map(|(s, _)| s)).collect()
    }

    /// Undelivered completions due for an attempt at `now`, the longest
    /// due first. A row whose record cannot be read is logged and passed
    /// over, not left to stop every later sweep.
    pub async fn due_deliveries(&self, now: Timestamp, limit: i64) -> Result<Vec<DueDelivery>, DbError> {
        let rows = sqlx::query(
            "SELECT id, record, version, delivery_due, delivery_attempts FROM center_settlements
             WHERE phase = 'completed' AND delivered = 0 AND delivery_due <= $1 ORDER BY delivery_due, id LIMIT $2",
        )
        .bind(to_i64(now.unix_s())?)
        .bind(limit.clamp(1, MAX_LIST))
        .fetch_all(&mut *self.read().await?)
        .await?;
        let mut due = Vec::with_capacity(rows.len());
        for r in &rows {
            match settlement_row(r) {
                Ok((settlement, _)) => due.push(DueDelivery {
                    settlement,
                    due: r.required_int("delivery_due")?,
                    attempts: to_u64(r.required_int("delivery_attempts")?)?,
                }),
                Err(e) => {
                    let id = r.required_text("id")?;
                    tracing::error!(settlement = %id, error = %e, "undelivered completion cannot be read");
                }
            }
        }
        Ok(due)
    }

    /// Takes a due delivery for this instance until `until`: true if it was
    /// still due as read (`due`), so of concurrent sweeps exactly one wins.
    pub async fn claim_delivery(&self, d: &DueDelivery, until: Timestamp) -> Result<bool, DbError> {
        let claim = Stmt::new(
            "UPDATE center_settlements SET delivery_due = $1
             WHERE id = $2 AND phase = 'completed' AND delivered = 0 AND delivery_due = $3",
        )
        .bind(to_i64(until.unix_s())?)
        .bind(d.settlement.id.as_str().to_owned())
        .bind(d.due);
        Ok(self.execute(claim).await? == 1)
    }

    /// A failed attempt: due again at `next`, one more attempt counted.
    pub async fn delivery_failed(&self, id: &SettlementId, next: Timestamp) -> Result<(), DbError> {
        let failed = Stmt::new(
            "UPDATE center_settlements SET delivery_due = $1, delivery_attempts = delivery_attempts + 1
             WHERE id = $2 AND delivered = 0",
        )
        .bind(to_i64(next.unix_s())?)
        .bind(id.as_str().to_owned());
        self.execute(failed).await?;
        Ok(())
    }
}

/// An undelivered completion due for an attempt, as read.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub settlement: Settlement,
    /// When it became due (what a claim compares).
    pub due: i64,
    /// Attempts that failed so far.
    pub attempts: u64,
}

/// Writes settlement `s` over its row if the row is still at `version`.
/// A new settlement; nothing if its bill has one.
pub(super) const INSERT_SETTLEMENT_SQL: &str = "INSERT INTO center_settlements (id, store, bill_id, card_id, phase, \
     record, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7) \
     ON CONFLICT (store, bill_id) DO NOTHING";

/// A settlement's compare-and-set.
pub(super) const UPDATE_SETTLEMENT_SQL: &str = "UPDATE center_settlements SET phase = $1, record = $2, \
     version = version + 1, updated_at = $3, delivered = $6, delivery_due = $7 WHERE id = $4 AND version = $5";

pub(super) fn settlement_update(s: &Settlement, version: i64, now: Timestamp) -> Result<Stmt, DbError> {
    Ok(Stmt::new(UPDATE_SETTLEMENT_SQL)
        .bind(s.phase().as_str().to_owned())
        .bind(settlement_record(s)?)
        .bind(to_i64(now.unix_s())?)
        .bind(s.id.as_str().to_owned())
        .bind(version)
        .bind(i64::from(s.receipt_token().is_some()))
        // The instance whose step completes it delivers it at once; the
        // others' sweeps take it only once this lease is over.
        .bind(to_i64(now.unix_s().saturating_add(crate::limits::DELIVERY_LEASE_S))?))
}

/// The cardholder's choice of a token to pay a settlement's bill, in the
/// settlement's write.
pub(super) struct TokenChoice {
    token: String,
    settlement: String,
}

fn token_choice(token: &kessai_core::token::TokenId, id: &SettlementId) -> TokenChoice {
    TokenChoice { token: token.to_string(), settlement: id.as_str().to_owned() }
}

impl TokenChoice {
    /// The token still stored on the card and chosen by no other
    /// settlement still waiting for it: then chosen by this one. Its row is
    /// read locked first on PostgreSQL (a redemption or another choice
    /// commits before this reads it, or waits), and the other settlement's
    /// phase is read after, so it is seen as committed.
    pub(super) async fn apply(self, conn: &mut Exec<'_>) -> Result<(), DbError> {
        let refused = || DbError::BooksRefused { what: "the token's choice", code: "token_not_stored" };
        let sql = if conn.is_postgres() {
            "SELECT status, chosen_by FROM center_tokens WHERE id = $1 FOR UPDATE"
        } else {
            "SELECT status, chosen_by FROM center_tokens WHERE id = $1"
        };
        let read = Stmt::new(sql).bind(self.token.clone());
        let found = conn.fetch_optional(read, |r| Ok((r.required_text("status")?, r.text("chosen_by")?))).await?;
        let Some((status, chosen)) = found else { return Err(refused()) };
        if status != "stored" {
            return Err(refused());
        }
        if let Some(other) = chosen.filter(|other| *other != self.settlement) {
            let phase = Stmt::new("SELECT phase FROM center_settlements WHERE id = $1").bind(other);
            if conn.fetch_optional(phase, |r| r.required_text("phase")).await?.as_deref() == Some("paying_by_token") {
                return Err(refused());
            }
        }
        let choose = Stmt::new("UPDATE center_tokens SET chosen_by = $1 WHERE id = $2 AND status = 'stored'")
            .bind(self.settlement)
            .bind(self.token);
        if conn.execute(choose).await? != 1 {
            return Err(refused());
        }
        Ok(())
    }
}

/// The check that no prepaid payment paid settlement `s`'s bill.
pub(super) fn bill_guard(s: &Settlement) -> BillGuard {
    BillGuard { store: s.bill.store.clone(), bill_id: s.bill.bill_id.as_str().to_owned() }
}
