//! Orders, bills, receipts and download links, in SQLite (default) or
//! PostgreSQL. The same SQL runs on both (`$n` parameters, TEXT and
//! BIGINT columns only); every write that must be atomic is one
//! transaction.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, PgPool, Row as _, SqlitePool};

use crate::limits::{DB_POOL_CONNECTIONS_MAX, SQLITE_BUSY_TIMEOUT_MS};

/// A database of either kind. Cheap to clone (it holds a pool).
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs the same code on whichever pool `db` holds.
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            Db::Sqlite($pool) => $body,
            Db::Postgres($pool) => $body,
        }
    };
}

/// A write transaction: `BEGIN IMMEDIATE` on SQLite (takes the write
/// lock at once, so two writers never deadlock upgrading), plain on
/// PostgreSQL (row locks do the rest).
macro_rules! write_tx {
    ($db:expr, $tx:ident => $body:expr) => {
        match $db {
            Db::Sqlite(pool) => {
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                $body
            }
            Db::Postgres(pool) => {
                let mut $tx = pool.begin().await?;
                $body
            }
        }
    };
}

/// Schema migrations, applied in order, each once.
const MIGRATIONS: &[(i64, &str, &[&str])] = &[
    (
        1,
        "orders, bills, receipts, download links, order numbers",
        &[
            "CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)",
            "INSERT INTO counters (name, value) VALUES ('order', 0)",
            "CREATE TABLE orders (
            order_id TEXT PRIMARY KEY,
            seq BIGINT NOT NULL UNIQUE,
            member TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('open', 'paid')),
            currency TEXT NOT NULL,
            total_minor BIGINT NOT NULL CHECK (total_minor > 0),
            lines_json TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            paid_at BIGINT
        )",
            "CREATE INDEX orders_by_member ON orders (member, seq)",
            "CREATE TABLE bills (
            order_id TEXT PRIMARY KEY REFERENCES orders (order_id),
            bill_id TEXT NOT NULL UNIQUE,
            bill_token TEXT NOT NULL,
            bill_hash TEXT NOT NULL UNIQUE,
            expires_at BIGINT NOT NULL
        )",
            "CREATE TABLE receipts (
            order_id TEXT PRIMARY KEY REFERENCES orders (order_id),
            settlement_id TEXT NOT NULL,
            completion_hash TEXT NOT NULL UNIQUE,
            completion_token TEXT NOT NULL,
            receipt_token TEXT NOT NULL,
            created_at BIGINT NOT NULL
        )",
            "CREATE TABLE downloads (
            token TEXT PRIMARY KEY,
            order_id TEXT NOT NULL REFERENCES orders (order_id),
            sku TEXT NOT NULL,
            expires_at BIGINT
        )",
            "CREATE INDEX downloads_by_order ON downloads (order_id)",
        ],
    ),
    (
        2,
        "what the center says was refunded of each settlement, for claims",
        &[
            // The center's running total of refunds of a settlement, as it
            // answered the mall's last refund of it (never lowered).
            "CREATE TABLE refunds (settlement_id TEXT PRIMARY KEY, refunded_minor BIGINT NOT NULL
            CHECK (refunded_minor >= 0), updated_at BIGINT NOT NULL)",
        ],
    ),
    (
        3,
        "unpaid orders found by their bill's expiry, for the purge (L1)",
        &["CREATE INDEX bills_by_expiry ON bills (expires_at)"],
    ),
];

const SCHEMA_TABLE_SQL: &str =
    "CREATE TABLE IF NOT EXISTS store_schema (version BIGINT PRIMARY KEY, description TEXT NOT NULL)";
const SCHEMA_VERSION_SQL: &str = "SELECT COALESCE(MAX(version), 0) FROM store_schema";
const RECORD_VERSION_SQL: &str = "INSERT INTO store_schema (version, description) VALUES ($1, $2)";

/// An order with its bill and, once paid, its receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub order_id: String,
    pub seq: i64,
    pub member: String,
    pub paid: bool,
    pub currency: String,
    pub total_minor: i64,
    pub lines_json: String,
    pub created_at: i64,
    pub paid_at: Option<i64>,
    pub bill_token: String,
    pub bill_hash: String,
    pub bill_expires_at: i64,
    pub settlement_id: Option<String>,
    pub receipt_token: Option<String>,
}

/// An unpaid order whose bill has expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpaidOrder {
    pub order_id: String,
    pub bill_id: String,
    /// Its bill's expiry (unix seconds).
    pub expires_at: i64,
}

/// A new order, its signed bill and its (not yet usable) download links.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub order_id: String,
    pub seq: i64,
    pub member: String,
    pub currency: String,
    pub total_minor: i64,
    pub lines_json: String,
    pub created_at: i64,
    pub bill_id: String,
    pub bill_token: String,
    pub bill_hash: String,
    pub bill_expires_at: i64,
    /// (token, sku) per downloadable line.
    pub downloads: Vec<(String, String)>,
}

/// A verified, matched completion and the receipt answering it.
#[derive(Debug, Clone)]
pub struct Payment {
    pub order_id: String,
    pub settlement_id: String,
    pub completion_hash: String,
    pub completion_token: String,
    pub receipt_token: String,
    pub paid_at: i64,
    pub downloads_expire_at: i64,
}

/// A download link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadRow {
    pub token: String,
    pub order_id: String,
    pub sku: String,
    /// Set when the order was paid; `None` while it is open.
    pub expires_at: Option<i64>,
}

const ORDER_SELECT: &str = "SELECT o.order_id, o.seq, o.member, o.status, o.currency, o.total_minor, o.lines_json,
        o.created_at, o.paid_at, b.bill_token, b.bill_hash, b.expires_at AS bill_expires_at,
        r.settlement_id, r.receipt_token
    FROM orders o JOIN bills b ON b.order_id = o.order_id LEFT JOIN receipts r ON r.order_id = o.order_id";

macro_rules! order_row {
    ($row:expr) => {{
        let row = $row;
        OrderRow {
            order_id: row.try_get("order_id")?,
            seq: row.try_get("seq")?,
            member: row.try_get("member")?,
            paid: row.try_get::<String, _>("status")? == "paid",
            currency: row.try_get("currency")?,
            total_minor: row.try_get("total_minor")?,
            lines_json: row.try_get("lines_json")?,
            created_at: row.try_get("created_at")?,
            paid_at: row.try_get("paid_at")?,
            bill_token: row.try_get("bill_token")?,
            bill_hash: row.try_get("bill_hash")?,
            bill_expires_at: row.try_get("bill_expires_at")?,
            settlement_id: row.try_get("settlement_id")?,
            receipt_token: row.try_get("receipt_token")?,
        }
    }};
}

macro_rules! download_row {
    ($row:expr) => {{
        let row = $row;
        DownloadRow {
            token: row.try_get("token")?,
            order_id: row.try_get("order_id")?,
            sku: row.try_get("sku")?,
            expires_at: row.try_get("expires_at")?,
        }
    }};
}

/// Whether `name` is a plain lowercase identifier (safe to splice into SQL).
fn valid_schema_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl Db {
    /// Opens (creating) the SQLite file in WAL mode and migrates it.
    pub async fn open_sqlite(path: &Path) -> Result<Db, sqlx::Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_millis(SQLITE_BUSY_TIMEOUT_MS));
        let pool = SqlitePoolOptions::new().max_connections(DB_POOL_CONNECTIONS_MAX).connect_with(options).await?;
        let db = Db::Sqlite(pool);
        db.migrate().await?;
        Ok(db)
    }

    /// Connects to PostgreSQL, optionally inside `schema` (created if
    /// missing; tests use one schema each), and migrates.
    pub async fn open_postgres(url: &str, schema: Option<&str>) -> Result<Db, sqlx::Error> {
        let mut options = PgConnectOptions::from_str(url)?;
        if let Some(name) = schema {
            if !valid_schema_name(name) {
                return Err(sqlx::Error::Configuration(format!("invalid schema name {name:?}").into()));
            }
            let setup = PgPoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
            // Checked above to be a plain identifier: it cannot break out.
            let created =
                sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {name}"))).execute(&setup).await;
            setup.close().await;
            created?;
            options = options.options([("search_path", name)]);
        }
        let pool = PgPoolOptions::new().max_connections(DB_POOL_CONNECTIONS_MAX).connect_with(options).await?;
        let db = Db::Postgres(pool);
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> Result<(), sqlx::Error> {
        write_tx!(self, tx => {
            if matches!(self, Db::Postgres(_)) {
                // Two instances starting at once migrate one after the other.
                sqlx::query("SELECT pg_advisory_xact_lock(6172026)").execute(&mut *tx).await?;
            }
            sqlx::query(SCHEMA_TABLE_SQL).execute(&mut *tx).await?;
            let current: i64 = sqlx::query_scalar(SCHEMA_VERSION_SQL).fetch_one(&mut *tx).await?;
            for (version, description, statements) in MIGRATIONS.iter().filter(|m| m.0 > current) {
                for statement in *statements {
                    sqlx::query(*statement).execute(&mut *tx).await?;
                }
                sqlx::query(RECORD_VERSION_SQL).bind(*version).bind(*description).execute(&mut *tx).await?;
            }
            tx.commit().await
        })
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.is_ok())
    }

    /// The mall's next order number (1, 2, …), never handed out twice.
    pub async fn next_order_number(&self) -> Result<i64, sqlx::Error> {
        const SQL: &str = "UPDATE counters SET value = value + 1 WHERE name = 'order' RETURNING value";
        write_tx!(self, tx => {
            let value: i64 = sqlx::query_scalar(SQL).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            Ok(value)
        })
    }

    /// Stores an order, its bill and its download links, all or nothing.
    pub async fn insert_order(&self, o: &NewOrder) -> Result<(), sqlx::Error> {
        const ORDER: &str =
            "INSERT INTO orders (order_id, seq, member, status, currency, total_minor, lines_json, created_at)
            VALUES ($1, $2, $3, 'open', $4, $5, $6, $7)";
        const BILL: &str =
            "INSERT INTO bills (order_id, bill_id, bill_token, bill_hash, expires_at) VALUES ($1, $2, $3, $4, $5)";
        const DOWNLOAD: &str = "INSERT INTO downloads (token, order_id, sku, expires_at) VALUES ($1, $2, $3, NULL)";
        write_tx!(self, tx => {
            sqlx::query(ORDER)
                .bind(&o.order_id).bind(o.seq).bind(&o.member).bind(&o.currency).bind(o.total_minor)
                .bind(&o.lines_json).bind(o.created_at)
                .execute(&mut *tx).await?;
            sqlx::query(BILL)
                .bind(&o.order_id).bind(&o.bill_id).bind(&o.bill_token).bind(&o.bill_hash).bind(o.bill_expires_at)
                .execute(&mut *tx).await?;
            for (token, sku) in &o.downloads {
                sqlx::query(DOWNLOAD).bind(token).bind(&o.order_id).bind(sku).execute(&mut *tx).await?;
            }
            tx.commit().await
        })
    }

    pub async fn order(&self, order_id: &str) -> Result<Option<OrderRow>, sqlx::Error> {
        let sql = AssertSqlSafe(format!("{ORDER_SELECT} WHERE o.order_id = $1"));
        on_pool!(self, pool => {
            let row = sqlx::query(sql).bind(order_id).fetch_optional(pool).await?;
            row.map(|row| Ok(order_row!(row))).transpose()
        })
    }

    pub async fn order_by_bill_hash(&self, bill_hash: &str) -> Result<Option<OrderRow>, sqlx::Error> {
        let sql = AssertSqlSafe(format!("{ORDER_SELECT} WHERE b.bill_hash = $1"));
        on_pool!(self, pool => {
            let row = sqlx::query(sql).bind(bill_hash).fetch_optional(pool).await?;
            row.map(|row| Ok(order_row!(row))).transpose()
        })
    }

    /// A member's orders, newest first, at most `limit`.
    pub async fn orders_of_member(&self, member: &str, limit: i64) -> Result<Vec<OrderRow>, sqlx::Error> {
        let sql = AssertSqlSafe(format!("{ORDER_SELECT} WHERE o.member = $1 ORDER BY o.seq DESC LIMIT $2"));
        on_pool!(self, pool => {
            let rows = sqlx::query(sql).bind(member).bind(limit).fetch_all(pool).await?;
            rows.into_iter().map(|row| Ok(order_row!(row))).collect()
        })
    }

    /// The receipt already given for exactly this completion token.
    pub async fn receipt_for_completion(&self, completion_hash: &str) -> Result<Option<String>, sqlx::Error> {
        const SQL: &str = "SELECT receipt_token FROM receipts WHERE completion_hash = $1";
        on_pool!(self, pool => sqlx::query_scalar(SQL).bind(completion_hash).fetch_optional(pool).await)
    }

    /// Marks an open order paid, stores the receipt and starts the
    /// download links' lifetime, in one transaction. `false` (nothing
    /// changed) if the order was not open any more.
    pub async fn mark_paid(&self, p: &Payment) -> Result<bool, sqlx::Error> {
        const PAY: &str = "UPDATE orders SET status = 'paid', paid_at = $1 WHERE order_id = $2 AND status = 'open'";
        const RECEIPT: &str = "INSERT INTO receipts (order_id, settlement_id, completion_hash, completion_token,
            receipt_token, created_at) VALUES ($1, $2, $3, $4, $5, $6)";
        const LINKS: &str = "UPDATE downloads SET expires_at = $1 WHERE order_id = $2";
        write_tx!(self, tx => {
            let changed = sqlx::query(PAY).bind(p.paid_at).bind(&p.order_id).execute(&mut *tx).await?.rows_affected();
            if changed != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
            sqlx::query(RECEIPT)
                .bind(&p.order_id).bind(&p.settlement_id).bind(&p.completion_hash).bind(&p.completion_token)
                .bind(&p.receipt_token).bind(p.paid_at)
                .execute(&mut *tx).await?;
            sqlx::query(LINKS).bind(p.downloads_expire_at).bind(&p.order_id).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Records that the center has refunded `refunded_minor` of
    /// `settlement` in all (its answer to a refund); a smaller total (an
    /// older answer) changes nothing.
    pub async fn record_refunded(&self, settlement: &str, refunded_minor: i64, now: i64) -> Result<(), sqlx::Error> {
        const SQL: &str = "INSERT INTO refunds (settlement_id, refunded_minor, updated_at) VALUES ($1, $2, $3)
            ON CONFLICT (settlement_id) DO UPDATE SET refunded_minor = excluded.refunded_minor,
            updated_at = excluded.updated_at WHERE refunds.refunded_minor < excluded.refunded_minor";
        on_pool!(self, pool => {
            sqlx::query(SQL).bind(settlement).bind(refunded_minor).bind(now).execute(pool).await?;
        });
        Ok(())
    }

    /// What the center has refunded of `settlement`, as last recorded.
    pub async fn refunded(&self, settlement: &str) -> Result<i64, sqlx::Error> {
        const SQL: &str = "SELECT refunded_minor FROM refunds WHERE settlement_id = $1";
        let found: Option<i64> =
            on_pool!(self, pool => sqlx::query_scalar(SQL).bind(settlement).fetch_optional(pool).await)?;
        Ok(found.unwrap_or(0))
    }

    /// Unpaid orders whose bill expired before `before`, oldest first
    /// (by bill expiry, then order id), after `after` if given, at most
    /// `limit`.
    pub async fn unpaid_expired(
        &self,
        before: i64,
        after: Option<&(i64, String)>,
        limit: i64,
    ) -> Result<Vec<UnpaidOrder>, sqlx::Error> {
        const SQL: &str = "SELECT o.order_id, b.bill_id, b.expires_at FROM bills b
            JOIN orders o ON o.order_id = b.order_id
            WHERE b.expires_at < $1 AND o.status = 'open'
              AND (b.expires_at > $2 OR (b.expires_at = $2 AND o.order_id > $3))
            ORDER BY b.expires_at, o.order_id LIMIT $4";
        let (from_expiry, from_order) = after.map_or((i64::MIN, ""), |(e, o)| (*e, o.as_str()));
        on_pool!(self, pool => {
            let rows =
                sqlx::query(SQL).bind(before).bind(from_expiry).bind(from_order).bind(limit).fetch_all(pool).await?;
            rows.into_iter()
                .map(|row| {
                    Ok(UnpaidOrder {
                        order_id: row.try_get("order_id")?,
                        bill_id: row.try_get("bill_id")?,
                        expires_at: row.try_get("expires_at")?,
                    })
                })
                .collect()
        })
    }

    /// Deletes an order that is still unpaid, with its bill and download
    /// links, in one transaction; `false` (nothing deleted) if it was paid
    /// meanwhile or is gone.
    pub async fn purge_unpaid(&self, order_id: &str) -> Result<bool, sqlx::Error> {
        const CLAIM: &str = "UPDATE orders SET status = 'open' WHERE order_id = $1 AND status = 'open'";
        write_tx!(self, tx => {
            // Takes the order's row (its lock on PostgreSQL) while still
            // unpaid; a completion that pays it first leaves it alone.
            let open = sqlx::query(CLAIM).bind(order_id).execute(&mut *tx).await?.rows_affected();
            if open != 1 {
                tx.rollback().await?;
                return Ok(false);
            }
            for sql in [
                "DELETE FROM downloads WHERE order_id = $1",
                "DELETE FROM bills WHERE order_id = $1",
                "DELETE FROM orders WHERE order_id = $1 AND status = 'open'",
            ] {
                sqlx::query(sql).bind(order_id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    pub async fn downloads_of(&self, order_id: &str) -> Result<Vec<DownloadRow>, sqlx::Error> {
        const SQL: &str = "SELECT token, order_id, sku, expires_at FROM downloads WHERE order_id = $1 ORDER BY sku";
        on_pool!(self, pool => {
            let rows = sqlx::query(SQL).bind(order_id).fetch_all(pool).await?;
            rows.into_iter().map(|row| Ok(download_row!(row))).collect()
        })
    }

    pub async fn download(&self, token: &str) -> Result<Option<DownloadRow>, sqlx::Error> {
        const SQL: &str = "SELECT token, order_id, sku, expires_at FROM downloads WHERE token = $1";
        on_pool!(self, pool => {
            let row = sqlx::query(SQL).bind(token).fetch_optional(pool).await?;
            row.map(|row| Ok(download_row!(row))).transpose()
        })
    }

    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await)
    }
}
