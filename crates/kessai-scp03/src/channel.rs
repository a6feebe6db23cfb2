//! Secure messaging shared by both ends of an open session: C-MAC chaining,
//! the encryption counter and the ICVs, R-MAC.

use zeroize::Zeroize;

use crate::apdu::{CommandApdu, Header, ResponseApdu};
use crate::crypto::{Block, aes_cmac, aes_encrypt_block, cbc_decrypt, cbc_encrypt, pad, unpad};
use crate::error::ScpError;
use crate::handshake::{CLA_SECURE_MESSAGING, MacChain};
use crate::keys::SessionKeys;
use crate::level::SecurityLevel;
use crate::limits::{BLOCK_LEN, S8_LEN};
use crate::status::StatusWord;

/// The state of an open session, the same on both sides.
#[derive(Clone, Debug)]
pub(crate) struct Channel {
    pub(crate) keys: SessionKeys,
    pub(crate) level: SecurityLevel,
    /// The full 16-byte C-MAC of the last command (zero at the start).
    pub(crate) mac_chain: MacChain,
    /// The encryption counter of the last command (0 after EXTERNAL
    /// AUTHENTICATE; each later command adds one, encrypted or not).
    pub(crate) counter: u32,
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.mac_chain.zeroize();
    }
}

impl Channel {
    pub(crate) fn new(keys: SessionKeys, level: SecurityLevel) -> Self {
        Self { keys, level, mac_chain: [0; BLOCK_LEN], counter: 0 }
    }

    /// Chains a C-MAC over `header ‖ Lc ‖ data` (with room for the MAC
    /// counted in Lc) and returns the 8 bytes that go on the wire.
    pub(crate) fn chain_command_mac(&mut self, mac_input: &[u8]) -> [u8; S8_LEN] {
        self.mac_chain = aes_cmac(&self.keys.s_mac, &[&self.mac_chain, mac_input]);
        first8(&self.mac_chain)
    }

    /// The C-MAC a command would carry, without moving the chain.
    pub(crate) fn peek_command_mac(&self, mac_input: &[u8]) -> Block {
        aes_cmac(&self.keys.s_mac, &[&self.mac_chain, mac_input])
    }

    pub(crate) fn advance_counter(&mut self) -> Result<(), ScpError> {
        self.counter = self.counter.checked_add(1).ok_or(ScpError::CounterExhausted)?;
        Ok(())
    }

    fn icv(&self, response: bool) -> Block {
        let mut block = [0u8; BLOCK_LEN];
        if response {
            block[0] = 0x80;
        }
        block[BLOCK_LEN - 4..].copy_from_slice(&self.counter.to_be_bytes());
        aes_encrypt_block(&self.keys.s_enc, block)
    }

    /// Pads and encrypts a command data field (C-DECRYPTION).
    pub(crate) fn encrypt_command_data(&self, data: &[u8]) -> Vec<u8> {
        let mut out = pad(data);
        cbc_encrypt(&self.keys.s_enc, self.icv(false), &mut out);
        out
    }

    /// Decrypts and unpads a command data field.
    pub(crate) fn decrypt_command_data(&self, data: &[u8]) -> Result<Vec<u8>, ScpError> {
        self.decrypt(data, false)
    }

    /// Pads and encrypts response data (R-ENCRYPTION).
    pub(crate) fn encrypt_response_data(&self, data: &[u8]) -> Vec<u8> {
        let mut out = pad(data);
        cbc_encrypt(&self.keys.s_enc, self.icv(true), &mut out);
        out
    }

    /// Decrypts and unpads response data.
    pub(crate) fn decrypt_response_data(&self, data: &[u8]) -> Result<Vec<u8>, ScpError> {
        self.decrypt(data, true)
    }

    fn decrypt(&self, data: &[u8], response: bool) -> Result<Vec<u8>, ScpError> {
        if data.is_empty() || !data.len().is_multiple_of(BLOCK_LEN) {
            return Err(ScpError::PartialBlock(data.len()));
        }
        let mut buf = data.to_vec();
        cbc_decrypt(&self.keys.s_enc, self.icv(response), &mut buf);
        let plain = unpad(&buf).map(<[u8]>::to_vec).ok_or(ScpError::BadPadding);
        buf.zeroize();
        plain
    }

    /// R-MAC over `chain ‖ data ‖ SW`.
    pub(crate) fn response_mac(&self, data: &[u8], sw: StatusWord) -> [u8; S8_LEN] {
        first8(&aes_cmac(&self.keys.s_rmac, &[&self.mac_chain, data, &sw.to_bytes()]))
    }
}

pub(crate) fn first8(block: &Block) -> [u8; S8_LEN] {
    let mut out = [0u8; S8_LEN];
    out.copy_from_slice(&block[..S8_LEN]);
    out
}

/// Builds `header' ‖ Lc ‖ data ‖ C-MAC` for a command whose (possibly
/// encrypted) data field is `data`, and chains its MAC.
pub(crate) fn mac_command(
    channel: &mut Channel,
    header: Header,
    data: Vec<u8>,
    le: Option<usize>,
    extended: bool,
) -> Result<CommandApdu, ScpError> {
    let header = Header { cla: header.cla | CLA_SECURE_MESSAGING, ..header };
    let mut with_room = data;
    with_room.extend_from_slice(&[0u8; S8_LEN]);
    let mut wire = CommandApdu::with_form(header, with_room, le, extended)?;
    let mut mac_input = wire.encode_without_le();
    mac_input.truncate(mac_input.len() - S8_LEN);
    let mac = channel.chain_command_mac(&mac_input);
    let mut data = wire.data().to_vec();
    let at = data.len() - S8_LEN;
    data[at..].copy_from_slice(&mac);
    wire = CommandApdu::with_form(header, data, le, wire.is_extended())?;
    Ok(wire)
}

/// Wraps a completed response: R-ENC of a non-empty data field, then R-MAC.
/// Error responses go out bare (GlobalPlatform: no R-MAC on errors).
pub(crate) fn protect_response(channel: &Channel, plain: &ResponseApdu) -> Result<ResponseApdu, ScpError> {
    if !channel.level.r_mac() || !plain.sw().is_completed() {
        return Ok(plain.clone());
    }
    let mut data = if channel.level.r_encryption() && !plain.data().is_empty() {
        channel.encrypt_response_data(plain.data())
    } else {
        plain.data().to_vec()
    };
    let mac = channel.response_mac(&data, plain.sw());
    data.extend_from_slice(&mac);
    Ok(ResponseApdu::new(data, plain.sw())?)
}
