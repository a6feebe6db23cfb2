//! What the test modules share: vector files, money, a seeded generator.

use std::path::PathBuf;

use kessai_bank::{Credit, Date, Reference};
use kessai_core::{Currency, Money};

pub fn vector_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors").join(name)
}

pub fn vector(name: &str) -> Vec<u8> {
    std::fs::read(vector_path(name)).unwrap_or_else(|e| panic!("reading tests/vectors/{name}: {e}"))
}

pub fn money(minor: u64, currency: Currency) -> Money {
    Money::new(minor, currency).unwrap()
}

pub fn date(text: &str) -> Date {
    Date::parse(text).unwrap()
}

pub fn rf(text: &str) -> Option<Reference> {
    Some(Reference::parse(text).unwrap())
}

/// A credit with every optional part empty, for struct-update syntax.
pub fn credit(entry_key: &str, booked_on: &str, amount: Money) -> Credit {
    Credit {
        entry_key: entry_key.into(),
        booked_on: booked_on.into(),
        amount,
        reference: None,
        remitter: None,
        remitter_code: None,
        remittance: None,
        reversal: false,
    }
}

/// SplitMix64: a small seeded generator, so every run (and every failure)
/// replays from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(u64::try_from(len.max(1)).unwrap())).unwrap()
    }

    pub fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    /// `len` characters drawn from `alphabet`.
    pub fn text(&mut self, alphabet: &[char], len: usize) -> String {
        (0..len).map(|_| *self.pick(alphabet)).collect()
    }

    /// A day between 2019-05-01 and 2030-12-28.
    pub fn date(&mut self) -> Date {
        loop {
            let year = 2019 + u16::try_from(self.below(12)).unwrap();
            let month = 1 + u8::try_from(self.below(12)).unwrap();
            let day = 1 + u8::try_from(self.below(28)).unwrap();
            if let Some(d) = Date::new(year, month, day).filter(|d| *d >= date("2019-05-01")) {
                return d;
            }
        }
    }
}
