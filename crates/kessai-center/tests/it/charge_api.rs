//! The charge routes as a wallet sees them: JSON in and out,
//! Idempotency-Key on every POST, one error shape, and no card data in
//! anything the center stores.

use std::sync::Arc;

use axum::http::StatusCode;
use kessai_center::authorizer::{AuthorizationState, PaymentCard, Simulator};
use kessai_center::service::{Answer, StepCall, parse_answers};
use serde_json::{Value, json};

use crate::service::{register_card, setup};
use crate::world::{balance_of, card_id, funded_card, get, post, post_as_stranger, relay_json};

fn assert_error(body: &Value, code: &str) {
    let e = &body["error"];
    assert_eq!(e["code"], code, "{body}");
    assert!(e["type"].is_string() && e["message"].is_string(), "{body}");
    assert_eq!(body.as_object().unwrap().len(), 1, "only the error member: {body}");
}

fn charge(card: u8, amount: u64) -> Value {
    json!({ "card_id": card_id(card).to_string(), "amount": { "amount_minor": amount, "currency": "JPY" } })
}

/// The authenticate step's body: the card's answers and the payment card.
fn paid_by(mut answers: Value, number: &str) -> Value {
    answers["card_number"] = json!(number);
    answers["expiry"] = json!("12/30");
    answers["cvc"] = json!("123");
    answers
}

#[tokio::test]
async fn a_charge_over_the_api_with_idempotent_retries() {
    let s = setup().await;
    register_card(&s, 1, 20_000).await;
    let mut card = funded_card(1, 20_000);
    let sim = Arc::new(Simulator::in_database(s.center.db.clone()));
    let center = Arc::new(s.center);
    let app = kessai_center::update_api::routes(center.clone(), sim.clone());

    let create = charge(1, 5_000);
    let (status, r) = post(&app, "/v1/charges", Some("c-create"), create.clone()).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["phase"], "authenticating");
    assert!(r.get("funding_ref").is_none(), "nothing authorized before the card's proof: {r}");
    // The same request again: the same answer.
    let (_, again) = post(&app, "/v1/charges", Some("c-create"), create).await;
    assert_eq!(again, r);
    assert!(sim.authorizations().await.unwrap().is_empty());
    let id = r["charge_id"].as_str().unwrap().to_owned();

    // The card's answer and the payment card, together: authorized once
    // the card proved itself; the same request again, the same answer and
    // no second authorization.
    let path = format!("/v1/value-updates/{id}/authenticate");
    let step = paid_by(relay_json(&mut card, &r), "4242 4242 4242 4242");
    let (status, r) = post(&app, &path, Some("c-auth"), step.clone()).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert!(r["funding_ref"].as_str().unwrap().starts_with("auth_"), "{r}");
    let (_, again) = post(&app, &path, Some("c-auth"), step).await;
    assert_eq!(again, r);
    assert_eq!(sim.authorizations().await.unwrap().len(), 1);
    let (_, r) = post(&app, &format!("/v1/value-updates/{id}/balance"), Some("c-bal"), relay_json(&mut card, &r)).await;
    assert_eq!(r["phase"], "offered", "{r}");
    assert!(r["value_update"].is_string());
    let path = format!("/v1/value-updates/{id}/complete");
    let answers = relay_json(&mut card, &r);
    let (status, done) = post(&app, &path, Some("c-done"), answers.clone()).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["update_id"], done["charge_id"], "the id under both names for one release");
    // The last release's path answers the same request the same way.
    let (_, old_path) = post(&app, &format!("/v1/charges/{id}/complete"), Some("c-done"), answers.clone()).await;
    assert_eq!(old_path, done);
    assert_eq!((done["phase"].as_str(), done["balance_after_minor"].as_u64()), (Some("completed"), Some(25_000)));
    let (_, retry) = post(&app, &path, Some("c-done"), answers.clone()).await;
    assert_eq!(retry, done);
    let (status, body) = post(&app, &path, Some("c-other"), answers).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error(&body, "step_out_of_order");
    assert_eq!(balance_of(&mut card), 25_000);
    assert_eq!(sim.authorizations().await.unwrap()[0].state, AuthorizationState::Captured);

    let (_, view) = get(&app, &format!("/v1/value-updates/{id}")).await;
    assert_eq!(view["phase"], "completed");
    center.books.ledger().check().await.unwrap();
}

#[tokio::test]
async fn the_openapi_document_describes_the_charge_routes() {
    let doc: Value = serde_json::from_str(kessai_center::openapi::document()).unwrap();
    for path in [
        "/v1/charges",
        "/v1/value-updates/{id}/balance",
        "/v1/value-updates/{id}/recover/status",
        "/v1/decreases",
        "/v1/refunds",
        "/v1/cards/{id}/owed/apply",
        "/v1/admin/cards/{id}/corrections",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    let required = &doc["components"]["schemas"]["CreateCharge"]["required"];
    assert_eq!(required, &json!(["card_id", "amount"]), "no payment card data at create (M5)");
    let step =
        &doc["paths"]["/v1/value-updates/{id}/authenticate"]["post"]["requestBody"]["content"]["application/json"];
    assert_eq!(step["schema"]["$ref"], "#/components/schemas/ChargeAuthenticate");
    let properties = &doc["components"]["schemas"]["ChargeAuthenticate"]["properties"];
    assert!(properties.get("card_number").is_some(), "the authenticate step carries it: {properties}");
}

#[tokio::test]
async fn refusals_use_stable_codes_and_card_data_is_never_stored() {
    let s = setup().await;
    register_card(&s, 2, 95_000).await;
    let sim = Arc::new(Simulator::in_database(s.center.db.clone()));
    let center = Arc::new(s.center);
    let app = kessai_center::update_api::routes(center.clone(), sim.clone());
    let mut card = funded_card(2, 95_000);
    // Refused at create: only the center's own limits on the amount.
    let (got, answer) = post(&app, "/v1/charges", Some("k0"), charge(2, 0)).await;
    assert_eq!(
        (got, answer["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("amount_out_of_range"))
    );
    assert_error(&answer, "amount_out_of_range");
    // The card's own limits only once it proved itself (M4): 95,000 on a
    // card of 100,000 takes no 10,000 more.
    let (got, r) = post(&app, "/v1/charges", Some("k1"), charge(2, 10_000)).await;
    assert_eq!(got, StatusCode::OK, "{r}");
    let path = format!("/v1/value-updates/{}/authenticate", r["charge_id"].as_str().unwrap());
    let (got, answer) = post(&app, &path, Some("k2"), paid_by(relay_json(&mut card, &r), "4242424242424242")).await;
    assert_eq!((got, answer["error"]["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("over_max_balance")));
    // A card id nobody registered opens like a registered one, and an
    // answer no card gave is refused alike for both.
    let (got, stranger) = post(&app, "/v1/charges", Some("k-stranger"), charge(7, 1_000)).await;
    assert_eq!(got, StatusCode::OK, "{stranger}");
    let (_, known) = post(&app, "/v1/charges", Some("k-known"), charge(2, 1_000)).await;
    let fields = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(fields(&stranger), fields(&known));
    assert_eq!(stranger["apdus"][0].as_str().unwrap()[..10], known["apdus"][0].as_str().unwrap()[..10]);
    let bogus = || {
        paid_by(
            json!({ "responses": ["00000000000000000000000000000000000000000000000000000000009000"] }),
            "4242424242424242",
        )
    };
    let path_of = |v: &Value| format!("/v1/value-updates/{}/authenticate", v["charge_id"].as_str().unwrap());
    let (unknown_status, unknown_body) = post(&app, &path_of(&stranger), Some("k-stranger-a"), bogus()).await;
    let (known_status, known_body) = post(&app, &path_of(&known), Some("k-known-a"), bogus()).await;
    assert_eq!((unknown_status, &unknown_body["error"]["code"]), (known_status, &known_body["error"]["code"]));
    // Refused at the authenticate step, once the card proved itself: the
    // authorizer's declines and a number that is not one.
    let at_authenticate = [
        ("4000000000000002", StatusCode::PAYMENT_REQUIRED, "card_declined"),
        ("4000000000009995", StatusCode::PAYMENT_REQUIRED, "insufficient_funds"),
        ("4000000000000069", StatusCode::PAYMENT_REQUIRED, "expired_card"),
        ("4000000000000119", StatusCode::PAYMENT_REQUIRED, "processing_error"),
        ("4242424242424241", StatusCode::BAD_REQUEST, "invalid_card_number"),
    ];
    for (i, (number, status, code)) in at_authenticate.into_iter().enumerate() {
        let (_, r) = post(&app, "/v1/charges", Some(&format!("create-{i}")), charge(2, 1_000)).await;
        let path = format!("/v1/value-updates/{}/authenticate", r["charge_id"].as_str().unwrap());
        let step = paid_by(relay_json(&mut card, &r), number);
        let (got, answer) = post(&app, &path, Some(&format!("k{}", i + 3)), step).await;
        assert_eq!((got, answer["error"]["code"].as_str()), (status, Some(code)), "{answer}");
        assert_error(&answer, code);
    }
    assert!(sim.authorizations().await.unwrap().is_empty(), "nothing was authorized");
    // The payment card is all or nothing, and a charge cannot go on without it.
    let (_, r) = post(&app, "/v1/charges", Some("create-x"), charge(2, 1_000)).await;
    let path = format!("/v1/value-updates/{}/authenticate", r["charge_id"].as_str().unwrap());
    let mut partial = paid_by(relay_json(&mut card, &r), "4242424242424242");
    partial.as_object_mut().unwrap().remove("cvc");
    let (status, body) = post(&app, &path, Some("k-partial"), partial).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "payment_card_incomplete");
    let (status, body) = post(&app, &path, Some("k-none"), relay_json(&mut card, &r)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "payment_card_required");
    // Card data at create, as the last release sent it: refused, not echoed.
    let mut old = charge(2, 1_000);
    old["card_number"] = json!("4242424242424242");
    let (status, body) = post(&app, "/v1/charges", Some("k-old"), old).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!body.to_string().contains("4242"), "{body}");
    let (status, body) = post(&app, "/v1/charges", None, charge(2, 1_000)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "idempotency_key_required");
    // A malformed body is refused without echoing it.
    let (status, body) = post(&app, "/v1/charges", Some("k-bad"), json!({ "card_number": 4242424242424242u64 })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&body, "bad_json");
    assert!(!body.to_string().contains("4242"), "{body}");
    let (status, body) =
        post(&app, "/v1/charges/vup_00000000000000000000000000000000/complete", Some("k-x"), json!({"responses": []}))
            .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&body, "unknown_value_update");
    // Nothing the center stored holds the card number, expiry or CVC.
    for (i, _) in (0..8).enumerate() {
        let (hash, _, stored) = center.db.idempotent_response(&format!("k{i}")).await.unwrap().unwrap();
        for secret in ["4000000000000002", "4242424242424241", "12/30", "\"123\""] {
            assert!(!stored.contains(secret) && !hash.contains(secret), "{stored}");
        }
    }
}

/// The Idempotency-Key answer the HTTP layer would hand a step for `route`
/// with `body` (the route's name and id, then the body as sent).
fn answer_for(key: &str, route: &str, body: &Value) -> Answer {
    let fingerprint = [route.as_bytes(), b"\n", body.to_string().as_bytes()].concat();
    Answer {
        key: key.to_owned(),
        hash: kessai_core::digest::Sha256Digest::of(&fingerprint).to_string(),
        stored: Default::default(),
    }
}

fn answers_of(body: &Value) -> Vec<kessai_scp03::ResponseApdu> {
    let hex: Vec<String> = body["responses"].as_array().unwrap().iter().map(|h| h.as_str().unwrap().into()).collect();
    parse_answers(&hex).unwrap()
}

/// A step whose reply was lost (the center committed it, then died before
/// the HTTP layer answered): the wallet's retry under the same
/// Idempotency-Key gets the first answer, stored in the step's own
/// transaction — never `step_out_of_order` — for every step of a charge and
/// of a purchase.
#[tokio::test]
async fn a_step_retried_after_its_reply_was_lost_gets_the_first_answer_on_sqlite() {
    lost_replies(setup().await).await;
}

#[tokio::test]
async fn a_step_retried_after_its_reply_was_lost_gets_the_first_answer_on_postgres() {
    let Some(s) = crate::service::setup_on_postgres("lost_replies").await else { return };
    lost_replies(s).await;
}

async fn lost_replies(mut s: crate::service::Setup) {
    register_card(&s, 2, 20_000).await;
    let mut card = funded_card(2, 20_000);
    let token = crate::service::bill_token(&mut s);
    let sim = Arc::new(Simulator::in_database(s.center.db.clone()));
    let center = Arc::new(s.center);
    let charges = kessai_center::update_api::routes(center.clone(), sim.clone());
    let purchases = kessai_center::api::routes(center.clone());

    // A charge: create over HTTP, then each step called as the HTTP layer
    // calls it, its reply dropped, and the request retried over HTTP.
    let (_, mut reply) = post(&charges, "/v1/charges", Some("k-create"), charge(2, 5_000)).await;
    let id = reply["charge_id"].as_str().unwrap().to_owned();
    for step in ["authenticate", "balance", "complete"] {
        let mut body = relay_json(&mut card, &reply);
        let key = format!("charge-lost-{step}");
        let mut answer = Some(answer_for(&key, &format!("charge-{step}/{id}"), &body));
        let (sim, answers) = (sim.as_ref(), answers_of(&body));
        if step == "authenticate" {
            // Its fingerprint is the card's answers alone, never the card data.
            let joined: Vec<&str> = body["responses"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
            let fingerprint = format!("charge-authenticate/{id}\n{}", joined.join(","));
            let hash = kessai_core::digest::Sha256Digest::of(fingerprint.as_bytes()).to_string();
            answer = Some(Answer { key: key.clone(), hash, stored: Default::default() });
            body = paid_by(body, "4242424242424242");
        }
        let first = match step {
            "authenticate" => {
                let payment = Some(PaymentCard::parse("4242424242424242", "12/30", "123").unwrap());
                center.update_authenticate(sim, &id, answers, payment, answer).await
            }
            "balance" => center.update_offer(sim, &id, answers, answer).await,
            _ => center.update_complete(sim, &id, answers, answer).await,
        }
        .unwrap();
        let (status, retried) = post(&charges, &format!("/v1/value-updates/{id}/{step}"), Some(&key), body).await;
        assert_eq!(status, StatusCode::OK, "{step}: {retried}");
        assert_eq!(retried, serde_json::to_value(&first).unwrap(), "{step}: the first answer");
        reply = retried;
    }
    assert_eq!(reply["phase"], "completed");
    // Its stored answers go to the holder of its access token only (M4).
    let stranger =
        post_as_stranger(&charges, &format!("/v1/value-updates/{id}/complete"), "charge-lost-complete", json!({}))
            .await;
    assert_eq!(stranger, (404, "unknown_value_update".to_owned()));
    let stranger = post_as_stranger(&charges, &format!("/v1/charges/{id}/cancel"), "charge-cancel", json!({})).await;
    assert_eq!(stranger, (404, "unknown_value_update".to_owned()));

    // A purchase, the same way, its create too.
    let opening = crate::world::opening(&mut card, &token, card_id(2));
    let create = json!({
        "bill": token,
        "card_id": card_id(2).to_string(),
        "initialize_update": hex::encode(opening.to_bytes()),
    });
    let answer = Some(answer_for("p-create", "create", &create));
    let first = center.create(crate::world::offer_create(&token, card_id(2), opening), answer).await.unwrap();
    let (status, mut reply) = post(&purchases, "/v1/settlements", Some("p-create"), create).await;
    assert_eq!(status, StatusCode::OK, "create: {reply}");
    assert_eq!(reply, serde_json::to_value(&first).unwrap(), "create: the first answer");
    let id = reply["settlement_id"].as_str().unwrap().to_owned();
    for step in ["balance", "complete"] {
        let body = relay_json(&mut card, &reply);
        let key = format!("purchase-lost-{step}");
        let call = StepCall { answer: Some(answer_for(&key, &format!("{step}/{id}"), &body)), ..StepCall::default() };
        let answers = answers_of(&body);
        let first = match step {
            "balance" => center.offer(&id, answers, call).await,
            _ => center.complete(&id, answers, call).await,
        }
        .unwrap();
        let (status, retried) = post(&purchases, &format!("/v1/settlements/{id}/{step}"), Some(&key), body).await;
        assert_eq!(status, StatusCode::OK, "{step}: {retried}");
        assert_eq!(retried, serde_json::to_value(&first).unwrap(), "{step}: the first answer");
        reply = retried;
    }
    assert_eq!(reply["phase"], "completed");
    assert_eq!(balance_of(&mut card), 20_000 + 5_000 - 11_360);

    // A statement (the card's log), the same way.
    let path = format!("/v1/cards/{}/statements", card_id(2));
    let (_, mut reply) = post(&purchases, &path, Some("s-create"), json!({})).await;
    let id = reply["statement_id"].as_str().unwrap().to_owned();
    for step in ["authenticate", "read"] {
        let body = relay_json(&mut card, &reply);
        let key = format!("statement-lost-{step}");
        let answer = Some(answer_for(&key, &format!("statement_{step}/{id}"), &body));
        let answers = answers_of(&body);
        let first = match step {
            "authenticate" => center.statement_authenticate(&id, answers, answer).await,
            _ => center.statement_read(&id, answers, answer).await,
        }
        .unwrap();
        let (status, retried) = post(&purchases, &format!("/v1/statements/{id}/{step}"), Some(&key), body).await;
        assert_eq!(status, StatusCode::OK, "{step}: {retried}");
        assert_eq!(retried, serde_json::to_value(&first).unwrap(), "{step}: the first answer");
        reply = retried;
    }
    assert!(matches!(reply["phase"].as_str(), Some("reading" | "done")), "{reply}");
    let stranger =
        post_as_stranger(&purchases, &format!("/v1/statements/{id}/read"), "statement-lost-read", json!({})).await;
    assert_eq!(stranger, (404, "unknown_statement".to_owned()));
    center.books.ledger().check().await.unwrap();
}
