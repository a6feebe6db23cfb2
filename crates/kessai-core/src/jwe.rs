//! JWE (RFC 7516), compact serialization, for one recipient: ECDH-ES
//! direct key agreement on X25519 (RFC 7518 §4.6, RFC 8037) and A256GCM.
//! A member's registration travels in one (seed 003/004 claim 3: encrypted
//! under a key shared with the center for this transmission only: the
//! agreement of a fresh ephemeral key with the center's encryption key).
//!
//! The protected header is checked before anything is decrypted: `alg`
//! `ECDH-ES`, `enc` `A256GCM`, an X25519 `epk`, the recipient's `kid`, no
//! `zip` and no `crit`; any other member is refused. The content key is the
//! Concat KDF (SHA-256) of the shared secret with AlgorithmID `A256GCM`,
//! `apu`/`apv` from the header (empty if absent) and 256 bits; the
//! associated data is the ASCII of the encoded header, as RFC 7516 §5.1
//! says. A shared secret of all zeros (a low-order `epk`) is refused.

use std::fmt;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::base64url;
use crate::digest::Sha256Digest;
use crate::jwk::KeyId;
use crate::random::Random;

/// Largest compact JWE accepted.
pub const MAX_JWE_BYTES: usize = 64 * 1024;

/// Why a JWE was refused. Every failure after the header is one error, so
/// nothing is learned of the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JweError {
    #[error("the JWE is larger than {MAX_JWE_BYTES} bytes")]
    TooLarge,
    #[error("not a compact JWE of five parts")]
    Malformed,
    #[error("the JWE header is refused: {0}")]
    Header(String),
    #[error("the JWE is for another key ({0})")]
    OtherRecipient(String),
    #[error("the JWE does not decrypt under this key, or was altered")]
    Undecryptable,
}

/// An X25519 key the center decrypts with. Printed as `***`.
pub struct EncryptionKey {
    secret: Zeroizing<[u8; 32]>,
    public: EncryptionPublicKey,
}

/// Its public half, with the kid (the JWK thumbprint, RFC 7638).
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptionPublicKey {
    x: [u8; 32],
    kid: KeyId,
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKey").field("kid", &self.public.kid).field("secret", &"***").finish()
    }
}

impl fmt::Debug for EncryptionPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionPublicKey").field("kid", &self.kid).finish()
    }
}

/// The JWK of an X25519 public key: `{"kty":"OKP","crv":"X25519","x","kid","use":"enc"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct X25519Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

fn x25519_public(secret: &[u8; 32]) -> [u8; 32] {
    x25519_dalek::x25519(*secret, x25519_dalek::X25519_BASEPOINT_BYTES)
}

impl EncryptionKey {
    pub fn generate<R: Random + ?Sized>(rng: &mut R) -> EncryptionKey {
        let mut secret = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut secret[..]);
        EncryptionKey::from_secret(&secret)
    }

    pub fn from_secret(secret: &[u8; 32]) -> EncryptionKey {
        let x = x25519_public(secret);
        EncryptionKey {
            secret: Zeroizing::new(*secret),
            public: EncryptionPublicKey { x, kid: crate::jwk::x25519_kid(&x) },
        }
    }

    pub fn secret_bytes(&self) -> &[u8; 32] {
        &self.secret
    }

    pub fn public(&self) -> &EncryptionPublicKey {
        &self.public
    }
}

impl EncryptionPublicKey {
    pub fn from_jwk(jwk: &X25519Jwk) -> Result<EncryptionPublicKey, JweError> {
        if jwk.kty != "OKP" || jwk.crv != "X25519" || jwk.use_.as_deref().is_some_and(|u| u != "enc") {
            return Err(JweError::Header("not an X25519 encryption key".into()));
        }
        let x = decode_32(&jwk.x).ok_or_else(|| JweError::Header("x is not 32 bytes".into()))?;
        let kid = crate::jwk::x25519_kid(&x);
        if jwk.kid.as_deref().is_some_and(|k| k != kid.as_str()) {
            return Err(JweError::Header("kid is not the key's thumbprint".into()));
        }
        Ok(EncryptionPublicKey { x, kid })
    }

    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    pub fn to_jwk(&self) -> X25519Jwk {
        X25519Jwk {
            kty: "OKP".into(),
            crv: "X25519".into(),
            x: base64url::encode(&self.x),
            kid: Some(self.kid.as_str().to_owned()),
            use_: Some("enc".into()),
        }
    }
}

fn decode_32(text: &str) -> Option<[u8; 32]> {
    let bytes = base64url::decode(text).ok()?;
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

/// The protected header, as read: only these members are accepted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub alg: String,
    pub enc: String,
    pub epk: X25519Jwk,
    pub kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cty: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apv: Option<String>,
}

/// RFC 7518 §4.6.2: the Concat KDF (NIST SP 800-56A) with SHA-256, one
/// round (keys up to 256 bits): SHA-256(counter 1 ‖ Z ‖ AlgorithmID ‖
/// PartyUInfo ‖ PartyVInfo ‖ SuppPubInfo = `bits`), each info
/// length-prefixed; the first `bits`/8 bytes.
fn concat_kdf(z: &[u8], enc: &str, apu: &[u8], apv: &[u8], bits: u32) -> Zeroizing<Vec<u8>> {
    let mut input = Zeroizing::new(Vec::with_capacity(64 + apu.len() + apv.len()));
    input.extend_from_slice(&1u32.to_be_bytes());
    input.extend_from_slice(z);
    for part in [enc.as_bytes(), apu, apv] {
        input.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        input.extend_from_slice(part);
    }
    input.extend_from_slice(&bits.to_be_bytes());
    let digest = Sha256Digest::of(&input);
    let len = usize::try_from(bits / 8).unwrap_or(32).min(32);
    Zeroizing::new(digest.as_bytes()[..len].to_vec())
}

fn agree(secret: &[u8; 32], public: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, JweError> {
    let z = Zeroizing::new(x25519_dalek::x25519(*secret, *public));
    // A low-order point gives all zeros: no key agreed.
    if z.iter().all(|b| *b == 0) {
        return Err(JweError::Undecryptable);
    }
    Ok(z)
}

/// Encrypts `plaintext` for `recipient`: a fresh ephemeral key, the header
/// `{"alg":"ECDH-ES","enc":"A256GCM","epk",…,"kid","typ","cty"}`.
pub fn encrypt<R: Random + ?Sized>(
    plaintext: &[u8],
    recipient: &EncryptionPublicKey,
    typ: &str,
    cty: &str,
    rng: &mut R,
) -> Result<String, JweError> {
    let ephemeral = EncryptionKey::generate(rng);
    let header = Header {
        alg: "ECDH-ES".into(),
        enc: "A256GCM".into(),
        epk: X25519Jwk { kid: None, use_: None, ..ephemeral.public().to_jwk() },
        kid: recipient.kid.as_str().to_owned(),
        typ: Some(typ.to_owned()),
        cty: Some(cty.to_owned()),
        apu: None,
        apv: None,
    };
    let encoded = base64url::encode(&serde_json::to_vec(&header).map_err(|_| JweError::Malformed)?);
    let z = agree(ephemeral.secret_bytes(), &recipient.x)?;
    let cek = concat_kdf(&z[..], "A256GCM", b"", b"", 256);
    let mut iv = [0u8; 12];
    rng.fill_bytes(&mut iv);
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &cek[..]).map_err(|_| JweError::Malformed)?);
    let mut sealed = plaintext.to_vec();
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(encoded.as_bytes()), &mut sealed)
        .map_err(|_| JweError::Malformed)?;
    Ok(format!(
        "{encoded}..{}.{}.{}",
        base64url::encode(&iv),
        base64url::encode(&sealed),
        base64url::encode(tag.as_ref())
    ))
}

/// Decrypts a compact JWE made for `key`; the header is checked first.
pub fn decrypt(token: &str, key: &EncryptionKey) -> Result<(Header, Zeroizing<Vec<u8>>), JweError> {
    if token.len() > MAX_JWE_BYTES {
        return Err(JweError::TooLarge);
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [encoded, encrypted_key, iv, ciphertext, tag] = parts[..] else { return Err(JweError::Malformed) };
    let header_bytes = base64url::decode(encoded).map_err(|_| JweError::Malformed)?;
    let header: Header = serde_json::from_slice(&header_bytes)
        .map_err(|e| JweError::Header(e.to_string().chars().take(120).collect()))?;
    if header.alg != "ECDH-ES" || header.enc != "A256GCM" {
        return Err(JweError::Header(format!("alg {} enc {}: only ECDH-ES with A256GCM", header.alg, header.enc)));
    }
    if !encrypted_key.is_empty() {
        return Err(JweError::Header("ECDH-ES (direct) has no encrypted key".into()));
    }
    if header.kid != key.public.kid.as_str() {
        return Err(JweError::OtherRecipient(header.kid.chars().take(64).collect()));
    }
    if header.epk.kty != "OKP" || header.epk.crv != "X25519" {
        return Err(JweError::Header("epk must be an X25519 key".into()));
    }
    let epk = decode_32(&header.epk.x).ok_or_else(|| JweError::Header("epk x is not 32 bytes".into()))?;
    let apu = header.apu.as_deref().map(base64url::decode).transpose().map_err(|_| JweError::Malformed)?;
    let apv = header.apv.as_deref().map(base64url::decode).transpose().map_err(|_| JweError::Malformed)?;
    let iv = base64url::decode(iv).map_err(|_| JweError::Malformed)?;
    let iv = <[u8; 12]>::try_from(iv.as_slice()).map_err(|_| JweError::Malformed)?;
    let mut sealed = base64url::decode(ciphertext).map_err(|_| JweError::Malformed)?;
    let tag = base64url::decode(tag).map_err(|_| JweError::Malformed)?;
    if tag.len() != 16 {
        return Err(JweError::Malformed);
    }
    sealed.extend_from_slice(&tag);
    let z = agree(&key.secret, &epk)?;
    let (apu, apv) = (apu.as_deref().unwrap_or_default(), apv.as_deref().unwrap_or_default());
    let cek = concat_kdf(&z[..], "A256GCM", apu, apv, 256);
    let opening = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &cek[..]).map_err(|_| JweError::Undecryptable)?);
    let plain = opening
        .open_in_place(Nonce::assume_unique_for_key(iv), Aad::from(encoded.as_bytes()), &mut sealed)
        .map_err(|_| JweError::Undecryptable)?;
    let plain = Zeroizing::new(plain.to_vec());
    sealed.iter_mut().for_each(|b| *b = 0);
    Ok((header, plain))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;

    #[test]
    fn the_concat_kdf_gives_rfc_7518_appendix_c() {
        // RFC 7518 C: ECDH-ES with P-256 and A128GCM, apu "Alice", apv "Bob".
        let z: [u8; 32] = [
            158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49, 110, 163, 218, 128,
            106, 72, 246, 218, 167, 121, 140, 254, 144, 196,
        ];
        let key = concat_kdf(&z, "A128GCM", b"Alice", b"Bob", 128);
        assert_eq!(base64url::encode(&key), "VqqN6vgjbSBcIijNcacQGg");
    }

    #[test]
    fn a_jwe_opens_for_its_recipient_only_and_every_altered_part_is_refused() {
        let mut rng = SeededRandom::new(4);
        let center = EncryptionKey::generate(&mut rng);
        let token = encrypt(b"{\"member\":1}", center.public(), "kessai-registration+jwe", "JWT", &mut rng).unwrap();
        let (header, plain) = decrypt(&token, &center).unwrap();
        assert_eq!((&plain[..], header.cty.as_deref()), (&b"{\"member\":1}"[..], Some("JWT")));
        let other = EncryptionKey::generate(&mut rng);
        assert!(matches!(decrypt(&token, &other), Err(JweError::OtherRecipient(_))));
        let parts: Vec<&str> = token.split('.').collect();
        for i in [0, 2, 3, 4] {
            let mut bent: Vec<String> = parts.iter().map(|p| (*p).to_owned()).collect();
            let mut bytes = base64url::decode(&bent[i]).unwrap();
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            bent[i] = base64url::encode(&bytes);
            assert!(decrypt(&bent.join("."), &center).is_err(), "part {i} altered");
        }
        assert_eq!(decrypt("a.b.c", &center).unwrap_err(), JweError::Malformed);
    }

    #[test]
    fn another_algorithm_or_a_low_order_key_is_refused() {
        let mut rng = SeededRandom::new(5);
        let center = EncryptionKey::generate(&mut rng);
        let token = encrypt(b"x", center.public(), "t", "JWT", &mut rng).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let mut header: serde_json::Value = serde_json::from_slice(&base64url::decode(parts[0]).unwrap()).unwrap();
        for (field, value) in [("alg", "ECDH-ES+A256KW"), ("enc", "A128GCM")] {
            let mut h = header.clone();
            h[field] = value.into();
            let bent = format!("{}.{}", base64url::encode(h.to_string().as_bytes()), parts[1..].join("."));
            assert!(matches!(decrypt(&bent, &center), Err(JweError::Header(_))), "{field}");
        }
        header["zip"] = "DEF".into();
        let bent = format!("{}.{}", base64url::encode(header.to_string().as_bytes()), parts[1..].join("."));
        assert!(matches!(decrypt(&bent, &center), Err(JweError::Header(_))), "zip");
        header.as_object_mut().unwrap().remove("zip");
        header["epk"]["x"] = base64url::encode(&[0u8; 32]).into();
        let bent = format!("{}.{}", base64url::encode(header.to_string().as_bytes()), parts[1..].join("."));
        assert_eq!(decrypt(&bent, &center).unwrap_err(), JweError::Undecryptable, "a low-order epk");
    }
}
