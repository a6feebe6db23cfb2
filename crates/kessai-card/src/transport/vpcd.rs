//! The vsmartcard vpcd socket protocol, both ends.
//!
//! vpcd (the PC/SC driver side) listens on TCP (default port 35963); the
//! virtual card connects to it as a client. Every message in either
//! direction is a 2-byte big-endian length and that many bytes. A 1-byte
//! message from vpcd is a control: `00` power off, `01` power on, `02`
//! reset, `04` get ATR (answered with the ATR). Any longer message is a
//! command APDU, answered with the response APDU.
//!
//! [`serve_vpcd`] is the card end (it connects out). [`VpcdListener`] /
//! [`VpcdReader`] are a host end that listens the way vpcd does, so tests and
//! the wallet can reach a card process over a socket without PC/SC.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::app::Card;
use crate::image::ImageError;
use crate::protocol::ATR;
use crate::storage::Storage;
use crate::storage::{Durability, FileStorage};
use crate::transport::{Reader, TransportError};

/// vpcd's default port (reader.conf `DEVICENAME /dev/null:0x8C7B`).
pub const VPCD_DEFAULT_PORT: u16 = 35963;
/// Control byte: power off.
pub const CTRL_POWER_OFF: u8 = 0x00;
/// Control byte: power on.
pub const CTRL_POWER_ON: u8 = 0x01;
/// Control byte: reset.
pub const CTRL_RESET: u8 = 0x02;
/// Control byte: get ATR.
pub const CTRL_GET_ATR: u8 = 0x04;
/// How long one read or write may block.
pub const VPCD_IO_TIMEOUT_MS: u64 = 30_000;
/// How long the card keeps trying to reach vpcd.
pub const VPCD_CONNECT_TIMEOUT_MS: u64 = 10_000;
/// Pause between connection attempts.
pub const VPCD_CONNECT_RETRY_MS: u64 = 50;

fn write_message(stream: &mut TcpStream, payload: &[u8]) -> Result<(), TransportError> {
    let len = u16::try_from(payload.len()).map_err(|_| TransportError::TooLong(payload.len()))?;
    let mut frame = Vec::with_capacity(2 + payload.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    stream.write_all(&frame)?;
    Ok(())
}

/// Reads one message; `None` when the peer closed the connection cleanly.
fn read_message(stream: &mut TcpStream) -> Result<Option<Vec<u8>>, TransportError> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut payload = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut payload).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => TransportError::Disconnected,
        _ => e.into(),
    })?;
    Ok(Some(payload))
}

fn configure(stream: &TcpStream) -> io::Result<()> {
    let timeout = Some(Duration::from_millis(VPCD_IO_TIMEOUT_MS));
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)?;
    stream.set_nodelay(true)
}

fn connect(addr: SocketAddr) -> Result<TcpStream, TransportError> {
    let deadline = Instant::now() + Duration::from_millis(VPCD_CONNECT_TIMEOUT_MS);
    loop {
        match TcpStream::connect(addr) {
            Ok(stream) => return Ok(stream),
            Err(e) if Instant::now() >= deadline => return Err(e.into()),
            Err(_) => std::thread::sleep(Duration::from_millis(VPCD_CONNECT_RETRY_MS)),
        }
    }
}

/// The card end: connects to vpcd at `addr` (retrying for a while), then
/// answers controls and APDUs until vpcd closes the connection; returns the
/// card. Power off, power on and reset all end any session and selection.
pub fn serve_vpcd<S: Storage>(mut card: Card<S>, addr: SocketAddr) -> Result<Card<S>, TransportError> {
    let mut stream = connect(addr)?;
    configure(&stream)?;
    // vpcd sends nothing while no PC/SC client uses the reader: no timeout.
    stream.set_read_timeout(None)?;
    card.reset();
    while let Some(message) = read_message(&mut stream)? {
        match message.as_slice() {
            [CTRL_POWER_OFF] | [CTRL_POWER_ON] | [CTRL_RESET] => card.reset(),
            [CTRL_GET_ATR] => write_message(&mut stream, &ATR)?,
            [_] => return Err(TransportError::Protocol("unknown control byte")),
            apdu => {
                let response = card.process(apdu);
                write_message(&mut stream, &response)?;
            }
        }
    }
    Ok(card)
}

/// The card process: opens the image file at `image` and serves it to the
/// vpcd at `addr` until vpcd closes the connection.
pub fn serve_vpcd_image(image: &Path, durability: Durability, addr: SocketAddr) -> Result<(), ServeError> {
    let card = Card::open(FileStorage::open(image, durability)?)?;
    serve_vpcd(card, addr)?;
    Ok(())
}

/// Why a card process stopped.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The image could not be opened or read.
    #[error("image: {0}")]
    Image(#[from] ImageError),
    /// The connection to vpcd failed.
    #[error("vpcd: {0}")]
    Transport(#[from] TransportError),
}

impl From<io::Error> for ServeError {
    fn from(e: io::Error) -> Self {
        Self::Image(ImageError::Io(e))
    }
}

/// A host end that listens like vpcd.
#[derive(Debug)]
pub struct VpcdListener {
    listener: TcpListener,
}

impl VpcdListener {
    /// Listens on `addr` (use port 0 for any free port).
    pub fn bind(addr: SocketAddr) -> Result<Self, TransportError> {
        Ok(Self { listener: TcpListener::bind(addr)? })
    }

    /// The address a card should connect to.
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        Ok(self.listener.local_addr()?)
    }

    /// Waits for a card to connect, powers it on and reads its ATR.
    pub fn accept(&self) -> Result<VpcdReader, TransportError> {
        let (stream, _) = self.listener.accept()?;
        configure(&stream)?;
        let mut reader = VpcdReader { stream, atr: Vec::new() };
        reader.power_on()?;
        Ok(reader)
    }
}

/// A connected virtual card, seen from the host.
#[derive(Debug)]
pub struct VpcdReader {
    stream: TcpStream,
    atr: Vec<u8>,
}

impl VpcdReader {
    /// Powers the card on and asks for its ATR.
    pub fn power_on(&mut self) -> Result<&[u8], TransportError> {
        write_message(&mut self.stream, &[CTRL_POWER_ON])?;
        write_message(&mut self.stream, &[CTRL_GET_ATR])?;
        self.atr = read_message(&mut self.stream)?.ok_or(TransportError::Disconnected)?;
        Ok(&self.atr)
    }

    /// Resets the card (ends its session and selection).
    pub fn reset(&mut self) -> Result<(), TransportError> {
        write_message(&mut self.stream, &[CTRL_RESET])
    }

    /// Powers the card off.
    pub fn power_off(&mut self) -> Result<(), TransportError> {
        write_message(&mut self.stream, &[CTRL_POWER_OFF])
    }

    /// The ATR read at power-on.
    pub fn atr(&self) -> &[u8] {
        &self.atr
    }
}

impl Reader for VpcdReader {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        if apdu.len() < 2 {
            // One byte would be read as a control message.
            return Err(TransportError::Protocol("an APDU must be at least 2 bytes"));
        }
        write_message(&mut self.stream, apdu)?;
        read_message(&mut self.stream)?.ok_or(TransportError::Disconnected)
    }
}
