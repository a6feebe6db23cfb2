//! Three center instances as operators run several: each its own process
//! with its own data directory (the second and third provisioned with the
//! first one's keys), one PostgreSQL database, HAProxy in front
//! health-checking `/readyz`, and a real store. Purchases go through the
//! load balancer (the wallet's CLI) and step by step across the instances
//! directly; a charge is authorized on one instance and captured on
//! another; a refund reaches the card through the balancer. Afterwards the
//! store has accepted each completion exactly once, and the books, the card
//! and the store agree.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::harness::{CenterProcess, Deployment, card_balance, free_port, open_card, relay};
use crate::processes::{Running, admin_cli, place_order, register_mall, start_store, wait_for, wallet_toml};
use crate::{kessai, stderr, stdout};

/// HAProxy in TCP mode (TLS passes through, so mutual TLS reaches the
/// centers), round robin per connection, each center checked over TLS on
/// `/readyz` every 300 ms. The documented setup (README, "Several
/// instances") is this one.
fn haproxy_config(dir: &Path, listen: u16, centers: &[u16]) -> std::path::PathBuf {
    let mut text = format!(
        "global\n    maxconn 512\n\
         defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 30s\n    timeout server 30s\n\
         frontend centers\n    bind 127.0.0.1:{listen}\n    default_backend centers\n\
         backend centers\n    balance roundrobin\n    option httpchk\n\
         \x20   http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host localhost\n\
         \x20   http-check expect status 200\n\
         \x20   default-server check check-ssl verify none inter 300ms fall 2 rise 1\n"
    );
    for (n, port) in centers.iter().enumerate() {
        text.push_str(&format!("    server center{n} 127.0.0.1:{port}\n"));
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, text).unwrap();
    path
}

/// The bill of `order`, as the store hands it to a wallet.
pub(crate) fn bill_of(d: &Deployment, store: &str, order: &str) -> String {
    let (status, answer) = d.get(&format!("{store}/orders/{order}/bill")).unwrap();
    assert_eq!(status, 200, "{answer}");
    answer["bill"].as_str().unwrap().to_owned()
}

/// The store's count of completions it accepted (each delivery counts,
/// a repeated one too) and of those it refused.
pub(crate) fn completions_at_store(d: &Deployment, store: &str) -> (u64, u64) {
    // The metrics answer a client certificate of the deployment (L6): the
    // admin's, here, as a monitoring agent's would be.
    let tls = kessai_tls::client_config(&d.ca.ca_cert(), Some((&d.ca, "admin"))).unwrap();
    let monitoring = kessai_http::HttpsClient::new(tls, 10_000);
    let (status, text) = d.runtime.block_on(monitoring.get(&format!("{store}/metrics"))).unwrap();
    assert!(status.is_success());
    let text = String::from_utf8(text.to_vec()).unwrap();
    let mut counts = (0, 0);
    for line in text.lines().filter(|l| l.contains("store_completions_total{")) {
        let value: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        if line.contains("outcome=\"accepted\"") {
            counts.0 += value;
        } else {
            counts.1 += value;
        }
    }
    counts
}

/// The store's counts once it has accepted `at_least` completions, or
/// as they are after `patience`.
pub(crate) fn completions_accepted(d: &Deployment, store: &str, at_least: u64, patience: Duration) -> (u64, u64) {
    let until = std::time::Instant::now() + patience;
    loop {
        let counts = completions_at_store(d, store);
        if counts.0 >= at_least || std::time::Instant::now() >= until {
            return counts;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn three_instances_behind_haproxy_each_with_its_own_directory() {
    let Some(url) = crate::pg::fresh_database("cluster") else { return };
    let Some(haproxy) = kessai_testkit::tool_on_path("haproxy", "KESSAI_HAPROXY") else { return };
    let d = Deployment::new(12);
    let ca = d.ca_path();
    let out =
        kessai(&["pki", "issue", "--dir", ca.to_str().unwrap(), "--client", "kessai-mall", "--party", "store"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ports = [free_port(), free_port(), free_port()];
    let (lb, store_port) = (free_port(), free_port());
    let configs: Vec<_> =
        ["a", "b", "c"].iter().zip(ports).map(|(name, port)| d.center_config(name, port, Some(&url))).collect();
    // Every instance sweeps for undelivered completions every 50 ms, so a
    // completion another instance is delivering is there to be taken.
    for config in &configs {
        let text = std::fs::read_to_string(config).unwrap();
        std::fs::write(config, text.replace("delivery_interval_ms = 60000", "delivery_interval_ms = 50")).unwrap();
    }
    // The first instance creates the keys; the others are provisioned.
    let out = kessai(&["center", "init", "--config", configs[0].to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    for config in &configs[1..] {
        d.provision(config, "a");
    }
    for name in ["b", "c"] {
        assert!(d.center_dir(name).join("center.key").exists());
    }
    let (card_id, image) = d.issue_card(&configs[1], 1, 100_000);
    let _centers: Vec<_> = configs.iter().map(|c| CenterProcess::start(c)).collect();
    for port in ports {
        d.wait_healthy(port);
    }
    let _lb = Running(
        Command::new(&haproxy)
            .args(["-db", "-f", haproxy_config(d.dir.path(), lb, &ports).to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.dir.path().join("haproxy.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let balanced = format!("https://127.0.0.1:{lb}");
    let bases: Vec<String> = ports.iter().map(|p| format!("https://127.0.0.1:{p}")).collect();
    wait_for(&d, &format!("{balanced}/readyz"), &d.dir.path().join("haproxy.log"));

    // The store, whose center is the balancer; registered through it.
    let (_store, store_config) = start_store(&d, store_port, lb);
    let store = format!("https://127.0.0.1:{store_port}");
    let admin = |args: &[&str]| admin_cli(&d, &balanced, args);
    register_mall(&d, &balanced, &store);
    admin(&["register-store", "--id", "bookshop", "--display-name", "Kessai Books", "--mall", "kessai-mall"]);

    // 1. Purchases through the balancer, as a cardholder's wallet pays.
    let wallet = wallet_toml(&d, lb, &image);
    let mut paid = 0;
    for _ in 0..3 {
        let order = place_order(&d, &store);
        let before = card_balance(&image);
        let bill_url = format!("{store}/orders/{order}/bill");
        let out = kessai(&["wallet", "--config", wallet.to_str().unwrap(), "pay", &bill_url, "--yes"], &[]);
        assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
        paid += before - card_balance(&image);
    }
    // 2. Purchases whose every step goes to another instance than the one
    // before.
    let mut card = open_card(&image);
    for n in 0..3usize {
        card.select().unwrap();
        let order = place_order(&d, &store);
        let bill = bill_of(&d, &store, &order);
        let before = card_balance(&image);
        let on = |step: usize| &bases[(n + step) % 3];
        let (status, mut reply) = d
            .post(
                &format!("{}/v1/settlements", on(0)),
                &format!("s{n}-c"),
                &crate::harness::create_body(&mut card, &card_id, &bill),
            )
            .unwrap();
        assert_eq!(status, 200, "{reply}");
        let id = reply["settlement_id"].as_str().unwrap().to_owned();
        for (i, step) in ["balance", "complete"].iter().enumerate() {
            let url = format!("{}/v1/settlements/{id}/{step}", on(i + 1));
            let (status, r) = d.post(&url, &format!("s{n}-{step}"), &relay(&mut card, &reply)).unwrap();
            assert_eq!(status, 200, "{step} on instance {}: {r}", (n + i + 1) % 3);
            reply = r;
        }
        assert_eq!(reply["phase"], "completed");
        paid += before - card_balance(&image);
    }
    // 3. A charge opened through one instance, authorized through another
    // (with its card's proof), captured by the last.
    card.select().unwrap();
    let before = card_balance(&image);
    let charge = json!({ "card_id": card_id, "amount": { "amount_minor": 5_000, "currency": "JPY" } });
    let (status, mut reply) = d.post(&format!("{}/v1/charges", bases[0]), "charge-c", &charge).unwrap();
    assert_eq!(status, 200, "{reply}");
    let id = reply["charge_id"].as_str().unwrap().to_owned();
    for (i, step) in ["authenticate", "balance", "complete"].iter().enumerate() {
        let url = format!("{}/v1/value-updates/{id}/{step}", bases[(i + 1) % 3]);
        let mut body = relay(&mut card, &reply);
        if *step == "authenticate" {
            // The payment card, authorized once the card proved itself.
            body["card_number"] = json!("4242424242424242");
            body["expiry"] = json!("12/30");
            body["cvc"] = json!("123");
        }
        let (status, r) = d.post(&url, &format!("charge-{step}"), &body).unwrap();
        assert_eq!(status, 200, "{step}: {r}");
        reply = r;
    }
    assert_eq!(reply["phase"], "completed", "{reply}");
    assert_eq!(card_balance(&image), before + 5_000);
    drop(card);

    // 4. Every completion reached the store exactly once, whichever
    // instance completed it: the store accepted six, refused none.
    let counts = completions_accepted(&d, &store, 6, Duration::from_secs(10));
    // Several sweeps (every instance's) would have run meanwhile.
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(completions_at_store(&d, &store), (6, 0), "each completion delivered once (was {counts:?})");
    let listing = admin(&["settlements", "--card", &card_id]);
    let settlements = listing["settlements"].as_array().unwrap();
    assert_eq!(settlements.len(), 6, "{listing}");
    assert!(settlements.iter().all(|s| s["phase"] == "completed" && s["receipt"] == true), "{listing}");

    // 5. The store refunds one purchase through the balancer; the card
    // collects it through the balancer, once.
    let first = settlements[0]["settlement_id"].as_str().unwrap();
    let refund = ["refund", "--settlement", first, "--amount", "300", "--reason", "damaged"];
    let out = kessai(&[&["store", "--config", store_config.to_str().unwrap()][..], &refund[..]].concat(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = card_balance(&image);
    let out = kessai(&["wallet", "--config", wallet.to_str().unwrap(), "collect"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(card_balance(&image), before + 300);

    // 6. The books agree with the card and the store.
    d.runtime.block_on(async {
        let db = kessai_center::db::CenterDb::open(&url).await.unwrap();
        let books = kessai_center::books::Books::new(db.clone());
        db.ledger().check().await.unwrap();
        let card = kessai_core::ids::CardId::parse(&card_id).unwrap();
        let image_balance = card_balance(&image);
        assert_eq!(books.card_float(&card).await.unwrap().unwrap(), (image_balance, 0));
        assert_eq!(image_balance, 100_000 - paid + 5_000 + 300);
        let mall = kessai_core::ids::StoreId::parse("kessai-mall").unwrap();
        let bookshop = kessai_core::ids::StoreId::parse("bookshop").unwrap();
        let payable = books.store_payable(&mall, kessai_core::Currency::JPY).await.unwrap()
            + books.store_payable(&bookshop, kessai_core::Currency::JPY).await.unwrap();
        assert_eq!(payable, paid - 300);
        db.close().await;
    });
}
