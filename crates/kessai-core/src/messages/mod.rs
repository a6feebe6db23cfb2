//! The signed messages of DESIGN §2, one module each, with one `sign` and
//! one `verify` function per kind. Each body type validates on
//! construction (and on deserialisation, through the same constructor), so
//! a `Bill` that exists is a valid bill.
//!
//! | kind | `typ` | signer → checker |
//! |---|---|---|
//! | SIG1 [`bill::Bill`] | `kessai-bill+jwt` | store → center |
//! | SIG2 [`offer::Offer`] | `kessai-offer+jwt` | center → wallet |
//! | SIG3 [`completion::Completion`] | `kessai-completion+jwt` | center → store, wallet |
//! | SIG4 [`receipt::Receipt`] | `kessai-receipt+jwt` | store → center, wallet |
//! | SIG5 [`value_update::ValueUpdate`] | `kessai-value-update+jwt` | center → wallet |
//! | refund request [`refund::RefundRequest`] | `kessai-refund+jwt` | store → center |
//! | payment claim [`claim::PaymentClaim`] | `kessai-payment-claim+jwt` | store → center |
//! | claim statement [`claim::ClaimStatement`] | `kessai-claim-statement+jwt` | center → store |
//! | member registration [`registration::Registration`] | `kessai-registration+jwt`, inside a JWE | member → center |
//! | payment instruction [`instruction::PaymentInstruction`] | `kessai-payment-instruction+jwt` | member → center |
//! | key replacement [`key_replacement::KeyReplacement`] | `kessai-key-replacement+jwt` | member → center |
//! | prepaid request [`prepaid::PrepaidRequest`] | `kessai-prepaid-request+jwt` | member → center |

pub mod bill;
pub mod claim;
pub mod completion;
pub mod instruction;
pub mod key_replacement;
pub mod offer;
pub mod prepaid;
pub mod receipt;
pub mod refund;
pub mod registration;
pub mod value_update;
pub mod value_update_check;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::base64url;
use crate::limits::{MAX_REFERENCE_BYTES, MAX_TEXT_BYTES};
use crate::money::Money;
use crate::random::Random;

/// Why a message body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    #[error("{field}: {reason}")]
    Field { field: &'static str, reason: String },
}

pub(crate) fn field_error(field: &'static str, reason: impl fmt::Display) -> MessageError {
    MessageError::Field { field, reason: reason.to_string() }
}

impl From<MessageError> for crate::jws::JwsError {
    fn from(e: MessageError) -> Self {
        crate::jws::JwsError::InvalidMessage(e.to_string())
    }
}

/// Text shown to people (item and store names): 1 to [`MAX_TEXT_BYTES`]
/// bytes of UTF-8 without control characters, so it cannot break a page or
/// a log line.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DisplayText(String);

impl DisplayText {
    pub fn parse(s: &str) -> Result<DisplayText, MessageError> {
        check_text("text", s, MAX_TEXT_BYTES, |c| !c.is_control())?;
        Ok(DisplayText(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A free-form machine reference (funding authorisation, download
/// reference): 1 to [`MAX_REFERENCE_BYTES`] bytes of printable ASCII.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Reference(String);

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, MessageError> {
        check_text("reference", s, MAX_REFERENCE_BYTES, |c| c.is_ascii_graphic())?;
        Ok(Reference(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The web origin a store serves its pages from (RFC 6454, serialized):
/// `https://` and a lowercase host name or IPv4 address, with an optional
/// port; no path. A bill carries its store's, and the wallet sends the
/// cardholder back, and fetches the store's keys, only there (M3).
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WebOrigin(String);

/// Longest web origin accepted (`https://`, a 253-byte host, a port).
pub const MAX_ORIGIN_BYTES: usize = 8 + 253 + 6;

impl WebOrigin {
    pub fn parse(s: &str) -> Result<WebOrigin, MessageError> {
        let bad = |why: &str| field_error("origin", format!("{why}: {s:?}"));
        if s.len() > MAX_ORIGIN_BYTES {
            return Err(bad("too long"));
        }
        let rest = s.strip_prefix("https://").ok_or_else(|| bad("must start with https://"))?;
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
            return Err(bad("the host must be a lowercase name or IPv4 address"));
        }
        if let Some(port) = port
            && (port.is_empty()
                || port.len() > 5
                || port.starts_with('0')
                || !port.bytes().all(|b| b.is_ascii_digit())
                || port.parse::<u32>().map_or(true, |p| p > 65_535))
        {
            return Err(bad("the port must be 1 to 65535"));
        }
        Ok(WebOrigin(s.to_owned()))
    }

    /// The origin of an absolute `https://` URL (its scheme and authority),
    /// if it has one this type accepts.
    pub fn of_url(url: &str) -> Result<WebOrigin, MessageError> {
        let rest = url.strip_prefix("https://").ok_or_else(|| field_error("origin", "not an https:// URL"))?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        WebOrigin::parse(&format!("https://{}", &rest[..end]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn check_text(field: &'static str, s: &str, max: usize, ok: fn(char) -> bool) -> Result<(), MessageError> {
    if s.is_empty() || s.len() > max {
        return Err(field_error(field, format!("must be 1 to {max} bytes")));
    }
    if !s.chars().all(ok) {
        return Err(field_error(field, "contains a character that is not allowed"));
    }
    Ok(())
}

macro_rules! text_conversions {
    ($($t:ident),*) => {$(
        impl TryFrom<String> for $t {
            type Error = MessageError;
            fn try_from(s: String) -> Result<Self, MessageError> {
                $t::parse(&s)
            }
        }
        impl From<$t> for String {
            fn from(t: $t) -> String {
                t.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($t), self.0)
            }
        }
    )*};
}
text_conversions!(DisplayText, Reference, WebOrigin);

/// 16 random bytes that make two otherwise equal bills distinct.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Nonce([u8; 16]);

impl Nonce {
    pub fn generate<R: Random + ?Sized>(rng: &mut R) -> Nonce {
        let mut n = [0u8; 16];
        rng.fill_bytes(&mut n);
        Nonce(n)
    }
}

impl TryFrom<String> for Nonce {
    type Error = MessageError;
    fn try_from(s: String) -> Result<Self, MessageError> {
        let mut n = [0u8; 16];
        base64url::decode_exact(&s, &mut n).map_err(|_| field_error("nonce", "must be 16 bytes of base64url"))?;
        Ok(Nonce(n))
    }
}

impl From<Nonce> for String {
    fn from(n: Nonce) -> String {
        base64url::encode(&n.0)
    }
}

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Nonce({})", base64url::encode(&self.0))
    }
}

/// A positive amount (zero-value payments are refused everywhere).
pub(crate) fn require_positive(field: &'static str, m: &Money) -> Result<(), MessageError> {
    if m.is_zero() {
        return Err(field_error(field, "must be greater than zero"));
    }
    Ok(())
}

pub(crate) fn require_same_currency(field: &'static str, a: &Money, b: &Money) -> Result<(), MessageError> {
    if a.currency() != b.currency() {
        return Err(field_error(field, format!("currency {} differs from {}", b.currency(), a.currency())));
    }
    Ok(())
}
