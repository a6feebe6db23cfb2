//! Key files: an Ed25519 signing key as PKCS#8 PEM (RFC 5208/5958, RFC
//! 8410), optionally sealed under a passphrase.
//!
//! A sealed file is PEM with the label `KESSAI ENCRYPTED PRIVATE KEY`
//! around this binary layout (all integers big-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `KSK1` |
//! | 4 | 1 | KDF: `01` = Argon2id v1.3 |
//! | 5 | 4 | Argon2 memory, KiB |
//! | 9 | 4 | Argon2 passes |
//! | 13 | 4 | Argon2 lanes |
//! | 17 | 16 | salt |
//! | 33 | 24 | XChaCha20-Poly1305 nonce |
//! | 57 | n+16 | ciphertext of the PKCS#8 DER, with tag |
//!
//! The 32-byte AEAD key is Argon2id(passphrase, salt); the first 57 bytes
//! are the associated data, so the parameters cannot be altered unnoticed.

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use base64ct::{Base64, Encoding};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use zeroize::Zeroizing;

use crate::keys::SigningKey;
use crate::limits::{
    KEYFILE_ARGON2_LANES, KEYFILE_ARGON2_MAX_MEMORY_KIB, KEYFILE_ARGON2_MAX_PASSES, KEYFILE_ARGON2_MEMORY_KIB,
    KEYFILE_ARGON2_PASSES, MAX_KEY_FILE_BYTES,
};
use crate::random::Random;

const PLAIN_LABEL: &str = "PRIVATE KEY";
const SEALED_LABEL: &str = "KESSAI ENCRYPTED PRIVATE KEY";
const MAGIC: &[u8; 4] = b"KSK1";
const KDF_ARGON2ID: u8 = 1;
const HEADER_LEN: usize = 57;

/// A passphrase; wiped on drop, printed as `***`.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    pub fn new(s: String) -> Passphrase {
        Passphrase(Zeroizing::new(s))
    }
    /// The passphrase's text (a password checked against its hash).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Whether two passphrases are the same text.
    pub fn same_as(&self, other: &Passphrase) -> bool {
        self.0 == other.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    #[error("key file is larger than {MAX_KEY_FILE_BYTES} bytes")]
    TooLarge,
    #[error("not a PEM key file")]
    NotPem,
    #[error("PEM label {0:?} is not a private key kessai reads")]
    UnknownLabel(String),
    #[error("the key file is encrypted; a passphrase is needed")]
    PassphraseRequired,
    #[error("the key file is not encrypted, but a passphrase was given")]
    NotEncrypted,
    #[error("wrong passphrase, or the key file was altered")]
    WrongPassphraseOrCorrupt,
    #[error("key file parameters are invalid or beyond limits")]
    BadParameters,
    #[error("not an Ed25519 PKCS#8 private key")]
    BadPkcs8,
}

fn pem_encode(label: &str, der: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(Base64::encode_string(der));
    let mut out = Zeroizing::new(format!("-----BEGIN {label}-----\n"));
    for chunk in b64.as_bytes().chunks(64) {
        // chunks of an ASCII string are ASCII
        out.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pem_decode(text: &str) -> Result<(String, Zeroizing<Vec<u8>>), KeyFileError> {
    let text = text.trim();
    let first = text.lines().next().ok_or(KeyFileError::NotPem)?;
    let label = first.strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")).ok_or(KeyFileError::NotPem)?;
    let end = format!("-----END {label}-----");
    let body_and_end = &text[first.len()..];
    let body = body_and_end.trim_end().strip_suffix(end.as_str()).ok_or(KeyFileError::NotPem)?;
    let b64: Zeroizing<String> = Zeroizing::new(body.split_whitespace().collect());
    let der = Base64::decode_vec(&b64).map_err(|_| KeyFileError::NotPem)?;
    Ok((label.to_owned(), Zeroizing::new(der)))
}

/// PKCS#8 v1 (RFC 8410 §7: the seed only, no public key), the form every
/// tool reads.
fn to_pkcs8(key: &SigningKey) -> Zeroizing<Vec<u8>> {
    let pair = ed25519_dalek::pkcs8::KeypairBytes { secret_key: key.dalek().to_bytes(), public_key: None };
    // Encoding 32 bytes into a fixed-size PKCS#8 structure cannot fail.
    #[allow(clippy::expect_used)]
    let doc = pair.to_pkcs8_der().expect("PKCS#8 encoding of an Ed25519 key");
    Zeroizing::new(doc.as_bytes().to_vec())
}

fn from_pkcs8(der: &[u8]) -> Result<SigningKey, KeyFileError> {
    let inner = ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(|_| KeyFileError::BadPkcs8)?;
    Ok(SigningKey::from_dalek(inner))
}

fn derive_key(
    passphrase: &Passphrase,
    salt: &[u8],
    m_kib: u32,
    t: u32,
    p: u32,
) -> Result<Zeroizing<[u8; 32]>, KeyFileError> {
    if m_kib > KEYFILE_ARGON2_MAX_MEMORY_KIB || t > KEYFILE_ARGON2_MAX_PASSES || p == 0 || p > 16 {
        return Err(KeyFileError::BadParameters);
    }
    let params = Params::new(m_kib, t, p, Some(32)).map_err(|_| KeyFileError::BadParameters)?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.as_bytes(), salt, &mut out[..])
        .map_err(|_| KeyFileError::BadParameters)?;
    Ok(out)
}

/// The key as unencrypted PKCS#8 PEM (`PRIVATE KEY`).
pub fn encode_plain(key: &SigningKey) -> Zeroizing<String> {
    pem_encode(PLAIN_LABEL, &to_pkcs8(key))
}

/// The key sealed under a passphrase with the default Argon2id cost.
pub fn encode_sealed<R: Random + ?Sized>(key: &SigningKey, passphrase: &Passphrase, rng: &mut R) -> Zeroizing<String> {
    encode_sealed_with_cost(key, passphrase, rng, KEYFILE_ARGON2_MEMORY_KIB, KEYFILE_ARGON2_PASSES)
}

/// As [`encode_sealed`] with an explicit cost (tests use a cheap one).
pub fn encode_sealed_with_cost<R: Random + ?Sized>(
    key: &SigningKey,
    passphrase: &Passphrase,
    rng: &mut R,
    memory_kib: u32,
    passes: u32,
) -> Zeroizing<String> {
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.push(KDF_ARGON2ID);
    header.extend_from_slice(&memory_kib.to_be_bytes());
    header.extend_from_slice(&passes.to_be_bytes());
    header.extend_from_slice(&KEYFILE_ARGON2_LANES.to_be_bytes());
    let mut salt_nonce = [0u8; 40];
    rng.fill_bytes(&mut salt_nonce);
    header.extend_from_slice(&salt_nonce);
    // Our own constants are within the limits derive_key enforces.
    #[allow(clippy::expect_used)]
    let aead_key = derive_key(passphrase, &salt_nonce[..16], memory_kib, passes, KEYFILE_ARGON2_LANES)
        .expect("kessai's own Argon2 parameters are valid");
    let cipher = XChaCha20Poly1305::new(&(*aead_key).into());
    let nonce = nonce_from(&salt_nonce[16..]);
    let plain = to_pkcs8(key);
    #[allow(clippy::expect_used)]
    let sealed = cipher
        .encrypt(&nonce, Payload { msg: &plain, aad: &header })
        .expect("XChaCha20-Poly1305 encryption of a small buffer cannot fail");
    let mut blob = Zeroizing::new(header);
    blob.extend_from_slice(&sealed);
    pem_encode(SEALED_LABEL, &blob)
}

/// Reads a key file; `passphrase` must be given exactly when it is sealed.
pub fn decode(text: &str, passphrase: Option<&Passphrase>) -> Result<SigningKey, KeyFileError> {
    if text.len() > MAX_KEY_FILE_BYTES {
        return Err(KeyFileError::TooLarge);
    }
    let (label, der) = pem_decode(text)?;
    match (label.as_str(), passphrase) {
        (PLAIN_LABEL, None) => from_pkcs8(&der),
        (PLAIN_LABEL, Some(_)) => Err(KeyFileError::NotEncrypted),
        (SEALED_LABEL, None) => Err(KeyFileError::PassphraseRequired),
        (SEALED_LABEL, Some(p)) => open_sealed(&der, p),
        (other, _) => Err(KeyFileError::UnknownLabel(other.chars().take(40).collect())),
    }
}

/// Whether a key file is sealed under a passphrase.
pub fn is_sealed(text: &str) -> bool {
    text.trim_start().starts_with(&format!("-----BEGIN {SEALED_LABEL}-----"))
}

/// The 24 bytes at a fixed offset of our own layout.
fn nonce_from(bytes: &[u8]) -> XNonce {
    let mut n = [0u8; 24];
    n.copy_from_slice(&bytes[..24]);
    XNonce::from(n)
}

fn open_sealed(blob: &[u8], passphrase: &Passphrase) -> Result<SigningKey, KeyFileError> {
    if blob.len() < HEADER_LEN + 16 || &blob[..4] != MAGIC || blob[4] != KDF_ARGON2ID {
        return Err(KeyFileError::BadParameters);
    }
    let be = |at: usize| u32::from_be_bytes([blob[at], blob[at + 1], blob[at + 2], blob[at + 3]]);
    let (m_kib, t, p) = (be(5), be(9), be(13));
    let aead_key = derive_key(passphrase, &blob[17..33], m_kib, t, p)?;
    let cipher = XChaCha20Poly1305::new(&(*aead_key).into());
    let nonce = nonce_from(&blob[33..57]);
    let plain = cipher
        .decrypt(&nonce, Payload { msg: &blob[HEADER_LEN..], aad: &blob[..HEADER_LEN] })
        .map_err(|_| KeyFileError::WrongPassphraseOrCorrupt)?;
    let plain = Zeroizing::new(plain);
    from_pkcs8(&plain)
}
