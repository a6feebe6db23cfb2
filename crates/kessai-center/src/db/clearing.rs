//! Clearing (#19): what the center owes each store, item by item
//! (`center_payable_items`, written with the books' entries that move a
//! store's payable), clearing runs, payouts and what the bank said of them.

use kessai_core::Currency;
use kessai_core::ids::StoreId;
use kessai_core::time::Timestamp;
use sqlx::Row;

use super::{CenterDb, Columns, DbError, MAX_LIST, TrailEntry, append_trail, corrupt, to_i64, to_u64};
use crate::books::Entries;
use crate::writer::{Exec, Stmt};

/// A clearing run, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub id: String,
    pub cutoff: Timestamp,
    /// `running` or `done`.
    pub status: String,
    pub claimed_by: String,
    pub claimed_until: Timestamp,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// Who may work on a run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunClaim {
    /// This caller holds it (until its lease ends).
    Claimed(RunRow),
    /// It is done: nothing to do.
    Done(RunRow),
    /// Another instance holds it.
    Held(RunRow),
}

/// One payout, as stored and as its store reads it (`GET /v1/payouts`).
pub use kessai_api::views::Payout as PayoutRow;

/// One item of a store's payable, as it entered a payout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRow {
    pub id: String,
    pub kind: String,
    pub reference: String,
    /// Positive: owed to the store; negative: taken off.
    pub amount_minor: i64,
    pub at: Timestamp,
}

/// What clearing one store asks of the database.
#[derive(Debug, Clone)]
pub struct ClearStore {
    pub run_id: String,
    pub holder: String,
    pub payout_id: String,
    pub bank_ref: String,
    pub store: StoreId,
    pub currency: Currency,
    pub cutoff: Timestamp,
    pub payee_account: String,
    pub fee_bp: u32,
    pub fee_fixed_minor: u64,
    /// The store is paid on claim: only purchases its accepted claims
    /// named are taken (refunds and the rest always are).
    pub claimed_only: bool,
}

/// What clearing one store did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleared {
    /// A payout made now.
    Paid(Box<PayoutRow>),
    /// This run paid the store before (a crash, another instance).
    Before,
    /// What is open nets to nothing or less: carried to a later run.
    Carried { net_minor: i64 },
}

/// What the bank said of a payout, once per entry of its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutEvent {
    pub entry_key: String,
    pub file: String,
    pub bank_ref: String,
    /// `settled`, `failed`, or `review` (recorded for the operator only).
    pub status: String,
    pub reason: Option<String>,
}

/// What recording a bank's word on a payout did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventTaken {
    /// Recorded with its effect (the payout settled or failed).
    Applied,
    /// Recorded for the operator; the payout unchanged.
    Review,
    /// This entry was imported before: nothing changed.
    Before,
}

/// The effect of a bank's word: the payout's new status and the books.
pub type OutcomeEffect = Box<dyn FnOnce(&PayoutRow) -> Result<(String, Entries), DbError> + Send>;

/// Whether a bank file's entry was taken before.
pub(super) fn event_seen(event: &PayoutEvent) -> Stmt {
    Stmt::new("SELECT entry_key FROM center_payout_events WHERE entry_key = $1").bind(event.entry_key.clone())
}

/// Records a bank file's entry as taken, with what it did (`status`) to
/// the payout or payback it quotes (`paid`), if any.
pub(super) fn record_event(
    event: &PayoutEvent,
    paid: Option<String>,
    status: String,
    reason: Option<String>,
    now: i64,
) -> Stmt {
    Stmt::new(
        "INSERT INTO center_payout_events (entry_key, file, bank_ref, payout_id, status, reason, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(event.entry_key.clone())
    .bind(event.file.clone())
    .bind(event.bank_ref.clone())
    .bind(paid)
    .bind(status)
    .bind(reason)
    .bind(now)
}

/// Whether run `run` is still held by `holder` (a write of the run checks
/// it in its transaction).
pub(super) fn run_held(run: &str, holder: &str) -> Stmt {
    Stmt::new("SELECT id FROM center_clearing_runs WHERE id = $1 AND claimed_by = $2 AND status = 'running'")
        .bind(run.to_owned())
        .bind(holder.to_owned())
}

fn ts(v: i64) -> Result<Timestamp, DbError> {
    Ok(Timestamp::from_unix_s(to_u64(v)?))
}

fn run_row(r: &dyn Columns) -> Result<RunRow, DbError> {
    Ok(RunRow {
        id: r.required_text("id")?,
        cutoff: ts(r.required_int("cutoff")?)?,
        status: r.required_text("status")?,
        claimed_by: r.required_text("claimed_by")?,
        claimed_until: ts(r.required_int("claimed_until")?)?,
        created_at: ts(r.required_int("created_at")?)?,
        finished_at: r.int("finished_at")?.map(ts).transpose()?,
    })
}

/// A payout row's columns, as [`payout_row`] reads them.
macro_rules! payout_columns {
    () => {
        "id, run_id, store, currency, gross_minor, refunds_minor, other_minor, fees_minor, amount_minor, \
         items, fee_bp, fee_fixed_minor, payee_account, bank_ref, status, reason, created_at, updated_at"
    };
}

const PAYOUT_COLUMNS: &str = payout_columns!();

fn payout_row(r: &dyn Columns) -> Result<PayoutRow, DbError> {
    let u = |name: &str| -> Result<u64, DbError> { to_u64(r.required_int(name)?) };
    Ok(PayoutRow {
        id: r.required_text("id")?,
        run_id: r.required_text("run_id")?,
        store: StoreId::parse(&r.required_text("store")?).map_err(corrupt)?,
        currency: Currency::parse(&r.required_text("currency")?).map_err(corrupt)?,
        gross_minor: u("gross_minor")?,
        refunds_minor: u("refunds_minor")?,
        other_minor: r.required_int("other_minor")?,
        fees_minor: u("fees_minor")?,
        amount_minor: u("amount_minor")?,
        items: u("items")?,
        fee_bp: u32::try_from(u("fee_bp")?).map_err(corrupt)?,
        fee_fixed_minor: u("fee_fixed_minor")?,
        payee_account: r.required_text("payee_account")?,
        bank_ref: r.required_text("bank_ref")?,
        status: r.required_text("status")?,
        reason: r.text("reason")?,
        created_at: ts(r.required_int("created_at")?)?,
        updated_at: ts(r.required_int("updated_at")?)?,
    })
}

fn item_row(r: &dyn Columns) -> Result<ItemRow, DbError> {
    Ok(ItemRow {
        id: r.required_text("id")?,
        kind: r.required_text("kind")?,
        reference: r.required_text("reference")?,
        amount_minor: r.required_int("amount_minor")?,
        at: ts(r.required_int("at")?)?,
    })
}

/// A fee on one item: the percentage rounded half up to the minor unit,
/// plus the fixed part, never more than the item. Only purchases and
/// payments bear a fee; a refund gives none back.
pub fn item_fee(kind: &str, amount_minor: i64, fee_bp: u32, fee_fixed_minor: u64) -> u64 {
    if !matches!(kind, "purchase" | "prepaid_payment") || amount_minor <= 0 {
        return 0;
    }
    let amount = amount_minor.unsigned_abs();
    let percent = (u128::from(amount) * u128::from(fee_bp) + 5_000) / 10_000;
    let fee = percent.saturating_add(u128::from(fee_fixed_minor));
    u64::try_from(fee.min(u128::from(amount))).unwrap_or(amount)
}

/// What a payout of some items comes to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Purchases and payments.
    pub gross: u64,
    /// Refunds of them.
    pub refunds: u64,
    /// Everything else, signed: refunds cancelled, payouts returned and
    /// put back, a balance carried from before clearing existed.
    pub other: i64,
    pub fees: u64,
    /// gross - refunds + other - fees.
    pub net: i64,
}

/// The totals of `items` (kind, signed amount) under a fee schedule.
pub fn payout_totals(items: &[(String, i64)], fee_bp: u32, fee_fixed_minor: u64) -> Totals {
    let mut t = Totals::default();
    for (kind, amount) in items {
        match kind.as_str() {
            "purchase" | "prepaid_payment" if *amount > 0 => {
                t.gross = t.gross.saturating_add(amount.unsigned_abs());
                t.fees = t.fees.saturating_add(item_fee(kind, *amount, fee_bp, fee_fixed_minor));
            }
            "refund" | "prepaid_refund" if *amount < 0 => t.refunds = t.refunds.saturating_add(amount.unsigned_abs()),
            _ => t.other = t.other.saturating_add(*amount),
        }
    }
    let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    t.net = signed(t.gross).saturating_sub(signed(t.refunds)).saturating_add(t.other).saturating_sub(signed(t.fees));
    t
}

impl CenterDb {
    /// What stores were owed in books merged from a separate ledger file
    /// becomes an item each (as schema v8 did for the books it found).
    pub async fn open_payables(&self) -> Result<(), DbError> {
        let stores: Vec<String> =
            sqlx::query_scalar("SELECT id FROM center_stores ORDER BY id").fetch_all(&mut *self.read().await?).await?;
        let currencies: Vec<String> = sqlx::query_scalar(
            "SELECT currency FROM center_cards UNION SELECT currency FROM center_prepaid_cards ORDER BY 1",
        )
        .fetch_all(&mut *self.read().await?)
        .await?;
        let mut opening = Vec::new();
        for store in stores.iter().filter_map(|s| StoreId::parse(s).ok()) {
            for currency in currencies.iter().filter_map(|c| Currency::parse(c).ok()) {
                let found = self
                    .ledger()
                    .lookup_accounts(&crate::books::store_payable_ids(&store, currency))
                    .await
                    .map_err(DbError::Books)?;
                let open = found.iter().fold(0i64, |open, a| {
                    let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
                    open.saturating_add(signed(a.credits_posted_minor))
                        .saturating_sub(signed(a.debits_posted_minor))
                        .saturating_sub(signed(a.debits_pending_minor))
                });
                if open != 0 {
                    opening.push(
                        Stmt::new(
                            "INSERT INTO center_payable_items (id, store, currency, kind, reference, amount_minor, at)
                             SELECT $1, $2, $3, 'opening_balance', 'before clearing', $4, 0
                             WHERE NOT EXISTS (SELECT 1 FROM center_payable_items WHERE id = $1 AND store = $2)",
                        )
                        .bind(format!("opening:{store}/{currency}"))
                        .bind(store.as_str().to_owned())
                        .bind(currency.code().to_owned())
                        .bind(open),
                    );
                }
            }
        }
        self.write(move |mut conn| {
            Box::pin(async move {
                for insert in opening {
                    conn.execute(insert).await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Synthetic stores and purchase items for `kessai bench clearing`
    /// (`crate::clearing::seed_for_bench`).
    pub async fn seed_bench(&self, stores: u32, settlements: u64, at: Timestamp) -> Result<(), DbError> {
        let shops = Stmt::new(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1)
             INSERT INTO center_stores (id, name, mall, notify_url, client_name, bank_account, created_at)
             SELECT 'bench-' || CAST(i AS TEXT), 'Bench store ' || CAST(i AS TEXT), NULL, NULL, NULL,
             'zengin:0001-001-1-1234567:ﾍﾞﾝﾁ', $2 FROM n",
        )
        .bind(i64::from(stores))
        .bind(to_i64(at.unix_s())?);
        let items = Stmt::new(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1)
             INSERT INTO center_payable_items (id, store, currency, kind, reference, amount_minor, at)
             SELECT 'bench-item-' || CAST(i AS TEXT), 'bench-' || CAST(i % $2 AS TEXT), 'JPY', 'purchase',
             'bench', 100 + (i % 9901), $3 FROM n",
        )
        .bind(to_i64(settlements)?)
        .bind(i64::from(stores.max(1)))
        .bind(to_i64(at.unix_s())?);
        self.write(move |mut conn| {
            Box::pin(async move {
                conn.execute(shops).await?;
                conn.execute(items).await?;
                Ok(())
            })
        })
        .await
    }

    /// What is open per store (JPY), for the bench's books.
    pub async fn open_by_store(&self) -> Result<Vec<(StoreId, u64)>, DbError> {
        let rows = sqlx::query(
            "SELECT store, CAST(SUM(amount_minor) AS BIGINT) AS open FROM center_payable_items
             WHERE payout_id IS NULL AND currency = 'JPY' GROUP BY store ORDER BY store",
        )
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter()
            .map(|r| {
                let store: String = r.try_get("store")?;
                let open: i64 = r.try_get("open")?;
                Ok((StoreId::parse(&store).map_err(corrupt)?, to_u64(open)?))
            })
            .collect()
    }

    /// Creates run `id` (cutoff `cutoff`) if it is not there and claims it
    /// for `holder` until `until`, unless it is done or another holder's
    /// lease has not ended.
    pub async fn claim_clearing_run(
        &self,
        id: &str,
        cutoff: Timestamp,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<RunClaim, DbError> {
        let insert = Stmt::new(
            "INSERT INTO center_clearing_runs (id, cutoff, status, claimed_by, claimed_until, created_at)
             VALUES ($1, $2, 'running', $3, $4, $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id.to_owned())
        .bind(to_i64(cutoff.unix_s())?)
        .bind(holder.to_owned())
        .bind(to_i64(until.unix_s())?)
        .bind(to_i64(now.unix_s())?);
        let take = Stmt::new(
            "UPDATE center_clearing_runs SET claimed_by = $2, claimed_until = $3
             WHERE id = $1 AND status = 'running' AND (claimed_by = $2 OR claimed_until < $4)",
        )
        .bind(id.to_owned())
        .bind(holder.to_owned())
        .bind(to_i64(until.unix_s())?)
        .bind(to_i64(now.unix_s())?);
        let read = Stmt::new(
            "SELECT id, cutoff, status, claimed_by, claimed_until, created_at, finished_at
             FROM center_clearing_runs WHERE id = $1",
        )
        .bind(id.to_owned());
        let holder = holder.to_owned();
        self.write(move |mut conn| {
            Box::pin(async move {
                conn.execute(insert).await?;
                let took = conn.execute(take).await?;
                let run = conn.fetch_one(read, run_row).await?;
                Ok(if run.status == "done" {
                    RunClaim::Done(run)
                } else if took == 1 && run.claimed_by == holder {
                    RunClaim::Claimed(run)
                } else {
                    RunClaim::Held(run)
                })
            })
        })
        .await
    }

    /// Ends run `id` (held by `holder`).
    pub async fn finish_clearing_run(&self, id: &str, holder: &str, now: Timestamp) -> Result<bool, DbError> {
        let done = Stmt::new(
            "UPDATE center_clearing_runs SET status = 'done', finished_at = $3
             WHERE id = $1 AND claimed_by = $2 AND status = 'running'",
        )
        .bind(id.to_owned())
        .bind(holder.to_owned())
        .bind(to_i64(now.unix_s())?);
        self.write(move |mut conn| Box::pin(async move { Ok(conn.execute(done).await? == 1) })).await
    }

    pub async fn clearing_run(&self, id: &str) -> Result<Option<RunRow>, DbError> {
        self.read_one(
            "SELECT id, cutoff, status, claimed_by, claimed_until, created_at, finished_at
             FROM center_clearing_runs WHERE id = $1",
            &[id],
            run_row,
        )
        .await
    }

    /// Stores and currencies with items open at `cutoff`, in order, after
    /// `after`, at most `limit`.
    pub async fn stores_to_clear(
        &self,
        cutoff: Timestamp,
        after: Option<&(StoreId, Currency)>,
        limit: i64,
    ) -> Result<Vec<(StoreId, Currency)>, DbError> {
        let (store, currency) =
            after.map_or((String::new(), String::new()), |(s, c)| (s.as_str().to_owned(), c.code().to_owned()));
        let rows = sqlx::query(
            "SELECT DISTINCT store, currency FROM center_payable_items
             WHERE payout_id IS NULL AND at <= $1 AND (store > $2 OR (store = $2 AND currency > $3))
             ORDER BY store, currency LIMIT $4",
        )
        .bind(to_i64(cutoff.unix_s())?)
        .bind(store)
        .bind(currency)
        .bind(limit)
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter()
            .map(|r| {
                let store: String = r.try_get("store")?;
                let currency: String = r.try_get("currency")?;
                Ok((StoreId::parse(&store).map_err(corrupt)?, Currency::parse(&currency).map_err(corrupt)?))
            })
            .collect()
    }

    /// Clears each of `stores` in one transaction: unless this run paid
    /// the store before, takes every item open at the cutoff into a
    /// payout, with `books` (given the payout) moving the store's payable
    /// to payouts in transit and fees. A store whose items net to nothing
    /// or less keeps them open. Fails (nothing written) if the run is no
    /// longer held by `holder`.
    pub async fn clear_stores(
        &self,
        stores: Vec<ClearStore>,
        books: fn(&PayoutRow) -> Result<Entries, DbError>,
        now: Timestamp,
    ) -> Result<Vec<Cleared>, DbError> {
        let now_s = now.unix_s();
        let now_i = to_i64(now_s)?;
        self.write(move |mut conn| {
            Box::pin(async move {
                let mut out = Vec::with_capacity(stores.len());
                if let Some(first) = stores.first() {
                    let held = run_held(&first.run_id, &first.holder);
                    if conn.fetch_optional(held, |r| r.required_text("id")).await?.is_none() {
                        return Err(DbError::Conflict);
                    }
                }
                for s in stores {
                    out.push(clear_one(&mut conn, s, books, now_i, now_s).await?);
                }
                Ok(out)
            })
        })
        .await
    }

    /// Payouts, of one run or all, oldest first, at most `limit`.
    pub async fn payouts(
        &self,
        run: Option<&str>,
        store: Option<&StoreId>,
        limit: i64,
    ) -> Result<Vec<PayoutRow>, DbError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PAYOUT_COLUMNS} FROM center_payouts WHERE ($1 = '' OR run_id = $1) AND ($2 = '' OR store = $2)
             ORDER BY created_at, id LIMIT $3"
        )))
        .bind(run.unwrap_or_default().to_owned())
        .bind(store.map(|s| s.as_str().to_owned()).unwrap_or_default())
        .bind(limit)
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(|r| payout_row(r)).collect()
    }

    /// Payouts the bank rejected or gave back, newest first: the console's
    /// queue (their amounts are on the stores' payables again).
    pub async fn failed_payouts(&self, limit: i64) -> Result<Vec<PayoutRow>, DbError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PAYOUT_COLUMNS} FROM center_payouts WHERE status = 'failed' ORDER BY updated_at DESC, id DESC
             LIMIT $1"
        )))
        .bind(limit.clamp(1, MAX_LIST))
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(|r| payout_row(r)).collect()
    }

    /// Whether any payout of `store` failed.
    pub async fn has_failed_payout(&self, store: &StoreId) -> Result<bool, DbError> {
        let found = sqlx::query("SELECT id FROM center_payouts WHERE store = $1 AND status = 'failed' LIMIT 1")
            .bind(store.as_str().to_owned())
            .fetch_optional(&mut *self.read().await?)
            .await?;
        Ok(found.is_some())
    }

    /// Sets store `store`'s bank account to `account` if it is still
    /// `was` (empty: none), with the operator's trail row, in one
    /// transaction; `false` (nothing written) if it changed meanwhile or
    /// there is no such store.
    pub async fn set_bank_account(
        &self,
        store: &StoreId,
        was: &str,
        account: &str,
        now: Timestamp,
        trail: TrailEntry,
    ) -> Result<bool, DbError> {
        let set =
            Stmt::new("UPDATE center_stores SET bank_account = $1 WHERE id = $2 AND COALESCE(bank_account, '') = $3")
                .bind(account.to_owned())
                .bind(store.as_str().to_owned())
                .bind(was.to_owned());
        self.write(move |mut conn| {
            Box::pin(async move {
                if conn.execute(set).await? != 1 {
                    return Ok(false);
                }
                append_trail(&mut conn, &trail, now).await?;
                Ok(true)
            })
        })
        .await
    }

    /// A store's payouts, newest first, at most `limit`.
    pub async fn store_payouts(&self, store: &StoreId, limit: i64) -> Result<Vec<PayoutRow>, DbError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PAYOUT_COLUMNS} FROM center_payouts WHERE store = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
        )))
        .bind(store.as_str().to_owned())
        .bind(limit)
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(|r| payout_row(r)).collect()
    }

    pub async fn payout(&self, id: &str) -> Result<Option<PayoutRow>, DbError> {
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {PAYOUT_COLUMNS} FROM center_payouts WHERE id = $1")))
                .bind(id.to_owned())
                .fetch_all(&mut *self.read().await?)
                .await?;
        rows.first().map(|r| payout_row(r)).transpose()
    }

    /// The items a payout took, oldest first.
    pub async fn payout_items(&self, payout: &str) -> Result<Vec<ItemRow>, DbError> {
        let rows = sqlx::query(
            "SELECT id, kind, reference, amount_minor, at FROM center_payable_items WHERE payout_id = $1
             ORDER BY at, id",
        )
        .bind(payout.to_owned())
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(|r| item_row(r)).collect()
    }

    /// What is open on a store's payable (not yet in a payout): the sum of
    /// its items.
    pub async fn open_payable(&self, store: &StoreId, currency: Currency) -> Result<i64, DbError> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) AS open FROM center_payable_items
             WHERE store = $1 AND currency = $2 AND payout_id IS NULL",
        )
        .bind(store.as_str().to_owned())
        .bind(currency.code().to_owned())
        .fetch_one(&mut *self.read().await?)
        .await?;
        Ok(row.try_get("open")?)
    }

    /// A store's fee schedule for `currency`, if one was set.
    pub async fn store_fee(&self, store: &StoreId, currency: Currency) -> Result<Option<(u32, u64)>, DbError> {
        self.read_one(
            "SELECT percent_bp, fixed_minor FROM center_store_fees WHERE store = $1 AND currency = $2",
            &[store.as_str(), currency.code()],
            |r| {
                Ok((
                    u32::try_from(r.required_int("percent_bp")?).map_err(corrupt)?,
                    to_u64(r.required_int("fixed_minor")?)?,
                ))
            },
        )
        .await
    }

    /// Sets a store's fee schedule for `currency` (from the next payout).
    pub async fn set_store_fee(
        &self,
        store: &StoreId,
        currency: Currency,
        percent_bp: u32,
        fixed_minor: u64,
        now: Timestamp,
    ) -> Result<(), DbError> {
        let set = Stmt::new(
            "INSERT INTO center_store_fees (store, currency, percent_bp, fixed_minor, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (store, currency) DO UPDATE SET percent_bp = $3, fixed_minor = $4, updated_at = $5",
        )
        .bind(store.as_str().to_owned())
        .bind(currency.code().to_owned())
        .bind(i64::from(percent_bp))
        .bind(to_i64(fixed_minor)?)
        .bind(to_i64(now.unix_s())?);
        self.write(move |mut conn| Box::pin(async move { conn.execute(set).await.map(|_| ()) })).await
    }

    /// Records what a bank file said of the payout quoting
    /// `event.bank_ref`, once per entry: `effect` (given the payout in
    /// transit) says its new status and the books; a payout no longer in
    /// transit, or unknown, is recorded for review with why.
    pub async fn take_payout_event(
        &self,
        event: PayoutEvent,
        effect: OutcomeEffect,
        now: Timestamp,
    ) -> Result<(EventTaken, Option<PayoutRow>), DbError> {
        let now_s = now.unix_s();
        let now_i = to_i64(now_s)?;
        let seen = event_seen(&event);
        let payout = Stmt::new(PAYOUT_BY_REF).bind(event.bank_ref.clone());
        self.write(move |mut conn| {
            Box::pin(async move {
                if conn.fetch_optional(seen, |r| r.required_text("entry_key")).await?.is_some() {
                    return Ok((EventTaken::Before, None));
                }
                let found = conn.fetch_optional(payout, payout_row).await?;
                let (status, reason, taken, payout_id) = match &found {
                    Some(p) if p.status == "in_transit" && event.status != "review" => {
                        let (status, entries) = effect(p)?;
                        conn.books(&entries, now_s).await?;
                        let moved = Stmt::new(
                            "UPDATE center_payouts SET status = $2, reason = $3, updated_at = $4
                             WHERE id = $1 AND status = 'in_transit'",
                        )
                        .bind(p.id.clone())
                        .bind(status.clone())
                        .bind(event.reason.clone())
                        .bind(now_i);
                        if conn.execute(moved).await? != 1 {
                            return Err(DbError::Conflict);
                        }
                        (status, event.reason.clone(), EventTaken::Applied, Some(p.id.clone()))
                    }
                    Some(p) if event.status == "review" => {
                        ("review".to_owned(), event.reason.clone(), EventTaken::Review, Some(p.id.clone()))
                    }
                    Some(p) => (
                        "review".to_owned(),
                        Some(format!("the payout is {} already; the bank now says {}", p.status, event.status)),
                        EventTaken::Review,
                        Some(p.id.clone()),
                    ),
                    None => (
                        "review".to_owned(),
                        Some("no payout quotes this reference".to_owned()),
                        EventTaken::Review,
                        None,
                    ),
                };
                conn.execute(record_event(&event, payout_id, status, reason, now_i)).await?;
                let after = match taken {
                    EventTaken::Applied => {
                        let again = Stmt::new(PAYOUT_BY_REF).bind(event.bank_ref.clone());
                        conn.fetch_optional(again, payout_row).await?
                    }
                    _ => found,
                };
                Ok((taken, after))
            })
        })
        .await
    }

    /// Bank file entries recorded for the operator (unknown references,
    /// payouts no longer in transit), newest first.
    pub async fn payout_events_to_review(&self, limit: i64) -> Result<Vec<PayoutEvent>, DbError> {
        let rows = sqlx::query(
            "SELECT entry_key, file, bank_ref, status, reason FROM center_payout_events WHERE status = 'review'
             ORDER BY created_at DESC, entry_key LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PayoutEvent {
                    entry_key: r.try_get("entry_key")?,
                    file: r.try_get("file")?,
                    bank_ref: r.try_get("bank_ref")?,
                    status: r.try_get("status")?,
                    reason: r.try_get("reason")?,
                })
            })
            .collect()
    }
}

/// One settlement of a claim, as the books hold it open for the payee.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClaimFigure {
    /// The purchase or payment item's amount, if one is open and unclaimed.
    pub purchase_minor: Option<u64>,
    /// Every open, unclaimed item of the settlement: the purchase less its
    /// refunds.
    pub net_minor: i64,
}

/// A claim to record with its statement, if the books still hold what it
/// was checked against.
#[derive(Debug, Clone)]
pub struct ClaimRecord {
    /// The store's claim id, scoped by the signing store.
    pub key: String,
    pub claim_id: String,
    pub payee: StoreId,
    pub currency: Currency,
    pub cutoff: Timestamp,
    pub request_hash: String,
    pub statement: String,
    /// Each settlement and the figure it was accepted at.
    pub lines: Vec<(String, ClaimFigure)>,
}

/// What recording a claim did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimTaken {
    Recorded,
    /// This claim id was recorded before: its request hash and statement.
    Before {
        request_hash: String,
        statement: String,
    },
    /// The books moved since the claim was checked: check it again.
    Changed,
}

const FIGURE_SQL: &str = "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) AS net,
     CAST(COALESCE(SUM(CASE WHEN kind IN ('purchase', 'prepaid_payment') THEN amount_minor ELSE 0 END), 0) AS BIGINT) AS purchase,
     CAST(COUNT(CASE WHEN kind IN ('purchase', 'prepaid_payment') THEN 1 END) AS BIGINT) AS purchases
     FROM center_payable_items
     WHERE store = $1 AND currency = $2 AND reference = $3 AND payout_id IS NULL AND claim_id IS NULL
     AND at <= CAST($4 AS BIGINT)";

fn figure(r: &dyn Columns) -> Result<ClaimFigure, DbError> {
    let purchases = r.required_int("purchases")?;
    Ok(ClaimFigure {
        purchase_minor: if purchases == 1 { Some(to_u64(r.required_int("purchase")?)?) } else { None },
        net_minor: r.required_int("net")?,
    })
}

impl CenterDb {
    /// A settlement of `payee` as the books hold it open and unclaimed up
    /// to `cutoff`.
    pub async fn claim_figure(
        &self,
        payee: &StoreId,
        currency: Currency,
        settlement: &str,
        cutoff: Timestamp,
    ) -> Result<ClaimFigure, DbError> {
        let cutoff = cutoff.unix_s().to_string();
        let found =
            self.read_one(FIGURE_SQL, &[payee.as_str(), currency.code(), settlement, &cutoff], |r| figure(r)).await?;
        Ok(found.unwrap_or_default())
    }

    /// The claim recorded under `key`, if any: (request hash, statement).
    pub async fn claim(&self, key: &str) -> Result<Option<(String, String)>, DbError> {
        self.read_one("SELECT request_hash, statement FROM center_claims WHERE id = $1", &[key], |r| {
            Ok((r.required_text("request_hash")?, r.required_text("statement")?))
        })
        .await
    }

    /// Records an accepted claim in one transaction: each settlement's
    /// items marked with the claim, if every one still stands at the
    /// figure it was accepted at (else [`ClaimTaken::Changed`], nothing
    /// written), and the claim with its statement.
    pub async fn take_claim(&self, c: ClaimRecord, now: Timestamp) -> Result<ClaimTaken, DbError> {
        let now_i = to_i64(now.unix_s())?;
        let cutoff = to_i64(c.cutoff.unix_s())?;
        self.write(move |mut conn| {
            Box::pin(async move {
                let before =
                    Stmt::new("SELECT request_hash, statement FROM center_claims WHERE id = $1").bind(c.key.clone());
                if let Some((request_hash, statement)) = conn
                    .fetch_optional(before, |r| Ok((r.required_text("request_hash")?, r.required_text("statement")?)))
                    .await?
                {
                    return Ok(ClaimTaken::Before { request_hash, statement });
                }
                // Checked before anything is written: a claim the books
                // moved under writes nothing (SQLite's group goes on).
                for (settlement, accepted) in &c.lines {
                    let now_figure = Stmt::new(FIGURE_SQL)
                        .bind(c.payee.as_str().to_owned())
                        .bind(c.currency.code().to_owned())
                        .bind(settlement.clone())
                        .bind(cutoff.to_string());
                    if conn.fetch_one(now_figure, figure).await? != *accepted {
                        return Ok(ClaimTaken::Changed);
                    }
                }
                for (settlement, accepted) in &c.lines {
                    let mark = Stmt::new(
                        "UPDATE center_payable_items SET claim_id = $1
                         WHERE store = $2 AND currency = $3 AND reference = $4 AND payout_id IS NULL
                         AND claim_id IS NULL AND at <= CAST($5 AS BIGINT) RETURNING amount_minor",
                    )
                    .bind(c.key.clone())
                    .bind(c.payee.as_str().to_owned())
                    .bind(c.currency.code().to_owned())
                    .bind(settlement.clone())
                    .bind(cutoff.to_string());
                    let marked: i64 = conn.fetch_all(mark, |r| r.required_int("amount_minor")).await?.iter().sum();
                    // PostgreSQL: a concurrent claim may have marked them
                    // meanwhile; this transaction is then rolled back.
                    if marked != accepted.net_minor {
                        return Err(DbError::Conflict);
                    }
                }
                let record = Stmt::new(
                    "INSERT INTO center_claims (id, claim_id, payee, request_hash, statement, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(c.key.clone())
                .bind(c.claim_id.clone())
                .bind(c.payee.as_str().to_owned())
                .bind(c.request_hash.clone())
                .bind(c.statement.clone())
                .bind(now_i);
                conn.execute(record).await?;
                Ok(ClaimTaken::Recorded)
            })
        })
        .await
    }

    /// How a store is paid: `true` on claim only.
    pub async fn paid_on_claim(&self, store: &StoreId) -> Result<bool, DbError> {
        Ok(self
            .read_one("SELECT payout_mode FROM center_store_settings WHERE store = $1", &[store.as_str()], |r| {
                r.required_text("payout_mode")
            })
            .await?
            .is_some_and(|m| m == "on_claim"))
    }

    /// Sets how a store is paid: on claim only, or by every run.
    pub async fn set_paid_on_claim(&self, store: &StoreId, on_claim: bool, now: Timestamp) -> Result<(), DbError> {
        let set = Stmt::new(
            "INSERT INTO center_store_settings (store, payout_mode, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (store) DO UPDATE SET payout_mode = $2, updated_at = $3",
        )
        .bind(store.as_str().to_owned())
        .bind(if on_claim { "on_claim" } else { "scheduled" }.to_owned())
        .bind(to_i64(now.unix_s())?);
        self.write(move |mut conn| Box::pin(async move { conn.execute(set).await.map(|_| ()) })).await
    }
}

const PAYOUT_BY_REF: &str = concat!("SELECT ", payout_columns!(), " FROM center_payouts WHERE bank_ref = $1");

/// Clears one store inside [`CenterDb::clear_stores`]'s transaction.
async fn clear_one(
    conn: &mut Exec<'_>,
    s: ClearStore,
    books: fn(&PayoutRow) -> Result<Entries, DbError>,
    now_i: i64,
    now_s: u64,
) -> Result<Cleared, DbError> {
    let before = Stmt::new("SELECT id FROM center_payouts WHERE run_id = $1 AND store = $2 AND currency = $3")
        .bind(s.run_id.clone())
        .bind(s.store.as_str().to_owned())
        .bind(s.currency.code().to_owned());
    if conn.fetch_optional(before, |r| r.required_text("id")).await?.is_some() {
        return Ok(Cleared::Before);
    }
    let take = Stmt::new(
        "UPDATE center_payable_items SET payout_id = $1
         WHERE store = $2 AND currency = $3 AND payout_id IS NULL AND at <= $4
         AND ($5 = 0 OR claim_id IS NOT NULL OR kind NOT IN ('purchase', 'prepaid_payment'))
         RETURNING kind, amount_minor",
    )
    .bind(s.payout_id.clone())
    .bind(s.store.as_str().to_owned())
    .bind(s.currency.code().to_owned())
    .bind(to_i64(s.cutoff.unix_s())?)
    .bind(i64::from(s.claimed_only));
    let items = conn.fetch_all(take, |r| Ok((r.required_text("kind")?, r.required_int("amount_minor")?))).await?;
    let t = payout_totals(&items, s.fee_bp, s.fee_fixed_minor);
    if t.net <= 0 {
        let release = Stmt::new("UPDATE center_payable_items SET payout_id = NULL WHERE payout_id = $1")
            .bind(s.payout_id.clone());
        conn.execute(release).await?;
        return Ok(Cleared::Carried { net_minor: t.net });
    }
    let row = PayoutRow {
        id: s.payout_id,
        run_id: s.run_id,
        store: s.store,
        currency: s.currency,
        gross_minor: t.gross,
        refunds_minor: t.refunds,
        other_minor: t.other,
        fees_minor: t.fees,
        amount_minor: t.net.unsigned_abs(),
        items: u64::try_from(items.len()).unwrap_or(u64::MAX),
        fee_bp: s.fee_bp,
        fee_fixed_minor: s.fee_fixed_minor,
        payee_account: s.payee_account,
        bank_ref: s.bank_ref,
        status: "in_transit".to_owned(),
        reason: None,
        created_at: Timestamp::from_unix_s(now_s),
        updated_at: Timestamp::from_unix_s(now_s),
    };
    conn.books(&books(&row)?, now_s).await?;
    let insert = Stmt::new(
        "INSERT INTO center_payouts (id, run_id, store, currency, gross_minor, refunds_minor, other_minor, fees_minor,
         amount_minor, items, fee_bp, fee_fixed_minor, payee_account, bank_ref, status, reason, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $15, $7, $8, $9, $10, $11, $12, $13, 'in_transit', NULL, $14, $14)",
    )
    .bind(row.id.clone())
    .bind(row.run_id.clone())
    .bind(row.store.as_str().to_owned())
    .bind(row.currency.code().to_owned())
    .bind(to_i64(row.gross_minor)?)
    .bind(to_i64(row.refunds_minor)?)
    .bind(to_i64(row.fees_minor)?)
    .bind(to_i64(row.amount_minor)?)
    .bind(to_i64(row.items)?)
    .bind(i64::from(row.fee_bp))
    .bind(to_i64(row.fee_fixed_minor)?)
    .bind(row.payee_account.clone())
    .bind(row.bank_ref.clone())
    .bind(now_i)
    .bind(row.other_minor);
    conn.execute(insert).await?;
    Ok(Cleared::Paid(Box::new(row)))
}
