//! A ledger batch inside the caller's own transaction (`kessai_ledger::within`),
//! on both backends: all of it or none, and nothing kept when the caller rolls
//! back.

use std::str::FromStr as _;

use kessai_ledger::within::{self, Applied};
use kessai_ledger::{AccountFlags, CreateTransferResult, NewAccount, NewTransfer};
use sqlx::Connection as _;

use crate::support::{AccountBuilder, Db, Location, TestLedger, account, transfer};

/// Opens a connection of the caller's own on the ledger's database, begins a
/// transaction, applies the batch, and commits or rolls back.
async fn apply(t: &TestLedger, accounts: &[NewAccount], transfers: &[NewTransfer], commit: bool) -> Applied {
    match &t.location {
        Location::SqliteFile(path) => {
            let mut conn = rusqlite::Connection::open(path).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            let applied = within::apply(within::Conn::Sqlite(&mut conn), accounts, transfers, 100).await.unwrap();
            conn.execute_batch(if commit { "COMMIT" } else { "ROLLBACK" }).unwrap();
            applied
        }
        Location::PostgresSchema { url, schema } => {
            let options = sqlx::postgres::PgConnectOptions::from_str(url).unwrap().options([("search_path", schema)]);
            let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
            let mut tx = conn.begin_with("BEGIN ISOLATION LEVEL SERIALIZABLE").await.unwrap();
            let applied = within::apply(within::Conn::Postgres(&mut tx), accounts, transfers, 100).await.unwrap();
            if commit {
                tx.commit().await.unwrap()
            } else {
                tx.rollback().await.unwrap()
            }
            applied
        }
    }
}

async fn all_or_nothing(db: Db) {
    let Some(t) = db.open().await else { return };
    let float = account(1).flags(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS);
    // 1. Accounts opened and moved in one batch: balances as if in turn.
    assert_eq!(apply(&t, &[float, account(2)], &[transfer(10, 2, 1, 500)], true).await, Applied::Done);
    let found = t.ledger.lookup_accounts(&[1, 2]).await.unwrap();
    assert_eq!((found[0].credits_posted_minor, found[1].debits_posted_minor), (500, 500));
    // 2. A refused transfer writes nothing of its batch, not even its accounts.
    let refused = apply(&t, &[account(3)], &[transfer(11, 1, 3, 600)], true).await;
    let Applied::Refused { transfers, .. } = refused else { panic!("{refused:?}") };
    assert_eq!(transfers[0].result, CreateTransferResult::ExceedsCredits);
    assert!(t.ledger.lookup_accounts(&[3]).await.unwrap().is_empty(), "nothing of a refused batch");
    // 3. The same transfer again is `exists`, never a second move.
    assert_eq!(apply(&t, &[], &[transfer(10, 2, 1, 500)], true).await, Applied::Done);
    // 4. Applied, then rolled back by the caller: nothing kept.
    assert_eq!(apply(&t, &[], &[transfer(12, 2, 1, 100)], false).await, Applied::Done);
    assert_eq!(t.ledger.lookup_accounts(&[1]).await.unwrap()[0].credits_posted_minor, 500);
    assert!(t.ledger.lookup_transfers(&[12]).await.unwrap().is_empty());
    t.ledger.check().await.unwrap();
}

#[tokio::test]
async fn a_batch_in_the_callers_transaction_is_all_or_nothing_on_sqlite() {
    all_or_nothing(Db::Sqlite).await;
}

#[tokio::test]
async fn a_batch_in_the_callers_transaction_is_all_or_nothing_on_postgres() {
    all_or_nothing(Db::Postgres).await;
}
