//! PostgreSQL: the reads on every purchase step's path (`read_one`) on
//! connections the center holds itself, as `fast_read` does on SQLite.
//!
//! sqlx's pool pings (a round trip) every connection given back to it, to
//! bring a connection whose query was abandoned midway back in step: each
//! read through the pool costs two round trips, one of them the ping. Here
//! a connection is taken out of its slot for the read and put back only
//! once the read ended, so a read abandoned midway (its request cancelled)
//! drops its connection instead; so does one whose connection failed (a
//! broken socket, the server ending the session), and such a read is made
//! again, once, on a new connection. An empty slot connects
//! again; a connection idle a while is pinged before it is used, one half
//! an hour old is made again. A read waits at most `ACQUIRE_TIMEOUT_MS` for
//! its slot and connection, as for the pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sqlx::{AnyConnection, Connection};
use tokio::sync::Mutex;

use super::{Columns, DbError};

/// Connections held for these reads.
const SLOTS: usize = 6;
/// Longest a read waits for a slot and, if it must, a new connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(super::ACQUIRE_TIMEOUT_MS);
/// A connection idle this long is pinged before a read.
const PING_IF_IDLE: Duration = super::PING_IF_IDLE;
/// A connection this old is closed and made again (as sqlx's pool does), so
/// that a name moved to another server (a promoted standby) is followed.
const MAX_AGE: Duration = Duration::from_secs(30 * 60);

/// A held connection, when it was made and when it was last used.
struct Held {
    conn: AnyConnection,
    made: Instant,
    used: Instant,
}

type Slot = Arc<Mutex<Option<Held>>>;

pub(super) struct HotReads {
    url: String,
    slots: Vec<Slot>,
    /// Where the next read starts looking for a free slot.
    next: AtomicUsize,
    /// Set by `close`: reads fail, and connect no more.
    closed: AtomicBool,
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
            closed: AtomicBool::new(false),
        }
    }

    /// The first row of `sql` with text `params`, decoded, if any.
    pub(super) async fn read_one<T>(
        &self,
        sql: &'static str,
        params: &[&str],
        decode: impl Fn(&dyn Columns) -> Result<T, DbError>,
    ) -> Result<Option<T>, DbError> {
        let (mut slot, mut held) = tokio::time::timeout(ACQUIRE_TIMEOUT, self.take())
            .await
            .map_err(|_| DbError::Sqlx(sqlx::Error::PoolTimedOut))??;
        let mut again = true;
        let (found, serves) = loop {
            let query = params.iter().fold(sqlx::query(sql), |query, p| query.bind((*p).to_owned()));
            let found = query.fetch_optional(&mut held.conn).await;
            // Back in its slot only if it still serves: not after a broken
            // socket, nor after the server said it ends the session (class
            // 57: shut down, terminated; class 08: connection exceptions).
            let serves = match &found {
                Ok(_) => true,
                Err(sqlx::Error::Database(e)) => !e.code().is_some_and(|c| c.starts_with("57") || c.starts_with("08")),
                Err(_) => false,
            };
            // A connection the server dropped (it restarted, or ended the
            // session) while it sat here: a read is safe to repeat, once,
            // on a new one.
            if serves || !std::mem::take(&mut again) {
                break (found, serves);
            }
            held = tokio::time::timeout(ACQUIRE_TIMEOUT, self.connect())
                .await
                .map_err(|_| DbError::Sqlx(sqlx::Error::PoolTimedOut))??;
        };
        if serves && !self.closed.load(Ordering::SeqCst) {
            held.used = Instant::now();
            *slot = Some(held);
        }
        found?.map(|row| decode(&row)).transpose()
    }

    /// A slot (a free one if any, else the next in turn) and its connection,
    /// taken out of it: pinged first if idle a while, made again if it is
    /// old, broken or missing.
    async fn take(&self) -> Result<(tokio::sync::OwnedMutexGuard<Option<Held>>, Held), DbError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(DbError::Sqlx(sqlx::Error::PoolClosed));
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let free = (0..SLOTS).find_map(|i| self.slots[(start + i) % SLOTS].clone().try_lock_owned().ok());
        let mut slot = match free {
            Some(slot) => slot,
            None => self.slots[start % SLOTS].clone().lock_owned().await,
        };
        if self.closed.load(Ordering::SeqCst) {
            return Err(DbError::Sqlx(sqlx::Error::PoolClosed));
        }
        let held = match slot.take() {
            Some(held) if held.made.elapsed() >= MAX_AGE => {
                let _ = held.conn.close().await;
                self.connect().await?
            }
            Some(mut held) if held.used.elapsed() >= PING_IF_IDLE => match held.conn.ping().await {
                Ok(()) => held,
                Err(_) => self.connect().await?,
            },
            Some(held) => held,
            None => self.connect().await?,
        };
        Ok((slot, held))
    }

    async fn connect(&self) -> Result<Held, DbError> {
        let conn = AnyConnection::connect(&self.url).await?;
        let now = Instant::now();
        Ok(Held { conn, made: now, used: now })
    }

    /// Closes the held connections; later reads fail.
    pub(super) async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        for slot in &self.slots {
            if let Some(held) = slot.lock().await.take() {
                let _ = held.conn.close().await;
            }
        }
    }
}
