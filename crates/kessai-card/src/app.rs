//! The card application: `process(command bytes) -> response bytes` over a
//! [`Storage`]. No sockets, no clocks; the only I/O is the storage trait.
//!
//! Every command is handled in a fixed order: parse → class → selection →
//! secure messaging (C-MAC, C-DECRYPTION) → parameters → idempotency → rules
//! → one durable commit → response (R-ENC, R-MAC). A refused command
//! changes nothing.

use kessai_scp03::{
    Aid, CardHandshake, CardIdentity, CardSession, CommandApdu, ResponseApdu, ScpError, SecurityLevel, StatusWord,
};

use crate::image::{ImageError, Slot, encode_slot, load};
use crate::limits::{LOG_CAPACITY, READ_LOG_MAX_RECORDS, RECENT_TX_CAPACITY, WRITE_CHUNK_LEN};
use crate::protocol::{
    AID, CLA_ISO, CLA_PROPRIETARY, CLA_SECURE, CardStatus, INS_BLOCK, INS_CREDIT, INS_DEBIT, INS_EXTERNAL_AUTHENTICATE,
    INS_GET_DATA, INS_INITIALIZE_UPDATE, INS_LOG_COLLECTED, INS_PUT_KEY, INS_READ_BALANCE, INS_READ_LOG, INS_SELECT,
    INS_TRANSACTION_STATUS, LogRecord, PUT_KEY_P2, PutKeyError, READ_LOG_UNCOLLECTED, TransferKind, TransferRequest,
    TxId, TxResult, TxStatus, parse_put_key, put_key_response, tag,
};
use crate::state::{CardState, RecentTx, request_digest};
use crate::storage::Storage;
use crate::tokens::{
    INS_LIST_TOKENS, INS_REDEEM_TOKEN, INS_STORE_TOKEN, LIST_TOKENS_MAX, SW_TOKEN_EXPIRED, SW_TOKEN_REDEEMED,
    TOKEN_CAPACITY, TokenEntry, TokenHeader, TokenState,
};

/// Why the card refused a command; each maps to one status word.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    /// Bytes that are no valid APDU (`6700`).
    #[error("malformed APDU")]
    Malformed,
    /// A data field of the wrong length (`6700`).
    #[error("wrong data length")]
    WrongLength,
    /// CLA not used by this application (`6E00`).
    #[error("class not supported")]
    ClaNotSupported,
    /// INS unknown for this class (`6D00`).
    #[error("instruction not supported")]
    InsNotSupported,
    /// A command before the application was selected (`6D00`).
    #[error("application not selected")]
    NotSelected,
    /// SELECT of another AID (`6A82`).
    #[error("application not found")]
    ApplicationNotFound,
    /// P1/P2 wrong (`6A86`).
    #[error("incorrect P1 P2")]
    IncorrectP1P2,
    /// GET DATA of an unknown tag (`6A88`).
    #[error("unknown data tag")]
    UnknownTag,
    /// INITIALIZE UPDATE for a key version the card lacks (`6A88`).
    #[error("key version not found")]
    KeyVersionNotFound,
    /// A secure command without a session (`6982`).
    #[error("no secure session")]
    NoSession,
    /// A session below level `33` (`6982`).
    #[error("session level too low")]
    LevelTooLow,
    /// C-MAC wrong or missing, replay, bad padding: session ended (`6982`).
    #[error("secure messaging: {0}")]
    SecureMessaging(ScpError),
    /// EXTERNAL AUTHENTICATE without INITIALIZE UPDATE (`6985`).
    #[error("no handshake in progress")]
    NoHandshake,
    /// Host cryptogram wrong (`6300`).
    #[error("host authentication failed")]
    HostAuthentication,
    /// The SCP03 sequence counter is used up (`6985`).
    #[error("sequence counter exhausted")]
    SequenceExhausted,
    /// Amount zero (`6A80`).
    #[error("amount must be positive")]
    ZeroAmount,
    /// DEBIT above the balance (`6985`).
    #[error("insufficient balance")]
    InsufficientBalance,
    /// CREDIT above the maximum balance (`6A84`).
    #[error("maximum balance exceeded")]
    AboveMaximum,
    /// A transaction id already applied with a different request (`6A89`).
    #[error("transaction id reused with a different request")]
    TxIdReused,
    /// The card is blocked (`6A81`).
    #[error("card blocked")]
    Blocked,
    /// The transaction counter is used up (`6985`).
    #[error("transaction counter exhausted")]
    CounterExhausted,
    /// The durable write failed; nothing changed in memory (`6581`).
    #[error("memory failure: {0}")]
    Memory(std::io::Error),
    /// The log is full and its oldest record was never collected: a
    /// transfer would drop it (`6A8B`, this application's own).
    #[error("log full of uncollected records")]
    LogFull,
    /// LOG COLLECTED for a counter the card has not reached (`6A80`).
    #[error("log collected beyond the counter")]
    CollectedBeyondCounter,
    /// PUT KEY data that is not three keys matching their check values, or
    /// names the current version again (`6A80`).
    #[error("bad key data: {0}")]
    BadKeyData(&'static str),
    /// STORE TOKEN of bytes that are no sealed token, or one in another
    /// currency than the card's (`6A80`).
    #[error("not a token for this card")]
    BadToken,
    /// STORE TOKEN with the table full of tokens not redeemed, or redeemed
    /// with their record not collected (`6A84`).
    #[error("token table full")]
    TokenTableFull,
    /// STORE TOKEN of another token under an id the card holds (`6A89`).
    #[error("token id held by another token")]
    TokenIdReused,
    /// A token at or past its expiry, by the command's time (`6A8C`).
    #[error("token expired")]
    TokenExpired,
    /// REDEEM TOKEN of a token redeemed by another transaction (`6A8D`).
    #[error("token redeemed before")]
    TokenRedeemed,
    /// REDEEM TOKEN of a token the card does not hold (`6A88`).
    #[error("no such token")]
    UnknownToken,
}

impl CardError {
    /// The status word the card answers with.
    pub fn status_word(&self) -> StatusWord {
        use StatusWord as Sw;
        match self {
            Self::Malformed | Self::WrongLength => Sw::WrongLength,
            Self::ClaNotSupported => Sw::ClaNotSupported,
            Self::InsNotSupported | Self::NotSelected => Sw::InsNotSupported,
            Self::ApplicationNotFound => Sw::FileNotFound,
            Self::IncorrectP1P2 => Sw::IncorrectP1P2,
            Self::UnknownTag | Self::KeyVersionNotFound | Self::UnknownToken => Sw::ReferencedDataNotFound,
            Self::NoSession | Self::LevelTooLow | Self::SecureMessaging(_) => Sw::SecurityStatusNotSatisfied,
            Self::NoHandshake | Self::SequenceExhausted | Self::InsufficientBalance | Self::CounterExhausted => {
                Sw::ConditionsNotSatisfied
            }
            Self::HostAuthentication => Sw::AuthenticationFailed,
            Self::ZeroAmount | Self::CollectedBeyondCounter | Self::BadKeyData(_) | Self::BadToken => Sw::WrongData,
            Self::LogFull => Sw::Other(crate::protocol::SW_LOG_FULL),
            Self::TokenExpired => Sw::Other(SW_TOKEN_EXPIRED),
            Self::TokenRedeemed => Sw::Other(SW_TOKEN_REDEEMED),
            Self::AboveMaximum | Self::TokenTableFull => Sw::NotEnoughMemory,
            Self::TxIdReused | Self::TokenIdReused => Sw::AlreadyExists,
            Self::Blocked => Sw::FunctionNotSupported,
            Self::Memory(_) => Sw::MemoryFailure,
        }
    }

    /// Maps a handshake error of the SCP03 core.
    fn from_handshake(e: ScpError) -> Self {
        match e {
            ScpError::KeyVersionNotFound { .. } => Self::KeyVersionNotFound,
            ScpError::IncorrectP1P2 { .. } | ScpError::InvalidSecurityLevel(_) => Self::IncorrectP1P2,
            ScpError::WrongDataLength { .. } => Self::WrongLength,
            ScpError::HostCryptogramMismatch => Self::HostAuthentication,
            ScpError::UnexpectedClass(_) => Self::ClaNotSupported,
            other => Self::SecureMessaging(other),
        }
    }
}

/// The secure channel, from the card's side.
#[derive(Debug)]
enum Channel {
    Closed,
    Handshake(CardHandshake),
    Open(CardSession),
}

/// The emulated card.
#[derive(Debug)]
pub struct Card<S: Storage> {
    storage: S,
    state: CardState,
    slot: Slot,
    generation: u64,
    identity: CardIdentity,
    selected: bool,
    channel: Channel,
    /// A LOG COLLECTED not yet written: kept in memory and written with
    /// the next commit (a transfer), so it costs no write of its own. Lost
    /// to a power cut before then, the card only keeps more records than
    /// it needs: never fewer.
    collected_pending: u32,
}

type Answer = Result<ResponseApdu, CardError>;

fn ok(data: &[u8]) -> ResponseApdu {
    // Every card response is far below the 65536-byte limit.
    ResponseApdu::new(data.to_vec(), StatusWord::Success)
        .unwrap_or_else(|_| ResponseApdu::status(StatusWord::NoPreciseDiagnosis))
}

fn expect_p1p2(cmd: &CommandApdu, p1: u8, p2: u8) -> Result<(), CardError> {
    if (cmd.p1(), cmd.p2()) == (p1, p2) { Ok(()) } else { Err(CardError::IncorrectP1P2) }
}

fn expect_no_data(cmd: &CommandApdu) -> Result<(), CardError> {
    if cmd.data().is_empty() { Ok(()) } else { Err(CardError::WrongLength) }
}

impl<S: Storage> Card<S> {
    /// Starts the card from its storage (the newest valid slot).
    pub fn open(mut storage: S) -> Result<Self, ImageError> {
        let loaded = load(&storage.read_image()?)?;
        let mut key_diversification_data = [0u8; 10];
        key_diversification_data[..8].copy_from_slice(&loaded.state.card_id.0);
        let identity = CardIdentity {
            // AID is a 9-byte constant, within 5..=16.
            aid: Aid::new(&AID).ok_or(ImageError::Personalization("AID"))?,
            key_diversification_data,
        };
        Ok(Self {
            storage,
            state: loaded.state,
            slot: loaded.slot,
            generation: loaded.generation,
            identity,
            selected: false,
            channel: Channel::Closed,
            collected_pending: 0,
        })
    }

    /// The counter through which the log is collected: as written, or as a
    /// LOG COLLECTED since said.
    fn collected_through(&self) -> u32 {
        self.state.log_collected.max(self.collected_pending)
    }

    /// The current state (read-only).
    pub fn state(&self) -> &CardState {
        &self.state
    }

    /// The storage (read-only).
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The storage, mutable: for fault injection in tests. Writing to it
    /// behind the card's back is a power cut's job, not an API.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// Takes the storage out (e.g. to simulate a power cut).
    pub fn into_storage(self) -> S {
        self.storage
    }

    /// Power-on or reset: nothing selected, no session.
    pub fn reset(&mut self) {
        self.selected = false;
        self.channel = Channel::Closed;
    }

    /// Handles one command APDU and returns the response APDU. Never panics
    /// on any input.
    pub fn process(&mut self, apdu: &[u8]) -> Vec<u8> {
        let answer = match CommandApdu::parse(apdu) {
            Ok(cmd) => self.dispatch(&cmd),
            Err(_) => {
                self.channel = Channel::Closed;
                Err(CardError::Malformed)
            }
        };
        match answer {
            Ok(response) => response.to_bytes(),
            Err(e) => e.status_word().to_bytes().to_vec(),
        }
    }

    fn dispatch(&mut self, cmd: &CommandApdu) -> Answer {
        if cmd.cla() == CLA_ISO && cmd.ins() == INS_SELECT {
            return self.select(cmd);
        }
        if !self.selected {
            return Err(CardError::NotSelected);
        }
        match cmd.cla() {
            CLA_SECURE => self.secure(cmd),
            CLA_ISO | CLA_PROPRIETARY => {
                // Below any session's level: the session ends.
                self.channel = Channel::Closed;
                self.plain(cmd)
            }
            _ => Err(CardError::ClaNotSupported),
        }
    }

    fn select(&mut self, cmd: &CommandApdu) -> Answer {
        self.channel = Channel::Closed;
        if cmd.p1() != 0x04 || !matches!(cmd.p2(), 0x00 | 0x0C) {
            return Err(CardError::IncorrectP1P2);
        }
        if cmd.data() != AID {
            self.selected = false;
            return Err(CardError::ApplicationNotFound);
        }
        self.selected = true;
        let mut fci = Vec::with_capacity(4 + AID.len());
        if cmd.p2() == 0x00 {
            // FCI template 6F { DF name 84 = AID }; lengths are small constants.
            fci.extend_from_slice(&[0x6F, (AID.len() + 2) as u8, 0x84, AID.len() as u8]);
            fci.extend_from_slice(&AID);
        }
        let sw = match self.state.status {
            CardStatus::Active => StatusWord::Success,
            CardStatus::Blocked => StatusWord::SelectedFileDeactivated,
        };
        Ok(ResponseApdu::new(fci, sw).unwrap_or_else(|_| ResponseApdu::status(sw)))
    }

    fn plain(&mut self, cmd: &CommandApdu) -> Answer {
        match (cmd.cla(), cmd.ins()) {
            (_, INS_GET_DATA) => self.get_data(cmd),
            (CLA_PROPRIETARY, INS_INITIALIZE_UPDATE) => self.initialize_update(cmd),
            (
                CLA_PROPRIETARY,
                INS_EXTERNAL_AUTHENTICATE
                | INS_READ_BALANCE
                | INS_DEBIT
                | INS_CREDIT
                | INS_READ_LOG
                | INS_LOG_COLLECTED
                | INS_TRANSACTION_STATUS
                | INS_BLOCK
                | INS_PUT_KEY
                | INS_STORE_TOKEN
                | INS_LIST_TOKENS
                | INS_REDEEM_TOKEN,
            ) => Err(CardError::NoSession),
            _ => Err(CardError::InsNotSupported),
        }
    }

    fn secure(&mut self, cmd: &CommandApdu) -> Answer {
        let channel = std::mem::replace(&mut self.channel, Channel::Closed);
        if cmd.ins() == INS_EXTERNAL_AUTHENTICATE {
            let Channel::Handshake(handshake) = channel else {
                return Err(CardError::NoHandshake);
            };
            let (session, response) = handshake.external_authenticate(cmd).map_err(CardError::from_handshake)?;
            self.channel = Channel::Open(session);
            return Ok(response);
        }
        let Channel::Open(session) = channel else {
            return Err(CardError::NoSession);
        };
        let (session, plain) = session.unwrap_command(cmd).map_err(CardError::SecureMessaging)?;
        if session.level() != SecurityLevel::FULL {
            self.channel = Channel::Open(session);
            return Err(CardError::LevelTooLow);
        }
        let response = self.application(&plain).unwrap_or_else(|e| ResponseApdu::status(e.status_word()));
        let wrapped = session.wrap_response(&response).map_err(CardError::SecureMessaging);
        // New static keys end the session they were put in: what follows
        // needs a session under them.
        let rekeyed = plain.ins() == INS_PUT_KEY && response.sw().raw() == 0x9000;
        self.channel = if rekeyed { Channel::Closed } else { Channel::Open(session) };
        wrapped
    }

    fn application(&mut self, cmd: &CommandApdu) -> Answer {
        match cmd.ins() {
            INS_READ_BALANCE => self.read_balance(cmd),
            INS_DEBIT => self.transfer(TransferKind::Debit, cmd),
            INS_CREDIT => self.transfer(TransferKind::Credit, cmd),
            INS_READ_LOG => self.read_log(cmd),
            INS_LOG_COLLECTED => self.log_collected(cmd),
            INS_TRANSACTION_STATUS => self.transaction_status(cmd),
            INS_BLOCK => self.block(cmd),
            INS_PUT_KEY => self.put_key(cmd),
            INS_GET_DATA => self.get_data(cmd),
            INS_STORE_TOKEN => self.store_token(cmd),
            INS_LIST_TOKENS => self.list_tokens(cmd),
            INS_REDEEM_TOKEN => self.redeem_token(cmd),
            _ => Err(CardError::InsNotSupported),
        }
    }

    fn get_data(&mut self, cmd: &CommandApdu) -> Answer {
        expect_no_data(cmd)?;
        let info = self.state.public_info();
        let data: Vec<u8> = match u16::from_be_bytes([cmd.p1(), cmd.p2()]) {
            tag::CARD_ID => info.card_id.0.to_vec(),
            tag::KEY_VERSION => vec![info.key_version],
            tag::CURRENCY => info.currency.as_bytes().to_vec(),
            tag::DISPLAY_BALANCE => info.balance_minor.to_be_bytes().to_vec(),
            tag::MAX_BALANCE => info.max_balance_minor.to_be_bytes().to_vec(),
            tag::STATUS => vec![info.status.to_byte()],
            tag::TX_COUNTER => info.counter.to_be_bytes().to_vec(),
            tag::ALL => info.to_bytes().to_vec(),
            _ => return Err(CardError::UnknownTag),
        };
        Ok(ok(&data))
    }

    fn initialize_update(&mut self, cmd: &CommandApdu) -> Answer {
        let next = self.state.sequence.next().map_err(|_| CardError::SequenceExhausted)?;
        let (handshake, response) = CardHandshake::initialize_update(&self.state.keys, &self.identity, next, cmd)
            .map_err(CardError::from_handshake)?;
        // The counter is stored before the challenge leaves the card, so no
        // challenge is ever given twice.
        let mut new_state = self.state.clone();
        new_state.sequence = next;
        self.commit(new_state)?;
        self.channel = Channel::Handshake(handshake);
        Ok(response)
    }

    fn read_balance(&mut self, cmd: &CommandApdu) -> Answer {
        expect_p1p2(cmd, 0, 0)?;
        expect_no_data(cmd)?;
        let s = &self.state;
        let report = crate::protocol::BalanceReport {
            balance_minor: s.balance_minor,
            max_balance_minor: s.max_balance_minor,
            counter: s.counter,
            currency: s.currency,
            status: s.status,
            card_id: s.card_id,
        };
        Ok(ok(&report.to_bytes()))
    }

    fn transfer(&mut self, kind: TransferKind, cmd: &CommandApdu) -> Answer {
        expect_p1p2(cmd, 0, 0)?;
        let request = TransferRequest::parse(cmd.data()).map_err(|_| CardError::WrongLength)?;
        if request.amount_minor == 0 {
            return Err(CardError::ZeroAmount);
        }
        let digest = request_digest(kind, &request);
        if let Some(prior) = self.state.recent(&request.tx_id) {
            // A retry gets the first answer; another request with the id, never.
            return if prior.digest == digest { Ok(ok(&prior.result.to_bytes())) } else { Err(CardError::TxIdReused) };
        }
        if self.state.status == CardStatus::Blocked {
            return Err(CardError::Blocked);
        }
        let result = self.apply(kind, &request)?;
        // The record this transfer would push out must have been collected.
        let through = self.collected_through();
        if self.state.log.len() == LOG_CAPACITY && self.state.log.front().is_some_and(|oldest| oldest.counter > through)
        {
            return Err(CardError::LogFull);
        }
        let mut next = self.state.clone();
        next.balance_minor = result.balance_after_minor;
        next.counter = result.counter;
        if next.log.len() == LOG_CAPACITY {
            next.log.pop_front();
        }
        next.log.push_back(LogRecord {
            kind,
            request,
            counter: result.counter,
            balance_after_minor: result.balance_after_minor,
        });
        if next.recent.len() == RECENT_TX_CAPACITY {
            next.recent.pop_front();
        }
        next.recent.push_back(RecentTx { result, digest });
        self.commit(next)?;
        Ok(ok(&result.to_bytes()))
    }

    /// The rules: what the transfer would give, or why it may not happen.
    fn apply(&self, kind: TransferKind, request: &TransferRequest) -> Result<TxResult, CardError> {
        let s = &self.state;
        let balance_after_minor = match kind {
            TransferKind::Debit => {
                s.balance_minor.checked_sub(request.amount_minor).ok_or(CardError::InsufficientBalance)?
            }
            TransferKind::Credit => s
                .balance_minor
                .checked_add(request.amount_minor)
                .filter(|b| *b <= s.max_balance_minor)
                .ok_or(CardError::AboveMaximum)?,
            // Token events are logged by their own commands, never asked
            // for as a transfer.
            TransferKind::TokenStored | TransferKind::TokenRedeemed => return Err(CardError::InsNotSupported),
        };
        let counter = s.counter.checked_add(1).ok_or(CardError::CounterExhausted)?;
        Ok(TxResult { kind, tx_id: request.tx_id, amount_minor: request.amount_minor, counter, balance_after_minor })
    }

    fn read_log(&mut self, cmd: &CommandApdu) -> Answer {
        expect_no_data(cmd)?;
        let (skip, count) = (cmd.p1(), usize::from(cmd.p2()));
        if count == 0
            || count > READ_LOG_MAX_RECORDS
            || (skip != READ_LOG_UNCOLLECTED && usize::from(skip) >= LOG_CAPACITY)
        {
            return Err(CardError::IncorrectP1P2);
        }
        let records: Vec<&LogRecord> = if skip == READ_LOG_UNCOLLECTED {
            // The oldest records not yet collected, oldest first.
            let mark = self.collected_through();
            self.state.log.iter().filter(|r| r.counter > mark).take(count).collect()
        } else {
            self.state.log.iter().rev().skip(usize::from(skip)).take(count).collect()
        };
        // At most READ_LOG_MAX_RECORDS (3) records.
        let mut data = vec![records.len() as u8];
        for record in records {
            data.extend_from_slice(&record.to_bytes());
        }
        Ok(ok(&data))
    }

    /// LOG COLLECTED: the center holds every record up to `counter`; the
    /// mark never goes back, and never past the card's own counter. Written
    /// with the next commit.
    fn log_collected(&mut self, cmd: &CommandApdu) -> Answer {
        expect_p1p2(cmd, 0, 0)?;
        let through: [u8; 4] = cmd.data().try_into().map_err(|_| CardError::WrongLength)?;
        let through = u32::from_be_bytes(through);
        if through > self.state.counter {
            return Err(CardError::CollectedBeyondCounter);
        }
        self.collected_pending = self.collected_pending.max(through);
        Ok(ok(&self.collected_through().to_be_bytes()))
    }

    fn transaction_status(&mut self, cmd: &CommandApdu) -> Answer {
        expect_p1p2(cmd, 0, 0)?;
        let id: [u8; 16] = cmd.data().try_into().map_err(|_| CardError::WrongLength)?;
        let status = match self.state.recent(&TxId(id)) {
            Some(prior) => TxStatus::Applied(prior.result),
            None => TxStatus::Unknown(TxId(id)),
        };
        Ok(ok(&status.to_bytes()))
    }

    /// PUT KEY: the static keys replaced by a new key version, in one
    /// durable write (the old keys or the new, never a mix). P1 names the
    /// version replaced; each new key comes encrypted under the current
    /// DEK with its check value.
    fn put_key(&mut self, cmd: &CommandApdu) -> Answer {
        if cmd.p2() != PUT_KEY_P2 {
            return Err(CardError::IncorrectP1P2);
        }
        if cmd.p1() != self.state.keys.version.get() {
            return Err(CardError::KeyVersionNotFound);
        }
        if self.state.status == CardStatus::Blocked {
            return Err(CardError::Blocked);
        }
        let keys = parse_put_key(cmd.data(), &self.state.keys.dek).map_err(|e| match e {
            PutKeyError::Length => CardError::WrongLength,
            PutKeyError::CheckValue => CardError::BadKeyData("a key does not match its check value"),
            _ => CardError::BadKeyData("not three AES-128 keys of a valid version"),
        })?;
        if keys.version == self.state.keys.version {
            return Err(CardError::BadKeyData("the new keys must have a new version"));
        }
        let response = put_key_response(&keys);
        let mut next = self.state.clone();
        next.keys = keys;
        self.commit(next)?;
        Ok(ok(&response))
    }

    /// Appends the log record of a token event to `next` (whose counter it
    /// takes), as a transfer does: refused if it would push out a record
    /// the center has not collected.
    fn log_token_event(
        &self,
        next: &mut CardState,
        kind: TransferKind,
        header: &TokenHeader,
        tx_id: TxId,
        time_unix_s: u64,
    ) -> Result<u32, CardError> {
        let through = self.collected_through();
        if next.log.len() == LOG_CAPACITY && next.log.front().is_some_and(|oldest| oldest.counter > through) {
            return Err(CardError::LogFull);
        }
        let counter = next.counter.checked_add(1).ok_or(CardError::CounterExhausted)?;
        let mut counterpart = [0u8; 8];
        counterpart.copy_from_slice(&header.token_id[..8]);
        let request = TransferRequest {
            tx_id,
            amount_minor: header.amount_minor,
            counterpart,
            order_ref: header.token_id,
            time_unix_s,
        };
        if next.log.len() == LOG_CAPACITY {
            next.log.pop_front();
        }
        next.log.push_back(LogRecord { kind, request, counter, balance_after_minor: next.balance_minor });
        next.counter = counter;
        // Its transaction id is used, as a transfer's is: TRANSACTION
        // STATUS answers it, and no other command applies under it.
        let result = TxResult {
            kind,
            tx_id,
            amount_minor: header.amount_minor,
            counter,
            balance_after_minor: next.balance_minor,
        };
        if next.recent.len() == RECENT_TX_CAPACITY {
            next.recent.pop_front();
        }
        next.recent.push_back(RecentTx { result, digest: request_digest(kind, &request) });
        Ok(counter)
    }

    /// STORE TOKEN: `tx id 16 ‖ time 8 ‖ sealed token`; answers `counter
    /// 4 ‖ token id 16`. The same token again answers as the first time.
    fn store_token(&mut self, cmd: &CommandApdu) -> Answer {
        expect_p1p2(cmd, 0, 0)?;
        let data = cmd.data();
        if data.len() < 24 {
            return Err(CardError::WrongLength);
        }
        let (tx, rest) = data.split_at(16);
        let (time, sealed) = rest.split_at(8);
        let mut time_bytes = [0u8; 8];
        time_bytes.copy_from_slice(time);
        let now = u64::from_be_bytes(time_bytes);
        let header = TokenHeader::read(sealed).map_err(|_| CardError::BadToken)?;
        let answer = |counter: u32| {
            let mut out = counter.to_be_bytes().to_vec();
            out.extend_from_slice(&header.token_id);
            ok(&out)
        };
        if let Some(held) = self.state.tokens.iter().find(|t| t.header.token_id == header.token_id) {
            return match held.state {
                TokenState::Stored { counter } if held.sealed == sealed => Ok(answer(counter)),
                TokenState::Redeemed { .. } if held.sealed == sealed => Err(CardError::TokenRedeemed),
                _ => Err(CardError::TokenIdReused),
            };
        }
        let tx_id = TxId(tx.try_into().map_err(|_| CardError::WrongLength)?);
        if self.state.recent(&tx_id).is_some() {
            return Err(CardError::TxIdReused);
        }
        if self.state.status == CardStatus::Blocked {
            return Err(CardError::Blocked);
        }
        if header.currency != self.state.currency {
            return Err(CardError::BadToken);
        }
        if now >= header.expires_unix_s {
            return Err(CardError::TokenExpired);
        }
        let mut next = self.state.clone();
        if next.tokens.len() == TOKEN_CAPACITY {
            // Room from the oldest token that is done with, its newest
            // record collected by the center (which then knows its end):
            // redeemed, or expired by this command's time (its value goes
            // back to the depositor's bank account, not through the card).
            let through = self.collected_through();
            let done = |t: &TokenEntry| t.is_redeemed() || now >= t.header.expires_unix_s;
            let gone = next.tokens.iter().position(|t| done(t) && t.counter() <= through);
            let Some(gone) = gone else { return Err(CardError::TokenTableFull) };
            next.tokens.remove(gone);
        }
        let counter = self.log_token_event(&mut next, TransferKind::TokenStored, &header, tx_id, now)?;
        next.tokens.push(TokenEntry { header, sealed: sealed.to_vec(), state: TokenState::Stored { counter } });
        self.commit(next)?;
        Ok(answer(counter))
    }

    /// LIST TOKENS: P1 the first entry, P2 how many (1 to 4); answers
    /// `total 1 ‖ count 1 ‖ entries`.
    fn list_tokens(&mut self, cmd: &CommandApdu) -> Answer {
        expect_no_data(cmd)?;
        let (first, count) = (usize::from(cmd.p1()), usize::from(cmd.p2()));
        if count == 0 || count > LIST_TOKENS_MAX || first >= TOKEN_CAPACITY {
            return Err(CardError::IncorrectP1P2);
        }
        let listed: Vec<&TokenEntry> = self.state.tokens.iter().skip(first).take(count).collect();
        // Both at most TOKEN_CAPACITY (8).
        let mut data = vec![self.state.tokens.len() as u8, listed.len() as u8];
        for t in listed {
            data.extend_from_slice(&t.listed());
        }
        Ok(ok(&data))
    }

    /// REDEEM TOKEN: `token id 16 ‖ tx id 16 ‖ time 8`; answers `counter 4
    /// ‖ sealed token`, once: the same transaction again gets the same
    /// answer, another is refused.
    fn redeem_token(&mut self, cmd: &CommandApdu) -> Answer {
        expect_p1p2(cmd, 0, 0)?;
        let data: [u8; 40] = cmd.data().try_into().map_err(|_| CardError::WrongLength)?;
        let mut id = [0u8; 16];
        id.copy_from_slice(&data[..16]);
        let mut tx = [0u8; 16];
        tx.copy_from_slice(&data[16..32]);
        let mut time = [0u8; 8];
        time.copy_from_slice(&data[32..]);
        let (tx_id, now) = (TxId(tx), u64::from_be_bytes(time));
        let index = self.state.tokens.iter().position(|t| t.header.token_id == id).ok_or(CardError::UnknownToken)?;
        let held = &self.state.tokens[index];
        let answer = |counter: u32, sealed: &[u8]| {
            let mut out = counter.to_be_bytes().to_vec();
            out.extend_from_slice(sealed);
            ok(&out)
        };
        match held.state {
            TokenState::Redeemed { tx_id: by, counter } if by == tx_id => return Ok(answer(counter, &held.sealed)),
            TokenState::Redeemed { .. } => return Err(CardError::TokenRedeemed),
            TokenState::Stored { .. } => {}
        }
        if self.state.recent(&tx_id).is_some() {
            return Err(CardError::TxIdReused);
        }
        if self.state.status == CardStatus::Blocked {
            return Err(CardError::Blocked);
        }
        if now >= held.header.expires_unix_s {
            return Err(CardError::TokenExpired);
        }
        let header = held.header;
        let mut next = self.state.clone();
        let counter = self.log_token_event(&mut next, TransferKind::TokenRedeemed, &header, tx_id, now)?;
        let entry = &mut next.tokens[index];
        entry.state = TokenState::Redeemed { tx_id, counter };
        let sealed = entry.sealed.clone();
        self.commit(next)?;
        Ok(answer(counter, &sealed))
    }

    fn block(&mut self, cmd: &CommandApdu) -> Answer {
        expect_p1p2(cmd, 0, 0)?;
        expect_no_data(cmd)?;
        if self.state.status != CardStatus::Blocked {
            let mut next = self.state.clone();
            next.status = CardStatus::Blocked;
            self.commit(next)?;
        }
        Ok(ok(&[]))
    }

    /// Writes `next` into the other slot, syncs, and only then makes it the
    /// card's state. On failure memory keeps the old state; storage may hold
    /// a torn or complete copy of `next` in the other slot (old-or-new).
    fn commit(&mut self, mut next: CardState) -> Result<(), CardError> {
        next.log_collected = next.log_collected.max(self.collected_pending.min(next.counter));
        let target = self.slot.other();
        let generation = self.generation + 1;
        let bytes = encode_slot(generation, &next);
        let mut offset = target.offset();
        for chunk in bytes.chunks(WRITE_CHUNK_LEN) {
            self.storage.write_at(offset, chunk).map_err(CardError::Memory)?;
            offset += chunk.len() as u64;
        }
        self.storage.sync().map_err(CardError::Memory)?;
        self.state = next;
        self.slot = target;
        self.generation = generation;
        Ok(())
    }
}
