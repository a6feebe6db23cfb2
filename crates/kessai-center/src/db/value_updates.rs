//! Value updates (charges, decreases, owed items applied), their daily
//! charge limit, and the create claims.

use super::owed::insert_owed_query;
use super::*;
use crate::owed::Owed;

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
    /// A charge ended voided: its amount no longer counts toward the
    /// day's limit (its reservation, if it made one, goes back).
    ChargeReleased(Reservation<'a>),
    /// A charge the card applied whose funding was refused: the item that
    /// takes its value back is owed from now on, and the day's reservation
    /// (if any) goes back.
    Unfunded {
        owed: &'a Owed,
        reservation: Reservation<'a>,
    },
}

/// What a charge reserved of its card's daily limit: the row keyed by the
/// charge, or (a charge stored before those rows existed) the day it
/// recorded, given back by amount.
#[derive(Debug, Clone, Copy)]
pub struct Reservation<'a> {
    pub charge: &'a str,
    pub legacy: Option<(&'a CardId, u64, u64)>,
}

impl Reservation<'_> {
    /// What gives it back: the legacy day's amount, which must be there
    /// (one row changed), and the keyed reservation, which a charge refused
    /// before it reserved never made (each finds nothing a second time).
    fn release(&self) -> Result<(Vec<Stmt>, Vec<Stmt>), DbError> {
        let legacy = self.legacy.map(|(card, day, amount_minor)| release_daily_query(card, day, amount_minor));
        Ok((legacy.into_iter().collect::<Result<_, _>>()?, release_reservation_queries(self.charge)))
    }
}

/// Charges (value updates), stored like settlements: the record as JSON,
/// updated only by compare-and-set on its version. No payment card data is
/// ever in a record (see [`crate::authorizer::PaymentCard`]).
impl CenterDb {
    pub async fn insert_update(&self, c: &ValueUpdate, now: Timestamp) -> Result<(), DbError> {
        self.execute(insert_update_query(c, now)?).await?;
        Ok(())
    }

    /// A card's value updates, newest first, at most `limit`.
    pub async fn value_updates_of(&self, card: &CardId, limit: i64) -> Result<Vec<ValueUpdate>, DbError> {
        let rows = sqlx::query_scalar::<_, String>(
            "SELECT record FROM center_value_updates WHERE card_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
        )
        .bind(card.to_string())
        .bind(limit.clamp(1, MAX_LIST))
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(|r| serde_json::from_str(r).map_err(corrupt)).collect()
    }

    /// A charge and the version to name when updating it.
    pub async fn value_update(&self, id: &str) -> Result<Option<(ValueUpdate, i64)>, DbError> {
        let row = sqlx::query("SELECT record, version FROM center_value_updates WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(&mut *self.read().await?)
            .await?;
        row.map(|r| {
            let record: String = r.try_get("record")?;
            let c: ValueUpdate = serde_json::from_str(&record).map_err(corrupt)?;
            Ok((c, r.try_get("version")?))
        })
        .transpose()
    }

    /// Writes `c` if the row is still at `version`.
    pub async fn store_update(&self, c: &ValueUpdate, version: i64, now: Timestamp) -> Result<(), DbError> {
        self.store_update_with(c, version, now, Alongside::Nothing, Entries::none(), None).await
    }

    /// Writes `c` if the row is still at `version`, and in the same
    /// transaction the step's books `entries` and what its ending means for
    /// its owed item, the charge a decrease went back to, or the day's
    /// charge limit.
    pub async fn store_update_with(
        &self,
        c: &ValueUpdate,
        version: i64,
        now: Timestamp,
        alongside: Alongside<'_>,
        entries: Entries,
        response: Option<SavedResponse>,
    ) -> Result<(), DbError> {
        let record = update_record(c)?;
        let (save, stored) = idempotency::saving(response, now)?;
        let now_s = now.unix_s();
        let now = to_i64(now_s)?;
        let check = Stmt::new("SELECT version FROM center_value_updates WHERE id = $1").bind(c.id.as_str().to_owned());
        let update = Stmt::new(
            "UPDATE center_value_updates SET phase = $1, record = $2, version = version + 1, updated_at = $3
             WHERE id = $4 AND version = $5",
        )
        .bind(c.phase().as_str().to_owned())
        .bind(record)
        .bind(now)
        .bind(c.id.as_str().to_owned())
        .bind(version);
        let session = c.id.as_str().to_owned();
        // The card's log records the step read, kept with it (a record read
        // again adds nothing).
        let collected = super::audit::collect_statements(&c.card_id, &c.collected, Timestamp::from_unix_s(now_s))?;
        let mut tidy = Vec::new();
        let also: Vec<Stmt> = match alongside {
            Alongside::Nothing => Vec::new(),
            Alongside::OwedApplied(owed) => vec![
                Stmt::new(
                    "UPDATE center_owed SET status = $1, applied_by = $2, session = NULL, version = version + 1,
                     updated_at = $3 WHERE id = $4 AND session = $2",
                )
                .bind(OwedStatus::Applied.as_str().to_owned())
                .bind(session)
                .bind(now)
                .bind(owed.to_owned()),
            ],
            Alongside::OwedReleased(owed) => vec![
                Stmt::new(
                    "UPDATE center_owed SET session = NULL, version = version + 1, updated_at = $1
                     WHERE id = $2 AND session = $3",
                )
                .bind(now)
                .bind(owed.to_owned())
                .bind(session),
            ],
            Alongside::ChargeReleased(reservation) => {
                let (exact, keyed) = reservation.release()?;
                tidy = keyed;
                exact
            }
            Alongside::Unfunded { owed, reservation } => {
                let (exact, keyed) = reservation.release()?;
                tidy = keyed;
                let mut statements = vec![insert_owed_query(owed, Timestamp::from_unix_s(now_s))?];
                statements.extend(exact);
                statements
            }
            Alongside::DecreaseReleased { charge_id, amount_minor } => vec![
                Stmt::new(
                    "UPDATE center_value_updates SET decreased_minor = decreased_minor - $1 WHERE id = $2
                     AND decreased_minor >= $1",
                )
                .bind(to_i64(amount_minor)?)
                .bind(charge_id.to_owned()),
            ],
        };
        let what = c.id.to_string();
        tidy.extend(collected);
        let step = StepWrite {
            check,
            version,
            entries,
            now_s,
            update,
            also,
            tidy,
            save,
            guard: None,
            choice: None,
            what,
            trail: None,
        };
        self.write(move |mut conn| Box::pin(async move { step.run(&mut conn).await })).await?;
        stored.iter().for_each(Stored::mark);
        Ok(())
    }

    /// Stores a decrease (a value update going back to the credit card of
    /// charge `parent`), reserving its amount against what that charge put
    /// on the card, in one transaction: the decreases of a charge never sum
    /// past it. `Ok(Err(already))` when this one would.
    pub async fn insert_decrease(
        &self,
        c: &ValueUpdate,
        parent: &str,
        parent_amount_minor: u64,
        now: Timestamp,
    ) -> Result<Result<(), u64>, DbError> {
        let reserve = Stmt::new(
            "UPDATE center_value_updates SET decreased_minor = decreased_minor + $1
             WHERE id = $2 AND phase = $3 AND decreased_minor + $1 <= $4",
        )
        .bind(to_i64(c.amount.amount_minor())?)
        .bind(parent.to_owned())
        .bind(UpdatePhase::Completed.as_str().to_owned())
        .bind(to_i64(parent_amount_minor)?);
        let read = Stmt::new("SELECT decreased_minor FROM center_value_updates WHERE id = $1").bind(parent.to_owned());
        let insert = insert_update_query(c, now)?;
        self.write(move |mut conn| {
            Box::pin(async move {
                if conn.execute(reserve).await? != 1 {
                    return Ok(Err(conn.fetch_one(read, |r| to_u64(r.required_int("decreased_minor")?)).await?));
                }
                conn.execute(insert).await?;
                Ok(Ok(()))
            })
        })
        .await
    }

    /// Reserves `amount` of card `card`'s charges on `day` for charge
    /// `charge`, if that stays within `limit`, in one transaction (so
    /// concurrent charges cannot pass it together). A charge reserves once:
    /// asked again, it is answered `Ok(Ok(()))` and nothing more is taken.
    /// `Ok(Err(charged))` when it would pass the limit; then nothing is kept.
    pub async fn reserve_charge(
        &self,
        charge: &str,
        card: &CardId,
        day: u64,
        amount_minor: u64,
        limit_minor: u64,
    ) -> Result<Result<(), u64>, DbError> {
        let (card, day, amount, limit) = (card.to_string(), to_i64(day)?, to_i64(amount_minor)?, to_i64(limit_minor)?);
        let keyed = Stmt::new(
            "INSERT INTO center_charge_reservations (charge_id, card_id, day, amount_minor) VALUES ($1, $2, $3, $4)
             ON CONFLICT (charge_id) DO NOTHING",
        )
        .bind(charge.to_owned())
        .bind(card.clone())
        .bind(day)
        .bind(amount);
        let counted = Stmt::new(
            "INSERT INTO center_charge_days (card_id, day, charged_minor) SELECT $1, $2, $3 WHERE $3 <= $4
             ON CONFLICT (card_id, day) DO UPDATE SET charged_minor = center_charge_days.charged_minor + $3
             WHERE center_charge_days.charged_minor + $3 <= $4",
        )
        .bind(card.clone())
        .bind(day)
        .bind(amount)
        .bind(limit);
        let unkeyed = Stmt::new("DELETE FROM center_charge_reservations WHERE charge_id = $1").bind(charge.to_owned());
        let read = Stmt::new("SELECT charged_minor FROM center_charge_days WHERE card_id = $1 AND day = $2")
            .bind(card)
            .bind(day);
        self.write(move |mut conn| {
            Box::pin(async move {
                if conn.execute(keyed).await? == 0 || conn.execute(counted).await? == 1 {
                    return Ok(Ok(()));
                }
                // Over the limit: the key goes too, in this transaction.
                conn.execute(unkeyed).await?;
                let charged = conn.fetch_optional(read, |r| to_u64(r.required_int("charged_minor")?)).await?;
                Ok(Err(charged.unwrap_or(0)))
            })
        })
        .await
    }

    /// Gives back what charge `charge` reserved of its day's limit, if it
    /// still holds a reservation.
    pub async fn release_charge(&self, charge: &str) -> Result<(), DbError> {
        let statements = release_reservation_queries(charge);
        self.write(move |mut conn| {
            Box::pin(async move {
                for statement in statements {
                    conn.execute(statement).await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Settlements (`center_settlements`) or value updates
    /// (`center_value_updates`) opened at or before `before` and still before
    /// their sealed command, oldest first, at most `limit`.
    pub async fn abandoned(&self, value_updates: bool, before: Timestamp, limit: i64) -> Result<Vec<String>, DbError> {
        let sql = if value_updates {
            "SELECT id FROM center_value_updates WHERE phase IN ('authenticating', 'reading_balance')
             AND created_at <= $1 ORDER BY created_at, id LIMIT $2"
        } else {
            "SELECT id FROM center_settlements WHERE phase IN ('authenticating', 'reading_balance', 'paying_by_token')
             AND created_at <= $1 ORDER BY created_at, id LIMIT $2"
        };
        let rows = sqlx::query(sql)
            .bind(to_i64(before.unix_s())?)
            .bind(limit.clamp(1, MAX_LIST))
            .fetch_all(&mut *self.read().await?)
            .await?;
        rows.iter().map(|r| Ok(r.try_get::<String, _>("id")?)).collect()
    }
}

pub(super) fn insert_update_query(c: &ValueUpdate, now: Timestamp) -> Result<Stmt, DbError> {
    let record = update_record(c)?;
    Ok(Stmt::new(
        "INSERT INTO center_value_updates (id, card_id, phase, amount_minor, record, version, created_at, updated_at,
         purpose) VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8)",
    )
    .bind(c.id.as_str().to_owned())
    .bind(c.card_id.to_string())
    .bind(c.phase().as_str().to_owned())
    .bind(to_i64(c.amount.amount_minor())?)
    .bind(record)
    .bind(to_i64(c.created_at.unix_s())?)
    .bind(to_i64(now.unix_s())?)
    .bind(c.purpose.name().to_owned()))
}

/// Gives back charge `charge`'s reservation: its day's count less its
/// amount, then the reservation itself (so a second release finds none).
fn release_reservation_queries(charge: &str) -> Vec<Stmt> {
    vec![
        Stmt::new(
            "UPDATE center_charge_days SET charged_minor = charged_minor - r.amount_minor
             FROM center_charge_reservations r WHERE r.charge_id = $1 AND center_charge_days.card_id = r.card_id
             AND center_charge_days.day = r.day AND center_charge_days.charged_minor >= r.amount_minor",
        )
        .bind(charge.to_owned()),
        Stmt::new("DELETE FROM center_charge_reservations WHERE charge_id = $1").bind(charge.to_owned()),
    ]
}

/// Gives back `amount_minor` of card `card`'s charges on `day` (a charge
/// stored before reservations were keyed by charge).
fn release_daily_query(card: &CardId, day: u64, amount_minor: u64) -> Result<Stmt, DbError> {
    Ok(Stmt::new(
        "UPDATE center_charge_days SET charged_minor = charged_minor - $1
         WHERE card_id = $2 AND day = $3 AND charged_minor >= $1",
    )
    .bind(to_i64(amount_minor)?)
    .bind(card.to_string())
    .bind(to_i64(day)?))
}
