//! The schema of each backend, as numbered migrations recorded in
//! `kessai_ledger_schema`. Opening a ledger applies the missing ones in one
//! transaction, so restarting (or starting several instances at once) is idempotent.
//! A migration, once released, is never edited: changes are new migrations.
//!
//! Ids and 128-bit user data are 16-byte big-endian blobs (`BLOB` / `bytea`): compact,
//! indexed as plain bytes, and ordered like the numbers. Balances, amounts and
//! timestamps are signed 64-bit integers, bounded by `BALANCE_MAX_MINOR` and
//! `TIMESTAMP_MAX_UNIX_S`. `transfers.seq` orders account history.
//! Flag bits: transfers PENDING = 2, POST_PENDING = 4, VOID_PENDING = 8; pending
//! state 1 = pending (see `PendingState`).

use sqlx::{PgConnection, SqliteConnection};

use crate::error::Error;

#[derive(Debug)]
struct Migration {
    version: i64,
    description: &'static str,
    statements: &'static [&'static str],
}

const SQLITE_MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "accounts, transfers, pending transfers",
    statements: &[
        "CREATE TABLE accounts (
            id BLOB NOT NULL PRIMARY KEY CHECK (length(id) = 16),
            currency TEXT NOT NULL CHECK (length(currency) = 3),
            kind INTEGER NOT NULL,
            flags INTEGER NOT NULL,
            user_data_128 BLOB NOT NULL CHECK (length(user_data_128) = 16),
            debits_pending_minor INTEGER NOT NULL CHECK (debits_pending_minor >= 0),
            debits_posted_minor INTEGER NOT NULL CHECK (debits_posted_minor >= 0),
            credits_pending_minor INTEGER NOT NULL CHECK (credits_pending_minor >= 0),
            credits_posted_minor INTEGER NOT NULL CHECK (credits_posted_minor >= 0),
            created_at_unix_s INTEGER NOT NULL
        ) WITHOUT ROWID",
        "CREATE TABLE transfers (
            seq INTEGER PRIMARY KEY,
            id BLOB NOT NULL UNIQUE CHECK (length(id) = 16),
            debit_account_id BLOB NOT NULL,
            credit_account_id BLOB NOT NULL,
            amount_minor INTEGER NOT NULL CHECK (amount_minor >= 0),
            currency TEXT NOT NULL,
            pending_id BLOB NOT NULL,
            timeout_s INTEGER NOT NULL,
            user_data_128 BLOB NOT NULL,
            code INTEGER NOT NULL,
            flags INTEGER NOT NULL,
            created_at_unix_s INTEGER NOT NULL
        )",
        "CREATE INDEX transfers_debit_account ON transfers (debit_account_id, seq)",
        "CREATE INDEX transfers_credit_account ON transfers (credit_account_id, seq)",
        // At most one post or void per pending transfer, enforced by the database too.
        "CREATE UNIQUE INDEX transfers_resolution ON transfers (pending_id) WHERE (flags & 12) <> 0",
        "CREATE TABLE pending_transfers (
            id BLOB NOT NULL PRIMARY KEY,
            state INTEGER NOT NULL,
            expires_at_unix_s INTEGER
        ) WITHOUT ROWID",
        "CREATE INDEX pending_transfers_due ON pending_transfers (expires_at_unix_s) WHERE state = 1",
    ],
}];

const POSTGRES_MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "accounts, transfers, pending transfers",
    statements: &[
        "CREATE TABLE accounts (
            id BYTEA NOT NULL PRIMARY KEY CHECK (length(id) = 16),
            currency TEXT NOT NULL CHECK (length(currency) = 3),
            kind BIGINT NOT NULL,
            flags BIGINT NOT NULL,
            user_data_128 BYTEA NOT NULL CHECK (length(user_data_128) = 16),
            debits_pending_minor BIGINT NOT NULL CHECK (debits_pending_minor >= 0),
            debits_posted_minor BIGINT NOT NULL CHECK (debits_posted_minor >= 0),
            credits_pending_minor BIGINT NOT NULL CHECK (credits_pending_minor >= 0),
            credits_posted_minor BIGINT NOT NULL CHECK (credits_posted_minor >= 0),
            created_at_unix_s BIGINT NOT NULL
        )",
        "CREATE TABLE transfers (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id BYTEA NOT NULL UNIQUE CHECK (length(id) = 16),
            debit_account_id BYTEA NOT NULL,
            credit_account_id BYTEA NOT NULL,
            amount_minor BIGINT NOT NULL CHECK (amount_minor >= 0),
            currency TEXT NOT NULL,
            pending_id BYTEA NOT NULL,
            timeout_s BIGINT NOT NULL,
            user_data_128 BYTEA NOT NULL,
            code BIGINT NOT NULL,
            flags BIGINT NOT NULL,
            created_at_unix_s BIGINT NOT NULL
        )",
        "CREATE INDEX transfers_debit_account ON transfers (debit_account_id, seq)",
        "CREATE INDEX transfers_credit_account ON transfers (credit_account_id, seq)",
        "CREATE UNIQUE INDEX transfers_resolution ON transfers (pending_id) WHERE (flags & 12) <> 0",
        "CREATE TABLE pending_transfers (
            id BYTEA NOT NULL PRIMARY KEY,
            state BIGINT NOT NULL,
            expires_at_unix_s BIGINT
        )",
        "CREATE INDEX pending_transfers_due ON pending_transfers (expires_at_unix_s) WHERE state = 1",
    ],
}];

const CREATE_SCHEMA_TABLE_SQL: &str = "CREATE TABLE IF NOT EXISTS kessai_ledger_schema (
    version BIGINT NOT NULL PRIMARY KEY,
    description TEXT NOT NULL
)";
const SCHEMA_VERSION_SQL: &str = "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM kessai_ledger_schema";
const RECORD_VERSION_SQL: &str = "INSERT INTO kessai_ledger_schema (version, description) VALUES ($1, $2)";

/// Shared by both backends: pending transfers due to expire at `$1`, at most `$2`.
pub(crate) const DUE_PENDING_SQL: &str = "SELECT id FROM pending_transfers \
    WHERE state = 1 AND expires_at_unix_s <= $1 ORDER BY expires_at_unix_s, id LIMIT $2";

/// Shared by both backends: transfers of account `$1` after sequence `$2`, at most `$3`.
/// Each side walks its own `(account, seq)` index; a transfer never debits and
/// credits the same account, so `UNION ALL` lists each transfer once.
pub(crate) const HISTORY_SQL: &str = concat!(
    "SELECT ",
    super::rows::transfer_columns!(),
    " FROM (",
    " SELECT seq FROM (SELECT seq FROM transfers WHERE debit_account_id = $1 AND seq > $2 ORDER BY seq LIMIT $3) AS d",
    " UNION ALL",
    " SELECT seq FROM (SELECT seq FROM transfers WHERE credit_account_id = $1 AND seq > $2 ORDER BY seq LIMIT $3) AS c",
    ") AS h JOIN transfers t ON t.seq = h.seq LEFT JOIN pending_transfers p ON p.id = t.id ORDER BY t.seq LIMIT $3"
);

fn newest(migrations: &[Migration]) -> i64 {
    migrations.iter().map(|migration| migration.version).max().unwrap_or(0)
}

/// Applies missing migrations. Runs inside the caller's `BEGIN IMMEDIATE`
/// transaction, which excludes other writers for its duration.
pub(crate) async fn migrate_sqlite(conn: &mut SqliteConnection) -> Result<(), Error> {
    sqlx::query(CREATE_SCHEMA_TABLE_SQL).execute(&mut *conn).await?;
    let current: i64 = sqlx::query_scalar(SCHEMA_VERSION_SQL).fetch_one(&mut *conn).await?;
    if current > newest(SQLITE_MIGRATIONS) {
        return Err(Error::SchemaTooNew { found: current, known: newest(SQLITE_MIGRATIONS) });
    }
    for migration in SQLITE_MIGRATIONS.iter().filter(|migration| migration.version > current) {
        for statement in migration.statements {
            sqlx::query(*statement).execute(&mut *conn).await?;
        }
        sqlx::query(RECORD_VERSION_SQL).bind(migration.version).bind(migration.description).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Applies missing migrations. Runs inside the caller's transaction; an advisory
/// lock makes instances starting at once take turns.
pub(crate) async fn migrate_postgres(conn: &mut PgConnection) -> Result<(), Error> {
    // Any fixed number: it names "the kessai ledger's migration" among advisory locks.
    sqlx::query("SELECT pg_advisory_xact_lock(417572026)").execute(&mut *conn).await?;
    sqlx::query(CREATE_SCHEMA_TABLE_SQL).execute(&mut *conn).await?;
    let current: i64 = sqlx::query_scalar(SCHEMA_VERSION_SQL).fetch_one(&mut *conn).await?;
    if current > newest(POSTGRES_MIGRATIONS) {
        return Err(Error::SchemaTooNew { found: current, known: newest(POSTGRES_MIGRATIONS) });
    }
    for migration in POSTGRES_MIGRATIONS.iter().filter(|migration| migration.version > current) {
        for statement in migration.statements {
            sqlx::query(*statement).execute(&mut *conn).await?;
        }
        sqlx::query(RECORD_VERSION_SQL).bind(migration.version).bind(migration.description).execute(&mut *conn).await?;
    }
    Ok(())
}
