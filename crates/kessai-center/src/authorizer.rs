//! Credit authorization for charges (DESIGN §1 "credit authorizer", §5).
//!
//! The center asks an [`Authorizer`] to reserve the amount on the
//! cardholder's payment card, captures the authorization once the IC card
//! confirmed the CREDIT, and voids it when the card provably never applied
//! it. Only the authorizer's reference (`auth_…`) is kept by the center:
//! the payment card's number, expiry and CVC live in a [`PaymentCard`],
//! which zeroizes on drop, prints as `***` and is never stored or logged.
//!
//! [`Simulator`] is the built-in authorizer. It follows the widely published
//! test card numbers (after a Luhn check) and keeps its authorizations in
//! memory, as an external acquirer would keep them on its side.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use kessai_core::Money;
use kessai_core::messages::Reference;
use kessai_core::random::Random;
use kessai_core::time::Timestamp;
use zeroize::Zeroizing;

/// Longest payment card number (ISO/IEC 7812).
const MAX_CARD_DIGITS: usize = 19;
/// Shortest payment card number accepted.
const MIN_CARD_DIGITS: usize = 12;

/// Why an authorizer refused or failed. The first five are the decline
/// codes a cardholder sees; each has a stable API code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorizerError {
    #[error("the card was declined")]
    Declined,
    #[error("the card has insufficient funds")]
    InsufficientFunds,
    #[error("the card has expired")]
    ExpiredCard,
    #[error("the card issuer could not process the authorization")]
    ProcessingError,
    #[error("the card number is not valid")]
    InvalidCardNumber,
    #[error("the expiry must be MM/YY")]
    BadExpiry,
    #[error("the CVC must be 3 or 4 digits")]
    BadCvc,
    #[error("no authorization {0}")]
    UnknownAuthorization(String),
    #[error("authorization {reference} is {state} and cannot be {wanted}")]
    WrongState { reference: String, state: &'static str, wanted: &'static str },
    #[error("capture of {found} exceeds the authorized {authorized}")]
    CaptureOverAuthorized { authorized: Money, found: Money },
    #[error("refunding {found} passes the {left} left of the captured charge")]
    RefundOverCaptured { left: Money, found: Money },
    #[error("the authorizer is unavailable: {0}")]
    Unavailable(String),
}

impl AuthorizerError {
    /// The stable API code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthorizerError::Declined => "card_declined",
            AuthorizerError::InsufficientFunds => "insufficient_funds",
            AuthorizerError::ExpiredCard => "expired_card",
            AuthorizerError::ProcessingError => "processing_error",
            AuthorizerError::InvalidCardNumber => "invalid_card_number",
            AuthorizerError::BadExpiry => "invalid_expiry",
            AuthorizerError::BadCvc => "invalid_cvc",
            AuthorizerError::UnknownAuthorization(_)
            | AuthorizerError::WrongState { .. }
            | AuthorizerError::CaptureOverAuthorized { .. }
            | AuthorizerError::RefundOverCaptured { .. } => "authorization_failed",
            AuthorizerError::Unavailable(_) => "authorizer_unavailable",
        }
    }

    /// Whether the authorization can never be captured (voided, expired,
    /// unknown, or asked for more than it holds), as against the authorizer
    /// being unreachable for now.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            AuthorizerError::UnknownAuthorization(_)
                | AuthorizerError::WrongState { .. }
                | AuthorizerError::CaptureOverAuthorized { .. }
        )
    }

    /// Whether this is a decline of the payment card (the cardholder's
    /// business), rather than a fault of ours or the authorizer's.
    pub fn is_decline(&self) -> bool {
        matches!(
            self,
            AuthorizerError::Declined
                | AuthorizerError::InsufficientFunds
                | AuthorizerError::ExpiredCard
                | AuthorizerError::ProcessingError
                | AuthorizerError::InvalidCardNumber
                | AuthorizerError::BadExpiry
                | AuthorizerError::BadCvc
        )
    }
}

/// A payment card as the cardholder typed it: digits only, Luhn-checked,
/// an expiry month and year, a CVC. Zeroized on drop; prints as `***`; not
/// serialisable, so it cannot reach the database or a log by accident.
pub struct PaymentCard {
    number: Zeroizing<String>,
    expiry_month: u8,
    expiry_year: u16,
    cvc: Zeroizing<String>,
}

impl fmt::Debug for PaymentCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PaymentCard(***)")
    }
}

/// The Luhn (mod 10) check of a string of ASCII digits.
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(b.wrapping_sub(b'0'));
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

impl PaymentCard {
    /// Parses what the cardholder typed. Spaces and dashes in the number
    /// are ignored; the expiry is `MM/YY` (or `MM/YYYY`).
    pub fn parse(number: &str, expiry: &str, cvc: &str) -> Result<PaymentCard, AuthorizerError> {
        // Sized once up front, so no copy of the digits is left behind by a
        // reallocation.
        let mut digits = Zeroizing::new(String::with_capacity(number.len()));
        digits.extend(number.chars().filter(|c| *c != ' ' && *c != '-'));
        if !(MIN_CARD_DIGITS..=MAX_CARD_DIGITS).contains(&digits.len())
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || !luhn_valid(&digits)
        {
            return Err(AuthorizerError::InvalidCardNumber);
        }
        let (month, year) = expiry.split_once('/').ok_or(AuthorizerError::BadExpiry)?;
        let month: u8 = parse_digits(month.trim(), 2, 2).ok_or(AuthorizerError::BadExpiry)?;
        let year_text = year.trim();
        let year: u16 = parse_digits(year_text, 2, 4).ok_or(AuthorizerError::BadExpiry)?;
        let year = if year_text.len() == 2 { 2000 + year } else { year };
        if !(1..=12).contains(&month) || year_text.len() == 3 {
            return Err(AuthorizerError::BadExpiry);
        }
        if !(3..=4).contains(&cvc.len()) || !cvc.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AuthorizerError::BadCvc);
        }
        Ok(PaymentCard { number: digits, expiry_month: month, expiry_year: year, cvc: Zeroizing::new(cvc.to_owned()) })
    }

    /// The digits, for the authorizer only.
    pub fn number(&self) -> &str {
        &self.number
    }

    /// The CVC, for the authorizer only.
    pub fn cvc(&self) -> &str {
        &self.cvc
    }

    /// Whether the card's expiry month has ended by `now` (UTC).
    pub fn expired_at(&self, now: Timestamp) -> bool {
        let (year, month) = year_month(now.unix_s());
        (self.expiry_year, self.expiry_month) < (year, month)
    }
}

fn parse_digits<T: std::str::FromStr>(s: &str, min: usize, max: usize) -> Option<T> {
    if !(min..=max).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The civil (UTC) year and month of a Unix time (Howard Hinnant's
/// days-to-civil algorithm).
fn year_month(unix_s: u64) -> (u16, u8) {
    let days = i64::try_from(unix_s / 86_400).unwrap_or(i64::MAX / 2) + 719_468;
    let era = days / 146_097;
    let doe = days - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (u16::try_from(year).unwrap_or(u16::MAX), u8::try_from(month).unwrap_or(12))
}

/// What the authorizer is asked to reserve.
#[derive(Debug)]
pub struct AuthorizationRequest<'a> {
    pub card: &'a PaymentCard,
    pub amount: Money,
    /// The charge this is for (the authorizer's idempotency key).
    pub charge_id: &'a str,
    pub now: Timestamp,
}

/// A boxed future, so the trait can be used as `dyn Authorizer`.
pub type AuthFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, AuthorizerError>> + Send + 'a>>;

/// A credit authorizer (acquirer adapter). Every call is idempotent:
/// authorizing the same charge id again answers the same reference;
/// capturing a captured authorization or voiding a voided one succeeds.
pub trait Authorizer: Send + Sync + fmt::Debug {
    /// Reserves the amount; answers the authorizer's reference.
    fn authorize<'a>(&'a self, request: AuthorizationRequest<'a>) -> AuthFuture<'a, Reference>;
    /// Takes the reserved amount (the card confirmed the CREDIT).
    fn capture<'a>(&'a self, reference: &'a Reference, amount: Money) -> AuthFuture<'a, ()>;
    /// Releases the reservation (the card never applied the CREDIT).
    fn void<'a>(&'a self, reference: &'a Reference) -> AuthFuture<'a, ()>;
    /// Gives `amount` of a captured charge back to the credit card (the
    /// card confirmed a decrease). `refund_id` makes it idempotent: the
    /// same refund again succeeds without paying twice.
    fn refund<'a>(&'a self, reference: &'a Reference, amount: Money, refund_id: &'a str) -> AuthFuture<'a, ()>;
}

/// Where a simulated authorization stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthorizationState {
    Authorized,
    Captured,
    Voided,
}

impl AuthorizationState {
    fn name(self) -> &'static str {
        match self {
            AuthorizationState::Authorized => "authorized",
            AuthorizationState::Captured => "captured",
            AuthorizationState::Voided => "voided",
        }
    }
}

/// One authorization the simulator holds. No card data: like the center,
/// the simulator keeps only what it needs to capture or void.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SimulatedAuthorization {
    pub reference: Reference,
    pub charge_id: String,
    pub amount: Money,
    pub state: AuthorizationState,
    /// Refunds of the captured amount, by refund id (journals written
    /// before refunds existed have none).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub refunds: std::collections::BTreeMap<String, u64>,
}

/// What the simulator does for a card number.
fn simulated_outcome(number: &str) -> Result<(), AuthorizerError> {
    match number {
        "4000000000000002" => Err(AuthorizerError::Declined),
        "4000000000009995" => Err(AuthorizerError::InsufficientFunds),
        "4000000000000069" => Err(AuthorizerError::ExpiredCard),
        "4000000000000119" => Err(AuthorizerError::ProcessingError),
        // 4242 4242 4242 4242 and any other Luhn-valid number: approved.
        _ => Ok(()),
    }
}

#[derive(Debug, Default)]
struct SimulatorBook {
    by_reference: BTreeMap<String, SimulatedAuthorization>,
    by_charge: BTreeMap<String, String>,
}

/// The built-in authorizer: published test card numbers, in memory.
///
/// | number | outcome |
/// |---|---|
/// | 4242 4242 4242 4242 (and any other Luhn-valid number) | approved |
/// | 4000 0000 0000 0002 | `card_declined` |
/// | 4000 0000 0000 9995 | `insufficient_funds` |
/// | 4000 0000 0000 0069 | `expired_card` |
/// | 4000 0000 0000 0119 | `processing_error` |
///
/// A number failing the Luhn check never gets here (`invalid_card_number`
/// at parsing); an expiry month already over is `expired_card` too.
#[derive(Debug, Default)]
pub struct Simulator {
    book: Mutex<SimulatorBook>,
    /// With a journal, every change is appended and fsynced before it is
    /// answered, and replayed at start: the simulator, like the real
    /// service it stands for, remembers authorizations across restarts.
    journal: Option<std::path::PathBuf>,
}

impl Simulator {
    /// In memory only (tests).
    pub fn new() -> Simulator {
        Simulator::default()
    }

    /// Durable: replays `journal` (JSON lines; the last line for a
    /// reference wins) and appends to it from then on.
    pub fn persistent(journal: &std::path::Path) -> Result<Simulator, AuthorizerError> {
        let mut book = SimulatorBook::default();
        if journal.exists() {
            let text = std::fs::read_to_string(journal).map_err(|e| AuthorizerError::Unavailable(e.to_string()))?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let Ok(auth) = serde_json::from_str::<SimulatedAuthorization>(line) else {
                    // A torn last line (a crash mid-append) was never
                    // answered to anyone: skip it.
                    continue;
                };
                book.by_charge.insert(auth.charge_id.clone(), auth.reference.as_str().to_owned());
                book.by_reference.insert(auth.reference.as_str().to_owned(), auth);
            }
        }
        Ok(Simulator { book: Mutex::new(book), journal: Some(journal.to_owned()) })
    }

    fn record(&self, auth: &SimulatedAuthorization) -> Result<(), AuthorizerError> {
        let Some(path) = &self.journal else { return Ok(()) };
        let unavailable = |e: std::io::Error| AuthorizerError::Unavailable(e.to_string());
        let line = serde_json::to_string(auth).map_err(|e| AuthorizerError::Unavailable(e.to_string()))?;
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(unavailable)?;
        std::io::Write::write_all(&mut file, format!("{line}\n").as_bytes()).map_err(unavailable)?;
        file.sync_all().map_err(unavailable)
    }

    /// Every authorization made, in reference order (for tests and audit).
    pub fn authorizations(&self) -> Vec<SimulatedAuthorization> {
        self.lock().by_reference.values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SimulatorBook> {
        // A panic while holding the lock cannot leave the maps half-written
        // (each update is one insert), so a poisoned lock is still usable.
        self.book.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn authorize_now(&self, request: &AuthorizationRequest<'_>) -> Result<Reference, AuthorizerError> {
        let mut book = self.lock();
        if let Some(existing) = book.by_charge.get(request.charge_id) {
            return Reference::parse(existing).map_err(|e| AuthorizerError::Unavailable(e.to_string()));
        }
        simulated_outcome(request.card.number())?;
        if request.card.expired_at(request.now) {
            return Err(AuthorizerError::ExpiredCard);
        }
        let mut bytes = [0u8; 16];
        kessai_core::random::OsRandom.fill_bytes(&mut bytes);
        let text = format!("auth_{}", hex::encode(bytes));
        let reference = Reference::parse(&text).map_err(|e| AuthorizerError::Unavailable(e.to_string()))?;
        let auth = SimulatedAuthorization {
            reference: reference.clone(),
            charge_id: request.charge_id.to_owned(),
            amount: request.amount,
            state: AuthorizationState::Authorized,
            refunds: Default::default(),
        };
        self.record(&auth)?;
        book.by_charge.insert(request.charge_id.to_owned(), text.clone());
        book.by_reference.insert(text, auth);
        Ok(reference)
    }

    fn settle(
        &self,
        reference: &Reference,
        to: AuthorizationState,
        amount: Option<Money>,
    ) -> Result<(), AuthorizerError> {
        let mut book = self.lock();
        let auth = book
            .by_reference
            .get_mut(reference.as_str())
            .ok_or_else(|| AuthorizerError::UnknownAuthorization(reference.as_str().to_owned()))?;
        if auth.state == to {
            return Ok(());
        }
        if auth.state != AuthorizationState::Authorized {
            return Err(AuthorizerError::WrongState {
                reference: reference.as_str().to_owned(),
                state: auth.state.name(),
                wanted: to.name(),
            });
        }
        if let Some(found) = amount
            && (found.currency() != auth.amount.currency() || found.amount_minor() > auth.amount.amount_minor())
        {
            return Err(AuthorizerError::CaptureOverAuthorized { authorized: auth.amount, found });
        }
        let mut next = auth.clone();
        next.state = to;
        self.record(&next)?;
        auth.state = to;
        Ok(())
    }
}

impl Simulator {
    fn refund_now(&self, reference: &Reference, amount: Money, refund_id: &str) -> Result<(), AuthorizerError> {
        let mut book = self.lock();
        let auth = book
            .by_reference
            .get_mut(reference.as_str())
            .ok_or_else(|| AuthorizerError::UnknownAuthorization(reference.as_str().to_owned()))?;
        if auth.refunds.contains_key(refund_id) {
            return Ok(());
        }
        if auth.state != AuthorizationState::Captured {
            return Err(AuthorizerError::WrongState {
                reference: reference.as_str().to_owned(),
                state: auth.state.name(),
                wanted: "refunded",
            });
        }
        let refunded: u64 = auth.refunds.values().sum();
        let left_minor = auth.amount.amount_minor().saturating_sub(refunded);
        if amount.currency() != auth.amount.currency() || amount.amount_minor() > left_minor {
            let left = Money::new(left_minor, auth.amount.currency())
                .map_err(|e| AuthorizerError::Unavailable(e.to_string()))?;
            return Err(AuthorizerError::RefundOverCaptured { left, found: amount });
        }
        let mut next = auth.clone();
        next.refunds.insert(refund_id.to_owned(), amount.amount_minor());
        self.record(&next)?;
        *auth = next;
        Ok(())
    }
}

impl Authorizer for Simulator {
    fn authorize<'a>(&'a self, request: AuthorizationRequest<'a>) -> AuthFuture<'a, Reference> {
        Box::pin(async move { self.authorize_now(&request) })
    }

    fn capture<'a>(&'a self, reference: &'a Reference, amount: Money) -> AuthFuture<'a, ()> {
        Box::pin(async move { self.settle(reference, AuthorizationState::Captured, Some(amount)) })
    }

    fn void<'a>(&'a self, reference: &'a Reference) -> AuthFuture<'a, ()> {
        Box::pin(async move { self.settle(reference, AuthorizationState::Voided, None) })
    }

    fn refund<'a>(&'a self, reference: &'a Reference, amount: Money, refund_id: &'a str) -> AuthFuture<'a, ()> {
        Box::pin(async move { self.refund_now(reference, amount, refund_id) })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_the_test_numbers_and_refuses_a_typo() {
        for n in ["4242424242424242", "4000000000000002", "4000000000009995", "4000000000000069", "4000000000000119"] {
            assert!(luhn_valid(n), "{n}");
        }
        assert!(!luhn_valid("4242424242424241"));
        assert!(matches!(
            PaymentCard::parse("4242 4242 4242 4241", "12/30", "123"),
            Err(AuthorizerError::InvalidCardNumber)
        ));
        assert!(matches!(PaymentCard::parse("4242", "12/30", "123"), Err(AuthorizerError::InvalidCardNumber)));
        assert!(matches!(PaymentCard::parse("4242424242424242", "13/30", "123"), Err(AuthorizerError::BadExpiry)));
        assert!(matches!(PaymentCard::parse("4242424242424242", "12/30", "12a"), Err(AuthorizerError::BadCvc)));
    }

    #[test]
    fn a_persistent_simulator_remembers_authorizations_across_restarts() {
        let dir = std::env::temp_dir().join(format!("kessai-sim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let journal = dir.join("authorizations.jsonl");
        let _ = std::fs::remove_file(&journal);
        let card = PaymentCard::parse("4242424242424242", "12/40", "123").unwrap();
        let amount = Money::new(5_000, kessai_core::Currency::JPY).unwrap();
        let now = Timestamp::from_unix_s(1_795_000_000);
        let first = Simulator::persistent(&journal).unwrap();
        let reference =
            first.authorize_now(&AuthorizationRequest { charge_id: "vup_1", card: &card, amount, now }).unwrap();
        drop(first);
        let text = std::fs::read_to_string(&journal).unwrap();
        assert!(!text.contains("4242424242424242") && !text.contains("12/40"), "no card data in the journal");
        let again = Simulator::persistent(&journal).unwrap();
        again.settle(&reference, AuthorizationState::Captured, Some(amount)).unwrap();
        drop(again);
        let third = Simulator::persistent(&journal).unwrap();
        assert_eq!(third.authorizations()[0].state, AuthorizationState::Captured);
        // The same charge asks again: the same authorization.
        let same = third.authorize_now(&AuthorizationRequest { charge_id: "vup_1", card: &card, amount, now }).unwrap();
        assert_eq!(same, reference);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn card_data_never_prints() {
        let card = PaymentCard::parse("4242-4242-4242-4242", "12/2030", "123").unwrap();
        assert_eq!(format!("{card:?}"), "PaymentCard(***)");
        assert_eq!(card.number(), "4242424242424242");
    }

    #[test]
    fn expiry_is_compared_by_month() {
        // 2026-11-21
        let now = Timestamp::from_unix_s(1_795_000_000);
        assert_eq!(year_month(now.unix_s()), (2026, 11));
        assert!(!PaymentCard::parse("4242424242424242", "11/26", "123").unwrap().expired_at(now));
        assert!(PaymentCard::parse("4242424242424242", "10/26", "123").unwrap().expired_at(now));
    }
}
