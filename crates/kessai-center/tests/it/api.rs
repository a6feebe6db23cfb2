//! The HTTP API as a wallet sees it: JSON in and out, Idempotency-Key on
//! every POST, one error shape.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::service::{bill_token, register_card, setup};
use crate::world::{balance_of, card_id, funded_card, get, post, relay_json};

fn assert_error_shape(body: &Value, code: &str) {
    let e = &body["error"];
    assert_eq!(e["code"], code, "{body}");
    assert!(e["type"].is_string() && e["message"].is_string(), "{body}");
    assert!(e.as_object().unwrap().contains_key("param"), "{body}");
    assert_eq!(body.as_object().unwrap().len(), 1, "only the error member: {body}");
}

#[tokio::test]
async fn a_purchase_over_the_api_with_idempotent_retries() {
    let mut s = setup().await;
    register_card(&s, 1, 50_000).await;
    let mut card = funded_card(1, 50_000);
    let token = bill_token(&mut s);
    let app = kessai_center::api::routes(Arc::new(s.center));

    let create = create_json(&mut card, &token, 1);
    let (status, r) = post(&app, "/v1/settlements", Some("k-create"), create.clone()).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["phase"], "reading_balance");
    // The same request again under the same key: the same answer, byte for byte.
    let (_, again) = post(&app, "/v1/settlements", Some("k-create"), create).await;
    assert_eq!(again, r);
    let id = r["settlement_id"].as_str().unwrap().to_owned();

    let (_, r) = post(&app, &format!("/v1/settlements/{id}/balance"), Some("k-bal"), relay_json(&mut card, &r)).await;
    assert_eq!(r["phase"], "offered", "{r}");
    assert_eq!(r["balance_minor"], 50_000);
    assert!(r["offer"].is_string());
    let answers = relay_json(&mut card, &r);
    let path = format!("/v1/settlements/{id}/complete");
    let (status, done) = post(&app, &path, Some("k-done"), answers.clone()).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["phase"], "completed");
    // M4: SIG3, which the store receives, names the card by the store's
    // pseudonym for it, never by its id.
    let (_, sig3) = kessai_core::jws::inspect_unverified(done["completion"].as_str().unwrap()).unwrap();
    let completion = &sig3["completion"];
    assert!(completion.get("card_id").is_none(), "{completion}");
    let card_ref = completion["card_ref"].as_str().unwrap();
    assert_eq!(card_ref.len(), 22);
    assert!(!card_ref.contains(&card_id(1).to_string()));
    // A wallet that lost the answer retries with its key and gets the same.
    let (_, retry) = post(&app, &path, Some("k-done"), answers.clone()).await;
    assert_eq!(retry, done);
    // Without the key's protection, the step is out of order.
    let (status, body) = post(&app, &path, Some("k-other"), answers).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error_shape(&body, "step_out_of_order");
    assert_eq!(balance_of(&mut card), 50_000 - 11_360);

    let (_, view) = get(&app, &format!("/v1/settlements/{id}")).await;
    assert_eq!(view["phase"], "completed");
    assert_eq!(view["amount"]["amount_minor"], 11_360);
}

#[tokio::test]
async fn refusals_use_one_error_shape() {
    let mut s = setup().await;
    register_card(&s, 2, 50_000).await;
    let token = bill_token(&mut s);
    let strangers_bill = bill_token(&mut s);
    let app = kessai_center::api::routes(Arc::new(s.center));
    let mut card = funded_card(2, 50_000);
    let create = create_json(&mut card, &token, 2);

    let (status, body) = post(&app, "/v1/settlements", None, create.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error_shape(&body, "idempotency_key_required");
    let bad_card = json!({ "bill": token, "card_id": "zz", "initialize_update": "9000" });
    let (status, body) = post(&app, "/v1/settlements", Some("k1"), bad_card).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error_shape(&body, "bad_card_id");
    let (_, body) = post(&app, "/v1/settlements", Some("k1"), create.clone()).await;
    assert_error_shape(&body, "idempotency_key_reused");
    let bad_bill = json!({ "bill": "x.y.z", "card_id": card_id(2).to_string(), "initialize_update": "9000" });
    let (status, body) = post(&app, "/v1/settlements", Some("k2"), bad_bill).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error_shape(&body, "bill_invalid");
    let (status, body) = post(&app, "/v1/settlements", Some("k4"), json!({ "bill": token })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error_shape(&body, "bad_json");
    let (status, body) =
        post(&app, "/v1/settlements/stl_nope/complete", Some("k5"), json!({ "responses": ["9000"] })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error_shape(&body, "unknown_settlement");
    for (key, answer, code) in [("k7", "zz", "bad_apdu"), ("k8", "6982", "card_refused")] {
        let bad = json!({ "bill": token, "card_id": card_id(2).to_string(), "initialize_update": answer });
        let (status, body) = post(&app, "/v1/settlements", Some(key), bad).await;
        assert_eq!(status, if code == "bad_apdu" { StatusCode::BAD_REQUEST } else { StatusCode::UNPROCESSABLE_ENTITY });
        assert_error_shape(&body, code);
    }
    // A card id nobody registered is answered like a known one (M4): an
    // opening no card gave is refused alike for both, and a genuine card
    // the registry does not list only after it proved itself.
    let bogus = "00000000000000000000000000000000000000000000000000000000009000";
    let refusal = |card: u8, key: &'static str| {
        let (app, token) = (&app, &token);
        let body = json!({ "bill": token, "card_id": card_id(card).to_string(), "initialize_update": bogus });
        async move { post(app, "/v1/settlements", Some(key), body).await }
    };
    let (known_status, known_body) = refusal(2, "k9").await;
    let (unknown_status, unknown_body) = refusal(7, "k10").await;
    assert_eq!(unknown_status, known_status);
    assert_eq!(unknown_body["error"]["code"], known_body["error"]["code"], "{unknown_body} {known_body}");
    let mut unlisted = funded_card(7, 50_000);
    let (status, body) =
        post(&app, "/v1/settlements", Some("k11"), create_json(&mut unlisted, &strangers_bill, 7)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_error_shape(&body, "unknown_card");
    let (status, r) = post(&app, "/v1/settlements", Some("k6"), create).await;
    assert_eq!(status, StatusCode::OK, "{r}");
}

/// A wallet's create in the `offer` profile: the bill, the card, and the
/// card's answer to the INITIALIZE UPDATE under the bill's challenge.
fn create_json(card: &mut kessai_card::terminal::Terminal<crate::world::CardReader>, bill: &str, n: u8) -> Value {
    let opening = crate::world::opening(card, bill, card_id(n));
    json!({ "bill": bill, "card_id": card_id(n).to_string(), "initialize_update": hex::encode(opening.to_bytes()) })
}

#[tokio::test]
async fn the_openapi_document_describes_every_wallet_route() {
    let s = setup().await;
    let app = kessai_center::api::routes(Arc::new(s.center));
    let resp = app.oneshot(Request::get("/v1/openapi.json").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let doc: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in
        ["/v1/settlements", "/v1/settlements/{id}/balance", "/v1/settlements/{id}/recover/status", "/v1/admin/cards"]
    {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    let idem = &doc["paths"]["/v1/settlements/{id}/complete"]["post"]["parameters"][1];
    assert_eq!(idem["name"], "Idempotency-Key");
    assert_eq!(idem["required"], true);
}

/// The contract's enumerations in the served document are the ones the
/// parties are compiled against (kessai-api).
#[tokio::test]
async fn the_openapi_document_takes_codes_phases_and_reasons_from_the_contract() {
    let doc: Value = serde_json::from_str(kessai_center::openapi::document()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let codes: Vec<&str> = kessai_api::ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(schemas["Error"]["properties"]["error"]["properties"]["code"]["enum"], json!(codes));
    let table = schemas["Error"]["x-error-codes"].as_array().unwrap();
    assert_eq!(table.len(), codes.len());
    let rate = table.iter().find(|c| c["code"] == "rate_limited").unwrap();
    assert_eq!((&rate["number"], &rate["status"], &rate["type"]), (&json!(1801), &json!(429), &json!("rate_limited")));
    let phases: Vec<&str> = kessai_api::Phase::ALL.iter().map(|p| p.as_str()).collect();
    assert_eq!(schemas["Phase"]["enum"], json!(phases));
    assert_eq!(schemas["StepReply"]["properties"]["phase"]["$ref"], "#/components/schemas/Phase");
    let reasons = schemas["Reason"]["enum"].as_array().unwrap();
    for r in ["cancelled", "not_applied", "funding_refused", "card_declined", "insufficient_balance"] {
        assert!(reasons.contains(&json!(r)), "{r}");
    }
    // Each refusal status is described with the codes that answer it.
    let conflict = doc["components"]["responses"]["Conflict"]["description"].as_str().unwrap();
    assert!(conflict.contains("step_out_of_order, request_in_progress"), "{conflict}");
}

/// The router and the contract's route table are one list: every operation
/// the document describes is served with its method, and every API route
/// the center's sources register is an operation of the table.
#[tokio::test]
async fn the_router_serves_exactly_the_operations_the_document_describes() {
    use kessai_api::routes::OPERATIONS;
    let s = setup().await;
    let center = Arc::new(s.center);
    let simulator = Arc::new(kessai_center::authorizer::Simulator::in_database(center.db.clone()));
    let app = kessai_center::app::routes(
        center,
        simulator,
        "admin".into(),
        vec![],
        Arc::new(kessai_http::HttpMetrics::new("center")),
        Arc::new(std::sync::atomic::AtomicBool::new(true)),
    );
    let served = |op: &kessai_api::openapi::Operation, path: &str| {
        OPERATIONS.iter().any(|o| o.method == op.method && (o.path == path || o.alias == Some(path)))
    };
    let every = OPERATIONS.iter().flat_map(|op| std::iter::once((op, op.path)).chain(op.alias.map(|a| (op, a))));
    for (op, at) in every {
        // Each parameter given a value of the wrong shape: a route that is
        // there answers for itself (a refusal with the error shape); one
        // that is not gets the router's bare 404, or 405 for a method the
        // path does not take.
        let mut path = at.to_owned();
        for p in op.params {
            path = path.replace(&format!("{{{}}}", p.name), "zz");
        }
        let request = Request::builder().method(op.method.as_str()).uri(&path).body(Body::empty()).unwrap();
        let resp = app.clone().oneshot(request).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{} {at} is not routed", op.method.as_str());
        assert!(!(status == StatusCode::NOT_FOUND && body.is_empty()), "{} {at} is not routed", op.method.as_str());
    }
    // Every `.route("/v1/…", get(…).post(…))` in the center's sources.
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = 0;
    for entry in std::fs::read_dir(&src).unwrap() {
        let file = entry.unwrap().path();
        if file.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines() {
            let Some((_, rest)) = line.split_once(".route(\"") else { continue };
            let Some((path, handlers)) = rest.split_once('"') else { continue };
            if !(path.starts_with("/v1/") || path.starts_with("/.well-known/")) {
                continue;
            }
            for method in [kessai_api::openapi::Method::Get, kessai_api::openapi::Method::Post] {
                let call = format!("{}(", method.as_str().to_lowercase());
                let routed = handlers.match_indices(&call).any(|(at, _)| {
                    handlers[..at].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
                });
                if routed {
                    found += 1;
                    let probe = kessai_api::openapi::Operation { method, ..kessai_api::openapi::Operation::DEFAULT };
                    assert!(
                        served(&probe, path),
                        "{} {path} ({}) is routed but not in the contract's table",
                        method.as_str(),
                        file.display()
                    );
                }
            }
        }
    }
    assert!(found >= 70, "found {found} routes in the sources");
}

/// Sends a request to an in-process router with the given headers and, if
/// `peer` names one, a verified client certificate of that name.
pub(crate) async fn send(
    app: &axum::Router,
    req: axum::http::request::Builder,
    body: Value,
    peer: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = req.header("content-type", "application/json").body(Body::from(body.to_string())).unwrap();
    if let Some(name) = peer {
        req.extensions_mut().insert(crate::peer(name));
    }
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() })
}

/// M4: a settlement's routes answer its wallet (the access token its create
/// handed out) and, for reading, its store (a client certificate in the
/// store's name); anyone else who knows the id, the store among them for
/// the steps, is answered as for an id that does not exist, and changes
/// nothing.
#[tokio::test]
async fn a_settlement_answers_only_its_wallet_and_its_store() {
    let mut s = setup().await;
    register_card(&s, 1, 50_000).await;
    let mut card = funded_card(1, 50_000);
    let bill = bill_token(&mut s);
    let app = kessai_center::api::routes(Arc::new(s.center));
    let create = create_json(&mut card, &bill, 1);
    let (_, r) = post(&app, "/v1/settlements", Some("m4-create"), create).await;
    let id = r["settlement_id"].as_str().unwrap().to_owned();
    let token = r["access_token"].as_str().expect("the create hands out the access token").to_owned();
    assert_eq!(token.len(), 43, "32 bytes, base64url");

    // What a stranger is answered for an id that does not exist.
    let (status, nothing) = send(&app, Request::get("/v1/settlements/stl_nope"), Value::Null, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error_shape(&nothing, "unknown_settlement");

    let answers = relay_json(&mut card, &r);
    let wrong = "Bearer AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let step = |auth: Option<&str>, path: &str, key: &str| {
        let mut req = Request::post(format!("/v1/settlements/{id}{path}")).header("idempotency-key", key);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req
    };
    for (auth, peer) in [(None, None), (Some(wrong), None), (None, Some("mall")), (Some(token.as_str()), None)] {
        // The card's genuine answers, without the token (or with a bare
        // token, not a bearer one): refused as unknown.
        let (status, body) = send(&app, step(auth, "/balance", "m4-a"), answers.clone(), peer).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_error_shape(&body, "unknown_settlement");
        let (status, body) = send(&app, step(auth, "/cancel", "m4-c"), json!({}), peer).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, body) = send(&app, step(auth, "/recover", "m4-r"), json!({}), peer).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let mut get = Request::get(format!("/v1/settlements/{id}"));
        if let Some(a) = auth {
            get = get.header("authorization", a);
        }
        let (status, body) = send(&app, get, Value::Null, peer.map(|_| "someone-else")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }
    // Nothing changed: the wallet goes on with the same answers.
    let bearer = format!("Bearer {token}");
    let (status, r) = send(&app, step(Some(&bearer), "/balance", "m4-a"), answers, None).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["phase"], "offered");
    let (status, view) = send(&app, step(Some(&bearer), "", "-").method("GET"), Value::Null, None).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["phase"], "offered");
    // The store reads it by its certificate (and gets no access token).
    let store = view["store"].as_str().unwrap().to_owned();
    // L3: the store's name on an operator's certificate is not the store.
    let as_operator = format!("operator/{store}");
    let (status, body) =
        send(&app, Request::get(format!("/v1/settlements/{id}")), Value::Null, Some(&as_operator)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, by_store) = send(&app, Request::get(format!("/v1/settlements/{id}")), Value::Null, Some(&store)).await;
    assert_eq!(status, StatusCode::OK, "{by_store}");
    assert_eq!(by_store["settlement_id"], id.as_str());
    assert!(by_store.get("access_token").is_none());
    // The store sees the card as it knows it (a pseudonym), not its id.
    assert!(by_store["card_id"].is_null(), "{by_store}");
    assert_eq!(by_store["card_ref"].as_str().map(str::len), Some(22), "{by_store}");
    assert_eq!(view["card_id"], card_id(1).to_string(), "the wallet sees its card");
    let (status, _) =
        send(&app, Request::get(format!("/v1/settlements/{id}/receipt")), Value::Null, Some("another-store")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// M10: a key is claimed before any work. While a request under it is
/// being worked on, another under the same key is answered
/// `409 request_in_progress`, changes nothing and stores nothing; once the
/// first is done, the same request gets its answer.
#[tokio::test]
async fn a_second_request_under_a_key_in_progress_is_refused_and_changes_nothing() {
    let mut s = setup().await;
    register_card(&s, 1, 50_000).await;
    let mut card = funded_card(1, 50_000);
    let bill = bill_token(&mut s);
    let center = Arc::new(s.center);
    let app = kessai_center::api::routes(center.clone());
    let create = create_json(&mut card, &bill, 1);
    let held = center.in_flight.claim("m10-key").expect("free");
    assert!(center.in_flight.claim("m10-key").is_none(), "one claim per key");
    let (status, body) = post(&app, "/v1/settlements", Some("m10-key"), create.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error_shape(&body, "request_in_progress");
    assert!(center.db.idempotent_response("m10-key").await.unwrap().is_none(), "nothing stored");
    assert!(
        center.db.list_settlements(&Default::default()).await.unwrap().settlements.is_empty(),
        "no settlement opened"
    );
    drop(held);
    let (status, r) = post(&app, "/v1/settlements", Some("m10-key"), create.clone()).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let (_, again) = post(&app, "/v1/settlements", Some("m10-key"), create).await;
    assert_eq!(again, r, "the first answer");
}

/// Issuer keys in a token that stopped answering (pulled out, its daemon
/// gone): every use fails.
#[derive(Debug)]
struct GoneToken;

impl kessai_center::security::IssuerKeys for GoneToken {
    fn versions(&self) -> Vec<u8> {
        vec![crate::world::KVN]
    }
    fn diversify(
        &self,
        _: &kessai_core::ids::CardId,
        _: kessai_scp03::KeyVersion,
    ) -> Result<kessai_scp03::StaticKeys, kessai_center::security::SecurityError> {
        Err(kessai_center::security::SecurityError::Unavailable("C_Sign: CKR_DEVICE_REMOVED".into()))
    }
    fn check_values(
        &self,
    ) -> Result<
        std::collections::BTreeMap<u8, kessai_center::security::CheckValues>,
        kessai_center::security::SecurityError,
    > {
        Err(kessai_center::security::SecurityError::Unavailable("C_Sign: CKR_DEVICE_REMOVED".into()))
    }
    fn location(&self) -> String {
        "a token that was pulled out".into()
    }
}

/// When the security server's token does not answer, a purchase is
/// answered 503 `security_server_unavailable` (what the token said stays
/// in the log), nothing is kept, and the wallet may try again.
#[tokio::test]
async fn a_token_that_stops_answering_is_503_and_changes_nothing() {
    use kessai_center::security::{SecurityServer, StateKey};
    let mut s = setup().await;
    register_card(&s, 1, 50_000).await;
    let mut card = funded_card(1, 50_000);
    let token = bill_token(&mut s);
    s.center.security = SecurityServer::over(Box::new(GoneToken), StateKey::from_bytes([3; 32]));
    let db = s.center.db.clone();
    let app = kessai_center::api::routes(Arc::new(s.center));
    let create = create_json(&mut card, &token, 1);
    let (status, body) = post(&app, "/v1/settlements", Some("k-gone"), create.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_error_shape(&body, "security_server_unavailable");
    assert_eq!(body["error"]["type"], "unavailable");
    assert!(!body.to_string().contains("CKR_"), "the token's words stay in the log: {body}");
    assert!(db.list_settlements(&Default::default()).await.unwrap().settlements.is_empty(), "nothing kept");
    // Again under the same key: tried again, not replayed as done.
    let (status, _) = post(&app, "/v1/settlements", Some("k-gone"), create).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(balance_of(&mut card), 50_000);
}

/// The center's signing key in a token that stopped answering.
struct GoneSigner(kessai_core::keys::SigningKey);

impl kessai_core::keys::JwsSigner for GoneSigner {
    fn kid(&self) -> &kessai_core::jwk::KeyId {
        self.0.kid()
    }
    fn public(&self) -> kessai_core::keys::PublicKey {
        self.0.public()
    }
    fn try_sign(&self, _: &[u8]) -> Result<[u8; 64], String> {
        Err("C_Sign (CKM_EDDSA): CKR_DEVICE_REMOVED".into())
    }
}

/// When the center's signing key does not sign, the step that signs (the
/// offer, SIG2) is answered 503 and the settlement stays where it was, to
/// be taken up again.
#[tokio::test]
async fn a_signer_that_stops_answering_is_503_and_the_step_can_be_taken_again() {
    let mut s = setup().await;
    register_card(&s, 1, 50_000).await;
    let mut card = funded_card(1, 50_000);
    let token = bill_token(&mut s);
    s.center.center_key = Arc::new(GoneSigner(kessai_core::keys::SigningKey::from_seed(&[5; 32])));
    let db = s.center.db.clone();
    let app = kessai_center::api::routes(Arc::new(s.center));
    let (status, r) = post(&app, "/v1/settlements", Some("g-create"), create_json(&mut card, &token, 1)).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let id = r["settlement_id"].as_str().unwrap().to_owned();
    let answers = relay_json(&mut card, &r);
    let (status, body) = post(&app, &format!("/v1/settlements/{id}/balance"), Some("g-bal"), answers).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_error_shape(&body, "security_server_unavailable");
    assert!(!body.to_string().contains("CKR_"), "{body}");
    let stored = db.list_settlements(&Default::default()).await.unwrap().settlements;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].phase().as_str(), "reading_balance", "not advanced");
    assert_eq!(balance_of(&mut card), 50_000);
}

/// L1: a store asks what became of a bill it signed before it purges the
/// order (none, open, voided, paid); nobody else learns anything of it.
#[tokio::test]
async fn a_store_learns_what_became_of_its_bill_and_nobody_else_does() {
    let mut s = setup().await;
    register_card(&s, 1, 50_000).await;
    let mut card = funded_card(1, 50_000);
    let bill = bill_token(&mut s);
    let (_, payload) = kessai_core::jws::inspect_unverified(&bill).unwrap();
    let (store, bill_id) = (payload["bill"]["store"].as_str().unwrap(), payload["bill"]["bill_id"].as_str().unwrap());
    let (store, bill_id) = (store.to_owned(), bill_id.to_owned());
    let center = Arc::new(s.center);
    let app = kessai_center::api::routes(Arc::clone(&center)).merge(kessai_center::clearing_api::routes(center));
    let path = format!("/v1/stores/{store}/bills/{bill_id}");
    let ask = |peer: Option<&str>| {
        let (app, path, peer) = (app.clone(), path.clone(), peer.map(str::to_owned));
        async move { send(&app, Request::get(path), Value::Null, peer.as_deref()).await }
    };
    let state = |answer: &Value| answer["state"].as_str().map(str::to_owned);

    let (status, answer) = ask(Some(&store)).await;
    assert_eq!((status, state(&answer)), (StatusCode::OK, Some("none".into())), "{answer}");
    let (_, r) = post(&app, "/v1/settlements", Some("l1-create"), create_json(&mut card, &bill, 1)).await;
    let id = r["settlement_id"].as_str().unwrap().to_owned();
    let (_, answer) = ask(Some(&store)).await;
    assert_eq!(state(&answer).as_deref(), Some("open"), "{answer}");
    let (status, r) = post(&app, &format!("/v1/settlements/{id}/cancel"), Some("l1-cancel"), json!({})).await;
    assert_eq!((status, &r["phase"]), (StatusCode::OK, &json!("voided")), "{r}");
    let (_, answer) = ask(Some(&store)).await;
    assert_eq!(state(&answer).as_deref(), Some("voided"), "{answer}");

    // Another store, an operator's certificate in the store's name, or none:
    // the store is unknown to them.
    let as_operator = format!("operator/{store}");
    for peer in [Some("someone-else"), Some(as_operator.as_str()), None] {
        let (status, answer) = ask(peer).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("unknown_store")),
            "{peer:?}"
        );
    }
    let (status, answer) =
        send(&app, Request::get(format!("/v1/stores/{store}/bills/a%20b")), Value::Null, Some(&store)).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_bill_id")), "{answer}");
}

/// L6: a bill the store addressed to another center (one that shares its
/// key) is refused here, and nothing is held.
#[tokio::test]
async fn a_bill_for_another_center_is_refused() {
    use kessai_core::messages::bill;
    let mut s = setup().await;
    register_card(&s, 1, 50_000).await;
    let mut card = funded_card(1, 50_000);
    let (claims, b) = kessai_core::samples::bill(&mut s.rng, crate::world::NOW).unwrap();
    let elsewhere = claims.with_audience(kessai_core::ids::PartyId::parse("center-b").unwrap());
    let token = bill::sign(&elsewhere, &b, &s.mall_key).unwrap();
    let app = kessai_center::api::routes(Arc::new(s.center));
    let (status, answer) = post(&app, "/v1/settlements", Some("l6-aud"), create_json(&mut card, &token, 1)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_error_shape(&answer, "bill_wrong_center");
    assert_eq!(answer["error"]["param"], "bill");
    assert_eq!(balance_of(&mut card), 50_000);
}

/// #22 item 2: the admin listing pages by a cursor, so a page never skips
/// or repeats a settlement, however many are opened meanwhile (here all
/// at one instant: ties are broken by id); and it filters by store and
/// creation time.
#[tokio::test]
async fn settlements_page_without_skipping_or_repeating_while_more_are_opened() {
    paging(setup().await).await;
}

/// The same on PostgreSQL (`scripts/with-postgres`).
#[tokio::test]
async fn settlements_page_on_postgres() {
    let Some(s) = crate::service::setup_on_postgres("api_paging").await else { return };
    paging(s).await;
}

async fn paging(mut s: crate::service::Setup) {
    for n in 1..=7 {
        register_card(&s, n, 50_000).await;
    }
    let mut cards: Vec<_> = (1..=7).map(|n| funded_card(n, 50_000)).collect();
    let bills: Vec<String> = (0..7).map(|_| bill_token(&mut s)).collect();
    let (_, payload) = kessai_core::jws::inspect_unverified(&bills[0]).unwrap();
    let store = payload["bill"]["store"].as_str().unwrap().to_owned();
    let center = Arc::new(s.center);
    let app = kessai_center::api::routes(Arc::clone(&center)).merge(kessai_center::admin::routes(
        center,
        "admin".into(),
        vec![],
    ));
    let mut opened = Vec::new();
    for i in 0..5 {
        let n = u8::try_from(i + 1).unwrap();
        let (status, r) =
            post(&app, "/v1/settlements", Some(&format!("page-{i}")), create_json(&mut cards[i], &bills[i], n)).await;
        assert_eq!(status, StatusCode::OK, "{r}");
        opened.push(r["settlement_id"].as_str().unwrap().to_owned());
    }
    let list = |query: String| {
        let app = app.clone();
        async move { send(&app, Request::get(format!("/v1/admin/settlements?{query}")), Value::Null, Some("admin")).await }
    };
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for page in 0.. {
        let cursor = after.as_ref().map(|c| format!("&after={c}")).unwrap_or_default();
        let (status, answer) = list(format!("limit=2{cursor}")).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        seen.extend(
            answer["settlements"].as_array().unwrap().iter().map(|r| r["settlement_id"].as_str().unwrap().to_owned()),
        );
        if page == 0 {
            // Two more opened while the operator pages.
            for i in 5..7 {
                let n = u8::try_from(i + 1).unwrap();
                let (status, r) =
                    post(&app, "/v1/settlements", Some(&format!("page-{i}")), create_json(&mut cards[i], &bills[i], n))
                        .await;
                assert_eq!(status, StatusCode::OK, "{r}");
            }
        }
        match answer["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => break,
        }
        assert!(page < 10, "paging ends");
    }
    let unique: std::collections::BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no settlement listed twice: {seen:?}");
    for id in &opened {
        assert!(unique.contains(id), "{id} was skipped: {seen:?}");
    }

    // Filters: the store, the creation time; a cursor that is not one.
    let now = crate::world::NOW.unix_s();
    let (_, answer) = list(format!("store={store}&from={now}&to={}&limit=500", now + 1)).await;
    assert_eq!(answer["settlements"].as_array().unwrap().len(), 7, "{answer}");
    let (_, answer) = list(format!("store=another-store&from={now}")).await;
    assert!(answer["settlements"].as_array().unwrap().is_empty(), "{answer}");
    let (_, answer) = list(format!("to={now}")).await;
    assert!(answer["settlements"].as_array().unwrap().is_empty(), "created at {now}, not before: {answer}");
    // Not cursors: what schemathesis found accepted (a settlement id the
    // center never issues), and others.
    for bad in [
        "yesterday",
        "0.5",
        "1.stl_00",
        "-1.stl_00000000000000000000000000000000",
        "1234567890123456789.stl_00000000000000000000000000000000",
    ] {
        let (status, answer) = list(format!("after={bad}")).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("bad_query")),
            "{bad}: {answer}"
        );
    }
}

/// #22 item 2: a card's whole story for an operator, after a purchase:
/// the registry, the books (the float the card now holds), the settlement
/// and the card's log as collected; nothing owed, no member. Unknown cards
/// and other parties' certificates learn nothing.
#[tokio::test]
async fn an_operator_reads_a_cards_whole_story() {
    let mut s = setup().await;
    register_card(&s, 1, 50_000).await;
    let mut card = funded_card(1, 50_000);
    let token = bill_token(&mut s);
    let center = Arc::new(s.center);
    let app = kessai_center::api::routes(Arc::clone(&center)).merge(kessai_center::admin::routes(
        center,
        "admin".into(),
        vec![],
    ));
    let (_, r) = post(&app, "/v1/settlements", Some("story-c"), create_json(&mut card, &token, 1)).await;
    let id = r["settlement_id"].as_str().unwrap().to_owned();
    let (_, r) = post(&app, &format!("/v1/settlements/{id}/balance"), Some("story-b"), relay_json(&mut card, &r)).await;
    let (_, done) =
        post(&app, &format!("/v1/settlements/{id}/complete"), Some("story-d"), relay_json(&mut card, &r)).await;
    assert_eq!(done["phase"], "completed", "{done}");
    let balance = balance_of(&mut card);

    let path = format!("/v1/admin/cards/{}/story", card_id(1));
    let (status, story) = send(&app, Request::get(path.clone()), Value::Null, Some("admin")).await;
    assert_eq!(status, StatusCode::OK, "{story}");
    assert_eq!((&story["card"]["status"], &story["card"]["currency"]), (&json!("active"), &json!("JPY")), "{story}");
    assert_eq!(story["books"]["float_minor"], balance, "the books hold what the card holds: {story}");
    assert_eq!(story["books"]["held_minor"], 0);
    let settlements = story["settlements"].as_array().unwrap();
    assert_eq!((settlements.len(), &settlements[0]["settlement_id"]), (1, &json!(id)), "{story}");
    assert_eq!(settlements[0]["phase"], "completed");
    assert!(story["settlements_next"].is_null() && story["member"].is_null(), "{story}");
    assert_eq!(story["owed"].as_array().unwrap().len(), 0, "{story}");
    // The card's own log as the purchase's session collected it: the
    // issuance credit (the debit is collected at the card's next session).
    let log = story["log"].as_array().unwrap();
    assert_eq!(log.len(), 1, "{story}");
    assert_eq!((&log[0]["kind"], &log[0]["amount_minor"]), (&json!("credit"), &json!(50_000)), "{story}");

    let (status, answer) =
        send(&app, Request::get(format!("/v1/admin/cards/{}/story", card_id(9))), Value::Null, Some("admin")).await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("unknown_card")));
    let (status, _) = send(&app, Request::get(path), Value::Null, Some("kessai-mall")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a store's certificate is no operator's");
}
