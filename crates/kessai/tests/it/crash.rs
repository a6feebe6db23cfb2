//! kill -9 the center at and during every step of purchases; restart;
//! settle what was left open. Afterwards every settlement is posted or
//! voided exactly once, each card's balance equals its float in the books,
//! and the store's payable is the sum of its completed purchases.

use std::time::Duration;

use kessai_center::books::Books;
use kessai_center::db::{CenterDb, SettlementQuery};
use kessai_center::purchase::Phase;
use kessai_core::ids::{CardId, StoreId};
use kessai_core::random::{Random, SeededRandom};
use serde_json::Value;

use crate::harness::{CardTerminal, CenterProcess, Deployment, card_balance, free_port, open_card, relay};

use kessai_core::profile::Profile;

/// A purchase's HTTP steps in its profile.
fn steps(profile: Profile) -> &'static [&'static str] {
    match profile {
        Profile::Offer => &["create", "balance", "complete"],
        _ => &["create", "complete"],
    }
}
/// In a plan, "the wallet goes away before this step" instead of a kill.
const ABANDON: u64 = u64::MAX;

struct Run<'a> {
    d: &'a mut Deployment,
    config: std::path::PathBuf,
    port: u16,
    center: CenterProcess,
    kills: u32,
}

impl Run<'_> {
    fn base(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        self.center.kill9();
        self.center = CenterProcess::start(&self.config);
        self.d.wait_healthy(self.port);
    }

    /// kill -9 now, or from another thread after `delay_us` (mid-request).
    fn schedule_kill(&mut self, delay_us: u64) {
        self.kills += 1;
        let pid = self.center_pid();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_micros(delay_us));
            let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
        });
    }

    fn center_pid(&self) -> u32 {
        self.center.pid()
    }

    /// POST, restarting the center until it answers.
    fn post_retrying(&mut self, path: &str, key: &str, body: &Value) -> (u16, Value) {
        for _ in 0..5 {
            match self.d.post(&format!("{}{path}", self.base()), key, body) {
                Ok(answer) => return answer,
                Err(_) => self.restart(),
            }
        }
        panic!("the center never answered {path}");
    }

    /// One purchase in `profile`; a kill may be scheduled before step
    /// `kill_at`.
    fn purchase(
        &mut self,
        card: &mut CardTerminal,
        card_id: &str,
        n: u32,
        (profile, kill_at): (Profile, Option<(usize, u64)>),
    ) -> Option<String> {
        card.select().unwrap();
        let bill = self.d.bill(n, 1_000 + u64::from(n));
        let mut reply = Value::Null;
        let mut id = None;
        for (i, step) in steps(profile).iter().enumerate() {
            // The wallet goes away before relaying anything of this step.
            if kill_at == Some((i, ABANDON)) {
                return id;
            }
            let (path, body) = match *step {
                "create" => ("/v1/settlements".to_owned(), crate::harness::create_in(card, card_id, &bill, profile)),
                s => (format!("/v1/settlements/{}/{s}", id.as_ref()?), relay(card, &reply)),
            };
            if let Some((at, delay)) = kill_at
                && at == i
            {
                self.schedule_kill(delay);
            }
            let key = format!("p{n}-{step}");
            match self.d.post(&format!("{}{path}", self.base()), &key, &body) {
                Ok((200, r)) if r["apdus"].as_array().is_some_and(|a| !a.is_empty()) || *step == "complete" => {
                    id = r["settlement_id"].as_str().map(str::to_owned);
                    reply = r;
                }
                Ok((_, r)) => return r["settlement_id"].as_str().map(str::to_owned).or(id),
                Err(_) => {
                    self.restart();
                    // The step may or may not have committed: retry it with
                    // the same key; the answer tells.
                    let (status, r) = self.post_retrying(&path, &key, &body);
                    if status != 200 {
                        return id;
                    }
                    id = r["settlement_id"].as_str().map(str::to_owned).or(id);
                    if r["apdus"].as_array().is_none_or(|a| a.is_empty()) && *step != "complete" {
                        return id;
                    }
                    reply = r;
                }
            }
        }
        id
    }

    /// Brings an open settlement to an end: cancel before the DEBIT,
    /// recovery after.
    fn settle(&mut self, card: &mut CardTerminal, id: &str) -> Phase {
        let tag: u32 = SeededRandom::new(u64::from(self.kills)).next_u32();
        let (_, view) = self.d.get(&format!("{}/v1/settlements/{id}", self.base())).unwrap();
        crate::harness::settle(card, id, tag, &view, |path, key, body| self.post_retrying(path, key, body))
    }
}

trait NextU32 {
    fn next_u32(&mut self) -> u32;
}

impl NextU32 for SeededRandom {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_be_bytes(b)
    }
}

pub(crate) async fn verify_books(db_url: &str, cards: &[(String, std::path::PathBuf, u64)]) {
    let db = CenterDb::open(db_url).await.unwrap();
    let ledger = db.ledger();
    let all = db.list_settlements(&SettlementQuery { limit: 500, ..Default::default() }).await.unwrap().settlements;
    assert!(all.iter().all(|s| matches!(s.phase(), Phase::Completed | Phase::Voided)), "every settlement ended");
    assert!(all.iter().any(|s| s.phase() == Phase::Completed), "some purchases completed");
    ledger.check().await.unwrap();
    let books = Books::new(db.clone());
    let mut completed_total = 0;
    for (id, image, initial) in cards {
        let card = CardId::parse(id).unwrap();
        let spent: u64 = all
            .iter()
            .filter(|s| s.card_id == card && s.phase() == Phase::Completed)
            .map(|s| s.bill.amount.amount_minor())
            .sum();
        completed_total += spent;
        let (float, held) = books.card_float(&card).await.unwrap().unwrap();
        assert_eq!(card_balance(image), initial - spent, "card {id}: debited exactly the completed purchases");
        assert_eq!((float, held), (initial - spent, 0), "card {id}: the books follow the card, nothing held");
    }
    let mall = StoreId::parse("kessai-mall").unwrap();
    assert_eq!(books.store_payable(&mall, kessai_core::Currency::JPY).await.unwrap(), completed_total);
}

fn crash_run(db_url: Option<String>) {
    let mut d = Deployment::new(7);
    let port = free_port();
    let config = d.center_config("center", port, db_url.as_deref());
    let cards: Vec<(String, std::path::PathBuf, u64)> = (1..=2u8)
        .map(|n| {
            let (id, image) = d.issue_card(&config, n, 50_000);
            (id, image, 50_000)
        })
        .collect();
    let center = CenterProcess::start(&config);
    d.wait_healthy(port);
    d.register_mall(&format!("https://127.0.0.1:{port}"));
    let mut run = Run { d: &mut d, config: config.clone(), port, center, kills: 0 };
    let mut terminals: Vec<CardTerminal> = cards.iter().map(|(_, image, _)| open_card(image)).collect();
    let mut open = Vec::new();
    // Each step, killed before it is sent and killed while it is in flight.
    // First, before any kill, a wallet that goes away at consent: its DEBIT
    // never reaches the card, so recovery must void it. Then each step,
    // killed before it is sent and while it is in flight.
    // In each profile (the first embodiment, and the second with its
    // create that holds the amount and seals the DEBIT at once).
    let mut plan: Vec<(Profile, Option<(usize, u64)>)> = Vec::new();
    for profile in [Profile::Offer, Profile::Confirmed] {
        let last = steps(profile).len() - 1;
        plan.push((profile, Some((last, ABANDON))));
        plan.extend((0..=last).flat_map(|step| [(profile, Some((step, 0))), (profile, Some((step, 1_500)))]));
        plan.extend([(profile, None), (profile, None)]);
    }
    let mut abandoned = Vec::new();
    for (n, (profile, kill)) in plan.into_iter().enumerate() {
        let which = n % terminals.len();
        let id = run.purchase(&mut terminals[which], &cards[which].0, n as u32, (profile, kill));
        if let Some(id) = id {
            if kill.is_some_and(|(_, delay)| delay == ABANDON) {
                abandoned.push(id.clone());
            }
            open.push((which, id));
        }
        if kill.is_some_and(|(_, delay)| delay != ABANDON) {
            // Whatever the kill interrupted, the center comes back.
            run.restart();
        }
    }
    assert_eq!(abandoned.len(), 2, "each abandoned purchase opened a settlement");
    for (which, id) in &open {
        let phase = run.settle(&mut terminals[*which], id);
        if abandoned.contains(id) {
            assert_eq!(phase, Phase::Voided, "a DEBIT that never reached the card is voided");
        }
        assert!(matches!(phase, Phase::Completed | Phase::Voided), "{id} ended {phase:?}");
    }
    assert!(run.kills >= 2 * 5, "the center was killed at every step of both profiles");
    run.center.kill9();
    drop(terminals);
    let data = run.d.center_dir("center");
    run.d.runtime.block_on(async {
        let db = match &db_url {
            Some(url) => url.clone(),
            None => format!("sqlite:{}", data.join("center.sqlite").display()),
        };
        verify_books(&db, &cards).await;
    });
}

#[test]
fn kill_9_at_every_step_on_sqlite() {
    crash_run(None);
}

#[test]
fn kill_9_at_every_step_on_postgres() {
    let Some(url) = crate::pg::fresh_database("crash") else { return };
    crash_run(Some(url));
}
