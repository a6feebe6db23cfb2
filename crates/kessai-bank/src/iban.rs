//! IBANs (ISO 13616) and BICs (ISO 9362), checked as far as they can be
//! without a bank directory.
//!
//! An IBAN is a country code, two check digits and a national account
//! number (BBAN) of letters and digits, 34 characters at most. The check
//! digits make the whole, with the first four characters moved to the end
//! and letters read as 10–35, leave 1 modulo 97 (ISO 7064 MOD 97-10, the
//! check ISO 11649 references use too). Each country fixes its IBAN's
//! length: the table below holds the countries of the SEPA scheme and the
//! United Kingdom, from the SWIFT IBAN registry. A country not in it (new
//! ones register every year) is held to the general rules only, so a valid
//! IBAN from it is never refused; Japan has no IBAN at all, which is why
//! Zengin accounts are named by bank, branch and number instead.

use crate::limits::MAX_IBAN_CHARS;

/// IBAN length by country: the SEPA countries (EU and EEA, Switzerland,
/// the United Kingdom, Monaco, San Marino, Andorra, the Vatican, and the
/// 2024–2025 joiners Albania, Moldova, Montenegro, North Macedonia and
/// Serbia), as the SWIFT IBAN registry lists them.
const LENGTHS: &[(&str, usize)] = &[
    ("AD", 24),
    ("AL", 28),
    ("AT", 20),
    ("BE", 16),
    ("BG", 22),
    ("CH", 21),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("EE", 20),
    ("ES", 24),
    ("FI", 18),
    ("FR", 27),
    ("GB", 22),
    ("GI", 23),
    ("GR", 27),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IS", 26),
    ("IT", 27),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MT", 31),
    ("NL", 18),
    ("NO", 15),
    ("PL", 28),
    ("PT", 25),
    ("RO", 24),
    ("RS", 22),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("VA", 22),
];

/// Why an IBAN was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IbanProblem {
    /// Not `CC99` then 1–30 letters and digits.
    Shape,
    /// Check digits 00, 01 or 99, which ISO 13616 never computes.
    ReservedCheckDigits,
    /// The country's IBANs have another length.
    Length { country: [u8; 2], expected: usize },
    /// The MOD 97-10 check fails.
    CheckDigits,
}

/// An IBAN as typed (any case, spaces between groups allowed) in its
/// electronic form: upper case, no spaces.
pub(crate) fn normalize_iban(text: &str) -> String {
    text.chars().filter(|c| *c != ' ').map(|c| c.to_ascii_uppercase()).collect()
}

/// Checks an IBAN in electronic form.
pub(crate) fn check_iban(iban: &str) -> Result<(), IbanProblem> {
    let b = iban.as_bytes();
    let shaped = (5..=MAX_IBAN_CHARS).contains(&b.len())
        && b[..2].iter().all(u8::is_ascii_uppercase)
        && b[2..4].iter().all(u8::is_ascii_digit)
        && b[4..].iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if !shaped {
        return Err(IbanProblem::Shape);
    }
    if matches!(&b[2..4], b"00" | b"01" | b"99") {
        return Err(IbanProblem::ReservedCheckDigits);
    }
    let country = [b[0], b[1]];
    if let Some((_, expected)) = LENGTHS.iter().find(|(c, _)| c.as_bytes() == country)
        && b.len() != *expected
    {
        return Err(IbanProblem::Length { country, expected: *expected });
    }
    if mod97(b[4..].iter().chain(&b[..4])) != 1 {
        return Err(IbanProblem::CheckDigits);
    }
    Ok(())
}

/// ISO 7064 MOD 97-10 remainder of letters and digits, letters as 10–35.
fn mod97<'a>(chars: impl Iterator<Item = &'a u8>) -> u32 {
    chars.fold(0u32, |rem, c| {
        if c.is_ascii_digit() {
            (rem * 10 + u32::from(c - b'0')) % 97
        } else {
            (rem * 100 + u32::from(c - b'A') + 10) % 97
        }
    })
}

/// Whether `bic` is a BIC as ISO 9362:2014 and the ISO 20022 schemas'
/// `BICFIDec2014Identifier` spell it: four letters or digits (the
/// institution), a two-letter country, two letters or digits (the
/// location), and optionally three letters or digits (the branch), upper
/// case.
pub(crate) fn is_bic(bic: &str) -> bool {
    let b = bic.as_bytes();
    let alnum = |s: &[u8]| s.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    matches!(b.len(), 8 | 11) && alnum(&b[..4]) && b[4..6].iter().all(u8::is_ascii_uppercase) && alnum(&b[6..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_examples_pass_and_altered_ones_do_not() {
        // The registry's and the banks' published examples.
        for iban in [
            "DE89370400440532013000",
            "GB82WEST12345698765432",
            "FR1420041010050500013M02606",
            "BE68539007547034",
            "NL91ABNA0417164300",
            "CH9300762011623852957",
            "NO9386011117947",
            "MT84MALT011000012345MTLCAST001S",
        ] {
            assert_eq!(check_iban(iban), Ok(()), "{iban}");
        }
        assert_eq!(check_iban("DE89370400440532013001"), Err(IbanProblem::CheckDigits));
        assert_eq!(check_iban("DE98370400440532013000"), Err(IbanProblem::CheckDigits));
        assert_eq!(check_iban("DE8937040044053201300"), Err(IbanProblem::Length { country: *b"DE", expected: 22 }));
        assert_eq!(check_iban("DE00370400440532013000"), Err(IbanProblem::ReservedCheckDigits));
        for bad in ["", "DE89", "de89370400440532013000", "D189370400440532013000", "DE8937040044053201300-", "DEXX37"]
        {
            assert_eq!(check_iban(bad), Err(IbanProblem::Shape), "{bad:?}");
        }
        assert_eq!(check_iban(&format!("DE89{}", "1".repeat(31))), Err(IbanProblem::Shape));
    }

    #[test]
    fn countries_outside_the_table_meet_the_general_rules_only() {
        // Brazil's published example: not in our table, still checked.
        assert_eq!(check_iban("BR1800360305000010009795493C1"), Ok(()));
        assert_eq!(check_iban("BR1800360305000010009795493C2"), Err(IbanProblem::CheckDigits));
        assert_eq!(normalize_iban("de89 3704 0044 0532 0130 00"), "DE89370400440532013000");
    }

    #[test]
    fn bics_have_eight_or_eleven_characters() {
        for ok in ["DEUTDEFF", "DEUTDEFF500", "BOTKJPJT", "BOTKJPJTXXX", "1234JPJT"] {
            assert!(is_bic(ok), "{ok}");
        }
        for bad in ["", "DEUTDEF", "DEUTDEFF5", "DEUTDEFF50", "DEUT1EFF", "deutdeff", "DEUTDEFF500X", "DEUT-EFF"] {
            assert!(!is_bic(bad), "{bad}");
        }
    }
}
