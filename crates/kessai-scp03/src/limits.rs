//! Every bound of the crate, in one place.

/// Largest data field (Nc) of a short command APDU.
pub const SHORT_MAX_DATA_LEN: usize = 255;
/// Largest Ne of a short command APDU (encoded as `00`).
pub const SHORT_MAX_LE: usize = 256;
/// Largest data field (Nc) of an extended command APDU.
pub const EXTENDED_MAX_DATA_LEN: usize = 65_535;
/// Largest Ne of an extended command APDU (encoded as `00 00`).
pub const EXTENDED_MAX_LE: usize = 65_536;
/// Largest response data field we accept (an extended Ne plus nothing else).
pub const MAX_RESPONSE_DATA_LEN: usize = EXTENDED_MAX_LE;

/// AES block length in bytes.
pub const BLOCK_LEN: usize = 16;
/// AES-128 key length in bytes.
pub const KEY_LEN: usize = 16;
/// S8 mode: challenges, cryptograms and MACs are 8 bytes long.
pub const S8_LEN: usize = 8;
/// Length of the key diversification data in the INITIALIZE UPDATE response.
pub const KEY_DIVERSIFICATION_DATA_LEN: usize = 10;
/// Length of the SCP03 sequence counter in the INITIALIZE UPDATE response.
pub const SEQUENCE_COUNTER_LEN: usize = 3;
/// Largest value of the 3-byte sequence counter.
pub const SEQUENCE_COUNTER_MAX: u32 = 0x00FF_FFFF;
/// Longest AID (ISO 7816-5).
pub const AID_MAX_LEN: usize = 16;
/// Shortest AID (ISO 7816-5: the 5-byte RID alone).
pub const AID_MIN_LEN: usize = 5;
/// Highest 8-bit counter value of the SP 800-108 KDF (r = 8), i.e. at most
/// this many PRF blocks per derivation.
pub const KDF_MAX_BLOCKS: usize = 255;

const _: () = assert!(SHORT_MAX_DATA_LEN < EXTENDED_MAX_DATA_LEN);
const _: () = assert!(S8_LEN * 2 == BLOCK_LEN);
const _: () = assert!(AID_MIN_LEN <= AID_MAX_LEN);
const _: () = assert!(SEQUENCE_COUNTER_MAX < (1 << (8 * SEQUENCE_COUNTER_LEN)));
