//! The SQLite backend: the embedded default. Each step of a batch is one prepared
//! statement over many rows (`VALUES (...), (...)` and `IN (?, ...)` with bound
//! parameters), in chunks of `SQLITE_ROWS_PER_STATEMENT_MAX`; the statement text
//! depends only on the row count, so each variant is prepared once per connection
//! and then served from the statement cache.
//!
//! Reads (and the schema migration) go through sqlx. Writes go through one writer
//! thread holding a rusqlite connection (the same SQLite library, sqlx's
//! libsqlite3-sys): through sqlx every statement of a group would be a round trip
//! between the writer task and the connection's own thread, about seven per group,
//! each a wake-up on both sides.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use rusqlite::types::Value;
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row as _, Sqlite, SqlitePool, Transaction};

use super::rows::{self, Columns, account_columns, id_bytes, insert_account_columns, stored_int, transfer_columns};
use super::{Op, Outcome, Tx, schema};
use crate::engine::{LoadedTransfer, PendingRow, WriteSet};
use crate::error::Error;
use crate::limits::{
    SQLITE_BUSY_TIMEOUT_MS, SQLITE_GROUP_COMMIT_MAX, SQLITE_MMAP_BYTES, SQLITE_READER_CONNECTIONS_MAX,
    SQLITE_ROWS_PER_STATEMENT_MAX, SQLITE_STATEMENT_CACHE_MAX, SQLITE_WAL_AUTOCHECKPOINT_PAGES, SQLITE_WRITE_QUEUE_MAX,
};
use crate::types::{Account, NewAccount, NewTransfer, Transfer};
use crate::wal::{Checkpointer, WriterSettings};

/// Connection settings of a SQLite ledger.
///
/// - `journal_mode = WAL`: readers never block the writer and the writer never
///   blocks readers; a commit appends to the write-ahead log.
/// - `synchronous = FULL`: in WAL mode SQLite then fsyncs the WAL at every commit, so
///   a transaction that `COMMIT` acknowledged survives power loss and OS crashes.
///   `NORMAL` (the usual WAL pairing) only fsyncs at checkpoints and may lose the last
///   commits on power loss: wrong for a ledger, whose acknowledged transfers have been
///   promised to a card and a store. `EXTRA` adds a directory fsync that only
///   matters in rollback-journal mode. The durability test kills a writer mid-stream
///   and checks every acknowledged transfer is there.
/// - Writers start with `BEGIN IMMEDIATE`, taking the write lock before reading, so a
///   batch's reads and writes see one state and never fail with `SQLITE_BUSY` half way;
///   another process's writer waits up to `SQLITE_BUSY_TIMEOUT_MS` for the lock.
/// - `wal_autocheckpoint = SQLITE_WAL_AUTOCHECKPOINT_PAGES`: see there.
/// - `temp_store = memory`: statement journals of multi-row statements (transient,
///   never needed after a crash) stay off the disk.
pub(crate) fn connect_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_millis(SQLITE_BUSY_TIMEOUT_MS))
        .statement_cache_capacity(SQLITE_STATEMENT_CACHE_MAX)
        .pragma("temp_store", "memory")
        .pragma("mmap_size", SQLITE_MMAP_BYTES.to_string())
        .pragma("wal_autocheckpoint", SQLITE_WAL_AUTOCHECKPOINT_PAGES.to_string())
}

/// One connection for all writes, a few for reads. SQLite serialises writers anyway;
/// one writer connection also keeps its page cache warm, where several writer
/// connections would each find the database changed by another and drop their cache.
///
/// Writes go through one writer thread that group-commits: it takes every batch
/// waiting (up to `SQLITE_GROUP_COMMIT_MAX`) and applies them in one `BEGIN
/// IMMEDIATE` transaction in one pass (`run_group`): the rows any of them can touch
/// are loaded together, each batch is applied in memory on top of the ones before
/// it — exactly as if run one after another — and all changes are written together;
/// then it commits once (one fsync), and only then answers each caller. If the pass
/// fails, the batches run again one by one, and one that fails is dropped and the
/// others applied again without it. A write is still acknowledged only after it
/// committed durably.
///
/// The writer keeps its connection from group to group; after a failed group it
/// opens it again, so a broken one is replaced. The reader pool does not ping a
/// connection before lending it: on SQLite a ping is a round trip to the
/// connection's worker thread, for a check an in-process connection does not need
/// (a dead worker fails the next statement with an error anyway).
#[derive(Debug, Clone)]
pub(crate) struct Pools {
    readers: SqlitePool,
    /// `None`: a ledger for reads only, whose writes go through its owner's
    /// transactions (`crate::within`); the owner's writer and checkpointer
    /// serve the file.
    writes: Option<mpsc::Sender<Work>>,
    /// Copies the log into the database file off the writer's path (`wal`).
    checkpointer: Arc<Mutex<Option<Checkpointer>>>,
}

impl Pools {
    /// Whether the ledger can be used: its writer thread runs and a reader answers.
    pub async fn ready(&self) -> Result<(), Error> {
        if self.writes.as_ref().is_some_and(mpsc::Sender::is_closed) {
            return Err(Error::NotCommitted { why: "writer stopped" });
        }
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    /// Stops the writer after the writes queued before, and closes every connection.
    pub async fn close(&self) {
        if let Some(writes) = &self.writes {
            let (done, closed) = oneshot::channel();
            if writes.send(Work::Close(done)).await.is_ok() {
                let _ = closed.await;
            }
        }
        self.readers.close().await;
        let checkpointer = self.checkpointer.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(checkpointer) = checkpointer {
            checkpointer.stop().await;
        }
    }
}

/// What the writer task is asked to do.
#[derive(Debug)]
enum Work {
    Write(Write),
    Close(oneshot::Sender<()>),
}

/// A write operation, owned, for the writer task.
#[derive(Debug)]
enum WriteOp {
    CreateAccounts(Vec<NewAccount>, u64),
    CreateTransfers(Vec<NewTransfer>, u64),
    Expire(u64),
}

impl WriteOp {
    fn from_op(op: Op<'_>) -> Option<WriteOp> {
        match op {
            Op::CreateAccounts(events, now) => Some(WriteOp::CreateAccounts(events.to_vec(), now)),
            Op::CreateTransfers(events, now) => Some(WriteOp::CreateTransfers(events.to_vec(), now)),
            Op::Expire(now) => Some(WriteOp::Expire(now)),
            _ => None,
        }
    }

    fn op(&self) -> Op<'_> {
        match self {
            WriteOp::CreateAccounts(events, now) => Op::CreateAccounts(events, *now),
            WriteOp::CreateTransfers(events, now) => Op::CreateTransfers(events, *now),
            WriteOp::Expire(now) => Op::Expire(*now),
        }
    }
}

#[derive(Debug)]
struct Write {
    op: WriteOp,
    answer: oneshot::Sender<Result<Outcome, Error>>,
}

pub(crate) async fn open(path: &Path) -> Result<Pools, Error> {
    open_with(path, true).await
}

/// Opens the file for reads only (see `Pools::writes`), bringing the schema up
/// to date.
pub(crate) async fn open_for_reads(path: &Path) -> Result<Pools, Error> {
    open_with(path, false).await
}

async fn open_with(path: &Path, with_writer: bool) -> Result<Pools, Error> {
    let writer = SqlitePoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect_with(connect_options(path))
        .await?;
    let mut tx = SqliteTx(writer.begin_with("BEGIN IMMEDIATE").await?);
    schema::migrate_sqlite(&mut tx.0).await?;
    tx.0.commit().await?;
    let readers = SqlitePoolOptions::new()
        .max_connections(SQLITE_READER_CONNECTIONS_MAX)
        .test_before_acquire(false)
        .connect_with(connect_options(path))
        .await?;
    // The schema's sqlx connection closes; the writer thread has its own.
    writer.close().await;
    if !with_writer {
        return Ok(Pools { readers, writes: None, checkpointer: Arc::default() });
    }
    let conn = writer_connection(path)?;
    let checkpointer = Checkpointer::start(path).await?;
    let (writes, queue) = mpsc::channel(SQLITE_WRITE_QUEUE_MAX);
    let path = path.to_owned();
    std::thread::Builder::new()
        .name("ledger-writer".into())
        .spawn(move || group_commit(path, Some(conn), queue))
        .map_err(|_| Error::NotCommitted { why: "the writer thread could not start" })?;
    Ok(Pools { readers, writes: Some(writes), checkpointer: Arc::new(Mutex::new(Some(checkpointer))) })
}

pub(crate) async fn run(pools: &Pools, op: Op<'_>) -> Result<Outcome, Error> {
    if let Some(op) = WriteOp::from_op(op) {
        let (answer, answered) = oneshot::channel();
        let writes = pools.writes.as_ref().ok_or(Error::NotCommitted { why: "this ledger only reads" })?;
        writes
            .send(Work::Write(Write { op, answer }))
            .await
            .map_err(|_| Error::NotCommitted { why: "writer stopped" })?;
        return answered.await.map_err(|_| Error::NotCommitted { why: "the group commit failed" })?;
    }
    let mut tx = SqliteTx(pools.readers.begin_with("BEGIN DEFERRED").await?);
    let outcome = super::run(&mut tx, op).await?;
    tx.0.commit().await?;
    Ok(outcome)
}

/// A group commit that takes this long is logged, to tell a slow disk from a slow
/// caller.
const SLOW_GROUP: Duration = Duration::from_millis(50);

/// The writer thread (see `Pools`): its own current-thread runtime, so the engine's
/// async steps run here, on the thread that holds the connection, and every statement
/// is a plain call into SQLite.
fn group_commit(path: PathBuf, mut conn: Option<rusqlite::Connection>, mut queue: mpsc::Receiver<Work>) {
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime,
        // Dropping `queue` answers every caller `NotCommitted` ("writer stopped").
        Err(_) => return,
    };
    runtime.block_on(async move {
        let mut received = Vec::with_capacity(SQLITE_GROUP_COMMIT_MAX);
        while queue.recv_many(&mut received, SQLITE_GROUP_COMMIT_MAX).await > 0 {
            let mut group = Vec::with_capacity(received.len());
            let mut close = None;
            for work in received.drain(..) {
                match work {
                    Work::Write(write) if close.is_none() => group.push(write),
                    Work::Write(write) => {
                        let _ = write.answer.send(Err(Error::NotCommitted { why: "writer stopped" }));
                    }
                    Work::Close(done) => close = close.or(Some(done)),
                }
            }
            if !group.is_empty() {
                let held = match conn.take() {
                    Some(held) => Ok(held),
                    None => writer_connection(&path),
                };
                match held {
                    Ok(mut held) => {
                        let (batches, started) = (group.len(), std::time::Instant::now());
                        let clean = commit_group(&mut held, group).await;
                        let took = started.elapsed();
                        if took >= SLOW_GROUP {
                            tracing::warn!(batches, took_ms = took.as_millis() as u64, "slow ledger group commit");
                        }
                        if clean {
                            conn = Some(held);
                        }
                    }
                    Err(e) => {
                        let why = e.commit_failure();
                        for write in group {
                            let _ = write.answer.send(Err(Error::NotCommitted { why }));
                        }
                    }
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

/// The writer's connection, with the settings of `connect_options`.
fn writer_connection(path: &Path) -> Result<rusqlite::Connection, Error> {
    let conn = crate::wal::writer_connection(
        path,
        WriterSettings {
            busy_timeout: Duration::from_millis(SQLITE_BUSY_TIMEOUT_MS),
            mmap_bytes: SQLITE_MMAP_BYTES,
            autocheckpoint_pages: SQLITE_WAL_AUTOCHECKPOINT_PAGES,
            statement_cache: SQLITE_STATEMENT_CACHE_MAX,
        },
    )?;
    conn.pragma_update(None, "temp_store", "memory")?;
    Ok(conn)
}

/// Applies `group` in one transaction and answers every batch after the commit.
/// A batch that fails (an `Error`, never a refused event) may have written part of
/// its rows, so the transaction is rolled back, that batch answered with its error,
/// and the others applied again from the start without it — as if it had never run.
/// (Batches are re-runnable: they are applied from their owned events.)
/// Returns whether every batch ran without an error (else the connection is
/// opened again for the next group).
async fn commit_group(conn: &mut rusqlite::Connection, mut group: Vec<Write>) -> bool {
    let mut clean = true;
    let mut merged = true;
    while !group.is_empty() {
        let mut tx = match WriterTx::begin(conn) {
            Ok(tx) => tx,
            Err(e) => {
                let why = e.commit_failure();
                for write in group {
                    let _ = write.answer.send(Err(Error::NotCommitted { why }));
                }
                return false;
            }
        };
        let mut outcomes = Vec::with_capacity(group.len());
        if merged {
            // All batches in one pass (see `run_group`); if that fails, they run
            // again one by one, so the failing batch alone is refused.
            let ops: Vec<Op<'_>> = group.iter().map(|write| write.op.op()).collect();
            match super::run_group(&mut tx, &ops).await {
                Ok(Some(all)) => match tx.commit() {
                    Ok(()) => {
                        for (write, outcome) in group.into_iter().zip(all) {
                            let _ = write.answer.send(Ok(outcome));
                        }
                        return clean;
                    }
                    Err(e) => {
                        let why = e.commit_failure();
                        for write in group {
                            let _ = write.answer.send(Err(Error::NotCommitted { why }));
                        }
                        return false;
                    }
                },
                // The pass wrote nothing: the batches run one by one below.
                Ok(None) => {}
                Err(_) => {
                    tx.rollback();
                    merged = false;
                    continue;
                }
            }
        }
        let mut applied: Result<(), Error> = Ok(());
        for write in &group {
            match super::run(&mut tx, write.op.op()).await {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => {
                    applied = Err(e);
                    break;
                }
            }
        }
        let applied = match applied {
            Ok(()) => tx.commit(),
            Err(e) => {
                tx.rollback();
                Err(e)
            }
        };
        match applied {
            Ok(()) => {
                for (write, outcome) in group.into_iter().zip(outcomes) {
                    let _ = write.answer.send(Ok(outcome));
                }
                return clean;
            }
            // A batch failed (the transaction was rolled back): answer it and run
            // the others again.
            Err(e) if outcomes.len() < group.len() => {
                let failed = group.remove(outcomes.len());
                let _ = failed.answer.send(Err(e));
                clean = false;
            }
            // Every batch ran and the commit failed: nothing was written.
            Err(e) => {
                let why = e.commit_failure();
                for write in group {
                    let _ = write.answer.send(Err(Error::NotCommitted { why }));
                }
                return false;
            }
        }
    }
    clean
}

/// The writer's open `BEGIN IMMEDIATE` transaction. (It holds the connection by
/// `&mut`, which is `Send`, as the engine's `Tx` must be; rusqlite's own
/// `Transaction` holds it by `&`, which is not.) Dropped without `commit`, it rolls
/// back.
pub(crate) struct WriterTx<'c> {
    conn: &'c mut rusqlite::Connection,
    open: bool,
}

impl<'c> WriterTx<'c> {
    fn begin(conn: &'c mut rusqlite::Connection) -> Result<WriterTx<'c>, Error> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(WriterTx { conn, open: true })
    }

    /// The ledger's view of a transaction the caller opened on `conn` and
    /// will end itself (`crate::within`): dropped, it leaves it open.
    pub(crate) fn within(conn: &'c mut rusqlite::Connection) -> WriterTx<'c> {
        WriterTx { conn, open: false }
    }

    fn commit(mut self) -> Result<(), Error> {
        self.open = false;
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            // A failed COMMIT may leave the transaction open; end it.
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
        Ok(())
    }

    fn rollback(mut self) {
        self.open = false;
        let _ = self.conn.execute_batch("ROLLBACK");
    }

    fn select(&mut self, sql: &ChunkedSql, ids: &[u128]) -> Result<Vec<OwnedRow>, Error> {
        let mut found = Vec::new();
        for chunk in ids.chunks(SQLITE_ROWS_PER_STATEMENT_MAX) {
            let mut statement = self.conn.prepare_cached(sql.text(chunk.len()).0)?;
            let params = chunk.iter().map(|id| Value::Blob(id_bytes(*id).to_vec()));
            found.extend(collect_rows(statement.query(rusqlite::params_from_iter(params))?)?);
        }
        Ok(found)
    }

    /// Runs `sql` over `items` in chunks; returns the rows affected.
    fn write_rows<T>(&mut self, sql: &ChunkedSql, items: &[T], values: fn(&T, &mut Vec<Value>)) -> Result<u64, Error> {
        let mut affected = 0;
        for chunk in items.chunks(SQLITE_ROWS_PER_STATEMENT_MAX) {
            let mut params = Vec::new();
            chunk.iter().for_each(|item| values(item, &mut params));
            let mut statement = self.conn.prepare_cached(sql.text(chunk.len()).0)?;
            affected += statement.execute(rusqlite::params_from_iter(params))? as u64;
        }
        Ok(affected)
    }

    fn query(&mut self, sql: &str, params: Vec<Value>) -> Result<Vec<OwnedRow>, Error> {
        let mut statement = self.conn.prepare_cached(sql)?;
        collect_rows(statement.query(rusqlite::params_from_iter(params))?)
    }
}

impl Drop for WriterTx<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// A result row read by the writer, owned (rusqlite's rows borrow their statement).
pub(crate) struct OwnedRow(Vec<Value>);

fn collect_rows(mut rows: rusqlite::Rows<'_>) -> Result<Vec<OwnedRow>, Error> {
    let mut found = Vec::new();
    while let Some(row) = rows.next()? {
        let columns = row.as_ref().column_count();
        found.push(OwnedRow((0..columns).map(|i| row.get::<_, Value>(i)).collect::<Result<_, _>>()?));
    }
    Ok(found)
}

impl Columns for OwnedRow {
    fn bytes(&self, index: usize) -> Result<Vec<u8>, Error> {
        match self.0.get(index) {
            Some(Value::Blob(bytes)) => Ok(bytes.clone()),
            _ => Err(Error::Corrupt { what: "a column is not the blob expected" }),
        }
    }
    fn int(&self, index: usize) -> Result<i64, Error> {
        self.int_or_null(index)?.ok_or(Error::Corrupt { what: "a column is NULL where an integer was expected" })
    }
    fn int_or_null(&self, index: usize) -> Result<Option<i64>, Error> {
        match self.0.get(index) {
            Some(Value::Integer(n)) => Ok(Some(*n)),
            Some(Value::Null) => Ok(None),
            _ => Err(Error::Corrupt { what: "a column is not the integer expected" }),
        }
    }
    fn text(&self, index: usize) -> Result<String, Error> {
        match self.0.get(index) {
            Some(Value::Text(text)) => Ok(text.clone()),
            _ => Err(Error::Corrupt { what: "a column is not the text expected" }),
        }
    }
}

fn account_values(a: &Account, out: &mut Vec<Value>) {
    out.extend([
        Value::Blob(id_bytes(a.id).to_vec()),
        Value::Text(a.currency.to_string()),
        Value::Integer(i64::from(a.kind.code())),
        Value::Integer(i64::from(a.flags.bits())),
        Value::Blob(id_bytes(a.user_data_128).to_vec()),
        Value::Integer(stored_int(a.debits_pending_minor)),
        Value::Integer(stored_int(a.debits_posted_minor)),
        Value::Integer(stored_int(a.credits_pending_minor)),
        Value::Integer(stored_int(a.credits_posted_minor)),
        Value::Integer(stored_int(a.created_at_unix_s)),
    ]);
}

fn transfer_values(t: &Transfer, out: &mut Vec<Value>) {
    out.extend([
        Value::Blob(id_bytes(t.id).to_vec()),
        Value::Blob(id_bytes(t.debit_account_id).to_vec()),
        Value::Blob(id_bytes(t.credit_account_id).to_vec()),
        Value::Integer(stored_int(t.amount_minor)),
        Value::Text(t.currency.to_string()),
        Value::Blob(id_bytes(t.pending_id).to_vec()),
        Value::Integer(i64::from(t.timeout_s)),
        Value::Blob(id_bytes(t.user_data_128).to_vec()),
        Value::Integer(i64::from(t.code)),
        Value::Integer(i64::from(t.flags.bits())),
        Value::Integer(stored_int(t.created_at_unix_s)),
    ]);
}

fn pending_values((id, row): &(u128, PendingRow), out: &mut Vec<Value>) {
    out.extend([
        Value::Blob(id_bytes(*id).to_vec()),
        Value::Integer(i64::from(row.state.code())),
        row.expires_at_unix_s.map_or(Value::Null, |at| Value::Integer(stored_int(at))),
    ]);
}

impl Tx for WriterTx<'_> {
    type Row = OwnedRow;

    async fn load_accounts(&mut self, ids: &[u128]) -> Result<Vec<Account>, Error> {
        self.select(&SELECT_ACCOUNTS, ids)?.iter().map(rows::account).collect()
    }

    async fn load_transfers(&mut self, ids: &[u128]) -> Result<Vec<LoadedTransfer>, Error> {
        let found = self.select(&SELECT_TRANSFERS, ids)?;
        found.iter().map(|row| rows::loaded_transfer(row).map(|(loaded, _)| loaded)).collect()
    }

    async fn due_pending(&mut self, now_unix_s: u64, limit: usize) -> Result<Vec<u128>, Error> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let found =
            self.query(schema::DUE_PENDING_SQL, vec![Value::Integer(stored_int(now_unix_s)), Value::Integer(limit)])?;
        found.iter().map(|row| rows::id_from_bytes(&row.bytes(0)?)).collect()
    }

    async fn history(
        &mut self,
        account_id: u128,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<(LoadedTransfer, u64)>, Error> {
        let params = vec![
            Value::Blob(id_bytes(account_id).to_vec()),
            Value::Integer(stored_int(after_seq)),
            Value::Integer(i64::from(limit)),
        ];
        self.query(schema::HISTORY_SQL, params)?.iter().map(rows::loaded_transfer).collect()
    }

    async fn write(&mut self, set: &WriteSet) -> Result<(), Error> {
        let accounts: Vec<Account> = set.accounts_created.iter().chain(&set.accounts_updated).copied().collect();
        let affected = self.write_rows(&UPSERT_ACCOUNTS, &accounts, account_values)?;
        assert_eq!(affected, accounts.len() as u64);
        self.write_rows(&INSERT_TRANSFERS, &set.transfers_created, transfer_values)?;
        let pending: Vec<(u128, PendingRow)> =
            set.pending_created.iter().chain(&set.pending_resolved).copied().collect();
        let affected = self.write_rows(&UPSERT_PENDING, &pending, pending_values)?;
        assert_eq!(affected, pending.len() as u64);
        Ok(())
    }

    async fn rows(&mut self, sql: &'static str) -> Result<Vec<OwnedRow>, Error> {
        self.query(sql, Vec::new())
    }
}

/// SQL text for a statement over `rows` rows, built once per row count.
struct ChunkedSql {
    texts: OnceLock<Vec<String>>,
    build: fn(usize) -> String,
}

impl ChunkedSql {
    const fn new(build: fn(usize) -> String) -> ChunkedSql {
        ChunkedSql { texts: OnceLock::new(), build }
    }

    fn text(&self, rows: usize) -> AssertSqlSafe<&str> {
        assert!(rows > 0 && rows <= SQLITE_ROWS_PER_STATEMENT_MAX);
        let texts = self.texts.get_or_init(|| (0..=SQLITE_ROWS_PER_STATEMENT_MAX).map(self.build).collect());
        // Built only from constant fragments and placeholders, never from data.
        AssertSqlSafe(texts[rows].as_str())
    }
}

fn placeholders(rows: usize, per_row: usize) -> String {
    let row = format!("({})", vec!["?"; per_row].join(", "));
    vec![row; rows].join(", ")
}

static SELECT_ACCOUNTS: ChunkedSql = ChunkedSql::new(|rows| {
    format!("SELECT {} FROM accounts a WHERE a.id IN ({})", account_columns!(), vec!["?"; rows].join(", "))
});

static SELECT_TRANSFERS: ChunkedSql = ChunkedSql::new(|rows| {
    format!(
        "SELECT {} FROM transfers t LEFT JOIN pending_transfers p ON p.id = t.id WHERE t.id IN ({})",
        transfer_columns!(),
        vec!["?"; rows].join(", ")
    )
});

/// Inserts new accounts and updates the balances of existing ones, in one statement.
static UPSERT_ACCOUNTS: ChunkedSql = ChunkedSql::new(|rows| {
    format!(
        "INSERT INTO accounts ({}) VALUES {} ON CONFLICT (id) DO UPDATE SET \
         debits_pending_minor = excluded.debits_pending_minor, debits_posted_minor = excluded.debits_posted_minor, \
         credits_pending_minor = excluded.credits_pending_minor, credits_posted_minor = excluded.credits_posted_minor",
        insert_account_columns!(),
        placeholders(rows, 10)
    )
});

static INSERT_TRANSFERS: ChunkedSql = ChunkedSql::new(|rows| {
    format!(
        "INSERT INTO transfers (id, debit_account_id, credit_account_id, amount_minor, currency, pending_id, \
         timeout_s, user_data_128, code, flags, created_at_unix_s) VALUES {}",
        placeholders(rows, 11)
    )
});

/// Inserts new pending rows and updates the state of resolved ones, in one statement.
static UPSERT_PENDING: ChunkedSql = ChunkedSql::new(|rows| {
    format!(
        "INSERT INTO pending_transfers (id, state, expires_at_unix_s) VALUES {} \
         ON CONFLICT (id) DO UPDATE SET state = excluded.state",
        placeholders(rows, 3)
    )
});

type SqliteQuery<'q> = Query<'q, Sqlite, SqliteArguments>;

fn bind_account<'q>(query: SqliteQuery<'q>, a: &Account) -> SqliteQuery<'q> {
    query
        .bind(id_bytes(a.id).to_vec())
        .bind(a.currency.to_string())
        .bind(i64::from(a.kind.code()))
        .bind(i64::from(a.flags.bits()))
        .bind(id_bytes(a.user_data_128).to_vec())
        .bind(stored_int(a.debits_pending_minor))
        .bind(stored_int(a.debits_posted_minor))
        .bind(stored_int(a.credits_pending_minor))
        .bind(stored_int(a.credits_posted_minor))
        .bind(stored_int(a.created_at_unix_s))
}

fn bind_transfer<'q>(query: SqliteQuery<'q>, t: &Transfer) -> SqliteQuery<'q> {
    query
        .bind(id_bytes(t.id).to_vec())
        .bind(id_bytes(t.debit_account_id).to_vec())
        .bind(id_bytes(t.credit_account_id).to_vec())
        .bind(stored_int(t.amount_minor))
        .bind(t.currency.to_string())
        .bind(id_bytes(t.pending_id).to_vec())
        .bind(i64::from(t.timeout_s))
        .bind(id_bytes(t.user_data_128).to_vec())
        .bind(i64::from(t.code))
        .bind(i64::from(t.flags.bits()))
        .bind(stored_int(t.created_at_unix_s))
}

fn bind_pending<'q>(query: SqliteQuery<'q>, (id, row): &(u128, PendingRow)) -> SqliteQuery<'q> {
    query.bind(id_bytes(*id).to_vec()).bind(i64::from(row.state.code())).bind(row.expires_at_unix_s.map(stored_int))
}

pub(crate) struct SqliteTx<'c>(pub Transaction<'c, Sqlite>);

impl SqliteTx<'_> {
    async fn select(&mut self, sql: &ChunkedSql, ids: &[u128]) -> Result<Vec<SqliteRow>, Error> {
        let mut found = Vec::new();
        for chunk in ids.chunks(SQLITE_ROWS_PER_STATEMENT_MAX) {
            let query = chunk.iter().fold(sqlx::query(sql.text(chunk.len())), |q, id| q.bind(id_bytes(*id).to_vec()));
            found.extend(query.fetch_all(&mut *self.0).await?);
        }
        Ok(found)
    }

    /// Runs `sql` over `items` in chunks; returns the rows affected.
    async fn write_rows<T>(
        &mut self,
        sql: &ChunkedSql,
        items: &[T],
        bind: for<'q> fn(SqliteQuery<'q>, &T) -> SqliteQuery<'q>,
    ) -> Result<u64, Error> {
        let mut affected = 0;
        for chunk in items.chunks(SQLITE_ROWS_PER_STATEMENT_MAX) {
            let query = chunk.iter().fold(sqlx::query(sql.text(chunk.len())), bind);
            affected += query.execute(&mut *self.0).await?.rows_affected();
        }
        Ok(affected)
    }
}

impl Columns for SqliteRow {
    fn bytes(&self, index: usize) -> Result<Vec<u8>, Error> {
        Ok(self.try_get(index)?)
    }
    fn int(&self, index: usize) -> Result<i64, Error> {
        Ok(self.try_get(index)?)
    }
    fn int_or_null(&self, index: usize) -> Result<Option<i64>, Error> {
        Ok(self.try_get(index)?)
    }
    fn text(&self, index: usize) -> Result<String, Error> {
        Ok(self.try_get(index)?)
    }
}

impl Tx for SqliteTx<'_> {
    type Row = SqliteRow;

    async fn load_accounts(&mut self, ids: &[u128]) -> Result<Vec<Account>, Error> {
        self.select(&SELECT_ACCOUNTS, ids).await?.iter().map(rows::account).collect()
    }

    async fn load_transfers(&mut self, ids: &[u128]) -> Result<Vec<LoadedTransfer>, Error> {
        let found = self.select(&SELECT_TRANSFERS, ids).await?;
        found.iter().map(|row| rows::loaded_transfer(row).map(|(loaded, _)| loaded)).collect()
    }

    async fn due_pending(&mut self, now_unix_s: u64, limit: usize) -> Result<Vec<u128>, Error> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let found = sqlx::query(schema::DUE_PENDING_SQL)
            .bind(stored_int(now_unix_s))
            .bind(limit)
            .fetch_all(&mut *self.0)
            .await?;
        found.iter().map(|row| rows::id_from_bytes(&row.bytes(0)?)).collect()
    }

    async fn history(
        &mut self,
        account_id: u128,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<(LoadedTransfer, u64)>, Error> {
        let found = sqlx::query(schema::HISTORY_SQL)
            .bind(id_bytes(account_id).to_vec())
            .bind(stored_int(after_seq))
            .bind(i64::from(limit))
            .fetch_all(&mut *self.0)
            .await?;
        found.iter().map(rows::loaded_transfer).collect()
    }

    async fn write(&mut self, set: &WriteSet) -> Result<(), Error> {
        let accounts: Vec<Account> = set.accounts_created.iter().chain(&set.accounts_updated).copied().collect();
        let affected = self.write_rows(&UPSERT_ACCOUNTS, &accounts, bind_account).await?;
        assert_eq!(affected, accounts.len() as u64);
        self.write_rows(&INSERT_TRANSFERS, &set.transfers_created, bind_transfer).await?;
        let pending: Vec<(u128, PendingRow)> =
            set.pending_created.iter().chain(&set.pending_resolved).copied().collect();
        let affected = self.write_rows(&UPSERT_PENDING, &pending, bind_pending).await?;
        assert_eq!(affected, pending.len() as u64);
        Ok(())
    }

    async fn rows(&mut self, sql: &'static str) -> Result<Vec<SqliteRow>, Error> {
        Ok(sqlx::query(sql).fetch_all(&mut *self.0).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{AccountFlags, AccountKind, Currency, TransferFlags};

    const NOW: u64 = 1_700_000_000;

    fn account(id: u128, flags: AccountFlags) -> NewAccount {
        let currency = Currency::parse("JPY").unwrap();
        NewAccount { id, currency, kind: AccountKind::CardFloat, flags, user_data_128: 0 }
    }

    fn transfer(id: u128, (dr, cr): (u128, u128), amount: u64, pending_id: u128, flags: TransferFlags) -> NewTransfer {
        NewTransfer {
            id,
            debit_account_id: dr,
            credit_account_id: cr,
            amount_minor: amount,
            currency: Currency::parse("JPY").unwrap(),
            pending_id,
            timeout_s: 0,
            user_data_128: 0,
            code: 1,
            flags,
        }
    }

    async fn fresh(dir: &tempfile::TempDir, name: &str) -> SqlitePool {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(connect_options(&dir.path().join(name)))
            .await
            .unwrap();
        let mut conn = pool.acquire().await.unwrap();
        schema::migrate_sqlite(&mut conn).await.unwrap();
        drop(conn);
        pool
    }

    async fn state(pool: &SqlitePool) -> String {
        let mut tx = SqliteTx(pool.begin().await.unwrap());
        let accounts = super::super::run(&mut tx, Op::LookupAccounts(&[1, 2, 3])).await.unwrap();
        let transfers = super::super::run(&mut tx, Op::LookupTransfers(&[10, 11, 12, 13, 14, 15])).await.unwrap();
        let pending = super::super::run(&mut tx, Op::LookupPendingStates(&[11, 13, 15])).await.unwrap();
        format!("{accounts:?}\n{transfers:?}\n{pending:?}")
    }

    /// Batches applied in one pass give what each gives alone, in turn: results,
    /// balances, transfers and pending states — including batches that post a
    /// transfer held earlier in the pass, retry one, or use accounts it opened.
    #[tokio::test]
    async fn a_group_in_one_pass_is_the_batches_in_turn() {
        let dir = tempfile::tempdir().unwrap();
        let none = TransferFlags::default();
        let opened = [account(1, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS), account(2, AccountFlags::default())];
        let third = [account(3, AccountFlags::default()), account(2, AccountFlags::default())];
        let fund = [transfer(10, (2, 1), 100, 0, none)];
        let hold = [transfer(11, (1, 3), 60, 0, TransferFlags::PENDING)];
        let post = [transfer(12, (0, 0), 60, 11, TransferFlags::POST_PENDING)];
        let too_much = [transfer(13, (1, 3), 60, 0, TransferFlags::PENDING)];
        let again = [transfer(10, (2, 1), 100, 0, none), transfer(15, (1, 2), 10, 0, TransferFlags::PENDING)];
        let void = [transfer(14, (0, 0), 0, 13, TransferFlags::VOID_PENDING)];
        let ops = [
            Op::CreateAccounts(&opened, NOW),
            Op::CreateAccounts(&third, NOW),
            Op::CreateTransfers(&fund, NOW),
            Op::CreateTransfers(&hold, NOW + 1),
            Op::CreateTransfers(&post, NOW + 2),
            Op::CreateTransfers(&too_much, NOW + 3),
            Op::CreateTransfers(&again, NOW + 4),
            Op::CreateTransfers(&void, NOW + 5),
        ];
        let in_turn = fresh(&dir, "in-turn.sqlite").await;
        let mut expected = Vec::new();
        for op in ops {
            let mut tx = SqliteTx(in_turn.begin_with("BEGIN IMMEDIATE").await.unwrap());
            expected.push(format!("{:?}", super::super::run(&mut tx, op).await.unwrap()));
            tx.0.commit().await.unwrap();
        }
        let one_pass = fresh(&dir, "one-pass.sqlite").await;
        let mut tx = SqliteTx(one_pass.begin_with("BEGIN IMMEDIATE").await.unwrap());
        let outcomes = super::super::run_group(&mut tx, &ops).await.unwrap().unwrap();
        tx.0.commit().await.unwrap();
        let got: Vec<String> = outcomes.iter().map(|o| format!("{o:?}")).collect();
        assert_eq!(got, expected);
        assert!(expected.iter().any(|o| o.contains("Exists")), "a retry was in the group: {expected:?}");
        assert!(expected.iter().any(|o| o.contains("ExceedsCredits")), "a refusal was in the group: {expected:?}");
        assert_eq!(state(&one_pass).await, state(&in_turn).await);
        let mut tx = SqliteTx(one_pass.begin().await.unwrap());
        assert!(matches!(super::super::run(&mut tx, Op::Check).await.unwrap(), Outcome::Checked(Ok(()))));
        drop(tx);

        // The writer thread's own connection (rusqlite) gives the same, and what
        // it writes reads back alike through sqlx.
        let written = fresh(&dir, "writer.sqlite").await;
        let mut conn = writer_connection(&dir.path().join("writer.sqlite")).unwrap();
        let mut tx = WriterTx::begin(&mut conn).unwrap();
        let outcomes = super::super::run_group(&mut tx, &ops).await.unwrap().unwrap();
        tx.commit().unwrap();
        let got: Vec<String> = outcomes.iter().map(|o| format!("{o:?}")).collect();
        assert_eq!(got, expected);
        assert_eq!(state(&written).await, state(&in_turn).await);
        let mut tx = WriterTx::begin(&mut conn).unwrap();
        assert!(matches!(super::super::run(&mut tx, Op::Check).await.unwrap(), Outcome::Checked(Ok(()))));
        let extra = [transfer(20, (2, 1), 5, 0, none)];
        let rolled_back = super::super::run(&mut tx, Op::CreateTransfers(&extra, NOW)).await.unwrap();
        assert!(matches!(rolled_back, Outcome::Transfers(ref r) if r.is_empty()));
        drop(tx);
        assert_eq!(state(&written).await, state(&in_turn).await, "a transaction dropped uncommitted is rolled back");
    }
}
