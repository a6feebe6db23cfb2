//! Time as seconds since the Unix epoch, read only through a [`Clock`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// Seconds since 1970-01-01T00:00:00Z (a JWT NumericDate, integer only).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(u64);

impl Timestamp {
    pub const fn from_unix_s(s: u64) -> Timestamp {
        Timestamp(s)
    }

    pub const fn unix_s(&self) -> u64 {
        self.0
    }

    pub fn checked_add_s(&self, s: u64) -> Option<Timestamp> {
        self.0.checked_add(s).map(Timestamp)
    }

    pub fn saturating_sub_s(&self, s: u64) -> Timestamp {
        Timestamp(self.0.saturating_sub(s))
    }

    /// `YYYY-MM-DD HH:MM UTC`, for people.
    pub fn utc(&self) -> String {
        utc(i64::try_from(self.0).unwrap_or(i64::MAX))
    }
}

/// A Unix time as `YYYY-MM-DD HH:MM UTC` (proleptic Gregorian calendar).
pub fn utc(unix_s: i64) -> String {
    let (year, month, day, secs) = civil(unix_s);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", secs / 3_600, secs % 3_600 / 60)
}

/// The UTC calendar day of a Unix time and the seconds into it: `(year,
/// month 1–12, day 1–31, seconds)`, by the days-to-civil conversion of
/// Howard Hinnant's date algorithms (proleptic Gregorian).
pub fn civil(unix_s: i64) -> (i64, u8, u8, u32) {
    let days = unix_s.div_euclid(86_400);
    let secs = unix_s.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    // In range by construction: month 1–12, day 1–31, secs < 86,400.
    (year, u8::try_from(month).unwrap_or(1), u8::try_from(day).unwrap_or(1), u32::try_from(secs).unwrap_or(0))
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The source of "now". The core never reads the system clock itself.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The real clock, for binaries.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            // A clock set before 1970 is broken; 0 makes every token look
            // not-yet-valid, which fails closed.
            .unwrap_or(0);
        Timestamp(s)
    }
}

/// A clock that stands still until moved, for tests and replays.
#[derive(Debug, Default)]
pub struct FixedClock(std::sync::atomic::AtomicU64);

impl FixedClock {
    pub fn new(at: Timestamp) -> FixedClock {
        FixedClock(std::sync::atomic::AtomicU64::new(at.0))
    }

    pub fn set(&self, at: Timestamp) {
        self.0.store(at.0, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn advance_s(&self, s: u64) {
        self.0.fetch_add(s, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for FixedClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}

#[cfg(test)]
mod utc_tests {
    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(super::utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(super::utc(1_795_262_400 + 3_660), "2026-11-21 13:01 UTC");
        assert_eq!(super::utc(-1), "1969-12-31 23:59 UTC");
        assert_eq!(super::Timestamp::from_unix_s(951_782_400).utc(), "2000-02-29 00:00 UTC");
    }
}
