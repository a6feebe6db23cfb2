//! The bank's books of the pool account: every deposit booked to it (its
//! entry number is the statement's bank reference `D<n>`), and every token
//! made of a deposit, one per deposit, written once and never changed.
//! SQLite in WAL mode with full synchronous commits: an answer is given
//! only for what is on disk.

use std::path::Path;
use std::str::FromStr;

use kessai_core::time::Timestamp;
use kessai_core::{Currency, Money};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS bsp_deposits (
        entry INTEGER PRIMARY KEY AUTOINCREMENT,
        booked_at INTEGER NOT NULL,
        booked_on TEXT NOT NULL,
        currency TEXT NOT NULL,
        amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
        reference TEXT,
        remitter TEXT NOT NULL
    ) STRICT",
    "CREATE TABLE IF NOT EXISTS bsp_tokens (
        entry INTEGER PRIMARY KEY REFERENCES bsp_deposits (entry),
        token_id TEXT NOT NULL UNIQUE,
        request TEXT NOT NULL,
        client TEXT NOT NULL,
        sealed BLOB NOT NULL,
        key_version INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        made_at INTEGER NOT NULL
    ) STRICT",
];

/// A deposit booked to the pool account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deposit {
    pub entry: u64,
    pub booked_at: Timestamp,
    /// `YYYY-MM-DD` (UTC).
    pub booked_on: String,
    pub amount: Money,
    /// The creditor reference (ISO 11649) the payer quoted.
    pub reference: Option<String>,
    pub remitter: String,
}

/// A token made of a deposit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    pub entry: u64,
    pub token_id: String,
    /// The center's request, as JSON: the same request again is answered
    /// with this token, another is refused.
    pub request: String,
    pub client: String,
    pub sealed: Vec<u8>,
    pub key_version: u8,
    pub expires_at: Timestamp,
    pub made_at: Timestamp,
}

/// The register's database.
#[derive(Debug, Clone)]
pub struct Register {
    pool: SqlitePool,
}

fn corrupt(what: &str) -> sqlx::Error {
    sqlx::Error::Protocol(format!("the bank's register holds a bad {what}"))
}

fn int(v: u64, what: &str) -> Result<i64, sqlx::Error> {
    i64::try_from(v).map_err(|_| corrupt(what))
}

fn uint(v: i64, what: &str) -> Result<u64, sqlx::Error> {
    u64::try_from(v).map_err(|_| corrupt(what))
}

fn deposit_of(row: &sqlx::sqlite::SqliteRow) -> Result<Deposit, sqlx::Error> {
    let currency = Currency::parse(&row.try_get::<String, _>("currency")?).map_err(|_| corrupt("currency"))?;
    let minor = uint(row.try_get("amount_minor")?, "amount")?;
    Ok(Deposit {
        entry: uint(row.try_get("entry")?, "entry")?,
        booked_at: Timestamp::from_unix_s(uint(row.try_get("booked_at")?, "time")?),
        booked_on: row.try_get("booked_on")?,
        amount: Money::new(minor, currency).map_err(|_| corrupt("amount"))?,
        reference: row.try_get("reference")?,
        remitter: row.try_get("remitter")?,
    })
}

impl Register {
    /// The register in `path`, made if it is not there.
    pub async fn open(path: &Path) -> Result<Register, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite:{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        for statement in SCHEMA {
            sqlx::query(statement).execute(&pool).await?;
        }
        Ok(Register { pool })
    }

    /// Books a deposit: its entry number.
    pub async fn book(
        &self,
        at: Timestamp,
        booked_on: &str,
        amount: Money,
        reference: Option<&str>,
        remitter: &str,
    ) -> Result<u64, sqlx::Error> {
        let row = sqlx::query(
            "INSERT INTO bsp_deposits (booked_at, booked_on, currency, amount_minor, reference, remitter)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING entry",
        )
        .bind(int(at.unix_s(), "time")?)
        .bind(booked_on)
        .bind(amount.currency().code())
        .bind(int(amount.amount_minor(), "amount")?)
        .bind(reference)
        .bind(remitter)
        .fetch_one(&self.pool)
        .await?;
        uint(row.try_get("entry")?, "entry")
    }

    pub async fn deposit(&self, entry: u64) -> Result<Option<Deposit>, sqlx::Error> {
        let row = sqlx::query("SELECT * FROM bsp_deposits WHERE entry = ?1")
            .bind(int(entry, "entry")?)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(deposit_of).transpose()
    }

    /// Up to `limit` deposits booked on `day` (`YYYY-MM-DD`) after entry
    /// `after`, in booking order, and the sum (minor units) of every deposit
    /// before them: booked before the day, or that day up to `after`.
    pub async fn day(&self, day: &str, after: u64, limit: usize) -> Result<(Vec<Deposit>, u64), sqlx::Error> {
        let rows =
            sqlx::query("SELECT * FROM bsp_deposits WHERE booked_on = ?1 AND entry > ?2 ORDER BY entry LIMIT ?3")
                .bind(day)
                .bind(i64::try_from(after).unwrap_or(i64::MAX))
                .bind(i64::try_from(limit).map_err(|_| corrupt("limit"))?)
                .fetch_all(&self.pool)
                .await?;
        let before: Option<i64> = sqlx::query_scalar(
            "SELECT SUM(amount_minor) FROM bsp_deposits WHERE booked_on < ?1 OR (booked_on = ?1 AND entry <= ?2)",
        )
        .bind(day)
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .fetch_one(&self.pool)
        .await?;
        let deposits = rows.iter().map(deposit_of).collect::<Result<Vec<_>, _>>()?;
        Ok((deposits, uint(before.unwrap_or(0), "balance")?))
    }

    /// Enters `made` unless the deposit, or the token id, made a token
    /// before: what the register holds for the deposit then (`None`: the
    /// token id went to another deposit), and whether this call entered it.
    pub async fn enter(&self, made: &Made) -> Result<(Option<Made>, bool), sqlx::Error> {
        let done = sqlx::query(
            "INSERT INTO bsp_tokens (entry, token_id, request, client, sealed, key_version, expires_at, made_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
        )
        .bind(int(made.entry, "entry")?)
        .bind(&made.token_id)
        .bind(&made.request)
        .bind(&made.client)
        .bind(&made.sealed)
        .bind(i64::from(made.key_version))
        .bind(int(made.expires_at.unix_s(), "time")?)
        .bind(int(made.made_at.unix_s(), "time")?)
        .execute(&self.pool)
        .await?;
        Ok((self.made(made.entry).await?, done.rows_affected() == 1))
    }

    /// The token made of deposit `entry`, if one was.
    pub async fn made(&self, entry: u64) -> Result<Option<Made>, sqlx::Error> {
        let row = sqlx::query("SELECT * FROM bsp_tokens WHERE entry = ?1")
            .bind(int(entry, "entry")?)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Made {
            entry: uint(row.try_get("entry")?, "entry")?,
            token_id: row.try_get("token_id")?,
            request: row.try_get("request")?,
            client: row.try_get("client")?,
            sealed: row.try_get("sealed")?,
            key_version: u8::try_from(row.try_get::<i64, _>("key_version")?).map_err(|_| corrupt("key version"))?,
            expires_at: Timestamp::from_unix_s(uint(row.try_get("expires_at")?, "time")?),
            made_at: Timestamp::from_unix_s(uint(row.try_get("made_at")?, "time")?),
        }))
    }

    /// The deposit the token `token_id` was made of, if any.
    pub async fn entry_of(&self, token_id: &str) -> Result<Option<u64>, sqlx::Error> {
        let entry: Option<i64> = sqlx::query_scalar("SELECT entry FROM bsp_tokens WHERE token_id = ?1")
            .bind(token_id)
            .fetch_optional(&self.pool)
            .await?;
        entry.map(|e| uint(e, "entry")).transpose()
    }

    /// What the pool account holds (minor units): every deposit.
    pub async fn balance(&self) -> Result<u64, sqlx::Error> {
        let sum: Option<i64> =
            sqlx::query_scalar("SELECT SUM(amount_minor) FROM bsp_deposits").fetch_one(&self.pool).await?;
        uint(sum.unwrap_or(0), "balance")
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
