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

/// The center's account as the payout tests name it: an IBAN, a BIC and a
/// Zengin contract, so every writer can pay from it.
pub fn debtor() -> kessai_bank::payout::Debtor {
    kessai_bank::payout::Debtor {
        name: "Kessai Center".into(),
        iban: Some("DE89370400440532013000".into()),
        bic: Some("COBADEFFXXX".into()),
        zengin: Some(zengin_debtor()),
    }
}

pub fn zengin_debtor() -> kessai_bank::payout::ZenginDebtor {
    kessai_bank::payout::ZenginDebtor {
        requester_code: 1_234_567_890,
        requester_name: "ｹﾂｻｲｾﾝﾀ-".into(),
        bank_code: 5,
        bank_name: "ｷﾂｻｲｷﾞﾝｺｳ".into(),
        branch_code: 1,
        branch_name: "ﾎﾝﾃﾝ".into(),
        deposit_type: 1,
        number: 7_654_321,
    }
}

/// A line paying `yen` to a Zengin account.
pub fn zengin_line(id: &str, yen: u64) -> kessai_bank::payout::PayoutLine {
    kessai_bank::payout::PayoutLine {
        end_to_end_id: id.into(),
        amount: money(yen, Currency::JPY),
        payee: "zengin:0001-101-1-1234567:ﾔﾏﾀﾞ ｼﾖｳﾃﾝ".parse().unwrap(),
        remittance: "Sales May".into(),
    }
}

/// A line paying `cents` euro to an IBAN account.
pub fn iban_line(id: &str, cents: u64) -> kessai_bank::payout::PayoutLine {
    kessai_bank::payout::PayoutLine {
        end_to_end_id: id.into(),
        amount: money(cents, Currency::parse("EUR").unwrap()),
        payee: "iban:FR14 2004 1010 0505 0001 3M02 606:BNPAFRPP:Boulangerie d'Ici".parse().unwrap(),
        remittance: "Sales May".into(),
    }
}

pub const PAYOUT_CREATED: kessai_core::time::Timestamp = kessai_core::time::Timestamp::from_unix_s(1_777_600_000);

/// A valid batch of `lines`, executed on 2026-05-07.
pub fn batch(lines: Vec<kessai_bank::payout::PayoutLine>) -> kessai_bank::PayoutBatch {
    kessai_bank::PayoutBatch::new("PAYOUT-2026-05-07", PAYOUT_CREATED, date("2026-05-07"), debtor(), lines).unwrap()
}
