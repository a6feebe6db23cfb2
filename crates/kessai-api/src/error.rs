//! The one error shape of every kessai HTTP API,
//! `{"error":{"type","code","number","message","param"}}`, and the one
//! list of its codes.
//!
//! Each [`ErrorCode`] has a stable number, a name (the wire's `code`), one
//! HTTP status and one [`ErrorType`]. A number is never reused and a name
//! never changes meaning; a code that is retired stays listed. Numbers are
//! grouped by the status they were given (1000s: 400, 1100s: 401, 1200s:
//! 402, 1300s: 403, 1400s: 404, 1500s: 409, 1600s: 413 and 415, 1700s: 422,
//! 1800s: 429, 1900s: 500, 2000s: 503).

use serde::{Deserialize, Serialize};

/// The broad class of an error, for clients that branch on it.
/// Serialised in `snake_case` (`invalid_request`, `rate_limited`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    /// The request is malformed or fails validation (4xx).
    InvalidRequest,
    /// The client did not prove who it is.
    Authentication,
    /// The client is known but may not do this.
    Forbidden,
    /// The thing asked for does not exist (for this client).
    NotFound,
    /// The request conflicts with the current state (e.g. a retried id with
    /// different content).
    Conflict,
    /// Too many requests from this client.
    RateLimited,
    /// The service cannot answer now (timeout, overload, dependency down).
    Unavailable,
    /// A fault on our side; details are only in our logs.
    Internal,
}

impl ErrorType {
    pub const ALL: [ErrorType; 8] = [
        ErrorType::InvalidRequest,
        ErrorType::Authentication,
        ErrorType::Forbidden,
        ErrorType::NotFound,
        ErrorType::Conflict,
        ErrorType::RateLimited,
        ErrorType::Unavailable,
        ErrorType::Internal,
    ];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidRequest => "invalid_request",
            ErrorType::Authentication => "authentication",
            ErrorType::Forbidden => "forbidden",
            ErrorType::NotFound => "not_found",
            ErrorType::Conflict => "conflict",
            ErrorType::RateLimited => "rate_limited",
            ErrorType::Unavailable => "unavailable",
            ErrorType::Internal => "internal",
        }
    }
}

macro_rules! error_codes {
    ($( $variant:ident = $number:literal, $name:literal, $status:literal, $kind:ident, $doc:literal; )*) => {
        /// Every error code any kessai party answers. See the module
        /// documentation for the numbering.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        pub enum ErrorCode {
            $( #[doc = $doc] $variant = $number, )*
        }

        impl ErrorCode {
            /// Every code, in number order.
            pub const ALL: &'static [ErrorCode] = &[$( ErrorCode::$variant, )*];

            /// The wire name (`bill_expired`).
            pub const fn as_str(self) -> &'static str {
                match self { $( ErrorCode::$variant => $name, )* }
            }

            /// The HTTP status every answer with this code has.
            pub const fn status(self) -> u16 {
                match self { $( ErrorCode::$variant => $status, )* }
            }

            /// The broad class.
            pub const fn kind(self) -> ErrorType {
                match self { $( ErrorCode::$variant => ErrorType::$kind, )* }
            }

            /// What the code means, in one line.
            pub const fn description(self) -> &'static str {
                match self { $( ErrorCode::$variant => $doc, )* }
            }
        }
    };
}

error_codes! {
    // 400: the request is malformed.
    BadJson = 1001, "bad_json", 400, InvalidRequest, "the body is not JSON, or not the request's JSON";
    BodyUnreadable = 1002, "body_unreadable", 400, InvalidRequest, "the request body could not be read";
    IdempotencyKeyRequired = 1003, "idempotency_key_required", 400, InvalidRequest, "a POST without an Idempotency-Key header";
    BadIdempotencyKey = 1004, "bad_idempotency_key", 400, InvalidRequest, "an Idempotency-Key that is not 1 to 128 printable characters";
    BadApdu = 1005, "bad_apdu", 400, InvalidRequest, "a card answer that is not hex, too long, or not an answer";
    WrongAnswerCount = 1006, "wrong_answer_count", 400, InvalidRequest, "not as many card answers as the step handed out commands";
    BadCardId = 1007, "bad_card_id", 400, InvalidRequest, "a card id not of the card id's form";
    BadChargeId = 1008, "bad_charge_id", 400, InvalidRequest, "a value update id not of its form";
    BadStoreId = 1009, "bad_store_id", 400, InvalidRequest, "a store id not of its form";
    BadQuery = 1010, "bad_query", 400, InvalidRequest, "a query string that is not the route's";
    BadReason = 1011, "bad_reason", 400, InvalidRequest, "a reason that is empty or longer than allowed";
    BadReference = 1012, "bad_reference", 400, InvalidRequest, "a reference that is empty or longer than allowed";
    PaymentCardRequired = 1013, "payment_card_required", 400, InvalidRequest, "this step needs the payment card's number, expiry and code";
    PaymentCardIncomplete = 1014, "payment_card_incomplete", 400, InvalidRequest, "card_number, expiry and cvc come together or not at all";
    InvalidCardNumber = 1015, "invalid_card_number", 400, InvalidRequest, "the payment card number fails its check";
    InvalidExpiry = 1016, "invalid_expiry", 400, InvalidRequest, "the payment card's expiry is malformed or past";
    InvalidCvc = 1017, "invalid_cvc", 400, InvalidRequest, "the payment card's security code is malformed";
    CardReadUnexpected = 1018, "card_read_unexpected", 400, InvalidRequest, "card_read sent in the offer profile, which reads the balance itself";
    CardReadRequired = 1019, "card_read_required", 400, InvalidRequest, "this profile needs the balance the wallet read (card_read)";
    InstructionUnexpected = 1020, "instruction_unexpected", 400, InvalidRequest, "an instruction sent where the profile takes it at another step";
    ReservedStoreId = 1021, "reserved_store_id", 400, InvalidRequest, "the id names a role (the center, an operator), not a store";
    BadNotifyUrl = 1022, "bad_notify_url", 400, InvalidRequest, "notify_url must be an https:// URL";
    UnknownMall = 1023, "unknown_mall", 400, InvalidRequest, "the mall named is not registered";
    TooManyKeys = 1024, "too_many_keys", 400, InvalidRequest, "the key registry is full";
    BadName = 1025, "bad_name", 400, InvalidRequest, "a display name that is empty, too long or has control characters";
    BadMall = 1026, "bad_mall", 400, InvalidRequest, "a mall id not of a store id's form";
    BadBankAccount = 1027, "bad_bank_account", 400, InvalidRequest, "a bank account that is not a Zengin bank, branch, type and number";
    BadJwks = 1028, "bad_jwks", 400, InvalidRequest, "a key set that is not a JWKS of Ed25519 keys with windows";
    BadKid = 1029, "bad_kid", 400, InvalidRequest, "a key id not of its form";
    BadCurrency = 1030, "bad_currency", 400, InvalidRequest, "a currency kessai does not support";
    UnknownKeyVersion = 1031, "unknown_key_version", 400, InvalidRequest, "no issuer master keys of that key version";
    BadAmounts = 1032, "bad_amounts", 400, InvalidRequest, "amounts that do not fit together (initial value over the maximum)";
    BadPhase = 1033, "bad_phase", 400, InvalidRequest, "a phase that does not exist";
    BadLimit = 1034, "bad_limit", 400, InvalidRequest, "a page size out of range";
    BadStatus = 1035, "bad_status", 400, InvalidRequest, "a status filter that does not exist";
    InvalidCompletion = 1036, "invalid_completion", 400, InvalidRequest, "the completion (SIG3) is not a completion token";
    BadSignature = 1037, "bad_signature", 400, InvalidRequest, "a signature that does not verify";
    CompletionUnknownKey = 1038, "completion_unknown_key", 400, InvalidRequest, "the completion is signed under a key the store does not know";
    CompletionExpired = 1039, "completion_expired", 400, InvalidRequest, "the completion's validity has passed";
    BadBillId = 1040, "bad_bill_id", 400, InvalidRequest, "a bill id not of its form";
    BadTokenId = 1041, "bad_token_id", 400, InvalidRequest, "a deposit token id not of its form (tok_ and 32 hex digits)";
    BadSealedToken = 1042, "bad_sealed_token", 400, InvalidRequest, "a sealed deposit token, or its REDEEM transaction, not of its form";
    BadDay = 1043, "bad_day", 400, InvalidRequest, "a day not of the form YYYY-MM-DD";

    // 401: who the caller is was not proven.
    ClientCertificateRequired = 1101, "client_certificate_required", 401, Authentication, "this route needs a client certificate of the deployment";
    CredentialsRequired = 1102, "credentials_required", 401, Authentication, "this route needs the caller's certificate or API token";

    // 402: the payment is refused.
    InsufficientBalance = 1201, "insufficient_balance", 402, InvalidRequest, "the card's (or prepaid card's) balance does not cover the amount";
    CardDeclined = 1202, "card_declined", 402, InvalidRequest, "the credit card issuer declined";
    InsufficientFunds = 1203, "insufficient_funds", 402, InvalidRequest, "the credit card's limit does not cover the amount";
    ExpiredCard = 1204, "expired_card", 402, InvalidRequest, "the credit card has expired";
    ProcessingError = 1205, "processing_error", 402, InvalidRequest, "the credit card issuer could not process the authorization";

    // 403: the caller may not do this.
    NotAdmin = 1301, "not_admin", 403, Forbidden, "the certificate is not an operator's";
    NotTheCenter = 1302, "not_the_center", 403, Forbidden, "the certificate is not the center's";
    NotThisMember = 1303, "not_this_member", 403, Forbidden, "the credentials are not this member store's";
    NotAMember = 1304, "not_a_member", 403, Forbidden, "the store is not a member of the mall that signed";
    NotThePayee = 1305, "not_the_payee", 403, Forbidden, "the caller is not the payee of this claim";
    WrongIssuer = 1306, "wrong_issuer", 403, Forbidden, "the token was not issued by the center";
    ProfileRefused = 1307, "profile_refused", 403, Forbidden, "the payee's policy does not accept this purchase profile";
    CardNotActive = 1308, "card_not_active", 403, Forbidden, "the card is blocked or lost";
    InstructionRequired = 1309, "instruction_required", 403, Forbidden, "the card is a member's: the payment needs its signed instruction";
    InstructionRefused = 1310, "instruction_refused", 403, Forbidden, "the payment instruction is not the member's, or not for this payment";
    ClaimRefused = 1311, "claim_refused", 403, Forbidden, "the claim's signature or content is refused";
    ActivationRefused = 1312, "activation_refused", 403, Forbidden, "the member number or activation code is wrong";
    ActivationCodeExpired = 1313, "activation_code_expired", 403, Forbidden, "the activation code has expired";
    PrepaidRequestRefused = 1314, "prepaid_request_refused", 403, Forbidden, "the member's prepaid request is refused";
    PrepaidCardClosed = 1315, "prepaid_card_closed", 403, Forbidden, "the virtual prepaid card is closed";
    ValueExpired = 1316, "value_expired", 403, Forbidden, "the prepaid value has expired";
    SecondOperatorRequired = 1317, "second_operator_required", 403, Forbidden, "a second operator must confirm";
    CardNotMembers = 1318, "card_not_members", 403, Forbidden, "the card is not the member's";
    NotTheBank = 1319, "not_the_bank", 403, Forbidden, "the certificate is not a bank's";

    // 404: no such thing (for this caller).
    RouteNotFound = 1401, "route_not_found", 404, NotFound, "no such route";
    UnknownCard = 1402, "unknown_card", 404, NotFound, "no such card";
    UnknownSettlement = 1403, "unknown_settlement", 404, NotFound, "no such settlement (of this caller)";
    UnknownStatement = 1404, "unknown_statement", 404, NotFound, "no such statement";
    UnknownValueUpdate = 1405, "unknown_value_update", 404, NotFound, "no such value update";
    UnknownOwed = 1406, "unknown_owed", 404, NotFound, "no such owed item";
    UnknownKey = 1407, "unknown_key", 404, NotFound, "the store has no such key";
    UnknownStore = 1408, "unknown_store", 404, NotFound, "no such store (for this caller)";
    UnknownPayout = 1409, "unknown_payout", 404, NotFound, "no such payout (of this store)";
    UnknownMember = 1410, "unknown_member", 404, NotFound, "no such active member";
    UnknownApplication = 1411, "unknown_application", 404, NotFound, "no such application";
    UnknownLetter = 1412, "unknown_letter", 404, NotFound, "no such unsent letter";
    UnknownPrepaidCard = 1413, "unknown_prepaid_card", 404, NotFound, "no such virtual prepaid card";
    UnknownFunding = 1414, "unknown_funding", 404, NotFound, "no such funding request";
    UnknownBankCredit = 1415, "unknown_bank_credit", 404, NotFound, "no such bank credit";
    UnknownOrder = 1416, "unknown_order", 404, NotFound, "no such order";
    ReceiptNotYet = 1417, "receipt_not_yet", 404, NotFound, "the store has not sent its receipt yet";
    UnknownTokenSession = 1418, "unknown_token_session", 404, NotFound, "no such token session";
    TokenNotHeld = 1419, "token_not_held", 404, NotFound, "the credit service provider's register holds nothing of this client's for the token";

    // 409: conflicts with the state.
    StepOutOfOrder = 1501, "step_out_of_order", 409, Conflict, "the step does not follow from the phase";
    RequestInProgress = 1502, "request_in_progress", 409, Conflict, "a request under this Idempotency-Key is being worked on; retry shortly";
    ConcurrentUpdate = 1503, "concurrent_update", 409, Conflict, "the record changed meanwhile; retry";
    BooksRefused = 1504, "books_refused", 409, Conflict, "the books refused the transfer";
    BillInUse = 1505, "bill_in_use", 409, Conflict, "the bill is being settled with another card";
    BillPaid = 1506, "bill_paid", 409, Conflict, "the bill was paid from a virtual prepaid card";
    NeedsAudit = 1507, "needs_audit", 409, Conflict, "what the card did cannot be decided online; the audit will";
    CardNotLost = 1508, "card_not_lost", 409, Conflict, "the card is not reported lost";
    BeforeDeadline = 1509, "before_deadline", 409, Conflict, "the lost card's deadline has not passed";
    CardExists = 1510, "card_exists", 409, Conflict, "a card with this id is registered already";
    CardLost = 1511, "card_lost", 409, Conflict, "a lost card stays lost";
    ChargeInUse = 1512, "charge_in_use", 409, Conflict, "the value update id is in use with another request";
    NotRefundable = 1513, "not_refundable", 409, Conflict, "the settlement cannot be refunded";
    RefundIdInUse = 1514, "refund_id_in_use", 409, Conflict, "the refund id is in use with another request";
    NotCancellable = 1515, "not_cancellable", 409, Conflict, "the item cannot be cancelled in its state";
    NotReplaceable = 1516, "not_replaceable", 409, Conflict, "the card cannot be replaced in its state";
    NotDecreasable = 1517, "not_decreasable", 409, Conflict, "the charge cannot be decreased";
    AuthorizationFailed = 1518, "authorization_failed", 409, Conflict, "the authorization is unknown, in the wrong state, or over its amount";
    ClaimIdReused = 1519, "claim_id_reused", 409, Conflict, "the claim id was used for another claim";
    ClaimDiffers = 1520, "claim_differs", 409, Conflict, "the claim differs from the one recorded under its id";
    NotReceived = 1521, "not_received", 409, Conflict, "the application is not awaiting approval";
    ActivationCodeUsed = 1522, "activation_code_used", 409, Conflict, "the activation code has been used";
    AlreadyRegistered = 1523, "already_registered", 409, Conflict, "the registration or key is registered already";
    RequestIdReused = 1524, "request_id_reused", 409, Conflict, "the request id was used for another request";
    FundingNotAwaiting = 1525, "funding_not_awaiting", 409, Conflict, "the funding is not awaiting this";
    CountDiffers = 1526, "count_differs", 409, Conflict, "the second operator counted another amount";
    OrderAlreadyPaid = 1527, "order_already_paid", 409, Conflict, "the order was paid by another completion";
    BillMismatch = 1528, "bill_mismatch", 409, Conflict, "the completion is for another bill";
    AmountMismatch = 1529, "amount_mismatch", 409, Conflict, "the completion's amount or currency is not the order's";
    WrongStore = 1530, "wrong_store", 409, Conflict, "the completion is for another store";
    WrongMember = 1531, "wrong_member", 409, Conflict, "the completion is for another member of the mall";
    TokenNotRedeemable = 1532, "token_not_redeemable", 409, Conflict, "the deposit token is not on the card to redeem (redeemed, expired, or never stored)";
    TokenRefused = 1533, "token_refused", 409, Conflict, "the credit service provider refuses the token: its key, its MAC, its expiry, or its register holds it for another use";
    DepositRefused = 1534, "deposit_refused", 409, Conflict, "the bank makes no token of this deposit: it holds no such deposit of that amount and reference, no key version issues, or it made another token of it";

    // 413, 415: the body's size or type.
    BodyTooLarge = 1601, "body_too_large", 413, InvalidRequest, "the request body is larger than the limit";
    UnsupportedMediaType = 1602, "unsupported_media_type", 415, InvalidRequest, "the body must be application/json";

    // 422: well formed, but refused.
    IdempotencyKeyReused = 1701, "idempotency_key_reused", 422, InvalidRequest, "the Idempotency-Key was used for a different request";
    BillExpired = 1702, "bill_expired", 422, InvalidRequest, "the bill (SIG1) has expired";
    BillNotYetValid = 1703, "bill_not_yet_valid", 422, InvalidRequest, "the bill (SIG1) is not valid yet";
    BillUnknownKey = 1704, "bill_unknown_key", 422, InvalidRequest, "the bill is signed under a key the center does not know";
    BillRevokedKey = 1705, "bill_revoked_key", 422, InvalidRequest, "the bill is signed under a revoked key";
    BillBadSignature = 1706, "bill_bad_signature", 422, InvalidRequest, "the bill's signature does not verify";
    BillWrongType = 1707, "bill_wrong_type", 422, InvalidRequest, "the token is not a bill";
    BillInvalid = 1708, "bill_invalid", 422, InvalidRequest, "the bill is malformed";
    BillUnknownStore = 1709, "bill_unknown_store", 422, InvalidRequest, "the bill's store is not registered";
    CurrencyMismatch = 1710, "currency_mismatch", 422, InvalidRequest, "the amount's currency is not the card's";
    AmountOverLimit = 1711, "amount_over_limit", 422, InvalidRequest, "the amount is over the per-payment limit";
    AmountOutOfRange = 1712, "amount_out_of_range", 422, InvalidRequest, "the amount is zero or over the limit";
    OverMaxBalance = 1713, "over_max_balance", 422, InvalidRequest, "the card's balance would pass its maximum";
    OverDailyLimit = 1714, "over_daily_limit", 422, InvalidRequest, "the card's charges today would pass the daily limit";
    OverRefund = 1715, "over_refund", 422, InvalidRequest, "the refunds would pass the amount paid";
    OverFloat = 1716, "over_float", 422, InvalidRequest, "the correction is more than the card's float";
    OverCharge = 1717, "over_charge", 422, InvalidRequest, "the decrease is more than the charge left";
    CardRefused = 1718, "card_refused", 422, InvalidRequest, "the card refused the command";
    BadCardAnswer = 1719, "bad_card_answer", 422, InvalidRequest, "the card's answer does not verify";
    WrongTransaction = 1720, "wrong_transaction", 422, InvalidRequest, "the card answered for another transaction";
    SecureChannelFailed = 1721, "secure_channel_failed", 422, InvalidRequest, "the secure channel with the card could not be opened";
    ReceiptInvalid = 1722, "receipt_invalid", 422, InvalidRequest, "the receipt (SIG4) is refused";
    RefundExpired = 1723, "refund_expired", 422, InvalidRequest, "the refund request has expired";
    RefundUnknownKey = 1724, "refund_unknown_key", 422, InvalidRequest, "the refund request is signed under an unknown key";
    RefundRevokedKey = 1725, "refund_revoked_key", 422, InvalidRequest, "the refund request is signed under a revoked key";
    RefundBadSignature = 1726, "refund_bad_signature", 422, InvalidRequest, "the refund request's signature does not verify";
    RefundInvalid = 1727, "refund_invalid", 422, InvalidRequest, "the refund request is malformed";
    BadApplication = 1728, "bad_application", 422, InvalidRequest, "the member application is refused";
    NotEncrypted = 1729, "not_encrypted", 422, InvalidRequest, "the registration must come encrypted to the center";
    BadRegistration = 1730, "bad_registration", 422, InvalidRequest, "the registration is refused";
    KindMismatch = 1731, "kind_mismatch", 422, InvalidRequest, "the registration is not of the application's kind";
    ReplacementRefused = 1732, "replacement_refused", 422, InvalidRequest, "the key replacement is refused";
    StatementRefused = 1733, "statement_refused", 422, InvalidRequest, "the bank statement is refused";
    BillWrongCenter = 1734, "bill_wrong_center", 422, InvalidRequest, "the bill is addressed to another center, or to none";

    // 429: slow down.
    RateLimited = 1801, "rate_limited", 429, RateLimited, "too many requests from this client; retry later";
    TooManyAttempts = 1802, "too_many_attempts", 429, RateLimited, "too many payment card attempts for this card";

    // 500.
    InternalError = 1901, "internal_error", 500, Internal, "a fault on our side, logged";

    // 503: retry later.
    NotReady = 2001, "not_ready", 503, Unavailable, "the service is starting or stopping";
    RequestTimeout = 2002, "request_timeout", 503, Unavailable, "the request took too long and was abandoned";
    SecurityServerUnavailable = 2003, "security_server_unavailable", 503, Unavailable, "the security server cannot answer now; nothing was done";
    AuthorizerUnavailable = 2004, "authorizer_unavailable", 503, Unavailable, "the credit card authorizer cannot be reached";
    ClaimBusy = 2005, "claim_busy", 503, Unavailable, "the store's claims are being worked on; retry";
    CenterUnavailable = 2006, "center_unavailable", 503, Unavailable, "the center cannot be reached";
    CenterKeysUnavailable = 2007, "center_keys_unavailable", 503, Unavailable, "the center's keys cannot be fetched now";
    ProviderUnavailable = 2008, "provider_unavailable", 503, Unavailable, "the credit service provider cannot be reached; nothing was done";
    BankUnavailable = 2009, "bank_unavailable", 503, Unavailable, "the bank service provider cannot be reached; nothing was done";
}

impl ErrorCode {
    /// The stable number.
    pub const fn number(self) -> u16 {
        self as u16
    }

    /// The code of a wire name; `None` for a name this build does not know
    /// (a newer peer's).
    pub fn parse(name: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_str() == name)
    }

    /// The code of a number.
    pub fn from_number(number: u16) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.number() == number)
    }
}

by_name!(ErrorCode, "error code");

/// An error answer's body, as sent and as read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// `{"type","code","number","message","param"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    #[serde(rename = "type")]
    pub kind: ErrorType,
    /// The code's name, kept as sent: a newer peer may send a code this
    /// build does not know ([`ErrorDetail::code`] is `None` then).
    #[serde(rename = "code")]
    pub code_name: String,
    pub number: u16,
    /// For people; never secrets or internals.
    pub message: String,
    /// The request field at fault, if any.
    pub param: Option<String>,
}

impl ErrorDetail {
    pub fn new(code: ErrorCode, message: String, param: Option<String>) -> ErrorDetail {
        ErrorDetail { kind: code.kind(), code_name: code.as_str().to_owned(), number: code.number(), message, param }
    }

    /// The code, if this build knows it.
    pub fn code(&self) -> Option<ErrorCode> {
        ErrorCode::parse(&self.code_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_are_unique_and_numbers_sit_in_their_status_block() {
        let mut names = std::collections::HashSet::new();
        let mut numbers = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(names.insert(c.as_str()), "{c} twice");
            assert!(numbers.insert(c.number()), "{} twice", c.number());
            assert!(c.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{c}");
            let block = match c.status() {
                400 => 10,
                401 => 11,
                402 => 12,
                403 => 13,
                404 => 14,
                409 => 15,
                413 | 415 => 16,
                422 => 17,
                429 => 18,
                500 => 19,
                503 => 20,
                other => panic!("{c}: status {other} has no block"),
            };
            assert_eq!(c.number() / 100, block, "{c}");
            assert_eq!(ErrorCode::parse(c.as_str()), Some(*c));
            assert_eq!(ErrorCode::from_number(c.number()), Some(*c));
            let class_fits = match c.kind() {
                ErrorType::InvalidRequest => matches!(c.status(), 400 | 402 | 413 | 415 | 422),
                ErrorType::Authentication => c.status() == 401,
                ErrorType::Forbidden => c.status() == 403,
                ErrorType::NotFound => c.status() == 404,
                ErrorType::Conflict => c.status() == 409,
                ErrorType::RateLimited => c.status() == 429,
                ErrorType::Unavailable => c.status() == 503,
                ErrorType::Internal => c.status() == 500,
            };
            assert!(class_fits, "{c}: {:?} with {}", c.kind(), c.status());
        }
        assert_eq!(ErrorCode::parse("no_such_code"), None);
    }

    #[test]
    fn the_body_reads_back_and_keeps_a_code_it_does_not_know() {
        let sent =
            ErrorBody { error: ErrorDetail::new(ErrorCode::BillExpired, "bill refused".into(), Some("bill".into())) };
        let text = serde_json::to_string(&sent).unwrap();
        assert_eq!(
            text,
            r#"{"error":{"type":"invalid_request","code":"bill_expired","number":1702,"message":"bill refused","param":"bill"}}"#
        );
        assert_eq!(serde_json::from_str::<ErrorBody>(&text).unwrap(), sent);
        let newer =
            r#"{"error":{"type":"conflict","code":"from_the_future","number":1599,"message":"m","param":null}}"#;
        let read: ErrorBody = serde_json::from_str(newer).unwrap();
        assert_eq!((read.error.code(), read.error.code_name.as_str()), (None, "from_the_future"));
    }
}
