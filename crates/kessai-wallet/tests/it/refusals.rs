//! What the wallet refuses: an offer that does not match what it relays
//! or the bill it was handed, and a UI reachable from the network.

use kessai_wallet::checks::Mismatch;
use kessai_wallet::{LocalPhase, PayError, Wallet, WalletConfig};

use crate::proxy::{self, Tamper};
use crate::world::World;

/// Runs `begin` through a tampering proxy; the card must be untouched and
/// the settlement voided at the center and in the wallet's records.
async fn refused(card: u8, tamper: impl FnOnce(String) -> Tamper) -> PayError {
    let w = World::new(card, 20_000).await;
    let (_, bill, return_url) = w.order(&[("ebook-kessai-001", 1)]).await;
    let (_, other_bill, _) = w.order(&[("print-poster-01", 1)]).await;
    let (proxy_url, _stop) = proxy::start(&w, tamper(other_bill)).await;
    let wallet = Wallet::open(w.wallet_config(&proxy_url)).await.unwrap();
    let before = w.card_state();
    let e = wallet.begin(&bill, &return_url, &mut |_| {}).await.expect_err("the offer must be refused");
    assert_eq!(w.card_state(), before, "no DEBIT reached the card: balance and counter unchanged");
    let record = wallet.records().recent(1).await.unwrap().remove(0);
    assert_eq!(record.phase, LocalPhase::Voided, "cancelled: {record:?}");
    assert!(record.debit_answer.is_none(), "nothing was relayed");
    let settlement = record.settlement_id.unwrap();
    assert_eq!(w.center_phase(settlement.as_str()).await, "voided", "the center released the hold");
    e
}

#[tokio::test]
async fn a_sealed_debit_other_than_the_signed_one_is_never_relayed() {
    let e = refused(10, |_| Tamper::DebitByte).await;
    assert!(matches!(e, PayError::OfferMismatch(Mismatch::DebitHash)), "{e}");
}

#[tokio::test]
async fn an_offer_whose_signature_does_not_verify_is_refused() {
    let e = refused(11, |_| Tamper::OfferSignature).await;
    assert!(matches!(e, PayError::OfferUnverified(_)), "{e}");
}

/// A bill swapped on the way to the center never opens a settlement: the
/// card's cryptogram answers the challenge bound to the bill the wallet
/// was handed, which the center derives from the bill it got.
#[tokio::test]
async fn a_bill_swapped_on_the_way_to_the_center_opens_nothing() {
    let w = World::new(12, 20_000).await;
    let (_, bill, return_url) = w.order(&[("ebook-kessai-001", 1)]).await;
    let (_, other_bill, _) = w.order(&[("print-poster-01", 1)]).await;
    let (proxy_url, _stop) = proxy::start(&w, Tamper::SwapBill(other_bill)).await;
    let wallet = Wallet::open(w.wallet_config(&proxy_url)).await.unwrap();
    let before = w.card_state();
    let e = wallet.begin(&bill, &return_url, &mut |_| {}).await.expect_err("the swap must be refused");
    let code = match &e {
        PayError::Center(c) => c.code().map(|c| c.as_str().to_owned()),
        _ => None,
    };
    assert_eq!(code.as_deref(), Some("secure_channel_failed"), "{e}");
    assert_eq!(w.card_state(), before, "nothing reached the card but the session opening");
    let record = wallet.records().recent(1).await.unwrap().remove(0);
    assert_eq!((record.phase, record.settlement_id.clone()), (LocalPhase::Failed, None), "nothing opened: {record:?}");
}

#[tokio::test]
async fn the_ui_is_never_served_beyond_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = kessai_tls::CaDir::new(tmp.path().join("ca"));
    ca.init().unwrap();
    let text = format!(
        "data_dir = \"{}\"\nlisten = \"0.0.0.0:0\"\nca_file = \"{}\"\n[center]\nurl = \"https://127.0.0.1:1\"\n\
         party_id = \"center\"\n[reader]\nkind = \"in-process\"\nimage = \"card.img\"\n",
        tmp.path().join("wallet").display(),
        ca.ca_cert().display()
    );
    let config = WalletConfig::from_toml(&text).unwrap();
    assert!(kessai_wallet::run(config.clone(), async {}).await.is_err(), "a wallet configured for 0.0.0.0 refuses");
    let loopback = WalletConfig { listen: "127.0.0.1:0".parse().unwrap(), ..config };
    let wallet = std::sync::Arc::new(Wallet::open(loopback).await.unwrap());
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let served = kessai_http::serve_plain(kessai_wallet::web::router(wallet), listener, std::future::pending()).await;
    assert_eq!(served.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
}

/// L6: a bill the store addressed to another center than this wallet's is
/// refused before anything is asked of the card or a center, and nothing
/// is recorded.
#[tokio::test]
async fn a_bill_for_another_center_is_refused_before_anything_happens() {
    let w = World::new(13, 20_000).await;
    let (_, bill, return_url) = w.order(&[("ebook-kessai-001", 1)]).await;
    let mut config = w.wallet_config(&w.center_url);
    config.center.party_id = kessai_core::ids::PartyId::parse("center-b").unwrap();
    let wallet = Wallet::open(config).await.unwrap();
    let before = w.card_state();
    let e = wallet.review(&bill, &return_url).expect_err("reviewed");
    assert!(
        matches!(&e, PayError::OtherCenter { found, expected } if found == "center" && expected == "center-b"),
        "{e}"
    );
    let e = wallet.begin(&bill, &return_url, &mut |_| {}).await.expect_err("begun");
    assert!(matches!(e, PayError::OtherCenter { .. }), "{e}");
    assert_eq!(w.card_state(), before, "the card was not even read");
    assert!(wallet.records().recent(1).await.unwrap().is_empty(), "nothing recorded");
}
