//! Model 5's training step at GPT-2's width (V 50257, d 768, 12 heads, B 64, T 8), phase by
//! phase (median of 5 steps):
//!
//!   cargo run --release --example profile_model5 -- [LAYERS]
//!
//! Times loss and gradients through the fused head (`loss::head_cross_entropy_mean`) and
//! through candle's plain ops, and the AdamW step.
use std::time::Instant;

use candle_core::{Device, Tensor};
use embgraft::model::model5::{Activation, Model5, Model5Config};
use embgraft::ops::adamw::{AdamW, AdamWConfig};
use embgraft::ops::Grad;
use rand::{Rng, SeedableRng};

fn main() -> anyhow::Result<()> {
    let layers: usize = std::env::args().nth(1).map_or(2, |s| s.parse().unwrap());
    let cfg = Model5Config {
        vocab: 50257,
        dim: 768,
        heads: 12,
        layers,
        context: 8,
        tied: true,
        activation: Activation::GeluNew,
        layer_norm_eps: 1e-5,
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let m = Model5::random(cfg, &mut rng.clone(), &mut rng, &Device::Cpu)?;
    let live: embgraft::model::params::Names = m.params.names().into_iter().collect();
    let mut opt = AdamW::new(Vec::new(), AdamWConfig::default())?;
    for (name, v) in m.params.iter() {
        opt.add(name, v.clone(), 1e-3)?;
    }
    let (b, t) = (64, 8);
    // (fused head: loss+grads, plain: loss+grads, AdamW)
    let mut times: Vec<[f64; 3]> = Vec::new();
    for _ in 0..6 {
        let xs: Vec<u32> = (0..b * t).map(|_| rng.random_range(0..5000)).collect();
        let ys: Vec<u32> = (0..b * t).map(|_| rng.random_range(0..5000)).collect();
        let x = Tensor::from_vec(xs, (b, t), &Device::Cpu)?;
        let y = Tensor::from_vec(ys, (b, t), &Device::Cpu)?;
        let t0 = Instant::now();
        let (_, grads) = m.loss_and_grads(&x, &y, &live)?;
        let t1 = Instant::now();
        let _ = m.loss_and_grads_plain(&x, &y, &live)?;
        let t2 = Instant::now();
        let mut grads: std::collections::HashMap<String, Grad> =
            grads.into_iter().map(|(n, g)| (n, Grad::Dense(g))).collect();
        let t3 = Instant::now();
        opt.step_named(&mut grads)?;
        let t4 = Instant::now();
        times.push([(t1 - t0).as_secs_f64(), (t2 - t1).as_secs_f64(), (t4 - t3).as_secs_f64()]);
    }
    times.remove(0);
    for (k, name) in ["loss+grads, fused head", "loss+grads, plain", "AdamW"].iter().enumerate() {
        let mut v: Vec<f64> = times.iter().map(|t| t[k]).collect();
        v.sort_by(f64::total_cmp);
        println!("{name:>24}: {:7.1} ms", v[v.len() / 2] * 1e3);
    }
    Ok(())
}
