//! Count-based references for Model 1. Its logits depend only on the current token, so on the
//! training pairs no Model 1 can beat the empirical conditional entropy H(next | current); and
//! a smoothed bigram table is what Model 1 approximates, scored on the test split.

use serde::{Deserialize, Serialize};

use crate::data::corpus::Dataset;
use crate::data::counts::TokenCounts;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Bigram {
    /// H(next | current) over the training windows' (input, target) pairs, in nats: the lowest
    /// mean train loss any Model 1 can reach.
    pub train_entropy: f64,
    /// The add-k smoothing constant, chosen on training windows only.
    pub k: f64,
    /// Mean test loss of the add-k bigram model fitted on all training windows.
    pub test_loss: f64,
}

/// Count of the pair (u, y) and of u in `c` (0 when absent).
fn lookup(c: &TokenCounts, u: u32, y: u32) -> (u32, u32) {
    let Ok(row) = c.tokens.binary_search(&u) else { return (0, 0) };
    let (lo, hi) = (c.row_start[row], c.row_start[row + 1]);
    let total = c.counts[lo..hi].iter().sum();
    let pair = c.targets[lo..hi].binary_search(&y).map_or(0, |i| c.counts[lo + i]);
    (pair, total)
}

/// Mean −log p over `c`'s positions with p(y | u) = C[u, y] / c_u from the same counts.
pub fn conditional_entropy(c: &TokenCounts) -> f64 {
    let mut total = 0f64;
    for u in 0..c.rows() {
        let (lo, hi) = (c.row_start[u], c.row_start[u + 1]);
        let c_u: f64 = c.counts[lo..hi].iter().map(|&n| n as f64).sum();
        total -= c.counts[lo..hi].iter().map(|&n| n as f64 * (n as f64 / c_u).ln()).sum::<f64>();
    }
    total / c.positions as f64
}

/// Mean −log p over `eval`'s positions with p(y | u) = (C[u, y] + k) / (c_u + k·V) from `fit`.
pub fn add_k_loss(fit: &TokenCounts, eval: &TokenCounts, k: f64, vocab: usize) -> f64 {
    let mut total = 0f64;
    for u in 0..eval.rows() {
        for i in eval.row_start[u]..eval.row_start[u + 1] {
            let (pair, c_u) = lookup(fit, eval.tokens[u], eval.targets[i]);
            let p = (pair as f64 + k) / (c_u as f64 + k * vocab as f64);
            total -= eval.counts[i] as f64 * p.ln();
        }
    }
    total / eval.positions as f64
}

fn counts(data: &Dataset, windows: &[usize]) -> TokenCounts {
    TokenCounts::from_windows(&data.tokens, windows, data.seq_len)
}

/// k from a log grid (1e-4 .. 10), scored on the training windows that start in the last tenth
/// of the training text, with the counts of the training windows that end before it (so the
/// two never share a token position, whatever the split); then the table is refitted on all
/// training windows.
pub fn bigram(data: &Dataset, vocab: usize) -> Bigram {
    let train = counts(data, &data.train);
    let mut starts = data.train.clone();
    starts.sort_unstable();
    let cut = starts[starts.len() * 9 / 10];
    let held: Vec<usize> = starts.iter().copied().filter(|&s| s >= cut).collect();
    let kept: Vec<usize> = starts.iter().copied().filter(|&s| s + data.seq_len < cut).collect();
    let (held, kept) = (counts(data, &held), counts(data, &kept));
    let grid = (0..=20).map(|i| 10f64.powf(-4.0 + 0.25 * i as f64));
    let k = grid
        .map(|k| (k, add_k_loss(&kept, &held, k, vocab)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(k, _)| k)
        .expect("grid is not empty");
    Bigram {
        train_entropy: conditional_entropy(&train),
        k,
        test_loss: add_k_loss(&train, &counts(data, &data.test), k, vocab),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_a_hand_made_stream() {
        // Pairs: 1->2 twice, 1->3 twice, 2->1 once, 3->1 once (six positions).
        // H = (4 · ln 2 + 0 + 0) / 6 = (2/3) ln 2.
        let c = TokenCounts::from_pairs(&[1, 1, 1, 1, 2, 3], &[2, 3, 2, 3, 1, 1]);
        assert!((conditional_entropy(&c) - 2.0 / 3.0 * 2f64.ln()).abs() < 1e-12);
        // Add-k with k = 1, V = 4 on the same pairs: p(2|1) = 3/8, p(3|1) = 3/8, p(1|2) = 2/5 = p(1|3).
        let want = -(4.0 * (3.0f64 / 8.0).ln() + 2.0 * (2.0f64 / 5.0).ln()) / 6.0;
        assert!((add_k_loss(&c, &c, 1.0, 4) - want).abs() < 1e-12);
        // An unseen input falls back to uniform.
        let unseen = TokenCounts::from_pairs(&[0], &[3]);
        assert!((add_k_loss(&c, &unseen, 0.5, 4) - 4f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn bigram_on_a_deterministic_stream_is_near_zero() {
        use rand::SeedableRng;
        // Token t is always followed by (t + 1) % 7: H = 0 and a tiny k wins.
        let tokens: Vec<u32> = (0..2000).map(|i| i % 7).collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let d = Dataset::new(tokens, 8, 2, crate::data::corpus::Split::Windows, 0.1, &mut rng).unwrap();
        let b = bigram(&d, 7);
        assert_eq!(b.train_entropy, 0.0);
        assert_eq!(b.k, 1e-4);
        assert!(b.test_loss < 1e-3, "{b:?}");
    }
}
