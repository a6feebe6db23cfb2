//! Charges (value updates paid by credit card) as labelled scenarios: the
//! center over real SQLite storage and ledger, the built-in authorizer
//! simulator, and a real emulated card behind a wallet that only relays.
//! After every scenario the books agree with the card and the ledger's
//! invariants hold.

use std::collections::BTreeSet;
use std::sync::Arc;

use kessai_card::terminal::Terminal;
use kessai_center::authorizer::{AuthorizationState, Authorizer, AuthorizerError, PaymentCard, Simulator};
use kessai_center::books::{Books, Entries};
use kessai_center::db::CenterDb;
use kessai_center::security::StateKey;
use kessai_center::service::{Center, parse_answers};
use kessai_center::update::{ChargeRequest, UpdateError, UpdateReply};
use kessai_center::value::{UpdatePhase, UpdateStepError};
use kessai_core::digest::Sha256Digest;
use kessai_core::ids::{PartyId, UpdateId};
use kessai_core::jws::JwsError;
use kessai_core::keys::{KeyDirectory, SigningKey, Validity};
use kessai_core::messages::value_update::Direction;
use kessai_core::messages::value_update_check::{ExpectedUpdate, ValueUpdateRefused, verify_value_update};
use kessai_core::random::{OsRandom, SeededRandom};
use kessai_core::samples;
use kessai_core::time::FixedClock;
use kessai_core::{Currency, Money};
use kessai_scp03::{CommandApdu, ResponseApdu};

use crate::world::{CardReader, NOW, balance_of, card_id, funded_card, record};

pub(crate) const APPROVE: &str = "4242424242424242";

/// A center over files that outlive it, so a test can "crash" it (drop
/// every in-memory thing) and open a new instance on the same storage.
pub(crate) struct Charging {
    _dir: tempfile::TempDir,
    /// The center's database: a SQLite file in the directory, or PostgreSQL.
    pub(crate) url: String,
    pub(crate) center: Center,
    pub(crate) sim: Arc<Simulator>,
}

pub(crate) async fn open_center(url: &str) -> Center {
    let db = CenterDb::open(url).await.unwrap();
    Center {
        books: Books::new(db.clone()),
        db,
        security: crate::world::security_server(StateKey::from_bytes([7; 32])),
        center_id: PartyId::parse(samples::CENTER).unwrap(),
        center_key: Arc::new(SigningKey::generate(&mut SeededRandom::new(55))),
        published_keys: Vec::new(),
        clock: Arc::new(FixedClock::new(NOW)),
        // Not seeded: a restarted center must not draw the same ids again.
        random: Arc::new(OsRandom),
        max_amount_minor: 1_000_000,
        outcomes: Default::default(),
        completed: Default::default(),
        in_flight: Default::default(),
        prepaid: Default::default(),
        clearing: Default::default(),
        tokens: None,
    }
}

/// The built-in authorizer on the center's database, through a handle of
/// its own: the authorizer is another party, so the center's injected
/// faults and restarts leave it alone.
pub(crate) async fn authorizer(url: &str) -> Arc<Simulator> {
    Arc::new(Simulator::in_database(CenterDb::open(url).await.unwrap()))
}

impl Charging {
    pub(crate) async fn new() -> Charging {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("center.db").display());
        let center = open_center(&url).await;
        let sim = authorizer(&url).await;
        Charging { _dir: dir, url, center, sim }
    }

    /// The same on a fresh PostgreSQL database (`None`: skipped outside CI).
    pub(crate) async fn on_postgres(name: &str) -> Option<Charging> {
        let url = kessai_testkit::postgres_database(name).await?;
        let center = open_center(&url).await;
        let sim = authorizer(&url).await;
        Some(Charging { _dir: tempfile::tempdir().unwrap(), url, center, sim })
    }

    /// A crash: every in-memory thing of the center is dropped and a new
    /// instance opens the same database and ledger. (The authorizer is
    /// another party; it keeps its authorizations.)
    pub(crate) async fn restart(&mut self) {
        self.center.db.close().await;
        self.center = open_center(&self.url).await;
    }

    pub(crate) async fn register(&self, n: u8, funded: u64) {
        self.center.db.put_card(&record(n), NOW).await.unwrap();
        self.center.books.open_card(&card_id(n), Currency::JPY, NOW.unix_s()).await.unwrap();
        if funded > 0 {
            let amount = Money::new(funded, Currency::JPY).unwrap();
            self.center.books.issue(u128::from(n) + 5000, &card_id(n), amount, NOW.unix_s()).await.unwrap();
        }
    }

    /// Opens a charge: the card and the limits are checked; nothing is
    /// authorized yet.
    pub(crate) async fn create(&self, n: u8, amount: u64) -> Result<UpdateReply, UpdateError> {
        let request = ChargeRequest { id: UpdateId::generate(&mut OsRandom), card_id: card_id(n), amount: jpy(amount) };
        self.center.create_charge(request).await
    }

    /// The charge's authenticate step: the card's answer to `r`, with the
    /// payment card `number`, which is authorized once the card proved
    /// itself.
    pub(crate) async fn authorize(
        &self,
        card: &mut Terminal<CardReader>,
        r: &UpdateReply,
        number: &str,
    ) -> Result<UpdateReply, UpdateError> {
        let answers = relay(card, r);
        let payment = Some(PaymentCard::parse(number, "12/30", "123").unwrap());
        self.center.update_authenticate(self.sim.as_ref(), &r.charge_id, answers, payment, None).await
    }

    /// create → authenticate with `number`: the charge authorized, reading
    /// the card's balance.
    pub(crate) async fn open(
        &self,
        card: &mut Terminal<CardReader>,
        n: u8,
        amount: u64,
        number: &str,
    ) -> Result<UpdateReply, UpdateError> {
        let r = self.create(n, amount).await?;
        self.authorize(card, &r, number).await
    }

    pub(crate) fn center_keys(&self) -> KeyDirectory {
        let mut k = KeyDirectory::new();
        k.insert(self.center.center_id.clone(), self.center.center_key.public(), Validity::always()).unwrap();
        k
    }

    pub(crate) async fn auth_state(&self, reference: &str) -> AuthorizationState {
        self.sim.authorizations().await.unwrap().into_iter().find(|a| a.reference.as_str() == reference).unwrap().state
    }

    /// The books' float equals the card's balance, nothing held, and the
    /// ledger's invariants hold.
    pub(crate) async fn check_books(&self, n: u8, card: &mut Terminal<CardReader>) {
        self.center.books.ledger().check().await.unwrap();
        let (float, held) = self.center.books.card_float(&card_id(n)).await.unwrap().unwrap();
        let credits_pending = self.center.books.card_credits_pending(&card_id(n)).await.unwrap();
        assert_eq!((float, held, credits_pending), (balance_of(card), 0, 0), "books follow the card");
    }
}

/// The authorizer's reference of an authorized charge.
pub(crate) fn funding(r: &UpdateReply) -> &str {
    r.funding_ref.as_deref().expect("authorized")
}

/// The first day (UTC) of the tests' clock, whose charge limit they use.
fn today() -> u64 {
    NOW.unix_s() - NOW.unix_s() % kessai_center::limits::DAY_S
}

pub(crate) fn jpy(minor: u64) -> Money {
    Money::new(minor, Currency::JPY).unwrap()
}

pub(crate) fn commands(reply: &UpdateReply) -> Vec<CommandApdu> {
    reply.apdus.iter().map(|h| CommandApdu::parse(&hex::decode(h).unwrap()).unwrap()).collect()
}

/// The wallet relays the reply's commands and returns the card's answers.
pub(crate) fn relay(card: &mut Terminal<CardReader>, reply: &UpdateReply) -> Vec<ResponseApdu> {
    let hex: Vec<String> =
        commands(reply).iter().map(|c| hex::encode(crate::world::relay(card, c).to_bytes())).collect();
    parse_answers(&hex).unwrap()
}

/// create → authenticate → balance: the reply carrying SIG5 and the CREDIT.
pub(crate) async fn to_offer(c: &Charging, card: &mut Terminal<CardReader>, n: u8, amount: u64) -> UpdateReply {
    let r = c.open(card, n, amount, APPROVE).await.unwrap();
    let r = c.center.update_offer(c.sim.as_ref(), &r.charge_id, relay(card, &r), Default::default()).await.unwrap();
    assert_eq!(r.phase, UpdatePhase::Offered, "{r:?}");
    r
}

/// Recovery in a new session, to its end.
pub(crate) async fn recover(c: &Charging, card: &mut Terminal<CardReader>, id: &str) -> UpdateReply {
    let sim = c.sim.as_ref();
    let r = c.center.update_recover(sim, id, Default::default()).await.unwrap();
    let r = c.center.update_recover_authenticate(sim, id, relay(card, &r), Default::default()).await.unwrap();
    let mut r = c.center.update_recover_status(sim, id, relay(card, &r), Default::default()).await.unwrap();
    if r.phase == UpdatePhase::RecoveringBalance {
        r = c.center.update_recover_balance(sim, id, relay(card, &r), Default::default()).await.unwrap();
    }
    r
}

#[tokio::test]
async fn happy_path_adds_value_captures_and_posts() {
    let c = Charging::new().await;
    c.register(1, 20_000).await;
    let mut card = funded_card(1, 20_000);
    let sim = c.sim.as_ref();

    // step 1: the card and the limits, then INITIALIZE UPDATE. Nothing is
    // authorized before the card proved itself (M5).
    let r = c.create(1, 5_000).await.unwrap();
    assert_eq!(r.phase, UpdatePhase::Authenticating);
    assert!(r.funding_ref.is_none(), "{r:?}");
    assert!(c.sim.authorizations().await.unwrap().is_empty());
    let id = r.charge_id.clone();
    assert!(id.starts_with("vup_"));
    // step 2: the card's cryptogram, then the authorization; EXTERNAL
    // AUTHENTICATE + sealed READ LOG (uncollected) and READ BALANCE.
    let r = c.authorize(&mut card, &r, APPROVE).await.unwrap();
    assert_eq!((r.phase, r.apdus.len()), (UpdatePhase::ReadingBalance, 3));
    assert!(funding(&r).starts_with("auth_"), "{r:?}");
    assert_eq!(c.auth_state(funding(&r)).await, AuthorizationState::Authorized);
    // step 3: SIG5 and the sealed CREDIT; the funding is held in the books.
    let r = c.center.update_offer(sim, &id, relay(&mut card, &r), Default::default()).await.unwrap();
    assert_eq!(r.phase, UpdatePhase::Offered);
    let mut sealed = commands(&r);
    let credit = sealed.pop().unwrap();
    assert_eq!(credit.to_bytes()[..2], [0x84, 0x34], "a sealed CREDIT");
    // The session collected the card's log (its funding credit) and tells
    // the card so, ahead of the CREDIT.
    assert_eq!(c.center.db.collected_through(&card_id(1)).await.unwrap(), Some(1));
    assert_eq!(sealed.iter().map(|c| c.to_bytes()[1]).collect::<Vec<_>>(), [0x3C], "LOG COLLECTED");
    assert_eq!(c.center.books.card_credits_pending(&card_id(1)).await.unwrap(), 5_000);
    assert_eq!(balance_of(&mut card), 20_000, "nothing credited before the wallet relays");
    // step 4: the wallet checks SIG5 against the card, the amount and the command.
    let token = r.value_update.clone().unwrap();
    let mut seen = BTreeSet::new();
    let expected = ExpectedUpdate {
        update_id: &id,
        card_id: card_id(1),
        direction: Direction::Credit,
        amount: jpy(5_000),
        command: &credit.to_bytes(),
    };
    let v = verify_value_update(&token, &c.center_keys(), &FixedClock::new(NOW), expected, &mut |j| {
        !seen.insert(j.to_owned())
    })
    .unwrap();
    let v = v.message();
    assert_eq!(v.direction(), Direction::Credit);
    assert_eq!((v.balance_before(), v.balance_after(), v.amount()), (jpy(20_000), jpy(25_000), jpy(5_000)));
    assert_eq!(v.command_hash(), Sha256Digest::of(&credit.to_bytes()));
    assert_eq!(v.funding_ref().as_str(), funding(&r));
    assert_eq!(v.card_id(), card_id(1));
    // step 5: the card credits; the center checks the sealed answer, posts, captures.
    let done = c.center.update_complete(sim, &id, relay(&mut card, &r), Default::default()).await.unwrap();
    assert_eq!(done.phase, UpdatePhase::Completed);
    assert_eq!(done.balance_after_minor, Some(25_000));
    assert_eq!(balance_of(&mut card), 25_000);
    assert_eq!(c.auth_state(funding(&r)).await, AuthorizationState::Captured);
    assert_eq!(c.center.books.credit_funding(Currency::JPY).await.unwrap(), 5_000);
    c.check_books(1, &mut card).await;
}

#[tokio::test]
async fn each_decline_changes_nothing() {
    let c = Charging::new().await;
    c.register(2, 1_000).await;
    let mut card = funded_card(2, 1_000);
    for (number, code) in [
        ("4000000000000002", "card_declined"),
        ("4000000000009995", "insufficient_funds"),
        ("4000000000000069", "expired_card"),
        ("4000000000000119", "processing_error"),
    ] {
        let r = c.create(2, 5_000).await.unwrap();
        let err = c.authorize(&mut card, &r, number).await.unwrap_err();
        let UpdateError::Authorizer(a) = &err else { panic!("{number}: {err}") };
        assert_eq!(a.code().as_str(), code, "{number}");
        // The declined charge is over, with the decline's code.
        let ended = c.center.value_update(&r.charge_id).await.unwrap();
        assert_eq!((ended.phase(), ended.outcome().map(|(c, _)| c.as_str())), (UpdatePhase::Voided, Some(code)));
    }
    // A typo fails the Luhn check before anything is asked.
    let typo = PaymentCard::parse("4242424242424241", "12/30", "123").unwrap_err();
    assert_eq!(
        (typo.clone(), typo.code()),
        (AuthorizerError::InvalidCardNumber, kessai_http::ErrorCode::InvalidCardNumber)
    );
    // An expiry month already over is expired too.
    let old = PaymentCard::parse(APPROVE, "01/20", "123").unwrap();
    let r = c.create(2, 5_000).await.unwrap();
    let answers = relay(&mut card, &r);
    let err = c.center.update_authenticate(c.sim.as_ref(), &r.charge_id, answers, Some(old), None).await.unwrap_err();
    assert!(matches!(err, UpdateError::Authorizer(AuthorizerError::ExpiredCard)), "{err}");
    assert!(c.sim.authorizations().await.unwrap().is_empty(), "no authorization held");
    assert_eq!(balance_of(&mut card), 1_000);
    c.check_books(2, &mut card).await;
}

#[tokio::test]
async fn limits_are_checked_before_any_authorization() {
    let c = Charging::new().await;
    // Card max balance is 100,000: 90,000 on it, 20,000 more is too much,
    // which is told once the card proved itself (M4), before anything is
    // authorized; the charge ends with that code.
    c.register(3, 90_000).await;
    let mut full = funded_card(3, 90_000);
    let r = c.create(3, 20_000).await.unwrap();
    let err = c.authorize(&mut full, &r, APPROVE).await.unwrap_err();
    assert!(matches!(err, UpdateError::OverMaxBalance { held_minor: 90_000, .. }), "{err}");
    let ended = c.center.value_update(&r.charge_id).await.unwrap();
    assert_eq!(
        (ended.phase(), ended.outcome().map(|(c, _)| c.as_str())),
        (UpdatePhase::Voided, Some("over_max_balance"))
    );
    // Amounts out of the center's range: at create.
    assert!(matches!(c.create(3, 0).await, Err(UpdateError::AmountOutOfRange { .. })));
    assert!(matches!(c.create(3, 100_001).await, Err(UpdateError::AmountOutOfRange { .. })));
    // A card the registry does not list (with the issuer's keys): opened
    // like any other, refused after its proof.
    let mut unlisted = funded_card(9, 0);
    let r = c.create(9, 1_000).await.unwrap();
    let err = c.authorize(&mut unlisted, &r, APPROVE).await.unwrap_err();
    assert!(matches!(err, UpdateError::UnknownCard(_)), "{err}");
    assert!(c.sim.authorizations().await.unwrap().is_empty(), "the simulator recorded no authorization");
    assert_eq!((balance_of(&mut full), balance_of(&mut unlisted)), (90_000, 0));

    // Daily limit (JPY 100,000): a pending 60,000 counts; another 60,000 does
    // not fit. (The registry allows this card 300,000, so the maximum
    // balance is not what refuses it.)
    let mut roomy = record(4);
    roomy.max_balance_minor = 300_000;
    c.center.db.put_card(&roomy, NOW).await.unwrap();
    let mut card = funded_card(4, 0);
    // The same card in another reader (another wallet, or an attacker who
    // has it for a moment): the daily limit is the card's, wherever it is.
    let mut twin = funded_card(4, 0);
    let first = to_offer(&c, &mut card, 4, 60_000).await;
    let err = c.open(&mut twin, 4, 60_000, APPROVE).await.unwrap_err();
    assert!(matches!(err, UpdateError::OverDailyLimit { charged_minor: 60_000, .. }), "{err}");
    assert_eq!(c.sim.authorizations().await.unwrap().len(), 1, "only the first charge was authorized");
    // Completed, it still counts; 40,000 more fits exactly.
    c.center
        .update_complete(c.sim.as_ref(), &first.charge_id, relay(&mut card, &first), Default::default())
        .await
        .unwrap();
    assert!(matches!(c.open(&mut twin, 4, 40_001, APPROVE).await, Err(UpdateError::OverDailyLimit { .. })));
    c.open(&mut twin, 4, 40_000, APPROVE).await.unwrap();
    c.center.books.ledger().check().await.unwrap();
}

#[tokio::test]
async fn card_removed_after_authorization_voids_it_and_creates_no_value() {
    let c = Charging::new().await;
    c.register(5, 10_000).await;
    let mut card = funded_card(5, 10_000);
    let sim = c.sim.as_ref();

    // Removed before any CREDIT exists: cancel voids the authorization at once.
    let r = c.open(&mut card, 5, 3_000, APPROVE).await.unwrap();
    let cancelled = c.center.update_cancel(sim, &r.charge_id, Default::default()).await.unwrap();
    assert_eq!((cancelled.phase, cancelled.reason_code.map(|r| r.as_str())), (UpdatePhase::Voided, Some("cancelled")));
    assert_eq!(c.auth_state(funding(&r)).await, AuthorizationState::Voided);

    // Removed after the CREDIT was handed out but before it was relayed.
    let r = to_offer(&c, &mut card, 5, 3_000).await;
    let stale = commands(&r).pop().unwrap();
    // Cancelling is refused now: only the card can settle it.
    let err = c.center.update_cancel(sim, &r.charge_id, Default::default()).await.unwrap_err();
    assert!(matches!(err, UpdateError::Step(UpdateStepError::OutOfOrder { .. })), "{err}");
    Terminal::select(&mut card).unwrap(); // the card comes back
    let v = recover(&c, &mut card, &r.charge_id).await;
    assert_eq!((v.phase, v.reason_code.map(|r| r.as_str())), (UpdatePhase::Voided, Some("not_applied")));
    assert_eq!(c.auth_state(funding(&r)).await, AuthorizationState::Voided);
    // The new session ended the old one: the stale CREDIT can never apply.
    Terminal::select(&mut card).unwrap();
    assert_ne!(crate::world::relay(&mut card, &stale).sw().raw(), 0x9000);
    assert_eq!(balance_of(&mut card), 10_000, "no value created");
    assert_eq!(c.center.books.credit_funding(Currency::JPY).await.unwrap(), 0);
    c.check_books(5, &mut card).await;
}

#[tokio::test]
async fn a_lost_answer_is_recovered_as_completed_exactly_once() {
    let c = Charging::new().await;
    c.register(6, 10_000).await;
    let mut card = funded_card(6, 10_000);
    let r = to_offer(&c, &mut card, 6, 2_500).await;
    let answer = relay(&mut card, &r); // the card credited; the answer is lost
    Terminal::select(&mut card).unwrap();
    let done = recover(&c, &mut card, &r.charge_id).await;
    assert_eq!((done.phase, done.balance_after_minor), (UpdatePhase::Completed, Some(12_500)));
    // The lost answer turning up later changes nothing.
    let err = c.center.update_complete(c.sim.as_ref(), &r.charge_id, answer, Default::default()).await.unwrap_err();
    assert!(matches!(err, UpdateError::Step(UpdateStepError::OutOfOrder { phase: UpdatePhase::Completed, .. })));
    assert_eq!(balance_of(&mut card), 12_500);
    assert_eq!(c.auth_state(funding(&r)).await, AuthorizationState::Captured);
    assert_eq!(c.center.books.credit_funding(Currency::JPY).await.unwrap(), 2_500);
    c.check_books(6, &mut card).await;
}

#[tokio::test]
async fn a_crash_at_every_step_is_handled_exactly_once() {
    let mut c = Charging::new().await;
    c.register(7, 10_000).await;
    let mut card = funded_card(7, 10_000);
    let sim = c.sim.clone();

    let r = c.create(7, 4_000).await.unwrap();
    let id = r.charge_id.clone();
    c.restart().await;
    let answers = relay(&mut card, &r);
    let approve = || Some(PaymentCard::parse(APPROVE, "12/30", "123").unwrap());
    let r = c.center.update_authenticate(sim.as_ref(), &id, answers.clone(), approve(), None).await.unwrap();
    c.restart().await;
    // The same step again (a wallet retrying without its key): refused, nothing moved.
    let err = c.center.update_authenticate(sim.as_ref(), &id, answers, approve(), None).await.unwrap_err();
    assert!(matches!(err, UpdateError::Step(UpdateStepError::OutOfOrder { .. })));

    // A crash after the hold was written but before the row: the retry meets `exists`.
    let answers = relay(&mut card, &r);
    let stored = c.center.value_update(&id).await.unwrap();
    let hold = Entries::charge_hold(&stored.transaction_id, &card_id(7), jpy(4_000)).unwrap();
    c.center.books.apply(hold, NOW.unix_s()).await.unwrap();
    c.restart().await;
    let r = c.center.update_offer(sim.as_ref(), &id, answers.clone(), Default::default()).await.unwrap();
    assert_eq!(r.phase, UpdatePhase::Offered);
    assert_eq!(c.center.books.card_credits_pending(&card_id(7)).await.unwrap(), 4_000, "held once");
    c.restart().await;
    assert!(
        c.center.update_offer(sim.as_ref(), &id, answers, Default::default()).await.is_err(),
        "a second offer is out of order"
    );

    // A crash after posting and capturing but before the row: the retry completes once.
    let answer = relay(&mut card, &r);
    let post = Entries::charge_resolve(&stored.transaction_id, jpy(4_000), true).unwrap();
    c.center.books.apply(post, NOW.unix_s()).await.unwrap();
    let reference = kessai_core::messages::Reference::parse(funding(&r)).unwrap();
    sim.capture(&reference, jpy(4_000)).await.unwrap();
    c.restart().await;
    let done = c.center.update_complete(sim.as_ref(), &id, answer.clone(), Default::default()).await.unwrap();
    assert_eq!(done.phase, UpdatePhase::Completed);
    c.restart().await;
    assert!(c.center.update_complete(sim.as_ref(), &id, answer, Default::default()).await.is_err());
    assert_eq!(balance_of(&mut card), 14_000, "credited exactly once");
    assert_eq!(c.center.books.credit_funding(Currency::JPY).await.unwrap(), 4_000, "posted exactly once");
    assert_eq!(c.auth_state(funding(&r)).await, AuthorizationState::Captured);
    c.check_books(7, &mut card).await;

    // A crash in the middle of recovery: it starts over and voids exactly once.
    Terminal::select(&mut card).unwrap();
    let r = to_offer(&c, &mut card, 7, 1_000).await;
    let id = r.charge_id.clone();
    Terminal::select(&mut card).unwrap();
    let rr = c.center.update_recover(sim.as_ref(), &id, Default::default()).await.unwrap();
    c.restart().await;
    c.center.update_recover_authenticate(sim.as_ref(), &id, relay(&mut card, &rr), Default::default()).await.unwrap();
    c.restart().await;
    let v = recover(&c, &mut card, &id).await;
    assert_eq!(v.phase, UpdatePhase::Voided);
    assert_eq!(c.auth_state(funding(&r)).await, AuthorizationState::Voided);
    assert_eq!(balance_of(&mut card), 14_000);
    c.check_books(7, &mut card).await;
}

#[tokio::test]
async fn a_tampered_or_replayed_value_update_is_refused_by_the_wallet() {
    let c = Charging::new().await;
    c.register(8, 10_000).await;
    let mut card = funded_card(8, 10_000);
    let r = to_offer(&c, &mut card, 8, 1_000).await;
    let token = r.value_update.clone().unwrap();
    let credit = commands(&r).pop().unwrap().to_bytes();
    let keys = c.center_keys();
    let clock = FixedClock::new(NOW);
    let id = r.charge_id.as_str();
    let good = ExpectedUpdate {
        update_id: id,
        card_id: card_id(8),
        direction: Direction::Credit,
        amount: jpy(1_000),
        command: &credit,
    };
    let mut seen = BTreeSet::new();
    let mut check = |token: &str, expected: ExpectedUpdate<'_>, clock: &FixedClock| {
        verify_value_update(token, &keys, clock, expected, &mut |j| !seen.insert(j.to_owned()))
    };

    // tampered payload: the signature no longer covers it.
    let mut bytes = token.clone().into_bytes();
    let dot = token.find('.').unwrap();
    bytes[dot + 10] = if bytes[dot + 10] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    assert!(matches!(check(&tampered, good, &clock), Err(ValueUpdateRefused::Token(_))));
    // another command, card, amount or update than announced.
    let other_cmd = [credit.clone(), vec![0]].concat();
    assert!(matches!(
        check(&token, ExpectedUpdate { command: &other_cmd, ..good }, &clock),
        Err(ValueUpdateRefused::CommandHash)
    ));
    assert!(matches!(
        check(&token, ExpectedUpdate { card_id: card_id(1), ..good }, &clock),
        Err(ValueUpdateRefused::Card { .. })
    ));
    assert!(matches!(
        check(&token, ExpectedUpdate { amount: jpy(999), ..good }, &clock),
        Err(ValueUpdateRefused::Amount { .. })
    ));
    assert!(matches!(
        check(&token, ExpectedUpdate { update_id: "vup_other", ..good }, &clock),
        Err(ValueUpdateRefused::Update { .. })
    ));
    // expired.
    let late = FixedClock::new(NOW);
    late.advance_s(kessai_center::limits::VALUE_UPDATE_LIFETIME_S + 61);
    assert!(matches!(check(&token, good, &late), Err(ValueUpdateRefused::Token(JwsError::Expired { .. }))));
    // accepted once, then refused as a replay.
    check(&token, good, &clock).unwrap();
    assert!(matches!(check(&token, good, &clock), Err(ValueUpdateRefused::Replayed(_))));
    // a signature by someone other than the center.
    let mut strangers = KeyDirectory::new();
    let stranger = SigningKey::generate(&mut SeededRandom::new(9));
    strangers.insert(c.center.center_id.clone(), stranger.public(), Validity::always()).unwrap();
    let err = verify_value_update(&token, &strangers, &clock, good, &mut |_| false).unwrap_err();
    assert!(matches!(err, ValueUpdateRefused::Token(_)));
    assert_eq!(balance_of(&mut card), 10_000, "nothing relayed");
}

/// L2: a crash between the authorization and the step's commit leaves an
/// authorization under the charge id and its day's reservation, keyed by
/// it. The retried step gets the same authorization and reserves nothing
/// more; the same create again names the same charge.
#[tokio::test]
async fn a_step_retried_after_a_crash_names_the_same_charge_authorization_and_reservation() {
    let c = Charging::new().await;
    c.register(9, 10_000).await;
    let mut card = funded_card(9, 10_000);
    let id = UpdateId::generate(&mut OsRandom);
    let request = || ChargeRequest { id: id.clone(), card_id: card_id(9), amount: jpy(2_000) };
    let r = c.center.create_charge(request()).await.unwrap();
    // A crash after the charge was stored, before the wallet got the answer:
    // the same charge with a fresh session.
    let again = c.center.create_charge(request()).await.unwrap();
    assert_eq!(
        (again.charge_id.as_str(), again.phase, again.apdus.len()),
        (id.as_str(), UpdatePhase::Authenticating, 1)
    );
    assert_eq!(r.charge_id, again.charge_id);
    // A crash after the authorization and the reservation, before the step
    // was stored.
    let held = kessai_center::authorizer::AuthorizationRequest {
        card: &PaymentCard::parse(APPROVE, "12/30", "123").unwrap(),
        amount: jpy(2_000),
        charge_id: id.as_str(),
        now: NOW,
    };
    let reference = c.sim.authorize(held).await.unwrap();
    c.center.db.reserve_charge(id.as_str(), &card_id(9), today(), 2_000, 100_000).await.unwrap().unwrap();
    let r = c.authorize(&mut card, &again, APPROVE).await.unwrap();
    assert_eq!((r.charge_id.as_str(), funding(&r)), (id.as_str(), reference.as_str()));
    assert_eq!(c.sim.authorizations().await.unwrap().len(), 1);
    // Reserved once: 98,000 is what is left of the day.
    let probe = UpdateId::generate(&mut OsRandom);
    let left = c.center.db.reserve_charge(probe.as_str(), &card_id(9), today(), 98_001, 100_000).await.unwrap();
    assert_eq!(left, Err(2_000));
    let sim = c.sim.as_ref();
    let r = c.center.update_offer(sim, id.as_str(), relay(&mut card, &r), Default::default()).await.unwrap();
    // After the CREDIT exists, the same create answers the charge as it stands.
    let late = c.center.create_charge(request()).await.unwrap();
    assert_eq!((late.phase, late.apdus.len()), (UpdatePhase::Offered, 0));
    let done = c.center.update_complete(sim, id.as_str(), relay(&mut card, &r), Default::default()).await.unwrap();
    assert_eq!(done.phase, UpdatePhase::Completed);
    assert_eq!(balance_of(&mut card), 12_000);
    c.check_books(9, &mut card).await;
}

#[tokio::test]
async fn a_card_found_over_its_maximum_at_the_balance_step_is_voided_before_any_credit() {
    let c = Charging::new().await;
    // The books do not yet know the card's 95,000 (say, loaded elsewhere);
    // the balance read inside the secure session is what decides.
    c.register(10, 0).await;
    let mut card = funded_card(10, 95_000);
    let sim = c.sim.as_ref();
    let r = c.open(&mut card, 10, 10_000, APPROVE).await.unwrap();
    let authorization = funding(&r).to_owned();
    let r = c.center.update_offer(sim, &r.charge_id, relay(&mut card, &r), Default::default()).await.unwrap();
    assert_eq!((r.phase, r.reason_code.map(|r| r.as_str())), (UpdatePhase::Voided, Some("over_max_balance")));
    assert!(r.apdus.is_empty() && r.value_update.is_none(), "no CREDIT, no SIG5");
    assert_eq!(r.balance_minor, Some(95_000));
    assert_eq!(c.auth_state(&authorization).await, AuthorizationState::Voided);
    assert_eq!(c.center.books.card_credits_pending(&card_id(10)).await.unwrap(), 0);
    assert_eq!(balance_of(&mut card), 95_000);
    c.center.books.ledger().check().await.unwrap();
}

#[tokio::test]
async fn concurrent_charges_never_pass_the_daily_limit_together_and_a_voided_one_gives_it_back() {
    let c = Charging::new().await;
    c.register(9, 0).await;
    let (mut card, mut twin) = (funded_card(9, 0), funded_card(9, 0));
    // Two charges of JPY 60,000 at once against the JPY 100,000 daily limit.
    let (a, b) = tokio::join!(c.open(&mut card, 9, 60_000, APPROVE), c.open(&mut twin, 9, 60_000, APPROVE));
    let (ok, refused) = match (a, b) {
        (Ok(r), Err(e)) | (Err(e), Ok(r)) => (r, e),
        other => panic!("exactly one fits the limit: {other:?}"),
    };
    assert!(matches!(refused, UpdateError::OverDailyLimit { charged_minor: 60_000, .. }), "{refused:?}");
    assert_eq!(c.sim.authorizations().await.unwrap().len(), 1, "the refused one was never authorized");
    // A decline gives its reservation back at once.
    assert!(matches!(c.open(&mut twin, 9, 30_000, "4000000000000002").await, Err(UpdateError::Authorizer(_))));
    assert!(matches!(c.open(&mut twin, 9, 40_001, APPROVE).await, Err(UpdateError::OverDailyLimit { .. })));
    // Cancelling the open charge gives its 60,000 back.
    c.center.update_cancel(c.sim.as_ref(), &ok.charge_id, Default::default()).await.unwrap();
    assert_eq!(c.auth_state(funding(&ok)).await, AuthorizationState::Voided);
    let again = c.open(&mut twin, 9, 60_000, APPROVE).await.unwrap();
    assert_eq!(again.phase, UpdatePhase::ReadingBalance);
}

/// C1: an authorization that can no longer be captured when the card
/// confirms (expired or voided at the acquirer) never leaves spendable
/// value: the capture comes before the post, so a refused capture posts
/// nothing. The credit stays pending, which the card cannot spend.
#[tokio::test]
async fn a_refused_capture_posts_no_value_on_sqlite() {
    a_refused_capture_posts_no_value(Charging::new().await).await;
}

#[tokio::test]
async fn a_refused_capture_posts_no_value_on_postgres() {
    let Some(c) = Charging::on_postgres("refused_capture").await else { return };
    a_refused_capture_posts_no_value(c).await;
}

async fn a_refused_capture_posts_no_value(c: Charging) {
    c.register(21, 10_000).await;
    let mut card = funded_card(21, 10_000);
    let sim = c.sim.as_ref();
    let r = to_offer(&c, &mut card, 21, 50_000).await;
    let auth = kessai_core::messages::Reference::parse(funding(&r)).unwrap();
    c.sim.void(&auth).await.unwrap();
    let answers = relay(&mut card, &r);
    let done = c.center.update_complete(sim, &r.charge_id, answers.clone(), Default::default()).await.unwrap();
    assert_eq!((done.phase, done.reason_code.map(|r| r.as_str())), (UpdatePhase::Voided, Some("funding_refused")));
    assert_eq!(balance_of(&mut card), 60_000, "the card applied the credit");
    assert_eq!(c.auth_state(funding(&r)).await, AuthorizationState::Voided, "never captured");
    let (float, held) = c.center.books.card_float(&card_id(21)).await.unwrap().unwrap();
    assert_eq!((float, held), (10_000, 0), "nothing posted without a capture");
    assert_eq!(c.center.books.card_credits_pending(&card_id(21)).await.unwrap(), 0, "the credit's hold is voided");
    assert_eq!(c.center.books.credit_funding(Currency::JPY).await.unwrap(), 0, "nothing owed by the authorizer");
    c.center.books.ledger().check().await.unwrap();
    // The same answer again: the step is over, nothing moves twice.
    let again = c.center.update_complete(sim, &r.charge_id, answers, Default::default()).await;
    assert!(matches!(again, Err(UpdateError::Step(UpdateStepError::OutOfOrder { .. }))), "{again:?}");
    // 2. The card is presented: the unfunded value comes off it, and the
    //    books post nothing for it; afterwards they follow the card again.
    Terminal::select(&mut card).unwrap();
    let owed = match c.center.apply_owed(card_id(21), UpdateId::generate(&mut OsRandom)).await.unwrap() {
        kessai_center::owed::Applying::Update(r) => *r,
        kessai_center::owed::Applying::Nothing => panic!("the unfunded value is owed back"),
    };
    assert_eq!((owed.direction, owed.amount), (Direction::Debit, jpy(50_000)));
    let id = owed.charge_id.clone();
    let r = c.center.update_authenticate(sim, &id, relay(&mut card, &owed), None, None).await.unwrap();
    let r = c.center.update_offer(sim, &id, relay(&mut card, &r), Default::default()).await.unwrap();
    let r = c.center.update_complete(sim, &id, relay(&mut card, &r), Default::default()).await.unwrap();
    assert_eq!(r.phase, UpdatePhase::Completed);
    Terminal::select(&mut card).unwrap();
    assert_eq!(balance_of(&mut card), 10_000);
    c.check_books(21, &mut card).await;
    assert!(matches!(
        c.center.apply_owed(card_id(21), UpdateId::generate(&mut OsRandom)).await.unwrap(),
        kessai_center::owed::Applying::Nothing
    ));
}

/// C1, M5: the same create twice at once (one Idempotency-Key: a wallet
/// retry after a client timeout, or an attacker) opens one charge; the same
/// authenticate step twice at once leaves one authorization and one
/// reservation, and exactly one of the two goes on.
#[tokio::test]
async fn identical_requests_racing_leave_one_charge_and_one_authorization_on_sqlite() {
    identical_requests_racing_leave_one_charge_and_one_authorization(Charging::new().await).await;
}

#[tokio::test]
async fn identical_requests_racing_leave_one_charge_and_one_authorization_on_postgres() {
    let Some(c) = Charging::on_postgres("identical_creates").await else { return };
    identical_requests_racing_leave_one_charge_and_one_authorization(c).await;
}

async fn identical_requests_racing_leave_one_charge_and_one_authorization(c: Charging) {
    c.register(22, 10_000).await;
    let mut card = funded_card(22, 10_000);
    let sim = c.sim.as_ref();
    let id = UpdateId::generate(&mut OsRandom);
    let req = || ChargeRequest { id: id.clone(), card_id: card_id(22), amount: jpy(40_000) };
    let (a, b) = tokio::join!(c.center.create_charge(req()), c.center.create_charge(req()));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.charge_id.as_str(), b.charge_id.as_str()), (id.as_str(), id.as_str()));
    // Which of the two sessions is the live one depends on the order they
    // were stored in: the wallet goes on with a fresh one.
    let r = c.center.create_charge(req()).await.unwrap();
    let answers = relay(&mut card, &r);
    let approve = || Some(PaymentCard::parse(APPROVE, "12/30", "123").unwrap());
    let (a, b) = tokio::join!(
        c.center.update_authenticate(sim, id.as_str(), answers.clone(), approve(), None),
        c.center.update_authenticate(sim, id.as_str(), answers, approve(), None)
    );
    let r = match (a, b) {
        (Ok(r), Err(e)) | (Err(e), Ok(r)) => {
            let lost = matches!(
                e,
                UpdateError::Db(_) | UpdateError::Books(_) | UpdateError::Step(UpdateStepError::OutOfOrder { .. })
            );
            assert!(lost, "the loser lost the row: {e:?}");
            r
        }
        other => panic!("exactly one goes on: {other:?}"),
    };
    assert_eq!(c.sim.authorizations().await.unwrap().len(), 1, "one authorization");
    assert_eq!(c.auth_state(funding(&r)).await, AuthorizationState::Authorized);
    let probe = UpdateId::generate(&mut OsRandom);
    let left = c.center.db.reserve_charge(probe.as_str(), &card_id(22), today(), 60_001, 100_000).await.unwrap();
    assert_eq!(left, Err(40_000), "reserved once");
    let r = c.center.update_offer(sim, id.as_str(), relay(&mut card, &r), Default::default()).await.unwrap();
    assert_eq!(r.phase, UpdatePhase::Offered);
    let done = c.center.update_complete(sim, id.as_str(), relay(&mut card, &r), Default::default()).await.unwrap();
    assert_eq!(done.phase, UpdatePhase::Completed);
    assert_eq!(c.auth_state(funding(&done)).await, AuthorizationState::Captured);
    c.check_books(22, &mut card).await;
}

/// C1/M1: a cancel racing the balance step. Whichever wins the row, the
/// loser leaves no effect: an offered CREDIT keeps its live authorization
/// and completes; a cancelled charge holds nothing.
#[tokio::test]
async fn a_cancel_racing_the_balance_step_leaves_books_that_match_the_card_on_sqlite() {
    for n in 23..27 {
        cancel_racing_balance(Charging::new().await, n).await;
    }
}

#[tokio::test]
async fn a_cancel_racing_the_balance_step_leaves_books_that_match_the_card_on_postgres() {
    for n in 23..27 {
        let Some(c) = Charging::on_postgres("cancel_racing").await else { return };
        cancel_racing_balance(c, n).await;
    }
}

async fn cancel_racing_balance(c: Charging, n: u8) {
    {
        c.register(n, 10_000).await;
        let mut card = funded_card(n, 10_000);
        let sim = c.sim.as_ref();
        let r = c.open(&mut card, n, 5_000, APPROVE).await.unwrap();
        let id = r.charge_id.clone();
        let authorization = funding(&r).to_owned();
        let answers = relay(&mut card, &r);
        let (offered, cancelled) = tokio::join!(
            c.center.update_offer(sim, &id, answers, Default::default()),
            c.center.update_cancel(sim, &id, Default::default())
        );
        match (offered, cancelled) {
            (Ok(r), Err(_)) => {
                assert_eq!(r.phase, UpdatePhase::Offered);
                assert_eq!(c.auth_state(funding(&r)).await, AuthorizationState::Authorized, "the loser voided nothing");
                let done = c.center.update_complete(sim, &id, relay(&mut card, &r), Default::default()).await.unwrap();
                assert_eq!(done.phase, UpdatePhase::Completed);
                assert_eq!(c.auth_state(funding(&r)).await, AuthorizationState::Captured);
            }
            (Err(_), Ok(r)) => {
                assert_eq!(r.phase, UpdatePhase::Voided);
                assert_eq!(c.auth_state(&authorization).await, AuthorizationState::Voided);
            }
            other => panic!("exactly one wins: {other:?}"),
        }
        c.check_books(n, &mut card).await;
    }
}

/// A value update abandoned before its CREDIT is ended by the sweep past
/// its deadline: its authorization voided and its daily reservation given
/// back, once, however many sweepers race.
#[tokio::test]
async fn an_abandoned_charge_is_ended_once_and_gives_its_reservations_back_on_sqlite() {
    an_abandoned_charge_is_ended_once_and_gives_its_reservations_back(Charging::new().await).await;
}

#[tokio::test]
async fn an_abandoned_charge_is_ended_once_and_gives_its_reservations_back_on_postgres() {
    let Some(c) = Charging::on_postgres("abandoned_charge").await else { return };
    an_abandoned_charge_is_ended_once_and_gives_its_reservations_back(c).await;
}

async fn an_abandoned_charge_is_ended_once_and_gives_its_reservations_back(c: Charging) {
    c.register(27, 0).await;
    let mut card = funded_card(27, 0);
    let mut twin = funded_card(27, 0);
    let sim = c.sim.as_ref();
    let r = c.open(&mut card, 27, 100_000, APPROVE).await.unwrap();
    let id = r.charge_id.clone();
    // Another never authorized: its card never proved itself.
    let unproven = c.create(27, 1_000).await.unwrap();
    // The whole day's limit is taken while the first waits.
    assert!(matches!(c.open(&mut twin, 27, 1, APPROVE).await, Err(UpdateError::OverDailyLimit { .. })));
    let later = kessai_core::time::Timestamp::from_unix_s(NOW.unix_s() + kessai_center::limits::ABANDONED_AFTER_S + 1);
    let (a, b) = tokio::join!(c.center.sweep_abandoned(sim, later), c.center.sweep_abandoned(sim, later));
    assert_eq!(a.unwrap() + b.unwrap(), 2, "each ended once");
    for id in [&id, &unproven.charge_id] {
        let ended = c.center.value_update(id).await.unwrap();
        assert_eq!(
            (ended.phase(), ended.outcome().map(|(code, _)| code.as_str())),
            (UpdatePhase::Voided, Some("abandoned"))
        );
    }
    assert_eq!(c.auth_state(funding(&r)).await, AuthorizationState::Voided);
    assert_eq!(c.sim.authorizations().await.unwrap().len(), 1, "the unproven one was never authorized");
    let again = c.open(&mut twin, 27, 1_000, APPROVE).await.unwrap();
    assert_eq!(again.phase, UpdatePhase::ReadingBalance, "the day's limit was given back");
    c.check_books(27, &mut card).await;
}

/// Two instances on one database, each with its own authorizer handle: a
/// charge authorized through one is captured through the other, and a
/// second charge authorized through the other is voided through the first
/// when its card never applied the credit. Nothing lives per instance.
async fn across_instances(c: Charging) {
    c.register(1, 20_000).await;
    let mut card = funded_card(1, 20_000);
    let other = open_center(&c.url).await;
    let other_sim = authorizer(&c.url).await;
    let approve = || Some(PaymentCard::parse(APPROVE, "12/30", "123").unwrap());
    let r = c.create(1, 5_000).await.unwrap();
    let id = r.charge_id.clone();
    let r = other.update_authenticate(other_sim.as_ref(), &id, relay(&mut card, &r), approve(), None).await.unwrap();
    let r = c.center.update_offer(c.sim.as_ref(), &id, relay(&mut card, &r), Default::default()).await.unwrap();
    let done = other.update_complete(other_sim.as_ref(), &id, relay(&mut card, &r), Default::default()).await.unwrap();
    assert_eq!(done.phase, UpdatePhase::Completed, "{done:?}");
    assert_eq!(c.auth_state(funding(&done)).await, AuthorizationState::Captured);
    assert_eq!(balance_of(&mut card), 25_000);
    // The second: authorized through the other instance, abandoned after
    // its CREDIT was issued and never relayed; recovered through the first.
    let request = ChargeRequest { id: UpdateId::generate(&mut OsRandom), card_id: card_id(1), amount: jpy(1_000) };
    let r = other.create_charge(request).await.unwrap();
    let id = r.charge_id.clone();
    let r = c.center.update_authenticate(c.sim.as_ref(), &id, relay(&mut card, &r), approve(), None).await.unwrap();
    let offered = other.update_offer(other_sim.as_ref(), &id, relay(&mut card, &r), Default::default()).await.unwrap();
    assert_eq!(offered.phase, UpdatePhase::Offered);
    let ended = recover(&c, &mut card, &id).await;
    assert_eq!(ended.phase, UpdatePhase::Voided, "{ended:?}");
    assert_eq!(c.auth_state(funding(&offered)).await, AuthorizationState::Voided);
    assert_eq!(balance_of(&mut card), 25_000);
    let (float, held) = c.center.books.card_float(&card_id(1)).await.unwrap().unwrap();
    assert_eq!((float, held), (25_000, 0));
    c.center.books.ledger().check().await.unwrap();
    other.db.close().await;
}

#[tokio::test]
async fn a_charge_authorized_through_one_instance_is_captured_or_voided_through_another_on_sqlite() {
    across_instances(Charging::new().await).await;
}

#[tokio::test]
async fn a_charge_authorized_through_one_instance_is_captured_or_voided_through_another_on_postgres() {
    let Some(c) = Charging::on_postgres("charge_instances").await else { return };
    across_instances(c).await;
}

/// M5: velocity limits before the authorizer is asked, counted only once
/// the card proved itself. One payment card number tried on several kessai
/// cards, or one kessai card tried with many numbers (declined ones count
/// too), is refused with `TooManyAttempts` past the limit, and nothing more
/// reaches the authorizer.
#[tokio::test]
async fn charge_attempts_past_the_velocity_limits_never_reach_the_authorizer() {
    use kessai_center::limits::{CHARGE_ATTEMPTS_PER_CARD, CHARGE_ATTEMPTS_PER_PAN};
    const DECLINED: [&str; 4] = ["4000000000000002", "4000000000009995", "4000000000000069", "4000000000000119"];
    let c = Charging::new().await;
    // 1. One stolen number tried on one kessai card after another.
    for n in 0..=CHARGE_ATTEMPTS_PER_PAN as u8 {
        c.register(30 + n, 0).await;
        let mut card = funded_card(30 + n, 0);
        let refused = c.open(&mut card, 30 + n, 1_000, DECLINED[0]).await.unwrap_err();
        if u64::from(n) < CHARGE_ATTEMPTS_PER_PAN {
            assert!(matches!(refused, UpdateError::Authorizer(_)), "attempt {n}: {refused:?}");
        } else {
            assert!(matches!(refused, UpdateError::TooManyAttempts), "attempt {n}: {refused:?}");
        }
    }
    // 2. One kessai card tried with number after number.
    c.register(50, 0).await;
    let mut card = funded_card(50, 0);
    for n in 0..CHARGE_ATTEMPTS_PER_CARD as usize {
        let refused = c.open(&mut card, 50, 1_000, DECLINED[1 + n % 3]).await.unwrap_err();
        assert!(matches!(refused, UpdateError::Authorizer(_)), "attempt {n}: {refused:?}");
    }
    let r = c.create(50, 1_000).await.unwrap();
    let refused = c.authorize(&mut card, &r, APPROVE).await.unwrap_err();
    assert!(matches!(refused, UpdateError::TooManyAttempts), "{refused:?}");
    let ended = c.center.value_update(&r.charge_id).await.unwrap();
    assert_eq!(ended.outcome().map(|(code, _)| code.as_str()), Some("too_many_attempts"));
    assert!(c.sim.authorizations().await.unwrap().is_empty(), "the good number was never authorized");
    // Another card and another number are not held back.
    c.register(51, 0).await;
    assert!(c.open(&mut funded_card(51, 0), 51, 1_000, APPROVE).await.is_ok());
}

/// M5: a card id alone (anyone may present one) opens a charge, but its
/// payment card reaches the authorizer only after the card's cryptogram
/// verified: without the card, a list of stolen numbers is never tested,
/// no attempt is counted against the card, and nothing of its limit is
/// taken. A step without the payment card is refused and changes nothing.
#[tokio::test]
async fn the_authorizer_is_asked_only_once_the_card_proved_itself() {
    let c = Charging::new().await;
    c.register(60, 0).await;
    c.register(61, 0).await;
    let mut card = funded_card(60, 0);
    let mut another = funded_card(61, 0);
    let r = c.create(60, 1_000).await.unwrap();
    // Card 61's genuine answer to card 60's session: the cryptogram fails.
    let forged = relay(&mut another, &r);
    for _ in 0..kessai_center::limits::CHARGE_ATTEMPTS_PER_CARD + 1 {
        let payment = Some(PaymentCard::parse(APPROVE, "12/30", "123").unwrap());
        let err = c.center.update_authenticate(c.sim.as_ref(), &r.charge_id, forged.clone(), payment, None).await;
        assert!(matches!(err, Err(UpdateError::Step(UpdateStepError::Card(_)))), "{err:?}");
    }
    let err = c.center.update_authenticate(c.sim.as_ref(), &r.charge_id, relay(&mut card, &r), None, None).await;
    assert!(matches!(err, Err(UpdateError::PaymentCardRequired(_))), "{err:?}");
    assert!(c.sim.authorizations().await.unwrap().is_empty(), "nothing was authorized");
    assert_eq!(c.center.value_update(&r.charge_id).await.unwrap().phase(), UpdatePhase::Authenticating);
    // The card itself: authorized at once, none of the failures counted.
    let r = c.create(60, 100_000).await.unwrap();
    let r = c.authorize(&mut card, &r, APPROVE).await.unwrap();
    assert_eq!(r.phase, UpdatePhase::ReadingBalance, "the whole day's limit was still there");
}
