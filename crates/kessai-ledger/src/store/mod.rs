//! The `Ledger`: one API over two backends. Each backend implements `Tx` (an open
//! database transaction that can load and write ledger rows); everything else — the
//! order of loads, the semantics, the invariant check — is written once here, in
//! `engine` and in `check`, so both backends behave identically.

pub(crate) mod postgres;
pub(crate) mod rows;
mod schema;
pub(crate) mod sqlite;

use std::future::Future;
use std::path::Path;

use crate::check::{self, InvariantViolation};
use crate::engine::{self, LoadedTransfer, Scratch, WriteSet};
use crate::error::Error;
use crate::limits::{BATCH_EVENTS_MAX, EXPIRY_BATCH_MAX, HISTORY_PAGE_MAX, LOOKUP_IDS_MAX, TIMESTAMP_MAX_UNIX_S};
use crate::result::{CreateAccountResult, CreateAccountsResult, CreateTransferResult, CreateTransfersResult};
use crate::types::{Account, AccountKind, Balances, Currency, NewAccount, NewTransfer, PendingState, Transfer};
use rows::Columns;

pub(crate) use sqlite::connect_options as sqlite_connect_options;

/// An open database transaction of one backend.
pub(crate) trait Tx: Send {
    type Row: Columns + Send;

    /// The accounts with these ids that exist, in any order.
    fn load_accounts(&mut self, ids: &[u128]) -> impl Future<Output = Result<Vec<Account>, Error>> + Send;
    /// The transfers with these ids that exist, in any order.
    fn load_transfers(&mut self, ids: &[u128]) -> impl Future<Output = Result<Vec<LoadedTransfer>, Error>> + Send;
    /// Ids of pending transfers still pending whose expiry is at or before `now`.
    fn due_pending(&mut self, now_unix_s: u64, limit: usize) -> impl Future<Output = Result<Vec<u128>, Error>> + Send;
    fn history(
        &mut self,
        account_id: u128,
        after_seq: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<(LoadedTransfer, u64)>, Error>> + Send;
    fn write(&mut self, set: &WriteSet) -> impl Future<Output = Result<(), Error>> + Send;
    /// A write's locks, taken as it reads what it will change, in one
    /// global order (the pending rows it resolves, then the accounts its
    /// transfers move, each by id), so two writers never wait for each other
    /// in a cycle. PostgreSQL runs writes at READ COMMITTED and locks the
    /// rows (`FOR UPDATE`): a hot account makes writers queue, never fail.
    /// SQLite has one writer, so there is nothing to lock.
    ///
    /// Locks pending rows.
    fn lock_pending(&mut self, _ids: &[u128]) -> impl Future<Output = Result<(), Error>> + Send {
        std::future::ready(Ok(()))
    }
    /// Loads accounts a write will move, locked.
    fn load_accounts_for_update(&mut self, ids: &[u128]) -> impl Future<Output = Result<Vec<Account>, Error>> + Send {
        self.load_accounts(ids)
    }
    /// Runs a parameterless query whose text is the same on both backends.
    fn rows(&mut self, sql: &'static str) -> impl Future<Output = Result<Vec<Self::Row>, Error>> + Send;
}

/// One unit of work, run in one database transaction.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op<'a> {
    CreateAccounts(&'a [NewAccount], u64),
    CreateTransfers(&'a [NewTransfer], u64),
    Expire(u64),
    LookupAccounts(&'a [u128]),
    LookupTransfers(&'a [u128]),
    LookupPendingStates(&'a [u128]),
    History { account_id: u128, after_seq: u64, limit: u32 },
    Totals,
    Check,
}

impl Op<'_> {
    pub fn writes(&self) -> bool {
        matches!(self, Op::CreateAccounts(..) | Op::CreateTransfers(..) | Op::Expire(_))
    }
}

#[derive(Debug)]
pub(crate) enum Outcome {
    Accounts(Vec<CreateAccountsResult>),
    Transfers(Vec<CreateTransfersResult>),
    Expired(usize),
    FoundAccounts(Vec<Account>),
    FoundTransfers(Vec<Transfer>),
    FoundPendingStates(Vec<(u128, PendingState)>),
    History(HistoryPage),
    Totals(Vec<KindTotal>),
    Checked(Result<(), InvariantViolation>),
}

pub(crate) async fn run<T: Tx>(tx: &mut T, op: Op<'_>) -> Result<Outcome, Error> {
    match op {
        Op::CreateAccounts(events, now_unix_s) => create_accounts(tx, events, now_unix_s).await.map(Outcome::Accounts),
        Op::CreateTransfers(events, now_unix_s) => {
            create_transfers(tx, events, now_unix_s).await.map(Outcome::Transfers)
        }
        Op::Expire(now_unix_s) => expire(tx, now_unix_s).await.map(Outcome::Expired),
        Op::LookupAccounts(ids) => {
            let found = tx.load_accounts(&sorted_unique(ids.iter().copied())).await?;
            Ok(Outcome::FoundAccounts(in_request_order(ids, found, |account| account.id)))
        }
        Op::LookupTransfers(ids) => {
            let found = tx.load_transfers(&sorted_unique(ids.iter().copied())).await?;
            let found = found.into_iter().map(|loaded| loaded.transfer).collect();
            Ok(Outcome::FoundTransfers(in_request_order(ids, found, |transfer| transfer.id)))
        }
        Op::LookupPendingStates(ids) => {
            let found = tx.load_transfers(&sorted_unique(ids.iter().copied())).await?;
            let states = found.into_iter().filter_map(|l| l.pending.map(|row| (l.transfer.id, row.state))).collect();
            Ok(Outcome::FoundPendingStates(in_request_order(ids, states, |(id, _)| *id)))
        }
        Op::History { account_id, after_seq, limit } => {
            let rows = tx.history(account_id, after_seq, limit).await?;
            let next =
                (rows.len() == limit as usize).then(|| rows.last().map(|(_, seq)| HistoryCursor { after_seq: *seq }));
            let transfers = rows.into_iter().map(|(loaded, _)| loaded.transfer).collect();
            Ok(Outcome::History(HistoryPage { transfers, next: next.flatten() }))
        }
        Op::Totals => {
            let rows = tx.rows(TOTALS_SQL).await?;
            rows.iter().map(kind_total).collect::<Result<_, _>>().map(Outcome::Totals)
        }
        Op::Check => check::run(tx).await.map(Outcome::Checked),
    }
}

/// The accounts' balances summed by kind and currency.
const TOTALS_SQL: &str = "SELECT kind, currency, CAST(COUNT(*) AS BIGINT), \
    CAST(SUM(debits_pending_minor) AS BIGINT), CAST(SUM(debits_posted_minor) AS BIGINT), \
    CAST(SUM(credits_pending_minor) AS BIGINT), CAST(SUM(credits_posted_minor) AS BIGINT) \
    FROM accounts GROUP BY kind, currency ORDER BY kind, currency";

fn kind_total(row: &impl Columns) -> Result<KindTotal, Error> {
    let kind = u16::try_from(row.int(0)?).ok().and_then(AccountKind::from_code);
    let sum = |index| {
        row.int(index).and_then(|v| u64::try_from(v).map_err(|_| Error::Corrupt { what: "a negative sum of balances" }))
    };
    Ok(KindTotal {
        kind: kind.ok_or(Error::Corrupt { what: "unknown account kind" })?,
        currency: Currency::parse(&row.text(1)?).map_err(|_| Error::Corrupt { what: "an account's currency" })?,
        accounts: sum(2)?,
        balances: Balances {
            debits_pending_minor: sum(3)?,
            debits_posted_minor: sum(4)?,
            credits_pending_minor: sum(5)?,
            credits_posted_minor: sum(6)?,
        },
    })
}

/// What the accounts of one kind in one currency hold together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindTotal {
    pub kind: AccountKind,
    pub currency: Currency,
    /// How many such accounts there are.
    pub accounts: u64,
    /// Their balances, summed.
    pub balances: Balances,
}

fn sorted_unique(ids: impl Iterator<Item = u128>) -> Vec<u128> {
    let mut ids: Vec<u128> = ids.filter(|id| *id != 0).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn in_request_order<T: Copy>(ids: &[u128], found: Vec<T>, id_of: impl Fn(&T) -> u128) -> Vec<T> {
    let by_id: std::collections::HashMap<u128, T> = found.into_iter().map(|item| (id_of(&item), item)).collect();
    ids.iter().filter_map(|id| by_id.get(id).copied()).collect()
}

async fn create_accounts<T: Tx>(
    tx: &mut T,
    events: &[NewAccount],
    now_unix_s: u64,
) -> Result<Vec<CreateAccountsResult>, Error> {
    let loaded = tx.load_accounts(&sorted_unique(events.iter().map(|event| event.id))).await?;
    let mut scratch = Scratch::new(loaded, Vec::new());
    let results = engine::create_accounts(&mut scratch, events, now_unix_s);
    write_changes(tx, scratch).await?;
    Ok(account_results(results))
}

async fn create_transfers<T: Tx>(
    tx: &mut T,
    events: &[NewTransfer],
    now_unix_s: u64,
) -> Result<Vec<CreateTransfersResult>, Error> {
    let (transfers, accounts) = lock_and_load(tx, events, std::iter::empty()).await?;
    let mut scratch = scratch_with_accounts_of(accounts, transfers)?;
    let results = engine::create_transfers(&mut scratch, events, now_unix_s);
    write_changes(tx, scratch).await?;
    Ok(transfer_results(results))
}

/// Applies several write batches, in order, in one pass: the rows any of them can
/// touch are loaded together (two statements), each batch is applied in memory on top
/// of the ones before it — exactly what it would see if each ran alone after them —
/// and all changes are written together. `None` if a batch is not a plain account or
/// transfer batch (the caller then runs them one by one).
pub(crate) async fn run_group<T: Tx>(tx: &mut T, ops: &[Op<'_>]) -> Result<Option<Vec<Outcome>>, Error> {
    let mut events = Vec::new();
    for op in ops {
        match op {
            Op::CreateAccounts(..) => {}
            Op::CreateTransfers(batch, _) => events.extend_from_slice(batch),
            _ => return Ok(None),
        }
    }
    let mut created = Vec::new();
    for op in ops {
        if let Op::CreateAccounts(events, _) = op {
            created.extend(events.iter().map(|event| event.id));
        }
    }
    let (transfers, accounts) = lock_and_load(tx, &events, created.into_iter()).await?;
    let mut scratch = scratch_with_accounts_of(accounts, transfers)?;
    let mut outcomes = Vec::with_capacity(ops.len());
    for op in ops {
        outcomes.push(match *op {
            Op::CreateAccounts(events, now_unix_s) => {
                Outcome::Accounts(account_results(engine::create_accounts(&mut scratch, events, now_unix_s)))
            }
            Op::CreateTransfers(events, now_unix_s) => {
                Outcome::Transfers(transfer_results(engine::create_transfers(&mut scratch, events, now_unix_s)))
            }
            _ => return Ok(None),
        });
    }
    write_changes(tx, scratch).await?;
    Ok(Some(outcomes))
}

pub(crate) fn account_results(results: Vec<CreateAccountResult>) -> Vec<CreateAccountsResult> {
    results
        .into_iter()
        .enumerate()
        .filter(|(_, result)| *result != CreateAccountResult::Ok)
        .map(|(index, result)| CreateAccountsResult { index: event_index(index), result })
        .collect()
}

pub(crate) fn transfer_results(results: Vec<CreateTransferResult>) -> Vec<CreateTransfersResult> {
    results
        .into_iter()
        .enumerate()
        .filter(|(_, result)| *result != CreateTransferResult::Ok)
        .map(|(index, result)| CreateTransfersResult { index: event_index(index), result })
        .collect()
}

async fn expire<T: Tx>(tx: &mut T, now_unix_s: u64) -> Result<usize, Error> {
    let due = sorted_unique(tx.due_pending(now_unix_s, EXPIRY_BATCH_MAX).await?.into_iter());
    if due.is_empty() {
        return Ok(0);
    }
    // Read under the lock: a concurrent writer may have resolved some
    // meanwhile (the engine then leaves them).
    tx.lock_pending(&due).await?;
    let transfers = tx.load_transfers(&due).await?;
    let accounts = tx.load_accounts_for_update(&engine::account_ids_to_load(&[], &transfers)).await?;
    let mut scratch = scratch_with_accounts_of(accounts, transfers)?;
    let expired = engine::expire(&mut scratch, &due, now_unix_s);
    write_changes(tx, scratch).await?;
    Ok(expired)
}

/// Locks and loads what a transfer batch will change (see
/// [`Tx::lock_pending`]): the transfers it names, and every account it
/// moves, locked; then, unlocked, the other accounts in `also` (accounts it
/// opens). The accounts a post or void moves are those of its pending
/// transfer, known only once that is read; the pending row is locked first,
/// so they cannot change under the batch.
async fn lock_and_load<T: Tx>(
    tx: &mut T,
    events: &[NewTransfer],
    also: impl Iterator<Item = u128>,
) -> Result<(Vec<LoadedTransfer>, Vec<Account>), Error> {
    let pending_ids = sorted_unique(events.iter().map(|event| event.pending_id));
    if !pending_ids.is_empty() {
        tx.lock_pending(&pending_ids).await?;
    }
    let transfers = tx.load_transfers(&engine::transfer_ids_to_load(events)).await?;
    let moved = engine::account_ids_to_load(events, &transfers);
    let mut accounts = tx.load_accounts_for_update(&moved).await?;
    let rest = sorted_unique(also.filter(|id| moved.binary_search(id).is_err()));
    if !rest.is_empty() {
        accounts.extend(tx.load_accounts(&rest).await?);
    }
    Ok((transfers, accounts))
}

/// Builds the scratch, refusing data in which a stored transfer names an account
/// that does not exist (the engine relies on finding them).
fn scratch_with_accounts_of(accounts: Vec<Account>, transfers: Vec<LoadedTransfer>) -> Result<Scratch, Error> {
    let known: std::collections::HashSet<u128> = accounts.iter().map(|account| account.id).collect();
    for loaded in &transfers {
        let transfer = loaded.transfer;
        if !known.contains(&transfer.debit_account_id) || !known.contains(&transfer.credit_account_id) {
            return Err(Error::Corrupt { what: "a stored transfer names an account that does not exist" });
        }
    }
    Ok(Scratch::new(accounts, transfers))
}

/// Several writes' events in one transaction, each write all or nothing and
/// independent of the others: the rows all of them touch are locked and
/// loaded once, each write's accounts then transfers are applied in order
/// on the running balances, a write with any event refused is undone (its
/// results say which), and what the others changed is written once.
pub(crate) async fn apply_each<T: Tx>(
    tx: &mut T,
    accounts: &[NewAccount],
    transfers: &[NewTransfer],
    writes: &[(usize, usize)],
    now_unix_s: u64,
) -> Result<Vec<AppliedAll>, Error> {
    let (all_accounts, all_transfers) = writes.iter().fold((0, 0), |(a, t), (wa, wt)| (a + wa, t + wt));
    if (all_accounts, all_transfers) != (accounts.len(), transfers.len()) {
        return Err(Error::Corrupt { what: "writes that do not add up to their events" });
    }
    check_batch(accounts.len().max(transfers.len()), now_unix_s)?;
    let (loaded_transfers, loaded_accounts) =
        lock_and_load(tx, transfers, accounts.iter().map(|account| account.id)).await?;
    let mut scratch = scratch_with_accounts_of(loaded_accounts, loaded_transfers)?;
    let mut applied = Vec::with_capacity(writes.len());
    let (mut a, mut t) = (0, 0);
    for (wa, wt) in writes {
        let mark = scratch.mark();
        let one = AppliedAll {
            accounts: engine::create_accounts(&mut scratch, &accounts[a..a + wa], now_unix_s),
            transfers: engine::create_transfers(&mut scratch, &transfers[t..t + wt], now_unix_s),
        };
        (a, t) = (a + wa, t + wt);
        if !one.all_ok() {
            scratch.rollback(mark);
        }
        applied.push(one);
    }
    write_changes(tx, scratch).await?;
    Ok(applied)
}

async fn write_changes<T: Tx>(tx: &mut T, scratch: Scratch) -> Result<(), Error> {
    let set = scratch.into_write_set();
    if set.is_empty() {
        return Ok(());
    }
    tx.write(&set).await
}

fn event_index(index: usize) -> u32 {
    // Batches are at most BATCH_EVENTS_MAX events, which `limits` proves fits in u32.
    u32::try_from(index).unwrap_or(u32::MAX)
}

/// Where the next page of an account's history starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryCursor {
    after_seq: u64,
}

/// One page of the transfers that debit or credit an account, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    pub transfers: Vec<Transfer>,
    /// `Some` when the page is full: pass it to get the next page.
    pub next: Option<HistoryCursor>,
}

/// Which database a ledger runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Sqlite,
    Postgres,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Sqlite => "sqlite",
            BackendKind::Postgres => "postgres",
        }
    }
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlite::Pools),
    Postgres(sqlx::PgPool),
}

/// A double-entry ledger with TigerBeetle's semantics, stored in SQLite or
/// PostgreSQL. Cheap to clone (it holds a connection pool).
///
/// Every write method takes a batch and applies it in one database transaction: the
/// whole batch commits or none of it does, and a refused event is reported by a
/// result code without affecting the others (except its linked chain). Results list
/// only the events that were not `ok`, by index, as TigerBeetle does.
#[derive(Debug, Clone)]
pub struct Ledger {
    backend: Backend,
}

impl Ledger {
    /// Opens (creating if missing) a SQLite ledger file and brings its schema up to
    /// date. See `sqlite::connect_options` for the durability settings.
    pub async fn open_sqlite(path: impl AsRef<Path>) -> Result<Ledger, Error> {
        let pools = sqlite::open(path.as_ref()).await?;
        Ok(Ledger { backend: Backend::Sqlite(pools) })
    }

    /// Opens a SQLite file's books for reads only (balances, history,
    /// `check`), bringing the schema up to date: the file's owner writes them
    /// inside its own transactions (`crate::within`) with its own writer and
    /// checkpointer, so this ledger starts neither. Its write methods fail.
    pub async fn open_sqlite_for_reads(path: impl AsRef<Path>) -> Result<Ledger, Error> {
        let pools = sqlite::open_for_reads(path.as_ref()).await?;
        Ok(Ledger { backend: Backend::Sqlite(pools) })
    }

    /// Connects to PostgreSQL and brings the schema up to date. With `schema`, the
    /// ledger's tables live in that schema (created if missing), so several ledgers
    /// can share one database.
    pub async fn connect_postgres(url: &str, schema: Option<&str>) -> Result<Ledger, Error> {
        let pool = postgres::connect(url, schema).await?;
        Ok(Ledger { backend: Backend::Postgres(pool) })
    }

    pub fn backend_kind(&self) -> BackendKind {
        match self.backend {
            Backend::Sqlite(_) => BackendKind::Sqlite,
            Backend::Postgres(_) => BackendKind::Postgres,
        }
    }

    /// Whether the ledger can be used now: on SQLite its writer thread runs and a
    /// reader answers; on PostgreSQL the database answers. (For readiness probes;
    /// a write may still fail after `Ok`.)
    pub async fn ready(&self) -> Result<(), Error> {
        match &self.backend {
            Backend::Sqlite(pools) => pools.ready().await,
            Backend::Postgres(pool) => {
                sqlx::query("SELECT 1").execute(pool).await?;
                Ok(())
            }
        }
    }

    /// Closes the connection pool, waiting for connections in use.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(pools) => pools.close().await,
            Backend::Postgres(pool) => pool.close().await,
        }
    }

    async fn run(&self, op: Op<'_>) -> Result<Outcome, Error> {
        match &self.backend {
            Backend::Sqlite(pools) => sqlite::run(pools, op).await,
            Backend::Postgres(pool) => postgres::run(pool, op).await,
        }
    }

    /// Creates accounts; `now_unix_s` is recorded as their creation time.
    pub async fn create_accounts(
        &self,
        accounts: &[NewAccount],
        now_unix_s: u64,
    ) -> Result<Vec<CreateAccountsResult>, Error> {
        check_batch(accounts.len(), now_unix_s)?;
        match self.run(Op::CreateAccounts(accounts, now_unix_s)).await? {
            Outcome::Accounts(results) => Ok(results),
            other => unreachable!("create_accounts answered {other:?}"),
        }
    }

    /// Creates transfers at time `now_unix_s` (the caller's clock): it is the
    /// transfers' creation time, from which pending timeouts run, and decides whether
    /// a pending transfer being posted or voided has already expired.
    pub async fn create_transfers(
        &self,
        transfers: &[NewTransfer],
        now_unix_s: u64,
    ) -> Result<Vec<CreateTransfersResult>, Error> {
        check_batch(transfers.len(), now_unix_s)?;
        match self.run(Op::CreateTransfers(transfers, now_unix_s)).await? {
            Outcome::Transfers(results) => Ok(results),
            other => unreachable!("create_transfers answered {other:?}"),
        }
    }

    /// Expires pending transfers whose timeout has passed at `now_unix_s`, releasing
    /// their pending amounts, and returns how many expired. At most
    /// `EXPIRY_BATCH_MAX` per call: call again while it returns that many. Running it
    /// again for the same `now` expires nothing twice.
    pub async fn expire_pending_transfers(&self, now_unix_s: u64) -> Result<usize, Error> {
        check_batch(0, now_unix_s)?;
        match self.run(Op::Expire(now_unix_s)).await? {
            Outcome::Expired(count) => Ok(count),
            other => unreachable!("expire answered {other:?}"),
        }
    }

    /// The accounts that exist among `ids`, in the order asked.
    pub async fn lookup_accounts(&self, ids: &[u128]) -> Result<Vec<Account>, Error> {
        if ids.len() > LOOKUP_IDS_MAX {
            return Err(Error::LookupTooLarge { ids: ids.len() });
        }
        match self.run(Op::LookupAccounts(ids)).await? {
            Outcome::FoundAccounts(accounts) => Ok(accounts),
            other => unreachable!("lookup_accounts answered {other:?}"),
        }
    }

    /// The transfers that exist among `ids`, in the order asked.
    pub async fn lookup_transfers(&self, ids: &[u128]) -> Result<Vec<Transfer>, Error> {
        if ids.len() > LOOKUP_IDS_MAX {
            return Err(Error::LookupTooLarge { ids: ids.len() });
        }
        match self.run(Op::LookupTransfers(ids)).await? {
            Outcome::FoundTransfers(transfers) => Ok(transfers),
            other => unreachable!("lookup_transfers answered {other:?}"),
        }
    }

    /// Where each pending transfer among `ids` stands (pending, posted, voided or
    /// expired), in the order asked; ids that are not pending transfers are left out.
    /// A pending transfer past its timeout reads `Pending` until expiry has run, but
    /// can no longer be posted or voided.
    pub async fn lookup_pending_states(&self, ids: &[u128]) -> Result<Vec<(u128, PendingState)>, Error> {
        if ids.len() > LOOKUP_IDS_MAX {
            return Err(Error::LookupTooLarge { ids: ids.len() });
        }
        match self.run(Op::LookupPendingStates(ids)).await? {
            Outcome::FoundPendingStates(states) => Ok(states),
            other => unreachable!("lookup_pending_states answered {other:?}"),
        }
    }

    /// Transfers debiting or crediting `account_id`, oldest first, `limit` at most,
    /// starting after `after` (from the start when `None`).
    pub async fn account_history(
        &self,
        account_id: u128,
        after: Option<HistoryCursor>,
        limit: u32,
    ) -> Result<HistoryPage, Error> {
        if limit == 0 || limit > HISTORY_PAGE_MAX {
            return Err(Error::HistoryPageOutOfRange { limit });
        }
        let after_seq = after.map_or(0, |cursor| cursor.after_seq);
        match self.run(Op::History { account_id, after_seq, limit }).await? {
            Outcome::History(page) => Ok(page),
            other => unreachable!("account_history answered {other:?}"),
        }
    }

    /// Every account's balances summed by kind and currency, on one
    /// consistent snapshot: what cards, pools and payables hold together.
    /// Reads every account; an operator's report, not a per-request call.
    pub async fn totals(&self) -> Result<Vec<KindTotal>, Error> {
        match self.run(Op::Totals).await? {
            Outcome::Totals(totals) => Ok(totals),
            other => unreachable!("totals answered {other:?}"),
        }
    }

    /// Verifies the ledger's invariants on one consistent snapshot (see
    /// `InvariantViolation` for the list). Reads every account and aggregates every
    /// transfer, so in production run it as a periodic audit, not per request.
    pub async fn check(&self) -> Result<(), InvariantViolation> {
        match self.run(Op::Check).await {
            Ok(Outcome::Checked(verdict)) => verdict,
            Ok(other) => unreachable!("check answered {other:?}"),
            Err(error) => Err(InvariantViolation::Unreadable(error)),
        }
    }
}

fn check_batch(events: usize, now_unix_s: u64) -> Result<(), Error> {
    if events > BATCH_EVENTS_MAX {
        return Err(Error::BatchTooLarge { events });
    }
    if now_unix_s > TIMESTAMP_MAX_UNIX_S {
        return Err(Error::TimestampOutOfRange { now_unix_s });
    }
    Ok(())
}

/// The results of [`apply_all`], one per event, in order.
pub(crate) struct AppliedAll {
    pub accounts: Vec<CreateAccountResult>,
    pub transfers: Vec<CreateTransferResult>,
}

impl AppliedAll {
    /// Whether every event was created or found already as asked.
    pub fn all_ok(&self) -> bool {
        self.accounts.iter().all(|r| matches!(r, CreateAccountResult::Ok | CreateAccountResult::Exists))
            && self.transfers.iter().all(|r| matches!(r, CreateTransferResult::Ok | CreateTransferResult::Exists))
    }
}

/// Creates `accounts`, then `transfers`, inside the caller's open transaction, all or
/// nothing: if any event is refused (anything but `ok` or `exists`), nothing is
/// written and the results say which.
pub(crate) async fn apply_all<T: Tx>(
    tx: &mut T,
    accounts: &[NewAccount],
    transfers: &[NewTransfer],
    now_unix_s: u64,
) -> Result<AppliedAll, Error> {
    check_batch(accounts.len().max(transfers.len()), now_unix_s)?;
    let (loaded_transfers, loaded_accounts) =
        lock_and_load(tx, transfers, accounts.iter().map(|account| account.id)).await?;
    let mut scratch = scratch_with_accounts_of(loaded_accounts, loaded_transfers)?;
    let applied = AppliedAll {
        accounts: engine::create_accounts(&mut scratch, accounts, now_unix_s),
        transfers: engine::create_transfers(&mut scratch, transfers, now_unix_s),
    };
    if applied.all_ok() {
        write_changes(tx, scratch).await?;
    }
    Ok(applied)
}
