//! (input, target) pairs of a batch or a split, counted by input token: what Model 1's exact
//! distinct-token loss ([`crate::ops::loss`]) and the count-based floors ([`crate::data::baseline`])
//! are computed from.

use candle_core::{Device, Tensor};

use crate::error::Result;

/// (input, target) pairs grouped by input token, in CSR form.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenCounts {
    /// Distinct input tokens, ascending.
    pub tokens: Vec<u32>,
    /// Row u's targets are `targets[row_start[u]..row_start[u+1]]`.
    pub row_start: Vec<usize>,
    pub targets: Vec<u32>,
    pub counts: Vec<u32>,
    /// Number of positions N (the mean's denominator).
    pub positions: usize,
}

impl TokenCounts {
    pub fn from_pairs(xs: &[u32], ys: &[u32]) -> Self {
        assert_eq!(xs.len(), ys.len());
        let mut pairs: Vec<(u32, u32, u32)> = xs.iter().zip(ys).map(|(&x, &y)| (x, y, 1)).collect();
        pairs.sort_unstable();
        Self::from_sorted(pairs, xs.len())
    }

    /// The counts of the (input, target) pairs of `windows` over `tokens` (window `s`: inputs
    /// `tokens[s..s+L]`, targets one further), equal to [`TokenCounts::from_pairs`] over the
    /// pairs laid out, without laying them out: each text position's pair is counted as many
    /// times as windows cover it. Memory grows with the text, not with windows times their
    /// length (overlapping windows of 8 at stride 2 would hold every pair four times).
    pub fn from_windows(tokens: &[u32], windows: &[usize], seq_len: usize) -> Self {
        let n = tokens.len();
        // +1 where a window starts, -1 where it ends: the running sum is each position's cover.
        let mut edges = vec![0i32; n + 1];
        for &w in windows {
            edges[w] += 1;
            edges[(w + seq_len).min(n)] -= 1;
        }
        let mut cover = 0i32;
        let mut pairs = Vec::new();
        for i in 0..n.saturating_sub(1) {
            cover += edges[i];
            if cover > 0 {
                pairs.push((tokens[i], tokens[i + 1], cover as u32));
            }
        }
        drop(edges);
        pairs.sort_unstable();
        Self::from_sorted(pairs, windows.len() * seq_len)
    }

    /// (input, target, count) triples sorted by input then target, grouped into rows.
    fn from_sorted(pairs: Vec<(u32, u32, u32)>, positions: usize) -> Self {
        let mut c = TokenCounts { tokens: vec![], row_start: vec![], targets: vec![], counts: vec![], positions };
        for (x, y, n) in pairs {
            if c.tokens.last() != Some(&x) {
                c.tokens.push(x);
                c.row_start.push(c.targets.len());
            }
            if c.targets.len() > *c.row_start.last().unwrap() && c.targets.last() == Some(&y) {
                *c.counts.last_mut().unwrap() += n;
            } else {
                c.targets.push(y);
                c.counts.push(n);
            }
        }
        c.row_start.push(c.targets.len());
        c
    }

    /// One row per position, each with its one target: the form for models whose logits
    /// depend on more than the current token (Model 5). `tokens` holds the position index.
    pub fn per_position(ys: &[u32]) -> Self {
        TokenCounts {
            tokens: (0..ys.len() as u32).collect(),
            row_start: (0..=ys.len()).collect(),
            targets: ys.to_vec(),
            counts: vec![1; ys.len()],
            positions: ys.len(),
        }
    }

    pub fn rows(&self) -> usize {
        self.tokens.len()
    }

    pub(crate) fn row(&self, u: usize) -> (&[u32], &[u32]) {
        let r = self.row_start[u]..self.row_start[u + 1];
        (&self.targets[r.clone()], &self.counts[r])
    }

    /// Rows `lo..hi` as their own TokenCounts (same denominator), for evaluating in chunks.
    pub fn slice_rows(&self, lo: usize, hi: usize) -> TokenCounts {
        let (a, b) = (self.row_start[lo], self.row_start[hi]);
        TokenCounts {
            tokens: self.tokens[lo..hi].to_vec(),
            row_start: self.row_start[lo..=hi].iter().map(|s| s - a).collect(),
            targets: self.targets[a..b].to_vec(),
            counts: self.counts[a..b].to_vec(),
            positions: self.positions,
        }
    }

    /// Dense (rows x vocab) count matrix, for the tensor-op path.
    pub(crate) fn dense(&self, vocab: usize, device: &Device) -> Result<Tensor> {
        let mut m = vec![0f32; self.rows() * vocab];
        for u in 0..self.rows() {
            let (ys, cs) = self.row(u);
            for (&y, &c) in ys.iter().zip(cs) {
                m[u * vocab + y as usize] = c as f32;
            }
        }
        Ok(Tensor::from_vec(m, (self.rows(), vocab), device)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counting windows by their cover gives the counts of the pairs laid out, for overlapping
    /// windows in any order, a subset of them, and windows reaching the text's end.
    #[test]
    fn windows_counted_by_cover_equal_their_pairs() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let tokens: Vec<u32> = (0..3000).map(|_| rng.random_range(0..40)).collect();
        for (len, stride) in [(8, 2), (5, 5), (1, 1), (16, 3)] {
            let mut windows: Vec<usize> = (0..tokens.len() - len).step_by(stride).collect();
            windows.retain(|_| rng.random_bool(0.7));
            windows.reverse();
            let xs: Vec<u32> = windows.iter().flat_map(|&w| tokens[w..w + len].to_vec()).collect();
            let ys: Vec<u32> = windows.iter().flat_map(|&w| tokens[w + 1..w + len + 1].to_vec()).collect();
            assert_eq!(TokenCounts::from_windows(&tokens, &windows, len), TokenCounts::from_pairs(&xs, &ys));
        }
    }

    #[test]
    fn counts_group_pairs() {
        let c = TokenCounts::from_pairs(&[5, 2, 5, 5, 2], &[1, 7, 1, 3, 7]);
        assert_eq!(c.tokens, vec![2, 5]);
        assert_eq!(c.row_start, vec![0, 1, 3]);
        assert_eq!(c.targets, vec![7, 1, 3]);
        assert_eq!(c.counts, vec![2, 2, 1]);
        assert_eq!(c.positions, 5);
        let tail = c.slice_rows(1, 2);
        assert_eq!(
            (tail.tokens, tail.row_start, tail.targets, tail.counts),
            (vec![5], vec![0, 2], vec![1, 3], vec![2, 1])
        );
    }
}
