//! Reads of the center's SQLite file on the calling thread.
//!
//! sqlx runs every SQLite connection on a thread of its own, so each
//! statement is a round trip between threads: the caller wakes the
//! connection's thread, which wakes the caller when the rows are ready; on a
//! small host such a round trip costs more than the read itself (the
//! figures are in the commit that made this module). The reads on the path
//! of every purchase step (the
//! Idempotency-Key answer with the settlement, and the store with the card)
//! therefore run here, synchronously, on connections this module holds:
//! a WAL read never waits for the writer, and with the file memory-mapped
//! it does not wait for the disk either, so it is CPU work like parsing a
//! request. Everything else still reads through sqlx.
//!
//! The connections are `query_only`: nothing here can write.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::db::DbError;

/// Connections kept between reads (one per runtime worker is enough; more
/// are opened when more reads run at once, and dropped after).
const KEPT: usize = 4;
/// As the sqlx readers: mapped pages survive another connection's commit.
const MMAP_BYTES: i64 = 256 * 1024 * 1024;
/// Prepared statements each connection keeps.
const STATEMENT_CACHE: usize = 16;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(crate) struct FastReads {
    path: PathBuf,
    /// Idle connections; `None` once closed.
    idle: Mutex<Option<Vec<Connection>>>,
}

impl FastReads {
    /// Connections to the existing SQLite file at `path` (WAL mode, made by
    /// the writer).
    pub(crate) fn open(path: &Path) -> Result<FastReads, DbError> {
        let first = connect(path)?;
        Ok(FastReads { path: path.to_owned(), idle: Mutex::new(Some(vec![first])) })
    }

    /// Runs `read` on an idle connection (or a new one).
    pub(crate) fn with<T>(&self, read: impl FnOnce(&Connection) -> Result<T, DbError>) -> Result<T, DbError> {
        let taken = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            match idle.as_mut() {
                None => return Err(DbError::Sqlx(sqlx::Error::PoolClosed)),
                Some(idle) => idle.pop(),
            }
        };
        let conn = match taken {
            Some(conn) => conn,
            None => connect(&self.path)?,
        };
        let out = read(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(idle) = idle.as_mut()
            && idle.len() < KEPT
        {
            idle.push(conn);
        }
        out
    }

    /// Closes the idle connections; later reads fail.
    pub(crate) fn close(&self) {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).take();
    }
}

fn connect(path: &Path) -> Result<Connection, DbError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", 1)?;
    conn.pragma_update_and_check(None, "mmap_size", MMAP_BYTES, |row| row.get::<_, i64>(0))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}
