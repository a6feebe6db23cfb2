//! `kessai bench csp`: the credit service provider's redemptions over
//! loopback mutual TLS, as the center asks them (#21): each a register
//! write (SQLite, WAL, synchronous commits), then the same calls again
//! (answered from the register).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use kessai_center::tokens::TokenProvider;
use kessai_core::random::SeededRandom;
use kessai_core::time::{Clock as _, SystemClock, Timestamp};
use kessai_core::token::{DepositToken, TokenId, TokenKey, TokenKeyring};
use kessai_core::{Currency, Money};

const DAY: u64 = 86_400;

pub fn run(redemptions: u32, concurrency: usize) -> anyhow::Result<()> {
    anyhow::ensure!((1..=100_000).contains(&redemptions), "--redemptions: 1 to 100000");
    anyhow::ensure!((1..=64).contains(&concurrency), "--concurrency: 1 to 64");
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(bench(redemptions as usize, concurrency))
}

async fn bench(n: usize, concurrency: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let now = SystemClock.now();
    let at = |s: u64| Timestamp::from_unix_s(s);
    let windows = (at(now.unix_s() - DAY), at(now.unix_s() + 30 * DAY), at(now.unix_s() + 400 * DAY));
    let key = TokenKey::generate(1, windows, &mut SeededRandom::new(1))?;
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
            expires_at: at(now.unix_s() + 180 * DAY),
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
    println!(
        "kessai bench csp — {n} redemptions over loopback mutual TLS, {concurrency} at once; register: SQLite, WAL, synchronous=FULL"
    );
    println!("{:<28} {:>10} {:>10} {:>10}", "call", "per s", "p50 ms", "p99 ms");
    for (label, expect_first) in [("redeem (register write)", true), ("redeem again (answered)", false)] {
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut workers = Vec::with_capacity(concurrency);
        for _ in 0..concurrency {
            let (next, tokens, provider) = (Arc::clone(&next), Arc::clone(&tokens), Arc::clone(&provider));
            workers.push(tokio::spawn(async move {
                let mut took = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((sealed, tx)) = tokens.get(i) else { break };
                    let t = Instant::now();
                    let honoured = provider.redeem(sealed, tx, now).await?.map_err(|why| anyhow::anyhow!("{why}"))?;
                    anyhow::ensure!(honoured.first == expect_first, "token {i}: first = {}", honoured.first);
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
    }
    let held = rig.provider.held(&TokenId([0; 16]).to_string()).await?;
    anyhow::ensure!(held.is_some(), "the register holds the first token");
    Ok(())
}
