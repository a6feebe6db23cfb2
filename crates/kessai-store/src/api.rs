//! The store's JSON endpoints, answering errors in the kessai error shape.

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use kessai_core::digest::Sha256Digest;
use kessai_core::ids::{OrderId, StoreId};
use kessai_core::jwk::Jwks;
use kessai_core::jws::JwsError;
use kessai_core::limits::MAX_TOKEN_BYTES;
use kessai_core::messages::Reference;
use kessai_core::messages::receipt::{Delivery, DeliveryKind};
use kessai_core::random::OsRandom;
use kessai_core::{Currency, Money};
use kessai_http::{ApiError, ErrorCode, Party, PeerIdentity};
use kessai_merchant::{CompletionError, OpenOrder};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::catalog::Delivery as ProductDelivery;
use crate::center_keys::KeysError;
use crate::db::{OrderRow, Payment};
use crate::limits::{MAX_ORDERS_LISTED, RECEIPT_LIFETIME_S};
use crate::web::{now_s, return_url};

fn db_error(e: sqlx::Error) -> ApiError {
    ApiError::internal(e)
}

#[derive(Serialize)]
pub struct BillHandOff {
    bill: String,
    return_url: String,
}

/// `GET /orders/{order_id}/bill`: the bill token for `kessai wallet pay`.
pub async fn bill(State(state): State<AppState>, Path(order_id): Path<String>) -> Result<Json<BillHandOff>, ApiError> {
    let missing = || ApiError::new(ErrorCode::UnknownOrder, "there is no such order").with_param("order_id");
    if OrderId::parse(&order_id).is_err() {
        return Err(missing());
    }
    let o = state.db.order(&order_id).await.map_err(db_error)?.ok_or_else(missing)?;
    Ok(Json(BillHandOff { return_url: return_url(&state, &o.order_id), bill: o.bill_token }))
}

/// `GET /.well-known/jwks.json`: the mall's signing key.
pub async fn jwks(State(state): State<AppState>) -> Json<Jwks> {
    Json(state.merchant.jwks())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompletionRequest {
    completion: String,
}

#[derive(Serialize)]
pub struct ReceiptAnswer {
    receipt: String,
}

fn conflict(code: ErrorCode, message: String) -> ApiError {
    ApiError::new(code, message).with_param("completion")
}

/// One function maps every way a completion is refused to its answer.
fn refusal(e: KeysError) -> ApiError {
    let c = match e {
        KeysError::Unavailable(why) => {
            tracing::warn!(reason = %why, "center keys unavailable");
            return ApiError::new(
                ErrorCode::CenterKeysUnavailable,
                "the center's keys cannot be fetched now; retry later",
            );
        }
        KeysError::Completion(c) => c,
    };
    let message = c.to_string();
    match c {
        CompletionError::Token(JwsError::BadSignature) => {
            ApiError::new(ErrorCode::BadSignature, message).with_param("completion")
        }
        CompletionError::Token(JwsError::UnknownKey(_)) => {
            ApiError::new(ErrorCode::CompletionUnknownKey, message).with_param("completion")
        }
        CompletionError::Token(JwsError::Expired { .. }) => {
            ApiError::new(ErrorCode::CompletionExpired, message).with_param("completion")
        }
        CompletionError::Token(_) => ApiError::new(ErrorCode::InvalidCompletion, message).with_param("completion"),
        CompletionError::WrongIssuer { .. } => ApiError::new(ErrorCode::WrongIssuer, message).with_param("completion"),
        CompletionError::BillMismatch => conflict(ErrorCode::BillMismatch, message),
        CompletionError::CurrencyMismatch { .. } => conflict(ErrorCode::AmountMismatch, message),
        CompletionError::AmountMismatch { .. } => conflict(ErrorCode::AmountMismatch, message),
        CompletionError::WrongStore { .. } => conflict(ErrorCode::WrongStore, message),
        CompletionError::WrongMember { .. } => conflict(ErrorCode::WrongMember, message),
        _ => ApiError::new(ErrorCode::InvalidCompletion, message).with_param("completion"),
    }
}

/// Only the center (its client certificate) may deliver completions.
fn require_center(state: &AppState, peer: Option<&PeerIdentity>) -> Result<(), ApiError> {
    match peer {
        None => Err(ApiError::new(
            ErrorCode::ClientCertificateRequired,
            "completions are accepted over mutual TLS from the center only",
        )),
        Some(p) if p.acting_as(Party::Center) == Some(state.config.center.party_id.as_str()) => Ok(()),
        Some(_) => Err(ApiError::new(ErrorCode::NotTheCenter, "this client certificate does not belong to the center")),
    }
}

/// `POST /v1/completions` `{"completion": SIG3}` → `{"receipt": SIG4}`.
///
/// Order: authenticate the peer → parse → idempotency (the exact token was
/// accepted before: same receipt) → verify against the center's JWKS →
/// find the order by bill hash → match → sign the receipt → one
/// transaction marks the order paid with its receipt.
pub async fn completion(
    State(state): State<AppState>,
    peer: Option<Extension<PeerIdentity>>,
    body: Bytes,
) -> Result<Json<ReceiptAnswer>, ApiError> {
    let outcome = accept_completion(&state, peer.as_ref().map(|p| &p.0), &body).await;
    let label = match &outcome {
        Ok(_) => "accepted",
        Err(e) => e.code.as_str(),
    };
    state.store_metrics.completions.get_or_create(&vec![("outcome", label.to_owned())]).inc();
    outcome.map(|receipt| Json(ReceiptAnswer { receipt }))
}

async fn accept_completion(state: &AppState, peer: Option<&PeerIdentity>, body: &[u8]) -> Result<String, ApiError> {
    require_center(state, peer)?;
    let request: CompletionRequest = serde_json::from_slice(body)
        .map_err(|_| ApiError::new(ErrorCode::BadJson, "expected {\"completion\": \"<token>\"}"))?;
    let token = request.completion;
    if token.len() > MAX_TOKEN_BYTES {
        return Err(ApiError::new(ErrorCode::InvalidCompletion, "token too large").with_param("completion"));
    }
    let completion_hash = String::from(Sha256Digest::of_token(&token));
    if let Some(receipt) = state.db.receipt_for_completion(&completion_hash).await.map_err(db_error)? {
        return Ok(receipt);
    }
    let verified = match state.center_keys.verify(&state.merchant, &token, state.clock.as_ref()).await {
        // The center delivers a completion over mutual TLS (checked above)
        // until the store answers with a receipt; one that expired while the
        // store could not be reached still proves a payment made: it is
        // verified as of its own lifetime (signature, issuer and key as they
        // were then), so the paid order is fulfilled.
        Err(KeysError::Completion(CompletionError::Token(JwsError::Expired { exp, .. }))) => {
            let then = kessai_core::time::FixedClock::new(exp);
            state.center_keys.verify(&state.merchant, &token, &then).await
        }
        other => other,
    }
    .map_err(refusal)?;
    let bill_hash = String::from(verified.message().bill_hash());
    let order = state.db.order_by_bill_hash(&bill_hash).await.map_err(db_error)?.ok_or_else(|| {
        ApiError::new(ErrorCode::UnknownOrder, "no order has the bill this completion names").with_param("completion")
    })?;
    if order.paid {
        return Err(conflict(ErrorCode::OrderAlreadyPaid, "the order was paid by another completion".into()));
    }
    let paid = state.merchant.match_order(verified, &open_order(state, &order)?).map_err(|e| refusal(e.into()))?;
    let delivery = delivery_of(state, &order)?;
    let receipt = state
        .merchant
        .sign_receipt(&paid, delivery, RECEIPT_LIFETIME_S, &mut OsRandom, state.clock.as_ref())
        .map_err(ApiError::internal)?;
    let now = now_s(state);
    let ttl = i64::try_from(state.config.download_ttl_s).unwrap_or(i64::MAX);
    let payment = Payment {
        order_id: order.order_id.clone(),
        settlement_id: paid.completion().message().settlement_id().to_string(),
        completion_hash: completion_hash.clone(),
        completion_token: token,
        receipt_token: receipt.clone(),
        paid_at: now,
        downloads_expire_at: now.saturating_add(ttl),
    };
    if state.db.mark_paid(&payment).await.map_err(db_error)? {
        tracing::info!(order = %crate::web::loggable(&order.order_id), member = %order.member, settlement_id = %payment.settlement_id, "order paid");
        return Ok(receipt);
    }
    // Lost a race with a concurrent delivery: same token → same receipt.
    match state.db.receipt_for_completion(&completion_hash).await.map_err(db_error)? {
        Some(stored) => Ok(stored),
        None => Err(conflict(ErrorCode::OrderAlreadyPaid, "the order was paid by another completion".into())),
    }
}

/// The order as the merchant library checks it: the mall is the store.
fn open_order(state: &AppState, o: &OrderRow) -> Result<OpenOrder, ApiError> {
    let corrupt = |what: &str| ApiError::internal(format!("stored order {} has an invalid {what}", o.order_id));
    let total = open_order_total(o)?;
    let bill_hash = Sha256Digest::try_from(o.bill_hash.clone()).map_err(|_| corrupt("bill hash"))?;
    let order_id = OrderId::parse(&o.order_id).map_err(|_| corrupt("order id"))?;
    let member = StoreId::parse(&o.member).map_err(|_| corrupt("member"))?;
    Ok(OpenOrder::new(order_id, bill_hash, total, state.config.mall_id.clone(), Some(member)))
}

/// What the receipt promises: the download page if anything is
/// downloadable, else a shipment.
fn delivery_of(state: &AppState, o: &OrderRow) -> Result<Delivery, ApiError> {
    let member = StoreId::parse(&o.member).map_err(ApiError::internal)?;
    let lines: Vec<kessai_core::messages::bill::LineItem> =
        serde_json::from_str(&o.lines_json).map_err(ApiError::internal)?;
    let downloadable = lines.iter().any(|l| {
        state.catalog.find(&member, l.sku()).is_some_and(|p| matches!(p.delivery, ProductDelivery::Download { .. }))
    });
    let (kind, reference) = if downloadable {
        (DeliveryKind::Download, return_url(state, &o.order_id))
    } else {
        (DeliveryKind::Shipment, format!("shipment-{}", o.order_id))
    };
    let reference = Reference::parse(&reference).map_err(ApiError::internal)?;
    Ok(Delivery { kind, reference: Some(reference) })
}

#[derive(Serialize)]
pub struct MemberOrders {
    member: String,
    orders: Vec<MemberOrder>,
}

#[derive(Serialize)]
struct MemberOrder {
    order_id: String,
    order_number: i64,
    status: &'static str,
    total: Money,
    created_at: i64,
    paid_at: Option<i64>,
    settlement_id: Option<String>,
}

/// The member itself: its client certificate (CN = member id), or its API
/// token as `Authorization: Bearer …` (compared by SHA-256, in constant time).
pub(crate) fn require_member(
    state: &AppState,
    member: &str,
    peer: Option<&PeerIdentity>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let m =
        state.config.member(member).ok_or_else(|| ApiError::new(ErrorCode::UnknownMember, "no such member store"))?;
    if peer.is_some_and(|p| p.acting_as(Party::Store) == Some(member)) {
        return Ok(());
    }
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = bearer else {
        if peer.is_some() {
            return Err(ApiError::new(ErrorCode::NotThisMember, "this client certificate is not this member store's"));
        }
        return Err(ApiError::new(
            ErrorCode::CredentialsRequired,
            "present the member's client certificate or API token",
        ));
    };
    let expected =
        m.api_token_sha256.as_deref().and_then(|h| hex::decode(h).ok()).and_then(|b| <[u8; 32]>::try_from(b).ok());
    let matches = expected.is_some_and(|e| Sha256Digest::of(token.as_bytes()).ct_eq(&Sha256Digest::from_bytes(e)));
    if !matches {
        return Err(ApiError::new(ErrorCode::NotThisMember, "these credentials are not this member store's"));
    }
    Ok(())
}

/// `GET /members/{member}/orders`: the member's own orders, newest first.
pub async fn member_orders(
    State(state): State<AppState>,
    Path(member): Path<String>,
    peer: Option<Extension<PeerIdentity>>,
    headers: HeaderMap,
) -> Result<Json<MemberOrders>, ApiError> {
    require_member(&state, &member, peer.as_ref().map(|p| &p.0), &headers)?;
    let rows = state.db.orders_of_member(&member, MAX_ORDERS_LISTED).await.map_err(db_error)?;
    let mut orders = Vec::with_capacity(rows.len());
    for o in rows {
        let total = open_order_total(&o)?;
        orders.push(MemberOrder {
            status: if o.paid { "paid" } else { "open" },
            order_number: o.seq,
            total,
            created_at: o.created_at,
            paid_at: o.paid_at,
            settlement_id: o.settlement_id,
            order_id: o.order_id,
        });
    }
    Ok(Json(MemberOrders { member, orders }))
}

fn open_order_total(o: &OrderRow) -> Result<Money, ApiError> {
    let currency = Currency::parse(&o.currency).map_err(ApiError::internal)?;
    let amount = u64::try_from(o.total_minor).map_err(ApiError::internal)?;
    Money::new(amount, currency).map_err(ApiError::internal)
}
