//! The local certificate authority every kessai deployment can make for
//! itself, and the rustls configurations built on it.
//!
//! Certificates use ECDSA P-256 (what every browser accepts); TLS uses
//! rustls with the ring provider only. Parties within one organisation use
//! TLS; parties of different organisations use mutual TLS, each presenting
//! a client certificate issued by the CA the other trusts.
//!
//! Files in a CA directory: `ca.crt`, `ca.key` (mode 0600), and for each
//! issued leaf `NAME.crt` and `NAME.key` (mode 0600). Keys are PKCS#8 PEM.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use sha2::{Digest, Sha256};

/// How long a CA is valid.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// How long a leaf certificate is valid.
pub const LEAF_VALIDITY_DAYS: i64 = 397;
/// Longest name a leaf may be issued for.
pub const MAX_NAME_BYTES: usize = 63;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0} already exists; refusing to overwrite a key")]
    Exists(PathBuf),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: not a PEM {what}")]
    Pem { path: PathBuf, what: &'static str },
    #[error("name {0:?} is not a valid DNS name or IP address for a certificate")]
    BadName(String),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io { path: path.to_owned(), source }
}

/// Whom a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A TLS server; the name and extra SANs go into subjectAltName.
    Server,
    /// A TLS client in mutual TLS; the name is its identity.
    Client,
}

/// Writes a file that did not exist before; `secret` files get mode 0600
/// from the moment they are created. Durable before it returns.
pub fn write_new_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), TlsError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                TlsError::Exists(path.to_owned())
            } else {
                TlsError::Io { path: path.to_owned(), source: e }
            }
        })?;
    f.write_all(contents).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    // Back-dated an hour so that a peer whose clock is slightly behind
    // still accepts a certificate made a moment ago.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

/// The CA's parameters. Its name carries a short fingerprint of its key,
/// so two local CAs never share a subject name.
fn ca_params(key: &KeyPair) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let fp = hex::encode(&Sha256::digest(rcgen::PublicKeyData::der_bytes(key))[..4]);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "kessai");
    dn.push(DnType::CommonName, format!("kessai local CA {fp}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

/// Paths of a CA directory.
#[derive(Debug, Clone)]
pub struct CaDir(PathBuf);

impl CaDir {
    pub fn new(dir: impl Into<PathBuf>) -> CaDir {
        CaDir(dir.into())
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.0.join("ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.0.join("ca.key")
    }
    pub fn cert(&self, name: &str) -> PathBuf {
        self.0.join(format!("{name}.crt"))
    }
    pub fn key(&self, name: &str) -> PathBuf {
        self.0.join(format!("{name}.key"))
    }
    pub fn exists(&self) -> bool {
        self.ca_cert().exists() && self.ca_key().exists()
    }

    /// Makes a new CA. Refuses if one is already there.
    pub fn init(&self) -> Result<(), TlsError> {
        fs::create_dir_all(&self.0).map_err(io_err(&self.0))?;
        if self.ca_key().exists() {
            return Err(TlsError::Exists(self.ca_key()));
        }
        let key = KeyPair::generate()?;
        let mut params = ca_params(&key)?;
        validity(&mut params, CA_VALIDITY_DAYS);
        let cert = params.self_signed(&key)?;
        write_new_file(&self.ca_key(), key.serialize_pem().as_bytes(), true)?;
        write_new_file(&self.ca_cert(), cert.pem().as_bytes(), false)
    }

    /// Issues a leaf certificate for `name` (a DNS name or IP address),
    /// with `extra_sans` for servers reachable under more names.
    pub fn issue(&self, role: Role, name: &str, extra_sans: &[String]) -> Result<(), TlsError> {
        check_name(name)?;
        for san in extra_sans {
            check_name(san)?;
        }
        let ca_key_pem = fs::read_to_string(self.ca_key()).map_err(io_err(&self.ca_key()))?;
        let ca_key = KeyPair::from_pem(&ca_key_pem)?;
        let issuer = Issuer::new(ca_params(&ca_key)?, ca_key);
        let mut names = vec![name.to_owned()];
        names.extend(extra_sans.iter().cloned());
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = names.iter().map(|n| san(n)).collect::<Result<_, _>>()?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match role {
            Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Role::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        validity(&mut params, LEAF_VALIDITY_DAYS);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        write_new_file(&self.key(name), key.serialize_pem().as_bytes(), true)?;
        write_new_file(&self.cert(name), cert.pem().as_bytes(), false)
    }
}

fn check_name(name: &str) -> Result<(), TlsError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':'))
        && !name.starts_with(['-', '.']);
    if !ok {
        return Err(TlsError::BadName(name.chars().take(80).collect()));
    }
    Ok(())
}

fn san(name: &str) -> Result<SanType, TlsError> {
    if let Ok(ip) = name.parse::<std::net::IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let dns = name.to_owned().try_into().map_err(|_| TlsError::BadName(name.to_owned()))?;
    Ok(SanType::DnsName(dns))
}

/// The ring provider, the only one kessai links.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|_| TlsError::Pem { path: path.to_owned(), what: "certificate" })?
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::Pem { path: path.to_owned(), what: "certificate" })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { path: path.to_owned(), what: "certificate" });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|_| TlsError::Pem { path: path.to_owned(), what: "private key" })
}

fn roots(ca_cert: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in read_certs(ca_cert)? {
        store.add(cert)?;
    }
    Ok(Arc::new(store))
}

/// Whether a server asks its clients for certificates.
#[derive(Debug, Clone, Copy)]
pub enum ClientAuth<'a> {
    /// No client certificates (browsers, wallets).
    None,
    /// Every client must present a certificate from this CA (mutual TLS).
    Required(&'a Path),
    /// Clients may present one from this CA (stores, admins); browsers
    /// without one still connect. Handlers that need an identity check it.
    Optional(&'a Path),
}

/// A server presenting `name`'s certificate.
pub fn server_config_with(dir: &CaDir, name: &str, auth: ClientAuth<'_>) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let verifier = |ca: &Path, optional: bool| {
        let b = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider());
        let b = if optional { b.allow_unauthenticated() } else { b };
        b.build().map_err(|e| TlsError::Verifier(e.to_string()))
    };
    let builder = match auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Required(ca) => builder.with_client_cert_verifier(verifier(ca, false)?),
        ClientAuth::Optional(ca) => builder.with_client_cert_verifier(verifier(ca, true)?),
    };
    Ok(builder.with_single_cert(read_certs(&dir.cert(name))?, read_key(&dir.key(name))?)?)
}

/// A server presenting `name`'s certificate; with `client_ca`, it demands a
/// client certificate issued by that CA (mutual TLS).
pub fn server_config(dir: &CaDir, name: &str, client_ca: Option<&Path>) -> Result<ServerConfig, TlsError> {
    let auth = client_ca.map_or(ClientAuth::None, ClientAuth::Required);
    server_config_with(dir, name, auth)
}

/// A client trusting `server_ca`; with `identity`, it presents that
/// client certificate (mutual TLS).
pub fn client_config(server_ca: &Path, identity: Option<(&CaDir, &str)>) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(server_ca)?);
    Ok(match identity {
        Some((dir, name)) => builder.with_client_auth_cert(read_certs(&dir.cert(name))?, read_key(&dir.key(name))?)?,
        None => builder.with_no_client_auth(),
    })
}
