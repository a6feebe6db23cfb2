//! SHA-256 digests that bind one message to another (bill hash, command
//! hash), written in JSON as unpadded base64url.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::base64url;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// The digest of some bytes.
    pub fn of(bytes: &[u8]) -> Sha256Digest {
        Sha256Digest(Sha256::digest(bytes).into())
    }

    /// The digest of a compact token, over its exact ASCII bytes.
    pub fn of_token(token: &str) -> Sha256Digest {
        Sha256Digest::of(token.as_bytes())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Sha256Digest {
        Sha256Digest(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time comparison, for digests that guard a secret.
    pub fn ct_eq(&self, other: &Sha256Digest) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.0[..], &other.0[..]).into()
    }
}

impl TryFrom<String> for Sha256Digest {
    type Error = base64url::DecodeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let mut out = [0u8; 32];
        base64url::decode_exact(&s, &mut out)?;
        Ok(Sha256Digest(out))
    }
}

impl From<Sha256Digest> for String {
    fn from(d: Sha256Digest) -> String {
        base64url::encode(&d.0)
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&base64url::encode(&self.0))
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({self})")
    }
}
