//! Sweeps: the questions' paired differences followed across a swept setting (training tokens,
//! Model 5's layers or width), with a trend per series fitted over seeds, and the lecture's
//! "when to freeze" claims checked against those trends.
//!
//! A trend is the slope of a question's paired difference on the logarithm of the swept value,
//! fitted for each seed on its own (every size of a seed shares its initial weights), then
//! summed up over seeds as a mean with a Student-t interval: seeds are the independent
//! replicates, sizes within a seed are not.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::analysis::outcome::Trend;
use crate::analysis::questions::Claim;
use crate::analysis::stats::{self, Estimate};
use crate::analysis::summary::Summary;
use crate::config::grid::Group;
use crate::config::{Axis, ExperimentConfig, Letter, Sweep};

/// What a sweep measured, as written into the overview's summary.json under `sweep`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SweepAnalysis {
    /// The swept settings.
    pub axes: Vec<Axis>,
    /// How long every cell trained, and what that means across data sizes.
    pub budget: String,
    pub series: Vec<Series>,
    /// One sentence per lecture claim and series.
    pub claims: Vec<String>,
    /// How the trend verdicts control their error rate.
    pub correction: String,
}

/// One question's paired difference at each value of one swept setting, the other settings
/// fixed (`line` names them: the donor/corpus pair and any other swept value).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Series {
    pub key: String,
    pub minuend: Letter,
    pub subtrahend: Letter,
    pub axis: Axis,
    pub line: String,
    pub points: Vec<SeriesPoint>,
    pub trend: Option<TrendFit>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SeriesPoint {
    pub value: usize,
    /// The group folder the cells are in.
    pub group: String,
    /// (seed, minuend's final test loss − subtrahend's) for every seed both finished.
    pub per_seed: Vec<(u64, f64)>,
    pub difference: Option<Estimate>,
}

/// The slope of the paired difference on log(value) (base 10 for tokens, 2 for model sizes),
/// fitted per seed, over seeds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrendFit {
    pub slope: Estimate,
    /// The slope's unit: "per tenfold of training tokens", "per doubling of layers".
    pub per: String,
    pub p_value: Option<f64>,
    /// Holm's adjustment over every trend of the sweep.
    pub p_adjusted: Option<f64>,
    /// `grows`, `shrinks`, `no trend` or `one seed`.
    pub outcome: Trend,
}

/// The sweep's series and trends from the groups' summaries (by group name; a group with no
/// summary yet is left out of its series).
pub fn analyse(cfg: &ExperimentConfig, groups: &[Group], done: &[(String, Summary)]) -> SweepAnalysis {
    let sweeps = cfg.sweeps();
    let summary = |name: &str| done.iter().find(|(n, _)| n == name).map(|(_, s)| s);
    let mut series = Vec::new();
    for &(axis, _) in &sweeps {
        // Groups that differ only in this axis form a line.
        let mut lines: BTreeMap<String, Vec<&Group>> = BTreeMap::new();
        for g in groups {
            lines.entry(line_label(g, axis)).or_default().push(g);
        }
        // The questions a sweep follows: the freeze cost and the graft benefit, plain and at the
        // random init's scale (when the controls G and H ran).
        for q in stats::QUESTIONS.iter().filter(|q| q.followed_as.is_some()) {
            let (key, minuend, subtrahend) = (q.key, &q.minuend, &q.subtrahend);
            if !(cfg.graft.configs.0.contains(minuend) && cfg.graft.configs.0.contains(subtrahend)) {
                continue;
            }
            for (line, members) in &lines {
                let mut points: Vec<SeriesPoint> = members
                    .iter()
                    .filter_map(|g| {
                        let value = g.point.iter().find(|(a, _)| *a == axis)?.1;
                        let s = summary(&g.name)?;
                        let per_seed = stats::paired_final(&s.runs, *minuend, *subtrahend, &g.cfg.seeds());
                        let difference = Estimate::of(&per_seed.iter().map(|p| p.1).collect::<Vec<_>>());
                        Some(SeriesPoint { value, group: g.name.clone(), per_seed, difference })
                    })
                    .collect();
                points.sort_by_key(|p| p.value);
                let trend = trend(&points, axis);
                series.push(Series {
                    key: key.to_string(),
                    minuend: *minuend,
                    subtrahend: *subtrahend,
                    axis,
                    line: line.clone(),
                    points,
                    trend,
                });
            }
        }
    }
    // Holm over every trend that has a p-value: the chance of any false "grows" or "shrinks"
    // in the sweep stays at 5 %.
    let ps: Vec<(usize, f64)> =
        series.iter().enumerate().filter_map(|(i, s)| s.trend.as_ref()?.p_value.map(|p| (i, p))).collect();
    let adjusted = stats::holm(&ps.iter().map(|p| p.1).collect::<Vec<_>>());
    for (&(i, _), adj) in ps.iter().zip(adjusted) {
        if let Some(t) = series[i].trend.as_mut() {
            t.p_adjusted = Some(adj);
            t.outcome = match adj < stats::ALPHA {
                true if t.slope.mean > 0.0 => Trend::Grows,
                true if t.slope.mean < 0.0 => Trend::Shrinks,
                _ => Trend::NoTrend,
            };
        }
    }
    let claims = claims(&series);
    SweepAnalysis {
        axes: sweeps.iter().map(|s| s.0).collect(),
        budget: budget(cfg, groups, done),
        correction: format!(
            "a trend's verdict needs its Holm-adjusted p below {} over the sweep's {} trends (one-sample t-test of \
             the per-seed slopes)",
            stats::ALPHA,
            ps.len()
        ),
        series,
        claims,
    }
}

/// What a group's line in a series along `axis` is called: its pair and its other swept
/// values (`shakespeare`, `layers-2`), or the corpus for a one-pair sweep.
fn line_label(g: &Group, axis: Axis) -> String {
    let others = g.point.iter().filter(|(a, _)| *a != axis).map(|&(a, v)| format!("{} {}", a.short(), Sweep::show(v)));
    let pair = match g.pair.is_empty() {
        true => g.cfg.data.corpora.first().map_or("timemachine".to_string(), |c| crate::config::grid::corpus_name(c)),
        false => g.pair.clone(),
    };
    std::iter::once(pair).chain(others).collect::<Vec<_>>().join(", ")
}

/// The per-seed least-squares slopes on log(value), summed up over seeds.
fn trend(points: &[SeriesPoint], axis: Axis) -> Option<TrendFit> {
    let mut by_seed: BTreeMap<u64, Vec<(f64, f64)>> = BTreeMap::new();
    for p in points {
        let x = (p.value as f64).ln() / axis.log_base().ln();
        for &(seed, d) in &p.per_seed {
            by_seed.entry(seed).or_default().push((x, d));
        }
    }
    let slopes: Vec<f64> = by_seed.values().filter_map(|xy| slope(xy)).collect();
    let est = Estimate::of(&slopes)?;
    let p_value = stats::paired_p(&est);
    let outcome = if est.ci95.is_none() { Trend::OneSeed } else { Trend::NoTrend };
    Some(TrendFit { slope: est, per: axis.per().into(), p_value, p_adjusted: None, outcome })
}

/// Ordinary least-squares slope of y on x; None with fewer than two distinct x.
pub fn slope(xy: &[(f64, f64)]) -> Option<f64> {
    let n = xy.len() as f64;
    let (mx, my) = (xy.iter().map(|p| p.0).sum::<f64>() / n, xy.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = xy.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = xy.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (xy.len() >= 2 && sxx > 1e-12).then(|| sxy / sxx)
}

/// The lecture's claims the questions' rows name, in the lecture's order, then the questions'.
fn lecture_claims() -> Vec<(&'static str, &'static Claim)> {
    let mut all: Vec<(usize, &'static str, &'static Claim)> = Vec::new();
    for (i, q) in stats::QUESTIONS.iter().enumerate() {
        all.extend(q.claims.iter().map(|c| (i, q.key, c)));
    }
    all.sort_by_key(|&(i, _, c)| (c.lecture, i)); // stable: a question's claims keep their order
    all.into_iter().map(|(_, key, c)| (key, c)).collect()
}

fn claims(series: &[Series]) -> Vec<String> {
    let mut out = Vec::new();
    for (key, c) in lecture_claims() {
        let (meaning, expected, claim) = (c.size, c.expects, c.words);
        for s in series.iter().filter(|s| s.key == key && s.axis.meaning() == meaning) {
            let Some(t) = &s.trend else { continue };
            let what = format!("{} ({} − {})", question_name(&s.key), s.minuend, s.subtrahend);
            let finding = match t.outcome {
                Trend::OneSeed => format!(
                    "{what} has a slope of {:+.4} {} from one seed only: no interval and no verdict (a trend needs \
                     two seeds or more, each with cells at two values or more; run --seeds 3 or more)",
                    t.slope.mean, t.per
                ),
                o => format!(
                    "{what} {} with {meaning}: {:+.4} {} (95 % CI {:+.4} to {:+.4}, adjusted p {})",
                    if o == Trend::NoTrend { "shows no trend" } else { o.as_str() },
                    t.slope.mean,
                    t.per,
                    t.slope.low(),
                    t.slope.high(),
                    t.p_adjusted.map_or("–".into(), stats::show_p)
                ),
            };
            let against = match t.outcome {
                o if o == expected => "as the lecture says",
                Trend::Grows | Trend::Shrinks => "against the lecture",
                Trend::NoTrend => "the lecture's trend is not seen at this many seeds",
                Trend::OneSeed => "undecided",
            };
            let signs = {
                let e: Vec<&Estimate> =
                    s.points.iter().filter_map(|p| p.difference.as_ref()).filter(|e| e.ci95.is_some()).collect();
                let (above, below) =
                    (e.iter().filter(|e| e.low() > 0.0).count(), e.iter().filter(|e| e.high() < 0.0).count());
                format!(
                    "; the difference's interval is above zero at {above} of {} values and below at {below}",
                    e.len()
                )
            };
            out.push(format!("[{}] {finding}{signs}; {against} (\"{claim}\").", s.line));
        }
    }
    // "Controlled fine-tuning usually beats freezing": the freeze cost's sign at each value.
    for s in series.iter().filter(|s| s.key == "freeze_cost") {
        let with_interval: Vec<&Estimate> =
            s.points.iter().filter_map(|p| p.difference.as_ref()).filter(|e| e.ci95.is_some()).collect();
        if with_interval.is_empty() {
            continue;
        }
        let count = |f: &dyn Fn(&Estimate) -> bool| with_interval.iter().filter(|e| f(e)).count();
        out.push(format!(
            "[{}] training the grafted embedding beat freezing it (B − C above zero, unadjusted 95 % interval) at {} \
             of {} {} values, freezing won at {} (\"controlled fine-tuning usually beats freezing\").",
            s.line,
            count(&|e| e.low() > 0.0),
            with_interval.len(),
            s.axis.flag(),
            count(&|e| e.high() < 0.0)
        ));
    }
    out
}

/// Words for a question key (its row's name in a sweep).
fn question_name(key: &str) -> &'static str {
    stats::QUESTIONS.iter().find(|q| q.key == key).and_then(|q| q.followed_as).unwrap_or("the difference")
}

/// How long each cell trained, and, across data sizes, how often it passed over its data.
fn budget(cfg: &ExperimentConfig, groups: &[Group], done: &[(String, Summary)]) -> String {
    let passes: Vec<String> = groups
        .iter()
        .filter_map(|g| {
            let s = &done.iter().find(|(n, _)| *n == g.name)?.1;
            let i = &s.inputs;
            let epochs = (i.steps_per_run * g.cfg.protocol.batch_size) as f64 / i.train_windows.max(1) as f64;
            Some(format!("{}: {} steps, {epochs:.2} epochs", g.name, i.steps_per_run))
        })
        .collect();
    let rule = match (cfg.protocol.train_tokens.as_ref().is_some_and(Sweep::is_sweep), cfg.step_budget()) {
        (true, Some(m)) => format!(
            "every cell trains {m} steps (--max-steps): the same optimisation budget at every data size, so a small \
             training part is passed over more often (and overfitting shows in it)"
        ),
        (true, None) => format!(
            "every cell trains {} epochs (--epochs): the same passes over its data, so a larger training part takes \
             more steps",
            cfg.protocol.epochs
        ),
        (false, _) => "every cell trains on the same data with the same budget".into(),
    };
    format!("{rule}. {}.", passes.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slopes_fit_lines() {
        assert_eq!(slope(&[(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]), Some(2.0));
        assert_eq!(slope(&[(1.0, 1.0)]), None);
        assert_eq!(slope(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }
}
