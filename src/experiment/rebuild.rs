//! `embgraft report DIR`: every result file of a run folder rebuilt from its config.toml, each
//! group's inputs.json and the cells' run files (no donor or corpus needed), each cell checked
//! against the experiment it claims to belong to.

use std::path::Path;

use crate::analysis::summary::Summary;
use crate::config::grid::{grid, groups, Group};
use crate::config::provenance::{self, CellId, MadeUnder, Stamp};
use crate::config::{ExperimentConfig, Letter};
use crate::error::{Error, Result};
use crate::experiment::folder::{self, Mode};
use crate::train::results::{InputSummary, RunResult};
use crate::train::sinks::{cell_file as run_file, checkpoint_file, metrics_rows, weights_file, METRICS_HEADER};

/// A cell's run file, read with bounds and its checksum verified; a damaged one is named with
/// what to do.
pub fn read_run_file(path: &Path) -> Result<RunResult> {
    let text =
        crate::util::read_small(path).map_err(|e| Error::Input(format!("cannot read {}: {e}", path.display())))?;
    let damaged = |why: String| {
        Error::Input(format!(
            "{} is {why}; delete it and run that cell again (its --shard, or --resume)",
            path.display()
        ))
    };
    let r: RunResult = serde_json::from_str(&text).map_err(|e| damaged(format!("corrupt or truncated ({e})")))?;
    match &r.blake3 {
        Some(sum) if *sum != r.checksum() => Err(damaged("damaged: its checksum does not match its contents".into())),
        _ => Ok(r),
    }
}

/// What a folder asks of the cells it holds: that they were made under `made`, are the cells
/// their names say (in group `group`), and, where the folder records fingerprints
/// (`strict`), that each carries a complete record of what made it and its checksum. Only a
/// folder without fingerprints anywhere (an older embgraft's) takes cells without a record.
pub struct Expected<'a> {
    pub made: &'a MadeUnder,
    pub group: &'a str,
    pub strict: bool,
}

impl Expected<'_> {
    /// Checks what a cell's file says of itself (`stamp`) against this folder; `want` is the
    /// cell its name says. `legacy` is set for a file with no record (allowed only when not
    /// strict). A checkpoint `must_seal`: every embgraft that fingerprints wrote a checksum in it.
    fn accept(&self, stamp: Stamp, want: &CellId, file: &str, must_seal: bool, legacy: &mut bool) -> Result<()> {
        let damaged = |why: &str| Error::Input(format!("{file} is damaged: {why}; delete it to run that cell again"));
        if let Some(c) = &stamp.cell {
            c.check(want, file)?;
        }
        if !stamp.sealed && (stamp.cell.is_some() || (self.strict && must_seal)) {
            return Err(damaged("its checksum is missing"));
        }
        match stamp.made {
            Some(m) => {
                if self.strict {
                    provenance::check_complete(&self.made.fingerprints, &m, file)?;
                }
                provenance::check_cell(self.made, &m, file, "config.toml")
            }
            None if self.strict => {
                Err(damaged("it has no record of what made it, in a folder that records it for every cell"))
            }
            None => {
                *legacy = true;
                Ok(())
            }
        }
    }

    fn cell(&self, letter: Letter, seed: u64) -> CellId {
        CellId { group: self.group.to_string(), config: letter, seed }
    }

    /// The finished cell `letter`-`seed` from its run file, verified; its record of what made
    /// it and which cell it is are taken off (the report states them once).
    pub fn run_file(&self, path: &Path, letter: Letter, seed: u64, legacy: &mut bool) -> Result<RunResult> {
        let mut r = read_run_file(path)?;
        let file = file_name(path);
        let want = self.cell(letter, seed);
        let stamp = Stamp { made: r.made_under.take(), cell: r.cell.take(), sealed: r.blake3.take().is_some() };
        // Run files of every version say their configuration and seed.
        CellId {
            group: stamp.cell.as_ref().map_or(self.group, |c| c.group.as_str()).into(),
            config: r.config,
            seed: r.seed,
        }
        .check(&want, &file)?;
        self.accept(stamp, &want, &file, false, legacy)?;
        Ok(r)
    }

    /// The cell `letter`-`seed`'s saved weights (`--save-weights`), verified the same way.
    pub fn weights(&self, path: &Path, letter: Letter, seed: u64) -> Result<crate::train::weights::Saved> {
        let (saved, stamp) = crate::train::weights::open(path)?;
        self.accept(stamp, &self.cell(letter, seed), &file_name(path), true, &mut false)?;
        Ok(saved)
    }

    /// The unfinished cell `letter`-`seed` from its checkpoint, verified the same way.
    pub fn checkpoint(
        &self,
        path: &Path,
        letter: Letter,
        seed: u64,
        legacy: &mut bool,
    ) -> Result<crate::train::checkpoint::Checkpoint> {
        let (c, stamp) = crate::train::checkpoint::load(path)?;
        self.accept(stamp, &self.cell(letter, seed), &file_name(path), true, legacy)?;
        Ok(c)
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Whether the folder `dir` records fingerprints (its config.toml's `[fingerprints]`, or its
/// inputs.json's): then every cell in it must carry a complete record.
pub fn records_fingerprints(dir: &Path) -> bool {
    let in_config = crate::util::read_small(&dir.join("config.toml"))
        .ok()
        .and_then(|t| provenance::recorded(&t))
        .is_some_and(|p| !p.settings.is_empty());
    let in_inputs = || {
        crate::util::read_small(&dir.join("inputs.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<InputSummary>(&t).ok())
            .is_some_and(|i| i.fingerprints.is_some())
    };
    in_config || in_inputs()
}

/// A config.toml read for a resume or a report is checked against the fingerprint written
/// with it. An edit is named by the first cell that was made with another value where one is
/// there to tell; otherwise the file is named as edited.
pub fn check_saved_settings(dir: &Path, cfg: &ExperimentConfig) -> Result<()> {
    let path = dir.join("config.toml");
    let Ok(text) = crate::util::read_small(&path) else { return Ok(()) };
    let saved = ExperimentConfig::from_toml(&text).unwrap_or_else(|_| cfg.clone());
    let Err(edited) = provenance::check_config_toml(&text, &saved, &path) else { return Ok(()) };
    for p in groups(cfg) {
        let sub = if p.name.is_empty() { dir.to_path_buf() } else { dir.join(&p.name) };
        let expected = MadeUnder { fingerprints: Default::default(), settings: provenance::settings_of(&p.cfg) };
        for (seed, l) in grid(&p.cfg) {
            let (run, ckpt) = (run_file(&sub, l, seed), checkpoint_file(&sub, l, seed));
            let made = match (run.is_file(), ckpt.is_file()) {
                (true, _) => read_run_file(&run).ok().and_then(|r| r.made_under).map(|m| (m, run)),
                (false, true) => {
                    crate::train::checkpoint::load(&ckpt).ok().and_then(|(_, s)| s.made).map(|m| (m, ckpt))
                }
                _ => None,
            };
            if let Some((m, f)) = made {
                provenance::check_cell(&expected, &m, &file_name(&f), "config.toml")?;
            }
        }
    }
    Err(edited)
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
    check_saved_settings(dir, &cfg)?;
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
    !folder::is_cell_file(name) && !folder::is_bookkeeping(name) && name != "config.toml" && name != "inputs.json"
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
            .map(|&(s, l)| crate::train::sinks::CellFile::Run.name(l, s))
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
    let made = MadeUnder {
        fingerprints: info.fingerprints.clone().unwrap_or_default(),
        settings: provenance::settings_of(&p.cfg),
    };
    let expected = Expected { made: &made, group: &p.name, strict: records_fingerprints(&sub) };
    let mut legacy = false;
    for &(seed, l) in &grid {
        let f = run_file(&sub, l, seed);
        match f.exists() {
            true => {
                runs.push(expected.run_file(&f, l, seed, &mut legacy)?);
                let w = weights_file(&sub, l, seed);
                if w.exists() {
                    expected.weights(&w, l, seed)?;
                }
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
