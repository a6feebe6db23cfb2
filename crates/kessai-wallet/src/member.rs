//! The member keystore on disk (#12, seed 003/004 FIG. 10–11): the file
//! `member.kms` in the wallet's data directory, in the format of
//! [`kessai_core::member_store`]. Made once (never overwritten), mode
//! 0600; every later change is written atomically: a new file beside it,
//! synced, renamed over it, the directory synced. A write interrupted at
//! any point leaves the old file whole.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use kessai_core::keyfile::Passphrase;
use kessai_core::keys::PublicKey;
use kessai_core::member_store::{self, Cost, HistoryEntry, MAX_MEMBER_STORE_BYTES, MemberStoreError, Opened};
use kessai_core::random::Random;
use zeroize::Zeroizing;

/// The keystore's name in the wallet's data directory.
pub const FILE_NAME: &str = "member.kms";
/// Where the member number is kept once registered (it is no secret).
pub const NUMBER_FILE: &str = "member-number";

/// Why the keystore could not be made, read or changed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MemberError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} exists: a member keystore is never overwritten")]
    Exists { path: PathBuf },
    #[error("no member keystore at {path}: make one with `kessai wallet member init`")]
    Missing { path: PathBuf },
    #[error("a key replacement is under way ({path}): `kessai wallet member replace-key --resume` finishes it")]
    ReplacementUnderWay { path: PathBuf },
    #[error(transparent)]
    Store(#[from] MemberStoreError),
}

/// Where a write may be stopped, to test that the old file survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopAt {
    /// Run to the end.
    Never,
    /// After the new file is written and synced, before it replaces the old.
    BeforeRename,
}

/// The member keystore of a wallet whose data directory is `data_dir`.
#[derive(Debug, Clone)]
pub struct MemberFile {
    path: PathBuf,
}

impl MemberFile {
    pub fn in_dir(data_dir: &Path) -> MemberFile {
        MemberFile { path: data_dir.join(FILE_NAME) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    /// Makes the keystore: a key from `seed` (see
    /// [`member_store::seed_from`]) under `b` then `a`, or under `a` alone
    /// when `b` is `None`. Refused if one exists.
    pub fn create<R: Random + ?Sized>(
        &self,
        seed: &[u8; 32],
        a: &Passphrase,
        b: Option<&Passphrase>,
        cost: Cost,
        rng: &mut R,
    ) -> Result<PublicKey, MemberError> {
        if self.path.exists() {
            return Err(MemberError::Exists { path: self.path.clone() });
        }
        let (bytes, public) = member_store::create(seed, a, b, cost, rng)?;
        let io = |source| MemberError::Io { path: self.path.clone(), source };
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&self.path).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => MemberError::Exists { path: self.path.clone() },
            _ => io(e),
        })?;
        file.write_all(&bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        sync_dir(&self.path).map_err(io)?;
        Ok(public)
    }

    /// Opens the keystore with password A.
    pub fn open(&self, a: &Passphrase) -> Result<Opened, MemberError> {
        Ok(member_store::open(&self.read()?, a)?)
    }

    /// Adds a purchase to the history (password A).
    pub fn record<R: Random + ?Sized>(
        &self,
        a: &Passphrase,
        entry: HistoryEntry,
        rng: &mut R,
    ) -> Result<(), MemberError> {
        let mut opened = self.open(a)?;
        opened.history.push(entry);
        self.replace(&opened.seal_random(rng)?, StopAt::Never)
    }

    /// Adds a purchase to the history as the file now stands, with the key
    /// that password A gave `held` (the wallet's pages keep that, not the
    /// password, from the review to the completion).
    pub fn record_opened<R: Random + ?Sized>(
        &self,
        held: &Opened,
        entry: HistoryEntry,
        rng: &mut R,
    ) -> Result<(), MemberError> {
        let mut opened = held.reopen(&self.read()?)?;
        opened.history.push(entry);
        self.replace(&opened.seal_random(rng)?, StopAt::Never)
    }

    /// Changes password A, password B (given the old one), or both; the key
    /// and the history stay. Written atomically.
    pub fn change_passwords<R: Random + ?Sized>(
        &self,
        a: &Passphrase,
        new_a: Option<&Passphrase>,
        b: Option<(&Passphrase, &Passphrase)>,
        rng: &mut R,
    ) -> Result<(), MemberError> {
        self.no_replacement_under_way()?;
        let mut opened = self.open(a)?;
        if let Some((old_b, new_b)) = b {
            opened.change_password_b(old_b, new_b, rng)?;
        }
        if let Some(new_a) = new_a {
            opened.change_password_a(new_a, rng)?;
        }
        self.replace(&opened.seal_random(rng)?, StopAt::Never)
    }

    /// Writes `bytes` over the keystore atomically (see the module doc),
    /// stopping where `stop` says (tests).
    pub fn replace(&self, bytes: &[u8], stop: StopAt) -> Result<(), MemberError> {
        let io = |source| MemberError::Io { path: self.path.clone(), source };
        let fresh = self.path.with_extension("kms.new");
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&fresh).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        if stop == StopAt::BeforeRename {
            return Ok(());
        }
        std::fs::rename(&fresh, &self.path).map_err(io)?;
        sync_dir(&self.path).map_err(io)
    }

    fn read(&self) -> Result<Zeroizing<Vec<u8>>, MemberError> {
        let file = File::open(&self.path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => MemberError::Missing { path: self.path.clone() },
            _ => MemberError::Io { path: self.path.clone(), source: e },
        })?;
        let mut bytes = Zeroizing::new(Vec::new());
        let limit = u64::try_from(MAX_MEMBER_STORE_BYTES).unwrap_or(u64::MAX) + 1;
        file.take(limit)
            .read_to_end(&mut bytes)
            .map_err(|source| MemberError::Io { path: self.path.clone(), source })?;
        if bytes.len() > MAX_MEMBER_STORE_BYTES {
            return Err(MemberStoreError::TooLarge.into());
        }
        Ok(bytes)
    }
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Step ⑦ (#12), [0023]'s second method: the registration, signed with
/// the member's key (opened from the keystore with passwords A and B) and
/// carrying its verification key, encrypted to the center's member
/// encryption key and sent at once. Answers the center's reply (the member
/// as entered).
pub async fn register(
    config: &crate::WalletConfig,
    store: &MemberFile,
    (a, b): (&Passphrase, Option<&Passphrase>),
    member: &str,
    code: &str,
    details: kessai_core::messages::registration::MemberDetails,
) -> anyhow::Result<serde_json::Value> {
    let signed = sign_registration(store, (a, b), member, code, details, REGISTRATION_SENT_NOW_S)?;
    send_registration(config, &signed, &crate::wallet::random_token("w-reg-")).await
}

/// How long a registration sent at once is valid.
const REGISTRATION_SENT_NOW_S: u64 = 600;

/// [0023]'s first method, its first half: the registration signed (S6)
/// and kept under password A (in the keystore) until
/// [`send_kept_registration`] sends it. Nothing goes over the network. It
/// is valid for a day ([`kessai_core::limits::MAX_TOKEN_LIFETIME_S`]);
/// answers its expiry. Refused if one is kept already.
pub fn keep_registration(
    store: &MemberFile,
    (a, b): (&Passphrase, Option<&Passphrase>),
    member: &str,
    code: &str,
    details: kessai_core::messages::registration::MemberDetails,
) -> anyhow::Result<kessai_core::time::Timestamp> {
    use kessai_core::limits::MAX_TOKEN_LIFETIME_S;
    use kessai_core::member_store::PendingMessage;
    use kessai_core::random::OsRandom;
    use kessai_core::time::{Clock as _, SystemClock};
    let mut opened = store.open(a)?;
    anyhow::ensure!(
        opened.pending_registration.is_none(),
        "a registration is kept already: send it (`kessai wallet member send`) or discard it (`--discard`)"
    );
    let signed = sign_registration(store, (a, b), member, code, details, MAX_TOKEN_LIFETIME_S)?;
    opened.pending_registration = Some(PendingMessage {
        message: String::clone(&signed),
        idempotency_key: crate::wallet::random_token("w-reg-"),
    });
    store.replace(&opened.seal_random(&mut OsRandom)?, StopAt::Never)?;
    Ok(kessai_core::time::Timestamp::from_unix_s(SystemClock.now().unix_s() + MAX_TOKEN_LIFETIME_S))
}

/// [0023]'s first method, its second half (S7–S9): the kept registration
/// opened with password A, encrypted for this transmission and sent, with
/// the Idempotency-Key it was kept with (a lost answer is asked again, not
/// registered twice). Once the center enters the member it is removed from
/// the keystore; a refusal leaves it there, to send again or discard.
pub async fn send_kept_registration(
    config: &crate::WalletConfig,
    store: &MemberFile,
    a: &Passphrase,
) -> anyhow::Result<serde_json::Value> {
    use kessai_core::random::OsRandom;
    let Some(pending) = store.open(a)?.pending_registration else {
        anyhow::bail!("no registration is kept: `kessai wallet member register --later` keeps one");
    };
    let answer = send_registration(config, &pending.message, &pending.idempotency_key).await?;
    let mut opened = store.open(a)?;
    if opened.pending_registration.as_ref() == Some(&pending) {
        opened.pending_registration = None;
        store.replace(&opened.seal_random(&mut OsRandom)?, StopAt::Never)?;
    }
    Ok(answer)
}

/// Removes the kept registration without sending it (password A).
pub fn discard_kept_registration(store: &MemberFile, a: &Passphrase) -> anyhow::Result<bool> {
    use kessai_core::random::OsRandom;
    let mut opened = store.open(a)?;
    if opened.pending_registration.take().is_none() {
        return Ok(false);
    }
    store.replace(&opened.seal_random(&mut OsRandom)?, StopAt::Never)?;
    Ok(true)
}

/// The registration JWS (PROTOCOL §10.3), signed with the keystore's key,
/// valid for `lifetime_s`.
fn sign_registration(
    store: &MemberFile,
    (a, b): (&Passphrase, Option<&Passphrase>),
    member: &str,
    code: &str,
    details: kessai_core::messages::registration::MemberDetails,
    lifetime_s: u64,
) -> anyhow::Result<Zeroizing<String>> {
    use anyhow::Context as _;
    use kessai_core::ids::{MessageId, PartyId};
    use kessai_core::jwk::Ed25519Jwk;
    use kessai_core::jws::Claims;
    use kessai_core::messages::registration::{self, Registration, RegistrationDraft};
    use kessai_core::random::OsRandom;
    use kessai_core::time::{Clock as _, SystemClock};

    let key = store.open(a)?.signing_key(b)?;
    let member = PartyId::parse(member).context("the member number")?;
    let body = Registration::new(RegistrationDraft {
        member: member.clone(),
        activation_code: code.to_owned(),
        details,
        key: Ed25519Jwk::new(key.public().as_bytes(), None, None),
    })?;
    let claims = Claims::for_lifetime(member, MessageId::generate(&mut OsRandom), SystemClock.now(), lifetime_s)?;
    Ok(Zeroizing::new(registration::sign(&claims, &body, &key)?))
}

/// Sends a signed registration (S8–S9): encrypted to the center's member
/// encryption key, fetched now, under a key drawn for this message only.
/// On success the wallet keeps the member number next to the keystore.
async fn send_registration(
    config: &crate::WalletConfig,
    signed: &str,
    idempotency: &str,
) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context as _;
    use kessai_core::jwe::{self, EncryptionPublicKey, X25519Jwk};
    use kessai_core::messages::registration::{JWE_CTY, JWE_TYP};
    use kessai_core::random::OsRandom;

    let (http, base) = center_http(config)?;
    let (status, bytes) = http.get(&format!("{base}/v1/members/encryption-key")).await?;
    anyhow::ensure!(status.is_success(), "the center's encryption key: HTTP {status}");
    let jwk: X25519Jwk = serde_json::from_slice(&bytes).context("the center's encryption key")?;
    let to = EncryptionPublicKey::from_jwk(&jwk)?;
    let envelope = jwe::encrypt(signed.as_bytes(), &to, JWE_TYP, JWE_CTY, &mut OsRandom)?;
    let (status, bytes) = http
        .post_json(
            &format!("{base}/v1/members/registrations"),
            &kessai_api::request::SubmitRegistration { registration: envelope.to_string() },
            &[("idempotency-key", idempotency)],
        )
        .await?;
    let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    anyhow::ensure!(status.is_success(), "the center refused the registration ({status}): {}", answer["error"]);
    // The wallet pays as this member from now on (its pages ask passwords A and B).
    let number = config.data_dir.join(NUMBER_FILE);
    std::fs::write(&number, format!("{}\n", answer["member"].as_str().unwrap_or_default()))
        .with_context(|| format!("writing {}", number.display()))?;
    Ok(answer)
}

/// An HTTPS client for the center, trusting the wallet's CA file, and the
/// center's base URL.
fn center_http(config: &crate::WalletConfig) -> anyhow::Result<(kessai_http::HttpsClient, String)> {
    use anyhow::Context as _;
    let tls = kessai_tls::client_config(&config.ca_file, None)
        .with_context(|| format!("TLS trust from {}", config.ca_file.display()))?;
    let http = kessai_http::HttpsClient::new(tls, crate::limits::CENTER_TIMEOUT_MS);
    Ok((http, config.center.url.trim_end_matches('/').to_owned()))
}

/// The keystore of a key replacement under way, beside `member.kms`: the
/// new key under the same passwords, and the replacement the current key
/// signed for it. It becomes the keystore once the center has entered the
/// new key; until then the current key stays, so a wallet stopped at any
/// point keeps a key the center knows.
pub const NEXT_FILE_NAME: &str = "member-next.kms";

impl MemberFile {
    /// The keystore of a key replacement under way ([`NEXT_FILE_NAME`]).
    pub fn next(&self) -> MemberFile {
        MemberFile { path: self.path.with_file_name(NEXT_FILE_NAME) }
    }

    /// Refuses while a key replacement is under way (its new keystore is
    /// under the passwords as they were).
    fn no_replacement_under_way(&self) -> Result<(), MemberError> {
        let next = self.next();
        match next.exists() {
            true => Err(MemberError::ReplacementUnderWay { path: next.path }),
            false => Ok(()),
        }
    }
}

/// A member replaces its key (PROTOCOL §10.5): a new key from `seed`, in a
/// new keystore under the same passwords with the history; the replacement
/// signed with the current key (passwords A and B) and kept in it; then
/// sent ([`finish_key_replacement`]). Refused while one is under way.
pub async fn replace_key(
    config: &crate::WalletConfig,
    store: &MemberFile,
    (a, b): (&Passphrase, Option<&Passphrase>),
    member: &str,
    seed: &[u8; 32],
) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context as _;
    use kessai_core::ids::{MessageId, PartyId};
    use kessai_core::jws::Claims;
    use kessai_core::limits::MAX_TOKEN_LIFETIME_S;
    use kessai_core::member_store::PendingMessage;
    use kessai_core::messages::key_replacement::{self, KeyReplacement};
    use kessai_core::random::OsRandom;
    use kessai_core::time::{Clock as _, SystemClock};

    store.no_replacement_under_way()?;
    let member = PartyId::parse(member).context("the member number")?;
    let opened = store.open(a)?;
    let current = opened.signing_key(b)?;
    let next = store.next();
    next.create(seed, a, b, Cost::default(), &mut OsRandom)?;
    let mut fresh = next.open(a)?;
    let new_key = fresh.signing_key(b)?;
    let replacement = KeyReplacement::made(member.clone(), &current, &new_key)?;
    // A day to finish it in, should the wallet stop before the center answers.
    let claims =
        Claims::for_lifetime(member, MessageId::generate(&mut OsRandom), SystemClock.now(), MAX_TOKEN_LIFETIME_S)?
            .with_audience(config.center.party_id.clone());
    fresh.history.clone_from(&opened.history);
    fresh.pending_key_replacement = Some(PendingMessage {
        message: key_replacement::sign(&claims, &replacement, &current)?,
        idempotency_key: crate::wallet::random_token("w-rekey-"),
    });
    next.replace(&fresh.seal_random(&mut OsRandom)?, StopAt::Never)?;
    finish_key_replacement(config, store, a).await
}

/// Sends the key replacement under way (password A) with its
/// Idempotency-Key. Entered: the new keystore, with the history as it now
/// stands, replaces the old one. Refused by the center: the current key
/// stays, the new keystore set aside (`member-next.kms.refused-…`). Not
/// answered: both stay, to finish later.
pub async fn finish_key_replacement(
    config: &crate::WalletConfig,
    store: &MemberFile,
    a: &Passphrase,
) -> anyhow::Result<serde_json::Value> {
    use kessai_core::random::OsRandom;

    let next = store.next();
    if !next.exists() {
        anyhow::bail!("no key replacement is under way");
    }
    let mut fresh = next.open(a)?;
    let Some(pending) = fresh.pending_key_replacement.take() else {
        anyhow::bail!("{} holds no key replacement: remove it by hand", next.path.display());
    };
    let (http, base) = center_http(config)?;
    let (status, bytes) = http
        .post_json(
            &format!("{base}/v1/members/key-replacements"),
            &kessai_api::request::SubmitKeyReplacement { replacement: pending.message.clone() },
            &[("idempotency-key", pending.idempotency_key.as_str())],
        )
        .await?;
    let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    // A refusal (not a conflict or a rate limit, which pass): the current
    // key stays. The new keystore is set aside, not deleted: a refusal of
    // a replacement the center entered long ago (its stored answer gone)
    // must not lose the key the center now holds.
    if matches!(status.as_u16(), 400 | 403 | 404 | 422) {
        use kessai_core::time::{Clock as _, SystemClock};
        let aside = next.path.with_extension(format!("kms.refused-{}", SystemClock.now().unix_s()));
        std::fs::rename(&next.path, &aside).map_err(|source| MemberError::Io { path: next.path.clone(), source })?;
        sync_dir(&next.path).map_err(|source| MemberError::Io { path: next.path.clone(), source })?;
        anyhow::bail!(
            "the center refused the key replacement ({status}): {}; the current key stays (the new one is set aside as {})",
            answer["error"],
            aside.display()
        );
    }
    anyhow::ensure!(
        status.is_success(),
        "the key replacement is not finished ({status}): `kessai wallet member replace-key --resume` tries again"
    );
    fresh.history = store.open(a)?.history;
    store.replace(&fresh.seal_random(&mut OsRandom)?, StopAt::Never)?;
    std::fs::remove_file(&next.path).map_err(|source| MemberError::Io { path: next.path.clone(), source })?;
    sync_dir(&store.path).map_err(|source| MemberError::Io { path: store.path.clone(), source })?;
    Ok(answer)
}

/// What password A shows of the keystore (FIG. 11(a)): no secret of the
/// signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// The member number, once registered.
    pub member: Option<String>,
    pub kid: String,
    /// "passwords A and B", or "password A only" ([0028]).
    pub key_under: &'static str,
    pub registration_kept: bool,
    pub replacement_under_way: bool,
    pub history: Vec<HistoryEntry>,
}

/// The keystore of the wallet whose data directory is `data_dir`, opened
/// with password A alone (offline, S11–S12).
pub fn view(data_dir: &Path, a: &Passphrase) -> Result<MemberView, MemberError> {
    let store = MemberFile::in_dir(data_dir);
    let opened = store.open(a)?;
    Ok(MemberView {
        member: member_number(data_dir),
        kid: opened.public().kid().as_str().to_owned(),
        key_under: key_under(opened.variant()),
        registration_kept: opened.pending_registration.is_some(),
        replacement_under_way: store.next().exists(),
        history: opened.history,
    })
}

/// A completed payment as the member's history keeps it (FIG. 10): when,
/// where (a store member by its member number), what and which settlement.
pub fn history_entry(record: &crate::Record, at: kessai_core::time::Timestamp) -> HistoryEntry {
    HistoryEntry {
        at,
        store: record.member.clone().unwrap_or_else(|| record.store.clone()),
        order_id: record.order_id.clone(),
        amount: record.amount,
        settlement_id: record.settlement_id.as_ref().map(|s| s.to_string()).unwrap_or_default(),
    }
}

/// The member number the wallet whose data directory is `data_dir`
/// registered ([`NUMBER_FILE`]), if it did.
pub fn member_number(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.join(NUMBER_FILE)).ok()?;
    kessai_core::ids::PartyId::parse(text.trim()).ok().map(|p| p.as_str().to_owned())
}

/// Which passwords guard the signing key, in words.
pub fn key_under(variant: member_store::Variant) -> &'static str {
    match variant {
        member_store::Variant::TwoPasswords => "passwords A and B",
        _ => "password A only",
    }
}
