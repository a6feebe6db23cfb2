//! A small world: a mall, the center, their keys, a clock and a seeded
//! randomness source, and one token of every kind.

use kessai_core::ids::PartyId;
use kessai_core::keys::{KeyDirectory, SigningKey, Validity};
use kessai_core::messages::{bill, completion, offer, receipt, refund, value_update};
use kessai_core::random::SeededRandom;
use kessai_core::samples;
use kessai_core::time::{FixedClock, Timestamp};

pub const NOW: Timestamp = Timestamp::from_unix_s(1_795_000_000);

pub struct World {
    pub rng: SeededRandom,
    pub clock: FixedClock,
    pub mall_key: SigningKey,
    pub center_key: SigningKey,
    /// What the center trusts: the stores' keys.
    pub store_keys: KeyDirectory,
    /// What stores and wallets trust: the center's keys.
    pub center_keys: KeyDirectory,
}

impl World {
    pub fn new(seed: u64) -> World {
        let mut rng = SeededRandom::new(seed);
        let mall_key = SigningKey::generate(&mut rng);
        let center_key = SigningKey::generate(&mut rng);
        let mut store_keys = KeyDirectory::new();
        store_keys.insert(party(samples::MALL), mall_key.public(), Validity::always()).unwrap();
        let mut center_keys = KeyDirectory::new();
        center_keys.insert(party(samples::CENTER), center_key.public(), Validity::always()).unwrap();
        World { rng, clock: FixedClock::new(NOW), mall_key, center_key, store_keys, center_keys }
    }

    /// One token of each kind, in protocol order.
    pub fn tokens(&mut self) -> Tokens {
        let (c, b) = samples::bill(&mut self.rng, NOW).unwrap();
        let bill = bill::sign(&c, &b, &self.mall_key).unwrap();
        let (c, o) = samples::offer(&mut self.rng, NOW, &bill).unwrap();
        let offer = offer::sign(&c, &o, &self.center_key).unwrap();
        let (c, done) = samples::completion(&mut self.rng, NOW, &o).unwrap();
        let completion = completion::sign(&c, &done, &self.center_key).unwrap();
        let (c, r) = samples::receipt(&mut self.rng, NOW, &done, &completion).unwrap();
        let receipt = receipt::sign(&c, &r, &self.mall_key).unwrap();
        let (c, v) = samples::value_update(&mut self.rng, NOW).unwrap();
        let value_update = value_update::sign(&c, &v, &self.center_key).unwrap();
        let (c, r) = samples::refund(&mut self.rng, NOW).unwrap();
        let refund = refund::sign(&c, &r, &self.mall_key).unwrap();
        Tokens { bill, offer, completion, receipt, value_update, refund }
    }
}

pub struct Tokens {
    pub bill: String,
    pub offer: String,
    pub completion: String,
    pub receipt: String,
    pub value_update: String,
    pub refund: String,
}

impl Tokens {
    /// (kind name, token) for loops over every kind.
    pub fn all(&self) -> [(&'static str, &str); 6] {
        [
            ("bill", &self.bill),
            ("offer", &self.offer),
            ("completion", &self.completion),
            ("receipt", &self.receipt),
            ("value_update", &self.value_update),
            ("refund", &self.refund),
        ]
    }
}

pub fn party(s: &str) -> PartyId {
    PartyId::parse(s).unwrap()
}

/// Verifies `token` as the kind named, with the directory its checker uses.
pub fn verify_as(world: &World, kind: &str, token: &str) -> Result<(), kessai_core::jws::JwsError> {
    let (stores, center, clock) = (&world.store_keys, &world.center_keys, &world.clock);
    match kind {
        "bill" => bill::verify(token, stores, clock, &kessai_core::ids::PartyId::parse("center").unwrap()).map(|_| ()),
        "offer" => offer::verify(token, center, clock).map(|_| ()),
        "completion" => completion::verify(token, center, clock).map(|_| ()),
        "receipt" => receipt::verify(token, stores, clock).map(|_| ()),
        "value_update" => value_update::verify(token, center, clock).map(|_| ()),
        "refund" => {
            refund::verify(token, stores, clock, &kessai_core::ids::PartyId::parse("center").unwrap()).map(|_| ())
        }
        other => panic!("no kind {other}"),
    }
}

/// A directory that trusts both the mall and the center, for the
/// cross-kind tests where the only difference must be `typ`.
pub fn everyone(world: &World) -> KeyDirectory {
    let mut all = world.store_keys.clone();
    all.insert(party(samples::CENTER), world.center_key.public(), Validity::always()).unwrap();
    all
}
