//! The purchase protocol as labelled steps between a wallet that only
//! relays, the center's core and a real emulated card — including the
//! replays, double spends and interruptions that must be refused or
//! settled exactly once.

use kessai_center::purchase::{CardRegistryStatus, OfferOutcome, Phase, Resolution, StepError};
use kessai_center::security::SecurityError;
use kessai_core::digest::Sha256Digest;
use kessai_core::messages::{completion, offer};
use kessai_scp03::{CommandApdu, ResponseApdu};

use crate::world::{World, balance_of, funded_card, record, relay, relay_all};

/// Runs create → authenticate → offer and returns the sealed commands: a
/// LOG COLLECTED of the log it read, then the DEBIT.
fn to_offer(
    w: &mut World,
    t: &mut kessai_card::terminal::Terminal<crate::world::CardReader>,
    n: u8,
) -> (kessai_center::purchase::Settlement, String, Vec<CommandApdu>) {
    let (s, init) = w.create(&record(n));
    let (s, cmds) = s.authenticate(&mut w.ctx(), &relay(t, &init), None).unwrap();
    assert_eq!(cmds.len(), 3, "EXTERNAL AUTHENTICATE, sealed READ LOG (uncollected) and READ BALANCE");
    let (s, outcome) = s.offer(&mut w.ctx(), &relay_all(t, &cmds)).unwrap();
    let OfferOutcome::Offered { offer, commands } = outcome else { panic!("expected an offer, got {outcome:?}") };
    assert_eq!(commands.len(), 2, "LOG COLLECTED (the funding credit it read), then the DEBIT");
    (s, offer, commands)
}

#[test]
fn happy_path() {
    let mut w = World::new(1);
    let mut card = funded_card(1, 50_000);

    // step 1: the center checks the bill and opens a settlement.
    let (s, init) = w.create(&record(1));
    assert_eq!(s.phase(), Phase::Authenticating);
    assert_eq!(init.to_bytes()[..2], [0x80, 0x50], "INITIALIZE UPDATE");
    // step 2: card cryptogram checked; EXTERNAL AUTHENTICATE + sealed READ BALANCE.
    let (s, cmds) = s.authenticate(&mut w.ctx(), &relay(&mut card, &init), None).unwrap();
    assert_eq!(cmds[1].to_bytes()[0], 0x84, "READ BALANCE goes sealed");
    // step 3: balance read inside the session; offer signed; DEBIT sealed.
    let (s, outcome) = s.offer(&mut w.ctx(), &relay_all(&mut card, &cmds)).unwrap();
    let OfferOutcome::Offered { offer: offer_token, commands } = outcome else { panic!() };
    let debit = commands.last().unwrap().clone();
    assert_eq!(s.collected.len(), 1, "the card's log read: its funding credit");
    assert_eq!(s.phase(), Phase::Offered);
    assert_eq!(balance_of(&mut card), 50_000, "nothing debited before consent");
    // step 4: the wallet checks SIG2 and that it covers this DEBIT.
    let verified = offer::verify(&offer_token, &w.center_keys, &w.clock).unwrap();
    assert_eq!(verified.message().balance().amount_minor(), 50_000);
    assert_eq!(verified.message().amount().amount_minor(), 11_360);
    assert_eq!(verified.message().debit_hash(), Sha256Digest::of(&debit.to_bytes()));
    assert_eq!(verified.message().bill_hash(), s.bill.bill_hash);
    // step 5: consent; the card debits; the center checks the sealed answer.
    let (s, completion_token) = s.complete(&mut w.ctx(), &relay_all(&mut card, &commands)).unwrap();
    assert_eq!(s.phase(), Phase::Completed);
    assert_eq!(balance_of(&mut card), 50_000 - 11_360);
    // step 6: the store (and wallet) check SIG3.
    let done = completion::verify(&completion_token, &w.center_keys, &w.clock).unwrap();
    assert_eq!(done.message().amount().amount_minor(), 11_360);
    assert_eq!(done.message().card_counter(), 2, "funding credit, then this debit");
    assert_eq!(done.message().transaction_id(), s.transaction_id);
}

#[test]
fn insufficient_balance_voids_without_touching_the_card() {
    let mut w = World::new(2);
    let mut card = funded_card(2, 1_000);
    let (s, init) = w.create(&record(2));
    let (s, cmds) = s.authenticate(&mut w.ctx(), &relay(&mut card, &init), None).unwrap();
    let (s, outcome) = s.offer(&mut w.ctx(), &relay_all(&mut card, &cmds)).unwrap();
    assert!(matches!(outcome, OfferOutcome::Insufficient { balance, amount }
        if balance.amount_minor() == 1_000 && amount.amount_minor() == 11_360));
    assert_eq!(s.phase(), Phase::Voided);
    assert!(s.offer_made().is_none(), "no offer, no DEBIT");
    assert_eq!(balance_of(&mut card), 1_000);
}

#[test]
fn steps_out_of_order_are_refused() {
    let mut w = World::new(3);
    let mut card = funded_card(3, 50_000);
    let (s, init) = w.create(&record(3));
    let answer = relay(&mut card, &init);
    // offer before authenticate
    let err = s.clone().offer(&mut w.ctx(), &[answer.clone(), answer.clone()]).unwrap_err();
    assert!(matches!(err, StepError::OutOfOrder { step: "offer", phase: Phase::Authenticating, .. }));
    // complete before offer
    let err = s.clone().complete(&mut w.ctx(), std::slice::from_ref(&answer)).unwrap_err();
    assert!(matches!(err, StepError::OutOfOrder { step: "complete", .. }));
    // recovery before any DEBIT exists
    assert!(matches!(s.clone().begin_recovery(&mut w.ctx()), Err(StepError::OutOfOrder { step: "recover", .. })));
    // authenticate twice: the second is out of order
    let (s, _) = s.authenticate(&mut w.ctx(), &answer, None).unwrap();
    assert!(matches!(s.authenticate(&mut w.ctx(), &answer, None), Err(StepError::OutOfOrder { .. })));
}

#[test]
fn a_replayed_debit_answer_cannot_complete_twice() {
    let mut w = World::new(4);
    let mut card = funded_card(4, 50_000);
    let (s, _, cmds) = to_offer(&mut w, &mut card, 4);
    let answer = relay_all(&mut card, &cmds);
    let (done, _) = s.clone().complete(&mut w.ctx(), &answer).unwrap();
    assert!(matches!(done.complete(&mut w.ctx(), &answer), Err(StepError::OutOfOrder { phase: Phase::Completed, .. })));
    // The same sealed DEBIT relayed again: the card answers the first result
    // (applied at most once) and the balance moves once.
    let again = relay(&mut card, cmds.last().unwrap());
    assert_ne!(again.sw().raw(), 0x9000, "a replayed wrapped command breaks the MAC chain");
    assert_eq!(balance_of(&mut card), 50_000 - 11_360);
}

#[test]
fn a_tampered_card_answer_is_refused_and_recovery_settles_it() {
    let mut w = World::new(5);
    let mut card = funded_card(5, 50_000);
    let (s, _, cmds) = to_offer(&mut w, &mut card, 5);
    let mut answers = relay_all(&mut card, &cmds);
    let mut bytes = answers[1].to_bytes();
    bytes[3] ^= 0x01;
    answers[1] = ResponseApdu::parse(&bytes).unwrap();
    assert!(matches!(s.clone().complete(&mut w.ctx(), &answers), Err(StepError::Security(_))));
    // The settlement stays offered: the stored copy is unchanged. Recovery
    // asks the card in a new session; the card did debit, so it completes.
    let (r, init) = s.begin_recovery(&mut w.ctx()).unwrap();
    let (r, cmds) = r.recovery_authenticate(&mut w.ctx(), &relay(&mut card, &init), None).unwrap();
    assert_eq!(cmds.len(), 3, "EXTERNAL AUTHENTICATE, READ LOG (uncollected) and TRANSACTION STATUS");
    let (r, resolution) = r.resolve(&mut w.ctx(), &relay_all(&mut card, &cmds)).unwrap();
    assert!(matches!(resolution, Resolution::Completed { .. }));
    assert_eq!(r.phase(), Phase::Completed);
    assert_eq!(balance_of(&mut card), 50_000 - 11_360, "debited exactly once");
}

#[test]
fn a_debit_that_never_reached_the_card_is_voided_and_can_never_apply_later() {
    let mut w = World::new(6);
    let mut card = funded_card(6, 50_000);
    let (s, _, cmds) = to_offer(&mut w, &mut card, 6);
    let debit = cmds.last().unwrap().clone();
    // The wallet crashed before relaying DEBIT. Recovery opens a new session…
    let (r, init) = s.begin_recovery(&mut w.ctx()).unwrap();
    let (r, cmds) = r.recovery_authenticate(&mut w.ctx(), &relay(&mut card, &init), None).unwrap();
    let (r, resolution) = r.resolve(&mut w.ctx(), &relay_all(&mut card, &cmds)).unwrap();
    let Resolution::NeedsBalance { command } = resolution else { panic!("{resolution:?}") };
    assert_eq!(r.phase(), Phase::RecoveringBalance);
    let (r, resolution) = r.resolve_balance(&mut w.ctx(), &relay(&mut card, &command)).unwrap();
    assert_eq!(resolution, Resolution::Voided);
    assert_eq!(r.phase(), Phase::Voided);
    // …which ended the old one: the stale sealed DEBIT is refused for good.
    kessai_card::terminal::Terminal::select(&mut card).unwrap();
    let late = relay(&mut card, &debit);
    assert_ne!(late.sw().raw(), 0x9000);
    assert_eq!(balance_of(&mut card), 50_000);
}

#[test]
fn a_lost_answer_is_recovered_as_completed_exactly_once() {
    let mut w = World::new(7);
    let mut card = funded_card(7, 50_000);
    let (s, _, cmds) = to_offer(&mut w, &mut card, 7);
    let _lost = relay_all(&mut card, &cmds); // the card debited; the answers never arrived
    let (r, init) = s.begin_recovery(&mut w.ctx()).unwrap();
    // An interrupted recovery may start over.
    let (r, _abandoned) = r.recovery_authenticate(&mut w.ctx(), &relay(&mut card, &init), None).unwrap();
    let (r, init) = r.begin_recovery(&mut w.ctx()).unwrap();
    let (r, cmds) = r.recovery_authenticate(&mut w.ctx(), &relay(&mut card, &init), None).unwrap();
    let (r, resolution) = r.resolve(&mut w.ctx(), &relay_all(&mut card, &cmds)).unwrap();
    let Resolution::Completed { completion: token } = resolution else { panic!() };
    completion::verify(&token, &w.center_keys, &w.clock).unwrap();
    assert_eq!(r.completion().map(|c| c.card_counter), Some(2));
    assert_eq!(balance_of(&mut card), 50_000 - 11_360);
    assert!(matches!(r.begin_recovery(&mut w.ctx()), Err(StepError::OutOfOrder { .. })));
}

#[test]
fn the_wrong_card_is_refused() {
    let mut w = World::new(8);
    let mut other = funded_card(9, 50_000);
    let (s, init) = w.create(&record(8));
    // The wallet relays to card 9 while the bill was opened for card 8.
    let err = s.authenticate(&mut w.ctx(), &relay(&mut other, &init), None).unwrap_err();
    assert!(matches!(err, StepError::Security(SecurityError::Channel(_) | SecurityError::WrongCard { .. })), "{err}");
}

/// M4: a card that is not registered, blocked, lost, in another currency
/// or too small for the bill is opened like any other and refused only
/// after it proved itself; only the center's own limit is told at once.
#[test]
fn cards_that_may_not_pay_are_refused_only_after_they_proved_themselves() {
    use kessai_core::Currency;
    let mut w = World::new(10);
    let mut card = funded_card(10, 50_000);
    let refusals: [(&str, Option<kessai_center::purchase::CardRecord>); 5] = [
        ("not registered", None),
        ("blocked", Some(kessai_center::purchase::CardRecord { status: CardRegistryStatus::Blocked, ..record(10) })),
        ("lost", Some(kessai_center::purchase::CardRecord { status: CardRegistryStatus::Lost, ..record(10) })),
        ("in dollars", Some(kessai_center::purchase::CardRecord { currency: Currency::USD, ..record(10) })),
        ("too small", Some(kessai_center::purchase::CardRecord { max_balance_minor: 10_000, ..record(10) })),
    ];
    for (what, registered) in refusals {
        let (s, init) = w.create(&record(10));
        let (s, _) = s.authenticate(&mut w.ctx(), &relay(&mut card, &init), None).unwrap();
        let err = s.admit(registered.as_ref()).unwrap_err();
        let expected = match what {
            "not registered" => matches!(err, StepError::UnknownCard(_)),
            "blocked" | "lost" => matches!(err, StepError::CardNotActive(_)),
            "in dollars" => matches!(err, StepError::CurrencyMismatch { .. }),
            _ => matches!(err, StepError::AmountOverLimit { .. }),
        };
        assert!(expected, "{what}: {err}");
    }
    let (s, init) = w.create(&record(10));
    let (s, _) = s.authenticate(&mut w.ctx(), &relay(&mut card, &init), None).unwrap();
    s.admit(Some(&record(10))).unwrap();
    // Another card's record does not admit this one.
    assert!(matches!(s.admit(Some(&record(11))), Err(StepError::UnknownCard(_))));
    // Over the center's own limit: refused at once, whatever the card.
    let (_, verified) = w.bill();
    let input = kessai_center::purchase::CreateInput {
        bill: &verified,
        registered_name: kessai_core::messages::DisplayText::parse("x").unwrap(),
        card_id: record(10).id,
        key_version: record(10).key_version,
        profile: kessai_core::profile::Profile::Offer,
        max_amount_minor: 10_000,
    };
    let err = kessai_center::purchase::Settlement::create(&mut w.ctx(), input).unwrap_err();
    assert!(matches!(err, StepError::AmountOverLimit { .. }), "{err}");
}

#[test]
fn cancel_voids_only_before_the_debit_exists() {
    let mut w = World::new(11);
    let mut card = funded_card(11, 50_000);
    let (s, init) = w.create(&record(11));
    let (s, _) = s.authenticate(&mut w.ctx(), &relay(&mut card, &init), None).unwrap();
    let voided = s.cancel("cardholder declined").unwrap();
    assert_eq!(voided.phase(), Phase::Voided);
    let (s, _, _) = to_offer(&mut w, &mut card, 11);
    assert!(matches!(s.cancel("declined at consent"), Err(StepError::OutOfOrder { step: "cancel", .. })));
}

#[test]
fn sealed_state_is_bound_to_its_settlement() {
    let mut w = World::new(12);
    let mut card = funded_card(12, 50_000);
    let (a, init_a) = w.create(&record(12));
    let (mut b, _) = w.create(&record(12));
    // Moving A's session state into B's row gets nothing.
    let mut moved = serde_json::to_value(&b).unwrap();
    moved["scp"] = serde_json::to_value(&a).unwrap()["scp"].clone();
    b = serde_json::from_value(moved).unwrap();
    let err = b.authenticate(&mut w.ctx(), &relay(&mut card, &init_a), None).unwrap_err();
    assert!(matches!(err, StepError::Security(SecurityError::BadSealedState)));
}

#[test]
fn only_a_lost_card_past_the_deadline_voids_without_the_cards_answer() {
    use kessai_center::purchase::CardRegistryStatus;
    use kessai_core::time::Timestamp;
    let mut w = World::new(13);
    let mut card = funded_card(13, 50_000);
    let (s, _, _) = to_offer(&mut w, &mut card, 13);
    let late = Timestamp::from_unix_s(s.deadline.unix_s() + 1);
    let active = record(13);
    assert!(matches!(s.clone().void_lost_card(&active, late, "x"), Err(StepError::CardNotLost(_))));
    let mut lost = record(13);
    lost.status = CardRegistryStatus::Lost;
    assert!(matches!(s.clone().void_lost_card(&lost, s.deadline, "x"), Err(StepError::BeforeDeadline { .. })));
    let voided = s.void_lost_card(&lost, late, "reported stolen on 2026-11-21").unwrap();
    assert_eq!(voided.phase(), Phase::Voided);
    assert!(voided.outcome().unwrap().1.contains("reported stolen"));
}
