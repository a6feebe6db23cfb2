//! Calendar dates (proleptic Gregorian), as bank files carry them.
//!
//! A [`Date`] exists only if it names a real day between 1900 and 9999;
//! it prints as `YYYY-MM-DD`. Zengin files count years in the Reiwa era
//! (令和): [`Date::from_reiwa_yymmdd`] and [`Date::reiwa_yymmdd`].

use std::fmt;

/// First day of the Reiwa era (令和元年5月1日).
const REIWA_START: Date = Date { year: 2019, month: 5, day: 1 };
/// Gregorian year of Reiwa year 0 (Reiwa 1 is 2019).
const REIWA_OFFSET: u16 = 2018;

/// A real calendar day.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

/// Why a date was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DateProblem {
    /// Not `YYYY-MM-DD` (or `YYMMDD`) digits, or no such day.
    NotADate,
    /// A real day, but outside the Reiwa era a Zengin file can name.
    OutsideReiwa,
}

impl Date {
    /// A day from its parts, if it exists (1900–9999).
    pub fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        let valid =
            (1900..=9999).contains(&year) && (1..=12).contains(&month) && day >= 1 && day <= days_in(year, month);
        valid.then_some(Date { year, month, day })
    }

    /// `YYYY-MM-DD`, exactly ten characters.
    pub fn parse(text: &str) -> Option<Date> {
        let b = text.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let year = digits(&b[0..4])?;
        let month = digits(&b[5..7])?;
        let day = digits(&b[8..10])?;
        Date::new(u16::try_from(year).ok()?, u8::try_from(month).ok()?, u8::try_from(day).ok()?)
    }

    /// A Zengin `YYMMDD` in the Reiwa era (年は和暦): `080501` is 2026-05-01.
    /// Only Reiwa is read: a Heisei date (before 2019-05-01) would need the
    /// era, which the six digits do not carry, and no file we read is that
    /// old.
    pub(crate) fn from_reiwa_yymmdd(b: &[u8]) -> Result<Date, DateProblem> {
        if b.len() != 6 {
            return Err(DateProblem::NotADate);
        }
        let yy = digits(&b[0..2]).ok_or(DateProblem::NotADate)?;
        let mm = digits(&b[2..4]).ok_or(DateProblem::NotADate)?;
        let dd = digits(&b[4..6]).ok_or(DateProblem::NotADate)?;
        let year = REIWA_OFFSET + u16::try_from(yy).map_err(|_| DateProblem::NotADate)?;
        let month = u8::try_from(mm).map_err(|_| DateProblem::NotADate)?;
        let day = u8::try_from(dd).map_err(|_| DateProblem::NotADate)?;
        let date = Date::new(year, month, day).ok_or(DateProblem::NotADate)?;
        if yy == 0 || date < REIWA_START {
            return Err(DateProblem::OutsideReiwa);
        }
        Ok(date)
    }

    /// This day as a Zengin `YYMMDD` in the Reiwa era, if it falls in
    /// Reiwa 1–99.
    pub(crate) fn reiwa_yymmdd(&self) -> Result<String, DateProblem> {
        let yy = self.year.checked_sub(REIWA_OFFSET).filter(|yy| (1..=99).contains(yy));
        match yy {
            Some(yy) if *self >= REIWA_START => Ok(format!("{yy:02}{:02}{:02}", self.month, self.day)),
            _ => Err(DateProblem::OutsideReiwa),
        }
    }

    /// `MMDD`: the month and day as a Zengin 総合振込 names its 振込指定日,
    /// the year left to the bank (the next such day).
    pub(crate) fn mmdd(&self) -> String {
        format!("{:02}{:02}", self.month, self.day)
    }

    /// The day a Unix time (seconds, UTC) falls on, and the seconds into
    /// that day.
    pub(crate) fn from_unix_s(unix_s: u64) -> (Date, u32) {
        // Clamped so the date stays within 9999-12-31, far beyond any time
        // a caller passes.
        let unix_s = i64::try_from(unix_s.min(253_402_300_799)).unwrap_or(0);
        let (year, month, day, secs) = kessai_core::time::civil(unix_s);
        (Date { year: u16::try_from(year).unwrap_or(9999), month, day }, secs)
    }

    /// The UTC day of `at`.
    pub fn of(at: kessai_core::time::Timestamp) -> Date {
        Date::from_unix_s(at.unix_s()).0
    }

    /// Days since 1970-01-01 (which is day 0), by the days-from-civil
    /// conversion of Howard Hinnant's date algorithms.
    pub fn unix_day(&self) -> i64 {
        let (month, day) = (i64::from(self.month), i64::from(self.day));
        let year = i64::from(self.year) - i64::from(month <= 2);
        let era = year.div_euclid(400);
        let yoe = year.rem_euclid(400);
        let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The day `unix_day` days after 1970-01-01 (clamped to 9999-12-31).
    pub fn from_unix_day(unix_day: i64) -> Date {
        Date::from_unix_s(u64::try_from(unix_day.max(0)).unwrap_or(0).saturating_mul(86_400)).0
    }

    pub fn year(&self) -> u16 {
        self.year
    }

    pub fn month(&self) -> u8 {
        self.month
    }

    /// The first day of this day's month.
    pub fn first_of_month(&self) -> Date {
        Date { day: 1, ..*self }
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')))
}

fn is_leap(year: u16) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl fmt::Debug for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Date({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_days_count_from_the_epoch_and_round_trip() {
        assert_eq!(Date::new(1970, 1, 1).unwrap().unix_day(), 0);
        assert_eq!(Date::new(2000, 3, 1).unwrap().unix_day(), 11_017);
        assert_eq!(Date::new(2026, 12, 5).unwrap().unix_day(), 20_792);
        for day in [0, 59, 60, 11_016, 11_017, 20_792, 2_932_896] {
            assert_eq!(Date::from_unix_day(day).unix_day(), day);
        }
        assert_eq!(Date::from_unix_day(-5), Date::new(1970, 1, 1).unwrap());
        assert_eq!(Date::new(2024, 2, 29).unwrap().first_of_month(), Date::new(2024, 2, 1).unwrap());
    }

    #[test]
    fn only_real_days_parse() {
        for (text, ok) in [
            ("2026-05-01", true),
            ("2024-02-29", true),
            ("2023-02-29", false),
            ("2000-02-29", true),
            ("2100-02-29", false),
            ("2026-04-31", false),
            ("2026-13-01", false),
            ("2026-00-10", false),
            ("2026-1-01", false),
            ("2026-05-01T00:00:00", false),
            ("２０２６-05-01", false),
        ] {
            assert_eq!(Date::parse(text).is_some(), ok, "{text}");
        }
        assert_eq!(Date::parse("2026-05-01").unwrap().to_string(), "2026-05-01");
    }

    #[test]
    fn reiwa_years_convert_both_ways() {
        let cases: [(&[u8], Result<&str, DateProblem>); 7] = [
            (b"080501", Ok("2026-05-01")),
            (b"010501", Ok("2019-05-01")),
            (b"010430", Err(DateProblem::OutsideReiwa)),
            (b"000501", Err(DateProblem::OutsideReiwa)),
            (b"080230", Err(DateProblem::NotADate)),
            (b"08 501", Err(DateProblem::NotADate)),
            (b"0805010", Err(DateProblem::NotADate)),
        ];
        for (yymmdd, want) in cases {
            let got = Date::from_reiwa_yymmdd(yymmdd).map(|d| d.to_string());
            assert_eq!(got.as_deref().map_err(|e| *e), want, "{yymmdd:?}");
        }
        let d = Date::parse("2026-05-01").unwrap();
        assert_eq!(d.reiwa_yymmdd().unwrap(), "080501");
        assert_eq!(Date::parse("2019-04-30").unwrap().reiwa_yymmdd(), Err(DateProblem::OutsideReiwa));
        assert_eq!(Date::parse("2118-01-01").unwrap().reiwa_yymmdd(), Err(DateProblem::OutsideReiwa));
    }

    #[test]
    fn unix_times_fall_on_their_utc_day() {
        assert_eq!(Date::from_unix_s(0), (Date::parse("1970-01-01").unwrap(), 0));
        assert_eq!(Date::from_unix_s(1_800_000_000), (Date::parse("2027-01-15").unwrap(), 28_800));
        assert_eq!(Date::from_unix_s(951_782_400).0, Date::parse("2000-02-29").unwrap());
    }
}
