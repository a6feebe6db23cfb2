//! Per-card static keys from the issuer's master keys.
//!
//! # Method
//!
//! Each static key is one block of the NIST SP 800-108 KDF in counter mode
//! with AES-CMAC as PRF (the same KDF SCP03 uses for its session keys), keyed
//! with the matching issuer master key. The PRF input is
//!
//! ```text
//! 00 × 11 ‖ constant ‖ 00 ‖ 00 80 ‖ 01 ‖ card id (8 bytes) ‖ KVN (1 byte)
//! └──────── label ─────────┘  L=128  i=1  └────────── context ─────────┘
//! ```
//!
//! with the constants `41` (Key-ENC, from master ENC), `42` (Key-MAC, from
//! master MAC) and `43` (Key-DEK, from master DEK). GlobalPlatform's SCP03
//! constants are `00`–`07`, so a diversified key can never equal a value the
//! secure channel derives from the same key. Because the card id enters the
//! PRF, one card's keys say nothing about another card's, and the master keys
//! stay with the issuer (only the center derives card keys).
//!
//! Known-answer values, computed independently with Python `cryptography`,
//! are in `tests/vectors/diversification.json`.

use zeroize::Zeroize;

use crate::crypto::aes_cmac;
use crate::keys::{Aes128Key, KeyVersion, StaticKeys};
use crate::limits::KEY_LEN;

/// Length of a kessai card id.
pub const CARD_ID_LEN: usize = 8;

/// Derivation constant for Key-ENC.
pub const DIVERSIFY_ENC: u8 = 0x41;
/// Derivation constant for Key-MAC.
pub const DIVERSIFY_MAC: u8 = 0x42;
/// Derivation constant for Key-DEK.
pub const DIVERSIFY_DEK: u8 = 0x43;

/// The issuer's master keys for one key version.
#[derive(Clone, Debug)]
pub struct MasterKeys {
    /// Master of Key-ENC.
    pub enc: Aes128Key,
    /// Master of Key-MAC.
    pub mac: Aes128Key,
    /// Master of Key-DEK.
    pub dek: Aes128Key,
}

/// Length of the PRF input of one diversified key.
pub const DIVERSIFICATION_INPUT_LEN: usize = 15 + 1 + CARD_ID_LEN + 1;

/// The PRF input of one diversified key (the block above): the message
/// AES-CMAC under the master key turns into the card's key. A security
/// server that keeps the master in a token (PKCS#11 `CKM_AES_CMAC`)
/// signs exactly these bytes.
pub fn diversification_input(
    constant: u8,
    card_id: &[u8; CARD_ID_LEN],
    version: KeyVersion,
) -> [u8; DIVERSIFICATION_INPUT_LEN] {
    let mut input = [0u8; DIVERSIFICATION_INPUT_LEN];
    input[11] = constant;
    input[13..15].copy_from_slice(&128u16.to_be_bytes());
    input[15] = 1;
    input[16..24].copy_from_slice(card_id);
    input[24] = version.get();
    input
}

/// One diversified key.
pub fn diversify_key(master: &Aes128Key, constant: u8, card_id: &[u8; CARD_ID_LEN], version: KeyVersion) -> Aes128Key {
    let mut input = diversification_input(constant, card_id, version);
    let mut out: [u8; KEY_LEN] = aes_cmac(master, &[&input]);
    input.zeroize();
    let key = Aes128Key::new(out);
    out.zeroize();
    key
}

/// A key's check value: AES-CMAC of one zero block under it (as ANSI
/// X9.24-1 computes AES check values, here whole). It identifies a key
/// without revealing it, and a token computes it with the key inside.
pub fn check_value(key: &Aes128Key) -> [u8; KEY_LEN] {
    aes_cmac(key, &[&[0u8; KEY_LEN]])
}

/// The three static keys of the card `card_id` for key version `version`.
pub fn diversify(master: &MasterKeys, card_id: &[u8; CARD_ID_LEN], version: KeyVersion) -> StaticKeys {
    StaticKeys {
        version,
        enc: diversify_key(&master.enc, DIVERSIFY_ENC, card_id, version),
        mac: diversify_key(&master.mac, DIVERSIFY_MAC, card_id, version),
        dek: diversify_key(&master.dek, DIVERSIFY_DEK, card_id, version),
    }
}
