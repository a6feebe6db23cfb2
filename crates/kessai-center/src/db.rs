//! The center's information management: registry (stores, their keys,
//! cards), settlements, and idempotent responses, in SQLite (embedded
//! default) or PostgreSQL (several stateless instances), through sqlx's
//! `Any` driver. Every statement is written once, with `$n` parameters,
//! which both backends accept.
//!
//! Settlements are updated with optimistic concurrency: each row has a
//! version, and an update names the version it read. Two instances racing
//! on one settlement cannot both win; the loser sees `Conflict` and the
//! client retries (its Idempotency-Key makes the retry safe).
//!
//! Every write is one database transaction ([`CenterDb::write`]) of
//! statements written once for both backends (`writer::Stmt`). On SQLite,
//! writes go through one writer thread with its own connection that
//! group-commits (see `writer`): one fsync for many requests, and a reply
//! still follows a durable commit. Reads use separate connections the
//! center holds itself (WAL: they see the last commit and never wait for
//! the writer); the reads on every purchase step's path run on the calling
//! thread (`fast_read`), the others through sqlx.

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
pub use crate::writer::WriteFuture;
use crate::writer::{Exec, Stmt, Writer};

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
    /// may succeed (PostgreSQL: a serialization failure or deadlock between
    /// concurrent transactions, or a ledger row a concurrent one inserted
    /// first).
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

fn corrupt(e: impl std::fmt::Display) -> DbError {
    DbError::Corrupt(e.to_string())
}

/// A store as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRecord {
    pub id: StoreId,
    pub name: DisplayText,
    /// The mall this store is a member of, if any.
    pub mall: Option<StoreId>,
    /// Where completions (SIG3) are delivered, over mutual TLS.
    pub notify_url: Option<String>,
    /// The name in the store's mutual-TLS client certificate.
    pub client_name: Option<String>,
    pub bank_account: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CenterDb {
    /// Reads.
    readers: Readers,
    /// PostgreSQL: writes, each a SERIALIZABLE transaction.
    pg: Option<sqlx::PgPool>,
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
        let connect = |connections: u32| {
            AnyPoolOptions::new()
                .max_connections(connections)
                // On SQLite the pool only lends the writer its connection
                // (held across groups) and the readers theirs, once.
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
            let pg = sqlx::postgres::PgPoolOptions::new()
                .max_connections(MAX_CONNECTIONS)
                .acquire_timeout(Duration::from_millis(ACQUIRE_TIMEOUT_MS))
                .connect(&url)
                .await?;
            let ledger = Ledger::connect_postgres(&url, None).await.map_err(DbError::Books)?;
            return Ok(CenterDb {
                readers: Readers::Pool(pool),
                pg: Some(pg),
                ledger,
                writer: None,
                checkpointer: Arc::default(),
                fast: None,
                store_keys: Arc::default(),
                faults: Arc::default(),
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
        // SERIALIZABLE, as the books' engine needs (it reads balances and
        // writes them back); a transaction that loses a conflict fails with
        // an error for which `is_retryable` holds.
        let mut tx = pool.begin_with("BEGIN ISOLATION LEVEL SERIALIZABLE").await?;
        let out = work(Exec::pg(&mut tx).with_faults(self.faults.clone())).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// One statement as its own write; returns the rows it changed.
    async fn execute(&self, statement: Stmt) -> Result<u64, DbError> {
        self.write(move |mut conn| Box::pin(async move { conn.execute(statement).await })).await
    }

    /// Adds or updates a store.
    pub async fn put_store(&self, s: &StoreRecord, now: Timestamp) -> Result<(), DbError> {
        self.put_store_with_keys(s, &[], now).await
    }

    /// Adds or updates a store and, in the same transaction, its signing
    /// keys: the store and its keys, or neither.
    pub async fn put_store_with_keys(
        &self,
        s: &StoreRecord,
        keys: &[(PublicKey, Validity)],
        now: Timestamp,
    ) -> Result<(), DbError> {
        let mut statements = vec![store_query(s, now)?];
        for (key, window) in keys {
            statements.push(store_key_query(&s.id, key, *window)?);
        }
        let done = self
            .write(move |mut conn| {
                Box::pin(async move {
                    for statement in statements {
                        conn.execute(statement).await?;
                    }
                    Ok(())
                })
            })
            .await;
        if !keys.is_empty() {
            self.forget_store_keys();
        }
        done
    }

    pub async fn store(&self, id: &StoreId) -> Result<Option<StoreRecord>, DbError> {
        let row = sqlx::query(
            "SELECT id AS s_id, name AS s_name, mall AS s_mall, notify_url AS s_notify_url,
             client_name AS s_client_name, bank_account AS s_bank_account FROM center_stores WHERE id = $1",
        )
        .bind(id.as_str().to_owned())
        .fetch_optional(&mut *self.read().await?)
        .await?;
        row.map(|r| store_row(&r)).transpose()
    }

    /// [`CenterDb::store`] and [`CenterDb::card`] in one statement.
    pub async fn store_and_card(
        &self,
        store: &StoreId,
        card: &CardId,
    ) -> Result<(Option<StoreRecord>, Option<CardRecord>), DbError> {
        let decode = |row: &dyn Columns| Ok((present(row, "s_id", store_row)?, present(row, "c_id", card_row)?));
        self.read_one(STORE_AND_CARD_SQL, &[store.as_str(), &card.to_string()], decode)
            .await?
            .ok_or_else(|| corrupt("a LEFT JOIN from one row answered none"))
    }

    /// Registers a signing key of a store (the merchant of record).
    pub async fn put_store_key(&self, store: &StoreId, key: &PublicKey, window: Validity) -> Result<(), DbError> {
        let done = self.execute(store_key_query(store, key, window)?).await;
        self.forget_store_keys();
        done?;
        Ok(())
    }

    pub async fn revoke_store_key(&self, kid: &KeyId) -> Result<bool, DbError> {
        let query = Stmt::new("UPDATE center_store_keys SET revoked = 1 WHERE kid = $1").bind(kid.as_str().to_owned());
        let done = self.execute(query).await;
        self.forget_store_keys();
        Ok(done? == 1)
    }

    /// Drops the cached store key directory (after a key changed here).
    fn forget_store_keys(&self) {
        let mut cache = self.store_keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.generation += 1;
        cache.loaded = None;
    }

    /// Every registered store key, as the directory bills are checked
    /// against: cached for at most [`STORE_KEYS_TTL`], and read again at
    /// once after a key is added or revoked through this instance.
    pub async fn store_keys(&self) -> Result<Arc<KeyDirectory>, DbError> {
        let generation = {
            let cache = self.store_keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((at, dir)) = &cache.loaded
                && at.elapsed() < STORE_KEYS_TTL
            {
                return Ok(dir.clone());
            }
            cache.generation
        };
        let read_at = Instant::now();
        let dir = Arc::new(self.read_store_keys().await?);
        let mut cache = self.store_keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.generation == generation {
            cache.loaded = Some((read_at, dir.clone()));
        }
        Ok(dir)
    }

    async fn read_store_keys(&self) -> Result<KeyDirectory, DbError> {
        let rows = sqlx::query("SELECT store, public_key, not_before, not_after, revoked FROM center_store_keys")
            .fetch_all(&mut *self.read().await?)
            .await?;
        let mut dir = KeyDirectory::new();
        let mut revoked = Vec::new();
        for r in rows {
            let bytes: [u8; 32] = hex::decode(r.try_get::<String, _>("public_key")?)
                .map_err(corrupt)?
                .try_into()
                .map_err(|_| corrupt("public key length"))?;
            let public = PublicKey::from_bytes(&bytes).map_err(corrupt)?;
            let ts = |v: Option<i64>| v.map(|v| to_u64(v).map(Timestamp::from_unix_s)).transpose();
            let window =
                Validity { not_before: ts(r.try_get("not_before")?)?, not_after: ts(r.try_get("not_after")?)? };
            let owner = PartyId::parse(&r.try_get::<String, _>("store")?).map_err(corrupt)?;
            if r.try_get::<i64, _>("revoked")? != 0 {
                revoked.push(public.kid().clone());
            }
            dir.insert(owner, public, window).map_err(corrupt)?;
        }
        for kid in revoked {
            dir.revoke(&kid).map_err(corrupt)?;
        }
        Ok(dir)
    }

    pub async fn put_card(&self, c: &CardRecord, now: Timestamp) -> Result<(), DbError> {
        self.put_card_with(c, now, Entries::none()).await
    }

    /// Registers a card and, in the same transaction, its books `entries`
    /// (its accounts, its initial value): both or neither.
    pub async fn put_card_with(&self, c: &CardRecord, now: Timestamp, entries: Entries) -> Result<(), DbError> {
        let query = Stmt::new(
            "INSERT INTO center_cards (id, key_version, status, currency, max_balance_minor, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(c.id.to_string())
        .bind(i64::from(c.key_version))
        .bind(status_name(c.status).to_owned())
        .bind(c.currency.code().to_owned())
        .bind(to_i64(c.max_balance_minor)?)
        .bind(to_i64(now.unix_s())?);
        let now_s = now.unix_s();
        self.write(move |mut conn| {
            Box::pin(async move {
                conn.books(&entries, now_s).await?;
                conn.execute(query).await?;
                Ok(())
            })
        })
        .await
    }

    /// Blocks or reports lost a card, with the reason recorded.
    pub async fn set_card_status(
        &self,
        id: &CardId,
        status: CardRegistryStatus,
        reason: &str,
    ) -> Result<bool, DbError> {
        let query = Stmt::new("UPDATE center_cards SET status = $1, status_reason = $2 WHERE id = $3")
            .bind(status_name(status).to_owned())
            .bind(reason.to_owned())
            .bind(id.to_string());
        Ok(self.execute(query).await? == 1)
    }

    pub async fn card(&self, id: &CardId) -> Result<Option<CardRecord>, DbError> {
        let row = sqlx::query(
            "SELECT id AS c_id, key_version AS c_key_version, status AS c_status, currency AS c_currency,
             max_balance_minor AS c_max_balance_minor FROM center_cards WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&mut *self.read().await?)
        .await?;
        row.map(|r| card_row(&r)).transpose()
    }

    /// Stores a new settlement. If the store already has a settlement for
    /// this bill id, returns that one instead (a duplicate bill).
    pub async fn insert_settlement(
        &self,
        s: &Settlement,
        now: Timestamp,
    ) -> Result<Option<(Settlement, i64)>, DbError> {
        self.insert_settlement_answering(s, now, None).await
    }

    /// As [`CenterDb::insert_settlement`], remembering `response` as the
    /// answer to its Idempotency-Key in the same transaction if the
    /// settlement was inserted.
    pub async fn insert_settlement_answering(
        &self,
        s: &Settlement,
        now: Timestamp,
        response: Option<SavedResponse>,
    ) -> Result<Option<(Settlement, i64)>, DbError> {
        let insert = Stmt::new(
            "INSERT INTO center_settlements (id, store, bill_id, card_id, phase, record, version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7) ON CONFLICT (store, bill_id) DO NOTHING",
        )
        .bind(s.id.as_str().to_owned())
        .bind(s.bill.store.as_str().to_owned())
        .bind(s.bill.bill_id.as_str().to_owned())
        .bind(s.card_id.to_string())
        .bind(s.phase.as_str().to_owned())
        .bind(serde_json::to_string(s).map_err(corrupt)?)
        .bind(to_i64(now.unix_s())?);
        let existing = Stmt::new("SELECT record, version FROM center_settlements WHERE store = $1 AND bill_id = $2")
            .bind(s.bill.store.as_str().to_owned())
            .bind(s.bill.bill_id.as_str().to_owned());
        let save = response.map(|r| r.statement(now)).transpose()?;
        self.write(move |mut conn| {
            Box::pin(async move {
                if conn.execute(insert).await? == 1 {
                    if let Some(save) = save {
                        conn.execute(save).await?;
                    }
                    return Ok(None);
                }
                Ok(Some(conn.fetch_one(existing, settlement_row).await?))
            })
        })
        .await
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
        self.update_settlement_answering(s, version, now, None, Entries::none()).await
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
        response: Option<SavedResponse>,
        entries: Entries,
    ) -> Result<(), DbError> {
        let check = Stmt::new("SELECT version FROM center_settlements WHERE id = $1").bind(s.id.as_str().to_owned());
        let update = Stmt::new(
            "UPDATE center_settlements SET phase = $1, record = $2, version = version + 1, updated_at = $3,
             delivered = $6 WHERE id = $4 AND version = $5",
        )
        .bind(s.phase.as_str().to_owned())
        .bind(serde_json::to_string(s).map_err(corrupt)?)
        .bind(to_i64(now.unix_s())?)
        .bind(s.id.as_str().to_owned())
        .bind(version)
        .bind(i64::from(s.receipt_token.is_some()));
        let save = response.map(|r| r.statement(now)).transpose()?;
        let now_s = now.unix_s();
        self.write(move |mut conn| {
            Box::pin(async move {
                // Checked before anything is written, so that losing the race
                // (or the books refusing) leaves the group's transaction clean.
                if conn.fetch_optional(check, |r| r.required_int("version")).await? != Some(version) {
                    return Err(DbError::Conflict);
                }
                conn.books(&entries, now_s).await?;
                if conn.execute(update).await? != 1 {
                    return Err(DbError::Conflict);
                }
                if let Some(save) = save {
                    conn.execute(save).await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Settlements, newest first, optionally of one card or in one phase.
    pub async fn list_settlements(
        &self,
        card: Option<&CardId>,
        phase: Option<Phase>,
        limit: i64,
    ) -> Result<Vec<Settlement>, DbError> {
        let rows = sqlx::query(
            "SELECT record, version FROM center_settlements
             WHERE ($1 IS NULL OR card_id = $1) AND ($2 IS NULL OR phase = $2)
             ORDER BY created_at DESC, id LIMIT $3",
        )
        .bind(card.map(|c| c.to_string()))
        .bind(phase.map(|p| p.as_str().to_owned()))
        .bind(limit.clamp(1, MAX_LIST))
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(|r| settlement_row(r).map(|(s, _)| s)).collect()
    }

    pub async fn insert_statement(&self, s: &crate::statement::Statement) -> Result<(), DbError> {
        let query = Stmt::new(
            "INSERT INTO center_statements (id, card_id, record, version, created_at) VALUES ($1, $2, $3, 1, $4)",
        )
        .bind(s.id.clone())
        .bind(s.card_id.to_string())
        .bind(serde_json::to_string(s).map_err(corrupt)?)
        .bind(to_i64(s.created_at.unix_s())?);
        self.execute(query).await?;
        Ok(())
    }

    pub async fn statement(&self, id: &str) -> Result<Option<(crate::statement::Statement, i64)>, DbError> {
        let row = sqlx::query("SELECT record, version FROM center_statements WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(&mut *self.read().await?)
            .await?;
        row.map(|r| {
            let record: String = r.try_get("record")?;
            Ok((serde_json::from_str(&record).map_err(corrupt)?, r.try_get("version")?))
        })
        .transpose()
    }

    pub async fn update_statement(&self, s: &crate::statement::Statement, version: i64) -> Result<(), DbError> {
        let query =
            Stmt::new("UPDATE center_statements SET record = $1, version = version + 1 WHERE id = $2 AND version = $3")
                .bind(serde_json::to_string(s).map_err(corrupt)?)
                .bind(s.id.clone())
                .bind(version);
        if self.execute(query).await? != 1 {
            return Err(DbError::Conflict);
        }
        Ok(())
    }

    /// Completed settlements whose receipt is not stored yet, oldest first.
    pub async fn undelivered(&self, limit: i64) -> Result<Vec<Settlement>, DbError> {
        Ok(self.undelivered_after(&UndeliveredCursor::default(), limit).await?.0)
    }

    /// As [`CenterDb::undelivered`], those after `from` (in the order
    /// they completed), with where the next page starts: after the last
    /// row read, or (a short page: the end was reached) at the oldest again.
    /// Page by page, a sweep reaches every undelivered completion however
    /// many older ones keep failing. A row whose record cannot be read is
    /// logged and passed over, not left to stop every later page.
    pub async fn undelivered_after(
        &self,
        from: &UndeliveredCursor,
        limit: i64,
    ) -> Result<(Vec<Settlement>, UndeliveredCursor), DbError> {
        let limit = limit.clamp(1, MAX_LIST);
        let (after_at, after_id) = from.0.clone().unwrap_or((i64::MIN, String::new()));
        let rows = sqlx::query(
            "SELECT record, version, updated_at, id FROM center_settlements
             WHERE phase = 'completed' AND delivered = 0 AND (updated_at, id) > ($1, $2)
             ORDER BY updated_at, id LIMIT $3",
        )
        .bind(after_at)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&mut *self.read().await?)
        .await?;
        let mut next = UndeliveredCursor::default();
        let mut found = Vec::with_capacity(rows.len());
        for r in &rows {
            let id = r.required_text("id")?;
            match settlement_row(r) {
                Ok((s, _)) => found.push(s),
                Err(e) => tracing::error!(settlement = %id, error = %e, "undelivered completion cannot be read"),
            }
            next = UndeliveredCursor(Some((r.required_int("updated_at")?, id)));
        }
        if i64::try_from(rows.len()).is_ok_and(|n| n < limit) {
            next = UndeliveredCursor::default();
        }
        Ok((found, next))
    }

    /// [`CenterDb::idempotent_response`] and [`CenterDb::settlement`] in
    /// one statement.
    #[allow(clippy::type_complexity)]
    pub async fn idempotent_response_and_settlement(
        &self,
        key: &str,
        id: &SettlementId,
    ) -> Result<(Option<(String, u16, String)>, Option<(Settlement, i64)>), DbError> {
        let decode = |row: &dyn Columns| {
            Ok((present(row, "request_hash", response_row)?, present(row, "record", settlement_row)?))
        };
        self.read_one(RESPONSE_AND_SETTLEMENT_SQL, &[key, id.as_str()], decode)
            .await?
            .ok_or_else(|| corrupt("a LEFT JOIN from one row answered none"))
    }

    /// The stored answer for an Idempotency-Key, if any: `(request hash,
    /// status, body)`.
    pub async fn idempotent_response(&self, key: &str) -> Result<Option<(String, u16, String)>, DbError> {
        self.read_one(RESPONSE_SQL, &[key], response_row).await
    }

    /// The first row of `sql` (text parameters `$1`, `$2`, … in order),
    /// decoded: on SQLite on the calling thread (`fast_read`), else through
    /// sqlx.
    async fn read_one<T>(
        &self,
        sql: &'static str,
        params: &[&str],
        decode: impl Fn(&dyn Columns) -> Result<T, DbError>,
    ) -> Result<Option<T>, DbError> {
        if let Some(fast) = &self.fast {
            return fast.with(|conn| {
                let mut statement = conn.prepare_cached(sql)?;
                statement.query_row(rusqlite::params_from_iter(params), |row| Ok(decode(row))).optional()?.transpose()
            });
        }
        let query = params.iter().fold(sqlx::query(sql), |query, p| query.bind((*p).to_owned()));
        query.fetch_optional(&mut *self.read().await?).await?.map(|row| decode(&row)).transpose()
    }

    /// Remembers the answer to an Idempotency-Key (first writer wins).
    pub async fn save_response(
        &self,
        key: &str,
        hash: &str,
        status: u16,
        body: &str,
        now: Timestamp,
    ) -> Result<(), DbError> {
        let saved = SavedResponse { key: key.to_owned(), hash: hash.to_owned(), status, body: body.to_owned() };
        self.execute(saved.statement(now)?).await?;
        Ok(())
    }
}

/// Where a page of undelivered completions starts: after the completion
/// it names (its completion time and id), or (default) at the oldest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UndeliveredCursor(Option<(i64, String)>);

/// An answer to remember for an Idempotency-Key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedResponse {
    pub key: String,
    /// The request's fingerprint (SHA-256, hex).
    pub hash: String,
    pub status: u16,
    pub body: String,
}

impl SavedResponse {
    /// The insert; the first answer stored for a key wins.
    fn statement(self, now: Timestamp) -> Result<Stmt, DbError> {
        Ok(Stmt::new(
            "INSERT INTO center_idempotency (key, request_hash, status, body, created_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO NOTHING",
        )
        .bind(self.key)
        .bind(self.hash)
        .bind(i64::from(self.status))
        .bind(self.body)
        .bind(to_i64(now.unix_s())?))
    }
}

/// What a value update's ending changes beside it, in the same transaction.
#[derive(Debug, Clone, Copy)]
pub enum Alongside<'a> {
    Nothing,
    /// The card applied the owed item: it is settled.
    OwedApplied(&'a str),
    /// The card provably did not apply it: it is owed again.
    OwedReleased(&'a str),
    /// A decrease ended voided: its amount can be decreased again.
    DecreaseReleased {
        charge_id: &'a str,
        amount_minor: u64,
    },
    /// A charge ended voided: its amount no longer counts toward the day's limit.
    DailyReleased {
        card: &'a CardId,
        day: u64,
        amount_minor: u64,
    },
}

/// How storing a refund went.
#[derive(Debug)]
pub enum RefundStored {
    Inserted,
    /// The store sent this refund before: here it is as it stands.
    Existing(Box<Owed>),
    /// It would take the refunds of the settlement past its amount (or the
    /// settlement is not completed); `refunded_minor` is refunded already.
    Refused {
        refunded_minor: u64,
    },
}

/// What the center owes cards (purchase refunds) and cards owe the center
/// (corrections). `status` and `session` are columns, changed only by
/// compare-and-set: at most one value update applies an item at a time.
impl CenterDb {
    /// Stores a purchase refund, reserving its amount against the
    /// settlement in the same transaction, so the refunds of a purchase
    /// never sum past it, however many instances race.
    pub async fn insert_refund(
        &self,
        o: &Owed,
        settlement: &SettlementId,
        purchase_minor: u64,
        now: Timestamp,
        hold: Entries,
    ) -> Result<RefundStored, DbError> {
        let now_s = now.unix_s();
        if let Some(existing) = self.owed(&o.id).await? {
            return Ok(RefundStored::Existing(Box::new(existing)));
        }
        let existing = Stmt::new(OWED_SQL).bind(o.id.clone());
        let reserve = Stmt::new(
            "UPDATE center_settlements SET refunded_minor = refunded_minor + $1
             WHERE id = $2 AND phase = 'completed' AND refunded_minor + $1 <= $3",
        )
        .bind(to_i64(o.body.amount.amount_minor())?)
        .bind(settlement.as_str().to_owned())
        .bind(to_i64(purchase_minor)?);
        let refunded = Stmt::new("SELECT refunded_minor FROM center_settlements WHERE id = $1")
            .bind(settlement.as_str().to_owned());
        let insert = insert_owed_query(o, now)?;
        let stored = self
            .write(move |mut conn| {
                Box::pin(async move {
                    // Checked again inside the transaction: on SQLite the
                    // writer runs one write at a time, so this cannot race.
                    if let Some(owed) = conn.fetch_optional(existing, owed_row).await? {
                        return Ok(RefundStored::Existing(Box::new(owed)));
                    }
                    if conn.execute(reserve).await? != 1 {
                        let refunded_minor =
                            conn.fetch_one(refunded, |r| to_u64(r.required_int("refunded_minor")?)).await?;
                        return Ok(RefundStored::Refused { refunded_minor });
                    }
                    conn.execute(insert).await?;
                    // The refund's hold, in the same transaction as the item.
                    conn.books(&hold, now_s).await?;
                    Ok(RefundStored::Inserted)
                })
            })
            .await;
        match stored {
            // Another instance (PostgreSQL) stored the same refund meanwhile;
            // its transaction, with the reservation, was rolled back.
            Err(e) if e.is_unique_violation() => {
                let existing = self.owed(&o.id).await?.ok_or_else(|| corrupt("refund vanished"))?;
                Ok(RefundStored::Existing(Box::new(existing)))
            }
            other => other,
        }
    }

    /// What is refunded of a settlement so far.
    pub async fn settlement_refunded(&self, id: &SettlementId) -> Result<u64, DbError> {
        let row = sqlx::query("SELECT refunded_minor FROM center_settlements WHERE id = $1")
            .bind(id.as_str().to_owned())
            .fetch_one(&mut *self.read().await?)
            .await?;
        to_u64(row.try_get("refunded_minor")?)
    }

    /// Stores an owed item with no purchase behind it (a correction) and
    /// its `hold` in the books, in one transaction. `false` if it exists
    /// already; a refusal of the books (beyond the card's float) stores
    /// nothing.
    pub async fn insert_owed(&self, o: &Owed, now: Timestamp, hold: Entries) -> Result<bool, DbError> {
        let exists = Stmt::new(OWED_SQL).bind(o.id.clone());
        let insert = insert_owed_query(o, now)?;
        let now_s = now.unix_s();
        let stored = self
            .write(move |mut conn| {
                Box::pin(async move {
                    if conn.fetch_optional(exists, owed_row).await?.is_some() {
                        return Ok(false);
                    }
                    conn.books(&hold, now_s).await?;
                    conn.execute(insert).await?;
                    Ok(true)
                })
            })
            .await;
        match stored {
            Err(e) if e.is_unique_violation() => Ok(false),
            other => other,
        }
    }

    pub async fn owed(&self, id: &str) -> Result<Option<Owed>, DbError> {
        let row = sqlx::query(OWED_SQL).bind(id.to_owned()).fetch_optional(&mut *self.read().await?).await?;
        row.map(|r| owed_row(&r)).transpose()
    }

    /// A card's items still owed: what it is owed (refunds, credits) before
    /// what it owes (corrections, debits), each oldest first — so a debit
    /// the card cannot cover yet never holds back a credit.
    pub async fn owed_for_card(&self, card: &CardId, limit: i64) -> Result<Vec<Owed>, DbError> {
        let rows = sqlx::query(
            "SELECT id, status, session, applied_by, record FROM center_owed
             WHERE card_id = $1 AND status = $2 ORDER BY (store IS NULL), created_at, id LIMIT $3",
        )
        .bind(card.to_string())
        .bind(OwedStatus::Owed.as_str().to_owned())
        .bind(limit.clamp(1, MAX_LIST))
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(|r| owed_row(r)).collect()
    }

    /// Opens value update `c` to apply owed item `owed`, if no other is
    /// applying it: claim and insert in one transaction. `false` if the
    /// item is no longer owed or another update holds it.
    pub async fn claim_owed(
        &self,
        owed: &str,
        c: &ValueUpdate,
        now: Timestamp,
        hold: Entries,
    ) -> Result<bool, DbError> {
        let now_s = now.unix_s();
        let claim = Stmt::new(
            "UPDATE center_owed SET session = $1, version = version + 1, updated_at = $2
             WHERE id = $3 AND status = $4 AND session IS NULL",
        )
        .bind(c.id.as_str().to_owned())
        .bind(to_i64(now.unix_s())?)
        .bind(owed.to_owned())
        .bind(OwedStatus::Owed.as_str().to_owned());
        let insert = insert_update_query(c, now)?;
        self.write(move |mut conn| {
            Box::pin(async move {
                // The hold first: its refusal leaves nothing written.
                conn.books(&hold, now_s).await?;
                if conn.execute(claim).await? != 1 {
                    return Ok(false);
                }
                conn.execute(insert).await?;
                Ok(true)
            })
        })
        .await
    }

    /// Cancels an owed item no value update holds, voiding its hold in the
    /// same transaction. `false` if it is being applied, applied, or
    /// cancelled already.
    pub async fn cancel_owed(&self, id: &str, now: Timestamp, void: Entries) -> Result<bool, DbError> {
        let owed = Stmt::new(OWED_SQL).bind(id.to_owned());
        let done = Stmt::new(
            "UPDATE center_owed SET status = $1, version = version + 1, updated_at = $2
             WHERE id = $3 AND status = $4 AND session IS NULL",
        )
        .bind(OwedStatus::Cancelled.as_str().to_owned())
        .bind(to_i64(now.unix_s())?)
        .bind(id.to_owned())
        .bind(OwedStatus::Owed.as_str().to_owned());
        let now_s = now.unix_s();
        let id = id.to_owned();
        self.write(move |mut conn| {
            Box::pin(async move {
                match conn.fetch_optional(owed, owed_row).await? {
                    Some(o) if o.status == OwedStatus::Owed && o.session.is_none() => {}
                    _ => return Ok(false),
                }
                match conn.books(&void, now_s).await {
                    // Never held (an item stored before holds were made in
                    // its own transaction): nothing to void.
                    Err(DbError::BooksRefused { code: "pending_transfer_not_found", .. }) | Ok(()) => {}
                    Err(e) => return Err(e),
                }
                if conn.execute(done).await? != 1 {
                    return Err(DbError::Inconsistent(format!("owed item {id} changed while it was cancelled")));
                }
                Ok(true)
            })
        })
        .await
    }
}

fn store_query(s: &StoreRecord, now: Timestamp) -> Result<Stmt, DbError> {
    Ok(Stmt::new(
        "INSERT INTO center_stores (id, name, mall, notify_url, client_name, bank_account, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (id) DO UPDATE SET name = $2, mall = $3, notify_url = $4, client_name = $5, bank_account = $6",
    )
    .bind(s.id.as_str().to_owned())
    .bind(s.name.as_str().to_owned())
    .bind(s.mall.as_ref().map(|m| m.as_str().to_owned()))
    .bind(s.notify_url.clone())
    .bind(s.client_name.clone())
    .bind(s.bank_account.clone())
    .bind(to_i64(now.unix_s())?))
}

/// A store's key, added, or its window changed if the key is that store's.
fn store_key_query(store: &StoreId, key: &PublicKey, window: Validity) -> Result<Stmt, DbError> {
    let ts = |t: Option<Timestamp>| t.map(|t| to_i64(t.unix_s())).transpose();
    Ok(Stmt::new(
        "INSERT INTO center_store_keys (kid, store, public_key, not_before, not_after, revoked)
         VALUES ($1, $2, $3, $4, $5, 0)
         ON CONFLICT (kid) DO UPDATE SET not_before = $4, not_after = $5 WHERE center_store_keys.store = $2",
    )
    .bind(key.kid().as_str().to_owned())
    .bind(store.as_str().to_owned())
    .bind(hex::encode(key.as_bytes()))
    .bind(ts(window.not_before)?)
    .bind(ts(window.not_after)?))
}

fn release_daily_query(card: &CardId, day: u64, amount_minor: u64) -> Result<Stmt, DbError> {
    Ok(Stmt::new(
        "UPDATE center_charge_days SET charged_minor = charged_minor - $1
         WHERE card_id = $2 AND day = $3 AND charged_minor >= $1",
    )
    .bind(to_i64(amount_minor)?)
    .bind(card.to_string())
    .bind(to_i64(day)?))
}

fn insert_owed_query(o: &Owed, now: Timestamp) -> Result<Stmt, DbError> {
    let (store, reference) = o.body.kind.store_and_reference();
    Ok(Stmt::new(
        "INSERT INTO center_owed (id, card_id, status, session, applied_by, store, reference, record, version,
         created_at, updated_at) VALUES ($1, $2, $3, NULL, NULL, $4, $5, $6, 1, $7, $7)",
    )
    .bind(o.id.clone())
    .bind(o.body.card_id.to_string())
    .bind(OwedStatus::Owed.as_str().to_owned())
    .bind(store)
    .bind(reference)
    .bind(serde_json::to_string(&o.body).map_err(corrupt)?)
    .bind(to_i64(now.unix_s())?))
}

const OWED_SQL: &str = "SELECT id, status, session, applied_by, record FROM center_owed WHERE id = $1";

fn owed_row(r: &dyn Columns) -> Result<Owed, DbError> {
    let body: OwedBody = serde_json::from_str(&r.required_text("record")?).map_err(corrupt)?;
    let parse_update = |v: Option<String>| v.map(|v| UpdateId::parse(&v)).transpose().map_err(corrupt);
    Ok(Owed {
        id: r.required_text("id")?,
        status: OwedStatus::parse(&r.required_text("status")?).ok_or_else(|| corrupt("owed status"))?,
        session: parse_update(r.text("session")?)?,
        applied_by: parse_update(r.text("applied_by")?)?,
        body,
    })
}

/// Charges (value updates), stored like settlements: the record as JSON,
/// updated only by compare-and-set on its version. No payment card data is
/// ever in a record (see [`crate::authorizer::PaymentCard`]).
impl CenterDb {
    pub async fn insert_update(&self, c: &ValueUpdate, now: Timestamp) -> Result<(), DbError> {
        self.execute(insert_update_query(c, now)?).await?;
        Ok(())
    }

    /// A charge and the version to name when updating it.
    pub async fn value_update(&self, id: &str) -> Result<Option<(ValueUpdate, i64)>, DbError> {
        let row = sqlx::query("SELECT record, version FROM center_value_updates WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(&mut *self.read().await?)
            .await?;
        row.map(|r| {
            let record: String = r.try_get("record")?;
            let c: ValueUpdate = serde_json::from_str(&record).map_err(corrupt)?;
            Ok((c, r.try_get("version")?))
        })
        .transpose()
    }

    /// Writes `c` if the row is still at `version`.
    pub async fn store_update(&self, c: &ValueUpdate, version: i64, now: Timestamp) -> Result<(), DbError> {
        self.store_update_with(c, version, now, Alongside::Nothing, Entries::none(), None).await
    }

    /// Writes `c` if the row is still at `version`, and in the same
    /// transaction the step's books `entries` and what its ending means for
    /// its owed item, the charge a decrease went back to, or the day's
    /// charge limit.
    pub async fn store_update_with(
        &self,
        c: &ValueUpdate,
        version: i64,
        now: Timestamp,
        alongside: Alongside<'_>,
        entries: Entries,
        response: Option<SavedResponse>,
    ) -> Result<(), DbError> {
        let record = serde_json::to_string(c).map_err(corrupt)?;
        let save = response.map(|r| r.statement(now)).transpose()?;
        let now_s = now.unix_s();
        let now = to_i64(now_s)?;
        let check = Stmt::new("SELECT version FROM center_value_updates WHERE id = $1").bind(c.id.as_str().to_owned());
        let update = Stmt::new(
            "UPDATE center_value_updates SET phase = $1, record = $2, version = version + 1, updated_at = $3
             WHERE id = $4 AND version = $5",
        )
        .bind(c.phase.as_str().to_owned())
        .bind(record)
        .bind(now)
        .bind(c.id.as_str().to_owned())
        .bind(version);
        let session = c.id.as_str().to_owned();
        let also: Option<Stmt> = match alongside {
            Alongside::Nothing => None,
            Alongside::OwedApplied(owed) => Some(
                Stmt::new(
                    "UPDATE center_owed SET status = $1, applied_by = $2, session = NULL, version = version + 1,
                     updated_at = $3 WHERE id = $4 AND session = $2",
                )
                .bind(OwedStatus::Applied.as_str().to_owned())
                .bind(session)
                .bind(now)
                .bind(owed.to_owned()),
            ),
            Alongside::OwedReleased(owed) => Some(
                Stmt::new(
                    "UPDATE center_owed SET session = NULL, version = version + 1, updated_at = $1
                     WHERE id = $2 AND session = $3",
                )
                .bind(now)
                .bind(owed.to_owned())
                .bind(session),
            ),
            Alongside::DailyReleased { card, day, amount_minor } => Some(release_daily_query(card, day, amount_minor)?),
            Alongside::DecreaseReleased { charge_id, amount_minor } => Some(
                Stmt::new(
                    "UPDATE center_value_updates SET decreased_minor = decreased_minor - $1 WHERE id = $2
                     AND decreased_minor >= $1",
                )
                .bind(to_i64(amount_minor)?)
                .bind(charge_id.to_owned()),
            ),
        };
        let id = c.id.to_string();
        self.write(move |mut conn| {
            Box::pin(async move {
                // Checked before anything is written, so that losing the race
                // (or the books refusing) leaves the group's transaction clean.
                if conn.fetch_optional(check, |r| r.required_int("version")).await? != Some(version) {
                    return Err(DbError::Conflict);
                }
                conn.books(&entries, now_s).await?;
                if conn.execute(update).await? != 1 {
                    return Err(DbError::Conflict);
                }
                if let Some(also) = also
                    && conn.execute(also).await? != 1
                {
                    // The update above is written: the whole transaction must go.
                    return Err(DbError::Inconsistent(format!("value update {id} does not hold what it ends")));
                }
                if let Some(save) = save {
                    conn.execute(save).await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Stores a decrease (a value update going back to the credit card of
    /// charge `parent`), reserving its amount against what that charge put
    /// on the card, in one transaction: the decreases of a charge never sum
    /// past it. `Ok(Err(already))` when this one would.
    pub async fn insert_decrease(
        &self,
        c: &ValueUpdate,
        parent: &str,
        parent_amount_minor: u64,
        now: Timestamp,
    ) -> Result<Result<(), u64>, DbError> {
        let reserve = Stmt::new(
            "UPDATE center_value_updates SET decreased_minor = decreased_minor + $1
             WHERE id = $2 AND phase = $3 AND decreased_minor + $1 <= $4",
        )
        .bind(to_i64(c.amount.amount_minor())?)
        .bind(parent.to_owned())
        .bind(UpdatePhase::Completed.as_str().to_owned())
        .bind(to_i64(parent_amount_minor)?);
        let read = Stmt::new("SELECT decreased_minor FROM center_value_updates WHERE id = $1").bind(parent.to_owned());
        let insert = insert_update_query(c, now)?;
        self.write(move |mut conn| {
            Box::pin(async move {
                if conn.execute(reserve).await? != 1 {
                    return Ok(Err(conn.fetch_one(read, |r| to_u64(r.required_int("decreased_minor")?)).await?));
                }
                conn.execute(insert).await?;
                Ok(Ok(()))
            })
        })
        .await
    }

    /// Adds `amount` to what card `card` was charged on `day`, if that
    /// stays within `limit` (one statement, so concurrent charges cannot
    /// pass it together). `Ok(Err(charged))` when it would not.
    pub async fn reserve_daily_charge(
        &self,
        card: &CardId,
        day: u64,
        amount_minor: u64,
        limit_minor: u64,
    ) -> Result<Result<(), u64>, DbError> {
        let reserve = Stmt::new(
            "INSERT INTO center_charge_days (card_id, day, charged_minor) SELECT $1, $2, $3 WHERE $3 <= $4
             ON CONFLICT (card_id, day) DO UPDATE SET charged_minor = center_charge_days.charged_minor + $3
             WHERE center_charge_days.charged_minor + $3 <= $4",
        )
        .bind(card.to_string())
        .bind(to_i64(day)?)
        .bind(to_i64(amount_minor)?)
        .bind(to_i64(limit_minor)?);
        if self.execute(reserve).await? == 1 {
            return Ok(Ok(()));
        }
        let row = sqlx::query("SELECT charged_minor FROM center_charge_days WHERE card_id = $1 AND day = $2")
            .bind(card.to_string())
            .bind(to_i64(day)?)
            .fetch_optional(&mut *self.read().await?)
            .await?;
        let charged = row.map(|r| r.try_get::<i64, _>("charged_minor")).transpose()?.unwrap_or(0);
        Ok(Err(to_u64(charged)?))
    }

    /// Settlements (`center_settlements`) or value updates
    /// (`center_value_updates`) opened at or before `before` and still before
    /// their sealed command, oldest first, at most `limit`.
    pub async fn abandoned(&self, value_updates: bool, before: Timestamp, limit: i64) -> Result<Vec<String>, DbError> {
        let sql = if value_updates {
            "SELECT id FROM center_value_updates WHERE phase IN ('authenticating', 'reading_balance')
             AND created_at <= $1 ORDER BY created_at, id LIMIT $2"
        } else {
            "SELECT id FROM center_settlements WHERE phase IN ('authenticating', 'reading_balance')
             AND created_at <= $1 ORDER BY created_at, id LIMIT $2"
        };
        let rows = sqlx::query(sql)
            .bind(to_i64(before.unix_s())?)
            .bind(limit.clamp(1, MAX_LIST))
            .fetch_all(&mut *self.read().await?)
            .await?;
        rows.iter().map(|r| Ok(r.try_get::<String, _>("id")?)).collect()
    }

    /// Claims the creation of value update `id`: `true` for the one request
    /// that may create it now. A claim older than `timeout_s` (its holder
    /// died mid-create) can be taken over.
    pub async fn claim_create(&self, id: &str, now: Timestamp, timeout_s: u64) -> Result<bool, DbError> {
        let claim = Stmt::new(
            "INSERT INTO center_create_claims (id, claimed_at) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET claimed_at = $2 WHERE center_create_claims.claimed_at <= $3",
        )
        .bind(id.to_owned())
        .bind(to_i64(now.unix_s())?)
        .bind(to_i64(now.unix_s().saturating_sub(timeout_s))?);
        Ok(self.execute(claim).await? == 1)
    }

    /// Gives a claim of [`CenterDb::claim_create`] back (its create stored
    /// nothing).
    pub async fn release_create_claim(&self, id: &str) -> Result<(), DbError> {
        self.execute(Stmt::new("DELETE FROM center_create_claims WHERE id = $1").bind(id.to_owned())).await?;
        Ok(())
    }

    /// Gives back a reservation of [`CenterDb::reserve_daily_charge`].
    pub async fn release_daily_charge(&self, card: &CardId, day: u64, amount_minor: u64) -> Result<(), DbError> {
        self.execute(release_daily_query(card, day, amount_minor)?).await?;
        Ok(())
    }
}

fn insert_update_query(c: &ValueUpdate, now: Timestamp) -> Result<Stmt, DbError> {
    let record = serde_json::to_string(c).map_err(corrupt)?;
    Ok(Stmt::new(
        "INSERT INTO center_value_updates (id, card_id, phase, amount_minor, record, version, created_at, updated_at,
         purpose) VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8)",
    )
    .bind(c.id.as_str().to_owned())
    .bind(c.card_id.to_string())
    .bind(c.phase.as_str().to_owned())
    .bind(to_i64(c.amount.amount_minor())?)
    .bind(record)
    .bind(to_i64(c.created_at.unix_s())?)
    .bind(to_i64(now.unix_s())?)
    .bind(c.purpose.name().to_owned()))
}

/// Adds a column to a table made before it existed (schema upgrades).
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
     c.max_balance_minor AS c_max_balance_minor
     FROM (SELECT 1 AS one) q LEFT JOIN center_stores s ON s.id = $1 LEFT JOIN center_cards c ON c.id = $2";
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
