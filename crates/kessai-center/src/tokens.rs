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
//!   reference, of that amount, booked in time, makes the token: the bank
//!   ([`BankLink`], its own service, which holds the key versions the
//!   provider delivered) makes it of that very deposit, under the version
//!   issuing then, every FIG. 12 field, its expiry no later than that
//!   version redeems; the provider checks it would honour it. In the
//!   transaction that takes the credit: the token row (`issued`, with its
//!   sealed bytes) and the books, bank pool → tokens outstanding. A credit
//!   refused (another amount, too late, the bank's or the provider's
//!   refusal) waits in suspense for an operator, as any credit that
//!   matches nothing; one neither could decide on now is deferred (nothing
//!   written) and imported again.
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

use kessai_api::bank::{SealRequest, Sealed};
use kessai_api::provider::{HeldFor, Honoured};
use kessai_core::token::{TokenError, TokenId};
use serde::Deserialize;

use crate::books::Entries;
use crate::db::{BankCreditRow, CreditIssues, TokenRow};
use crate::prepaid::{PrepaidError, PrepaidReply};
use crate::purchase::CardRegistryStatus;
use crate::service::{Center, CenterError};

pub use kessai_api::views::DepositToken as TokenView;

/// The parties a center issuing deposit tokens reaches (configuration
/// `[tokens]`): the bank holding the pool account, which makes the tokens,
/// and the credit service provider, which honours them. Both or neither.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenPolicy {
    /// The bank's service (`kessai bank serve`), `https://…`: the pool
    /// account's statements, and the tokens made of its deposits.
    pub bank_url: Option<String>,
    /// The CA the bank's certificate chains to; default the center's
    /// (`tls.ca_dir`'s `ca.crt`).
    pub bank_ca: Option<std::path::PathBuf>,
    /// The provider's service (`kessai csp`), `https://…`.
    pub provider_url: Option<String>,
    /// The CA the provider's certificate chains to; default the center's.
    pub provider_ca: Option<std::path::PathBuf>,
    /// How often each instance imports the pool account's statements of
    /// today and yesterday from the bank (seconds).
    pub statement_every_s: u64,
}

impl TokenPolicy {
    /// Refuses one party without the other, a URL not `https://`, a
    /// statement interval of none.
    pub fn check(&self) -> Result<(), TokenError> {
        for (name, url) in [("bank_url", &self.bank_url), ("provider_url", &self.provider_url)] {
            if url.as_deref().is_some_and(|u| !u.starts_with("https://") || u.len() > 2048) {
                return Err(TokenError::Key(format!("[tokens] {name}: an https:// URL")));
            }
        }
        if self.bank_url.is_some() != self.provider_url.is_some() {
            return Err(TokenError::Key(
                "[tokens] bank_url and provider_url: both (this center issues and redeems tokens) or neither".into(),
            ));
        }
        if self.statement_every_s == 0 {
            return Err(TokenError::Key("[tokens] statement_every_s: at least 1".into()));
        }
        Ok(())
    }
}

impl Default for TokenPolicy {
    fn default() -> TokenPolicy {
        TokenPolicy { bank_url: None, bank_ca: None, provider_url: None, provider_ca: None, statement_every_s: 60 }
    }
}

/// The bank holding the pool account (`kessai bank serve`), called over
/// mutual TLS with the center's client certificate: its statements, and
/// the tokens it makes of the deposits on them (each once: the same
/// request again answers the same token).
#[derive(Debug)]
pub struct BankLink {
    url: String,
    client: kessai_http::HttpsClient,
}

/// The bank could not be asked, or answered out of its protocol: nothing
/// is decided, the caller asks again later.
#[derive(Debug, thiserror::Error)]
#[error("the bank: {0}")]
pub struct BankUnreachable(pub String);

/// The most pages of one day's statement the center reads (200 deposits
/// each): a bank naming a next page for ever is out of its protocol.
const MAX_STATEMENT_PAGES: usize = 10_000;
/// How long the center waits for the bank's answer.
const BANK_TIMEOUT_MS: u64 = 10_000;

impl BankLink {
    /// The bank at `url` (`https://…`), trusted and reached with `tls`.
    pub fn new(url: &str, tls: rustls::ClientConfig) -> BankLink {
        BankLink {
            url: url.trim_end_matches('/').to_owned(),
            client: kessai_http::HttpsClient::new(tls, BANK_TIMEOUT_MS),
        }
    }

    /// A page of the pool account's statement of `day` (`YYYY-MM-DD`) so
    /// far: the deposits after entry `after`, and the entry the next page
    /// starts after, if there is one.
    pub async fn statement(&self, day: &str, after: u64) -> Result<(Vec<u8>, Option<u64>), BankUnreachable> {
        let url = format!("{}/v1/statements/{day}?after={after}", self.url);
        let (status, headers, body) =
            self.client.get_with(&url, &[]).await.map_err(|e| BankUnreachable(e.to_string()))?;
        if !status.is_success() {
            return Err(BankUnreachable(format!("{status}: {}", String::from_utf8_lossy(&body))));
        }
        let next = match headers.get("kessai-next-after") {
            None => None,
            Some(v) => match v.to_str().ok().and_then(|v| v.parse::<u64>().ok()) {
                Some(n) if n > after => Some(n),
                _ => return Err(BankUnreachable("its next page is not after this one".into())),
            },
        };
        Ok((body.to_vec(), next))
    }

    /// Asks the bank for the token a deposit pays for: the token (checked
    /// to be the one asked for), or `Ok(Err(why))`, its refusal.
    pub async fn seal(&self, req: &SealRequest) -> Result<Result<(Vec<u8>, Sealed), String>, BankUnreachable> {
        let url = format!("{}/v1/tokens", self.url);
        let (status, body) = self.client.post_json(&url, req, &[]).await.map_err(|e| BankUnreachable(e.to_string()))?;
        if status == axum::http::StatusCode::CONFLICT
            && let Ok(e) = serde_json::from_slice::<kessai_api::ErrorBody>(&body)
            && e.error.code() == Some(kessai_api::ErrorCode::DepositRefused)
        {
            return Ok(Err(format!("the bank: {}", e.error.message)));
        }
        if !status.is_success() {
            return Err(BankUnreachable(format!("{status}: {}", String::from_utf8_lossy(&body))));
        }
        let out = |why: &str| BankUnreachable(format!("it answered out of its protocol: {why}"));
        let sealed: Sealed = serde_json::from_slice(&body).map_err(|e| out(&e.to_string()))?;
        let bytes = kessai_core::base64url::decode(&sealed.token).map_err(|_| out("the token is not base64url"))?;
        let header = kessai_core::token::TokenHeader::read(&bytes).map_err(|e| out(&e.to_string()))?;
        if header.token_id.to_string() != req.token_id
            || sealed.token_id != req.token_id
            || header.amount != req.amount
            || header.key_version != sealed.key_version
            || header.expires_at.unix_s() != sealed.expires_at
        {
            return Err(out("the token is not the one asked for"));
        }
        Ok(Ok((bytes, sealed)))
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

    /// Whether the provider would honour `sealed` now (enters nothing):
    /// `Ok(Err(why))` is its refusal.
    pub async fn check(&self, sealed: &[u8]) -> Result<Result<(), String>, ProviderUnreachable> {
        let req = kessai_api::provider::CheckRequest { token: kessai_core::base64url::encode(sealed) };
        let c: kessai_api::provider::Checked = match self.call("/v1/checks", &req).await? {
            Ok(c) => c,
            Err(why) => return Ok(Err(why)),
        };
        let header = kessai_core::token::TokenHeader::read(sealed)
            .map_err(|e| ProviderUnreachable::out_of_protocol(e.to_string()))?;
        if c.token_id != header.token_id.to_string()
            || c.amount != header.amount
            || c.key_version != header.key_version
            || c.expires_at != header.expires_at.unix_s()
        {
            return Err(ProviderUnreachable::out_of_protocol("it answered for another token"));
        }
        Ok(Ok(()))
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

    /// POSTs `req` to `path`: the provider's answer, its refusal (`409
    /// token_refused`: its verdict), or nothing decided.
    async fn call<T: serde::Serialize, A: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        req: &T,
    ) -> Result<Result<A, String>, ProviderUnreachable> {
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
        serde_json::from_slice(&body)
            .map(Ok)
            .map_err(|e| ProviderUnreachable::out_of_protocol(format!("its answer: {e}")))
    }

    /// POSTs `req`: the token honoured (the one sent: its id and amount), a
    /// refusal (`409 token_refused`: its verdict), or nothing decided.
    async fn post<T: serde::Serialize>(
        &self,
        path: &str,
        req: &T,
        sealed: &[u8],
    ) -> Result<Result<Honoured, String>, ProviderUnreachable> {
        let h: Honoured = match self.call(path, req).await? {
            Ok(h) => h,
            Err(why) => return Ok(Err(why)),
        };
        let header = kessai_core::token::TokenHeader::read(sealed)
            .map_err(|e| ProviderUnreachable::out_of_protocol(e.to_string()))?;
        if h.token_id != header.token_id.to_string() || h.amount != header.amount || h.key_version != header.key_version
        {
            return Err(ProviderUnreachable::out_of_protocol("it answered for another token"));
        }
        Ok(Ok(h))
    }
}

/// Both parties of a center that issues deposit tokens, each its own
/// service: the bank, which makes them of deposits on its pool account,
/// and the credit service provider, which honours them.
#[derive(Debug)]
pub struct Tokens {
    pub bank: BankLink,
    pub provider: TokenProvider,
}

/// How long after a token request's `awaiting_until` a deposit booked by
/// then may still be imported (its statement comes after the day; the
/// bank or the provider may be out of reach for a while): two days.
pub const STATEMENT_GRACE_S: u64 = 2 * 86_400;

/// Whether a credit booked on `booked_on` (`YYYY-MM-DD`, the bank's day)
/// came after the day `awaiting_until` falls on. A day not of that form
/// is taken as too late.
fn booked_too_late(booked_on: &str, awaiting_until: Timestamp) -> bool {
    match kessai_bank::Date::parse(booked_on) {
        Some(day) => day > kessai_bank::Date::of(awaiting_until),
        None => true,
    }
}

/// The days (`YYYY-MM-DD`, UTC, oldest first, each once) whose statements
/// cover the `back_s` seconds before `now` and `now` itself: today always,
/// and every day a moment of that span falls on.
pub fn statement_days(now: Timestamp, back_s: u64) -> Vec<String> {
    let now = now.unix_s();
    let mut days: Vec<String> = Vec::new();
    let mut at = now.saturating_sub(back_s);
    loop {
        let day = kessai_bank::Date::of(Timestamp::from_unix_s(at.min(now))).to_string();
        if days.last() != Some(&day) {
            days.push(day);
        }
        if at >= now {
            return days;
        }
        at = at.saturating_add(86_400);
    }
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
pub fn token_view(t: &TokenRow, pay_to: &str, now: Timestamp) -> TokenView {
    // Where to pay only until the request's last day (UTC): a deposit
    // booked later makes no token.
    let payable = t.status == TokenStatus::Awaiting
        && !booked_too_late(&kessai_bank::Date::of(now).to_string(), t.awaiting_until);
    TokenView {
        token_id: t.id.to_string(),
        card_id: t.card_id.to_string(),
        request_id: t.request_id.clone(),
        amount: t.amount,
        status: t.status,
        reference: t.reference.clone(),
        pay_to: payable.then(|| pay_to.to_owned()),
        awaiting_until: (t.status == TokenStatus::Awaiting).then_some(t.awaiting_until),
        deposited_on: t.deposited_on.clone(),
        expires_at: t.expires_at,
        key_version: t.key_version,
        created_at: t.created_at,
    }
}

impl Center {
    /// Imports the pool account's statement of `day` (`YYYY-MM-DD`) from
    /// the bank, page by page: as [`Center::import_statement`] (again
    /// changes nothing); the report of every page together.
    pub async fn fetch_statement(&self, day: &str) -> Result<crate::prepaid::ImportReport, PrepaidError> {
        let t = self.tokens.as_ref().ok_or_else(|| refused("this center reaches no bank ([tokens] bank_url)"))?;
        if kessai_bank::Date::parse(day).is_none() {
            return Err(refused(format!("{day:?}: a day is YYYY-MM-DD")));
        }
        let mut total = crate::prepaid::ImportReport::default();
        let mut after = 0;
        for _ in 0..MAX_STATEMENT_PAGES {
            let (bytes, next) = t.bank.statement(day, after).await.map_err(CenterError::from)?;
            let page = self.import_statement(&bytes, crate::prepaid::StatementSource::Bank).await?;
            total.add(page);
            match next {
                Some(n) => after = n,
                None => return Ok(total),
            }
        }
        Err(CenterError::from(BankUnreachable(format!("its statement of {day} does not end"))).into())
    }

    /// A member's `deposit_token` request (signed, checked by the caller):
    /// a token awaiting its deposit under a new reference. The card must be
    /// the member's, active, and of the amount's currency. The same request
    /// again is answered with the token as it stands.
    pub(crate) async fn deposit_token_request(&self, request: &PrepaidRequest) -> Result<PrepaidReply, PrepaidError> {
        if self.tokens.is_none() {
            return Err(refused("this center issues no deposit tokens"));
        }
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
        tracing::info!(token = %row.id, card = %card_id, amount = %amount, "deposit token awaiting its deposit");
        Ok(PrepaidReply::Token(Box::new(token_view(&row, &self.prepaid.bank_pool, now))))
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
        Ok(PrepaidReply::Token(Box::new(token_view(&found, &self.prepaid.bank_pool, self.clock.now()))))
    }

    /// A member's tokens, newest first.
    pub async fn tokens_of(&self, member: &str) -> Result<Vec<TokenView>, CenterError> {
        let rows = self.db.tokens_of_member(member).await?;
        let now = self.clock.now();
        Ok(rows.iter().map(|t| token_view(t, &self.prepaid.bank_pool, now)).collect())
    }

    /// Ends the token requests whose deposit did not arrive in time: past
    /// `awaiting_until` by [`STATEMENT_GRACE_S`], the time the statement
    /// of a deposit booked on the last day may take to be imported.
    pub async fn lapse_token_requests(&self) -> Result<u64, CenterError> {
        let now = self.clock.now();
        Ok(self.db.lapse_tokens(now.saturating_sub_s(STATEMENT_GRACE_S), now).await?)
    }

    /// A pool account credit quoting token `t`'s reference: the token the
    /// bank makes of the deposit, issued in the credit's transaction, or why
    /// not (the credit then goes to suspense). `Ok(None)`: the credit was
    /// imported before. The bank unreachable: an error, nothing written.
    pub(crate) async fn issue_token_for(
        &self,
        t: TokenRow,
        mut credit: BankCreditRow,
        booked_on: &str,
    ) -> Result<Result<Option<&'static str>, String>, PrepaidError> {
        let now = self.clock.now();
        let Some(parties) = self.tokens.as_ref() else {
            return Ok(Err("this center issues no deposit tokens".into()));
        };
        let why_not = match &t {
            t if t.status != TokenStatus::Awaiting => Some(format!("the token request is {}", t.status.as_str())),
            // Booked by the request's last day (a statement comes after
            // the day it covers): the request lapses only after a grace.
            t if booked_too_late(booked_on, t.awaiting_until) => {
                Some("the deposit was booked after the token request expired".to_owned())
            }
            t if t.amount != credit.amount => Some(format!("{} received for a token of {}", credit.amount, t.amount)),
            _ => None,
        };
        if let Some(why) = why_not {
            return Ok(Err(why));
        }
        let user_name = match self.db.member(&t.member).await? {
            Some(m) => member_name(&m.details),
            None => return Ok(Err("the token's member is not registered".into())),
        };
        // The bank's name for the deposit: the entry key without the
        // center's source prefix.
        let deposit = credit.entry_key.strip_prefix("bank:").unwrap_or(&credit.entry_key).to_owned();
        let req = SealRequest {
            deposit,
            reference: t.reference.clone(),
            token_id: t.id.to_string(),
            amount: t.amount,
            user_name,
            user_id: t.member.clone(),
            bank_account: t.refund_account.clone(),
            card_ref: t.card_ref.clone(),
        };
        let (sealed, made) = match parties.bank.seal(&req).await.map_err(CenterError::from)? {
            Ok(made) => made,
            Err(why) => return Ok(Err(why)),
        };
        if made.expires_at <= now.unix_s() {
            return Ok(Err("the token the bank made has expired".into()));
        }
        // The provider must honour what the bank made: a token sealed under
        // a key it does not hold would be refused at its redemption and at
        // its payback alike, its value frozen.
        if let Err(why) = parties.provider.check(&sealed).await.map_err(CenterError::from)? {
            return Ok(Err(format!("the credit service provider refuses the token the bank made: {why}")));
        }
        credit.status = "matched".into();
        credit.funding_id = Some(t.id.to_string());
        let issued = TokenRow {
            status: TokenStatus::Issued,
            entry_key: Some(credit.entry_key.clone()),
            deposited_on: Some(booked_on.to_owned()),
            key_version: Some(made.key_version),
            expires_at: Some(Timestamp::from_unix_s(made.expires_at)),
            sealed: Some(sealed),
            updated_at: now,
            ..t
        };
        let entries = Entries::token_issued(&issued.id.to_string(), issued.amount)?;
        let taken = self.db.take_bank_credit(&credit, Some(CreditIssues::Token(&issued)), entries, now, None).await?;
        if taken == crate::db::CreditTaken::Recorded {
            tracing::info!(token = %issued.id, card = %issued.card_id, amount = %issued.amount, key_version = made.key_version, "deposit received; the bank made its token");
        }
        Ok(Ok(taken.recorded("matched")))
    }
}
