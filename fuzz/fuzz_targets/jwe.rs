//! The JWE compact parser: any string is opened or refused without a
//! panic, and only what was made for the key opens: the seed corpus holds
//! one JWE made for it (by jwcrypto), and any other plaintext opening would
//! need X25519 or AES-GCM broken.
#![no_main]

use std::sync::OnceLock;

use kessai_core::jwe::{self, EncryptionKey};
use libfuzzer_sys::fuzz_target;

/// The plaintext of the one JWE made for the key (in the seed corpus).
const SEED_PLAINTEXT: &[u8] = b"{\"registration\":\"seed\"}";

fn key() -> &'static EncryptionKey {
    static KEY: OnceLock<EncryptionKey> = OnceLock::new();
    KEY.get_or_init(|| EncryptionKey::from_secret(&[7; 32]))
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    if let Ok((_, plain)) = jwe::decrypt(token, key()) {
        assert_eq!(&plain[..], SEED_PLAINTEXT, "a JWE opened that no one made for this key");
    }
});
