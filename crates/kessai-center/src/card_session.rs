//! One secure session with a card, whatever it is for: a purchase's DEBIT,
//! a value update's CREDIT or DEBIT, a statement's log pages. Sans-I/O:
//! commands out and answers in as bytes, through the security server, which
//! alone holds the session keys (the record keeps only their sealed state).
//!
//! Written once here, for every protocol:
//! - opening a session: the card cryptogram checked, then EXTERNAL
//!   AUTHENTICATE and N sealed commands in one round trip;
//! - unsealing the answers after it (EXTERNAL AUTHENTICATE's first);
//! - the sealed READ BALANCE's answer checked (this card, this currency);
//! - the recovery probe: TRANSACTION STATUS names the transaction applied, or
//!   not known; if not known, READ BALANCE and the capacity rule decide
//!   whether it can never have been applied.

use kessai_card::limits::{READ_LOG_MAX_RECORDS, RECENT_TX_CAPACITY};
use kessai_card::protocol::{
    BalanceReport, TxResult, TxStatus, log_collected_command, parse_log, read_uncollected_command,
};
use kessai_core::Currency;
use kessai_core::ids::{CardId, TransactionId};
use kessai_core::random::Random;
use kessai_scp03::{CommandApdu, ResponseApdu, StatusWord};

use crate::purchase::{Context, Phase, Reason, StepError};
use crate::security::{SealedState, SecurityError};
use crate::statement::LogEntry;

/// What a sealed command handed out in a batch is, for reading its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sealed {
    /// LOG COLLECTED: its answer tells nothing the center needs.
    LogCollected,
    /// READ LOG of the oldest records not yet collected.
    ReadUncollected,
    ReadBalance,
    /// The DEBIT (or CREDIT) the step is about; always last.
    Transfer,
    TransactionStatus,
    /// A STORE TOKEN (or REDEEM TOKEN): a batch may carry several.
    Token,
}

/// A sealed command of a batch awaiting its answer, with the session as of
/// it: each answer's R-MAC chains on its own command.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pending {
    pub kind: Sealed,
    pub scp: SealedState,
}

/// The log commands every purchase and recovery session carries: LOG
/// COLLECTED through what the center holds of the card's log (`through`,
/// if anything), then READ LOG of the oldest records still uncollected.
pub(crate) fn collect_commands(through: Option<u32>) -> Vec<(Sealed, kessai_scp03::CommandApdu)> {
    let page = u8::try_from(READ_LOG_MAX_RECORDS).unwrap_or(1);
    let mut out: Vec<(Sealed, kessai_scp03::CommandApdu)> =
        through.filter(|t| *t > 0).map(|t| (Sealed::LogCollected, log_collected_command(t))).into_iter().collect();
    out.push((Sealed::ReadUncollected, read_uncollected_command(page)));
    out
}

/// LOG COLLECTED through the newest of `collected` (what a step just read
/// and keeps with its write), if it read any: sealed ahead of a transfer,
/// so a full log never refuses it.
pub(crate) fn ack_of(collected: &[LogEntry]) -> Vec<(Sealed, kessai_scp03::CommandApdu)> {
    collected.last().map(|newest| (Sealed::LogCollected, log_collected_command(newest.counter))).into_iter().collect()
}

/// The records of a READ LOG of uncollected records: oldest first, their
/// counters ascending one by one.
pub(crate) fn uncollected(plain: &ResponseApdu) -> Result<Vec<LogEntry>, StepError> {
    completed(plain)?;
    let records = parse_log(plain.data()).map_err(bad_answer)?;
    if records.windows(2).any(|w| w[1].counter != w[0].counter.wrapping_add(1)) {
        return Err(bad_answer("uncollected log records out of order"));
    }
    Ok(records.iter().map(crate::statement::log_entry).collect())
}

/// What the answers to a batch said, by kind.
#[derive(Debug, Default)]
pub(crate) struct BatchAnswers {
    pub(crate) collected: Vec<LogEntry>,
    pub(crate) balance: Option<ResponseApdu>,
    pub(crate) transfer: Option<ResponseApdu>,
    pub(crate) status: Option<ResponseApdu>,
    /// The token commands' answers, in order.
    pub(crate) tokens: Vec<ResponseApdu>,
}

/// A record's secure session with its card, borrowed for one step.
#[derive(Debug)]
pub(crate) struct Session<'r> {
    card_id: &'r CardId,
    /// The record's id, bound into the sealed state: one record's session
    /// cannot be used for another's.
    label: &'r str,
    scp: &'r mut Option<SealedState>,
}

impl<'r> Session<'r> {
    pub(crate) fn new(card_id: &'r CardId, label: &'r str, scp: &'r mut Option<SealedState>) -> Session<'r> {
        Session { card_id, label, scp }
    }

    fn state(&self) -> Result<&SealedState, StepError> {
        self.scp.as_ref().ok_or(StepError::Security(SecurityError::WrongPhase))
    }

    /// A new session (ending any before it, so a command sealed in an old
    /// one can never apply later): the INITIALIZE UPDATE to relay.
    pub(crate) fn begin<R: Random + ?Sized>(
        &mut self,
        ctx: &mut Context<'_, R>,
        key_version: u8,
    ) -> Result<CommandApdu, StepError> {
        let begun = ctx.security.begin(self.card_id, key_version, self.label, ctx.rng)?;
        *self.scp = Some(begun.state);
        Ok(begun.value)
    }

    /// A purchase's session: as [`Session::begin`], under the host
    /// challenge bound to its bill and card, which the wallet used already.
    pub(crate) fn begin_bound<R: Random + ?Sized>(
        &mut self,
        ctx: &mut Context<'_, R>,
        key_version: u8,
        challenge: [u8; 8],
    ) -> Result<(), StepError> {
        let begun = ctx.security.begin_with(self.card_id, key_version, self.label, challenge, ctx.rng)?;
        *self.scp = Some(begun.state);
        Ok(())
    }

    /// Checks the card cryptogram in INITIALIZE UPDATE's `answer`; returns
    /// EXTERNAL AUTHENTICATE and then each of `then` sealed, in order.
    pub(crate) fn open<R: Random + ?Sized>(
        &mut self,
        ctx: &mut Context<'_, R>,
        answer: &ResponseApdu,
        then: &[CommandApdu],
    ) -> Result<Vec<CommandApdu>, StepError> {
        completed(answer)?;
        let sec = ctx.security;
        let auth = sec.authenticate(self.card_id, self.label, self.state()?, answer, ctx.rng)?;
        let mut state = auth.state;
        let mut commands = vec![auth.value];
        for plain in then {
            let next = sec.seal_command(self.card_id, self.label, &state, plain, ctx.rng)?;
            state = next.state;
            commands.push(next.value);
        }
        *self.scp = Some(state);
        Ok(commands)
    }

    /// Checks EXTERNAL AUTHENTICATE's answer (the first of `answers`) and
    /// unseals the `sealed` answers after it.
    pub(crate) fn after_open<R: Random + ?Sized>(
        &mut self,
        ctx: &mut Context<'_, R>,
        answers: &[ResponseApdu],
        sealed: usize,
    ) -> Result<Vec<ResponseApdu>, StepError> {
        let answers = exactly(answers, 1 + sealed)?;
        let (auth, rest) = answers.split_first().ok_or(StepError::WrongAnswerCount { expected: 1, got: 0 })?;
        completed(auth)?;
        ctx.security.check_external_authenticate(self.card_id, self.label, self.state()?, auth)?;
        rest.iter().map(|wire| self.unseal(ctx, wire)).collect()
    }

    /// Unseals the card's answer to the last sealed command.
    pub(crate) fn unseal<R: Random + ?Sized>(
        &mut self,
        ctx: &mut Context<'_, R>,
        wire: &ResponseApdu,
    ) -> Result<ResponseApdu, StepError> {
        let opened = ctx.security.unseal_response(self.card_id, self.label, self.state()?, wire, ctx.rng)?;
        *self.scp = Some(opened.state);
        Ok(opened.value)
    }

    /// Checks the card cryptogram in INITIALIZE UPDATE's `answer`; returns
    /// EXTERNAL AUTHENTICATE and each of `then` sealed, with the session as
    /// of each (its answer is read with it).
    pub(crate) fn open_batch<R: Random + ?Sized>(
        &mut self,
        ctx: &mut Context<'_, R>,
        answer: &ResponseApdu,
        then: &[(Sealed, CommandApdu)],
    ) -> Result<(Vec<CommandApdu>, Vec<Pending>), StepError> {
        let mut commands = self.open(ctx, answer, &[])?;
        let (sealed, pending) = self.seal_batch(ctx, then)?;
        commands.extend(sealed);
        Ok((commands, pending))
    }

    /// Seals each of `then` in the open session, with the session as of each.
    pub(crate) fn seal_batch<R: Random + ?Sized>(
        &mut self,
        ctx: &mut Context<'_, R>,
        then: &[(Sealed, CommandApdu)],
    ) -> Result<(Vec<CommandApdu>, Vec<Pending>), StepError> {
        let (mut commands, mut pending) = (Vec::with_capacity(then.len()), Vec::with_capacity(then.len()));
        for (kind, plain) in then {
            commands.push(self.seal(ctx, plain)?);
            pending.push(Pending { kind: *kind, scp: self.state()?.clone() });
        }
        Ok((commands, pending))
    }

    /// Reads the answers to a batch: EXTERNAL AUTHENTICATE's first if
    /// `opened`, then one per `pending`, each unsealed with the session as
    /// of its command.
    pub(crate) fn read_batch<R: Random + ?Sized>(
        &mut self,
        ctx: &mut Context<'_, R>,
        answers: &[ResponseApdu],
        opened: bool,
        pending: &[Pending],
    ) -> Result<BatchAnswers, StepError> {
        let answers = exactly(answers, usize::from(opened) + pending.len())?;
        let rest = if opened {
            let (auth, rest) = answers.split_first().ok_or(StepError::WrongAnswerCount { expected: 1, got: 0 })?;
            completed(auth)?;
            ctx.security.check_external_authenticate(self.card_id, self.label, self.state()?, auth)?;
            rest
        } else {
            answers
        };
        let mut read = BatchAnswers::default();
        for (p, wire) in pending.iter().zip(rest) {
            if p.kind == Sealed::LogCollected {
                continue; // nothing in it for the center
            }
            let opened = ctx.security.unseal_response(self.card_id, self.label, &p.scp, wire, ctx.rng)?;
            let plain = opened.value;
            match p.kind {
                Sealed::ReadUncollected => read.collected = uncollected(&plain)?,
                Sealed::ReadBalance => read.balance = Some(plain),
                Sealed::Transfer => read.transfer = Some(plain),
                Sealed::TransactionStatus => read.status = Some(plain),
                Sealed::Token => read.tokens.push(plain),
                Sealed::LogCollected => {}
            }
        }
        Ok(read)
    }

    /// A recovery's answers (EXTERNAL AUTHENTICATE's, the log commands',
    /// TRANSACTION STATUS's about `tx`): the records read, and what the card
    /// said of the transaction.
    pub(crate) fn read_probe<R: Random + ?Sized>(
        &mut self,
        ctx: &mut Context<'_, R>,
        answers: &[ResponseApdu],
        pending: &[Pending],
        tx: &TransactionId,
    ) -> Result<(Vec<LogEntry>, Probe), StepError> {
        let read = self.read_batch(ctx, answers, true, pending)?;
        let status = read.status.ok_or_else(|| bad_answer("no transaction status"))?;
        Ok((read.collected, transaction_status(&status, tx)?))
    }

    /// Seals one more command in the open session.
    pub(crate) fn seal<R: Random + ?Sized>(
        &mut self,
        ctx: &mut Context<'_, R>,
        plain: &CommandApdu,
    ) -> Result<CommandApdu, StepError> {
        let next = ctx.security.seal_command(self.card_id, self.label, self.state()?, plain, ctx.rng)?;
        *self.scp = Some(next.state);
        Ok(next.value)
    }

    /// Ends the session: its sealed state is forgotten.
    pub(crate) fn end(self) {
        *self.scp = None;
    }
}

/// Runs `f` on a secure session over `scp` (`None`: none open yet) and
/// returns what it made with the session's sealed state after it.
pub(crate) fn in_session<T>(
    card: &CardId,
    label: &str,
    scp: Option<SealedState>,
    f: impl FnOnce(&mut Session<'_>) -> Result<T, StepError>,
) -> Result<(T, SealedState), StepError> {
    let mut scp = scp;
    let out = f(&mut Session::new(card, label, &mut scp))?;
    let scp = scp.ok_or(StepError::Security(SecurityError::WrongPhase))?;
    Ok((out, scp))
}

/// Where a card transaction (a purchase, a value update) stands, each state
/// with exactly the data valid in it: the sealed session while one is open,
/// `O` (what it made when it sealed its command) once the command is out,
/// `D` (what the card proved it applied) once completed. A completed one
/// without its proof cannot be represented.
#[derive(Debug, Clone)]
pub enum CardTxState<O, D> {
    Authenticating {
        scp: SealedState,
    },
    ReadingBalance {
        scp: SealedState,
    },
    Offered {
        scp: SealedState,
        offer: O,
    },
    Recovering {
        scp: SealedState,
        offer: O,
    },
    RecoveringStatus {
        scp: SealedState,
        offer: O,
    },
    RecoveringBalance {
        scp: SealedState,
        offer: O,
    },
    Completed {
        offer: O,
        done: D,
    },
    /// `balance_minor`: if it was read; `offer`: if one was made; `done`:
    /// if the card applied it but it is not completed (a charge whose
    /// funding was refused).
    Voided {
        balance_minor: Option<u64>,
        offer: Option<O>,
        done: Option<D>,
        code: Reason,
        reason: String,
    },
}

impl<O, D> CardTxState<O, D> {
    pub fn phase(&self) -> Phase {
        match self {
            CardTxState::Authenticating { .. } => Phase::Authenticating,
            CardTxState::ReadingBalance { .. } => Phase::ReadingBalance,
            CardTxState::Offered { .. } => Phase::Offered,
            CardTxState::Recovering { .. } => Phase::Recovering,
            CardTxState::RecoveringStatus { .. } => Phase::RecoveringStatus,
            CardTxState::RecoveringBalance { .. } => Phase::RecoveringBalance,
            CardTxState::Completed { .. } => Phase::Completed,
            CardTxState::Voided { .. } => Phase::Voided,
        }
    }

    /// The open session's sealed state.
    pub fn scp(&self) -> Option<&SealedState> {
        match self {
            CardTxState::Authenticating { scp }
            | CardTxState::ReadingBalance { scp }
            | CardTxState::Offered { scp, .. }
            | CardTxState::Recovering { scp, .. }
            | CardTxState::RecoveringStatus { scp, .. }
            | CardTxState::RecoveringBalance { scp, .. } => Some(scp),
            CardTxState::Completed { .. } | CardTxState::Voided { .. } => None,
        }
    }

    /// What it made when it sealed its command, once it did.
    pub fn offer(&self) -> Option<&O> {
        match self {
            CardTxState::Offered { offer, .. }
            | CardTxState::Recovering { offer, .. }
            | CardTxState::RecoveringStatus { offer, .. }
            | CardTxState::RecoveringBalance { offer, .. }
            | CardTxState::Completed { offer, .. } => Some(offer),
            CardTxState::Voided { offer, .. } => offer.as_ref(),
            CardTxState::Authenticating { .. } | CardTxState::ReadingBalance { .. } => None,
        }
    }

    /// What the card proved it applied, once it did.
    pub fn done(&self) -> Option<&D> {
        match self {
            CardTxState::Completed { done, .. } => Some(done),
            CardTxState::Voided { done, .. } => done.as_ref(),
            _ => None,
        }
    }

    /// Why it was voided: a stable code and a reason.
    pub fn outcome(&self) -> Option<(Reason, &str)> {
        match self {
            CardTxState::Voided { code, reason, .. } => Some((*code, reason)),
            _ => None,
        }
    }

    /// The open session and the offer of one whose command is out.
    pub(crate) fn command_out(&self) -> Option<(&SealedState, &O)> {
        match self {
            CardTxState::Offered { scp, offer }
            | CardTxState::Recovering { scp, offer }
            | CardTxState::RecoveringStatus { scp, offer }
            | CardTxState::RecoveringBalance { scp, offer } => Some((scp, offer)),
            _ => None,
        }
    }
}

/// The card answered 9000.
pub(crate) fn completed(r: &ResponseApdu) -> Result<(), StepError> {
    if r.sw() != StatusWord::from(0x9000u16) {
        return Err(StepError::CardRefused(r.sw()));
    }
    Ok(())
}

/// Exactly `n` answers.
pub(crate) fn exactly(answers: &[ResponseApdu], n: usize) -> Result<&[ResponseApdu], StepError> {
    if answers.len() != n {
        return Err(StepError::WrongAnswerCount { expected: n, got: answers.len() });
    }
    Ok(answers)
}

pub(crate) fn bad_answer(e: impl std::fmt::Display) -> StepError {
    StepError::BadCardAnswer(e.to_string())
}

/// The unsealed answer to READ BALANCE, checked: it completed, names this
/// card and is in this currency. (Whether the chip is active is the
/// caller's question: a card blocked since an offer still tells recovery
/// what happened.)
pub(crate) fn balance_report(
    card: &CardId,
    currency: Currency,
    answer: &ResponseApdu,
) -> Result<BalanceReport, StepError> {
    completed(answer)?;
    let report = BalanceReport::parse(answer.data()).map_err(bad_answer)?;
    if report.card_id.0 != *card.as_bytes() {
        return Err(bad_answer("balance report names another card"));
    }
    if report.currency.as_str() != currency.code() {
        return Err(bad_answer("balance report in another currency"));
    }
    Ok(report)
}

/// What the card's TRANSACTION STATUS said of a transaction.
#[derive(Debug)]
pub(crate) enum Probe {
    /// Applied, with its result (the caller checks it is what was sealed).
    Applied(TxResult),
    /// Not among the transactions the card remembers: READ BALANCE next.
    NotKnown,
}

/// The unsealed answer to TRANSACTION STATUS about `tx`.
fn transaction_status(plain: &ResponseApdu, tx: &TransactionId) -> Result<Probe, StepError> {
    completed(plain)?;
    match TxStatus::parse(plain.data()).map_err(bad_answer)? {
        TxStatus::Applied(result) => Ok(Probe::Applied(result)),
        TxStatus::Unknown(id) if id.0 == *tx.as_bytes() => Ok(Probe::NotKnown),
        TxStatus::Unknown(_) => Err(StepError::WrongTransaction),
    }
}

/// The capacity rule. The card does not know the transaction; its counter
/// was `counter_at_offer` when the command was sealed. If it made fewer
/// transactions since than it remembers, the transaction would be among
/// them had it been applied: it never was, and can be voided. Otherwise the
/// card cannot tell, and nothing may be voided.
pub(crate) fn never_applied(counter_at_offer: Option<u32>, report: &BalanceReport) -> Result<(), StepError> {
    let before = counter_at_offer.ok_or(StepError::Undecidable)?;
    if report.counter < before || (report.counter - before) as usize >= RECENT_TX_CAPACITY {
        return Err(StepError::Undecidable);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kessai_card::protocol::{CardId as ChipCardId, CardStatus, Currency as ChipCurrency};

    fn report(counter: u32) -> BalanceReport {
        BalanceReport {
            card_id: ChipCardId([1; 8]),
            balance_minor: 0,
            currency: ChipCurrency::new("JPY").unwrap_or_else(|_| unreachable!()),
            max_balance_minor: 1,
            counter,
            status: CardStatus::Active,
        }
    }

    #[test]
    fn only_fewer_transactions_than_the_card_remembers_prove_a_command_never_applied() {
        assert!(never_applied(Some(10), &report(10)).is_ok(), "nothing since");
        let last = u32::try_from(RECENT_TX_CAPACITY).unwrap_or(u32::MAX) - 1;
        assert!(never_applied(Some(10), &report(10 + last)).is_ok(), "still remembered");
        assert!(matches!(never_applied(Some(10), &report(10 + last + 1)), Err(StepError::Undecidable)));
        assert!(matches!(never_applied(Some(10), &report(9)), Err(StepError::Undecidable)), "a counter gone back");
        assert!(matches!(never_applied(None, &report(10)), Err(StepError::Undecidable)), "no offer counter");
    }
}
