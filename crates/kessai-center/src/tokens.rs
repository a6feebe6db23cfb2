//! Bank deposit tokens at the center (seed 002, #21): a member's deposit
//! into the pool account becomes a token on the member's IC card, sealed
//! under a key of the credit service provider, which the card later gives
//! up for value.
//!
//! ```text
//! request ─► awaiting ─statement's credit matches─► issued ─STORE TOKEN proven─► stored
//!               └─ not received in time ─► lapsed            REDEEM TOKEN proven, provider agrees ─► redeemed
//! ```
//!
//! - **Request.** The member signs a prepaid request `deposit_token` naming
//!   its IC card, the amount, the account an unredeemed token's value goes
//!   back to and its credit card (`last4:` or `ntk:`, never a number). The
//!   answer is an ISO 11649 reference the transfer must quote.
//! - **Issue.** A credit on the pool account's statement quoting that
//!   reference, of that amount, in time, makes the token: every FIG. 12
//!   field, sealed by [`TokenBank`] (the bank's side, which holds the key
//!   versions the provider delivered) under the version issuing then, its
//!   expiry no later than that version redeems. In the transaction that
//!   takes the credit: the token row (`issued`, with its sealed bytes) and
//!   the books, bank pool → tokens outstanding. A credit that cannot make a
//!   token (no version issues, another amount, too late) waits in suspense
//!   for an operator, as any credit that matches nothing.
//! - **On the card** ([`crate::token_session`]): a secure session stores
//!   issued tokens (STORE TOKEN) or redeems a stored one (REDEEM TOKEN);
//!   the card's R-MACed answer alone moves a token. A redeemed token is
//!   checked by the credit service provider ([`TokenProvider`]: its MAC
//!   under a version it holds, its expiry, never redeemed by another
//!   transaction) and becomes value owed to the card (tokens outstanding →
//!   card float, held, posted when the card takes the CREDIT).

use kessai_api::TokenStatus;
use kessai_core::Money;
use kessai_core::ids::TransactionId;
use kessai_core::messages::prepaid::PrepaidRequest;
use kessai_core::messages::registration::MemberDetails;
use kessai_core::time::Timestamp;
use std::sync::Arc;

use kessai_api::provider::{HeldFor, Honoured};
use kessai_core::jwe::EncryptionKey;
use kessai_core::token::{DepositToken, TokenError, TokenId, TokenKey, TokenKeyring};
use serde::Deserialize;

use crate::books::Entries;
use crate::db::{BankCreditRow, CreditIssues, TokenRow};
use crate::prepaid::{PrepaidError, PrepaidReply};
use crate::purchase::CardRegistryStatus;
use crate::service::{Center, CenterError};

pub use kessai_api::views::DepositToken as TokenView;

/// The center's rules for deposit tokens (configuration `[tokens]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenPolicy {
    /// How long a token pays after its deposit (seconds), unless its key
    /// version stops redeeming sooner.
    pub lifetime_s: u64,
    /// The pool account's bank, as the token names it (Zengin code or BIC).
    pub bank_id: String,
    /// The credit service provider whose keys seal the tokens.
    pub provider_id: String,
    /// The provider's service (`kessai csp`), `https://…`; without it this
    /// center issues and redeems no tokens.
    pub provider_url: Option<String>,
    /// The CA the provider's certificate chains to; default the center's
    /// (`tls.ca_dir`'s `ca.crt`).
    pub provider_ca: Option<std::path::PathBuf>,
    /// The bank's side's client certificate in `tls.ca_dir` (acting as the
    /// bank): it receives the provider's token keys; the center's own
    /// (`tls.client_name`) redeems and pays back.
    pub bank_client_name: String,
}

impl TokenPolicy {
    /// Refuses a policy no token could be made under: a lifetime of none or
    /// past ten years, a bank or provider id a token cannot carry.
    pub fn check(&self) -> Result<(), TokenError> {
        if !(1..=10 * 366 * 86_400).contains(&self.lifetime_s) {
            return Err(TokenError::Key("[tokens] lifetime_s: 1 s to ten years".into()));
        }
        for (name, value) in [("bank_id", &self.bank_id), ("provider_id", &self.provider_id)] {
            let ok = !value.trim().is_empty()
                && value.len() <= kessai_core::token::MAX_FIELD_BYTES
                && !value.chars().any(char::is_control)
                && !kessai_core::token::holds_a_card_number(value);
            if !ok {
                return Err(TokenError::Key(format!("[tokens] {name}: 1 to 40 bytes of text, no card number")));
            }
        }
        if self.provider_url.as_deref().is_some_and(|u| !u.starts_with("https://") || u.len() > 2048) {
            return Err(TokenError::Key("[tokens] provider_url: an https:// URL".into()));
        }
        Ok(())
    }
}

impl Default for TokenPolicy {
    fn default() -> TokenPolicy {
        TokenPolicy {
            lifetime_s: 180 * 86_400,
            bank_id: "0999".into(),
            provider_id: "kessai-csp".into(),
            provider_url: None,
            provider_ca: None,
            bank_client_name: "bank".into(),
        }
    }
}

/// The bank's side of token issuing: the key versions the credit service
/// provider delivered (`TokenKey::open_delivery`, to the bank's delivery
/// key), kept sealed under the KEK in the data directory, and the rules.
pub struct TokenBank {
    keyring: std::sync::RwLock<Arc<TokenKeyring>>,
    pub policy: TokenPolicy,
    /// The provider, reached with the bank's own client certificate, for
    /// its deliveries.
    link: Option<TokenProvider>,
    /// Where delivered versions are kept, and the key they come sealed to;
    /// `None`: the versions it was made with only (tests).
    store: Option<DeliveryStore>,
}

struct DeliveryStore {
    dir: std::path::PathBuf,
    kek: crate::keystore::Kek,
    delivery_key: EncryptionKey,
}

impl std::fmt::Debug for TokenBank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenBank").field("keyring", &self.keyring()).field("policy", &self.policy).finish()
    }
}

impl TokenBank {
    /// A bank holding `keyring` and receiving no deliveries.
    pub fn holding(keyring: TokenKeyring, policy: TokenPolicy) -> TokenBank {
        TokenBank { keyring: std::sync::RwLock::new(Arc::new(keyring)), policy, link: None, store: None }
    }

    /// The versions held now.
    pub fn keyring(&self) -> Arc<TokenKeyring> {
        Arc::clone(&self.keyring.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The same, fetching the provider's deliveries through `link` (the
    /// bank's own client certificate).
    pub fn with_link(self, link: TokenProvider) -> TokenBank {
        TokenBank { link: Some(link), ..self }
    }

    /// The key versions the provider delivers to this bank now.
    pub async fn fetch(&self) -> Result<kessai_api::provider::KeyDeliveries, ProviderUnreachable> {
        let link = self
            .link
            .as_ref()
            .ok_or_else(|| ProviderUnreachable::out_of_protocol("this bank has no link to the provider"))?;
        link.key_deliveries().await
    }

    /// The bank's side over `dir` ([`TOKEN_KEYS_DIR`]): its delivery key
    /// ([`DELIVERY_KEY_FILE`], which must be there) and the versions
    /// delivered before.
    pub fn open(
        dir: &std::path::Path,
        kek: &crate::keystore::Kek,
        policy: TokenPolicy,
    ) -> Result<TokenBank, TokenError> {
        policy.check()?;
        let delivery_key = read_delivery_key(dir, kek)?.ok_or_else(|| {
            TokenError::Key(format!(
                "no delivery key in {}: make it with `kessai center token-delivery-key` and give the provider its public half",
                dir.display()
            ))
        })?;
        let ring = held_versions(dir, kek)?;
        Ok(TokenBank {
            keyring: std::sync::RwLock::new(Arc::new(ring)),
            policy,
            link: None,
            store: Some(DeliveryStore { dir: dir.to_owned(), kek: kek.clone(), delivery_key }),
        })
    }

    /// Takes the provider's deliveries: each opened with the delivery key;
    /// a version not held is written sealed under the KEK (once) and held
    /// from now on; a version held must be the very key. Answers the
    /// versions new to this bank.
    pub fn receive<R: kessai_core::random::Random + ?Sized>(
        &self,
        sent: &kessai_api::provider::KeyDeliveries,
        rng: &mut R,
    ) -> Result<Vec<u8>, TokenError> {
        let store = self.store.as_ref().ok_or_else(|| TokenError::Key("this bank receives no deliveries".into()))?;
        if sent.provider_id != self.policy.provider_id {
            return Err(TokenError::Key(format!(
                "the deliveries are from {}, not the provider configured ({})",
                sent.provider_id, self.policy.provider_id
            )));
        }
        let mut ring = self.keyring.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = TokenKeyring::new();
        for k in ring.keys() {
            next.add(TokenKey::from_json(&k.to_json()?)?)?;
        }
        let (mut new, mut refused) = (Vec::new(), Vec::new());
        for d in &sent.deliveries {
            match self.take(store, &next, d, rng) {
                Ok(Some(key)) => {
                    new.push(key.version);
                    next.add(key)?;
                }
                Ok(None) => {}
                Err(e) => refused.push(format!("version {}: {e}", d.version)),
            }
        }
        // The versions taken are held even if another was refused.
        *ring = Arc::new(next);
        if !refused.is_empty() {
            return Err(TokenError::Key(format!(
                "refused (held keys kept; taken now: {new:?}): {}",
                refused.join("; ")
            )));
        }
        Ok(new)
    }

    /// One delivery: `None` for a version held (it must be the very key),
    /// else the key, written sealed under the KEK (once: a file another
    /// fetch wrote must hold the very key).
    fn take<R: kessai_core::random::Random + ?Sized>(
        &self,
        store: &DeliveryStore,
        held: &TokenKeyring,
        d: &kessai_api::provider::KeyDelivery,
        rng: &mut R,
    ) -> Result<Option<TokenKey>, TokenError> {
        let key = TokenKey::open_delivery(&d.jwe, &store.delivery_key)?;
        if key.version != d.version {
            return Err(TokenError::Key(format!("the delivery holds version {}", key.version)));
        }
        let changed =
            || TokenError::Key(format!("another key under version {}: refused, the held one kept", key.version));
        if let Some(k) = held.keys().find(|k| k.version == key.version) {
            return if k.same_as(&key) { Ok(None) } else { Err(changed()) };
        }
        let path = store.dir.join(format!("v{}.sealed", key.version));
        let at = |e: &dyn std::fmt::Display| TokenError::Key(format!("{}: {e}", path.display()));
        match kessai_tls::write_new_file(&path, &key.seal_at_rest(store.kek.bytes(), rng)?, true) {
            Ok(()) => {}
            Err(kessai_tls::TlsError::Exists(_)) => {
                let bytes = kessai_tls::read_secret_file(&path).map_err(|e| at(&e))?;
                if !TokenKey::open_at_rest(&bytes, store.kek.bytes())?.same_as(&key) {
                    return Err(changed());
                }
            }
            Err(e) => return Err(at(&e)),
        }
        Ok(Some(key))
    }
}

/// The credit service provider's side of redeeming: its own service
/// (`kessai csp`), called over mutual TLS with the center's client
/// certificate. It honours a token once: its register holds each token for
/// its redemption by one REDEEM transaction or for its payback, and answers
/// the same call alike again; a refusal is its verdict, an unanswered call
/// changes nothing here.
#[derive(Debug)]
pub struct TokenProvider {
    url: String,
    client: kessai_http::HttpsClient,
}

/// The provider could not be asked, or answered out of its protocol:
/// nothing is decided, the caller asks again later. `.1`: it was not
/// reached at all, or answered that it cannot answer now (a transport
/// failure, 502, 503, 504), rather than refused this one call.
#[derive(Debug, thiserror::Error)]
#[error("the credit service provider: {0}")]
pub struct ProviderUnreachable(pub String, pub bool);

impl ProviderUnreachable {
    fn transport(e: impl std::fmt::Display) -> ProviderUnreachable {
        ProviderUnreachable(e.to_string(), true)
    }

    fn answered(status: axum::http::StatusCode, body: &[u8]) -> ProviderUnreachable {
        // Down for every call: a gateway's answer, or too many calls now.
        let down = matches!(status.as_u16(), 429 | 502..=504);
        ProviderUnreachable(format!("{status}: {}", String::from_utf8_lossy(body)), down)
    }

    fn out_of_protocol(why: impl Into<String>) -> ProviderUnreachable {
        ProviderUnreachable(why.into(), false)
    }

    /// Whether the provider is down for every call, not only this one.
    pub fn is_down(&self) -> bool {
        self.1
    }
}

/// How long the center waits for the provider's answer.
const PROVIDER_TIMEOUT_MS: u64 = 10_000;

impl TokenProvider {
    /// The provider at `url` (`https://…`), trusted and reached with `tls`.
    pub fn new(url: &str, tls: rustls::ClientConfig) -> TokenProvider {
        TokenProvider {
            url: url.trim_end_matches('/').to_owned(),
            client: kessai_http::HttpsClient::new(tls, PROVIDER_TIMEOUT_MS),
        }
    }

    /// Asks the provider to honour the token the card gave up by REDEEM
    /// `transaction` at `at`: `Ok(Err(why))` is its refusal.
    pub async fn redeem(
        &self,
        sealed: &[u8],
        transaction: &TransactionId,
        at: Timestamp,
    ) -> Result<Result<Honoured, String>, ProviderUnreachable> {
        let req = kessai_api::provider::RedemptionRequest {
            token: kessai_core::base64url::encode(sealed),
            transaction: hex::encode(transaction.as_bytes()),
            at: at.unix_s(),
        };
        let answer = self.post("/v1/redemptions", &req, sealed).await?;
        if let Ok(h) = &answer
            && (h.held_for != HeldFor::Redemption || h.transaction.as_deref() != Some(req.transaction.as_str()))
        {
            return Err(ProviderUnreachable::out_of_protocol("it answered for another use of the token"));
        }
        Ok(answer)
    }

    /// Asks the provider to honour the payback of expired token `sealed`.
    pub async fn pay_back(&self, sealed: &[u8]) -> Result<Result<Honoured, String>, ProviderUnreachable> {
        let req = kessai_api::provider::PaybackRequest { token: kessai_core::base64url::encode(sealed) };
        let answer = self.post("/v1/paybacks", &req, sealed).await?;
        if answer.as_ref().is_ok_and(|h| h.held_for != HeldFor::Payback) {
            return Err(ProviderUnreachable::out_of_protocol("it answered for another use of the token"));
        }
        Ok(answer)
    }

    /// What the provider's register holds for `token` that this center
    /// entered: the verdict of a call whose answer was lost.
    pub async fn held(&self, token: &TokenId) -> Result<Option<Honoured>, ProviderUnreachable> {
        let url = format!("{}/v1/tokens/{token}", self.url);
        let (status, body) = self.client.get(&url).await.map_err(ProviderUnreachable::transport)?;
        if status == axum::http::StatusCode::NOT_FOUND
            && serde_json::from_slice::<kessai_api::ErrorBody>(&body)
                .is_ok_and(|e| e.error.code() == Some(kessai_api::ErrorCode::TokenNotHeld))
        {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(ProviderUnreachable::answered(status, &body));
        }
        let h: Honoured = serde_json::from_slice(&body)
            .map_err(|e| ProviderUnreachable::out_of_protocol(format!("its answer: {e}")))?;
        if h.token_id != token.to_string() {
            return Err(ProviderUnreachable::out_of_protocol("it answered for another token"));
        }
        Ok(Some(h))
    }

    /// The redemption the provider's register holds for `token` by its
    /// REDEEM `transaction` (entered by this center), if it holds that.
    pub async fn held_redemption(
        &self,
        token: &TokenId,
        transaction: &TransactionId,
    ) -> Result<Option<Honoured>, ProviderUnreachable> {
        let tx = hex::encode(transaction.as_bytes());
        let held = self.held(token).await?;
        Ok(held.filter(|h| h.held_for == HeldFor::Redemption && h.transaction.as_deref() == Some(tx.as_str())))
    }

    /// The key versions the provider delivers to this bank.
    pub async fn key_deliveries(&self) -> Result<kessai_api::provider::KeyDeliveries, ProviderUnreachable> {
        let url = format!("{}/v1/token-keys", self.url);
        let (status, body) = self.client.get(&url).await.map_err(ProviderUnreachable::transport)?;
        if !status.is_success() {
            return Err(ProviderUnreachable::answered(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| ProviderUnreachable::out_of_protocol(format!("its deliveries: {e}")))
    }

    /// POSTs `req`: the token honoured (the one sent: its id and amount), a
    /// refusal (`409 token_refused`: its verdict), or nothing decided.
    async fn post<T: serde::Serialize>(
        &self,
        path: &str,
        req: &T,
        sealed: &[u8],
    ) -> Result<Result<Honoured, String>, ProviderUnreachable> {
        let url = format!("{}{path}", self.url);
        let (status, body) = self.client.post_json(&url, req, &[]).await.map_err(ProviderUnreachable::transport)?;
        if status == axum::http::StatusCode::CONFLICT
            && let Ok(e) = serde_json::from_slice::<kessai_api::ErrorBody>(&body)
            && e.error.code() == Some(kessai_api::ErrorCode::TokenRefused)
        {
            return Ok(Err(e.error.message));
        }
        if !status.is_success() {
            return Err(ProviderUnreachable::answered(status, &body));
        }
        let h: Honoured = serde_json::from_slice(&body)
            .map_err(|e| ProviderUnreachable::out_of_protocol(format!("its answer: {e}")))?;
        let header = kessai_core::token::TokenHeader::read(sealed)
            .map_err(|e| ProviderUnreachable::out_of_protocol(e.to_string()))?;
        if h.token_id != header.token_id.to_string() || h.amount != header.amount || h.key_version != header.key_version
        {
            return Err(ProviderUnreachable::out_of_protocol("it answered for another token"));
        }
        Ok(Ok(h))
    }
}

/// Both parties of a center that issues deposit tokens: the bank's side
/// (in this process until it runs as its own service) and the credit
/// service provider (its own service).
#[derive(Debug)]
pub struct Tokens {
    pub bank: TokenBank,
    pub provider: TokenProvider,
}

/// The directory, under the data directory, of the bank's side: its
/// delivery key and the key versions delivered to it (`v<N>.sealed`), each
/// created once and never overwritten, sealed under the KEK.
pub const TOKEN_KEYS_DIR: &str = "token-keys";
/// The bank's X25519 delivery key, sealed under the KEK, in
/// [`TOKEN_KEYS_DIR`].
pub const DELIVERY_KEY_FILE: &str = "delivery.sealed";
const DELIVERY_KEY_MAGIC: &[u8; 4] = b"KTDK";
const DELIVERY_KEY_AAD: &[u8] = b"kessai-token-delivery-key";

/// The key versions kept in `dir` ([`TOKEN_KEYS_DIR`]) under the KEK.
pub fn held_versions(dir: &std::path::Path, kek: &crate::keystore::Kek) -> Result<TokenKeyring, TokenError> {
    let read = |e: std::io::Error| TokenError::Key(format!("{}: {e}", dir.display()));
    let mut files = match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.map(|e| e.path())).collect::<Result<Vec<_>, _>>().map_err(read)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(read(e)),
    };
    files.retain(|p| {
        p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('v') && n.ends_with(".sealed"))
    });
    files.sort();
    let mut ring = TokenKeyring::new();
    for path in &files {
        let bytes =
            kessai_tls::read_secret_file(path).map_err(|e| TokenError::Key(format!("{}: {e}", path.display())))?;
        ring.add(TokenKey::open_at_rest(&bytes, kek.bytes())?)?;
    }
    Ok(ring)
}

/// The bank's delivery key in `dir`, if it has one.
fn read_delivery_key(dir: &std::path::Path, kek: &crate::keystore::Kek) -> Result<Option<EncryptionKey>, TokenError> {
    let path = dir.join(DELIVERY_KEY_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let bytes = kessai_tls::read_secret_file(&path).map_err(|e| TokenError::Key(format!("{}: {e}", path.display())))?;
    let secret = crate::keystore::open_bytes(DELIVERY_KEY_MAGIC, DELIVERY_KEY_AAD, &bytes, kek)
        .map_err(|e| TokenError::Key(format!("{}: {e}", path.display())))?;
    let secret: &[u8; 32] =
        secret[..].try_into().map_err(|_| TokenError::Key(format!("{}: not a key", path.display())))?;
    Ok(Some(EncryptionKey::from_secret(secret)))
}

/// The bank's delivery key in `dir`, made (sealed under the KEK) if it has
/// none; its public half, as the provider's configuration names it.
pub fn delivery_key_once(
    dir: &std::path::Path,
    kek: &crate::keystore::Kek,
) -> Result<kessai_core::jwe::X25519Jwk, TokenError> {
    if let Some(key) = read_delivery_key(dir, kek)? {
        return Ok(key.public().to_jwk());
    }
    let io = |e: &dyn std::fmt::Display| TokenError::Key(format!("{}: {e}", dir.display()));
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(dir)
        .map_err(|e| io(&e))?;
    let key = EncryptionKey::generate(&mut kessai_core::random::OsRandom);
    let sealed = crate::keystore::seal_bytes(
        DELIVERY_KEY_MAGIC,
        DELIVERY_KEY_AAD,
        key.secret_bytes(),
        kek,
        &mut kessai_core::random::OsRandom,
    );
    kessai_tls::write_new_file(&dir.join(DELIVERY_KEY_FILE), &sealed, true).map_err(|e| io(&e))?;
    Ok(key.public().to_jwk())
}

fn refused(e: impl std::fmt::Display) -> PrepaidError {
    PrepaidError::Refused(e.to_string())
}

/// The member's name as a token carries it: at most the field's 40 bytes,
/// cut at a character.
/// The member's name as a token carries it (and a payback's account
/// holder): its registered name, or business name, at most a token field.
pub(crate) fn member_name(details: &str) -> String {
    let name = match serde_json::from_str::<MemberDetails>(details) {
        Ok(MemberDetails::General { name, .. }) => name.as_str().to_owned(),
        Ok(MemberDetails::Store { business_name, .. }) => business_name.as_str().to_owned(),
        Err(_) => String::new(),
    };
    let mut out = String::new();
    for c in name.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > kessai_core::token::MAX_FIELD_BYTES {
            break;
        }
        out.push(c);
    }
    if out.trim().is_empty() { "member".into() } else { out }
}

/// A token as its member sees it.
pub fn token_view(t: &TokenRow, pay_to: &str) -> TokenView {
    TokenView {
        token_id: t.id.to_string(),
        card_id: t.card_id.to_string(),
        request_id: t.request_id.clone(),
        amount: t.amount,
        status: t.status,
        reference: t.reference.clone(),
        pay_to: (t.status == TokenStatus::Awaiting).then(|| pay_to.to_owned()),
        awaiting_until: (t.status == TokenStatus::Awaiting).then_some(t.awaiting_until),
        deposited_on: t.deposited_on.clone(),
        expires_at: t.expires_at,
        key_version: t.key_version,
        created_at: t.created_at,
    }
}

impl Center {
    /// Fetches the key versions the credit service provider delivers to
    /// this bank and keeps those new to it (rotation): the versions new.
    pub async fn fetch_token_keys(&self) -> anyhow::Result<Vec<u8>> {
        let t = self.tokens.as_ref().ok_or_else(|| anyhow::anyhow!("this center issues no deposit tokens"))?;
        let sent = t.bank.fetch().await?;
        let mut rng = self.random.generator();
        Ok(t.bank.receive(&sent, rng.as_mut())?)
    }

    /// A member's `deposit_token` request (signed, checked by the caller):
    /// a token awaiting its deposit under a new reference. The card must be
    /// the member's, active, and of the amount's currency. The same request
    /// again is answered with the token as it stands.
    pub(crate) async fn deposit_token_request(&self, request: &PrepaidRequest) -> Result<PrepaidReply, PrepaidError> {
        let bank = &self.tokens.as_ref().ok_or_else(|| refused("this center issues no deposit tokens"))?.bank;
        let member = request.member().as_str();
        let (Some(amount), Some(card_id), Some(terms)) = (request.amount(), request.card_id(), request.token()) else {
            return Err(refused("a deposit token names its amount, IC card and terms"));
        };
        if let Some(found) = self.db.token_by_request(member, request.request_id().as_str()).await? {
            return self.same_token_request(found, request);
        }
        if amount.amount_minor() > self.max_amount_minor {
            let limit = Money::new(self.max_amount_minor, amount.currency()).map_err(refused)?;
            return Err(PrepaidError::OverLimit { amount, limit });
        }
        // A holder given must make an account a bank file carries, as its
        // payback will need.
        if let Some(holder) = &terms.refund_holder {
            let payee = crate::clearing::refund_payee(&terms.refund_account, holder)
                .map_err(|e| refused(format!("the refund account with its holder: {e}")))?;
            // As the bank file writes it (full-width digits become ASCII).
            if kessai_core::token::holds_a_card_number(payee.holder()) {
                return Err(refused("the refund account's holder reads as a card number"));
            }
        }
        if !matches!(self.db.card_member(&card_id).await?, Some((m, _)) if m == member) {
            return Err(PrepaidError::NotMembersCard(card_id));
        }
        if kessai_core::token::holds_a_card_number(member) {
            // Numbers issued since cannot; one issued before may.
            return Err(refused(
                "this member number reads as a card number, which no token may carry; ask the operator",
            ));
        }
        let card = self.db.card(&card_id).await?.ok_or(PrepaidError::NotMembersCard(card_id))?;
        if card.status != CardRegistryStatus::Active {
            return Err(refused(format!("card {card_id} is not active")));
        }
        if card.currency != amount.currency() {
            return Err(PrepaidError::Currency { card: card.currency, asked: amount.currency() });
        }
        let now = self.clock.now();
        let mut rng = self.random.generator();
        let (mut store_tx, mut redeem_tx) = ([0u8; 16], [0u8; 16]);
        rng.fill_bytes(&mut store_tx);
        rng.fill_bytes(&mut redeem_tx);
        let row = TokenRow {
            id: TokenId::generate(rng.as_mut()),
            member: member.to_owned(),
            request_id: request.request_id().as_str().to_owned(),
            card_id,
            amount,
            status: TokenStatus::Awaiting,
            reference: crate::prepaid::new_reference(rng.as_mut()),
            refund_account: terms.refund_account.clone(),
            refund_holder: terms.refund_holder.clone(),
            card_ref: terms.card_ref.clone(),
            awaiting_until: Timestamp::from_unix_s(now.unix_s().saturating_add(self.prepaid.awaiting_s)),
            store_tx: TransactionId::from_bytes(store_tx),
            redeem_tx: TransactionId::from_bytes(redeem_tx),
            redeemed_counter: None,
            redeem_sent_at: None,
            payback_account: None,
            chosen_by: None,
            entry_key: None,
            deposited_on: None,
            key_version: None,
            expires_at: None,
            sealed: None,
            stored_counter: None,
            created_at: now,
            updated_at: now,
        };
        if let Some(found) = self.db.insert_token(&row).await? {
            return self.same_token_request(found, request);
        }
        tracing::info!(token = %row.id, card = %card_id, amount = %amount, provider = %bank.policy.provider_id, "deposit token awaiting its deposit");
        Ok(PrepaidReply::Token(Box::new(token_view(&row, &self.prepaid.bank_pool))))
    }

    fn same_token_request(&self, found: TokenRow, request: &PrepaidRequest) -> Result<PrepaidReply, PrepaidError> {
        let same = Some(found.amount) == request.amount()
            && Some(found.card_id) == request.card_id()
            && request.token().is_some_and(|t| {
                t.refund_account == found.refund_account
                    && t.card_ref == found.card_ref
                    && t.refund_holder == found.refund_holder
            });
        if !same {
            return Err(PrepaidError::RequestIdReused(request.request_id().to_string()));
        }
        Ok(PrepaidReply::Token(Box::new(token_view(&found, &self.prepaid.bank_pool))))
    }

    /// A member's tokens, newest first.
    pub async fn tokens_of(&self, member: &str) -> Result<Vec<TokenView>, CenterError> {
        let rows = self.db.tokens_of_member(member).await?;
        Ok(rows.iter().map(|t| token_view(t, &self.prepaid.bank_pool)).collect())
    }

    /// Ends the token requests whose deposit did not arrive in time.
    pub async fn lapse_token_requests(&self) -> Result<u64, CenterError> {
        Ok(self.db.lapse_tokens(self.clock.now()).await?)
    }

    /// A pool account credit quoting token `t`'s reference: the token made
    /// and issued in the credit's transaction, or why not (the credit then
    /// goes to suspense). `Ok(None)`: the credit was imported before.
    pub(crate) async fn issue_token_for(
        &self,
        t: TokenRow,
        mut credit: BankCreditRow,
        booked_on: &str,
    ) -> Result<Result<Option<&'static str>, String>, PrepaidError> {
        let now = self.clock.now();
        let Some(bank) = self.tokens.as_ref().map(|t| &t.bank) else {
            return Ok(Err("this center issues no deposit tokens".into()));
        };
        let why_not = match &t {
            t if t.status != TokenStatus::Awaiting => Some(format!("the token request is {}", t.status.as_str())),
            t if t.awaiting_until < now => Some("the token request expired".to_owned()),
            t if t.amount != credit.amount => Some(format!("{} received for a token of {}", credit.amount, t.amount)),
            _ => None,
        };
        if let Some(why) = why_not {
            return Ok(Err(why));
        }
        let keyring = bank.keyring();
        let Some(key_until) = keyring.issuing_until(now) else {
            return Ok(Err(TokenError::NoIssuingKey.to_string()));
        };
        let lifetime_end = Timestamp::from_unix_s(now.unix_s().saturating_add(bank.policy.lifetime_s));
        let expires_at = lifetime_end.min(key_until);
        let user_name = match self.db.member(&t.member).await? {
            Some(m) => member_name(&m.details),
            None => return Ok(Err("the token's member is not registered".into())),
        };
        let token = DepositToken {
            token_id: t.id,
            user_name,
            user_id: t.member.clone(),
            amount: t.amount,
            deposited_at: now,
            expires_at,
            bank_id: bank.policy.bank_id.clone(),
            bank_account: t.refund_account.clone(),
            card_company_id: bank.policy.provider_id.clone(),
            card_ref: t.card_ref.clone(),
        };
        let mut rng = self.random.generator();
        let sealed = match keyring.seal(&token, now, rng.as_mut()) {
            Ok(sealed) => sealed,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let header = kessai_core::token::TokenHeader::read(&sealed).map_err(refused)?;
        credit.status = "matched".into();
        credit.funding_id = Some(t.id.to_string());
        let issued = TokenRow {
            status: TokenStatus::Issued,
            entry_key: Some(credit.entry_key.clone()),
            deposited_on: Some(booked_on.to_owned()),
            key_version: Some(header.key_version),
            expires_at: Some(expires_at),
            sealed: Some(sealed),
            updated_at: now,
            ..t
        };
        let entries = Entries::token_issued(&issued.id.to_string(), issued.amount)?;
        let taken = self.db.take_bank_credit(&credit, Some(CreditIssues::Token(&issued)), entries, now, None).await?;
        if taken == crate::db::CreditTaken::Recorded {
            tracing::info!(token = %issued.id, card = %issued.card_id, amount = %issued.amount, key_version = header.key_version, "deposit received; token issued");
        }
        Ok(Ok(taken.recorded("matched")))
    }
}
