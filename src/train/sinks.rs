//! Where a run's events go. Each sink is an [`Observer`] of its own: the metrics stream, the
//! cell's result file, its checkpoints, the display (a terminal bar and lines, or a front's
//! progress callback) and the stop switch; [`FanOut`] hands every event to each. A new sink
//! is one more type implementing [`Observer`] and one more entry in the fan-out.

use std::cell::Cell;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::provenance::{CellId, MadeUnder};
use crate::config::Letter;
use crate::error::{Error, Result};
use crate::train::checkpoint::Checkpoint;
use crate::train::results::{Point, RunResult, Thaw};
use crate::train::{Observer, RunStart};

/// What a run reports while it trains, for a front that shows progress its own way (the
/// Python package's bar and callback). `run` is the run's label in messages.
#[derive(Clone, Debug)]
pub enum Progress {
    /// A run starts (or continues from `done` steps) and will take `steps`.
    Start {
        run: String,
        cell: (Letter, u64),
        done: usize,
        steps: usize,
    },
    Step {
        step: usize,
        loss: f64,
    },
    Point {
        run: String,
        cell: (Letter, u64),
        point: Point,
    },
    /// A run ended, finished or interrupted (`result.interrupted`).
    Finish {
        run: String,
        cell: (Letter, u64),
        result: Box<RunResult>,
    },
}

/// Several observers as one: every event goes to each, in order; a run stops when any asks,
/// and saves a checkpoint when any says one is due.
pub struct FanOut<'a>(pub Vec<Box<dyn Observer + 'a>>);

impl Observer for FanOut<'_> {
    fn on_start(&mut self, run: (Letter, u64), start: &RunStart) {
        self.0.iter_mut().for_each(|o| o.on_start(run, start));
    }

    fn on_step(&mut self, step: usize, loss: f64) {
        self.0.iter_mut().for_each(|o| o.on_step(step, loss));
    }

    fn on_point(&mut self, run: (Letter, u64), p: &Point) -> Result<()> {
        self.0.iter_mut().try_for_each(|o| o.on_point(run, p))
    }

    fn on_thaw(&mut self, run: (Letter, u64), t: &Thaw) -> Result<()> {
        self.0.iter_mut().try_for_each(|o| o.on_thaw(run, t))
    }

    fn on_checkpoint(&mut self, run: (Letter, u64), c: &Checkpoint) -> Result<()> {
        self.0.iter_mut().try_for_each(|o| o.on_checkpoint(run, c))
    }

    fn on_trained(&mut self, run: (Letter, u64), t: &crate::train::weights::Trained) -> Result<()> {
        self.0.iter_mut().try_for_each(|o| o.on_trained(run, t))
    }

    fn on_finish(&mut self, run: (Letter, u64), result: &RunResult) -> Result<()> {
        self.0.iter_mut().try_for_each(|o| o.on_finish(run, result))
    }

    fn on_kept(&mut self, run: (Letter, u64), result: &RunResult) -> Result<()> {
        self.0.iter_mut().try_for_each(|o| o.on_kept(run, result))
    }

    fn should_stop(&self) -> bool {
        self.0.iter().any(|o| o.should_stop())
    }

    fn checkpoint_due(&mut self) -> bool {
        // Every sink is asked (no short cut): each keeps its own clock.
        self.0.iter_mut().fold(false, |due, o| o.checkpoint_due() | due)
    }
}

/// The files a cell writes, each `<stem>-<configuration>-<seed>.<extension>`: the one table the
/// sinks that write them, `--force`, shards and the report's rebuild all name them from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellFile {
    /// The finished run: `run-C-0.json`.
    Run,
    /// An unfinished run's state: `checkpoint-C-0.safetensors`.
    Checkpoint,
    /// A finished run's parameters (`--save-weights`): `weights-C-0.safetensors`.
    Weights,
}

impl CellFile {
    pub const ALL: [CellFile; 3] = [CellFile::Run, CellFile::Checkpoint, CellFile::Weights];

    fn parts(self) -> (&'static str, &'static str) {
        match self {
            CellFile::Run => ("run-", ".json"),
            CellFile::Checkpoint => ("checkpoint-", ".safetensors"),
            CellFile::Weights => ("weights-", ".safetensors"),
        }
    }

    /// Its name for cell `letter`-`seed`.
    pub fn name(self, letter: Letter, seed: u64) -> String {
        let (stem, ext) = self.parts();
        format!("{stem}{letter}-{seed}{ext}")
    }

    /// Whether `name` is a file of this kind (of any cell).
    pub fn matches(self, name: &str) -> bool {
        let (stem, ext) = self.parts();
        name.starts_with(stem) && name.ends_with(ext)
    }
}

pub fn cell_file(out: &Path, letter: Letter, seed: u64) -> PathBuf {
    out.join(CellFile::Run.name(letter, seed))
}

pub fn checkpoint_file(out: &Path, letter: Letter, seed: u64) -> PathBuf {
    out.join(CellFile::Checkpoint.name(letter, seed))
}

pub fn weights_file(out: &Path, letter: Letter, seed: u64) -> PathBuf {
    out.join(CellFile::Weights.name(letter, seed))
}

/// `loss` in nats per token; `bpb` the same loss in bits per byte where it is measured (the
/// test and train-eval splits; the train loss, a mean over batches, has none).
pub const METRICS_HEADER: &str = "config,seed,epoch,step,split,loss,bpb\n";

pub fn csv_rows(letter: Letter, seed: u64, p: &Point) -> String {
    let (e, s) = (p.epoch, p.step);
    let bpb = |b: Option<f64>| b.map_or(String::new(), |b| format!("{b:.6}"));
    let mut rows = format!(
        "{letter},{seed},{e},{s},train,{:.6},\n{letter},{seed},{e},{s},test,{:.6},{}\n",
        p.train_loss,
        p.test_loss,
        bpb(p.test_bpb)
    );
    if let Some(l) = p.train_eval_loss {
        rows.push_str(&format!("{letter},{seed},{e},{s},train_eval,{l:.6},{}\n", bpb(p.train_eval_bpb)));
    }
    rows
}

pub fn metrics_rows(letter: Letter, seed: u64, points: &[Point]) -> String {
    points.iter().map(|p| csv_rows(letter, seed, p)).collect()
}

/// metrics.csv as it grows: a line per curve point and split, flushed at each point.
pub struct MetricsCsv {
    path: PathBuf,
    file: std::fs::File,
}

impl MetricsCsv {
    /// Starts `path` with the header and `head` (what kept cells already measured), atomically,
    /// then appends.
    pub fn start(path: PathBuf, head: &str) -> Result<Self> {
        crate::util::write_atomic(&path, format!("{METRICS_HEADER}{head}").as_bytes())?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::Output(format!("cannot open {}: {e}", path.display())))?;
        Ok(MetricsCsv { path, file })
    }
}

impl Observer for MetricsCsv {
    fn on_point(&mut self, (letter, seed): (Letter, u64), p: &Point) -> Result<()> {
        let fail = |e: std::io::Error| Error::Output(format!("cannot write {}: {e}", self.path.display()));
        self.file.write_all(csv_rows(letter, seed, p).as_bytes()).map_err(fail)?;
        self.file.flush().map_err(fail)
    }
}

/// Which cell of `group` a file holds.
fn cell_id(group: &str, letter: Letter, seed: u64) -> CellId {
    CellId { group: group.to_string(), config: letter, seed }
}

/// A finished cell's `run-<config>-<seed>.json`, stamped with what it was made under and which
/// cell it is, and sealed with its checksum; its checkpoint goes then. An interrupted cell
/// keeps its checkpoint and gets no file.
pub struct CellFiles {
    pub out: PathBuf,
    pub made: MadeUnder,
    /// The group's name (empty for a one-group experiment).
    pub group: String,
}

impl Observer for CellFiles {
    fn on_finish(&mut self, (letter, seed): (Letter, u64), result: &RunResult) -> Result<()> {
        if result.interrupted {
            return Ok(());
        }
        let mut stamped = RunResult {
            made_under: Some(self.made.clone()),
            cell: Some(cell_id(&self.group, letter, seed)),
            blake3: None,
            ..result.clone()
        };
        stamped.blake3 = Some(stamped.checksum());
        let json = serde_json::to_string_pretty(&stamped).map_err(|e| Error::Output(e.to_string()))?;
        crate::util::write_atomic(&cell_file(&self.out, letter, seed), json.as_bytes())?;
        let _ = std::fs::remove_file(checkpoint_file(&self.out, letter, seed));
        Ok(())
    }
}

/// `--save-weights`: a finished cell's trained parameters, written before its run file, so a
/// run file with the setting on always has its weights beside it (a weights file without a run
/// file is a cell that did not finish, and is written again when it does).
pub struct WeightsFiles {
    pub out: PathBuf,
    pub made: MadeUnder,
    pub group: String,
}

impl Observer for WeightsFiles {
    fn on_trained(&mut self, (letter, seed): (Letter, u64), t: &crate::train::weights::Trained) -> Result<()> {
        let cell = cell_id(&self.group, letter, seed);
        crate::train::weights::save(&weights_file(&self.out, letter, seed), t, Some(&self.made), &cell)?;
        Ok(())
    }
}

/// Checkpoints: saved when the run asks (a stop), and at least every `every` while it trains.
pub struct Checkpointer {
    pub out: PathBuf,
    pub made: MadeUnder,
    pub group: String,
    pub every: Option<Duration>,
    last: Instant,
}

impl Checkpointer {
    pub fn new(out: PathBuf, made: MadeUnder, group: String, every: Option<Duration>) -> Self {
        Checkpointer { out, made, group, every, last: Instant::now() }
    }
}

impl Observer for Checkpointer {
    fn on_start(&mut self, _run: (Letter, u64), _start: &RunStart) {
        self.last = Instant::now();
    }

    fn on_checkpoint(&mut self, (letter, seed): (Letter, u64), c: &Checkpoint) -> Result<()> {
        let cell = cell_id(&self.group, letter, seed);
        crate::train::checkpoint::save(&checkpoint_file(&self.out, letter, seed), c, Some(&self.made), Some(&cell))?;
        self.last = Instant::now();
        Ok(())
    }

    fn checkpoint_due(&mut self) -> bool {
        self.every.is_some_and(|every| self.last.elapsed() >= every)
    }
}

/// The stop switch: Ctrl-C, SIGTERM, a notebook's stop button.
pub struct StopSwitch<'a>(pub &'a dyn Fn() -> bool);

impl Observer for StopSwitch<'_> {
    fn should_stop(&self) -> bool {
        (self.0)()
    }
}

/// What a person watches: a progress bar and a line per curve point on a terminal (plain
/// lines elsewhere), or a front's own display (`front`), which then gets every event.
pub struct Display<'a> {
    front: Option<&'a dyn Fn(&Progress)>,
    bar: Option<ProgressBar>,
    label: String,
    started: Instant,
    /// Seconds from the start to the first optimizer step, for summary.json.
    first_step: &'a Cell<Option<f64>>,
}

impl<'a> Display<'a> {
    pub fn new(front: Option<&'a dyn Fn(&Progress)>, started: Instant, first_step: &'a Cell<Option<f64>>) -> Self {
        Display { front, bar: None, label: String::new(), started, first_step }
    }

    fn line(&self, text: String) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => crate::util::say(&text),
        }
    }
}

impl Observer for Display<'_> {
    fn on_start(&mut self, cell: (Letter, u64), s: &RunStart) {
        self.label = s.label.to_string();
        if let Some(f) = self.front {
            f(&Progress::Start { run: self.label.clone(), cell, done: s.done, steps: s.steps });
            return;
        }
        self.bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(s.steps as u64);
            if let Ok(style) = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} steps, {elapsed} elapsed, ETA {eta} {msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(self.label.clone());
            bar.set_position(s.done as u64);
            bar
        });
        if self.bar.is_none() {
            crate::util::say(&format!("{} ...", self.label));
        }
    }

    fn on_step(&mut self, step: usize, loss: f64) {
        if let Some(f) = self.front {
            f(&Progress::Step { step, loss });
        }
        if self.first_step.get().is_none() {
            let t = self.started.elapsed().as_secs_f64();
            self.first_step.set(Some(t));
            self.line(format!("first step done {t:.2} s after start"));
        }
        if let Some(bar) = &self.bar {
            bar.set_message(format!("loss {loss:.3}"));
            bar.inc(1);
        }
    }

    fn on_point(&mut self, cell: (Letter, u64), p: &Point) -> Result<()> {
        if let Some(f) = self.front {
            f(&Progress::Point { run: self.label.clone(), cell, point: p.clone() });
            return Ok(());
        }
        self.line(format!(
            "{} epoch {} step {}: train {:.4}, test {:.4}",
            self.label, p.epoch, p.step, p.train_loss, p.test_loss
        ));
        Ok(())
    }

    fn on_finish(&mut self, cell: (Letter, u64), result: &RunResult) -> Result<()> {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if let Some(f) = self.front {
            f(&Progress::Finish { run: self.label.clone(), cell, result: Box::new(result.clone()) });
        }
        crate::util::say(&match result.interrupted {
            true => format!("{} interrupted at step {}", self.label, result.steps),
            false => format!("{} done in {:.1} s", self.label, result.wall_seconds),
        });
        Ok(())
    }
}
