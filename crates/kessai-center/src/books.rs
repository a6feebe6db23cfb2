//! The center's books: every yen a settlement moves goes through the
//! ledger (DESIGN §6).
//!
//! | account | kind | flags |
//! |---|---|---|
//! | card float, one per card | `CardFloat` | debits must not exceed credits (a card cannot spend what the books do not show) |
//! | store payable, [`SHARDS`] per paid store and currency | `StorePayable` | — |
//! | value issuance, [`SHARDS`] per currency | `CreditFunding` | — |
//! | credit funding, [`SHARDS`] per currency (what the credit authorizer owes for captured charges) | `CreditFunding` | — |
//! | corrections, [`SHARDS`] per currency (value an operator took off cards) | `CenterFees` | — |
//! | virtual prepaid card, one per card (#18) | `Prepaid` | debits must not exceed credits |
//! | bank pool, postal pool, cash, [`SHARDS`] each per currency (money received for prepaid value) | `Pool` | — |
//! | suspense, [`SHARDS`] per currency (money received that matched no request) | `Suspense` | — |
//! | payouts in transit, [`SHARDS`] per currency (paid to stores, not yet confirmed by the bank) | `PayoutsInTransit` | — |
//! | fees, [`SHARDS`] per currency (what the center earned on purchases) | `CenterFees` | — |
//! | tokens outstanding, [`SHARDS`] per currency (bank deposit tokens issued, not yet redeemed or paid back, #21) | `TokensOutstanding` | — |
//!
//! Every account but a card's float is a *pool* split into [`SHARDS`]
//! accounts: a transfer moves the shard its own id picks ([`shard`]), and
//! what the pool holds is the sum of its shards. On PostgreSQL a write locks
//! the accounts it moves until it commits; with one account per store, every
//! purchase at a busy store would wait for the one before it. With shards,
//! concurrent purchases at one store mostly lock different rows. (A payout
//! aggregates the shards; a refund may take a shard below zero, the pool
//! never.) Shard 0 keeps the id the pool's one account had before shards,
//! so books written before are still counted.
//!
//! A purchase is a pending transfer card float → store payable when the
//! sealed DEBIT is issued (id = the card transaction id), posted when the
//! card confirms, voided when it provably did not happen. Pending purchase
//! transfers have no timeout: only the card's answer settles them.
//!
//! A charge (value update) is the mirror image: a pending transfer credit
//! funding → card float when the sealed CREDIT is issued (id = the card
//! transaction id), posted when the card confirms (and the authorization is
//! captured), voided when it provably did not happen.
//!
//! A decrease back to the credit card is the reverse of a charge: card
//! float → credit funding, pending when the sealed DEBIT is issued, posted
//! (and the credit card refunded) when the card confirms.
//!
//! What the center owes a card, or a card owes the center, is held when it
//! arises, with an id derived from the owed item ([`owed_hold_id`]): a
//! purchase refund is store payable → card float (the store's payable is
//! reversed at once, the card credited when next presented); a correction
//! is card float → corrections. Posted when the card confirms; voided only
//! if the operator cancels it.
//!
//! A virtual prepaid card's value moves by posted transfers only, each
//! made in the transaction that records why: a funding (pool, cash or
//! credit funding → prepaid), a payment (prepaid → store payable, id = the
//! payment's transaction id), a refund of such a payment (store payable →
//! prepaid), money that matched no request (pool → suspense) and its later
//! application (suspense → prepaid) or return to its sender (suspense →
//! the pool it came into).
//!
//! A bank deposit token (seed 002, #21) is issued when the deposit it is
//! for is confirmed on the pool account's statement: bank pool → tokens
//! outstanding, posted, keyed by the token's id, in the transaction that
//! takes the statement's credit and issues the token. A token the card
//! gave up and the provider honoured is owed to the card: tokens
//! outstanding → card float, held with the owed item, posted when the card
//! takes the CREDIT (as a refund's hold is). A token not redeemed by its
//! expiry is paid back to its refund account by a clearing run: tokens
//! outstanding → payouts in transit (code 19), then → bank pool when the
//! bank confirms it, or back to tokens outstanding when it comes back. A
//! token that pays a bill moves tokens outstanding → the payee's payable
//! (code 20, with a `purchase` item), and what it held beyond the bill is
//! owed to the card as a redeemed token's value is.
//!
//! Clearing (#19) pays a store what is open on its payable: store payable
//! → payouts in transit (what is sent) and → fees, posted when the payout
//! is made; payouts in transit → bank pool when the bank confirms it, or →
//! store payable when it comes back. Every transfer that moves a store's
//! payable carries an *item* ([`PayableItem`]: a purchase posted, a refund
//! held, …) that the write records with it, once, when the transfer is new:
//! what is open on a payable (posted credits less posted and pending debits)
//! is the sum of its open items (`crate::clearing`).
//!
//! Account and follow-up transfer ids are derived with SHA-256 from a label
//! and the business key, so every instance computes the same ids and a
//! retried call meets `exists` instead of moving money twice.
//!
//! The books are the ledger's tables in the center's own database. Each
//! effect here is only a list of [`Entries`] (accounts to open, transfers to
//! make); the write that changes a settlement, value update or owed item
//! applies them in its own transaction (`Exec::books`), all or nothing, so
//! a step's row, its stored answer and its ledger effect commit together.

use kessai_core::ids::{CardId, PrepaidId, StoreId, TransactionId};
use kessai_core::{Currency, Money};
use kessai_ledger::{AccountFlags, AccountKind, Ledger, NewAccount, NewTransfer, TransferFlags};
use sha2::{Digest, Sha256};

use crate::db::{CenterDb, DbError};

/// Transfer codes (the ledger's `code` field): what a transfer is for.
pub const CODE_PURCHASE: u16 = 1;
pub const CODE_ISSUE: u16 = 2;
pub const CODE_CHARGE: u16 = 3;
pub const CODE_DECREASE: u16 = 4;
pub const CODE_REFUND: u16 = 5;
pub const CODE_CORRECTION: u16 = 6;
pub const CODE_REPLACEMENT: u16 = 7;
pub const CODE_PREPAID_FUNDING: u16 = 8;
pub const CODE_PREPAID_PAYMENT: u16 = 9;
pub const CODE_SUSPENSE: u16 = 10;
pub const CODE_PREPAID_TO_CARD: u16 = 11;
pub const CODE_PAYOUT: u16 = 12;
pub const CODE_FEE: u16 = 13;
pub const CODE_PAYOUT_SETTLED: u16 = 14;
pub const CODE_PAYOUT_RETURNED: u16 = 15;
pub const CODE_SUSPENSE_RETURNED: u16 = 16;
pub const CODE_TOKEN_ISSUED: u16 = 17;
pub const CODE_TOKEN_REDEEMED: u16 = 18;
pub const CODE_TOKEN_PAYBACK: u16 = 19;
pub const CODE_TOKEN_PURCHASE: u16 = 20;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BooksError {
    #[error("ledger: {0}")]
    Ledger(#[from] kessai_ledger::Error),
    #[error("the ledger refused {what}: {code}")]
    Refused { what: &'static str, code: &'static str },
    #[error("currency {0} is not kept in the ledger")]
    Currency(String),
    #[error(transparent)]
    Db(DbError),
}

impl From<DbError> for BooksError {
    fn from(e: DbError) -> BooksError {
        match e {
            DbError::BooksRefused { what, code } => BooksError::Refused { what, code },
            e => BooksError::Db(e),
        }
    }
}

fn derived_id(label: &str, key: &[u8]) -> u128 {
    let digest = Sha256::new()
        .chain_update(b"kessai-ledger-id\0")
        .chain_update(label)
        .chain_update([0])
        .chain_update(key)
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    // Zero and u128::MAX are reserved by the ledger; SHA-256 hitting either
    // is not a concern, but keep the ids valid by construction.
    u128::from_be_bytes(bytes).clamp(1, u128::MAX - 1)
}

pub fn card_float_id(card: &CardId) -> u128 {
    derived_id("card-float", card.as_bytes())
}

/// How many accounts each pool is split into. Never lowered: a pending
/// transfer resolves against the shard it was made on, and reads sum shards
/// `0..SHARDS`.
pub const SHARDS: usize = 16;

/// The shard a transfer keyed by `key` (its own id, or its owed item's)
/// moves.
pub fn shard(key: &[u8]) -> usize {
    (derived_id("shard", key) % SHARDS as u128) as usize
}

/// Account `shard` of the pool `label`/`key` (shard 0: the id of the pool
/// before it was split).
fn pooled_id(label: &str, key: &str, shard: usize) -> u128 {
    if shard == 0 { derived_id(label, key.as_bytes()) } else { derived_id(label, format!("{key}#{shard}").as_bytes()) }
}

fn pool_ids(label: &str, key: &str) -> Vec<u128> {
    (0..SHARDS).map(|shard| pooled_id(label, key, shard)).collect()
}

/// A store's payable, every shard.
pub fn store_payable_ids(store: &StoreId, currency: Currency) -> Vec<u128> {
    pool_ids("store-payable", &format!("{store}/{currency}"))
}

fn store_payable_id(store: &StoreId, currency: Currency, shard: usize) -> u128 {
    pooled_id("store-payable", &format!("{store}/{currency}"), shard)
}

fn issuance_id(currency: Currency, shard: usize) -> u128 {
    pooled_id("issuance", currency.code(), shard)
}

/// Where charges paid by credit card are funded from, per currency: every
/// shard.
pub fn credit_funding_ids(currency: Currency) -> Vec<u128> {
    pool_ids("credit-funding", currency.code())
}

fn credit_funding_id(currency: Currency, shard: usize) -> u128 {
    pooled_id("credit-funding", currency.code(), shard)
}

/// Where value an operator takes off cards goes, per currency.
fn corrections_id(currency: Currency, shard: usize) -> u128 {
    pooled_id("corrections", currency.code(), shard)
}

/// A virtual prepaid card's account.
pub fn prepaid_account_id(card: &PrepaidId) -> u128 {
    derived_id("prepaid", card.as_str().as_bytes())
}

/// Where money received for prepaid value is held, per currency: every
/// shard of each (bank pool, postal pool, cash).
pub fn receiving_pool_ids(source: Receiving, currency: Currency) -> Vec<u128> {
    pool_ids(source.label(), currency.code())
}

/// Money received that matched no request, per currency: every shard.
pub fn suspense_ids(currency: Currency) -> Vec<u128> {
    pool_ids("suspense", currency.code())
}

/// Bank deposit tokens issued and not yet redeemed or paid back, per
/// currency: every shard.
pub fn tokens_outstanding_ids(currency: Currency) -> Vec<u128> {
    pool_ids("tokens-outstanding", currency.code())
}

/// Where a prepaid card's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receiving {
    /// The center's pool account at its bank (transfers, FIG. 13).
    BankPool,
    /// The center's postal transfer account (FIG. 14).
    PostalPool,
    /// Cash received by registered mail (FIG. 15).
    Cash,
    /// A credit card, through the authorizer (FIG. 12).
    Credit,
    /// The suspense account: money an operator applied to a card.
    Suspense,
}

impl Receiving {
    fn label(self) -> &'static str {
        match self {
            Receiving::BankPool => "bank-pool",
            Receiving::PostalPool => "postal-pool",
            Receiving::Cash => "cash",
            Receiving::Credit => "credit-funding",
            Receiving::Suspense => "suspense",
        }
    }

    fn kind(self) -> AccountKind {
        match self {
            Receiving::BankPool | Receiving::PostalPool | Receiving::Cash => AccountKind::Pool,
            Receiving::Credit => AccountKind::CreditFunding,
            Receiving::Suspense => AccountKind::Suspense,
        }
    }
}

/// The pending transfer of an owed item (a purchase refund, a correction).
pub fn owed_hold_id(owed_id: &str) -> TransactionId {
    TransactionId::from_bytes(derived_id("owed", owed_id.as_bytes()).to_be_bytes())
}

/// The one issuance transfer of a card's initial value.
pub fn initial_value_id(card: &CardId) -> u128 {
    derived_id("initial-value", card.as_bytes())
}

fn post_id(tx: &TransactionId) -> u128 {
    derived_id("post", tx.as_bytes())
}

fn void_id(tx: &TransactionId) -> u128 {
    derived_id("void", tx.as_bytes())
}

fn ledger_currency(c: Currency) -> Result<kessai_ledger::Currency, BooksError> {
    kessai_ledger::Currency::parse(c.code()).map_err(|_| BooksError::Currency(c.code().to_owned()))
}

/// A card's float.
fn float_account(card: &CardId, currency: Currency) -> Result<NewAccount, BooksError> {
    Ok(NewAccount {
        id: card_float_id(card),
        currency: ledger_currency(currency)?,
        kind: AccountKind::CardFloat,
        flags: AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
        user_data_128: u128::from(u64::from_be_bytes(*card.as_bytes())),
    })
}

/// One item of a store's payable (see `crate::clearing`): recorded with
/// the transfer `transfer` of the same entries, when that transfer is new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayableItem {
    /// The ledger transfer that moves the payable; the item's id is its id
    /// in hex.
    pub transfer: u128,
    pub store: StoreId,
    pub currency: Currency,
    /// `purchase`, `prepaid_payment`, `refund`, `prepaid_refund`,
    /// `refund_cancelled` or `payout_returned`.
    pub kind: &'static str,
    /// What it is of: the settlement, the payment, the refund, the payout.
    pub reference: String,
    /// Positive: owed to the store; negative: taken off.
    pub amount_minor: i64,
}

/// What one write does to the books: accounts to open (if missing),
/// transfers to make and the payable items they carry, applied together in
/// the write's transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entries {
    what: &'static str,
    accounts: Vec<NewAccount>,
    transfers: Vec<NewTransfer>,
    items: Vec<PayableItem>,
}

impl Entries {
    /// Nothing for the books.
    pub fn none() -> Entries {
        Entries::default()
    }

    fn of(what: &'static str, accounts: Vec<NewAccount>, transfer: NewTransfer) -> Entries {
        Entries { what, accounts, transfers: vec![transfer], items: Vec::new() }
    }

    /// The same, carrying an item of `store`'s payable on its (first)
    /// transfer.
    fn with_item(mut self, store: &StoreId, kind: &'static str, reference: &str, amount: Money, sign: i64) -> Entries {
        let transfer = self.transfers.first().map_or(0, |t| t.id);
        let minor = i64::try_from(amount.amount_minor()).unwrap_or(i64::MAX).saturating_mul(sign);
        self.items.push(PayableItem {
            transfer,
            store: store.clone(),
            currency: amount.currency(),
            kind,
            reference: reference.to_owned(),
            amount_minor: minor,
        });
        self
    }

    /// The payable items, each with the index of its transfer.
    pub fn items(&self) -> impl Iterator<Item = (usize, &PayableItem)> {
        self.items
            .iter()
            .filter_map(|item| self.transfers.iter().position(|t| t.id == item.transfer).map(|i| (i, item)))
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty() && self.transfers.is_empty() && self.items.is_empty()
    }

    pub fn accounts(&self) -> &[NewAccount] {
        &self.accounts
    }

    pub fn transfers(&self) -> &[NewTransfer] {
        &self.transfers
    }

    /// What the entries are for, for a refusal's message.
    pub fn what(&self) -> &'static str {
        self.what
    }
}

fn pending(id: u128, (debit, credit): (u128, u128), amount: Money, code: u16) -> Result<NewTransfer, BooksError> {
    Ok(NewTransfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount_minor: amount.amount_minor(),
        currency: ledger_currency(amount.currency())?,
        pending_id: 0,
        timeout_s: 0,
        user_data_128: 0,
        code,
        flags: TransferFlags::PENDING,
    })
}

fn account(id: u128, currency: Currency, kind: AccountKind) -> Result<NewAccount, BooksError> {
    Ok(NewAccount { id, currency: ledger_currency(currency)?, kind, flags: AccountFlags::default(), user_data_128: 0 })
}

fn payable_account(store: &StoreId, currency: Currency, shard: usize) -> Result<NewAccount, BooksError> {
    account(store_payable_id(store, currency, shard), currency, AccountKind::StorePayable)
}

fn funding_account(currency: Currency, shard: usize) -> Result<NewAccount, BooksError> {
    account(credit_funding_id(currency, shard), currency, AccountKind::CreditFunding)
}

/// Posts (`post`) or voids a pending transfer in full. A missing hold is
/// refused by the ledger (`pending_transfer_not_found`).
fn resolve(tx: &TransactionId, amount: Money, post: bool, code: u16) -> Result<Entries, BooksError> {
    let t = NewTransfer {
        id: if post { post_id(tx) } else { void_id(tx) },
        // Accounts 0: the pending transfer's own; amount 0 (a void): all of it.
        debit_account_id: 0,
        credit_account_id: 0,
        amount_minor: if post { amount.amount_minor() } else { 0 },
        currency: ledger_currency(amount.currency())?,
        pending_id: tx.as_u128(),
        timeout_s: 0,
        user_data_128: 0,
        code,
        flags: if post { TransferFlags::POST_PENDING } else { TransferFlags::VOID_PENDING },
    };
    Ok(Entries::of(if post { "posting" } else { "voiding" }, Vec::new(), t))
}

/// The entries of each effect on the books. None touches the database: the
/// write that changes the row the effect belongs to applies them.
impl Entries {
    /// The accounts a card needs (idempotent).
    pub fn open_card(card: &CardId, currency: Currency) -> Result<Entries, BooksError> {
        Ok(Entries {
            what: "opening a card",
            accounts: vec![float_account(card, currency)?],
            transfers: Vec::new(),
            items: Vec::new(),
        })
    }

    /// Value put on a card outside a purchase (issuance); `id` makes it
    /// idempotent. Opens the card's accounts.
    pub fn issue(id: u128, card: &CardId, amount: Money) -> Result<Entries, BooksError> {
        let c = amount.currency();
        let shard = shard(&id.to_be_bytes());
        let issuance = account(issuance_id(c, shard), c, AccountKind::CreditFunding)?;
        let t = NewTransfer {
            flags: TransferFlags::default(),
            ..pending(id, (issuance_id(c, shard), card_float_id(card)), amount, CODE_ISSUE)?
        };
        Ok(Entries::of("an issuance", vec![float_account(card, c)?, issuance], t))
    }

    /// The pending purchase transfer card float → store payable, made when
    /// the sealed DEBIT is issued (id = the card transaction id).
    pub fn purchase_hold(
        tx: &TransactionId,
        card: &CardId,
        payee: &StoreId,
        amount: Money,
    ) -> Result<Entries, BooksError> {
        let c = amount.currency();
        let shard = shard(tx.as_bytes());
        let accounts = vec![float_account(card, c)?, payable_account(payee, c, shard)?];
        let t = pending(tx.as_u128(), (card_float_id(card), store_payable_id(payee, c, shard)), amount, CODE_PURCHASE)?;
        Ok(Entries::of("the purchase hold", accounts, t))
    }

    /// Posts the purchase: the card confirmed the debit. An item of the
    /// payee's payable (settlement `settlement`).
    pub fn purchase_post(
        tx: &TransactionId,
        payee: &StoreId,
        settlement: &str,
        amount: Money,
    ) -> Result<Entries, BooksError> {
        Ok(resolve(tx, amount, true, CODE_PURCHASE)?.with_item(payee, "purchase", settlement, amount, 1))
    }

    /// Voids the purchase: the card proved it never applied the debit.
    pub fn purchase_void(tx: &TransactionId, amount: Money) -> Result<Entries, BooksError> {
        resolve(tx, amount, false, CODE_PURCHASE)
    }

    /// The pending charge, made when the sealed CREDIT is issued: credit
    /// funding → card float. Opens the card's accounts.
    pub fn charge_hold(tx: &TransactionId, card: &CardId, amount: Money) -> Result<Entries, BooksError> {
        let c = amount.currency();
        let shard = shard(tx.as_bytes());
        let accounts = vec![float_account(card, c)?, funding_account(c, shard)?];
        let t = pending(tx.as_u128(), (credit_funding_id(c, shard), card_float_id(card)), amount, CODE_CHARGE)?;
        Ok(Entries::of("the charge hold", accounts, t))
    }

    /// Posts (the card confirmed the credit and the funding is captured) or
    /// voids (the card proved it never applied it) a charge.
    pub fn charge_resolve(tx: &TransactionId, amount: Money, post: bool) -> Result<Entries, BooksError> {
        resolve(tx, amount, post, CODE_CHARGE)
    }

    /// The pending decrease, made when the sealed DEBIT is issued: card
    /// float → credit funding (value going back to the credit card).
    pub fn decrease_hold(tx: &TransactionId, card: &CardId, amount: Money) -> Result<Entries, BooksError> {
        let c = amount.currency();
        let shard = shard(tx.as_bytes());
        let t = pending(tx.as_u128(), (card_float_id(card), credit_funding_id(c, shard)), amount, CODE_DECREASE)?;
        Ok(Entries::of("the decrease hold", vec![funding_account(c, shard)?], t))
    }

    /// Posts or voids a decrease.
    pub fn decrease_resolve(tx: &TransactionId, amount: Money, post: bool) -> Result<Entries, BooksError> {
        resolve(tx, amount, post, CODE_DECREASE)
    }

    /// A purchase refund, held when the store asks: store payable → card
    /// float. Its payable item names the settlement refunded.
    pub fn refund_hold(
        owed_id: &str,
        settlement: &str,
        store: &StoreId,
        card: &CardId,
        amount: Money,
    ) -> Result<Entries, BooksError> {
        let c = amount.currency();
        let id = owed_hold_id(owed_id).as_u128();
        let shard = shard(&id.to_be_bytes());
        let accounts = vec![float_account(card, c)?, payable_account(store, c, shard)?];
        let t = pending(id, (store_payable_id(store, c, shard), card_float_id(card)), amount, CODE_REFUND)?;
        Ok(Entries::of("the refund hold", accounts, t).with_item(store, "refund", settlement, amount, -1))
    }

    /// A purchase refund's hold voided (moved to another card, or
    /// cancelled): its amount is the store's again.
    pub fn refund_void(owed_id: &str, settlement: &str, store: &StoreId, amount: Money) -> Result<Entries, BooksError> {
        Ok(resolve(&owed_hold_id(owed_id), amount, false, CODE_REFUND)?.with_item(
            store,
            "refund_cancelled",
            settlement,
            amount,
            1,
        ))
    }

    /// A correction, held when the operator makes it: card float →
    /// corrections. Refused (`exceeds_credits`) beyond the card's float.
    pub fn correction_hold(owed_id: &str, card: &CardId, amount: Money) -> Result<Entries, BooksError> {
        let c = amount.currency();
        let id = owed_hold_id(owed_id).as_u128();
        let shard = shard(&id.to_be_bytes());
        let accounts = vec![float_account(card, c)?, account(corrections_id(c, shard), c, AccountKind::CenterFees)?];
        let t = pending(id, (card_float_id(card), corrections_id(c, shard)), amount, CODE_CORRECTION)?;
        Ok(Entries::of("the correction hold", accounts, t))
    }

    /// A replaced card's value, owed to its replacement, held when the
    /// operator replaces it: old card float → new card float.
    pub fn replacement_hold(owed_id: &str, old: &CardId, new: &CardId, amount: Money) -> Result<Entries, BooksError> {
        let c = amount.currency();
        let id = owed_hold_id(owed_id).as_u128();
        let accounts = vec![float_account(old, c)?, float_account(new, c)?];
        let t = pending(id, (card_float_id(old), card_float_id(new)), amount, CODE_REPLACEMENT)?;
        Ok(Entries::of("the replacement hold", accounts, t))
    }

    /// Posts (the card confirmed) or voids (the operator cancelled) an owed
    /// item's hold.
    pub fn owed_resolve(owed_id: &str, amount: Money, code: u16, post: bool) -> Result<Entries, BooksError> {
        resolve(&owed_hold_id(owed_id), amount, post, code)
    }
}

/// A posted transfer `id` of `amount` from `debit` to `credit`.
fn posted(id: u128, (debit, credit): (u128, u128), amount: Money, code: u16) -> Result<NewTransfer, BooksError> {
    Ok(NewTransfer { flags: TransferFlags::default(), ..pending(id, (debit, credit), amount, code)? })
}

fn prepaid_account(card: &PrepaidId, currency: Currency) -> Result<NewAccount, BooksError> {
    Ok(NewAccount {
        id: prepaid_account_id(card),
        currency: ledger_currency(currency)?,
        kind: AccountKind::Prepaid,
        flags: AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
        user_data_128: 0,
    })
}

/// The entries of a virtual prepaid card's value (#18).
impl Entries {
    /// A new virtual prepaid card's account (idempotent).
    pub fn open_prepaid(card: &PrepaidId, currency: Currency) -> Result<Entries, BooksError> {
        Ok(Entries {
            what: "opening a prepaid card",
            accounts: vec![prepaid_account(card, currency)?],
            transfers: Vec::new(),
            items: Vec::new(),
        })
    }

    /// Value issued to a prepaid card from what was received (`from`),
    /// posted; `key` (a funding's or a bank credit's id) makes it once.
    pub fn prepaid_funding(key: &str, from: Receiving, card: &PrepaidId, amount: Money) -> Result<Entries, BooksError> {
        let c = amount.currency();
        let id = derived_id("prepaid-funding", key.as_bytes());
        let shard = shard(&id.to_be_bytes());
        let source = pooled_id(from.label(), c.code(), shard);
        let accounts = vec![prepaid_account(card, c)?, account(source, c, from.kind())?];
        let t = posted(id, (source, prepaid_account_id(card)), amount, CODE_PREPAID_FUNDING)?;
        Ok(Entries::of("the prepaid funding", accounts, t))
    }

    /// Money received on a pool that matched no request (or not its
    /// amount): pool → suspense, posted; `key` (the bank's entry) makes it
    /// once.
    pub fn suspense(key: &str, from: Receiving, amount: Money) -> Result<Entries, BooksError> {
        let c = amount.currency();
        let id = derived_id("suspense", key.as_bytes());
        let shard = shard(&id.to_be_bytes());
        let (source, held) = (pooled_id(from.label(), c.code(), shard), pooled_id("suspense", c.code(), shard));
        let accounts = vec![account(source, c, from.kind())?, account(held, c, AccountKind::Suspense)?];
        let t = posted(id, (source, held), amount, CODE_SUSPENSE)?;
        Ok(Entries::of("the suspense entry", accounts, t))
    }

    /// Money in suspense sent back to whoever paid it: suspense → the pool
    /// it came into, posted; `key` (the bank's entry) makes it once.
    pub fn suspense_returned(key: &str, to: Receiving, amount: Money) -> Result<Entries, BooksError> {
        let c = amount.currency();
        let id = derived_id("suspense-returned", key.as_bytes());
        let shard = shard(&id.to_be_bytes());
        let (held, pool) = (pooled_id("suspense", c.code(), shard), pooled_id(to.label(), c.code(), shard));
        let accounts = vec![account(held, c, AccountKind::Suspense)?, account(pool, c, to.kind())?];
        let t = posted(id, (held, pool), amount, CODE_SUSPENSE_RETURNED)?;
        Ok(Entries::of("the returned credit", accounts, t))
    }

    /// A store's refund of a prepaid payment: the payee's payable → the
    /// prepaid card, posted at once (the card is the center's own account:
    /// nothing waits for a presentation). `refund` (the refund's id) makes
    /// it once.
    pub fn prepaid_refund(
        refund: &str,
        payment: &str,
        payee: &StoreId,
        card: &PrepaidId,
        amount: Money,
    ) -> Result<Entries, BooksError> {
        let c = amount.currency();
        let id = derived_id("prepaid-refund", refund.as_bytes());
        let shard = shard(&id.to_be_bytes());
        let accounts = vec![prepaid_account(card, c)?, payable_account(payee, c, shard)?];
        let t = posted(id, (store_payable_id(payee, c, shard), prepaid_account_id(card)), amount, CODE_REFUND)?;
        Ok(Entries::of("the prepaid refund", accounts, t).with_item(payee, "prepaid_refund", payment, amount, -1))
    }

    /// Value moved from a prepaid card to an IC card (a value update): the
    /// pending transfer prepaid → card float, made when the sealed CREDIT is
    /// issued (id = the card transaction id; refused beyond the prepaid
    /// card's value), posted when the card confirms, voided when it
    /// provably did not happen.
    pub fn prepaid_to_card_hold(
        tx: &TransactionId,
        prepaid: &PrepaidId,
        card: &CardId,
        amount: Money,
    ) -> Result<Entries, BooksError> {
        let c = amount.currency();
        let accounts = vec![prepaid_account(prepaid, c)?, float_account(card, c)?];
        let t =
            pending(tx.as_u128(), (prepaid_account_id(prepaid), card_float_id(card)), amount, CODE_PREPAID_TO_CARD)?;
        Ok(Entries::of("the hold of value moved from a prepaid card", accounts, t))
    }

    /// Posts or voids value moved from a prepaid card.
    pub fn prepaid_to_card_resolve(tx: &TransactionId, amount: Money, post: bool) -> Result<Entries, BooksError> {
        resolve(tx, amount, post, CODE_PREPAID_TO_CARD)
    }

    /// A payment from a prepaid card to a store: prepaid → store payable,
    /// posted (id = the payment's transaction id). Refused
    /// (`exceeds_credits`) beyond the card's value.
    pub fn prepaid_payment(
        tx: &TransactionId,
        payment: &str,
        card: &PrepaidId,
        payee: &StoreId,
        amount: Money,
    ) -> Result<Entries, BooksError> {
        let c = amount.currency();
        let shard = shard(tx.as_bytes());
        let accounts = vec![prepaid_account(card, c)?, payable_account(payee, c, shard)?];
        let t = posted(
            tx.as_u128(),
            (prepaid_account_id(card), store_payable_id(payee, c, shard)),
            amount,
            CODE_PREPAID_PAYMENT,
        )?;
        Ok(Entries::of("the prepaid payment", accounts, t).with_item(payee, "prepaid_payment", payment, amount, 1))
    }
}

/// The entries of bank deposit tokens (seed 002, #21).
impl Entries {
    /// A token issued for a deposit confirmed on the pool account: bank
    /// pool → tokens outstanding, posted; the token's id makes it once.
    pub fn token_issued(token: &str, amount: Money) -> Result<Entries, BooksError> {
        let c = amount.currency();
        let id = derived_id("token-issued", token.as_bytes());
        let shard = shard(&id.to_be_bytes());
        let from = Receiving::BankPool;
        let (pool, outstanding) =
            (pooled_id(from.label(), c.code(), shard), pooled_id("tokens-outstanding", c.code(), shard));
        let accounts = vec![account(pool, c, from.kind())?, account(outstanding, c, AccountKind::TokensOutstanding)?];
        let t = posted(id, (pool, outstanding), amount, CODE_TOKEN_ISSUED)?;
        Ok(Entries::of("the token issued", accounts, t))
    }

    /// A redeemed token's value owed to the card that gave it up, held when
    /// the provider honours it: tokens outstanding → card float, pending
    /// (id from the owed item), posted when the card takes the CREDIT.
    pub fn token_to_card_hold(owed_id: &str, card: &CardId, amount: Money) -> Result<Entries, BooksError> {
        let c = amount.currency();
        let id = owed_hold_id(owed_id).as_u128();
        let shard = shard(&id.to_be_bytes());
        let outstanding = pooled_id("tokens-outstanding", c.code(), shard);
        let accounts = vec![float_account(card, c)?, account(outstanding, c, AccountKind::TokensOutstanding)?];
        let t = pending(id, (outstanding, card_float_id(card)), amount, CODE_TOKEN_REDEEMED)?;
        Ok(Entries::of("the redeemed token's hold", accounts, t))
    }

    /// A bill paid by a deposit token the card gave up (the provider
    /// honoured it): tokens outstanding → the payee's payable, posted (id
    /// from the settlement), a `purchase` item of the payable; what the
    /// token holds beyond the bill is owed to the card (its own hold).
    pub fn token_purchase(settlement: &str, payee: &StoreId, amount: Money) -> Result<Entries, BooksError> {
        let c = amount.currency();
        let id = derived_id("token-purchase", settlement.as_bytes());
        let shard = shard(&id.to_be_bytes());
        let outstanding = pooled_id("tokens-outstanding", c.code(), shard);
        let accounts =
            vec![account(outstanding, c, AccountKind::TokensOutstanding)?, payable_account(payee, c, shard)?];
        let t = posted(id, (outstanding, store_payable_id(payee, c, shard)), amount, CODE_TOKEN_PURCHASE)?;
        Ok(Entries::of("the purchase paid by a token", accounts, t).with_item(payee, "purchase", settlement, amount, 1))
    }

    /// An expired token's value paid back to its refund account: tokens
    /// outstanding → payouts in transit, posted (id from the payback, on
    /// the shard [`Entries::payout_settled`] takes it from).
    pub fn token_payback(payback: &str, amount: Money) -> Result<Entries, BooksError> {
        let c = amount.currency();
        let id = derived_id("token-payback", payback.as_bytes());
        let shard = shard(&derived_id("payout", payback.as_bytes()).to_be_bytes());
        let (outstanding, transit) =
            (pooled_id("tokens-outstanding", c.code(), shard), pooled_id("payouts-in-transit", c.code(), shard));
        let accounts = vec![
            account(outstanding, c, AccountKind::TokensOutstanding)?,
            account(transit, c, AccountKind::PayoutsInTransit)?,
        ];
        let t = posted(id, (outstanding, transit), amount, CODE_TOKEN_PAYBACK)?;
        Ok(Entries::of("the token's payback", accounts, t))
    }

    /// The bank gave a token's payback back: payouts in transit → tokens
    /// outstanding again, held until it is paid back elsewhere.
    pub fn token_payback_returned(payback: &str, amount: Money) -> Result<Entries, BooksError> {
        let c = amount.currency();
        let id = derived_id("token-payback-returned", payback.as_bytes());
        let shard = shard(&derived_id("payout", payback.as_bytes()).to_be_bytes());
        let (transit, outstanding) =
            (pooled_id("payouts-in-transit", c.code(), shard), pooled_id("tokens-outstanding", c.code(), shard));
        let accounts = vec![account(outstanding, c, AccountKind::TokensOutstanding)?];
        let t = posted(id, (transit, outstanding), amount, CODE_PAYOUT_RETURNED)?;
        Ok(Entries::of("the returned payback", accounts, t))
    }
}

/// Payouts in transit, per currency: every shard.
pub fn in_transit_ids(currency: Currency) -> Vec<u128> {
    pool_ids("payouts-in-transit", currency.code())
}

/// Fees the center earned, per currency: every shard.
pub fn fee_ids(currency: Currency) -> Vec<u128> {
    pool_ids("fees", currency.code())
}

/// The entries of clearing (#19): payouts to stores.
impl Entries {
    /// A payout made: store payable → payouts in transit (`net`) and →
    /// fees (`fees`, if any), posted; ids derived from the payout.
    pub fn payout(payout: &str, store: &StoreId, net: Money, fees: Money) -> Result<Entries, BooksError> {
        let c = net.currency();
        let id = derived_id("payout", payout.as_bytes());
        let shard = shard(&id.to_be_bytes());
        let payable = store_payable_id(store, c, shard);
        let (transit, fee) = (pooled_id("payouts-in-transit", c.code(), shard), pooled_id("fees", c.code(), shard));
        let mut accounts = vec![payable_account(store, c, shard)?, account(transit, c, AccountKind::PayoutsInTransit)?];
        let mut transfers = vec![posted(id, (payable, transit), net, CODE_PAYOUT)?];
        if fees.amount_minor() > 0 {
            accounts.push(account(fee, c, AccountKind::CenterFees)?);
            transfers.push(posted(derived_id("payout-fee", payout.as_bytes()), (payable, fee), fees, CODE_FEE)?);
        }
        Ok(Entries { what: "the payout", accounts, transfers, items: Vec::new() })
    }

    /// The bank confirmed a payout: payouts in transit → the center's bank
    /// pool (the money left its account).
    pub fn payout_settled(payout: &str, amount: Money) -> Result<Entries, BooksError> {
        let c = amount.currency();
        let id = derived_id("payout-settled", payout.as_bytes());
        let shard = shard(&derived_id("payout", payout.as_bytes()).to_be_bytes());
        let (transit, pool) =
            (pooled_id("payouts-in-transit", c.code(), shard), pooled_id("bank-pool", c.code(), shard));
        let accounts = vec![account(pool, c, AccountKind::Pool)?];
        Ok(Entries::of("the settled payout", accounts, posted(id, (transit, pool), amount, CODE_PAYOUT_SETTLED)?))
    }

    /// The bank rejected or returned a payout: payouts in transit → the
    /// store's payable again (an item, paid by a later run).
    pub fn payout_returned(payout: &str, store: &StoreId, amount: Money) -> Result<Entries, BooksError> {
        let c = amount.currency();
        let id = derived_id("payout-returned", payout.as_bytes());
        let shard = shard(&derived_id("payout", payout.as_bytes()).to_be_bytes());
        let transit = pooled_id("payouts-in-transit", c.code(), shard);
        let accounts = vec![payable_account(store, c, shard)?];
        let t = posted(id, (transit, store_payable_id(store, c, shard)), amount, CODE_PAYOUT_RETURNED)?;
        Ok(Entries::of("the returned payout", accounts, t).with_item(store, "payout_returned", payout, amount, 1))
    }
}

/// Synthetic payables for `kessai bench clearing` only: for each store, a
/// posted transfer issuance → its payable (shard 0) of what its synthetic
/// items sum to, so the books agree with them.
impl Entries {
    pub fn bench_payables(payables: &[(StoreId, Money)]) -> Result<Entries, BooksError> {
        let mut accounts = Vec::new();
        let mut transfers = Vec::new();
        for (store, amount) in payables {
            let c = amount.currency();
            let id = derived_id("bench-payable", store.as_str().as_bytes());
            let source = issuance_id(c, 0);
            if accounts.is_empty() {
                accounts.push(account(source, c, AccountKind::CreditFunding)?);
            }
            accounts.push(payable_account(store, c, 0)?);
            transfers.push(posted(id, (source, store_payable_id(store, c, 0)), *amount, CODE_ISSUE)?);
        }
        Ok(Entries { what: "bench payables", accounts, transfers, items: Vec::new() })
    }
}

/// The books: reads through the ledger's API; writes of entries that stand
/// alone (issuance, tests) as one transaction of the center's database.
#[derive(Debug, Clone)]
pub struct Books {
    db: CenterDb,
}

impl Books {
    pub fn new(db: CenterDb) -> Books {
        Books { db }
    }

    pub fn ledger(&self) -> &Ledger {
        self.db.ledger()
    }

    /// Applies `entries` as a transaction of their own.
    pub async fn apply(&self, entries: Entries, now_unix_s: u64) -> Result<(), BooksError> {
        self.db.write(move |mut conn| Box::pin(async move { conn.books(&entries, now_unix_s).await })).await?;
        Ok(())
    }

    /// Opens the accounts a card needs (idempotent).
    pub async fn open_card(&self, card: &CardId, currency: Currency, now_unix_s: u64) -> Result<(), BooksError> {
        self.apply(Entries::open_card(card, currency)?, now_unix_s).await
    }

    /// Records value put on a card outside a purchase (issuance). `id`
    /// makes the call idempotent.
    pub async fn issue(&self, id: u128, card: &CardId, amount: Money, now_unix_s: u64) -> Result<(), BooksError> {
        self.apply(Entries::issue(id, card, amount)?, now_unix_s).await
    }

    /// A card's float: what the books say the card holds (posted), and
    /// what is held for pending purchases.
    pub async fn card_float(&self, card: &CardId) -> Result<Option<(u64, u64)>, BooksError> {
        let found = self.ledger().lookup_accounts(&[card_float_id(card)]).await?;
        Ok(found
            .first()
            .map(|a| (a.credits_posted_minor.saturating_sub(a.debits_posted_minor), a.debits_pending_minor)))
    }

    /// Credits pending on a card's float (charges whose CREDIT is out).
    pub async fn card_credits_pending(&self, card: &CardId) -> Result<u64, BooksError> {
        let found = self.ledger().lookup_accounts(&[card_float_id(card)]).await?;
        Ok(found.first().map_or(0, |a| a.credits_pending_minor))
    }

    /// What the credit authorizer owes for captured charges (posted), over
    /// every shard.
    pub async fn credit_funding(&self, currency: Currency) -> Result<u64, BooksError> {
        let (debits, credits) = self.pool_posted(&credit_funding_ids(currency)).await?;
        Ok(u64::try_from(debits.saturating_sub(credits)).unwrap_or(u64::MAX))
    }

    /// What the center owes a store (posted), over every shard.
    pub async fn store_payable(&self, store: &StoreId, currency: Currency) -> Result<u64, BooksError> {
        let (debits, credits) = self.pool_posted(&store_payable_ids(store, currency)).await?;
        Ok(u64::try_from(credits.saturating_sub(debits)).unwrap_or(u64::MAX))
    }

    /// What is open on a store's payable: posted credits less posted and
    /// pending debits (refunds held for cards are the cards'), over every
    /// shard. Equal to the sum of its open items (`crate::clearing`).
    pub async fn store_open(&self, store: &StoreId, currency: Currency) -> Result<i128, BooksError> {
        let found = self.ledger().lookup_accounts(&store_payable_ids(store, currency)).await?;
        Ok(found.iter().fold(0i128, |open, a| {
            open + i128::from(a.credits_posted_minor)
                - i128::from(a.debits_posted_minor)
                - i128::from(a.debits_pending_minor)
        }))
    }

    /// Payouts in transit (posted credits less debits), over every shard.
    pub async fn in_transit(&self, currency: Currency) -> Result<i128, BooksError> {
        let (debits, credits) = self.pool_posted(&in_transit_ids(currency)).await?;
        Ok(i128::try_from(credits).unwrap_or(i128::MAX) - i128::try_from(debits).unwrap_or(i128::MAX))
    }

    /// Fees earned (posted credits less debits), over every shard.
    pub async fn fees(&self, currency: Currency) -> Result<u64, BooksError> {
        let (debits, credits) = self.pool_posted(&fee_ids(currency)).await?;
        Ok(u64::try_from(credits.saturating_sub(debits)).unwrap_or(u64::MAX))
    }

    /// A prepaid card's value (posted credits less debits), if it has an
    /// account.
    pub async fn prepaid_balance(&self, card: &PrepaidId) -> Result<Option<u64>, BooksError> {
        let found = self.ledger().lookup_accounts(&[prepaid_account_id(card)]).await?;
        Ok(found.first().map(|a| a.credits_posted_minor.saturating_sub(a.debits_posted_minor)))
    }

    /// What a pool of received money holds (posted debits less credits),
    /// over every shard.
    pub async fn received(&self, source: Receiving, currency: Currency) -> Result<i128, BooksError> {
        let (debits, credits) = self.pool_posted(&pool_ids(source.label(), currency.code())).await?;
        Ok(i128::try_from(debits).unwrap_or(i128::MAX) - i128::try_from(credits).unwrap_or(i128::MAX))
    }

    /// What the suspense account holds (posted credits less debits).
    pub async fn suspense(&self, currency: Currency) -> Result<u64, BooksError> {
        let (debits, credits) = self.pool_posted(&suspense_ids(currency)).await?;
        Ok(u64::try_from(credits.saturating_sub(debits)).unwrap_or(u64::MAX))
    }

    /// Bank deposit tokens outstanding (posted credits less debits), over
    /// every shard.
    pub async fn tokens_outstanding(&self, currency: Currency) -> Result<i128, BooksError> {
        let (debits, credits) = self.pool_posted(&tokens_outstanding_ids(currency)).await?;
        Ok(i128::try_from(credits).unwrap_or(i128::MAX) - i128::try_from(debits).unwrap_or(i128::MAX))
    }

    /// A pool's posted debits and credits, summed over its shards.
    async fn pool_posted(&self, ids: &[u128]) -> Result<(u128, u128), BooksError> {
        let found = self.ledger().lookup_accounts(ids).await?;
        Ok(found.iter().fold((0, 0), |(debits, credits), a| {
            (debits + u128::from(a.debits_posted_minor), credits + u128::from(a.credits_posted_minor))
        }))
    }
}
