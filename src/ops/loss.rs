//! Cross-entropy (= log-softmax + NLL, mean over all positions), fused: for models whose logits
//! depend only on the current token, such as Model 1, and (at the end) Model 5's output layer as
//! one autograd op.
//!
//! For such a model, the N = B·T positions of a batch need one logits row per *distinct* input
//! token u, weighted by how often each target follows it:
//!
//!   loss = (1/N) Σ_u [ c_u · logsumexp(z_u) − Σ_y C[u,y] · z_u[y] ]
//!   dloss/dz_u = (c_u · softmax(z_u) − C[u,·]) / N
//!
//! with C[u,y] the count of (u, y) pairs and c_u = Σ_y C[u,y]. This is exact, not an
//! approximation, and does the large (rows x vocabulary) work once per distinct token.

use std::sync::Mutex;

use candle_core::{CpuStorage, Device, InplaceOp1, Layout, Tensor};
use rayon::prelude::*;

use crate::data::counts::TokenCounts;
use crate::error::Result;
#[cfg(feature = "cuda")]
use crate::ops::cuda;
use crate::ops::lanes::{self, wide};
#[cfg(feature = "cuda")]
use candle_core::backend::BackendStorage;
#[cfg(feature = "cuda")]
use candle_core::cuda_backend::{
    cudarc::driver::{LaunchConfig, PushKernelArg},
    WrapErr,
};

/// Sum over positions of −log p(target) (divide by `counts.positions` for the mean), and, when
/// `grad` is set, the gradient of the *mean* with respect to the logits `z` (rows x vocab).
/// On the CPU and on CUDA this is one fused pass that overwrites `z` with its gradient;
/// elsewhere it is built from tensor ops.
pub fn cross_entropy_sum(z: Tensor, counts: &TokenCounts, grad: bool) -> Result<(f64, Option<Tensor>)> {
    if z.device().is_cpu() || z.device().is_cuda() {
        let z = z.contiguous()?;
        let op = CrossEntropy { counts, grad, loss: Mutex::new(0.0) };
        z.inplace_op1(&op)?;
        let loss = *op.loss.lock().unwrap();
        return Ok((loss, grad.then_some(z)));
    }
    cross_entropy_sum_ops(&z, counts, grad)
}

/// The same computation written with plain tensor ops: the reference the fused pass is tested
/// against, and the path on devices without a fused kernel.
pub fn cross_entropy_sum_ops(z: &Tensor, counts: &TokenCounts, grad: bool) -> Result<(f64, Option<Tensor>)> {
    let vocab = z.dim(1)?;
    let c = counts.dense(vocab, z.device())?; // (U, V)
    let logp = candle_nn::ops::log_softmax(z, 1)?; // (U, V)
    let loss = (&c * &logp)?.sum_all()?.neg()?.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
    if !grad {
        return Ok((loss, None));
    }
    let c_u = c.sum_keepdim(1)?; // (U, 1)
    let g = ((logp.exp()?.broadcast_mul(&c_u)? - c)? / counts.positions as f64)?;
    Ok((loss, Some(g)))
}

/// Mean cross-entropy of the logits x · wᵀ against one target per row, for a model's output
/// layer: x (N, d) hidden states, w (V, d) the head (a parameter, live or detached). Forward
/// computes the logits with one GEMM and the loss and softmax − onehot in one pass; backward
/// returns dx = g · w and, only when w is a live parameter, dw = gᵀ · x, both contiguous (the
/// autograd path produces the head's gradient transposed and adds it element by element).
pub fn head_cross_entropy_mean(x: &Tensor, w: &Tensor, targets: &[u32]) -> Result<Tensor> {
    if !x.device().is_cpu() {
        let y = Tensor::from_slice(targets, targets.len(), x.device())?;
        return Ok(candle_nn::loss::cross_entropy(&x.matmul(&w.t()?)?, &y)?);
    }
    let op = HeadCrossEntropyOp { counts: TokenCounts::per_position(targets), grad: Mutex::new(None) };
    Ok(x.apply_op2(w, op)?)
}

struct HeadCrossEntropyOp {
    counts: TokenCounts,
    grad: Mutex<Option<Tensor>>,
}

impl candle_core::CustomOp2 for HeadCrossEntropyOp {
    fn name(&self) -> &'static str {
        "head-cross-entropy-mean"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, candle_core::Shape)> {
        let (CpuStorage::F32(xb), CpuStorage::F32(wb)) = (s1, s2) else {
            candle_core::bail!("head cross-entropy needs f32 inputs")
        };
        let ((n, d), (vocab, d2)) = (l1.shape().dims2()?, l2.shape().dims2()?);
        if d != d2 || n != self.counts.rows() {
            candle_core::bail!(
                "head cross-entropy: x {:?}, w {:?}, {} targets",
                l1.dims(),
                l2.dims(),
                self.counts.rows()
            );
        }
        let (Some((xa, _)), Some((wa, _))) = (l1.contiguous_offsets(), l2.contiguous_offsets()) else {
            candle_core::bail!("head cross-entropy needs contiguous inputs")
        };
        let (x, w) = (&xb[xa..xa + n * d], &wb[wa..wa + vocab * d]);
        let mut z = vec![0f32; n * vocab];
        // z (n x V) = x (n x d) · wᵀ (d x V).
        use crate::ops::gemm::{matmul, View};
        matmul(&mut z, View::row_major(x, n, d), View::transposed(w, d, vocab), true)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let z = Tensor::from_vec(z, (n, vocab), &Device::Cpu)?;
        let op = CrossEntropy { counts: &self.counts, grad: true, loss: Mutex::new(0.0) };
        z.inplace_op1(&op)?;
        let mean = (*op.loss.lock().unwrap() / self.counts.positions as f64) as f32;
        *self.grad.lock().unwrap() = Some(z);
        Ok((CpuStorage::F32(vec![mean]), candle_core::Shape::from(())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let Some(g) = self.grad.lock().unwrap().take() else {
            candle_core::bail!("head cross-entropy backward ran twice")
        };
        let scale = grad_res.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
        let g = if scale == 1.0 { g } else { (g * scale as f64)? }; // (N, V)
        let dx = g.matmul(w)?; // (N, d)
        let dw = if w.is_variable() { Some(g.t()?.matmul(x)?) } else { None }; // (V, d)
        Ok((Some(dx), dw))
    }
}

wide! {
    /// One distinct token's row of logits, z, followed by targets `ys` with counts `cs` (c_u in
    /// all) among `n` positions: returns c_u · logsumexp(z) − Σ c · z[y]; with `grad`, z becomes
    /// (c_u · softmax(z) − C[u,·]) / n. exp(z − max) is kept in place between the two passes.
    fn row_counts_cross_entropy(row: &mut [f32], ys: &[u32], cs: &[u32], n: f32, grad: bool) -> f64 {
        let max = lanes::max(row);
        let picked: f64 = ys.iter().zip(cs).map(|(&y, &c)| c as f64 * row[y as usize] as f64).sum();
        let c_u: u32 = cs.iter().sum();
        let sum = lanes::exp_sum(row, max, grad);
        let lse = max as f64 + sum.ln();
        if grad {
            let scale = (c_u as f64 / (sum * n as f64)) as f32;
            row.iter_mut().for_each(|v| *v *= scale);
            for (&y, &c) in ys.iter().zip(cs) {
                row[y as usize] -= c as f32 / n;
            }
        }
        c_u as f64 * lse - picked
    }
}

/// The fused cross-entropy over distinct-token rows, in place: the CPU half here, the CUDA half
/// a kernel of kernels/model1.cu (one block per row); both sum the per-row losses in row order.
struct CrossEntropy<'a> {
    counts: &'a TokenCounts,
    grad: bool,
    loss: Mutex<f64>,
}

impl InplaceOp1 for CrossEntropy<'_> {
    fn name(&self) -> &'static str {
        "fused-cross-entropy"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let CpuStorage::F32(buf) = storage else { candle_core::bail!("fused cross-entropy needs f32 logits") };
        let (rows, vocab) = layout.shape().dims2()?;
        let start = layout.start_offset();
        let z = &mut buf[start..start + rows * vocab];
        let n = self.counts.positions as f32;
        // Per-row losses are summed in row order afterwards, so the total does not depend on
        // how rayon split the rows (bit-identical results for any thread count).
        let per_row: Vec<f64> = z
            .par_chunks_mut(vocab)
            .enumerate()
            .map(|(u, row)| {
                let (ys, cs) = self.counts.row(u);
                row_counts_cross_entropy(row, ys, cs, n, self.grad)
            })
            .collect();
        *self.loss.lock().unwrap() = per_row.iter().sum();
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, s: &mut candle_core::CudaStorage, l: &Layout) -> candle_core::Result<()> {
        let (rows, vocab) = l.shape().dims2()?;
        let c = self.counts;
        if rows != c.rows() {
            candle_core::bail!("cross-entropy: {rows} logit rows for {} distinct tokens", c.rows())
        }
        let Some((lo, hi)) = l.contiguous_offsets() else {
            candle_core::bail!("cross-entropy needs contiguous logits")
        };
        if rows == 0 {
            *self.loss.lock().unwrap() = 0.0;
            return Ok(());
        }
        let dev = s.device().clone();
        // One upload (each is a host-side wait): row starts, then targets, then counts.
        let pairs = c.targets.len();
        let mut csr: Vec<u32> = Vec::with_capacity(rows + 1 + 2 * pairs);
        csr.extend(c.row_start.iter().map(|&r| r as u32));
        csr.extend_from_slice(&c.targets);
        csr.extend_from_slice(&c.counts);
        let csr = dev.clone_htod(csr.as_slice())?;
        let (row_start, rest) = (csr.slice(0..rows + 1), csr.slice(rows + 1..));
        let (targets, counts) = (rest.slice(0..pairs), rest.slice(pairs..2 * pairs));
        // SAFETY: every element is written by the kernel (thread 0 of each row's block).
        let mut row_loss = unsafe { dev.alloc::<f64>(rows)? };
        let z = s.as_cuda_slice_mut::<f32>()?;
        let mut z = z.slice_mut(lo..hi);
        let f = dev.get_or_load_custom_func("cross_entropy_rows", cuda::MODULE, cuda::PTX)?;
        let (vocab, n, grad) = (vocab as u64, c.positions as f32, self.grad as i32);
        let mut b = f.builder();
        b.arg(&mut z).arg(&vocab).arg(&row_start).arg(&targets).arg(&counts).arg(&n).arg(&grad).arg(&mut row_loss);
        let cfg =
            LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (cuda::CE_BLOCK, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: the kernel reads rows·vocab floats of z and the row's (target, count) pairs,
        // all of the sizes checked above, and writes z and one loss per row.
        unsafe { b.launch(cfg) }.w()?;
        // Summed in row order on the host, as the CPU pass sums its per-row losses.
        let per_row = dev.clone_dtoh(&row_loss)?;
        *self.loss.lock().unwrap() = per_row.iter().sum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_logits_by_hand() {
        // One row z = [0, ln 3]: p = [1/4, 3/4]. Targets: 0 once, 1 twice. N = 3.
        let c = TokenCounts::from_pairs(&[0, 0, 0], &[0, 1, 1]);
        let z = Tensor::new(&[[0f32, 3f32.ln()]], &Device::Cpu).unwrap();
        let (loss, g) = cross_entropy_sum(z, &c, true).unwrap();
        let want = -(0.25f64.ln() + 2.0 * 0.75f64.ln());
        assert!((loss - want).abs() < 1e-6, "{loss} vs {want}");
        let g = g.unwrap().to_vec2::<f32>().unwrap();
        // (3 * p - counts) / 3 = [(0.75 - 1)/3, (2.25 - 2)/3]
        assert!((g[0][0] + 0.25 / 3.0).abs() < 1e-6 && (g[0][1] - 0.25 / 3.0).abs() < 1e-6, "{g:?}");
    }

    #[test]
    fn head_op_matches_candle_matmul_and_cross_entropy() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        let (v, n, d) = (97, 33, 12);
        let mut draw = |k: usize| -> Vec<f32> { (0..k).map(|_| rng.random_range(-1.5..1.5)).collect() };
        let x = candle_core::Var::from_vec(draw(n * d), (n, d), &Device::Cpu).unwrap();
        let w = candle_core::Var::from_vec(draw(v * d), (v, d), &Device::Cpu).unwrap();
        let ys: Vec<u32> = (0..n).map(|i| (i * 31 % v) as u32).collect();
        let y = Tensor::from_slice(&ys, n, &Device::Cpu).unwrap();
        let theirs =
            candle_nn::loss::cross_entropy(&x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap(), &y).unwrap();
        let g_theirs = theirs.backward().unwrap();
        for w_trains in [true, false] {
            let wt = if w_trains { w.as_tensor().clone() } else { w.as_tensor().detach() };
            let ours = head_cross_entropy_mean(x.as_tensor(), &wt, &ys).unwrap();
            let g_ours = ours.backward().unwrap();
            let (a, b) = (ours.to_scalar::<f32>().unwrap(), theirs.to_scalar::<f32>().unwrap());
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            let diff = |p: &candle_core::Var| {
                let (a, b) = (g_ours.get(p.as_tensor()).unwrap(), g_theirs.get(p.as_tensor()).unwrap());
                (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap()
            };
            assert!(diff(&x) < 1e-6, "dx differs by {}", diff(&x));
            // A detached head gets no gradient at all: nothing is computed for it.
            assert_eq!(g_ours.get(w.as_tensor()).is_some(), w_trains);
            if w_trains {
                assert!(diff(&w) < 1e-6, "dw differs by {}", diff(&w));
            }
        }
    }

    #[test]
    fn fused_matches_tensor_ops() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let (v, n) = (300, 200);
        let xs: Vec<u32> = (0..n).map(|_| rng.random_range(0..40)).collect();
        let ys: Vec<u32> = (0..n).map(|_| rng.random_range(0..v as u32)).collect();
        let c = TokenCounts::from_pairs(&xs, &ys);
        let z: Vec<f32> = (0..c.rows() * v).map(|_| rng.random_range(-8.0..8.0)).collect();
        let z = Tensor::from_vec(z, (c.rows(), v), &Device::Cpu).unwrap();
        let (l_ops, g_ops) = cross_entropy_sum_ops(&z, &c, true).unwrap();
        let (l_fused, g_fused) = cross_entropy_sum(z.copy().unwrap(), &c, true).unwrap();
        assert!((l_ops - l_fused).abs() / l_ops < 1e-6, "{l_ops} vs {l_fused}");
        let diff = (g_ops.unwrap() - g_fused.unwrap()).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-7);
        // And the plain per-position definition: mean over positions of -log softmax.
        let zz = z.to_vec2::<f32>().unwrap();
        let mut direct = 0f64;
        for (&x, &y) in xs.iter().zip(&ys) {
            let row = &zz[c.tokens.binary_search(&x).unwrap()];
            let lse = row.iter().map(|&a| (a as f64).exp()).sum::<f64>().ln();
            direct += lse - row[y as usize] as f64;
        }
        assert!((direct - l_fused).abs() / direct < 1e-6, "{direct} vs {l_fused}");
    }
}
