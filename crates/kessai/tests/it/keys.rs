use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use kessai_core::jwk;

use crate::{kessai, stderr, stdout};

#[test]
fn generate_writes_a_private_pem_and_prints_the_public_jwk() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("store.pem");
    let out = kessai(&["keys", "generate", "--out", key.to_str().unwrap(), "--not-before", "1000"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"));
    let parsed = jwk::parse_jwk(stdout(&out).as_bytes()).unwrap();
    assert_eq!(parsed.not_before.map(|t| t.unix_s()), Some(1000));
    let from_file = kessai_core::keyfile::decode(&text, None).unwrap();
    assert_eq!(from_file.kid(), &parsed.kid);
    assert!(!stdout(&out).contains("\"d\""), "private member printed");

    // Never overwrite a key.
    let again = kessai(&["keys", "generate", "--out", key.to_str().unwrap()], &[]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already exists"));
    assert_eq!(std::fs::read_to_string(&key).unwrap(), text);
}

#[test]
fn openssl_reads_our_key_and_derives_the_same_public_key() {
    let Some(openssl) = kessai_testkit::tool_on_path("openssl", "KESSAI_OPENSSL") else { return };
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let out = kessai(&["keys", "generate", "--out", key.to_str().unwrap()], &[]);
    assert!(out.status.success());
    let parsed = jwk::parse_jwk(stdout(&out).as_bytes()).unwrap();
    let der =
        Command::new(openssl).args(["pkey", "-in"]).arg(&key).args(["-pubout", "-outform", "DER"]).output().unwrap();
    assert!(der.status.success(), "{}", String::from_utf8_lossy(&der.stderr));
    // SubjectPublicKeyInfo for Ed25519 ends with the 32-byte key.
    assert_eq!(&der.stdout[der.stdout.len() - 32..], &parsed.public);
}

#[test]
fn a_sealed_key_needs_its_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("sealed.pem");
    let k = key.to_str().unwrap();
    let pass = [("KESSAI_TEST_PASS", "a long passphrase")];
    let out = kessai(&["keys", "generate", "--out", k, "--passphrase-env", "KESSAI_TEST_PASS"], &pass);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = jwk::parse_jwk(stdout(&out).as_bytes()).unwrap();
    assert!(std::fs::read_to_string(&key).unwrap().contains("KESSAI ENCRYPTED PRIVATE KEY"));

    let refused = kessai(&["keys", "jwks", k], &[]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("sealed"), "{}", stderr(&refused));
    let wrong = kessai(&["keys", "jwks", k, "--passphrase-env", "P"], &[("P", "not it")]);
    assert!(stderr(&wrong).contains("wrong passphrase"), "{}", stderr(&wrong));
    let ok = kessai(&["keys", "jwks", k, "--passphrase-env", "KESSAI_TEST_PASS"], &pass);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let set = jwk::parse_jwks(stdout(&ok).as_bytes()).unwrap();
    assert_eq!(set.len(), 1);
    assert_eq!(set[0].kid, printed.kid);

    let empty = kessai(&["keys", "generate", "--out", "x.pem", "--passphrase-env", "E"], &[("E", "")]);
    assert!(stderr(&empty).contains("empty"));
}

#[test]
fn jwks_collects_keys_and_refuses_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.pem"), dir.path().join("b.pem"));
    let out_a = kessai(&["keys", "generate", "--out", a.to_str().unwrap()], &[]);
    let jwk_b = dir.path().join("b.jwk");
    let out_b = kessai(&["keys", "generate", "--out", b.to_str().unwrap()], &[]);
    std::fs::write(&jwk_b, stdout(&out_b)).unwrap();
    let set = kessai(&["keys", "jwks", a.to_str().unwrap(), jwk_b.to_str().unwrap()], &[]);
    assert!(set.status.success(), "{}", stderr(&set));
    let parsed = jwk::parse_jwks(stdout(&set).as_bytes()).unwrap();
    let kids: Vec<_> = parsed.iter().map(|k| k.kid.clone()).collect();
    assert!(kids.contains(&jwk::parse_jwk(stdout(&out_a).as_bytes()).unwrap().kid));
    assert!(kids.contains(&jwk::parse_jwk(stdout(&out_b).as_bytes()).unwrap().kid));

    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, "not a key").unwrap();
    let bad = kessai(&["keys", "jwks", garbage.to_str().unwrap()], &[]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("not a PEM key file"), "{}", stderr(&bad));
    let missing = kessai(&["keys", "jwks", "/nonexistent/key.pem"], &[]);
    assert!(!missing.status.success() && stderr(&missing).contains("/nonexistent/key.pem"));
}

/// #23 item 2: a service's plain key sealed under a passphrase, then used
/// by the store that owns it: with its passphrase only.
#[test]
fn a_plain_key_sealed_is_the_same_key_and_the_store_opens_it_with_its_passphrase_only() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, sealed) = (dir.path().join("mall.plain"), dir.path().join("mall.key"));
    let (p, s) = (plain.to_str().unwrap(), sealed.to_str().unwrap());
    assert!(kessai(&["keys", "generate", "--out", p], &[]).status.success());
    let no_pass = kessai(&["keys", "seal", "--in", p, "--out", s], &[]);
    assert!(!no_pass.status.success() && stderr(&no_pass).contains("--passphrase-env"), "{}", stderr(&no_pass));
    let out = kessai(&["keys", "seal", "--in", p, "--out", s, "--passphrase-env", "PW"], &[("PW", "kessai sealed")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::metadata(&sealed).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&sealed).unwrap();
    assert!(kessai_core::keyfile::is_sealed(&text));
    let pass = kessai_core::keyfile::Passphrase::new("kessai sealed".into());
    let original = kessai_core::keyfile::decode(&std::fs::read_to_string(&plain).unwrap(), None).unwrap();
    assert_eq!(kessai_core::keyfile::decode(&text, Some(&pass)).unwrap().kid(), original.kid());
    let twice = kessai(&["keys", "seal", "--in", s, "--out", p, "--passphrase-env", "PW"], &[("PW", "x")]);
    assert!(!twice.status.success(), "a sealed file is not sealed again, nor a key overwritten");

    // The store: its key sealed, the passphrase in a file of its own.
    let store_dir = dir.path().join("store");
    std::fs::create_dir_all(&store_dir).unwrap();
    std::fs::rename(&sealed, store_dir.join("mall.key")).unwrap();
    let mut config = kessai_store::StoreConfig::demo(kessai_store::demo::DemoSettings {
        data_dir: store_dir,
        ca_dir: dir.path().join("pki"),
        server_name: "localhost".into(),
        client_name: None,
        listen: "127.0.0.1:0".parse().unwrap(),
        public_url: "https://shop.kessai.test".into(),
        center_id: "center".into(),
        center_url: "https://127.0.0.1:1".into(),
        wallet_url: "http://127.0.0.1:2".into(),
    })
    .unwrap();
    let why = format!("{:#}", kessai_store::signing_key(&config).unwrap_err());
    assert!(why.contains("KESSAI_STORE_KEY_PASSPHRASE"), "{why}");
    let pass_file = dir.path().join("mall.pass");
    kessai_tls::write_new_file(&pass_file, b"not it\n", true).unwrap();
    config.signing_key_passphrase_file = Some(pass_file.clone());
    let why = format!("{:#}", kessai_store::signing_key(&config).unwrap_err());
    assert!(why.contains("wrong passphrase"), "{why}");
    std::fs::write(&pass_file, "kessai sealed\n").unwrap();
    assert_eq!(kessai_store::signing_key(&config).unwrap().kid(), original.kid());
}
