//! The SCP03 handshake values (GlobalPlatform Card Specification v2.3
//! Amendment D §6.2): derivation constants, session keys, cryptograms, the
//! pseudo-random card challenge, and the INITIALIZE UPDATE response layout.

use crate::aid::Aid;
use crate::crypto::{Block, kdf_fill};
use crate::error::ScpError;
use crate::keys::{Aes128Key, SessionKeys, StaticKeys};
use crate::limits::{KEY_DIVERSIFICATION_DATA_LEN, KEY_LEN, S8_LEN, SEQUENCE_COUNTER_LEN, SEQUENCE_COUNTER_MAX};

/// GlobalPlatform proprietary class byte.
pub const CLA_GP: u8 = 0x80;
/// Class bit that marks secure messaging.
pub const CLA_SECURE_MESSAGING: u8 = 0x04;
/// INITIALIZE UPDATE.
pub const INS_INITIALIZE_UPDATE: u8 = 0x50;
/// EXTERNAL AUTHENTICATE.
pub const INS_EXTERNAL_AUTHENTICATE: u8 = 0x82;
/// SCP identifier in the key information.
pub const SCP_ID: u8 = 0x03;
/// The i parameter: pseudo-random card challenge, R-MAC, R-ENC supported.
pub const I_PARAM: u8 = 0x70;

/// An 8-byte challenge or cryptogram (S8 mode).
pub type S8 = [u8; S8_LEN];

/// Derivation constants (Amendment D table 6-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Derivation {
    CardCryptogram = 0x00,
    HostCryptogram = 0x01,
    CardChallenge = 0x02,
    SEnc = 0x04,
    SMac = 0x06,
    SRmac = 0x07,
}

/// The SCP03 KDF: SP 800-108 counter mode, AES-CMAC, with the label
/// `00 × 11 ‖ constant ‖ 00 ‖ L` before the counter and the context after.
/// `out` is at most one block (L ≤ 128), so the counter is always `01`.
fn derive(key: &Aes128Key, constant: Derivation, context: &[&[u8]], out: &mut [u8]) {
    debug_assert!(out.len() <= KEY_LEN);
    let mut label = [0u8; 15];
    label[11] = constant as u8;
    // out.len() ≤ 16, so L in bits fits in u16.
    let l_bits = u16::try_from(out.len() * 8).unwrap_or(u16::MAX);
    label[13..].copy_from_slice(&l_bits.to_be_bytes());
    kdf_fill(key, &label, context, out);
}

fn derive_key(key: &Aes128Key, constant: Derivation, context: &[&[u8]]) -> Aes128Key {
    let mut out = [0u8; KEY_LEN];
    derive(key, constant, context, &mut out);
    let key = Aes128Key::new(out);
    zeroize::Zeroize::zeroize(&mut out);
    key
}

fn derive_s8(key: &Aes128Key, constant: Derivation, context: &[&[u8]]) -> S8 {
    let mut out = [0u8; S8_LEN];
    derive(key, constant, context, &mut out);
    out
}

/// Session keys from the static keys and the two challenges.
pub fn session_keys(keys: &StaticKeys, host_challenge: &S8, card_challenge: &S8) -> SessionKeys {
    let ctx: [&[u8]; 2] = [host_challenge, card_challenge];
    SessionKeys {
        s_enc: derive_key(&keys.enc, Derivation::SEnc, &ctx),
        s_mac: derive_key(&keys.mac, Derivation::SMac, &ctx),
        s_rmac: derive_key(&keys.mac, Derivation::SRmac, &ctx),
    }
}

/// The card cryptogram (proves the card holds Key-MAC).
pub fn card_cryptogram(keys: &SessionKeys, host_challenge: &S8, card_challenge: &S8) -> S8 {
    derive_s8(&keys.s_mac, Derivation::CardCryptogram, &[host_challenge, card_challenge])
}

/// The host cryptogram (proves the host holds Key-MAC).
pub fn host_cryptogram(keys: &SessionKeys, host_challenge: &S8, card_challenge: &S8) -> S8 {
    derive_s8(&keys.s_mac, Derivation::HostCryptogram, &[host_challenge, card_challenge])
}

/// The pseudo-random card challenge (i = 70): KDF(Key-ENC, 02, 64 bits,
/// sequence counter ‖ AID).
pub fn pseudo_random_card_challenge(enc: &Aes128Key, sequence: SequenceCounter, aid: &Aid) -> S8 {
    derive_s8(enc, Derivation::CardChallenge, &[&sequence.to_bytes(), aid.as_bytes()])
}

/// The card's 3-byte SCP03 sequence counter. It must grow with every
/// INITIALIZE UPDATE: the card challenge is derived from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SequenceCounter(u32);

impl SequenceCounter {
    /// The counter of a card that never ran INITIALIZE UPDATE.
    pub const ZERO: Self = Self(0);

    /// Validates a counter value (at most `FFFFFF`).
    pub fn new(value: u32) -> Option<Self> {
        (value <= SEQUENCE_COUNTER_MAX).then_some(Self(value))
    }

    /// The value.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The next value, or an error when the counter is exhausted.
    pub fn next(self) -> Result<Self, ScpError> {
        Self::new(self.0 + 1).ok_or(ScpError::SequenceCounterExhausted)
    }

    /// The 3 bytes sent in the INITIALIZE UPDATE response.
    pub fn to_bytes(self) -> [u8; SEQUENCE_COUNTER_LEN] {
        let [_, a, b, c] = self.0.to_be_bytes();
        [a, b, c]
    }

    fn from_bytes(bytes: [u8; SEQUENCE_COUNTER_LEN]) -> Self {
        Self(u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]))
    }
}

/// The INITIALIZE UPDATE response data field (i = 70: with the counter).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitializeUpdateResponse {
    /// Key diversification data (kessai: the card id and `00 00`).
    pub key_diversification_data: [u8; KEY_DIVERSIFICATION_DATA_LEN],
    /// KVN of the key set the card used.
    pub key_version: u8,
    /// SCP identifier (`03`).
    pub scp_id: u8,
    /// i parameter (`70`).
    pub i_param: u8,
    /// Card challenge.
    pub card_challenge: S8,
    /// Card cryptogram.
    pub card_cryptogram: S8,
    /// Sequence counter.
    pub sequence_counter: SequenceCounter,
}

/// Length of the INITIALIZE UPDATE response data with a sequence counter.
pub const INITIALIZE_UPDATE_RESPONSE_LEN: usize = KEY_DIVERSIFICATION_DATA_LEN + 3 + 2 * S8_LEN + SEQUENCE_COUNTER_LEN;

impl InitializeUpdateResponse {
    /// Encodes the data field.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(INITIALIZE_UPDATE_RESPONSE_LEN);
        out.extend_from_slice(&self.key_diversification_data);
        out.extend_from_slice(&[self.key_version, self.scp_id, self.i_param]);
        out.extend_from_slice(&self.card_challenge);
        out.extend_from_slice(&self.card_cryptogram);
        out.extend_from_slice(&self.sequence_counter.to_bytes());
        out
    }

    /// Parses the data field; it must be exactly 32 bytes.
    pub fn parse(data: &[u8]) -> Result<Self, ScpError> {
        let Ok(d) = <&[u8; INITIALIZE_UPDATE_RESPONSE_LEN]>::try_from(data) else {
            return Err(ScpError::WrongDataLength { expected: INITIALIZE_UPDATE_RESPONSE_LEN, actual: data.len() });
        };
        let (kdd, rest) = d.split_at(KEY_DIVERSIFICATION_DATA_LEN);
        let take8 = |at: usize| {
            let mut out = [0u8; S8_LEN];
            out.copy_from_slice(&rest[at..at + S8_LEN]);
            out
        };
        let mut key_diversification_data = [0u8; KEY_DIVERSIFICATION_DATA_LEN];
        key_diversification_data.copy_from_slice(kdd);
        let mut seq = [0u8; SEQUENCE_COUNTER_LEN];
        seq.copy_from_slice(&rest[3 + 2 * S8_LEN..]);
        Ok(Self {
            key_diversification_data,
            key_version: rest[0],
            scp_id: rest[1],
            i_param: rest[2],
            card_challenge: take8(3),
            card_cryptogram: take8(3 + S8_LEN),
            sequence_counter: SequenceCounter::from_bytes(seq),
        })
    }
}

/// The full C-MAC output length, the chaining value.
pub(crate) type MacChain = Block;
