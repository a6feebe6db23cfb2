//! Every route of the center, as the OpenAPI document describes it
//! ([`crate::openapi`]); a test of the center holds its router to this
//! table, both ways.

// An entry ends `..Operation::DEFAULT` even where it sets every field, so
// every entry reads the same.
#![allow(clippy::needless_update)]

use crate::openapi::{Body, In, JSON, Method, Operation, Param, Reply, Security, Shape, of, query};
use crate::{admin, formats, reply, request, views};

/// A settlement's id in the path.
const SETTLEMENT: &[Param] = &[path_id(of::<formats::SettlementId>)];
/// A value update's id in the path.
const UPDATE: &[Param] = &[path_id(of::<formats::UpdateId>)];
/// A statement's id in the path.
const STATEMENT: &[Param] = &[path_id(of::<formats::StatementId>)];
/// An IC card's id in the path.
const CARD: &[Param] = &[path_id(of::<formats::CardId>)];
/// A store's id in the path.
const STORE: &[Param] = &[path_id(of::<formats::StoreId>)];
/// An owed item's id in the path.
const OWED: &[Param] = &[path_id(of::<formats::OwedId>)];
/// A member's number in the path.
const MEMBER: &[Param] = &[path_id(of::<formats::MemberId>)];
/// A funding's id in the path.
const FUNDING: &[Param] = &[path_id(of::<formats::FundingId>)];
/// An application's or a letter's id in the path.
const RECORD: &[Param] = &[path_id(of::<formats::RecordName>)];

const fn path_id(schema: Shape) -> Param {
    Param { name: "id", location: In::Path, required: true, description: None, schema }
}

/// The card's relayed answers.
const ANSWERS: Option<Body> = Some(Body { required: true, schema: of::<request::Answers> });

const STEP_REPLY: Reply = Reply { status: 200, description: "step reply", media: JSON, schema: of::<reply::StepReply> };
const UPDATE_REPLY: Reply =
    Reply { status: 200, description: "value update reply", media: JSON, schema: of::<reply::UpdateReply> };
const STATEMENT_REPLY: Reply =
    Reply { status: 200, description: "statement reply", media: JSON, schema: of::<reply::StatementReply> };
/// A card's id in the path, named `card_id`.
const CARD_ID: &[Param] =
    &[Param { name: "card_id", location: In::Path, required: true, description: None, schema: of::<formats::CardId> }];
/// A token session's id in the path.
const TOKEN_SESSION: &[Param] = &[path_id(of::<formats::TokenSessionId>)];
const TOKEN_SESSION_REPLY: Reply =
    Reply { status: 200, description: "token session reply", media: JSON, schema: of::<reply::TokenSessionReply> };

/// A step of a settlement, a value update or a statement: a POST on its id,
/// with its access token and an Idempotency-Key.
const fn step(
    path: &'static str,
    summary: &'static str,
    params: &'static [Param],
    body: Option<Body>,
    reply: Reply,
    refusals: &'static [u16],
) -> Operation {
    Operation {
        method: Method::Post,
        path,
        summary,
        security: &[Security::AccessToken],
        idempotent: true,
        params,
        body,
        reply,
        refusals,
        ..Operation::DEFAULT
    }
}

/// Every operation, in the order the document lists them.
pub const OPERATIONS: &[Operation] = &[
    Operation {
        method: Method::Post,
        path: "/v1/settlements",
        summary: "Open a settlement for a signed bill (SIG1) and a card with the card's answer to the wallet's INITIALIZE UPDATE (PROTOCOL §5): in the offer profile EXTERNAL AUTHENTICATE and the sealed READ BALANCE; in confirmed and direct EXTERNAL AUTHENTICATE, (READ BALANCE,) the sealed DEBIT",
        idempotent: true,
        body: Some(Body { required: true, schema: of::<request::CreateSettlement> }),
        reply: STEP_REPLY,
        refusals: &[400, 403, 404, 409, 413, 422, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Get,
        path: "/v1/settlements/{id}",
        summary: "A settlement's state",
        security: &[Security::AccessToken, Security::StoreCertificate],
        params: SETTLEMENT,
        reply: Reply { status: 200, description: "settlement", media: JSON, schema: of::<views::SettlementView> },
        refusals: &[404, 429, 500, 503],
        ..Operation::DEFAULT
    },
    step(
        "/v1/settlements/{id}/balance",
        "Sealed balance; returns the offer (SIG2) and the sealed DEBIT, or voided",
        SETTLEMENT,
        Some(Body { required: true, schema: of::<request::BalanceAnswers> }),
        STEP_REPLY,
        &[400, 402, 403, 404, 409, 413, 422, 429, 500, 503],
    ),
    step(
        "/v1/settlements/{id}/complete",
        "The card's answers to the commands not yet answered (offer: the DEBIT's; confirmed: EXTERNAL AUTHENTICATE's, READ BALANCE's and the DEBIT's; direct: EXTERNAL AUTHENTICATE's and the DEBIT's); returns the completion (SIG3)",
        SETTLEMENT,
        ANSWERS,
        STEP_REPLY,
        &[400, 402, 403, 404, 409, 413, 422, 429, 500, 503],
    ),
    step(
        "/v1/settlements/{id}/recover/authenticate",
        "Card cryptogram; returns EXTERNAL AUTHENTICATE and sealed TRANSACTION STATUS",
        SETTLEMENT,
        ANSWERS,
        STEP_REPLY,
        &[400, 402, 403, 404, 409, 413, 422, 429, 500, 503],
    ),
    step(
        "/v1/settlements/{id}/recover/status",
        "Completed (SIG3), or a sealed READ BALANCE to decide",
        SETTLEMENT,
        ANSWERS,
        STEP_REPLY,
        &[400, 402, 403, 404, 409, 413, 422, 429, 500, 503],
    ),
    step(
        "/v1/settlements/{id}/recover/balance",
        "Voided if the card provably never applied the DEBIT",
        SETTLEMENT,
        ANSWERS,
        STEP_REPLY,
        &[400, 402, 403, 404, 409, 413, 422, 429, 500, 503],
    ),
    Operation {
        description: Some("Takes no request body (any body is ignored)."),
        ..step(
            "/v1/settlements/{id}/cancel",
            "Cancel before the DEBIT exists",
            SETTLEMENT,
            None,
            STEP_REPLY,
            &[400, 403, 404, 409, 413, 422, 429, 500, 503],
        )
    },
    Operation {
        description: Some(
            "From reading_balance, before anything of the purchase is sealed; 409 token_not_redeemable for a token not on the card, not the card's member's, expired, below the bill or chosen for another settlement; 403 instruction_required or instruction_refused for a member's card without its member's instruction. The settlement is then paying_by_token: the token's redemption in a token session completes it.",
        ),
        ..step(
            "/v1/settlements/{id}/token",
            "Pay the bill with a bank deposit token on the card instead of its balance (#21)",
            SETTLEMENT,
            Some(Body { required: true, schema: of::<request::PayByToken> }),
            STEP_REPLY,
            &[400, 403, 404, 409, 413, 415, 422, 429, 500, 503],
        )
    },
    Operation {
        description: Some("Takes no request body (any body is ignored)."),
        ..step(
            "/v1/settlements/{id}/recover",
            "Begin a new session to ask the card what happened",
            SETTLEMENT,
            None,
            STEP_REPLY,
            &[400, 403, 404, 409, 413, 422, 429, 500, 503],
        )
    },
    Operation {
        method: Method::Get,
        path: "/v1/settlements/{id}/receipt",
        summary: "The store's receipt (SIG4) once delivered",
        description: Some("404 receipt_not_yet until the store has sent it."),
        security: &[Security::AccessToken, Security::StoreCertificate],
        params: SETTLEMENT,
        reply: Reply { status: 200, description: "the receipt (SIG4)", media: JSON, schema: of::<views::Receipt> },
        refusals: &[404, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/cards/{card_id}/statements",
        summary: "Open a statement session: the card's own log, read through a secure channel; returns INITIALIZE UPDATE",
        description: Some("Takes no request body (any body is ignored)."),
        idempotent: true,
        params: CARD_ID,
        reply: STATEMENT_REPLY,
        refusals: &[400, 403, 404, 409, 413, 422, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        description: Some("The card's answer to INITIALIZE UPDATE first (400 wrong_answer_count without one)."),
        ..step(
            "/v1/statements/{id}/authenticate",
            "Card cryptogram; returns EXTERNAL AUTHENTICATE and the sealed log reads",
            STATEMENT,
            ANSWERS,
            STATEMENT_REPLY,
            &[400, 403, 404, 409, 413, 422, 429, 500, 503],
        )
    },
    step(
        "/v1/statements/{id}/read",
        "The sealed log records; returns the entries (phase done)",
        STATEMENT,
        ANSWERS,
        STATEMENT_REPLY,
        &[400, 403, 404, 409, 413, 422, 429, 500, 503],
    ),
    Operation {
        method: Method::Post,
        path: "/v1/cards/{card_id}/token-sessions",
        summary: "Open a token session (#21): the card's issued deposit tokens stored on it, or one redeemed for value owed to the card, through a secure channel; returns INITIALIZE UPDATE",
        description: Some(
            "Without a body, or with `{}`, the session stores; with `{\"redeem\": token id}` it redeems that token; with `{\"list\": true}` it reads the card's token table.",
        ),
        idempotent: true,
        params: CARD_ID,
        body: Some(Body { required: false, schema: of::<request::TokenSessionCreate> }),
        reply: TOKEN_SESSION_REPLY,
        refusals: &[400, 403, 404, 409, 413, 415, 422, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        description: Some(
            "The card's answer to INITIALIZE UPDATE first (400 wrong_answer_count without one); 409 token_not_redeemable for a token redeemed, expired or not the card's.",
        ),
        ..step(
            "/v1/token-sessions/{id}/authenticate",
            "Card cryptogram; returns EXTERNAL AUTHENTICATE, the log commands and the sealed token commands (STORE TOKEN per token issued to the card, or the REDEEM TOKEN)",
            TOKEN_SESSION,
            ANSWERS,
            TOKEN_SESSION_REPLY,
            &[400, 403, 404, 409, 413, 422, 429, 500, 503],
        )
    },
    step(
        "/v1/token-sessions/{id}/finish",
        "The batch's answers; returns the tokens the card proved it holds, the token redeemed (with the settlement whose bill it paid, and the item owed to the card), and what was refused (phase done)",
        TOKEN_SESSION,
        ANSWERS,
        TOKEN_SESSION_REPLY,
        &[400, 403, 404, 409, 413, 422, 429, 500, 503],
    ),
    Operation {
        method: Method::Get,
        path: "/.well-known/jwks.json",
        summary: "The center's public keys (JWKS, Ed25519)",
        reply: Reply { status: 200, description: "JWKS", media: JSON, schema: of::<formats::JwkSet> },
        refusals: &[429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Get,
        path: "/v1/openapi.json",
        summary: "This document",
        reply: Reply { status: 200, description: "OpenAPI 3.1", media: JSON, schema: of::<formats::Document> },
        refusals: &[429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/charges",
        summary: "Charge a card (value update) paid by credit card: limits (amount_out_of_range, over_max_balance, over_daily_limit), then the authorization (card_declined, insufficient_funds, expired_card, processing_error, invalid_card_number, invalid_expiry, invalid_cvc); returns INITIALIZE UPDATE. Card data is never stored.",
        idempotent: true,
        body: Some(Body { required: true, schema: of::<request::CreateCharge> }),
        reply: UPDATE_REPLY,
        refusals: &[400, 402, 403, 404, 409, 413, 422, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Get,
        path: "/v1/value-updates/{id}",
        summary: "The charge as it stands",
        alias: Some("/v1/charges/{id}"),
        security: &[Security::AccessToken],
        params: UPDATE,
        reply: Reply { status: 200, description: "value update", media: JSON, schema: of::<reply::UpdateReply> },
        refusals: &[404, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        alias: Some("/v1/charges/{id}/authenticate"),
        ..step(
            "/v1/value-updates/{id}/authenticate",
            "INITIALIZE UPDATE's answer; returns EXTERNAL AUTHENTICATE + sealed READ BALANCE",
            UPDATE,
            Some(Body { required: true, schema: of::<request::ChargeAuthenticate> }),
            UPDATE_REPLY,
            &[400, 402, 403, 404, 409, 413, 422, 429, 500, 503],
        )
    },
    Operation {
        alias: Some("/v1/charges/{id}/balance"),
        ..step(
            "/v1/value-updates/{id}/balance",
            "Both answers; returns the value update (SIG5) and the sealed CREDIT, or voided (over_max_balance)",
            UPDATE,
            ANSWERS,
            UPDATE_REPLY,
            &[400, 402, 403, 404, 409, 413, 422, 429, 500, 503],
        )
    },
    Operation {
        alias: Some("/v1/charges/{id}/complete"),
        ..step(
            "/v1/value-updates/{id}/complete",
            "The card's sealed CREDIT answer; captures the authorization and posts the transfer",
            UPDATE,
            ANSWERS,
            UPDATE_REPLY,
            &[400, 402, 403, 404, 409, 413, 422, 429, 500, 503],
        )
    },
    Operation {
        alias: Some("/v1/charges/{id}/recover/authenticate"),
        ..step(
            "/v1/value-updates/{id}/recover/authenticate",
            "Returns EXTERNAL AUTHENTICATE + sealed TRANSACTION STATUS",
            UPDATE,
            ANSWERS,
            UPDATE_REPLY,
            &[400, 402, 403, 404, 409, 413, 422, 429, 500, 503],
        )
    },
    Operation {
        alias: Some("/v1/charges/{id}/recover/status"),
        ..step(
            "/v1/value-updates/{id}/recover/status",
            "Completed (captured, posted) or recovering_balance + sealed READ BALANCE",
            UPDATE,
            ANSWERS,
            UPDATE_REPLY,
            &[400, 402, 403, 404, 409, 413, 422, 429, 500, 503],
        )
    },
    Operation {
        alias: Some("/v1/charges/{id}/recover/balance"),
        ..step(
            "/v1/value-updates/{id}/recover/balance",
            "Voided (authorization and hold voided) if provably not applied",
            UPDATE,
            ANSWERS,
            UPDATE_REPLY,
            &[400, 402, 403, 404, 409, 413, 422, 429, 500, 503],
        )
    },
    Operation {
        description: Some("Takes no request body (any body is ignored)."),
        alias: Some("/v1/charges/{id}/cancel"),
        ..step(
            "/v1/value-updates/{id}/cancel",
            "Void before any CREDIT exists (the authorization is voided)",
            UPDATE,
            None,
            UPDATE_REPLY,
            &[400, 402, 403, 404, 409, 413, 422, 429, 500, 503],
        )
    },
    Operation {
        description: Some("Takes no request body (any body is ignored)."),
        alias: Some("/v1/charges/{id}/recover"),
        ..step(
            "/v1/value-updates/{id}/recover",
            "INITIALIZE UPDATE of a new session to ask the card",
            UPDATE,
            None,
            UPDATE_REPLY,
            &[400, 402, 403, 404, 409, 413, 422, 429, 500, 503],
        )
    },
    Operation {
        method: Method::Post,
        path: "/v1/decreases",
        summary: "Decrease: card value back to the credit card of a completed charge, by a sealed DEBIT with SIG5 (direction debit). Refused: over_charge (the decreases of a charge never pass it), not_decreasable. Returns INITIALIZE UPDATE; then the /v1/value-updates/{id}/... steps. The credit card is refunded only when the card confirms.",
        idempotent: true,
        body: Some(Body { required: true, schema: of::<request::CreateDecrease> }),
        reply: UPDATE_REPLY,
        refusals: &[400, 403, 404, 409, 413, 422, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/refunds",
        summary: "A store's signed refund of a completed purchase (full or partial). Idempotent by the store's refund id. Refused: over_refund (refunds never sum past the purchase), not_refundable, unknown_settlement, refund_invalid/refund_expired/refund_unknown_key/refund_bad_signature, refund_id_in_use. The store's payable is reversed at once; the card is credited at its next presentation.",
        idempotent: true,
        body: Some(Body { required: true, schema: of::<request::SubmitRefund> }),
        reply: Reply { status: 200, description: "refund recorded", media: JSON, schema: of::<views::OwedReply> },
        refusals: &[400, 403, 404, 409, 413, 422, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/cards/{id}/owed/apply",
        summary: "The card is presented: open a value update for its oldest owed item (purchase refund: credit; correction: debit), or hand back the one already applying it. Answers an UpdateReply to drive through /v1/value-updates/{id}/..., or {\"nothing_owed\": true}.",
        description: Some("The body may be empty, {} or {\"credits_only\": true}."),
        idempotent: true,
        params: CARD,
        body: Some(Body { required: false, schema: of::<request::OwedApply> }),
        reply: Reply {
            status: 200,
            description: "value update reply, or nothing owed",
            media: JSON,
            schema: of::<views::OwedApplied>,
        },
        refusals: &[400, 403, 404, 409, 413, 422, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/admin/stores",
        summary: "Register or update a store and its keys (admin certificate)",
        body: Some(Body { required: true, schema: of::<admin::RegisterStore> }),
        reply: Reply { status: 200, description: "registered", media: JSON, schema: of::<admin::StoreRegistered> },
        refusals: &[400, 401, 403, 413, 415, 422, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/admin/stores/{id}/keys/{kid}/revoke",
        summary: "Revoke one of a store's keys: bills and refunds it signs are refused from then on (admin certificate)",
        description: Some(
            "Takes no request body. 404 unknown_key when the store has no such key (another store's key included).",
        ),
        params: &[
            path_id(of::<formats::StoreId>),
            Param { name: "kid", location: In::Path, required: true, description: None, schema: of::<formats::Kid> },
        ],
        reply: Reply { status: 200, description: "revoked", media: JSON, schema: of::<admin::KeyRevoked> },
        refusals: &[400, 401, 403, 404, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/admin/cards",
        summary: "Register an issued card (admin certificate)",
        description: Some("409 card_exists when the card id is already issued."),
        body: Some(Body { required: true, schema: of::<admin::RegisterCard> }),
        reply: Reply { status: 201, description: "registered", media: JSON, schema: of::<admin::CardState> },
        refusals: &[400, 401, 403, 409, 413, 415, 422, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/admin/cards/{id}/status",
        summary: "Block a card or report it lost, with a reason (admin certificate)",
        description: Some("409 card_lost: lost is final."),
        params: CARD,
        body: Some(Body { required: true, schema: of::<admin::ChangeCardStatus> }),
        reply: Reply { status: 200, description: "updated", media: JSON, schema: of::<admin::CardState> },
        refusals: &[400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Get,
        path: "/v1/admin/settlements",
        summary: "List settlements, newest first, a page at a time (admin certificate)",
        query: Some(query::<admin::SettlementFilter>),
        reply: Reply {
            status: 200,
            description: "settlements, newest first",
            media: JSON,
            schema: of::<admin::SettlementPage>,
        },
        refusals: &[400, 401, 403, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/admin/settlements/{id}/void-lost",
        summary: "Void a pending settlement of a card reported lost, past its deadline (admin certificate)",
        params: SETTLEMENT,
        body: Some(Body { required: true, schema: of::<admin::GiveReason> }),
        reply: Reply { status: 200, description: "voided", media: JSON, schema: of::<admin::SettlementVoided> },
        refusals: &[400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/admin/cards/{id}/corrections",
        summary: "Admin: a correction (value taken off the card at its next presentation), held on the card's float at once. Idempotent by reference. Refused over the float (over_float).",
        params: CARD,
        body: Some(Body { required: true, schema: of::<admin::AddCorrection> }),
        reply: Reply { status: 200, description: "ok", media: JSON, schema: of::<views::OwedReply> },
        refusals: &[400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Get,
        path: "/v1/admin/cards/{id}/owed",
        summary: "Admin: what the card is owed or owes, not yet applied.",
        params: CARD,
        reply: Reply { status: 200, description: "ok", media: JSON, schema: of::<admin::OwedList> },
        refusals: &[400, 401, 403, 404, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Get,
        path: "/v1/admin/cards/{id}/story",
        summary: "Admin: a card's whole story (#22): registry, member, books, newest settlements and value updates, what is owed, its log as last collected",
        description: Some(
            "At most 100 rows of each list, newest first; settlements_next continues the settlements in GET /v1/admin/settlements?card=…&after=. books is null for a card the books never opened. 404 unknown_card for a card not registered.",
        ),
        params: CARD,
        reply: Reply { status: 200, description: "the card's story", media: JSON, schema: of::<admin::CardStory> },
        refusals: &[400, 401, 403, 404, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/admin/owed/{id}/cancel",
        summary: "Admin: cancel a correction no session is applying; its hold is voided (not_cancellable otherwise).",
        description: Some("Takes no request body."),
        params: OWED,
        reply: Reply { status: 200, description: "ok", media: JSON, schema: of::<views::OwedReply> },
        refusals: &[400, 401, 403, 404, 409, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Get,
        path: "/healthz",
        summary: "Alive while the process runs",
        reply: Reply {
            status: 200,
            description: "alive",
            media: "text/plain; charset=utf-8",
            schema: of::<formats::Alive>,
        },
        refusals: &[],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Get,
        path: "/readyz",
        summary: "Ready to serve",
        description: Some(
            "Checked every 2 s: the center's database and the ledger answer (on SQLite, their writer threads run).",
        ),
        reply: Reply {
            status: 200,
            description: "ready",
            media: "text/plain; charset=utf-8",
            schema: of::<formats::Ready>,
        },
        refusals: &[503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Get,
        path: "/metrics",
        summary: "Prometheus metrics (OpenMetrics text). They tell business volumes, so they answer only a client certificate of the deployment's CA: 401 client_certificate_required otherwise.",
        reply: Reply {
            status: 200,
            description: "OpenMetrics text",
            media: "application/openmetrics-text; version=1.0.0; charset=utf-8",
            schema: of::<formats::OpenMetrics>,
        },
        refusals: &[401],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/admin/cards/{id}/replace",
        summary: "Admin: replace a lost or blocked card (M8): its value and the refunds still owed to it go to the replacement, credited at its next presentation. 409 not_replaceable while anything is in flight on it, for an active card, or if the replacement cannot hold it all.",
        params: CARD,
        body: Some(Body { required: true, schema: of::<admin::ReplaceCard> }),
        reply: Reply { status: 200, description: "ok", media: JSON, schema: of::<views::Replaced> },
        refusals: &[400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Get,
        path: "/v1/stores/{id}/jwks.json",
        summary: "The keys the center holds for a store (registered by the operator, not revoked, with their validity windows): what a wallet checks the store's receipt (SIG4) against (M3). An unknown store has none.",
        params: STORE,
        reply: Reply { status: 200, description: "JWKS", media: JSON, schema: of::<formats::JwkSet> },
        refusals: &[429, 500, 503, 400],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/members/applications",
        summary: "An application to become a member (FIG. 3-4 steps 1-5): answered with its application number; the member number and activation code follow out of band once the operator approves.",
        idempotent: true,
        body: Some(Body { required: true, schema: of::<request::MemberApplication> }),
        reply: Reply { status: 200, description: "received", media: JSON, schema: of::<views::ApplicationReply> },
        refusals: &[400, 409, 413, 422, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Get,
        path: "/v1/members/encryption-key",
        summary: "The center's X25519 key members encrypt their registration to.",
        reply: Reply { status: 200, description: "the key", media: JSON, schema: of::<formats::X25519Jwk> },
        refusals: &[429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/members/registrations",
        summary: "A member's registration (step 7), encrypted and signed with the key it registers. Refused: not_encrypted, bad_registration, activation_refused (an unknown member number and a wrong code alike), activation_code_expired, activation_code_used, kind_mismatch, already_registered.",
        idempotent: true,
        body: Some(Body { required: true, schema: of::<request::SubmitRegistration> }),
        reply: Reply {
            status: 200,
            description: "entered in the member ledger",
            media: JSON,
            schema: of::<views::MemberReply>,
        },
        refusals: &[400, 403, 409, 413, 422, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Get,
        path: "/v1/admin/applications",
        summary: "Admin: applications in a status (received by default).",
        query: Some(query::<admin::ApplicationFilter>),
        reply: Reply {
            status: 200,
            description: "applications, oldest first",
            media: JSON,
            schema: of::<admin::ApplicationList>,
        },
        refusals: &[400, 401, 403, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/admin/applications/{id}/approve",
        summary: "Admin: approve an application; the member number and activation code go to the outbox letter (never in this answer). 409 not_received if it was approved already.",
        description: Some("Takes no request body."),
        params: RECORD,
        reply: Reply { status: 200, description: "approved", media: JSON, schema: of::<admin::Approved> },
        refusals: &[400, 401, 403, 404, 409, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/admin/applications/{id}/reject",
        summary: "Admin: reject a received application with a reason (#22 work queue); no member number or letter is made. 409 not_received once decided.",
        params: RECORD,
        body: Some(Body { required: true, schema: of::<admin::GiveReason> }),
        reply: Reply { status: 200, description: "rejected", media: JSON, schema: of::<admin::Rejected> },
        refusals: &[400, 401, 403, 404, 409, 429, 500, 503, 415],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Get,
        path: "/v1/admin/outbox",
        summary: "Admin: the letters to print or mail (member number, activation code, expiry), until marked sent.",
        reply: Reply { status: 200, description: "unsent letters", media: JSON, schema: of::<admin::Outbox> },
        refusals: &[400, 401, 403, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/admin/outbox/{id}/sent",
        summary: "Admin: the letter was sent; its text, with the code, is wiped. 404 unknown_letter if there is no such unsent letter.",
        description: Some("Takes no request body."),
        params: RECORD,
        reply: Reply { status: 200, description: "marked sent", media: JSON, schema: of::<admin::LetterSent> },
        refusals: &[400, 401, 403, 404, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/admin/cards/{id}/member",
        summary: "Admin: link a card to a registered, active member (or unlink it with null): its purchases then need the member's signed payment instruction unless instruction_required is false. 404 unknown_member, unknown_card.",
        params: CARD,
        body: Some(Body { required: true, schema: of::<admin::LinkCardMember> }),
        reply: Reply { status: 200, description: "linked", media: JSON, schema: of::<admin::CardMemberLinked> },
        refusals: &[400, 401, 403, 404, 413, 415, 422, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/members/key-replacements",
        summary: "A member replaces its key: a JWS kessai-key-replacement+jwt signed with the current key, carrying the new key and the new key's signature over what it replaces. The current key is retired. Refused: replacement_refused (a replay, a stranger's signature, a retired key), unknown_member (none active).",
        idempotent: true,
        body: Some(Body { required: true, schema: of::<request::SubmitKeyReplacement> }),
        reply: Reply {
            status: 200,
            description: "entered in the member ledger",
            media: JSON,
            schema: of::<views::MemberReply>,
        },
        refusals: &[400, 403, 409, 413, 422, 429, 500, 503, 404],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/admin/members/{id}/revoke",
        summary: "Admin: a member's key reported lost: revoked at once, and a new letter with a new activation code waits in the outbox (earlier unused letters void). 404 unknown_member.",
        params: MEMBER,
        body: Some(Body { required: true, schema: of::<admin::RevokeMember> }),
        reply: Reply { status: 200, description: "revoked", media: JSON, schema: of::<admin::Approved> },
        refusals: &[400, 401, 403, 404, 413, 415, 422, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Get,
        path: "/v1/admin/members/{id}/story",
        summary: "Admin: a member's whole story (#22): the ledger entry, its letters, its linked IC cards and its virtual prepaid cards with balances, fundings and payments",
        description: Some(
            "Never the member's key, a letter's text or an activation code. 404 unknown_member for a member not in the ledger.",
        ),
        params: MEMBER,
        reply: Reply { status: 200, description: "the member's story", media: JSON, schema: of::<admin::MemberStory> },
        refusals: &[400, 401, 403, 404, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/prepaid/requests",
        summary: "A member's signed prepaid request (kessai-prepaid-request+jwt): open a virtual prepaid card, fund one (credit card: authorized and issued at once; transfer or cash: a reference to quote, issued when the money arrives), inquire (balance and history), or move value onto the member's linked IC card (to_card: a value update run as a charge). Refused: prepaid_request_refused, request_id_reused, unknown_prepaid_card, prepaid_card_closed, currency_mismatch, over_max_balance, amount_over_limit, payment_card_required, card_declined, card_not_members, insufficient_balance.",
        idempotent: true,
        body: Some(Body { required: true, schema: of::<request::SubmitPrepaidRequest> }),
        reply: Reply {
            status: 200,
            description: "the funding, or the member's cards",
            media: JSON,
            schema: of::<views::PrepaidReply>,
        },
        refusals: &[400, 402, 403, 404, 409, 413, 422, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/prepaid/payments",
        summary: "Pays a store's bill (SIG1) from a member's virtual prepaid card on the member's signed payment instruction naming it: the completion (SIG3, delivered to the store as a settlement's) and the new balance. One bill is paid once. Refused: instruction_refused, unknown_prepaid_card, value_expired, insufficient_balance, bill_paid, the bill's codes.",
        idempotent: true,
        body: Some(Body { required: true, schema: of::<request::PrepaidPay> }),
        reply: Reply { status: 200, description: "paid", media: JSON, schema: of::<views::PrepaidPaymentReply> },
        refusals: &[400, 402, 403, 404, 409, 413, 422, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Get,
        path: "/v1/admin/fundings",
        summary: "Admin or operator: prepaid fundings in a status (awaiting, counted, issued, captured, declined, expired), oldest first.",
        query: Some(query::<admin::FundingFilter>),
        reply: Reply { status: 200, description: "fundings", media: JSON, schema: of::<admin::FundingList> },
        refusals: &[400, 401, 403, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/admin/fundings/{id}/cash",
        summary: "Admin or operator: cash received by registered mail for a funding, as this certificate's operator counted it. Above the dual-control limit a second operator must count the same amount: second_operator_required, count_differs. Not a cash funding awaiting money: funding_not_awaiting.",
        params: FUNDING,
        body: Some(Body { required: true, schema: of::<admin::RecordCash> }),
        reply: Reply {
            status: 200,
            description: "the funding as it now stands",
            media: JSON,
            schema: of::<views::Funding>,
        },
        refusals: &[400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Get,
        path: "/v1/admin/bank-credits",
        summary: "Admin or operator: credits read from the pool accounts' statements in a status (suspense: the queue; review: reversals; matched; applied; returned).",
        query: Some(query::<admin::BankCreditFilter>),
        reply: Reply { status: 200, description: "credits", media: JSON, schema: of::<admin::BankCreditList> },
        refusals: &[400, 401, 403, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/admin/bank-credits/apply",
        summary: "Admin or operator: a credit held in suspense applied to a funding of its kind awaiting money; the amount received is issued. Refused: unknown_bank_credit, funding_not_awaiting, unknown_funding.",
        body: Some(Body { required: true, schema: of::<admin::ApplyBankCredit> }),
        reply: Reply { status: 200, description: "the funding, issued", media: JSON, schema: of::<views::Funding> },
        refusals: &[400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/admin/bank-credits/return",
        summary: "The admin only (not another operator's certificate: not_admin): a credit held in suspense sent back to whoever paid it (the reason says how); it leaves the pool it came into and nothing is issued. Refused: unknown_bank_credit (none in suspense by that key), bad_reason.",
        body: Some(Body { required: true, schema: of::<admin::ReturnBankCredit> }),
        reply: Reply { status: 200, description: "the credit, returned", media: JSON, schema: of::<views::BankCredit> },
        refusals: &[400, 401, 403, 404, 413, 415, 422, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Get,
        path: "/v1/payouts",
        summary: "A store's payouts, newest first (at most 500)",
        description: Some(
            "The caller's own (its client certificate's name), or with store= a member store of the caller's mall. Any other store, or no certificate: 404 unknown_store.",
        ),
        security: &[Security::StoreCertificate],
        query: Some(query::<views::PayoutFilter>),
        reply: Reply { status: 200, description: "the payouts", media: JSON, schema: of::<views::PayoutList> },
        refusals: &[400, 404, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Get,
        path: "/v1/payouts/{id}",
        summary: "One payout with every line in it (settlements, refunds, each with its fee)",
        description: Some(
            "Its store's or its store's mall's client certificate only; to anyone else 404 unknown_payout.",
        ),
        security: &[Security::StoreCertificate],
        params: &[path_id(of::<formats::PayoutId>)],
        reply: Reply {
            status: 200,
            description: "the payout and its lines",
            media: JSON,
            schema: of::<views::PayoutStatement>,
        },
        refusals: &[404, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Get,
        path: "/v1/stores/{store}/bills/{bill_id}",
        summary: "What became of a bill the store signed: none, open, voided or paid (L1: the store purges an unpaid order only once nothing can pay its bill)",
        description: Some(
            "The store's or its mall's client certificate only; to anyone else 404 unknown_store. `none`: no settlement and no prepaid payment names the bill; `open`: its settlement is under way and may still complete; `voided`: its one settlement was voided; `paid`: a completed settlement or a prepaid payment paid it.",
        ),
        security: &[Security::StoreCertificate],
        params: &[
            Param {
                name: "store",
                location: In::Path,
                required: true,
                description: None,
                schema: of::<formats::StoreId>,
            },
            Param {
                name: "bill_id",
                location: In::Path,
                required: true,
                description: None,
                schema: of::<formats::BillId>,
            },
        ],
        reply: Reply { status: 200, description: "the bill's state", media: JSON, schema: of::<reply::BillAnswer> },
        refusals: &[400, 404, 429, 500, 503],
        ..Operation::DEFAULT
    },
    Operation {
        method: Method::Post,
        path: "/v1/claims",
        summary: "A store's signed payment claim (代金請求, FIG. 9): each settlement checked against the books; accepted whole with the center's signed statement, or refused whole: claim_differs (naming each settlement that is not open for the payee up to the cutoff, is claimed for more than it comes to after its refunds, or leaves nothing after its fee), claim_id_reused, not_the_payee, claim_refused (does not verify), claim_busy.",
        idempotent: true,
        body: Some(Body { required: true, schema: of::<views::SubmitClaim> }),
        reply: Reply { status: 200, description: "the claim accepted", media: JSON, schema: of::<views::ClaimReply> },
        refusals: &[400, 403, 409, 413, 422, 429, 500, 503],
        ..Operation::DEFAULT
    },
];
