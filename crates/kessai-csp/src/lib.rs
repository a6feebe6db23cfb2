//! kessai's credit service provider (seed 002, FIG. 6): the party whose
//! keys protect deposit tokens, running as its own service.
//!
//! - It generates a token key per key version (`kessai csp key-new`), kept
//!   in its data directory sealed under its own KEK, and delivers each
//!   version still redeeming to the bank sealed to the bank's X25519 key
//!   (`GET /v1/token-keys`, a JWE per version). Rotation is a new version
//!   with a later issuing window; a version past its redeeming window is
//!   not delivered and redeems nothing (a payback still checks its MAC).
//! - It honours a token once (`POST /v1/redemptions`, `POST /v1/paybacks`):
//!   its MAC under a version it holds, its expiry, and its register
//!   ([`Register`]), which holds each token for one use, its redemption by
//!   one REDEEM transaction or its payback, for the client that asked. A
//!   call made again answers as the first did, so a caller that lost the
//!   answer asks again (or reads it, `GET /v1/tokens/{id}`).
//!
//! Only the clients its configuration names are served, by their client
//! certificates: token keys to a bank's (acting as the bank, with a
//! delivery key), the uses of tokens to a center's (acting as the center). PROTOCOL.md §13.7 is the
//! wire format.

pub mod api;
pub mod config;
pub mod register;
pub mod rig;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::Context;
use kessai_api::provider::{
    CheckRequest, Checked, HeldFor, Honoured, KeyDeliveries, KeyDelivery, PaybackRequest, RedemptionRequest,
};
use kessai_core::jwe::EncryptionPublicKey;
use kessai_core::random::{OsRandom, Random};
use kessai_core::time::{Clock, Timestamp};
use kessai_core::token::{DepositToken, TokenHeader, TokenKey, TokenKeyring};
use kessai_http::party::ServiceConfig as _;
use zeroize::Zeroizing;

pub use config::ProviderConfig;
pub use register::{Entry, Register};

/// The directory, under the data directory, of the key versions: one file
/// per version (`v<N>.sealed`), created once and never overwritten.
pub const KEYS_DIR: &str = "keys";
/// The register's SQLite file, under the data directory.
pub const REGISTER_FILE: &str = "register.sqlite";

/// What the provider answers a call it does not honour.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The caller is not one of its clients, or has no key to deliver to.
    #[error("{0}")]
    NotAClient(String),
    /// The request is not of its form.
    #[error("{0}")]
    Malformed(String),
    /// The token itself is refused: a verdict, the same when asked again.
    #[error("{0}")]
    Token(String),
    /// Not decided now (the caller's time ahead of the provider's clock):
    /// asked again later, it may be honoured.
    #[error("{0}")]
    NotNow(String),
    /// The register holds nothing for the token that this client may see.
    #[error("{0}")]
    NotHeld(String),
    /// The register could not be read or written: nothing was entered.
    #[error("the register: {0}")]
    Register(#[from] sqlx::Error),
    #[error("{0}")]
    Key(String),
}

/// A client of the provider: the name its client certificate carries, and
/// the bank's key token keys are sealed to (none: it redeems but receives
/// no keys).
#[derive(Debug, Clone)]
pub struct Client {
    pub name: String,
    pub delivery_key: Option<EncryptionPublicKey>,
}

/// Where the key versions live at rest, and the KEK they are sealed under.
struct KeyStore {
    dir: PathBuf,
    kek: Zeroizing<[u8; 32]>,
}

/// The credit service provider.
pub struct Provider {
    pub id: String,
    keyring: RwLock<Arc<TokenKeyring>>,
    store: Option<KeyStore>,
    clients: HashMap<String, Client>,
    register: Register,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider").field("id", &self.id).field("clients", &self.clients.keys()).finish()
    }
}

pub use kessai_http::party::{keep_key, read_keys};

/// Adds version `version` (default: one above the newest held) issuing over
/// `issue` and redeeming until `redeem_until`, as a new sealed file in
/// `dir`; a version held is refused. Answers the version.
pub fn add_key(
    dir: &Path,
    kek: &[u8; 32],
    version: Option<u8>,
    issue: (Timestamp, Timestamp),
    redeem_until: Timestamp,
) -> anyhow::Result<u8> {
    let held = read_keys(dir, kek)?;
    let version = match version {
        Some(v) => v,
        None => held.keys().map(|k| k.version).max().unwrap_or(0).checked_add(1).context("no version above 255")?,
    };
    anyhow::ensure!(version > 0, "key versions start at 1");
    anyhow::ensure!(held.keys().all(|k| k.version != version), "version {version} is held already");
    let key = TokenKey::generate(version, (issue.0, issue.1, redeem_until), &mut OsRandom)?;
    keep_key(dir, kek, &key)?;
    Ok(version)
}

fn decode_token(text: &str) -> Result<Vec<u8>, Refused> {
    let bytes = kessai_core::base64url::decode(text).map_err(|_| Refused::Malformed("token: not base64url".into()))?;
    TokenHeader::read(&bytes).map_err(|e| Refused::Malformed(format!("token: {e}")))?;
    Ok(bytes)
}

fn parse_transaction(text: &str) -> Result<String, Refused> {
    let ok = text.len() == 32 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !ok {
        return Err(Refused::Malformed("transaction: 32 lower-case hex digits".into()));
    }
    Ok(text.to_owned())
}

impl Provider {
    /// A provider over `keys` (not read from disk: tests), its `clients`
    /// and `register`.
    pub fn new(
        id: impl Into<String>,
        keys: TokenKeyring,
        clients: Vec<Client>,
        register: Register,
        clock: Arc<dyn Clock>,
    ) -> Provider {
        Provider {
            id: id.into(),
            keyring: RwLock::new(Arc::new(keys)),
            store: None,
            clients: clients.into_iter().map(|c| (c.name.clone(), c)).collect(),
            register,
            clock,
        }
    }

    /// The provider `config` describes: its key versions (sealed under its
    /// KEK), its clients and its register.
    pub async fn open(config: &ProviderConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Provider> {
        let kek = config.read_kek()?;
        let dir = config.data_dir.join(KEYS_DIR);
        let keys = read_keys(&dir, &kek)?;
        let register = Register::open(&config.data_dir.join(REGISTER_FILE)).await.context("the register")?;
        let mut provider = Provider::new(config.provider_id.clone(), keys, config.clients()?, register, clock);
        provider.store = Some(KeyStore { dir, kek });
        Ok(provider)
    }

    /// The versions held now.
    pub fn keyring(&self) -> Arc<TokenKeyring> {
        Arc::clone(&self.keyring.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Reads the key directory again (a version added while serving); a
    /// version held keeps its key. Answers the versions held.
    pub fn reload_keys(&self) -> Result<Vec<u8>, Refused> {
        let Some(store) = &self.store else { return Ok(self.keyring().keys().map(|k| k.version).collect()) };
        let fresh = read_keys(&store.dir, &store.kek).map_err(|e| Refused::Key(format!("{e:#}")))?;
        let held = self.keyring();
        for key in held.keys() {
            if !fresh.keys().any(|k| k.same_as(key)) {
                return Err(Refused::Key(format!(
                    "key version {} changed or went from {}",
                    key.version,
                    store.dir.display()
                )));
            }
        }
        let versions = fresh.keys().map(|k| k.version).collect();
        *self.keyring.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(fresh);
        Ok(versions)
    }

    fn client(&self, name: &str) -> Result<&Client, Refused> {
        self.clients.get(name).ok_or_else(|| Refused::NotAClient(format!("{name} is not a client of this provider")))
    }

    /// Every version still redeeming, sealed to `client`'s key.
    pub fn deliveries<R: Random + ?Sized>(&self, client: &str, rng: &mut R) -> Result<KeyDeliveries, Refused> {
        let to = self
            .client(client)?
            .delivery_key
            .as_ref()
            .ok_or_else(|| Refused::NotAClient(format!("{client} has no key registered to receive token keys")))?;
        self.reload_keys()?;
        let now = self.clock.now();
        let ring = self.keyring();
        let deliveries = ring
            .keys()
            .filter(|k| now <= k.redeem_until)
            .map(|k| {
                Ok(KeyDelivery {
                    version: k.version,
                    jwe: k.sealed_for(to, rng).map_err(|e| Refused::Key(e.to_string()))?,
                })
            })
            .collect::<Result<Vec<_>, Refused>>()?;
        Ok(KeyDeliveries { provider_id: self.id.clone(), deliveries })
    }

    /// Honours the token a card gave up by REDEEM `transaction` at `at`
    /// (the card's time): its key version held and redeeming then, its MAC,
    /// not expired then, and the register holding it for no other use.
    pub async fn redeem(&self, client: &str, req: &RedemptionRequest) -> Result<Honoured, Refused> {
        self.client(client)?;
        let sealed = decode_token(&req.token)?;
        let transaction = parse_transaction(&req.transaction)?;
        let at = Timestamp::from_unix_s(req.at);
        let now = self.clock.now();
        if at > now.checked_add_s(crate::config::CLOCK_SKEW_S).unwrap_or(now) {
            return Err(Refused::NotNow(format!(
                "the redemption's time {} is ahead of the provider's clock",
                at.utc()
            )));
        }
        let token = self.open_token(&sealed, at)?;
        token.redeemable(at).map_err(|e| Refused::Token(e.to_string()))?;
        // The bank's clock, which dated the deposit, may run ahead of the
        // card's by as much as the provider allows any clock.
        if at.checked_add_s(crate::config::CLOCK_SKEW_S).is_some_and(|a| a < token.deposited_at) {
            return Err(Refused::Token(format!("the redemption's time {} is before its deposit", at.utc())));
        }
        let entry = Entry::of(&token, &sealed, HeldFor::Redemption, Some(transaction.clone()), client, now)?;
        let (held, first) = self.register.enter(&entry).await?;
        if held.client != client {
            return Err(Refused::NotAClient(format!(
                "the register holds it for client {}, not {client}: every instance of a center uses one client name",
                held.client
            )));
        }
        match (held.held_for, held.transaction.as_deref()) {
            (HeldFor::Redemption, Some(tx)) if tx == transaction => Ok(held.honoured(first)),
            (HeldFor::Redemption, _) => Err(Refused::Token("it was redeemed before, by another transaction".into())),
            (HeldFor::Payback, _) => Err(Refused::Token("it is paid back to the depositor's account".into())),
        }
    }

    /// Honours the payback of an expired token: its MAC under a version it
    /// holds (as it opened before its expiry), expired now, and the register
    /// holding it for no redemption. Asked again, the same answer.
    pub async fn pay_back(&self, client: &str, req: &PaybackRequest) -> Result<Honoured, Refused> {
        self.client(client)?;
        let sealed = decode_token(&req.token)?;
        let header = TokenHeader::read(&sealed).map_err(|e| Refused::Malformed(e.to_string()))?;
        // Opened as at the last second it could be redeemed: its version
        // may have stopped redeeming since (a version redeems until its
        // tokens expire), its MAC has not.
        let before_expiry = header.expires_at.saturating_sub_s(1);
        let token = self.open_token(&sealed, before_expiry)?;
        let now = self.clock.now();
        if now < token.expires_at {
            return Err(Refused::Token(format!("it does not expire until {}", token.expires_at.utc())));
        }
        let entry = Entry::of(&token, &sealed, HeldFor::Payback, None, client, now)?;
        let (held, first) = self.register.enter(&entry).await?;
        if held.client != client {
            return Err(Refused::NotAClient(format!(
                "the register holds it for client {}, not {client}: every instance of a center uses one client name",
                held.client
            )));
        }
        match held.held_for {
            HeldFor::Payback => Ok(held.honoured(first)),
            HeldFor::Redemption => Err(Refused::Token("it was redeemed before its expiry".into())),
        }
    }

    /// Whether `req`'s token is one the provider would honour now: its MAC
    /// under a version it holds and redeeming, not expired. Enters nothing.
    pub fn check(&self, client: &str, req: &CheckRequest) -> Result<Checked, Refused> {
        self.client(client)?;
        let sealed = decode_token(&req.token)?;
        let now = self.clock.now();
        let token = self.open_token(&sealed, now)?;
        token.redeemable(now).map_err(|e| Refused::Token(e.to_string()))?;
        if token.deposited_at > now.checked_add_s(crate::config::CLOCK_SKEW_S).unwrap_or(now) {
            return Err(Refused::NotNow(format!(
                "its deposit time {} is ahead of the provider's clock",
                token.deposited_at.utc()
            )));
        }
        let header = TokenHeader::read(&sealed).map_err(|e| Refused::Malformed(e.to_string()))?;
        Ok(Checked {
            token_id: token.token_id.to_string(),
            key_version: header.key_version,
            amount: token.amount,
            expires_at: token.expires_at.unix_s(),
        })
    }

    fn open_token(&self, sealed: &[u8], at: Timestamp) -> Result<DepositToken, Refused> {
        self.keyring().open(sealed, at).map_err(|e| Refused::Token(e.to_string()))
    }

    /// What the register holds for a token (operators, tests).
    pub async fn held(&self, token_id: &str) -> Result<Option<Entry>, Refused> {
        Ok(self.register.held(token_id).await?)
    }

    /// What the register holds for `token_id`, as `client` entered it: the
    /// verdict it was given (`first` false), for a caller that must know
    /// whether a call it made was honoured.
    pub async fn held_for_client(&self, client: &str, token_id: &str) -> Result<Honoured, Refused> {
        self.client(client)?;
        match self.register.held(token_id).await? {
            Some(e) if e.client == client => Ok(e.honoured(false)),
            _ => Err(Refused::NotHeld(format!("the register holds nothing of {client}'s for {token_id}"))),
        }
    }
}
