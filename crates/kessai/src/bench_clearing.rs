//! `kessai bench clearing`: one clearing run over many posted settlements
//! for many stores (#19): its time and the peak memory it takes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use kessai_center::books::Books;
use kessai_center::db::CenterDb;
use kessai_center::security::{SecurityServer, StateKey};
use kessai_center::service::Center;
use kessai_core::Currency;
use kessai_core::ids::PartyId;
use kessai_core::keys::SigningKey;
use kessai_core::random::OsRandom;
use kessai_core::time::{Clock, SystemClock, Timestamp};

use crate::bench_center::{Database, calibrate};

/// The process's peak resident memory (VmHWM), in KiB.
fn peak_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("/proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).context("VmHWM")?;
    Ok(line.split_whitespace().nth(1).context("VmHWM value")?.parse()?)
}

/// Resets the peak to what is resident now (Linux ≥ 4.0: clear_refs 5).
fn reset_peak() -> anyhow::Result<()> {
    std::fs::write("/proc/self/clear_refs", "5").context("resetting VmHWM through /proc/self/clear_refs")
}

pub fn run(settlements: u64, stores: u32, database: Database) -> anyhow::Result<()> {
    if stores == 0 || settlements < u64::from(stores) {
        bail!("--stores must be at least 1 and --settlements at least --stores");
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let dir = tempfile::tempdir()?;
    let pg = match database {
        Database::Postgres => Some(crate::pg_cluster::PgCluster::start(false)?),
        Database::Sqlite => None,
    };
    let (url, on) = match &pg {
        Some(pg) => (
            pg.create_database("clearing")?,
            format!("PostgreSQL (a throwaway cluster on 127.0.0.1:{}, fsync on)", pg.port),
        ),
        None => {
            (format!("sqlite:{}", dir.path().join("center.sqlite").display()), "SQLite (WAL, synchronous=FULL)".into())
        }
    };
    runtime.block_on(async {
        let db = CenterDb::open(&url).await.context("opening the center database")?;
        let mut rng = OsRandom;
        let center = Center {
            books: Books::new(db.clone()),
            db,
            security: SecurityServer::new(BTreeMap::new(), StateKey::generate(&mut rng)),
            center_id: PartyId::parse("center")?,
            center_key: Arc::new(SigningKey::generate(&mut rng)),
            published_keys: Vec::new(),
            clock: Arc::new(SystemClock),
            random: Arc::new(OsRandom),
            max_amount_minor: 1_000_000,
            outcomes: Default::default(),
            completed: Default::default(),
            in_flight: Default::default(),
            prepaid: Default::default(),
            clearing: kessai_center::clearing::ClearingPolicy { fee_bp: 250, fee_fixed_minor: 0, ..Default::default() },
            tokens: None,
        };
        println!(
            "kessai bench clearing — one run over {settlements} posted settlements for {stores} stores, on {on}, in this process"
        );
        println!("machine now: {}", calibrate());
        let seeded_at = SystemClock.now();
        let started = Instant::now();
        let total = kessai_center::clearing::seed_for_bench(&center, stores, settlements, seeded_at).await?;
        println!("seeded in {:.1} s ({total} yen owed)", started.elapsed().as_secs_f64());
        let cutoff = Timestamp::from_unix_s(seeded_at.unix_s());
        reset_peak()?;
        let before = peak_kib()?;
        let started = Instant::now();
        let report = center.clearing_run(cutoff).await?;
        let seconds = started.elapsed().as_secs_f64();
        let peak = peak_kib()?;
        let paid: u64 = report.paid.iter().filter(|(c, _)| *c == Currency::JPY).map(|(_, m)| *m).sum();
        let payouts = center.db.payouts(Some(&report.run), None, kessai_center::clearing::MAX_PAYOUTS).await?;
        let fees: u64 = payouts.iter().map(|p| p.fees_minor).sum();
        if report.payouts != u64::from(stores) || paid + fees != total {
            bail!("the run paid {} payouts of {paid} yen plus {fees} in fees for {stores} stores owed {total}", report.payouts);
        }
        center.books.ledger().check().await.context("the ledger's invariants after the run")?;
        println!(
            "run {}: {} payouts, {paid} yen paid and {fees} in fees, in {seconds:.1} s = {:.0} settlements/s; \
             peak memory {:.0} MiB (resident before the run {:.0} MiB)",
            report.run,
            report.payouts,
            settlements as f64 / seconds,
            peak as f64 / 1024.0,
            before as f64 / 1024.0
        );
        let again = Instant::now();
        let repeat = center.clearing_run(cutoff).await?;
        println!("the same run again: done before = {}, {:.3} s", repeat.done_before, again.elapsed().as_secs_f64());
        println!("machine now: {}", calibrate());
        center.db.close().await;
        anyhow::Ok(())
    })?;
    drop(pg);
    Ok(())
}
