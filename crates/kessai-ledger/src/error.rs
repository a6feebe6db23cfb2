//! Errors of the ledger's API. A refused event is not an error: it is a result code
//! (see `result`). An `Error` means the batch was not applied at all.

use crate::limits::{BATCH_EVENTS_MAX, HISTORY_PAGE_MAX, LOOKUP_IDS_MAX, TIMESTAMP_MAX_UNIX_S};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL kept failing the batch (deadlock or concurrent insert) after {attempts} attempts: {source}")]
    RetriesExhausted { attempts: u32, source: sqlx::Error },
    #[error("a batch of {events} events exceeds the limit of {BATCH_EVENTS_MAX}")]
    BatchTooLarge { events: usize },
    #[error("a lookup of {ids} ids exceeds the limit of {LOOKUP_IDS_MAX}")]
    LookupTooLarge { ids: usize },
    #[error("a history page of {limit} transfers is outside 1..={HISTORY_PAGE_MAX}")]
    HistoryPageOutOfRange { limit: u32 },
    #[error("timestamp {now_unix_s} is past the largest the ledger stores ({TIMESTAMP_MAX_UNIX_S})")]
    TimestampOutOfRange { now_unix_s: u64 },
    #[error("stored ledger data is corrupt: {what}")]
    Corrupt { what: &'static str },
    #[error("the batch was not committed: {why}")]
    NotCommitted { why: &'static str },
    #[error("schema name {name:?} is not a lowercase SQL identifier")]
    InvalidSchemaName { name: String },
    #[error("the database holds ledger schema version {found}, newer than this build knows ({known})")]
    SchemaTooNew { found: i64, known: i64 },
}

impl Error {
    /// Whether running the same work again in a new transaction may succeed: on
    /// PostgreSQL a serialization failure, a deadlock, or a unique violation on an
    /// id a concurrent transaction inserted first.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Database(sqlx::Error::Database(e)) => {
                matches!(e.code().as_deref(), Some("40001" | "40P01" | "23505"))
            }
            Error::RetriesExhausted { .. } => true,
            _ => false,
        }
    }

    /// Why a group commit failed, for the batches that were in it.
    pub(crate) fn commit_failure(&self) -> &'static str {
        match self {
            Error::Database(_) | Error::Sqlite(_) => "the group commit failed in the database",
            _ => "the group commit failed",
        }
    }
}
