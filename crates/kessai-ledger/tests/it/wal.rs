//! The background WAL checkpointer (`kessai_ledger::wal`): committed transfers reach
//! the database file itself, not only the log, without the writer checkpointing
//! (its automatic checkpoint waits for `SQLITE_WAL_AUTOCHECKPOINT_PAGES`, far more
//! than this test writes).

use std::path::Path;
use std::time::{Duration, Instant};

use kessai_ledger::Ledger;
use kessai_ledger::limits::{SQLITE_CHECKPOINT_INTERVAL_MS, SQLITE_WAL_AUTOCHECKPOINT_PAGES};
use kessai_ledger::wal::{Checkpointer, checkpoint};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection as _, SqliteConnection};

use crate::support::{account, transfer};

const NOW: u64 = 1_700_000_000;
const TRANSFERS: u128 = 400;

/// Transfers found in a copy of the database file alone (no log beside it), or
/// `None` if the copy caught a page being written and does not open cleanly.
async fn transfers_in_file_alone(db: &Path, scratch: &Path) -> Option<i64> {
    let copy = scratch.join("copy.sqlite");
    std::fs::copy(db, &copy).ok()?;
    let options = SqliteConnectOptions::new().filename(&copy).immutable(true);
    let mut conn = SqliteConnection::connect_with(&options).await.ok()?;
    let found = sqlx::query_scalar("SELECT count(*) FROM transfers").fetch_one(&mut conn).await.ok();
    let _ = conn.close().await;
    found
}

#[tokio::test]
async fn committed_transfers_reach_the_database_file_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let ledger = Ledger::open_sqlite(&path).await.unwrap();
    ledger.create_accounts(&[account(1), account(2)], NOW).await.unwrap();
    for batch in 0..TRANSFERS / 100 {
        let events: Vec<_> = (0..100).map(|n| transfer(1_000 + batch * 100 + n, 1, 2, 1)).collect();
        assert!(ledger.create_transfers(&events, NOW).await.unwrap().is_empty());
    }
    // Far fewer pages than the writer's own checkpoint waits for.
    let wal = std::fs::metadata(dir.path().join("ledger.sqlite-wal")).unwrap().len();
    assert!(wal < u64::from(SQLITE_WAL_AUTOCHECKPOINT_PAGES) * 4096 / 4, "the log is {wal} bytes");

    let scratch = tempfile::tempdir().unwrap();
    let deadline = Instant::now() + Duration::from_millis(SQLITE_CHECKPOINT_INTERVAL_MS * 50);
    let mut found = None;
    while Instant::now() < deadline {
        found = transfers_in_file_alone(&path, scratch.path()).await;
        if found == Some(TRANSFERS as i64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(SQLITE_CHECKPOINT_INTERVAL_MS)).await;
    }
    assert_eq!(found, Some(TRANSFERS as i64), "the database file alone holds every committed transfer");
    ledger.close().await;
}

#[tokio::test]
async fn a_checkpoint_reports_the_log_and_a_stopped_checkpointer_lets_the_ledger_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    let ledger = Ledger::open_sqlite(&path).await.unwrap();
    ledger.create_accounts(&[account(1), account(2)], NOW).await.unwrap();
    // A second checkpointer beside the ledger's own: passive checkpoints share.
    let extra = Checkpointer::start(&path).await.unwrap();
    let events: Vec<_> = (0..50).map(|n| transfer(10 + n, 1, 2, 1)).collect();
    assert!(ledger.create_transfers(&events, NOW).await.unwrap().is_empty());
    let mut conn = SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(&path)).await.unwrap();
    // Two checkpointers run beside this one: a pass that meets theirs
    // does nothing, and says so.
    let mut pass = checkpoint(&mut conn).await.unwrap();
    for _ in 0..100 {
        if !pass.busy {
            break;
        }
        assert_eq!((pass.log_pages, pass.checkpointed_pages), (-1, -1), "{pass:?}");
        tokio::time::sleep(Duration::from_millis(3)).await;
        pass = checkpoint(&mut conn).await.unwrap();
    }
    assert!(pass.log_pages > 0, "committed pages are in the log: {pass:?}");
    assert_eq!(pass.checkpointed_pages, pass.log_pages, "nothing reads, so every page is copied: {pass:?}");
    conn.close().await.unwrap();
    extra.stop().await;
    ledger.close().await;
    // A database that does not exist is refused, not created.
    assert!(Checkpointer::start(&dir.path().join("missing.sqlite")).await.is_err());
    assert!(!dir.path().join("missing.sqlite").exists());
}
