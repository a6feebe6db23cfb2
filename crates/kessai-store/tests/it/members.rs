//! Mall members are isolated: each sees only its own orders.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};

use crate::support::*;

async fn orders_view(w: &World, member: &str, token: Option<&str>, peer: Option<&str>) -> Answer {
    view(w, &format!("/members/{member}/orders"), token, peer).await
}

fn order_ids(a: &Answer) -> Vec<String> {
    a.json()["orders"].as_array().unwrap().iter().map(|o| o["order_id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn each_member_sees_only_its_own_orders() {
    let w = world().await;
    let (paid_book, _, _) = paid_order(&w, "bookshop", &[("ebook-kessai-001", 1)]).await;
    let open_book = place_order(&w, "bookshop", &[("print-poster-01", 1)]).await;
    let (record, _, _) = paid_order(&w, "record-shop", &[("audio-chime-01", 3)]).await;

    let books = orders_view(&w, "bookshop", Some(BOOKSHOP_TOKEN), None).await;
    assert_eq!(books.status, StatusCode::OK, "{}", books.body);
    assert_eq!(order_ids(&books), vec![open_book.clone(), paid_book.clone()], "newest first, own orders only");
    let json = books.json();
    assert_eq!(json["orders"][1]["status"], "paid");
    assert_eq!(json["orders"][1]["total"], serde_json::json!({"amount_minor": 1200, "currency": "JPY"}));
    assert!(json["orders"][1]["settlement_id"].as_str().unwrap().starts_with("stl_"));
    assert_eq!(json["orders"][0]["status"], "open");

    let records = orders_view(&w, "record-shop", None, Some("record-shop")).await;
    assert_eq!(order_ids(&records), vec![record.clone()]);
    assert_eq!(records.json()["orders"][0]["total"]["amount_minor"], 900);

    let cases = [
        ("bookshop's token on record-shop", "record-shop", Some(BOOKSHOP_TOKEN), None, StatusCode::FORBIDDEN),
        ("bookshop's certificate on record-shop", "record-shop", None, Some("bookshop"), StatusCode::FORBIDDEN),
        // L3: the member's name on an operator's certificate is not the member.
        (
            "an operator's certificate named bookshop",
            "bookshop",
            None,
            Some("operator/bookshop"),
            StatusCode::FORBIDDEN,
        ),
        ("no credentials", "bookshop", None, None, StatusCode::UNAUTHORIZED),
        ("a wrong token", "bookshop", Some("guess"), None, StatusCode::FORBIDDEN),
        ("the center's certificate", "bookshop", None, Some("center"), StatusCode::FORBIDDEN),
        ("unknown member", "nobody", Some(BOOKSHOP_TOKEN), None, StatusCode::NOT_FOUND),
    ];
    for (label, member, token, peer, status) in cases {
        let a = orders_view(&w, member, token, peer).await;
        assert_eq!(a.status, status, "{label}: {}", a.body);
        assert!(a.json()["error"]["code"].is_string(), "{label}");
        assert!(!a.body.contains(&record) && !a.body.contains(&paid_book), "{label}: nothing leaks");
    }
}

#[tokio::test]
async fn order_numbers_are_issued_by_the_mall_across_members() {
    let w = world().await;
    let a = place_order(&w, "bookshop", &[("ebook-kessai-001", 1)]).await;
    let b = place_order(&w, "record-shop", &[("audio-chime-01", 1)]).await;
    let c = place_order(&w, "bookshop", &[("ebook-kessai-001", 1)]).await;
    assert!(a.starts_with("ord-000001-") && b.starts_with("ord-000002-") && c.starts_with("ord-000003-"));
    let (_, bill_b) = bill_of(&w, &b).await;
    assert_eq!(bill_b.message().member().unwrap().as_str(), "record-shop");
    assert_eq!(bill_b.message().store_name().as_str(), "Kissa Records");
}

async fn view(w: &World, path: &str, token: Option<&str>, peer: Option<&str>) -> Answer {
    let mut req = Request::get(path);
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let mut req = req.body(Body::empty()).unwrap();
    if let Some(p) = peer {
        req.extensions_mut().insert(crate::support::peer(p));
    }
    send(&w.app, req).await
}

/// #19: a member store reads its payouts (as the center answers the mall)
/// as JSON and CSV; another member's payout is unknown to it even though
/// the center would answer the mall for it.
#[tokio::test]
async fn each_member_sees_only_its_own_payouts_as_json_and_csv() {
    let w = world().await;
    let own = "po_00000000000000000000000000000001";
    let other = "po_00000000000000000000000000000002";

    let list = view(&w, "/members/bookshop/payouts", Some(BOOKSHOP_TOKEN), None).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let payouts = list.json()["payouts"].as_array().unwrap().clone();
    assert_eq!(payouts.len(), 1);
    assert_eq!(payouts[0]["payout_id"], own);

    let one = view(&w, &format!("/members/bookshop/payouts/{own}"), Some(BOOKSHOP_TOKEN), None).await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.body);
    assert_eq!(one.json()["lines"].as_array().unwrap().len(), 2);

    let csv = view(&w, &format!("/members/bookshop/payouts/{own}/csv"), Some(BOOKSHOP_TOKEN), None).await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.body);
    assert_eq!(
        csv.body,
        "kind,reference,amount_minor,fee_minor,at\r\npurchase,stl_1,8814,300,1\r\nrefund,'=cmd|' /C calc'!A0,-500,0,2\r\n",
        "a formula in a reference is defused"
    );
    let listing = view(&w, "/members/bookshop/payouts.csv", Some(BOOKSHOP_TOKEN), None).await;
    assert_eq!(listing.status, StatusCode::OK, "{}", listing.body);
    let rows: Vec<&str> = listing.body.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 2, "a header and one payout: {}", listing.body);
    assert!(rows[0].starts_with("payout_id,run,currency,gross_minor"));
    assert!(
        rows[1].starts_with(&format!("{own},clr_1800000000,JPY,8314,0,0,300,8014,2,in_transit,,KS0123456789ABCDEF01,"))
    );

    let cases = [
        (
            "another member's payout",
            format!("/members/bookshop/payouts/{other}"),
            Some(BOOKSHOP_TOKEN),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "its CSV",
            format!("/members/bookshop/payouts/{other}/csv"),
            Some(BOOKSHOP_TOKEN),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "not a payout id",
            "/members/bookshop/payouts/po_..%2F..%2Fv1".into(),
            Some(BOOKSHOP_TOKEN),
            None,
            StatusCode::NOT_FOUND,
        ),
        (
            "bookshop's token on record-shop",
            "/members/record-shop/payouts".into(),
            Some(BOOKSHOP_TOKEN),
            None,
            StatusCode::FORBIDDEN,
        ),
        (
            "bookshop's certificate on record-shop",
            format!("/members/record-shop/payouts/{other}"),
            None,
            Some("bookshop"),
            StatusCode::FORBIDDEN,
        ),
        ("no credentials", "/members/bookshop/payouts.csv".into(), None, None, StatusCode::UNAUTHORIZED),
    ];
    for (label, path, token, peer, status) in cases {
        let a = view(&w, &path, token, peer).await;
        assert_eq!(a.status, status, "{label}: {}", a.body);
        assert!(!a.body.contains("record-shop\"") && !a.body.contains("900"), "{label}: nothing leaks: {}", a.body);
    }
    // A browser gets the page, with links to each payout's CSV.
    let mut req = Request::get("/members/bookshop/payouts").header(header::ACCEPT, "text/html,application/xhtml+xml");
    req = req.header(header::AUTHORIZATION, format!("Bearer {BOOKSHOP_TOKEN}"));
    let page = send(&w.app, req.body(Body::empty()).unwrap()).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("<h1>Payouts to "), "{}", page.body);
    assert!(page.body.contains(&format!("/members/bookshop/payouts/{own}/csv")), "{}", page.body);
    assert!(page.body.contains("8014 JPY") && !page.body.contains("record-shop"), "{}", page.body);
    // The record shop's own certificate reads its own.
    let records = view(&w, "/members/record-shop/payouts", None, Some("record-shop")).await;
    assert_eq!(records.json()["payouts"][0]["payout_id"], other);
}
