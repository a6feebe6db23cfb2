//! ISO 7816-4 command and response APDUs, short and extended length.
//!
//! Parsing follows ISO 7816-4 §5.1: the four cases are told apart by the
//! total length and the byte after the header; anything that does not add up
//! exactly is refused with the error that names what is wrong.

use crate::limits::{EXTENDED_MAX_DATA_LEN, EXTENDED_MAX_LE, MAX_RESPONSE_DATA_LEN, SHORT_MAX_DATA_LEN, SHORT_MAX_LE};
use crate::status::StatusWord;

/// Length of the command header CLA INS P1 P2.
pub const HEADER_LEN: usize = 4;

/// Why bytes are not a valid APDU, or why an APDU cannot be built.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApduError {
    /// Fewer than 4 bytes: no complete header.
    #[error("command APDU of {len} bytes has no complete header")]
    MissingHeader {
        /// Bytes received.
        len: usize,
    },
    /// An extended length field starts but is cut short.
    #[error("extended length field is truncated")]
    TruncatedExtendedLength,
    /// An extended Lc of zero, which ISO 7816-4 does not allow.
    #[error("extended Lc is zero")]
    ZeroExtendedLc,
    /// The data field is shorter than Lc says.
    #[error("data field shorter than Lc: Lc {lc}, {available} bytes left")]
    MissingData {
        /// Lc.
        lc: usize,
        /// Bytes after the length field.
        available: usize,
    },
    /// Bytes after the data field that are no valid Le.
    #[error("{extra} unexpected bytes after the data field")]
    TrailingBytes {
        /// How many bytes are extra.
        extra: usize,
    },
    /// A data field longer than an APDU can carry.
    #[error("data field of {len} bytes is too long")]
    DataTooLong {
        /// Requested length.
        len: usize,
    },
    /// An Ne of zero or above 65536.
    #[error("Le of {le} is out of range")]
    LeOutOfRange {
        /// Requested Ne.
        le: usize,
    },
    /// A response shorter than SW1 SW2.
    #[error("response APDU of {len} bytes has no status word")]
    MissingStatusWord {
        /// Bytes received.
        len: usize,
    },
    /// A response data field longer than we accept.
    #[error("response data field of {len} bytes is too long")]
    ResponseTooLong {
        /// Data length.
        len: usize,
    },
}

/// The command header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// Class byte.
    pub cla: u8,
    /// Instruction.
    pub ins: u8,
    /// Parameter 1.
    pub p1: u8,
    /// Parameter 2.
    pub p2: u8,
}

/// A command APDU. It exists only if it can be encoded: data at most 65535
/// bytes, Ne (if any) in 1..=65536.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandApdu {
    header: Header,
    data: Vec<u8>,
    le: Option<usize>,
    extended: bool,
}

impl CommandApdu {
    /// A command; it uses the short form when data and Ne fit, else extended.
    pub fn new(header: Header, data: Vec<u8>, le: Option<usize>) -> Result<Self, ApduError> {
        Self::with_form(header, data, le, false)
    }

    /// A command in extended form when `extended` is set (or when needed).
    pub fn with_form(header: Header, data: Vec<u8>, le: Option<usize>, extended: bool) -> Result<Self, ApduError> {
        if data.len() > EXTENDED_MAX_DATA_LEN {
            return Err(ApduError::DataTooLong { len: data.len() });
        }
        if let Some(le) = le
            && (le == 0 || le > EXTENDED_MAX_LE)
        {
            return Err(ApduError::LeOutOfRange { le });
        }
        let needs_extended = data.len() > SHORT_MAX_DATA_LEN || le.is_some_and(|le| le > SHORT_MAX_LE);
        Ok(Self { header, data, le, extended: extended || needs_extended })
    }

    /// A case 1 command: header only. Always valid.
    pub fn header_only(header: Header) -> Self {
        Self { header, data: Vec::new(), le: None, extended: false }
    }

    /// A command whose sizes the caller knows to be valid (constant-size
    /// protocol messages); checked in debug builds.
    pub(crate) fn fixed(header: Header, data: Vec<u8>, le: Option<usize>) -> Self {
        debug_assert!(data.len() <= SHORT_MAX_DATA_LEN);
        debug_assert!(le.is_none_or(|le| (1..=SHORT_MAX_LE).contains(&le)));
        Self { header, data, le, extended: false }
    }

    /// The header.
    pub fn header(&self) -> Header {
        self.header
    }
    /// Class byte.
    pub fn cla(&self) -> u8 {
        self.header.cla
    }
    /// Instruction byte.
    pub fn ins(&self) -> u8 {
        self.header.ins
    }
    /// P1.
    pub fn p1(&self) -> u8 {
        self.header.p1
    }
    /// P2.
    pub fn p2(&self) -> u8 {
        self.header.p2
    }
    /// The data field (empty for cases 1 and 2).
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    /// Ne, the maximum response length expected, if Le is present.
    pub fn le(&self) -> Option<usize> {
        self.le
    }
    /// Whether the command uses extended length fields.
    pub fn is_extended(&self) -> bool {
        self.extended
    }

    /// Parses a complete command APDU; every byte must be accounted for.
    pub fn parse(bytes: &[u8]) -> Result<Self, ApduError> {
        let Some((head, body)) = bytes.split_first_chunk::<HEADER_LEN>() else {
            return Err(ApduError::MissingHeader { len: bytes.len() });
        };
        let header = Header { cla: head[0], ins: head[1], p1: head[2], p2: head[3] };
        let (data, le, extended) = match body {
            [] => (&[][..], None, false),
            [le] => (&[][..], Some(short_ne(*le)), false),
            // Lc = 0 does not exist in short form: a 00 here opens an
            // extended length field.
            [0, rest @ ..] => parse_extended_body(rest)?,
            [lc, rest @ ..] => parse_short_body(usize::from(*lc), rest)?,
        };
        Ok(Self { header, data: data.to_vec(), le, extended })
    }

    /// Encodes the command, with or without Le.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.encode_without_le();
        self.push_le(&mut out);
        out
    }

    /// Header, Lc and data field: what an SCP03 C-MAC covers.
    pub fn encode_without_le(&self) -> Vec<u8> {
        let h = self.header;
        let mut out = Vec::with_capacity(HEADER_LEN + 3 + self.data.len() + 3);
        out.extend_from_slice(&[h.cla, h.ins, h.p1, h.p2]);
        if !self.data.is_empty() {
            if self.extended {
                out.push(0);
                out.extend_from_slice(&len16(self.data.len()));
            } else {
                // `new` guarantees a short-form data field fits in one byte.
                out.push(u8::try_from(self.data.len()).unwrap_or(0));
            }
            out.extend_from_slice(&self.data);
        }
        out
    }

    fn push_le(&self, out: &mut Vec<u8>) {
        let Some(le) = self.le else { return };
        if self.extended {
            if self.data.is_empty() {
                out.push(0);
            }
            out.extend_from_slice(&len16(le));
        } else {
            out.push(u8::try_from(le).unwrap_or(0)); // 256 encodes as 00
        }
    }
}

/// Two-byte big-endian length; 65536 wraps to `00 00` as ISO 7816-4 wants.
fn len16(n: usize) -> [u8; 2] {
    u16::try_from(n).unwrap_or(0).to_be_bytes()
}

fn short_ne(byte: u8) -> usize {
    if byte == 0 { SHORT_MAX_LE } else { usize::from(byte) }
}

fn extended_ne(hi: u8, lo: u8) -> usize {
    match u16::from_be_bytes([hi, lo]) {
        0 => EXTENDED_MAX_LE,
        n => usize::from(n),
    }
}

type Body<'a> = (&'a [u8], Option<usize>, bool);

/// After `Lc` (one non-zero byte): data, then nothing or a 1-byte Le.
fn parse_short_body(lc: usize, rest: &[u8]) -> Result<Body<'_>, ApduError> {
    if rest.len() < lc {
        return Err(ApduError::MissingData { lc, available: rest.len() });
    }
    let (data, tail) = rest.split_at(lc);
    match tail {
        [] => Ok((data, None, false)),
        [le] => Ok((data, Some(short_ne(*le)), false)),
        _ => Err(ApduError::TrailingBytes { extra: tail.len() - 1 }),
    }
}

/// After the `00` that opens an extended length field.
fn parse_extended_body(rest: &[u8]) -> Result<Body<'_>, ApduError> {
    match rest {
        [] | [_] => Err(ApduError::TruncatedExtendedLength),
        // case 2E: 00 Le1 Le2
        [hi, lo] => Ok((&[][..], Some(extended_ne(*hi, *lo)), true)),
        [hi, lo, tail @ ..] => {
            let lc = usize::from(u16::from_be_bytes([*hi, *lo]));
            if lc == 0 {
                return Err(ApduError::ZeroExtendedLc);
            }
            if tail.len() < lc {
                return Err(ApduError::MissingData { lc, available: tail.len() });
            }
            let (data, le) = tail.split_at(lc);
            match le {
                [] => Ok((data, None, true)),
                [hi, lo] => Ok((data, Some(extended_ne(*hi, *lo)), true)),
                [_] => Err(ApduError::TruncatedExtendedLength),
                _ => Err(ApduError::TrailingBytes { extra: le.len() - 2 }),
            }
        }
    }
}

/// A response APDU: data field and status word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseApdu {
    data: Vec<u8>,
    sw: StatusWord,
}

impl ResponseApdu {
    /// A response; the data field may be at most 65536 bytes.
    pub fn new(data: Vec<u8>, sw: StatusWord) -> Result<Self, ApduError> {
        if data.len() > MAX_RESPONSE_DATA_LEN {
            return Err(ApduError::ResponseTooLong { len: data.len() });
        }
        Ok(Self { data, sw })
    }

    /// A response with a status word and no data.
    pub fn status(sw: StatusWord) -> Self {
        Self { data: Vec::new(), sw }
    }

    /// The data field.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Takes the data field out.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }

    /// The status word.
    pub fn sw(&self) -> StatusWord {
        self.sw
    }

    /// Parses `data ‖ SW1 SW2`.
    pub fn parse(bytes: &[u8]) -> Result<Self, ApduError> {
        let Some((data, [sw1, sw2])) = bytes.split_last_chunk::<2>() else {
            return Err(ApduError::MissingStatusWord { len: bytes.len() });
        };
        Self::new(data.to_vec(), StatusWord::from_bytes(*sw1, *sw2))
    }

    /// Encodes `data ‖ SW1 SW2`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 2);
        out.extend_from_slice(&self.data);
        out.extend_from_slice(&self.sw.to_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h() -> Header {
        Header { cla: 0x80, ins: 0xCA, p1: 0x00, p2: 0x66 }
    }

    #[test]
    fn cases_one_to_four_short() {
        let c1 = CommandApdu::parse(&[0x80, 0xF2, 0x20, 0x02]).unwrap();
        assert_eq!((c1.data(), c1.le()), (&[][..], None));
        let c2 = CommandApdu::parse(&[0x80, 0xCA, 0, 0x66, 0]).unwrap();
        assert_eq!((c2.data(), c2.le()), (&[][..], Some(256)));
        let c3 = CommandApdu::parse(&[0x80, 0xF2, 0, 0, 2, 0xAA, 0xBB]).unwrap();
        assert_eq!((c3.data(), c3.le()), (&[0xAA, 0xBB][..], None));
        let c4 = CommandApdu::parse(&[0x80, 0xF2, 0, 0, 1, 0xAA, 0x10]).unwrap();
        assert_eq!((c4.data(), c4.le()), (&[0xAA][..], Some(16)));
        for c in [c1, c2, c3, c4] {
            assert!(!c.is_extended());
            assert_eq!(CommandApdu::parse(&c.to_bytes()).unwrap(), c);
        }
    }

    #[test]
    fn cases_two_to_four_extended() {
        let c2 = CommandApdu::parse(&[0x80, 0xCA, 0, 0, 0, 0x01, 0x00]).unwrap();
        assert_eq!((c2.le(), c2.is_extended()), (Some(256), true));
        let c2max = CommandApdu::parse(&[0x80, 0xCA, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(c2max.le(), Some(65_536));
        let c3 = CommandApdu::parse(&[0x80, 1, 2, 3, 0, 0, 1, 0xEE]).unwrap();
        assert_eq!((c3.data(), c3.le(), c3.is_extended()), (&[0xEE][..], None, true));
        let c4 = CommandApdu::parse(&[0x80, 1, 2, 3, 0, 0, 1, 0xEE, 0, 0]).unwrap();
        assert_eq!(c4.le(), Some(65_536));
        for c in [c2, c2max, c3, c4] {
            assert_eq!(CommandApdu::parse(&c.to_bytes()).unwrap(), c);
        }
    }

    #[test]
    fn malformed_commands_name_the_problem() {
        let bad: [(&[u8], ApduError); 7] = [
            (&[0x80, 0xCA, 0], ApduError::MissingHeader { len: 3 }),
            (&[0x80, 1, 2, 3, 3, 0xAA], ApduError::MissingData { lc: 3, available: 1 }),
            (&[0x80, 1, 2, 3, 1, 0xAA, 0, 0], ApduError::TrailingBytes { extra: 1 }),
            (&[0x80, 1, 2, 3, 0, 0], ApduError::TruncatedExtendedLength),
            (&[0x80, 1, 2, 3, 0, 0, 0, 0xAA], ApduError::ZeroExtendedLc),
            (&[0x80, 1, 2, 3, 0, 0, 1, 0xAA, 0], ApduError::TruncatedExtendedLength),
            (&[0x80, 1, 2, 3, 0, 0, 1, 0xAA, 0, 0, 0], ApduError::TrailingBytes { extra: 1 }),
        ];
        for (bytes, err) in bad {
            assert_eq!(CommandApdu::parse(bytes), Err(err), "{bytes:02x?}");
        }
    }

    #[test]
    fn long_data_switches_to_extended() {
        let c = CommandApdu::new(h(), vec![7; 300], Some(256)).unwrap();
        assert!(c.is_extended());
        let bytes = c.to_bytes();
        assert_eq!(&bytes[4..7], &[0, 0x01, 0x2C]);
        assert_eq!(&bytes[bytes.len() - 2..], &[0x01, 0x00]);
        assert_eq!(CommandApdu::parse(&bytes).unwrap(), c);
    }

    #[test]
    fn limits_are_enforced() {
        assert_eq!(CommandApdu::new(h(), vec![0; 65_536], None), Err(ApduError::DataTooLong { len: 65_536 }));
        assert_eq!(CommandApdu::new(h(), vec![], Some(0)), Err(ApduError::LeOutOfRange { le: 0 }));
        assert_eq!(ResponseApdu::parse(&[0x90]), Err(ApduError::MissingStatusWord { len: 1 }));
    }

    #[test]
    fn response_round_trip() {
        let r = ResponseApdu::parse(&[1, 2, 0x90, 0x00]).unwrap();
        assert_eq!((r.data(), r.sw()), (&[1, 2][..], StatusWord::Success));
        assert_eq!(r.to_bytes(), vec![1, 2, 0x90, 0x00]);
    }
}
