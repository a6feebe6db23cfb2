//! Every bound the ledger enforces, in one place, with compile-time checks of how the
//! bounds relate. Nothing else in the crate may hard-code a limit.

/// Largest balance (and so largest amount) in minor units. Both backends store
/// balances in a signed 64-bit column, so the top half of `u64` is out of reach; a
/// transfer that would take a balance past this is refused with an `overflows_*`
/// result code, never wrapped.
pub const BALANCE_MAX_MINOR: u64 = i64::MAX as u64;

/// Largest timestamp the ledger accepts, in seconds since the Unix epoch. Stored in a
/// signed 64-bit column; `now + timeout` past this is `overflows_timeout`.
pub const TIMESTAMP_MAX_UNIX_S: u64 = i64::MAX as u64;

/// Most events (account creations or transfers) in one batch. One batch is one
/// database transaction; the bound keeps the transaction's memory and lock time
/// finite. TigerBeetle's batch is 8190 events; ours is rounded down.
pub const BATCH_EVENTS_MAX: usize = 8_000;

/// Most pending transfers one call to `expire_pending_transfers` releases; the caller
/// calls again while the returned count equals this bound.
pub const EXPIRY_BATCH_MAX: usize = 1_000;

/// Most transfers one page of account history returns.
pub const HISTORY_PAGE_MAX: u32 = 1_000;

/// Most ids one lookup may ask for.
pub const LOOKUP_IDS_MAX: usize = BATCH_EVENTS_MAX;

/// How often a PostgreSQL batch is retried after a deadlock (40P01), a concurrent
/// insert of the same id (23505) or, in a caller's SERIALIZABLE transaction, a
/// serialization failure (40001) before
/// `Error::RetriesExhausted` is returned; the batch is then tried this many times + 1.
pub const PG_RETRIES_MAX: u32 = 24;

/// First backoff after a retryable PostgreSQL failure; doubled on every retry up
/// to `PG_RETRY_BACKOFF_MAX_MS`, with jitter.
pub const PG_RETRY_BACKOFF_MIN_MS: u64 = 1;

/// Ceiling of the PostgreSQL retry backoff.
pub const PG_RETRY_BACKOFF_MAX_MS: u64 = 64;

/// Connections in a PostgreSQL pool.
pub const PG_POOL_CONNECTIONS_MAX: u32 = 8;

/// Read connections of a SQLite ledger (lookups, history, checks). Writes all go
/// through one more connection: SQLite serialises writers anyway.
pub const SQLITE_READER_CONNECTIONS_MAX: u32 = 4;

/// Rows per multi-row SQLite statement. At 11 parameters a row this stays far below
/// SQLite's limit of 32766 bound parameters per statement.
pub const SQLITE_ROWS_PER_STATEMENT_MAX: usize = 128;

/// Prepared statements each SQLite connection keeps: enough for every row count of
/// the five multi-row statements plus the fixed ones.
pub const SQLITE_STATEMENT_CACHE_MAX: usize = 5 * SQLITE_ROWS_PER_STATEMENT_MAX + 32;

/// WAL pages after which a SQLite commit checkpoints the log into the database file
/// (SQLite's default is 1000). Every batch rewrites the same hot pages (account rows,
/// the newest leaves of the history indexes); a longer log checkpoints each of them
/// once per many batches instead of once per few, which measured about 40% more
/// transfers/s at batch 100. The cost is a WAL of up to 64 MiB (at 4 KiB pages) and
/// a longer replay after a crash. Durability is unchanged: commits still fsync the WAL.
/// A background checkpointer (`wal`) copies most pages before that, off the writer's
/// path; this checkpoint then finds little left and lets the log start again.
pub const SQLITE_WAL_AUTOCHECKPOINT_PAGES: u32 = 16_384;

/// How often a SQLite database's background checkpointer copies the log into
/// the database file (`wal`). Often enough that the writer's own automatic
/// checkpoint finds little left to copy; a pass with nothing to copy costs a
/// few lock operations.
pub const SQLITE_CHECKPOINT_INTERVAL_MS: u64 = 50;

/// Most write batches one SQLite group commit applies (each in its own savepoint,
/// all under one fsync).
pub const SQLITE_GROUP_COMMIT_MAX: usize = 256;

/// Write batches waiting for the SQLite writer task before callers wait to queue.
pub const SQLITE_WRITE_QUEUE_MAX: usize = 4_096;

/// Bytes of a SQLite ledger file each connection maps into memory. A connection's
/// page cache is dropped whenever another connection committed (the group-commit
/// writer commits all the time, so readers would read every page again); mapped
/// pages are shared with the OS page cache instead. Reads only: writes still go
/// through the WAL and its fsync.
pub const SQLITE_MMAP_BYTES: u64 = 256 * 1024 * 1024;

/// How long a SQLite writer waits for another writer's lock before giving up.
pub const SQLITE_BUSY_TIMEOUT_MS: u64 = 10_000;

/// Length of an ISO 4217 alphabetic currency code.
pub const CURRENCY_CODE_LEN: usize = 3;

const _: () = {
    assert!(BATCH_EVENTS_MAX > 0);
    // A batch's event index is reported as a u32.
    assert!(BATCH_EVENTS_MAX <= u32::MAX as usize);
    assert!(EXPIRY_BATCH_MAX > 0 && EXPIRY_BATCH_MAX <= BATCH_EVENTS_MAX);
    assert!(HISTORY_PAGE_MAX > 0);
    assert!(LOOKUP_IDS_MAX <= BATCH_EVENTS_MAX);
    assert!(PG_RETRIES_MAX > 0);
    assert!(PG_RETRY_BACKOFF_MIN_MS > 0 && PG_RETRY_BACKOFF_MIN_MS <= PG_RETRY_BACKOFF_MAX_MS);
    // Two balances may be added before the overflow check; they must fit in u64.
    assert!(BALANCE_MAX_MINOR.checked_mul(2).is_some());
    // `now + timeout` is computed in u64 before the check against the maximum.
    assert!(TIMESTAMP_MAX_UNIX_S.checked_add(u32::MAX as u64).is_some());
    assert!(SQLITE_WAL_AUTOCHECKPOINT_PAGES >= 1000);
    assert!(SQLITE_ROWS_PER_STATEMENT_MAX > 0 && SQLITE_ROWS_PER_STATEMENT_MAX * 11 < 32_766);
    assert!(PG_POOL_CONNECTIONS_MAX > 0 && SQLITE_READER_CONNECTIONS_MAX > 0);
    assert!(SQLITE_GROUP_COMMIT_MAX > 0 && SQLITE_WRITE_QUEUE_MAX >= SQLITE_GROUP_COMMIT_MAX);
};
