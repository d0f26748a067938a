//! Sweeps: the questions' paired differences followed across a swept setting (training tokens,
//! Model 5's layers or width), with a trend per series fitted over seeds, and the lecture's
//! "when to freeze" claims checked against those trends.
//!
//! A trend is the slope of a question's paired difference on the logarithm of the swept value,
//! fitted for each seed on its own (every size of a seed shares its initial weights), then
//! summed up over seeds as a mean with a Student-t interval: seeds are the independent
//! replicates, sizes within a seed are not.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::{Axis, ExperimentConfig, Letter, Sweep};
use crate::error::{Error, Result};
use crate::grid::Group;
use crate::stats::{self, Estimate};
use crate::summary::Summary;

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
    pub trend: Option<Trend>,
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
pub struct Trend {
    pub slope: Estimate,
    /// The slope's unit: "per tenfold of training tokens", "per doubling of layers".
    pub per: String,
    pub p_value: Option<f64>,
    /// Holm's adjustment over every trend of the sweep.
    pub p_adjusted: Option<f64>,
    /// `grows`, `shrinks`, `no trend` or `one seed`.
    pub outcome: String,
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
                true if t.slope.mean > 0.0 => "grows",
                true if t.slope.mean < 0.0 => "shrinks",
                _ => "no trend",
            }
            .into();
        }
    }
    let claims = claims(&series);
    SweepAnalysis {
        axes: sweeps.iter().map(|s| s.0).collect(),
        budget: budget(cfg, groups, done),
        correction: format!(
            "a trend's verdict needs its Holm-adjusted p below {} over the sweep's {} trends (one-sample t-test of the per-seed slopes)",
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
        true => g.cfg.data.corpora.first().map_or("timemachine".to_string(), |c| crate::grid::corpus_name(c)),
        false => g.pair.clone(),
    };
    std::iter::once(pair).chain(others).collect::<Vec<_>>().join(", ")
}

/// The per-seed least-squares slopes on log(value), summed up over seeds.
fn trend(points: &[SeriesPoint], axis: Axis) -> Option<Trend> {
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
    let outcome = if est.ci95.is_none() { "one seed" } else { "no trend" };
    Some(Trend { slope: est, per: axis.per().into(), p_value, p_adjusted: None, outcome: outcome.into() })
}

/// Ordinary least-squares slope of y on x; None with fewer than two distinct x.
pub fn slope(xy: &[(f64, f64)]) -> Option<f64> {
    let n = xy.len() as f64;
    let (mx, my) = (xy.iter().map(|p| p.0).sum::<f64>() / n, xy.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = xy.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = xy.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (xy.len() >= 2 && sxx > 1e-12).then(|| sxy / sxx)
}

/// The lecture's claims, each tied to a question and the kind of size it speaks of, and the
/// direction it expects.
const CLAIMS: [(&str, &str, &str, &str); 6] = [
    (
        "freeze_cost",
        "data size",
        "grows",
        "freezing works when the new data is small and hurts when it is large: the freeze cost (B − C) should grow with data size",
    ),
    (
        "freeze_cost",
        "model size",
        "shrinks",
        "freezing works when the model is large: the freeze cost (B − C) should shrink with model size",
    ),
    (
        "freeze_cost_matched",
        "data size",
        "grows",
        "the same with the donor at the random init's scale: the freeze cost (G − H) should grow with data size",
    ),
    (
        "freeze_cost_matched",
        "model size",
        "shrinks",
        "the same with the donor at the random init's scale: the freeze cost (G − H) should shrink with model size",
    ),
    (
        "graft_benefit_trainable",
        "data size",
        "shrinks",
        "a pretrained embedding matters most when the data is small: the graft benefit (A − C) should shrink with data size",
    ),
    (
        "graft_benefit_matched_trainable",
        "data size",
        "shrinks",
        "the same at the random init's scale: the graft benefit (A − H) should shrink with data size",
    ),
];

fn claims(series: &[Series]) -> Vec<String> {
    let mut out = Vec::new();
    for (key, meaning, expected, claim) in CLAIMS {
        for s in series.iter().filter(|s| s.key == key && s.axis.meaning() == meaning) {
            let Some(t) = &s.trend else { continue };
            let what = format!("{} ({} − {})", question_name(&s.key), s.minuend, s.subtrahend);
            let finding = match t.outcome.as_str() {
                "one seed" => format!(
                    "{what} has a slope of {:+.4} {} from one seed only: no interval and no verdict (a trend needs two seeds or more, each with cells at two values or more; run --seeds 3 or more)",
                    t.slope.mean, t.per
                ),
                o => format!(
                    "{what} {} with {meaning}: {:+.4} {} (95 % CI {:+.4} to {:+.4}, adjusted p {})",
                    if o == "no trend" { "shows no trend" } else { o },
                    t.slope.mean,
                    t.per,
                    t.slope.low(),
                    t.slope.high(),
                    t.p_adjusted.map_or("–".into(), stats::show_p)
                ),
            };
            let against = match t.outcome.as_str() {
                o if o == expected => "as the lecture says",
                "grows" | "shrinks" => "against the lecture",
                "no trend" => "the lecture's trend is not seen at this many seeds",
                _ => "undecided",
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
            "[{}] training the grafted embedding beat freezing it (B − C above zero, unadjusted 95 % interval) at {} of {} {} values, freezing won at {} (\"controlled fine-tuning usually beats freezing\").",
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
            "every cell trains {m} steps (--max-steps): the same optimisation budget at every data size, so a small training part is passed over more often (and overfitting shows in it)"
        ),
        (true, None) => format!(
            "every cell trains {} epochs (--epochs): the same passes over its data, so a larger training part takes more steps",
            cfg.protocol.epochs
        ),
        (false, _) => "every cell trains on the same data with the same budget".into(),
    };
    format!("{rule}. {}.", passes.join("; "))
}

/// The sweep's part of the overview report.
pub fn markdown(a: &SweepAnalysis, cfg: &ExperimentConfig) -> String {
    let mut md = String::new();
    let seeds = cfg.run.seeds;
    md.push_str("\n## Sweep: the answers against size\n\n");
    for axis in &a.axes {
        md.push_str(&format!("![{}](sweep-{}.png)\n\n", axis.meaning(), axis.short()));
    }
    md.push_str(&format!("Budget: {}\n\n", a.budget));
    if seeds < 2 {
        md.push_str(
            "**One seed**: no bands, no trend intervals and no verdicts: a slope from one seed cannot be told from seed noise. Run `--seeds 3` or more.\n\n",
        );
    }
    md.push_str("### The lecture's claims\n\n");
    if a.claims.is_empty() {
        md.push_str(match a.series.iter().all(|s| s.trend.is_none()) && !a.series.is_empty() {
            false => "No claim can be checked: they need configs B and C (freeze cost) or A and C (graft benefit).\n",
            true => "No trend yet: a series needs finished cells at two swept values or more.\n",
        });
    }
    for c in &a.claims {
        md.push_str(&format!("- {c}\n"));
    }
    md.push_str(&format!(
        "\nA trend is the slope of the paired difference (final test loss, paired by seed) on the logarithm of the swept value, fitted per seed, then averaged over seeds with a 95 % t interval; {}.\n\n",
        a.correction
    ));
    for axis in &a.axes {
        let series: Vec<&Series> = a.series.iter().filter(|s| s.axis == *axis).collect();
        let Some(first) = series.first() else { continue };
        let values: Vec<usize> = first.points.iter().map(|p| p.value).collect();
        md.push_str(&format!("### Paired differences by {} ({})\n\n| question | line |", axis.short(), axis.flag()));
        values.iter().for_each(|v| md.push_str(&format!(" {} |", Sweep::show(*v))));
        md.push_str(" trend (95 % CI) | verdict |\n|---|---|");
        values.iter().for_each(|_| md.push_str("---|"));
        md.push_str("---|---|\n");
        for s in series {
            md.push_str(&format!("| {} ({} − {}) | {} |", s.key, s.minuend, s.subtrahend, s.line));
            for v in &values {
                let cell =
                    s.points.iter().find(|p| p.value == *v).and_then(|p| p.difference).map_or("–".into(), |e| match e
                        .ci95
                    {
                        Some(h) => format!("{:+.4} ± {h:.4}", e.mean),
                        None => format!("{:+.4}", e.mean),
                    });
                md.push_str(&format!(" {cell} |"));
            }
            let (t, verdict) = match &s.trend {
                Some(t) => (
                    match t.slope.ci95 {
                        Some(_) => format!("{:+.4} ({:+.4} to {:+.4})", t.slope.mean, t.slope.low(), t.slope.high()),
                        None => format!("{:+.4}", t.slope.mean),
                    },
                    t.outcome.clone(),
                ),
                None => ("–".into(), "too few values".into()),
            };
            md.push_str(&format!(" {t} | {verdict} |\n"));
        }
        md.push_str(&format!("\nDifferences: mean ± 95 % half-width over seeds; trend {}.\n\n", axis.per()));
    }
    md
}

/// One PNG and one SVG per swept setting: a panel per question, the paired difference against
/// the value (log axis) with its 95 % band, one line per series.
pub fn write_plots(out: &Path, a: &SweepAnalysis) -> Result<()> {
    for &axis in &a.axes {
        let series: Vec<&Series> = a.series.iter().filter(|s| s.axis == axis && !s.points.is_empty()).collect();
        if series.is_empty() {
            continue;
        }
        let mut keys: Vec<&str> = Vec::new();
        series.iter().for_each(|s| {
            if !keys.contains(&s.key.as_str()) {
                keys.push(&s.key)
            }
        });
        let cols = if keys.len() > 4 { 3 } else { keys.len().clamp(1, 2) };
        let size = (380 * cols as u32, 280 * keys.len().div_ceil(cols) as u32);
        let name = format!("sweep-{}", axis.short());
        let mut svg = String::new();
        draw(SVGBackend::with_string(&mut svg, size).into_drawing_area(), &series, &keys, cols, axis)?;
        crate::util::write_atomic(&out.join(format!("{name}.svg")), svg.as_bytes())?;
        crate::util::write_atomic_with(&out.join(format!("{name}.png")), |tmp| {
            draw(BitMapBackend::new(tmp.path(), size).into_drawing_area(), &series, &keys, cols, axis)
        })?;
    }
    Ok(())
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    series: &[&Series],
    keys: &[&str],
    cols: usize,
    axis: Axis,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| Error::Output(format!("sweep plot: {e}"));
    root.fill(&WHITE).map_err(err)?;
    let panels = root.split_evenly((keys.len().div_ceil(cols), cols));
    let lines: Vec<&str> = {
        let mut l: Vec<&str> = series.iter().map(|s| s.line.as_str()).collect();
        l.dedup();
        l.sort();
        l.dedup();
        l
    };
    for (key, area) in keys.iter().zip(panels.iter()) {
        let mine: Vec<&&Series> = series.iter().filter(|s| s.key == *key).collect();
        let pts = |s: &Series| -> Vec<(f64, f64, f64, f64)> {
            s.points
                .iter()
                .filter_map(|p| p.difference.map(|e| (p.value as f64, e.mean, e.low(), e.high())))
                .filter(|p| p.1.is_finite() && p.2.is_finite() && p.3.is_finite())
                .collect()
        };
        let all: Vec<(f64, f64, f64, f64)> = mine.iter().flat_map(|s| pts(s)).collect();
        if all.is_empty() {
            continue;
        }
        let (lo, hi) = all.iter().fold((0f64, 0f64), |(lo, hi), p| (lo.min(p.2), hi.max(p.3)));
        let pad = ((hi - lo) * 0.1).max(1e-3);
        let (x0, x1) = all.iter().fold((f64::MAX, 0f64), |(a, b), p| (a.min(p.0), b.max(p.0)));
        let (x0, x1) = (x0 / 1.3, x1 * 1.3);
        // Ticks at the swept values themselves.
        let mut ticks: Vec<f64> = all.iter().map(|p| p.0).collect();
        ticks.sort_by(f64::total_cmp);
        ticks.dedup();
        let (m, s) = (mine[0].minuend, mine[0].subtrahend);
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{key} ({m} − {s})"), ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(52)
            .build_cartesian_2d((x0..x1).log_scale().with_key_points(ticks.clone()), (lo - pad)..(hi + pad))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(axis.flag().trim_start_matches("--"))
            .y_desc("Δ final test loss")
            .x_label_formatter(&|v| Sweep::show(v.round() as usize))
            .max_light_lines(0)
            .draw()
            .map_err(err)?;
        for s in &mine {
            let colour = PALETTE[lines.iter().position(|l| *l == s.line).unwrap_or(0) % PALETTE.len()];
            let p = pts(s);
            let band: Vec<(f64, f64)> =
                p.iter().map(|q| (q.0, q.3)).chain(p.iter().rev().map(|q| (q.0, q.2))).collect();
            chart.draw_series([Polygon::new(band, colour.mix(0.18).filled())]).map_err(err)?;
            let drawn = chart
                .draw_series(LineSeries::new(p.iter().map(|q| (q.0, q.1)), colour.stroke_width(2)))
                .map_err(err)?;
            if lines.len() > 1 {
                drawn.label(s.line.clone()).legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour));
            }
            chart.draw_series(p.iter().map(|q| Circle::new((q.0, q.1), 3, colour.filled()))).map_err(err)?;
            // The interval at each value, also where a band cannot be drawn (one value).
            chart
                .draw_series(p.iter().map(|q| PathElement::new([(q.0, q.2), (q.0, q.3)], colour.stroke_width(1))))
                .map_err(err)?;
        }
        chart.draw_series(LineSeries::new([(x0, 0.0), (x1, 0.0)], BLACK.stroke_width(1))).map_err(err)?;
        if lines.len() > 1 {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 11))
                .draw()
                .map_err(err)?;
        }
    }
    root.present().map_err(err)?;
    Ok(())
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
