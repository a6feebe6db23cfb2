//! SIG1, the bill (settlement request information): store → center.

use serde::{Deserialize, Serialize};

use super::{DisplayText, MessageError, Nonce, WebOrigin, field_error, require_positive, require_same_currency};
use crate::ids::{BillId, OrderId, PartyId, StoreId};
use crate::jws::{self, Claims, JwsError, MessageKind, Verified};
use crate::keys::{KeyDirectory, SigningKey};
use crate::limits::{MAX_ID_BYTES, MAX_LINE_ITEMS, MAX_QUANTITY};
use crate::money::Money;
use crate::time::Clock;

/// One line of a bill. `amount` is always `unit_price × quantity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "LineItemWire", into = "LineItemWire")]
pub struct LineItem {
    sku: String,
    name: DisplayText,
    quantity: u32,
    unit_price: Money,
    amount: Money,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LineItemWire {
    sku: String,
    name: DisplayText,
    quantity: u32,
    unit_price: Money,
    amount: Money,
}

impl LineItem {
    pub fn new(sku: &str, name: DisplayText, quantity: u32, unit_price: Money) -> Result<LineItem, MessageError> {
        if sku.is_empty() || sku.len() > MAX_ID_BYTES || !sku.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(field_error("lines.sku", "must be 1 to 64 printable ASCII characters"));
        }
        if quantity == 0 || quantity > MAX_QUANTITY {
            return Err(field_error("lines.quantity", format!("must be 1 to {MAX_QUANTITY}")));
        }
        require_positive("lines.unit_price", &unit_price)?;
        let amount = unit_price.checked_mul(quantity).map_err(|e| field_error("lines.amount", e))?;
        Ok(LineItem { sku: sku.to_owned(), name, quantity, unit_price, amount })
    }

    pub fn sku(&self) -> &str {
        &self.sku
    }
    pub fn name(&self) -> &DisplayText {
        &self.name
    }
    pub fn quantity(&self) -> u32 {
        self.quantity
    }
    pub fn unit_price(&self) -> Money {
        self.unit_price
    }
    pub fn amount(&self) -> Money {
        self.amount
    }
}

impl TryFrom<LineItemWire> for LineItem {
    type Error = MessageError;
    fn try_from(w: LineItemWire) -> Result<Self, MessageError> {
        let line = LineItem::new(&w.sku, w.name, w.quantity, w.unit_price)?;
        if line.amount != w.amount {
            return Err(field_error("lines.amount", "is not unit_price × quantity"));
        }
        Ok(line)
    }
}

impl From<LineItem> for LineItemWire {
    fn from(l: LineItem) -> Self {
        LineItemWire { sku: l.sku, name: l.name, quantity: l.quantity, unit_price: l.unit_price, amount: l.amount }
    }
}

/// What the store asks the cardholder to pay. Signed by the store (or the
/// mall on behalf of a member store); the center checks it before it
/// touches the card, and every later message binds to its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "BillWire", into = "BillWire")]
pub struct Bill {
    /// The store's id for this request; with the store, unique.
    bill_id: BillId,
    /// The order the payment settles; the store looks it up on completion.
    order_id: OrderId,
    /// The merchant of record that signs (a mall or a lone store); equals `iss`.
    store: StoreId,
    /// The member store inside a mall that is credited, if any.
    member: Option<StoreId>,
    /// The name the cardholder sees at consent.
    store_name: DisplayText,
    /// What is bought, so the cardholder sees it at consent.
    lines: Vec<LineItem>,
    /// The amount to debit: the sum of the lines.
    total: Money,
    /// Makes every bill distinct even for equal orders.
    nonce: Nonce,
    /// Where the store serves its pages: the wallet returns the cardholder,
    /// and fetches the store's keys, only there. (Bills signed before it
    /// existed have none; a wallet starts no payment for those.)
    origin: Option<WebOrigin>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BillWire {
    bill_id: BillId,
    order_id: OrderId,
    store: StoreId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    member: Option<StoreId>,
    store_name: DisplayText,
    lines: Vec<LineItem>,
    total: Money,
    nonce: Nonce,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    origin: Option<WebOrigin>,
}

/// The parts of a bill a store chooses.
#[derive(Debug, Clone)]
pub struct BillDraft {
    pub bill_id: BillId,
    pub order_id: OrderId,
    pub store: StoreId,
    pub member: Option<StoreId>,
    pub store_name: DisplayText,
    pub lines: Vec<LineItem>,
    pub nonce: Nonce,
    /// The store's web origin (see [`Bill::origin`]).
    pub origin: Option<WebOrigin>,
}

impl Bill {
    /// A bill whose total is the sum of its lines, all in one currency.
    pub fn new(d: BillDraft) -> Result<Bill, MessageError> {
        if d.lines.is_empty() || d.lines.len() > MAX_LINE_ITEMS {
            return Err(field_error("lines", format!("must hold 1 to {MAX_LINE_ITEMS} items")));
        }
        let mut total = Money::zero(d.lines[0].amount.currency());
        for line in &d.lines {
            require_same_currency("lines.amount", &total, &line.amount)?;
            total = total.checked_add(&line.amount).map_err(|e| field_error("total", e))?;
        }
        if d.member.as_ref() == Some(&d.store) {
            return Err(field_error("member", "must differ from store"));
        }
        Ok(Bill {
            bill_id: d.bill_id,
            order_id: d.order_id,
            store: d.store,
            member: d.member,
            store_name: d.store_name,
            lines: d.lines,
            total,
            nonce: d.nonce,
            origin: d.origin,
        })
    }

    pub fn bill_id(&self) -> &BillId {
        &self.bill_id
    }
    pub fn order_id(&self) -> &OrderId {
        &self.order_id
    }
    pub fn store(&self) -> &StoreId {
        &self.store
    }
    pub fn member(&self) -> Option<&StoreId> {
        self.member.as_ref()
    }
    /// The store that is paid: the member store if there is one.
    pub fn payee(&self) -> &StoreId {
        self.member.as_ref().unwrap_or(&self.store)
    }
    pub fn store_name(&self) -> &DisplayText {
        &self.store_name
    }
    pub fn lines(&self) -> &[LineItem] {
        &self.lines
    }
    pub fn total(&self) -> Money {
        self.total
    }
    /// The web origin the store serves its pages from, if the bill names it.
    pub fn origin(&self) -> Option<&WebOrigin> {
        self.origin.as_ref()
    }
}

impl TryFrom<BillWire> for Bill {
    type Error = MessageError;
    fn try_from(w: BillWire) -> Result<Self, MessageError> {
        let bill = Bill::new(BillDraft {
            bill_id: w.bill_id,
            order_id: w.order_id,
            store: w.store,
            member: w.member,
            store_name: w.store_name,
            lines: w.lines,
            nonce: w.nonce,
            origin: w.origin,
        })?;
        if bill.total != w.total {
            return Err(field_error("total", "is not the sum of the lines"));
        }
        Ok(bill)
    }
}

impl From<Bill> for BillWire {
    fn from(b: Bill) -> Self {
        BillWire {
            bill_id: b.bill_id,
            order_id: b.order_id,
            store: b.store,
            member: b.member,
            store_name: b.store_name,
            lines: b.lines,
            total: b.total,
            nonce: b.nonce,
            origin: b.origin,
        }
    }
}

impl MessageKind for Bill {
    const TYP: &'static str = "kessai-bill+jwt";
    const AUDIENCE_REQUIRED: bool = true;
    const BODY: &'static str = "bill";

    fn check_claims(&self, claims: &Claims) -> Result<(), JwsError> {
        if !claims.issuer().is_store(&self.store) {
            return Err(field_error("store", "must be the issuer of the bill").into());
        }
        Ok(())
    }
}

/// Signs a bill (SIG1) with the store's key.
pub fn sign(claims: &Claims, bill: &Bill, key: &SigningKey) -> Result<String, JwsError> {
    jws::sign(claims, bill, key)
}

/// Verifies a bill against the registered store keys, by the center
/// `center` it must be addressed to (a wallet that only reads it uses
/// [`jws::verify`], which checks it names a center).
pub fn verify(
    token: &str,
    keys: &KeyDirectory,
    clock: &dyn Clock,
    center: &PartyId,
) -> Result<Verified<Bill>, JwsError> {
    jws::verify_for(token, keys, clock, center)
}
