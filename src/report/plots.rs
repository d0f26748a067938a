//! The report's plots: every configuration's loss curves with their bands and references, the
//! grafted embedding's drift, and each question's answer over training time.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use crate::analysis::stats::Estimate;
use crate::config::{ExperimentConfig, Letter};
use crate::data::baseline::Bigram;
use crate::error::{Error, Result};
use crate::train::results::RunResult;
use crate::util::write_atomic;

/// The font the PNG's text is drawn with, carried by the build (no system fonts needed).
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Text is measured with the carried font for the SVG too, so it is registered before any
/// drawing.
pub(crate) fn register_font() {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// One curve point over seeds: step, train and test loss as mean with interval.
pub(crate) struct CurvePoint {
    step: f64,
    train: Estimate,
    test: Estimate,
    train_eval: Option<Estimate>,
}

/// Per config, the curve over the seeds that reached each step.
pub(crate) type Curves = BTreeMap<Letter, Vec<CurvePoint>>;

pub(crate) fn mean_curves(runs: &[RunResult]) -> Curves {
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

pub(crate) fn colour(l: Letter) -> RGBColor {
    let (r, g, b) = l.colour();
    RGBColor(r, g, b)
}

/// A drawing failure as the one-line error every plot reports, naming the plot.
pub(crate) fn drawing_error<E: std::error::Error + Send + Sync>(
    plot: &'static str,
) -> impl Fn(DrawingAreaErrorKind<E>) -> Error + Copy {
    move |e| Error::Output(format!("{plot}: {e}"))
}

/// Every config's train (solid) and test (dashed) curve on one shared y-axis, with the legend
/// in its own column so it never hides a curve.
pub(crate) fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    curves: &Curves,
    refs: &Bigram,
    cfg: &ExperimentConfig,
    thaws: &[usize],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = drawing_error::<DB::ErrorType>("plot");
    root.fill(&WHITE).map_err(err)?;
    // The legend column grows with the longest configuration label (Model 5's name patterns).
    let longest = curves.keys().map(|&l| format!("{l}: {}", cfg.describe(l)).chars().count()).max().unwrap_or(0);
    let legend_width = (60 + 8 * longest as u32).clamp(330, 460);
    let (plot_area, legend_area) = root.split_horizontally(SIZE.0 - legend_width);
    let (lo, hi) = y_range(curves);
    let pad = ((hi - lo) * 0.08).max(0.05);
    let max_step = curves.values().flatten().map(|p| p.step).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(format!("{} loss, {} split", cfg.model.kind.row().name, cfg.protocol.split), ("sans-serif", 22))
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
    // The count-based references, across the whole x range, where they fall inside it.
    let grey = RGBColor(110, 110, 110);
    let x_end = max_step * 1.02;
    let (y0, y1) = (lo - pad, hi + pad);
    let inside = |v: f64| v.is_finite() && (y0..=y1).contains(&v);
    if inside(refs.train_entropy) {
        chart
            .draw_series(LineSeries::new(
                [(0.0, refs.train_entropy), (x_end, refs.train_entropy)],
                grey.stroke_width(1),
            ))
            .map_err(err)?;
    }
    if inside(refs.test_loss) {
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, refs.test_loss), (x_end, refs.test_loss)],
                8,
                5,
                grey.stroke_width(1),
            ))
            .map_err(err)?;
    }

    // Where frozen parameters started training.
    for &t in thaws {
        let x = t as f64;
        chart
            .draw_series(DashedLineSeries::new([(x, y0), (x, y1)], 3, 3, BLACK.mix(0.6).stroke_width(1)))
            .map_err(err)?;
    }

    let place = |v: f64| match v {
        v if !v.is_finite() => " (not measured)".to_string(),
        v if v < y0 => format!(" = {v:.2} (below)"),
        v if v > y1 => format!(" = {v:.2} (above)"),
        v => format!(" = {v:.2}"),
    };
    draw_legend(&legend_area, curves, cfg, thaws, [place(refs.train_entropy), place(refs.test_loss)])?;
    root.present().map_err(err)?;
    Ok(())
}

/// The y-range that fits the curves drawn (bands included); a reference outside it is named in
/// the legend instead of stretching the axis until the curves are flat lines.
fn y_range(curves: &Curves) -> (f64, f64) {
    let finite = curves
        .values()
        .flatten()
        .flat_map(|p| {
            let te = p.train_eval.map_or([f64::NAN; 2], |e| [e.low(), e.high()]);
            [p.train.low(), p.train.high(), p.test.low(), p.test.high(), te[0], te[1]]
        })
        .filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo.is_finite() {
        (lo, hi)
    } else {
        (0.0, 1.0)
    }
}

/// The legend column: a line per configuration, then what each line style and band means.
fn draw_legend<DB: DrawingBackend>(
    legend_area: &DrawingArea<DB, plotters::coord::Shift>,
    curves: &Curves,
    cfg: &ExperimentConfig,
    thaws: &[usize],
    [floor_at, bigram_at]: [String; 2],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = drawing_error::<DB::ErrorType>("plot");
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
    legend_area
        .draw(&Text::new(format!("train floor H(next|cur){floor_at}"), (48, y - 8), text.clone()))
        .map_err(err)?;
    y += 26;
    for x in [10, 24] {
        legend_area.draw(&PathElement::new(vec![(x, y), (x + 9, y)], grey.stroke_width(1))).map_err(err)?;
    }
    legend_area.draw(&Text::new(format!("add-k bigram, test{bigram_at}"), (48, y - 8), text)).map_err(err)?;
    Ok(())
}

pub(crate) const SIZE: (u32, u32) = (1000, 620);

/// Per trainable grafted config: per bucket (tokens, mean L2, mean cosine, mean norm ratio)
/// averaged over seeds, and the unseen rows' (expected ratio, worst deviation).
pub(crate) type DriftTable = BTreeMap<Letter, (Vec<(String, usize, f64, f64, f64)>, f64, f64)>;

pub(crate) fn drift_table(runs: &[RunResult]) -> DriftTable {
    let mut out = DriftTable::new();
    let mut letters: Vec<Letter> = runs.iter().filter(|r| r.drift.is_some()).map(|r| r.config).collect();
    letters.dedup();
    for l in letters {
        let ds: Vec<&crate::train::drift::Drift> =
            runs.iter().filter(|r| r.config == l).filter_map(|r| r.drift.as_ref()).collect();
        let n = ds.len() as f64;
        let rows = (0..ds[0].buckets.len())
            .map(|k| {
                let mean = |f: fn(&crate::train::drift::DriftBucket) -> f64| {
                    ds.iter().map(|d| f(&d.buckets[k])).sum::<f64>() / n
                };
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
    let err = drawing_error::<DB::ErrorType>("drift plot");
    root.fill(&WHITE).map_err(err)?;
    let top =
        table.values().flat_map(|(rows, _, _)| rows.iter().map(|r| r.2)).filter(|v| v.is_finite()).fold(1e-6, f64::max);
    let names: Vec<String> = crate::train::drift::BUCKETS.iter().map(|b| b.0.to_string()).collect();
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

pub(crate) fn write_drift_plots(out: &Path, table: &DriftTable) -> Result<()> {
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
    comparisons: &[crate::analysis::stats::Comparison],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = drawing_error::<DB::ErrorType>("answers plot");
    root.fill(&WHITE).map_err(err)?;
    let shown: Vec<&crate::analysis::stats::Comparison> =
        comparisons.iter().filter(|c| c.over_time.len() > 1).collect();
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

pub(crate) fn write_answer_plots(out: &Path, comparisons: &[crate::analysis::stats::Comparison]) -> Result<()> {
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
pub(crate) fn png_atomic(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<()>,
) -> Result<()> {
    crate::util::write_atomic_with(path, |tmp| draw(BitMapBackend::new(tmp.path(), size).into_drawing_area()))
}

pub(crate) fn plot_svg(curves: &Curves, refs: &Bigram, cfg: &ExperimentConfig, thaws: &[usize]) -> Result<String> {
    let mut svg = String::new();
    draw(SVGBackend::with_string(&mut svg, SIZE).into_drawing_area(), curves, refs, cfg, thaws)?;
    Ok(svg)
}

/// The donor questions as a forest plot: one row per question, each seed's difference as a
/// dot, the mean with its 95 % interval as a bar, and zero marked.
fn draw_donors<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    qs: &[crate::analysis::donors::DonorQuestion],
) -> Result<()> {
    let err = drawing_error::<DB::ErrorType>("donor questions plot");
    root.fill(&WHITE).map_err(err)?;
    let values = qs.iter().flat_map(|q| {
        let e = q.difference.iter().flat_map(|e| [e.low(), e.high()]);
        q.per_seed.iter().map(|d| d.1).chain(e).collect::<Vec<_>>()
    });
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((0f64, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let pad = ((hi - lo) * 0.1).max(1e-3);
    let n = qs.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption("graft benefit under the first group − under the second (nats)", ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(10)
        .build_cartesian_2d((lo - pad)..(hi + pad), -0.5..(n - 0.5))
        .map_err(err)?;
    chart.configure_mesh().disable_y_mesh().y_labels(0).max_light_lines(0).draw().map_err(err)?;
    chart.draw_series(LineSeries::new([(0.0, -0.5), (0.0, n - 0.5)], BLACK.stroke_width(1))).map_err(err)?;
    for (k, q) in qs.iter().enumerate() {
        let y = n - 1.0 - k as f64;
        let c = colour(q.config);
        chart.draw_series(q.per_seed.iter().map(|d| Circle::new((d.1, y), 3, c.mix(0.5).filled()))).map_err(err)?;
        if let Some(e) = q.difference {
            chart.draw_series([PathElement::new(vec![(e.low(), y), (e.high(), y)], c.stroke_width(3))]).map_err(err)?;
            chart.draw_series([Circle::new((e.mean, y), 5, c.filled())]).map_err(err)?;
        }
        let label = format!("{}: {} vs {}", q.config, q.first, q.second);
        chart
            .draw_series([Text::new(label, (lo - pad * 0.9, y + 0.3), ("sans-serif", 13).into_font())])
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// donor-questions.png and .svg beside the overview.
pub(crate) fn write_donor_plots(out: &Path, qs: &[crate::analysis::donors::DonorQuestion]) -> Result<()> {
    register_font();
    let size = (720, 90 + 46 * qs.len() as u32);
    let mut svg = String::new();
    draw_donors(SVGBackend::with_string(&mut svg, size).into_drawing_area(), qs)?;
    write_atomic(&out.join("donor-questions.svg"), svg.as_bytes())?;
    png_atomic(&out.join("donor-questions.png"), size, |area| draw_donors(area, qs))
}
