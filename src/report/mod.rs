//! The run folder's report: `summary.json`, `loss-curves.svg`/`.png` and `report.md`; for
//! several groups or a sweep, the overview that links them.
//!
//! - [`plots`]: the loss curves, the drift and the answers over training time;
//! - [`markdown`]: report.md's sections;
//! - [`overview`]: the overview report over groups, with a sweep's part from [`sweep`].

pub mod markdown;
pub mod overview;
pub mod plots;
pub mod sweep;
pub mod tables;

pub use crate::report::overview::write_overview;

use std::path::Path;

use crate::analysis::summary::Summary;
use crate::config::ExperimentConfig;
use crate::error::{Error, Result};
use crate::report::markdown::markdown;
use crate::report::plots::{
    draw, drift_table, mean_curves, plot_svg, png_atomic, register_font, write_answer_plots, write_drift_plots, SIZE,
};
use crate::util::write_atomic;

pub fn write_all(out: &Path, cfg: &ExperimentConfig, s: &Summary) -> Result<()> {
    write_all_with(out, cfg, s, "")
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
    crate::report::tables::write(out, cfg, s)?;
    write_atomic(&out.join("report.md"), format!("{}{extra}", markdown(cfg, s, &drift)).as_bytes())?;
    if cfg.run.tensorboard {
        write_verdict_events(&out.join("tensorboard").join("verdicts"), s)?;
    }
    Ok(())
}

/// The report's answers for TensorBoard's text dashboard: one tag per question, at the runs'
/// last step, in a series of their own (written anew with every report).
fn write_verdict_events(dir: &Path, s: &Summary) -> Result<()> {
    let t = crate::tfevents::now();
    let step = s.inputs.steps_per_run;
    let mut events = vec![crate::tfevents::restart(t, 0)];
    for c in &s.analysis.comparisons {
        events.push(crate::tfevents::text(t, step, &format!("verdict/{}", c.key), &c.verdict));
    }
    crate::tfevents::EventFile::create(dir, &events).map(drop)
}
