//! SCP03 security levels (the P1 of EXTERNAL AUTHENTICATE).

/// A security level. Only the combinations GlobalPlatform allows for SCP03
/// exist: C-MAC is always on, R-ENCRYPTION needs C-DECRYPTION and R-MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SecurityLevel(u8);

const C_MAC: u8 = 0x01;
const C_DECRYPTION: u8 = 0x02;
const R_MAC: u8 = 0x10;
const R_ENCRYPTION: u8 = 0x20;

impl SecurityLevel {
    /// `01`: C-MAC.
    pub const C_MAC: Self = Self(C_MAC);
    /// `03`: C-MAC and C-DECRYPTION.
    pub const C_MAC_C_DEC: Self = Self(C_MAC | C_DECRYPTION);
    /// `11`: C-MAC and R-MAC.
    pub const C_MAC_R_MAC: Self = Self(C_MAC | R_MAC);
    /// `13`: C-MAC, C-DECRYPTION and R-MAC.
    pub const C_MAC_C_DEC_R_MAC: Self = Self(C_MAC | C_DECRYPTION | R_MAC);
    /// `33`: C-MAC, C-DECRYPTION, R-MAC and R-ENCRYPTION (the kessai level).
    pub const FULL: Self = Self(C_MAC | C_DECRYPTION | R_MAC | R_ENCRYPTION);

    const ALL: [Self; 5] = [Self::C_MAC, Self::C_MAC_C_DEC, Self::C_MAC_R_MAC, Self::C_MAC_C_DEC_R_MAC, Self::FULL];

    /// Validates a raw level.
    pub fn new(raw: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.0 == raw)
    }

    /// The raw byte.
    pub fn raw(self) -> u8 {
        self.0
    }

    /// Commands are encrypted.
    pub fn c_decryption(self) -> bool {
        self.0 & C_DECRYPTION != 0
    }

    /// Responses carry a MAC.
    pub fn r_mac(self) -> bool {
        self.0 & R_MAC != 0
    }

    /// Responses are encrypted.
    pub fn r_encryption(self) -> bool {
        self.0 & R_ENCRYPTION != 0
    }

    /// Whether this level gives at least every protection of `required`.
    pub fn covers(self, required: Self) -> bool {
        self.0 & required.0 == required.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_valid_levels_exist() {
        let valid: Vec<u8> = (0..=255).filter(|&b| SecurityLevel::new(b).is_some()).collect();
        assert_eq!(valid, vec![0x01, 0x03, 0x11, 0x13, 0x33]);
        assert!(SecurityLevel::FULL.covers(SecurityLevel::C_MAC_R_MAC));
        assert!(!SecurityLevel::C_MAC_R_MAC.covers(SecurityLevel::C_MAC_C_DEC));
    }
}
