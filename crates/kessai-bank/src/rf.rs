//! ISO 11649 creditor references ("RF" references).
//!
//! A reference is `RF`, two check digits and a body of 1–21 letters and
//! digits; the check digits make the whole, read as an ISO 7064 MOD 97-10
//! number (letters as 10–35, `RF` and the check digits moved to the end),
//! leave 1 — the IBAN check. A [`Reference`] exists only if it is valid:
//! [`make`] computes the check digits for a body, [`Reference::parse`]
//! checks a reference as printed, and [`find`] looks for one inside the
//! free text a payer typed.
//!
//! ```
//! let r = kessai_bank::rf::Reference::parse("RF18 5390 0754 7034")?;
//! assert_eq!(r.to_string(), "RF18539007547034");
//! assert_eq!(r.printed(), "RF18 5390 0754 7034");
//! assert_eq!(kessai_bank::rf::make("539007547034")?, r);
//! assert_eq!(kessai_bank::rf::find("Taro Yamada rf18 5390 0754 7034"), Some(r));
//! # Ok::<(), kessai_bank::rf::RfError>(())
//! ```

use std::fmt;

/// Most characters in a body.
pub const MAX_BODY_CHARS: usize = 21;
/// Most characters in a reference without spaces (`RF`, 2 digits, body).
pub const MAX_REFERENCE_CHARS: usize = 4 + MAX_BODY_CHARS;

/// Why a creditor reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RfError {
    #[error("a creditor reference body has 1 to {MAX_BODY_CHARS} characters, not {0}")]
    BodyLength(usize),
    #[error("{0:?} is not a letter or digit (a creditor reference holds only A-Z and 0-9)")]
    NotAlphanumeric(char),
    #[error("a creditor reference starts with RF and two check digits")]
    NotRf,
    #[error("check digits {found} are wrong (expected {expected})")]
    CheckDigits { found: String, expected: String },
}

/// A valid ISO 11649 creditor reference, held without spaces, upper case.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference(String);

/// The reference for `body`: 1–21 ASCII letters and digits, upper-cased.
pub fn make(body: &str) -> Result<Reference, RfError> {
    let body = normalise_body(body)?;
    let check = check_digits(&body);
    Ok(Reference(format!("RF{check:02}{body}")))
}

impl Reference {
    /// A reference as written: `RF18539007547034`, or printed in groups
    /// of four (`RF18 5390 0754 7034`); spaces are dropped and letters
    /// upper-cased, then the check digits must match the body.
    pub fn parse(text: &str) -> Result<Reference, RfError> {
        let compact: String = text.chars().filter(|c| *c != ' ').collect();
        let upper = compact.to_ascii_uppercase();
        let (Some(prefix), Some(body)) = (upper.get(..4), upper.get(4..)) else {
            return Err(RfError::NotRf);
        };
        let p = prefix.as_bytes();
        if &p[..2] != b"RF" || !p[2].is_ascii_digit() || !p[3].is_ascii_digit() {
            return Err(RfError::NotRf);
        }
        let body = normalise_body(body)?;
        let expected = format!("{:02}", check_digits(&body));
        if prefix[2..] != expected {
            return Err(RfError::CheckDigits { found: prefix[2..].to_owned(), expected });
        }
        Ok(Reference(upper))
    }

    /// `RF18539007547034`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The body, without `RF` and the check digits.
    pub fn body(&self) -> &str {
        self.0.get(4..).unwrap_or("")
    }

    /// In groups of four, as printed on a payment slip: `RF18 5390 0754 7034`.
    pub fn printed(&self) -> String {
        let mut out = String::with_capacity(self.0.len() + self.0.len() / 4);
        for (i, c) in self.0.chars().enumerate() {
            if i > 0 && i % 4 == 0 {
                out.push(' ');
            }
            out.push(c);
        }
        out
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({})", self.0)
    }
}

impl std::str::FromStr for Reference {
    type Err = RfError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

fn normalise_body(body: &str) -> Result<String, RfError> {
    if let Some(bad) = body.chars().find(|c| !c.is_ascii_alphanumeric()) {
        return Err(RfError::NotAlphanumeric(bad));
    }
    if body.is_empty() || body.len() > MAX_BODY_CHARS {
        return Err(RfError::BodyLength(body.chars().count()));
    }
    Ok(body.to_ascii_uppercase())
}

/// ISO 7064 MOD 97-10 over `body` + `RF00`: 98 minus the remainder, so
/// always 2–98. A reference whose digits are 00, 01 or 99 is refused even
/// if the remainder would work out, so every valid reference is exactly
/// `make(body)`.
fn check_digits(body: &str) -> u32 {
    let rem = body.bytes().chain(*b"RF00").fold(0u32, |rem, b| {
        let value = if b.is_ascii_digit() { u32::from(b - b'0') } else { u32::from(b - b'A') + 10 };
        let scale = if value >= 10 { 100 } else { 10 };
        (rem * scale + value) % 97
    });
    98 - rem
}

/// The first valid creditor reference in free text: a remittance line or a
/// remitter name, where payers type it in any case, with or without the
/// spaces of the printed form, before or after other words.
///
/// A candidate starts at `RF` (any case) not preceded by a letter or
/// digit, and runs over letters, digits and single spaces. Its end is
/// ambiguous when words follow, so ends are tried in this order until the
/// check digits match: where the printed grouping stops (groups of four,
/// the last of one to four characters), then that grouping shortened group
/// by group, then the other word ends shortest first (a reference typed
/// without spaces is one word), then any length longest first (a name
/// typed straight after the reference). A wrong end matches by chance
/// about once in 97 tries, so the order puts the likely end first.
pub fn find(text: &str) -> Option<Reference> {
    let chars: Vec<char> = text.chars().collect();
    (0..chars.len()).filter(|&i| starts_candidate(&chars, i)).find_map(|i| best_at(&chars[i..]))
}

fn starts_candidate(chars: &[char], i: usize) -> bool {
    let rf = chars.get(i).is_some_and(|c| c.eq_ignore_ascii_case(&'R'))
        && chars.get(i + 1).is_some_and(|c| c.eq_ignore_ascii_case(&'F'));
    let boundary = i == 0 || chars.get(i - 1).is_none_or(|c| !c.is_ascii_alphanumeric());
    rf && boundary
}

/// The letters and digits of a candidate, and the lengths at which a word
/// ends (the next character is not a letter or digit).
fn collect(chars: &[char]) -> (String, Vec<usize>) {
    let mut compact = String::new();
    let mut word_ends = Vec::new();
    let mut i = 0;
    while i < chars.len() && compact.len() <= MAX_REFERENCE_CHARS {
        let c = chars[i];
        if c.is_ascii_alphanumeric() {
            compact.push(c.to_ascii_uppercase());
            let next_continues = chars.get(i + 1).is_some_and(char::is_ascii_alphanumeric);
            if !next_continues {
                word_ends.push(compact.len());
            }
        } else if !(c == ' ' && chars.get(i + 1).is_some_and(char::is_ascii_alphanumeric)) {
            break;
        }
        i += 1;
    }
    word_ends.retain(|&n| n <= MAX_REFERENCE_CHARS);
    compact.truncate(MAX_REFERENCE_CHARS);
    (compact, word_ends)
}

fn best_at(chars: &[char]) -> Option<Reference> {
    let (compact, word_ends) = collect(chars);
    let printed = printed_grouping_end(&word_ends).unwrap_or(0);
    // The printed form, then shorter by whole groups, then longer by
    // words, then any length.
    let shorter = word_ends.iter().rev().copied().filter(|&n| n < printed);
    let longer = word_ends.iter().copied().filter(|&n| n > printed);
    let ordered = std::iter::once(printed).chain(shorter).chain(longer).chain((5..=compact.len()).rev());
    ordered.filter(|&n| n >= 5).filter_map(|n| compact.get(..n)).find_map(|s| Reference::parse(s).ok())
}

/// Where the printed form (`RF18 5390 0754 7034`) ends: words of exactly
/// four characters continue it, the first shorter word closes it, and a
/// longer word is not part of it.
fn printed_grouping_end(word_ends: &[usize]) -> Option<usize> {
    let mut previous = 0;
    let mut end = None;
    for &n in word_ends {
        match n - previous {
            4 => end = Some(n),
            1..=3 => return Some(n),
            _ => return end,
        }
        previous = n;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_example_is_valid_and_altered_digits_are_not() {
        let r = Reference::parse("RF18 5390 0754 7034").unwrap();
        assert_eq!(r.as_str(), "RF18539007547034");
        assert_eq!(r.body(), "539007547034");
        assert_eq!(make("539007547034").unwrap(), r);
        for bad in ["RF19 5390 0754 7034", "RF18 5390 0754 7035", "RF81 5390 0754 7034", "RF18 5309 0754 7034"] {
            assert!(matches!(Reference::parse(bad), Err(RfError::CheckDigits { .. })), "{bad}");
        }
    }

    #[test]
    fn make_covers_every_body_length_and_round_trips() {
        for len in 1..=MAX_BODY_CHARS {
            let body: String = "A1B2C3D4E5F6G7H8I9J0K".chars().take(len).collect();
            let r = make(&body).unwrap();
            assert_eq!(Reference::parse(&r.printed()).unwrap(), r);
            assert_eq!(Reference::parse(&r.as_str().to_ascii_lowercase()).unwrap(), r);
            let digits: u32 = r.as_str()[2..4].parse().unwrap();
            assert!((2..=98).contains(&digits));
        }
        assert_eq!(make("abc").unwrap().body(), "ABC");
        assert_eq!(make(""), Err(RfError::BodyLength(0)));
        assert_eq!(make("1234567890123456789012"), Err(RfError::BodyLength(22)));
        assert_eq!(make("AB-1"), Err(RfError::NotAlphanumeric('-')));
        assert_eq!(make("ｱ"), Err(RfError::NotAlphanumeric('ｱ')));
    }

    #[test]
    fn parse_refuses_what_is_not_a_reference() {
        for bad in ["", "RF", "RF18", "XX18539007547034", "RFAB539007547034", "RF18 5390-0754"] {
            assert!(Reference::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn find_reads_references_as_payers_type_them() {
        let r = Reference::parse("RF18539007547034").unwrap();
        let short = make("42").unwrap();
        let cases: Vec<(String, Option<&Reference>)> = vec![
            ("RF18 5390 0754 7034".into(), Some(&r)),
            ("rf18539007547034".into(), Some(&r)),
            ("YAMADA TARO RF18 5390 0754 7034".into(), Some(&r)),
            ("RF18539007547034 ﾔﾏﾀﾞ ﾀﾛｳ".into(), Some(&r)),
            ("RF18539007547034ﾔﾏﾀﾞ".into(), Some(&r)),
            ("RF18 5390 0754 7034 TARO".into(), Some(&r)),
            ("RF18 5390 0754 7034 YAMADA".into(), Some(&r)),
            ("RF18539007547034 INVOICE 42".into(), Some(&r)),
            ("RF18539007547034YAMADA".into(), Some(&r)),
            ("Payment (RF18 5390 0754 7034), thanks".into(), Some(&r)),
            (format!("{} {}", short.printed(), "SATO"), Some(&short)),
            ("SURF18539007547034".into(), None),
            ("RF19 5390 0754 7034".into(), None),
            ("no reference here".into(), None),
            ("RF".into(), None),
            ("".into(), None),
        ];
        for (text, want) in cases {
            assert_eq!(find(&text).as_ref(), want, "{text:?}");
        }
    }

    #[test]
    fn find_skips_an_invalid_candidate_for_a_later_valid_one() {
        assert_eq!(find("RF00 1234 then RF18 5390 0754 7034").unwrap().as_str(), "RF18539007547034");
    }
}
