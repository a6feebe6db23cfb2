//! End to end with every party its own process, as operators run them:
//! `kessai center run`, `kessai store`, and the wallet's CLI, over real TLS
//! with mutual TLS between the center and the store (completions), plus a
//! store's refund (`kessai store refund`) that reaches the card when the
//! wallet presents it (`kessai wallet collect`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kessai_http::HttpsClient;
use kessai_store::demo::DemoSettings;
use serde_json::{Value, json};

use crate::harness::{CenterProcess, Deployment, card_balance, free_port};
use crate::{kessai, stderr, stdout};

pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The demo mall's configuration as a file, for `kessai store --config`.
pub(crate) fn store_toml(d: &Deployment, store_port: u16, center_port: u16) -> std::path::PathBuf {
    let data = d.dir.path().join("store");
    // Writes the demo catalog and its content files into the data dir.
    kessai_store::StoreConfig::demo(DemoSettings {
        data_dir: data.clone(),
        ca_dir: d.ca_path(),
        server_name: "localhost".into(),
        client_name: Some("kessai-mall".into()),
        listen: format!("127.0.0.1:{store_port}").parse().unwrap(),
        public_url: format!("https://127.0.0.1:{store_port}"),
        center_id: "center".into(),
        center_url: format!("https://127.0.0.1:{center_port}"),
        wallet_url: "http://127.0.0.1:9".into(),
    })
    .unwrap();
    let text = format!(
        "mall_id = \"kessai-mall\"\nmall_name = \"Kessai Mall\"\nlisten = \"127.0.0.1:{store_port}\"\n\
         public_url = \"https://127.0.0.1:{store_port}\"\nwallet_url = \"http://127.0.0.1:9\"\n\
         data_dir = \"{}\"\ncatalog = \"catalog.toml\"\n\
         [tls]\nca_dir = \"{}\"\nserver_name = \"localhost\"\nclient_name = \"kessai-mall\"\n\
         [center]\nparty_id = \"center\"\nurl = \"https://127.0.0.1:{center_port}\"\n\
         [[members]]\nid = \"bookshop\"\nname = \"Kessai Books\"\napi_token_sha256 = \"c6e7d6c1b495a706eb365a10baa6a9448ed1bfd30221298dddec352c8de1b237\"\n\
         [[members]]\nid = \"record-shop\"\nname = \"Kissa Records\"\n",
        data.display(),
        d.ca_path().display()
    );
    let path = d.dir.path().join("store.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub(crate) fn wallet_toml(d: &Deployment, center_port: u16, image: &Path) -> std::path::PathBuf {
    let text = format!(
        "data_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\nca_file = \"{}\"\n[center]\nurl = \"https://127.0.0.1:{center_port}\"\n\
         party_id = \"center\"\n[reader]\nkind = \"in-process\"\nimage = \"{}\"\n",
        d.dir.path().join("wallet").display(),
        d.ca.ca_cert().display(),
        image.display()
    );
    let path = d.dir.path().join("wallet.toml");
    std::fs::write(&path, text).unwrap();
    path
}

pub(crate) fn wait_for(d: &Deployment, url: &str, log: &Path) -> Value {
    for _ in 0..200 {
        if let Ok((200, v)) = d.get(url) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{url} never answered: {}", std::fs::read_to_string(log).unwrap_or_default());
}

/// Starts the demo mall as its own process (`kessai store`), its center at
/// `center_port`; returns it and its configuration once its JWKS answers.
pub(crate) fn start_store(d: &Deployment, store_port: u16, center_port: u16) -> (Running, std::path::PathBuf) {
    let store_config = store_toml(d, store_port, center_port);
    let store = Running(
        Command::new(env!("CARGO_BIN_EXE_kessai"))
            .args(["store", "--config", store_config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.dir.path().join("store.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for(d, &format!("https://127.0.0.1:{store_port}/.well-known/jwks.json"), &d.dir.path().join("store.log"));
    (store, store_config)
}

/// `kessai admin` against `center` with the deployment's admin
/// certificate; its JSON answer.
pub(crate) fn admin_cli(d: &Deployment, center: &str, args: &[&str]) -> Value {
    let out = admin_cli_raw(d, center, args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_str::<Value>(&stdout(&out)).unwrap()
}

/// `kessai admin` as run, succeeded or not.
pub(crate) fn admin_cli_raw(d: &Deployment, center: &str, args: &[&str]) -> std::process::Output {
    let ca = d.ca_path();
    let base = ["admin", "--center", center, "--ca-dir", ca.to_str().unwrap()];
    kessai(&[&base[..], args].concat(), &[])
}

/// Registers the running mall at `store` (its published keys, where its
/// completions go) with the center at `center`.
pub(crate) fn register_mall(d: &Deployment, center: &str, store: &str) {
    let jwks = d.get(&format!("{store}/.well-known/jwks.json")).unwrap().1;
    let jwks_file = d.dir.path().join("mall-jwks.json");
    std::fs::write(&jwks_file, jwks.to_string()).unwrap();
    let notify = format!("{store}/v1/completions");
    let jwks_path = jwks_file.to_str().unwrap();
    let register = [
        "register-store",
        "--id",
        "kessai-mall",
        "--display-name",
        "Kessai Mall",
        "--notify-url",
        &notify,
        "--jwks",
        jwks_path,
    ];
    admin_cli(d, center, &register);
}

/// Puts a product in the bookshop's cart and places the order, as a
/// browser does; returns the order id.
pub(crate) fn place_order(d: &Deployment, store: &str) -> String {
    let client = HttpsClient::new(kessai_tls::client_config(&d.ca.ca_cert(), None).unwrap(), 5_000);
    let (status, headers, body) = d
        .runtime
        .block_on(client.post_form(
            &format!("{store}/shops/bookshop/cart"),
            &[("sku", "ebook-kessai-001"), ("quantity", "1")],
            &[],
        ))
        .unwrap();
    assert_eq!(status.as_u16(), 303, "{}", String::from_utf8_lossy(&body));
    let cookie = headers["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let (status, headers, _) = d
        .runtime
        .block_on(client.post_form(
            &format!("{store}/shops/bookshop/orders"),
            &[("method", "kessai-card")],
            &[("cookie", &cookie)],
        ))
        .unwrap();
    assert_eq!(status.as_u16(), 303);
    headers["location"].to_str().unwrap().trim_start_matches("/orders/").to_owned()
}

#[test]
fn a_purchase_and_a_refund_between_separate_processes_over_mutual_tls() {
    let d = Deployment::new(31);
    let ca = d.ca_path();
    let out =
        kessai(&["pki", "issue", "--dir", ca.to_str().unwrap(), "--client", "kessai-mall", "--party", "store"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (center_port, store_port) = (free_port(), free_port());
    let center_base = format!("https://127.0.0.1:{center_port}");
    let store_base = format!("https://127.0.0.1:{store_port}");

    // step 1: the center, initialized and issuing a card, then its own process.
    let config = d.center_config("center", center_port, None);
    let out = kessai(&["center", "init", "--config", config.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (card_id, image) = d.issue_card(&config, 1, 20_000);
    let _center = CenterProcess::start(&config);
    d.wait_healthy(center_port);

    // step 2: the store, its own process; its key made on first start.
    // step 3: the operator registers the mall (its keys, where completions
    // go over mutual TLS) and its member store, with `kessai admin`.
    let (_store, store_config) = start_store(&d, store_port, center_port);
    let admin = |args: &[&str]| admin_cli(&d, &center_base, args);
    register_mall(&d, &center_base, &store_base);
    admin(&["register-store", "--id", "bookshop", "--display-name", "Kessai Books", "--mall", "kessai-mall"]);

    // step 4: an order at the store; the wallet's CLI pays its bill.
    let order = place_order(&d, &store_base);
    let wallet = wallet_toml(&d, center_port, &image);
    let bill_url = format!("{store_base}/orders/{order}/bill");
    let out = kessai(&["wallet", "--config", wallet.to_str().unwrap(), "pay", &bill_url, "--yes"], &[]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let price = 20_000 - card_balance(&image);
    assert!(price > 0, "the card paid");

    // step 5: the center delivered SIG3 to the store over mutual TLS and
    // holds its receipt (SIG4); the store shows the order paid.
    let listing = admin(&["settlements", "--card", &card_id]);
    let s = &listing["settlements"][0];
    assert_eq!((s["phase"].as_str(), s["receipt"].as_bool()), (Some("completed"), Some(true)), "{listing}");
    let settlement = s["settlement_id"].as_str().unwrap().to_owned();
    let page_url = format!("{store_base}/orders/{order}/complete");
    let (status, page) = d.runtime.block_on(d.wallet.get(&page_url)).unwrap();
    let page = String::from_utf8_lossy(&page);
    assert!(status.is_success() && page.contains("Payment received") && page.contains("Your downloads"), "{page}");

    // step 6: the store refunds part of it, signed, from its own CLI.
    let store_cli =
        |args: &[&str]| kessai(&[&["store", "--config", store_config.to_str().unwrap()][..], args].concat(), &[]);
    let refund = ["refund", "--settlement", settlement.as_str(), "--amount", "500", "--reason", "late delivery"];
    let out = store_cli(&refund);
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!((answer["status"].as_str(), answer["refunded_minor"].as_u64()), (Some("owed"), Some(500)));
    // More than the purchase, refused.
    let too_much = (price + 1).to_string();
    let over = ["refund", "--settlement", settlement.as_str(), "--amount", too_much.as_str(), "--reason", "all of it"];
    let out = store_cli(&over);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("over_refund"), "{}", stderr(&out));
    let owed = admin(&["owed", "--card-id", &card_id]);
    assert_eq!(owed["owed"].as_array().unwrap().len(), 1, "{owed}");

    // step 7: the card is presented: the refund reaches it, once.
    let before = card_balance(&image);
    let out = kessai(&["wallet", "--config", wallet.to_str().unwrap(), "collect"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("credited JPY 500"), "{}", stdout(&out));
    assert_eq!(card_balance(&image), before + 500);
    let out = kessai(&["wallet", "--config", wallet.to_str().unwrap(), "collect"], &[]);
    assert!(stdout(&out).contains("nothing is owed"), "{}", stdout(&out));
    assert!(admin(&["owed", "--card-id", &card_id])["owed"].as_array().unwrap().is_empty());
}

/// #12 end to end with real processes: an applicant applies, the operator
/// approves and reads the letter (`kessai admin approve`, `outbox`), the
/// member makes a keystore and registers its key (`kessai wallet member
/// init`, `register`), the operator links the card (`link-card`); then the
/// card pays only with the member's passwords (`wallet pay --member`).
#[test]
fn a_member_registers_and_its_card_pays_only_on_its_signed_instruction() {
    let d = Deployment::new(33);
    let ca = d.ca_path();
    let out =
        kessai(&["pki", "issue", "--dir", ca.to_str().unwrap(), "--client", "kessai-mall", "--party", "store"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (center_port, store_port) = (free_port(), free_port());
    let center_base = format!("https://127.0.0.1:{center_port}");
    let store_base = format!("https://127.0.0.1:{store_port}");
    let config = d.center_config("center", center_port, None);
    let out = kessai(&["center", "init", "--config", config.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (card_id, image) = d.issue_card(&config, 1, 20_000);
    let mut center = CenterProcess::start(&config);
    d.wait_healthy(center_port);
    let (_store, _) = start_store(&d, store_port, center_port);
    let admin = |args: &[&str]| admin_cli(&d, &center_base, args);
    register_mall(&d, &center_base, &store_base);
    admin(&["register-store", "--id", "bookshop", "--display-name", "Kessai Books", "--mall", "kessai-mall"]);

    let apply = json!({ "kind": "general", "name": "Hanako Yamada", "contact": "hanako@example.jp" });
    let (status, application) = d.post(&format!("{center_base}/v1/members/applications"), "apply-1", &apply).unwrap();
    assert_eq!(status, 200, "{application}");
    let approved = admin(&["approve", application["application_id"].as_str().unwrap()]);
    let member = approved["member"].as_str().unwrap().to_owned();
    let outbox = admin(&["outbox"]);
    let letter = &outbox["letters"][0];
    let code = letter["text"].as_str().unwrap().lines().find_map(|l| l.strip_prefix("Your activation code: ")).unwrap();
    admin(&["letter-sent", letter["letter_id"].as_str().unwrap()]);

    let wallet = wallet_toml(&d, center_port, &image);
    let wallet = wallet.to_str().unwrap();
    let env = [("PW_A", "the member's password A"), ("PW_B", "the member's password B"), ("CODE", code)];
    let a = ["--password-a-env", "PW_A"];
    let b = ["--password-b-env", "PW_B"];
    let init = kessai(&[&["wallet", "--config", wallet, "member", "init"][..], &a, &b].concat(), &env);
    assert!(init.status.success(), "{}", stderr(&init));
    // [0023]'s first method: signed offline and kept under password A.
    let keep = [&crate::member_register_args(wallet, &member)[..], &["--later"]].concat();
    let out = kessai(&keep, &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("kept under password A, not sent"), "{}", stdout(&out));
    let out = kessai(&keep, &env);
    assert!(!out.status.success() && stderr(&out).contains("kept already"), "{}", stderr(&out));
    let show = kessai(&[&["wallet", "--config", wallet, "member", "show"][..], &a].concat(), &env);
    assert!(stdout(&show).contains("kept, not sent"), "{}", stdout(&show));
    // Not sent yet: the center knows no such member, so no card links to it.
    let ca_dir = d.ca_path();
    let link = ["admin", "--center", &center_base, "--ca-dir", ca_dir.to_str().unwrap(), "link-card"];
    let out = kessai(&[&link[..], &["--card-id", &card_id, "--member", &member]].concat(), &[]);
    assert!(!out.status.success() && stderr(&out).contains("unknown_member"), "{}", stderr(&out));
    // Sent (S7–S9) with password A alone. The keystore as it was before
    // stands in for a wallet killed after the center entered the member
    // and before the keystore was rewritten: sent again, the center answers
    // the same registration under its Idempotency-Key with the member as
    // entered, not a second entry.
    let keystore = d.dir.path().join("wallet").join("member.kms");
    let kept = std::fs::read(&keystore).unwrap();
    let send = [&["wallet", "--config", wallet, "member", "send"][..], &a].concat();
    let out = kessai(&send, &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&member), "{}", stdout(&out));
    std::fs::write(&keystore, &kept).unwrap();
    let again = kessai(&send, &env);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again), stdout(&out), "the stored answer");
    let out = kessai(&send, &env);
    assert!(!out.status.success() && stderr(&out).contains("no registration is kept"), "{}", stderr(&out));
    let linked = admin(&["link-card", "--card-id", &card_id, "--member", &member]);
    assert_eq!(linked["instruction_required"], true);

    // Without the member's key: refused, the card untouched.
    let order = place_order(&d, &store_base);
    let bill_url = format!("{store_base}/orders/{order}/bill");
    let out = kessai(&["wallet", "--config", wallet, "pay", &bill_url, "--yes"], &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("instruction_required"), "{}", stderr(&out));
    assert_eq!(card_balance(&image), 20_000);
    // With the member's passwords: paid.
    let order = place_order(&d, &store_base);
    let bill_url = format!("{store_base}/orders/{order}/bill");
    let pay = ["wallet", "--config", wallet, "pay", &bill_url, "--yes", "--member", &member];
    let out = kessai(&[&pay[..], &a, &b].concat(), &env);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(card_balance(&image) < 20_000, "the card paid");
    // The purchase is in the member's history, which password A alone reads.
    let history = kessai(&[&["wallet", "--config", wallet, "member", "history"][..], &a].concat(), &env);
    assert!(history.status.success(), "{}", stderr(&history));
    assert!(stdout(&history).contains(&order), "{}", stdout(&history));

    // The key replaced (§10.5). Unanswered (the center down): the current
    // key stays, the replacement waits beside it, and passwords do not
    // change under it; resumed, the center enters the new key.
    let keystore = d.dir.path().join("wallet").join("member.kms");
    let old_keystore = std::fs::read(&keystore).unwrap();
    let show = || stdout(&kessai(&[&["wallet", "--config", wallet, "member", "show"][..], &a].concat(), &env));
    let old_kid = show();
    center.kill9();
    let replace = [&["wallet", "--config", wallet, "member", "replace-key"][..], &a, &b].concat();
    let out = kessai(&replace, &env);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert_eq!(std::fs::read(&keystore).unwrap(), old_keystore, "the current key stays");
    assert!(show().contains("replacement under way"), "{}", show());
    let out = kessai(&replace, &env);
    assert!(stderr(&out).contains("under way"), "{}", stderr(&out));
    let passwd =
        [&["wallet", "--config", wallet, "member", "passwd", "--change-a", "--new-password-a-env", "NEW_A"][..], &a]
            .concat();
    let out = kessai(&passwd, &[("PW_A", "the member's password A"), ("NEW_A", "x")]);
    assert!(!out.status.success() && stderr(&out).contains("under way"), "{}", stderr(&out));
    let _center = CenterProcess::start(&config);
    d.wait_healthy(center_port);
    let resume = [&["wallet", "--config", wallet, "member", "replace-key", "--resume"][..], &a].concat();
    let out = kessai(&resume, &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!d.dir.path().join("wallet").join("member-next.kms").exists());
    let new_kid = show();
    assert_ne!(new_kid, old_kid);
    assert!(stdout(&out).contains(new_kid.lines().nth(1).unwrap().trim_start_matches("verification key ")));
    assert!(new_kid.contains("purchases        1"), "the history came along: {new_kid}");
    // The new key pays; the old one, put back, verifies nothing.
    let order = place_order(&d, &store_base);
    let bill_url = format!("{store_base}/orders/{order}/bill");
    let pay = ["wallet", "--config", wallet, "pay", &bill_url, "--yes", "--member", &member];
    let out = kessai(&[&pay[..], &a, &b].concat(), &env);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let paid = card_balance(&image);
    std::fs::write(&keystore, &old_keystore).unwrap();
    let order = place_order(&d, &store_base);
    let bill_url = format!("{store_base}/orders/{order}/bill");
    let pay = ["wallet", "--config", wallet, "pay", &bill_url, "--yes", "--member", &member];
    let out = kessai(&[&pay[..], &a, &b].concat(), &env);
    assert!(!out.status.success() && stderr(&out).contains("instruction_refused"), "{}", stderr(&out));
    assert_eq!(card_balance(&image), paid, "nothing moved");
    // A replacement signed by the retired key is refused: the keystore
    // stays as it is, the new one is set aside, not deleted.
    let out = kessai(&replace, &env);
    assert!(stderr(&out).contains("replacement_refused") && stderr(&out).contains("set aside"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&keystore).unwrap(), old_keystore);
    let wallet_dir = std::fs::read_dir(d.dir.path().join("wallet")).unwrap();
    let names: Vec<String> = wallet_dir.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().any(|n| n.starts_with("member-next.kms.refused-")), "{names:?}");
    assert!(!names.iter().any(|n| n == "member-next.kms"), "{names:?}");
}

/// #18 end to end with real processes: a registered member opens a virtual
/// prepaid card paid by bank transfer (`kessai wallet prepaid open`), the
/// simulated bank writes the pool account's camt.053 (`kessai bank
/// statement`), the operator imports it on the center's host (`kessai
/// center import-statement`, twice: the second changes nothing), cash is
/// recorded (`kessai admin cash`), and the member pays the store from the
/// card (`kessai wallet prepaid pay`): SIG3 and the store's SIG4 verified.
#[test]
fn a_member_funds_a_prepaid_card_by_transfer_and_cash_and_pays_a_store_from_it() {
    let d = Deployment::new(34);
    let ca = d.ca_path();
    let out =
        kessai(&["pki", "issue", "--dir", ca.to_str().unwrap(), "--client", "kessai-mall", "--party", "store"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (center_port, store_port) = (free_port(), free_port());
    let center_base = format!("https://127.0.0.1:{center_port}");
    let store_base = format!("https://127.0.0.1:{store_port}");
    let config = d.center_config("center", center_port, None);
    let center_config = config.to_str().unwrap();
    let out = kessai(&["center", "init", "--config", center_config], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (card_id, image) = d.issue_card(&config, 1, 1_000);
    let _center = CenterProcess::start(&config);
    d.wait_healthy(center_port);
    let (_store, _) = start_store(&d, store_port, center_port);
    let admin = |args: &[&str]| admin_cli(&d, &center_base, args);
    register_mall(&d, &center_base, &store_base);
    admin(&["register-store", "--id", "bookshop", "--display-name", "Kessai Books", "--mall", "kessai-mall"]);

    let apply = json!({ "kind": "general", "name": "Hanako Yamada", "contact": "hanako@example.jp" });
    let (_, application) = d.post(&format!("{center_base}/v1/members/applications"), "apply-1", &apply).unwrap();
    let approved = admin(&["approve", application["application_id"].as_str().unwrap()]);
    let member = approved["member"].as_str().unwrap().to_owned();
    let outbox = admin(&["outbox"]);
    let code = outbox["letters"][0]["text"]
        .as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Your activation code: "))
        .unwrap()
        .to_owned();
    let wallet = wallet_toml(&d, center_port, &image);
    let wallet = wallet.to_str().unwrap();
    let env = [("PW_A", "the member's password A"), ("PW_B", "the member's password B"), ("CODE", code.as_str())];
    let signer = ["--member", member.as_str(), "--password-a-env", "PW_A", "--password-b-env", "PW_B"];
    let init = kessai(
        &["wallet", "--config", wallet, "member", "init", "--password-a-env", "PW_A", "--password-b-env", "PW_B"],
        &env,
    );
    assert!(init.status.success(), "{}", stderr(&init));
    let out = kessai(&crate::member_register_args(wallet, &member), &env);
    assert!(out.status.success(), "{}", stderr(&out));

    // Open a card funded by a bank transfer: a reference to quote.
    let prepaid = ["wallet", "--config", wallet, "prepaid"];
    let open = [&prepaid[..], &["open", "20000", "--method", "bank-transfer"], &signer].concat();
    let out = kessai(&open, &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let reference = text.lines().find_map(|l| l.trim().strip_prefix("quote this reference: ")).unwrap().to_owned();
    let card = text.split_whitespace().find(|w| w.starts_with("vpc_")).unwrap().to_owned();
    assert!(text.contains("awaiting"), "{text}");

    // The bank's statement, imported on the center's host, twice.
    let statement = d.dir.path().join("statement.xml");
    let bank = ["bank", "statement", "--out", statement.to_str().unwrap(), "--id", "STMT-E2E-1"];
    let credit = format!("20000:{reference}");
    let out = kessai(&[&bank[..], &["--credit", &credit, "--credit", "500:"]].concat(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let import = ["center", "import-statement", "--config", center_config, statement.to_str().unwrap()];
    let out = kessai(&import, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("1 matched, 1 to suspense"), "{}", stdout(&out));
    let out = kessai(&import, &[]);
    assert!(stdout(&out).contains("0 matched, 0 to suspense, 0 to review, 2 imported before"), "{}", stdout(&out));
    let queue = admin(&["bank-credits", "--status", "suspense"]);
    assert_eq!(queue["bank_credits"].as_array().unwrap().len(), 1, "{queue}");

    // Cash by registered mail, recorded by the operator.
    let fund = [&prepaid[..], &["fund", "5000", "--method", "cash", "--card", &card], &signer].concat();
    let out = kessai(&fund, &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let funding = stdout(&out).split_whitespace().find(|w| w.starts_with("fnd_")).unwrap().to_owned();
    let recorded = admin(&["cash", &funding, "--amount", "5000"]);
    assert_eq!(recorded["status"], "issued", "{recorded}");
    let show = [&prepaid[..], &["show"], &signer].concat();
    let out = kessai(&show, &env);
    assert!(stdout(&out).contains("balance JPY 25,000"), "{}", stdout(&out));

    // Pay the store from the card: SIG3 and the store's SIG4 verified.
    let order = place_order(&d, &store_base);
    let bill_url = format!("{store_base}/orders/{order}/bill");
    let pay = [&prepaid[..], &["pay", &bill_url, "--card", &card], &signer].concat();
    let out = kessai(&pay, &env);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("completion (SIG3) verified") && text.contains("receipt (SIG4) verified"), "{text}");
    // Paid once: the same bill again answers the same payment.
    let again = kessai(&pay, &env);
    assert!(again.status.success(), "{}", stderr(&again));
    let settlement = |t: &str| t.split_whitespace().find(|w| w.starts_with("stl_")).map(str::to_owned);
    assert_eq!(settlement(&stdout(&again)), settlement(&text));
    let out = kessai(&show, &env);
    let shown = stdout(&out);
    assert!(shown.contains(&order), "the payment is in the card's history: {shown}");
    assert!(!shown.contains("balance JPY 25,000"), "{shown}");
    assert_eq!(card_balance(&image), 1_000, "the IC card is untouched");

    // Value moved onto the member's IC card (linked by the operator),
    // through the card's secure session.
    let to_card = [&prepaid[..], &["to-card", "2000", "--card", &card], &signer].concat();
    let out = kessai(&to_card, &env);
    assert!(!out.status.success() && stderr(&out).contains("card_not_members"), "{}", stderr(&out));
    admin(&["link-card", "--card-id", &card_id, "--member", &member]);
    let out = kessai(&to_card, &env);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(card_balance(&image), 3_000, "the IC card holds the moved value");
    let out = kessai(&show, &env);
    assert!(stdout(&out).contains("balance JPY 21,800"), "25,000 less 1,200 less 2,000: {}", stdout(&out));

    // #19: the bookshop is paid. A bank account nobody's file could carry
    // is refused; a Zengin one is kept.
    let bookshop = ["register-store", "--id", "bookshop", "--display-name", "Kessai Books", "--mall", "kessai-mall"];
    let refused = admin_cli_raw(&d, &center_base, &[&bookshop[..], &["--bank-account", "my bank, please"]].concat());
    assert!(!refused.status.success() && stderr(&refused).contains("bad_bank_account"), "{}", stderr(&refused));
    admin(&[&bookshop[..], &["--bank-account", "zengin:0001-001-1-1234567:ｷﾖｳﾄﾎﾝﾔ"]].concat());
    let clearing = |args: &[&str]| {
        let out = kessai(&[&["center", "clearing"], args, &["--config", center_config]].concat(), &[]);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    clearing(&["fee", "--store", "bookshop", "--percent-bp", "300"]);
    let ran = clearing(&["run", "--cutoff", "now"]);
    assert!(ran.contains("1 payouts (1164 JPY)"), "1,200 less 3 %: {ran}");
    let run = ran.split_whitespace().find(|w| w.starts_with("clr_")).unwrap().trim_end_matches(':').to_owned();
    let again = clearing(&["run", "--cutoff", run.trim_start_matches("clr_")]);
    assert!(again.contains("was done before"), "{again}");
    // No deposit token expired: nothing paid back; an operator's account
    // for a token nobody holds is refused.
    assert!(!ran.contains("paid back"), "{ran}");
    assert!(clearing(&["paybacks"]).trim_end().ends_with("bank ref"), "a header, no payback");
    let unknown = ["--token", "tok_00000000000000000000000000000000", "--by", "ops", "--reason", "test"];
    let account = ["--account", "zengin:0001-001-1-1234567:ﾔﾏﾀﾞ"];
    let out = kessai(
        &[&["center", "clearing", "payback-account"], &unknown[..], &account[..], &["--config", center_config]]
            .concat(),
        &[],
    );
    assert!(!out.status.success() && stderr(&out).contains("no deposit token"), "{}", stderr(&out));
    let listed = clearing(&["payouts", "--run", &run]);
    assert!(listed.contains("bookshop") && listed.contains("1164 JPY") && listed.contains("in_transit"), "{listed}");
    let bank_ref = listed.split_whitespace().find(|w| w.starts_with("KS") && w.len() == 20).unwrap().to_owned();
    for format in ["zengin", "pain001"] {
        let file = d.dir.path().join(format!("payouts.{format}"));
        clearing(&["file", "--run", &run, "--format", format, "--out", file.to_str().unwrap()]);
        let bytes = std::fs::read(&file).unwrap();
        assert!(bytes.windows(20).any(|w| w == bank_ref.as_bytes()), "{format}");
    }
    // The bank debits the center's account for it: settled, once.
    let notice = d.dir.path().join("debits.xml");
    let mut draft = kessai_bank::camt054::NotificationDraft::new(
        "N-E2E",
        "JP00KESSAIPOOL0001",
        kessai_core::time::Timestamp::from_unix_s(1_800_000_000),
    )
    .unwrap();
    let entry = kessai_bank::camt::DraftEntry::new(
        kessai_bank::camt::EntryKind::Debit,
        kessai_core::Money::new(1_164, kessai_core::Currency::JPY).unwrap(),
        kessai_bank::Date::new(2027, 1, 15).unwrap(),
        "D-1",
    )
    .unwrap()
    .with_end_to_end_id(&bank_ref)
    .unwrap();
    draft.push(entry).unwrap();
    std::fs::write(&notice, kessai_bank::camt054::write(&draft)).unwrap();
    let imported = clearing(&["import", notice.to_str().unwrap()]);
    assert!(imported.contains("1 settled"), "{imported}");
    let imported = clearing(&["import", notice.to_str().unwrap()]);
    assert!(imported.contains("0 settled") && imported.contains("1 imported before"), "{imported}");
    assert!(clearing(&["payouts", "--store", "bookshop"]).contains("settled"));

    // The bookshop reads it in the mall's back office (the mall asks the
    // center with its certificate), as JSON and CSV; nobody else does.
    let bearer = "Bearer bookshop e2e token";
    let (status, body) = d.get_as(&format!("{store_base}/members/bookshop/payouts"), Some(bearer));
    assert_eq!(status, 200, "{body}");
    let listing: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(listing["payouts"][0]["amount_minor"], 1_164, "{listing}");
    assert_eq!(listing["payouts"][0]["status"], "settled");
    let payout = listing["payouts"][0]["payout_id"].as_str().unwrap().to_owned();
    let (status, csv) = d.get_as(&format!("{store_base}/members/bookshop/payouts/{payout}/csv"), Some(bearer));
    assert_eq!(status, 200, "{csv}");
    assert!(csv.starts_with("kind,reference,amount_minor,fee_minor,at\r\nprepaid_payment,stl_"), "{csv}");
    assert!(csv.contains(",1200,36,"), "the payment and its 3 % fee: {csv}");
    let (status, _) = d.get_as(&format!("{store_base}/members/record-shop/payouts"), Some(bearer));
    assert_eq!(status, 403);
    let (status, _) = d.get_as(&format!("{store_base}/members/bookshop/payouts"), None);
    assert_eq!(status, 401);

    // Paid on claim from now on: a new payment waits for the mall's claim
    // (FIG. 9), which the center answers with a statement the mall checks.
    clearing(&["mode", "--store", "bookshop", "--mode", "on-claim"]);
    let order = place_order(&d, &store_base);
    let bill_url = format!("{store_base}/orders/{order}/bill");
    let pay = [&prepaid[..], &["pay", &bill_url, "--card", &card], &signer].concat();
    let out = kessai(&pay, &env);
    assert!(out.status.success(), "{}", stderr(&out));
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let ran = clearing(&["run", "--cutoff", "now"]);
    assert!(ran.contains("0 payouts"), "nothing claimed, nothing paid: {ran}");
    let store_config = d.dir.path().join("store.toml");
    let claim = |extra: &[&str]| {
        let args =
            [&["store", "--config", store_config.to_str().unwrap(), "claim", "--member", "bookshop"], extra].concat();
        kessai(&args, &[])
    };
    // The first payment is paid already: claiming it again names it.
    let out = claim(&["--claim-id", "claim-e2e-1"]);
    assert!(!out.status.success() && stderr(&out).contains("claim_differs"), "{}", stderr(&out));
    let paid_before = listing["payouts"][0]["payout_id"].as_str().unwrap();
    let (_, statement) = d.get_as(&format!("{store_base}/members/bookshop/payouts/{paid_before}"), Some(bearer));
    let first: Value = serde_json::from_str(&statement).unwrap();
    let first_settlement = first["lines"][0]["reference"].as_str().unwrap().to_owned();
    let out = claim(&["--claim-id", "claim-e2e-2", "--exclude", &first_settlement]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("1 settlements") && stdout(&out).contains("statement verified"), "{}", stdout(&out));
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let ran = clearing(&["run", "--cutoff", "now"]);
    assert!(ran.contains("1 payouts (1164 JPY)"), "the claimed payment, less 3 %: {ran}");
}

/// The bank and the credit service provider (seed 002) each as its own
/// process with its own directory and KEK: the bank fetches the provider's
/// key versions over mutual TLS and keeps them, a version added while the
/// provider serves (rotation) reaching it on the next fetch; two center
/// instances, each with its own data directory, import the pool account's
/// statement from the bank, a deposit booked by its teller once; a center
/// or a bank whose client certificate the other does not list gets
/// nothing.
#[test]
fn the_bank_and_the_credit_service_provider_run_apart() {
    let d = Deployment::new(35);
    let ca = d.ca_path();
    for name in ["bank", "rogue"] {
        let out = kessai(&["pki", "issue", "--dir", ca.to_str().unwrap(), "--client", name, "--party", "bank"], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let (csp_port, bank_port) = (free_port(), free_port());
    let bank_toml = |name: &str, client: &str, port: u16| {
        let path = d.dir.path().join(format!("{name}.toml"));
        let text = format!(
            "bank_id = \"0999\"\npool_account = \"JP00KESSAIPOOL0001\"\nlisten = \"127.0.0.1:{port}\"\n\
             data_dir = \"{}\"\nkek_file = \"{}\"\ncenters = [\"center\"]\n\
             [tls]\nca_dir = \"{}\"\nserver_name = \"localhost\"\n\
             [tokens]\nprovider_id = \"kessai-csp\"\nprovider_url = \"https://127.0.0.1:{csp_port}\"\nclient_name = \"{client}\"\n",
            d.dir.path().join(name).display(),
            d.dir.path().join("secrets").join(format!("{name}-kek.hex")).display(),
            ca.display(),
        );
        std::fs::write(&path, text).unwrap();
        path
    };
    let bank = bank_toml("bank", "bank", bank_port);
    let bank_args = |config: &Path, rest: &[&str]| -> Vec<String> {
        ["bank", "--config", config.to_str().unwrap()].iter().chain(rest).map(|s| s.to_string()).collect()
    };
    let out = kessai(&refs(&bank_args(&bank, &["init"])), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let jwk: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!((jwk["kty"].as_str(), jwk["crv"].as_str()), (Some("OKP"), Some("X25519")), "{jwk}");
    let again = kessai(&refs(&bank_args(&bank, &["init"])), &[]);
    assert_eq!(serde_json::from_str::<Value>(stdout(&again).trim()).unwrap(), jwk, "made once");

    let csp_dir = d.dir.path().join("csp");
    let csp = d.dir.path().join("csp.toml");
    std::fs::write(
        &csp,
        format!(
            "provider_id = \"kessai-csp\"\nlisten = \"127.0.0.1:{csp_port}\"\ndata_dir = \"{}\"\nkek_file = \"{}\"\n\
             [tls]\nca_dir = \"{}\"\nserver_name = \"localhost\"\n\
             [[clients]]\nname = \"bank\"\ndelivery_key = {{ kty = \"OKP\", crv = \"X25519\", x = \"{}\" }}\n\
             [[clients]]\nname = \"center\"\n",
            csp_dir.display(),
            d.dir.path().join("secrets").join("csp-kek.hex").display(),
            ca.display(),
            jwk["x"].as_str().unwrap()
        ),
    )
    .unwrap();
    let csp_text = csp.to_str().unwrap().to_owned();
    let csp_args = |rest: &[&str]| -> Vec<String> {
        ["csp", "--config", csp_text.as_str()].iter().chain(rest).map(|s| s.to_string()).collect()
    };
    for step in [&["init"][..], &["key-new"][..]] {
        let out = kessai(&refs(&csp_args(step)), &[]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let serve = |args: Vec<String>, log: &str| {
        let log = std::fs::File::create(d.dir.path().join(log)).unwrap();
        Running(
            Command::new(env!("CARGO_BIN_EXE_kessai")).args(args).stdout(Stdio::null()).stderr(log).spawn().unwrap(),
        )
    };
    let _provider = serve(csp_args(&["serve"]), "csp.log");
    let fetch = || kessai(&refs(&bank_args(&bank, &["keys"])), &[]);
    let mut out = fetch();
    for _ in 0..100 {
        if out.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        out = fetch();
    }
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("new versions: [1]") && stdout(&out).contains("v1\t"), "{}", stdout(&out));
    assert!(stdout(&fetch()).contains("new versions: []"));
    assert!(d.dir.path().join("bank").join("keys").join("v1.sealed").exists());

    // Rotation while it serves: the next version, issuing from tomorrow.
    let out = kessai(&refs(&csp_args(&["key-new", "--from-days", "1"])), &[]);
    assert!(out.status.success() && stdout(&out).contains("version 2"), "{}", stdout(&out));
    let text = stdout(&fetch());
    assert!(text.contains("new versions: [2]") && text.contains("v1\t") && text.contains("v2\t"), "{text}");

    // A bank whose certificate the provider does not list gets nothing.
    let rogue = bank_toml("rogue", "rogue", free_port());
    assert!(kessai(&refs(&bank_args(&rogue, &["init"])), &[]).status.success());
    let out = kessai(&refs(&bank_args(&rogue, &["keys"])), &[]);
    assert!(!out.status.success() && stderr(&out).contains("not a client"), "{}", stderr(&out));
    assert!(!d.dir.path().join("rogue").join("keys").join("v1.sealed").exists());

    // The bank serves; its teller books a deposit quoting a reference no
    // request made; each center instance (its own data directory and
    // database) imports the statement: the credit in suspense, once.
    let _bank = serve(bank_args(&bank, &["serve"]), "bank.log");
    let out =
        kessai(&refs(&bank_args(&bank, &["deposit", "--amount", "4200", "--reference", "RF18539007547034"])), &[]);
    assert!(out.status.success() && stdout(&out).contains("JP00KESSAIPOOL0001/D1"), "{}", stderr(&out));
    let with_parties = |name: &str| {
        let config = d.center_config(name, free_port(), None);
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&format!(
            "[tokens]\nprovider_url = \"https://127.0.0.1:{csp_port}\"\nbank_url = \"https://127.0.0.1:{bank_port}\"\n"
        ));
        std::fs::write(&config, text).unwrap();
        assert!(kessai(&["center", "init", "--config", config.to_str().unwrap()], &[]).status.success());
        config
    };
    let import = |config: &Path| kessai(&["center", "fetch-statement", "--config", config.to_str().unwrap()], &[]);
    let mut configs = Vec::new();
    for name in ["a", "b"] {
        let config = with_parties(name);
        configs.push(config.clone());
        let mut out = import(&config);
        for _ in 0..100 {
            if out.status.success() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            out = import(&config);
        }
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains("0 matched, 1 to suspense"), "{name}: {}", stdout(&out));
        let out = import(&config);
        assert!(stdout(&out).contains("1 imported before"), "{name}: {}", stdout(&out));
    }
    // A center that made its own token keys before the parties ran apart
    // (in its `token-keys/`, under its KEK): a provider set up anew takes
    // them over, once, re-sealed under its own KEK.
    let kek = hex::decode(std::fs::read_to_string(d.kek_path()).unwrap().trim()).unwrap();
    let kek: [u8; 32] = kek.try_into().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let at = kessai_core::time::Timestamp::from_unix_s;
    let windows = (at(now - 86_400), at(now + 86_400), at(now + 400 * 86_400));
    let old = kessai_core::token::TokenKey::generate(7, windows, &mut kessai_core::random::OsRandom).unwrap();
    kessai_csp::keep_key(&d.center_dir("a").join("token-keys"), &kek, &old).unwrap();
    let csp2 = d.dir.path().join("csp2.toml");
    let text =
        std::fs::read_to_string(&csp).unwrap().replace("/csp\"", "/csp2\"").replace("csp-kek.hex", "csp2-kek.hex");
    std::fs::write(&csp2, text).unwrap();
    let csp2_args = |rest: &[&str]| -> Vec<String> {
        ["csp", "--config", csp2.to_str().unwrap()].iter().chain(rest).map(|s| s.to_string()).collect()
    };
    assert!(kessai(&refs(&csp2_args(&["init"])), &[]).status.success());
    let take = csp2_args(&["key-import", "--center-config", configs[0].to_str().unwrap()]);
    let out = kessai(&refs(&take), &[]);
    assert!(out.status.success() && stdout(&out).contains("versions taken over: [7]"), "{}", stderr(&out));
    assert!(stdout(&kessai(&refs(&take), &[])).contains("versions taken over: []"));
    assert!(stdout(&kessai(&refs(&csp2_args(&["keys"])), &[])).contains("v7\t"));

    // A certificate not acting as a center (the operators') gets nothing.
    let shop = with_parties("shop");
    let mut text = std::fs::read_to_string(&shop).unwrap();
    text = text.replace("client_name = \"center\"", "client_name = \"admin\"");
    std::fs::write(&shop, text).unwrap();
    let out = import(&shop);
    assert!(!out.status.success() && stderr(&out).contains("403"), "{}", stderr(&out));
}

fn refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}
