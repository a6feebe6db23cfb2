//! The card's log is never dropped uncollected (#20): the center reads the
//! oldest records it has not collected (READ LOG `FF`), says what it holds
//! (LOG COLLECTED), and a transfer that would push an uncollected record
//! out of a full log is refused with the card's own status word, changing
//! nothing, until the center collected it.

use kessai_card::limits::LOG_CAPACITY;
use kessai_card::protocol::{
    SW_LOG_FULL, credit_command, debit_command, log_collected_command, parse_log, read_log_command,
    read_uncollected_command,
};
use kessai_scp03::StatusWord;

use crate::{collected, credit, request, session, sw, terminal};

#[test]
fn a_full_log_of_uncollected_records_refuses_a_transfer_until_the_center_collects_them() {
    let mut t = terminal();
    let mut s = session(&mut t);
    let capacity = u8::try_from(LOG_CAPACITY).unwrap();
    for n in 1..=capacity {
        s = credit(&mut t, s, n, 100);
    }
    let before = t.reader_mut().card().state().public_info();
    // The 65th transfer would drop record 1, never collected: refused, and
    // nothing changes (balance, counter, log).
    for plain in [credit_command(&request(200, 100)), debit_command(&request(201, 100))] {
        let (next, r) = t.secure(s, &plain).unwrap();
        s = next;
        assert_eq!(sw(&r), SW_LOG_FULL, "refused with the card's own word");
    }
    assert_eq!(t.reader_mut().card().state().public_info(), before);
    assert_eq!(t.reader_mut().card().state().log().count(), LOG_CAPACITY);
    // The center reads the oldest uncollected records, oldest first, and
    // says it holds them: now exactly those may go.
    let (next, page) = t.secure(s, &read_uncollected_command(3)).unwrap();
    s = next;
    let records = parse_log(page.data()).unwrap();
    assert_eq!(records.iter().map(|r| r.counter).collect::<Vec<_>>(), [1, 2, 3], "oldest first");
    s = collected(&mut t, s, 2);
    s = credit(&mut t, s, 202, 100);
    s = credit(&mut t, s, 203, 100);
    let (next, r) = t.secure(s, &credit_command(&request(204, 100))).unwrap();
    s = next;
    assert_eq!(sw(&r), SW_LOG_FULL, "record 3 was not collected");
    let oldest = t.reader_mut().card().state().log().next().unwrap().counter;
    assert_eq!(oldest, 3, "only the collected records 1 and 2 were dropped");
    let (next, page) = t.secure(s, &read_uncollected_command(3)).unwrap();
    s = next;
    let counters: Vec<u32> = parse_log(page.data()).unwrap().iter().map(|r| r.counter).collect();
    assert_eq!(counters, [3, 4, 5]);
    let (_, page) = t.secure(s, &read_log_command(0, 1)).unwrap();
    assert_eq!(parse_log(page.data()).unwrap()[0].counter, 66, "the newest, as before");
}

#[test]
fn log_collected_never_goes_back_nor_past_the_counter() {
    let mut t = terminal();
    let mut s = session(&mut t);
    for n in 1..=5 {
        s = credit(&mut t, s, n, 100);
    }
    s = collected(&mut t, s, 4);
    let (next, r) = t.secure(s, &log_collected_command(2)).unwrap();
    s = next;
    assert_eq!(r.sw(), StatusWord::Success);
    assert_eq!(r.data(), 4u32.to_be_bytes(), "the mark stays at 4");
    let (next, r) = t.secure(s, &log_collected_command(6)).unwrap();
    s = next;
    assert_eq!(r.sw(), StatusWord::WrongData, "beyond the card's counter");
    let (_, page) = t.secure(s, &read_uncollected_command(3)).unwrap();
    assert_eq!(parse_log(page.data()).unwrap().iter().map(|r| r.counter).collect::<Vec<_>>(), [5]);
}

#[test]
fn the_log_is_read_and_collected_only_inside_a_secure_session() {
    let mut t = terminal();
    t.select().unwrap();
    for plain in [read_uncollected_command(3), log_collected_command(0)] {
        let answer = t.transmit(&plain).unwrap();
        assert_eq!(sw(&answer), 0x6982, "{plain:?}");
    }
}

/// LOG COLLECTED costs no write of its own: it is written with the next
/// transfer, atomically. A power cut before that loses only the mark, and
/// the card then keeps more than it needs, never less.
#[test]
fn log_collected_is_written_with_the_next_transfer() {
    let mut t = terminal();
    let mut s = session(&mut t);
    for n in 1..=3 {
        s = credit(&mut t, s, n, 100);
    }
    s = collected(&mut t, s, 2);
    let cut = t.reader_mut().card().storage().after_power_cut(false);
    let card = kessai_card::Card::open(cut).unwrap();
    assert_eq!(card.state().log_collected(), 0, "not written by itself");
    let _ = credit(&mut t, s, 4, 100);
    let cut = t.reader_mut().card().storage().after_power_cut(false);
    let card = kessai_card::Card::open(cut).unwrap();
    assert_eq!((card.state().log_collected(), card.state().public_info().counter), (2, 4), "written with it");
}
