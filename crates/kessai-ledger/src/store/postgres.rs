//! The PostgreSQL backend. Writes run at READ COMMITTED and lock, before reading
//! them, the rows they will change (`Tx::lock_pending`, `Tx::load_accounts_for_update`: pending
//! rows, then accounts, each in id order), so batches that touch one account queue on its row lock instead of
//! failing, even across several center instances; a hot account costs waiting, never
//! a serialization failure. What is left to retry (with backoff, at most
//! `PG_RETRIES_MAX` times) is a deadlock the lock order does not
//! rule out (40P01, should a caller's own rows be locked in another order) and a
//! unique violation on an id a concurrent batch inserted first (23505: the retry
//! sees it and answers `exists`).
//! Each step of a batch is one statement over arrays (`= ANY($1)`, `UNNEST`), so a
//! batch costs the same handful of round trips whatever its size.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row as _};

use super::rows::{self, Columns, account_columns, id_bytes, insert_account_columns, stored_int, transfer_columns};
use super::{Op, Outcome, Tx, schema};
use crate::engine::{LoadedTransfer, WriteSet};
use crate::error::Error;
use crate::limits::{PG_POOL_CONNECTIONS_MAX, PG_RETRIES_MAX, PG_RETRY_BACKOFF_MAX_MS, PG_RETRY_BACKOFF_MIN_MS};
use crate::types::Account;

fn valid_schema_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    first_ok && name.len() <= 63 && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

pub(crate) async fn connect(url: &str, schema: Option<&str>) -> Result<PgPool, Error> {
    let mut options = PgConnectOptions::from_str(url)?;
    if let Some(name) = schema {
        if !valid_schema_name(name) {
            return Err(Error::InvalidSchemaName { name: name.to_owned() });
        }
        let setup = PgPoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
        // The name was checked to be a plain lowercase identifier, so it cannot
        // break out of the statement.
        let create = format!("CREATE SCHEMA IF NOT EXISTS {name}");
        let created = sqlx::query(AssertSqlSafe(create)).execute(&setup).await;
        setup.close().await;
        // Two instances creating the schema at once: one of them sees a unique
        // violation (23505) although the schema now exists, which is fine.
        if let Err(error) = created
            && sqlstate(&error).as_deref() != Some("23505")
        {
            return Err(error.into());
        }
        options = options.options([("search_path", name)]);
    }
    let pool = PgPoolOptions::new().max_connections(PG_POOL_CONNECTIONS_MAX).connect_with(options).await?;
    let mut tx = pool.begin().await?;
    schema::migrate_postgres(&mut tx).await?;
    tx.commit().await?;
    Ok(pool)
}

fn sqlstate(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(database) => database.code().map(|code| code.into_owned()),
        _ => None,
    }
}

/// Deadlock, or a unique violation on an id that a concurrent batch inserted
/// first (the retry then sees it and answers `exists`); a serialization failure
/// too, should a caller run the ledger in a SERIALIZABLE transaction of its own.
fn retryable_sqlstate(error: &sqlx::Error) -> bool {
    matches!(sqlstate(error).as_deref(), Some("40001" | "40P01" | "23505"))
}

fn retryable(error: &Error) -> bool {
    matches!(error, Error::Database(database) if retryable_sqlstate(database))
}

/// Exponential backoff with jitter, so that batches that collided do not collide
/// again in lockstep. The jitter only spreads retries; it never changes a result.
fn backoff(attempt: u32) -> Duration {
    use std::hash::{BuildHasher as _, RandomState};
    let ceiling_ms = PG_RETRY_BACKOFF_MIN_MS.saturating_mul(1 << attempt.min(16)).min(PG_RETRY_BACKOFF_MAX_MS);
    let jitter = RandomState::new().hash_one(attempt);
    let ceiling_us = ceiling_ms * 1000;
    Duration::from_micros(ceiling_us / 2 + jitter % (ceiling_us / 2 + 1))
}

pub(crate) async fn run(pool: &PgPool, op: Op<'_>) -> Result<Outcome, Error> {
    let begin = if op.writes() {
        "BEGIN ISOLATION LEVEL READ COMMITTED"
    } else {
        "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"
    };
    let mut retries = 0;
    loop {
        let result = async {
            let mut transaction = pool.begin_with(begin).await?;
            let outcome = super::run(&mut PgTx(&mut transaction), op).await?;
            transaction.commit().await?;
            Ok(outcome)
        }
        .await;
        match result {
            Err(error) if retryable(&error) && retries < PG_RETRIES_MAX => {
                retries += 1;
                tokio::time::sleep(backoff(retries)).await;
            }
            Err(Error::Database(source)) if retryable_sqlstate(&source) => {
                return Err(Error::RetriesExhausted { attempts: retries + 1, source });
            }
            other => return other,
        }
    }
}

/// An open PostgreSQL transaction: the ledger's own, or a caller's
/// (`crate::within`).
pub(crate) struct PgTx<'c>(pub &'c mut PgConnection);

impl Columns for PgRow {
    fn bytes(&self, index: usize) -> Result<Vec<u8>, Error> {
        Ok(self.try_get(index)?)
    }
    fn int(&self, index: usize) -> Result<i64, Error> {
        Ok(self.try_get(index)?)
    }
    fn int_or_null(&self, index: usize) -> Result<Option<i64>, Error> {
        Ok(self.try_get(index)?)
    }
    fn text(&self, index: usize) -> Result<String, Error> {
        Ok(self.try_get(index)?)
    }
}

fn id_array(ids: impl IntoIterator<Item = u128>) -> Vec<[u8; 16]> {
    ids.into_iter().map(id_bytes).collect()
}

impl Tx for PgTx<'_> {
    type Row = PgRow;

    async fn load_accounts(&mut self, ids: &[u128]) -> Result<Vec<Account>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // `= ANY`, not a join with UNNEST: the planner then always probes the
        // primary key, whatever size it guesses for the array. (The updates
        // that join UNNEST, below, also restrict the table by `= ANY`, so
        // that they probe its key rather than hash-join every row.)
        let sql = concat!("SELECT ", account_columns!(), " FROM accounts a WHERE a.id = ANY($1)");
        let found = sqlx::query(sql).bind(id_array(ids.iter().copied())).fetch_all(&mut *self.0).await?;
        found.iter().map(rows::account).collect()
    }

    async fn load_transfers(&mut self, ids: &[u128]) -> Result<Vec<LoadedTransfer>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = concat!(
            "SELECT ",
            transfer_columns!(),
            " FROM transfers t LEFT JOIN pending_transfers p ON p.id = t.id WHERE t.id = ANY($1)"
        );
        let found = sqlx::query(sql).bind(id_array(ids.iter().copied())).fetch_all(&mut *self.0).await?;
        found.iter().map(|row| rows::loaded_transfer(row).map(|(loaded, _)| loaded)).collect()
    }

    async fn due_pending(&mut self, now_unix_s: u64, limit: usize) -> Result<Vec<u128>, Error> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let found = sqlx::query(schema::DUE_PENDING_SQL)
            .bind(stored_int(now_unix_s))
            .bind(limit)
            .fetch_all(&mut *self.0)
            .await?;
        found.iter().map(|row| rows::id_from_bytes(&row.bytes(0)?)).collect()
    }

    async fn history(
        &mut self,
        account_id: u128,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<(LoadedTransfer, u64)>, Error> {
        let found = sqlx::query(schema::HISTORY_SQL)
            .bind(id_bytes(account_id))
            .bind(stored_int(after_seq))
            .bind(i64::from(limit))
            .fetch_all(&mut *self.0)
            .await?;
        found.iter().map(rows::loaded_transfer).collect()
    }

    async fn write(&mut self, set: &WriteSet) -> Result<(), Error> {
        if !set.accounts_created.is_empty() {
            self.insert_accounts(&set.accounts_created).await?;
        }
        if !set.accounts_updated.is_empty() {
            let accounts = &set.accounts_updated;
            let sql = "UPDATE accounts a SET debits_pending_minor = u.dp, debits_posted_minor = u.dpo, \
                       credits_pending_minor = u.cp, credits_posted_minor = u.cpo \
                       FROM UNNEST($1::bytea[], $2::int8[], $3::int8[], $4::int8[], $5::int8[]) AS u(id, dp, dpo, cp, cpo) \
                       WHERE a.id = u.id AND a.id = ANY($1)";
            let updated = sqlx::query(sql)
                .bind(id_array(accounts.iter().map(|a| a.id)))
                .bind(accounts.iter().map(|a| stored_int(a.debits_pending_minor)).collect::<Vec<_>>())
                .bind(accounts.iter().map(|a| stored_int(a.debits_posted_minor)).collect::<Vec<_>>())
                .bind(accounts.iter().map(|a| stored_int(a.credits_pending_minor)).collect::<Vec<_>>())
                .bind(accounts.iter().map(|a| stored_int(a.credits_posted_minor)).collect::<Vec<_>>())
                .execute(&mut *self.0)
                .await?;
            assert_eq!(updated.rows_affected(), accounts.len() as u64);
        }
        if !set.transfers_created.is_empty() {
            self.insert_transfers(set).await?;
        }
        self.write_pending(set).await
    }

    async fn rows(&mut self, sql: &'static str) -> Result<Vec<PgRow>, Error> {
        Ok(sqlx::query(sql).fetch_all(&mut *self.0).await?)
    }

    async fn lock_pending(&mut self, ids: &[u128]) -> Result<(), Error> {
        // `ORDER BY` below `FOR UPDATE`: the rows are locked in id order.
        sqlx::query("SELECT id FROM pending_transfers WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(id_array(ids.iter().copied()))
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn load_accounts_for_update(&mut self, ids: &[u128]) -> Result<Vec<Account>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql =
            concat!("SELECT ", account_columns!(), " FROM accounts a WHERE a.id = ANY($1) ORDER BY a.id FOR UPDATE");
        let found = sqlx::query(sql).bind(id_array(ids.iter().copied())).fetch_all(&mut *self.0).await?;
        found.iter().map(rows::account).collect()
    }
}

impl PgTx<'_> {
    async fn insert_accounts(&mut self, accounts: &[Account]) -> Result<(), Error> {
        // With their balances: an account opened in a batch may be moved by a
        // transfer of the same batch (`crate::within`).
        let sql = concat!(
            "INSERT INTO accounts (",
            insert_account_columns!(),
            ") SELECT * FROM UNNEST($1::bytea[], $2::text[], $3::int8[], $4::int8[], $5::bytea[], \
             $6::int8[], $7::int8[], $8::int8[], $9::int8[], $10::int8[])"
        );
        sqlx::query(sql)
            .bind(id_array(accounts.iter().map(|a| a.id)))
            .bind(accounts.iter().map(|a| a.currency.to_string()).collect::<Vec<_>>())
            .bind(accounts.iter().map(|a| i64::from(a.kind.code())).collect::<Vec<_>>())
            .bind(accounts.iter().map(|a| i64::from(a.flags.bits())).collect::<Vec<_>>())
            .bind(id_array(accounts.iter().map(|a| a.user_data_128)))
            .bind(accounts.iter().map(|a| stored_int(a.debits_pending_minor)).collect::<Vec<_>>())
            .bind(accounts.iter().map(|a| stored_int(a.debits_posted_minor)).collect::<Vec<_>>())
            .bind(accounts.iter().map(|a| stored_int(a.credits_pending_minor)).collect::<Vec<_>>())
            .bind(accounts.iter().map(|a| stored_int(a.credits_posted_minor)).collect::<Vec<_>>())
            .bind(accounts.iter().map(|a| stored_int(a.created_at_unix_s)).collect::<Vec<_>>())
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn insert_transfers(&mut self, set: &WriteSet) -> Result<(), Error> {
        let transfers = &set.transfers_created;
        let sql = "INSERT INTO transfers (id, debit_account_id, credit_account_id, amount_minor, currency, \
                   pending_id, timeout_s, user_data_128, code, flags, created_at_unix_s) \
                   SELECT * FROM UNNEST($1::bytea[], $2::bytea[], $3::bytea[], $4::int8[], $5::text[], \
                   $6::bytea[], $7::int8[], $8::bytea[], $9::int8[], $10::int8[], $11::int8[])";
        sqlx::query(sql)
            .bind(id_array(transfers.iter().map(|t| t.id)))
            .bind(id_array(transfers.iter().map(|t| t.debit_account_id)))
            .bind(id_array(transfers.iter().map(|t| t.credit_account_id)))
            .bind(transfers.iter().map(|t| stored_int(t.amount_minor)).collect::<Vec<_>>())
            .bind(transfers.iter().map(|t| t.currency.to_string()).collect::<Vec<_>>())
            .bind(id_array(transfers.iter().map(|t| t.pending_id)))
            .bind(transfers.iter().map(|t| i64::from(t.timeout_s)).collect::<Vec<_>>())
            .bind(id_array(transfers.iter().map(|t| t.user_data_128)))
            .bind(transfers.iter().map(|t| i64::from(t.code)).collect::<Vec<_>>())
            .bind(transfers.iter().map(|t| i64::from(t.flags.bits())).collect::<Vec<_>>())
            .bind(transfers.iter().map(|t| stored_int(t.created_at_unix_s)).collect::<Vec<_>>())
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn write_pending(&mut self, set: &WriteSet) -> Result<(), Error> {
        if !set.pending_created.is_empty() {
            let created = &set.pending_created;
            let sql = "INSERT INTO pending_transfers (id, state, expires_at_unix_s) \
                       SELECT * FROM UNNEST($1::bytea[], $2::int8[], $3::int8[])";
            sqlx::query(sql)
                .bind(id_array(created.iter().map(|(id, _)| *id)))
                .bind(created.iter().map(|(_, row)| i64::from(row.state.code())).collect::<Vec<_>>())
                .bind(created.iter().map(|(_, row)| row.expires_at_unix_s.map(stored_int)).collect::<Vec<_>>())
                .execute(&mut *self.0)
                .await?;
        }
        if !set.pending_resolved.is_empty() {
            let resolved = &set.pending_resolved;
            let sql = "UPDATE pending_transfers p SET state = u.state \
                       FROM UNNEST($1::bytea[], $2::int8[]) AS u(id, state) WHERE p.id = u.id AND p.id = ANY($1)";
            let updated = sqlx::query(sql)
                .bind(id_array(resolved.iter().map(|(id, _)| *id)))
                .bind(resolved.iter().map(|(_, row)| i64::from(row.state.code())).collect::<Vec<_>>())
                .execute(&mut *self.0)
                .await?;
            assert_eq!(updated.rows_affected(), resolved.len() as u64);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_lowercase_identifiers() {
        assert!(valid_schema_name("ledger"));
        assert!(valid_schema_name("_t_12_ab"));
        for bad in ["", "Ledger", "1abc", "a-b", "a;drop table x", "a b", &"x".repeat(64)] {
            assert!(!valid_schema_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn backoff_grows_within_its_bounds() {
        for retry in 1..=PG_RETRIES_MAX {
            let ceiling_ms = (PG_RETRY_BACKOFF_MIN_MS << retry.min(16)).min(PG_RETRY_BACKOFF_MAX_MS);
            let pause = backoff(retry);
            assert!(pause <= Duration::from_millis(ceiling_ms), "retry {retry}: {pause:?}");
            assert!(pause >= Duration::from_millis(ceiling_ms) / 2, "retry {retry}: {pause:?}");
        }
    }
}
