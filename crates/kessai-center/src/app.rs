//! The running center: opens its keys and databases, serves the API over
//! TLS (client certificates optional: stores and admins present one,
//! wallets do not), and delivers completions to stores in the background.

use std::collections::BTreeMap;
use std::future::Future;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use kessai_core::keyfile;
use kessai_core::keys::{JwsSigner, SigningKey};
use kessai_core::random::OsRandom;
use kessai_core::time::SystemClock;
use kessai_http::{HttpMetrics, HttpsClient, apply_standard_layers, ops_routes};
use zeroize::Zeroizing;

use crate::authorizer::Simulator;
use crate::books::Books;
use crate::config::CenterConfig;
use crate::db::{CenterDb, RecordedKey};
use crate::key_set::KeyFingerprints;
use crate::keystore::{self, Kek};
use crate::limits::{IDEMPOTENCY_RETENTION_S, PURGE_BATCH_MAX};
use crate::security::{InMemoryKeys, IssuerKeys, SecurityServer};
use crate::service::Center;
use crate::{admin, api, delivery, update_api};

/// Timeout of one delivery attempt to a store.
const DELIVERY_TIMEOUT_MS: u64 = 10_000;
/// How often (and how long at most) `/readyz`'s database check runs.
const READY_CHECK_MS: u64 = 2_000;

/// The key files of a center, as `init --keys-from` copies them (file
/// name there, description, path here). With `[hsm]` the issuer master keys
/// are the token's, and no file of them is needed.
fn key_files(config: &CenterConfig) -> Vec<(&'static str, &'static str, std::path::PathBuf)> {
    let mut files = Vec::new();
    if let Some(kek) = &config.kek_file {
        files.push(("kek.hex", "KEK", config.resolve(kek)));
    }
    if config.hsm.is_none() {
        files.push(("issuer-master-keys.sealed", "issuer master keys", config.resolve(&config.master_keys)));
    }
    if !config.signs_in_token() {
        files.push(("center.key", "signing key", config.resolve(&config.signing_key)));
    }
    files
}

/// What to tell an operator whose instance lacks or holds other keys than
/// its database.
const PROVISION_HELP: &str = "give this instance the keys of the center it joins: `kessai center init --config      FILE --keys-from DIR`, DIR holding issuer-master-keys.sealed and center.key of an instance of it, and its KEK      as kek.hex unless this instance's kek_file or KESSAI_CENTER_KEK already holds it; see README, \"Several instances\"";

/// Prepares a center's keys for its database and keeps anything already
/// there. A database with no key set yet (a new center): the data
/// directory, a KEK file (unless `KESSAI_CENTER_KEK` is set), issuer master
/// keys for key version 1 sealed under it and the signing key are created
/// if missing, and their fingerprints recorded in the database
/// (`crate::key_set`). A database that has a key set: nothing is
/// generated; the instance must hold exactly those keys (copied with
/// `keys_from`, a directory of another instance's key files), or `init`
/// refuses with what to do.
pub async fn init(config: &CenterConfig, keys_from: Option<&Path>) -> anyhow::Result<()> {
    init_keys(config, keys_from).await.map(|_| ())
}

/// [`init`], answering the keys it checked (so that a center started
/// right after asks for a passphrase or PIN once).
async fn init_keys(config: &CenterConfig, keys_from: Option<&Path>) -> anyhow::Result<LocalKeys> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    if let Some(from) = keys_from {
        copy_key_files(config, from)?;
    }
    let db = CenterDb::open(&config.database_url()).await.context("opening the center database")?;
    let checked = async {
        if let Some(recorded) = db.key_set().await? {
            let kek_given = std::env::var("KESSAI_CENTER_KEK").is_ok();
            let missing: Vec<&str> = key_files(config)
                .into_iter()
                .filter(|(_, name, path)| !(path.exists() || (*name == "KEK" && kek_given)))
                .map(|(_, name, _)| name)
                .collect();
            if !missing.is_empty() {
                bail!(
                    "the database {} belongs to a center whose keys were created elsewhere ({recorded}), and \
                     this instance lacks {}: keys are not generated for it; {PROVISION_HELP}",
                    redacted(&config.database_url()),
                    missing.join(", ")
                );
            }
        } else {
            generate_missing_keys(config)?;
        }
        let local = local_keys(config)?;
        check_key_set(config, &db, &local).await?;
        Ok(local)
    }
    .await;
    db.close().await;
    checked
}

/// The database URL without a password, for messages.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn refuse_other_keys(
    config: &CenterConfig,
    recorded: &KeyFingerprints,
    keys: &KeyFingerprints,
    published: &[String],
) -> anyhow::Result<()> {
    let differing = recorded.differing_in_rotation(keys, published);
    if !differing.is_empty() {
        bail!(
            "this instance holds other keys than its database {}: {} differ (the database's: {recorded}; this \
             instance's: {keys}). It would seal card sessions no other instance could open, and sign what stores \
             do not trust; {PROVISION_HELP}",
            redacted(&config.database_url()),
            differing.join(", ")
        );
    }
    Ok(())
}

fn generate_missing_keys(config: &CenterConfig) -> anyhow::Result<()> {
    if std::env::var("KESSAI_CENTER_KEK").is_err() {
        let kek_path = config.resolve(config.kek_file.as_deref().ok_or_else(|| no_kek(config))?);
        if !kek_path.exists() {
            if let Some(parent) = kek_path.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            let kek = Kek::generate(&mut OsRandom);
            kessai_tls::write_new_file(&kek_path, kek.to_hex().as_bytes(), true)?;
        }
    }
    let kek = read_kek(config)?;
    let masters_path = config.resolve(&config.master_keys);
    // With [hsm] the master keys are the token's: `kessai center hsm`.
    if config.hsm.is_none() && !masters_path.exists() {
        let keys = BTreeMap::from([(1u8, keystore::generate_master_keys(&mut OsRandom))]);
        kessai_tls::write_new_file(&masters_path, &keystore::seal(&keys, &kek, &mut OsRandom), true)?;
    }
    let key_path = config.resolve(&config.signing_key);
    // With [hsm] signing_key_label the center's key is the token's.
    if !config.signs_in_token() && !key_path.exists() {
        let key = SigningKey::generate(&mut OsRandom);
        // Sealed when a passphrase is given (never asked for here).
        let pem = match signing_key_passphrase(config).read_given()? {
            Some(passphrase) => keyfile::encode_sealed(&key, &passphrase, &mut OsRandom),
            None => keyfile::encode_plain(&key),
        };
        kessai_tls::write_new_file(&key_path, pem.as_bytes(), true)?;
    }
    Ok(())
}

/// Where the signing key's passphrase comes from.
fn signing_key_passphrase(config: &CenterConfig) -> kessai_http::keys::PassphraseFrom<'_> {
    kessai_http::keys::PassphraseFrom {
        env_var: "KESSAI_CENTER_KEY_PASSPHRASE",
        file: config.signing_key_passphrase_file.as_deref(),
    }
}

/// Why there is no KEK, and what to do.
fn no_kek(config: &CenterConfig) -> anyhow::Error {
    let old = config.data_dir.join("kek.hex");
    let moved = if old.exists() {
        format!(
            " ({} is where earlier versions kept it: move it out of the data directory and name it in kek_file)",
            old.display()
        )
    } else {
        String::new()
    };
    anyhow::anyhow!(
        "no KEK: set kek_file to a file outside the data directory (mode 0600; `init` creates it), or give the \
         KEK in KESSAI_CENTER_KEK{moved}"
    )
}

/// Copies another instance's key files from `from` (file names as this
/// config's defaults: kek.hex, issuer-master-keys.sealed, center.key) into
/// this instance's paths, mode 0600. A file this instance has already must
/// be the same; kek.hex may be absent when `KESSAI_CENTER_KEK` is set.
fn copy_key_files(config: &CenterConfig, from: &Path) -> anyhow::Result<()> {
    for (name, what, to) in key_files(config) {
        let source = from.join(name);
        // The KEK may reach this instance its own way (the environment, or
        // its kek_file provisioned apart from the data directory).
        if what == "KEK" && !source.exists() && (std::env::var("KESSAI_CENTER_KEK").is_ok() || to.exists()) {
            continue;
        }
        let bytes = Zeroizing::new(std::fs::read(&source).with_context(|| format!("reading {}", source.display()))?);
        if to.exists() {
            let have = Zeroizing::new(std::fs::read(&to).with_context(|| format!("reading {}", to.display()))?);
            if *have != *bytes {
                bail!(
                    "{} exists and differs from {}: remove it first if it is not needed",
                    to.display(),
                    source.display()
                );
            }
            continue;
        }
        kessai_tls::write_new_file(&to, &bytes, true).with_context(|| format!("writing {}", to.display()))?;
    }
    Ok(())
}

/// The keys this instance holds.
struct LocalKeys {
    kek: Kek,
    issuer: Box<dyn IssuerKeys>,
    /// The master keys' fingerprint as databases recorded it before check
    /// values (keys in memory only).
    legacy_master_keys: Option<String>,
    signing_key: Arc<dyn JwsSigner>,
    fingerprints: KeyFingerprints,
    /// `published_keys`: the next and previous keys of a rotation.
    published: Vec<kessai_core::jwk::ParsedJwk>,
}

fn local_keys(config: &CenterConfig) -> anyhow::Result<LocalKeys> {
    let kek = read_kek(config)?;
    let (issuer, legacy_master_keys): (Box<dyn IssuerKeys>, _) = match &config.hsm {
        Some(hsm) => {
            let pin = hsm.pin()?;
            (Box::new(crate::hsm::Pkcs11Keys::open(hsm, &pin)?), None)
        }
        None => {
            let masters = master_keys(config)?;
            if masters.is_empty() {
                bail!("the master key file holds no key version");
            }
            let legacy = keystore::legacy_master_keys_fingerprint(&masters);
            (Box::new(InMemoryKeys::new(masters)), Some(legacy))
        }
    };
    let signing_key: Arc<dyn JwsSigner> = match config.hsm.as_ref().filter(|_| config.signs_in_token()) {
        Some(hsm) => Arc::new(crate::hsm::Pkcs11Signer::open(hsm, &hsm.pin()?)?),
        None => {
            let key_path = config.resolve(&config.signing_key);
            Arc::new(kessai_http::keys::load_signing_key(&key_path, signing_key_passphrase(config))?)
        }
    };
    let fingerprints = KeyFingerprints::of(&kek, issuer.as_ref(), &signing_key.public())?;
    let published = published_keys(config)?;
    Ok(LocalKeys { kek, issuer, legacy_master_keys, signing_key, fingerprints, published })
}

/// Records this instance's key set in a database that has none, and
/// refuses other keys than the recorded ones. A master-key fingerprint
/// recorded the old way is replaced once by the check-value one, when this
/// instance's keys (in memory) are the ones it was made of.
async fn check_key_set(config: &CenterConfig, db: &CenterDb, local: &LocalKeys) -> anyhow::Result<()> {
    let keys = &local.fingerprints;
    let mut recorded = db.record_key_set(keys, kessai_core::time::Clock::now(&SystemClock)).await?;
    let legacy = local.legacy_master_keys.as_deref() == Some(recorded.master_keys.as_str());
    let added = recorded.master_keys != keys.master_keys && keys.master_keys_extend(&recorded);
    if legacy || added {
        // Made of check values now, or with the versions this instance
        // added; one instance does it, the others find it done.
        db.replace_key_fingerprint(RecordedKey::MasterKeys, &recorded.master_keys, &keys.master_keys).await?;
        tracing::info!(master_keys = %keys.master_keys, "the database records the issuer master keys anew");
        recorded = db.key_set().await?.context("the key set recorded is gone")?;
    }
    let published: Vec<String> =
        local.published.iter().map(|k| crate::key_set::signing_key_fingerprint(&k.public)).collect();
    refuse_other_keys(config, &recorded, keys, &published)
}

/// The public keys `published_keys` names, each a JWK file.
pub fn published_keys(config: &CenterConfig) -> anyhow::Result<Vec<kessai_core::jwk::ParsedJwk>> {
    let mut keys = Vec::new();
    for path in &config.published_keys {
        let path = config.resolve(path);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let parsed = kessai_core::jwk::parse_jwk(&bytes)
            .with_context(|| format!("{} (published_keys) is not a public Ed25519 JWK", path.display()))?;
        keys.push(parsed);
    }
    Ok(keys)
}

/// Makes the database record this instance's signing key as the center's
/// (the last step of a rotation): allowed only when the key it records now
/// is one this instance publishes beside its own. Answers the kid now
/// recorded.
pub async fn promote_signing_key(config: &CenterConfig) -> anyhow::Result<String> {
    let local = local_keys(config)?;
    let db = CenterDb::open(&config.database_url()).await.context("opening the center database")?;
    let done = async {
        check_key_set(config, &db, &local).await?;
        let recorded = db.key_set().await?.context("the database records no keys yet: run init")?;
        if recorded.signing_key != local.fingerprints.signing_key {
            db.replace_key_fingerprint(RecordedKey::SigningKey, &recorded.signing_key, &local.fingerprints.signing_key)
                .await?;
        }
        Ok(local.signing_key.kid().to_string())
    }
    .await;
    db.close().await;
    done
}

pub fn read_kek(config: &CenterConfig) -> anyhow::Result<Kek> {
    if let Ok(hex) = std::env::var("KESSAI_CENTER_KEK") {
        return Kek::parse_hex(&hex).context("KESSAI_CENTER_KEK");
    }
    let path = config.resolve(config.kek_file.as_deref().ok_or_else(|| no_kek(config))?);
    let text = read_secret_text(&path)?;
    Kek::parse_hex(&text).with_context(|| format!("{}", path.display()))
}

/// A secret file's text, refused if others may read or write it or another
/// user owns it (`kessai_tls::read_secret_file`).
fn read_secret_text(path: &Path) -> anyhow::Result<Zeroizing<String>> {
    let bytes = kessai_tls::read_secret_file(path)?;
    let text = std::str::from_utf8(&bytes).with_context(|| format!("{} is not text", path.display()))?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// Adds issuer master key version `version` (default one above the newest)
/// to the sealed key file: fresh keys, sealed with the others under the
/// KEK. The file is replaced by a rename, so it holds the old set or the
/// new, and the old one is kept as `<file>.before-vN`. With `[hsm]` the
/// token's keys are added with `kessai center hsm generate` instead.
/// Answers the version added; every instance needs the new file.
pub fn add_master_key_version(config: &CenterConfig, version: Option<u8>) -> anyhow::Result<u8> {
    if config.hsm.is_some() {
        bail!("the master keys are in the token ([hsm]): add a version with `kessai center hsm generate --version N`");
    }
    let mut masters = master_keys(config)?;
    let newest = masters.keys().next_back().copied().unwrap_or(0);
    let version = match version {
        Some(v) => v,
        None => newest.checked_add(1).filter(|v| *v <= 0x7f).context("no key version is left above the newest")?,
    };
    anyhow::ensure!((1..=0x7f).contains(&version), "a key version is 1 to 127");
    anyhow::ensure!(!masters.contains_key(&version), "key version {version} exists already");
    masters.insert(version, keystore::generate_master_keys(&mut OsRandom));
    let kek = read_kek(config)?;
    let path = config.resolve(&config.master_keys);
    let backup = path.with_file_name(format!(
        "{}.before-v{version}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("issuer-master-keys.sealed")
    ));
    let fresh =
        path.with_file_name(format!(".{}.v{version}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("keys")));
    // A backup left by an attempt stopped before its rename is the same
    // file; anything else there is not ours to replace.
    if !backup.exists() {
        std::fs::hard_link(&path, &backup)
            .with_context(|| format!("keeping {} as {}", path.display(), backup.display()))?;
    } else if std::fs::read(&backup)? != std::fs::read(&path)? {
        bail!("{} exists and is not the current key file: move it away first", backup.display());
    }
    if fresh.exists() {
        std::fs::remove_file(&fresh).with_context(|| format!("removing the leftover {}", fresh.display()))?;
    }
    kessai_tls::write_new_file(&fresh, &keystore::seal(&masters, &kek, &mut OsRandom), true)?;
    std::fs::rename(&fresh, &path).with_context(|| format!("replacing {}", path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing {}", dir.display()))?;
    }
    Ok(version)
}

/// The issuer master keys, opened with the KEK.
pub fn master_keys(config: &CenterConfig) -> anyhow::Result<BTreeMap<u8, kessai_scp03::diversify::MasterKeys>> {
    let kek = read_kek(config)?;
    let path = config.resolve(&config.master_keys);
    let sealed = kessai_tls::read_secret_file(&path)?;
    keystore::open(&sealed, &kek).with_context(|| format!("opening {}", path.display()))
}

/// The books live in the center's database. A ledger kept in a database of
/// its own by an earlier version is merged into it (SQLite into SQLite), or
/// refused with what to do.
async fn merge_separate_ledger(config: &CenterConfig, db: &CenterDb) -> anyhow::Result<()> {
    let center_url = config.database_url();
    let legacy = match &config.ledger_url {
        None => config.data_dir.join("ledger.sqlite"),
        Some(url) if *url == center_url => return Ok(()),
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => bail!(
            "ledger_url is set to a database of its own, but the books now live in the center's database \
             ({center_url}), so that a step's ledger effect and its row commit together. Copy the rows of \
             accounts, transfers and pending_transfers into it (pg_dump --data-only --table=… | psql; the \
             center made those tables empty), then remove ledger_url; see ARCHITECTURE.md"
        ),
        Some(path) => config.resolve(Path::new(path)),
    };
    if !legacy.exists() {
        if config.ledger_url.is_some() {
            tracing::warn!(ledger = %legacy.display(), "ledger_url is obsolete: the books live in the center database");
        }
        return Ok(());
    }
    let Some(center_path) = center_url.strip_prefix("sqlite:") else {
        bail!(
            "{} holds books kept apart from the center's database ({center_url}); merge it into a SQLite center \
             database first, or copy its tables into PostgreSQL",
            legacy.display()
        );
    };
    let center_path = Path::new(center_path.trim_start_matches("//")).to_owned();
    let merged = tokio::task::spawn_blocking(move || crate::merge::merge_sqlite_ledger(&center_path, &legacy))
        .await?
        .with_context(|| "merging the separate ledger file into the center database")?;
    tracing::info!(
        from = %merged.from.display(), renamed_to = %merged.renamed_to.display(),
        accounts = merged.accounts, transfers = merged.transfers,
        "merged the separate ledger file into the center database"
    );
    db.ledger().check().await.map_err(|e| anyhow::anyhow!("the merged books do not check: {e}"))?;
    // The migration that began recording payable items ran before the
    // merge, on books without these accounts: what stores were owed in
    // them opens their payables now.
    db.open_payables().await.context("opening the stores' payables of the merged books")?;
    Ok(())
}

/// Opens keys and databases: a ready center. Refuses keys other than the
/// database's (`crate::key_set`); a database from before key sets were
/// recorded records this instance's.
pub async fn open(config: &CenterConfig) -> anyhow::Result<Center> {
    open_with(config, local_keys(config)?).await
}

async fn open_with(config: &CenterConfig, local: LocalKeys) -> anyhow::Result<Center> {
    let db = CenterDb::open(&config.database_url()).await.context("opening the center database")?;
    if let Err(refused) = check_key_set(config, &db, &local).await {
        db.close().await;
        return Err(refused);
    }
    let LocalKeys { kek, issuer, signing_key: center_key, published, .. } = local;
    let tokens = token_parties(config).context("deposit tokens ([tokens])")?;
    let published_keys =
        published.iter().map(|k| kessai_core::jwk::Ed25519Jwk::new(&k.public, k.not_before, k.not_after)).collect();
    tracing::info!(issuer_keys = %issuer.location(), versions = ?issuer.versions(), "issuer master keys");
    merge_separate_ledger(config, &db).await?;
    Ok(Center {
        books: Books::new(db.clone()),
        db,
        security: SecurityServer::over(issuer, kek.state_key()),
        center_id: config.party_id.clone(),
        center_key,
        published_keys,
        clock: Arc::new(SystemClock),
        random: Arc::new(OsRandom),
        max_amount_minor: config.max_amount_minor,
        outcomes: Default::default(),
        completed: Default::default(),
        in_flight: Default::default(),
        prepaid: config.prepaid.clone(),
        clearing: config.clearing.clone(),
        tokens: tokens.map(Arc::new),
    })
}

/// Both token parties, if `[tokens]` names them: the bank and the credit
/// service provider, each reached with the center's client certificate.
fn token_parties(config: &CenterConfig) -> anyhow::Result<Option<crate::tokens::Tokens>> {
    let t = &config.tokens;
    t.check()?;
    let (Some(bank_url), Some(provider_url)) = (&t.bank_url, &t.provider_url) else { return Ok(None) };
    let ca = kessai_tls::CaDir::new(config.resolve(&config.tls.ca_dir));
    let tls = |trust: &Option<std::path::PathBuf>, whose: &str| {
        let trust = trust.as_deref().map(|p| config.resolve(p)).unwrap_or_else(|| ca.ca_cert());
        kessai_tls::client_config(&trust, Some((&ca, &config.tls.client_name))).with_context(|| format!("{whose} TLS"))
    };
    Ok(Some(crate::tokens::Tokens {
        bank: crate::tokens::BankLink::new(bank_url, tls(&t.bank_ca, "the bank's")?),
        provider: crate::tokens::TokenProvider::new(provider_url, tls(&t.provider_ca, "the provider's")?),
    }))
}

/// How often each instance looks for abandoned settlements and value updates.
const SWEEP_INTERVAL_MS: u64 = 30_000;

/// Serves `center` on `listener` until `shutdown`, delivering completions
/// to stores meanwhile.
pub async fn serve_on(
    config: &CenterConfig,
    center: Arc<Center>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let ca = kessai_tls::CaDir::new(config.resolve(&config.tls.ca_dir));
    let ca_cert = ca.ca_cert();
    let tls = kessai_tls::server_config_with(&ca, &config.tls.server_name, kessai_tls::ClientAuth::Optional(&ca_cert))
        .context("server TLS")?;
    let client_tls = kessai_tls::client_config(&ca_cert, Some((&ca, &config.tls.client_name))).context("client TLS")?;
    let mut metrics = HttpMetrics::new("center");
    // Every outcome's series exists from the start, at 0, so a rate or a
    // ratio over it is 0 rather than absent (ops/prometheus).
    for outcome in [crate::purchase::Phase::Completed, crate::purchase::Phase::Voided] {
        drop(center.outcomes.get_or_create(&vec![("outcome".to_owned(), outcome.as_str().to_owned())]));
    }
    metrics.registry_mut().register(
        "kessai_settlements",
        "Settlements that ended, by outcome",
        center.outcomes.clone(),
    );
    let metrics = Arc::new(metrics);
    // The built-in credit authorizer keeps its authorizations in the
    // center's database: a charge authorized through one instance is
    // captured through another, and survives restarts. What an earlier
    // version journaled in the data directory is moved there first.
    let journal = config.data_dir.join("authorizations.jsonl");
    let imported = crate::authorizer::import_journal(&journal, &center.db, center.clock.now())
        .await
        .map_err(|e| anyhow::anyhow!("importing {}: {e}", journal.display()))?;
    if imported > 0 {
        tracing::info!(imported, from = %journal.display(), "moved journaled authorizations into the database");
    }
    let simulator = Arc::new(Simulator::in_database(center.db.clone()));
    // Not ready until the databases have answered (`watch_ready`).
    let ready = Arc::new(AtomicBool::new(false));
    let router = routes(
        center.clone(),
        simulator.clone(),
        config.tls.admin_name.clone(),
        config.tls.operator_names.clone(),
        metrics.clone(),
        ready.clone(),
    );
    let router = apply_standard_layers(router, &config.limits, &metrics);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let watching = tokio::spawn(watch_ready(center.clone(), ready, stop_rx.clone()));
    let sweeping = tokio::spawn(sweep_abandoned(center.clone(), simulator, stop_rx.clone()));
    let fetching = tokio::spawn(fetch_statements(center.clone(), config.tokens.statement_every_s, stop_rx.clone()));
    let deliverer = delivery::Deliverer::new(center, HttpsClient::new(client_tls, DELIVERY_TIMEOUT_MS));
    let interval = std::time::Duration::from_millis(config.delivery_interval_ms);
    let delivering = tokio::spawn(async move { deliverer.run(interval, stop_rx).await });
    let served = kessai_http::serve(router, listener, Arc::new(tls), shutdown).await;
    let _ = stop_tx.send(true);
    let _ = delivering.await;
    let _ = watching.await;
    let _ = sweeping.await;
    let _ = fetching.await;
    served.context("serving HTTPS")
}

/// How often the statement loop also goes back over every day a token
/// request may still be issued from (a credit deferred while the bank or
/// the provider was out of reach, on a day now past).
const STATEMENT_CATCH_UP_S: u64 = 3_600;

/// Imports the pool account's statements of yesterday and today from the
/// bank at start and then every `every_s` seconds, and every hour (and at
/// start) those of every day back to the oldest a token request awaiting
/// its deposit may still take, if this center issues tokens: a deposit is
/// confirmed within that, a credit deferred is taken once both parties
/// answer (importing again changes nothing, so every instance may).
async fn fetch_statements(center: Arc<Center>, every_s: u64, mut stop: tokio::sync::watch::Receiver<bool>) {
    if center.tokens.is_none() {
        return;
    }
    let mut caught_up_at: Option<u64> = None;
    loop {
        let now = center.clock.now().unix_s();
        let back_s = if caught_up_at.is_none_or(|at| now.saturating_sub(at) >= STATEMENT_CATCH_UP_S) {
            caught_up_at = Some(now);
            // Every day a request still awaiting may have been paid on,
            // with a day's margin (a request made late on a day) and the
            // time since the last catch-up.
            center
                .prepaid
                .awaiting_s
                .saturating_add(crate::tokens::STATEMENT_GRACE_S)
                .saturating_add(86_400 + STATEMENT_CATCH_UP_S)
        } else {
            86_400
        };
        let days = crate::tokens::statement_days(kessai_core::time::Timestamp::from_unix_s(now), back_s);
        for day in &days {
            match center.fetch_statement(day).await {
                Ok(r) if r.matched + r.suspense + r.review + r.deferred > 0 => {
                    tracing::info!(
                        day,
                        matched = r.matched,
                        suspense = r.suspense,
                        review = r.review,
                        deferred = r.deferred,
                        "the pool account's statement imported"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(day, error = %e, "importing the pool account's statement failed"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(every_s)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Ends what wallets abandoned before its sealed command, and purges
/// Idempotency-Key answers past their retention, charge attempts and
/// statements after a day, every
/// [`SWEEP_INTERVAL_MS`] (see `Center::sweep_abandoned`; safe on every
/// instance at once).
async fn sweep_abandoned(
    center: Arc<Center>,
    authorizer: Arc<Simulator>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let every = std::time::Duration::from_millis(SWEEP_INTERVAL_MS);
    let mut next_audit = center.clock.now().unix_s().saturating_add(crate::limits::AUDIT_INTERVAL_S);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        match center.sweep_abandoned(authorizer.as_ref(), center.clock.now()).await {
            Ok(0) => {}
            Ok(ended) => tracing::info!(ended, "ended abandoned settlements and value updates"),
            Err(e) => tracing::warn!(error = %e, "the abandoned sweep failed"),
        }
        // Prepaid fundings (#18): transfers and cash not received in time
        // end; credit fundings issued but not yet captured are captured.
        match center.expire_prepaid_fundings().await {
            Ok(0) => {}
            Ok(expired) => tracing::info!(expired, "prepaid fundings expired unpaid"),
            Err(e) => tracing::warn!(error = %e, "expiring prepaid fundings failed"),
        }
        // Deposit token requests (#21) whose deposit did not come in time.
        match center.lapse_token_requests().await {
            Ok(0) => {}
            Ok(lapsed) => tracing::info!(lapsed, "deposit token requests lapsed"),
            Err(e) => tracing::warn!(error = %e, "lapsing deposit token requests failed"),
        }
        if let Err(e) = center.capture_prepaid_fundings(authorizer.as_ref()).await {
            tracing::warn!(error = %e, "capturing prepaid fundings failed");
        }
        let now = center.clock.now().unix_s();
        let before = kessai_core::time::Timestamp::from_unix_s(now.saturating_sub(IDEMPOTENCY_RETENTION_S));
        let day_ago = kessai_core::time::Timestamp::from_unix_s(now.saturating_sub(crate::limits::DAY_S));
        if let Err(e) = center.db.purge_charge_attempts(day_ago).await {
            tracing::warn!(error = %e, "purging old charge attempts failed");
        }
        if let Err(e) = center.db.purge_statements(day_ago, PURGE_BATCH_MAX).await {
            tracing::warn!(error = %e, "purging old statements failed");
        }
        if let Err(e) = center.db.purge_token_sessions(day_ago, PURGE_BATCH_MAX).await {
            tracing::warn!(error = %e, "purging old token deliveries failed");
        }
        match center.db.purge_answers(before, PURGE_BATCH_MAX).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged Idempotency-Key answers past their retention"),
            Err(e) => tracing::warn!(error = %e, "purging old Idempotency-Key answers failed"),
        }
        // The examination of collected card logs, once an interval (on every
        // instance: a difference is recorded once whoever finds it).
        if now >= next_audit {
            next_audit = now.saturating_add(crate::limits::AUDIT_INTERVAL_S);
            match center.audit(center.clock.now()).await {
                Ok(report) if report.new > 0 => {
                    tracing::warn!(new = report.new, cards = report.cards, "the audit of card logs found differences")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "the audit of card logs failed"),
            }
        }
    }
}

/// Keeps `ready` (`/readyz`) true while the center's database and the
/// ledger answer (and on SQLite their writer threads run), checking every
/// [`READY_CHECK_MS`]; a load balancer then stops sending steps to an
/// instance that could not commit them. Logs each change.
async fn watch_ready(center: Arc<Center>, ready: Arc<AtomicBool>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let timeout = std::time::Duration::from_millis(READY_CHECK_MS);
    loop {
        let checked = tokio::time::timeout(timeout, async {
            center.db.ready().await.map_err(|e| format!("center database: {e}"))?;
            center.books.ledger().ready().await.map_err(|e| format!("ledger: {e}"))
        })
        .await
        .unwrap_or_else(|_| Err("the databases did not answer in time".into()));
        let was = ready.swap(checked.is_ok(), Ordering::SeqCst);
        match checked {
            Err(why) if was => tracing::error!(error = %why, "not ready"),
            Ok(()) if !was => tracing::info!("ready"),
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(timeout) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Opens the center and serves it on `config.listen`.
/// Prepares the instance's keys ([`init`]), opens the center with them and
/// serves it until `shutdown`.
pub async fn run(config: CenterConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let local = init_keys(&config, None).await.context("the center's keys")?;
    let center = Arc::new(open_with(&config, local).await?);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    serve_on(&config, center, listener, shutdown).await
}

/// Every route the center serves, before the standard layers: the API of
/// [`kessai_api::routes::OPERATIONS`], the operator's console, the member
/// pages and the operations routes.
pub fn routes(
    center: Arc<Center>,
    simulator: Arc<Simulator>,
    admin_name: String,
    operator_names: Vec<String>,
    metrics: Arc<HttpMetrics>,
    ready: Arc<AtomicBool>,
) -> axum::Router {
    api::routes(center.clone())
        .merge(admin::routes(center.clone(), admin_name.clone(), operator_names.clone()))
        .merge(crate::console::routes(center.clone(), admin_name, operator_names))
        .merge(update_api::routes(center.clone(), simulator.clone()))
        .merge(crate::prepaid_api::routes(center.clone(), simulator))
        .merge(crate::clearing_api::routes(center.clone()))
        .merge(crate::members::routes(center.clone()))
        .merge(crate::member_pages::routes(center))
        .merge(ops_routes(metrics, ready))
}
