//! Application identifiers (ISO 7816-5).

use crate::limits::{AID_MAX_LEN, AID_MIN_LEN};

/// An AID of 5 to 16 bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Aid {
    bytes: [u8; AID_MAX_LEN],
    len: u8,
}

impl Aid {
    /// Validates an AID.
    pub fn new(bytes: &[u8]) -> Option<Self> {
        if !(AID_MIN_LEN..=AID_MAX_LEN).contains(&bytes.len()) {
            return None;
        }
        let mut buf = [0u8; AID_MAX_LEN];
        buf[..bytes.len()].copy_from_slice(bytes);
        // The range check above bounds the length by 16.
        let len = u8::try_from(bytes.len()).ok()?;
        Some(Self { bytes: buf, len })
    }

    /// The AID bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl core::fmt::Debug for Aid {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Aid(")?;
        for b in self.as_bytes() {
            write!(f, "{b:02X}")?;
        }
        f.write_str(")")
    }
}
