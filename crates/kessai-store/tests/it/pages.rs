//! Every page, checked as HTML: titles, sums, links, forms.

use axum::body::Body;
use axum::http::{Request, StatusCode};

use crate::support::*;

#[tokio::test]
async fn the_mall_and_its_stores_list_their_own_products() {
    let w = world().await;
    let home = get(&w.app, "/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert_eq!(home.title(), "Kessai Mall — Kessai Mall");
    assert!(home.body.starts_with("<!DOCTYPE html><html lang=\"en\">"));
    assert!(home.body.contains(r#"<a href="/shops/bookshop">Kessai Books</a>"#), "{}", home.body);
    assert!(home.body.contains(r#"<a href="/shops/record-shop">Kissa Records</a>"#));

    let books = get(&w.app, "/shops/bookshop").await;
    assert_eq!(books.title(), "Kessai Books — Kessai Mall");
    assert!(books.body.contains(r#"href="/shops/bookshop/products/ebook-kessai-001""#));
    assert!(books.body.contains("JPY 1,200"));
    assert!(!books.body.contains("audio-chime-01"), "a store shows only its own products");
    assert_eq!(get(&w.app, "/shops/nobody").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_product_page_has_price_delivery_and_a_labelled_form() {
    let w = world().await;
    let p = get(&w.app, "/shops/bookshop/products/ebook-kessai-001").await;
    assert_eq!(p.status, StatusCode::OK);
    assert_eq!(p.title(), "A Short Guide to Stored Value (e-book) — Kessai Mall");
    assert!(p.body.contains("<h1>A Short Guide to Stored Value (e-book)</h1>"));
    assert!(p.body.contains(r#"<dd class="price">JPY 1,200</dd>"#));
    assert!(p.body.contains("Download after payment"));
    assert!(p.body.contains(r#"<form method="post" action="/shops/bookshop/cart">"#));
    assert!(p.body.contains(r#"<label for="quantity">Quantity</label>"#));
    assert!(p.body.contains(r#"<input id="quantity""#));
    let physical = get(&w.app, "/shops/bookshop/products/print-poster-01").await;
    assert!(physical.body.contains("Shipped to you"));
    // Another member's product is not sold here.
    assert_eq!(get(&w.app, "/shops/bookshop/products/audio-chime-01").await.status, StatusCode::NOT_FOUND);
    let missing = get(&w.app, "/nothing/here").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.title(), "Page not found — Kessai Mall");
}

#[tokio::test]
async fn cart_estimate_checkout_and_bill_show_the_same_sum() {
    let w = world().await;
    let add = post_form(&w.app, "/shops/bookshop/cart", "sku=ebook-kessai-001&quantity=2", None).await;
    assert_eq!(add.status, StatusCode::SEE_OTHER);
    assert_eq!(add.location(), "/shops/bookshop/cart");
    let cookie = cookie_of(&add);
    let add = post_form(&w.app, "/shops/bookshop/cart", "sku=print-poster-01&quantity=1", Some(&cookie)).await;
    let cookie = cookie_of(&add);

    let cart = get_with_cookie(&w.app, "/shops/bookshop/cart", &cookie).await;
    assert_eq!(cart.title(), "Your cart — Kessai Mall");
    assert!(cart.body.contains("<caption>Items in your cart</caption>"));
    assert!(cart.body.contains("JPY 2,400") && cart.body.contains("JPY 2,500"), "{}", cart.body);
    assert!(cart.body.contains(r#"<a href="/shops/bookshop/estimate">Get an estimate</a>"#));

    let estimate = get_with_cookie(&w.app, "/shops/bookshop/estimate", &cookie).await;
    assert_eq!(estimate.title(), "Estimate — Kessai Mall");
    assert!(estimate.body.contains(r#"<td class="num" id="total">JPY 4,900</td>"#), "{}", estimate.body);
    assert!(estimate.body.contains(r#"href="/shops/bookshop/checkout""#));

    let checkout = get_with_cookie(&w.app, "/shops/bookshop/checkout", &cookie).await;
    assert_eq!(checkout.title(), "Payment method — Kessai Mall");
    assert!(checkout.body.contains("<legend>Payment method</legend>"));
    assert!(checkout.body.contains(r#"<label for="method-card">kessai IC card (stored value)</label>"#));
    assert!(checkout.body.contains(r#"<strong id="total">JPY 4,900</strong>"#));

    let placed = post_form(&w.app, "/shops/bookshop/orders", "method=kessai-card", Some(&cookie)).await;
    assert_eq!(placed.status, StatusCode::SEE_OTHER);
    assert!(cookie_of(&placed).ends_with('='), "the cart is emptied");
    let order_id = placed.location().strip_prefix("/orders/").unwrap().to_owned();
    assert!(order_id.starts_with("ord-000001-") && order_id.len() == 11 + 32, "{order_id}");

    let bill = get(&w.app, &format!("/orders/{order_id}")).await;
    assert_eq!(bill.status, StatusCode::OK);
    assert_eq!(bill.title(), "Bill for order 1 — Kessai Mall");
    assert!(bill.body.contains(r#"<td class="num" id="total">JPY 4,900</td>"#));
    assert!(bill.body.contains(r#"<form method="post" action="http://127.0.0.1:8480/pay">"#), "{}", bill.body);
    let (token, verified) = bill_of(&w, &order_id).await;
    assert!(bill.body.contains(&format!(r#"<input type="hidden" name="bill" value="{token}">"#)));
    let return_url = format!("https://shop.kessai.test/orders/{order_id}/complete");
    assert!(bill.body.contains(&format!(r#"<input type="hidden" name="return_url" value="{return_url}">"#)));
    let json = get(&w.app, &format!("/orders/{order_id}/bill")).await.json();
    assert_eq!(json["return_url"], return_url.as_str());

    let b = verified.message();
    assert_eq!(b.total().to_string(), "JPY 4,900");
    assert_eq!(b.store().as_str(), "kessai-mall");
    assert_eq!(b.member().unwrap().as_str(), "bookshop");
    assert_eq!(b.order_id().as_str(), order_id);
    assert_eq!(b.store_name().as_str(), "Kessai Books");
    assert_eq!(b.lines().len(), 2);
}

#[tokio::test]
async fn an_empty_cart_leads_back_to_the_cart_and_a_bad_method_is_refused() {
    let w = world().await;
    let estimate = get(&w.app, "/shops/bookshop/estimate").await;
    assert_eq!(estimate.status, StatusCode::SEE_OTHER);
    assert_eq!(estimate.location(), "/shops/bookshop/cart");
    let empty = get(&w.app, "/shops/bookshop/cart").await;
    assert!(empty.body.contains("Your cart is empty."));
    let add = post_form(&w.app, "/shops/bookshop/cart", "sku=ebook-kessai-001&quantity=1", None).await;
    let refused = post_form(&w.app, "/shops/bookshop/orders", "method=cash", Some(&cookie_of(&add))).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let foreign = post_form(&w.app, "/shops/bookshop/cart", "sku=audio-chime-01&quantity=1", None).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND, "a store cannot sell another member's product");
    assert_eq!(get(&w.app, "/orders/ord-999999-00").await.status, StatusCode::NOT_FOUND);
    assert_eq!(get(&w.app, "/orders/ord-999999-00/bill").await.json()["error"]["code"], "unknown_order");
}

#[tokio::test]
async fn the_completion_page_shows_downloads_only_once_paid() {
    let w = world().await;
    let order_id = place_order(&w, "bookshop", &[("ebook-kessai-001", 1), ("print-poster-01", 1)]).await;
    let before = get(&w.app, &format!("/orders/{order_id}/complete")).await;
    assert_eq!(before.status, StatusCode::OK);
    assert_eq!(before.title(), "Order 1 — Kessai Mall");
    assert!(before.body.contains("Not paid yet"));
    assert!(before.body.contains(r#"<meta http-equiv="refresh" content="5">"#));
    assert!(!before.body.contains("/download/"));

    let (token, bill) = bill_of(&w, &order_id).await;
    let completion = sign_completion(&w, &w.center_key, completion_for(&w, &token, bill.message()));
    assert_eq!(deliver(&w, &completion, Some("center")).await.status, StatusCode::OK);

    let after = get(&w.app, &format!("/orders/{order_id}/complete")).await;
    assert!(after.body.contains("Payment received"), "{}", after.body);
    assert!(after.body.contains(r#"<a href="/download/"#));
    assert!(after.body.contains("Download A Short Guide to Stored Value (e-book)"));
    assert!(after.body.contains("Your other items will be shipped."));
    let bill_page = get(&w.app, &format!("/orders/{order_id}")).await;
    assert!(bill_page.body.contains("This order is paid."));
    assert!(!bill_page.body.contains("/pay\""), "no pay button on a paid bill");
}

#[tokio::test]
async fn ops_endpoints_and_jwks_answer() {
    let w = world().await;
    assert_eq!(get(&w.app, "/healthz").await.body, "ok");
    assert_eq!(get(&w.app, "/readyz").await.status, StatusCode::OK);
    place_order(&w, "bookshop", &[("ebook-kessai-001", 1)]).await;
    assert_eq!(get(&w.app, "/metrics").await.status, StatusCode::UNAUTHORIZED, "volumes for a certificate only");
    let mut scrape = Request::get("/metrics").body(Body::empty()).unwrap();
    scrape.extensions_mut().insert(kessai_http::PeerIdentity::new("monitoring", kessai_http::Party::Monitor));
    let metrics = send(&w.app, scrape).await.body;
    assert!(metrics.contains(r#"route="/shops/{member}/orders",status="303""#), "{metrics}");
    assert!(metrics.contains("store_orders_total{service=\"store\"} 1"), "{metrics}");
    let jwks = get(&w.app, "/.well-known/jwks.json").await.json();
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
}

/// L6: every page forbids scripts and framing, and its forms may post only
/// to the store and to the cardholder's wallet (the bill's Pay form).
#[tokio::test]
async fn pages_forbid_scripts_and_framing_and_post_only_to_the_store_and_the_wallet() {
    let w = world().await;
    for uri in ["/", "/shops/bookshop", "/shops/bookshop/cart", "/shops/nobody"] {
        let page = get(&w.app, uri).await;
        let policy = page.headers["content-security-policy"].to_str().unwrap();
        assert!(policy.starts_with("default-src 'none'"), "{uri}: {policy}");
        assert!(policy.contains("frame-ancestors 'none'") && !policy.contains("script-src"), "{uri}: {policy}");
        assert!(policy.contains("form-action 'self' http://127.0.0.1:8480;"), "{uri}: {policy}");
        assert_eq!(page.headers["x-frame-options"], "DENY", "{uri}");
    }
}
