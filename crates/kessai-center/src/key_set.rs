//! The keys a center database belongs to. Every instance on one database
//! must hold the same KEK (it seals SCP03 state between steps, which any
//! instance may open), the same issuer master keys (cards are diversified
//! from them) and the same signing key (stores trust its public key). The
//! database records their fingerprints when it is first initialised
//! (`center_key_set`); an instance holding other keys refuses to start, and
//! `init` refuses to generate keys for a database that has them.

use kessai_core::keys::PublicKey;
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
        signing_key: &PublicKey,
    ) -> Result<KeyFingerprints, crate::security::SecurityError> {
        Ok(KeyFingerprints {
            kek: kek.fingerprint(),
            master_keys: keystore::issuer_keys_fingerprint(&issuer.check_values()?),
            signing_key: signing_key_fingerprint(signing_key.as_bytes()),
        })
    }

    /// Which keys of an instance (`other`) differ from these recorded ones,
    /// by name; the signing key does not when the recorded one is among
    /// `published` (the fingerprints of the keys the instance publishes
    /// beside its own while the center's key is rotated).
    pub fn differing_in_rotation(&self, other: &KeyFingerprints, published: &[String]) -> Vec<&'static str> {
        let mut names = self.differing(other);
        if published.contains(&self.signing_key) {
            names.retain(|n| *n != "the signing key");
        }
        names
    }

    /// Whether these master keys are `recorded`'s, perhaps with versions
    /// added (a master key rotation): every recorded version held, the
    /// same.
    pub fn master_keys_extend(&self, recorded: &KeyFingerprints) -> bool {
        match (keystore::versions_of(&self.master_keys), keystore::versions_of(&recorded.master_keys)) {
            (Some(mine), Some(theirs)) => theirs.iter().all(|(v, hash)| mine.get(v) == Some(hash)),
            _ => self.master_keys == recorded.master_keys,
        }
    }

    /// Which keys differ from `other`, by name.
    pub fn differing(&self, other: &KeyFingerprints) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.kek != other.kek {
            names.push("the KEK");
        }
        if !other.master_keys_extend(self) {
            names.push("the issuer master keys");
        }
        if self.signing_key != other.signing_key {
            names.push("the signing key");
        }
        names
    }
}

/// What identifies a signing key by its public key: SHA-256 under a label
/// of its own, hex.
pub fn signing_key_fingerprint(public: &[u8; 32]) -> String {
    hex::encode(Sha256::new().chain_update(b"kessai-signing-key-fingerprint\0").chain_update(public).finalize())
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn set(versions: &[(u8, u8)]) -> KeyFingerprints {
        let values: BTreeMap<u8, crate::security::CheckValues> =
            versions.iter().map(|(v, seed)| (*v, [[*seed; 16], [seed.wrapping_add(1); 16], [0; 16]])).collect();
        KeyFingerprints {
            kek: "k".into(),
            master_keys: keystore::issuer_keys_fingerprint(&values),
            signing_key: "s".into(),
        }
    }

    #[test]
    fn an_added_key_version_extends_the_master_keys_and_a_missing_or_changed_one_differs() {
        let recorded = set(&[(1, 7)]);
        assert!(set(&[(1, 7)]).master_keys_extend(&recorded));
        assert!(set(&[(1, 7), (2, 9)]).master_keys_extend(&recorded), "version 2 added");
        assert!(recorded.differing(&set(&[(1, 7), (2, 9)])).is_empty());
        assert!(!set(&[(2, 9)]).master_keys_extend(&recorded), "version 1 missing");
        assert!(!set(&[(1, 8)]).master_keys_extend(&recorded), "version 1 changed");
        assert!(!recorded.master_keys_extend(&set(&[(1, 7), (2, 9)])), "an instance without version 2");
        assert_eq!(set(&[(1, 7), (2, 9)]).differing(&recorded), ["the issuer master keys"]);
        assert!(keystore::versions_of("not:a fingerprint").is_none());
        assert!(!set(&[(1, 7)]).master_keys_extend(&KeyFingerprints { master_keys: "legacy".into(), ..recorded }));
    }
}
