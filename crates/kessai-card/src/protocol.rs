//! The card's application protocol: AID, instruction codes, and the byte
//! layout of every data field. Both the card and the host side (center,
//! wallet) use these types, so each layout is written down once.
//!
//! All integers are big-endian. Secure commands travel inside an SCP03
//! session at level `33`; the plain form (CLA `80`) built here is what the
//! host hands to `HostSession::wrap`.

use kessai_scp03::{CommandApdu, Header};

/// The application's AID: RID `F0 4B 45 53 53` (`F` = proprietary,
/// unregistered RID, ISO 7816-5; then "KESS"), PIX `41 49 01 01` ("AI",
/// application 01, version 01).
pub const AID: [u8; 9] = [0xF0, 0x4B, 0x45, 0x53, 0x53, 0x41, 0x49, 0x01, 0x01];

/// The card's answer to reset: T=0 and T=1, historical bytes "KESSAI01".
pub const ATR: [u8; 13] = [0x3B, 0x88, 0x80, 0x01, 0x4B, 0x45, 0x53, 0x53, 0x41, 0x49, 0x30, 0x31, 0x0E];

/// Interindustry class (SELECT, GET DATA).
pub const CLA_ISO: u8 = 0x00;
/// Proprietary class, plain.
pub const CLA_PROPRIETARY: u8 = 0x80;
/// Proprietary class with secure messaging.
pub const CLA_SECURE: u8 = 0x84;

/// SELECT (by AID: P1 `04`, P2 `00` or `0C`).
pub const INS_SELECT: u8 = 0xA4;
/// GET DATA (P1P2 = tag).
pub const INS_GET_DATA: u8 = 0xCA;
/// INITIALIZE UPDATE (SCP03).
pub const INS_INITIALIZE_UPDATE: u8 = 0x50;
/// EXTERNAL AUTHENTICATE (SCP03).
pub const INS_EXTERNAL_AUTHENTICATE: u8 = 0x82;
/// READ BALANCE (secure).
pub const INS_READ_BALANCE: u8 = 0x30;
/// DEBIT (secure).
pub const INS_DEBIT: u8 = 0x32;
/// CREDIT (secure).
pub const INS_CREDIT: u8 = 0x34;
/// READ LOG (secure; P1 = records to skip, P2 = records wanted).
pub const INS_READ_LOG: u8 = 0x36;
/// TRANSACTION STATUS (secure).
pub const INS_TRANSACTION_STATUS: u8 = 0x38;
/// BLOCK CARD (secure; for good).
pub const INS_BLOCK: u8 = 0x3A;
/// LOG COLLECTED (secure): the center holds the log up to a counter.
pub const INS_LOG_COLLECTED: u8 = 0x3C;
/// READ LOG's P1 asking for the oldest records not yet collected, oldest
/// first (any other P1: records to skip, newest first).
pub const READ_LOG_UNCOLLECTED: u8 = 0xFF;
/// A transfer refused because it would drop a log record the center has
/// not collected (this application's own status word).
pub const SW_LOG_FULL: u16 = 0x6A8B;

/// GET DATA tags (P1P2).
pub mod tag {
    /// Card id, 8 bytes.
    pub const CARD_ID: u16 = 0xDF01;
    /// Key version number, 1 byte.
    pub const KEY_VERSION: u16 = 0xDF02;
    /// Currency, 3 ASCII letters (ISO 4217).
    pub const CURRENCY: u16 = 0xDF03;
    /// Balance for display only (unauthenticated), u64 minor units.
    pub const DISPLAY_BALANCE: u16 = 0xDF04;
    /// Maximum balance, u64 minor units.
    pub const MAX_BALANCE: u16 = 0xDF05;
    /// Status: `00` active, `01` blocked.
    pub const STATUS: u16 = 0xDF06;
    /// Transaction counter, u32.
    pub const TX_COUNTER: u16 = 0xDF07;
    /// All of the above: [`super::PublicInfo`] layout, 33 bytes.
    pub const ALL: u16 = 0xDF10;
}

/// A data field that does not have the documented layout.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Wrong length.
    #[error("{what}: {actual} bytes, expected {expected}")]
    Length {
        /// Which layout.
        what: &'static str,
        /// Bytes required.
        expected: usize,
        /// Bytes found.
        actual: usize,
    },
    /// Unknown transfer kind byte.
    #[error("unknown transfer kind {0:02X}")]
    Kind(u8),
    /// Unknown status byte.
    #[error("unknown status byte {0:02X}")]
    Status(u8),
    /// Not three uppercase ASCII letters.
    #[error("currency is not three letters A-Z")]
    Currency,
    /// A token field that is not one (`crate::tokens`).
    #[error("the token's {0} is refused")]
    Token(&'static str),
}

fn exact<'a, const N: usize>(what: &'static str, data: &'a [u8]) -> Result<&'a [u8; N], ProtocolError> {
    <&[u8; N]>::try_from(data).map_err(|_| ProtocolError::Length { what, expected: N, actual: data.len() })
}

/// Reads fixed-size fields from a slice whose length the caller checked.
pub(crate) struct Fields<'a>(pub(crate) &'a [u8]);

impl Fields<'_> {
    pub(crate) fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
    pub(crate) fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take())
    }
    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take())
    }
    pub(crate) fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take())
    }
    pub(crate) fn rest(&self) -> &[u8] {
        self.0
    }
}

/// An 8-byte card id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CardId(pub [u8; 8]);

impl core::fmt::Display for CardId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// An ISO 4217 alphabetic currency code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Validates three uppercase ASCII letters.
    pub fn new(code: &str) -> Result<Self, ProtocolError> {
        let bytes: [u8; 3] = code.as_bytes().try_into().map_err(|_| ProtocolError::Currency)?;
        Self::from_bytes(bytes)
    }

    /// Validates the three stored bytes.
    pub fn from_bytes(bytes: [u8; 3]) -> Result<Self, ProtocolError> {
        if bytes.iter().all(u8::is_ascii_uppercase) { Ok(Self(bytes)) } else { Err(ProtocolError::Currency) }
    }

    /// The three letters.
    pub fn as_bytes(&self) -> [u8; 3] {
        self.0
    }

    /// The code as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters get in (checked on construction).
        core::str::from_utf8(&self.0).unwrap_or("???")
    }
}

/// A 16-byte transaction id chosen by the center; applied at most once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TxId(pub [u8; 16]);

/// Debit or credit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransferKind {
    /// Value leaves the card (a purchase).
    Debit,
    /// Value enters the card (a value update).
    Credit,
    /// A bank deposit token was stored (`crate::tokens`); the balance is
    /// unchanged. Only a log record's kind, never a transfer's.
    TokenStored,
    /// A token was redeemed: the card gave it up; the balance is
    /// unchanged. Only a log record's kind, never a transfer's.
    TokenRedeemed,
}

impl TransferKind {
    /// Wire byte: `01` debit, `02` credit, `03` token stored, `04` token
    /// redeemed.
    pub fn to_byte(self) -> u8 {
        match self {
            Self::Debit => 0x01,
            Self::Credit => 0x02,
            Self::TokenStored => 0x03,
            Self::TokenRedeemed => 0x04,
        }
    }

    /// Parses the wire byte.
    pub fn from_byte(b: u8) -> Result<Self, ProtocolError> {
        match b {
            0x01 => Ok(Self::Debit),
            0x02 => Ok(Self::Credit),
            0x03 => Ok(Self::TokenStored),
            0x04 => Ok(Self::TokenRedeemed),
            other => Err(ProtocolError::Kind(other)),
        }
    }
}

/// Card status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CardStatus {
    /// Transfers allowed.
    Active,
    /// No more transfers, ever.
    Blocked,
}

impl CardStatus {
    /// Wire byte: `00` active, `01` blocked.
    pub fn to_byte(self) -> u8 {
        match self {
            Self::Active => 0,
            Self::Blocked => 1,
        }
    }

    /// Parses the wire byte.
    pub fn from_byte(b: u8) -> Result<Self, ProtocolError> {
        match b {
            0 => Ok(Self::Active),
            1 => Ok(Self::Blocked),
            other => Err(ProtocolError::Status(other)),
        }
    }
}

/// Data field of DEBIT and CREDIT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TransferRequest {
    /// Transaction id.
    pub tx_id: TxId,
    /// Amount, minor units; must be positive.
    pub amount_minor: u64,
    /// Counterpart: the store (debit) or funding source (credit), 8 bytes.
    pub counterpart: [u8; 8],
    /// Order reference (e.g. a hash of the bill id), 16 bytes.
    pub order_ref: [u8; 16],
    /// Time stated by the center, seconds since the Unix epoch.
    pub time_unix_s: u64,
}

/// `tx id 16 ‖ amount 8 ‖ counterpart 8 ‖ order ref 16 ‖ time 8`.
pub const TRANSFER_REQUEST_LEN: usize = 56;

impl TransferRequest {
    /// Encodes the data field.
    pub fn to_bytes(&self) -> [u8; TRANSFER_REQUEST_LEN] {
        let mut out = [0u8; TRANSFER_REQUEST_LEN];
        out[..16].copy_from_slice(&self.tx_id.0);
        out[16..24].copy_from_slice(&self.amount_minor.to_be_bytes());
        out[24..32].copy_from_slice(&self.counterpart);
        out[32..48].copy_from_slice(&self.order_ref);
        out[48..].copy_from_slice(&self.time_unix_s.to_be_bytes());
        out
    }

    /// Parses the data field.
    pub fn parse(data: &[u8]) -> Result<Self, ProtocolError> {
        let mut f = Fields(exact::<TRANSFER_REQUEST_LEN>("transfer request", data)?);
        Ok(Self {
            tx_id: TxId(f.take()),
            amount_minor: f.u64(),
            counterpart: f.take(),
            order_ref: f.take(),
            time_unix_s: f.u64(),
        })
    }
}

/// The outcome of an applied transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TxResult {
    /// Debit or credit.
    pub kind: TransferKind,
    /// Transaction id.
    pub tx_id: TxId,
    /// Amount applied.
    pub amount_minor: u64,
    /// The card's transaction counter after this transfer.
    pub counter: u32,
    /// Balance after this transfer.
    pub balance_after_minor: u64,
}

/// `01 ‖ kind 1 ‖ tx id 16 ‖ amount 8 ‖ counter 4 ‖ balance after 8`.
pub const TX_RESULT_LEN: usize = 38;
/// `00 ‖ tx id 16`: TRANSACTION STATUS for an id the card does not know.
pub const TX_UNKNOWN_LEN: usize = 17;

impl TxResult {
    /// Encodes the response data of DEBIT, CREDIT and TRANSACTION STATUS.
    pub fn to_bytes(&self) -> [u8; TX_RESULT_LEN] {
        let mut out = [0u8; TX_RESULT_LEN];
        out[0] = 0x01;
        out[1..].copy_from_slice(&self.body());
        out
    }

    /// Without the leading `01`: what the card stores per recent transaction.
    pub(crate) fn body(&self) -> [u8; TX_RESULT_LEN - 1] {
        let mut out = [0u8; TX_RESULT_LEN - 1];
        out[0] = self.kind.to_byte();
        out[1..17].copy_from_slice(&self.tx_id.0);
        out[17..25].copy_from_slice(&self.amount_minor.to_be_bytes());
        out[25..29].copy_from_slice(&self.counter.to_be_bytes());
        out[29..].copy_from_slice(&self.balance_after_minor.to_be_bytes());
        out
    }

    pub(crate) fn parse_body(f: &mut Fields<'_>) -> Result<Self, ProtocolError> {
        Ok(Self {
            kind: TransferKind::from_byte(f.u8())?,
            tx_id: TxId(f.take()),
            amount_minor: f.u64(),
            counter: f.u32(),
            balance_after_minor: f.u64(),
        })
    }
}

/// What TRANSACTION STATUS says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxStatus {
    /// Applied, with its result.
    Applied(TxResult),
    /// Not known to the card (never applied, or older than the table).
    Unknown(TxId),
}

impl TxStatus {
    /// Encodes the response data.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Self::Applied(r) => r.to_bytes().to_vec(),
            Self::Unknown(id) => {
                let mut out = vec![0x00];
                out.extend_from_slice(&id.0);
                out
            }
        }
    }

    /// Parses the response data of DEBIT, CREDIT or TRANSACTION STATUS.
    pub fn parse(data: &[u8]) -> Result<Self, ProtocolError> {
        match data.first() {
            Some(0x01) => {
                let mut f = Fields(&exact::<TX_RESULT_LEN>("transaction result", data)?[1..]);
                Ok(Self::Applied(TxResult::parse_body(&mut f)?))
            }
            Some(0x00) => {
                let d = exact::<TX_UNKNOWN_LEN>("transaction status", data)?;
                Ok(Self::Unknown(TxId(Fields(&d[1..]).take())))
            }
            Some(other) => Err(ProtocolError::Status(*other)),
            None => Err(ProtocolError::Length { what: "transaction status", expected: 17, actual: 0 }),
        }
    }
}

/// One log record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LogRecord {
    /// Debit or credit.
    pub kind: TransferKind,
    /// The request as applied.
    pub request: TransferRequest,
    /// Transaction counter after it.
    pub counter: u32,
    /// Balance after it.
    pub balance_after_minor: u64,
}

/// `kind 1 ‖ request 56 ‖ counter 4 ‖ balance after 8`.
pub const LOG_RECORD_LEN: usize = 1 + TRANSFER_REQUEST_LEN + 4 + 8;

impl LogRecord {
    /// Encodes one record.
    pub fn to_bytes(&self) -> [u8; LOG_RECORD_LEN] {
        let mut out = [0u8; LOG_RECORD_LEN];
        out[0] = self.kind.to_byte();
        out[1..57].copy_from_slice(&self.request.to_bytes());
        out[57..61].copy_from_slice(&self.counter.to_be_bytes());
        out[61..].copy_from_slice(&self.balance_after_minor.to_be_bytes());
        out
    }

    /// Parses one record.
    pub fn parse(data: &[u8]) -> Result<Self, ProtocolError> {
        let d = exact::<LOG_RECORD_LEN>("log record", data)?;
        let mut f = Fields(&d[57..]);
        Ok(Self {
            kind: TransferKind::from_byte(d[0])?,
            request: TransferRequest::parse(&d[1..57])?,
            counter: f.u32(),
            balance_after_minor: f.u64(),
        })
    }

    /// The signed change this record made to the balance.
    pub fn delta_minor(&self) -> i128 {
        match self.kind {
            TransferKind::Debit => -i128::from(self.request.amount_minor),
            TransferKind::Credit => i128::from(self.request.amount_minor),
            TransferKind::TokenStored | TransferKind::TokenRedeemed => 0,
        }
    }
}

/// Parses a READ LOG response: `count 1 ‖ records (newest first)`.
pub fn parse_log(data: &[u8]) -> Result<Vec<LogRecord>, ProtocolError> {
    let Some((&count, records)) = data.split_first() else {
        return Err(ProtocolError::Length { what: "log", expected: 1, actual: 0 });
    };
    let expected = usize::from(count) * LOG_RECORD_LEN;
    if records.len() != expected {
        return Err(ProtocolError::Length { what: "log", expected: expected + 1, actual: data.len() });
    }
    records.chunks_exact(LOG_RECORD_LEN).map(LogRecord::parse).collect()
}

/// READ BALANCE response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalanceReport {
    /// Balance, minor units.
    pub balance_minor: u64,
    /// Maximum balance, minor units.
    pub max_balance_minor: u64,
    /// Transaction counter.
    pub counter: u32,
    /// Currency.
    pub currency: Currency,
    /// Status.
    pub status: CardStatus,
    /// Card id (binds the balance to the card inside the session).
    pub card_id: CardId,
}

/// `balance 8 ‖ max 8 ‖ counter 4 ‖ currency 3 ‖ status 1 ‖ card id 8`.
pub const BALANCE_REPORT_LEN: usize = 32;

impl BalanceReport {
    /// Encodes the response data.
    pub fn to_bytes(&self) -> [u8; BALANCE_REPORT_LEN] {
        let mut out = [0u8; BALANCE_REPORT_LEN];
        out[..8].copy_from_slice(&self.balance_minor.to_be_bytes());
        out[8..16].copy_from_slice(&self.max_balance_minor.to_be_bytes());
        out[16..20].copy_from_slice(&self.counter.to_be_bytes());
        out[20..23].copy_from_slice(&self.currency.as_bytes());
        out[23] = self.status.to_byte();
        out[24..].copy_from_slice(&self.card_id.0);
        out
    }

    /// Parses the response data.
    pub fn parse(data: &[u8]) -> Result<Self, ProtocolError> {
        let mut f = Fields(exact::<BALANCE_REPORT_LEN>("balance report", data)?);
        Ok(Self {
            balance_minor: f.u64(),
            max_balance_minor: f.u64(),
            counter: f.u32(),
            currency: Currency::from_bytes(f.take())?,
            status: CardStatus::from_byte(f.u8())?,
            card_id: CardId(f.take()),
        })
    }
}

/// Public card data (GET DATA `DF10`; no keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicInfo {
    /// Card id.
    pub card_id: CardId,
    /// Key version of the static keys.
    pub key_version: u8,
    /// Currency.
    pub currency: Currency,
    /// Balance (display only when read over GET DATA).
    pub balance_minor: u64,
    /// Maximum balance.
    pub max_balance_minor: u64,
    /// Status.
    pub status: CardStatus,
    /// Transaction counter.
    pub counter: u32,
}

/// `card id 8 ‖ KVN 1 ‖ currency 3 ‖ balance 8 ‖ max 8 ‖ status 1 ‖ counter 4`.
pub const PUBLIC_INFO_LEN: usize = 33;

impl PublicInfo {
    /// Encodes GET DATA `DF10`.
    pub fn to_bytes(&self) -> [u8; PUBLIC_INFO_LEN] {
        let mut out = [0u8; PUBLIC_INFO_LEN];
        out[..8].copy_from_slice(&self.card_id.0);
        out[8] = self.key_version;
        out[9..12].copy_from_slice(&self.currency.as_bytes());
        out[12..20].copy_from_slice(&self.balance_minor.to_be_bytes());
        out[20..28].copy_from_slice(&self.max_balance_minor.to_be_bytes());
        out[28] = self.status.to_byte();
        out[29..].copy_from_slice(&self.counter.to_be_bytes());
        out
    }

    /// Parses GET DATA `DF10`.
    pub fn parse(data: &[u8]) -> Result<Self, ProtocolError> {
        let mut f = Fields(exact::<PUBLIC_INFO_LEN>("public info", data)?);
        Ok(Self {
            card_id: CardId(f.take()),
            key_version: f.u8(),
            currency: Currency::from_bytes(f.take())?,
            balance_minor: f.u64(),
            max_balance_minor: f.u64(),
            status: CardStatus::from_byte(f.u8())?,
            counter: f.u32(),
        })
    }
}

pub(crate) fn command(cla: u8, ins: u8, p1: u8, p2: u8, data: &[u8], le: Option<usize>) -> CommandApdu {
    let header = Header { cla, ins, p1, p2 };
    // Every command built here has at most 224 data bytes and Ne = 256, so
    // `new` cannot fail; the fallback only avoids an `unwrap`.
    CommandApdu::new(header, data.to_vec(), le).unwrap_or_else(|_| CommandApdu::header_only(header))
}

/// `00 A4 04 00 09 <AID> 00`.
pub fn select_command() -> CommandApdu {
    command(CLA_ISO, INS_SELECT, 0x04, 0x00, &AID, Some(256))
}

/// `80 CA <tag> 00`.
pub fn get_data_command(tag: u16) -> CommandApdu {
    let [p1, p2] = tag.to_be_bytes();
    command(CLA_PROPRIETARY, INS_GET_DATA, p1, p2, &[], Some(256))
}

/// Plain READ BALANCE `80 30 00 00 00` (wrap it).
pub fn read_balance_command() -> CommandApdu {
    command(CLA_PROPRIETARY, INS_READ_BALANCE, 0, 0, &[], Some(256))
}

/// Plain DEBIT `80 32 00 00 38 <request> 00` (wrap it).
pub fn debit_command(request: &TransferRequest) -> CommandApdu {
    command(CLA_PROPRIETARY, INS_DEBIT, 0, 0, &request.to_bytes(), Some(256))
}

/// Plain CREDIT `80 34 00 00 38 <request> 00` (wrap it).
pub fn credit_command(request: &TransferRequest) -> CommandApdu {
    command(CLA_PROPRIETARY, INS_CREDIT, 0, 0, &request.to_bytes(), Some(256))
}

/// Plain READ LOG `80 36 <skip> <count> 00` (wrap it).
pub fn read_log_command(skip: u8, count: u8) -> CommandApdu {
    command(CLA_PROPRIETARY, INS_READ_LOG, skip, count, &[], Some(256))
}

/// Plain READ LOG of the oldest uncollected records `80 36 FF <count> 00`
/// (wrap it).
pub fn read_uncollected_command(count: u8) -> CommandApdu {
    command(CLA_PROPRIETARY, INS_READ_LOG, READ_LOG_UNCOLLECTED, count, &[], Some(256))
}

/// Plain LOG COLLECTED `80 3C 00 00 04 <counter> 00` (wrap it).
pub fn log_collected_command(through: u32) -> CommandApdu {
    command(CLA_PROPRIETARY, INS_LOG_COLLECTED, 0, 0, &through.to_be_bytes(), Some(256))
}

/// Plain TRANSACTION STATUS `80 38 00 00 10 <tx id> 00` (wrap it).
pub fn transaction_status_command(tx_id: &TxId) -> CommandApdu {
    command(CLA_PROPRIETARY, INS_TRANSACTION_STATUS, 0, 0, &tx_id.0, Some(256))
}

/// Plain BLOCK CARD `80 3A 00 00` (wrap it).
pub fn block_command() -> CommandApdu {
    command(CLA_PROPRIETARY, INS_BLOCK, 0, 0, &[], None)
}

/// The host challenge of a purchase's secure session: the first 8 bytes of
/// SHA-256(`kessai-purchase-challenge` ‖ `00` ‖ bill hash ‖ card id). The
/// wallet sends INITIALIZE UPDATE with it before it asks the center
/// anything, and the center derives the same: the card's cryptogram is
/// then bound to this bill (paid at most once) and this card, which is what
/// a host challenge from the center's RNG bought at the price of a round
/// trip. The card's challenge stays its own (pseudo-random from its
/// sequence counter), so no two sessions share keys.
pub fn purchase_host_challenge(bill_hash: &[u8; 32], card_id: &CardId) -> [u8; 8] {
    use sha2::Digest as _;
    let digest = sha2::Sha256::new()
        .chain_update(b"kessai-purchase-challenge\0")
        .chain_update(bill_hash)
        .chain_update(card_id.0)
        .finalize();
    let mut challenge = [0u8; 8];
    challenge.copy_from_slice(&digest[..8]);
    challenge
}

/// INITIALIZE UPDATE `80 50 00 00 08 <host challenge> 00` (P1 `00`: the
/// card's current key version).
pub fn initialize_update_command(host_challenge: &[u8; 8]) -> CommandApdu {
    command(CLA_PROPRIETARY, INS_INITIALIZE_UPDATE, 0, 0, host_challenge, Some(256))
}

/// INS of PUT KEY (GlobalPlatform 2.3 §11.8): the card's static key set
/// replaced by a new key version, inside a level-`33` session.
pub const INS_PUT_KEY: u8 = 0xD8;
/// PUT KEY's P2: key identifier 1, several keys in one command.
pub const PUT_KEY_P2: u8 = 0x81;
/// GlobalPlatform's key type of an AES key.
pub const KEY_TYPE_AES: u8 = 0x88;
/// One key in PUT KEY's data: `88 11 10 ‖ E(DEK, key) 16 ‖ 03 ‖ KCV 3`.
const PUT_KEY_COMPONENT_LEN: usize = 3 + 16 + 1 + 3;
/// PUT KEY's data: the new key version, then ENC, MAC and DEK.
pub const PUT_KEY_DATA_LEN: usize = 1 + 3 * PUT_KEY_COMPONENT_LEN;
/// PUT KEY's answer: the new key version and the three check values.
pub const PUT_KEY_RESPONSE_LEN: usize = 1 + 3 * 3;

/// A key's check value as GlobalPlatform computes it for AES: the first 3
/// bytes of AES(key, 01×16).
pub fn key_check_value(key: &kessai_scp03::Aes128Key) -> [u8; 3] {
    let block = kessai_scp03::crypto::aes_encrypt_block(key, [0x01; 16]);
    [block[0], block[1], block[2]]
}

/// `80 D8 <current KVN> 81 46 <new KVN ‖ ENC ‖ MAC ‖ DEK>`: each key
/// encrypted under the current static DEK (one AES block; CBC with a zero
/// ICV is the same) with its check value. Sent wrapped (C-MAC, C-DEC).
pub fn put_key_command(
    current: kessai_scp03::KeyVersion,
    new: &kessai_scp03::StaticKeys,
    dek: &kessai_scp03::Aes128Key,
) -> CommandApdu {
    let mut data = zeroize::Zeroizing::new(Vec::with_capacity(PUT_KEY_DATA_LEN));
    data.push(new.version.get());
    for key in [&new.enc, &new.mac, &new.dek] {
        data.extend_from_slice(&[KEY_TYPE_AES, 0x11, 0x10]);
        data.extend_from_slice(&kessai_scp03::crypto::aes_encrypt_block(dek, *key.expose()));
        data.push(3);
        data.extend_from_slice(&key_check_value(key));
    }
    command(CLA_PROPRIETARY, INS_PUT_KEY, current.get(), PUT_KEY_P2, &data, Some(256))
}

/// Why PUT KEY's data was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PutKeyError {
    #[error("PUT KEY data is not {PUT_KEY_DATA_LEN} bytes")]
    Length,
    #[error("PUT KEY data is not three AES-128 keys with check values, or the version is invalid")]
    Format,
    #[error("a key does not match its check value")]
    CheckValue,
}

/// The card's reading of PUT KEY's data: the new static keys, each
/// decrypted under the current DEK and checked against its check value.
pub fn parse_put_key(data: &[u8], dek: &kessai_scp03::Aes128Key) -> Result<kessai_scp03::StaticKeys, PutKeyError> {
    if data.len() != PUT_KEY_DATA_LEN {
        return Err(PutKeyError::Length);
    }
    let version = kessai_scp03::KeyVersion::new(data[0]).ok_or(PutKeyError::Format)?;
    let mut keys = Vec::with_capacity(3);
    for part in data[1..].chunks_exact(PUT_KEY_COMPONENT_LEN) {
        if part[..3] != [KEY_TYPE_AES, 0x11, 0x10] || part[19] != 3 {
            return Err(PutKeyError::Format);
        }
        let mut block = [0u8; 16];
        block.copy_from_slice(&part[3..19]);
        let key = kessai_scp03::Aes128Key::new(kessai_scp03::crypto::aes_decrypt_block(dek, block));
        zeroize::Zeroize::zeroize(&mut block);
        if key_check_value(&key)[..] != part[20..23] {
            return Err(PutKeyError::CheckValue);
        }
        keys.push(key);
    }
    let mut keys = keys.into_iter();
    match (keys.next(), keys.next(), keys.next()) {
        (Some(enc), Some(mac), Some(dek)) => Ok(kessai_scp03::StaticKeys { version, enc, mac, dek }),
        _ => Err(PutKeyError::Format),
    }
}

/// PUT KEY's answer: `new KVN ‖ KCV(ENC) ‖ KCV(MAC) ‖ KCV(DEK)`.
pub fn put_key_response(keys: &kessai_scp03::StaticKeys) -> [u8; PUT_KEY_RESPONSE_LEN] {
    let mut out = [0u8; PUT_KEY_RESPONSE_LEN];
    out[0] = keys.version.get();
    for (i, key) in [&keys.enc, &keys.mac, &keys.dek].into_iter().enumerate() {
        out[1 + 3 * i..4 + 3 * i].copy_from_slice(&key_check_value(key));
    }
    out
}
