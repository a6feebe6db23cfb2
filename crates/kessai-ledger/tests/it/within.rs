//! A ledger batch inside the caller's own transaction (`kessai_ledger::within`),
//! on both backends: all of it or none, and nothing kept when the caller rolls
//! back.

use std::str::FromStr as _;

use kessai_ledger::within::{self, Applied};
use kessai_ledger::{AccountFlags, CreateTransferResult, NewAccount, NewTransfer};
use sqlx::Connection as _;

use crate::support::{AccountBuilder, Db, Location, TestLedger, account, transfer};

/// Opens a connection of the caller's own on the ledger's database, begins a
/// transaction, applies the events (as one batch, [`within::apply`]; or,
/// given each write's number of accounts and transfers, as independent
/// writes, [`within::apply_each`]), and commits or rolls back.
async fn run(
    t: &TestLedger,
    accounts: &[NewAccount],
    transfers: &[NewTransfer],
    writes: Option<&[(usize, usize)]>,
    commit: bool,
) -> Vec<Applied> {
    async fn go(
        conn: within::Conn<'_>,
        accounts: &[NewAccount],
        transfers: &[NewTransfer],
        writes: Option<&[(usize, usize)]>,
    ) -> Vec<Applied> {
        match writes {
            Some(writes) => within::apply_each(conn, accounts, transfers, writes, 100).await.unwrap(),
            None => vec![within::apply(conn, accounts, transfers, 100).await.unwrap()],
        }
    }
    match &t.location {
        Location::SqliteFile(path) => {
            let mut conn = rusqlite::Connection::open(path).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            let applied = go(within::Conn::Sqlite(&mut conn), accounts, transfers, writes).await;
            conn.execute_batch(if commit { "COMMIT" } else { "ROLLBACK" }).unwrap();
            applied
        }
        Location::PostgresSchema { url, schema } => {
            let options = sqlx::postgres::PgConnectOptions::from_str(url).unwrap().options([("search_path", schema)]);
            let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
            let mut tx = conn.begin_with("BEGIN ISOLATION LEVEL READ COMMITTED").await.unwrap();
            let applied = go(within::Conn::Postgres(&mut tx), accounts, transfers, writes).await;
            if commit {
                tx.commit().await.unwrap()
            } else {
                tx.rollback().await.unwrap()
            }
            applied
        }
    }
}

async fn apply(t: &TestLedger, accounts: &[NewAccount], transfers: &[NewTransfer], commit: bool) -> Applied {
    run(t, accounts, transfers, None, commit).await.remove(0)
}

/// Each write's accounts and transfers, applied as independent writes.
async fn apply_each(t: &TestLedger, writes: &[(Vec<NewAccount>, Vec<NewTransfer>)], commit: bool) -> Vec<Applied> {
    let accounts: Vec<NewAccount> = writes.iter().flat_map(|(a, _)| a.iter().copied()).collect();
    let transfers: Vec<NewTransfer> = writes.iter().flat_map(|(_, t)| t.iter().copied()).collect();
    let counts: Vec<(usize, usize)> = writes.iter().map(|(a, t)| (a.len(), t.len())).collect();
    run(t, &accounts, &transfers, Some(&counts), commit).await
}

async fn all_or_nothing(db: Db) {
    let Some(t) = db.open().await else { return };
    let float = account(1).flags(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS);
    // 1. Accounts opened and moved in one batch: balances as if in turn.
    assert_eq!(
        apply(&t, &[float, account(2)], &[transfer(10, 2, 1, 500)], true).await,
        Applied::Done { existed: vec![] }
    );
    let found = t.ledger.lookup_accounts(&[1, 2]).await.unwrap();
    assert_eq!((found[0].credits_posted_minor, found[1].debits_posted_minor), (500, 500));
    // 2. A refused transfer writes nothing of its batch, not even its accounts.
    let refused = apply(&t, &[account(3)], &[transfer(11, 1, 3, 600)], true).await;
    let Applied::Refused { transfers, .. } = refused else { panic!("{refused:?}") };
    assert_eq!(transfers[0].result, CreateTransferResult::ExceedsCredits);
    assert!(t.ledger.lookup_accounts(&[3]).await.unwrap().is_empty(), "nothing of a refused batch");
    // 3. The same transfer again is `exists`, never a second move.
    assert_eq!(apply(&t, &[], &[transfer(10, 2, 1, 500)], true).await, Applied::Done { existed: vec![0] });
    // 4. Applied, then rolled back by the caller: nothing kept.
    assert_eq!(apply(&t, &[], &[transfer(12, 2, 1, 100)], false).await, Applied::Done { existed: vec![] });
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

/// One hot account (a store everyone pays), written by many callers'
/// transactions at once: on PostgreSQL they queue on its row lock, and not
/// one fails; the balances are the sum of what each moved. Each caller holds
/// a pending transfer to the hot account, then posts or voids it in a second
/// transaction, as the center's purchase steps do.
async fn hot_account(db: Db) {
    use crate::support::{TransferBuilder as _, post, void};
    const CALLERS: u128 = 64;
    let Some(t) = db.open().await else { return };
    let t = std::sync::Arc::new(t);
    let hot = 1;
    let float = |i: u128| account(100 + i).flags(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS);
    let floats: Vec<NewAccount> = (0..CALLERS).map(float).collect();
    let mut setup = vec![account(hot), account(2)];
    setup.extend(floats);
    let funding: Vec<NewTransfer> = (0..CALLERS).map(|i| transfer(1000 + i, 2, 100 + i, 1_000)).collect();
    assert_eq!(apply(&t, &setup, &funding, true).await, Applied::Done { existed: vec![] });
    let mut tasks = Vec::new();
    for i in 0..CALLERS {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let hold = transfer(2000 + i, 100 + i, hot, 300).pending();
            assert_eq!(apply(&t, &[float(i), account(hot)], &[hold], true).await, Applied::Done { existed: vec![] });
            let end = if i % 4 == 0 { void(3000 + i, 2000 + i) } else { post(3000 + i, 2000 + i, 300) };
            assert_eq!(apply(&t, &[], &[end], true).await, Applied::Done { existed: vec![] });
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let found = t.ledger.lookup_accounts(&[hot]).await.unwrap();
    let posted = (0..CALLERS).filter(|i| i % 4 != 0).count() as u64 * 300;
    assert_eq!((found[0].credits_posted_minor, found[0].credits_pending_minor), (posted, 0));
    t.ledger.check().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_account_written_by_64_callers_at_once_fails_none_on_postgres() {
    hot_account(Db::Postgres).await;
}

#[tokio::test]
async fn a_hot_account_written_by_64_callers_at_once_fails_none_on_sqlite() {
    hot_account(Db::Sqlite).await;
}

/// Several writes in one transaction, each all or nothing on its own: a
/// refused write leaves no trace (not its accounts, not the transfers of it
/// that went through), the writes around it apply as if alone and in turn
/// (on the balances the writes before them left), and a transfer written
/// before is `exists` for the write that names it again.
async fn each_on_its_own(db: Db) {
    use crate::support::TransferBuilder as _;
    let Some(t) = db.open().await else { return };
    let float = |id| account(id).flags(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS);
    assert_eq!(
        apply(&t, &[float(1), account(2)], &[transfer(10, 2, 1, 500)], true).await,
        Applied::Done { existed: vec![] }
    );
    let writes = [
        (vec![account(3)], vec![transfer(20, 1, 3, 300)]),
        // Moves 150, then 400 more than the float still holds after the
        // first write: refused as a whole, its new account and first
        // transfer too.
        (vec![account(4)], vec![transfer(21, 1, 4, 150), transfer(22, 1, 4, 400)]),
        // Needs what is left after the first write, not after the refused one.
        (vec![], vec![transfer(23, 1, 3, 200).pending()]),
        (vec![], vec![transfer(10, 2, 1, 500)]),
    ];
    let applied = apply_each(&t, &writes, true).await;
    assert_eq!(applied[0], Applied::Done { existed: vec![] });
    let Applied::Refused { transfers, accounts } = &applied[1] else { panic!("{:?}", applied[1]) };
    assert!(accounts.is_empty(), "{accounts:?}");
    assert_eq!(transfers.len(), 1, "only the refused event is listed: {transfers:?}");
    assert_eq!((transfers[0].index, transfers[0].result), (1, CreateTransferResult::ExceedsCredits));
    assert_eq!(applied[2], Applied::Done { existed: vec![] });
    assert_eq!(applied[3], Applied::Done { existed: vec![0] });
    let found = t.ledger.lookup_accounts(&[1, 3]).await.unwrap();
    assert_eq!((found[0].debits_posted_minor, found[0].debits_pending_minor), (300, 200));
    assert_eq!((found[1].credits_posted_minor, found[1].credits_pending_minor), (300, 200));
    assert!(t.ledger.lookup_accounts(&[4]).await.unwrap().is_empty(), "the refused write's account");
    assert!(t.ledger.lookup_transfers(&[21, 22]).await.unwrap().is_empty(), "the refused write's transfers");
    // Rolled back by the caller: nothing of any write kept.
    let writes = [(vec![], vec![transfer(24, 2, 1, 100)])];
    assert_eq!(apply_each(&t, &writes, false).await, [Applied::Done { existed: vec![] }]);
    assert!(t.ledger.lookup_transfers(&[24]).await.unwrap().is_empty());
    t.ledger.check().await.unwrap();
}

#[tokio::test]
async fn writes_applied_together_are_each_all_or_nothing_on_sqlite() {
    each_on_its_own(Db::Sqlite).await;
}

#[tokio::test]
async fn writes_applied_together_are_each_all_or_nothing_on_postgres() {
    each_on_its_own(Db::Postgres).await;
}
