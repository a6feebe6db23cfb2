//! The routes of virtual prepaid cards (#18): a member's signed prepaid
//! requests and payments, beside the settlement routes of [`crate::api`]
//! (the same error shape and Idempotency-Key rules). The operator's routes
//! (cash, statements, suspense) are in [`crate::admin`].

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kessai_core::digest::Sha256Digest;
use kessai_http::{ApiError, ErrorCode};

use crate::api::{Caller, api_error};
use crate::authorizer::Authorizer;
use crate::prepaid::PrepaidError;
use crate::service::{Center, StepCall};
use crate::update_api::{authorizer_error, json, payment_card, wipe};

#[derive(Clone)]
struct PrepaidState {
    center: Arc<Center>,
    authorizer: Arc<dyn Authorizer>,
}

pub fn routes(center: Arc<Center>, authorizer: Arc<dyn Authorizer>) -> Router {
    Router::new()
        .route("/v1/prepaid/requests", post(request))
        .route("/v1/prepaid/payments", post(pay))
        .with_state(PrepaidState { center, authorizer })
}

/// Maps every refusal to a status and a stable code.
pub fn prepaid_api_error(e: PrepaidError) -> ApiError {
    let refuse = |code: ErrorCode, e: &PrepaidError| ApiError::new(code, e.to_string());
    match &e {
        PrepaidError::Refused(_) => refuse(ErrorCode::PrepaidRequestRefused, &e).with_param("request"),
        PrepaidError::Instruction(_) => refuse(ErrorCode::InstructionRefused, &e).with_param("instruction"),
        PrepaidError::UnknownCard(_) => ApiError::new(ErrorCode::UnknownPrepaidCard, e.to_string()),
        PrepaidError::Closed(_) => refuse(ErrorCode::PrepaidCardClosed, &e),
        PrepaidError::Currency { .. } => refuse(ErrorCode::CurrencyMismatch, &e),
        PrepaidError::OverMaxBalance { .. } => refuse(ErrorCode::OverMaxBalance, &e).with_param("amount"),
        PrepaidError::OverLimit { .. } => refuse(ErrorCode::AmountOverLimit, &e).with_param("amount"),
        PrepaidError::ValueExpired(_) => refuse(ErrorCode::ValueExpired, &e),
        PrepaidError::Insufficient { .. } => ApiError::new(ErrorCode::InsufficientBalance, e.to_string()),
        PrepaidError::RequestIdReused(_) => refuse(ErrorCode::RequestIdReused, &e).with_param("request_id"),
        PrepaidError::PaymentCardRequired => {
            ApiError::new(ErrorCode::PaymentCardRequired, e.to_string()).with_param("card_number")
        }
        PrepaidError::UnknownFunding(_) => ApiError::new(ErrorCode::UnknownFunding, e.to_string()),
        PrepaidError::FundingState { .. } => refuse(ErrorCode::FundingNotAwaiting, &e),
        PrepaidError::SecondOperator { .. } => refuse(ErrorCode::SecondOperatorRequired, &e),
        PrepaidError::CountDiffers { .. } => refuse(ErrorCode::CountDiffers, &e).with_param("amount"),
        PrepaidError::UnknownCredit(_) => ApiError::new(ErrorCode::UnknownBankCredit, e.to_string()),
        PrepaidError::Statement(_) => refuse(ErrorCode::StatementRefused, &e),
        PrepaidError::BillPaid => refuse(ErrorCode::BillPaid, &e).with_param("bill"),
        PrepaidError::NotMembersCard(_) => refuse(ErrorCode::CardNotMembers, &e).with_param("card_id"),
        PrepaidError::Update(_) => match e {
            PrepaidError::Update(u) => crate::update_api::update_api_error(u),
            _ => unreachable!("matched above"),
        },
        PrepaidError::Authorizer(_) => match e {
            PrepaidError::Authorizer(a) => authorizer_error(a),
            _ => unreachable!("matched above"),
        },
        PrepaidError::Center(_) => match e {
            PrepaidError::Center(c) => api_error(c),
            _ => unreachable!("matched above"),
        },
    }
}

async fn request(State(s): State<PrepaidState>, caller: Caller, body: Bytes) -> Response {
    let parsed: Result<kessai_api::request::SubmitPrepaidRequest, ApiError> = json(&body);
    wipe(body);
    let b = match parsed {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    // The request is known by the signed request alone: the card data is
    // not part of what is hashed and stored.
    let fingerprint = [&b"prepaid-request\n"[..], Sha256Digest::of(b.request.as_bytes()).as_bytes()].concat();
    let work = async {
        let card = payment_card(&b.card_number, &b.expiry, &b.cvc)?;
        s.center.prepaid_request(&b.request, card.as_ref(), s.authorizer.as_ref()).await.map_err(prepaid_api_error)
    };
    crate::api::idempotent_by(&s.center, &caller, &fingerprint, work).await
}

async fn pay(State(s): State<PrepaidState>, caller: Caller, body: Bytes) -> Response {
    // A wallet paying again signs its instruction anew (a new `jti` and
    // time): the request is the bill and what the instruction asks, as for
    // a store's refund, so its retry under the same key is the same request.
    let asked = crate::api::json::<kessai_api::request::PrepaidPay>(&body).ok().map(|b| {
        let instruction =
            kessai_core::jws::inspect_unverified(&b.instruction).ok().map(|(_, p)| p["instruction"].to_string());
        format!("{}\n{}", b.bill, instruction.unwrap_or(b.instruction))
    });
    let fingerprint = [&b"prepaid-payment\n"[..], asked.as_deref().map_or(&body[..], str::as_bytes)].concat();
    let work = |call: StepCall| async {
        let b: kessai_api::request::PrepaidPay = crate::api::json(&body)?;
        s.center.pay_from_prepaid(&b.bill, &b.instruction, call.answer).await.map_err(prepaid_api_error)
    };
    crate::api::idempotent_call(&s.center, &caller, &fingerprint, None, work).await
}
