#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! kessai-card integration tests.

mod bench;
mod external;
mod image;
mod log;
mod negative;
mod rekey;
mod secure_debit;
mod sequences;
mod tearing;
mod tokens;
mod vpcd;

use kessai_card::protocol::{CardId, Currency, TransferRequest, TxId, credit_command};
use kessai_card::terminal::Terminal;
use kessai_card::transport::InProcessReader;
use kessai_card::{Card, KeySource, MemoryStorage, Personalization, personalize};
use kessai_scp03::{Aes128Key, HostSession, KeyVersion, ResponseApdu, StaticKeys, StatusWord};

/// The static keys of the test card.
pub fn keys() -> StaticKeys {
    StaticKeys {
        version: KeyVersion::new(0x01).unwrap(),
        enc: Aes128Key::new(*b"kessai-test-ENC!"),
        mac: Aes128Key::new(*b"kessai-test-MAC!"),
        dek: Aes128Key::new(*b"kessai-test-DEK!"),
    }
}

/// Maximum balance of the test card.
pub const MAX_BALANCE: u64 = 1_000_000;

/// The test card's personalization.
pub fn personalization() -> Personalization {
    Personalization {
        card_id: CardId([0x4B, 0x53, 0, 0, 0, 0, 0, 0x01]),
        keys: KeySource::Explicit(keys()),
        currency: Currency::new("JPY").unwrap(),
        max_balance_minor: MAX_BALANCE,
    }
}

/// A fresh card in memory.
pub fn new_card() -> Card<MemoryStorage> {
    Card::open(MemoryStorage::new(personalize(&personalization()).unwrap().to_vec())).unwrap()
}

/// A terminal with the card in an in-process reader.
pub type InProcess = Terminal<InProcessReader<MemoryStorage>>;

/// A terminal holding a fresh card.
pub fn terminal() -> InProcess {
    Terminal::new(InProcessReader::new(new_card()))
}

/// A terminal holding `card`.
pub fn terminal_with(card: Card<MemoryStorage>) -> InProcess {
    Terminal::new(InProcessReader::new(card))
}

/// SELECT and a level-33 session.
pub fn session(t: &mut InProcess) -> HostSession {
    t.select().unwrap();
    t.open_session(keys(), [0x11; 8]).unwrap()
}

/// A transfer request with id `n`.
pub fn request(n: u8, amount_minor: u64) -> TransferRequest {
    TransferRequest {
        tx_id: TxId([n; 16]),
        amount_minor,
        counterpart: *b"STORE-01",
        order_ref: [0xAB; 16],
        time_unix_s: 1_790_000_000,
    }
}

/// Credits `amount` (tx id `n`) and returns the session.
pub fn credit(t: &mut InProcess, s: HostSession, n: u8, amount: u64) -> HostSession {
    let (s, r) = t.secure(s, &credit_command(&request(n, amount))).unwrap();
    assert_eq!(r.sw(), StatusWord::Success, "credit {n}");
    s
}

/// LOG COLLECTED through `through` (answered 9000) and the session.
pub fn collected(t: &mut InProcess, s: HostSession, through: u32) -> HostSession {
    let (s, r) = t.secure(s, &kessai_card::protocol::log_collected_command(through)).unwrap();
    assert_eq!(r.sw(), StatusWord::Success, "log collected through {through}");
    s
}

/// A response's status word.
pub fn sw(r: &ResponseApdu) -> u16 {
    r.sw().raw()
}
