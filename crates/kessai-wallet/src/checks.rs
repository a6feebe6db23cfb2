//! What the wallet checks before it relays a DEBIT and after the center
//! and the store answer. Pure: the signatures were verified by
//! `kessai_core::messages::*::verify`; these functions tie the verified
//! messages to the bill the store handed over and the card in the reader.

use kessai_core::digest::Sha256Digest;
use kessai_core::ids::{CardId, PartyId, SettlementId};
use kessai_core::jws::{self, Verified};
use kessai_core::messages::bill::Bill;
use kessai_core::messages::completion::Completion;
use kessai_core::messages::offer::Offer;
use kessai_core::messages::receipt::Receipt;

/// How a verified message fails to match what the wallet knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Mismatch {
    #[error("it names settlement {found}, not {expected}")]
    Settlement { expected: String, found: String },
    #[error("it is for a different bill (bill hash)")]
    BillHash,
    #[error("its amount {found} differs from the bill's total {expected}")]
    Amount { expected: String, found: String },
    #[error("it names store {found}, but the bill is from {expected}")]
    Store { expected: String, found: String },
    #[error("it names member store {found:?}, but the bill names {expected:?}")]
    Member { expected: Option<String>, found: Option<String> },
    #[error("it is for card {found}, but the card in the reader is {expected}")]
    Card { expected: String, found: String },
    #[error("the sealed DEBIT is not the one it signed (debit hash)")]
    DebitHash,
    #[error("it names transaction {found}, but the offer named {expected}")]
    Transaction { expected: String, found: String },
    #[error("it answers a different completion (completion hash)")]
    CompletionHash,
    #[error("it names order {found}, but the bill is for {expected}")]
    Order { expected: String, found: String },
}

/// The bill as the store handed it over: its exact token and its content.
/// The wallet does not hold the store's keys for SIG1 (the center checks
/// it); the offer binds the center to exactly this token by its hash.
#[derive(Debug, Clone)]
pub struct HandedBill {
    token: String,
    issuer: PartyId,
    /// The center the store addressed the bill to (`aud`), if it names one.
    audience: Option<PartyId>,
    bill: Bill,
}

/// Why a handed-over bill cannot even be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the bill cannot be read: {0}")]
pub struct UnreadableBill(String);

impl HandedBill {
    /// Decodes (without verifying) the token's claims and body; the body
    /// validates on construction like every `Bill`.
    pub fn parse(token: &str) -> Result<HandedBill, UnreadableBill> {
        let (_, payload) = jws::inspect_unverified(token).map_err(|e| UnreadableBill(e.to_string()))?;
        let issuer = payload.get("iss").and_then(|v| v.as_str()).unwrap_or_default();
        let issuer = PartyId::parse(issuer).map_err(|e| UnreadableBill(format!("iss: {e}")))?;
        let body = payload.get("bill").cloned().unwrap_or_default();
        let bill: Bill = serde_json::from_value(body).map_err(|e| UnreadableBill(e.to_string()))?;
        if !issuer.is_store(bill.store()) {
            return Err(UnreadableBill("the bill's store is not its issuer".into()));
        }
        let audience = match payload.get("aud").and_then(|v| v.as_str()) {
            Some(aud) => Some(PartyId::parse(aud).map_err(|e| UnreadableBill(format!("aud: {e}")))?),
            None => None,
        };
        Ok(HandedBill { token: token.to_owned(), issuer, audience, bill })
    }

    /// The center the bill is addressed to, as it says (unverified: the
    /// center checks it is itself).
    pub fn audience(&self) -> Option<&PartyId> {
        self.audience.as_ref()
    }

    pub fn token(&self) -> &str {
        &self.token
    }
    pub fn issuer(&self) -> &PartyId {
        &self.issuer
    }
    pub fn bill(&self) -> &Bill {
        &self.bill
    }
    pub fn hash(&self) -> Sha256Digest {
        Sha256Digest::of_token(&self.token)
    }
}

fn same_store(bill: &Bill, store: &str, member: Option<&str>) -> Result<(), Mismatch> {
    if bill.store().as_str() != store {
        return Err(Mismatch::Store { expected: bill.store().to_string(), found: store.to_owned() });
    }
    let expected = bill.member().map(|m| m.as_str());
    if expected != member {
        return Err(Mismatch::Member { expected: expected.map(str::to_owned), found: member.map(str::to_owned) });
    }
    Ok(())
}

/// SIG2 against the bill, the card and the sealed DEBIT about to be relayed.
pub fn check_offer(
    offer: &Verified<Offer>,
    settlement_id: &str,
    bill: &HandedBill,
    card: CardId,
    debit: &[u8],
) -> Result<(), Mismatch> {
    let o = offer.message();
    if o.settlement_id().as_str() != settlement_id {
        return Err(Mismatch::Settlement { expected: settlement_id.to_owned(), found: o.settlement_id().to_string() });
    }
    if !o.bill_hash().ct_eq(&bill.hash()) {
        return Err(Mismatch::BillHash);
    }
    if o.amount() != bill.bill().total() {
        return Err(Mismatch::Amount { expected: bill.bill().total().to_string(), found: o.amount().to_string() });
    }
    same_store(bill.bill(), o.store().as_str(), o.member().map(|m| m.as_str()))?;
    if o.card_id() != card {
        return Err(Mismatch::Card { expected: card.to_string(), found: o.card_id().to_string() });
    }
    if !o.debit_hash().ct_eq(&Sha256Digest::of(debit)) {
        return Err(Mismatch::DebitHash);
    }
    Ok(())
}

/// SIG3 against the offer the cardholder agreed to.
pub fn check_completion(completion: &Verified<Completion>, offer: &Offer) -> Result<(), Mismatch> {
    let c = completion.message();
    if c.settlement_id() != offer.settlement_id() {
        return Err(Mismatch::Settlement {
            expected: offer.settlement_id().to_string(),
            found: c.settlement_id().to_string(),
        });
    }
    if !c.bill_hash().ct_eq(&offer.bill_hash()) {
        return Err(Mismatch::BillHash);
    }
    if c.amount() != offer.amount() {
        return Err(Mismatch::Amount { expected: offer.amount().to_string(), found: c.amount().to_string() });
    }
    // SIG3 names the card only as the store knows it (a pseudonym): the
    // offer bound the card, and the transaction id binds SIG3 to the offer.
    if c.transaction_id() != offer.transaction_id() {
        return Err(Mismatch::Transaction {
            expected: offer.transaction_id().to_string(),
            found: c.transaction_id().to_string(),
        });
    }
    if c.store() != offer.store() || c.member() != offer.member() {
        return Err(Mismatch::Store { expected: offer.store().to_string(), found: c.store().to_string() });
    }
    Ok(())
}

/// SIG3 of a payment no offer came before against the bill it paid: a
/// payment from a virtual prepaid card (#18), or a purchase in the second
/// embodiment (PROTOCOL §5.1). The bill itself (its hash, total and store)
/// and the payment's id are what it must name.
pub fn check_bill_completion(
    completion: &Verified<Completion>,
    payment_id: &str,
    bill: &HandedBill,
) -> Result<(), Mismatch> {
    let c = completion.message();
    if c.settlement_id().as_str() != payment_id {
        return Err(Mismatch::Settlement { expected: payment_id.to_owned(), found: c.settlement_id().to_string() });
    }
    if !c.bill_hash().ct_eq(&bill.hash()) {
        return Err(Mismatch::BillHash);
    }
    if c.amount() != bill.bill().total() {
        return Err(Mismatch::Amount { expected: bill.bill().total().to_string(), found: c.amount().to_string() });
    }
    same_store(bill.bill(), c.store().as_str(), c.member().map(|m| m.as_str()))
}

/// SIG4 against the completion token and the bill.
pub fn check_receipt(
    receipt: &Verified<Receipt>,
    settlement_id: &SettlementId,
    completion_token: &str,
    bill: &HandedBill,
) -> Result<(), Mismatch> {
    let r = receipt.message();
    if r.settlement_id() != settlement_id {
        return Err(Mismatch::Settlement { expected: settlement_id.to_string(), found: r.settlement_id().to_string() });
    }
    if !r.completion_hash().ct_eq(&Sha256Digest::of_token(completion_token)) {
        return Err(Mismatch::CompletionHash);
    }
    if r.order_id() != bill.bill().order_id() {
        return Err(Mismatch::Order { expected: bill.bill().order_id().to_string(), found: r.order_id().to_string() });
    }
    same_store(bill.bill(), r.store().as_str(), r.member().map(|m| m.as_str()))
}

#[cfg(test)]
mod tests {
    use kessai_core::Money;
    use kessai_core::digest::Sha256Digest;
    use kessai_core::ids::{CardId, PartyId, TransactionId};
    use kessai_core::keys::{KeyDirectory, SigningKey, Validity};
    use kessai_core::messages::offer::{self, OfferDraft};
    use kessai_core::messages::{bill, completion, receipt};
    use kessai_core::random::SeededRandom;
    use kessai_core::samples;
    use kessai_core::time::{FixedClock, Timestamp};
    use kessai_core::{Currency, jws::Claims};

    use super::*;

    const NOW: Timestamp = Timestamp::from_unix_s(1_795_000_000);
    const DEBIT: &[u8] = b"sealed DEBIT command";

    struct Fixture {
        rng: SeededRandom,
        clock: FixedClock,
        center: SigningKey,
        mall: SigningKey,
        keys: KeyDirectory,
        bill: HandedBill,
    }

    fn fixture() -> Fixture {
        let mut rng = SeededRandom::new(7);
        let (center, mall) = (SigningKey::generate(&mut rng), SigningKey::generate(&mut rng));
        let mut keys = KeyDirectory::new();
        keys.insert(PartyId::parse(samples::CENTER).unwrap(), center.public(), Validity::always()).unwrap();
        keys.insert(PartyId::parse(samples::MALL).unwrap(), mall.public(), Validity::always()).unwrap();
        let (claims, b) = samples::bill(&mut rng, NOW).unwrap();
        let bill = HandedBill::parse(&bill::sign(&claims, &b, &mall).unwrap()).unwrap();
        Fixture { rng, clock: FixedClock::new(NOW), center, mall, keys, bill }
    }

    fn draft(f: &mut Fixture) -> (Claims, OfferDraft) {
        let (claims, o) = samples::offer(&mut f.rng, NOW, f.bill.token()).unwrap();
        let d = OfferDraft {
            settlement_id: o.settlement_id().clone(),
            bill_hash: o.bill_hash(),
            card_id: o.card_id(),
            transaction_id: o.transaction_id(),
            balance: o.balance(),
            amount: o.amount(),
            store: o.store().clone(),
            member: o.member().cloned(),
            store_name: o.store_name().clone(),
            debit_hash: Sha256Digest::of(DEBIT),
        };
        (claims, d)
    }

    fn verified_offer(f: &mut Fixture, change: impl FnOnce(&mut OfferDraft)) -> Verified<Offer> {
        let (claims, mut d) = draft(f);
        change(&mut d);
        let token = offer::sign(&claims, &Offer::new(d).unwrap(), &f.center).unwrap();
        offer::verify(&token, &f.keys, &f.clock).unwrap()
    }

    #[test]
    fn an_offer_must_match_the_bill_the_card_and_the_debit() {
        let card = CardId::parse("4b45535341490001").unwrap();
        type Case = (&'static str, fn(&mut OfferDraft), Option<fn(&Mismatch) -> bool>);
        let cases: Vec<Case> = vec![
            ("as signed", |_| {}, None),
            ("another bill", |d| d.bill_hash = Sha256Digest::of(b"x"), Some(|m| *m == Mismatch::BillHash)),
            (
                "less",
                |d| d.amount = Money::new(11_000, Currency::JPY).unwrap(),
                Some(|m| matches!(m, Mismatch::Amount { .. })),
            ),
            ("another card", |d| d.card_id = CardId::from_bytes([9; 8]), Some(|m| matches!(m, Mismatch::Card { .. }))),
            ("another member", |d| d.member = None, Some(|m| matches!(m, Mismatch::Member { .. }))),
            ("another DEBIT", |d| d.debit_hash = Sha256Digest::of(b"y"), Some(|m| *m == Mismatch::DebitHash)),
        ];
        let mut f = fixture();
        for (label, change, expected) in cases {
            let o = verified_offer(&mut f, change);
            let sid = o.message().settlement_id().to_string();
            let result = check_offer(&o, &sid, &f.bill, card, DEBIT);
            match expected {
                None => assert_eq!(result, Ok(()), "{label}"),
                Some(is) => assert!(result.as_ref().is_err_and(is), "{label}: {result:?}"),
            }
        }
        let o = verified_offer(&mut f, |_| {});
        let other = check_offer(&o, "stl_other", &f.bill, card, DEBIT);
        assert!(matches!(other, Err(Mismatch::Settlement { .. })), "an offer for another settlement");
    }

    #[test]
    fn a_completion_and_a_receipt_must_answer_exactly_this_offer() {
        let mut f = fixture();
        let o = verified_offer(&mut f, |_| {});
        let (claims, c) = samples::completion(&mut f.rng, NOW, o.message()).unwrap();
        let c_token = completion::sign(&claims, &c, &f.center).unwrap();
        let c_ok = completion::verify(&c_token, &f.keys, &f.clock).unwrap();
        assert_eq!(check_completion(&c_ok, o.message()), Ok(()));
        let other = verified_offer(&mut f, |d| d.transaction_id = TransactionId::from_bytes([5; 16]));
        assert!(matches!(check_completion(&c_ok, other.message()), Err(Mismatch::Settlement { .. })));

        let (claims, r) = samples::receipt(&mut f.rng, NOW, &c, &c_token).unwrap();
        let r_token = receipt::sign(&claims, &r, &f.mall).unwrap();
        let r_ok = receipt::verify(&r_token, &f.keys, &f.clock).unwrap();
        let sid = o.message().settlement_id();
        assert_eq!(check_receipt(&r_ok, sid, &c_token, &f.bill), Ok(()));
        assert_eq!(check_receipt(&r_ok, sid, "another.completion.token", &f.bill), Err(Mismatch::CompletionHash));
    }
}
