//! Idempotency-Key answers.

use super::*;

/// An answer to remember for an Idempotency-Key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedResponse {
    pub key: String,
    /// The request's fingerprint (SHA-256, hex).
    pub hash: String,
    pub status: u16,
    pub body: String,
    /// Set once a write that stored this answer committed.
    pub stored: Stored,
}

/// Whether an answer was stored by a committed write: shared by the HTTP
/// layer, which then need not store it again, and the write that stores it
/// with its step. (Equal to any other: it is not part of the answer.)
#[derive(Debug, Clone, Default)]
pub struct Stored(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl PartialEq for Stored {
    fn eq(&self, _: &Stored) -> bool {
        true
    }
}

impl Eq for Stored {}

impl Stored {
    pub(crate) fn mark(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The insert of `response` (if any) and the flag to mark once the write
/// holding it committed.
pub(super) fn saving(
    response: Option<SavedResponse>,
    now: Timestamp,
) -> Result<(Option<Stmt>, Option<Stored>), DbError> {
    let stored = response.as_ref().map(|r| r.stored.clone());
    Ok((response.map(|r| r.statement(now)).transpose()?, stored))
}

/// Stores an answer to an Idempotency-Key.
pub(super) const SAVE_SQL: &str = "INSERT INTO center_idempotency (key, request_hash, status, body, created_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO NOTHING";

impl SavedResponse {
    /// The insert; the first answer stored for a key wins.
    pub(super) fn statement(self, now: Timestamp) -> Result<Stmt, DbError> {
        Ok(Stmt::new(SAVE_SQL)
            .bind(self.key)
            .bind(self.hash)
            .bind(i64::from(self.status))
            .bind(self.body)
            .bind(to_i64(now.unix_s())?))
    }
}

impl CenterDb {
    /// [`CenterDb::idempotent_response`] and [`CenterDb::settlement`] in
    /// one statement.
    #[allow(clippy::type_complexity)]
    pub async fn idempotent_response_and_settlement(
        &self,
        key: &str,
        id: &SettlementId,
    ) -> Result<(Option<(String, u16, String)>, Option<(Settlement, i64)>), DbError> {
        let decode = |row: &dyn Columns| {
            Ok((present(row, "request_hash", response_row)?, present(row, "record", settlement_row)?))
        };
        self.read_one(RESPONSE_AND_SETTLEMENT_SQL, &[key, id.as_str()], decode)
            .await?
            .ok_or_else(|| corrupt("a LEFT JOIN from one row answered none"))
    }

    /// The stored answer for an Idempotency-Key, if any: `(request hash,
    /// status, body)`.
    pub async fn idempotent_response(&self, key: &str) -> Result<Option<(String, u16, String)>, DbError> {
        self.read_one(RESPONSE_SQL, &[key], response_row).await
    }

    /// The first row of `sql` (text parameters `$1`, `$2`, … in order),
    /// decoded: on SQLite on the calling thread (`fast_read`), else through
    /// sqlx.
    pub(super) async fn read_one<T>(
        &self,
        sql: &'static str,
        params: &[&str],
        decode: impl Fn(&dyn Columns) -> Result<T, DbError>,
    ) -> Result<Option<T>, DbError> {
        if let Some(fast) = &self.fast {
            return fast.with(|conn| {
                let mut statement = conn.prepare_cached(sql)?;
                statement.query_row(rusqlite::params_from_iter(params), |row| Ok(decode(row))).optional()?.transpose()
            });
        }
        if let Some(hot) = &self.hot {
            return hot.read_one(sql, params, decode).await;
        }
        let query = params.iter().fold(sqlx::query(sql), |query, p| query.bind((*p).to_owned()));
        query.fetch_optional(&mut *self.read().await?).await?.map(|row| decode(&row)).transpose()
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
        let saved = SavedResponse {
            key: key.to_owned(),
            hash: hash.to_owned(),
            status,
            body: body.to_owned(),
            stored: Stored::default(),
        };
        self.execute(saved.statement(now)?).await?;
        Ok(())
    }

    /// Deletes at most `limit` stored answers created before `before`;
    /// returns how many. Any instance may run it at any time.
    pub async fn purge_answers(&self, before: Timestamp, limit: i64) -> Result<u64, DbError> {
        let purge = Stmt::new(
            "DELETE FROM center_idempotency WHERE key IN
             (SELECT key FROM center_idempotency WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
        )
        .bind(to_i64(before.unix_s())?)
        .bind(limit.max(1));
        self.execute(purge).await
    }
}
