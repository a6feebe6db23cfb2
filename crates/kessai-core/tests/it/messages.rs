//! Every kind round-trips: what was signed is what verifies, with the
//! right `typ`, `kid` and hashes that bind the messages together.

use kessai_core::digest::Sha256Digest;
use kessai_core::jws::inspect_unverified;
use kessai_core::messages::{bill, completion, offer, receipt, value_update};
use kessai_core::samples;

use crate::fixtures::{NOW, World};

#[test]
fn every_kind_round_trips() {
    let mut w = World::new(1);
    let (c, b) = samples::bill(&mut w.rng, NOW).unwrap();
    let bill_token = bill::sign(&c, &b, &w.mall_key).unwrap();
    let v = bill::verify(&bill_token, &w.store_keys, &w.clock, &kessai_core::ids::PartyId::parse("center").unwrap())
        .unwrap();
    assert_eq!(v.message(), &b);
    assert_eq!(v.claims(), &c);
    assert_eq!(v.kid(), w.mall_key.kid());
    assert_eq!(v.token_hash(), Sha256Digest::of_token(&bill_token));
    assert_eq!(v.message().total().to_string(), "JPY 11,360");
    assert_eq!(v.message().payee().as_str(), samples::MEMBER);

    let (c, o) = samples::offer(&mut w.rng, NOW, &bill_token).unwrap();
    let offer_token = offer::sign(&c, &o, &w.center_key).unwrap();
    let v = offer::verify(&offer_token, &w.center_keys, &w.clock).unwrap();
    assert_eq!(v.message(), &o);
    assert_eq!(v.message().bill_hash(), Sha256Digest::of_token(&bill_token));

    let (c, d) = samples::completion(&mut w.rng, NOW, &o).unwrap();
    let completion_token = completion::sign(&c, &d, &w.center_key).unwrap();
    let v = completion::verify(&completion_token, &w.center_keys, &w.clock).unwrap();
    assert_eq!(v.message(), &d);

    let (c, r) = samples::receipt(&mut w.rng, NOW, &d, &completion_token).unwrap();
    let receipt_token = receipt::sign(&c, &r, &w.mall_key).unwrap();
    let v = receipt::verify(&receipt_token, &w.store_keys, &w.clock).unwrap();
    assert_eq!(v.message(), &r);
    assert_eq!(v.message().completion_hash(), Sha256Digest::of_token(&completion_token));

    let (c, u) = samples::value_update(&mut w.rng, NOW).unwrap();
    let update_token = value_update::sign(&c, &u, &w.center_key).unwrap();
    let v = value_update::verify(&update_token, &w.center_keys, &w.clock).unwrap();
    assert_eq!(v.message(), &u);
}

#[test]
fn header_names_alg_kid_and_one_typ_per_kind() {
    let mut w = World::new(2);
    let tokens = w.tokens();
    let expected = [
        ("bill", "kessai-bill+jwt"),
        ("offer", "kessai-offer+jwt"),
        ("completion", "kessai-completion+jwt"),
        ("receipt", "kessai-receipt+jwt"),
        ("value_update", "kessai-value-update+jwt"),
        ("refund", "kessai-refund+jwt"),
    ];
    for ((kind, token), (kind2, typ)) in tokens.all().iter().zip(expected) {
        assert_eq!(*kind, kind2);
        let (header, payload) = inspect_unverified(token).unwrap();
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["typ"], typ);
        assert_eq!(header["kid"].as_str().unwrap().len(), 43);
        assert!(payload.get(kind).is_some(), "{kind} payload holds its body under {kind:?}");
        for claim in ["iss", "jti", "iat", "exp"] {
            assert!(payload.get(claim).is_some(), "{kind} payload has {claim}");
        }
    }
}

#[test]
fn signing_refuses_what_verifying_would_refuse() {
    let mut w = World::new(3);
    // A bill whose store is not its issuer: the mall cannot sign for it.
    let (claims, b) = samples::bill(&mut w.rng, NOW).unwrap();
    let other =
        kessai_core::jws::Claims::for_lifetime(crate::fixtures::party("another-mall"), claims.id().clone(), NOW, 60)
            .unwrap();
    assert!(bill::sign(&other, &b, &w.mall_key).is_err());
}

#[test]
fn the_largest_bill_the_limits_allow_still_fits_in_a_token() {
    use kessai_core::ids::{BillId, OrderId, StoreId};
    use kessai_core::limits::{MAX_ID_BYTES, MAX_LINE_ITEMS, MAX_TEXT_BYTES};
    use kessai_core::messages::bill::{Bill, BillDraft, LineItem};
    use kessai_core::messages::{DisplayText, Nonce};
    use kessai_core::{Currency, Money};

    let mut w = World::new(4);
    let name = DisplayText::parse(&"\"".repeat(MAX_TEXT_BYTES)).unwrap();
    let price = Money::new(1_000_000_000, Currency::JPY).unwrap();
    let lines = (0..MAX_LINE_ITEMS)
        .map(|i| LineItem::new(&format!("{i:0>64}")[..MAX_ID_BYTES], name.clone(), 10_000, price).unwrap())
        .collect();
    let b = Bill::new(BillDraft {
        bill_id: BillId::parse(&"b".repeat(MAX_ID_BYTES)).unwrap(),
        order_id: OrderId::parse(&"o".repeat(MAX_ID_BYTES)).unwrap(),
        store: StoreId::parse(samples::MALL).unwrap(),
        member: Some(StoreId::parse(samples::MEMBER).unwrap()),
        store_name: name,
        lines,
        nonce: Nonce::generate(&mut w.rng),
        // The longest origin: a 253-byte host and a 5-digit port.
        origin: Some(
            kessai_core::messages::WebOrigin::parse(&format!(
                "https://{}.{}.{}.{}:65535",
                "a".repeat(63),
                "b".repeat(63),
                "c".repeat(63),
                "d".repeat(61)
            ))
            .unwrap(),
        ),
    })
    .unwrap();
    let (c, _) = samples::bill(&mut w.rng, NOW).unwrap();
    let token = bill::sign(&c, &b, &w.mall_key).unwrap();
    assert_eq!(
        bill::verify(&token, &w.store_keys, &w.clock, &kessai_core::ids::PartyId::parse("center").unwrap())
            .unwrap()
            .message(),
        &b
    );
    // Too many lines is refused when the bill is built, not when signed.
    let one = LineItem::new("x", DisplayText::parse("x").unwrap(), 1, price).unwrap();
    let too_many = BillDraft { lines: vec![one; MAX_LINE_ITEMS + 1], ..bill_draft(&b, &mut w) };
    assert!(Bill::new(too_many).is_err());
}

fn bill_draft(b: &kessai_core::messages::bill::Bill, w: &mut World) -> kessai_core::messages::bill::BillDraft {
    kessai_core::messages::bill::BillDraft {
        bill_id: b.bill_id().clone(),
        order_id: b.order_id().clone(),
        store: b.store().clone(),
        member: b.member().cloned(),
        store_name: b.store_name().clone(),
        lines: b.lines().to_vec(),
        nonce: kessai_core::messages::Nonce::generate(&mut w.rng),
        origin: b.origin().cloned(),
    }
}

#[test]
fn a_web_origin_is_https_a_lowercase_host_and_a_port_at_most() {
    use kessai_core::messages::WebOrigin;
    for ok in ["https://shop.example", "https://127.0.0.1:8443", "https://a-b.c9.example:65535", "https://localhost"] {
        assert_eq!(WebOrigin::parse(ok).unwrap().as_str(), ok);
    }
    for bad in [
        "http://shop.example",
        "https://Shop.example",
        "https://shop.example/",
        "https://shop.example:0",
        "https://shop.example:65536",
        "https://shop.example:",
        "https://-shop.example",
        "https://shop..example",
        "https://user@shop.example",
        "https://[::1]",
        "https://",
        "shop.example",
    ] {
        assert!(WebOrigin::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(
        WebOrigin::of_url("https://shop.example:8443/orders/1?x#y").unwrap().as_str(),
        "https://shop.example:8443"
    );
    assert!(WebOrigin::of_url("https://shop.example.evil@phish.example/").is_err(), "userinfo is no origin");
}
