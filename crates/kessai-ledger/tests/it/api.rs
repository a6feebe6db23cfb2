//! The query API, limits, reopening, and `check` catching tampered data — on both
//! backends.

use kessai_ledger::limits::{BATCH_EVENTS_MAX, EXPIRY_BATCH_MAX, HISTORY_PAGE_MAX, TIMESTAMP_MAX_UNIX_S};
use kessai_ledger::{
    AccountFlags, AccountKind, CreateTransferResult, Currency, Error, InvariantViolation, NewAccount, NewTransfer,
    PendingState, TransferFlags,
};

use crate::support::{AccountBuilder as _, Db, TestLedger, TransferBuilder as _, account, post, tamper, transfer};

const NOW: u64 = 1_700_000_000;
const USD: Currency = Currency::USD;
const JPY: Currency = Currency::JPY;

/// CARD (kind card float), STORE (store payable), FEES (center fees): ids 1, 2, 3.
async fn with_accounts(db: Db) -> Option<TestLedger> {
    let test = db.open().await?;
    let accounts: Vec<NewAccount> =
        vec![account(1), account(2).kind(AccountKind::StorePayable), account(3).kind(AccountKind::CenterFees)];
    assert_eq!(test.ledger.create_accounts(&accounts, NOW).await.unwrap(), vec![]);
    Some(test)
}

async fn history_pages_through_an_accounts_transfers_in_order(db: Db) {
    let Some(test) = with_accounts(db).await else { return };
    let ledger = &test.ledger;
    // 25 transfers touch account 1 (as debit or credit); 5 between 2 and 3 do not.
    let mut events = Vec::new();
    for n in 0..30_u128 {
        let event = match n % 6 {
            0 => transfer(100 + n, 2, 3, 1),
            1 | 2 => transfer(100 + n, 1, 2, 1),
            _ => transfer(100 + n, 2, 1, 1),
        };
        events.push(event);
    }
    assert_eq!(ledger.create_transfers(&events, NOW).await.unwrap(), vec![]);
    let expected: Vec<u128> =
        events.iter().filter(|t| t.debit_account_id == 1 || t.credit_account_id == 1).map(|t| t.id).collect();
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = ledger.account_history(1, cursor, 10).await.unwrap();
        seen.extend(page.transfers.iter().map(|t| t.id));
        pages += 1;
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);
    assert!(matches!(ledger.account_history(1, None, 0).await, Err(Error::HistoryPageOutOfRange { limit: 0 })));
    let too_many = HISTORY_PAGE_MAX + 1;
    assert!(matches!(ledger.account_history(1, None, too_many).await, Err(Error::HistoryPageOutOfRange { .. })));
    ledger.check().await.unwrap();
}

async fn totals_sum_balances_by_kind_and_currency(db: Db) {
    let Some(test) = with_accounts(db).await else { return };
    let ledger = &test.ledger;
    // A second card float (4); a USD card float (5) and USD payable (6).
    let more = vec![account(4), account(5).currency(USD), account(6).currency(USD).kind(AccountKind::StorePayable)];
    assert_eq!(ledger.create_accounts(&more, NOW).await.unwrap(), vec![]);
    let events = vec![
        transfer(10, 2, 1, 700),
        transfer(11, 2, 4, 300),
        transfer(12, 1, 2, 120).pending(),
        transfer(13, 4, 3, 45),
        NewTransfer { currency: USD, ..transfer(14, 6, 5, 9) },
    ];
    assert_eq!(ledger.create_transfers(&events, NOW).await.unwrap(), vec![]);
    let totals = ledger.totals().await.unwrap();
    let of = |kind, currency| totals.iter().find(|t| t.kind == kind && t.currency == currency).copied();
    let floats = of(AccountKind::CardFloat, JPY).unwrap();
    assert_eq!(floats.accounts, 2);
    assert_eq!(floats.balances.credits_posted_minor, 1_000);
    assert_eq!(floats.balances.debits_posted_minor, 45);
    assert_eq!(floats.balances.debits_pending_minor, 120);
    let payables = of(AccountKind::StorePayable, JPY).unwrap();
    assert_eq!((payables.balances.debits_posted_minor, payables.balances.credits_pending_minor), (1_000, 120));
    assert_eq!(of(AccountKind::CenterFees, JPY).unwrap().balances.credits_posted_minor, 45);
    assert_eq!(of(AccountKind::CardFloat, USD).unwrap().balances.credits_posted_minor, 9);
    assert_eq!(of(AccountKind::StorePayable, USD).unwrap().balances.debits_posted_minor, 9);
    assert_eq!(totals.len(), 5, "one line per kind and currency: {totals:?}");
    ledger.check().await.unwrap();
}

async fn lookups_answer_in_request_order_with_effective_fields(db: Db) {
    let Some(test) = with_accounts(db).await else { return };
    let ledger = &test.ledger;
    let events = [transfer(10, 1, 2, 70).pending().timeout(60).user_data(0xabc).code(7), post(11, 10, 50)];
    assert_eq!(ledger.create_transfers(&events, NOW).await.unwrap(), vec![]);
    let found = ledger.lookup_transfers(&[11, 999, 10]).await.unwrap();
    assert_eq!(found.iter().map(|t| t.id).collect::<Vec<_>>(), vec![11, 10]);
    let posted = found[0];
    assert_eq!(
        (posted.debit_account_id, posted.credit_account_id),
        (1, 2),
        "accounts inherited from the pending transfer"
    );
    assert_eq!((posted.amount_minor, posted.user_data_128, posted.code), (50, 0xabc, 7));
    assert_eq!(posted.flags, TransferFlags::POST_PENDING);
    assert_eq!((posted.pending_id, posted.created_at_unix_s), (10, NOW));
    assert_eq!(found[1].timeout_s, 60);
    let accounts = ledger.lookup_accounts(&[3, 42, 1]).await.unwrap();
    assert_eq!(accounts.iter().map(|a| a.id).collect::<Vec<_>>(), vec![3, 1]);
    assert_eq!(accounts[1].debits_posted_minor, 50);
    assert_eq!(accounts[0].kind, AccountKind::CenterFees);
    ledger.check().await.unwrap();
}

async fn limits_refuse_whole_batches(db: Db) {
    let Some(test) = with_accounts(db).await else { return };
    let ledger = &test.ledger;
    let too_many: Vec<_> = (1..=BATCH_EVENTS_MAX as u128 + 1).map(|id| transfer(id, 1, 2, 1)).collect();
    let events = BATCH_EVENTS_MAX + 1;
    assert!(
        matches!(ledger.create_transfers(&too_many, NOW).await, Err(Error::BatchTooLarge { events: e }) if e == events)
    );
    let late = TIMESTAMP_MAX_UNIX_S + 1;
    assert!(matches!(ledger.create_transfers(&too_many[..1], late).await, Err(Error::TimestampOutOfRange { .. })));
    assert!(matches!(ledger.expire_pending_transfers(late).await, Err(Error::TimestampOutOfRange { .. })));
    assert_eq!(ledger.lookup_transfers(&[1]).await.unwrap(), vec![], "nothing of a refused batch was applied");
    // The largest batch is accepted and applied whole.
    let largest = &too_many[..BATCH_EVENTS_MAX];
    assert_eq!(ledger.create_transfers(largest, NOW).await.unwrap(), vec![]);
    let card = ledger.lookup_accounts(&[1]).await.unwrap()[0];
    assert_eq!(card.debits_posted_minor, BATCH_EVENTS_MAX as u64);
    ledger.check().await.unwrap();
}

async fn reopening_keeps_data_and_migrations_are_idempotent(db: Db) {
    let Some(test) = with_accounts(db).await else { return };
    let events = [transfer(10, 1, 2, 5), transfer(11, 2, 3, 4).pending()];
    assert_eq!(test.ledger.create_transfers(&events, NOW).await.unwrap(), vec![]);
    test.ledger.ready().await.unwrap();
    test.ledger.close().await;
    assert!(test.ledger.ready().await.is_err(), "a closed ledger is not ready");
    for _ in 0..2 {
        let reopened = test.location.open().await;
        let found = reopened.lookup_transfers(&[10, 11]).await.unwrap();
        assert_eq!(found.len(), 2);
        reopened.check().await.unwrap();
        reopened.close().await;
    }
}

async fn expiry_runs_in_bounded_rounds(db: Db) {
    let Some(test) = with_accounts(db).await else { return };
    let ledger = &test.ledger;
    let count = EXPIRY_BATCH_MAX + 7;
    let pending: Vec<_> = (1..=count as u128).map(|id| transfer(id, 1, 2, 1).pending().timeout(5)).collect();
    assert_eq!(ledger.create_transfers(&pending, NOW).await.unwrap(), vec![]);
    assert_eq!(ledger.expire_pending_transfers(NOW + 4).await.unwrap(), 0, "not due yet");
    assert_eq!(ledger.expire_pending_transfers(NOW + 5).await.unwrap(), EXPIRY_BATCH_MAX);
    assert_eq!(ledger.expire_pending_transfers(NOW + 5).await.unwrap(), 7);
    assert_eq!(ledger.expire_pending_transfers(NOW + 5).await.unwrap(), 0);
    let card = ledger.lookup_accounts(&[1]).await.unwrap()[0];
    assert_eq!((card.debits_pending_minor, card.debits_posted_minor), (0, 0));
    ledger.check().await.unwrap();
}

async fn pending_states_follow_each_transfers_life(db: Db) {
    let Some(test) = with_accounts(db).await else { return };
    let ledger = &test.ledger;
    let events = [
        transfer(10, 1, 2, 5).pending(),
        transfer(11, 1, 2, 5).pending(),
        transfer(12, 1, 2, 5).pending(),
        transfer(13, 1, 2, 5).pending().timeout(10),
        transfer(14, 1, 2, 5),
        post(20, 11, 0),
        crate::support::void(21, 12),
    ];
    assert_eq!(ledger.create_transfers(&events, NOW).await.unwrap(), vec![]);
    assert_eq!(ledger.expire_pending_transfers(NOW + 10).await.unwrap(), 1);
    let states = ledger.lookup_pending_states(&[13, 14, 12, 99, 11, 10, 20]).await.unwrap();
    let expected = vec![
        (13, PendingState::Expired),
        (12, PendingState::Voided),
        (11, PendingState::Posted),
        (10, PendingState::Pending),
    ];
    assert_eq!(states, expected);
}

/// Each tampering breaks one invariant; `check` must name it.
async fn check_catches_tampering(db: Db) {
    type Verdict = fn(&InvariantViolation) -> bool;
    let cases: [(&'static str, Verdict); 5] = [
        ("UPDATE accounts SET debits_posted_minor = debits_posted_minor + 1 WHERE kind = 1", |v| {
            matches!(v, InvariantViolation::PostedNotBalanced { difference_minor: -1, .. })
        }),
        ("UPDATE accounts SET credits_pending_minor = credits_pending_minor + 3 WHERE kind = 2", |v| {
            matches!(v, InvariantViolation::PendingNotBalanced { difference_minor: 3, .. })
        }),
        (
            "UPDATE accounts SET debits_posted_minor = debits_posted_minor + (CASE WHEN kind = 1 THEN 1 ELSE 0 END), \
          credits_posted_minor = credits_posted_minor + (CASE WHEN kind = 2 THEN 1 ELSE 0 END)",
            |v| matches!(v, InvariantViolation::BalancesDiffer { .. }),
        ),
        ("UPDATE accounts SET flags = 2 WHERE kind = 1", |v| {
            matches!(v, InvariantViolation::FlagBroken { account_id: 1, .. })
        }),
        ("UPDATE pending_transfers SET state = 3 WHERE state = 2", |v| {
            matches!(
                v,
                InvariantViolation::ResolutionMismatch { state: PendingState::Voided, resolutions: 1, posts: 1, .. }
            )
        }),
    ];
    for (sql, expected) in cases {
        let Some(test) = with_accounts(db).await else { return };
        let events =
            [transfer(10, 1, 2, 5), transfer(11, 1, 3, 9).pending(), transfer(12, 1, 2, 4).pending(), post(13, 12, 0)];
        assert_eq!(test.ledger.create_transfers(&events, NOW).await.unwrap(), vec![]);
        test.ledger.check().await.unwrap();
        tamper(&test.location, sql).await;
        let violation = test.ledger.check().await.expect_err(sql);
        assert!(expected(&violation), "{sql}: unexpected verdict {violation}");
    }
}

async fn account_fields_round_trip(db: Db) {
    let Some(test) = db.open().await else { return };
    let all_kinds: Vec<NewAccount> = AccountKind::ALL
        .iter()
        .enumerate()
        .map(|(n, kind)| {
            account(u128::MAX - 1 - n as u128)
                .kind(*kind)
                .user_data(u128::MAX - 7)
                .flags(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
        })
        .collect();
    assert_eq!(test.ledger.create_accounts(&all_kinds, NOW).await.unwrap(), vec![]);
    let ids: Vec<u128> = all_kinds.iter().map(|a| a.id).collect();
    let found = test.ledger.lookup_accounts(&ids).await.unwrap();
    for (new, stored) in all_kinds.iter().zip(&found) {
        assert_eq!(
            (stored.id, stored.kind, stored.flags, stored.user_data_128),
            (new.id, new.kind, new.flags, new.user_data_128)
        );
        assert_eq!((stored.currency, stored.created_at_unix_s), (new.currency, NOW));
    }
}

/// Batches sent at once (group-committed together on SQLite) are applied as
/// if one after another: of two transfers with one id, one is created and
/// the other meets `exists`, and the balances count each once.
async fn concurrent_batches_apply_as_if_in_turn(db: Db) {
    let Some(test) = with_accounts(db).await else { return };
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..64u128 {
        let ledger = test.ledger.clone();
        let id = 100 + n % 32;
        tasks.spawn(async move { ledger.create_transfers(&[transfer(id, 2, 1, 10)], NOW).await.unwrap() });
    }
    let (mut created, mut existed) = (0, 0);
    while let Some(results) = tasks.join_next().await {
        match results.unwrap().as_slice() {
            [] => created += 1,
            [r] if r.result == CreateTransferResult::Exists => existed += 1,
            other => panic!("unexpected results {other:?}"),
        }
    }
    assert_eq!((created, existed), (32, 32));
    let card = test.ledger.lookup_accounts(&[1]).await.unwrap();
    assert_eq!(card[0].credits_posted_minor, 320);
    test.ledger.check().await.unwrap();
}

macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            use crate::support::Db;
            $(#[tokio::test] async fn $name() { super::$name(Db::Sqlite).await; })+
        }
        mod postgres {
            use crate::support::Db;
            $(#[tokio::test] async fn $name() { super::$name(Db::Postgres).await; })+
        }
    };
}

on_both_backends!(
    concurrent_batches_apply_as_if_in_turn,
    history_pages_through_an_accounts_transfers_in_order,
    totals_sum_balances_by_kind_and_currency,
    lookups_answer_in_request_order_with_effective_fields,
    limits_refuse_whole_batches,
    reopening_keeps_data_and_migrations_are_idempotent,
    check_catches_tampering,
    account_fields_round_trip,
    expiry_runs_in_bounded_rounds,
    pending_states_follow_each_transfers_life,
);
