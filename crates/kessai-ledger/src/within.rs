//! The ledger inside a caller's database transaction, so that a caller's own rows
//! and the ledger's transfers commit together or not at all (the center: a
//! protocol step's compare-and-set, its stored answer and its ledger effect are
//! one transaction). The caller opens and ends the transaction; the ledger's
//! tables must live in the same database (`Ledger::open_sqlite` /
//! `Ledger::connect_postgres` on it create them).
//!
//! On PostgreSQL the caller's transaction runs at READ COMMITTED, as the
//! ledger's own do: the engine reads balances and writes them back, and it
//! first locks the rows it will change (pending rows, then accounts, each in id
//! order), so a concurrent batch on the same account waits instead of failing.
//! The caller should lock its own rows before calling [`apply`] (the lock order
//! is then: the caller's rows, the ledger's) and lock no further rows that a
//! concurrent caller may lock first. A deadlock (40P01) or a concurrent insert
//! of the same account (23505) fails the transaction with an error for which
//! [`Error::is_retryable`] holds; the caller runs it again from the start.

use crate::error::Error;
use crate::result::{CreateAccountsResult, CreateTransfersResult};
use crate::store::postgres::PgTx;
use crate::store::sqlite::WriterTx;
use crate::store::{AppliedAll, apply_all, apply_each as apply_each_in};
use crate::types::{NewAccount, NewTransfer};

/// The caller's connection, inside its open transaction.
#[derive(Debug)]
pub enum Conn<'c> {
    /// A rusqlite connection inside `BEGIN IMMEDIATE`.
    Sqlite(&'c mut rusqlite::Connection),
    /// A PostgreSQL connection inside a READ COMMITTED transaction.
    Postgres(&'c mut sqlx::PgConnection),
}

/// How [`apply`] went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Every account and transfer was created, or existed already as asked;
    /// `existed` lists the transfers (their indexes in the batch) that
    /// existed already, so a caller recording something with each new
    /// transfer records it once.
    Done { existed: Vec<usize> },
    /// At least one event was refused; nothing was written. The results list
    /// the events that were not `ok`, by index, as the ledger's batches do.
    Refused { accounts: Vec<CreateAccountsResult>, transfers: Vec<CreateTransfersResult> },
}

/// Creates `accounts`, then `transfers`, at `now_unix_s`, in the caller's
/// transaction: all of them or none.
pub async fn apply(
    conn: Conn<'_>,
    accounts: &[NewAccount],
    transfers: &[NewTransfer],
    now_unix_s: u64,
) -> Result<Applied, Error> {
    let applied = match conn {
        Conn::Sqlite(conn) => apply_all(&mut WriterTx::within(conn), accounts, transfers, now_unix_s).await?,
        Conn::Postgres(conn) => apply_all(&mut PgTx(conn), accounts, transfers, now_unix_s).await?,
    };
    Ok(answer(applied))
}

/// Several writes at `now_unix_s` in the caller's transaction, each write
/// all or nothing and independent of the others, as if each were applied by
/// [`apply`] in turn: one answer per write, in order. `writes` gives each
/// write's number of accounts and of transfers; the writes' events follow
/// one another in `accounts` and in `transfers`. The rows they touch are
/// locked and loaded once and their changes written once, so a batch of
/// writes costs a few statements.
pub async fn apply_each(
    conn: Conn<'_>,
    accounts: &[NewAccount],
    transfers: &[NewTransfer],
    writes: &[(usize, usize)],
    now_unix_s: u64,
) -> Result<Vec<Applied>, Error> {
    let applied = match conn {
        Conn::Sqlite(conn) => {
            apply_each_in(&mut WriterTx::within(conn), accounts, transfers, writes, now_unix_s).await?
        }
        Conn::Postgres(conn) => apply_each_in(&mut PgTx(conn), accounts, transfers, writes, now_unix_s).await?,
    };
    Ok(applied.into_iter().map(answer).collect())
}

fn answer(applied: AppliedAll) -> Applied {
    if applied.all_ok() {
        let existed = applied
            .transfers
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, crate::CreateTransferResult::Exists))
            .map(|(i, _)| i)
            .collect();
        return Applied::Done { existed };
    }
    Applied::Refused {
        accounts: crate::store::account_results(applied.accounts),
        transfers: crate::store::transfer_results(applied.transfers),
    }
}
