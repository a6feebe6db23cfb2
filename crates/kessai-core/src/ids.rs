//! Identifiers that validate on construction: if one exists, it is valid.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::MAX_ID_BYTES;
use crate::random::Random;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {max} bytes")]
    TooLong { kind: &'static str, max: usize },
    #[error("{kind} contains a character outside {allowed}")]
    BadCharacter { kind: &'static str, allowed: &'static str },
    #[error("{kind} must be {len} lowercase hex digits")]
    BadHex { kind: &'static str, len: usize },
}

fn check_text(
    kind: &'static str,
    s: &str,
    max: usize,
    allowed: &'static str,
    ok: fn(u8) -> bool,
) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > max {
        return Err(IdError::TooLong { kind, max });
    }
    if !s.bytes().all(ok) {
        return Err(IdError::BadCharacter { kind, allowed });
    }
    Ok(())
}

/// Characters of business identifiers chosen by a party (bill, order ids).
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// Characters of party identifiers (stores, malls, the center).
fn is_party_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr, $allowed:expr, $ok:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, IdError> {
                check_text($kind, s, $max, $allowed, $ok)?;
                Ok(Self(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                check_text($kind, &s, $max, $allowed, $ok)?;
                Ok(Self(s))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

const TOKEN_CHARS: &str = "[A-Za-z0-9._-]";
const PARTY_CHARS: &str = "[a-z0-9-]";

text_id!(
    /// A bill id, chosen by the store; unique per store.
    BillId, "bill id", MAX_ID_BYTES, TOKEN_CHARS, is_token_char
);
text_id!(
    /// An order number, issued by the store or mall.
    OrderId, "order id", MAX_ID_BYTES, TOKEN_CHARS, is_token_char
);
text_id!(
    /// A settlement id, issued by the center (`stl_` + 32 hex digits).
    SettlementId, "settlement id", MAX_ID_BYTES, TOKEN_CHARS, is_token_char
);
text_id!(
    /// A value-update id, issued by the center (`vup_` + 32 hex digits).
    UpdateId, "value update id", MAX_ID_BYTES, TOKEN_CHARS, is_token_char
);
text_id!(
    /// A refund id, chosen by the store; unique per store. The same id sent
    /// again names the same refund (idempotency).
    RefundId, "refund id", MAX_ID_BYTES, TOKEN_CHARS, is_token_char
);
text_id!(
    /// A payment claim's id, chosen by the store; unique per store. The
    /// same id sent again names the same claim (idempotency).
    ClaimId, "claim id", MAX_ID_BYTES, TOKEN_CHARS, is_token_char
);
text_id!(
    /// A virtual prepaid card (仮想プリペイドカード), value the center holds
    /// for a member: `vpc_` + 32 hex digits, issued by the center.
    PrepaidId, "prepaid card id", MAX_ID_BYTES, TOKEN_CHARS, is_token_char
);
text_id!(
    /// A funding of a virtual prepaid card (`fnd_` + 32 hex digits),
    /// issued by the center for a member's prepaid request.
    FundingId, "funding id", MAX_ID_BYTES, TOKEN_CHARS, is_token_char
);
text_id!(
    /// A member's id for one prepaid request, chosen by the wallet; unique
    /// per member. The same id sent again (signed again) names the same
    /// request, so value is never issued twice for one request.
    RequestId, "request id", MAX_ID_BYTES, TOKEN_CHARS, is_token_char
);
text_id!(
    /// A message's unique id (`jti`), so a replay can be recognised.
    MessageId, "message id", MAX_ID_BYTES, TOKEN_CHARS, is_token_char
);
text_id!(
    /// A card as one store knows it (SIG3's `card_ref`): a pseudonym the
    /// center derives per store, so a store can recognise a card it saw
    /// before but learns nothing of its id, and two stores cannot link it.
    CardRef, "card reference", 64, TOKEN_CHARS, is_token_char
);
text_id!(
    /// A store (a mall or a member store of a mall).
    StoreId, "store id", 32, PARTY_CHARS, is_party_char
);
text_id!(
    /// A party that signs messages: a store, a mall, or the center.
    PartyId, "party id", 32, PARTY_CHARS, is_party_char
);

impl From<StoreId> for PartyId {
    fn from(s: StoreId) -> PartyId {
        PartyId(s.0)
    }
}

impl PartyId {
    /// Whether this party is the given store.
    pub fn is_store(&self, store: &StoreId) -> bool {
        self.0 == store.0
    }
}

fn random_hex<R: Random + ?Sized>(rng: &mut R, prefix: &str) -> String {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    format!("{prefix}{}", hex_lower(&bytes))
}

pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

fn parse_hex<const N: usize>(kind: &'static str, s: &str) -> Result<[u8; N], IdError> {
    let bad = || IdError::BadHex { kind, len: N * 2 };
    if s.len() != N * 2 {
        return Err(bad());
    }
    let mut out = [0u8; N];
    for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        out[i] = (nibble(pair[0]).ok_or_else(bad)? << 4) | nibble(pair[1]).ok_or_else(bad)?;
    }
    Ok(out)
}

impl SettlementId {
    pub fn generate<R: Random + ?Sized>(rng: &mut R) -> SettlementId {
        SettlementId(random_hex(rng, "stl_"))
    }
}

impl UpdateId {
    pub fn generate<R: Random + ?Sized>(rng: &mut R) -> UpdateId {
        UpdateId(random_hex(rng, "vup_"))
    }
}

impl PrepaidId {
    pub fn generate<R: Random + ?Sized>(rng: &mut R) -> PrepaidId {
        PrepaidId(random_hex(rng, "vpc_"))
    }
}

impl FundingId {
    pub fn generate<R: Random + ?Sized>(rng: &mut R) -> FundingId {
        FundingId(random_hex(rng, "fnd_"))
    }
}

impl MessageId {
    pub fn generate<R: Random + ?Sized>(rng: &mut R) -> MessageId {
        MessageId(random_hex(rng, ""))
    }
}

macro_rules! byte_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $len:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name([u8; $len]);

        impl $name {
            pub const LEN: usize = $len;

            pub fn from_bytes(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }

            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Parses exactly the lowercase hex form.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                parse_hex::<$len>($kind, s).map(Self)
            }

            pub fn generate<R: Random + ?Sized>(rng: &mut R) -> Self {
                let mut bytes = [0u8; $len];
                rng.fill_bytes(&mut bytes);
                Self(bytes)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                hex_lower(&id.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex_lower(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), hex_lower(&self.0))
            }
        }
    };
}

byte_id!(
    /// A card's 8-byte identity, written as 16 lowercase hex digits.
    CardId, "card id", 8
);
byte_id!(
    /// A card transaction id (16 bytes, 32 hex digits). The card applies
    /// each at most once; the ledger uses the same value as a transfer id.
    TransactionId, "transaction id", 16
);

impl TransactionId {
    /// The id as a big-endian 128-bit integer (a ledger transfer id).
    pub fn as_u128(&self) -> u128 {
        u128::from_be_bytes(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;

    #[test]
    fn text_ids_validate() {
        assert!(BillId::parse("b-2026.11_21").is_ok());
        assert_eq!(BillId::parse(""), Err(IdError::Empty { kind: "bill id" }));
        assert!(matches!(BillId::parse("a b"), Err(IdError::BadCharacter { .. })));
        assert!(matches!(BillId::parse(&"x".repeat(65)), Err(IdError::TooLong { .. })));
        assert!(StoreId::parse("mall-1").is_ok());
        assert!(StoreId::parse("Mall").is_err());
        assert!(serde_json::from_str::<OrderId>("\"o/1\"").is_err());
    }

    #[test]
    fn byte_ids_round_trip_in_lowercase_hex_only() {
        let id = CardId::parse("0123456789abcdef").unwrap();
        assert_eq!(id.as_bytes(), &[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
        assert_eq!(id.to_string(), "0123456789abcdef");
        assert!(CardId::parse("0123456789ABCDEF").is_err());
        assert!(CardId::parse("0123456789abcde").is_err());
        assert!(CardId::parse("0123456789abcdeg").is_err());
        assert!(CardId::parse("é123456789abcde").is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<CardId>(&json).unwrap(), id);
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let mut rng = SeededRandom::new(7);
        let a = SettlementId::generate(&mut rng);
        let b = SettlementId::generate(&mut rng);
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("stl_"));
        assert!(SettlementId::parse(a.as_str()).is_ok());
        let t = TransactionId::generate(&mut rng);
        assert_eq!(TransactionId::parse(&t.to_string()).unwrap(), t);
    }
}
