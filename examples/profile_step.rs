//! Where Model 1's fused training step spends its time, phase by phase (median of 7 steps).
//!
//!   cargo run --release --example profile_step -- [BATCHxSEQ_LEN] [distinct tokens]
//!
//! Synthetic batches with a chosen number of distinct input tokens (The Time Machine's 64x8
//! batches have about 300).
use std::time::Instant;

use candle_core::{Device, Tensor};
use embgraft::data::counts::TokenCounts;
use embgraft::model::model1::Model1;
use embgraft::ops::adamw::{AdamW, AdamWConfig};
use embgraft::ops::loss::cross_entropy_sum;
use embgraft::ops::Grad;
use rand::{Rng, SeedableRng};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let shape = args.get(1).map_or("64x8", |s| s.as_str());
    let (b, t) =
        shape.split_once('x').map(|(b, t)| (b.parse::<usize>().unwrap(), t.parse::<usize>().unwrap())).unwrap();
    let distinct: u32 = args.get(2).map_or(300, |s| s.parse().unwrap());
    let (v, d) = (50257, 768);
    let dev = Device::Cpu;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let m = Model1::random(v, d, &mut rng.clone(), &mut rng, &dev)?;
    let mut opt = AdamW::new(vec![m.wte.clone()], AdamWConfig::default())?;
    let mut head_opt = AdamW::new(vec![m.lm_head.clone()], AdamWConfig::default())?;
    let mut phases: Vec<Vec<f64>> = vec![Vec::new(); 6];
    for _ in 0..8 {
        let xs: Vec<u32> = (0..b * t).map(|_| rng.random_range(0..distinct) * 37 % v as u32).collect();
        let ys: Vec<u32> = (0..b * t).map(|_| rng.random_range(0..v as u32)).collect();
        let mut clock = Instant::now();
        let mut lap = |k: usize, phases: &mut Vec<Vec<f64>>| {
            phases[k].push(clock.elapsed().as_secs_f64());
            clock = Instant::now();
        };
        let counts = TokenCounts::from_pairs(&xs, &ys);
        let ids = Tensor::from_slice(&counts.tokens, counts.rows(), &dev)?;
        let h = m.wte.as_tensor().index_select(&ids, 0)?.gelu_erf()?;
        lap(0, &mut phases);
        let z = h.matmul(&m.lm_head.as_tensor().t()?)?;
        lap(1, &mut phases);
        let (_, g) = cross_entropy_sum(z, &counts, true)?;
        let g = g.unwrap();
        lap(2, &mut phases);
        let dh = g.matmul(m.lm_head.as_tensor())?;
        lap(3, &mut phases);
        let grads = [Grad::Rows { ids: counts.tokens.clone(), rows: dh }];
        opt.step(&grads.iter().collect::<Vec<_>>())?;
        lap(4, &mut phases);
        head_opt.step(&[&Grad::Outer { g, h }])?;
        lap(5, &mut phases);
    }
    let names = ["gather+gelu", "logits GEMM", "fused CE", "dX GEMM", "AdamW wte rows", "dW+AdamW head"];
    let mut total = 0.0;
    for (n, mut p) in names.iter().zip(phases) {
        p.remove(0);
        p.sort_by(f64::total_cmp);
        let med = p[p.len() / 2];
        total += med;
        println!("{n:>14}: {:7.1} ms", med * 1e3);
    }
    println!("{:>14}: {:7.1} ms", "total", total * 1e3);
    Ok(())
}
