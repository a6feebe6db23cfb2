//! Until the books moved into the center's database, the ledger kept them in
//! a database of its own (`ledger_url`; by default `data_dir/ledger.sqlite`),
//! and each protocol step committed twice, once in each. A SQLite ledger file
//! is merged into a SQLite center database when the center opens: every
//! account, transfer and pending transfer copied in one transaction, then
//! the old file renamed `*.merged`. Anything else is refused with what to do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::db::DbError;

/// How the merge went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub from: PathBuf,
    pub renamed_to: PathBuf,
    pub accounts: u64,
    pub transfers: u64,
}

/// Copies the books of the SQLite ledger file `ledger` into the SQLite
/// center database `center` (which must hold no books yet), in one
/// transaction, then renames `ledger` to `<ledger>.merged`. The center
/// database's ledger tables must exist (opening it makes them).
pub fn merge_sqlite_ledger(center: &Path, ledger: &Path) -> Result<Merged, DbError> {
    // Everything the old ledger committed, into its main file, so that the
    // copy below (through ATTACH) sees it and the rename leaves no log behind.
    {
        let old = rusqlite::Connection::open(ledger)?;
        old.busy_timeout(Duration::from_secs(5))?;
        old.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    }
    let conn = rusqlite::Connection::open(center)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let path = ledger.to_str().ok_or_else(|| DbError::Corrupt(format!("{} is not UTF-8", ledger.display())))?;
    conn.execute("ATTACH DATABASE ?1 AS old", [path])?;
    let copied = copy_books(&conn);
    let _ = conn.execute_batch("DETACH DATABASE old");
    let (accounts, transfers) = copied?;
    drop(conn);
    let mut renamed_to = ledger.as_os_str().to_owned();
    renamed_to.push(".merged");
    let renamed_to = PathBuf::from(renamed_to);
    std::fs::rename(ledger, &renamed_to)
        .map_err(|e| DbError::NotCommitted(format!("merged, but renaming {} failed: {e}", ledger.display())))?;
    for suffix in ["-wal", "-shm"] {
        let mut side = ledger.as_os_str().to_owned();
        side.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(side));
    }
    Ok(Merged { from: ledger.to_owned(), renamed_to, accounts, transfers })
}

fn count(conn: &rusqlite::Connection, sql: &str) -> Result<u64, DbError> {
    let n: i64 = conn.query_row(sql, [], |r| r.get(0))?;
    u64::try_from(n).map_err(|_| DbError::Corrupt(format!("{sql} answered {n}")))
}

fn copy_books(conn: &rusqlite::Connection) -> Result<(u64, u64), DbError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let copied = (|| {
        let here = count(conn, "SELECT COALESCE(MAX(version), 0) FROM main.kessai_ledger_schema")?;
        let there = count(conn, "SELECT COALESCE(MAX(version), 0) FROM old.kessai_ledger_schema")?;
        if here != there {
            return Err(DbError::Corrupt(format!(
                "the ledger file has books schema version {there}, the center database {here}: \
                 open the ledger file once with this build's `kessai bench ledger`-era binary first"
            )));
        }
        if count(conn, "SELECT COUNT(*) FROM main.accounts")? > 0 {
            return Err(DbError::Corrupt(
                "the center database holds books already; refusing to merge a second ledger into them".into(),
            ));
        }
        conn.execute_batch(
            "INSERT INTO main.accounts SELECT * FROM old.accounts;
             INSERT INTO main.transfers SELECT * FROM old.transfers;
             INSERT INTO main.pending_transfers SELECT * FROM old.pending_transfers;",
        )?;
        Ok((count(conn, "SELECT COUNT(*) FROM main.accounts")?, count(conn, "SELECT COUNT(*) FROM main.transfers")?))
    })();
    match copied {
        Ok(counts) => {
            conn.execute_batch("COMMIT")?;
            Ok(counts)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}
