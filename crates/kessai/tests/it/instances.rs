//! Two stateless center instances on one PostgreSQL database: the steps of
//! each purchase alternate between them, so no settlement state may live in
//! one process's memory.

use serde_json::json;

use crate::harness::{CenterProcess, Deployment, free_port, open_card, relay};

#[test]
fn two_instances_share_every_settlement() {
    let Some(url) = crate::pg::fresh_database("instances") else { return };
    let mut d = Deployment::new(11);
    let (port_a, port_b) = (free_port(), free_port());
    let config_a = d.center_config("a", port_a, Some(&url));
    let config_b = d.center_config("b", port_b, Some(&url));
    let (card_id, image) = d.issue_card(&config_a, 1, 50_000);
    let _a = CenterProcess::start(&config_a);
    let _b = CenterProcess::start(&config_b);
    d.wait_healthy(port_a);
    d.wait_healthy(port_b);
    d.register_mall(&format!("https://127.0.0.1:{port_a}"));
    let bases = [format!("https://127.0.0.1:{port_a}"), format!("https://127.0.0.1:{port_b}")];
    let mut card = open_card(&image);
    for n in 0..4u32 {
        card.select().unwrap();
        let bill = d.bill(n, 2_000);
        // Purchase n starts on instance n % 2 and alternates from there.
        let on = |step: u32| &bases[((n + step) % 2) as usize];
        let (status, r) = d
            .post(
                &format!("{}/v1/settlements", on(0)),
                &format!("i{n}-c"),
                &json!({ "bill": bill, "card_id": card_id }),
            )
            .unwrap();
        assert_eq!(status, 200, "{r}");
        let id = r["settlement_id"].as_str().unwrap().to_owned();
        let mut reply = r;
        for (i, step) in ["authenticate", "balance", "complete"].iter().enumerate() {
            let url = format!("{}/v1/settlements/{id}/{step}", on(i as u32 + 1));
            let (status, r) = d.post(&url, &format!("i{n}-{step}"), &relay(&mut card, &reply)).unwrap();
            assert_eq!(status, 200, "{step} on the other instance: {r}");
            reply = r;
        }
        assert_eq!(reply["phase"], "completed");
        // Both instances see the same settlement.
        for base in &bases {
            let (_, view) = d.get(&format!("{base}/v1/settlements/{id}")).unwrap();
            assert_eq!(view["phase"], "completed");
        }
    }
    drop(card);
    d.runtime.block_on(async {
        let db = kessai_center::db::CenterDb::open(&url).await.unwrap();
        let books = kessai_center::books::Books::new(db.clone());
        db.ledger().check().await.unwrap();
        let card = kessai_core::ids::CardId::parse(&card_id).unwrap();
        assert_eq!(books.card_float(&card).await.unwrap().unwrap(), (50_000 - 4 * 2_000, 0));
        assert_eq!(crate::harness::card_balance(&image), 50_000 - 4 * 2_000);
    });
}
