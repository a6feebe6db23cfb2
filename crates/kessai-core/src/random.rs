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

/// Where a service draws its randomness, one generator per unit of work (a
/// protocol step, a create): the operating system's, or, for a run that must
/// replay from a seed, a seeded stream forked per generator in the order
/// they are asked for.
pub trait Entropy: Send + Sync + std::fmt::Debug {
    fn generator(&self) -> Box<dyn Random + Send>;
}

impl Entropy for OsRandom {
    fn generator(&self) -> Box<dyn Random + Send> {
        Box::new(OsRandom)
    }
}

/// Seeded generators: the n-th asked for is `SeededRandom` over
/// SHA-256(seed ‖ n). Never use it for real keys.
#[derive(Debug)]
pub struct SeededEntropy {
    seed: u64,
    forks: std::sync::atomic::AtomicU64,
}

impl SeededEntropy {
    pub fn new(seed: u64) -> SeededEntropy {
        SeededEntropy { seed, forks: std::sync::atomic::AtomicU64::new(0) }
    }
}

impl Entropy for SeededEntropy {
    fn generator(&self) -> Box<dyn Random + Send> {
        let n = self.forks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let digest = Sha256::new().chain_update(self.seed.to_be_bytes()).chain_update(n.to_be_bytes()).finalize();
        let mut seed = [0u8; 8];
        seed.copy_from_slice(&digest[..8]);
        Box::new(SeededRandom::new(u64::from_be_bytes(seed)))
    }
}
