//! Moving APDUs between a host and a card: the [`Reader`] trait and its
//! implementations — in-process, vsmartcard's vpcd socket protocol
//! ([`vpcd`]), and PC/SC ([`pcsc`], feature `pcsc`).

use std::io;

use crate::app::Card;
use crate::storage::Storage;

#[cfg(feature = "pcsc")]
pub mod pcsc;
pub mod vpcd;

/// Why an APDU did not make the round trip.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Socket or file I/O.
    #[error("I/O: {0}")]
    Io(#[from] io::Error),
    /// The peer broke the framing protocol.
    #[error("protocol: {0}")]
    Protocol(&'static str),
    /// A message longer than the protocol allows.
    #[error("message of {0} bytes is too long")]
    TooLong(usize),
    /// The card went away (socket closed).
    #[error("card disconnected")]
    Disconnected,
    /// The PC/SC layer refused.
    #[error("PC/SC: {0}")]
    Pcsc(String),
}

/// A card reader: sends one command APDU, returns the response APDU.
pub trait Reader {
    /// Transmits a command APDU and returns the response (data ‖ SW).
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError>;
}

impl<R: Reader + ?Sized> Reader for &mut R {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        (**self).transmit(apdu)
    }
}

impl<R: Reader + ?Sized> Reader for Box<R> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        (**self).transmit(apdu)
    }
}

/// A card in the same process.
#[derive(Debug)]
pub struct InProcessReader<S: Storage> {
    card: Card<S>,
}

impl<S: Storage> InProcessReader<S> {
    /// Inserts a card (power-on: nothing selected).
    pub fn new(mut card: Card<S>) -> Self {
        card.reset();
        Self { card }
    }

    /// The card.
    pub fn card(&self) -> &Card<S> {
        &self.card
    }

    /// The card, mutable (fault injection in tests).
    pub fn card_mut(&mut self) -> &mut Card<S> {
        &mut self.card
    }

    /// Removes the card.
    pub fn into_card(self) -> Card<S> {
        self.card
    }
}

impl<S: Storage> Reader for InProcessReader<S> {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        Ok(self.card.process(apdu))
    }
}
