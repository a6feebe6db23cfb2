//! Where a settlement or a value update stands, and why one ended voided.

use serde::{Deserialize, Serialize};

use crate::ErrorCode;

/// Where a settlement or a value update stands. Stored as its snake_case
/// name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// INITIALIZE UPDATE sent; waiting for the card's answer.
    Authenticating,
    /// EXTERNAL AUTHENTICATE and READ BALANCE sent.
    ReadingBalance,
    /// The cardholder chose to pay the bill with a bank deposit token on
    /// the card (seed 002): its redemption, proven by the card, completes
    /// the settlement.
    PayingByToken,
    /// Offer (SIG2, or SIG5) signed and the sealed command handed out; the
    /// transfer is pending.
    Offered,
    /// A new session was begun to ask the card what happened.
    Recovering,
    /// TRANSACTION STATUS sent in the new session.
    RecoveringStatus,
    /// The card did not know the transaction; READ BALANCE sent to compare
    /// its counter with the one at the offer.
    RecoveringBalance,
    /// The card confirmed the command; the transfer is posted.
    Completed,
    /// Provably not applied; the transfer (if any) is voided.
    Voided,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Authenticating => "authenticating",
            Phase::ReadingBalance => "reading_balance",
            Phase::PayingByToken => "paying_by_token",
            Phase::Offered => "offered",
            Phase::Recovering => "recovering",
            Phase::RecoveringStatus => "recovering_status",
            Phase::RecoveringBalance => "recovering_balance",
            Phase::Completed => "completed",
            Phase::Voided => "voided",
        }
    }

    /// Every phase, in the order a step may reach them.
    pub const ALL: [Phase; 9] = [
        Phase::Authenticating,
        Phase::ReadingBalance,
        Phase::PayingByToken,
        Phase::Offered,
        Phase::Recovering,
        Phase::RecoveringStatus,
        Phase::RecoveringBalance,
        Phase::Completed,
        Phase::Voided,
    ];

    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether a sealed command (DEBIT or CREDIT) may have reached the card.
    pub fn debit_issued(self) -> bool {
        matches!(self, Phase::Offered | Phase::Recovering | Phase::RecoveringStatus | Phase::RecoveringBalance)
    }
}

/// Why a settlement or a value update ended voided: its `reason_code`.
/// Either a step of its life (cancelled, abandoned, a command
/// the card never applied, a funding that failed after the card applied it),
/// or the refusal that ended it, by its error code (`card_declined`,
/// `over_max_balance`, `insufficient_balance`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The wallet (or the cardholder) cancelled before the command was issued.
    Cancelled,
    /// Left unfinished until it expired, before the command was issued.
    Abandoned,
    /// The card proved the command was never applied.
    NotApplied,
    /// The card applied the credit, but its authorization could not be
    /// captured; the value is taken back as owed.
    FundingRefused,
    /// Ended by what this error code names: a refusal before anything
    /// reached the card, or the card reported lost (`card_lost`) while the
    /// command was out.
    Refused(ErrorCode),
    /// Voided before reasons were recorded (records of the first releases).
    Unstated,
}

impl Reason {
    /// The reasons that are steps of a life, not refusals.
    pub const LIFE: [Reason; 5] =
        [Reason::Cancelled, Reason::Abandoned, Reason::NotApplied, Reason::FundingRefused, Reason::Unstated];

    /// The wire (and stored) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Cancelled => "cancelled",
            Reason::Abandoned => "abandoned",
            Reason::NotApplied => "not_applied",
            Reason::FundingRefused => "funding_refused",
            Reason::Unstated => "voided",
            Reason::Refused(code) => code.as_str(),
        }
    }

    /// What the reason means, in one line.
    pub fn description(self) -> &'static str {
        match self {
            Reason::Cancelled => "cancelled before the command was issued",
            Reason::Abandoned => "left unfinished until it expired, before the command was issued",
            Reason::NotApplied => "the card proved the command was never applied",
            Reason::FundingRefused => "the card applied the credit; its authorization could not be captured",
            Reason::Unstated => "voided before reasons were recorded",
            Reason::Refused(code) => code.description(),
        }
    }

    /// The reason of a name; `None` for a name this build does not know.
    pub fn parse(name: &str) -> Option<Reason> {
        Reason::LIFE.into_iter().find(|r| r.as_str() == name).or_else(|| ErrorCode::parse(name).map(Reason::Refused))
    }
}

by_name!(Reason, "reason");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_and_reasons_read_back_from_their_names() {
        for p in Phase::ALL {
            assert_eq!(Phase::parse(p.as_str()), Some(p));
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{}\"", p.as_str()));
        }
        let reasons = Reason::LIFE.into_iter().chain(ErrorCode::ALL.iter().map(|c| Reason::Refused(*c)));
        for r in reasons {
            assert_eq!(Reason::parse(r.as_str()), Some(r), "{r}");
            let text = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Reason>(&text).unwrap(), r);
        }
        // No step's name is also an error code's: a name reads back one way.
        for r in Reason::LIFE {
            assert_eq!(ErrorCode::parse(r.as_str()), None, "{r}");
        }
        assert_eq!(Reason::parse("no_such_reason"), None);
    }
}
