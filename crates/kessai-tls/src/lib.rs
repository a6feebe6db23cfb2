//! The local certificate authority every kessai deployment can make for
//! itself, and the rustls configurations built on it.
//!
//! Certificates use ECDSA P-256 (what every browser accepts); TLS uses
//! rustls with the ring provider only. Parties within one organisation use
//! TLS; parties of different organisations use mutual TLS, each presenting
//! a client certificate issued by the CA the other trusts.
//!
//! A client certificate names its holder (the subject's common name) and
//! the party it acts as ([`Party`], the subject's organizational unit): a
//! server grants a route to a party, so a store named `admin` is still a
//! store, never an operator (review L3).
//!
//! Files in a CA directory: `ca.crt`, `ca.key` (mode 0600), and for each
//! issued leaf `NAME.crt` and `NAME.key` (mode 0600). Keys are PKCS#8 PEM.
//! Revoking a leaf ([`CaDir::revoke`]) adds its serial to `revoked.txt`,
//! signs the revocation list `ca.crl` anew and moves the leaf's files into
//! `revoked/`; a server whose client CA is `ca.crt` loads `ca.crl` beside
//! it when it starts, and refuses the revoked certificate in the handshake.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a certificate was revoked (RFC 5280 §5.3.1), as [`CaDir::revoke`] takes it.
pub use rcgen::RevocationReason;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SanType,
    SerialNumber,
};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, pem::PemObject};
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
    #[error("{path}: {why}")]
    RevocationList { path: PathBuf, why: String },
    /// A file holding a secret that others may read or write, or that
    /// another user owns.
    #[error("{path} holds a secret but {why}; refusing to use it (chmod 600 it, as its owner)")]
    SecretExposed { path: PathBuf, why: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io { path: path.to_owned(), source }
}

/// Whom a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A TLS server; the name and extra SANs go into subjectAltName.
    Server,
    /// A TLS client in mutual TLS acting as this party; the name is its
    /// identity.
    Client(Party),
}

/// The party a client certificate acts as, in its subject's
/// organizationalUnitName as `kessai-<party>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Party {
    /// The settlement center: delivers completions to stores.
    Center,
    /// A store or a mall: refunds, claims, its settlements at the center.
    Store,
    /// An operator of the center: the admin API.
    Operator,
    /// A monitoring agent: `/metrics` only.
    Monitor,
    /// A bank (seed 002): the pool account's bank, which receives the
    /// credit service provider's token keys.
    Bank,
}

impl Party {
    pub const ALL: [Party; 5] = [Party::Center, Party::Store, Party::Operator, Party::Monitor, Party::Bank];

    /// The name (`store`).
    pub fn as_str(self) -> &'static str {
        match self {
            Party::Center => "center",
            Party::Store => "store",
            Party::Operator => "operator",
            Party::Monitor => "monitor",
            Party::Bank => "bank",
        }
    }

    /// The party of a name.
    pub fn parse(name: &str) -> Option<Party> {
        Party::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The subject's organizationalUnitName for this party.
    pub fn unit(self) -> String {
        format!("kessai-{}", self.as_str())
    }

    /// The party of an organizationalUnitName; `None` for any other unit.
    pub fn of_unit(unit: &str) -> Option<Party> {
        unit.strip_prefix("kessai-").and_then(Party::parse)
    }
}

/// Writes a file that did not exist before; `secret` files get mode 0600
/// from the moment they are created. Whole or not at all: written and
/// synced under a temporary name beside it, then linked to its name (which
/// fails if the name exists) and the directory synced, so a crash leaves
/// either no file or the whole file, never a part. Durable before it
/// returns.
pub fn write_new_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), TlsError> {
    static TEMPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // Unique to this write: the process, the moment and a counter (a
    // crash's leftover never stands in the way of a later write).
    let n = TEMPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let tmp = dir.join(format!(".{name}.{}.{nanos}.{n}.tmp", std::process::id()));
    let exists = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            TlsError::Exists(path.to_owned())
        } else {
            TlsError::Io { path: path.to_owned(), source: e }
        }
    };
    // Created new, written and synced; a file it created but could not
    // write whole is removed again.
    let create = |at: &Path| {
        let mut f =
            fs::OpenOptions::new().write(true).create_new(true).mode(if secret { 0o600 } else { 0o644 }).open(at)?;
        let written = f.write_all(contents).and_then(|()| f.sync_all());
        if written.is_err() {
            let _ = fs::remove_file(at);
        }
        written
    };
    if path.exists() {
        return Err(TlsError::Exists(path.to_owned()));
    }
    create(&tmp).map_err(io_err(&tmp))?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        // A filesystem without hard links (FAT, some network mounts):
        // written in place, as before, refusing an existing file.
        Err(e) if e.raw_os_error().is_some_and(libc_errno::no_hard_links) => {
            create(path).map_err(exists)?;
        }
        Err(e) => return Err(exists(e)),
    }
    // The name made durable; a filesystem that cannot sync a directory
    // (some FUSE mounts) has the file synced already.
    match fs::File::open(dir).and_then(|d| d.sync_all()) {
        Err(e) if !matches!(e.kind(), std::io::ErrorKind::InvalidInput | std::io::ErrorKind::Unsupported) => {
            Err(TlsError::Io { path: dir.to_owned(), source: e })
        }
        _ => Ok(()),
    }
}

/// The errno values of a filesystem that cannot hard-link.
mod libc_errno {
    /// EPERM, EXDEV, ENOSYS, EOPNOTSUPP on Linux.
    #[cfg(target_os = "linux")]
    pub fn no_hard_links(errno: i32) -> bool {
        matches!(errno, 1 | 18 | 38 | 95)
    }

    /// Elsewhere, only EPERM and EXDEV (the same numbers on BSDs and macOS).
    #[cfg(not(target_os = "linux"))]
    pub fn no_hard_links(errno: i32) -> bool {
        matches!(errno, 1 | 18)
    }
}

/// Reads a file holding a secret (a key, a key-encryption key, a sealed
/// key set), refusing one whose mode lets anyone but its owner read or
/// write it, or that another user owns (M9): a secret others could have
/// read, or replaced, is not used. The checks are made on the open file.
pub fn read_secret_file(path: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, TlsError> {
    use std::io::Read as _;
    use std::os::unix::fs::MetadataExt as _;
    let mut file = fs::File::open(path).map_err(io_err(path))?;
    let meta = file.metadata().map_err(io_err(path))?;
    let exposed = |why: String| TlsError::SecretExposed { path: path.to_owned(), why };
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(exposed(format!("its mode is {mode:04o}, open to its group or others")));
    }
    // This process's user: the owner of its own /proc entry (Linux).
    if let Ok(me) = fs::metadata("/proc/self").map(|m| m.uid())
        && meta.uid() != me
    {
        return Err(exposed(format!("it is owned by uid {}, not by this process's uid {me}", meta.uid())));
    }
    let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0)));
    file.read_to_end(&mut bytes).map_err(io_err(path))?;
    Ok(bytes)
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

/// Paths of a CA directory, and of the CA's key: `ca.key` in it unless
/// kept apart ([`CaDir::with_ca_key`]).
#[derive(Debug, Clone)]
pub struct CaDir(PathBuf, Option<PathBuf>);

impl CaDir {
    pub fn new(dir: impl Into<PathBuf>) -> CaDir {
        CaDir(dir.into(), None)
    }
    /// The CA key kept at `key`, apart from the directory of the service
    /// keys it certifies (removable or offline storage).
    pub fn with_ca_key(self, key: impl Into<PathBuf>) -> CaDir {
        CaDir(self.0, Some(key.into()))
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.0.join("ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.1.clone().unwrap_or_else(|| self.0.join("ca.key"))
    }
    /// Whether the CA key sits in the directory of the service keys it
    /// certifies, where anyone who can read them can issue certificates.
    pub fn ca_key_beside_service_keys(&self) -> bool {
        let key = self.ca_key();
        let dir = key.parent().map(Path::to_path_buf).unwrap_or_default();
        match (dir.canonicalize(), self.0.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => dir == self.0,
        }
    }
    pub fn cert(&self, name: &str) -> PathBuf {
        self.0.join(format!("{name}.crt"))
    }
    pub fn key(&self, name: &str) -> PathBuf {
        self.0.join(format!("{name}.key"))
    }
    /// Whether the CA was made: its certificate (its key may be offline).
    pub fn exists(&self) -> bool {
        self.ca_cert().exists()
    }
    /// The CA's certificate revocation list (PEM), beside `ca.crt`.
    pub fn crl(&self) -> PathBuf {
        self.0.join("ca.crl")
    }
    /// What `ca.crl` is made from: a line per revoked leaf, `serial (hex)
    /// unix-time reason name`.
    fn revoked_list(&self) -> PathBuf {
        self.0.join("revoked.txt")
    }

    /// Makes a new CA. Refuses if one is already there.
    pub fn init(&self) -> Result<(), TlsError> {
        fs::create_dir_all(&self.0).map_err(io_err(&self.0))?;
        for made in [self.ca_key(), self.ca_cert()] {
            if made.exists() {
                return Err(TlsError::Exists(made));
            }
        }
        let key = KeyPair::generate()?;
        let mut params = ca_params(&key)?;
        validity(&mut params, CA_VALIDITY_DAYS);
        let cert = params.self_signed(&key)?;
        if let Some(parent) = self.ca_key().parent() {
            use std::os::unix::fs::DirBuilderExt as _;
            fs::DirBuilder::new().recursive(true).mode(0o700).create(parent).map_err(io_err(parent))?;
        }
        write_new_file(&self.ca_key(), key.serialize_pem().as_bytes(), true)?;
        write_new_file(&self.ca_cert(), cert.pem().as_bytes(), false)
    }

    /// The CA as a signer, from its key file (refused when others may read
    /// or write it: [`read_secret_file`]).
    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, TlsError> {
        let path = self.ca_key();
        let pem = read_secret_file(&path)?;
        let text = std::str::from_utf8(&pem).map_err(|_| TlsError::Pem { path: path.clone(), what: "CA key" })?;
        let key = KeyPair::from_pem(text)?;
        Ok(Issuer::new(ca_params(&key)?, key))
    }

    /// Whether the leaf this CA issued for `name` acts as `party`. A leaf
    /// issued before parties were names none, and is answered `false`.
    /// For this CA's own leaves only: it looks for the party's unit among
    /// the certificate's bytes, which rcgen writes as they are.
    pub fn issued_for(&self, name: &str, party: Party) -> Result<bool, TlsError> {
        let path = self.cert(name);
        let der = CertificateDer::from_pem_file(&path)
            .map_err(|_| TlsError::Pem { path: path.clone(), what: "certificate" })?;
        let unit = party.unit();
        Ok(der.as_ref().windows(unit.len()).any(|w| w == unit.as_bytes()))
    }

    /// Issues a leaf certificate for `name` (a DNS name or IP address),
    /// with `extra_sans` for servers reachable under more names.
    pub fn issue(&self, role: Role, name: &str, extra_sans: &[String]) -> Result<(), TlsError> {
        check_name(name)?;
        for san in extra_sans {
            check_name(san)?;
        }
        let issuer = self.issuer()?;
        let mut names = vec![name.to_owned()];
        names.extend(extra_sans.iter().cloned());
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = names.iter().map(|n| san(n)).collect::<Result<_, _>>()?;
        params.distinguished_name.push(DnType::CommonName, name);
        if let Role::Client(party) = role {
            params.distinguished_name.push(DnType::OrganizationalUnitName, party.unit());
        }
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match role {
            Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Role::Client(_) => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        validity(&mut params, LEAF_VALIDITY_DAYS);
        let key = KeyPair::generate()?;
        params.serial_number = Some(SerialNumber::from_slice(&leaf_serial(&key)));
        let cert = params.signed_by(&key, &issuer)?;
        write_new_file(&self.key(name), key.serialize_pem().as_bytes(), true)?;
        write_new_file(&self.cert(name), cert.pem().as_bytes(), false)
    }
}

impl CaDir {
    /// Revokes the leaf certificate issued for `name`: its serial (found
    /// from its key, [`leaf_serial`]) goes into `revoked.txt`, `ca.crl` is
    /// signed anew with every serial there, and `NAME.crt` and `NAME.key`
    /// move to `revoked/NAME-SERIAL.*`, so the name can be issued again.
    /// Servers refuse it once they start with the new list. Done again
    /// after a crash part-way, it finishes the job. Answers the serial.
    pub fn revoke(&self, name: &str, reason: RevocationReason) -> Result<String, TlsError> {
        check_name(name)?;
        let key_pem = fs::read_to_string(self.key(name)).map_err(io_err(&self.key(name)))?;
        let serial = hex::encode(leaf_serial(&KeyPair::from_pem(&key_pem)?));
        let list_path = self.revoked_list();
        let mut list = match fs::read_to_string(&list_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(TlsError::Io { path: list_path, source: e }),
        };
        if !list.lines().any(|l| l.split(' ').next() == Some(serial.as_str())) {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            list.push_str(&format!("{serial} {now} {} {name}\n", reason_code(reason)));
            write_replacing(&list_path, list.as_bytes())?;
        }
        self.sign_crl(&list)?;
        let aside = self.0.join("revoked");
        fs::create_dir_all(&aside).map_err(io_err(&aside))?;
        for (from, ext) in [(self.cert(name), "crt"), (self.key(name), "key")] {
            if from.exists() {
                let to = aside.join(format!("{name}-{serial}.{ext}"));
                fs::rename(&from, &to).map_err(io_err(&from))?;
            }
        }
        fs::File::open(&self.0).and_then(|d| d.sync_all()).map_err(io_err(&self.0))?;
        Ok(serial)
    }

    /// Signs `ca.crl` over every serial in `list` (the text of `revoked.txt`).
    fn sign_crl(&self, list: &str) -> Result<(), TlsError> {
        let bad = |why: String| TlsError::RevocationList { path: self.revoked_list(), why };
        let mut revoked_certs = Vec::new();
        for line in list.lines() {
            let mut fields = line.splitn(4, ' ');
            let (Some(serial), Some(at), Some(reason)) = (fields.next(), fields.next(), fields.next()) else {
                return Err(bad(format!("malformed line {line:?}")));
            };
            let serial = hex::decode(serial).map_err(|_| bad(format!("bad serial in {line:?}")))?;
            let at = at.parse::<i64>().ok().and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok());
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: at.ok_or_else(|| bad(format!("bad time in {line:?}")))?,
                reason_code: Some(parse_reason(reason).ok_or_else(|| bad(format!("bad reason in {line:?}")))?),
                invalidity_date: None,
            });
        }
        let issuer = self.issuer()?;
        let now = time::OffsetDateTime::now_utc();
        let crl = CertificateRevocationListParams {
            this_update: now,
            next_update: now + time::Duration::days(CA_VALIDITY_DAYS),
            // Increases with every list signed (the clock's seconds).
            crl_number: SerialNumber::from(u64::try_from(now.unix_timestamp()).unwrap_or(0)),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)?;
        write_replacing(&self.crl(), crl.pem()?.as_bytes())
    }
}

/// The serial number of the leaf certificate of `key`: the first 20 bytes
/// of SHA-256 of its public key, the top bit cleared (a positive INTEGER
/// of at most 20 bytes, RFC 5280 §4.1.2.2). One key, one serial, so a
/// leaf is revoked with its key file alone.
pub fn leaf_serial(key: &KeyPair) -> Vec<u8> {
    let mut serial = Sha256::digest(rcgen::PublicKeyData::der_bytes(key))[..20].to_vec();
    serial[0] &= 0x7f;
    serial
}

/// The reasons `kessai pki revoke` takes, by name (RFC 5280 §5.3.1).
pub fn parse_reason(name: &str) -> Option<RevocationReason> {
    Some(match name {
        "unspecified" => RevocationReason::Unspecified,
        "key-compromise" => RevocationReason::KeyCompromise,
        "affiliation-changed" => RevocationReason::AffiliationChanged,
        "superseded" => RevocationReason::Superseded,
        "cessation-of-operation" => RevocationReason::CessationOfOperation,
        _ => return None,
    })
}

fn reason_code(reason: RevocationReason) -> &'static str {
    match reason {
        RevocationReason::KeyCompromise => "key-compromise",
        RevocationReason::AffiliationChanged => "affiliation-changed",
        RevocationReason::Superseded => "superseded",
        RevocationReason::CessationOfOperation => "cessation-of-operation",
        _ => "unspecified",
    }
}

/// Writes `path` whole or not at all: a new file beside it, synced,
/// renamed over it.
fn write_replacing(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    let fresh = path.with_extension("new");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&fresh)
        .map_err(io_err(&fresh))?;
    f.write_all(contents).map_err(io_err(&fresh))?;
    f.sync_all().map_err(io_err(&fresh))?;
    fs::rename(&fresh, path).map_err(io_err(path))
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
        let mut b = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider());
        // The CA's revocation list beside its certificate (`ca.crl` for
        // `ca.crt`), if it has one: a revoked client fails the handshake.
        let crl = ca.with_extension("crl");
        if crl.exists() {
            let crls = CertificateRevocationListDer::pem_file_iter(&crl)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|_| TlsError::Pem { path: crl.clone(), what: "revocation list" })?;
            b = b.with_crls(crls).only_check_end_entity_revocation();
        }
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
