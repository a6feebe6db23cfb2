//! The card (security domain) side: answer INITIALIZE UPDATE, verify
//! EXTERNAL AUTHENTICATE, unwrap commands, wrap responses.
//!
//! Each transition consumes the state it leaves, so a session that failed a
//! check cannot be used again: the caller is left with nothing to continue.

use subtle::ConstantTimeEq;

use crate::aid::Aid;
use crate::apdu::{CommandApdu, Header, ResponseApdu};
use crate::channel::{Channel, first8, protect_response};
use crate::error::ScpError;
use crate::handshake::{
    CLA_GP, CLA_SECURE_MESSAGING, I_PARAM, INS_EXTERNAL_AUTHENTICATE, INS_INITIALIZE_UPDATE, InitializeUpdateResponse,
    S8, SCP_ID, SequenceCounter, card_cryptogram, host_cryptogram, pseudo_random_card_challenge, session_keys,
};
use crate::keys::StaticKeys;
use crate::level::SecurityLevel;
use crate::limits::{KEY_DIVERSIFICATION_DATA_LEN, S8_LEN};
use crate::status::StatusWord;

/// Who the card is, as INITIALIZE UPDATE tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardIdentity {
    /// The AID of the application (enters the card challenge).
    pub aid: Aid,
    /// Key diversification data sent to the host.
    pub key_diversification_data: [u8; KEY_DIVERSIFICATION_DATA_LEN],
}

/// A card that answered INITIALIZE UPDATE and waits for EXTERNAL AUTHENTICATE.
#[derive(Debug)]
pub struct CardHandshake {
    channel: Channel,
    host_cryptogram: S8,
}

fn expect(cmd: &CommandApdu, cla: u8, ins: u8) -> Result<(), ScpError> {
    if cmd.ins() != ins {
        return Err(ScpError::UnexpectedInstruction { expected: ins, actual: cmd.ins() });
    }
    if cmd.cla() != cla {
        return Err(ScpError::UnexpectedClass(cmd.cla()));
    }
    Ok(())
}

fn expect_data_len(cmd: &CommandApdu, len: usize) -> Result<(), ScpError> {
    if cmd.data().len() != len {
        return Err(ScpError::WrongDataLength { expected: len, actual: cmd.data().len() });
    }
    Ok(())
}

impl CardHandshake {
    /// Answers INITIALIZE UPDATE (`80 50 KVN|00 00 08 host-challenge [Le]`).
    ///
    /// `sequence` is the counter value for this session; the caller must
    /// have advanced and stored it durably first, or card challenges repeat.
    pub fn initialize_update(
        keys: &StaticKeys,
        identity: &CardIdentity,
        sequence: SequenceCounter,
        cmd: &CommandApdu,
    ) -> Result<(Self, ResponseApdu), ScpError> {
        expect(cmd, CLA_GP, INS_INITIALIZE_UPDATE)?;
        if cmd.p2() != 0 {
            return Err(ScpError::IncorrectP1P2 { p1: cmd.p1(), p2: cmd.p2() });
        }
        if cmd.p1() != 0 && cmd.p1() != keys.version.get() {
            return Err(ScpError::KeyVersionNotFound { requested: cmd.p1() });
        }
        expect_data_len(cmd, S8_LEN)?;
        let mut host_challenge = [0u8; S8_LEN];
        host_challenge.copy_from_slice(cmd.data());
        let card_challenge = pseudo_random_card_challenge(&keys.enc, sequence, &identity.aid);
        let session = session_keys(keys, &host_challenge, &card_challenge);
        let answer = InitializeUpdateResponse {
            key_diversification_data: identity.key_diversification_data,
            key_version: keys.version.get(),
            scp_id: SCP_ID,
            i_param: I_PARAM,
            card_challenge,
            card_cryptogram: card_cryptogram(&session, &host_challenge, &card_challenge),
            sequence_counter: sequence,
        };
        let host_cryptogram = host_cryptogram(&session, &host_challenge, &card_challenge);
        // The level is set by EXTERNAL AUTHENTICATE; until then C-MAC only.
        let channel = Channel::new(session, SecurityLevel::C_MAC);
        let response = ResponseApdu::new(answer.to_bytes(), StatusWord::Success)?;
        Ok((Self { channel, host_cryptogram }, response))
    }

    /// Verifies EXTERNAL AUTHENTICATE (`84 82 level 00 10 cryptogram C-MAC`)
    /// and opens the session at the requested level.
    pub fn external_authenticate(self, cmd: &CommandApdu) -> Result<(CardSession, ResponseApdu), ScpError> {
        expect(cmd, CLA_GP | CLA_SECURE_MESSAGING, INS_EXTERNAL_AUTHENTICATE)?;
        let level = SecurityLevel::new(cmd.p1()).ok_or(ScpError::InvalidSecurityLevel(cmd.p1()))?;
        if cmd.p2() != 0 {
            return Err(ScpError::IncorrectP1P2 { p1: cmd.p1(), p2: cmd.p2() });
        }
        expect_data_len(cmd, 2 * S8_LEN)?;
        let (cryptogram, mac) = cmd.data().split_at(S8_LEN);
        if !bool::from(self.host_cryptogram.ct_eq(cryptogram)) {
            return Err(ScpError::HostCryptogramMismatch);
        }
        let mut channel = self.channel;
        verify_and_chain(&mut channel, cmd, mac)?;
        channel.level = level;
        Ok((CardSession { channel }, ResponseApdu::status(StatusWord::Success)))
    }
}

fn verify_and_chain(channel: &mut Channel, cmd: &CommandApdu, mac: &[u8]) -> Result<(), ScpError> {
    let mut mac_input = cmd.encode_without_le();
    mac_input.truncate(mac_input.len() - S8_LEN);
    let full = channel.peek_command_mac(&mac_input);
    if !bool::from(first8(&full).ct_eq(mac)) {
        return Err(ScpError::CommandMacMismatch);
    }
    channel.mac_chain = full;
    Ok(())
}

/// An open session on the card.
#[derive(Debug)]
pub struct CardSession {
    channel: Channel,
}

impl CardSession {
    /// The level EXTERNAL AUTHENTICATE set.
    pub fn level(&self) -> SecurityLevel {
        self.channel.level
    }

    /// Verifies the C-MAC of a command and decrypts its data field (whenever
    /// one is present and the level has C-DECRYPTION: a data field of padding
    /// only gives empty data). On any error the session is gone.
    pub fn unwrap_command(mut self, wire: &CommandApdu) -> Result<(Self, CommandApdu), ScpError> {
        if wire.cla() & CLA_SECURE_MESSAGING == 0 {
            return Err(ScpError::CommandNotSecured);
        }
        let Some((body, mac)) = wire.data().split_last_chunk::<S8_LEN>() else {
            return Err(ScpError::MissingCommandMac);
        };
        verify_and_chain(&mut self.channel, wire, mac)?;
        self.channel.advance_counter()?;
        let data = if self.channel.level.c_decryption() && !body.is_empty() {
            self.channel.decrypt_command_data(body)?
        } else {
            body.to_vec()
        };
        let header = Header { cla: wire.cla() & !CLA_SECURE_MESSAGING, ..wire.header() };
        let plain = CommandApdu::new(header, data, wire.le())?;
        Ok((self, plain))
    }

    /// Protects the response to the last unwrapped command: R-ENC of a
    /// non-empty data field and R-MAC when the status word says the command
    /// completed; error status words go out bare.
    pub fn wrap_response(&self, plain: &ResponseApdu) -> Result<ResponseApdu, ScpError> {
        protect_response(&self.channel, plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::HostHandshake;
    use crate::keys::{Aes128Key, KeyVersion};

    #[test]
    fn padding_only_data_field_is_empty_data() {
        let keys = StaticKeys {
            version: KeyVersion::new(1).unwrap(),
            enc: Aes128Key::new([1; 16]),
            mac: Aes128Key::new([2; 16]),
            dek: Aes128Key::new([3; 16]),
        };
        let identity = CardIdentity { aid: Aid::new(&[0xF0, 1, 2, 3, 4]).unwrap(), key_diversification_data: [0; 10] };
        let host = HostHandshake::new(keys.clone(), SecurityLevel::FULL, [7; 8]);
        let seq = SequenceCounter::new(1).unwrap();
        let (card, answer) =
            CardHandshake::initialize_update(&keys, &identity, seq, &host.initialize_update()).unwrap();
        let opening = host.card_response(&answer).unwrap();
        let (card, _) = card.external_authenticate(&opening.external_authenticate).unwrap();
        let mut host = opening.session;
        let header = Header { cla: 0x80, ins: 0x30, p1: 0, p2: 0 };
        let plain = CommandApdu::new(header, Vec::new(), None).unwrap();
        let wire = host.wrap_always_encrypting(&plain);
        assert_eq!(wire.data().len(), 16 + 8);
        let (card, seen) = card.unwrap_command(&wire).unwrap();
        assert_eq!(seen, plain);
        // The counter moved on for both: the next command still verifies.
        let wire = host.wrap(&CommandApdu::new(header, vec![1, 2], None).unwrap()).unwrap();
        let (_, seen) = card.unwrap_command(&wire).unwrap();
        assert_eq!(seen.data(), &[1, 2]);
    }
}
