//! Bank deposit tokens (#21) through the wallet, over real TLS to a real
//! center: a registered member asks for a token, the pool account's
//! statement shows the deposit, and the wallet stores the token on the
//! card, lists the card's table and redeems it for card value.

use std::sync::Arc;

use kessai_center::tokens::{BankLink, TokenProvider, Tokens};
use kessai_core::messages::prepaid::TokenTerms;
use kessai_core::random::SeededRandom;
use kessai_core::time::Timestamp;
use kessai_core::token::{TokenKey, TokenKeyring};
use kessai_core::{Currency, Money};
use kessai_wallet::member::MemberFile;
use kessai_wallet::{TokenSessionCreate, Wallet};

use crate::prepaid::registered_member;
use crate::world::{World, card_id};

fn jpy(minor: u64) -> Money {
    Money::new(minor, Currency::JPY).unwrap()
}

/// Key version 1 of the provider, issuing now, as both parties hold it.
fn keyring() -> TokenKeyring {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let at = Timestamp::from_unix_s;
    let key = TokenKey::generate(
        1,
        (at(now - 86_400), at(now + 30 * 86_400), at(now + 400 * 86_400)),
        &mut SeededRandom::new(8),
    )
    .unwrap();
    let mut ring = TokenKeyring::new();
    ring.add(key).unwrap();
    ring
}

/// Both token parties, each its own service on loopback (its own CA,
/// directory and register), reached over mutual TLS: the bank holding
/// version 1 as delivered to it, and the credit service provider; their
/// directories are under `dir`.
async fn parties(dir: &std::path::Path) -> Parties {
    parties_and_provider(dir).await.0
}

/// The parties as the center reaches them, and the bank (its teller books
/// deposits).
#[derive(Clone)]
struct Parties {
    tokens: Arc<Tokens>,
    bank: Arc<kessai_bsp::Bank>,
}

/// [`parties`], with the provider's rig (to stop and restart it).
async fn parties_and_provider(dir: &std::path::Path) -> (Parties, kessai_csp::rig::ProviderRig) {
    let key = || keyring().keys().next().map(|k| TokenKey::from_json(&k.to_json().unwrap()).unwrap()).unwrap();
    let clock = Arc::new(kessai_core::time::SystemClock);
    let rig = kessai_csp::rig::ProviderRig::start(dir, &[&key()], None, clock.clone()).await.unwrap();
    let bank = kessai_bsp::rig::BankRig::start(dir, &[&key()], clock, "").await.unwrap();
    let provider = TokenProvider::new(&rig.url, rig.client_tls("center").unwrap());
    let link = BankLink::new(&bank.url, bank.client_tls("center").unwrap());
    (Parties { tokens: Arc::new(Tokens { bank: link, provider }), bank: Arc::clone(&bank.bank) }, rig)
}

/// Card `n` (with `balance`) linked to a registered member, a token of
/// `amount` asked for by the member and its deposit imported: the wallet,
/// its web UI, the member's signer and the token as asked.
async fn member_with_a_deposit(
    w: &World,
    n: u8,
    parties: Parties,
    amount: u64,
) -> (Arc<Wallet>, axum::Router, kessai_api::views::DepositToken) {
    let (member, admin) = registered_member(w).await;
    let card = card_id(n);
    let url = format!("{}/v1/admin/cards/{card}/member", w.center_url);
    let link = serde_json::json!({ "member": member, "instruction_required": false });
    let (status, body) = admin.post_json(&url, &link, &[]).await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let config = w.wallet_config(&w.center_url);
    let key = MemberFile::in_dir(&config.data_dir)
        .open(&kessai_core::keyfile::Passphrase::new("A".into()))
        .unwrap()
        .signing_key(Some(&kessai_core::keyfile::Passphrase::new("B".into())))
        .unwrap();
    let signer = (kessai_core::ids::PartyId::parse(&member).unwrap(), key);
    let wallet = Arc::new(Wallet::open(config).await.unwrap());
    let ui = kessai_wallet::web::router(Arc::clone(&wallet));

    // The member asks; the answer is the reference to quote.
    let terms =
        TokenTerms { refund_account: "0005-123-1-7654321".into(), card_ref: "last4:4242".into(), refund_holder: None };
    let asked = wallet
        .deposit_token(&signer, kessai_wallet::prepaid::new_request_id(), card, jpy(amount), terms)
        .await
        .unwrap();
    assert_eq!(asked.status, kessai_api::TokenStatus::Awaiting);
    // Nothing on the card yet, nothing to store.
    let listed = wallet.token_session(&TokenSessionCreate { redeem: None, list: true }).await.unwrap();
    assert_eq!(listed.on_card, Some(Vec::new()));

    // The deposit reaches the pool account; another instance of the center
    // (on the same database) imports the bank's statement of the day, and
    // the bank makes the token.
    let quoted = kessai_bank::rf::Reference::parse(&asked.reference).unwrap();
    parties.bank.deposit(jpy(amount), Some(&quoted), "YAMADA HANAKO").await.unwrap();
    let mut importer = kessai_center::app::open(&crate::world::center_config(w.tmp.path())).await.unwrap();
    importer.tokens = Some(parties.tokens);
    // Yesterday's and today's: the deposit is on one of them.
    let now = kessai_core::time::Clock::now(&kessai_core::time::SystemClock);
    let mut matched = 0;
    for at in [now.saturating_sub_s(86_400), now] {
        matched += importer.fetch_statement(&kessai_bank::Date::of(at).to_string()).await.unwrap().matched;
    }
    assert_eq!(matched, 1);
    (wallet, ui, asked)
}

#[tokio::test]
async fn a_member_stores_lists_and_redeems_a_deposit_token_through_the_wallet() {
    let csp = tempfile::tempdir().unwrap();
    let tokens = parties(csp.path()).await;
    let w = World::new_with(72, 1_000, Some(tokens.tokens.clone())).await;
    let (wallet, ui, asked) = member_with_a_deposit(&w, 72, tokens, 7_000).await;

    // The wallet stores it, lists it, and redeems it for value.
    let stored = wallet.token_session(&TokenSessionCreate::default()).await.unwrap();
    assert_eq!(stored.stored, vec![asked.token_id.clone()]);
    let listed = wallet.token_session(&TokenSessionCreate { redeem: None, list: true }).await.unwrap();
    let on_card = listed.on_card.unwrap();
    assert_eq!(on_card.len(), 1);
    assert_eq!((on_card[0].token_id.as_str(), on_card[0].amount), (asked.token_id.as_str(), jpy(7_000)));
    assert_eq!(on_card[0].status, Some(kessai_api::TokenStatus::Stored));
    assert!(!on_card[0].redeemed && on_card[0].deposited_on.is_some());
    let redeem = TokenSessionCreate { redeem: Some(asked.token_id.clone()), list: false };
    let redeemed = wallet.token_session(&redeem).await.unwrap();
    assert_eq!(redeemed.redeemed.as_ref().map(|r| r.amount), Some(jpy(7_000)));
    let credited = wallet.apply_owed(&mut |_| {}).await.unwrap();
    assert_eq!(credited.len(), 1);
    assert_eq!(w.card_state().0, 8_000, "the card holds the token's value besides its 1,000");
    assert_eq!(w.center_float().await, (8_000, 0));
    // Listed again: redeemed on the card and at the center.
    let listed = wallet.token_session(&TokenSessionCreate { redeem: None, list: true }).await.unwrap();
    let on_card = listed.on_card.unwrap();
    assert!(on_card[0].redeemed);
    assert_eq!(on_card[0].status, Some(kessai_api::TokenStatus::Redeemed));
    // The wallet's card history page lists it too, from the card's table
    // (only on its own page's click).
    let (status, _, ask) =
        crate::world::send(&ui, axum::http::Request::get("/card").body(axum::body::Body::empty()).unwrap()).await;
    assert_eq!(status, axum::http::StatusCode::OK);
    let form_token = crate::world::input_value(&ask, "form_token");
    let read = crate::world::form("/card/history", &format!("form_token={form_token}"), "");
    let (status, _, page) = crate::world::send(&ui, read).await;
    assert_eq!(status, axum::http::StatusCode::OK, "{page}");
    assert!(page.contains(&format!("id=\"{}\"", asked.token_id)), "{page}");
    assert!(page.contains("JPY 7,000") && page.contains("redeemed"), "{page}");
    // Redeemed again: refused, nothing more credited.
    assert!(wallet.token_session(&redeem).await.is_err());
    assert!(wallet.apply_owed(&mut |_| {}).await.unwrap().is_empty());
    assert_eq!(w.card_state().0, 8_000);
}

/// Seed 002 through the wallet: the bookshop's bill paid with the token
/// on the card instead of its balance; SIG3 and the store's SIG4 checked,
/// the store's order paid, the rest of the token on the card.
#[tokio::test]
async fn a_deposit_token_pays_a_bookshop_order_through_the_wallet() {
    let csp = tempfile::tempdir().unwrap();
    let tokens = parties(csp.path()).await;
    let w = World::new_with(73, 1_000, Some(tokens.tokens.clone())).await;
    let (wallet, _ui, asked) = member_with_a_deposit(&w, 73, tokens, 7_000).await;
    let stored = wallet.token_session(&TokenSessionCreate::default()).await.unwrap();
    assert_eq!(stored.stored, vec![asked.token_id.clone()]);
    let (order, bill, return_url) = w.order(&[("ebook-kessai-001", 1)]).await;
    let mut seen = Vec::new();
    let completed = wallet
        .pay_by_token(&bill, &return_url, &asked.token_id, None, &mut |p| seen.push(format!("{p:?}")))
        .await
        .unwrap();
    assert_eq!(completed.amount, jpy(1_200));
    assert!(seen.iter().any(|p| p.starts_with("SettlementOpened")) && seen.last().unwrap() == "Completed", "{seen:?}");
    let settlement = completed.settlement_id.to_string();
    assert_eq!(w.center_phase(&settlement).await, "completed");
    let receipt = wallet.wait_receipt(&settlement).await.unwrap();
    assert_eq!(receipt.order_id, order);
    assert!(w.order_page(&order).await.contains("Payment received"), "the store's order is paid");
    // The balance untouched by the bill; the token's rest taken at once.
    assert_eq!(w.card_state().0, 1_000 + 7_000 - 1_200);
    assert_eq!(w.center_float().await, (1_000 + 7_000 - 1_200, 0));
    let record = wallet.record(&settlement).await.unwrap();
    assert_eq!(record.phase, kessai_wallet::LocalPhase::Receipted);
    // The token is spent: it pays no second order.
    let (_, bill, return_url) = w.order(&[("ebook-kessai-001", 1)]).await;
    let again = wallet.pay_by_token(&bill, &return_url, &asked.token_id, None, &mut |_| {}).await;
    assert!(again.is_err(), "{again:?}");
    assert_eq!(w.card_state().0, 1_000 + 7_000 - 1_200);
    // The choice refused: the payment failed, nothing left to recover.
    assert!(wallet.records().needing_recovery(10).await.unwrap().is_empty());
}

/// The same through the wallet's pages: the review offers a deposit
/// token, the next page lists the card's tokens that can pay (read
/// through the center), and choosing one pays; then back to the store once
/// SIG4 is verified. A choice posted from another origin is refused.
#[tokio::test]
async fn a_deposit_token_pays_a_bookshop_order_through_the_wallets_pages() {
    use crate::purchase::{pay_form, review_fields};
    use crate::world::{form, send};
    use axum::http::{StatusCode, header};
    let csp = tempfile::tempdir().unwrap();
    let tokens = parties(csp.path()).await;
    let w = World::new_with(74, 1_000, Some(tokens.tokens.clone())).await;
    let (wallet, ui, asked) = member_with_a_deposit(&w, 74, tokens, 5_000).await;
    wallet.token_session(&TokenSessionCreate::default()).await.unwrap();
    let (order, bill, return_url) = w.order(&[("ebook-kessai-001", 1)]).await;
    let (status, _, review) = send(&ui, pay_form(&bill, &return_url)).await;
    assert_eq!(status, StatusCode::OK, "{review}");
    assert!(review.contains("Pay with a deposit token"), "{review}");
    let fields = review_fields(&review);
    // The listing too is the wallet's own page's: another origin, or a
    // form without the wallet's form token, is refused.
    let mut foreign = form("/pay/token", &fields, "");
    foreign.headers_mut().insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    assert_eq!(send(&ui, foreign).await.0, StatusCode::FORBIDDEN, "another origin's listing");
    let forged = fields.replace("form_token=", "form_token=x");
    assert_eq!(send(&ui, form("/pay/token", &forged, "")).await.0, StatusCode::FORBIDDEN, "no form token");
    let (status, _, choice) = send(&ui, form("/pay/token", &fields, "")).await;
    assert_eq!(status, StatusCode::OK, "{choice}");
    assert!(choice.contains(&asked.token_id), "{choice}");
    assert!(choice.contains("JPY 3,800"), "what goes onto the card: {choice}");
    let confirm = format!("{fields}&token_id={}", asked.token_id);
    let mut foreign = form("/pay/token/confirm", &confirm, "");
    foreign.headers_mut().insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    let (status, _, _) = send(&ui, foreign).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "another origin's post");
    assert_eq!(w.card_state().0, 1_000, "nothing moved");
    let (status, _, page) = send(&ui, form("/pay/token/confirm", &confirm, "")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("http-equiv=\"refresh\""), "the processing page refreshes without JavaScript");
    let sid = page.split("/settlements/").nth(1).and_then(|rest| rest.split('"').next()).unwrap();
    let status_page = format!("/settlements/{sid}");
    assert!(status_page.starts_with("/settlements/stl_"), "{status_page}");
    let mut back = None;
    for _ in 0..100 {
        let get = axum::http::Request::get(&status_page).body(axum::body::Body::empty()).unwrap();
        let (status, headers, _) = send(&ui, get).await;
        if status == StatusCode::SEE_OTHER {
            back = Some(headers[header::LOCATION].to_str().unwrap().to_owned());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(back.as_deref(), Some(return_url.as_str()), "back to the store once SIG4 is verified");
    assert!(w.order_page(&order).await.contains("Payment received"));
    assert_eq!(w.card_state().0, 1_000 + 5_000 - 1_200);
    // The token is spent: the next bill's choice lists none.
    let (_, bill, return_url) = w.order(&[("ebook-kessai-001", 1)]).await;
    let (_, _, review) = send(&ui, pay_form(&bill, &return_url)).await;
    let (_, _, choice) = send(&ui, form("/pay/token", &review_fields(&review), "")).await;
    assert!(choice.contains("id=\"no-token\""), "{choice}");
}

/// A token purchase interrupted after the card gave the token up (the
/// credit service provider out of reach when the center heard): the wallet
/// keeps the payment as `token_chosen`; `recover`, once the provider
/// answers, finishes it: the bill paid once by the token, SIG3 checked,
/// the rest of the token owed to the card, nothing twice.
#[tokio::test]
async fn an_interrupted_token_purchase_is_finished_by_recover() {
    let csp = tempfile::tempdir().unwrap();
    let (tokens, mut rig) = parties_and_provider(csp.path()).await;
    let w = World::new_with(75, 1_000, Some(tokens.tokens.clone())).await;
    let (wallet, _ui, asked) = member_with_a_deposit(&w, 75, tokens, 4_000).await;
    wallet.token_session(&TokenSessionCreate::default()).await.unwrap();
    let (order, bill, return_url) = w.order(&[("ebook-kessai-001", 1)]).await;
    rig.stop();
    let cut = wallet.pay_by_token(&bill, &return_url, &asked.token_id, None, &mut |_| {}).await;
    assert!(matches!(cut, Err(kessai_wallet::PayError::TokenUnfinished { .. })), "{cut:?}");
    let pending = wallet.records().needing_recovery(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    let rec = &pending[0];
    assert_eq!(
        (rec.phase, rec.token_id.as_deref()),
        (kessai_wallet::LocalPhase::TokenChosen, Some(asked.token_id.as_str()))
    );
    let settlement = rec.settlement_id.clone().unwrap().to_string();
    assert_eq!(w.center_phase(&settlement).await, "paying_by_token");
    assert!(!w.order_page(&order).await.contains("Payment received"));
    // Recovery while the provider is still out of reach decides nothing.
    let outcomes = wallet.recover_all(&mut |_| {}).await.unwrap();
    assert!(matches!(outcomes[0].1, kessai_wallet::Outcome::Failed { .. }), "{outcomes:?}");
    assert_eq!(w.center_phase(&settlement).await, "paying_by_token");
    rig.restart(Arc::new(kessai_core::time::SystemClock)).await.unwrap();
    let outcomes = wallet.recover_all(&mut |_| {}).await.unwrap();
    assert_eq!(outcomes.len(), 1);
    assert!(matches!(outcomes[0].1, kessai_wallet::Outcome::Completed), "{outcomes:?}");
    assert_eq!(w.center_phase(&settlement).await, "completed");
    assert_eq!(wallet.record(&settlement).await.unwrap().phase, kessai_wallet::LocalPhase::Completed);
    assert!(wallet.wait_receipt(&settlement).await.is_ok());
    assert!(w.order_page(&order).await.contains("Payment received"));
    // The token's rest onto the card; nothing left to recover.
    assert_eq!(wallet.apply_owed(&mut |_| {}).await.unwrap().len(), 1);
    assert_eq!(w.card_state().0, 1_000 + 4_000 - 1_200);
    assert_eq!(w.center_float().await, (1_000 + 4_000 - 1_200, 0));
    assert!(wallet.records().needing_recovery(10).await.unwrap().is_empty());
    assert!(wallet.recover_all(&mut |_| {}).await.unwrap().is_empty());
}
