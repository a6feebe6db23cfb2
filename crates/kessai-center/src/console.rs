//! The operator's console (#22, seed 003/004 FIG. 2's inquiry server 20):
//! server-rendered pages under `/console`, with no script.
//!
//! Two things admit a request: an operator's client certificate (as for
//! the admin API), and a login of that same operator, whose role (viewer,
//! operator, approver) decides what it may change. Every change made is
//! written with a row of the operator trail in one transaction; the trail
//! page shows it, and whether its chain is whole.
//!
//! A session is a random token in a `HttpOnly`, `Secure`,
//! `SameSite=Strict` cookie scoped to `/console`; the center keeps only its
//! SHA-256. Every form carries a token derived from the session, and every
//! POST must come from the console's own origin.

use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::{Form, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use kessai_core::Currency;
use kessai_core::digest::Sha256Digest;
use kessai_core::ids::CardId;
use kessai_core::time::Timestamp;
use kessai_http::{Party, PeerIdentity};
use maud::{Markup, html};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::db::{
    ListCursor, OperatorRow, Role, Search as DbSearch, SearchKind, SessionRow, SettlementQuery, TrailEntry,
};
use crate::member_pages::{document, page};
use crate::purchase::Phase;
use crate::service::Center;
use crate::statistics::{Grain, Period, Report};

/// Who makes a change: an operator's name and the role it acts in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    /// A console role, or `api` for the admin API (mutual TLS, no login).
    pub role: String,
}

impl Actor {
    /// Operator `name` over the admin API.
    pub fn api(name: &str) -> Actor {
        Actor { name: name.to_owned(), role: "api".into() }
    }

    /// Whoever runs `kessai center …` on the center's own host.
    pub fn host() -> Actor {
        Actor { name: "center-host".into(), role: "cli".into() }
    }

    /// Operator `name` logged in to the console as `role`.
    pub fn console(name: &str, role: Role) -> Actor {
        Actor { name: name.to_owned(), role: role.as_str().to_owned() }
    }

    /// The trail row of `action` on `subject`, from `before` to `after`.
    pub fn did(&self, action: &str, subject: &str, before: serde_json::Value, after: serde_json::Value) -> TrailEntry {
        TrailEntry {
            operator: self.name.clone(),
            role: self.role.clone(),
            action: action.to_owned(),
            subject: subject.to_owned(),
            before: before.to_string(),
            after: after.to_string(),
        }
    }
}

/// How long a login lasts.
pub const SESSION_S: u64 = 8 * 3600;

/// The session cookie's name.
const COOKIE: &str = "kessai_console";

/// Failed logins of one operator within [`LOGIN_WINDOW_S`] that lock it
/// out for [`LOCKOUT_S`].
pub const MAX_FAILED_LOGINS: i64 = 5;
pub const LOGIN_WINDOW_S: u64 = 15 * 60;
pub const LOCKOUT_S: u64 = 15 * 60;

/// Shortest password an operator account takes.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane).
fn kdf() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, Some(32)).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The account of operator `name` in `role`, with `password` hashed under
/// a fresh salt.
pub fn operator_account(
    name: &str,
    role: Role,
    password: &str,
    random: &mut dyn kessai_core::random::Random,
) -> Result<OperatorRow, String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!("an operator's password has at least {MIN_PASSWORD_CHARS} characters"));
    }
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Err("an operator's name is 1 to 64 letters, digits, '-', '_' or '.' (its certificate's)".into());
    }
    let mut salt = vec![0u8; 16];
    random.fill_bytes(&mut salt);
    let mut hash = vec![0u8; 32];
    kdf().hash_password_into(password.as_bytes(), &salt, &mut hash).map_err(|e| e.to_string())?;
    Ok(OperatorRow { name: name.to_owned(), role, salt, hash, disabled: false })
}

fn password_matches(account: &OperatorRow, password: &str) -> bool {
    let mut hash = Zeroizing::new(vec![0u8; 32]);
    if kdf().hash_password_into(password.as_bytes(), &account.salt, &mut hash).is_err() {
        return false;
    }
    bool::from(hash.ct_eq(&account.hash[..]))
}

#[derive(Clone)]
struct ConsoleState {
    center: Arc<Center>,
    admin_name: Arc<str>,
    operators: Arc<[String]>,
}

impl ConsoleState {
    /// The operator certificate's name the request came with, if any.
    fn certificate(&self, peer: Option<&PeerIdentity>) -> Option<String> {
        let name = peer?.acting_as(Party::Operator)?;
        (name == &*self.admin_name || self.operators.iter().any(|o| o == name)).then(|| name.to_owned())
    }
}

/// `/console` and its pages.
pub fn routes(center: Arc<Center>, admin_name: String, operators: Vec<String>) -> Router {
    let state = ConsoleState { center, admin_name: admin_name.into(), operators: operators.into() };
    Router::new()
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
        .route("/console", get(home))
        .route("/console/cards/{id}", get(card))
        .route("/console/members", get(member))
        .route("/console/applications", get(applications))
        .route("/console/applications/{id}/approve", post(approve))
        .route("/console/applications/{id}/reject", post(reject))
        .route("/console/outbox", get(outbox))
        .route("/console/outbox/{id}/sent", post(letter_sent))
        .route("/console/cash", get(cash))
        .route("/console/cash/{id}", post(count_cash))
        .route("/console/bank-credits", get(bank_credits))
        .route("/console/bank-credits/apply", post(apply_credit))
        .route("/console/bank-credits/return", post(return_credit))
        .route("/console/lost-cards", get(lost_cards).post(report_card))
        .route("/console/lost-cards/{card}/void/{id}", post(void_lost))
        .route("/console/lost-cards/{card}/replace", post(replace_card))
        .route("/console/differences", get(differences))
        .route("/console/differences/{id}/resolve", post(resolve_difference))
        .route("/console/trail", get(trail))
        .route("/console/payouts", get(failed_payouts))
        .route("/console/payouts/{store}/account", post(correct_account))
        .route("/console/statistics", get(statistics))
        .route("/console/statistics.csv", get(statistics_csv))
        .route("/console/statistics.pdf", get(statistics_pdf))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), only_operators))
        .with_state(state)
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;line-height:1.45}\
header{background:#1d3557;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.2rem;align-items:center}\
header a{color:#fff}header form{margin-left:auto}main{padding:1rem 1.2rem;max-width:72rem}\
table{border-collapse:collapse;width:100%;margin:.6rem 0}th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;\
text-align:left;font-size:.92rem;vertical-align:top}td.num{text-align:right;font-variant-numeric:tabular-nums}\
form.inline{display:inline}label{margin-right:.6rem}input,select{padding:.25rem}.role{opacity:.8}\
.alert{background:#fde2e1;border:1px solid #e5a3a0;padding:.6rem}.ok{background:#e3f4e1;border:1px solid #9ccf95;\
padding:.6rem}code{font-size:.85rem}";

fn layout(title: &str, who: Option<&Session>, body: Markup) -> Markup {
    let header = html! {
        strong { "kessai console" }
        @if let Some(s) = who {
            nav aria-label="Console" {
                a href="/console" { "Search" } " · "
                a href="/console/members" { "Members" } " · "
                a href="/console/applications" { "Applications" } " · "
                a href="/console/outbox" { "Letters" } " · "
                a href="/console/cash" { "Cash" } " · "
                a href="/console/bank-credits" { "Bank credits" } " · "
                a href="/console/lost-cards" { "Lost cards" } " · "
                a href="/console/differences" { "Differences" } " · "
                a href="/console/payouts" { "Failed payouts" } " · "
                a href="/console/statistics" { "Statistics" } " · "
                a href="/console/trail" { "Trail" }
            }
            form method="post" action="/console/logout" {
                span class="role" { (s.row.operator) " (" (s.row.role.as_str()) ") " }
                input type="hidden" name="form_token" value=(s.form_token);
                button type="submit" { "Log out" }
            }
        }
    };
    document(&format!("{title} — kessai console"), STYLE, header, title, body)
}

fn refusal(status: StatusCode, who: Option<&Session>, why: &str) -> Response {
    page(status, layout("Refused", who, html! { p class="alert" role="alert" id="refused" { (why) } }))
}

/// No page of the console answers a request without an operator's
/// certificate, whatever else it carries.
async fn only_operators(State(state): State<ConsoleState>, request: Request, next: axum::middleware::Next) -> Response {
    let peer = request.extensions().get::<PeerIdentity>();
    if state.certificate(peer).is_none() {
        return refusal(StatusCode::FORBIDDEN, None, "The console answers only an operator's client certificate.");
    }
    next.run(request).await
}

/// A logged-in request: the session, the form token its forms carry, and
/// whether the request came from the console's own pages. A handler that
/// takes one answers a request without a live session with the login page.
struct Session {
    row: SessionRow,
    digest: String,
    form_token: String,
    from_here: bool,
}

impl Session {
    /// A form's reason or note, trimmed: 1 to 500 characters, or the
    /// refusal saying so (`what`: "A rejection needs a reason").
    fn reason<'a>(&self, text: &'a str, what: &str) -> Result<&'a str, Box<Response>> {
        let text = text.trim();
        if text.is_empty() || text.chars().count() > 500 {
            let why = format!("{what} of 1 to 500 characters.");
            return Err(Box::new(refusal(StatusCode::BAD_REQUEST, Some(self), &why)));
        }
        Ok(text)
    }

    fn actor(&self) -> Actor {
        Actor::console(&self.row.operator, self.row.role)
    }

    /// The checks every change makes: from this console, with this
    /// session's form token, by a role that may do what needs `needed`.
    /// The refusal, if one of them fails.
    fn refused(&self, form_token: &str, needed: Role) -> Option<Response> {
        if !(self.from_here && bool::from(form_token.as_bytes().ct_eq(self.form_token.as_bytes()))) {
            return Some(refusal(StatusCode::FORBIDDEN, Some(self), "That form did not come from this console."));
        }
        if !self.row.role.may(needed) {
            let (operator, role) = (&self.row.operator, self.row.role.as_str());
            tracing::warn!(%operator, role, needed = needed.as_str(), "console change refused");
            let why = format!(
                "Your role ({role}) may not do this: it needs the {} role. Nothing was changed.",
                needed.as_str()
            );
            return Some(refusal(StatusCode::FORBIDDEN, Some(self), &why));
        }
        None
    }
}

impl FromRequestParts<ConsoleState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &ConsoleState) -> Result<Session, Response> {
        let peer = parts.extensions.get::<PeerIdentity>();
        session(state, &parts.headers, &parts.uri, peer).await.ok_or_else(to_login)
    }
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (name, value) = c.trim().split_once('=')?;
        (name == COOKIE).then(|| value.to_owned())
    })
}

fn digest_of(token: &str) -> String {
    hex::encode(Sha256Digest::of(token.as_bytes()).as_bytes())
}

fn form_token_of(digest: &str) -> String {
    let input = format!("kessai-console-form\0{digest}");
    hex::encode(&Sha256Digest::of(input.as_bytes()).as_bytes()[..16])
}

/// The request's session: its cookie's, if live, opened under the
/// certificate the request came with (a cookie taken to another operator's
/// certificate opens nothing).
async fn session(state: &ConsoleState, headers: &HeaderMap, uri: &Uri, peer: Option<&PeerIdentity>) -> Option<Session> {
    let token = cookie_token(headers)?;
    let digest = digest_of(&token);
    let now = state.center.clock.now();
    let row = state.center.db.session(&digest, now).await.ok()??;
    let certificate = state.certificate(peer)?;
    if row.certificate != certificate {
        return None;
    }
    let form_token = form_token_of(&digest);
    Some(Session { row, digest, form_token, from_here: from_here(headers, uri) })
}

/// Whether a request came from the console's own pages: its `Origin` names
/// the host it was sent to (the `Host` header, or over HTTP/2 the
/// request's authority).
fn from_here(headers: &HeaderMap, uri: &Uri) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).or_else(|| uri.authority().map(|a| a.as_str()));
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    matches!((host, origin), (Some(host), Some(origin)) if origin == format!("https://{host}"))
}

fn to_login() -> Response {
    Redirect::to("/console/login").into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: Zeroizing<String>,
}

async fn login_form(State(state): State<ConsoleState>, peer: Option<Extension<PeerIdentity>>) -> Response {
    let certificate = state.certificate(peer.as_ref().map(|Extension(p)| p)).unwrap_or_default();
    login_page(StatusCode::OK, &certificate, None)
}

fn login_page(status: StatusCode, certificate: &str, problem: Option<&str>) -> Response {
    page(
        status,
        layout(
            "Log in",
            None,
            html! {
                @if let Some(why) = problem { p class="alert" role="alert" id="problem" { (why) } }
                p { "Your certificate: " code { (certificate) } ". Log in as the operator it names." }
                form method="post" action="/console/login" {
                    p { label for="name" { "Operator" } input id="name" name="name" autocomplete="username" required; }
                    p {
                        label for="password" { "Password" }
                        input id="password" name="password" type="password" autocomplete="current-password" required;
                    }
                    button type="submit" { "Log in" }
                }
            },
        ),
    )
}

async fn login(
    State(state): State<ConsoleState>,
    peer: Option<Extension<PeerIdentity>>,
    uri: Uri,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let certificate = state.certificate(peer.as_ref().map(|Extension(p)| p)).unwrap_or_default();
    if !from_here(&headers, &uri) {
        let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()).unwrap_or("none");
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("none");
        tracing::warn!(origin, host, authority = ?uri.authority(), "a console login from another origin refused");
        let why = format!("A login must come from the console's own page (this came from {origin:.80}).");
        return refusal(StatusCode::FORBIDDEN, None, &why);
    }
    let refused = || {
        tracing::warn!(operator = %f.name.chars().take(64).collect::<String>(), %certificate, "console login refused");
        login_page(
            StatusCode::UNAUTHORIZED,
            &certificate,
            Some("Unknown operator, wrong password, or another certificate."),
        )
    };
    // The login is the certificate's operator's, or nobody's.
    if f.name != certificate {
        return refused();
    }
    let now = state.center.clock.now();
    let locked = |until: Timestamp| {
        let why = format!("Too many failed logins: this operator may log in again after {}.", until.utc());
        login_page(StatusCode::TOO_MANY_REQUESTS, &certificate, Some(&why))
    };
    match state.center.db.login_locked(&f.name, now).await {
        Ok(None) => {}
        Ok(Some(until)) => {
            tracing::warn!(operator = %f.name, "console login refused: locked out");
            return locked(until);
        }
        Err(e) => {
            tracing::error!(error = %e, "reading failed logins");
            return refusal(StatusCode::SERVICE_UNAVAILABLE, None, "The console cannot log you in now.");
        }
    }
    let account = match state.center.db.operator(&f.name).await {
        Ok(Some(a)) if !a.disabled => a,
        Ok(_) => return refused(),
        Err(e) => {
            tracing::error!(error = %e, "reading an operator");
            return refusal(StatusCode::SERVICE_UNAVAILABLE, None, "The console cannot log you in now.");
        }
    };
    // The attempt counts before its password is checked, so guesses sent
    // at once are counted as surely as guesses one after another: beyond
    // the limit, no password is checked at all.
    let limits = (LOGIN_WINDOW_S, MAX_FAILED_LOGINS, LOCKOUT_S);
    let lock = match state.center.db.login_attempt(&f.name, now, limits).await {
        Ok((attempts, until)) if attempts <= MAX_FAILED_LOGINS => until,
        Ok((_, until)) => {
            tracing::warn!(operator = %f.name, "console login refused: too many attempts");
            return locked(until.unwrap_or(Timestamp::from_unix_s(now.unix_s() + LOCKOUT_S)));
        }
        Err(e) => {
            tracing::error!(error = %e, "counting a login attempt");
            return refusal(StatusCode::SERVICE_UNAVAILABLE, None, "The console cannot log you in now.");
        }
    };
    let password = f.password.clone();
    let checked = tokio::task::spawn_blocking(move || password_matches(&account, &password).then_some(account)).await;
    let Ok(Some(account)) = checked else {
        // The attempt that reached the limit locks, right or wrong but for
        // a right password, which logs in.
        if let Some(until) = lock {
            tracing::warn!(operator = %f.name, until = %until.utc(), "console login locked after failures");
            return locked(until);
        }
        return refused();
    };
    if let Err(e) = state.center.db.login_succeeded(&account.name).await {
        tracing::error!(error = %e, "forgetting failed logins");
        return refusal(StatusCode::SERVICE_UNAVAILABLE, None, "The console cannot log you in now.");
    }
    let mut token = [0u8; 32];
    state.center.random.generator().fill_bytes(&mut token);
    let token = hex::encode(token);
    let row = SessionRow {
        operator: account.name.clone(),
        role: account.role,
        certificate,
        expires_at: Timestamp::from_unix_s(now.unix_s() + SESSION_S),
    };
    if let Err(e) = state.center.db.open_session(&digest_of(&token), &row, now).await {
        tracing::error!(error = %e, "opening a console session");
        return refusal(StatusCode::SERVICE_UNAVAILABLE, None, "The console cannot log you in now.");
    }
    tracing::info!(operator = %row.operator, role = row.role.as_str(), "console login");
    let mut response = Redirect::to("/console").into_response();
    let cookie = format!("{COOKIE}={token}; Path=/console; Max-Age={SESSION_S}; HttpOnly; Secure; SameSite=Strict");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

#[derive(Deserialize)]
struct TokenForm {
    form_token: String,
}

async fn logout(State(state): State<ConsoleState>, s: Session, Form(f): Form<TokenForm>) -> Response {
    // Every role may log out; only from this console.
    if let Some(refused) = s.refused(&f.form_token, Role::Viewer) {
        return refused;
    }
    let _ = state.center.db.close_session(&s.digest, state.center.clock.now()).await;
    let mut response = Redirect::to("/console/login").into_response();
    let gone = format!("{COOKIE}=; Path=/console; Max-Age=0; HttpOnly; Secure; SameSite=Strict");
    if let Ok(v) = HeaderValue::from_str(&gone) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// `GET /console`: the search over what the center recorded
/// (`crate::db::Search`), 50 rows a page by the listing's cursor (no row
/// skipped or repeated while others write).
#[derive(Deserialize, Default)]
struct SearchForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    card: String,
    #[serde(default)]
    member: String,
    #[serde(default)]
    store: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    min: String,
    #[serde(default)]
    max: String,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    after: String,
}

impl SearchForm {
    /// The search the form asks for, or what is wrong with it.
    fn search(&self) -> Result<DbSearch, Vec<String>> {
        let mut problems = Vec::new();
        let kind = match self.kind.trim() {
            "" => SearchKind::Settlements,
            text => SearchKind::parse(text).unwrap_or_else(|| {
                problems.push(format!("nothing to search called {text:?}"));
                SearchKind::Settlements
            }),
        };
        let (by_card, by_member, by_store, by_amount) = kind.filters();
        let mut text = |value: &str, what: &str, applies: bool| -> String {
            let value = value.trim();
            if value.len() > 100 {
                problems.push(format!("{what}: at most 100 characters"));
            } else if !value.is_empty() && !applies {
                problems.push(format!("{} are not searched by {what}", kind.title().to_lowercase()));
            }
            value.to_owned()
        };
        let (card, member, store) = (
            text(&self.card, "card", by_card),
            text(&self.member, "member", by_member),
            text(&self.store, "store", by_store),
        );
        let state = text(&self.state, "state", true);
        let mut day = |value: &str, what: &str, after: i64| -> Option<i64> {
            let value = value.trim();
            if value.is_empty() {
                return None;
            }
            match kessai_bank::Date::parse(value) {
                Some(d) => Some((d.unix_day() + after) * 86_400),
                None => {
                    problems.push(format!("{what}: {value:?} is not a day (YYYY-MM-DD)"));
                    None
                }
            }
        };
        let (from, to) = (day(&self.from, "from", 0), day(&self.to, "to", 1));
        if let (Some(from), Some(to)) = (from, to)
            && from >= to
        {
            problems.push("the day range ends before it starts".to_owned());
        }
        let mut amount = |value: &str, what: &str| -> Option<i64> {
            let value = value.trim();
            if value.is_empty() {
                return None;
            }
            if !by_amount {
                problems.push(format!("{} have no amount", kind.title().to_lowercase()));
                return None;
            }
            value.parse::<u64>().ok().and_then(|v| i64::try_from(v).ok()).or_else(|| {
                problems.push(format!("{what}: {value:?} is not an amount in minor units"));
                None
            })
        };
        let (min_minor, max_minor) = (amount(&self.min, "amount from"), amount(&self.max, "amount to"));
        // An amount is of a currency: the form's, or yen with a bound.
        let currency = match self.currency.trim() {
            "" if min_minor.is_some() || max_minor.is_some() => Currency::parse("JPY").ok(),
            "" => None,
            text => Currency::parse(text).map_err(|e| problems.push(format!("currency: {e}"))).ok(),
        };
        if let (Some(min), Some(max)) = (min_minor, max_minor)
            && min > max
        {
            problems.push("the amount range ends before it starts".to_owned());
        }
        let after = match self.after.trim() {
            "" => None,
            text => ListCursor::parse_any(text).or_else(|| {
                problems.push("not a page of this listing".to_owned());
                None
            }),
        };
        if problems.is_empty() {
            Ok(DbSearch {
                kind,
                card,
                member,
                store,
                state,
                from,
                to,
                min_minor,
                max_minor,
                currency,
                after,
                limit: usize::try_from(PAGE_ROWS).unwrap_or(50),
            })
        } else {
            Err(problems)
        }
    }

    /// This search's query string, without its page.
    fn query(&self) -> String {
        let fields = [
            ("kind", &self.kind),
            ("card", &self.card),
            ("member", &self.member),
            ("store", &self.store),
            ("state", &self.state),
            ("from", &self.from),
            ("to", &self.to),
            ("min", &self.min),
            ("max", &self.max),
            ("currency", &self.currency),
        ];
        let mut url = String::new();
        for (k, v) in fields.iter().filter(|(_, v)| !v.trim().is_empty()) {
            let mut value = String::new();
            for b in v.trim().bytes() {
                if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                    value.push(char::from(b));
                } else {
                    value.push_str(&format!("%{b:02X}"));
                }
            }
            url.push_str(&format!("{k}={value}&"));
        }
        url
    }
}

const PAGE_ROWS: i64 = 50;

async fn home(State(state): State<ConsoleState>, s: Session, Query(q): Query<SearchForm>) -> Response {
    let (found, problems) = match q.search() {
        Ok(search) => match state.center.db.search(&search).await {
            Ok(page) => (Some((search.kind, page)), Vec::new()),
            Err(e) => {
                tracing::error!(error = %e, "console search failed");
                (None, vec!["The search failed; try again.".to_owned()])
            }
        },
        Err(problems) => (None, problems),
    };
    let kind = found.as_ref().map_or(SearchKind::Settlements, |(k, _)| *k);
    let field = |name: &'static str, label: &'static str, value: &str, size: u8, kind: &'static str| {
        html! { label { (label) " " input name=(name) value=(value) size=(size) type=(kind); } }
    };
    let body = html! {
        form method="get" action="/console" role="search" {
            label { "Search "
                select name="kind" {
                    @for k in SearchKind::ALL {
                        option value=(k.as_str()) selected[k == kind] { (k.title()) }
                    }
                }
            }
            (field("card", "Card", &q.card, 18, "text"))
            (field("member", "Member", &q.member, 14, "text"))
            (field("store", "Store", &q.store, 12, "text"))
            (field("state", "State", &q.state, 10, "text"))
            (field("from", "From", &q.from, 10, "date"))
            (field("to", "To", &q.to, 10, "date"))
            (field("min", "Amount from", &q.min, 8, "text"))
            (field("max", "Amount to", &q.max, 8, "text"))
            (field("currency", "Currency", &q.currency, 4, "text"))
            button type="submit" { "Search" }
        }
        p { small { "Days are UTC days, both included; amounts in minor units of the currency (yen if none is given). Newest first." } }
        @for why in &problems { p class="alert" role="alert" { (why) } }
        @if let Some((kind, page)) = &found {
            table id=(kind.as_str()) {
                thead { tr { th { "Id" } th { "Time" } th { "Card" } th { "Member" } th { "Store" }
                             th { "Amount" } th { "State" } th { "Detail" } } }
                tbody {
                    @for f in &page.rows {
                        tr {
                            td { code { (f.id) } }
                            td { (f.at.utc()) }
                            td { @if let Some(card) = &f.card {
                                @if CardId::parse(card).is_ok() { a href={"/console/cards/" (card)} { (card) } }
                                @else { (card) }
                            } }
                            td { @if let Some(member) = &f.member { a href={"/console/members?id=" (member)} { (member) } } }
                            td { (f.store.clone().unwrap_or_default()) }
                            td class="num" { (f.amount.map(|a| a.to_string()).unwrap_or_default()) }
                            td { (f.state) }
                            td { (f.what) }
                        }
                    }
                }
            }
            @if page.rows.is_empty() { p { "Nothing matches" @if page.next.is_some() { " in the " (page.scanned) " rows read; go on below" } "." } }
            @if let Some(next) = &page.next {
                p { a href={"/console?" (q.query()) "after=" (next)} rel="next" { "Older →" } }
            }
        }
    };
    page(StatusCode::OK, layout("Search", Some(&s), body))
}

async fn card(State(state): State<ConsoleState>, s: Session, Path(id): Path<String>) -> Response {
    let story = match crate::admin::card_story_of(&state.center, &id).await {
        Ok(story) => story,
        Err(e) => return refusal(e.status(), Some(&s), &e.to_string()),
    };
    let body = html! {
        dl {
            dt { "Card" } dd { code { (story.card.card_id) } " · " (format!("{:?}", story.card.status).to_lowercase())
                               " · " (story.card.currency) " · key version " (story.card.key_version) }
            dt { "Member" } dd { @match &story.member { Some(m) => { (m.member) }, None => { "none" } } }
            dt { "Books" }
            dd { @match &story.books {
                Some(b) => { "float " (b.float_minor) ", held " (b.held_minor) ", credits pending "
                             (b.credits_pending_minor) " (minor units)" },
                None => { "nothing booked" },
            } }
        }
        h2 { "Settlements" }
        table id="card-settlements" {
            thead { tr { th { "Settlement" } th { "Created" } th { "Store" } th { "Amount" } th { "Phase" } } }
            tbody { @for st in &story.settlements {
                tr { td { code { (st.settlement_id) } } td { (st.created_at.utc()) } td { (st.store) }
                     td class="num" { (st.amount) } td { (st.phase.as_str()) } }
            } }
        }
        h2 { "Value updates" }
        table {
            thead { tr { th { "Update" } th { "Purpose" } th { "Direction" } th { "Amount" } th { "Phase" } } }
            tbody { @for u in &story.value_updates {
                tr { td { code { (u.update_id) } } td { (u.purpose) } td { (format!("{:?}", u.direction).to_lowercase()) }
                     td class="num" { (u.amount) } td { (u.phase.as_str()) } }
            } }
        }
        h2 { "Owed" }
        table {
            thead { tr { th { "Item" } th { "Direction" } th { "Amount" } th { "Status" } th { "Reason" } } }
            tbody { @for o in &story.owed {
                tr { td { code { (o.owed_id) } } td { (format!("{:?}", o.direction).to_lowercase()) }
                     td class="num" { (o.amount) } td { (o.status.as_str()) } td { (o.reason) } }
            } }
        }
        h2 { "The card's log, as last collected" }
        table {
            thead { tr { th { "Counter" } th { "Kind" } th { "Amount" } th { "Balance after" } th { "Counterpart" } } }
            tbody { @for l in &story.log {
                tr { td class="num" { (l.counter) } td { (l.kind) } td class="num" { (l.amount_minor) }
                     td class="num" { (l.balance_after_minor) } td { (l.counterpart) } }
            } }
        }
    };
    page(StatusCode::OK, layout(&format!("Card {}", story.card.card_id), Some(&s), body))
}

#[derive(Deserialize, Default)]
struct MemberQuery {
    #[serde(default)]
    id: String,
}

/// A member's whole story: its ledger entry (never its key), its letters
/// (never their text or code), its IC cards, and its prepaid cards with
/// their fundings and payments.
async fn member(State(state): State<ConsoleState>, s: Session, Query(q): Query<MemberQuery>) -> Response {
    let id = q.id.trim();
    let body = |found: Option<&kessai_api::admin::MemberStory>, problem: Option<String>| {
        html! {
            form method="get" action="/console/members" role="search" {
                label { "Member " input name="id" value=(id) size="22" placeholder="m-…"; }
                button type="submit" { "Show" }
            }
            @if let Some(why) = &problem { p class="alert" role="alert" { (why) } }
            @if let Some(m) = found {
                dl id="member" {
                    dt { "Member" } dd { code { (m.member.member) } " · " (m.member.kind) " · " (m.member.status) }
                    dt { "Key" } dd { code { (m.member.kid) } " valid " (m.member.not_before.utc()) " to "
                                      (m.member.not_after.utc()) }
                }
                h2 { "Letters" }
                table { thead { tr { th { "Letter" } th { "Kind" } th { "Valid until" } th { "Sent" } th { "Used" } } }
                    tbody { @for l in &m.letters {
                        tr { td { code { (l.letter_id) } } td { (l.kind) } td { (l.expires_at.utc()) }
                             td { (l.sent_at.map(|t| t.utc()).unwrap_or_default()) }
                             td { (l.used_at.map(|t| t.utc()).unwrap_or_default()) } }
                    } } }
                h2 { "IC cards" }
                ul { @for c in &m.cards {
                    li { a href={"/console/cards/" (c.card_id)} { (c.card_id) }
                         @if c.instruction_required { " (pays on the member's signed instruction)" } }
                } }
                h2 { "Virtual prepaid cards" }
                table { thead { tr { th { "Card" } th { "Status" } th { "Balance" } th { "Fundings" } th { "Payments" } } }
                    tbody { @for p in &m.prepaid_cards {
                        tr { td { code { (p.prepaid_id) } } td { (p.status) } td class="num" { (p.balance) }
                             td class="num" { (p.fundings.len()) } td class="num" { (p.payments.len()) } }
                    } } }
            }
        }
    };
    if id.is_empty() {
        return page(StatusCode::OK, layout("Member", Some(&s), body(None, None)));
    }
    match crate::admin::member_story_of(&state.center, id).await {
        Ok(story) => page(StatusCode::OK, layout("Member", Some(&s), body(Some(&story), None))),
        Err(e) => page(e.status(), layout("Member", Some(&s), body(None, Some(e.to_string())))),
    }
}

async fn applications(State(state): State<ConsoleState>, s: Session) -> Response {
    let rows = match state.center.db.applications("received", PAGE_ROWS).await {
        Ok(rows) => rows,
        Err(e) => return refusal(StatusCode::SERVICE_UNAVAILABLE, Some(&s), &format!("reading the queue: {e}")),
    };
    let body = html! {
        p { "Applications waiting for a decision, oldest first. Approving makes the member number and the "
            "activation letter; rejecting records why. Either needs the approver role." }
        table id="applications" {
            thead { tr { th { "Application" } th { "Received" } th { "Kind" } th { "Name" } th { "Contact" }
                         th { "Decide" } } }
            tbody { @for a in &rows {
                tr {
                    td { code { (a.id) } } td { (a.created_at.utc()) } td { (a.kind) } td { (a.name) } td { (a.contact) }
                    td {
                        form class="inline" method="post" action={"/console/applications/" (a.id) "/approve"} {
                            input type="hidden" name="form_token" value=(s.form_token);
                            button type="submit" name="decide" value="approve" { "Approve" }
                        }
                        form class="inline" method="post" action={"/console/applications/" (a.id) "/reject"} {
                            input type="hidden" name="form_token" value=(s.form_token);
                            input name="reason" required placeholder="reason" aria-label="Reason for rejecting";
                            button type="submit" name="decide" value="reject" { "Reject" }
                        }
                    }
                }
            } }
        }
        @if rows.is_empty() { p { "The queue is empty." } }
    };
    page(StatusCode::OK, layout("Applications", Some(&s), body))
}

#[derive(Deserialize)]
struct DecisionForm {
    form_token: String,
    #[serde(default)]
    reason: String,
}

async fn approve(
    State(state): State<ConsoleState>,
    s: Session,
    Path(id): Path<String>,
    Form(f): Form<DecisionForm>,
) -> Response {
    decide(&state, s, &id, &f, false).await
}

async fn reject(
    State(state): State<ConsoleState>,
    s: Session,
    Path(id): Path<String>,
    Form(f): Form<DecisionForm>,
) -> Response {
    decide(&state, s, &id, &f, true).await
}

/// An approver decides application `id`: approves it, or rejects it for
/// the form's reason.
async fn decide(state: &ConsoleState, s: Session, id: &str, f: &DecisionForm, rejecting: bool) -> Response {
    if let Some(refused) = s.refused(&f.form_token, Role::Approver) {
        return refused;
    }
    let decided = if rejecting {
        let reason = match s.reason(&f.reason, "A rejection needs a reason") {
            Ok(reason) => reason,
            Err(refused) => return *refused,
        };
        state.center.reject_application(id, &s.actor(), reason).await
    } else {
        state.center.approve_application(id, &s.actor()).await.map(drop)
    };
    match decided {
        Ok(()) => Redirect::to("/console/applications").into_response(),
        Err(e) => {
            let status = crate::members::member_api_error(e).status();
            refusal(status, Some(&s), "The application could not be decided: it is unknown, or decided already.")
        }
    }
}

/// The letters to print or mail. Their text holds an activation code: a
/// viewer sees that a letter waits, not what it says.
async fn outbox(State(state): State<ConsoleState>, s: Session) -> Response {
    let letters = match state.center.outbox().await {
        Ok(letters) => letters,
        Err(e) => return refusal(StatusCode::SERVICE_UNAVAILABLE, Some(&s), &format!("reading the outbox: {e}")),
    };
    let reads = s.row.role.may(Role::Operator);
    let body = html! {
        p { "Activation letters not sent yet, oldest first. Print or mail each, then mark it sent: its text, "
            "with the code, is then wiped." }
        table id="letters" {
            thead { tr { th { "Letter" } th { "Member" } th { "Kind" } th { "Valid until" } th { "Text" } th { "" } } }
            tbody { @for l in &letters {
                tr {
                    td { code { (l.letter_id) } } td { (l.member) } td { (l.kind) } td { (l.expires_at.utc()) }
                    td { @if reads { pre { (l.text) } } @else { em { "shown to operators" } } }
                    td {
                        form class="inline" method="post" action={"/console/outbox/" (l.letter_id) "/sent"} {
                            input type="hidden" name="form_token" value=(s.form_token);
                            button type="submit" { "Mark sent" }
                        }
                    }
                }
            } }
        }
        @if letters.is_empty() { p { "No letter waits." } }
    };
    page(StatusCode::OK, layout("Letters", Some(&s), body))
}

async fn letter_sent(
    State(state): State<ConsoleState>,
    s: Session,
    Path(id): Path<String>,
    Form(f): Form<TokenForm>,
) -> Response {
    if let Some(refused) = s.refused(&f.form_token, Role::Operator) {
        return refused;
    }
    match state.center.letter_sent(&id, &s.actor()).await {
        Ok(()) => Redirect::to("/console/outbox").into_response(),
        Err(e) => refusal(crate::members::member_api_error(e).status(), Some(&s), "No such letter waits."),
    }
}

/// Cash fundings waiting for their envelope to be counted, or for a second
/// operator's count (above the dual-control limit).
async fn cash(State(state): State<ConsoleState>, s: Session) -> Response {
    use crate::prepaid::FundingStatus;
    use kessai_core::messages::prepaid::FundingMethod;
    let mut fundings = Vec::new();
    for status in [FundingStatus::Counted, FundingStatus::Awaiting] {
        match state.center.fundings_in(status).await {
            Ok(found) => fundings.extend(found.into_iter().filter(|f| f.method == FundingMethod::Cash)),
            Err(e) => return refusal(StatusCode::SERVICE_UNAVAILABLE, Some(&s), &format!("reading fundings: {e}")),
        }
    }
    let body = html! {
        p { "Envelopes of cash (registered mail) to count. Above the dual-control limit a second operator, "
            "not the first, counts again; the value is issued when the two counts agree." }
        table id="cash" {
            thead { tr { th { "Funding" } th { "Prepaid card" } th { "Asked" } th { "Status" } th { "Reference" }
                         th { "Count" } } }
            tbody { @for f in &fundings {
                tr {
                    td { code { (f.funding_id) } } td { code { (f.prepaid_id) } } td class="num" { (f.amount) }
                    td { (f.status.as_str()) } td { (f.reference.clone().unwrap_or_default()) }
                    td {
                        form class="inline" method="post" action={"/console/cash/" (f.funding_id)} {
                            input type="hidden" name="form_token" value=(s.form_token);
                            input type="hidden" name="currency" value=(f.amount.currency().code());
                            input name="amount_minor" inputmode="numeric" required size="10"
                                aria-label={"Counted, in minor units of " (f.amount.currency().code())};
                            button type="submit" { "Record count" }
                        }
                    }
                }
            } }
        }
        @if fundings.is_empty() { p { "No envelope waits." } }
    };
    page(StatusCode::OK, layout("Cash", Some(&s), body))
}

#[derive(Deserialize)]
struct CashForm {
    form_token: String,
    currency: String,
    amount_minor: String,
}

async fn count_cash(
    State(state): State<ConsoleState>,
    s: Session,
    Path(id): Path<String>,
    Form(f): Form<CashForm>,
) -> Response {
    if let Some(refused) = s.refused(&f.form_token, Role::Operator) {
        return refused;
    }
    let counted = kessai_core::Currency::parse(&f.currency)
        .ok()
        .zip(f.amount_minor.trim().parse::<u64>().ok())
        .and_then(|(currency, minor)| kessai_core::Money::new(minor, currency).ok());
    let Some(counted) = counted else {
        return refusal(StatusCode::BAD_REQUEST, Some(&s), "The count is a whole number of minor units.");
    };
    match state.center.record_cash(&id, counted, &s.actor()).await {
        Ok(_) => Redirect::to("/console/cash").into_response(),
        Err(e) => {
            let refused = crate::prepaid_api::prepaid_api_error(e);
            refusal(refused.status(), Some(&s), &format!("The count was not recorded: {refused}"))
        }
    }
}

/// Bank and postal credits that matched no funding, for an operator to
/// apply to the funding they pay.
async fn bank_credits(State(state): State<ConsoleState>, s: Session) -> Response {
    let credits = match state.center.bank_credits_in("suspense").await {
        Ok(credits) => credits,
        Err(e) => return refusal(StatusCode::SERVICE_UNAVAILABLE, Some(&s), &format!("reading credits: {e}")),
    };
    let body = html! {
        p { "Credits in suspense: a partial payment, a mistyped reference. Apply one to the funding of its kind "
            "that awaits it, and the amount received is issued to that funding's card; or, as an approver, return "
            "it to whoever paid it: the money leaves the pool and nothing is issued (say how it was sent back)." }
        table id="credits" {
            thead { tr { th { "Entry" } th { "Booked" } th { "Amount" } th { "Reference" } th { "Remitter" }
                         th { "Why" } th { "Apply to funding" } th { "Return" } } }
            tbody { @for c in &credits {
                tr {
                    td { code { (c.entry_key) } } td { (c.booked_on) } td class="num" { (c.amount) }
                    td { (c.reference.clone().unwrap_or_default()) } td { (c.remitter.clone().unwrap_or_default()) }
                    td { (c.reason.clone().unwrap_or_default()) }
                    td {
                        form class="inline" method="post" action="/console/bank-credits/apply" {
                            input type="hidden" name="form_token" value=(s.form_token);
                            input type="hidden" name="entry_key" value=(c.entry_key);
                            input name="funding_id" required size="38" placeholder="fnd_…" aria-label="Funding";
                            button type="submit" { "Apply" }
                        }
                    }
                    td {
                        form class="inline" method="post" action="/console/bank-credits/return" {
                            input type="hidden" name="form_token" value=(s.form_token);
                            input type="hidden" name="entry_key" value=(c.entry_key);
                            input name="reason" required maxlength="500" size="24" placeholder="how it was sent back"
                                aria-label="How it was returned";
                            button type="submit" { "Return" }
                        }
                    }
                }
            } }
        }
        @if credits.is_empty() { p { "No credit is in suspense." } }
    };
    page(StatusCode::OK, layout("Bank credits", Some(&s), body))
}

#[derive(Deserialize)]
struct ReturnForm {
    form_token: String,
    entry_key: String,
    #[serde(default)]
    reason: String,
}

/// Money leaves the center: an approver's.
async fn return_credit(State(state): State<ConsoleState>, s: Session, Form(f): Form<ReturnForm>) -> Response {
    if let Some(refused) = s.refused(&f.form_token, Role::Approver) {
        return refused;
    }
    let reason = match s.reason(&f.reason, "A return needs a note") {
        Ok(reason) => reason,
        Err(refused) => return *refused,
    };
    match state.center.return_suspense(&f.entry_key, reason, &s.actor()).await {
        Ok(_) => Redirect::to("/console/bank-credits").into_response(),
        Err(e) => {
            let refused = crate::prepaid_api::prepaid_api_error(e);
            refusal(refused.status(), Some(&s), &format!("The credit was not returned: {refused}"))
        }
    }
}

#[derive(Deserialize)]
struct ApplyForm {
    form_token: String,
    entry_key: String,
    funding_id: String,
}

async fn apply_credit(State(state): State<ConsoleState>, s: Session, Form(f): Form<ApplyForm>) -> Response {
    if let Some(refused) = s.refused(&f.form_token, Role::Operator) {
        return refused;
    }
    match state.center.apply_suspense(&f.entry_key, f.funding_id.trim(), &s.actor()).await {
        Ok(_) => Redirect::to("/console/bank-credits").into_response(),
        Err(e) => {
            let refused = crate::prepaid_api::prepaid_api_error(e);
            refusal(refused.status(), Some(&s), &format!("The credit was not applied: {refused}"))
        }
    }
}

/// Cards reported lost or blocked: what the books hold on each, the
/// settlements still open on it (voided once past their deadline), and
/// the card that takes its value over (M8).
async fn lost_cards(State(state): State<ConsoleState>, s: Session) -> Response {
    let c = &state.center;
    let cards = match c.db.cards_not_active(PAGE_ROWS).await {
        Ok(cards) => cards,
        Err(e) => return refusal(StatusCode::SERVICE_UNAVAILABLE, Some(&s), &format!("reading cards: {e}")),
    };
    let mut rows = Vec::with_capacity(cards.len());
    for card in cards {
        let float = c.books.card_float(&card.id).await.ok().flatten().unwrap_or((0, 0));
        let query =
            SettlementQuery { card: Some(card.id), phase: Some(Phase::Offered), limit: 20, ..Default::default() };
        let open = c.db.list_settlements(&query).await.map(|p| p.settlements).unwrap_or_default();
        rows.push((card, float, open));
    }
    let body = html! {
        form method="post" action="/console/lost-cards" {
            input type="hidden" name="form_token" value=(s.form_token);
            label { "Card " input name="card" required size="18" placeholder="16 hex digits"; }
            label { "Report it "
                select name="status" { option value="lost" { "lost" } option value="blocked" { "blocked" } } }
            label { "Reason " input name="reason" required size="30"; }
            button type="submit" { "Report" }
        }
        table id="lost-cards" {
            thead { tr { th { "Card" } th { "Status" } th { "Float" } th { "Held" } th { "Open settlements" }
                         th { "Replace by" } } }
            tbody { @for (card, (float, held), open) in &rows {
                tr {
                    td { a href={"/console/cards/" (card.id)} { (card.id) } }
                    td { (format!("{:?}", card.status).to_lowercase()) }
                    td class="num" { (float) } td class="num" { (held) }
                    td { @for st in open {
                        form class="inline" method="post" action={"/console/lost-cards/" (card.id) "/void/" (st.id)} {
                            code { (st.id) } " " (st.bill.amount) " "
                            input type="hidden" name="form_token" value=(s.form_token);
                            input name="reason" required size="16" placeholder="reason" aria-label="Reason for voiding";
                            button type="submit" { "Void" }
                        }
                        br;
                    } }
                    td {
                        form class="inline" method="post" action={"/console/lost-cards/" (card.id) "/replace"} {
                            input type="hidden" name="form_token" value=(s.form_token);
                            input name="replacement" required size="18" placeholder="new card" aria-label="Replacement card";
                            input name="reason" required size="16" placeholder="reason" aria-label="Reason for replacing";
                            button type="submit" { "Replace" }
                        }
                    }
                }
            } }
        }
        @if rows.is_empty() { p { "No card is reported lost or blocked." } }
    };
    page(StatusCode::OK, layout("Lost cards", Some(&s), body))
}

#[derive(Deserialize)]
struct ReportForm {
    form_token: String,
    card: String,
    status: String,
    reason: String,
}

/// An operator reports a card lost or blocked (a lost card stays lost).
async fn report_card(State(state): State<ConsoleState>, s: Session, Form(f): Form<ReportForm>) -> Response {
    use crate::purchase::CardRegistryStatus;
    if let Some(refused) = s.refused(&f.form_token, Role::Operator) {
        return refused;
    }
    let status = match f.status.as_str() {
        "lost" => CardRegistryStatus::Lost,
        "blocked" => CardRegistryStatus::Blocked,
        _ => return refusal(StatusCode::BAD_REQUEST, Some(&s), "A card is reported lost or blocked."),
    };
    let Ok(card) = CardId::parse(f.card.trim()) else {
        return refusal(StatusCode::BAD_REQUEST, Some(&s), "A card id is 16 hex digits.");
    };
    let reason = match s.reason(&f.reason, "A report needs a reason") {
        Ok(reason) => reason,
        Err(refused) => return *refused,
    };
    let after = serde_json::json!({ "status": status, "reason": reason });
    let trail = s.actor().did("card_status", &card.to_string(), serde_json::Value::Null, after);
    let now = state.center.clock.now();
    match state.center.db.set_card_status(&card, status, reason, now, trail).await {
        Ok(crate::db::StatusChange::Changed) => Redirect::to("/console/lost-cards").into_response(),
        Ok(crate::db::StatusChange::UnknownCard) => refusal(StatusCode::NOT_FOUND, Some(&s), "No such card."),
        Ok(crate::db::StatusChange::LostIsFinal) => {
            refusal(StatusCode::CONFLICT, Some(&s), "The card is lost already, which is final.")
        }
        Err(e) => refusal(StatusCode::SERVICE_UNAVAILABLE, Some(&s), &format!("The card was not reported: {e}")),
    }
}

async fn void_lost(
    State(state): State<ConsoleState>,
    s: Session,
    Path((_card, id)): Path<(String, String)>,
    Form(f): Form<DecisionForm>,
) -> Response {
    if let Some(refused) = s.refused(&f.form_token, Role::Approver) {
        return refused;
    }
    let reason = match s.reason(&f.reason, "Voiding needs a reason") {
        Ok(reason) => reason,
        Err(refused) => return *refused,
    };
    match state.center.void_lost_card(&id, reason, &s.actor()).await {
        Ok(_) => Redirect::to("/console/lost-cards").into_response(),
        Err(e) => {
            let refused = crate::api::api_error(e);
            refusal(refused.status(), Some(&s), &format!("The settlement was not voided: {refused}"))
        }
    }
}

#[derive(Deserialize)]
struct ReplaceForm {
    form_token: String,
    replacement: String,
    reason: String,
}

async fn replace_card(
    State(state): State<ConsoleState>,
    s: Session,
    Path(card): Path<String>,
    Form(f): Form<ReplaceForm>,
) -> Response {
    if let Some(refused) = s.refused(&f.form_token, Role::Approver) {
        return refused;
    }
    let (Ok(old), Ok(new)) = (CardId::parse(&card), CardId::parse(f.replacement.trim())) else {
        return refusal(StatusCode::BAD_REQUEST, Some(&s), "A card id is 16 hex digits.");
    };
    match state.center.replace_card(old, new, &f.reason, &s.actor()).await {
        Ok(_) => Redirect::to("/console/lost-cards").into_response(),
        Err(e) => {
            let refused = crate::update_api::update_api_error(e);
            refusal(refused.status(), Some(&s), &format!("The card was not replaced: {refused}"))
        }
    }
}

/// What the examination of collected card logs found to differ from the
/// books, open ones first to last.
async fn differences(State(state): State<ConsoleState>, s: Session) -> Response {
    let open = match state.center.db.differences(true, PAGE_ROWS).await {
        Ok(open) => open,
        Err(e) => return refusal(StatusCode::SERVICE_UNAVAILABLE, Some(&s), &format!("reading differences: {e}")),
    };
    let body = html! {
        p { "A card's own log telling another story than the books (a transaction the books lack, an amount or "
            "a balance that differs). Resolve one once what happened is found and put right; say what in the note." }
        table id="differences" {
            thead { tr { th { "Difference" } th { "Found" } th { "Card" } th { "Kind" } th { "Counter" }
                         th { "What" } th { "Resolve" } } }
            tbody { @for d in &open {
                tr {
                    td { code { (d.id) } } td { (Timestamp::from_unix_s(d.found_at).utc()) }
                    td { a href={"/console/cards/" (d.card_id)} { (d.card_id) } } td { (d.kind) }
                    td class="num" { (d.counter) } td { (d.detail) }
                    td {
                        form class="inline" method="post" action={"/console/differences/" (d.id) "/resolve"} {
                            input type="hidden" name="form_token" value=(s.form_token);
                            input name="reason" required placeholder="what was found and done" aria-label="Note";
                            button type="submit" { "Resolve" }
                        }
                    }
                }
            } }
        }
        @if open.is_empty() { p { "No difference is open." } }
    };
    page(StatusCode::OK, layout("Differences", Some(&s), body))
}

async fn resolve_difference(
    State(state): State<ConsoleState>,
    s: Session,
    Path(id): Path<String>,
    Form(f): Form<DecisionForm>,
) -> Response {
    if let Some(refused) = s.refused(&f.form_token, Role::Operator) {
        return refused;
    }
    let note = match s.reason(&f.reason, "A resolution needs a note") {
        Ok(note) => note,
        Err(refused) => return *refused,
    };
    match state.center.db.resolve_difference(&id, &s.actor(), note, state.center.clock.now()).await {
        Ok(true) => Redirect::to("/console/differences").into_response(),
        Ok(false) => refusal(StatusCode::CONFLICT, Some(&s), "No such open difference: resolved already?"),
        Err(e) => refusal(StatusCode::SERVICE_UNAVAILABLE, Some(&s), &format!("The difference was not resolved: {e}")),
    }
}

#[derive(Deserialize, Default)]
struct TrailQuery {
    #[serde(default)]
    subject: String,
    before: Option<i64>,
}

async fn trail(State(state): State<ConsoleState>, s: Session, Query(q): Query<TrailQuery>) -> Response {
    let subject = Some(q.subject.trim()).filter(|v| !v.is_empty());
    let rows = state.center.db.trail(subject, q.before, PAGE_ROWS).await;
    let chain = state.center.db.check_trail().await;
    let body = html! {
        @match &chain {
            Ok(Ok(n)) => p class="ok" id="chain" { "The trail's chain is whole: " (n) " changes, each sealed to the one before it." },
            Ok(Err(seq)) => p class="alert" role="alert" id="chain" { "The trail's chain breaks at change " (seq) ": it was altered." },
            Err(e) => p class="alert" role="alert" id="chain" { "The chain could not be checked: " (e.to_string()) },
        }
        form method="get" action="/console/trail" role="search" {
            label { "Subject " input name="subject" value=(q.subject); }
            button type="submit" { "Filter" }
        }
        @match &rows {
            Err(e) => p class="alert" role="alert" { (e.to_string()) },
            Ok(rows) => {
                table id="trail" {
                    thead { tr { th { "#" } th { "When" } th { "Who" } th { "Role" } th { "What" } th { "On" }
                                 th { "Before" } th { "After" } } }
                    tbody { @for r in rows {
                        tr {
                            td class="num" { (r.seq) } td { (r.at.utc()) } td { (r.entry.operator) } td { (r.entry.role) }
                            td { (r.entry.action) } td { code { (r.entry.subject) } }
                            td { code { (r.entry.before) } } td { code { (r.entry.after) } }
                        }
                    } }
                }
                @if let Some(last) = rows.last().filter(|_| rows.len() as i64 == PAGE_ROWS) {
                    p { a rel="next" href={"/console/trail?before=" (last.seq) "&subject=" (q.subject.trim())} { "Older changes →" } }
                }
            }
        }
    };
    page(StatusCode::OK, layout("Operator trail", Some(&s), body))
}

#[derive(Deserialize)]
struct StatisticsQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    by: String,
    #[serde(default)]
    currency: String,
}

impl StatisticsQuery {
    /// The period asked for; with no fields, the last 31 days in yen.
    fn period(&self, now: Timestamp) -> Result<Period, String> {
        if self.from.is_empty() && self.to.is_empty() && self.by.is_empty() && self.currency.is_empty() {
            return Ok(Period::last_days(now, 31, Currency::parse("JPY").map_err(|e| e.to_string())?));
        }
        let currency = if self.currency.is_empty() { "JPY" } else { self.currency.as_str() };
        Period::parse(&self.from, &self.to, &self.by, currency)
    }
}

/// The report for a query, or the page saying why there is none.
async fn report_for(state: &ConsoleState, s: &Session, q: &StatisticsQuery) -> Result<Report, Response> {
    let period = q.period(state.center.clock.now()).map_err(|why| refusal(StatusCode::BAD_REQUEST, Some(s), &why))?;
    Report::make(&state.center, period).await.map_err(|e| {
        tracing::error!(error = %e, "statistics failed");
        refusal(StatusCode::SERVICE_UNAVAILABLE, Some(s), "The statistics could not be read; try again.")
    })
}

async fn statistics(State(state): State<ConsoleState>, s: Session, Query(q): Query<StatisticsQuery>) -> Response {
    let report = match report_for(&state, &s, &q).await {
        Ok(report) => report,
        Err(refused) => return refused,
    };
    let p = report.period;
    let body = html! {
        form method="get" action="/console/statistics" {
            label { "From " input type="date" name="from" value=(p.from) required; }
            label { "To " input type="date" name="to" value=(p.to) required; }
            label { "By "
                select name="by" {
                    option value="day" selected[p.grain == Grain::Day] { "day" }
                    option value="month" selected[p.grain == Grain::Month] { "month" }
                }
            }
            label { "Currency " input name="currency" value=(p.currency.code()) size="4"; }
            button type="submit" { "Show" }
        }
        p { a href={"/console/statistics.csv?" (p.query())} download { "CSV" } " · "
            a href={"/console/statistics.pdf?" (p.query())} { "Printable report (PDF)" } }
        (report.html())
    };
    page(StatusCode::OK, layout("Statistics", Some(&s), body))
}

/// A download: its type, a file name, and no caching.
fn download(content_type: &'static str, disposition: &str, name: String, body: Vec<u8>) -> Response {
    let disposition = HeaderValue::from_str(&format!("{disposition}; filename=\"{name}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    let mut response = (StatusCode::OK, body).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_DISPOSITION, disposition);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

fn report_name(p: &Period, extension: &str) -> String {
    format!("kessai-statistics-{}-{}-{}-{}.{extension}", p.currency.code(), p.grain.as_str(), p.from, p.to)
}

async fn statistics_csv(State(state): State<ConsoleState>, s: Session, Query(q): Query<StatisticsQuery>) -> Response {
    match report_for(&state, &s, &q).await {
        Ok(r) => download("text/csv; charset=utf-8", "attachment", report_name(&r.period, "csv"), r.csv().into_bytes()),
        Err(refused) => refused,
    }
}

async fn statistics_pdf(State(state): State<ConsoleState>, s: Session, Query(q): Query<StatisticsQuery>) -> Response {
    match report_for(&state, &s, &q).await {
        Ok(r) => download("application/pdf", "inline", report_name(&r.period, "pdf"), r.pdf()),
        Err(refused) => refused,
    }
}

/// Payouts the bank rejected or gave back: what came back is on the
/// store's payable again, and the next run pays it to the store's account
/// as it then stands; one still going to the account that failed needs a
/// corrected account (an approver's) or a word with the store.
async fn failed_payouts(State(state): State<ConsoleState>, s: Session) -> Response {
    let c = &state.center;
    let failed = match c.db.failed_payouts(PAGE_ROWS).await {
        Ok(failed) => failed,
        Err(e) => return refusal(StatusCode::SERVICE_UNAVAILABLE, Some(&s), &format!("reading payouts: {e}")),
    };
    let mut rows = Vec::with_capacity(failed.len());
    for p in failed {
        let now = match c.db.store(&p.store).await {
            Ok(store) => store.and_then(|r| r.bank_account),
            Err(e) => return refusal(StatusCode::SERVICE_UNAVAILABLE, Some(&s), &format!("reading stores: {e}")),
        };
        rows.push((p, now));
    }
    let body = html! {
        p { "Payouts the bank rejected or returned. Their amount is owed to the store again and goes out with the "
            "next clearing run, to the account the store has then. Correct the account where the bank said it is "
            "wrong (approver); the change is in the trail." }
        table id="failed-payouts" {
            thead { tr { th { "Payout" } th { "Failed" } th { "Store" } th { "Amount" } th { "Paid to" }
                         th { "Bank's reason" } th { "Account now" } } }
            tbody { @for (p, now) in &rows {
                tr {
                    td { code { (p.id) } } td { (p.updated_at.utc()) } td { (p.store) }
                    td class="num" { (crate::statistics::money(i64::try_from(p.amount_minor).unwrap_or(i64::MAX), p.currency)) }
                    td { code { (p.payee_account) } } td { (p.reason.clone().unwrap_or_default()) }
                    td {
                        @if now.as_deref() == Some(p.payee_account.as_str()) {
                            strong { "the same: it would fail again" }
                        } @else {
                            code { (now.clone().unwrap_or_else(|| "none".into())) }
                        }
                        form class="inline" method="post" action={"/console/payouts/" (p.store) "/account"} {
                            input type="hidden" name="form_token" value=(s.form_token);
                            input type="hidden" name="was" value=(now.clone().unwrap_or_default());
                            input name="account" required size="30" placeholder="zengin:0001-001-1-1234567:ﾅﾏｴ"
                                aria-label={"New account for " (p.store)};
                            input name="reason" required maxlength="500" size="18" placeholder="why"
                                aria-label={"Why, for " (p.store)};
                            button type="submit" { "Correct" }
                        }
                    }
                }
            } }
        }
        @if rows.is_empty() { p { "No payout has failed." } }
    };
    page(StatusCode::OK, layout("Failed payouts", Some(&s), body))
}

#[derive(Deserialize)]
struct AccountForm {
    form_token: String,
    #[serde(default)]
    was: String,
    #[serde(default)]
    account: String,
    #[serde(default)]
    reason: String,
}

/// Where money goes: an approver's.
async fn correct_account(
    State(state): State<ConsoleState>,
    s: Session,
    Path(store): Path<String>,
    Form(f): Form<AccountForm>,
) -> Response {
    if let Some(refused) = s.refused(&f.form_token, Role::Approver) {
        return refused;
    }
    let Ok(store) = kessai_core::ids::StoreId::parse(&store) else {
        return refusal(StatusCode::NOT_FOUND, Some(&s), "No such store.");
    };
    let reason = match s.reason(&f.reason, "A correction needs a reason") {
        Ok(reason) => reason,
        Err(refused) => return *refused,
    };
    // The console corrects an account the bank refused, no other: where
    // any store is paid is the admin API's (`POST /v1/admin/stores`).
    match state.center.db.has_failed_payout(&store).await {
        Ok(true) => {}
        Ok(false) => {
            return refusal(StatusCode::CONFLICT, Some(&s), "No payout of that store failed: nothing to correct.");
        }
        Err(e) => return refusal(StatusCode::SERVICE_UNAVAILABLE, Some(&s), &format!("reading payouts: {e}")),
    }
    use crate::clearing::ClearingError as E;
    match state.center.correct_bank_account(&store, Some(&f.was), &f.account, reason, &s.actor()).await {
        Ok(_) => Redirect::to("/console/payouts").into_response(),
        Err(e @ E::UnknownStore(_)) => refusal(StatusCode::NOT_FOUND, Some(&s), &e.to_string()),
        Err(e @ E::BadAccount(_)) => refusal(StatusCode::BAD_REQUEST, Some(&s), &e.to_string()),
        Err(e @ E::AccountChanged(_)) => refusal(StatusCode::CONFLICT, Some(&s), &e.to_string()),
        Err(e) => {
            tracing::error!(error = %e, "correcting a bank account failed");
            refusal(StatusCode::SERVICE_UNAVAILABLE, Some(&s), "The account was not changed; try again.")
        }
    }
}
