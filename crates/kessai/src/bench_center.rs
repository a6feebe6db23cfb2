//! `kessai bench center`: the center as its own process (SQLite), driven by
//! in-process wallets with emulated cards over HTTPS on loopback. Prints
//! settlements/s, p50/p99 per step and per settlement at full load and at
//! half that load, the center process's CPU time per settlement (and the
//! bench process's: wallets, cards, store), and HTTP
//! round trips and bytes per settlement.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kessai_card::protocol::{CardId as ChipCardId, Currency as ChipCurrency};
use kessai_card::terminal::Terminal;
use kessai_card::transport::{InProcessReader, Reader};
use kessai_card::{Card, KeySource, MemoryStorage, Personalization, personalize};
use kessai_core::ids::{CardId, OrderId, PartyId, StoreId};
use kessai_core::keys::SigningKey;
use kessai_core::messages::DisplayText;
use kessai_core::messages::bill::LineItem;
use kessai_core::random::OsRandom;
use kessai_core::time::SystemClock;
use kessai_core::{Currency, Money};
use kessai_http::HttpsClient;
use kessai_merchant::{BillRequest, Merchant};
use kessai_scp03::{CommandApdu, KeyVersion, ResponseApdu};
use serde_json::{Value, json};

/// The whole purchase's steps, in order.
const STEPS: [&str; 4] = ["create", "authenticate", "balance", "complete"];
/// Value on each bench card, and the price of one purchase.
const CARD_VALUE_MINOR: u64 = 1_000_000_000;
const PRICE_MINOR: u64 = 100;

struct Sample {
    step_us: [u64; 4],
    total_us: u64,
    bytes: u64,
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("/proc stat")?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    Ok(f.get(11).context("utime")?.parse::<u64>()? + f.get(12).context("stime")?.parse::<u64>()?)
}

struct Setup {
    _dir: tempfile::TempDir,
    child: std::process::Child,
    base: String,
    client: HttpsClient,
    merchant: Arc<Merchant>,
    cards: Vec<(CardId, Terminal<InProcessReader<MemoryStorage>>)>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kessai_cmd(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new(std::env::current_exe()?).args(args).output()?;
    if !out.status.success() {
        bail!("kessai {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

async fn setup(wallets: usize, center_log: Option<&std::path::Path>) -> anyhow::Result<Setup> {
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("ca");
    let ca_s = ca.to_str().context("path")?;
    kessai_cmd(&["pki", "init", "--dir", ca_s])?;
    kessai_cmd(&["pki", "issue", "--dir", ca_s, "--server", "localhost", "--san", "127.0.0.1"])?;
    kessai_cmd(&["pki", "issue", "--dir", ca_s, "--client", "center"])?;
    kessai_cmd(&["pki", "issue", "--dir", ca_s, "--client", "admin"])?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let config_path = dir.path().join("center.toml");
    std::fs::write(
        &config_path,
        format!(
            "party_id = \"center\"\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"https://127.0.0.1:{port}\"\n\
             data_dir = \"{}\"\ndelivery_interval_ms = 60000\n[tls]\nca_dir = \"{ca_s}\"\nserver_name = \"localhost\"\n\
             client_name = \"center\"\n[limits]\nmax_body_bytes = 65536\nrequest_timeout_ms = 15000\n\
             rate_per_client_per_s = 0\nrate_burst = 0\n",
            dir.path().join("data").display()
        ),
    )?;
    let config = kessai_center::config::CenterConfig::load(&config_path)?;
    kessai_center::app::init(&config, None).await?;
    let masters = kessai_center::app::master_keys(&config)?;
    let master = masters.get(&1).context("key version 1")?.clone();
    let log = |log: Option<&std::path::Path>| -> anyhow::Result<std::process::Stdio> {
        Ok(match log {
            Some(path) => std::fs::OpenOptions::new().create(true).append(true).open(path)?.into(),
            None => std::process::Stdio::null(),
        })
    };
    let child = std::process::Command::new(std::env::current_exe()?)
        .args(["center", "run", "--config", config_path.to_str().context("path")?])
        .stdout(log(center_log)?)
        .stderr(log(center_log)?)
        .spawn()?;
    let ca_dir = kessai_tls::CaDir::new(&ca);
    let client = HttpsClient::new(kessai_tls::client_config(&ca_dir.ca_cert(), None)?, 15_000);
    let admin = HttpsClient::new(kessai_tls::client_config(&ca_dir.ca_cert(), Some((&ca_dir, "admin")))?, 15_000);
    let base = format!("https://127.0.0.1:{port}");
    wait_healthy(&client, &base).await?;
    let merchant =
        Merchant::new(StoreId::parse("kessai-mall")?, SigningKey::generate(&mut OsRandom), PartyId::parse("center")?);
    let store = json!({ "id": "kessai-mall", "name": "Kessai Mall", "jwks": merchant.jwks() });
    admin.post_json(&format!("{base}/v1/admin/stores"), &store, &[]).await?;
    let mut cards = Vec::with_capacity(wallets);
    for n in 0..wallets {
        cards.push(bench_card(&admin, &base, &master, n).await?);
    }
    Ok(Setup { _dir: dir, child, base, client, merchant: Arc::new(merchant), cards })
}

async fn wait_healthy(client: &HttpsClient, base: &str) -> anyhow::Result<()> {
    for _ in 0..200 {
        if client.get(&format!("{base}/healthz")).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the center did not start")
}

/// A card in memory with diversified keys and value, registered with the
/// same value in the books.
async fn bench_card(
    admin: &HttpsClient,
    base: &str,
    master: &kessai_scp03::diversify::MasterKeys,
    n: usize,
) -> anyhow::Result<(CardId, Terminal<InProcessReader<MemoryStorage>>)> {
    let mut id_bytes = [0x42, 0x45, 0x4e, 0x43, 0, 0, 0, 0];
    id_bytes[4..].copy_from_slice(&(n as u32).to_be_bytes());
    let id = CardId::from_bytes(id_bytes);
    let version = KeyVersion::new(1).context("kvn")?;
    let p = Personalization {
        card_id: ChipCardId(id_bytes),
        keys: KeySource::Diversified { master: master.clone(), version },
        currency: ChipCurrency::new("JPY").map_err(|e| anyhow::anyhow!("{e}"))?,
        max_balance_minor: CARD_VALUE_MINOR,
    };
    let card = Card::open(MemoryStorage::new(personalize(&p)?.to_vec()))?;
    let mut t = Terminal::new(InProcessReader::new(card));
    t.select().map_err(|e| anyhow::anyhow!("{e}"))?;
    let keys = kessai_scp03::diversify::diversify(master, &id_bytes, version);
    let s = t.open_session(keys, [7; 8]).map_err(|e| anyhow::anyhow!("{e}"))?;
    let req = kessai_card::protocol::TransferRequest {
        tx_id: kessai_card::protocol::TxId([0xEE; 16]),
        amount_minor: CARD_VALUE_MINOR,
        counterpart: *b"BENCH!!!",
        order_ref: [0; 16],
        time_unix_s: 0,
    };
    t.secure(s, &kessai_card::protocol::credit_command(&req)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let body = json!({ "card_id": id.to_string(), "key_version": 1, "currency": "JPY",
                       "max_balance_minor": CARD_VALUE_MINOR, "initial_value_minor": CARD_VALUE_MINOR });
    let (status, _) = admin.post_json(&format!("{base}/v1/admin/cards"), &body, &[]).await?;
    if !status.is_success() {
        bail!("registering a bench card: {status}");
    }
    Ok((id, t))
}

fn relay(card: &mut Terminal<InProcessReader<MemoryStorage>>, reply: &Value) -> anyhow::Result<Value> {
    let mut answers = Vec::new();
    for h in reply["apdus"].as_array().context("apdus")? {
        let cmd = CommandApdu::parse(&hex::decode(h.as_str().context("hex")?)?)?;
        let answer = card.reader_mut().transmit(&cmd.to_bytes())?;
        answers.push(hex::encode(ResponseApdu::parse(&answer)?.to_bytes()));
    }
    Ok(json!({ "responses": answers }))
}

/// One whole purchase, timed per step.
async fn purchase(
    client: &HttpsClient,
    base: &str,
    merchant: &Merchant,
    card: &mut (CardId, Terminal<InProcessReader<MemoryStorage>>),
    n: u64,
) -> anyhow::Result<Sample> {
    let line = LineItem::new("bench", DisplayText::parse("Bench item")?, 1, Money::new(PRICE_MINOR, Currency::JPY)?)?;
    let request = BillRequest {
        order_id: OrderId::parse(&format!("b{}-{n}", card.0))?,
        member: None,
        store_name: DisplayText::parse("Kessai Mall")?,
        lines: vec![line],
        lifetime_s: 600,
    };
    let bill = merchant.sign_bill(request, &mut OsRandom, &SystemClock)?;
    let start = Instant::now();
    let mut sample = Sample { step_us: [0; 4], total_us: 0, bytes: 0 };
    let mut reply = Value::Null;
    let mut id = String::new();
    for (i, step) in STEPS.iter().enumerate() {
        let (url, body) = if i == 0 {
            (format!("{base}/v1/settlements"), json!({ "bill": bill.token(), "card_id": card.0.to_string() }))
        } else {
            (format!("{base}/v1/settlements/{id}/{step}"), relay(&mut card.1, &reply)?)
        };
        let key = format!("{}-{n}-{step}", card.0);
        let t0 = Instant::now();
        let (status, bytes) = client.post_json(&url, &body, &[("idempotency-key", &key)]).await?;
        sample.step_us[i] = t0.elapsed().as_micros() as u64;
        sample.bytes += (body.to_string().len() + bytes.len()) as u64;
        if !status.is_success() {
            bail!("{step}: {status} {}", String::from_utf8_lossy(&bytes));
        }
        reply = serde_json::from_slice(&bytes)?;
        if i == 0 {
            id = reply["settlement_id"].as_str().context("settlement id")?.to_owned();
        }
    }
    if reply["phase"] != "completed" {
        bail!("purchase ended {}", reply["phase"]);
    }
    sample.total_us = start.elapsed().as_micros() as u64;
    Ok(sample)
}

/// Runs every wallet for `duration`; with `interval`, each wallet starts a
/// purchase every `interval` (an open-loop rate), else back to back.
async fn phase(
    s: &mut Setup,
    duration: Duration,
    interval: Option<Duration>,
) -> anyhow::Result<(Vec<Sample>, f64, (u64, u64))> {
    let cpu0 = cpu_ticks(s.child.id())?;
    let own0 = cpu_ticks(std::process::id())?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    let wallets = u32::try_from(s.cards.len()).unwrap_or(1).max(1);
    for (i, mut card) in std::mem::take(&mut s.cards).into_iter().enumerate() {
        // Wallets start evenly spread over one interval, not all at once.
        let offset = interval.map_or(Duration::ZERO, |every| every * u32::try_from(i).unwrap_or(0) / wallets);
        let (client, base, merchant) = (s.client.clone(), s.base.clone(), s.merchant.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut n = 0u64;
            tokio::time::sleep(offset).await;
            while start.elapsed() < duration {
                n += 1;
                let nonce = start.elapsed().as_nanos() as u64;
                samples.push(purchase(&client, &base, &merchant, &mut card, nonce ^ n).await?);
                if let Some(every) = interval {
                    let next = start + offset + every * u32::try_from(n).unwrap_or(u32::MAX);
                    tokio::time::sleep_until(next.into()).await;
                }
            }
            anyhow::Ok((card, samples))
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let (card, samples) = t.await??;
        s.cards.push(card);
        all.extend(samples);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_ticks(s.child.id())? - cpu0;
    let own = cpu_ticks(std::process::id())? - own0;
    Ok((all, elapsed, (cpu, own)))
}

/// `cpu_ticks`: the center's, and this process's (wallets, cards, store).
fn report(label: &str, samples: &[Sample], elapsed_s: f64, (cpu_ticks, own_ticks): (u64, u64)) {
    let n = samples.len().max(1) as f64;
    println!(
        "{label}: {} settlements in {elapsed_s:.1} s = {:.0} settlements/s",
        samples.len(),
        samples.len() as f64 / elapsed_s
    );
    for (i, step) in STEPS.iter().enumerate() {
        let mut v: Vec<u64> = samples.iter().map(|s| s.step_us[i]).collect();
        v.sort_unstable();
        println!("  {step:<13} p50 {:>7.2} ms  p99 {:>7.2} ms", pct(&v, 0.5), pct(&v, 0.99));
    }
    let mut total: Vec<u64> = samples.iter().map(|s| s.total_us).collect();
    total.sort_unstable();
    println!(
        "  {:<13} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        "settlement",
        pct(&total, 0.5),
        pct(&total, 0.99),
        pct(&total, 1.0)
    );
    let tick_ms = 1000.0 / 100.0; // USER_HZ
    println!(
        "  center CPU per settlement: {:.2} ms (wallets, cards and store in the bench process: {:.2} ms)",
        cpu_ticks as f64 * tick_ms / n,
        own_ticks as f64 * tick_ms / n
    );
    let bytes: u64 = samples.iter().map(|s| s.bytes).sum();
    println!("  HTTP round trips per settlement: {}; JSON bytes per settlement: {:.0}", STEPS.len(), bytes as f64 / n);
}

/// This machine's speed just now, printed so runs can be compared: on a
/// shared host both move from run to run, and every figure with them.
/// SHA-256 on one core, and a round trip between two threads (what every
/// SQLite statement and every wake-up costs).
fn calibrate() -> String {
    format!("SHA-256 on one core {:.0} MB/s; thread round trip {:.1} µs", sha256_mb_s(), thread_round_trip_us())
}

fn thread_round_trip_us() -> f64 {
    const ROUNDS: u32 = 20_000;
    let (ping, pinged) = std::sync::mpsc::channel::<u32>();
    let (pong, ponged) = std::sync::mpsc::channel::<u32>();
    let echo = std::thread::spawn(move || {
        while let Ok(n) = pinged.recv() {
            if pong.send(n).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    for n in 0..ROUNDS {
        if ping.send(n).is_err() || ponged.recv().is_err() {
            break;
        }
    }
    let took = start.elapsed();
    drop(ping);
    let _ = echo.join();
    took.as_secs_f64() * 1e6 / f64::from(ROUNDS)
}

fn sha256_mb_s() -> f64 {
    const BYTES: usize = 64 << 20;
    let chunk = vec![0x5a_u8; 1 << 20];
    let start = Instant::now();
    let mut digest = kessai_core::digest::Sha256Digest::of(&chunk);
    for _ in 1..(BYTES >> 20) {
        digest = kessai_core::digest::Sha256Digest::of(&[digest.as_bytes().as_slice(), &chunk].concat());
    }
    std::hint::black_box(digest);
    BYTES as f64 / 1e6 / start.elapsed().as_secs_f64()
}

pub fn run(wallets: usize, seconds: u64, center_log: Option<&std::path::Path>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let mut s = setup(wallets, center_log).await?;
        println!(
            "kessai bench center — center process on SQLite (WAL, synchronous=FULL), {wallets} wallets over HTTPS"
        );
        println!("machine now: {}", calibrate());
        let (samples, elapsed, cpu) = phase(&mut s, Duration::from_secs(seconds), None).await?;
        report("full load", &samples, elapsed, cpu);
        let rate = samples.len() as f64 / elapsed;
        // Half the load: each wallet starts one purchase per `every`, so all
        // together offer rate/2 whatever the latency.
        let every = Duration::from_secs_f64(wallets as f64 / (rate / 2.0).max(0.1));
        let (half, elapsed, cpu) = phase(&mut s, Duration::from_secs(seconds), Some(every)).await?;
        report("half load", &half, elapsed, cpu);
        println!("machine now: {}", calibrate());
        Ok(())
    })
}
