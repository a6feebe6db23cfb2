//! The keys a center database belongs to. Every instance on one database
//! must hold the same KEK (it seals SCP03 state between steps, which any
//! instance may open), the same issuer master keys (cards are diversified
//! from them) and the same signing key (stores trust its public key). The
//! database records their fingerprints when it is first initialised
//! (`center_key_set`); an instance holding other keys refuses to start, and
//! `init` refuses to generate keys for a database that has them.

use kessai_core::keys::SigningKey;
use sha2::{Digest, Sha256};

use crate::keystore::{self, Kek};
use crate::security::IssuerKeys;

/// Fingerprints of a center's keys (SHA-256 under labels, hex); none
/// reveals a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFingerprints {
    pub kek: String,
    pub master_keys: String,
    /// Of the signing key's public key.
    pub signing_key: String,
}

impl KeyFingerprints {
    pub fn of(
        kek: &Kek,
        issuer: &dyn IssuerKeys,
        signing_key: &SigningKey,
    ) -> Result<KeyFingerprints, crate::security::SecurityError> {
        let public = signing_key.public();
        Ok(KeyFingerprints {
            kek: kek.fingerprint(),
            master_keys: keystore::issuer_keys_fingerprint(&issuer.check_values()?),
            signing_key: hex::encode(
                Sha256::new()
                    .chain_update(b"kessai-signing-key-fingerprint\0")
                    .chain_update(public.as_bytes())
                    .finalize(),
            ),
        })
    }

    /// Which keys differ from `other`, by name.
    pub fn differing(&self, other: &KeyFingerprints) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.kek != other.kek {
            names.push("the KEK");
        }
        if self.master_keys != other.master_keys {
            names.push("the issuer master keys");
        }
        if self.signing_key != other.signing_key {
            names.push("the signing key");
        }
        names
    }
}

impl std::fmt::Display for KeyFingerprints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = |s: &str| s.get(..16).unwrap_or(s).to_owned();
        write!(
            f,
            "kek {}…, master keys {}…, signing key {}…",
            short(&self.kek),
            short(&self.master_keys),
            short(&self.signing_key)
        )
    }
}
