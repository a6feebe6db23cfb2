//! Issuer master keys at rest, sealed under the center's key-encryption key
//! (KEK), and the keys derived from the KEK.
//!
//! File: `KMK1` ‖ nonce 24 ‖ XChaCha20-Poly1305(JSON), associated data
//! `kessai-master-keys`. JSON: `{"<kvn>": {"enc": hex, "mac": hex, "dek": hex}}`.
//! The KEK (32 bytes, hex in a file of mode 0600 or in `KESSAI_CENTER_KEK`)
//! never touches the database; every center instance is given the same one.

use std::collections::BTreeMap;

use kessai_core::random::Random;
use kessai_scp03::Aes128Key;
use kessai_scp03::diversify::MasterKeys;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::security::StateKey;

const MAGIC: &[u8; 4] = b"KMK1";
const AAD: &[u8] = b"kessai-master-keys";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeystoreError {
    #[error("the key-encryption key must be 64 hex digits (32 bytes)")]
    BadKek,
    #[error("the master key file is not a sealed kessai key file, or the KEK is wrong")]
    CannotOpen,
    #[error("the master key file holds an invalid key: {0}")]
    BadKey(String),
}

/// The key-encryption key. Zeroized on drop, printed as `***`.
#[derive(Clone)]
pub struct Kek(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(***)")
    }
}

impl Kek {
    pub fn parse_hex(text: &str) -> Result<Kek, KeystoreError> {
        let bytes = Zeroizing::new(hex::decode(text.trim()).map_err(|_| KeystoreError::BadKek)?);
        let mut key = Zeroizing::new([0u8; 32]);
        if bytes.len() != 32 {
            return Err(KeystoreError::BadKek);
        }
        key.copy_from_slice(&bytes);
        Ok(Kek(key))
    }

    pub fn generate<R: Random + ?Sized>(rng: &mut R) -> Kek {
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut key[..]);
        Kek(key)
    }

    /// The KEK's bytes, for sealing at rest (`kessai_core::at_rest`).
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(*self.0))
    }

    /// The key that seals SCP03 host state between steps, the same on every
    /// instance given this KEK.
    pub fn state_key(&self) -> StateKey {
        let digest = Sha256::new().chain_update(b"kessai-scp-state-key\0").chain_update(*self.0).finalize();
        let mut key = [0u8; 32];
        key.copy_from_slice(&digest);
        StateKey::from_bytes(key)
    }

    /// What identifies this KEK without revealing it: SHA-256 under a
    /// label of its own, hex (recorded in the database, `crate::key_set`).
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::new().chain_update(b"kessai-kek-fingerprint\0").chain_update(*self.0).finalize())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Triple {
    enc: Zeroizing<String>,
    mac: Zeroizing<String>,
    dek: Zeroizing<String>,
}

/// What identifies a set of issuer master keys without revealing them:
/// for each key version, `KVN:` and SHA-256 under a label of its own over
/// the version and its three keys' check values
/// (`kessai_scp03::diversify::check_value`), hex; comma-separated in
/// version order. A token computes the check values with the keys inside,
/// so keys in memory and the same keys in an HSM have one fingerprint; a
/// version added later extends it ([`versions_of`]).
pub fn issuer_keys_fingerprint(check_values: &BTreeMap<u8, crate::security::CheckValues>) -> String {
    let versions: Vec<String> = check_values
        .iter()
        .map(|(version, values)| {
            let mut digest = Sha256::new().chain_update(b"kessai-issuer-key-version-v2\0").chain_update([*version]);
            for value in values {
                digest = digest.chain_update(value);
            }
            format!("{version}:{}", hex::encode(digest.finalize()))
        })
        .collect();
    versions.join(",")
}

/// The versions of an [`issuer_keys_fingerprint`] and each one's
/// fingerprint; `None` for another form (an earlier one).
pub fn versions_of(fingerprint: &str) -> Option<BTreeMap<u8, &str>> {
    let mut versions = BTreeMap::new();
    for part in fingerprint.split(',') {
        let (version, hash) = part.split_once(':')?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        versions.insert(version.parse().ok()?, hash);
    }
    Some(versions)
}

/// The fingerprint databases recorded before [`issuer_keys_fingerprint`]
/// (SHA-256 over the keys themselves): recognised once, from keys in
/// memory, and replaced (`crate::app`).
pub fn legacy_master_keys_fingerprint(keys: &BTreeMap<u8, MasterKeys>) -> String {
    let mut digest = Sha256::new().chain_update(b"kessai-master-keys-fingerprint\0");
    for (version, k) in keys {
        digest = digest
            .chain_update([*version])
            .chain_update(k.enc.expose())
            .chain_update(k.mac.expose())
            .chain_update(k.dek.expose());
    }
    hex::encode(digest.finalize())
}

/// Fresh master keys for one key version.
pub fn generate_master_keys<R: Random + ?Sized>(rng: &mut R) -> MasterKeys {
    let mut key = || {
        let mut k = [0u8; 16];
        rng.fill_bytes(&mut k);
        Aes128Key::new(k)
    };
    MasterKeys { enc: key(), mac: key(), dek: key() }
}

/// Seals master keys (by key version) under the KEK.
pub fn seal<R: Random + ?Sized>(keys: &BTreeMap<u8, MasterKeys>, kek: &Kek, rng: &mut R) -> Vec<u8> {
    let map: BTreeMap<String, Triple> = keys
        .iter()
        .map(|(v, k)| {
            let t = Triple {
                enc: Zeroizing::new(hex::encode(k.enc.expose())),
                mac: Zeroizing::new(hex::encode(k.mac.expose())),
                dek: Zeroizing::new(hex::encode(k.dek.expose())),
            };
            (v.to_string(), t)
        })
        .collect();
    let plain = Zeroizing::new(serde_json::to_vec(&map).unwrap_or_default());
    seal_bytes(MAGIC, AAD, &plain, kek, rng)
}

/// `magic ‖ nonce 24 ‖ XChaCha20-Poly1305(plain, aad)` under the KEK: how
/// every secret file the center keeps at rest is sealed
/// (`kessai_core::at_rest`).
pub(crate) fn seal_bytes<R: Random + ?Sized>(
    magic: &[u8; 4],
    aad: &[u8],
    plain: &[u8],
    kek: &Kek,
    rng: &mut R,
) -> Vec<u8> {
    kessai_core::at_rest::seal(magic, aad, plain, &kek.0, rng)
}

/// Opens what [`seal_bytes`] sealed with the same magic and `aad`.
pub(crate) fn open_bytes(
    magic: &[u8; 4],
    aad: &[u8],
    bytes: &[u8],
    kek: &Kek,
) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
    kessai_core::at_rest::open(magic, aad, bytes, &kek.0).ok_or(KeystoreError::CannotOpen)
}

/// Opens a sealed master key file.
pub fn open(bytes: &[u8], kek: &Kek) -> Result<BTreeMap<u8, MasterKeys>, KeystoreError> {
    let plain = open_bytes(MAGIC, AAD, bytes, kek)?;
    let map: BTreeMap<String, Triple> =
        serde_json::from_slice(&plain).map_err(|e| KeystoreError::BadKey(e.to_string()))?;
    let key = |name: &str, h: &str| {
        let b = Zeroizing::new(hex::decode(h).map_err(|_| KeystoreError::BadKey(name.into()))?);
        Aes128Key::from_slice(&b).ok_or_else(|| KeystoreError::BadKey(name.into()))
    };
    map.into_iter()
        .map(|(v, t)| {
            let version = v.parse::<u8>().map_err(|_| KeystoreError::BadKey(format!("key version {v}")))?;
            Ok((version, MasterKeys { enc: key("enc", &t.enc)?, mac: key("mac", &t.mac)?, dek: key("dek", &t.dek)? }))
        })
        .collect()
}
