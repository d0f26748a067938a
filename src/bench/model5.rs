//! `embgraft bench --model model5`: Model 5's training step (loss, gradients of every
//! parameter, AdamW) and its evaluation (loss without gradients), the fused CPU decoder or
//! candle's autograd, on the batches `bench/model5_bench.py` (transformers' GPT-2) reads too.

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use serde::Serialize;

use crate::bench::{median, peak_rss_mb, window_pairs, Impl};
use crate::error::{Error, Result};
use crate::model::model5::{Activation, Model5, Model5Config};
use crate::model::params::Names;
use crate::ops::adamw::{AdamW, AdamWConfig};
use crate::ops::decoder::profile;

/// The sizes one measurement times.
#[derive(Clone, Copy, Debug)]
pub struct Spec5 {
    pub batch: usize,
    pub seq_len: usize,
    pub vocab: usize,
    pub dim: usize,
    pub heads: usize,
    pub layers: usize,
    pub imp: Impl,
    pub warmup: usize,
    pub profile: bool,
}

#[derive(Debug, Serialize)]
pub struct Bench5Result {
    pub implementation: String,
    pub model: &'static str,
    pub layers: usize,
    pub dim: usize,
    pub heads: usize,
    pub batch: usize,
    pub seq_len: usize,
    pub steps: usize,
    pub median_step_s: f64,
    pub tokens_per_s: f64,
    /// Loss of a batch without gradients, the way a curve point evaluates.
    pub median_eval_s: f64,
    pub eval_tokens_per_s: f64,
    /// Floating-point operations of one training step (forward and backward of every GEMM and
    /// attention product; AdamW's and the elementwise work left out), for the share of peak.
    pub step_gflop: f64,
    pub peak_rss_mb: f64,
    pub final_loss: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phases_ms: Option<BTreeMap<&'static str, f64>>,
    /// The evaluation's parts, ms per batch, with "(whole evaluation)" beside them so what no
    /// part holds shows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_phases_ms: Option<BTreeMap<&'static str, f64>>,
    /// The CPU matrix-product kernels this build runs here ([`crate::ops::gemm::kernels`]).
    pub kernels: String,
}

impl Spec5 {
    /// The model timed: GPT-2's form (tied head, `gelu_new`, LayerNorm eps 1e-5) at these sizes.
    pub fn config(&self) -> Model5Config {
        Model5Config {
            vocab: self.vocab,
            dim: self.dim,
            heads: self.heads,
            layers: self.layers,
            context: self.seq_len,
            tied: true,
            activation: Activation::GeluNew,
            layer_norm_eps: 1e-5,
        }
    }
}

/// GEMM FLOPs of a forward pass over `n` = B·T positions: 2 per multiply-add; the training
/// step is three times this (forward, and the two products of each backward).
pub fn forward_flop(s: &Spec5) -> f64 {
    let (n, d, t, v, l) = (s.batch * s.seq_len, s.dim, s.seq_len, s.vocab, s.layers);
    let per_block = 2.0 * n as f64 * (12 * d * d) as f64 + 2.0 * 2.0 * n as f64 * (t * d) as f64;
    l as f64 * per_block + 2.0 * (n * d) as f64 * v as f64
}

/// Passes over the batches the evaluation is timed on.
const EVAL_ROUNDS: usize = 3;

/// Times one training step per batch after `warmup` untimed ones, then `EVAL_ROUNDS` evaluations of each
/// batch, on the CPU.
pub fn run(batches: &[Vec<u32>], s: Spec5) -> Result<Bench5Result> {
    let cfg = s.config();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let dev = Device::Cpu;
    let model = Model5::random(cfg, &mut rng.clone(), &mut rng, &dev)?;
    let live: Names = model.names().into_iter().collect();
    let mut opt = AdamW::new(Vec::new(), AdamWConfig::default())?;
    for (name, var) in model.params.iter() {
        opt.add(name, var.clone(), AdamWConfig::default().lr)?;
    }
    let tensors = |b: &[u32]| -> Result<(Tensor, Tensor)> {
        let (xs, ys) = window_pairs(b, s.seq_len);
        let shape = (s.batch, s.seq_len);
        Ok((Tensor::from_vec(xs, shape, &dev)?, Tensor::from_vec(ys, shape, &dev)?))
    };
    profile::enable(s.profile);
    let (mut times, mut loss) = (Vec::new(), 0.0);
    for (i, b) in batches.iter().enumerate() {
        let (x, y) = tensors(b)?;
        let t0 = Instant::now();
        let (l, grads) = match s.imp {
            Impl::Fused => model.loss_and_grads(&x, &y, &live)?,
            Impl::Plain => model.loss_and_grads_autograd(&x, &y, &live)?,
        };
        let t_grads = t0.elapsed().as_secs_f64();
        let mut grads = grads.into_iter().map(|(n, g)| (n, crate::ops::Grad::Dense(g))).collect();
        opt.step_named(&mut grads)?;
        if i >= s.warmup {
            times.push(t0.elapsed().as_secs_f64());
            profile::add("adamw", t0.elapsed().as_secs_f64() - t_grads);
        } else {
            profile::clear();
        }
        loss = l;
    }
    let timed = times.len();
    let phases = profile::take(timed);
    let mut evals = Vec::new();
    // EVAL_ROUNDS passes (one call is short, one pass few samples), the first `warmup` calls
    // untimed, as bench/model5_bench.py does.
    let calls = batches.iter().cycle().take(EVAL_ROUNDS * batches.len()).enumerate();
    for (j, b) in calls {
        let (x, y) = tensors(b)?;
        let t0 = Instant::now();
        let sum = match s.imp {
            Impl::Fused => model.loss_sum(&x, &y)?,
            Impl::Plain => {
                let logits = model.logits(&x, &Names::new())?;
                candle_nn::loss::cross_entropy(&logits, &y.flatten_all()?)?.to_scalar::<f32>()? as f64
            }
        };
        std::hint::black_box(sum);
        if j < s.warmup {
            profile::clear();
            continue;
        }
        evals.push(t0.elapsed().as_secs_f64());
        profile::add("(whole evaluation)", t0.elapsed().as_secs_f64());
    }
    let eval_phases = profile::take(evals.len());
    if times.is_empty() {
        return Err(Error::Input("bench needs more batches than --warmup".into()));
    }
    let (median, eval) = (median(times), median(evals));
    let tokens = (s.batch * s.seq_len) as f64;
    Ok(Bench5Result {
        implementation: format!("embgraft-{}", if s.imp == Impl::Fused { "fused" } else { "plain" }),
        model: "model5",
        layers: s.layers,
        dim: s.dim,
        heads: s.heads,
        batch: s.batch,
        seq_len: s.seq_len,
        steps: timed,
        median_step_s: median,
        tokens_per_s: tokens / median,
        median_eval_s: eval,
        eval_tokens_per_s: tokens / eval,
        step_gflop: 3.0 * forward_flop(&s) / 1e9,
        peak_rss_mb: peak_rss_mb(),
        final_loss: loss,
        phases_ms: s.profile.then_some(phases),
        eval_phases_ms: s.profile.then_some(eval_phases),
        kernels: crate::ops::gemm::kernels(),
    })
}
