//! Card logs as collected, and the differences the examination of them
//! against the books found (`crate::audit`).

use super::*;
use crate::audit::{Difference, DifferenceRow};
use crate::console::Actor;
use crate::statement::LogEntry;

/// A log record as collected from a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collected {
    pub card_id: CardId,
    pub entry: LogEntry,
}

/// The fingerprint of a record's content: the same record read again is
/// the same row; another story for its counter is another.
fn digest(e: &LogEntry) -> String {
    let text = format!(
        "{}\n{}\n{}\n{}\n{}\n{}\n{}",
        e.kind, e.transaction_id, e.amount_minor, e.counter, e.balance_after_minor, e.counterpart, e.time_unix_s
    );
    kessai_core::digest::Sha256Digest::of(text.as_bytes()).to_string()
}

/// The statements to store `entries` of `card`'s log, in a write's transaction.
/// Keeps one record of a card's log, once.
pub(super) const CARD_LOG_SQL: &str = "INSERT INTO center_card_log (card_id, counter, digest, kind, transaction_id, \
     amount_minor, counterpart, time_unix_s, balance_after_minor, collected_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (card_id, counter, digest) DO NOTHING";

pub(super) fn collect_statements(card: &CardId, entries: &[LogEntry], now: Timestamp) -> Result<Vec<Stmt>, DbError> {
    entries
        .iter()
        .map(|e| {
            Ok(Stmt::new(CARD_LOG_SQL)
                .bind(card.to_string())
                .bind(i64::from(e.counter))
                .bind(digest(e))
                .bind(e.kind.as_str().to_owned())
                .bind(e.transaction_id.clone())
                .bind(to_i64(e.amount_minor)?)
                .bind(e.counterpart.clone())
                .bind(to_i64(e.time_unix_s)?)
                .bind(to_i64(e.balance_after_minor)?)
                .bind(to_i64(now.unix_s())?))
        })
        .collect()
}

impl CenterDb {
    /// The cards whose logs were collected.
    pub async fn collected_cards(&self) -> Result<Vec<CardId>, DbError> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT DISTINCT card_id FROM center_card_log ORDER BY card_id")
            .fetch_all(&mut *self.read().await?)
            .await?;
        ids.iter().map(|id| CardId::parse(id).map_err(corrupt)).collect()
    }

    /// A card's collected log, oldest first.
    pub async fn collected_log(&self, card: &CardId) -> Result<Vec<LogEntry>, DbError> {
        let rows = sqlx::query(
            "SELECT kind, transaction_id, amount_minor, counter, balance_after_minor, counterpart, time_unix_s
             FROM center_card_log WHERE card_id = $1 ORDER BY counter, digest",
        )
        .bind(card.to_string())
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LogEntry {
                    kind: {
                        let kind: String = r.try_get("kind")?;
                        kessai_api::LogKind::parse(&kind)
                            .ok_or_else(|| DbError::Corrupt(format!("log kind {kind:?}")))?
                    },
                    transaction_id: r.try_get("transaction_id")?,
                    amount_minor: to_u64(r.try_get("amount_minor")?)?,
                    counter: u32::try_from(r.try_get::<i64, _>("counter")?).map_err(corrupt)?,
                    balance_after_minor: to_u64(r.try_get("balance_after_minor")?)?,
                    counterpart: r.try_get("counterpart")?,
                    time_unix_s: to_u64(r.try_get("time_unix_s")?)?,
                })
            })
            .collect()
    }

    /// Every settlement and value update of a card (what the books say the
    /// card did).
    pub async fn card_history(&self, card: &CardId) -> Result<(Vec<Settlement>, Vec<ValueUpdate>), DbError> {
        let mut conn = self.read().await?;
        let settlements = sqlx::query_scalar::<_, String>("SELECT record FROM center_settlements WHERE card_id = $1")
            .bind(card.to_string())
            .fetch_all(&mut *conn)
            .await?;
        let updates = sqlx::query_scalar::<_, String>("SELECT record FROM center_value_updates WHERE card_id = $1")
            .bind(card.to_string())
            .fetch_all(&mut *conn)
            .await?;
        let settlements: Result<Vec<Settlement>, DbError> =
            settlements.iter().map(|r| serde_json::from_str(r).map_err(corrupt)).collect();
        let updates: Result<Vec<ValueUpdate>, DbError> =
            updates.iter().map(|r| serde_json::from_str(r).map_err(corrupt)).collect();
        Ok((settlements?, updates?))
    }

    /// Records differences found; one found before (open or resolved) is
    /// not recorded again. Returns how many are new.
    pub async fn record_differences(&self, found: &[Difference], now: Timestamp) -> Result<u64, DbError> {
        let mut statements = Vec::with_capacity(found.len());
        for d in found {
            statements.push(
                Stmt::new(
                    "INSERT INTO center_audit_differences (id, card_id, kind, counter, transaction_id, detail,
                     found_at, status) VALUES ($1, $2, $3, $4, $5, $6, $7, 'open')
                     ON CONFLICT (card_id, kind, counter, transaction_id) DO NOTHING",
                )
                .bind(d.id())
                .bind(d.card_id.to_string())
                .bind(d.kind.as_str().to_owned())
                .bind(i64::from(d.counter))
                .bind(d.transaction_id.clone())
                .bind(d.detail.clone())
                .bind(to_i64(now.unix_s())?),
            );
        }
        self.write(move |mut conn| {
            Box::pin(async move {
                let mut added = 0;
                for statement in statements {
                    added += conn.execute(statement).await?;
                }
                Ok(added)
            })
        })
        .await
    }

    /// Differences, oldest first: the open ones, or all.
    pub async fn differences(&self, open_only: bool, limit: i64) -> Result<Vec<DifferenceRow>, DbError> {
        let sql = if open_only {
            "SELECT id, card_id, kind, counter, transaction_id, detail, found_at, status, resolved_by, note
             FROM center_audit_differences WHERE status = 'open' ORDER BY found_at, id LIMIT $1"
        } else {
            "SELECT id, card_id, kind, counter, transaction_id, detail, found_at, status, resolved_by, note
             FROM center_audit_differences ORDER BY found_at, id LIMIT $1"
        };
        let rows = sqlx::query(sql).bind(limit.clamp(1, MAX_LIST)).fetch_all(&mut *self.read().await?).await?;
        rows.iter()
            .map(|r| {
                Ok(DifferenceRow {
                    id: r.try_get("id")?,
                    card_id: r.try_get("card_id")?,
                    kind: r.try_get("kind")?,
                    counter: to_u64(r.try_get("counter")?)?,
                    transaction_id: r.try_get("transaction_id")?,
                    detail: r.try_get("detail")?,
                    found_at: to_u64(r.try_get("found_at")?)?,
                    status: r.try_get("status")?,
                    resolved_by: r.try_get("resolved_by")?,
                    note: r.try_get("note")?,
                })
            })
            .collect()
    }

    /// Operator `by` resolves an open difference, with its trail row in the
    /// same transaction; `false` if there is no open one with that id.
    pub async fn resolve_difference(&self, id: &str, by: &Actor, note: &str, now: Timestamp) -> Result<bool, DbError> {
        let trail = by.did(
            "difference_resolved",
            id,
            serde_json::json!({ "status": "open" }),
            serde_json::json!({ "status": "resolved", "note": note }),
        );
        let resolve = Stmt::new(
            "UPDATE center_audit_differences SET status = 'resolved', resolved_by = $1, resolved_at = $2, note = $3
             WHERE id = $4 AND status = 'open'",
        )
        .bind(by.name.clone())
        .bind(to_i64(now.unix_s())?)
        .bind(note.to_owned())
        .bind(id.to_owned());
        self.write(move |mut conn| {
            Box::pin(async move {
                if conn.execute(resolve).await? != 1 {
                    return Ok(false);
                }
                append_trail(&mut conn, &trail, now).await?;
                Ok(true)
            })
        })
        .await
    }
}
