//! JWS compact serialisation (RFC 7515) with Ed25519 (`alg: EdDSA`,
//! RFC 8037), and the claims every kessai message carries.
//!
//! Verification runs in a fixed order, each step refusing with its own
//! error before the next one looks at anything: size → shape → header
//! (`alg`, `typ`, `kid`) → key (known, not revoked, in its window) →
//! signature over the exact received bytes → payload JSON → issuer is the
//! key's owner → time → the message's own rules. The payload is parsed only
//! after the signature holds, so nothing unauthenticated reaches the JSON
//! parser beyond a few header bytes.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};

use crate::base64url;
use crate::digest::Sha256Digest;
use crate::ids::{MessageId, PartyId};
use crate::jwk::KeyId;
use crate::keys::{JwsSigner, KeyDirectory};
use crate::limits::{CLOCK_SKEW_S, MAX_TOKEN_BYTES, MAX_TOKEN_LIFETIME_S};
use crate::time::{Clock, Timestamp};

/// The one signature algorithm kessai accepts.
pub const ALG: &str = "EdDSA";

/// Largest protected header we decode (ours is about 110 bytes).
const MAX_HEADER_BYTES: usize = 512;

/// Which part of a compact token an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Header,
    Payload,
    Signature,
}

/// Every way a token can be refused. Each has its own variant so callers
/// and tests can tell them apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwsError {
    #[error("token is {len} bytes; the limit is {MAX_TOKEN_BYTES}")]
    TooLarge { len: usize },
    #[error("token is not three non-empty base64url parts joined by '.'")]
    Malformed,
    #[error("token {0:?} part is not canonical unpadded base64url")]
    BadBase64(Part),
    #[error("protected header is invalid: {0}")]
    BadHeader(String),
    #[error("protected header has \"crit\"; kessai understands no extensions")]
    CriticalHeader,
    #[error("algorithm {0:?} is not accepted; only EdDSA")]
    UnsupportedAlgorithm(String),
    #[error("token type {found:?} presented where {expected:?} is required")]
    WrongType { expected: &'static str, found: String },
    #[error("no key {0:?} is known")]
    UnknownKey(String),
    #[error("key {0:?} was revoked")]
    RevokedKey(String),
    #[error("key {0:?} is outside its validity window")]
    KeyNotValidNow(String),
    #[error("signature does not verify")]
    BadSignature,
    #[error("payload is invalid: {0}")]
    BadPayload(String),
    #[error("token issued by {iss:?} but signed with a key of {owner:?}")]
    IssuerMismatch { iss: String, owner: String },
    #[error("token expired at {exp} (now {now})")]
    Expired { exp: Timestamp, now: Timestamp },
    #[error("token is not valid before {not_before} (now {now})")]
    NotYetValid { not_before: Timestamp, now: Timestamp },
    #[error("claims are inconsistent: {0}")]
    BadClaims(&'static str),
    #[error("message is invalid: {0}")]
    InvalidMessage(String),
    /// A kind that names its audience (`aud`) came without one.
    #[error("the token names no audience (\"aud\"); this kind must")]
    MissingAudience,
    /// The token is for another receiver (a center that shares the
    /// signer's key, say).
    #[error("the token is for {found:?}, not for {expected:?}")]
    WrongAudience { expected: String, found: String },
    /// The signer (a hardware token) could not sign; nothing was signed.
    #[error("the signer could not sign: {0}")]
    Signer(String),
}

/// The registered claims every kessai message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    iss: PartyId,
    /// The one receiver the message is for, if its kind names one.
    aud: Option<PartyId>,
    jti: MessageId,
    iat: Timestamp,
    nbf: Option<Timestamp>,
    exp: Timestamp,
}

impl Claims {
    /// `iss` signs, `jti` makes the message unique (replays are recognised
    /// by it), and the message is valid from `iat` until `exp`.
    pub fn new(iss: PartyId, jti: MessageId, iat: Timestamp, exp: Timestamp) -> Result<Claims, JwsError> {
        let claims = Claims { iss, aud: None, jti, iat, nbf: None, exp };
        claims.check()?;
        Ok(claims)
    }

    /// Claims valid for `lifetime_s` from `now`.
    pub fn for_lifetime(iss: PartyId, jti: MessageId, now: Timestamp, lifetime_s: u64) -> Result<Claims, JwsError> {
        let exp = now.checked_add_s(lifetime_s).ok_or(JwsError::BadClaims("expiry overflows"))?;
        Claims::new(iss, jti, now, exp)
    }

    /// Addresses the message to `aud`, the one receiver that may act on it
    /// (RFC 7519 §4.1.3): a center that shares the signer's key refuses it.
    pub fn with_audience(mut self, aud: PartyId) -> Claims {
        self.aud = Some(aud);
        self
    }

    /// Makes the message valid only from `nbf` on.
    pub fn with_not_before(mut self, nbf: Timestamp) -> Result<Claims, JwsError> {
        self.nbf = Some(nbf);
        self.check()?;
        Ok(self)
    }

    fn check(&self) -> Result<(), JwsError> {
        if self.exp <= self.iat {
            return Err(JwsError::BadClaims("exp must be after iat"));
        }
        if self.exp.unix_s() - self.iat.unix_s() > MAX_TOKEN_LIFETIME_S {
            return Err(JwsError::BadClaims("lifetime exceeds the limit"));
        }
        if self.nbf.is_some_and(|nbf| nbf < self.iat || nbf >= self.exp) {
            return Err(JwsError::BadClaims("nbf must lie in [iat, exp)"));
        }
        Ok(())
    }

    pub fn issuer(&self) -> &PartyId {
        &self.iss
    }
    /// The receiver the message is addressed to, if any.
    pub fn audience(&self) -> Option<&PartyId> {
        self.aud.as_ref()
    }
    pub fn id(&self) -> &MessageId {
        &self.jti
    }
    pub fn issued_at(&self) -> Timestamp {
        self.iat
    }
    pub fn not_before(&self) -> Option<Timestamp> {
        self.nbf
    }
    pub fn expires_at(&self) -> Timestamp {
        self.exp
    }

    /// Refuses a message outside its validity at `now`, allowing
    /// [`CLOCK_SKEW_S`] between the parties' clocks.
    fn check_time(&self, now: Timestamp) -> Result<(), JwsError> {
        let starts = self.nbf.unwrap_or(self.iat);
        if starts.unix_s() > now.unix_s().saturating_add(CLOCK_SKEW_S) {
            return Err(JwsError::NotYetValid { not_before: starts, now });
        }
        if now.unix_s() > self.exp.unix_s().saturating_add(CLOCK_SKEW_S) {
            return Err(JwsError::Expired { exp: self.exp, now });
        }
        Ok(())
    }
}

/// A kind of signed message: its `typ`, the payload member that holds its
/// body, and the rules that tie the body to the claims.
pub trait MessageKind: Serialize + DeserializeOwned {
    /// The JOSE `typ` header: one per kind, so a token of one kind is never
    /// accepted as another.
    const TYP: &'static str;
    /// The payload member holding the body, e.g. `"bill"`.
    const BODY: &'static str;
    /// Whether the message must name its one receiver (`aud`): the kinds a
    /// store or a member sends the center. [`verify_for`] checks it is the
    /// verifier; [`verify`] (a party that only reads the message, as the
    /// wallet reads a bill) that there is one.
    const AUDIENCE_REQUIRED: bool = false;
    /// Rules between body and claims (e.g. a bill's store is its issuer).
    fn check_claims(&self, claims: &Claims) -> Result<(), JwsError>;
}

/// Zero-sized proof that a signature was checked; only this module makes one.
#[derive(Debug, Clone, Copy)]
struct SignatureValid(());

/// A message whose signature, key, issuer, time and rules were all checked.
/// Code that needs a verified bill takes `&Verified<Bill>` and so cannot be
/// handed an unverified one.
#[derive(Debug, Clone)]
pub struct Verified<M> {
    claims: Claims,
    message: M,
    kid: KeyId,
    token_hash: Sha256Digest,
    _valid: SignatureValid,
}

impl<M> Verified<M> {
    pub fn claims(&self) -> &Claims {
        &self.claims
    }
    pub fn message(&self) -> &M {
        &self.message
    }
    /// The key that signed it.
    pub fn kid(&self) -> &KeyId {
        &self.kid
    }
    /// SHA-256 of the exact token, which later messages sign to bind to it.
    pub fn token_hash(&self) -> Sha256Digest {
        self.token_hash
    }
}

struct EnvelopeRef<'a, M> {
    claims: &'a Claims,
    body: &'a M,
}

impl<M: MessageKind> Serialize for EnvelopeRef<'_, M> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.claims;
        let mut map = s.serialize_map(Some(5 + usize::from(c.nbf.is_some()) + usize::from(c.aud.is_some())))?;
        map.serialize_entry("iss", &c.iss)?;
        if let Some(aud) = &c.aud {
            map.serialize_entry("aud", aud)?;
        }
        map.serialize_entry("jti", &c.jti)?;
        map.serialize_entry("iat", &c.iat)?;
        if let Some(nbf) = c.nbf {
            map.serialize_entry("nbf", &nbf)?;
        }
        map.serialize_entry("exp", &c.exp)?;
        map.serialize_entry(M::BODY, self.body)?;
        map.end()
    }
}

struct Envelope<M> {
    claims: Claims,
    body: M,
}

struct EnvelopeVisitor<M>(PhantomData<M>);

fn put<T, E: de::Error>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), E> {
    if slot.replace(value).is_some() {
        return Err(E::duplicate_field(name));
    }
    Ok(())
}

impl<'de, M: MessageKind> Visitor<'de> for EnvelopeVisitor<M> {
    type Value = Envelope<M>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a kessai {} payload", M::BODY)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<M>, A::Error> {
        let (mut iss, mut aud, mut jti, mut iat, mut nbf, mut exp, mut body) =
            (None, None, None, None, None, None, None);
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "iss" => put(&mut iss, "iss", map.next_value()?)?,
                "aud" => put(&mut aud, "aud", map.next_value()?)?,
                "jti" => put(&mut jti, "jti", map.next_value()?)?,
                "iat" => put(&mut iat, "iat", map.next_value()?)?,
                "nbf" => put(&mut nbf, "nbf", map.next_value()?)?,
                "exp" => put(&mut exp, "exp", map.next_value()?)?,
                k if k == M::BODY => put(&mut body, M::BODY, map.next_value()?)?,
                other => {
                    return Err(de::Error::unknown_field(other, &["iss", "aud", "jti", "iat", "nbf", "exp", M::BODY]));
                }
            }
        }
        let claims = Claims {
            iss: iss.ok_or_else(|| de::Error::missing_field("iss"))?,
            aud,
            jti: jti.ok_or_else(|| de::Error::missing_field("jti"))?,
            iat: iat.ok_or_else(|| de::Error::missing_field("iat"))?,
            nbf,
            exp: exp.ok_or_else(|| de::Error::missing_field("exp"))?,
        };
        let body = body.ok_or_else(|| de::Error::missing_field(M::BODY))?;
        Ok(Envelope { claims, body })
    }
}

impl<'de, M: MessageKind> Deserialize<'de> for Envelope<M> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EnvelopeVisitor(PhantomData))
    }
}

/// The protected header as received. Every member is optional here so that
/// the most telling error (`alg` first) can be reported.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderIn<'a> {
    #[serde(borrow)]
    alg: Option<Cow<'a, str>>,
    #[serde(borrow)]
    typ: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kid: Option<Cow<'a, str>>,
    crit: Option<de::IgnoredAny>,
}

/// Signs `body` under `claims` as a compact JWS of kind `M`. Refuses to
/// sign a message that a verifier would refuse.
pub fn sign<M: MessageKind>(claims: &Claims, body: &M, key: &(impl JwsSigner + ?Sized)) -> Result<String, JwsError> {
    claims.check()?;
    check_audience::<M>(claims)?;
    body.check_claims(claims)?;
    // kid is base64url and TYP a constant, so neither needs JSON escaping.
    let header = format!(r#"{{"alg":"{ALG}","kid":"{}","typ":"{}"}}"#, key.kid(), M::TYP);
    let payload =
        serde_json::to_vec(&EnvelopeRef { claims, body }).map_err(|e| JwsError::InvalidMessage(e.to_string()))?;
    let mut token = base64url::encode(header.as_bytes());
    token.push('.');
    token.push_str(&base64url::encode(&payload));
    let signature = key.try_sign(token.as_bytes()).map_err(JwsError::Signer)?;
    token.push('.');
    token.push_str(&base64url::encode(&signature));
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwsError::TooLarge { len: token.len() });
    }
    Ok(token)
}

/// The three parts of a compact token, split without decoding anything.
struct Parts<'t> {
    signing_input: &'t str,
    header: &'t str,
    payload: &'t str,
    signature: &'t str,
}

fn split(token: &str) -> Result<Parts<'_>, JwsError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwsError::TooLarge { len: token.len() });
    }
    let (signing_input, signature) = token.rsplit_once('.').ok_or(JwsError::Malformed)?;
    let (header, payload) = signing_input.split_once('.').ok_or(JwsError::Malformed)?;
    // An empty signature is left for the signature step to refuse, so that
    // an unsigned `alg: none` token is reported as such.
    if header.is_empty() || payload.is_empty() || payload.contains('.') {
        return Err(JwsError::Malformed);
    }
    Ok(Parts { signing_input, header, payload, signature })
}

fn decode_header<M: MessageKind>(b64: &str) -> Result<String, JwsError> {
    if b64.len() > MAX_HEADER_BYTES {
        return Err(JwsError::BadHeader("header too large".into()));
    }
    let bytes = base64url::decode(b64).map_err(|_| JwsError::BadBase64(Part::Header))?;
    let header: HeaderIn<'_> = serde_json::from_slice(&bytes).map_err(|e| JwsError::BadHeader(e.to_string()))?;
    if header.crit.is_some() {
        return Err(JwsError::CriticalHeader);
    }
    match header.alg.as_deref() {
        Some(ALG) => {}
        Some(other) => return Err(JwsError::UnsupportedAlgorithm(other.chars().take(32).collect())),
        None => return Err(JwsError::BadHeader("missing \"alg\"".into())),
    }
    match header.typ.as_deref() {
        Some(t) if t == M::TYP => {}
        found => {
            let found = found.unwrap_or("").chars().take(64).collect();
            return Err(JwsError::WrongType { expected: M::TYP, found });
        }
    }
    let kid = header.kid.ok_or_else(|| JwsError::BadHeader("missing \"kid\"".into()))?;
    Ok(kid.into_owned())
}

/// Verifies a compact token of kind `M` against the key directory and the
/// clock. See the module documentation for the order of the checks.
pub fn verify<M: MessageKind>(token: &str, keys: &KeyDirectory, clock: &dyn Clock) -> Result<Verified<M>, JwsError> {
    let parts = split(token)?;
    let kid = decode_header::<M>(parts.header)?;
    let shown = || kid.chars().take(64).collect::<String>();
    let entry = keys.entry(&kid).ok_or_else(|| JwsError::UnknownKey(shown()))?;
    if entry.revoked {
        return Err(JwsError::RevokedKey(shown()));
    }
    let now = clock.now();
    if !entry.validity.contains(now) {
        return Err(JwsError::KeyNotValidNow(shown()));
    }
    let mut signature = [0u8; 64];
    base64url::decode_exact(parts.signature, &mut signature).map_err(|_| JwsError::BadBase64(Part::Signature))?;
    if !entry.public.verify(parts.signing_input.as_bytes(), &signature) {
        return Err(JwsError::BadSignature);
    }
    let valid = SignatureValid(());
    let payload = base64url::decode(parts.payload).map_err(|_| JwsError::BadBase64(Part::Payload))?;
    let envelope: Envelope<M> = serde_json::from_slice(&payload).map_err(|e| JwsError::BadPayload(e.to_string()))?;
    if envelope.claims.iss != entry.owner {
        return Err(JwsError::IssuerMismatch { iss: envelope.claims.iss.to_string(), owner: entry.owner.to_string() });
    }
    envelope.claims.check()?;
    check_audience::<M>(&envelope.claims)?;
    envelope.claims.check_time(now)?;
    envelope.body.check_claims(&envelope.claims)?;
    Ok(Verified {
        claims: envelope.claims,
        message: envelope.body,
        kid: entry.public.kid().clone(),
        token_hash: Sha256Digest::of_token(token),
        _valid: valid,
    })
}

/// A kind that names its audience has one; a kind that does not, none (one
/// shape per kind).
fn check_audience<M: MessageKind>(claims: &Claims) -> Result<(), JwsError> {
    match (M::AUDIENCE_REQUIRED, &claims.aud) {
        (true, None) => Err(JwsError::MissingAudience),
        (false, Some(_)) => Err(JwsError::BadClaims("this kind of message names no audience")),
        _ => Ok(()),
    }
}

/// [`verify`], by the receiver `me`: the token must be addressed to it. For
/// the kinds that name their audience ([`MessageKind::AUDIENCE_REQUIRED`]).
pub fn verify_for<M: MessageKind>(
    token: &str,
    keys: &KeyDirectory,
    clock: &dyn Clock,
    me: &PartyId,
) -> Result<Verified<M>, JwsError> {
    let verified = verify::<M>(token, keys, clock)?;
    match verified.claims.audience() {
        Some(aud) if aud == me => Ok(verified),
        found => Err(JwsError::WrongAudience {
            expected: me.to_string(),
            found: found.map(ToString::to_string).unwrap_or_default(),
        }),
    }
}

/// The decoded header and payload of a token, WITHOUT any verification:
/// for displaying a transcript or diagnosing a refused token only.
pub fn inspect_unverified(token: &str) -> Result<(serde_json::Value, serde_json::Value), JwsError> {
    let parts = split(token)?;
    let header = base64url::decode(parts.header).map_err(|_| JwsError::BadBase64(Part::Header))?;
    let payload = base64url::decode(parts.payload).map_err(|_| JwsError::BadBase64(Part::Payload))?;
    let header = serde_json::from_slice(&header).map_err(|e| JwsError::BadHeader(e.to_string()))?;
    let payload = serde_json::from_slice(&payload).map_err(|e| JwsError::BadPayload(e.to_string()))?;
    Ok((header, payload))
}
