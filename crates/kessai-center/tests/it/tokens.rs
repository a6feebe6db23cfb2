//! Bank deposit tokens at the center (seed 002, #21): a member's deposit,
//! confirmed by the pool account's statement, becomes a token sealed under
//! the credit service provider's key and stored on the member's IC card
//! through a secure session, with the books and the card checked after
//! each step.

use std::sync::Arc;

use kessai_bsp::rig::BankRig;
use kessai_card::tokens::{ListedToken, list_tokens_command, parse_list};
use kessai_center::books::Receiving;
use kessai_center::prepaid::{PrepaidError, PrepaidReply, StatementSource};
use kessai_center::service::{Center, parse_answers};
use kessai_center::token_session::{TokenPurpose, TokenSessionPhase};
use kessai_center::tokens::{TokenPolicy, TokenView, Tokens};
use kessai_core::Currency;
use kessai_core::ids::{CardId, RequestId};
use kessai_core::messages::prepaid::{FundingMethod, PrepaidAction, PrepaidRequestDraft, TokenTerms};
use kessai_core::random::SeededRandom;
use kessai_core::time::{Clock as _, Timestamp};
use kessai_core::token::{TokenHeader, TokenId, TokenKey, TokenKeyring};
use kessai_scp03::{CommandApdu, ResponseApdu};

use crate::prepaid::{Member, camt, jpy, member, sign_request};
use crate::provider::{ProviderRig, Reach, ReachBank};
use crate::service::{Setup, register_card, setup, setup_on_postgres};
use crate::world::{CardReader, KVN, NOW, card_id, funded_card, masters, relay};

const DAY: u64 = 86_400;

/// The credit service provider's key version 1, issuing from a day before
/// NOW for 30 days, redeeming for a year after.
fn provider_key(version: u8, seed: u64) -> TokenKey {
    let at = |s: u64| Timestamp::from_unix_s(s);
    let windows = (at(NOW.unix_s() - DAY), at(NOW.unix_s() + 30 * DAY), at(NOW.unix_s() + 400 * DAY));
    TokenKey::generate(version, windows, &mut SeededRandom::new(seed)).unwrap()
}

/// The same key versions as the provider holds them, for opening tokens.
fn provider_keyring() -> TokenKeyring {
    let mut ring = TokenKeyring::new();
    ring.add(provider_key(1, 2101)).unwrap();
    ring
}

/// Both token parties, each its own service on loopback (mutual TLS, its
/// own directory and register), on the test's clock: the bank holding
/// `bank` as the versions delivered to it (the setup keeps it, to book
/// deposits), and the credit service provider holding version 1.
async fn parties(s: &mut Setup, bank: &[&TokenKey]) {
    let rig = ProviderRig::start(s._dir.path(), &[&provider_key(1, 2101)], None, s.time.clone()).await.unwrap();
    let bank_rig = BankRig::start(s._dir.path(), bank, s.time.clone(), "").await.unwrap();
    s.center.tokens = Some(Arc::new(Tokens { bank: bank_rig.client(), provider: rig.client() }));
    s.bank = Some(Arc::clone(&bank_rig.bank));
}

/// The center with both token parties, the bank holding the version the
/// provider delivered.
async fn with_tokens(mut s: Setup) -> Setup {
    parties(&mut s, &[&provider_key(1, 2101)]).await;
    s
}

/// The center reaching `provider`, and a bank holding the version it
/// delivered.
async fn with_provider(s: &mut Setup, provider: kessai_center::tokens::TokenProvider) {
    let bank_rig = BankRig::start(s._dir.path(), &[&provider_key(1, 2101)], s.time.clone(), "").await.unwrap();
    s.center.tokens = Some(Arc::new(Tokens { bank: bank_rig.client(), provider }));
    s.bank = Some(Arc::clone(&bank_rig.bank));
}

/// Deposits booked to the bank's pool account, each of (JPY, the
/// reference quoted), and a statement of the pool account with just them.
pub(crate) async fn deposited(s: &Setup, id: &str, credits: &[(u64, Option<&str>)]) -> Vec<u8> {
    let bank = s.bank.as_ref().expect("the test runs a bank");
    let mut refs = Vec::new();
    for (amount, quoted) in credits {
        let quoted = quoted.map(|q| kessai_bank::rf::Reference::parse(q).unwrap());
        refs.push(format!("D{}", bank.deposit(jpy(*amount), quoted.as_ref(), "YAMADA HANAKO").await.unwrap()));
    }
    let listed: Vec<(u64, Option<&str>, &str)> =
        credits.iter().zip(&refs).map(|((amount, quoted), r)| (*amount, *quoted, r.as_str())).collect();
    camt(id, &listed)
}

/// Card 1 registered (no value), linked to a new member.
async fn members_card(s: &mut Setup) -> Member {
    register_card(s, 1, 0).await;
    let m = member(&s.center, &mut s.rng).await;
    assert!(
        s.center
            .db
            .link_card_member(&card_id(1), Some(m.id.as_str()), false, NOW, crate::trail("card_member"))
            .await
            .unwrap()
    );
    m
}

fn terms() -> TokenTerms {
    TokenTerms { refund_account: "0005-123-1-7654321".into(), card_ref: "last4:4242".into(), refund_holder: None }
}

fn token_request(m: &Member, request_id: &str, card: CardId, amount: u64) -> PrepaidRequestDraft {
    PrepaidRequestDraft {
        member: m.id.clone(),
        request_id: RequestId::parse(request_id).unwrap(),
        action: PrepaidAction::DepositToken,
        account: None,
        amount: Some(jpy(amount)),
        method: Some(FundingMethod::BankTransfer),
        card_id: Some(card),
        token: Some(terms()),
    }
}

async fn ask(c: &Center, m: &Member, draft: PrepaidRequestDraft) -> Result<TokenView, PrepaidError> {
    let signed = sign_request(c, m, draft);
    match c.prepaid_request(&signed, None, &kessai_center::authorizer::Simulator::new()).await? {
        PrepaidReply::Token(t) => Ok(*t),
        other => panic!("expected a token, got {other:?}"),
    }
}

/// The tokens card `n` lists, through a secure session of its own.
fn card_tokens(t: &mut kessai_card::terminal::Terminal<CardReader>, n: u8) -> Vec<ListedToken> {
    let keys = kessai_scp03::diversify::diversify(
        &masters(0x40),
        card_id(n).as_bytes(),
        kessai_scp03::KeyVersion::new(KVN).unwrap(),
    );
    t.select().unwrap();
    let s = t.open_session(keys, [2; 8]).unwrap();
    let (s, first) = t.secure(s, &list_tokens_command(0, 4)).unwrap();
    let (_, second) = t.secure(s, &list_tokens_command(4, 4)).unwrap();
    assert_eq!((first.sw().raw(), second.sw().raw()), (0x9000, 0x9000));
    t.select().unwrap();
    let mut listed = parse_list(first.data()).unwrap().1;
    listed.extend(parse_list(second.data()).unwrap().1);
    listed
}

fn relay_hex(t: &mut kessai_card::terminal::Terminal<CardReader>, apdus: &[String]) -> Vec<ResponseApdu> {
    let answers: Vec<String> = apdus
        .iter()
        .map(|h| hex::encode(relay(t, &CommandApdu::parse(&hex::decode(h).unwrap()).unwrap()).to_bytes()))
        .collect();
    parse_answers(&answers).unwrap()
}

/// One delivery session end to end: the tokens the center says it stored.
async fn deliver(c: &Center, t: &mut kessai_card::terminal::Terminal<CardReader>, n: u8) -> Vec<String> {
    t.select().unwrap();
    let r = c.token_session_create(card_id(n), TokenPurpose::Deliver).await.unwrap();
    let r = c.token_session_authenticate(&r.session_id, relay_hex(t, &r.apdus), None).await.unwrap();
    let id = r.session_id.clone();
    let done = c.token_session_finish(&id, relay_hex(t, &r.apdus), None).await.unwrap();
    assert_eq!(done.phase, TokenSessionPhase::Done);
    done.stored
}

/// What the pool received for tokens equals what is outstanding, and the
/// ledger's invariants hold.
async fn conserved(c: &Center) {
    c.books.ledger().check().await.unwrap();
    let received = c.books.received(Receiving::BankPool, Currency::JPY).await.unwrap();
    let suspense = i128::from(c.books.suspense(Currency::JPY).await.unwrap());
    let outstanding = c.books.tokens_outstanding(Currency::JPY).await.unwrap();
    assert_eq!(received, outstanding + suspense, "the pool holds what tokens and suspense hold");
}

async fn a_deposit_becomes_a_token_on_the_card(mut s: Setup) {
    let m = members_card(&mut s).await;
    let c = &s.center;
    let mut card = funded_card(1, 0);

    // The member asks; the answer is a reference and where to pay.
    let asked = ask(c, &m, token_request(&m, "dep-1", card_id(1), 12_000)).await.unwrap();
    assert_eq!(asked.status, kessai_api::TokenStatus::Awaiting);
    assert!(asked.pay_to.is_some() && asked.awaiting_until.is_some());
    assert!(asked.reference.starts_with("RF"), "{}", asked.reference);
    // Asked again (an answer lost): the same token; another request under
    // the same id is refused.
    let again = ask(c, &m, token_request(&m, "dep-1", card_id(1), 12_000)).await.unwrap();
    assert_eq!(again.token_id, asked.token_id);
    assert!(matches!(
        ask(c, &m, token_request(&m, "dep-1", card_id(1), 12_001)).await,
        Err(PrepaidError::RequestIdReused(_))
    ));
    assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 0, "nothing before the money");

    // The deposit arrives on the pool account's statement.
    let statement = deposited(&s, "STMT-T1", &[(12_000, Some(&asked.reference))]).await;
    let report = c.import_statement(&statement, StatementSource::Bank).await.unwrap();
    assert_eq!((report.matched, report.suspense), (1, 0));
    assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 12_000);
    conserved(c).await;
    let id = TokenId::parse(&asked.token_id).unwrap();
    let row = c.db.token(&id).await.unwrap().unwrap();
    assert_eq!(row.status, kessai_api::TokenStatus::Issued);
    // Sealed under the provider's version 1, with every FIG. 12 field.
    let sealed = row.sealed.clone().unwrap();
    let opened = provider_keyring().open(&sealed, NOW).unwrap();
    assert_eq!(opened.token_id, id);
    assert_eq!(opened.amount, jpy(12_000));
    assert_eq!(opened.user_id, m.id.as_str());
    assert_eq!(opened.bank_account, "0005-123-1-7654321");
    assert_eq!(opened.card_ref, "last4:4242");
    assert_eq!(opened.card_company_id, "kessai-csp");
    assert_eq!(opened.deposited_at, NOW);
    assert_eq!(opened.expires_at.unix_s(), NOW.unix_s() + 180 * DAY);
    assert!(!opened.user_name.is_empty());
    assert_eq!(TokenHeader::read(&sealed).unwrap().key_version, 1);
    // The statement again: nothing more.
    let report = c.import_statement(&statement, StatementSource::Bank).await.unwrap();
    assert_eq!((report.matched, report.already_imported), (0, 1));
    assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 12_000);

    // The token reaches the card through a secure session.
    assert!(card_tokens(&mut card, 1).is_empty());
    assert_eq!(deliver(c, &mut card, 1).await, vec![asked.token_id.clone()]);
    let listed = card_tokens(&mut card, 1);
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].token_id, listed[0].amount_minor, listed[0].redeemed), (id.0, 12_000, false));
    let row = c.db.token(&id).await.unwrap().unwrap();
    assert_eq!(row.status, kessai_api::TokenStatus::Stored);
    assert_eq!(row.stored_counter, Some(listed[0].counter));
    // Listed through a session: the card's own table, with the center's view.
    card.select().unwrap();
    let r = c.token_session_create(card_id(1), TokenPurpose::List).await.unwrap();
    let r = c.token_session_authenticate(&r.session_id, relay_hex(&mut card, &r.apdus), None).await.unwrap();
    assert_eq!(r.apdus.len(), 3, "EXTERNAL AUTHENTICATE and two sealed LIST TOKENS, no log commands");
    let r = c.token_session_finish(&r.session_id, relay_hex(&mut card, &r.apdus), None).await.unwrap();
    let on_card = r.on_card.unwrap();
    assert_eq!(on_card.len(), 1);
    assert_eq!((on_card[0].token_id.as_str(), on_card[0].amount), (asked.token_id.as_str(), jpy(12_000)));
    assert_eq!(on_card[0].expires_at, opened.expires_at.unix_s());
    assert_eq!(on_card[0].status, Some(kessai_api::TokenStatus::Stored));
    assert_eq!(on_card[0].deposited_on.as_deref(), Some("2026-11-18"));
    // Nothing more to deliver; the books unchanged by storing.
    assert!(deliver(c, &mut card, 1).await.is_empty());
    assert_eq!(card_tokens(&mut card, 1).len(), 1);
    assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 12_000);
    conserved(c).await;
    // The member sees it stored, with its expiry.
    let views = c.tokens_of(m.id.as_str()).await.unwrap();
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].status, kessai_api::TokenStatus::Stored);
    assert_eq!(views[0].expires_at, Some(opened.expires_at));
    assert_eq!(views[0].pay_to, None);

    // The card's log, collected by a later session, agrees with the books.
    collect_log(c, &mut card, 1).await;
    let report = c.audit(NOW).await.unwrap();
    assert!(report.differences.is_empty(), "{:?}", report.differences);
}

#[tokio::test]
async fn a_deposit_becomes_a_token_on_the_card_once() {
    a_deposit_becomes_a_token_on_the_card(with_tokens(setup().await).await).await;
}

#[tokio::test]
async fn a_deposit_becomes_a_token_on_the_card_once_on_postgres() {
    let Some(s) = setup_on_postgres("tokens_deposit").await else { return };
    a_deposit_becomes_a_token_on_the_card(with_tokens(s).await).await;
}

/// A deposit that cannot make its token waits in suspense, with why; the
/// token request is unchanged.
#[tokio::test]
async fn a_deposit_that_cannot_make_a_token_waits_in_suspense() {
    let mut s = with_tokens(setup().await).await;
    let m = members_card(&mut s).await;
    let c = &s.center;
    let a = ask(c, &m, token_request(&m, "dep-a", card_id(1), 5_000)).await.unwrap();
    let b = ask(c, &m, token_request(&m, "dep-b", card_id(1), 6_000)).await.unwrap();
    // Another amount than asked.
    let report = c
        .import_statement(&deposited(&s, "STMT-S1", &[(5_001, Some(&a.reference))]).await, StatementSource::Bank)
        .await
        .unwrap();
    assert_eq!((report.matched, report.suspense), (0, 1));
    let held = c.bank_credits_in("suspense").await.unwrap();
    assert!(held[0].reason.as_deref().unwrap().contains("for a token of"), "{:?}", held[0].reason);
    assert_eq!(held[0].funding_id.as_deref(), Some(a.token_id.as_str()), "the operator sees which token");
    // Too late: booked by the bank a day after the request's last day.
    s.time.set(Timestamp::from_unix_s(NOW.unix_s() + 8 * DAY));
    let c = &s.center;
    let quoted = kessai_bank::rf::Reference::parse(&b.reference).unwrap();
    s.bank.as_ref().unwrap().deposit(jpy(6_000), Some(&quoted), "YAMADA HANAKO").await.unwrap();
    let report = c.fetch_statement(&kessai_bank::Date::of(s.time.now()).to_string()).await.unwrap();
    assert_eq!((report.matched, report.suspense), (0, 1));
    let held = c.bank_credits_in("suspense").await.unwrap();
    assert!(held.iter().any(|h| h.reason.as_deref().unwrap().contains("booked after the token request expired")));
    for t in [&a, &b] {
        let row = c.db.token(&TokenId::parse(&t.token_id).unwrap()).await.unwrap().unwrap();
        assert_eq!(row.status, kessai_api::TokenStatus::Awaiting);
        assert!(row.sealed.is_none());
    }
    assert_eq!(c.lapse_token_requests().await.unwrap(), 0, "not before the statements' grace");
    s.time.set(Timestamp::from_unix_s(NOW.unix_s() + 10 * DAY));
    let c = &s.center;
    assert_eq!(c.lapse_token_requests().await.unwrap(), 2, "both lapse once no deposit came in time");
    let lapsed = c.db.token(&TokenId::parse(&a.token_id).unwrap()).await.unwrap().unwrap();
    assert_eq!((lapsed.status, lapsed.updated_at), (kessai_api::TokenStatus::Lapsed, s.time.now()));
    assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 0);
    assert_eq!(c.books.suspense(Currency::JPY).await.unwrap(), 11_001);
    conserved(c).await;
}

/// A credit on a statement the bank did not book (a forged file, or one
/// of another account) makes no token: the bank refuses, the credit waits
/// in suspense with why, the request still awaits its deposit. The bank
/// out of reach decides nothing: the credit is deferred, nothing written,
/// and the import again, once it answers, issues the token once.
#[tokio::test]
async fn a_credit_the_bank_did_not_book_makes_no_token() {
    let mut s = setup().await;
    let provider = ProviderRig::start(s._dir.path(), &[&provider_key(1, 2101)], None, s.time.clone()).await.unwrap();
    let mut bank = BankRig::start(s._dir.path(), &[&provider_key(1, 2101)], s.time.clone(), "").await.unwrap();
    s.center.tokens = Some(Arc::new(Tokens { bank: bank.client(), provider: provider.client() }));
    s.bank = Some(Arc::clone(&bank.bank));
    let m = members_card(&mut s).await;
    let c = &s.center;
    let a = ask(c, &m, token_request(&m, "dep-x", card_id(1), 5_000)).await.unwrap();
    let forged = camt("STMT-X", &[(5_000, Some(&a.reference), "BANK-X")]);
    let report = c.import_statement(&forged, StatementSource::Bank).await.unwrap();
    assert_eq!((report.matched, report.suspense), (0, 1));
    let held = c.bank_credits_in("suspense").await.unwrap();
    assert!(held[0].reason.as_deref().unwrap().contains("the bank: "), "{:?}", held[0].reason);
    let id = TokenId::parse(&a.token_id).unwrap();
    let row = c.db.token(&id).await.unwrap().unwrap();
    assert_eq!((row.status, row.sealed.is_none()), (kessai_api::TokenStatus::Awaiting, true));
    assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 0);
    conserved(c).await;

    // Another request, its deposit booked; the bank out of reach.
    let b = ask(c, &m, token_request(&m, "dep-y", card_id(1), 6_000)).await.unwrap();
    let statement = deposited(&s, "STMT-Y", &[(6_000, Some(&b.reference))]).await;
    bank.stop();
    // A new connection (one kept alive may outlive the stop).
    s.center.tokens = Some(Arc::new(Tokens { bank: bank.client(), provider: provider.client() }));
    let c = &s.center;
    let lost = c.import_statement(&statement, StatementSource::Bank).await.unwrap();
    assert_eq!((lost.deferred, lost.matched, lost.suspense), (1, 0, 0), "{lost:?}");
    let id = TokenId::parse(&b.token_id).unwrap();
    assert_eq!(c.db.token(&id).await.unwrap().unwrap().status, kessai_api::TokenStatus::Awaiting);
    assert_eq!(c.bank_credits_in("suspense").await.unwrap().len(), 1, "the credit not taken");
    assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 0);
    bank.restart(s.time.clone()).await.unwrap();
    let report = c.import_statement(&statement, StatementSource::Bank).await.unwrap();
    assert_eq!((report.matched, report.suspense), (1, 0));
    assert_eq!(c.db.token(&id).await.unwrap().unwrap().status, kessai_api::TokenStatus::Issued);
    assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 6_000);
    conserved(c).await;
}

/// The days the statement loop imports: yesterday and today every
/// minute; every day back over the catch-up span, today included, each
/// once, however the span falls on the clock.
#[test]
fn the_statement_days_cover_the_span_and_today() {
    use kessai_center::tokens::statement_days;
    // Seconds into 2026-12-05 (UTC).
    let at = |s: u64| Timestamp::from_unix_s(1_796_428_800 + s);
    assert_eq!(kessai_bank::Date::of(at(0)).to_string(), "2026-12-05");
    assert_eq!(statement_days(at(3_600), DAY), ["2026-12-04", "2026-12-05"]);
    assert_eq!(statement_days(at(0), DAY), ["2026-12-04", "2026-12-05"]);
    assert_eq!(statement_days(at(86_399), DAY), ["2026-12-04", "2026-12-05"]);
    assert_eq!(statement_days(at(50_000), 0), ["2026-12-05"]);
    let span = 7 * DAY + kessai_center::tokens::STATEMENT_GRACE_S + DAY + 3_600;
    let days = statement_days(at(1_800), span);
    assert_eq!(days.first().map(String::as_str), Some("2026-11-24"));
    assert_eq!(days.last().map(String::as_str), Some("2026-12-05"));
    assert_eq!(days.len(), 12, "{days:?}");
    let mut unique = days.clone();
    unique.dedup();
    assert_eq!(unique, days, "each day once");
    assert_eq!(statement_days(Timestamp::from_unix_s(10), 2 * DAY), ["1970-01-01"]);
}

/// A deposit booked by the request's last day but imported after it (the
/// statement comes the next day, or the bank was out of reach) still makes
/// its token: the request lapses only after the statements' grace.
#[tokio::test]
async fn a_deposit_booked_in_time_and_imported_late_makes_its_token() {
    let mut s = with_tokens(setup().await).await;
    let m = members_card(&mut s).await;
    let a = ask(&s.center, &m, token_request(&m, "dep-late", card_id(1), 4_000)).await.unwrap();
    s.time.set(Timestamp::from_unix_s(NOW.unix_s() + 6 * DAY));
    let quoted = kessai_bank::rf::Reference::parse(&a.reference).unwrap();
    s.bank.as_ref().unwrap().deposit(jpy(4_000), Some(&quoted), "YAMADA HANAKO").await.unwrap();
    let booked = kessai_bank::Date::of(s.time.now()).to_string();
    // Imported a day and a half after the request's last moment.
    s.time.set(Timestamp::from_unix_s(NOW.unix_s() + 8 * DAY + DAY / 2));
    let c = &s.center;
    assert_eq!(c.lapse_token_requests().await.unwrap(), 0, "within the grace");
    let views = c.tokens_of(m.id.as_str()).await.unwrap();
    assert_eq!(views[0].status, kessai_api::TokenStatus::Awaiting);
    assert_eq!(views[0].pay_to, None, "where to pay is not shown after the request's last day");
    assert_eq!(c.fetch_statement(&booked).await.unwrap().matched, 1);
    let id = TokenId::parse(&a.token_id).unwrap();
    assert_eq!(c.db.token(&id).await.unwrap().unwrap().status, kessai_api::TokenStatus::Issued);
    s.time.set(Timestamp::from_unix_s(NOW.unix_s() + 20 * DAY));
    assert_eq!(s.center.lapse_token_requests().await.unwrap(), 0, "an issued token never lapses");
    assert_eq!(s.center.books.tokens_outstanding(Currency::JPY).await.unwrap(), 4_000);
    conserved(&s.center).await;
}

/// With no key version issuing (the provider's keys all past their
/// window, or none delivered yet), nothing is decided: the bank answers
/// that it cannot make the token now, the credit is deferred with nothing
/// written (the statement's other credits are taken), and no token is
/// sealed under a key that may not issue.
#[tokio::test]
async fn no_token_is_made_without_a_key_version_issuing() {
    let mut s = setup().await;
    let at = |d: i64| Timestamp::from_unix_s(NOW.unix_s().saturating_add_signed(d * DAY as i64));
    let past = TokenKey::generate(1, (at(-60), at(-30), at(300)), &mut SeededRandom::new(5)).unwrap();
    parties(&mut s, &[&past]).await;
    let m = members_card(&mut s).await;
    let c = &s.center;
    let a = ask(c, &m, token_request(&m, "dep-k", card_id(1), 5_000)).await.unwrap();
    let statement = deposited(&s, "STMT-K", &[(5_000, Some(&a.reference)), (700, None)]).await;
    let report = c.import_statement(&statement, StatementSource::Bank).await.unwrap();
    assert_eq!((report.matched, report.suspense, report.deferred), (0, 1, 1), "the stray credit taken");
    let held = c.bank_credits_in("suspense").await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].amount, jpy(700));
    let id = TokenId::parse(&a.token_id).unwrap();
    assert_eq!(c.db.token(&id).await.unwrap().unwrap().status, kessai_api::TokenStatus::Awaiting);
    assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 0);
    conserved(c).await;
    // Again: still deferred, the other imported before.
    let report = c.import_statement(&statement, StatementSource::Bank).await.unwrap();
    assert_eq!((report.deferred, report.already_imported), (1, 1));
    // The bank's own answer: not a verdict (503), nothing made.
    let req = kessai_api::bank::SealRequest {
        deposit: format!("{}/D1", kessai_bsp::rig::POOL_ACCOUNT),
        reference: a.reference.clone(),
        token_id: a.token_id.clone(),
        amount: jpy(5_000),
        user_name: "member".into(),
        user_id: m.id.as_str().into(),
        bank_account: "0005-123-1-7654321".into(),
        card_ref: "last4:4242".into(),
    };
    let e = c.tokens.as_ref().unwrap().bank.seal(&req).await.unwrap_err();
    assert!(e.0.contains("503") && e.0.contains("bank_unavailable"), "{e}");
    assert!(s.bank.as_ref().unwrap().register().made(1).await.unwrap().is_none());
}

/// A bank sealing under a key the provider does not hold (another key
/// under its version, or a version it never made) makes no token the
/// center issues: the provider's check refuses it before anything is
/// written, and the credit waits in suspense with why; no value would be
/// frozen in a token nobody honours.
#[tokio::test]
async fn a_token_the_bank_sealed_under_a_key_the_provider_does_not_hold_is_not_issued() {
    for (version, seed) in [(1u8, 9_999u64), (2, 2101)] {
        let mut s = setup().await;
        parties(&mut s, &[&provider_key(version, seed)]).await;
        let m = members_card(&mut s).await;
        let c = &s.center;
        let a = ask(c, &m, token_request(&m, "dep-w", card_id(1), 5_000)).await.unwrap();
        let statement = deposited(&s, "STMT-W", &[(5_000, Some(&a.reference))]).await;
        let report = c.import_statement(&statement, StatementSource::Bank).await.unwrap();
        assert_eq!((report.matched, report.suspense), (0, 1), "version {version}");
        let held = c.bank_credits_in("suspense").await.unwrap();
        let why = held[0].reason.as_deref().unwrap();
        assert!(why.contains("refuses the token the bank made"), "{why}");
        let id = TokenId::parse(&a.token_id).unwrap();
        let row = c.db.token(&id).await.unwrap().unwrap();
        assert_eq!((row.status, row.sealed.is_none()), (kessai_api::TokenStatus::Awaiting, true));
        assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 0);
        conserved(c).await;
    }
}

/// A day's statement from the bank is fetched in pages: every deposit of
/// the day is imported once, however many; again, nothing more.
#[tokio::test]
async fn a_days_statement_is_fetched_in_pages() {
    let s = with_tokens(setup().await).await;
    let bank = s.bank.as_ref().unwrap();
    let n = kessai_bsp::STATEMENT_PAGE + 3;
    for k in 0..n {
        bank.deposit(jpy(100 + k as u64), None, "YAMADA HANAKO").await.unwrap();
    }
    let c = &s.center;
    let day = kessai_bank::Date::of(NOW).to_string();
    let report = c.fetch_statement(&day).await.unwrap();
    assert_eq!((report.suspense, report.already_imported, report.deferred), (n, 0, 0), "{report:?}");
    let held = c.books.suspense(Currency::JPY).await.unwrap();
    let sum: u64 = (0..n as u64).map(|k| 100 + k).sum();
    assert_eq!(held, sum);
    let again = c.fetch_statement(&day).await.unwrap();
    assert_eq!((again.suspense, again.already_imported), (0, n));
    assert!(c.fetch_statement("2026-02-30").await.is_err(), "not a day");
    conserved(c).await;
}

/// Every refused request changes nothing: a card not the member's, a
/// center that issues no tokens, a card number where the card reference
/// goes.
#[tokio::test]
async fn refused_token_requests_change_nothing() {
    let mut s = setup().await;
    let m = members_card(&mut s).await;
    register_card(&s, 2, 0).await;
    // No tokens here.
    let refused = ask(&s.center, &m, token_request(&m, "dep-x", card_id(1), 5_000)).await;
    assert!(matches!(refused, Err(PrepaidError::Refused(ref why)) if why.contains("no deposit tokens")), "{refused:?}");
    let s = with_tokens(s).await;
    let c = &s.center;
    assert!(matches!(
        ask(c, &m, token_request(&m, "dep-y", card_id(2), 5_000)).await,
        Err(PrepaidError::NotMembersCard(_))
    ));
    assert!(matches!(
        ask(c, &m, token_request(&m, "dep-z", card_id(1), 5_000_000)).await,
        Err(PrepaidError::OverLimit { .. })
    ));
    // A card number in the card reference does not even sign.
    let bad = PrepaidRequestDraft {
        token: Some(TokenTerms { card_ref: "4242424242424242".into(), ..terms() }),
        ..token_request(&m, "dep-w", card_id(1), 5_000)
    };
    assert!(kessai_core::messages::prepaid::PrepaidRequest::new(bad).is_err());
    assert!(c.tokens_of(m.id.as_str()).await.unwrap().is_empty());
}

/// The card's answer to STORE TOKEN lost: the next session sends the same
/// bytes under the same transaction, the card answers as the first time,
/// and the token is stored once, at its first counter. An error status
/// word a relay makes up (unproven) changes nothing.
#[tokio::test]
async fn a_lost_answer_or_a_made_up_refusal_stores_the_token_once() {
    let mut s = with_tokens(setup().await).await;
    let m = members_card(&mut s).await;
    let c = &s.center;
    let mut card = funded_card(1, 0);
    let a = ask(c, &m, token_request(&m, "dep-l", card_id(1), 7_000)).await.unwrap();
    c.import_statement(&deposited(&s, "STMT-L", &[(7_000, Some(&a.reference))]).await, StatementSource::Bank)
        .await
        .unwrap();
    let id = TokenId::parse(&a.token_id).unwrap();

    // A relay answers the STORE with a bare refusal: nothing changes.
    card.select().unwrap();
    let r = c.token_session_create(card_id(1), TokenPurpose::Deliver).await.unwrap();
    let r = c.token_session_authenticate(&r.session_id, relay_hex(&mut card, &r.apdus), None).await.unwrap();
    let mut answers = relay_hex(&mut card, &r.apdus[..r.apdus.len() - 1]);
    answers.push(ResponseApdu::parse(&[0x6A, 0x84]).unwrap());
    let done = c.token_session_finish(&r.session_id, answers, None).await.unwrap();
    assert!(done.stored.is_empty());
    assert_eq!(done.refused.len(), 1);
    assert!(done.refused[0].reason.contains("6A84"), "{}", done.refused[0].reason);
    assert_eq!(c.db.token(&id).await.unwrap().unwrap().status, kessai_api::TokenStatus::Issued);
    assert!(card_tokens(&mut card, 1).is_empty());

    // The card stores it, but its answer never reaches the center.
    card.select().unwrap();
    let r = c.token_session_create(card_id(1), TokenPurpose::Deliver).await.unwrap();
    let r = c.token_session_authenticate(&r.session_id, relay_hex(&mut card, &r.apdus), None).await.unwrap();
    let _lost = relay_hex(&mut card, &r.apdus);
    let first = card_tokens(&mut card, 1);
    assert_eq!(first.len(), 1);
    assert_eq!(c.db.token(&id).await.unwrap().unwrap().status, kessai_api::TokenStatus::Issued);
    // The next session: the same answer, stored once.
    assert_eq!(deliver(c, &mut card, 1).await, vec![a.token_id.clone()]);
    let listed = card_tokens(&mut card, 1);
    assert_eq!(listed, first, "one token, at its first counter");
    assert_eq!(c.db.token(&id).await.unwrap().unwrap().stored_counter, Some(first[0].counter));
    collect_log(c, &mut card, 1).await;
    let report = c.audit(NOW).await.unwrap();
    assert!(report.differences.is_empty(), "{:?}", report.differences);
}

/// Two imports of one statement at once issue its token once; two
/// deliveries to one card at once store it once.
#[tokio::test]
async fn racing_imports_and_deliveries_issue_and_store_once() {
    racing(with_tokens(setup().await).await).await;
}

#[tokio::test]
async fn racing_imports_and_deliveries_issue_and_store_once_on_postgres() {
    let Some(s) = setup_on_postgres("tokens_racing").await else { return };
    racing(with_tokens(s).await).await;
}

async fn racing(mut s: Setup) {
    let m = members_card(&mut s).await;
    let c = &s.center;
    let a = ask(c, &m, token_request(&m, "dep-r", card_id(1), 9_000)).await.unwrap();
    let statement = deposited(&s, "STMT-RACE", &[(9_000, Some(&a.reference))]).await;
    let imports =
        crate::prepaid::futures_join((0..4).map(|_| c.import_statement(&statement, StatementSource::Bank))).await;
    let matched: usize = imports.into_iter().map(|r| r.unwrap().matched).sum();
    assert_eq!(matched, 1, "one import issued it");
    assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 9_000);
    conserved(c).await;

    // Two wallets relay to one card, interleaved: both sessions are sealed
    // before either's answers come back.
    let mut card = funded_card(1, 0);
    card.select().unwrap();
    let r1 = c.token_session_create(card_id(1), TokenPurpose::Deliver).await.unwrap();
    let r1 = c.token_session_authenticate(&r1.session_id, relay_hex(&mut card, &r1.apdus), None).await.unwrap();
    let answers1 = relay_hex(&mut card, &r1.apdus);
    card.select().unwrap();
    let r2 = c.token_session_create(card_id(1), TokenPurpose::Deliver).await.unwrap();
    let r2 = c.token_session_authenticate(&r2.session_id, relay_hex(&mut card, &r2.apdus), None).await.unwrap();
    let answers2 = relay_hex(&mut card, &r2.apdus);
    let (d1, d2) = tokio::join!(
        c.token_session_finish(&r1.session_id, answers1, None),
        c.token_session_finish(&r2.session_id, answers2, None)
    );
    let (d1, d2) = (d1.unwrap(), d2.unwrap());
    assert_eq!((d1.stored.len(), d2.stored.len()), (1, 1), "the card proved it holds it to both");
    let listed = card_tokens(&mut card, 1);
    assert_eq!(listed.len(), 1, "the card holds it once");
    let row = c.db.token(&TokenId::parse(&a.token_id).unwrap()).await.unwrap().unwrap();
    assert_eq!(row.stored_counter, Some(listed[0].counter));
    assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 9_000);
    conserved(c).await;
}

/// A crash after any write of the statement's import or of the delivery
/// leaves the token issued with its books or not at all, stored or not:
/// then it completes, once.
#[tokio::test]
async fn a_crash_at_any_write_leaves_the_token_whole() {
    let (mut finished, mut crashed) = (false, 0);
    for n in 1..=20 {
        let mut s = with_tokens(setup().await).await;
        let m = members_card(&mut s).await;
        let c = &s.center;
        let mut card = funded_card(1, 0);
        let a = ask(c, &m, token_request(&m, "dep-c", card_id(1), 3_000)).await.unwrap();
        let id = TokenId::parse(&a.token_id).unwrap();
        let statement = deposited(&s, "STMT-C", &[(3_000, Some(&a.reference))]).await;
        c.db.faults().fail_at(n);
        let imported = c.import_statement(&statement, StatementSource::Bank).await;
        let delivered = match imported {
            Ok(_) => {
                card.select().unwrap();
                match c.token_session_create(card_id(1), TokenPurpose::Deliver).await {
                    Ok(r) => {
                        match c.token_session_authenticate(&r.session_id, relay_hex(&mut card, &r.apdus), None).await {
                            Ok(r) => c
                                .token_session_finish(&r.session_id, relay_hex(&mut card, &r.apdus), None)
                                .await
                                .is_ok(),
                            Err(_) => false,
                        }
                    }
                    Err(_) => false,
                }
            }
            Err(_) => false,
        };
        let fired = !c.db.faults().armed();
        c.db.faults().fail_at(0);
        // Whatever happened, the token is whole: issued with its books, or
        // awaiting with none.
        let row = c.db.token(&id).await.unwrap().unwrap();
        let outstanding = c.books.tokens_outstanding(Currency::JPY).await.unwrap();
        match row.status {
            kessai_api::TokenStatus::Awaiting => assert_eq!((outstanding, row.sealed.is_none()), (0, true)),
            _ => assert_eq!((outstanding, row.sealed.is_some()), (3_000, true)),
        }
        conserved(c).await;
        if fired {
            crashed += 1;
            assert!(!delivered, "a fault at write {n} fails a step");
            // Then it completes, once.
            c.import_statement(&statement, StatementSource::Bank).await.unwrap();
            deliver(c, &mut card, 1).await;
        }
        assert_eq!(card_tokens(&mut card, 1).len(), 1, "fault at {n}");
        let row = c.db.token(&id).await.unwrap().unwrap();
        assert_eq!(row.status, kessai_api::TokenStatus::Stored, "fault at {n}");
        assert_eq!(row.stored_counter, Some(card_tokens(&mut card, 1)[0].counter));
        assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 3_000);
        conserved(c).await;
        if !fired {
            assert!(delivered);
            finished = true;
            break;
        }
    }
    assert!(finished && crashed > 0, "every write was crashed at ({crashed}), and then it completed");
}

/// A token delivery answers only the holder of its access token, and an
/// unknown card opens a session like any other (M4).
#[tokio::test]
async fn a_delivery_opens_for_any_card_and_refuses_one_not_active() {
    let mut s = with_tokens(setup().await).await;
    let _m = members_card(&mut s).await;
    let c = &s.center;
    crate::world::report_lost(&c.db, card_id(1)).await;
    let mut card = funded_card(1, 0);
    card.select().unwrap();
    let r = c.token_session_create(card_id(1), TokenPurpose::Deliver).await.unwrap();
    let refused = c.token_session_authenticate(&r.session_id, relay_hex(&mut card, &r.apdus), None).await;
    assert!(refused.is_err(), "a lost card takes no token");
    // An unregistered card: a session opens, and is refused once it proved
    // itself.
    let mut stranger = funded_card(9, 0);
    stranger.select().unwrap();
    let r = c.token_session_create(card_id(9), TokenPurpose::Deliver).await.unwrap();
    assert!(c.token_session_authenticate(&r.session_id, relay_hex(&mut stranger, &r.apdus), None).await.is_err());
}

/// A statement session: the card's whole log read, and collected.
async fn collect_log(c: &Center, t: &mut kessai_card::terminal::Terminal<CardReader>, n: u8) {
    use kessai_center::statement::StatementPhase;
    t.select().unwrap();
    let r = c.statement_create(card_id(n)).await.unwrap();
    let id = r.statement_id.clone();
    let mut r = c.statement_authenticate(&id, relay_hex(t, &r.apdus), None).await.unwrap();
    while r.phase != StatementPhase::Done {
        r = c.statement_read(&id, relay_hex(t, &r.apdus), None).await.unwrap();
    }
}

/// Card 1 of a member, with a token of `amount` issued and stored on it.
async fn stored_token(s: &mut Setup, amount: u64) -> (Member, kessai_card::terminal::Terminal<CardReader>, TokenId) {
    let m = members_card(s).await;
    let c = &s.center;
    let mut card = funded_card(1, 0);
    let a = ask(c, &m, token_request(&m, "dep-s", card_id(1), amount)).await.unwrap();
    let statement = deposited(s, "STMT-S", &[(amount, Some(&a.reference))]).await;
    assert_eq!(c.import_statement(&statement, StatementSource::Bank).await.unwrap().matched, 1);
    assert_eq!(deliver(c, &mut card, 1).await, vec![a.token_id.clone()]);
    (m, card, TokenId::parse(&a.token_id).unwrap())
}

/// A redemption session's batch, relayed: the answers, not yet sent back.
async fn redeem_batch(
    c: &Center,
    t: &mut kessai_card::terminal::Terminal<CardReader>,
    token: TokenId,
) -> Result<(String, Vec<ResponseApdu>), kessai_center::service::CenterError> {
    t.select().unwrap();
    let r = c.token_session_create(card_id(1), TokenPurpose::Redeem { token }).await?;
    let r = c.token_session_authenticate(&r.session_id, relay_hex(t, &r.apdus), None).await?;
    Ok((r.session_id.clone(), relay_hex(t, &r.apdus)))
}

/// The card presented for what it is owed: every owed item applied
/// through a value update; the amounts credited.
async fn present(c: &Center, t: &mut kessai_card::terminal::Terminal<CardReader>) -> Vec<u64> {
    use kessai_center::owed::Applying;
    let sim = kessai_center::authorizer::Simulator::new();
    let mut credited = Vec::new();
    for _ in 0..5 {
        t.select().unwrap();
        let id = kessai_core::ids::UpdateId::generate(&mut kessai_core::random::OsRandom);
        let r = match c.apply_owed(card_id(1), id).await.unwrap() {
            Applying::Nothing => return credited,
            Applying::Update(r) => *r,
        };
        let id = r.update_id.clone();
        let r = c.update_authenticate(&sim, &id, relay_hex(t, &r.apdus), None, None).await.unwrap();
        let r = c.update_offer(&sim, &id, relay_hex(t, &r.apdus), None).await.unwrap();
        let done = c.update_complete(&sim, &id, relay_hex(t, &r.apdus), None).await.unwrap();
        credited.push(done.amount.amount_minor());
    }
    panic!("an owed item is applied again and again");
}

/// What the pool received equals what is outstanding, on the card's float
/// and in suspense (no purchase here), and the ledger's invariants hold.
async fn conserved_with_card(c: &Center) {
    c.books.ledger().check().await.unwrap();
    let received = c.books.received(Receiving::BankPool, Currency::JPY).await.unwrap();
    let outstanding = c.books.tokens_outstanding(Currency::JPY).await.unwrap();
    let (float, held) = c.books.card_float(&card_id(1)).await.unwrap().unwrap_or((0, 0));
    assert_eq!(held, 0);
    let credits_pending = i128::from(c.books.card_credits_pending(&card_id(1)).await.unwrap());
    let suspense = i128::from(c.books.suspense(Currency::JPY).await.unwrap());
    // A hold (outstanding → float, pending) is still the outstanding
    // account's posted balance until the card takes the CREDIT.
    assert_eq!(received, outstanding + i128::from(float) + suspense, "pending credits: {credits_pending}");
}

async fn a_token_redeemed_becomes_value_once(mut s: Setup) {
    let (_m, mut card, token) = stored_token(&mut s, 12_000).await;
    let c = &s.center;
    let (id, answers) = redeem_batch(c, &mut card, token).await.unwrap();
    let done = c.token_session_finish(&id, answers, None).await.unwrap();
    let redeemed = done.redeemed.clone().expect("redeemed");
    assert_eq!((redeemed.token_id.as_str(), redeemed.amount), (token.to_string().as_str(), jpy(12_000)));
    assert!(done.refused.is_empty(), "{:?}", done.refused);
    let row = c.db.token(&token).await.unwrap().unwrap();
    assert_eq!(row.status, kessai_api::TokenStatus::Redeemed);
    let listed = card_tokens(&mut card, 1);
    assert!(listed[0].redeemed);
    assert_eq!(row.redeemed_counter, Some(listed[0].counter));
    // Held for the card, not yet on it.
    assert_eq!(c.books.card_credits_pending(&card_id(1)).await.unwrap(), 12_000);
    conserved_with_card(c).await;
    // Redeeming it again is refused before anything reaches the card.
    let again = redeem_batch(c, &mut card, token).await;
    assert!(
        matches!(
            again,
            Err(kessai_center::service::CenterError::Step(kessai_center::purchase::StepError::TokenRefused(_)))
        ),
        "{again:?}"
    );
    // The card presented: the value is credited, once.
    assert_eq!(present(c, &mut card).await, vec![12_000]);
    assert_eq!(crate::world::balance_of(&mut card), 12_000);
    assert_eq!(present(c, &mut card).await, Vec::<u64>::new());
    assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 0);
    assert_eq!(c.books.card_float(&card_id(1)).await.unwrap(), Some((12_000, 0)));
    conserved_with_card(c).await;
    // The statistics count the token issued and redeemed on their day, as
    // the tokens-outstanding accounts show them.
    let day = kessai_bank::Date::of(NOW).to_string();
    let period = kessai_center::statistics::Period::parse(&day, &day, "day", "JPY").unwrap();
    let report = kessai_center::statistics::Report::make(c, period).await.unwrap();
    let figure = |m| {
        let f = report.totals.get(m);
        (f.count, f.amount_minor)
    };
    let mut moved = (0u64, 0u64);
    for id in kessai_center::books::tokens_outstanding_ids(Currency::JPY) {
        for t in c.books.ledger().account_history(id, None, 100).await.unwrap().transfers {
            match t.code {
                kessai_center::books::CODE_TOKEN_ISSUED if t.credit_account_id == id => moved.0 += t.amount_minor,
                // The hold itself (its post names it by `pending_id`).
                kessai_center::books::CODE_TOKEN_REDEEMED if t.debit_account_id == id && t.pending_id == 0 => {
                    moved.1 += t.amount_minor
                }
                _ => {}
            }
        }
    }
    assert_eq!(moved, (12_000, 12_000), "issued, and redeemed");
    assert_eq!(figure(kessai_center::statistics::Measure::TokensIssued), (1, 12_000));
    assert_eq!(figure(kessai_center::statistics::Measure::TokensRedeemed), (1, 12_000));
    // The card's log agrees with the books: stored, redeemed, credited.
    collect_log(c, &mut card, 1).await;
    let report = c.audit(NOW).await.unwrap();
    assert!(report.differences.is_empty(), "{:?}", report.differences);
}

#[tokio::test]
async fn a_token_redeemed_becomes_value_on_the_card_once() {
    a_token_redeemed_becomes_value_once(with_tokens(setup().await).await).await;
}

#[tokio::test]
async fn a_token_redeemed_becomes_value_on_the_card_once_on_postgres() {
    let Some(s) = setup_on_postgres("tokens_redeem").await else { return };
    a_token_redeemed_becomes_value_once(with_tokens(s).await).await;
}

/// The card's answer to REDEEM lost: a later session sends the same
/// command and the card answers it as the first time; two sessions
/// finishing at once owe the value once.
#[tokio::test]
async fn a_lost_or_racing_redemption_owes_the_value_once() {
    racing_redemptions(with_tokens(setup().await).await).await;
}

#[tokio::test]
async fn a_lost_or_racing_redemption_owes_the_value_once_on_postgres() {
    let Some(s) = setup_on_postgres("tokens_redeem_race").await else { return };
    racing_redemptions(with_tokens(s).await).await;
}

async fn racing_redemptions(mut s: Setup) {
    let (_m, mut card, token) = stored_token(&mut s, 8_000).await;
    let c = &s.center;
    // The first session's answers never come back; the card redeemed it.
    let (_lost, _answers) = redeem_batch(c, &mut card, token).await.unwrap();
    assert!(card_tokens(&mut card, 1)[0].redeemed);
    assert_eq!(c.db.token(&token).await.unwrap().unwrap().status, kessai_api::TokenStatus::Stored);
    // Two later sessions, both sealed, both answered by the card alike.
    let (a, answers_a) = redeem_batch(c, &mut card, token).await.unwrap();
    let (b, answers_b) = redeem_batch(c, &mut card, token).await.unwrap();
    let (ra, rb) =
        tokio::join!(c.token_session_finish(&a, answers_a, None), c.token_session_finish(&b, answers_b, None));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let owed: Vec<String> =
        [&ra, &rb].iter().filter_map(|r| r.redeemed.as_ref().and_then(|x| x.owed_id.clone())).collect();
    assert_eq!(owed.len(), 2, "both sessions were answered by the card");
    assert_eq!(owed[0], owed[1], "one owed item");
    assert_eq!(c.books.card_credits_pending(&card_id(1)).await.unwrap(), 8_000, "held once");
    assert_eq!(present(c, &mut card).await, vec![8_000]);
    assert_eq!(crate::world::balance_of(&mut card), 8_000);
    conserved_with_card(c).await;
}

/// What the provider cannot honour moves nothing: a token sealed under a
/// key the provider does not hold under its version (another provider's),
/// or under a version it does not hold at all. The card gave it up; the
/// value stays outstanding (it goes back to the depositor's account), and
/// the examination names the card's redemption record.
#[tokio::test]
async fn a_token_the_provider_cannot_open_is_refused_and_moves_nothing() {
    for (version, seed) in [(1u8, 9_999u64), (2, 2101)] {
        let mut s = setup().await;
        let bank = BankRig::start(s._dir.path(), &[&provider_key(1, 2101)], s.time.clone(), "").await.unwrap();
        let issuing = ProviderRig::start(s._dir.path(), &[&provider_key(1, 2101)], None, s.time.clone()).await.unwrap();
        s.center.tokens = Some(Arc::new(Tokens { bank: bank.client(), provider: issuing.client() }));
        s.bank = Some(Arc::clone(&bank.bank));
        let (_m, mut card, token) = stored_token(&mut s, 5_000).await;
        // The provider the center reaches now holds another key.
        let other = ProviderRig::start(s._dir.path(), &[&provider_key(version, seed)], None, s.time.clone()).await;
        s.center.tokens = Some(Arc::new(Tokens { bank: bank.client(), provider: other.unwrap().client() }));
        let c = &s.center;
        let (id, answers) = redeem_batch(c, &mut card, token).await.unwrap();
        let done = c.token_session_finish(&id, answers, None).await.unwrap();
        assert!(done.redeemed.is_none());
        assert_eq!(done.refused.len(), 1);
        assert!(done.refused[0].reason.contains("credit service provider refused"), "{}", done.refused[0].reason);
        assert_eq!(c.db.token(&token).await.unwrap().unwrap().status, kessai_api::TokenStatus::Stored);
        assert_eq!(c.books.card_credits_pending(&card_id(1)).await.unwrap(), 0);
        assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 5_000);
        assert_eq!(present(c, &mut card).await, Vec::<u64>::new());
        conserved_with_card(c).await;
        collect_log(c, &mut card, 1).await;
        let kinds: Vec<_> = c.audit(NOW).await.unwrap().differences.iter().map(|d| d.kind).collect();
        assert_eq!(kinds, vec![kessai_center::audit::DifferenceKind::MissingInBooks], "version {version}");
    }
}

/// An expired token is not offered for redemption: the center refuses
/// before the card is asked; its value stays outstanding.
#[tokio::test]
async fn an_expired_token_is_not_redeemed() {
    let mut s = with_tokens(setup().await).await;
    let (_m, mut card, token) = stored_token(&mut s, 4_000).await;
    let expiry = s.center.db.token(&token).await.unwrap().unwrap().expires_at.unwrap();
    s.time.set(expiry);
    let c = &s.center;
    let refused = redeem_batch(c, &mut card, token).await;
    assert!(
        matches!(&refused, Err(kessai_center::service::CenterError::Step(kessai_center::purchase::StepError::TokenRefused(why))) if why.contains("expired")),
        "{refused:?}"
    );
    assert!(!card_tokens(&mut card, 1)[0].redeemed, "the card was not asked");
    assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 4_000);
}

/// A card holding other bytes under the token's id (written by someone
/// with the card's keys): the center's STORE is refused, so nothing is on
/// the card to redeem, and no value moves.
#[tokio::test]
async fn a_tampered_token_on_the_card_never_pays() {
    let mut s = with_tokens(setup().await).await;
    let m = members_card(&mut s).await;
    let c = &s.center;
    let mut card = funded_card(1, 0);
    let a = ask(c, &m, token_request(&m, "dep-t", card_id(1), 6_000)).await.unwrap();
    c.import_statement(&deposited(&s, "STMT-T", &[(6_000, Some(&a.reference))]).await, StatementSource::Bank)
        .await
        .unwrap();
    let id = TokenId::parse(&a.token_id).unwrap();
    let mut forged = c.db.token(&id).await.unwrap().unwrap().sealed.unwrap();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let keys = kessai_scp03::diversify::diversify(
        &masters(0x40),
        card_id(1).as_bytes(),
        kessai_scp03::KeyVersion::new(KVN).unwrap(),
    );
    card.select().unwrap();
    let session = card.open_session(keys, [3; 8]).unwrap();
    let tx = kessai_card::protocol::TxId([0xEE; 16]);
    let (_, r) = card.secure(session, &kessai_card::tokens::store_token_command(tx, NOW.unix_s(), &forged)).unwrap();
    assert_eq!(r.sw().raw(), 0x9000, "the card keeps bytes it cannot check");
    assert!(deliver(c, &mut card, 1).await.is_empty(), "the center's STORE is refused");
    assert_eq!(c.db.token(&id).await.unwrap().unwrap().status, kessai_api::TokenStatus::Issued);
    let refused = redeem_batch(c, &mut card, id).await;
    assert!(refused.is_err(), "an issued token is not on the card to redeem");
    assert_eq!(c.books.card_credits_pending(&card_id(1)).await.unwrap(), 0);
    assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 6_000);
}

/// A crash after any write of a redemption's finish leaves the token
/// stored with nothing owed, or redeemed with its value owed and held: then
/// a new session completes it, once.
#[tokio::test]
async fn a_crash_at_any_write_of_a_redemption_leaves_it_whole() {
    let (mut finished, mut crashed) = (false, 0);
    for n in 1..=12 {
        let mut s = with_tokens(setup().await).await;
        let (_m, mut card, token) = stored_token(&mut s, 2_500).await;
        let c = &s.center;
        let (id, answers) = redeem_batch(c, &mut card, token).await.unwrap();
        c.db.faults().fail_at(n);
        let first = c.token_session_finish(&id, answers, None).await;
        let fired = !c.db.faults().armed();
        c.db.faults().fail_at(0);
        let row = c.db.token(&token).await.unwrap().unwrap();
        let held = c.books.card_credits_pending(&card_id(1)).await.unwrap();
        match row.status {
            kessai_api::TokenStatus::Stored => assert_eq!(held, 0, "fault at {n}"),
            kessai_api::TokenStatus::Redeemed => assert_eq!(held, 2_500, "fault at {n}"),
            other => panic!("{other:?}"),
        }
        conserved_with_card(c).await;
        if fired {
            crashed += 1;
            assert!(first.is_err(), "a fault at write {n} fails the finish");
            let (id, answers) = redeem_batch(c, &mut card, token).await.unwrap();
            c.token_session_finish(&id, answers, None).await.unwrap();
        } else {
            first.unwrap();
        }
        assert_eq!(present(c, &mut card).await, vec![2_500], "fault at {n}");
        assert_eq!(crate::world::balance_of(&mut card), 2_500);
        assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 0);
        conserved_with_card(c).await;
        if !fired {
            finished = true;
            break;
        }
    }
    assert!(finished && crashed > 0, "every write was crashed at ({crashed}), and then it completed");
}

/// A redeemed token's value owed to a card reported lost goes to the card
/// that replaces it (the member's), with the rest of its value.
#[tokio::test]
async fn a_redeemed_tokens_value_follows_the_card_that_replaces_a_lost_one() {
    let mut s = with_tokens(setup().await).await;
    let (m, mut card, token) = stored_token(&mut s, 3_000).await;
    register_card(&s, 2, 0).await;
    let c = &s.center;
    assert!(
        c.db.link_card_member(&card_id(2), Some(m.id.as_str()), false, NOW, crate::trail("card_member")).await.unwrap()
    );
    let (id, answers) = redeem_batch(c, &mut card, token).await.unwrap();
    assert!(c.token_session_finish(&id, answers, None).await.unwrap().redeemed.is_some());
    crate::world::report_lost(&c.db, card_id(1)).await;
    let replaced = c.replace_card(card_id(1), card_id(2), "lost on a train", crate::tester()).await.unwrap();
    assert_eq!(replaced.moved.len(), 1, "the token's value moves");
    assert_eq!(c.books.card_credits_pending(&card_id(1)).await.unwrap(), 0);
    assert_eq!(c.books.card_credits_pending(&card_id(2)).await.unwrap(), 3_000);
    c.books.ledger().check().await.unwrap();
}

/// The card proved it gave the token up, then was reported lost before the
/// center heard: the redemption is refused, no value is owed to a card
/// that cannot take it, and the token's value stays outstanding.
#[tokio::test]
async fn a_redemption_finished_after_the_card_was_lost_owes_nothing() {
    let mut s = with_tokens(setup().await).await;
    let (_m, mut card, token) = stored_token(&mut s, 2_000).await;
    let c = &s.center;
    let (id, answers) = redeem_batch(c, &mut card, token).await.unwrap();
    crate::world::report_lost(&c.db, card_id(1)).await;
    let refused = c.token_session_finish(&id, answers, None).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(c.db.token(&token).await.unwrap().unwrap().status, kessai_api::TokenStatus::Stored);
    assert_eq!(c.books.card_credits_pending(&card_id(1)).await.unwrap(), 0);
    assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 2_000);
    assert!(c.owed_for_card(&card_id(1)).await.unwrap().is_empty());
    // The provider was not asked: after the expiry the value goes back to
    // the depositor's account.
    let e = expiry_of(c, &token).await;
    s.time.set(at(e + 9 * DAY));
    let c = &s.center;
    let by = kessai_center::console::Actor::api("ops");
    c.correct_payback_account(&token, Some(kessai_api::TokenStatus::Stored), KANA_ACCOUNT, "kana", &by).await.unwrap();
    let r = c.clearing_run(at(e + 8 * DAY)).await.unwrap();
    assert_eq!((r.paybacks, r.paybacks_skipped.len()), (1, 0), "{r:?}");
}

/// The provider honoured the card's REDEEM, its answer lost; the card is
/// reported lost and replaced before the finish is asked again: the
/// redemption then written owes its value to the replacement (the
/// replacement moved only what was owed before it). And a token whose
/// card never finishes: its payback, due after the expiry, is refused by
/// the provider (it holds the redemption), so the clearing run writes the
/// redemption from the register, owed to the replacement; nothing frozen,
/// nothing paid twice.
/// Card 1 with a stored token of `amount` and card 2 of the same member;
/// card 1 gives the token up and the provider honours it, the center's
/// write not made (its answer lost); then card 1 is reported lost and
/// replaced by card 2. The redemption session's id and the card's answers.
async fn honoured_then_replaced(s: &mut Setup, amount: u64) -> (TokenId, String, Vec<ResponseApdu>) {
    let (m, mut card, token) = stored_token(s, amount).await;
    register_card(s, 2, 0).await;
    let c = &s.center;
    assert!(
        c.db.link_card_member(&card_id(2), Some(m.id.as_str()), false, NOW, crate::trail("card_member")).await.unwrap()
    );
    let (id, answers) = redeem_batch(c, &mut card, token).await.unwrap();
    let row = c.db.token(&token).await.unwrap().unwrap();
    let provider = &c.tokens.as_ref().unwrap().provider;
    assert!(provider.redeem(row.sealed.as_deref().unwrap(), &row.redeem_tx, NOW).await.unwrap().is_ok());
    crate::world::report_lost(&c.db, card_id(1)).await;
    let replaced = c.replace_card(card_id(1), card_id(2), "lost on a train", crate::tester()).await.unwrap();
    assert!(replaced.moved.is_empty(), "nothing was owed yet");
    (token, id, answers)
}

#[tokio::test]
async fn a_redemption_honoured_before_the_card_was_replaced_owes_the_replacement() {
    let mut s = with_tokens(setup().await).await;
    let (_token, id, answers) = honoured_then_replaced(&mut s, 3_300).await;
    let c = &s.center;
    let done = c.token_session_finish(&id, answers, None).await.unwrap();
    assert_eq!(done.redeemed.as_ref().map(|r| r.amount), Some(jpy(3_300)), "{done:?}");
    assert_eq!(c.books.card_credits_pending(&card_id(1)).await.unwrap(), 0);
    assert_eq!(c.books.card_credits_pending(&card_id(2)).await.unwrap(), 3_300);
    assert_eq!(c.owed_for_card(&card_id(2)).await.unwrap().len(), 1);
    c.books.ledger().check().await.unwrap();
}

/// The same replaced again (card 2 lost and replaced by card 3) before
/// the finish: the value follows the chain to card 3.
#[tokio::test]
async fn a_redemption_follows_a_chain_of_replacements() {
    let mut s = with_tokens(setup().await).await;
    let (_token, id, answers) = honoured_then_replaced(&mut s, 3_500).await;
    register_card(&s, 3, 0).await;
    let c = &s.center;
    let member = c.db.card_member(&card_id(2)).await.unwrap().unwrap().0;
    assert!(c.db.link_card_member(&card_id(3), Some(&member), false, NOW, crate::trail("card_member")).await.unwrap());
    crate::world::report_lost(&c.db, card_id(2)).await;
    c.replace_card(card_id(2), card_id(3), "lost again", crate::tester()).await.unwrap();
    let done = c.token_session_finish(&id, answers, None).await.unwrap();
    assert_eq!(done.redeemed.as_ref().map(|r| r.amount), Some(jpy(3_500)), "{done:?}");
    assert_eq!(c.books.card_credits_pending(&card_id(3)).await.unwrap(), 3_500);
    assert_eq!(c.books.card_credits_pending(&card_id(2)).await.unwrap(), 0);
    c.books.ledger().check().await.unwrap();
}

#[tokio::test]
async fn a_redemption_the_card_never_finished_is_written_by_the_clearing_run() {
    // With the payback's account corrected (the provider refuses the
    // payback), and without (the account cannot be paid: the register is
    // read all the same).
    for corrected in [true, false] {
        redemption_never_finished(corrected).await;
    }
}

async fn redemption_never_finished(corrected: bool) {
    let mut s = with_tokens(setup().await).await;
    let (token, _id, _answers) = honoured_then_replaced(&mut s, 3_400).await;
    let e = expiry_of(&s.center, &token).await;
    s.time.set(at(e + 9 * DAY));
    let c = &s.center;
    let by = kessai_center::console::Actor::api("ops");
    if corrected {
        c.correct_payback_account(&token, Some(kessai_api::TokenStatus::Stored), KANA_ACCOUNT, "kana", &by)
            .await
            .unwrap();
    }
    let r = c.clearing_run(at(e + 8 * DAY)).await.unwrap();
    assert_eq!((r.paybacks, r.paybacks_skipped.len()), (0, 1), "{r:?}");
    assert!(r.paybacks_skipped[0].1.contains("redemption is written now"), "{:?}", r.paybacks_skipped);
    assert_eq!(c.db.token(&token).await.unwrap().unwrap().status, kessai_api::TokenStatus::Redeemed);
    assert_eq!(c.books.card_credits_pending(&card_id(2)).await.unwrap(), 3_400);
    assert_eq!(c.books.in_transit(Currency::JPY).await.unwrap(), 0, "never paid back");
    c.books.ledger().check().await.unwrap();
    // The next run finds nothing to do for it.
    let r = c.clearing_run(at(e + 8 * DAY + 1)).await.unwrap();
    assert_eq!((r.paybacks, r.paybacks_skipped.len()), (0, 0), "{r:?}");
}

/// The provider honoured a redemption asked while the card was active, its
/// answer lost; the card is reported lost before the finish is asked
/// again: the redemption is written (the provider's register holds it), its
/// value owed to the card and so to its replacement; nothing is frozen.
#[tokio::test]
async fn a_redemption_the_provider_honoured_is_written_though_the_card_was_lost_since() {
    let mut s = with_tokens(setup().await).await;
    let (_m, mut card, token) = stored_token(&mut s, 2_100).await;
    let c = &s.center;
    let (id, answers) = redeem_batch(c, &mut card, token).await.unwrap();
    let row = c.db.token(&token).await.unwrap().unwrap();
    let provider = &c.tokens.as_ref().unwrap().provider;
    assert!(provider.redeem(row.sealed.as_deref().unwrap(), &row.redeem_tx, NOW).await.unwrap().is_ok());
    crate::world::report_lost(&c.db, card_id(1)).await;
    let done = c.token_session_finish(&id, answers, None).await.unwrap();
    assert_eq!(done.redeemed.as_ref().map(|r| r.amount), Some(jpy(2_100)), "{done:?}");
    assert_eq!(c.db.token(&token).await.unwrap().unwrap().status, kessai_api::TokenStatus::Redeemed);
    assert_eq!(c.books.card_credits_pending(&card_id(1)).await.unwrap(), 2_100);
    assert_eq!(c.owed_for_card(&card_id(1)).await.unwrap().len(), 1);
    conserved_with_card(c).await;
}

/// A REDEEM sealed before the token's expiry whose answer was lost: a
/// later session, after the expiry, sends the same command (its first
/// time) and the provider honours it at that time.
#[tokio::test]
async fn a_redemption_in_flight_at_the_expiry_is_honoured_after_it() {
    let mut s = with_tokens(setup().await).await;
    let (_m, mut card, token) = stored_token(&mut s, 2_200).await;
    let (_lost, _answers) = redeem_batch(&s.center, &mut card, token).await.unwrap();
    assert!(card_tokens(&mut card, 1)[0].redeemed);
    let expiry = s.center.db.token(&token).await.unwrap().unwrap().expires_at.unwrap();
    s.time.set(Timestamp::from_unix_s(expiry.unix_s() + 60));
    let c = &s.center;
    let (id, answers) = redeem_batch(c, &mut card, token).await.unwrap();
    let done = c.token_session_finish(&id, answers, None).await.unwrap();
    assert_eq!(done.redeemed.map(|r| r.amount), Some(jpy(2_200)), "{:?}", done.refused);
    assert_eq!(present(c, &mut card).await, vec![2_200]);
}

/// A card linked to another member since the token was asked for takes
/// none of the first member's tokens, and redeems none.
#[tokio::test]
async fn a_card_linked_to_another_member_takes_no_token_of_the_first() {
    let mut s = with_tokens(setup().await).await;
    let m = members_card(&mut s).await;
    let other = member(&s.center, &mut s.rng).await;
    let c = &s.center;
    let mut card = funded_card(1, 0);
    let a = ask(c, &m, token_request(&m, "dep-o", card_id(1), 1_500)).await.unwrap();
    c.import_statement(&deposited(&s, "STMT-O", &[(1_500, Some(&a.reference))]).await, StatementSource::Bank)
        .await
        .unwrap();
    assert!(
        c.db.link_card_member(&card_id(1), Some(other.id.as_str()), false, NOW, crate::trail("card_member"))
            .await
            .unwrap()
    );
    assert!(deliver(c, &mut card, 1).await.is_empty());
    assert!(card_tokens(&mut card, 1).is_empty());
    let id = TokenId::parse(&a.token_id).unwrap();
    assert_eq!(c.db.token(&id).await.unwrap().unwrap().status, kessai_api::TokenStatus::Issued);
}

/// A `[tokens]` naming one party without the other, or a URL not https,
/// stops the center at start.
#[test]
fn a_token_policy_with_one_party_is_refused() {
    let url = |u: &str| Some(u.to_owned());
    for bad in [
        TokenPolicy { bank_url: url("https://127.0.0.1:1"), ..TokenPolicy::default() },
        TokenPolicy { provider_url: url("https://127.0.0.1:1"), ..TokenPolicy::default() },
        TokenPolicy {
            bank_url: url("http://127.0.0.1:1"),
            provider_url: url("https://127.0.0.1:2"),
            ..TokenPolicy::default()
        },
        TokenPolicy { statement_every_s: 0, ..TokenPolicy::default() },
    ] {
        assert!(bad.check().is_err(), "{bad:?}");
    }
    assert!(TokenPolicy::default().check().is_ok());
    let both = TokenPolicy {
        bank_url: url("https://127.0.0.1:1"),
        provider_url: url("https://127.0.0.1:2"),
        ..TokenPolicy::default()
    };
    assert!(both.check().is_ok());
}

/// A redemption whose answer was lost, then the card's table filled up:
/// the card dropped the redeemed entry (its record collected) and answers
/// a later REDEEM with a bare `6A88`. The collected log record, read
/// R-MACed, proves the redemption: the value is owed once.
#[tokio::test]
async fn a_redemption_the_card_no_longer_lists_is_proven_by_its_collected_log() {
    let mut s = with_tokens(setup().await).await;
    let (m, mut card, token) = stored_token(&mut s, 1_000).await;
    let c = &s.center;
    let (_lost, _answers) = redeem_batch(c, &mut card, token).await.unwrap();
    // Eight more tokens: the card makes room by dropping the redeemed one.
    for n in 0..8u64 {
        let a = ask(c, &m, token_request(&m, &format!("dep-f{n}"), card_id(1), 100 + n)).await.unwrap();
        let statement = deposited(&s, &format!("STMT-F{n}"), &[(100 + n, Some(&a.reference))]).await;
        assert_eq!(c.import_statement(&statement, StatementSource::Bank).await.unwrap().matched, 1);
    }
    let mut stored = 0;
    for _ in 0..4 {
        stored += deliver(c, &mut card, 1).await.len();
    }
    assert_eq!(stored, 8);
    let listed = card_tokens(&mut card, 1);
    assert_eq!(listed.len(), 8);
    assert!(listed.iter().all(|t| t.token_id != token.0), "the redeemed entry was dropped");
    // Redeemed again: the card no longer knows it; its log does.
    let (id, answers) = redeem_batch(c, &mut card, token).await.unwrap();
    let done = c.token_session_finish(&id, answers, None).await.unwrap();
    assert_eq!(done.redeemed.map(|r| r.amount), Some(jpy(1_000)), "{:?}", done.refused);
    assert!(done.refused.is_empty());
    assert_eq!(present(c, &mut card).await, vec![1_000]);
    assert_eq!(c.db.token(&token).await.unwrap().unwrap().status, kessai_api::TokenStatus::Redeemed);
    conserved_with_card(c).await;
}

/// Where the operator says the test member's tokens are paid back: the
/// member registered a name in kanji, which no bank file carries.
const KANA_ACCOUNT: &str = "zengin:0005-123-1-7654321:ﾔﾏﾀﾞ ﾊﾅｺ";

/// What the pool received equals what is outstanding, in transit to the
/// refund accounts, and in suspense, and the ledger's invariants hold.
async fn conserved_with_paybacks(c: &Center) {
    c.books.ledger().check().await.unwrap();
    let received = c.books.received(Receiving::BankPool, Currency::JPY).await.unwrap();
    let outstanding = c.books.tokens_outstanding(Currency::JPY).await.unwrap();
    let in_transit = c.books.in_transit(Currency::JPY).await.unwrap();
    let suspense = i128::from(c.books.suspense(Currency::JPY).await.unwrap());
    assert_eq!(received, outstanding + in_transit + suspense);
}

fn at(unix_s: u64) -> Timestamp {
    Timestamp::from_unix_s(unix_s)
}

fn set_clock(s: &mut Setup, to: Timestamp) {
    s.time.set(to);
}

/// A stored token's expiry.
async fn expiry_of(c: &Center, token: &TokenId) -> u64 {
    c.db.token(token).await.unwrap().unwrap().expires_at.unwrap().unix_s()
}

/// A token not redeemed by its expiry goes back to the depositor's bank
/// account: not within the week a redemption made just before the expiry
/// has to settle; not in the member's kanji name (the operator says the
/// account's kana holder); then once, in the run's bank file, settled by
/// the bank's notice. It is never redeemed after, and the books hold
/// after each step.
async fn paid_back_once(mut s: Setup) {
    use kessai_api::TokenStatus;
    use kessai_center::clearing::{FileFormat, run_id};
    let (_m, mut card, token) = stored_token(&mut s, 12_000).await;
    let e = expiry_of(&s.center, &token).await;
    set_clock(&mut s, at(e + 9 * DAY));
    let c = &s.center;
    let by = kessai_center::console::Actor::api("ops");
    // Within the week after the expiry: nothing.
    let r = c.clearing_run(at(e + DAY)).await.unwrap();
    assert_eq!((r.paybacks, r.paybacks_skipped.len()), (0, 0), "{r:?}");
    // After it: the refund account in the member's name cannot be paid.
    let r = c.clearing_run(at(e + 8 * DAY)).await.unwrap();
    assert_eq!(r.paybacks, 0);
    assert_eq!(r.paybacks_skipped.len(), 1);
    assert!(r.paybacks_skipped[0].1.contains("member's name"), "{:?}", r.paybacks_skipped);
    assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 12_000);
    // The operator says where: an account a bank file cannot carry is
    // refused, as is a status the token no longer has.
    let bad = c.correct_payback_account(&token, None, "zengin:0005-123-1-7654321:山田", "kana", &by).await;
    assert!(matches!(bad, Err(kessai_center::clearing::ClearingError::BadAccount(_))), "{bad:?}");
    let stale = c.correct_payback_account(&token, Some(TokenStatus::Issued), KANA_ACCOUNT, "kana", &by).await;
    assert!(matches!(stale, Err(kessai_center::clearing::ClearingError::TokenNotPayable(..))), "{stale:?}");
    c.correct_payback_account(&token, Some(TokenStatus::Stored), KANA_ACCOUNT, "kana name", &by).await.unwrap();
    assert_eq!(c.db.token(&token).await.unwrap().unwrap().status, TokenStatus::Expired);
    // Expired, it is not redeemed: the center refuses before the card.
    let refused = redeem_batch(c, &mut card, token).await;
    assert!(
        matches!(&refused, Err(kessai_center::service::CenterError::Step(kessai_center::purchase::StepError::TokenRefused(why))) if why.contains("paid back")),
        "{refused:?}"
    );
    let cutoff = at(e + 8 * DAY + 1);
    let r = c.clearing_run(cutoff).await.unwrap();
    assert_eq!((r.paybacks, r.paid_back.clone(), r.payouts), (1, vec![(Currency::JPY, 12_000)], 0), "{r:?}");
    assert!(c.clearing_run(cutoff).await.unwrap().done_before);
    let paybacks = c.db.paybacks(None, Some(&token), 10).await.unwrap();
    assert_eq!(paybacks.len(), 1);
    let p = &paybacks[0];
    assert_eq!((p.status.as_str(), p.amount, p.run_id.as_str()), ("in_transit", jpy(12_000), run_id(cutoff).as_str()));
    assert!(p.bank_ref.starts_with("KT") && p.bank_ref.len() == 20, "{}", p.bank_ref);
    assert_eq!(c.db.token(&token).await.unwrap().unwrap().status, TokenStatus::PayingBack);
    assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 0);
    assert_eq!(c.books.in_transit(Currency::JPY).await.unwrap(), 12_000);
    conserved_with_paybacks(c).await;
    // The run's bank file carries it, to the corrected account.
    let batch = c.payout_batch(&run_id(cutoff), Currency::JPY).await.unwrap();
    assert_eq!(batch.lines.len(), 1);
    let line = &batch.lines[0];
    assert_eq!((line.end_to_end_id.as_str(), line.amount), (p.bank_ref.as_str(), jpy(12_000)));
    assert_eq!(line.payee.to_string(), KANA_ACCOUNT.parse::<kessai_bank::payout::PayeeAccount>().unwrap().to_string());
    assert!(line.remittance.contains(&token.to_string()), "{}", line.remittance);
    let zengin = c.payout_file(&run_id(cutoff), Currency::JPY, FileFormat::Zengin).await.unwrap();
    assert_eq!(zengin, c.payout_file(&run_id(cutoff), Currency::JPY, FileFormat::Zengin).await.unwrap());
    // A later run pays it no more.
    let r = c.clearing_run(at(e + 9 * DAY)).await.unwrap();
    assert_eq!((r.paybacks, r.paybacks_skipped.len()), (0, 0));
    // The bank's notice: the center's account debited for it.
    let notice = crate::clearing::debits("N-TPB", &[(&p.bank_ref, 12_000)]);
    let r = c.import_payout_outcomes(&notice).await.unwrap();
    assert_eq!((r.settled, r.failed, r.review), (1, 0, 0), "{r:?}");
    assert_eq!(c.import_payout_outcomes(&notice).await.unwrap().already_imported, 1);
    assert_eq!(c.db.token(&token).await.unwrap().unwrap().status, TokenStatus::PaidBack);
    assert_eq!(c.books.in_transit(Currency::JPY).await.unwrap(), 0);
    assert_eq!(c.books.received(Receiving::BankPool, Currency::JPY).await.unwrap(), 0, "the money left the pool");
    conserved_with_paybacks(c).await;
    // Paid back, it is corrected no more.
    let late = c.correct_payback_account(&token, None, KANA_ACCOUNT, "again", &by).await;
    assert!(matches!(late, Err(kessai_center::clearing::ClearingError::TokenNotPayable(..))), "{late:?}");
}

/// The credit service provider out of reach decides nothing: the card's
/// redemption is answered 503-style and nothing moves, a clearing run skips
/// the payback and says why; once the provider answers again, each is
/// honoured once. A provider that honoured a redemption whose answer the
/// center lost answers it alike when asked again.
#[tokio::test]
async fn a_provider_out_of_reach_decides_nothing_and_is_asked_again() {
    use kessai_api::TokenStatus;
    let mut s = setup().await;
    let mut rig = ProviderRig::start(s._dir.path(), &[&provider_key(1, 2101)], None, s.time.clone()).await.unwrap();
    with_provider(&mut s, rig.client()).await;
    let (_m, mut card, token) = stored_token(&mut s, 5_000).await;
    let c = &s.center;
    let (id, answers) = redeem_batch(c, &mut card, token).await.unwrap();
    rig.stop();
    let lost = c.token_session_finish(&id, answers.clone(), None).await;
    assert!(matches!(lost, Err(kessai_center::service::CenterError::Provider(_))), "{lost:?}");
    assert_eq!(c.db.token(&token).await.unwrap().unwrap().status, TokenStatus::Stored);
    assert_eq!(c.books.card_credits_pending(&card_id(1)).await.unwrap(), 0);
    assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 5_000);
    rig.restart(s.time.clone()).await.unwrap();
    // The provider honours it (its answer lost on the way, say) before the
    // center hears: asked again by the finish, the same verdict.
    let sealed = c.db.token(&token).await.unwrap().unwrap().sealed.unwrap();
    let redeem_tx = c.db.token(&token).await.unwrap().unwrap().redeem_tx;
    let honoured = c.tokens.as_ref().unwrap().provider.redeem(&sealed, &redeem_tx, NOW).await.unwrap();
    assert!(honoured.is_ok(), "{honoured:?}");
    let done = c.token_session_finish(&id, answers, None).await.unwrap();
    assert_eq!(done.redeemed.as_ref().map(|r| r.amount), Some(jpy(5_000)), "{done:?}");
    assert_eq!(c.db.token(&token).await.unwrap().unwrap().status, TokenStatus::Redeemed);
    assert_eq!(c.books.card_credits_pending(&card_id(1)).await.unwrap(), 5_000);
    conserved_with_card(c).await;

    // A payback while the provider is out of reach: skipped, said why,
    // paid by the next run once it answers.
    let mut s = setup().await;
    let mut rig = ProviderRig::start(s._dir.path(), &[&provider_key(1, 2101)], None, s.time.clone()).await.unwrap();
    with_provider(&mut s, rig.client()).await;
    let (_m, _card, token) = stored_token(&mut s, 7_000).await;
    let e = expiry_of(&s.center, &token).await;
    set_clock(&mut s, at(e + 9 * DAY));
    let c = &s.center;
    let by = kessai_center::console::Actor::api("ops");
    c.correct_payback_account(&token, Some(TokenStatus::Stored), KANA_ACCOUNT, "kana name", &by).await.unwrap();
    rig.stop();
    let r = c.clearing_run(at(e + 8 * DAY)).await.unwrap();
    assert_eq!((r.paybacks, r.paybacks_skipped.len()), (0, 1), "{r:?}");
    assert!(r.paybacks_skipped[0].1.contains("asked again in the next run"), "{:?}", r.paybacks_skipped);
    assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 7_000);
    assert_eq!(c.db.token(&token).await.unwrap().unwrap().status, TokenStatus::Expired);
    rig.restart(s.time.clone()).await.unwrap();
    let r = c.clearing_run(at(e + 8 * DAY + 1)).await.unwrap();
    assert_eq!((r.paybacks, r.paybacks_skipped.len()), (1, 0), "{r:?}");
    assert_eq!(c.db.token(&token).await.unwrap().unwrap().status, TokenStatus::PayingBack);
    let held = rig.provider.held(&token.to_string()).await.unwrap().unwrap();
    assert_eq!(held.held_for, kessai_api::provider::HeldFor::Payback);
    conserved_with_paybacks(c).await;
}

#[tokio::test]
async fn an_expired_token_is_paid_back_once_to_its_depositor() {
    paid_back_once(with_tokens(setup().await).await).await;
}

#[tokio::test]
async fn an_expired_token_is_paid_back_once_to_its_depositor_on_postgres() {
    let Some(s) = setup_on_postgres("tokens_payback").await else { return };
    paid_back_once(with_tokens(s).await).await;
}

/// The bank gives a payback back (the account closed): the value is
/// outstanding again and held, no run pays it to the same account, and
/// once the operator corrects the account the next run pays it there. An
/// unknown reference of ours and another amount go to review.
#[tokio::test]
async fn a_returned_payback_is_held_until_its_account_is_corrected() {
    use kessai_api::TokenStatus;
    use kessai_bank::pain002::{self, StatusReport, TransactionStatus};
    use kessai_center::clearing::{batch_id, run_id};
    let mut s = with_tokens(setup().await).await;
    let (_m, _card, token) = stored_token(&mut s, 3_000).await;
    let e = expiry_of(&s.center, &token).await;
    set_clock(&mut s, at(e + 30 * DAY));
    let c = &s.center;
    let by = kessai_center::console::Actor::api("ops");
    c.correct_payback_account(&token, None, KANA_ACCOUNT, "kana name", &by).await.unwrap();
    let first = at(e + 10 * DAY);
    assert_eq!(c.clearing_run(first).await.unwrap().paybacks, 1);
    let p = c.db.paybacks(Some(&run_id(first)), None, 10).await.unwrap().remove(0);
    let review = crate::clearing::debits("N-R", &[(&p.bank_ref, 2_999), ("KT000000000000000000", 5)]);
    assert_eq!(c.import_payout_outcomes(&review).await.unwrap().review, 2);
    assert_eq!(c.db.token(&token).await.unwrap().unwrap().status, TokenStatus::PayingBack);
    let report = pain002::write(&StatusReport {
        message_id: "RPT-TPB".into(),
        created_at: at(e + 11 * DAY),
        original_message_id: batch_id(&run_id(first), Currency::JPY),
        group_status: None,
        group_reason: None,
        transactions: vec![TransactionStatus {
            end_to_end_id: p.bank_ref.clone(),
            status: "RJCT".into(),
            reason: Some("AC04".into()),
            amount: Some(jpy(3_000)),
        }],
    })
    .unwrap();
    let r = c.import_payout_outcomes(report.as_bytes()).await.unwrap();
    assert_eq!((r.failed, r.settled), (1, 0), "{r:?}");
    assert_eq!(c.db.token(&token).await.unwrap().unwrap().status, TokenStatus::PaybackFailed);
    assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 3_000, "held again");
    assert_eq!(c.books.in_transit(Currency::JPY).await.unwrap(), 0);
    conserved_with_paybacks(c).await;
    // Not to the same account again.
    assert_eq!(c.clearing_run(at(e + 12 * DAY)).await.unwrap().paybacks, 0);
    let corrected = "zengin:0009-001-1-0000042:ﾔﾏﾀﾞ ﾊﾅｺ";
    c.correct_payback_account(&token, Some(TokenStatus::PaybackFailed), corrected, "new account", &by).await.unwrap();
    let second = at(e + 13 * DAY);
    assert_eq!(c.clearing_run(second).await.unwrap().paybacks, 1);
    let again = c.db.paybacks(Some(&run_id(second)), None, 10).await.unwrap().remove(0);
    assert_ne!(again.bank_ref, p.bank_ref);
    assert_eq!(again.payee_account, corrected.parse::<kessai_bank::payout::PayeeAccount>().unwrap().to_string());
    assert_eq!(c.books.in_transit(Currency::JPY).await.unwrap(), 3_000);
    conserved_with_paybacks(c).await;
}

/// A token of JPY 5,000 whose REDEEM the card answered 30 s before its
/// expiry, the session not yet finished; the clock a second past the
/// expiry, paybacks due at once, and the operator's account for it given.
async fn redeemed_at_the_expiry(
    s: &mut Setup,
) -> (u64, kessai_card::terminal::Terminal<CardReader>, TokenId, String, Vec<ResponseApdu>) {
    s.center.clearing.token_payback_after_s = 0;
    let (_m, mut card, token) = stored_token(s, 5_000).await;
    let e = expiry_of(&s.center, &token).await;
    set_clock(s, at(e - 30));
    let (id, answers) = redeem_batch(&s.center, &mut card, token).await.unwrap();
    set_clock(s, at(e + 1));
    let by = kessai_center::console::Actor::api("ops");
    s.center.correct_payback_account(&token, None, KANA_ACCOUNT, "kana name", &by).await.unwrap();
    (e, card, token, id, answers)
}

/// A REDEEM the card answered just before the expiry, its session
/// finishing while a run pays the token back: the value goes one way
/// only, to the card or to the bank account.
async fn payback_racing_redemption(mut s: Setup) {
    use kessai_api::TokenStatus;
    let (e, mut card, token, id, answers) = redeemed_at_the_expiry(&mut s).await;
    let c = &s.center;
    let (run, finished) = tokio::join!(c.clearing_run(at(e + 1)), c.token_session_finish(&id, answers, None));
    let run = run.unwrap();
    let redeemed = finished.as_ref().is_ok_and(|done| done.redeemed.is_some());
    let status = c.db.token(&token).await.unwrap().unwrap().status;
    assert_ne!(redeemed, run.paybacks == 1, "one way only: {run:?} {finished:?}");
    if redeemed {
        assert_eq!(status, TokenStatus::Redeemed);
        assert_eq!(c.books.card_credits_pending(&card_id(1)).await.unwrap(), 5_000);
        assert_eq!(c.books.in_transit(Currency::JPY).await.unwrap(), 0);
        assert_eq!(present(c, &mut card).await, vec![5_000]);
    } else {
        assert_eq!(status, TokenStatus::PayingBack);
        assert_eq!(c.books.card_credits_pending(&card_id(1)).await.unwrap(), 0);
        assert!(c.owed_for_card(&card_id(1)).await.unwrap().is_empty());
        assert_eq!(c.books.in_transit(Currency::JPY).await.unwrap(), 5_000);
        assert!(present(c, &mut card).await.is_empty());
    }
    c.books.ledger().check().await.unwrap();
    let received = c.books.received(Receiving::BankPool, Currency::JPY).await.unwrap();
    let outstanding = c.books.tokens_outstanding(Currency::JPY).await.unwrap();
    let in_transit = c.books.in_transit(Currency::JPY).await.unwrap();
    assert_eq!(received, outstanding + in_transit, "the hold is still outstanding's posted balance");
}

#[tokio::test]
async fn a_payback_racing_a_redemption_pays_once() {
    payback_racing_redemption(with_tokens(setup().await).await).await;
}

#[tokio::test]
async fn a_payback_racing_a_redemption_pays_once_on_postgres() {
    let Some(s) = setup_on_postgres("tokens_payback_race").await else { return };
    payback_racing_redemption(with_tokens(s).await).await;
}

/// The same, one after the other: a session finishing after the payback
/// is told why the provider refuses the token, and owes nothing.
#[tokio::test]
async fn a_redemption_finished_after_the_payback_owes_nothing() {
    let mut s = with_tokens(setup().await).await;
    let (e, mut card, token, id, answers) = redeemed_at_the_expiry(&mut s).await;
    let c = &s.center;
    assert_eq!(c.clearing_run(at(e + 1)).await.unwrap().paybacks, 1);
    let done = c.token_session_finish(&id, answers, None).await.unwrap();
    assert!(done.redeemed.is_none());
    assert!(done.refused.iter().any(|r| r.reason.contains("paid back")), "{:?}", done.refused);
    assert!(c.owed_for_card(&card_id(1)).await.unwrap().is_empty());
    assert!(present(c, &mut card).await.is_empty(), "nothing owed to the card");
    assert_eq!(c.db.token(&token).await.unwrap().unwrap().status, kessai_api::TokenStatus::PayingBack);
    assert_eq!(c.books.in_transit(Currency::JPY).await.unwrap(), 5_000);
    conserved_with_paybacks(c).await;
}

/// The sample bill's amount (`kessai_core::samples::bill`).
const BILL: u64 = 11_360;

/// Whom the sample bill pays: the mall's member store it names.
fn payee() -> kessai_core::ids::StoreId {
    let (_, b) = kessai_core::samples::bill(&mut SeededRandom::new(1), NOW).unwrap();
    b.member().unwrap_or(b.store()).clone()
}

/// Seed 002 end to end: a deposit becomes a token on the card, and the
/// token pays a store's bill instead of the card's balance; the books
/// hold after each step: the pool holds what tokens, the store's payable,
/// the card's float and what is owed to the card hold.
async fn a_token_pays_a_bill(mut s: Setup) {
    use kessai_api::Phase;
    use kessai_center::books::Receiving;
    // The deposit, issued and stored on the card (no balance on it).
    let (_m, mut card, token) = stored_token(&mut s, 12_000).await;
    let books = |c: &Center| {
        let c = c.books.clone();
        async move {
            c.ledger().check().await.unwrap();
            let received = c.received(Receiving::BankPool, Currency::JPY).await.unwrap();
            let outstanding = c.tokens_outstanding(Currency::JPY).await.unwrap();
            let payable = c.store_open(&payee(), Currency::JPY).await.unwrap();
            let float = i128::from(c.card_float(&card_id(1)).await.unwrap().map_or(0, |(f, _)| f));
            assert_eq!(received, outstanding + payable + float, "the pool holds what was deposited");
            (outstanding, payable, float)
        }
    };
    assert_eq!(books(&s.center).await, (12_000, 0, 0));
    // The store's bill, a settlement opened on the card.
    let bill = crate::service::bill_token(&mut s);
    let c = &s.center;
    let r = c.create(crate::world::offer_request(&mut card, &bill, card_id(1)), Default::default()).await.unwrap();
    assert_eq!(r.phase, Phase::ReadingBalance);
    let id = r.settlement_id.clone();
    // The cardholder pays with the token: nothing moves yet.
    let r = c.pay_by_token(&id, token, None, Default::default()).await.unwrap();
    assert_eq!((r.phase, r.apdus.len()), (Phase::PayingByToken, 0));
    let again = c.pay_by_token(&id, token, None, Default::default()).await.unwrap();
    assert_eq!(again.phase, Phase::PayingByToken, "the same choice again");
    let answers = crate::service::relay(&mut card, &again);
    assert!(answers.is_empty());
    assert!(
        matches!(
            c.offer(&id, vec![], Default::default()).await,
            Err(kessai_center::service::CenterError::Step(kessai_center::purchase::StepError::OutOfOrder { .. }))
        ),
        "the balance route is closed"
    );
    assert_eq!(books(c).await, (12_000, 0, 0));
    // The token redeemed on the card: the bill is paid, the rest owed.
    let (session, answers) = redeem_batch(c, &mut card, token).await.unwrap();
    let done = c.token_session_finish(&session, answers, None).await.unwrap();
    let redeemed = done.redeemed.expect("redeemed");
    assert_eq!(redeemed.settlement_id.as_deref(), Some(id.as_str()));
    assert_eq!((redeemed.amount, redeemed.owed), (jpy(12_000), Some(jpy(12_000 - BILL))));
    let (settled, _) = c.db.settlement(&kessai_core::ids::SettlementId::parse(&id).unwrap()).await.unwrap().unwrap();
    assert_eq!(settled.phase(), Phase::Completed);
    let row = c.db.token(&token).await.unwrap().unwrap();
    assert_eq!(row.status, kessai_api::TokenStatus::Redeemed);
    let keys = {
        let mut k = kessai_core::keys::KeyDirectory::new();
        k.insert(c.center_id.clone(), c.center_key.public(), kessai_core::keys::Validity::always()).unwrap();
        k
    };
    let sig3 = kessai_core::messages::completion::verify(
        settled.completion_token().unwrap(),
        &keys,
        &kessai_core::time::FixedClock::new(NOW),
    )
    .unwrap();
    let sig3 = sig3.message();
    assert_eq!((sig3.amount(), sig3.store().as_str()), (jpy(BILL), kessai_core::samples::MALL));
    assert_eq!(sig3.transaction_id(), row.redeem_tx, "SIG3 names the REDEEM the card logged");
    assert_eq!(Some(sig3.card_counter()), row.redeemed_counter);
    assert_eq!(crate::world::balance_of(&mut card), 0, "the balance was not touched");
    let change = i128::from(12_000 - BILL);
    assert_eq!(books(c).await, (change, i128::from(BILL), 0), "the change is held for the card");
    assert_eq!(c.books.card_credits_pending(&card_id(1)).await.unwrap(), 12_000 - BILL);
    // The card takes the change at its next presentation.
    assert_eq!(present(c, &mut card).await, vec![12_000 - BILL]);
    assert_eq!(crate::world::balance_of(&mut card), 12_000 - BILL);
    assert_eq!(books(c).await, (0, i128::from(BILL), change));
    // The store is paid by the next clearing run, as for a card purchase.
    let account = "zengin:0001-001-1-1234567:ｷﾖｳﾄﾎﾝﾔ";
    assert!(c.db.set_bank_account(&payee(), "", account, NOW, crate::trail("store_bank_account")).await.unwrap());
    let r = c.clearing_run(NOW).await.unwrap();
    assert_eq!((r.payouts, r.paid.clone()), (1, vec![(Currency::JPY, BILL)]), "{r:?}");
    assert_eq!(c.books.store_open(&payee(), Currency::JPY).await.unwrap(), 0);
    c.books.ledger().check().await.unwrap();
}

#[tokio::test]
async fn a_token_pays_a_stores_bill() {
    a_token_pays_a_bill(with_tokens(setup().await).await).await;
}

#[tokio::test]
async fn a_token_pays_a_stores_bill_on_postgres() {
    let Some(s) = setup_on_postgres("tokens_purchase").await else { return };
    a_token_pays_a_bill(with_tokens(s).await).await;
}

/// What a token cannot pay is refused before anything moves: a token
/// below the bill, one not on the settlement's card, one chosen for
/// another settlement, one expired; and a settlement past choosing.
#[tokio::test]
async fn a_token_that_cannot_pay_the_bill_is_refused() {
    use kessai_center::purchase::StepError;
    use kessai_center::service::CenterError;
    let mut s = with_tokens(setup().await).await;
    let (m, mut card, small) = stored_token(&mut s, 5_000).await;
    let (bill, other_bill) = (crate::service::bill_token(&mut s), crate::service::bill_token(&mut s));
    let c = &s.center;
    let refused = |r: &Result<kessai_center::service::StepReply, CenterError>, says: &str| {
        assert!(
            matches!(r, Err(CenterError::Step(StepError::TokenRefused(why))) if why.contains(says)),
            "{says}: {r:?}"
        )
    };
    let id = c.create(crate::world::offer_request(&mut card, &bill, card_id(1)), Default::default());
    let id = id.await.unwrap().settlement_id;
    refused(&c.pay_by_token(&id, small, None, Default::default()).await, "cannot pay");
    let unknown = TokenId::parse("tok_0123456789abcdef0123456789abcdef").unwrap();
    refused(&c.pay_by_token(&id, unknown, None, Default::default()).await, "no token");
    let phase = |id: &str| {
        let id = kessai_core::ids::SettlementId::parse(id).unwrap();
        async move { c.db.settlement(&id).await.unwrap().unwrap().0.phase() }
    };
    assert_eq!(phase(&id).await, kessai_api::Phase::ReadingBalance, "still open for the balance");
    // A token large enough, chosen for this settlement.
    let a = ask(c, &m, token_request(&m, "dep-big", card_id(1), 20_000)).await.unwrap();
    let statement = deposited(&s, "STMT-BIG", &[(20_000, Some(&a.reference))]).await;
    assert_eq!(c.import_statement(&statement, StatementSource::Bank).await.unwrap().matched, 1);
    assert_eq!(deliver(c, &mut card, 1).await.len(), 1);
    let big = TokenId::parse(&a.token_id).unwrap();
    c.pay_by_token(&id, big, None, Default::default()).await.unwrap();
    // Another settlement of the card cannot choose it too.
    let other = c.create(crate::world::offer_request(&mut card, &other_bill, card_id(1)), Default::default());
    let other = other.await.unwrap().settlement_id;
    refused(&c.pay_by_token(&other, big, None, Default::default()).await, "chosen to pay settlement");
    // Cancelled, the first is past choosing; the second may choose it.
    c.cancel(&id, Default::default()).await.unwrap();
    assert!(matches!(
        c.pay_by_token(&id, big, None, Default::default()).await,
        Err(CenterError::Step(StepError::OutOfOrder { .. }))
    ));
    c.pay_by_token(&other, big, None, Default::default()).await.unwrap();
    assert_eq!(phase(&other).await, kessai_api::Phase::PayingByToken);
    assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 25_000, "nothing moved");
    assert_eq!(c.books.store_open(&payee(), Currency::JPY).await.unwrap(), 0);
}

/// A token past its expiry pays no bill.
#[tokio::test]
async fn an_expired_token_pays_no_bill() {
    let mut s = with_tokens(setup().await).await;
    let (_m, mut card, token) = stored_token(&mut s, 20_000).await;
    let bill = crate::service::bill_token(&mut s);
    let e = expiry_of(&s.center, &token).await;
    let id = s.center.create(crate::world::offer_request(&mut card, &bill, card_id(1)), Default::default()).await;
    let id = id.unwrap().settlement_id;
    set_clock(&mut s, at(e));
    let r = s.center.pay_by_token(&id, token, None, Default::default()).await;
    assert!(
        matches!(&r, Err(kessai_center::service::CenterError::Step(kessai_center::purchase::StepError::TokenRefused(why))) if why.contains("expired")),
        "{r:?}"
    );
}

/// A token of JPY 12,000 on card 1, chosen to pay the sample bill, its
/// REDEEM answered by the card and not yet handed to the center: the card,
/// the token, the settlement, the token session and the card's answers.
async fn chosen_and_redeemed(
    s: &mut Setup,
) -> (kessai_card::terminal::Terminal<CardReader>, TokenId, String, String, Vec<ResponseApdu>) {
    let (_m, mut card, token) = stored_token(s, 12_000).await;
    let bill = crate::service::bill_token(s);
    let c = &s.center;
    let id = c.create(crate::world::offer_request(&mut card, &bill, card_id(1)), Default::default());
    let id = id.await.unwrap().settlement_id;
    c.pay_by_token(&id, token, None, Default::default()).await.unwrap();
    let (session, answers) = redeem_batch(c, &mut card, token).await.unwrap();
    (card, token, id, session, answers)
}

/// The cardholder cancels while the token's redemption is on its way,
/// or the two meet: the value goes one way only, to the store (the
/// settlement completed) or all to the card (the settlement voided).
async fn cancelled_while_redeeming(mut s: Setup) {
    use kessai_api::Phase;
    let (mut card, token, id, session, answers) = chosen_and_redeemed(&mut s).await;
    let c = &s.center;
    let (cancelled, finished) =
        tokio::join!(c.cancel(&id, Default::default()), c.token_session_finish(&session, answers, None));
    let finished = finished.unwrap();
    let redeemed = finished.redeemed.expect("the card gave the token up: it is redeemed either way");
    let phase = c.db.settlement(&kessai_core::ids::SettlementId::parse(&id).unwrap()).await.unwrap().unwrap().0.phase();
    match phase {
        Phase::Completed => {
            assert!(cancelled.is_err(), "cancel came too late");
            assert_eq!(redeemed.settlement_id.as_deref(), Some(id.as_str()));
            assert_eq!(c.books.store_open(&payee(), Currency::JPY).await.unwrap(), i128::from(BILL));
            assert_eq!(present(c, &mut card).await, vec![12_000 - BILL]);
        }
        Phase::Voided => {
            assert!(cancelled.is_ok());
            assert_eq!(redeemed.settlement_id, None);
            assert_eq!(c.books.store_open(&payee(), Currency::JPY).await.unwrap(), 0);
            assert_eq!(present(c, &mut card).await, vec![12_000], "all of it to the card");
        }
        other => panic!("{other:?}"),
    }
    c.books.ledger().check().await.unwrap();
    assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 0);
    assert_eq!(c.db.token(&token).await.unwrap().unwrap().status, kessai_api::TokenStatus::Redeemed);
}

#[tokio::test]
async fn a_bill_cancelled_while_its_token_is_redeemed_is_paid_once_or_not_at_all() {
    cancelled_while_redeeming(with_tokens(setup().await).await).await;
}

#[tokio::test]
async fn a_bill_cancelled_while_its_token_is_redeemed_is_paid_once_or_not_at_all_on_postgres() {
    let Some(s) = setup_on_postgres("tokens_purchase_cancel").await else { return };
    cancelled_while_redeeming(with_tokens(s).await).await;
}

/// A settlement left waiting for its token (the wallet went away) is
/// ended by the abandoned sweep; a redemption proven after owes the whole
/// token to the card, and the store is paid nothing.
#[tokio::test]
async fn a_settlement_left_waiting_for_its_token_is_ended_and_the_card_keeps_the_value() {
    let mut s = with_tokens(setup().await).await;
    let (mut card, token, id, session, answers) = chosen_and_redeemed(&mut s).await;
    let c = &s.center;
    let later = at(NOW.unix_s() + kessai_center::limits::ABANDONED_AFTER_S + 1);
    let ended = c.sweep_abandoned(&kessai_center::authorizer::Simulator::new(), later).await.unwrap();
    assert_eq!(ended, 1);
    let sid = kessai_core::ids::SettlementId::parse(&id).unwrap();
    assert_eq!(c.db.settlement(&sid).await.unwrap().unwrap().0.phase(), kessai_api::Phase::Voided);
    let done = c.token_session_finish(&session, answers, None).await.unwrap();
    let redeemed = done.redeemed.unwrap();
    assert_eq!((redeemed.settlement_id, redeemed.owed), (None, Some(jpy(12_000))));
    assert_eq!(present(c, &mut card).await, vec![12_000]);
    assert_eq!(c.books.store_open(&payee(), Currency::JPY).await.unwrap(), 0);
    assert_eq!(c.db.token(&token).await.unwrap().unwrap().status, kessai_api::TokenStatus::Redeemed);
    conserved_with_card(c).await;
}

/// A member's card that pays only on the member's instruction (#12) pays
/// a bill with a token only on it too, as with its balance.
#[tokio::test]
async fn a_member_card_pays_with_a_token_only_on_the_members_instruction() {
    use kessai_core::jws::Claims;
    use kessai_core::messages::instruction::{self, InstructionDraft, PaymentInstruction};
    let mut s = with_tokens(setup().await).await;
    let (m, mut card, token) = stored_token(&mut s, 12_000).await;
    let bill = crate::service::bill_token(&mut s);
    let c = &s.center;
    assert!(
        c.db.link_card_member(&card_id(1), Some(m.id.as_str()), true, NOW, crate::trail("card_member")).await.unwrap()
    );
    let id = c.create(crate::world::offer_request(&mut card, &bill, card_id(1)), Default::default());
    let id = id.await.unwrap().settlement_id;
    let without = c.pay_by_token(&id, token, None, Default::default()).await;
    assert!(matches!(without, Err(kessai_center::service::CenterError::Step(_))), "{without:?}");
    let draft = InstructionDraft {
        member: m.id.clone(),
        card_id: Some(card_id(1)),
        prepaid_id: None,
        bill_hash: kessai_core::digest::Sha256Digest::of_token(&bill),
        amount: jpy(BILL),
        store: kessai_core::ids::StoreId::parse(kessai_core::samples::MALL).unwrap(),
    };
    let claims = Claims::for_lifetime(
        m.id.clone(),
        kessai_core::ids::MessageId::generate(&mut kessai_core::random::OsRandom),
        NOW,
        300,
    )
    .unwrap();
    let signed = instruction::sign(
        &claims.clone().with_audience(crate::center_party()),
        &PaymentInstruction::new(draft).unwrap(),
        &m.key,
    )
    .unwrap();
    let r = c.pay_by_token(&id, token, Some(&signed), Default::default()).await.unwrap();
    assert_eq!(r.phase, kessai_api::Phase::PayingByToken);
}

/// A crash after any write of a bill paid by a token (the choice, the
/// token session's create, authenticate and finish) leaves the bill paid
/// with the token's redemption or neither; going on after it pays the bill
/// once and owes the rest to the card once.
#[tokio::test]
async fn a_crash_at_any_write_of_a_bill_paid_by_a_token_pays_it_once() {
    use kessai_api::Phase;
    let (mut finished, mut crashed) = (false, 0);
    for n in 1..=24 {
        let mut s = with_tokens(setup().await).await;
        let (_m, mut card, token) = stored_token(&mut s, 12_000).await;
        let bill = crate::service::bill_token(&mut s);
        let c = &s.center;
        let id = c.create(crate::world::offer_request(&mut card, &bill, card_id(1)), Default::default());
        let id = id.await.unwrap().settlement_id;
        let sid = kessai_core::ids::SettlementId::parse(&id).unwrap();
        c.db.faults().fail_at(n);
        let paid = async {
            c.pay_by_token(&id, token, None, Default::default()).await.ok()?;
            let (session, answers) = redeem_batch(c, &mut card, token).await.ok()?;
            c.token_session_finish(&session, answers, None).await.ok()
        }
        .await;
        let fired = !c.db.faults().armed();
        c.db.faults().fail_at(0);
        // Whole either way: paid with the token's redemption, or neither.
        let phase = c.db.settlement(&sid).await.unwrap().unwrap().0.phase();
        let status = c.db.token(&token).await.unwrap().unwrap().status;
        let payable = c.books.store_open(&payee(), Currency::JPY).await.unwrap();
        match (phase, status) {
            (Phase::Completed, kessai_api::TokenStatus::Redeemed) => assert_eq!(payable, i128::from(BILL)),
            (Phase::ReadingBalance | Phase::PayingByToken, kessai_api::TokenStatus::Stored) => {
                assert_eq!((payable, c.books.tokens_outstanding(Currency::JPY).await.unwrap()), (0, 12_000))
            }
            other => panic!("fault at {n}: {other:?}"),
        }
        c.books.ledger().check().await.unwrap();
        if fired {
            crashed += 1;
            assert!(paid.is_none(), "a fault at write {n} fails a step");
            if phase == Phase::ReadingBalance {
                c.pay_by_token(&id, token, None, Default::default()).await.unwrap();
            }
            if phase != Phase::Completed {
                let (session, answers) = redeem_batch(c, &mut card, token).await.unwrap();
                let done = c.token_session_finish(&session, answers, None).await.unwrap();
                assert_eq!(done.redeemed.and_then(|r| r.settlement_id), Some(id.clone()), "fault at {n}");
            }
        } else {
            assert!(paid.is_some());
        }
        assert_eq!(c.db.settlement(&sid).await.unwrap().unwrap().0.phase(), Phase::Completed, "fault at {n}");
        assert_eq!(c.books.store_open(&payee(), Currency::JPY).await.unwrap(), i128::from(BILL), "fault at {n}");
        assert_eq!(present(c, &mut card).await, vec![12_000 - BILL], "fault at {n}");
        assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 0);
        c.books.ledger().check().await.unwrap();
        if !fired {
            finished = true;
            break;
        }
    }
    assert!(finished && crashed > 0, "every write was crashed at ({crashed}), and then it completed");
}

/// A token that pays a bill exactly, its REDEEM answered alike to two
/// sessions (the first's answer kept by a wallet that retried): the bill
/// is paid once and nothing is owed to the card, whichever finishes first
/// or if both finish at once; the second is told what the first did.
async fn exact_token_redeemed_twice(mut s: Setup, at_once: bool) {
    let (_m, mut card, token) = stored_token(&mut s, BILL).await;
    let bill = crate::service::bill_token(&mut s);
    let c = &s.center;
    let id = c.create(crate::world::offer_request(&mut card, &bill, card_id(1)), Default::default());
    let id = id.await.unwrap().settlement_id;
    c.pay_by_token(&id, token, None, Default::default()).await.unwrap();
    let (a, answers_a) = redeem_batch(c, &mut card, token).await.unwrap();
    let (b, answers_b) = redeem_batch(c, &mut card, token).await.unwrap();
    let (ra, rb) = if at_once {
        tokio::join!(c.token_session_finish(&a, answers_a, None), c.token_session_finish(&b, answers_b, None))
    } else {
        let ra = c.token_session_finish(&a, answers_a, None).await;
        (ra, c.token_session_finish(&b, answers_b, None).await)
    };
    for done in [ra.unwrap(), rb.unwrap()] {
        let r = done.redeemed.expect("redeemed");
        assert_eq!((r.settlement_id.as_deref(), r.owed_id, r.owed), (Some(id.as_str()), None, None));
    }
    assert_eq!(c.books.store_open(&payee(), Currency::JPY).await.unwrap(), i128::from(BILL));
    assert_eq!(c.books.card_credits_pending(&card_id(1)).await.unwrap(), 0, "nothing owed to the card");
    assert!(c.owed_for_card(&card_id(1)).await.unwrap().is_empty());
    assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 0);
    c.books.ledger().check().await.unwrap();
}

#[tokio::test]
async fn a_token_paying_a_bill_exactly_redeemed_twice_pays_once() {
    exact_token_redeemed_twice(with_tokens(setup().await).await, false).await;
    exact_token_redeemed_twice(with_tokens(setup().await).await, true).await;
}

#[tokio::test]
async fn a_token_paying_a_bill_exactly_redeemed_twice_pays_once_on_postgres() {
    let Some(s) = setup_on_postgres("tokens_exact_twice").await else { return };
    exact_token_redeemed_twice(with_tokens(s).await, false).await;
    let Some(s) = setup_on_postgres("tokens_exact_twice_at_once").await else { return };
    exact_token_redeemed_twice(with_tokens(s).await, true).await;
}

/// The choice of a token meeting its redemption for card value, or a
/// second settlement's choice of it: a redeemed token pays no bill, and a
/// token pays one settlement at most; the value goes one way.
async fn choice_racing(mut s: Setup) {
    use kessai_api::Phase;
    let (_m, mut card, token) = stored_token(&mut s, 12_000).await;
    let (bill, other_bill) = (crate::service::bill_token(&mut s), crate::service::bill_token(&mut s));
    let c = &s.center;
    let first = c.create(crate::world::offer_request(&mut card, &bill, card_id(1)), Default::default());
    let first = first.await.unwrap().settlement_id;
    let second = c.create(crate::world::offer_request(&mut card, &other_bill, card_id(1)), Default::default());
    let second = second.await.unwrap().settlement_id;
    // Two settlements choose it at once: one does.
    let (a, b) = tokio::join!(
        c.pay_by_token(&first, token, None, Default::default()),
        c.pay_by_token(&second, token, None, Default::default())
    );
    assert!(a.is_ok() != b.is_ok(), "one choice: {a:?} {b:?}");
    let (chosen, other) = if a.is_ok() { (&first, &second) } else { (&second, &first) };
    let phase = |id: &str| {
        let id = kessai_core::ids::SettlementId::parse(id).unwrap();
        async move { c.db.settlement(&id).await.unwrap().unwrap().0.phase() }
    };
    assert_eq!(phase(other).await, Phase::ReadingBalance);
    // The chosen one cancelled, the other chooses it while a session
    // redeems it for card value: the card is owed it all, or the other's
    // bill is paid.
    c.cancel(chosen, Default::default()).await.unwrap();
    let (session, answers) = redeem_batch(c, &mut card, token).await.unwrap();
    let (choice, done) = tokio::join!(
        c.pay_by_token(other, token, None, Default::default()),
        c.token_session_finish(&session, answers, None)
    );
    let redeemed = done.unwrap().redeemed.expect("redeemed");
    let paid = c.books.store_open(&payee(), Currency::JPY).await.unwrap();
    match redeemed.settlement_id {
        Some(paid_id) => {
            assert!(choice.is_ok());
            assert_eq!(&paid_id, other);
            assert_eq!((paid, redeemed.owed), (i128::from(BILL), Some(jpy(12_000 - BILL))));
        }
        None => {
            assert_eq!((paid, redeemed.owed), (0, Some(jpy(12_000))));
            assert!(matches!(phase(other).await, Phase::ReadingBalance | Phase::PayingByToken));
            // Chosen after it was redeemed: it pays nothing, and a later
            // redemption session answers the same.
            let again = redeem_batch(c, &mut card, token).await;
            if let Ok((session, answers)) = again {
                let r = c.token_session_finish(&session, answers, None).await.unwrap().redeemed.unwrap();
                assert_eq!((r.settlement_id, r.owed), (None, Some(jpy(12_000))));
            }
        }
    }
    assert_eq!(c.books.store_open(&payee(), Currency::JPY).await.unwrap(), paid);
    c.books.ledger().check().await.unwrap();
}

#[tokio::test]
async fn a_tokens_choice_racing_its_redemption_or_another_choice_pays_once() {
    choice_racing(with_tokens(setup().await).await).await;
}

#[tokio::test]
async fn a_tokens_choice_racing_its_redemption_or_another_choice_pays_once_on_postgres() {
    let Some(s) = setup_on_postgres("tokens_choice_race").await else { return };
    choice_racing(with_tokens(s).await).await;
}

/// Within the week after its expiry a token still on the card is not
/// corrected for a payback: a REDEEM the card answered before the expiry
/// may still settle. After it, it is.
#[tokio::test]
async fn a_payback_account_is_corrected_only_after_the_week_a_redemption_may_settle() {
    let mut s = with_tokens(setup().await).await;
    let (_m, _card, token) = stored_token(&mut s, 3_000).await;
    let e = expiry_of(&s.center, &token).await;
    let by = kessai_center::console::Actor::api("ops");
    set_clock(&mut s, at(e + DAY));
    let early = s.center.correct_payback_account(&token, None, KANA_ACCOUNT, "kana", &by).await;
    assert!(
        matches!(&early, Err(kessai_center::clearing::ClearingError::TokenNotPayable(_, why)) if why.contains("may still settle")),
        "{early:?}"
    );
    assert_eq!(s.center.db.token(&token).await.unwrap().unwrap().status, kessai_api::TokenStatus::Stored);
    set_clock(&mut s, at(e + 7 * DAY));
    s.center.correct_payback_account(&token, None, KANA_ACCOUNT, "kana", &by).await.unwrap();
    assert_eq!(s.center.db.token(&token).await.unwrap().unwrap().status, kessai_api::TokenStatus::Expired);
}

/// Over HTTP, a token session answers only the holder of the access token
/// its create handed out: a stranger who knows the id, and an id nobody
/// was given, are answered alike (`404 unknown_token_session`), and
/// change nothing; the holder goes on and redeems.
#[tokio::test]
async fn a_token_session_answers_only_the_holder_of_its_access_token() {
    use serde_json::json;
    let mut s = with_tokens(setup().await).await;
    let (_m, mut card, token) = stored_token(&mut s, 2_000).await;
    let center = Arc::new(s.center);
    let app = kessai_center::api::routes(center.clone());
    card.select().unwrap();
    let path = format!("/v1/cards/{}/token-sessions", card_id(1));
    let (status, reply) =
        crate::world::post(&app, &path, Some("tks-http-0"), json!({ "redeem": token.to_string() })).await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply["access_token"].is_string(), "{reply}");
    let id = reply["session_id"].as_str().unwrap().to_owned();
    let mut made_up = id.clone();
    let last = made_up.pop().unwrap();
    made_up.push(if last == '0' { '1' } else { '0' });
    for step in ["authenticate", "finish"] {
        for (who, sid) in [("stranger", &id), ("made-up", &made_up)] {
            let key = format!("tks-{who}-{step}");
            let body = json!({ "responses": ["9000"] });
            let answer =
                crate::world::post_as_stranger(&app, &format!("/v1/token-sessions/{sid}/{step}"), &key, body).await;
            assert_eq!(answer, (404, "unknown_token_session".to_owned()), "{who} {step}");
        }
    }
    // The holder goes on, through the same routes.
    let body = crate::world::relay_json(&mut card, &reply);
    let (status, reply) =
        crate::world::post(&app, &format!("/v1/token-sessions/{id}/authenticate"), Some("tks-http-1"), body).await;
    assert_eq!(status, 200, "{reply}");
    let body = crate::world::relay_json(&mut card, &reply);
    let (status, done) =
        crate::world::post(&app, &format!("/v1/token-sessions/{id}/finish"), Some("tks-http-2"), body).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["redeemed"]["token_id"], token.to_string());
    assert_eq!(center.books.card_credits_pending(&card_id(1)).await.unwrap(), 2_000, "owed once");
}

/// The same token request sent twice at once (a wallet that retried):
/// one token, and both answered with it.
async fn identical_requests_racing(mut s: Setup) {
    let m = members_card(&mut s).await;
    let c = &s.center;
    let (a, b) = tokio::join!(
        ask(c, &m, token_request(&m, "dep-twice", card_id(1), 4_000)),
        ask(c, &m, token_request(&m, "dep-twice", card_id(1), 4_000))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.token_id.as_str(), a.reference.as_str()), (b.token_id.as_str(), b.reference.as_str()));
    assert_eq!(c.tokens_of(m.id.as_str()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn identical_token_requests_at_once_make_one_token() {
    identical_requests_racing(with_tokens(setup().await).await).await;
}

#[tokio::test]
async fn identical_token_requests_at_once_make_one_token_on_postgres() {
    let Some(s) = setup_on_postgres("tokens_request_twice").await else { return };
    identical_requests_racing(with_tokens(s).await).await;
}

/// A member who gives its refund account's holder as the bank has it is
/// paid back with no operator; a holder no bank file carries is refused
/// when the token is asked for, and nothing is made.
#[tokio::test]
async fn a_refund_holder_given_with_the_request_is_paid_back_with_no_operator() {
    let mut s = with_tokens(setup().await).await;
    let m = members_card(&mut s).await;
    let with_holder = |holder: &str, id: &str| {
        let mut d = token_request(&m, id, card_id(1), 6_000);
        d.token = Some(TokenTerms { refund_holder: Some(holder.into()), ..terms() });
        d
    };
    let kanji = ask(&s.center, &m, with_holder("山田 花子", "dep-h0")).await;
    assert!(matches!(&kanji, Err(e) if e.to_string().contains("holder")), "{kanji:?}");
    // A card number is no holder, typed in full width or not.
    let number = ask(&s.center, &m, with_holder("４１１１１１１１１１１１１１１１", "dep-h2")).await;
    assert!(matches!(&number, Err(e) if e.to_string().contains("card number")), "{number:?}");
    // An IBAN's holder that starts like a BIC stays the holder.
    let iban = kessai_center::clearing::refund_payee("DE89370400440532013000", "COBADEFF:MAX MUSTER").unwrap();
    assert_eq!(iban.holder(), "COBADEFF:MAX MUSTER");
    assert!(s.center.tokens_of(m.id.as_str()).await.unwrap().is_empty());
    let a = ask(&s.center, &m, with_holder("ﾔﾏﾀﾞ ﾊﾅｺ", "dep-h1")).await.unwrap();
    let statement = deposited(&s, "STMT-H", &[(6_000, Some(&a.reference))]).await;
    assert_eq!(s.center.import_statement(&statement, StatementSource::Bank).await.unwrap().matched, 1);
    let token = TokenId::parse(&a.token_id).unwrap();
    let e = expiry_of(&s.center, &token).await;
    set_clock(&mut s, at(e + 8 * DAY));
    let r = s.center.clearing_run(at(e + 8 * DAY)).await.unwrap();
    assert_eq!((r.paybacks, r.paybacks_skipped.len()), (1, 0), "{r:?}");
    let p = s.center.db.paybacks(None, Some(&token), 10).await.unwrap().remove(0);
    let expected = kessai_center::clearing::refund_payee("0005-123-1-7654321", "ﾔﾏﾀﾞ ﾊﾅｺ").unwrap();
    assert_eq!(p.payee_account, expected.to_string());
    conserved_with_paybacks(&s.center).await;
}

/// A crash after any write of a clearing run that pays a token back, or
/// of the bank's notice that settles it: the token is paid back whole or
/// not at all, and running again (once the crashed instance's lease is
/// over) pays it back once and settles it once.
#[tokio::test]
async fn a_crash_at_any_write_of_a_payback_pays_it_back_once() {
    use kessai_api::TokenStatus;
    let (mut finished, mut crashed) = (false, 0);
    for n in 1..=60 {
        let mut s = with_tokens(setup().await).await;
        let (_m, _card, token) = stored_token(&mut s, 3_000).await;
        let e = expiry_of(&s.center, &token).await;
        set_clock(&mut s, at(e + 9 * DAY));
        let by = kessai_center::console::Actor::api("ops");
        s.center.correct_payback_account(&token, None, KANA_ACCOUNT, "kana", &by).await.unwrap();
        let cutoff = at(e + 8 * DAY);
        s.center.db.faults().fail_at(n);
        let first = s.center.clearing_run(cutoff).await;
        let p = s.center.db.paybacks(None, Some(&token), 10).await.unwrap();
        let notice = p.first().map(|p| crate::clearing::debits("N-C", &[(&p.bank_ref, 3_000)]));
        let settled = match (&first, &notice) {
            (Ok(_), Some(notice)) => s.center.import_payout_outcomes(notice).await.is_ok(),
            _ => false,
        };
        let fired = !s.center.db.faults().armed();
        s.center.db.faults().fail_at(0);
        // Whole either way.
        let status = s.center.db.token(&token).await.unwrap().unwrap().status;
        let (outstanding, in_transit) = (
            s.center.books.tokens_outstanding(Currency::JPY).await.unwrap(),
            s.center.books.in_transit(Currency::JPY).await.unwrap(),
        );
        match status {
            TokenStatus::Expired => assert_eq!((outstanding, in_transit, p.len()), (3_000, 0, 0), "fault at {n}"),
            TokenStatus::PayingBack => assert_eq!((outstanding, in_transit, p.len()), (0, 3_000, 1), "fault at {n}"),
            TokenStatus::PaidBack => assert_eq!((outstanding, in_transit, p.len()), (0, 0, 1), "fault at {n}"),
            other => panic!("fault at {n}: {other:?}"),
        }
        conserved_with_paybacks(&s.center).await;
        if fired {
            crashed += 1;
            // The crashed instance's claim lapses; the run is run again.
            set_clock(&mut s, at(e + 9 * DAY + 600));
            s.center.clearing_run(cutoff).await.unwrap();
            let p = s.center.db.paybacks(None, Some(&token), 10).await.unwrap();
            assert_eq!(p.len(), 1, "paid back once: fault at {n}");
            let notice = crate::clearing::debits("N-C", &[(&p[0].bank_ref, 3_000)]);
            s.center.import_payout_outcomes(&notice).await.unwrap();
        } else {
            assert!(settled, "no fault: it is paid back and settled");
        }
        assert_eq!(s.center.db.token(&token).await.unwrap().unwrap().status, TokenStatus::PaidBack, "fault at {n}");
        assert_eq!(s.center.books.in_transit(Currency::JPY).await.unwrap(), 0, "fault at {n}");
        assert_eq!(s.center.books.tokens_outstanding(Currency::JPY).await.unwrap(), 0);
        conserved_with_paybacks(&s.center).await;
        if !fired {
            finished = true;
            break;
        }
    }
    assert!(finished && crashed > 0, "every write was crashed at ({crashed}), and then it completed");
}

/// A clearing run writing a redemption from the provider's register (the
/// card's finish lost) and the card's own finish of the same REDEEM, asked
/// again after the expiry: in either order and at once, one of them writes
/// it, the other answers what was written; the value is owed to the card
/// once and never paid back, though the payback's account was corrected
/// (the register alone stops the payback).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clearing_run_and_the_cards_finish_write_one_redemption() {
    for order in [Order::RunFirst, Order::FinishFirst, Order::AtOnce] {
        clearing_racing_finish(with_tokens(setup().await).await, order).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clearing_run_and_the_cards_finish_write_one_redemption_on_postgres() {
    for (n, order) in [Order::RunFirst, Order::FinishFirst, Order::AtOnce].into_iter().enumerate() {
        let Some(s) = setup_on_postgres(&format!("tokens_clearing_finish_race_{n}")).await else { return };
        clearing_racing_finish(with_tokens(s).await, order).await;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    RunFirst,
    FinishFirst,
    AtOnce,
}

async fn clearing_racing_finish(mut s: Setup, order: Order) {
    let (_m, mut card, token) = stored_token(&mut s, 3_600).await;
    let (_lost, _answers) = redeem_batch(&s.center, &mut card, token).await.unwrap();
    let row = s.center.db.token(&token).await.unwrap().unwrap();
    let provider = &s.center.tokens.as_ref().unwrap().provider;
    assert!(provider.redeem(row.sealed.as_deref().unwrap(), &row.redeem_tx, NOW).await.unwrap().is_ok());
    let e = expiry_of(&s.center, &token).await;
    s.time.set(at(e + 9 * DAY));
    let c = &s.center;
    let (id, answers) = redeem_batch(c, &mut card, token).await.unwrap();
    let by = kessai_center::console::Actor::api("ops");
    c.correct_payback_account(&token, Some(kessai_api::TokenStatus::Stored), KANA_ACCOUNT, "kana", &by).await.unwrap();
    let cutoff = at(e + 8 * DAY);
    let (run, finish) = match order {
        Order::RunFirst => {
            let run = c.clearing_run(cutoff).await;
            (run, c.token_session_finish(&id, answers, None).await)
        }
        Order::FinishFirst => {
            let finish = c.token_session_finish(&id, answers, None).await;
            (c.clearing_run(cutoff).await, finish)
        }
        Order::AtOnce => tokio::join!(c.clearing_run(cutoff), c.token_session_finish(&id, answers, None)),
    };
    let (run, finish) = (run.unwrap(), finish.unwrap());
    let written_by_run = run.paybacks_skipped.iter().any(|(_, why)| why.contains("redemption is written now"));
    match order {
        Order::RunFirst => assert!(written_by_run, "{order:?}: {run:?}"),
        Order::FinishFirst => assert!(run.paybacks_skipped.is_empty(), "{order:?}: {run:?}"),
        Order::AtOnce => {}
    }
    assert_eq!(run.paybacks, 0, "{order:?}: {run:?}");
    assert_eq!(finish.redeemed.as_ref().map(|r| r.amount), Some(jpy(3_600)), "{order:?}: {finish:?}");
    assert_eq!(c.db.token(&token).await.unwrap().unwrap().status, kessai_api::TokenStatus::Redeemed);
    assert_eq!(c.books.card_credits_pending(&card_id(1)).await.unwrap(), 3_600, "{order:?}");
    assert_eq!(c.owed_for_card(&card_id(1)).await.unwrap().len(), 1);
    assert_eq!(c.books.in_transit(Currency::JPY).await.unwrap(), 0, "{order:?}: never paid back");
    c.books.ledger().check().await.unwrap();
    assert_eq!(present(c, &mut card).await, vec![3_600], "{order:?}: credited once");
}

/// A provider that answers `429 rate_limited` (the center's rate used up)
/// is down for the center, not a verdict: the card's finish writes nothing
/// (`provider_unavailable` to the wallet) and is asked again later; the
/// token stays stored, its value outstanding.
#[tokio::test]
async fn a_provider_rate_limiting_the_center_decides_nothing() {
    use kessai_api::TokenStatus;
    let mut s = setup().await;
    let limits = "[limits]\nrate_per_client_per_s = 1\nrate_burst = 1\n";
    let rig = kessai_csp::rig::ProviderRig::start_with(
        s._dir.path(),
        &[&provider_key(1, 2101)],
        None,
        s.time.clone(),
        limits,
    )
    .await
    .unwrap();
    with_provider(&mut s, rig.client()).await;
    let (_m, mut card, token) = stored_token(&mut s, 5_000).await;
    let c = &s.center;
    let (id, answers) = redeem_batch(c, &mut card, token).await.unwrap();
    // The center's one call a second, used up.
    let provider = &c.tokens.as_ref().unwrap().provider;
    let _ = provider.held(&token).await;
    let limited = provider.held(&token).await.unwrap_err();
    assert!(limited.is_down() && limited.0.contains("429"), "{limited}");
    let lost = c.token_session_finish(&id, answers.clone(), None).await;
    assert!(matches!(lost, Err(kessai_center::service::CenterError::Provider(_))), "{lost:?}");
    assert_eq!(c.db.token(&token).await.unwrap().unwrap().status, TokenStatus::Stored);
    assert_eq!(c.books.card_credits_pending(&card_id(1)).await.unwrap(), 0);
    assert_eq!(c.books.tokens_outstanding(Currency::JPY).await.unwrap(), 5_000);
    // A second later the rate allows a call again: the same finish writes it.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let done = c.token_session_finish(&id, answers, None).await.unwrap();
    assert_eq!(done.redeemed.as_ref().map(|r| r.amount), Some(jpy(5_000)), "{done:?}");
    assert_eq!(c.books.card_credits_pending(&card_id(1)).await.unwrap(), 5_000);
}
