//! Public keys as JSON Web Keys (RFC 7517), their RFC 7638 thumbprints,
//! and JWK Sets.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::base64url;
use crate::limits::{MAX_JWKS_BYTES, MAX_KEYS};
use crate::time::Timestamp;

/// Why a JWK or JWKS was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwkError {
    #[error("JWKS is {len} bytes; the limit is {MAX_JWKS_BYTES}")]
    TooLarge { len: usize },
    #[error("JWKS holds more than {MAX_KEYS} keys")]
    TooManyKeys,
    #[error("not a JWK/JWKS document: {0}")]
    Malformed(String),
    #[error("key type {0:?} is not supported (only kty OKP with crv Ed25519)")]
    UnsupportedKeyType(String),
    #[error("JWK member {0:?} is missing")]
    MissingMember(&'static str),
    #[error("JWK carries private key material (member \"d\"); refusing to treat it as public")]
    PrivateKeyMaterial,
    #[error("JWK \"x\" is not a valid Ed25519 public key")]
    BadPublicKey,
    #[error("JWK \"kid\" {found:?} is not its RFC 7638 thumbprint {expected:?}")]
    KidMismatch { expected: String, found: String },
    #[error("JWK \"use\" or \"alg\" does not allow EdDSA signatures")]
    WrongUse,
    #[error("JWK validity window is empty (nbf after exp)")]
    EmptyWindow,
}

/// A key id: the RFC 7638 SHA-256 thumbprint of the public key, in
/// unpadded base64url (43 characters).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId(String);

impl KeyId {
    pub fn parse(s: &str) -> Result<KeyId, JwkError> {
        let mut buf = [0u8; 32];
        base64url::decode_exact(s, &mut buf)
            .map_err(|_| JwkError::Malformed(format!("kid {:?} is not a thumbprint", trunc(s))))?;
        Ok(KeyId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn trunc(s: &str) -> String {
    s.chars().take(60).collect()
}

// Hash and Eq of KeyId are those of its string, so lookups by &str agree.
impl std::borrow::Borrow<str> for KeyId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeyId {
    type Error = JwkError;
    fn try_from(s: String) -> Result<Self, JwkError> {
        KeyId::parse(&s)
    }
}

impl From<KeyId> for String {
    fn from(k: KeyId) -> String {
        k.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// The RFC 7638 thumbprint of any JWK given as a JSON object: the required
/// members of its `kty`, in lexicographic order, without whitespace,
/// hashed with SHA-256. Supports `OKP`, `EC`, `RSA` and `oct`.
pub fn thumbprint(jwk: &serde_json::Map<String, serde_json::Value>) -> Result<String, JwkError> {
    let kty = jwk.get("kty").and_then(|v| v.as_str()).ok_or(JwkError::MissingMember("kty"))?;
    let required: &[&'static str] = match kty {
        "OKP" => &["crv", "kty", "x"],
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "oct" => &["k", "kty"],
        other => return Err(JwkError::UnsupportedKeyType(trunc(other))),
    };
    let mut canonical = String::from("{");
    for (i, name) in required.iter().enumerate() {
        let value = jwk.get(*name).and_then(|v| v.as_str()).ok_or(JwkError::MissingMember(name))?;
        if i > 0 {
            canonical.push(',');
        }
        // serde_json escapes exactly as RFC 7159 requires; member names are
        // plain ASCII and need none.
        canonical.push_str(&format!("\"{name}\":"));
        canonical.push_str(&serde_json::Value::from(value).to_string());
    }
    canonical.push('}');
    Ok(base64url::encode(&Sha256::digest(canonical.as_bytes())))
}

/// The thumbprint of an Ed25519 public key, computed directly.
pub fn ed25519_kid(public: &[u8; 32]) -> KeyId {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, base64url::encode(public));
    KeyId(base64url::encode(&Sha256::digest(canonical.as_bytes())))
}

/// The RFC 7638 thumbprint of an X25519 public key (an encryption key):
/// SHA-256 over `{"crv":"X25519","kty":"OKP","x":…}`, base64url.
pub fn x25519_kid(public: &[u8; 32]) -> KeyId {
    let canonical = format!(r#"{{"crv":"X25519","kty":"OKP","x":"{}"}}"#, base64url::encode(public));
    KeyId(base64url::encode(&Sha256::digest(canonical.as_bytes())))
}

/// An Ed25519 public JWK as kessai publishes it. `nbf`/`exp` carry the
/// key's validity window (kessai's extension; other JOSE libraries ignore
/// unknown members).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ed25519Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub kid: String,
    #[serde(rename = "use")]
    pub use_: String,
    pub alg: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<Timestamp>,
}

/// What a JWK must hold for us, read leniently as to extra members but
/// strictly as to the ones that matter.
#[derive(Deserialize)]
struct JwkIn {
    kty: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    d: Option<serde::de::IgnoredAny>,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    nbf: Option<Timestamp>,
    exp: Option<Timestamp>,
}

/// A checked Ed25519 public key read from a JWK.
#[derive(Debug, Clone)]
pub struct ParsedJwk {
    pub public: [u8; 32],
    pub kid: KeyId,
    pub not_before: Option<Timestamp>,
    pub not_after: Option<Timestamp>,
}

impl Ed25519Jwk {
    pub fn new(public: &[u8; 32], not_before: Option<Timestamp>, not_after: Option<Timestamp>) -> Self {
        Ed25519Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: base64url::encode(public),
            kid: ed25519_kid(public).0,
            use_: "sig".into(),
            alg: "EdDSA".into(),
            nbf: not_before,
            exp: not_after,
        }
    }
}

fn parse_one(v: JwkIn) -> Result<ParsedJwk, JwkError> {
    if v.d.is_some() {
        return Err(JwkError::PrivateKeyMaterial);
    }
    let kty = v.kty.ok_or(JwkError::MissingMember("kty"))?;
    let crv = v.crv.ok_or(JwkError::MissingMember("crv"))?;
    if kty != "OKP" || crv != "Ed25519" {
        return Err(JwkError::UnsupportedKeyType(format!("{}/{}", trunc(&kty), trunc(&crv))));
    }
    if v.use_.as_deref().is_some_and(|u| u != "sig") || v.alg.as_deref().is_some_and(|a| a != "EdDSA") {
        return Err(JwkError::WrongUse);
    }
    let x = v.x.ok_or(JwkError::MissingMember("x"))?;
    let mut public = [0u8; 32];
    base64url::decode_exact(&x, &mut public).map_err(|_| JwkError::BadPublicKey)?;
    ed25519_dalek::VerifyingKey::from_bytes(&public).map_err(|_| JwkError::BadPublicKey)?;
    let kid = ed25519_kid(&public);
    if let Some(found) = v.kid
        && found != kid.0
    {
        return Err(JwkError::KidMismatch { expected: kid.0, found: trunc(&found) });
    }
    if let (Some(nbf), Some(exp)) = (v.nbf, v.exp)
        && nbf > exp
    {
        return Err(JwkError::EmptyWindow);
    }
    Ok(ParsedJwk { public, kid, not_before: v.nbf, not_after: v.exp })
}

/// Reads one public JWK.
pub fn parse_jwk(json: &[u8]) -> Result<ParsedJwk, JwkError> {
    if json.len() > MAX_JWKS_BYTES {
        return Err(JwkError::TooLarge { len: json.len() });
    }
    let v: JwkIn = serde_json::from_slice(json).map_err(|e| JwkError::Malformed(e.to_string()))?;
    parse_one(v)
}

/// Reads a JWK Set: `{"keys": [...]}`, size and count bounded.
pub fn parse_jwks(json: &[u8]) -> Result<Vec<ParsedJwk>, JwkError> {
    if json.len() > MAX_JWKS_BYTES {
        return Err(JwkError::TooLarge { len: json.len() });
    }
    #[derive(Deserialize)]
    struct SetIn {
        keys: Vec<JwkIn>,
    }
    let set: SetIn = serde_json::from_slice(json).map_err(|e| JwkError::Malformed(e.to_string()))?;
    if set.keys.len() > MAX_KEYS {
        return Err(JwkError::TooManyKeys);
    }
    set.keys.into_iter().map(parse_one).collect()
}

/// A JWK Set for publication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Ed25519Jwk>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7638_section_3_1_example() {
        let jwk: serde_json::Value = serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        });
        let map = jwk.as_object().unwrap();
        assert_eq!(thumbprint(map).unwrap(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn ed25519_kid_matches_generic_thumbprint() {
        let public = [7u8; 32];
        let jwk = serde_json::to_value(Ed25519Jwk::new(&public, None, None)).unwrap();
        assert_eq!(thumbprint(jwk.as_object().unwrap()).unwrap(), ed25519_kid(&public).as_str());
    }
}
