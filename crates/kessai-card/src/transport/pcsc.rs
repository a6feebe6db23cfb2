//! A real PC/SC reader through the `pcsc` crate (feature `pcsc`).

use std::time::{Duration, Instant};

use pcsc::{Context, Protocols, Scope, ShareMode};

use crate::transport::{Reader, TransportError};

/// How long [`PcscReader::connect`] waits for a card in the reader.
pub const PCSC_CONNECT_TIMEOUT_MS: u64 = 15_000;
/// Pause between attempts.
pub const PCSC_CONNECT_RETRY_MS: u64 = 100;

fn pcsc_error(e: pcsc::Error) -> TransportError {
    TransportError::Pcsc(e.to_string())
}

/// A card in a PC/SC reader.
pub struct PcscReader {
    card: pcsc::Card,
    reader_name: String,
    buffer: Vec<u8>,
}

impl core::fmt::Debug for PcscReader {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("PcscReader").field("reader_name", &self.reader_name).finish()
    }
}

impl PcscReader {
    /// Connects (shared, T=0 or T=1) to the card in the first reader whose
    /// name contains `name_part`, waiting up to [`PCSC_CONNECT_TIMEOUT_MS`]
    /// for the reader and the card to appear.
    pub fn connect(name_part: &str) -> Result<Self, TransportError> {
        let deadline = Instant::now() + Duration::from_millis(PCSC_CONNECT_TIMEOUT_MS);
        loop {
            match Self::try_connect(name_part) {
                Ok(reader) => return Ok(reader),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(PCSC_CONNECT_RETRY_MS)),
            }
        }
    }

    fn try_connect(name_part: &str) -> Result<Self, TransportError> {
        let context = Context::establish(Scope::User).map_err(pcsc_error)?;
        let readers = context.list_readers_owned().map_err(pcsc_error)?;
        let name = readers
            .into_iter()
            .find(|r| r.to_string_lossy().contains(name_part))
            .ok_or(TransportError::Pcsc(format!("no reader named like {name_part:?}")))?;
        let card = context.connect(&name, ShareMode::Shared, Protocols::ANY).map_err(pcsc_error)?;
        Ok(Self {
            card,
            reader_name: name.to_string_lossy().into_owned(),
            buffer: vec![0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED],
        })
    }

    /// The reader's name.
    pub fn reader_name(&self) -> &str {
        &self.reader_name
    }
}

impl Reader for PcscReader {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let response = self.card.transmit(apdu, &mut self.buffer).map_err(pcsc_error)?;
        Ok(response.to_vec())
    }
}
