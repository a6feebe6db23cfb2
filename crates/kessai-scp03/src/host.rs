//! The host (off-card entity) side: INITIALIZE UPDATE, the card cryptogram
//! check, EXTERNAL AUTHENTICATE, command wrapping and response unwrapping,
//! and a byte form of the state so another process can resume a session.

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::apdu::{CommandApdu, Header, ResponseApdu};
use crate::channel::{Channel, mac_command};
use crate::error::ScpError;
use crate::handshake::{
    CLA_GP, CLA_SECURE_MESSAGING, I_PARAM, INS_EXTERNAL_AUTHENTICATE, INS_INITIALIZE_UPDATE, InitializeUpdateResponse,
    S8, SCP_ID, card_cryptogram, host_cryptogram, session_keys,
};
use crate::keys::{Aes128Key, KeyVersion, SessionKeys, StaticKeys};
use crate::level::SecurityLevel;
use crate::limits::{BLOCK_LEN, KEY_LEN, S8_LEN, SHORT_MAX_LE};
use crate::status::StatusWord;

/// A host that has sent INITIALIZE UPDATE and waits for the card's answer.
#[derive(Clone, Debug)]
pub struct HostHandshake {
    keys: StaticKeys,
    level: SecurityLevel,
    host_challenge: S8,
}

/// What the card's INITIALIZE UPDATE answer opens.
#[derive(Debug)]
pub struct HostOpening {
    /// The session, ready to wrap commands.
    pub session: HostSession,
    /// The EXTERNAL AUTHENTICATE to send next.
    pub external_authenticate: CommandApdu,
    /// What the card said (card id in the key diversification data, counter).
    pub card: InitializeUpdateResponse,
}

impl HostHandshake {
    /// Starts a handshake. `host_challenge` must be fresh random bytes from
    /// the caller's RNG.
    pub fn new(keys: StaticKeys, level: SecurityLevel, host_challenge: S8) -> Self {
        Self { keys, level, host_challenge }
    }

    /// The INITIALIZE UPDATE command: `80 50 KVN 00 08 host-challenge 00`.
    pub fn initialize_update(&self) -> CommandApdu {
        let header = Header { cla: CLA_GP, ins: INS_INITIALIZE_UPDATE, p1: self.keys.version.get(), p2: 0 };
        // 8 data bytes and Ne = 256 always fit a short APDU.
        CommandApdu::fixed(header, self.host_challenge.to_vec(), Some(SHORT_MAX_LE))
    }

    /// Checks the card's answer and builds EXTERNAL AUTHENTICATE.
    pub fn card_response(self, response: &ResponseApdu) -> Result<HostOpening, ScpError> {
        if response.sw() != StatusWord::Success {
            return Err(ScpError::UnexpectedStatus(response.sw()));
        }
        let card = InitializeUpdateResponse::parse(response.data())?;
        if card.key_version != self.keys.version.get() {
            return Err(ScpError::KeyVersionMismatch { expected: self.keys.version.get(), actual: card.key_version });
        }
        if card.scp_id != SCP_ID || card.i_param != I_PARAM {
            return Err(ScpError::UnsupportedProtocol { scp: card.scp_id, i: card.i_param });
        }
        let keys = session_keys(&self.keys, &self.host_challenge, &card.card_challenge);
        let expected = card_cryptogram(&keys, &self.host_challenge, &card.card_challenge);
        if !bool::from(expected.ct_eq(&card.card_cryptogram)) {
            return Err(ScpError::CardCryptogramMismatch);
        }
        let cryptogram = host_cryptogram(&keys, &self.host_challenge, &card.card_challenge);
        let mut channel = Channel::new(keys, self.level);
        let header = Header { cla: CLA_GP, ins: INS_EXTERNAL_AUTHENTICATE, p1: self.level.raw(), p2: 0 };
        let external_authenticate = mac_command(&mut channel, header, cryptogram.to_vec(), None, false)?;
        let session = HostSession { channel, key_version: self.keys.version };
        Ok(HostOpening { session, external_authenticate, card })
    }
}

/// An open host session.
#[derive(Debug)]
pub struct HostSession {
    channel: Channel,
    key_version: KeyVersion,
}

impl HostSession {
    /// The session's security level.
    pub fn level(&self) -> SecurityLevel {
        self.channel.level
    }

    /// The key version the session was opened with.
    pub fn key_version(&self) -> KeyVersion {
        self.key_version
    }

    /// EXTERNAL AUTHENTICATE must answer `9000` (plain, never R-MACed).
    pub fn check_external_authenticate(&self, response: &ResponseApdu) -> Result<(), ScpError> {
        if response.sw() != StatusWord::Success || !response.data().is_empty() {
            return Err(ScpError::UnexpectedStatus(response.sw()));
        }
        Ok(())
    }

    /// Wraps a plain command: counter + 1, C-DECRYPTION of a non-empty data
    /// field (if the level has it), C-MAC. Le is kept, never MACed.
    pub fn wrap(&mut self, plain: &CommandApdu) -> Result<CommandApdu, ScpError> {
        if plain.cla() & CLA_SECURE_MESSAGING != 0 {
            return Err(ScpError::CommandAlreadySecured);
        }
        self.channel.advance_counter()?;
        let data = if self.channel.level.c_decryption() && !plain.data().is_empty() {
            self.channel.encrypt_command_data(plain.data())
        } else {
            plain.data().to_vec()
        };
        mac_command(&mut self.channel, plain.header(), data, plain.le(), plain.is_extended())
    }

    /// Checks and removes R-MAC and R-ENC from the response to the last
    /// wrapped command. An error status with no data carries no R-MAC (the
    /// card sends errors bare): it is returned as is and is *not*
    /// authenticated. A failed check ends the session.
    pub fn unwrap(self, response: &ResponseApdu) -> Result<(Self, ResponseApdu), ScpError> {
        let level = self.channel.level;
        if !level.r_mac() || (!response.sw().is_completed() && response.data().is_empty()) {
            return Ok((self, response.clone()));
        }
        let Some((body, mac)) = response.data().split_last_chunk::<S8_LEN>() else {
            return Err(ScpError::MissingResponseMac);
        };
        let expected = self.channel.response_mac(body, response.sw());
        if !bool::from(expected.ct_eq(mac)) {
            return Err(ScpError::ResponseMacMismatch);
        }
        let data = if level.r_encryption() && !body.is_empty() {
            self.channel.decrypt_response_data(body)?
        } else {
            body.to_vec()
        };
        let plain = ResponseApdu::new(data, response.sw())?;
        Ok((self, plain))
    }
}

/// A host state at rest: either side of the card's INITIALIZE UPDATE answer.
#[derive(Debug)]
pub enum HostState {
    /// INITIALIZE UPDATE sent.
    Handshake(HostHandshake),
    /// Session open.
    Open(HostSession),
}

/// `KS3H`: kessai SCP03 host state.
const STATE_MAGIC: [u8; 4] = *b"KS3H";
/// Format version of [`HostState::to_bytes`].
pub const HOST_STATE_VERSION: u8 = 1;
const KIND_HANDSHAKE: u8 = 1;
const KIND_OPEN: u8 = 2;
const PREFIX_LEN: usize = 6;
/// Stored handshake length: prefix, KVN, level, 3 keys, host challenge.
pub const HANDSHAKE_STATE_LEN: usize = PREFIX_LEN + 2 + 3 * KEY_LEN + S8_LEN;
/// Stored session length: prefix, KVN, level, 3 keys, chain, counter.
pub const OPEN_STATE_LEN: usize = PREFIX_LEN + 2 + 3 * KEY_LEN + BLOCK_LEN + 4;

impl HostState {
    /// Encodes the state (holds keys: store it encrypted).
    ///
    /// `magic "KS3H" ‖ version 01 ‖ kind ‖ KVN ‖ level ‖ …`, where kind `01`
    /// (handshake) goes on with ENC ‖ MAC ‖ DEK ‖ host challenge, and kind
    /// `02` (open) with S-ENC ‖ S-MAC ‖ S-RMAC ‖ MAC chain ‖ counter (u32 BE).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(OPEN_STATE_LEN));
        out.extend_from_slice(&STATE_MAGIC);
        out.push(HOST_STATE_VERSION);
        match self {
            Self::Handshake(h) => {
                out.extend_from_slice(&[KIND_HANDSHAKE, h.keys.version.get(), h.level.raw()]);
                for key in [&h.keys.enc, &h.keys.mac, &h.keys.dek] {
                    out.extend_from_slice(key.expose());
                }
                out.extend_from_slice(&h.host_challenge);
            }
            Self::Open(s) => {
                let c = &s.channel;
                out.extend_from_slice(&[KIND_OPEN, s.key_version.get(), c.level.raw()]);
                for key in [&c.keys.s_enc, &c.keys.s_mac, &c.keys.s_rmac] {
                    out.extend_from_slice(key.expose());
                }
                out.extend_from_slice(&c.mac_chain);
                out.extend_from_slice(&c.counter.to_be_bytes());
            }
        }
        out
    }

    /// Decodes a state written by [`HostState::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ScpError> {
        if bytes.len() < PREFIX_LEN {
            return Err(ScpError::StateLength { expected: PREFIX_LEN, actual: bytes.len() });
        }
        if bytes[..4] != STATE_MAGIC {
            return Err(ScpError::StateBadMagic);
        }
        if bytes[4] != HOST_STATE_VERSION {
            return Err(ScpError::StateUnsupportedVersion(bytes[4]));
        }
        let expected = match bytes[5] {
            KIND_HANDSHAKE => HANDSHAKE_STATE_LEN,
            KIND_OPEN => OPEN_STATE_LEN,
            kind => return Err(ScpError::StateUnknownKind(kind)),
        };
        if bytes.len() != expected {
            return Err(ScpError::StateLength { expected, actual: bytes.len() });
        }
        let version = KeyVersion::new(bytes[6]).ok_or(ScpError::StateInvalidField("key version"))?;
        let level = SecurityLevel::new(bytes[7]).ok_or(ScpError::StateInvalidField("level"))?;
        let mut fields = StateReader { bytes: &bytes[8..] };
        let [k1, k2, k3] = [fields.key(), fields.key(), fields.key()];
        if bytes[5] == KIND_HANDSHAKE {
            let keys = StaticKeys { version, enc: k1, mac: k2, dek: k3 };
            let host_challenge = fields.array::<S8_LEN>();
            return Ok(Self::Handshake(HostHandshake { keys, level, host_challenge }));
        }
        let keys = SessionKeys { s_enc: k1, s_mac: k2, s_rmac: k3 };
        let mut channel = Channel::new(keys, level);
        channel.mac_chain = fields.array::<BLOCK_LEN>();
        channel.counter = u32::from_be_bytes(fields.array::<4>());
        Ok(Self::Open(HostSession { channel, key_version: version }))
    }
}

/// Reads fixed-size fields from a slice whose total length was checked.
struct StateReader<'a> {
    bytes: &'a [u8],
}

impl StateReader<'_> {
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.bytes.len());
        out[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        out
    }

    fn key(&mut self) -> Aes128Key {
        let mut raw = self.array::<KEY_LEN>();
        let key = Aes128Key::new(raw);
        raw.zeroize();
        key
    }
}

#[cfg(test)]
impl HostSession {
    /// Wraps like yubikit does: every data field encrypted, even an empty one.
    pub(crate) fn wrap_always_encrypting(&mut self, plain: &CommandApdu) -> CommandApdu {
        self.channel.advance_counter().unwrap();
        let data = self.channel.encrypt_command_data(plain.data());
        mac_command(&mut self.channel, plain.header(), data, plain.le(), false).unwrap()
    }
}
