//! Stores' statements of their payouts (#19): what each payout paid, the
//! settlements and refunds in it and the fee on each, over mutual TLS. A
//! store reads its own; a mall reads its member stores'. To anyone else a
//! payout or a store is unknown (M4: no lookup tells what exists).
//! A store also asks what became of one of its bills (L1), before it
//! purges an order nothing can pay any more.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use kessai_api::views::{PayoutFilter, PayoutLine, PayoutList, PayoutStatement, SubmitClaim};
use kessai_core::ids::{BillId, StoreId};
use kessai_http::{ApiError, ErrorCode};

use crate::api::{Caller, api_error};
use crate::clearing::{ClaimError, ItemRow, PayoutRow, item_fee};
use crate::service::{Center, CenterError};

/// Most payouts one listing answers, newest first.
const LISTED: i64 = 500;

pub fn routes(center: Arc<Center>) -> Router {
    Router::new()
        .route("/v1/payouts", get(list))
        .route("/v1/payouts/{id}", get(show))
        .route("/v1/claims", axum::routing::post(claim))
        .route("/v1/stores/{store}/bills/{bill_id}", get(bill))
        .with_state(center)
}

/// Maps a refused claim to a status and a stable code.
fn claim_error(e: ClaimError) -> ApiError {
    match &e {
        ClaimError::Refused(_) => ApiError::new(ErrorCode::ClaimRefused, e.to_string()).with_param("claim"),
        ClaimError::NotPayee { .. } => ApiError::new(ErrorCode::NotThePayee, e.to_string()),
        ClaimError::ClaimIdReused(_) => ApiError::new(ErrorCode::ClaimIdReused, e.to_string()).with_param("claim_id"),
        ClaimError::Differs(_) => ApiError::new(ErrorCode::ClaimDiffers, e.to_string()).with_param("lines"),
        ClaimError::Busy => ApiError::new(ErrorCode::ClaimBusy, e.to_string()),
        ClaimError::Db(_) | ClaimError::Signing(_) => ApiError::internal(e),
    }
}

/// `POST /v1/claims`: a store's signed payment claim (FIG. 9); answered
/// with the center's signed statement of what it accepts.
async fn claim(State(c): State<Arc<Center>>, caller: Caller, body: axum::body::Bytes) -> axum::response::Response {
    // A store resending its claim signs it anew: the fingerprint is what
    // the claim asks, not the token's bytes.
    let fingerprint = crate::api::signed_fingerprint("claim", &body, |b: &SubmitClaim| &b.claim, "claim");
    let work = async {
        let b: SubmitClaim = crate::api::json(&body)?;
        c.claim_payment(&b.claim).await.map_err(claim_error)
    };
    crate::api::idempotent_by(&c, &caller, fingerprint.as_bytes(), work).await
}

/// Payout `p`'s item `i`, with its fee.
pub fn item_line(i: &ItemRow, p: &PayoutRow) -> PayoutLine {
    PayoutLine {
        kind: i.kind.clone(),
        reference: i.reference.clone(),
        amount_minor: i.amount_minor,
        fee_minor: item_fee(&i.kind, i.amount_minor, p.fee_bp, p.fee_fixed_minor),
        at: i.at.unix_s(),
    }
}

fn unknown_store(id: &str) -> ApiError {
    ApiError::new(
        ErrorCode::UnknownStore,
        format!("no store {} that this caller reads", id.chars().take(64).collect::<String>()),
    )
}

fn unknown_payout(id: &str) -> ApiError {
    ApiError::new(ErrorCode::UnknownPayout, format!("no payout {}", id.chars().take(64).collect::<String>()))
}

/// Whether the caller's certificate is `store`'s, or its mall's.
async fn reads(c: &Center, caller: &Caller, store: &StoreId) -> Result<bool, ApiError> {
    let Some(name) = caller.principal() else { return Ok(false) };
    if name == store.as_str() {
        return Ok(true);
    }
    let record = c.db.store(store).await.map_err(|e| api_error(CenterError::Db(e)))?;
    Ok(record.and_then(|r| r.mall).is_some_and(|mall| mall.as_str() == name))
}

/// `GET /v1/payouts[?store=ID]`: a store's payouts, newest first.
async fn list(
    State(c): State<Arc<Center>>,
    caller: Caller,
    crate::admin::Params(q): crate::admin::Params<PayoutFilter>,
) -> Result<Json<PayoutList>, ApiError> {
    let Some(own) = caller.principal() else {
        return Err(unknown_store(q.store.as_deref().unwrap_or("")));
    };
    let asked = q.store.as_deref().unwrap_or(own).to_owned();
    let store = StoreId::parse(&asked).map_err(|_| unknown_store(&asked))?;
    if !reads(&c, &caller, &store).await? {
        return Err(unknown_store(&asked));
    }
    let payouts = c.db.store_payouts(&store, LISTED).await.map_err(|e| api_error(CenterError::Db(e)))?;
    Ok(Json(PayoutList { store: asked, payouts }))
}

/// `GET /v1/stores/{store}/bills/{bill_id}`: what became of a bill `store`
/// signed (`none`, `open`, `voided` or `paid`), asked by that store's
/// certificate (or its mall's). To anyone else the store is unknown.
async fn bill(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path((store, bill_id)): Path<(String, String)>,
) -> Result<Json<kessai_api::BillAnswer>, ApiError> {
    let signer = StoreId::parse(&store).map_err(|_| unknown_store(&store))?;
    if !reads(&c, &caller, &signer).await? {
        return Err(unknown_store(&store));
    }
    let id = BillId::parse(&bill_id).map_err(|e| ApiError::new(ErrorCode::BadBillId, e.to_string()))?;
    let state = c.db.bill_state(&signer, id.as_str()).await.map_err(|e| api_error(CenterError::Db(e)))?;
    Ok(Json(kessai_api::BillAnswer { store: signer.as_str().to_owned(), bill_id: id.as_str().to_owned(), state }))
}

/// `GET /v1/payouts/{id}`: one payout with every item in it.
async fn show(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<PayoutStatement>, ApiError> {
    if caller.principal().is_none() || id.len() > 64 {
        return Err(unknown_payout(&id));
    }
    let p = c.db.payout(&id).await.map_err(|e| api_error(CenterError::Db(e)))?.ok_or_else(|| unknown_payout(&id))?;
    if !reads(&c, &caller, &p.store).await? {
        return Err(unknown_payout(&id));
    }
    let items = c.db.payout_items(&p.id).await.map_err(|e| api_error(CenterError::Db(e)))?;
    let lines = items.iter().map(|i| item_line(i, &p)).collect();
    Ok(Json(PayoutStatement { lines, payout: p }))
}
