//! The admin API: reachable only with the admin's client certificate
//! (its verified name equals `tls.admin_name`). Registers stores and their
//! keys, issues and blocks cards, lists settlements, makes and cancels
//! corrections (value taken off a card at its next presentation) and lists
//! what a card is owed or owes.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use kessai_api::admin::Approved;
use kessai_api::admin::{
    AddCorrection, ApplicationFilter, ApplicationList, ApplicationRow, ApplicationStatus, ApplyBankCredit,
    BankCreditFilter, BankCreditList, CardBooks, CardEntry, CardHolder, CardMemberLinked, CardState, CardStory,
    ChangeCardStatus, FundingFilter, FundingList, GiveReason, KeyRevoked, LetterRow, LetterSent, LinkCardMember,
    MemberCard, MemberEntry, MemberStory, Outbox, OwedList, RecordCash, RegisterCard, RegisterStore, Rejected,
    ReplaceCard, ReturnBankCredit, RevokeMember, SettlementFilter, SettlementPage, SettlementRow, SettlementVoided,
    StoreRegistered, UpdateRow,
};
use kessai_api::views::{BankCredit, BankCreditStatus, Funding, OwedReply, Replaced};
use kessai_core::Money;
use kessai_core::ids::{CardId, StoreId};
use kessai_core::messages::DisplayText;
use kessai_core::time::Timestamp;
use kessai_http::{ApiError, ErrorCode, Party, PeerIdentity};

use crate::console::Actor;
use crate::db::{ListCursor, MAX_LIST, Role, SettlementQuery, StatusChange, StoreRecord};
use crate::purchase::{CardRecord, CardRegistryStatus, Phase};
use crate::service::{Center, CenterError};

#[derive(Clone)]
struct AdminState {
    center: Arc<Center>,
    admin_name: Arc<str>,
    /// Other operators' certificate names (`tls.operator_names`).
    operators: Arc<[String]>,
}

impl AdminState {
    /// Whether `name` is the admin's or an operator's.
    fn is_operator(&self, name: &str) -> bool {
        name == &*self.admin_name || self.operators.iter().any(|o| o == name)
    }
}

pub fn routes(center: Arc<Center>, admin_name: String, operators: Vec<String>) -> Router {
    let state = AdminState { center, admin_name: admin_name.into(), operators: operators.into() };
    Router::new()
        .route("/v1/admin/stores", post(register_store))
        .route("/v1/admin/stores/{id}/keys/{kid}/revoke", post(revoke_store_key))
        .route("/v1/admin/cards", post(register_card))
        .route("/v1/admin/cards/{id}/status", post(card_status))
        .route("/v1/admin/settlements", get(list_settlements))
        .route("/v1/admin/settlements/{id}/void-lost", post(void_lost))
        .route("/v1/admin/cards/{id}/corrections", post(add_correction))
        .route("/v1/admin/cards/{id}/owed", get(card_owed))
        .route("/v1/admin/cards/{id}/story", get(card_story))
        .route("/v1/admin/owed/{id}/cancel", post(cancel_correction))
        .route("/v1/admin/cards/{id}/replace", post(replace_card))
        .route("/v1/admin/cards/{id}/member", post(card_member))
        .route("/v1/admin/members/{id}/revoke", post(revoke_member))
        .route("/v1/admin/members/{id}/story", get(member_story))
        .route("/v1/admin/applications", get(list_applications))
        .route("/v1/admin/applications/{id}/approve", post(approve_application))
        .route("/v1/admin/applications/{id}/reject", post(reject_application))
        .route("/v1/admin/outbox", get(outbox))
        .route("/v1/admin/outbox/{id}/sent", post(letter_sent))
        .route("/v1/admin/fundings", get(list_fundings))
        .route("/v1/admin/fundings/{id}/cash", post(record_cash))
        .route("/v1/admin/bank-credits", get(list_bank_credits))
        .route("/v1/admin/bank-credits/apply", post(apply_bank_credit))
        .route("/v1/admin/bank-credits/return", post(return_bank_credit))
        // The certificate is checked before anything of the request is
        // read: without the admin's, a request learns nothing of what the
        // API would make of its body (401/403 whatever it sends).
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), only_the_admin))
        .with_state(state)
}

async fn only_the_admin(
    State(state): State<AdminState>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let peer = request.extensions().get::<PeerIdentity>().cloned().map(Extension);
    let name = peer.as_ref().map(|Extension(p)| p.name.clone()).unwrap_or_default();
    if let Err(refused) = authorize(&state, peer) {
        return refused.into_response();
    }
    // A change asks for a role, as in the console: the admin's certificate
    // has every role; another operator's has its console account's (an
    // operator without one: `operator`).
    if request.method() != axum::http::Method::GET {
        let needed = role_needed(request.uri().path());
        let role = if name == *state.admin_name {
            Role::Approver
        } else {
            match state.center.db.operator(&name).await {
                Ok(Some(account)) if account.disabled => {
                    return ApiError::new(ErrorCode::NotAdmin, format!("operator {name}'s account is disabled"))
                        .into_response();
                }
                Ok(Some(account)) => account.role,
                Ok(None) => Role::Operator,
                Err(e) => return internal(e).into_response(),
            }
        };
        if !role.may(needed) {
            tracing::warn!(operator = %name, role = role.as_str(), needed = needed.as_str(), "admin API change refused");
            let why =
                format!("operator {name}'s role ({}) may not do this: it needs {}", role.as_str(), needed.as_str());
            return ApiError::new(ErrorCode::NotAdmin, why).into_response();
        }
    }
    next.run(request).await
}

/// The role a change of the admin API needs: deciding applications, where
/// stores are paid, voiding a lost card's settlement and moving a card's
/// value are an approver's, as in the console; the rest an operator's.
fn role_needed(path: &str) -> Role {
    let decides = path == "/v1/admin/stores"
        || path.ends_with("/approve")
        || path.ends_with("/reject")
        || path.ends_with("/void-lost")
        || path.ends_with("/replace");
    if decides { Role::Approver } else { Role::Operator }
}

/// The operator a request of the admin API comes from, for the trail.
fn actor(peer: &Option<Extension<PeerIdentity>>) -> Actor {
    Actor::api(peer.as_ref().map(|Extension(p)| p.name.as_str()).unwrap_or_default())
}

/// A JSON string, for a trail row.
fn json_of(v: &impl std::fmt::Display) -> serde_json::Value {
    serde_json::json!({ "store": v.to_string() })
}

fn authorize(state: &AdminState, peer: Option<Extension<PeerIdentity>>) -> Result<(), ApiError> {
    match peer {
        Some(Extension(peer)) if peer.acting_as(Party::Operator).is_some_and(|name| state.is_operator(name)) => Ok(()),
        Some(Extension(PeerIdentity { party: None, .. })) => Err(ApiError::new(
            ErrorCode::NotAdmin,
            "this certificate names no party (issued before parties were); issue the operator's again with \
             kessai pki issue --client NAME --party operator",
        )),
        Some(_) => Err(ApiError::new(ErrorCode::NotAdmin, "this certificate is not an operator's")),
        None => {
            Err(ApiError::new(ErrorCode::ClientCertificateRequired, "the admin API needs the admin client certificate"))
        }
    }
}

/// A JSON request body whose refusal answers in the error shape (axum's
/// own `Json` answers plain text): 415 without a JSON content type, 400 for
/// malformed JSON, 422 for JSON that is not the request.
struct Body<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Body<T>, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(body)) => Ok(Body(body)),
            Err(rejection) => {
                let code = match rejection {
                    JsonRejection::MissingJsonContentType(_) => ErrorCode::UnsupportedMediaType,
                    _ => ErrorCode::BadJson,
                };
                Err(ApiError::new(code, rejection.body_text()))
            }
        }
    }
}

/// A query string whose refusal answers 400 in the error shape.
pub(crate) struct Params<T>(pub(crate) T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Params<T>, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Params(q))
            .map_err(|e: QueryRejection| bad(ErrorCode::BadQuery, e.body_text()))
    }
}

fn bad(code: ErrorCode, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(code, e.to_string())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e)
}

async fn register_store(
    State(state): State<AdminState>,
    peer: Option<Extension<PeerIdentity>>,
    Body(b): Body<RegisterStore>,
) -> Result<Json<StoreRegistered>, ApiError> {
    let by = actor(&peer);
    authorize(&state, peer)?;
    let id = StoreId::parse(&b.id).map_err(|e| bad(ErrorCode::BadStoreId, e).with_param("id"))?;
    // The configured admin name is a role too (L3): no store is it, nor
    // presents a certificate of that name.
    if state.is_operator(id.as_str()) || b.client_name.as_deref().is_some_and(|n| state.is_operator(n)) {
        return Err(bad(ErrorCode::ReservedStoreId, format!("{id} is an operator's name, not a store's")));
    }
    let record = StoreRecord {
        id: id.clone(),
        name: DisplayText::parse(&b.name).map_err(|e| bad(ErrorCode::BadName, e).with_param("name"))?,
        mall: b.mall.as_deref().map(StoreId::parse).transpose().map_err(|e| bad(ErrorCode::BadMall, e))?,
        notify_url: b.notify_url,
        client_name: b.client_name,
        // Where its payouts go (#19): refused unless a bank file can carry
        // it, kept in its normal form.
        bank_account: match b.bank_account.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(
                text.parse::<kessai_bank::payout::PayeeAccount>()
                    .map_err(|e| bad(ErrorCode::BadBankAccount, e).with_param("bank_account"))?
                    .to_string(),
            ),
        },
    };
    let keys = match &b.jwks {
        Some(v) => kessai_core::jwk::parse_jwks(v.to_string().as_bytes()).map_err(|e| bad(ErrorCode::BadJwks, e))?,
        None => vec![],
    };
    let mut windows = Vec::with_capacity(keys.len());
    for k in &keys {
        let public = kessai_core::keys::PublicKey::from_bytes(&k.public).map_err(|e| bad(ErrorCode::BadJwks, e))?;
        windows.push((public, kessai_core::keys::Validity { not_before: k.not_before, not_after: k.not_after }));
    }
    let c = &state.center;
    c.register_store(&record, &windows, &by).await.map_err(|e| match e {
        CenterError::Registration { code, message } => bad(code, message),
        other => internal(other),
    })?;
    Ok(Json(StoreRegistered { store: id.to_string(), keys: keys.len() }))
}

/// L5: a store's key revoked (leaked, retired). Every instance refuses it
/// within the store key cache's age (`STORE_KEYS_TTL`), this one at once.
async fn revoke_store_key(
    State(state): State<AdminState>,
    peer: Option<Extension<PeerIdentity>>,
    Path((store, kid)): Path<(String, String)>,
) -> Result<Json<KeyRevoked>, ApiError> {
    let by = actor(&peer);
    authorize(&state, peer)?;
    let store = StoreId::parse(&store).map_err(|e| bad(ErrorCode::BadStoreId, e))?;
    let key = kessai_core::jwk::KeyId::parse(&kid).map_err(|e| bad(ErrorCode::BadKid, e))?;
    let keys = state.center.db.store_keys().await.map_err(internal)?;
    // Another store's key is as unknown as a missing one.
    if keys.entry(key.as_str()).is_none_or(|entry| entry.owner.as_str() != store.as_str()) {
        return Err(ApiError::new(ErrorCode::UnknownKey, format!("store {store} has no key {kid}")));
    }
    let trail = by.did("store_key_revoked", key.as_str(), json_of(&store), serde_json::json!({ "revoked": true }));
    state.center.db.revoke_store_key(&key, state.center.clock.now(), trail).await.map_err(internal)?;
    Ok(Json(KeyRevoked { store: store.to_string(), kid: key.as_str().to_owned(), revoked: true }))
}

async fn register_card(
    State(state): State<AdminState>,
    peer: Option<Extension<PeerIdentity>>,
    Body(b): Body<RegisterCard>,
) -> Result<(StatusCode, Json<CardState>), ApiError> {
    let by = actor(&peer);
    authorize(&state, peer)?;
    let c = &state.center;
    let id = CardId::parse(&b.card_id).map_err(|e| bad(ErrorCode::BadCardId, e).with_param("card_id"))?;
    let currency = kessai_core::Currency::parse(&b.currency).map_err(|e| bad(ErrorCode::BadCurrency, e))?;
    if !c.security.knows(b.key_version) {
        return Err(bad(ErrorCode::UnknownKeyVersion, format!("no master keys for key version {}", b.key_version)));
    }
    if b.max_balance_minor == 0 || b.initial_value_minor > b.max_balance_minor {
        return Err(bad(
            ErrorCode::BadAmounts,
            "need 0 < max_balance_minor and initial_value_minor ≤ max_balance_minor",
        ));
    }
    let record = CardRecord {
        id,
        key_version: b.key_version,
        status: CardRegistryStatus::Active,
        currency,
        max_balance_minor: b.max_balance_minor,
    };
    if c.db.card(&id).await.map_err(internal)?.is_some() {
        return Err(ApiError::new(ErrorCode::CardExists, "this card id is already issued"));
    }
    let initial = Money::new(b.initial_value_minor, currency).map_err(|e| bad(ErrorCode::BadAmounts, e))?;
    c.register_card(&record, Some(initial), &by).await.map_err(internal)?;
    Ok((StatusCode::CREATED, Json(CardState { card_id: id.to_string(), status: CardRegistryStatus::Active })))
}

async fn card_status(
    State(state): State<AdminState>,
    peer: Option<Extension<PeerIdentity>>,
    Path(id): Path<String>,
    Body(b): Body<ChangeCardStatus>,
) -> Result<Json<CardState>, ApiError> {
    let by = actor(&peer);
    authorize(&state, peer)?;
    let id = CardId::parse(&id).map_err(|e| bad(ErrorCode::BadCardId, e))?;
    if b.reason.trim().is_empty() || b.reason.chars().count() > 500 {
        return Err(bad(ErrorCode::BadReason, "a reason of 1 to 500 characters is recorded"));
    }
    let after = serde_json::json!({ "status": b.status, "reason": b.reason });
    let trail = by.did("card_status", &id.to_string(), serde_json::Value::Null, after);
    match state
        .center
        .db
        .set_card_status(&id, b.status, &b.reason, state.center.clock.now(), trail)
        .await
        .map_err(internal)?
    {
        StatusChange::Changed => Ok(Json(CardState { card_id: id.to_string(), status: b.status })),
        StatusChange::UnknownCard => Err(ApiError::new(ErrorCode::UnknownCard, format!("card {id} is not registered"))),
        StatusChange::LostIsFinal => {
            Err(ApiError::new(ErrorCode::CardLost, format!("card {id} is lost, which is final: issue a new card")))
        }
    }
}

async fn list_settlements(
    State(state): State<AdminState>,
    peer: Option<Extension<PeerIdentity>>,
    Params(q): Params<SettlementFilter>,
) -> Result<Json<SettlementPage>, ApiError> {
    authorize(&state, peer)?;
    let card = q.card.as_deref().map(CardId::parse).transpose().map_err(|e| bad(ErrorCode::BadCardId, e))?;
    let phase = match q.phase.as_deref() {
        Some(p) => Some(Phase::parse(p).ok_or_else(|| bad(ErrorCode::BadPhase, format!("unknown phase {p:?}")))?),
        None => None,
    };
    let limit = q.limit.unwrap_or(100);
    if limit < 1 {
        return Err(bad(ErrorCode::BadLimit, "limit must be at least 1").with_param("limit"));
    }
    let store = q.store.as_deref().map(StoreId::parse).transpose().map_err(|e| bad(ErrorCode::BadStoreId, e))?;
    let before = match q.after.as_deref() {
        Some(text) => Some(
            ListCursor::parse(text)
                .ok_or_else(|| bad(ErrorCode::BadQuery, "after is the next of the page before").with_param("after"))?,
        ),
        None => None,
    };
    for (name, at) in [("from", q.from), ("to", q.to)] {
        if at.is_some_and(|s| i64::try_from(s).is_err()) {
            return Err(bad(ErrorCode::BadQuery, format!("{name} is unix seconds up to 2^63 - 1")).with_param(name));
        }
    }
    let query = SettlementQuery {
        card,
        phase,
        store,
        from: q.from.map(Timestamp::from_unix_s),
        to: q.to.map(Timestamp::from_unix_s),
        before,
        limit: limit.min(MAX_LIST),
    };
    let page = state.center.db.list_settlements(&query).await.map_err(internal)?;
    let settlements = page.settlements.iter().map(settlement_row).collect();
    Ok(Json(SettlementPage { settlements, next: page.next.map(|c| c.to_string()) }))
}

/// A settlement as an operator's listing shows it.
fn settlement_row(s: &crate::purchase::Settlement) -> SettlementRow {
    SettlementRow {
        settlement_id: s.id.to_string(),
        phase: s.phase(),
        card_id: s.card_id.to_string(),
        store: s.bill.store.to_string(),
        member: s.bill.member.as_ref().map(ToString::to_string),
        order_id: s.bill.order_id.to_string(),
        amount: s.bill.amount,
        created_at: s.created_at,
        receipt: s.receipt_token().is_some(),
        reason: s.outcome().map(|(_, reason)| reason.to_owned()),
    }
}

/// `GET /v1/admin/members/{id}/story` (#22): a member's whole story for an
/// operator: the ledger entry (its key's id and window, never the key
/// itself), its letters (when made, sent and used; never their text or
/// code), the IC cards linked to it, and its virtual prepaid cards with
/// their balances, fundings and payments.
async fn member_story(
    State(state): State<AdminState>,
    peer: Option<Extension<PeerIdentity>>,
    Path(id): Path<String>,
) -> Result<Json<MemberStory>, ApiError> {
    authorize(&state, peer)?;
    member_story_of(&state.center, &id).await.map(Json)
}

/// Member `id`'s whole story (the admin API's and the console's).
pub(crate) async fn member_story_of(c: &Center, id: &str) -> Result<MemberStory, ApiError> {
    let id = id.to_owned();
    let unknown = || ApiError::new(ErrorCode::UnknownMember, "no such member");
    if id.len() > 64 {
        return Err(unknown());
    }
    let member = c.db.member(&id).await.map_err(internal)?.ok_or_else(unknown)?;
    let letters = c.db.letters_of(&id).await.map_err(internal)?;
    let cards = c.db.cards_of_member(&id).await.map_err(internal)?;
    let prepaid = match c.inquire(&id, None).await.map_err(crate::prepaid_api::prepaid_api_error)? {
        crate::prepaid::PrepaidReply::Inquiry { cards } => cards,
        _ => Vec::new(),
    };
    let letters = letters
        .into_iter()
        .map(|l| LetterRow {
            letter_id: l.id,
            kind: l.kind,
            expires_at: l.expires_at,
            sent_at: l.sent_at,
            used_at: l.used_at,
        })
        .collect();
    let cards = cards
        .into_iter()
        .map(|(card, instruction_required)| MemberCard { card_id: card.to_string(), instruction_required })
        .collect();
    let member = MemberEntry {
        member: member.member,
        kind: member.kind,
        status: member.status,
        kid: member.kid,
        not_before: member.not_before,
        not_after: member.not_after,
    };
    Ok(MemberStory { member, letters, cards, prepaid_cards: prepaid })
}

/// Rows of each kind a card's story shows, newest first.
const STORY_ROWS: i64 = 100;

/// `GET /v1/admin/cards/{id}/story` (#22): a card's whole story for an
/// operator: its registry record and member, what the books hold on it,
/// its newest settlements (with the listing's `next` for the rest) and
/// value updates, what is owed to or by it, and its own log as last
/// collected from the card, newest first.
async fn card_story(
    State(state): State<AdminState>,
    peer: Option<Extension<PeerIdentity>>,
    Path(id): Path<String>,
) -> Result<Json<CardStory>, ApiError> {
    authorize(&state, peer)?;
    card_story_of(&state.center, &id).await.map(Json)
}

/// Card `id`'s whole story (the admin API's and the console's).
pub(crate) async fn card_story_of(c: &Center, id: &str) -> Result<CardStory, ApiError> {
    let id = CardId::parse(id).map_err(|e| bad(ErrorCode::BadCardId, e))?;
    let card = c.db.card(&id).await.map_err(internal)?;
    let Some(card) = card else {
        return Err(ApiError::new(ErrorCode::UnknownCard, format!("card {id} is not registered")));
    };
    let member = c.db.card_member(&id).await.map_err(internal)?;
    let float = c.books.card_float(&id).await.map_err(internal)?;
    let credits_pending = c.books.card_credits_pending(&id).await.map_err(internal)?;
    let settlements =
        c.db.list_settlements(&SettlementQuery { card: Some(id), limit: STORY_ROWS, ..Default::default() })
            .await
            .map_err(internal)?;
    let updates = c.db.value_updates_of(&id, STORY_ROWS).await.map_err(internal)?;
    let owed = c.owed_for_card(&id).await.map_err(crate::update_api::update_api_error)?;
    let mut log = c.db.collected_log(&id).await.map_err(internal)?;
    log.reverse();
    log.truncate(usize::try_from(STORY_ROWS).unwrap_or(usize::MAX));
    let value_updates = updates
        .iter()
        .map(|u| UpdateRow {
            update_id: u.id.to_string(),
            phase: u.phase(),
            direction: u.direction,
            purpose: u.purpose.name().to_owned(),
            amount: u.amount,
            created_at: u.created_at,
            reason: u.outcome().map(|(_, reason)| reason.to_owned()),
        })
        .collect();
    Ok(CardStory {
        card: CardEntry {
            card_id: card.id.to_string(),
            status: card.status,
            currency: card.currency.code().to_owned(),
            key_version: card.key_version,
            max_balance_minor: card.max_balance_minor,
        },
        member: member.map(|(member, instruction_required)| CardHolder { member, instruction_required }),
        books: float.map(|(float_minor, held_minor)| CardBooks {
            float_minor,
            held_minor,
            credits_pending_minor: credits_pending,
        }),
        settlements: settlements.settlements.iter().map(settlement_row).collect(),
        settlements_next: settlements.next.map(|n| n.to_string()),
        value_updates,
        owed,
        log,
    })
}

/// A reason of 1 to 500 characters, as recorded.
fn reason_of(b: &GiveReason) -> Result<&str, ApiError> {
    if b.reason.trim().is_empty() || b.reason.chars().count() > 500 {
        return Err(bad(ErrorCode::BadReason, "a reason of 1 to 500 characters is recorded").with_param("reason"));
    }
    Ok(&b.reason)
}

async fn void_lost(
    State(state): State<AdminState>,
    peer: Option<Extension<PeerIdentity>>,
    Path(id): Path<String>,
    Body(b): Body<GiveReason>,
) -> Result<Json<SettlementVoided>, ApiError> {
    let by = actor(&peer);
    authorize(&state, peer)?;
    let reason = reason_of(&b)?;
    let reply = state.center.void_lost_card(&id, reason, &by).await.map_err(crate::api::api_error)?;
    Ok(Json(SettlementVoided { settlement_id: reply.settlement_id, phase: reply.phase, reason: reply.reason }))
}

async fn add_correction(
    State(state): State<AdminState>,
    peer: Option<Extension<PeerIdentity>>,
    Path(id): Path<String>,
    Body(b): Body<AddCorrection>,
) -> Result<Json<OwedReply>, ApiError> {
    let by = actor(&peer);
    authorize(&state, peer)?;
    let id = CardId::parse(&id).map_err(|e| bad(ErrorCode::BadCardId, e))?;
    let reply = state
        .center
        .add_correction(id, &b.reference, b.amount, &b.reason, &by)
        .await
        .map_err(crate::update_api::update_api_error)?;
    Ok(Json(reply))
}

async fn card_owed(
    State(state): State<AdminState>,
    peer: Option<Extension<PeerIdentity>>,
    Path(id): Path<String>,
) -> Result<Json<OwedList>, ApiError> {
    authorize(&state, peer)?;
    let id = CardId::parse(&id).map_err(|e| bad(ErrorCode::BadCardId, e))?;
    let list = state.center.owed_for_card(&id).await.map_err(crate::update_api::update_api_error)?;
    Ok(Json(OwedList { owed: list }))
}

async fn cancel_correction(
    State(state): State<AdminState>,
    peer: Option<Extension<PeerIdentity>>,
    Path(id): Path<String>,
) -> Result<Json<OwedReply>, ApiError> {
    let by = actor(&peer);
    authorize(&state, peer)?;
    let reply = state.center.cancel_correction(&id, &by).await.map_err(crate::update_api::update_api_error)?;
    Ok(Json(reply))
}

/// M8: a lost or blocked card's value, and the refunds still owed to it,
/// go to the card that replaces it.
async fn replace_card(
    State(state): State<AdminState>,
    peer: Option<Extension<PeerIdentity>>,
    Path(id): Path<String>,
    Body(b): Body<ReplaceCard>,
) -> Result<Json<Replaced>, ApiError> {
    let by = actor(&peer);
    authorize(&state, peer)?;
    let old = CardId::parse(&id).map_err(|e| bad(ErrorCode::BadCardId, e))?;
    let new = CardId::parse(&b.replacement).map_err(|e| bad(ErrorCode::BadCardId, e).with_param("replacement"))?;
    let done =
        state.center.replace_card(old, new, &b.reason, &by).await.map_err(crate::update_api::update_api_error)?;
    Ok(Json(done))
}

/// Applications waiting for the operator (`received`), or in another status.
async fn list_applications(
    State(state): State<AdminState>,
    peer: Option<Extension<PeerIdentity>>,
    Params(q): Params<ApplicationFilter>,
) -> Result<Json<ApplicationList>, ApiError> {
    authorize(&state, peer)?;
    let status = q.status.as_deref().unwrap_or("received");
    if !matches!(status, "received" | "approved" | "rejected") {
        return Err(bad(ErrorCode::BadStatus, "status is received, approved or rejected"));
    }
    let rows = state.center.db.applications(status, crate::db::MAX_LIST).await.map_err(internal)?;
    let mut applications = Vec::with_capacity(rows.len());
    for a in rows {
        let status = match a.status.as_str() {
            "received" => ApplicationStatus::Received,
            "approved" => ApplicationStatus::Approved,
            "rejected" => ApplicationStatus::Rejected,
            other => return Err(internal(format!("application {} has the unknown status {other:?}", a.id))),
        };
        let row = ApplicationRow {
            application_id: a.id,
            kind: a.kind,
            name: a.name,
            contact: a.contact,
            status,
            created_at: a.created_at,
        };
        applications.push(row);
    }
    Ok(Json(ApplicationList { applications }))
}

/// Step ⑥: approves an application; its letter waits in the outbox.
async fn approve_application(
    State(state): State<AdminState>,
    peer: Option<Extension<PeerIdentity>>,
    Path(id): Path<String>,
) -> Result<Json<Approved>, ApiError> {
    let by = actor(&peer);
    authorize(&state, peer)?;
    let approved = state.center.approve_application(&id, &by).await.map_err(crate::members::member_api_error)?;
    Ok(Json(approved))
}

/// Step ⑥ (#22 work queue): rejects a received application, recording
/// the operator and the reason; 409 not_received once decided.
async fn reject_application(
    State(state): State<AdminState>,
    peer: Option<Extension<PeerIdentity>>,
    Path(id): Path<String>,
    Body(b): Body<GiveReason>,
) -> Result<Json<Rejected>, ApiError> {
    let by = actor(&peer);
    authorize(&state, peer)?;
    let reason = reason_of(&b)?;
    state.center.reject_application(&id, &by, reason).await.map_err(crate::members::member_api_error)?;
    Ok(Json(Rejected { application_id: id, status: ApplicationStatus::Rejected }))
}

/// The letters to print or mail: member numbers and activation codes.
async fn outbox(
    State(state): State<AdminState>,
    peer: Option<Extension<PeerIdentity>>,
) -> Result<Json<Outbox>, ApiError> {
    authorize(&state, peer)?;
    let letters = state.center.outbox().await.map_err(crate::members::member_api_error)?;
    Ok(Json(Outbox { letters }))
}

/// A letter was sent: its text, with the code, is wiped.
async fn letter_sent(
    State(state): State<AdminState>,
    peer: Option<Extension<PeerIdentity>>,
    Path(id): Path<String>,
) -> Result<Json<LetterSent>, ApiError> {
    let by = actor(&peer);
    authorize(&state, peer)?;
    state.center.letter_sent(&id, &by).await.map_err(crate::members::member_api_error)?;
    Ok(Json(LetterSent { letter_id: id, sent: true }))
}

/// Links a card to a registered member (#12): from then on a purchase by it
/// needs the member's signed payment instruction.
async fn card_member(
    State(state): State<AdminState>,
    peer: Option<Extension<PeerIdentity>>,
    Path(id): Path<String>,
    Body(b): Body<LinkCardMember>,
) -> Result<Json<CardMemberLinked>, ApiError> {
    let by = actor(&peer);
    authorize(&state, peer)?;
    let card = CardId::parse(&id).map_err(|e| bad(ErrorCode::BadCardId, e))?;
    if let Some(member) = &b.member {
        let found = state.center.db.member(member).await.map_err(internal)?;
        if found.is_none_or(|m| m.status != "active") {
            return Err(ApiError::new(
                ErrorCode::UnknownMember,
                format!("no active member {}", member.chars().take(40).collect::<String>()),
            ));
        }
    }
    let linked = {
        let after = serde_json::json!({ "member": b.member, "instruction_required": b.instruction_required });
        let trail = by.did("card_member", &card.to_string(), serde_json::Value::Null, after);
        let now = state.center.clock.now();
        state
            .center
            .db
            .link_card_member(&card, b.member.as_deref(), b.instruction_required, now, trail)
            .await
            .map_err(internal)?
    };
    if !linked {
        if state.center.db.card(&card).await.map_err(internal)?.is_some() {
            return Err(ApiError::new(
                ErrorCode::CardNotActive,
                format!("card {card} is lost or blocked: its member stays the one it was reported with"),
            ));
        }
        return Err(ApiError::new(ErrorCode::UnknownCard, format!("card {card} is not registered")));
    }
    Ok(Json(CardMemberLinked {
        card_id: card.to_string(),
        member: b.member,
        instruction_required: b.instruction_required,
    }))
}

/// A member's key reported lost: revoked; a new letter waits in the outbox.
async fn revoke_member(
    State(state): State<AdminState>,
    peer: Option<Extension<PeerIdentity>>,
    Path(id): Path<String>,
    Body(b): Body<RevokeMember>,
) -> Result<Json<Approved>, ApiError> {
    let by = actor(&peer);
    authorize(&state, peer)?;
    let revoked = state.center.revoke_member(&id, &b.reason, &by).await.map_err(crate::members::member_api_error)?;
    Ok(Json(revoked))
}

/// The fundings in a status: `awaiting` (transfers and cash not yet
/// received), `counted` (cash waiting for a second operator), …
async fn list_fundings(
    State(state): State<AdminState>,
    Params(q): Params<FundingFilter>,
) -> Result<Json<FundingList>, ApiError> {
    let status = crate::prepaid::FundingStatus::parse(&q.status).ok_or_else(|| {
        bad(ErrorCode::BadStatus, format!("no funding status {:?}", q.status.chars().take(32).collect::<String>()))
    })?;
    let fundings = state.center.fundings_in(status).await.map_err(crate::prepaid_api::prepaid_api_error)?;
    Ok(Json(FundingList { fundings }))
}

/// Cash received by registered mail for a funding (FIG. 15), counted by
/// the operator whose certificate makes this request.
async fn record_cash(
    State(state): State<AdminState>,
    peer: Option<Extension<PeerIdentity>>,
    Path(id): Path<String>,
    Body(b): Body<RecordCash>,
) -> Result<Json<Funding>, ApiError> {
    let by = actor(&peer);
    let f = state.center.record_cash(&id, b.amount, &by).await.map_err(crate::prepaid_api::prepaid_api_error)?;
    Ok(Json(f))
}

/// The bank credits in a status: `suspense` (the queue), `review`
/// (reversals), `matched`, `applied`, `returned`.
async fn list_bank_credits(
    State(state): State<AdminState>,
    Params(q): Params<BankCreditFilter>,
) -> Result<Json<BankCreditList>, ApiError> {
    if BankCreditStatus::parse(&q.status).is_none() {
        return Err(bad(ErrorCode::BadStatus, "status is suspense, review, matched, applied or returned"));
    }
    let credits = state.center.bank_credits_in(&q.status).await.map_err(crate::prepaid_api::prepaid_api_error)?;
    Ok(Json(BankCreditList { bank_credits: credits }))
}

/// A credit in suspense sent back by the operator to whoever paid it.
async fn return_bank_credit(
    State(state): State<AdminState>,
    peer: Option<Extension<PeerIdentity>>,
    Body(b): Body<ReturnBankCredit>,
) -> Result<Json<BankCredit>, ApiError> {
    // Money leaves the pool: the admin's certificate only, not every
    // operator's (the console asks the approver role of its own).
    if peer.as_ref().and_then(|Extension(p)| p.acting_as(Party::Operator)) != Some(&*state.admin_name) {
        return Err(ApiError::new(ErrorCode::NotAdmin, "returning a credit takes the admin's certificate"));
    }
    let given = GiveReason { reason: b.reason };
    let credit = state
        .center
        .return_suspense(&b.entry_key, reason_of(&given)?, &actor(&peer))
        .await
        .map_err(crate::prepaid_api::prepaid_api_error)?;
    Ok(Json(credit))
}

/// A credit in suspense applied by the operator to a funding awaiting it.
async fn apply_bank_credit(
    State(state): State<AdminState>,
    peer: Option<Extension<PeerIdentity>>,
    Body(b): Body<ApplyBankCredit>,
) -> Result<Json<Funding>, ApiError> {
    let by = actor(&peer);
    let f = state
        .center
        .apply_suspense(&b.entry_key, &b.funding_id, &by)
        .await
        .map_err(crate::prepaid_api::prepaid_api_error)?;
    Ok(Json(f))
}
