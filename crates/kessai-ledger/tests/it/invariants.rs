//! Random interleavings of create / post / void / expire / linked chains from several
//! concurrent tasks on one ledger; afterwards `check` must pass, every transfer
//! answered `ok` must be stored, and every chain must be stored whole or not at all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kessai_ledger::{AccountFlags, CreateTransferResult, Ledger, NewTransfer};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::support::{AccountBuilder as _, Db, TransferBuilder as _, account, post, transfer, void};

const TASKS: usize = 3;
const ACTIONS_PER_TASK_MAX: usize = 10;
const ACCOUNTS: u128 = 4;
/// Account 3 may not be overdrawn (debits must not exceed credits), account 4 may
/// not be over-credited (credits must not exceed debits).
const LIMITED: u128 = 3;
const CAPPED: u128 = 4;
const START_UNIX_S: u64 = 1_000_000;

#[derive(Debug, Clone)]
enum Action {
    Transfer {
        debit: u128,
        credit: u128,
        amount_minor: u64,
        pending: bool,
        timeout_s: u32,
    },
    /// Post or void the pending transfer at `pick` (modulo) among those any task has
    /// created so far (several tasks may race for the same one).
    Post {
        pick: usize,
        amount_minor: u64,
    },
    Void {
        pick: usize,
    },
    /// Linked single-phase transfers; with `broken_at`, that link has amount 0 and
    /// the chain must fail whole.
    Chain {
        links: Vec<(u128, u128, u64)>,
        broken_at: Option<usize>,
    },
    Expire {
        advance_s: u64,
    },
}

fn account_id() -> impl Strategy<Value = u128> {
    1..=ACCOUNTS
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (account_id(), account_id(), 1..60_u64, any::<bool>(), prop_oneof![Just(0_u32), 1..10_u32])
            .prop_map(|(debit, credit, amount_minor, pending, timeout_s)| Action::Transfer {
                debit, credit, amount_minor, pending, timeout_s: if pending { timeout_s } else { 0 },
            }),
        3 => (any::<usize>(), 0..30_u64).prop_map(|(pick, amount_minor)| Action::Post { pick, amount_minor }),
        2 => any::<usize>().prop_map(|pick| Action::Void { pick }),
        2 => (prop::collection::vec((account_id(), account_id(), 1..30_u64), 2..4), any::<bool>())
            .prop_map(|(links, broken)| {
                let broken_at = broken.then_some(links.len() - 1);
                Action::Chain { links, broken_at }
            }),
        2 => (5..30_u64).prop_map(|advance_s| Action::Expire { advance_s }),
    ]
}

/// The id of the first event of `task`'s `step`; events of a chain follow it.
fn event_id(task: usize, step: usize, link: usize) -> u128 {
    ((task as u128 + 1) << 40) | ((step as u128 + 1) << 8) | link as u128
}

/// Ids answered `ok`, chains as (ids, applied), and how many posts, voids and
/// expiries took effect (to prove the generator reaches them).
#[derive(Debug, Default)]
struct Outcome {
    ok_ids: Vec<u128>,
    chains: Vec<(Vec<u128>, bool)>,
    effective: Effective,
}

#[derive(Debug, Default, Clone, Copy)]
struct Effective {
    posts: usize,
    voids: usize,
    expiries: usize,
}

/// Pending transfers created so far, by any task.
type PendingIds = Arc<Mutex<Vec<u128>>>;

fn events_of(task: usize, step: usize, action: &Action, pending_ids: &PendingIds) -> Vec<NewTransfer> {
    let id = event_id(task, step, 0);
    let target_id = |pick: usize| {
        let ids = pending_ids.lock().unwrap();
        // With none created yet, a post or void names an unknown transfer.
        if ids.is_empty() { u128::from(u32::MAX) } else { ids[pick % ids.len()] }
    };
    match action {
        Action::Transfer { debit, credit, amount_minor, pending, timeout_s } => {
            let event = transfer(id, *debit, *credit, *amount_minor);
            vec![if *pending { event.pending().timeout(*timeout_s) } else { event }]
        }
        Action::Post { pick, amount_minor } => vec![post(id, target_id(*pick), *amount_minor)],
        Action::Void { pick } => vec![void(id, target_id(*pick))],
        Action::Chain { links, broken_at } => links
            .iter()
            .enumerate()
            .map(|(link, (debit, credit, amount_minor))| {
                let amount_minor = if Some(link) == *broken_at { 0 } else { *amount_minor };
                let event = transfer(event_id(task, step, link), *debit, *credit, amount_minor);
                if link + 1 < links.len() { event.linked() } else { event }
            })
            .collect(),
        Action::Expire { .. } => Vec::new(),
    }
}

async fn run_task(
    ledger: Ledger,
    clock: Arc<AtomicU64>,
    pending_ids: PendingIds,
    task: usize,
    actions: Vec<Action>,
) -> Outcome {
    let mut outcome = Outcome::default();
    for (step, action) in actions.iter().enumerate() {
        if let Action::Expire { advance_s } = action {
            let now = clock.fetch_add(*advance_s, Ordering::SeqCst) + advance_s;
            outcome.effective.expiries += ledger.expire_pending_transfers(now).await.unwrap();
            continue;
        }
        let events = events_of(task, step, action, &pending_ids);
        let results = ledger.create_transfers(&events, clock.load(Ordering::SeqCst)).await.unwrap();
        let refused = |index: usize| results.iter().any(|r| r.index as usize == index);
        outcome.ok_ids.extend(events.iter().enumerate().filter(|(index, _)| !refused(*index)).map(|(_, e)| e.id));
        match action {
            Action::Transfer { pending: true, .. } if results.is_empty() => {
                pending_ids.lock().unwrap().push(events[0].id)
            }
            Action::Post { .. } if results.is_empty() => outcome.effective.posts += 1,
            Action::Void { .. } if results.is_empty() => outcome.effective.voids += 1,
            _ => {}
        }
        if let Action::Chain { broken_at, .. } = action {
            let ids: Vec<u128> = events.iter().map(|e| e.id).collect();
            if broken_at.is_some() {
                // An earlier link may fail first; either way the chain is refused.
                assert!(!results.is_empty(), "a chain with a zero amount was applied");
                assert!(results.iter().all(|r| r.result != CreateTransferResult::Ok));
            }
            outcome.chains.push((ids, results.is_empty()));
        }
    }
    outcome
}

async fn interleave(db: Db, scripts: Vec<Vec<Action>>) -> Effective {
    let Some(test) = db.open().await else { return Effective::default() };
    let ledger = test.ledger.clone();
    let accounts: Vec<_> = (1..=ACCOUNTS)
        .map(|id| match id {
            LIMITED => account(id).flags(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
            CAPPED => account(id).flags(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS),
            _ => account(id),
        })
        .collect();
    assert_eq!(ledger.create_accounts(&accounts, START_UNIX_S).await.unwrap(), vec![]);
    let funding = [transfer(1, 1, LIMITED, 200), transfer(2, CAPPED, 2, 200)];
    assert_eq!(ledger.create_transfers(&funding, START_UNIX_S).await.unwrap(), vec![]);
    let clock = Arc::new(AtomicU64::new(START_UNIX_S));
    let pending_ids = PendingIds::default();
    let handles: Vec<_> = scripts
        .into_iter()
        .enumerate()
        .map(|(task, actions)| {
            tokio::spawn(run_task(ledger.clone(), clock.clone(), pending_ids.clone(), task, actions))
        })
        .collect();
    let mut outcomes = Vec::new();
    let mut effective = Effective::default();
    for handle in handles {
        let outcome = handle.await.unwrap();
        effective.posts += outcome.effective.posts;
        effective.voids += outcome.effective.voids;
        effective.expiries += outcome.effective.expiries;
        outcomes.push(outcome);
    }
    if let Err(violation) = ledger.check().await {
        panic!("invariant broken after concurrent batches: {violation}");
    }
    for outcome in outcomes {
        let found = ledger.lookup_transfers(&outcome.ok_ids).await.unwrap();
        assert_eq!(found.len(), outcome.ok_ids.len(), "a transfer answered ok is missing");
        for (ids, applied) in outcome.chains {
            let stored = ledger.lookup_transfers(&ids).await.unwrap().len();
            assert_eq!(stored, if applied { ids.len() } else { 0 }, "chain {ids:x?} half applied");
        }
    }
    // Everything still pending expires at the end of time, and the books still balance.
    while ledger.expire_pending_transfers(u64::from(u32::MAX) * 4).await.unwrap() > 0 {}
    ledger.check().await.unwrap();
    ledger.close().await;
    effective
}

fn run_property(db: Db) {
    if db == Db::Postgres && crate::support::postgres_url().is_none() {
        return;
    }
    let config = Config { cases: 32, max_shrink_iters: 64, failure_persistence: None, ..Config::default() };
    let scripts = prop::collection::vec(prop::collection::vec(action(), 1..=ACTIONS_PER_TASK_MAX), TASKS);
    let mut runner = TestRunner::new(config);
    let totals = std::cell::Cell::new(Effective::default());
    let result = runner.run(&scripts, |scripts| {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let effective = runtime.block_on(interleave(db, scripts));
        let sum = totals.get();
        totals.set(Effective {
            posts: sum.posts + effective.posts,
            voids: sum.voids + effective.voids,
            expiries: sum.expiries + effective.expiries,
        });
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    let totals = totals.get();
    eprintln!("{db:?}: {totals:?}");
    assert!(
        totals.posts > 0 && totals.voids > 0 && totals.expiries > 0,
        "the generator missed a kind of event: {totals:?}"
    );
}

#[test]
fn concurrent_interleavings_keep_invariants_on_sqlite() {
    run_property(Db::Sqlite);
}

#[test]
fn concurrent_interleavings_keep_invariants_on_postgres() {
    run_property(Db::Postgres);
}
