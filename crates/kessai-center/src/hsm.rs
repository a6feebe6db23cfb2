//! Issuer master keys in a PKCS#11 token (an HSM; SoftHSM2 in the tests).
//!
//! Each key version is three AES-128 secret keys in the token, labelled
//! `{prefix}-{kvn:02x}-{enc|mac|dek}` (prefix `kessai-imk` unless
//! configured), created token-resident, private, sensitive and not
//! extractable, usable for `CKM_AES_CMAC` signing only. The center refuses
//! a token whose master key could be read out or used otherwise.
//!
//! What the token computes, and what the host then holds: a card's static
//! key is one AES-CMAC block under the master over the PRF input of
//! PROTOCOL §4.6 (`C_Sign` with `CKM_AES_CMAC`). The token does this; the
//! resulting card keys (ENC, MAC, DEK of the one card) come back to host
//! memory, where the SCP03 session keys and cryptograms are derived (no
//! PKCS#11 mechanism does SCP03's SP 800-108 derivation into the token on
//! SoftHSM2: `CKM_SP800_108_COUNTER_KDF` is PKCS#11 3.0 and SoftHSM2 2.6
//! lacks it). They live there for one protocol step and are zeroized on
//! drop; between steps they exist only sealed under the state key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use kessai_core::ids::CardId;
use kessai_scp03::diversify::{
    DIVERSIFY_DEK, DIVERSIFY_ENC, DIVERSIFY_MAC, MasterKeys, check_value, diversification_input,
};
use kessai_scp03::{Aes128Key, KeyVersion, StaticKeys};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::security::{CheckValues, IssuerKeys, SecurityError};

/// The three keys of a version, in this order everywhere.
const PARTS: [(&str, u8); 3] = [("enc", DIVERSIFY_ENC), ("mac", DIVERSIFY_MAC), ("dek", DIVERSIFY_DEK)];

/// `[hsm]` of the center's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmConfig {
    /// The PKCS#11 module, e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The token's label.
    pub token_label: String,
    /// The environment variable holding the user PIN (default
    /// `KESSAI_HSM_PIN`), unless `pin_file` is set.
    #[serde(default)]
    pub pin_env: Option<String>,
    /// A file (mode 0600) whose first line is the user PIN.
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
    /// The master keys' label prefix.
    #[serde(default = "default_prefix")]
    pub label_prefix: String,
    /// The label of the center's Ed25519 signing key pair in the token
    /// (`kessai center hsm generate-signing-key`): when set, the center
    /// signs with it and `signing_key` is not read.
    #[serde(default)]
    pub signing_key_label: Option<String>,
}

fn default_prefix() -> String {
    "kessai-imk".into()
}

impl HsmConfig {
    /// The user PIN, from `pin_file` or the environment.
    pub fn pin(&self) -> anyhow::Result<AuthPin> {
        use anyhow::Context as _;
        if let Some(path) = &self.pin_file {
            let bytes = kessai_tls::read_secret_file(path)?;
            let text = std::str::from_utf8(&bytes).with_context(|| format!("{} is not text", path.display()))?;
            let pin = text.lines().next().unwrap_or("");
            anyhow::ensure!(!pin.is_empty(), "{} holds no PIN", path.display());
            return Ok(AuthPin::from(pin));
        }
        let var = self.pin_env.as_deref().unwrap_or("KESSAI_HSM_PIN");
        let pin = std::env::var(var).with_context(|| format!("the HSM user PIN: set {var} (or [hsm] pin_file)"))?;
        anyhow::ensure!(!pin.is_empty(), "{var} is empty");
        Ok(AuthPin::from(pin))
    }

    fn label(&self, version: u8, part: &str) -> String {
        format!("{}-{version:02x}-{part}", self.label_prefix)
    }
}

/// A module loaded and initialised in this process, and the lock every
/// call into it takes.
#[derive(Clone)]
struct Module {
    ctx: Pkcs11,
    /// SoftHSM2 2.6 fails object creation (CKR_GENERAL_ERROR,
    /// CKR_TEMPLATE_INCONSISTENT) when other threads use the token at the
    /// same time, and can close a session another thread just opened
    /// (SoftHSMv2 issues 573, 464, 688). Every sequence of calls into a
    /// module therefore runs alone; a CMAC takes microseconds.
    lock: std::sync::Arc<Mutex<()>>,
}

/// One initialised context per module for the whole process: PKCS#11
/// allows `C_Initialize` once, and finalizing it under another user would
/// end that user's sessions.
fn module(path: &Path) -> Result<Module, SecurityError> {
    static MODULES: Mutex<BTreeMap<PathBuf, Module>> = Mutex::new(BTreeMap::new());
    let mut modules = MODULES.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(module) = modules.get(path) {
        return Ok(module.clone());
    }
    let ctx = Pkcs11::new(path).map_err(|e| unavailable(&format!("loading {}", path.display()), e))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(unavailable("C_Initialize", e)),
    }
    let module = Module { ctx, lock: Default::default() };
    modules.insert(path.to_owned(), module.clone());
    Ok(module)
}

fn unavailable(what: &str, e: P11Error) -> SecurityError {
    SecurityError::Unavailable(format!("{what}: {e}"))
}

/// A logged-in token: one session, which holds the login.
struct Token {
    module: Module,
    description: String,
    /// Taken (and closed under the module's lock) on drop.
    session: Mutex<Option<Session>>,
}

impl Token {
    fn open(config: &HsmConfig, pin: &AuthPin) -> Result<Token, SecurityError> {
        let module = module(&config.module)?;
        let _alone = module.lock.lock().unwrap_or_else(|p| p.into_inner());
        let ctx = &module.ctx;
        let slots = ctx.get_slots_with_initialized_token().map_err(|e| unavailable("C_GetSlotList", e))?;
        let mut found = None;
        for slot in slots {
            let info = ctx.get_token_info(slot).map_err(|e| unavailable("C_GetTokenInfo", e))?;
            if info.label().trim_end() == config.token_label {
                found = Some((slot, info));
                break;
            }
        }
        let Some((slot, info)) = found else {
            return Err(SecurityError::Unavailable(format!(
                "no token labelled {:?} in {}",
                config.token_label,
                config.module.display()
            )));
        };
        let session = ctx.open_rw_session(slot).map_err(|e| unavailable("C_OpenSession", e))?;
        match session.login(UserType::User, Some(pin)) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(unavailable("C_Login", e)),
        }
        let description = format!(
            "PKCS#11 token {:?} ({} {}, serial {}) via {}",
            config.token_label,
            info.manufacturer_id().trim_end(),
            info.model().trim_end(),
            info.serial_number().trim_end(),
            config.module.display()
        );
        drop(_alone);
        Ok(Token { module, description, session: Mutex::new(Some(session)) })
    }

    /// Runs `f` on this token's session, alone in the module.
    fn with_session<T>(&self, f: impl FnOnce(&Session) -> Result<T, SecurityError>) -> Result<T, SecurityError> {
        let _alone = self.module.lock.lock().unwrap_or_else(|p| p.into_inner());
        let session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let session = session.as_ref().ok_or_else(|| SecurityError::Unavailable("the session is closed".into()))?;
        f(session)
    }

    /// The objects labelled `label` of a key type, of one class or any.
    fn objects(
        session: &Session,
        class: Option<ObjectClass>,
        key_type: KeyType,
        label: &str,
    ) -> Result<Vec<ObjectHandle>, SecurityError> {
        let mut template = vec![Attribute::KeyType(key_type), Attribute::Label(label.as_bytes().to_vec())];
        template.extend(class.map(Attribute::Class));
        session.find_objects(&template).map_err(|e| unavailable("C_FindObjects", e))
    }

    /// The master key labelled `label`, if the token holds one.
    fn find(&self, session: &Session, label: &str) -> Result<Option<ObjectHandle>, SecurityError> {
        match Token::objects(session, Some(ObjectClass::SECRET_KEY), KeyType::AES, label)?.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            _ => Err(SecurityError::Unavailable(format!("the token holds more than one key labelled {label:?}"))),
        }
    }

    /// Refuses a key the token would give out, or could not sign (a CMAC
    /// with a master key, a signature with the center's key): `remedy`
    /// says what to do.
    fn check_guarded(
        &self,
        session: &Session,
        handle: ObjectHandle,
        label: &str,
        remedy: &str,
    ) -> Result<(), SecurityError> {
        let info = session
            .get_attribute_info(handle, &[AttributeType::Value])
            .map_err(|e| unavailable("C_GetAttributeValue", e))?;
        if !matches!(info.as_slice(), [AttributeInfo::Sensitive]) {
            return Err(SecurityError::Unavailable(format!(
                "the token's key {label:?} can be read out (CKA_VALUE is {info:?}): {remedy}"
            )));
        }
        let attributes = session
            .get_attributes(handle, &[AttributeType::Extractable, AttributeType::Sensitive, AttributeType::Sign])
            .map_err(|e| unavailable("C_GetAttributeValue", e))?;
        let guarded = attributes.iter().all(|a| match a {
            Attribute::Extractable(b) => !b,
            Attribute::Sensitive(b) | Attribute::Sign(b) => *b,
            _ => true,
        });
        if !guarded || attributes.len() != 3 {
            return Err(SecurityError::Unavailable(format!(
                "the token's key {label:?} is extractable or not sensitive, or cannot sign: {remedy}"
            )));
        }
        Ok(())
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        let _alone = self.module.lock.lock().unwrap_or_else(|p| p.into_inner());
        drop(self.session.get_mut().unwrap_or_else(|p| p.into_inner()).take());
    }
}

/// Issuer master keys in a PKCS#11 token: [`IssuerKeys`] over `C_Sign`
/// with `CKM_AES_CMAC`.
pub struct Pkcs11Keys {
    token: Token,
    keys: BTreeMap<u8, [ObjectHandle; 3]>,
}

impl fmt::Debug for Pkcs11Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pkcs11Keys({}, versions {:?})", self.token.description, self.versions())
    }
}

impl Pkcs11Keys {
    /// Logs in to the configured token and finds every key version's three
    /// master keys; refuses a version with a key missing or not guarded,
    /// and a token with none.
    pub fn open(config: &HsmConfig, pin: &AuthPin) -> Result<Pkcs11Keys, SecurityError> {
        let token = Token::open(config, pin)?;
        let keys = token.with_session(|session| {
            let mut keys = BTreeMap::new();
            for version in 1..=0x7f_u8 {
                let mut handles = Vec::with_capacity(3);
                for (part, _) in PARTS {
                    let label = config.label(version, part);
                    if let Some(handle) = token.find(session, &label)? {
                        token.check_guarded(
                            session,
                            handle,
                            &label,
                            "import it again as sensitive and not extractable",
                        )?;
                        handles.push(handle);
                    }
                }
                match handles.len() {
                    0 => continue,
                    3 => {
                        keys.insert(version, [handles[0], handles[1], handles[2]]);
                    }
                    _ => {
                        return Err(SecurityError::Unavailable(format!(
                            "key version {version:#04x} lacks one of its three keys in the token"
                        )));
                    }
                }
            }
            Ok(keys)
        })?;
        if keys.is_empty() {
            return Err(SecurityError::Unavailable(format!(
                "the token holds no issuer master keys labelled {}-NN-enc/mac/dek: import them with `kessai \
                 center hsm import` or generate them with `kessai center hsm generate`",
                config.label_prefix
            )));
        }
        Ok(Pkcs11Keys { token, keys })
    }

    /// The master keys' handles of `version`, for tests that ask the token
    /// about them directly.
    pub fn handles(&self, version: u8) -> Option<[ObjectHandle; 3]> {
        self.keys.get(&version).copied()
    }

    /// Runs `f` on a logged-in session of the token.
    pub fn with_session<T>(&self, f: impl FnOnce(&Session) -> Result<T, SecurityError>) -> Result<T, SecurityError> {
        self.token.with_session(f)
    }
}

impl IssuerKeys for Pkcs11Keys {
    fn versions(&self) -> Vec<u8> {
        self.keys.keys().copied().collect()
    }

    fn diversify(&self, card: &CardId, version: KeyVersion) -> Result<StaticKeys, SecurityError> {
        let handles = self.keys.get(&version.get()).ok_or(SecurityError::UnknownKeyVersion(version.get()))?;
        self.token.with_session(|session| {
            let mut out = Vec::with_capacity(3);
            for ((_, constant), handle) in PARTS.iter().zip(handles) {
                let input = diversification_input(*constant, card.as_bytes(), version);
                out.push(Aes128Key::new(*cmac(session, *handle, &input)?));
            }
            let mut out = out.into_iter();
            let mut next = || out.next().ok_or_else(|| SecurityError::Unavailable("diversification".into()));
            Ok(StaticKeys { version, enc: next()?, mac: next()?, dek: next()? })
        })
    }

    fn check_values(&self) -> Result<BTreeMap<u8, CheckValues>, SecurityError> {
        self.token.with_session(|session| {
            let mut all = BTreeMap::new();
            for (version, handles) in &self.keys {
                let mut values = [[0u8; 16]; 3];
                for (value, handle) in values.iter_mut().zip(handles) {
                    *value = *cmac(session, *handle, &[0u8; 16])?;
                }
                all.insert(*version, values);
            }
            Ok(all)
        })
    }

    fn location(&self) -> String {
        self.token.description.clone()
    }
}

/// The attributes of a master key created in the token: token-resident,
/// private, sensitive, never extractable, CMAC signing only.
fn master_template(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Verify(false),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::AllowedMechanisms(vec![MechanismType::AES_CMAC]),
    ]
}

/// What [`import`] and [`generate`] put in the token, for the operator.
#[derive(Debug)]
pub struct Created {
    pub version: u8,
    pub labels: Vec<String>,
}

/// Imports master keys (from the sealed key file) into the token. Refuses
/// a version the token already holds any key of; checks each imported
/// key's check value against the source.
pub fn import(config: &HsmConfig, pin: &AuthPin, masters: &BTreeMap<u8, MasterKeys>) -> anyhow::Result<Vec<Created>> {
    let token = Token::open(config, pin)?;
    let mut created = Vec::new();
    token.with_session(|session| {
        refuse_present(&token, session, config, masters.keys().copied())?;
        for (version, keys) in masters {
            let mut labels = Vec::new();
            for ((part, _), key) in PARTS.iter().zip([&keys.enc, &keys.mac, &keys.dek]) {
                let label = config.label(*version, part);
                let mut template = master_template(&label);
                template.push(Attribute::Value(key.expose().to_vec()));
                let handle = session.create_object(&template).map_err(|e| unavailable("C_CreateObject", e))?;
                if *cmac(session, handle, &[0u8; 16])? != check_value(key) {
                    return Err(SecurityError::Unavailable(format!("{label}: the token's check value differs")));
                }
                labels.push(label);
            }
            created.push(Created { version: *version, labels });
        }
        Ok(())
    })?;
    Ok(created)
}

/// Generates the master keys of `version` inside the token: they never
/// exist anywhere else.
pub fn generate(config: &HsmConfig, pin: &AuthPin, version: u8) -> anyhow::Result<Created> {
    anyhow::ensure!((1..=0x7f).contains(&version), "a key version is 1 to 127");
    let token = Token::open(config, pin)?;
    let labels = token.with_session(|session| {
        refuse_present(&token, session, config, [version])?;
        let mut labels = Vec::new();
        for (part, _) in PARTS {
            let label = config.label(version, part);
            let mut template = master_template(&label);
            template.push(Attribute::ValueLen(16.into()));
            session.generate_key(&Mechanism::AesKeyGen, &template).map_err(|e| unavailable("C_GenerateKey", e))?;
            labels.push(label);
        }
        Ok(labels)
    })?;
    Ok(Created { version, labels })
}

fn refuse_present(
    token: &Token,
    session: &Session,
    config: &HsmConfig,
    versions: impl IntoIterator<Item = u8>,
) -> Result<(), SecurityError> {
    for version in versions {
        for (part, _) in PARTS {
            let label = config.label(version, part);
            if token.find(session, &label)?.is_some() {
                return Err(SecurityError::Unavailable(format!(
                    "the token already holds {label:?}: key version {version:#04x} is not replaced"
                )));
            }
        }
    }
    Ok(())
}

/// One AES-CMAC block under `key`, computed by the token.
fn cmac(session: &Session, key: ObjectHandle, data: &[u8]) -> Result<Zeroizing<[u8; 16]>, SecurityError> {
    let out = Zeroizing::new(session.sign(&Mechanism::AesCMac, key, data).map_err(|e| unavailable("C_Sign", e))?);
    let mut block = Zeroizing::new([0u8; 16]);
    if out.len() != 16 {
        return Err(SecurityError::Unavailable(format!("CKM_AES_CMAC answered {} bytes", out.len())));
    }
    block.copy_from_slice(&out);
    Ok(block)
}

/// The DER of the curve edwards25519's OID 1.3.101.112, as CKA_EC_PARAMS.
const ED25519_PARAMS: [u8; 5] = [0x06, 0x03, 0x2B, 0x65, 0x70];

/// The center's Ed25519 signing key in the token: the private half
/// sensitive and never extractable, signing with `CKM_EDDSA` (pure
/// Ed25519, RFC 8032); every signature is checked against the public key
/// before it is used.
pub struct Pkcs11Signer {
    token: Token,
    private: ObjectHandle,
    public: kessai_core::keys::PublicKey,
}

impl fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pkcs11Signer({}, kid {})", self.token.description, self.public.kid())
    }
}

/// The public key of a CKA_EC_POINT: 32 bytes, bare or as a DER OCTET
/// STRING (`04 20 …`), as tokens differ.
fn ed25519_point(point: &[u8]) -> Option<[u8; 32]> {
    match point {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest.try_into().ok(),
        bare if bare.len() == 32 => bare.try_into().ok(),
        _ => None,
    }
}

impl Pkcs11Signer {
    /// Logs in and finds the key pair labelled `signing_key_label`.
    pub fn open(config: &HsmConfig, pin: &AuthPin) -> Result<Pkcs11Signer, SecurityError> {
        let label = config
            .signing_key_label
            .as_deref()
            .ok_or_else(|| SecurityError::Unavailable("[hsm] names no signing_key_label".into()))?;
        let token = Token::open(config, pin)?;
        let (private, public) = token.with_session(|session| {
            let find = |class| Token::objects(session, Some(class), KeyType::EC_EDWARDS, label);
            let (privates, publics) = (find(ObjectClass::PRIVATE_KEY)?, find(ObjectClass::PUBLIC_KEY)?);
            let ([private], [public]) = (privates.as_slice(), publics.as_slice()) else {
                return Err(SecurityError::Unavailable(format!(
                    "the token holds {} private and {} public Ed25519 keys labelled {label:?}, not one of each",
                    privates.len(),
                    publics.len()
                )));
            };
            token.check_guarded(session, *private, label, "generate it in the token, sensitive and not extractable")?;
            let point = session
                .get_attributes(*public, &[AttributeType::EcPoint])
                .map_err(|e| unavailable("C_GetAttributeValue", e))?;
            let bytes = point
                .iter()
                .find_map(|a| match a {
                    Attribute::EcPoint(p) => ed25519_point(p),
                    _ => None,
                })
                .ok_or_else(|| SecurityError::Unavailable(format!("{label:?}: no Ed25519 public point")))?;
            Ok((*private, bytes))
        })?;
        let public = kessai_core::keys::PublicKey::from_bytes(&public)
            .map_err(|_| SecurityError::Unavailable(format!("{label:?}: not a valid Ed25519 public key")))?;
        let signer = Pkcs11Signer { token, private, public };
        // The pair belongs together: a signature the public key verifies.
        kessai_core::keys::JwsSigner::try_sign(&signer, b"kessai-signing-key-check")
            .map_err(SecurityError::Unavailable)?;
        Ok(signer)
    }
}

impl Pkcs11Signer {
    /// The private key's handle and a logged-in session, for tests that ask
    /// the token about it directly.
    pub fn with_private<T>(
        &self,
        f: impl FnOnce(&Session, ObjectHandle) -> Result<T, SecurityError>,
    ) -> Result<T, SecurityError> {
        self.token.with_session(|session| f(session, self.private))
    }
}

impl kessai_core::keys::JwsSigner for Pkcs11Signer {
    fn kid(&self) -> &kessai_core::jwk::KeyId {
        self.public.kid()
    }

    fn public(&self) -> kessai_core::keys::PublicKey {
        self.public.clone()
    }

    fn try_sign(&self, message: &[u8]) -> Result<[u8; 64], String> {
        let mechanism = Mechanism::Eddsa(cryptoki::mechanism::eddsa::EddsaParams::new(
            cryptoki::mechanism::eddsa::EddsaSignatureScheme::Pure,
        ));
        let signature = self
            .token
            .with_session(|session| {
                session.sign(&mechanism, self.private, message).map_err(|e| unavailable("C_Sign (CKM_EDDSA)", e))
            })
            .map_err(|e| e.to_string())?;
        let signature: [u8; 64] =
            signature.try_into().map_err(|_| "CKM_EDDSA answered a signature of another length".to_owned())?;
        if !self.public.verify(message, &signature) {
            return Err("the token's signature does not verify under its public key".into());
        }
        Ok(signature)
    }
}

/// Generates the center's Ed25519 signing key pair in the token under
/// `signing_key_label` (the private half sensitive, never extractable);
/// answers its public key, to publish before the center signs with it.
pub fn generate_signing_key(config: &HsmConfig, pin: &AuthPin) -> anyhow::Result<kessai_core::keys::PublicKey> {
    let label =
        config.signing_key_label.as_deref().ok_or_else(|| anyhow::anyhow!("[hsm] names no signing_key_label"))?;
    let token = Token::open(config, pin)?;
    token.with_session(|session| {
        if !Token::objects(session, None, KeyType::EC_EDWARDS, label)?.is_empty() {
            return Err(SecurityError::Unavailable(format!("the token already holds a key labelled {label:?}")));
        }
        let public = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(ED25519_PARAMS.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Derive(false),
            Attribute::Label(label.as_bytes().to_vec()),
        ];
        session
            .generate_key_pair(&Mechanism::EccEdwardsKeyPairGen, &public, &private)
            .map_err(|e| unavailable("C_GenerateKeyPair (CKM_EC_EDWARDS_KEY_PAIR_GEN)", e))?;
        Ok(())
    })?;
    drop(token);
    Ok(Pkcs11Signer::open(config, pin)?.public)
}
