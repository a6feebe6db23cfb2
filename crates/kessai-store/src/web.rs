//! The shop's HTML pages and the download.

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use kessai_core::Money;
use kessai_core::ids::{OrderId, StoreId};
use kessai_core::messages::bill::LineItem;
use kessai_core::random::{OsRandom, Random};
use kessai_merchant::BillRequest;
use maud::Markup;
use serde::Deserialize;

use crate::cart::Cart;
use crate::catalog::{Delivery, Product};
use crate::config::MemberConfig;
use crate::db::NewOrder;
use crate::limits::{DOWNLOAD_TOKEN_BYTES, ORDER_SECRET_BYTES};
use crate::{AppState, pages};

/// An error page (boxed: a `Response` is large and errors are rare).
#[derive(Debug)]
pub struct PageError(Box<Response>);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        *self.0
    }
}

impl From<Response> for PageError {
    fn from(r: Response) -> PageError {
        PageError(Box::new(r))
    }
}

/// A handler's answer: a page, or an error page.
type Page = Result<Response, PageError>;

fn render(state: &AppState, title: &str, body: Markup) -> Response {
    Html(pages::layout(state.config.mall_name.as_str(), title, body).into_string()).into_response()
}

fn fail(state: &AppState, status: StatusCode, title: &str, text: &str) -> PageError {
    PageError::from((status, render(state, title, pages::message(text))).into_response())
}

fn internal(state: &AppState, detail: impl std::fmt::Display) -> PageError {
    tracing::error!(detail = %detail, "internal error");
    fail(state, StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "Please try again later.")
}

pub(crate) fn now_s(state: &AppState) -> i64 {
    i64::try_from(state.clock.now().unix_s()).unwrap_or(i64::MAX)
}

fn member<'a>(state: &'a AppState, id: &str) -> Result<&'a MemberConfig, PageError> {
    state
        .config
        .member(id)
        .ok_or_else(|| fail(state, StatusCode::NOT_FOUND, "Store not found", "There is no such store in this mall."))
}

pub async fn not_found(State(state): State<AppState>) -> PageError {
    fail(&state, StatusCode::NOT_FOUND, "Page not found", "There is no such page.")
}

pub async fn home(State(state): State<AppState>) -> Response {
    let body = pages::home(&state.config.members);
    render(&state, state.config.mall_name.as_str(), body)
}

pub async fn shop(State(state): State<AppState>, Path(id): Path<String>) -> Page {
    let m = member(&state, &id)?;
    let products: Vec<&Product> = state.catalog.of_member(&m.id).collect();
    Ok(render(&state, m.name.as_str(), pages::shop(m, &products)))
}

pub async fn product(State(state): State<AppState>, Path((id, sku)): Path<(String, String)>) -> Page {
    let m = member(&state, &id)?;
    let p = state
        .catalog
        .find(&m.id, &sku)
        .ok_or_else(|| fail(&state, StatusCode::NOT_FOUND, "Product not found", "This store does not sell that."))?;
    Ok(render(&state, p.name.as_str(), pages::product(m, p)))
}

/// The cart's products with their current catalog prices.
fn priced<'a>(state: &'a AppState, member: &StoreId, cart: &Cart) -> Result<Vec<pages::CartLine<'a>>, PageError> {
    let mut lines = Vec::new();
    for (sku, quantity) in cart.items() {
        let Some(product) = state.catalog.find(member, sku) else { continue };
        let amount = product.price.checked_mul(*quantity).map_err(|e| internal(state, e))?;
        lines.push(pages::CartLine { product, quantity: *quantity, amount });
    }
    Ok(lines)
}

/// Bill lines and total; refuses mixed currencies (one bill, one currency).
fn bill_lines(state: &AppState, lines: &[pages::CartLine<'_>]) -> Result<(Vec<LineItem>, Money), PageError> {
    let mut items = Vec::with_capacity(lines.len());
    let mut total: Option<Money> = None;
    for l in lines {
        let p = l.product;
        let item = LineItem::new(&p.sku, p.name.clone(), l.quantity, p.price).map_err(|e| internal(state, e))?;
        total = Some(match total {
            None => item.amount(),
            Some(t) => t.checked_add(&item.amount()).map_err(|_| {
                fail(
                    state,
                    StatusCode::BAD_REQUEST,
                    "Cannot bill",
                    "Items in different currencies cannot share one bill.",
                )
            })?,
        });
        items.push(item);
    }
    let total = total.ok_or_else(|| PageError::from(Redirect::to("/").into_response()))?;
    Ok((items, total))
}

pub async fn cart(State(state): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Page {
    let m = member(&state, &id)?;
    let cart = Cart::from_headers(&headers, &m.id);
    let lines = priced(&state, &m.id, &cart)?;
    Ok(render(&state, "Your cart", pages::cart(m, &lines)))
}

#[derive(Deserialize)]
pub struct CartForm {
    sku: String,
    quantity: u32,
}

pub async fn update_cart(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<CartForm>, FormRejection>,
) -> Page {
    let m = member(&state, &id)?;
    let Ok(Form(form)) = form else {
        return Err(fail(&state, StatusCode::BAD_REQUEST, "Invalid request", "Give a product and a quantity."));
    };
    if state.catalog.find(&m.id, &form.sku).is_none() {
        return Err(fail(&state, StatusCode::NOT_FOUND, "Product not found", "This store does not sell that."));
    }
    let mut cart = Cart::from_headers(&headers, &m.id);
    cart.set(&form.sku, form.quantity);
    let cookie = HeaderValue::from_str(&cart.set_cookie(&m.id)).map_err(|e| internal(&state, e))?;
    let mut response = Redirect::to(&format!("/shops/{}/cart", m.id)).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// The member's non-empty cart as bill lines, or a redirect to the cart.
fn cart_lines(state: &AppState, m: &MemberConfig, headers: &HeaderMap) -> Result<(Vec<LineItem>, Money), PageError> {
    let cart = Cart::from_headers(headers, &m.id);
    let lines = priced(state, &m.id, &cart)?;
    if lines.is_empty() {
        return Err(Redirect::to(&format!("/shops/{}/cart", m.id)).into_response().into());
    }
    bill_lines(state, &lines)
}

pub async fn estimate(State(state): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Page {
    let m = member(&state, &id)?;
    let (lines, total) = cart_lines(&state, m, &headers)?;
    Ok(render(&state, "Estimate", pages::estimate(m, &lines, total)))
}

pub async fn checkout(State(state): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Page {
    let m = member(&state, &id)?;
    let (_, total) = cart_lines(&state, m, &headers)?;
    Ok(render(&state, "Payment method", pages::checkout(m, total)))
}

#[derive(Deserialize)]
pub struct OrderForm {
    method: String,
}

pub async fn place_order(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<OrderForm>, FormRejection>,
) -> Page {
    let m = member(&state, &id)?;
    if !form.is_ok_and(|Form(f)| f.method == "kessai-card") {
        return Err(fail(
            &state,
            StatusCode::BAD_REQUEST,
            "Choose a payment method",
            "Only the kessai IC card is accepted.",
        ));
    }
    let (lines, _) = cart_lines(&state, m, &headers)?;
    let order_id = create_order(&state, m, lines).await.map_err(|e| internal(&state, format!("{e:#}")))?;
    let mut response = Redirect::to(&format!("/orders/{order_id}")).into_response();
    let cleared = HeaderValue::from_str(&Cart::default().set_cookie(&m.id)).map_err(|e| internal(&state, e))?;
    response.headers_mut().insert(header::SET_COOKIE, cleared);
    Ok(response)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRandom.fill_bytes(&mut buf);
    hex::encode(buf)
}

/// The mall issues the order number, signs the bill for the member store
/// and stores order, bill and (not yet usable) download links together.
async fn create_order(state: &AppState, m: &MemberConfig, lines: Vec<LineItem>) -> anyhow::Result<OrderId> {
    let seq = state.db.next_order_number().await?;
    // The sequence is for people; the random part makes order pages and
    // their download links unguessable.
    let order_id = OrderId::parse(&format!("ord-{seq:06}-{}", random_hex(ORDER_SECRET_BYTES)))?;
    let lines_json = serde_json::to_string(&lines)?;
    let downloads = lines
        .iter()
        .filter(|l| state.catalog.find(&m.id, l.sku()).is_some_and(|p| matches!(p.delivery, Delivery::Download { .. })))
        .map(|l| (random_hex(DOWNLOAD_TOKEN_BYTES), l.sku().to_owned()))
        .collect();
    let request = BillRequest {
        order_id: order_id.clone(),
        member: Some(m.id.clone()),
        store_name: m.name.clone(),
        lines,
        lifetime_s: state.config.bill_lifetime_s,
        origin: kessai_core::messages::WebOrigin::of_url(&state.config.public_url)?,
    };
    let signed = state.merchant.sign_bill(request, &mut OsRandom, state.clock.as_ref())?;
    let total = signed.bill().total();
    state
        .db
        .insert_order(&NewOrder {
            order_id: order_id.to_string(),
            seq,
            member: m.id.to_string(),
            currency: total.currency().to_string(),
            total_minor: i64::try_from(total.amount_minor())?,
            lines_json,
            created_at: now_s(state),
            bill_id: signed.bill().bill_id().to_string(),
            bill_token: signed.token().to_owned(),
            bill_hash: String::from(signed.hash()),
            bill_expires_at: i64::try_from(signed.expires_at().unix_s())?,
            downloads,
        })
        .await?;
    state.store_metrics.orders.inc();
    tracing::info!(order = %loggable(order_id.as_str()), member = %m.id, total = %total, "order placed");
    Ok(order_id)
}

/// The order, or a 404 page.
async fn order(state: &AppState, order_id: &str) -> Result<crate::db::OrderRow, PageError> {
    let missing = || fail(state, StatusCode::NOT_FOUND, "Order not found", "There is no such order.");
    if OrderId::parse(order_id).is_err() {
        return Err(missing());
    }
    state.db.order(order_id).await.map_err(|e| internal(state, e))?.ok_or_else(missing)
}

/// An order id as it may be logged (L6): `ord-{number}` without the
/// random part that makes the order's pages and downloads unguessable.
pub(crate) fn loggable(order_id: &str) -> &str {
    match order_id.match_indices('-').nth(1) {
        Some((at, _)) => &order_id[..at],
        None => order_id.get(..order_id.len().min(10)).unwrap_or(""),
    }
}

pub(crate) fn return_url(state: &AppState, order_id: &str) -> String {
    format!("{}/orders/{order_id}/complete", state.config.public_url)
}

pub async fn bill(State(state): State<AppState>, Path(order_id): Path<String>) -> Page {
    let o = order(&state, &order_id).await?;
    let lines: Vec<LineItem> = serde_json::from_str(&o.lines_json).map_err(|e| internal(&state, e))?;
    let total = lines_total(&state, &lines)?;
    let member_name = state.config.member(&o.member).map_or(o.member.as_str(), |m| m.name.as_str());
    let view = pages::BillView {
        order_id: &o.order_id,
        order_number: o.seq,
        member_name,
        lines: &lines,
        total,
        expires_at: o.bill_expires_at,
        expired: now_s(&state) > o.bill_expires_at,
        paid: o.paid,
        bill_token: &o.bill_token,
        wallet_url: &state.config.wallet_url,
        return_url: &return_url(&state, &o.order_id),
    };
    Ok(render(&state, &format!("Bill for order {}", o.seq), pages::bill(&view)))
}

fn lines_total(state: &AppState, lines: &[LineItem]) -> Result<Money, PageError> {
    let first = lines.first().ok_or_else(|| internal(state, "stored order without lines"))?;
    lines.iter().skip(1).try_fold(first.amount(), |t, l| t.checked_add(&l.amount())).map_err(|e| internal(state, e))
}

pub async fn completion(State(state): State<AppState>, Path(order_id): Path<String>) -> Page {
    let o = order(&state, &order_id).await?;
    let title = format!("Order {}", o.seq);
    if !o.paid {
        let body = pages::completion(&o.order_id, false, &[], false, None);
        let page = pages::layout_refreshing(state.config.mall_name.as_str(), &title, 5, body);
        return Ok(Html(page.into_string()).into_response());
    }
    let links = state.db.downloads_of(&o.order_id).await.map_err(|e| internal(&state, e))?;
    let member = StoreId::parse(&o.member).map_err(|e| internal(&state, e))?;
    let downloads: Vec<pages::DownloadView<'_>> = links
        .iter()
        .filter_map(|d| {
            let p = state.catalog.find(&member, &d.sku)?;
            Some(pages::DownloadView { name: p.name.as_str(), href: format!("/download/{}", d.token) })
        })
        .collect();
    let lines: Vec<LineItem> = serde_json::from_str(&o.lines_json).map_err(|e| internal(&state, e))?;
    let shipped =
        lines.iter().any(|l| state.catalog.find(&member, l.sku()).is_some_and(|p| p.delivery == Delivery::Physical));
    let expires = links.first().and_then(|d| d.expires_at);
    Ok(render(&state, &title, pages::completion(&o.order_id, true, &downloads, shipped, expires)))
}

pub async fn download(State(state): State<AppState>, Path(token): Path<String>) -> Page {
    let missing = || fail(&state, StatusCode::NOT_FOUND, "Download not found", "There is no such download.");
    let well_formed =
        token.len() == DOWNLOAD_TOKEN_BYTES * 2 && token.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !well_formed {
        return Err(missing());
    }
    let link = state.db.download(&token).await.map_err(|e| internal(&state, e))?.ok_or_else(missing)?;
    let o = order(&state, &link.order_id).await?;
    let Some(expires_at) = link.expires_at.filter(|_| o.paid) else {
        return Err(fail(&state, StatusCode::FORBIDDEN, "Not paid yet", "This download works once the order is paid."));
    };
    if now_s(&state) > expires_at {
        return Err(fail(&state, StatusCode::GONE, "Link expired", "This download link has expired."));
    }
    let member = StoreId::parse(&o.member).map_err(|e| internal(&state, e))?;
    let Some(Delivery::Download { path, file_name, content_type }) =
        state.catalog.find(&member, &link.sku).map(|p| &p.delivery)
    else {
        return Err(missing());
    };
    let bytes = tokio::fs::read(path).await.map_err(|e| internal(&state, format!("{}: {e}", path.display())))?;
    tracing::info!(order = %loggable(&o.order_id), sku = %link.sku, "download delivered");
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file_name}\"")),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        bytes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_logged_order_id_keeps_its_number_not_its_secret() {
        assert_eq!(super::loggable("ord-000042-1d34d56ab4745f50992da29287b20254"), "ord-000042");
        assert_eq!(super::loggable("ord-7"), "ord-7");
        assert_eq!(super::loggable("x"), "x");
    }
}
