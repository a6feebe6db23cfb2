//! `kessai card`: personalize, info and serve, as an issuer would.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use kessai_card::protocol::{TransferRequest, TxId, TxStatus, credit_command, debit_command};
use kessai_card::terminal::Terminal;
use kessai_card::transport::vpcd::VpcdListener;
use kessai_scp03::keys::{Aes128Key, KeyVersion, StaticKeys};

use crate::{kessai, stderr, stdout};

const ENC: &str = "000102030405060708090a0b0c0d0e0f";
const MAC: &str = "101112131415161718191a1b1c1d1e1f";
const DEK: &str = "202122232425262728292a2b2c2d2e2f";

fn static_keys_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("static.json");
    std::fs::write(&path, format!(r#"{{"enc":"{ENC}","mac":"{MAC}","dek":"{DEK}"}}"#)).unwrap();
    path
}

fn personalize(dir: &std::path::Path, keys: &[&str]) -> (std::path::PathBuf, std::process::Output) {
    let image = dir.join("card.img");
    let mut args = vec!["card", "personalize", "--out", image.to_str().unwrap(), "--card-id", "4b45535341490001"];
    args.extend_from_slice(&["--max-balance", "100000"]);
    args.extend_from_slice(keys);
    let out = kessai(&args, &[]);
    (image, out)
}

#[test]
fn personalize_and_info_show_public_data_only() {
    let dir = tempfile::tempdir().unwrap();
    let master = dir.path().join("master.json");
    assert!(kessai(&["card", "master-keys", "--out", master.to_str().unwrap()], &[]).status.success());
    assert_eq!(std::fs::metadata(&master).unwrap().permissions().mode() & 0o777, 0o600);
    let (image, out) = personalize(dir.path(), &["--master-keys", master.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::metadata(&image).unwrap().permissions().mode() & 0o777, 0o600);

    let info = kessai(&["card", "info", "--image", image.to_str().unwrap()], &[]);
    assert!(info.status.success(), "{}", stderr(&info));
    let text = stdout(&info);
    assert!(text.contains("4b45535341490001") && text.contains("JPY") && text.contains("100000"));
    let master_text = std::fs::read_to_string(&master).unwrap();
    let master_json: serde_json::Value = serde_json::from_str(&master_text).unwrap();
    for k in ["enc", "mac", "dek"] {
        assert!(!text.contains(master_json[k].as_str().unwrap()), "info printed a key");
    }

    let again = personalize(dir.path(), &["--master-keys", master.to_str().unwrap()]).1;
    assert!(!again.status.success() && stderr(&again).contains("exists"), "{}", stderr(&again));
}

#[test]
fn personalize_refuses_bad_input_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let keys = static_keys_file(dir.path());
    let k = keys.to_str().unwrap();
    for (args, expect) in [
        (vec!["--static-keys", k, "--currency", "XYZ"], "currency"),
        (vec!["--static-keys", k, "--key-version", "0"], "key-version"),
        (vec!["--static-keys", "/nonexistent.json"], "nonexistent"),
    ] {
        let (image, out) = personalize(dir.path(), &args);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(expect), "{expect}: {}", stderr(&out));
        assert!(!image.exists());
    }
    std::fs::write(&keys, r#"{"enc":"00","mac":"00","dek":"00"}"#).unwrap();
    let (image, out) = personalize(dir.path(), &["--static-keys", k]);
    assert!(stderr(&out).contains("16 bytes") && !image.exists(), "{}", stderr(&out));
    let bad_id = kessai(&["card", "personalize", "--out", "x", "--card-id", "xyz", "--max-balance", "1"], &[]);
    assert!(!bad_id.status.success());
}

fn keys() -> StaticKeys {
    let key = |h: &str| Aes128Key::from_slice(&hex::decode(h).unwrap()).unwrap();
    StaticKeys { version: KeyVersion::new(1).unwrap(), enc: key(ENC), mac: key(MAC), dek: key(DEK) }
}

fn request(n: u8, amount_minor: u64) -> TransferRequest {
    TransferRequest {
        tx_id: TxId([n; 16]),
        amount_minor,
        counterpart: *b"STORE-01",
        order_ref: [7; 16],
        time_unix_s: 1_795_000_000,
    }
}

#[test]
fn serve_answers_a_secure_session_over_vpcd_and_keeps_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let keys_file = static_keys_file(dir.path());
    let (image, out) = personalize(dir.path(), &["--static-keys", keys_file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    let listener = VpcdListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut card = Command::new(env!("CARGO_BIN_EXE_kessai"))
        .args(["card", "serve", "--image", image.to_str().unwrap(), "--vpcd", &addr])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reader = listener.accept().unwrap();
    let mut t = Terminal::new(reader);
    t.select().unwrap();
    let s = t.open_session(keys(), [9; 8]).unwrap();
    let (s, r) = t.secure(s, &credit_command(&request(1, 900))).unwrap();
    assert_eq!(r.sw().raw(), 0x9000);
    let (_, r) = t.secure(s, &debit_command(&request(2, 400))).unwrap();
    let TxStatus::Applied(result) = TxStatus::parse(r.data()).unwrap() else { panic!("debit not applied") };
    assert_eq!(result.balance_after_minor, 500);
    drop(t);
    assert!(card.wait().unwrap().success(), "the card process ends cleanly when vpcd hangs up");

    let info = stdout(&kessai(&["card", "info", "--image", image.to_str().unwrap()], &[]));
    assert!(info.contains("balance        500 minor units"), "{info}");
    assert!(info.contains("transactions   2"), "{info}");
}
