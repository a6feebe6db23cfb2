//! Signing keys (secret, zeroized on drop, never printed) and the key
//! directory that says which public key belongs to whom, when it is valid
//! and whether it was revoked.

use std::collections::HashMap;
use std::fmt;

use ed25519_dalek::Signer;
use zeroize::Zeroizing;

use crate::ids::PartyId;
use crate::jwk::{self, Ed25519Jwk, JwkError, Jwks, KeyId};
use crate::limits::{MAX_KEYS, MAX_REGISTRY_KEYS};
use crate::random::Random;
use crate::time::Timestamp;

/// What signs a JWS with Ed25519: a key in this process ([`SigningKey`]),
/// or one that never leaves a hardware token (the center's, over PKCS#11),
/// which may fail to answer.
pub trait JwsSigner: Send + Sync {
    fn kid(&self) -> &KeyId;
    fn public(&self) -> PublicKey;
    /// The signature of `message`, or why the signer could not make it.
    fn try_sign(&self, message: &[u8]) -> Result<[u8; 64], String>;
}

impl JwsSigner for SigningKey {
    fn kid(&self) -> &KeyId {
        SigningKey::kid(self)
    }
    fn public(&self) -> PublicKey {
        SigningKey::public(self)
    }
    fn try_sign(&self, message: &[u8]) -> Result<[u8; 64], String> {
        Ok(self.sign(message))
    }
}

/// An Ed25519 signing key with its key id. The secret half is wiped from
/// memory on drop (ed25519-dalek's `ZeroizeOnDrop`) and never printed.
pub struct SigningKey {
    inner: ed25519_dalek::SigningKey,
    kid: KeyId,
}

impl SigningKey {
    /// A fresh key from the given randomness.
    pub fn generate<R: Random + ?Sized>(rng: &mut R) -> SigningKey {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut seed[..]);
        SigningKey::from_seed(&seed)
    }

    /// The key whose RFC 8032 secret (seed) is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> SigningKey {
        SigningKey::from_dalek(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    pub(crate) fn from_dalek(inner: ed25519_dalek::SigningKey) -> SigningKey {
        let kid = jwk::ed25519_kid(inner.verifying_key().as_bytes());
        SigningKey { inner, kid }
    }

    pub(crate) fn dalek(&self) -> &ed25519_dalek::SigningKey {
        &self.inner
    }

    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    pub fn public(&self) -> PublicKey {
        PublicKey { key: self.inner.verifying_key(), kid: self.kid.clone() }
    }

    /// A raw Ed25519 signature (RFC 8032).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.inner.sign(message).to_bytes()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("secret", &"***").finish()
    }
}

/// An Ed25519 public key with its key id. The curve point is decompressed
/// once, here, not on every verification.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: ed25519_dalek::VerifyingKey,
    kid: KeyId,
}

impl PublicKey {
    /// Refuses bytes that are not a point on the curve, and the weak
    /// (small-order) points that would let one signature verify for many
    /// messages.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey, JwkError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(bytes).map_err(|_| JwkError::BadPublicKey)?;
        if key.is_weak() {
            return Err(JwkError::BadPublicKey);
        }
        Ok(PublicKey { key, kid: jwk::ed25519_kid(bytes) })
    }

    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// Strict RFC 8032 verification: canonical S, no small-order keys or R.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let sig = ed25519_dalek::Signature::from_bytes(signature);
        self.key.verify_strict(message, &sig).is_ok()
    }

    pub fn to_jwk(&self, window: Validity) -> Ed25519Jwk {
        Ed25519Jwk::new(self.as_bytes(), window.not_before, window.not_after)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.kid)
    }
}

/// When a key may be used: `not_before <= now <= not_after`, either end
/// open. Rotation publishes the next key ahead with a later `not_before`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Validity {
    pub not_before: Option<Timestamp>,
    pub not_after: Option<Timestamp>,
}

impl Validity {
    pub fn always() -> Validity {
        Validity::default()
    }

    pub fn contains(&self, at: Timestamp) -> bool {
        self.not_before.is_none_or(|nbf| nbf <= at) && self.not_after.is_none_or(|exp| at <= exp)
    }
}

/// One key known to the directory.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub public: PublicKey,
    pub owner: PartyId,
    pub validity: Validity,
    pub revoked: bool,
}

/// Why a key could not be added, changed or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("the key directory already holds {capacity} keys")]
    TooManyKeys { capacity: usize },
    #[error("key {kid} already belongs to {owner}")]
    OwnedByAnother { kid: KeyId, owner: PartyId },
    #[error("key {0} was revoked and cannot be added again")]
    Revoked(KeyId),
    #[error("no key {0} in the directory")]
    Unknown(KeyId),
    #[error(transparent)]
    Jwk(#[from] JwkError),
}

/// Which public keys are trusted, for whom, and when.
#[derive(Debug, Clone)]
pub struct KeyDirectory {
    entries: HashMap<KeyId, KeyEntry>,
    /// Most keys it holds.
    capacity: usize,
}

impl Default for KeyDirectory {
    fn default() -> KeyDirectory {
        KeyDirectory::new()
    }
}

impl KeyDirectory {
    /// A directory of at most [`MAX_KEYS`] keys: what one party's JWKS may
    /// bring.
    pub fn new() -> KeyDirectory {
        KeyDirectory { entries: HashMap::new(), capacity: MAX_KEYS }
    }

    /// A registry's directory: every key of every party registered with it,
    /// revoked ones included, at most [`MAX_REGISTRY_KEYS`].
    pub fn registry() -> KeyDirectory {
        KeyDirectory { entries: HashMap::new(), capacity: MAX_REGISTRY_KEYS }
    }

    /// Adds a key for `owner`, or updates the validity of a key the owner
    /// already has. A revoked key stays revoked.
    pub fn insert(&mut self, owner: PartyId, public: PublicKey, validity: Validity) -> Result<(), KeyError> {
        if let Some(existing) = self.entries.get_mut(public.kid()) {
            if existing.owner != owner {
                return Err(KeyError::OwnedByAnother { kid: public.kid().clone(), owner: existing.owner.clone() });
            }
            if existing.revoked {
                return Err(KeyError::Revoked(public.kid().clone()));
            }
            existing.validity = validity;
            return Ok(());
        }
        if self.entries.len() >= self.capacity {
            return Err(KeyError::TooManyKeys { capacity: self.capacity });
        }
        let kid = public.kid().clone();
        self.entries.insert(kid, KeyEntry { public, owner, validity, revoked: false });
        Ok(())
    }

    /// Adds every key of a JWKS for `owner`; all or nothing.
    pub fn insert_jwks(&mut self, owner: &PartyId, jwks_json: &[u8]) -> Result<usize, KeyError> {
        let parsed = jwk::parse_jwks(jwks_json)?;
        let mut next = self.clone();
        for key in &parsed {
            let public = PublicKey::from_bytes(&key.public)?;
            let validity = Validity { not_before: key.not_before, not_after: key.not_after };
            next.insert(owner.clone(), public, validity)?;
        }
        *self = next;
        Ok(parsed.len())
    }

    /// Marks a key revoked: every later verification with it fails.
    pub fn revoke(&mut self, kid: &KeyId) -> Result<(), KeyError> {
        let entry = self.entries.get_mut(kid).ok_or_else(|| KeyError::Unknown(kid.clone()))?;
        entry.revoked = true;
        Ok(())
    }

    /// The entry for a key id as written in a token header, if any.
    pub fn entry(&self, kid: &str) -> Option<&KeyEntry> {
        self.entries.get(kid)
    }

    /// The published JWKS: every unrevoked key, of one owner or of all.
    pub fn jwks(&self, owner: Option<&PartyId>) -> Jwks {
        let mut keys: Vec<Ed25519Jwk> = self
            .entries
            .values()
            .filter(|e| !e.revoked && owner.is_none_or(|o| *o == e.owner))
            .map(|e| e.public.to_jwk(e.validity))
            .collect();
        keys.sort_by(|a, b| a.kid.cmp(&b.kid));
        Jwks { keys }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
