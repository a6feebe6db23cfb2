//! The wallet's records of value updates (SQLite, beside the payments):
//! charges, decreases back to a credit card, and refunds or corrections
//! applied when the card is presented. The center's update id, kind,
//! direction, amount, phase, funding reference and the SIG5 it verified,
//! with the Idempotency-Keys used, written before each request.
//! Never the payment card's number, expiry or CVC: there is no column for
//! them.

use std::str::FromStr;

use kessai_core::ids::CardId;
use kessai_core::messages::value_update::Direction;
use kessai_core::{Currency, Money};
use sqlx::{Row as _, SqlitePool};

use crate::records::Records;

pub(crate) const CHARGE_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS charges (
        id TEXT PRIMARY KEY,
        charge_id TEXT UNIQUE,
        card_id TEXT NOT NULL,
        kind TEXT NOT NULL DEFAULT 'charge',
        direction TEXT NOT NULL DEFAULT 'credit',
        amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
        currency TEXT NOT NULL,
        phase TEXT NOT NULL,
        reason TEXT,
        funding_ref TEXT,
        value_update TEXT,
        credit TEXT,
        credit_answer TEXT,
        balance_after_minor INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS charge_keys (
        charge TEXT NOT NULL REFERENCES charges (id),
        step TEXT NOT NULL,
        key TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (charge, step))",
    // Message ids (`jti`) of value updates (SIG5) accepted once: a replayed
    // token is refused even if it matches the card, amount and command.
    "CREATE TABLE IF NOT EXISTS seen_value_updates (
        jti TEXT PRIMARY KEY,
        seen_at INTEGER NOT NULL)",
];

/// The columns a record is read from, named (never `*`): a statement
/// prepared while another handle upgrades the table cannot see a column
/// count it did not expect.
const CHARGE_COLUMNS: &str = "id, charge_id, card_id, kind, direction, amount_minor, currency, phase, reason, \
    funding_ref, value_update, credit, credit_answer, balance_after_minor, created_at, updated_at";

/// Where a charge stands, as far as this wallet knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChargePhase {
    /// Asked for; no CREDIT exists yet.
    Started,
    /// SIG5 received (verified or refused); the sealed CREDIT exists at the center.
    Offered,
    /// The CREDIT went to the card; the center has not confirmed yet.
    CreditRelayed,
    /// The center confirmed: the card holds the value, the credit card is charged.
    Completed,
    /// Provably not applied: nothing charged.
    Voided,
    /// Refused before any CREDIT existed (declined, limits): nothing charged.
    Failed,
}

impl ChargePhase {
    const ALL: [ChargePhase; 6] = [
        ChargePhase::Started,
        ChargePhase::Offered,
        ChargePhase::CreditRelayed,
        ChargePhase::Completed,
        ChargePhase::Voided,
        ChargePhase::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChargePhase::Started => "started",
            ChargePhase::Offered => "offered",
            ChargePhase::CreditRelayed => "credit_relayed",
            ChargePhase::Completed => "completed",
            ChargePhase::Voided => "voided",
            ChargePhase::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<ChargePhase> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// One charge as the wallet recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRecord {
    /// The wallet's own id (`chg_` + 32 hex), known before the center's.
    pub local_id: String,
    /// The center's charge id (`vup_…`), once it answered.
    pub charge_id: Option<String>,
    pub card_id: CardId,
    pub kind: UpdateKind,
    pub direction: Direction,
    pub amount: Money,
    pub phase: ChargePhase,
    pub reason: Option<String>,
    /// The credit authorization's reference (SIG5 `funding_ref`).
    pub funding_ref: Option<String>,
    /// The value update (SIG5) as received.
    pub value_update: Option<String>,
    pub credit: Option<String>,
    pub credit_answer: Option<String>,
    pub balance_after_minor: Option<u64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A change of a charge record; `None` fields keep their value.
#[derive(Debug, Default)]
pub struct ChargeUpdate<'a> {
    pub charge_id: Option<&'a str>,
    pub phase: Option<ChargePhase>,
    pub reason: Option<&'a str>,
    pub funding_ref: Option<&'a str>,
    pub value_update: Option<&'a str>,
    pub credit: Option<&'a str>,
    pub credit_answer: Option<&'a str>,
    pub balance_after_minor: Option<u64>,
}

fn db_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) async fn create_tables(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    for statement in CHARGE_SCHEMA {
        sqlx::query(*statement).execute(pool).await?;
    }
    // Added with decreases and refunds, for files made before (their
    // records are charges); a new file has them from its CREATE TABLE.
    for column in ["kind TEXT NOT NULL DEFAULT 'charge'", "direction TEXT NOT NULL DEFAULT 'credit'"] {
        let add = format!("ALTER TABLE charges ADD COLUMN {column}");
        match sqlx::query(sqlx::AssertSqlSafe(add)).execute(pool).await {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.message().contains("duplicate column") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What a value update is for, as the wallet records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    /// Value bought with a credit card.
    Charge,
    /// Value given back to the credit card of a charge.
    Decrease,
    /// What the center owed the card (a refund) or the card owed (a correction).
    Owed,
    /// Value moved from the member's virtual prepaid card (#18).
    FromPrepaid,
}

impl UpdateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateKind::Charge => "charge",
            UpdateKind::Decrease => "decrease",
            UpdateKind::Owed => "owed",
            UpdateKind::FromPrepaid => "from_prepaid",
        }
    }

    fn parse(s: &str) -> Option<UpdateKind> {
        [UpdateKind::Charge, UpdateKind::Decrease, UpdateKind::Owed, UpdateKind::FromPrepaid]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

impl Records {
    pub async fn insert_charge(
        &self,
        local_id: &str,
        card_id: CardId,
        (kind, direction): (UpdateKind, Direction),
        amount: Money,
        now_s: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO charges (id, card_id, kind, direction, amount_minor, currency, phase, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, 'started', ?, ?)",
        )
        .bind(local_id)
        .bind(card_id.to_string())
        .bind(kind.as_str())
        .bind(direction_name(direction))
        .bind(db_i64(amount.amount_minor()))
        .bind(amount.currency().code())
        .bind(now_s)
        .bind(now_s)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn update_charge(&self, local_id: &str, u: &ChargeUpdate<'_>, now_s: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE charges SET charge_id = COALESCE(?, charge_id), phase = COALESCE(?, phase),
                 reason = COALESCE(?, reason), funding_ref = COALESCE(?, funding_ref),
                 value_update = COALESCE(?, value_update), credit = COALESCE(?, credit),
                 credit_answer = COALESCE(?, credit_answer),
                 balance_after_minor = COALESCE(?, balance_after_minor), updated_at = ?
             WHERE id = ?",
        )
        .bind(u.charge_id)
        .bind(u.phase.map(ChargePhase::as_str))
        .bind(u.reason)
        .bind(u.funding_ref)
        .bind(u.value_update)
        .bind(u.credit)
        .bind(u.credit_answer)
        .bind(u.balance_after_minor.map(db_i64))
        .bind(now_s)
        .bind(local_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The Idempotency-Key of `step` of a charge: the stored one, or a new
    /// one written (durably) before it is returned and used.
    pub async fn charge_step_key(
        &self,
        local_id: &str,
        step: &str,
        fresh: &str,
        now_s: i64,
    ) -> Result<String, sqlx::Error> {
        sqlx::query("INSERT OR IGNORE INTO charge_keys (charge, step, key, created_at) VALUES (?, ?, ?, ?)")
            .bind(local_id)
            .bind(step)
            .bind(fresh)
            .bind(now_s)
            .execute(self.pool())
            .await?;
        sqlx::query_scalar("SELECT key FROM charge_keys WHERE charge = ? AND step = ?")
            .bind(local_id)
            .bind(step)
            .fetch_one(self.pool())
            .await
    }

    /// How many recovery runs were begun for a charge.
    pub async fn charge_recovery_runs(&self, local_id: &str) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COUNT(*) FROM charge_keys WHERE charge = ? AND step LIKE 'recover#%'")
            .bind(local_id)
            .fetch_one(self.pool())
            .await
    }

    /// Remembers a value update's message id; `false` if it was seen before.
    pub async fn first_sight_of_value_update(&self, jti: &str, now_s: i64) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("INSERT OR IGNORE INTO seen_value_updates (jti, seen_at) VALUES (?, ?)")
            .bind(jti)
            .bind(now_s)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn charge_by_local_id(&self, local_id: &str) -> Result<Option<ChargeRecord>, sqlx::Error> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {CHARGE_COLUMNS} FROM charges WHERE id = ?")))
            .bind(local_id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| charge_of(&r)).transpose()
    }

    /// The record of the center's update `charge_id`, if this wallet has one.
    pub async fn charge_by_center_id(&self, charge_id: &str) -> Result<Option<ChargeRecord>, sqlx::Error> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {CHARGE_COLUMNS} FROM charges WHERE charge_id = ?")))
            .bind(charge_id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| charge_of(&r)).transpose()
    }

    /// The newest `limit` charges, newest first.
    pub async fn recent_charges(&self, limit: i64) -> Result<Vec<ChargeRecord>, sqlx::Error> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CHARGE_COLUMNS} FROM charges ORDER BY created_at DESC, rowid DESC LIMIT ?"
        )))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(charge_of).collect()
    }

    /// Charges the center knows of that did not end, oldest first: a CREDIT
    /// may be outstanding, or an authorization is held.
    pub async fn charges_needing_recovery(&self, limit: i64) -> Result<Vec<ChargeRecord>, sqlx::Error> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {CHARGE_COLUMNS} FROM charges WHERE phase IN ('started', 'offered', 'credit_relayed')
                 AND charge_id IS NOT NULL ORDER BY created_at, rowid LIMIT ?"
        )))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(charge_of).collect()
    }
}

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Credit => "credit",
        Direction::Debit => "debit",
    }
}

fn decode_error(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("stored charge {what} is invalid").into())
}

fn charge_of(r: &sqlx::sqlite::SqliteRow) -> Result<ChargeRecord, sqlx::Error> {
    let currency = Currency::from_str(r.try_get::<&str, _>("currency")?).map_err(|_| decode_error("currency"))?;
    let amount = u64::try_from(r.try_get::<i64, _>("amount_minor")?).map_err(|_| decode_error("amount"))?;
    let phase: String = r.try_get("phase")?;
    Ok(ChargeRecord {
        local_id: r.try_get("id")?,
        charge_id: r.try_get("charge_id")?,
        card_id: CardId::parse(r.try_get::<&str, _>("card_id")?).map_err(|_| decode_error("card id"))?,
        kind: UpdateKind::parse(r.try_get::<&str, _>("kind")?).ok_or_else(|| decode_error("kind"))?,
        direction: match r.try_get::<&str, _>("direction")? {
            "credit" => Direction::Credit,
            "debit" => Direction::Debit,
            _ => return Err(decode_error("direction")),
        },
        amount: Money::new(amount, currency).map_err(|_| decode_error("amount"))?,
        phase: ChargePhase::parse(&phase).ok_or_else(|| decode_error("phase"))?,
        reason: r.try_get("reason")?,
        funding_ref: r.try_get("funding_ref")?,
        value_update: r.try_get("value_update")?,
        credit: r.try_get("credit")?,
        credit_answer: r.try_get("credit_answer")?,
        balance_after_minor: r.try_get::<Option<i64>, _>("balance_after_minor")?.and_then(|b| u64::try_from(b).ok()),
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}
