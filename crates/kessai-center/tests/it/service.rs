//! The application server over real storage: SQLite for settlements and the
//! ledger, a real emulated card behind a relaying wallet. After every
//! scenario the books agree with the card and the ledger's invariants hold.

use std::sync::Arc;

use kessai_center::authorizer::Simulator;
use kessai_center::books::{Books, Entries};
use kessai_center::db::CenterDb;
use kessai_center::limits::ABANDONED_AFTER_S;
use kessai_center::purchase::{Phase, StepError};
use kessai_center::security::StateKey;
use kessai_center::service::{Center, CenterError, StepReply, parse_answers};
use kessai_core::ids::{PartyId, StoreId};
use kessai_core::keys::{SigningKey, Validity};
use kessai_core::messages::{bill, completion};
use kessai_core::random::SeededRandom;
use kessai_core::samples;
use kessai_core::time::{FixedClock, Timestamp};
use kessai_core::{Currency, Money};
use kessai_scp03::CommandApdu;

use crate::world::{CardReader, NOW, balance_of, card_id, funded_card, offer_create, offer_request, record};

pub struct Setup {
    pub _dir: tempfile::TempDir,
    /// The center's clock (the credit service provider's too, when a test
    /// runs one): moved with `set`.
    pub time: Arc<FixedClock>,
    /// The center database's URL.
    pub url: String,
    pub center: Center,
    pub mall_key: SigningKey,
    pub rng: SeededRandom,
    /// The bank holding the pool account, when a test runs one (deposit
    /// tokens): its teller books deposits.
    pub bank: Option<Arc<kessai_bsp::Bank>>,
}

pub async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("center.db").display());
    setup_on(dir, &url).await
}

/// The same on a fresh PostgreSQL database (`None`: skipped outside CI).
pub async fn setup_on_postgres(name: &str) -> Option<Setup> {
    let url = kessai_testkit::postgres_database(name).await?;
    Some(setup_on(tempfile::tempdir().unwrap(), &url).await)
}

pub(crate) async fn setup_on(dir: tempfile::TempDir, url: &str) -> Setup {
    let db = CenterDb::open(url).await.unwrap();
    let mut rng = SeededRandom::new(77);
    let mall_key = SigningKey::generate(&mut rng);
    crate::world::register_mall(&db, &mall_key).await;
    let time = Arc::new(FixedClock::new(NOW));
    let center = Center {
        books: Books::new(db.clone()),
        db,
        security: crate::world::security_server(StateKey::generate(&mut rng)),
        center_id: PartyId::parse(samples::CENTER).unwrap(),
        center_key: Arc::new(SigningKey::generate(&mut rng)),
        published_keys: Vec::new(),
        clock: time.clone(),
        random: Arc::new(kessai_core::random::SeededEntropy::new(78)),
        max_amount_minor: 1_000_000,
        outcomes: Default::default(),
        completed: Default::default(),
        in_flight: Default::default(),
        prepaid: Default::default(),
        clearing: Default::default(),
        tokens: None,
    };
    Setup { _dir: dir, time, url: url.to_owned(), center, mall_key, rng, bank: None }
}

/// Registers card `n` and records its funding in the books, as issuance.
pub async fn register_card(s: &Setup, n: u8, funded: u64) {
    s.center.db.put_card(&record(n), NOW).await.unwrap();
    s.center.books.open_card(&card_id(n), Currency::JPY, NOW.unix_s()).await.unwrap();
    if funded > 0 {
        let amount = Money::new(funded, Currency::JPY).unwrap();
        s.center.books.issue(u128::from(n) + 1000, &card_id(n), amount, NOW.unix_s()).await.unwrap();
    }
}

pub fn bill_token(s: &mut Setup) -> String {
    let (claims, b) = samples::bill(&mut s.rng, NOW).unwrap();
    bill::sign(&claims.clone().with_audience(crate::center_party()), &b, &s.mall_key).unwrap()
}

pub(crate) fn relay(card: &mut kessai_card::terminal::Terminal<CardReader>, reply: &StepReply) -> Vec<String> {
    reply
        .apdus
        .iter()
        .map(|h| {
            let cmd = CommandApdu::parse(&hex::decode(h).unwrap()).unwrap();
            hex::encode(crate::world::relay(card, &cmd).to_bytes())
        })
        .collect()
}

pub(crate) async fn check_books(s: &Setup, n: u8, card: &mut kessai_card::terminal::Terminal<CardReader>) {
    s.center.books.ledger().check().await.unwrap();
    let (float, held) = s.center.books.card_float(&card_id(n)).await.unwrap().unwrap();
    assert_eq!((float, held), (balance_of(card), 0), "the books' float equals the card's balance, nothing held");
}

#[tokio::test]
async fn a_purchase_moves_value_once_and_the_books_agree_with_the_card() {
    let mut s = setup().await;
    register_card(&s, 1, 50_000).await;
    let mut card = funded_card(1, 50_000);
    let token = bill_token(&mut s);

    let first = crate::world::opening(&mut card, &token, card_id(1));
    let r = s.center.create(offer_create(&token, card_id(1), first.clone()), Default::default()).await.unwrap();
    assert_eq!(r.phase, Phase::ReadingBalance);
    assert_eq!(r.apdus.len(), 3, "EXTERNAL AUTHENTICATE, the sealed READ LOG (uncollected) and READ BALANCE");
    // The same bill again before any DEBIT (a wallet that restarted), in a
    // session the wallet opened anew: the same settlement goes on.
    let again = s.center.create(offer_request(&mut card, &token, card_id(1)), Default::default()).await.unwrap();
    assert_eq!(again.settlement_id, r.settlement_id);
    assert_eq!(again.phase, Phase::ReadingBalance);
    assert_ne!(again.apdus, r.apdus, "another session's commands");
    // The first session's opening again is refused: the card left it.
    let replayed = s.center.create(offer_create(&token, card_id(1), first), Default::default()).await;
    assert!(matches!(replayed, Err(CenterError::Step(StepError::ReplayedOpening { .. }))), "{replayed:?}");
    let r = again;
    let id = r.settlement_id.clone();
    let r = s.center.offer(&id, parse_answers(&relay(&mut card, &r)).unwrap(), Default::default()).await.unwrap();
    assert_eq!(r.phase, Phase::Offered);
    assert!(r.offer.is_some());
    let (float, held) = s.center.books.card_float(&card_id(1)).await.unwrap().unwrap();
    assert_eq!((float, held), (50_000, 11_360), "the purchase is held while the cardholder decides");
    let answers = parse_answers(&relay(&mut card, &r)).unwrap();
    let done = s.center.complete(&id, answers.clone(), Default::default()).await.unwrap();
    assert_eq!(done.phase, Phase::Completed);
    let keys = {
        let mut k = kessai_core::keys::KeyDirectory::new();
        k.insert(s.center.center_id.clone(), s.center.center_key.public(), Validity::always()).unwrap();
        k
    };
    completion::verify(done.completion.as_ref().unwrap(), &keys, &FixedClock::new(NOW)).unwrap();
    // The same answer again is a step out of order; nothing moves twice.
    assert!(matches!(s.center.complete(&id, answers, Default::default()).await, Err(CenterError::Step(_))));
    let payee = StoreId::parse(samples::MEMBER).unwrap();
    assert_eq!(s.center.books.store_payable(&payee, Currency::JPY).await.unwrap(), 11_360);
    check_books(&s, 1, &mut card).await;
}

#[tokio::test]
async fn bad_bills_unknown_cards_and_reused_bills_are_refused() {
    let mut s = setup().await;
    register_card(&s, 2, 50_000).await;
    register_card(&s, 3, 50_000).await;
    let token = bill_token(&mut s);
    let mut tampered = token.clone().into_bytes();
    let mid = tampered.len() / 2;
    tampered[mid] ^= 0x01;
    let tampered = String::from_utf8(tampered).unwrap();
    let (mut two, mut three) = (funded_card(2, 50_000), funded_card(3, 50_000));
    let create = |token, card| offer_create(token, card, crate::world::no_opening());
    assert!(matches!(s.center.create(create(&tampered, card_id(2)), None).await, Err(CenterError::Bill(_))));
    // An unregistered card is refused once it proved itself (M4): here a
    // card with the issuer's keys that the registry does not list.
    let strangers_bill = bill_token(&mut s);
    let mut unlisted = funded_card(9, 50_000);
    let refused = s.center.create(offer_request(&mut unlisted, &strangers_bill, card_id(9)), None).await;
    assert!(matches!(refused, Err(CenterError::Step(StepError::UnknownCard(_)))), "{refused:?}");
    assert_eq!(balance_of(&mut unlisted), 50_000);
    assert!(
        s.center.db.list_settlements(&crate::profiles::of_card(9)).await.unwrap().settlements.is_empty(),
        "nothing stored"
    );
    s.center.create(offer_request(&mut two, &token, card_id(2)), None).await.unwrap();
    let in_use = s.center.create(offer_request(&mut three, &token, card_id(3)), None).await;
    assert!(matches!(in_use, Err(CenterError::BillInUse(_))), "{in_use:?}");
    // A bill signed by a key nobody registered.
    let stranger = SigningKey::generate(&mut s.rng);
    let (claims, b) = samples::bill(&mut s.rng, NOW).unwrap();
    let forged = bill::sign(&claims.clone().with_audience(crate::center_party()), &b, &stranger).unwrap();
    assert!(matches!(s.center.create(create(&forged, card_id(2)), None).await, Err(CenterError::Bill(_))));
}

#[tokio::test]
async fn an_interrupted_purchase_is_recovered_and_the_books_follow_the_card() {
    let mut s = setup().await;
    register_card(&s, 4, 50_000).await;
    let mut card = funded_card(4, 50_000);
    // Two purchases: the first card answer lost after the debit, the second
    // DEBIT never relayed.
    for (applied, expected) in [(true, Phase::Completed), (false, Phase::Voided)] {
        let token = bill_token(&mut s);
        let r = s.center.create(offer_request(&mut card, &token, card_id(4)), None).await.unwrap();
        let id = r.settlement_id.clone();
        let r = s.center.offer(&id, parse_answers(&relay(&mut card, &r)).unwrap(), Default::default()).await.unwrap();
        if applied {
            relay(&mut card, &r); // the answer is lost
        }
        let r = s.center.recover(&id, Default::default()).await.unwrap();
        let r = s
            .center
            .recover_authenticate(&id, parse_answers(&relay(&mut card, &r)).unwrap(), Default::default())
            .await
            .unwrap();
        let mut r = s
            .center
            .recover_status(&id, parse_answers(&relay(&mut card, &r)).unwrap(), Default::default())
            .await
            .unwrap();
        if r.phase == Phase::RecoveringBalance {
            r = s
                .center
                .recover_balance(&id, parse_answers(&relay(&mut card, &r)).unwrap(), Default::default())
                .await
                .unwrap();
        }
        assert_eq!(r.phase, expected);
        kessai_card::terminal::Terminal::select(&mut card).unwrap();
    }
    assert_eq!(balance_of(&mut card), 50_000 - 11_360);
    check_books(&s, 4, &mut card).await;
}

#[tokio::test]
async fn insufficient_balance_and_cancel_leave_nothing_held() {
    let mut s = setup().await;
    register_card(&s, 5, 1_000).await;
    let mut card = funded_card(5, 1_000);
    let token = bill_token(&mut s);
    let r = s.center.create(offer_request(&mut card, &token, card_id(5)), Default::default()).await.unwrap();
    let id = r.settlement_id.clone();
    let r = s.center.offer(&id, parse_answers(&relay(&mut card, &r)).unwrap(), Default::default()).await.unwrap();
    assert_eq!(r.phase, Phase::Voided);
    assert_eq!(r.reason_code.map(|r| r.as_str()), Some("insufficient_balance"));
    assert_eq!(r.balance_minor, Some(1_000));
    assert!(r.apdus.is_empty() && r.offer.is_none());
    check_books(&s, 5, &mut card).await;

    kessai_card::terminal::Terminal::select(&mut card).unwrap();
    let token = bill_token(&mut s);
    let r = s.center.create(offer_request(&mut card, &token, card_id(5)), None).await.unwrap();
    let r = s.center.cancel(&r.settlement_id, Default::default()).await.unwrap();
    assert_eq!(r.phase, Phase::Voided);
    check_books(&s, 5, &mut card).await;
}

/// A settlement abandoned at the balance step by a version that committed
/// its purchase hold in the ledger and then died before the settlement's own
/// commit (two databases, two commits): the hold froze the card's value and
/// every later purchase was refused. The sweep ends such settlements past
/// their deadline and voids the hold, exactly once however many sweepers
/// race, and the card pays again.
#[tokio::test]
async fn an_abandoned_settlement_is_voided_once_by_racing_sweepers_and_its_hold_released_on_sqlite() {
    abandoned_settlement(setup().await).await;
}

#[tokio::test]
async fn an_abandoned_settlement_is_voided_once_by_racing_sweepers_and_its_hold_released_on_postgres() {
    let Some(s) = setup_on_postgres("abandoned").await else { return };
    abandoned_settlement(s).await;
}

async fn abandoned_settlement(mut s: Setup) {
    let amount = Money::new(11_360, Currency::JPY).unwrap();
    register_card(&s, 4, amount.amount_minor()).await;
    let mut card = funded_card(4, amount.amount_minor());
    // 1. The wallet opens the session and reads the balance; the old hold
    //    is written as the old version did, apart from the settlement.
    let token = bill_token(&mut s);
    let r = s.center.create(offer_request(&mut card, &token, card_id(4)), Default::default()).await.unwrap();
    let id = r.settlement_id.clone();
    assert_eq!(r.phase, Phase::ReadingBalance);
    let stuck = s.center.settlement(&id).await.unwrap();
    let payee = StoreId::parse(samples::MEMBER).unwrap();
    let hold = Entries::purchase_hold(&stuck.transaction_id, &card_id(4), &payee, amount).unwrap();
    s.center.books.apply(hold, NOW.unix_s()).await.unwrap();
    assert_eq!(s.center.books.card_float(&card_id(4)).await.unwrap().unwrap(), (11_360, 11_360));
    // 2. The card's value is frozen: the next purchase is refused by the books.
    let refused = purchase(&mut s, 4, &mut card).await;
    assert!(matches!(refused, Err(CenterError::Books(_))), "{refused:?}");
    // 3. Before the deadline the sweep ends nothing.
    let sim = Simulator::new();
    assert_eq!(s.center.sweep_abandoned(&sim, NOW).await.unwrap(), 0);
    // 4. Past it, two sweepers race: each abandoned settlement ends once.
    let later = Timestamp::from_unix_s(NOW.unix_s() + ABANDONED_AFTER_S + 1);
    let (a, b) = tokio::join!(s.center.sweep_abandoned(&sim, later), s.center.sweep_abandoned(&sim, later));
    assert_eq!(a.unwrap() + b.unwrap(), 2, "the stuck settlement and the refused one, each once");
    let ended = s.center.settlement(&id).await.unwrap();
    assert_eq!((ended.phase(), ended.outcome().map(|(code, _)| code.as_str())), (Phase::Voided, Some("abandoned")));
    let states = s.center.books.ledger().lookup_pending_states(&[stuck.transaction_id.as_u128()]).await.unwrap();
    assert_eq!(states, vec![(stuck.transaction_id.as_u128(), kessai_ledger::PendingState::Voided)]);
    assert_eq!(s.center.sweep_abandoned(&sim, later).await.unwrap(), 0, "nothing is ended twice");
    check_books(&s, 4, &mut card).await;
    // 5. The card pays again.
    let paid = purchase(&mut s, 4, &mut card).await.unwrap();
    assert_eq!(paid.phase, Phase::Completed);
    assert_eq!(balance_of(&mut card), 0);
    check_books(&s, 4, &mut card).await;
}

/// Create → authenticate → balance → complete, with a new bill.
pub(crate) async fn purchase(
    s: &mut Setup,
    n: u8,
    card: &mut kessai_card::terminal::Terminal<CardReader>,
) -> Result<StepReply, CenterError> {
    let token = bill_token(s);
    let r = s.center.create(offer_request(card, &token, card_id(n)), Default::default()).await?;
    let id = r.settlement_id.clone();
    let r = s.center.offer(&id, parse_answers(&relay(card, &r)).unwrap(), Default::default()).await?;
    s.center.complete(&id, parse_answers(&relay(card, &r)).unwrap(), Default::default()).await
}

/// Randomness is passed in like the clock: two centers with the same seed,
/// clock, keys and card give the same run byte for byte (ids, session
/// challenges, the signed offer and completion).
#[tokio::test]
async fn a_center_run_replays_from_its_seed() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut s = setup().await;
        register_card(&s, 5, 50_000).await;
        let mut card = funded_card(5, 50_000);
        let token = bill_token(&mut s);
        let r = s.center.create(offer_request(&mut card, &token, card_id(5)), None).await.unwrap();
        let id = r.settlement_id.clone();
        let r = s.center.offer(&id, parse_answers(&relay(&mut card, &r)).unwrap(), Default::default()).await;
        let r = r.unwrap();
        let offer = r.offer.clone();
        let done = s.center.complete(&id, parse_answers(&relay(&mut card, &r)).unwrap(), Default::default()).await;
        runs.push((id, offer, done.unwrap().completion));
    }
    assert!(runs[0].1.is_some() && runs[0].2.is_some());
    assert_eq!(runs[0], runs[1], "the same seed, the same run");
}

/// H2: every store key the center has registered, revoked ones included,
/// goes into its key directory. Past 64 keys (33 merchants with a rotated
/// key each) that directory used to refuse to load, and every bill, refund
/// and receipt answered 500. Now bills still settle.
#[tokio::test]
async fn more_than_64_store_keys_do_not_stop_the_center() {
    let mut s = setup().await;
    register_card(&s, 6, 50_000).await;
    let mut card = funded_card(6, 50_000);
    for n in 0..40 {
        let id = StoreId::parse(&format!("merchant-{n}")).unwrap();
        let record = kessai_center::db::StoreRecord {
            id: id.clone(),
            name: kessai_core::messages::DisplayText::parse(&format!("Merchant {n}")).unwrap(),
            mall: None,
            notify_url: None,
            client_name: None,
            bank_account: None,
        };
        let (old, new) = (SigningKey::generate(&mut s.rng), SigningKey::generate(&mut s.rng));
        let keys = [(old.public(), Validity::always()), (new.public(), Validity::always())];
        s.center.register_store(&record, &keys, crate::tester()).await.unwrap();
        assert!(
            s.center
                .db
                .revoke_store_key(old.public().kid(), crate::world::NOW, crate::trail("store_key_revoked"))
                .await
                .unwrap(),
            "the rotated-out key"
        );
    }
    let keys = s.center.db.store_keys().await.unwrap();
    assert!(keys.len() > 64, "{} keys", keys.len());
    let done = purchase(&mut s, 6, &mut card).await.unwrap();
    assert_eq!(done.phase, Phase::Completed);
    check_books(&s, 6, &mut card).await;
}

/// The sweep and the wallet's balance step racing on one settlement: exactly
/// one wins the row; the books hold the purchase only if the offer won.
#[tokio::test]
async fn the_sweep_racing_the_balance_step_leaves_one_outcome() {
    for n in 7..11 {
        let mut s = setup().await;
        register_card(&s, n, 50_000).await;
        let mut card = funded_card(n, 50_000);
        let token = bill_token(&mut s);
        let r = s.center.create(offer_request(&mut card, &token, card_id(n)), None).await.unwrap();
        let id = r.settlement_id.clone();
        let answers = parse_answers(&relay(&mut card, &r)).unwrap();
        let later = Timestamp::from_unix_s(NOW.unix_s() + ABANDONED_AFTER_S + 1);
        let sim = Simulator::new();
        let (offered, swept) =
            tokio::join!(s.center.offer(&id, answers, Default::default()), s.center.sweep_abandoned(&sim, later));
        let ended = s.center.settlement(&id).await.unwrap();
        let (_, held) = s.center.books.card_float(&card_id(n)).await.unwrap().unwrap();
        match (offered, swept.unwrap()) {
            (Ok(r), 0) => {
                assert_eq!((r.phase, ended.phase()), (Phase::Offered, Phase::Offered));
                assert_eq!(held, 11_360, "the offer holds the purchase");
            }
            (Err(CenterError::Step(_) | CenterError::Db(_)), 1) => {
                assert_eq!(ended.outcome().map(|(code, _)| code.as_str()), Some("abandoned"));
                assert_eq!(held, 0, "nothing held for an abandoned settlement");
            }
            other => panic!("exactly one wins: {other:?}"),
        }
        s.center.books.ledger().check().await.unwrap();
    }
}

/// 64 cards pay at one store at the same moment, in the three profiles,
/// each purchase's steps racing every other's: every purchase completes (none is answered
/// with a conflict or a serialization error), the store's payable is the sum
/// of them, every card's float equals its balance, and the books check.
async fn many_purchases_at_one_store(mut s: Setup) {
    const CARDS: u8 = 64;
    for n in 1..=CARDS {
        register_card(&s, n, 50_000).await;
    }
    let tokens: Vec<String> = (1..=CARDS).map(|_| bill_token(&mut s)).collect();
    let center = Arc::new(s.center);
    let mut tasks = Vec::new();
    for (n, token) in (1..=CARDS).zip(tokens) {
        let center = center.clone();
        tasks.push(tokio::spawn(async move {
            let mut card = funded_card(n, 50_000);
            // The three profiles race one another.
            let profile = kessai_core::profile::Profile::ALL[usize::from(n) % 3];
            let (done, _) = crate::profiles::pay(&center, &mut card, &token, n, profile).await;
            assert_eq!(done.phase, Phase::Completed);
            (n, card)
        }));
    }
    let mut cards = Vec::new();
    for task in tasks {
        cards.push(task.await.unwrap());
    }
    let payee = StoreId::parse(samples::MEMBER).unwrap();
    assert_eq!(center.books.store_payable(&payee, Currency::JPY).await.unwrap(), u64::from(CARDS) * 11_360);
    center.books.ledger().check().await.unwrap();
    for (n, mut card) in cards {
        let (float, held) = center.books.card_float(&card_id(n)).await.unwrap().unwrap();
        assert_eq!((float, held), (balance_of(&mut card), 0), "card {n}");
        assert_eq!(float, 50_000 - 11_360, "card {n}");
    }
}

/// Steps of many purchases at once, as they meet in one write group on
/// PostgreSQL (and one group commit on SQLite), each ending as if alone: a
/// create whose hold the books refuse (the card's float is short) stores
/// nothing, in the same groups as creates, offers and completions that go
/// through; a completion sent twice at once completes once; the store's
/// payable is what completed, each card's float its balance.
async fn steps_in_one_group_end_as_if_alone(mut s: Setup) {
    use kessai_core::profile::Profile;
    const CARDS: u8 = 48;
    let short = |n: u8| n.is_multiple_of(4);
    for n in 1..=CARDS {
        register_card(&s, n, if short(n) { 5_000 } else { 50_000 }).await;
    }
    let tokens: Vec<String> = (1..=CARDS).map(|_| bill_token(&mut s)).collect();
    let center = Arc::new(s.center);
    let mut tasks = Vec::new();
    for (n, token) in (1..=CARDS).zip(tokens) {
        let center = center.clone();
        tasks.push(tokio::spawn(async move {
            let mut card = funded_card(n, 50_000);
            if short(n) {
                let refused =
                    center.create(crate::profiles::create_in(&mut card, &token, n, Profile::Direct), None).await;
                assert!(matches!(refused, Err(CenterError::Books(_))), "card {n}: {refused:?}");
                return (n, card, false);
            }
            if n % 4 == 2 {
                let r = center.create(crate::profiles::create_in(&mut card, &token, n, Profile::Direct), None).await;
                let r = r.unwrap();
                let answers = parse_answers(&relay(&mut card, &r)).unwrap();
                let (a, b) = tokio::join!(
                    center.complete(&r.settlement_id, answers.clone(), Default::default()),
                    center.complete(&r.settlement_id, answers, Default::default())
                );
                let completed =
                    [&a, &b].iter().filter(|r| r.as_ref().is_ok_and(|r| r.phase == Phase::Completed)).count();
                assert!(completed >= 1, "card {n}: {a:?} {b:?}");
                return (n, card, true);
            }
            let profile = Profile::ALL[usize::from(n) % 3];
            let (done, _) = crate::profiles::pay(&center, &mut card, &token, n, profile).await;
            assert_eq!(done.phase, Phase::Completed);
            (n, card, true)
        }));
    }
    let mut paid = 0;
    for task in tasks {
        let (n, mut card, completed) = task.await.unwrap();
        let (float, held) = center.books.card_float(&card_id(n)).await.unwrap().unwrap();
        if completed {
            paid += 1;
            assert_eq!((float, held), (balance_of(&mut card), 0), "card {n}");
            assert_eq!(float, 50_000 - 11_360, "card {n}: debited once");
        } else {
            assert_eq!((float, held), (5_000, 0), "card {n}: nothing held for a refused create");
            assert_eq!(balance_of(&mut card), 50_000, "card {n}: never debited");
        }
    }
    let payee = StoreId::parse(samples::MEMBER).unwrap();
    assert_eq!(center.books.store_payable(&payee, Currency::JPY).await.unwrap(), paid * 11_360);
    let stored = center.db.list_settlements(&Default::default()).await.unwrap().settlements;
    assert_eq!(stored.len() as u64, paid, "a refused create stores no settlement");
    assert!(stored.iter().all(|s| s.phase() == Phase::Completed));
    center.books.ledger().check().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_in_one_group_end_as_if_alone_on_sqlite() {
    steps_in_one_group_end_as_if_alone(setup().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_in_one_group_end_as_if_alone_on_postgres() {
    let Some(s) = setup_on_postgres("one_group").await else { return };
    steps_in_one_group_end_as_if_alone(s).await;
}

/// The server ends every session of the center's (as a restart or an
/// operator's `pg_terminate_backend` does) between two purchases: the next
/// purchases, at once and in a row, go through without an error. The
/// connections the center holds for its step reads are found dropped and
/// made again; its pools test a connection before lending it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_the_server_ended_fail_no_purchase_on_postgres() {
    use sqlx::Connection as _;
    let Some(mut s) = setup_on_postgres("ended_sessions").await else { return };
    for n in 1..=4 {
        register_card(&s, n, 50_000).await;
    }
    let mut cards: Vec<_> = (1..=4).map(|n| funded_card(n, 50_000)).collect();
    for (n, card) in (1..=4).zip(cards.iter_mut()) {
        let token = bill_token(&mut s);
        let (done, _) = crate::profiles::pay(&s.center, card, &token, n, kessai_core::profile::Profile::Offer).await;
        assert_eq!(done.phase, Phase::Completed);
    }
    let mut admin = sqlx::PgConnection::connect(&s.url).await.unwrap();
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(ended.len() >= 3 && ended.iter().all(|e| *e), "the center's sessions were ended: {ended:?}");
    for (n, card) in (1..=4).zip(cards.iter_mut()) {
        let token = bill_token(&mut s);
        let (done, _) = crate::profiles::pay(&s.center, card, &token, n, kessai_core::profile::Profile::Offer).await;
        assert_eq!(done.phase, Phase::Completed, "card {n}");
        assert_eq!(balance_of(card), 50_000 - 2 * 11_360, "card {n}");
    }
    let payee = StoreId::parse(samples::MEMBER).unwrap();
    assert_eq!(s.center.books.store_payable(&payee, Currency::JPY).await.unwrap(), 8 * 11_360);
    s.center.books.ledger().check().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_purchases_at_one_store_all_complete_on_sqlite() {
    many_purchases_at_one_store(setup().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_purchases_at_one_store_all_complete_on_postgres() {
    let Some(s) = setup_on_postgres("hot_store").await else { return };
    many_purchases_at_one_store(s).await;
}
