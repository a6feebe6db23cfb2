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

use std::str::FromStr;
use std::time::Duration;

use kessai_core::Currency;
use kessai_core::ids::{CardId, PartyId, SettlementId, StoreId, UpdateId};
use kessai_core::jwk::KeyId;
use kessai_core::keys::{KeyDirectory, PublicKey, Validity};
use kessai_core::messages::DisplayText;
use kessai_core::time::Timestamp;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};

use crate::owed::{Owed, OwedBody, OwedStatus};
use crate::purchase::{CardRecord, CardRegistryStatus, Phase, Settlement};
use crate::value::{Charge, ChargePhase};

/// Longest the center waits for a database connection.
const ACQUIRE_TIMEOUT_MS: u64 = 5_000;
/// Connections per instance.
const MAX_CONNECTIONS: u32 = 8;
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
}

fn corrupt(e: impl std::fmt::Display) -> DbError {
    DbError::Corrupt(e.to_string())
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS center_stores (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, mall TEXT, notify_url TEXT,
        client_name TEXT, bank_account TEXT, created_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS center_store_keys (
        kid TEXT PRIMARY KEY, store TEXT NOT NULL, public_key TEXT NOT NULL,
        not_before BIGINT, not_after BIGINT, revoked BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS center_cards (
        id TEXT PRIMARY KEY, key_version BIGINT NOT NULL, status TEXT NOT NULL,
        currency TEXT NOT NULL, max_balance_minor BIGINT NOT NULL, status_reason TEXT, created_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS center_settlements (
        id TEXT PRIMARY KEY, store TEXT NOT NULL, bill_id TEXT NOT NULL, card_id TEXT NOT NULL,
        phase TEXT NOT NULL, record TEXT NOT NULL, version BIGINT NOT NULL,
        created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, UNIQUE (store, bill_id))",
    "CREATE INDEX IF NOT EXISTS center_settlements_card ON center_settlements (card_id, phase)",
    "CREATE TABLE IF NOT EXISTS center_charges (
        id TEXT PRIMARY KEY, card_id TEXT NOT NULL, phase TEXT NOT NULL, amount_minor BIGINT NOT NULL,
        record TEXT NOT NULL, version BIGINT NOT NULL, created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS center_charges_card ON center_charges (card_id, created_at)",
    "CREATE TABLE IF NOT EXISTS center_charge_days (
        card_id TEXT NOT NULL, day BIGINT NOT NULL, charged_minor BIGINT NOT NULL, PRIMARY KEY (card_id, day))",
    "CREATE TABLE IF NOT EXISTS center_owed (
        id TEXT PRIMARY KEY, card_id TEXT NOT NULL, status TEXT NOT NULL, session TEXT, applied_by TEXT,
        store TEXT, reference TEXT NOT NULL, record TEXT NOT NULL, version BIGINT NOT NULL,
        created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS center_owed_card ON center_owed (card_id, status, created_at)",
    "CREATE TABLE IF NOT EXISTS center_statements (
        id TEXT PRIMARY KEY, card_id TEXT NOT NULL, record TEXT NOT NULL, version BIGINT NOT NULL,
        created_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS center_idempotency (
        key TEXT PRIMARY KEY, request_hash TEXT NOT NULL, status BIGINT NOT NULL,
        body TEXT NOT NULL, created_at BIGINT NOT NULL)",
];

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
    pool: AnyPool,
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
        let (url, sqlite) = if let Some(path) = url.strip_prefix("sqlite:") {
            (format!("sqlite://{}?mode=rwc", path.trim_start_matches("//")), true)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (url.to_owned(), false)
        } else {
            return Err(DbError::BadUrl);
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 1 } else { MAX_CONNECTIONS })
            .acquire_timeout(Duration::from_millis(ACQUIRE_TIMEOUT_MS))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        for pragma in
                            ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL", "PRAGMA busy_timeout = 5000"]
                        {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        for statement in SCHEMA {
            sqlx::query(*statement).execute(&pool).await?;
        }
        add_delivered_column(&pool, sqlite).await?;
        add_column(&pool, sqlite, "center_settlements", "refunded_minor BIGINT NOT NULL DEFAULT 0").await?;
        add_column(&pool, sqlite, "center_charges", "decreased_minor BIGINT NOT NULL DEFAULT 0").await?;
        add_column(&pool, sqlite, "center_charges", "purpose TEXT NOT NULL DEFAULT 'charge'").await?;
        Ok(CenterDb { pool })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Adds or updates a store.
    pub async fn put_store(&self, s: &StoreRecord, now: Timestamp) -> Result<(), DbError> {
        sqlx::query(
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
        .bind(to_i64(now.unix_s())?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn store(&self, id: &StoreId) -> Result<Option<StoreRecord>, DbError> {
        let row = sqlx::query(
            "SELECT id, name, mall, notify_url, client_name, bank_account FROM center_stores WHERE id = $1",
        )
        .bind(id.as_str().to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let mall: Option<String> = r.try_get("mall")?;
            Ok(StoreRecord {
                id: StoreId::parse(&r.try_get::<String, _>("id")?).map_err(corrupt)?,
                name: DisplayText::parse(&r.try_get::<String, _>("name")?).map_err(corrupt)?,
                mall: mall.map(|m| StoreId::parse(&m)).transpose().map_err(corrupt)?,
                notify_url: r.try_get("notify_url")?,
                client_name: r.try_get("client_name")?,
                bank_account: r.try_get("bank_account")?,
            })
        })
        .transpose()
    }

    /// Registers a signing key of a store (the merchant of record).
    pub async fn put_store_key(&self, store: &StoreId, key: &PublicKey, window: Validity) -> Result<(), DbError> {
        let ts = |t: Option<Timestamp>| t.map(|t| to_i64(t.unix_s())).transpose();
        sqlx::query(
            "INSERT INTO center_store_keys (kid, store, public_key, not_before, not_after, revoked)
             VALUES ($1, $2, $3, $4, $5, 0)
             ON CONFLICT (kid) DO UPDATE SET not_before = $4, not_after = $5 WHERE center_store_keys.store = $2",
        )
        .bind(key.kid().as_str().to_owned())
        .bind(store.as_str().to_owned())
        .bind(hex::encode(key.as_bytes()))
        .bind(ts(window.not_before)?)
        .bind(ts(window.not_after)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn revoke_store_key(&self, kid: &KeyId) -> Result<bool, DbError> {
        let done = sqlx::query("UPDATE center_store_keys SET revoked = 1 WHERE kid = $1")
            .bind(kid.as_str().to_owned())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every registered store key, as the directory bills are checked against.
    pub async fn store_keys(&self) -> Result<KeyDirectory, DbError> {
        let rows = sqlx::query("SELECT store, public_key, not_before, not_after, revoked FROM center_store_keys")
            .fetch_all(&self.pool)
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
        sqlx::query(
            "INSERT INTO center_cards (id, key_version, status, currency, max_balance_minor, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(c.id.to_string())
        .bind(i64::from(c.key_version))
        .bind(status_name(c.status).to_owned())
        .bind(c.currency.code().to_owned())
        .bind(to_i64(c.max_balance_minor)?)
        .bind(to_i64(now.unix_s())?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Blocks or reports lost a card, with the reason recorded.
    pub async fn set_card_status(
        &self,
        id: &CardId,
        status: CardRegistryStatus,
        reason: &str,
    ) -> Result<bool, DbError> {
        let done = sqlx::query("UPDATE center_cards SET status = $1, status_reason = $2 WHERE id = $3")
            .bind(status_name(status).to_owned())
            .bind(reason.to_owned())
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn card(&self, id: &CardId) -> Result<Option<CardRecord>, DbError> {
        let row =
            sqlx::query("SELECT id, key_version, status, currency, max_balance_minor FROM center_cards WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| {
            Ok(CardRecord {
                id: CardId::parse(&r.try_get::<String, _>("id")?).map_err(corrupt)?,
                key_version: u8::try_from(r.try_get::<i64, _>("key_version")?).map_err(corrupt)?,
                status: status_parse(&r.try_get::<String, _>("status")?)?,
                currency: Currency::from_str(&r.try_get::<String, _>("currency")?).map_err(corrupt)?,
                max_balance_minor: to_u64(r.try_get("max_balance_minor")?)?,
            })
        })
        .transpose()
    }

    /// Stores a new settlement. If the store already has a settlement for
    /// this bill id, returns that one instead (a duplicate bill).
    pub async fn insert_settlement(
        &self,
        s: &Settlement,
        now: Timestamp,
    ) -> Result<Option<(Settlement, i64)>, DbError> {
        let record = serde_json::to_string(s).map_err(corrupt)?;
        let inserted = sqlx::query(
            "INSERT INTO center_settlements (id, store, bill_id, card_id, phase, record, version, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7) ON CONFLICT (store, bill_id) DO NOTHING",
        )
        .bind(s.id.as_str().to_owned())
        .bind(s.bill.store.as_str().to_owned())
        .bind(s.bill.bill_id.as_str().to_owned())
        .bind(s.card_id.to_string())
        .bind(s.phase.as_str().to_owned())
        .bind(record)
        .bind(to_i64(now.unix_s())?)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(None);
        }
        let row = sqlx::query("SELECT record, version FROM center_settlements WHERE store = $1 AND bill_id = $2")
            .bind(s.bill.store.as_str().to_owned())
            .bind(s.bill.bill_id.as_str().to_owned())
            .fetch_one(&self.pool)
            .await?;
        Ok(Some(settlement_row(&row)?))
    }

    /// A settlement and the version to name when updating it.
    pub async fn settlement(&self, id: &SettlementId) -> Result<Option<(Settlement, i64)>, DbError> {
        let row = sqlx::query("SELECT record, version FROM center_settlements WHERE id = $1")
            .bind(id.as_str().to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| settlement_row(&r)).transpose()
    }

    /// Writes `s` if the row is still at `version`.
    pub async fn update_settlement(&self, s: &Settlement, version: i64, now: Timestamp) -> Result<(), DbError> {
        let record = serde_json::to_string(s).map_err(corrupt)?;
        let done = sqlx::query(
            "UPDATE center_settlements SET phase = $1, record = $2, version = version + 1, updated_at = $3,
             delivered = $6 WHERE id = $4 AND version = $5",
        )
        .bind(s.phase.as_str().to_owned())
        .bind(record)
        .bind(to_i64(now.unix_s())?)
        .bind(s.id.as_str().to_owned())
        .bind(version)
        .bind(i64::from(s.receipt_token.is_some()))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() != 1 {
            return Err(DbError::Conflict);
        }
        Ok(())
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
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| settlement_row(r).map(|(s, _)| s)).collect()
    }

    pub async fn insert_statement(&self, s: &crate::statement::Statement) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO center_statements (id, card_id, record, version, created_at) VALUES ($1, $2, $3, 1, $4)",
        )
        .bind(s.id.clone())
        .bind(s.card_id.to_string())
        .bind(serde_json::to_string(s).map_err(corrupt)?)
        .bind(to_i64(s.created_at.unix_s())?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn statement(&self, id: &str) -> Result<Option<(crate::statement::Statement, i64)>, DbError> {
        let row = sqlx::query("SELECT record, version FROM center_statements WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let record: String = r.try_get("record")?;
            Ok((serde_json::from_str(&record).map_err(corrupt)?, r.try_get("version")?))
        })
        .transpose()
    }

    pub async fn update_statement(&self, s: &crate::statement::Statement, version: i64) -> Result<(), DbError> {
        let done = sqlx::query(
            "UPDATE center_statements SET record = $1, version = version + 1 WHERE id = $2 AND version = $3",
        )
        .bind(serde_json::to_string(s).map_err(corrupt)?)
        .bind(s.id.clone())
        .bind(version)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() != 1 {
            return Err(DbError::Conflict);
        }
        Ok(())
    }

    /// Completed settlements whose receipt is not stored yet, oldest first.
    pub async fn undelivered(&self, limit: i64) -> Result<Vec<Settlement>, DbError> {
        let rows = sqlx::query(
            "SELECT record, version FROM center_settlements
             WHERE phase = 'completed' AND delivered = 0 ORDER BY updated_at, id LIMIT $1",
        )
        .bind(limit.clamp(1, MAX_LIST))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| settlement_row(r).map(|(s, _)| s)).collect()
    }

    /// The stored answer for an Idempotency-Key, if any: `(request hash,
    /// status, body)`.
    pub async fn idempotent_response(&self, key: &str) -> Result<Option<(String, u16, String)>, DbError> {
        let row = sqlx::query("SELECT request_hash, status, body FROM center_idempotency WHERE key = $1")
            .bind(key.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let status = u16::try_from(r.try_get::<i64, _>("status")?).map_err(corrupt)?;
            Ok((r.try_get("request_hash")?, status, r.try_get("body")?))
        })
        .transpose()
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
        sqlx::query(
            "INSERT INTO center_idempotency (key, request_hash, status, body, created_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key.to_owned())
        .bind(hash.to_owned())
        .bind(i64::from(status))
        .bind(body.to_owned())
        .bind(to_i64(now.unix_s())?)
        .execute(&self.pool)
        .await?;
        Ok(())
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
    ) -> Result<RefundStored, DbError> {
        if let Some(existing) = self.owed(&o.id).await? {
            return Ok(RefundStored::Existing(Box::new(existing)));
        }
        let mut tx = self.pool.begin().await?;
        let reserved = sqlx::query(
            "UPDATE center_settlements SET refunded_minor = refunded_minor + $1
             WHERE id = $2 AND phase = 'completed' AND refunded_minor + $1 <= $3",
        )
        .bind(to_i64(o.body.amount.amount_minor())?)
        .bind(settlement.as_str().to_owned())
        .bind(to_i64(purchase_minor)?)
        .execute(&mut *tx)
        .await?;
        if reserved.rows_affected() != 1 {
            drop(tx);
            let row = sqlx::query("SELECT refunded_minor FROM center_settlements WHERE id = $1")
                .bind(settlement.as_str().to_owned())
                .fetch_one(&self.pool)
                .await?;
            return Ok(RefundStored::Refused { refunded_minor: to_u64(row.try_get("refunded_minor")?)? });
        }
        match insert_owed_in(&mut tx, o, now).await {
            Ok(()) => {
                tx.commit().await?;
                Ok(RefundStored::Inserted)
            }
            // Another instance stored the same refund meanwhile.
            Err(DbError::Sqlx(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                drop(tx);
                let existing = self.owed(&o.id).await?.ok_or_else(|| corrupt("refund vanished"))?;
                Ok(RefundStored::Existing(Box::new(existing)))
            }
            Err(e) => Err(e),
        }
    }

    /// What is refunded of a settlement so far.
    pub async fn settlement_refunded(&self, id: &SettlementId) -> Result<u64, DbError> {
        let row = sqlx::query("SELECT refunded_minor FROM center_settlements WHERE id = $1")
            .bind(id.as_str().to_owned())
            .fetch_one(&self.pool)
            .await?;
        to_u64(row.try_get("refunded_minor")?)
    }

    /// Stores an owed item with no purchase behind it (a correction).
    /// `false` if it exists already.
    pub async fn insert_owed(&self, o: &Owed, now: Timestamp) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await?;
        match insert_owed_in(&mut tx, o, now).await {
            Ok(()) => {
                tx.commit().await?;
                Ok(true)
            }
            Err(DbError::Sqlx(sqlx::Error::Database(e))) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn owed(&self, id: &str) -> Result<Option<Owed>, DbError> {
        let row = sqlx::query("SELECT id, status, session, applied_by, record FROM center_owed WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| owed_row(&r)).transpose()
    }

    /// A card's items still owed, oldest first.
    pub async fn owed_for_card(&self, card: &CardId, limit: i64) -> Result<Vec<Owed>, DbError> {
        let rows = sqlx::query(
            "SELECT id, status, session, applied_by, record FROM center_owed
             WHERE card_id = $1 AND status = $2 ORDER BY created_at, id LIMIT $3",
        )
        .bind(card.to_string())
        .bind(OwedStatus::Owed.as_str().to_owned())
        .bind(limit.clamp(1, MAX_LIST))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(owed_row).collect()
    }

    /// Opens value update `c` to apply owed item `owed`, if no other is
    /// applying it: claim and insert in one transaction. `false` if the
    /// item is no longer owed or another update holds it.
    pub async fn claim_owed(&self, owed: &str, c: &Charge, now: Timestamp) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await?;
        let claimed = sqlx::query(
            "UPDATE center_owed SET session = $1, version = version + 1, updated_at = $2
             WHERE id = $3 AND status = $4 AND session IS NULL",
        )
        .bind(c.id.as_str().to_owned())
        .bind(to_i64(now.unix_s())?)
        .bind(owed.to_owned())
        .bind(OwedStatus::Owed.as_str().to_owned())
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() != 1 {
            return Ok(false);
        }
        insert_charge_in(&mut tx, c, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Cancels an owed item no value update holds. `false` if it is being
    /// applied, applied, or cancelled already.
    pub async fn cancel_owed(&self, id: &str, now: Timestamp) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE center_owed SET status = $1, version = version + 1, updated_at = $2
             WHERE id = $3 AND status = $4 AND session IS NULL",
        )
        .bind(OwedStatus::Cancelled.as_str().to_owned())
        .bind(to_i64(now.unix_s())?)
        .bind(id.to_owned())
        .bind(OwedStatus::Owed.as_str().to_owned())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

async fn release_daily_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    card: &CardId,
    day: u64,
    amount_minor: u64,
) -> Result<u64, DbError> {
    let done = sqlx::query(
        "UPDATE center_charge_days SET charged_minor = charged_minor - $1
         WHERE card_id = $2 AND day = $3 AND charged_minor >= $1",
    )
    .bind(to_i64(amount_minor)?)
    .bind(card.to_string())
    .bind(to_i64(day)?)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

async fn insert_owed_in(tx: &mut sqlx::Transaction<'_, sqlx::Any>, o: &Owed, now: Timestamp) -> Result<(), DbError> {
    let (store, reference) = o.body.kind.store_and_reference();
    sqlx::query(
        "INSERT INTO center_owed (id, card_id, status, session, applied_by, store, reference, record, version,
         created_at, updated_at) VALUES ($1, $2, $3, NULL, NULL, $4, $5, $6, 1, $7, $7)",
    )
    .bind(o.id.clone())
    .bind(o.body.card_id.to_string())
    .bind(OwedStatus::Owed.as_str().to_owned())
    .bind(store)
    .bind(reference)
    .bind(serde_json::to_string(&o.body).map_err(corrupt)?)
    .bind(to_i64(now.unix_s())?)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn owed_row(r: &sqlx::any::AnyRow) -> Result<Owed, DbError> {
    let record: String = r.try_get("record")?;
    let body: OwedBody = serde_json::from_str(&record).map_err(corrupt)?;
    let parse_update = |v: Option<String>| v.map(|v| UpdateId::parse(&v)).transpose().map_err(corrupt);
    Ok(Owed {
        id: r.try_get("id")?,
        status: OwedStatus::parse(&r.try_get::<String, _>("status")?).ok_or_else(|| corrupt("owed status"))?,
        session: parse_update(r.try_get("session")?)?,
        applied_by: parse_update(r.try_get("applied_by")?)?,
        body,
    })
}

/// Charges (value updates), stored like settlements: the record as JSON,
/// updated only by compare-and-set on its version. No payment card data is
/// ever in a record (see [`crate::authorizer::PaymentCard`]).
impl CenterDb {
    pub async fn insert_charge(&self, c: &Charge, now: Timestamp) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        insert_charge_in(&mut tx, c, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A charge and the version to name when updating it.
    pub async fn charge(&self, id: &str) -> Result<Option<(Charge, i64)>, DbError> {
        let row = sqlx::query("SELECT record, version FROM center_charges WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let record: String = r.try_get("record")?;
            let c: Charge = serde_json::from_str(&record).map_err(corrupt)?;
            Ok((c, r.try_get("version")?))
        })
        .transpose()
    }

    /// Writes `c` if the row is still at `version`.
    pub async fn update_charge(&self, c: &Charge, version: i64, now: Timestamp) -> Result<(), DbError> {
        self.update_charge_with(c, version, now, Alongside::Nothing).await
    }

    /// Writes `c` if the row is still at `version`, and in the same
    /// transaction what its ending means for its owed item or the charge a
    /// decrease went back to.
    pub async fn update_charge_with(
        &self,
        c: &Charge,
        version: i64,
        now: Timestamp,
        alongside: Alongside<'_>,
    ) -> Result<(), DbError> {
        let record = serde_json::to_string(c).map_err(corrupt)?;
        let now = to_i64(now.unix_s())?;
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE center_charges SET phase = $1, record = $2, version = version + 1, updated_at = $3
             WHERE id = $4 AND version = $5",
        )
        .bind(c.phase.as_str().to_owned())
        .bind(record)
        .bind(now)
        .bind(c.id.as_str().to_owned())
        .bind(version)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(DbError::Conflict);
        }
        let session = c.id.as_str().to_owned();
        let changed = match alongside {
            Alongside::Nothing => 1,
            Alongside::OwedApplied(owed) => sqlx::query(
                "UPDATE center_owed SET status = $1, applied_by = $2, session = NULL, version = version + 1,
                 updated_at = $3 WHERE id = $4 AND session = $2",
            )
            .bind(OwedStatus::Applied.as_str().to_owned())
            .bind(session)
            .bind(now)
            .bind(owed.to_owned())
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            Alongside::OwedReleased(owed) => sqlx::query(
                "UPDATE center_owed SET session = NULL, version = version + 1, updated_at = $1
                 WHERE id = $2 AND session = $3",
            )
            .bind(now)
            .bind(owed.to_owned())
            .bind(session)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            Alongside::DailyReleased { card, day, amount_minor } => {
                release_daily_in(&mut tx, card, day, amount_minor).await?
            }
            Alongside::DecreaseReleased { charge_id, amount_minor } => sqlx::query(
                "UPDATE center_charges SET decreased_minor = decreased_minor - $1 WHERE id = $2
                 AND decreased_minor >= $1",
            )
            .bind(to_i64(amount_minor)?)
            .bind(charge_id.to_owned())
            .execute(&mut *tx)
            .await?
            .rows_affected(),
        };
        if changed != 1 {
            return Err(DbError::Corrupt(format!("value update {} does not hold what it ends", c.id)));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stores a decrease (a value update going back to the credit card of
    /// charge `parent`), reserving its amount against what that charge put
    /// on the card, in one transaction: the decreases of a charge never sum
    /// past it. `Ok(Err(already))` when this one would.
    pub async fn insert_decrease(
        &self,
        c: &Charge,
        parent: &str,
        parent_amount_minor: u64,
        now: Timestamp,
    ) -> Result<Result<(), u64>, DbError> {
        let amount = to_i64(c.amount.amount_minor())?;
        let mut tx = self.pool.begin().await?;
        let reserved = sqlx::query(
            "UPDATE center_charges SET decreased_minor = decreased_minor + $1
             WHERE id = $2 AND phase = $3 AND decreased_minor + $1 <= $4",
        )
        .bind(amount)
        .bind(parent.to_owned())
        .bind(ChargePhase::Completed.as_str().to_owned())
        .bind(to_i64(parent_amount_minor)?)
        .execute(&mut *tx)
        .await?;
        if reserved.rows_affected() != 1 {
            drop(tx);
            let row = sqlx::query("SELECT decreased_minor FROM center_charges WHERE id = $1")
                .bind(parent.to_owned())
                .fetch_one(&self.pool)
                .await?;
            return Ok(Err(to_u64(row.try_get("decreased_minor")?)?));
        }
        insert_charge_in(&mut tx, c, now).await?;
        tx.commit().await?;
        Ok(Ok(()))
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
        let done = sqlx::query(
            "INSERT INTO center_charge_days (card_id, day, charged_minor) SELECT $1, $2, $3 WHERE $3 <= $4
             ON CONFLICT (card_id, day) DO UPDATE SET charged_minor = center_charge_days.charged_minor + $3
             WHERE center_charge_days.charged_minor + $3 <= $4",
        )
        .bind(card.to_string())
        .bind(to_i64(day)?)
        .bind(to_i64(amount_minor)?)
        .bind(to_i64(limit_minor)?)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(Ok(()));
        }
        let row = sqlx::query("SELECT charged_minor FROM center_charge_days WHERE card_id = $1 AND day = $2")
            .bind(card.to_string())
            .bind(to_i64(day)?)
            .fetch_optional(&self.pool)
            .await?;
        let charged = row.map(|r| r.try_get::<i64, _>("charged_minor")).transpose()?.unwrap_or(0);
        Ok(Err(to_u64(charged)?))
    }

    /// Gives back a reservation of [`CenterDb::reserve_daily_charge`].
    pub async fn release_daily_charge(&self, card: &CardId, day: u64, amount_minor: u64) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await?;
        release_daily_in(&mut tx, card, day, amount_minor).await?;
        tx.commit().await?;
        Ok(())
    }

    /// What a card was charged (by credit card) since `since`, counting
    /// every charge not voided (completed and pending alike).
    pub async fn charged_since(&self, card: &CardId, since: Timestamp) -> Result<u64, DbError> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) AS total FROM center_charges
             WHERE card_id = $1 AND created_at >= $2 AND phase <> $3 AND purpose = 'charge'",
        )
        .bind(card.to_string())
        .bind(to_i64(since.unix_s())?)
        .bind(ChargePhase::Voided.as_str().to_owned())
        .fetch_one(&self.pool)
        .await?;
        to_u64(row.try_get("total")?)
    }
}

async fn insert_charge_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    c: &Charge,
    now: Timestamp,
) -> Result<(), DbError> {
    let record = serde_json::to_string(c).map_err(corrupt)?;
    sqlx::query(
        "INSERT INTO center_charges (id, card_id, phase, amount_minor, record, version, created_at, updated_at,
         purpose) VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8)",
    )
    .bind(c.id.as_str().to_owned())
    .bind(c.card_id.to_string())
    .bind(c.phase.as_str().to_owned())
    .bind(to_i64(c.amount.amount_minor())?)
    .bind(record)
    .bind(to_i64(c.created_at.unix_s())?)
    .bind(to_i64(now.unix_s())?)
    .bind(c.purpose.name().to_owned())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Adds a column to a table made before it existed (schema upgrades).
async fn add_column(pool: &AnyPool, sqlite: bool, table: &str, column: &str) -> Result<(), DbError> {
    let add = if sqlite {
        format!("ALTER TABLE {table} ADD COLUMN {column}")
    } else {
        format!("ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column}")
    };
    // `table` and `column` are constants of this module, never input.
    match sqlx::query(sqlx::AssertSqlSafe(add)).execute(pool).await {
        Ok(_) => Ok(()),
        // SQLite has no IF NOT EXISTS for columns: a second start meets it.
        Err(sqlx::Error::Database(e)) if sqlite && e.message().contains("duplicate column") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Schema v2: `delivered` (1 once the store's receipt is stored), indexed
/// with the phase, so the delivery sweep finds every undelivered completion
/// however many settlements there are. Added to databases made before it.
async fn add_delivered_column(pool: &AnyPool, sqlite: bool) -> Result<(), DbError> {
    add_column(pool, sqlite, "center_settlements", "delivered BIGINT NOT NULL DEFAULT 0").await?;
    sqlx::query(
        "CREATE INDEX IF NOT EXISTS center_settlements_delivery ON center_settlements (phase, delivered, updated_at)",
    )
    .execute(pool)
    .await?;
    Ok(())
}

fn settlement_row(r: &sqlx::any::AnyRow) -> Result<(Settlement, i64), DbError> {
    let record: String = r.try_get("record")?;
    let s: Settlement = serde_json::from_str(&record).map_err(corrupt)?;
    Ok((s, r.try_get("version")?))
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
