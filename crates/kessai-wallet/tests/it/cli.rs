//! The functions behind `kessai wallet pay|balance|history`, and a card
//! in its own process behind the vpcd reader.

use std::sync::{Arc, Mutex};

use kessai_card::Durability;
use kessai_card::transport::vpcd::serve_vpcd_image;
use kessai_wallet::{LocalPhase, PayOutcome, Progress, ReaderConfig};

use crate::world::{World, card_id};

#[tokio::test]
async fn pay_from_the_command_line_asks_consent_reports_progress_and_verifies_the_receipt() {
    let w = World::new(30, 20_000).await;
    let (order, _, _) = w.order(&[("ebook-kessai-001", 1)]).await;
    let config = w.wallet_config(&w.center_url);
    let shown = Arc::new(Mutex::new(None));
    let seen = Arc::clone(&shown);
    let mut steps = Vec::new();
    let bill_url = format!("{}/orders/{order}/bill", w.store_url);
    let outcome = kessai_wallet::pay(
        config.clone(),
        &bill_url,
        move |view| {
            *seen.lock().unwrap() = Some((view.amount.to_string(), view.balance.to_string(), view.store_name.clone()));
            true
        },
        |p| steps.push(p),
    )
    .await
    .unwrap();
    let shown = shown.lock().unwrap().clone().unwrap();
    assert_eq!(shown, ("JPY 1,200".to_owned(), "JPY 20,000".to_owned(), "Kessai Books".to_owned()));
    let PayOutcome::Paid { receipt, balance_after, .. } = outcome else { panic!("not paid: {outcome:?}") };
    let receipt = receipt.expect("the store's receipt arrived and verified");
    assert_eq!(receipt.order_id, order);
    assert_eq!(receipt.delivery, "download");
    assert_eq!(balance_after.to_string(), "JPY 18,800");
    assert!(matches!(steps.first(), Some(Progress::CardRead(c)) if c.card_id == card_id(30)));
    assert_eq!(steps.last(), Some(&Progress::ReceiptVerified));
    assert_eq!(w.card_state().0, 18_800);
    let summary = kessai_wallet::balance(config.clone()).await.unwrap();
    assert_eq!(summary.balance.to_string(), "JPY 18,800");
    let history = kessai_wallet::history(config.clone()).await.unwrap();
    assert_eq!(history[0].phase, LocalPhase::Receipted);
    // The card's own log, read through a secure session the center opens:
    // the purchase, newest first, then the funding credit.
    let log = kessai_wallet::card_log(config).await.unwrap();
    assert!(log.len() >= 2, "{log:?}");
    assert_eq!(log[0].kind.as_str(), "debit");
    assert_eq!(log[0].balance_after_minor, 18_800);
    assert_eq!(log.last().unwrap().kind.as_str(), "credit");
    assert!(log.windows(2).all(|w| w[0].counter == w[1].counter + 1), "newest first, consecutive");
    assert_eq!(w.card_state().0, 18_800, "reading the log moved no value");
}

#[tokio::test]
async fn declining_on_the_command_line_charges_nothing() {
    let w = World::new(31, 20_000).await;
    let (order, _, _) = w.order(&[("ebook-kessai-001", 1)]).await;
    let config = w.wallet_config(&w.center_url);
    let bill_url = format!("{}/orders/{order}/bill", w.store_url);
    let outcome = kessai_wallet::pay(config, &bill_url, |_| false, |_| {}).await.unwrap();
    assert!(matches!(outcome, PayOutcome::Declined(kessai_wallet::Outcome::Voided { .. })), "{outcome:?}");
    assert_eq!(w.card_state().0, 20_000);
}

#[tokio::test]
async fn the_balance_is_read_from_a_card_process_connected_like_to_vpcd() {
    let w = World::new(32, 7_000).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let mut config = w.wallet_config(&w.center_url);
    config.reader = ReaderConfig::Vpcd { listen: addr };
    let image = w.image.clone();
    let card_process = std::thread::spawn(move || serve_vpcd_image(&image, Durability::Fsync, addr));
    let summary = kessai_wallet::balance(config).await.unwrap();
    assert_eq!(summary.card_id, card_id(32));
    assert_eq!(summary.balance.to_string(), "JPY 7,000");
    card_process.join().unwrap().unwrap();
}

#[tokio::test]
async fn an_apdu_observer_sees_the_secure_session_and_the_debit_in_order() {
    let w = World::new(32, 20_000).await;
    let (_, bill, return_url) = w.order(&[("ebook-kessai-001", 1)]).await;
    let mut wallet = kessai_wallet::Wallet::open(w.wallet_config(&w.center_url)).await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    wallet.observe_apdus(Arc::new(move |command: &[u8], answer: &[u8]| {
        log.lock().unwrap().push((command[0], command[1], answer[answer.len() - 2..].to_vec()));
    }));
    let offered = wallet.begin(&bill, &return_url, &mut |_| {}).await.unwrap();
    let relayed = wallet.relay_debit(offered).await.unwrap();
    wallet.complete(relayed).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let (cla_ins, sws): (Vec<_>, Vec<_>) = seen.into_iter().map(|(c, i, sw)| ((c, i), sw)).unzip();
    // SELECT, GET DATA (the wallet's own reads), INITIALIZE UPDATE under the
    // bill's challenge, then the center's: EXTERNAL AUTHENTICATE, sealed
    // READ LOG (uncollected) and READ BALANCE; after consent LOG COLLECTED
    // (what the center kept of the log) and the DEBIT.
    let expected = [
        (0x00, 0xA4),
        (0x80, 0xCA),
        (0x80, 0x50),
        (0x84, 0x82),
        (0x84, 0x36),
        (0x84, 0x30),
        (0x84, 0x3C),
        (0x84, 0x32),
    ];
    assert_eq!(cla_ins, expected);
    assert!(sws.iter().all(|sw| sw == &[0x90, 0x00]), "the card accepted every command: {sws:?}");
    assert_eq!(w.card_state().0, 18_800);
}
