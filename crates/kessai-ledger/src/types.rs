//! The ledger's domain types. Each validates on construction, so a value that exists
//! is valid: a `Currency` is three uppercase ASCII letters, flags hold only known bits,
//! an `AccountKind` is one of the listed kinds.

use std::fmt;

use crate::limits::CURRENCY_CODE_LEN;

/// An ISO 4217 alphabetic currency code, e.g. `JPY`. Only the shape is checked (three
/// uppercase ASCII letters): the ledger needs currencies to be comparable, not listed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; CURRENCY_CODE_LEN]);

/// Why a string is not a currency code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CurrencyError {
    #[error("a currency code has exactly {CURRENCY_CODE_LEN} letters, this one has {length_bytes} bytes")]
    WrongLength { length_bytes: usize },
    #[error("a currency code is uppercase ASCII letters A-Z only")]
    NotUppercaseLetters,
}

impl Currency {
    pub const JPY: Currency = Currency::from_code(*b"JPY");
    pub const EUR: Currency = Currency::from_code(*b"EUR");
    pub const USD: Currency = Currency::from_code(*b"USD");

    /// For constants: a code that is not three uppercase letters fails the build.
    pub const fn from_code(code: [u8; CURRENCY_CODE_LEN]) -> Currency {
        let mut i = 0;
        while i < CURRENCY_CODE_LEN {
            assert!(code[i].is_ascii_uppercase(), "currency code must be uppercase A-Z");
            i += 1;
        }
        Currency(code)
    }

    pub fn parse(text: &str) -> Result<Currency, CurrencyError> {
        let bytes: [u8; CURRENCY_CODE_LEN] =
            text.as_bytes().try_into().map_err(|_| CurrencyError::WrongLength { length_bytes: text.len() })?;
        if !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(CurrencyError::NotUppercaseLetters);
        }
        Ok(Currency(bytes))
    }

    pub fn as_str(&self) -> &str {
        // Constructed only from uppercase ASCII letters (see `parse` and `from_code`),
        // which are valid UTF-8, so the fallback is unreachable.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.as_str())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an account is for. Stored as its code; the codes never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
#[non_exhaustive]
pub enum AccountKind {
    /// The center's shadow of one card's balance.
    CardFloat = 1,
    /// What the center owes one store.
    StorePayable = 2,
    /// Where credit extended to cards is funded from.
    CreditFunding = 3,
    /// Fees the center earns.
    CenterFees = 4,
    /// Money held at a bank or in a pool account.
    Pool = 5,
    /// Value the center holds for a member: a virtual prepaid card.
    Prepaid = 6,
    /// Money received that matched no request (or not its amount), held
    /// until an operator resolves it.
    Suspense = 7,
    /// Money on its way to stores' bank accounts: payouts a clearing run
    /// made that the bank has not yet confirmed or returned.
    PayoutsInTransit = 8,
    /// Money received for bank deposit tokens (seed 002) that are neither
    /// redeemed nor paid back yet.
    TokensOutstanding = 9,
}

impl AccountKind {
    pub const ALL: [AccountKind; 9] = [
        AccountKind::CardFloat,
        AccountKind::StorePayable,
        AccountKind::CreditFunding,
        AccountKind::CenterFees,
        AccountKind::Pool,
        AccountKind::Prepaid,
        AccountKind::Suspense,
        AccountKind::PayoutsInTransit,
        AccountKind::TokensOutstanding,
    ];

    pub fn code(self) -> u16 {
        self as u16
    }

    pub fn from_code(code: u16) -> Option<AccountKind> {
        AccountKind::ALL.into_iter().find(|kind| kind.code() == code)
    }
}

macro_rules! flag_set {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $flag:ident = $bit:expr,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name(u16);

        impl $name {
            pub const NONE: $name = $name(0);
            $($(#[$fmeta])* pub const $flag: $name = $name($bit);)+
            const KNOWN_BITS: u16 = 0 $(| $bit)+;

            pub fn bits(self) -> u16 {
                self.0
            }

            /// `None` if any unknown bit is set.
            pub fn from_bits(bits: u16) -> Option<$name> {
                (bits & !Self::KNOWN_BITS == 0).then_some($name(bits))
            }

            pub fn contains(self, other: $name) -> bool {
                self.0 & other.0 == other.0
            }

            pub fn without(self, other: $name) -> $name {
                $name(self.0 & !other.0)
            }
        }

        impl std::ops::BitOr for $name {
            type Output = $name;
            fn bitor(self, other: $name) -> $name {
                $name(self.0 | other.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut set = f.debug_set();
                $(if self.contains($name::$flag) { set.entry(&stringify!($flag)); })+
                set.finish()
            }
        }
    };
}

flag_set! {
    /// Account flags; the bit values are stored and never change.
    AccountFlags {
        /// This event and the next succeed or fail together.
        LINKED = 1 << 0,
        /// debits_pending + debits_posted may never exceed credits_posted.
        DEBITS_MUST_NOT_EXCEED_CREDITS = 1 << 1,
        /// credits_pending + credits_posted may never exceed debits_posted.
        CREDITS_MUST_NOT_EXCEED_DEBITS = 1 << 2,
    }
}

flag_set! {
    /// Transfer flags; the bit values are stored and never change.
    TransferFlags {
        /// This event and the next succeed or fail together.
        LINKED = 1 << 0,
        /// Reserve the amount: it becomes pending until posted, voided or expired.
        PENDING = 1 << 1,
        /// Post (part of) the pending transfer named by `pending_id`.
        POST_PENDING = 1 << 2,
        /// Void the pending transfer named by `pending_id`.
        VOID_PENDING = 1 << 3,
    }
}

/// An account to create. Balances always start at zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewAccount {
    /// Client-chosen; neither 0 nor `u128::MAX`.
    pub id: u128,
    pub currency: Currency,
    pub kind: AccountKind,
    pub flags: AccountFlags,
    /// Free for the client, e.g. a card or store id.
    pub user_data_128: u128,
}

/// An account as stored, with its balances in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    pub id: u128,
    pub currency: Currency,
    pub kind: AccountKind,
    pub flags: AccountFlags,
    pub user_data_128: u128,
    pub debits_pending_minor: u64,
    pub debits_posted_minor: u64,
    pub credits_pending_minor: u64,
    pub credits_posted_minor: u64,
    pub created_at_unix_s: u64,
}

impl Account {
    pub fn balances(&self) -> Balances {
        Balances {
            debits_pending_minor: self.debits_pending_minor,
            debits_posted_minor: self.debits_posted_minor,
            credits_pending_minor: self.credits_pending_minor,
            credits_posted_minor: self.credits_posted_minor,
        }
    }
}

/// The four balances of an account, in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balances {
    pub debits_pending_minor: u64,
    pub debits_posted_minor: u64,
    pub credits_pending_minor: u64,
    pub credits_posted_minor: u64,
}

/// A transfer to create.
///
/// For `POST_PENDING` and `VOID_PENDING`: `debit_account_id`, `credit_account_id` and
/// `user_data_128` may be 0, meaning "as in the pending transfer"; `amount_minor` 0
/// means the whole pending amount (a void may only release the whole amount).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewTransfer {
    /// Client-chosen; neither 0 nor `u128::MAX`.
    pub id: u128,
    pub debit_account_id: u128,
    pub credit_account_id: u128,
    pub amount_minor: u64,
    /// Must be the currency of both accounts.
    pub currency: Currency,
    /// The pending transfer to post or void; 0 otherwise.
    pub pending_id: u128,
    /// For `PENDING` only: seconds after creation at which the transfer expires; 0 is
    /// never.
    pub timeout_s: u32,
    /// Free for the client, e.g. a settlement id.
    pub user_data_128: u128,
    /// Free for the client: what kind of movement this is.
    pub code: u16,
    pub flags: TransferFlags,
}

/// A transfer as stored. Immutable once created. For a post or void, the accounts,
/// amount and user data are the effective ones (inherited from the pending transfer
/// where the request left them 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transfer {
    pub id: u128,
    pub debit_account_id: u128,
    pub credit_account_id: u128,
    pub amount_minor: u64,
    pub currency: Currency,
    pub pending_id: u128,
    pub timeout_s: u32,
    pub user_data_128: u128,
    pub code: u16,
    pub flags: TransferFlags,
    pub created_at_unix_s: u64,
}

/// Where a pending transfer is in its life. Stored as its code; codes never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum PendingState {
    Pending = 1,
    Posted = 2,
    Voided = 3,
    Expired = 4,
}

impl PendingState {
    pub fn code(self) -> u16 {
        self as u16
    }

    pub fn from_code(code: u16) -> Option<PendingState> {
        [PendingState::Pending, PendingState::Posted, PendingState::Voided, PendingState::Expired]
            .into_iter()
            .find(|state| state.code() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_accepts_only_three_uppercase_letters() {
        assert_eq!(Currency::parse("JPY"), Ok(Currency::JPY));
        assert_eq!(Currency::parse("jpy"), Err(CurrencyError::NotUppercaseLetters));
        assert_eq!(Currency::parse("YEN1"), Err(CurrencyError::WrongLength { length_bytes: 4 }));
        assert_eq!(Currency::parse("J1Y"), Err(CurrencyError::NotUppercaseLetters));
        assert_eq!(Currency::JPY.to_string(), "JPY");
    }

    #[test]
    fn flags_refuse_unknown_bits() {
        assert_eq!(
            TransferFlags::from_bits(0b1111),
            Some(
                TransferFlags::LINKED
                    | TransferFlags::PENDING
                    | TransferFlags::POST_PENDING
                    | TransferFlags::VOID_PENDING
            )
        );
        assert_eq!(TransferFlags::from_bits(1 << 4), None);
        assert_eq!(AccountFlags::from_bits(1 << 3), None);
    }

    #[test]
    fn codes_round_trip() {
        for kind in AccountKind::ALL {
            assert_eq!(AccountKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(AccountKind::from_code(0), None);
        assert_eq!(PendingState::from_code(4), Some(PendingState::Expired));
        assert_eq!(PendingState::from_code(5), None);
    }
}
