//! Small-sample statistics for the report: means with Student-t confidence intervals, and paired
//! differences between configurations that share a seed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, StudentsT};

use crate::analysis::outcome::Outcome;
pub use crate::analysis::questions::{Question, QUESTIONS};
use crate::config::Letter;
use crate::train::results::RunResult;

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
    /// Each run's lowest test loss over its curve points, over seeds (on the honest split,
    /// best < final shows overfitting).
    #[serde(default)]
    pub best_test: Option<Estimate>,
    /// The mean step of those best points.
    #[serde(default)]
    pub best_step: Option<f64>,
    /// Why the runs were still improving when they stopped (less than an epoch, or a falling
    /// test loss), if they were: verdicts on them are about early training.
    #[serde(default)]
    pub still_improving: Option<String>,
    /// `final_test` and `best_test` in bits per byte (absent without byte counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_test_bpb: Option<Estimate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_test_bpb: Option<Estimate>,
}

/// A paired difference of final test losses, `minuend − subtrahend`, over the seeds both ran.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Comparison {
    /// Stable key for scripts: `freeze_cost`, `graft_benefit_trainable`, … (see [`QUESTIONS`]).
    pub key: String,
    pub minuend: Letter,
    pub subtrahend: Letter,
    pub difference: Option<Estimate>,
    /// The same paired difference in bits per byte (absent without byte counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difference_bpb: Option<Estimate>,
    /// Two-sided paired t-test of "no difference" (None below two seeds).
    pub p_value: Option<f64>,
    /// Holm's step-down adjustment over every question this report asks: the verdict uses it,
    /// so the chance of any false "helped" or "hurt" in the report stays at 5 %.
    pub p_adjusted: Option<f64>,
    /// After the adjustment: `positive`, `negative`, `not distinguishable`, `one seed` or
    /// `no data`.
    pub outcome: Outcome,
    /// The same from the unadjusted 95 % interval alone.
    pub outcome_unadjusted: Outcome,
    /// The finding in a few words (`freezing the grafted embedding hurt`, …) or the outcome.
    pub finding: String,
    pub verdict: String,
    /// Without a verdict: the 95 % interval rules out effects larger than this either way
    /// (its farthest end from zero).
    pub ruled_out_beyond: Option<f64>,
    /// Without a verdict: seeds that would detect the observed mean difference with 80 %
    /// power at the observed paired spread (two-sided, at the family's α / questions).
    pub seeds_for_80_power: Option<usize>,
    /// The same paired difference at every curve point both configurations share.
    #[serde(default)]
    pub over_time: Vec<TimePoint>,
}

/// A question's answer at one curve point.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TimePoint {
    pub step: usize,
    pub difference: Estimate,
    pub p_adjusted: Option<f64>,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Analysis {
    pub configs: Vec<ConfigStats>,
    pub comparisons: Vec<Comparison>,
    /// How the verdicts control the error rate across questions.
    #[serde(default)]
    pub correction: String,
}

/// The final point of a run that finished (not diverged, not interrupted).
fn finished(runs: &[RunResult], l: Letter, seed: u64) -> Option<&RunResult> {
    runs.iter().find(|r| r.config == l && r.seed == seed && r.diverged.is_none() && !r.interrupted)
}

fn final_test(runs: &[RunResult], l: Letter, seed: u64) -> Option<f64> {
    finished(runs, l, seed).and_then(|r| r.final_point()).map(|p| p.test_loss)
}

fn final_test_bpb(runs: &[RunResult], l: Letter, seed: u64) -> Option<f64> {
    finished(runs, l, seed).and_then(|r| r.final_point()).and_then(|p| p.test_bpb)
}

/// (seed, `a`'s final test loss − `b`'s) for every seed of `seeds` where both runs finished.
pub fn paired_final(runs: &[RunResult], a: Letter, b: Letter, seeds: &[u64]) -> Vec<(u64, f64)> {
    seeds.iter().filter_map(|&s| Some((s, final_test(runs, a, s)? - final_test(runs, b, s)?))).collect()
}

/// The same in bits per byte, for the seeds whose both final points have it.
pub fn paired_final_bpb(runs: &[RunResult], a: Letter, b: Letter, seeds: &[u64]) -> Vec<(u64, f64)> {
    seeds.iter().filter_map(|&s| Some((s, final_test_bpb(runs, a, s)? - final_test_bpb(runs, b, s)?))).collect()
}

/// The estimate of the differences in bits per byte, where every seed of the nats estimate has
/// one (else None: an interval over fewer seeds would not be the same question's).
fn bpb_estimate(nats: Option<&Estimate>, bpb: &[(u64, f64)]) -> Option<Estimate> {
    nats.filter(|e| e.n == bpb.len())?;
    Estimate::of(&bpb.iter().map(|d| d.1).collect::<Vec<_>>())
}

/// The family-wise error rate the verdicts keep.
pub const ALPHA: f64 = 0.05;

/// Two-sided p-value of a paired t-test that the mean difference is 0.
pub fn paired_p(e: &Estimate) -> Option<f64> {
    if e.n < 2 {
        return None;
    }
    if e.sd == 0.0 {
        return Some(if e.mean == 0.0 { 1.0 } else { 0.0 });
    }
    let t = e.mean / (e.sd / (e.n as f64).sqrt());
    Some((2.0 * (1.0 - t_cdf(t.abs(), (e.n - 1) as f64))).clamp(0.0, 1.0))
}

/// Holm's step-down adjustment: the k-th smallest of m p-values is multiplied by m − k + 1,
/// made non-decreasing, and capped at 1. Rejecting where the adjusted value is below α keeps
/// the family-wise error rate at α.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![0.0; m];
    let mut running: f64 = 0.0;
    for (k, &i) in order.iter().enumerate() {
        running = running.max(((m - k) as f64 * p[i]).min(1.0));
        out[i] = running;
    }
    out
}

/// Seeds a paired t-test needs to detect a mean difference `d` at spread `sd` with `power`,
/// two-sided at level `alpha`: the smallest n with (t(1 − α/2, n−1) + t(power, n−1))·sd/√n ≤ |d|
/// (the standard approximation; it gives the tables' 10 seeds for d/sd = 1 and 34 for 0.5).
pub fn seeds_for_power(d: f64, sd: f64, alpha: f64, power: f64) -> Option<usize> {
    if !(d.is_finite() && sd.is_finite()) || d == 0.0 {
        return None;
    }
    if sd == 0.0 {
        return Some(2);
    }
    // t(q, df) one-sided = the two-sided quantile at level 2q − 1.
    (2..=100_000usize).find(|&n| {
        let df = (n - 1) as f64;
        (t_quantile(1.0 - alpha, df) + t_quantile(2.0 * power - 1.0, df)) * sd / (n as f64).sqrt() <= d.abs()
    })
}

/// Outcome from an interval alone (unadjusted).
fn interval_outcome(e: Option<Estimate>) -> Outcome {
    match e {
        None => Outcome::NoData,
        Some(e) if e.ci95.is_none() => Outcome::OneSeed,
        Some(e) if e.low() > 0.0 => Outcome::Positive,
        Some(e) if e.high() < 0.0 => Outcome::Negative,
        Some(_) => Outcome::NotDistinguishable,
    }
}

/// Outcome after the adjustment: a sign only when the adjusted p-value is below α.
pub(crate) fn adjusted_outcome(e: Option<Estimate>, p_adj: Option<f64>) -> Outcome {
    match (e, p_adj) {
        (None, _) => Outcome::NoData,
        (Some(e), _) if e.ci95.is_none() => Outcome::OneSeed,
        (Some(e), Some(p)) if p < ALPHA && e.mean > 0.0 => Outcome::Positive,
        (Some(e), Some(p)) if p < ALPHA && e.mean < 0.0 => Outcome::Negative,
        _ => Outcome::NotDistinguishable,
    }
}

/// Per question, the paired differences over seeds at every step both configurations have a
/// curve point for (runs of one experiment evaluate at the same steps).
fn differences_at(runs: &[RunResult], a: Letter, b: Letter, seeds: &[u64]) -> BTreeMap<usize, Vec<f64>> {
    let mut at: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for &s in seeds {
        let (Some(ra), Some(rb)) = (finished(runs, a, s), finished(runs, b, s)) else { continue };
        for pa in &ra.points {
            if let Some(pb) = rb.points.iter().find(|p| p.step == pa.step) {
                at.entry(pa.step).or_default().push(pa.test_loss - pb.test_loss);
            }
        }
    }
    at
}

/// Whether a configuration's runs were still improving when they stopped: they covered less
/// than an epoch, or the mean test loss fell over the last tenth of the steps by more than
/// the final loss's 95 % half-width (by anything, with one seed).
fn still_improving(ok: &[&RunResult], steps_per_epoch: usize, final_test: Option<Estimate>) -> Option<String> {
    let steps = ok.iter().map(|r| r.steps).max()?;
    if steps < steps_per_epoch {
        return Some(format!("{steps} steps, less than one epoch of {steps_per_epoch}"));
    }
    let late = steps - steps.div_ceil(10);
    let earlier: Vec<f64> = ok
        .iter()
        .filter_map(|r| r.points.iter().rfind(|p| p.step <= late && p.step < r.steps).map(|p| p.test_loss))
        .collect();
    let (Some(before), Some(fin)) = (Estimate::of(&earlier), final_test) else { return None };
    let fall = before.mean - fin.mean;
    let margin = fin.ci95.unwrap_or(0.0);
    (fall > margin).then(|| {
        format!("test loss still fell by {fall:.4} over the last tenth of its {steps} steps (more than ±{margin:.4})")
    })
}

/// The statistics of a set of runs. `steps_per_epoch` tells a run that covered less than an
/// epoch.
pub fn analyse(runs: &[RunResult], steps_per_epoch: usize) -> Analysis {
    let mut letters: Vec<Letter> = runs.iter().map(|r| r.config).collect();
    letters.sort();
    letters.dedup();
    let configs = letters.iter().map(|&l| config_stats(runs, l, steps_per_epoch)).collect();
    let mut seeds: Vec<u64> = runs.iter().map(|r| r.seed).collect();
    seeds.sort();
    seeds.dedup();
    let asked: Vec<_> =
        QUESTIONS.iter().filter(|q| letters.contains(&q.minuend) && letters.contains(&q.subtrahend)).collect();
    let diffs: Vec<Option<Estimate>> = asked
        .iter()
        .map(|q| {
            Estimate::of(
                &paired_final(runs, q.minuend, q.subtrahend, &seeds).into_iter().map(|d| d.1).collect::<Vec<_>>(),
            )
        })
        .collect();
    let diffs_bpb: Vec<Option<Estimate>> = asked
        .iter()
        .zip(&diffs)
        .map(|(q, d)| bpb_estimate(d.as_ref(), &paired_final_bpb(runs, q.minuend, q.subtrahend, &seeds)))
        .collect();
    let p: Vec<Option<f64>> = diffs.iter().map(|d| d.as_ref().and_then(paired_p)).collect();
    let adjusted = adjust(&p);
    let tested = p.iter().filter(|p| p.is_some()).count();
    // Over training time: the same family adjusted at each step.
    let series: Vec<BTreeMap<usize, Vec<f64>>> =
        asked.iter().map(|q| differences_at(runs, q.minuend, q.subtrahend, &seeds)).collect();
    let steps: std::collections::BTreeSet<usize> = series.iter().flat_map(|m| m.keys().copied()).collect();
    let mut over_time: Vec<Vec<TimePoint>> = vec![Vec::new(); asked.len()];
    for &step in &steps {
        let est: Vec<Option<Estimate>> = series.iter().map(|m| m.get(&step).and_then(|d| Estimate::of(d))).collect();
        let adj = adjust(&est.iter().map(|e| e.as_ref().and_then(paired_p)).collect::<Vec<_>>());
        for (k, (e, pa)) in est.into_iter().zip(adj).enumerate() {
            if let Some(e) = e {
                let outcome = adjusted_outcome(Some(e), pa);
                over_time[k].push(TimePoint { step, difference: e, p_adjusted: pa, outcome });
            }
        }
    }
    let comparisons = asked
        .iter()
        .zip(diffs)
        .zip(p.iter().zip(&adjusted))
        .zip(over_time.into_iter().zip(diffs_bpb))
        .map(|(((q, d), (&p, &pa)), (over_time, bpb))| Comparison {
            difference_bpb: bpb,
            ..comparison(q, d, p, pa, tested, over_time)
        })
        .collect();
    let correction = if tested == 0 {
        "Holm's step-down over the questions with an interval; none has one here (one seed), so there is nothing to \
         correct"
            .to_string()
    } else {
        format!(
            "Holm's step-down over the {tested} questions with an interval: a verdict needs its adjusted p-value \
             below {ALPHA}, \
             so the chance of any false \"helped\" or \"hurt\" in this report is at most {:.0} %",
            100.0 * ALPHA
        )
    };
    Analysis { configs, comparisons, correction }
}

/// Holm over the p-values that exist; None stays None.
fn adjust(p: &[Option<f64>]) -> Vec<Option<f64>> {
    let present: Vec<f64> = p.iter().flatten().copied().collect();
    let mut adj = holm(&present).into_iter();
    p.iter().map(|x| x.and_then(|_| adj.next())).collect()
}

fn config_stats(runs: &[RunResult], l: Letter, steps_per_epoch: usize) -> ConfigStats {
    let mine: Vec<&RunResult> = runs.iter().filter(|r| r.config == l).collect();
    let ok: Vec<&RunResult> = mine.iter().copied().filter(|r| r.diverged.is_none() && !r.interrupted).collect();
    let finals = |f: fn(&crate::train::results::Point) -> Option<f64>| {
        Estimate::of(&ok.iter().filter_map(|r| r.final_point()).filter_map(f).collect::<Vec<_>>())
    };
    let best_points: Vec<&crate::train::results::Point> =
        ok.iter().filter_map(|r| r.points.iter().min_by(|a, b| a.test_loss.total_cmp(&b.test_loss))).collect();
    let best: Vec<(f64, usize)> = best_points.iter().map(|p| (p.test_loss, p.step)).collect();
    let best_bpb: Vec<f64> = best_points.iter().filter_map(|p| p.test_bpb).collect();
    let final_test = finals(|p| Some(p.test_loss));
    let final_bpb = finals(|p| p.test_bpb);
    ConfigStats {
        config: l,
        runs: mine.len(),
        diverged: mine.iter().filter(|r| r.diverged.is_some()).count(),
        final_train: finals(|p| Some(p.train_loss)),
        final_train_eval: finals(|p| p.train_eval_loss),
        final_test,
        best_test: Estimate::of(&best.iter().map(|b| b.0).collect::<Vec<_>>()),
        best_step: (!best.is_empty()).then(|| best.iter().map(|b| b.1 as f64).sum::<f64>() / best.len() as f64),
        still_improving: still_improving(&ok, steps_per_epoch, final_test),
        final_test_bpb: final_bpb.filter(|e| final_test.is_some_and(|f| f.n == e.n)),
        best_test_bpb: Estimate::of(&best_bpb).filter(|e| e.n == best.len()),
    }
}

fn comparison(
    q: &Question,
    difference: Option<Estimate>,
    p_value: Option<f64>,
    p_adjusted: Option<f64>,
    family: usize,
    over_time: Vec<TimePoint>,
) -> Comparison {
    let (key, a, b, pos, neg) = (q.key, q.minuend, q.subtrahend, q.positive, q.negative);
    let outcome = adjusted_outcome(difference, p_adjusted);
    let outcome_unadjusted = interval_outcome(difference);
    let finding = match outcome {
        Outcome::Positive => pos.to_string(),
        Outcome::Negative => neg.to_string(),
        other => other.to_string(),
    };
    let undecided = outcome == Outcome::NotDistinguishable;
    let ruled_out_beyond = difference.filter(|_| undecided).map(|e| e.low().abs().max(e.high().abs()));
    let seeds_for_80_power =
        difference.filter(|_| undecided).and_then(|e| seeds_for_power(e.mean, e.sd, ALPHA / family.max(1) as f64, 0.8));
    let ps = match (p_value, p_adjusted) {
        (Some(p), Some(pa)) => format!("p {}, Holm-adjusted p {}", show_p(p), show_p(pa)),
        _ => String::new(),
    };
    let verdict = match difference {
        None => format!("{a} − {b}: no seed finished both"),
        Some(e) if e.ci95.is_none() => {
            format!("{a} − {b} = {:+.4} from one seed: no interval, so no verdict; run --seeds 3 or more", e.mean)
        }
        Some(e) if !undecided => format!(
            "{}: {a} − {b} = {:+.4} (95 % CI {:+.4} to {:+.4}, {} seeds; {ps})",
            if e.mean > 0.0 { pos } else { neg },
            e.mean,
            e.low(),
            e.high(),
            e.n
        ),
        Some(e) => {
            let why = if outcome_unadjusted == Outcome::NotDistinguishable {
                "contains 0".to_string()
            } else {
                format!("excludes 0 on its own, but not after Holm's correction over {family} questions")
            };
            let power = match seeds_for_80_power {
                Some(n) => format!("; about {n} seeds would detect a difference of {:+.4} with 80 % power", e.mean),
                None => String::new(),
            };
            format!(
                "not distinguishable at {} seeds: {a} − {b} = {:+.4} (95 % CI {:+.4} to {:+.4} {why}; {ps}); \
                 the seeds rule out effects beyond ±{:.4}{power}",
                e.n,
                e.mean,
                e.low(),
                e.high(),
                ruled_out_beyond.unwrap_or(0.0)
            )
        }
    };
    Comparison {
        key: key.to_string(),
        minuend: a,
        subtrahend: b,
        difference,
        difference_bpb: None,
        p_value,
        p_adjusted,
        outcome,
        outcome_unadjusted,
        finding,
        verdict,
        ruled_out_beyond,
        seeds_for_80_power,
        over_time,
    }
}

/// `= 0.0033`, or `< 0.0001` for smaller values.
/// `= 0.0123` or `< 0.0001`.
pub fn show_p(p: f64) -> String {
    if p < 1e-4 {
        "< 0.0001".into()
    } else {
        format!("= {p:.4}")
    }
}

/// Where a question's answer changed over training: (step, outcome before, outcome after).
pub fn flips(c: &Comparison) -> Vec<(usize, Outcome, Outcome)> {
    c.over_time
        .windows(2)
        .filter(|w| w[0].outcome != w[1].outcome)
        .map(|w| (w[1].step, w[0].outcome, w[1].outcome))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every question compares two different configurations, has its own key, and the sweep's
    /// names are unique; an analysis of all eight configurations asks every question once.
    #[test]
    fn every_question_is_a_row_and_is_asked() {
        let keys: std::collections::BTreeSet<_> = QUESTIONS.iter().map(|q| q.key).collect();
        assert_eq!(keys.len(), QUESTIONS.len());
        let names: Vec<_> = QUESTIONS.iter().filter_map(|q| q.followed_as).collect();
        assert_eq!(names.iter().collect::<std::collections::BTreeSet<_>>().len(), names.len());
        assert!(QUESTIONS.iter().all(|q| q.minuend != q.subtrahend));
        let runs: Vec<RunResult> = (0..2)
            .flat_map(|s| Letter::WITH_CONTROLS.map(|l| run(l, s, 5.0 + l as usize as f64 / 10.0 + s as f64 / 100.0)))
            .collect();
        let an = analyse(&runs, 1);
        assert_eq!(an.comparisons.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(), keys_in_order());
        for (c, q) in an.comparisons.iter().zip(QUESTIONS) {
            assert_eq!((c.minuend, c.subtrahend), (q.minuend, q.subtrahend), "{}", q.key);
        }
    }

    fn keys_in_order() -> Vec<&'static str> {
        QUESTIONS.iter().map(|q| q.key).collect()
    }

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
            points: vec![crate::train::results::Point {
                epoch: 1,
                step: 1,
                train_loss: test_loss + 1.0,
                test_loss,
                train_eval_loss: None,
                eval_windows: None,
                test_bpb: Some(test_loss * 0.25),
                train_eval_bpb: None,
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
            matmul: None,
            made_under: None,
            cell: None,
            blake3: None,
        }
    }

    #[test]
    fn paired_differences_and_verdicts() {
        let mut runs = vec![];
        for (s, (a, c)) in [(5.0, 4.0), (5.1, 4.2), (5.2, 4.1)].into_iter().enumerate() {
            runs.push(run(Letter::A, s as u64, a));
            runs.push(run(Letter::C, s as u64, c));
        }
        let an = analyse(&runs, 1);
        assert_eq!(an.configs.len(), 2);
        assert!((an.configs[0].final_test.unwrap().mean - 5.1).abs() < 1e-12);
        assert_eq!(an.comparisons.len(), 1, "only A and C ran: one question");
        let c = &an.comparisons[0];
        assert_eq!(c.key, "graft_benefit_trainable");
        // Differences 1.0, 0.9, 1.1: mean 1, sd 0.1, half-width 4.3027 * 0.1 / sqrt 3 = 0.2484.
        let d = c.difference.unwrap();
        assert!((d.mean - 1.0).abs() < 1e-12 && (d.ci95.unwrap() - 0.2484).abs() < 1e-4, "{d:?}");
        // t = 1 / (0.1 / √3) = 17.3205 with 2 degrees of freedom: p = 1 − t / √(2 + t²) = 0.003317;
        // one question, so Holm leaves it as it is.
        assert!((c.p_value.unwrap() - 0.003317).abs() < 1e-5, "{:?}", c.p_value);
        assert_eq!(c.p_adjusted, c.p_value);
        assert_eq!(
            c.verdict,
            "the graft helped (trainable): A − C = +1.0000 (95 % CI +0.7516 to +1.2484, 3 seeds; p = 0.0033, \
             Holm-adjusted p = 0.0033)"
        );
        assert_eq!((c.outcome.as_str(), c.finding.as_str()), ("positive", "the graft helped (trainable)"));
        // In bits per byte (each run's BPB a quarter of its nats here): the same pairs, scaled.
        let b = c.difference_bpb.unwrap();
        assert!((b.mean - 0.25).abs() < 1e-12 && (b.ci95.unwrap() - 0.2484 / 4.0).abs() < 1e-4, "{b:?}");
        assert!((an.configs[0].final_test_bpb.unwrap().mean - 5.1 / 4.0).abs() < 1e-12);
        // A seed without BPB takes the BPB interval away rather than giving one over fewer seeds.
        let mut partial = runs.clone();
        partial[0].points[0].test_bpb = None;
        assert!(analyse(&partial, 1).comparisons[0].difference_bpb.is_none());

        // Unpaired seeds are left out; a sign change inside the interval is no verdict.
        runs.push(run(Letter::A, 7, 9.0));
        runs[5].points[0].test_loss = 6.0; // C seed 2 now worse than A seed 2
        let c = &analyse(&runs, 1).comparisons[0];
        assert_eq!(c.difference.unwrap().n, 3);
        assert!(c.verdict.starts_with("not distinguishable at 3 seeds"), "{}", c.verdict);

        let one = analyse(&[run(Letter::B, 0, 5.0), run(Letter::C, 0, 4.0)], 1);
        assert!(one.comparisons[0].verdict.contains("from one seed: no interval"), "{}", one.comparisons[0].verdict);
    }

    #[test]
    fn holm_on_hand_made_p_values() {
        // Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> made
        // non-decreasing: 0.02, 0.03, 0.06, 0.06.
        let adj = holm(&[0.01, 0.04, 0.03, 0.005]);
        let want = [0.03, 0.06, 0.06, 0.02];
        assert!(adj.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12), "{adj:?}");
        assert_eq!(holm(&[0.5, 0.001]), vec![0.5, 0.002]);
        assert_eq!(holm(&[0.4, 0.6]), vec![0.8, 0.8]);
        assert_eq!(holm(&[0.7]), vec![0.7]);
        assert!(holm(&[]).is_empty());
    }

    #[test]
    fn seeds_for_power_match_the_tables() {
        // Paired t-test, two-sided α = 0.05, power 0.8 (G*Power, Cohen's tables): effect size
        // d/sd = 1 needs 10 pairs, 0.5 needs 34, 0.8 needs 15.
        assert_eq!(seeds_for_power(1.0, 1.0, 0.05, 0.8), Some(10));
        assert_eq!(seeds_for_power(-0.5, 1.0, 0.05, 0.8), Some(34));
        assert_eq!(seeds_for_power(0.8, 1.0, 0.05, 0.8), Some(15));
        assert_eq!(seeds_for_power(0.0, 1.0, 0.05, 0.8), None);
        // A stricter α (Bonferroni over several questions) needs more seeds.
        assert!(seeds_for_power(1.0, 1.0, 0.005, 0.8).unwrap() > 10);
    }

    /// A grid whose answers are built in: at matched scale the donor helps trainable (A − H
    /// = +0.5) and freezing costs (G − H = +0.2), while frozen the graft makes no difference
    /// (D − G = noise around 0).
    #[test]
    fn matched_scale_questions_on_a_known_grid() {
        let mut runs = Vec::new();
        let noise = [0.01, -0.02, 0.015, -0.005];
        for (s, e) in noise.iter().enumerate() {
            let h = 5.0 + e;
            for (l, v) in [
                (Letter::A, h + 0.5 + e / 2.0),
                (Letter::H, h),
                (Letter::G, h + 0.2 - e / 3.0),
                (Letter::D, h + 0.2 + [0.03, -0.04, 0.01, 0.02][s]),
            ] {
                runs.push(run(l, s as u64, v));
            }
        }
        let an = analyse(&runs, 1);
        let get = |k: &str| an.comparisons.iter().find(|c| c.key == k).unwrap_or_else(|| panic!("{k} not asked"));
        let a_h = get("graft_benefit_matched_trainable");
        assert_eq!((a_h.minuend, a_h.subtrahend, a_h.outcome.as_str()), (Letter::A, Letter::H, "positive"));
        assert!(a_h.verdict.starts_with("the graft at the random init's scale helped (trainable)"), "{}", a_h.verdict);
        assert_eq!(get("freeze_cost_matched").outcome, Outcome::Positive);
        let d_g = get("graft_benefit_matched_frozen");
        assert_eq!(d_g.outcome, Outcome::NotDistinguishable);
        assert!(d_g.ruled_out_beyond.unwrap() > 0.0 && d_g.seeds_for_80_power.is_some(), "{d_g:?}");
        assert!(d_g.verdict.contains("the seeds rule out effects beyond ±"), "{}", d_g.verdict);
        // Three questions (A − H, D − G, G − H): Holm multiplies the smallest p by 3.
        assert_eq!(an.comparisons.len(), 3);
        let smallest = an.comparisons.iter().map(|c| c.p_value.unwrap()).fold(1.0, f64::min);
        let adj = an.comparisons.iter().map(|c| c.p_adjusted.unwrap()).fold(1.0, f64::min);
        assert!((adj - (3.0 * smallest).min(1.0)).abs() < 1e-12);
        assert!(an.correction.contains("Holm") && an.correction.contains("3 questions"));
    }

    /// An interval that excludes 0 on its own but not after the correction gets no verdict,
    /// and the sentence says why.
    #[test]
    fn adjustment_can_withdraw_a_verdict() {
        let mut runs = Vec::new();
        // B − C: mean 0.06, sd 0.01732, t = 6 at 2 degrees of freedom: p = 1 − 6/√38 = 0.0267
        // alone, 0.080 after Holm over three questions. A − C and D − B: nothing.
        let bc = [0.04268, 0.06, 0.07732];
        for s in 0..3 {
            runs.push(run(Letter::C, s, 5.0));
            runs.push(run(Letter::B, s, 5.0 + bc[s as usize]));
            runs.push(run(Letter::A, s, 5.0 + [0.3, -0.3, 0.05][s as usize]));
            runs.push(run(Letter::D, s, 5.0 + bc[s as usize] + [0.2, -0.25, 0.1][s as usize]));
        }
        let an = analyse(&runs, 1);
        let fc = an.comparisons.iter().find(|c| c.key == "freeze_cost").unwrap();
        assert_eq!(fc.outcome_unadjusted, Outcome::Positive, "{fc:?}");
        assert!((fc.p_value.unwrap() - 0.0267).abs() < 1e-3 && (fc.p_adjusted.unwrap() - 0.080).abs() < 1e-3, "{fc:?}");
        assert_eq!(fc.outcome, Outcome::NotDistinguishable);
        assert!(
            fc.verdict.contains("excludes 0 on its own, but not after Holm's correction over 3 questions"),
            "{}",
            fc.verdict
        );
    }

    #[test]
    fn early_training_best_and_answers_over_time() {
        let mk = |l: Letter, s: u64, curve: &[(usize, f64)]| {
            let mut r = run(l, s, 0.0);
            r.points = curve
                .iter()
                .map(|&(step, t)| crate::train::results::Point {
                    epoch: 1,
                    step,
                    train_loss: t,
                    test_loss: t,
                    train_eval_loss: None,
                    eval_windows: None,
                    test_bpb: None,
                    train_eval_bpb: None,
                })
                .collect();
            r.steps = curve.last().unwrap().0;
            r
        };
        // A keeps falling to the end; C is flat and overfits a little (best before final).
        // A − C flips from positive (A worse early) to negative (A better late).
        let mut runs = Vec::new();
        for s in 0..3u64 {
            let e = s as f64 * 0.01;
            runs.push(mk(Letter::A, s, &[(10, 6.0 + e), (50, 5.0 + e), (90, 4.5 + e), (100, 4.0 + e)]));
            runs.push(mk(Letter::C, s, &[(10, 5.0 - e), (50, 4.8 - e), (90, 4.7 - e), (100, 4.75 - e)]));
        }
        let an = analyse(&runs, 20);
        let a = an.configs.iter().find(|c| c.config == Letter::A).unwrap();
        assert!(a.still_improving.as_ref().unwrap().contains("still fell by 0.5000"), "{:?}", a.still_improving);
        let c = an.configs.iter().find(|c| c.config == Letter::C).unwrap();
        assert!(c.still_improving.is_none(), "{:?}", c.still_improving);
        assert!((c.best_test.unwrap().mean - 4.69).abs() < 1e-12 && c.best_step == Some(90.0), "{c:?}");
        assert!(c.best_test.unwrap().mean < c.final_test.unwrap().mean, "overfitting shows as best < final");
        let cmp = &an.comparisons[0];
        assert_eq!(cmp.over_time.iter().map(|t| t.step).collect::<Vec<_>>(), [10, 50, 90, 100]);
        assert_eq!(flips(cmp), vec![(90, Outcome::Positive, Outcome::Negative)]);
        assert_eq!(cmp.over_time.last().unwrap().outcome, Outcome::Negative);
        // Less than an epoch is always early training.
        let an = analyse(&runs, 1000);
        assert!(an
            .configs
            .iter()
            .all(|c| c.still_improving.as_ref().is_some_and(|w| w.contains("less than one epoch"))));
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
