//! The member keystore on disk: made once with mode 0600, never
//! overwritten, changed atomically; an interrupted change leaves the old
//! file whole, and a damaged file is refused with a clear error.

use kessai_core::Money;
use kessai_core::keyfile::Passphrase;
use kessai_core::member_store::{Cost, HistoryEntry, MemberStoreError, seed_from};
use kessai_core::random::SeededRandom;
use kessai_core::time::Timestamp;
use kessai_wallet::member::{MemberError, MemberFile, StopAt};

const CHEAP: Cost = Cost { memory_kib: 64, passes: 1 };

fn pw(s: &str) -> Passphrase {
    Passphrase::new(s.to_owned())
}

fn purchase(n: u64) -> HistoryEntry {
    HistoryEntry {
        at: Timestamp::from_unix_s(1_795_000_000 + n),
        store: "kessai-mall".into(),
        order_id: format!("ord-{n}"),
        amount: Money::new(1_200, kessai_core::Currency::JPY).unwrap(),
        settlement_id: format!("stl_{n:032x}"),
    }
}

#[test]
fn the_keystore_is_made_once_private_and_survives_an_interrupted_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = MemberFile::in_dir(dir.path());
    let mut rng = SeededRandom::new(1);
    assert!(matches!(store.open(&pw("A")), Err(MemberError::Missing { .. })));
    let seed = seed_from(&[5; 32], Some("typed by the member"));
    let public = store.create(&seed, &pw("A"), Some(&pw("B")), CHEAP, &mut rng).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(store.path()).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let again = store.create(&seed, &pw("other"), None, CHEAP, &mut rng).unwrap_err();
    assert!(matches!(again, MemberError::Exists { .. }), "never overwritten: {again}");

    store.record(&pw("A"), purchase(1), &mut rng).unwrap();
    let before = std::fs::read(store.path()).unwrap();
    // A second purchase, its write stopped after the new file was synced
    // and before it replaced the old (a crash there): the old file is whole.
    let mut opened = store.open(&pw("A")).unwrap();
    opened.history.push(purchase(2));
    store.replace(&opened.seal_random(&mut rng).unwrap(), StopAt::BeforeRename).unwrap();
    assert_eq!(std::fs::read(store.path()).unwrap(), before, "the old file survives");
    assert_eq!(store.open(&pw("A")).unwrap().history, vec![purchase(1)]);
    // The next change goes through whole.
    store.record(&pw("A"), purchase(2), &mut rng).unwrap();
    let opened = store.open(&pw("A")).unwrap();
    assert_eq!(opened.history, vec![purchase(1), purchase(2)]);
    assert_eq!(opened.signing_key(Some(&pw("B"))).unwrap().public(), public);

    // Wrong passwords, a truncated or altered file: clear errors, and the
    // file is left as it was.
    let whole = std::fs::read(store.path()).unwrap();
    assert!(matches!(store.open(&pw("B")), Err(MemberError::Store(MemberStoreError::WrongPasswordA))));
    let wrong_b = opened.signing_key(Some(&pw("A"))).unwrap_err();
    assert_eq!(wrong_b, MemberStoreError::WrongPasswordB);
    std::fs::write(store.path(), &whole[..whole.len() / 2]).unwrap();
    assert!(matches!(store.open(&pw("A")), Err(MemberError::Store(MemberStoreError::WrongPasswordA))));
    std::fs::write(store.path(), &whole[..20]).unwrap();
    assert!(matches!(store.open(&pw("A")), Err(MemberError::Store(MemberStoreError::Truncated))));
    let mut bent = whole.clone();
    let last = bent.len() - 1;
    bent[last] ^= 0x80;
    std::fs::write(store.path(), &bent).unwrap();
    assert!(store.open(&pw("A")).is_err(), "an altered tag");
    assert!(store.record(&pw("A"), purchase(3), &mut rng).is_err(), "nothing is written over a damaged file");
    assert_eq!(std::fs::read(store.path()).unwrap(), bent);
}

/// FIG. 3–4 over real TLS: the applicant applies at the center, the
/// operator approves and reads the letter from the outbox (admin
/// certificate), and the wallet registers the keystore's key with the
/// letter's number and code, signed and encrypted; the center enters it.
#[tokio::test]
async fn a_member_registers_its_keystore_key_with_the_center() {
    let w = crate::world::World::new(60, 20_000).await;
    let admin = kessai_http::HttpsClient::new(
        kessai_tls::client_config(&w.ca.ca_cert(), Some((&w.ca, "admin"))).unwrap(),
        10_000,
    );
    let apply = serde_json::json!({ "kind": "general", "name": "Hanako Yamada", "contact": "hanako@example.jp" });
    let (status, bytes) = w
        .http
        .post_json(&format!("{}/v1/members/applications", w.center_url), &apply, &[("idempotency-key", "app-1")])
        .await
        .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let application: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let id = application["application_id"].as_str().unwrap();
    let url = format!("{}/v1/admin/applications/{id}/approve", w.center_url);
    let (status, bytes) = admin.post_json(&url, &serde_json::json!({}), &[]).await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let approved: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let member = approved["member"].as_str().unwrap().to_owned();
    // The applicant learns no code from the center; the operator's outbox has it.
    let (_, bytes) = w.http.get(&format!("{}/v1/admin/outbox", w.center_url)).await.unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains(&member), "the outbox answers the admin only");
    let (_, bytes) = admin.get(&format!("{}/v1/admin/outbox", w.center_url)).await.unwrap();
    let outbox: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let text = outbox["letters"][0]["text"].as_str().unwrap();
    let code = text.lines().find_map(|l| l.strip_prefix("Your activation code: ")).unwrap().to_owned();

    let config = w.wallet_config(&w.center_url);
    std::fs::create_dir_all(&config.data_dir).unwrap();
    let store = MemberFile::in_dir(&config.data_dir);
    let seed = seed_from(&[9; 32], None);
    let public = store.create(&seed, &pw("A"), Some(&pw("B")), CHEAP, &mut SeededRandom::new(2)).unwrap();
    let details = kessai_core::messages::registration::MemberDetails::General {
        name: kessai_core::messages::DisplayText::parse("Hanako Yamada").unwrap(),
        address: kessai_core::messages::DisplayText::parse("1-2-3 Chiyoda, Tokyo").unwrap(),
        birth_date: "1990-04-01".into(),
    };
    // Password B wrong: nothing is sent.
    let wrong =
        kessai_wallet::member::register(&config, &store, (&pw("A"), Some(&pw("A"))), &member, &code, details.clone())
            .await
            .unwrap_err();
    assert!(wrong.to_string().contains("password B"), "{wrong}");
    let entered =
        kessai_wallet::member::register(&config, &store, (&pw("A"), Some(&pw("B"))), &member, &code, details.clone())
            .await
            .unwrap();
    assert_eq!(
        (entered["member"].as_str(), entered["kid"].as_str()),
        (Some(member.as_str()), Some(public.kid().as_str()))
    );
    // The code works once.
    let again = kessai_wallet::member::register(&config, &store, (&pw("A"), Some(&pw("B"))), &member, &code, details)
        .await
        .unwrap_err();
    assert!(again.to_string().contains("activation_code_used"), "{again}");

    // The operator links the card to the member: from then on a purchase
    // needs the member's signed instruction (FIG. 7 ①).
    let card = crate::world::card_id(60);
    let url = format!("{}/v1/admin/cards/{card}/member", w.center_url);
    let (status, bytes) = admin.post_json(&url, &serde_json::json!({ "member": member }), &[]).await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let before = w.card_state();
    let (_, bill, return_url) = w.order(&[("ebook-kessai-001", 1)]).await;
    let plain = kessai_wallet::Wallet::open(w.wallet_config(&w.center_url)).await.unwrap();
    let refused = plain.begin(&bill, &return_url, &mut |_| {}).await.unwrap_err();
    assert!(refused.to_string().contains("instruction_required"), "{refused}");
    assert_eq!(w.card_state(), before, "nothing reached the card's value");
    // The member's wallet: passwords A and B open the key that signs it.
    let key = store.open(&pw("A")).unwrap().signing_key(Some(&pw("B"))).unwrap();
    let member_wallet = kessai_wallet::Wallet::open(w.wallet_config(&w.center_url))
        .await
        .unwrap()
        .with_member(kessai_core::ids::PartyId::parse(&member).unwrap(), key);
    let (_, bill, return_url) = w.order(&[("ebook-kessai-001", 1)]).await;
    let offered = member_wallet.begin(&bill, &return_url, &mut |_| {}).await.unwrap();
    let relayed = member_wallet.relay_debit(offered).await.unwrap();
    member_wallet.complete(relayed).await.unwrap();
    assert_eq!(w.card_state().0, before.0 - 1_200, "paid once, on the member's instruction");

    // Through the wallet's pages: the review asks the member's passwords; a
    // wrong one opens nothing and starts nothing; the right ones sign the
    // instruction and the consent page follows.
    use crate::world::{encode, form, input_value, send};
    let ui = kessai_wallet::web::router(std::sync::Arc::new(
        kessai_wallet::Wallet::open(w.wallet_config(&w.center_url)).await.unwrap(),
    ));
    let (_, bill, return_url) = w.order(&[("ebook-kessai-001", 1)]).await;
    let mut review = form("/pay", &format!("bill={}&return_url={}", encode(&bill), encode(&return_url)), "");
    review.headers_mut().insert(axum::http::header::ORIGIN, "https://shop.kessai.test".parse().unwrap());
    review.headers_mut().insert("sec-fetch-site", "cross-site".parse().unwrap());
    let (_, _, page) = send(&ui, review).await;
    assert!(page.contains(&format!("You pay as member {member}")) && page.contains("name=\"password_b\""), "{page}");
    let token = input_value(&page, "form_token");
    let start = |a: &str, b: &str| {
        let body = format!(
            "bill={}&return_url={}&form_token={token}&password_a={}&password_b={}",
            encode(&bill),
            encode(&return_url),
            encode(a),
            encode(b)
        );
        form("/pay/start", &body, "")
    };
    let paid_before = w.card_state().0;
    let (status, _, page) = send(&ui, start("A", "not B")).await;
    assert_eq!(status, axum::http::StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("did not open your member key") && !page.contains("not B"), "{page}");
    let (status, _, page) = send(&ui, start("A", "B")).await;
    assert_eq!(status, axum::http::StatusCode::OK, "{page}");
    assert!(page.contains("Agree and pay"), "the consent page: {page}");
    assert_eq!(w.card_state().0, paid_before, "nothing taken before consent");
    // Agreed: paid, and the purchase goes into the member's history with
    // the keystore key held since the review (the passwords are gone).
    let settlement = crate::purchase::settlement_of(&page);
    let token = input_value(&page, "consent_token");
    let consent = form(&format!("/settlements/{settlement}/consent"), &format!("consent_token={token}"), "");
    let (status, _, page) = send(&ui, consent).await;
    assert_eq!(status, axum::http::StatusCode::OK, "{page}");
    assert_eq!(w.card_state().0, paid_before - 1_200);
    let history = store.open(&pw("A")).unwrap().history;
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!((history[0].settlement_id.as_str(), history[0].amount.amount_minor()), (settlement.as_str(), 1_200));

    // The member's history page (FIG. 11): password A alone opens it,
    // offline; a wrong A or another origin shows nothing.
    store.record(&pw("A"), purchase(1), &mut SeededRandom::new(3)).unwrap();
    let get = axum::http::Request::get("/member").body(axum::body::Body::empty()).unwrap();
    let (status, _, page) = send(&ui, get).await;
    assert!(status.is_success() && page.contains("name=\"password_a\""), "{page}");
    let (status, _, page) = send(&ui, form("/member/history", "password_a=B", "")).await;
    assert_eq!(status, axum::http::StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("wrong password A") && !page.contains(&purchase(1).order_id), "{page}");
    let mut foreign = form("/member/history", "password_a=A", "");
    foreign.headers_mut().insert(axum::http::header::ORIGIN, "https://shop.kessai.test".parse().unwrap());
    let (status, _, page) = send(&ui, foreign).await;
    assert_eq!(status, axum::http::StatusCode::FORBIDDEN, "{page}");
    assert!(!page.contains(&purchase(1).order_id), "{page}");
    let (status, _, page) = send(&ui, form("/member/history", "password_a=A", "")).await;
    assert_eq!(status, axum::http::StatusCode::OK, "{page}");
    for shown in [member.as_str(), public.kid().as_str(), purchase(1).order_id.as_str(), "passwords A and B"] {
        assert!(page.contains(shown), "{shown} in {page}");
    }
    assert!(page.contains(&purchase(1).at.utc()), "the date, for people: {page}");
}
