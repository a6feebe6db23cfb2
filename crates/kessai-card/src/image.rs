//! The image: the card's memory as two slots (A/B), personalization, and
//! public info.
//!
//! # Format (version 3), byte by byte
//!
//! The file is [`IMAGE_LEN`] bytes: slot A at offset 0, slot B at
//! [`SLOT_LEN`]. Each slot:
//!
//! ```text
//! offset  size  field
//! 0       4     magic "KSCI"
//! 4       2     format version, u16 BE = 3 (1 and 2 are read too)
//! 6       2     reserved, 00 00
//! 8       8     generation, u64 BE (grows by one with every commit)
//! 16      4     body length N, u32 BE
//! 20      N     body: the card state (see `CardState::to_bytes`)
//! 20+N    32    SHA-256 over bytes 0 .. 20+N
//! ...           unused, ignored
//! ```
//!
//! # Anti-tearing
//!
//! A commit writes the whole new state, with the next generation, into the
//! slot that does *not* hold the current state, then syncs; only then does
//! the card answer. On start the valid slot (magic, version, length,
//! checksum, state invariants) with the highest generation wins. A power cut
//! during the write leaves a slot that fails its checksum, so the old state
//! stays; after the sync the new one wins. Balance, counter and log live in
//! the one body, so they change together or not at all.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;

use kessai_scp03::diversify::{MasterKeys, diversify};
use kessai_scp03::{KeyVersion, StaticKeys};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub use crate::limits::{IMAGE_LEN, SLOT_LEN};
use crate::limits::{SLOT_CHECKSUM_LEN, SLOT_HEADER_LEN, STATE_MAX_LEN};
use crate::protocol::{CardId, Currency, PublicInfo};
use crate::state::{CardState, StateError};

/// `KSCI`: kessai card image.
pub const IMAGE_MAGIC: [u8; 4] = *b"KSCI";
/// Current image format version (3: the token table; 2: the log's
/// collected mark). A card of format 1 is read as one whose log nothing
/// collected yet, of format 1 or 2 as one without tokens; each is written
/// as 3 at its next commit.
pub const IMAGE_VERSION: u16 = 3;

/// Why an image cannot be used.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Reading or writing the storage failed.
    #[error("storage: {0}")]
    Io(#[from] io::Error),
    /// The image is not [`IMAGE_LEN`] bytes.
    #[error("image of {0} bytes, expected {IMAGE_LEN}")]
    Length(usize),
    /// Neither slot holds a valid state.
    #[error("no valid slot (A: {a}; B: {b})")]
    NoValidSlot {
        /// Why slot A was refused.
        a: SlotError,
        /// Why slot B was refused.
        b: SlotError,
    },
    /// Personalization parameters out of range.
    #[error("personalization: {0}")]
    Personalization(&'static str),
}

/// Why one slot was refused.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// No magic: empty or never written.
    #[error("no magic")]
    Magic,
    /// A format version this code does not read.
    #[error("format version {0}")]
    Version(u16),
    /// A body length that does not fit the slot.
    #[error("body length {0}")]
    BodyLength(usize),
    /// Checksum mismatch: torn or corrupted.
    #[error("checksum mismatch")]
    Checksum,
    /// Checksum fine but the state breaks an invariant.
    #[error("state: {0}")]
    State(#[from] StateError),
}

/// Slot A or B.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    A,
    B,
}

impl Slot {
    pub(crate) fn offset(self) -> u64 {
        match self {
            Self::A => 0,
            Self::B => SLOT_LEN as u64,
        }
    }

    pub(crate) fn other(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }
}

/// Encodes a slot's meaningful bytes (header, body, checksum).
pub(crate) fn encode_slot(generation: u64, state: &CardState) -> Zeroizing<Vec<u8>> {
    assert!(state.check().is_ok(), "refusing to store a state that breaks an invariant");
    let body = state.to_bytes();
    assert!(body.len() <= STATE_MAX_LEN);
    let mut out = Zeroizing::new(Vec::with_capacity(SLOT_HEADER_LEN + body.len() + SLOT_CHECKSUM_LEN));
    out.extend_from_slice(&IMAGE_MAGIC);
    out.extend_from_slice(&IMAGE_VERSION.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&generation.to_be_bytes());
    // Bounded by STATE_MAX_LEN (asserted above).
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&body);
    let checksum = Sha256::digest(&out[..]);
    out.extend_from_slice(&checksum);
    out
}

fn decode_slot(slot: &[u8]) -> Result<(u64, CardState), SlotError> {
    if slot.len() < SLOT_HEADER_LEN || slot[..4] != IMAGE_MAGIC {
        return Err(SlotError::Magic);
    }
    let version = u16::from_be_bytes([slot[4], slot[5]]);
    if !(1..=IMAGE_VERSION).contains(&version) {
        return Err(SlotError::Version(version));
    }
    let mut generation = [0u8; 8];
    generation.copy_from_slice(&slot[8..16]);
    let len = usize::try_from(u32::from_be_bytes([slot[16], slot[17], slot[18], slot[19]])).unwrap_or(usize::MAX);
    if len > STATE_MAX_LEN || SLOT_HEADER_LEN + len + SLOT_CHECKSUM_LEN > slot.len() {
        return Err(SlotError::BodyLength(len));
    }
    let end = SLOT_HEADER_LEN + len;
    let checksum = Sha256::digest(&slot[..end]);
    if checksum[..] != slot[end..end + SLOT_CHECKSUM_LEN] {
        return Err(SlotError::Checksum);
    }
    let state = CardState::from_bytes(&slot[SLOT_HEADER_LEN..end], version)?;
    Ok((u64::from_be_bytes(generation), state))
}

/// A loaded image: which slot is current, its generation, the state.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) slot: Slot,
    pub(crate) generation: u64,
    pub(crate) state: CardState,
}

/// Picks the valid slot with the highest generation.
pub(crate) fn load(image: &[u8]) -> Result<Loaded, ImageError> {
    if image.len() != IMAGE_LEN {
        return Err(ImageError::Length(image.len()));
    }
    let (a, b) = image.split_at(SLOT_LEN);
    match (decode_slot(a), decode_slot(b)) {
        (Ok((ga, sa)), Ok((gb, _))) if ga >= gb => Ok(Loaded { slot: Slot::A, generation: ga, state: sa }),
        (Ok(_), Ok((gb, sb))) => Ok(Loaded { slot: Slot::B, generation: gb, state: sb }),
        (Ok((ga, sa)), Err(_)) => Ok(Loaded { slot: Slot::A, generation: ga, state: sa }),
        (Err(_), Ok((gb, sb))) => Ok(Loaded { slot: Slot::B, generation: gb, state: sb }),
        (Err(a), Err(b)) => Err(ImageError::NoValidSlot { a, b }),
    }
}

/// Where the static keys come from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// Given as they are.
    Explicit(StaticKeys),
    /// Diversified from the issuer's master keys and the card id
    /// (see `kessai_scp03::diversify`).
    Diversified {
        /// Issuer master keys.
        master: MasterKeys,
        /// Key version to give the card.
        version: KeyVersion,
    },
}

/// What personalization writes into a new card.
#[derive(Clone, Debug)]
pub struct Personalization {
    /// Card id.
    pub card_id: CardId,
    /// Static keys.
    pub keys: KeySource,
    /// Currency.
    pub currency: Currency,
    /// Maximum balance, minor units (positive).
    pub max_balance_minor: u64,
}

impl Personalization {
    fn static_keys(&self) -> StaticKeys {
        match &self.keys {
            KeySource::Explicit(keys) => keys.clone(),
            KeySource::Diversified { master, version } => diversify(master, &self.card_id.0, *version),
        }
    }
}

/// Makes a new image: balance 0, counters 0, empty log; slot A generation 1,
/// slot B empty.
pub fn personalize(p: &Personalization) -> Result<Zeroizing<Vec<u8>>, ImageError> {
    if p.max_balance_minor == 0 {
        return Err(ImageError::Personalization("maximum balance must be positive"));
    }
    let state = CardState::new(p.card_id, p.static_keys(), p.currency, p.max_balance_minor);
    let slot = encode_slot(1, &state);
    let mut image = Zeroizing::new(vec![0u8; IMAGE_LEN]);
    image[..slot.len()].copy_from_slice(&slot);
    Ok(image)
}

/// Writes a new image file with mode 0600 (it holds the card's keys); the
/// file must not exist yet. Synced, and its directory too.
pub fn create_image_file(path: &Path, p: &Personalization) -> Result<PublicInfo, ImageError> {
    let image = personalize(p)?;
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(&image)?;
    file.sync_all()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    public_info(&image)
}

/// Public data of an image: card id, KVN, currency, balances, status,
/// counter. Never the keys.
pub fn public_info(image: &[u8]) -> Result<PublicInfo, ImageError> {
    Ok(load(image)?.state.public_info())
}
