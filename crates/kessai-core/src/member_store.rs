//! The member keystore (seed 003/004, FIG. 10 and 11): a member's signing
//! key under two passwords, and the member's purchase history.
//!
//! The signing key is sealed under **password B**; that sealed key, the
//! verification key and the history are sealed together under **password
//! A**. Password A alone opens the history (offline, S11–S12); signing needs
//! A and then B (S13–S14). In the [0028] variant, chosen at creation, the
//! key is under password A only.
//!
//! The file, all integers big-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `KMS1` |
//! | 4 | 1 | variant: `01` passwords A and B, `02` password A only |
//! | 5 | 1 | key kind: `01` Ed25519 |
//! | 6 | 12 | Argon2id (v1.3) for A: memory KiB, passes, lanes |
//! | 18 | 16 | salt A |
//! | 34 | 24 | XChaCha20-Poly1305 nonce A |
//! | 58 | n+16 | layer A: the sealed body, with tag |
//!
//! Layer A's key is Argon2id(A, salt A); bytes 0–57 are its associated
//! data. Its plaintext, the body: verification key (32), the length of the
//! key block (4), the key block, then JSON (UTF-8): `{"history": [...],
//! "pending_registration"?: {...}, "pending_key_replacement"?: {...}}` (a
//! bare history array is read too): messages signed and kept under
//! password A until the center has them ([`PendingMessage`]). The key block of
//! variant `01` is layer B:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 12 | Argon2id for B: memory KiB, passes, lanes |
//! | 12 | 16 | salt B |
//! | 28 | 24 | nonce B |
//! | 52 | 32+16 | the Ed25519 seed (RFC 8032 secret), sealed, with tag |
//!
//! whose associated data is the file's bytes 0–5 and the block's 0–51; the
//! key block of variant `02` is the seed itself (under layer A only).
//! Changing any byte, parameter or layer makes opening fail; nothing here
//! writes a file (the wallet writes it atomically, mode 0600).

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::digest::Sha256Digest;
use crate::keyfile::Passphrase;
use crate::keys::{PublicKey, SigningKey};
use crate::limits::{
    KEYFILE_ARGON2_LANES, KEYFILE_ARGON2_MAX_MEMORY_KIB, KEYFILE_ARGON2_MAX_PASSES, KEYFILE_ARGON2_MEMORY_KIB,
    KEYFILE_ARGON2_PASSES,
};
use crate::money::Money;
use crate::random::Random;
use crate::time::Timestamp;

const MAGIC: &[u8; 4] = b"KMS1";
const KIND_ED25519: u8 = 1;
const HEADER_LEN: usize = 58;
const LAYER_B_HEADER_LEN: usize = 52;
const TAG_LEN: usize = 16;
const SEED_LEN: usize = 32;
/// Largest keystore file read: the history is bounded by this too.
pub const MAX_MEMBER_STORE_BYTES: usize = 4 * 1024 * 1024;

/// Which passwords guard the signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// FIG. 10(a): the key under B, and that with the history under A.
    TwoPasswords,
    /// [0028]: the key and the history under A alone.
    PasswordAOnly,
}

impl Variant {
    fn byte(self) -> u8 {
        match self {
            Variant::TwoPasswords => 1,
            Variant::PasswordAOnly => 2,
        }
    }

    fn from_byte(b: u8) -> Result<Variant, MemberStoreError> {
        match b {
            1 => Ok(Variant::TwoPasswords),
            2 => Ok(Variant::PasswordAOnly),
            _ => Err(MemberStoreError::NotAKeystore),
        }
    }
}

/// The Argon2id cost of one password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    pub memory_kib: u32,
    pub passes: u32,
}

impl Default for Cost {
    /// The key files' cost: 64 MiB, 3 passes.
    fn default() -> Cost {
        Cost { memory_kib: KEYFILE_ARGON2_MEMORY_KIB, passes: KEYFILE_ARGON2_PASSES }
    }
}

/// Why a keystore could not be made or opened. Whether a password was
/// wrong or the file altered cannot be told apart, by design.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemberStoreError {
    #[error("not a member keystore (or one of a kind this wallet does not know)")]
    NotAKeystore,
    #[error("the keystore is truncated")]
    Truncated,
    #[error("the keystore is larger than {MAX_MEMBER_STORE_BYTES} bytes")]
    TooLarge,
    #[error("the keystore's password parameters are invalid or beyond limits")]
    BadParameters,
    #[error("wrong password A, or the keystore was altered")]
    WrongPasswordA,
    #[error("wrong password B, or the signing key was altered")]
    WrongPasswordB,
    #[error("this keystore's signing key is under password A only; no password B is used")]
    NoPasswordB,
    #[error("the keystore's contents are malformed: {0}")]
    Malformed(String),
}

/// One purchase in the member's history (FIG. 10: 購入履歴).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryEntry {
    pub at: Timestamp,
    pub store: String,
    pub order_id: String,
    pub amount: Money,
    pub settlement_id: String,
}

/// A message signed and kept under password A until the center has it: a
/// registration ([0023], the first method) or a key replacement under way.
/// The JWS and the Idempotency-Key it is sent with, the same at every
/// attempt, so a lost answer is asked again rather than acted on twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingMessage {
    pub message: String,
    pub idempotency_key: String,
}

/// The JSON after the key block.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Contents {
    history: Vec<HistoryEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending_registration: Option<PendingMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending_key_replacement: Option<PendingMessage>,
}

/// A keystore opened with password A: the verification key and the
/// history, readable; the signing key still sealed under B (or, [0028],
/// open).
pub struct Opened {
    variant: Variant,
    header: [u8; HEADER_LEN],
    key_a: Zeroizing<[u8; 32]>,
    public: PublicKey,
    key_block: Zeroizing<Vec<u8>>,
    pub history: Vec<HistoryEntry>,
    pub pending_registration: Option<PendingMessage>,
    /// In the keystore of a new key (the wallet's `member-next.kms`): the
    /// replacement the current key signed for it, until the center has it.
    pub pending_key_replacement: Option<PendingMessage>,
}

impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("variant", &self.variant)
            .field("kid", self.public.kid())
            .field("history", &self.history.len())
            .field("pending_registration", &self.pending_registration.is_some())
            .field("pending_key_replacement", &self.pending_key_replacement.is_some())
            .finish_non_exhaustive()
    }
}

/// The signing key's seed: `randomness` (32 bytes from the OS) mixed with
/// what the member typed, if anything (S3–S4). Never the typed text alone,
/// so a weak text cannot make a weak key.
pub fn seed_from(randomness: &[u8; 32], typed: Option<&str>) -> Zeroizing<[u8; 32]> {
    let mut input = Zeroizing::new(b"kessai-member-seed\0".to_vec());
    input.extend_from_slice(randomness);
    if let Some(text) = typed {
        input.push(0);
        input.extend_from_slice(text.as_bytes());
    }
    Zeroizing::new(*Sha256Digest::of(&input).as_bytes())
}

/// Makes a keystore for the key whose seed is `seed`, with an empty
/// history: sealed under `b` then `a`, or (`b` = `None`, [0028]) under `a`
/// alone.
pub fn create<R: Random + ?Sized>(
    seed: &[u8; 32],
    a: &Passphrase,
    b: Option<&Passphrase>,
    cost: Cost,
    rng: &mut R,
) -> Result<(Zeroizing<Vec<u8>>, PublicKey), MemberStoreError> {
    let variant = if b.is_some() { Variant::TwoPasswords } else { Variant::PasswordAOnly };
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(MAGIC);
    header[4] = variant.byte();
    header[5] = KIND_ED25519;
    put_cost(&mut header[6..18], cost);
    rng.fill_bytes(&mut header[18..58]);
    let key_block = match b {
        Some(b) => seal_layer_b(&header[..6], seed, b, cost, rng)?,
        None => Zeroizing::new(seed.to_vec()),
    };
    let public = SigningKey::from_seed(seed).public();
    let key_a = derive(a, &header[18..34], cost)?;
    let opened = Opened {
        variant,
        header,
        key_a,
        public: public.clone(),
        key_block,
        history: Vec::new(),
        pending_registration: None,
        pending_key_replacement: None,
    };
    Ok((opened.seal_with(header)?, public))
}

/// Opens a keystore with password A: the history and the verification key.
pub fn open(file: &[u8], a: &Passphrase) -> Result<Opened, MemberStoreError> {
    if file.len() > MAX_MEMBER_STORE_BYTES {
        return Err(MemberStoreError::TooLarge);
    }
    if !MAGIC.starts_with(&file[..file.len().min(MAGIC.len())]) {
        return Err(MemberStoreError::NotAKeystore);
    }
    if file.len() < 6 {
        return Err(MemberStoreError::Truncated);
    }
    if file[5] != KIND_ED25519 {
        return Err(MemberStoreError::NotAKeystore);
    }
    let variant = Variant::from_byte(file[4])?;
    if file.len() < HEADER_LEN + TAG_LEN {
        return Err(MemberStoreError::Truncated);
    }
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&file[..HEADER_LEN]);
    let key_a = derive(a, &header[18..34], get_cost(&header[6..18])?)?;
    open_body(file, variant, header, key_a)
}

/// Layer A of `file` opened with its key.
fn open_body(
    file: &[u8],
    variant: Variant,
    header: [u8; HEADER_LEN],
    key_a: Zeroizing<[u8; 32]>,
) -> Result<Opened, MemberStoreError> {
    let body = XChaCha20Poly1305::new(&(*key_a).into())
        .decrypt(&nonce(&header[34..58]), Payload { msg: &file[HEADER_LEN..], aad: &header })
        .map_err(|_| MemberStoreError::WrongPasswordA)?;
    let body = Zeroizing::new(body);
    let malformed = |why: &str| MemberStoreError::Malformed(why.to_owned());
    if body.len() < 36 {
        return Err(malformed("the body is too short"));
    }
    let mut public = [0u8; 32];
    public.copy_from_slice(&body[..32]);
    let public = PublicKey::from_bytes(&public).map_err(|_| malformed("the verification key"))?;
    let block_len = usize::try_from(u32::from_be_bytes([body[32], body[33], body[34], body[35]]))
        .map_err(|_| malformed("the key block's length"))?;
    let expected = match variant {
        Variant::TwoPasswords => LAYER_B_HEADER_LEN + SEED_LEN + TAG_LEN,
        Variant::PasswordAOnly => SEED_LEN,
    };
    if block_len != expected || body.len() < 36 + block_len {
        return Err(malformed("the key block's length"));
    }
    let key_block = Zeroizing::new(body[36..36 + block_len].to_vec());
    let json = &body[36 + block_len..];
    let malformed_json = |e: serde_json::Error| MemberStoreError::Malformed(e.to_string());
    let contents = match json.first() {
        Some(b'[') => Contents {
            history: serde_json::from_slice(json).map_err(malformed_json)?,
            pending_registration: None,
            pending_key_replacement: None,
        },
        _ => serde_json::from_slice(json).map_err(malformed_json)?,
    };
    Ok(Opened {
        variant,
        header,
        key_a,
        public,
        key_block,
        history: contents.history,
        pending_registration: contents.pending_registration,
        pending_key_replacement: contents.pending_key_replacement,
    })
}

impl Opened {
    /// The keystore as `file` now holds it (another process may have
    /// added to its history), opened with the key password A gave this
    /// one, so password A need not be kept. Refused if `file` is under
    /// another password A, salt or parameters than this one.
    pub fn reopen(&self, file: &[u8]) -> Result<Opened, MemberStoreError> {
        if file.len() > MAX_MEMBER_STORE_BYTES {
            return Err(MemberStoreError::TooLarge);
        }
        if file.len() < HEADER_LEN + TAG_LEN {
            return Err(MemberStoreError::Truncated);
        }
        if file[..34] != self.header[..34] {
            return Err(MemberStoreError::WrongPasswordA);
        }
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&file[..HEADER_LEN]);
        open_body(file, self.variant, header, self.key_a.clone())
    }

    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// The member's verification key (its kid is the JWK thumbprint).
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The signing key: opened with password B (S13–S14); in the [0028]
    /// variant, already open (`b` must then be `None`). The key opened
    /// must be the one whose verification key the keystore holds.
    pub fn signing_key(&self, b: Option<&Passphrase>) -> Result<SigningKey, MemberStoreError> {
        let seed: Zeroizing<[u8; 32]> = match (self.variant, b) {
            (Variant::TwoPasswords, Some(b)) => open_layer_b(&self.header[..6], &self.key_block, b)?,
            (Variant::TwoPasswords, None) => return Err(MemberStoreError::WrongPasswordB),
            (Variant::PasswordAOnly, Some(_)) => return Err(MemberStoreError::NoPasswordB),
            (Variant::PasswordAOnly, None) => {
                let mut seed = Zeroizing::new([0u8; 32]);
                seed.copy_from_slice(&self.key_block[..SEED_LEN]);
                seed
            }
        };
        let key = SigningKey::from_seed(&seed);
        if key.public() != self.public {
            return Err(MemberStoreError::Malformed("the signing key is not the verification key's".into()));
        }
        Ok(key)
    }

    /// Password A changed (the member knew the old one, which opened this):
    /// a new salt, the same cost; seal the keystore again to keep it. The
    /// key block is untouched, so password B is unchanged.
    pub fn change_password_a<R: Random + ?Sized>(
        &mut self,
        new_a: &Passphrase,
        rng: &mut R,
    ) -> Result<(), MemberStoreError> {
        let cost = get_cost(&self.header[6..18])?;
        rng.fill_bytes(&mut self.header[18..34]);
        self.key_a = derive(new_a, &self.header[18..34], cost)?;
        Ok(())
    }

    /// Password B changed: the signing key opened with the old one and
    /// sealed under the new one (a new salt and nonce, the same cost).
    pub fn change_password_b<R: Random + ?Sized>(
        &mut self,
        old_b: &Passphrase,
        new_b: &Passphrase,
        rng: &mut R,
    ) -> Result<(), MemberStoreError> {
        if self.variant != Variant::TwoPasswords {
            return Err(MemberStoreError::NoPasswordB);
        }
        let seed = open_layer_b(&self.header[..6], &self.key_block, old_b)?;
        let cost = get_cost(&self.key_block[..12])?;
        self.key_block = seal_layer_b(&self.header[..6], &seed, new_b, cost, rng)?;
        Ok(())
    }

    /// The keystore again, as it now stands (a history entry added, say):
    /// layer A sealed anew under the same password and parameters with a
    /// fresh random nonce; the key block unchanged.
    pub fn seal_random<R: Random + ?Sized>(&self, rng: &mut R) -> Result<Zeroizing<Vec<u8>>, MemberStoreError> {
        let mut header = self.header;
        rng.fill_bytes(&mut header[34..58]);
        self.seal_with(header)
    }

    fn seal_with(&self, header: [u8; HEADER_LEN]) -> Result<Zeroizing<Vec<u8>>, MemberStoreError> {
        let contents = Contents {
            history: self.history.clone(),
            pending_registration: self.pending_registration.clone(),
            pending_key_replacement: self.pending_key_replacement.clone(),
        };
        let json =
            Zeroizing::new(serde_json::to_vec(&contents).map_err(|e| MemberStoreError::Malformed(e.to_string()))?);
        let mut body = Zeroizing::new(Vec::with_capacity(36 + self.key_block.len() + json.len()));
        body.extend_from_slice(self.public.as_bytes());
        let block_len = u32::try_from(self.key_block.len()).map_err(|_| MemberStoreError::TooLarge)?;
        body.extend_from_slice(&block_len.to_be_bytes());
        body.extend_from_slice(&self.key_block);
        body.extend_from_slice(&json);
        let sealed = XChaCha20Poly1305::new(&(*self.key_a).into())
            .encrypt(&nonce(&header[34..58]), Payload { msg: &body, aad: &header })
            .map_err(|_| MemberStoreError::TooLarge)?;
        let mut file = Zeroizing::new(header.to_vec());
        file.extend_from_slice(&sealed);
        if file.len() > MAX_MEMBER_STORE_BYTES {
            return Err(MemberStoreError::TooLarge);
        }
        Ok(file)
    }
}

fn put_cost(out: &mut [u8], cost: Cost) {
    out[..4].copy_from_slice(&cost.memory_kib.to_be_bytes());
    out[4..8].copy_from_slice(&cost.passes.to_be_bytes());
    out[8..12].copy_from_slice(&KEYFILE_ARGON2_LANES.to_be_bytes());
}

fn get_cost(bytes: &[u8]) -> Result<Cost, MemberStoreError> {
    let be = |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    if be(8) != KEYFILE_ARGON2_LANES {
        return Err(MemberStoreError::BadParameters);
    }
    Ok(Cost { memory_kib: be(0), passes: be(4) })
}

fn derive(password: &Passphrase, salt: &[u8], cost: Cost) -> Result<Zeroizing<[u8; 32]>, MemberStoreError> {
    if cost.memory_kib > KEYFILE_ARGON2_MAX_MEMORY_KIB || cost.passes == 0 || cost.passes > KEYFILE_ARGON2_MAX_PASSES {
        return Err(MemberStoreError::BadParameters);
    }
    let params = Params::new(cost.memory_kib, cost.passes, KEYFILE_ARGON2_LANES, Some(32))
        .map_err(|_| MemberStoreError::BadParameters)?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password.as_bytes(), salt, &mut out[..])
        .map_err(|_| MemberStoreError::BadParameters)?;
    Ok(out)
}

fn nonce(bytes: &[u8]) -> XNonce {
    let mut n = [0u8; 24];
    n.copy_from_slice(&bytes[..24]);
    XNonce::from(n)
}

fn seal_layer_b<R: Random + ?Sized>(
    file_head: &[u8],
    seed: &[u8; 32],
    b: &Passphrase,
    cost: Cost,
    rng: &mut R,
) -> Result<Zeroizing<Vec<u8>>, MemberStoreError> {
    let mut head = [0u8; LAYER_B_HEADER_LEN];
    put_cost(&mut head[..12], cost);
    rng.fill_bytes(&mut head[12..52]);
    let key_b = derive(b, &head[12..28], cost)?;
    let aad = [file_head, &head[..]].concat();
    let sealed = XChaCha20Poly1305::new(&(*key_b).into())
        .encrypt(&nonce(&head[28..52]), Payload { msg: &seed[..], aad: &aad })
        .map_err(|_| MemberStoreError::BadParameters)?;
    let mut block = Zeroizing::new(head.to_vec());
    block.extend_from_slice(&sealed);
    Ok(block)
}

fn open_layer_b(file_head: &[u8], block: &[u8], b: &Passphrase) -> Result<Zeroizing<[u8; 32]>, MemberStoreError> {
    let head = &block[..LAYER_B_HEADER_LEN];
    let key_b = derive(b, &head[12..28], get_cost(&head[..12])?)?;
    let aad = [file_head, head].concat();
    let plain = XChaCha20Poly1305::new(&(*key_b).into())
        .decrypt(&nonce(&head[28..52]), Payload { msg: &block[LAYER_B_HEADER_LEN..], aad: &aad })
        .map_err(|_| MemberStoreError::WrongPasswordB)?;
    let plain = Zeroizing::new(plain);
    let mut seed = Zeroizing::new([0u8; 32]);
    if plain.len() != SEED_LEN {
        return Err(MemberStoreError::Malformed("the sealed seed's length".into()));
    }
    seed.copy_from_slice(&plain);
    Ok(seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;

    /// Cheap Argon2id for tests.
    const CHEAP: Cost = Cost { memory_kib: 64, passes: 1 };

    fn pw(s: &str) -> Passphrase {
        Passphrase::new(s.to_owned())
    }

    fn entry(n: u64) -> HistoryEntry {
        HistoryEntry {
            at: Timestamp::from_unix_s(1_795_000_000 + n),
            store: "kessai-mall".into(),
            order_id: format!("ord-{n}"),
            amount: Money::new(1_200, crate::money::Currency::JPY).unwrap(),
            settlement_id: format!("stl_{n:032x}"),
        }
    }

    fn made(variant: Variant) -> (Zeroizing<Vec<u8>>, PublicKey) {
        let mut rng = SeededRandom::new(7);
        let seed = seed_from(&[3; 32], Some("a phrase the member typed"));
        let b = pw("password B");
        let b = (variant == Variant::TwoPasswords).then_some(&b);
        create(&seed, &pw("password A"), b, CHEAP, &mut rng).unwrap()
    }

    #[test]
    fn password_a_opens_the_history_and_a_then_b_opens_the_signing_key() {
        let (file, public) = made(Variant::TwoPasswords);
        let mut opened = open(&file, &pw("password A")).unwrap();
        assert!(opened.history.is_empty());
        assert_eq!(opened.public(), &public);
        opened.history.push(entry(1));
        let file = opened.seal_random(&mut SeededRandom::new(8)).unwrap();
        let again = open(&file, &pw("password A")).unwrap();
        assert_eq!(again.history, vec![entry(1)], "A alone reads the history");
        let key = again.signing_key(Some(&pw("password B"))).unwrap();
        assert_eq!(key.public(), public);
        assert!(public.verify(b"instruction", &key.sign(b"instruction")));
        assert_eq!(again.signing_key(None).unwrap_err(), MemberStoreError::WrongPasswordB, "A alone cannot sign");
        assert_eq!(again.signing_key(Some(&pw("wrong"))).unwrap_err(), MemberStoreError::WrongPasswordB);
    }

    #[test]
    fn b_without_a_opens_nothing_and_a_wrong_a_reads_nothing() {
        let (file, _) = made(Variant::TwoPasswords);
        assert_eq!(open(&file, &pw("password B")).unwrap_err(), MemberStoreError::WrongPasswordA);
        assert_eq!(open(&file, &pw("")).unwrap_err(), MemberStoreError::WrongPasswordA);
    }

    #[test]
    fn every_altered_byte_of_either_layer_is_refused() {
        let (file, _) = made(Variant::TwoPasswords);
        for at in 0..file.len() {
            let mut bent = file.to_vec();
            bent[at] ^= 0x01;
            match open(&bent, &pw("password A")) {
                Err(_) => {}
                Ok(o) => panic!("byte {at} altered, yet it opened: {o:?}"),
            }
        }
        // Layer B altered inside a correctly resealed layer A.
        let opened = open(&file, &pw("password A")).unwrap();
        for at in 0..opened.key_block.len() {
            let mut bent = Opened { key_block: opened.key_block.clone(), ..clone_opened(&opened) };
            bent.key_block[at] ^= 0x01;
            let resealed = bent.seal_random(&mut SeededRandom::new(9)).unwrap();
            let reopened = open(&resealed, &pw("password A")).unwrap();
            assert!(reopened.signing_key(Some(&pw("password B"))).is_err(), "key block byte {at}");
        }
    }

    fn clone_opened(o: &Opened) -> Opened {
        Opened {
            variant: o.variant,
            header: o.header,
            key_a: o.key_a.clone(),
            public: o.public.clone(),
            key_block: o.key_block.clone(),
            history: o.history.clone(),
            pending_registration: o.pending_registration.clone(),
            pending_key_replacement: o.pending_key_replacement.clone(),
        }
    }

    #[test]
    fn a_truncated_file_or_changed_parameters_are_clear_errors() {
        let (file, _) = made(Variant::TwoPasswords);
        for len in [0, 3, 5, 40, HEADER_LEN, file.len() - 1] {
            let e = open(&file[..len], &pw("password A")).unwrap_err();
            assert!(matches!(e, MemberStoreError::Truncated | MemberStoreError::WrongPasswordA), "{len} bytes: {e:?}");
        }
        let mut costly = file.to_vec();
        costly[6..10].copy_from_slice(&(KEYFILE_ARGON2_MAX_MEMORY_KIB + 1).to_be_bytes());
        assert_eq!(open(&costly, &pw("password A")).unwrap_err(), MemberStoreError::BadParameters);
        assert_eq!(open(b"KSK1 not this", &pw("password A")).unwrap_err(), MemberStoreError::NotAKeystore);
    }

    #[test]
    fn either_password_changes_without_touching_the_key_or_the_history() {
        let (file, public) = made(Variant::TwoPasswords);
        let mut rng = SeededRandom::new(11);
        let mut opened = open(&file, &pw("password A")).unwrap();
        opened.history.push(entry(1));
        opened.change_password_a(&pw("new A"), &mut rng).unwrap();
        let file = opened.seal_random(&mut rng).unwrap();
        assert_eq!(open(&file, &pw("password A")).unwrap_err(), MemberStoreError::WrongPasswordA);
        let mut opened = open(&file, &pw("new A")).unwrap();
        assert_eq!(opened.history, vec![entry(1)]);
        assert_eq!(opened.signing_key(Some(&pw("password B"))).unwrap().public(), public, "B is unchanged");
        assert_eq!(
            opened.change_password_b(&pw("not B"), &pw("new B"), &mut rng).unwrap_err(),
            MemberStoreError::WrongPasswordB
        );
        opened.change_password_b(&pw("password B"), &pw("new B"), &mut rng).unwrap();
        let file = opened.seal_random(&mut rng).unwrap();
        let opened = open(&file, &pw("new A")).unwrap();
        assert_eq!(opened.signing_key(Some(&pw("password B"))).unwrap_err(), MemberStoreError::WrongPasswordB);
        assert_eq!(opened.signing_key(Some(&pw("new B"))).unwrap().public(), public, "the same key");
        assert_eq!(opened.history, vec![entry(1)]);
    }

    #[test]
    fn the_0028_variant_signs_with_password_a_alone() {
        let (file, public) = made(Variant::PasswordAOnly);
        let opened = open(&file, &pw("password A")).unwrap();
        assert_eq!(opened.variant(), Variant::PasswordAOnly);
        assert_eq!(opened.signing_key(None).unwrap().public(), public);
        assert_eq!(opened.signing_key(Some(&pw("password B"))).unwrap_err(), MemberStoreError::NoPasswordB);
    }

    #[test]
    fn the_seed_mixes_the_typed_text_into_randomness() {
        assert_ne!(*seed_from(&[1; 32], Some("x")), *seed_from(&[2; 32], Some("x")), "randomness matters");
        assert_ne!(*seed_from(&[1; 32], Some("x")), *seed_from(&[1; 32], Some("y")), "the text matters");
        assert_ne!(*seed_from(&[1; 32], None), *seed_from(&[1; 32], Some("")));
    }

    #[test]
    fn a_kept_registration_is_read_with_password_a_only_and_survives_a_new_password_a() {
        let (file, _) = made(Variant::TwoPasswords);
        let mut opened = open(&file, &pw("password A")).unwrap();
        assert_eq!(opened.pending_registration, None);
        let pending = PendingMessage { message: "a.b.c".into(), idempotency_key: "w-reg-1".into() };
        opened.pending_registration = Some(pending.clone());
        opened.history.push(entry(1));
        opened.change_password_a(&pw("new A"), &mut SeededRandom::new(4)).unwrap();
        let file = opened.seal_random(&mut SeededRandom::new(5)).unwrap();
        assert_eq!(open(&file, &pw("password A")).unwrap_err(), MemberStoreError::WrongPasswordA);
        let again = open(&file, &pw("new A")).unwrap();
        assert_eq!(again.pending_registration, Some(pending));
        assert_eq!(again.history, vec![entry(1)]);
    }

    #[test]
    fn a_body_with_a_bare_history_array_still_opens_and_unknown_fields_do_not() {
        let (file, _) = made(Variant::TwoPasswords);
        let opened = open(&file, &pw("password A")).unwrap();
        let with_json = |json: &[u8]| {
            let mut body = opened.public.as_bytes().to_vec();
            body.extend_from_slice(&u32::try_from(opened.key_block.len()).unwrap().to_be_bytes());
            body.extend_from_slice(&opened.key_block);
            body.extend_from_slice(json);
            let sealed = XChaCha20Poly1305::new(&(*opened.key_a).into())
                .encrypt(&nonce(&opened.header[34..58]), Payload { msg: &body, aad: &opened.header })
                .unwrap();
            [&opened.header[..], &sealed].concat()
        };
        let history = serde_json::to_vec(&vec![entry(2)]).unwrap();
        assert_eq!(open(&with_json(&history), &pw("password A")).unwrap().history, vec![entry(2)]);
        let unknown = br#"{"history": [], "something": 1}"#;
        assert!(matches!(open(&with_json(unknown), &pw("password A")), Err(MemberStoreError::Malformed(_))));
    }

    #[test]
    fn reopen_reads_the_file_as_it_now_stands_without_password_a() {
        let (file, _) = made(Variant::TwoPasswords);
        let held = open(&file, &pw("password A")).unwrap();
        let mut other = open(&file, &pw("password A")).unwrap();
        other.history.push(entry(1));
        let newer = other.seal_random(&mut SeededRandom::new(6)).unwrap();
        assert_eq!(held.reopen(&newer).unwrap().history, vec![entry(1)], "what another writer added");
        let mut bent = newer.to_vec();
        let last = bent.len() - 1;
        bent[last] ^= 1;
        assert_eq!(held.reopen(&bent).unwrap_err(), MemberStoreError::WrongPasswordA);
        other.change_password_a(&pw("new A"), &mut SeededRandom::new(8)).unwrap();
        let renamed = other.seal_random(&mut SeededRandom::new(9)).unwrap();
        assert_eq!(held.reopen(&renamed).unwrap_err(), MemberStoreError::WrongPasswordA, "a new password A");
    }
}
