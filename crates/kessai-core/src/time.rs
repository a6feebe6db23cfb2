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
