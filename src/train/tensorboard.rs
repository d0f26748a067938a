//! `--tensorboard`: each run's curves as TensorBoard event files, one folder per configuration
//! and seed (`tensorboard/<config>-<seed>/`), flushed at every curve point so a running
//! `tensorboard --logdir` shows them live. A run that starts (or resumes) writes its folder's
//! series anew, beginning with a START marker and what its checkpoint measured, so a resumed
//! run continues the same series without a step twice; a kept cell's series is written once.

use std::path::{Path, PathBuf};

use crate::config::Letter;
use crate::error::Result;
use crate::tfevents::{self, Event, EventFile};
use crate::train::results::{Point, RunResult, Thaw};
use crate::train::{Observer, RunStart};

/// The scalar tags of a curve point, as metrics.csv's splits.
pub const TRAIN: &str = "loss/train";
pub const TEST: &str = "loss/test";
pub const TRAIN_EVAL: &str = "loss/train_eval";
/// The same losses in bits per byte, where measured.
pub const TEST_BPB: &str = "bpb/test";
pub const TRAIN_EVAL_BPB: &str = "bpb/train_eval";

pub fn run_folder(root: &Path, letter: Letter, seed: u64) -> PathBuf {
    root.join(format!("{letter}-{seed}"))
}

/// Makes sure `root` can take event files, before hours of training.
pub fn check_root(root: &Path) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| {
        crate::error::Error::Output(format!(
            "--tensorboard: cannot write into {} ({e}); make it writable or run without --tensorboard",
            root.display()
        ))
    };
    std::fs::create_dir_all(root).map_err(|e| fail(&e))?;
    crate::util::probe_writable(root).map_err(|e| fail(&e))
}

/// Refuses, before anything is written, a `tensorboard` place that cannot be a folder (a file
/// or a link to one holds its name). Creates nothing.
pub fn check_place(root: &Path) -> Result<()> {
    match std::fs::metadata(root) {
        Ok(m) if !m.is_dir() => Err(crate::error::Error::Output(format!(
            "--tensorboard: cannot write into {} (it is a file, not a folder); move it away or run without \
             --tensorboard",
            root.display()
        ))),
        _ => Ok(()),
    }
}

/// The event files of one group's runs under `root`.
pub struct TensorBoard {
    root: PathBuf,
    file: Option<EventFile>,
}

impl TensorBoard {
    pub fn new(root: PathBuf) -> Self {
        TensorBoard { root, file: None }
    }

    fn append(&mut self, events: &[Event]) -> Result<()> {
        match &mut self.file {
            Some(f) => f.append(events),
            None => Ok(()),
        }
    }
}

fn point_events(t: f64, p: &Point) -> Event {
    let mut values = vec![(TRAIN, p.train_loss), (TEST, p.test_loss)];
    if let Some(l) = p.train_eval_loss {
        values.push((TRAIN_EVAL, l));
    }
    values.extend(p.test_bpb.map(|b| (TEST_BPB, b)));
    values.extend(p.train_eval_bpb.map(|b| (TRAIN_EVAL_BPB, b)));
    tfevents::scalars(t, p.step, &values)
}

fn thaw_event(t: f64, th: &Thaw) -> Event {
    let names = th.params.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
    tfevents::text(t, th.step, "thaw", &format!("thawed after {} steps (epoch {}): {names}", th.step, th.epoch))
}

/// The copy and bit-identity checks, the sample text and their counts, at the run's last step.
fn finish_events(t: f64, r: &RunResult) -> Vec<Event> {
    let mut lines = Vec::new();
    for c in &r.copy_checks {
        let verdict = if c.passed() { "bit-identical to the donor" } else { "**differs from the donor**" };
        lines.push(format!(
            "- copy of `{}`: {} values, max |Δ| {}, {} with other bits: {verdict}",
            c.tensor, c.elements, c.max_abs_delta, c.differing_bits
        ));
    }
    for f in &r.frozen_checks {
        let verdict = if f.passed() { "bit-identical while frozen" } else { "**changed while frozen**" };
        lines.push(format!(
            "- frozen `{}`: {} of {} values changed: {verdict}",
            f.parameter, f.changed_elements, f.elements
        ));
    }
    if lines.is_empty() {
        lines.push("- nothing grafted or frozen".into());
    }
    let copy_bits: usize = r.copy_checks.iter().map(|c| c.differing_bits).sum();
    let frozen_changed: usize = r.frozen_checks.iter().map(|f| f.changed_elements).sum();
    let mut counts = Vec::new();
    if !r.copy_checks.is_empty() {
        counts.push(("checks/copy_values_with_other_bits", copy_bits as f64));
    }
    if !r.frozen_checks.is_empty() {
        counts.push(("checks/frozen_values_changed", frozen_changed as f64));
    }
    let mut events = vec![tfevents::text(t, r.steps, "checks", &lines.join("\n"))];
    if !counts.is_empty() {
        events.push(tfevents::scalars(t, r.steps, &counts));
    }
    events.push(tfevents::text(t, r.steps, "sample", &r.sample));
    events
}

/// What a run measured up to now, as the events that begin its file.
fn replay(t: f64, points: &[Point], thaws: &[Thaw]) -> Vec<Event> {
    let mut events = vec![tfevents::restart(t, 0)];
    let mut thaws = thaws.iter().peekable();
    for p in points {
        while let Some(th) = thaws.next_if(|th| th.step < p.step) {
            events.push(thaw_event(t, th));
        }
        events.push(point_events(t, p));
    }
    events.extend(thaws.map(|th| thaw_event(t, th)));
    events
}

impl Observer for TensorBoard {
    fn on_start(&mut self, (letter, seed): (Letter, u64), s: &RunStart) {
        // The folder was found writable before training (`check_root`); a file that still
        // cannot be started leaves this run without one, said once, and the run (whose results
        // are the point) goes on.
        let dir = run_folder(&self.root, letter, seed);
        self.file = match EventFile::create(&dir, &replay(tfevents::now(), s.earlier_points, s.earlier_thaws)) {
            Ok(f) => Some(f),
            Err(e) => {
                crate::util::say(&format!("note: no TensorBoard events for {letter}-{seed}: {e}"));
                None
            }
        };
    }

    fn on_point(&mut self, _run: (Letter, u64), p: &Point) -> Result<()> {
        self.append(&[point_events(tfevents::now(), p)])
    }

    fn on_thaw(&mut self, _run: (Letter, u64), th: &Thaw) -> Result<()> {
        self.append(&[thaw_event(tfevents::now(), th)])
    }

    fn on_finish(&mut self, _run: (Letter, u64), r: &RunResult) -> Result<()> {
        if !r.interrupted {
            self.append(&finish_events(tfevents::now(), r))?;
        }
        self.file = None;
        Ok(())
    }

    fn on_kept(&mut self, (letter, seed): (Letter, u64), r: &RunResult) -> Result<()> {
        let dir = run_folder(&self.root, letter, seed);
        if tfevents::own_files(&dir).is_empty() {
            let t = tfevents::now();
            let mut events = replay(t, &r.points, &r.thaws);
            events.extend(finish_events(t, r));
            EventFile::create(&dir, &events)?;
        }
        Ok(())
    }
}
