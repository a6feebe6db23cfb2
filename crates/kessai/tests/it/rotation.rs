//! Rotating the center's signing key as an operator does (README,
//! "Rotating the center's signing key"): announce the next key, switch to
//! it while publishing the previous one, promote it in the database. A
//! completion signed before the switch and delivered after it is accepted
//! by the store, as is one signed after; an instance holding a key the
//! database does not know of is refused at every stage.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{bill_of, completions_accepted};
use crate::harness::{CenterProcess, Deployment, free_port, purchase_offer};
use crate::processes::{admin_cli, place_order, register_mall, start_store};
use crate::{kessai, stderr, stdout};

/// The center's configuration with `signing_key` and `published_keys`.
fn with_keys(base: &str, path: &Path, signing_key: &Path, published: &[&Path]) {
    let list: Vec<String> = published.iter().map(|p| format!("\"{}\"", p.display())).collect();
    let text = base.replacen(
        "delivery_interval_ms = 60000\n",
        &format!(
            "delivery_interval_ms = 200\nsigning_key = \"{}\"\npublished_keys = [{}]\n",
            signing_key.display(),
            list.join(", ")
        ),
        1,
    );
    std::fs::write(path, text).unwrap();
}

/// The center's JWKS: its key ids, in order.
fn published_kids(d: &Deployment, port: u16) -> Vec<String> {
    let (status, jwks) = d.get(&format!("https://127.0.0.1:{port}/.well-known/jwks.json")).unwrap();
    assert_eq!(status, 200);
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

/// A purchase of the bill of a new order, completed at the center.
fn purchase(d: &Deployment, port: u16, bill: &str, image: &Path, card_id: &str, tag: &str) {
    purchase_offer(d, &format!("https://127.0.0.1:{port}"), bill, image, card_id, tag);
}

fn init_fails(config: &Path, what: &str) {
    let out = kessai(&["center", "init", "--config", config.to_str().unwrap()], &[]);
    assert!(!out.status.success(), "{what}: an instance with a key the database does not know started");
    assert!(stderr(&out).contains("the signing key"), "{what}: {}", stderr(&out));
}

#[test]
fn the_center_rotates_its_signing_key_and_the_store_accepts_what_either_key_signed() {
    let d = Deployment::new(41);
    let ca = d.ca_path();
    let out =
        kessai(&["pki", "issue", "--dir", ca.to_str().unwrap(), "--client", "kessai-mall", "--party", "store"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (port, store_port) = (free_port(), free_port());
    let config = d.center_config("a", port, None);
    let base_text = std::fs::read_to_string(&config).unwrap();
    let out = kessai(&["center", "init", "--config", config.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (card_id, image) = d.issue_card(&config, 1, 100_000);
    let keys = d.dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let old_key = d.center_dir("a").join("center.key");
    let jwks = stdout(&kessai(&["keys", "jwks", old_key.to_str().unwrap()], &[]));
    let old_jwk = keys.join("old.jwk");
    let parsed: Value = serde_json::from_str(&jwks).unwrap();
    std::fs::write(&old_jwk, parsed["keys"][0].to_string()).unwrap();
    let old_kid = parsed["keys"][0]["kid"].as_str().unwrap().to_owned();
    let new_key = keys.join("new.key");
    let out = kessai(&["keys", "generate", "--out", new_key.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let new_jwk = keys.join("new.jwk");
    std::fs::write(&new_jwk, stdout(&out)).unwrap();
    let new_kid = serde_json::from_str::<Value>(&stdout(&out)).unwrap()["kid"].as_str().unwrap().to_owned();

    // 0. The old key signs a completion the store, down, does not receive.
    with_keys(&base_text, &config, &old_key, &[]);
    let center = CenterProcess::start(&config);
    d.wait_healthy(port);
    let (store, _) = start_store(&d, store_port, port);
    let store_url = format!("https://127.0.0.1:{store_port}");
    let center_url = format!("https://127.0.0.1:{port}");
    register_mall(&d, &center_url, &store_url);
    let member = ["register-store", "--id", "bookshop", "--display-name", "Kessai Books", "--mall", "kessai-mall"];
    admin_cli(&d, &center_url, &member);
    let (first, second) = (place_order(&d, &store_url), place_order(&d, &store_url));
    let (first_bill, second_bill) = (bill_of(&d, &store_url, &first), bill_of(&d, &store_url, &second));
    drop(store);
    purchase(&d, port, &first_bill, &image, &card_id, "rot1");
    drop(center);

    // 1. Announce: the next key published beside the one that signs.
    with_keys(&base_text, &config, &old_key, &[&new_jwk]);
    let center = CenterProcess::start(&config);
    d.wait_healthy(port);
    assert_eq!(published_kids(&d, port), [old_kid.clone(), new_kid.clone()]);
    drop(center);

    // 2. Switch: the next key signs, the previous one stays published. A
    // switch that forgets the previous key is refused by the database.
    let forgot = d.dir.path().join("forgot.toml");
    with_keys(&base_text, &forgot, &new_key, &[]);
    init_fails(&forgot, "the new key alone before promotion");
    with_keys(&base_text, &config, &new_key, &[&old_jwk]);
    let center = CenterProcess::start(&config);
    d.wait_healthy(port);
    assert_eq!(published_kids(&d, port), [new_kid.clone(), old_kid.clone()]);
    // The store comes up: the completion the old key signed is delivered
    // now and accepted; one the new key signs is accepted too.
    let (_store, _) = start_store(&d, store_port, port);
    purchase(&d, port, &second_bill, &image, &card_id, "rot2");
    // The first waits out its delivery backoff (at most a minute).
    let counts = completions_accepted(&d, &store_url, 2, Duration::from_secs(70));
    assert_eq!(counts, (2, 0), "both completions accepted, none refused");
    drop(center);

    // 3. Promote: the database records the new key; an instance with it
    // alone starts, one with the old key alone no longer does.
    let out = kessai(&["center", "promote-signing-key", "--config", config.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&new_kid), "{}", stdout(&out));
    let out = kessai(&["center", "init", "--config", forgot.to_str().unwrap()], &[]);
    assert!(out.status.success(), "after promotion the new key alone: {}", stderr(&out));
    let stale = d.dir.path().join("stale.toml");
    with_keys(&base_text, &stale, &old_key, &[]);
    init_fails(&stale, "the old key alone after promotion");
}
