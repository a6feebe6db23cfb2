//! L1: unpaid orders are purged once nothing can pay them, and only then.

use kessai_store::limits::UNPAID_ORDER_GRACE_S;
use kessai_store::retention::{PurgeError, purge_unpayable};

use crate::support::*;

/// Places an unpaid order; (order id, bill id).
async fn unpaid(w: &World) -> (String, String) {
    let order_id = place_order(w, "bookshop", &[("ebook-kessai-001", 1)]).await;
    let (_, bill) = bill_of(w, &order_id).await;
    (order_id, bill.message().bill_id().as_str().to_owned())
}

fn center_says(w: &World, bill_id: &str, state: &str) {
    let key = (w.config.mall_id.as_str().to_owned(), bill_id.to_owned());
    w.center.bills.write().unwrap().insert(key, state.to_owned());
}

#[tokio::test]
async fn an_unpaid_order_goes_once_nothing_can_pay_its_bill_and_not_before() {
    let w = world().await;
    let (never, never_bill) = unpaid(&w).await;
    let (voided, voided_bill) = unpaid(&w).await;
    let (open, open_bill) = unpaid(&w).await;
    let (paid_there, paid_there_bill) = unpaid(&w).await;
    let (paid_here, _, _) = paid_order(&w, "bookshop", &[("ebook-kessai-001", 1)]).await;
    for (bill, state) in
        [(&never_bill, "none"), (&voided_bill, "voided"), (&open_bill, "open"), (&paid_there_bill, "paid")]
    {
        center_says(&w, bill, state);
    }
    let expires = w.state.db.order(&never).await.unwrap().unwrap().bill_expires_at;

    // Within the grace after the bill's expiry, nothing is even asked.
    let p = purge_unpayable(&w.state, expires + UNPAID_ORDER_GRACE_S).await.unwrap();
    assert_eq!((p.deleted, p.kept), (0, 0));

    // Past it: the bills nothing can pay go, with their orders; the
    // others stay, and so does the paid order.
    let later = expires + UNPAID_ORDER_GRACE_S + 1;
    let p = purge_unpayable(&w.state, later).await.unwrap();
    assert_eq!((p.deleted, p.kept), (2, 2));
    for gone in [&never, &voided] {
        assert!(w.state.db.order(gone).await.unwrap().is_none(), "{gone}");
        assert!(w.state.db.downloads_of(gone).await.unwrap().is_empty());
    }
    for kept in [&open, &paid_there, &paid_here] {
        assert!(w.state.db.order(kept).await.unwrap().is_some(), "{kept}");
    }
    // The order kept because its settlement was under way is paid when
    // the completion comes, purge or not.
    let (token, bill) = bill_of(&w, &open).await;
    let completion = sign_completion(&w, &w.center_key, completion_for(&w, &token, bill.message()));
    let a = deliver(&w, &completion, Some("center")).await;
    assert_eq!(a.status, axum::http::StatusCode::OK, "{}", a.body);
    assert!(w.state.db.order(&open).await.unwrap().unwrap().paid);
    // Running again changes nothing more.
    let p = purge_unpayable(&w.state, later).await.unwrap();
    assert_eq!((p.deleted, p.kept), (0, 1));
}

#[tokio::test]
async fn while_the_center_cannot_answer_nothing_is_purged() {
    let w = world().await;
    let (first, first_bill) = unpaid(&w).await;
    let (second, _) = unpaid(&w).await;
    // The center answers the first bill (nothing pays it) and fails on the
    // second: the run stops there; what it had not checked stays.
    center_says(&w, &first_bill, "none");
    let expires = w.state.db.order(&second).await.unwrap().unwrap().bill_expires_at;
    let later = expires + UNPAID_ORDER_GRACE_S + 1;
    let e = purge_unpayable(&w.state, later).await.unwrap_err();
    assert!(matches!(e, PurgeError::Center(_)), "{e}");
    assert!(w.state.db.order(&first).await.unwrap().is_none());
    assert!(w.state.db.order(&second).await.unwrap().is_some());
}

#[tokio::test]
async fn orders_kept_do_not_hold_back_those_behind_them() {
    let w = world().await;
    let mut kept = Vec::new();
    for _ in 0..3 {
        let (order, bill) = unpaid(&w).await;
        center_says(&w, &bill, "open");
        kept.push(order);
    }
    let (last, last_bill) = unpaid(&w).await;
    center_says(&w, &last_bill, "none");
    let expires = w.state.db.order(&last).await.unwrap().unwrap().bill_expires_at;
    let p = purge_unpayable(&w.state, expires + UNPAID_ORDER_GRACE_S + 1).await.unwrap();
    assert_eq!((p.deleted, p.kept), (1, 3));
    assert!(w.state.db.order(&last).await.unwrap().is_none());
}
