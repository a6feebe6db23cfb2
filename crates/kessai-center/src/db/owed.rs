//! What the center owes cards (purchase refunds) and cards owe it (corrections).

use super::value_updates::insert_update_query;
use super::*;

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
        hold: Entries,
    ) -> Result<RefundStored, DbError> {
        let now_s = now.unix_s();
        if let Some(existing) = self.owed(&o.id).await? {
            return Ok(RefundStored::Existing(Box::new(existing)));
        }
        let existing = Stmt::new(OWED_SQL).bind(o.id.clone());
        let reserve = Stmt::new(
            "UPDATE center_settlements SET refunded_minor = refunded_minor + $1
             WHERE id = $2 AND phase = 'completed' AND refunded_minor + $1 <= $3",
        )
        .bind(to_i64(o.body.amount.amount_minor())?)
        .bind(settlement.as_str().to_owned())
        .bind(to_i64(purchase_minor)?);
        let refunded = Stmt::new("SELECT refunded_minor FROM center_settlements WHERE id = $1")
            .bind(settlement.as_str().to_owned());
        let insert = insert_owed_query(o, now)?;
        let stored = self
            .write(move |mut conn| {
                Box::pin(async move {
                    // Checked again inside the transaction: on SQLite the
                    // writer runs one write at a time, so this cannot race.
                    if let Some(owed) = conn.fetch_optional(existing, owed_row).await? {
                        return Ok(RefundStored::Existing(Box::new(owed)));
                    }
                    if conn.execute(reserve).await? != 1 {
                        let refunded_minor =
                            conn.fetch_one(refunded, |r| to_u64(r.required_int("refunded_minor")?)).await?;
                        return Ok(RefundStored::Refused { refunded_minor });
                    }
                    conn.execute(insert).await?;
                    // The refund's hold, in the same transaction as the item.
                    conn.books(&hold, now_s).await?;
                    Ok(RefundStored::Inserted)
                })
            })
            .await;
        match stored {
            // Another instance (PostgreSQL) stored the same refund meanwhile;
            // its transaction, with the reservation, was rolled back.
            Err(e) if e.is_unique_violation() => {
                let existing = self.owed(&o.id).await?.ok_or_else(|| corrupt("refund vanished"))?;
                Ok(RefundStored::Existing(Box::new(existing)))
            }
            other => other,
        }
    }

    /// What is refunded of a settlement so far.
    pub async fn settlement_refunded(&self, id: &SettlementId) -> Result<u64, DbError> {
        let row = sqlx::query("SELECT refunded_minor FROM center_settlements WHERE id = $1")
            .bind(id.as_str().to_owned())
            .fetch_one(&mut *self.read().await?)
            .await?;
        to_u64(row.try_get("refunded_minor")?)
    }

    /// Stores an owed item with no purchase behind it (a correction) and
    /// its `hold` in the books, in one transaction. `false` if it exists
    /// already; a refusal of the books (beyond the card's float) stores
    /// nothing.
    pub async fn insert_owed(
        &self,
        o: &Owed,
        now: Timestamp,
        hold: Entries,
        trail: TrailEntry,
    ) -> Result<bool, DbError> {
        let exists = Stmt::new(OWED_SQL).bind(o.id.clone());
        let insert = insert_owed_query(o, now)?;
        let now_s = now.unix_s();
        let stored = self
            .write(move |mut conn| {
                Box::pin(async move {
                    if conn.fetch_optional(exists, owed_row).await?.is_some() {
                        return Ok(false);
                    }
                    conn.books(&hold, now_s).await?;
                    conn.execute(insert).await?;
                    append_trail(&mut conn, &trail, now).await?;
                    Ok(true)
                })
            })
            .await;
        match stored {
            Err(e) if e.is_unique_violation() => Ok(false),
            other => other,
        }
    }

    pub async fn owed(&self, id: &str) -> Result<Option<Owed>, DbError> {
        let row = sqlx::query(OWED_SQL).bind(id.to_owned()).fetch_optional(&mut *self.read().await?).await?;
        row.map(|r| owed_row(&r)).transpose()
    }

    /// A card's items still owed: what it is owed (refunds, credits) before
    /// what it owes (corrections, debits), each oldest first — so a debit
    /// the card cannot cover yet never holds back a credit.
    pub async fn owed_for_card(&self, card: &CardId, limit: i64) -> Result<Vec<Owed>, DbError> {
        let rows = sqlx::query(
            "SELECT id, status, session, applied_by, record FROM center_owed
             WHERE card_id = $1 AND status = $2 ORDER BY (store IS NULL), created_at, id LIMIT $3",
        )
        .bind(card.to_string())
        .bind(OwedStatus::Owed.as_str().to_owned())
        .bind(limit.clamp(1, MAX_LIST))
        .fetch_all(&mut *self.read().await?)
        .await?;
        rows.iter().map(|r| owed_row(r)).collect()
    }

    /// Opens value update `c` to apply owed item `owed`, if no other is
    /// applying it: claim and insert in one transaction. `false` if the
    /// item is no longer owed or another update holds it.
    pub async fn claim_owed(
        &self,
        owed: &str,
        c: &ValueUpdate,
        now: Timestamp,
        hold: Entries,
    ) -> Result<bool, DbError> {
        let now_s = now.unix_s();
        let claim = Stmt::new(
            "UPDATE center_owed SET session = $1, version = version + 1, updated_at = $2
             WHERE id = $3 AND status = $4 AND session IS NULL",
        )
        .bind(c.id.as_str().to_owned())
        .bind(to_i64(now.unix_s())?)
        .bind(owed.to_owned())
        .bind(OwedStatus::Owed.as_str().to_owned());
        let insert = insert_update_query(c, now)?;
        self.write(move |mut conn| {
            Box::pin(async move {
                // The hold first: its refusal leaves nothing written.
                conn.books(&hold, now_s).await?;
                if conn.execute(claim).await? != 1 {
                    return Ok(false);
                }
                conn.execute(insert).await?;
                Ok(true)
            })
        })
        .await
    }

    /// Cancels an owed item no value update holds, voiding its hold in the
    /// same transaction. `false` if it is being applied, applied, or
    /// cancelled already.
    pub async fn cancel_owed(
        &self,
        id: &str,
        now: Timestamp,
        void: Entries,
        trail: TrailEntry,
    ) -> Result<bool, DbError> {
        let owed = Stmt::new(OWED_SQL).bind(id.to_owned());
        let done = Stmt::new(
            "UPDATE center_owed SET status = $1, version = version + 1, updated_at = $2
             WHERE id = $3 AND status = $4 AND session IS NULL",
        )
        .bind(OwedStatus::Cancelled.as_str().to_owned())
        .bind(to_i64(now.unix_s())?)
        .bind(id.to_owned())
        .bind(OwedStatus::Owed.as_str().to_owned());
        let now_s = now.unix_s();
        let id = id.to_owned();
        self.write(move |mut conn| {
            Box::pin(async move {
                match conn.fetch_optional(owed, owed_row).await? {
                    Some(o) if o.status == OwedStatus::Owed && o.session.is_none() => {}
                    _ => return Ok(false),
                }
                match conn.books(&void, now_s).await {
                    // Never held (an item stored before holds were made in
                    // its own transaction): nothing to void.
                    Err(DbError::BooksRefused { code: "pending_transfer_not_found", .. }) | Ok(()) => {}
                    Err(e) => return Err(e),
                }
                if conn.execute(done).await? != 1 {
                    return Err(DbError::Inconsistent(format!("owed item {id} changed while it was cancelled")));
                }
                append_trail(&mut conn, &trail, now).await?;
                Ok(true)
            })
        })
        .await
    }
}

impl CenterDb {
    /// Replaces a card (see [`crate::service::Center::replace_card`]): each
    /// refund moved (the old item from `owed` to `moved`, its hold voided,
    /// the new item held and stored) and the old card's value owed to the
    /// new one, all in one transaction. A moved item that changed meanwhile
    /// fails it all ([`DbError::Conflict`]).
    pub(crate) async fn replace_card(
        &self,
        old: CardId,
        moves: &[crate::owed::Move],
        replacement: Option<&(Owed, Entries)>,
        now: Timestamp,
        trail: TrailEntry,
    ) -> Result<(), DbError> {
        let now_s = now.unix_s();
        let mut steps = Vec::with_capacity(moves.len());
        for m in moves {
            let mark = Stmt::new(
                "UPDATE center_owed SET status = $1, version = version + 1, updated_at = $2
                 WHERE id = $3 AND status = $4 AND session IS NULL",
            )
            .bind(OwedStatus::Moved.as_str().to_owned())
            .bind(to_i64(now_s)?)
            .bind(m.from.clone())
            .bind(OwedStatus::Owed.as_str().to_owned());
            steps.push((mark, m.void.clone(), m.hold.clone(), insert_owed_query(&m.moved, now)?));
        }
        let replacement =
            replacement.map(|(item, hold)| Ok::<_, DbError>((hold.clone(), insert_owed_query(item, now)?)));
        let replacement = replacement.transpose()?;
        // The old card's row locked first (a redemption's write locks it
        // too): what is owed to it is counted again under the lock, so an
        // item written meanwhile (a token's redemption) is moved, or the
        // replacement refused (`Conflict`), never left behind.
        let card = super::tokens::Locked(
            Stmt::new("SELECT status FROM center_cards WHERE id = $1").bind(old.to_string()),
            Stmt::new("SELECT status FROM center_cards WHERE id = $1 FOR UPDATE").bind(old.to_string()),
        );
        let owed_now = Stmt::new("SELECT COUNT(*) AS n FROM center_owed WHERE card_id = $1 AND status = $2")
            .bind(old.to_string())
            .bind(OwedStatus::Owed.as_str().to_owned());
        let moving = i64::try_from(moves.len()).map_err(|_| corrupt("too many items"))?;
        self.write(move |mut conn| {
            Box::pin(async move {
                conn.fetch_optional(super::tokens::Locked::of(&conn, &card), |row| row.required_text("status")).await?;
                if conn.fetch_optional(owed_now, |row| row.required_int("n")).await? != Some(moving) {
                    return Err(DbError::Conflict);
                }
                for (mark, void, hold, insert) in steps {
                    if conn.execute(mark).await? != 1 {
                        return Err(DbError::Conflict);
                    }
                    conn.books(&void, now_s).await?;
                    conn.books(&hold, now_s).await?;
                    conn.execute(insert).await?;
                }
                if let Some((hold, insert)) = replacement {
                    conn.books(&hold, now_s).await?;
                    conn.execute(insert).await?;
                }
                append_trail(&mut conn, &trail, now).await?;
                Ok(())
            })
        })
        .await
    }
}

pub(super) fn insert_owed_query(o: &Owed, now: Timestamp) -> Result<Stmt, DbError> {
    let (store, reference) = crate::owed::store_and_reference(&o.body.kind);
    Ok(Stmt::new(
        "INSERT INTO center_owed (id, card_id, status, session, applied_by, store, reference, record, version,
         created_at, updated_at) VALUES ($1, $2, $3, NULL, NULL, $4, $5, $6, 1, $7, $7)",
    )
    .bind(o.id.clone())
    .bind(o.body.card_id.to_string())
    .bind(OwedStatus::Owed.as_str().to_owned())
    .bind(store)
    .bind(reference)
    .bind(serde_json::to_string(&o.body).map_err(corrupt)?)
    .bind(to_i64(now.unix_s())?))
}

const OWED_SQL: &str = "SELECT id, status, session, applied_by, record FROM center_owed WHERE id = $1";

fn owed_row(r: &dyn Columns) -> Result<Owed, DbError> {
    let body: OwedBody = serde_json::from_str(&r.required_text("record")?).map_err(corrupt)?;
    let parse_update = |v: Option<String>| v.map(|v| UpdateId::parse(&v)).transpose().map_err(corrupt);
    Ok(Owed {
        id: r.required_text("id")?,
        status: OwedStatus::parse(&r.required_text("status")?).ok_or_else(|| corrupt("owed status"))?,
        session: parse_update(r.text("session")?)?,
        applied_by: parse_update(r.text("applied_by")?)?,
        body,
    })
}
