//! Encoding of ledger values into columns and decoding them back, shared by both
//! backends. Ids and 128-bit user data are 16-byte big-endian blobs, so byte order is
//! numeric order in both databases' indexes.

use crate::engine::{LoadedTransfer, PendingRow};
use crate::error::Error;
use crate::limits::BALANCE_MAX_MINOR;
use crate::types::{Account, AccountFlags, AccountKind, Currency, PendingState, Transfer, TransferFlags};

/// The columns of `accounts a`, in the order `account` decodes them.
macro_rules! account_columns {
    () => {
        "a.id, a.currency, a.kind, a.flags, a.user_data_128, a.debits_pending_minor, a.debits_posted_minor, \
         a.credits_pending_minor, a.credits_posted_minor, a.created_at_unix_s"
    };
}
pub(crate) use account_columns;

/// The same columns, unqualified, for inserts.
macro_rules! insert_account_columns {
    () => {
        "id, currency, kind, flags, user_data_128, debits_pending_minor, debits_posted_minor, \
         credits_pending_minor, credits_posted_minor, created_at_unix_s"
    };
}
pub(crate) use insert_account_columns;

/// The columns of `transfers t LEFT JOIN pending_transfers p`, in the order
/// `loaded_transfer` decodes them.
macro_rules! transfer_columns {
    () => {
        "t.id, t.debit_account_id, t.credit_account_id, t.amount_minor, t.currency, t.pending_id, \
         t.timeout_s, t.user_data_128, t.code, t.flags, t.created_at_unix_s, p.state, p.expires_at_unix_s, t.seq"
    };
}
pub(crate) use transfer_columns;

/// Read access to one result row, by column position, for either backend.
pub(crate) trait Columns {
    fn bytes(&self, index: usize) -> Result<Vec<u8>, Error>;
    fn int(&self, index: usize) -> Result<i64, Error>;
    fn int_or_null(&self, index: usize) -> Result<Option<i64>, Error>;
    fn text(&self, index: usize) -> Result<String, Error>;
}

pub(crate) fn id_bytes(id: u128) -> [u8; 16] {
    id.to_be_bytes()
}

pub(crate) fn id_from_bytes(bytes: &[u8]) -> Result<u128, Error> {
    let array: [u8; 16] = bytes.try_into().map_err(|_| Error::Corrupt { what: "a 128-bit id is not 16 bytes" })?;
    Ok(u128::from_be_bytes(array))
}

/// A balance, amount or timestamp as stored. Values come from the engine and the API
/// checks, which keep them within `BALANCE_MAX_MINOR` and `TIMESTAMP_MAX_UNIX_S`, both
/// `i64::MAX` (checked at compile time below).
pub(crate) fn stored_int(value: u64) -> i64 {
    match i64::try_from(value) {
        Ok(stored) => stored,
        Err(_) => unreachable!("value {value} past the stored integer range"),
    }
}

const _: () = {
    assert!(BALANCE_MAX_MINOR <= i64::MAX as u64);
    assert!(crate::limits::TIMESTAMP_MAX_UNIX_S <= i64::MAX as u64);
};

fn unsigned(value: i64, what: &'static str) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| Error::Corrupt { what })
}

fn small(value: i64, what: &'static str) -> Result<u16, Error> {
    u16::try_from(value).map_err(|_| Error::Corrupt { what })
}

pub(crate) fn account(row: &impl Columns) -> Result<Account, Error> {
    let corrupt = |what| Error::Corrupt { what };
    let kind = AccountKind::from_code(small(row.int(2)?, "account kind")?).ok_or(corrupt("unknown account kind"))?;
    let flags = AccountFlags::from_bits(small(row.int(3)?, "account flags")?).ok_or(corrupt("unknown account flag"))?;
    Ok(Account {
        id: id_from_bytes(&row.bytes(0)?)?,
        currency: Currency::parse(&row.text(1)?).map_err(|_| corrupt("account currency"))?,
        kind,
        flags,
        user_data_128: id_from_bytes(&row.bytes(4)?)?,
        debits_pending_minor: unsigned(row.int(5)?, "negative balance")?,
        debits_posted_minor: unsigned(row.int(6)?, "negative balance")?,
        credits_pending_minor: unsigned(row.int(7)?, "negative balance")?,
        credits_posted_minor: unsigned(row.int(8)?, "negative balance")?,
        created_at_unix_s: unsigned(row.int(9)?, "negative timestamp")?,
    })
}

/// A transfer, its pending row (if pending) and its history sequence number.
pub(crate) fn loaded_transfer(row: &impl Columns) -> Result<(LoadedTransfer, u64), Error> {
    let corrupt = |what| Error::Corrupt { what };
    let flags =
        TransferFlags::from_bits(small(row.int(9)?, "transfer flags")?).ok_or(corrupt("unknown transfer flag"))?;
    let transfer = Transfer {
        id: id_from_bytes(&row.bytes(0)?)?,
        debit_account_id: id_from_bytes(&row.bytes(1)?)?,
        credit_account_id: id_from_bytes(&row.bytes(2)?)?,
        amount_minor: unsigned(row.int(3)?, "negative amount")?,
        currency: Currency::parse(&row.text(4)?).map_err(|_| corrupt("transfer currency"))?,
        pending_id: id_from_bytes(&row.bytes(5)?)?,
        timeout_s: u32::try_from(row.int(6)?).map_err(|_| corrupt("transfer timeout"))?,
        user_data_128: id_from_bytes(&row.bytes(7)?)?,
        code: small(row.int(8)?, "transfer code")?,
        flags,
        created_at_unix_s: unsigned(row.int(10)?, "negative timestamp")?,
    };
    let pending = match row.int_or_null(11)? {
        None => None,
        Some(state) => Some(PendingRow {
            state: PendingState::from_code(small(state, "pending state")?).ok_or(corrupt("unknown pending state"))?,
            expires_at_unix_s: row.int_or_null(12)?.map(|at| unsigned(at, "negative expiry")).transpose()?,
        }),
    };
    if pending.is_some() != flags.contains(TransferFlags::PENDING) {
        return Err(corrupt("pending transfer and pending row do not match"));
    }
    Ok((LoadedTransfer { transfer, pending }, unsigned(row.int(13)?, "negative sequence")?))
}
