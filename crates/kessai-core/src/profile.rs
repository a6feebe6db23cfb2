//! The purchase profiles a center may accept, each a way of running seed
//! 001's purchase (PROTOCOL.md §5.1 says what each proves and to whom).

use serde::{Deserialize, Serialize};

/// How a purchase runs between wallet, card and center.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// The first embodiment (FIG. 8): the center reads the balance inside
    /// the secure session and signs an offer (SIG2) the cardholder consents
    /// to; 3 round trips.
    Offer,
    /// The second embodiment (FIG. 20–21): the wallet reads the balance and
    /// shows it before asking the center; the center answers the sealed
    /// READ BALANCE and DEBIT together, no SIG2; 2 round trips.
    Confirmed,
    /// The "Modifications" variant of the second embodiment: as
    /// `Confirmed`, but the center does not read the balance at all (the
    /// card itself refuses a debit above it); 2 round trips.
    Direct,
}

impl Profile {
    pub const ALL: [Profile; 3] = [Profile::Offer, Profile::Confirmed, Profile::Direct];

    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Offer => "offer",
            Profile::Confirmed => "confirmed",
            Profile::Direct => "direct",
        }
    }

    pub fn parse(s: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// HTTPS round trips between wallet and center for one purchase.
    pub fn round_trips(self) -> usize {
        match self {
            Profile::Offer => 3,
            Profile::Confirmed | Profile::Direct => 2,
        }
    }

    /// Whether the center signs an offer (SIG2) the wallet can keep.
    pub fn signs_offer(self) -> bool {
        self == Profile::Offer
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of profiles (a store's policy), stored as their names joined by
/// commas in [`Profile::ALL`]'s order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profiles(u8);

impl Profiles {
    /// Every profile: what a store accepts until its operator says otherwise.
    pub const ALL: Profiles = Profiles(0b111);

    fn bit(p: Profile) -> u8 {
        1 << (p as u8)
    }

    /// The set of `list`; `None` if it is empty.
    pub fn of(list: &[Profile]) -> Option<Profiles> {
        let bits = list.iter().fold(0, |acc, p| acc | Self::bit(*p));
        (bits != 0).then_some(Profiles(bits))
    }

    pub fn accepts(self, p: Profile) -> bool {
        self.0 & Self::bit(p) != 0
    }

    pub fn list(self) -> Vec<Profile> {
        Profile::ALL.into_iter().filter(|p| self.accepts(*p)).collect()
    }

    /// `offer,confirmed`: names joined by commas.
    pub fn to_text(self) -> String {
        self.list().iter().map(|p| p.as_str()).collect::<Vec<_>>().join(",")
    }

    /// Parses [`Profiles::to_text`]; anything else is `None`.
    pub fn from_text(s: &str) -> Option<Profiles> {
        let list: Option<Vec<Profile>> = s.split(',').map(Profile::parse).collect();
        Profiles::of(&list?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_of_profiles_round_trips_through_its_text_and_refuses_anything_else() {
        for list in [&[Profile::Offer][..], &[Profile::Confirmed, Profile::Direct], &Profile::ALL] {
            let set = Profiles::of(list).unwrap_or(Profiles::ALL);
            assert_eq!(Profiles::from_text(&set.to_text()), Some(set));
            assert_eq!(set.list(), list);
        }
        assert_eq!(Profiles::ALL.to_text(), "offer,confirmed,direct");
        assert!(!Profiles::of(&[Profile::Offer]).is_some_and(|s| s.accepts(Profile::Confirmed)));
        for bad in ["", "offer,", "Offer", "offer;direct", "sig2"] {
            assert_eq!(Profiles::from_text(bad), None, "{bad:?}");
        }
        assert_eq!(Profiles::of(&[]), None);
    }
}
