//! The center's books: every yen a settlement moves goes through the
//! ledger (DESIGN §6).
//!
//! | account | kind | flags |
//! |---|---|---|
//! | card float, one per card | `CardFloat` | debits must not exceed credits (a card cannot spend what the books do not show) |
//! | store payable, one per paid store | `StorePayable` | — |
//! | value issuance, one per currency | `CreditFunding` | — |
//! | credit funding, one per currency (what the credit authorizer owes for captured charges) | `CreditFunding` | — |
//! | corrections, one per currency (value an operator took off cards) | `CenterFees` | — |
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
//! Account and follow-up transfer ids are derived with SHA-256 from a label
//! and the business key, so every instance computes the same ids and a
//! retried call meets `exists` instead of moving money twice.

use kessai_core::ids::{CardId, StoreId, TransactionId};
use kessai_core::{Currency, Money};
use kessai_ledger::{
    AccountFlags, AccountKind, CreateAccountResult, CreateTransferResult, Ledger, NewAccount, NewTransfer,
    TransferFlags,
};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Transfer codes (the ledger's `code` field): what a transfer is for.
pub const CODE_PURCHASE: u16 = 1;
pub const CODE_ISSUE: u16 = 2;
pub const CODE_CHARGE: u16 = 3;
pub const CODE_DECREASE: u16 = 4;
pub const CODE_REFUND: u16 = 5;
pub const CODE_CORRECTION: u16 = 6;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BooksError {
    #[error("ledger: {0}")]
    Ledger(#[from] kessai_ledger::Error),
    #[error("the ledger refused {what}: {code}")]
    Refused { what: &'static str, code: &'static str },
    #[error("currency {0} is not kept in the ledger")]
    Currency(String),
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

pub fn store_payable_id(store: &StoreId, currency: Currency) -> u128 {
    derived_id("store-payable", format!("{store}/{currency}").as_bytes())
}

pub fn issuance_id(currency: Currency) -> u128 {
    derived_id("issuance", currency.code().as_bytes())
}

/// Where charges paid by credit card are funded from, per currency.
pub fn credit_funding_id(currency: Currency) -> u128 {
    derived_id("credit-funding", currency.code().as_bytes())
}

/// Where value an operator takes off cards goes, per currency.
pub fn corrections_id(currency: Currency) -> u128 {
    derived_id("corrections", currency.code().as_bytes())
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

/// A card's float and its currency's issuance account.
fn card_accounts(card: &CardId, currency: Currency) -> Result<[NewAccount; 2], BooksError> {
    let c = ledger_currency(currency)?;
    Ok([
        NewAccount {
            id: card_float_id(card),
            currency: c,
            kind: AccountKind::CardFloat,
            flags: AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
            user_data_128: u128::from(u64::from_be_bytes(*card.as_bytes())),
        },
        NewAccount {
            id: issuance_id(currency),
            currency: c,
            kind: AccountKind::CreditFunding,
            flags: AccountFlags::default(),
            user_data_128: 0,
        },
    ])
}

/// Most account ids remembered as existing; past that the set starts over.
const MAX_KNOWN_ACCOUNTS: usize = 100_000;

#[derive(Debug, Clone)]
pub struct Books {
    ledger: Ledger,
    /// Accounts this process saw created or existing. Ledger accounts are
    /// never deleted, so this stays true on every instance; it only spares
    /// a ledger round trip (and a commit wait) per purchase.
    known: Arc<Mutex<HashSet<u128>>>,
}

impl Books {
    pub fn new(ledger: Ledger) -> Books {
        Books { ledger, known: Arc::default() }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    async fn ensure_accounts(&self, accounts: &[NewAccount], now_unix_s: u64) -> Result<(), BooksError> {
        let lock = || self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if accounts.iter().all(|a| lock().contains(&a.id)) {
            return Ok(());
        }
        for r in self.ledger.create_accounts(accounts, now_unix_s).await? {
            if !matches!(r.result, CreateAccountResult::Ok | CreateAccountResult::Exists) {
                return Err(BooksError::Refused { what: "an account", code: r.result.name() });
            }
        }
        let mut known = lock();
        if known.len() + accounts.len() > MAX_KNOWN_ACCOUNTS {
            known.clear();
        }
        known.extend(accounts.iter().map(|a| a.id));
        Ok(())
    }

    /// Opens the accounts a card needs (idempotent).
    pub async fn open_card(&self, card: &CardId, currency: Currency, now_unix_s: u64) -> Result<(), BooksError> {
        self.ensure_accounts(&card_accounts(card, currency)?, now_unix_s).await
    }

    async fn transfer(&self, t: NewTransfer, what: &'static str, now_unix_s: u64) -> Result<(), BooksError> {
        for r in self.ledger.create_transfers(&[t], now_unix_s).await? {
            if !matches!(r.result, CreateTransferResult::Ok | CreateTransferResult::Exists) {
                return Err(BooksError::Refused { what, code: r.result.name() });
            }
        }
        Ok(())
    }

    /// Records value put on a card outside a purchase (issuance). `id`
    /// makes the call idempotent.
    pub async fn issue(&self, id: u128, card: &CardId, amount: Money, now_unix_s: u64) -> Result<(), BooksError> {
        let t = NewTransfer {
            id,
            debit_account_id: issuance_id(amount.currency()),
            credit_account_id: card_float_id(card),
            amount_minor: amount.amount_minor(),
            currency: ledger_currency(amount.currency())?,
            pending_id: 0,
            timeout_s: 0,
            user_data_128: 0,
            code: CODE_ISSUE,
            flags: TransferFlags::default(),
        };
        self.transfer(t, "an issuance", now_unix_s).await
    }

    /// The pending purchase transfer, made when the sealed DEBIT is issued.
    /// Opens the card's accounts and the store's payable first, if missing
    /// (one ledger batch for all three).
    pub async fn hold(
        &self,
        tx: &TransactionId,
        card: &CardId,
        payee: &StoreId,
        amount: Money,
        now_unix_s: u64,
    ) -> Result<(), BooksError> {
        let c = ledger_currency(amount.currency())?;
        let payable = store_payable_id(payee, amount.currency());
        let [float, issuance] = card_accounts(card, amount.currency())?;
        let account = NewAccount {
            id: payable,
            currency: c,
            kind: AccountKind::StorePayable,
            flags: AccountFlags::default(),
            user_data_128: 0,
        };
        self.ensure_accounts(&[float, issuance, account], now_unix_s).await?;
        let t = NewTransfer {
            id: tx.as_u128(),
            debit_account_id: card_float_id(card),
            credit_account_id: payable,
            amount_minor: amount.amount_minor(),
            currency: c,
            pending_id: 0,
            timeout_s: 0,
            user_data_128: 0,
            code: CODE_PURCHASE,
            flags: TransferFlags::PENDING,
        };
        self.transfer(t, "the purchase hold", now_unix_s).await
    }

    async fn resolve(&self, tx: &TransactionId, amount: Money, post: bool, now_unix_s: u64) -> Result<(), BooksError> {
        self.resolve_coded(tx, amount, post, CODE_PURCHASE, now_unix_s).await
    }

    async fn resolve_coded(
        &self,
        tx: &TransactionId,
        amount: Money,
        post: bool,
        code: u16,
        now_unix_s: u64,
    ) -> Result<(), BooksError> {
        // Accounts 0: the pending transfer's own; amount 0 (a void): all of it.
        // A missing hold is refused by the ledger (`pending_transfer_not_found`).
        let t = NewTransfer {
            id: if post { post_id(tx) } else { void_id(tx) },
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
        self.transfer(t, if post { "posting" } else { "voiding" }, now_unix_s).await
    }

    /// Posts the hold: the card confirmed the debit.
    pub async fn post(&self, tx: &TransactionId, amount: Money, now_unix_s: u64) -> Result<(), BooksError> {
        self.resolve(tx, amount, true, now_unix_s).await
    }

    /// Voids the hold: the card proved it never applied the debit.
    pub async fn void(&self, tx: &TransactionId, amount: Money, now_unix_s: u64) -> Result<(), BooksError> {
        self.resolve(tx, amount, false, now_unix_s).await
    }

    /// A card's float: what the books say the card holds (posted), and
    /// what is held for pending purchases.
    pub async fn card_float(&self, card: &CardId) -> Result<Option<(u64, u64)>, BooksError> {
        let found = self.ledger.lookup_accounts(&[card_float_id(card)]).await?;
        Ok(found
            .first()
            .map(|a| (a.credits_posted_minor.saturating_sub(a.debits_posted_minor), a.debits_pending_minor)))
    }

    /// A pending transfer between two accounts, opening `open` first.
    async fn hold_between(
        &self,
        id: &TransactionId,
        (debit, credit): (u128, u128),
        open: NewAccount,
        amount: Money,
        code: u16,
        now_unix_s: u64,
    ) -> Result<(), BooksError> {
        self.ensure_accounts(&[open], now_unix_s).await?;
        let t = NewTransfer {
            id: id.as_u128(),
            debit_account_id: debit,
            credit_account_id: credit,
            amount_minor: amount.amount_minor(),
            currency: ledger_currency(amount.currency())?,
            pending_id: 0,
            timeout_s: 0,
            user_data_128: 0,
            code,
            flags: TransferFlags::PENDING,
        };
        self.transfer(t, "a hold", now_unix_s).await
    }

    fn funding_account(currency: Currency) -> Result<NewAccount, BooksError> {
        Ok(NewAccount {
            id: credit_funding_id(currency),
            currency: ledger_currency(currency)?,
            kind: AccountKind::CreditFunding,
            flags: AccountFlags::default(),
            user_data_128: 0,
        })
    }

    /// The pending charge transfer, made when the sealed CREDIT is issued:
    /// credit funding → card float.
    pub async fn charge_hold(
        &self,
        tx: &TransactionId,
        card: &CardId,
        amount: Money,
        now_unix_s: u64,
    ) -> Result<(), BooksError> {
        let c = amount.currency();
        let accounts = (credit_funding_id(c), card_float_id(card));
        self.hold_between(tx, accounts, Self::funding_account(c)?, amount, CODE_CHARGE, now_unix_s).await
    }

    /// The pending decrease, made when the sealed DEBIT is issued: card
    /// float → credit funding (value going back to the credit card).
    pub async fn decrease_hold(
        &self,
        tx: &TransactionId,
        card: &CardId,
        amount: Money,
        now_unix_s: u64,
    ) -> Result<(), BooksError> {
        let c = amount.currency();
        let accounts = (card_float_id(card), credit_funding_id(c));
        self.hold_between(tx, accounts, Self::funding_account(c)?, amount, CODE_DECREASE, now_unix_s).await
    }

    /// Posts or voids a decrease.
    pub async fn decrease_resolve(
        &self,
        tx: &TransactionId,
        amount: Money,
        post: bool,
        now_unix_s: u64,
    ) -> Result<(), BooksError> {
        self.resolve_coded(tx, amount, post, CODE_DECREASE, now_unix_s).await
    }

    /// A purchase refund, held when the store asks: store payable → card
    /// float.
    pub async fn refund_hold(
        &self,
        owed_id: &str,
        store: &StoreId,
        card: &CardId,
        amount: Money,
        now_unix_s: u64,
    ) -> Result<(), BooksError> {
        self.open_card(card, amount.currency(), now_unix_s).await?;
        let c = amount.currency();
        let payable = NewAccount {
            id: store_payable_id(store, c),
            currency: ledger_currency(c)?,
            kind: AccountKind::StorePayable,
            flags: AccountFlags::default(),
            user_data_128: 0,
        };
        let accounts = (store_payable_id(store, c), card_float_id(card));
        self.hold_between(&owed_hold_id(owed_id), accounts, payable, amount, CODE_REFUND, now_unix_s).await
    }

    /// A correction, held when the operator makes it: card float →
    /// corrections. Refused (`exceeds_credits`) beyond the card's float.
    pub async fn correction_hold(
        &self,
        owed_id: &str,
        card: &CardId,
        amount: Money,
        now_unix_s: u64,
    ) -> Result<(), BooksError> {
        let c = amount.currency();
        let corrections = NewAccount {
            id: corrections_id(c),
            currency: ledger_currency(c)?,
            kind: AccountKind::CenterFees,
            flags: AccountFlags::default(),
            user_data_128: 0,
        };
        let accounts = (card_float_id(card), corrections_id(c));
        self.hold_between(&owed_hold_id(owed_id), accounts, corrections, amount, CODE_CORRECTION, now_unix_s).await
    }

    /// Posts (the card confirmed) or voids (the operator cancelled) an
    /// owed item's hold.
    pub async fn owed_resolve(
        &self,
        owed_id: &str,
        amount: Money,
        code: u16,
        post: bool,
        now_unix_s: u64,
    ) -> Result<(), BooksError> {
        self.resolve_coded(&owed_hold_id(owed_id), amount, post, code, now_unix_s).await
    }

    /// Posts the charge: the card confirmed the credit.
    pub async fn charge_post(&self, tx: &TransactionId, amount: Money, now_unix_s: u64) -> Result<(), BooksError> {
        self.resolve_coded(tx, amount, true, CODE_CHARGE, now_unix_s).await
    }

    /// Voids the charge: the card proved it never applied the credit.
    pub async fn charge_void(&self, tx: &TransactionId, amount: Money, now_unix_s: u64) -> Result<(), BooksError> {
        self.resolve_coded(tx, amount, false, CODE_CHARGE, now_unix_s).await
    }

    /// Credits pending on a card's float (charges whose CREDIT is out).
    pub async fn card_credits_pending(&self, card: &CardId) -> Result<u64, BooksError> {
        let found = self.ledger.lookup_accounts(&[card_float_id(card)]).await?;
        Ok(found.first().map_or(0, |a| a.credits_pending_minor))
    }

    /// What the credit authorizer owes for captured charges (posted).
    pub async fn credit_funding(&self, currency: Currency) -> Result<u64, BooksError> {
        let found = self.ledger.lookup_accounts(&[credit_funding_id(currency)]).await?;
        Ok(found.first().map_or(0, |a| a.debits_posted_minor.saturating_sub(a.credits_posted_minor)))
    }

    /// What the center owes a store (posted).
    pub async fn store_payable(&self, store: &StoreId, currency: Currency) -> Result<u64, BooksError> {
        let found = self.ledger.lookup_accounts(&[store_payable_id(store, currency)]).await?;
        Ok(found.first().map_or(0, |a| a.credits_posted_minor.saturating_sub(a.debits_posted_minor)))
    }
}
