//! The conformance table: each case is a list of steps (operation, inputs, expected
//! result codes, expected balances afterwards), run on a fresh ledger. The same table
//! runs against SQLite and PostgreSQL, `check` runs after every step, and a test
//! proves the table names every result code.

use std::collections::HashSet;

use kessai_ledger::limits::{BALANCE_MAX_MINOR, TIMESTAMP_MAX_UNIX_S};
use kessai_ledger::{
    AccountFlags, AccountKind, CreateAccountResult as A, CreateAccountsResult, CreateTransferResult as T,
    CreateTransfersResult, Currency, Ledger, NewAccount, NewTransfer, TransferFlags,
};

use crate::support::{AccountBuilder as _, Db, TransferBuilder as _, account, post, transfer, void};

const CARD: u128 = 1;
const STORE: u128 = 2;
const FEES: u128 = 3;
const EURO: u128 = 4;
/// JPY, debits must not exceed credits.
const LIMITED: u128 = 5;
/// JPY, credits must not exceed debits.
const CAPPED: u128 = 6;
const UNKNOWN: u128 = 99;
const MAX: u64 = BALANCE_MAX_MINOR;
const NOW: u64 = 1_000;

fn setup_accounts() -> Vec<NewAccount> {
    vec![
        account(CARD),
        account(STORE).kind(AccountKind::StorePayable),
        account(FEES).kind(AccountKind::CenterFees),
        account(EURO).kind(AccountKind::Pool).currency(Currency::EUR),
        account(LIMITED).flags(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
        account(CAPPED).kind(AccountKind::CreditFunding).flags(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Accounts(Vec<NewAccount>, Vec<(u32, A)>),
    Transfers(Vec<NewTransfer>, Vec<(u32, T)>),
    /// Expire at the step's time; expect this many expired.
    Expire(usize),
}

/// Debits pending, debits posted, credits pending, credits posted.
type Expected = (u128, [u64; 4]);

#[derive(Debug, Clone)]
struct Step {
    now_unix_s: u64,
    op: Op,
    balances: Vec<Expected>,
}

#[derive(Debug, Clone)]
struct Case {
    name: &'static str,
    now_unix_s: u64,
    steps: Vec<Step>,
}

impl Case {
    fn new(name: &'static str) -> Case {
        Case { name, now_unix_s: NOW, steps: Vec::new() }
    }
    fn at(mut self, now_unix_s: u64) -> Case {
        self.now_unix_s = now_unix_s;
        self
    }
    fn step(mut self, op: Op) -> Case {
        self.steps.push(Step { now_unix_s: self.now_unix_s, op, balances: Vec::new() });
        self
    }
    fn transfers(self, events: Vec<NewTransfer>, results: &[(u32, T)]) -> Case {
        self.step(Op::Transfers(events, results.to_vec()))
    }
    fn accounts(self, events: Vec<NewAccount>, results: &[(u32, A)]) -> Case {
        self.step(Op::Accounts(events, results.to_vec()))
    }
    fn expire(self, expired: usize) -> Case {
        self.step(Op::Expire(expired))
    }
    fn balances(mut self, expected: &[Expected]) -> Case {
        let Some(step) = self.steps.last_mut() else { panic!("{}: balances before any step", self.name) };
        step.balances.extend_from_slice(expected);
        self
    }
}

fn cases() -> Vec<Case> {
    let mut cases = transfer_cases();
    cases.extend(two_phase_cases());
    cases.extend(chain_cases());
    cases.extend(limit_cases());
    cases.extend(account_cases());
    cases
}

fn transfer_cases() -> Vec<Case> {
    vec![
        Case::new("a single-phase transfer posts at once")
            .transfers(vec![transfer(10, CARD, STORE, 100)], &[])
            .balances(&[(CARD, [0, 100, 0, 0]), (STORE, [0, 0, 0, 100])]),
        Case::new("a retry with identical fields is exists and moves nothing")
            .transfers(vec![transfer(10, CARD, STORE, 100)], &[])
            .transfers(vec![transfer(10, CARD, STORE, 100)], &[(0, T::Exists)])
            .balances(&[(CARD, [0, 100, 0, 0]), (STORE, [0, 0, 0, 100])]),
        Case::new("a retried id with different fields names the first difference")
            .transfers(vec![transfer(10, CARD, STORE, 100).user_data(7).code(3)], &[])
            .transfers(
                vec![
                    transfer(10, CARD, STORE, 100).user_data(7).code(3).pending(),
                    transfer(10, STORE, CARD, 100).user_data(7).code(3),
                    transfer(10, CARD, FEES, 100).user_data(7).code(3),
                    transfer(10, CARD, STORE, 101).user_data(7).code(3),
                    transfer(10, CARD, STORE, 100).user_data(7).code(3).currency(Currency::EUR),
                    transfer(10, CARD, STORE, 100).user_data(8).code(3),
                    transfer(10, CARD, STORE, 100).user_data(7).code(4),
                    transfer(10, CARD, STORE, 100).user_data(7).code(3),
                ],
                &[
                    (0, T::ExistsWithDifferentFlags),
                    (1, T::ExistsWithDifferentDebitAccountId),
                    (2, T::ExistsWithDifferentCreditAccountId),
                    (3, T::ExistsWithDifferentAmount),
                    (4, T::ExistsWithDifferentCurrency),
                    (5, T::ExistsWithDifferentUserData128),
                    (6, T::ExistsWithDifferentCode),
                    (7, T::Exists),
                ],
            )
            .balances(&[(CARD, [0, 100, 0, 0]), (STORE, [0, 0, 0, 100]), (FEES, [0, 0, 0, 0])]),
        Case::new("retried pending and post with a different timeout or pending id")
            .transfers(
                vec![
                    transfer(11, CARD, STORE, 5).pending().timeout(60),
                    transfer(12, CARD, STORE, 7).pending(),
                    transfer(13, CARD, STORE, 9).pending(),
                    post(14, 12, 0),
                ],
                &[],
            )
            .transfers(
                vec![transfer(11, CARD, STORE, 5).pending().timeout(61), post(14, 13, 0), post(14, 12, 0)],
                &[(0, T::ExistsWithDifferentTimeout), (1, T::ExistsWithDifferentPendingId), (2, T::Exists)],
            )
            .balances(&[(CARD, [14, 7, 0, 0]), (STORE, [0, 0, 14, 7])]),
        Case::new("bad inputs are refused one by one and move nothing")
            .transfers(
                vec![
                    transfer(0, CARD, STORE, 1),
                    transfer(u128::MAX, CARD, STORE, 1),
                    transfer(20, CARD, STORE, 1).flags(TransferFlags::PENDING | TransferFlags::POST_PENDING),
                    transfer(21, 0, STORE, 1),
                    transfer(22, CARD, 0, 1),
                    transfer(23, CARD, CARD, 1),
                    transfer(24, CARD, STORE, 1).pending_id(5),
                    transfer(25, CARD, STORE, 1).timeout(5),
                    transfer(26, CARD, STORE, 0),
                    transfer(27, UNKNOWN, STORE, 1),
                    transfer(28, CARD, UNKNOWN, 1),
                    transfer(29, CARD, EURO, 1),
                    transfer(30, CARD, STORE, 1).currency(Currency::EUR),
                    transfer(31, CARD, STORE, 1).flags(TransferFlags::POST_PENDING | TransferFlags::VOID_PENDING),
                ],
                &[
                    (0, T::IdMustNotBeZero),
                    (1, T::IdMustNotBeIntMax),
                    (2, T::FlagsAreMutuallyExclusive),
                    (3, T::DebitAccountIdMustNotBeZero),
                    (4, T::CreditAccountIdMustNotBeZero),
                    (5, T::AccountsMustBeDifferent),
                    (6, T::PendingIdMustBeZero),
                    (7, T::TimeoutReservedForPendingTransfer),
                    (8, T::AmountMustNotBeZero),
                    (9, T::DebitAccountNotFound),
                    (10, T::CreditAccountNotFound),
                    (11, T::AccountsMustHaveTheSameCurrency),
                    (12, T::TransferMustHaveTheSameCurrencyAsAccounts),
                    (13, T::FlagsAreMutuallyExclusive),
                ],
            )
            .balances(&[(CARD, [0, 0, 0, 0]), (STORE, [0, 0, 0, 0]), (EURO, [0, 0, 0, 0])]),
        Case::new("two events with one id in a batch: the second is a retry")
            .transfers(
                vec![
                    transfer(100, CARD, STORE, 10),
                    transfer(100, CARD, STORE, 10),
                    transfer(101, CARD, STORE, 1),
                    transfer(101, CARD, STORE, 2),
                ],
                &[(1, T::Exists), (3, T::ExistsWithDifferentAmount)],
            )
            .balances(&[(CARD, [0, 11, 0, 0]), (STORE, [0, 0, 0, 11])]),
    ]
}

fn two_phase_cases() -> Vec<Case> {
    vec![
        Case::new("pending, then posted in full, then neither posted nor voided again")
            .transfers(vec![transfer(40, CARD, STORE, 100).pending()], &[])
            .balances(&[(CARD, [100, 0, 0, 0]), (STORE, [0, 0, 100, 0])])
            .transfers(vec![post(41, 40, 0)], &[])
            .balances(&[(CARD, [0, 100, 0, 0]), (STORE, [0, 0, 0, 100])])
            .transfers(
                vec![post(42, 40, 0), void(43, 40), post(41, 40, 0)],
                &[(0, T::PendingTransferAlreadyPosted), (1, T::PendingTransferAlreadyPosted), (2, T::Exists)],
            )
            .balances(&[(CARD, [0, 100, 0, 0]), (STORE, [0, 0, 0, 100])]),
        Case::new("a partial post releases the rest of the pending amount")
            .transfers(vec![transfer(40, CARD, STORE, 100).pending(), post(41, 40, 60)], &[])
            .balances(&[(CARD, [0, 60, 0, 0]), (STORE, [0, 0, 0, 60])]),
        Case::new("a void releases everything, once")
            .transfers(vec![transfer(40, CARD, STORE, 100).pending()], &[])
            .transfers(vec![void(41, 40)], &[])
            .balances(&[(CARD, [0, 0, 0, 0]), (STORE, [0, 0, 0, 0])])
            .transfers(
                vec![void(42, 40), post(43, 40, 0)],
                &[(0, T::PendingTransferAlreadyVoided), (1, T::PendingTransferAlreadyVoided)],
            )
            .balances(&[(CARD, [0, 0, 0, 0]), (STORE, [0, 0, 0, 0])]),
        Case::new("bad posts and voids are refused and leave the pending transfer pending")
            .transfers(vec![transfer(50, CARD, STORE, 100).pending(), transfer(60, CARD, STORE, 3)], &[])
            .transfers(
                vec![
                    post(51, 0, 0),
                    post(52, 52, 0),
                    post(53, 50, 0).timeout(5),
                    post(54, 999, 0),
                    post(55, 60, 0),
                    post(56, 50, 0).accounts(FEES, 0),
                    post(57, 50, 0).accounts(0, FEES),
                    post(58, 50, 0).currency(Currency::EUR),
                    post(59, 50, 101),
                    void(61, 50).amount(40),
                    post(62, 50, 0).flags(TransferFlags::PENDING),
                ],
                &[
                    (0, T::PendingIdMustNotBeZero),
                    (1, T::PendingIdMustBeDifferent),
                    (2, T::TimeoutReservedForPendingTransfer),
                    (3, T::PendingTransferNotFound),
                    (4, T::PendingTransferNotPending),
                    (5, T::PendingTransferHasDifferentDebitAccountId),
                    (6, T::PendingTransferHasDifferentCreditAccountId),
                    (7, T::PendingTransferHasDifferentCurrency),
                    (8, T::ExceedsPendingTransferAmount),
                    (9, T::PendingTransferHasDifferentAmount),
                    (10, T::FlagsAreMutuallyExclusive),
                ],
            )
            .balances(&[(CARD, [100, 3, 0, 0]), (STORE, [0, 0, 100, 3])])
            .transfers(vec![post(63, 50, 100).accounts(CARD, STORE).user_data(9)], &[])
            .balances(&[(CARD, [0, 103, 0, 0]), (STORE, [0, 0, 0, 103])]),
        Case::new("a pending transfer past its timeout is expired, before and after expiry runs")
            .transfers(vec![transfer(70, CARD, STORE, 100).pending().timeout(10)], &[])
            .at(NOW + 10)
            .transfers(vec![post(71, 70, 0)], &[(0, T::PendingTransferExpired)])
            .balances(&[(CARD, [100, 0, 0, 0]), (STORE, [0, 0, 100, 0])])
            .expire(1)
            .balances(&[(CARD, [0, 0, 0, 0]), (STORE, [0, 0, 0, 0])])
            .transfers(
                vec![void(72, 70), post(71, 70, 0)],
                &[(0, T::PendingTransferExpired), (1, T::PendingTransferExpired)],
            )
            .expire(0)
            .balances(&[(CARD, [0, 0, 0, 0]), (STORE, [0, 0, 0, 0])]),
        Case::new("a pending transfer can be posted until its timeout")
            .transfers(vec![transfer(70, CARD, STORE, 100).pending().timeout(10)], &[])
            .at(NOW + 9)
            .expire(0)
            .transfers(vec![post(71, 70, 0)], &[])
            .at(NOW + 100)
            .expire(0)
            .balances(&[(CARD, [0, 100, 0, 0]), (STORE, [0, 0, 0, 100])]),
        Case::new("expiry releases only due, still-pending transfers, once")
            .transfers(
                vec![
                    transfer(80, CARD, STORE, 1).pending().timeout(10),
                    transfer(81, CARD, STORE, 2).pending(),
                    transfer(82, CARD, STORE, 4).pending().timeout(10),
                    transfer(83, CARD, STORE, 8).pending().timeout(500),
                    post(84, 82, 0),
                ],
                &[],
            )
            .at(NOW + 100)
            .expire(1)
            .balances(&[(CARD, [10, 4, 0, 0]), (STORE, [0, 0, 10, 4])])
            .expire(0)
            .at(NOW + 500)
            .expire(1)
            .expire(0)
            .balances(&[(CARD, [2, 4, 0, 0]), (STORE, [0, 0, 2, 4])]),
    ]
}

fn chain_cases() -> Vec<Case> {
    vec![
        Case::new("a linked chain fails as a whole and can then be created")
            .transfers(
                vec![
                    transfer(90, CARD, STORE, 5).linked(),
                    transfer(91, UNKNOWN, STORE, 5).linked(),
                    transfer(92, CARD, STORE, 5),
                ],
                &[(0, T::LinkedEventFailed), (1, T::DebitAccountNotFound), (2, T::LinkedEventFailed)],
            )
            .balances(&[(CARD, [0, 0, 0, 0]), (STORE, [0, 0, 0, 0])])
            .transfers(vec![transfer(90, CARD, STORE, 5).linked(), transfer(92, CARD, STORE, 5)], &[])
            .balances(&[(CARD, [0, 10, 0, 0]), (STORE, [0, 0, 0, 10])]),
        Case::new("events outside a failed chain are applied")
            .transfers(
                vec![
                    transfer(93, CARD, STORE, 1),
                    transfer(94, CARD, STORE, 2).linked(),
                    transfer(95, CARD, CARD, 4),
                    transfer(96, CARD, STORE, 8),
                ],
                &[(1, T::LinkedEventFailed), (2, T::AccountsMustBeDifferent)],
            )
            .balances(&[(CARD, [0, 9, 0, 0]), (STORE, [0, 0, 0, 9])]),
        Case::new("a chain left open at the end of the batch fails")
            .transfers(
                vec![transfer(95, CARD, STORE, 1), transfer(96, CARD, STORE, 2).linked()],
                &[(1, T::LinkedEventChainOpen)],
            )
            .transfers(
                vec![transfer(97, CARD, STORE, 4).linked(), transfer(98, CARD, STORE, 8).linked()],
                &[(0, T::LinkedEventFailed), (1, T::LinkedEventChainOpen)],
            )
            .balances(&[(CARD, [0, 1, 0, 0]), (STORE, [0, 0, 0, 1])]),
        Case::new("a failed chain undoes a post inside it")
            .transfers(vec![transfer(40, CARD, STORE, 100).pending()], &[])
            .transfers(
                vec![post(41, 40, 0).linked(), transfer(42, CARD, FEES, 1).linked(), transfer(43, CARD, STORE, 0)],
                &[(0, T::LinkedEventFailed), (1, T::LinkedEventFailed), (2, T::AmountMustNotBeZero)],
            )
            .balances(&[(CARD, [100, 0, 0, 0]), (STORE, [0, 0, 100, 0]), (FEES, [0, 0, 0, 0])])
            .transfers(vec![post(41, 40, 0)], &[])
            .balances(&[(CARD, [0, 100, 0, 0]), (STORE, [0, 0, 0, 100])]),
        Case::new("a failed chain undoes a pending transfer inside it")
            .transfers(
                vec![transfer(44, CARD, STORE, 100).pending().linked(), post(45, 44, 0).linked(), post(46, 44, 0)],
                &[(0, T::LinkedEventFailed), (1, T::LinkedEventFailed), (2, T::PendingTransferAlreadyPosted)],
            )
            .balances(&[(CARD, [0, 0, 0, 0]), (STORE, [0, 0, 0, 0])])
            .transfers(vec![post(45, 44, 0)], &[(0, T::PendingTransferNotFound)]),
    ]
}

fn limit_cases() -> Vec<Case> {
    vec![
        Case::new("debits must not exceed credits")
            .transfers(vec![transfer(1, CARD, LIMITED, 100)], &[])
            .transfers(
                vec![
                    transfer(2, LIMITED, STORE, 101),
                    transfer(3, LIMITED, STORE, 60).pending(),
                    transfer(4, LIMITED, STORE, 41),
                ],
                &[(0, T::ExceedsCredits), (2, T::ExceedsCredits)],
            )
            .balances(&[(LIMITED, [60, 0, 0, 100])])
            .transfers(vec![transfer(5, LIMITED, STORE, 40)], &[])
            .balances(&[(LIMITED, [60, 40, 0, 100])]),
        Case::new("credits must not exceed debits")
            .transfers(vec![transfer(1, STORE, CAPPED, 1)], &[(0, T::ExceedsDebits)])
            .transfers(vec![transfer(2, CAPPED, STORE, 50), transfer(3, STORE, CAPPED, 50)], &[])
            .transfers(vec![transfer(4, STORE, CAPPED, 1).pending()], &[(0, T::ExceedsDebits)])
            .balances(&[(CAPPED, [0, 50, 0, 50])]),
        Case::new("posted balances never pass the maximum")
            .transfers(vec![transfer(1, CARD, STORE, MAX)], &[])
            .transfers(
                vec![transfer(2, CARD, FEES, 1), transfer(3, FEES, STORE, 1), transfer(4, FEES, CARD, u64::MAX)],
                &[(0, T::OverflowsDebitsPosted), (1, T::OverflowsCreditsPosted), (2, T::OverflowsDebitsPosted)],
            )
            .balances(&[(CARD, [0, MAX, 0, 0]), (STORE, [0, 0, 0, MAX]), (FEES, [0, 0, 0, 0])]),
        Case::new("pending balances and totals never pass the maximum")
            .transfers(vec![transfer(1, CARD, STORE, MAX).pending()], &[])
            .transfers(
                vec![
                    transfer(2, CARD, FEES, 1).pending(),
                    transfer(3, FEES, STORE, 1).pending(),
                    transfer(4, CARD, FEES, 1),
                    transfer(5, FEES, STORE, 1),
                ],
                &[
                    (0, T::OverflowsDebitsPending),
                    (1, T::OverflowsCreditsPending),
                    (2, T::OverflowsDebits),
                    (3, T::OverflowsCredits),
                ],
            )
            .balances(&[(CARD, [MAX, 0, 0, 0]), (STORE, [0, 0, MAX, 0])]),
        Case::new("a timeout past the largest timestamp overflows")
            .at(TIMESTAMP_MAX_UNIX_S - 5)
            .transfers(
                vec![
                    transfer(1, CARD, STORE, 1).pending().timeout(10),
                    transfer(2, CARD, STORE, 1).pending().timeout(5),
                ],
                &[(0, T::OverflowsTimeout)],
            )
            .balances(&[(CARD, [1, 0, 0, 0])]),
    ]
}

fn account_cases() -> Vec<Case> {
    vec![
        Case::new("bad accounts are refused")
            .accounts(
                vec![
                    account(0),
                    account(u128::MAX),
                    account(200).flags(
                        AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
                    ),
                    account(201),
                ],
                &[(0, A::IdMustNotBeZero), (1, A::IdMustNotBeIntMax), (2, A::FlagsAreMutuallyExclusive)],
            )
            .transfers(vec![transfer(1, CARD, 201, 1), transfer(2, CARD, 200, 1)], &[(1, T::CreditAccountNotFound)])
            .balances(&[(201, [0, 0, 0, 1])]),
        Case::new("a retried account id names the first difference").accounts(
            vec![
                account(CARD).flags(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
                account(CARD).user_data(1),
                account(CARD).currency(Currency::EUR),
                account(CARD).kind(AccountKind::Pool),
                account(CARD),
            ],
            &[
                (0, A::ExistsWithDifferentFlags),
                (1, A::ExistsWithDifferentUserData128),
                (2, A::ExistsWithDifferentCurrency),
                (3, A::ExistsWithDifferentKind),
                (4, A::Exists),
            ],
        ),
        Case::new("linked accounts are created together or not at all")
            .accounts(
                vec![account(210).flags(AccountFlags::LINKED), account(0), account(211)],
                &[(0, A::LinkedEventFailed), (1, A::IdMustNotBeZero)],
            )
            .transfers(vec![transfer(1, CARD, 210, 1), transfer(2, CARD, 211, 1)], &[(0, T::CreditAccountNotFound)])
            .accounts(vec![account(212).flags(AccountFlags::LINKED)], &[(0, A::LinkedEventChainOpen)])
            .accounts(vec![account(210).flags(AccountFlags::LINKED), account(212)], &[])
            .transfers(vec![transfer(3, CARD, 210, 1), transfer(4, CARD, 212, 1)], &[])
            .balances(&[(CARD, [0, 3, 0, 0]), (210, [0, 0, 0, 1]), (211, [0, 0, 0, 1]), (212, [0, 0, 0, 1])]),
    ]
}

async fn run_step(ledger: &Ledger, case: &Case, index: usize, step: &Step) {
    let context = format!("case {:?}, step {index}", case.name);
    match &step.op {
        Op::Accounts(events, expected) => {
            let results = ledger.create_accounts(events, step.now_unix_s).await.unwrap();
            let expected: Vec<_> = expected
                .iter()
                .map(|(index, result)| CreateAccountsResult { index: *index, result: *result })
                .collect();
            assert_eq!(results, expected, "{context}");
        }
        Op::Transfers(events, expected) => {
            let results = ledger.create_transfers(events, step.now_unix_s).await.unwrap();
            let expected: Vec<_> = expected
                .iter()
                .map(|(index, result)| CreateTransfersResult { index: *index, result: *result })
                .collect();
            assert_eq!(results, expected, "{context}");
        }
        Op::Expire(expected) => {
            let expired = ledger.expire_pending_transfers(step.now_unix_s).await.unwrap();
            assert_eq!(expired, *expected, "{context}: pending transfers expired");
        }
    }
    for (account_id, [dp, dpo, cp, cpo]) in &step.balances {
        let found = ledger.lookup_accounts(&[*account_id]).await.unwrap();
        let [account] = found.as_slice() else { panic!("{context}: account {account_id} not found") };
        let actual = [
            account.debits_pending_minor,
            account.debits_posted_minor,
            account.credits_pending_minor,
            account.credits_posted_minor,
        ];
        assert_eq!(actual, [*dp, *dpo, *cp, *cpo], "{context}: balances of account {account_id}");
    }
    if let Err(violation) = ledger.check().await {
        panic!("{context}: invariant broken: {violation}");
    }
}

async fn run_table(db: Db) {
    for case in cases() {
        let Some(test) = db.open().await else { return };
        let results = test.ledger.create_accounts(&setup_accounts(), NOW).await.unwrap();
        assert_eq!(results, vec![], "{}: setup accounts", case.name);
        for (index, step) in case.steps.iter().enumerate() {
            run_step(&test.ledger, &case, index, step).await;
        }
        test.ledger.close().await;
    }
}

#[tokio::test]
async fn table_on_sqlite() {
    run_table(Db::Sqlite).await;
}

#[tokio::test]
async fn table_on_postgres() {
    run_table(Db::Postgres).await;
}

#[test]
fn table_names_every_result_code() {
    let mut transfer_codes = HashSet::new();
    let mut account_codes = HashSet::new();
    for case in cases() {
        for step in case.steps {
            match step.op {
                Op::Transfers(_, expected) => transfer_codes.extend(expected.iter().map(|(_, result)| *result)),
                Op::Accounts(_, expected) => account_codes.extend(expected.iter().map(|(_, result)| *result)),
                Op::Expire(_) => {}
            }
        }
    }
    // `ok` is what an empty expectation means.
    transfer_codes.insert(T::Ok);
    account_codes.insert(A::Ok);
    let missing: Vec<_> = T::ALL.iter().filter(|code| !transfer_codes.contains(code)).collect();
    assert!(missing.is_empty(), "transfer result codes the table never expects: {missing:?}");
    let missing: Vec<_> = A::ALL.iter().filter(|code| !account_codes.contains(code)).collect();
    assert!(missing.is_empty(), "account result codes the table never expects: {missing:?}");
}
