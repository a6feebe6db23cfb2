//! Money: integer minor units and an ISO 4217 currency. No floats anywhere.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::MAX_AMOUNT_MINOR;

/// Why a currency code or an amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MoneyError {
    #[error("unknown or unsupported currency code {0:?} (expected an ISO 4217 code such as JPY)")]
    UnknownCurrency(String),
    #[error("currency mismatch: {left} and {right}")]
    CurrencyMismatch { left: Currency, right: Currency },
    #[error("amount {0} exceeds the maximum of {MAX_AMOUNT_MINOR} minor units")]
    TooLarge(u128),
    #[error("amount would fall below zero")]
    Negative,
    #[error("{text:?} is not an amount in {currency} (digits, and at most {exponent} after a point)")]
    NotAnAmount { text: String, currency: Currency, exponent: u8 },
}

/// The currencies kessai settles in, with their ISO 4217 minor-unit exponent.
const CURRENCIES: &[(&str, u8)] = &[
    ("AUD", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CNY", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("HKD", 2),
    ("JPY", 0),
    ("KRW", 0),
    ("NZD", 2),
    ("SGD", 2),
    ("TWD", 2),
    ("USD", 2),
];

/// An ISO 4217 currency that kessai supports. Exists only if valid.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

impl Currency {
    /// The ISO 4217 codes of every supported currency, in order.
    pub fn codes() -> impl Iterator<Item = &'static str> {
        CURRENCIES.iter().map(|(code, _)| *code)
    }

    /// Japanese yen, the currency of the demo deployment.
    pub const JPY: Currency = Currency { code: *b"JPY", exponent: 0 };
    /// US dollar.
    pub const USD: Currency = Currency { code: *b"USD", exponent: 2 };

    /// Parses an upper-case three-letter code from the supported table.
    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(c, exponent)| {
                let b = c.as_bytes();
                Currency { code: [b[0], b[1], b[2]], exponent: *exponent }
            })
            .ok_or_else(|| MoneyError::UnknownCurrency(code.chars().take(8).collect()))
    }

    /// The three-letter code.
    pub fn code(&self) -> &str {
        // The code bytes come only from the ASCII table above.
        std::str::from_utf8(&self.code).unwrap_or("???")
    }

    /// Digits after the decimal point (0 for JPY, 2 for USD).
    pub fn exponent(&self) -> u8 {
        self.exponent
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.code())
    }
}

impl std::str::FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::parse(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s: std::borrow::Cow<'de, str> = Deserialize::deserialize(d)?;
        Currency::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A non-negative amount of one currency, at most [`MAX_AMOUNT_MINOR`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "MoneyWire", into = "MoneyWire")]
pub struct Money {
    amount_minor: u64,
    currency: Currency,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoneyWire {
    amount_minor: u64,
    currency: Currency,
}

impl TryFrom<MoneyWire> for Money {
    type Error = MoneyError;
    fn try_from(w: MoneyWire) -> Result<Self, Self::Error> {
        Money::new(w.amount_minor, w.currency)
    }
}

impl From<Money> for MoneyWire {
    fn from(m: Money) -> Self {
        MoneyWire { amount_minor: m.amount_minor, currency: m.currency }
    }
}

impl Money {
    /// An amount in minor units (yen, cents).
    pub fn new(amount_minor: u64, currency: Currency) -> Result<Money, MoneyError> {
        if amount_minor > MAX_AMOUNT_MINOR {
            return Err(MoneyError::TooLarge(u128::from(amount_minor)));
        }
        Ok(Money { amount_minor, currency })
    }

    /// An amount as a person writes it, in major units of `currency`:
    /// `1200` yen, `12.34` or `12` dollars. Digits, and at most the
    /// currency's exponent of them after one point; no sign, no grouping,
    /// no exponent. Never through a float.
    pub fn parse_major(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        let exponent = currency.exponent;
        let refuse = || MoneyError::NotAnAmount { text: text.chars().take(32).collect(), currency, exponent };
        let (major, minor) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        let point_ok = !text.contains('.') || (!minor.is_empty() && exponent > 0);
        if major.is_empty() || !digits(major) || !digits(minor) || minor.len() > usize::from(exponent) || !point_ok {
            return Err(refuse());
        }
        let scale = 10u128.pow(u32::from(exponent));
        let padded = format!("{minor:0<width$}", width = usize::from(exponent));
        let major: u128 = major.parse().map_err(|_| refuse())?;
        let minor: u128 = if padded.is_empty() { 0 } else { padded.parse().map_err(|_| refuse())? };
        let total = major.checked_mul(scale).and_then(|m| m.checked_add(minor)).ok_or_else(refuse)?;
        let total = u64::try_from(total).map_err(|_| MoneyError::TooLarge(total))?;
        Money::new(total, currency)
    }

    /// Zero of a currency.
    pub fn zero(currency: Currency) -> Money {
        Money { amount_minor: 0, currency }
    }

    pub fn amount_minor(&self) -> u64 {
        self.amount_minor
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn is_zero(&self) -> bool {
        self.amount_minor == 0
    }

    fn same_currency(&self, other: &Money) -> Result<(), MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch { left: self.currency, right: other.currency });
        }
        Ok(())
    }

    /// Sum, refusing a currency mismatch or a result above the maximum.
    pub fn checked_add(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let sum = u128::from(self.amount_minor) + u128::from(other.amount_minor);
        let sum = u64::try_from(sum).map_err(|_| MoneyError::TooLarge(sum))?;
        Money::new(sum, self.currency)
    }

    /// Difference, refusing a currency mismatch or a result below zero.
    pub fn checked_sub(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let diff = self.amount_minor.checked_sub(other.amount_minor).ok_or(MoneyError::Negative)?;
        Money::new(diff, self.currency)
    }

    /// Product with a quantity, refusing a result above the maximum.
    pub fn checked_mul(&self, quantity: u32) -> Result<Money, MoneyError> {
        let product = u128::from(self.amount_minor) * u128::from(quantity);
        let product = u64::try_from(product).map_err(|_| MoneyError::TooLarge(product))?;
        Money::new(product, self.currency)
    }
}

impl fmt::Display for Money {
    /// `JPY 1,200` or `USD 12.34`: the major part grouped by thousands.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scale = 10u64.pow(u32::from(self.currency.exponent));
        let major = self.amount_minor / scale;
        let minor = self.amount_minor % scale;
        let digits = major.to_string();
        let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(ch);
        }
        write!(f, "{} {}", self.currency, grouped)?;
        if self.currency.exponent > 0 {
            write!(f, ".{:0width$}", minor, width = usize::from(self.currency.exponent))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({self})")
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_amount_in_major_units_is_parsed_without_floats() {
        let usd = Currency::USD;
        assert_eq!(Money::parse_major("12.34", usd).unwrap().amount_minor(), 1234);
        assert_eq!(Money::parse_major("12.3", usd).unwrap().amount_minor(), 1230);
        assert_eq!(Money::parse_major("12", usd).unwrap().amount_minor(), 1200);
        assert_eq!(Money::parse_major("0.01", usd).unwrap().amount_minor(), 1);
        assert_eq!(Money::parse_major("1200", Currency::JPY).unwrap().amount_minor(), 1200);
        for bad in ["", ".5", "12.", "12.345", "-1", "+1", "1,200", "1e3", " 1", "1.2.3", "１２"] {
            assert!(Money::parse_major(bad, usd).is_err(), "{bad:?}");
        }
        assert!(Money::parse_major("12.5", Currency::JPY).is_err(), "yen have no fraction");
        assert!(Money::parse_major("99999999999999999999999", usd).is_err(), "too large");
    }

    use super::*;

    #[test]
    fn display_groups_thousands_and_minor_units() {
        assert_eq!(Money::new(1_234_567, Currency::JPY).unwrap().to_string(), "JPY 1,234,567");
        assert_eq!(Money::new(1205, Currency::USD).unwrap().to_string(), "USD 12.05");
        assert_eq!(Money::new(0, Currency::JPY).unwrap().to_string(), "JPY 0");
    }

    #[test]
    fn arithmetic_is_checked() {
        let a = Money::new(MAX_AMOUNT_MINOR, Currency::JPY).unwrap();
        let one = Money::new(1, Currency::JPY).unwrap();
        assert!(matches!(a.checked_add(&one), Err(MoneyError::TooLarge(_))));
        assert_eq!(one.checked_sub(&a), Err(MoneyError::Negative));
        let usd = Money::new(1, Currency::USD).unwrap();
        assert!(matches!(one.checked_add(&usd), Err(MoneyError::CurrencyMismatch { .. })));
        assert!(matches!(a.checked_mul(2), Err(MoneyError::TooLarge(_))));
        assert_eq!(one.checked_mul(3).unwrap().amount_minor(), 3);
        assert!(Money::new(MAX_AMOUNT_MINOR + 1, Currency::JPY).is_err());
    }

    #[test]
    fn currency_parsing_is_strict() {
        assert_eq!(Currency::parse("JPY").unwrap(), Currency::JPY);
        assert!(Currency::parse("jpy").is_err());
        assert!(Currency::parse("XXX").is_err());
        assert!(Currency::parse("").is_err());
    }

    #[test]
    fn json_round_trip_and_validation() {
        let m = Money::new(1200, Currency::JPY).unwrap();
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(s, r#"{"amount_minor":1200,"currency":"JPY"}"#);
        assert_eq!(serde_json::from_str::<Money>(&s).unwrap(), m);
        assert!(serde_json::from_str::<Money>(r#"{"amount_minor":-1,"currency":"JPY"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount_minor":1.5,"currency":"JPY"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount_minor":1,"currency":"JPY","x":1}"#).is_err());
        let too_big = format!(r#"{{"amount_minor":{},"currency":"JPY"}}"#, MAX_AMOUNT_MINOR + 1);
        assert!(serde_json::from_str::<Money>(&too_big).is_err());
    }
}
