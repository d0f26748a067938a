//! The fused CPU pieces of Model 5's decoder, on plain f32 slices: LayerNorm, GELU, the
//! projections (GEMM plus bias), causal attention per (window, head), and the tied head's
//! cross-entropy by blocks of rows. Each forward has its backward beside it; the tests hold
//! both against candle's autograd over the same formulas (the plain path in `model5.rs`).
//!
//! Sums that cross rows (a bias's or a LayerNorm gain's gradient, the loss) are taken over
//! fixed blocks of rows and then added block by block in order, and every GEMM splits only its
//! output among threads, so a result never depends on how many threads computed it.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::ops::gemm::{matmul, matmul_into, View};
use crate::ops::lanes::{self, wide};

/// Rows per block in the cross-row sums: fixed, so the sums' order is too.
const SUM_ROWS: usize = 32;

/// Rows of the head's logits held at once: (HEAD_ROWS x V) floats, never (B·T x V).
pub const HEAD_ROWS: usize = 1024;

/// Where the fused step's time goes, for `embgraft bench --profile`: each kernel holds a
/// [`profile::Lap`] while it runs; off, a lap is one relaxed load.
pub mod profile {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    use std::time::Instant;

    static ON: AtomicBool = AtomicBool::new(false);
    static PARTS: Mutex<BTreeMap<&'static str, f64>> = Mutex::new(BTreeMap::new());

    pub fn enable(on: bool) {
        ON.store(on, Ordering::Relaxed);
        clear();
    }

    pub fn add(name: &'static str, seconds: f64) {
        if ON.load(Ordering::Relaxed) {
            *PARTS.lock().unwrap_or_else(|e| e.into_inner()).entry(name).or_default() += seconds;
        }
    }

    pub fn clear() {
        PARTS.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Milliseconds per step of each part over `steps` steps, and a fresh start.
    pub fn take(steps: usize) -> BTreeMap<&'static str, f64> {
        let parts = std::mem::take(&mut *PARTS.lock().unwrap_or_else(|e| e.into_inner()));
        parts.into_iter().map(|(k, v)| (k, v * 1e3 / steps.max(1) as f64)).collect()
    }

    /// Adds the time from its start to its drop to `name`.
    pub struct Lap(&'static str, Option<Instant>);

    impl Lap {
        pub fn new(name: &'static str) -> Self {
            Lap(name, ON.load(Ordering::Relaxed).then(Instant::now))
        }
    }

    impl Drop for Lap {
        fn drop(&mut self) {
            if let Some(t) = self.1 {
                add(self.0, t.elapsed().as_secs_f64());
            }
        }
    }
}

wide! {
    /// −log softmax(z)[y] for one row of logits; with `grad`, z becomes grad · (softmax(z) −
    /// onehot(y)).
    pub fn row_cross_entropy(z: &mut [f32], y: usize, grad: Option<f32>) -> f64 {
        let (max, zy) = (lanes::max(z), z[y]);
        let sum = lanes::exp_sum(z, max, grad.is_some());
        if let Some(scale) = grad {
            let k = (scale as f64 / sum) as f32;
            z.iter_mut().for_each(|e| *e *= k);
            z[y] -= scale;
        }
        sum.ln() + (max - zy) as f64
    }
}

wide! {
    /// `out = gelu(x)` (tanh form) over a slice.
    pub fn gelu_tanh(out: &mut [f32], x: &[f32]) {
        for (o, &x) in out.iter_mut().zip(x) {
            *o = 0.5 * x * lanes::one_minus_plus_tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).1;
        }
    }
}

wide! {
    /// `g *= gelu'(x)` (tanh form) over a slice.
    pub fn gelu_tanh_backward(g: &mut [f32], x: &[f32]) {
        for (g, &x) in g.iter_mut().zip(x) {
            let (minus, plus) = lanes::one_minus_plus_tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x));
            *g *= 0.5 * plus + 0.5 * x * (minus * plus) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x);
        }
    }
}

/// Column sums of a row-major (rows x cols) matrix, added into `out`.
pub fn add_column_sums(out: &mut [f32], x: &[f32], cols: usize) {
    let partial: Vec<Vec<f32>> = x
        .par_chunks(SUM_ROWS * cols)
        .map(|block| {
            let mut s = vec![0f32; cols];
            for row in block.chunks_exact(cols) {
                s.iter_mut().zip(row).for_each(|(a, b)| *a += b);
            }
            s
        })
        .collect();
    for s in partial {
        out.iter_mut().zip(&s).for_each(|(a, b)| *a += b);
    }
}

/// LayerNorm's forward: `out = (x − mean) · rstd · w + b` per row (biased variance, as torch);
/// keeps each row's mean and 1/σ for the backward.
pub fn layer_norm(out: &mut [f32], mean: &mut [f32], rstd: &mut [f32], x: &[f32], w: &[f32], b: &[f32], eps: f32) {
    let _lap = profile::Lap::new("layer norm");
    let d = w.len();
    out.par_chunks_mut(d).zip(x.par_chunks(d)).zip(mean.par_iter_mut().zip(rstd.par_iter_mut())).for_each(
        |((o, x), (m, r))| {
            let mu = x.iter().sum::<f32>() / d as f32;
            let var = x.iter().map(|v| (v - mu) * (v - mu)).sum::<f32>() / d as f32;
            let s = 1.0 / (var + eps).sqrt();
            for i in 0..d {
                o[i] = (x[i] - mu) * s * w[i] + b[i];
            }
            (*m, *r) = (mu, s);
        },
    );
}

/// LayerNorm's backward: adds dL/dx into `dx`, and dL/dw, dL/db into `dw`, `db` when given.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward(
    dx: &mut [f32],
    dw: Option<&mut [f32]>,
    db: Option<&mut [f32]>,
    dout: &[f32],
    x: &[f32],
    mean: &[f32],
    rstd: &[f32],
    w: &[f32],
) {
    let _lap = profile::Lap::new("layer norm backward");
    let d = w.len();
    dx.par_chunks_mut(d).zip(dout.par_chunks(d)).zip(x.par_chunks(d)).zip(mean.par_iter().zip(rstd)).for_each(
        |(((dx, g), x), (&mu, &s))| {
            let (mut m1, mut m2) = (0f32, 0f32);
            for i in 0..d {
                let dn = g[i] * w[i];
                m1 += dn;
                m2 += dn * (x[i] - mu) * s;
            }
            (m1, m2) = (m1 / d as f32, m2 / d as f32);
            for i in 0..d {
                let norm = (x[i] - mu) * s;
                dx[i] += (g[i] * w[i] - m1 - norm * m2) * s;
            }
        },
    );
    if dw.is_none() && db.is_none() {
        return;
    }
    let rows = mean.len();
    let partial: Vec<Vec<f32>> = (0..rows.div_ceil(SUM_ROWS))
        .into_par_iter()
        .map(|blk| {
            let mut s = vec![0f32; 2 * d];
            for r in blk * SUM_ROWS..((blk + 1) * SUM_ROWS).min(rows) {
                let (g, x) = (&dout[r * d..(r + 1) * d], &x[r * d..(r + 1) * d]);
                for i in 0..d {
                    s[i] += g[i] * (x[i] - mean[r]) * rstd[r];
                    s[d + i] += g[i];
                }
            }
            s
        })
        .collect();
    let (mut dw, mut db) = (dw, db);
    for s in partial {
        if let Some(dw) = dw.as_deref_mut() {
            dw.iter_mut().zip(&s[..d]).for_each(|(a, b)| *a += b);
        }
        if let Some(db) = db.as_deref_mut() {
            db.iter_mut().zip(&s[d..]).for_each(|(a, b)| *a += b);
        }
    }
}

/// GPT-2's `gelu_new` (tanh) or the exact erf GELU, and their derivatives.
#[derive(Clone, Copy)]
pub enum Gelu {
    Tanh,
    Erf,
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;

impl Gelu {
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Gelu::Tanh => 0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh()),
            Gelu::Erf => {
                (0.5 * x as f64 * (1.0 + statrs::function::erf::erf(x as f64 / std::f64::consts::SQRT_2))) as f32
            }
        }
    }

    pub fn derivative(self, x: f32) -> f32 {
        match self {
            Gelu::Tanh => {
                let th = (SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh();
                0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * x * x)
            }
            Gelu::Erf => {
                let x = x as f64;
                let cdf = 0.5 * (1.0 + statrs::function::erf::erf(x / std::f64::consts::SQRT_2));
                (cdf + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()) as f32
            }
        }
    }

    /// `out = gelu(x)` over a slice, in parallel.
    pub fn forward(self, out: &mut [f32], x: &[f32]) {
        let _lap = profile::Lap::new("gelu");
        out.par_chunks_mut(4096).zip(x.par_chunks(4096)).for_each(|(o, x)| match self {
            Gelu::Tanh => gelu_tanh(o, x),
            Gelu::Erf => o.iter_mut().zip(x).for_each(|(o, &x)| *o = self.apply(x)),
        });
    }

    /// `g *= gelu'(x)` over a slice, in parallel.
    pub fn backward(self, g: &mut [f32], x: &[f32]) {
        let _lap = profile::Lap::new("gelu backward");
        g.par_chunks_mut(4096).zip(x.par_chunks(4096)).for_each(|(g, x)| match self {
            Gelu::Tanh => gelu_tanh_backward(g, x),
            Gelu::Erf => g.iter_mut().zip(x).for_each(|(g, &x)| *g *= self.derivative(x)),
        });
    }
}

/// `out = x · wᵀ + b` for x (rows x in), w (out x in) as `nn.Linear` keeps it.
pub fn linear(out: &mut [f32], x: &[f32], w: &[f32], b: &[f32]) -> Result<()> {
    let _lap = profile::Lap::new("projections");
    let (o, i) = (b.len(), w.len() / b.len().max(1));
    let rows = x.len() / i.max(1);
    if i > o {
        // The gemm crate reads wᵀ in place slowly when the inner dimension is the longer one
        // (the MLP's output projection, in = 4·out: 59-73 % of OpenBLAS at width 768 in
        // `embgraft bench --gemm`); a row-major copy of wᵀ costs one pass over w, less than
        // half what it saves, and the product's sums are the same bits either way.
        let wt = transpose(w, o, i);
        matmul(out, View::row_major(x, rows, i), View::row_major(&wt, i, o), true)?;
    } else {
        matmul(out, View::row_major(x, rows, i), View::transposed(w, i, o), true)?;
    }
    out.par_chunks_mut(o).for_each(|r| r.iter_mut().zip(b).for_each(|(a, b)| *a += b));
    Ok(())
}

/// The (cols x rows) transpose of a row-major (rows x cols) matrix, in tiles of 32 rows by 32
/// columns so that both sides stay in cache, spread over rayon's threads by output rows.
pub fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const TILE: usize = 32;
    let mut t = vec![0f32; rows * cols];
    if rows == 0 || cols == 0 {
        return t;
    }
    t.par_chunks_mut(TILE * rows).enumerate().for_each(|(tile, dst)| {
        let (c0, width) = (tile * TILE, dst.len() / rows);
        for r0 in (0..rows).step_by(TILE) {
            for c in 0..width {
                let out = &mut dst[c * rows..(c + 1) * rows];
                for r in r0..(r0 + TILE).min(rows) {
                    out[r] = a[r * cols + c0 + c];
                }
            }
        }
    });
    t
}

/// The projection's backward for dout (rows x out): `dx = dout · w` (overwritten) when asked,
/// and, for the weight and the bias that are live, `dw = doutᵀ · x` and `db = Σ_rows dout`
/// (overwritten).
pub fn linear_backward(
    dx: Option<&mut [f32]>,
    dw: Option<&mut [f32]>,
    db: Option<&mut [f32]>,
    dout: &[f32],
    x: &[f32],
    w: &[f32],
    o: usize,
) -> Result<()> {
    let _lap = profile::Lap::new("projections backward");
    let (i, rows) = (w.len() / o.max(1), dout.len() / o.max(1));
    if let Some(dx) = dx {
        matmul(dx, View::row_major(dout, rows, o), View::row_major(w, o, i), true)?;
    }
    if let Some(dw) = dw {
        matmul(dw, View::transposed(dout, o, rows), View::row_major(x, rows, i), true)?;
    }
    if let Some(db) = db {
        db.fill(0.0);
        add_column_sums(db, dout, o);
    }
    Ok(())
}

/// Sizes of one batch through the decoder.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub batch: usize,
    pub seq: usize,
    pub dim: usize,
    pub heads: usize,
}

impl Shape {
    fn head_dim(&self) -> usize {
        self.dim / self.heads
    }
}

/// Causal self-attention over qkv (B·T x 3d, rows [q | k | v], heads side by side in each):
/// writes y (B·T x d) and keeps the probabilities `att` (B, H, T, T) for the backward. One
/// (window, head) per task; inside it the scores, the mask and the softmax are one pass.
pub fn attention(y: &mut [f32], att: &mut [f32], qkv: &[f32], s: Shape) -> Result<()> {
    let _lap = profile::Lap::new("attention");
    let (t, hd) = (s.seq, s.head_dim());
    let scale = 1.0 / (hd as f32).sqrt();
    let mut yh = vec![0f32; y.len()]; // (B, H, T, hd)
    att.par_chunks_mut(t * t).zip(yh.par_chunks_mut(t * hd)).enumerate().try_for_each(|(bh, (p, out))| {
        let (q, k, v) = (head_part(qkv, s, bh, 0), head_part(qkv, s, bh, 1), head_part(qkv, s, bh, 2));
        matmul(p, q, k.t(), false)?;
        for (i, row) in p.chunks_exact_mut(t).enumerate() {
            let mut max = f32::NEG_INFINITY;
            for z in &mut row[..=i] {
                *z *= scale;
                max = max.max(*z);
            }
            let mut sum = 0f32;
            for z in &mut row[..=i] {
                *z = (*z - max).exp();
                sum += *z;
            }
            row[..=i].iter_mut().for_each(|z| *z /= sum);
            row[i + 1..].fill(0.0);
        }
        matmul(out, View::row_major(p, t, t), v, false)
    })?;
    heads_to_rows(y, &yh, s);
    Ok(())
}

/// Window `bh / H`'s q (`part` 0), k (1) or v (2) of head `bh % H`, as a (T x hd) view of qkv.
fn head_part(qkv: &[f32], s: Shape, bh: usize, part: usize) -> View<'_> {
    let (t, d, hd) = (s.seq, s.dim, s.head_dim());
    let base = (bh / s.heads) * t * 3 * d + part * d + (bh % s.heads) * hd;
    View { data: &qkv[base..], rows: t, cols: hd, row_stride: 3 * d, col_stride: 1 }
}

/// (B·T, d) -> (B, H, T, hd): the inverse of [`heads_to_rows`].
fn rows_to_heads(yh: &mut [f32], y: &[f32], s: Shape) {
    let (t, hd) = (s.seq, s.head_dim());
    yh.par_chunks_mut(t * s.dim).zip(y.par_chunks(t * s.dim)).for_each(|(hb, yb)| {
        for h in 0..s.heads {
            for i in 0..t {
                let dst = &mut hb[(h * t + i) * hd..(h * t + i + 1) * hd];
                dst.copy_from_slice(&yb[i * s.dim + h * hd..i * s.dim + (h + 1) * hd]);
            }
        }
    });
}

/// (B, H, T, hd) -> (B·T, d).
fn heads_to_rows(y: &mut [f32], yh: &[f32], s: Shape) {
    let (t, hd) = (s.seq, s.head_dim());
    y.par_chunks_mut(t * s.dim).zip(yh.par_chunks(t * s.dim)).for_each(|(yb, hb)| {
        for h in 0..s.heads {
            for i in 0..t {
                let src = &hb[(h * t + i) * hd..(h * t + i + 1) * hd];
                yb[i * s.dim + h * hd..i * s.dim + (h + 1) * hd].copy_from_slice(src);
            }
        }
    });
}

/// Attention's backward: dqkv (B·T x 3d, overwritten) from dy (B·T x d), the probabilities the
/// forward kept, and qkv. The scores' gradient lives one (T x T) block at a time.
pub fn attention_backward(dqkv: &mut [f32], dy: &[f32], att: &[f32], qkv: &[f32], s: Shape) -> Result<()> {
    let _lap = profile::Lap::new("attention backward");
    let (t, d, hd) = (s.seq, s.dim, s.head_dim());
    let scale = 1.0 / (hd as f32).sqrt();
    let mut dyh = vec![0f32; dy.len()]; // (B, H, T, hd)
    rows_to_heads(&mut dyh, dy, s);
    let mut parts = vec![0f32; 3 * dy.len()]; // (B, H, 3, T, hd)
    parts.par_chunks_mut(3 * t * hd).zip(att.par_chunks(t * t)).enumerate().try_for_each(|(bh, (out, p))| {
        let g = View::row_major(&dyh[bh * t * hd..(bh + 1) * t * hd], t, hd);
        let (q, k, v) = (head_part(qkv, s, bh, 0), head_part(qkv, s, bh, 1), head_part(qkv, s, bh, 2));
        let mut ds = vec![0f32; t * t];
        matmul(&mut ds, g, v.t(), false)?; // dP = dY · Vᵀ
        for (i, (row, prow)) in ds.chunks_exact_mut(t).zip(p.chunks_exact(t)).enumerate() {
            let dot: f32 = row[..=i].iter().zip(&prow[..=i]).map(|(a, b)| a * b).sum();
            for j in 0..=i {
                row[j] = prow[j] * (row[j] - dot) * scale;
            }
            row[i + 1..].fill(0.0);
        }
        let (dq, rest) = out.split_at_mut(t * hd);
        let (dk, dv) = rest.split_at_mut(t * hd);
        matmul(dq, View::row_major(&ds, t, t), k, false)?;
        matmul(dk, View::transposed(&ds, t, t), q, false)?;
        matmul(dv, View::transposed(p, t, t), g, false)
    })?;
    dqkv.par_chunks_mut(t * 3 * d).zip(parts.par_chunks(s.heads * 3 * t * hd)).for_each(|(rows, pb)| {
        for h in 0..s.heads {
            for part in 0..3 {
                for i in 0..t {
                    let src = &pb[((h * 3 + part) * t + i) * hd..((h * 3 + part) * t + i + 1) * hd];
                    let at = i * 3 * d + part * d + h * hd;
                    rows[at..at + hd].copy_from_slice(src);
                }
            }
        }
    });
    Ok(())
}

/// Sum over rows of −log softmax(x_r · wᵀ)[target_r] for x (N x d) and the head w (V x d),
/// HEAD_ROWS rows of logits at a time. With `grad`, the gradients of `scale` × that sum:
/// dx (N x d, overwritten) and, when given, dw (V x d, overwritten) = Σ_blocks gᵀ · x_block.
pub fn head_cross_entropy(
    x: &[f32],
    w: &[f32],
    targets: &[u32],
    scale: f32,
    grad: Option<(&mut [f32], Option<&mut [f32]>)>,
) -> Result<f64> {
    let n = targets.len();
    let d = x.len() / n.max(1);
    let v = w.len() / d.max(1);
    if let Some(&bad) = targets.iter().find(|&&y| y as usize >= v) {
        return Err(Error::Input(format!("target token {bad} is outside the head's {v} rows")));
    }
    let (mut dx, mut dw) = match grad {
        Some((dx, dw)) => (Some(dx), dw),
        None => (None, None),
    };
    let mut logits = vec![0f32; HEAD_ROWS.min(n) * v];
    let mut loss = 0f64;
    for (blk, ys) in targets.chunks(HEAD_ROWS).enumerate() {
        let r = ys.len();
        let xb = &x[blk * HEAD_ROWS * d..(blk * HEAD_ROWS + r) * d];
        let z = &mut logits[..r * v];
        let lap = profile::Lap::new("head: logits");
        matmul(z, View::row_major(xb, r, d), View::transposed(w, d, v), true)?;
        drop(lap);
        let lap = profile::Lap::new("head: softmax and loss");
        let want_grad = dx.is_some();
        let row_loss: Vec<f64> = z
            .par_chunks_mut(v)
            .zip(ys.par_iter())
            .map(|(row, &y)| row_cross_entropy(row, y as usize, want_grad.then_some(scale)))
            .collect();
        loss += row_loss.iter().sum::<f64>();
        drop(lap);
        let _lap = profile::Lap::new("head: gradients");
        if let Some(dx) = dx.as_deref_mut() {
            let dxb = &mut dx[blk * HEAD_ROWS * d..(blk * HEAD_ROWS + r) * d];
            matmul(dxb, View::row_major(z, r, v), View::row_major(w, v, d), true)?;
            if let Some(dw) = dw.as_deref_mut() {
                let (g, xb) = (View::transposed(z, v, r), View::row_major(xb, r, d));
                matmul_into(dw, g, xb, blk > 0, true)?;
            }
        }
    }
    Ok(loss)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor, Var, D};

    fn values(n: usize, seed: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 + seed) * 0.7137).sin() * 0.9).collect()
    }

    fn var(data: &[f32], shape: &[usize]) -> Var {
        Var::from_tensor(&Tensor::from_slice(data, shape, &Device::Cpu).unwrap()).unwrap()
    }

    fn close(a: &[f32], b: &Tensor, what: &str) {
        let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a.len(), b.len(), "{what}");
        let d = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(d < 1e-5, "{what}: fused and plain differ by {d}");
    }

    #[test]
    fn layer_norm_and_its_backward_match_autograd() {
        let (n, d) = (70, 12);
        let (x, w, b, g) = (values(n * d, 1.0), values(d, 2.0), values(d, 3.0), values(n * d, 4.0));
        let (mut out, mut mean, mut rstd) = (vec![0f32; n * d], vec![0f32; n], vec![0f32; n]);
        layer_norm(&mut out, &mut mean, &mut rstd, &x, &w, &b, 1e-5);
        let (mut dx, mut dw, mut db) = (vec![0f32; n * d], vec![0f32; d], vec![0f32; d]);
        layer_norm_backward(&mut dx, Some(&mut dw), Some(&mut db), &g, &x, &mean, &rstd, &w);
        let (xv, wv, bv) = (var(&x, &[n, d]), var(&w, &[d]), var(&b, &[d]));
        let xt = xv.as_tensor();
        let mu = xt.mean_keepdim(D::Minus1).unwrap();
        let xc = xt.broadcast_sub(&mu).unwrap();
        let var_ = xc.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
        let xn = xc.broadcast_div(&(var_ + 1e-5).unwrap().sqrt().unwrap()).unwrap();
        let y = xn.broadcast_mul(wv.as_tensor()).unwrap().broadcast_add(bv.as_tensor()).unwrap();
        close(&out, &y, "forward");
        let gt = Tensor::from_slice(&g, (n, d), &Device::Cpu).unwrap();
        let grads = (y * gt).unwrap().sum_all().unwrap().backward().unwrap();
        close(&dx, grads.get(xt).unwrap(), "dx");
        close(&dw, grads.get(wv.as_tensor()).unwrap(), "dw");
        close(&db, grads.get(bv.as_tensor()).unwrap(), "db");
    }

    #[test]
    fn gelu_derivatives_match_autograd() {
        let x = values(200, 5.0).iter().map(|v| v * 4.0).collect::<Vec<_>>();
        let xv = var(&x, &[200]);
        for (kind, y) in [(Gelu::Tanh, xv.as_tensor().gelu()), (Gelu::Erf, xv.as_tensor().gelu_erf())] {
            let y = y.unwrap();
            close(&x.iter().map(|&v| kind.apply(v)).collect::<Vec<_>>(), &y, "gelu");
            let g = y.sum_all().unwrap().backward().unwrap();
            close(&x.iter().map(|&v| kind.derivative(v)).collect::<Vec<_>>(), g.get(xv.as_tensor()).unwrap(), "gelu'");
        }
    }

    #[test]
    fn vectorised_exp_and_gelu_match_the_scalar_forms() {
        for i in -8700..=8800 {
            let x = i as f32 * 0.01;
            let (got, want) = (lanes::exp(x), x.exp());
            assert!(((got - want) / want).abs() < 4e-7, "exp({x}) = {got}, not {want}");
        }
        let x: Vec<f32> = (0..5000).map(|i| (i as f32 - 2500.0) * 0.004).collect();
        for kind in [Gelu::Tanh, Gelu::Erf] {
            let mut out = vec![0f32; x.len()];
            kind.forward(&mut out, &x);
            let mut g = vec![1f32; x.len()];
            kind.backward(&mut g, &x);
            for i in 0..x.len() {
                assert!((out[i] - kind.apply(x[i])).abs() < 1e-6, "gelu({})", x[i]);
                // The scalar form loses digits in 1 + tanh near -1; the vector form does not.
                assert!((g[i] - kind.derivative(x[i])).abs() < 4e-6, "gelu'({})", x[i]);
            }
        }
    }

    #[test]
    fn transpose_is_the_transpose_at_ragged_sizes() {
        for (r, c) in [(1, 1), (3, 70), (33, 31), (64, 65), (0, 5)] {
            let a = values(r * c, 0.3);
            let t = transpose(&a, r, c);
            assert!((0..r).all(|i| (0..c).all(|j| t[j * r + i] == a[i * c + j])), "{r} x {c}");
        }
    }

    #[test]
    fn linear_and_its_backward_match_autograd() {
        // Wider out than in, and wider in than out (the MLP's output projection, which reads a
        // transposed copy of w).
        for (i, o) in [(9, 14), (70, 14)] {
            linear_matches_autograd(37, i, o);
        }
    }

    fn linear_matches_autograd(n: usize, i: usize, o: usize) {
        let (x, w, b, g) = (values(n * i, 1.0), values(o * i, 2.0), values(o, 3.0), values(n * o, 4.0));
        let mut out = vec![0f32; n * o];
        linear(&mut out, &x, &w, &b).unwrap();
        let (mut dx, mut dw, mut db) = (vec![0f32; n * i], vec![0f32; o * i], vec![9f32; o]);
        linear_backward(Some(&mut dx), Some(&mut dw), Some(&mut db), &g, &x, &w, o).unwrap();
        let (xv, wv, bv) = (var(&x, &[n, i]), var(&w, &[o, i]), var(&b, &[o]));
        let y = xv.as_tensor().matmul(&wv.as_tensor().t().unwrap()).unwrap().broadcast_add(bv.as_tensor()).unwrap();
        close(&out, &y, "forward");
        let gt = Tensor::from_slice(&g, (n, o), &Device::Cpu).unwrap();
        let grads = (y * gt).unwrap().sum_all().unwrap().backward().unwrap();
        close(&dx, grads.get(xv.as_tensor()).unwrap(), "dx");
        close(&dw, grads.get(wv.as_tensor()).unwrap(), "dw");
        close(&db, grads.get(bv.as_tensor()).unwrap(), "db");
    }

    #[test]
    fn attention_and_its_backward_match_autograd() {
        let s = Shape { batch: 3, seq: 5, dim: 8, heads: 2 };
        let (b, t, d, h, hd) = (s.batch, s.seq, s.dim, s.heads, 4);
        let (qkv, g) = (values(b * t * 3 * d, 1.0), values(b * t * d, 2.0));
        let (mut y, mut att) = (vec![0f32; b * t * d], vec![0f32; b * h * t * t]);
        attention(&mut y, &mut att, &qkv, s).unwrap();
        let mut dqkv = vec![0f32; qkv.len()];
        attention_backward(&mut dqkv, &g, &att, &qkv, s).unwrap();
        // The plain path's formulas (model5.rs): heads by reshape, mask by -inf, softmax.
        let qv = var(&qkv, &[b, t, 3, h, hd]);
        let head = |k: usize| qv.as_tensor().narrow(2, k, 1).unwrap().squeeze(2).unwrap().transpose(1, 2).unwrap();
        let (q, k, v) = (head(0).contiguous().unwrap(), head(1).contiguous().unwrap(), head(2).contiguous().unwrap());
        let m: Vec<f32> = (0..t * t).map(|i| if i % t > i / t { f32::NEG_INFINITY } else { 0.0 }).collect();
        let mask = Tensor::from_vec(m, (t, t), &Device::Cpu).unwrap();
        let sc = (q.matmul(&k.transpose(2, 3).unwrap().contiguous().unwrap()).unwrap() * 0.5).unwrap();
        let p = candle_nn::ops::softmax(&sc.broadcast_add(&mask).unwrap(), D::Minus1).unwrap();
        close(&att, &p, "probabilities");
        let yt = p.matmul(&v).unwrap().transpose(1, 2).unwrap().contiguous().unwrap().reshape((b * t, d)).unwrap();
        close(&y, &yt, "forward");
        let gt = Tensor::from_slice(&g, (b * t, d), &Device::Cpu).unwrap();
        let grads = (yt * gt).unwrap().sum_all().unwrap().backward().unwrap();
        close(&dqkv, grads.get(qv.as_tensor()).unwrap(), "dqkv");
    }

    #[test]
    fn head_cross_entropy_matches_autograd_across_row_blocks() {
        // More rows than HEAD_ROWS, so the head's gradient is accumulated over two blocks.
        let (n, d, v) = (HEAD_ROWS + 7, 6, 11);
        let (x, w) = (values(n * d, 1.0), values(v * d, 2.0));
        let targets: Vec<u32> = (0..n).map(|i| (i * 7 % v) as u32).collect();
        let (mut dx, mut dw) = (vec![0f32; n * d], vec![5f32; v * d]);
        let sum = head_cross_entropy(&x, &w, &targets, 1.0 / n as f32, Some((&mut dx, Some(&mut dw)))).unwrap();
        assert_eq!(head_cross_entropy(&x, &w, &targets, 1.0, None).unwrap(), sum);
        let (xv, wv) = (var(&x, &[n, d]), var(&w, &[v, d]));
        let y = Tensor::from_slice(&targets, n, &Device::Cpu).unwrap();
        let logits = xv.as_tensor().matmul(&wv.as_tensor().t().unwrap()).unwrap();
        let loss = candle_nn::loss::cross_entropy(&logits, &y).unwrap();
        let mean = loss.to_scalar::<f32>().unwrap() as f64;
        assert!((sum / n as f64 - mean).abs() < 1e-5, "{} vs {mean}", sum / n as f64);
        let grads = loss.backward().unwrap();
        close(&dx, grads.get(xv.as_tensor()).unwrap(), "dx");
        close(&dw, grads.get(wv.as_tensor()).unwrap(), "dw");
        assert!(head_cross_entropy(&x, &w, &[v as u32], 1.0, None).is_err(), "a target past the head is refused");
    }
}
