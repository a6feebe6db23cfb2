//! The local web UI (served with `kessai_http::serve_plain`, loopback only).
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/` | card and recent payments (FIG. 16) |
//! | POST | `/pay` | form `bill`, `return_url` from the store's page → the bill for review; nothing is sent anywhere |
//! | POST | `/pay/start` | form `bill`, `return_url`, `form_token` from the review page → center offer → consent page (FIG. 18) |
//! | POST | `/settlements/{id}/consent` | form `consent_token` → relay, complete, SIG3 → processing page (FIG. 19) |
//! | POST | `/settlements/{id}/cancel` | form `consent_token` → recovery → "nothing was charged" |
//! | GET | `/settlements/{id}` | the settlement's state; 303 to `return_url` once SIG4 verified |
//! | GET | `/charge` | charging chosen: "put your card on the reader" (FIG. 25–26) |
//! | GET | `/charge/card` | card id, balance, charge history, amount and credit-card form (FIG. 27–28) |
//! | POST | `/charges` | form `form_token`, `amount`, `card_number`, `expiry`, `cvc` → relay, complete → new balance (FIG. 29–31) |
//! | GET | `/member` | the member's history: password A asked (FIG. 11) |
//! | GET | `/card` | the card's history: a button (a secure session at the center) |
//! | POST | `/card/history` | form `form_token` → the card's own log and its deposit tokens, each read through a secure session |
//! | POST | `/member/history` | form `password_a` → the history and what the keystore holds (FIG. 11(a)); offline |
//! | GET | `/healthz` | `ok` |

use std::sync::Arc;

use axum::Form;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use kessai_core::{Currency, Money};
use maud::Markup;
use serde::Deserialize;

use crate::charge::{ChargeError, PaymentCardInput};
use crate::limits::{RECEIPT_WAIT_S, RECENT_RECORDS};
use crate::pages;
use crate::records::LocalPhase;
use crate::wallet::{Outcome, PayError, ReviewView, Wallet, bound_return_url, safe_return_url};

type Shared = Arc<Wallet>;

/// Every route of the UI, with security headers on every answer.
pub fn router(wallet: Shared) -> Router {
    let limits = kessai_http::Limits::default();
    let metrics = kessai_http::HttpMetrics::new("wallet");
    let app = Router::new()
        .route("/", get(home))
        .route("/healthz", get(|| async { "ok" }))
        .route("/pay", post(pay))
        .route("/pay/start", post(pay_start))
        .route("/settlements/{id}", get(status))
        .route("/settlements/{id}/consent", post(consent))
        .route("/settlements/{id}/cancel", post(cancel))
        .route("/charge", get(charge_start))
        .route("/charge/card", get(charge_card))
        .route("/charges", post(charge))
        .route("/pay/prepaid", post(pay_prepaid))
        .route("/pay/token", post(pay_token_choose))
        .route("/pay/token/confirm", post(pay_token_confirm))
        .route("/prepaid", get(prepaid_ask).post(prepaid_cards))
        .route("/card", get(card_ask))
        .route("/card/history", post(card_history))
        .route("/member", get(member_ask))
        .route("/member/history", post(member_history))
        .with_state(wallet)
        .layer(axum::middleware::from_fn(only_its_cardholder))
        .layer(axum::middleware::map_response(security_headers));
    kessai_http::apply_standard_layers(app, &limits, &metrics)
}

/// The wallet answers only its cardholder's browser (H1). A page on any
/// other host name that resolves to 127.0.0.1 (DNS rebinding) sends its own
/// name in `Host`: refused. Every state-changing POST must come from the
/// wallet's own pages: `Origin` is `http://` and the very `Host`, and
/// `Sec-Fetch-Site`, where sent, is `same-origin`. The one exception is
/// `/pay`, which a store's page posts a bill to by design, and which only
/// shows that bill: nothing reaches the center, nothing is held, until the
/// cardholder continues from that page (`/pay/start`, same origin, with
/// the wallet's form token) (M2).
async fn only_its_cardholder(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if let Some(why) = refusal(&request) {
        return refused(why);
    }
    next.run(request).await
}

/// Why `request` is not the cardholder's, if it is not.
fn refusal(request: &axum::extract::Request) -> Option<&'static str> {
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    let host = header("host").unwrap_or_default();
    if !is_loopback_host(host) {
        tracing::warn!(host, "refused a request for another host name");
        return Some("This wallet answers only at 127.0.0.1 or localhost.");
    }
    if request.method() == axum::http::Method::POST && request.uri().path() != "/pay" {
        let own = format!("http://{host}");
        if header("origin") != Some(own.as_str()) || header("sec-fetch-site").is_some_and(|s| s != "same-origin") {
            tracing::warn!(host, origin = header("origin").unwrap_or("-"), "refused a post from another origin");
            return Some("This form must be sent from the wallet's own page.");
        }
    }
    None
}

/// `127.0.0.1`, `localhost` or `[::1]`, with an optional port.
fn is_loopback_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(':') && !port.contains(']') => (name, Some(port)),
        _ => (host, None),
    };
    matches!(name, "127.0.0.1" | "localhost" | "[::1]")
        && port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

fn refused(why: &str) -> Response {
    html(StatusCode::FORBIDDEN, pages::problem("Refused", why, None))
}

/// No framing (the consent page must not be clickjacked), no scripts, no
/// caching of pages that show balances, forms post only to the wallet.
async fn security_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // `same-origin`, not `no-referrer`: under `no-referrer` a browser sends
    // `Origin: null` on the wallet's own form posts, which the origin check
    // must refuse; to other sites (the store it returns to) nothing is sent.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn html(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

/// One place maps every failure to a status and a page in words.
fn failure(e: &PayError, return_url: Option<&str>) -> Response {
    let back = return_url.filter(|u| safe_return_url(u).is_ok());
    let (status, title) = match e {
        PayError::Insufficient { .. } => (StatusCode::PAYMENT_REQUIRED, "Insufficient balance"),
        // A prepaid card's value, as the center answered (#18).
        PayError::Center(c) if c.code() == Some(kessai_api::ErrorCode::InsufficientBalance) => {
            (StatusCode::PAYMENT_REQUIRED, "Insufficient balance")
        }
        PayError::Voided(_) => (StatusCode::OK, "Payment voided"),
        PayError::TokenUnfinished { .. } => (StatusCode::ACCEPTED, "Payment not finished"),
        PayError::UnsafeReturnUrl(_)
        | PayError::NotTheStoresAddress { .. }
        | PayError::BillWithoutOrigin
        | PayError::OtherCenter { .. }
        | PayError::BillTooLarge
        | PayError::BillUnreadable(_)
        | PayError::HandOff(_) => (StatusCode::BAD_REQUEST, "This payment request is invalid"),
        PayError::Card(_) | PayError::CardBlocked => (StatusCode::SERVICE_UNAVAILABLE, "Your card cannot be used"),
        PayError::OfferUnverified(_) | PayError::OfferMismatch(_) => {
            (StatusCode::BAD_GATEWAY, "The offer was refused; nothing was charged")
        }
        PayError::CompletionUnverified(_) | PayError::CompletionMismatch(_) => {
            (StatusCode::BAD_GATEWAY, "The center's confirmation did not verify")
        }
        PayError::ReceiptUnverified(_) | PayError::ReceiptMismatch(_) => {
            (StatusCode::BAD_GATEWAY, "Paid, but the store's receipt did not verify")
        }
        PayError::UnknownSettlement(_) => (StatusCode::NOT_FOUND, "No such payment"),
        PayError::WrongPhase { .. } => (StatusCode::CONFLICT, "This payment has moved on"),
        PayError::BadConsentToken => (StatusCode::FORBIDDEN, "This form does not belong to the payment"),
        PayError::MemberKey(_) => {
            (StatusCode::FORBIDDEN, "Your passwords did not open your member key; nothing was charged")
        }
        PayError::Records(_) => {
            tracing::error!(error = %e, "local records failed");
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::problem("Something went wrong", "The wallet could not read its records.", back),
            );
        }
        _ => (StatusCode::BAD_GATEWAY, "The payment did not go through"),
    };
    html(status, pages::problem(title, &e.to_string(), back))
}

async fn home(State(w): State<Shared>) -> Response {
    let card = w.card_summary().await.map_err(|e| e.to_string());
    let recent = match w.records().recent(RECENT_RECORDS).await {
        Ok(r) => r,
        Err(e) => return failure(&PayError::Records(e), None),
    };
    html(StatusCode::OK, pages::home(card.as_ref().map_err(Clone::clone), &recent))
}

#[derive(Deserialize)]
struct PayForm {
    bill: String,
    return_url: String,
    /// `prepaid`: the store's page asked for the virtual prepaid card.
    #[serde(default)]
    method: Option<String>,
}

async fn pay(State(w): State<Shared>, form: Result<Form<PayForm>, FormRejection>) -> Response {
    let Ok(Form(form)) = form else {
        let e = PayError::HandOff("the form needs `bill` and `return_url`".into());
        return failure(&e, None);
    };
    match w.review(&form.bill, &form.return_url) {
        Ok(review) => {
            // The second embodiment shows the card's balance with the bill
            // (FIG. 21), read from the card here; nothing goes to the center.
            let card_balance = match w.profile() {
                kessai_core::profile::Profile::Offer => None,
                _ => w.card_summary().await.ok().map(|card| card.balance),
            };
            let prepaid_first = form.method.as_deref() == Some("prepaid");
            let review = ReviewView { prepaid_first, card_balance, ..review };
            html(StatusCode::OK, pages::review(&review))
        }
        // A link back only to the store's own address, as its bill says.
        Err(e) => failure(&e, bound_return_url(&form.bill, &form.return_url)),
    }
}

/// The review's form: the bill, the launch's form token, and for a member
/// the passwords that open the signing key (zeroized when dropped; never
/// written back into a page or a log).
#[derive(Deserialize)]
struct StartForm {
    bill: String,
    return_url: String,
    form_token: String,
    #[serde(default)]
    password_a: Option<zeroize::Zeroizing<String>>,
    #[serde(default)]
    password_b: Option<zeroize::Zeroizing<String>>,
}

async fn pay_start(State(w): State<Shared>, form: Result<Form<StartForm>, FormRejection>) -> Response {
    let Ok(Form(form)) = form else {
        let e = PayError::HandOff("the form needs `bill`, `return_url` and `form_token`".into());
        return failure(&e, None);
    };
    if !w.is_form_token(&form.form_token) {
        tracing::warn!("refused a payment start without this wallet's form token");
        return failure(&PayError::BadConsentToken, None);
    }
    // A member signs the payment instruction with the key its passwords
    // open (#12); the center refuses a member's card without it.
    let (signer, session) = match member_signer(&w, form.password_a.as_ref(), form.password_b.as_ref()).await {
        Ok(found) => found,
        Err(e) => return failure(&e, bound_return_url(&form.bill, &form.return_url)),
    };
    match w.begin_as(&form.bill, &form.return_url, signer.as_ref(), &mut |_| {}).await {
        Ok(offered) => {
            let view = offered.view();
            // The purchase goes into the member's history once it completes.
            if let Some(session) = session {
                w.hold_member_session(view.settlement_id.as_str(), session);
            }
            html(StatusCode::OK, pages::consent(&view))
        }
        Err(e) => failure(&e, bound_return_url(&form.bill, &form.return_url)),
    }
}

/// The member's signer and keystore session, when this wallet is a
/// member's and password A was given; none otherwise.
async fn member_signer(
    w: &Shared,
    password_a: Option<&zeroize::Zeroizing<String>>,
    password_b: Option<&zeroize::Zeroizing<String>>,
) -> Result<
    (Option<(kessai_core::ids::PartyId, kessai_core::keys::SigningKey)>, Option<crate::wallet::MemberSession>),
    PayError,
> {
    match (password_a, w.member_number()) {
        (Some(a), Some(_)) if !a.is_empty() => {
            let (a, b) = passwords(a, password_b);
            let s = open_signer(w, a, b).await?;
            Ok((Some((s.member, s.key)), Some(s.session)))
        }
        _ => Ok((None, None)),
    }
}

#[derive(Deserialize)]
struct ConsentForm {
    consent_token: String,
}

async fn consent(
    State(w): State<Shared>,
    Path(id): Path<String>,
    form: Result<Form<ConsentForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else { return failure(&PayError::BadConsentToken, None) };
    let offered = match w.offered(&id).await {
        Ok(o) => o,
        Err(e) => return failure(&e, None),
    };
    let sid = offered.view().settlement_id.to_string();
    match w.consent(offered, &form.consent_token).await {
        Ok(done) => {
            w.record_member_purchase(&sid).await;
            html(StatusCode::OK, pages::processing(done.settlement_id.as_str(), &done.amount.to_string(), None))
        }
        Err(e) => match w.record(&sid).await {
            Ok(rec) if rec.phase == LocalPhase::DebitRelayed => unfinished(&e.to_string(), Some(&rec.return_url)),
            Ok(rec) => failure(&e, Some(&rec.return_url)),
            Err(_) => failure(&e, None),
        },
    }
}

/// The DEBIT went to the card but the center has not confirmed it.
fn unfinished(why: &str, return_url: Option<&str>) -> Response {
    let text = format!(
        "Your card may have paid, but the center has not confirmed it yet ({why}). \
         Run `kessai wallet recover` to finish it; you are never charged twice."
    );
    let back = return_url.filter(|u| safe_return_url(u).is_ok());
    html(StatusCode::ACCEPTED, pages::problem("Payment not finished", &text, back))
}

async fn cancel(
    State(w): State<Shared>,
    Path(id): Path<String>,
    form: Result<Form<ConsentForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else { return failure(&PayError::BadConsentToken, None) };
    let return_url = w.record(&id).await.ok().map(|r| r.return_url).filter(|u| safe_return_url(u).is_ok());
    let cancelled = w.cancel(&id, &form.consent_token).await;
    if matches!(cancelled, Ok(Outcome::Voided { .. })) {
        w.drop_member_session(&id);
    }
    match cancelled {
        Ok(Outcome::Voided { .. }) => html(
            StatusCode::OK,
            pages::not_charged("Payment cancelled", "Cancelled; nothing was charged.", return_url.as_deref()),
        ),
        Ok(other) => {
            let text = format!("The cancellation did not finish ({other:?}). The wallet will try again.");
            html(StatusCode::BAD_GATEWAY, pages::problem("Cancellation pending", &text, return_url.as_deref()))
        }
        Err(e) => failure(&e, return_url.as_deref()),
    }
}

/// The processing page's target: 303 to the store once SIG4 verified.
async fn status(State(w): State<Shared>, Path(id): Path<String>) -> Response {
    let rec = match w.record(&id).await {
        Ok(r) => r,
        Err(e) => return failure(&e, None),
    };
    let back = Some(rec.return_url.as_str()).filter(|u| safe_return_url(u).is_ok());
    match rec.phase {
        LocalPhase::Completed | LocalPhase::Receipted => match w.poll_receipt(&id).await {
            // Only the return_url handed over with this bill, and only https.
            Ok(Some(_)) if back.is_some() => Redirect::to(&rec.return_url).into_response(),
            Ok(Some(_)) => html(StatusCode::OK, pages::not_charged("Paid", "Paid; the store confirmed.", None)),
            Ok(None) => {
                let late = (w.now_s() - rec.updated_at > i64::try_from(RECEIPT_WAIT_S).unwrap_or(i64::MAX))
                    .then_some(back.unwrap_or("/"));
                html(StatusCode::OK, pages::processing(&id, &rec.amount.to_string(), late))
            }
            Err(e) => failure(&e, back),
        },
        LocalPhase::Voided => {
            let text = format!("{}. Nothing was charged.", rec.reason.as_deref().unwrap_or("Voided"));
            html(StatusCode::OK, pages::not_charged("Payment voided", &text, back))
        }
        LocalPhase::Offered => match w.offered(&id).await {
            Ok(o) => html(StatusCode::OK, pages::consent(&o.view())),
            Err(e) => failure(&e, back),
        },
        LocalPhase::DebitRelayed => unfinished(rec.reason.as_deref().unwrap_or("no answer"), back),
        LocalPhase::TokenChosen => {
            let text = format!(
                "Your card may have given up deposit token {}, but the center has not confirmed the payment yet ({}). \
                 Run `kessai wallet recover` to finish it: the bill is paid if the store still waits, else the \
                 token's value goes onto your card, never both.",
                rec.token_id.as_deref().unwrap_or("?"),
                rec.reason.as_deref().unwrap_or("no answer")
            );
            html(StatusCode::ACCEPTED, pages::problem("Payment not finished", &text, back))
        }
        _ => html(
            StatusCode::OK,
            pages::problem(
                "Payment not finished",
                rec.reason.as_deref().unwrap_or("It stopped before any charge."),
                back,
            ),
        ),
    }
}

async fn charge_start() -> Response {
    html(StatusCode::OK, pages::charge_start())
}

async fn charge_card(State(w): State<Shared>) -> Response {
    let card = w.card_summary().await.map_err(|e| e.to_string());
    let history = match w.records().recent_charges(RECENT_RECORDS).await {
        Ok(h) => h,
        Err(e) => return charge_failure(&ChargeError::Records(e)),
    };
    html(StatusCode::OK, pages::charge_form(card.as_ref().map_err(Clone::clone), &history, &w.form_token))
}

/// The charge form. The card fields are zeroized when dropped and never
/// written back into any page or log.
#[derive(Deserialize)]
struct ChargeForm {
    form_token: String,
    /// The card's currency, as the form showed it; the center refuses a
    /// charge in another.
    currency: String,
    amount: String,
    card_number: zeroize::Zeroizing<String>,
    expiry: zeroize::Zeroizing<String>,
    cvc: zeroize::Zeroizing<String>,
}

async fn charge(State(w): State<Shared>, form: Result<Form<ChargeForm>, FormRejection>) -> Response {
    // The rejection's text could quote the body: never shown.
    let Ok(Form(form)) = form else {
        return charge_failure(&ChargeError::BadCardInput("fill in the amount and every credit card field"));
    };
    if !w.is_form_token(&form.form_token) {
        return html(
            StatusCode::FORBIDDEN,
            pages::problem("This form does not belong to your wallet", "Nothing was charged.", None),
        );
    }
    let amount = Currency::parse(&form.currency).and_then(|c| Money::parse_major(form.amount.trim(), c));
    let amount = match amount {
        Ok(a) if a.amount_minor() > 0 => a,
        _ => return charge_failure(&ChargeError::BadCardInput("the amount must be above 0, in the card's currency")),
    };
    let payment = match PaymentCardInput::parse(&form.card_number, &form.expiry, &form.cvc) {
        Ok(p) => p,
        Err(e) => return charge_failure(&e),
    };
    drop(form);
    match w.charge(amount, payment, &mut |_| {}).await {
        Ok(done) => html(StatusCode::OK, pages::charge_done(&done.amount.to_string(), &done.balance_after.to_string())),
        Err(e) => charge_failure(&e),
    }
}

/// One place maps every charge failure to a status and a page in words.
fn charge_failure(e: &ChargeError) -> Response {
    let (status, title) = match e {
        ChargeError::Declined { .. } => (StatusCode::PAYMENT_REQUIRED, "Nothing was charged"),
        ChargeError::BadCardInput(_) => (StatusCode::BAD_REQUEST, "Check the charge details"),
        ChargeError::Card(_) | ChargeError::CardBlocked => {
            (StatusCode::SERVICE_UNAVAILABLE, "Your card cannot be used")
        }
        ChargeError::ValueUpdateRefused(_) | ChargeError::Keys(_) => {
            (StatusCode::BAD_GATEWAY, "The center's value update was refused; nothing was charged")
        }
        ChargeError::Voided(_) => (StatusCode::OK, "Charge voided"),
        ChargeError::Records(_) => {
            tracing::error!(error = %e, "local records failed");
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::problem("Something went wrong", "The wallet could not read its records.", None),
            );
        }
        _ => {
            let text = format!(
                "{e}. If the card was already credited, `kessai wallet recover` finishes the charge; \
                 you are never charged twice."
            );
            return html(StatusCode::BAD_GATEWAY, pages::problem("The charge did not finish", &text, None));
        }
    };
    html(status, pages::problem(title, &e.to_string(), None))
}

#[cfg(test)]
mod tests {
    use super::is_loopback_host;

    #[test]
    fn only_loopback_host_names_are_the_wallets() {
        for ok in ["127.0.0.1:8480", "localhost:8480", "[::1]:8480", "127.0.0.1", "localhost"] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "rebound.example:8480",
            "127.0.0.1.evil.example",
            "localhost.evil:8480",
            "127.0.0.2:8480",
            "localhost:",
            "localhost:84a0",
            "",
            "[::1]x",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }
}

/// Passwords A and B from a form, as passphrases (B only if given).
fn passwords(
    a: &zeroize::Zeroizing<String>,
    b: Option<&zeroize::Zeroizing<String>>,
) -> (kessai_core::keyfile::Passphrase, Option<kessai_core::keyfile::Passphrase>) {
    let a = kessai_core::keyfile::Passphrase::new(String::clone(a));
    let b = b.filter(|b| !b.is_empty()).map(|b| kessai_core::keyfile::Passphrase::new(String::clone(b)));
    (a, b)
}

/// The member's signer, its passwords run through Argon2id off the async
/// threads.
async fn open_signer(
    w: &Shared,
    a: kessai_core::keyfile::Passphrase,
    b: Option<kessai_core::keyfile::Passphrase>,
) -> Result<crate::wallet::MemberSigner, PayError> {
    let wallet = Arc::clone(w);
    tokio::task::spawn_blocking(move || wallet.member_signer(&a, b.as_ref()))
        .await
        .unwrap_or_else(|e| Err(PayError::MemberKey(format!("the keystore task failed: {e}"))))
}

/// The review's prepaid form: the bill, the launch's form token, the card,
/// and the passwords that open the signing key.
#[derive(Deserialize)]
struct PrepaidPayForm {
    bill: String,
    return_url: String,
    form_token: String,
    prepaid_id: String,
    password_a: zeroize::Zeroizing<String>,
    #[serde(default)]
    password_b: Option<zeroize::Zeroizing<String>>,
}

/// Pays the bill from the member's virtual prepaid card (#18, FIG. 7):
/// the instruction signed, SIG3 checked, the store's receipt waited for
/// (bounded), the purchase put into the member's history.
async fn pay_prepaid(State(w): State<Shared>, form: Result<Form<PrepaidPayForm>, FormRejection>) -> Response {
    let Ok(Form(form)) = form else {
        let e = PayError::HandOff("the form needs the bill, the prepaid card and password A".into());
        return failure(&e, None);
    };
    if !w.is_form_token(&form.form_token) {
        tracing::warn!("refused a prepaid payment without this wallet's form token");
        return failure(&PayError::BadConsentToken, None);
    }
    let back = bound_return_url(&form.bill, &form.return_url);
    let card = match kessai_core::ids::PrepaidId::parse(&form.prepaid_id) {
        Ok(c) => c,
        Err(e) => return failure(&PayError::HandOff(format!("the prepaid card: {e}")), back),
    };
    let (a, b) = passwords(&form.password_a, form.password_b.as_ref());
    let signer = match open_signer(&w, a, b).await {
        Ok(s) => s,
        Err(e) => return failure(&e, back),
    };
    let crate::wallet::MemberSigner { member, key, session } = signer;
    let pair = (member, key);
    let paid = match w.pay_prepaid(&pair, &form.bill, &form.return_url, &card).await {
        Ok(p) => p,
        Err(e) => return failure(&e, back),
    };
    let receipt = match w.prepaid_receipt(&paid, &form.bill).await {
        Ok(r) => r.is_some(),
        Err(e) => {
            tracing::warn!(settlement = %paid.settlement_id, error = %e, "the store's receipt was refused");
            false
        }
    };
    w.record_prepaid_purchase(session, &paid).await;
    html(StatusCode::OK, pages::prepaid_paid(&paid, receipt, &form.return_url))
}

/// The card's deposit tokens that can pay the bill, read through a token
/// session (a listing: nothing is redeemed).
async fn pay_token_choose(State(w): State<Shared>, form: Result<Form<StartForm>, FormRejection>) -> Response {
    let Ok(Form(form)) = form else {
        return failure(&PayError::HandOff("the form needs `bill`, `return_url` and `form_token`".into()), None);
    };
    if !w.is_form_token(&form.form_token) {
        tracing::warn!("refused a token listing without this wallet's form token");
        return failure(&PayError::BadConsentToken, None);
    }
    let back = bound_return_url(&form.bill, &form.return_url);
    let review = match w.review(&form.bill, &form.return_url) {
        Ok(r) => r,
        Err(e) => return failure(&e, back),
    };
    let asked = kessai_api::request::TokenSessionCreate { redeem: None, list: true };
    let listed = match w.token_session(&asked).await {
        Ok(listed) => listed.on_card.unwrap_or_default(),
        Err(e) => return failure(&e, back),
    };
    let now = u64::try_from(w.now_s()).unwrap_or(0);
    let payable: Vec<_> = listed
        .into_iter()
        .filter(|t| !t.redeemed && t.expires_at > now)
        .filter(|t| t.status.is_none_or(|s| s == kessai_api::TokenStatus::Stored))
        .filter(|t| t.amount.checked_sub(&review.total).is_ok())
        .collect();
    html(StatusCode::OK, pages::token_choice(&review, &payable))
}

#[derive(Deserialize)]
struct TokenPayForm {
    bill: String,
    return_url: String,
    form_token: String,
    token_id: String,
    #[serde(default)]
    password_a: Option<zeroize::Zeroizing<String>>,
    #[serde(default)]
    password_b: Option<zeroize::Zeroizing<String>>,
}

/// The cardholder chose a token: the bill paid with it, then the
/// processing page (SIG4, back to the store) as for any purchase.
async fn pay_token_confirm(State(w): State<Shared>, form: Result<Form<TokenPayForm>, FormRejection>) -> Response {
    let Ok(Form(form)) = form else {
        return failure(&PayError::HandOff("the form needs the bill and the token".into()), None);
    };
    if !w.is_form_token(&form.form_token) {
        tracing::warn!("refused a token payment without this wallet's form token");
        return failure(&PayError::BadConsentToken, None);
    }
    let back = bound_return_url(&form.bill, &form.return_url);
    let (signer, session) = match member_signer(&w, form.password_a.as_ref(), form.password_b.as_ref()).await {
        Ok(found) => found,
        Err(e) => return failure(&e, back),
    };
    match w.pay_by_token(&form.bill, &form.return_url, &form.token_id, signer.as_ref(), &mut |_| {}).await {
        Ok(done) => {
            let sid = done.settlement_id.to_string();
            if let Some(session) = session {
                w.record_member_purchase_with(&sid, session).await;
            }
            // The processing page (FIG. 19), as after consent: it reloads
            // the status until SIG4 is verified. Not a redirect: the form's
            // `form-action 'self'` would stop the chain at the store.
            html(StatusCode::OK, pages::processing(&sid, &done.amount.to_string(), None))
        }
        Err(e) => failure(&e, back),
    }
}

async fn prepaid_ask(State(w): State<Shared>) -> Response {
    html(StatusCode::OK, pages::prepaid_cards(w.member_number().as_deref(), None, &w.form_token, None))
}

#[derive(Deserialize)]
struct PrepaidCardsForm {
    form_token: String,
    password_a: zeroize::Zeroizing<String>,
    #[serde(default)]
    password_b: Option<zeroize::Zeroizing<String>>,
}

/// The member's prepaid cards with balance and history: an inquiry signed
/// with the member's key.
async fn prepaid_cards(State(w): State<Shared>, form: Result<Form<PrepaidCardsForm>, FormRejection>) -> Response {
    let member = w.member_number();
    let ask = |status, why: &str| html(status, pages::prepaid_cards(member.as_deref(), None, &w.form_token, Some(why)));
    let Ok(Form(form)) = form else {
        return ask(StatusCode::BAD_REQUEST, "Give password A (and B).");
    };
    if !w.is_form_token(&form.form_token) {
        return failure(&PayError::BadConsentToken, None);
    }
    let (a, b) = passwords(&form.password_a, form.password_b.as_ref());
    let signer = match open_signer(&w, a, b).await {
        Ok(s) => s,
        Err(e) => return ask(StatusCode::FORBIDDEN, &e.to_string()),
    };
    match w.prepaid_cards(&(signer.member, signer.key), None).await {
        Ok(cards) => html(StatusCode::OK, pages::prepaid_cards(member.as_deref(), Some(&cards), &w.form_token, None)),
        Err(e) => failure(&e, None),
    }
}

async fn card_ask(State(w): State<Shared>) -> Response {
    html(StatusCode::OK, pages::card_ask(&w.form_token, None))
}

#[derive(Deserialize)]
struct TokenForm {
    form_token: String,
}

/// Reads the card's log through a statement session at the center: only
/// on the cardholder's click (same origin, and this launch's form token).
async fn card_history(State(w): State<Shared>, form: Result<Form<TokenForm>, FormRejection>) -> Response {
    if !form.is_ok_and(|Form(f)| w.is_form_token(&f.form_token)) {
        return refused("This form must be sent from the wallet's own page.");
    }
    let currency = match w.card_summary().await {
        Ok(card) => card.balance.currency(),
        Err(e) => return html(StatusCode::SERVICE_UNAVAILABLE, pages::card_ask(&w.form_token, Some(&e.to_string()))),
    };
    match w.card_log().await {
        Ok(entries) => {
            // The card's deposit tokens (seed 002), from its own table: a
            // second secure session; the log is shown without them if it
            // fails.
            let asked = kessai_api::request::TokenSessionCreate { redeem: None, list: true };
            let tokens = match w.token_session(&asked).await {
                Ok(listed) => listed.on_card,
                Err(e) => {
                    tracing::warn!(error = %e, "listing the card's tokens");
                    None
                }
            };
            html(StatusCode::OK, pages::card_history(&entries, currency, tokens.as_deref()))
        }
        Err(e) => html(StatusCode::BAD_GATEWAY, pages::card_ask(&w.form_token, Some(&e.to_string()))),
    }
}

async fn member_ask(State(w): State<Shared>) -> Response {
    let keystore = crate::member::MemberFile::in_dir(&w.config().data_dir).exists();
    html(StatusCode::OK, pages::member_ask(keystore, None))
}

#[derive(Deserialize)]
struct MemberForm {
    password_a: zeroize::Zeroizing<String>,
}

/// Password A opens the history, and nothing else: the signing key stays
/// under B. Argon2id runs off the async threads.
async fn member_history(State(w): State<Shared>, form: Result<Form<MemberForm>, FormRejection>) -> Response {
    let Ok(Form(form)) = form else {
        return html(StatusCode::BAD_REQUEST, pages::member_ask(true, Some("Give password A.")));
    };
    let dir = w.config().data_dir.clone();
    let a = kessai_core::keyfile::Passphrase::new(String::clone(&form.password_a));
    let opened = tokio::task::spawn_blocking(move || crate::member::view(&dir, &a)).await;
    match opened {
        Ok(Ok(view)) => html(StatusCode::OK, pages::member_history(&view)),
        Ok(Err(crate::member::MemberError::Missing { .. })) => {
            html(StatusCode::NOT_FOUND, pages::member_ask(false, None))
        }
        Ok(Err(crate::member::MemberError::Store(e))) => {
            tracing::warn!(error = %e, "the member keystore did not open");
            html(StatusCode::FORBIDDEN, pages::member_ask(true, Some(&e.to_string())))
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "reading the member keystore");
            html(StatusCode::INTERNAL_SERVER_ERROR, pages::problem("Something went wrong", &e.to_string(), None))
        }
        Err(e) => {
            tracing::error!(error = %e, "the keystore task failed");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                pages::problem("Something went wrong", "The keystore could not be read.", None),
            )
        }
    }
}
