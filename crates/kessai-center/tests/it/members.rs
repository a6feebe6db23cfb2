//! Members (#12, seed 003/004 FIG. 3–4): apply, approve, the letter with
//! the activation code out of band, and the registration: signed with the
//! member's new key, encrypted to the center, checked, entered. Each
//! refusal changes nothing.

use std::sync::Arc;

use kessai_center::members::{ACTIVATION_LIFETIME_S, MemberError};
use kessai_center::service::Center;
use kessai_core::ids::{MessageId, PartyId};
use kessai_core::jwe;
use kessai_core::jwk::Ed25519Jwk;
use kessai_core::jws::{self, Claims};
use kessai_core::keys::SigningKey;
use kessai_core::messages::DisplayText;
use kessai_core::messages::registration::{self, JWE_CTY, JWE_TYP, MemberDetails, Registration, RegistrationDraft};
use kessai_core::random::SeededRandom;
use kessai_core::time::{FixedClock, Timestamp};

use kessai_center::console::Actor;

use crate::service::setup;
use crate::world::NOW;

/// Applies and approves; the member number and the code, as the letter
/// in the outbox says them.
pub(crate) async fn letter(c: &Center, kind: &str) -> (String, String) {
    let app = c.apply(kind, "Hanako Yamada", "hanako@example.jp").await.unwrap();
    let approved = c.approve_application(&app.application_id, &Actor::api("admin")).await.unwrap();
    assert!(!serde_json::to_string(&approved).unwrap().contains("activation"), "no code in the answer");
    let outbox = c.outbox().await.unwrap();
    let letter = outbox.iter().find(|l| l.member == approved.member).expect("the letter waits in the outbox");
    let code = letter.text.lines().find_map(|l| l.strip_prefix("Your activation code: ")).unwrap().to_owned();
    assert!(letter.text.contains(&approved.member));
    (approved.member, code)
}

pub(crate) fn general() -> MemberDetails {
    MemberDetails::General {
        name: DisplayText::parse("山田 花子").unwrap(),
        address: DisplayText::parse("1-2-3 Chiyoda, Tokyo").unwrap(),
        birth_date: "1990-04-01".into(),
    }
}

/// The registration as a wallet makes it: signed by `signer`, carrying
/// `carried`'s verification key, encrypted to `to`.
pub(crate) fn envelope(
    member: &str,
    code: &str,
    details: MemberDetails,
    (signer, carried): (&SigningKey, &SigningKey),
    to: &jwe::EncryptionPublicKey,
    rng: &mut SeededRandom,
) -> String {
    let member = PartyId::parse(member).unwrap();
    let claims = Claims::for_lifetime(member.clone(), MessageId::generate(rng), NOW, 600).unwrap();
    let r = Registration::new(RegistrationDraft {
        member,
        activation_code: code.to_owned(),
        details,
        key: Ed25519Jwk::new(carried.public().as_bytes(), None, None),
    })
    .unwrap();
    let token = jws::sign(&claims, &r, signer).unwrap();
    jwe::encrypt(token.as_bytes(), to, JWE_TYP, JWE_CTY, rng).unwrap()
}

#[tokio::test]
async fn a_member_applies_is_approved_and_registers_its_key_and_every_refusal_changes_nothing() {
    let mut s = setup().await;
    let mut rng = SeededRandom::new(12);
    let center_key = s.center.security.member_encryption_key().public().clone();
    let key = SigningKey::generate(&mut rng);
    let (member, code) = letter(&s.center, "general").await;

    // Refusals first: none uses the code or enters anyone.
    type Refusal = (&'static str, String, fn(&MemberError) -> bool);
    let refusals: Vec<Refusal> = vec![
        (
            "a wrong code",
            envelope(&member, "0000-0000-0000-0000", general(), (&key, &key), &center_key, &mut rng),
            |e| matches!(e, MemberError::ActivationRefused),
        ),
        (
            "an unknown member number",
            envelope("m-00000000deadbeef", &code, general(), (&key, &key), &center_key, &mut rng),
            |e| matches!(e, MemberError::ActivationRefused),
        ),
        (
            "signed by another key than it carries",
            envelope(&member, &code, general(), (&SigningKey::generate(&mut rng), &key), &center_key, &mut rng),
            |e| matches!(e, MemberError::BadRegistration(_)),
        ),
        (
            "encrypted to another key",
            envelope(
                &member,
                &code,
                general(),
                (&key, &key),
                jwe::EncryptionKey::generate(&mut rng).public(),
                &mut rng,
            ),
            |e| matches!(e, MemberError::NotEncrypted(_)),
        ),
        (
            "a store's details on a general member's letter",
            envelope(
                &member,
                &code,
                MemberDetails::Store {
                    business_name: DisplayText::parse("Kissa").unwrap(),
                    address: DisplayText::parse("Osaka").unwrap(),
                    bank_account: DisplayText::parse("0001-234-5678901").unwrap(),
                },
                (&key, &key),
                &center_key,
                &mut rng,
            ),
            |e| matches!(e, MemberError::KindMismatch { .. }),
        ),
    ];
    for (what, token, expected) in refusals {
        let e = s.center.register_member(&token).await.unwrap_err();
        assert!(expected(&e), "{what}: {e:?}");
    }
    // Readable by anyone: the signed registration sent as it is.
    let member_id = PartyId::parse(&member).unwrap();
    let claims = Claims::for_lifetime(member_id.clone(), MessageId::generate(&mut rng), NOW, 600).unwrap();
    let draft = RegistrationDraft {
        member: member_id,
        activation_code: code.clone(),
        details: general(),
        key: Ed25519Jwk::new(key.public().as_bytes(), None, None),
    };
    let plain = registration::sign(&claims, &Registration::new(draft).unwrap(), &key).unwrap();
    assert!(matches!(s.center.register_member(&plain).await, Err(MemberError::NotEncrypted(_))));
    assert!(s.center.db.member(&member).await.unwrap().is_none(), "nobody entered");

    // The member's own registration: entered, with its key.
    let genuine = envelope(&member, &code, general(), (&key, &key), &center_key, &mut rng);
    let entered = s.center.register_member(&genuine).await.unwrap();
    assert_eq!((entered.member.as_str(), entered.kid.as_str()), (member.as_str(), key.kid().as_str()));
    let row = s.center.db.member(&member).await.unwrap().unwrap();
    assert_eq!((row.kind.as_str(), row.status.as_str()), ("general", "active"));
    assert!(row.details.contains("山田 花子"));
    // Replayed, or registered again with the same code: refused.
    assert!(matches!(s.center.register_member(&genuine).await, Err(MemberError::CodeUsed)));
    let again = envelope(&member, &code, general(), (&key, &key), &center_key, &mut rng);
    assert!(matches!(s.center.register_member(&again).await, Err(MemberError::CodeUsed)));

    // A store member, its code past its lifetime: refused as expired.
    let (store, store_code) = letter(&s.center, "store").await;
    let later = Timestamp::from_unix_s(NOW.unix_s() + ACTIVATION_LIFETIME_S + 1);
    s.center.clock = Arc::new(FixedClock::new(later));
    let details = MemberDetails::Store {
        business_name: DisplayText::parse("Kissa Records").unwrap(),
        address: DisplayText::parse("Osaka").unwrap(),
        bank_account: DisplayText::parse("0001-234-5678901").unwrap(),
    };
    let store_key = SigningKey::generate(&mut rng);
    // (Signed with claims at NOW, checked at `later`: the message itself
    // expired too; a fresh one is signed at `later`.)
    let member_id = PartyId::parse(&store).unwrap();
    let claims = Claims::for_lifetime(member_id.clone(), MessageId::generate(&mut rng), later, 600).unwrap();
    let r = Registration::new(RegistrationDraft {
        member: member_id,
        activation_code: store_code.clone(),
        details,
        key: Ed25519Jwk::new(store_key.public().as_bytes(), None, None),
    })
    .unwrap();
    let token = jwe::encrypt(
        registration::sign(&claims, &r, &store_key).unwrap().as_bytes(),
        &center_key,
        JWE_TYP,
        JWE_CTY,
        &mut rng,
    )
    .unwrap();
    assert!(matches!(s.center.register_member(&token).await, Err(MemberError::CodeExpired)));
    assert!(s.center.db.member(&store).await.unwrap().is_none());

    // The operator marks the letters sent: their text, with the codes, is gone.
    for l in s.center.outbox().await.unwrap() {
        s.center.letter_sent(&l.letter_id, crate::tester()).await.unwrap();
    }
    assert!(s.center.outbox().await.unwrap().is_empty());
    assert!(s.center.db.letters_of(&member).await.unwrap().iter().all(|l| l.letter.is_none()));
}

/// #12, FIG. 7 ①: a registered member's card pays only on the member's
/// payment instruction, signed with the member's registered key for this
/// bill, card, amount and store, checked before the DEBIT is sealed. A
/// missing, wrong-key, tampered or other-bill instruction is refused and
/// nothing changes on the card or in the books.
#[tokio::test]
async fn a_members_card_pays_only_on_the_members_signed_instruction() {
    use kessai_center::service::{CenterError, parse_answers};
    use kessai_core::messages::instruction::{self, InstructionDraft, PaymentInstruction};

    let mut s = setup().await;
    let mut rng = SeededRandom::new(21);
    let center_key = s.center.security.member_encryption_key().public().clone();
    let key = SigningKey::generate(&mut rng);
    let (member, code) = letter(&s.center, "general").await;
    s.center.register_member(&envelope(&member, &code, general(), (&key, &key), &center_key, &mut rng)).await.unwrap();
    crate::service::register_card(&s, 5, 20_000).await;
    assert!(
        s.center
            .db
            .link_card_member(
                &crate::world::card_id(5),
                Some(&member),
                true,
                crate::world::NOW,
                crate::trail("card_member")
            )
            .await
            .unwrap()
    );
    let mut card = crate::world::funded_card(5, 20_000);

    let bill = crate::service::bill_token(&mut s);
    let r =
        s.center.create(crate::world::offer_request(&mut card, &bill, crate::world::card_id(5)), None).await.unwrap();
    let id = r.settlement_id.clone();
    let answers = parse_answers(&crate::service::relay(&mut card, &r)).unwrap();
    let settlement = s.center.settlement(&id).await.unwrap();
    let signed = |signer: &SigningKey, change: &dyn Fn(&mut InstructionDraft), rng: &mut SeededRandom| {
        let mut d = InstructionDraft {
            member: PartyId::parse(&member).unwrap(),
            card_id: Some(crate::world::card_id(5)),
            prepaid_id: None,
            bill_hash: settlement.bill.bill_hash,
            amount: settlement.bill.amount,
            store: settlement.bill.store.clone(),
        };
        change(&mut d);
        let claims = Claims::for_lifetime(d.member.clone(), MessageId::generate(rng), NOW, 300).unwrap();
        instruction::sign(
            &claims.clone().with_audience(crate::center_party()),
            &PaymentInstruction::new(d).unwrap(),
            signer,
        )
        .unwrap()
    };
    let offer = |token: Option<String>| {
        let (center, id, answers) = (&s.center, id.clone(), answers.clone());
        async move { center.offer_instructed(&id, answers, token.as_deref(), Default::default()).await }
    };
    assert!(
        matches!(offer(None).await, Err(CenterError::Step(kessai_center::purchase::StepError::InstructionRequired(_)))),
        "missing"
    );
    let stranger = SigningKey::generate(&mut rng);
    let refused = [
        ("another key", signed(&stranger, &|_| {}, &mut rng)),
        ("another bill", signed(&key, &|d| d.bill_hash = kessai_core::digest::Sha256Digest::of(b"other"), &mut rng)),
        (
            "another amount",
            signed(&key, &|d| d.amount = kessai_core::Money::new(1, kessai_core::Currency::JPY).unwrap(), &mut rng),
        ),
        ("another card", signed(&key, &|d| d.card_id = Some(crate::world::card_id(6)), &mut rng)),
    ];
    for (what, token) in refused {
        assert!(
            matches!(
                offer(Some(token)).await,
                Err(CenterError::Step(kessai_center::purchase::StepError::InstructionRefused(_)))
            ),
            "{what}"
        );
    }
    let mut tampered = signed(&key, &|_| {}, &mut rng).into_bytes();
    let at = tampered.len() - 5;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    assert!(offer(Some(String::from_utf8(tampered).unwrap())).await.is_err(), "tampered");
    assert_eq!(s.center.settlement(&id).await.unwrap().phase(), kessai_center::purchase::Phase::ReadingBalance);
    assert_eq!(
        s.center.books.card_float(&crate::world::card_id(5)).await.unwrap().unwrap(),
        (20_000, 0),
        "nothing held"
    );

    // The member's own instruction: the DEBIT is sealed and the purchase completes.
    let r = offer(Some(signed(&key, &|_| {}, &mut rng))).await.unwrap();
    assert_eq!(r.phase, kessai_center::purchase::Phase::Offered);
    let answers = parse_answers(&crate::service::relay(&mut card, &r)).unwrap();
    let done = s.center.complete(&id, answers, Default::default()).await.unwrap();
    assert_eq!(done.phase, kessai_center::purchase::Phase::Completed);
}

/// #12 key lifecycle: a member replaces its key (signed with the current
/// one, the new one proving possession); a replayed replacement, or one by
/// a stranger, is refused. A key reported lost is revoked at once and a new
/// letter goes out; the member registers a new key with it; a retired key
/// is never registered again.
#[tokio::test]
async fn a_member_replaces_its_key_and_a_lost_key_is_revoked_and_registered_anew() {
    use kessai_core::messages::key_replacement::{self, KeyReplacement};
    let s = setup().await;
    let mut rng = SeededRandom::new(31);
    let center_key = s.center.security.member_encryption_key().public().clone();
    let first = SigningKey::generate(&mut rng);
    let (member, code) = letter(&s.center, "general").await;
    s.center
        .register_member(&envelope(&member, &code, general(), (&first, &first), &center_key, &mut rng))
        .await
        .unwrap();
    let id = PartyId::parse(&member).unwrap();
    let replacement = |current: &SigningKey, new: &SigningKey, signer: &SigningKey, rng: &mut SeededRandom| {
        let claims = Claims::for_lifetime(id.clone(), MessageId::generate(rng), NOW, 300).unwrap();
        let body = KeyReplacement::made(id.clone(), current, new).unwrap();
        jws::sign(&claims.with_audience(crate::center_party()), &body, signer).unwrap()
    };

    let second = SigningKey::generate(&mut rng);
    let stranger = SigningKey::generate(&mut rng);
    let forged = replacement(&first, &second, &stranger, &mut rng);
    assert!(matches!(s.center.replace_member_key(&forged).await, Err(MemberError::BadReplacement(_))));
    let genuine = replacement(&first, &second, &first, &mut rng);
    let replaced = s.center.replace_member_key(&genuine).await.unwrap();
    assert_eq!(replaced.kid, second.kid().as_str());
    assert!(s.center.replace_member_key(&genuine).await.is_err(), "a replay: the key that signed it is retired");
    // Back to the first key: refused, it was retired.
    let back = replacement(&second, &first, &second, &mut rng);
    assert!(s.center.replace_member_key(&back).await.is_err(), "a retired key comes back");
    assert_eq!(s.center.db.member(&member).await.unwrap().unwrap().kid, second.kid().as_str());
    assert!(
        key_replacement::sign(
            &Claims::for_lifetime(id.clone(), MessageId::generate(&mut rng), NOW, 300)
                .unwrap()
                .with_audience(crate::center_party()),
            &KeyReplacement::made(id.clone(), &second, &stranger).unwrap(),
            &stranger
        )
        .is_err(),
        "only the key it replaces signs it"
    );

    // The second key is lost: revoked, a new letter out.
    let revoked = s.center.revoke_member(&member, "reported lost by phone", crate::tester()).await.unwrap();
    assert_eq!(s.center.db.member(&member).await.unwrap().unwrap().status, "revoked");
    let after_loss = replacement(&second, &SigningKey::generate(&mut rng), &second, &mut rng);
    assert!(matches!(s.center.replace_member_key(&after_loss).await, Err(MemberError::UnknownMember(_))));
    let outbox = s.center.outbox().await.unwrap();
    let text = &outbox.iter().find(|l| l.letter_id == revoked.letter_id).unwrap().text;
    let new_code = text.lines().find_map(|l| l.strip_prefix("Your new activation code: ")).unwrap().to_owned();
    // A retired key cannot come back with the new code; a new key can.
    let old = envelope(&member, &new_code, general(), (&second, &second), &center_key, &mut rng);
    let refused = s.center.register_member(&old).await;
    assert!(matches!(refused, Err(MemberError::AlreadyRegistered)), "{refused:?}");
    let third = SigningKey::generate(&mut rng);
    let fresh = envelope(&member, &new_code, general(), (&third, &third), &center_key, &mut rng);
    let entered = s.center.register_member(&fresh).await.unwrap();
    assert_eq!((entered.kid.as_str(), entered.status.as_str()), (third.kid().as_str(), "active"));
    // The first letter's code is spent and the new one too.
    let again = envelope(&member, &code, general(), (&SigningKey::generate(&mut rng), &third), &center_key, &mut rng);
    assert!(s.center.register_member(&again).await.is_err());
}

/// FIG. 3–4 steps ①–⑤ in the browser: the guide, the sign-up form, and the
/// application number it answers; no scripts, no framing, the form posts to
/// the center only. A form missing a field or with a bad kind is shown
/// again with what to fix, and nothing is stored.
#[tokio::test]
async fn the_guide_and_sign_up_pages_take_an_application() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let s = setup().await;
    let center = Arc::new(s.center);
    let app = kessai_center::member_pages::routes(center.clone());
    let call = |req: Request<Body>| {
        let app = app.clone();
        async move {
            let resp = app.oneshot(req).await.unwrap();
            let (status, headers) = (resp.status(), resp.headers().clone());
            let body = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
            (status, headers, body)
        }
    };
    let (status, headers, guide) = call(Request::get("/members").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(guide.contains("href=\"/members/apply\"") && guide.contains("kessai wallet member register"), "{guide}");
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("form-action 'self'"), "{csp}");
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    assert!(!guide.contains("<script"));
    let (_, _, form) = call(Request::get("/members/apply").body(Body::empty()).unwrap()).await;
    assert!(form.contains("action=\"/members/apply\"") && form.contains("name=\"contact\""), "{form}");

    let post = |body: &str| {
        Request::post("/members/apply")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let (status, _, page) = call(post("kind=general&name=Hanako+Yamada")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    let (status, _, page) = call(post("kind=robot&name=R&contact=x")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(page.contains("role=\"alert\""));
    assert!(center.db.applications("received", 10).await.unwrap().is_empty(), "nothing stored");
    let (status, _, page) = call(post("kind=general&name=Hanako+Yamada&contact=hanako%40example.jp")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let listed = center.db.applications("received", 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(page.contains(&listed[0].id), "the application number is shown: {page}");
    assert_eq!((listed[0].name.as_str(), listed[0].contact.as_str()), ("Hanako Yamada", "hanako@example.jp"));
}

/// #12: a store member registered this way is a store whose bills its key
/// signs: a bill it signs settles; after it replaces its key, bills under
/// the old one are refused and the new one's settle; once its key is
/// revoked, its bills are refused.
#[tokio::test]
async fn a_store_member_signs_its_bills_with_its_registered_key() {
    use kessai_center::service::CenterError;
    use kessai_core::ids::{BillId, OrderId, StoreId};
    use kessai_core::jws::JwsError;
    use kessai_core::messages::bill::{self, Bill, BillDraft, LineItem};
    use kessai_core::messages::key_replacement::KeyReplacement;
    use kessai_core::messages::{Nonce, WebOrigin};
    let s = setup().await;
    let mut rng = SeededRandom::new(41);
    let center_key = s.center.security.member_encryption_key().public().clone();
    let (store, code) = letter(&s.center, "store").await;
    let first = SigningKey::generate(&mut rng);
    let details = MemberDetails::Store {
        business_name: DisplayText::parse("Kissa Records").unwrap(),
        address: DisplayText::parse("Osaka").unwrap(),
        bank_account: DisplayText::parse("0001-234-5678901").unwrap(),
    };
    s.center.register_member(&envelope(&store, &code, details, (&first, &first), &center_key, &mut rng)).await.unwrap();
    crate::service::register_card(&s, 7, 20_000).await;
    let sign_bill = |key: &SigningKey, n: u32, rng: &mut SeededRandom| {
        let price = kessai_core::Money::new(1_000, kessai_core::Currency::JPY).unwrap();
        let bill = Bill::new(BillDraft {
            bill_id: BillId::parse(&format!("bill-{n}")).unwrap(),
            order_id: OrderId::parse(&format!("ord-{n}")).unwrap(),
            store: StoreId::parse(&store).unwrap(),
            member: None,
            store_name: DisplayText::parse("Kissa Records").unwrap(),
            lines: vec![LineItem::new("lp-1", DisplayText::parse("An LP").unwrap(), 1, price).unwrap()],
            nonce: Nonce::generate(rng),
            origin: Some(WebOrigin::parse("https://kissa.example").unwrap()),
        })
        .unwrap();
        let claims = Claims::for_lifetime(PartyId::parse(&store).unwrap(), MessageId::generate(rng), NOW, 600).unwrap();
        bill::sign(&claims.clone().with_audience(crate::center_party()), &bill, key).unwrap()
    };
    let card = crate::world::card_id(7);
    let mut chip = crate::world::funded_card(7, 20_000);
    let mut create = |token: String| {
        let opening = crate::world::opening(&mut chip, &token, card);
        let center = &s.center;
        async move { center.create(crate::world::offer_create(&token, card, opening), None).await }
    };
    let opened = create(sign_bill(&first, 1, &mut rng)).await.unwrap();
    assert_eq!(opened.phase, kessai_center::purchase::Phase::ReadingBalance, "the store member's bill is accepted");

    let second = SigningKey::generate(&mut rng);
    let id = PartyId::parse(&store).unwrap();
    let claims = Claims::for_lifetime(id.clone(), MessageId::generate(&mut rng), NOW, 300).unwrap();
    let replacement = jws::sign(
        &claims.with_audience(crate::center_party()),
        &KeyReplacement::made(id, &first, &second).unwrap(),
        &first,
    )
    .unwrap();
    s.center.replace_member_key(&replacement).await.unwrap();
    let old = create(sign_bill(&first, 2, &mut rng)).await.unwrap_err();
    assert!(matches!(old, CenterError::Bill(JwsError::RevokedKey(_))), "{old:?}");
    create(sign_bill(&second, 3, &mut rng)).await.unwrap();

    s.center.revoke_member(&store, "the shop's laptop was stolen", crate::tester()).await.unwrap();
    let revoked = create(sign_bill(&second, 4, &mut rng)).await.unwrap_err();
    assert!(matches!(revoked, CenterError::Bill(JwsError::RevokedKey(_))), "{revoked:?}");
}

/// Two registrations under one activation code (two wallets, or one sent
/// twice with different keys) at the same moment: exactly one is entered,
/// the other refused, and the member holds the winner's key. Then two key
/// replacements racing: exactly one new key.
#[tokio::test]
async fn racing_registrations_and_replacements_enter_exactly_one_key() {
    use kessai_core::messages::key_replacement::KeyReplacement;
    let s = setup().await;
    let mut rng = SeededRandom::new(41);
    let center_key = s.center.security.member_encryption_key().public().clone();
    let (member, code) = letter(&s.center, "general").await;
    let (a, b) = (SigningKey::generate(&mut rng), SigningKey::generate(&mut rng));
    let env_a = envelope(&member, &code, general(), (&a, &a), &center_key, &mut rng);
    let env_b = envelope(&member, &code, general(), (&b, &b), &center_key, &mut rng);
    let (ra, rb) = tokio::join!(s.center.register_member(&env_a), s.center.register_member(&env_b));
    let winner = match (&ra, &rb) {
        (Ok(_), Err(MemberError::CodeUsed | MemberError::AlreadyRegistered)) => &a,
        (Err(MemberError::CodeUsed | MemberError::AlreadyRegistered), Ok(_)) => &b,
        other => panic!("exactly one must be entered: {other:?}"),
    };
    let row = s.center.db.member(&member).await.unwrap().unwrap();
    assert_eq!(row.kid, winner.kid().as_str(), "the member holds the winner's key");

    let id = PartyId::parse(&member).unwrap();
    let (c, d) = (SigningKey::generate(&mut rng), SigningKey::generate(&mut rng));
    let sign = |new: &SigningKey, rng: &mut SeededRandom| {
        let claims = Claims::for_lifetime(id.clone(), MessageId::generate(rng), NOW, 300).unwrap();
        let claims = claims.with_audience(crate::center_party());
        jws::sign(&claims, &KeyReplacement::made(id.clone(), winner, new).unwrap(), winner).unwrap()
    };
    let (to_c, to_d) = (sign(&c, &mut rng), sign(&d, &mut rng));
    let (rc, rd) = tokio::join!(s.center.replace_member_key(&to_c), s.center.replace_member_key(&to_d));
    assert_eq!(usize::from(rc.is_ok()) + usize::from(rd.is_ok()), 1, "{rc:?} {rd:?}");
    let now = s.center.db.member(&member).await.unwrap().unwrap().kid;
    let expected = if rc.is_ok() { c.kid() } else { d.kid() };
    assert_eq!(now, expected.as_str());
}

/// #22 item 3: an operator rejects an application with a reason. It leaves
/// the received queue for the rejected one, no letter is made, and it can
/// be neither approved nor rejected again; a blank reason, an unknown
/// application and a store's certificate change nothing.
#[tokio::test]
async fn an_operator_rejects_an_application_once_and_no_letter_is_made() {
    use axum::http::{Request, StatusCode};
    use serde_json::{Value, json};
    let s = crate::service::setup().await;
    let applied = s.center.apply("general", "Taro Suzuki", "taro@example.jp").await.unwrap();
    let id = applied.application_id.clone();
    let app = kessai_center::admin::routes(std::sync::Arc::new(s.center), "admin".into(), vec![]);
    let reject = |id: &str, body: Value, peer: &'static str| {
        let (app, path) = (app.clone(), format!("/v1/admin/applications/{id}/reject"));
        async move { crate::api::send(&app, Request::post(path), body, Some(peer)).await }
    };
    let list = |status: &'static str| {
        let app = app.clone();
        async move {
            let (_, answer) = crate::api::send(
                &app,
                Request::get(format!("/v1/admin/applications?status={status}")),
                Value::Null,
                Some("admin"),
            )
            .await;
            answer["applications"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["application_id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list("received").await, std::slice::from_ref(&id));
    for (body, peer, status, code) in [
        (json!({ "reason": "  " }), "admin", StatusCode::BAD_REQUEST, "bad_reason"),
        (json!({ "reason": "duplicate" }), "kessai-mall", StatusCode::FORBIDDEN, "not_admin"),
    ] {
        let (got, answer) = reject(&id, body, peer).await;
        assert_eq!((got, answer["error"]["code"].as_str()), (status, Some(code)), "{answer}");
    }
    assert_eq!(list("received").await, std::slice::from_ref(&id), "nothing changed");
    let (status, answer) = reject(&id, json!({ "reason": "the contact does not answer" }), "admin").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer, json!({ "application_id": id, "status": "rejected" }));
    assert!(list("received").await.is_empty());
    assert_eq!(list("rejected").await, std::slice::from_ref(&id));
    // Decided once: not again, either way; no letter waits.
    let (status, answer) = reject(&id, json!({ "reason": "again" }), "admin").await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("not_received")));
    let (status, answer) = crate::api::send(
        &app,
        Request::post(format!("/v1/admin/applications/{id}/approve")),
        Value::Null,
        Some("admin"),
    )
    .await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("not_received")), "{answer}");
    let (_, outbox) = crate::api::send(&app, Request::get("/v1/admin/outbox"), Value::Null, Some("admin")).await;
    assert!(outbox["letters"].as_array().unwrap().is_empty(), "{outbox}");
    let (status, answer) = reject("app_nope", json!({ "reason": "x" }), "admin").await;
    assert_eq!((status, answer["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("unknown_application")));
    // Who decided, and why, is on record once.
    let conn = rusqlite::Connection::open(s._dir.path().join("center.db")).unwrap();
    let mut decisions =
        conn.prepare("SELECT application_id, decided_by, note FROM center_application_decisions").unwrap();
    let rows: Vec<(String, String, String)> =
        decisions.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    assert_eq!(rows, [(id, "admin".to_owned(), "the contact does not answer".to_owned())]);
}

/// An approval and a rejection of one application at once, on SQLite and
/// on PostgreSQL: exactly one decides it; the other is refused
/// (`not_received`) and writes nothing: a letter waits only if it was
/// approved, a decision is on record only if it was rejected.
#[tokio::test]
async fn an_approval_and_a_rejection_at_once_decide_an_application_once() {
    decided_once(crate::service::setup().await).await;
}

#[tokio::test]
async fn an_approval_and_a_rejection_at_once_decide_an_application_once_on_postgres() {
    let Some(s) = crate::service::setup_on_postgres("members_decide_once").await else { return };
    decided_once(s).await;
}

async fn decided_once(s: crate::service::Setup) {
    for round in 0..8 {
        let applied = s.center.apply("general", "Jiro Sato", &format!("jiro{round}@example.jp")).await.unwrap();
        let id = applied.application_id;
        let admin = Actor::api("admin");
        let (approved, rejected) = tokio::join!(
            s.center.approve_application(&id, &admin),
            s.center.reject_application(&id, &admin, "duplicate")
        );
        assert_eq!(approved.is_ok() as u8 + rejected.is_ok() as u8, 1, "round {round}: {approved:?} {rejected:?}");
        let loser = approved.as_ref().err().or(rejected.as_ref().err());
        assert!(matches!(loser, Some(MemberError::NotReceived(_))), "{loser:?}");
        let letters = s.center.outbox().await.unwrap();
        let has_letter = approved.as_ref().is_ok_and(|a| letters.iter().any(|l| l.member == a.member));
        assert_eq!(has_letter, approved.is_ok(), "round {round}");
        let status = if approved.is_ok() { "approved" } else { "rejected" };
        let listed = s.center.db.applications(status, 500).await.unwrap();
        assert!(listed.iter().any(|a| a.id == id), "round {round}: {status}");
        // One trail row, of the decision that was made (#22).
        let trail = s.center.db.trail(Some(&id), None, 10).await.unwrap();
        let action = if approved.is_ok() { "application_approved" } else { "application_rejected" };
        assert_eq!(trail.iter().map(|t| t.entry.action.as_str()).collect::<Vec<_>>(), [action], "round {round}");
    }
    // Each application was decided exactly one way, and the trail holds
    // those eight decisions, chained.
    let outbox = s.center.outbox().await.unwrap().len();
    let rejected = s.center.db.applications("rejected", 500).await.unwrap().len();
    assert_eq!(outbox + rejected, 8);
    assert_eq!(s.center.db.check_trail().await.unwrap(), Ok(8));
}
