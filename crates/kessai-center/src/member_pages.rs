//! The center's pages for applicants (seed 003/004 FIG. 3–4, steps ①–⑤):
//! a guide to membership and a sign-up form, which answers an application
//! number. Plain HTML, no scripts; the form posts to the center only.
//! What follows (the letter with the member number and activation code,
//! the registration with the member's own key) happens out of band and in
//! the member's wallet.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use crate::members::MemberError;
use crate::service::Center;

/// What the pages may load: their own inline style; forms post here only.
const POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'";

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem;\
line-height:1.5}label{display:block;margin-top:1rem}input[type=text]{width:100%;padding:.4rem}\
fieldset label{display:flex;gap:.5rem;align-items:center;margin-top:.4rem}\
button{margin-top:1rem;padding:.5rem 1.2rem}ol li{margin:.3rem 0}.note{color:#555}";

fn layout(title: &str, body: Markup) -> Markup {
    let header = html! { nav aria-label="Membership" { a href="/members" { "kessai membership" } } };
    document(&format!("{title} — kessai"), STYLE, header, title, body)
}

/// A page of the center (these and the operator's console): `header`,
/// then `body` under its `heading`, with the page's own inline `style`.
pub(crate) fn document(title: &str, style: &str, header: Markup, heading: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (style) }
            }
            body {
                header { (header) }
                main { h1 { (heading) } (body) }
            }
        }
    }
}

/// A page of the center (these and the operator's console): only its own
/// inline style, forms posting here, never framed or cached. The referrer
/// policy keeps the `Origin` of a form post (a stricter one makes it
/// `null`).
pub(crate) fn page(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, axum::response::Html(markup.into_string())).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

/// `GET /members`, `GET /members/apply`, `POST /members/apply`.
pub fn routes(center: Arc<Center>) -> Router {
    Router::new().route("/members", get(guide)).route("/members/apply", get(form).post(apply)).with_state(center)
}

async fn guide() -> Response {
    let body = html! {
        p { "Members pay with their kessai card and sign each payment with a key only they hold. "
            "Stores can become members too." }
        h2 { "How to become a member" }
        ol {
            li { "Apply on the " a href="/members/apply" { "sign-up page" } ". You get an application number." }
            li { "We examine your application and send you a letter with your member number and a one-time "
                 "activation code, by post or e-mail, never on this site." }
            li { "In your wallet, make your keystore: " code { "kessai wallet member init" } ". "
                 "It asks two passwords: A opens your purchase history, B (with A) signs your payments." }
            li { "Register with the number and the code: " code { "kessai wallet member register" } ". "
                 "Your wallet signs the registration with your new key and sends it encrypted to the center." }
            li { "From then on, a payment with your card needs your password B." }
        }
        p class="note" { "The activation code works once, for 14 days. If you lose your key, tell us: "
                         "we revoke it at once and send you a new code." }
        p { a href="/members/apply" { "Apply now" } }
    };
    page(StatusCode::OK, layout("Become a member", body))
}

fn form_markup(error: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = error { p role="alert" id="error" { (e) } }
        form method="post" action="/members/apply" {
            fieldset {
                legend { "You are" }
                label { input type="radio" name="kind" value="general" checked; " a person (general member)" }
                label { input type="radio" name="kind" value="store"; " a store (store member)" }
            }
            label for="name" { "Name (or the store's name)" }
            input id="name" name="name" type="text" required maxlength="200" autocomplete="name";
            label for="contact" { "Postal address or e-mail, for the letter with your member number" }
            input id="contact" name="contact" type="text" required maxlength="200";
            button type="submit" { "Apply" }
        }
    }
}

async fn form() -> Response {
    page(StatusCode::OK, layout("Apply for membership", form_markup(None)))
}

#[derive(Deserialize)]
struct ApplyForm {
    kind: String,
    name: String,
    contact: String,
}

async fn apply(State(c): State<Arc<Center>>, form: Result<Form<ApplyForm>, FormRejection>) -> Response {
    let Ok(Form(f)) = form else {
        let body = form_markup(Some("Fill in every field."));
        return page(StatusCode::BAD_REQUEST, layout("Apply for membership", body));
    };
    match c.apply(&f.kind, &f.name, &f.contact).await {
        Ok(done) => {
            let body = html! {
                p { "Thank you. Your application number is " strong id="application" { (done.application_id) } "." }
                p { "We will send your member number and activation code to the address you gave. "
                    "Then register in your wallet (" a href="/members" { "how" } ")." }
            };
            page(StatusCode::OK, layout("Application received", body))
        }
        Err(MemberError::BadApplication(why)) => {
            let body = form_markup(Some(&format!("Please check: {why}")));
            page(StatusCode::UNPROCESSABLE_ENTITY, layout("Apply for membership", body))
        }
        Err(e) => {
            tracing::warn!(error = %e, "an application could not be stored");
            let body =
                html! { p role="alert" { "Your application could not be received just now; please try again." } };
            page(StatusCode::SERVICE_UNAVAILABLE, layout("Apply for membership", body))
        }
    }
}
