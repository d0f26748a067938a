//! One run: one configuration (A-H) with one seed. A flat loop: batches -> loss and gradients
//! -> AdamW, with an evaluation of the whole test set at every epoch's end (and every
//! `eval_every` steps when set). Frozen parameters may thaw on a schedule (`--thaw-after`,
//! `--thaw-every`), top layer group first, each joining AdamW with zero moments.

use std::time::Instant;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::config::{ExperimentConfig, Letter, ModelKind, Source};
use crate::corpus::Dataset;
use crate::donor::{Donor, Embedding};
use crate::error::{Error, Result};
use crate::graft::{graft, select, CopyCheck, FrozenCheck};
use crate::loss::TokenCounts;
use crate::model::{Grad, Model1};
use crate::model5::{batch_tensors, Model5, Model5Config};
use crate::optim::AdamW;
use crate::rng::{stream, Stream};

/// Test-set logits are computed this many distinct tokens (Model 1) at a time.
const EVAL_CHUNK: usize = 512;
/// Model 5 evaluates this many windows at a time.
const EVAL_WINDOWS: usize = 64;

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
    /// `model1`, or Model 5's sizes.
    #[serde(default)]
    pub model: String,
    /// One copy check per grafted tensor (`copy_check` sums them up).
    #[serde(default)]
    pub copy_checks: Vec<CopyCheck>,
    /// One bit-identity check per frozen parameter, taken when it thawed or at the end
    /// (`frozen_check` sums them up).
    #[serde(default)]
    pub frozen_checks: Vec<FrozenCheck>,
    /// When frozen parameters thawed.
    #[serde(default)]
    pub thaws: Vec<Thaw>,
    /// Facts the report repeats (a tied head frozen with wte, a cut wpe, transposes).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Parameters that started training at a step.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Thaw {
    /// Thawed before this many steps had been taken.
    pub step: usize,
    pub epoch: usize,
    pub params: Vec<String>,
}

/// The network a run trains.
pub enum Net {
    M1(Model1),
    M5(Model5),
}

impl Net {
    /// Every parameter with its name, in a fixed order.
    pub fn params(&self) -> Vec<(String, candle_core::Var)> {
        match self {
            Net::M1(m) => vec![("wte".into(), m.wte.clone()), ("lm_head".into(), m.lm_head.clone())],
            Net::M5(m) => m.params.clone(),
        }
    }

    /// The parameter called `name` (`wte` finds `wte.weight` too).
    pub fn param(&self, name: &str) -> Option<candle_core::Var> {
        let alt = format!("{name}.weight");
        self.params().into_iter().find(|(n, _)| n == name || *n == alt).map(|(_, v)| v)
    }

    /// Mean loss over the windows and a gradient for each live parameter.
    fn loss_and_grads(&self, data: &Dataset, windows: &[usize], live: &[bool]) -> Result<(f64, Vec<Option<Grad>>)> {
        match self {
            Net::M1(m) => {
                let (xs, ys) = data.pairs(windows);
                let counts = TokenCounts::from_pairs(&xs, &ys);
                if !live.iter().any(|&l| l) {
                    return Ok((m.eval_loss(&counts, EVAL_CHUNK)?, vec![None, None]));
                }
                let (loss, g) = m.loss_and_grads(&counts, live[0])?;
                Ok((loss, vec![g.wte, live[1].then_some(g.lm_head)]))
            }
            Net::M5(m) => {
                let (x, y) = batch_tensors(data, windows, m.device())?;
                let (loss, g) = m.loss_and_grads(&x, &y, live)?;
                Ok((loss, g.into_iter().map(|g| g.map(Grad::Dense)).collect()))
            }
        }
    }

    /// Mean loss over every position of `windows` (whose pairs are `counts`), no gradients.
    pub fn eval(&self, data: &Dataset, counts: &TokenCounts, windows: &[usize]) -> Result<f64> {
        match self {
            Net::M1(m) => m.eval_loss(counts, EVAL_CHUNK),
            Net::M5(m) => {
                let mut sum = 0.0;
                for chunk in windows.chunks(EVAL_WINDOWS) {
                    let (x, y) = batch_tensors(data, chunk, m.device())?;
                    sum += m.loss_sum(&x, &y)?;
                }
                Ok(sum / (windows.len() * data.seq_len) as f64)
            }
        }
    }

    /// Samples up to `max_tokens` ids after `prompt`, stopping after `sentences` ends of
    /// sentence (see [`crate::model::sample_with`]).
    pub fn sample(
        &self,
        prompt: &[u32],
        max_tokens: usize,
        stop: &dyn Fn(u32) -> bool,
        sentences: usize,
        rng: &mut impl rand::Rng,
    ) -> Result<Vec<u32>> {
        crate::model::sample_with(prompt, max_tokens, stop, sentences, rng, |seq| match self {
            Net::M1(m) => m.next_logits(seq),
            Net::M5(m) => m.next_logits(seq),
        })
    }
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

/// A run's state at an epoch's end: parameters, AdamW state, the batch-order RNG's position,
/// the curve and the thaws so far. Restoring it continues the run exactly.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub epoch: usize,
    pub step: usize,
    pub adam_step: u64,
    pub shuffle_word_pos: u128,
    pub points: Vec<Point>,
    pub last_finite_loss: Option<f64>,
    /// Every parameter by name.
    pub params: Vec<(String, Vec<f32>)>,
    /// The optimizer's parameters in its order, with their own step counts and (m, v).
    pub slots: Vec<String>,
    pub slot_steps: Vec<u64>,
    pub moments: Vec<(Vec<f32>, Vec<f32>)>,
    pub thaws: Vec<Thaw>,
    pub frozen_checks: Vec<FrozenCheck>,
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
    /// The donor file, for grafting parts other than the embedding (Model 5).
    pub donor_file: Option<&'a Donor>,
    /// Model 5's sizes, resolved against the donor.
    pub model5: Option<&'a Model5Config>,
}

/// Layer groups for gradual unfreezing, top first (ULMFiT): the head and final LayerNorm,
/// then block L-1 down to block 0, then the embeddings.
fn thaw_groups(names: &[String], frozen: &[bool]) -> Vec<Vec<usize>> {
    let rank = |n: &str| -> i64 {
        match n.strip_prefix("h.").and_then(|r| r.split('.').next()?.parse::<i64>().ok()) {
            Some(i) => i,
            None if n.starts_with("wte") || n.starts_with("wpe") => -1,
            None => i64::MAX,
        }
    };
    let mut ranks: Vec<i64> = names.iter().zip(frozen).filter(|(_, &f)| f).map(|(n, _)| rank(n)).collect();
    ranks.sort_unstable_by(|a, b| b.cmp(a));
    ranks.dedup();
    ranks.iter().map(|&r| (0..names.len()).filter(|&i| frozen[i] && rank(&names[i]) == r).collect()).collect()
}

/// Model 5's sizes as a one-line description.
pub fn model_label(cfg: &ExperimentConfig, m5: Option<&Model5Config>) -> String {
    match (cfg.model, m5) {
        (ModelKind::Model5, Some(c)) => format!(
            "model5: {} layers, {} heads, width {}, context {}, head {}",
            c.layers,
            c.heads,
            c.dim,
            c.context,
            if c.tied { "tied to wte" } else { "untied" }
        ),
        _ => "model1".into(),
    }
}

/// Trains one configuration with one seed, from the start or from `resume`.
pub fn run(
    cfg: &ExperimentConfig,
    letter: Letter,
    seed: u64,
    shared: &Shared,
    resume: Option<Checkpoint>,
    obs: &mut dyn Observer,
) -> Result<(RunResult, Net)> {
    let Shared { data, test, train_eval, input_freq, donor, device, donor_file, model5 } = *shared;
    let (vocab, dim) = (donor.rows, donor.cols);
    let started = Instant::now();
    // Every config draws both init streams, so what a config does not graft starts identical
    // across configs (the random embedding of A and D, the head, Model 5's blocks).
    let net = match cfg.model {
        ModelKind::Model1 => Net::M1(Model1::random(
            vocab,
            dim,
            &mut stream(seed, Stream::InitEmbedding),
            &mut stream(seed, Stream::InitHead),
            device,
        )?),
        ModelKind::Model5 => {
            let c = model5.ok_or_else(|| Error::Input("Model 5's sizes were not resolved".into()))?.clone();
            Net::M5(Model5::random(
                c,
                &mut stream(seed, Stream::InitEmbedding),
                &mut stream(seed, Stream::InitHead),
                device,
            )?)
        }
    };
    let params = net.params();
    let names: Vec<String> = params.iter().map(|(n, _)| n.clone()).collect();
    let (graft_pat, freeze_pat) = cfg.grid.cell(letter);
    let graft_mask = select(graft_pat, &names, "--graft")?;
    let frozen = select(freeze_pat, &names, "--freeze")?;
    let mut notes = Vec::new();

    // Grafting: Model 1 copies the (perhaps permuted or rescaled) embedding; Model 5 copies
    // every selected tensor by name.
    let mut copy_checks = Vec::new();
    let mut graft_what = None;
    let mut grafted_wte: Option<Embedding> = None;
    match &net {
        Net::M1(m) if graft_mask[0] => {
            let source = if letter.source() == Source::Random { Source::Donor } else { letter.source() };
            let (g, what) =
                crate::graft::prepare(donor, source, cfg.graft_scale, 1.0, &mut stream(seed, Stream::Permute));
            copy_checks.push(graft(&m.wte, &g)?);
            graft_what = Some(what);
            grafted_wte = Some(g);
        }
        Net::M5(m) if graft_mask.iter().any(|&g| g) => {
            let file = donor_file.ok_or_else(|| Error::Input("Model 5 grafts need the donor file".into()))?;
            let (checks, n) = m.graft(file, donor, &graft_mask)?;
            graft_what = Some(format!(
                "{} tensors from {}: {}",
                checks.len(),
                file.path().display(),
                crate::graft::summarise_names(
                    &names.iter().zip(&graft_mask).filter(|(_, &g)| g).map(|(n, _)| n.clone()).collect::<Vec<_>>()
                )
            ));
            copy_checks = checks;
            notes.extend(n);
        }
        _ => {}
    }
    if let Net::M5(m) = &net {
        if m.cfg.tied && frozen[0] {
            notes.push("the head is tied to wte: freezing wte freezes the head too".into());
        }
    }
    let frozen_start: Vec<Option<Vec<f32>>> = params
        .iter()
        .zip(&frozen)
        .map(|((_, v), &f)| if f { v.flatten_all().and_then(|t| t.to_vec1()).map(Some) } else { Ok(None) })
        .collect::<candle_core::Result<_>>()?;

    // Learning rates: the last --lr-group that names a parameter wins.
    let mut lr = vec![cfg.optimizer.lr; names.len()];
    for g in &cfg.lr_groups {
        for (i, on) in select(&g.pattern, &names, "--lr-group")?.into_iter().enumerate() {
            if on {
                lr[i] = g.lr;
            }
        }
    }

    let per_epoch = data.train.len().div_ceil(cfg.batch_size);
    let schedule: Vec<(usize, Vec<usize>)> = match (cfg.thaw_after, cfg.thaw_every) {
        (None, _) => Vec::new(),
        (Some(a), None) => {
            let all: Vec<usize> = (0..names.len()).filter(|&i| frozen[i]).collect();
            if all.is_empty() {
                Vec::new()
            } else {
                vec![(a.steps(per_epoch), all)]
            }
        }
        (Some(a), Some(e)) => thaw_groups(&names, &frozen)
            .into_iter()
            .enumerate()
            .map(|(k, g)| (a.steps(per_epoch) + k * e.steps(per_epoch), g))
            .collect(),
    };

    let mut live: Vec<bool> = frozen.iter().map(|f| !f).collect();
    // A frozen parameter is not differentiated and not given to the optimizer.
    let mut opt = AdamW::new(Vec::new(), cfg.optimizer)?;
    let mut slot_param: Vec<usize> = Vec::new();
    let mut thaws: Vec<Thaw> = Vec::new();
    let mut frozen_checks: Vec<FrozenCheck> = Vec::new();

    let planned = planned_steps(cfg, data.train.len());
    let eval_every = cfg.eval_interval(planned, per_epoch);
    let mut shuffle = stream(seed, Stream::Shuffle);
    let mut points = Vec::new();
    let (mut step, mut acc, mut n_acc) = (0usize, 0f64, 0usize);
    let mut last_finite = None;
    let mut first_epoch = 1;
    if let Some(c) = resume {
        let bad =
            |why: String| Error::Input(format!("checkpoint does not fit this experiment ({why}); delete it to rerun"));
        for (name, values) in c.params {
            let i = names.iter().position(|n| *n == name).ok_or_else(|| bad(format!("unknown parameter {name}")))?;
            let v = &params[i].1;
            if values.len() != v.elem_count() {
                return Err(bad(format!("{name} has {} values, not {}", values.len(), v.elem_count())));
            }
            v.set(&candle_core::Tensor::from_vec(values, v.shape(), device)?)?;
        }
        live = vec![false; names.len()];
        for (k, ((name, (m, v)), t)) in c.slots.iter().zip(c.moments).zip(c.slot_steps).enumerate() {
            let i = names.iter().position(|n| n == name).ok_or_else(|| bad(format!("unknown parameter {name}")))?;
            opt.add(params[i].1.clone(), lr[i])?;
            opt.restore(k, m, v)?;
            opt.set_slot_steps(k, t);
            slot_param.push(i);
            live[i] = true;
        }
        opt.step = c.adam_step;
        shuffle.set_word_pos(c.shuffle_word_pos);
        (step, points, last_finite, first_epoch) = (c.step, c.points, c.last_finite_loss, c.epoch + 1);
        (thaws, frozen_checks) = (c.thaws, c.frozen_checks);
    } else {
        for i in (0..names.len()).filter(|&i| live[i]) {
            opt.add(params[i].1.clone(), lr[i])?;
            slot_param.push(i);
        }
    }
    let mut next_thaw = thaws.len();
    let mut diverged = None;
    let mut interrupted = false;
    let train_eval_windows = data.train_eval_windows();
    'epochs: for epoch in first_epoch..=cfg.epochs {
        let order = data.epoch_order(&mut shuffle);
        let batches: Vec<&[usize]> = order.chunks(cfg.batch_size).collect();
        for (b, windows) in batches.iter().enumerate() {
            if step == planned {
                break 'epochs;
            }
            while next_thaw < schedule.len() && schedule[next_thaw].0 <= step {
                for &i in &schedule[next_thaw].1 {
                    // The parameter was frozen until now: prove it, then let it train.
                    let start = frozen_start[i].as_ref().expect("a scheduled parameter was frozen");
                    frozen_checks.push(FrozenCheck::check(&names[i], start, params[i].1.as_tensor())?);
                    live[i] = true;
                    opt.add(params[i].1.clone(), lr[i])?;
                    slot_param.push(i);
                }
                let thawed: Vec<String> = schedule[next_thaw].1.iter().map(|&i| names[i].clone()).collect();
                thaws.push(Thaw { step, epoch, params: thawed });
                next_thaw += 1;
            }
            let (loss, mut grads) = net.loss_and_grads(data, windows, &live)?;
            if !loss.is_finite() {
                diverged = Some(Divergence { step: step + 1, last_finite_loss: last_finite });
                break 'epochs;
            }
            last_finite = Some(loss);
            let list: Vec<Grad> = slot_param
                .iter()
                .map(|&i| grads[i].take().ok_or_else(|| Error::Input(format!("no gradient for {}", names[i]))))
                .collect::<Result<_>>()?;
            opt.step(&list.iter().collect::<Vec<_>>())?;
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
                    test_loss: net.eval(data, test, &data.test)?,
                    train_eval_loss: Some(net.eval(data, train_eval, &train_eval_windows)?),
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
                    params: params
                        .iter()
                        .map(|(n, v)| Ok((n.clone(), v.flatten_all()?.to_vec1()?)))
                        .collect::<Result<_>>()?,
                    slots: slot_param.iter().map(|&i| names[i].clone()).collect(),
                    slot_steps: (0..opt.slots()).map(|k| opt.slot_steps(k)).collect(),
                    moments: (0..opt.slots()).map(|i| opt.moments(i)).collect::<Result<_>>()?,
                    thaws: thaws.clone(),
                    frozen_checks: frozen_checks.clone(),
                };
                obs.on_checkpoint((letter, seed), &c)?;
            }
        }
    }

    // Parameters frozen to the end are checked now.
    for i in (0..names.len()).filter(|&i| !live[i]) {
        if let Some(start) = &frozen_start[i] {
            frozen_checks.push(FrozenCheck::check(&names[i], start, params[i].1.as_tensor())?);
        }
    }
    let drift = match (&grafted_wte, live[0], &net) {
        (Some(g), true, Net::M1(m)) => {
            let fin: Vec<f32> = m.wte.flatten_all()?.to_vec1()?;
            let o = cfg.optimizer;
            Some(crate::drift::measure(&g.data, &fin, dim, input_freq, o.lr, o.weight_decay, step))
        }
        _ => None,
    };
    let result = RunResult {
        config: letter,
        seed,
        copied: graft_mask.iter().any(|&g| g),
        frozen: frozen.iter().any(|&f| f),
        total_params: params.iter().map(|(_, v)| v.elem_count()).sum(),
        trainable_params: opt.trainable_elements(),
        steps: step,
        points,
        graft: graft_what,
        copy_check: crate::graft::sum_copy_checks(&copy_checks),
        frozen_check: crate::graft::sum_frozen_checks(&frozen_checks),
        drift,
        diverged,
        interrupted,
        wall_seconds: started.elapsed().as_secs_f64(),
        sample: String::new(),
        model: model_label(cfg, model5),
        copy_checks,
        frozen_checks,
        thaws,
        notes,
    };
    Ok((result, net))
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
        let all = vec![true; names.len()];
        assert_eq!(thaw_groups(&names, &all), vec![vec![5], vec![4], vec![2, 3], vec![0, 1]]);
        let some = [true, false, false, false, true, false];
        assert_eq!(thaw_groups(&names, &some), vec![vec![4], vec![0]]);
        let m1: Vec<String> = vec!["wte".into(), "lm_head".into()];
        assert_eq!(thaw_groups(&m1, &[true, true]), vec![vec![1], vec![0]]);
    }
}
