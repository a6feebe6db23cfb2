//! The card's persistent state and its byte layout (the body of an image
//! slot). Decoding checks every invariant, so a `CardState` that exists is
//! consistent: balance within bounds, log chained by counter and balance.

use std::collections::VecDeque;

use kessai_scp03::{Aes128Key, KeyVersion, SequenceCounter, StaticKeys};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::limits::{DIGEST_LEN, LOG_CAPACITY, RECENT_TX_CAPACITY, RECENT_TX_LEN, STATE_FIXED_LEN, STATE_FIXED_LEN_V1};
use crate::protocol::{
    CardId, CardStatus, Currency, Fields, LOG_RECORD_LEN, LogRecord, PublicInfo, TransferKind, TransferRequest, TxId,
    TxResult,
};
use crate::tokens::{MAX_SEALED_LEN, TOKEN_CAPACITY, TokenEntry, TokenHeader, TokenState};

/// Why a stored state body is refused.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The body is shorter or longer than its counts say.
    #[error("state body of {actual} bytes, expected {expected}")]
    Length {
        /// Bytes the counts require.
        expected: usize,
        /// Bytes present.
        actual: usize,
    },
    /// A field holds a value it may not hold.
    #[error("state field {0} is invalid")]
    Field(&'static str),
    /// The balance is above the maximum.
    #[error("balance above maximum")]
    BalanceAboveMaximum,
    /// The log does not chain (counters or balances do not follow).
    #[error("log record {0} does not follow its predecessor")]
    LogBroken(usize),
}

/// One remembered transaction: its result and a digest of its request, to
/// tell a retry from a different request reusing the id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecentTx {
    pub(crate) result: TxResult,
    pub(crate) digest: [u8; DIGEST_LEN],
}

/// Digest of a request: SHA-256(kind ‖ request) cut to 8 bytes.
pub(crate) fn request_digest(kind: TransferKind, request: &TransferRequest) -> [u8; DIGEST_LEN] {
    let hash = Sha256::new().chain_update([kind.to_byte()]).chain_update(request.to_bytes()).finalize();
    let mut out = [0u8; DIGEST_LEN];
    out.copy_from_slice(&hash[..DIGEST_LEN]);
    out
}

/// Everything the card keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardState {
    pub(crate) card_id: CardId,
    pub(crate) keys: StaticKeys,
    pub(crate) currency: Currency,
    pub(crate) max_balance_minor: u64,
    pub(crate) balance_minor: u64,
    pub(crate) counter: u32,
    pub(crate) sequence: SequenceCounter,
    pub(crate) status: CardStatus,
    /// The center collected every record up to this counter (LOG
    /// COLLECTED): a record above it is never dropped from the log.
    pub(crate) log_collected: u32,
    pub(crate) log: VecDeque<LogRecord>,
    pub(crate) recent: VecDeque<RecentTx>,
    /// Bank deposit tokens (image format 3), in the order stored.
    pub(crate) tokens: Vec<TokenEntry>,
}

impl CardState {
    /// A fresh card: balance 0, counters 0, empty log.
    pub(crate) fn new(card_id: CardId, keys: StaticKeys, currency: Currency, max_balance_minor: u64) -> Self {
        Self {
            card_id,
            keys,
            currency,
            max_balance_minor,
            balance_minor: 0,
            counter: 0,
            sequence: SequenceCounter::ZERO,
            status: CardStatus::Active,
            log_collected: 0,
            log: VecDeque::new(),
            recent: VecDeque::new(),
            tokens: Vec::new(),
        }
    }

    /// The token table, in the order stored.
    pub fn tokens(&self) -> &[TokenEntry] {
        &self.tokens
    }

    /// Public data (no keys).
    pub fn public_info(&self) -> PublicInfo {
        PublicInfo {
            card_id: self.card_id,
            key_version: self.keys.version.get(),
            currency: self.currency,
            balance_minor: self.balance_minor,
            max_balance_minor: self.max_balance_minor,
            status: self.status,
            counter: self.counter,
        }
    }

    /// The counter through which the center collected the log.
    pub fn log_collected(&self) -> u32 {
        self.log_collected
    }

    /// The log, oldest first.
    pub fn log(&self) -> impl Iterator<Item = &LogRecord> {
        self.log.iter()
    }

    /// The result of an applied transaction still in the recent table.
    pub(crate) fn recent(&self, tx_id: &TxId) -> Option<&RecentTx> {
        self.recent.iter().rev().find(|r| r.result.tx_id == *tx_id)
    }

    /// Checks the invariants a stored or about-to-be-stored state must hold.
    pub fn check(&self) -> Result<(), StateError> {
        if self.balance_minor > self.max_balance_minor {
            return Err(StateError::BalanceAboveMaximum);
        }
        if self.log.len() > LOG_CAPACITY || self.recent.len() > RECENT_TX_CAPACITY {
            return Err(StateError::Field("table length"));
        }
        if self.log_collected > self.counter {
            return Err(StateError::Field("log collected beyond the counter"));
        }
        if self.tokens.len() > TOKEN_CAPACITY {
            return Err(StateError::Field("token table length"));
        }
        for (i, t) in self.tokens.iter().enumerate() {
            if TokenHeader::read(&t.sealed).ok() != Some(t.header) || t.counter() > self.counter {
                return Err(StateError::Field("token entry"));
            }
            if self.tokens[..i].iter().any(|o| o.header.token_id == t.header.token_id) {
                return Err(StateError::Field("token id twice"));
            }
        }
        let mut prev: Option<&LogRecord> = None;
        for (i, record) in self.log.iter().enumerate() {
            if let Some(p) = prev {
                let balance = i128::from(p.balance_after_minor) + record.delta_minor();
                if record.counter <= p.counter || balance != i128::from(record.balance_after_minor) {
                    return Err(StateError::LogBroken(i));
                }
            }
            prev = Some(record);
        }
        if let Some(last) = prev
            && (last.counter != self.counter || last.balance_after_minor != self.balance_minor)
        {
            return Err(StateError::LogBroken(self.log.len()));
        }
        Ok(())
    }

    /// Encodes the body (holds keys: zeroized when dropped).
    ///
    /// ```text
    /// card id 8 ‖ KVN 1 ‖ ENC 16 ‖ MAC 16 ‖ DEK 16 ‖ currency 3 ‖ max 8 ‖
    /// balance 8 ‖ counter 4 ‖ SCP03 sequence counter 4 ‖ status 1 ‖
    /// log collected through 4 (format 2) ‖
    /// log count 2 ‖ recent count 2 ‖ log records (oldest first, 69 each) ‖
    /// recent entries (oldest first: result body 37 ‖ request digest 8)
    /// ```
    pub(crate) fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(
            STATE_FIXED_LEN + self.log.len() * LOG_RECORD_LEN + self.recent.len() * RECENT_TX_LEN,
        ));
        out.extend_from_slice(&self.card_id.0);
        out.push(self.keys.version.get());
        for key in [&self.keys.enc, &self.keys.mac, &self.keys.dek] {
            out.extend_from_slice(key.expose());
        }
        out.extend_from_slice(&self.currency.as_bytes());
        out.extend_from_slice(&self.max_balance_minor.to_be_bytes());
        out.extend_from_slice(&self.balance_minor.to_be_bytes());
        out.extend_from_slice(&self.counter.to_be_bytes());
        out.extend_from_slice(&self.sequence.get().to_be_bytes());
        out.push(self.status.to_byte());
        out.extend_from_slice(&self.log_collected.to_be_bytes());
        // Both lengths are bounded by the capacities (≤ 128), see `check`.
        out.extend_from_slice(&u16::try_from(self.log.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&u16::try_from(self.recent.len()).unwrap_or(0).to_be_bytes());
        for record in &self.log {
            out.extend_from_slice(&record.to_bytes());
        }
        for recent in &self.recent {
            out.extend_from_slice(&recent.result.body());
            out.extend_from_slice(&recent.digest);
        }
        // At most TOKEN_CAPACITY (8) entries, each sealed token at most
        // MAX_SEALED_LEN (200) bytes: both fit a byte (see `check`).
        out.push(u8::try_from(self.tokens.len()).unwrap_or(0));
        for t in &self.tokens {
            let (state, counter, tx) = match t.state {
                TokenState::Stored { counter } => (1u8, counter, [0u8; 16]),
                TokenState::Redeemed { tx_id, counter } => (2u8, counter, tx_id.0),
            };
            out.push(state);
            out.extend_from_slice(&counter.to_be_bytes());
            out.extend_from_slice(&tx);
            out.push(u8::try_from(t.sealed.len()).unwrap_or(0));
            out.extend_from_slice(&t.sealed);
        }
        out
    }

    /// Decodes and checks a body of image format `format` (1: without the
    /// log's collected mark, read as nothing collected; 2: without tokens,
    /// read as none; 3).
    pub(crate) fn from_bytes(body: &[u8], format: u16) -> Result<Self, StateError> {
        let fixed = if format == 1 { STATE_FIXED_LEN_V1 } else { STATE_FIXED_LEN };
        if body.len() < fixed {
            return Err(StateError::Length { expected: fixed, actual: body.len() });
        }
        let mut f = Fields(body);
        let card_id = CardId(f.take());
        let version = KeyVersion::new(f.u8()).ok_or(StateError::Field("key version"))?;
        let mut key = || Aes128Key::new(*Zeroizing::new(f.take::<16>()));
        let (enc, mac, dek) = (key(), key(), key());
        let keys = StaticKeys { version, enc, mac, dek };
        let currency = Currency::from_bytes(f.take()).map_err(|_| StateError::Field("currency"))?;
        let (max_balance_minor, balance_minor, counter) = (f.u64(), f.u64(), f.u32());
        let sequence = SequenceCounter::new(f.u32()).ok_or(StateError::Field("sequence"))?;
        let status = CardStatus::from_byte(f.u8()).map_err(|_| StateError::Field("status"))?;
        let log_collected = if format == 1 { 0 } else { f.u32() };
        let (log_len, recent_len) = (usize::from(f.u16()), usize::from(f.u16()));
        if log_len > LOG_CAPACITY || recent_len > RECENT_TX_CAPACITY {
            return Err(StateError::Field("table length"));
        }
        let expected = fixed + log_len * LOG_RECORD_LEN + recent_len * RECENT_TX_LEN;
        let tables_end = expected;
        if format < 3 && body.len() != expected {
            return Err(StateError::Length { expected, actual: body.len() });
        }
        if format >= 3 && body.len() <= expected {
            return Err(StateError::Length { expected: expected + 1, actual: body.len() });
        }
        let mut log = VecDeque::with_capacity(LOG_CAPACITY);
        for _ in 0..log_len {
            let record = LogRecord::parse(&f.take::<LOG_RECORD_LEN>()).map_err(|_| StateError::Field("log record"))?;
            log.push_back(record);
        }
        let mut recent = VecDeque::with_capacity(RECENT_TX_CAPACITY);
        for _ in 0..recent_len {
            let entry = f.take::<RECENT_TX_LEN>();
            let mut rf = Fields(&entry);
            let result = TxResult::parse_body(&mut rf).map_err(|_| StateError::Field("recent entry"))?;
            let digest = Fields(rf.rest()).take();
            recent.push_back(RecentTx { result, digest });
        }
        let tokens = if format >= 3 { tokens_from(&body[tables_end..])? } else { Vec::new() };
        let state = Self {
            tokens,
            card_id,
            keys,
            currency,
            max_balance_minor,
            balance_minor,
            counter,
            sequence,
            status,
            log_collected,
            log,
            recent,
        };
        state.check()?;
        Ok(state)
    }
}

/// The token table of a format-3 body: `count 1`, then per token `state 1
/// (01 stored, 02 redeemed) ‖ counter 4 ‖ redeeming tx id 16 (zeros while
/// stored) ‖ sealed length 1 ‖ sealed token`; nothing may follow.
fn tokens_from(mut rest: &[u8]) -> Result<Vec<TokenEntry>, StateError> {
    let bad = || StateError::Field("token table");
    let (&count, tail) = rest.split_first().ok_or_else(bad)?;
    rest = tail;
    if usize::from(count) > TOKEN_CAPACITY {
        return Err(bad());
    }
    let mut tokens = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let (fixed, tail) = rest.split_at_checked(1 + 4 + 16 + 1).ok_or_else(bad)?;
        let mut f = Fields(fixed);
        let (state, counter, tx) = (f.u8(), f.u32(), f.take::<16>());
        let len = usize::from(f.u8());
        if len > MAX_SEALED_LEN {
            return Err(bad());
        }
        let (sealed, tail) = tail.split_at_checked(len).ok_or_else(bad)?;
        rest = tail;
        let state = match state {
            1 if tx == [0u8; 16] => TokenState::Stored { counter },
            2 => TokenState::Redeemed { tx_id: TxId(tx), counter },
            _ => return Err(bad()),
        };
        let header = TokenHeader::read(sealed).map_err(|_| bad())?;
        tokens.push(TokenEntry { header, sealed: sealed.to_vec(), state });
    }
    if !rest.is_empty() {
        return Err(bad());
    }
    Ok(tokens)
}
