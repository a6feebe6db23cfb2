//! The ledger's invariants, checked against the stored data on one snapshot. Usable in
//! production (as a periodic audit) and run after every test.

use std::collections::{BTreeMap, HashMap};

use crate::error::Error;
use crate::store::Tx;
use crate::store::rows::{self, Columns, account_columns};
use crate::types::{Account, AccountFlags, Balances, Currency, PendingState};

/// A broken invariant. Any of these means a bug or a tampered database: the ledger
/// must stop taking writes until it is understood.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvariantViolation {
    #[error("{currency}: credits posted minus debits posted over all accounts is {difference_minor}, not 0")]
    PostedNotBalanced { currency: Currency, difference_minor: i128 },
    #[error("{currency}: credits pending minus debits pending over all accounts is {difference_minor}, not 0")]
    PendingNotBalanced { currency: Currency, difference_minor: i128 },
    #[error("account {account_id:032x} breaks its flag {flag}: {balances:?}")]
    FlagBroken { account_id: u128, flag: &'static str, balances: Balances },
    #[error("account {account_id:032x} stores {stored:?} but its transfers add up to {recomputed:?}")]
    BalancesDiffer { account_id: u128, stored: Balances, recomputed: Balances },
    #[error("transfers name account {account_id:032x}, which does not exist")]
    TransferWithoutAccount { account_id: u128 },
    #[error("pending transfer {pending_id:032x} is {state:?} but has {resolutions} posts or voids ({posts} posts)")]
    ResolutionMismatch { pending_id: u128, state: PendingState, resolutions: i64, posts: i64 },
    #[error("the ledger could not be read for checking: {0}")]
    Unreadable(#[source] Error),
}

/// Per account, the balances recomputed from the transfers: a single-phase transfer or
/// a post counts as posted; a pending transfer counts as pending while its state is
/// pending; a void counts for nothing (its pending transfer stopped counting).
const RECOMPUTED_SQL: &str = "SELECT account_id, CAST(SUM(dp) AS BIGINT), CAST(SUM(dpo) AS BIGINT), \
    CAST(SUM(cp) AS BIGINT), CAST(SUM(cpo) AS BIGINT) FROM ( \
      SELECT t.debit_account_id AS account_id, \
        CASE WHEN p.state = 1 THEN t.amount_minor ELSE 0 END AS dp, \
        CASE WHEN (t.flags & 10) = 0 THEN t.amount_minor ELSE 0 END AS dpo, \
        0 AS cp, 0 AS cpo \
      FROM transfers t LEFT JOIN pending_transfers p ON p.id = t.id \
      UNION ALL \
      SELECT t.credit_account_id, 0, 0, \
        CASE WHEN p.state = 1 THEN t.amount_minor ELSE 0 END, \
        CASE WHEN (t.flags & 10) = 0 THEN t.amount_minor ELSE 0 END \
      FROM transfers t LEFT JOIN pending_transfers p ON p.id = t.id \
    ) AS c GROUP BY account_id";

/// Pending transfers whose state disagrees with the posts and voids naming them:
/// pending or expired ones have none, posted ones exactly one post, voided ones
/// exactly one void. Also catches any pending transfer resolved twice.
const RESOLUTION_MISMATCH_SQL: &str = "SELECT p.id, p.state, CAST(COUNT(r.id) AS BIGINT), \
    CAST(COALESCE(SUM(CASE WHEN (r.flags & 4) <> 0 THEN 1 ELSE 0 END), 0) AS BIGINT) \
    FROM pending_transfers p LEFT JOIN transfers r ON r.pending_id = p.id AND (r.flags & 12) <> 0 \
    GROUP BY p.id, p.state \
    HAVING NOT ((p.state IN (1, 4) AND COUNT(r.id) = 0) \
      OR (p.state = 2 AND COUNT(r.id) = 1 AND SUM(CASE WHEN (r.flags & 4) <> 0 THEN 1 ELSE 0 END) = 1) \
      OR (p.state = 3 AND COUNT(r.id) = 1 AND SUM(CASE WHEN (r.flags & 4) <> 0 THEN 1 ELSE 0 END) = 0))";

/// Posts or voids naming a transfer that is not pending (or does not exist).
const ORPHAN_RESOLUTION_SQL: &str = "SELECT r.pending_id, CAST(COUNT(*) AS BIGINT) FROM transfers r \
    LEFT JOIN pending_transfers p ON p.id = r.pending_id \
    WHERE (r.flags & 12) <> 0 AND p.id IS NULL GROUP BY r.pending_id";

const ALL_ACCOUNTS_SQL: &str = concat!("SELECT ", account_columns!(), " FROM accounts a");

pub(crate) async fn run<T: Tx>(tx: &mut T) -> Result<Result<(), InvariantViolation>, Error> {
    let accounts: Vec<Account> =
        tx.rows(ALL_ACCOUNTS_SQL).await?.iter().map(rows::account).collect::<Result<_, _>>()?;
    if let Err(violation) = check_accounts(&accounts) {
        return Ok(Err(violation));
    }
    let mut recomputed = HashMap::new();
    for row in tx.rows(RECOMPUTED_SQL).await? {
        let sum = |index| row.int(index).map(|value| u64::try_from(value).unwrap_or(u64::MAX));
        let balances = Balances {
            debits_pending_minor: sum(1)?,
            debits_posted_minor: sum(2)?,
            credits_pending_minor: sum(3)?,
            credits_posted_minor: sum(4)?,
        };
        recomputed.insert(rows::id_from_bytes(&row.bytes(0)?)?, balances);
    }
    if let Err(violation) = compare_balances(&accounts, &recomputed) {
        return Ok(Err(violation));
    }
    if let Some(row) = tx.rows(RESOLUTION_MISMATCH_SQL).await?.first() {
        let state_code = u16::try_from(row.int(1)?).unwrap_or(0);
        let state = PendingState::from_code(state_code).ok_or(Error::Corrupt { what: "unknown pending state" })?;
        return Ok(Err(InvariantViolation::ResolutionMismatch {
            pending_id: rows::id_from_bytes(&row.bytes(0)?)?,
            state,
            resolutions: row.int(2)?,
            posts: row.int(3)?,
        }));
    }
    if let Some(row) = tx.rows(ORPHAN_RESOLUTION_SQL).await?.first() {
        // A resolution of a transfer that is not pending: report it as resolving a
        // transfer that, as far as the ledger knows, is still pending.
        return Ok(Err(InvariantViolation::ResolutionMismatch {
            pending_id: rows::id_from_bytes(&row.bytes(0)?)?,
            state: PendingState::Pending,
            resolutions: row.int(1)?,
            posts: 0,
        }));
    }
    Ok(Ok(()))
}

/// Zero sum per currency and the balance-limit flags, from the accounts alone.
fn check_accounts(accounts: &[Account]) -> Result<(), InvariantViolation> {
    let mut sums: BTreeMap<Currency, (i128, i128)> = BTreeMap::new();
    for account in accounts {
        let (posted, pending) = sums.entry(account.currency).or_default();
        *posted += i128::from(account.credits_posted_minor) - i128::from(account.debits_posted_minor);
        *pending += i128::from(account.credits_pending_minor) - i128::from(account.debits_pending_minor);
        let balances = account.balances();
        let debits = u128::from(account.debits_pending_minor) + u128::from(account.debits_posted_minor);
        let credits = u128::from(account.credits_pending_minor) + u128::from(account.credits_posted_minor);
        if account.flags.contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            && debits > u128::from(account.credits_posted_minor)
        {
            let flag = "debits_must_not_exceed_credits";
            return Err(InvariantViolation::FlagBroken { account_id: account.id, flag, balances });
        }
        if account.flags.contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
            && credits > u128::from(account.debits_posted_minor)
        {
            let flag = "credits_must_not_exceed_debits";
            return Err(InvariantViolation::FlagBroken { account_id: account.id, flag, balances });
        }
    }
    for (currency, (posted, pending)) in sums {
        if posted != 0 {
            return Err(InvariantViolation::PostedNotBalanced { currency, difference_minor: posted });
        }
        if pending != 0 {
            return Err(InvariantViolation::PendingNotBalanced { currency, difference_minor: pending });
        }
    }
    Ok(())
}

fn compare_balances(accounts: &[Account], recomputed: &HashMap<u128, Balances>) -> Result<(), InvariantViolation> {
    for account in accounts {
        let expected = recomputed.get(&account.id).copied().unwrap_or_default();
        if account.balances() != expected {
            return Err(InvariantViolation::BalancesDiffer {
                account_id: account.id,
                stored: account.balances(),
                recomputed: expected,
            });
        }
    }
    let known: std::collections::HashSet<u128> = accounts.iter().map(|account| account.id).collect();
    if let Some(account_id) = recomputed.keys().find(|id| !known.contains(id)) {
        return Err(InvariantViolation::TransferWithoutAccount { account_id: *account_id });
    }
    Ok(())
}
