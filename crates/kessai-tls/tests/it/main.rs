//! The local CA's certificates in real TLS handshakes over loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::thread;

use kessai_tls::{CaDir, Party, Role, TlsError, client_config, server_config};
use rustls::pki_types::ServerName;

struct Pki {
    _tmp: tempfile::TempDir,
    ca: CaDir,
    other: CaDir,
}

fn pki() -> Pki {
    let tmp = tempfile::tempdir().unwrap();
    let ca = CaDir::new(tmp.path().join("ca"));
    ca.init().unwrap();
    ca.issue(Role::Server, "center.kessai.test", &["127.0.0.1".into(), "localhost".into()]).unwrap();
    ca.issue(Role::Client(Party::Store), "kessai-mall", &[]).unwrap();
    let other = CaDir::new(tmp.path().join("other"));
    other.init().unwrap();
    other.issue(Role::Client(Party::Store), "kessai-mall", &[]).unwrap();
    Pki { _tmp: tmp, ca, other }
}

/// Serves one connection: reads "ping", answers "pong" and the client's
/// certificate count. Returns whether the handshake and exchange worked.
fn serve_once(listener: TcpListener, config: rustls::ServerConfig) -> thread::JoinHandle<Result<usize, String>> {
    thread::spawn(move || {
        let (tcp, _) = listener.accept().map_err(|e| e.to_string())?;
        let conn = rustls::ServerConnection::new(Arc::new(config)).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).map_err(|e| e.to_string())?;
        let peers = tls.conn.peer_certificates().map_or(0, <[_]>::len);
        tls.write_all(b"pong").map_err(|e| e.to_string())?;
        tls.flush().map_err(|e| e.to_string())?;
        Ok(peers)
    })
}

fn exchange(
    server: rustls::ServerConfig,
    client: rustls::ClientConfig,
    name: &str,
) -> (Result<usize, String>, Result<(), String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = serve_once(listener, server);
    let client_result = (|| {
        let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        let server_name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
        let conn = rustls::ClientConnection::new(Arc::new(client), server_name).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(b"ping").map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).map_err(|e| e.to_string())?;
        if &buf != b"pong" {
            return Err("wrong answer".into());
        }
        Ok(())
    })();
    (handle.join().unwrap(), client_result)
}

#[test]
fn mutual_tls_between_organisations_works_with_the_local_ca() {
    let p = pki();
    let server = server_config(&p.ca, "center.kessai.test", Some(&p.ca.ca_cert())).unwrap();
    let client = client_config(&p.ca.ca_cert(), Some((&p.ca, "kessai-mall"))).unwrap();
    let (served, answered) = exchange(server, client, "center.kessai.test");
    assert_eq!(served, Ok(1), "server saw exactly one client certificate");
    assert_eq!(answered, Ok(()));
}

#[test]
fn server_certificate_covers_its_extra_names() {
    let p = pki();
    for name in ["127.0.0.1", "localhost"] {
        let server = server_config(&p.ca, "center.kessai.test", None).unwrap();
        let client = client_config(&p.ca.ca_cert(), None).unwrap();
        let (served, answered) = exchange(server, client, name);
        assert_eq!(served, Ok(0));
        assert_eq!(answered, Ok(()), "connecting as {name}");
    }
}

#[test]
fn a_client_without_a_certificate_is_refused_under_mutual_tls() {
    let p = pki();
    let server = server_config(&p.ca, "center.kessai.test", Some(&p.ca.ca_cert())).unwrap();
    let client = client_config(&p.ca.ca_cert(), None).unwrap();
    let (served, _) = exchange(server, client, "center.kessai.test");
    assert!(served.unwrap_err().to_lowercase().contains("certificate"));
}

#[test]
fn a_client_certificate_from_another_ca_is_refused() {
    let p = pki();
    let server = server_config(&p.ca, "center.kessai.test", Some(&p.ca.ca_cert())).unwrap();
    let client = client_config(&p.ca.ca_cert(), Some((&p.other, "kessai-mall"))).unwrap();
    let (served, answered) = exchange(server, client, "center.kessai.test");
    assert!(served.is_err() && answered.is_err());
}

#[test]
fn a_client_refuses_a_server_of_another_ca_or_name() {
    let p = pki();
    let server = server_config(&p.ca, "center.kessai.test", None).unwrap();
    let client = client_config(&p.other.ca_cert(), None).unwrap();
    let (_, answered) = exchange(server, client, "center.kessai.test");
    assert!(answered.unwrap_err().contains("UnknownIssuer"));
    let server = server_config(&p.ca, "center.kessai.test", None).unwrap();
    let client = client_config(&p.ca.ca_cert(), None).unwrap();
    let (_, answered) = exchange(server, client, "store.kessai.test");
    let err = answered.unwrap_err();
    assert!(err.contains("NotValidForName") || err.contains("not valid for name"), "{err}");
}

#[test]
fn keys_are_private_and_never_overwritten() {
    let p = pki();
    for key in [p.ca.ca_key(), p.ca.key("kessai-mall"), p.ca.key("center.kessai.test")] {
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
    }
    let before = std::fs::read(p.ca.ca_key()).unwrap();
    assert!(matches!(p.ca.init(), Err(TlsError::Exists(_))));
    assert!(matches!(p.ca.issue(Role::Client(Party::Store), "kessai-mall", &[]), Err(TlsError::Exists(_))));
    assert_eq!(std::fs::read(p.ca.ca_key()).unwrap(), before);
}

#[test]
fn names_that_are_not_host_names_are_refused() {
    let p = pki();
    for bad in ["", "../etc/passwd", "a b", "-x", &"a".repeat(64)] {
        assert!(matches!(p.ca.issue(Role::Server, bad, &[]), Err(TlsError::BadName(_))), "{bad:?}");
    }
}

#[test]
fn a_revoked_client_certificate_is_refused_and_its_name_can_be_issued_again() {
    let p = pki();
    p.ca.issue(Role::Client(Party::Operator), "admin", &[]).unwrap();
    let handshake = |who: &str| {
        let auth = kessai_tls::ClientAuth::Optional(&p.ca.ca_cert());
        let server = kessai_tls::server_config_with(&p.ca, "center.kessai.test", auth).unwrap();
        let client = client_config(&p.ca.ca_cert(), Some((&p.ca, who))).unwrap();
        exchange(server, client, "center.kessai.test")
    };
    let mall = std::fs::read(p.ca.cert("kessai-mall")).unwrap();
    let mall_key = std::fs::read(p.ca.key("kessai-mall")).unwrap();
    assert_eq!(handshake("kessai-mall").0, Ok(1), "before revocation");
    let reason = kessai_tls::parse_reason("key-compromise").unwrap();
    let serial = p.ca.revoke("kessai-mall", reason).unwrap();
    assert_eq!(serial.len(), 40, "20 bytes");
    assert!(!p.ca.cert("kessai-mall").exists() && p.ca.crl().exists(), "moved aside, listed");
    // The revoked certificate, presented anyway: refused in the handshake
    // even where client certificates are optional.
    let aside = |ext: &str| p.ca.ca_cert().with_file_name(format!("revoked/kessai-mall-{serial}.{ext}"));
    assert_eq!(std::fs::read(aside("crt")).unwrap(), mall);
    std::fs::write(p.ca.cert("kessai-mall"), &mall).unwrap();
    std::fs::write(p.ca.key("kessai-mall"), &mall_key).unwrap();
    let (served, _) = handshake("kessai-mall");
    assert!(served.unwrap_err().to_lowercase().contains("revoked"), "the server names why");
    assert_eq!(handshake("admin").0, Ok(1), "others still connect");
    // Revoking again (a crash part-way, say) finishes the job and lists it once.
    assert_eq!(p.ca.revoke("kessai-mall", reason).unwrap(), serial);
    let list = std::fs::read_to_string(p.ca.ca_cert().with_file_name("revoked.txt")).unwrap();
    assert_eq!(list.lines().count(), 1, "{list}");
    // The name again: a new key, a new serial, accepted.
    p.ca.issue(Role::Client(Party::Store), "kessai-mall", &[]).unwrap();
    assert_eq!(handshake("kessai-mall").0, Ok(1), "the new certificate");
    // A damaged list: the server does not start, rather than trust all.
    std::fs::write(p.ca.crl(), b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n").unwrap();
    let auth = kessai_tls::ClientAuth::Optional(&p.ca.ca_cert());
    assert!(kessai_tls::server_config_with(&p.ca, "center.kessai.test", auth).is_err());
}

/// A secret file is read only while nobody but its owner may read or write
/// it (M9).
#[test]
fn a_secret_file_open_to_others_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("center.key");
    kessai_tls::write_new_file(&path, b"secret", true).unwrap();
    assert_eq!(&kessai_tls::read_secret_file(&path).unwrap()[..], b"secret");
    for open in [0o644, 0o660, 0o604, 0o620] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(open)).unwrap();
        let refused = kessai_tls::read_secret_file(&path).unwrap_err();
        assert!(matches!(refused, kessai_tls::TlsError::SecretExposed { .. }), "{open:o}: {refused}");
        assert!(refused.to_string().contains("chmod 600"), "{refused}");
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    assert!(kessai_tls::read_secret_file(&path).is_ok(), "read-only for its owner is fine");
    assert!(kessai_tls::read_secret_file(&dir.path().join("missing")).is_err());
}
