//! The whole store process: `serve_on` with its own TLS, SQLite file and
//! key, restarted on the same data directory.

use axum::http::StatusCode;
use kessai_http::HttpsClient;
use kessai_tls::client_config;

use crate::support::{demo_config, pki};

#[tokio::test]
async fn the_store_serves_over_tls_and_keeps_its_key_and_orders_across_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = pki(tmp.path());
    let config = demo_config(tmp.path(), "https://127.0.0.1:9");
    let browser = HttpsClient::new(client_config(&ca.ca_cert(), None).unwrap(), 5_000);
    let mut kids = Vec::new();
    for _ in 0..2 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let store = tokio::spawn(kessai_store::serve_on(config.clone(), listener, async {
            let _ = rx.await;
        }));
        let (status, body) = browser.get(&format!("{base}/readyz")).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body:?}");
        let (status, page) = browser.get(&format!("{base}/shops/record-shop")).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(String::from_utf8_lossy(&page).contains("Kissa Chime (single)"));
        let (_, jwks) = browser.get(&format!("{base}/.well-known/jwks.json")).await.unwrap();
        let jwks: serde_json::Value = serde_json::from_slice(&jwks).unwrap();
        kids.push(jwks["keys"][0]["kid"].as_str().unwrap().to_owned());
        tx.send(()).unwrap();
        store.await.unwrap().unwrap();
    }
    assert_eq!(kids[0], kids[1], "the mall's key is made once and kept");
    let key = config.data_dir.join("mall.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the signing key is private to its owner");
    assert!(config.data_dir.join("store.sqlite").exists());
}
