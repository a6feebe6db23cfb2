//! Result codes of account and transfer creation. The numbers are part of the API:
//! they are stored by clients, logged and sent over the wire, so a code, once
//! published, keeps its number forever; new codes take new numbers. Names follow
//! TigerBeetle where TigerBeetle has the same failure (with "ledger" read as
//! "currency").

macro_rules! result_codes {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $code:literal => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u32)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vmeta])* $variant = $code,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The stable number of this result.
            pub fn code(self) -> u32 {
                self as u32
            }

            pub fn from_code(code: u32) -> Option<$name> {
                match code {
                    $($code => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// The snake_case name, as TigerBeetle spells it.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

result_codes! {
    /// The result of creating one account.
    CreateAccountResult {
        Ok = 0 => "ok",
        /// Another event of the same linked chain failed, so this one was not applied.
        LinkedEventFailed = 1 => "linked_event_failed",
        /// The last event of the batch has the `LINKED` flag: the chain never closes.
        LinkedEventChainOpen = 2 => "linked_event_chain_open",
        IdMustNotBeZero = 3 => "id_must_not_be_zero",
        IdMustNotBeIntMax = 4 => "id_must_not_be_int_max",
        /// Both balance-limit flags set: the account could never move.
        FlagsAreMutuallyExclusive = 5 => "flags_are_mutually_exclusive",
        ExistsWithDifferentFlags = 6 => "exists_with_different_flags",
        ExistsWithDifferentUserData128 = 7 => "exists_with_different_user_data_128",
        ExistsWithDifferentCurrency = 8 => "exists_with_different_currency",
        ExistsWithDifferentKind = 9 => "exists_with_different_kind",
        /// The account exists with exactly these fields: a retry, nothing changed.
        Exists = 10 => "exists",
    }
}

result_codes! {
    /// The result of creating one transfer.
    CreateTransferResult {
        Ok = 0 => "ok",
        /// Another event of the same linked chain failed, so this one was not applied.
        LinkedEventFailed = 1 => "linked_event_failed",
        /// The last event of the batch has the `LINKED` flag: the chain never closes.
        LinkedEventChainOpen = 2 => "linked_event_chain_open",
        IdMustNotBeZero = 3 => "id_must_not_be_zero",
        IdMustNotBeIntMax = 4 => "id_must_not_be_int_max",
        /// More than one of `PENDING`, `POST_PENDING`, `VOID_PENDING`.
        FlagsAreMutuallyExclusive = 5 => "flags_are_mutually_exclusive",
        DebitAccountIdMustNotBeZero = 6 => "debit_account_id_must_not_be_zero",
        CreditAccountIdMustNotBeZero = 7 => "credit_account_id_must_not_be_zero",
        AccountsMustBeDifferent = 8 => "accounts_must_be_different",
        /// `pending_id` set on a transfer that neither posts nor voids.
        PendingIdMustBeZero = 9 => "pending_id_must_be_zero",
        PendingIdMustNotBeZero = 10 => "pending_id_must_not_be_zero",
        PendingIdMustBeDifferent = 11 => "pending_id_must_be_different",
        /// A timeout on a transfer that is not `PENDING`.
        TimeoutReservedForPendingTransfer = 12 => "timeout_reserved_for_pending_transfer",
        AmountMustNotBeZero = 13 => "amount_must_not_be_zero",
        DebitAccountNotFound = 14 => "debit_account_not_found",
        CreditAccountNotFound = 15 => "credit_account_not_found",
        AccountsMustHaveTheSameCurrency = 16 => "accounts_must_have_the_same_currency",
        TransferMustHaveTheSameCurrencyAsAccounts = 17 => "transfer_must_have_the_same_currency_as_accounts",
        PendingTransferNotFound = 18 => "pending_transfer_not_found",
        PendingTransferNotPending = 19 => "pending_transfer_not_pending",
        PendingTransferHasDifferentDebitAccountId = 20 => "pending_transfer_has_different_debit_account_id",
        PendingTransferHasDifferentCreditAccountId = 21 => "pending_transfer_has_different_credit_account_id",
        PendingTransferHasDifferentCurrency = 22 => "pending_transfer_has_different_currency",
        /// A post for more than is pending.
        ExceedsPendingTransferAmount = 23 => "exceeds_pending_transfer_amount",
        /// A void for other than the whole pending amount.
        PendingTransferHasDifferentAmount = 24 => "pending_transfer_has_different_amount",
        PendingTransferAlreadyPosted = 25 => "pending_transfer_already_posted",
        PendingTransferAlreadyVoided = 26 => "pending_transfer_already_voided",
        /// The pending transfer's timeout has passed (whether or not expiry has run).
        PendingTransferExpired = 27 => "pending_transfer_expired",
        ExistsWithDifferentFlags = 28 => "exists_with_different_flags",
        ExistsWithDifferentDebitAccountId = 29 => "exists_with_different_debit_account_id",
        ExistsWithDifferentCreditAccountId = 30 => "exists_with_different_credit_account_id",
        ExistsWithDifferentAmount = 31 => "exists_with_different_amount",
        ExistsWithDifferentPendingId = 32 => "exists_with_different_pending_id",
        ExistsWithDifferentUserData128 = 33 => "exists_with_different_user_data_128",
        ExistsWithDifferentCode = 34 => "exists_with_different_code",
        ExistsWithDifferentTimeout = 35 => "exists_with_different_timeout",
        ExistsWithDifferentCurrency = 36 => "exists_with_different_currency",
        /// The transfer exists with exactly these fields: a retry, nothing changed.
        Exists = 37 => "exists",
        OverflowsDebitsPending = 38 => "overflows_debits_pending",
        OverflowsCreditsPending = 39 => "overflows_credits_pending",
        OverflowsDebitsPosted = 40 => "overflows_debits_posted",
        OverflowsCreditsPosted = 41 => "overflows_credits_posted",
        /// debits_pending + debits_posted + amount past the maximum balance.
        OverflowsDebits = 42 => "overflows_debits",
        OverflowsCredits = 43 => "overflows_credits",
        /// now + timeout past the largest timestamp.
        OverflowsTimeout = 44 => "overflows_timeout",
        /// The debit account has `DEBITS_MUST_NOT_EXCEED_CREDITS` and would.
        ExceedsCredits = 45 => "exceeds_credits",
        /// The credit account has `CREDITS_MUST_NOT_EXCEED_DEBITS` and would.
        ExceedsDebits = 46 => "exceeds_debits",
    }
}

/// A non-ok result of one account in a batch; events not listed succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateAccountsResult {
    /// Position of the event in the batch.
    pub index: u32,
    pub result: CreateAccountResult,
}

/// A non-ok result of one transfer in a batch; events not listed succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreateTransfersResult {
    /// Position of the event in the batch.
    pub index: u32,
    pub result: CreateTransferResult,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_dense_unique_and_round_trip() {
        for (position, result) in CreateTransferResult::ALL.iter().enumerate() {
            assert_eq!(result.code() as usize, position);
            assert_eq!(CreateTransferResult::from_code(result.code()), Some(*result));
        }
        for (position, result) in CreateAccountResult::ALL.iter().enumerate() {
            assert_eq!(result.code() as usize, position);
            assert_eq!(CreateAccountResult::from_code(result.code()), Some(*result));
        }
    }

    #[test]
    fn published_numbers_never_change() {
        assert_eq!(CreateTransferResult::Exists.code(), 37);
        assert_eq!(CreateTransferResult::ExceedsCredits.code(), 45);
        assert_eq!(CreateTransferResult::PendingTransferExpired.code(), 27);
        assert_eq!(CreateAccountResult::Exists.code(), 10);
        assert_eq!(CreateTransferResult::ExceedsDebits.name(), "exceeds_debits");
    }
}
