//! The purchase in a real Chromium against `kessai up`, driven by
//! `tests/browser/purchase.mjs` (playwright-core): the whole purchase with
//! the download, cancel at consent, and a bill larger than the balance.
//! Screenshots of every step go to `test-artifacts/browser/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::free_port;

/// `kessai up`, stopped with Ctrl-C (SIGINT) when dropped.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-INT", &self.0.id().to_string()]).status();
        let _ = self.0.wait();
    }
}

fn answers(addr: &str) -> bool {
    std::net::TcpStream::connect(addr).is_ok()
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-artifacts/browser");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

#[test]
fn a_person_buys_the_ebook_cancels_once_is_refused_a_bill_over_the_balance_and_charges_the_card() {
    let Some(chromium) = kessai_testkit::external_tool("KESSAI_CHROMIUM", Some("/usr/bin/chromium"), "Chromium") else {
        return;
    };
    let Some(node_modules) = kessai_testkit::external_tool("KESSAI_NODE_MODULES", None, "playwright-core (npm)") else {
        return;
    };
    let Some(node) = kessai_testkit::tool_on_path("node", "KESSAI_NODE") else { return };
    assert!(node_modules.join("playwright-core").exists(), "{} has no playwright-core", node_modules.display());

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (center, store, wallet) = (free_port(), free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_kessai"))
        .args(["up", "--data-dir", dir.to_str().unwrap()])
        .args(["--center-port", &center.to_string(), "--store-port", &store.to_string()])
        .args(["--wallet-port", &wallet.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _up = Up(child);
    let ready = (0..300).any(|_| {
        let up = [center, store, wallet].iter().all(|p| answers(&format!("127.0.0.1:{p}")));
        if !up {
            std::thread::sleep(Duration::from_millis(100));
        }
        up
    });
    assert!(ready, "kessai up did not start");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/purchase.mjs");
    let artifacts = artifacts();
    let scenarios = |extra: &[(&str, &str)]| {
        let out = Command::new(&node)
            .arg(&script)
            .env("KESSAI_CHROMIUM", &chromium)
            .env("KESSAI_NODE_MODULES", &node_modules)
            .env("KESSAI_SHOP_URL", format!("https://127.0.0.1:{store}"))
            .env("KESSAI_WALLET_URL", format!("http://127.0.0.1:{wallet}"))
            .env("KESSAI_CENTER_URL", format!("https://127.0.0.1:{center}"))
            .env("KESSAI_ARTIFACTS", &artifacts)
            .envs(extra.iter().copied())
            .output()
            .unwrap();
        let printed = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let result: Value =
            serde_json::from_str(&printed).unwrap_or_else(|e| panic!("no JSON ({e}):\n{printed}\n{stderr}"));
        (out, result, stderr)
    };
    let (out, result, stderr) = scenarios(&[]);
    for name in ["purchase", "cancel", "insufficient", "charge", "signup"] {
        assert_eq!(result["scenarios"][name]["ok"], true, "{name}: {}", result["scenarios"][name]);
    }
    assert!(out.status.success(), "{stderr}");

    let bought = &result["scenarios"]["purchase"];
    assert_eq!(bought["consent"]["store"], "Kessai Books");
    assert_eq!(bought["consent"]["amount"], "JPY 1,200");
    assert_eq!(bought["consent"]["balance"], "JPY 30,000");
    assert!(bought["download_first_line"].as_str().unwrap().starts_with("A Short Guide to Stored Value"));
    assert_eq!(bought["wallet_balance"], "JPY 28,800");
    let steps: Vec<&str> = bought["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    for step in ["mall", "bookshop", "product", "cart", "estimate", "payment-method", "bill", "consent", "completion"] {
        assert!(steps.contains(&step), "the purchase went through {step}: {steps:?}");
    }
    for s in bought["steps"].as_array().unwrap() {
        assert!(Path::new(s["screenshot"].as_str().unwrap()).exists(), "screenshot of {}", s["step"]);
    }

    let cancelled = &result["scenarios"]["cancel"];
    assert_eq!(cancelled["message"], "Cancelled; nothing was charged.");
    assert_eq!(cancelled["balance_before"], "JPY 28,800");
    assert_eq!(cancelled["balance_after"], "JPY 28,800");
    assert!(cancelled["order_status"].as_str().unwrap().starts_with("Not paid yet"));

    let refused = &result["scenarios"]["insufficient"];
    assert_eq!(
        refused["message"],
        "Insufficient balance: your card holds JPY 28,800; the bill is JPY 50,000. Nothing was charged."
    );
    assert_eq!(refused["balance_after"], "JPY 28,800");

    let charged = &result["scenarios"]["charge"];
    assert_eq!(charged["balance_before"], "JPY 28,800");
    assert!(charged["declined"].as_str().unwrap().contains("Nothing was charged"), "{charged}");
    assert_eq!(charged["balance_after_decline"], "JPY 28,800", "a declined credit card adds nothing");
    assert_eq!(charged["status"], "Charged JPY 5,000 to your card.");
    assert_eq!(charged["balance_after"], "JPY 33,800");
    assert_eq!(charged["wallet_after"], "JPY 33,800");

    let signup = &result["scenarios"]["signup"];
    assert!(signup["application"].as_str().unwrap().starts_with("app_"), "{signup}");
    let steps: Vec<&str> = signup["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(steps, ["guide", "apply-form", "application"], "screenshots of the sign-up pages");

    let image = std::fs::read(dir.join("card.img")).unwrap();
    let card = kessai_card::public_info(&image).unwrap();
    assert_eq!(card.balance_minor, 33_800, "debited once for the e-book, credited once by the approved charge");

    // The applicant of the sign-up scenario is approved and its letter waits
    // in the outbox. `kessai up` registered its demo member in the wallet
    // (keystore, key, a virtual prepaid card funded by bank transfer): the
    // operator links the card to it; then the member pays from the prepaid
    // card, and with the card, in the browser with passwords A and B.
    let center_url = format!("https://127.0.0.1:{center}");
    let ca = dir.join("ca");
    let cli = |args: &[&str], env: &[(&str, &str)]| {
        let out = crate::kessai(args, env);
        assert!(out.status.success(), "{args:?}: {}", crate::stderr(&out));
        crate::stdout(&out)
    };
    let admin = |args: &[&str]| -> Value {
        let base = ["admin", "--center", center_url.as_str(), "--ca-dir", ca.to_str().unwrap()];
        serde_json::from_str(&cli(&[&base[..], args].concat(), &[])).unwrap()
    };
    let approved = admin(&["approve", signup["application"].as_str().unwrap()]);
    let applicant = approved["member"].as_str().unwrap().to_owned();
    let outbox = admin(&["outbox"]);
    let letter = outbox["letters"].as_array().unwrap().iter().find(|l| l["member"] == applicant.as_str());
    assert!(letter.is_some_and(|l| l["text"].as_str().unwrap().contains("Your activation code: ")), "{outbox}");
    let member = std::fs::read_to_string(dir.join("wallet").join("member-number")).unwrap().trim().to_owned();
    let card_id = card.card_id.to_string();
    admin(&["link-card", "--card-id", &card_id, "--member", &member]);
    let (out, result, stderr) = scenarios(&[
        ("KESSAI_SCENARIOS", "prepaid,member,token"),
        ("KESSAI_PASSWORD_A", "demo password A"),
        ("KESSAI_PASSWORD_B", "demo password B"),
    ]);
    let prepaid = &result["scenarios"]["prepaid"];
    assert_eq!(prepaid["ok"], true, "{prepaid}");
    assert_eq!(prepaid["balance"], "JPY 18,800", "JPY 20,000 by bank transfer, less JPY 1,200: {prepaid}");
    assert!(prepaid["refused"].as_str().unwrap().contains("JPY 50,000"), "{prepaid}");
    assert_eq!(prepaid["shown"]["balance"], "JPY 18,800", "{prepaid}");
    assert!(prepaid["shown"]["payments"].as_str().unwrap().contains("JPY 1,200"), "{prepaid}");
    let steps: Vec<&str> = prepaid["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    for step in [
        "bill-offers-prepaid",
        "review-prepaid",
        "paid-from-prepaid",
        "order-paid",
        "prepaid-insufficient",
        "prepaid-cards",
    ] {
        assert!(steps.contains(&step), "the prepaid purchase went through {step}: {steps:?}");
    }
    let paid = &result["scenarios"]["member"];
    assert_eq!(paid["ok"], true, "{paid}");
    assert_eq!(result["scenarios"]["token"]["ok"], true, "{}", result["scenarios"]["token"]);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        (paid["balance_before"].as_str(), paid["balance_after"].as_str()),
        (Some("JPY 33,800"), Some("JPY 32,600"))
    );
    let history = paid["history"].as_str().unwrap_or_default();
    assert!(history.contains("JPY 1,200") && history.contains("UTC"), "the purchase in the member's history: {paid}");
    for s in paid["steps"].as_array().unwrap() {
        assert!(Path::new(s["screenshot"].as_str().unwrap()).exists(), "screenshot of {}", s["step"]);
    }
    // Seed 002: the demo card's deposit token paid the next bill; the
    // JPY 3,800 it held beyond it went onto the card.
    let token = &result["scenarios"]["token"];
    assert_eq!(token["ok"], true, "{token}");
    assert!(token["token"].as_str().unwrap().starts_with("tok_"), "{token}");
    assert_eq!(
        (token["balance_before"].as_str(), token["balance_after"].as_str()),
        (Some("JPY 32,600"), Some("JPY 36,400"))
    );
    let image = std::fs::read(dir.join("card.img")).unwrap();
    assert_eq!(
        kessai_card::public_info(&image).unwrap().balance_minor,
        36_400,
        "the member paid once, and the token paid once"
    );

    // Work for the failed-payouts queue: a clearing run (on the center's
    // host, with the deployment's own config) pays the stores what the
    // demo's purchases came to, and the bank rejects the first payout.
    let config = dir.join("center.toml");
    let config = config.to_str().unwrap();
    let ran = cli(&["center", "clearing", "run", "--config", config, "--cutoff", "now"], &[]);
    let run = ran.split_whitespace().nth(1).unwrap().trim_end_matches(':').to_owned();
    assert!(run.starts_with("clr_") && !ran.contains(" 0 payouts"), "{ran}");
    let listed = cli(&["center", "clearing", "payouts", "--config", config, "--run", &run], &[]);
    let first = listed.lines().nth(1).unwrap_or_else(|| panic!("no payout: {listed}"));
    let (payout, bank_ref) = (first.split_whitespace().next().unwrap(), first.split_whitespace().last().unwrap());
    let rejection = kessai_bank::pain002::write(&kessai_bank::pain002::StatusReport {
        message_id: "DEMO-RJCT-1".into(),
        created_at: kessai_core::time::Timestamp::from_unix_s(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
        ),
        original_message_id: kessai_center::clearing::batch_id(&run, kessai_core::Currency::JPY),
        group_status: None,
        group_reason: None,
        transactions: vec![kessai_bank::pain002::TransactionStatus {
            end_to_end_id: bank_ref.to_owned(),
            status: "RJCT".into(),
            reason: Some("AC04".into()),
            amount: None,
        }],
    })
    .unwrap();
    let file = tmp.path().join("pain002.xml");
    std::fs::write(&file, rejection).unwrap();
    let imported = cli(&["center", "clearing", "import", "--config", config, file.to_str().unwrap()], &[]);
    assert!(imported.contains("1 failed"), "{imported}");

    // The operator's console (#22), each operator with its own certificate.
    let console = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/console.mjs");
    let out = Command::new(&node)
        .arg(&console)
        .env("KESSAI_CHROMIUM", &chromium)
        .env("KESSAI_NODE_MODULES", &node_modules)
        .env("KESSAI_CENTER_URL", &center_url)
        .env("KESSAI_CA_DIR", &ca)
        .env("KESSAI_CONSOLE_PASSWORDS", dir.join("secrets").join("console-passwords"))
        .env("KESSAI_ARTIFACTS", &artifacts)
        .env("KESSAI_DEMO_CARD", &card_id)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let console: Value = serde_json::from_str(&printed)
        .unwrap_or_else(|e| panic!("no JSON ({e}):\n{printed}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(console["ok"], true, "{console}");
    assert!(out.status.success());
    assert!(console["settlements"].as_u64().unwrap() >= 3, "the demo's purchases listed: {console}");
    assert!(console["viewer_refused"].as_str().unwrap().contains("needs the approver role"), "{console}");
    let application = console["application"].as_str().unwrap();
    let row = console["trail_row"].as_str().unwrap();
    for part in ["admin", "approver", "application_rejected", application, "received", "a duplicate of an earlier"] {
        assert!(row.contains(part), "the trail shows {part}: {row}");
    }
    assert!(console["viewer_trail"].as_str().unwrap().contains("application_rejected"), "{console}");
    assert!(console["letters_waiting"].as_u64().unwrap() >= 1, "the approved applicant's letter waits: {console}");
    assert!(console["letter"].as_str().unwrap().starts_with("ltr_"), "{console}");
    let steps: Vec<&str> = console["steps"].as_array().unwrap().iter().map(|s| s["step"].as_str().unwrap()).collect();
    for step in [
        "viewer-login",
        "search",
        "card-story",
        "viewer-refused",
        "approver-queue",
        "rejected",
        "viewer-letters",
        "letter-sent",
        "trail",
        "cash-queue",
        "cash-counted",
        "viewer-return-refused",
        "credit-returned",
        "failed-payouts",
        "account-corrected",
        "card-reported",
        "differences",
        "search-prepaid",
        "statistics",
    ] {
        assert!(steps.contains(&step), "the console went through {step}: {steps:?}");
    }
    for s in console["steps"].as_array().unwrap() {
        assert!(Path::new(s["screenshot"].as_str().unwrap()).exists(), "screenshot of {}", s["step"]);
    }
    assert!(console["return_refused"].as_str().unwrap().contains("needs the approver role"), "{console}");
    assert_eq!(console["failed_payout"], payout, "{console}");
    assert!(console["lost_card"].as_str().unwrap().contains("lost"), "{console}");
    assert!(console["prepaid_payments"].to_string().contains("JPY 1,200"), "{console}");
    assert!(console["stores"].as_u64().unwrap() >= 1, "{console}");
    assert_eq!(
        (console["pdf"]["status"].as_u64(), console["pdf"]["type"].as_str()),
        (Some(200), Some("application/pdf"))
    );
    // What the queues did is what the center now says.
    let fundings = admin(&["fundings", "--status", "issued"]);
    assert!(
        fundings.to_string().contains(console["cash_funding"].as_str().unwrap()),
        "the envelope issued: {fundings}"
    );
    let returned = admin(&["bank-credits", "--status", "returned"]);
    assert!(returned.to_string().contains("SUZUKI ICHIRO"), "{returned}");
    // The viewer's refused attempt changed nothing; the approver's decision
    // is the only trail row of that application.
    let listed = admin(&["applications", "--status", "rejected"]);
    assert!(listed.to_string().contains(application), "{listed}");
}
