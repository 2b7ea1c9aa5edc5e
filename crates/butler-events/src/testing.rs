//! Deterministic helpers for tests and benchmarks, which make events without a
//! payload ([`crate::Event::new`]) and need the same random stream on every run.

/// A xorshift64 generator: small, fast, and the same sequence for the same state, so
/// a failing test or a benchmark run can be reproduced.
#[derive(Debug, Clone)]
pub struct Xorshift(u64);

impl Xorshift {
    /// A generator starting from `state` (0 stands for 1: xorshift never leaves 0).
    pub fn new(state: u64) -> Xorshift {
        Xorshift(state.max(1))
    }

    /// A generator from any seed, mixed first (splitmix64) so that nearby seeds give
    /// unrelated streams.
    pub fn seeded(seed: u64) -> Xorshift {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Xorshift((z ^ (z >> 31)) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}
