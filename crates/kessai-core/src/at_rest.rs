//! Secret files at rest: `magic ‖ nonce 24 ‖ XChaCha20-Poly1305(plain,
//! aad)` under a key derived from a party's 32-byte key-encryption key
//! (KEK) by SHA-256 under a label of its own. The center seals its issuer
//! master keys and token keys this way, the credit service provider its
//! token keys.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::random::Random;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

fn cipher(kek: &[u8; 32]) -> XChaCha20Poly1305 {
    let digest = Sha256::new().chain_update(b"kessai-master-key-file\0").chain_update(kek).finalize();
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&digest);
    XChaCha20Poly1305::new(&(*key).into())
}

/// `plain` sealed under `kek`, with `magic` in front and `aad` bound in.
pub fn seal<R: Random + ?Sized>(magic: &[u8; 4], aad: &[u8], plain: &[u8], kek: &[u8; 32], rng: &mut R) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    // Encrypting a small buffer with a 32-byte key cannot fail.
    #[allow(clippy::expect_used)]
    let sealed = cipher(kek).encrypt(&XNonce::from(nonce), Payload { msg: plain, aad }).expect("AEAD seal");
    [&magic[..], &nonce, &sealed].concat()
}

/// What [`seal`] sealed with the same `magic` and `aad`; `None` for
/// anything else, or another KEK.
pub fn open(magic: &[u8; 4], aad: &[u8], bytes: &[u8], kek: &[u8; 32]) -> Option<Zeroizing<Vec<u8>>> {
    if bytes.len() < magic.len() + NONCE_LEN + TAG_LEN || &bytes[..4] != magic {
        return None;
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&bytes[4..4 + NONCE_LEN]);
    cipher(kek).decrypt(&XNonce::from(nonce), Payload { msg: &bytes[4 + NONCE_LEN..], aad }).ok().map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRandom;

    #[test]
    fn opens_only_what_it_sealed_under_the_same_kek_magic_and_aad() {
        let (kek, other) = ([7u8; 32], [8u8; 32]);
        let sealed = seal(b"TEST", b"label", b"secret", &kek, &mut SeededRandom::new(1));
        assert_eq!(&open(b"TEST", b"label", &sealed, &kek).unwrap()[..], b"secret");
        assert!(open(b"TEST", b"label", &sealed, &other).is_none());
        assert!(open(b"TEST", b"other", &sealed, &kek).is_none());
        assert!(open(b"TSET", b"label", &sealed, &kek).is_none());
        assert!(open(b"TEST", b"label", &sealed[..sealed.len() - 1], &kek).is_none());
        let mut flipped = sealed.clone();
        flipped[30] ^= 1;
        assert!(open(b"TEST", b"label", &flipped, &kek).is_none());
    }
}
