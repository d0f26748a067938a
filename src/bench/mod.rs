//! `embgraft bench`: times Model 1's (Model 5's: [`model5`]) training step (forward, loss, backward, AdamW) at a given
//! shape, frozen or trainable, the fused way or the plain way, on batches that
//! `bench/model1_bench.py` (the PyTorch reference) reads too. One (shape, mode) per process, so
//! the peak RSS belongs to that configuration alone.

use std::path::Path;
use std::time::Instant;

use candle_core::Device;
use rand::{Rng, SeedableRng};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::Serialize;

use crate::data::counts::TokenCounts;
use crate::error::{Error, Result};
use crate::model::model1::Model1;
use crate::ops::adamw::{AdamW, AdamWConfig};

pub mod command;
pub mod gemm;
pub mod model5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Impl {
    /// Distinct-token cross-entropy, hand-derived gradients, no input gradient when frozen,
    /// one-pass AdamW.
    Fused,
    /// candle's autograd over every position, `cross_entropy`, tensor-op AdamW.
    Plain,
}

#[derive(Debug, Serialize)]
pub struct BenchResult {
    pub implementation: String,
    /// cpu, cuda or cuda:N.
    pub device: String,
    pub batch: usize,
    pub seq_len: usize,
    pub trainable: bool,
    pub steps: usize,
    pub median_step_s: f64,
    pub tokens_per_s: f64,
    pub peak_rss_mb: f64,
    /// On CUDA: the most device memory in use at any step's end (total − free, sampled after
    /// each step), less what was in use before the model existed; none on the CPU.
    pub peak_gpu_mb: Option<f64>,
    pub final_loss: f64,
    /// With `--profile`: median milliseconds of each part of the fused step, the device
    /// synchronised after each (so their sum exceeds the step's time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phases_ms: Option<std::collections::BTreeMap<&'static str, f64>>,
    /// GEMMs in TF32 on a GPU (--tf32): faster, less exact than the default full f32.
    pub tf32: bool,
    /// The CPU matrix-product kernels this build runs here ([`crate::ops::gemm::kernels`]).
    pub kernels: String,
}

/// Batches of `steps` x `batch` windows of `seq_len + 1` tokens, from `tokens` at random places.
pub fn make_batches(tokens: &[u32], steps: usize, batch: usize, seq_len: usize, seed: u64) -> Result<Vec<Vec<u32>>> {
    if tokens.len() < seq_len.saturating_add(2) {
        return Err(crate::error::Error::Input(format!(
            "the corpus has {} tokens, too few for windows of {seq_len}; use a longer corpus or a smaller --shape",
            tokens.len()
        )));
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    Ok((0..steps)
        .map(|_| {
            (0..batch)
                .flat_map(|_| {
                    let s = rng.random_range(0..tokens.len() - seq_len - 1);
                    tokens[s..s + seq_len + 1].to_vec()
                })
                .collect()
        })
        .collect())
}

/// Writes batches as an I64 tensor (steps, batch, seq_len + 1), the layout the PyTorch script reads.
pub fn save_batches(path: &Path, batches: &[Vec<u32>], batch: usize, seq_len: usize) -> Result<()> {
    let bytes: Vec<u8> = batches.iter().flatten().flat_map(|&t| (t as i64).to_le_bytes()).collect();
    let view = TensorView::new(Dtype::I64, vec![batches.len(), batch, seq_len + 1], &bytes)
        .map_err(|e| Error::Output(e.to_string()))?;
    let data =
        safetensors::serialize([("tokens".to_string(), view)], None).map_err(|e| Error::Output(e.to_string()))?;
    crate::util::write_atomic(path, &data)
}

/// Writes token ids as a one-dimensional I64 tensor `tokens`.
pub fn save_tokens(path: &Path, tokens: &[u32], force: bool) -> Result<()> {
    let bytes: Vec<u8> = tokens.iter().flat_map(|&t| (t as i64).to_le_bytes()).collect();
    let view = TensorView::new(Dtype::I64, vec![tokens.len()], &bytes).map_err(|e| Error::Output(e.to_string()))?;
    let data =
        safetensors::serialize([("tokens".to_string(), view)], None).map_err(|e| Error::Output(e.to_string()))?;
    crate::util::write_output(path, "--tokens-out", force, &data)
}

pub fn load_batches(path: &Path) -> Result<(Vec<Vec<u32>>, usize, usize)> {
    let bytes = crate::util::read_input(path, "--batches", 16 << 30, "give a smaller batches file")?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
    let t = st.tensor("tokens").map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
    let &[_, batch, window] = t.shape() else {
        return Err(Error::Input(format!("{}: tokens must be (steps, batch, seq_len + 1)", path.display())));
    };
    let ids: Vec<u32> = t.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32).collect();
    Ok((ids.chunks(batch * window).map(|c| c.to_vec()).collect(), batch, window - 1))
}

/// Peak resident set size of this process so far, in MiB (Linux; 0 elsewhere).
pub fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// What one measurement times.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub batch: usize,
    pub seq_len: usize,
    pub vocab: usize,
    pub dim: usize,
    pub trainable: bool,
    pub imp: Impl,
    /// Untimed steps first.
    pub warmup: usize,
    /// Also time each part of the step (fused only).
    pub profile: bool,
    /// Let the GEMMs use TF32 tensor cores on CUDA.
    pub tf32: bool,
}

/// Times one step per batch after `spec.warmup` untimed ones, on `dev` (a step ends when the
/// device has finished it).
pub fn run(batches: &[Vec<u32>], spec: Spec, dev: &Device) -> Result<BenchResult> {
    let Spec { batch, seq_len, vocab, dim, trainable, imp, warmup, profile, tf32 } = spec;
    set_tf32(tf32);
    dev.synchronize()?;
    let memory_before = memory_used(dev);
    let mut peak = memory_before;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let model = Model1::random(vocab, dim, &mut rng.clone(), &mut rng, dev)?;
    let params = model.trainable(trainable);
    let mut opt = match imp {
        Impl::Fused => AdamW::new(params, AdamWConfig::default())?,
        Impl::Plain => AdamW::new_unfused(params, AdamWConfig::default())?,
    };
    let mut times = Vec::new();
    let mut loss = 0.0;
    let pairs = |b: &[u32]| window_pairs(b, seq_len);
    for (i, b) in batches.iter().enumerate() {
        let (xs, ys) = pairs(b);
        let t0 = Instant::now();
        let (l, grads) = match imp {
            Impl::Fused => model.loss_and_grads(&TokenCounts::from_pairs(&xs, &ys), trainable)?,
            Impl::Plain => model.loss_and_grads_autograd(&xs, &ys, trainable)?,
        };
        opt.step(&grads.into_list().iter().collect::<Vec<_>>())?;
        dev.synchronize()?;
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
        loss = l;
        peak = peak.max(memory_used(dev));
    }
    if times.is_empty() {
        return Err(Error::Input("bench needs more batches than --warmup".into()));
    }
    let (steps, median) = (times.len(), median(times));
    let phases_ms = match profile && imp == Impl::Fused {
        true => Some(profile_phases(
            &model,
            &mut opt,
            &batches.iter().map(|b| pairs(b)).collect::<Vec<_>>(),
            trainable,
            dev,
        )?),
        false => None,
    };
    set_tf32(false);
    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    Ok(BenchResult {
        implementation: format!("embgraft-{}", serde_json::to_value(imp).unwrap().as_str().unwrap()),
        device: device_name(dev),
        batch,
        seq_len,
        trainable,
        steps,
        median_step_s: median,
        tokens_per_s: (batch * seq_len) as f64 / median,
        peak_rss_mb: peak_rss_mb(),
        peak_gpu_mb: match (memory_before, peak) {
            (Some(before), Some(peak)) => Some(mib(peak.saturating_sub(before))),
            _ => None,
        },
        final_loss: loss,
        phases_ms,
        tf32,
        kernels: crate::ops::gemm::kernels(),
    })
}

/// The fused step cut into its parts, the device synchronised after each: median ms per part.
fn profile_phases(
    model: &Model1,
    opt: &mut AdamW,
    batches: &[(Vec<u32>, Vec<u32>)],
    trainable: bool,
    dev: &Device,
) -> Result<std::collections::BTreeMap<&'static str, f64>> {
    use crate::ops::Grad;
    let mut parts: std::collections::BTreeMap<&'static str, Vec<f64>> = Default::default();
    for (xs, ys) in batches {
        let mut t = Instant::now();
        let mut lap =
            |name: &'static str, parts: &mut std::collections::BTreeMap<&'static str, Vec<f64>>| -> Result<()> {
                dev.synchronize()?;
                parts.entry(name).or_default().push(t.elapsed().as_secs_f64() * 1e3);
                t = Instant::now();
                Ok(())
            };
        let counts = TokenCounts::from_pairs(xs, ys);
        let ids = candle_core::Tensor::from_slice(&counts.tokens, counts.rows(), dev)?;
        let e = model.wte.as_tensor().index_select(&ids, 0)?; // (U, d)
        let h = e.gelu_erf()?;
        lap("1 gather + gelu", &mut parts)?;
        let z = crate::ops::gemm::tensor_product(&h, model.lm_head.as_tensor(), true)?; // (U, V)
        lap("2 logits GEMM", &mut parts)?;
        let (_, g) = crate::ops::loss::cross_entropy_sum(z, &counts, true)?;
        let g = g.expect("gradient requested");
        lap("3 cross-entropy", &mut parts)?;
        let mut grads = Vec::new();
        if trainable {
            let dh = crate::ops::gemm::tensor_product(&g, model.lm_head.as_tensor(), false)?;
            let rows = (dh * crate::model::model1::gelu_erf_derivative(&e)?)?;
            grads.push(Grad::Rows { ids: counts.tokens.clone(), rows });
            lap("4 input gradient", &mut parts)?;
        }
        // As the step does it: the head's gradient gᵀ·h block by block inside AdamW.
        grads.push(Grad::Outer { g, h });
        opt.step(&grads.iter().collect::<Vec<_>>())?;
        lap("5 head gradient GEMM + AdamW", &mut parts)?;
    }
    Ok(parts.into_iter().map(|(k, v)| (k, median(v))).collect())
}

/// Inputs and targets of a batch of windows of `seq_len + 1` tokens laid end to end.
fn window_pairs(b: &[u32], seq_len: usize) -> (Vec<u32>, Vec<u32>) {
    let (mut xs, mut ys) = (Vec::with_capacity(b.len()), Vec::with_capacity(b.len()));
    for w in b.chunks(seq_len + 1) {
        xs.extend_from_slice(&w[..seq_len]);
        ys.extend_from_slice(&w[1..]);
    }
    (xs, ys)
}

/// The upper median (the middle value; of two, the later): NaN for no values.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

#[cfg(feature = "cuda")]
fn set_tf32(on: bool) {
    candle_core::cuda::set_gemm_reduced_precision_f32(on);
}

#[cfg(not(feature = "cuda"))]
fn set_tf32(_: bool) {}

fn device_name(dev: &Device) -> String {
    match dev.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(feature = "cuda")]
fn memory_used(dev: &Device) -> Option<usize> {
    crate::ops::cuda::memory_used(dev)
}

#[cfg(not(feature = "cuda"))]
fn memory_used(_: &Device) -> Option<usize> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_and_fused_matches_plain() {
        let tokens: Vec<u32> = (0..5000).map(|i| (i * 7 % 97) as u32).collect();
        let batches = make_batches(&tokens, 6, 4, 5, 1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.safetensors");
        save_batches(&p, &batches, 4, 5).unwrap();
        let (back, b, t) = load_batches(&p).unwrap();
        assert_eq!((back.clone(), b, t), (batches, 4, 5));
        for trainable in [false, true] {
            let spec = Spec {
                batch: 4,
                seq_len: 5,
                vocab: 97,
                dim: 16,
                trainable,
                imp: Impl::Fused,
                warmup: 1,
                profile: true,
                tf32: false,
            };
            let fused = run(&back, spec, &Device::Cpu).unwrap();
            let plain = run(&back, Spec { imp: Impl::Plain, ..spec }, &Device::Cpu).unwrap();
            assert_eq!((fused.device.as_str(), fused.peak_gpu_mb), ("cpu", None));
            let phases = fused.phases_ms.as_ref().unwrap();
            assert_eq!(phases.len(), if trainable { 5 } else { 4 });
            assert_eq!(fused.steps, 5);
            assert!((fused.final_loss - plain.final_loss).abs() < 1e-4, "{} vs {}", fused.final_loss, plain.final_loss);
            assert!(fused.tokens_per_s > 0.0 && fused.peak_rss_mb > 0.0);
        }
    }
}
