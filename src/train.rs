//! One run: one configuration (A-H) with one seed. A flat loop: batches -> loss and gradients
//! -> AdamW, with an evaluation of the whole test set at every epoch's end (and every
//! `eval_every` steps when set).

use std::time::Instant;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::config::{ExperimentConfig, Letter};
use crate::corpus::Dataset;
use crate::donor::Embedding;
use crate::error::Result;
use crate::graft::{graft, CopyCheck, FrozenCheck};
use crate::loss::TokenCounts;
use crate::model::Model1;
use crate::optim::AdamW;
use crate::rng::{stream, Stream};

/// Test-set logits are computed this many distinct tokens at a time.
const EVAL_CHUNK: usize = 512;

/// One point of the loss curves.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Point {
    pub epoch: usize,
    pub step: usize,
    /// Mean of the batch losses since the previous point (the course's train loss).
    pub train_loss: f64,
    /// Mean loss over every test position, after the step, without gradients.
    pub test_loss: f64,
    /// A fixed training subset (as many windows as the test set) evaluated exactly as the test
    /// set: the like-for-like counterpart of `test_loss`.
    #[serde(default)]
    pub train_eval_loss: Option<f64>,
}

/// Where a run stopped because its loss stopped being a number.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Divergence {
    pub step: usize,
    pub last_finite_loss: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunResult {
    pub config: Letter,
    pub seed: u64,
    pub copied: bool,
    pub frozen: bool,
    pub total_params: usize,
    pub trainable_params: usize,
    pub steps: usize,
    pub points: Vec<Point>,
    /// What was grafted: the donor's tensor, and any permutation or rescaling.
    #[serde(default)]
    pub graft: Option<String>,
    pub copy_check: Option<CopyCheck>,
    pub frozen_check: Option<FrozenCheck>,
    /// For a trainable grafted embedding: how far its rows moved, by token frequency.
    #[serde(default)]
    pub drift: Option<crate::drift::Drift>,
    pub diverged: Option<Divergence>,
    /// Stopped by the user before its planned steps; `--resume` continues it.
    #[serde(default)]
    pub interrupted: bool,
    pub wall_seconds: f64,
    /// Text sampled from the trained model.
    pub sample: String,
}

impl RunResult {
    pub fn final_point(&self) -> Option<&Point> {
        self.points.last()
    }
}

/// What a run reports while it goes, and how it is told to stop.
pub trait Observer {
    fn on_step(&mut self, _step: usize, _loss: f64) {}
    fn on_point(&mut self, _run: (Letter, u64), _p: &Point) -> Result<()> {
        Ok(())
    }
    /// Called at every epoch's end with everything needed to continue from there.
    fn on_checkpoint(&mut self, _run: (Letter, u64), _c: &Checkpoint) -> Result<()> {
        Ok(())
    }
    /// Asked after every step; true ends the run there (Ctrl-C).
    fn should_stop(&self) -> bool {
        false
    }
}

pub struct NoObserver;
impl Observer for NoObserver {}

/// Optimizer steps one run takes under `cfg`.
pub fn planned_steps(cfg: &ExperimentConfig, train_windows: usize) -> usize {
    let per_epoch = train_windows.div_ceil(cfg.batch_size);
    let all = per_epoch * cfg.epochs;
    cfg.max_steps.map_or(all, |m| m.min(all))
}

/// A run's state at an epoch's end: parameters, AdamW moments, the batch-order RNG's
/// position and the curve so far. Restoring it continues the run exactly.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub epoch: usize,
    pub step: usize,
    pub adam_step: u64,
    pub shuffle_word_pos: u128,
    pub points: Vec<Point>,
    pub last_finite_loss: Option<f64>,
    pub wte: Vec<f32>,
    pub lm_head: Vec<f32>,
    /// (m, v) per trainable parameter, in the optimizer's order.
    pub moments: Vec<(Vec<f32>, Vec<f32>)>,
}

/// What every run of an experiment shares: the windows, the test set's (input, target)
/// counts, the donor's matrix (whose shape also sets the random configs' vocabulary and width)
/// and the device.
pub struct Shared<'a> {
    pub data: &'a Dataset,
    pub test: &'a TokenCounts,
    /// (input, target) counts of the fixed training subset evaluated like the test set.
    pub train_eval: &'a TokenCounts,
    /// How often each token id is an input in the training windows.
    pub input_freq: &'a [u32],
    pub donor: &'a Embedding,
    pub device: &'a Device,
}

/// Trains one configuration with one seed, from the start or from `resume`.
pub fn run(
    cfg: &ExperimentConfig,
    letter: Letter,
    seed: u64,
    shared: &Shared,
    resume: Option<Checkpoint>,
    obs: &mut dyn Observer,
) -> Result<(RunResult, Model1)> {
    let Shared { data, test, train_eval, input_freq, donor, device } = *shared;
    let (vocab, dim) = (donor.rows, donor.cols);
    let started = Instant::now();
    // Every config draws both init streams, so the head starts identical across A-D and the
    // random embedding identical across A and D.
    let model = Model1::random(
        vocab,
        dim,
        &mut stream(seed, Stream::InitEmbedding),
        &mut stream(seed, Stream::InitHead),
        device,
    )?;
    // Random configs keep their init; the others graft the donor, permuted or rescaled.
    let grafted = match letter.source() {
        crate::config::Source::Random => None,
        source => Some(crate::graft::prepare(donor, source, cfg.graft_scale, 1.0, &mut stream(seed, Stream::Permute))),
    };
    let copy_check = grafted.as_ref().map(|(g, _)| graft(&model.wte, g)).transpose()?;
    let frozen = letter.frozen();
    let wte_start: Option<Vec<f32>> = if frozen { Some(model.wte.flatten_all()?.to_vec1()?) } else { None };

    // A frozen parameter is not differentiated and not given to the optimizer.
    let mut opt = AdamW::new(model.trainable(!frozen), cfg.optimizer)?;

    let planned = planned_steps(cfg, data.train.len());
    let eval_every = cfg.eval_interval(planned, data.train.len().div_ceil(cfg.batch_size));
    let mut shuffle = stream(seed, Stream::Shuffle);
    let mut points = Vec::new();
    let (mut step, mut acc, mut n_acc) = (0usize, 0f64, 0usize);
    let mut last_finite = None;
    let mut first_epoch = 1;
    if let Some(c) = resume {
        model.wte.set(&candle_core::Tensor::from_vec(c.wte, (vocab, dim), device)?)?;
        model.lm_head.set(&candle_core::Tensor::from_vec(c.lm_head, (vocab, dim), device)?)?;
        for (i, (m, v)) in c.moments.into_iter().enumerate() {
            opt.restore(i, m, v)?;
        }
        opt.step = c.adam_step;
        shuffle.set_word_pos(c.shuffle_word_pos);
        (step, points, last_finite, first_epoch) = (c.step, c.points, c.last_finite_loss, c.epoch + 1);
    }
    let mut diverged = None;
    let mut interrupted = false;
    'epochs: for epoch in first_epoch..=cfg.epochs {
        let order = data.epoch_order(&mut shuffle);
        let batches: Vec<&[usize]> = order.chunks(cfg.batch_size).collect();
        for (b, windows) in batches.iter().enumerate() {
            if step == planned {
                break 'epochs;
            }
            let (xs, ys) = data.pairs(windows);
            let counts = TokenCounts::from_pairs(&xs, &ys);
            let (loss, grads) = model.loss_and_grads(&counts, !frozen)?;
            if !loss.is_finite() {
                diverged = Some(Divergence { step: step + 1, last_finite_loss: last_finite });
                break 'epochs;
            }
            last_finite = Some(loss);
            opt.step(&grads.into_list().iter().collect::<Vec<_>>())?;
            step += 1;
            acc += loss;
            n_acc += 1;
            obs.on_step(step, loss);
            let epoch_end = b + 1 == batches.len();
            let scheduled = eval_every.is_some_and(|k| step % k == 0);
            interrupted = obs.should_stop() && step < planned;
            if epoch_end || scheduled || step == planned || interrupted {
                let p = Point {
                    epoch,
                    step,
                    train_loss: acc / n_acc as f64,
                    test_loss: model.eval_loss(test, EVAL_CHUNK)?,
                    train_eval_loss: Some(model.eval_loss(train_eval, EVAL_CHUNK)?),
                };
                obs.on_point((letter, seed), &p)?;
                points.push(p);
                (acc, n_acc) = (0.0, 0);
            }
            if interrupted {
                break 'epochs;
            }
            if epoch_end && step < planned {
                let c = Checkpoint {
                    epoch,
                    step,
                    adam_step: opt.step,
                    shuffle_word_pos: shuffle.get_word_pos(),
                    points: points.clone(),
                    last_finite_loss: last_finite,
                    wte: model.wte.flatten_all()?.to_vec1()?,
                    lm_head: model.lm_head.flatten_all()?.to_vec1()?,
                    moments: (0..opt.slots()).map(|i| opt.moments(i)).collect::<Result<_>>()?,
                };
                obs.on_checkpoint((letter, seed), &c)?;
            }
        }
    }

    let frozen_check = match &wte_start {
        Some(start) => Some(FrozenCheck::check("wte", start, model.wte.as_tensor())?),
        None => None,
    };
    let drift = match (&grafted, frozen) {
        (Some((g, _)), false) => {
            let fin: Vec<f32> = model.wte.flatten_all()?.to_vec1()?;
            let o = cfg.optimizer;
            Some(crate::drift::measure(&g.data, &fin, dim, input_freq, o.lr, o.weight_decay, step))
        }
        _ => None,
    };
    let total_params = 2 * vocab * dim;
    let result = RunResult {
        config: letter,
        seed,
        copied: letter.copied(),
        frozen,
        total_params,
        trainable_params: opt.trainable_elements(),
        steps: step,
        points,
        graft: grafted.map(|(_, what)| what),
        copy_check,
        frozen_check,
        drift,
        diverged,
        interrupted,
        wall_seconds: started.elapsed().as_secs_f64(),
        sample: String::new(),
    };
    Ok((result, model))
}
