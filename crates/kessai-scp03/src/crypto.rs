//! The primitives: AES-128 block, AES-CMAC, the SP 800-108 counter-mode KDF,
//! CBC without padding, and ISO/IEC 9797-1 method 2 padding.

use aes::Aes128;
use aes::cipher::{Array, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use cmac::{Cmac, Mac};

use crate::keys::Aes128Key;
use crate::limits::{BLOCK_LEN, KDF_MAX_BLOCKS};

/// One AES block.
pub type Block = [u8; BLOCK_LEN];

fn cipher(key: &Aes128Key) -> Aes128 {
    Aes128::new(&Array::from(*key.expose()))
}

/// AES-128 encryption of one block (ECB), for ICVs.
pub fn aes_encrypt_block(key: &Aes128Key, block: Block) -> Block {
    let mut b = Array::from(block);
    cipher(key).encrypt_block(&mut b);
    b.into()
}

/// AES-128 decryption of one block (ECB): a key PUT KEY carries,
/// encrypted under the static DEK.
pub fn aes_decrypt_block(key: &Aes128Key, block: Block) -> Block {
    let mut b = Array::from(block);
    cipher(key).decrypt_block(&mut b);
    b.into()
}

/// AES-CMAC (RFC 4493) over the concatenation of `parts`.
pub fn aes_cmac(key: &Aes128Key, parts: &[&[u8]]) -> Block {
    let mut mac = <Cmac<Aes128> as KeyInit>::new(&Array::from(*key.expose()));
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Why a KDF call was refused.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KdfError {
    /// The output needs more than 255 PRF blocks (an 8-bit counter).
    #[error("KDF output of {len} bytes needs more than 255 blocks")]
    OutputTooLong {
        /// Requested output length.
        len: usize,
    },
}

/// NIST SP 800-108 KDF in counter mode with AES-CMAC as PRF and an 8-bit
/// counter (r = 8) starting at 1. The PRF input of block `i` is
/// `before ‖ [i]₈ ‖ after`: with `before` empty this is CAVP's "counter
/// before fixed data"; SCP03 puts its label in `before` and its context in
/// `after`.
pub fn kdf_counter_cmac(key: &Aes128Key, before: &[u8], after: &[u8], out: &mut [u8]) -> Result<(), KdfError> {
    if out.len().div_ceil(BLOCK_LEN) > KDF_MAX_BLOCKS {
        return Err(KdfError::OutputTooLong { len: out.len() });
    }
    kdf_fill(key, before, &[after], out);
    Ok(())
}

/// The KDF loop; callers make sure `out` needs at most 255 blocks.
pub(crate) fn kdf_fill(key: &Aes128Key, before: &[u8], after: &[&[u8]], out: &mut [u8]) {
    debug_assert!(out.len().div_ceil(BLOCK_LEN) <= KDF_MAX_BLOCKS);
    for (i, chunk) in out.chunks_mut(BLOCK_LEN).enumerate() {
        // At most 255 blocks (checked by every caller), so `i + 1` fits.
        let counter = [u8::try_from(i + 1).unwrap_or(u8::MAX)];
        let mut parts: Vec<&[u8]> = Vec::with_capacity(2 + after.len());
        parts.push(before);
        parts.push(&counter);
        parts.extend_from_slice(after);
        let block = aes_cmac(key, &parts);
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
}

/// AES-128-CBC encryption in place; `data.len()` must be a multiple of 16.
pub(crate) fn cbc_encrypt(key: &Aes128Key, icv: Block, data: &mut [u8]) {
    debug_assert_eq!(data.len() % BLOCK_LEN, 0);
    let c = cipher(key);
    let mut chain = icv;
    for chunk in data.chunks_exact_mut(BLOCK_LEN) {
        for (b, x) in chunk.iter_mut().zip(chain) {
            *b ^= x;
        }
        let mut block = Array::from(chain);
        block.copy_from_slice(chunk);
        c.encrypt_block(&mut block);
        chunk.copy_from_slice(&block);
        chain = block.into();
    }
}

/// AES-128-CBC decryption in place; `data.len()` must be a multiple of 16.
pub(crate) fn cbc_decrypt(key: &Aes128Key, icv: Block, data: &mut [u8]) {
    debug_assert_eq!(data.len() % BLOCK_LEN, 0);
    let c = cipher(key);
    let mut chain = icv;
    for chunk in data.chunks_exact_mut(BLOCK_LEN) {
        let mut block = Array::from(chain);
        block.copy_from_slice(chunk);
        let next_chain: Block = block.into();
        c.decrypt_block(&mut block);
        for ((out, b), x) in chunk.iter_mut().zip(block.iter()).zip(chain) {
            *out = b ^ x;
        }
        chain = next_chain;
    }
}

/// ISO/IEC 9797-1 method 2: `80`, then `00`s up to a multiple of 16. Always
/// adds at least one byte, so empty input becomes one full block.
pub(crate) fn pad(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + BLOCK_LEN);
    out.extend_from_slice(data);
    out.push(0x80);
    while !out.len().is_multiple_of(BLOCK_LEN) {
        out.push(0);
    }
    out
}

/// Removes method-2 padding: trailing `00`s, then one `80`; the padding must
/// lie within the last block. `None` if it is not there.
pub(crate) fn unpad(data: &[u8]) -> Option<&[u8]> {
    let end = data.iter().rposition(|&b| b != 0)?;
    let pad_len = data.len() - end;
    (data[end] == 0x80 && pad_len <= BLOCK_LEN).then(|| &data[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_round_trip() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let padded = pad(&data);
            assert_eq!(padded.len() % 16, 0);
            assert!(padded.len() > data.len());
            assert_eq!(unpad(&padded), Some(&data[..]));
        }
        assert_eq!(unpad(&[0u8; 16]), None);
        assert_eq!(unpad(&[1u8; 16]), None);
        let mut long = vec![0x80];
        long.extend([0u8; 16]);
        assert_eq!(unpad(&long), None, "padding longer than a block");
    }

    #[test]
    fn cbc_round_trip_and_chaining() {
        let key = Aes128Key::new([7; 16]);
        let mut data = [0x11u8; 48];
        cbc_encrypt(&key, [3; 16], &mut data);
        assert_ne!(data[..16], data[16..32], "identical plaintext blocks must differ");
        cbc_decrypt(&key, [3; 16], &mut data);
        assert_eq!(data, [0x11u8; 48]);
    }

    #[test]
    fn kdf_refuses_too_much_output() {
        let key = Aes128Key::new([0; 16]);
        let mut out = vec![0; 16 * 256];
        assert_eq!(kdf_counter_cmac(&key, &[], &[], &mut out), Err(KdfError::OutputTooLong { len: 4096 }));
    }
}
