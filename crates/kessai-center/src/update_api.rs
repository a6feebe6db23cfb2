//! The value update routes, beside the settlement routes of [`crate::api`]:
//! the same error shape and the same Idempotency-Key rules.
//!
//! - `/v1/charges`: a charge paid by credit card;
//! - `/v1/decreases`: card value back to the credit card of a charge;
//! - `/v1/refunds`: a store's signed refund of a purchase;
//! - `/v1/cards/{id}/owed/apply`: the card is presented; apply what is owed.
//!
//! Every value update (`vup_…`) then runs through the same step routes
//! under `/v1/charges/{id}/…`, whatever it is for.
//!
//! A charge's authenticate step carries the payment card data, the only
//! request that does: the authorizer is asked only once the card's
//! cryptogram in the same request verified (M5). The data is read into
//! zeroizing buffers and handed to the authorizer only; the idempotency
//! record's request hash covers the card's answers but not the card data,
//! and no error message ever echoes the request body.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kessai_api::request;
use kessai_api::views::{NothingOwed, OwedApplied};
use kessai_core::digest::Sha256Digest;
use kessai_core::ids::{CardId, UpdateId};
use kessai_http::{ApiError, ErrorCode};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::authorizer::{Authorizer, AuthorizerError, PaymentCard};
use crate::db::DbError;
use crate::owed::{Applying, Owing, apply_update_id};
use crate::service::{Center, CenterError, StepCall, parse_answers};
use crate::update::{ChargeRequest, DecreaseRequest, UpdateError, UpdateReply, update_reply};
use crate::value::UpdateStepError;

/// The center and the credit authorizer it charges through.
#[derive(Debug, Clone)]
pub struct UpdateState {
    pub center: Arc<Center>,
    pub authorizer: Arc<dyn Authorizer>,
}

/// The charge routes.
pub fn routes(center: Arc<Center>, authorizer: Arc<dyn Authorizer>) -> Router {
    Router::new()
        .route("/v1/charges", post(create))
        .route("/v1/value-updates/{id}", get(show))
        .route("/v1/value-updates/{id}/authenticate", post(authenticate))
        .route("/v1/value-updates/{id}/balance", post(balance))
        .route("/v1/value-updates/{id}/complete", post(complete))
        .route("/v1/value-updates/{id}/cancel", post(cancel))
        .route("/v1/value-updates/{id}/recover", post(recover))
        .route("/v1/value-updates/{id}/recover/authenticate", post(recover_authenticate))
        .route("/v1/value-updates/{id}/recover/status", post(recover_status))
        .route("/v1/value-updates/{id}/recover/balance", post(recover_balance))
        // The same steps under their name of the last release, which called
        // every value update a charge; answered for one more release.
        .route("/v1/charges/{id}", get(show))
        .route("/v1/charges/{id}/authenticate", post(authenticate))
        .route("/v1/charges/{id}/balance", post(balance))
        .route("/v1/charges/{id}/complete", post(complete))
        .route("/v1/charges/{id}/cancel", post(cancel))
        .route("/v1/charges/{id}/recover", post(recover))
        .route("/v1/charges/{id}/recover/authenticate", post(recover_authenticate))
        .route("/v1/charges/{id}/recover/status", post(recover_status))
        .route("/v1/charges/{id}/recover/balance", post(recover_balance))
        .route("/v1/decreases", post(create_decrease))
        .route("/v1/refunds", post(request_refund))
        .route("/v1/cards/{id}/owed/apply", post(apply_owed))
        .with_state(UpdateState { center, authorizer })
}

pub(crate) fn authorizer_error(e: AuthorizerError) -> ApiError {
    let code = e.code();
    let param = match e {
        AuthorizerError::InvalidCardNumber => Some("card_number"),
        AuthorizerError::BadExpiry => Some("expiry"),
        AuthorizerError::BadCvc => Some("cvc"),
        _ => None,
    };
    let err = ApiError::new(code, e.to_string());
    match param {
        Some(p) => err.with_param(p),
        None => err,
    }
}

/// Maps every refusal to a status and a stable code, never leaking internals.
pub fn update_api_error(e: UpdateError) -> ApiError {
    match e {
        UpdateError::Authorizer(a) => authorizer_error(a),
        UpdateError::UnknownCard(c) => crate::api::api_error(CenterError::UnknownCard(c)),
        UpdateError::UnknownUpdate(c) => ApiError::new(ErrorCode::UnknownValueUpdate, format!("no value update {c}")),
        e @ UpdateError::ChargeIdInUse(_) => ApiError::new(ErrorCode::ChargeInUse, e.to_string()),
        e @ UpdateError::PaymentCardRequired(_) => {
            ApiError::new(ErrorCode::PaymentCardRequired, e.to_string()).with_param("card_number")
        }
        e @ UpdateError::AmountOutOfRange { .. } => {
            ApiError::new(ErrorCode::AmountOutOfRange, e.to_string()).with_param("amount")
        }
        e @ UpdateError::OverMaxBalance { .. } => {
            ApiError::new(ErrorCode::OverMaxBalance, e.to_string()).with_param("amount")
        }
        e @ UpdateError::OverDailyLimit { .. } => {
            ApiError::new(ErrorCode::OverDailyLimit, e.to_string()).with_param("amount")
        }
        e @ UpdateError::TooManyAttempts => ApiError::new(ErrorCode::TooManyAttempts, e.to_string()),
        UpdateError::BadApdu(m) => {
            ApiError::new(ErrorCode::BadApdu, format!("card answer refused: {m}")).with_param("responses")
        }
        e @ UpdateError::Step(UpdateStepError::OutOfOrder { .. }) => {
            ApiError::new(ErrorCode::StepOutOfOrder, e.to_string())
        }
        UpdateError::Step(UpdateStepError::Card(s)) => crate::api::api_error(CenterError::Step(s)),
        e @ UpdateError::Step(UpdateStepError::NotAuthorized) => {
            ApiError::new(ErrorCode::StepOutOfOrder, e.to_string())
        }
        UpdateError::Books(b) => crate::api::api_error(CenterError::Books(b)),
        UpdateError::Db(DbError::Conflict) => crate::api::api_error(CenterError::Db(DbError::Conflict)),
        UpdateError::Db(d) => ApiError::internal(d),
        UpdateError::Refund(j) => {
            let code = match j {
                kessai_core::jws::JwsError::Expired { .. } => ErrorCode::RefundExpired,
                kessai_core::jws::JwsError::UnknownKey(_) => ErrorCode::RefundUnknownKey,
                kessai_core::jws::JwsError::RevokedKey(_) => ErrorCode::RefundRevokedKey,
                kessai_core::jws::JwsError::BadSignature => ErrorCode::RefundBadSignature,
                _ => ErrorCode::RefundInvalid,
            };
            ApiError::new(code, format!("refund request refused: {j}")).with_param("refund")
        }
        UpdateError::UnknownSettlement(id) => {
            ApiError::new(ErrorCode::UnknownSettlement, format!("no settlement {id} of this store"))
        }
        e @ UpdateError::NotAMember { .. } => ApiError::new(ErrorCode::NotAMember, e.to_string()),
        e @ UpdateError::NotRefundable(_) => ApiError::new(ErrorCode::NotRefundable, e.to_string()),
        e @ UpdateError::RefundIdInUse(_) => ApiError::new(ErrorCode::RefundIdInUse, e.to_string()),
        e @ UpdateError::OverRefund { .. } => ApiError::new(ErrorCode::OverRefund, e.to_string()).with_param("amount"),
        e @ UpdateError::BadReason(_) => ApiError::new(ErrorCode::BadReason, e.to_string()).with_param("reason"),
        e @ UpdateError::BadReference(_) => {
            ApiError::new(ErrorCode::BadReference, e.to_string()).with_param("reference")
        }
        UpdateError::UnknownOwed(id) => ApiError::new(ErrorCode::UnknownOwed, format!("nothing owed {id}")),
        e @ UpdateError::NotCancellable(_) => ApiError::new(ErrorCode::NotCancellable, e.to_string()),
        e @ UpdateError::NotReplaceable(_) => ApiError::new(ErrorCode::NotReplaceable, e.to_string()),
        e @ UpdateError::CorrectionOverFloat(_) => {
            ApiError::new(ErrorCode::OverFloat, e.to_string()).with_param("amount")
        }
        e @ UpdateError::NotDecreasable(_) => {
            ApiError::new(ErrorCode::NotDecreasable, e.to_string()).with_param("charge_id")
        }
        e @ UpdateError::DecreaseOverCharge { .. } => {
            ApiError::new(ErrorCode::OverCharge, e.to_string()).with_param("amount")
        }
    }
}

/// A payment card from a request's fields, all three or none.
pub(crate) fn payment_card(
    number: &Option<Zeroizing<String>>,
    expiry: &Option<Zeroizing<String>>,
    cvc: &Option<Zeroizing<String>>,
) -> Result<Option<PaymentCard>, ApiError> {
    match (number, expiry, cvc) {
        (None, None, None) => Ok(None),
        (Some(number), Some(expiry), Some(cvc)) => {
            Ok(Some(PaymentCard::parse(number, expiry, cvc).map_err(authorizer_error)?))
        }
        _ => Err(ApiError::new(
            ErrorCode::PaymentCardIncomplete,
            "card_number, expiry and cvc come together or not at all",
        )
        .with_param("card_number")),
    }
}

/// Overwrites a request body that held payment card data, once parsed
/// into zeroizing fields, if no other handle to the buffer is left.
pub(crate) fn wipe(body: Bytes) {
    if let Ok(mut bytes) = body.try_into_mut() {
        zeroize::Zeroize::zeroize(&mut bytes[..]);
    }
}

/// Parses a body without echoing any of it: a serde message can quote
/// the value it failed on, and this body may hold a card number.
pub(crate) fn json<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|_| ApiError::new(ErrorCode::BadJson, "the request body is not a valid request"))
}

async fn create(State(s): State<UpdateState>, headers: crate::api::Caller, body: Bytes) -> Response {
    let parsed: Result<request::CreateCharge, ApiError> = json(&body);
    // A client of the last release sent the card data here: wipe it.
    wipe(body);
    let b = match parsed {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let fingerprint = format!("charge-create\n{}\n{}\n{}", b.card_id, b.amount.amount_minor(), b.amount.currency());
    let id = charge_id(&headers, fingerprint.as_bytes());
    let work = async {
        let id = id.map_err(ApiError::internal)?;
        let card_id = CardId::parse(&b.card_id)
            .map_err(|e| ApiError::new(ErrorCode::BadCardId, e.to_string()).with_param("card_id"))?;
        let request = ChargeRequest { id, card_id, amount: b.amount };
        s.center.create_charge(request).await.map_err(update_api_error)
    };
    crate::api::idempotent_by(&s.center, &headers, fingerprint.as_bytes(), work).await
}

/// The authenticate step of any value update; a charge's carries the
/// payment card. The fingerprint is the card's answers, never the card data.
async fn authenticate(
    State(s): State<UpdateState>,
    Path(id): Path<String>,
    headers: crate::api::Caller,
    body: Bytes,
) -> Response {
    if !headers.holds_access(&s.center, &id) {
        return unknown_update(&id);
    }
    let parsed: Result<request::ChargeAuthenticate, ApiError> = json(&body);
    wipe(body);
    let b = match parsed {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let fingerprint = format!("charge-authenticate/{id}\n{}", b.responses.join(","));
    let work = |call: StepCall| async {
        let answers = answer_list(&b.responses)?;
        let payment_card = payment_card(&b.card_number, &b.expiry, &b.cvc)?;
        let authorizer = s.authorizer.as_ref();
        s.center
            .update_authenticate(authorizer, &id, answers, payment_card, call.answer)
            .await
            .map_err(update_api_error)
    };
    crate::api::idempotent_call(&s.center, &headers, fingerprint.as_bytes(), None, work).await
}

/// The charge id for a create request: `vup_` and the first 16 bytes of
/// SHA-256 over the Idempotency-Key and the request's fingerprint, so the
/// same request retried under the same key names the same charge.
fn charge_id(headers: &HeaderMap, fingerprint: &[u8]) -> Result<UpdateId, kessai_core::ids::IdError> {
    let key = idempotency_key(headers);
    let digest = Sha256Digest::of(&[b"kessai-charge-id\0", key.as_bytes(), b"\0", fingerprint].concat());
    UpdateId::parse(&format!("vup_{}", hex::encode(&digest.as_bytes()[..16])))
}

/// The request's Idempotency-Key ("" if none: `idempotent_by` refuses it).
fn idempotency_key(headers: &HeaderMap) -> &str {
    headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default()
}

fn answers(body: &Bytes) -> Result<Vec<kessai_scp03::ResponseApdu>, ApiError> {
    let b: kessai_api::request::Answers = json(body)?;
    answer_list(&b.responses)
}

/// The card's answers, as hex, parsed (bounded).
fn answer_list(responses: &[String]) -> Result<Vec<kessai_scp03::ResponseApdu>, ApiError> {
    parse_answers(responses).map_err(|e| match e {
        CenterError::BadApdu(m) => update_api_error(UpdateError::BadApdu(m)),
        other => crate::api::api_error(other),
    })
}

macro_rules! answers_step {
    ($name:ident, $method:ident) => {
        async fn $name(
            State(s): State<UpdateState>,
            Path(id): Path<String>,
            headers: crate::api::Caller,
            body: Bytes,
        ) -> Response {
            if !headers.holds_access(&s.center, &id) {
                return unknown_update(&id);
            }
            let fingerprint = [format!("charge-{}/{}\n", stringify!($name), id).as_bytes(), &body[..]].concat();
            let work = |call: StepCall| async {
                let answers = answers(&body)?;
                s.center.$method(s.authorizer.as_ref(), &id, answers, call.answer).await.map_err(update_api_error)
            };
            crate::api::idempotent_call(&s.center, &headers, &fingerprint, None, work).await
        }
    };
}

answers_step!(balance, update_offer);
answers_step!(complete, update_complete);
answers_step!(recover_authenticate, update_recover_authenticate);
answers_step!(recover_status, update_recover_status);
answers_step!(recover_balance, update_recover_balance);

async fn cancel(
    State(s): State<UpdateState>,
    Path(id): Path<String>,
    headers: crate::api::Caller,
    body: Bytes,
) -> Response {
    if !headers.holds_access(&s.center, &id) {
        return unknown_update(&id);
    }
    let fingerprint = [format!("charge-cancel/{id}\n").as_bytes(), &body[..]].concat();
    let work = |call: StepCall| async {
        s.center.update_cancel(s.authorizer.as_ref(), &id, call.answer).await.map_err(update_api_error)
    };
    crate::api::idempotent_call(&s.center, &headers, &fingerprint, None, work).await
}

async fn recover(
    State(s): State<UpdateState>,
    Path(id): Path<String>,
    headers: crate::api::Caller,
    body: Bytes,
) -> Response {
    if !headers.holds_access(&s.center, &id) {
        return unknown_update(&id);
    }
    let fingerprint = [format!("charge-recover/{id}\n").as_bytes(), &body[..]].concat();
    let work = |call: StepCall| async {
        s.center.update_recover(s.authorizer.as_ref(), &id, call.answer).await.map_err(update_api_error)
    };
    crate::api::idempotent_call(&s.center, &headers, &fingerprint, None, work).await
}

/// `POST /v1/decreases`: value back to the credit card of a charge.
async fn create_decrease(State(s): State<UpdateState>, headers: crate::api::Caller, body: Bytes) -> Response {
    let b: request::CreateDecrease = match json(&body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let fingerprint = format!(
        "decrease-create\n{}\n{}\n{}\n{}",
        b.card_id,
        b.charge_id,
        b.amount.amount_minor(),
        b.amount.currency()
    );
    let id = charge_id(&headers, fingerprint.as_bytes());
    let work = async {
        let id = id.map_err(ApiError::internal)?;
        let card_id = CardId::parse(&b.card_id)
            .map_err(|e| ApiError::new(ErrorCode::BadCardId, e.to_string()).with_param("card_id"))?;
        let charge_id = UpdateId::parse(&b.charge_id)
            .map_err(|e| ApiError::new(ErrorCode::BadChargeId, e.to_string()).with_param("charge_id"))?;
        let request = DecreaseRequest { id, card_id, charge_id, amount: b.amount };
        s.center.create_decrease(request).await.map_err(update_api_error)
    };
    crate::api::idempotent_by(&s.center, &headers, fingerprint.as_bytes(), work).await
}

/// `POST /v1/refunds`: a store's signed refund of a completed purchase.
async fn request_refund(State(s): State<UpdateState>, headers: crate::api::Caller, body: Bytes) -> Response {
    // A store resending its refund signs it anew (a new `jti`): the
    // fingerprint is what the request asks, not the token's bytes.
    let fingerprint = crate::api::signed_fingerprint("refund", &body, |b: &request::SubmitRefund| &b.refund, "refund");
    let work = async {
        let b: request::SubmitRefund = json(&body)?;
        s.center.request_refund(&b.refund).await.map_err(update_api_error)
    };
    crate::api::idempotent_by(&s.center, &headers, fingerprint.as_bytes(), work).await
}

/// `POST /v1/cards/{id}/owed/apply`: the card is presented. Answers a value
/// update to run like a charge, or `{"nothing_owed": true}`.
async fn apply_owed(
    State(s): State<UpdateState>,
    Path(card): Path<String>,
    headers: crate::api::Caller,
    body: Bytes,
) -> Response {
    // `{}` or `{"credits_only": true}` (a wallet in the middle of a payment).
    let asked: Result<request::OwedApply, ApiError> =
        if body.is_empty() { Ok(request::OwedApply::default()) } else { json(&body) };
    let credits_only = asked.as_ref().is_ok_and(|b| b.credits_only);
    let fingerprint = format!("owed-apply\n{card}\n{credits_only}");
    let key = idempotency_key(&headers).to_owned();
    let work = async {
        asked?;
        let card_id = CardId::parse(&card)
            .map_err(|e| ApiError::new(ErrorCode::BadCardId, e.to_string()).with_param("card_id"))?;
        let id = apply_update_id(&key, &card_id).map_err(ApiError::internal)?;
        let which = if credits_only { Owing::CreditsOnly } else { Owing::Any };
        match s.center.apply_owed_of(card_id, id, which).await.map_err(update_api_error)? {
            Applying::Nothing => Ok(OwedApplied::Nothing(NothingOwed { nothing_owed: true })),
            Applying::Update(reply) => Ok(OwedApplied::Update(reply)),
        }
    };
    crate::api::idempotent_by(&s.center, &headers, fingerprint.as_bytes(), work).await
}

/// A value update's routes answer only the holder of its access token
/// (M4), and a missing or wrong one as an unknown id.
fn unknown_update(id: &str) -> Response {
    update_api_error(UpdateError::UnknownUpdate(id.chars().take(64).collect())).into_response()
}

async fn show(
    State(s): State<UpdateState>,
    Path(id): Path<String>,
    caller: crate::api::Caller,
) -> Result<Json<UpdateReply>, ApiError> {
    if !caller.holds_access(&s.center, &id) {
        return Err(update_api_error(UpdateError::UnknownUpdate(id.chars().take(64).collect())));
    }
    let c = s.center.value_update(&id).await.map_err(update_api_error)?;
    Ok(Json(update_reply(&c, &[])))
}
