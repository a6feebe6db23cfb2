//! kessai's bank service provider (seed 002, FIG. 2 and FIG. 6): the bank
//! holding the pool account members deposit into, running as its own
//! service beside the center.
//!
//! - **The pool account.** Each deposit is booked once (`kessai bank
//!   deposit`, the teller of this simulated bank), its entry number the
//!   statement's bank reference `D<n>`. The center reads the account's
//!   statement of a day (`GET /v1/statements/{day}`, ISO 20022 camt.053).
//! - **Token keys** (FIG. 6, step 601). The credit service provider
//!   delivers its key versions sealed to the bank's X25519 delivery key
//!   (`GET /v1/token-keys` at the provider, with the bank's own client
//!   certificate); each is kept sealed under the bank's KEK, a version held
//!   never replaced by another key.
//! - **Tokens.** The center asks for the token a deposit pays for (`POST
//!   /v1/tokens`). The bank makes it only of a deposit on its pool account
//!   of that amount, quoting that reference, and of each deposit once:
//!   every FIG. 12 field, the deposit's own time, sealed under the version
//!   issuing now, expiring no later than that version redeems. Its register
//!   keeps the token made; the same request again gets the same token, any
//!   other is refused.
//!
//! Only the centers its configuration names are served, by their client
//! certificates. PROTOCOL.md §13.8 is the wire format.

pub mod api;
pub mod config;
pub mod register;
pub mod rig;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use kessai_api::bank::{SealRequest, Sealed};
use kessai_api::provider::{KeyDeliveries, KeyDelivery};
use kessai_core::jwe::{EncryptionKey, X25519Jwk};
use kessai_core::random::{OsRandom, Random};
use kessai_core::time::{Clock, Timestamp};
use kessai_core::token::{DepositToken, TokenHeader, TokenId, TokenKey, TokenKeyring};
use kessai_core::{Currency, Money};
use kessai_http::party::ServiceConfig as _;
use zeroize::Zeroizing;

pub use config::BankConfig;
pub use register::{Deposit, Made, Register};

/// The directory, under the data directory, of the delivery key and the
/// key versions delivered (`v<N>.sealed`), each created once and never
/// overwritten, sealed under the KEK.
pub const KEYS_DIR: &str = "keys";
/// The bank's X25519 delivery key, sealed under the KEK, in [`KEYS_DIR`].
pub const DELIVERY_KEY_FILE: &str = "delivery.sealed";
/// The register's SQLite file, under the data directory.
pub const REGISTER_FILE: &str = "register.sqlite";
const DELIVERY_KEY_MAGIC: &[u8; 4] = b"KTDK";
const DELIVERY_KEY_AAD: &[u8] = b"kessai-token-delivery-key";
/// The most deposits one statement page lists (camt.053 entries are about
/// 1.3 KB each: a page stays far below the center's 1 MiB answer limit).
pub const STATEMENT_PAGE: usize = 200;
/// How long the bank waits for the provider's answer.
const PROVIDER_TIMEOUT_MS: u64 = 10_000;

/// What the bank answers a call it does not honour.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The caller is not one of the centers it serves.
    #[error("{0}")]
    NotAClient(String),
    /// The request is not of its form.
    #[error("{0}")]
    Malformed(String),
    /// No token is made of this deposit for this request: a verdict, the
    /// same when asked again (until a key version issues, for that one).
    #[error("{0}")]
    Deposit(String),
    /// Not decided now (no key version issuing yet): asked again later, it
    /// may be made.
    #[error("{0}")]
    NotNow(String),
    /// The register could not be read or written: nothing was entered.
    #[error("the register: {0}")]
    Register(#[from] sqlx::Error),
    #[error("{0}")]
    Key(String),
}

/// The key versions, where they are kept, and the key they come sealed to.
struct KeyStore {
    dir: PathBuf,
    kek: Zeroizing<[u8; 32]>,
    delivery_key: EncryptionKey,
}

/// The bank service provider.
pub struct Bank {
    pub bank_id: String,
    pub provider_id: String,
    pub pool_account: String,
    pub currency: Currency,
    lifetime_s: u64,
    keyring: RwLock<Arc<TokenKeyring>>,
    store: Option<KeyStore>,
    centers: HashSet<String>,
    register: Register,
    clock: Arc<dyn Clock>,
    /// The provider, reached with the bank's own client certificate.
    link: Option<(String, kessai_http::HttpsClient)>,
}

impl std::fmt::Debug for Bank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bank").field("bank_id", &self.bank_id).field("pool_account", &self.pool_account).finish()
    }
}

/// The bank's delivery key in `dir`, if it has one.
fn read_delivery_key(dir: &std::path::Path, kek: &[u8; 32]) -> anyhow::Result<Option<EncryptionKey>> {
    let path = dir.join(DELIVERY_KEY_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let bytes = kessai_tls::read_secret_file(&path)?;
    let secret = kessai_core::at_rest::open(DELIVERY_KEY_MAGIC, DELIVERY_KEY_AAD, &bytes, kek)
        .with_context(|| format!("{}: it does not open under this KEK", path.display()))?;
    let secret: &[u8; 32] = secret[..].try_into().map_err(|_| anyhow::anyhow!("{}: not a key", path.display()))?;
    Ok(Some(EncryptionKey::from_secret(secret)))
}

/// The bank's delivery key in `dir`, made (sealed under the KEK) if it has
/// none: its public half, as the provider's configuration names it.
pub fn delivery_key_once(dir: &std::path::Path, kek: &[u8; 32]) -> anyhow::Result<X25519Jwk> {
    if let Some(key) = read_delivery_key(dir, kek)? {
        return Ok(key.public().to_jwk());
    }
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700).create(dir)?;
    let key = EncryptionKey::generate(&mut OsRandom);
    let sealed =
        kessai_core::at_rest::seal(DELIVERY_KEY_MAGIC, DELIVERY_KEY_AAD, key.secret_bytes(), kek, &mut OsRandom);
    kessai_tls::write_new_file(&dir.join(DELIVERY_KEY_FILE), &sealed, true)?;
    Ok(key.public().to_jwk())
}

/// `account/D<n>`: the entry number of a deposit on `account`.
fn deposit_entry(deposit: &str, account: &str) -> Result<u64, Refused> {
    let not_ours = || Refused::Deposit(format!("{deposit:?} names no deposit on the pool account {account}"));
    let (acct, reference) = deposit.split_once('/').ok_or_else(not_ours)?;
    let n = reference.strip_prefix('D').ok_or_else(not_ours)?;
    if acct != account || n.is_empty() || n.len() > 18 || !n.bytes().all(|b| b.is_ascii_digit()) || n.starts_with('0') {
        return Err(not_ours());
    }
    n.parse().map_err(|_| not_ours())
}

impl Bank {
    /// A bank over `keys` (not read from disk, receiving no deliveries:
    /// tests), serving `centers`, with `register`.
    pub fn new(config: &BankConfig, keys: TokenKeyring, register: Register, clock: Arc<dyn Clock>) -> Bank {
        Bank {
            bank_id: config.bank_id.clone(),
            provider_id: config.tokens.provider_id.clone(),
            pool_account: config.pool_account.clone(),
            currency: config.currency,
            lifetime_s: config.tokens.lifetime_s,
            keyring: RwLock::new(Arc::new(keys)),
            store: None,
            centers: config.centers.iter().cloned().collect(),
            register,
            clock,
            link: None,
        }
    }

    /// The bank `config` describes: its delivery key (which must be there:
    /// `kessai bank init`), the versions delivered before, its register and
    /// its link to the provider.
    pub async fn open(config: &BankConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Bank> {
        let kek = config.read_kek()?;
        let dir = config.data_dir.join(KEYS_DIR);
        let delivery_key = read_delivery_key(&dir, &kek)?.with_context(|| {
            format!(
                "no delivery key in {}: make it with `kessai bank init` and give the provider its public half",
                dir.display()
            )
        })?;
        let keys = kessai_http::party::read_keys(&dir, &kek)?;
        let register = Register::open(&config.data_dir.join(REGISTER_FILE)).await.context("the register")?;
        let mut bank = Bank::new(config, keys, register, clock);
        bank.store = Some(KeyStore { dir, kek, delivery_key });
        if let Some(url) = &config.tokens.provider_url {
            let ca_dir = kessai_tls::CaDir::new(config.resolve(&config.tls.ca_dir));
            let trust =
                config.tokens.provider_ca.as_deref().map(|p| config.resolve(p)).unwrap_or_else(|| ca_dir.ca_cert());
            let tls = kessai_tls::client_config(&trust, Some((&ca_dir, &config.tokens.client_name)))
                .context("the bank's TLS to the provider")?;
            bank.link =
                Some((url.trim_end_matches('/').to_owned(), kessai_http::HttpsClient::new(tls, PROVIDER_TIMEOUT_MS)));
        }
        Ok(bank)
    }

    /// The versions held now.
    pub fn keyring(&self) -> Arc<TokenKeyring> {
        Arc::clone(&self.keyring.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    pub fn register(&self) -> &Register {
        &self.register
    }

    fn center(&self, client: &str) -> Result<(), Refused> {
        if self.centers.contains(client) {
            Ok(())
        } else {
            Err(Refused::NotAClient(format!("{client} is not a center this bank serves")))
        }
    }

    /// Books a deposit to the pool account (the teller): its entry number.
    pub async fn deposit(
        &self,
        amount: Money,
        reference: Option<&kessai_bank::rf::Reference>,
        remitter: &str,
    ) -> anyhow::Result<u64> {
        anyhow::ensure!(amount.currency() == self.currency, "the pool account holds {}", self.currency);
        anyhow::ensure!(amount.amount_minor() > 0, "a deposit of nothing");
        let remitter = remitter.trim();
        anyhow::ensure!(
            (1..=140).contains(&remitter.chars().count()) && !remitter.chars().any(char::is_control),
            "the remitter: 1 to 140 characters"
        );
        let now = self.clock.now();
        // What its statement will write: a remitter the writer refuses
        // would stop the day's statement.
        kessai_bank::camt::DraftEntry::new(
            kessai_bank::camt::EntryKind::Credit,
            amount,
            kessai_bank::Date::of(now),
            "D1",
        )?
        .with_remitter(remitter)?;
        let day = kessai_bank::Date::of(now).to_string();
        let entry = self.register.book(now, &day, amount, reference.map(|r| r.as_str()), remitter).await?;
        tracing::info!(entry, amount = %amount, "deposit booked to the pool account");
        Ok(entry)
    }

    /// The pool account's statement of `day` (`YYYY-MM-DD`), as camt.053:
    /// the deposits booked that day so far after entry `after`, at most
    /// [`STATEMENT_PAGE`] of them, the opening balance every deposit booked
    /// before them; and the entry to ask after for the next page, if there
    /// are more.
    pub async fn statement(&self, client: &str, day: &str, after: u64) -> Result<(Vec<u8>, Option<u64>), Refused> {
        self.center(client)?;
        let date =
            kessai_bank::Date::parse(day).ok_or_else(|| Refused::Malformed(format!("{day:?}: not YYYY-MM-DD")))?;
        let (mut deposits, before) = self.register.day(day, after, STATEMENT_PAGE + 1).await?;
        let next = if deposits.len() > STATEMENT_PAGE {
            deposits.truncate(STATEMENT_PAGE);
            deposits.last().map(|d| d.entry)
        } else {
            None
        };
        let file = |e: kessai_bank::BankFileError| Refused::Key(format!("the statement: {e}"));
        let opening = Money::new(before, self.currency).map_err(|e| Refused::Key(e.to_string()))?;
        let id = match after {
            0 => format!("POOL-{}", day.replace('-', "")),
            n => format!("POOL-{}-{n}", day.replace('-', "")),
        };
        let mut draft = kessai_bank::camt053::StatementDraft::new(&id, &self.pool_account, self.clock.now(), opening)
            .map_err(file)?;
        for d in &deposits {
            let mut entry = kessai_bank::camt::DraftEntry::new(
                kessai_bank::camt::EntryKind::Credit,
                d.amount,
                date,
                &format!("D{}", d.entry),
            )
            .map_err(file)?;
            if let Some(r) = d.reference.as_deref().and_then(|r| kessai_bank::rf::Reference::parse(r).ok()) {
                entry = entry.with_reference(r);
            }
            draft.push(entry.with_remitter(&d.remitter).map_err(file)?).map_err(file)?;
        }
        Ok((kessai_bank::camt053::write(&draft).into_bytes(), next))
    }

    /// Makes the token deposit `req.deposit` pays for, once (see the
    /// crate's documentation).
    pub async fn seal(&self, client: &str, req: &SealRequest) -> Result<Sealed, Refused> {
        self.center(client)?;
        let token_id = TokenId::parse(&req.token_id).map_err(|e| Refused::Malformed(format!("token_id: {e}")))?;
        let request = serde_json::to_string(req).map_err(|e| Refused::Malformed(e.to_string()))?;
        let entry = deposit_entry(&req.deposit, &self.pool_account)?;
        let deposit = self
            .register
            .deposit(entry)
            .await?
            .ok_or_else(|| Refused::Deposit(format!("the pool account has no deposit {}", req.deposit)))?;
        if let Some(made) = self.register.made(entry).await? {
            return Self::again(made, &request, client, deposit.booked_at);
        }
        if deposit.amount != req.amount {
            return Err(Refused::Deposit(format!(
                "deposit {} is of {}, not {}",
                req.deposit, deposit.amount, req.amount
            )));
        }
        if deposit.reference.as_deref() != Some(req.reference.as_str()) {
            return Err(Refused::Deposit(format!("deposit {} quotes another reference", req.deposit)));
        }
        let now = self.clock.now();
        let keyring = self.keyring();
        let key_until = keyring
            .issuing_until(now)
            .ok_or_else(|| Refused::NotNow(kessai_core::token::TokenError::NoIssuingKey.to_string()))?;
        let lifetime_end = Timestamp::from_unix_s(deposit.booked_at.unix_s().saturating_add(self.lifetime_s));
        let expires_at = lifetime_end.min(key_until);
        if expires_at <= now {
            return Err(Refused::Deposit(format!("a token of deposit {} would expire at once", req.deposit)));
        }
        let token = DepositToken {
            token_id,
            user_name: req.user_name.clone(),
            user_id: req.user_id.clone(),
            amount: deposit.amount,
            deposited_at: deposit.booked_at,
            expires_at,
            bank_id: self.bank_id.clone(),
            bank_account: req.bank_account.clone(),
            card_company_id: self.provider_id.clone(),
            card_ref: req.card_ref.clone(),
        };
        let sealed = keyring.seal(&token, now, &mut OsRandom).map_err(|e| Refused::Deposit(e.to_string()))?;
        let header = TokenHeader::read(&sealed).map_err(|e| Refused::Key(e.to_string()))?;
        let made = Made {
            entry,
            token_id: req.token_id.clone(),
            request: request.clone(),
            client: client.to_owned(),
            sealed,
            key_version: header.key_version,
            expires_at,
            made_at: now,
        };
        let sealed = match self.register.enter(&made).await? {
            (Some(held), true) => Self::answer(held, deposit.booked_at, true),
            (Some(held), false) => Self::again(held, &request, client, deposit.booked_at)?,
            (None, _) => return Err(Refused::Deposit(format!("token {} was made of another deposit", req.token_id))),
        };
        tracing::info!(client, deposit = %req.deposit, token = %sealed.token_id, key_version = sealed.key_version, first = sealed.first, "deposit token made");
        Ok(sealed)
    }

    /// A deposit that made a token before: the same token for the same
    /// request from the same center, else refused.
    fn again(made: Made, request: &str, client: &str, deposited_at: Timestamp) -> Result<Sealed, Refused> {
        if made.request != request || made.client != client {
            return Err(Refused::Deposit(format!("the deposit made token {} before", made.token_id)));
        }
        Ok(Self::answer(made, deposited_at, false))
    }

    /// The key versions the provider delivers to this bank now.
    pub async fn fetch(&self) -> anyhow::Result<KeyDeliveries> {
        let (url, client) =
            self.link.as_ref().context("this bank has no link to the provider (tokens.provider_url)")?;
        let (status, body) = client.get(&format!("{url}/v1/token-keys")).await.context("the provider")?;
        anyhow::ensure!(status.is_success(), "the provider: {status}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).context("the provider's deliveries")
    }

    /// Fetches the provider's deliveries and keeps those new: the versions
    /// new to this bank.
    pub async fn fetch_keys(&self) -> anyhow::Result<Vec<u8>> {
        let sent = self.fetch().await?;
        self.receive(&sent, &mut OsRandom)
    }

    /// Takes the provider's deliveries: each opened with the delivery key;
    /// a version not held is written sealed under the KEK (once) and held
    /// from now on; a version held must be the very key. Answers the
    /// versions new to this bank.
    pub fn receive<R: Random + ?Sized>(&self, sent: &KeyDeliveries, rng: &mut R) -> anyhow::Result<Vec<u8>> {
        let store = self.store.as_ref().context("this bank receives no deliveries")?;
        anyhow::ensure!(
            sent.provider_id == self.provider_id,
            "the deliveries are from {}, not the provider configured ({})",
            sent.provider_id,
            self.provider_id
        );
        let mut ring = self.keyring.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = TokenKeyring::new();
        for k in ring.keys() {
            next.add(TokenKey::from_json(&k.to_json()?)?)?;
        }
        let (mut new, mut refused) = (Vec::new(), Vec::new());
        for d in &sent.deliveries {
            match Self::take(store, &next, d, rng) {
                Ok(Some(key)) => {
                    new.push(key.version);
                    next.add(key)?;
                }
                Ok(None) => {}
                Err(e) => refused.push(format!("version {}: {e:#}", d.version)),
            }
        }
        // The versions taken are held even if another was refused.
        *ring = Arc::new(next);
        anyhow::ensure!(refused.is_empty(), "refused (held keys kept; taken now: {new:?}): {}", refused.join("; "));
        if !new.is_empty() {
            tracing::info!(versions = ?new, provider = %self.provider_id, "token key versions received");
        }
        Ok(new)
    }

    /// One delivery: `None` for a version held (it must be the very key),
    /// else the key, written sealed under the KEK (once: a file another
    /// fetch wrote must hold the very key).
    fn take<R: Random + ?Sized>(
        store: &KeyStore,
        held: &TokenKeyring,
        d: &KeyDelivery,
        rng: &mut R,
    ) -> anyhow::Result<Option<TokenKey>> {
        let key = TokenKey::open_delivery(&d.jwe, &store.delivery_key)?;
        anyhow::ensure!(key.version == d.version, "the delivery holds version {}", key.version);
        let changed = || anyhow::anyhow!("another key under version {}: refused, the held one kept", key.version);
        if let Some(k) = held.keys().find(|k| k.version == key.version) {
            return if k.same_as(&key) { Ok(None) } else { Err(changed()) };
        }
        let path = store.dir.join(format!("v{}.sealed", key.version));
        match kessai_tls::write_new_file(&path, &key.seal_at_rest(&store.kek, rng)?, true) {
            Ok(()) => {}
            Err(kessai_tls::TlsError::Exists(_)) => {
                let bytes = kessai_tls::read_secret_file(&path)?;
                if !TokenKey::open_at_rest(&bytes, &store.kek)?.same_as(&key) {
                    return Err(changed());
                }
            }
            Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
        }
        Ok(Some(key))
    }

    fn answer(made: Made, deposited_at: Timestamp, first: bool) -> Sealed {
        Sealed {
            token_id: made.token_id,
            token: kessai_core::base64url::encode(&made.sealed),
            key_version: made.key_version,
            deposited_at: deposited_at.unix_s(),
            expires_at: made.expires_at.unix_s(),
            first,
        }
    }
}

/// How soon a bank asks the provider again while it has not reached it
/// since it started.
const KEYS_RETRY_MS: u64 = 2_000;

/// Fetches the provider's key versions at start and then every `every_s`
/// seconds (rotation: a new version is held within that), for as long as
/// it runs.
pub async fn fetch_keys_every(bank: Arc<Bank>, every_s: u64) {
    let mut fetched = false;
    loop {
        match bank.fetch_keys().await {
            Ok(_) => fetched = true,
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "fetching the token key versions failed"),
        }
        let wait = if fetched { every_s.saturating_mul(1000) } else { KEYS_RETRY_MS };
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    }
}
