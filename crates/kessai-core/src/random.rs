//! Randomness, passed in. The core never reads a global generator.

use sha2::{Digest, Sha256};

/// A source of cryptographically strong random bytes.
pub trait Random {
    fn fill_bytes(&mut self, dest: &mut [u8]);
}

/// The operating system's generator, for binaries.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRandom;

impl Random for OsRandom {
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        // Without OS randomness no key, nonce or id can be made safely;
        // carrying on would be worse than stopping.
        #[allow(clippy::expect_used)]
        getrandom::fill(dest).expect("the operating system's random generator failed");
    }
}

/// A deterministic stream, SHA-256(seed ‖ counter), so a test run can be
/// replayed from its seed. Never use it for real keys.
#[derive(Debug, Clone)]
pub struct SeededRandom {
    seed: u64,
    counter: u64,
}

impl SeededRandom {
    pub fn new(seed: u64) -> SeededRandom {
        SeededRandom { seed, counter: 0 }
    }
}

impl Random for SeededRandom {
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(32) {
            let mut h = Sha256::new();
            h.update(self.seed.to_be_bytes());
            h.update(self.counter.to_be_bytes());
            self.counter += 1;
            let block = h.finalize();
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }
}
