//! A wallet that dies after the card applied the DEBIT but before the
//! center heard of it: `recover` finishes the payment, exactly once.

use kessai_wallet::{LocalPhase, Outcome, Wallet};

use crate::world::World;

#[tokio::test]
async fn a_crash_after_the_debit_is_completed_by_recover_exactly_once() {
    let w = World::new(20, 20_000).await;
    let (order, bill, return_url) = w.order(&[("ebook-kessai-001", 1)]).await;
    let config = w.wallet_config(&w.center_url);
    let settlement = {
        let wallet = Wallet::open(config.clone()).await.unwrap();
        let offered = wallet.begin(&bill, &return_url, &mut |_| {}).await.unwrap();
        let settlement = offered.settlement_id().clone();
        let _relayed = wallet.relay_debit(offered).await.unwrap();
        wallet.records().close().await;
        settlement
        // The wallet "crashes" here: the card debited, the center was never told.
    };
    assert_eq!(w.card_state().0, 18_800, "the card applied the DEBIT");
    assert_eq!(w.center_phase(settlement.as_str()).await, "offered");

    let outcomes = kessai_wallet::recover(config.clone()).await.unwrap();
    assert_eq!(outcomes, vec![(settlement.clone(), Outcome::Completed)]);
    assert_eq!(w.center_phase(settlement.as_str()).await, "completed");
    assert_eq!(w.card_state().0, 18_800, "charged once, not twice");

    let again = kessai_wallet::recover(config.clone()).await.unwrap();
    assert!(again.is_empty(), "nothing left to recover: {again:?}");
    assert_eq!(w.card_state().0, 18_800);
    let history = kessai_wallet::history(config).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].phase, LocalPhase::Completed);
    for _ in 0..100 {
        if w.order_page(&order).await.contains("Payment received") {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the store never saw the recovered payment");
}
