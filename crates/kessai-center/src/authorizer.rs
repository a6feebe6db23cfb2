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
//! the center's database (`center_authorizations`), as an external acquirer
//! would keep them on its side: every center instance sees every one.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use kessai_api::ErrorCode;
use kessai_core::Money;
use kessai_core::messages::Reference;
use kessai_core::random::Random;
use kessai_core::time::Timestamp;
use zeroize::Zeroizing;

use crate::db::CenterDb;

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
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthorizerError::Declined => ErrorCode::CardDeclined,
            AuthorizerError::InsufficientFunds => ErrorCode::InsufficientFunds,
            AuthorizerError::ExpiredCard => ErrorCode::ExpiredCard,
            AuthorizerError::ProcessingError => ErrorCode::ProcessingError,
            AuthorizerError::InvalidCardNumber => ErrorCode::InvalidCardNumber,
            AuthorizerError::BadExpiry => ErrorCode::InvalidExpiry,
            AuthorizerError::BadCvc => ErrorCode::InvalidCvc,
            AuthorizerError::UnknownAuthorization(_)
            | AuthorizerError::WrongState { .. }
            | AuthorizerError::CaptureOverAuthorized { .. }
            | AuthorizerError::RefundOverCaptured { .. } => ErrorCode::AuthorizationFailed,
            AuthorizerError::Unavailable(_) => ErrorCode::AuthorizerUnavailable,
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

/// How often a change to one authorization is tried again when a
/// concurrent change to the same one won (a capture racing a void).
const CHANGE_ATTEMPTS: usize = 8;

/// Where the simulator keeps its authorizations.
#[derive(Debug)]
enum Book {
    /// In this process only (unit tests): by reference, with a version.
    Memory(Mutex<MemoryBook>),
    /// In the center's database: every instance sees every authorization,
    /// and they survive restarts, as they would at a real acquirer.
    Database(CenterDb),
}

fn unavailable(e: impl fmt::Display) -> AuthorizerError {
    AuthorizerError::Unavailable(e.to_string())
}

type MemoryBook = BTreeMap<String, (SimulatedAuthorization, i64)>;

/// The memory book's map. A panic while holding the lock cannot leave it
/// half-written (each change is one insert), so a poisoned lock is still
/// usable.
fn locked(map: &Mutex<MemoryBook>) -> std::sync::MutexGuard<'_, MemoryBook> {
    map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Book {
    async fn for_charge(&self, charge_id: &str) -> Result<Option<SimulatedAuthorization>, AuthorizerError> {
        match self {
            Book::Memory(map) => {
                Ok(locked(map).values().find(|(auth, _)| auth.charge_id == charge_id).map(|(auth, _)| auth.clone()))
            }
            Book::Database(db) => db.authorization_for_charge(charge_id).await.map_err(unavailable),
        }
    }

    /// Stores `auth` unless its charge has one; returns the charge's.
    async fn insert(
        &self,
        auth: SimulatedAuthorization,
        now: Timestamp,
    ) -> Result<SimulatedAuthorization, AuthorizerError> {
        match self {
            Book::Memory(map) => {
                let mut map = locked(map);
                if let Some((existing, _)) = map.values().find(|(a, _)| a.charge_id == auth.charge_id) {
                    return Ok(existing.clone());
                }
                map.insert(auth.reference.as_str().to_owned(), (auth.clone(), 1));
                Ok(auth)
            }
            Book::Database(db) => db.insert_authorization(&auth, now).await.map_err(unavailable),
        }
    }

    async fn get(&self, reference: &Reference) -> Result<(SimulatedAuthorization, i64), AuthorizerError> {
        let found = match self {
            Book::Memory(map) => locked(map).get(reference.as_str()).cloned(),
            Book::Database(db) => db.authorization(reference.as_str()).await.map_err(unavailable)?,
        };
        found.ok_or_else(|| AuthorizerError::UnknownAuthorization(reference.as_str().to_owned()))
    }

    /// Writes `next` if its row is still at `version`.
    async fn replace(&self, next: &SimulatedAuthorization, version: i64) -> Result<bool, AuthorizerError> {
        match self {
            Book::Memory(map) => match locked(map).get_mut(next.reference.as_str()) {
                Some(entry) if entry.1 == version => {
                    *entry = (next.clone(), version + 1);
                    Ok(true)
                }
                _ => Ok(false),
            },
            Book::Database(db) => db.update_authorization(next, version).await.map_err(unavailable),
        }
    }

    /// Every authorization, oldest first (the memory book: by reference).
    async fn all(&self) -> Result<Vec<SimulatedAuthorization>, AuthorizerError> {
        match self {
            Book::Memory(map) => Ok(locked(map).values().map(|(auth, _)| auth.clone()).collect()),
            Book::Database(db) => db.authorizations().await.map_err(unavailable),
        }
    }
}

/// The built-in authorizer: published test card numbers.
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
#[derive(Debug)]
pub struct Simulator {
    book: Book,
}

impl Default for Simulator {
    fn default() -> Simulator {
        Simulator::new()
    }
}

impl Simulator {
    /// In memory only (unit tests).
    pub fn new() -> Simulator {
        Simulator { book: Book::Memory(Mutex::default()) }
    }

    /// In the center's database (`center_authorizations`), shared by every
    /// instance on it.
    pub fn in_database(db: CenterDb) -> Simulator {
        Simulator { book: Book::Database(db) }
    }

    /// Every authorization made, oldest first (for tests and audit).
    pub async fn authorizations(&self) -> Result<Vec<SimulatedAuthorization>, AuthorizerError> {
        self.book.all().await
    }

    async fn authorize_now(&self, request: &AuthorizationRequest<'_>) -> Result<Reference, AuthorizerError> {
        if let Some(existing) = self.book.for_charge(request.charge_id).await? {
            return Ok(existing.reference);
        }
        simulated_outcome(request.card.number())?;
        if request.card.expired_at(request.now) {
            return Err(AuthorizerError::ExpiredCard);
        }
        let mut bytes = [0u8; 16];
        kessai_core::random::OsRandom.fill_bytes(&mut bytes);
        let reference = Reference::parse(&format!("auth_{}", hex::encode(bytes))).map_err(unavailable)?;
        let auth = SimulatedAuthorization {
            reference,
            charge_id: request.charge_id.to_owned(),
            amount: request.amount,
            state: AuthorizationState::Authorized,
            refunds: Default::default(),
        };
        // A concurrent request for the same charge (through any instance)
        // that stored first wins; this one answers with its reference.
        Ok(self.book.insert(auth, request.now).await?.reference)
    }

    /// Applies `change` to an authorization with a compare-and-set, again
    /// from a fresh read when a concurrent change won. `change` answers
    /// `None` when there is nothing to do (the same change made before).
    async fn change(
        &self,
        reference: &Reference,
        change: impl Fn(&SimulatedAuthorization) -> Result<Option<SimulatedAuthorization>, AuthorizerError>,
    ) -> Result<(), AuthorizerError> {
        for _ in 0..CHANGE_ATTEMPTS {
            let (auth, version) = self.book.get(reference).await?;
            let Some(next) = change(&auth)? else { return Ok(()) };
            if self.book.replace(&next, version).await? {
                return Ok(());
            }
        }
        Err(unavailable(format!("authorization {} kept changing", reference.as_str())))
    }
}

/// Captures (`amount`) or voids (`None`) an authorization: what it becomes,
/// or `None` if it is so already.
fn settled(
    auth: &SimulatedAuthorization,
    to: AuthorizationState,
    amount: Option<Money>,
) -> Result<Option<SimulatedAuthorization>, AuthorizerError> {
    if auth.state == to {
        return Ok(None);
    }
    if auth.state != AuthorizationState::Authorized {
        return Err(AuthorizerError::WrongState {
            reference: auth.reference.as_str().to_owned(),
            state: auth.state.name(),
            wanted: to.name(),
        });
    }
    if let Some(found) = amount
        && (found.currency() != auth.amount.currency() || found.amount_minor() > auth.amount.amount_minor())
    {
        return Err(AuthorizerError::CaptureOverAuthorized { authorized: auth.amount, found });
    }
    Ok(Some(SimulatedAuthorization { state: to, ..auth.clone() }))
}

/// A refund of part of a captured authorization: what it becomes, or
/// `None` if this refund was made before.
fn refunded(
    auth: &SimulatedAuthorization,
    amount: Money,
    refund_id: &str,
) -> Result<Option<SimulatedAuthorization>, AuthorizerError> {
    if auth.refunds.contains_key(refund_id) {
        return Ok(None);
    }
    if auth.state != AuthorizationState::Captured {
        return Err(AuthorizerError::WrongState {
            reference: auth.reference.as_str().to_owned(),
            state: auth.state.name(),
            wanted: "refunded",
        });
    }
    let refunded: u64 = auth.refunds.values().sum();
    let left_minor = auth.amount.amount_minor().saturating_sub(refunded);
    if amount.currency() != auth.amount.currency() || amount.amount_minor() > left_minor {
        let left = Money::new(left_minor, auth.amount.currency()).map_err(unavailable)?;
        return Err(AuthorizerError::RefundOverCaptured { left, found: amount });
    }
    let mut next = auth.clone();
    next.refunds.insert(refund_id.to_owned(), amount.amount_minor());
    Ok(Some(next))
}

/// Moves the authorizations an earlier version journaled in a file into
/// the database (each one not there yet), then renames the file
/// `….imported`; returns how many were moved. A torn last line (a crash
/// mid-append) was never answered to anyone and is skipped.
pub async fn import_journal(
    journal: &std::path::Path,
    db: &CenterDb,
    now: Timestamp,
) -> Result<usize, AuthorizerError> {
    let text = match std::fs::read_to_string(journal) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(unavailable(e)),
    };
    // The last line for a reference wins.
    let mut latest: BTreeMap<String, SimulatedAuthorization> = BTreeMap::new();
    for auth in text.lines().filter_map(|line| serde_json::from_str::<SimulatedAuthorization>(line).ok()) {
        latest.insert(auth.reference.as_str().to_owned(), auth);
    }
    let mut moved = 0;
    for auth in latest.values() {
        if db.authorization(auth.reference.as_str()).await.map_err(unavailable)?.is_none() {
            db.insert_authorization(auth, now).await.map_err(unavailable)?;
            moved += 1;
        }
    }
    let mut renamed = journal.as_os_str().to_owned();
    renamed.push(".imported");
    std::fs::rename(journal, renamed).map_err(unavailable)?;
    Ok(moved)
}

impl Authorizer for Simulator {
    fn authorize<'a>(&'a self, request: AuthorizationRequest<'a>) -> AuthFuture<'a, Reference> {
        Box::pin(async move { self.authorize_now(&request).await })
    }

    fn capture<'a>(&'a self, reference: &'a Reference, amount: Money) -> AuthFuture<'a, ()> {
        Box::pin(self.change(reference, move |auth| settled(auth, AuthorizationState::Captured, Some(amount))))
    }

    fn void<'a>(&'a self, reference: &'a Reference) -> AuthFuture<'a, ()> {
        Box::pin(self.change(reference, |auth| settled(auth, AuthorizationState::Voided, None)))
    }

    fn refund<'a>(&'a self, reference: &'a Reference, amount: Money, refund_id: &'a str) -> AuthFuture<'a, ()> {
        Box::pin(self.change(reference, move |auth| refunded(auth, amount, refund_id)))
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

    #[tokio::test]
    async fn a_journal_of_an_earlier_version_is_imported_once_and_answers_on_every_instance() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("center.sqlite").display());
        let journal = dir.path().join("authorizations.jsonl");
        let card = PaymentCard::parse("4242424242424242", "12/40", "123").unwrap();
        let amount = Money::new(5_000, kessai_core::Currency::JPY).unwrap();
        let now = Timestamp::from_unix_s(1_795_000_000);
        let reference = Reference::parse("auth_00112233445566778899aabbccddeeff").unwrap();
        let authorized = SimulatedAuthorization {
            reference: reference.clone(),
            charge_id: "vup_1".into(),
            amount,
            state: AuthorizationState::Authorized,
            refunds: Default::default(),
        };
        let captured = SimulatedAuthorization { state: AuthorizationState::Captured, ..authorized.clone() };
        let lines = [serde_json::to_string(&authorized).unwrap(), serde_json::to_string(&captured).unwrap()];
        // The last line torn by a crash mid-append.
        std::fs::write(&journal, format!("{}\n{}\n{{\"reference\":\"auth_", lines[0], lines[1])).unwrap();
        let db = CenterDb::open(&url).await.unwrap();
        assert_eq!(import_journal(&journal, &db, now).await.unwrap(), 1);
        assert!(!journal.exists(), "renamed once imported");
        assert_eq!(import_journal(&journal, &db, now).await.unwrap(), 0);
        // A second instance on the same database sees the imported state.
        let other = Simulator::in_database(CenterDb::open(&url).await.unwrap());
        assert_eq!(other.authorizations().await.unwrap(), vec![captured]);
        other.refund(&reference, amount, "rf_1").await.unwrap();
        // The same charge asks again: the same authorization.
        let same = Simulator::in_database(db)
            .authorize_now(&AuthorizationRequest { charge_id: "vup_1", card: &card, amount, now })
            .await
            .unwrap();
        assert_eq!(same, reference);
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
