//! kessai's wire contract, without I/O: the error shape and its numbered
//! codes, the phases and reasons a step answers, every request and reply
//! of the center's API (`request`, `reply`, `views`, `admin`), the forms of
//! its strings (`formats`), and the table of its routes (`routes`) from
//! which its OpenAPI document is generated (`openapi`). The center, the
//! store, the wallet and the CLI all take these types from here, so a
//! change to the contract is a change to one crate that every party is
//! compiled against, and to the document with it.

/// Display, Serialize and Deserialize for a type known on the wire by its
/// name (`as_str`, `parse`): a name this build does not know is refused
/// as `what`.
macro_rules! by_name {
    ($ty:ty, $what:literal) => {
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                let name = <String as serde::Deserialize>::deserialize(d)?;
                <$ty>::parse(&name)
                    .ok_or_else(|| serde::de::Error::custom(format!(concat!("unknown ", $what, " {:?}"), name)))
            }
        }
    };
}

pub mod admin;
pub mod bank;
pub mod error;
pub mod formats;
pub mod openapi;
pub mod phase;
pub mod provider;
pub mod reply;
pub mod request;
pub mod routes;
pub mod views;

pub use error::{ErrorBody, ErrorCode, ErrorDetail, ErrorType};
pub use phase::{Phase, Reason};
pub use reply::{
    BillAnswer, BillState, CardToken, LogEntry, LogKind, Purpose, StatementPhase, StatementReply, StepReply,
    TokenRedeemed, TokenRefusal, TokenSessionPhase, TokenSessionReply, UpdateReply,
};
pub use views::TokenStatus;
