//! Chaos: wallets pay concurrently through three center processes (each
//! its own data directory, one PostgreSQL), each step of a purchase to
//! another instance, while a center instance is killed with SIGKILL at
//! random moments and restarted, several times. A wallet whose request
//! failed tries the next instance with the same Idempotency-Key; a purchase
//! it cannot finish is left open and later ended by recovery, as `kessai
//! wallet recover` does. Afterwards every settlement ended, every card image
//! equals its float, the store's payable equals its completed purchases,
//! and every card pays again. Bounded: a fixed number of purchases and of
//! kills, on loopback.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kessai_center::purchase::Phase;
use kessai_core::random::{Random, SeededRandom};
use serde_json::Value;

use crate::harness::{CardTerminal, CenterProcess, Deployment, open_card, relay};

const WALLETS: usize = 4;
/// At most this many purchases per wallet (they pay until the kills end).
const PURCHASES_PER_WALLET: u32 = 1_000;
const KILLS: u32 = 6;

/// POSTs `path` to the instances in turn from `first`, the same key each
/// time, until one answers (an instance being killed or restarting does
/// not); gives up after 30 s.
fn post_any(d: &Deployment, bases: &[String], first: usize, path: &str, key: &str, body: &Value) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut at = first;
    loop {
        match d.post(&format!("{}{path}", bases[at % bases.len()]), key, body) {
            // A 503 is an instance that is not ready yet: try another. A 429
            // is the per-client rate limit (every wallet here is 127.0.0.1):
            // pause, as a wallet backs off.
            Ok((429, _)) => std::thread::sleep(Duration::from_millis(200)),
            Ok((status, r)) if status != 503 => return (status, r),
            _ => {}
        }
        assert!(Instant::now() < deadline, "no instance answered {path}");
        at += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The settlement as an instance shows it, past rate limits and restarts.
fn view_any(d: &Deployment, bases: &[String], id: &str) -> Value {
    for attempt in 0..150 {
        if let Ok((200, view)) = d.get(&format!("{}/v1/settlements/{id}", bases[attempt % bases.len()])) {
            return view;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("no instance showed {id}");
}

/// Where a wallet goes away in the middle of a purchase, leaving it to
/// recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leave {
    /// Pays to the end.
    Never,
    /// After the consent, before relaying the sealed DEBIT: the card never
    /// paid, so recovery voids.
    BeforeDebit,
    /// After the card applied the DEBIT, before telling the center: recovery
    /// completes.
    AfterDebit,
}

/// One purchase, each step on the next instance; the settlement id if it
/// was left open (not completed), and where it was left: a step that
/// failed (an instance killed under it) before the wallet meant to go away
/// leaves it `Never` (either outcome, as the card proves).
fn purchase(
    d: &Deployment,
    bases: &[String],
    card: &mut CardTerminal,
    (card_id, bill, tag): (&str, &str, &str),
    leave: Leave,
) -> Option<(String, Leave)> {
    card.select().unwrap();
    let create = crate::harness::create_body(card, card_id, bill);
    let (status, mut reply) = post_any(d, bases, 0, "/v1/settlements", &format!("{tag}-c"), &create);
    let id = reply["settlement_id"].as_str().map(str::to_owned);
    if status != 200 {
        eprintln!("{tag}: create answered {status}: {reply}");
        return id.map(|id| (id, Leave::Never));
    }
    let id = id?;
    for (i, step) in ["balance", "complete"].iter().enumerate() {
        if *step == "complete" && leave == Leave::BeforeDebit {
            return Some((id, leave));
        }
        let answers = relay(card, &reply);
        if *step == "complete" && leave == Leave::AfterDebit {
            return Some((id, leave));
        }
        let path = format!("/v1/settlements/{id}/{step}");
        let (status, r) = post_any(d, bases, i + 1, &path, &format!("{tag}-{step}"), &answers);
        if status != 200 {
            return Some((id, Leave::Never));
        }
        reply = r;
    }
    (reply["phase"] != "completed").then_some((id, Leave::Never))
}

#[test]
fn wallets_pay_through_three_instances_while_instances_are_killed() {
    let Some(url) = crate::pg::fresh_database("chaos") else { return };
    let mut d = Deployment::new(21);
    let ports = [crate::harness::free_port(), crate::harness::free_port(), crate::harness::free_port()];
    let configs: Vec<_> =
        ["a", "b", "c"].iter().zip(ports).map(|(name, port)| d.center_config(name, port, Some(&url))).collect();
    let out = crate::kessai(&["center", "init", "--config", configs[0].to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", crate::stderr(&out));
    for config in &configs[1..] {
        d.provision(config, "a");
    }
    let cards: Vec<(String, std::path::PathBuf, u64)> = (1..=WALLETS as u8)
        .map(|n| {
            let (id, image) = d.issue_card(&configs[0], n, 900_000);
            (id, image, 900_000)
        })
        .collect();
    let centers: Mutex<Vec<CenterProcess>> = Mutex::new(configs.iter().map(|c| CenterProcess::start(c)).collect());
    for port in ports {
        d.wait_healthy(port);
    }
    let bases: Vec<String> = ports.iter().map(|p| format!("https://127.0.0.1:{p}")).collect();
    d.register_mall(&bases[0]);
    // Bills made up front: the wallets share the deployment read-only.
    let bills: Vec<Vec<String>> = (0..WALLETS)
        .map(|w| (0..=PURCHASES_PER_WALLET).map(|n| d.bill(w as u32 * 10_000 + n, 100 + u64::from(n % 50))).collect())
        .collect();
    let d = &d;
    let mut terminals: Vec<CardTerminal> = cards.iter().map(|(_, image, _)| open_card(image)).collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut kills = 0;
    let open: Vec<(usize, String, Leave)> = std::thread::scope(|scope| {
        let mut wallets = Vec::new();
        for (w, card) in terminals.iter_mut().enumerate() {
            let (bases, bills, cards, stop) = (&bases, &bills, &cards, &stop);
            wallets.push(scope.spawn(move || {
                let mut open = Vec::new();
                // The last bill is kept for paying again afterwards.
                for (n, bill) in bills[w].iter().take(PURCHASES_PER_WALLET as usize).enumerate() {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    let tag = format!("w{w}p{n}");
                    let leave = match n % 7 {
                        3 => Leave::BeforeDebit,
                        5 => Leave::AfterDebit,
                        _ => Leave::Never,
                    };
                    let paid = (cards[w].0.as_str(), bill.as_str(), tag.as_str());
                    if let Some((id, left)) = purchase(d, bases, card, paid, leave) {
                        open.push((w, id, left));
                    }
                }
                open
            }));
        }
        // Kill an instance at random moments while the wallets pay; each
        // comes back after a moment, as a supervisor restarts it.
        let mut rng = SeededRandom::new(99);
        while kills < KILLS && !wallets.iter().all(|w| w.is_finished()) {
            let mut pause = [0u8; 2];
            rng.fill_bytes(&mut pause);
            std::thread::sleep(Duration::from_millis(100 + u64::from(u16::from_be_bytes(pause) % 400)));
            let which = usize::from(pause[0]) % 3;
            centers.lock().unwrap()[which].kill9();
            kills += 1;
            std::thread::sleep(Duration::from_millis(150));
            centers.lock().unwrap()[which] = CenterProcess::start(&configs[which]);
            d.wait_healthy(ports[which]);
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        wallets.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    eprintln!("chaos: {kills} kills; {} purchases left open for recovery", open.len());
    assert_eq!(kills, KILLS, "instances were killed while the wallets paid");
    // Recovery ends what was left open, through any instance.
    let left = |how: Leave| open.iter().filter(|(_, _, l)| *l == how).count();
    assert!(left(Leave::BeforeDebit) > 0 && left(Leave::AfterDebit) > 0, "wallets went away mid-purchase");
    for (w, id, leave) in &open {
        let view = view_any(d, &bases, id);
        let phase = crate::harness::settle(&mut terminals[*w], id, 7, &view, |path, key, body| {
            post_any(d, &bases, 0, path, key, body)
        });
        let expected = match leave {
            Leave::BeforeDebit => Phase::Voided,
            Leave::AfterDebit => Phase::Completed,
            // Left by a failure: either, as the card proves.
            Leave::Never => phase,
        };
        assert!(matches!(phase, Phase::Completed | Phase::Voided) && phase == expected, "{id} ended {phase:?}");
    }
    // Every card pays again.
    for (w, card) in terminals.iter_mut().enumerate() {
        let last = &bills[w][PURCHASES_PER_WALLET as usize];
        let again = (cards[w].0.as_str(), last.as_str(), &*format!("w{w}-again"));
        assert_eq!(purchase(d, &bases, card, again, Leave::Never), None, "card {w} pays again");
    }
    drop(terminals);
    centers.lock().unwrap().iter_mut().for_each(CenterProcess::kill9);
    d.runtime.block_on(crate::crash::verify_books(&url, &cards));
}
