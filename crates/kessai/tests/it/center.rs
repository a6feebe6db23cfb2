//! `kessai center` as an operator runs it: init, issue a card, serve.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{kessai, stderr, stdout};

fn setup(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let ca = dir.join("ca");
    let ca = ca.to_str().unwrap();
    assert!(kessai(&["pki", "init", "--dir", ca], &[]).status.success());
    assert!(
        kessai(&["pki", "issue", "--dir", ca, "--server", "localhost", "--san", "127.0.0.1"], &[]).status.success()
    );
    assert!(kessai(&["pki", "issue", "--dir", ca, "--client", "center", "--party", "center"], &[]).status.success());
    let config = dir.join("center.toml");
    std::fs::write(
        &config,
        format!(
            "party_id = \"center\"\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"https://127.0.0.1:{port}\"\n\
             data_dir = \"{}\"\nkek_file = \"{}\"\n[tls]\nca_dir = \"{ca}\"\nserver_name = \"localhost\"\n\
             client_name = \"center\"\n",
            dir.join("data").display(),
            dir.join("secrets").join("kek.hex").display()
        ),
    )
    .unwrap();
    config
}

/// A wallet's HTTPS client trusting the test CA in `dir/ca`, and a runtime.
fn client(dir: &std::path::Path) -> (kessai_http::HttpsClient, tokio::runtime::Runtime) {
    let ca = kessai_tls::CaDir::new(dir.join("ca"));
    let client = kessai_http::HttpsClient::new(kessai_tls::client_config(&ca.ca_cert(), None).unwrap(), 5_000);
    (client, tokio::runtime::Runtime::new().unwrap())
}

/// Whether the center on `port` answers `/healthz` within 15 s.
fn healthy(client: &kessai_http::HttpsClient, runtime: &tokio::runtime::Runtime, port: u16) -> bool {
    for _ in 0..150 {
        if let Ok((status, _)) = runtime.block_on(client.get(&format!("https://127.0.0.1:{port}/healthz"))) {
            return status.is_success();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn init_issue_a_card_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = setup(dir.path(), port);
    let c = config.to_str().unwrap();
    let out = kessai(&["center", "init", "--config", c], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let data = dir.path().join("data");
    let secrets = [data.join("issuer-master-keys.sealed"), data.join("center.key"), dir.path().join("secrets/kek.hex")];
    for secret in &secrets {
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(secret).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "{}", secret.display());
    }
    assert!(!data.join("kek.hex").exists(), "the KEK is not kept beside what it seals");
    let image = dir.path().join("card.img");
    let img = image.to_str().unwrap();
    let issue = ["center", "issue-card", "--config", c, "--out", img, "--card-id", "4b45535341490001"];
    let out = kessai(&[&issue[..], &["--max-balance", "100000", "--initial-value", "30000"]].concat(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info = stdout(&kessai(&["card", "info", "--image", img], &[]));
    assert!(info.contains("balance        30000 minor units"), "{info}");
    let again = kessai(&[&issue[..], &["--max-balance", "100000"]].concat(), &[]);
    assert!(!again.status.success(), "the same card cannot be issued twice");
    let over = kessai(&[&issue[..], &["--max-balance", "100", "--initial-value", "200"]].concat(), &[]);
    assert!(!over.status.success());
    // The operator's commands on the issued card's books: nothing collected
    // yet, nothing differs; no difference to resolve; a store's profiles.
    let audit = kessai(&["center", "audit", "--config", c], &[]);
    assert!(audit.status.success(), "{}", stderr(&audit));
    assert!(
        stdout(&audit).contains("examined 0 collected log records of 0 cards: 0 differences"),
        "{}",
        stdout(&audit)
    );
    let resolve = kessai(&["center", "audit", "--config", c, "--resolve", "aud_x", "--by", "ops", "--note", "n"], &[]);
    assert!(!resolve.status.success() && stderr(&resolve).contains("no open difference aud_x"), "{}", stderr(&resolve));
    let unknown = kessai(&["center", "profiles", "--config", c, "--store", "nobody"], &[]);
    assert!(!unknown.status.success() && stderr(&unknown).contains("not registered"), "{}", stderr(&unknown));
    // A console login (#22): a short password is refused, a good one
    // taken; disabled once, and not twice.
    let operator = ["center", "operator", "--config", c, "--name", "alice"];
    let login = [&operator[..], &["--role", "approver", "--passphrase-env", "KESSAI_TEST_OP"]].concat();
    let short = kessai(&login, &[("KESSAI_TEST_OP", "too-short")]);
    assert!(!short.status.success() && stderr(&short).contains("at least 12"), "{}", stderr(&short));
    let taken = kessai(&login, &[("KESSAI_TEST_OP", "a-long-enough-password")]);
    assert!(taken.status.success() && stdout(&taken).contains("as approver"), "{}", stderr(&taken));
    let disable = [&operator[..], &["--disable"]].concat();
    assert!(kessai(&disable, &[]).status.success());
    let again = kessai(&disable, &[]);
    assert!(!again.status.success() && stderr(&again).contains("no enabled operator alice"), "{}", stderr(&again));

    let mut server = Command::new(env!("CARGO_BIN_EXE_kessai"))
        .args(["center", "run", "--config", c])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (client, runtime) = client(dir.path());
    let healthy = healthy(&client, &runtime, port);
    let (status, jwks) =
        runtime.block_on(client.get(&format!("https://127.0.0.1:{port}/.well-known/jwks.json"))).unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(healthy, "the center answered /healthz over TLS");
    assert!(status.is_success());
    let jwks: serde_json::Value = serde_json::from_slice(&jwks).unwrap();
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
}

/// #23: a center whose signing key is sealed under a passphrase, started on
/// a terminal with no passphrase in its environment, asks for it once (on
/// the terminal, through `script`'s pseudo-terminal) and serves.
#[test]
fn a_sealed_center_key_is_asked_for_once_on_a_terminal() {
    use std::io::Write as _;
    let Some(script) = kessai_testkit::tool_on_path("script", "KESSAI_SCRIPT") else { return };
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = setup(dir.path(), port);
    let c = config.to_str().unwrap();
    let out = kessai(&["center", "init", "--config", c], &[("KESSAI_CENTER_KEY_PASSPHRASE", "kessai terminal")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = std::fs::read_to_string(dir.path().join("data/center.key")).unwrap();
    assert!(kessai_core::keyfile::is_sealed(&key));
    let command = format!("{} center run --config {c}", env!("CARGO_BIN_EXE_kessai"));
    let mut server = Command::new(script)
        .args(["-qec", &command, "/dev/null"])
        .env_remove("KESSAI_CENTER_KEY_PASSPHRASE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // One line, and the terminal stays open: a second question would wait
    // for ever and the center would never answer.
    let mut stdin = server.stdin.take().unwrap();
    stdin.write_all(b"kessai terminal\n").unwrap();
    stdin.flush().unwrap();
    let (client, runtime) = client(dir.path());
    let healthy = healthy(&client, &runtime, port);
    let _ = Command::new("pkill").args(["-f", &format!("center run --config {c}")]).status();
    let _ = server.kill();
    let output = server.wait_with_output().unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    drop(stdin);
    assert!(healthy, "the center served after one passphrase: {printed}");
    assert_eq!(printed.matches("passphrase for").count(), 1, "asked once: {printed}");
}
