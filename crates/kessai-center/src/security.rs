//! The security server: the only place in a running center where issuer
//! master keys are used (a card's diversified keys leave it once, to
//! personalize its chip: [`SecurityServer::personalization_keys`]).
//!
//! The master keys sit behind [`IssuerKeys`], which has two
//! implementations: [`InMemoryKeys`] (unsealed from the key file at start)
//! and `crate::hsm::Pkcs11Keys` (non-extractable keys in a PKCS#11 token,
//! which computes each card's keys itself).
//!
//! Its interface is narrow. Given a card id and key version it runs the
//! SCP03 host side — starts a handshake, checks the card cryptogram, seals
//! commands, unseals answers — and hands back the host state only sealed
//! under its own state key, bound to the card and the settlement. Static
//! and session keys never leave it in the clear, so any center instance can
//! continue a session another instance began, and a stolen database row
//! reveals nothing.
//!
//! Sealed state: `version 01 ‖ nonce 24 ‖ XChaCha20-Poly1305(host state)`,
//! associated data `"kessai-scp-state" ‖ card id 8 ‖ context` (the
//! settlement id), so a state cannot be moved to another card or
//! settlement.

use std::collections::BTreeMap;
use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use kessai_core::ids::{CardId, CardRef, StoreId};
use kessai_core::random::Random;
use kessai_scp03::diversify::{MasterKeys, diversify};
use kessai_scp03::{
    CommandApdu, HostHandshake, HostSession, HostState, KeyVersion, ResponseApdu, ScpError, SecurityLevel, StaticKeys,
};
use zeroize::Zeroizing;

use crate::limits::MAX_SEALED_STATE_BYTES;

const SEALED_VERSION: u8 = 1;
const AAD_LABEL: &[u8] = b"kessai-scp-state";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecurityError {
    #[error("no issuer master keys for key version {0:#04x}")]
    UnknownKeyVersion(u8),
    #[error("sealed session state is invalid or belongs to another card or settlement")]
    BadSealedState,
    #[error("the session is not at the step this call needs")]
    WrongPhase,
    #[error("the card answered for card id {found}, not {expected}")]
    WrongCard { expected: CardId, found: String },
    #[error("secure channel: {0}")]
    Channel(#[from] ScpError),
    /// The keys' token (HSM) did not answer as it should: nothing was done.
    #[error("the security server's token is unavailable: {0}")]
    Unavailable(String),
}

/// Check values of one key version's three master keys (ENC, MAC, DEK):
/// [`kessai_scp03::diversify::check_value`] of each.
pub type CheckValues = [[u8; 16]; 3];

/// Where the issuer master keys live, and the one thing done with them:
/// diversifying a card's static keys (PROTOCOL §4.6). The keys themselves
/// never come out through this interface.
pub trait IssuerKeys: Send + Sync + fmt::Debug {
    /// The key versions held, ascending.
    fn versions(&self) -> Vec<u8>;
    /// The static keys of `card` under `version`, computed where the
    /// masters are.
    fn diversify(&self, card: &CardId, version: KeyVersion) -> Result<StaticKeys, SecurityError>;
    /// Each version's check values, by version: what the key set's
    /// fingerprint is made of (`crate::key_set`).
    fn check_values(&self) -> Result<BTreeMap<u8, CheckValues>, SecurityError>;
    /// Where the keys are, for logs: `memory` or the token's description.
    fn location(&self) -> String;
}

impl<T: IssuerKeys + ?Sized> IssuerKeys for std::sync::Arc<T> {
    fn versions(&self) -> Vec<u8> {
        (**self).versions()
    }
    fn diversify(&self, card: &CardId, version: KeyVersion) -> Result<StaticKeys, SecurityError> {
        (**self).diversify(card, version)
    }
    fn check_values(&self) -> Result<BTreeMap<u8, CheckValues>, SecurityError> {
        (**self).check_values()
    }
    fn location(&self) -> String {
        (**self).location()
    }
}

/// Master keys unsealed into this process's memory at start (zeroized on
/// drop).
pub struct InMemoryKeys(BTreeMap<u8, MasterKeys>);

impl InMemoryKeys {
    pub fn new(masters: BTreeMap<u8, MasterKeys>) -> InMemoryKeys {
        InMemoryKeys(masters)
    }

    /// The keys, for sealing into a file or importing into a token.
    pub fn masters(&self) -> &BTreeMap<u8, MasterKeys> {
        &self.0
    }
}

impl fmt::Debug for InMemoryKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InMemoryKeys(versions {:?})", self.versions())
    }
}

impl IssuerKeys for InMemoryKeys {
    fn versions(&self) -> Vec<u8> {
        self.0.keys().copied().collect()
    }

    fn diversify(&self, card: &CardId, version: KeyVersion) -> Result<StaticKeys, SecurityError> {
        let masters = self.0.get(&version.get()).ok_or(SecurityError::UnknownKeyVersion(version.get()))?;
        Ok(diversify(masters, card.as_bytes(), version))
    }

    fn check_values(&self) -> Result<BTreeMap<u8, CheckValues>, SecurityError> {
        use kessai_scp03::diversify::check_value;
        Ok(self.0.iter().map(|(v, k)| (*v, [check_value(&k.enc), check_value(&k.mac), check_value(&k.dek)])).collect())
    }

    fn location(&self) -> String {
        "memory".into()
    }
}

/// The key that seals host state between protocol steps. Zeroized on drop.
pub struct StateKey(Zeroizing<[u8; 32]>);

impl StateKey {
    pub fn from_bytes(bytes: [u8; 32]) -> StateKey {
        StateKey(Zeroizing::new(bytes))
    }

    pub fn generate<R: Random + ?Sized>(rng: &mut R) -> StateKey {
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut key[..]);
        StateKey(key)
    }
}

impl fmt::Debug for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StateKey(***)")
    }
}

/// Host state, sealed. Opaque outside the security server.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedState(Vec<u8>);

impl SealedState {
    pub fn from_bytes(bytes: Vec<u8>) -> Result<SealedState, SecurityError> {
        if bytes.len() > MAX_SEALED_STATE_BYTES || bytes.len() < 1 + 24 + 16 || bytes[0] != SEALED_VERSION {
            return Err(SecurityError::BadSealedState);
        }
        Ok(SealedState(bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

// Stored as hex; reading it back goes through the same checks.
impl serde::Serialize for SealedState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> serde::Deserialize<'de> for SealedState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text: String = serde::Deserialize::deserialize(d)?;
        let bytes = hex::decode(text).map_err(serde::de::Error::custom)?;
        SealedState::from_bytes(bytes).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for SealedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedState({} bytes)", self.0.len())
    }
}

/// What a step produced: the new sealed state and the command(s) for the card.
#[derive(Debug)]
pub struct Sealed<T> {
    pub state: SealedState,
    pub value: T,
}

pub struct SecurityServer {
    issuer: Box<dyn IssuerKeys>,
    /// The versions `issuer` holds, read once at start.
    versions: Vec<u8>,
    state_key: StateKey,
}

impl fmt::Debug for SecurityServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let versions: Vec<_> = self.versions.iter().map(|v| format!("{v:#04x}")).collect();
        f.debug_struct("SecurityServer")
            .field("key_versions", &versions)
            .field("issuer_keys", &self.issuer.location())
            .field("keys", &"***")
            .finish()
    }
}

impl SecurityServer {
    /// A security server over master keys held in memory.
    pub fn new(masters: BTreeMap<u8, MasterKeys>, state_key: StateKey) -> SecurityServer {
        SecurityServer::over(Box::new(InMemoryKeys::new(masters)), state_key)
    }

    /// A security server over master keys wherever `issuer` keeps them.
    pub fn over(issuer: Box<dyn IssuerKeys>, state_key: StateKey) -> SecurityServer {
        let versions = issuer.versions();
        SecurityServer { issuer, versions, state_key }
    }

    /// Where the issuer master keys are (`memory`, or the token).
    pub fn issuer_keys_location(&self) -> String {
        self.issuer.location()
    }

    /// A payment card number's fingerprint for velocity limits: HMAC-SHA256
    /// under a key derived from the state key (the same on every instance),
    /// hex. Without that key it says nothing of the number, whose few
    /// unknown digits an unkeyed hash would give away to a brute force.
    pub fn pan_fingerprint(&self, pan: &str) -> String {
        use hmac::Mac as _;
        let mut mac = self.keyed_mac(b"kessai-pan-fingerprint\0");
        mac.update(pan.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// HMAC-SHA256 under SHA-256(`label` ‖ state key): one key per use,
    /// the same on every instance.
    fn keyed_mac(&self, label: &[u8]) -> hmac::Hmac<sha2::Sha256> {
        use hmac::KeyInit as _;
        use sha2::Digest as _;
        let key = sha2::Sha256::new().chain_update(label).chain_update(*self.state_key.0).finalize();
        // A key shorter than SHA-256's 64-byte block is zero-padded to it
        // (RFC 2104), so this is HMAC under the 32-byte key.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&key);
        hmac::Hmac::<sha2::Sha256>::new(&block.into())
    }

    /// The access token of a settlement, value update or statement `id`
    /// (M4): what its create answers, and what every later request on it
    /// must carry as `Authorization: Bearer`. HMAC-SHA256 of the id under a
    /// key derived from the state key, so every instance computes it and
    /// nothing is stored; base64url, 43 characters. The id alone (which a
    /// store sees in SIG3, and logs show) opens nothing.
    pub fn access_token(&self, id: &str) -> String {
        use hmac::Mac as _;
        let mut mac = self.keyed_mac(b"kessai-access-token\0");
        mac.update(id.as_bytes());
        kessai_core::base64url::encode(&mac.finalize().into_bytes())
    }

    /// How store `store` knows card `card` (SIG3's `card_ref`, M4): the first
    /// 16 bytes of HMAC-SHA256 over both under a key derived from the state
    /// key, base64url. Stable for one store, unlinkable across stores, and
    /// no card id without the key.
    pub fn card_ref(&self, store: &StoreId, card: &CardId) -> CardRef {
        use hmac::Mac as _;
        let mut mac = self.keyed_mac(b"kessai-card-ref\0");
        mac.update(store.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(card.as_bytes());
        let text = kessai_core::base64url::encode(&mac.finalize().into_bytes()[..16]);
        // 22 base64url characters are always a valid reference.
        CardRef::parse(&text).unwrap_or_else(|_| unreachable!("base64url is within the reference's alphabet"))
    }

    /// How store `store` knows virtual prepaid card `card` (SIG3's
    /// `card_ref` for a payment from one, #18): as [`SecurityServer::card_ref`],
    /// under its own label, so no prepaid card's reference is an IC card's.
    pub fn prepaid_ref(&self, store: &StoreId, card: &kessai_core::ids::PrepaidId) -> CardRef {
        use hmac::Mac as _;
        let mut mac = self.keyed_mac(b"kessai-prepaid-ref\0");
        mac.update(store.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(card.as_str().as_bytes());
        let text = kessai_core::base64url::encode(&mac.finalize().into_bytes()[..16]);
        // 22 base64url characters are always a valid reference.
        CardRef::parse(&text).unwrap_or_else(|_| unreachable!("base64url is within the reference's alphabet"))
    }

    /// The center's X25519 key that members encrypt their registration to
    /// (#12): derived from the state key, so every instance holds it and no
    /// file is added to the key set.
    pub fn member_encryption_key(&self) -> kessai_core::jwe::EncryptionKey {
        use hmac::Mac as _;
        let mut mac = self.keyed_mac(b"kessai-member-encryption\0");
        mac.update(b"x25519 v1");
        let secret = Zeroizing::new(<[u8; 32]>::from(mac.finalize().into_bytes()));
        kessai_core::jwe::EncryptionKey::from_secret(&secret)
    }

    /// Whether `presented` is `id`'s access token, in constant time.
    pub fn grants(&self, id: &str, presented: &str) -> bool {
        use kessai_core::digest::Sha256Digest;
        Sha256Digest::of(self.access_token(id).as_bytes()).ct_eq(&Sha256Digest::of(presented.as_bytes()))
    }

    /// The newest key version the center holds (what a session opens
    /// under for a card it does not know, so that it looks like any other).
    pub fn newest_key_version(&self) -> Option<u8> {
        self.versions.last().copied()
    }

    /// Whether cards of this key version can be served.
    pub fn knows(&self, key_version: u8) -> bool {
        self.versions.contains(&key_version)
    }

    /// The static keys of `card` under `key_version`, from wherever the
    /// master keys are.
    fn card_keys(&self, card: &CardId, key_version: u8) -> Result<StaticKeys, SecurityError> {
        if !self.knows(key_version) {
            return Err(SecurityError::UnknownKeyVersion(key_version));
        }
        let kvn = KeyVersion::new(key_version).ok_or(SecurityError::UnknownKeyVersion(key_version))?;
        self.issuer.diversify(card, kvn)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&(*self.state_key.0).into())
    }

    fn aad(card: &CardId, context: &str) -> Vec<u8> {
        [AAD_LABEL, card.as_bytes(), context.as_bytes()].concat()
    }

    fn seal<R: Random + ?Sized>(&self, card: &CardId, context: &str, state: &HostState, rng: &mut R) -> SealedState {
        let plain = state.to_bytes();
        let mut nonce = [0u8; 24];
        rng.fill_bytes(&mut nonce);
        let aad = Self::aad(card, context);
        // Encrypting a few hundred bytes with a 32-byte key cannot fail.
        #[allow(clippy::expect_used)]
        let sealed = self
            .cipher()
            .encrypt(&XNonce::from(nonce), Payload { msg: &plain, aad: &aad })
            .expect("XChaCha20-Poly1305 encryption of a small buffer");
        let mut out = Vec::with_capacity(1 + 24 + sealed.len());
        out.push(SEALED_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        SealedState(out)
    }

    fn open(&self, card: &CardId, context: &str, sealed: &SealedState) -> Result<HostState, SecurityError> {
        let mut nonce = [0u8; 24];
        nonce.copy_from_slice(&sealed.0[1..25]);
        let aad = Self::aad(card, context);
        let plain = self
            .cipher()
            .decrypt(&XNonce::from(nonce), Payload { msg: &sealed.0[25..], aad: &aad })
            .map_err(|_| SecurityError::BadSealedState)?;
        let plain = Zeroizing::new(plain);
        HostState::from_bytes(&plain).map_err(|_| SecurityError::BadSealedState)
    }

    /// The static keys of `card` under `key_version`, diversified from the
    /// issuer master keys, for personalizing its chip: the one moment a
    /// card's keys leave the security server (into the card image being
    /// written, and a first CREDIT of its initial value).
    pub fn personalization_keys(&self, card: &CardId, key_version: u8) -> Result<StaticKeys, SecurityError> {
        self.card_keys(card, key_version)
    }

    /// Begins a level-`33` session with `card`: returns the INITIALIZE
    /// UPDATE to relay. The host challenge comes from `rng`.
    pub fn begin<R: Random + ?Sized>(
        &self,
        card: &CardId,
        key_version: u8,
        context: &str,
        rng: &mut R,
    ) -> Result<Sealed<CommandApdu>, SecurityError> {
        let mut challenge = [0u8; 8];
        rng.fill_bytes(&mut challenge);
        self.begin_with(card, key_version, context, challenge, rng)
    }

    /// As [`SecurityServer::begin`], with a host challenge the caller
    /// derived (a purchase's, bound to its bill: PROTOCOL §5).
    pub fn begin_with<R: Random + ?Sized>(
        &self,
        card: &CardId,
        key_version: u8,
        context: &str,
        challenge: [u8; 8],
        rng: &mut R,
    ) -> Result<Sealed<CommandApdu>, SecurityError> {
        let keys = self.card_keys(card, key_version)?;
        let handshake = HostHandshake::new(keys, SecurityLevel::FULL, challenge);
        let command = handshake.initialize_update();
        let state = self.seal(card, context, &HostState::Handshake(handshake), rng);
        Ok(Sealed { state, value: command })
    }

    /// Checks the card's INITIALIZE UPDATE answer (card cryptogram, and that
    /// the card is the one expected) and returns EXTERNAL AUTHENTICATE.
    pub fn authenticate<R: Random + ?Sized>(
        &self,
        card: &CardId,
        context: &str,
        sealed: &SealedState,
        answer: &ResponseApdu,
        rng: &mut R,
    ) -> Result<Sealed<CommandApdu>, SecurityError> {
        let HostState::Handshake(handshake) = self.open(card, context, sealed)? else {
            return Err(SecurityError::WrongPhase);
        };
        let opening = handshake.card_response(answer)?;
        let diversification = &opening.card.key_diversification_data;
        if diversification[..8] != card.as_bytes()[..] {
            return Err(SecurityError::WrongCard { expected: *card, found: hex::encode(&diversification[..8]) });
        }
        let state = self.seal(card, context, &HostState::Open(opening.session), rng);
        Ok(Sealed { state, value: opening.external_authenticate })
    }

    fn session(&self, card: &CardId, context: &str, sealed: &SealedState) -> Result<HostSession, SecurityError> {
        match self.open(card, context, sealed)? {
            HostState::Open(session) => Ok(session),
            HostState::Handshake(_) => Err(SecurityError::WrongPhase),
        }
    }

    /// Checks the card's answer to EXTERNAL AUTHENTICATE.
    pub fn check_external_authenticate(
        &self,
        card: &CardId,
        context: &str,
        sealed: &SealedState,
        answer: &ResponseApdu,
    ) -> Result<(), SecurityError> {
        Ok(self.session(card, context, sealed)?.check_external_authenticate(answer)?)
    }

    /// Wraps a plain command for the card (C-MAC, C-DECRYPTION).
    pub fn seal_command<R: Random + ?Sized>(
        &self,
        card: &CardId,
        context: &str,
        sealed: &SealedState,
        plain: &CommandApdu,
        rng: &mut R,
    ) -> Result<Sealed<CommandApdu>, SecurityError> {
        let mut session = self.session(card, context, sealed)?;
        let wire = session.wrap(plain)?;
        let state = self.seal(card, context, &HostState::Open(session), rng);
        Ok(Sealed { state, value: wire })
    }

    /// Checks and opens the card's answer (R-MAC, R-ENCRYPTION). An answer
    /// that fails here proves nothing about what the card did.
    pub fn unseal_response<R: Random + ?Sized>(
        &self,
        card: &CardId,
        context: &str,
        sealed: &SealedState,
        wire: &ResponseApdu,
        rng: &mut R,
    ) -> Result<Sealed<ResponseApdu>, SecurityError> {
        let session = self.session(card, context, sealed)?;
        let (session, plain) = session.unwrap(wire)?;
        let state = self.seal(card, context, &HostState::Open(session), rng);
        Ok(Sealed { state, value: plain })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn an_access_token_is_hmac_sha256_of_the_id_and_grants_that_id_only() {
        use hmac::Mac as _;
        let server = SecurityServer::new(BTreeMap::new(), StateKey::from_bytes([7; 32]));
        let key = <sha2::Sha256 as sha2::Digest>::digest([&b"kessai-access-token\0"[..], &[7; 32]].concat());
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(b"stl_1");
        let token = server.access_token("stl_1");
        assert_eq!(token, kessai_core::base64url::encode(&mac.finalize().into_bytes()));
        assert_eq!(token.len(), 43);
        assert!(server.grants("stl_1", &token));
        assert!(!server.grants("stl_2", &token));
        assert!(!server.grants("stl_1", &token[..42]));
        let other = SecurityServer::new(BTreeMap::new(), StateKey::from_bytes([8; 32]));
        assert!(!other.grants("stl_1", &token), "another key set's token opens nothing");
    }

    #[test]
    fn a_card_ref_is_stable_for_one_store_and_unlinkable_across_stores() {
        let server = SecurityServer::new(BTreeMap::new(), StateKey::from_bytes([7; 32]));
        let (mall, other) = (StoreId::parse("kessai-mall").unwrap(), StoreId::parse("other-mall").unwrap());
        let (card, another) = (CardId::from_bytes([1; 8]), CardId::from_bytes([2; 8]));
        let seen = server.card_ref(&mall, &card);
        assert_eq!(seen, server.card_ref(&mall, &card), "the same card, the same store: the same reference");
        assert_eq!(seen.as_str().len(), 22);
        assert_ne!(seen, server.card_ref(&other, &card), "another store cannot link it");
        assert_ne!(seen, server.card_ref(&mall, &another));
        let elsewhere = SecurityServer::new(BTreeMap::new(), StateKey::from_bytes([8; 32]));
        assert_ne!(seen, elsewhere.card_ref(&mall, &card), "keyed by the center's state key");
    }

    #[test]
    fn a_pan_fingerprint_is_hmac_sha256_under_a_key_from_the_state_key() {
        use hmac::Mac as _;
        use sha2::Digest as _;
        let server = SecurityServer::new(BTreeMap::new(), StateKey::from_bytes([7; 32]));
        let key = sha2::Sha256::new().chain_update(b"kessai-pan-fingerprint\0").chain_update([7; 32]).finalize();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(b"4242424242424242");
        assert_eq!(server.pan_fingerprint("4242424242424242"), hex::encode(mac.finalize().into_bytes()));
        assert_ne!(server.pan_fingerprint("4242424242424242"), server.pan_fingerprint("4242424242424243"));
        let other = SecurityServer::new(BTreeMap::new(), StateKey::from_bytes([8; 32]));
        assert_ne!(server.pan_fingerprint("4242424242424242"), other.pan_fingerprint("4242424242424242"));
    }
}
