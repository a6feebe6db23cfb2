//! The wallet's own records (SQLite in its data directory): every
//! settlement it took part in, with the tokens it verified and the
//! Idempotency-Keys it used, written before each request is sent.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use kessai_core::ids::{CardId, SettlementId};
use kessai_core::{Currency, Money};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row as _, SqlitePool};

use crate::limits::{DB_POOL_CONNECTIONS_MAX, SQLITE_BUSY_TIMEOUT_MS};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS payments (
        id TEXT PRIMARY KEY,
        settlement_id TEXT UNIQUE,
        store TEXT NOT NULL,
        member TEXT,
        store_name TEXT NOT NULL,
        order_id TEXT NOT NULL,
        amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
        currency TEXT NOT NULL,
        card_id TEXT NOT NULL,
        phase TEXT NOT NULL,
        reason TEXT,
        balance_minor INTEGER,
        bill TEXT NOT NULL,
        return_url TEXT NOT NULL,
        consent_token TEXT NOT NULL,
        offer TEXT,
        debit TEXT,
        debit_answer TEXT,
        completion TEXT,
        receipt TEXT,
        token_id TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS payments_by_time ON payments (created_at)",
    "CREATE TABLE IF NOT EXISTS idempotency_keys (
        payment_id TEXT NOT NULL REFERENCES payments (id),
        step TEXT NOT NULL,
        key TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (payment_id, step))",
    // The center's access token of each settlement, value update and
    // statement this wallet opened (M4): every later request on the id
    // carries it, recovery after a restart too.
    "CREATE TABLE IF NOT EXISTS center_access (
        id TEXT PRIMARY KEY,
        token TEXT NOT NULL,
        created_at INTEGER NOT NULL)",
];

/// Where a settlement stands, as far as this wallet knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LocalPhase {
    /// The bill was received; the center has not offered yet.
    Started,
    /// SIG2 verified; the sealed DEBIT waits for the cardholder's consent.
    Offered,
    /// The DEBIT went to the card; the center has not confirmed yet.
    DebitRelayed,
    /// SIG3 verified.
    Completed,
    /// SIG4 verified too.
    Receipted,
    /// Provably not charged.
    Voided,
    /// Stopped before any DEBIT existed (the center refused a step).
    Failed,
    /// A bank deposit token on the card was chosen to pay the bill (#21):
    /// its redemption, which may have reached the card, completes the
    /// settlement.
    TokenChosen,
}

impl LocalPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            LocalPhase::Started => "started",
            LocalPhase::Offered => "offered",
            LocalPhase::DebitRelayed => "debit_relayed",
            LocalPhase::Completed => "completed",
            LocalPhase::Receipted => "receipted",
            LocalPhase::Voided => "voided",
            LocalPhase::Failed => "failed",
            LocalPhase::TokenChosen => "token_chosen",
        }
    }

    fn parse(s: &str) -> Option<LocalPhase> {
        [
            LocalPhase::Started,
            LocalPhase::Offered,
            LocalPhase::DebitRelayed,
            LocalPhase::Completed,
            LocalPhase::Receipted,
            LocalPhase::Voided,
            LocalPhase::Failed,
            LocalPhase::TokenChosen,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }

    /// Whether a DEBIT (or a token's REDEEM) may be outstanding, so
    /// `recover` must ask the card.
    pub fn needs_recovery(self) -> bool {
        matches!(self, LocalPhase::Offered | LocalPhase::DebitRelayed | LocalPhase::TokenChosen)
    }
}

/// One settlement as the wallet recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The wallet's own id (`pay_` + 32 hex), known before the center's.
    pub payment_id: String,
    pub settlement_id: Option<SettlementId>,
    pub store: String,
    pub member: Option<String>,
    pub store_name: String,
    pub order_id: String,
    pub amount: Money,
    pub card_id: CardId,
    pub phase: LocalPhase,
    /// Why it was voided or failed.
    pub reason: Option<String>,
    /// The balance the center read securely, once read.
    pub balance_minor: Option<u64>,
    pub bill: String,
    pub return_url: String,
    pub consent_token: String,
    pub offer: Option<String>,
    pub debit: Option<String>,
    pub debit_answer: Option<String>,
    pub completion: Option<String>,
    pub receipt: Option<String>,
    /// The deposit token chosen to pay (`tok_…`), if one was.
    pub token_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What is known when a payment starts.
#[derive(Debug)]
pub struct NewPayment<'a> {
    pub payment_id: &'a str,
    pub store: &'a str,
    pub member: Option<&'a str>,
    pub store_name: &'a str,
    pub order_id: &'a str,
    pub amount: Money,
    pub card_id: CardId,
    pub bill: &'a str,
    pub return_url: &'a str,
    pub consent_token: &'a str,
}

/// A change of a record; `None` fields keep their value.
#[derive(Debug, Default)]
pub struct Update<'a> {
    pub settlement_id: Option<&'a str>,
    pub phase: Option<LocalPhase>,
    pub reason: Option<&'a str>,
    pub balance_minor: Option<u64>,
    pub offer: Option<&'a str>,
    pub debit: Option<&'a str>,
    pub debit_answer: Option<&'a str>,
    pub completion: Option<&'a str>,
    pub receipt: Option<&'a str>,
    pub token_id: Option<&'a str>,
}

/// The local database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Records {
    pool: SqlitePool,
}

impl Records {
    /// Opens (creating) `path` in WAL mode with full sync and creates the tables.
    pub async fn open(path: &Path) -> Result<Records, sqlx::Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_millis(SQLITE_BUSY_TIMEOUT_MS));
        let pool = SqlitePoolOptions::new().max_connections(DB_POOL_CONNECTIONS_MAX).connect_with(options).await?;
        for statement in SCHEMA {
            sqlx::query(*statement).execute(&pool).await?;
        }
        // Added with token purchases (#21), for files made before; a new
        // file has it from its CREATE TABLE.
        match sqlx::query("ALTER TABLE payments ADD COLUMN token_id TEXT").execute(&pool).await {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.message().contains("duplicate column") => {}
            Err(e) => return Err(e),
        }
        crate::charge_records::create_tables(&pool).await?;
        Ok(Records { pool })
    }

    pub async fn insert(&self, p: &NewPayment<'_>, now_s: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO payments (id, store, member, store_name, order_id, amount_minor, currency, card_id, phase,
                 bill, return_url, consent_token, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'started', ?, ?, ?, ?, ?)",
        )
        .bind(p.payment_id)
        .bind(p.store)
        .bind(p.member)
        .bind(p.store_name)
        .bind(p.order_id)
        .bind(i64::try_from(p.amount.amount_minor()).unwrap_or(i64::MAX))
        .bind(p.amount.currency().code())
        .bind(p.card_id.to_string())
        .bind(p.bill)
        .bind(p.return_url)
        .bind(p.consent_token)
        .bind(now_s)
        .bind(now_s)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn update(&self, payment_id: &str, u: &Update<'_>, now_s: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE payments SET settlement_id = COALESCE(?, settlement_id), phase = COALESCE(?, phase),
                 reason = COALESCE(?, reason), balance_minor = COALESCE(?, balance_minor),
                 offer = COALESCE(?, offer), debit = COALESCE(?, debit), debit_answer = COALESCE(?, debit_answer),
                 completion = COALESCE(?, completion), receipt = COALESCE(?, receipt),
                 token_id = COALESCE(?, token_id), updated_at = ?
             WHERE id = ?",
        )
        .bind(u.settlement_id)
        .bind(u.phase.map(LocalPhase::as_str))
        .bind(u.reason)
        .bind(u.balance_minor.and_then(|b| i64::try_from(b).ok()))
        .bind(u.offer)
        .bind(u.debit)
        .bind(u.debit_answer)
        .bind(u.completion)
        .bind(u.receipt)
        .bind(u.token_id)
        .bind(now_s)
        .bind(payment_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The Idempotency-Key of `step` of a payment: the stored one, or a new
    /// one written (durably) before it is returned and used.
    pub async fn step_key(&self, payment_id: &str, step: &str, fresh: &str, now_s: i64) -> Result<String, sqlx::Error> {
        sqlx::query("INSERT OR IGNORE INTO idempotency_keys (payment_id, step, key, created_at) VALUES (?, ?, ?, ?)")
            .bind(payment_id)
            .bind(step)
            .bind(fresh)
            .bind(now_s)
            .execute(&self.pool)
            .await?;
        sqlx::query_scalar("SELECT key FROM idempotency_keys WHERE payment_id = ? AND step = ?")
            .bind(payment_id)
            .bind(step)
            .fetch_one(&self.pool)
            .await
    }

    /// How many recovery runs were begun for a payment.
    pub async fn recovery_runs(&self, payment_id: &str) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys WHERE payment_id = ? AND step LIKE 'recover#%'")
            .bind(payment_id)
            .fetch_one(&self.pool)
            .await
    }

    pub async fn by_settlement(&self, settlement_id: &str) -> Result<Option<Record>, sqlx::Error> {
        let row = sqlx::query("SELECT * FROM payments WHERE settlement_id = ?")
            .bind(settlement_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| record_of(&r)).transpose()
    }

    pub async fn by_payment(&self, payment_id: &str) -> Result<Option<Record>, sqlx::Error> {
        let row =
            sqlx::query("SELECT * FROM payments WHERE id = ?").bind(payment_id).fetch_optional(&self.pool).await?;
        row.map(|r| record_of(&r)).transpose()
    }

    /// The newest `limit` records, newest first.
    pub async fn recent(&self, limit: i64) -> Result<Vec<Record>, sqlx::Error> {
        let rows = sqlx::query("SELECT * FROM payments ORDER BY created_at DESC, rowid DESC LIMIT ?")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(record_of).collect()
    }

    /// Records whose DEBIT may be outstanding, oldest first.
    pub async fn needing_recovery(&self, limit: i64) -> Result<Vec<Record>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT * FROM payments WHERE phase IN ('offered', 'debit_relayed', 'token_chosen')
               AND settlement_id IS NOT NULL
             ORDER BY created_at, rowid LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record_of).collect()
    }

    /// Offers still waiting for the cardholder, last changed before
    /// `cutoff` (unix s), oldest first.
    pub async fn offered_before(&self, cutoff: i64, limit: i64) -> Result<Vec<Record>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT * FROM payments WHERE phase = 'offered' AND settlement_id IS NOT NULL AND updated_at < ?
             ORDER BY updated_at, rowid LIMIT ?",
        )
        .bind(cutoff)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record_of).collect()
    }

    /// Keeps the center's access token of `id` (the first one stays: the
    /// center derives it from the id, so it never changes).
    pub async fn save_access(&self, id: &str, token: &str, now_s: i64) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT INTO center_access (id, token, created_at) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(token)
            .bind(now_s)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The center's access token of `id`, if this wallet opened it.
    pub async fn access(&self, id: &str) -> Result<Option<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT token FROM center_access WHERE id = ?").bind(id).fetch_optional(&self.pool).await
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn decode_error(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("stored {what} is invalid").into())
}

fn record_of(r: &sqlx::sqlite::SqliteRow) -> Result<Record, sqlx::Error> {
    let currency = Currency::from_str(r.try_get::<&str, _>("currency")?).map_err(|_| decode_error("currency"))?;
    let amount = u64::try_from(r.try_get::<i64, _>("amount_minor")?).map_err(|_| decode_error("amount"))?;
    let settlement_id: Option<String> = r.try_get("settlement_id")?;
    let phase: String = r.try_get("phase")?;
    Ok(Record {
        payment_id: r.try_get("id")?,
        settlement_id: settlement_id.map(|s| SettlementId::parse(&s)).transpose().map_err(|_| decode_error("id"))?,
        store: r.try_get("store")?,
        member: r.try_get("member")?,
        store_name: r.try_get("store_name")?,
        order_id: r.try_get("order_id")?,
        amount: Money::new(amount, currency).map_err(|_| decode_error("amount"))?,
        card_id: CardId::parse(r.try_get::<&str, _>("card_id")?).map_err(|_| decode_error("card id"))?,
        phase: LocalPhase::parse(&phase).ok_or_else(|| decode_error("phase"))?,
        reason: r.try_get("reason")?,
        balance_minor: r.try_get::<Option<i64>, _>("balance_minor")?.and_then(|b| u64::try_from(b).ok()),
        bill: r.try_get("bill")?,
        return_url: r.try_get("return_url")?,
        consent_token: r.try_get("consent_token")?,
        offer: r.try_get("offer")?,
        debit: r.try_get("debit")?,
        debit_answer: r.try_get("debit_answer")?,
        completion: r.try_get("completion")?,
        receipt: r.try_get("receipt")?,
        token_id: r.try_get("token_id")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_idempotency_key_is_stored_before_use_and_reused_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wallet.sqlite");
        let records = Records::open(&path).await.unwrap();
        let payment = NewPayment {
            payment_id: "pay_1",
            store: "kessai-mall",
            member: Some("bookshop"),
            store_name: "Kessai Books",
            order_id: "ord-1",
            amount: Money::new(1_200, Currency::JPY).unwrap(),
            card_id: CardId::from_bytes([1; 8]),
            bill: "a.b.c",
            return_url: "https://shop.test/orders/ord-1/complete",
            consent_token: "t",
        };
        records.insert(&payment, 1).await.unwrap();
        let first = records.step_key("pay_1", "complete", "key-1", 1).await.unwrap();
        records.close().await;
        let records = Records::open(&path).await.unwrap();
        let again = records.step_key("pay_1", "complete", "key-2", 2).await.unwrap();
        assert_eq!((first.as_str(), again.as_str()), ("key-1", "key-1"), "the retry reuses the stored key");
        assert_eq!(records.step_key("pay_1", "create", "key-3", 2).await.unwrap(), "key-3", "each step its own key");
        let r = records.by_payment("pay_1").await.unwrap().unwrap();
        assert_eq!((r.phase, r.amount.to_string()), (LocalPhase::Started, "JPY 1,200".to_owned()));
    }
}
