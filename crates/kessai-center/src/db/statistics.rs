//! What the statistics report (`crate::statistics`) reads: counts and sums
//! of the center's own records by UTC day, store and kind, all from one
//! snapshot of the database.

use super::*;

/// Counts and sums of one kind of record on one UTC day (days since
/// 1970-01-01), for one store where the record has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayTally {
    pub day: i64,
    pub store: Option<String>,
    /// What was counted: a payable item's kind (`purchase`,
    /// `prepaid_payment`, `refund`, `prepaid_refund`, `refund_cancelled`,
    /// `payout_returned`), `payout`, `fee`, `funding:<method>`,
    /// `update:<purpose>`, `token:issued` or `token:redeemed`.
    pub what: String,
    pub count: i64,
    /// Minor units; a payable item's sign as recorded (negative: taken
    /// off the store).
    pub amount_minor: i64,
}

/// Payable items: each movement of a store's payable, when it was booked.
const ITEMS: &str = "SELECT at / 86400 AS day, store, kind AS what, CAST(COUNT(*) AS BIGINT) AS n,
    CAST(SUM(amount_minor) AS BIGINT) AS amount FROM center_payable_items
    WHERE currency = $1 AND at >= $2 AND at < $3 GROUP BY at / 86400, store, kind";

/// Payouts made, and the fees they kept, when the run made them.
const PAYOUTS: &str = "SELECT created_at / 86400 AS day, store, CAST(COUNT(*) AS BIGINT) AS n,
    CAST(SUM(amount_minor) AS BIGINT) AS amount, CAST(SUM(fees_minor) AS BIGINT) AS fees FROM center_payouts
    WHERE currency = $1 AND created_at >= $2 AND created_at < $3 GROUP BY created_at / 86400, store";

/// Fundings whose value is on a prepaid card, by method, when it was put
/// there (a credit card's capture later does not move it).
const FUNDINGS: &str = "SELECT issued_at / 86400 AS day, method AS what, CAST(COUNT(*) AS BIGINT) AS n,
    CAST(SUM(received_minor) AS BIGINT) AS amount FROM center_fundings
    WHERE currency = $1 AND status IN ('issued', 'captured') AND issued_at >= $2 AND issued_at < $3
    GROUP BY issued_at / 86400, method";

/// Value updates the card confirmed: charges from a credit card, value
/// given back to one, moved from a prepaid card.
const UPDATES: &str = "SELECT u.updated_at / 86400 AS day, u.purpose AS what, CAST(COUNT(*) AS BIGINT) AS n,
    CAST(SUM(u.amount_minor) AS BIGINT) AS amount FROM center_value_updates u
    JOIN center_cards c ON c.id = u.card_id
    WHERE c.currency = $1 AND u.phase = 'completed' AND u.purpose IN ('charge', 'refund_to_credit_card', 'from_prepaid')
    AND u.updated_at >= $2 AND u.updated_at < $3 GROUP BY u.updated_at / 86400, u.purpose";

/// Bank deposit tokens (seed 002): issued when the deposit was taken, and
/// redeemed when the provider honoured them.
const TOKENS_ISSUED: &str = "SELECT issued_at / 86400 AS day, CAST(COUNT(*) AS BIGINT) AS n,
    CAST(SUM(amount_minor) AS BIGINT) AS amount FROM center_tokens
    WHERE currency = $1 AND issued_at >= $2 AND issued_at < $3 GROUP BY issued_at / 86400";
const TOKENS_REDEEMED: &str = "SELECT redeemed_at / 86400 AS day, CAST(COUNT(*) AS BIGINT) AS n,
    CAST(SUM(amount_minor) AS BIGINT) AS amount FROM center_tokens
    WHERE currency = $1 AND redeemed_at >= $2 AND redeemed_at < $3 GROUP BY redeemed_at / 86400";

impl CenterDb {
    /// Everything the statistics count in `currency` from day `from` up to
    /// (not including) day `to`, read in one transaction (PostgreSQL:
    /// repeatable read), so the figures agree with each other.
    pub async fn day_tallies(&self, currency: Currency, from: i64, to: i64) -> Result<Vec<DayTally>, DbError> {
        let (start, end) = (from.saturating_mul(86_400), to.saturating_mul(86_400));
        let mut conn = self.read().await?;
        let begin = if self.pg.is_some() { "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" } else { "BEGIN" };
        let mut tx = Connection::begin_with(&mut *conn, begin).await?;
        let code = currency.code().to_owned();
        let mut tallies = Vec::new();
        let tally = |r: &sqlx::any::AnyRow, store: Option<String>, what: String, amount: &str| -> Result<_, DbError> {
            Ok(DayTally {
                day: r.required_int("day")?,
                store,
                what,
                count: r.required_int("n")?,
                amount_minor: r.required_int(amount)?,
            })
        };
        for r in sqlx::query(ITEMS).bind(code.clone()).bind(start).bind(end).fetch_all(&mut *tx).await? {
            tallies.push(tally(&r, Some(r.required_text("store")?), r.required_text("what")?, "amount")?);
        }
        for r in sqlx::query(PAYOUTS).bind(code.clone()).bind(start).bind(end).fetch_all(&mut *tx).await? {
            let store = r.required_text("store")?;
            tallies.push(tally(&r, Some(store.clone()), "payout".into(), "amount")?);
            tallies.push(tally(&r, Some(store), "fee".into(), "fees")?);
        }
        for r in sqlx::query(FUNDINGS).bind(code.clone()).bind(start).bind(end).fetch_all(&mut *tx).await? {
            tallies.push(tally(&r, None, format!("funding:{}", r.required_text("what")?), "amount")?);
        }
        for r in sqlx::query(UPDATES).bind(code.clone()).bind(start).bind(end).fetch_all(&mut *tx).await? {
            tallies.push(tally(&r, None, format!("update:{}", r.required_text("what")?), "amount")?);
        }
        for (sql, what) in [(TOKENS_ISSUED, "token:issued"), (TOKENS_REDEEMED, "token:redeemed")] {
            for r in sqlx::query(sql).bind(code.clone()).bind(start).bind(end).fetch_all(&mut *tx).await? {
                tallies.push(tally(&r, None, what.into(), "amount")?);
            }
        }
        tx.rollback().await?;
        Ok(tallies)
    }
}
