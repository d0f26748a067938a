//! How far a trainable grafted embedding moves from the donor, by how often each token occurs
//! as an input in training (only those rows get gradients). AdamW's decoupled weight decay
//! still shrinks every other row: a row with no gradient ever has m = v = 0, so its update is
//! zero and after T steps it is exactly (1 − lr·wd)^T times its grafted value.

use serde::{Deserialize, Serialize};

/// Frequency buckets of the training inputs.
pub const BUCKETS: [(&str, u32, u32); 3] = [("never", 0, 0), ("rare (1-9)", 1, 9), ("frequent (10+)", 10, u32::MAX)];

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DriftBucket {
    pub bucket: String,
    pub tokens: usize,
    /// Mean over the bucket's rows of ‖final − grafted‖ (NaN for an empty bucket: JSON's null).
    #[serde(deserialize_with = "null_as_nan")]
    pub mean_l2: f64,
    /// Mean cosine similarity between final and grafted rows.
    #[serde(deserialize_with = "null_as_nan")]
    pub mean_cosine: f64,
    /// Mean of ‖final‖ / ‖grafted‖.
    #[serde(deserialize_with = "null_as_nan")]
    pub mean_norm_ratio: f64,
}

/// serde_json writes NaN as null; reading it back gives NaN again, so a run file with an empty
/// bucket stays readable (`report`, `--resume`).
fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Drift {
    pub buckets: Vec<DriftBucket>,
    /// (1 − lr·wd)^steps: what weight decay alone leaves of a row that never had a gradient.
    pub unseen_expected_ratio: f64,
    /// Largest |‖final‖/‖grafted‖ − expected| over rows never seen in training.
    pub unseen_max_deviation: f64,
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt()
}

/// Compares `fin` with `start` (both V x `cols`, row-major); `freq[t]` is how often token t is
/// an input in the training windows.
pub fn measure(start: &[f32], fin: &[f32], cols: usize, freq: &[u32], lr: f64, wd: f64, steps: usize) -> Drift {
    let expected = (1.0 - lr * wd).powi(steps as i32);
    let mut acc = vec![(0usize, 0f64, 0f64, 0f64); BUCKETS.len()];
    let mut worst = 0f64;
    for (t, (a, b)) in start.chunks(cols).zip(fin.chunks(cols)).enumerate() {
        let f = freq.get(t).copied().unwrap_or(0);
        let (na, nb) = (norm(a), norm(b));
        let diff = a.iter().zip(b).map(|(&x, &y)| (y as f64 - x as f64).powi(2)).sum::<f64>().sqrt();
        let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
        let (cos, ratio) = if na > 0.0 && nb > 0.0 { (dot / (na * nb), nb / na) } else { (1.0, 1.0) };
        if f == 0 && na > 0.0 {
            worst = worst.max((ratio - expected).abs());
        }
        let k = BUCKETS.iter().position(|&(_, lo, hi)| f >= lo && f <= hi).expect("buckets cover all counts");
        acc[k].0 += 1;
        acc[k].1 += diff;
        acc[k].2 += cos;
        acc[k].3 += ratio;
    }
    let buckets = BUCKETS
        .iter()
        .zip(acc)
        .map(|(&(name, _, _), (n, l2, cos, ratio))| {
            let m = |x: f64| if n > 0 { x / n as f64 } else { f64::NAN };
            DriftBucket {
                bucket: name.into(),
                tokens: n,
                mean_l2: m(l2),
                mean_cosine: m(cos),
                mean_norm_ratio: m(ratio),
            }
        })
        .collect();
    Drift { buckets, unseen_expected_ratio: expected, unseen_max_deviation: worst }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_closed_form() {
        // Three tokens of width 2: never seen (decayed only), rare (rotated), frequent (moved).
        let start = [3.0f32, 4.0, 1.0, 0.0, 0.0, 2.0];
        let decay = (1.0f64 - 1e-3 * 0.01).powi(100);
        let fin = [(3.0 * decay) as f32, (4.0 * decay) as f32, 0.0, 1.0, 0.0, 3.0];
        let d = measure(&start, &fin, 2, &[0, 5, 50], 1e-3, 0.01, 100);
        assert_eq!(d.buckets.iter().map(|b| b.tokens).collect::<Vec<_>>(), vec![1, 1, 1]);
        assert!((d.unseen_expected_ratio - decay).abs() < 1e-15);
        assert!(d.unseen_max_deviation < 1e-7, "{}", d.unseen_max_deviation);
        assert!((d.buckets[0].mean_cosine - 1.0).abs() < 1e-12);
        assert!((d.buckets[1].mean_cosine - 0.0).abs() < 1e-12 && (d.buckets[1].mean_l2 - 2f64.sqrt()).abs() < 1e-12);
        assert!((d.buckets[2].mean_l2 - 1.0).abs() < 1e-12 && (d.buckets[2].mean_norm_ratio - 1.5).abs() < 1e-12);
        // An empty bucket's means are NaN, written as null and read back as NaN.
        let d = measure(&start, &fin, 2, &[0, 50, 50], 1e-3, 0.01, 100);
        let back: Drift = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(back.buckets[1].tokens, 0);
        assert!(back.buckets[1].mean_l2.is_nan() && back.buckets[1].mean_cosine.is_nan());
    }
}
