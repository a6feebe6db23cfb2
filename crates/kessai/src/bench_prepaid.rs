//! `kessai bench prepaid`: payments from virtual prepaid cards (#18) per
//! second, against center processes over HTTPS on loopback (SQLite, or a
//! throwaway PostgreSQL cluster with one or more instances). Each member
//! is registered as a wallet would register it (an application approved,
//! its key in a registration signed with it and encrypted to the center),
//! opens a prepaid card paid in cash the operator records, then pays bills
//! back to back: each a store's bill (SIG1) and the member's instruction
//! naming the card, one request, no card round trips. Errors are counted,
//! not hidden; every answer's completion and balance are checked.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use kessai_core::ids::{MessageId, OrderId, PartyId, PrepaidId, RequestId, StoreId};
use kessai_core::jws::Claims;
use kessai_core::keys::SigningKey;
use kessai_core::messages::DisplayText;
use kessai_core::messages::bill::LineItem;
use kessai_core::messages::instruction::{self, InstructionDraft, PaymentInstruction};
use kessai_core::messages::prepaid::{self, FundingMethod, PrepaidAction, PrepaidRequest, PrepaidRequestDraft};
use kessai_core::random::OsRandom;
use kessai_core::time::{Clock as _, SystemClock};
use kessai_core::{Currency, Money};
use kessai_http::HttpsClient;
use kessai_merchant::{BillRequest, Merchant};
use serde_json::{Value, json};

use crate::bench_center::{Centers, Database, calibrate, cpu_ticks, pct, start_centers};

/// Value on each member's card and the price of one payment (JPY).
const CARD_VALUE_MINOR: u64 = 900_000;
const PRICE_MINOR: u64 = 100;

struct Member {
    id: PartyId,
    key: SigningKey,
    card: PrepaidId,
}

/// One payment: its latency, and whether the center paid it.
struct Sample {
    us: u64,
    ok: bool,
}

async fn post(client: &HttpsClient, url: &str, key: &str, body: &Value) -> anyhow::Result<Value> {
    let (status, bytes) = client.post_json(url, body, &[("idempotency-key", key)]).await?;
    if !status.is_success() {
        bail!("{url}: {status} {}", String::from_utf8_lossy(&bytes));
    }
    Ok(serde_json::from_slice(&bytes)?)
}

/// A member as FIG. 3–4 make one: applied, approved, its key registered;
/// then a prepaid card opened and paid in cash.
async fn member(c: &Centers, n: usize) -> anyhow::Result<Member> {
    let base = &c.bases[0];
    let apply = json!({ "kind": "general", "name": format!("Bench Member {n}"), "contact": "bench@example.jp" });
    let app = post(&c.client, &format!("{base}/v1/members/applications"), &format!("app-{n}"), &apply).await?;
    let id = app["application_id"].as_str().context("application id")?;
    let approved = post(&c.admin, &format!("{base}/v1/admin/applications/{id}/approve"), "-", &json!({})).await?;
    let number = approved["member"].as_str().context("member")?.to_owned();
    let (_, bytes) = c.admin.get(&format!("{base}/v1/admin/outbox")).await?;
    let outbox: Value = serde_json::from_slice(&bytes)?;
    let letter = outbox["letters"]
        .as_array()
        .context("letters")?
        .iter()
        .find(|l| l["member"] == number.as_str())
        .context("the member's letter")?;
    let code = letter["text"]
        .as_str()
        .context("text")?
        .lines()
        .find_map(|l| l.strip_prefix("Your activation code: "))
        .context("code")?
        .to_owned();
    let key = SigningKey::generate(&mut OsRandom);
    let member = PartyId::parse(&number)?;
    let now = SystemClock.now();
    use kessai_core::messages::registration::{JWE_CTY, JWE_TYP, MemberDetails, Registration, RegistrationDraft};
    let registration = Registration::new(RegistrationDraft {
        member: member.clone(),
        activation_code: code,
        details: MemberDetails::General {
            name: DisplayText::parse(&format!("Bench Member {n}"))?,
            address: DisplayText::parse("Tokyo")?,
            birth_date: "1990-04-01".into(),
        },
        key: kessai_core::jwk::Ed25519Jwk::new(key.public().as_bytes(), None, None),
    })?;
    let claims = Claims::for_lifetime(member.clone(), MessageId::generate(&mut OsRandom), now, 600)?;
    let token = kessai_core::jws::sign(&claims, &registration, &key)?;
    let (_, bytes) = c.client.get(&format!("{base}/v1/members/encryption-key")).await?;
    let to = kessai_core::jwe::EncryptionPublicKey::from_jwk(&serde_json::from_slice(&bytes)?)?;
    let envelope = kessai_core::jwe::encrypt(token.as_bytes(), &to, JWE_TYP, JWE_CTY, &mut OsRandom)?;
    post(
        &c.client,
        &format!("{base}/v1/members/registrations"),
        &format!("reg-{n}"),
        &json!({ "registration": envelope }),
    )
    .await?;
    let request = PrepaidRequest::new(PrepaidRequestDraft {
        member: member.clone(),
        request_id: RequestId::parse(&format!("bench-open-{n}"))?,
        action: PrepaidAction::Open,
        account: None,
        amount: Some(Money::new(CARD_VALUE_MINOR, Currency::JPY)?),
        method: Some(FundingMethod::Cash),
        card_id: None,
        token: None,
    })?;
    let claims = Claims::for_lifetime(member.clone(), MessageId::generate(&mut OsRandom), now, 300)?
        .with_audience(PartyId::parse("center")?);
    let signed = prepaid::sign(&claims, &request, &key)?;
    let funding =
        post(&c.client, &format!("{base}/v1/prepaid/requests"), &format!("open-{n}"), &json!({ "request": signed }))
            .await?;
    let funding_id = funding["funding_id"].as_str().context("funding id")?;
    let cash = json!({ "amount": { "amount_minor": CARD_VALUE_MINOR, "currency": "JPY" } });
    let issued = post(&c.admin, &format!("{base}/v1/admin/fundings/{funding_id}/cash"), "-", &cash).await?;
    if issued["status"] != "issued" {
        bail!("the cash was not issued: {issued}");
    }
    let card = PrepaidId::parse(funding["prepaid_id"].as_str().context("prepaid id")?)?;
    Ok(Member { id: member, key, card })
}

/// One payment of a fresh bill from `m`'s card, at instance `base`.
async fn pay(client: &HttpsClient, base: &str, merchant: &Merchant, m: &Member, n: u64) -> anyhow::Result<Sample> {
    let line = LineItem::new("bench", DisplayText::parse("Bench item")?, 1, Money::new(PRICE_MINOR, Currency::JPY)?)?;
    let request = BillRequest {
        order_id: OrderId::parse(&format!("p{}-{n}", m.card.as_str().get(4..16).unwrap_or("x")))?,
        member: None,
        store_name: DisplayText::parse("Kessai Mall")?,
        lines: vec![line],
        lifetime_s: 600,
        origin: kessai_core::messages::WebOrigin::parse("https://bench.kessai.test")?,
    };
    let bill = merchant.sign_bill(request, &mut OsRandom, &SystemClock)?;
    let draft = InstructionDraft {
        member: m.id.clone(),
        card_id: None,
        prepaid_id: Some(m.card.clone()),
        bill_hash: kessai_core::digest::Sha256Digest::of_token(bill.token()),
        amount: Money::new(PRICE_MINOR, Currency::JPY)?,
        store: StoreId::parse("kessai-mall")?,
    };
    let claims = Claims::for_lifetime(m.id.clone(), MessageId::generate(&mut OsRandom), SystemClock.now(), 300)?
        .with_audience(PartyId::parse("center")?);
    let signed = instruction::sign(&claims, &PaymentInstruction::new(draft)?, &m.key)?;
    let body = json!({ "bill": bill.token(), "instruction": signed });
    let key = format!("pay-{}-{n}", m.card);
    let t0 = Instant::now();
    let (status, bytes) =
        client.post_json(&format!("{base}/v1/prepaid/payments"), &body, &[("idempotency-key", key.as_str())]).await?;
    let us = t0.elapsed().as_micros() as u64;
    let ok = status.is_success()
        && serde_json::from_slice::<Value>(&bytes)
            .is_ok_and(|v| v["completion"].is_string() && v["balance"].is_object());
    // The first few failures are shown, so a run with errors says why.
    static SHOWN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    if !ok && SHOWN.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 5 {
        eprintln!("a payment failed: {status} {}", String::from_utf8_lossy(&bytes[..bytes.len().min(300)]));
    }
    Ok(Sample { us, ok })
}

pub fn run(
    members: usize,
    seconds: u64,
    database: Database,
    instances: usize,
    center_log: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    if instances == 0 {
        bail!("--instances must be at least 1");
    }
    if instances > 1 && database == Database::Sqlite {
        bail!("several instances share one database: use --database postgres");
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        // Cash above the bench's card value needs no second operator here.
        let extra = "[prepaid]\ncash_dual_control_minor = 1000000000\n";
        let c = Stopping(start_centers(database, instances, false, center_log, extra, crate::bench_center::Security::Memory).await?);
        let c = &c.0;
        let merchant =
            Merchant::new(StoreId::parse("kessai-mall")?, SigningKey::generate(&mut OsRandom), PartyId::parse("center")?);
        let store = json!({ "id": "kessai-mall", "name": "Kessai Mall", "jwks": merchant.jwks() });
        post(&c.admin, &format!("{}/v1/admin/stores", c.bases[0]), "-", &store).await?;
        let mut all = Vec::with_capacity(members);
        for n in 0..members {
            all.push(Arc::new(member(c, n).await.with_context(|| format!("bench member {n}"))?));
        }
        let on = match &c.pg {
            Some(pg) => format!("PostgreSQL (a throwaway cluster on 127.0.0.1:{}, fsync on)", pg.port),
            None => "SQLite (WAL, synchronous=FULL)".to_owned(),
        };
        println!(
            "kessai bench prepaid — {instances} center instance(s), each its own process and data directory, on {on}; \
             {members} members paying back to back over HTTPS, one request a payment{}",
            if instances > 1 { ", each payment on the next instance" } else { "" }
        );
        println!("machine now: {}", calibrate());
        let ticks = |c: &Centers| -> u64 { c.children.iter().filter_map(|ch| cpu_ticks(ch.id()).ok()).sum() };
        let pg_ticks = |c: &Centers| -> u64 {
            c.pg.as_ref().map_or(0, |pg| pg.pids().into_iter().filter_map(|pid| cpu_ticks(pid).ok()).sum())
        };
        let (center0, pg0, own0) = (ticks(c), pg_ticks(c), cpu_ticks(std::process::id())?);
        let merchant = Arc::new(merchant);
        let start = Instant::now();
        let duration = Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for (i, m) in all.iter().enumerate() {
            let (client, bases, merchant, m) = (c.client.clone(), c.bases.clone(), merchant.clone(), m.clone());
            tasks.push(tokio::spawn(async move {
                let mut samples = Vec::new();
                let mut n = 0u64;
                while start.elapsed() < duration {
                    n += 1;
                    let base = &bases[(i + usize::try_from(n).unwrap_or(0)) % bases.len()];
                    samples.push(pay(&client, base, &merchant, &m, n).await?);
                }
                anyhow::Ok(samples)
            }));
        }
        let mut samples = Vec::new();
        for t in tasks {
            samples.extend(t.await??);
        }
        let elapsed = start.elapsed().as_secs_f64();
        let tick_ms = 1000.0 / 100.0; // USER_HZ
        let paid = samples.iter().filter(|s| s.ok).count();
        let errors = samples.len() - paid;
        let per = paid.max(1) as f64;
        let mut us: Vec<u64> = samples.iter().map(|s| s.us).collect();
        us.sort_unstable();
        println!(
            "{paid} payments in {elapsed:.1} s = {:.0} payments/s; {errors} errors; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            paid as f64 / elapsed,
            pct(&us, 0.5),
            pct(&us, 0.99),
            pct(&us, 1.0)
        );
        println!(
            "  CPU per payment: centers {:.2} ms, PostgreSQL {:.2} ms, bench process (members, store signing) {:.2} ms",
            ticks(c).saturating_sub(center0) as f64 * tick_ms / per,
            pg_ticks(c).saturating_sub(pg0) as f64 * tick_ms / per,
            cpu_ticks(std::process::id())?.saturating_sub(own0) as f64 * tick_ms / per
        );
        println!("machine now: {}", calibrate());
        Ok(())
    })
}

/// The center processes, killed when the bench ends (an error included).
struct Stopping(Centers);

impl Drop for Stopping {
    fn drop(&mut self) {
        for child in &mut self.0.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
