#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! kessai-scp03 integration tests: published vectors, then whole sessions.

mod cmac;
mod diversify;
mod kbkdf;
mod pysim;
mod session;

/// Decodes hex or fails the test.
pub fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|e| panic!("bad hex {s:?}: {e}"))
}

/// A 16-byte key from hex.
pub fn key(s: &str) -> kessai_scp03::Aes128Key {
    kessai_scp03::Aes128Key::from_slice(&unhex(s)).expect("16-byte key")
}

/// Reads a file under `tests/vectors/`.
pub fn vector_file(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
