//! Virtual prepaid cards (#18) through the wallet, over real TLS to a real
//! center and store: a registered member opens a card, the operator
//! records the cash, and the member pays a bill from it on the wallet's
//! pages: only from the wallet's own origin, only with its passwords, once.

use axum::http::{StatusCode, header};
use kessai_core::Money;
use kessai_core::keyfile::Passphrase;
use kessai_core::member_store::{Cost, seed_from};
use kessai_core::messages::prepaid::FundingMethod;
use kessai_core::random::SeededRandom;
use kessai_wallet::member::MemberFile;

use crate::world::{World, encode, form, input_value, send};

const CHEAP: Cost = Cost { memory_kib: 64, passes: 1 };

fn pw(s: &str) -> Passphrase {
    Passphrase::new(s.to_owned())
}

/// An applicant approved by the operator (admin certificate) and registered
/// from the wallet's keystore under passwords "A" and "B": the member
/// number and the admin client.
pub(crate) async fn registered_member(w: &World) -> (String, kessai_http::HttpsClient) {
    let admin = kessai_http::HttpsClient::new(
        kessai_tls::client_config(&w.ca.ca_cert(), Some((&w.ca, "admin"))).unwrap(),
        10_000,
    );
    let apply = serde_json::json!({ "kind": "general", "name": "Hanako Yamada", "contact": "hanako@example.jp" });
    let url = format!("{}/v1/members/applications", w.center_url);
    let (_, bytes) = w.http.post_json(&url, &apply, &[("idempotency-key", "app-p1")]).await.unwrap();
    let application: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let id = application["application_id"].as_str().unwrap();
    let url = format!("{}/v1/admin/applications/{id}/approve", w.center_url);
    let (_, bytes) = admin.post_json(&url, &serde_json::json!({}), &[]).await.unwrap();
    let member = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["member"].as_str().unwrap().to_owned();
    let (_, bytes) = admin.get(&format!("{}/v1/admin/outbox", w.center_url)).await.unwrap();
    let outbox: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let text = outbox["letters"][0]["text"].as_str().unwrap();
    let code = text.lines().find_map(|l| l.strip_prefix("Your activation code: ")).unwrap().to_owned();
    let config = w.wallet_config(&w.center_url);
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let store = MemberFile::in_dir(&config.data_dir);
    store.create(&seed_from(&[7; 32], None), &pw("A"), Some(&pw("B")), CHEAP, &mut SeededRandom::new(4)).unwrap();
    let details = kessai_core::messages::registration::MemberDetails::General {
        name: kessai_core::messages::DisplayText::parse("Hanako Yamada").unwrap(),
        address: kessai_core::messages::DisplayText::parse("1-2-3 Chiyoda, Tokyo").unwrap(),
        birth_date: "1990-04-01".into(),
    };
    kessai_wallet::member::register(&config, &store, (&pw("A"), Some(&pw("B"))), &member, &code, details)
        .await
        .unwrap();
    (member, admin)
}

#[tokio::test]
async fn a_member_pays_from_its_prepaid_card_on_the_wallets_pages_only() {
    let w = World::new(61, 20_000).await;
    let (member, admin) = registered_member(&w).await;
    let config = w.wallet_config(&w.center_url);
    let store = MemberFile::in_dir(&config.data_dir);
    let key = store.open(&pw("A")).unwrap().signing_key(Some(&pw("B"))).unwrap();
    let signer = (kessai_core::ids::PartyId::parse(&member).unwrap(), key);
    let wallet = std::sync::Arc::new(kessai_wallet::Wallet::open(config).await.unwrap());

    // Open a card paid in cash; the operator counts it.
    let amount = Money::new(5_000, kessai_core::Currency::JPY).unwrap();
    let request = kessai_wallet::prepaid::new_request_id();
    let opened = wallet.prepaid_fund(&signer, request, None, amount, FundingMethod::Cash, None).await.unwrap();
    assert_eq!(opened.status, kessai_api::views::FundingStatus::Awaiting);
    assert!(opened.reference.is_some() && opened.pay_to.is_some(), "{opened:?}");
    let known: Vec<String> = wallet.known_prepaid_cards().iter().map(ToString::to_string).collect();
    assert_eq!(known, vec![opened.prepaid_id.clone()]);
    let url = format!("{}/v1/admin/fundings/{}/cash", w.center_url, opened.funding_id);
    let body = serde_json::json!({ "amount": { "amount_minor": 5_000, "currency": "JPY" } });
    let (status, bytes) = admin.post_json(&url, &body, &[]).await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));

    // The store's page asks for the prepaid card: the review offers it first.
    let ui = kessai_wallet::web::router(wallet.clone());
    let (order, bill, return_url) = w.order(&[("ebook-kessai-001", 1)]).await;
    let body = format!("bill={}&return_url={}&method=prepaid", encode(&bill), encode(&return_url));
    let mut review = form("/pay", &body, "");
    review.headers_mut().insert(header::ORIGIN, "https://shop.kessai.test".parse().unwrap());
    review.headers_mut().insert("sec-fetch-site", "cross-site".parse().unwrap());
    let (status, _, page) = send(&ui, review).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let prepaid_at = page.find("action=\"/pay/prepaid\"").expect("the prepaid form");
    assert!(prepaid_at < page.find("action=\"/pay/start\"").unwrap(), "offered first");
    assert!(page.contains(&opened.prepaid_id), "{page}");
    let token = input_value(&page, "form_token");
    let pay = |a: &str, b: &str| {
        let body = format!(
            "bill={}&return_url={}&form_token={token}&prepaid_id={}&password_a={}&password_b={}",
            encode(&bill),
            encode(&return_url),
            opened.prepaid_id,
            encode(a),
            encode(b)
        );
        form("/pay/prepaid", &body, "")
    };
    let balance = || async {
        let cards = wallet.prepaid_cards(&signer, None).await.unwrap();
        cards[0].balance.amount_minor()
    };
    // From another origin, without the form token, or with a wrong
    // password: refused, nothing paid.
    let mut foreign = pay("A", "B");
    foreign.headers_mut().insert(header::ORIGIN, "http://rebound.example:8480".parse().unwrap());
    assert_eq!(send(&ui, foreign).await.0, StatusCode::FORBIDDEN);
    let guessed = form(
        "/pay/prepaid",
        &format!(
            "bill={}&return_url={}&form_token=0000&prepaid_id={}&password_a=A&password_b=B",
            encode(&bill),
            encode(&return_url),
            opened.prepaid_id
        ),
        "",
    );
    assert_eq!(send(&ui, guessed).await.0, StatusCode::FORBIDDEN);
    let (status, _, page) = send(&ui, pay("A", "not B")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(!page.contains("not B"), "no password echoed");
    assert_eq!(balance().await, 5_000, "nothing paid");
    // The member's own: paid at once, SIG3 and the store's SIG4 checked.
    let (status, _, page) = send(&ui, pay("A", "B")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("JPY 3,800") && page.contains("The store's receipt is checked."), "{page}");
    assert_eq!(balance().await, 3_800);
    assert!(w.order_page(&order).await.contains("Payment received"), "the store marked it paid");
    // Sent again (a reload): the same payment, paid once.
    let (status, _, page) = send(&ui, pay("A", "B")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(balance().await, 3_800);
    // The payment went into the member's history (FIG. 10).
    let history = store.open(&pw("A")).unwrap().history;
    assert_eq!(history.len(), 1, "recorded once: {history:?}");
    assert_eq!(history[0].amount.amount_minor(), 1_200);
    // Over the card's value: refused, nothing moves.
    let (_, big, big_return) = w.order(&[("ebook-kessai-001", 4)]).await;
    let body = format!(
        "bill={}&return_url={}&form_token={token}&prepaid_id={}&password_a=A&password_b=B",
        encode(&big),
        encode(&big_return),
        opened.prepaid_id
    );
    let (status, _, page) = send(&ui, form("/pay/prepaid", &body, "")).await;
    assert_eq!(status, StatusCode::PAYMENT_REQUIRED, "{page}");
    assert!(page.contains("Insufficient balance"), "{page}");
    assert_eq!(balance().await, 3_800);
}
