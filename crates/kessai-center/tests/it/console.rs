//! The operator's console (#22): who it answers, what a role may change,
//! and the trail every change leaves, on SQLite and PostgreSQL.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use kessai_center::console::{Actor, operator_account};
use kessai_center::db::{CenterDb, Role};
use kessai_center::service::Center;
use kessai_core::random::SeededRandom;
use tower::ServiceExt;

use crate::service::{Setup, setup, setup_on_postgres};

const HOST: &str = "127.0.0.1:8440";

pub(crate) fn app(center: &Arc<Center>) -> axum::Router {
    kessai_center::console::routes(center.clone(), "admin".into(), vec!["viewer".into(), "op2".into()])
}

/// A request to the console with an operator's certificate (`peer`),
/// a session cookie, and for a POST the console's own Origin and a form.
pub(crate) async fn ask(
    app: &axum::Router,
    method: &str,
    path: &str,
    peer: Option<&str>,
    cookie: Option<&str>,
    form: Option<&str>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut req = Request::builder().method(method).uri(path).header(header::HOST, HOST);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, format!("kessai_console={c}"));
    }
    if form.is_some() {
        req = req
            .header(header::ORIGIN, format!("https://{HOST}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    }
    let mut req = req.body(Body::from(form.unwrap_or("").to_owned())).unwrap();
    if let Some(name) = peer {
        req.extensions_mut().insert(crate::peer(&format!("operator/{name}")));
    }
    let resp = app.clone().oneshot(req).await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body = String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned();
    (status, headers, body)
}

/// A form POSTed to the console from page of origin `origin` (another
/// site's, a rebound host's), with this session and certificate: its
/// status.
pub(crate) async fn post_from(
    app: &axum::Router,
    origin: &str,
    path: &str,
    peer: &str,
    cookie: &str,
    form: &str,
) -> StatusCode {
    let mut req = Request::post(path)
        .header(header::HOST, HOST)
        .header(header::ORIGIN, origin)
        .header(header::COOKIE, format!("kessai_console={cookie}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form.to_owned()))
        .unwrap();
    req.extensions_mut().insert(crate::peer(&format!("operator/{peer}")));
    app.clone().oneshot(req).await.unwrap().status()
}

pub(crate) async fn give_login(db: &CenterDb, name: &str, role: Role, password: &str) {
    let account = operator_account(name, role, password, &mut SeededRandom::new(5)).unwrap();
    db.put_operator(&account, "test", crate::world::NOW).await.unwrap();
}

/// Logs `name` in with its own certificate; the session token.
pub(crate) async fn log_in(app: &axum::Router, name: &str, password: &str) -> String {
    let form = format!("name={name}&password={password}");
    let (status, headers, body) = ask(app, "POST", "/console/login", Some(name), None, Some(&form)).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let cookie = headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_owned()
}

pub(crate) fn form_token(page: &str) -> String {
    let at = page.find("name=\"form_token\" value=\"").expect("a form token") + 25;
    page[at..at + 32].to_owned()
}

async fn console_admits_operators_and_roles_decide(s: Setup) {
    let url = s.url.clone();
    let _dir = s._dir;
    let center = Arc::new(s.center);
    let app = app(&center);
    let db = &center.db;
    give_login(db, "admin", Role::Approver, "approver-password-1").await;
    give_login(db, "viewer", Role::Viewer, "viewer-password-12").await;

    // No certificate, or a store's: no page at all, login included.
    for path in ["/console", "/console/login", "/console/trail"] {
        let (status, _, body) = ask(&app, "GET", path, None, None, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(body.contains("operator's client certificate"), "{body}");
    }
    let mut req = Request::get("/console").body(Body::empty()).unwrap();
    req.extensions_mut().insert(crate::peer("store/admin"));
    assert_eq!(app.clone().oneshot(req).await.unwrap().status(), StatusCode::FORBIDDEN, "a store named admin");

    // A certificate without a login is sent to log in.
    let (status, headers, _) = ask(&app, "GET", "/console", Some("admin"), None, None).await;
    assert_eq!(
        (status, headers.get(header::LOCATION).unwrap().to_str().unwrap()),
        (StatusCode::SEE_OTHER, "/console/login")
    );
    // A login is the certificate's operator's: the viewer's certificate
    // does not log in the approver, and a wrong password nobody.
    let form = "name=admin&password=approver-password-1";
    let (status, headers, _) = ask(&app, "POST", "/console/login", Some("viewer"), None, Some(form)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.get(header::SET_COOKIE).is_none());
    let (status, _, _) =
        ask(&app, "POST", "/console/login", Some("admin"), None, Some("name=admin&password=wrong-password-0")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let approver = log_in(&app, "admin", "approver-password-1").await;
    let viewer = log_in(&app, "viewer", "viewer-password-12").await;
    // A session is only good with the certificate it was opened under.
    let (status, _, _) = ask(&app, "GET", "/console", Some("viewer"), Some(&approver), None).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "the approver's cookie under the viewer's certificate");
    let (status, _, page) = ask(&app, "GET", "/console", Some("admin"), Some(&approver), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"settlements\""), "{page}");

    // An application in the queue.
    let applied = center.apply("general", "Saburo Ito", "saburo@example.jp").await.unwrap();
    let id = applied.application_id;
    let (_, _, queue) = ask(&app, "GET", "/console/applications", Some("viewer"), Some(&viewer), None).await;
    assert!(queue.contains(&id), "{queue}");

    // The viewer may not decide: refused, nothing changed, nothing trailed.
    let token = form_token(&queue);
    let reject = format!("/console/applications/{id}/reject");
    let form = format!("form_token={token}&reason=no");
    let (status, _, page) = ask(&app, "POST", &reject, Some("viewer"), Some(&viewer), Some(&form)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("Your role (viewer) may not do this"), "{page}");
    assert_eq!(db.application(&id).await.unwrap().unwrap().status, "received");
    assert!(db.trail(Some(&id), None, 10).await.unwrap().is_empty());

    // Nor may a form from elsewhere: no Origin, another origin, or another token.
    let (_, _, approver_queue) = ask(&app, "GET", "/console/applications", Some("admin"), Some(&approver), None).await;
    let token = form_token(&approver_queue);
    let mut req = Request::post(&reject)
        .header(header::HOST, HOST)
        .header(header::COOKIE, format!("kessai_console={approver}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!("form_token={token}&reason=dup")))
        .unwrap();
    req.extensions_mut().insert(crate::peer("operator/admin"));
    assert_eq!(app.clone().oneshot(req).await.unwrap().status(), StatusCode::FORBIDDEN, "no Origin");
    // A page on another origin posting with the right token (as a page
    // rebound to this host could, had it read one): refused, for a change
    // and for a login.
    for (path, body) in [
        (reject.as_str(), format!("form_token={token}&reason=dup")),
        ("/console/login", "name=admin&password=approver-password-1".to_owned()),
    ] {
        let mut req = Request::post(path)
            .header(header::HOST, HOST)
            .header(header::ORIGIN, "https://rebound.example:8440")
            .header(header::COOKIE, format!("kessai_console={approver}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        req.extensions_mut().insert(crate::peer("operator/admin"));
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path} from another origin");
        assert!(resp.headers().get(header::SET_COOKIE).is_none(), "{path}: no session from another origin");
    }
    let stranger = "form_token=00000000000000000000000000000000&reason=dup";
    let (status, _, _) = ask(&app, "POST", &reject, Some("admin"), Some(&approver), Some(stranger)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "another form token");
    assert_eq!(db.application(&id).await.unwrap().unwrap().status, "received");

    // The approver rejects it: the decision and its trail row, chained.
    let form = format!("form_token={token}&reason=a+duplicate+of+app_1");
    let (status, _, _) = ask(&app, "POST", &reject, Some("admin"), Some(&approver), Some(&form)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(db.application(&id).await.unwrap().unwrap().status, "rejected");
    let trail = db.trail(Some(&id), None, 10).await.unwrap();
    assert_eq!(trail.len(), 1);
    let row = &trail[0].entry;
    assert_eq!(
        (row.operator.as_str(), row.role.as_str(), row.action.as_str()),
        ("admin", "approver", "application_rejected")
    );
    assert!(row.before.contains("received") && row.after.contains("a duplicate of app_1"), "{row:?}");
    let (_, _, page) = ask(&app, "GET", "/console/trail", Some("viewer"), Some(&viewer), None).await;
    assert!(page.contains("application_rejected") && page.contains(&id), "{page}");
    assert!(page.contains("The trail's chain is whole"), "{page}");

    // The database refuses to change or remove a trail row.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    for statement in ["UPDATE center_operator_trail SET operator = 'someone'", "DELETE FROM center_operator_trail"] {
        let refused = sqlx::query(statement).execute(&pool).await.unwrap_err();
        assert!(refused.to_string().contains("append-only"), "{statement}: {refused}");
    }
    pool.close().await;
    // The two accounts, then the decision.
    assert_eq!(db.check_trail().await.unwrap(), Ok(3));

    // The outbox: a viewer sees that a letter waits, not its code, and
    // may not mark it sent; the approver reads and marks it.
    let other = center.apply("general", "Nanako Ueda", "nanako@example.jp").await.unwrap();
    let approved = center.approve_application(&other.application_id, &Actor::api("admin")).await.unwrap();
    let (_, _, letters) = ask(&app, "GET", "/console/outbox", Some("viewer"), Some(&viewer), None).await;
    assert!(letters.contains(&approved.letter_id) && !letters.contains("activation code"), "{letters}");
    let sent = format!("/console/outbox/{}/sent", approved.letter_id);
    let form = format!("form_token={}", form_token(&letters));
    let (status, _, page) = ask(&app, "POST", &sent, Some("viewer"), Some(&viewer), Some(&form)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(page.contains("it needs the operator role"), "{page}");
    let (_, _, letters) = ask(&app, "GET", "/console/outbox", Some("admin"), Some(&approver), None).await;
    assert!(letters.contains("activation code"), "an operator reads the letter: {letters}");
    let form = format!("form_token={}", form_token(&letters));
    let (status, _, _) = ask(&app, "POST", &sent, Some("admin"), Some(&approver), Some(&form)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let row = &db.trail(Some(&approved.letter_id), None, 10).await.unwrap()[0].entry;
    assert_eq!((row.action.as_str(), row.role.as_str()), ("letter_sent", "approver"));
    let (_, _, letters) = ask(&app, "GET", "/console/outbox", Some("admin"), Some(&approver), None).await;
    assert!(!letters.contains(&approved.letter_id), "sent: off the queue");

    // A role changed applies to the next request; a disabled operator's
    // session opens nothing.
    give_login(db, "viewer", Role::Approver, "viewer-password-12").await;
    let (_, _, page) = ask(&app, "GET", "/console", Some("viewer"), Some(&viewer), None).await;
    assert!(page.contains("viewer (approver)"), "{page}");
    assert!(db.disable_operator("viewer", "test", crate::world::NOW).await.unwrap());
    assert!(!db.disable_operator("viewer", "test", crate::world::NOW).await.unwrap(), "disabled once");
    let (status, _, _) = ask(&app, "GET", "/console", Some("viewer"), Some(&viewer), None).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "a disabled operator is sent to log in");
    let (status, _, _) =
        ask(&app, "POST", "/console/login", Some("viewer"), None, Some("name=viewer&password=viewer-password-12"))
            .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "and may not");

    // Logging out ends the session.
    let (_, _, page) = ask(&app, "GET", "/console", Some("admin"), Some(&approver), None).await;
    let form = format!("form_token={}", form_token(&page));
    let (status, _, _) = ask(&app, "POST", "/console/logout", Some("admin"), Some(&approver), Some(&form)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = ask(&app, "GET", "/console", Some("admin"), Some(&approver), None).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "logged out");
}

#[tokio::test]
async fn the_console_admits_operators_and_their_roles_decide_on_sqlite() {
    console_admits_operators_and_roles_decide(setup().await).await;
}

#[tokio::test]
async fn the_console_admits_operators_and_their_roles_decide_on_postgres() {
    let Some(s) = setup_on_postgres("console_roles").await else { return };
    console_admits_operators_and_roles_decide(s).await;
}

/// A crash after any write of a decision leaves the application received
/// and no trail row, or decided with exactly its one row: never one
/// without the other.
#[tokio::test]
async fn a_crash_at_any_write_of_a_decision_leaves_both_or_neither() {
    let mut finished = false;
    for n in 1..=12 {
        let s = setup().await;
        let c = &s.center;
        let id = c.apply("general", "Shiro Kato", "shiro@example.jp").await.unwrap().application_id;
        c.db.faults().fail_at(n);
        let first = c.reject_application(&id, &Actor::api("admin"), "a test").await;
        let fired = !c.db.faults().armed();
        c.db.faults().fail_at(0);
        let status = c.db.application(&id).await.unwrap().unwrap().status;
        let trail = c.db.trail(Some(&id), None, 10).await.unwrap();
        if fired {
            assert!(first.is_err(), "a fault at write {n} fails the decision");
            assert_eq!((status.as_str(), trail.len()), ("received", 0), "after a fault at {n}");
            // Decided again after the crash: once, with its row.
            c.reject_application(&id, &Actor::api("admin"), "a test").await.unwrap();
        } else {
            first.unwrap();
        }
        let trail = c.db.trail(Some(&id), None, 10).await.unwrap();
        assert_eq!(c.db.application(&id).await.unwrap().unwrap().status, "rejected");
        assert_eq!(trail.len(), 1, "fault at {n}");
        assert_eq!(c.db.check_trail().await.unwrap(), Ok(1));
        if !fired {
            finished = true;
            break;
        }
    }
    assert!(finished, "every write of it was crashed at, and then it completed");
}

/// The admin API's changes leave their trail rows too (role `api`), with
/// what stood before read in the same transaction; a change that changes
/// nothing leaves none.
async fn admin_changes_are_trailed(s: Setup) {
    crate::service::register_card(&s, 3, 10_000).await;
    let mall_kid = s.mall_key.kid().as_str().to_owned();
    let center = Arc::new(s.center);
    let admin = kessai_center::admin::routes(center.clone(), "admin".into(), vec![]);
    let card = crate::world::card_id(3).to_string();
    let post = |path: String, body: serde_json::Value| {
        let admin = admin.clone();
        async move { crate::api::send(&admin, Request::post(path), body, Some("admin")).await }
    };

    let (status, _) =
        post(format!("/v1/admin/cards/{card}/status"), serde_json::json!({"status": "blocked", "reason": "stolen"}))
            .await;
    assert_eq!(status, StatusCode::OK);
    let row = &center.db.trail(Some(&card), None, 10).await.unwrap()[0].entry;
    assert_eq!((row.operator.as_str(), row.role.as_str(), row.action.as_str()), ("admin", "api", "card_status"));
    assert_eq!(row.before, r#"{"status":"active"}"#);
    assert!(row.after.contains("blocked") && row.after.contains("stolen"), "{row:?}");

    // A member, its letter sent, its card linked, then its key revoked.
    let app = center.apply("general", "Rokuro Abe", "rokuro@example.jp").await.unwrap();
    let approved = center.approve_application(&app.application_id, &Actor::api("admin")).await.unwrap();
    let (status, _) = post(format!("/v1/admin/outbox/{}/sent", approved.letter_id), serde_json::Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = post(format!("/v1/admin/outbox/{}/sent", approved.letter_id), serde_json::Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "sent once");
    assert_eq!(center.db.trail(Some(&approved.letter_id), None, 10).await.unwrap().len(), 1, "one row");

    // Registering the member's key is the member's, not an operator's:
    // the link is refused for a member that is not active, and leaves no row.
    let link = serde_json::json!({ "member": approved.member, "instruction_required": true });
    let (status, _) = post(format!("/v1/admin/cards/{card}/member"), link).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not an active member yet");
    // A blocked card keeps the member it was reported with (its value may
    // go only to that member's card): refused, no row.
    let before = center.db.trail(Some(&card), None, 10).await.unwrap().len();
    let (status, _) = post(format!("/v1/admin/cards/{card}/member"), serde_json::json!({ "member": null })).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "card_not_active");
    assert_eq!(center.db.trail(Some(&card), None, 10).await.unwrap().len(), before);
    let active = crate::world::card_id(4);
    center.db.put_card(&crate::world::record(4), crate::world::NOW).await.unwrap();
    let (status, _) = post(format!("/v1/admin/cards/{active}/member"), serde_json::json!({ "member": null })).await;
    assert_eq!(status, StatusCode::OK);
    let rows = center.db.trail(Some(&active.to_string()), None, 10).await.unwrap();
    assert_eq!(rows[0].entry.action, "card_member");
    assert_eq!(rows[0].entry.before, r#"{"instruction_required":true,"member":null}"#);

    let (status, _) = post(
        format!("/v1/admin/stores/{}/keys/{mall_kid}/revoke", kessai_core::samples::MALL),
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = post(
        format!("/v1/admin/stores/{}/keys/{mall_kid}/revoke", kessai_core::samples::MALL),
        serde_json::Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "revoking again answers as before");
    assert_eq!(center.db.trail(Some(&mall_kid), None, 10).await.unwrap().len(), 1, "and leaves no second row");

    // A store registered, a correction made and cancelled.
    let (status, _) =
        post("/v1/admin/stores".into(), serde_json::json!({ "id": "tea-house", "name": "Tea House" })).await;
    assert_eq!(status, StatusCode::OK);
    let row = &center.db.trail(Some("tea-house"), None, 10).await.unwrap()[0].entry;
    assert_eq!((row.action.as_str(), row.before.as_str()), ("store_registered", r#"{"name":null}"#));
    let correction = serde_json::json!({
        "reference": "TICKET-42", "amount": { "amount_minor": 300, "currency": "JPY" }, "reason": "double top-up",
    });
    let (status, owed) = post(format!("/v1/admin/cards/{card}/corrections"), correction.clone()).await;
    assert_eq!(status, StatusCode::OK, "{owed}");
    let (status, _) = post(format!("/v1/admin/cards/{card}/corrections"), correction).await;
    assert_eq!(status, StatusCode::OK, "the same reference again");
    let owed_id = owed["owed_id"].as_str().unwrap().to_owned();
    let (status, _) = post(format!("/v1/admin/owed/{owed_id}/cancel"), serde_json::Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let actions: Vec<String> =
        center.db.trail(Some(&owed_id), None, 10).await.unwrap().into_iter().map(|r| r.entry.action).collect();
    assert_eq!(actions, ["correction_cancelled", "correction_added"], "once each");

    // Every row chains: the approval, the status, the letter, the link, the
    // key, the store, the correction and its cancelling.
    assert_eq!(center.db.check_trail().await.unwrap(), Ok(8));
}

#[tokio::test]
async fn the_admin_apis_changes_are_trailed_on_sqlite() {
    admin_changes_are_trailed(setup().await).await;
}

#[tokio::test]
async fn the_admin_apis_changes_are_trailed_on_postgres() {
    let Some(s) = setup_on_postgres("console_admin_trail").await else { return };
    admin_changes_are_trailed(s).await;
}

/// A crash at any write of a card's status change leaves the status and
/// its trail row both, or neither.
#[tokio::test]
async fn a_crash_at_any_write_of_a_status_change_leaves_both_or_neither() {
    use kessai_center::purchase::CardRegistryStatus;
    let mut finished = false;
    for n in 1..=6 {
        let s = setup().await;
        crate::service::register_card(&s, 4, 5_000).await;
        let c = &s.center;
        let id = crate::world::card_id(4);
        let trail = || {
            Actor::api("admin").did("card_status", &id.to_string(), serde_json::Value::Null, serde_json::Value::Null)
        };
        c.db.faults().fail_at(n);
        let first = c.db.set_card_status(&id, CardRegistryStatus::Blocked, "a test", crate::world::NOW, trail()).await;
        let fired = !c.db.faults().armed();
        c.db.faults().fail_at(0);
        let status = c.db.card(&id).await.unwrap().unwrap().status;
        let rows = c.db.trail(Some(&id.to_string()), None, 10).await.unwrap().len();
        if fired {
            assert!(first.is_err(), "a fault at write {n}");
            assert_eq!((status, rows), (CardRegistryStatus::Active, 0), "after a fault at {n}");
        } else {
            first.unwrap();
            assert_eq!((status, rows), (CardRegistryStatus::Blocked, 1));
            finished = true;
            break;
        }
    }
    assert!(finished, "every write of it was crashed at, and then it completed");
}

/// A crash at any write of a correction leaves its hold on the card's
/// float, its item and its trail row all, or none of them.
#[tokio::test]
async fn a_crash_at_any_write_of_a_correction_leaves_all_or_none() {
    let amount = kessai_core::Money::new(700, kessai_core::Currency::JPY).unwrap();
    let mut finished = false;
    for n in 1..=12 {
        let s = setup().await;
        crate::service::register_card(&s, 5, 5_000).await;
        let c = &s.center;
        let card = crate::world::card_id(5);
        c.db.faults().fail_at(n);
        let first = c.add_correction(card, "TICKET-7", amount, "double top-up", &Actor::api("admin")).await;
        let fired = !c.db.faults().armed();
        c.db.faults().fail_at(0);
        let held = c.books.card_float(&card).await.unwrap().map(|(_, held)| held).unwrap_or(0);
        let items = c.db.owed_for_card(&card, 10).await.unwrap().len();
        let rows = c.db.trail(None, None, 10).await.unwrap().len();
        if fired {
            assert!(first.is_err(), "a fault at write {n}");
            assert_eq!((held, items, rows), (0, 0, 0), "after a fault at {n}");
        } else {
            first.unwrap();
            assert_eq!((held, items, rows), (700, 1, 1));
            c.books.ledger().check().await.unwrap();
            finished = true;
            break;
        }
    }
    assert!(finished, "every write of it was crashed at, and then it completed");
}

/// An operator voids a lost card's settlement past its deadline over the
/// admin API: the hold is voided, the settlement ends voided, and its
/// trail row is written with the step.
#[tokio::test]
async fn voiding_a_lost_cards_settlement_is_trailed_with_its_step() {
    use kessai_center::service::parse_answers;
    let mut s = setup().await;
    crate::service::register_card(&s, 1, 50_000).await;
    let mut ic = crate::world::funded_card(1, 50_000);
    let bill = crate::service::bill_token(&mut s);
    let card = crate::world::card_id(1);
    let r = s.center.create(crate::world::offer_request(&mut ic, &bill, card), None).await.unwrap();
    let id = r.settlement_id.clone();
    let answers = parse_answers(&crate::service::relay(&mut ic, &r)).unwrap();
    s.center.offer(&id, answers, Default::default()).await.unwrap();
    let (_, held) = s.center.books.card_float(&card).await.unwrap().unwrap();
    assert!(held > 0, "the offer holds the amount");
    crate::world::report_lost(&s.center.db, card).await;
    let later = kessai_core::time::Timestamp::from_unix_s(crate::world::NOW.unix_s() + 3_600);
    s.center.clock = Arc::new(kessai_core::time::FixedClock::new(later));
    let center = Arc::new(s.center);
    let admin = kessai_center::admin::routes(center.clone(), "admin".into(), vec![]);
    let body = serde_json::json!({ "reason": "stolen on the train, reported at 09:10" });
    let path = format!("/v1/admin/settlements/{id}/void-lost");
    let (status, reply) = crate::api::send(&admin, Request::post(&path), body.clone(), Some("admin")).await;
    assert_eq!((status, reply["phase"].as_str()), (StatusCode::OK, Some("voided")), "{reply}");
    assert_eq!(center.books.card_float(&card).await.unwrap().unwrap().1, 0, "the hold voided");
    let rows = center.db.trail(Some(&id), None, 10).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].entry.action.as_str(), rows[0].entry.before.as_str()),
        ("settlement_voided_lost", r#"{"phase":"offered"}"#)
    );
    assert!(rows[0].entry.after.contains("stolen on the train"), "{:?}", rows[0].entry);
    // Voided already: refused, and no second row.
    let (status, _) = crate::api::send(&admin, Request::post(&path), body, Some("admin")).await;
    assert_ne!(status, StatusCode::OK);
    assert_eq!(center.db.trail(Some(&id), None, 10).await.unwrap().len(), 1);
    center.books.ledger().check().await.unwrap();
}

/// The console's lost-card queue: a viewer may not report a card; an
/// approver reports it lost, voids its open settlement past the deadline
/// and moves its value to a new card; each change is one trail row.
#[tokio::test]
async fn a_lost_card_is_reported_voided_and_replaced_in_the_console() {
    use kessai_center::service::parse_answers;
    let mut s = setup().await;
    crate::service::register_card(&s, 1, 50_000).await;
    crate::service::register_card(&s, 2, 0).await;
    crate::world::registered_member(&s.center, 41, &[crate::world::card_id(1), crate::world::card_id(2)]).await;
    let mut ic = crate::world::funded_card(1, 50_000);
    let bill = crate::service::bill_token(&mut s);
    let (card, new) = (crate::world::card_id(1), crate::world::card_id(2));
    let r = s.center.create(crate::world::offer_request(&mut ic, &bill, card), None).await.unwrap();
    let id = r.settlement_id.clone();
    let answers = parse_answers(&crate::service::relay(&mut ic, &r)).unwrap();
    s.center.offer(&id, answers, Default::default()).await.unwrap();
    let later = kessai_core::time::Timestamp::from_unix_s(crate::world::NOW.unix_s() + 3_600);
    s.center.clock = Arc::new(kessai_core::time::FixedClock::new(later));
    let center = Arc::new(s.center);
    let app = app(&center);
    give_login(&center.db, "admin", Role::Approver, "approver-password-1").await;
    give_login(&center.db, "viewer", Role::Viewer, "viewer-password-12").await;
    let approver = log_in(&app, "admin", "approver-password-1").await;
    let viewer = log_in(&app, "viewer", "viewer-password-12").await;

    let (_, _, page) = ask(&app, "GET", "/console/lost-cards", Some("viewer"), Some(&viewer), None).await;
    let report = format!("form_token={}&card={card}&status=lost&reason=stolen", form_token(&page));
    let (status, _, _) = ask(&app, "POST", "/console/lost-cards", Some("viewer"), Some(&viewer), Some(&report)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a viewer reports nothing");
    let (_, _, page) = ask(&app, "GET", "/console/lost-cards", Some("admin"), Some(&approver), None).await;
    let token = form_token(&page);
    let report = format!("form_token={token}&card={card}&status=lost&reason=stolen+on+the+train");
    let (status, _, _) = ask(&app, "POST", "/console/lost-cards", Some("admin"), Some(&approver), Some(&report)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, _, page) = ask(&app, "GET", "/console/lost-cards", Some("admin"), Some(&approver), None).await;
    assert!(page.contains(&id), "its open settlement is listed: {page}");

    let void = format!("/console/lost-cards/{card}/void/{id}");
    let form = format!("form_token={token}&reason=past+its+deadline");
    let (status, _, _) = ask(&app, "POST", &void, Some("admin"), Some(&approver), Some(&form)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(center.books.card_float(&card).await.unwrap().unwrap(), (50_000, 0), "the hold voided");
    let replace = format!("/console/lost-cards/{card}/replace");
    let form = format!("form_token={token}&replacement={new}&reason=a+new+card+for+the+cardholder");
    let (status, _, _) = ask(&app, "POST", &replace, Some("admin"), Some(&approver), Some(&form)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(center.books.card_credits_pending(&new).await.unwrap(), 50_000, "owed to the new card");

    let actions = |subject: String| {
        let center = center.clone();
        async move {
            let rows = center.db.trail(Some(&subject), None, 10).await.unwrap();
            rows.into_iter().map(|r| r.entry.action).collect::<Vec<_>>()
        }
    };
    assert_eq!(actions(card.to_string()).await, ["card_replaced", "card_status"]);
    assert_eq!(actions(id.clone()).await, ["settlement_voided_lost"]);
    center.books.ledger().check().await.unwrap();
}

/// Five wrong passwords in a quarter of an hour lock the operator out for
/// a quarter of an hour, the right password too; then it logs in, and a
/// login forgets the failures. Wrong passwords sent at once all count.
#[tokio::test]
async fn failed_logins_lock_an_operator_out_for_a_while() {
    lockout(setup().await).await;
}

#[tokio::test]
async fn failed_logins_lock_an_operator_out_for_a_while_on_postgres() {
    let Some(s) = setup_on_postgres("lockout").await else { return };
    lockout(s).await;
}

async fn lockout(mut s: Setup) {
    let clock = Arc::new(kessai_core::time::FixedClock::new(crate::world::NOW));
    s.center.clock = clock.clone();
    let center = Arc::new(s.center);
    let app = app(&center);
    give_login(&center.db, "viewer", Role::Viewer, "viewer-password-12").await;
    let wrong = "name=viewer&password=not-the-password";
    // Four at once: each counts.
    let attempts: Vec<_> = (0..4)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { ask(&app, "POST", "/console/login", Some("viewer"), None, Some(wrong)).await })
        })
        .collect();
    for attempt in attempts {
        assert_eq!(attempt.await.unwrap().0, StatusCode::UNAUTHORIZED);
    }
    let (status, _, page) = ask(&app, "POST", "/console/login", Some("viewer"), None, Some(wrong)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the fifth failure locks: {page}");
    let right = "name=viewer&password=viewer-password-12";
    let (status, headers, page) = ask(&app, "POST", "/console/login", Some("viewer"), None, Some(right)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{page}");
    assert!(headers.get(header::SET_COOKIE).is_none() && page.contains("Too many failed logins"), "{page}");
    clock.advance_s(kessai_center::console::LOCKOUT_S + 1);
    log_in(&app, "viewer", "viewer-password-12").await;
    // The login forgot the failures: four more fail without locking.
    for _ in 0..4 {
        let (status, _, _) = ask(&app, "POST", "/console/login", Some("viewer"), None, Some(wrong)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    log_in(&app, "viewer", "viewer-password-12").await;
    // Failures farther apart than the window never add up to a lock.
    for _ in 0..6 {
        let (status, _, _) = ask(&app, "POST", "/console/login", Some("viewer"), None, Some(wrong)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        clock.advance_s(kessai_center::console::LOGIN_WINDOW_S / 4 + 1);
    }
}

/// The admin API asks the roles the console does: a viewer's certificate
/// reads and changes nothing, an operator's works but does not decide, an
/// operator certificate without an account works as an operator, and a
/// disabled account changes nothing.
#[tokio::test]
async fn the_admin_api_asks_for_the_roles_the_console_does() {
    let s = setup().await;
    crate::service::register_card(&s, 3, 10_000).await;
    crate::service::register_card(&s, 4, 10_000).await;
    let center = Arc::new(s.center);
    let admin = kessai_center::admin::routes(
        center.clone(),
        "admin".into(),
        vec!["viewer".into(), "op2".into(), "clerk".into()],
    );
    give_login(&center.db, "viewer", Role::Viewer, "viewer-password-12").await;
    give_login(&center.db, "op2", Role::Operator, "operator-password-2").await;
    let send = |who: &'static str, method: &'static str, path: String, body: serde_json::Value| {
        let admin = admin.clone();
        let req = Request::builder().method(method).uri(path);
        async move { crate::api::send(&admin, req, body, Some(&format!("operator/{who}"))).await }
    };
    let (three, four) = (crate::world::card_id(3), crate::world::card_id(4));
    let block = serde_json::json!({ "status": "blocked", "reason": "stolen" });
    let (status, answer) = send("viewer", "POST", format!("/v1/admin/cards/{three}/status"), block.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("needs operator"), "{answer}");
    assert_eq!(
        center.db.card(&three).await.unwrap().unwrap().status,
        kessai_center::purchase::CardRegistryStatus::Active
    );
    assert!(center.db.trail(Some(&three.to_string()), None, 10).await.unwrap().is_empty(), "no row");
    let (status, _) = send("viewer", "GET", "/v1/admin/settlements".into(), serde_json::Value::Null).await;
    assert_eq!(status, StatusCode::OK, "a viewer reads");

    let (status, answer) = send("op2", "POST", format!("/v1/admin/cards/{three}/status"), block.clone()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let replace = serde_json::json!({ "replacement": four.to_string(), "reason": "a new card" });
    let (status, answer) = send("op2", "POST", format!("/v1/admin/cards/{three}/replace"), replace).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "an operator does not decide: {answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("needs approver"), "{answer}");
    assert!(center.db.owed_for_card(&four, 10).await.unwrap().is_empty(), "nothing moved");

    let (status, answer) = send("clerk", "POST", format!("/v1/admin/cards/{four}/status"), block.clone()).await;
    assert_eq!(status, StatusCode::OK, "no account: an operator: {answer}");
    center.db.disable_operator("op2", "test", crate::world::NOW).await.unwrap();
    let unblock = serde_json::json!({ "status": "active", "reason": "found" });
    let (status, _) = send("op2", "POST", format!("/v1/admin/cards/{three}/status"), unblock).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a disabled account changes nothing");
}
