//! One seed, several independent streams. Every configuration run with seed `s` draws its split,
//! batch order and random initialisation from the same streams, so A, B, C and D differ only in
//! what the configuration changes: the comparison is paired.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Copy, Debug)]
pub enum Stream {
    Split = 1,
    Shuffle = 2,
    InitEmbedding = 3,
    InitHead = 4,
    Sample = 5,
    Permute = 6,
    /// The windows sampled curve points score (`--eval-windows`).
    EvalSample = 7,
    /// The random fallback rows of a vocabulary mapping (`--vocab-fallback random`).
    VocabFallback = 8,
}

pub fn stream(seed: u64, which: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(which as u64);
    rng
}
