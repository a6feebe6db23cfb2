//! ISO 7816-4 status words (SW1 SW2).

/// A status word. Known values have their own variant; every other value is
/// kept as [`StatusWord::Other`], so conversion from and to `u16` is lossless.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusWord {
    /// `9000` normal processing.
    Success,
    /// `6283` selected file (application) deactivated — the card is blocked.
    SelectedFileDeactivated,
    /// `6300` authentication failed (GlobalPlatform: host cryptogram wrong).
    AuthenticationFailed,
    /// `6581` memory failure (a write to the card's memory failed).
    MemoryFailure,
    /// `6700` wrong length (Lc or Le, or the APDU itself).
    WrongLength,
    /// `6882` secure messaging not supported.
    SecureMessagingNotSupported,
    /// `6982` security status not satisfied.
    SecurityStatusNotSatisfied,
    /// `6985` conditions of use not satisfied.
    ConditionsNotSatisfied,
    /// `6988` incorrect secure messaging data objects.
    IncorrectSecureMessagingData,
    /// `6A80` incorrect parameters in the command data field.
    WrongData,
    /// `6A81` function not supported.
    FunctionNotSupported,
    /// `6A82` file or application not found.
    FileNotFound,
    /// `6A84` not enough memory space in the file.
    NotEnoughMemory,
    /// `6A86` incorrect parameters P1-P2.
    IncorrectP1P2,
    /// `6A88` referenced data (e.g. a key version) not found.
    ReferencedDataNotFound,
    /// `6A89` file (here: a record with this id) already exists.
    AlreadyExists,
    /// `6D00` instruction code not supported.
    InsNotSupported,
    /// `6E00` class not supported.
    ClaNotSupported,
    /// `6F00` no precise diagnosis.
    NoPreciseDiagnosis,
    /// Any other value.
    Other(u16),
}

const TABLE: [(StatusWord, u16); 19] = [
    (StatusWord::Success, 0x9000),
    (StatusWord::SelectedFileDeactivated, 0x6283),
    (StatusWord::AuthenticationFailed, 0x6300),
    (StatusWord::MemoryFailure, 0x6581),
    (StatusWord::WrongLength, 0x6700),
    (StatusWord::SecureMessagingNotSupported, 0x6882),
    (StatusWord::SecurityStatusNotSatisfied, 0x6982),
    (StatusWord::ConditionsNotSatisfied, 0x6985),
    (StatusWord::IncorrectSecureMessagingData, 0x6988),
    (StatusWord::WrongData, 0x6A80),
    (StatusWord::FunctionNotSupported, 0x6A81),
    (StatusWord::FileNotFound, 0x6A82),
    (StatusWord::NotEnoughMemory, 0x6A84),
    (StatusWord::IncorrectP1P2, 0x6A86),
    (StatusWord::ReferencedDataNotFound, 0x6A88),
    (StatusWord::AlreadyExists, 0x6A89),
    (StatusWord::InsNotSupported, 0x6D00),
    (StatusWord::ClaNotSupported, 0x6E00),
    (StatusWord::NoPreciseDiagnosis, 0x6F00),
];

impl StatusWord {
    /// The raw 16-bit value.
    pub fn raw(self) -> u16 {
        if let Self::Other(raw) = self {
            return raw;
        }
        TABLE.iter().find(|(sw, _)| *sw == self).map_or(0x6F00, |(_, raw)| *raw)
    }

    /// SW1 and SW2 as two bytes.
    pub fn to_bytes(self) -> [u8; 2] {
        self.raw().to_be_bytes()
    }

    /// Builds a status word from SW1 and SW2.
    pub fn from_bytes(sw1: u8, sw2: u8) -> Self {
        Self::from(u16::from_be_bytes([sw1, sw2]))
    }

    /// `9000`, or a warning (`62xx`, `63xx`): processing completed, so a
    /// secure channel protects the response (R-MAC, R-ENC).
    pub fn is_completed(self) -> bool {
        let sw1 = self.to_bytes()[0];
        self == Self::Success || sw1 == 0x62 || sw1 == 0x63
    }
}

impl From<u16> for StatusWord {
    fn from(raw: u16) -> Self {
        TABLE.iter().find(|(_, r)| *r == raw).map_or(Self::Other(raw), |(sw, _)| *sw)
    }
}

impl From<StatusWord> for u16 {
    fn from(sw: StatusWord) -> u16 {
        sw.raw()
    }
}

impl core::fmt::Display for StatusWord {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:04X}", self.raw())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_word_round_trips() {
        for (sw, raw) in TABLE {
            assert_eq!(StatusWord::from(raw), sw);
            assert_eq!(sw.raw(), raw);
        }
    }

    #[test]
    fn unknown_words_are_kept() {
        let sw = StatusWord::from(0x6A87);
        assert_eq!(sw, StatusWord::Other(0x6A87));
        assert_eq!(sw.raw(), 0x6A87);
        assert_eq!(StatusWord::Other(0x9000).raw(), 0x9000);
    }

    #[test]
    fn completed_means_success_or_warning() {
        assert!(StatusWord::Success.is_completed());
        assert!(StatusWord::SelectedFileDeactivated.is_completed());
        assert!(!StatusWord::WrongLength.is_completed());
    }
}
