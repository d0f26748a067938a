//! `embgraft bench --gemm`: the matrix products the two models' steps are made of, at the
//! models' shapes and in the layouts the code asks for, timed through embgraft's own door to
//! the `gemm` crate ([`crate::ops::gemm`]) and through candle's `matmul` (which Model 1's head
//! uses). `bench/gemm_bench.py` times the same list with numpy (OpenBLAS) and PyTorch (MKL or
//! OpenBLAS) on the same machine, and `bench/gemm_compare.sh` puts them side by side.

use std::time::Instant;

use candle_core::{Device, Tensor};
use serde::Serialize;

use crate::error::Result;
use crate::ops::gemm::{matmul, View};

/// How an operand is stored: row-major as the product reads it, or stored transposed (the
/// weight of `x · Wᵀ`, the `gᵀ` of a weight gradient) and read through a transposed view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    N,
    T,
}

/// One product `C (m x n) = A (m x k) · B (k x n)`, `repeat` times (attention's per-head
/// products), with where it occurs.
#[derive(Clone, Debug, Serialize)]
pub struct Shape {
    pub name: String,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub a: Layout,
    pub b: Layout,
    pub repeat: usize,
}

impl Shape {
    fn new(name: String, (m, k, n): (usize, usize, usize), (a, b): (Layout, Layout), repeat: usize) -> Shape {
        Shape { name, m, k, n, a, b, repeat }
    }

    pub fn flops(&self) -> f64 {
        2.0 * (self.m * self.k * self.n * self.repeat) as f64
    }
}

/// The shapes: for batches 64x8, 16x64 and 8x256 (N positions) and widths 384 and 768, the
/// head's logits (x · Wᵀ), input gradient (g · W) and weight gradient (gᵀ · x) for
/// vocabularies 30522 and 50257; Model 5's projections (qkv, attention output, MLP in and
/// out) forward and both gradients; attention's scores (q · kᵀ) and context (p · v) per head.
pub fn shapes() -> Vec<Shape> {
    use Layout::{N, T};
    let mut out = Vec::new();
    for (b, t) in [(64, 8), (16, 64), (8, 256)] {
        let rows = b * t;
        for d in [384, 768] {
            for v in [30522, 50257] {
                let at = |what: &str| format!("head.{what} {b}x{t} d{d} V{v}");
                out.push(Shape::new(at("logits"), (rows, d, v), (N, T), 1));
                out.push(Shape::new(at("dx"), (rows, v, d), (N, N), 1));
                out.push(Shape::new(at("dw"), (v, rows, d), (T, N), 1));
            }
            for (what, i, o) in [("qkv", d, 3 * d), ("attn.proj", d, d), ("mlp.fc", d, 4 * d), ("mlp.proj", 4 * d, d)] {
                let at = |pass: &str| format!("{what}.{pass} {b}x{t} d{d}");
                out.push(Shape::new(at("fwd"), (rows, i, o), (N, T), 1));
                out.push(Shape::new(at("dx"), (rows, o, i), (N, N), 1));
                out.push(Shape::new(at("dw"), (o, rows, i), (T, N), 1));
            }
            let (heads, hd) = (d / 64, 64);
            out.push(Shape::new(format!("attn.scores {b}x{t} d{d}"), (t, hd, t), (N, T), b * heads));
            out.push(Shape::new(format!("attn.context {b}x{t} d{d}"), (t, t, hd), (N, N), b * heads));
        }
    }
    out
}

/// One shape's timing through one backend.
#[derive(Debug, Serialize)]
pub struct GemmResult {
    pub shape: Shape,
    pub backend: &'static str,
    pub median_s: f64,
    pub gflops: f64,
    /// The `gemm` crate's kernels in this build on this CPU ([`crate::ops::gemm::kernels`]).
    pub kernels: String,
}

/// Deterministic operand values in [-0.5, 0.5).
fn values(n: usize, salt: usize) -> Vec<f32> {
    (0..n).map(|i| (((i + salt) * 2_654_435_761) % 4096) as f32 / 4096.0 - 0.5).collect()
}

/// The median of `reps` timed calls of `f`, after one untimed.
fn timed(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        f()?;
        t.push(t0.elapsed().as_secs_f64());
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

/// A view of stored data for `layout`: an (r x c) operand stored as is, or stored (c x r).
fn view(data: &[f32], r: usize, c: usize, layout: Layout) -> View<'_> {
    match layout {
        Layout::N => View::row_major(data, r, c),
        Layout::T => View::transposed(data, r, c),
    }
}

/// Times `s` through embgraft's matmul door as the models call it (the output split over rayon's
/// threads for the big products, a long-inner-dimension projection through a copy of wᵀ;
/// attention's per-head products one per thread, as the decoder runs them), then, where the door
/// runs a BLAS, through the `gemm` crate alone, and through candle's matmul on contiguous
/// tensors: `reps` timed calls after one untimed each.
pub fn time(s: &Shape, reps: usize) -> Result<Vec<GemmResult>> {
    use rayon::prelude::*;
    let (a, b) = (values(s.m * s.k, 1), values(s.k * s.n, 7));
    let mut c = vec![0f32; s.m * s.n * s.repeat];
    let mut door = || -> Result<()> {
        let (av, bv) = (view(&a, s.m, s.k, s.a), view(&b, s.k, s.n, s.b));
        match s.repeat {
            // As `decoder::linear` runs a projection whose inner dimension is the longer one:
            // through a row-major copy of the stored transpose, the copy timed with it.
            1 if s.b == Layout::T && s.k > s.n => {
                let bt = crate::ops::decoder::transpose(&b, s.n, s.k);
                matmul(&mut c, av, View::row_major(&bt, s.k, s.n), true)
            }
            1 => matmul(&mut c, av, bv, true),
            _ => c.par_chunks_mut(s.m * s.n).try_for_each(|c| matmul(c, av, bv, false)),
        }
    };
    let mut out = vec![result(s, "embgraft", timed(reps, &mut door)?)];
    // Where the door runs a BLAS, the `gemm` crate it would otherwise run, timed the same way.
    if crate::ops::gemm::blas()?.is_some() {
        let mut own = || -> Result<()> {
            let (av, bv) = (view(&a, s.m, s.k, s.a), view(&b, s.k, s.n, s.b));
            match s.repeat {
                1 => crate::ops::gemm::crate_matmul(&mut c, av, bv, false, true),
                _ => c
                    .par_chunks_mut(s.m * s.n)
                    .try_for_each(|c| crate::ops::gemm::crate_matmul(c, av, bv, false, false)),
            }
        };
        out.push(result(s, "gemm-crate", timed(reps, &mut own)?));
    }
    // candle: the stored operands as tensors, transposed where stored so (a lazy view).
    let dev = Device::Cpu;
    let operand = |data: &[f32], r: usize, c: usize, l: Layout| -> Result<Tensor> {
        Ok(match l {
            Layout::N => Tensor::from_slice(data, (r, c), &dev)?,
            Layout::T => Tensor::from_slice(data, (c, r), &dev)?.t()?,
        })
    };
    let (ta, tb) = (operand(&a, s.m, s.k, s.a)?, operand(&b, s.k, s.n, s.b)?);
    let (ta, tb) = match s.repeat {
        1 => (ta, tb),
        r => (
            ta.unsqueeze(0)?.broadcast_as((r, s.m, s.k))?.contiguous()?,
            tb.unsqueeze(0)?.broadcast_as((r, s.k, s.n))?.contiguous()?,
        ),
    };
    out.push(result(s, "candle", timed(reps, || Ok(ta.matmul(&tb).map(drop)?))?));
    Ok(out)
}

fn result(s: &Shape, backend: &'static str, median_s: f64) -> GemmResult {
    GemmResult {
        shape: s.clone(),
        backend,
        median_s,
        gflops: s.flops() / median_s / 1e9,
        kernels: crate::ops::gemm::kernels(),
    }
}

/// Every shape (those whose name contains `only`, when given), each backend, one JSON line
/// per result.
pub fn run(reps: usize, only: Option<&str>, mut emit: impl FnMut(&GemmResult)) -> Result<()> {
    for s in shapes().iter().filter(|s| only.is_none_or(|o| s.name.contains(o))) {
        for r in time(s, reps)? {
            emit(&r);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shape's views fit their data, and both backends compute the product (checked
    /// against each other on a small shape).
    #[test]
    fn every_shape_is_well_formed_and_the_backends_agree() {
        let all = shapes();
        assert_eq!(all.len(), 3 * 2 * (2 * 3 + 4 * 3 + 2));
        let s = Shape::new("t".into(), (5, 7, 3), (Layout::T, Layout::T), 1);
        let (a, b) = (values(35, 1), values(21, 7));
        let mut c = vec![0f32; 15];
        matmul(&mut c, view(&a, 5, 7, Layout::T), view(&b, 7, 3, Layout::T), false).unwrap();
        let ta = Tensor::from_slice(&a, (7, 5), &Device::Cpu).unwrap().t().unwrap();
        let tb = Tensor::from_slice(&b, (3, 7), &Device::Cpu).unwrap().t().unwrap();
        let want: Vec<f32> = ta.matmul(&tb).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert!(c.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-5), "{c:?} vs {want:?}");
        assert!(time(&s, 1).unwrap().iter().all(|r| r.gflops > 0.0));
    }
}
