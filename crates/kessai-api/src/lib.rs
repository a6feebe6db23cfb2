//! kessai's wire contract, without I/O: the error shape and its numbered
//! codes, the phases and reasons a step answers, and the replies the center
//! sends and the wallet reads. The center, the store, the wallet and the CLI
//! all take these types from here, so a change to the contract is a change
//! to one crate that every party is compiled against.

pub mod error;
pub mod phase;
pub mod reply;
pub mod request;

pub use error::{ErrorBody, ErrorCode, ErrorDetail, ErrorType};
pub use phase::{Phase, Reason};
pub use reply::{LogEntry, LogKind, Purpose, StatementPhase, StatementReply, StepReply, UpdateReply};
