//! The whole experiment: read every input (so bad input fails before anything is written), run
//! the grid of configurations x seeds, stream metrics, and write the report.

mod device;
pub mod export;
pub mod folder;
pub mod inputs;
pub mod inspect;
pub mod memory;
pub mod rebuild;
mod resume;
mod shard;

pub use device::{device, device_and_why};
use resume::{check_folder_inputs, check_resumed_backend, prior, Prior};
pub use shard::{assign_shards, Shard};
use shard::{check_shared_config, inputs_json, shard_cells, write_once_or_check_config, write_once_or_check_inputs};

use std::path::Path;
use std::time::Instant;

use candle_core::Device;

use crate::analysis::summary::Summary;
pub use crate::config::grid::{corpus_name, grid, groups, Group};
use crate::config::provenance::{self, Fingerprints, MadeUnder};
use crate::config::{ExperimentConfig, Letter};
use crate::data::corpus::Tokenizer;
use crate::data::donor::Embedding;
use crate::error::{Error, Result};
use crate::experiment::folder::Mode;
use crate::experiment::inputs::made_under;
pub use crate::experiment::inputs::{load_inputs, load_inputs_with, Inputs};
pub use crate::experiment::rebuild::{rebuild_report, Rebuilt};
use crate::rng::{stream, Stream};
use crate::train::results::{InputSummary, RunResult};
pub use crate::train::sinks::Progress;
use crate::train::sinks::{cell_file as run_file, checkpoint_file, metrics_rows, weights_file, FanOut};
use crate::train::{self, Observer};
use crate::util::say;

/// Refuses an existing non-empty folder unless `force`. Creates nothing.
pub fn check_out_dir(out: &Path, force: bool) -> Result<()> {
    if out.exists() {
        if !out.is_dir() {
            return Err(Error::Output(format!("--out {} is a file; give a folder path", out.display())));
        }
        if folder::holds_files(out)? && !force {
            return Err(Error::Output(format!(
                "--out {} already holds files; choose another folder or pass --force to overwrite",
                out.display()
            )));
        }
    }
    Ok(())
}

/// Creates the output folder and makes sure it can be written, before hours of training.
pub fn create_out_dir(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| Error::Output(format!("cannot create --out {}: {e}", out.display())))?;
    crate::util::probe_writable(out)
}

/// How `compare` treats the output folder and when it stops.
pub struct Control<'a> {
    /// Write into an existing non-empty folder.
    pub force: bool,
    /// Continue the experiment already in the folder: finished runs are kept, an unfinished
    /// one continues from its last checkpoint.
    pub resume: bool,
    /// Asked before each run and after every step; true stops the experiment (Ctrl-C, a front's
    /// callback that raised).
    pub should_stop: &'a dyn Fn() -> bool,
    /// The donor's embedding in memory (the Python front's array) instead of `--donor`'s file.
    pub donor: Option<&'a Embedding>,
    /// Progress goes here instead of the terminal (a notebook's bar).
    pub progress: Option<&'a dyn Fn(&Progress)>,
    /// Run only this shard's cells of the grid, into a folder other shards share.
    pub shard: Option<Shard>,
}

impl Default for Control<'_> {
    fn default() -> Self {
        Control { force: false, resume: false, should_stop: &|| false, donor: None, progress: None, shard: None }
    }
}

/// Where a group's cells go: its folder, its name (empty for a one-group experiment) and the
/// lock of the run folder it lives in.
struct Place<'a> {
    dir: &'a Path,
    group: &'a str,
    lock: &'a folder::Watch,
}

/// Opens a group's folder for its cells and finds what it already holds, in the grid's order.
/// A shard claims its cells (two tasks never train one, the claims held while it runs) and
/// clears only their leftovers; the folder's one writer clears them all. A resume or a shard
/// takes up what the folder holds (a finished cell is kept, an unfinished one continues from
/// its checkpoint: a requeued or preempted array task), once it is known to be made from these
/// inputs and settings and to be the cell its name says.
fn take_up(
    (cfg, info, made): (&ExperimentConfig, &InputSummary, &MadeUnder),
    place: &Place,
    grid: &[(u64, Letter)],
    resume: bool,
    shard: bool,
) -> Result<(Vec<Prior>, Vec<folder::Claim>)> {
    let out = place.dir;
    create_out_dir(out)?;
    let claims = match shard {
        true => grid.iter().map(|(seed, l)| folder::claim_cell(out, &format!("{l}-{seed}"))).collect::<Result<_>>()?,
        false => Vec::new(),
    };
    let file_name = |p: std::path::PathBuf| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let mine: Vec<String> = grid
        .iter()
        .flat_map(|&(seed, l)| [run_file(out, l, seed), checkpoint_file(out, l, seed), weights_file(out, l, seed)])
        .filter_map(file_name)
        .collect();
    folder::remove_leftovers(out, &|name: &str| !shard || mine.iter().any(|m| m == name));
    // Whether the folder records fingerprints, as it was before this run wrote to it.
    let strict = rebuild::records_fingerprints(out);
    if resume || shard {
        check_folder_inputs(out, info, shard)?;
    }
    if shard {
        write_once_or_check_config(out, cfg, info)?;
        write_once_or_check_inputs(out, info)?;
    }
    let expected = rebuild::Expected { made, group: place.group, strict };
    let mut legacy = false;
    let priors = grid
        .iter()
        .map(|&(seed, letter)| match resume || shard {
            true => prior(out, letter, seed, &expected, &mut legacy),
            false => Ok(Prior::Nothing),
        })
        .collect::<Result<Vec<_>>>()?;
    if legacy {
        say(&format!(
            "note: {} holds cells written by an embgraft without fingerprints; they are taken up without checking \
             what made them",
            out.display()
        ));
    }
    Ok((priors, claims))
}

/// Runs every configuration and seed of `cfg` and writes the run folder `out`. Stopped by
/// `ctl.should_stop`, it writes everything measured so far and returns
/// [`Error::Interrupted`]; `ctl.resume` then continues where it stopped.
pub fn compare(cfg: &ExperimentConfig, out: &Path, ctl: &Control) -> Result<Summary> {
    if groups(cfg).len() > 1 {
        return Err(Error::Input(
            "compare takes one donor, one corpus and no sweep; use compare_groups for several".into(),
        ));
    }
    compare_groups(cfg, out, ctl)?
        .pop()
        .map(|(_, s)| s)
        .ok_or_else(|| Error::Input(format!("no cell of this experiment falls to this shard ({out:?})")))
}

/// The grid of runs on inputs already read and checked: announce the plan, find what a
/// resumed folder already holds, open the folder and its metrics stream, run each cell, and
/// write the results. With `only` (a shard's cells) it runs just those, in a folder other
/// shards share, and writes no report: `embgraft report` builds it from every shard's cells.
fn run_grid(
    cfg: &ExperimentConfig,
    inputs: &Inputs,
    dev: &Device,
    place: &Place,
    ctl: &Control,
    started: Instant,
    only: Option<&[(u64, Letter)]>,
) -> Result<Summary> {
    let out = place.dir;
    let info = inputs.summary(cfg);
    let seconds_to_inputs = started.elapsed().as_secs_f64();
    // A shard's cells come in the grid's order already (see `shard_cells`).
    let grid: Vec<(u64, Letter)> = only.map_or_else(|| grid(cfg), <[_]>::to_vec);
    announce(cfg, &info, inputs.unused_rows, grid.len());
    let made = made_under(cfg, &info);
    let (priors, claims) = take_up((cfg, &info, &made), place, &grid, ctl.resume, only.is_some())?;
    check_resumed_backend(out, &grid, &priors, &crate::train::matmul_of(dev))?;
    let guard = folder::Guard(std::iter::once(place.lock.clone()).chain(claims.iter().map(|c| c.watch())).collect());
    let first_step = std::cell::Cell::new(None);
    let mut sinks =
        open_sinks(place, (cfg, &info, made), (&grid, &priors), ctl, (started, &first_step), guard, only.is_some())?;

    let shared = inputs.shared(dev);
    let mut results = Vec::new();
    let mut stopped = false;
    for (&(seed, letter), prior) in grid.iter().zip(priors) {
        let label = format!("[{}/{}] {letter} ({}) seed {seed}", results.len() + 1, grid.len(), cfg.describe(letter));
        let resume = match prior {
            Prior::Finished(r) => {
                say(&format!("{label} kept from the earlier run"));
                if cfg.run.save_weights && !weights_file(out, letter, seed).exists() {
                    say(&format!(
                        "note: {label} finished without --save-weights, so it has no weights file; rerun it (delete \
                         {}) to keep them",
                        run_file(out, letter, seed).display()
                    ));
                }
                sinks.on_kept((letter, seed), &r)?;
                results.push(*r);
                continue;
            }
            Prior::Checkpoint(c) => {
                say(&format!("{label} continues from its checkpoint at step {}", c.step));
                Some(*c)
            }
            Prior::Nothing => None,
        };
        // A stop asked between runs (a front's callback at a run's end) starts no other.
        if sinks.should_stop() {
            stopped = true;
            break;
        }
        let result = run_cell(cfg, inputs, &shared, (letter, seed), resume, &mut sinks, (&label, info.steps_per_run))?;
        let interrupted = result.interrupted;
        results.push(result);
        if interrupted {
            break;
        }
    }

    let interrupted = stopped || results.last().is_some_and(|r| r.interrupted);
    let summary = Summary {
        embgraft_version: env!("CARGO_PKG_VERSION").to_string(),
        inputs: info,
        analysis: crate::analysis::stats::analyse(&results, train::steps_per_epoch(cfg, inputs.data.train.len())),
        runs: results,
        wall_seconds: started.elapsed().as_secs_f64(),
        seconds_to_inputs,
        seconds_to_first_step: first_step.get(),
    };
    if only.is_none() {
        place.lock.verify()?;
        crate::report::write_all(out, cfg, &summary)?;
    }
    if interrupted {
        return Err(Error::Interrupted(format!(
            "interrupted: results so far are in {}; continue with {} {}",
            out.display(),
            if only.is_some() { "the same --shard, or --resume" } else { "--resume" },
            out.display()
        )));
    }
    Ok(summary)
}

/// A path as the plan line shows it: relative to the working folder when inside it, else its
/// last part (a file with its folder's name): the line names the inputs without printing the
/// machine's layout into notebooks and logs (config.toml and the report keep the full paths).
/// Anything that is not an absolute path (a Hub id, `gpt2`) is shown as it is.
fn shown(text: &str) -> String {
    let path = Path::new(text);
    if !path.is_absolute() {
        return text.to_string();
    }
    if let Some(rel) = std::env::current_dir().ok().and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf)) {
        if !rel.as_os_str().is_empty() {
            return rel.display().to_string();
        }
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| text.to_string());
    match (path.is_file(), path.parent().and_then(Path::file_name)) {
        (true, Some(folder)) => format!("{}/{name}", folder.to_string_lossy()),
        _ => name,
    }
}

/// What will run, on what, before anything does.
fn announce(cfg: &ExperimentConfig, info: &InputSummary, unused_rows: usize, runs: usize) {
    say(&format!(
        "embgraft: {} tokens of {} ({}), donor {} {} [{} x {}], split {}: {} train / {} test windows",
        info.corpus_tokens,
        shown(&info.corpus),
        shown(&info.tokenizer),
        shown(&info.donor),
        info.donor_tensor,
        info.vocab,
        info.dim,
        info.split,
        info.train_windows,
        info.test_windows
    ));
    say(&format!("model: {}", info.model));
    say(&format!(
        "plan: {runs} runs (configs {} x seeds {:?}), {} steps each of batch {}, {} steps in all",
        cfg.graft.configs,
        cfg.seeds(),
        info.steps_per_run,
        cfg.protocol.batch_size,
        info.steps_per_run.saturating_mul(runs)
    ));
    if unused_rows > 0 {
        say(&format!(
            "note: the tokenizer reaches {} of the donor's {} rows; {unused_rows} rows are never used",
            info.vocab - unused_rows,
            info.vocab
        ));
    }
}

/// Trains one cell of the grid (from its checkpoint, if any) and samples its text; the sinks
/// save its result file (unless it was interrupted) and tell the user.
fn run_cell(
    cfg: &ExperimentConfig,
    inputs: &Inputs,
    shared: &train::Shared,
    (letter, seed): (Letter, u64),
    resume: Option<crate::train::checkpoint::Checkpoint>,
    sinks: &mut FanOut,
    (label, steps): (&str, usize),
) -> Result<RunResult> {
    let (earlier_points, earlier_thaws) = resume.as_ref().map_or((&[][..], &[][..]), |c| (&c.points[..], &c.thaws[..]));
    let done = resume.as_ref().map_or(0, |c| c.step);
    sinks.on_start((letter, seed), &train::RunStart { label, done, steps, earlier_points, earlier_thaws });
    let (mut result, model) = train::run(cfg, letter, seed, shared, resume, sinks)?;
    if !result.interrupted {
        let params = model.params();
        let trained = crate::train::weights::Trained {
            params: &params,
            model: crate::train::weights::ModelRecord::of(shared.spec, model.describe()),
            donor: shared.donor_file.map(|d| (d, shared.donor.tensor.as_str())),
        };
        sinks.on_trained((letter, seed), &trained)?;
    }
    result.sample = sample_text(model.as_ref(), &inputs.tokenizer, cfg, seed, letter)?;
    sinks.on_finish((letter, seed), &result)?;
    Ok(result)
}

/// The sinks of one group's cells: metrics.csv (started with what kept cells measured, so a
/// resumed experiment's file equals an uninterrupted one's; none for a shard, whose report
/// `embgraft report` writes), the cells' files and checkpoints, the display and the stop
/// switch. A run's folder also gets its config.toml and inputs.json here (a shard checked
/// them already).
fn open_sinks<'a>(
    place: &Place,
    (cfg, info, made): (&ExperimentConfig, &InputSummary, MadeUnder),
    (grid, priors): (&[(u64, Letter)], &[Prior]),
    ctl: &Control<'a>,
    (started, first_step): (Instant, &'a std::cell::Cell<Option<f64>>),
    guard: folder::Guard,
    shared_folder: bool,
) -> Result<FanOut<'a>> {
    use crate::train::sinks::{CellFiles, Checkpointer, Display, MetricsCsv, StopSwitch, WeightsFiles};
    let out = place.dir;
    // The locks are checked before any other sink writes.
    let mut sinks: Vec<Box<dyn Observer + 'a>> = vec![Box::new(guard)];
    if !shared_folder {
        let prints = info.fingerprints.clone().unwrap_or_default();
        crate::util::write_atomic(&out.join("config.toml"), provenance::config_toml(cfg, &prints).as_bytes())?;
        crate::util::write_atomic(&out.join("inputs.json"), inputs_json(info)?.as_bytes())?;
        let mut head = String::new();
        for (&(seed, letter), p) in grid.iter().zip(priors) {
            match p {
                Prior::Finished(r) => head.push_str(&metrics_rows(letter, seed, &r.points)),
                Prior::Checkpoint(c) => head.push_str(&metrics_rows(letter, seed, &c.points)),
                Prior::Nothing => {}
            }
        }
        sinks.push(Box::new(MetricsCsv::start(out.join("metrics.csv"), &head)?));
    }
    let group = place.group.to_string();
    if cfg.run.save_weights {
        sinks.push(Box::new(WeightsFiles { out: out.to_path_buf(), made: made.clone(), group: group.clone() }));
    }
    sinks.push(Box::new(CellFiles { out: out.to_path_buf(), made: made.clone(), group: group.clone() }));
    sinks.push(Box::new(Checkpointer::new(out.to_path_buf(), made, group, cfg.run.checkpoint_every.0)));
    if cfg.run.tensorboard {
        let root = out.join("tensorboard");
        crate::train::tensorboard::check_root(&root)?;
        sinks.push(Box::new(crate::train::tensorboard::TensorBoard::new(root)));
    }
    sinks.push(Box::new(Display::new(ctl.progress, started, first_step)));
    sinks.push(Box::new(StopSwitch(ctl.should_stop)));
    Ok(FanOut(sinks))
}

/// Runs the experiment for every group (each (donor, corpus) pair at each swept value), each
/// into its own subfolder of `out` (see [`groups`]), then writes a top-level report that puts
/// the verdicts side by side (and a sweep's answers against size). One group is a plain
/// [`compare`] into `out`. With `ctl.shard`, only that shard's cells run and
/// no report is written (`embgraft report` merges the shards).
pub fn compare_groups(cfg: &ExperimentConfig, out: &Path, ctl: &Control) -> Result<Vec<(String, Summary)>> {
    // Paths are saved absolute, so a resume from another working folder reads the same files.
    let cfg = &with_absolute_paths(cfg);
    let all = groups(cfg);
    let started = Instant::now();
    // Said once the inputs are read and checked, so bad input stays a one-line error.
    let (dev, chosen) = device_and_why(&cfg.run.device)?;
    // EMBGRAFT_GEMM / EMBGRAFT_BLAS that cannot be met stop the run here, before anything is written.
    if dev.is_cpu() {
        crate::ops::gemm::blas()?;
    }
    check_out_before_reading(cfg, out, ctl)?;
    // The array stands in for every group's donor: one donor, any number of swept values.
    if all.iter().any(|g| !g.pair.is_empty()) && ctl.donor.is_some() {
        return Err(Error::Input("an in-memory donor runs alone; give one donor".into()));
    }
    let all_inputs = read_every_group(&all, ctl.donor)?;
    check_before_writing(cfg, out, &all, &all_inputs)?;
    if let Some(line) = chosen {
        say(&line);
    }
    let mine: Option<Vec<Vec<(u64, Letter)>>> = ctl.shard.map(|sh| shard_cells(&all, &all_inputs, sh));
    if let (Some(sh), Some(m)) = (ctl.shard, &mine) {
        let cells: usize = m.iter().map(|c| c.len()).sum();
        let cells_all: usize = all.iter().map(|p| grid(&p.cfg).len()).sum();
        say(&format!("shard {sh}: {cells} of the {cells_all} cells"));
    }
    let claim = claim_out(out, ctl)?;
    let watch = claim.watch();
    let _training = Training::begin();
    if all.len() > 1 {
        // The overview's config.toml: the settings' fingerprint (each group's has its inputs').
        let prints = Fingerprints { settings: provenance::settings_fingerprint(cfg), ..Default::default() };
        let text = provenance::config_toml(cfg, &prints);
        match ctl.shard {
            Some(_) => check_shared_config(out, cfg, &text)?,
            None => crate::util::write_atomic(&out.join("config.toml"), text.as_bytes())?,
        }
    }
    let mut done = Vec::new();
    for (i, (p, inputs)) in all.iter().zip(&all_inputs).enumerate() {
        let only = mine.as_ref().map(|m| m[i].as_slice());
        if only.is_some_and(|o| o.is_empty()) {
            continue;
        }
        let sub = if p.name.is_empty() { out.to_path_buf() } else { out.join(&p.name) };
        if !p.name.is_empty() {
            say(&format!(
                "== {} (donor {}, corpus {}) ==",
                p.name,
                p.cfg.data.first_donor(),
                inputs.corpus_path.display()
            ));
        }
        // A group not started before an interruption starts fresh when resuming.
        let resume = ctl.resume && sub.join("config.toml").is_file();
        let sub_ctl = Control { force: true, resume, ..*ctl };
        let start = if p.name.is_empty() { started } else { Instant::now() };
        let place = Place { dir: &sub, group: &p.name, lock: &watch };
        match run_grid(&p.cfg, inputs, &dev, &place, &sub_ctl, start, only) {
            Ok(s) => done.push((p.name.clone(), s)),
            Err(e @ Error::Interrupted(_)) if all.len() > 1 => {
                if ctl.shard.is_none() {
                    crate::report::write_overview(out, cfg, &done)?;
                }
                return Err(Error::Interrupted(format!("{e}; the whole comparison continues the same way")));
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(sh) = ctl.shard {
        say(&format!("shard {sh} done; when every shard is, `embgraft report {}` writes the report", out.display()));
    } else if all.len() > 1 {
        watch.verify()?;
        crate::report::write_overview(out, cfg, &done)?;
    }
    Ok(done)
}

/// `--out` checked for what this invocation does with it, before any input is read: a resume
/// needs an earlier compare's folder with the same settings, a new run an empty folder (or
/// `--force`); shards share theirs.
fn check_out_before_reading(cfg: &ExperimentConfig, out: &Path, ctl: &Control) -> Result<()> {
    if ctl.resume && !out.join("config.toml").is_file() {
        return Err(Error::Input(format!(
            "--resume {}: no config.toml there; give the folder of an earlier compare",
            out.display()
        )));
    }
    if ctl.resume {
        rebuild::check_saved_settings(out, cfg)?;
    }
    if !ctl.resume && ctl.shard.is_none() {
        check_out_dir(out, ctl.force)?;
    }
    Ok(())
}

/// Every group's donor and corpus read and cut before anything is written: bad input leaves no
/// files. A sweep's group is named in the error unless the message starts with its flag.
fn read_every_group(all: &[Group], donor: Option<&Embedding>) -> Result<Vec<Inputs>> {
    all.iter()
        .map(|p| {
            load_inputs_with(&p.cfg, donor).map_err(|e| {
                if p.point.is_empty() || e.to_string().starts_with("--") {
                    e
                } else {
                    e.within(&p.name)
                }
            })
        })
        .collect()
}

/// What can still be refused after the inputs are read and before anything is written: a
/// group's training that cannot fit in memory, a `tensorboard` place that cannot be a folder.
fn check_before_writing(cfg: &ExperimentConfig, out: &Path, all: &[Group], inputs: &[Inputs]) -> Result<()> {
    for (p, inputs) in all.iter().zip(inputs) {
        let (need, fix) = inputs.spec.training_memory(p.cfg.protocol.batch_size, p.cfg.protocol.seq_len);
        let what = match p.name.is_empty() {
            true => format!("training ({})", inputs.spec.describe()),
            false => format!("{}: training", p.name),
        };
        memory::check(need, &what, &format!("try {fix}"), p.cfg.run.max_memory.map(|m| m.0))?;
        if cfg.run.tensorboard {
            let sub = if p.name.is_empty() { out.to_path_buf() } else { out.join(&p.name) };
            crate::train::tensorboard::check_place(&sub.join("tensorboard"))?;
        }
    }
    Ok(())
}

/// The run folder for this process: a run or resume holds it alone (a fresh one must find it
/// empty, or clear it with `--force`); shards share it, each claiming its cells. Leftovers of
/// interrupted writes go. The folder is created, then claimed before anything is written in it
/// (the write probe included), so a loser of a race for it is refused by name and leaves nothing
/// behind.
fn claim_out(out: &Path, ctl: &Control) -> Result<folder::Claim> {
    std::fs::create_dir_all(out).map_err(|e| Error::Output(format!("cannot create --out {}: {e}", out.display())))?;
    let mode = if ctl.shard.is_some() { Mode::Shared } else { Mode::Exclusive };
    let claim = folder::claim(out, mode)?;
    if mode == Mode::Exclusive && !ctl.resume && folder::holds_files(out)? {
        // Checked again under the lock: another run may have written it since the first look.
        check_out_dir(out, ctl.force)?;
        let cleared = folder::clear_previous(out)?;
        if !cleared.is_empty() {
            say(&format!("--force: removed the previous experiment's {} from {}", cleared.describe(), out.display()));
        }
    }
    if mode == Mode::Exclusive {
        folder::remove_leftovers(out, &|_| true);
    }
    crate::util::probe_writable(out)?;
    Ok(claim)
}

/// Whether training has begun: before it, Ctrl-C or SIGTERM (setup, a download) ends the
/// process at once, as nothing is written yet; during it, the current step finishes and what
/// was measured is written.
static TRAINING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn training() -> bool {
    TRAINING.load(std::sync::atomic::Ordering::SeqCst)
}

struct Training;

impl Training {
    fn begin() -> Training {
        TRAINING.store(true, std::sync::atomic::Ordering::SeqCst);
        Training
    }
}

impl Drop for Training {
    fn drop(&mut self) {
        TRAINING.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// `cfg` with its corpus, donor and tokenizer paths absolute where they name existing files.
fn with_absolute_paths(cfg: &ExperimentConfig) -> ExperimentConfig {
    let abs = |p: &str| {
        let path = Path::new(p);
        match path.exists() && !path.is_absolute() {
            true => std::path::absolute(path).map_or_else(|_| p.to_string(), |a| a.display().to_string()),
            false => p.to_string(),
        }
    };
    let mut c = cfg.clone();
    c.data.corpora = c.data.corpora.iter().map(|p| abs(p)).collect();
    c.data.donor = c.data.donor.iter().map(|d| if d == "gpt2" { d.clone() } else { abs(d) }).collect();
    if !["auto", "gpt2"].contains(&c.data.tokenizer.as_str()) {
        c.data.tokenizer = abs(&c.data.tokenizer);
    }
    c
}

/// Two sentences (at most `cfg.run.sample_tokens` tokens) from the trained model, after "The".
fn sample_text(
    model: &dyn crate::model::LanguageModel,
    tok: &Tokenizer,
    cfg: &ExperimentConfig,
    seed: u64,
    letter: Letter,
) -> Result<String> {
    let prompt = tok.encode("The")?;
    let mut rng = stream(seed.wrapping_add(1000 * letter as u64), Stream::Sample);
    let ends_sentence = |id: u32| {
        let s = tok.decode(&[id]);
        s.contains('.') || s.contains('!') || s.contains('?')
    };
    let ids = model.sample(&prompt, cfg.run.sample_tokens, &ends_sentence, 2, &mut rng)?;
    let mut all = prompt;
    all.extend(ids);
    Ok(tok.decode(&all).split_whitespace().collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::device::cuda_or_why;
    use super::*;

    /// `auto` falls back to the CPU in a build without CUDA (the line says why); `cuda` there is
    /// an error naming what is missing and what to do.
    #[cfg(not(feature = "cuda"))]
    #[test]
    fn auto_runs_on_the_cpu_without_cuda_and_cuda_says_why_not() {
        assert!(device("auto").unwrap().is_cpu());
        let why = cuda_or_why().err().unwrap();
        assert!(why.contains("built without CUDA") && why.contains("embgraft[cuda13]"), "{why}");
        for d in ["cuda", "cuda:1"] {
            let err = device(d).err().unwrap().to_string();
            assert!(err.contains(&format!("--device {d}: this embgraft was built without CUDA")), "{err}");
            assert!(!err.contains('\n'));
        }
        assert!(device("gpu").err().unwrap().to_string().contains("use auto, cpu, cuda or cuda:N"));
    }

    #[test]
    fn shards_parse_from_flags_and_slurm() {
        let none = |_: &str| None;
        assert_eq!(Shard::parse("2/4", &none).unwrap(), Shard { k: 2, n: 4 });
        for bad in ["3/2", "0/0", "0/3", "a/2", "2/b", "2", "", "1/2/3", "-1/2"] {
            let e = Shard::parse(bad, &none).unwrap_err().to_string();
            assert!(e.contains("is not K/N") && !e.contains('\n'), "{bad}: {e}");
        }
        let e = Shard::parse("slurm", &none).unwrap_err().to_string();
        assert!(e.contains("SLURM_ARRAY_TASK_ID") && e.contains("--shard K/N"), "{e}");
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        // --array=4-6: task 5 is the second of three.
        let e1 = env(&[("SLURM_ARRAY_TASK_ID", "5"), ("SLURM_ARRAY_TASK_MIN", "4"), ("SLURM_ARRAY_TASK_COUNT", "3")]);
        assert_eq!(Shard::parse("slurm", &e1).unwrap(), Shard { k: 2, n: 3 });
        // --array=0-8:4 without COUNT: tasks 0, 4, 8.
        let e2 = env(&[
            ("SLURM_ARRAY_TASK_ID", "8"),
            ("SLURM_ARRAY_TASK_MIN", "0"),
            ("SLURM_ARRAY_TASK_MAX", "8"),
            ("SLURM_ARRAY_TASK_STEP", "4"),
        ]);
        assert_eq!(Shard::parse("slurm", &e2).unwrap(), Shard { k: 3, n: 3 });
        let e3 = env(&[("SLURM_ARRAY_TASK_ID", "x"), ("SLURM_ARRAY_TASK_COUNT", "3")]);
        assert!(Shard::parse("slurm", &e3).unwrap_err().to_string().contains("is not a number"));
        let e4 = env(&[("SLURM_ARRAY_TASK_ID", "3")]);
        assert!(Shard::parse("slurm", &e4).unwrap_err().to_string().contains("neither"));
    }

    #[test]
    fn shards_get_every_cell_once_balanced_by_steps() {
        let steps = [300, 300, 100, 100, 100, 100, 50, 50];
        let owner = assign_shards(&steps, 3);
        let load = |s: usize| owner.iter().zip(steps).filter(|(o, _)| **o == s).map(|(_, t)| t).sum::<usize>();
        assert_eq!((load(0), load(1), load(2)), (400, 350, 350));
        assert_eq!(assign_shards(&steps, 3), owner, "the same on every call");
        // More shards than cells: the extra shards get nothing.
        assert_eq!(assign_shards(&[5, 5], 4), vec![0, 1]);
    }
}
