//! Bank deposit tokens on the card (#21): STORE TOKEN, LIST TOKENS and
//! REDEEM TOKEN at level 33, each one commit with its log record; the card
//! refuses an expired token by the command's time, redeems a token once,
//! and holds at most its table's capacity; a power cut at any write leaves
//! the token stored or not, redeemed or not.

use kessai_card::protocol::TransferKind;
use kessai_card::protocol::TxId;
use kessai_card::tokens::{TOKEN_CAPACITY, list_tokens_command, parse_list, redeem_token_command, store_token_command};
use kessai_scp03::HostSession;

use crate::{InProcess, session, sw, terminal};

const NOW: u64 = 1_790_000_000;
const EXPIRES: u64 = NOW + 90 * 86_400;

/// A sealed token as the card sees it: its clear header and 64 opaque
/// bytes (the card never opens the rest).
fn sealed(id: u8, amount: u64, expires: u64, currency: &[u8; 3]) -> Vec<u8> {
    let mut out = b"KTK1".to_vec();
    out.push(1);
    out.extend_from_slice(&[id; 16]);
    out.extend_from_slice(currency);
    out.extend_from_slice(&amount.to_be_bytes());
    out.extend_from_slice(&expires.to_be_bytes());
    out.extend_from_slice(&[id ^ 0x5A; 64]);
    out
}

fn store(t: &mut InProcess, s: HostSession, token: &[u8], now: u64) -> (HostSession, u16, Vec<u8>) {
    // Each token stored under its own transaction id (its id's first byte).
    let tx = TxId([token.get(5).copied().unwrap_or(0) ^ 0x70; 16]);
    let (s, r) = t.secure(s, &store_token_command(tx, now, token)).unwrap();
    (s, sw(&r), r.data().to_vec())
}

fn redeem(t: &mut InProcess, s: HostSession, id: u8, tx: u8, now: u64) -> (HostSession, u16, Vec<u8>) {
    let (s, r) = t.secure(s, &redeem_token_command([id; 16], TxId([tx; 16]), now)).unwrap();
    (s, sw(&r), r.data().to_vec())
}

fn list(t: &mut InProcess, s: HostSession) -> (HostSession, Vec<kessai_card::tokens::ListedToken>) {
    let mut all = Vec::new();
    let mut s = s;
    loop {
        let (next, r) = t.secure(s, &list_tokens_command(all.len() as u8, 4)).unwrap();
        s = next;
        assert_eq!(sw(&r), 0x9000);
        let (total, page) = parse_list(r.data()).unwrap();
        all.extend(page);
        if all.len() >= total {
            return (s, all);
        }
    }
}

#[test]
fn a_token_is_stored_listed_and_redeemed_once_with_its_log_records() {
    let mut t = terminal();
    let s = session(&mut t);
    let s = crate::credit(&mut t, s, 1, 5_000);
    let token = sealed(1, 12_000, EXPIRES, b"JPY");
    let (s, status, answer) = store(&mut t, s, &token, NOW);
    assert_eq!(status, 0x9000);
    assert_eq!((&answer[..4], &answer[4..]), (&2u32.to_be_bytes()[..], &[1u8; 16][..]), "counter 2, the token's id");
    // Stored again (a retry): the same answer, nothing new.
    let (s, status, again) = store(&mut t, s, &token, NOW);
    assert_eq!((status, again), (0x9000, answer));
    let (s, listed) = list(&mut t, s);
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].amount_minor, listed[0].expires_unix_s, listed[0].redeemed), (12_000, EXPIRES, false));
    // Another token under the same id: refused.
    let (s, status, _) = store(&mut t, s, &sealed(1, 99, EXPIRES, b"JPY"), NOW);
    assert_eq!(status, 0x6A89);

    let (s, status, given) = redeem(&mut t, s, 1, 0x21, NOW + 10);
    assert_eq!(status, 0x9000);
    assert_eq!((&given[..4], &given[4..]), (&3u32.to_be_bytes()[..], &token[..]), "the sealed token, given up");
    // The same redemption again (its answer lost): the same answer.
    let (s, status, again) = redeem(&mut t, s, 1, 0x21, NOW + 20);
    assert_eq!((status, again), (0x9000, given));
    // Another transaction: never twice.
    let (s, status, _) = redeem(&mut t, s, 1, 0x22, NOW + 20);
    assert_eq!(status, 0x6A8D);
    // Its transaction id is used: TRANSACTION STATUS knows it, and a
    // credit under it is refused.
    let (s, r) = t.secure(s, &kessai_card::protocol::transaction_status_command(&TxId([0x21; 16]))).unwrap();
    assert_eq!((sw(&r), r.data()[0], r.data()[1]), (0x9000, 0x01, 0x04), "applied, kind token redeemed");
    let mut reuse = crate::request(0x21, 10);
    reuse.tx_id = TxId([0x21; 16]);
    let (s, r) = t.secure(s, &kessai_card::protocol::credit_command(&reuse)).unwrap();
    assert_eq!(sw(&r), 0x6A89, "a transfer under a token event's id");
    let (s, status, _) = store(&mut t, s, &token, NOW);
    assert_eq!(status, 0x6A8D, "a redeemed token is not stored again");
    let (_, listed) = list(&mut t, s);
    assert!(listed[0].redeemed && listed[0].counter == 3);

    let card = t.into_reader().into_card();
    let info = card.state().public_info();
    assert_eq!((info.balance_minor, info.counter), (5_000, 3), "tokens move no balance");
    let log: Vec<_> = card.state().log().copied().collect();
    assert_eq!(
        log.iter().map(|r| r.kind).collect::<Vec<_>>(),
        [TransferKind::Credit, TransferKind::TokenStored, TransferKind::TokenRedeemed]
    );
    assert!(
        log[1..].iter().all(|r| r.request.order_ref == [1; 16]
            && r.request.amount_minor == 12_000
            && r.balance_after_minor == 5_000)
    );
    assert_eq!(log[2].request.tx_id, TxId([0x21; 16]));
}

#[test]
fn the_card_refuses_expired_foreign_malformed_and_unknown_tokens() {
    let mut t = terminal();
    let s = session(&mut t);
    let (s, status, _) = store(&mut t, s, &sealed(2, 100, NOW, b"JPY"), NOW);
    assert_eq!(status, 0x6A8C, "expired by the command's time");
    let (s, status, _) = store(&mut t, s, &sealed(2, 100, EXPIRES, b"USD"), NOW);
    assert_eq!(status, 0x6A80, "another currency than the card's");
    let mut bad = sealed(2, 100, EXPIRES, b"JPY");
    bad[0] = b'X';
    let (s, status, _) = store(&mut t, s, &bad, NOW);
    assert_eq!(status, 0x6A80, "no sealed token");
    let (s, status, _) = store(&mut t, s, &sealed(2, 100, EXPIRES, b"JPY")[..60], NOW);
    assert_eq!(status, 0x6A80, "too short");
    let (s, status, _) = store(&mut t, s, &sealed(2, 0, EXPIRES, b"JPY"), NOW);
    assert_eq!(status, 0x6A80, "an amount of zero");
    let (s, status, _) = redeem(&mut t, s, 9, 1, NOW);
    assert_eq!(status, 0x6A88, "a token the card does not hold");
    let (s, status, _) = store(&mut t, s, &sealed(3, 100, EXPIRES, b"JPY"), NOW);
    assert_eq!(status, 0x9000);
    let (s, status, _) = redeem(&mut t, s, 3, 1, EXPIRES);
    assert_eq!(status, 0x6A8C, "expired by the time it is redeemed");
    let (s, r) = t.secure(s, &list_tokens_command(0, 5)).unwrap();
    assert_eq!(sw(&r), 0x6A86, "at most four a page");
    let (_, listed) = list(&mut t, s);
    assert_eq!(listed.iter().map(|l| (l.token_id[0], l.redeemed)).collect::<Vec<_>>(), [(3, false)]);
    // Outside a session, nothing.
    let mut plain = terminal();
    plain.select().unwrap();
    let r = plain.transmit(&store_token_command(TxId([1; 16]), NOW, &sealed(4, 1, EXPIRES, b"JPY"))).unwrap();
    assert_eq!(sw(&r), 0x6982);
    let card = t.into_reader().into_card();
    assert_eq!(card.state().tokens().len(), 1, "only the one stored");
    assert_eq!(card.state().public_info().counter, 1);
}

#[test]
fn the_table_holds_its_capacity_and_makes_room_only_from_collected_redemptions() {
    let mut t = terminal();
    let mut s = session(&mut t);
    for n in 1..=TOKEN_CAPACITY as u8 {
        let status;
        (s, status, _) = store(&mut t, s, &sealed(n, 100, EXPIRES, b"JPY"), NOW);
        assert_eq!(status, 0x9000);
    }
    let extra = sealed(0x40, 100, EXPIRES, b"JPY");
    let (s, status, _) = store(&mut t, s, &extra, NOW);
    assert_eq!(status, 0x6A84, "full");
    let (s, status, redeemed) = redeem(&mut t, s, 2, 0x99, NOW);
    assert_eq!(status, 0x9000);
    let (s, status, _) = store(&mut t, s, &extra, NOW);
    assert_eq!(status, 0x6A84, "the redemption's record is not collected: its token stays as proof");
    let counter = u32::from_be_bytes(redeemed[..4].try_into().unwrap());
    let s = crate::collected(&mut t, s, counter);
    let (s, status, _) = store(&mut t, s, &extra, NOW);
    assert_eq!(status, 0x9000, "room from the collected redemption");
    let (s, listed) = list(&mut t, s);
    assert_eq!(listed.len(), TOKEN_CAPACITY);
    assert!(!listed.iter().any(|l| l.token_id[0] == 2) && listed.iter().any(|l| l.token_id[0] == 0x40));
    // Full of tokens nobody redeemed: once expired (by the command's time),
    // one whose record the center collected makes room; 0x40's record
    // (stored after the collection) is not, so 0x40 stays.
    let late = sealed(0x41, 100, EXPIRES + 1_000, b"JPY");
    let (s, status, _) = store(&mut t, s, &late, EXPIRES);
    assert_eq!(status, 0x9000, "room from an expired, collected token");
    let (_, listed) = list(&mut t, s);
    assert_eq!(listed.len(), TOKEN_CAPACITY);
    assert!(listed.iter().any(|l| l.token_id[0] == 0x40), "not collected: kept");
    assert!(!listed.iter().any(|l| l.token_id[0] == 1), "the oldest expired one went: {listed:?}");
}

/// A power cut at every write of STORE TOKEN and of REDEEM TOKEN leaves
/// the token stored or not, redeemed or not; never half.
#[test]
fn a_power_cut_at_every_write_of_store_and_redeem_leaves_old_or_new() {
    let token = sealed(5, 700, EXPIRES, b"JPY");
    // A card with value and a full log (several pages to write).
    let mut t = terminal();
    let mut s = session(&mut t);
    for n in 1..=70u8 {
        s = crate::credit(&mut t, s, n, 100);
        s = crate::collected(&mut t, s, u32::from(n));
    }
    drop(s);
    let base = t.into_reader().into_card().into_storage().after_power_cut(false);
    let stored = crate::tearing::check_every_cut_of(&base, &store_token_command(TxId([0xE7; 16]), NOW, &token), 2);
    assert_eq!(stored.tokens.len(), 1);
    // From the stored state: every cut of its redemption.
    let mut t = crate::terminal_with(kessai_card::Card::open(base.clone()).unwrap());
    let s = session(&mut t);
    let (s, status, _) = store(&mut t, s, &token, NOW);
    assert_eq!(status, 0x9000);
    drop(s);
    let with_token = t.into_reader().into_card().into_storage().after_power_cut(false);
    let redeemed =
        crate::tearing::check_every_cut_of(&with_token, &redeem_token_command([5; 16], TxId([0xE8; 16]), NOW), 2);
    assert!(redeemed.tokens[0].is_redeemed());
}

/// A token the credit service provider sealed (`kessai_core::token`) is
/// what the card reads and gives back, byte for byte, and still opens.
#[test]
fn a_token_sealed_by_the_provider_goes_through_the_card_and_still_opens() {
    use kessai_core::random::SeededRandom;
    use kessai_core::time::Timestamp;
    use kessai_core::token::{DepositToken, TokenId, TokenKey, TokenKeyring};
    let mut rng = SeededRandom::new(21);
    let at = Timestamp::from_unix_s;
    let mut ring = TokenKeyring::new();
    ring.add(TokenKey::generate(3, (at(NOW - 10), at(NOW + 86_400), at(EXPIRES + 1)), &mut rng).unwrap()).unwrap();
    let deposit = DepositToken {
        token_id: TokenId::generate(&mut rng),
        user_name: "Hanako Yamada".into(),
        user_id: "cust-0042".into(),
        amount: kessai_core::Money::new(8_000, kessai_core::Currency::parse("JPY").unwrap()).unwrap(),
        deposited_at: at(NOW - 5),
        expires_at: at(EXPIRES),
        bank_id: "0001".into(),
        bank_account: "0001-100-1-1234567".into(),
        card_company_id: "kessai-credit".into(),
        card_ref: "last4:4242".into(),
    };
    let sealed = ring.seal(&deposit, at(NOW), &mut rng).unwrap();
    let mut t = terminal();
    let s = session(&mut t);
    let (s, status, _) = store(&mut t, s, &sealed, NOW);
    assert_eq!(status, 0x9000);
    let (s, listed) = list(&mut t, s);
    assert_eq!((listed[0].token_id, listed[0].amount_minor, listed[0].key_version), (deposit.token_id.0, 8_000, 3));
    let (s, status, given) = {
        let (s, r) = t.secure(s, &redeem_token_command(deposit.token_id.0, TxId([9; 16]), NOW + 60)).unwrap();
        (s, sw(&r), r.data().to_vec())
    };
    drop(s);
    assert_eq!(status, 0x9000);
    assert_eq!(&given[4..], &sealed[..]);
    assert_eq!(ring.open(&given[4..], at(NOW + 60)).unwrap(), deposit);
}
