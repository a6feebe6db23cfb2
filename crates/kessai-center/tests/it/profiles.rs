//! The purchase profiles (PROTOCOL §5.1): the first embodiment in three
//! round trips, the second embodiment (`confirmed`) and its "Modifications"
//! variant (`direct`) in two, each against a real emulated card and the
//! books; a store's policy; and the second embodiment's refusals and
//! recovery.

use kessai_card::terminal::Terminal;
use kessai_center::purchase::{CardClaim, Phase, StepError};
use kessai_center::service::{Center, CenterError, CreateRequest, StepReply, parse_answers};
use kessai_core::Currency;
use kessai_core::ids::StoreId;
use kessai_core::profile::{Profile, Profiles};
use kessai_core::samples;

use crate::service::{Setup, bill_token, check_books, register_card, relay, setup};
use crate::world::{CardReader, NOW, balance_of, card_id, funded_card, opening};

/// What the wallet reads from the card in the clear (GET DATA `DF10`).
fn read_card(t: &mut Terminal<CardReader>) -> CardClaim {
    let info = t.reader_mut().card().state().public_info();
    CardClaim { balance_minor: info.balance_minor, counter: info.counter }
}

/// A wallet's create in `profile`: the card read (second embodiment) and
/// the session opened under the bill's challenge, before the first call.
pub(crate) fn create_in<'a>(t: &mut Terminal<CardReader>, bill: &'a str, n: u8, profile: Profile) -> CreateRequest<'a> {
    let claim = (profile != Profile::Offer).then(|| read_card(t));
    let opening = opening(t, bill, card_id(n));
    CreateRequest { bill, card_id: card_id(n), profile, opening, claim, instruction: None }
}

/// One purchase in `profile`, counting the wallet's calls to the center.
pub(crate) async fn pay(
    center: &Center,
    t: &mut Terminal<CardReader>,
    bill: &str,
    n: u8,
    profile: Profile,
) -> (StepReply, usize) {
    // LOG COLLECTED leads the batch once the center holds some of the log.
    let acks = usize::from(center.db.collected_through(&card_id(n)).await.unwrap().is_some_and(|c| c > 0));
    let r = center.create(create_in(t, bill, n, profile), None).await.unwrap();
    let id = r.settlement_id.clone();
    let mut calls = 1;
    let r = match profile {
        Profile::Offer => {
            // EXTERNAL AUTHENTICATE, (LOG COLLECTED,) READ LOG, READ BALANCE
            assert_eq!((r.phase, r.apdus.len()), (Phase::ReadingBalance, 3 + acks));
            let r = center.offer(&id, parse_answers(&relay(t, &r)).unwrap(), Default::default()).await.unwrap();
            calls += 1;
            assert!(r.offer.is_some(), "SIG2");
            r
        }
        _ => {
            // EXTERNAL AUTHENTICATE, (LOG COLLECTED,) READ LOG, (READ BALANCE,) DEBIT
            let sealed = acks + if profile == Profile::Confirmed { 4 } else { 3 };
            assert_eq!((r.phase, r.apdus.len()), (Phase::Offered, sealed), "{profile}: the sealed commands at once");
            assert!(r.offer.is_none(), "{profile}: no SIG2");
            let (_, held) = center.books.card_float(&card_id(n)).await.unwrap().unwrap();
            assert_eq!(held, 11_360, "{profile}: held before the commands leave");
            r
        }
    };
    let done = center.complete(&id, parse_answers(&relay(t, &r)).unwrap(), Default::default()).await.unwrap();
    calls += 1;
    (done, calls)
}

#[tokio::test]
async fn a_purchase_in_each_profile_settles_once_in_its_round_trips_and_the_books_agree() {
    let mut s = setup().await;
    let payee = StoreId::parse(samples::MEMBER).unwrap();
    for (n, profile) in [(1, Profile::Offer), (2, Profile::Confirmed), (3, Profile::Direct)] {
        register_card(&s, n, 50_000).await;
        let mut card = funded_card(n, 50_000);
        let bill = bill_token(&mut s);
        let (done, calls) = pay(&s.center, &mut card, &bill, n, profile).await;
        assert_eq!(done.phase, Phase::Completed, "{profile}");
        assert!(done.completion.is_some(), "{profile}: SIG3");
        assert_eq!(calls, profile.round_trips(), "{profile}: round trips");
        assert_eq!(balance_of(&mut card), 50_000 - 11_360, "{profile}: debited once");
        check_books(&s, n, &mut card).await;
        let settlement = s.center.settlement(&done.settlement_id).await.unwrap();
        assert_eq!(settlement.profile, profile);
        if profile == Profile::Confirmed {
            // The sealed READ BALANCE's answer replaced what the wallet read.
            let made = settlement.offer_made().unwrap();
            assert_eq!((made.balance_minor, made.counter_at_offer), (50_000, 1), "as the card proved it");
        }
    }
    assert_eq!(s.center.books.store_payable(&payee, Currency::JPY).await.unwrap(), 3 * 11_360);
}

#[tokio::test]
async fn a_store_that_requires_sig2_refuses_the_second_embodiment() {
    let mut s = setup().await;
    register_card(&s, 4, 50_000).await;
    let mut card = funded_card(4, 50_000);
    let payee = StoreId::parse(samples::MEMBER).unwrap();
    assert_eq!(s.center.db.store_profiles(&payee).await.unwrap(), Profiles::ALL, "every profile until chosen");
    let offer_only = Profiles::of(&[Profile::Offer]).unwrap();
    s.center.db.set_store_profiles(&payee, offer_only, NOW).await.unwrap();
    assert_eq!(s.center.db.store_profiles(&payee).await.unwrap(), offer_only);
    for profile in [Profile::Confirmed, Profile::Direct] {
        let bill = bill_token(&mut s);
        let refused = s.center.create(create_in(&mut card, &bill, 4, profile), None).await;
        assert!(
            matches!(&refused, Err(CenterError::ProfileRefused { profile: p, .. }) if *p == profile),
            "{refused:?}"
        );
    }
    assert!(s.center.db.list_settlements(&of_card(4)).await.unwrap().settlements.is_empty(), "nothing opened");
    assert_eq!(s.center.books.card_float(&card_id(4)).await.unwrap(), Some((50_000, 0)), "nothing held");
    let bill = bill_token(&mut s);
    let (done, _) = pay(&s.center, &mut card, &bill, 4, Profile::Offer).await;
    assert_eq!(done.phase, Phase::Completed, "the offer profile still pays");
    check_books(&s, 4, &mut card).await;
}

#[tokio::test]
async fn the_second_embodiment_seals_nothing_for_a_balance_short_of_the_bill_or_a_wallet_that_overstates_it() {
    let mut s = setup().await;
    register_card(&s, 5, 1_000).await;
    let mut card = funded_card(5, 1_000);
    for profile in [Profile::Confirmed, Profile::Direct] {
        let bill = bill_token(&mut s);
        let r = s.center.create(create_in(&mut card, &bill, 5, profile), None).await.unwrap();
        assert_eq!(
            (r.phase, r.reason_code.map(|r| r.as_str())),
            (Phase::Voided, Some("insufficient_balance")),
            "{profile}"
        );
        assert!(r.apdus.is_empty(), "{profile}: nothing sealed");
        assert_eq!(r.balance_minor, Some(1_000));
        // A wallet claiming more than the card holds: the books (the card's
        // float) refuse the hold, and nothing is sealed or stored.
        let bill = bill_token(&mut s);
        let mut lying = create_in(&mut card, &bill, 5, profile);
        lying.claim = Some(CardClaim { balance_minor: 50_000, counter: 1 });
        let refused = s.center.create(lying, None).await;
        assert!(matches!(refused, Err(CenterError::Books(_))), "{profile}: {refused:?}");
        check_books(&s, 5, &mut card).await;
    }
    assert_eq!(balance_of(&mut card), 1_000);
    // A create without what the wallet read, or with it in the offer profile.
    let bill = bill_token(&mut s);
    let mut unread = create_in(&mut card, &bill, 5, Profile::Confirmed);
    unread.claim = None;
    assert!(matches!(
        s.center.create(unread, None).await,
        Err(CenterError::Invalid(kessai_http::ErrorCode::CardReadRequired, _))
    ));
    let mut read = create_in(&mut card, &bill, 5, Profile::Offer);
    read.claim = Some(CardClaim { balance_minor: 1_000, counter: 1 });
    assert!(matches!(
        s.center.create(read, None).await,
        Err(CenterError::Invalid(kessai_http::ErrorCode::CardReadUnexpected, _))
    ));
}

/// The wallet went away after the create of a second-embodiment purchase:
/// with the commands relayed (the card debited, its answers lost) recovery
/// completes it; never relayed, recovery voids it and releases the hold.
#[tokio::test]
async fn an_interrupted_second_embodiment_purchase_is_recovered_from_the_card() {
    let mut s = setup().await;
    register_card(&s, 6, 50_000).await;
    let mut card = funded_card(6, 50_000);
    let cases = [
        (Profile::Confirmed, true, Phase::Completed),
        (Profile::Confirmed, false, Phase::Voided),
        (Profile::Direct, true, Phase::Completed),
        (Profile::Direct, false, Phase::Voided),
    ];
    for (profile, relayed, expected) in cases {
        let bill = bill_token(&mut s);
        let r = s.center.create(create_in(&mut card, &bill, 6, profile), None).await.unwrap();
        assert_eq!(r.phase, Phase::Offered);
        if relayed {
            relay(&mut card, &r); // the answers are lost
        }
        let phase = recover(&s, &mut card, &r.settlement_id).await;
        assert_eq!(phase, expected, "{profile}, relayed: {relayed}");
        Terminal::select(&mut card).unwrap();
    }
    assert_eq!(balance_of(&mut card), 50_000 - 2 * 11_360);
    check_books(&s, 6, &mut card).await;
}

pub(crate) async fn recover(s: &Setup, card: &mut Terminal<CardReader>, id: &str) -> Phase {
    let c = &s.center;
    let r = c.recover(id, Default::default()).await.unwrap();
    let r = c.recover_authenticate(id, parse_answers(&relay(card, &r)).unwrap(), Default::default()).await.unwrap();
    let r = c.recover_status(id, parse_answers(&relay(card, &r)).unwrap(), Default::default()).await.unwrap();
    if r.phase != Phase::RecoveringBalance {
        return r.phase;
    }
    c.recover_balance(id, parse_answers(&relay(card, &r)).unwrap(), Default::default()).await.unwrap().phase
}

/// A member's card pays only on the member's instruction, in the second
/// embodiment too, where it comes with the create: refused after the
/// card's proof, with nothing stored or held.
#[tokio::test]
async fn a_members_card_needs_its_instruction_with_a_second_embodiment_create() {
    let mut s = setup().await;
    register_card(&s, 7, 50_000).await;
    let mut card = funded_card(7, 50_000);
    s.center
        .db
        .link_card_member(&card_id(7), Some("M0000001"), true, crate::world::NOW, crate::trail("card_member"))
        .await
        .unwrap();
    let bill = bill_token(&mut s);
    let refused = s.center.create(create_in(&mut card, &bill, 7, Profile::Confirmed), None).await;
    assert!(matches!(refused, Err(CenterError::Step(StepError::InstructionRequired(_)))), "{refused:?}");
    assert!(s.center.db.list_settlements(&of_card(7)).await.unwrap().settlements.is_empty(), "nothing stored");
    assert_eq!(s.center.books.card_float(&card_id(7)).await.unwrap(), Some((50_000, 0)), "nothing held");
}

/// The settlements of card `n`.
pub(crate) fn of_card(n: u8) -> kessai_center::db::SettlementQuery {
    kessai_center::db::SettlementQuery { card: Some(card_id(n)), ..Default::default() }
}
