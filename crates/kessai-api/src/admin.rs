//! The operator's API (`/v1/admin`, mutual TLS with an operator's
//! certificate): what an operator sends, and what the center answers that
//! is not a record of its own kind ([`crate::views`]).

use kessai_core::Money;
use kessai_core::time::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::formats;
use crate::views::{BankCredit, Funding, OwedReply, PrepaidCard};

/// `POST /v1/admin/stores`: a store (or a mall) and its keys.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterStore {
    #[schemars(with = "formats::StoreId")]
    pub id: String,
    /// Display name: no control characters, at most 200 bytes of UTF-8.
    #[schemars(length(min = 1, max = 200), regex(pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$"))]
    pub name: String,
    /// A registered mall (400 unknown_mall otherwise).
    #[serde(default)]
    #[schemars(with = "Option<formats::StoreId>")]
    pub mall: Option<String>,
    /// An https:// URL, at most 512 bytes (400 bad_notify_url otherwise).
    #[serde(default)]
    #[schemars(with = "Option<formats::NotifyUrl>")]
    pub notify_url: Option<String>,
    /// The store's client certificate name.
    #[serde(default)]
    pub client_name: Option<String>,
    /// Where payouts go: `zengin:BBBB-SSS-T-NNNNNNN:HOLDER` (half-width
    /// kana) or `iban:IBAN[:BIC]:HOLDER`; anything else is refused
    /// (bad_bank_account).
    #[serde(default)]
    pub bank_account: Option<String>,
    /// The store's public keys, a JWK Set of Ed25519 keys (400 bad_jwks
    /// otherwise).
    #[serde(default)]
    #[schemars(with = "Option<formats::StoreJwks>")]
    pub jwks: Option<Value>,
}

/// What registering a store answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StoreRegistered {
    #[schemars(with = "formats::StoreId")]
    pub store: String,
    /// How many keys it has now.
    pub keys: usize,
}

/// What revoking a store's key answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KeyRevoked {
    #[schemars(with = "formats::StoreId")]
    pub store: String,
    #[schemars(with = "formats::Kid")]
    pub kid: String,
    #[schemars(with = "formats::True")]
    pub revoked: bool,
}

/// `POST /v1/admin/cards`: an IC card issued.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterCard {
    #[schemars(with = "formats::CardId")]
    pub card_id: String,
    /// A key version the center holds master keys for (400
    /// unknown_key_version otherwise).
    pub key_version: u8,
    #[schemars(with = "formats::CurrencyCode")]
    pub currency: String,
    #[schemars(range(min = 1, max = u64::MAX))]
    pub max_balance_minor: u64,
    /// Value put on the card at issuance, recorded in the books (the image
    /// must hold the same): at most max_balance_minor (400 bad_amounts
    /// otherwise).
    #[serde(default)]
    #[schemars(range(max = kessai_core::limits::MAX_AMOUNT_MINOR))]
    pub initial_value_minor: u64,
}

/// A card's status in the registry, as the operator sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CardStatus {
    Active,
    Blocked,
    Lost,
}

/// What registering a card, or changing its status, answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CardState {
    #[schemars(with = "formats::CardId")]
    pub card_id: String,
    pub status: CardStatus,
}

/// `POST /v1/admin/cards/{id}/status`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeCardStatus {
    pub status: CardStatus,
    #[schemars(with = "formats::Reason500")]
    pub reason: String,
}

/// A reason an operator gives for a change (voiding, rejecting).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GiveReason {
    #[schemars(with = "formats::Reason500")]
    pub reason: String,
}

/// `GET /v1/admin/settlements`: the filters and the page.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SettlementFilter {
    #[schemars(with = "Option<formats::CardId>")]
    pub card: Option<String>,
    #[schemars(with = "Option<crate::Phase>")]
    pub phase: Option<String>,
    /// The store that signed the bill.
    #[schemars(with = "Option<formats::StoreId>")]
    pub store: Option<String>,
    /// Created at or after, unix seconds.
    #[schemars(range(max = i64::MAX))]
    pub from: Option<u64>,
    /// Created before, unix seconds.
    #[schemars(range(max = i64::MAX))]
    pub to: Option<u64>,
    /// The `next` of the page before: the listing goes on after it, never
    /// skipping or repeating a settlement however many are opened
    /// meanwhile.
    #[schemars(with = "Option<formats::Cursor>")]
    pub after: Option<String>,
    /// At most 500 are listed.
    #[schemars(range(min = 1, max = i64::MAX), extend("default" = 100))]
    pub limit: Option<i64>,
}

/// A settlement as an operator's listing shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SettlementRow {
    #[schemars(with = "formats::SettlementId")]
    pub settlement_id: String,
    pub phase: crate::Phase,
    #[schemars(with = "formats::CardId")]
    pub card_id: String,
    #[schemars(with = "formats::StoreId")]
    pub store: String,
    /// The store's mall, if it has one.
    #[schemars(with = "Option<formats::StoreId>")]
    pub member: Option<String>,
    pub order_id: String,
    #[schemars(with = "formats::Money")]
    pub amount: Money,
    /// Unix seconds.
    #[schemars(with = "u64")]
    pub created_at: Timestamp,
    /// Whether the store's receipt (SIG4) arrived.
    pub receipt: bool,
    pub reason: Option<String>,
}

/// A page of settlements, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SettlementPage {
    pub settlements: Vec<SettlementRow>,
    /// The cursor of this page's last settlement, for `after`; null on the
    /// last page.
    #[schemars(with = "Option<formats::Cursor>")]
    pub next: Option<String>,
}

/// What voiding a settlement of a lost card answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SettlementVoided {
    #[schemars(with = "formats::SettlementId")]
    pub settlement_id: String,
    pub phase: crate::Phase,
    pub reason: Option<String>,
}

/// `POST /v1/admin/cards/{id}/corrections`: value taken off the card at its
/// next presentation.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddCorrection {
    /// The operator's ticket (1 to 512 printable ASCII characters): the same
    /// reference again answers the same correction.
    #[schemars(regex(pattern = r"^[!-~]{1,512}$"))]
    pub reference: String,
    /// In the card's currency (422 amount_out_of_range otherwise).
    #[schemars(with = "formats::PositiveMoney")]
    pub amount: Money,
    #[schemars(with = "formats::Line200")]
    pub reason: String,
}

/// What is owed to or by a card, not yet applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OwedList {
    pub owed: Vec<OwedReply>,
}

/// `POST /v1/admin/cards/{id}/replace`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplaceCard {
    /// The card that takes over: registered, active, same currency.
    #[schemars(with = "formats::CardId")]
    pub replacement: String,
    #[schemars(with = "formats::Line200")]
    pub reason: String,
}

/// `POST /v1/admin/cards/{id}/member`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkCardMember {
    /// The member the card is issued to; null or absent unlinks the card.
    #[serde(default)]
    #[schemars(with = "Option<formats::MemberId>")]
    pub member: Option<String>,
    /// Whether its purchases need the member's signed payment instruction
    /// (on unless turned off).
    #[serde(default = "on")]
    pub instruction_required: bool,
}

fn on() -> bool {
    true
}

/// What linking a card to a member answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CardMemberLinked {
    #[schemars(with = "formats::CardId")]
    pub card_id: String,
    pub member: Option<String>,
    pub instruction_required: bool,
}

/// `POST /v1/admin/members/{id}/revoke`: a member's key reported lost.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeMember {
    #[schemars(with = "formats::Line200")]
    pub reason: String,
}

/// `GET /v1/admin/applications`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplicationFilter {
    /// `received` unless given.
    #[schemars(with = "Option<ApplicationStatus>")]
    pub status: Option<String>,
}

/// Where an application stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationStatus {
    Received,
    Approved,
    Rejected,
}

/// An application as the operator's queue shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApplicationRow {
    pub application_id: String,
    #[schemars(with = "formats::ApplicationKind")]
    pub kind: String,
    pub name: String,
    pub contact: String,
    pub status: ApplicationStatus,
    /// Unix seconds.
    #[schemars(with = "u64")]
    pub created_at: Timestamp,
}

/// Applications, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApplicationList {
    pub applications: Vec<ApplicationRow>,
}

/// What approving an application answers: the member number, and where
/// the letter with the code waits (never the code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Approved {
    pub application_id: String,
    #[schemars(with = "formats::MemberId")]
    pub member: String,
    pub letter_id: String,
    /// Unix seconds.
    #[schemars(with = "u64")]
    pub expires_at: Timestamp,
}

/// What rejecting an application answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Rejected {
    pub application_id: String,
    #[schemars(with = "formats::RejectedStatus")]
    pub status: ApplicationStatus,
}

/// A letter of the outbox, for the operator to print or mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Letter {
    pub letter_id: String,
    #[schemars(with = "formats::MemberId")]
    pub member: String,
    pub kind: String,
    pub text: String,
    /// Unix seconds.
    #[schemars(with = "u64")]
    pub expires_at: Timestamp,
}

/// The letters not yet sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Outbox {
    pub letters: Vec<Letter>,
}

/// What marking a letter sent answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LetterSent {
    pub letter_id: String,
    #[schemars(with = "formats::True")]
    pub sent: bool,
}

/// `GET /v1/admin/fundings`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FundingFilter {
    #[schemars(with = "crate::views::FundingStatus")]
    pub status: String,
}

/// Fundings in one status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FundingList {
    pub fundings: Vec<Funding>,
}

/// `POST /v1/admin/fundings/{id}/cash`: what the operator counted.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordCash {
    #[schemars(with = "formats::Money")]
    pub amount: Money,
}

/// `GET /v1/admin/bank-credits`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BankCreditFilter {
    #[schemars(with = "crate::views::BankCreditStatus")]
    pub status: String,
}

/// Bank credits in one status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BankCreditList {
    pub bank_credits: Vec<BankCredit>,
}

/// `POST /v1/admin/bank-credits/apply`: a credit in suspense applied to a
/// funding awaiting it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyBankCredit {
    pub entry_key: String,
    pub funding_id: String,
}

/// `POST /v1/admin/bank-credits/return`: a credit in suspense sent back
/// to whoever paid it, and how.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReturnBankCredit {
    pub entry_key: String,
    #[schemars(with = "formats::Reason500")]
    pub reason: String,
}

/// A card's member, and whether its purchases need the member's
/// instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CardHolder {
    #[schemars(with = "formats::MemberId")]
    pub member: String,
    pub instruction_required: bool,
}

/// A card's registry record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CardEntry {
    #[schemars(with = "formats::CardId")]
    pub card_id: String,
    pub status: CardStatus,
    #[schemars(with = "formats::CurrencyCode")]
    pub currency: String,
    pub key_version: u8,
    pub max_balance_minor: u64,
}

/// What the books hold on a card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CardBooks {
    /// The card's float: its value as the books know it.
    pub float_minor: u64,
    /// Of it, held by settlements and corrections in flight.
    pub held_minor: u64,
    /// Credits owed to the card, not yet on it.
    pub credits_pending_minor: u64,
}

/// A value update as a card's story shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UpdateRow {
    #[schemars(with = "formats::UpdateId")]
    pub update_id: String,
    pub phase: crate::Phase,
    #[schemars(with = "formats::Direction")]
    pub direction: kessai_core::messages::value_update::Direction,
    /// What it is for (`charge`, `owed`, …).
    pub purpose: String,
    #[schemars(with = "formats::Money")]
    pub amount: Money,
    /// Unix seconds.
    #[schemars(with = "u64")]
    pub created_at: Timestamp,
    pub reason: Option<String>,
}

/// `GET /v1/admin/cards/{id}/story`: a card's whole story. At most 100 rows
/// of each list, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CardStory {
    pub card: CardEntry,
    pub member: Option<CardHolder>,
    /// Null for a card the books have not seen.
    pub books: Option<CardBooks>,
    pub settlements: Vec<SettlementRow>,
    /// The listing's cursor for the card's older settlements.
    #[schemars(with = "Option<formats::Cursor>")]
    pub settlements_next: Option<String>,
    pub value_updates: Vec<UpdateRow>,
    pub owed: Vec<OwedReply>,
    /// The card's log as last collected, newest first.
    pub log: Vec<crate::LogEntry>,
}

/// A member's ledger entry: its key's id and window, never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MemberEntry {
    #[schemars(with = "formats::MemberId")]
    pub member: String,
    pub kind: String,
    pub status: String,
    pub kid: String,
    /// Unix seconds.
    #[schemars(with = "u64")]
    pub not_before: Timestamp,
    /// Unix seconds.
    #[schemars(with = "u64")]
    pub not_after: Timestamp,
}

/// One of a member's letters: when made, sent and used; never its text or
/// code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LetterRow {
    pub letter_id: String,
    pub kind: String,
    /// Unix seconds.
    #[schemars(with = "u64")]
    pub expires_at: Timestamp,
    #[schemars(with = "Option<u64>")]
    pub sent_at: Option<Timestamp>,
    #[schemars(with = "Option<u64>")]
    pub used_at: Option<Timestamp>,
}

/// An IC card linked to a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MemberCard {
    #[schemars(with = "formats::CardId")]
    pub card_id: String,
    pub instruction_required: bool,
}

/// `GET /v1/admin/members/{id}/story`: a member's whole story.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberStory {
    pub member: MemberEntry,
    pub letters: Vec<LetterRow>,
    pub cards: Vec<MemberCard>,
    pub prepaid_cards: Vec<PrepaidCard>,
}
