//! The center's writes: each statement written once, run either on the
//! SQLite writer thread (rusqlite, group commit) or in a PostgreSQL
//! transaction (sqlx).
//!
//! On SQLite every write goes to one thread that holds the only writing
//! connection. It takes every write waiting, runs them one after another in
//! one `BEGIN IMMEDIATE` transaction, commits once (one fsync for many
//! requests), and only then answers each caller, so a reply still follows a
//! durable commit. Statements there are plain calls into SQLite on the
//! thread that holds the connection; through sqlx each would be a round trip
//! to the connection's own thread, and a purchase makes four writes.
//!
//! A write is a closure over an [`Exec`], the connection inside the write's
//! transaction; it runs [`Stmt`]s, which bind the same way on both backends,
//! and the books' entries ([`Exec::books`]), which the ledger applies in the
//! same transaction (`kessai_ledger::within`): a step's rows and its ledger
//! effect commit together or not at all.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kessai_ledger::wal::{WriterSettings, writer_connection};
use kessai_ledger::within::{self, Applied};
use sqlx::PgConnection;
use tokio::sync::{mpsc, oneshot};

use crate::books::Entries;
use crate::db::{Columns, DbError};

/// Most writes one SQLite group commit takes.
const MAX_GROUP: usize = 256;
/// Writes waiting for the SQLite writer before callers wait to queue.
const WRITE_QUEUE: usize = 4_096;
/// A SQLite group commit that takes this long is logged (with how long its
/// writes ran and how long the commit took), to tell a slow disk from a
/// slow write.
const SLOW_GROUP: Duration = Duration::from_millis(50);
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// As the readers: a connection's page cache is dropped whenever another
/// one committed; mapped pages are not.
const MMAP_BYTES: u64 = 256 * 1024 * 1024;
/// Checkpoint (copy the WAL into the database file, fsync it) every 16k
/// pages rather than every 1k: rows rewritten at every step are copied once
/// per many commits. Commits still fsync the WAL. A background checkpointer
/// (`kessai_ledger::wal`) copies most pages before, off the writer's path.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 16_384;
/// Prepared statements the writer keeps (the center writes with fewer).
const STATEMENT_CACHE: usize = 48;

/// A statement argument: text or integer, either possibly NULL.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Arg {
    Text(Option<String>),
    Int(Option<i64>),
}

impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(Some(v))
    }
}

impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Arg {
        Arg::Text(v)
    }
}

impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::Int(Some(v))
    }
}

impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Arg {
        Arg::Int(v)
    }
}

/// One statement with `$1`, `$2`, … parameters (each may appear several
/// times and in any order; both backends bind `$n` to argument n).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stmt {
    sql: &'static str,
    args: Vec<Arg>,
}

impl Stmt {
    pub(crate) fn new(sql: &'static str) -> Stmt {
        Stmt { sql, args: Vec::new() }
    }

    /// Adds the next argument (`$1` first).
    pub(crate) fn bind(mut self, arg: impl Into<Arg>) -> Stmt {
        self.args.push(arg.into());
        self
    }

    /// The statement's text.
    pub(crate) fn sql(&self) -> &'static str {
        self.sql
    }

    fn pg(self) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
        self.args.into_iter().fold(sqlx::query(self.sql), |query, arg| match arg {
            Arg::Text(v) => query.bind(v),
            Arg::Int(v) => query.bind(v),
        })
    }
}

/// One PostgreSQL statement over many rows: each parameter `$n` an array
/// (`$n::text[]` or `$n::int8[]`, read with `UNNEST`), element i being row
/// i's. Built column by column, or from statements of one shape (the same
/// single-row SQL), whose n-th arguments make the n-th array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bulk {
    sql: &'static str,
    columns: Vec<Column>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Column {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
}

impl Bulk {
    pub(crate) fn new(sql: &'static str) -> Bulk {
        Bulk { sql, columns: Vec::new() }
    }

    /// Adds the next parameter, a text array.
    pub(crate) fn texts(mut self, values: Vec<Option<String>>) -> Bulk {
        self.columns.push(Column::Text(values));
        self
    }

    /// Adds the next parameter, an integer array.
    pub(crate) fn ints(mut self, values: Vec<Option<i64>>) -> Bulk {
        self.columns.push(Column::Int(values));
        self
    }

    /// `sql` over the rows of `statements`, which must all be the same
    /// statement, each with arguments of the same kinds in the same places.
    /// The rows are sorted by the arguments `key` names (0-based, the first
    /// first), so that two bulk writes of some of the same keys take them
    /// in one order.
    pub(crate) fn of(sql: &'static str, mut statements: Vec<Stmt>, key: &[usize]) -> Result<Bulk, DbError> {
        statements.sort_by(|a, b| key.iter().map(|k| a.args.get(*k)).cmp(key.iter().map(|k| b.args.get(*k))));
        let mut columns: Vec<Column> = Vec::new();
        let mut shape: Option<&'static str> = None;
        for s in statements {
            if *shape.get_or_insert(s.sql) != s.sql || (!columns.is_empty() && columns.len() != s.args.len()) {
                return Err(DbError::Corrupt(format!("statements of other shapes in one bulk: {}", s.sql)));
            }
            if columns.is_empty() {
                columns = s
                    .args
                    .iter()
                    .map(|a| match a {
                        Arg::Text(_) => Column::Text(Vec::new()),
                        Arg::Int(_) => Column::Int(Vec::new()),
                    })
                    .collect();
            }
            for (column, arg) in columns.iter_mut().zip(s.args) {
                match (column, arg) {
                    (Column::Text(values), Arg::Text(v)) => values.push(v),
                    (Column::Int(values), Arg::Int(v)) => values.push(v),
                    _ => return Err(DbError::Corrupt(format!("arguments of other kinds in one bulk: {}", s.sql))),
                }
            }
        }
        Ok(Bulk { sql, columns })
    }

    fn pg(self) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
        self.columns.into_iter().fold(sqlx::query(self.sql), |query, column| match column {
            Column::Text(v) => query.bind(v),
            Column::Int(v) => query.bind(v),
        })
    }
}

/// Prepares `s` on `conn` and binds its arguments by parameter name.
fn prepare<'c>(conn: &'c rusqlite::Connection, s: &Stmt) -> Result<rusqlite::CachedStatement<'c>, DbError> {
    let mut statement = conn.prepare_cached(s.sql)?;
    bind(&mut statement, &s.args)?;
    Ok(statement)
}

/// Binds `args` to `statement`: parameter `$n` gets argument n. Every
/// argument must be named by the statement and every parameter must have
/// one (SQLite gives `$n` appearing twice one index).
pub(crate) fn bind(statement: &mut rusqlite::Statement<'_>, args: &[Arg]) -> Result<(), DbError> {
    let count = statement.parameter_count();
    if count != args.len() {
        return Err(DbError::Corrupt(format!("a statement with {count} parameters was given {}", args.len())));
    }
    for index in 1..=count {
        let name = statement.parameter_name(index).unwrap_or_default();
        let arg = name
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| n.checked_sub(1))
            .and_then(|n| args.get(n))
            .ok_or_else(|| DbError::Corrupt(format!("statement parameter {name:?} has no argument")))?;
        match arg {
            Arg::Text(v) => statement.raw_bind_parameter(index, v)?,
            Arg::Int(v) => statement.raw_bind_parameter(index, v)?,
        }
    }
    Ok(())
}

fn sqlite_execute(conn: &rusqlite::Connection, s: &Stmt) -> Result<u64, DbError> {
    Ok(prepare(conn, s)?.raw_execute()? as u64)
}

fn sqlite_fetch_all<T>(
    conn: &rusqlite::Connection,
    s: &Stmt,
    decode: fn(&dyn Columns) -> Result<T, DbError>,
) -> Result<Vec<T>, DbError> {
    let mut statement = prepare(conn, s)?;
    let mut rows = statement.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode(row)?);
    }
    Ok(out)
}

fn sqlite_fetch<T>(
    conn: &rusqlite::Connection,
    s: &Stmt,
    decode: fn(&dyn Columns) -> Result<T, DbError>,
) -> Result<Option<T>, DbError> {
    let mut statement = prepare(conn, s)?;
    let mut rows = statement.raw_query();
    rows.next()?.map(|row| decode(row)).transpose()
}

/// The connection a write runs on, inside the write's transaction.
pub(crate) struct Exec<'c> {
    conn: Conn<'c>,
    faults: Option<Arc<Faults>>,
}

enum Conn<'c> {
    Sqlite(&'c mut rusqlite::Connection),
    /// A PostgreSQL transaction.
    Pg(&'c mut PgConnection),
}

/// Fault injection for tests: the n-th database operation of a center's
/// writes from now on fails after it ran, as if the process died there (its
/// transaction never commits). Off unless a test arms it.
#[derive(Debug, Default)]
pub struct Faults {
    /// Operations left before the fault; 0 when off.
    countdown: AtomicU64,
}

impl Faults {
    /// Fails the `n`-th operation (1: the next one) after it ran.
    pub fn fail_at(&self, n: u64) {
        self.countdown.store(n, Ordering::SeqCst);
    }

    /// Whether the armed fault has not fired yet.
    pub fn armed(&self) -> bool {
        self.countdown.load(Ordering::SeqCst) > 0
    }

    fn point(&self) -> Result<(), DbError> {
        let fired = self
            .countdown
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1))
            .is_ok_and(|left| left == 1);
        if fired { Err(DbError::NotCommitted("an injected fault (a crash at this point)".into())) } else { Ok(()) }
    }
}

impl<'c> Exec<'c> {
    pub(crate) fn sqlite(conn: &'c mut rusqlite::Connection) -> Exec<'c> {
        Exec { conn: Conn::Sqlite(conn), faults: None }
    }

    /// A PostgreSQL transaction (READ COMMITTED).
    pub(crate) fn pg(conn: &'c mut PgConnection) -> Exec<'c> {
        Exec { conn: Conn::Pg(conn), faults: None }
    }

    /// Whether this is a PostgreSQL transaction (row locks, no group commit).
    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self.conn, Conn::Pg(_))
    }

    /// The same connection, failing where `faults` says.
    pub(crate) fn with_faults(self, faults: Arc<Faults>) -> Exec<'c> {
        Exec { faults: Some(faults), ..self }
    }

    fn fault_point(&self) -> Result<(), DbError> {
        self.faults.as_ref().map_or(Ok(()), |f| f.point())
    }

    /// Runs `s`; returns the rows it changed.
    pub(crate) async fn execute(&mut self, s: Stmt) -> Result<u64, DbError> {
        let changed = match &mut self.conn {
            Conn::Sqlite(conn) => sqlite_execute(conn, &s)?,
            Conn::Pg(conn) => s.pg().execute(&mut **conn).await?.rows_affected(),
        };
        self.fault_point()?;
        Ok(changed)
    }

    /// The first row of `s`, decoded, if any.
    pub(crate) async fn fetch_optional<T>(
        &mut self,
        s: Stmt,
        decode: fn(&dyn Columns) -> Result<T, DbError>,
    ) -> Result<Option<T>, DbError> {
        let found = match &mut self.conn {
            Conn::Sqlite(conn) => sqlite_fetch(conn, &s, decode)?,
            Conn::Pg(conn) => s.pg().fetch_optional(&mut **conn).await?.map(|row| decode(&row)).transpose()?,
        };
        self.fault_point()?;
        Ok(found)
    }

    /// Every row of `s`, decoded (a statement with RETURNING, too).
    pub(crate) async fn fetch_all<T>(
        &mut self,
        s: Stmt,
        decode: fn(&dyn Columns) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        let found = match &mut self.conn {
            Conn::Sqlite(conn) => sqlite_fetch_all(conn, &s, decode)?,
            Conn::Pg(conn) => {
                s.pg().fetch_all(&mut **conn).await?.iter().map(|row| decode(row)).collect::<Result<_, _>>()?
            }
        };
        self.fault_point()?;
        Ok(found)
    }

    /// The PostgreSQL connection, for a bulk statement.
    fn pg_only(&mut self) -> Result<&mut PgConnection, DbError> {
        match &mut self.conn {
            Conn::Pg(conn) => Ok(conn),
            Conn::Sqlite(_) => Err(DbError::Corrupt("a bulk statement is PostgreSQL's".into())),
        }
    }

    /// Runs `b` (PostgreSQL only); returns the rows it changed.
    pub(crate) async fn execute_bulk(&mut self, b: Bulk) -> Result<u64, DbError> {
        let changed = b.pg().execute(self.pg_only()?).await?.rows_affected();
        self.fault_point()?;
        Ok(changed)
    }

    /// Every row of `b` (PostgreSQL only), decoded.
    pub(crate) async fn fetch_all_bulk<T>(
        &mut self,
        b: Bulk,
        decode: fn(&dyn Columns) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        let rows = b.pg().fetch_all(self.pg_only()?).await?;
        let found = rows.iter().map(|row| decode(row)).collect::<Result<_, _>>()?;
        self.fault_point()?;
        Ok(found)
    }

    /// Applies several writes' books entries in this transaction, each all
    /// or nothing and independent of the others (`kessai_ledger::within::
    /// apply_each`): one answer per write, `Ok` with the payable items its
    /// new transfers record (to be inserted by the caller), or why the
    /// ledger refused it. The ledger's rows are locked, read and written
    /// once for all of them.
    /// Each write is given with its own time, which its payable items
    /// carry; the ledger books them all at the latest.
    pub(crate) async fn books_each(
        &mut self,
        writes: &[(&Entries, u64)],
    ) -> Result<Vec<Result<Vec<Stmt>, DbError>>, DbError> {
        let now_unix_s = writes.iter().map(|(_, at)| *at).max().unwrap_or_default();
        let conn = match &mut self.conn {
            Conn::Sqlite(conn) => within::Conn::Sqlite(conn),
            Conn::Pg(conn) => within::Conn::Postgres(conn),
        };
        let accounts: Vec<_> = writes.iter().flat_map(|(e, _)| e.accounts().iter().copied()).collect();
        let transfers: Vec<_> = writes.iter().flat_map(|(e, _)| e.transfers().iter().copied()).collect();
        let counts: Vec<_> = writes.iter().map(|(e, _)| (e.accounts().len(), e.transfers().len())).collect();
        let applied =
            within::apply_each(conn, &accounts, &transfers, &counts, now_unix_s).await.map_err(DbError::Books)?;
        self.fault_point()?;
        writes
            .iter()
            .zip(applied)
            .map(|((entries, at), applied)| match applied {
                Applied::Done { existed } => Ok(Ok(payable_items(entries, &existed, *at)?)),
                Applied::Refused { accounts, transfers } => Ok(Err(refused(entries, &accounts, &transfers))),
            })
            .collect()
    }

    /// Applies the books' `entries` in this transaction, all or nothing: a
    /// refused transfer fails the write with [`DbError::BooksRefused`] and
    /// nothing of the entries is written. Each payable item is recorded
    /// with its transfer when that transfer is new (one that existed
    /// recorded its item when it was made).
    pub(crate) async fn books(&mut self, entries: &Entries, now_unix_s: u64) -> Result<(), DbError> {
        if entries.is_empty() {
            return Ok(());
        }
        let conn = match &mut self.conn {
            Conn::Sqlite(conn) => within::Conn::Sqlite(conn),
            Conn::Pg(conn) => within::Conn::Postgres(conn),
        };
        match within::apply(conn, entries.accounts(), entries.transfers(), now_unix_s).await.map_err(DbError::Books)? {
            Applied::Done { existed } => {
                self.fault_point()?;
                for insert in payable_items(entries, &existed, now_unix_s)? {
                    self.execute(insert).await?;
                }
                Ok(())
            }
            Applied::Refused { accounts, transfers } => Err(refused(entries, &accounts, &transfers)),
        }
    }

    /// As [`Exec::fetch_optional`], for a row that must exist.
    pub(crate) async fn fetch_one<T>(
        &mut self,
        s: Stmt,
        decode: fn(&dyn Columns) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let sql = s.sql;
        self.fetch_optional(s, decode).await?.ok_or_else(|| DbError::Corrupt(format!("no row for {sql:?}")))
    }
}

/// Records a payable item.
pub(crate) const PAYABLE_ITEM_SQL: &str = "INSERT INTO center_payable_items (id, store, currency, kind, reference, \
     amount_minor, at) VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// The inserts of `entries`' payable items whose transfers are new (one that
/// existed recorded its item when it was made).
fn payable_items(entries: &Entries, existed: &[usize], now_unix_s: u64) -> Result<Vec<Stmt>, DbError> {
    let at = i64::try_from(now_unix_s).map_err(|_| DbError::Corrupt("time past i64".into()))?;
    Ok(entries
        .items()
        .filter(|(i, _)| !existed.contains(i))
        .map(|(_, item)| {
            Stmt::new(PAYABLE_ITEM_SQL)
                .bind(format!("{:032x}", item.transfer))
                .bind(item.store.as_str().to_owned())
                .bind(item.currency.code().to_owned())
                .bind(item.kind.to_owned())
                .bind(item.reference.clone())
                .bind(item.amount_minor)
                .bind(at)
        })
        .collect())
}

/// Why the ledger refused `entries`: the first refused transfer's result,
/// else the first refused account's.
fn refused(
    entries: &Entries,
    accounts: &[kessai_ledger::CreateAccountsResult],
    transfers: &[kessai_ledger::CreateTransfersResult],
) -> DbError {
    let code = transfers
        .first()
        .map(|r| r.result.name())
        .or_else(|| accounts.first().map(|r| r.result.name()))
        .unwrap_or("refused");
    DbError::BooksRefused { what: entries.what(), code }
}

/// A write's work inside the transaction.
pub type WriteFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T, DbError>> + Send + 'c>>;

/// How a write went inside a group. Whether a failed one wrote part of
/// itself is not its own say: the writer counts the rows it changed (see
/// `commit_group`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    Ok,
    Failed,
}

/// What the writer runs for one write: the work, returning how it ran and
/// how to answer the caller once the group's fate is known (`None`:
/// committed; `Some(why)`: not committed).
type Job = Box<dyn for<'c> FnOnce(Exec<'c>) -> JobFuture<'c> + Send>;
type JobFuture<'c> = Pin<Box<dyn Future<Output = (Ran, Answer)> + Send + 'c>>;
type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

/// What the writer thread is asked to do.
enum Work {
    Write(Job),
    /// Stop after the writes queued before, and close the connection.
    Close(oneshot::Sender<()>),
}

/// The SQLite writer thread's queue.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Work>,
}

impl std::fmt::Debug for Work {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Work::Write(_) => "Write",
            Work::Close(_) => "Close",
        })
    }
}

impl Writer {
    /// Opens the writing connection to the SQLite file at `path` (made, in
    /// WAL mode, by the schema) and starts the writer thread.
    pub(crate) fn start(path: &Path) -> Result<Writer, DbError> {
        let conn = connect(path)?;
        let (queue, jobs) = mpsc::channel(WRITE_QUEUE);
        let path = path.to_owned();
        std::thread::Builder::new()
            .name("center-writer".into())
            .spawn(move || group_commit(path, Some(conn), jobs))
            .map_err(|e| DbError::NotCommitted(format!("the writer thread could not start: {e}")))?;
        Ok(Writer { queue })
    }

    /// Runs `work` in the writer's current group and answers once the group
    /// committed.
    pub(crate) async fn write<T, F>(&self, work: F, faults: Arc<Faults>) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(Exec<'c>) -> WriteFuture<'c, T> + Send + 'static,
    {
        let (reply, answered) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            Box::pin(async move {
                let out = work(conn.with_faults(faults)).await;
                let ok = out.is_ok();
                let ran = if ok { Ran::Ok } else { Ran::Failed };
                let answer: Answer = Box::new(move |failed: Option<&str>| {
                    let out = match failed {
                        Some(why) if ok => Err(DbError::NotCommitted(why.to_owned())),
                        _ => out,
                    };
                    let _ = reply.send(out);
                });
                (ran, answer)
            })
        });
        self.queue.send(Work::Write(job)).await.map_err(|_| DbError::NotCommitted("the writer has stopped".into()))?;
        answered.await.map_err(|_| DbError::NotCommitted("the group commit failed".into()))?
    }

    /// Whether the writer thread has ended (closed, or it could not go on).
    pub(crate) fn is_stopped(&self) -> bool {
        self.queue.is_closed()
    }

    /// Stops the writer after the writes queued before, and closes its
    /// connection; later writes fail.
    pub(crate) async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.queue.send(Work::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
    }
}

/// The writer's connection.
fn connect(path: &Path) -> Result<rusqlite::Connection, DbError> {
    let settings = WriterSettings {
        busy_timeout: BUSY_TIMEOUT,
        mmap_bytes: MMAP_BYTES,
        autocheckpoint_pages: WAL_AUTOCHECKPOINT_PAGES,
        statement_cache: STATEMENT_CACHE,
    };
    writer_connection(path, settings).map_err(DbError::Wal)
}

/// The writer thread: takes every write waiting (up to [`MAX_GROUP`]), runs
/// them one after another in one `BEGIN IMMEDIATE` transaction, commits
/// once, then answers each caller. A write that fails having changed no row
/// (SQLite undoes a failed statement) is answered with its error and the
/// group goes on. One that fails after changing rows (dirty) rolls the
/// transaction back: it and the writes before it are answered
/// with errors, the writes after it run in a new transaction. If the commit
/// fails, every write in the group is answered with the error. After a
/// failed group the connection is opened again, so a broken one is
/// replaced. The thread runs a current-thread runtime only to drive the
/// writes' futures, which on this connection finish at their first poll.
fn group_commit(path: PathBuf, mut conn: Option<rusqlite::Connection>, mut jobs: mpsc::Receiver<Work>) {
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime,
        // Dropping `jobs` answers every caller `NotCommitted`.
        Err(_) => return,
    };
    runtime.block_on(async move {
        let mut group = Vec::with_capacity(MAX_GROUP);
        while jobs.recv_many(&mut group, MAX_GROUP).await > 0 {
            let mut writes = Vec::with_capacity(group.len());
            let mut close = None;
            for work in group.drain(..) {
                match work {
                    Work::Write(job) if close.is_none() => writes.push(job),
                    // Dropping a job unrun answers its caller `NotCommitted`.
                    Work::Write(_) => {}
                    Work::Close(done) => close = close.or(Some(done)),
                }
            }
            let mut waiting = writes.into_iter();
            while waiting.len() > 0 {
                let mut answers: Vec<Answer> = Vec::with_capacity(waiting.len());
                let held = match conn.take() {
                    Some(held) => Ok(held),
                    None => connect(&path),
                };
                let committed = match held {
                    Ok(mut held) => {
                        let committed = commit_group(&mut held, &mut waiting, &mut answers).await;
                        if committed.is_ok() {
                            conn = Some(held);
                        }
                        committed
                    }
                    Err(e) => {
                        waiting.by_ref().for_each(drop);
                        Err(e)
                    }
                };
                let failed = committed.err().map(|e| e.to_string());
                if let Some(why) = &failed {
                    tracing::warn!(error = %why, "center group commit failed");
                }
                for answer in answers {
                    answer(failed.as_deref());
                }
            }
            if let Some(done) = close {
                drop(conn.take());
                let _ = done.send(());
                return;
            }
        }
    });
}

/// Runs jobs from `group` until it is empty or one fails dirty (then the
/// rest stay in `group`), and commits unless one failed dirty.
async fn commit_group(
    conn: &mut rusqlite::Connection,
    group: &mut impl Iterator<Item = Job>,
    answers: &mut Vec<Answer>,
) -> Result<(), DbError> {
    let started = Instant::now();
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        // Dropping a job unrun answers its caller `NotCommitted`.
        group.for_each(drop);
        return Err(e.into());
    }
    for job in group {
        let changes = conn.total_changes();
        let (ran, answer) = job(Exec::sqlite(conn)).await;
        // A failed write that changed rows must not commit them: its
        // transaction goes. (Counted, not trusted to the write's error.)
        let dirty = ran == Ran::Failed && conn.total_changes() != changes;
        // SQLite ends the transaction itself on some errors (a full disk,
        // an I/O error): what ran before is undone, and what ran after
        // would commit statement by statement, so the group stops here.
        let ended = conn.is_autocommit();
        if dirty || ended {
            if !ended {
                let _ = conn.execute_batch("ROLLBACK");
            }
            // A failed write already holds its own error; the ones before
            // it (and this one, if it ran fine) get this one.
            answer((ran == Ran::Ok).then_some("the group's transaction ended; retry"));
            return Err(DbError::NotCommitted("another write of its group failed; retry".into()));
        }
        answers.push(answer);
    }
    let ran = started.elapsed();
    if let Err(e) = conn.execute_batch("COMMIT") {
        // A failed COMMIT may leave the transaction open; end it.
        let _ = conn.execute_batch("ROLLBACK");
        return Err(e.into());
    }
    let took = started.elapsed();
    if took >= SLOW_GROUP {
        tracing::warn!(
            writes = answers.len(),
            run_ms = ran.as_millis() as u64,
            commit_ms = (took - ran).as_millis() as u64,
            "slow group commit"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(dir: &tempfile::TempDir) -> PathBuf {
        let path = dir.path().join("w.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY, n BIGINT, note TEXT)").unwrap();
        path
    }

    fn keys(path: &Path) -> Vec<String> {
        let conn = rusqlite::Connection::open(path).unwrap();
        let mut st = conn.prepare("SELECT k FROM t ORDER BY k").unwrap();
        st.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    }

    fn insert(k: &str) -> Stmt {
        Stmt::new("INSERT INTO t (k, n) VALUES ($1, 1)").bind(k.to_owned())
    }

    #[test]
    fn parameters_bind_by_number_in_any_order_and_must_match() {
        let dir = tempfile::tempdir().unwrap();
        let conn = rusqlite::Connection::open(table(&dir)).unwrap();
        let s = Stmt::new("INSERT INTO t (n, k, note) VALUES ($3, $1, $2 || $1)")
            .bind("x".to_owned())
            .bind(None::<String>)
            .bind(7_i64);
        assert_eq!(sqlite_execute(&conn, &s).unwrap(), 1);
        let s = Stmt::new("INSERT INTO t (k, note, n) VALUES ($2, $1, $3)")
            .bind(Some("hi".to_owned()))
            .bind("y".to_owned())
            .bind(None::<i64>);
        assert_eq!(sqlite_execute(&conn, &s).unwrap(), 1);
        let row = |k: &str| {
            conn.query_row("SELECT n, note FROM t WHERE k = ?1", [k], |r| {
                Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<String>>(1)?))
            })
            .unwrap()
        };
        assert_eq!(row("x"), (Some(7), None));
        assert_eq!(row("y"), (None, Some("hi".into())));
        // Too few, too many: refused before anything runs.
        for s in [
            Stmt::new("INSERT INTO t (k, n) VALUES ($1, $2)").bind("z".to_owned()),
            Stmt::new("INSERT INTO t (k) VALUES ($1)").bind("z".to_owned()).bind(1_i64),
            Stmt::new("INSERT INTO t (k) VALUES (?)").bind("z".to_owned()),
        ] {
            assert!(matches!(sqlite_execute(&conn, &s), Err(DbError::Corrupt(_))), "{s:?}");
        }
        let fetched =
            sqlite_fetch(&conn, &Stmt::new("SELECT k FROM t WHERE n = $1").bind(7_i64), |r| r.required_text("k"));
        assert_eq!(fetched.unwrap(), Some("x".into()));
    }

    /// Runs `jobs` as one group: a first write holds the writer until they
    /// are all queued behind it (spawned in order on this current-thread
    /// runtime, they queue in order).
    async fn in_one_group(writer: &Writer, jobs: Vec<Vec<Stmt>>) -> Vec<Result<(), DbError>> {
        let (started, running) = oneshot::channel();
        let held = writer.clone();
        let hold = tokio::spawn(async move {
            held.write(
                move |_| {
                    Box::pin(async move {
                        let _ = started.send(());
                        std::thread::sleep(Duration::from_millis(300));
                        Ok(())
                    })
                },
                Arc::default(),
            )
            .await
        });
        running.await.unwrap();
        let writes: Vec<_> = jobs
            .into_iter()
            .map(|statements| {
                let writer = writer.clone();
                tokio::spawn(async move {
                    writer
                        .write(
                            move |mut conn| {
                                Box::pin(async move {
                                    for s in statements {
                                        conn.execute(s).await?;
                                    }
                                    Ok(())
                                })
                            },
                            Arc::default(),
                        )
                        .await
                })
            })
            .collect();
        hold.await.unwrap().unwrap();
        let mut answers = Vec::new();
        for write in writes {
            answers.push(write.await.unwrap());
        }
        answers
    }

    #[tokio::test]
    async fn a_write_failing_dirty_takes_the_writes_before_it_not_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = table(&dir);
        let writer = Writer::start(&path).unwrap();
        let answers = in_one_group(
            &writer,
            vec![
                vec![insert("a")],
                // Writes "b", then fails on a duplicate key: dirty.
                vec![insert("b"), insert("b")],
                vec![insert("c")],
            ],
        )
        .await;
        assert!(matches!(answers[0], Err(DbError::NotCommitted(_))), "{:?}", answers[0]);
        assert!(answers[1].as_ref().is_err_and(DbError::is_unique_violation), "{:?}", answers[1]);
        assert!(answers[2].is_ok(), "{:?}", answers[2]);
        assert_eq!(keys(&path), ["c"]);
        // A retry of the first commits; the writer goes on after the failure.
        writer
            .write(move |mut conn| Box::pin(async move { conn.execute(insert("a")).await.map(drop) }), Arc::default())
            .await
            .unwrap();
        assert_eq!(keys(&path), ["a", "c"]);
        writer.close().await;
        assert!(
            writer
                .write(move |mut conn| Box::pin(async move { conn.execute(insert("d")).await }), Arc::default())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_clean_failure_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = table(&dir);
        let writer = Writer::start(&path).unwrap();
        writer
            .write(move |mut conn| Box::pin(async move { conn.execute(insert("a")).await }), Arc::default())
            .await
            .unwrap();
        // Failures that changed no row: a statement SQLite refused (and
        // undid), after an update that matched nothing; a statement refused
        // before it ran. The group goes on without them.
        let touch = || Stmt::new("UPDATE t SET n = n + 1 WHERE k = $1").bind("none".to_owned());
        let answers = in_one_group(
            &writer,
            vec![
                vec![insert("b")],
                vec![touch(), insert("a")],
                vec![Stmt::new("INSERT INTO t (k) VALUES ($1)")],
                vec![insert("c")],
            ],
        )
        .await;
        assert!(answers[0].is_ok(), "{:?}", answers[0]);
        assert!(answers[1].as_ref().is_err_and(DbError::is_unique_violation), "{:?}", answers[1]);
        assert!(matches!(answers[2], Err(DbError::Corrupt(_))), "{:?}", answers[2]);
        assert!(answers[3].is_ok(), "{:?}", answers[3]);
        assert_eq!(keys(&path), ["a", "b", "c"]);
        writer.close().await;
    }

    /// Whatever error a write fails with, rows it changed before failing
    /// are not committed: here it fails with `Corrupt` (a statement given
    /// the wrong arguments) after an insert.
    #[tokio::test]
    async fn a_write_failing_after_it_wrote_commits_nothing_of_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = table(&dir);
        let writer = Writer::start(&path).unwrap();
        let answers = in_one_group(
            &writer,
            vec![vec![insert("b"), Stmt::new("INSERT INTO t (k) VALUES ($1)")], vec![insert("c")]],
        )
        .await;
        assert!(matches!(answers[0], Err(DbError::Corrupt(_))), "{:?}", answers[0]);
        assert!(answers[1].is_ok(), "{:?}", answers[1]);
        assert_eq!(keys(&path), ["c"]);
        writer.close().await;
    }

    /// SQLite may end a transaction itself (a full disk, an I/O error); the
    /// writes of the group so far are gone, and are not answered committed.
    #[tokio::test]
    async fn a_transaction_sqlite_ended_is_not_answered_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = table(&dir);
        let writer = Writer::start(&path).unwrap();
        let answers =
            in_one_group(&writer, vec![vec![insert("a")], vec![insert("b"), Stmt::new("ROLLBACK")], vec![insert("c")]])
                .await;
        assert!(matches!(answers[0], Err(DbError::NotCommitted(_))), "{:?}", answers[0]);
        assert!(matches!(answers[1], Err(DbError::NotCommitted(_))), "{:?}", answers[1]);
        assert!(answers[2].is_ok());
        assert_eq!(keys(&path), ["c"]);
        writer.close().await;
    }
}
