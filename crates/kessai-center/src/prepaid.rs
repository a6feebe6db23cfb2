//! Virtual prepaid cards (仮想プリペイドカード, #18; seed 003/004 FIG. 5–7
//! and 12–15, seed 002's pool account): value the center holds for a
//! member, in the books like a card's float, funded by credit card, bank or
//! postal transfer, or cash, and paid to stores on the member's signed
//! payment instruction.
//!
//! Every request is the member's: a prepaid request (open, fund, inquire)
//! or a payment instruction, signed with the member's registered key, which
//! only passwords A and B open in the wallet. Value is issued only when its
//! money is confirmed, each in one transaction with the funding's change:
//!
//! ```text
//! credit:           request ─authorize─► issued ─capture─► captured        (or declined)
//! transfer, cash:   request ─► awaiting ─money matched─► issued             (or expired)
//! cash over limit:  awaiting ─first operator─► counted ─second operator─► issued
//! ```
//!
//! Money that matches no awaiting funding (an unknown reference, another
//! amount, a funding expired) goes to suspense and the operator's queue,
//! never to a card by guess. A payment is one transaction: the books
//! (prepaid → store payable, refused beyond the card's value), the card's
//! payment count, the payment with its completion (SIG3), delivered to the
//! store as a card settlement's is, and the answer.

use kessai_core::digest::Sha256Digest;
use kessai_core::ids::{FundingId, MessageId, PrepaidId, SettlementId, TransactionId};
use kessai_core::jws::{Claims, JwsError};
use kessai_core::messages::completion::{self, Completion, CompletionDraft};
use kessai_core::messages::instruction;
use kessai_core::messages::prepaid::{self, FundingMethod, PrepaidAction, PrepaidRequest};
use kessai_core::messages::{bill, receipt};
use kessai_core::time::Timestamp;
use kessai_core::{Currency, Money};
use serde::{Deserialize, Serialize};

use crate::authorizer::{AuthorizationRequest, Authorizer, AuthorizerError, PaymentCard};
use crate::books::{BooksError, Entries, Receiving};
use crate::db::{DbError, FundingRow, PaymentStored, PrepaidCardRow};
use crate::limits::{COMPLETION_LIFETIME_S, STEP_RETRIES_MAX};
use crate::members::SignerUnknown;
use crate::purchase::BillFacts;
use crate::service::{Answer, Center, CenterError};

pub use kessai_api::views::{
    BankCredit as CreditView, Funding as FundingView, FundingStatus, PaymentLine, PrepaidCard as CardView,
    PrepaidPaymentReply as PaymentReply, PrepaidReply,
};

/// The center's rules for prepaid cards (configuration `[prepaid]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrepaidPolicy {
    /// How long a card's value stays usable after the card was opened, if
    /// it expires at all (seconds). Expired value pays nothing; it is
    /// refunded to the member.
    pub value_lifetime_s: Option<u64>,
    /// Most value one prepaid card holds, in minor units.
    pub max_balance_minor: u64,
    /// Cash above this (minor units) is issued only once a second operator
    /// confirmed the count.
    pub cash_dual_control_minor: u64,
    /// How long a transfer or cash is awaited (seconds).
    pub awaiting_s: u64,
    /// The center's pool account, as shown to a member paying by bank
    /// transfer.
    pub bank_pool: String,
    /// The center's postal transfer account.
    pub postal_pool: String,
    /// Where cash is sent by registered mail.
    pub cash_address: String,
}

impl Default for PrepaidPolicy {
    fn default() -> PrepaidPolicy {
        PrepaidPolicy {
            value_lifetime_s: None,
            max_balance_minor: 1_000_000,
            cash_dual_control_minor: 100_000,
            awaiting_s: 7 * 86_400,
            bank_pool: "Kessai Bank (0999) Head Office (001) ordinary 1234567 KESSAI CENTER".into(),
            postal_pool: "Japan Post Bank transfer account 00100-9-123456 KESSAI CENTER".into(),
            cash_address: "Kessai Center, cash desk, 1-1 Marunouchi, Chiyoda-ku, Tokyo".into(),
        }
    }
}

/// A payment from a virtual prepaid card (FIG. 6–7): complete when made.
/// Its id is a settlement id, so the store handles its completion (SIG3)
/// and answers its receipt (SIG4) as it does a card settlement's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepaidPayment {
    pub id: SettlementId,
    pub account: PrepaidId,
    pub member: String,
    pub bill: BillFacts,
    /// The ledger transfer's id and SIG3's transaction id.
    pub transaction_id: TransactionId,
    /// The card's payment number: SIG3's `card_counter`.
    pub sequence: u32,
    pub completion_token: String,
    pub receipt_token: Option<String>,
    /// The card's value after this payment (新残高).
    pub balance_after_minor: u64,
    /// SHA-256 of the member's payment instruction (the exact token).
    pub instruction_hash: Sha256Digest,
    pub created_at: Timestamp,
}

/// Every way a prepaid request or payment is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrepaidError {
    /// The signature, the signer, the time or the body.
    #[error("the request is refused: {0}")]
    Refused(String),
    #[error("the payment instruction is refused: {0}")]
    Instruction(String),
    #[error("no prepaid card {0} of this member")]
    UnknownCard(String),
    #[error("prepaid card {0} is closed")]
    Closed(PrepaidId),
    #[error("the card holds {card}; the request is in {asked}")]
    Currency { card: Currency, asked: Currency },
    #[error("the card would hold more than {limit}")]
    OverMaxBalance { limit: Money },
    #[error("amount {amount} exceeds the limit {limit}")]
    OverLimit { amount: Money, limit: Money },
    #[error("the card's value expired at {0}")]
    ValueExpired(Timestamp),
    #[error("insufficient balance: the card holds {balance}, the bill asks {amount}")]
    Insufficient { balance: Money, amount: Money },
    #[error("the request id {0} was used for another request")]
    RequestIdReused(String),
    #[error("paying by credit card needs the card's number, expiry and security code")]
    PaymentCardRequired,
    #[error("the credit card was refused: {0}")]
    Authorizer(#[from] AuthorizerError),
    #[error("no funding {0}")]
    UnknownFunding(String),
    #[error("funding {id} is {status}; {expected}")]
    FundingState { id: String, status: &'static str, expected: &'static str },
    #[error("cash of {amount} needs a second operator, not {operator} again")]
    SecondOperator { amount: Money, operator: String },
    #[error("the second count ({second}) differs from the first ({first})")]
    CountDiffers { first: Money, second: Money },
    #[error("no bank credit {0} in suspense")]
    UnknownCredit(String),
    #[error("the bank statement is refused: {0}")]
    Statement(String),
    #[error("this bill is paid already")]
    BillPaid,
    #[error("IC card {0} is not linked to this member")]
    NotMembersCard(kessai_core::ids::CardId),
    #[error(transparent)]
    Update(crate::update::UpdateError),
    #[error(transparent)]
    Center(#[from] CenterError),
}

impl From<DbError> for PrepaidError {
    fn from(e: DbError) -> PrepaidError {
        match e {
            DbError::BillPaid => PrepaidError::BillPaid,
            e => PrepaidError::Center(crate::service::stored(e)),
        }
    }
}

impl From<BooksError> for PrepaidError {
    fn from(e: BooksError) -> PrepaidError {
        PrepaidError::Center(CenterError::Books(e))
    }
}

/// What payment `p` answers.
fn payment_reply(p: &PrepaidPayment, security: &crate::security::SecurityServer) -> Result<PaymentReply, PrepaidError> {
    let currency = p.bill.amount.currency();
    Ok(PaymentReply {
        settlement_id: p.id.to_string(),
        prepaid_id: p.account.to_string(),
        completion: p.completion_token.clone(),
        balance: money(p.balance_after_minor, currency)?,
        access_token: security.access_token(p.id.as_str()),
    })
}

fn money(minor: u64, currency: Currency) -> Result<Money, PrepaidError> {
    Money::new(minor, currency).map_err(|e| PrepaidError::Refused(e.to_string()))
}

fn funding_view(f: &FundingRow, policy: &PrepaidPolicy) -> FundingView {
    let waiting = matches!(f.status, FundingStatus::Awaiting | FundingStatus::Counted);
    let pay_to = match f.method {
        FundingMethod::BankTransfer => Some(&policy.bank_pool),
        FundingMethod::PostalTransfer => Some(&policy.postal_pool),
        FundingMethod::Cash => Some(&policy.cash_address),
        FundingMethod::Credit => None,
    };
    FundingView {
        funding_id: f.id.to_string(),
        prepaid_id: f.account.to_string(),
        request_id: f.request_id.clone(),
        method: f.method,
        amount: f.amount,
        status: f.status,
        reference: f.reference.clone(),
        pay_to: pay_to.filter(|_| waiting).cloned(),
        expires_at: f.expires_at.filter(|_| waiting),
        received: f.received_minor.and_then(|m| Money::new(m, f.amount.currency()).ok()),
        reason: f.reason.clone(),
        created_at: f.created_at,
    }
}

/// The funding of a member's request: derived from the member and its
/// request id, so a request run again after a crash asks the authorizer
/// under the same charge id (answered with the same authorization, never a
/// second one).
fn funding_id(member: &str, request: &kessai_core::ids::RequestId) -> FundingId {
    let digest = Sha256Digest::of(format!("kessai-funding\0{member}\0{request}").as_bytes());
    let hex = hex::encode(&digest.as_bytes()[..16]);
    // `fnd_` and hex digits: always a valid id.
    FundingId::parse(&format!("fnd_{hex}")).unwrap_or_else(|_| unreachable!("hex is a valid id"))
}

/// A payment reference a member quotes on a transfer or an envelope: an
/// ISO 11649 creditor reference over 12 random digits.
pub(crate) fn new_reference(rng: &mut dyn kessai_core::random::Random) -> String {
    let mut bytes = [0u8; 8];
    rng.fill_bytes(&mut bytes);
    let digits = format!("{:012}", u64::from_be_bytes(bytes) % 1_000_000_000_000);
    kessai_bank::rf::make(&digits).map(|r| r.to_string()).unwrap_or(digits)
}

impl Center {
    /// The member who signed a prepaid request or an instruction, verified.
    async fn member_keys_for(
        &self,
        token: &str,
        refused: fn(String) -> PrepaidError,
    ) -> Result<(crate::db::MemberRow, kessai_core::keys::KeyDirectory), PrepaidError> {
        match self.signing_member(token).await? {
            Ok(found) => Ok(found),
            Err(SignerUnknown::Unreadable(why)) => Err(refused(why)),
            Err(SignerUnknown::NotActive(member)) => Err(refused(format!("no active member {member}"))),
        }
    }

    /// POST /v1/prepaid/requests: a member's signed prepaid request. A card
    /// number (`payment_card`) goes beside the request, never inside it,
    /// and is not stored.
    pub async fn prepaid_request(
        &self,
        token: &str,
        payment_card: Option<&PaymentCard>,
        authorizer: &dyn Authorizer,
    ) -> Result<PrepaidReply, PrepaidError> {
        let (member, keys) = self.member_keys_for(token, PrepaidError::Refused).await?;
        let verified = prepaid::verify(token, &keys, self.clock.as_ref(), &self.center_id)
            .map_err(|e| PrepaidError::Refused(e.to_string()))?;
        let request = verified.message();
        if request.member().as_str() != member.member {
            return Err(PrepaidError::Refused("the request is not its signer's".into()));
        }
        match request.action() {
            PrepaidAction::Inquire => self.inquire(&member.member, request.account()).await,
            PrepaidAction::ToCard => self.to_card(request).await,
            PrepaidAction::DepositToken => self.deposit_token_request(request).await,
            PrepaidAction::Open | PrepaidAction::Fund => {
                self.fund(request, payment_card, authorizer).await.map(|f| PrepaidReply::Funding(Box::new(f)))
            }
        }
    }

    pub(crate) async fn inquire(&self, member: &str, card: Option<&PrepaidId>) -> Result<PrepaidReply, PrepaidError> {
        let mut cards = self.db.prepaid_cards_of(member).await?;
        if let Some(card) = card {
            cards.retain(|c| &c.id == card);
            if cards.is_empty() {
                return Err(PrepaidError::UnknownCard(card.to_string()));
            }
        }
        let fundings = self.db.fundings_of(member, card).await?;
        let payments = self.db.prepaid_payments_of(member, card).await?;
        let mut views = Vec::with_capacity(cards.len());
        for c in cards {
            let balance = self.books.prepaid_balance(&c.id).await?.unwrap_or(0);
            views.push(CardView {
                prepaid_id: c.id.to_string(),
                status: c.status.clone(),
                balance: money(balance, c.currency)?,
                value_expires_at: c.value_expires_at,
                fundings: fundings
                    .iter()
                    .filter(|f| f.account == c.id)
                    .map(|f| funding_view(f, &self.prepaid))
                    .collect(),
                payments: payments
                    .iter()
                    .filter(|p| p.account == c.id)
                    .map(|p| {
                        Ok(PaymentLine {
                            payment_id: p.id.to_string(),
                            store: p.bill.payee().to_string(),
                            store_name: p.bill.store_name.as_str().to_owned(),
                            order_id: p.bill.order_id.to_string(),
                            amount: p.bill.amount,
                            balance_after: money(p.balance_after_minor, c.currency)?,
                            at: p.created_at,
                        })
                    })
                    .collect::<Result<_, PrepaidError>>()?,
            });
        }
        Ok(PrepaidReply::Inquiry { cards: views })
    }

    /// Open or fund: checked, then (credit) authorized and issued at once,
    /// or (transfer, cash) awaiting its money under a reference.
    async fn fund(
        &self,
        request: &PrepaidRequest,
        payment_card: Option<&PaymentCard>,
        authorizer: &dyn Authorizer,
    ) -> Result<FundingView, PrepaidError> {
        let member = request.member().as_str().to_owned();
        let (Some(amount), Some(method)) = (request.amount(), request.method()) else {
            return Err(PrepaidError::Refused("open and fund name an amount and a method".into()));
        };
        // The same request again (its answer lost, signed again): as it stands.
        if let Some(found) = self.db.funding_by_request(&member, request.request_id().as_str()).await? {
            return self.same_request(found, request);
        }
        let now = self.clock.now();
        if amount.amount_minor() > self.max_amount_minor {
            let limit = money(self.max_amount_minor, amount.currency())?;
            return Err(PrepaidError::OverLimit { amount, limit });
        }
        let mut rng = self.random.generator();
        let existing = match request.account() {
            None => None,
            Some(id) => {
                let card = self.db.prepaid_card(id).await?.filter(|c| c.member == member);
                let card = card.ok_or_else(|| PrepaidError::UnknownCard(id.to_string()))?;
                if card.status != "active" {
                    return Err(PrepaidError::Closed(card.id));
                }
                if card.currency != amount.currency() {
                    return Err(PrepaidError::Currency { card: card.currency, asked: amount.currency() });
                }
                Some(card)
            }
        };
        let balance = match &existing {
            Some(card) => self.books.prepaid_balance(&card.id).await?.unwrap_or(0),
            None => 0,
        };
        if balance.saturating_add(amount.amount_minor()) > self.prepaid.max_balance_minor {
            return Err(PrepaidError::OverMaxBalance {
                limit: money(self.prepaid.max_balance_minor, amount.currency())?,
            });
        }
        let card = existing.unwrap_or_else(|| PrepaidCardRow {
            id: PrepaidId::generate(rng.as_mut()),
            member: member.clone(),
            currency: amount.currency(),
            status: "active".into(),
            // The card's value is usable for the policy's lifetime from
            // its opening (none: it does not expire).
            value_expires_at: self
                .prepaid
                .value_lifetime_s
                .map(|s| Timestamp::from_unix_s(now.unix_s().saturating_add(s))),
            payments: 0,
            created_at: now,
        });
        let opening = request.action() == PrepaidAction::Open;
        let mut funding = FundingRow {
            id: funding_id(&member, request.request_id()),
            member: member.clone(),
            request_id: request.request_id().as_str().to_owned(),
            account: card.id.clone(),
            method,
            amount,
            status: FundingStatus::Awaiting,
            reference: None,
            authorization: None,
            received_minor: None,
            operators: Vec::new(),
            reason: None,
            expires_at: None,
            created_at: now,
            updated_at: now,
        };
        let mut entries = if opening { Entries::open_prepaid(&card.id, card.currency)? } else { Entries::none() };
        if method == FundingMethod::Credit {
            let payment_card = payment_card.ok_or(PrepaidError::PaymentCardRequired)?;
            let asked = AuthorizationRequest { card: payment_card, amount, charge_id: funding.id.as_str(), now };
            match authorizer.authorize(asked).await {
                Ok(reference) => {
                    funding.status = FundingStatus::Issued;
                    funding.authorization = Some(reference.as_str().to_owned());
                    funding.received_minor = Some(amount.amount_minor());
                    entries = Entries::prepaid_funding(funding.id.as_str(), Receiving::Credit, &card.id, amount)?;
                }
                Err(e) if e.is_decline() => {
                    funding.status = FundingStatus::Declined;
                    funding.reason = Some(e.to_string());
                    // Kept, so the same request again is answered alike;
                    // no card is opened and nothing is issued.
                    self.db.fund_prepaid(&funding, Entries::none(), now).await?;
                    return Err(PrepaidError::Authorizer(e));
                }
                Err(e) => return Err(PrepaidError::Authorizer(e)),
            }
        } else {
            funding.reference = Some(new_reference(rng.as_mut()));
            funding.expires_at = Some(Timestamp::from_unix_s(now.unix_s().saturating_add(self.prepaid.awaiting_s)));
        }
        let stored = match opening {
            true => self.db.open_prepaid(&card, &funding, entries, now).await?,
            false => self.db.fund_prepaid(&funding, entries, now).await?,
        };
        if let Some(found) = stored {
            // A concurrent copy of this request was stored first: ours is
            // not, and its authorization is given back.
            if let Some(reference) = &funding.authorization {
                let reference = kessai_core::messages::Reference::parse(reference)
                    .map_err(|e| PrepaidError::Refused(e.to_string()))?;
                if let Err(e) = authorizer.void(&reference).await {
                    tracing::warn!(funding = %funding.id, error = %e, "voiding a duplicate funding's authorization");
                }
            }
            return self.same_request(found, request);
        }
        tracing::info!(funding = %funding.id, card = %card.id, method = method.as_str(), amount = %amount, status = funding.status.as_str(), "prepaid funding");
        if funding.status == FundingStatus::Issued {
            self.capture_funding(&funding, authorizer).await;
            if let Some(now_stored) = self.db.funding(funding.id.as_str()).await? {
                funding = now_stored;
            }
        }
        Ok(funding_view(&funding, &self.prepaid))
    }

    /// Value moved from the member's prepaid card onto the member's IC card
    /// (#18 ④): a value update funded by the prepaid card, which the wallet
    /// runs through the card's secure session as a charge (SIG5). The IC
    /// card must be linked to the member; the prepaid card must be the
    /// member's, active, its value unexpired and enough. Its id is derived
    /// from the member and the request id, so the same request again is the
    /// same update.
    async fn to_card(&self, request: &PrepaidRequest) -> Result<PrepaidReply, PrepaidError> {
        let member = request.member().as_str();
        let (Some(account), Some(amount), Some(card_id)) = (request.account(), request.amount(), request.card_id())
        else {
            return Err(PrepaidError::Refused(
                "moving value names the prepaid card, the amount and the IC card".into(),
            ));
        };
        if !matches!(self.db.card_member(&card_id).await?, Some((m, _)) if m == member) {
            return Err(PrepaidError::NotMembersCard(card_id));
        }
        let prepaid = self.db.prepaid_card(account).await?.filter(|c| c.member == member);
        let prepaid = prepaid.ok_or_else(|| PrepaidError::UnknownCard(account.to_string()))?;
        if prepaid.status != "active" {
            return Err(PrepaidError::Closed(prepaid.id));
        }
        if prepaid.currency != amount.currency() {
            return Err(PrepaidError::Currency { card: prepaid.currency, asked: amount.currency() });
        }
        if let Some(expired) = prepaid.value_expires_at.filter(|at| *at <= self.clock.now()) {
            return Err(PrepaidError::ValueExpired(expired));
        }
        let balance = self.books.prepaid_balance(&prepaid.id).await?.unwrap_or(0);
        if balance < amount.amount_minor() {
            return Err(PrepaidError::Insufficient { balance: money(balance, prepaid.currency)?, amount });
        }
        let digest = Sha256Digest::of(format!("kessai-prepaid-to-card\0{member}\0{}", request.request_id()).as_bytes());
        let id = kessai_core::ids::UpdateId::parse(&format!("vup_{}", hex::encode(&digest.as_bytes()[..16])))
            .map_err(|e| PrepaidError::Refused(e.to_string()))?;
        let reply = self.create_from_prepaid(id, card_id, &prepaid.id, amount).await.map_err(PrepaidError::Update)?;
        tracing::info!(card = %card_id, prepaid = %prepaid.id, amount = %amount, update = %reply.update_id, "value moving from a prepaid card to an IC card");
        Ok(PrepaidReply::Update(Box::new(reply)))
    }

    /// A request id seen before: its funding as it stands, if the request
    /// is the same; refused if it asks something else.
    fn same_request(&self, found: FundingRow, request: &PrepaidRequest) -> Result<FundingView, PrepaidError> {
        let same = Some(found.amount) == request.amount()
            && Some(found.method) == request.method()
            && request.account().is_none_or(|a| a == &found.account);
        if !same {
            return Err(PrepaidError::RequestIdReused(request.request_id().to_string()));
        }
        if found.status == FundingStatus::Declined {
            return Err(PrepaidError::Authorizer(AuthorizerError::Declined));
        }
        Ok(funding_view(&found, &self.prepaid))
    }

    /// Captures an issued credit funding's authorization; a failure is
    /// left to [`Center::capture_prepaid_fundings`].
    async fn capture_funding(&self, f: &FundingRow, authorizer: &dyn Authorizer) {
        let Some(reference) = f.authorization.as_deref().and_then(|r| kessai_core::messages::Reference::parse(r).ok())
        else {
            return;
        };
        if let Err(e) = authorizer.capture(&reference, f.amount).await {
            tracing::warn!(funding = %f.id, error = %e, "capture of a prepaid funding failed; will retry");
            return;
        }
        let captured = FundingRow { status: FundingStatus::Captured, updated_at: self.clock.now(), ..f.clone() };
        if let Err(e) =
            self.db.change_funding(&captured, FundingStatus::Issued, Entries::none(), captured.updated_at, None).await
        {
            tracing::warn!(funding = %f.id, error = %e, "recording a prepaid funding's capture");
        }
    }

    /// Captures the credit fundings issued but not captured (a capture that
    /// failed, a crash between issue and capture). Any instance may run it:
    /// capturing twice is idempotent at the authorizer, and the change is a
    /// compare-and-set. Returns how many were captured.
    pub async fn capture_prepaid_fundings(&self, authorizer: &dyn Authorizer) -> Result<usize, PrepaidError> {
        let mut captured = 0;
        for f in self.db.fundings_in(FundingStatus::Issued, crate::limits::SWEEP_BATCH_MAX).await? {
            if f.method == FundingMethod::Credit {
                self.capture_funding(&f, authorizer).await;
                captured += usize::from(
                    self.db.funding(f.id.as_str()).await?.is_some_and(|f| f.status == FundingStatus::Captured),
                );
            }
        }
        Ok(captured)
    }

    /// Ends the fundings whose money did not arrive in time.
    pub async fn expire_prepaid_fundings(&self) -> Result<u64, PrepaidError> {
        Ok(self.db.expire_fundings(self.clock.now()).await?)
    }

    /// POST /v1/prepaid/payments: pays a store's bill (SIG1) from a member's
    /// virtual prepaid card on the member's signed payment instruction.
    pub async fn pay_from_prepaid(
        &self,
        bill_token: &str,
        instruction_token: &str,
        answer: Option<Answer>,
    ) -> Result<PaymentReply, PrepaidError> {
        let keys = self.db.store_keys().await?;
        let bill = bill::verify(bill_token, &keys, self.clock.as_ref(), &self.center_id).map_err(CenterError::Bill)?;
        let payee = bill.message().payee().clone();
        let store = self.db.store(&payee).await?.ok_or_else(|| CenterError::UnknownStore(payee.to_string()))?;
        crate::service::bill_within_mall(&bill, &store)?;
        let (member, member_keys) = self.member_keys_for(instruction_token, PrepaidError::Instruction).await?;
        let verified = instruction::verify(instruction_token, &member_keys, self.clock.as_ref(), &self.center_id)
            .map_err(|e| PrepaidError::Instruction(e.to_string()))?;
        let i = verified.message();
        let account = i.prepaid_id().ok_or_else(|| PrepaidError::Instruction("it names no prepaid card".into()))?;
        let facts = BillFacts::from_verified(&bill, store.name.clone());
        if !i.bill_hash().ct_eq(&facts.bill_hash) || i.amount() != facts.amount || i.store() != &facts.store {
            return Err(PrepaidError::Instruction("it is for another bill, amount or store".into()));
        }
        let amount = facts.amount;
        if amount.amount_minor() > self.max_amount_minor {
            return Err(PrepaidError::OverLimit { amount, limit: money(self.max_amount_minor, amount.currency())? });
        }
        let instruction_hash = Sha256Digest::of_token(instruction_token);
        // One bill is paid once: the same member's instruction again (a
        // replay, or a retry signed again) is answered with that payment,
        // whatever the card holds now.
        if let Some(answer) = self.paid_before(&facts, &member.member).await? {
            return answer;
        }
        let mut attempt = 0;
        loop {
            let card = self.db.prepaid_card(account).await?.filter(|c| c.member == member.member);
            let card = card.ok_or_else(|| PrepaidError::UnknownCard(account.to_string()))?;
            let now = self.clock.now();
            if card.status != "active" {
                return Err(PrepaidError::Closed(card.id));
            }
            if card.currency != amount.currency() {
                return Err(PrepaidError::Currency { card: card.currency, asked: amount.currency() });
            }
            if let Some(expired) = card.value_expires_at.filter(|at| *at <= now) {
                return Err(PrepaidError::ValueExpired(expired));
            }
            let balance = self.books.prepaid_balance(&card.id).await?.unwrap_or(0);
            let insufficient =
                || PrepaidError::Insufficient { balance: money(balance, card.currency).unwrap_or(amount), amount };
            let Some(balance_after) = balance.checked_sub(amount.amount_minor()) else {
                // A concurrent copy of this request may have paid it meanwhile.
                return self.paid_before(&facts, &member.member).await?.unwrap_or_else(|| Err(insufficient()));
            };
            let sequence =
                u32::try_from(card.payments.saturating_add(1)).map_err(|_| PrepaidError::Closed(card.id.clone()))?;
            let payment = self.sign_payment(&card, &facts, sequence, balance_after, instruction_hash, now)?;
            let entries = Entries::prepaid_payment(
                &payment.transaction_id,
                payment.id.as_str(),
                &card.id,
                facts.payee(),
                amount,
            )?;
            let reply = payment_reply(&payment, &self.security)?;
            let response = answer.as_ref().map(|a| a.saved(&reply)).transpose()?;
            match self.db.insert_prepaid_payment(&payment, entries, response, now).await {
                Ok(PaymentStored::Inserted) => {
                    tracing::info!(payment = %payment.id, card = %card.id, store = %facts.payee(), amount = %amount, "paid from a prepaid card");
                    self.completed.push(crate::delivery::Deliverable::Prepaid(Box::new(payment)));
                    return Ok(reply);
                }
                // Paid meanwhile by a concurrent copy of this request.
                Ok(PaymentStored::Existing(found)) if found.member == member.member => {
                    return payment_reply(&found, &self.security);
                }
                Ok(PaymentStored::Existing(_)) => return Err(PrepaidError::BillPaid),
                Err(DbError::BooksRefused { code: "exceeds_credits", .. }) => {
                    return self.paid_before(&facts, &member.member).await?.unwrap_or_else(|| Err(insufficient()));
                }
                Err(e) if (e.is_retryable() || matches!(e, DbError::Conflict)) && attempt < STEP_RETRIES_MAX => {
                    attempt += 1
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One bill is paid once: if it was paid from a prepaid card, the
    /// answer to the same member's instruction again (a replay, a retry
    /// signed again) is that payment, whatever the card holds now; to
    /// anyone else, that the bill is paid.
    async fn paid_before(
        &self,
        bill: &BillFacts,
        member: &str,
    ) -> Result<Option<Result<PaymentReply, PrepaidError>>, PrepaidError> {
        let found = self.db.prepaid_payment_of_bill(&bill.store, bill.bill_id.as_str()).await?;
        Ok(found.map(|p| match p.member == member {
            true => payment_reply(&p, &self.security),
            false => Err(PrepaidError::BillPaid),
        }))
    }

    /// The payment, with its completion (SIG3) signed: a prepaid card's
    /// reference in place of a card's, its payment number as the counter.
    fn sign_payment(
        &self,
        card: &PrepaidCardRow,
        facts: &BillFacts,
        sequence: u32,
        balance_after_minor: u64,
        instruction_hash: Sha256Digest,
        now: Timestamp,
    ) -> Result<PrepaidPayment, PrepaidError> {
        let mut rng = self.random.generator();
        let id = SettlementId::generate(rng.as_mut());
        let transaction_id = TransactionId::generate(rng.as_mut());
        let draft = CompletionDraft {
            settlement_id: id.clone(),
            bill_hash: facts.bill_hash,
            card_ref: self.security.prepaid_ref(&facts.store, &card.id),
            transaction_id,
            amount: facts.amount,
            store: facts.store.clone(),
            member: facts.member.clone(),
            card_counter: sequence,
            completed_at: now,
        };
        let signing = |e: JwsError| PrepaidError::Center(CenterError::Step(crate::purchase::StepError::Signing(e)));
        let done = Completion::new(draft).map_err(|e| signing(e.into()))?;
        let claims =
            Claims::for_lifetime(self.center_id.clone(), MessageId::generate(rng.as_mut()), now, COMPLETION_LIFETIME_S)
                .map_err(signing)?;
        let completion_token = completion::sign(&claims, &done, self.center_key.as_ref()).map_err(signing)?;
        Ok(PrepaidPayment {
            id,
            account: card.id.clone(),
            member: card.member.clone(),
            bill: facts.clone(),
            transaction_id,
            sequence,
            completion_token,
            receipt_token: None,
            balance_after_minor,
            instruction_hash,
            created_at: now,
        })
    }

    /// Stores the store's receipt (SIG4) of a prepaid payment, checked as a
    /// card settlement's is.
    pub(crate) async fn accept_prepaid_receipt(
        &self,
        p: PrepaidPayment,
        version: i64,
        token: &str,
    ) -> Result<(), CenterError> {
        let keys = self.db.store_keys().await?;
        let verified =
            receipt::verify(token, &keys, self.clock.as_ref()).map_err(|e| CenterError::Receipt(e.to_string()))?;
        crate::service::receipt_matches(verified.message(), &p.id, &p.completion_token, &p.bill)?;
        if p.receipt_token.is_some() {
            return Ok(());
        }
        let p = PrepaidPayment { receipt_token: Some(token.to_owned()), ..p };
        self.db.prepaid_payment_receipted(&p, version).await?;
        Ok(())
    }
}

/// Which account a statement is of: where its credits were received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementSource {
    /// The center's pool account at its bank: bank transfers.
    Bank,
    /// The center's postal transfer account: postal transfers.
    Postal,
}

impl StatementSource {
    fn as_str(self) -> &'static str {
        match self {
            StatementSource::Bank => "bank",
            StatementSource::Postal => "postal",
        }
    }

    fn receiving(self) -> Receiving {
        match self {
            StatementSource::Bank => Receiving::BankPool,
            StatementSource::Postal => Receiving::PostalPool,
        }
    }

    fn method(self) -> FundingMethod {
        match self {
            StatementSource::Bank => FundingMethod::BankTransfer,
            StatementSource::Postal => FundingMethod::PostalTransfer,
        }
    }
}

/// What importing a statement did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub statement: String,
    pub format: String,
    /// Credits issued to the funding they matched.
    pub matched: usize,
    /// Credits held in suspense for an operator.
    pub suspense: usize,
    /// Reversals, recorded for an operator; no money moved.
    pub review: usize,
    /// Credits imported before: nothing changed.
    pub already_imported: usize,
    /// Credits the bank or the credit service provider could not decide on
    /// now (a token's): not taken, nothing written; imported again later.
    pub deferred: usize,
    /// Debits on the statement (not the center's to match).
    pub debits: usize,
}

impl From<crate::db::BankCreditRow> for CreditView {
    fn from(c: crate::db::BankCreditRow) -> CreditView {
        CreditView {
            entry_key: c.entry_key,
            statement: c.statement,
            source: c.source,
            booked_on: c.booked_on,
            amount: c.amount,
            reference: c.reference,
            remitter: c.remitter,
            status: c.status,
            funding_id: c.funding_id,
            reason: c.reason,
        }
    }
}

impl ImportReport {
    /// Adds the counts of `page` (a later page of the same statement).
    pub fn add(&mut self, page: ImportReport) {
        if self.statement.is_empty() {
            self.statement = page.statement;
            self.format = page.format;
        }
        self.matched += page.matched;
        self.suspense += page.suspense;
        self.review += page.review;
        self.already_imported += page.already_imported;
        self.deferred += page.deferred;
        self.debits += page.debits;
    }
}

impl Center {
    /// Imports a bank or postal statement (camt.053, camt.054 or a Zengin
    /// transfer notice): each credit, once by its bank entry, either issues
    /// the funding awaiting exactly it (its reference, its amount, its
    /// method, not expired) or goes to suspense with why. Importing a
    /// statement again changes nothing.
    pub async fn import_statement(&self, bytes: &[u8], source: StatementSource) -> Result<ImportReport, PrepaidError> {
        let statement = kessai_bank::parse(bytes).map_err(|e| PrepaidError::Statement(e.to_string()))?;
        let mut report = ImportReport {
            statement: statement.id.clone(),
            format: format!("{:?}", statement.format),
            debits: statement.debits,
            ..ImportReport::default()
        };
        for credit in &statement.credits {
            let mut attempt = 0;
            loop {
                match self.take_credit(&statement.id, credit, source).await {
                    Ok(outcome) => {
                        match outcome {
                            Some("matched") => report.matched += 1,
                            Some("suspense") => report.suspense += 1,
                            Some(_) => report.review += 1,
                            None => report.already_imported += 1,
                        }
                        break;
                    }
                    // The funding moved meanwhile (expired, or another
                    // import of an overlapping statement), or PostgreSQL
                    // refused a write that met another (the same entry, or
                    // a pool's account, written by two imports at once):
                    // look again, and find it taken.
                    Err(PrepaidError::Center(CenterError::Db(e)))
                        if (matches!(e, DbError::Conflict) || e.is_retryable() || e.is_unique_violation())
                            && attempt < STEP_RETRIES_MAX =>
                    {
                        attempt += 1
                    }
                    // A token's credit the bank or the provider could not
                    // decide on now: nothing written; the others go on.
                    Err(PrepaidError::Center(e @ (CenterError::Bank(_) | CenterError::Provider(_)))) => {
                        tracing::warn!(entry = %credit.entry_key, error = %e, "credit deferred: imported again later");
                        report.deferred += 1;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        tracing::info!(statement = %report.statement, matched = report.matched, suspense = report.suspense, review = report.review, already = report.already_imported, deferred = report.deferred, "bank statement imported");
        Ok(report)
    }

    /// One credit: `Some(status)` as recorded, `None` if imported before.
    async fn take_credit(
        &self,
        statement: &str,
        credit: &kessai_bank::Credit,
        source: StatementSource,
    ) -> Result<Option<&'static str>, PrepaidError> {
        let now = self.clock.now();
        let key = format!("{}:{}", source.as_str(), credit.entry_key);
        // Imported before: nothing to ask anyone (the write would find it
        // taken too).
        if self.db.bank_credit(&key).await?.is_some() {
            return Ok(None);
        }
        let reference = credit.reference.as_ref().map(|r| r.to_string());
        let mut row = crate::db::BankCreditRow {
            entry_key: key.clone(),
            statement: statement.chars().take(140).collect(),
            source: source.as_str().into(),
            booked_on: credit.booked_on.clone(),
            amount: credit.amount,
            reference: reference.clone(),
            remitter: credit.remitter.clone(),
            status: "suspense".into(),
            funding_id: None,
            reason: None,
            created_at: now,
        };
        if credit.reversal {
            row.status = "review".into();
            row.reason = Some("a reversal of an earlier credit: no money moved".into());
            return Ok(self.db.take_bank_credit(&row, None, Entries::none(), now, None).await?.recorded("review"));
        }
        let funding = match &reference {
            Some(r) => self.db.funding_by_reference(r).await?,
            None => None,
        };
        // A deposit token's reference (bank transfers only): the token is
        // made in the credit's transaction, or the credit waits in suspense
        // with why not.
        let token = match (&reference, &funding, source) {
            (Some(r), None, StatementSource::Bank) => self.db.token_by_reference(r).await?,
            _ => None,
        };
        if let Some(t) = token {
            let token_id = t.id.to_string();
            match self.issue_token_for(t, row.clone(), &credit.booked_on).await? {
                Ok(taken) => return Ok(taken),
                Err(why) => {
                    row.funding_id = Some(token_id);
                    row.reason = Some(why);
                    let entries = Entries::suspense(&key, source.receiving(), credit.amount)?;
                    return Ok(self.db.take_bank_credit(&row, None, entries, now, None).await?.recorded("suspense"));
                }
            }
        }
        let why_not = match &funding {
            None if reference.is_none() => Some("no payment reference".to_owned()),
            None => Some("the reference matches no request".to_owned()),
            Some(f) if f.method != source.method() => Some(format!("the request was for {}", f.method.as_str())),
            Some(f) if f.status != FundingStatus::Awaiting => Some(format!("the request is {}", f.status.as_str())),
            Some(f) if f.expires_at.is_some_and(|at| at < now) => Some("the request expired".to_owned()),
            Some(f) if f.amount != credit.amount => {
                Some(format!("{} received for a request of {}", credit.amount, f.amount))
            }
            Some(_) => None,
        };
        match (funding, why_not) {
            (Some(f), None) => {
                row.status = "matched".into();
                row.funding_id = Some(f.id.to_string());
                let issued = FundingRow {
                    status: FundingStatus::Issued,
                    received_minor: Some(credit.amount.amount_minor()),
                    updated_at: now,
                    ..f.clone()
                };
                let entries = Entries::prepaid_funding(f.id.as_str(), source.receiving(), &f.account, credit.amount)?;
                let taken = self
                    .db
                    .take_bank_credit(&row, Some(crate::db::CreditIssues::Funding(&issued)), entries, now, None)
                    .await?;
                if taken == crate::db::CreditTaken::Recorded {
                    tracing::info!(funding = %f.id, card = %f.account, amount = %credit.amount, "transfer matched; value issued");
                }
                Ok(taken.recorded("matched"))
            }
            (found, why) => {
                row.funding_id = found.map(|f| f.id.to_string());
                row.reason = why;
                let entries = Entries::suspense(&key, source.receiving(), credit.amount)?;
                Ok(self.db.take_bank_credit(&row, None, entries, now, None).await?.recorded("suspense"))
            }
        }
    }

    /// An operator applies a credit held in suspense (a partial payment, a
    /// mistyped reference) to a funding of its method awaiting money: the
    /// amount received is issued to that funding's card.
    pub async fn apply_suspense(
        &self,
        entry_key: &str,
        funding_id: &str,
        by: &crate::console::Actor,
    ) -> Result<FundingView, PrepaidError> {
        let now = self.clock.now();
        let credit = self.db.bank_credit(entry_key).await?.filter(|c| c.status == "suspense");
        let credit = credit.ok_or_else(|| PrepaidError::UnknownCredit(entry_key.chars().take(64).collect()))?;
        let f = self
            .db
            .funding(funding_id)
            .await?
            .ok_or_else(|| PrepaidError::UnknownFunding(funding_id.chars().take(64).collect()))?;
        let method_of = |source: &str| match source {
            "postal" => FundingMethod::PostalTransfer,
            "cash" => FundingMethod::Cash,
            _ => FundingMethod::BankTransfer,
        };
        if f.status != FundingStatus::Awaiting || f.method != method_of(&credit.source) {
            return Err(PrepaidError::FundingState {
                id: f.id.to_string(),
                status: f.status.as_str(),
                expected: "a transfer of the credit's kind awaiting its money",
            });
        }
        if f.amount.currency() != credit.amount.currency() {
            return Err(PrepaidError::Currency { card: f.amount.currency(), asked: credit.amount.currency() });
        }
        let issued = FundingRow {
            status: FundingStatus::Issued,
            received_minor: Some(credit.amount.amount_minor()),
            reason: Some(format!("applied from suspense: {}", credit.entry_key)),
            updated_at: now,
            ..f.clone()
        };
        let key = format!("suspense-apply:{}", credit.entry_key);
        let entries = Entries::prepaid_funding(&key, Receiving::Suspense, &f.account, credit.amount)?;
        let trail = by.did(
            "bank_credit_applied",
            &credit.entry_key,
            serde_json::json!({ "credit": "suspense", "funding": f.id.as_str(), "funding_status": "awaiting" }),
            serde_json::json!({ "credit": "applied", "funding_status": "issued", "amount": credit.amount.to_string() }),
        );
        if !self.db.apply_suspense(&credit.entry_key, &issued, entries, now, trail).await? {
            return Err(PrepaidError::FundingState {
                id: f.id.to_string(),
                status: "changed meanwhile",
                expected: "look at the queue again",
            });
        }
        tracing::info!(credit = %credit.entry_key, funding = %f.id, amount = %credit.amount, "suspense applied");
        Ok(funding_view(&issued, &self.prepaid))
    }

    /// An operator sends a credit held in suspense back to whoever paid it
    /// (a transfer nobody asked for, an envelope with the wrong amount):
    /// the money leaves the pool it came into, and nothing is issued. The
    /// transfer back is the operator's to make; `reason` says how.
    pub async fn return_suspense(
        &self,
        entry_key: &str,
        reason: &str,
        by: &crate::console::Actor,
    ) -> Result<CreditView, PrepaidError> {
        let now = self.clock.now();
        let credit = self.db.bank_credit(entry_key).await?.filter(|c| c.status == "suspense");
        let credit = credit.ok_or_else(|| PrepaidError::UnknownCredit(entry_key.chars().take(64).collect()))?;
        let to = match credit.source.as_str() {
            "bank" => Receiving::BankPool,
            "postal" => Receiving::PostalPool,
            "cash" => Receiving::Cash,
            other => return Err(PrepaidError::Statement(format!("a credit from {other:?} cannot be returned"))),
        };
        let entries = Entries::suspense_returned(&credit.entry_key, to, credit.amount)?;
        let recorded = format!("returned: {reason}");
        let trail = by.did(
            "bank_credit_returned",
            &credit.entry_key,
            serde_json::json!({ "status": "suspense", "reason": credit.reason }),
            serde_json::json!({ "status": "returned", "reason": reason, "amount": credit.amount.to_string() }),
        );
        if !self.db.return_suspense(&credit.entry_key, &recorded, entries, now, trail).await? {
            return Err(PrepaidError::UnknownCredit(credit.entry_key));
        }
        tracing::info!(credit = %credit.entry_key, amount = %credit.amount, operator = %by.name, "suspense returned");
        Ok(CreditView { status: "returned".into(), reason: Some(recorded), ..CreditView::from(credit) })
    }

    /// An operator records cash received by registered mail for a funding
    /// (FIG. 15): the amount counted. Up to the dual-control limit it is
    /// issued at once; above it, a second operator (another certificate)
    /// must count the same amount before anything is issued. Cash that is
    /// not the amount asked is held in suspense.
    pub async fn record_cash(
        &self,
        funding_id: &str,
        counted: Money,
        by: &crate::console::Actor,
    ) -> Result<FundingView, PrepaidError> {
        let operator = by.name.as_str();
        let now = self.clock.now();
        let f = self
            .db
            .funding(funding_id)
            .await?
            .ok_or_else(|| PrepaidError::UnknownFunding(funding_id.chars().take(64).collect()))?;
        if f.method != FundingMethod::Cash || !matches!(f.status, FundingStatus::Awaiting | FundingStatus::Counted) {
            return Err(PrepaidError::FundingState {
                id: f.id.to_string(),
                status: f.status.as_str(),
                expected: "a cash funding awaiting its money",
            });
        }
        if counted.currency() != f.amount.currency() {
            return Err(PrepaidError::Currency { card: f.amount.currency(), asked: counted.currency() });
        }
        let dual = counted.amount_minor() > self.prepaid.cash_dual_control_minor;
        let mut operators = f.operators.clone();
        if f.status == FundingStatus::Counted {
            let first = money(f.received_minor.unwrap_or(0), f.amount.currency())?;
            if operators.iter().any(|o| o == operator) {
                return Err(PrepaidError::SecondOperator { amount: first, operator: operator.to_owned() });
            }
            if first != counted {
                return Err(PrepaidError::CountDiffers { first, second: counted });
            }
        }
        operators.push(operator.to_owned());
        let changed = if dual && f.status == FundingStatus::Awaiting {
            let pending = FundingRow {
                status: FundingStatus::Counted,
                received_minor: Some(counted.amount_minor()),
                operators,
                updated_at: now,
                ..f.clone()
            };
            let trail = by.did(
                "cash_counted",
                f.id.as_str(),
                serde_json::json!({ "status": "awaiting" }),
                serde_json::json!({ "status": "counted", "counted": counted.to_string() }),
            );
            let moved =
                self.db.change_funding(&pending, FundingStatus::Awaiting, Entries::none(), now, Some(trail)).await?;
            tracing::info!(funding = %f.id, operator, amount = %counted, "cash counted; a second operator must confirm");
            (moved, pending)
        } else {
            let mut issued = FundingRow {
                status: FundingStatus::Issued,
                received_minor: Some(counted.amount_minor()),
                operators,
                updated_at: now,
                ..f.clone()
            };
            let entries = if counted == f.amount {
                Entries::prepaid_funding(f.id.as_str(), Receiving::Cash, &f.account, counted)?
            } else {
                // Not what was asked: nothing on the card by guess; the
                // operator's queue decides.
                issued.status = FundingStatus::Awaiting;
                issued.reason =
                    Some(format!("{counted} in the envelope for a request of {}; held in suspense", f.amount));
                Entries::none()
            };
            if issued.status == FundingStatus::Awaiting {
                let row = crate::db::BankCreditRow {
                    entry_key: format!("cash:{}:{}", f.id, now.unix_s()),
                    statement: format!("cash counted by {}", issued.operators.join(" and ")),
                    source: "cash".into(),
                    booked_on: now.utc().get(..10).unwrap_or_default().to_owned(),
                    amount: counted,
                    reference: f.reference.clone(),
                    remitter: None,
                    status: "suspense".into(),
                    funding_id: Some(f.id.to_string()),
                    reason: issued.reason.clone(),
                    created_at: now,
                };
                let entries = Entries::suspense(&row.entry_key, Receiving::Cash, counted)?;
                let trail = by.did(
                    "cash_counted",
                    f.id.as_str(),
                    serde_json::json!({ "status": f.status.as_str() }),
                    serde_json::json!({ "status": "awaiting", "counted": counted.to_string(), "held": "suspense" }),
                );
                self.db.take_bank_credit(&row, None, entries, now, Some(trail)).await?;
                return Ok(funding_view(&f, &self.prepaid));
            }
            let trail = by.did(
                "cash_counted",
                f.id.as_str(),
                serde_json::json!({ "status": f.status.as_str() }),
                serde_json::json!({ "status": issued.status.as_str(), "counted": counted.to_string() }),
            );
            let moved = self.db.change_funding(&issued, f.status, entries, now, Some(trail)).await?;
            tracing::info!(funding = %f.id, operators = ?issued.operators, amount = %counted, "cash recorded; value issued");
            (moved, issued)
        };
        match changed {
            (true, f) => Ok(funding_view(&f, &self.prepaid)),
            (false, _) => Err(PrepaidError::FundingState {
                id: f.id.to_string(),
                status: "changed meanwhile",
                expected: "look at the funding again",
            }),
        }
    }

    /// The fundings in `status` (the operator's queues).
    pub async fn fundings_in(&self, status: FundingStatus) -> Result<Vec<FundingView>, PrepaidError> {
        let rows = self.db.fundings_in(status, crate::db::MAX_LIST).await?;
        Ok(rows.iter().map(|f| funding_view(f, &self.prepaid)).collect())
    }

    /// The bank credits in `status` (`suspense`, `review`, …).
    pub async fn bank_credits_in(&self, status: &str) -> Result<Vec<CreditView>, PrepaidError> {
        Ok(self.db.bank_credits_in(status, crate::db::MAX_LIST).await?.into_iter().map(CreditView::from).collect())
    }
}

impl crate::db::CreditTaken {
    pub(crate) fn recorded(self, status: &'static str) -> Option<&'static str> {
        match self {
            crate::db::CreditTaken::Recorded => Some(status),
            crate::db::CreditTaken::AlreadyImported => None,
        }
    }
}
