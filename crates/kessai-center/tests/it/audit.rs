//! The examination of card logs (#20): a card's log, collected by a
//! statement session, against the books. A clean run finds nothing; each
//! kind of difference, planted in the card or in the collected copy of its
//! log, is found and named, recorded once, and stays open until resolved.
//! The audit never changes the books.

use kessai_card::protocol::{TransferRequest, TxId, debit_command};
use kessai_card::terminal::Terminal;
use kessai_center::audit::DifferenceKind;
use kessai_center::books::initial_value_id;
use kessai_center::statement::StatementPhase;
use kessai_core::profile::Profile;
use kessai_core::{Currency, Money};
use kessai_scp03::KeyVersion;
use kessai_scp03::diversify::diversify;
use sqlx::Connection as _;

use kessai_center::service::parse_answers;

use crate::service::{Setup, bill_token, setup};
use crate::statement::relay_all;
use crate::world::{CardReader, KVN, NOW, balance_of, card_id, funded_card_by, masters, record};

/// Card 1, issued with JPY 50,000 the way `kessai center issue-card` does:
/// its funding credit under the issuance's transaction id.
async fn issued(s: &Setup) -> Terminal<CardReader> {
    let card = card_id(1);
    s.center.db.put_card(&record(1), NOW).await.unwrap();
    s.center.books.open_card(&card, Currency::JPY, NOW.unix_s()).await.unwrap();
    let value = Money::new(50_000, Currency::JPY).unwrap();
    s.center.books.issue(initial_value_id(&card), &card, value, NOW.unix_s()).await.unwrap();
    funded_card_by(1, 50_000, initial_value_id(&card).to_be_bytes())
}

/// A statement session: the card's whole log is read, and collected.
async fn collect(s: &Setup, card: &mut Terminal<CardReader>) -> usize {
    Terminal::select(card).unwrap();
    let r = s.center.statement_create(card_id(1)).await.unwrap();
    let id = r.statement_id.clone();
    let mut r =
        s.center.statement_authenticate(&id, parse_answers(&relay_all(card, &r.apdus)).unwrap(), None).await.unwrap();
    while r.phase != StatementPhase::Done {
        r = s.center.statement_read(&id, parse_answers(&relay_all(card, &r.apdus)).unwrap(), None).await.unwrap();
    }
    r.entries.unwrap().len()
}

async fn kinds(s: &Setup) -> Vec<DifferenceKind> {
    let mut kinds: Vec<DifferenceKind> =
        s.center.audit(NOW).await.unwrap().differences.iter().map(|d| d.kind).collect();
    kinds.sort_by_key(|k| k.as_str());
    kinds
}

/// A plant in the card itself: a DEBIT of `amount` under card 1's keys that
/// the center never sealed (someone holding the keys).
fn debit_the_center_never_sealed(card: &mut Terminal<CardReader>, amount: u64) {
    Terminal::select(card).unwrap();
    let keys = diversify(&masters(0x40), card_id(1).as_bytes(), KeyVersion::new(KVN).unwrap());
    let session = card.open_session(keys, [9; 8]).unwrap();
    let request = TransferRequest {
        tx_id: TxId([0xAB; 16]),
        amount_minor: amount,
        counterpart: [0; 8],
        order_ref: [0; 16],
        time_unix_s: 0,
    };
    assert_eq!(card.secure(session, &debit_command(&request)).unwrap().1.sw().raw(), 0x9000);
}

/// Runs `sql` on the center's database (a plant in the collected copy).
async fn plant(s: &Setup, sql: &'static str) {
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", s._dir.path().join("center.db").display());
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    sqlx::query(sql).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn the_audit_finds_nothing_in_a_clean_log_and_names_each_planted_difference() {
    let mut s = setup().await;
    let mut card = issued(&s).await;
    for profile in [Profile::Offer, Profile::Confirmed] {
        let bill = bill_token(&mut s);
        Terminal::select(&mut card).unwrap();
        let (done, _) = crate::profiles::pay(&s.center, &mut card, &bill, 1, profile).await;
        assert_eq!(done.phase, kessai_center::purchase::Phase::Completed);
    }
    assert_eq!(collect(&s, &mut card).await, 3, "the issuance credit and two debits");
    assert_eq!(collect(&s, &mut card).await, 3, "read again: collected once");
    let float = s.center.books.card_float(&card_id(1)).await.unwrap();

    // Clean: nothing.
    let report = s.center.audit(NOW).await.unwrap();
    assert_eq!((report.cards, report.records, report.differences.len()), (1, 3, 0), "{report:?}");

    // The collected copy says another amount for counter 2.
    plant(&s, "UPDATE center_card_log SET amount_minor = amount_minor + 1 WHERE counter = 2").await;
    assert_eq!(kinds(&s).await, [DifferenceKind::AmountDiffers]);
    plant(&s, "UPDATE center_card_log SET amount_minor = amount_minor - 1 WHERE counter = 2").await;
    // Counter 2 is lost from the copy: a gap, and the books' debit at 2 is
    // not in the card's log.
    plant(&s, "CREATE TABLE kept AS SELECT * FROM center_card_log WHERE counter = 2").await;
    plant(&s, "DELETE FROM center_card_log WHERE counter = 2").await;
    assert_eq!(kinds(&s).await, [DifferenceKind::Gap, DifferenceKind::MissingOnCard]);
    plant(&s, "INSERT INTO center_card_log SELECT * FROM kept").await;
    // The same transaction again at a later counter: a replay.
    plant(
        &s,
        "INSERT INTO center_card_log SELECT card_id, 4, 'replayed', kind, transaction_id, amount_minor, counterpart,
         time_unix_s, balance_after_minor, collected_at FROM kept",
    )
    .await;
    let found = kinds(&s).await;
    assert!(found.contains(&DifferenceKind::Replay), "{found:?}");
    plant(&s, "DELETE FROM center_card_log WHERE counter = 4").await;

    // On the card itself: a DEBIT the center never sealed (someone with the
    // card's keys). Collected, it is missing in the books, and the card's
    // balance is not the float.
    debit_the_center_never_sealed(&mut card, 700);
    assert_eq!(collect(&s, &mut card).await, 4);
    assert_eq!(kinds(&s).await, [DifferenceKind::BalanceDiffers, DifferenceKind::MissingInBooks]);
    assert_eq!(balance_of(&mut card), 50_000 - 2 * 11_360 - 700);

    // Each difference was recorded once, stays open until resolved, and is
    // not reopened by a later run.
    let open = s.center.db.differences(true, 100).await.unwrap();
    let mut recorded: Vec<&str> = open.iter().map(|d| d.kind.as_str()).collect();
    recorded.sort_unstable();
    assert_eq!(recorded, ["amount_differs", "balance_differs", "gap", "missing_in_books", "missing_on_card", "replay"]);
    assert_eq!(s.center.audit(NOW).await.unwrap().new, 0, "found again, recorded once");
    let id = open.iter().find(|d| d.kind == "amount_differs").unwrap().id.clone();
    let ops = crate::operator("ops-1");
    assert!(s.center.db.resolve_difference(&id, &ops, "a test plant, taken back", NOW).await.unwrap());
    assert!(!s.center.db.resolve_difference(&id, &ops, "again", NOW).await.unwrap(), "resolved once");
    let rows = s.center.db.trail(Some(&id), None, 10).await.unwrap();
    assert_eq!((rows.len(), rows[0].entry.action.as_str()), (1, "difference_resolved"), "one row, of the resolving");
    assert_eq!(s.center.db.differences(true, 100).await.unwrap().len(), 5);
    let all = s.center.db.differences(false, 100).await.unwrap();
    let resolved = all.iter().find(|d| d.id == id).unwrap();
    assert_eq!((resolved.status.as_str(), resolved.resolved_by.as_deref()), ("resolved", Some("ops-1")));

    // The audit read the books and changed nothing in them.
    assert_eq!(s.center.books.card_float(&card_id(1)).await.unwrap(), float);
    s.center.books.ledger().check().await.unwrap();
}

/// A card whose log holds 64 records, none collected (a card from before
/// collection, or one the center has not seen in a while): `credits`
/// small credits made directly with the card's keys after its funding.
fn full_log(n: u8) -> Terminal<CardReader> {
    let mut card = funded_card_by(n, 50_000, initial_value_id(&card_id(n)).to_be_bytes());
    let keys = diversify(&masters(0x40), card_id(n).as_bytes(), KeyVersion::new(KVN).unwrap());
    let mut session = card.open_session(keys, [3; 8]).unwrap();
    for i in 1..u8::try_from(kessai_card::limits::LOG_CAPACITY).unwrap() {
        let request = TransferRequest {
            tx_id: TxId([i; 16]),
            amount_minor: 1,
            counterpart: [0; 8],
            order_ref: [0; 16],
            time_unix_s: 0,
        };
        let (next, answer) = card.secure(session, &kessai_card::protocol::credit_command(&request)).unwrap();
        assert_eq!(answer.sw().raw(), 0x9000);
        session = next;
    }
    Terminal::select(&mut card).unwrap();
    card
}

/// Every purchase session collects the card's oldest uncollected records
/// and tells the card, so a full log never stops it: in the first
/// embodiment in the same session, before the DEBIT; in the second the
/// next session (a card full of never-collected records then refuses the
/// DEBIT with its own status word once, recovery collects and voids it,
/// and the next purchase pays).
#[tokio::test]
async fn every_purchase_session_collects_the_cards_log_so_a_full_log_never_stops_it() {
    let mut s = setup().await;
    // Card 2: the first embodiment pays at once on a full log.
    s.center.db.put_card(&record(2), NOW).await.unwrap();
    s.center.books.open_card(&card_id(2), Currency::JPY, NOW.unix_s()).await.unwrap();
    let value = Money::new(50_000 + 63, Currency::JPY).unwrap();
    s.center.books.issue(initial_value_id(&card_id(2)), &card_id(2), value, NOW.unix_s()).await.unwrap();
    let mut card = full_log(2);
    for (round, profile) in
        [Profile::Offer, Profile::Confirmed, Profile::Direct, Profile::Offer].into_iter().enumerate()
    {
        let bill = bill_token(&mut s);
        Terminal::select(&mut card).unwrap();
        let (done, _) = crate::profiles::pay(&s.center, &mut card, &bill, 2, profile).await;
        assert_eq!(done.phase, kessai_center::purchase::Phase::Completed, "round {round}, {profile}");
    }
    let collected = s.center.db.collected_log(&card_id(2)).await.unwrap();
    let counters: Vec<u32> = collected.iter().map(|e| e.counter).collect();
    assert_eq!(counters, (1..=12).collect::<Vec<u32>>(), "three records a session, oldest first, each once");
    assert!(card.reader_mut().card().state().log_collected() >= 9, "the card was told");
    assert_eq!(card.reader_mut().card().state().log().count(), kessai_card::limits::LOG_CAPACITY);

    // Card 3: the second embodiment on a full log nothing collected.
    s.center.db.put_card(&record(3), NOW).await.unwrap();
    s.center.books.open_card(&card_id(3), Currency::JPY, NOW.unix_s()).await.unwrap();
    s.center.books.issue(initial_value_id(&card_id(3)), &card_id(3), value, NOW.unix_s()).await.unwrap();
    let mut card = full_log(3);
    let bill = bill_token(&mut s);
    let r = s.center.create(crate::profiles::create_in(&mut card, &bill, 3, Profile::Confirmed), None).await.unwrap();
    let answers = relay_all(&mut card, &r.apdus);
    assert!(answers.last().unwrap().ends_with("6a8b"), "the card refuses to drop an uncollected record");
    let refused = s.center.complete(&r.settlement_id, parse_answers(&answers).unwrap(), Default::default()).await;
    assert!(refused.is_err(), "{refused:?}");
    let phase = crate::profiles::recover(&s, &mut card, &r.settlement_id).await;
    assert_eq!(phase, kessai_center::purchase::Phase::Voided, "never applied");
    assert_eq!(s.center.db.collected_through(&card_id(3)).await.unwrap(), Some(3), "recovery collected");
    let bill = bill_token(&mut s);
    Terminal::select(&mut card).unwrap();
    let (done, _) = crate::profiles::pay(&s.center, &mut card, &bill, 3, Profile::Confirmed).await;
    assert_eq!(done.phase, kessai_center::purchase::Phase::Completed, "the next purchase pays");
    assert_eq!(balance_of(&mut card), 50_000 + 63 - 11_360);
    s.center.books.ledger().check().await.unwrap();
}

/// The same on PostgreSQL: collected, examined, recorded once, resolved.
#[tokio::test]
async fn the_audit_records_and_resolves_differences_on_postgres() {
    let Some(mut s) = crate::service::setup_on_postgres("audit").await else { return };
    let mut card = issued(&s).await;
    let bill = bill_token(&mut s);
    let (done, _) = crate::profiles::pay(&s.center, &mut card, &bill, 1, Profile::Offer).await;
    assert_eq!(done.phase, kessai_center::purchase::Phase::Completed);
    assert_eq!(collect(&s, &mut card).await, 2);
    assert!(s.center.audit(NOW).await.unwrap().differences.is_empty(), "clean");
    debit_the_center_never_sealed(&mut card, 700);
    collect(&s, &mut card).await;
    assert_eq!(kinds(&s).await, [DifferenceKind::BalanceDiffers, DifferenceKind::MissingInBooks]);
    assert_eq!(s.center.audit(NOW).await.unwrap().new, 0, "recorded once");
    let open = s.center.db.differences(true, 10).await.unwrap();
    assert_eq!(open.len(), 2);
    // Resolved in the console (#22): listed, a viewer refused, an
    // operator's note recorded with its trail row.
    use crate::console::{app, ask, form_token, give_login, log_in};
    use axum::http::StatusCode;
    use kessai_center::db::Role;
    let center = std::sync::Arc::new(s.center);
    let console = app(&center);
    give_login(&center.db, "op2", Role::Operator, "operator-password-2").await;
    give_login(&center.db, "viewer", Role::Viewer, "viewer-password-12").await;
    let operator = log_in(&console, "op2", "operator-password-2").await;
    let viewer = log_in(&console, "viewer", "viewer-password-12").await;
    let (_, _, page) = ask(&console, "GET", "/console/differences", Some("viewer"), Some(&viewer), None).await;
    assert!(page.contains(&open[0].id) && page.contains(&open[1].id), "{page}");
    let resolve = format!("/console/differences/{}/resolve", open[0].id);
    let form = format!("form_token={}&reason=checked+against+the+card", form_token(&page));
    let (status, _, _) = ask(&console, "POST", &resolve, Some("viewer"), Some(&viewer), Some(&form)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a viewer resolves nothing");
    let (_, _, page) = ask(&console, "GET", "/console/differences", Some("op2"), Some(&operator), None).await;
    let form = format!("form_token={}&reason=checked+against+the+card", form_token(&page));
    let (status, _, _) = ask(&console, "POST", &resolve, Some("op2"), Some(&operator), Some(&form)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, _) = ask(&console, "POST", &resolve, Some("op2"), Some(&operator), Some(&form)).await;
    assert_eq!(status, StatusCode::CONFLICT, "resolved once");
    assert_eq!(center.db.differences(true, 10).await.unwrap().len(), 1);
    assert_eq!(center.db.differences(false, 10).await.unwrap().len(), 2);
    let rows = center.db.trail(Some(&open[0].id), None, 10).await.unwrap();
    assert_eq!((rows.len(), rows[0].entry.operator.as_str(), rows[0].entry.role.as_str()), (1, "op2", "operator"));
    assert!(rows[0].entry.after.contains("checked against the card"), "{:?}", rows[0].entry);
}
