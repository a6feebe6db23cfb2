//! What the center owes a card, or a card owes the center, until the card
//! is next presented (DESIGN §5):
//!
//! - a **purchase refund**: the store asks, signed, for all or part of a
//!   completed purchase back. The store's payable is reversed at once (a
//!   pending transfer store payable → card float) and the card is credited
//!   the next time it is presented. The refunds of a purchase never sum past
//!   it: the amount is reserved against the settlement in the same database
//!   transaction that stores the refund.
//! - a **correction**: the operator takes value off a card (a decrease), held
//!   on the card's float at once and debited at the card's next
//!   presentation. Only a correction no session holds can be cancelled.
//!
//! Either is applied by a value update ([`crate::value::ValueUpdate`] with
//! [`Purpose::Owed`]) run through the charge steps. An item is claimed by at
//! most one update at a time (compare-and-set on its `session` column); when
//! the card confirms, the hold is posted and the item is `applied` in the
//! same transaction as the update; when the card provably did not apply it,
//! the item is owed again.

use kessai_core::Money;
use kessai_core::digest::Sha256Digest;
use kessai_core::ids::{CardId, StoreId, UpdateId};
use kessai_core::messages::Reference;
use kessai_core::messages::refund;
use kessai_core::messages::value_update::Direction;
use kessai_core::time::Timestamp;
use serde::{Deserialize, Serialize};

use crate::books::{BooksError, CODE_CORRECTION, CODE_REFUND, CODE_TOKEN_REDEEMED, Entries};
use crate::db::RefundStored;
use crate::purchase::{CardRegistryStatus, Phase};
use crate::service::Center;
use crate::update::{UpdateError, UpdateReply};
use crate::value::{NewUpdate, Purpose, ValueUpdate};

/// Longest reason text kept with an owed item.
const MAX_REASON_BYTES: usize = 200;

pub use kessai_api::views::{OwedKind, OwedReply, OwedStatus, Replaced};

/// The columns that make owed item `kind` unique: (store, its reference).
pub fn store_and_reference(kind: &OwedKind) -> (Option<String>, String) {
    match kind {
        OwedKind::PurchaseRefund { store, refund_id, .. } => {
            (Some(store.as_str().to_owned()), refund_id.as_str().to_owned())
        }
        OwedKind::Correction { reference } => (None, reference.clone()),
        OwedKind::Unfunded { update_id } => (None, update_id.as_str().to_owned()),
        OwedKind::Replacement { from_card } => (None, from_card.to_string()),
        OwedKind::TokenRedeemed { token_id } => (None, token_id.clone()),
    }
}

/// The fixed part of an owed item, stored as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwedBody {
    pub card_id: CardId,
    #[serde(flatten)]
    pub kind: OwedKind,
    pub direction: Direction,
    pub amount: Money,
    pub reason: String,
    pub created_at: Timestamp,
}

/// An owed item as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owed {
    /// `owe_` and 32 hex digits, derived from what makes the item unique.
    pub id: String,
    pub status: OwedStatus,
    /// The value update applying it now, if any.
    pub session: Option<UpdateId>,
    /// The value update that applied it.
    pub applied_by: Option<UpdateId>,
    pub body: OwedBody,
}

/// The settlement id of a refund's reply, as JSON.
fn reply_settlement(reply: &OwedReply) -> serde_json::Value {
    match &reply.kind {
        OwedKind::PurchaseRefund { settlement_id, .. } => serde_json::json!(settlement_id),
        _ => serde_json::Value::Null,
    }
}

/// The ledger code of an owed item's transfers: refunds credit, corrections debit.
pub fn owed_code(direction: Direction) -> u16 {
    match direction {
        Direction::Credit => CODE_REFUND,
        Direction::Debit => CODE_CORRECTION,
    }
}

/// The item that takes back the value of charge `update` whose funding was
/// refused after the card applied it.
pub(crate) fn unfunded(update: &ValueUpdate, now: Timestamp) -> Owed {
    let body = OwedBody {
        card_id: update.card_id,
        kind: OwedKind::Unfunded { update_id: update.id.clone() },
        direction: Direction::Debit,
        amount: update.amount,
        reason: "the credit card authorization could not be captured".into(),
        created_at: now,
    };
    Owed {
        id: owed_id("unfunded", &[update.id.as_str()]),
        status: OwedStatus::Owed,
        session: None,
        applied_by: None,
        body,
    }
}

/// What deposit token `token`, redeemed, owes its card: `amount`, all of
/// it or what it held beyond the bill it paid (one item per token).
pub(crate) fn token_owed(token: &crate::db::TokenRow, amount: kessai_core::Money, now: Timestamp) -> Owed {
    let token_id = token.id.to_string();
    let reason = if amount == token.amount {
        format!("deposit token {token_id} redeemed")
    } else {
        format!("deposit token {token_id} redeemed: what it held beyond the bill it paid")
    };
    let body = OwedBody {
        card_id: token.card_id,
        kind: OwedKind::TokenRedeemed { token_id: token_id.clone() },
        direction: Direction::Credit,
        amount,
        reason,
        created_at: now,
    };
    Owed { id: token_owed_id(&token.id), status: OwedStatus::Owed, session: None, applied_by: None, body }
}

/// The operator trail's action of a card's replacement (its subject: the
/// old card; `after.replaced_by`: the new one).
pub(crate) const CARD_REPLACED: &str = "card_replaced";

/// How many replacements of replacements a value follows.
const REPLACEMENTS_FOLLOWED: usize = 8;

/// The id of the item that moved card `old`'s value to its replacement
/// (its `card_id` is the replacement).
pub(crate) fn replacement_id(old: &CardId) -> String {
    owed_id("replacement", &[old.to_string().as_str()])
}

/// The id of what deposit token `token`, redeemed, owes its card.
pub(crate) fn token_owed_id(token: &kessai_core::token::TokenId) -> String {
    owed_id("token", &[&token.to_string()])
}

fn owed_id(label: &str, parts: &[&str]) -> String {
    let mut input = format!("kessai-owed\0{label}");
    for p in parts {
        input.push('\0');
        input.push_str(p);
    }
    format!("owe_{}", hex::encode(&Sha256Digest::of(input.as_bytes()).as_bytes()[..16]))
}

pub fn owed_reply(o: &Owed, refunded_minor: Option<u64>) -> OwedReply {
    OwedReply {
        owed_id: o.id.clone(),
        kind: o.body.kind.clone(),
        card_id: o.body.card_id.to_string(),
        direction: o.body.direction,
        amount: o.body.amount,
        reason: o.body.reason.clone(),
        status: o.status,
        applied_by: o.applied_by.as_ref().map(ToString::to_string),
        refunded_minor,
    }
}

fn reason_text(reason: &str) -> Result<String, UpdateError> {
    let ok = !reason.trim().is_empty() && reason.len() <= MAX_REASON_BYTES && reason.chars().all(|c| !c.is_control());
    if !ok {
        return Err(UpdateError::BadReason(MAX_REASON_BYTES));
    }
    Ok(reason.trim().to_owned())
}

/// A refund moved from a replaced card: item `from` becomes `moved`; `void`
/// ends its hold and `hold` makes it again toward the new card.
#[derive(Debug)]
pub(crate) struct Move {
    pub(crate) from: String,
    pub(crate) moved: Owed,
    pub(crate) void: Entries,
    pub(crate) hold: Entries,
}

/// What applying the next owed item of a card answered.
#[derive(Debug)]
pub enum Applying {
    /// Nothing is owed to or by this card.
    Nothing,
    /// A value update for the item: relay its commands like a charge's.
    Update(Box<UpdateReply>),
}

/// How many of a card's owed items one presentation looks through for one
/// it can apply now.
const OWED_CONSIDERED: i64 = 50;

/// Which owed items a presentation of the card applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owing {
    /// Everything, credits first.
    Any,
    /// Only what the card is owed.
    CreditsOnly,
}

impl Center {
    /// `POST /v1/refunds`: a store's signed refund request. Idempotent by
    /// the store's refund id: the same refund again (a retry, a replayed
    /// token) answers the refund as it stands and moves nothing.
    pub async fn request_refund(&self, token: &str) -> Result<OwedReply, UpdateError> {
        let keys = self.db.store_keys().await?;
        let verified =
            refund::verify(token, &keys, self.clock.as_ref(), &self.center_id).map_err(UpdateError::Refund)?;
        let r = verified.message();
        let found = self.db.settlement(r.settlement_id()).await?.filter(|(s, _)| &s.bill.store == r.store());
        let Some((settlement, _)) = found else {
            // A payment from a virtual prepaid card (#18), or nothing:
            // another store's is as unknown as a missing one.
            return self.refund_prepaid(r).await;
        };
        let purchase = settlement.bill.amount;
        self.still_a_member(&settlement.bill, r.store()).await?;
        // A refund must be able to reach its card: one owed to a lost or
        // blocked card would hold the store's money with nothing to apply it.
        match self.db.card(&settlement.card_id).await? {
            Some(card) if card.status == CardRegistryStatus::Active => {}
            _ => {
                return Err(UpdateError::NotRefundable(format!(
                    "card {} is not active; a refund could never reach it",
                    settlement.card_id
                )));
            }
        }
        if settlement.phase() != Phase::Completed {
            return Err(UpdateError::NotRefundable(format!(
                "settlement {} is {}, not completed",
                settlement.id,
                settlement.phase().as_str()
            )));
        }
        if r.amount().currency() != purchase.currency() {
            return Err(UpdateError::NotRefundable(format!(
                "the refund is in {}, the purchase in {}",
                r.amount().currency(),
                purchase.currency()
            )));
        }
        let id = owed_id("refund", &[r.store().as_str(), r.refund_id().as_str()]);
        let body = OwedBody {
            card_id: settlement.card_id,
            kind: OwedKind::PurchaseRefund {
                store: r.store().clone(),
                payee: settlement.bill.payee().clone(),
                refund_id: r.refund_id().clone(),
                settlement_id: settlement.id.clone(),
            },
            direction: Direction::Credit,
            amount: r.amount(),
            reason: r.reason().as_str().to_owned(),
            created_at: self.clock.now(),
        };
        let owed = Owed { id, status: OwedStatus::Owed, session: None, applied_by: None, body };
        let OwedKind::PurchaseRefund { payee, settlement_id, .. } = &owed.body.kind else {
            return Err(UpdateError::NotRefundable("not a purchase refund".into()));
        };
        let hold = Entries::refund_hold(&owed.id, settlement_id.as_str(), payee, &owed.body.card_id, owed.body.amount)?;
        let now = self.clock.now();
        let stored = match self
            .db
            .insert_refund(&owed, &settlement.id, purchase.amount_minor(), now, hold)
            .await
            .map_err(books)?
        {
            RefundStored::Inserted => owed,
            RefundStored::Existing(existing) => {
                if existing.body.kind != owed.body.kind || existing.body.amount != owed.body.amount {
                    return Err(UpdateError::RefundIdInUse(r.refund_id().to_string()));
                }
                *existing
            }
            RefundStored::Refused { refunded_minor } => {
                return Err(UpdateError::OverRefund { purchase, refunded_minor, amount: r.amount() });
            }
        };
        let refunded = self.db.settlement_refunded(&settlement.id).await?;
        Ok(owed_reply(&stored, Some(refunded)))
    }

    /// The mall refunds its members' purchases only while they are its
    /// members: the refund reverses the member's payable.
    pub(crate) async fn still_a_member(
        &self,
        bill: &crate::purchase::BillFacts,
        mall: &StoreId,
    ) -> Result<(), UpdateError> {
        if let Some(member) = bill.member.as_ref()
            && self.db.store(member).await?.and_then(|m| m.mall).as_ref() != Some(mall)
        {
            return Err(UpdateError::NotAMember { member: member.to_string(), mall: mall.to_string() });
        }
        Ok(())
    }

    /// A store's refund of a payment from a virtual prepaid card: credited
    /// to the card at once (its value is the center's account), idempotent
    /// by the store's refund id as a card refund is, never past the payment.
    async fn refund_prepaid(&self, r: &kessai_core::messages::refund::RefundRequest) -> Result<OwedReply, UpdateError> {
        let unknown = || UpdateError::UnknownSettlement(r.settlement_id().to_string());
        let (payment, _) = self.db.prepaid_payment(r.settlement_id()).await?.ok_or_else(unknown)?;
        if &payment.bill.store != r.store() {
            return Err(unknown());
        }
        self.still_a_member(&payment.bill, r.store()).await?;
        let purchase = payment.bill.amount;
        if r.amount().currency() != purchase.currency() {
            return Err(UpdateError::NotRefundable(format!(
                "the refund is in {}, the purchase in {}",
                r.amount().currency(),
                purchase.currency()
            )));
        }
        let id = owed_id("refund", &[r.store().as_str(), r.refund_id().as_str()]);
        let kind = OwedKind::PurchaseRefund {
            store: r.store().clone(),
            payee: payment.bill.payee().clone(),
            refund_id: r.refund_id().clone(),
            settlement_id: payment.id.clone(),
        };
        let reply = OwedReply {
            owed_id: id.clone(),
            kind,
            card_id: payment.account.to_string(),
            direction: Direction::Credit,
            amount: r.amount(),
            reason: reason_text(r.reason().as_str())?,
            status: OwedStatus::Applied,
            applied_by: None,
            refunded_minor: None,
        };
        let record =
            serde_json::to_string(&reply).map_err(|e| UpdateError::Db(crate::db::DbError::Corrupt(e.to_string())))?;
        let entries =
            Entries::prepaid_refund(&id, payment.id.as_str(), payment.bill.payee(), &payment.account, r.amount())?;
        let now = self.clock.now();
        let stored = self
            .db
            .insert_prepaid_refund(
                crate::db::PrepaidRefundRow {
                    id: id.clone(),
                    payment: payment.id.clone(),
                    amount_minor: r.amount().amount_minor(),
                    purchase_minor: purchase.amount_minor(),
                    record,
                },
                entries,
                now,
            )
            .await
            .map_err(books)?;
        match stored {
            Ok(true) => {
                tracing::info!(refund = %id, payment = %payment.id, amount = %r.amount(), "prepaid payment refunded")
            }
            Ok(false) => {
                let before = self.db.prepaid_refund(&id).await?.unwrap_or_default();
                let before: serde_json::Value = serde_json::from_str(&before).unwrap_or_default();
                let same = before["settlement_id"] == reply_settlement(&reply)
                    && before["amount"] == serde_json::json!(r.amount());
                if !same {
                    return Err(UpdateError::RefundIdInUse(r.refund_id().to_string()));
                }
            }
            Err(refunded_minor) => {
                return Err(UpdateError::OverRefund { purchase, refunded_minor, amount: r.amount() });
            }
        }
        let refunded = self.db.prepaid_refunded(&payment.id).await?;
        Ok(OwedReply { refunded_minor: Some(refunded), ..reply })
    }

    /// An operator's correction: take `amount` off the card at its next
    /// presentation. Idempotent by `reference`. Refused beyond what the
    /// books show on the card.
    pub async fn add_correction(
        &self,
        card_id: CardId,
        reference: &str,
        amount: Money,
        reason: &str,
        by: &crate::console::Actor,
    ) -> Result<OwedReply, UpdateError> {
        let reference = Reference::parse(reference).map_err(|e| UpdateError::BadReference(e.to_string()))?;
        let reason = reason_text(reason)?;
        let card = self.db.card(&card_id).await?.ok_or(UpdateError::UnknownCard(card_id))?;
        if amount.currency() != card.currency || amount.is_zero() {
            return Err(UpdateError::AmountOutOfRange { amount, min_minor: 1, max_minor: card.max_balance_minor });
        }
        let id = owed_id("correction", &[reference.as_str()]);
        let body = OwedBody {
            card_id,
            kind: OwedKind::Correction { reference: reference.as_str().to_owned() },
            direction: Direction::Debit,
            amount,
            reason,
            created_at: self.clock.now(),
        };
        let owed = Owed { id: id.clone(), status: OwedStatus::Owed, session: None, applied_by: None, body };
        let hold = Entries::correction_hold(&id, &card_id, amount)?;
        let trail = by.did(
            "correction_added",
            &id,
            serde_json::Value::Null,
            serde_json::json!({ "card_id": card_id.to_string(), "amount": amount.to_string(), "reason": owed.body.reason }),
        );
        match self.db.insert_owed(&owed, self.clock.now(), hold, trail).await.map_err(books)? {
            true => Ok(owed_reply(&owed, None)),
            false => {
                let existing = self.db.owed(&id).await?.ok_or_else(|| UpdateError::UnknownOwed(id.clone()))?;
                if existing.body.card_id != card_id || existing.body.amount != amount {
                    return Err(UpdateError::RefundIdInUse(reference.as_str().to_owned()));
                }
                Ok(owed_reply(&existing, None))
            }
        }
    }

    /// Cancels a correction no session is applying; voids its hold.
    pub async fn cancel_correction(&self, id: &str, by: &crate::console::Actor) -> Result<OwedReply, UpdateError> {
        let o = self.db.owed(id).await?.ok_or_else(|| UpdateError::UnknownOwed(id.to_owned()))?;
        if !matches!(o.body.kind, OwedKind::Correction { .. }) {
            return Err(UpdateError::NotCancellable(format!("{id} is a purchase refund")));
        }
        let void = Entries::owed_resolve(id, o.body.amount, CODE_CORRECTION, false)?;
        let trail = by.did(
            "correction_cancelled",
            id,
            serde_json::json!({ "status": "owed" }),
            serde_json::json!({ "status": "cancelled" }),
        );
        if o.status == OwedStatus::Owed
            && !self.db.cancel_owed(id, self.clock.now(), void, trail).await.map_err(books)?
        {
            return Err(UpdateError::NotCancellable(format!("{id} is being applied to the card; try later")));
        }
        let o = self.db.owed(id).await?.ok_or_else(|| UpdateError::UnknownOwed(id.to_owned()))?;
        match o.status {
            OwedStatus::Cancelled => Ok(owed_reply(&o, None)),
            OwedStatus::Applied => Err(UpdateError::NotCancellable(format!("{id} was applied to the card"))),
            OwedStatus::Owed => Err(UpdateError::NotCancellable(format!("{id} is being applied to the card"))),
            OwedStatus::Moved => Err(UpdateError::NotCancellable(format!("{id} was moved to a replacement card"))),
        }
    }

    /// M8: card `old`, lost or blocked, is replaced by card `new` (active,
    /// same currency): in one transaction, what the books hold on `old` is
    /// owed to `new` (a `replacement` credit, held old float → new float),
    /// and each refund still owed to `old` is moved to `new` (its hold
    /// voided and made again toward `new`; the old item `moved`). `new` is
    /// credited at its next presentation. Refused while anything else is in
    /// flight on `old` (a settlement's or a correction's hold, a charge, an
    /// item being applied), and if `new` could not take it all. Replacing
    /// `old` again by the same card answers what was done.
    pub async fn replace_card(
        &self,
        old: CardId,
        new: CardId,
        reason: &str,
        by: &crate::console::Actor,
    ) -> Result<Replaced, UpdateError> {
        let refuse = |why: String| Err(UpdateError::NotReplaceable(why));
        let old_card = self.db.card(&old).await?.ok_or(UpdateError::UnknownCard(old))?;
        let new_card = self.db.card(&new).await?.ok_or(UpdateError::UnknownCard(new))?;
        if old == new {
            return refuse(format!("card {old} cannot replace itself"));
        }
        let reason = reason_text(reason)?;
        let reason_kept = reason.clone();
        let replacement_id = replacement_id(&old);
        if let Some(done) = self.db.owed(&replacement_id).await? {
            if done.body.card_id != new {
                return refuse(format!("card {old} was replaced by card {}", done.body.card_id));
            }
            return Ok(Replaced { replacement: Some(owed_reply(&done, None)), moved: Vec::new() });
        }
        if old_card.status == CardRegistryStatus::Active {
            return refuse(format!("card {old} is active: report it lost or block it first"));
        }
        if new_card.status != CardRegistryStatus::Active || new_card.currency != old_card.currency {
            return refuse(format!("card {new} must be active and in {}", old_card.currency));
        }
        // As a transit operator reissues only a registered (記名式) card:
        // the value moves only for a registered member, to another card
        // of that member. An anonymous card's holder cannot be told from
        // its finder.
        let holder = self.db.card_member(&old).await?.map(|(member, _)| member);
        let Some(member) = holder else {
            return refuse(format!(
                "card {old} is not a registered member's: an unregistered card's value is not moved to another card"
            ));
        };
        if self.db.member(&member).await?.is_none() {
            return refuse(format!("card {old}'s member {member} is not in the member ledger"));
        }
        if self.db.card_member(&new).await?.map(|(m, _)| m).as_deref() != Some(member.as_str()) {
            return refuse(format!("card {new} is not member {member}'s: link it to the member first"));
        }
        let (posted, held) = self.books.card_float(&old).await?.unwrap_or((0, 0));
        if held > 0 {
            return refuse(format!(
                "{held} is held on card {old} (a settlement or a correction): void-lost or cancel it first"
            ));
        }
        let refunds = self.db.owed_for_card(&old, crate::db::MAX_LIST).await?;
        let movable = |k: &OwedKind| matches!(k, OwedKind::PurchaseRefund { .. } | OwedKind::TokenRedeemed { .. });
        if refunds.iter().any(|o| o.session.is_some() || !movable(&o.body.kind)) {
            return refuse(format!("an item owed to card {old} is being applied"));
        }
        let refunded: u64 = refunds.iter().map(|o| o.body.amount.amount_minor()).sum();
        if self.books.card_credits_pending(&old).await? != refunded {
            return refuse(format!("a charge of card {old} is in flight"));
        }
        let (new_posted, _) = self.books.card_float(&new).await?.unwrap_or((0, 0));
        let total = new_posted.saturating_add(posted).saturating_add(refunded);
        if total > new_card.max_balance_minor {
            return refuse(format!("card {new} can hold {}, not {total}", new_card.max_balance_minor));
        }
        let now = self.clock.now();
        let mut moves = Vec::with_capacity(refunds.len());
        for item in refunds {
            let moved = Owed {
                id: owed_id("moved", &[item.id.as_str()]),
                status: OwedStatus::Owed,
                session: None,
                applied_by: None,
                body: OwedBody { card_id: new, created_at: now, ..item.body.clone() },
            };
            let (void, hold) = match &item.body.kind {
                OwedKind::PurchaseRefund { payee, settlement_id, .. } => (
                    Entries::refund_void(&item.id, settlement_id.as_str(), payee, item.body.amount)?,
                    Entries::refund_hold(&moved.id, settlement_id.as_str(), payee, &new, moved.body.amount)?,
                ),
                // A redeemed token's value goes with the member's value.
                OwedKind::TokenRedeemed { .. } => (
                    Entries::owed_resolve(&item.id, item.body.amount, CODE_TOKEN_REDEEMED, false)?,
                    Entries::token_to_card_hold(&moved.id, &new, moved.body.amount)?,
                ),
                _ => continue,
            };
            moves.push(Move { from: item.id.clone(), moved, void, hold });
        }
        let replacement = match posted {
            0 => None,
            minor => {
                let amount =
                    Money::new(minor, old_card.currency).map_err(|e| UpdateError::BadReference(e.to_string()))?;
                let body = OwedBody {
                    card_id: new,
                    kind: OwedKind::Replacement { from_card: old },
                    direction: Direction::Credit,
                    amount,
                    reason,
                    created_at: now,
                };
                let item = Owed { id: replacement_id, status: OwedStatus::Owed, session: None, applied_by: None, body };
                let hold = Entries::replacement_hold(&item.id, &old, &new, amount)?;
                Some((item, hold))
            }
        };
        let after = serde_json::json!({
            "replaced_by": new.to_string(), "value_minor": posted, "refunds_moved": moves.len(), "reason": reason_kept,
        });
        let trail = by.did(CARD_REPLACED, &old.to_string(), serde_json::json!({ "status": old_card.status }), after);
        self.db.replace_card(old, &moves, replacement.as_ref(), now, trail).await.map_err(books)?;
        tracing::warn!(%old, %new, moved = moves.len(), value_minor = posted, "card replaced");
        Ok(Replaced {
            replacement: replacement.map(|(item, _)| owed_reply(&item, None)),
            moved: moves.iter().map(|m| owed_reply(&m.moved, None)).collect(),
        })
    }

    /// The card that replaced `old` (`replace_card`), if one did: its
    /// replacement item's card, or (no value moved, so no item) the
    /// trail's record of the replacement.
    pub(crate) async fn replaced_by(&self, old: &CardId) -> Result<Option<CardId>, crate::db::DbError> {
        if let Some(item) = self.db.owed(&replacement_id(old)).await? {
            return Ok(Some(item.body.card_id));
        }
        let rows = self.db.trail(Some(&old.to_string()), None, crate::db::MAX_LIST).await?;
        Ok(rows.iter().filter(|r| r.entry.action == CARD_REPLACED).find_map(|r| {
            let after: serde_json::Value = serde_json::from_str(&r.entry.after).ok()?;
            CardId::parse(after.get("replaced_by")?.as_str()?).ok()
        }))
    }

    /// The card that holds `card`'s value now: `card` itself, or the end
    /// of its chain of replacements (a replacement replaced in turn), at
    /// most [`REPLACEMENTS_FOLLOWED`] deep.
    pub(crate) async fn current_card(&self, card: CardId) -> Result<CardId, crate::db::DbError> {
        let mut at = card;
        for _ in 0..REPLACEMENTS_FOLLOWED {
            if self.db.card(&at).await?.is_some_and(|c| c.status == CardRegistryStatus::Active) {
                return Ok(at);
            }
            match self.replaced_by(&at).await? {
                Some(next) if next != at => at = next,
                _ => return Ok(at),
            }
        }
        Ok(at)
    }

    /// A card's items still owed.
    pub async fn owed_for_card(&self, card: &CardId) -> Result<Vec<OwedReply>, UpdateError> {
        Ok(self.db.owed_for_card(card, crate::db::MAX_LIST).await?.iter().map(|o| owed_reply(o, None)).collect())
    }

    /// `POST /v1/cards/{id}/owed/apply`: the card is presented; open a value
    /// update for its next owed item (credits before debits, oldest first),
    /// or hand back the one already applying it, for the wallet to go on or
    /// recover.
    pub async fn apply_owed(&self, card_id: CardId, update_id: UpdateId) -> Result<Applying, UpdateError> {
        self.apply_owed_of(card_id, update_id, Owing::Any).await
    }

    /// As [`Center::apply_owed`], for the items `which` allows: a wallet in
    /// the middle of a payment takes what the card is owed (credits) and
    /// leaves what it owes (debits) for when the cardholder is shown them
    /// (L4).
    pub async fn apply_owed_of(
        &self,
        card_id: CardId,
        update_id: UpdateId,
        which: Owing,
    ) -> Result<Applying, UpdateError> {
        if let Some((existing, _)) = self.db.value_update(update_id.as_str()).await? {
            if existing.card_id != card_id
                || !matches!(existing.purpose, Purpose::Owed { .. } | Purpose::TakeBackUnfunded { .. })
            {
                return Err(UpdateError::ChargeIdInUse(existing.id.to_string()));
            }
            return self.resume_value_update(existing).await.map(|r| Applying::Update(Box::new(r)));
        }
        // Anyone may ask for any card id, so an unknown card, one that is
        // not active and one owed nothing answer alike (M4: no card-id
        // oracle); nothing is applied to a card that is not active.
        let Some(card) = self.db.card(&card_id).await?.filter(|c| c.status == CardRegistryStatus::Active) else {
            return Ok(Applying::Nothing);
        };
        let items = self.db.owed_for_card(&card_id, OWED_CONSIDERED).await?;
        // One already being applied is finished first. Before its command
        // exists it belongs to the presentation that opened it (which holds
        // its access token): another one neither restarts its secure session
        // nor learns of it (M4), and the sweep ends it if it is abandoned.
        // Once its command is out, any presentation of the card may recover
        // it, as the card alone can say whether it was applied.
        if let Some(session) = items.iter().find_map(|i| i.session.as_ref()) {
            let (current, _) = self.load_update(session.as_str()).await?;
            if matches!(current.phase(), Phase::Authenticating | Phase::ReadingBalance) {
                return Ok(Applying::Nothing);
            }
            return self.resume_value_update(current).await.map(|r| Applying::Update(Box::new(r)));
        }
        // Then the first, credits before debits, that the card can take now
        // (L4): a credit that would pass the card's maximum balance waits
        // and does not hold back the items after it. (The books' posted
        // float is the card's balance, except after an unfunded credit,
        // which is why a debit is always tried: taking that value back is
        // what it is for, and the card itself refuses a debit it cannot
        // cover.)
        let balance = self.books.card_float(&card_id).await?.map_or(0, |(posted, _)| posted);
        let fits = |item: &Owed| match item.body.direction {
            Direction::Credit => balance.saturating_add(item.body.amount.amount_minor()) <= card.max_balance_minor,
            Direction::Debit => which == Owing::Any,
        };
        let Some(item) = items.into_iter().find(|item| fits(item)) else {
            return Ok(Applying::Nothing);
        };
        // Held with the item; made here only for an item stored before that
        // (the ledger answers `exists` for a hold that is there).
        let hold = match &item.body.kind {
            OwedKind::PurchaseRefund { payee, settlement_id, .. } => {
                Entries::refund_hold(&item.id, settlement_id.as_str(), payee, &item.body.card_id, item.body.amount)?
            }
            OwedKind::Correction { .. } => Entries::correction_hold(&item.id, &item.body.card_id, item.body.amount)?,
            OwedKind::Replacement { from_card } => {
                Entries::replacement_hold(&item.id, from_card, &item.body.card_id, item.body.amount)?
            }
            OwedKind::TokenRedeemed { .. } => {
                Entries::token_to_card_hold(&item.id, &item.body.card_id, item.body.amount)?
            }
            // Never in the books: nothing to hold.
            OwedKind::Unfunded { .. } => Entries::none(),
        };
        let purpose = match &item.body.kind {
            OwedKind::Unfunded { .. } => Purpose::TakeBackUnfunded { owed_id: item.id.clone() },
            _ => Purpose::Owed { owed_id: item.id.clone() },
        };
        let mut rng = self.random.generator();
        let (charge, init) = {
            let mut ctx = self.ctx(rng.as_mut());
            let input = NewUpdate {
                id: update_id,
                card_id: card.id,
                key_version: card.key_version,
                max_balance_minor: card.max_balance_minor,
                direction: item.body.direction,
                purpose,
                amount: item.body.amount,
                authorization: Some(Reference::parse(&item.id).map_err(|e| UpdateError::BadReference(e.to_string()))?),
            };
            ValueUpdate::create(&mut ctx, input)?
        };
        if !self.db.claim_owed(&item.id, &charge, self.clock.now(), hold).await.map_err(books)? {
            // Another presentation claimed it meanwhile: retry.
            return Err(crate::db::DbError::Conflict.into());
        }
        Ok(Applying::Update(Box::new(self.update_answer(&charge, &[init]))))
    }
}

/// The update id for an apply request: `vup_` and the first 16 bytes of
/// SHA-256 over the Idempotency-Key and the card, so a retry names the same
/// update.
pub fn apply_update_id(key: &str, card: &CardId) -> Result<UpdateId, kessai_core::ids::IdError> {
    let digest =
        Sha256Digest::of(&[b"kessai-owed-apply\0", key.as_bytes(), b"\0", card.to_string().as_bytes()].concat());
    UpdateId::parse(&format!("vup_{}", hex::encode(&digest.as_bytes()[..16])))
}

/// A write's error: a refusal of the books beyond the card's float is the
/// correction's own error, any other refusal the books'.
fn books(e: crate::db::DbError) -> UpdateError {
    match BooksError::from(e) {
        BooksError::Refused { what: "the correction hold", code } => UpdateError::CorrectionOverFloat(code),
        BooksError::Db(e) => UpdateError::Db(e),
        refused => UpdateError::Books(refused),
    }
}
