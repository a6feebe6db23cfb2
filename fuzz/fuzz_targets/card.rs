//! The card's command processing. The input is a run of APDUs, each
//! prefixed with its length (one byte). In the first mode the card gets
//! them as they are (plain commands, broken secure ones); in the second a
//! terminal holding the card's keys opens a secure session and wraps each
//! (so the card's secure command handling sees arbitrary commands that
//! passed the MAC). The card must answer every one without a panic, and
//! its balance never passes its maximum.
#![no_main]

use kessai_card::terminal::Terminal;
use kessai_card::transport::{InProcessReader, Reader};
use kessai_card::{Card, CardId, Currency, KeySource, MemoryStorage, Personalization, personalize, public_info};
use kessai_scp03::diversify::{MasterKeys, diversify};
use kessai_scp03::{Aes128Key, CommandApdu, KeyVersion};
use libfuzzer_sys::fuzz_target;

const CARD_ID: [u8; 8] = *b"FUZZCARD";
const MAX_BALANCE: u64 = 100_000;

fn masters() -> MasterKeys {
    MasterKeys { enc: Aes128Key::new([1; 16]), mac: Aes128Key::new([2; 16]), dek: Aes128Key::new([3; 16]) }
}

fn chunks(mut data: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (&len, rest) = data.split_first()?;
        let take = usize::from(len).min(rest.len());
        let (chunk, rest) = rest.split_at(take);
        data = rest;
        Some(chunk)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, commands)) = data.split_first() else { return };
    let version = KeyVersion::new(1).expect("key version 1");
    let p = Personalization {
        card_id: CardId(CARD_ID),
        keys: KeySource::Diversified { master: masters(), version },
        currency: Currency::new("JPY").expect("JPY"),
        max_balance_minor: MAX_BALANCE,
    };
    let image = personalize(&p).expect("personalize");
    let card = Card::open(MemoryStorage::new(image.to_vec())).expect("open");
    let mut terminal = Terminal::new(InProcessReader::new(card));
    if mode % 2 == 0 {
        for apdu in chunks(commands) {
            let answer = terminal.reader_mut().transmit(apdu).expect("the card always answers");
            assert!(answer.len() >= 2, "every answer ends with a status word");
        }
    } else {
        let _ = terminal.select();
        let keys = diversify(&masters(), &CARD_ID, version);
        let mut session = terminal.open_session(keys.clone(), [9; 8]).ok();
        for apdu in chunks(commands) {
            let Ok(command) = CommandApdu::parse(apdu) else { continue };
            let Some(open) = session.take() else { break };
            session = terminal.secure(open, &command).ok().map(|(s, _)| s);
            if session.is_none() {
                // The card closed the session (an error): open another.
                let _ = terminal.select();
                session = terminal.open_session(keys.clone(), [9; 8]).ok();
            }
        }
    }
    let image = terminal.reader_mut().card().storage().image().to_vec();
    let info = public_info(&image).expect("the image stays readable");
    assert!(info.balance_minor <= MAX_BALANCE, "balance {} past the maximum", info.balance_minor);
});
