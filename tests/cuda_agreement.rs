//! The CUDA build trains what the CPU trains. Needs `--features cuda` (scripts/build-cuda.sh)
//! and a GPU, so every test here is ignored by a plain `cargo test`; on a GPU machine:
//!
//!     cargo test --release --features cuda --test cuda_agreement -- --ignored
//!
//! (or the test binary this builds, carried to the GPU machine, with `--ignored`).

mod common;

use candle_core::{Device, Tensor, Var};
use embgraft::config::{ExperimentConfig, Letter, ModelKind};
use embgraft::data::counts::TokenCounts;
use embgraft::experiment;
use embgraft::ops::adamw::{AdamW, AdamWConfig};
use embgraft::ops::loss::cross_entropy_sum;
use embgraft::ops::Grad;
use embgraft::train::{self, Observer};
use rand::{Rng, SeedableRng};

fn gpu() -> Device {
    Device::new_cuda(0).expect("no CUDA device: these tests need a GPU and a --features cuda build")
}

/// Every step's batch loss, in order.
#[derive(Default)]
struct StepLosses(Vec<f64>);

impl Observer for StepLosses {
    fn on_step(&mut self, _step: usize, loss: f64) {
        self.0.push(loss);
    }
}

fn close(a: f64, b: f64, what: &str) {
    let rel = ((a - b) / a.abs().max(1e-12)).abs();
    assert!(rel <= 1e-4, "{what}: CPU {a} vs CUDA {b} (relative difference {rel:.2e} > 1e-4)");
}

/// Trains every configuration of `cfg` for 20 steps on the CPU and on the GPU from the same
/// initialisation and batches (both are drawn on the host from the seed): every step's loss
/// and every curve point within 1e-4 relative, and on the GPU the copy checks pass and the
/// frozen parameters come back bit-identical (weight decay on: a leak would show).
fn agree(cfg: &ExperimentConfig) {
    let inputs = experiment::load_inputs(cfg).unwrap();
    let gpu = gpu();
    for &letter in &cfg.graft.configs.0 {
        let mut on_cpu = StepLosses::default();
        let (c, _) = train::run(cfg, letter, 0, &inputs.shared(&Device::Cpu), None, &mut on_cpu).unwrap();
        let mut on_gpu = StepLosses::default();
        let (g, _) = train::run(cfg, letter, 0, &inputs.shared(&gpu), None, &mut on_gpu).unwrap();
        assert_eq!((on_cpu.0.len(), on_gpu.0.len()), (20, 20), "{letter:?}");
        for (k, (a, b)) in on_cpu.0.iter().zip(&on_gpu.0).enumerate() {
            close(*a, *b, &format!("{letter:?} step {} loss", k + 1));
        }
        assert_eq!(c.points.len(), g.points.len());
        for (p, q) in c.points.iter().zip(&g.points) {
            close(p.test_loss, q.test_loss, &format!("{letter:?} test loss at step {}", p.step));
            close(p.train_eval_loss.unwrap(), q.train_eval_loss.unwrap(), &format!("{letter:?} train-eval loss"));
        }
        assert_eq!(g.copy_check.as_ref().map(|k| k.passed()), letter.copied().then_some(true), "{letter:?}: {g:?}");
        assert_eq!(g.frozen_check.as_ref().map(|k| k.passed()), letter.frozen().then_some(true), "{letter:?}: {g:?}");
        println!("{letter:?}: 20 steps agree, last loss CPU {:.6} CUDA {:.6}", on_cpu.0[19], on_gpu.0[19]);
    }
}

fn config(f: &common::Fixture) -> ExperimentConfig {
    let mut c = ExperimentConfig::default();
    c.data.corpora = vec![f.corpus.display().to_string()];
    c.data.donor = vec![f.donor.display().to_string()];
    (c.protocol.batch_size, c.protocol.epochs, c.protocol.max_steps, c.protocol.eval_every) =
        (16, 3, Some(20), Some(5));
    // Larger than the course's lr and decay, so a frozen parameter handed to AdamW would move.
    (c.optimizer.lr, c.optimizer.weight_decay) = (1e-2, 0.1);
    c.run.sample_tokens = 0;
    c.graft.configs.0 = vec![Letter::A, Letter::B, Letter::C, Letter::D];
    c
}

#[test]
#[ignore = "needs a CUDA GPU and --features cuda (scripts/build-cuda.sh)"]
fn model1_trains_the_same_on_cpu_and_cuda() {
    let f = common::fixture();
    agree(&config(&f));
}

#[test]
#[ignore = "needs a CUDA GPU and --features cuda (scripts/build-cuda.sh)"]
fn model5_trains_the_same_on_cpu_and_cuda() {
    let f = common::fixture();
    let mut c = config(&f);
    c.model.kind = ModelKind::Model5;
    (c.model.layers, c.model.heads) = (embgraft::config::Sweep::one(1), Some(2));
    c.graft.graft = "wte,wpe".into();
    agree(&c);
}

/// The fused cross-entropy on the GPU against the fused CPU pass, at GPT-2's vocabulary: the
/// loss within 1e-6 relative, the gradient within 1e-7 absolute (its entries are ≤ 1/N).
#[test]
#[ignore = "needs a CUDA GPU and --features cuda (scripts/build-cuda.sh)"]
fn cross_entropy_kernel_matches_the_cpu_pass() {
    let (rows, vocab, n) = (300, 50257, 512);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let xs: Vec<u32> = (0..n).map(|_| rng.random_range(0..rows as u32)).collect();
    let ys: Vec<u32> = (0..n).map(|_| rng.random_range(0..vocab as u32)).collect();
    let counts = TokenCounts::from_pairs(&xs, &ys);
    let z: Vec<f32> = (0..counts.rows() * vocab).map(|_| rng.random_range(-8.0f32..8.0)).collect();
    let shape = (counts.rows(), vocab);
    for grad in [false, true] {
        let (lc, gc) = cross_entropy_sum(Tensor::from_slice(&z, shape, &Device::Cpu).unwrap(), &counts, grad).unwrap();
        let (lg, gg) = cross_entropy_sum(Tensor::from_slice(&z, shape, &gpu()).unwrap(), &counts, grad).unwrap();
        assert!(((lc - lg) / lc).abs() < 1e-6, "loss CPU {lc} vs CUDA {lg}");
        if let (Some(gc), Some(gg)) = (gc, gg) {
            let diff = (gc - gg.to_device(&Device::Cpu).unwrap()).unwrap().abs().unwrap();
            let max = diff.max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(max < 1e-7, "largest gradient difference {max}");
        }
    }
}

/// The fused AdamW kernel against the fused CPU pass, five steps with weight decay, a dense
/// gradient, a row-sparse one (the embedding's) and gᵀ·h (the head's): the same bits (both
/// round every operation once, in the same order; the kernel is compiled with --fmad=false).
#[test]
#[ignore = "needs a CUDA GPU and --features cuda (scripts/build-cuda.sh)"]
fn adamw_kernel_gives_the_cpu_bits() {
    let (rows, cols, u) = (1000, 48, 37);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut draw = |n: usize| (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<f32>>();
    let theta = draw(rows * cols);
    let steps: Vec<(Vec<f32>, Vec<u32>, Vec<f32>, Vec<f32>, Vec<f32>)> = (0..5)
        .map(|k| {
            let ids: Vec<u32> = (0..u as u32).map(|i| (i * 17 + k * 3) % rows as u32).collect();
            (draw(rows * cols), ids, draw(u * cols), draw(u * rows), draw(u * cols))
        })
        .collect();
    let cfg = AdamWConfig { lr: 1e-2, weight_decay: 0.1, ..AdamWConfig::default() };
    let run = |dev: &Device, kind: usize| -> (Vec<u32>, Vec<u32>) {
        let p = Var::from_slice(&theta, (rows, cols), dev).unwrap();
        let mut opt = AdamW::new(vec![p.clone()], cfg).unwrap();
        for (dense, ids, sparse, g, h) in &steps {
            let grad = match kind {
                0 => Grad::Dense(Tensor::from_slice(dense, (rows, cols), dev).unwrap()),
                1 => Grad::Rows { ids: ids.clone(), rows: Tensor::from_slice(sparse, (u, cols), dev).unwrap() },
                _ => Grad::Outer {
                    g: Tensor::from_slice(g, (u, rows), dev).unwrap(),
                    h: Tensor::from_slice(h, (u, cols), dev).unwrap(),
                },
            };
            opt.step(&[&grad]).unwrap();
        }
        let bits = |v: Vec<f32>| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
        let (m, _) = opt.moments(0).unwrap();
        (bits(p.flatten_all().unwrap().to_vec1().unwrap()), bits(m))
    };
    for (kind, name) in ["dense", "row-sparse", "outer"].iter().enumerate() {
        let (cpu, gpu_) = (run(&Device::Cpu, kind), run(&gpu(), kind));
        if kind == 2 {
            // gᵀ·h: cuBLAS and the CPU GEMM sum in different orders, so the gradient itself
            // differs in its last bits; the update is checked to 1e-6.
            let f = |b: &[u32]| b.iter().map(|&x| f32::from_bits(x)).collect::<Vec<f32>>();
            let worst = f(&cpu.0).iter().zip(f(&gpu_.0)).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-6, "{name}: largest parameter difference {worst}");
        } else {
            assert!(cpu == gpu_, "{name}: CUDA AdamW differs from the CPU pass");
        }
    }
}
