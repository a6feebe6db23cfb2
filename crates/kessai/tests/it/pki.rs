use std::os::unix::fs::PermissionsExt;

use crate::{kessai, stderr};

#[test]
fn init_and_issue_make_certificates_and_private_keys() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("pki");
    let d = ca.to_str().unwrap();
    let out = kessai(&["pki", "init", "--dir", d], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = kessai(&["pki", "issue", "--dir", d, "--server", "localhost", "--san", "127.0.0.1"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = kessai(&["pki", "issue", "--dir", d, "--client", "kessai-mall"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    for f in ["ca.key", "localhost.key", "kessai-mall.key"] {
        assert_eq!(std::fs::metadata(ca.join(f)).unwrap().permissions().mode() & 0o777, 0o600, "{f}");
    }
    for f in ["ca.crt", "localhost.crt", "kessai-mall.crt"] {
        assert!(std::fs::read_to_string(ca.join(f)).unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
    }
    // The certificates work in a real handshake (kessai-tls tests that in
    // depth); here, that the CLI's files load into rustls configurations.
    let dir_ca = kessai_tls::CaDir::new(&ca);
    kessai_tls::server_config(&dir_ca, "localhost", Some(&dir_ca.ca_cert())).unwrap();
    kessai_tls::client_config(&dir_ca.ca_cert(), Some((&dir_ca, "kessai-mall"))).unwrap();
}

#[test]
fn bad_requests_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("pki");
    let d = d.to_str().unwrap();
    let no_ca = kessai(&["pki", "issue", "--dir", d, "--server", "localhost"], &[]);
    assert!(!no_ca.status.success());
    assert!(stderr(&no_ca).contains("ca.key"), "{}", stderr(&no_ca));
    assert!(kessai(&["pki", "init", "--dir", d], &[]).status.success());
    let twice = kessai(&["pki", "init", "--dir", d], &[]);
    assert!(stderr(&twice).contains("already exists"));
    let bad = kessai(&["pki", "issue", "--dir", d, "--server", "../../etc"], &[]);
    assert!(stderr(&bad).contains("not a valid DNS name"), "{}", stderr(&bad));
    let both = kessai(&["pki", "issue", "--dir", d, "--server", "a", "--client", "b"], &[]);
    assert!(!both.status.success());
}
