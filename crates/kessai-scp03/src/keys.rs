//! Keys: AES-128 key material, static key sets with their version, session keys.

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::limits::KEY_LEN;

/// An AES-128 key. Zeroized on drop; `Debug` prints `***`.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct Aes128Key([u8; KEY_LEN]);

impl Aes128Key {
    /// Wraps raw key bytes.
    pub fn new(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Reads a key from a slice of exactly 16 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; KEY_LEN]>::try_from(bytes).ok().map(Self)
    }

    /// The raw key bytes. Callers must not log or keep copies.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl core::fmt::Debug for Aes128Key {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("***")
    }
}

/// A key version number (KVN), `0x01..=0x7F` as GlobalPlatform allows for
/// key sets. `0x00` in INITIALIZE UPDATE means "any" and is no KVN itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyVersion(u8);

impl KeyVersion {
    /// Highest KVN.
    pub const MAX: u8 = 0x7F;

    /// Validates a KVN.
    pub fn new(kvn: u8) -> Option<Self> {
        (1..=Self::MAX).contains(&kvn).then_some(Self(kvn))
    }

    /// The raw byte.
    pub fn get(self) -> u8 {
        self.0
    }
}

/// The three SCP03 static keys of one key set, with their version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticKeys {
    /// Key version number.
    pub version: KeyVersion,
    /// Key-ENC: source of S-ENC and of the pseudo-random card challenge.
    pub enc: Aes128Key,
    /// Key-MAC: source of S-MAC and S-RMAC.
    pub mac: Aes128Key,
    /// Key-DEK: for key loading (not used by the secure channel itself).
    pub dek: Aes128Key,
}

/// The session keys of one secure channel session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionKeys {
    /// S-ENC: C-DECRYPTION and R-ENCRYPTION.
    pub s_enc: Aes128Key,
    /// S-MAC: C-MAC and both cryptograms.
    pub s_mac: Aes128Key,
    /// S-RMAC: R-MAC.
    pub s_rmac: Aes128Key,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_print() {
        let key = Aes128Key::new([0x42; 16]);
        assert_eq!(format!("{key:?}"), "***");
        let keys = SessionKeys { s_enc: key.clone(), s_mac: key.clone(), s_rmac: key };
        assert!(!format!("{keys:?}").contains("42"));
    }

    #[test]
    fn key_versions() {
        assert!(KeyVersion::new(0).is_none());
        assert!(KeyVersion::new(0x80).is_none());
        assert_eq!(KeyVersion::new(0x30).map(KeyVersion::get), Some(0x30));
    }
}
