//! The center's database: registry, settlements with optimistic
//! concurrency, idempotent responses — on SQLite, and on PostgreSQL when
//! the test command provides a throwaway cluster.

use kessai_center::books::Entries;
use kessai_center::db::{CenterDb, DbError, SavedResponse, SettlementQuery, StoreRecord};
use kessai_center::limits::DELIVERY_LEASE_S;
use kessai_center::owed::{Owed, OwedBody, OwedKind, OwedStatus};
use kessai_center::purchase::{CardRegistryStatus, Phase};
use kessai_core::ids::StoreId;
use kessai_core::keys::Validity;
use kessai_core::messages::DisplayText;
use kessai_core::messages::value_update::Direction;
use kessai_core::samples;
use kessai_core::{Currency, Money};

use crate::world::{NOW, World, card_id, record};

async fn sqlite() -> (tempfile::TempDir, CenterDb) {
    let dir = tempfile::tempdir().unwrap();
    let db = CenterDb::open(&format!("sqlite:{}", dir.path().join("center.db").display())).await.unwrap();
    (dir, db)
}

/// A fresh database on the throwaway PostgreSQL cluster, if there is one.
async fn postgres(name: &str) -> Option<CenterDb> {
    let url = kessai_testkit::postgres_database(name).await?;
    Some(CenterDb::open(&url).await.unwrap())
}

async fn registry_round_trips(db: &CenterDb) {
    let w = World::new(1);
    let mall = StoreId::parse(samples::MALL).unwrap();
    let store = StoreRecord {
        id: mall.clone(),
        name: DisplayText::parse("Kessai Mall").unwrap(),
        mall: None,
        notify_url: Some("https://127.0.0.1:8443/v1/completions".into()),
        client_name: Some("kessai-mall".into()),
        bank_account: Some("JP-0001-1234567".into()),
    };
    db.put_store(&store, NOW).await.unwrap();
    assert_eq!(db.store(&mall).await.unwrap(), Some(store));
    db.put_store_key(&mall, &w.mall_key.public(), Validity::always()).await.unwrap();
    let dir = db.store_keys().await.unwrap();
    let entry = dir.entry(w.mall_key.kid().as_str()).unwrap();
    assert_eq!(entry.owner.as_str(), samples::MALL);
    assert!(!entry.revoked);
    assert!(db.revoke_store_key(w.mall_key.kid(), crate::world::NOW, crate::trail("store_key_revoked")).await.unwrap());
    assert!(db.store_keys().await.unwrap().entry(w.mall_key.kid().as_str()).unwrap().revoked);

    db.put_card(&record(1), NOW).await.unwrap();
    assert_eq!(db.card(&card_id(1)).await.unwrap(), Some(record(1)));
    assert!(db.put_card(&record(1), NOW).await.is_err(), "a card id is issued once");
    use kessai_center::db::StatusChange;
    let one = card_id(1);
    let set = |status, reason| db.set_card_status(&one, status, reason, crate::world::NOW, crate::trail("card_status"));
    assert_eq!(set(CardRegistryStatus::Blocked, "suspicious").await.unwrap(), StatusChange::Changed);
    assert_eq!(set(CardRegistryStatus::Active, "cleared").await.unwrap(), StatusChange::Changed);
    assert_eq!(set(CardRegistryStatus::Lost, "reported lost by phone").await.unwrap(), StatusChange::Changed);
    assert_eq!(db.card(&card_id(1)).await.unwrap().unwrap().status, CardRegistryStatus::Lost);
    // L6: lost is final; the record and its reason stay.
    for status in [CardRegistryStatus::Active, CardRegistryStatus::Blocked] {
        assert_eq!(set(status, "found it").await.unwrap(), StatusChange::LostIsFinal);
        assert_eq!(db.card(&card_id(1)).await.unwrap().unwrap().status, CardRegistryStatus::Lost);
    }
    assert_eq!(set(CardRegistryStatus::Lost, "reported again").await.unwrap(), StatusChange::Changed);
    let unknown = db
        .set_card_status(&card_id(99), CardRegistryStatus::Blocked, "x", crate::world::NOW, crate::trail("card_status"))
        .await
        .unwrap();
    assert_eq!(unknown, StatusChange::UnknownCard);
    assert_eq!(db.card(&card_id(99)).await.unwrap(), None);
    // Store and card read in one statement: each as read alone, or missing.
    let both = db.store_and_card(&mall, &card_id(1)).await.unwrap();
    assert_eq!(both, (db.store(&mall).await.unwrap(), db.card(&card_id(1)).await.unwrap()));
    assert!(both.0.is_some() && both.1.is_some());
    let other = StoreId::parse("no-such-store").unwrap();
    assert_eq!(db.store_and_card(&other, &card_id(1)).await.unwrap(), (None, db.card(&card_id(1)).await.unwrap()));
    assert_eq!(db.store_and_card(&mall, &card_id(99)).await.unwrap().1, None);
}

async fn settlements_are_versioned_and_unique_per_bill(db: &CenterDb) {
    let mut w = World::new(2);
    let (s, _) = w.create(&record(2));
    assert!(db.insert_settlement(&s, NOW).await.unwrap().is_none());
    // The same bill again: the existing settlement comes back.
    let mut again = s.clone();
    again.id = kessai_core::ids::SettlementId::parse("stl_other").unwrap();
    let (existing, version) = db.insert_settlement(&again, NOW).await.unwrap().unwrap();
    assert_eq!(existing.id, s.id);
    assert_eq!(version, 1);

    let (mut loaded, version) = db.settlement(&s.id).await.unwrap().unwrap();
    let scp = |s: &kessai_center::purchase::Settlement| serde_json::to_value(s).unwrap()["scp"].clone();
    assert_eq!(scp(&loaded), scp(&s), "sealed state survives storage");
    loaded = loaded.cancel("test").unwrap();
    db.update_settlement(&loaded, version, NOW).await.unwrap();
    // A second writer that read the old version loses.
    assert!(matches!(db.update_settlement(&loaded, version, NOW).await, Err(DbError::Conflict)));
    let (after, v2) = db.settlement(&s.id).await.unwrap().unwrap();
    assert_eq!((after.phase(), v2), (Phase::Voided, 2));
    let voided = db
        .list_settlements(&SettlementQuery { phase: Some(Phase::Voided), ..Default::default() })
        .await
        .unwrap()
        .settlements;
    assert_eq!(voided.len(), 1);
    assert!(
        db.list_settlements(&SettlementQuery { card: Some(card_id(3)), ..Default::default() })
            .await
            .unwrap()
            .settlements
            .is_empty()
    );
    steps_store_their_answer_only_when_they_win(db).await;
}

/// A step's compare-and-set and its stored answer commit together: the
/// winner's answer is stored, a loser stores nothing; the answer and the
/// settlement read back in one statement are the two read apart.
async fn steps_store_their_answer_only_when_they_win(db: &CenterDb) {
    let mut w = World::new(4);
    let (s, _) = w.create(&record(2));
    assert!(db.insert_settlement(&s, NOW).await.unwrap().is_none());
    let answer = |key: &str| SavedResponse {
        key: key.into(),
        hash: "h".into(),
        status: 200,
        body: "{}".into(),
        stored: Default::default(),
    };
    // Opening: the answer is stored with the new settlement, not with a duplicate.
    let (opened, _) = w.create(&record(2));
    assert!(
        db.insert_settlement_answering(&opened, NOW, Some(answer("opened")), Entries::none()).await.unwrap().is_none()
    );
    let mut duplicate = opened.clone();
    duplicate.id = kessai_core::ids::SettlementId::parse("stl_duplicate").unwrap();
    let existing =
        db.insert_settlement_answering(&duplicate, NOW, Some(answer("duplicate")), Entries::none()).await.unwrap();
    assert_eq!(existing.map(|(e, v)| (e.id, v)), Some((opened.id.clone(), 1)));
    assert!(db.idempotent_response("opened").await.unwrap().is_some());
    assert_eq!(db.idempotent_response("duplicate").await.unwrap(), None);
    let (loaded, version) = db.settlement(&s.id).await.unwrap().unwrap();
    let cancelled = loaded.cancel("test").unwrap();
    db.update_settlement_answering(&cancelled, version, NOW, with_answer(Some(answer("won")))).await.unwrap();
    let lost = db.update_settlement_answering(&cancelled, version, NOW, with_answer(Some(answer("lost")))).await;
    assert!(matches!(lost, Err(DbError::Conflict)), "{lost:?}");
    assert_eq!(db.idempotent_response("won").await.unwrap(), Some(("h".into(), 200, "{}".into())));
    assert_eq!(db.idempotent_response("lost").await.unwrap(), None, "a losing step stores no answer");
    let (stored, found) = db.idempotent_response_and_settlement("won", &s.id).await.unwrap();
    assert_eq!(stored, db.idempotent_response("won").await.unwrap());
    let (found, found_version) = found.unwrap();
    assert_eq!((found.phase(), found.id, found_version), (Phase::Voided, s.id.clone(), version + 1));
    let missing = kessai_core::ids::SettlementId::parse("stl_missing").unwrap();
    assert_eq!(db.idempotent_response_and_settlement("none", &missing).await.unwrap().0, None);
    assert!(db.idempotent_response_and_settlement("none", &missing).await.unwrap().1.is_none());
    // The same key again (a retried request that lost the race): the first answer stays.
    let (loaded, version) = db.settlement(&s.id).await.unwrap().unwrap();
    let other = SavedResponse { body: "{\"other\":1}".into(), ..answer("won") };
    db.update_settlement_answering(&loaded, version, NOW, with_answer(Some(other))).await.unwrap();
    assert_eq!(db.idempotent_response("won").await.unwrap(), Some(("h".into(), 200, "{}".into())));
}

async fn idempotent_responses_keep_the_first(db: &CenterDb) {
    assert_eq!(db.idempotent_response("k1").await.unwrap(), None);
    db.save_response("k1", "h1", 201, "{\"a\":1}", NOW).await.unwrap();
    db.save_response("k1", "h2", 500, "other", NOW).await.unwrap();
    assert_eq!(db.idempotent_response("k1").await.unwrap(), Some(("h1".into(), 201, "{\"a\":1}".into())));
    // Retention (L1): answers older than the cut-off are purged, oldest
    // first and at most as many as asked; newer ones stay.
    let at = |s: u64| kessai_core::time::Timestamp::from_unix_s(NOW.unix_s() - 1_000 + s);
    for n in 0..3u64 {
        db.save_response(&format!("old{n}"), "h", 200, "{}", at(n)).await.unwrap();
    }
    assert_eq!(db.purge_answers(at(3), 2).await.unwrap(), 2);
    assert_eq!(db.idempotent_response("old0").await.unwrap(), None);
    assert_eq!(db.idempotent_response("old1").await.unwrap(), None);
    assert!(db.idempotent_response("old2").await.unwrap().is_some());
    assert_eq!(db.purge_answers(at(3), 10).await.unwrap(), 1);
    assert_eq!(db.purge_answers(at(3), 10).await.unwrap(), 0);
    assert!(db.idempotent_response("k1").await.unwrap().is_some(), "a newer answer stays");
}

/// The delivery sweep sees every completed settlement without a receipt,
/// oldest first, and none with one.
async fn undelivered_completions_are_found(db: &CenterDb) {
    let mut w = World::new(3);
    let mut ids = Vec::new();
    for n in 0..3u64 {
        let (mut s, _) = w.create(&record(5));
        db.insert_settlement(&s, NOW).await.unwrap();
        completed(&mut s);
        if n == 1 {
            s = s.with_receipt("receipt".into()).unwrap();
        }
        let at = kessai_core::time::Timestamp::from_unix_s(NOW.unix_s() + n);
        db.update_settlement(&s, 1, at).await.unwrap();
        ids.push(s.id);
    }
    let found: Vec<_> = db.undelivered(10).await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(found, vec![ids[0].clone(), ids[2].clone()], "oldest first, the receipted one left out");
    // A completed settlement without its completion cannot be made, nor read
    // back from a stored record.
    let (s, _) = w.create(&record(5));
    let mut record_json = serde_json::to_value(&s).unwrap();
    record_json["phase"] = "completed".into();
    record_json["scp"] = serde_json::Value::Null;
    let read = serde_json::from_value::<kessai_center::purchase::Settlement>(record_json);
    assert!(read.is_err(), "{read:?}");

    // Two more completed in the same second as the first: ties go by id.
    for _ in 0..2 {
        let (mut s, _) = w.create(&record(5));
        db.insert_settlement(&s, NOW).await.unwrap();
        completed(&mut s);
        db.update_settlement(&s, 1, NOW).await.unwrap();
    }
    let all: Vec<_> = db.undelivered(10).await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(all.len(), 4);
    assert_eq!(all.last(), Some(&ids[2]));
    // Delivery is due once the completing instance's lease is over, the
    // longest due first; a claim takes it once, however many sweeps race.
    let at = |s: u64| kessai_core::time::Timestamp::from_unix_s(NOW.unix_s() + s);
    assert!(db.due_deliveries(NOW, 10).await.unwrap().is_empty(), "the completing instance holds them");
    let later = at(DELIVERY_LEASE_S + 10);
    let due = db.due_deliveries(later, 10).await.unwrap();
    assert_eq!(due.len(), 4);
    assert!(due.iter().all(|d| d.attempts == 0));
    let (a, b, c) = tokio::join!(
        db.claim_delivery(&due[0], at(100)),
        db.claim_delivery(&due[0], at(100)),
        db.claim_delivery(&due[0], at(100))
    );
    let claims = [a.unwrap(), b.unwrap(), c.unwrap()];
    assert_eq!(claims.iter().filter(|won| **won).count(), 1, "{claims:?}");
    let left = db.due_deliveries(later, 10).await.unwrap();
    assert_eq!(left.len(), 3, "the claimed one is not due while claimed");
    // A failed attempt: due again after its backoff, counted.
    db.delivery_failed(&due[0].settlement.id, at(40)).await.unwrap();
    let again = db.due_deliveries(at(40), 10).await.unwrap();
    let failed = again.iter().find(|d| d.settlement.id == due[0].settlement.id).unwrap();
    assert_eq!(failed.attempts, 1);
    assert!(!db.claim_delivery(&due[0], at(100)).await.unwrap(), "a stale read claims nothing");
}

/// The day's charge limit is reserved by compare-and-set; owed items are
/// stored once and claimed by one update at a time.
async fn reservations_and_owed_items(db: &CenterDb) {
    let card = card_id(9);
    let day = 1_794_960_000;
    assert_eq!(db.reserve_charge("vup_a", &card, day, 60_000, 100_000).await.unwrap(), Ok(()));
    // The same charge again reserves nothing more (a retried step).
    assert_eq!(db.reserve_charge("vup_a", &card, day, 60_000, 100_000).await.unwrap(), Ok(()));
    assert_eq!(db.reserve_charge("vup_b", &card, day, 50_000, 100_000).await.unwrap(), Err(60_000));
    assert_eq!(db.reserve_charge("vup_b", &card, day + 86_400, 50_000, 100_000).await.unwrap(), Ok(()), "another day");
    // Given back once, however often asked; a refused one kept nothing.
    db.release_charge("vup_a").await.unwrap();
    db.release_charge("vup_a").await.unwrap();
    assert_eq!(db.reserve_charge("vup_c", &card, day, 100_000, 100_000).await.unwrap(), Ok(()));
    assert_eq!(db.reserve_charge("vup_d", &card, day, 1, 100_000).await.unwrap(), Err(100_000));
    db.release_charge("vup_d").await.unwrap();
    assert_eq!(db.reserve_charge("vup_e", &card, day, 1, 100_000).await.unwrap(), Err(100_000));

    let owed = Owed {
        id: "owe_00000000000000000000000000000001".into(),
        status: OwedStatus::Owed,
        session: None,
        applied_by: None,
        body: OwedBody {
            card_id: card,
            kind: OwedKind::Correction { reference: "T-1".into() },
            direction: Direction::Debit,
            amount: Money::new(500, Currency::JPY).unwrap(),
            reason: "test".into(),
            created_at: NOW,
        },
    };
    assert!(db.insert_owed(&owed, NOW, Entries::none(), crate::trail("correction_added")).await.unwrap());
    assert!(
        !db.insert_owed(&owed, NOW, Entries::none(), crate::trail("correction_added")).await.unwrap(),
        "stored once"
    );
    assert_eq!(db.owed(&owed.id).await.unwrap().unwrap(), owed);
    assert_eq!(db.owed_for_card(&card, 10).await.unwrap().len(), 1);
    assert!(db.cancel_owed(&owed.id, NOW, Entries::none(), crate::trail("correction_cancelled")).await.unwrap());
    assert!(
        !db.cancel_owed(&owed.id, NOW, Entries::none(), crate::trail("correction_cancelled")).await.unwrap(),
        "cancelled once"
    );
    assert!(db.owed_for_card(&card, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn sqlite_registry_settlements_idempotency() {
    let (dir, db) = sqlite().await;
    registry_round_trips(&db).await;
    settlements_are_versioned_and_unique_per_bill(&db).await;
    idempotent_responses_keep_the_first(&db).await;
    undelivered_completions_are_found(&db).await;
    reservations_and_owed_items(&db).await;
    db.ready().await.unwrap();
    // A closed database answers no read, on either kind of reader, and is
    // not ready.
    db.close().await;
    assert!(db.ready().await.is_err());
    assert!(db.idempotent_response("k1").await.is_err());
    assert!(db.store_and_card(&StoreId::parse("mall").unwrap(), &card_id(1)).await.is_err());
    assert!(db.undelivered(10).await.is_err());
    // Opening an existing database again (the schema is already there) works,
    // and what was stored reads back alike through both readers.
    let again = CenterDb::open(&format!("sqlite:{}", dir.path().join("center.db").display())).await.unwrap();
    let undelivered = again.undelivered(10).await.unwrap();
    assert_eq!(undelivered.len(), 4);
    assert_eq!(again.idempotent_response("k1").await.unwrap(), Some(("h1".into(), 201, "{\"a\":1}".into())));
    // A completion whose record cannot be read is passed over (and logged),
    // not left to stop every later sweep.
    let raw = rusqlite::Connection::open(dir.path().join("center.db")).unwrap();
    raw.execute("UPDATE center_settlements SET record = 'garbage' WHERE id = ?1", [undelivered[0].id.as_str()])
        .unwrap();
    let due = again.due_deliveries(kessai_core::time::Timestamp::from_unix_s(NOW.unix_s() + 1_000), 10).await.unwrap();
    let mut due: Vec<_> = due.iter().map(|d| d.settlement.id.clone()).collect();
    due.sort();
    let mut expected: Vec<_> = undelivered[1..].iter().map(|s| s.id.clone()).collect();
    expected.sort();
    assert_eq!(due, expected);
    again.close().await;
}

#[tokio::test]
async fn postgres_registry_settlements_idempotency() {
    let Some(db) = postgres("registry").await else { return };
    db.ready().await.unwrap();
    registry_round_trips(&db).await;
    settlements_are_versioned_and_unique_per_bill(&db).await;
    idempotent_responses_keep_the_first(&db).await;
    undelivered_completions_are_found(&db).await;
    reservations_and_owed_items(&db).await;
}

/// SQLite group commit: writes waiting together share one transaction, yet
/// each is answered for itself — a racing compare-and-set loses alone, a
/// refused insert fails alone, and every other write is there afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_group_commit_answers_each_write_for_itself() {
    let (_dir, db) = sqlite().await;
    let mut w = World::new(4);
    db.put_card(&record(7), NOW).await.unwrap();
    let mut settlements = Vec::new();
    for _ in 0..24 {
        let (s, _) = w.create(&record(7));
        assert!(db.insert_settlement(&s, NOW).await.unwrap().is_none());
        settlements.push(s.cancel("test").unwrap());
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (n, s) in settlements.iter().enumerate() {
        // Two writers per settlement, both naming version 1: one wins.
        for _ in 0..2 {
            let (db, s) = (db.clone(), s.clone());
            tasks.spawn(async move { (true, db.update_settlement(&s, 1, NOW).await) });
        }
        if n == 12 {
            let db = db.clone();
            tasks.spawn(async move { (false, db.put_card(&record(7), NOW).await) });
        }
    }
    let (mut won, mut lost) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.unwrap() {
            (true, Ok(())) => won += 1,
            (true, Err(DbError::Conflict)) => lost += 1,
            (true, Err(e)) => panic!("update failed: {e}"),
            (false, outcome) => assert!(outcome.is_err(), "a card id is issued once"),
        }
    }
    assert_eq!((won, lost), (24, 24));
    for s in &settlements {
        let (stored, version) = db.settlement(&s.id).await.unwrap().unwrap();
        assert_eq!((stored.phase(), version), (Phase::Voided, 2));
    }
}

#[tokio::test]
async fn a_bad_url_is_refused() {
    assert!(matches!(CenterDb::open("mysql://x").await, Err(DbError::BadUrl)));
}

/// A data directory from before the books moved into the center's database:
/// its ledger file is merged into the center database, in one transaction,
/// and renamed; a second ledger is never merged over books already there.
#[tokio::test]
async fn a_separate_ledger_file_is_merged_once_into_the_center_database() {
    use kessai_center::books::{Books, Entries};
    let dir = tempfile::tempdir().unwrap();
    let card = kessai_core::ids::CardId::parse("0102030405060708").unwrap();
    let amount = kessai_core::Money::new(7_000, kessai_core::Currency::JPY).unwrap();
    let old_path = dir.path().join("ledger.sqlite");
    {
        // The old layout: the books in a ledger file of their own.
        let old = kessai_ledger::Ledger::open_sqlite(&old_path).await.unwrap();
        let entries = Entries::issue(9, &card, amount).unwrap();
        assert!(old.create_accounts(entries.accounts(), NOW.unix_s()).await.unwrap().is_empty());
        assert!(old.create_transfers(entries.transfers(), NOW.unix_s()).await.unwrap().is_empty());
        old.close().await;
    }
    let center_path = dir.path().join("center.sqlite");
    let db = CenterDb::open(&format!("sqlite:{}", center_path.display())).await.unwrap();
    let merged = kessai_center::merge::merge_sqlite_ledger(&center_path, &old_path).unwrap();
    assert_eq!((merged.accounts, merged.transfers), (2, 1));
    assert!(!old_path.exists() && merged.renamed_to.exists(), "the old file is renamed");
    db.ledger().check().await.unwrap();
    assert_eq!(Books::new(db.clone()).card_float(&card).await.unwrap(), Some((7_000, 0)));
    // Merging books into a database that has some is refused, and changes nothing.
    std::fs::copy(&merged.renamed_to, &old_path).unwrap();
    assert!(kessai_center::merge::merge_sqlite_ledger(&center_path, &old_path).is_err());
    assert!(old_path.exists(), "a refused merge renames nothing");
    assert_eq!(Books::new(db.clone()).card_float(&card).await.unwrap(), Some((7_000, 0)));
}

/// Instances starting at once take turns at the migrations (each applied
/// once), a restart applies nothing again, and a database newer than this
/// build is refused rather than used.
async fn migrations_take_turns_and_a_newer_schema_is_refused(url: &str) {
    let (a, b, c) = tokio::join!(CenterDb::open(url), CenterDb::open(url), CenterDb::open(url));
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    b.close().await;
    c.close().await;
    a.close().await;
    let again = CenterDb::open(url).await.unwrap();
    again.close().await;
    {
        use sqlx::Connection as _;
        sqlx::any::install_default_drivers();
        let any_url = url.replacen("sqlite:", "sqlite://", 1);
        let mut conn = sqlx::AnyConnection::connect(&any_url).await.unwrap();
        let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM kessai_center_schema ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert_eq!(versions, (1..=17).collect::<Vec<i64>>(), "each migration once");
        sqlx::query("INSERT INTO kessai_center_schema (version, description) VALUES (99, 'from the future')")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
    let refused = CenterDb::open(url).await;
    assert!(matches!(refused, Err(DbError::SchemaTooNew { found: 99, .. })), "{refused:?}");
}

#[tokio::test]
async fn migrations_take_turns_and_a_newer_schema_is_refused_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    migrations_take_turns_and_a_newer_schema_is_refused(&format!("sqlite:{}", dir.path().join("c.db").display())).await;
}

#[tokio::test]
async fn migrations_take_turns_and_a_newer_schema_is_refused_on_postgres() {
    let Some(url) = kessai_testkit::postgres_database("migrations").await else { return };
    migrations_take_turns_and_a_newer_schema_is_refused(&url).await;
}

/// Makes `s` a completed settlement as a completion step leaves it (through
/// its stored form: a completion can only be made by the card's proof).
fn completed(s: &mut kessai_center::purchase::Settlement) {
    let mut v = serde_json::to_value(&*s).unwrap();
    for (field, value) in [
        ("phase", serde_json::json!("completed")),
        ("scp", serde_json::Value::Null),
        ("balance_minor", serde_json::json!(50_000)),
        ("counter_at_offer", serde_json::json!(1)),
        ("debit_hash", serde_json::to_value(kessai_core::digest::Sha256Digest::of(b"debit")).unwrap()),
        ("offer_token", serde_json::json!("offer")),
        ("completion_token", serde_json::json!("completion")),
        ("card_counter", serde_json::json!(2)),
    ] {
        v[field] = value;
    }
    *s = serde_json::from_value(v).unwrap();
}

/// A step's extras that store only the request's answer.
fn with_answer(response: Option<SavedResponse>) -> kessai_center::db::StepExtras<'static> {
    kessai_center::db::StepExtras { response, ..Default::default() }
}
