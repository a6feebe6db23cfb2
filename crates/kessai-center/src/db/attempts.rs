//! Charge attempts, for the velocity limits of `POST /v1/charges`: one row
//! per attempt, by card and by a keyed fingerprint of the payment card
//! number (`SecurityServer::pan_fingerprint`), purged after a day.

use super::*;

impl CenterDb {
    /// Records an attempt at `now` and returns how many attempts the card
    /// and the payment card number each made since `since`, this one
    /// included, in one transaction.
    pub async fn record_charge_attempt(
        &self,
        card: &CardId,
        pan_fingerprint: &str,
        now: Timestamp,
        since: Timestamp,
    ) -> Result<(u64, u64), DbError> {
        let insert = Stmt::new("INSERT INTO center_charge_attempts (card_id, pan_fingerprint, at) VALUES ($1, $2, $3)")
            .bind(card.to_string())
            .bind(pan_fingerprint.to_owned())
            .bind(to_i64(now.unix_s())?);
        let by_card = Stmt::new("SELECT COUNT(*) AS n FROM center_charge_attempts WHERE card_id = $1 AND at >= $2")
            .bind(card.to_string())
            .bind(to_i64(since.unix_s())?);
        let by_pan =
            Stmt::new("SELECT COUNT(*) AS n FROM center_charge_attempts WHERE pan_fingerprint = $1 AND at >= $2")
                .bind(pan_fingerprint.to_owned())
                .bind(to_i64(since.unix_s())?);
        self.write(move |mut conn| {
            Box::pin(async move {
                conn.execute(insert).await?;
                let card = conn.fetch_one(by_card, |r| to_u64(r.required_int("n")?)).await?;
                let pan = conn.fetch_one(by_pan, |r| to_u64(r.required_int("n")?)).await?;
                Ok((card, pan))
            })
        })
        .await
    }

    /// Deletes the attempts made before `before`; returns how many. (Few:
    /// run every sweep, each pass deletes what one sweep interval added.)
    pub async fn purge_charge_attempts(&self, before: Timestamp) -> Result<u64, DbError> {
        let purge = Stmt::new("DELETE FROM center_charge_attempts WHERE at < $1").bind(to_i64(before.unix_s())?);
        self.execute(purge).await
    }
}
