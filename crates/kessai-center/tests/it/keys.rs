//! The keys a center database belongs to (`kessai_center::key_set`): every
//! instance has its own data directory; the database says which keys they
//! must hold. `init` generates keys only for a database that has none; an
//! instance lacking them is told how to provision them, and one holding
//! other keys refuses to start.

use kessai_center::config::CenterConfig;

/// An instance's configuration: its own data directory, the shared
/// database.
fn instance(dir: &std::path::Path, name: &str, database_url: &str) -> CenterConfig {
    let text = format!(
        r#"party_id = "center"
listen = "127.0.0.1:0"
public_url = "https://127.0.0.1"
data_dir = "{}"
database_url = "{database_url}"
[tls]
ca_dir = "{}"
server_name = "localhost"
client_name = "center"
"#,
        dir.join(name).display(),
        dir.join("ca").display()
    );
    CenterConfig::from_toml(&text).unwrap()
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
    assert!(!second.data_dir.join("kek.hex").exists(), "no key generated for a provisioned database");
    assert!(!second.data_dir.join("center.key").exists());
    assert!(kessai_center::app::open(&second).await.is_err(), "it cannot start either");
    // 2. Provisioned with the first instance's key files, it starts.
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
    for name in ["kek.hex", "issuer-master-keys.sealed"] {
        std::fs::copy(first.data_dir.join(name), fourth.data_dir.join(name)).unwrap();
    }
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
    db.replace_master_keys_fingerprint(&recorded.master_keys, &theirs).await.unwrap();
    let Err(refused) = kessai_center::app::open(&first).await else { panic!("another legacy fingerprint") };
    assert!(format!("{refused:#}").contains("the issuer master keys"), "{refused:#}");
    let ours = legacy_master_keys_fingerprint(&kessai_center::app::master_keys(&first).unwrap());
    db.replace_master_keys_fingerprint(&theirs, &ours).await.unwrap();
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
    for name in ["kek.hex", "issuer-master-keys.sealed", "center.key"] {
        let path = config.data_dir.join(name);
        assert_eq!(mode(&path), 0o600, "{name} made private");
        for open in [0o644, 0o640, 0o606] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(open)).unwrap();
            let Err(refused) = kessai_center::app::open(&config).await else { panic!("{name} at {open:o} was used") };
            let why = format!("{refused:#}");
            assert!(why.contains(name) && why.contains("chmod 600"), "{name} at {open:o}: {why}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let center = kessai_center::app::open(&config).await.unwrap();
        center.db.close().await;
    }
}
