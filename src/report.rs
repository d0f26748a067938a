//! The run folder's report: `summary.json`, `loss-curves.svg`/`.png` and `report.md`.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use crate::baseline::Bigram;
use crate::config::{ExperimentConfig, Letter};
use crate::error::{Error, Result};
use crate::results::RunResult;
use crate::stats::Estimate;
use crate::summary::Summary;

use crate::util::write_atomic;

/// The font the PNG's text is drawn with, carried by the build (no system fonts needed).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

pub fn write_all(out: &Path, cfg: &ExperimentConfig, s: &Summary) -> Result<()> {
    write_all_with(out, cfg, s, "")
}

/// Text is measured with the carried font for the SVG too, so it is registered before any
/// drawing.
pub(crate) fn register_font() {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// As [`write_all`], with `extra` (markdown) at the end of report.md.
pub fn write_all_with(out: &Path, cfg: &ExperimentConfig, s: &Summary, extra: &str) -> Result<()> {
    register_font();
    let json = serde_json::to_string_pretty(s).map_err(|e| Error::Output(e.to_string()))?;
    write_atomic(&out.join("summary.json"), json.as_bytes())?;
    let curves = mean_curves(&s.runs);
    let refs = &s.inputs.bigram;
    let mut thaws: Vec<usize> = s.runs.iter().flat_map(|r| r.thaws.iter().map(|t| t.step)).collect();
    thaws.sort_unstable();
    thaws.dedup();
    write_atomic(&out.join("loss-curves.svg"), plot_svg(&curves, refs, cfg, &thaws)?.as_bytes())?;
    png_atomic(&out.join("loss-curves.png"), SIZE, |area| draw(area, &curves, refs, cfg, &thaws))?;
    let drift = drift_table(&s.runs);
    if !drift.is_empty() {
        write_drift_plots(out, &drift)?;
    }
    if s.analysis.comparisons.iter().any(|c| c.over_time.len() > 1) {
        write_answer_plots(out, &s.analysis.comparisons)?;
    }
    write_atomic(&out.join("report.md"), format!("{}{extra}", markdown(cfg, s, &drift)).as_bytes())?;
    Ok(())
}

/// One curve point over seeds: step, train and test loss as mean with interval.
struct CurvePoint {
    step: f64,
    train: Estimate,
    test: Estimate,
    train_eval: Option<Estimate>,
}

/// Per config, the curve over the seeds that reached each step.
type Curves = BTreeMap<Letter, Vec<CurvePoint>>;

fn mean_curves(runs: &[RunResult]) -> Curves {
    // config -> step -> (train losses, test losses) over seeds
    type Samples = BTreeMap<usize, (Vec<f64>, Vec<f64>, Vec<f64>)>;
    let mut acc: BTreeMap<Letter, Samples> = BTreeMap::new();
    for r in runs {
        // A diverging run's last points can be infinite: they have no place on the axes.
        for p in r.points.iter().filter(|p| p.train_loss.is_finite() && p.test_loss.is_finite()) {
            let e = acc.entry(r.config).or_default().entry(p.step).or_default();
            e.0.push(p.train_loss);
            e.1.push(p.test_loss);
            e.2.extend(p.train_eval_loss);
        }
    }
    acc.into_iter()
        .map(|(l, pts)| {
            let curve = pts
                .into_iter()
                .filter_map(|(s, (a, b, c))| {
                    let (train, test, train_eval) = (Estimate::of(&a)?, Estimate::of(&b)?, Estimate::of(&c));
                    Some(CurvePoint { step: s as f64, train, test, train_eval })
                })
                .collect();
            (l, curve)
        })
        .collect()
}

fn colour(l: Letter) -> RGBColor {
    let (r, g, b) = l.colour();
    RGBColor(r, g, b)
}

/// Every config's train (solid) and test (dashed) curve on one shared y-axis, with the legend
/// in its own column so it never hides a curve.
fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    curves: &Curves,
    refs: &Bigram,
    cfg: &ExperimentConfig,
    thaws: &[usize],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| Error::Output(format!("plot: {e}"));
    root.fill(&WHITE).map_err(err)?;
    // The legend column grows with the longest configuration label (Model 5's name patterns).
    let longest = curves.keys().map(|&l| format!("{l}: {}", cfg.describe(l)).chars().count()).max().unwrap_or(0);
    let legend_width = (60 + 8 * longest as u32).clamp(250, 460);
    let (plot_area, legend_area) = root.split_horizontally(SIZE.0 - legend_width);
    let finite = curves
        .values()
        .flatten()
        .flat_map(|p| [p.train.low(), p.train.high(), p.test.low(), p.test.high()])
        .chain([refs.train_entropy, refs.test_loss])
        .filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let pad = ((hi - lo) * 0.08).max(0.05);
    let max_step = curves.values().flatten().map(|p| p.step).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(format!("{} loss, {} split", model_name(cfg), cfg.protocol.split), ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0.0..max_step * 1.02, (lo - pad)..(hi + pad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("optimizer step")
        .y_desc("loss (mean NLL, nats)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(err)?;
    for (&l, pts) in curves {
        let c = colour(l);
        // With several seeds, a shaded 95 % band around each mean curve.
        for pick in [|p: &CurvePoint| p.train, |p: &CurvePoint| p.test] {
            if pts.len() > 1 && pts.iter().all(|p| pick(p).ci95.is_some()) {
                let upper = pts.iter().map(|p| (p.step, pick(p).high()));
                let lower = pts.iter().rev().map(|p| (p.step, pick(p).low()));
                chart
                    .draw_series(std::iter::once(Polygon::new(
                        upper.chain(lower).collect::<Vec<_>>(),
                        c.mix(0.15).filled(),
                    )))
                    .map_err(err)?;
            }
        }
        chart
            .draw_series(LineSeries::new(pts.iter().map(|p| (p.step, p.train.mean)), c.stroke_width(2)))
            .map_err(err)?;
        chart
            .draw_series(DashedLineSeries::new(pts.iter().map(|p| (p.step, p.test.mean)), 8, 5, c.stroke_width(2)))
            .map_err(err)?;
        chart.draw_series(pts.iter().map(|p| Circle::new((p.step, p.test.mean), 3, c.filled()))).map_err(err)?;
        let like_test: Vec<(f64, f64)> = pts.iter().filter_map(|p| Some((p.step, p.train_eval?.mean))).collect();
        chart.draw_series(DashedLineSeries::new(like_test, 2, 4, c.stroke_width(2))).map_err(err)?;
    }
    // The count-based references, across the whole x range.
    let grey = RGBColor(110, 110, 110);
    let x_end = max_step * 1.02;
    chart
        .draw_series(LineSeries::new([(0.0, refs.train_entropy), (x_end, refs.train_entropy)], grey.stroke_width(1)))
        .map_err(err)?;
    chart
        .draw_series(DashedLineSeries::new(
            [(0.0, refs.test_loss), (x_end, refs.test_loss)],
            8,
            5,
            grey.stroke_width(1),
        ))
        .map_err(err)?;

    // Where frozen parameters started training.
    let (y0, y1) = (lo - pad, hi + pad);
    for &t in thaws {
        let x = t as f64;
        chart
            .draw_series(DashedLineSeries::new([(x, y0), (x, y1)], 3, 3, BLACK.mix(0.6).stroke_width(1)))
            .map_err(err)?;
    }

    let text = ("sans-serif", 16).into_font();
    let mut y = 60;
    for &l in curves.keys() {
        let c = colour(l);
        legend_area.draw(&PathElement::new(vec![(10, y), (40, y)], c.stroke_width(3))).map_err(err)?;
        legend_area.draw(&Text::new(format!("{l}: {}", cfg.describe(l)), (48, y - 8), text.clone())).map_err(err)?;
        y += 26;
    }
    if !thaws.is_empty() {
        legend_area
            .draw(&PathElement::new(vec![(25, y - 9), (25, y + 9)], BLACK.mix(0.6).stroke_width(1)))
            .map_err(err)?;
        legend_area.draw(&Text::new("thaw: frozen parts train", (48, y - 8), text.clone())).map_err(err)?;
        y += 26;
    }
    y += 14;
    legend_area.draw(&PathElement::new(vec![(10, y), (40, y)], BLACK.stroke_width(2))).map_err(err)?;
    legend_area.draw(&Text::new("train (batch mean)", (48, y - 8), text.clone())).map_err(err)?;
    y += 26;
    for x in [10, 24] {
        legend_area.draw(&PathElement::new(vec![(x, y), (x + 9, y)], BLACK.stroke_width(2))).map_err(err)?;
    }
    legend_area.draw(&Text::new("test (after step)", (48, y - 8), text.clone())).map_err(err)?;
    y += 26;
    for x in [10, 17, 24, 31] {
        legend_area.draw(&PathElement::new(vec![(x, y), (x + 2, y)], BLACK.stroke_width(2))).map_err(err)?;
    }
    legend_area.draw(&Text::new("train (evaluated as test)", (48, y - 8), text.clone())).map_err(err)?;
    y += 26;
    legend_area.draw(&Rectangle::new([(10, y - 6), (40, y + 6)], BLACK.mix(0.15).filled())).map_err(err)?;
    legend_area.draw(&Text::new("95 % CI over seeds", (48, y - 8), text.clone())).map_err(err)?;
    y += 40;
    let grey = RGBColor(110, 110, 110);
    legend_area.draw(&PathElement::new(vec![(10, y), (40, y)], grey.stroke_width(1))).map_err(err)?;
    legend_area.draw(&Text::new("train floor H(next|cur)", (48, y - 8), text.clone())).map_err(err)?;
    y += 26;
    for x in [10, 24] {
        legend_area.draw(&PathElement::new(vec![(x, y), (x + 9, y)], grey.stroke_width(1))).map_err(err)?;
    }
    legend_area.draw(&Text::new("add-k bigram, test", (48, y - 8), text)).map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

const SIZE: (u32, u32) = (1000, 620);

/// Per trainable grafted config: per bucket (tokens, mean L2, mean cosine, mean norm ratio)
/// averaged over seeds, and the unseen rows' (expected ratio, worst deviation).
type DriftTable = BTreeMap<Letter, (Vec<(String, usize, f64, f64, f64)>, f64, f64)>;

fn drift_table(runs: &[RunResult]) -> DriftTable {
    let mut out = DriftTable::new();
    let mut letters: Vec<Letter> = runs.iter().filter(|r| r.drift.is_some()).map(|r| r.config).collect();
    letters.dedup();
    for l in letters {
        let ds: Vec<&crate::drift::Drift> =
            runs.iter().filter(|r| r.config == l).filter_map(|r| r.drift.as_ref()).collect();
        let n = ds.len() as f64;
        let rows = (0..ds[0].buckets.len())
            .map(|k| {
                let mean =
                    |f: fn(&crate::drift::DriftBucket) -> f64| ds.iter().map(|d| f(&d.buckets[k])).sum::<f64>() / n;
                let b = &ds[0].buckets[k];
                (b.bucket.clone(), b.tokens, mean(|b| b.mean_l2), mean(|b| b.mean_cosine), mean(|b| b.mean_norm_ratio))
            })
            .collect();
        let worst = ds.iter().map(|d| d.unseen_max_deviation).fold(0.0, f64::max);
        out.insert(l, (rows, ds[0].unseen_expected_ratio, worst));
    }
    out
}

/// Grouped bars: mean distance moved from the grafted rows, per frequency bucket and config.
fn draw_drift<DB: DrawingBackend>(root: DrawingArea<DB, plotters::coord::Shift>, table: &DriftTable) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| Error::Output(format!("drift plot: {e}"));
    root.fill(&WHITE).map_err(err)?;
    let top =
        table.values().flat_map(|(rows, _, _)| rows.iter().map(|r| r.2)).filter(|v| v.is_finite()).fold(1e-6, f64::max);
    let names: Vec<String> = crate::drift::BUCKETS.iter().map(|b| b.0.to_string()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption("Embedding drift: mean ||final − grafted|| per row, by training frequency", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..names.len() as f64, 0.0..top * 1.15)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(names.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let k = (x - 0.5).round();
            if (x - 0.5 - k).abs() < 1e-6 && k >= 0.0 {
                names.get(k as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("L2 distance")
        .draw()
        .map_err(err)?;
    let width = 0.8 / table.len().max(1) as f64;
    for (i, (&l, (rows, _, _))) in table.iter().enumerate() {
        let c = colour(l);
        let bars = rows.iter().enumerate().filter(|(_, r)| r.2.is_finite()).map(|(k, r)| {
            let x0 = k as f64 + 0.1 + i as f64 * width;
            Rectangle::new([(x0, 0.0), (x0 + width * 0.9, r.2)], c.filled())
        });
        chart
            .draw_series(bars)
            .map_err(err)?
            .label(format!("{l}: {}", l.describe()))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

fn write_drift_plots(out: &Path, table: &DriftTable) -> Result<()> {
    let size = (760, 460);
    let mut svg = String::new();
    draw_drift(SVGBackend::with_string(&mut svg, size).into_drawing_area(), table)?;
    write_atomic(&out.join("drift.svg"), svg.as_bytes())?;
    png_atomic(&out.join("drift.png"), size, |area| draw_drift(area, table))
}

/// One panel per question: the paired difference of test loss at each curve point, its 95 %
/// band and the zero line, so a reader sees where an answer flips.
fn draw_answers<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    comparisons: &[crate::stats::Comparison],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| Error::Output(format!("answers plot: {e}"));
    root.fill(&WHITE).map_err(err)?;
    let shown: Vec<&crate::stats::Comparison> = comparisons.iter().filter(|c| c.over_time.len() > 1).collect();
    let cols = if shown.len() > 4 { 3 } else { shown.len().clamp(1, 2) };
    let rows = shown.len().div_ceil(cols).max(1);
    let panels = root.split_evenly((rows, cols));
    for (c, area) in shown.iter().zip(panels.iter()) {
        let pts: Vec<(f64, f64, f64, f64)> = c
            .over_time
            .iter()
            .map(|t| (t.step as f64, t.difference.mean, t.difference.low(), t.difference.high()))
            .filter(|p| p.1.is_finite() && p.2.is_finite() && p.3.is_finite())
            .collect();
        let (lo, hi) = pts.iter().fold((0f64, 0f64), |(lo, hi), p| (lo.min(p.2), hi.max(p.3)));
        let pad = ((hi - lo) * 0.1).max(1e-3);
        let x_max = pts.iter().map(|p| p.0).fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{} ({} − {})", c.key, c.minuend, c.subtrahend), ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..x_max, (lo - pad)..(hi + pad))
            .map_err(err)?;
        chart.configure_mesh().x_desc("step").max_light_lines(0).draw().map_err(err)?;
        let colour = RGBColor(31, 119, 180);
        let band: Vec<(f64, f64)> =
            pts.iter().map(|p| (p.0, p.3)).chain(pts.iter().rev().map(|p| (p.0, p.2))).collect();
        chart.draw_series([Polygon::new(band, colour.mix(0.2).filled())]).map_err(err)?;
        chart.draw_series(LineSeries::new(pts.iter().map(|p| (p.0, p.1)), colour.stroke_width(2))).map_err(err)?;
        chart.draw_series(LineSeries::new([(0.0, 0.0), (x_max, 0.0)], BLACK.stroke_width(1))).map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

fn write_answer_plots(out: &Path, comparisons: &[crate::stats::Comparison]) -> Result<()> {
    let n = comparisons.iter().filter(|c| c.over_time.len() > 1).count();
    let cols = if n > 4 { 3 } else { n.clamp(1, 2) } as u32;
    let size = (360 * cols, 260 * (n as u32).div_ceil(cols).max(1));
    let mut svg = String::new();
    draw_answers(SVGBackend::with_string(&mut svg, size).into_drawing_area(), comparisons)?;
    write_atomic(&out.join("answers-over-time.svg"), svg.as_bytes())?;
    png_atomic(&out.join("answers-over-time.png"), size, |area| draw_answers(area, comparisons))
}

/// Draws a PNG into a temporary file beside `path` and renames it into place (through the one
/// atomic writer); a failed drawing leaves no file behind.
fn png_atomic(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<()>,
) -> Result<()> {
    crate::util::write_atomic_with(path, |tmp| draw(BitMapBackend::new(tmp.path(), size).into_drawing_area()))
}

fn plot_svg(curves: &Curves, refs: &Bigram, cfg: &ExperimentConfig, thaws: &[usize]) -> Result<String> {
    let mut svg = String::new();
    draw(SVGBackend::with_string(&mut svg, SIZE).into_drawing_area(), curves, refs, cfg, thaws)?;
    Ok(svg)
}

fn model_name(cfg: &ExperimentConfig) -> &'static str {
    match cfg.model.kind {
        crate::config::ModelKind::Model1 => "Model 1",
        crate::config::ModelKind::Model5 => "Model 5",
    }
}

fn fmt_loss(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.4}"))
}

fn millions(n: usize) -> String {
    format!("{:.2} M", n as f64 / 1e6)
}

/// Appends one line to a section.
fn push(md: &mut String, line: String) {
    md.push_str(&line);
    md.push('\n');
}

/// report.md: one section after another, each written by its own function.
fn markdown(cfg: &ExperimentConfig, s: &Summary, drift: &DriftTable) -> String {
    [
        answers_section(cfg, s),
        configs_section(cfg, s),
        runs_section(cfg, s),
        drift_section(drift),
        controls_section(cfg, s),
        details_section(s),
        samples_section(s),
        setup_section(cfg, s),
    ]
    .concat()
}

/// The title, the curves and the answers, as verdicts on paired differences.
fn answers_section(cfg: &ExperimentConfig, s: &Summary) -> String {
    let mut md = String::new();
    let i = &s.inputs;
    let title = match cfg.model.kind {
        crate::config::ModelKind::Model1 => "Model 1 with a grafted token embedding".to_string(),
        crate::config::ModelKind::Model5 => format!("Model 5 (GPT-style decoder) with grafted parts — {}", i.model),
    };
    push(&mut md, format!("# embgraft report: {title}\n"));
    push(&mut md, "![loss curves](loss-curves.png)\n".into());
    push(&mut md, "## Answers\n".into());
    push(
        &mut md,
        "Differences are of final test loss, paired by seed (same split, batches and initialisation); \
         positive means the first configuration's loss is higher.\n"
            .into(),
    );
    for line in answers(s) {
        push(&mut md, format!("- {line}"));
    }
    push(&mut md, String::new());
    if !s.analysis.comparisons.is_empty() {
        push(
            &mut md,
            format!(
                "Error control: {}. Each line shows the unadjusted 95 % interval beside the adjusted verdict.\n",
                s.analysis.correction
            ),
        );
    }
    md
}

/// Each configuration's final losses over seeds, against the count-based references.
fn configs_section(cfg: &ExperimentConfig, s: &Summary) -> String {
    let mut md = String::new();
    let i = &s.inputs;
    push(&mut md, "## Configurations (mean ± 95 % CI over seeds)\n".into());
    let refs = &i.bigram;
    push(
        &mut md,
        "| config | copied? | frozen? | seeds | final train loss | final train loss, evaluated as test | final test loss | best test loss (mean step) | train-eval − floor | test − bigram |"
            .into(),
    );
    push(&mut md, "|---|---|---|---|---|---|---|---|---|---|".into());
    for c in &s.analysis.configs {
        let show = |e: &Option<crate::stats::Estimate>| e.map_or("–".to_string(), |e| e.show());
        let above = |e: &Option<crate::stats::Estimate>, floor: f64| {
            e.map_or("–".to_string(), |e| format!("{:+.4}", e.mean - floor))
        };
        let seeds = if c.diverged > 0 { format!("{} ({} diverged)", c.runs, c.diverged) } else { c.runs.to_string() };
        push(
            &mut md,
            format!(
                "| {} {}{} | {} | {} | {seeds} | {} | {} | {} | {} | {} | {} |",
                c.config,
                cfg.describe(c.config),
                if c.still_improving.is_some() { " (still improving)" } else { "" },
                if cfg.grafts(c.config) { "yes" } else { "no" },
                if cfg.freezes(c.config) { "yes" } else { "no" },
                show(&c.final_train),
                show(&c.final_train_eval),
                show(&c.final_test),
                match (&c.best_test, c.best_step) {
                    (Some(b), Some(step)) => format!("{} ({step:.0})", b.show()),
                    _ => "–".to_string(),
                },
                above(&c.final_train_eval, refs.train_entropy),
                above(&c.final_test, refs.test_loss)
            ),
        );
    }
    push(&mut md, String::new());
    let floor = match cfg.model.kind {
        crate::config::ModelKind::Model1 => "no Model 1 can get below H(next | current) = {:.4} on the training pairs (the *floor*; Model 1 sees only the current token)",
        crate::config::ModelKind::Model5 => "H(next | current) = {:.4} on the training pairs bounds models that see only the current token; Model 5 attends to the window, so it can go below this *floor*",
    };
    push(
        &mut md,
        format!(
            "References: {}; an add-k bigram table (k = {:.2e}, chosen on training windows only) scores {:.4} on the test split (*bigram*).\n",
            floor.replace("{:.4}", &format!("{:.4}", refs.train_entropy)), refs.k, refs.test_loss
        ),
    );
    md
}

/// One row per run: checks, steps, losses, time; then what the curves mean.
fn runs_section(cfg: &ExperimentConfig, s: &Summary) -> String {
    let mut md = String::new();
    let i = &s.inputs;
    push(&mut md, "## Runs\n".into());
    push(&mut md, "| config | copied? | frozen? | trainable params | steps | final train loss | final test loss | copy check | frozen check | wall time |".into());
    push(&mut md, "|---|---|---|---|---|---|---|---|---|---|".into());
    for r in &s.runs {
        let p = r.final_point();
        let copy = r.copy_check.as_ref().map_or("–".into(), |c| {
            let tensors =
                if r.copy_checks.len() > 1 { format!(" in {} tensors", r.copy_checks.len()) } else { String::new() };
            if c.passed() {
                format!("pass (max Δ {}, {} elements{tensors})", c.max_abs_delta, c.elements)
            } else {
                format!("**FAIL** (max Δ {:e}, {} differ)", c.max_abs_delta, c.differing_bits)
            }
        });
        let frozen = r.frozen_check.as_ref().map_or("–".into(), |f| {
            if f.passed() && !r.thaws.is_empty() {
                let at: Vec<String> = r.thaws.iter().map(|t| t.step.to_string()).collect();
                format!("pass (bit-identical until thawed at step {})", at.join(", "))
            } else if f.passed() {
                "pass (bit-identical)".to_string()
            } else {
                format!("**FAIL** ({} elements changed)", f.changed_elements)
            }
        });
        let steps = match &r.diverged {
            Some(d) => format!("{} (diverged)", d.step),
            None if r.interrupted => format!("{} (interrupted)", r.steps),
            None => r.steps.to_string(),
        };
        push(
            &mut md,
            format!(
                "| {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} s |",
                r.config,
                if cfg.run.seeds > 1 { format!(" seed {}", r.seed) } else { String::new() },
                if r.copied { "yes" } else { "no" },
                if r.frozen { "yes" } else { "no" },
                millions(r.trainable_params),
                steps,
                fmt_loss(p.map(|p| p.train_loss)),
                fmt_loss(p.map(|p| p.test_loss)),
                copy,
                frozen,
                r.wall_seconds
            ),
        );
    }
    push(&mut md, String::new());
    push(&mut md, format!(
        "Curves: *train* (solid) is the mean of the batch losses since the previous point — the course's definition, measured while the model improves, so it can sit above test; \
         *test* (dashed) is the mean over all {} test positions after the step, without gradients; *train, evaluated as test* (dotted) is a fixed set of {} training windows scored exactly like the test set, the like-for-like comparison. \
         The uniform guess scores ln {} = {:.3}.\n",
        i.test_positions, i.test_windows, i.vocab, (i.vocab as f64).ln()
    ));
    md
}

/// How far trainable grafted embeddings moved, by token frequency (empty when none did).
fn drift_section(drift: &DriftTable) -> String {
    let mut md = String::new();
    if !drift.is_empty() {
        push(&mut md, "## Embedding drift (trainable grafted embeddings)\n".into());
        push(&mut md, "![drift](drift.png)\n".into());
        push(&mut md, "Rows grouped by how often the token is an input in the training windows; means over rows, then over seeds.\n".into());
        push(&mut md, "| config | tokens seen | rows | mean ‖final − grafted‖ | mean cosine(final, grafted) | mean ‖final‖ / ‖grafted‖ |".into());
        push(&mut md, "|---|---|---|---|---|---|".into());
        for (l, (rows, _, _)) in drift {
            for (name, n, l2, cos, ratio) in rows {
                push(&mut md, format!("| {l} | {name} | {n} | {l2:.4} | {cos:.4} | {ratio:.6} |"));
            }
        }
        for (l, (_, expected, worst)) in drift {
            push(
                &mut md,
                format!(
                    "\n{l}: rows never seen in training get no gradient, yet AdamW's decoupled weight decay shrinks them to \
                     (1 − lr·wd)^steps = {expected:.6} of their grafted length; measured: within {worst:.1e} of that for every such row."
                ),
            );
        }
        push(&mut md, String::new());
    }
    md
}

/// The matrices the scale controls grafted (Model 1).
fn controls_section(cfg: &ExperimentConfig, s: &Summary) -> String {
    let mut md = String::new();
    let transformed: Vec<String> = s
        .runs
        .iter()
        .filter_map(|r| {
            r.graft.as_ref().filter(|g| g.contains(',')).map(|g| format!("- {} seed {}: {g}", r.config, r.seed))
        })
        .collect();
    if !transformed.is_empty() && cfg.model.kind == crate::config::ModelKind::Model1 {
        push(&mut md, "## Grafted matrices of the controls\n".into());
        transformed.into_iter().for_each(|line| push(&mut md, line));
        push(&mut md, String::new());
    }
    md
}

/// Per configuration (first seed): notes, thaws and each grafted tensor's check.
fn details_section(s: &Summary) -> String {
    let mut md = String::new();
    // Per config (first seed): notes, thaws and each grafted tensor's check.
    let mut seen = Vec::new();
    let mut details = Vec::new();
    for r in &s.runs {
        if seen.contains(&r.config) {
            continue;
        }
        seen.push(r.config);
        for n in &r.notes {
            details.push(format!("- {}: {n}", r.config));
        }
        for t in &r.thaws {
            details.push(format!(
                "- {}: before step {} (epoch {}) thawed {} (AdamW moments start at zero)",
                r.config,
                t.step + 1,
                t.epoch,
                crate::params::summarise_names(&t.params)
            ));
        }
        if r.copy_checks.len() > 1 {
            for c in &r.copy_checks {
                let verdict =
                    if c.passed() { "pass".to_string() } else { format!("**FAIL** ({} differ)", c.differing_bits) };
                details.push(format!(
                    "- {}: copy check `{}`: {verdict}, {} elements, max Δ {}",
                    r.config, c.tensor, c.elements, c.max_abs_delta
                ));
            }
        }
    }
    if !details.is_empty() {
        push(&mut md, "## What was grafted, frozen and thawed\n".into());
        details.into_iter().for_each(|line| push(&mut md, line));
        push(&mut md, String::new());
    }
    md
}

/// The domain, as far as it is measured without the donor's pretraining data: how finely the
/// donor's tokenizer cuts the corpus, how much of the donor's vocabulary it uses, and how much
/// of the test text training never showed.
fn domain_table(done: &[(String, Summary)]) -> String {
    let mut md = String::from(
        "\n## Domain\n\n| group | tokens per word | donor rows the corpus uses | training tokens | donor rows the training part uses | test targets unseen in training |\n|---|---|---|---|---|---|\n",
    );
    for (name, s) in done {
        md.push_str(&format!("| {} |{}\n", if name.is_empty() { "this run" } else { name }, domain_cells(&s.inputs)));
    }
    md.push_str("\nTokens per word: the donor tokenizer's tokens over white-space-separated words. Rows used: distinct token ids over the donor's rows. Unseen: test-window targets whose token no training window holds (only the donor's row can have taught them).\n");
    md
}

fn domain_cells(i: &crate::results::InputSummary) -> String {
    let share = |n: usize| format!("{:.1} % ({n})", 100.0 * n as f64 / i.vocab.max(1) as f64);
    format!(
        " {:.3} | {} | {} | {} | {:.2} % |",
        i.tokens_per_word(),
        share(i.distinct_tokens),
        i.train_tokens,
        share(i.distinct_train_tokens),
        100.0 * i.test_targets_unseen_in_training
    )
}

/// Text sampled from every trained model.
fn samples_section(s: &Summary) -> String {
    let mut md = String::new();
    push(&mut md, "## Sampled text (prompt \"The\", two sentences at most)\n".into());
    for r in &s.runs {
        push(&mut md, format!("- **{}** (seed {}): {}", r.config, r.seed, r.sample.replace('|', "\\|")));
    }
    push(&mut md, String::new());
    md
}

/// What was run, in a table.
fn setup_section(cfg: &ExperimentConfig, s: &Summary) -> String {
    let mut md = String::new();
    let i = &s.inputs;
    push(&mut md, "## Setup\n".into());
    let split_note = match cfg.protocol.split {
        crate::corpus::Split::Windows => "random split of the overlapping windows, as in the course: test windows share text with training windows, so test loss is optimistic",
        crate::corpus::Split::Contiguous => "the first part of the text trains and the last part tests; no window crosses the cut",
    };
    let rows = [
        ("corpus", format!("{} ({} tokens)", i.corpus, i.corpus_tokens)),
        ("tokenizer", i.tokenizer.clone()),
        ("donor", format!("{} → `{}` ({}, {} x {})", i.donor, i.donor_tensor, i.donor_dtype, i.vocab, i.dim)),
        ("unused donor rows", i.unused_donor_rows.to_string()),
        ("split", format!("{} — {split_note}", i.split)),
        (
            "test text seen in training",
            format!(
                "{:.1} % of test-window positions are covered by some training window at the same place in the text",
                100.0 * i.test_positions_seen_in_training
            ),
        ),
        (
            "windows",
            format!(
                "seq-len {}, stride {}: {} train, {} test",
                cfg.protocol.seq_len, cfg.protocol.stride, i.train_windows, i.test_windows
            ),
        ),
        (
            "training part",
            match i.train_tokens_limit {
                Some(n) => format!("its first {n} tokens (--train-tokens); the kept windows cover {}", i.train_tokens),
                None => format!("all of it: {} tokens", i.train_tokens),
            },
        ),
        (
            "domain",
            format!(
                "{:.3} tokens per word; the corpus uses {} donor rows, the training part {}; {:.2} % of test targets never occur in training",
                i.tokens_per_word(),
                i.distinct_tokens,
                i.distinct_train_tokens,
                100.0 * i.test_targets_unseen_in_training
            ),
        ),
        ("training", {
            let o = &cfg.optimizer;
            let length = match cfg.step_budget() {
                Some(m) => format!("{m} steps (--max-steps with --train-tokens: epochs repeat as needed)"),
                None => {
                    let cap = cfg.protocol.max_steps.map_or(String::new(), |m| format!(" capped at {m} steps"));
                    format!("{} epochs{cap}", cfg.protocol.epochs)
                }
            };
            format!(
                "batch {}, {length}, AdamW lr {} wd {} betas ({}, {}) eps {:e}",
                cfg.protocol.batch_size, o.lr, o.weight_decay, o.beta1, o.beta2, o.eps
            )
        }),
        ("model", i.model.clone()),
        ("seeds", format!("{}..{}", cfg.run.seed, cfg.run.seed + cfg.run.seeds as u64 - 1)),
        ("device", cfg.run.device.clone()),
        ("wall time", format!("{:.1} s", s.wall_seconds)),
        (
            "start-up",
            format!(
                "inputs ready after {:.2} s (donor memory-mapped, corpus tokenized); first step done after {}",
                s.seconds_to_inputs,
                s.seconds_to_first_step.map_or("–".into(), |t| format!("{t:.2} s"))
            ),
        ),
    ];
    push(&mut md, "| | |\n|---|---|".into());
    for (k, v) in rows {
        push(&mut md, format!("| {k} | {v} |"));
    }
    push(&mut md, "\nEverything needed to rerun is in `config.toml`; every curve point is in `metrics.csv`; all numbers are in `summary.json`.".into());
    md
}

/// Plain-language answers: the paired comparisons' verdicts, then anything that went wrong.
fn answers(s: &Summary) -> Vec<String> {
    let mut out: Vec<String> = s.analysis.comparisons.iter().map(|c| c.verdict.clone()).collect();
    if out.is_empty() {
        out.push("Run both configurations of a pair (B and C, A and C, D and B) to answer these questions.".into());
    }
    // Configurations still improving, grouped by reason (a quick run gives them all one).
    let mut early: Vec<(String, Vec<String>)> = Vec::new();
    for c in &s.analysis.configs {
        if let Some(why) = &c.still_improving {
            match early.iter_mut().find(|(w, _)| w == why) {
                Some((_, ls)) => ls.push(c.config.to_string()),
                None => early.push((why.clone(), vec![c.config.to_string()])),
            }
        }
    }
    if !early.is_empty() {
        let groups: Vec<String> = early.iter().map(|(why, ls)| format!("{} ({why})", ls.join(", "))).collect();
        out.push(format!(
            "**Still improving**: {}. These verdicts are about early training; a longer run may answer differently.",
            groups.join("; ")
        ));
    }
    for c in &s.analysis.comparisons {
        let f = crate::stats::flips(c);
        if !f.is_empty() {
            let steps: Vec<String> = f.iter().map(|(step, a, b)| format!("{a} → {b} at step {step}")).collect();
            out.push(format!(
                "{} ({} − {}) changed its answer over training: {} (answers-over-time.png).",
                c.key,
                c.minuend,
                c.subtrahend,
                steps.join(", ")
            ));
        }
    }
    for r in &s.runs {
        if let Some(d) = &r.diverged {
            out.push(format!(
                "Run {} seed {} diverged at step {} (last finite loss {}); it is left out of the statistics.",
                r.config,
                r.seed,
                d.step,
                fmt_loss(d.last_finite_loss)
            ));
        }
        if r.interrupted {
            out.push(format!(
                "Run {} seed {} was interrupted at step {}; continue with --resume.",
                r.config, r.seed, r.steps
            ));
        }
    }
    out
}

/// The top-level report of an experiment with several groups (donors, corpora, swept
/// values): the sweep's answers against size (when a setting is swept), each group's inputs
/// and domain, each question's verdict per group side by side, and links to each group's own
/// report.
pub fn write_corpora(out: &Path, cfg: &ExperimentConfig, done: &[(String, Summary)]) -> Result<()> {
    let sweep = (!cfg.sweeps().is_empty()).then(|| crate::sweep::analyse(cfg, &crate::grid::groups(cfg), done));
    let mut md = String::from(match &sweep {
        Some(_) => {
            "# embgraft report: a sweep

"
        }
        None => {
            "# embgraft report: the same experiment with several donors or corpora

"
        }
    });
    let swept: Vec<String> =
        cfg.sweeps().iter().map(|(a, v)| format!("{} {}", a.flag(), crate::config::Sweep::show_all(v))).collect();
    md.push_str(&format!(
        "Donors {}; corpora {}{}; configs {}, {} seeds each. Each group (donor, corpus{}) has its own folder and report; \
         a donor with its own tokenizer reads the corpus its own way (tokens below). Differences are of final test \
         loss, paired by seed; positive means the first configuration's loss is higher.\n",
        cfg.data.donor.join(", "),
        if cfg.data.corpora.is_empty() { "The Time Machine".to_string() } else { cfg.data.corpora.join(", ") },
        if swept.is_empty() { String::new() } else { format!("; swept {}", swept.join(", ")) },
        cfg.graft.configs.0.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(","),
        cfg.run.seeds,
        if swept.is_empty() { "" } else { ", swept values" },
    ));
    if let Some(a) = &sweep {
        crate::sweep::write_plots(out, a)?;
        md.push_str(&crate::sweep::markdown(a, cfg));
    }
    md.push_str(
        "\n## Groups\n\n| group | donor | corpus | tokenizer | tokens | test text seen in training | bigram test loss | report |\n|---|---|---|---|---|---|---|---|\n",
    );
    for (name, s) in done {
        let i = &s.inputs;
        md.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {:.1} % | {:.4} | [{name}/report.md]({name}/report.md) |\n",
            i.donor,
            i.corpus,
            i.tokenizer,
            i.corpus_tokens,
            100.0 * i.test_positions_seen_in_training,
            i.bigram.test_loss
        ));
    }
    md.push_str(&domain_table(done));
    let mut keys: Vec<(String, String)> = Vec::new();
    for (_, s) in done {
        for c in &s.analysis.comparisons {
            let label = format!("{} ({} − {})", c.key, c.minuend, c.subtrahend);
            if !keys.iter().any(|(k, _)| k == &c.key) {
                keys.push((c.key.clone(), label));
            }
        }
    }
    md.push_str("\n## Verdicts side by side\n\n| question |");
    done.iter().for_each(|(name, _)| md.push_str(&format!(" {name} |")));
    md.push_str("\n|---|");
    done.iter().for_each(|_| md.push_str("---|"));
    md.push('\n');
    for (key, label) in &keys {
        md.push_str(&format!("| {label} |"));
        for (_, s) in done {
            let cell = s.analysis.comparisons.iter().find(|c| &c.key == key).map_or("–".to_string(), |c| {
                let d = c.difference.map_or("–".to_string(), |e| e.show());
                format!("{d}: {}", c.finding)
            });
            md.push_str(&format!(" {cell} |"));
        }
        md.push('\n');
    }
    md.push_str("\nEach cell: the paired difference (mean ± unadjusted 95 % CI) and the verdict after Holm's correction over that group's questions; see each group's report for the full sentence.\n");
    let json = serde_json::json!({
        "embgraft_version": env!("CARGO_PKG_VERSION"),
        "pairs": done.iter().map(|(name, s)| serde_json::json!({"name": name, "inputs": &s.inputs, "analysis": &s.analysis})).collect::<Vec<_>>(),
        "sweep": sweep,
    });
    write_atomic(
        &out.join("summary.json"),
        serde_json::to_string_pretty(&json).map_err(|e| Error::Output(e.to_string()))?.as_bytes(),
    )?;
    write_atomic(&out.join("report.md"), md.as_bytes())
}
