//! The merchant side of kessai, for any Rust merchant backend: sign bills
//! (SIG1), check the center's completions (SIG3) against your open orders,
//! and sign receipts (SIG4). No I/O: you store orders and fetch the
//! center's JWKS yourself; time and randomness are passed in.
//!
//! ```
//! use kessai_core::ids::{CardRef, OrderId, PartyId, SettlementId, StoreId, TransactionId, MessageId};
//! use kessai_core::jws::Claims;
//! use kessai_core::keys::{KeyDirectory, SigningKey, Validity};
//! use kessai_core::messages::{DisplayText, Reference, WebOrigin};
//! use kessai_core::messages::bill::LineItem;
//! use kessai_core::messages::completion::{self, Completion, CompletionDraft};
//! use kessai_core::messages::receipt::{Delivery, DeliveryKind};
//! use kessai_core::random::SeededRandom;
//! use kessai_core::time::{FixedClock, Timestamp};
//! use kessai_core::{Currency, Money};
//! use kessai_merchant::{BillRequest, Merchant, OpenOrder};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut rng = SeededRandom::new(1); // use kessai_core::random::OsRandom in production
//! let clock = FixedClock::new(Timestamp::from_unix_s(1_800_000_000));
//!
//! // Your store's identity and key, and the center you accept completions from.
//! let merchant = Merchant::new(StoreId::parse("my-shop")?, SigningKey::generate(&mut rng), PartyId::parse("center")?);
//! println!("publish at /.well-known/jwks.json: {:?}", merchant.jwks());
//!
//! // 1. Sign a bill (SIG1) for an order and hand its token to the wallet.
//! let line = LineItem::new("tea-01", DisplayText::parse("Sencha, 100 g")?, 2, Money::new(1_200, Currency::JPY)?)?;
//! let bill = merchant.sign_bill(
//!     BillRequest {
//!         order_id: OrderId::parse("order-1001")?,
//!         member: None,
//!         store_name: DisplayText::parse("My Tea Shop")?,
//!         lines: vec![line],
//!         lifetime_s: 900,
//!         origin: WebOrigin::parse("https://tea.example")?,
//!     },
//!     &mut rng,
//!     &clock,
//! )?;
//! let order: OpenOrder = bill.open_order(); // store this with your order
//! assert_eq!(order.total().amount_minor(), 2_400);
//!
//! // (The center settles and signs a completion; simulated here.)
//! let center_key = SigningKey::generate(&mut rng);
//! let done = Completion::new(CompletionDraft {
//!     settlement_id: SettlementId::generate(&mut rng),
//!     bill_hash: bill.hash(),
//!     card_ref: CardRef::parse("c7Yx1pQ2rS3tU4vW5xY6zA")?,
//!     transaction_id: TransactionId::generate(&mut rng),
//!     amount: bill.bill().total(),
//!     store: StoreId::parse("my-shop")?,
//!     member: None,
//!     card_counter: 1,
//!     completed_at: clock.now(),
//! })?;
//! let claims = Claims::for_lifetime(PartyId::parse("center")?, MessageId::generate(&mut rng), clock.now(), 300)?;
//! let completion_token = completion::sign(&claims, &done, &center_key)?;
//!
//! // 2. Check the completion: the center's signature (keys from its JWKS)
//! //    and that it pays exactly this open order.
//! let mut center_keys = KeyDirectory::new();
//! center_keys.insert(PartyId::parse("center")?, center_key.public(), Validity::always())?;
//! let paid = merchant.check_completion(&completion_token, &center_keys, &order, &clock)?;
//!
//! // 3. Mark the order paid, then answer with a signed receipt (SIG4).
//! let delivery = Delivery { kind: DeliveryKind::Download, reference: Some(Reference::parse("https://shop.example/orders/order-1001")?) };
//! let receipt = merchant.sign_receipt(&paid, delivery, 3_600, &mut rng, &clock)?;
//! assert_eq!(receipt.matches('.').count(), 2);
//! # use kessai_core::Clock;
//! # Ok(())
//! # }
//! ```

mod merchant;

pub use merchant::{BillRequest, CompletionError, Merchant, MerchantError, OpenOrder, Paid, SignedBill};
