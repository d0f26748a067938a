//! Small-sample statistics for the report: means with Student-t confidence intervals, and paired
//! differences between configurations that share a seed.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::config::Letter;
use crate::results::RunResult;

/// Student's t with `df` degrees of freedom (statrs); None for df that is not positive.
fn students_t(df: f64) -> Option<StudentsT> {
    StudentsT::new(0.0, 1.0, df).ok()
}

/// P(T <= t) for Student's t with `df` degrees of freedom.
pub fn t_cdf(t: f64, df: f64) -> f64 {
    students_t(df).map_or(f64::NAN, |d| d.cdf(t))
}

/// The t value with P(|T| <= t) = `level` (two-sided), by bisection on statrs's CDF: its own
/// `inverse_cdf` is 1.2e-4 off the printed tables at 10^6 degrees of freedom (1.959848 for
/// 1.959964), the CDF is accurate to the tables' last digit.
pub fn t_quantile(level: f64, df: f64) -> f64 {
    let Some(d) = students_t(df) else { return f64::NAN };
    let target = 0.5 + level / 2.0;
    let (mut lo, mut hi) = (0.0, 1e4);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if d.cdf(mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// A sample's mean with a two-sided 95 % confidence interval.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Estimate {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 when n = 1.
    pub sd: f64,
    /// Half-width of the 95 % interval; None when n < 2 (no interval exists).
    pub ci95: Option<f64>,
}

impl Estimate {
    pub fn of(xs: &[f64]) -> Option<Estimate> {
        let n = xs.len();
        if n == 0 {
            return None;
        }
        let mean = xs.iter().sum::<f64>() / n as f64;
        if n == 1 {
            return Some(Estimate { n, mean, sd: 0.0, ci95: None });
        }
        let sd = (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
        let ci95 = Some(t_quantile(0.95, (n - 1) as f64) * sd / (n as f64).sqrt());
        Some(Estimate { n, mean, sd, ci95 })
    }

    pub fn low(&self) -> f64 {
        self.mean - self.ci95.unwrap_or(0.0)
    }

    pub fn high(&self) -> f64 {
        self.mean + self.ci95.unwrap_or(0.0)
    }

    /// `4.1234 ± 0.0123` (or the bare mean when there is no interval).
    pub fn show(&self) -> String {
        match self.ci95 {
            Some(h) => format!("{:.4} ± {:.4}", self.mean, h),
            None => format!("{:.4}", self.mean),
        }
    }
}

/// One configuration's final losses over its seeds (diverged runs left out and counted).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConfigStats {
    pub config: Letter,
    pub runs: usize,
    pub diverged: usize,
    pub final_train: Option<Estimate>,
    /// The fixed training subset evaluated like the test set.
    pub final_train_eval: Option<Estimate>,
    pub final_test: Option<Estimate>,
}

/// A paired difference of final test losses, `minuend − subtrahend`, over the seeds both ran.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Comparison {
    /// Stable key for scripts: `freeze_cost`, `graft_benefit_trainable`, `graft_benefit_frozen`.
    pub key: String,
    pub minuend: Letter,
    pub subtrahend: Letter,
    pub difference: Option<Estimate>,
    /// `positive`, `negative` (the interval excludes 0 on that side), `not distinguishable`,
    /// `one seed` (no interval) or `no data`.
    pub outcome: String,
    /// The finding in a few words (`freezing the grafted embedding hurt`, …) or the outcome.
    pub finding: String,
    pub verdict: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Analysis {
    pub configs: Vec<ConfigStats>,
    pub comparisons: Vec<Comparison>,
}

fn final_test(runs: &[RunResult], l: Letter, seed: u64) -> Option<f64> {
    runs.iter()
        .find(|r| r.config == l && r.seed == seed && r.diverged.is_none() && !r.interrupted)
        .and_then(|r| r.final_point())
        .map(|p| p.test_loss)
}

/// (key, minuend, subtrahend, what a positive difference means, what a negative one means)
const QUESTIONS: [(&str, Letter, Letter, &str, &str); 7] = [
    (
        "freeze_cost",
        Letter::B,
        Letter::C,
        "freezing the grafted embedding hurt",
        "freezing the grafted embedding helped",
    ),
    ("graft_benefit_trainable", Letter::A, Letter::C, "the graft helped (trainable)", "the graft hurt (trainable)"),
    ("graft_benefit_frozen", Letter::D, Letter::B, "the graft helped (frozen)", "the graft hurt (frozen)"),
    // The controls: the same values in the wrong rows (content), the same rows at std 1 (scale).
    (
        "content_benefit_trainable",
        Letter::E,
        Letter::C,
        "the donor's rows in their own places helped (trainable): content, not only the values' distribution",
        "the permuted donor did better (trainable): the values' distribution, not their meaning, helped",
    ),
    (
        "content_benefit_frozen",
        Letter::F,
        Letter::B,
        "the donor's rows in their own places helped (frozen): content, not only the values' distribution",
        "the permuted donor did better (frozen): the values' distribution, not their meaning, helped",
    ),
    (
        "unit_scale_effect_frozen",
        Letter::B,
        Letter::G,
        "rescaling the donor to std 1 helped (frozen)",
        "rescaling the donor to std 1 hurt (frozen)",
    ),
    (
        "unit_scale_effect_trainable",
        Letter::C,
        Letter::H,
        "rescaling the donor to std 1 helped (trainable)",
        "rescaling the donor to std 1 hurt (trainable)",
    ),
];

pub fn analyse(runs: &[RunResult]) -> Analysis {
    let mut letters: Vec<Letter> = runs.iter().map(|r| r.config).collect();
    letters.sort();
    letters.dedup();
    let configs = letters
        .iter()
        .map(|&l| {
            let mine: Vec<&RunResult> = runs.iter().filter(|r| r.config == l).collect();
            let ok: Vec<&RunResult> = mine.iter().copied().filter(|r| r.diverged.is_none() && !r.interrupted).collect();
            let finals = |f: fn(&crate::results::Point) -> Option<f64>| {
                Estimate::of(&ok.iter().filter_map(|r| r.final_point()).filter_map(f).collect::<Vec<_>>())
            };
            ConfigStats {
                config: l,
                runs: mine.len(),
                diverged: mine.iter().filter(|r| r.diverged.is_some()).count(),
                final_train: finals(|p| Some(p.train_loss)),
                final_train_eval: finals(|p| p.train_eval_loss),
                final_test: finals(|p| Some(p.test_loss)),
            }
        })
        .collect();
    let mut seeds: Vec<u64> = runs.iter().map(|r| r.seed).collect();
    seeds.sort();
    seeds.dedup();
    let comparisons = QUESTIONS
        .iter()
        .filter(|q| letters.contains(&q.1) && letters.contains(&q.2))
        .map(|&(key, a, b, pos, neg)| {
            let diffs: Vec<f64> =
                seeds.iter().filter_map(|&s| Some(final_test(runs, a, s)? - final_test(runs, b, s)?)).collect();
            let difference = Estimate::of(&diffs);
            let outcome = match difference {
                None => "no data",
                Some(e) if e.ci95.is_none() => "one seed",
                Some(e) if e.low() > 0.0 => "positive",
                Some(e) if e.high() < 0.0 => "negative",
                Some(_) => "not distinguishable",
            };
            let finding = match outcome {
                "positive" => pos.to_string(),
                "negative" => neg.to_string(),
                other => other.to_string(),
            };
            let verdict = match difference {
                None => format!("{a} − {b}: no seed finished both"),
                Some(e) if e.ci95.is_none() => format!(
                    "{a} − {b} = {:+.4} from one seed: no interval, so no verdict; run --seeds 3 or more",
                    e.mean
                ),
                Some(e) if e.low() > 0.0 || e.high() < 0.0 => format!(
                    "{}: {a} − {b} = {:+.4} (95 % CI {:+.4} to {:+.4}, {} seeds)",
                    if e.mean > 0.0 { pos } else { neg },
                    e.mean,
                    e.low(),
                    e.high(),
                    e.n
                ),
                Some(e) => format!(
                    "not distinguishable at {} seeds: {a} − {b} = {:+.4} (95 % CI {:+.4} to {:+.4} contains 0)",
                    e.n,
                    e.mean,
                    e.low(),
                    e.high()
                ),
            };
            Comparison {
                key: key.to_string(),
                minuend: a,
                subtrahend: b,
                difference,
                outcome: outcome.to_string(),
                finding,
                verdict,
            }
        })
        .collect();
    Analysis { configs, comparisons }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_tables() {
        // Two-sided 95 % critical values of Student's t, as printed in statistics tables.
        for (df, want) in [(1.0, 12.7062), (2.0, 4.3027), (4.0, 2.7764), (9.0, 2.2622), (30.0, 2.0423), (1e6, 1.9600)] {
            let got = t_quantile(0.95, df);
            assert!((got - want).abs() < 1e-4, "df {df}: {got} vs {want}");
        }
        assert!((t_cdf(0.0, 3.0) - 0.5).abs() < 1e-12);
        // P(T <= 2.7764) = 0.975 at 4 degrees of freedom, from the same table.
        assert!((t_cdf(2.7764, 4.0) - 0.975).abs() < 1e-5);
    }

    fn run(config: Letter, seed: u64, test_loss: f64) -> RunResult {
        RunResult {
            config,
            seed,
            copied: config.copied(),
            frozen: config.frozen(),
            total_params: 0,
            trainable_params: 0,
            steps: 1,
            points: vec![crate::results::Point {
                epoch: 1,
                step: 1,
                train_loss: test_loss + 1.0,
                test_loss,
                train_eval_loss: None,
            }],
            graft: None,
            copy_check: None,
            frozen_check: None,
            drift: None,
            diverged: None,
            interrupted: false,
            wall_seconds: 0.0,
            sample: String::new(),
            model: "model1".into(),
            copy_checks: Vec::new(),
            frozen_checks: Vec::new(),
            thaws: Vec::new(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn paired_differences_and_verdicts() {
        let mut runs = vec![];
        for (s, (a, c)) in [(5.0, 4.0), (5.1, 4.2), (5.2, 4.1)].into_iter().enumerate() {
            runs.push(run(Letter::A, s as u64, a));
            runs.push(run(Letter::C, s as u64, c));
        }
        let an = analyse(&runs);
        assert_eq!(an.configs.len(), 2);
        assert!((an.configs[0].final_test.unwrap().mean - 5.1).abs() < 1e-12);
        assert_eq!(an.comparisons.len(), 1, "only A and C ran: one question");
        let c = &an.comparisons[0];
        assert_eq!(c.key, "graft_benefit_trainable");
        // Differences 1.0, 0.9, 1.1: mean 1, sd 0.1, half-width 4.3027 * 0.1 / sqrt 3 = 0.2484.
        let d = c.difference.unwrap();
        assert!((d.mean - 1.0).abs() < 1e-12 && (d.ci95.unwrap() - 0.2484).abs() < 1e-4, "{d:?}");
        assert_eq!(c.verdict, "the graft helped (trainable): A − C = +1.0000 (95 % CI +0.7516 to +1.2484, 3 seeds)");
        assert_eq!((c.outcome.as_str(), c.finding.as_str()), ("positive", "the graft helped (trainable)"));

        // Unpaired seeds are left out; a sign change inside the interval is no verdict.
        runs.push(run(Letter::A, 7, 9.0));
        runs[5].points[0].test_loss = 6.0; // C seed 2 now worse than A seed 2
        let c = &analyse(&runs).comparisons[0];
        assert_eq!(c.difference.unwrap().n, 3);
        assert!(c.verdict.starts_with("not distinguishable at 3 seeds"), "{}", c.verdict);

        let one = analyse(&[run(Letter::B, 0, 5.0), run(Letter::C, 0, 4.0)]);
        assert!(one.comparisons[0].verdict.contains("from one seed: no interval"), "{}", one.comparisons[0].verdict);
    }

    #[test]
    fn interval_of_known_samples() {
        // 1, 2, 3, 4, 5: mean 3, sd sqrt(2.5), half-width 2.7764 * sqrt(2.5) / sqrt(5) = 1.9632.
        let e = Estimate::of(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!(e.mean, 3.0);
        assert!((e.sd - 2.5f64.sqrt()).abs() < 1e-12);
        assert!((e.ci95.unwrap() - 1.9632).abs() < 1e-3, "{e:?}");
        assert_eq!(e.show(), "3.0000 ± 1.9632");
        let one = Estimate::of(&[7.0]).unwrap();
        assert_eq!((one.ci95, one.show()), (None, "7.0000".to_string()));
        assert!(Estimate::of(&[]).is_none());
    }
}
