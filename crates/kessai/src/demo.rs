//! `kessai demo`: a complete purchase with no browser, against the parties
//! of `kessai up` started in this process on free loopback ports in a
//! temporary directory. It prints a transcript — every signed message with
//! its signer, key and an independent verification, every APDU the wallet
//! exchanged with the card and what it means, the ledger transfers and the
//! balances before and after — and fails if any of it does not hold.
//!
//! `--repeat N` times N purchases from the "pay" action (the wallet gets
//! the signed bill) to the completion (SIG3 verified) and to the store's
//! receipt (SIG4 verified: the completion page with the download).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use kessai_center::books::{card_float_id, store_payable_ids};
use kessai_core::ids::{CardId, PartyId, StoreId};
use kessai_core::keys::KeyDirectory;
use kessai_core::messages::{bill, completion, offer, receipt};
use kessai_core::time::SystemClock;
use kessai_core::{Currency, Money};
use kessai_http::HttpsClient;
use kessai_ledger::{Ledger, TransferFlags};
use kessai_wallet::{ReaderConfig, Wallet, WalletConfig};

use crate::up::{self, Ports};

/// What every demo purchase buys: one e-book at the bookshop.
const MEMBER: &str = "bookshop";
const SKU: &str = "ebook-kessai-001";
const PRICE_MINOR: u64 = 1_200;
/// The e-book's download starts with this.
const DOWNLOAD_STARTS_WITH: &str = "A Short Guide to Stored Value";
/// The card `kessai up` issues, and a second one for `--repeat` runs
/// (the demo card's JPY 30,000 buys only 25 e-books).
const DEMO_CARD_ID: &str = "4b45535341490001";
const LOAD_CARD_ID: &str = "4b45535341490002";
/// Most purchases one run makes: a bounded run (about a minute at most)
/// and a load card of at most JPY 1,198,800.
const MAX_REPEAT: u32 = 1_000;
/// How long the parties get to start, and a purchase to finish.
const START_WAIT_MS: u64 = 20_000;
const RECEIPT_WAIT_MS: u64 = 10_000;
/// The center's completion-delivery sweep in the demo (`kessai up` uses
/// 1 s): the receipt (SIG4) reaches the wallet at most this much after SIG3.
const DELIVERY_INTERVAL_MS: u64 = 10;
const RECEIPT_POLL_MS: u64 = 2;
const HTTP_TIMEOUT_MS: u64 = 10_000;
/// Hex digits of an APDU shown before it is cut.
const APDU_HEX_SHOWN: usize = 32;

/// One line of a purchase's transcript, in the order it happened.
#[derive(Debug, Clone)]
enum Event {
    Apdu { command: Vec<u8>, answer: Vec<u8> },
    Signed(Kind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bill,
    Offer,
    Completion,
    Receipt,
}

type EventLog = Arc<Mutex<Vec<Event>>>;

fn push(log: &EventLog, event: Event) {
    // A poisoned log only means an observer panicked; the events are intact.
    log.lock().unwrap_or_else(|p| p.into_inner()).push(event);
}

fn take(log: &EventLog) -> Vec<Event> {
    std::mem::take(&mut *log.lock().unwrap_or_else(|p| p.into_inner()))
}

/// The parties, running in this process.
struct Parties {
    store_url: String,
    center_url: String,
    http: HttpsClient,
    mall: PartyId,
    center_party: PartyId,
}

/// One finished purchase.
struct Purchase {
    order_id: String,
    settlement_id: String,
    to_completion: Duration,
    to_receipt: Duration,
    events: Vec<Event>,
    tokens: Tokens,
    download: String,
}

struct Tokens {
    bill: String,
    offer: String,
    completion: String,
    receipt: String,
}

pub fn run(repeat: u32) -> anyhow::Result<()> {
    ensure!((1..=MAX_REPEAT).contains(&repeat), "--repeat must be between 1 and {MAX_REPEAT}");
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(demo(repeat))
}

/// Five free loopback ports, held together while chosen so they differ.
fn free_ports() -> anyhow::Result<Ports> {
    let bind = || std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port");
    let (a, b, c, d, e) = (bind()?, bind()?, bind()?, bind()?, bind()?);
    Ok(Ports {
        center: a.local_addr()?.port(),
        store: b.local_addr()?.port(),
        wallet: c.local_addr()?.port(),
        csp: d.local_addr()?.port(),
        bank: e.local_addr()?.port(),
    })
}

async fn demo(repeat: u32) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir().context("a temporary directory")?;
    let mut prepared = up::prepare(tmp.path(), free_ports()?).await.context("preparing the parties")?;
    prepared.center.delivery_interval_ms = DELIVERY_INTERVAL_MS;
    // One client (this process) on loopback makes every request; the
    // per-client rate limit (50/s) would measure the limiter, not the
    // protocol, once `--repeat` runs purchases back to back.
    prepared.center.limits.rate_per_client_per_s = 0;
    prepared.store.limits.rate_per_client_per_s = 0;
    let load_wallet = match repeat {
        1 => None,
        n => Some(issue_load_card(&prepared.center, &prepared.wallet, tmp.path(), u64::from(n - 1)).await?),
    };
    let ledger_path = prepared.center.data_dir.join("center.sqlite");
    let wallet_listen = prepared.wallet.listen;
    let demo_wallet = WalletConfig { data_dir: tmp.path().join("demo-wallet"), ..prepared.wallet.clone() };
    let card_image = prepared.card_image.clone();
    let parties = Parties {
        store_url: prepared.store.public_url.clone(),
        center_url: prepared.center.public_url.clone(),
        http: HttpsClient::new(
            kessai_tls::client_config(&tmp.path().join("ca").join("ca.crt"), None)?,
            HTTP_TIMEOUT_MS,
        ),
        mall: PartyId::parse(prepared.store.mall_id.as_str())?,
        center_party: prepared.center.party_id.clone(),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(up::start(prepared, stopped));
    // `up` charges the empty demo card (SIG5) before its wallet server
    // starts; only then may this process open the card too.
    wait_for_wallet(wallet_listen, &running).await?;
    let before = Books::read(&ledger_path).await?;
    let image_before = card_balance(&card_image)?;
    let outcome = purchases(&parties, demo_wallet, load_wallet, repeat, &running).await;
    let _ = stop.send(true);
    match running.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.context("the parties stopped with an error")),
        Err(e) => bail!("the parties' task failed: {e}"),
    }
    let (first, times) = outcome?;
    let after = Books::read(&ledger_path).await?;
    let image_after = card_balance(&card_image)?;
    print_books(&before, &after, image_before, image_after, repeat)?;
    if repeat > 1 {
        print_times(&times);
    }
    println!("ok: SIG1–SIG4 verified, {} APDUs, books agree with the card", count_apdus(&first.events));
    Ok(())
}

/// A second card holding `purchases` e-books, for `--repeat`.
async fn issue_load_card(
    center: &kessai_center::config::CenterConfig,
    wallet: &WalletConfig,
    dir: &Path,
    purchases: u64,
) -> anyhow::Result<WalletConfig> {
    let image = dir.join("load-card.img");
    let value = purchases.checked_mul(PRICE_MINOR).context("too many purchases")?;
    let req = kessai_center::issue::IssueCard {
        image: &image,
        card_id: CardId::parse(LOAD_CARD_ID)?,
        key_version: None,
        currency: Currency::JPY,
        max_balance_minor: value,
        initial_value_minor: value,
    };
    kessai_center::issue::issue_card(center, &req).await.context("issuing the load card")?;
    Ok(WalletConfig { data_dir: dir.join("load-wallet"), reader: ReaderConfig::InProcess { image }, ..wallet.clone() })
}

type Times = Vec<(Duration, Duration)>;

/// Every purchase; the first on the demo card, printed in full.
async fn purchases(
    parties: &Parties,
    demo_wallet: WalletConfig,
    load_wallet: Option<WalletConfig>,
    repeat: u32,
    running: &tokio::task::JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<(Purchase, Times)> {
    wait_until_up(parties, running).await?;
    let store_keys = kessai_wallet::center::fetch_jwks(
        &parties.http,
        &format!("{}/.well-known/jwks.json", parties.store_url),
        &parties.mall,
    )
    .await?;
    let center_keys = kessai_wallet::center::fetch_jwks(
        &parties.http,
        &format!("{}/.well-known/jwks.json", parties.center_url),
        &parties.center_party,
    )
    .await?;
    println!("kessai demo: center {}, shop {}, card {DEMO_CARD_ID}", parties.center_url, parties.store_url);
    let log: EventLog = Arc::default();
    let wallet = observed_wallet(demo_wallet, &log).await?;
    let first = purchase(parties, &wallet, &log).await.context("purchase 1")?;
    print_purchase(parties, &first, &store_keys, &center_keys)?;
    wallet.records().close().await;
    let mut times = vec![(first.to_completion, first.to_receipt)];
    if let Some(config) = load_wallet {
        let wallet = observed_wallet(config, &log).await?;
        for n in 2..=repeat {
            let p = purchase(parties, &wallet, &log).await.with_context(|| format!("purchase {n}"))?;
            verify_all(&p.tokens, &store_keys, &center_keys).with_context(|| format!("purchase {n}"))?;
            times.push((p.to_completion, p.to_receipt));
        }
        wallet.records().close().await;
    }
    Ok((first, times))
}

async fn observed_wallet(config: WalletConfig, log: &EventLog) -> anyhow::Result<Wallet> {
    let mut wallet = Wallet::open(config).await?;
    let log = Arc::clone(log);
    wallet.observe_apdus(Arc::new(move |command: &[u8], answer: &[u8]| {
        push(&log, Event::Apdu { command: command.to_vec(), answer: answer.to_vec() });
    }));
    Ok(wallet)
}

/// Waits for the wallet's server (plain HTTP on loopback), which `up`
/// starts only after the demo card holds its value.
async fn wait_for_wallet(
    listen: std::net::SocketAddr,
    running: &tokio::task::JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if running.is_finished() {
            bail!("the parties stopped while starting");
        }
        if tokio::net::TcpStream::connect(listen).await.is_ok() {
            return Ok(());
        }
        ensure!(started.elapsed() < Duration::from_millis(START_WAIT_MS), "the wallet on {listen} did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_until_up(parties: &Parties, running: &tokio::task::JoinHandle<anyhow::Result<()>>) -> anyhow::Result<()> {
    let started = Instant::now();
    for url in [&parties.center_url, &parties.store_url] {
        loop {
            if running.is_finished() {
                bail!("the parties stopped while starting");
            }
            if let Ok((status, _)) = parties.http.get(&format!("{url}/healthz")).await
                && status.is_success()
            {
                break;
            }
            ensure!(started.elapsed() < Duration::from_millis(START_WAIT_MS), "{url} did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// The bill hand-off of a new order, made through the shop's forms as a
/// browser would: cart (cookie), order, then `GET /orders/{id}/bill`.
async fn place_order(parties: &Parties) -> anyhow::Result<(String, String, String)> {
    let shop = format!("{}/shops/{MEMBER}", parties.store_url);
    let (status, headers, _) =
        parties.http.post_form(&format!("{shop}/cart"), &[("sku", SKU), ("quantity", "1")], &[]).await?;
    ensure!(status.as_u16() == 303, "adding to the cart answered {status}");
    let set_cookie = headers.get("set-cookie").and_then(|v| v.to_str().ok()).context("the cart sets no cookie")?;
    let cookie = set_cookie.split(';').next().unwrap_or_default();
    let (status, headers, _) =
        parties.http.post_form(&format!("{shop}/orders"), &[("method", "kessai-card")], &[("cookie", cookie)]).await?;
    ensure!(status.as_u16() == 303, "placing the order answered {status}");
    let location = headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let order_id = location.strip_prefix("/orders/").context("the order has no page")?.to_owned();
    let (status, body) = parties.http.get(&format!("{}/orders/{order_id}/bill", parties.store_url)).await?;
    ensure!(status.is_success(), "the bill hand-off answered {status}");
    let hand_off: serde_json::Value = serde_json::from_slice(&body)?;
    let field = |name: &str| hand_off[name].as_str().map(str::to_owned).context("the bill hand-off is incomplete");
    Ok((order_id, field("bill")?, field("return_url")?))
}

/// One purchase; the clock runs from the "pay" action to SIG3 and SIG4.
async fn purchase(parties: &Parties, wallet: &Wallet, log: &EventLog) -> anyhow::Result<Purchase> {
    let (order_id, bill_token, return_url) = place_order(parties).await?;
    take(log);
    push(log, Event::Signed(Kind::Bill));
    let pay = Instant::now();
    let offered = wallet.begin(&bill_token, &return_url, &mut |_| {}).await?;
    push(log, Event::Signed(Kind::Offer));
    let settlement_id = offered.settlement_id().to_string();
    ensure!(offered.view().amount.amount_minor() == PRICE_MINOR, "the offer is not for the e-book's price");
    let relayed = wallet.relay_debit(offered).await?;
    wallet.complete(relayed).await?;
    let to_completion = pay.elapsed();
    push(log, Event::Signed(Kind::Completion));
    let receipt = loop {
        if let Some(r) = wallet.poll_receipt(&settlement_id).await? {
            break r;
        }
        ensure!(pay.elapsed() < Duration::from_millis(RECEIPT_WAIT_MS), "the store's receipt did not arrive");
        tokio::time::sleep(Duration::from_millis(RECEIPT_POLL_MS)).await;
    };
    let to_receipt = pay.elapsed();
    push(log, Event::Signed(Kind::Receipt));
    ensure!(receipt.order_id == order_id && receipt.delivery == "download", "the receipt is not for this order");
    let record = wallet.record(&settlement_id).await?;
    let token = |t: Option<String>, what: &str| t.with_context(|| format!("the wallet kept no {what}"));
    let tokens = Tokens {
        bill: record.bill,
        offer: token(record.offer, "offer")?,
        completion: token(record.completion, "completion")?,
        receipt: token(record.receipt, "receipt")?,
    };
    let download = download(parties, &return_url).await?;
    Ok(Purchase { order_id, settlement_id, to_completion, to_receipt, events: take(log), tokens, download })
}

/// Follows the completion page's download link; the file's first line.
async fn download(parties: &Parties, completion_url: &str) -> anyhow::Result<String> {
    let (status, page) = parties.http.get(completion_url).await?;
    ensure!(status.is_success(), "the completion page answered {status}");
    let page = String::from_utf8_lossy(&page);
    let start = page.find("href=\"/download/").context("the completion page has no download link")? + 6;
    let href = page[start..].split('"').next().unwrap_or_default();
    let (status, file) = parties.http.get(&format!("{}{href}", parties.store_url)).await?;
    ensure!(status.is_success(), "the download answered {status}");
    let text = String::from_utf8_lossy(&file);
    ensure!(text.starts_with(DOWNLOAD_STARTS_WITH), "the download is not the e-book");
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

/// A signed message verified by kessai-core against its signer's JWKS.
struct Checked {
    issuer: String,
    kid: String,
}

fn check(kind: Kind, tokens: &Tokens, store: &KeyDirectory, center: &KeyDirectory) -> anyhow::Result<Checked> {
    let clock = SystemClock;
    let (issuer, kid) = match kind {
        // The transcript reads the bill as the wallet does: not its audience.
        Kind::Bill => kessai_core::jws::verify::<bill::Bill>(&tokens.bill, store, &clock)
            .map(|v| (v.claims().issuer().clone(), v.kid().clone())),
        Kind::Offer => {
            offer::verify(&tokens.offer, center, &clock).map(|v| (v.claims().issuer().clone(), v.kid().clone()))
        }
        Kind::Completion => completion::verify(&tokens.completion, center, &clock)
            .map(|v| (v.claims().issuer().clone(), v.kid().clone())),
        Kind::Receipt => {
            receipt::verify(&tokens.receipt, store, &clock).map(|v| (v.claims().issuer().clone(), v.kid().clone()))
        }
    }
    .with_context(|| format!("{} does not verify", label(kind)))?;
    Ok(Checked { issuer: issuer.to_string(), kid: kid.to_string() })
}

fn verify_all(tokens: &Tokens, store: &KeyDirectory, center: &KeyDirectory) -> anyhow::Result<()> {
    for kind in [Kind::Bill, Kind::Offer, Kind::Completion, Kind::Receipt] {
        check(kind, tokens, store, center)?;
    }
    Ok(())
}

fn label(kind: Kind) -> &'static str {
    match kind {
        Kind::Bill => "SIG1 bill",
        Kind::Offer => "SIG2 offer",
        Kind::Completion => "SIG3 completion",
        Kind::Receipt => "SIG4 receipt",
    }
}

fn print_purchase(parties: &Parties, p: &Purchase, store: &KeyDirectory, center: &KeyDirectory) -> anyhow::Result<()> {
    println!();
    println!("purchase 1: {MEMBER}, 1 × {SKU} (JPY 1,200)");
    println!("  order       {}  (cart and order through the shop's forms)", p.order_id);
    println!("  settlement  {}", p.settlement_id);
    for event in &p.events {
        match event {
            Event::Signed(kind) => {
                let c = check(*kind, &p.tokens, store, center)?;
                let (signer, url) = match kind {
                    Kind::Bill | Kind::Receipt => ("mall", &parties.store_url),
                    Kind::Offer | Kind::Completion => ("center", &parties.center_url),
                };
                println!(
                    "  {:<16} iss {:<12} kid {}  VERIFIED with the {signer}'s key from {url}/.well-known/jwks.json",
                    label(*kind),
                    c.issuer,
                    c.kid
                );
            }
            Event::Apdu { command, answer } => println!(
                "  APDU {:<6} {:<22} {} → {}",
                if is_wallets_own(command) { "wallet" } else { "center" },
                meaning(command),
                cut(command),
                cut(answer)
            ),
        }
    }
    println!("  download    {}", p.download);
    println!("  time        pay → SIG3 {:.1} ms, pay → SIG4 {:.1} ms", ms(p.to_completion), ms(p.to_receipt));
    Ok(())
}

/// SELECT and GET DATA are the wallet's own plain reads, and a purchase's
/// INITIALIZE UPDATE (P1 `00`, under the bill's challenge) the wallet's own
/// opening; every other command came from the center, sealed or part of a
/// handshake (a recovery's INITIALIZE UPDATE names the key version).
fn is_wallets_own(command: &[u8]) -> bool {
    matches!(command, [0x00, 0xA4, ..] | [0x80, 0xCA, ..] | [0x80, 0x50, 0x00, ..])
}

/// What a command to the card is (PROTOCOL.md §4–§5).
fn meaning(command: &[u8]) -> String {
    use kessai_card::protocol::*;
    let [cla, ins, p1, p2, ..] = *command else { return "(short command)".into() };
    let sealed = cla & 0x04 != 0;
    let name = match ins {
        INS_SELECT => "SELECT".to_owned(),
        INS_GET_DATA => format!("GET DATA {p1:02X}{p2:02X}"),
        INS_INITIALIZE_UPDATE => "INITIALIZE UPDATE".to_owned(),
        INS_EXTERNAL_AUTHENTICATE => "EXTERNAL AUTHENTICATE".to_owned(),
        INS_READ_BALANCE => "READ BALANCE".to_owned(),
        INS_DEBIT => "DEBIT".to_owned(),
        INS_CREDIT => "CREDIT".to_owned(),
        INS_TRANSACTION_STATUS => "TRANSACTION STATUS".to_owned(),
        INS_READ_LOG if p1 == READ_LOG_UNCOLLECTED => "READ LOG (uncollected)".to_owned(),
        INS_READ_LOG => "READ LOG".to_owned(),
        INS_LOG_COLLECTED => "LOG COLLECTED".to_owned(),
        other => format!("INS {other:02X}"),
    };
    if sealed && ins != INS_EXTERNAL_AUTHENTICATE { format!("sealed {name}") } else { name }
}

fn cut(bytes: &[u8]) -> String {
    let hex = hex::encode_upper(bytes);
    if hex.len() <= APDU_HEX_SHOWN {
        hex
    } else {
        let sw = &hex[hex.len() - 4..];
        format!("{}…{sw} ({} bytes)", &hex[..APDU_HEX_SHOWN - 4], bytes.len())
    }
}

fn count_apdus(events: &[Event]) -> usize {
    events.iter().filter(|e| matches!(e, Event::Apdu { .. })).count()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

fn card_balance(image: &Path) -> anyhow::Result<u64> {
    let bytes = std::fs::read(image).with_context(|| format!("reading {}", image.display()))?;
    Ok(kessai_card::public_info(&bytes)?.balance_minor)
}

/// The center's books for the demo card and the bookshop.
struct Books {
    float_minor: u64,
    payable_minor: u64,
    transfers: Vec<kessai_ledger::Transfer>,
}

impl Books {
    async fn read(path: &Path) -> anyhow::Result<Books> {
        let ledger =
            Ledger::open_sqlite_for_reads(path).await.with_context(|| format!("opening {}", path.display()))?;
        let float = card_float_id(&CardId::parse(DEMO_CARD_ID)?);
        let payable = store_payable_ids(&StoreId::parse(MEMBER)?, Currency::JPY);
        let mut ids = payable.clone();
        ids.push(float);
        let accounts = ledger.lookup_accounts(&ids).await?;
        // The accounts hold value on the credit side: what is available is
        // the posted credits less every debit, pending ones included (the
        // store's payable: summed over its shards).
        let balance = |ids: &[u128]| {
            let (credits, debits) = accounts.iter().filter(|a| ids.contains(&a.id)).fold((0, 0), |(c, d), a| {
                (c + a.credits_posted_minor, d + a.debits_posted_minor + a.debits_pending_minor)
            });
            credits.saturating_sub(debits)
        };
        let transfers = ledger.account_history(float, None, kessai_ledger::limits::HISTORY_PAGE_MAX).await?.transfers;
        ledger.check().await.map_err(|e| anyhow::anyhow!("the ledger's invariants do not hold: {e}"))?;
        let books = Books { float_minor: balance(&[float]), payable_minor: balance(&payable), transfers };
        ledger.close().await;
        Ok(books)
    }
}

fn jpy(minor: u64) -> String {
    Money::new(minor, Currency::JPY).map_or_else(|_| format!("JPY {minor}"), |m| m.to_string())
}

fn print_books(before: &Books, after: &Books, image_before: u64, image_after: u64, repeat: u32) -> anyhow::Result<()> {
    let float = card_float_id(&CardId::parse(DEMO_CARD_ID)?);
    let payable = store_payable_ids(&StoreId::parse(MEMBER)?, Currency::JPY);
    let name = |id: u128| match id {
        _ if id == float => format!("card float {DEMO_CARD_ID}"),
        _ if payable.contains(&id) => format!("store payable {MEMBER}"),
        _ => "issuance".to_owned(),
    };
    println!();
    println!("ledger transfers of card {DEMO_CARD_ID} (the center's books, after the run)");
    for t in after.transfers.iter().skip(before.transfers.len()) {
        let what = if t.flags.contains(TransferFlags::PENDING) {
            "pending"
        } else if t.flags.contains(TransferFlags::POST_PENDING) {
            "posted "
        } else if t.flags.contains(TransferFlags::VOID_PENDING) {
            "voided "
        } else {
            "single "
        };
        let id = format!("{:032x}", t.id);
        println!(
            "  {what} {}…  {:>10}  {} → {}",
            &id[..12],
            jpy(t.amount_minor),
            name(t.debit_account_id),
            name(t.credit_account_id)
        );
    }
    println!();
    let row = |label: &str, before: u64, after: u64| println!("  {label:<34}{:>12}{:>12}", jpy(before), jpy(after));
    println!("{:<36}{:>12}{:>12}", "balances", "before", "after");
    row(&format!("card {DEMO_CARD_ID} (its image)"), image_before, image_after);
    row(&format!("books: card float {DEMO_CARD_ID}"), before.float_minor, after.float_minor);
    row(&format!("books: store payable {MEMBER}"), before.payable_minor, after.payable_minor);
    ensure!(image_after == image_before - PRICE_MINOR, "the demo card was not charged exactly once");
    ensure!(after.float_minor == image_after, "the books' float differs from the card's balance");
    let paid = u64::from(repeat) * PRICE_MINOR;
    ensure!(after.payable_minor == before.payable_minor + paid, "the store was not credited for every purchase");
    Ok(())
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    // Nearest rank: the smallest value with at least p % of values at or below it.
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted.get(rank - 1).copied().unwrap_or_default()
}

fn print_times(times: &Times) {
    let mut to_completion: Vec<Duration> = times.iter().map(|t| t.0).collect();
    let mut to_receipt: Vec<Duration> = times.iter().map(|t| t.1).collect();
    to_completion.sort();
    to_receipt.sort();
    println!();
    println!("{} purchases, from the pay action (consent immediate):", times.len());
    for (what, sorted) in
        [("to completion (SIG3 verified)", &to_completion), ("to receipt (SIG4 verified)", &to_receipt)]
    {
        println!(
            "  {what:<31} p50 {:>7.1} ms   p99 {:>7.1} ms",
            ms(percentile(sorted, 50)),
            ms(percentile(sorted, 99))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_named_as_in_the_protocol() {
        let cases: &[(&str, &str, bool)] = &[
            ("00A4040009F04B45535341490101", "SELECT", true),
            ("80CADF1000", "GET DATA DF10", true),
            ("8050010008AABBCCDDEEFF0011", "INITIALIZE UPDATE", false),
            ("8050000008AABBCCDDEEFF0011", "INITIALIZE UPDATE", true),
            ("8436FF0300", "sealed READ LOG (uncollected)", false),
            ("843C00000C0000000211223344", "sealed LOG COLLECTED", false),
            ("848233001011223344556677881122334455667788", "EXTERNAL AUTHENTICATE", false),
            ("8430000008AABBCCDDEEFF0011", "sealed READ BALANCE", false),
            ("8432000030AABB", "sealed DEBIT", false),
            ("8438000010AABB", "sealed TRANSACTION STATUS", false),
        ];
        for (hex, name, own) in cases {
            let bytes = hex::decode(hex).unwrap();
            assert_eq!(meaning(&bytes), *name, "{hex}");
            assert_eq!(is_wallets_own(&bytes), *own, "{hex}");
        }
    }

    #[test]
    fn long_apdus_are_cut_but_keep_their_status_word() {
        let mut answer = vec![0xAB; 40];
        answer.extend([0x90, 0x00]);
        assert_eq!(cut(&answer), format!("{}…9000 (42 bytes)", "AB".repeat(14)));
        assert_eq!(cut(&[0x90, 0x00]), "9000");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<Duration> = (1..=200).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 50), Duration::from_millis(100));
        assert_eq!(percentile(&sorted, 99), Duration::from_millis(198));
        assert_eq!(percentile(&sorted[..1], 99), Duration::from_millis(1));
    }
}
