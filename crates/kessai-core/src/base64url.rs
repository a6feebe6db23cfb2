//! Unpadded base64url (RFC 4648 §5), strict: no padding, no whitespace,
//! no non-canonical trailing bits.

use base64ct::{Base64UrlUnpadded, Encoding};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not canonical unpadded base64url of the expected length")]
pub struct DecodeError;

pub fn encode(bytes: &[u8]) -> String {
    Base64UrlUnpadded::encode_string(bytes)
}

pub fn decode(s: &str) -> Result<Vec<u8>, DecodeError> {
    Base64UrlUnpadded::decode_vec(s).map_err(|_| DecodeError)
}

/// Decodes into exactly `out.len()` bytes.
pub fn decode_exact(s: &str, out: &mut [u8]) -> Result<(), DecodeError> {
    let written = Base64UrlUnpadded::decode(s, out).map_err(|_| DecodeError)?;
    if written.len() != out.len() {
        return Err(DecodeError);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_decoding() {
        assert_eq!(decode("AQAB").unwrap(), vec![1, 0, 1]);
        assert!(decode("AQAB=").is_err());
        assert!(decode("AQ AB").is_err());
        assert!(decode("AQ+B").is_err());
        // "AR" would decode to 0x01 with non-zero trailing bits: refused.
        assert!(decode("AR").is_err());
        let mut two = [0u8; 2];
        assert!(decode_exact("AQAB", &mut two).is_err());
    }
}
