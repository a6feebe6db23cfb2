//! The ledger's semantics, free of I/O. A backend loads the rows a batch can touch
//! into a `Scratch`, the engine applies the batch event by event in memory (undoing
//! failed linked chains), and the backend writes the resulting `WriteSet` in the same
//! database transaction. Both backends share this code, so their semantics cannot
//! drift apart.

use std::collections::HashMap;

use crate::limits::{BALANCE_MAX_MINOR, TIMESTAMP_MAX_UNIX_S};
use crate::result::{CreateAccountResult, CreateTransferResult};
use crate::types::{Account, AccountFlags, NewAccount, NewTransfer, PendingState, Transfer, TransferFlags};

/// The mutable part of a pending transfer, kept beside the immutable transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PendingRow {
    pub state: PendingState,
    /// `None`: never expires.
    pub expires_at_unix_s: Option<u64>,
}

/// A transfer as loaded, with its pending row if it is a pending transfer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadedTransfer {
    pub transfer: Transfer,
    pub pending: Option<PendingRow>,
}

/// What a batch changed, to be written in the batch's transaction.
#[derive(Debug, Default)]
pub(crate) struct WriteSet {
    pub accounts_created: Vec<Account>,
    /// Existing accounts whose balances changed, sorted by id so that concurrent
    /// PostgreSQL transactions lock rows in the same order.
    pub accounts_updated: Vec<Account>,
    /// In the order they were created.
    pub transfers_created: Vec<Transfer>,
    pub pending_created: Vec<(u128, PendingRow)>,
    /// Existing pending transfers whose state changed, with their new row.
    pub pending_resolved: Vec<(u128, PendingRow)>,
}

impl WriteSet {
    pub fn is_empty(&self) -> bool {
        self.accounts_created.is_empty()
            && self.accounts_updated.is_empty()
            && self.transfers_created.is_empty()
            && self.pending_created.is_empty()
            && self.pending_resolved.is_empty()
    }
}

#[derive(Debug)]
enum Undo {
    AccountBalances(Account),
    AccountCreated(u128),
    TransferCreated(u128),
    Pending(u128, Option<PendingRow>),
}

/// The rows one batch may touch, and the batch's changes to them.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    accounts: HashMap<u128, Account>,
    accounts_loaded: HashMap<u128, Account>,
    transfers: HashMap<u128, Transfer>,
    pending: HashMap<u128, PendingRow>,
    pending_loaded: HashMap<u128, PendingRow>,
    accounts_created: Vec<u128>,
    transfers_created: Vec<u128>,
    undo: Vec<Undo>,
}

impl Scratch {
    pub fn new(accounts: Vec<Account>, transfers: Vec<LoadedTransfer>) -> Scratch {
        let mut scratch = Scratch::default();
        for account in accounts {
            scratch.accounts_loaded.insert(account.id, account);
            scratch.accounts.insert(account.id, account);
        }
        for loaded in transfers {
            let id = loaded.transfer.id;
            assert_eq!(loaded.pending.is_some(), loaded.transfer.flags.contains(TransferFlags::PENDING));
            scratch.transfers.insert(id, loaded.transfer);
            if let Some(row) = loaded.pending {
                scratch.pending.insert(id, row);
                scratch.pending_loaded.insert(id, row);
            }
        }
        scratch
    }

    pub fn pending_row(&self, id: u128) -> Option<PendingRow> {
        self.pending.get(&id).copied()
    }

    pub(crate) fn mark(&self) -> usize {
        self.undo.len()
    }

    pub(crate) fn rollback(&mut self, mark: usize) {
        while self.undo.len() > mark {
            match self.undo.pop() {
                Some(Undo::AccountBalances(before)) => {
                    self.accounts.insert(before.id, before);
                }
                Some(Undo::AccountCreated(id)) => {
                    self.accounts.remove(&id);
                    assert_eq!(self.accounts_created.pop(), Some(id));
                }
                Some(Undo::TransferCreated(id)) => {
                    self.transfers.remove(&id);
                    self.pending.remove(&id);
                    assert_eq!(self.transfers_created.pop(), Some(id));
                }
                Some(Undo::Pending(id, Some(before))) => {
                    self.pending.insert(id, before);
                }
                Some(Undo::Pending(id, None)) => {
                    self.pending.remove(&id);
                }
                None => unreachable!("undo log shorter than its mark"),
            }
        }
    }

    fn account(&self, id: u128) -> Account {
        match self.accounts.get(&id) {
            Some(account) => *account,
            // Loaders fetch the accounts of every loaded transfer and fail with
            // `Error::Corrupt` when one is missing, so a loaded transfer's account is
            // always here.
            None => unreachable!("account of a loaded transfer was not loaded"),
        }
    }

    fn set_account(&mut self, account: Account) {
        let before = self.account(account.id);
        assert!(account.debits_pending_minor <= BALANCE_MAX_MINOR);
        assert!(account.debits_posted_minor <= BALANCE_MAX_MINOR);
        assert!(account.credits_pending_minor <= BALANCE_MAX_MINOR);
        assert!(account.credits_posted_minor <= BALANCE_MAX_MINOR);
        self.undo.push(Undo::AccountBalances(before));
        self.accounts.insert(account.id, account);
    }

    fn set_pending(&mut self, id: u128, row: PendingRow) {
        let before = self.pending.insert(id, row);
        self.undo.push(Undo::Pending(id, before));
    }

    fn insert_transfer(&mut self, transfer: Transfer) {
        assert!(!self.transfers.contains_key(&transfer.id));
        self.transfers.insert(transfer.id, transfer);
        self.transfers_created.push(transfer.id);
        self.undo.push(Undo::TransferCreated(transfer.id));
    }

    /// The changes, ready to write. Consumes the scratch: a batch is applied once.
    pub fn into_write_set(self) -> WriteSet {
        let mut set = WriteSet::default();
        for id in &self.accounts_created {
            set.accounts_created.push(self.accounts[id]);
        }
        for (id, account) in &self.accounts {
            let changed = self.accounts_loaded.get(id).is_some_and(|loaded| loaded != account);
            if changed {
                set.accounts_updated.push(*account);
            }
        }
        set.accounts_updated.sort_by_key(|account| account.id);
        for id in &self.transfers_created {
            set.transfers_created.push(self.transfers[id]);
        }
        for (id, row) in &self.pending {
            match self.pending_loaded.get(id) {
                None => set.pending_created.push((*id, *row)),
                Some(loaded) if loaded.state != row.state => set.pending_resolved.push((*id, *row)),
                Some(_) => {}
            }
        }
        set.pending_created.sort_by_key(|(id, _)| *id);
        set.pending_resolved.sort_by_key(|(id, _)| *id);
        set
    }
}

/// Applies events one by one; a failure inside a linked chain undoes the whole chain
/// and reports `linked_failed` for its other events, as TigerBeetle does.
fn apply_chains<E, R: Copy + PartialEq>(
    scratch: &mut Scratch,
    events: &[E],
    linked: impl Fn(&E) -> bool,
    codes: ChainCodes<R>,
    mut apply: impl FnMut(&mut Scratch, &E) -> R,
) -> Vec<R> {
    let mut results = vec![codes.ok; events.len()];
    let mut chain: Option<(usize, usize)> = None; // (first event, undo mark)
    let mut chain_broken = false;
    for (index, event) in events.iter().enumerate() {
        let is_linked = linked(event);
        if chain.is_none() && is_linked {
            chain = Some((index, scratch.mark()));
            chain_broken = false;
        }
        let result = if chain_broken {
            codes.linked_failed
        } else if is_linked && index + 1 == events.len() {
            codes.chain_open
        } else {
            apply(scratch, event)
        };
        results[index] = result;
        if result != codes.ok
            && !chain_broken
            && let Some((first, mark)) = chain
        {
            scratch.rollback(mark);
            results[first..index].fill(codes.linked_failed);
            chain_broken = true;
        }
        if !is_linked {
            chain = None;
            chain_broken = false;
        }
    }
    results
}

#[derive(Clone, Copy)]
struct ChainCodes<R> {
    ok: R,
    linked_failed: R,
    chain_open: R,
}

pub(crate) fn create_accounts(
    scratch: &mut Scratch,
    events: &[NewAccount],
    now_unix_s: u64,
) -> Vec<CreateAccountResult> {
    let codes = ChainCodes {
        ok: CreateAccountResult::Ok,
        linked_failed: CreateAccountResult::LinkedEventFailed,
        chain_open: CreateAccountResult::LinkedEventChainOpen,
    };
    let linked = |event: &NewAccount| event.flags.contains(AccountFlags::LINKED);
    apply_chains(scratch, events, linked, codes, |scratch, event| create_account(scratch, event, now_unix_s))
}

fn create_account(scratch: &mut Scratch, event: &NewAccount, now_unix_s: u64) -> CreateAccountResult {
    use CreateAccountResult as R;
    if event.id == 0 {
        return R::IdMustNotBeZero;
    }
    if event.id == u128::MAX {
        return R::IdMustNotBeIntMax;
    }
    let both_limits = AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS;
    if event.flags.contains(both_limits) {
        return R::FlagsAreMutuallyExclusive;
    }
    if let Some(existing) = scratch.accounts.get(&event.id) {
        return if existing.flags != event.flags {
            R::ExistsWithDifferentFlags
        } else if existing.user_data_128 != event.user_data_128 {
            R::ExistsWithDifferentUserData128
        } else if existing.currency != event.currency {
            R::ExistsWithDifferentCurrency
        } else if existing.kind != event.kind {
            R::ExistsWithDifferentKind
        } else {
            R::Exists
        };
    }
    let account = Account {
        id: event.id,
        currency: event.currency,
        kind: event.kind,
        flags: event.flags,
        user_data_128: event.user_data_128,
        debits_pending_minor: 0,
        debits_posted_minor: 0,
        credits_pending_minor: 0,
        credits_posted_minor: 0,
        created_at_unix_s: now_unix_s,
    };
    scratch.accounts.insert(account.id, account);
    scratch.accounts_created.push(account.id);
    scratch.undo.push(Undo::AccountCreated(account.id));
    R::Ok
}

/// The ids a transfer batch must load before `create_transfers`: its own ids (to
/// detect retries) and the pending transfers it posts or voids.
pub(crate) fn transfer_ids_to_load(events: &[NewTransfer]) -> Vec<u128> {
    let mut ids: Vec<u128> =
        events.iter().flat_map(|event| [event.id, event.pending_id]).filter(|id| *id != 0).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The accounts a transfer batch must load, given the transfers already loaded.
pub(crate) fn account_ids_to_load(events: &[NewTransfer], loaded: &[LoadedTransfer]) -> Vec<u128> {
    let from_events = events.iter().flat_map(|event| [event.debit_account_id, event.credit_account_id]);
    let from_loaded = loaded.iter().flat_map(|l| [l.transfer.debit_account_id, l.transfer.credit_account_id]);
    let mut ids: Vec<u128> = from_events.chain(from_loaded).filter(|id| *id != 0).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

pub(crate) fn create_transfers(
    scratch: &mut Scratch,
    events: &[NewTransfer],
    now_unix_s: u64,
) -> Vec<CreateTransferResult> {
    let codes = ChainCodes {
        ok: CreateTransferResult::Ok,
        linked_failed: CreateTransferResult::LinkedEventFailed,
        chain_open: CreateTransferResult::LinkedEventChainOpen,
    };
    let linked = |event: &NewTransfer| event.flags.contains(TransferFlags::LINKED);
    apply_chains(scratch, events, linked, codes, |scratch, event| create_transfer(scratch, event, now_unix_s))
}

fn create_transfer(scratch: &mut Scratch, t: &NewTransfer, now_unix_s: u64) -> CreateTransferResult {
    use CreateTransferResult as R;
    if t.id == 0 {
        return R::IdMustNotBeZero;
    }
    if t.id == u128::MAX {
        return R::IdMustNotBeIntMax;
    }
    let kinds = [TransferFlags::PENDING, TransferFlags::POST_PENDING, TransferFlags::VOID_PENDING];
    if kinds.iter().filter(|kind| t.flags.contains(**kind)).count() > 1 {
        return R::FlagsAreMutuallyExclusive;
    }
    if t.flags.contains(TransferFlags::POST_PENDING) || t.flags.contains(TransferFlags::VOID_PENDING) {
        return post_or_void_pending_transfer(scratch, t, now_unix_s);
    }
    if t.debit_account_id == 0 {
        return R::DebitAccountIdMustNotBeZero;
    }
    if t.credit_account_id == 0 {
        return R::CreditAccountIdMustNotBeZero;
    }
    if t.debit_account_id == t.credit_account_id {
        return R::AccountsMustBeDifferent;
    }
    if t.pending_id != 0 {
        return R::PendingIdMustBeZero;
    }
    let pending = t.flags.contains(TransferFlags::PENDING);
    if !pending && t.timeout_s != 0 {
        return R::TimeoutReservedForPendingTransfer;
    }
    if t.amount_minor == 0 {
        return R::AmountMustNotBeZero;
    }
    let Some(dr) = scratch.accounts.get(&t.debit_account_id).copied() else {
        return R::DebitAccountNotFound;
    };
    let Some(cr) = scratch.accounts.get(&t.credit_account_id).copied() else {
        return R::CreditAccountNotFound;
    };
    // A retry must not be judged by balances that the original already changed; it
    // is compared before the currency checks so that a retry with another currency
    // is named as such.
    if let Some(existing) = scratch.transfers.get(&t.id) {
        return transfer_exists(t, existing);
    }
    if dr.currency != cr.currency {
        return R::AccountsMustHaveTheSameCurrency;
    }
    if t.currency != dr.currency {
        return R::TransferMustHaveTheSameCurrencyAsAccounts;
    }
    if let Some(refusal) = balance_refusal(t, &dr, &cr, now_unix_s) {
        return refusal;
    }
    apply_single_phase(scratch, t, dr, cr, now_unix_s);
    R::Ok
}

/// Overflow and balance-limit checks for a single-phase or pending transfer, in
/// TigerBeetle's order. Computed in u128 so no sum can wrap.
fn balance_refusal(t: &NewTransfer, dr: &Account, cr: &Account, now_unix_s: u64) -> Option<CreateTransferResult> {
    use CreateTransferResult as R;
    let max = u128::from(BALANCE_MAX_MINOR);
    let amount = u128::from(t.amount_minor);
    let (dr_pending, dr_posted) = (u128::from(dr.debits_pending_minor), u128::from(dr.debits_posted_minor));
    let (cr_pending, cr_posted) = (u128::from(cr.credits_pending_minor), u128::from(cr.credits_posted_minor));
    let pending = t.flags.contains(TransferFlags::PENDING);
    if pending && dr_pending + amount > max {
        return Some(R::OverflowsDebitsPending);
    }
    if pending && cr_pending + amount > max {
        return Some(R::OverflowsCreditsPending);
    }
    if !pending && dr_posted + amount > max {
        return Some(R::OverflowsDebitsPosted);
    }
    if !pending && cr_posted + amount > max {
        return Some(R::OverflowsCreditsPosted);
    }
    if dr_pending + dr_posted + amount > max {
        return Some(R::OverflowsDebits);
    }
    if cr_pending + cr_posted + amount > max {
        return Some(R::OverflowsCredits);
    }
    if pending && u128::from(now_unix_s) + u128::from(t.timeout_s) > u128::from(TIMESTAMP_MAX_UNIX_S) {
        return Some(R::OverflowsTimeout);
    }
    if dr.flags.contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
        && dr_pending + dr_posted + amount > u128::from(dr.credits_posted_minor)
    {
        return Some(R::ExceedsCredits);
    }
    if cr.flags.contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
        && cr_pending + cr_posted + amount > u128::from(cr.debits_posted_minor)
    {
        return Some(R::ExceedsDebits);
    }
    None
}

fn apply_single_phase(scratch: &mut Scratch, t: &NewTransfer, mut dr: Account, mut cr: Account, now_unix_s: u64) {
    // `balance_refusal` proved every sum below stays within BALANCE_MAX_MINOR.
    if t.flags.contains(TransferFlags::PENDING) {
        dr.debits_pending_minor += t.amount_minor;
        cr.credits_pending_minor += t.amount_minor;
        let expires_at_unix_s = (t.timeout_s > 0).then(|| now_unix_s + u64::from(t.timeout_s));
        scratch.set_pending(t.id, PendingRow { state: PendingState::Pending, expires_at_unix_s });
    } else {
        dr.debits_posted_minor += t.amount_minor;
        cr.credits_posted_minor += t.amount_minor;
    }
    scratch.set_account(dr);
    scratch.set_account(cr);
    scratch.insert_transfer(Transfer {
        id: t.id,
        debit_account_id: t.debit_account_id,
        credit_account_id: t.credit_account_id,
        amount_minor: t.amount_minor,
        currency: t.currency,
        pending_id: 0,
        timeout_s: t.timeout_s,
        user_data_128: t.user_data_128,
        code: t.code,
        flags: t.flags,
        created_at_unix_s: now_unix_s,
    });
}

fn transfer_exists(t: &NewTransfer, e: &Transfer) -> CreateTransferResult {
    use CreateTransferResult as R;
    if t.flags != e.flags {
        R::ExistsWithDifferentFlags
    } else if t.debit_account_id != e.debit_account_id {
        R::ExistsWithDifferentDebitAccountId
    } else if t.credit_account_id != e.credit_account_id {
        R::ExistsWithDifferentCreditAccountId
    } else if t.amount_minor != e.amount_minor {
        R::ExistsWithDifferentAmount
    } else if t.currency != e.currency {
        R::ExistsWithDifferentCurrency
    } else if t.user_data_128 != e.user_data_128 {
        R::ExistsWithDifferentUserData128
    } else if t.code != e.code {
        R::ExistsWithDifferentCode
    } else if t.timeout_s != e.timeout_s {
        R::ExistsWithDifferentTimeout
    } else {
        R::Exists
    }
}

fn post_or_void_pending_transfer(scratch: &mut Scratch, t: &NewTransfer, now_unix_s: u64) -> CreateTransferResult {
    use CreateTransferResult as R;
    if t.pending_id == 0 {
        return R::PendingIdMustNotBeZero;
    }
    if t.pending_id == t.id {
        return R::PendingIdMustBeDifferent;
    }
    if t.timeout_s != 0 {
        return R::TimeoutReservedForPendingTransfer;
    }
    let Some(p) = scratch.transfers.get(&t.pending_id).copied() else {
        return R::PendingTransferNotFound;
    };
    if !p.flags.contains(TransferFlags::PENDING) {
        return R::PendingTransferNotPending;
    }
    if t.debit_account_id != 0 && t.debit_account_id != p.debit_account_id {
        return R::PendingTransferHasDifferentDebitAccountId;
    }
    if t.credit_account_id != 0 && t.credit_account_id != p.credit_account_id {
        return R::PendingTransferHasDifferentCreditAccountId;
    }
    if t.currency != p.currency {
        return R::PendingTransferHasDifferentCurrency;
    }
    let amount_minor = if t.amount_minor == 0 { p.amount_minor } else { t.amount_minor };
    if amount_minor > p.amount_minor {
        return R::ExceedsPendingTransferAmount;
    }
    if t.flags.contains(TransferFlags::VOID_PENDING) && amount_minor < p.amount_minor {
        return R::PendingTransferHasDifferentAmount;
    }
    if let Some(existing) = scratch.transfers.get(&t.id) {
        return resolution_exists(t, existing, &p);
    }
    let row = match scratch.pending_row(p.id) {
        Some(row) => row,
        // `Scratch::new` asserts every loaded pending transfer has its row.
        None => unreachable!("pending transfer without its pending row"),
    };
    match row.state {
        PendingState::Posted => return R::PendingTransferAlreadyPosted,
        PendingState::Voided => return R::PendingTransferAlreadyVoided,
        PendingState::Expired => return R::PendingTransferExpired,
        PendingState::Pending => {}
    }
    if row.expires_at_unix_s.is_some_and(|expires_at| expires_at <= now_unix_s) {
        return R::PendingTransferExpired;
    }
    apply_resolution(scratch, t, &p, amount_minor, row, now_unix_s);
    R::Ok
}

fn apply_resolution(
    scratch: &mut Scratch,
    t: &NewTransfer,
    p: &Transfer,
    amount_minor: u64,
    row: PendingRow,
    now_unix_s: u64,
) {
    let post = t.flags.contains(TransferFlags::POST_PENDING);
    let mut dr = scratch.account(p.debit_account_id);
    let mut cr = scratch.account(p.credit_account_id);
    release_pending(&mut dr, &mut cr, p.amount_minor);
    if post {
        // pending + posted <= max held when the pending transfer was created, and
        // posting moves at most the pending amount, so these cannot pass the max.
        dr.debits_posted_minor += amount_minor;
        cr.credits_posted_minor += amount_minor;
    }
    scratch.set_account(dr);
    scratch.set_account(cr);
    let state = if post { PendingState::Posted } else { PendingState::Voided };
    scratch.set_pending(p.id, PendingRow { state, ..row });
    scratch.insert_transfer(Transfer {
        id: t.id,
        debit_account_id: p.debit_account_id,
        credit_account_id: p.credit_account_id,
        amount_minor,
        currency: p.currency,
        pending_id: p.id,
        timeout_s: 0,
        user_data_128: if t.user_data_128 == 0 { p.user_data_128 } else { t.user_data_128 },
        code: if t.code == 0 { p.code } else { t.code },
        flags: t.flags,
        created_at_unix_s: now_unix_s,
    });
}

fn release_pending(dr: &mut Account, cr: &mut Account, amount_minor: u64) {
    assert!(dr.debits_pending_minor >= amount_minor, "pending debits below a pending transfer's amount");
    assert!(cr.credits_pending_minor >= amount_minor, "pending credits below a pending transfer's amount");
    dr.debits_pending_minor -= amount_minor;
    cr.credits_pending_minor -= amount_minor;
}

fn resolution_exists(t: &NewTransfer, e: &Transfer, p: &Transfer) -> CreateTransferResult {
    use CreateTransferResult as R;
    let amount_minor = if t.amount_minor == 0 { p.amount_minor } else { t.amount_minor };
    let user_data_128 = if t.user_data_128 == 0 { p.user_data_128 } else { t.user_data_128 };
    let code = if t.code == 0 { p.code } else { t.code };
    if t.flags != e.flags {
        R::ExistsWithDifferentFlags
    } else if t.pending_id != e.pending_id {
        R::ExistsWithDifferentPendingId
    } else if amount_minor != e.amount_minor {
        R::ExistsWithDifferentAmount
    } else if user_data_128 != e.user_data_128 {
        R::ExistsWithDifferentUserData128
    } else if code != e.code {
        R::ExistsWithDifferentCode
    } else {
        R::Exists
    }
}

/// Expires the given pending transfers if they are still pending and due. Returns how
/// many expired. Transfers already resolved or not yet due are left alone, so running
/// expiry twice releases nothing twice.
pub(crate) fn expire(scratch: &mut Scratch, pending_ids: &[u128], now_unix_s: u64) -> usize {
    let mut expired = 0;
    for id in pending_ids {
        let Some(row) = scratch.pending_row(*id) else { continue };
        let due = row.expires_at_unix_s.is_some_and(|expires_at| expires_at <= now_unix_s);
        if row.state != PendingState::Pending || !due {
            continue;
        }
        let Some(p) = scratch.transfers.get(id).copied() else { unreachable!("pending row without its transfer") };
        let mut dr = scratch.account(p.debit_account_id);
        let mut cr = scratch.account(p.credit_account_id);
        release_pending(&mut dr, &mut cr, p.amount_minor);
        scratch.set_account(dr);
        scratch.set_account(cr);
        scratch.set_pending(*id, PendingRow { state: PendingState::Expired, ..row });
        expired += 1;
    }
    expired
}
