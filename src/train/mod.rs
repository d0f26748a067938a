//! One run: one configuration (A-H) with one seed. `run` reads as the stages of a run: build
//! the model, plan what is grafted, frozen and thawed, graft, start fresh or from a
//! checkpoint, then a flat loop of steps with evaluations and checkpoints, and the result.
//! Parameters are addressed by name throughout ([`crate::model::params`]).

pub mod checkpoint;
pub mod drift;
pub mod results;
pub mod sinks;
pub mod tensorboard;
pub mod weights;

use std::collections::HashMap;
use std::time::Instant;

use candle_core::Device;
use rand_chacha::ChaCha8Rng;

use crate::config::{ExperimentConfig, Letter};
use crate::data::corpus::Dataset;
use crate::data::counts::TokenCounts;
use crate::data::donor::{Donor, Embedding};
use crate::error::{Error, Result};
use crate::model::graft::{FrozenCheck, Grafted};
use crate::model::model1::InitCache;
use crate::model::params::{Names, Params};
use crate::model::spec::ModelSpec;
use crate::model::{GraftDonor, LanguageModel};
use crate::ops::adamw::AdamW;
use crate::rng::{stream, Stream};
use crate::train::checkpoint::Checkpoint;
use crate::train::results::{Divergence, Point, RunResult, Thaw};

/// A run about to train, as its observers are told: its label in messages, the steps already
/// done (resumed from a checkpoint) and the steps it takes in all, and what those steps
/// measured and thawed.
pub struct RunStart<'a> {
    pub label: &'a str,
    pub done: usize,
    pub steps: usize,
    pub earlier_points: &'a [Point],
    pub earlier_thaws: &'a [Thaw],
}

/// What watches a run, what it reports while it goes and how it is told to stop: every event
/// has a default that ignores it, so a sink implements only what it needs (see `sinks`).
pub trait Observer {
    fn on_start(&mut self, _run: (Letter, u64), _start: &RunStart) {}
    fn on_step(&mut self, _step: usize, _loss: f64) {}
    fn on_point(&mut self, _run: (Letter, u64), _p: &Point) -> Result<()> {
        Ok(())
    }
    /// Frozen parameters started training.
    fn on_thaw(&mut self, _run: (Letter, u64), _thaw: &Thaw) -> Result<()> {
        Ok(())
    }
    /// Called when a checkpoint is due or the run is told to stop, with everything needed to
    /// continue from that step.
    fn on_checkpoint(&mut self, _run: (Letter, u64), _c: &Checkpoint) -> Result<()> {
        Ok(())
    }
    /// Asked after every step; true saves a checkpoint and ends the run there (Ctrl-C, SIGTERM).
    fn should_stop(&self) -> bool {
        false
    }
    /// Asked after every step; true saves a checkpoint there (`--checkpoint-every`).
    fn checkpoint_due(&mut self) -> bool {
        false
    }
    /// A run finished (not one interrupted), before `on_finish`: what it trained.
    fn on_trained(&mut self, _run: (Letter, u64), _trained: &weights::Trained) -> Result<()> {
        Ok(())
    }
    /// The run ended, finished or interrupted, with its sample text drawn.
    fn on_finish(&mut self, _run: (Letter, u64), _result: &RunResult) -> Result<()> {
        Ok(())
    }
    /// A cell a resumed experiment keeps from before, finished, without training it again.
    fn on_kept(&mut self, _run: (Letter, u64), _result: &RunResult) -> Result<()> {
        Ok(())
    }
}

pub struct NoObserver;
impl Observer for NoObserver {}

/// Optimizer steps in one epoch: one per batch, the last batch possibly short.
pub fn steps_per_epoch(cfg: &ExperimentConfig, train_windows: usize) -> usize {
    train_windows.div_ceil(cfg.protocol.batch_size)
}

/// Optimizer steps one run takes under `cfg` (saturating: a count past any machine's reach
/// simply never ends the loop early).
pub fn planned_steps(cfg: &ExperimentConfig, train_windows: usize) -> usize {
    let per_epoch = steps_per_epoch(cfg, train_windows);
    let all = per_epoch.saturating_mul(epochs(cfg, per_epoch));
    cfg.protocol.max_steps.map_or(all, |m| m.min(all))
}

/// Epochs a run may take: `--epochs`, or as many as a step budget needs (`--max-steps` with
/// `--train-tokens`: every data size trains the same steps, a small one repeating its data).
pub fn epochs(cfg: &ExperimentConfig, per_epoch: usize) -> usize {
    match cfg.step_budget() {
        Some(m) => cfg.protocol.epochs.max(m.div_ceil(per_epoch.max(1))),
        None => cfg.protocol.epochs,
    }
}

/// What every run of an experiment shares: the windows, the test set's (input, target)
/// counts, the donor's matrix (whose shape also sets the random configs' vocabulary and width)
/// and the device.
pub struct Shared<'a> {
    pub data: &'a Dataset,
    pub test: &'a TokenCounts,
    /// (input, target) counts of the fixed training subset evaluated like the test set.
    pub train_eval: &'a TokenCounts,
    /// That subset's windows (Model 5 evaluates windows, not counts).
    pub train_eval_windows: &'a [usize],
    /// How often each token id is an input in the training windows.
    pub input_freq: &'a [u32],
    pub donor: &'a Embedding,
    pub device: &'a Device,
    /// The donor file, for grafting parts other than the embedding (Model 5).
    pub donor_file: Option<&'a Donor>,
    /// The model, its sizes resolved against the donor.
    pub spec: &'a ModelSpec,
    pub init: &'a InitCache,
}

/// Trains one configuration with one seed, from the start or from `resume`.
pub fn run(
    cfg: &ExperimentConfig,
    letter: Letter,
    seed: u64,
    shared: &Shared,
    resume: Option<Checkpoint>,
    obs: &mut dyn Observer,
) -> Result<(RunResult, Box<dyn LanguageModel>)> {
    let started = Instant::now();
    let net = shared.spec.build(seed, shared.init, shared.device)?;
    let params = net.params();
    let plan = Plan::new(cfg, letter, &params, shared.data.train.len())?;
    let mut donor = GraftDonor {
        embedding: shared.donor,
        file: shared.donor_file,
        source: letter.source(),
        scale: cfg.graft.graft_scale,
        permute: &mut stream(seed, Stream::Permute),
    };
    let grafted = net.graft(&mut donor, &plan.grafted, &plan.frozen)?;
    let frozen_start = snapshot(&params, &plan.frozen)?;
    let mut s = match resume {
        Some(c) => State::resumed(c, cfg, seed, &params, &plan)?,
        None => State::fresh(cfg, seed, &params, &plan)?,
    };
    let (data, eval_every) = (shared.data, cfg.eval_interval(plan.steps, plan.per_epoch));
    let sample = EvalSample::draw(shared, seed, cfg.protocol.eval_windows);
    // A fresh run scores its initial state first (step 0): the curves start where the graft
    // put them, so a head start, or its absence, is visible. A run resumed from a checkpoint
    // made before step-0 points existed goes on without one.
    if s.step == 0 && s.points.is_empty() {
        s.evaluate(0, net.as_ref(), shared, sample.as_ref().filter(|_| plan.steps > 0), (letter, seed), obs)?;
    }
    'epochs: for epoch in s.first_epoch..=epochs(cfg, plan.per_epoch) {
        // Where this epoch's batch order is drawn from: a checkpoint inside the epoch saves
        // this position and the batches done, and a resume draws the same order and skips them.
        let epoch_start = s.shuffle.get_word_pos();
        let order = data.epoch_order(&mut s.shuffle);
        let batches: Vec<&[usize]> = order.chunks(cfg.protocol.batch_size).collect();
        let skip = std::mem::take(&mut s.skip_batches);
        for (b, windows) in batches.iter().enumerate().skip(skip) {
            if s.step == plan.steps {
                break 'epochs;
            }
            s.thaw_due(epoch, (&plan, &params, &frozen_start), (letter, seed), obs)?;
            if !s.train_step(net.as_ref(), data, windows, obs)? {
                break 'epochs; // diverged
            }
            let epoch_end = b + 1 == batches.len();
            if epoch_end || eval_every.is_some_and(|k| s.step % k == 0) || s.step == plan.steps {
                let sample = sample.as_ref().filter(|_| s.step < plan.steps);
                s.evaluate(epoch, net.as_ref(), shared, sample, (letter, seed), obs)?;
            }
            let stop = obs.should_stop() && s.step < plan.steps;
            if s.step < plan.steps && (stop || obs.checkpoint_due()) {
                let at = match epoch_end {
                    true => {
                        Position { epochs_done: epoch, batches_done: 0, shuffle_word_pos: s.shuffle.get_word_pos() }
                    }
                    false => Position { epochs_done: epoch - 1, batches_done: b + 1, shuffle_word_pos: epoch_start },
                };
                obs.on_checkpoint((letter, seed), &s.checkpoint(at, &params, matmul_of(shared.device))?)?;
            }
            if stop {
                s.interrupted = true;
                break 'epochs;
            }
        }
    }
    let result = finish(cfg, (letter, seed), net.as_ref(), &plan, grafted, &frozen_start, s, shared, started)?;
    Ok((result, net))
}

/// The windows `--eval-windows N` scores at every curve point but a run's last: N of the test
/// windows and N of the train-eval windows, drawn from the seed alone, so every configuration
/// of a seed scores the same windows and their differences stay paired. None when N covers
/// both splits (nothing to sample) or no N was given.
struct EvalSample {
    test: (Vec<usize>, TokenCounts),
    train_eval: (Vec<usize>, TokenCounts),
}

impl EvalSample {
    fn draw(sh: &Shared, seed: u64, n: Option<usize>) -> Option<Self> {
        let n = n?;
        let (test, train_eval) = (&sh.data.test, sh.train_eval_windows);
        if n >= test.len() && n >= train_eval.len() {
            return None;
        }
        let mut rng = stream(seed, Stream::EvalSample);
        let mut pick = |from: &[usize]| {
            let mut at = rand::seq::index::sample(&mut rng, from.len(), n.min(from.len())).into_vec();
            at.sort_unstable();
            let windows: Vec<usize> = at.into_iter().map(|i| from[i]).collect();
            let counts = TokenCounts::from_windows(&sh.data.tokens, &windows, sh.data.seq_len);
            (windows, counts)
        };
        Some(EvalSample { test: pick(test), train_eval: pick(train_eval) })
    }
}

/// What a configuration does to which parameters, decided before training.
struct Plan {
    grafted: Names,
    frozen: Names,
    /// Learning rate by parameter: the last --lr-group that names it wins.
    lr: HashMap<String, f64>,
    /// (step before which they thaw, parameters), in order.
    thaws: Vec<(usize, Vec<String>)>,
    per_epoch: usize,
    steps: usize,
}

impl Plan {
    fn new(cfg: &ExperimentConfig, letter: Letter, params: &Params, train_windows: usize) -> Result<Self> {
        let (graft_pat, freeze_pat) = cfg.cell(letter);
        let (grafted, frozen) = (params.select(graft_pat, "--graft")?, params.select(freeze_pat, "--freeze")?);
        let mut lr: HashMap<String, f64> = params.names().into_iter().map(|n| (n, cfg.optimizer.lr)).collect();
        for g in &cfg.graft.lr_groups {
            for name in params.select(&g.pattern, "--lr-group")? {
                lr.insert(name, g.lr);
            }
        }
        let per_epoch = steps_per_epoch(cfg, train_windows);
        let frozen_in_order: Vec<String> = params.names().into_iter().filter(|n| frozen.contains(n)).collect();
        let thaws = match (cfg.graft.thaw_after, cfg.graft.thaw_every) {
            (None, _) => Vec::new(),
            (Some(_), _) if frozen_in_order.is_empty() => Vec::new(),
            (Some(a), None) => vec![(a.steps(per_epoch), frozen_in_order)],
            (Some(a), Some(e)) => thaw_groups(&frozen_in_order)
                .into_iter()
                .enumerate()
                .map(|(k, g)| (a.steps(per_epoch).saturating_add(k.saturating_mul(e.steps(per_epoch))), g))
                .collect(),
        };
        Ok(Plan { grafted, frozen, lr, thaws, per_epoch, steps: planned_steps(cfg, train_windows) })
    }
}

/// Layer groups for gradual unfreezing, top first (ULMFiT): the head and final LayerNorm,
/// then block L-1 down to block 0, then the embeddings.
fn thaw_groups(frozen: &[String]) -> Vec<Vec<String>> {
    let rank = |n: &str| -> i64 {
        match n.strip_prefix("h.").and_then(|r| r.split('.').next()?.parse::<i64>().ok()) {
            Some(i) => i,
            None if n.starts_with("wte") || n.starts_with("wpe") => -1,
            None => i64::MAX,
        }
    };
    let mut ranks: Vec<i64> = frozen.iter().map(|n| rank(n)).collect();
    ranks.sort_unstable_by(|a, b| b.cmp(a));
    ranks.dedup();
    ranks.iter().map(|&r| frozen.iter().filter(|n| rank(n) == r).cloned().collect()).collect()
}

/// The frozen parameters' values at the start, for the bit-identity proof.
fn snapshot(params: &Params, frozen: &Names) -> Result<HashMap<String, Vec<f32>>> {
    params
        .iter()
        .filter(|(n, _)| frozen.contains(*n))
        .map(|(n, v)| Ok((n.clone(), v.flatten_all()?.to_vec1()?)))
        .collect()
}

/// Everything that changes while a run trains; a checkpoint is this state written down.
struct State {
    step: usize,
    first_epoch: usize,
    points: Vec<Point>,
    last_finite: Option<f64>,
    /// The parameters being trained; a frozen one is not differentiated and not given to the
    /// optimizer.
    live: Names,
    opt: AdamW,
    shuffle: ChaCha8Rng,
    thaws: Vec<Thaw>,
    frozen_checks: Vec<FrozenCheck>,
    /// Sum and count of the batch losses since the last curve point.
    acc: (f64, usize),
    diverged: Option<Divergence>,
    interrupted: bool,
    /// Batches of the first epoch already trained before a mid-epoch checkpoint.
    skip_batches: usize,
}

/// Where in the batch order a checkpoint was taken: after `epochs_done` whole epochs and
/// `batches_done` batches of the next, whose order is drawn from `shuffle_word_pos`.
struct Position {
    epochs_done: usize,
    batches_done: usize,
    shuffle_word_pos: u128,
}

impl State {
    fn fresh(cfg: &ExperimentConfig, seed: u64, params: &Params, plan: &Plan) -> Result<Self> {
        let mut opt = AdamW::new(Vec::new(), cfg.optimizer)?;
        let mut live = Names::new();
        for (name, var) in params.iter().filter(|(n, _)| !plan.frozen.contains(*n)) {
            opt.add(name, var.clone(), plan.lr[name])?;
            live.insert(name.clone());
        }
        Ok(State {
            step: 0,
            first_epoch: 1,
            points: Vec::new(),
            last_finite: None,
            live,
            opt,
            shuffle: stream(seed, Stream::Shuffle),
            thaws: Vec::new(),
            frozen_checks: Vec::new(),
            acc: (0.0, 0),
            diverged: None,
            interrupted: false,
            skip_batches: 0,
        })
    }

    /// The state a checkpoint wrote down, put back into the model and optimizer.
    fn resumed(c: Checkpoint, cfg: &ExperimentConfig, seed: u64, params: &Params, plan: &Plan) -> Result<Self> {
        let bad =
            |why: String| Error::Input(format!("checkpoint does not fit this experiment ({why}); delete it to rerun"));
        let find = |name: &str| params.get(name).ok_or_else(|| bad(format!("unknown parameter {name}")));
        for (name, values) in c.params {
            let v = find(&name)?;
            if values.len() != v.elem_count() {
                return Err(bad(format!("{name} has {} values, not {}", values.len(), v.elem_count())));
            }
            v.set(&candle_core::Tensor::from_vec(values, v.shape(), v.device())?)?;
        }
        let mut opt = AdamW::new(Vec::new(), cfg.optimizer)?;
        let mut live = Names::new();
        for (k, ((name, (m, v)), t)) in c.slots.iter().zip(c.moments).zip(c.slot_steps).enumerate() {
            opt.add(name, find(name)?.clone(), plan.lr.get(name).copied().unwrap_or(cfg.optimizer.lr))?;
            opt.restore(k, m, v)?;
            opt.set_slot_steps(k, t);
            live.insert(name.clone());
        }
        opt.step = c.adam_step;
        // The seed's batch-order stream, at the position the checkpoint saved.
        let mut shuffle = stream(seed, Stream::Shuffle);
        shuffle.set_word_pos(c.shuffle_word_pos);
        Ok(State {
            step: c.step,
            first_epoch: c.epoch + 1,
            points: c.points,
            last_finite: c.last_finite_loss,
            live,
            opt,
            shuffle,
            thaws: c.thaws,
            frozen_checks: c.frozen_checks,
            acc: c.loss_since_point,
            diverged: None,
            interrupted: false,
            skip_batches: c.batch,
        })
    }

    /// Thaws the groups whose time has come: each is proven bit-identical to its start, then
    /// joins AdamW with zero moments.
    fn thaw_due(
        &mut self,
        epoch: usize,
        (plan, params, start): (&Plan, &Params, &HashMap<String, Vec<f32>>),
        run: (Letter, u64),
        obs: &mut dyn Observer,
    ) -> Result<()> {
        while let Some((at, group)) = plan.thaws.get(self.thaws.len()) {
            if *at > self.step {
                break;
            }
            for name in group {
                let before = start.get(name).ok_or_else(|| Error::Input(format!("{name} thaws but was not frozen")))?;
                let var = params.var(name);
                self.frozen_checks.push(FrozenCheck::check(name, before, var.as_tensor())?);
                self.opt.add(name, var.clone(), plan.lr[name])?;
                self.live.insert(name.clone());
            }
            let thaw = Thaw { step: self.step, epoch, params: group.clone() };
            obs.on_thaw(run, &thaw)?;
            self.thaws.push(thaw);
        }
        Ok(())
    }

    /// One optimizer step on a batch; false when the loss stopped being a number.
    fn train_step(
        &mut self,
        net: &dyn LanguageModel,
        data: &Dataset,
        windows: &[usize],
        obs: &mut dyn Observer,
    ) -> Result<bool> {
        let (loss, mut grads) = net.loss_and_grads(data, windows, &self.live)?;
        if !loss.is_finite() {
            self.diverged = Some(Divergence { step: self.step + 1, last_finite_loss: self.last_finite });
            return Ok(false);
        }
        self.last_finite = Some(loss);
        self.opt.step_named(&mut grads)?;
        self.step += 1;
        self.acc = (self.acc.0 + loss, self.acc.1 + 1);
        obs.on_step(self.step, loss);
        Ok(true)
    }

    /// A curve point: the batch losses since the last one (at step 0, before any batch, the
    /// train-eval subset's loss), the whole test set, and the fixed training subset scored as the
    /// test set (or `sample`'s windows of both).
    fn evaluate(
        &mut self,
        epoch: usize,
        net: &dyn LanguageModel,
        sh: &Shared,
        sample: Option<&EvalSample>,
        run: (Letter, u64),
        obs: &mut dyn Observer,
    ) -> Result<()> {
        let ((test_windows, test_counts), (train_windows, train_counts)) = match sample {
            Some(e) => ((&e.test.0[..], &e.test.1), (&e.train_eval.0[..], &e.train_eval.1)),
            None => ((&sh.data.test[..], sh.test), (sh.train_eval_windows, sh.train_eval)),
        };
        let (test_loss, train_eval_loss) =
            (net.eval(sh.data, test_counts, test_windows)?, net.eval(sh.data, train_counts, train_windows)?);
        let p = Point {
            epoch,
            step: self.step,
            // No batch has run before step 0: the training text's loss there is the
            // train-eval subset's, scored like the test set.
            train_loss: match self.acc.1 {
                0 => train_eval_loss,
                n => self.acc.0 / n as f64,
            },
            test_loss,
            train_eval_loss: Some(train_eval_loss),
            eval_windows: sample.map(|e| e.test.0.len()),
            test_bpb: sh.data.bits_per_byte(test_loss, test_windows),
            train_eval_bpb: sh.data.bits_per_byte(train_eval_loss, train_windows),
        };
        obs.on_point(run, &p)?;
        self.points.push(p);
        self.acc = (0.0, 0);
        Ok(())
    }

    /// Everything needed to continue from `at`.
    fn checkpoint(&self, at: Position, params: &Params, matmul: String) -> Result<Checkpoint> {
        let slots = self.opt.slots();
        Ok(Checkpoint {
            epoch: at.epochs_done,
            batch: at.batches_done,
            step: self.step,
            adam_step: self.opt.step,
            shuffle_word_pos: at.shuffle_word_pos,
            points: self.points.clone(),
            loss_since_point: self.acc,
            last_finite_loss: self.last_finite,
            params: params.values()?,
            slots: self.opt.names(),
            slot_steps: (0..slots).map(|k| self.opt.slot_steps(k)).collect(),
            moments: (0..slots).map(|k| self.opt.moments(k)).collect::<Result<_>>()?,
            thaws: self.thaws.clone(),
            frozen_checks: self.frozen_checks.clone(),
            matmul: Some(matmul),
        })
    }
}

/// The run's result: frozen parameters checked, drift measured, everything summed up.
#[allow(clippy::too_many_arguments)]
fn finish(
    cfg: &ExperimentConfig,
    (letter, seed): (Letter, u64),
    net: &dyn LanguageModel,
    plan: &Plan,
    grafted: Grafted,
    start: &HashMap<String, Vec<f32>>,
    mut s: State,
    shared: &Shared,
    started: Instant,
) -> Result<RunResult> {
    let params = net.params();
    // Parameters frozen to the end are checked now.
    for (name, var) in params.iter().filter(|(n, _)| !s.live.contains(*n)) {
        if let Some(before) = start.get(name) {
            s.frozen_checks.push(FrozenCheck::check(name, before, var.as_tensor())?);
        }
    }
    let drift = match (&grafted.start, net.decaying_embedding()) {
        (Some(g), Some(wte)) if s.live.contains("wte") => {
            let fin: Vec<f32> = wte.flatten_all()?.to_vec1()?;
            // wte's own rate (an lr group) and the steps it trained (from its thaw on), as the
            // optimizer applied them: the closed form's decay is lr·wd per step wte took.
            let (lr, steps) = s.opt.rate_and_steps("wte").unwrap_or((cfg.optimizer.lr, s.step as u64));
            let wd = cfg.optimizer.weight_decay;
            Some(crate::train::drift::measure(&g.data, &fin, g.cols, shared.input_freq, lr, wd, steps as usize))
        }
        _ => None,
    };
    Ok(RunResult {
        config: letter,
        seed,
        copied: !plan.grafted.is_empty(),
        frozen: !plan.frozen.is_empty(),
        total_params: params.elem_count(),
        trainable_params: s.opt.trainable_elements(),
        steps: s.step,
        points: s.points,
        graft: grafted.what,
        copy_check: crate::model::graft::sum_copy_checks(&grafted.checks),
        frozen_check: crate::model::graft::sum_frozen_checks(&s.frozen_checks),
        drift,
        diverged: s.diverged,
        interrupted: s.interrupted,
        wall_seconds: started.elapsed().as_secs_f64(),
        sample: String::new(),
        model: net.describe(),
        copy_checks: grafted.checks,
        frozen_checks: s.frozen_checks,
        thaws: s.thaws,
        notes: grafted.notes,
        matmul: Some(matmul_of(shared.device)),
        made_under: None,
        cell: None,
        blake3: None,
    })
}

/// What computes a run's matrix products on `device`: on the CPU a BLAS by its own name or the
/// `gemm` crate with its kernels ([`crate::ops::gemm::kernels`]), else the device. Runs made
/// with different ones agree to rounding, not bit for bit.
pub fn matmul_of(device: &candle_core::Device) -> String {
    match device.is_cpu() {
        true => crate::ops::gemm::kernels(),
        false => format!("{:?}", device.location()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thaw_groups_go_top_down() {
        let names: Vec<String> =
            ["wte.weight", "wpe.weight", "h.0.ln_1.weight", "h.0.mlp.c_fc.weight", "h.1.ln_1.weight", "ln_f.weight"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let g = |v: &[usize]| v.iter().map(|&i| names[i].clone()).collect::<Vec<_>>();
        assert_eq!(thaw_groups(&names), vec![g(&[5]), g(&[4]), g(&[2, 3]), g(&[0, 1])]);
        let some = vec![names[0].clone(), names[4].clone()];
        assert_eq!(thaw_groups(&some), vec![g(&[4]), g(&[0])]);
        let m1: Vec<String> = vec!["wte".into(), "lm_head".into()];
        assert_eq!(thaw_groups(&m1), vec![vec!["lm_head".to_string()], vec!["wte".to_string()]]);
    }
}
