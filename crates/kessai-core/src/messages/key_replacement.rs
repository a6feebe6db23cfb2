//! A member's key replacement (#12, key lifecycle): member → center, signed
//! with the member's current key, carrying the new key and the new key's
//! own signature over what it replaces (proof of possession). The center
//! retires the current key in the same transaction that enters the new
//! one, so a replacement cannot be replayed: the key that signed it
//! verifies nothing afterwards.

use serde::{Deserialize, Serialize};

use super::{MessageError, field_error};
use crate::base64url;
use crate::ids::PartyId;
use crate::jwk::{Ed25519Jwk, KeyId, ParsedJwk, parse_jwk};
use crate::jws::{self, Claims, JwsError, MessageKind, Verified};
use crate::keys::{KeyDirectory, PublicKey, SigningKey};
use crate::time::Clock;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "KeyReplacementDraft", into = "KeyReplacementDraft")]
pub struct KeyReplacement {
    member: PartyId,
    /// The kid of the key it replaces (the one that signs this message).
    replaces: String,
    new_key: Ed25519Jwk,
    /// base64url of the new key's Ed25519 signature over [`proof_input`].
    proof: String,
    public: [u8; 32],
}

/// The fields of a KeyReplacement, checked by [`KeyReplacement::new`]; also its wire form.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyReplacementDraft {
    pub member: PartyId,
    pub replaces: String,
    pub new_key: Ed25519Jwk,
    pub proof: String,
}

/// What the new key signs: "kessai-key-replacement" ‖ 00 ‖ member ‖ 00 ‖
/// the kid it replaces.
pub fn proof_input(member: &PartyId, replaces: &str) -> Vec<u8> {
    [b"kessai-key-replacement\0".as_slice(), member.as_str().as_bytes(), b"\0", replaces.as_bytes()].concat()
}

impl KeyReplacement {
    pub fn new(d: KeyReplacementDraft) -> Result<KeyReplacement, MessageError> {
        KeyId::parse(&d.replaces).map_err(|e| field_error("replaces", e))?;
        let json = serde_json::to_vec(&d.new_key).map_err(|e| field_error("new_key", e))?;
        let ParsedJwk { public, kid, .. } = parse_jwk(&json).map_err(|e| field_error("new_key", e))?;
        if kid.as_str() == d.replaces {
            return Err(field_error("new_key", "is the key it replaces"));
        }
        let key = PublicKey::from_bytes(&public).map_err(|e| field_error("new_key", e))?;
        let mut signature = [0u8; 64];
        base64url::decode_exact(&d.proof, &mut signature).map_err(|_| field_error("proof", "not 64 bytes"))?;
        if !key.verify(&proof_input(&d.member, &d.replaces), &signature) {
            return Err(field_error("proof", "the new key did not sign it"));
        }
        Ok(KeyReplacement { member: d.member, replaces: d.replaces, new_key: d.new_key, proof: d.proof, public })
    }

    /// A replacement of `current` (which signs it) by `new`.
    pub fn made(member: PartyId, current: &SigningKey, new: &SigningKey) -> Result<KeyReplacement, MessageError> {
        let replaces = current.kid().as_str().to_owned();
        let proof = base64url::encode(&new.sign(&proof_input(&member, &replaces)));
        let new_key = Ed25519Jwk::new(new.public().as_bytes(), None, None);
        KeyReplacement::new(KeyReplacementDraft { member, replaces, new_key, proof })
    }

    pub fn member(&self) -> &PartyId {
        &self.member
    }
    pub fn replaces(&self) -> &str {
        &self.replaces
    }
    pub fn new_key(&self) -> Result<PublicKey, MessageError> {
        PublicKey::from_bytes(&self.public).map_err(|e| field_error("new_key", e))
    }
}

impl TryFrom<KeyReplacementDraft> for KeyReplacement {
    type Error = MessageError;
    fn try_from(d: KeyReplacementDraft) -> Result<Self, MessageError> {
        KeyReplacement::new(d)
    }
}

impl From<KeyReplacement> for KeyReplacementDraft {
    fn from(r: KeyReplacement) -> Self {
        KeyReplacementDraft { member: r.member, replaces: r.replaces, new_key: r.new_key, proof: r.proof }
    }
}

impl MessageKind for KeyReplacement {
    const TYP: &'static str = "kessai-key-replacement+jwt";
    const AUDIENCE_REQUIRED: bool = true;
    const BODY: &'static str = "key_replacement";

    fn check_claims(&self, claims: &Claims) -> Result<(), JwsError> {
        if claims.issuer() != &self.member {
            return Err(field_error("member", "must be the issuer of the replacement").into());
        }
        Ok(())
    }
}

/// Signs a replacement with the member's current key.
pub fn sign(claims: &Claims, replacement: &KeyReplacement, current: &SigningKey) -> Result<String, JwsError> {
    if current.kid().as_str() != replacement.replaces {
        return Err(JwsError::InvalidMessage("a replacement is signed by the key it replaces".into()));
    }
    jws::sign(claims, replacement, current)
}

/// Verifies a replacement against the member's current key (`keys` holds
/// it); the signing key must be the one it replaces.
pub fn verify(
    token: &str,
    keys: &KeyDirectory,
    clock: &dyn Clock,
    center: &PartyId,
) -> Result<Verified<KeyReplacement>, JwsError> {
    let verified: Verified<KeyReplacement> = jws::verify_for(token, keys, clock, center)?;
    if verified.kid().as_str() != verified.message().replaces {
        return Err(JwsError::InvalidMessage("signed by another key than the one it replaces".into()));
    }
    Ok(verified)
}
