//! The card's log, read for the cardholder through a secure session the
//! center opens: every page sealed, the records exactly the card's.

use kessai_center::service::parse_answers;
use kessai_center::statement::StatementPhase;
use kessai_scp03::CommandApdu;

use crate::service::{bill_token, register_card, setup};
use crate::world::{card_id, funded_card, relay};

pub(crate) fn relay_all(
    card: &mut kessai_card::terminal::Terminal<crate::world::CardReader>,
    apdus: &[String],
) -> Vec<String> {
    apdus
        .iter()
        .map(|h| {
            let cmd = CommandApdu::parse(&hex::decode(h).unwrap()).unwrap();
            hex::encode(relay(card, &cmd).to_bytes())
        })
        .collect()
}

#[tokio::test]
async fn the_statement_is_the_cards_own_log_newest_first_over_several_pages() {
    let mut s = setup().await;
    register_card(&s, 1, 50_000).await;
    let mut card = funded_card(1, 50_000);
    // Four purchases after the funding credit: five records, two pages.
    for _ in 0..4 {
        kessai_card::terminal::Terminal::select(&mut card).unwrap();
        let token = bill_token(&mut s);
        let r = s.center.create(crate::world::offer_request(&mut card, &token, card_id(1)), None).await.unwrap();
        let id = r.settlement_id.clone();
        let r = s
            .center
            .offer(&id, parse_answers(&relay_all(&mut card, &r.apdus)).unwrap(), Default::default())
            .await
            .unwrap();
        s.center
            .complete(&id, parse_answers(&relay_all(&mut card, &r.apdus)).unwrap(), Default::default())
            .await
            .unwrap();
    }
    kessai_card::terminal::Terminal::select(&mut card).unwrap();
    let r = s.center.statement_create(card_id(1)).await.unwrap();
    assert_eq!(r.phase, StatementPhase::Authenticating);
    let id = r.statement_id.clone();
    let r = s
        .center
        .statement_authenticate(&id, parse_answers(&relay_all(&mut card, &r.apdus)).unwrap(), None)
        .await
        .unwrap();
    assert_eq!(r.apdus.len(), 2, "EXTERNAL AUTHENTICATE and the first sealed READ LOG");
    let mut r =
        s.center.statement_read(&id, parse_answers(&relay_all(&mut card, &r.apdus)).unwrap(), None).await.unwrap();
    let mut pages = 1;
    while r.phase != StatementPhase::Done {
        r = s.center.statement_read(&id, parse_answers(&relay_all(&mut card, &r.apdus)).unwrap(), None).await.unwrap();
        pages += 1;
    }
    assert_eq!(pages, 2);
    let entries = r.entries.unwrap();
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[0].kind, kessai_api::LogKind::Debit);
    assert_eq!(entries[0].amount_minor, 11_360);
    assert_eq!(entries[0].balance_after_minor, 50_000 - 4 * 11_360);
    assert_eq!(entries[4].kind, kessai_api::LogKind::Credit);
    assert_eq!(entries[4].amount_minor, 50_000);
    let counters: Vec<u32> = entries.iter().map(|e| e.counter).collect();
    assert_eq!(counters, vec![5, 4, 3, 2, 1], "newest first, one per transaction");
    // Reading moved no value.
    assert_eq!(crate::world::balance_of(&mut card), 50_000 - 4 * 11_360);
    // A stale or unknown statement is refused.
    assert!(s.center.statement_read("stm_nope", vec![], None).await.is_err());
}

#[tokio::test]
async fn a_tampered_page_is_refused() {
    let s = setup().await;
    register_card(&s, 2, 50_000).await;
    let mut card = funded_card(2, 50_000);
    let r = s.center.statement_create(card_id(2)).await.unwrap();
    let id = r.statement_id.clone();
    let r = s
        .center
        .statement_authenticate(&id, parse_answers(&relay_all(&mut card, &r.apdus)).unwrap(), None)
        .await
        .unwrap();
    let mut answers = relay_all(&mut card, &r.apdus);
    let mut page = hex::decode(&answers[1]).unwrap();
    page[2] ^= 0x01;
    answers[1] = hex::encode(page);
    assert!(s.center.statement_read(&id, parse_answers(&answers).unwrap(), None).await.is_err());
}

/// L1: a statement holds the card's whole log; it is purged a day after it
/// was opened (the holder read it then), and its id is unknown afterwards.
/// Younger ones stay.
#[tokio::test]
async fn statements_are_purged_after_their_retention() {
    let s = setup().await;
    register_card(&s, 2, 10_000).await;
    let mut card = funded_card(2, 10_000);
    let old = s.center.statement_create(card_id(2)).await.unwrap();
    let now = s.center.clock.now();
    assert_eq!(s.center.db.purge_statements(now, 10).await.unwrap(), 0, "opened now: not before now");
    let later = kessai_core::time::Timestamp::from_unix_s(now.unix_s() + kessai_center::limits::DAY_S + 1);
    assert_eq!(s.center.db.purge_statements(later, 10).await.unwrap(), 1);
    let gone = s
        .center
        .statement_authenticate(&old.statement_id, parse_answers(&relay_all(&mut card, &old.apdus)).unwrap(), None)
        .await
        .unwrap_err();
    assert!(matches!(gone, kessai_center::service::CenterError::UnknownStatement(_)), "{gone:?}");
}

/// M4: a statement opens for any card id alike; an unlisted card, and one
/// reported lost, are refused only once they proved themselves.
#[tokio::test]
async fn unlisted_and_lost_cards_are_refused_only_after_their_proof() {
    use kessai_center::purchase::StepError;
    use kessai_center::service::CenterError;
    let s = setup().await;
    register_card(&s, 2, 50_000).await;
    let listed = s.center.statement_create(card_id(2)).await.unwrap();
    let unlisted = s.center.statement_create(card_id(9)).await.unwrap();
    assert_eq!((listed.phase, listed.apdus.len()), (unlisted.phase, unlisted.apdus.len()));
    assert_eq!(listed.apdus[0][..10], unlisted.apdus[0][..10], "the same INITIALIZE UPDATE header");
    let mut stranger = funded_card(9, 50_000);
    let answers = parse_answers(&relay_all(&mut stranger, &unlisted.apdus)).unwrap();
    let refused = s.center.statement_authenticate(&unlisted.statement_id, answers, None).await;
    assert!(matches!(refused, Err(CenterError::Step(StepError::UnknownCard(_)))), "{refused:?}");

    crate::world::report_lost(&s.center.db, card_id(2)).await;
    let mut card = funded_card(2, 50_000);
    let lost = s.center.statement_create(card_id(2)).await.unwrap();
    let answers = parse_answers(&relay_all(&mut card, &lost.apdus)).unwrap();
    let refused = s.center.statement_authenticate(&lost.statement_id, answers, None).await;
    assert!(matches!(refused, Err(CenterError::Step(StepError::CardNotActive(_)))), "{refused:?}");
}
