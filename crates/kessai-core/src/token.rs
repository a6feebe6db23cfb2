//! Bank deposit tokens (seed 002): a deposit from a user's bank account
//! into the pool account becomes a token on the user's card, protected
//! under a key of the credit service provider (FIG. 6 step 601) and
//! carrying FIG. 12's fields.
//!
//! A sealed token is a clear header the card reads (which token, how much,
//! until when, under which key version) and the rest of FIG. 12 encrypted;
//! XChaCha20-Poly1305 under the key version's key authenticates both (the
//! header is the associated data), so a token altered anywhere, or sealed
//! under another key, does not open:
//!
//! ```text
//! "KTK1" 4 ‖ key version 1 ‖ token id 16 ‖ currency 3 ‖ amount (minor) 8 ‖
//! expires (unix s) 8 ‖ nonce 24 ‖ ciphertext ‖ tag 16
//! ```
//!
//! The ciphertext is of the remaining fields, each a 1-byte length and
//! its UTF-8: deposited (unix s, 8 bytes, no length), user name, user id,
//! bank id, bank account, credit card company id, credit card reference.
//! The credit card is never a number: `last4:NNNN` or a network token
//! (`ntk:…`); anything that reads as a card number is refused.
//!
//! Key versions ([`TokenKeyring`]): each issues within its window and
//! redeems until its last token can have expired; a token's expiry must
//! fall before its key stops redeeming. A version's key travels to the bank
//! sealed to the bank's X25519 key (a JWE, [`TokenKey::sealed_for`]).

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::jwe::{self, EncryptionKey, EncryptionPublicKey};
use crate::random::Random;
use crate::time::Timestamp;
use crate::{Currency, Money, base64url};

/// The sealed token's first bytes.
pub const TOKEN_MAGIC: [u8; 4] = *b"KTK1";
/// Bytes of the clear header.
pub const TOKEN_HEADER_LEN: usize = 4 + 1 + 16 + 3 + 8 + 8;
/// Largest sealed token: what one secure STORE TOKEN command carries.
pub const MAX_SEALED_TOKEN_LEN: usize = 200;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Longest text field, in bytes.
pub const MAX_FIELD_BYTES: usize = 40;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("the token's {0} is refused: {1}")]
    Field(&'static str, String),
    #[error("a sealed token of {0} bytes is more than {MAX_SEALED_TOKEN_LEN}")]
    TooLarge(usize),
    #[error("not a sealed token")]
    Malformed,
    #[error("no token key of version {0}")]
    UnknownKeyVersion(u8),
    #[error("no token key issues now")]
    NoIssuingKey,
    #[error("token key version {version} redeems nothing after {until}")]
    KeyRetired { version: u8, until: String },
    #[error("the token expires after its key stops redeeming ({0})")]
    OutlivesKey(String),
    #[error("the token does not open under its key: altered, or sealed under another")]
    Unopened,
    #[error("the token expired at {0}")]
    Expired(String),
    #[error("the token key: {0}")]
    Key(String),
}

/// A token's id: 16 random bytes, printed `tok_` and 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId(pub [u8; 16]);

impl TokenId {
    pub fn generate<R: Random + ?Sized>(rng: &mut R) -> TokenId {
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        TokenId(id)
    }

    pub fn parse(text: &str) -> Result<TokenId, TokenError> {
        let bad = || TokenError::Field("id", "tok_ and 32 lowercase hex digits".into());
        let hex = text.strip_prefix("tok_").filter(|h| h.len() == 32).ok_or_else(bad)?;
        if !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(bad());
        }
        let mut id = [0u8; 16];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(TokenId(id))
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tok_")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenId({self})")
    }
}

/// As its printed form, `tok_` and 32 hex digits.
impl Serialize for TokenId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TokenId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TokenId, D::Error> {
        let text = String::deserialize(d)?;
        TokenId::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// FIG. 12's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepositToken {
    pub token_id: TokenId,
    pub user_name: String,
    /// The user's id at the bank (its customer number), or a member number.
    pub user_id: String,
    pub amount: Money,
    pub deposited_at: Timestamp,
    pub expires_at: Timestamp,
    /// The bank's code (Zengin 4 digits) or BIC.
    pub bank_id: String,
    /// The account the deposit came from: where an unredeemed token's
    /// value goes back.
    pub bank_account: String,
    /// The credit service provider (credit card company).
    pub card_company_id: String,
    /// The credit card as `last4:NNNN` or a network token `ntk:…`, never
    /// its number.
    pub card_ref: String,
}

/// What the card reads of a sealed token without its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenHeader {
    pub key_version: u8,
    pub token_id: TokenId,
    pub amount: Money,
    pub expires_at: Timestamp,
}

impl TokenHeader {
    /// The header of a sealed token (not its authenticity: only a key
    /// tells that, [`TokenKeyring::open`]).
    pub fn read(sealed: &[u8]) -> Result<TokenHeader, TokenError> {
        if sealed.len() > MAX_SEALED_TOKEN_LEN {
            return Err(TokenError::TooLarge(sealed.len()));
        }
        if sealed.len() < TOKEN_HEADER_LEN + NONCE_LEN + TAG_LEN || sealed[..4] != TOKEN_MAGIC {
            return Err(TokenError::Malformed);
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&sealed[5..21]);
        let currency = std::str::from_utf8(&sealed[21..24]).map_err(|_| TokenError::Malformed)?;
        let currency = Currency::parse(currency).map_err(|_| TokenError::Malformed)?;
        let amount = u64::from_be_bytes(sealed[24..32].try_into().map_err(|_| TokenError::Malformed)?);
        let expires = u64::from_be_bytes(sealed[32..40].try_into().map_err(|_| TokenError::Malformed)?);
        Ok(TokenHeader {
            key_version: sealed[4],
            token_id: TokenId(id),
            amount: Money::new(amount, currency).map_err(|_| TokenError::Malformed)?,
            expires_at: Timestamp::from_unix_s(expires),
        })
    }

    fn to_bytes(self) -> [u8; TOKEN_HEADER_LEN] {
        let mut out = [0u8; TOKEN_HEADER_LEN];
        out[..4].copy_from_slice(&TOKEN_MAGIC);
        out[4] = self.key_version;
        out[5..21].copy_from_slice(&self.token_id.0);
        out[21..24].copy_from_slice(self.amount.currency().code().as_bytes());
        out[24..32].copy_from_slice(&self.amount.amount_minor().to_be_bytes());
        out[32..40].copy_from_slice(&self.expires_at.unix_s().to_be_bytes());
        out
    }
}

fn luhn(digits: &[u32]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { *d })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether `text` may hold a payment card number: somewhere in it, 13 to
/// 19 digits in a row once spaces, dashes, dots, underscores and slashes
/// are set aside, passing the Luhn check.
/// Whether `text` holds, anywhere, 13 to 19 digits in a row passing Luhn
/// once separators are set aside: what reads as a payment card number.
pub fn holds_a_card_number(text: &str) -> bool {
    let mut runs: Vec<Vec<u32>> = vec![Vec::new()];
    for c in text.chars() {
        match c.to_digit(10) {
            Some(d) => runs.last_mut().into_iter().for_each(|r| r.push(d)),
            None if matches!(c, ' ' | '-' | '.' | '_' | '/') => {}
            None => runs.push(Vec::new()),
        }
    }
    runs.iter().any(|run| (13..=19).any(|len| run.len() >= len && run.windows(len).any(luhn)))
}

/// Checks a bank account as a token names it: Zengin `BBBB-SSS-T-NNNNNNN`
/// (bank, branch, deposit type, number) or an IBAN (two letters, two
/// digits, up to 30 letters and digits).
pub fn check_bank_account(text: &str) -> Result<(), TokenError> {
    if bank_account_form(text) {
        Ok(())
    } else {
        Err(TokenError::Field(
            "bank account",
            "BBBB-SSS-T-NNNNNNN (Zengin) or an IBAN of up to 34 letters and digits".into(),
        ))
    }
}

/// Checks a credit card as a token names it: `last4:NNNN` or a network
/// token `ntk:…`, never its number.
pub fn check_card_ref(text: &str) -> Result<(), TokenError> {
    let card_ok = match text.split_once(':') {
        Some(("last4", digits)) => digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_digit()),
        Some(("ntk", id)) => {
            !id.is_empty()
                && id.len() <= MAX_FIELD_BYTES - 4
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
                && !holds_a_card_number(id)
        }
        _ => false,
    };
    if card_ok {
        Ok(())
    } else {
        Err(TokenError::Field("card reference", "last4:NNNN or ntk:… (never a card number)".into()))
    }
}

fn bank_account_form(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let zengin = b.len() == 18
        && b[4] == b'-'
        && b[8] == b'-'
        && b[10] == b'-'
        && digits(0..4)
        && digits(5..8)
        && digits(9..10)
        && digits(11..18);
    let iban = (5..=34).contains(&b.len())
        && b[..2].iter().all(u8::is_ascii_uppercase)
        && digits(2..4)
        && b[4..].iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    zengin || iban
}

impl DepositToken {
    /// Checks every field: lengths, printable text, an expiry after the
    /// deposit, and a credit card that is a reference, never a number.
    pub fn check(&self) -> Result<(), TokenError> {
        let text = |name: &'static str, value: &str| {
            let ok = !value.trim().is_empty() && value.len() <= MAX_FIELD_BYTES && !value.chars().any(char::is_control);
            if ok { Ok(()) } else { Err(TokenError::Field(name, format!("1 to {MAX_FIELD_BYTES} bytes of text"))) }
        };
        text("user name", &self.user_name)?;
        text("user id", &self.user_id)?;
        text("bank id", &self.bank_id)?;
        text("bank account", &self.bank_account)?;
        text("card company id", &self.card_company_id)?;
        text("card reference", &self.card_ref)?;
        // A card number may hide in any free field; the bank account has a
        // fixed form of its own instead (its digits are legitimately many).
        for (name, value) in [
            ("user name", &self.user_name),
            ("user id", &self.user_id),
            ("bank id", &self.bank_id),
            ("card company id", &self.card_company_id),
            ("card reference", &self.card_ref),
        ] {
            if holds_a_card_number(value) {
                return Err(TokenError::Field(name, "holds what reads as a payment card number".into()));
            }
        }
        check_bank_account(&self.bank_account)?;
        check_card_ref(&self.card_ref)?;
        if self.amount.is_zero() {
            return Err(TokenError::Field("amount", "more than zero".into()));
        }
        if self.expires_at <= self.deposited_at {
            return Err(TokenError::Field("expiry", "after the deposit".into()));
        }
        Ok(())
    }

    fn secret_part(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(8 + 6 * (1 + MAX_FIELD_BYTES)));
        out.extend_from_slice(&self.deposited_at.unix_s().to_be_bytes());
        for field in
            [&self.user_name, &self.user_id, &self.bank_id, &self.bank_account, &self.card_company_id, &self.card_ref]
        {
            // At most MAX_FIELD_BYTES (40), checked before sealing.
            out.push(u8::try_from(field.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(field.as_bytes());
        }
        out
    }

    fn from_parts(header: TokenHeader, secret: &[u8]) -> Result<DepositToken, TokenError> {
        let deposited = secret.get(..8).ok_or(TokenError::Malformed)?;
        let deposited_at =
            Timestamp::from_unix_s(u64::from_be_bytes(deposited.try_into().map_err(|_| TokenError::Malformed)?));
        let mut rest = &secret[8..];
        let mut fields = Vec::with_capacity(6);
        for _ in 0..6 {
            let (&len, tail) = rest.split_first().ok_or(TokenError::Malformed)?;
            let (field, tail) = tail.split_at_checked(usize::from(len)).ok_or(TokenError::Malformed)?;
            fields.push(String::from_utf8(field.to_vec()).map_err(|_| TokenError::Malformed)?);
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(TokenError::Malformed);
        }
        let [user_name, user_id, bank_id, bank_account, card_company_id, card_ref] =
            <[String; 6]>::try_from(fields).map_err(|_| TokenError::Malformed)?;
        let token = DepositToken {
            token_id: header.token_id,
            user_name,
            user_id,
            amount: header.amount,
            deposited_at,
            expires_at: header.expires_at,
            bank_id,
            bank_account,
            card_company_id,
            card_ref,
        };
        token.check()?;
        Ok(token)
    }
}

/// One key version of the credit service provider's token keys.
pub struct TokenKey {
    pub version: u8,
    key: Zeroizing<[u8; 32]>,
    /// It seals tokens from `issue_from` until `issue_until`.
    pub issue_from: Timestamp,
    pub issue_until: Timestamp,
    /// It opens tokens until then: the end of its tokens' lives.
    pub redeem_until: Timestamp,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TokenKey(v{}, ***, issues {}..{}, redeems until {})",
            self.version, self.issue_from, self.issue_until, self.redeem_until
        )
    }
}

/// A token key as it travels to the bank, inside a JWE.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyDelivery<K> {
    version: u8,
    /// The key, base64url.
    key: K,
    issue_from: u64,
    issue_until: u64,
    redeem_until: u64,
}

const AT_REST_MAGIC: &[u8; 4] = b"KTKV";
const AT_REST_AAD: &[u8] = b"kessai-token-key";

/// The JWE `typ` of a token key delivery.
pub const KEY_DELIVERY_TYPE: &str = "kessai-token-key+jwe";

impl TokenKey {
    /// A fresh key for `version`, issuing over `[issue_from, issue_until)`
    /// and redeeming until `redeem_until` (not before `issue_until`).
    pub fn generate<R: Random + ?Sized>(
        version: u8,
        (issue_from, issue_until, redeem_until): (Timestamp, Timestamp, Timestamp),
        rng: &mut R,
    ) -> Result<TokenKey, TokenError> {
        if issue_until <= issue_from || redeem_until < issue_until {
            return Err(TokenError::Key("its windows: issue from < issue until <= redeem until".into()));
        }
        let mut key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut key[..]);
        Ok(TokenKey { version, key, issue_from, issue_until, redeem_until })
    }

    /// This key sealed for the bank (FIG. 6): a JWE to its X25519 key.
    pub fn sealed_for<R: Random + ?Sized>(
        &self,
        bank: &EncryptionPublicKey,
        rng: &mut R,
    ) -> Result<String, TokenError> {
        let json = self.to_json()?;
        jwe::encrypt(&json, bank, KEY_DELIVERY_TYPE, "json", rng).map_err(|e| TokenError::Key(e.to_string()))
    }

    /// The key and its windows as JSON (`{"version", "key" (base64url),
    /// "issue_from", "issue_until", "redeem_until"}`): what a delivery
    /// carries, and what a holder seals at rest. Secret: only ever sealed.
    pub fn to_json(&self) -> Result<Zeroizing<Vec<u8>>, TokenError> {
        let encoded = Zeroizing::new(base64url::encode(&self.key[..]));
        let delivery = KeyDelivery {
            version: self.version,
            key: encoded.as_str(),
            issue_from: self.issue_from.unix_s(),
            issue_until: self.issue_until.unix_s(),
            redeem_until: self.redeem_until.unix_s(),
        };
        Ok(Zeroizing::new(serde_json::to_vec(&delivery).map_err(|e| TokenError::Key(e.to_string()))?))
    }

    /// A key from [`TokenKey::to_json`]'s form, its windows checked.
    pub fn from_json(json: &[u8]) -> Result<TokenKey, TokenError> {
        let d: KeyDelivery<Zeroizing<String>> =
            serde_json::from_slice(json).map_err(|e| TokenError::Key(e.to_string()))?;
        let raw = Zeroizing::new(base64url::decode(&d.key).map_err(|_| TokenError::Key("its key".into()))?);
        let mut key = Zeroizing::new([0u8; 32]);
        if raw.len() != 32 {
            return Err(TokenError::Key("a key of 32 bytes".into()));
        }
        key.copy_from_slice(&raw);
        let (issue_from, issue_until, redeem_until) = (
            Timestamp::from_unix_s(d.issue_from),
            Timestamp::from_unix_s(d.issue_until),
            Timestamp::from_unix_s(d.redeem_until),
        );
        if issue_until <= issue_from || redeem_until < issue_until {
            return Err(TokenError::Key("its windows".into()));
        }
        Ok(TokenKey { version: d.version, key, issue_from, issue_until, redeem_until })
    }

    /// This key sealed at rest under a party's KEK (`crate::at_rest`):
    /// `KTKV` ‖ nonce 24 ‖ XChaCha20-Poly1305 of [`TokenKey::to_json`],
    /// associated data `kessai-token-key`.
    pub fn seal_at_rest<R: Random + ?Sized>(&self, kek: &[u8; 32], rng: &mut R) -> Result<Vec<u8>, TokenError> {
        Ok(crate::at_rest::seal(AT_REST_MAGIC, AT_REST_AAD, &self.to_json()?, kek, rng))
    }

    /// A key [`TokenKey::seal_at_rest`] sealed under this KEK.
    pub fn open_at_rest(bytes: &[u8], kek: &[u8; 32]) -> Result<TokenKey, TokenError> {
        let json = crate::at_rest::open(AT_REST_MAGIC, AT_REST_AAD, bytes, kek)
            .ok_or_else(|| TokenError::Key("not a sealed token key, or another KEK".into()))?;
        TokenKey::from_json(&json)
    }

    /// Its version and windows, for people, tab-separated: `v1`, `issues … .. …`, `redeems until …`.
    pub fn describe(&self) -> String {
        format!(
            "v{}\tissues {} .. {}\tredeems until {}",
            self.version,
            self.issue_from.utc(),
            self.issue_until.utc(),
            self.redeem_until.utc()
        )
    }

    /// Whether `other` is this very key: its version, key and windows.
    pub fn same_as(&self, other: &TokenKey) -> bool {
        use subtle::ConstantTimeEq;
        self.version == other.version
            && bool::from(self.key[..].ct_eq(&other.key[..]))
            && (self.issue_from, self.issue_until, self.redeem_until)
                == (other.issue_from, other.issue_until, other.redeem_until)
    }

    /// A key the credit service provider sealed for this bank.
    pub fn open_delivery(sealed: &str, bank: &EncryptionKey) -> Result<TokenKey, TokenError> {
        let (header, json) = jwe::decrypt(sealed, bank).map_err(|e| TokenError::Key(e.to_string()))?;
        if header.typ.as_deref() != Some(KEY_DELIVERY_TYPE) {
            return Err(TokenError::Key("not a token key delivery".into()));
        }
        TokenKey::from_json(&json)
    }
}

/// Every key version one party holds.
#[derive(Debug, Default)]
pub struct TokenKeyring {
    keys: Vec<TokenKey>,
}

impl TokenKeyring {
    pub fn new() -> TokenKeyring {
        TokenKeyring::default()
    }

    /// The versions held, oldest first.
    pub fn keys(&self) -> impl Iterator<Item = &TokenKey> {
        self.keys.iter()
    }

    /// Adds a version; a version held already is refused (a key never
    /// changes under its version).
    pub fn add(&mut self, key: TokenKey) -> Result<(), TokenError> {
        if self.keys.iter().any(|k| k.version == key.version) {
            return Err(TokenError::Key(format!("version {} is held already", key.version)));
        }
        self.keys.push(key);
        Ok(())
    }

    /// The version that issues at `now`: the newest whose window holds it.
    fn issuing(&self, now: Timestamp) -> Option<&TokenKey> {
        self.keys.iter().filter(|k| k.issue_from <= now && now < k.issue_until).max_by_key(|k| k.version)
    }

    /// Until when a token sealed at `now` may live: the end of the issuing
    /// version's redeeming window; `None` if no version issues now.
    pub fn issuing_until(&self, now: Timestamp) -> Option<Timestamp> {
        self.issuing(now).map(|k| k.redeem_until)
    }

    /// Seals `token` at `now` under the version issuing then.
    pub fn seal<R: Random + ?Sized>(
        &self,
        token: &DepositToken,
        now: Timestamp,
        rng: &mut R,
    ) -> Result<Vec<u8>, TokenError> {
        token.check()?;
        let key = self.issuing(now).ok_or(TokenError::NoIssuingKey)?;
        if token.expires_at > key.redeem_until {
            return Err(TokenError::OutlivesKey(key.redeem_until.utc()));
        }
        let header = TokenHeader {
            key_version: key.version,
            token_id: token.token_id,
            amount: token.amount,
            expires_at: token.expires_at,
        }
        .to_bytes();
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let cipher = XChaCha20Poly1305::new(&(*key.key).into());
        let secret = token.secret_part();
        let sealed = cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: &secret, aad: &header })
            .map_err(|_| TokenError::Malformed)?;
        let mut out = Vec::with_capacity(TOKEN_HEADER_LEN + NONCE_LEN + sealed.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        if out.len() > MAX_SEALED_TOKEN_LEN {
            return Err(TokenError::TooLarge(out.len()));
        }
        Ok(out)
    }

    /// Opens a sealed token at `now`: its key version known and still
    /// redeeming, and the whole token authentic. Whether it has expired is
    /// [`DepositToken::redeemable`]'s to say.
    pub fn open(&self, sealed: &[u8], now: Timestamp) -> Result<DepositToken, TokenError> {
        let header = TokenHeader::read(sealed)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.version == header.key_version)
            .ok_or(TokenError::UnknownKeyVersion(header.key_version))?;
        if now > key.redeem_until {
            return Err(TokenError::KeyRetired { version: key.version, until: key.redeem_until.utc() });
        }
        let (clear, rest) = sealed.split_at(TOKEN_HEADER_LEN);
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| TokenError::Malformed)?;
        let cipher = XChaCha20Poly1305::new(&(*key.key).into());
        let secret = Zeroizing::new(
            cipher
                .decrypt(&XNonce::from(nonce), Payload { msg: body, aad: clear })
                .map_err(|_| TokenError::Unopened)?,
        );
        DepositToken::from_parts(header, &secret)
    }
}

impl DepositToken {
    /// Whether the token may be redeemed at `now`: not expired.
    pub fn redeemable(&self, now: Timestamp) -> Result<(), TokenError> {
        if now >= self.expires_at {
            return Err(TokenError::Expired(self.expires_at.utc()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;

    const DAY: u64 = 86_400;
    const T0: u64 = 1_790_000_000;

    fn at(s: u64) -> Timestamp {
        Timestamp::from_unix_s(s)
    }

    fn token(rng: &mut SeededRandom) -> DepositToken {
        DepositToken {
            token_id: TokenId::generate(rng),
            user_name: "Hanako Yamada".into(),
            user_id: "cust-0042".into(),
            amount: Money::new(12_000, Currency::parse("JPY").unwrap()).unwrap(),
            deposited_at: at(T0),
            expires_at: at(T0 + 90 * DAY),
            bank_id: "0001".into(),
            bank_account: "0001-100-1-1234567".into(),
            card_company_id: "kessai-credit".into(),
            card_ref: "last4:4242".into(),
        }
    }

    fn keyring(rng: &mut SeededRandom) -> TokenKeyring {
        let mut ring = TokenKeyring::new();
        ring.add(TokenKey::generate(1, (at(T0 - DAY), at(T0 + 30 * DAY), at(T0 + 200 * DAY)), rng).unwrap()).unwrap();
        ring.add(TokenKey::generate(2, (at(T0 + 30 * DAY), at(T0 + 60 * DAY), at(T0 + 300 * DAY)), rng).unwrap())
            .unwrap();
        ring
    }

    #[test]
    fn a_sealed_token_opens_to_every_field_and_its_header_reads_in_clear() {
        let mut rng = SeededRandom::new(1);
        let ring = keyring(&mut rng);
        let t = token(&mut rng);
        let sealed = ring.seal(&t, at(T0), &mut rng).unwrap();
        assert!(sealed.len() <= MAX_SEALED_TOKEN_LEN);
        let header = TokenHeader::read(&sealed).unwrap();
        assert_eq!(
            (header.key_version, header.token_id, header.amount, header.expires_at),
            (1, t.token_id, t.amount, t.expires_at)
        );
        assert_eq!(ring.open(&sealed, at(T0 + DAY)).unwrap(), t);
        assert!(t.redeemable(at(T0 + DAY)).is_ok());
        assert!(matches!(t.redeemable(t.expires_at), Err(TokenError::Expired(_))));
        // Issued later, under the next version.
        let later = ring.seal(&t, at(T0 + 40 * DAY), &mut rng).unwrap();
        assert_eq!(TokenHeader::read(&later).unwrap().key_version, 2);
        assert_eq!(TokenId::parse(&t.token_id.to_string()).unwrap(), t.token_id);
    }

    #[test]
    fn an_altered_or_foreign_token_does_not_open() {
        let mut rng = SeededRandom::new(2);
        let ring = keyring(&mut rng);
        let sealed = ring.seal(&token(&mut rng), at(T0), &mut rng).unwrap();
        for i in 0..sealed.len() {
            let mut altered = sealed.clone();
            altered[i] ^= 0x01;
            assert!(ring.open(&altered, at(T0)).is_err(), "byte {i} altered");
        }
        // The amount raised in the clear header: the tag says no.
        let mut raised = sealed.clone();
        raised[31] = raised[31].wrapping_add(100);
        assert_eq!(ring.open(&raised, at(T0)), Err(TokenError::Unopened));
        // Another provider's key of the same version: no.
        let mut other = TokenKeyring::new();
        other
            .add(TokenKey::generate(1, (at(T0 - DAY), at(T0 + 30 * DAY), at(T0 + 200 * DAY)), &mut rng).unwrap())
            .unwrap();
        assert_eq!(other.open(&sealed, at(T0)), Err(TokenError::Unopened));
        // A version nobody holds; truncated; too long.
        let mut unknown = sealed.clone();
        unknown[4] = 9;
        assert_eq!(ring.open(&unknown, at(T0)), Err(TokenError::UnknownKeyVersion(9)));
        assert_eq!(ring.open(&sealed[..sealed.len() - 1], at(T0)), Err(TokenError::Unopened));
        assert_eq!(ring.open(&sealed[..20], at(T0)), Err(TokenError::Malformed));
        assert!(matches!(ring.open(&[0u8; 201], at(T0)), Err(TokenError::TooLarge(201))));
    }

    #[test]
    fn key_versions_issue_in_their_window_and_redeem_until_their_tokens_expire() {
        let mut rng = SeededRandom::new(3);
        let ring = keyring(&mut rng);
        let t = token(&mut rng);
        assert_eq!(ring.seal(&t, at(T0 - 2 * DAY), &mut rng), Err(TokenError::NoIssuingKey));
        assert_eq!(ring.seal(&t, at(T0 + 61 * DAY), &mut rng), Err(TokenError::NoIssuingKey), "every version expired");
        let long = DepositToken { expires_at: at(T0 + 250 * DAY), ..t.clone() };
        assert!(matches!(ring.seal(&long, at(T0), &mut rng), Err(TokenError::OutlivesKey(_))));
        let sealed = ring.seal(&t, at(T0), &mut rng).unwrap();
        // Version 1 no longer issues, but still redeems its tokens.
        assert!(ring.open(&sealed, at(T0 + 100 * DAY)).is_ok());
        assert!(matches!(ring.open(&sealed, at(T0 + 201 * DAY)), Err(TokenError::KeyRetired { version: 1, .. })));
        let mut dup = TokenKeyring::new();
        dup.add(TokenKey::generate(1, (at(1), at(2), at(3)), &mut rng).unwrap()).unwrap();
        assert!(dup.add(TokenKey::generate(1, (at(1), at(2), at(3)), &mut rng).unwrap()).is_err());
        assert!(TokenKey::generate(3, (at(5), at(5), at(9)), &mut rng).is_err());
        assert!(TokenKey::generate(3, (at(5), at(6), at(5)), &mut rng).is_err());
    }

    #[test]
    fn a_card_number_never_goes_into_a_token() {
        let mut rng = SeededRandom::new(4);
        let t = token(&mut rng);
        for card_ref in [
            "4242424242424242",
            "last4:424",
            "last4:42a2",
            "ntk:4242424242424242",
            "ntk:4242_4242_4242_4242",
            "ntk:x4242424242424242y",
            "visa",
            "ntk:",
        ] {
            let bad = DepositToken { card_ref: card_ref.into(), ..t.clone() };
            assert!(matches!(bad.check(), Err(TokenError::Field("card reference", _))), "{card_ref}");
        }
        for (field, value) in [("user name", "Hanako 4242 4242 4242 4242"), ("user id", "c-4242.4242.4242.4242")] {
            let mut bad = t.clone();
            if field == "user name" {
                bad.user_name = value.into()
            } else {
                bad.user_id = value.into()
            }
            assert!(matches!(bad.check(), Err(TokenError::Field(f, _)) if f == field), "{value}");
        }
        let hidden = DepositToken { bank_account: "4242 4242 4242 4242".into(), ..t.clone() };
        assert!(matches!(hidden.check(), Err(TokenError::Field("bank account", _))));
        // Accounts of their own forms pass, however many digits they hold.
        for account in ["0001-100-1-1234567", "9999-999-9-9999999", "GB82WEST12345698765432"] {
            assert!(DepositToken { bank_account: account.into(), ..t.clone() }.check().is_ok(), "{account}");
        }
        assert!(DepositToken { card_ref: "ntk:NT-9f2c".into(), ..t.clone() }.check().is_ok());
        let long = DepositToken { user_name: "x".repeat(41), ..t.clone() };
        assert!(long.check().is_err());
        let backwards = DepositToken { expires_at: t.deposited_at, ..t };
        assert!(backwards.check().is_err());
    }

    #[test]
    fn a_key_travels_to_the_bank_sealed_and_only_the_bank_opens_it() {
        let mut rng = SeededRandom::new(5);
        let bank = EncryptionKey::generate(&mut rng);
        let stranger = EncryptionKey::generate(&mut rng);
        let key = TokenKey::generate(7, (at(T0), at(T0 + DAY), at(T0 + 10 * DAY)), &mut rng).unwrap();
        let sealed = key.sealed_for(bank.public(), &mut rng).unwrap();
        assert!(!sealed.contains(&base64url::encode(&key.key[..])));
        let opened = TokenKey::open_delivery(&sealed, &bank).unwrap();
        assert_eq!((opened.version, opened.redeem_until, &opened.key[..]), (7, key.redeem_until, &key.key[..]));
        assert!(TokenKey::open_delivery(&sealed, &stranger).is_err());
        // Tokens the provider seals, the bank's copy opens.
        let (mut provider, mut at_bank) = (TokenKeyring::new(), TokenKeyring::new());
        provider.add(key).unwrap();
        at_bank.add(opened).unwrap();
        let t = DepositToken { expires_at: at(T0 + 5 * DAY), ..token(&mut rng) };
        let sealed = provider.seal(&t, at(T0), &mut rng).unwrap();
        assert_eq!(at_bank.open(&sealed, at(T0 + DAY)).unwrap(), t);
    }
}
