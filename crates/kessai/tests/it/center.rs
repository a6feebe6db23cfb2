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
    assert!(kessai(&["pki", "issue", "--dir", ca, "--client", "center"], &[]).status.success());
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

    let mut server = Command::new(env!("CARGO_BIN_EXE_kessai"))
        .args(["center", "run", "--config", c])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ca = kessai_tls::CaDir::new(dir.path().join("ca"));
    let client = kessai_http::HttpsClient::new(kessai_tls::client_config(&ca.ca_cert(), None).unwrap(), 5_000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut healthy = false;
    for _ in 0..100 {
        if let Ok((status, _)) = runtime.block_on(client.get(&format!("https://127.0.0.1:{port}/healthz"))) {
            healthy = status.is_success();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, jwks) =
        runtime.block_on(client.get(&format!("https://127.0.0.1:{port}/.well-known/jwks.json"))).unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(healthy, "the center answered /healthz over TLS");
    assert!(status.is_success());
    let jwks: serde_json::Value = serde_json::from_slice(&jwks).unwrap();
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
}
