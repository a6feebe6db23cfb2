//! Throughput of the ledger, and of `pgbench` on the same PostgreSQL cluster for
//! comparison. This module reads a monotonic timer (`Instant`) to measure; nothing
//! else in the crate reads a clock.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::Ledger;
use crate::error::Error;
use crate::types::{AccountFlags, AccountKind, Currency, NewAccount, NewTransfer, TransferFlags};

/// What `transfers_per_second` measures.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Events per batch (one database transaction each), measured in this order.
    pub batch_sizes: Vec<usize>,
    /// How long each batch size runs (the last batch may end a little later).
    pub duration_per_size: Duration,
    /// Transfers go between this many accounts, round robin.
    pub accounts: u32,
    /// Account and transfer ids start here; pick a range unused in the ledger.
    pub first_id: u128,
}

impl Default for BenchConfig {
    fn default() -> BenchConfig {
        BenchConfig {
            batch_sizes: vec![1, 10, 100, 1000],
            duration_per_size: Duration::from_secs(3),
            accounts: 100,
            first_id: 1 << 100,
        }
    }
}

/// Throughput at one batch size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchFigure {
    pub batch_events: usize,
    pub transfers: u64,
    pub elapsed: Duration,
    pub transfers_per_s: f64,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    #[error("ledger error: {0}")]
    Ledger(#[from] Error),
    #[error("the ledger refused a benchmark event: {0}; is the id range already used?")]
    Refused(String),
    #[error("pgbench failed: {0}")]
    Pgbench(String),
}

/// Posts single-phase transfers between `config.accounts` accounts in batches of each
/// size, printing and returning transfers per second. Creates its accounts first.
pub async fn transfers_per_second(ledger: &Ledger, config: &BenchConfig) -> Result<Vec<BenchFigure>, BenchError> {
    let now_unix_s = 1_700_000_000;
    let accounts: Vec<NewAccount> = (0..u128::from(config.accounts))
        .map(|n| NewAccount {
            id: config.first_id + n,
            currency: Currency::JPY,
            kind: AccountKind::Pool,
            flags: AccountFlags::NONE,
            user_data_128: 0,
        })
        .collect();
    if let Some(refused) = ledger.create_accounts(&accounts, now_unix_s).await?.first() {
        return Err(BenchError::Refused(refused.result.to_string()));
    }
    let mut next_id = config.first_id + u128::from(config.accounts);
    let mut figures = Vec::new();
    for &batch_events in &config.batch_sizes {
        let started = Instant::now();
        let mut transfers = 0_u64;
        while started.elapsed() < config.duration_per_size {
            let batch = bench_batch(config, &mut next_id, batch_events);
            if let Some(refused) = ledger.create_transfers(&batch, now_unix_s).await?.first() {
                return Err(BenchError::Refused(refused.result.to_string()));
            }
            transfers += batch_events as u64;
        }
        let elapsed = started.elapsed();
        let transfers_per_s = transfers as f64 / elapsed.as_secs_f64();
        let backend = ledger.backend_kind().name();
        println!(
            "ledger {backend}: batch {batch_events:>5}: {transfers_per_s:>10.0} transfers/s ({transfers} in {elapsed:.2?})"
        );
        figures.push(BenchFigure { batch_events, transfers, elapsed, transfers_per_s });
    }
    Ok(figures)
}

fn bench_batch(config: &BenchConfig, next_id: &mut u128, batch_events: usize) -> Vec<NewTransfer> {
    let accounts = u128::from(config.accounts.max(2));
    (0..batch_events)
        .map(|_| {
            let id = *next_id;
            *next_id += 1;
            let debit = id % accounts;
            let credit = (debit + 1 + (id / accounts) % (accounts - 1)) % accounts;
            NewTransfer {
                id,
                debit_account_id: config.first_id + debit,
                credit_account_id: config.first_id + credit,
                amount_minor: 1 + (id % 1000) as u64,
                currency: Currency::JPY,
                pending_id: 0,
                timeout_s: 0,
                user_data_128: 0,
                code: 1,
                flags: TransferFlags::NONE,
            }
        })
        .collect()
}

/// Runs pgbench's default TPC-B-like script against `url`: `pgbench -i` (creating
/// its tables in the database's default schema), then `pgbench -c clients -j clients
/// -T duration_s`. Returns the tps pgbench reports.
pub async fn pgbench_tps(pg_bin: &Path, url: &str, clients: u32, duration_s: u32) -> Result<f64, BenchError> {
    let pgbench = pg_bin.join("pgbench");
    let init = tokio::process::Command::new(&pgbench).args(["-i", "-q", url]).output().await;
    let init = init.map_err(|error| BenchError::Pgbench(format!("{}: {error}", pgbench.display())))?;
    if !init.status.success() {
        return Err(BenchError::Pgbench(String::from_utf8_lossy(&init.stderr).into_owned()));
    }
    let (clients, duration_s) = (clients.to_string(), duration_s.to_string());
    let run = tokio::process::Command::new(&pgbench)
        .args(["-c", &clients, "-j", &clients, "-T", &duration_s, url])
        .output()
        .await
        .map_err(|error| BenchError::Pgbench(format!("{}: {error}", pgbench.display())))?;
    let stdout = String::from_utf8_lossy(&run.stdout);
    if !run.status.success() {
        return Err(BenchError::Pgbench(String::from_utf8_lossy(&run.stderr).into_owned()));
    }
    let tps = parse_pgbench_tps(&stdout).ok_or_else(|| BenchError::Pgbench(format!("no tps in: {stdout}")))?;
    println!("pgbench (TPC-B, {clients} clients, {duration_s} s): {tps:.0} tps");
    Ok(tps)
}

/// The number in pgbench's `tps = 1234.56 (without initial connection time)` line.
pub fn parse_pgbench_tps(output: &str) -> Option<f64> {
    output
        .lines()
        .filter_map(|line| line.trim().strip_prefix("tps = "))
        .find_map(|rest| rest.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pgbench_output() {
        let output = "transaction type: <builtin: TPC-B (sort of)>\nscaling factor: 1\n\
                      number of transactions actually processed: 12345\n\
                      latency average = 1.617 ms\ninitial connection time = 3.297 ms\n\
                      tps = 1236.702843 (without initial connection time)\n";
        assert_eq!(parse_pgbench_tps(output), Some(1236.702843));
        assert_eq!(parse_pgbench_tps("no figures here"), None);
    }

    #[test]
    fn bench_batches_never_pair_an_account_with_itself() {
        let config = BenchConfig { accounts: 7, ..BenchConfig::default() };
        let mut next_id = config.first_id + 7;
        let batch = bench_batch(&config, &mut next_id, 500);
        assert_eq!(batch.len(), 500);
        assert!(batch.iter().all(|t| t.debit_account_id != t.credit_account_id));
        let highest = config.first_id + 6;
        assert!(batch.iter().all(|t| t.debit_account_id <= highest && t.credit_account_id <= highest));
    }
}
