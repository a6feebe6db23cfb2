//! The key-file decoder (PKCS#8 PEM, plain or sealed under a passphrase):
//! any text is read or refused without a panic, within bounded time (the
//! Argon2 cost a file asks for is capped).
#![no_main]

use kessai_core::keyfile::{Passphrase, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = decode(text, None);
    let _ = decode(text, Some(&Passphrase::new("correct horse".to_owned())));
});
