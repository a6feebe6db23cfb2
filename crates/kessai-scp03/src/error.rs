//! Everything that can go wrong in the secure channel, one variant per way a
//! peer (or a stored state) can misbehave.

use crate::apdu::ApduError;
use crate::status::StatusWord;

/// A secure channel error.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScpError {
    /// The APDU itself is malformed or cannot be built.
    #[error("APDU: {0}")]
    Apdu(#[from] ApduError),
    /// A command other than the one this step expects.
    #[error("expected INS {expected:02X}, got {actual:02X}")]
    UnexpectedInstruction {
        /// INS this step handles.
        expected: u8,
        /// INS received.
        actual: u8,
    },
    /// A class byte this step does not accept.
    #[error("CLA {0:02X} not accepted here")]
    UnexpectedClass(u8),
    /// P1/P2 not as the command requires.
    #[error("incorrect P1 {p1:02X} P2 {p2:02X}")]
    IncorrectP1P2 {
        /// P1.
        p1: u8,
        /// P2.
        p2: u8,
    },
    /// A data field of the wrong length.
    #[error("data field of {actual} bytes, expected {expected}")]
    WrongDataLength {
        /// Length required.
        expected: usize,
        /// Length received.
        actual: usize,
    },
    /// INITIALIZE UPDATE asks for a key version the card does not hold.
    #[error("key version {requested:02X} not found")]
    KeyVersionNotFound {
        /// KVN requested.
        requested: u8,
    },
    /// The card answered with a key version other than the host's.
    #[error("card uses key version {actual:02X}, host has {expected:02X}")]
    KeyVersionMismatch {
        /// Host's KVN.
        expected: u8,
        /// Card's KVN.
        actual: u8,
    },
    /// The card speaks another protocol than SCP03 with i = 70.
    #[error("card offers SCP {scp:02X} i={i:02X}, not SCP03 i=70")]
    UnsupportedProtocol {
        /// SCP identifier.
        scp: u8,
        /// i parameter.
        i: u8,
    },
    /// EXTERNAL AUTHENTICATE asks for a level that does not exist.
    #[error("security level {0:02X} is not valid")]
    InvalidSecurityLevel(u8),
    /// A handshake response with an error status word.
    #[error("card answered {0}")]
    UnexpectedStatus(StatusWord),
    /// The card's cryptogram is wrong: wrong keys, or not the card.
    #[error("card cryptogram does not verify")]
    CardCryptogramMismatch,
    /// The host's cryptogram is wrong: wrong keys, or not the host.
    #[error("host cryptogram does not verify")]
    HostCryptogramMismatch,
    /// A command in a session without the secure messaging class bit.
    #[error("command without secure messaging in a secure session")]
    CommandNotSecured,
    /// A plain command handed to `wrap` already has the secure messaging bit.
    #[error("command already carries the secure messaging class bit")]
    CommandAlreadySecured,
    /// A secured command too short to hold its C-MAC.
    #[error("command has no C-MAC")]
    MissingCommandMac,
    /// C-MAC does not verify (forged, replayed or out of order).
    #[error("C-MAC does not verify")]
    CommandMacMismatch,
    /// A completed response too short to hold its R-MAC.
    #[error("response has no R-MAC")]
    MissingResponseMac,
    /// R-MAC does not verify (forged, replayed or out of order).
    #[error("R-MAC does not verify")]
    ResponseMacMismatch,
    /// Encrypted data whose length is not a multiple of 16.
    #[error("encrypted data of {0} bytes is not whole blocks")]
    PartialBlock(usize),
    /// Decrypted data without valid `80 00..` padding.
    #[error("bad padding after decryption")]
    BadPadding,
    /// The encryption counter would overflow.
    #[error("encryption counter exhausted")]
    CounterExhausted,
    /// The 3-byte sequence counter is at its maximum.
    #[error("sequence counter exhausted")]
    SequenceCounterExhausted,
    /// A stored host state that is not ours.
    #[error("stored host state has a bad magic")]
    StateBadMagic,
    /// A stored host state from a format version we do not know.
    #[error("stored host state version {0} is not supported")]
    StateUnsupportedVersion(u8),
    /// A stored host state of an unknown kind.
    #[error("stored host state kind {0} is unknown")]
    StateUnknownKind(u8),
    /// A stored host state of the wrong length.
    #[error("stored host state of {actual} bytes, expected {expected}")]
    StateLength {
        /// Length the kind requires.
        expected: usize,
        /// Length found.
        actual: usize,
    },
    /// A stored host state with a field out of range.
    #[error("stored host state has an invalid {0}")]
    StateInvalidField(&'static str),
}
