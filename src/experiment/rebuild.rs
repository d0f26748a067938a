//! `embgraft report DIR`: every result file of a run folder rebuilt from its config.toml, each
//! group's inputs.json and the cells' run files (no donor or corpus needed), each cell checked
//! against the experiment it claims to belong to.

use std::path::Path;

use crate::analysis::summary::Summary;
use crate::config::grid::{grid, groups, Group};
use crate::config::provenance::{self, MadeUnder};
use crate::config::{ExperimentConfig, Letter};
use crate::error::{Error, Result};
use crate::experiment::folder::{self, Mode};
use crate::train::results::{InputSummary, RunResult};
use crate::train::sinks::{cell_file as run_file, checkpoint_file, metrics_rows, METRICS_HEADER};

/// A cell's run file, read with bounds; a damaged one is named with what to do.
pub fn read_run_file(path: &Path) -> Result<RunResult> {
    let text =
        crate::util::read_small(path).map_err(|e| Error::Input(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::Input(format!(
            "{} is corrupt or truncated ({e}); delete it and run that cell again (its --shard, or --resume)",
            path.display()
        ))
    })
}

/// What `embgraft report` found: each group's summary (of the cells present) and the cells
/// missing, named.
pub struct Rebuilt {
    pub groups: Vec<(String, Summary)>,
    pub missing: Vec<String>,
    pub cells: usize,
}

/// Rebuilds every result file of the run folder `dir` (each group's report.md, summary.json,
/// plots and metrics.csv, and the several-groups overview) from its config.toml, inputs.json
/// and the cells' run files: no donor or corpus needed. Cells without a run file are named in
/// `missing` and in each group's report.
pub fn rebuild_report(dir: &Path) -> Result<Rebuilt> {
    let cfg_path = dir.join("config.toml");
    let text = crate::util::read_small(&cfg_path).map_err(|e| {
        Error::Input(format!(
            "{} is not a run folder (cannot read config.toml: {e}); give the --out folder of a compare",
            dir.display()
        ))
    })?;
    let cfg = ExperimentConfig::from_toml(&text).map_err(|e| {
        Error::Input(format!(
            "{} is damaged or not an embgraft config ({e}); restore it from a copy (every shard's is the same)",
            cfg_path.display()
        ))
    })?;
    // Shards may still be running (the report names what they have not finished); while a run
    // or resume writes the folder, the report is refused.
    let _claim = folder::claim(dir, Mode::Shared)?;
    folder::remove_leftovers(dir, &report_owned);
    let all = groups(&cfg);
    let (mut done, mut missing) = (Vec::new(), Vec::new());
    for p in &all {
        let (summary, absent) = rebuild_group(dir, p)?;
        missing.extend(absent);
        if let Some(s) = summary {
            done.push((p.name.clone(), s));
        }
    }
    if all.len() > 1 {
        crate::report::write_overview(dir, &cfg, &done)?;
    }
    let cells = all.iter().map(|p| grid(&p.cfg).len()).sum();
    Ok(Rebuilt { groups: done, missing, cells })
}

/// The files only a report writes (a shard writes cells, config.toml and inputs.json), whose
/// leftovers `report` may clear while shards run.
fn report_owned(name: &str) -> bool {
    !folder::is_cell_file(name) && name != "config.toml" && name != "inputs.json"
}

/// One group's result files from its folder's inputs.json and run files; the summary (None
/// when no shard has started the group) and the group's cells without a run file, named.
fn rebuild_group(dir: &Path, p: &Group) -> Result<(Option<Summary>, Vec<String>)> {
    let sub = if p.name.is_empty() { dir.to_path_buf() } else { dir.join(&p.name) };
    let label = |l: Letter, seed: u64| match p.name.is_empty() {
        true => format!("{l} seed {seed}"),
        false => format!("{} {l} seed {seed}", p.name),
    };
    let grid = grid(&p.cfg);
    folder::remove_leftovers(&sub, &report_owned);
    let info_path = sub.join("inputs.json");
    let Ok(info_text) = crate::util::read_small(&info_path) else {
        let done: Vec<String> = grid
            .iter()
            .filter(|&&(s, l)| run_file(&sub, l, s).exists())
            .map(|&(s, l)| format!("run-{l}-{s}.json"))
            .collect();
        if !done.is_empty() {
            return Err(Error::Input(format!(
                "{} is missing but {} cells have finished ({}); restore it, or resume or rerun one shard to write it \
                 again",
                info_path.display(),
                done.len(),
                done.join(", ")
            )));
        }
        return Ok((None, grid.iter().map(|&(s, l)| format!("{} (not started)", label(l, s))).collect()));
    };
    let info: InputSummary = serde_json::from_str(&info_text).map_err(|e| {
        Error::Input(format!(
            "{} is corrupt ({e}); rerun one shard of that group to write it again",
            info_path.display()
        ))
    })?;
    let (mut runs, mut missing) = (Vec::new(), Vec::new());
    // Every cell must come from this experiment: its settings (config.toml) and its inputs
    // (inputs.json's fingerprints, where the folder has them).
    let expected = MadeUnder {
        fingerprints: info.fingerprints.clone().unwrap_or_default(),
        settings: provenance::settings_of(&p.cfg),
    };
    let mut legacy = false;
    for &(seed, l) in &grid {
        let f = run_file(&sub, l, seed);
        match f.exists() {
            true => {
                let mut r = read_run_file(&f)?;
                match r.made_under.take() {
                    Some(m) => provenance::check_cell(&expected, &m, &format!("run-{l}-{seed}.json"), "config.toml")?,
                    None => legacy = true,
                }
                runs.push(r);
            }
            false if checkpoint_file(&sub, l, seed).exists() => {
                missing.push(format!("{} (unfinished: has a checkpoint)", label(l, seed)))
            }
            false => missing.push(format!("{} (not started)", label(l, seed))),
        }
    }
    if legacy {
        crate::util::say(&format!(
            "note: {} holds cells written by an embgraft without fingerprints; they are reported without checking \
             what made them",
            sub.display()
        ));
    }
    // The runs are in the grid's order, as a one-process run appends them.
    let metrics: String = runs.iter().map(|r| metrics_rows(r.config, r.seed, &r.points)).collect();
    let steps_per_epoch = info.train_windows.div_ceil(p.cfg.protocol.batch_size.max(1));
    let summary = Summary {
        embgraft_version: env!("CARGO_PKG_VERSION").to_string(),
        inputs: info,
        analysis: crate::analysis::stats::analyse(&runs, steps_per_epoch),
        wall_seconds: runs.iter().map(|r| r.wall_seconds).sum(),
        runs,
        seconds_to_inputs: 0.0,
        seconds_to_first_step: None,
    };
    let note = match missing.is_empty() {
        true => String::new(),
        false => format!(
            "\n## Missing cells\n\nThis report covers {} of {} cells; not finished yet: {}. Rerun `embgraft report` \
             when they are.\n",
            grid.len() - missing.len(),
            grid.len(),
            missing.join(", ")
        ),
    };
    crate::report::write_all_with(&sub, &p.cfg, &summary, &note)?;
    crate::util::write_atomic(&sub.join("metrics.csv"), format!("{METRICS_HEADER}{metrics}").as_bytes())?;
    Ok((Some(summary), missing))
}
