//! A host-side driver over any [`Reader`]: select the application, open an
//! SCP03 session with kessai-scp03's host core, exchange sealed commands.
//! Used by tests, the benchmark and the wallet's local tools.

use kessai_scp03::{
    ApduError, CommandApdu, HostHandshake, HostSession, ResponseApdu, ScpError, SecurityLevel, StaticKeys, StatusWord,
};

use crate::protocol::select_command;
use crate::transport::{Reader, TransportError};

/// Why a terminal step failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum TerminalError {
    /// The reader failed.
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// The card's answer is not an APDU.
    #[error("response: {0}")]
    Apdu(#[from] ApduError),
    /// The secure channel refused the card's answer.
    #[error("secure channel: {0}")]
    Scp(#[from] ScpError),
    /// The card answered a step with an error status word.
    #[error("card answered {0}")]
    Status(StatusWord),
}

/// A host at a reader.
#[derive(Debug)]
pub struct Terminal<R: Reader> {
    reader: R,
}

impl<R: Reader> Terminal<R> {
    /// A terminal over `reader`.
    pub fn new(reader: R) -> Self {
        Self { reader }
    }

    /// The reader.
    pub fn reader_mut(&mut self) -> &mut R {
        &mut self.reader
    }

    /// Takes the reader back.
    pub fn into_reader(self) -> R {
        self.reader
    }

    /// Sends a command as it is.
    pub fn transmit(&mut self, cmd: &CommandApdu) -> Result<ResponseApdu, TerminalError> {
        let bytes = self.reader.transmit(&cmd.to_bytes())?;
        Ok(ResponseApdu::parse(&bytes)?)
    }

    /// SELECTs the kessai application; `9000` or `6283` (blocked) pass.
    pub fn select(&mut self) -> Result<ResponseApdu, TerminalError> {
        let response = self.transmit(&select_command())?;
        if !response.sw().is_completed() {
            return Err(TerminalError::Status(response.sw()));
        }
        Ok(response)
    }

    /// INITIALIZE UPDATE and EXTERNAL AUTHENTICATE at level `33`.
    pub fn open_session(&mut self, keys: StaticKeys, host_challenge: [u8; 8]) -> Result<HostSession, TerminalError> {
        let handshake = HostHandshake::new(keys, SecurityLevel::FULL, host_challenge);
        let answer = self.transmit(&handshake.initialize_update())?;
        let opening = handshake.card_response(&answer)?;
        let response = self.transmit(&opening.external_authenticate)?;
        opening.session.check_external_authenticate(&response)?;
        Ok(opening.session)
    }

    /// Wraps, sends and unwraps one command.
    pub fn secure(
        &mut self,
        mut session: HostSession,
        plain: &CommandApdu,
    ) -> Result<(HostSession, ResponseApdu), TerminalError> {
        let wire = session.wrap(plain)?;
        let response = self.transmit(&wire)?;
        Ok(session.unwrap(&response)?)
    }
}
