//! Virtual prepaid cards (#18): each funding path of FIG. 12–15 end to end
//! through the center's core, over SQLite, with the bank's statements as
//! the bank would write them; payments to stores on the member's signed
//! instruction; and after every scenario the books balance: what the pools
//! received equals what the prepaid cards, suspense and store payables
//! hold.

use std::sync::Arc;

use kessai_bank::camt::{DraftEntry, EntryKind};
use kessai_bank::camt053::{self, StatementDraft};
use kessai_bank::zengin::{self, NoticeDraft, NoticeEntry, ZenginAccount};
use kessai_bank::{Date, rf};
use kessai_center::authorizer::{PaymentCard, Simulator};
use kessai_center::books::Receiving;
use kessai_center::prepaid::{FundingStatus, PrepaidError, PrepaidPolicy, PrepaidReply, StatementSource};
use kessai_center::service::Center;
use kessai_core::ids::{MessageId, PartyId, PrepaidId, RequestId, StoreId};
use kessai_core::jws::Claims;
use kessai_core::keys::{KeyDirectory, SigningKey, Validity};
use kessai_core::messages::instruction::{self, InstructionDraft, PaymentInstruction};
use kessai_core::messages::prepaid::{self, FundingMethod, PrepaidAction, PrepaidRequest, PrepaidRequestDraft};
use kessai_core::messages::{bill, completion};
use kessai_core::random::{OsRandom, SeededRandom};
use kessai_core::samples;
use kessai_core::time::{FixedClock, Timestamp};
use kessai_core::{Currency, Money};

use crate::members::{envelope, general, letter};
use crate::service::{Setup, setup};
use crate::world::NOW;

pub(crate) fn jpy(minor: u64) -> Money {
    Money::new(minor, Currency::JPY).unwrap()
}

/// A registered member and the key its passwords open.
pub(crate) struct Member {
    pub id: PartyId,
    pub key: SigningKey,
}

/// A member applied, approved and registered with a fresh key.
pub(crate) async fn member(c: &Center, rng: &mut SeededRandom) -> Member {
    let (number, code) = letter(c, "general").await;
    let key = SigningKey::generate(rng);
    let to = c.security.member_encryption_key().public().clone();
    let sealed = envelope(&number, &code, general(), (&key, &key), &to, rng);
    c.register_member(&sealed).await.unwrap();
    Member { id: PartyId::parse(&number).unwrap(), key }
}

/// A prepaid request signed by `m` at the center's time.
pub(crate) fn request(
    c: &Center,
    m: &Member,
    request_id: &str,
    action: PrepaidAction,
    account: Option<&PrepaidId>,
    amount: Option<u64>,
    method: Option<FundingMethod>,
) -> String {
    let draft = PrepaidRequestDraft {
        member: m.id.clone(),
        request_id: RequestId::parse(request_id).unwrap(),
        action,
        account: account.cloned(),
        amount: amount.map(jpy),
        method,
        card_id: None,
        token: None,
    };
    sign_request(c, m, draft)
}

/// `draft` signed by `m` at the center's time.
pub(crate) fn sign_request(c: &Center, m: &Member, draft: PrepaidRequestDraft) -> String {
    let body = PrepaidRequest::new(draft).unwrap();
    let claims = Claims::for_lifetime(m.id.clone(), MessageId::generate(&mut OsRandom), c.clock.now(), 300).unwrap();
    prepaid::sign(&claims.clone().with_audience(crate::center_party()), &body, &m.key).unwrap()
}

/// The member's payment instruction for `bill` from prepaid card `card`.
pub(crate) fn instruction_for(
    c: &Center,
    m: &Member,
    bill: &str,
    card: &PrepaidId,
    amount: Money,
    signer: &SigningKey,
) -> String {
    let draft = InstructionDraft {
        member: m.id.clone(),
        card_id: None,
        prepaid_id: Some(card.clone()),
        bill_hash: kessai_core::digest::Sha256Digest::of_token(bill),
        amount,
        store: StoreId::parse(samples::MALL).unwrap(),
    };
    let claims = Claims::for_lifetime(m.id.clone(), MessageId::generate(&mut OsRandom), c.clock.now(), 300).unwrap();
    instruction::sign(
        &claims.clone().with_audience(crate::center_party()),
        &PaymentInstruction::new(draft).unwrap(),
        signer,
    )
    .unwrap()
}

/// The sample bill (JPY 11,360 for the mall's member store), signed.
pub(crate) fn sample_bill(s: &mut Setup) -> String {
    bill_of(&s.center, &s.mall_key, &mut s.rng)
}

/// The sample bill signed with the mall's `key` at `c`'s time.
pub(crate) fn bill_of(c: &Center, key: &SigningKey, rng: &mut SeededRandom) -> String {
    let (claims, b) = samples::bill(rng, c.clock.now()).unwrap();
    bill::sign(&claims.clone().with_audience(crate::center_party()), &b, key).unwrap()
}

fn today() -> Date {
    // NOW is 2026-11-18 (UTC).
    Date::new(2026, 11, 18).unwrap()
}

/// A camt.053 statement of the pool account with these credits: (amount,
/// what the payer quoted, the bank's reference).
pub(crate) fn camt(id: &str, credits: &[(u64, Option<&str>, &str)]) -> Vec<u8> {
    let mut draft = StatementDraft::new(id, "JP00KESSAIPOOL0001", NOW, jpy(1_000_000)).unwrap();
    for (amount, quoted, bank_ref) in credits {
        let mut entry = DraftEntry::new(EntryKind::Credit, jpy(*amount), today(), bank_ref).unwrap();
        if let Some(q) = quoted {
            entry = entry.with_reference(rf::Reference::parse(q).unwrap());
        }
        draft.push(entry.with_remitter("YAMADA HANAKO").unwrap()).unwrap();
    }
    camt053::write(&draft).into_bytes()
}

/// A Zengin transfer notice of the postal account with these credits.
fn zengin_notice(credits: &[(u64, &str, u32)]) -> Vec<u8> {
    let account = ZenginAccount::simulated_postal();
    let entries = credits
        .iter()
        .map(|(amount, quoted, inquiry)| NoticeEntry {
            inquiry_number: *inquiry,
            booked_on: today(),
            amount: jpy(*amount),
            remitter_code: None,
            remitter: "ﾔﾏﾀﾞ ﾊﾅｺ".into(),
            reference: Some(rf::Reference::parse(quoted).unwrap()),
            edi: None,
            cancellation: false,
        })
        .collect();
    zengin::write_transfer_notice(&NoticeDraft { account, created_on: today(), entries }).unwrap()
}

pub(crate) fn funding(reply: PrepaidReply) -> kessai_center::prepaid::FundingView {
    match reply {
        PrepaidReply::Funding(f) => *f,
        other => panic!("expected a funding, got {other:?}"),
    }
}

async fn balance(s: &Setup, card: &PrepaidId) -> u64 {
    value_of(&s.center, card).await
}

pub(crate) async fn value_of(c: &Center, card: &PrepaidId) -> u64 {
    c.books.prepaid_balance(card).await.unwrap().unwrap_or(0)
}

/// The books balance: the ledger's invariants hold, and what came in
/// (pools, cash, credit funding) equals what the prepaid cards, suspense
/// and the stores hold.
pub(crate) async fn conserved(s: &Setup, cards: &[&PrepaidId]) {
    conserved_in(&s.center, cards).await;
}

pub(crate) async fn conserved_in(c: &Center, cards: &[&PrepaidId]) {
    c.books.ledger().check().await.unwrap();
    let mut received = 0i128;
    for source in [Receiving::BankPool, Receiving::PostalPool, Receiving::Cash] {
        received += c.books.received(source, Currency::JPY).await.unwrap();
    }
    received += i128::from(c.books.credit_funding(Currency::JPY).await.unwrap());
    let mut held = i128::from(c.books.suspense(Currency::JPY).await.unwrap());
    for card in cards {
        held += i128::from(value_of(c, card).await);
    }
    for store in [samples::MALL, samples::MEMBER] {
        held += i128::from(c.books.store_payable(&StoreId::parse(store).unwrap(), Currency::JPY).await.unwrap());
    }
    assert_eq!(received, held, "every yen received is on a card, in suspense or owed to a store");
}

#[tokio::test]
async fn a_bank_transfer_issues_value_once_and_what_does_not_match_waits_in_suspense() {
    let mut s = setup().await;
    let sim = Simulator::new();
    let m = member(&s.center, &mut s.rng).await;

    // Open a card funded by a bank transfer: nothing is issued yet.
    let token =
        request(&s.center, &m, "r-1", PrepaidAction::Open, None, Some(5_000), Some(FundingMethod::BankTransfer));
    let opened = funding(s.center.prepaid_request(&token, None, &sim).await.unwrap());
    assert_eq!(opened.status, FundingStatus::Awaiting);
    let reference = opened.reference.clone().expect("a transfer quotes a reference");
    assert!(rf::Reference::parse(&reference).is_ok(), "an ISO 11649 reference");
    assert!(opened.pay_to.as_deref().unwrap().contains("KESSAI CENTER"), "it says where to send the money");
    let card = PrepaidId::parse(&opened.prepaid_id).unwrap();
    let lower_hex =
        |s: Option<&str>| s.is_some_and(|h| h.len() == 32 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    assert!(lower_hex(opened.funding_id.strip_prefix("fnd_")), "{}", opened.funding_id);
    assert!(lower_hex(opened.prepaid_id.strip_prefix("vpc_")), "{}", opened.prepaid_id);
    assert_eq!(balance(&s, &card).await, 0);
    // The same request signed again (its answer lost) is the same funding.
    let again =
        request(&s.center, &m, "r-1", PrepaidAction::Open, None, Some(5_000), Some(FundingMethod::BankTransfer));
    assert_eq!(funding(s.center.prepaid_request(&again, None, &sim).await.unwrap()).funding_id, opened.funding_id);
    // The same request id asking something else is refused.
    let other =
        request(&s.center, &m, "r-1", PrepaidAction::Open, None, Some(9_000), Some(FundingMethod::BankTransfer));
    assert!(matches!(s.center.prepaid_request(&other, None, &sim).await, Err(PrepaidError::RequestIdReused(_))));

    // The statement: the transfer, one without a reference, one quoting a
    // reference nobody asked for.
    let unknown = rf::make("999999999999").unwrap().to_string();
    let statement =
        camt("STMT-1", &[(5_000, Some(&reference), "B-1"), (700, None, "B-2"), (800, Some(&unknown), "B-3")]);
    let report = s.center.import_statement(&statement, StatementSource::Bank).await.unwrap();
    assert_eq!((report.matched, report.suspense, report.already_imported), (1, 2, 0));
    assert_eq!(balance(&s, &card).await, 5_000, "the transfer issued the value");
    // Imported again: nothing changes.
    let again = s.center.import_statement(&statement, StatementSource::Bank).await.unwrap();
    assert_eq!((again.matched, again.suspense, again.already_imported), (0, 0, 3));
    assert_eq!(balance(&s, &card).await, 5_000);
    assert_eq!(s.center.books.suspense(Currency::JPY).await.unwrap(), 1_500);
    let queue = s.center.bank_credits_in("suspense").await.unwrap();
    assert_eq!(queue.len(), 2);
    assert!(queue.iter().any(|c| c.reason.as_deref() == Some("no payment reference")));
    assert!(queue.iter().any(|c| c.reason.as_deref() == Some("the reference matches no request")));

    // A partial payment: 1,500 for a request of 2,000 goes to suspense, and
    // the operator applies it to the request.
    let token =
        request(&s.center, &m, "r-2", PrepaidAction::Fund, Some(&card), Some(2_000), Some(FundingMethod::BankTransfer));
    let topup = funding(s.center.prepaid_request(&token, None, &sim).await.unwrap());
    let partial = camt("STMT-2", &[(1_500, topup.reference.as_deref(), "B-4")]);
    let report = s.center.import_statement(&partial, StatementSource::Bank).await.unwrap();
    assert_eq!((report.matched, report.suspense), (0, 1));
    assert_eq!(balance(&s, &card).await, 5_000, "an under-payment issues nothing by itself");
    let held = s.center.bank_credits_in("suspense").await.unwrap();
    let entry = held.iter().find(|c| c.funding_id.as_deref() == Some(topup.funding_id.as_str())).unwrap();
    assert!(entry.reason.as_deref().unwrap().contains("received for a request of"), "{:?}", entry.reason);
    let applied = s.center.apply_suspense(&entry.entry_key, &topup.funding_id, crate::tester()).await.unwrap();
    assert_eq!((applied.status, applied.received), (FundingStatus::Issued, Some(jpy(1_500))));
    assert_eq!(balance(&s, &card).await, 6_500);
    // Applied once: a second application finds nothing in suspense.
    assert!(matches!(
        s.center.apply_suspense(&entry.entry_key, &topup.funding_id, crate::tester()).await,
        Err(PrepaidError::UnknownCredit(_))
    ));

    // A transfer that never arrives: the request expires, nothing issued;
    // money arriving after that waits in suspense.
    let token =
        request(&s.center, &m, "r-3", PrepaidAction::Fund, Some(&card), Some(3_000), Some(FundingMethod::BankTransfer));
    let late = funding(s.center.prepaid_request(&token, None, &sim).await.unwrap());
    let expiry = late.expires_at.unwrap();
    s.center.clock = Arc::new(FixedClock::new(Timestamp::from_unix_s(expiry.unix_s() + 1)));
    assert_eq!(s.center.expire_prepaid_fundings().await.unwrap(), 1);
    let statement = camt("STMT-3", &[(3_000, late.reference.as_deref(), "B-5")]);
    let report = s.center.import_statement(&statement, StatementSource::Bank).await.unwrap();
    assert_eq!((report.matched, report.suspense), (0, 1));
    assert_eq!(balance(&s, &card).await, 6_500);
    let expired = s.center.fundings_in(FundingStatus::Expired).await.unwrap();
    assert_eq!(expired.iter().map(|f| f.funding_id.as_str()).collect::<Vec<_>>(), vec![late.funding_id.as_str()]);
    conserved(&s, &[&card]).await;

    // The transfer nobody asked for (700, no reference) goes back to its
    // sender: it leaves the pool and suspense, and nothing is issued.
    let held = s.center.bank_credits_in("suspense").await.unwrap();
    let stray = held.iter().find(|c| c.amount == jpy(700)).unwrap().entry_key.clone();
    let pool_before = s.center.books.received(Receiving::BankPool, Currency::JPY).await.unwrap();
    let suspense_before = s.center.books.suspense(Currency::JPY).await.unwrap();
    let returned = s.center.return_suspense(&stray, "sent back to the remitter's account", crate::tester()).await;
    let returned = returned.unwrap();
    assert_eq!((returned.status.as_str(), returned.amount), ("returned", jpy(700)));
    assert_eq!(s.center.books.received(Receiving::BankPool, Currency::JPY).await.unwrap(), pool_before - 700);
    assert_eq!(s.center.books.suspense(Currency::JPY).await.unwrap(), suspense_before - 700);
    assert_eq!(balance(&s, &card).await, 6_500);
    let listed = s.center.bank_credits_in("returned").await.unwrap();
    assert_eq!(listed.iter().map(|c| c.entry_key.as_str()).collect::<Vec<_>>(), [stray.as_str()]);
    assert!(listed[0].reason.as_deref().unwrap().contains("remitter's account"));
    // Once: returning or applying it again finds nothing in suspense.
    let again = s.center.return_suspense(&stray, "again", crate::tester()).await;
    assert!(matches!(again, Err(PrepaidError::UnknownCredit(_))), "{again:?}");
    let trail = s.center.db.trail(Some(&stray), None, 10).await.unwrap();
    assert_eq!(trail.iter().map(|t| t.entry.action.as_str()).collect::<Vec<_>>(), ["bank_credit_returned"]);
    conserved(&s, &[&card]).await;

    // An operator applies a credit while another returns it: one of them.
    let token =
        request(&s.center, &m, "r-4", PrepaidAction::Fund, Some(&card), Some(800), Some(FundingMethod::BankTransfer));
    let wanting = funding(s.center.prepaid_request(&token, None, &sim).await.unwrap());
    let queue = s.center.bank_credits_in("suspense").await.unwrap();
    let contested = queue.iter().find(|c| c.amount == jpy(800)).unwrap().entry_key.clone();
    let (applied, returned) = tokio::join!(
        s.center.apply_suspense(&contested, &wanting.funding_id, crate::tester()),
        s.center.return_suspense(&contested, "sent back", crate::tester()),
    );
    assert!(applied.is_ok() != returned.is_ok(), "exactly one: {applied:?} / {returned:?}");
    let won_by_apply = applied.is_ok();
    let loser = if won_by_apply { returned.map(drop) } else { applied.map(drop) };
    assert!(matches!(loser, Err(PrepaidError::UnknownCredit(_))), "{loser:?}");
    let expected = if won_by_apply { 7_300 } else { 6_500 };
    assert_eq!(balance(&s, &card).await, expected);
    assert_eq!(s.center.db.trail(Some(&contested), None, 10).await.unwrap().len(), 1);
    conserved(&s, &[&card]).await;
}

#[tokio::test]
async fn a_postal_transfer_arrives_in_a_zengin_notice_and_a_bank_statement_cannot_pay_it() {
    let mut s = setup().await;
    let sim = Simulator::new();
    let m = member(&s.center, &mut s.rng).await;
    let token =
        request(&s.center, &m, "p-1", PrepaidAction::Open, None, Some(12_000), Some(FundingMethod::PostalTransfer));
    let f = funding(s.center.prepaid_request(&token, None, &sim).await.unwrap());
    let card = PrepaidId::parse(&f.prepaid_id).unwrap();
    let reference = f.reference.unwrap();
    // Money on the bank pool quoting a postal request is not that request's.
    let wrong_account = camt("STMT-9", &[(12_000, Some(&reference), "B-9")]);
    let report = s.center.import_statement(&wrong_account, StatementSource::Bank).await.unwrap();
    assert_eq!((report.matched, report.suspense), (0, 1));
    assert_eq!(balance(&s, &card).await, 0);
    // The postal account's notice pays it.
    let notice = zengin_notice(&[(12_000, &reference, 1)]);
    let report = s.center.import_statement(&notice, StatementSource::Postal).await.unwrap();
    assert_eq!((report.matched, report.suspense), (1, 0));
    assert_eq!(balance(&s, &card).await, 12_000);
    assert_eq!(s.center.import_statement(&notice, StatementSource::Postal).await.unwrap().already_imported, 1);
    assert_eq!(balance(&s, &card).await, 12_000);
    // A truncated notice is refused whole.
    assert!(matches!(
        s.center.import_statement(&notice[..notice.len() - 150], StatementSource::Postal).await,
        Err(PrepaidError::Statement(_))
    ));
    conserved(&s, &[&card]).await;
}

#[tokio::test]
async fn cash_above_the_limit_needs_a_second_operator_and_credit_is_authorized_first() {
    let mut s = setup().await;
    s.center.prepaid = PrepaidPolicy { cash_dual_control_minor: 100_000, ..PrepaidPolicy::default() };
    let sim = Simulator::new();
    let m = member(&s.center, &mut s.rng).await;

    // Cash up to the limit: one operator's count issues it.
    let token = request(&s.center, &m, "c-1", PrepaidAction::Open, None, Some(20_000), Some(FundingMethod::Cash));
    let f = funding(s.center.prepaid_request(&token, None, &sim).await.unwrap());
    let card = PrepaidId::parse(&f.prepaid_id).unwrap();
    let issued = s.center.record_cash(&f.funding_id, jpy(20_000), &crate::operator("admin")).await.unwrap();
    assert_eq!(issued.status, FundingStatus::Issued);
    assert_eq!(balance(&s, &card).await, 20_000);
    // Counted again: it is issued already.
    assert!(matches!(
        s.center.record_cash(&f.funding_id, jpy(20_000), &crate::operator("admin")).await,
        Err(PrepaidError::FundingState { .. })
    ));

    // Above the limit: the first count issues nothing; the same operator
    // cannot confirm; a second count of another amount is refused; the
    // second operator's count of the same amount issues it.
    let token =
        request(&s.center, &m, "c-2", PrepaidAction::Fund, Some(&card), Some(150_000), Some(FundingMethod::Cash));
    let big = funding(s.center.prepaid_request(&token, None, &sim).await.unwrap());
    let counted = s.center.record_cash(&big.funding_id, jpy(150_000), &crate::operator("admin")).await.unwrap();
    assert_eq!(counted.status, FundingStatus::Counted);
    assert_eq!(balance(&s, &card).await, 20_000);
    assert!(matches!(
        s.center.record_cash(&big.funding_id, jpy(150_000), &crate::operator("admin")).await,
        Err(PrepaidError::SecondOperator { .. })
    ));
    assert!(matches!(
        s.center.record_cash(&big.funding_id, jpy(140_000), &crate::operator("operator-2")).await,
        Err(PrepaidError::CountDiffers { .. })
    ));
    assert_eq!(balance(&s, &card).await, 20_000);
    let confirmed = s.center.record_cash(&big.funding_id, jpy(150_000), &crate::operator("operator-2")).await.unwrap();
    assert_eq!(confirmed.status, FundingStatus::Issued);
    assert_eq!(balance(&s, &card).await, 170_000);

    // Credit: a declined card issues nothing, and asked again is declined
    // again; an approved one is issued and captured.
    let declined_card = PaymentCard::parse("4000000000000002", "12/30", "123").unwrap();
    let token =
        request(&s.center, &m, "k-1", PrepaidAction::Fund, Some(&card), Some(5_000), Some(FundingMethod::Credit));
    let refused = s.center.prepaid_request(&token, Some(&declined_card), &sim).await;
    assert!(matches!(refused, Err(PrepaidError::Authorizer(_))), "{refused:?}");
    assert!(matches!(
        s.center.prepaid_request(&token, Some(&declined_card), &sim).await,
        Err(PrepaidError::Authorizer(_))
    ));
    assert_eq!(balance(&s, &card).await, 170_000);
    // Without card data a credit funding is refused before anything.
    let token =
        request(&s.center, &m, "k-2", PrepaidAction::Fund, Some(&card), Some(5_000), Some(FundingMethod::Credit));
    assert!(matches!(s.center.prepaid_request(&token, None, &sim).await, Err(PrepaidError::PaymentCardRequired)));
    let approved = PaymentCard::parse("4242424242424242", "12/30", "123").unwrap();
    let f = funding(s.center.prepaid_request(&token, Some(&approved), &sim).await.unwrap());
    assert_eq!(f.status, FundingStatus::Captured);
    assert_eq!(balance(&s, &card).await, 175_000);
    let auths = sim.authorizations().await.unwrap();
    assert_eq!(auths.iter().filter(|a| a.state == kessai_center::authorizer::AuthorizationState::Captured).count(), 1);
    // Past the card's maximum: refused, nothing asked of anyone.
    let token =
        request(&s.center, &m, "k-3", PrepaidAction::Fund, Some(&card), Some(900_000), Some(FundingMethod::Credit));
    assert!(matches!(
        s.center.prepaid_request(&token, Some(&approved), &sim).await,
        Err(PrepaidError::OverMaxBalance { .. })
    ));

    // The member's inquiry shows the card, its value and its fundings;
    // another member's signature sees nothing of it.
    let token = request(&s.center, &m, "q-1", PrepaidAction::Inquire, None, None, None);
    let PrepaidReply::Inquiry { cards } = s.center.prepaid_request(&token, None, &sim).await.unwrap() else {
        panic!("an inquiry answers cards")
    };
    assert_eq!(cards.len(), 1);
    assert_eq!(cards[0].balance, jpy(175_000));
    assert_eq!(cards[0].fundings.len(), 4, "two cash, the declined and the captured credit; the refused one none");
    let stranger = member(&s.center, &mut s.rng).await;
    let token = request(&s.center, &stranger, "q-2", PrepaidAction::Inquire, Some(&card), None, None);
    assert!(matches!(s.center.prepaid_request(&token, None, &sim).await, Err(PrepaidError::UnknownCard(_))));
    // A request signed by a key that is not the member's.
    let forged = Member { id: m.id.clone(), key: SigningKey::generate(&mut SeededRandom::new(5)) };
    let token = request(&s.center, &forged, "q-3", PrepaidAction::Inquire, None, None, None);
    assert!(matches!(s.center.prepaid_request(&token, None, &sim).await, Err(PrepaidError::Refused(_))));
    conserved(&s, &[&card]).await;
}

#[tokio::test]
async fn a_member_pays_a_store_from_a_prepaid_card_once_and_every_bad_instruction_changes_nothing() {
    let mut s = setup().await;
    let sim = Simulator::new();
    let m = member(&s.center, &mut s.rng).await;
    let token = request(&s.center, &m, "c-1", PrepaidAction::Open, None, Some(20_000), Some(FundingMethod::Cash));
    let f = funding(s.center.prepaid_request(&token, None, &sim).await.unwrap());
    let card = PrepaidId::parse(&f.prepaid_id).unwrap();
    s.center.record_cash(&f.funding_id, jpy(20_000), &crate::operator("admin")).await.unwrap();
    let member_store = StoreId::parse(samples::MEMBER).unwrap();

    let bill = sample_bill(&mut s);
    let amount = jpy(11_360);
    // Refusals first: none moves a yen.
    let stranger_key = SigningKey::generate(&mut s.rng);
    let other_bill = sample_bill(&mut s);
    let refusals = [
        ("signed by another key", instruction_for(&s.center, &m, &bill, &card, amount, &stranger_key)),
        ("for another amount", instruction_for(&s.center, &m, &bill, &card, jpy(1), &m.key)),
        ("for another bill", instruction_for(&s.center, &m, &other_bill, &card, amount, &m.key)),
        ("from a card that is not the member's", {
            instruction_for(
                &s.center,
                &m,
                &bill,
                &PrepaidId::parse("vpc_00000000000000000000000000000000").unwrap(),
                amount,
                &m.key,
            )
        }),
    ];
    for (what, token) in &refusals {
        let e = s.center.pay_from_prepaid(&bill, token, None).await.unwrap_err();
        assert!(matches!(e, PrepaidError::Instruction(_) | PrepaidError::UnknownCard(_)), "{what}: {e:?}");
        assert_eq!(balance(&s, &card).await, 20_000, "{what}");
    }
    // A tampered instruction (one byte of its payload changed).
    let genuine = instruction_for(&s.center, &m, &bill, &card, amount, &m.key);
    let mut parts: Vec<String> = genuine.split('.').map(str::to_owned).collect();
    let flipped = if &parts[1][10..11] == "A" { "B" } else { "A" };
    parts[1].replace_range(10..11, flipped);
    let tampered = parts.join(".");
    assert!(s.center.pay_from_prepaid(&bill, &tampered, None).await.is_err());
    assert_eq!(balance(&s, &card).await, 20_000);

    // The genuine one pays: SIG3 verifies, the new balance is answered.
    let paid = s.center.pay_from_prepaid(&bill, &genuine, None).await.unwrap();
    assert_eq!(paid.balance, jpy(8_640));
    let mut keys = KeyDirectory::new();
    keys.insert(s.center.center_id.clone(), s.center.center_key.public(), Validity::always()).unwrap();
    let done = completion::verify(&paid.completion, &keys, &FixedClock::new(NOW)).unwrap();
    assert_eq!(done.message().amount(), amount);
    assert_eq!(done.message().settlement_id().as_str(), paid.settlement_id);
    assert_eq!(done.message().card_counter(), 1, "the card's first payment");
    assert_eq!(balance(&s, &card).await, 8_640);
    assert_eq!(s.center.books.store_payable(&member_store, Currency::JPY).await.unwrap(), 11_360);
    // Replayed, or signed again for the same bill: the same payment, paid once.
    assert_eq!(s.center.pay_from_prepaid(&bill, &genuine, None).await.unwrap(), paid);
    let resigned = instruction_for(&s.center, &m, &bill, &card, amount, &m.key);
    assert_eq!(s.center.pay_from_prepaid(&bill, &resigned, None).await.unwrap().settlement_id, paid.settlement_id);
    assert_eq!(balance(&s, &card).await, 8_640);
    // The delivery sweep finds it, due after this instance's lease.
    let later = Timestamp::from_unix_s(NOW.unix_s() + 3_600);
    let due = s.center.db.due_prepaid_deliveries(later, 10).await.unwrap();
    assert_eq!(due.len(), 1);

    // Insufficient balance: refused, nothing moves.
    let second = sample_bill(&mut s);
    let token = instruction_for(&s.center, &m, &second, &card, amount, &m.key);
    assert!(matches!(s.center.pay_from_prepaid(&second, &token, None).await, Err(PrepaidError::Insufficient { .. })));
    assert_eq!(balance(&s, &card).await, 8_640);
    conserved(&s, &[&card]).await;
}

#[tokio::test]
async fn expired_value_pays_nothing() {
    let mut s = setup().await;
    s.center.prepaid = PrepaidPolicy { value_lifetime_s: Some(86_400), ..PrepaidPolicy::default() };
    let sim = Simulator::new();
    let m = member(&s.center, &mut s.rng).await;
    let token = request(&s.center, &m, "c-1", PrepaidAction::Open, None, Some(20_000), Some(FundingMethod::Cash));
    let f = funding(s.center.prepaid_request(&token, None, &sim).await.unwrap());
    let card = PrepaidId::parse(&f.prepaid_id).unwrap();
    s.center.record_cash(&f.funding_id, jpy(20_000), &crate::operator("admin")).await.unwrap();
    s.center.clock = Arc::new(FixedClock::new(Timestamp::from_unix_s(NOW.unix_s() + 86_401)));
    let bill = sample_bill(&mut s);
    let token = instruction_for(&s.center, &m, &bill, &card, jpy(11_360), &m.key);
    assert!(matches!(s.center.pay_from_prepaid(&bill, &token, None).await, Err(PrepaidError::ValueExpired(_))));
    assert_eq!(balance(&s, &card).await, 20_000, "expired value stays the member's, to be refunded");
    conserved(&s, &[&card]).await;
}

/// A member with a prepaid card holding `value` (cash, one operator).
pub(crate) async fn funded(s: &mut Setup, value: u64) -> (Member, PrepaidId) {
    let sim = Simulator::new();
    let m = member(&s.center, &mut s.rng).await;
    let token = request(&s.center, &m, "c-1", PrepaidAction::Open, None, Some(value), Some(FundingMethod::Cash));
    let f = funding(s.center.prepaid_request(&token, None, &sim).await.unwrap());
    s.center.record_cash(&f.funding_id, jpy(value), &crate::operator("admin")).await.unwrap();
    (m, PrepaidId::parse(&f.prepaid_id).unwrap())
}

#[tokio::test]
async fn a_store_refunds_a_prepaid_payment_to_the_card_at_once_and_never_past_the_payment() {
    let mut s = setup().await;
    let (m, card) = funded(&mut s, 20_000).await;
    let bill = sample_bill(&mut s);
    let token = instruction_for(&s.center, &m, &bill, &card, jpy(11_360), &m.key);
    let paid = s.center.pay_from_prepaid(&bill, &token, None).await.unwrap();
    let id = kessai_core::ids::SettlementId::parse(&paid.settlement_id).unwrap();
    let member_store = StoreId::parse(samples::MEMBER).unwrap();

    let refund = crate::refund::refund_token(&s.mall_key, &id, "rf-1", 1_000);
    let r = s.center.request_refund(&refund).await.unwrap();
    assert_eq!((r.status.as_str(), r.refunded_minor), ("applied", Some(1_000)));
    assert_eq!(balance(&s, &card).await, 9_640, "credited to the card at once");
    assert_eq!(s.center.books.store_payable(&member_store, Currency::JPY).await.unwrap(), 10_360);
    // The same refund again (a retry, a replay): answered, not paid again.
    let again = crate::refund::refund_token(&s.mall_key, &id, "rf-1", 1_000);
    assert_eq!(s.center.request_refund(&again).await.unwrap().owed_id, r.owed_id);
    assert_eq!(balance(&s, &card).await, 9_640);
    // The same refund id for another amount is another refund: refused.
    let other = crate::refund::refund_token(&s.mall_key, &id, "rf-1", 2_000);
    assert!(s.center.request_refund(&other).await.is_err());
    // Past the payment: refused, nothing moves.
    let over = crate::refund::refund_token(&s.mall_key, &id, "rf-2", 10_361);
    assert!(s.center.request_refund(&over).await.is_err());
    assert_eq!(balance(&s, &card).await, 9_640);
    // Signed by a key that is not the store's: refused.
    let stranger = SigningKey::generate(&mut s.rng);
    let forged = crate::refund::refund_token(&stranger, &id, "rf-3", 500);
    assert!(s.center.request_refund(&forged).await.is_err());
    let rest = crate::refund::refund_token(&s.mall_key, &id, "rf-4", 10_360);
    assert_eq!(s.center.request_refund(&rest).await.unwrap().refunded_minor, Some(11_360));
    assert_eq!(balance(&s, &card).await, 20_000);
    assert_eq!(s.center.books.store_payable(&member_store, Currency::JPY).await.unwrap(), 0);
    conserved(&s, &[&card]).await;
}

#[tokio::test]
async fn one_bill_is_paid_once_whether_by_ic_card_or_prepaid_card() {
    use kessai_center::service::parse_answers;

    use crate::world::{balance_of, card_id, funded_card};

    let mut s = setup().await;
    let (m, card) = funded(&mut s, 50_000).await;
    crate::service::register_card(&s, 1, 50_000).await;
    let mut ic = funded_card(1, 50_000);

    // Paid from the prepaid card first: the IC card's offer holds nothing.
    let bill = sample_bill(&mut s);
    let token = instruction_for(&s.center, &m, &bill, &card, jpy(11_360), &m.key);
    s.center.pay_from_prepaid(&bill, &token, None).await.unwrap();
    let r = s.center.create(crate::world::offer_request(&mut ic, &bill, card_id(1)), None).await.unwrap();
    let id = r.settlement_id.clone();
    let refused =
        s.center.offer(&id, parse_answers(&crate::service::relay(&mut ic, &r)).unwrap(), Default::default()).await;
    assert!(
        matches!(refused, Err(kessai_center::service::CenterError::Db(kessai_center::db::DbError::BillPaid))),
        "{refused:?}"
    );
    assert_eq!(s.center.books.card_float(&card_id(1)).await.unwrap().unwrap(), (50_000, 0), "nothing held");
    assert_eq!(balance_of(&mut ic), 50_000);

    // Offered to the IC card first: the prepaid payment is refused.
    let bill = sample_bill(&mut s);
    let r = s.center.create(crate::world::offer_request(&mut ic, &bill, card_id(1)), None).await.unwrap();
    let id = r.settlement_id.clone();
    s.center.offer(&id, parse_answers(&crate::service::relay(&mut ic, &r)).unwrap(), Default::default()).await.unwrap();
    let token = instruction_for(&s.center, &m, &bill, &card, jpy(11_360), &m.key);
    assert!(matches!(s.center.pay_from_prepaid(&bill, &token, None).await, Err(PrepaidError::BillPaid)));
    assert_eq!(balance(&s, &card).await, 50_000 - 11_360);
    // Posted: the one prepaid payment; held: the IC card's offer.
    let member_store = StoreId::parse(samples::MEMBER).unwrap();
    assert_eq!(s.center.books.store_payable(&member_store, Currency::JPY).await.unwrap(), 11_360);
    assert_eq!(s.center.books.card_float(&card_id(1)).await.unwrap().unwrap(), (50_000, 11_360));
    s.center.books.ledger().check().await.unwrap();
}

#[tokio::test]
async fn racing_payments_from_one_card_never_spend_more_than_it_holds() {
    racing_payments(setup().await).await;
}

#[tokio::test]
async fn racing_payments_from_one_card_never_spend_more_than_it_holds_on_postgres() {
    let Some(s) = crate::service::setup_on_postgres("prepaid_races").await else { return };
    racing_payments(s).await;
}

async fn racing_payments(mut s: Setup) {
    let (m, card) = funded(&mut s, 30_000).await;
    // Eight bills of JPY 11,360 at once from a card holding 30,000: two pay.
    let mut bills = Vec::new();
    for _ in 0..8 {
        let bill = sample_bill(&mut s);
        let token = instruction_for(&s.center, &m, &bill, &card, jpy(11_360), &m.key);
        bills.push((bill, token));
    }
    let center = &s.center;
    let results = futures_join(bills.iter().map(|(b, t)| center.pay_from_prepaid(b, t, None))).await;
    let paid = results.iter().filter(|r| r.is_ok()).count();
    for r in &results {
        assert!(matches!(r, Ok(_) | Err(PrepaidError::Insufficient { .. })), "{r:?}");
    }
    assert_eq!(paid, 2);
    assert_eq!(balance(&s, &card).await, 30_000 - 2 * 11_360);
    // One bill eight times at once (a member's retries, a replay) from a
    // card that can pay it: paid once, every answer that payment.
    let (other, rich) = funded(&mut s, 20_000).await;
    let bill = sample_bill(&mut s);
    let tokens: Vec<String> =
        (0..8).map(|_| instruction_for(&s.center, &other, &bill, &rich, jpy(11_360), &other.key)).collect();
    let center = &s.center;
    let same = futures_join(tokens.iter().map(|t| center.pay_from_prepaid(&bill, t, None))).await;
    let ids: std::collections::BTreeSet<String> =
        same.iter().map(|r| r.as_ref().unwrap().settlement_id.clone()).collect();
    assert_eq!(ids.len(), 1, "one payment: {ids:?}");
    assert_eq!(balance(&s, &rich).await, 20_000 - 11_360);
    conserved(&s, &[&card, &rich]).await;
}

/// Runs futures concurrently on this task, their results in order.
pub(crate) async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let futures: Vec<_> = futures.map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let mut futures: Vec<Option<std::pin::Pin<Box<F>>>> = futures.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, result) in futures.iter_mut().zip(results.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(out) => {
                        *result = Some(out);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    results.into_iter().map(|r| r.unwrap()).collect()
}

/// #18 ④: value moved from the member's prepaid card onto its IC card, a
/// value update funded by the prepaid card and run through the card's
/// secure session (SIG5). Only the member's linked card, never past the
/// prepaid card's value, once per request.
#[tokio::test]
async fn value_moves_from_a_prepaid_card_to_the_members_ic_card_once() {
    use kessai_center::update::UpdateReply;
    use kessai_center::value::UpdatePhase;

    use crate::world::{balance_of, card_id, funded_card};

    let mut s = setup().await;
    let sim = Simulator::new();
    let (m, prepaid) = funded(&mut s, 20_000).await;
    crate::service::register_card(&s, 1, 0).await;
    crate::service::register_card(&s, 2, 0).await;
    s.center
        .db
        .link_card_member(&card_id(1), Some(m.id.as_str()), true, crate::world::NOW, crate::trail("card_member"))
        .await
        .unwrap();
    let mut card = funded_card(1, 0);
    let to_card = |request_id: &str, card: u8, amount: u64| PrepaidRequestDraft {
        member: m.id.clone(),
        request_id: RequestId::parse(request_id).unwrap(),
        action: PrepaidAction::ToCard,
        account: Some(prepaid.clone()),
        amount: Some(jpy(amount)),
        method: None,
        card_id: Some(card_id(card)),
        token: None,
    };
    let update = |reply: PrepaidReply| -> UpdateReply {
        match reply {
            PrepaidReply::Update(u) => *u,
            other => panic!("expected a value update, got {other:?}"),
        }
    };
    // Refused: a card not linked to the member, more than the prepaid
    // card holds. Nothing is opened.
    let token = sign_request(&s.center, &m, to_card("t-0", 2, 5_000));
    assert!(matches!(s.center.prepaid_request(&token, None, &sim).await, Err(PrepaidError::NotMembersCard(_))));
    let token = sign_request(&s.center, &m, to_card("t-1", 1, 20_001));
    assert!(matches!(s.center.prepaid_request(&token, None, &sim).await, Err(PrepaidError::Insufficient { .. })));

    let token = sign_request(&s.center, &m, to_card("t-2", 1, 5_000));
    let r = update(s.center.prepaid_request(&token, None, &sim).await.unwrap());
    assert_eq!(r.phase, UpdatePhase::Authenticating);
    assert_eq!(r.funding_ref.as_deref(), Some(prepaid.as_str()), "SIG5 names the prepaid card as what funds it");
    // The same request signed again (its answer lost): the same update, in
    // a fresh session.
    let again = sign_request(&s.center, &m, to_card("t-2", 1, 5_000));
    let r = {
        let a = update(s.center.prepaid_request(&again, None, &sim).await.unwrap());
        assert_eq!(a.update_id, r.update_id);
        a
    };
    let id = r.update_id.clone();
    let relay = crate::charge::relay;
    let r = s.center.update_authenticate(&sim, &id, relay(&mut card, &r), None, None).await.unwrap();
    let r = s.center.update_offer(&sim, &id, relay(&mut card, &r), None).await.unwrap();
    assert_eq!(r.phase, UpdatePhase::Offered, "{r:?}");
    assert_eq!(balance(&s, &prepaid).await, 20_000, "held, not yet posted");
    let r = s.center.update_complete(&sim, &id, relay(&mut card, &r), None).await.unwrap();
    assert_eq!(r.phase, UpdatePhase::Completed, "{r:?}");
    assert_eq!(balance_of(&mut card), 5_000, "the IC card holds it");
    assert_eq!(balance(&s, &prepaid).await, 15_000, "the prepaid card gave it");
    assert_eq!(s.center.books.card_float(&card_id(1)).await.unwrap().unwrap(), (5_000, 0));
    s.center.books.ledger().check().await.unwrap();
}

/// #22 item 2: a member's whole story for an operator: the ledger entry,
/// its letter (never its text or code), the IC card linked to it, and its
/// prepaid card with balance and funding. Unknown members and other
/// parties' certificates learn nothing.
#[tokio::test]
async fn an_operator_reads_a_members_whole_story() {
    use axum::http::{Request, StatusCode};
    use serde_json::{Value, json};
    let mut s = setup().await;
    let (m, account) = funded(&mut s, 5_000).await;
    crate::service::register_card(&s, 3, 10_000).await;
    assert!(
        s.center
            .db
            .link_card_member(
                &crate::world::card_id(3),
                Some(m.id.as_str()),
                true,
                crate::world::NOW,
                crate::trail("card_member")
            )
            .await
            .unwrap()
    );
    let center = Arc::new(s.center);
    let app = kessai_center::admin::routes(center.clone(), "admin".into(), vec![]);
    let path = format!("/v1/admin/members/{}/story", m.id);
    let (status, story) = crate::api::send(&app, Request::get(path.clone()), Value::Null, Some("admin")).await;
    assert_eq!(status, StatusCode::OK, "{story}");
    assert_eq!((&story["member"]["member"], &story["member"]["status"]), (&json!(m.id.as_str()), &json!("active")));
    assert_eq!(story["member"]["kid"], m.key.kid().as_str());
    let letters = story["letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1, "{story}");
    assert!(letters[0]["used_at"].is_number(), "the code was used: {story}");
    assert!(letters[0].get("letter").is_none() && letters[0].get("code_hash").is_none(), "never the text or code");
    assert_eq!(
        story["cards"],
        json!([{ "card_id": crate::world::card_id(3).to_string(), "instruction_required": true }])
    );
    let prepaid = story["prepaid_cards"].as_array().unwrap();
    assert_eq!((prepaid.len(), &prepaid[0]["prepaid_id"]), (1, &json!(account.as_str())), "{story}");
    assert_eq!(prepaid[0]["balance"]["amount_minor"], 5_000);
    assert_eq!(prepaid[0]["fundings"].as_array().unwrap().len(), 1);

    let (status, answer) =
        crate::api::send(&app, Request::get("/v1/admin/members/m-0000000000000000/story"), Value::Null, Some("admin"))
            .await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("unknown_member")));
    let (status, _) = crate::api::send(&app, Request::get(path), Value::Null, Some("kessai-mall")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The same story in the console (#22), for a viewer too.
    use crate::console::{app as console_app, ask, give_login, log_in};
    let console = console_app(&center);
    give_login(&center.db, "viewer", kessai_center::db::Role::Viewer, "viewer-password-12").await;
    let viewer = log_in(&console, "viewer", "viewer-password-12").await;
    let page_of = format!("/console/members?id={}", m.id);
    let (status, _, page) = ask(&console, "GET", &page_of, Some("viewer"), Some(&viewer), None).await;
    assert_eq!(status, StatusCode::OK);
    for shown in [m.id.as_str(), account.as_str(), "JPY 5,000"] {
        assert!(page.contains(shown), "{shown}: {page}");
    }
    let unknown = "/console/members?id=m-0000000000000000";
    let (status, _, page) = ask(&console, "GET", unknown, Some("viewer"), Some(&viewer), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("no such member"), "{page}");
}

/// The console's cash queue (#22): two operators count an envelope above
/// the dual-control limit, each with its own certificate and login; a
/// viewer may not count, nor the first operator twice; each count is a
/// trail row.
#[tokio::test]
async fn two_operators_count_cash_in_the_console() {
    use crate::console::{app, ask, form_token, give_login, log_in};
    use axum::http::StatusCode;
    use kessai_center::db::Role;
    let mut s = setup().await;
    s.center.prepaid = PrepaidPolicy { cash_dual_control_minor: 100_000, ..PrepaidPolicy::default() };
    let sim = Simulator::new();
    let m = member(&s.center, &mut s.rng).await;
    let token = request(&s.center, &m, "c-9", PrepaidAction::Open, None, Some(150_000), Some(FundingMethod::Cash));
    let f = funding(s.center.prepaid_request(&token, None, &sim).await.unwrap());
    let center = std::sync::Arc::new(s.center);
    let console = app(&center);
    give_login(&center.db, "admin", Role::Approver, "approver-password-1").await;
    give_login(&center.db, "op2", Role::Operator, "operator-password-2").await;
    give_login(&center.db, "viewer", Role::Viewer, "viewer-password-12").await;
    let first = log_in(&console, "admin", "approver-password-1").await;
    let second = log_in(&console, "op2", "operator-password-2").await;
    let viewer = log_in(&console, "viewer", "viewer-password-12").await;
    let count = format!("/console/cash/{}", f.funding_id);
    let counted = |page: &str| format!("form_token={}&currency=JPY&amount_minor=150000", form_token(page));

    let (_, _, page) = ask(&console, "GET", "/console/cash", Some("viewer"), Some(&viewer), None).await;
    assert!(page.contains(&f.funding_id), "{page}");
    let (status, _, _) = ask(&console, "POST", &count, Some("viewer"), Some(&viewer), Some(&counted(&page))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a viewer counts nothing");

    let (_, _, page) = ask(&console, "GET", "/console/cash", Some("admin"), Some(&first), None).await;
    let (status, _, _) = ask(&console, "POST", &count, Some("admin"), Some(&first), Some(&counted(&page))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, refused) = ask(&console, "POST", &count, Some("admin"), Some(&first), Some(&counted(&page))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    assert!(refused.contains("second operator"), "{refused}");
    let card = PrepaidId::parse(&f.prepaid_id).unwrap();
    assert_eq!(center.books.prepaid_balance(&card).await.unwrap().unwrap_or(0), 0, "nothing issued on one count");

    let (_, _, page) = ask(&console, "GET", "/console/cash", Some("op2"), Some(&second), None).await;
    let (status, _, _) = ask(&console, "POST", &count, Some("op2"), Some(&second), Some(&counted(&page))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(center.books.prepaid_balance(&card).await.unwrap(), Some(150_000), "issued on the second count");
    let rows = center.db.trail(Some(&f.funding_id), None, 10).await.unwrap();
    let who: Vec<(&str, &str)> = rows.iter().map(|r| (r.entry.operator.as_str(), r.entry.action.as_str())).collect();
    assert_eq!(who, [("op2", "cash_counted"), ("admin", "cash_counted")]);
}

/// A crash after any write of a return leaves the credit in suspense and
/// the books as they were, or the credit returned, the money out of the
/// pool once and its trail row: never one without the others.
#[tokio::test]
async fn a_crash_at_any_write_of_a_credit_returned_leaves_all_or_none() {
    let (mut finished, mut crashed) = (false, 0);
    for n in 1..=12 {
        let s = setup().await;
        let c = &s.center;
        let statement = camt("STMT-R", &[(4_200, None, "B-R1")]);
        assert_eq!(c.import_statement(&statement, StatementSource::Bank).await.unwrap().suspense, 1);
        let key = c.bank_credits_in("suspense").await.unwrap()[0].entry_key.clone();
        let pool = c.books.received(Receiving::BankPool, Currency::JPY).await.unwrap();
        c.db.faults().fail_at(n);
        let first = c.return_suspense(&key, "sent back", crate::tester()).await;
        let fired = !c.db.faults().armed();
        c.db.faults().fail_at(0);
        if fired {
            crashed += 1;
            assert!(first.is_err(), "a fault at write {n} fails the return");
            assert_eq!(c.books.suspense(Currency::JPY).await.unwrap(), 4_200, "after a fault at {n}");
            assert_eq!(c.bank_credits_in("suspense").await.unwrap().len(), 1);
            assert!(c.db.trail(Some(&key), None, 10).await.unwrap().is_empty());
            c.return_suspense(&key, "sent back", crate::tester()).await.unwrap();
        } else {
            first.unwrap();
        }
        assert_eq!(c.books.suspense(Currency::JPY).await.unwrap(), 0);
        assert_eq!(c.books.received(Receiving::BankPool, Currency::JPY).await.unwrap(), pool - 4_200, "out once");
        assert_eq!(c.bank_credits_in("returned").await.unwrap().len(), 1);
        assert_eq!(c.db.trail(Some(&key), None, 10).await.unwrap().len(), 1, "fault at {n}");
        c.books.ledger().check().await.unwrap();
        if !fired {
            finished = true;
            break;
        }
    }
    assert!(finished && crashed > 0, "every write of it was crashed at ({crashed}), and then it completed");
}

/// Two operators at the bank-credit queue at once, through the console: the
/// approver returns a credit while an operator applies it. One of them
/// happens; the other is told the credit is no longer in suspense.
#[tokio::test]
async fn two_operators_on_one_credit_in_the_console_leave_one_change() {
    use axum::http::StatusCode;
    let mut s = setup().await;
    let sim = Simulator::new();
    let m = member(&s.center, &mut s.rng).await;
    let token =
        request(&s.center, &m, "q-1", PrepaidAction::Open, None, Some(2_500), Some(FundingMethod::BankTransfer));
    let wanting = funding(s.center.prepaid_request(&token, None, &sim).await.unwrap());
    let card = PrepaidId::parse(&wanting.prepaid_id).unwrap();
    let statement = camt("STMT-Q", &[(2_500, None, "B-Q1")]);
    s.center.import_statement(&statement, StatementSource::Bank).await.unwrap();
    let key = s.center.bank_credits_in("suspense").await.unwrap()[0].entry_key.clone();
    let center = Arc::new(s.center);
    let app = crate::console::app(&center);
    crate::console::give_login(&center.db, "admin", kessai_center::db::Role::Approver, "approver-password-1").await;
    crate::console::give_login(&center.db, "op2", kessai_center::db::Role::Operator, "operator-password-2").await;
    let approver = crate::console::log_in(&app, "admin", "approver-password-1").await;
    let operator = crate::console::log_in(&app, "op2", "operator-password-2").await;
    let ask = crate::console::ask;
    let (_, _, page) = ask(&app, "GET", "/console/bank-credits", Some("admin"), Some(&approver), None).await;
    let back = format!("form_token={}&entry_key={key}&reason=sent+back", crate::console::form_token(&page));
    let (_, _, page) = ask(&app, "GET", "/console/bank-credits", Some("op2"), Some(&operator), None).await;
    let apply =
        format!("form_token={}&entry_key={key}&funding_id={}", crate::console::form_token(&page), wanting.funding_id);
    // The return posted from another origin, with the right form and
    // session: refused, the credit still in suspense.
    let foreign = crate::console::post_from(
        &app,
        "https://rebound.example:8440",
        "/console/bank-credits/return",
        "admin",
        &approver,
        &back,
    );
    assert_eq!(foreign.await, StatusCode::FORBIDDEN);
    assert_eq!(center.bank_credits_in("suspense").await.unwrap().len(), 1);
    let ((returned, _, _), (applied, _, _)) = tokio::join!(
        ask(&app, "POST", "/console/bank-credits/return", Some("admin"), Some(&approver), Some(&back)),
        ask(&app, "POST", "/console/bank-credits/apply", Some("op2"), Some(&operator), Some(&apply)),
    );
    let won = [returned, applied].iter().filter(|s| **s == StatusCode::SEE_OTHER).count();
    assert_eq!(won, 1, "exactly one: return {returned}, apply {applied}");
    let lost = if returned == StatusCode::SEE_OTHER { applied } else { returned };
    // Told the credit is gone (404) or, had it read the credit first, that
    // the funding changed meanwhile (409).
    assert!([StatusCode::NOT_FOUND, StatusCode::CONFLICT].contains(&lost), "the other changes nothing: {lost}");
    let trail = center.db.trail(Some(&key), None, 10).await.unwrap();
    assert_eq!(trail.len(), 1);
    let value = value_of(&center, &card).await;
    if applied == StatusCode::SEE_OTHER {
        assert_eq!((trail[0].entry.action.as_str(), trail[0].entry.operator.as_str()), ("bank_credit_applied", "op2"));
        assert_eq!(value, 2_500);
    } else {
        assert_eq!(
            (trail[0].entry.action.as_str(), trail[0].entry.operator.as_str()),
            ("bank_credit_returned", "admin")
        );
        assert_eq!(value, 0);
    }
    assert_eq!(center.books.suspense(Currency::JPY).await.unwrap(), 0);
    center.books.ledger().check().await.unwrap();
}

/// Over the admin API, only the admin's certificate returns a credit: an
/// operator's is refused and nothing moves.
#[tokio::test]
async fn only_the_admin_returns_a_credit_over_the_admin_api() {
    use axum::http::{Request, StatusCode};
    let s = setup().await;
    let statement = camt("STMT-A", &[(1_500, None, "B-A1")]);
    s.center.import_statement(&statement, StatementSource::Bank).await.unwrap();
    let key = s.center.bank_credits_in("suspense").await.unwrap()[0].entry_key.clone();
    let center = Arc::new(s.center);
    let admin = kessai_center::admin::routes(center.clone(), "admin".into(), vec!["viewer".into()]);
    let body = serde_json::json!({ "entry_key": key, "reason": "sent back" });
    let send = |peer: &'static str| {
        let (admin, body) = (admin.clone(), body.clone());
        async move { crate::api::send(&admin, Request::post("/v1/admin/bank-credits/return"), body, Some(peer)).await }
    };
    let (status, answer) = send("operator/viewer").await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("not_admin")), "{answer}");
    assert_eq!(center.books.suspense(Currency::JPY).await.unwrap(), 1_500, "nothing moved");
    let (status, answer) = send("admin").await;
    assert_eq!((status, answer["status"].as_str()), (StatusCode::OK, Some("returned")), "{answer}");
    assert_eq!(center.books.suspense(Currency::JPY).await.unwrap(), 0);
    let trail = center.db.trail(Some(&key), None, 10).await.unwrap();
    assert_eq!((trail.len(), trail[0].entry.operator.as_str(), trail[0].entry.role.as_str()), (1, "admin", "api"));
}
