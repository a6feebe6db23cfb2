//! The one step runner of every protocol (purchases, value updates,
//! statements): load the record → the transition (pure) → store it, with
//! its books entries, what it releases or applies, and the request's
//! answer, in one transaction. On PostgreSQL writes queue on row locks
//! rather than fail; a transaction that still failed retryably (a deadlock
//! the lock order did not rule out, an insert race on a new ledger
//! account) is run again from the load, at most [`STEP_RETRIES_MAX`] times,
//! so the transition sees what won.

use crate::db::DbError;

/// An error a step can fail with, which may say "run me again".
pub(crate) trait StepFailure {
    /// Whether the step's transaction failed retryably (a deadlock, an
    /// insert race) and the whole step may run again from its load.
    fn is_retryable(&self) -> bool;
}

impl StepFailure for DbError {
    fn is_retryable(&self) -> bool {
        DbError::is_retryable(self)
    }
}

/// Runs one step: `$load` → `$transition` → `$store`, again from `$load`
/// when `$store` failed retryably; evaluates to `Ok((stepped, stored))`.
/// `$load` and `$store` are expressions awaited in place (a macro rather
/// than a function over async closures, whose futures rustc cannot yet
/// prove `Send` for every lifetime).
macro_rules! run_step {
    (load: $load:expr, transition: $transition:expr, store: |$stepped:ident, $version:ident| $store:expr $(,)?) => {{
        let mut attempt = 0;
        loop {
            let (record, $version) = match $load.await {
                Ok(found) => found,
                Err(e) => break Err(e),
            };
            let $stepped = match ($transition)(record) {
                Ok(stepped) => stepped,
                Err(e) => break Err(e),
            };
            match $store.await {
                Err(e)
                    if $crate::runner::StepFailure::is_retryable(&e) && attempt < $crate::limits::STEP_RETRIES_MAX =>
                {
                    attempt += 1
                }
                Err(e) => break Err(e),
                Ok(out) => break Ok(($stepped, out)),
            }
        }
    }};
}

pub(crate) use run_step;
