//! Typical messages of every kind, for tests, benchmarks, the interop
//! check and the examples in PROTOCOL.md. Deterministic for a given
//! randomness source and time.

use crate::digest::Sha256Digest;
use crate::ids::{
    BillId, CardId, MessageId, OrderId, PartyId, RefundId, SettlementId, StoreId, TransactionId, UpdateId,
};
use crate::jws::{Claims, JwsError};
use crate::messages::bill::{Bill, BillDraft, LineItem};
use crate::messages::completion::{Completion, CompletionDraft};
use crate::messages::offer::{Offer, OfferDraft};
use crate::messages::receipt::{Delivery, DeliveryKind, Receipt, ReceiptDraft};
use crate::messages::refund::{RefundRequest, RefundRequestDraft};
use crate::messages::value_update::{Direction, ValueUpdate, ValueUpdateDraft};
use crate::messages::{DisplayText, MessageError, Nonce, Reference};
use crate::money::{Currency, Money};
use crate::random::Random;
use crate::time::Timestamp;

/// Why a sample could not be made (only if the limits were changed so far
/// that the samples no longer fit).
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error(transparent)]
    Message(#[from] MessageError),
    #[error(transparent)]
    Jws(#[from] JwsError),
    #[error(transparent)]
    Id(#[from] crate::ids::IdError),
    #[error(transparent)]
    Money(#[from] crate::money::MoneyError),
}

pub const MALL: &str = "kessai-mall";
pub const MEMBER: &str = "bookshop";
pub const CENTER: &str = "center";
/// How long the samples stay valid.
pub const LIFETIME_S: u64 = 600;

fn yen(amount: u64) -> Result<Money, SampleError> {
    Ok(Money::new(amount, Currency::JPY)?)
}

fn claims<R: Random + ?Sized>(iss: &str, rng: &mut R, now: Timestamp) -> Result<Claims, SampleError> {
    Ok(Claims::for_lifetime(PartyId::parse(iss)?, MessageId::generate(rng), now, LIFETIME_S)?)
}

/// A three-line bill of a mall member store: the "typical bill" of the
/// benchmark.
pub fn bill<R: Random + ?Sized>(rng: &mut R, now: Timestamp) -> Result<(Claims, Bill), SampleError> {
    let lines = vec![
        LineItem::new("ebook-rust-001", DisplayText::parse("Programming Rust (e-book)")?, 1, yen(4_400)?)?,
        LineItem::new("ebook-crypto-02", DisplayText::parse("Serious Cryptography (e-book)")?, 1, yen(3_960)?)?,
        LineItem::new("audio-jazz-7", DisplayText::parse("Jazz at the Kissa — album")?, 2, yen(1_500)?)?,
    ];
    let mut serial = [0u8; 6];
    rng.fill_bytes(&mut serial);
    let bill = Bill::new(BillDraft {
        bill_id: BillId::parse(&format!("bill-{}", crate::ids::hex_lower(&serial)))?,
        order_id: OrderId::parse("ord-000042")?,
        store: StoreId::parse(MALL)?,
        member: Some(StoreId::parse(MEMBER)?),
        store_name: DisplayText::parse("Kessai Books")?,
        lines,
        nonce: Nonce::generate(rng),
        origin: Some(crate::messages::WebOrigin::parse("https://shop.kessai.test")?),
    })?;
    Ok((claims(MALL, rng, now)?.with_audience(PartyId::parse(CENTER)?), bill))
}

/// The offer for [`bill`], as the center would make it.
pub fn offer<R: Random + ?Sized>(
    rng: &mut R,
    now: Timestamp,
    bill_token: &str,
) -> Result<(Claims, Offer), SampleError> {
    let offer = Offer::new(OfferDraft {
        settlement_id: SettlementId::generate(rng),
        bill_hash: Sha256Digest::of_token(bill_token),
        card_id: CardId::parse("4b45535341490001")?,
        transaction_id: TransactionId::generate(rng),
        balance: yen(50_000)?,
        amount: yen(11_360)?,
        store: StoreId::parse(MALL)?,
        member: Some(StoreId::parse(MEMBER)?),
        store_name: DisplayText::parse("Kessai Books")?,
        debit_hash: Sha256Digest::of(b"sealed DEBIT command"),
    })?;
    Ok((claims(CENTER, rng, now)?, offer))
}

/// The completion for an offer.
pub fn completion<R: Random + ?Sized>(
    rng: &mut R,
    now: Timestamp,
    offer: &Offer,
) -> Result<(Claims, Completion), SampleError> {
    let completion = Completion::new(CompletionDraft {
        settlement_id: offer.settlement_id().clone(),
        bill_hash: offer.bill_hash(),
        card_ref: crate::ids::CardRef::parse("c7Yx1pQ2rS3tU4vW5xY6zA")?,
        transaction_id: offer.transaction_id(),
        amount: offer.amount(),
        store: offer.store().clone(),
        member: offer.member().cloned(),
        card_counter: 17,
        completed_at: now,
    })?;
    Ok((claims(CENTER, rng, now)?, completion))
}

/// The receipt for a completion token.
pub fn receipt<R: Random + ?Sized>(
    rng: &mut R,
    now: Timestamp,
    completion: &Completion,
    completion_token: &str,
) -> Result<(Claims, Receipt), SampleError> {
    let receipt = Receipt::new(ReceiptDraft {
        settlement_id: completion.settlement_id().clone(),
        completion_hash: Sha256Digest::of_token(completion_token),
        order_id: OrderId::parse("ord-000042")?,
        store: completion.store().clone(),
        member: completion.member().cloned(),
        delivery: Delivery {
            kind: DeliveryKind::Download,
            reference: Some(Reference::parse("https://127.0.0.1:8443/download/ord-000042")?),
        },
    })?;
    Ok((claims(MALL, rng, now)?, receipt))
}

/// The mall's refund of JPY 4,400 of a purchase (one of the two e-books).
pub fn refund<R: Random + ?Sized>(rng: &mut R, now: Timestamp) -> Result<(Claims, RefundRequest), SampleError> {
    let refund = RefundRequest::new(RefundRequestDraft {
        refund_id: RefundId::parse("rf-2026-0001")?,
        settlement_id: SettlementId::generate(rng),
        store: StoreId::parse(MALL)?,
        amount: yen(4_400)?,
        reason: DisplayText::parse("e-book returned within 14 days")?,
    })?;
    Ok((claims(MALL, rng, now)?.with_audience(PartyId::parse(CENTER)?), refund))
}

/// A charge of JPY 10,000 onto the sample card.
pub fn value_update<R: Random + ?Sized>(rng: &mut R, now: Timestamp) -> Result<(Claims, ValueUpdate), SampleError> {
    let update = ValueUpdate::new(ValueUpdateDraft {
        update_id: UpdateId::generate(rng),
        card_id: CardId::parse("4b45535341490001")?,
        transaction_id: TransactionId::generate(rng),
        direction: Direction::Credit,
        amount: yen(10_000)?,
        balance_before: yen(38_640)?,
        balance_after: yen(48_640)?,
        funding_ref: Reference::parse("auth_sim_000123")?,
        command_hash: Sha256Digest::of(b"sealed CREDIT command"),
    })?;
    Ok((claims(CENTER, rng, now)?, update))
}
