//! A sweep in the overview report: the lecture's claims and the paired differences by size as
//! markdown, and one panel per question and swept setting as SVG and PNG.

use std::path::Path;

use plotters::prelude::*;

use crate::analysis::sweep::{Series, SweepAnalysis};
use crate::config::{Axis, ExperimentConfig, Sweep};
use crate::error::Result;
use crate::report::plots::drawing_error;

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
            "**One seed**: no bands, no trend intervals and no verdicts: a slope from one seed cannot be told from \
             seed noise. Run `--seeds 3` or more.\n\n",
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
        "\nA trend is the slope of the paired difference (final test loss, paired by seed) on the logarithm of the \
         swept value, fitted per seed, then averaged over seeds with a 95 % t interval; {}.\n\n",
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
                    t.outcome.to_string(),
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
    let err = drawing_error::<DB::ErrorType>("sweep plot");
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
