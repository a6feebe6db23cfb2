//! The center's information management, in SQLite (embedded default) or
//! PostgreSQL (several stateless instances), one module per aggregate:
//! `registry` (stores, their keys, cards), `settlements` (with statements
//! and delivery), `value_updates`, `owed` and `idempotency`; the schema and
//! its migrations in `crate::schema`; the books (the ledger's tables) in the
//! same database. Reads go through sqlx's `Any` driver; every statement is
//! written once, with `$n` parameters, which both backends accept.
//!
//! Settlements are updated with optimistic concurrency: each row has a
//! version, and an update names the version it read. Two instances racing
//! on one settlement cannot both win; the loser sees `Conflict` and the
//! client retries (its Idempotency-Key makes the retry safe).
//!
//! Every write is one database transaction ([`CenterDb::write`]) of
//! statements written once for both backends (`writer::Stmt`) and the
//! books' entries. On PostgreSQL every write runs at READ COMMITTED: its
//! compare-and-sets and upserts are single statements, and a write with
//! books entries locks its own row first, then the ledger's rows (in id
//! order, `kessai_ledger::within`), so concurrent writes on a hot account
//! queue for its lock and none fails to serialize; settlement steps are
//! written in groups, a few statements over arrays for many steps (see
//! `group`). On SQLite,
//! writes go through one writer thread with its own connection that
//! group-commits (see `writer`): one fsync for many requests, and a reply
//! still follows a durable commit. Reads use separate connections the
//! center holds itself (WAL: they see the last commit and never wait for
//! the writer); the reads on every purchase step's path run on the calling
//! thread (`fast_read`), the others through sqlx. On PostgreSQL those reads
//! run on connections the center holds (`hot_reads`), the others through
//! sqlx's pool.

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kessai_core::Currency;
use kessai_core::ids::{CardId, PartyId, SettlementId, StoreId, UpdateId};
use kessai_core::jwk::KeyId;
use kessai_core::keys::{KeyDirectory, PublicKey, Validity};
use kessai_core::messages::DisplayText;
use kessai_core::time::Timestamp;
use kessai_ledger::Ledger;
use kessai_ledger::wal::Checkpointer;
use rusqlite::OptionalExtension as _;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Row};
use tokio::sync::OwnedMappedMutexGuard;

use crate::books::Entries;
use crate::fast_read::FastReads;
use crate::owed::{Owed, OwedBody, OwedStatus};
use crate::purchase::{CardRecord, CardRegistryStatus, Phase, Settlement};
use crate::value::{UpdatePhase, ValueUpdate};
pub use crate::writer::Faults;

mod attempts;
mod audit;
mod authorizations;
mod clearing;
mod console;
mod group;
mod hot_reads;
mod idempotency;
mod members;
mod owed;
mod prepaid;
mod registry;
mod search;
mod settlements;
mod statistics;
mod tokens;
mod value_updates;

pub use crate::writer::WriteFuture;
use crate::writer::{Exec, Stmt, Writer};
pub use audit::Collected;
pub use clearing::{
    ClaimFigure, ClaimRecord, ClaimTaken, ClearStore, Cleared, EventTaken, ItemRow, OutcomeEffect, PayoutEvent,
    PayoutRow, RunClaim, RunRow, Totals, item_fee, payout_totals,
};
pub(crate) use console::append_trail;
pub use console::{OperatorRow, Role, SessionRow, TrailEntry, TrailRow};
pub use idempotency::{SavedResponse, Stored};
pub use members::{ApplicationRow, Entered, LetterRow, MemberRow};
pub use owed::RefundStored;
pub(crate) use prepaid::BillGuard;
pub use prepaid::{
    BankCreditRow, CreditTaken, DuePrepaid, FundingRow, PaymentStored, PrepaidCardRow, PrepaidRefundRow,
};
pub use registry::{RecordedKey, StatusChange, StoreRecord};
pub use search::{Found, FoundPage, Search, SearchKind};
pub use settlements::DueDelivery;
pub use settlements::{BillState, ListCursor, SessionRecord, SettlementPage, SettlementQuery, StepExtras};
pub use statistics::DayTally;
pub use tokens::{
    CreditIssues, PAID_BACK_IN_REGISTER, PaidBill, Payback, PaybackRow, Redemption, TokenRow, WrittenBefore,
};
pub use value_updates::{Alongside, Reservation};

/// Longest the center waits for a database connection.
const ACQUIRE_TIMEOUT_MS: u64 = 5_000;
/// Connections per instance.
const MAX_CONNECTIONS: u32 = 8;
/// Reader connections of a SQLite database (besides its one writer).
const SQLITE_READERS: u32 = 4;
/// How long a cached store key directory is used before it is read again.
/// A key added or revoked through this instance takes effect at once; one
/// changed through another instance (PostgreSQL) within this bound.
pub const STORE_KEYS_TTL: Duration = Duration::from_secs(1);
/// Most settlements one listing returns.
pub const MAX_LIST: i64 = 500;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    #[error("database: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("the settlement was changed by another request; retry")]
    Conflict,
    #[error("database URL must start with sqlite: or postgres://")]
    BadUrl,
    /// A write found, after writing part, that the rows it ends are not as
    /// they must be: its whole transaction is rolled back.
    #[error("stored rows are not as expected: {0}")]
    Inconsistent(String),
    #[error("the write was not committed: {0}")]
    NotCommitted(String),
    /// Opening the SQLite writer or starting the WAL checkpointer.
    #[error("SQLite WAL: {0}")]
    Wal(kessai_ledger::Error),
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the database holds center schema version {found}, newer than this build knows ({known})")]
    SchemaTooNew { found: i64, known: i64 },
    /// A card settlement may have paid this bill already, or a payment
    /// from a prepaid card did: one bill is paid once.
    #[error("this bill is paid already")]
    BillPaid,
    /// The books (the ledger's tables in this database) failed.
    #[error("books: {0}")]
    Books(kessai_ledger::Error),
    /// The ledger refused a transfer of the write's books entries; nothing
    /// of the write was kept.
    #[error("the ledger refused {what}: {code}")]
    BooksRefused { what: &'static str, code: &'static str },
}

impl DbError {
    /// Whether the same work, run again from the start in a new transaction,
    /// may succeed (PostgreSQL: a deadlock the lock order did not rule out,
    /// or a ledger row a concurrent transaction inserted first).
    pub fn is_retryable(&self) -> bool {
        match self {
            DbError::Sqlx(sqlx::Error::Database(e)) => matches!(e.code().as_deref(), Some("40001" | "40P01")),
            DbError::Books(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// Whether a unique key refused the write (a row with its key exists).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            DbError::Sqlx(sqlx::Error::Database(e)) => e.is_unique_violation(),
            DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            }
            _ => false,
        }
    }
}

/// One protocol step's write: its row's compare-and-set, its books entries,
/// what its ending changes beside the row, and the request's answer.
struct StepWrite {
    /// Reads the row's version (SQLite, when there are books entries).
    check: Stmt,
    version: i64,
    entries: Entries,
    now_s: u64,
    /// The compare-and-set: changes one row, or none if the step lost.
    update: Stmt,
    /// Each must change exactly one row.
    also: Vec<Stmt>,
    /// Each gives back what may or may not be held (a charge's day
    /// reservation): it may change no row.
    tidy: Vec<Stmt>,
    save: Option<Stmt>,
    /// A card's hold: that no prepaid payment paid its bill.
    guard: Option<BillGuard>,
    /// The choice of a deposit token to pay the bill, else the step is
    /// refused (`token_not_stored`).
    choice: Option<settlements::TokenChoice>,
    /// The record's id, for an error.
    what: String,
    /// The operator's trail row, for a step an operator takes.
    trail: Option<(TrailEntry, Timestamp)>,
}

impl StepWrite {
    async fn run(self, conn: &mut Exec<'_>) -> Result<(), DbError> {
        // The row first, then the ledger's rows: one lock order for every
        // write. On PostgreSQL the compare-and-set itself takes the row's
        // lock (a refusal of the books after it rolls back this write's own
        // transaction). On SQLite, whose writer shares one transaction among
        // a group of writes, the version is checked before anything is
        // written, so that losing the race or the books refusing leaves the
        // group's transaction clean; without books the update is the first
        // write and changes nothing if it lost.
        if let Some(guard) = self.guard {
            guard.check(conn).await?;
        }
        if let Some(choice) = self.choice {
            // The token's row before the settlement's, as a redemption
            // takes them; on SQLite only once the step is known to win, so
            // that a lost step writes nothing.
            if !conn.is_postgres()
                && conn.fetch_optional(self.check.clone(), |r| r.required_int("version")).await? != Some(self.version)
            {
                return Err(DbError::Conflict);
            }
            choice.apply(conn).await?;
        }
        if conn.is_postgres() || self.entries.is_empty() {
            if conn.execute(self.update).await? != 1 {
                return Err(DbError::Conflict);
            }
            conn.books(&self.entries, self.now_s).await?;
        } else {
            if conn.fetch_optional(self.check, |r| r.required_int("version")).await? != Some(self.version) {
                return Err(DbError::Conflict);
            }
            conn.books(&self.entries, self.now_s).await?;
            if conn.execute(self.update).await? != 1 {
                return Err(DbError::Conflict);
            }
        }
        for also in self.also {
            if conn.execute(also).await? != 1 {
                // The update above is written: the whole transaction must go.
                return Err(DbError::Inconsistent(format!("{} does not hold what it ends", self.what)));
            }
        }
        for tidy in self.tidy {
            conn.execute(tidy).await?;
        }
        if let Some(save) = self.save {
            conn.execute(save).await?;
        }
        if let Some((trail, now)) = &self.trail {
            append_trail(conn, trail, *now).await?;
        }
        Ok(())
    }
}

/// A settlement's record as stored (its type holds exactly what its phase
/// needs; reading it back checks the same).
fn settlement_record(s: &Settlement) -> Result<String, DbError> {
    serde_json::to_string(s).map_err(corrupt)
}

/// The same for a value update's record.
fn update_record(c: &ValueUpdate) -> Result<String, DbError> {
    serde_json::to_string(c).map_err(corrupt)
}

fn corrupt(e: impl std::fmt::Display) -> DbError {
    DbError::Corrupt(e.to_string())
}

#[derive(Debug, Clone)]
pub struct CenterDb {
    /// Reads.
    readers: Readers,
    /// PostgreSQL: writes, each a READ COMMITTED transaction.
    pg: Option<sqlx::PgPool>,
    /// PostgreSQL: settlement steps, written in groups (`group`).
    group: Option<group::Grouper>,
    /// PostgreSQL: the reads on every step's path, on held connections.
    hot: Option<Arc<hot_reads::HotReads>>,
    /// The books: the ledger's tables in this same database, read through
    /// the ledger's API and written only inside this database's write
    /// transactions ([`Exec::books`]).
    ledger: Ledger,
    /// SQLite: the group-committing writer thread.
    writer: Option<Writer>,
    /// SQLite: copies the log into the database file off the writer's path.
    checkpointer: Arc<Mutex<Option<Checkpointer>>>,
    /// SQLite: the reads on every step's path, on the calling thread.
    fast: Option<Arc<FastReads>>,
    store_keys: Arc<Mutex<KeyCache>>,
    faults: Arc<Faults>,
}

/// Where reads go: PostgreSQL's pool, or (SQLite) connections this process
/// holds itself. sqlx's pool pings a connection when it lends it and again
/// when it gets it back; on SQLite each ping is a round trip to the
/// connection's worker thread, two more than the read itself, for a check
/// that an in-process connection does not need (a dead worker fails the
/// read with an error anyway).
#[derive(Debug, Clone)]
enum Readers {
    Pool(AnyPool),
    Own(Arc<OwnReaders>),
}

#[derive(Debug)]
struct OwnReaders {
    /// `None` once closed.
    conns: Vec<Arc<tokio::sync::Mutex<Option<AnyConnection>>>>,
    /// Where the next read starts looking for a free connection.
    next: AtomicUsize,
}

/// A connection lent for one read.
enum ReadConn {
    Pooled(PoolConnection<Any>),
    Own(OwnedMappedMutexGuard<Option<AnyConnection>, AnyConnection>),
}

impl std::ops::Deref for ReadConn {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        match self {
            ReadConn::Pooled(c) => c,
            ReadConn::Own(c) => c,
        }
    }
}

impl std::ops::DerefMut for ReadConn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            ReadConn::Pooled(c) => c,
            ReadConn::Own(c) => c,
        }
    }
}

impl Readers {
    /// A connection for one read: a free one if any, else the next in turn.
    async fn get(&self) -> Result<ReadConn, DbError> {
        let own = match self {
            Readers::Pool(pool) => return Ok(ReadConn::Pooled(pool.acquire().await?)),
            Readers::Own(own) => own,
        };
        let n = own.conns.len();
        let start = own.next.fetch_add(1, Ordering::Relaxed);
        let free = (0..n).find_map(|i| own.conns.get((start + i) % n).and_then(|c| c.clone().try_lock_owned().ok()));
        let guard = match free {
            Some(guard) => guard,
            None => {
                let conn = own.conns.get(start % n.max(1)).ok_or(DbError::Sqlx(sqlx::Error::PoolClosed))?;
                conn.clone().lock_owned().await
            }
        };
        tokio::sync::OwnedMutexGuard::try_map(guard, Option::as_mut)
            .map(ReadConn::Own)
            .map_err(|_| DbError::Sqlx(sqlx::Error::PoolClosed))
    }

    async fn close(&self) {
        match self {
            Readers::Pool(pool) => pool.close().await,
            Readers::Own(own) => {
                for conn in &own.conns {
                    if let Some(conn) = conn.lock().await.take() {
                        let _ = conn.close().await;
                    }
                }
            }
        }
    }
}

/// A held PostgreSQL connection (`hot_reads`) idle this long is pinged
/// before a read.
pub(super) const PING_IF_IDLE: Duration = Duration::from_secs(1);

/// The store key directory as last read, and a generation that every local
/// key change bumps, so a read that raced with a change is not cached.
#[derive(Debug, Default)]
struct KeyCache {
    generation: u64,
    loaded: Option<(Instant, Arc<KeyDirectory>)>,
}

fn to_i64(v: u64) -> Result<i64, DbError> {
    i64::try_from(v).map_err(|_| DbError::Corrupt(format!("{v} does not fit a BIGINT")))
}

/// Creates a SQLite database file mode 0600 (its WAL and shared-memory
/// files take the same mode), or makes an existing one so: the books and
/// the card registry are nobody else's to read.
fn private_file(path: &std::path::Path) -> Result<(), DbError> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let io = |e: std::io::Error| DbError::Corrupt(format!("{}: {e}", path.display()));
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)
}

fn to_u64(v: i64) -> Result<u64, DbError> {
    u64::try_from(v).map_err(|_| DbError::Corrupt(format!("negative value {v}")))
}

impl CenterDb {
    /// Opens (creating if needed) the database at `url`: `sqlite:PATH` or
    /// `postgres://…`. SQLite runs in WAL mode with `synchronous = FULL`,
    /// so a committed step survives a power cut.
    pub async fn open(url: &str) -> Result<CenterDb, DbError> {
        install_default_drivers();
        let (url, sqlite_path) = if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.trim_start_matches("//");
            (format!("sqlite://{path}?mode=rwc"), Some(std::path::PathBuf::from(path)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (url.to_owned(), None)
        } else {
            return Err(DbError::BadUrl);
        };
        let sqlite = sqlite_path.is_some();
        if let Some(path) = &sqlite_path {
            private_file(path)?;
        }
        let connect = |connections: u32| {
            AnyPoolOptions::new()
                .max_connections(connections)
                // On SQLite the pool only lends the writer its connection
                // (held across groups) and the readers theirs, once. On
                // PostgreSQL every connection is pinged before it is lent,
                // so one the server dropped fails no read (the reads on a
                // step's path do without: `hot_reads`).
                .test_before_acquire(!sqlite)
                .acquire_timeout(Duration::from_millis(ACQUIRE_TIMEOUT_MS))
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        if sqlite {
                            for pragma in [
                                "PRAGMA journal_mode = WAL",
                                "PRAGMA synchronous = FULL",
                                "PRAGMA busy_timeout = 5000",
                                // A connection's page cache is dropped whenever
                                // another one committed; mapped pages are not.
                                "PRAGMA mmap_size = 268435456",
                                // Checkpoint (copy the WAL into the database file,
                                // fsync it) every 16k pages rather than every 1k:
                                // rows rewritten at every step are copied once per
                                // many commits. As the ledger does; commits still
                                // fsync the WAL. A background checkpointer
                                // (`kessai_ledger::wal`) copies most pages before,
                                // off the writer's path.
                                "PRAGMA wal_autocheckpoint = 16384",
                            ] {
                                sqlx::query(pragma).execute(&mut *conn).await?;
                            }
                        }
                        Ok(())
                    })
                })
                .connect(&url)
        };
        let pool = connect(if sqlite { 1 } else { MAX_CONNECTIONS }).await?;
        crate::schema::migrate(&pool, sqlite).await?;
        let Some(path) = sqlite_path else {
            // Writes: a ping on every loan (one a write, or a group of
            // steps), so a connection the server dropped fails no write.
            let pg = sqlx::postgres::PgPoolOptions::new()
                .max_connections(MAX_CONNECTIONS)
                .acquire_timeout(Duration::from_millis(ACQUIRE_TIMEOUT_MS))
                .connect(&url)
                .await?;
            let ledger = Ledger::connect_postgres(&url, None).await.map_err(DbError::Books)?;
            let faults = Arc::<Faults>::default();
            return Ok(CenterDb {
                readers: Readers::Pool(pool),
                group: Some(group::Grouper::start(pg.clone(), faults.clone())),
                hot: Some(Arc::new(hot_reads::HotReads::new(&url))),
                pg: Some(pg),
                ledger,
                writer: None,
                checkpointer: Arc::default(),
                fast: None,
                store_keys: Arc::default(),
                faults,
            });
        };
        let reader_pool = connect(SQLITE_READERS).await?;
        let mut conns = Vec::new();
        for _ in 0..SQLITE_READERS {
            conns.push(Arc::new(tokio::sync::Mutex::new(Some(reader_pool.acquire().await?.detach()))));
        }
        reader_pool.close().await;
        let readers = Readers::Own(Arc::new(OwnReaders { conns, next: AtomicUsize::new(0) }));
        // The schema's connection closes; the writer thread has its own.
        pool.close().await;
        let ledger = Ledger::open_sqlite_for_reads(&path).await.map_err(DbError::Books)?;
        let writer = Writer::start(&path)?;
        let checkpointer = Checkpointer::start(&path).await.map_err(DbError::Wal)?;
        let fast = Arc::new(FastReads::open(&path)?);
        Ok(CenterDb {
            readers,
            pg: None,
            group: None,
            hot: None,
            ledger,
            writer: Some(writer),
            checkpointer: Arc::new(Mutex::new(Some(checkpointer))),
            fast: Some(fast),
            store_keys: Arc::default(),
            faults: Arc::default(),
        })
    }

    /// Fault injection, for tests only (see [`Faults`]).
    #[doc(hidden)]
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The books, for reads (balances, history, `check`). Written only in
    /// this database's write transactions.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Closes the connections; later calls fail.
    pub async fn close(&self) {
        if let Some(writer) = &self.writer {
            writer.close().await;
        }
        if let Some(pg) = &self.pg {
            pg.close().await;
        }
        if let Some(hot) = &self.hot {
            hot.close().await;
        }
        self.ledger.close().await;
        self.readers.close().await;
        if let Some(fast) = &self.fast {
            fast.close();
        }
        let checkpointer = self.checkpointer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(checkpointer) = checkpointer {
            checkpointer.stop().await;
        }
    }

    /// Whether the database can be used now: on SQLite the writer thread
    /// runs and a reader answers; on PostgreSQL the database answers. (For
    /// the readiness probe; a write may still fail after `Ok`.)
    pub async fn ready(&self) -> Result<(), DbError> {
        if self.writer.as_ref().is_some_and(Writer::is_stopped) {
            return Err(DbError::NotCommitted("the writer has stopped".into()));
        }
        sqlx::query("SELECT 1").execute(&mut *self.read().await?).await?;
        self.ledger.ready().await.map_err(DbError::Books)
    }

    /// A connection for one read.
    async fn read(&self) -> Result<ReadConn, DbError> {
        self.readers.get().await
    }

    /// Runs `work` as one transaction and returns its result once committed
    /// durably. If `work` fails, nothing it wrote is kept. On SQLite the
    /// transaction is shared with other writes (group commit): if `work`
    /// fails after changing rows, the group's transaction is rolled back and
    /// the writes before it in the group are answered `NotCommitted`.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(Exec<'c>) -> WriteFuture<'c, T> + Send + 'static,
    {
        if let Some(writer) = &self.writer {
            return writer.write(work, self.faults.clone()).await;
        }
        let Some(pool) = &self.pg else {
            return Err(DbError::NotCommitted("no writer".into()));
        };
        let mut tx = pool.begin_with("BEGIN ISOLATION LEVEL READ COMMITTED").await?;
        let out = work(Exec::pg(&mut tx).with_faults(self.faults.clone())).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// One statement as its own write; returns the rows it changed.
    async fn execute(&self, statement: Stmt) -> Result<u64, DbError> {
        self.write(move |mut conn| Box::pin(async move { conn.execute(statement).await })).await
    }
}

/// The columns of a row read through sqlx or (SQLite, `fast_read`)
/// rusqlite, by name, so each record has one decoder whichever read it.
pub(crate) trait Columns {
    fn text(&self, name: &str) -> Result<Option<String>, DbError>;
    fn int(&self, name: &str) -> Result<Option<i64>, DbError>;

    fn required_text(&self, name: &str) -> Result<String, DbError> {
        self.text(name)?.ok_or_else(|| corrupt(format!("{name} is NULL")))
    }

    fn required_int(&self, name: &str) -> Result<i64, DbError> {
        self.int(name)?.ok_or_else(|| corrupt(format!("{name} is NULL")))
    }
}

impl Columns for sqlx::any::AnyRow {
    fn text(&self, name: &str) -> Result<Option<String>, DbError> {
        Ok(self.try_get(name)?)
    }

    fn int(&self, name: &str) -> Result<Option<i64>, DbError> {
        Ok(self.try_get(name)?)
    }
}

impl Columns for sqlx::postgres::PgRow {
    fn text(&self, name: &str) -> Result<Option<String>, DbError> {
        Ok(self.try_get(name)?)
    }

    fn int(&self, name: &str) -> Result<Option<i64>, DbError> {
        Ok(self.try_get(name)?)
    }
}

impl Columns for rusqlite::Row<'_> {
    fn text(&self, name: &str) -> Result<Option<String>, DbError> {
        Ok(self.get(name)?)
    }

    fn int(&self, name: &str) -> Result<Option<i64>, DbError> {
        Ok(self.get(name)?)
    }
}

/// The reads on every step's path, written once for both readers
/// (`$n` parameters appear in order, so they bind by position in both).
const STORE_AND_CARD_SQL: &str = "SELECT s.id AS s_id, s.name AS s_name, s.mall AS s_mall,
     s.notify_url AS s_notify_url, s.client_name AS s_client_name, s.bank_account AS s_bank_account, c.id AS c_id,
     c.key_version AS c_key_version, c.status AS c_status, c.currency AS c_currency,
     c.max_balance_minor AS c_max_balance_minor, ss.purchase_profiles AS s_profiles,
     (SELECT MAX(l.counter) FROM center_card_log l WHERE l.card_id = c.id) AS c_log_through
     FROM (SELECT 1 AS one) q LEFT JOIN center_stores s ON s.id = $1 LEFT JOIN center_cards c ON c.id = $2
     LEFT JOIN center_store_settings ss ON ss.store = s.id";
const RESPONSE_AND_SETTLEMENT_SQL: &str = "SELECT i.request_hash, i.status, i.body, s.record, s.version
     FROM (SELECT 1 AS one) q
     LEFT JOIN center_idempotency i ON i.key = $1 LEFT JOIN center_settlements s ON s.id = $2";
const RESPONSE_SQL: &str = "SELECT request_hash, status, body FROM center_idempotency WHERE key = $1";

/// `decode(r)` if column `column` of `r` is not NULL (the row a LEFT JOIN
/// found), else `None`.
fn present<T>(
    r: &dyn Columns,
    column: &str,
    decode: fn(&dyn Columns) -> Result<T, DbError>,
) -> Result<Option<T>, DbError> {
    r.text(column)?.map(|_| decode(r)).transpose()
}

/// A stored Idempotency-Key answer: `(request hash, status, body)`.
fn response_row(r: &dyn Columns) -> Result<(String, u16, String), DbError> {
    let status = u16::try_from(r.required_int("status")?).map_err(corrupt)?;
    Ok((r.required_text("request_hash")?, status, r.required_text("body")?))
}

fn settlement_row(r: &dyn Columns) -> Result<(Settlement, i64), DbError> {
    let s: Settlement = serde_json::from_str(&r.required_text("record")?).map_err(corrupt)?;
    Ok((s, r.required_int("version")?))
}

/// A store from the `s_`-prefixed columns of `r`.
fn store_row(r: &dyn Columns) -> Result<StoreRecord, DbError> {
    Ok(StoreRecord {
        id: StoreId::parse(&r.required_text("s_id")?).map_err(corrupt)?,
        name: DisplayText::parse(&r.required_text("s_name")?).map_err(corrupt)?,
        mall: r.text("s_mall")?.map(|m| StoreId::parse(&m)).transpose().map_err(corrupt)?,
        notify_url: r.text("s_notify_url")?,
        client_name: r.text("s_client_name")?,
        bank_account: r.text("s_bank_account")?,
    })
}

/// A card from the `c_`-prefixed columns of `r`.
fn card_row(r: &dyn Columns) -> Result<CardRecord, DbError> {
    Ok(CardRecord {
        id: CardId::parse(&r.required_text("c_id")?).map_err(corrupt)?,
        key_version: u8::try_from(r.required_int("c_key_version")?).map_err(corrupt)?,
        status: status_parse(&r.required_text("c_status")?)?,
        currency: Currency::from_str(&r.required_text("c_currency")?).map_err(corrupt)?,
        max_balance_minor: to_u64(r.required_int("c_max_balance_minor")?)?,
    })
}

fn status_name(s: CardRegistryStatus) -> &'static str {
    match s {
        CardRegistryStatus::Active => "active",
        CardRegistryStatus::Blocked => "blocked",
        CardRegistryStatus::Lost => "lost",
    }
}

fn status_parse(s: &str) -> Result<CardRegistryStatus, DbError> {
    match s {
        "active" => Ok(CardRegistryStatus::Active),
        "blocked" => Ok(CardRegistryStatus::Blocked),
        "lost" => Ok(CardRegistryStatus::Lost),
        other => Err(corrupt(format!("card status {other:?}"))),
    }
}
