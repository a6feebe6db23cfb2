//! Bank deposit tokens on the card (seed 002, #21): the token table and
//! its three secure commands, STORE TOKEN, LIST TOKENS and REDEEM TOKEN
//! (level `33` only, like DEBIT and CREDIT).
//!
//! A token is sealed by the credit service provider (`kessai_core::token`);
//! the card cannot open it and does not need to: it reads the clear header
//! (id, key version, currency, amount, expiry), keeps the sealed bytes, and
//! gives them up once, on REDEEM, for the provider to check. The card has
//! no clock: the time it compares expiries with is the center's, inside
//! the authenticated command. Each STORE and REDEEM is one durable commit
//! with its log record (kinds `03` and `04`, no change to the balance), so
//! a power cut leaves the token stored or not, redeemed or not, never half.

use crate::protocol::{CLA_PROPRIETARY, Currency, ProtocolError, TxId, command};
use kessai_scp03::CommandApdu;

/// Tokens the card holds at once (stored, or redeemed and still kept as
/// proof of their redemption).
pub const TOKEN_CAPACITY: usize = 8;
/// Largest sealed token (`kessai_core::token::MAX_SEALED_TOKEN_LEN`).
pub const MAX_SEALED_LEN: usize = 200;
/// Bytes of a sealed token's clear header.
pub const TOKEN_HEADER_LEN: usize = 40;
/// Smallest sealed token: the header, a 24-byte nonce and a 16-byte tag.
pub const MIN_SEALED_LEN: usize = TOKEN_HEADER_LEN + 24 + 16;
/// Token entries per LIST TOKENS response.
pub const LIST_TOKENS_MAX: usize = 4;

/// STORE TOKEN: `84 60 00 00 Lc tx id 16 ‖ time 8 ‖ sealed token`.
pub const INS_STORE_TOKEN: u8 = 0x60;
/// LIST TOKENS: `84 62 <first> <count> 00`.
pub const INS_LIST_TOKENS: u8 = 0x62;
/// REDEEM TOKEN: `84 64 00 00 Lc token id 16 ‖ tx id 16 ‖ time 8`.
pub const INS_REDEEM_TOKEN: u8 = 0x64;
/// Status word: the token expired (by the center's time in the command).
pub const SW_TOKEN_EXPIRED: u16 = 0x6A8C;
/// Status word: the token was redeemed before, by another transaction.
pub const SW_TOKEN_REDEEMED: u16 = 0x6A8D;

/// A sealed token's clear header, as the card reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenHeader {
    pub key_version: u8,
    pub token_id: [u8; 16],
    pub currency: Currency,
    pub amount_minor: u64,
    pub expires_unix_s: u64,
}

impl TokenHeader {
    /// Reads the header of a sealed token of an acceptable length.
    pub fn read(sealed: &[u8]) -> Result<TokenHeader, ProtocolError> {
        if !(MIN_SEALED_LEN..=MAX_SEALED_LEN).contains(&sealed.len()) {
            return Err(ProtocolError::Length { what: "sealed token", expected: MIN_SEALED_LEN, actual: sealed.len() });
        }
        if sealed[..4] != *b"KTK1" {
            return Err(ProtocolError::Token("token magic"));
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&sealed[5..21]);
        let mut currency = [0u8; 3];
        currency.copy_from_slice(&sealed[21..24]);
        let mut amount = [0u8; 8];
        amount.copy_from_slice(&sealed[24..32]);
        let mut expires = [0u8; 8];
        expires.copy_from_slice(&sealed[32..40]);
        let header = TokenHeader {
            key_version: sealed[4],
            token_id: id,
            currency: Currency::from_bytes(currency)?,
            amount_minor: u64::from_be_bytes(amount),
            expires_unix_s: u64::from_be_bytes(expires),
        };
        if header.amount_minor == 0 {
            return Err(ProtocolError::Token("token amount"));
        }
        Ok(header)
    }
}

/// Where a token is in its life on the card.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenState {
    /// Stored at this counter; not redeemed.
    Stored { counter: u32 },
    /// Redeemed by transaction `tx_id` at this counter.
    Redeemed { tx_id: TxId, counter: u32 },
}

/// One entry of the token table: the sealed token and its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenEntry {
    pub header: TokenHeader,
    pub sealed: Vec<u8>,
    pub state: TokenState,
}

/// `token id 16 ‖ key version 1 ‖ currency 3 ‖ amount 8 ‖ expiry 8 ‖ state
/// 1 (01 stored, 02 redeemed) ‖ counter 4`.
pub const TOKEN_ENTRY_LEN: usize = 16 + 1 + 3 + 8 + 8 + 1 + 4;

impl TokenEntry {
    /// The entry as LIST TOKENS answers it (not the sealed bytes).
    pub fn listed(&self) -> [u8; TOKEN_ENTRY_LEN] {
        let h = &self.header;
        let mut out = [0u8; TOKEN_ENTRY_LEN];
        out[..16].copy_from_slice(&h.token_id);
        out[16] = h.key_version;
        out[17..20].copy_from_slice(&h.currency.as_bytes());
        out[20..28].copy_from_slice(&h.amount_minor.to_be_bytes());
        out[28..36].copy_from_slice(&h.expires_unix_s.to_be_bytes());
        let (state, counter) = match self.state {
            TokenState::Stored { counter } => (1, counter),
            TokenState::Redeemed { counter, .. } => (2, counter),
        };
        out[36] = state;
        out[37..41].copy_from_slice(&counter.to_be_bytes());
        out
    }

    pub fn is_redeemed(&self) -> bool {
        matches!(self.state, TokenState::Redeemed { .. })
    }

    /// The counter of its newest record: its store, or its redemption.
    pub fn counter(&self) -> u32 {
        match self.state {
            TokenState::Stored { counter } | TokenState::Redeemed { counter, .. } => counter,
        }
    }
}

/// One token as LIST TOKENS reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListedToken {
    pub token_id: [u8; 16],
    pub key_version: u8,
    pub currency: Currency,
    pub amount_minor: u64,
    pub expires_unix_s: u64,
    pub redeemed: bool,
    pub counter: u32,
}

/// Parses a LIST TOKENS response: `total 1 ‖ count 1 ‖ entries`.
pub fn parse_list(data: &[u8]) -> Result<(usize, Vec<ListedToken>), ProtocolError> {
    let [total, count, entries @ ..] = data else {
        return Err(ProtocolError::Length { what: "token list", expected: 2, actual: data.len() });
    };
    if entries.len() != usize::from(*count) * TOKEN_ENTRY_LEN {
        return Err(ProtocolError::Length { what: "token list", expected: 2, actual: data.len() });
    }
    let listed = entries
        .chunks_exact(TOKEN_ENTRY_LEN)
        .map(|e| {
            let redeemed = match e[36] {
                1 => false,
                2 => true,
                _ => return Err(ProtocolError::Token("token state")),
            };
            let mut id = [0u8; 16];
            id.copy_from_slice(&e[..16]);
            let mut currency = [0u8; 3];
            currency.copy_from_slice(&e[17..20]);
            let u64_at = |at: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&e[at..at + 8]);
                u64::from_be_bytes(b)
            };
            let mut counter = [0u8; 4];
            counter.copy_from_slice(&e[37..41]);
            Ok(ListedToken {
                token_id: id,
                key_version: e[16],
                currency: Currency::from_bytes(currency)?,
                amount_minor: u64_at(20),
                expires_unix_s: u64_at(28),
                redeemed,
                counter: u32::from_be_bytes(counter),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((usize::from(*total), listed))
}

/// Plain STORE TOKEN (wrap it): `tx id 16 ‖ time 8 ‖ sealed`.
pub fn store_token_command(tx_id: TxId, time_unix_s: u64, sealed: &[u8]) -> CommandApdu {
    let mut data = Vec::with_capacity(24 + sealed.len());
    data.extend_from_slice(&tx_id.0);
    data.extend_from_slice(&time_unix_s.to_be_bytes());
    data.extend_from_slice(sealed);
    command(CLA_PROPRIETARY, INS_STORE_TOKEN, 0, 0, &data, Some(256))
}

/// Plain LIST TOKENS (wrap it): entries `first` .. `first + count`.
pub fn list_tokens_command(first: u8, count: u8) -> CommandApdu {
    command(CLA_PROPRIETARY, INS_LIST_TOKENS, first, count, &[], Some(256))
}

/// Plain REDEEM TOKEN (wrap it): `token id 16 ‖ tx id 16 ‖ time 8`.
pub fn redeem_token_command(token_id: [u8; 16], tx_id: TxId, time_unix_s: u64) -> CommandApdu {
    let mut data = Vec::with_capacity(40);
    data.extend_from_slice(&token_id);
    data.extend_from_slice(&tx_id.0);
    data.extend_from_slice(&time_unix_s.to_be_bytes());
    command(CLA_PROPRIETARY, INS_REDEEM_TOKEN, 0, 0, &data, Some(256))
}
