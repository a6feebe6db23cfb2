//! `kessai bench csp` and `kessai bench bank`: the token parties' services
//! over loopback mutual TLS, called as the center calls them (#21): the
//! credit service provider's redemptions, and the bank's tokens made of
//! deposits; each first a register write (SQLite, WAL, synchronous
//! commits), then the same calls again (answered from the register).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use kessai_center::tokens::{BankLink, TokenProvider};
use kessai_core::random::SeededRandom;
use kessai_core::time::{Clock as _, SystemClock, Timestamp};
use kessai_core::token::{DepositToken, TokenId, TokenKey, TokenKeyring};
use kessai_core::{Currency, Money};

const DAY: u64 = 86_400;

fn checked(calls: u32, concurrency: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    anyhow::ensure!((1..=100_000).contains(&calls), "the number of calls: 1 to 100000");
    anyhow::ensure!((1..=64).contains(&concurrency), "--concurrency: 1 to 64");
    tokio::runtime::Runtime::new().context("starting the async runtime")
}

pub fn run(redemptions: u32, concurrency: usize) -> anyhow::Result<()> {
    checked(redemptions, concurrency)?.block_on(bench(redemptions as usize, concurrency))
}

pub fn run_bank(seals: u32, concurrency: usize) -> anyhow::Result<()> {
    checked(seals, concurrency)?.block_on(bench_bank(seals as usize, concurrency))
}

/// Key version 1, issuing now.
fn key_now() -> anyhow::Result<TokenKey> {
    let now = SystemClock.now().unix_s();
    let at = Timestamp::from_unix_s;
    Ok(TokenKey::generate(1, (at(now - DAY), at(now + 30 * DAY), at(now + 400 * DAY)), &mut SeededRandom::new(1))?)
}

/// Calls `call(i)` for i in 0..n, `concurrency` at once: prints the calls a
/// second and their p50 and p99.
async fn measure<F, Fut>(label: &str, n: usize, concurrency: usize, call: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (next, call) = (Arc::clone(&next), call.clone());
        workers.push(tokio::spawn(async move {
            let mut took = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                call(i).await?;
                took.push(t.elapsed());
            }
            anyhow::Ok(took)
        }));
    }
    let mut took: Vec<Duration> = Vec::with_capacity(n);
    for w in workers {
        took.extend(w.await??);
    }
    let elapsed = started.elapsed();
    took.sort();
    let pct = |p: usize| took[(took.len() * p / 100).min(took.len() - 1)].as_secs_f64() * 1000.0;
    println!("{label:<28} {:>10.0} {:>10.2} {:>10.2}", n as f64 / elapsed.as_secs_f64(), pct(50), pct(99));
    Ok(())
}

fn header(what: &str) {
    println!("{what}; register: SQLite, WAL, synchronous=FULL");
    println!("{:<28} {:>10} {:>10} {:>10}", "call", "per s", "p50 ms", "p99 ms");
}

async fn bench(n: usize, concurrency: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let now = SystemClock.now();
    let key = key_now()?;
    let mut ring = TokenKeyring::new();
    ring.add(TokenKey::from_json(&key.to_json()?)?)?;
    let rig = kessai_csp::rig::ProviderRig::start(tmp.path(), &[&key], None, Arc::new(SystemClock)).await?;
    let provider = Arc::new(TokenProvider::new(&rig.url, rig.client_tls("center")?));
    let mut rng = SeededRandom::new(2);
    let mut tokens = Vec::with_capacity(n);
    for i in 0..n {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let token = DepositToken {
            token_id: TokenId(id),
            user_name: "ﾍﾞﾝﾁ ﾀﾛｳ".into(),
            user_id: "m-bench".into(),
            amount: Money::new(1_000, Currency::JPY)?,
            deposited_at: now,
            expires_at: Timestamp::from_unix_s(now.unix_s() + 180 * DAY),
            bank_id: "0999".into(),
            bank_account: "0005-123-1-7654321".into(),
            card_company_id: "kessai-csp".into(),
            card_ref: "last4:4242".into(),
        };
        let mut tx = [0u8; 16];
        tx[8..].copy_from_slice(&(i as u64).to_be_bytes());
        let tx = kessai_core::ids::TransactionId::parse(&hex::encode(tx))?;
        tokens.push((ring.seal(&token, now, &mut rng)?, tx));
    }
    let tokens = Arc::new(tokens);
    header(&format!("kessai bench csp — {n} redemptions over loopback mutual TLS, {concurrency} at once"));
    for (label, expect_first) in [("redeem (register write)", true), ("redeem again (answered)", false)] {
        let (tokens, provider) = (Arc::clone(&tokens), Arc::clone(&provider));
        measure(label, n, concurrency, move |i| {
            let (tokens, provider) = (Arc::clone(&tokens), Arc::clone(&provider));
            async move {
                let (sealed, tx) = &tokens[i];
                let honoured = provider.redeem(sealed, tx, now).await?.map_err(|why| anyhow::anyhow!("{why}"))?;
                anyhow::ensure!(honoured.first == expect_first, "token {i}: first = {}", honoured.first);
                Ok(())
            }
        })
        .await?;
    }
    let held = rig.provider.held(&TokenId([0; 16]).to_string()).await?;
    anyhow::ensure!(held.is_some(), "the register holds the first token");
    Ok(())
}

/// A request for the token deposit `entry` pays for.
fn seal_request(entry: u64, reference: &str, amount: Money) -> kessai_api::bank::SealRequest {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&entry.to_be_bytes());
    kessai_api::bank::SealRequest {
        deposit: format!("{}/D{entry}", kessai_bsp::rig::POOL_ACCOUNT),
        reference: reference.into(),
        token_id: TokenId(id).to_string(),
        amount,
        user_name: "ﾍﾞﾝﾁ ﾀﾛｳ".into(),
        user_id: "m-bench".into(),
        bank_account: "0005-123-1-7654321".into(),
        card_ref: "last4:4242".into(),
    }
}

async fn bench_bank(n: usize, concurrency: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let rig = kessai_bsp::rig::BankRig::start(tmp.path(), &[&key_now()?], Arc::new(SystemClock), "").await?;
    let reference = "RF18539007547034";
    let quoted = kessai_bank::rf::Reference::parse(reference).map_err(|e| anyhow::anyhow!("{e}"))?;
    for _ in 0..n {
        rig.bank.deposit(Money::new(1_000, Currency::JPY)?, Some(&quoted), "BENCH TARO").await?;
    }
    let bank = Arc::new(BankLink::new(&rig.url, rig.client_tls("center")?));
    let amount = Money::new(1_000, Currency::JPY)?;
    header(&format!("kessai bench bank — {n} tokens made of deposits over loopback mutual TLS, {concurrency} at once"));
    for (label, expect_first) in [("seal (register write)", true), ("seal again (answered)", false)] {
        let bank = Arc::clone(&bank);
        measure(label, n, concurrency, move |i| {
            let bank = Arc::clone(&bank);
            async move {
                let entry = u64::try_from(i)? + 1;
                let (_, made) = bank
                    .seal(&seal_request(entry, reference, amount))
                    .await?
                    .map_err(|why| anyhow::anyhow!("{why}"))?;
                anyhow::ensure!(made.first == expect_first, "deposit {entry}: first = {}", made.first);
                Ok(())
            }
        })
        .await?;
    }
    let day = kessai_bank::Date::of(SystemClock.now()).to_string();
    let started = Instant::now();
    let (mut after, mut pages, mut credits) = (0, 0, 0);
    loop {
        let (page, next) = bank.statement(&day, after).await?;
        credits += kessai_bank::parse(&page)?.credits.len();
        pages += 1;
        match next {
            Some(n) => after = n,
            None => break,
        }
    }
    println!(
        "statement of the day: {credits} deposits in {pages} pages, {:.1} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}
