//! The register of the tokens the provider honoured: one row per token,
//! for its redemption (by one REDEEM transaction) or its payback, written
//! once and never changed. SQLite in WAL mode with full synchronous
//! commits: an answer is given only for an entry on disk.

use std::path::Path;
use std::str::FromStr;

use kessai_api::provider::{HeldFor, Honoured};
use kessai_core::Money;
use kessai_core::time::Timestamp;
use kessai_core::token::{DepositToken, TokenHeader};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::Refused;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS csp_register (
    token_id TEXT PRIMARY KEY,
    held_for TEXT NOT NULL CHECK (held_for IN ('redemption', 'payback')),
    tx TEXT,
    key_version INTEGER NOT NULL,
    currency TEXT NOT NULL,
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    client TEXT NOT NULL,
    entered_at INTEGER NOT NULL,
    CHECK ((held_for = 'redemption') = (tx IS NOT NULL))
) STRICT";

/// One token the register holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub token_id: String,
    pub held_for: HeldFor,
    pub transaction: Option<String>,
    pub key_version: u8,
    pub amount: Money,
    /// The client certificate's name that asked first.
    pub client: String,
    pub entered_at: Timestamp,
}

impl Entry {
    pub(crate) fn of(
        token: &DepositToken,
        sealed: &[u8],
        held_for: HeldFor,
        transaction: Option<String>,
        client: &str,
        now: Timestamp,
    ) -> Result<Entry, Refused> {
        let header = TokenHeader::read(sealed).map_err(|e| Refused::Malformed(e.to_string()))?;
        Ok(Entry {
            token_id: token.token_id.to_string(),
            held_for,
            transaction,
            key_version: header.key_version,
            amount: token.amount,
            client: client.to_owned(),
            entered_at: now,
        })
    }

    pub(crate) fn honoured(self, first: bool) -> Honoured {
        Honoured {
            token_id: self.token_id,
            key_version: self.key_version,
            amount: self.amount,
            held_for: self.held_for,
            transaction: self.transaction,
            entered_at: self.entered_at.unix_s(),
            first,
        }
    }
}

/// The register's database.
#[derive(Debug, Clone)]
pub struct Register {
    pool: SqlitePool,
}

fn held_for_name(h: HeldFor) -> &'static str {
    match h {
        HeldFor::Redemption => "redemption",
        HeldFor::Payback => "payback",
    }
}

fn corrupt(what: &str) -> sqlx::Error {
    sqlx::Error::Protocol(format!("the register holds a bad {what}"))
}

impl Register {
    /// The register in `path`, made if it is not there.
    pub async fn open(path: &Path) -> Result<Register, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(&format!("sqlite:{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        sqlx::query(SCHEMA).execute(&pool).await?;
        Ok(Register { pool })
    }

    /// Enters `entry` unless the register holds its token: what it holds
    /// then, and whether this call entered it.
    pub async fn enter(&self, entry: &Entry) -> Result<(Entry, bool), sqlx::Error> {
        let amount = i64::try_from(entry.amount.amount_minor()).map_err(|_| corrupt("amount"))?;
        let entered_at = i64::try_from(entry.entered_at.unix_s()).map_err(|_| corrupt("time"))?;
        let done = sqlx::query(
            "INSERT INTO csp_register (token_id, held_for, tx, key_version, currency, amount_minor, client, entered_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (token_id) DO NOTHING",
        )
        .bind(&entry.token_id)
        .bind(held_for_name(entry.held_for))
        .bind(&entry.transaction)
        .bind(i64::from(entry.key_version))
        .bind(entry.amount.currency().code())
        .bind(amount)
        .bind(&entry.client)
        .bind(entered_at)
        .execute(&self.pool)
        .await?;
        let held = self.held(&entry.token_id).await?.ok_or_else(|| corrupt("entry: it went"))?;
        Ok((held, done.rows_affected() == 1))
    }

    /// What the register holds for `token_id`.
    pub async fn held(&self, token_id: &str) -> Result<Option<Entry>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT token_id, held_for, tx, key_version, currency, amount_minor, client, entered_at
             FROM csp_register WHERE token_id = ?1",
        )
        .bind(token_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let held_for = match row.try_get::<String, _>("held_for")?.as_str() {
            "redemption" => HeldFor::Redemption,
            "payback" => HeldFor::Payback,
            _ => return Err(corrupt("use")),
        };
        let currency =
            kessai_core::Currency::parse(&row.try_get::<String, _>("currency")?).map_err(|_| corrupt("currency"))?;
        let minor = u64::try_from(row.try_get::<i64, _>("amount_minor")?).map_err(|_| corrupt("amount"))?;
        Ok(Some(Entry {
            token_id: row.try_get("token_id")?,
            held_for,
            transaction: row.try_get("tx")?,
            key_version: u8::try_from(row.try_get::<i64, _>("key_version")?).map_err(|_| corrupt("key version"))?,
            amount: Money::new(minor, currency).map_err(|_| corrupt("amount"))?,
            client: row.try_get("client")?,
            entered_at: Timestamp::from_unix_s(
                u64::try_from(row.try_get::<i64, _>("entered_at")?).map_err(|_| corrupt("time"))?,
            ),
        }))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
