//! The keys a center database belongs to (`kessai_center::key_set`): every
//! instance has its own data directory; the database says which keys they
//! must hold. `init` generates keys only for a database that has none; an
//! instance lacking them is told how to provision them, and one holding
//! other keys refuses to start.

use kessai_center::config::CenterConfig;

/// An instance's configuration: its own data directory and KEK file (out
/// of the data directory), the shared database.
fn instance(dir: &std::path::Path, name: &str, database_url: &str) -> CenterConfig {
    let text = format!(
        r#"party_id = "center"
listen = "127.0.0.1:0"
public_url = "https://127.0.0.1"
data_dir = "{}"
kek_file = "{}"
database_url = "{database_url}"
[tls]
ca_dir = "{}"
server_name = "localhost"
client_name = "center"
"#,
        dir.join(name).display(),
        dir.join("keks").join(format!("{name}.hex")).display(),
        dir.join("ca").display()
    );
    CenterConfig::from_toml(&text).unwrap()
}

fn kek_of(config: &CenterConfig) -> &std::path::Path {
    config.kek_file.as_deref().unwrap()
}

async fn instances_hold_the_databases_keys(tmp: &std::path::Path, shared: &str) {
    let first = instance(tmp, "a", shared);
    kessai_center::app::init(&first, None).await.unwrap();
    let recorded = {
        let a = kessai_center::app::open(&first).await.unwrap();
        let keys = a.db.key_set().await.unwrap().expect("recorded at init");
        a.db.close().await;
        keys
    };
    // 1. A second instance with an empty data directory: nothing generated.
    let second = instance(tmp, "b", shared);
    let refused = kessai_center::app::init(&second, None).await.unwrap_err();
    let why = format!("{refused:#}");
    assert!(why.contains("keys were created elsewhere") && why.contains("--keys-from"), "{why}");
    assert!(!kek_of(&second).exists(), "no key generated for a provisioned database");
    assert!(!second.data_dir.join("center.key").exists());
    assert!(kessai_center::app::open(&second).await.is_err(), "it cannot start either");
    // 2. Provisioned with the first instance's KEK (to its own kek_file)
    // and key files, it starts.
    std::fs::copy(kek_of(&first), kek_of(&second)).unwrap();
    kessai_center::app::init(&second, Some(&first.data_dir)).await.unwrap();
    let b = kessai_center::app::open(&second).await.unwrap();
    assert_eq!(b.db.key_set().await.unwrap(), Some(recorded.clone()));
    b.db.close().await;
    // 3. An instance holding keys of another center refuses to start, and
    // its init refuses too, naming what differs; the record is unchanged.
    let other_db = format!("sqlite:{}", tmp.join("other.sqlite").display());
    let third_alone = instance(tmp, "c", &other_db);
    kessai_center::app::init(&third_alone, None).await.unwrap();
    let third = instance(tmp, "c", shared);
    let Err(refused) = kessai_center::app::open(&third).await else { panic!("other keys must be refused") };
    let why = format!("{refused:#}");
    assert!(why.contains("holds other keys") && why.contains("the KEK") && why.contains("the signing key"), "{why}");
    let why = format!("{:#}", kessai_center::app::init(&third, None).await.unwrap_err());
    assert!(why.contains("holds other keys"), "{why}");
    // 4. One wrong key is enough: the first instance's files but another
    // signing key.
    let fourth = instance(tmp, "d", shared);
    std::fs::create_dir_all(&fourth.data_dir).unwrap();
    std::fs::copy(first.data_dir.join("issuer-master-keys.sealed"), fourth.data_dir.join("issuer-master-keys.sealed"))
        .unwrap();
    std::fs::copy(kek_of(&first), kek_of(&fourth)).unwrap();
    std::fs::copy(third.data_dir.join("center.key"), fourth.data_dir.join("center.key")).unwrap();
    let Err(refused) = kessai_center::app::open(&fourth).await else { panic!("another signing key must be refused") };
    let why = format!("{refused:#}");
    assert!(why.contains("the signing key") && !why.contains("the KEK"), "{why}");
    // 5. --keys-from never overwrites a different key.
    let why = format!("{:#}", kessai_center::app::init(&fourth, Some(&first.data_dir)).await.unwrap_err());
    assert!(why.contains("differs"), "{why}");
    let db = kessai_center::db::CenterDb::open(shared).await.unwrap();
    assert_eq!(db.key_set().await.unwrap(), Some(recorded.clone()));
    // 6. A database that recorded its master keys the old way (a hash of
    // the keys, before check values): the instance holding those keys in
    // memory replaces it once; one holding other keys is still refused.
    use kessai_center::keystore::legacy_master_keys_fingerprint;
    let theirs = legacy_master_keys_fingerprint(&kessai_center::app::master_keys(&third).unwrap());
    db.replace_key_fingerprint(kessai_center::db::RecordedKey::MasterKeys, &recorded.master_keys, &theirs)
        .await
        .unwrap();
    let Err(refused) = kessai_center::app::open(&first).await else { panic!("another legacy fingerprint") };
    assert!(format!("{refused:#}").contains("the issuer master keys"), "{refused:#}");
    let ours = legacy_master_keys_fingerprint(&kessai_center::app::master_keys(&first).unwrap());
    db.replace_key_fingerprint(kessai_center::db::RecordedKey::MasterKeys, &theirs, &ours).await.unwrap();
    assert_ne!(db.key_set().await.unwrap().unwrap().master_keys, recorded.master_keys);
    let a = kessai_center::app::open(&first).await.unwrap();
    a.db.close().await;
    assert_eq!(db.key_set().await.unwrap(), Some(recorded), "upgraded to the check-value fingerprint");
    db.close().await;
}

#[tokio::test]
async fn instances_must_hold_the_keys_their_database_records_on_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    let shared = format!("sqlite:{}", tmp.path().join("shared.sqlite").display());
    instances_hold_the_databases_keys(tmp.path(), &shared).await;
}

#[tokio::test]
async fn instances_must_hold_the_keys_their_database_records_on_postgres() {
    let Some(url) = kessai_testkit::postgres_database("key_set").await else { return };
    let tmp = tempfile::tempdir().unwrap();
    instances_hold_the_databases_keys(tmp.path(), &url).await;
}

/// M9 (#23, in part): a secret file anyone but its owner may read or write
/// is refused, with how to fix it, and the instance does not start; the
/// same file at 0600 is used. The SQLite database is created 0600.
#[tokio::test]
async fn secret_files_open_to_others_are_refused_and_the_database_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", tmp.path().join("center.sqlite").display());
    let config = instance(tmp.path(), "a", &url);
    kessai_center::app::init(&config, None).await.unwrap();
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&tmp.path().join("center.sqlite")), 0o600, "the books are nobody else's to read");
    let secrets = [
        kek_of(&config).to_owned(),
        config.data_dir.join("issuer-master-keys.sealed"),
        config.data_dir.join("center.key"),
    ];
    for path in secrets {
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(mode(&path), 0o600, "{name} made private");
        for open in [0o644, 0o640, 0o606] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(open)).unwrap();
            let Err(refused) = kessai_center::app::open(&config).await else { panic!("{name} at {open:o} was used") };
            let why = format!("{refused:#}");
            assert!(why.contains(&name) && why.contains("chmod 600"), "{name} at {open:o}: {why}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let center = kessai_center::app::open(&config).await.unwrap();
        center.db.close().await;
    }
}

/// #23 item 2: the KEK has no default, and never lives in the data
/// directory beside what it seals; one left there by an earlier version is
/// named with what to do.
#[tokio::test]
async fn the_kek_never_sits_in_the_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", tmp.path().join("center.sqlite").display());
    let mut config = instance(tmp.path(), "a", &url);
    for inside in ["kek.hex", "sub/kek.hex"] {
        config.kek_file = Some(inside.into());
        let why = format!("{:#}", config.check().unwrap_err());
        assert!(why.contains("inside the data directory"), "{why}");
    }
    config.kek_file = Some(config.data_dir.join("kek.hex"));
    assert!(config.check().is_err(), "an absolute path into the data directory too");
    config.kek_file = None;
    let why = format!("{:#}", kessai_center::app::init(&config, None).await.unwrap_err());
    assert!(why.contains("no KEK: set kek_file"), "{why}");
    assert!(!config.data_dir.join("kek.hex").exists(), "no KEK made where it must not be");
    // An instance of an earlier version: its KEK in the data directory.
    let earlier = instance(tmp.path(), "b", &url);
    kessai_center::app::init(&earlier, None).await.unwrap();
    let mut moved = earlier.clone();
    std::fs::copy(kek_of(&earlier), earlier.data_dir.join("kek.hex")).unwrap();
    moved.kek_file = None;
    let Err(refused) = kessai_center::app::open(&moved).await else { panic!("a KEK in the data directory was used") };
    let why = format!("{refused:#}");
    assert!(why.contains("where earlier versions kept it") && why.contains("kek_file"), "{why}");
    let center = kessai_center::app::open(&earlier).await.unwrap();
    center.db.close().await;
}

/// #23 item 2: the center's signing key sealed under a passphrase (from a
/// file here; KESSAI_CENTER_KEY_PASSPHRASE or a prompt otherwise) opens
/// with it only; a wrong passphrase, a tampered file, a missing or
/// readable passphrase file are refused, and the instance does not start.
#[tokio::test]
async fn a_sealed_signing_key_opens_with_its_passphrase_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", tmp.path().join("center.sqlite").display());
    let mut config = instance(tmp.path(), "a", &url);
    let pass = tmp.path().join("center-key.pass");
    kessai_tls::write_new_file(&pass, b"correct horse battery staple\n", true).unwrap();
    config.signing_key_passphrase_file = Some(pass.clone());
    kessai_center::app::init(&config, None).await.unwrap();
    let key_path = config.data_dir.join("center.key");
    let sealed = std::fs::read_to_string(&key_path).unwrap();
    assert!(kessai_core::keyfile::is_sealed(&sealed), "made sealed when a passphrase is given");
    let center = kessai_center::app::open(&config).await.unwrap();
    let public = center.center_key.public();
    center.db.close().await;

    let refused = |config: CenterConfig| async move {
        match kessai_center::app::open(&config).await {
            Ok(_) => panic!("opened"),
            Err(e) => format!("{e:#}"),
        }
    };
    std::fs::write(&pass, "wrong horse\n").unwrap();
    assert!(refused(config.clone()).await.contains("wrong passphrase"));
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(refused(config.clone()).await.contains("chmod 600"));
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut without = config.clone();
    without.signing_key_passphrase_file = None;
    assert!(refused(without).await.contains("KESSAI_CENTER_KEY_PASSPHRASE"));
    // One character of the sealed body changed.
    let body_at = sealed.find('\n').unwrap() + 20;
    let mut tampered = sealed.clone().into_bytes();
    tampered[body_at] = if tampered[body_at] == b'A' { b'B' } else { b'A' };
    std::fs::write(&key_path, &tampered).unwrap();
    let why = refused(config.clone()).await;
    assert!(why.contains("wrong passphrase, or the key file was altered") || why.contains("key file"), "{why}");
    std::fs::write(&key_path, &sealed).unwrap();
    let center = kessai_center::app::open(&config).await.unwrap();
    assert_eq!(center.center_key.public(), public, "the same key, opened again");
    center.db.close().await;
}

/// #23 item 3: issuer master keys rotated by key version in the key file:
/// new cards get the newest version, a card is re-keyed to it (PUT KEY),
/// and a re-key interrupted after the card's write is recorded when run
/// again.
#[tokio::test]
async fn cards_are_re_keyed_to_a_new_master_key_version() {
    use kessai_card::protocol::put_key_command;
    use kessai_center::issue::{IssueCard, Rekeyed, issue_card, rekey_card};
    use kessai_core::ids::CardId;
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", tmp.path().join("center.sqlite").display());
    let config = instance(tmp.path(), "a", &url);
    kessai_center::app::init(&config, None).await.unwrap();
    let issue = |n: u8, version: Option<u8>| {
        let config = config.clone();
        let image = tmp.path().join(format!("card-{n}.img"));
        async move {
            let req = IssueCard {
                image: &image,
                card_id: CardId::from_bytes([0x4b, 0x45, 0x59, 0, 0, 0, 0, n]),
                key_version: version,
                currency: kessai_core::Currency::JPY,
                max_balance_minor: 100_000,
                initial_value_minor: 5_000,
            };
            let info = issue_card(&config, &req).await.unwrap();
            (image, info.key_version)
        }
    };
    let (first, version) = issue(1, None).await;
    assert_eq!(version, 1);
    // Key version 2 added to the sealed file: the database takes it; the
    // set before is kept, and a version that exists is not made again.
    let path = config.data_dir.join("issuer-master-keys.sealed");
    let before = std::fs::read(&path).unwrap();
    assert_eq!(kessai_center::app::add_master_key_version(&config, None).unwrap(), 2);
    assert_eq!(std::fs::read(config.data_dir.join("issuer-master-keys.sealed.before-v2")).unwrap(), before);
    let masters = kessai_center::app::master_keys(&config).unwrap();
    assert_eq!(masters.keys().copied().collect::<Vec<_>>(), [1, 2]);
    let why = format!("{:#}", kessai_center::app::add_master_key_version(&config, Some(2)).unwrap_err());
    assert!(why.contains("exists already"), "{why}");
    // Something else where the backup of version 3 would go: refused, the
    // key file unchanged.
    let current = std::fs::read(&path).unwrap();
    std::fs::write(config.data_dir.join("issuer-master-keys.sealed.before-v3"), b"not ours").unwrap();
    let why = format!("{:#}", kessai_center::app::add_master_key_version(&config, None).unwrap_err());
    assert!(why.contains("not the current key file"), "{why}");
    assert_eq!(std::fs::read(&path).unwrap(), current);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let (_, version) = issue(2, None).await;
    assert_eq!(version, 2, "new cards get the newest version");
    // Card 1 re-keyed.
    let done = rekey_card(&config, &first, None).await.unwrap();
    assert_eq!(done, Rekeyed { from: 1, to: 2, card_had_them: false });
    let info = kessai_card::public_info(&std::fs::read(&first).unwrap()).unwrap();
    assert_eq!((info.key_version, info.balance_minor), (2, 5_000), "new keys, the same value");
    let again = rekey_card(&config, &first, Some(2)).await.unwrap();
    assert!(again.card_had_them && again.from == 2, "nothing to do twice: {again:?}");
    // Card 3 on version 1: PUT KEY reaches the card, the registry write is
    // lost (a crash between); run again, the registry is brought along.
    let (third, _) = issue(3, Some(1)).await;
    let id = CardId::from_bytes([0x4b, 0x45, 0x59, 0, 0, 0, 0, 3]);
    {
        let center = kessai_center::app::open(&config).await.unwrap();
        let (old, new) = (
            center.security.personalization_keys(&id, 1).unwrap(),
            center.security.personalization_keys(&id, 2).unwrap(),
        );
        let storage = kessai_card::storage::FileStorage::open(&third, kessai_card::storage::Durability::Fsync).unwrap();
        let mut t = kessai_card::terminal::Terminal::new(kessai_card::transport::InProcessReader::new(
            kessai_card::Card::open(storage).unwrap(),
        ));
        t.select().unwrap();
        let s = t.open_session(old.clone(), [4; 8]).unwrap();
        let (_, r) = t.secure(s, &put_key_command(old.version, &new, &old.dek)).unwrap();
        assert_eq!(r.sw().raw(), 0x9000);
        assert_eq!(center.db.card(&id).await.unwrap().unwrap().key_version, 1, "the registry not told yet");
        center.db.close().await;
    }
    let done = rekey_card(&config, &third, None).await.unwrap();
    assert_eq!(done, Rekeyed { from: 1, to: 2, card_had_them: true });
    let center = kessai_center::app::open(&config).await.unwrap();
    assert_eq!(center.db.card(&id).await.unwrap().unwrap().key_version, 2);
    // A version the center lacks is refused, and changes nothing.
    let why = format!("{:#}", rekey_card(&config, &first, Some(9)).await.unwrap_err());
    assert!(why.contains("no master keys of key version 9"), "{why}");
    center.db.close().await;
}
