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

use crate::crypto::kdf_fill;
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

/// One diversified key.
pub fn diversify_key(master: &Aes128Key, constant: u8, card_id: &[u8; CARD_ID_LEN], version: KeyVersion) -> Aes128Key {
    let mut label = [0u8; 15];
    label[11] = constant;
    label[13..].copy_from_slice(&128u16.to_be_bytes());
    let mut out = [0u8; KEY_LEN];
    kdf_fill(master, &label, &[card_id, &[version.get()]], &mut out);
    let key = Aes128Key::new(out);
    out.zeroize();
    key
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
