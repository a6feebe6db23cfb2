//! The merchant library: bills it signs verify at the center, completions
//! are checked against the open order, receipts bind to the completion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kessai_core::digest::Sha256Digest;
use kessai_core::ids::{CardRef, MessageId, OrderId, PartyId, SettlementId, StoreId, TransactionId};
use kessai_core::jws::{Claims, JwsError};
use kessai_core::keys::{KeyDirectory, SigningKey, Validity};
use kessai_core::messages::bill::{self, LineItem};
use kessai_core::messages::completion::{self, Completion, CompletionDraft};
use kessai_core::messages::receipt::{self, Delivery, DeliveryKind};
use kessai_core::messages::{DisplayText, Reference};
use kessai_core::random::SeededRandom;
use kessai_core::time::{Clock, FixedClock, Timestamp};
use kessai_core::{Currency, Money};
use kessai_merchant::{BillRequest, CompletionError, Merchant, SignedBill};

const NOW: u64 = 1_800_000_000;

struct World {
    rng: SeededRandom,
    clock: FixedClock,
    mall: Merchant,
    mall_key_public: kessai_core::keys::PublicKey,
    center_key: SigningKey,
    center_keys: KeyDirectory,
    bill: SignedBill,
}

fn yen(n: u64) -> Money {
    Money::new(n, Currency::JPY).unwrap()
}

fn world() -> World {
    let mut rng = SeededRandom::new(42);
    let clock = FixedClock::new(Timestamp::from_unix_s(NOW));
    let mall_key = SigningKey::generate(&mut rng);
    let mall_key_public = mall_key.public();
    let mall = Merchant::new(StoreId::parse("kessai-mall").unwrap(), mall_key, PartyId::parse("center").unwrap());
    let center_key = SigningKey::generate(&mut rng);
    let mut center_keys = KeyDirectory::new();
    center_keys.insert(PartyId::parse("center").unwrap(), center_key.public(), Validity::always()).unwrap();
    let lines = vec![
        LineItem::new("ebook-1", DisplayText::parse("An e-book").unwrap(), 1, yen(1_000)).unwrap(),
        LineItem::new("album-2", DisplayText::parse("An album").unwrap(), 2, yen(500)).unwrap(),
    ];
    let request = BillRequest {
        order_id: OrderId::parse("ord-000001").unwrap(),
        member: Some(StoreId::parse("bookshop").unwrap()),
        store_name: DisplayText::parse("Kessai Books").unwrap(),
        lines,
        lifetime_s: 900,
        origin: kessai_core::messages::WebOrigin::parse("https://shop.example").unwrap(),
    };
    let bill = mall.sign_bill(request, &mut rng, &clock).unwrap();
    World { rng, clock, mall, mall_key_public, center_key, center_keys, bill }
}

fn draft(w: &mut World) -> CompletionDraft {
    CompletionDraft {
        settlement_id: SettlementId::generate(&mut w.rng),
        bill_hash: w.bill.hash(),
        card_ref: CardRef::parse("c7Yx1pQ2rS3tU4vW5xY6zA").unwrap(),
        transaction_id: TransactionId::generate(&mut w.rng),
        amount: yen(2_000),
        store: StoreId::parse("kessai-mall").unwrap(),
        member: Some(StoreId::parse("bookshop").unwrap()),
        card_counter: 3,
        completed_at: w.clock.now(),
    }
}

fn sign_as(rng: &mut SeededRandom, clock: &FixedClock, issuer: &str, key: &SigningKey, d: CompletionDraft) -> String {
    let claims =
        Claims::for_lifetime(PartyId::parse(issuer).unwrap(), MessageId::generate(rng), clock.now(), 300).unwrap();
    completion::sign(&claims, &Completion::new(d).unwrap(), key).unwrap()
}

#[test]
fn the_bill_verifies_with_the_mall_key_and_names_the_member() {
    let w = world();
    let mut mall_keys = KeyDirectory::new();
    mall_keys.insert(PartyId::parse("kessai-mall").unwrap(), w.mall_key_public.clone(), Validity::always()).unwrap();
    let verified =
        bill::verify(w.bill.token(), &mall_keys, &w.clock, &kessai_core::ids::PartyId::parse("center").unwrap())
            .unwrap();
    assert_eq!(verified.message().total(), yen(2_000));
    assert_eq!(verified.message().member().unwrap().as_str(), "bookshop");
    assert_eq!(verified.claims().issuer().as_str(), "kessai-mall");
    assert_eq!(verified.token_hash(), w.bill.hash());
    assert_eq!(w.bill.expires_at().unix_s(), NOW + 900);
    assert_eq!(w.mall.jwks().keys[0].kid, w.mall_key_public.kid().as_str());
}

#[test]
fn a_matching_completion_gives_a_receipt_bound_to_it() {
    let mut w = world();
    let d = draft(&mut w);
    let token = center_signs(&mut w, d);
    let paid = w.mall.check_completion(&token, &w.center_keys, &w.bill.open_order(), &w.clock).unwrap();
    assert_eq!(paid.completion_hash(), Sha256Digest::of_token(&token));
    let delivery =
        Delivery { kind: DeliveryKind::Download, reference: Some(Reference::parse("https://s/o/1").unwrap()) };
    let receipt_token = w.mall.sign_receipt(&paid, delivery, 3_600, &mut w.rng, &w.clock).unwrap();
    let mut mall_keys = KeyDirectory::new();
    mall_keys.insert(PartyId::parse("kessai-mall").unwrap(), w.mall_key_public.clone(), Validity::always()).unwrap();
    let receipt = receipt::verify(&receipt_token, &mall_keys, &w.clock).unwrap();
    assert_eq!(receipt.message().completion_hash(), Sha256Digest::of_token(&token));
    assert_eq!(receipt.message().order_id().as_str(), "ord-000001");
    assert_eq!(receipt.message().member().unwrap().as_str(), "bookshop");
    assert_eq!(receipt.message().settlement_id(), paid.completion().message().settlement_id());
}

type Case = (&'static str, fn(&mut World) -> String, fn(&CompletionError) -> bool);

#[test]
fn completions_that_do_not_match_are_refused() {
    let cases: &[Case] = &[
        (
            "signed by a key the center does not own",
            |w| {
                let d = draft(w);
                let stranger = SigningKey::from_seed(&[7; 32]);
                sign_as(&mut w.rng, &w.clock, "center", &stranger, d)
            },
            |e| matches!(e, CompletionError::Token(JwsError::UnknownKey(_))),
        ),
        (
            "tampered signature",
            |w| {
                let d = draft(w);
                let mut t = center_signs(w, d);
                let last = t.pop().unwrap();
                t.push(if last == 'A' { 'B' } else { 'A' });
                t
            },
            |e| matches!(e, CompletionError::Token(JwsError::BadSignature | JwsError::BadBase64(_))),
        ),
        (
            "wrong amount",
            |w| {
                let d = CompletionDraft { amount: yen(1_999), ..draft(w) };
                center_signs(w, d)
            },
            |e| matches!(e, CompletionError::AmountMismatch { .. }),
        ),
        (
            "wrong currency",
            |w| {
                let d = CompletionDraft { amount: Money::new(2_000, Currency::USD).unwrap(), ..draft(w) };
                center_signs(w, d)
            },
            |e| matches!(e, CompletionError::CurrencyMismatch { .. }),
        ),
        (
            "another bill",
            |w| {
                let d = CompletionDraft { bill_hash: Sha256Digest::of(b"other bill"), ..draft(w) };
                center_signs(w, d)
            },
            |e| *e == CompletionError::BillMismatch,
        ),
        (
            "another member store",
            |w| {
                let d = CompletionDraft { member: Some(StoreId::parse("record-shop").unwrap()), ..draft(w) };
                center_signs(w, d)
            },
            |e| matches!(e, CompletionError::WrongMember { .. }),
        ),
        (
            "another store",
            |w| {
                let d = CompletionDraft { store: StoreId::parse("other-mall").unwrap(), ..draft(w) };
                center_signs(w, d)
            },
            |e| matches!(e, CompletionError::WrongStore { .. }),
        ),
        (
            "expired",
            |w| {
                let d = draft(w);
                let t = center_signs(w, d);
                w.clock.advance_s(300 + 61);
                t
            },
            |e| matches!(e, CompletionError::Token(JwsError::Expired { .. })),
        ),
    ];
    for (label, make, expected) in cases {
        let mut w = world();
        let token = make(&mut w);
        let result = w.mall.check_completion(&token, &w.center_keys, &w.bill.open_order(), &w.clock);
        match result {
            Err(e) => assert!(expected(&e), "{label}: unexpected error {e:?}"),
            Ok(_) => panic!("{label}: accepted"),
        }
    }
}

fn center_signs(w: &mut World, d: CompletionDraft) -> String {
    sign_as(&mut w.rng, &w.clock, "center", &w.center_key, d)
}

#[test]
fn a_completion_signed_by_another_registered_party_is_refused() {
    let mut w = world();
    let other = SigningKey::from_seed(&[5; 32]);
    w.center_keys.insert(PartyId::parse("acquirer").unwrap(), other.public(), Validity::always()).unwrap();
    let d = draft(&mut w);
    let token = sign_as(&mut w.rng, &w.clock, "acquirer", &other, d);
    let err = w.mall.check_completion(&token, &w.center_keys, &w.bill.open_order(), &w.clock).unwrap_err();
    assert!(matches!(err, CompletionError::WrongIssuer { .. }), "{err:?}");
}
