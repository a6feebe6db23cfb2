//! GlobalPlatform SCP03 for kessai, both ends, with no I/O.
//!
//! AES-128, S8 mode, `i = 70` (pseudo-random card challenge, R-MAC, R-ENC),
//! security levels `01`, `03`, `11`, `13` and `33`. The host side
//! ([`HostHandshake`] → [`HostSession`]) runs in the settlement center; the
//! card side ([`CardHandshake`] → [`CardSession`]) runs in the card. Neither
//! touches files, sockets, clocks or a global RNG: host challenges and
//! sequence counters are passed in.
//!
//! Also here: the ISO 7816-4 APDU codec ([`CommandApdu`], [`ResponseApdu`],
//! [`StatusWord`]) and the per-card diversification of static keys
//! ([`diversify`]).
//!
//! Invariants: a session that failed a MAC check is consumed and cannot be
//! used again; keys are zeroized on drop and print as `***`.

pub mod aid;
pub mod apdu;
pub mod card;
mod channel;
pub mod crypto;
pub mod diversify;
pub mod error;
pub mod handshake;
pub mod host;
pub mod keys;
pub mod level;
pub mod limits;
pub mod status;

pub use aid::Aid;
pub use apdu::{ApduError, CommandApdu, Header, ResponseApdu};
pub use card::{CardHandshake, CardIdentity, CardSession};
pub use error::ScpError;
pub use handshake::{InitializeUpdateResponse, SequenceCounter};
pub use host::{HostHandshake, HostOpening, HostSession, HostState};
pub use keys::{Aes128Key, KeyVersion, SessionKeys, StaticKeys};
pub use level::SecurityLevel;
pub use status::StatusWord;
