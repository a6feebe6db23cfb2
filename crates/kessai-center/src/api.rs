//! The center's HTTP API (REST under `/v1`). Handlers parse, check the
//! Idempotency-Key, and call [`crate::service::Center`]; one function maps
//! every error to a status and a stable code.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kessai_api::request;
use kessai_api::views::{Receipt, SettlementView};
use kessai_core::digest::Sha256Digest;
use kessai_core::ids::{CardId, SettlementId};
use kessai_core::jws::JwsError;
use kessai_core::keys::Validity;
use kessai_http::{ApiError, ErrorCode};
use serde::Deserialize;

use crate::db::DbError;
use crate::purchase::CardClaim;
use crate::purchase::StepError;
use crate::security::SecurityError;
use crate::service::{Answer, Center, CenterError, CreateRequest, StepCall, parse_answers};
use crate::token_session::TokenPurpose;
use kessai_core::token::TokenId;

/// Longest Idempotency-Key accepted.
const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;

pub type Shared = Arc<Center>;

/// The wallet-facing routes and the public key set.
pub fn routes(center: Shared) -> Router {
    Router::new()
        .route("/v1/settlements", post(create))
        .route("/v1/settlements/{id}", get(show))
        .route("/v1/settlements/{id}/balance", post(balance))
        .route("/v1/settlements/{id}/complete", post(complete))
        .route("/v1/settlements/{id}/cancel", post(cancel))
        .route("/v1/settlements/{id}/token", post(pay_by_token))
        .route("/v1/settlements/{id}/recover", post(recover))
        .route("/v1/settlements/{id}/recover/authenticate", post(recover_authenticate))
        .route("/v1/settlements/{id}/recover/status", post(recover_status))
        .route("/v1/settlements/{id}/recover/balance", post(recover_balance))
        .route("/v1/settlements/{id}/receipt", get(receipt))
        .route("/v1/cards/{card_id}/statements", post(statement_create))
        .route("/v1/statements/{id}/authenticate", post(statement_authenticate))
        .route("/v1/statements/{id}/read", post(statement_read))
        .route("/v1/cards/{card_id}/token-sessions", post(token_session_create))
        .route("/v1/token-sessions/{id}/authenticate", post(token_session_authenticate))
        .route("/v1/token-sessions/{id}/finish", post(token_session_finish))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/v1/stores/{id}/jwks.json", get(store_jwks))
        .route("/v1/openapi.json", get(openapi))
        .with_state(center)
}

/// Maps every refusal to a status and a stable code, never leaking internals.
pub fn api_error(e: CenterError) -> ApiError {
    match e {
        CenterError::Bill(j) => ApiError::new(bill_code(&j), format!("bill refused: {j}")).with_param("bill"),
        CenterError::UnknownStore(s) => {
            ApiError::new(ErrorCode::BillUnknownStore, format!("store {s} is not registered")).with_param("bill")
        }
        CenterError::UnknownCard(c) => {
            ApiError::new(ErrorCode::UnknownCard, format!("card {c} is not registered")).with_param("card_id")
        }
        CenterError::UnknownSettlement(s) => ApiError::new(ErrorCode::UnknownSettlement, format!("no settlement {s}")),
        CenterError::UnknownStatement(s) => ApiError::new(ErrorCode::UnknownStatement, format!("no statement {s}")),
        CenterError::UnknownTokenSession(s) => {
            ApiError::new(ErrorCode::UnknownTokenSession, format!("no token session {s}"))
        }
        e @ CenterError::NotAMember { .. } => ApiError::new(ErrorCode::NotAMember, e.to_string()).with_param("bill"),
        CenterError::BillInUse(_) => {
            ApiError::new(ErrorCode::BillInUse, "this bill is being settled with another card")
        }
        CenterError::BadApdu(m) => {
            ApiError::new(ErrorCode::BadApdu, format!("card answer refused: {m}")).with_param("responses")
        }
        CenterError::Receipt(m) => ApiError::new(ErrorCode::ReceiptInvalid, m),
        CenterError::Registration { code, message } => ApiError::new(code, message),
        e @ CenterError::ProfileRefused { .. } => {
            ApiError::new(ErrorCode::ProfileRefused, e.to_string()).with_param("profile")
        }
        CenterError::Invalid(code, message) => ApiError::new(code, message),
        CenterError::Provider(e) => {
            tracing::warn!(error = %e, "the credit service provider did not answer");
            ApiError::new(ErrorCode::ProviderUnavailable, "the credit service provider cannot be reached; retry")
        }
        CenterError::Bank(e) => {
            tracing::warn!(error = %e, "the bank did not answer");
            ApiError::new(ErrorCode::BankUnavailable, "the bank cannot be reached; retry")
        }
        CenterError::Step(s) => step_error(s),
        CenterError::Books(b) => ApiError::new(ErrorCode::BooksRefused, format!("the books refused the transfer: {b}")),
        CenterError::Db(DbError::Conflict) => {
            ApiError::new(ErrorCode::ConcurrentUpdate, "the settlement changed meanwhile; retry")
        }
        CenterError::Db(DbError::BillPaid) => {
            ApiError::new(ErrorCode::BillPaid, "this bill was paid from a virtual prepaid card; nothing is held")
                .with_param("bill")
        }
        CenterError::Db(d) => ApiError::internal(d),
    }
}

fn bill_code(e: &JwsError) -> ErrorCode {
    match e {
        JwsError::Expired { .. } => ErrorCode::BillExpired,
        JwsError::NotYetValid { .. } => ErrorCode::BillNotYetValid,
        JwsError::UnknownKey(_) => ErrorCode::BillUnknownKey,
        JwsError::RevokedKey(_) => ErrorCode::BillRevokedKey,
        JwsError::BadSignature => ErrorCode::BillBadSignature,
        JwsError::WrongType { .. } => ErrorCode::BillWrongType,
        JwsError::WrongAudience { .. } | JwsError::MissingAudience => ErrorCode::BillWrongCenter,
        _ => ErrorCode::BillInvalid,
    }
}

fn step_error(e: StepError) -> ApiError {
    let code = match &e {
        StepError::OutOfOrder { .. } => ErrorCode::StepOutOfOrder,
        StepError::CardNotActive(_) => ErrorCode::CardNotActive,
        StepError::TokenRefused(_) => ErrorCode::TokenNotRedeemable,
        StepError::UnknownCard(_) => ErrorCode::UnknownCard,
        StepError::CurrencyMismatch { .. } => ErrorCode::CurrencyMismatch,
        StepError::AmountOverLimit { .. } => ErrorCode::AmountOverLimit,
        StepError::InsufficientBalance { .. } => ErrorCode::InsufficientBalance,
        StepError::CardRefused(_) => ErrorCode::CardRefused,
        StepError::BadCardAnswer(_) => ErrorCode::BadCardAnswer,
        StepError::WrongAnswerCount { .. } => ErrorCode::WrongAnswerCount,
        StepError::WrongTransaction => ErrorCode::WrongTransaction,
        StepError::Undecidable => ErrorCode::NeedsAudit,
        StepError::CardNotLost(_) => ErrorCode::CardNotLost,
        StepError::BeforeDeadline { .. } => ErrorCode::BeforeDeadline,
        StepError::Security(SecurityError::Unavailable(why))
        | StepError::Signing(kessai_core::jws::JwsError::Signer(why)) => {
            // What the token said stays in the log; the caller may retry.
            tracing::error!(%why, "the security server's token did not answer");
            return ApiError::new(
                ErrorCode::SecurityServerUnavailable,
                "the security server cannot answer now; nothing was done, try again",
            );
        }
        StepError::Security(_) => ErrorCode::SecureChannelFailed,
        StepError::ReplayedOpening { .. } => ErrorCode::CardRefused,
        StepError::InstructionRequired(_) => {
            return ApiError::new(ErrorCode::InstructionRequired, e.to_string()).with_param("instruction");
        }
        StepError::InstructionRefused(_) => {
            return ApiError::new(ErrorCode::InstructionRefused, e.to_string()).with_param("instruction");
        }
        StepError::Signing(_) => return ApiError::internal(e),
    };
    ApiError::new(code, e.to_string())
}

/// The card's answers a step relays.
fn answers(body: &Bytes) -> Result<Vec<kessai_scp03::ResponseApdu>, ApiError> {
    let b: request::Answers = json(body)?;
    parse_answers(&b.responses).map_err(api_error)
}

/// The Idempotency-Key fingerprint of a request carrying one signed token:
/// `kind`, then what the token's body (`payload[body_name]`) asks. A sender
/// signing the same request anew (a new `jti`) asks the same; a body that is
/// not such a request is taken as it is.
pub(crate) fn signed_fingerprint<B: for<'de> Deserialize<'de>>(
    kind: &str,
    body: &Bytes,
    token: fn(&B) -> &str,
    body_name: &str,
) -> String {
    let asked = serde_json::from_slice::<B>(body)
        .ok()
        .and_then(|b| kessai_core::jws::inspect_unverified(token(&b)).ok())
        .map(|(_, payload)| payload[body_name].to_string());
    format!("{kind}\n{}", asked.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned()))
}

pub(crate) fn json<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::new(ErrorCode::BadJson, format!("request body: {e}")))
}

/// A request's headers and who sent it: the name of its verified client
/// certificate, if it presented one (stores, admins), from the TLS layer,
/// never from a header.
pub(crate) struct Caller {
    headers: HeaderMap,
    principal: Option<String>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Caller, Self::Rejection> {
        // A store's certificate only: another party's, whatever its name,
        // is no principal here (L3).
        let principal = parts
            .extensions
            .get::<kessai_http::PeerIdentity>()
            .and_then(|p| p.acting_as(kessai_http::Party::Store))
            .map(str::to_owned);
        Ok(Caller { headers: parts.headers.clone(), principal })
    }
}

impl std::ops::Deref for Caller {
    type Target = HeaderMap;
    fn deref(&self) -> &HeaderMap {
        &self.headers
    }
}

impl Caller {
    /// Whether the caller presented `id`'s access token (M4).
    pub(crate) fn holds_access(&self, center: &Center, id: &str) -> bool {
        let presented = self.headers.get("authorization").and_then(|v| v.to_str().ok());
        presented.and_then(|v| v.strip_prefix("Bearer ")).is_some_and(|token| center.security.grants(id, token))
    }

    /// The name of the caller's verified client certificate, if any.
    pub(crate) fn principal(&self) -> Option<&str> {
        self.principal.as_deref()
    }

    /// Where the caller's Idempotency-Key `key` is stored: its own namespace
    /// (M10). Keys of callers without a certificate (wallets) are stored as
    /// they are; a certificate holder's as `mtls:{name} {key}`. A key is
    /// printable ASCII without spaces, so no plain key has that shape and
    /// the last space parts a name from its key: nobody can take or read
    /// another's key. (Not a NUL: PostgreSQL's text holds none.)
    fn scoped(&self, key: &str) -> String {
        match &self.principal {
            None => key.to_owned(),
            Some(name) => format!("mtls:{name} {key}"),
        }
    }
}

/// The Idempotency-Keys whose request this instance is working on (M10):
/// a key is claimed before its stored answer is looked up and any work is
/// done, so a second request under it meanwhile is answered
/// `409 request_in_progress` (not stored) instead of racing the first.
/// Across instances the step's compare-and-set decides: the loser changes
/// nothing and stores nothing.
#[derive(Debug, Default)]
pub struct InFlight(std::sync::Mutex<std::collections::HashSet<String>>);

impl InFlight {
    /// Claims `key`; `None` while another request holds it. The claim ends
    /// when the guard is dropped.
    pub fn claim(&self, key: &str) -> Option<InFlightClaim<'_>> {
        let mut keys = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.insert(key.to_owned()).then(|| InFlightClaim { set: self, key: key.to_owned() })
    }
}

/// A claim of [`InFlight::claim`], released when dropped.
#[derive(Debug)]
pub struct InFlightClaim<'a> {
    set: &'a InFlight,
    key: String,
}

impl Drop for InFlightClaim<'_> {
    fn drop(&mut self) {
        self.set.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.key);
    }
}

/// Runs `work` at most once per Idempotency-Key: a repeat with the same
/// request answers the stored response; a different request under the same
/// key is refused. Server errors and conflicts are not stored, so they can be
/// retried.
pub(crate) async fn idempotent<F, T>(center: &Center, headers: &Caller, route: &str, body: &Bytes, work: F) -> Response
where
    F: std::future::Future<Output = Result<T, ApiError>>,
    T: serde::Serialize,
{
    let fingerprint = [route.as_bytes(), b"\n", body].concat();
    idempotent_call(center, headers, &fingerprint, None, |_| work).await
}

/// As [`idempotent`], with the request identified by `fingerprint` (for
/// requests whose body holds secrets that must not be hashed and stored).
pub(crate) async fn idempotent_by<F, T>(center: &Center, headers: &Caller, fingerprint: &[u8], work: F) -> Response
where
    F: std::future::Future<Output = Result<T, ApiError>>,
    T: serde::Serialize,
{
    idempotent_call(center, headers, fingerprint, None, |_| work).await
}

/// The Idempotency-Key check, then `work` handed the request's [`Answer`]
/// (a step stores its reply under it in its own transaction) and, when
/// `settlement` names one, the settlement as read with the stored answer (one
/// statement for both). The reply is stored afterwards too, which a step's
/// own stored answer wins (the first answer stored for a key stays).
pub(crate) async fn idempotent_call<W, F, T>(
    center: &Center,
    headers: &Caller,
    fingerprint: &[u8],
    settlement: Option<&str>,
    work: W,
) -> Response
where
    W: FnOnce(StepCall) -> F,
    F: std::future::Future<Output = Result<T, ApiError>>,
    T: serde::Serialize,
{
    let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) else {
        return ApiError::new(ErrorCode::IdempotencyKeyRequired, "every POST needs an Idempotency-Key header")
            .with_param("Idempotency-Key")
            .into_response();
    };
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return ApiError::new(ErrorCode::BadIdempotencyKey, "Idempotency-Key must be 1 to 128 printable characters")
            .into_response();
    }
    let hash = Sha256Digest::of(fingerprint).to_string();
    let key = &headers.scoped(key);
    let Some(_claim) = center.in_flight.claim(key) else {
        return ApiError::new(
            ErrorCode::RequestInProgress,
            "a request under this Idempotency-Key is being worked on; retry shortly",
        )
        .into_response();
    };
    let settlement = settlement.and_then(|id| SettlementId::parse(id).ok());
    let (stored, read) = match &settlement {
        Some(id) => match center.db.idempotent_response_and_settlement(key, id).await {
            Ok((stored, settlement)) => (Ok(stored), settlement),
            Err(e) => (Err(e), None),
        },
        None => (center.db.idempotent_response(key).await, None),
    };
    match stored {
        Ok(Some((stored_hash, status, stored))) if stored_hash == hash => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            return (status, [("content-type", "application/json")], stored).into_response();
        }
        Ok(Some(_)) => {
            return ApiError::new(
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was used for a different request",
            )
            .into_response();
        }
        Ok(None) => {}
        Err(e) => return ApiError::internal(e).into_response(),
    }
    let stored = crate::db::Stored::default();
    let answer = Answer { key: key.to_owned(), hash: hash.clone(), stored: stored.clone() };
    let outcome = work(StepCall { answer: Some(answer), read, trail: None }).await;
    let (status, text) = match outcome {
        Ok(reply) => (StatusCode::OK, serde_json::to_string(&reply).unwrap_or_default()),
        Err(e) => (e.status(), e.to_json()),
    };
    // The step stored its answer with its own write, unless it failed (or
    // made none): then the answer is stored here, alone.
    if !stored.is_set() && !status.is_server_error() && status != StatusCode::CONFLICT {
        let now = center.clock.now();
        if let Err(e) = center.db.save_response(key, &hash, status.as_u16(), &text, now).await {
            return ApiError::internal(e).into_response();
        }
    }
    (status, [("content-type", "application/json")], text).into_response()
}

async fn create(State(c): State<Shared>, headers: Caller, body: Bytes) -> Response {
    let work = |call: StepCall| async {
        let b: request::CreateSettlement = json(&body)?;
        let card_id = CardId::parse(&b.card_id)
            .map_err(|e| ApiError::new(ErrorCode::BadCardId, e.to_string()).with_param("card_id"))?;
        let opening = parse_answers(std::slice::from_ref(&b.initialize_update))
            .map_err(|e| api_error(e).with_param("initialize_update"))?
            .remove(0);
        let claim = b.card_read.map(|r| CardClaim { balance_minor: r.balance_minor, counter: r.counter });
        let req = CreateRequest {
            bill: &b.bill,
            card_id,
            profile: b.profile,
            opening,
            claim,
            instruction: b.instruction.as_deref(),
        };
        c.create(req, call.answer).await.map_err(api_error)
    };
    idempotent_call(&c, &headers, &[b"create\n", &body[..]].concat(), None, work).await
}

/// A settlement's routes answer only the holder of its access token (M4),
/// and a missing or wrong token as an unknown id: nobody learns whether a
/// settlement exists.
fn unknown_settlement(id: &str) -> Response {
    api_error(CenterError::UnknownSettlement(id.chars().take(64).collect())).into_response()
}

/// As [`unknown_settlement`], for a statement.
fn unknown_statement(id: &str) -> Response {
    api_error(CenterError::UnknownStatement(id.chars().take(64).collect())).into_response()
}

/// As [`unknown_settlement`], for a token session.
fn unknown_token_session(id: &str) -> Response {
    api_error(CenterError::UnknownTokenSession(id.chars().take(64).collect())).into_response()
}

macro_rules! answers_step {
    ($name:ident, $method:ident, token_session) => {
        async fn $name(State(c): State<Shared>, Path(id): Path<String>, headers: Caller, body: Bytes) -> Response {
            if !headers.holds_access(&c, &id) {
                return unknown_token_session(&id);
            }
            let fingerprint = [format!("{}/{}\n", stringify!($name), id).as_bytes(), &body[..]].concat();
            let work = |call: StepCall| async { c.$method(&id, answers(&body)?, call.answer).await.map_err(api_error) };
            idempotent_call(&c, &headers, &fingerprint, None, work).await
        }
    };
    ($name:ident, $method:ident) => {
        async fn $name(State(c): State<Shared>, Path(id): Path<String>, headers: Caller, body: Bytes) -> Response {
            if !headers.holds_access(&c, &id) {
                return unknown_statement(&id);
            }
            let fingerprint = [format!("{}/{}\n", stringify!($name), id).as_bytes(), &body[..]].concat();
            let work = |call: StepCall| async { c.$method(&id, answers(&body)?, call.answer).await.map_err(api_error) };
            idempotent_call(&c, &headers, &fingerprint, None, work).await
        }
    };
    ($name:ident, $method:ident, settlement) => {
        async fn $name(State(c): State<Shared>, Path(id): Path<String>, headers: Caller, body: Bytes) -> Response {
            if !headers.holds_access(&c, &id) {
                return unknown_settlement(&id);
            }
            let fingerprint = [format!("{}/{}\n", stringify!($name), id).as_bytes(), &body[..]].concat();
            let work = |call| async { c.$method(&id, answers(&body)?, call).await.map_err(api_error) };
            idempotent_call(&c, &headers, &fingerprint, Some(&id), work).await
        }
    };
}

async fn balance(State(c): State<Shared>, Path(id): Path<String>, headers: Caller, body: Bytes) -> Response {
    if !headers.holds_access(&c, &id) {
        return unknown_settlement(&id);
    }
    let fingerprint = [format!("balance/{id}\n").as_bytes(), &body[..]].concat();
    let work = |call| async {
        let b: request::BalanceAnswers = json(&body)?;
        let answers = parse_answers(&b.responses).map_err(api_error)?;
        c.offer_instructed(&id, answers, b.instruction.as_deref(), call).await.map_err(api_error)
    };
    idempotent_call(&c, &headers, &fingerprint, Some(&id), work).await
}
answers_step!(complete, complete, settlement);
answers_step!(recover_authenticate, recover_authenticate, settlement);
answers_step!(recover_status, recover_status, settlement);
answers_step!(recover_balance, recover_balance, settlement);

async fn cancel(State(c): State<Shared>, Path(id): Path<String>, headers: Caller, body: Bytes) -> Response {
    if !headers.holds_access(&c, &id) {
        return unknown_settlement(&id);
    }
    let fingerprint = [format!("cancel/{id}\n").as_bytes(), &body[..]].concat();
    let work = |call| async { c.cancel(&id, call).await.map_err(api_error) };
    idempotent_call(&c, &headers, &fingerprint, Some(&id), work).await
}

async fn pay_by_token(State(c): State<Shared>, Path(id): Path<String>, headers: Caller, body: Bytes) -> Response {
    if !headers.holds_access(&c, &id) {
        return unknown_settlement(&id);
    }
    let fingerprint = [format!("token/{id}\n").as_bytes(), &body[..]].concat();
    let work = |call| async {
        let b: request::PayByToken = json(&body)?;
        let token = kessai_core::token::TokenId::parse(&b.token_id)
            .map_err(|e| ApiError::new(ErrorCode::BadTokenId, e.to_string()))?;
        c.pay_by_token(&id, token, b.instruction.as_deref(), call).await.map_err(api_error)
    };
    idempotent_call(&c, &headers, &fingerprint, Some(&id), work).await
}

async fn recover(State(c): State<Shared>, Path(id): Path<String>, headers: Caller, body: Bytes) -> Response {
    if !headers.holds_access(&c, &id) {
        return unknown_settlement(&id);
    }
    let fingerprint = [format!("recover/{id}\n").as_bytes(), &body[..]].concat();
    let work = |call| async { c.recover(&id, call).await.map_err(api_error) };
    idempotent_call(&c, &headers, &fingerprint, Some(&id), work).await
}

/// A settlement as its wallet (the access token) or its store (a client
/// certificate in the name of the bill's store or payee) may read it; to
/// anyone else, as an unknown one (M4).
async fn readable(c: &Center, caller: &Caller, id: &str) -> Result<crate::purchase::Settlement, ApiError> {
    let unknown = || api_error(CenterError::UnknownSettlement(id.chars().take(64).collect()));
    let by_wallet = caller.holds_access(c, id);
    if !by_wallet && caller.principal().is_none() {
        return Err(unknown());
    }
    let s = c.settlement(id).await.map_err(api_error)?;
    let by_store = caller.principal().is_some_and(|p| p == s.bill.store.as_str() || p == s.bill.payee().as_str());
    if by_wallet || by_store { Ok(s) } else { Err(unknown()) }
}

/// A payment from a virtual prepaid card (#18, a settlement id too) as its
/// member's wallet or its store may read it; to anyone else, unknown.
async fn readable_prepaid(c: &Center, caller: &Caller, id: &str) -> Result<crate::prepaid::PrepaidPayment, ApiError> {
    let unknown = || api_error(CenterError::UnknownSettlement(id.chars().take(64).collect()));
    let sid = SettlementId::parse(id).map_err(|_| unknown())?;
    let (p, _) = c.db.prepaid_payment(&sid).await.map_err(|e| api_error(CenterError::Db(e)))?.ok_or_else(unknown)?;
    let by_store = caller.principal().is_some_and(|n| n == p.bill.store.as_str() || n == p.bill.payee().as_str());
    if caller.holds_access(c, id) || by_store { Ok(p) } else { Err(unknown()) }
}

/// Whether an error is the unknown-settlement answer (then a prepaid
/// payment of that id is looked for).
fn is_unknown(e: &ApiError) -> bool {
    e.status() == StatusCode::NOT_FOUND
}

async fn show(
    State(c): State<Shared>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<SettlementView>, ApiError> {
    let by_wallet = caller.holds_access(&c, &id);
    let s = match readable(&c, &caller, &id).await {
        Err(e) if is_unknown(&e) => {
            let p = readable_prepaid(&c, &caller, &id).await?;
            return Ok(Json(SettlementView {
                settlement_id: p.id.to_string(),
                phase: kessai_api::Phase::Completed,
                amount: p.bill.amount,
                store: p.bill.store.to_string(),
                member: p.bill.member.map(|m| m.to_string()),
                order_id: p.bill.order_id.to_string(),
                card_id: None,
                prepaid_id: by_wallet.then(|| p.account.to_string()),
                card_ref: (!by_wallet).then(|| c.security.prepaid_ref(&p.bill.store, &p.account).to_string()),
                completion: Some(p.completion_token),
                receipt: p.receipt_token,
                reason: None,
            }));
        }
        found => found?,
    };
    // The wallet sees its card; a store, the card as it knows it (M4).
    let (card_id, card_ref) = match by_wallet {
        true => (Some(s.card_id), None),
        false => (None, Some(c.security.card_ref(&s.bill.store, &s.card_id))),
    };
    Ok(Json(SettlementView {
        settlement_id: s.id.to_string(),
        phase: s.phase(),
        amount: s.bill.amount,
        store: s.bill.store.to_string(),
        member: s.bill.member.as_ref().map(ToString::to_string),
        order_id: s.bill.order_id.to_string(),
        card_id: card_id.map(|c| c.to_string()),
        prepaid_id: None,
        card_ref: card_ref.map(|r| r.to_string()),
        completion: s.completion_token().map(str::to_owned),
        receipt: s.receipt_token().map(str::to_owned),
        reason: s.outcome().map(|(_, reason)| reason.to_owned()),
    }))
}

async fn receipt(State(c): State<Shared>, Path(id): Path<String>, caller: Caller) -> Result<Json<Receipt>, ApiError> {
    let receipt = match readable(&c, &caller, &id).await {
        Err(e) if is_unknown(&e) => readable_prepaid(&c, &caller, &id).await?.receipt_token,
        found => found?.receipt_token().map(str::to_owned),
    };
    match receipt {
        Some(receipt) => Ok(Json(Receipt { receipt })),
        None => Err(ApiError::new(ErrorCode::ReceiptNotYet, "the store has not sent its receipt yet")),
    }
}

/// The center's keys: the one it signs with, then those it publishes
/// beside it during a rotation (the next, the previous).
async fn jwks(State(c): State<Shared>) -> Json<kessai_core::jwk::Jwks> {
    let current = c.center_key.public().to_jwk(Validity::always());
    let mut keys: Vec<_> = c.published_keys.iter().filter(|k| k.kid != current.kid).cloned().collect();
    keys.insert(0, current);
    Json(kessai_core::jwk::Jwks { keys })
}

/// M3: the keys the center holds for store `id` (registered by the
/// operator, not revoked), with their validity windows: what a wallet
/// checks a store's receipt (SIG4) against, rather than whatever the
/// store's web host serves. An unknown store has none.
async fn store_jwks(State(c): State<Shared>, Path(id): Path<String>) -> Result<Json<kessai_core::jwk::Jwks>, ApiError> {
    let keys = c.db.store_keys().await.map_err(|e| api_error(CenterError::Db(e)))?;
    let owner =
        kessai_core::ids::PartyId::parse(&id).map_err(|e| ApiError::new(ErrorCode::BadStoreId, e.to_string()))?;
    Ok(Json(keys.jwks(Some(&owner))))
}

/// The OpenAPI 3.1 description of this API, kept beside the code.
async fn openapi() -> impl IntoResponse {
    ([("content-type", "application/json")], crate::openapi::document())
}

async fn statement_create(State(c): State<Shared>, Path(card): Path<String>, headers: Caller, body: Bytes) -> Response {
    let route = format!("statement/{card}");
    let work = async {
        let card = CardId::parse(&card)
            .map_err(|e| ApiError::new(ErrorCode::BadCardId, e.to_string()).with_param("card_id"))?;
        c.statement_create(card).await.map_err(api_error)
    };
    idempotent(&c, &headers, &route, &body, work).await
}

answers_step!(statement_authenticate, statement_authenticate);
answers_step!(statement_read, statement_read);

async fn token_session_create(
    State(c): State<Shared>,
    Path(card): Path<String>,
    headers: Caller,
    body: Bytes,
) -> Response {
    let route = format!("token-session/{card}");
    let work = async {
        let card = CardId::parse(&card)
            .map_err(|e| ApiError::new(ErrorCode::BadCardId, e.to_string()).with_param("card_id"))?;
        let asked: request::TokenSessionCreate = if body.is_empty() { Default::default() } else { json(&body)? };
        let purpose = match (asked.redeem, asked.list) {
            (None, false) => TokenPurpose::Deliver,
            (None, true) => TokenPurpose::List,
            (Some(id), false) => TokenPurpose::Redeem {
                token: TokenId::parse(&id)
                    .map_err(|e| ApiError::new(ErrorCode::BadTokenId, e.to_string()).with_param("redeem"))?,
            },
            (Some(_), true) => {
                return Err(
                    ApiError::new(ErrorCode::BadJson, "a session redeems or lists, not both").with_param("list")
                );
            }
        };
        c.token_session_create(card, purpose).await.map_err(api_error)
    };
    idempotent(&c, &headers, &route, &body, work).await
}

answers_step!(token_session_authenticate, token_session_authenticate, token_session);
answers_step!(token_session_finish, token_session_finish, token_session);
