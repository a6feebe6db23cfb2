//! Every bound of the card, in one place.

use crate::protocol::{BALANCE_REPORT_LEN, LOG_RECORD_LEN, TX_RESULT_LEN};
use crate::tokens::{LIST_TOKENS_MAX, MAX_SEALED_LEN, TOKEN_CAPACITY, TOKEN_ENTRY_LEN};

/// Records kept in the transaction log (oldest dropped first).
pub const LOG_CAPACITY: usize = 64;
/// Transaction ids remembered for idempotency (oldest dropped first). At
/// least the log's capacity, so every logged transaction can be asked about.
pub const RECENT_TX_CAPACITY: usize = 128;
/// Log records per READ LOG response: what fits a short response APDU
/// after R-ENC padding (to 16) and the 8-byte R-MAC (≤ 256 bytes).
pub const READ_LOG_MAX_RECORDS: usize = 3;
/// Bytes of one stored recent-transaction entry.
pub const RECENT_TX_LEN: usize = TX_RESULT_LEN - 1 + DIGEST_LEN;
/// Bytes of the request digest kept per recent transaction.
pub const DIGEST_LEN: usize = 8;
/// Fixed part of the stored state body (everything but log and recent
/// table), image format 1: without the log's collected mark.
pub const STATE_FIXED_LEN_V1: usize = 8 + 1 + 3 * 16 + 3 + 8 + 8 + 4 + 4 + 1 + 2 + 2;
/// The same, image format 2: with the counter through which the center
/// collected the log (4 bytes).
pub const STATE_FIXED_LEN: usize = STATE_FIXED_LEN_V1 + 4;
/// Bytes of the token table at its fullest (image format 3): its count,
/// and per token its state, counter, redeeming tx id, length and sealed
/// bytes.
pub const TOKEN_TABLE_MAX_LEN: usize = 1 + TOKEN_CAPACITY * (1 + 4 + 16 + 1 + MAX_SEALED_LEN);
/// Largest stored state body.
pub const STATE_MAX_LEN: usize =
    STATE_FIXED_LEN + LOG_CAPACITY * LOG_RECORD_LEN + RECENT_TX_CAPACITY * RECENT_TX_LEN + TOKEN_TABLE_MAX_LEN;
/// Bytes of a slot header (magic, version, reserved, generation, body length).
pub const SLOT_HEADER_LEN: usize = 20;
/// Bytes of the SHA-256 checksum after the body.
pub const SLOT_CHECKSUM_LEN: usize = 32;
/// Size of one of the two image slots.
pub const SLOT_LEN: usize = 16 * 1024;
/// Size of the whole image file: slot A then slot B.
pub const IMAGE_LEN: usize = 2 * SLOT_LEN;
/// Bytes per write operation when a slot is written (one emulated page):
/// a power cut can tear the slot between or inside these writes.
pub const WRITE_CHUNK_LEN: usize = 4096;

const _: () = assert!(RECENT_TX_CAPACITY >= LOG_CAPACITY);
const _: () = assert!(SLOT_HEADER_LEN + STATE_MAX_LEN + SLOT_CHECKSUM_LEN <= SLOT_LEN);
const _: () = assert!(1 + READ_LOG_MAX_RECORDS * LOG_RECORD_LEN < 240);
const _: () = assert!(BALANCE_REPORT_LEN < 240 && TX_RESULT_LEN < 240);
const _: () = assert!(LOG_CAPACITY <= u8::MAX as usize);
// A LIST TOKENS page and a REDEEM TOKEN answer (counter ‖ sealed token)
// fit a short response after R-ENC padding and the R-MAC; a STORE TOKEN
// command's data (tx id, time, sealed token) a short command after C-MAC.
const _: () = assert!(2 + LIST_TOKENS_MAX * TOKEN_ENTRY_LEN < 240 && 4 + MAX_SEALED_LEN < 240);
const _: () = assert!(24 + MAX_SEALED_LEN + 16 + 8 <= 255 && TOKEN_CAPACITY <= u8::MAX as usize);
