//! Stores' statements of their payouts (#19): what each payout paid, the
//! settlements and refunds in it and the fee on each, over mutual TLS. A
//! store reads its own; a mall reads its member stores'. To anyone else a
//! payout or a store is unknown (M4: no lookup tells what exists).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use kessai_core::ids::StoreId;
use kessai_http::ApiError;
use serde::{Deserialize, Serialize};

use crate::api::{Caller, api_error};
use crate::clearing::{ItemRow, PayoutRow, item_fee};
use crate::service::{Center, CenterError};

/// Most payouts one listing answers, newest first.
const LISTED: i64 = 500;

pub fn routes(center: Arc<Center>) -> Router {
    Router::new().route("/v1/payouts", get(list)).route("/v1/payouts/{id}", get(show)).with_state(center)
}

/// One item of a payout: a settlement, a refund, …, and its fee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemView {
    /// `purchase`, `prepaid_payment`, `refund`, `prepaid_refund`,
    /// `refund_cancelled`, `payout_returned` or `opening_balance`.
    pub kind: String,
    /// The settlement, refund or payout it is of.
    pub reference: String,
    /// Signed: positive owed to the store, negative taken off.
    pub amount_minor: i64,
    pub fee_minor: u64,
    pub at: u64,
}

impl ItemView {
    pub fn of(i: &ItemRow, p: &PayoutRow) -> ItemView {
        ItemView {
            kind: i.kind.clone(),
            reference: i.reference.clone(),
            amount_minor: i.amount_minor,
            fee_minor: item_fee(&i.kind, i.amount_minor, p.fee_bp, p.fee_fixed_minor),
            at: i.at.unix_s(),
        }
    }
}

#[derive(Debug, Serialize)]
struct Listing {
    store: String,
    payouts: Vec<PayoutRow>,
}

#[derive(Debug, Serialize)]
struct Statement {
    #[serde(flatten)]
    payout: PayoutRow,
    lines: Vec<ItemView>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// The store (default: the caller's own).
    store: Option<String>,
}

fn unknown_store(id: &str) -> ApiError {
    ApiError::not_found(
        "unknown_store",
        format!("no store {} that this caller reads", id.chars().take(64).collect::<String>()),
    )
}

fn unknown_payout(id: &str) -> ApiError {
    ApiError::not_found("unknown_payout", format!("no payout {}", id.chars().take(64).collect::<String>()))
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
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Some(own) = caller.principal() else {
        return Err(unknown_store(q.store.as_deref().unwrap_or("")));
    };
    let asked = q.store.as_deref().unwrap_or(own).to_owned();
    let store = StoreId::parse(&asked).map_err(|_| unknown_store(&asked))?;
    if !reads(&c, &caller, &store).await? {
        return Err(unknown_store(&asked));
    }
    let payouts = c.db.store_payouts(&store, LISTED).await.map_err(|e| api_error(CenterError::Db(e)))?;
    let listing = Listing { store: asked, payouts };
    Ok(Json(serde_json::to_value(listing).map_err(ApiError::internal)?))
}

/// `GET /v1/payouts/{id}`: one payout with every item in it.
async fn show(
    State(c): State<Arc<Center>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if caller.principal().is_none() || id.len() > 64 {
        return Err(unknown_payout(&id));
    }
    let p = c.db.payout(&id).await.map_err(|e| api_error(CenterError::Db(e)))?.ok_or_else(|| unknown_payout(&id))?;
    if !reads(&c, &caller, &p.store).await? {
        return Err(unknown_payout(&id));
    }
    let items = c.db.payout_items(&p.id).await.map_err(|e| api_error(CenterError::Db(e)))?;
    let lines = items.iter().map(|i| ItemView::of(i, &p)).collect();
    let statement = Statement { lines, payout: p };
    Ok(Json(serde_json::to_value(statement).map_err(ApiError::internal)?))
}
