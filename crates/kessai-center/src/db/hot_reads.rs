//! PostgreSQL: the reads on every purchase step's path (`read_one`) on
//! connections the center holds itself, as `fast_read` does on SQLite.
//!
//! sqlx's pool pings (a round trip) every connection given back to it, to
//! bring a connection whose query was abandoned midway back in step: each
//! read through the pool costs two round trips, one of them the ping. Here
//! a connection is taken out of its slot for the read and put back only
//! once the read ended, so a read abandoned midway (its request cancelled)
//! drops its connection instead; so does one that failed other than with
//! the database's own error (a broken socket). An empty slot connects
//! again; a connection idle a while is pinged before it is used.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::{AnyConnection, Connection};
use tokio::sync::Mutex;

use super::{Columns, DbError};

/// Connections held for these reads.
const SLOTS: usize = 6;
/// Longest a new connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection idle this long is pinged before a read.
const PING_IF_IDLE: Duration = super::PING_IF_IDLE;

type Slot = Arc<Mutex<Option<(AnyConnection, Instant)>>>;

pub(super) struct HotReads {
    url: String,
    slots: Vec<Slot>,
    /// Where the next read starts looking for a free slot.
    next: AtomicUsize,
}

impl std::fmt::Debug for HotReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HotReads").field("slots", &self.slots.len()).finish_non_exhaustive()
    }
}

impl HotReads {
    pub(super) fn new(url: &str) -> HotReads {
        HotReads {
            url: url.to_owned(),
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// The first row of `sql` with text `params`, decoded, if any.
    pub(super) async fn read_one<T>(
        &self,
        sql: &'static str,
        params: &[&str],
        decode: impl Fn(&dyn Columns) -> Result<T, DbError>,
    ) -> Result<Option<T>, DbError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let free = (0..SLOTS).find_map(|i| self.slots[(start + i) % SLOTS].clone().try_lock_owned().ok());
        let mut slot = match free {
            Some(slot) => slot,
            None => self.slots[start % SLOTS].clone().lock_owned().await,
        };
        // Out of its slot while in use: dropped, not put back, if this read
        // is abandoned or its connection fails.
        let mut conn = match slot.take() {
            Some((mut conn, used)) => {
                if used.elapsed() >= PING_IF_IDLE && conn.ping().await.is_err() {
                    self.connect().await?
                } else {
                    conn
                }
            }
            None => self.connect().await?,
        };
        let query = params.iter().fold(sqlx::query(sql), |query, p| query.bind((*p).to_owned()));
        let found = query.fetch_optional(&mut conn).await;
        if matches!(found, Ok(_) | Err(sqlx::Error::Database(_))) {
            *slot = Some((conn, Instant::now()));
        }
        found?.map(|row| decode(&row)).transpose()
    }

    async fn connect(&self) -> Result<AnyConnection, DbError> {
        match tokio::time::timeout(CONNECT_TIMEOUT, AnyConnection::connect(&self.url)).await {
            Ok(conn) => Ok(conn?),
            Err(_) => Err(DbError::Sqlx(sqlx::Error::PoolTimedOut)),
        }
    }

    /// Closes the held connections; later reads connect again.
    pub(super) async fn close(&self) {
        for slot in &self.slots {
            if let Some((conn, _)) = slot.lock().await.take() {
                let _ = conn.close().await;
            }
        }
    }
}
