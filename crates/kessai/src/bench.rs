//! `kessai bench`: benchmarks that print figures.

use std::hint::black_box;
use std::time::Instant;

use anyhow::Context;
use kessai_core::ids::PartyId;
use kessai_core::jws::{self, Claims, MessageKind};
use kessai_core::keys::{KeyDirectory, PublicKey, SigningKey, Validity};
use kessai_core::random::SeededRandom;
use kessai_core::samples;
use kessai_core::time::{Clock, FixedClock, SystemClock};

/// Goal of issue #2: verifying a typical bill costs at most 1.3× a raw
/// Ed25519 verification of the same bytes.
const BILL_VERIFY_GOAL_RATIO: f64 = 1.3;

fn per_second(iterations: u32, mut op: impl FnMut()) -> f64 {
    // Warm caches and the branch predictor before timing.
    for _ in 0..iterations / 20 {
        op();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        op();
    }
    f64::from(iterations) / start.elapsed().as_secs_f64()
}

struct Row {
    kind: &'static str,
    bytes: usize,
    sign_per_s: f64,
    verify_per_s: f64,
    raw_per_s: f64,
}

fn measure<M: MessageKind>(
    kind: &'static str,
    claims: &Claims,
    body: &M,
    key: &SigningKey,
    keys: &KeyDirectory,
    clock: &dyn Clock,
    iterations: u32,
) -> anyhow::Result<Row> {
    let token = jws::sign(claims, body, key).with_context(|| format!("signing a {kind}"))?;
    jws::verify::<M>(&token, keys, clock).with_context(|| format!("verifying a {kind}"))?;
    let sign_per_s = per_second(iterations, || {
        black_box(jws::sign(black_box(claims), black_box(body), key).ok());
    });
    let verify_per_s = per_second(iterations, || {
        black_box(jws::verify::<M>(black_box(&token), keys, clock).ok());
    });
    // Raw Ed25519 over exactly the signing input, with a key decoded once,
    // as the directory holds it.
    let (input, sig) = token.rsplit_once('.').context("token shape")?;
    let mut signature = [0u8; 64];
    kessai_core::base64url::decode_exact(sig, &mut signature).context("signature")?;
    let public = PublicKey::from_bytes(key.public().as_bytes())?;
    let raw_per_s = per_second(iterations, || {
        black_box(public.verify(black_box(input.as_bytes()), &signature));
    });
    Ok(Row { kind, bytes: token.len(), sign_per_s, verify_per_s, raw_per_s })
}

pub fn jws(iterations: u32) -> anyhow::Result<()> {
    let mut rng = SeededRandom::new(2026);
    let now = SystemClock.now();
    let clock = FixedClock::new(now);
    let store = SigningKey::generate(&mut rng);
    let center = SigningKey::generate(&mut rng);
    let mut keys = KeyDirectory::new();
    keys.insert(PartyId::parse(samples::MALL)?, store.public(), Validity::always())?;
    keys.insert(PartyId::parse(samples::CENTER)?, center.public(), Validity::always())?;

    let (c, bill) = samples::bill(&mut rng, now)?;
    let bill_token = jws::sign(&c, &bill, &store)?;
    let mut rows = vec![measure("bill (SIG1)", &c, &bill, &store, &keys, &clock, iterations)?];
    let (c, offer) = samples::offer(&mut rng, now, &bill_token)?;
    rows.push(measure("offer (SIG2)", &c, &offer, &center, &keys, &clock, iterations)?);
    let (c, done) = samples::completion(&mut rng, now, &offer)?;
    let done_token = jws::sign(&c, &done, &center)?;
    rows.push(measure("completion (SIG3)", &c, &done, &center, &keys, &clock, iterations)?);
    let (c, receipt) = samples::receipt(&mut rng, now, &done, &done_token)?;
    rows.push(measure("receipt (SIG4)", &c, &receipt, &store, &keys, &clock, iterations)?);
    let (c, update) = samples::value_update(&mut rng, now)?;
    rows.push(measure("value update (SIG5)", &c, &update, &center, &keys, &clock, iterations)?);
    print_rows(&rows, iterations);
    Ok(())
}

fn print_rows(rows: &[Row], iterations: u32) {
    println!("kessai bench jws — {iterations} operations per figure, one core");
    println!(
        "{:<20} {:>7} {:>10} {:>10} {:>14} {:>12}",
        "kind", "bytes", "sign/s", "verify/s", "raw verify/s", "verify cost"
    );
    for r in rows {
        println!(
            "{:<20} {:>7} {:>10.0} {:>10.0} {:>14.0} {:>11.3}×",
            r.kind,
            r.bytes,
            r.sign_per_s,
            r.verify_per_s,
            r.raw_per_s,
            r.raw_per_s / r.verify_per_s
        );
    }
    if let Some(bill) = rows.first() {
        let ratio = bill.raw_per_s / bill.verify_per_s;
        let verdict = if ratio <= BILL_VERIFY_GOAL_RATIO { "met" } else { "NOT met" };
        println!(
            "goal: a typical bill verifies at ≤ {BILL_VERIFY_GOAL_RATIO}× raw Ed25519 cost: {ratio:.3}× ({verdict})"
        );
    }
}

/// `kessai bench ledger`: the ledger's throughput on SQLite and PostgreSQL,
/// and PostgreSQL's figure as a multiple of pgbench (TPC-B) on the same
/// cluster, measured in the same run.
pub fn ledger(seconds: u64, postgres: Option<String>, pg_bin: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    use kessai_ledger::Ledger;
    use kessai_ledger::bench::{self as lb, BenchConfig};
    let config =
        BenchConfig { duration_per_size: std::time::Duration::from_secs(seconds.max(1)), ..BenchConfig::default() };
    let postgres = postgres.or_else(|| std::env::var("KESSAI_TEST_DATABASE_URL").ok());
    let pg_bin = pg_bin.or_else(|| std::env::var_os("KESSAI_TEST_PG_BIN").map(Into::into));
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let dir = tempfile::tempdir().context("a temporary directory")?;
        println!("kessai bench ledger — SQLite (WAL, synchronous=FULL)");
        let sqlite = Ledger::open_sqlite(dir.path().join("bench.sqlite")).await?;
        lb::transfers_per_second(&sqlite, &config).await?;
        sqlite.check().await.map_err(|e| anyhow::anyhow!("invariants after the SQLite run: {e}"))?;
        let Some(url) = postgres else {
            println!("PostgreSQL skipped: give --postgres URL, or run under scripts/with-postgres");
            return Ok(());
        };
        println!("kessai bench ledger — PostgreSQL (READ COMMITTED, row locks)");
        let schema = format!("ledger_bench_{}", std::process::id());
        let pg = Ledger::connect_postgres(&url, Some(&schema)).await?;
        let figures = lb::transfers_per_second(&pg, &config).await?;
        pg.check().await.map_err(|e| anyhow::anyhow!("invariants after the PostgreSQL run: {e}"))?;
        let Some(bin) = pg_bin else {
            println!("pgbench comparison skipped: give --pg-bin DIR");
            return Ok(());
        };
        let tps = lb::pgbench_tps(&bin, &url, 2, 10).await?;
        for f in figures {
            println!(
                "postgres batch {:>5}: {:>9.0} transfers/s = {:.1}× pgbench",
                f.batch_events,
                f.transfers_per_s,
                f.transfers_per_s / tps
            );
        }
        Ok(())
    })
}
