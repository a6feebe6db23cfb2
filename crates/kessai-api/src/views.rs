//! Records as the center shows them: a settlement, an owed item, a funding,
//! a prepaid card, a bank credit, a payout, a member.

use kessai_core::Money;
use kessai_core::ids::{CardId, RefundId, SettlementId, StoreId, UpdateId};
use kessai_core::messages::prepaid::FundingMethod;
use kessai_core::messages::registration::MemberKind;
use kessai_core::messages::value_update::Direction;
use kessai_core::money::Currency;
use kessai_core::time::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Phase, UpdateReply, formats};

/// `GET /v1/settlements/{id}`: a settlement (or a prepaid payment) as its
/// wallet or its store reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SettlementView {
    #[schemars(with = "formats::SettlementId")]
    pub settlement_id: String,
    pub phase: Phase,
    #[schemars(with = "formats::Money")]
    pub amount: Money,
    #[schemars(with = "formats::StoreId")]
    pub store: String,
    /// The store's mall, if it has one.
    #[schemars(with = "Option<formats::StoreId>")]
    pub member: Option<String>,
    pub order_id: String,
    /// For the settlement's wallet; null for its store.
    #[schemars(with = "Option<formats::CardId>")]
    pub card_id: Option<String>,
    /// For a prepaid payment's wallet: the prepaid card paid from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<formats::PrepaidId>")]
    pub prepaid_id: Option<String>,
    /// For the settlement's store: the card as it knows it (SIG3's
    /// `card_ref`); null for the wallet.
    pub card_ref: Option<String>,
    /// SIG3, once completed.
    #[schemars(with = "Option<formats::Jws>")]
    pub completion: Option<String>,
    /// SIG4, once the store sent it.
    #[schemars(with = "Option<formats::Jws>")]
    pub receipt: Option<String>,
    pub reason: Option<String>,
}

/// `GET /v1/settlements/{id}/receipt`: the store's receipt (SIG4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Receipt {
    #[schemars(with = "formats::Jws")]
    pub receipt: String,
}

/// Where an owed item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OwedStatus {
    /// Waiting for the card.
    Owed,
    /// The card confirmed it; posted.
    Applied,
    /// The operator cancelled it (corrections only); the hold is voided.
    Cancelled,
    /// Its card was replaced: the item was moved to the replacement (a new
    /// item, `owe_` from this one's id), its hold voided and made again.
    Moved,
}

impl OwedStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OwedStatus::Owed => "owed",
            OwedStatus::Applied => "applied",
            OwedStatus::Cancelled => "cancelled",
            OwedStatus::Moved => "moved",
        }
    }

    pub fn parse(s: &str) -> Option<OwedStatus> {
        [OwedStatus::Owed, OwedStatus::Applied, OwedStatus::Cancelled, OwedStatus::Moved]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// What an owed item is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OwedKind {
    /// A store's refund of a completed purchase: a credit to the card.
    PurchaseRefund {
        #[schemars(with = "formats::StoreId")]
        store: StoreId,
        #[schemars(with = "formats::StoreId")]
        payee: StoreId,
        #[schemars(with = "String")]
        refund_id: RefundId,
        #[schemars(with = "formats::SettlementId")]
        settlement_id: SettlementId,
    },
    /// An operator's correction: a debit of the card.
    Correction { reference: String },
    /// Value the card holds that its funding never paid: a charge's CREDIT
    /// the card applied whose authorization could not be captured. The
    /// books never posted it, so taking it off the card posts nothing.
    Unfunded {
        #[schemars(with = "formats::UpdateId")]
        update_id: UpdateId,
    },
    /// The value of card `from_card`, lost or blocked, credited to the card
    /// that replaces it (M8).
    Replacement {
        #[schemars(with = "formats::CardId")]
        from_card: CardId,
    },
    /// A bank deposit token the card gave up (#21): its value, credited to
    /// the card.
    TokenRedeemed {
        #[schemars(with = "formats::TokenId")]
        token_id: String,
    },
}

/// An owed item, as a store or the operator is answered about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OwedReply {
    #[schemars(with = "formats::OwedId")]
    pub owed_id: String,
    #[serde(flatten)]
    pub kind: OwedKind,
    #[schemars(with = "formats::CardId")]
    pub card_id: String,
    #[schemars(with = "formats::Direction")]
    pub direction: Direction,
    #[schemars(with = "formats::Money")]
    pub amount: Money,
    pub reason: String,
    pub status: OwedStatus,
    /// The value update that applied it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<formats::UpdateId>")]
    pub applied_by: Option<String>,
    /// For a refund: what is refunded of the purchase so far, this included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refunded_minor: Option<u64>,
}

/// What replacing a card did (M8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Replaced {
    /// The old card's value, owed to the new card (null if it held none).
    pub replacement: Option<OwedReply>,
    /// The refunds moved from the old card to the new one.
    pub moved: Vec<OwedReply>,
}

/// Where a funding stands. Stored as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FundingStatus {
    /// The money (a transfer, cash) has not been received yet.
    Awaiting,
    /// Cash above the dual-control limit, counted by one operator: a second
    /// must confirm before value is issued.
    Counted,
    /// The value is on the card.
    Issued,
    /// The value is on the card and the credit card charged (credit).
    Captured,
    /// The credit authorizer refused: nothing issued.
    Declined,
    /// The money did not arrive in time: nothing issued, and nothing will be.
    Expired,
}

impl std::fmt::Display for FundingStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FundingStatus {
    pub const ALL: [FundingStatus; 6] = [
        FundingStatus::Awaiting,
        FundingStatus::Counted,
        FundingStatus::Issued,
        FundingStatus::Captured,
        FundingStatus::Declined,
        FundingStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FundingStatus::Awaiting => "awaiting",
            FundingStatus::Counted => "counted",
            FundingStatus::Issued => "issued",
            FundingStatus::Captured => "captured",
            FundingStatus::Declined => "declined",
            FundingStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<FundingStatus> {
        FundingStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether the funding's value is on its card.
    pub fn issued(self) -> bool {
        matches!(self, FundingStatus::Issued | FundingStatus::Captured)
    }
}

/// A funding as the member (and the operator) sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Funding {
    #[schemars(with = "formats::FundingId")]
    pub funding_id: String,
    #[schemars(with = "formats::PrepaidId")]
    pub prepaid_id: String,
    pub request_id: String,
    #[schemars(with = "formats::FundingMethod")]
    pub method: FundingMethod,
    #[schemars(with = "formats::Money")]
    pub amount: Money,
    pub status: FundingStatus,
    /// What the transfer or the envelope must quote (transfer, cash): an
    /// ISO 11649 creditor reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Where to send the money (transfer, cash), until it is received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pay_to: Option<String>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<u64>")]
    pub expires_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<formats::Money>")]
    pub received: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Unix seconds.
    #[schemars(with = "u64")]
    pub created_at: Timestamp,
}

/// A prepaid card with its value and history, for its member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PrepaidCard {
    #[schemars(with = "formats::PrepaidId")]
    pub prepaid_id: String,
    pub status: String,
    #[schemars(with = "formats::Money")]
    pub balance: Money,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<u64>")]
    pub value_expires_at: Option<Timestamp>,
    pub fundings: Vec<Funding>,
    pub payments: Vec<PaymentLine>,
}

/// One payment of a prepaid card's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PaymentLine {
    #[schemars(with = "formats::SettlementId")]
    pub payment_id: String,
    #[schemars(with = "formats::StoreId")]
    pub store: String,
    pub store_name: String,
    pub order_id: String,
    #[schemars(with = "formats::Money")]
    pub amount: Money,
    #[schemars(with = "formats::Money")]
    pub balance_after: Money,
    /// Unix seconds.
    #[schemars(with = "u64")]
    pub at: Timestamp,
}

/// What a prepaid request answers: the funding made, the member's cards
/// (an inquiry), or the value update moving value to an IC card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PrepaidReply {
    Funding(Box<Funding>),
    Inquiry { cards: Vec<PrepaidCard> },
    Token(Box<DepositToken>),
    Update(Box<UpdateReply>),
}

/// Where a bank deposit token (seed 002) stands. Stored as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenStatus {
    /// The deposit has not been seen on the pool account's statement yet.
    Awaiting,
    /// The deposit did not arrive in time: no token, and none will be.
    Lapsed,
    /// The deposit arrived: the token is made and sealed, not yet on the
    /// card.
    Issued,
    /// The card holds the token.
    Stored,
    /// The card gave it up and the credit service provider honoured it: its
    /// value is owed to the card.
    Redeemed,
    /// Not redeemed before its expiry: its value is being paid back to
    /// the refund account (a payback in a clearing run's bank file).
    PayingBack,
    /// The bank confirmed the payback: the value is in the refund account.
    PaidBack,
    /// The bank gave the payback back (the account closed, the name did
    /// not match): the value is held until an operator corrects where it
    /// is paid back.
    PaybackFailed,
    /// Not redeemed before its expiry and not yet paid back: the next
    /// clearing run pays it back (after an operator's correction of the
    /// account, or when its payback was not yet made).
    Expired,
}

impl TokenStatus {
    pub const ALL: [TokenStatus; 9] = [
        TokenStatus::Awaiting,
        TokenStatus::Lapsed,
        TokenStatus::Issued,
        TokenStatus::Stored,
        TokenStatus::Redeemed,
        TokenStatus::PayingBack,
        TokenStatus::PaidBack,
        TokenStatus::PaybackFailed,
        TokenStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Awaiting => "awaiting",
            TokenStatus::Lapsed => "lapsed",
            TokenStatus::Issued => "issued",
            TokenStatus::Stored => "stored",
            TokenStatus::Redeemed => "redeemed",
            TokenStatus::PayingBack => "paying_back",
            TokenStatus::PaidBack => "paid_back",
            TokenStatus::PaybackFailed => "payback_failed",
            TokenStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<TokenStatus> {
        TokenStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Expired unredeemed: its value goes, or went, back to the
    /// depositor's account, and no redemption of it is honoured.
    pub fn paid_back(self) -> bool {
        matches!(
            self,
            TokenStatus::PayingBack | TokenStatus::PaidBack | TokenStatus::PaybackFailed | TokenStatus::Expired
        )
    }
}

/// A bank deposit token as its member sees it: the request, and once the
/// deposit arrived, the token's clear facts (never its sealed bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DepositToken {
    #[schemars(with = "formats::TokenId")]
    pub token_id: String,
    #[schemars(with = "formats::CardId")]
    pub card_id: String,
    pub request_id: String,
    #[schemars(with = "formats::Money")]
    pub amount: Money,
    pub status: TokenStatus,
    /// What the transfer must quote: an ISO 11649 creditor reference.
    pub reference: String,
    /// Where to send the money, until it is received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pay_to: Option<String>,
    /// Until when the deposit is awaited (unix seconds), while it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<u64>")]
    pub awaiting_until: Option<Timestamp>,
    /// The deposit's booking date on the pool account, `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deposited_on: Option<String>,
    /// When the token stops paying (unix seconds); its value then goes
    /// back to the member's account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<u64>")]
    pub expires_at: Option<Timestamp>,
    /// The credit service provider's key version that sealed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_version: Option<u8>,
    /// Unix seconds.
    #[schemars(with = "u64")]
    pub created_at: Timestamp,
}

/// What a prepaid payment answers: the completion (SIG3) and the card's new
/// balance (新残高).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PrepaidPaymentReply {
    /// The payment's id (a settlement id: the store's receipt names it).
    #[schemars(with = "formats::SettlementId")]
    pub settlement_id: String,
    #[schemars(with = "formats::PrepaidId")]
    pub prepaid_id: String,
    #[schemars(with = "formats::Jws")]
    pub completion: String,
    #[schemars(with = "formats::Money")]
    pub balance: Money,
    /// What reads of this payment (its receipt) carry as `Authorization:
    /// Bearer`, as for a settlement (M4).
    #[schemars(with = "formats::AccessToken")]
    pub access_token: String,
}

/// Where a bank credit stands in the operator's queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BankCreditStatus {
    /// Matched nothing: waits for an operator.
    Suspense,
    /// A reversal, recorded for an operator; no money moved.
    Review,
    /// Matched a funding.
    Matched,
    /// Applied to a funding by an operator.
    Applied,
    /// Sent back to whoever paid it, by an operator.
    Returned,
}

impl BankCreditStatus {
    pub const ALL: [BankCreditStatus; 5] = [
        BankCreditStatus::Suspense,
        BankCreditStatus::Review,
        BankCreditStatus::Matched,
        BankCreditStatus::Applied,
        BankCreditStatus::Returned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BankCreditStatus::Suspense => "suspense",
            BankCreditStatus::Review => "review",
            BankCreditStatus::Matched => "matched",
            BankCreditStatus::Applied => "applied",
            BankCreditStatus::Returned => "returned",
        }
    }

    pub fn parse(s: &str) -> Option<BankCreditStatus> {
        BankCreditStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A bank credit as the operator's queue shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BankCredit {
    pub entry_key: String,
    pub statement: String,
    pub source: String,
    pub booked_on: String,
    #[schemars(with = "formats::Money")]
    pub amount: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remitter: Option<String>,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub funding_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What an applicant is answered: the application number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApplicationReply {
    #[schemars(regex(pattern = r"^app_[0-9a-f]{32}$"))]
    pub application_id: String,
    #[schemars(with = "formats::ApplicationKind")]
    pub kind: MemberKind,
    pub status: String,
}

/// A member as entered in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MemberReply {
    #[schemars(with = "formats::MemberId")]
    pub member: String,
    pub kind: String,
    pub kid: String,
    /// Unix seconds.
    #[schemars(with = "u64")]
    pub not_before: Timestamp,
    /// Unix seconds.
    #[schemars(with = "u64")]
    pub not_after: Timestamp,
    pub status: String,
}

/// `POST /v1/claims`: a store's signed payment claim.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitClaim {
    /// `kessai-payment-claim+jwt`.
    #[schemars(with = "formats::Jws")]
    pub claim: String,
}

/// The answer to an accepted claim: the center's signed statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClaimReply {
    /// `kessai-claim-statement+jwt`.
    #[schemars(with = "formats::Jws")]
    pub statement: String,
}

/// One payout, as stored and as its store reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Payout {
    #[serde(rename = "payout_id")]
    #[schemars(with = "formats::PayoutId")]
    pub id: String,
    /// The clearing run: `clr_` and its cutoff (unix seconds).
    #[serde(rename = "run")]
    pub run_id: String,
    #[schemars(with = "formats::StoreId")]
    pub store: StoreId,
    #[schemars(with = "formats::CurrencyCode")]
    pub currency: Currency,
    /// Purchases and payments in it.
    pub gross_minor: u64,
    /// Refunds taken off.
    pub refunds_minor: u64,
    /// Refunds cancelled, payouts returned and put back, a balance carried
    /// from before clearing: signed.
    pub other_minor: i64,
    pub fees_minor: u64,
    /// What the store is sent: gross - refunds + other - fees.
    pub amount_minor: u64,
    pub items: u64,
    pub fee_bp: u32,
    pub fee_fixed_minor: u64,
    /// The store's bank account when the payout was made (`PayeeAccount`
    /// text).
    pub payee_account: String,
    /// What the bank files quote (EndToEndId, Zengin EDI).
    #[serde(rename = "bank_reference")]
    pub bank_ref: String,
    /// `in_transit`, `settled` or `failed`.
    #[schemars(with = "formats::PayoutStatus")]
    pub status: String,
    pub reason: Option<String>,
    /// Unix seconds.
    #[schemars(with = "u64")]
    pub created_at: Timestamp,
    /// Unix seconds.
    #[schemars(with = "u64")]
    pub updated_at: Timestamp,
}

/// A store's payouts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PayoutList {
    #[schemars(with = "formats::StoreId")]
    pub store: String,
    pub payouts: Vec<Payout>,
}

/// `GET /v1/payouts`: whose payouts (the caller's own unless given).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PayoutFilter {
    #[schemars(length(min = 1, max = 64))]
    pub store: Option<String>,
}

/// One item of a payout: a settlement, a refund, …, and its fee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PayoutLine {
    #[schemars(with = "formats::PayoutLineKind")]
    pub kind: String,
    /// The settlement, refund or payout it is of.
    pub reference: String,
    /// Signed: positive owed to the store, negative taken off.
    pub amount_minor: i64,
    pub fee_minor: u64,
    /// Unix seconds.
    pub at: u64,
}

/// `GET /v1/payouts/{id}`: a payout and its lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PayoutStatement {
    #[serde(flatten)]
    pub payout: Payout,
    pub lines: Vec<PayoutLine>,
}

/// What `POST /v1/cards/{id}/owed/apply` answers: the value update applying
/// the next item, or that nothing is owed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OwedApplied {
    Update(Box<UpdateReply>),
    Nothing(NothingOwed),
}

/// Nothing is owed to or by the card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NothingOwed {
    #[schemars(with = "formats::True")]
    pub nothing_owed: bool,
}
