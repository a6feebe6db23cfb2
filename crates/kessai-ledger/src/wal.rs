//! Background WAL checkpoints for a SQLite database (the ledger's, and the
//! center's own).
//!
//! In WAL mode a commit appends the pages it changed to the log, and
//! SQLite's automatic checkpoint copies the log into the database file (and
//! fsyncs it) inside the commit that crossed `wal_autocheckpoint` pages.
//! With one group-committing writer, every write queued behind that commit
//! waits for the whole copy: at half load in `kessai bench center` those
//! stalls made the p99 of a settlement (the figures are in the commit that
//! added this module).
//!
//! A [`Checkpointer`] copies the log on a connection of its own, in
//! `PASSIVE` mode, every [`SQLITE_CHECKPOINT_INTERVAL_MS`]: a passive
//! checkpoint neither waits for nor blocks the writer or any reader; it
//! copies what every reader has moved past, and the rest next time. The
//! writer's automatic checkpoint stays as it was, as the backstop and as
//! what lets the log start again from its beginning; when it fires, only
//! the pages since the last background pass are left to copy.
//!
//! Durability is unchanged: commits still fsync the log, and a checkpoint
//! fsyncs the log before copying and the database file after.
//! (The timer is monotonic and only paces the passes; nothing the ledger
//! stores depends on it.)
//!
//! [`writer_connection`] opens the writing connection both writer threads
//! use, so they share one set of durability settings.

use std::path::Path;
use std::time::Duration;

use sqlx::{Connection as _, Row as _, SqliteConnection};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::limits::SQLITE_CHECKPOINT_INTERVAL_MS;

/// A running background checkpoint task; [`Checkpointer::stop`] ends it
/// and closes its connection. Dropped without `stop`, the task ends at its
/// next pass.
#[derive(Debug)]
pub struct Checkpointer {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

/// How the last pass went, as SQLite reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Another connection was checkpointing: this pass did nothing, and
    /// both counts are -1.
    pub busy: bool,
    /// Pages in the log.
    pub log_pages: i64,
    /// Of those, pages now in the database file.
    pub checkpointed_pages: i64,
}

impl Checkpointer {
    /// Opens a connection to the SQLite database at `path` (which must
    /// exist, in WAL mode) and starts the passes.
    pub async fn start(path: &Path) -> Result<Checkpointer, Error> {
        let options = crate::store::sqlite_connect_options(path).create_if_missing(false);
        let mut conn = SqliteConnection::connect_with(&options).await?;
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(SQLITE_CHECKPOINT_INTERVAL_MS));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {}
                }
                // A failed pass loses nothing (the log keeps every page,
                // and the writer's own checkpoint is the backstop); say so
                // once per run of failures, not at every tick.
                match checkpoint(&mut conn).await {
                    Ok(_) => failing = false,
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "background WAL checkpoint failed; retrying");
                    }
                    Err(_) => {}
                }
            }
            let _ = conn.close().await;
        });
        Ok(Checkpointer { stop: Some(stop), task: Some(task) })
    }

    /// Ends the passes (waiting for one under way) and closes the connection.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// How a writing connection is set up (see [`writer_connection`]).
#[derive(Debug, Clone, Copy)]
pub struct WriterSettings {
    pub busy_timeout: Duration,
    /// Bytes of the file mapped: mapped pages survive another connection's
    /// commit; a connection's page cache does not.
    pub mmap_bytes: u64,
    /// Log pages after which the writer checkpoints itself (the backstop
    /// behind a [`Checkpointer`]).
    pub autocheckpoint_pages: u32,
    /// Prepared statements kept.
    pub statement_cache: usize,
}

/// The one writing connection to an existing SQLite file, as the ledger's
/// and the center's writer threads open it: WAL mode (checked, not
/// assumed) and `synchronous = FULL`, so every commit fsyncs the log and an
/// acknowledged write survives a power cut.
pub fn writer_connection(path: &Path, settings: WriterSettings) -> Result<rusqlite::Connection, Error> {
    use rusqlite::OpenFlags;
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(settings.busy_timeout)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Corrupt { what: "the SQLite file is not in WAL mode" });
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    let mmap = i64::try_from(settings.mmap_bytes).unwrap_or(i64::MAX);
    conn.pragma_update_and_check(None, "mmap_size", mmap, |row| row.get::<_, i64>(0))?;
    conn.pragma_update_and_check(None, "wal_autocheckpoint", settings.autocheckpoint_pages, |row| {
        row.get::<_, i64>(0)
    })?;
    conn.set_prepared_statement_cache_capacity(settings.statement_cache);
    Ok(conn)
}

/// One passive checkpoint on `conn`.
pub async fn checkpoint(conn: &mut SqliteConnection) -> Result<Pass, Error> {
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&mut *conn).await?;
    let busy: i64 = row.try_get(0)?;
    Ok(Pass { busy: busy != 0, log_pages: row.try_get(1)?, checkpointed_pages: row.try_get(2)? })
}
