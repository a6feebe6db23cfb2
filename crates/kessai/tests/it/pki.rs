use std::os::unix::fs::PermissionsExt;

use crate::{kessai, stderr};

#[test]
fn init_and_issue_make_certificates_and_private_keys() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("pki");
    let d = ca.to_str().unwrap();
    let out = kessai(&["pki", "init", "--dir", d], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("beside the service keys it certifies"), "{}", stderr(&out));
    let out = kessai(&["pki", "issue", "--dir", d, "--server", "localhost", "--san", "127.0.0.1"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = kessai(&["pki", "issue", "--dir", d, "--client", "kessai-mall", "--party", "store"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // L3: the party is in the subject, as OpenSSL (an independent reader)
    // finds it.
    if let Some(openssl) = kessai_testkit::tool_on_path("openssl", "KESSAI_OPENSSL") {
        let leaf = ca.join("kessai-mall.crt");
        let out = std::process::Command::new(openssl)
            .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in"])
            .arg(&leaf)
            .output()
            .unwrap();
        let subject = String::from_utf8_lossy(&out.stdout);
        assert!(subject.contains("OU=kessai-store") && subject.contains("CN=kessai-mall"), "{subject}");
    }
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

/// #23 item 2: the CA key kept apart from the service keys it certifies;
/// the directory the services read holds no key that can issue.
#[test]
fn the_ca_key_kept_apart_issues_and_revokes_without_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, key) = (dir.path().join("pki"), dir.path().join("offline").join("ca.key"));
    let (d, k) = (ca.to_str().unwrap(), key.to_str().unwrap());
    let out = kessai(&["pki", "init", "--dir", d, "--ca-key", k], &[]);
    assert!(out.status.success() && !stderr(&out).contains("warning"), "{}", stderr(&out));
    assert!(!ca.join("ca.key").exists() && ca.join("ca.crt").exists());
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let out =
        kessai(&["pki", "issue", "--dir", d, "--client", "admin", "--party", "operator"], &[("KESSAI_CA_KEY", k)]);
    assert!(out.status.success() && !stderr(&out).contains("warning"), "{}", stderr(&out));
    // Without its key the CA issues nothing, and says where it looked.
    let out = kessai(&["pki", "issue", "--dir", d, "--client", "other", "--party", "store"], &[]);
    assert!(!out.status.success() && stderr(&out).contains("ca.key"), "{}", stderr(&out));
    assert!(!ca.join("other.crt").exists());
    // A CA key others may read is not used.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = kessai(&["pki", "revoke", "--dir", d, "--ca-key", k, "--name", "admin"], &[]);
    assert!(!out.status.success() && stderr(&out).contains("chmod 600"), "{}", stderr(&out));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = kessai(&["pki", "revoke", "--dir", d, "--ca-key", k, "--name", "admin"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The CA made apart does not make another over itself.
    let again = kessai(&["pki", "init", "--dir", d, "--ca-key", k], &[]);
    assert!(!again.status.success() && stderr(&again).contains("already exists"), "{}", stderr(&again));
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
    // L3: a client certificate names the party it acts as, or is not issued.
    let partyless = kessai(&["pki", "issue", "--dir", d, "--client", "b"], &[]);
    assert!(!partyless.status.success() && stderr(&partyless).contains("--party"), "{}", stderr(&partyless));
    let bogus = kessai(&["pki", "issue", "--dir", d, "--client", "b", "--party", "admin"], &[]);
    assert!(stderr(&bogus).contains("center, store, operator, monitor or bank"), "{}", stderr(&bogus));
    assert!(!std::path::Path::new(d).join("b.crt").exists());
}

/// L3: `kessai pki revoke` lists a client certificate in the CA's
/// revocation list; OpenSSL, an independent reader, finds the list signed
/// by the CA and the certificate revoked; a center started after that
/// refuses it in the handshake, and serves the name's new certificate.
#[test]
fn a_revoked_admin_certificate_is_refused_by_the_center_and_by_openssl() {
    use crate::harness::{CenterProcess, Deployment, free_port};
    let d = Deployment::new(41);
    let ca = d.ca_path();
    let ca_dir = ca.to_str().unwrap();
    let port = free_port();
    let base = format!("https://127.0.0.1:{port}");
    let config = d.center_config("center", port, None);
    let out = kessai(&["center", "init", "--config", config.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let admin = || kessai(&["admin", "--center", &base, "--ca-dir", ca_dir, "applications"], &[]);
    {
        let _center = CenterProcess::start(&config);
        d.wait_healthy(port);
        assert!(admin().status.success(), "{}", stderr(&admin()));
    }
    let cert = std::fs::read(ca.join("admin.crt")).unwrap();
    let key = std::fs::read(ca.join("admin.key")).unwrap();
    let out = kessai(&["pki", "revoke", "--dir", ca_dir, "--name", "admin", "--reason", "key-compromise"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let revoked = d.dir.path().join("revoked-admin.crt");
    std::fs::write(&revoked, &cert).unwrap();
    let openssl = |leaf: &std::path::Path| {
        let (crl, ca_cert) = (ca.join("ca.crl"), ca.join("ca.crt"));
        std::process::Command::new("openssl")
            .args(["verify", "-crl_check", "-CAfile"])
            .args([ca_cert.as_os_str(), "-CRLfile".as_ref(), crl.as_os_str(), leaf.as_os_str()])
            .output()
            .expect("openssl (the test command installs it)")
    };
    let verdict = openssl(&revoked);
    assert!(!verdict.status.success(), "OpenSSL finds it revoked");
    assert!(String::from_utf8_lossy(&verdict.stderr).contains("certificate revoked"), "{verdict:?}");

    // The revoked certificate presented anyway: refused, nothing answered.
    std::fs::write(ca.join("admin.crt"), &cert).unwrap();
    std::fs::write(ca.join("admin.key"), &key).unwrap();
    let _center = CenterProcess::start(&config);
    d.wait_healthy(port);
    let out = admin();
    // Refused in the handshake: the client reads the server's
    // `certificate_revoked` alert, or (TLS 1.3 lets a client send its
    // request before the server has checked its certificate) finds the
    // connection closed under it; either way nothing is answered.
    let why = stderr(&out).to_lowercase();
    let refused = why.contains("revoked") || why.contains("connection was not ready") || why.contains("closed");
    assert!(!out.status.success() && refused, "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "nothing answered: {}", String::from_utf8_lossy(&out.stdout));
    // The name issued again: a new key, accepted.
    std::fs::remove_file(ca.join("admin.crt")).unwrap();
    std::fs::remove_file(ca.join("admin.key")).unwrap();
    let out = kessai(&["pki", "issue", "--dir", ca_dir, "--client", "admin", "--party", "operator"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(openssl(&ca.join("admin.crt")).status.success(), "OpenSSL accepts the new one");
    let out = admin();
    assert!(out.status.success(), "{}", stderr(&out));
}
