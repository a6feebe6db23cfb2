//! What the center's purchase and value-update steps answer, as the
//! center writes it and the wallet reads it (PROTOCOL §5, §9).

use kessai_core::Money;
use kessai_core::ids::{PrepaidId, UpdateId};
use kessai_core::messages::value_update::Direction;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Phase, Reason, formats};

/// One record of the card's own log, as the center unsealed it and the
/// cardholder is shown it (PROTOCOL §4, READ LOG).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogEntry {
    pub kind: LogKind,
    pub transaction_id: String,
    pub amount_minor: u64,
    pub counter: u32,
    pub balance_after_minor: u64,
    /// Counterpart (first 8 bytes of SHA-256 of the store or funding
    /// reference), hex.
    pub counterpart: String,
    pub time_unix_s: u64,
}

/// What a card's log record did: moved value out or in, or stored or gave
/// up a bank deposit token (no change to the balance).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    Debit,
    Credit,
    TokenStored,
    TokenRedeemed,
}

impl LogKind {
    pub const ALL: [LogKind; 4] = [LogKind::Debit, LogKind::Credit, LogKind::TokenStored, LogKind::TokenRedeemed];

    /// The wire (and stored) name.
    pub const fn as_str(self) -> &'static str {
        match self {
            LogKind::Debit => "debit",
            LogKind::Credit => "credit",
            LogKind::TokenStored => "token_stored",
            LogKind::TokenRedeemed => "token_redeemed",
        }
    }

    pub fn parse(name: &str) -> Option<LogKind> {
        LogKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for LogKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What became of a store's bill, as its store may ask (L1: a store purges
/// an unpaid order only when nothing can pay it any more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BillState {
    /// No settlement and no prepaid payment names it.
    None,
    /// A settlement is under way: it may still complete.
    Open,
    /// Its settlement was voided; nothing else can pay it under this id
    /// (one settlement per bill).
    Voided,
    /// Paid: by a completed settlement or a prepaid card.
    Paid,
}

/// `GET /v1/stores/{store}/bills/{bill_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BillAnswer {
    #[schemars(with = "formats::StoreId")]
    pub store: String,
    pub bill_id: String,
    pub state: BillState,
}

/// Where a statement (the card's log read through the center) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatementPhase {
    Authenticating,
    Reading,
    Done,
}

/// What a statement step answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StatementReply {
    #[schemars(with = "formats::StatementId")]
    pub statement_id: String,
    pub phase: StatementPhase,
    /// Commands to relay to the card, in order, as hex.
    #[serde(default)]
    #[schemars(with = "Vec<formats::Hex>")]
    pub apdus: Vec<String>,
    /// The card's log, newest first, once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<Vec<LogEntry>>,
    /// The access token every later request on this id carries as
    /// `Authorization: Bearer` (M4); in the answers of its own routes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<formats::AccessToken>")]
    pub access_token: Option<String>,
}

/// Where a token session (a card's deposit tokens stored or redeemed
/// through the center, #21) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenSessionPhase {
    Authenticating,
    /// The sealed batch is out; its answers are awaited.
    Sent,
    Done,
}

/// A token that did not move in a session, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TokenRefusal {
    #[schemars(with = "formats::TokenId")]
    pub token_id: String,
    pub reason: String,
}

/// A token redeemed in a session: it paid the bill of the settlement the
/// cardholder chose it for, and what it held beyond that (or all of it)
/// is owed to the card, credited when the card is next presented for what
/// it is owed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TokenRedeemed {
    #[schemars(with = "formats::TokenId")]
    pub token_id: String,
    /// The token's value.
    #[schemars(with = "formats::Money")]
    pub amount: Money,
    /// The settlement whose bill the token paid, if the cardholder paid a
    /// store with it (its SIG3 is the settlement's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<formats::SettlementId>")]
    pub settlement_id: Option<String>,
    /// What is owed to the card (all of the token, or what it held beyond
    /// the bill), as an owed item; none when the bill took all of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<formats::OwedId>")]
    pub owed_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<formats::Money>")]
    pub owed: Option<Money>,
}

/// A token as the card lists it (its clear header and state), with what the
/// center knows of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CardToken {
    #[schemars(with = "formats::TokenId")]
    pub token_id: String,
    #[schemars(with = "formats::Money")]
    pub amount: Money,
    /// Unix seconds: after this the card refuses to redeem it.
    pub expires_at: u64,
    pub key_version: u8,
    /// Redeemed on the card (kept as proof until the center collected it).
    pub redeemed: bool,
    /// The card's counter at its newest record (its store or redemption).
    pub counter: u32,
    /// Where the center has it; absent for a token the center never issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<crate::views::TokenStatus>,
    /// The deposit's booking date, `YYYY-MM-DD`, as the center has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deposited_on: Option<String>,
}

/// What a token session step answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TokenSessionReply {
    #[schemars(with = "formats::TokenSessionId")]
    pub session_id: String,
    pub phase: TokenSessionPhase,
    /// Commands to relay to the card, in order, as hex.
    #[serde(default)]
    #[schemars(with = "Vec<formats::Hex>")]
    pub apdus: Vec<String>,
    /// The tokens the card proved it holds, once done.
    #[serde(default)]
    #[schemars(with = "Vec<formats::TokenId>")]
    pub stored: Vec<String>,
    /// The token redeemed, once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redeemed: Option<TokenRedeemed>,
    /// The card's token table, once a listing session is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_card: Option<Vec<CardToken>>,
    /// The tokens that did not move, and why (a stored one stays issued
    /// and is offered again next time).
    #[serde(default)]
    pub refused: Vec<TokenRefusal>,
    /// The access token every later request on this id carries as
    /// `Authorization: Bearer` (M4); in the answers of its own routes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<formats::AccessToken>")]
    pub access_token: Option<String>,
}

/// What a value update is for. Stored in the record; records made before
/// decreases and refunds existed are charges.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Purpose {
    /// Value bought with a credit card; the authorization funds it.
    #[default]
    Charge,
    /// Card value given back to the credit card that paid charge
    /// `charge_id` (a decrease); `authorization` is that charge's.
    RefundToCreditCard {
        #[schemars(with = "formats::UpdateId")]
        charge_id: UpdateId,
    },
    /// Applies what is owed (`owed_id`: a purchase refund or a correction,
    /// see the center's owed items).
    Owed {
        #[schemars(with = "formats::OwedId")]
        owed_id: String,
    },
    /// Takes off the card value its funding never paid (owed item
    /// `owed_id`, see an unfunded owed item); the books never
    /// posted it, so nothing is posted.
    TakeBackUnfunded {
        #[schemars(with = "formats::OwedId")]
        owed_id: String,
    },
    /// Value moved from the member's virtual prepaid card `prepaid_id` (#18),
    /// on the member's signed request; that card funds it.
    FromPrepaid {
        #[schemars(with = "formats::PrepaidId")]
        prepaid_id: PrepaidId,
    },
}

impl Purpose {
    /// Its stored name.
    pub fn name(&self) -> &'static str {
        match self {
            Purpose::Charge => "charge",
            Purpose::RefundToCreditCard { .. } => "refund_to_credit_card",
            Purpose::Owed { .. } => "owed",
            Purpose::TakeBackUnfunded { .. } => "take_back_unfunded",
            Purpose::FromPrepaid { .. } => "from_prepaid",
        }
    }
}

/// What a step answers to the wallet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub struct StepReply {
    #[schemars(with = "formats::SettlementId")]
    pub settlement_id: String,
    pub phase: Phase,
    /// Commands to relay to the card, in order, as hex.
    #[schemars(with = "Vec<formats::Hex>")]
    pub apdus: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<formats::Jws>")]
    pub offer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<formats::Jws>")]
    pub completion: Option<String>,
    /// The balance read securely from the card, once read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_minor: Option<u64>,
    /// Why a settlement ended voided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The same as a stable code: `insufficient_balance`, `cancelled`,
    /// `not_applied`, `card_lost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<Reason>,
    /// The access token every later request on this id carries as
    /// `Authorization: Bearer` (M4); in the answers of its own routes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<formats::AccessToken>")]
    pub access_token: Option<String>,
}

/// What a charge step answers to the wallet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, JsonSchema)]
pub struct UpdateReply {
    /// The value update's id (`vup_…`).
    #[schemars(with = "formats::UpdateId")]
    pub update_id: String,
    /// The same id under its name of the last release (every value update
    /// was called a charge); sent for one more release.
    #[schemars(with = "formats::UpdateId")]
    pub charge_id: String,
    pub phase: Phase,
    /// `credit` (charge, refund) or `debit` (decrease, correction).
    #[schemars(with = "formats::Direction")]
    pub direction: Direction,
    /// `{"kind":"charge"}`, `{"kind":"refund_to_credit_card","charge_id":…}`
    /// or `{"kind":"owed","owed_id":…}`.
    pub purpose: Purpose,
    /// Commands to relay to the card, in order, as hex.
    #[schemars(with = "Vec<formats::Hex>")]
    pub apdus: Vec<String>,
    #[schemars(with = "formats::Money")]
    pub amount: Money,
    /// The authorizer's reference (SIG5 `funding_ref`); a charge has one
    /// once its authenticate step authorized it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub funding_ref: Option<String>,
    /// The value update (SIG5), while the sealed CREDIT is out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<formats::Jws>")]
    pub value_update: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_minor: Option<u64>,
    /// The card's balance after the credit, from its sealed answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_after_minor: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `cancelled`, `over_max_balance`, `not_applied`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<Reason>,
    /// The access token every later request on this id carries as
    /// `Authorization: Bearer` (M4); in the answers of its own routes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<formats::AccessToken>")]
    pub access_token: Option<String>,
}
