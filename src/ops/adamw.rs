//! AdamW exactly as `torch.optim.AdamW` (single-tensor path) computes it, per step t:
//!
//!   θ ← θ · (1 − lr·wd)                       decoupled weight decay
//!   m ← m + (1 − β1)·(g − m)                  (torch: exp_avg.lerp_)
//!   v ← β2·v + (1 − β2)·g²
//!   θ ← θ − (lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + eps)
//!
//! Only trainable parameters are handed to the optimizer; a frozen one is never touched, not
//! even by the weight decay. On the CPU the whole update is one pass over θ, m and v.

use std::sync::Mutex;

use candle_core::{CpuStorage, InplaceOp1, InplaceOp2, Layout, Tensor, Var};
use rayon::prelude::*;

use crate::error::Result;
#[cfg(feature = "cuda")]
use crate::ops::cuda;
use crate::ops::gemm::{matmul, View};
use crate::ops::Grad;
#[cfg(feature = "cuda")]
use candle_core::backend::BackendStorage;
#[cfg(feature = "cuda")]
use candle_core::cuda_backend::{
    cudarc::driver::{LaunchConfig, PushKernelArg},
    WrapErr,
};

pub use crate::config::AdamWConfig;

enum Moments {
    /// CPU: plain buffers the fused update writes in place.
    Host { m: Vec<f32>, v: Vec<f32> },
    /// Other devices: tensors updated with tensor ops.
    Device { m: Tensor, v: Tensor },
    /// CUDA: device buffers the fused kernel updates in place.
    #[cfg(feature = "cuda")]
    Cuda(crate::ops::cuda::Moments),
}

struct Slot {
    /// The parameter's name (`wte`, `h.0.attn.c_attn.weight`): gradients and checkpoints
    /// find the slot by it.
    name: String,
    param: Var,
    moments: Moments,
    lr: f64,
    /// Steps this parameter has taken: its own bias correction, as torch keeps per parameter,
    /// so a parameter thawed mid-run starts from zero moments and t = 0.
    t: u64,
}

pub struct AdamW {
    pub cfg: AdamWConfig,
    pub step: u64,
    slots: Vec<Slot>,
    fused: bool,
}

impl AdamW {
    /// `params` are the trainable parameters only.
    pub fn new(params: Vec<Var>, cfg: AdamWConfig) -> Result<Self> {
        Self::with(params, cfg, true)
    }

    /// The same update written with plain tensor ops on every device: the reference the fused
    /// CPU pass is tested and benchmarked against.
    pub fn new_unfused(params: Vec<Var>, cfg: AdamWConfig) -> Result<Self> {
        Self::with(params, cfg, false)
    }

    fn with(params: Vec<Var>, cfg: AdamWConfig, fused: bool) -> Result<Self> {
        let mut opt = AdamW { cfg, step: 0, slots: Vec::new(), fused };
        for (i, p) in params.into_iter().enumerate() {
            opt.add(&i.to_string(), p, cfg.lr)?;
        }
        Ok(opt)
    }

    /// Adds a parameter (a thawed one) with zero moments and its own learning rate.
    pub fn add(&mut self, name: &str, param: Var, lr: f64) -> Result<()> {
        let n = param.elem_count();
        let moments = if self.fused && param.device().is_cpu() {
            Moments::Host { m: vec![0.0; n], v: vec![0.0; n] }
        } else if self.fused && param.device().is_cuda() {
            cuda_moments(param.device(), n)?
        } else {
            Moments::Device { m: param.zeros_like()?, v: param.zeros_like()? }
        };
        self.slots.push(Slot { name: name.to_string(), param, moments, lr, t: 0 });
        Ok(())
    }

    /// The parameters' names in slot order.
    pub fn names(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.name.clone()).collect()
    }

    /// One step with gradients by parameter name; every slot must have one.
    pub fn step_named(&mut self, grads: &mut std::collections::HashMap<String, Grad>) -> Result<()> {
        let list = self
            .slots
            .iter()
            .map(|s| {
                grads.remove(&s.name).ok_or_else(|| crate::error::Error::Input(format!("no gradient for {}", s.name)))
            })
            .collect::<Result<Vec<Grad>>>()?;
        self.step(&list.iter().collect::<Vec<_>>())
    }

    /// Sets the learning rate of slot `i`.
    pub fn set_lr(&mut self, i: usize, lr: f64) {
        self.slots[i].lr = lr;
    }

    /// The learning rate and the steps taken of the parameter `name`, if it trains.
    pub fn rate_and_steps(&self, name: &str) -> Option<(f64, u64)> {
        self.slots.iter().find(|s| s.name == name).map(|s| (s.lr, s.t))
    }

    /// Steps slot `i` has taken.
    pub fn slot_steps(&self, i: usize) -> u64 {
        self.slots[i].t
    }

    pub fn set_slot_steps(&mut self, i: usize, t: u64) {
        self.slots[i].t = t;
    }

    pub fn trainable_elements(&self) -> usize {
        self.slots.iter().map(|s| s.param.elem_count()).sum()
    }

    /// One step; `grads[i]` belongs to the i-th parameter given to `new`.
    pub fn step(&mut self, grads: &[&Grad]) -> Result<()> {
        assert_eq!(grads.len(), self.slots.len(), "one gradient per trainable parameter");
        self.step += 1;
        let c = self.cfg;
        for (slot, grad) in self.slots.iter_mut().zip(grads) {
            slot.t += 1;
            let h = Hyper::at(c, slot.lr, slot.t);
            match &mut slot.moments {
                Moments::Host { m, v } if matches!(grad, Grad::Outer { .. }) => {
                    let Grad::Outer { g, h: x } = grad else { unreachable!() };
                    let (g, x) = (g.contiguous()?, x.contiguous()?);
                    let (u, vocab) = g.dims2()?;
                    let cols = x.dim(1)?;
                    if slot.param.dims() != [vocab, cols] || x.dim(0)? != u {
                        return Err(crate::error::Error::Input(format!(
                            "gradient gᵀ·h of shape [{vocab}, {cols}] for a parameter of shape {:?}",
                            slot.param.dims()
                        )));
                    }
                    let (gs, gl) = g.storage_and_layout();
                    let (xs, xl) = x.storage_and_layout();
                    let (
                        candle_core::Storage::Cpu(CpuStorage::F32(gv)),
                        candle_core::Storage::Cpu(CpuStorage::F32(xv)),
                    ) = (&*gs, &*xs)
                    else {
                        return Err(crate::error::Error::Input("fused AdamW needs f32 CPU gradients".into()));
                    };
                    let op = FusedOuterAdamW {
                        h,
                        cols,
                        u,
                        vocab,
                        g: &gv[gl.start_offset()..gl.start_offset() + u * vocab],
                        x: &xv[xl.start_offset()..xl.start_offset() + u * cols],
                        m: Mutex::new(m),
                        v: Mutex::new(v),
                    };
                    slot.param.as_tensor().inplace_op1(&op)?;
                }
                Moments::Host { .. } => {
                    let cols = *slot.param.dims().last().unwrap_or(&1);
                    let (g, row_of) = checked_gradient(&slot.param, grad)?;
                    let row_of = row_of.as_deref().map(RowOf::Host);
                    let op = FusedAdamW { h, cols, row_of, moments: Mutex::new(&mut slot.moments) };
                    slot.param.as_tensor().inplace_op2(&g, &op)?;
                }
                #[cfg(feature = "cuda")]
                Moments::Cuda(_) => {
                    let cols = *slot.param.dims().last().unwrap_or(&1);
                    let (g, row_of) = checked_gradient(&slot.param, grad)?;
                    let dev = cuda::cuda_device(slot.param.device())?;
                    let row_of = row_of.map(|m| dev.clone_htod(m.as_slice())).transpose()?;
                    let row_of = row_of.as_ref().map(RowOf::Device);
                    let op = FusedAdamW { h, cols, row_of, moments: Mutex::new(&mut slot.moments) };
                    slot.param.as_tensor().inplace_op2(&g, &op)?;
                }
                Moments::Device { m, v } => {
                    let g = grad.to_dense(slot.param.dims(), slot.param.device())?;
                    // The same f32 operations in the same order as `adamw_update`, so the two
                    // paths agree bit for bit (a tensor divided by an f64 would multiply by its
                    // reciprocal instead, hence the one-element tensor).
                    let theta = (slot.param.as_tensor() * h.decay as f64)?;
                    *m = (&*m + ((&g - &*m)? * h.one_minus_beta1 as f64)?)?;
                    *v = ((&*v * h.beta2 as f64)? + ((&g * h.one_minus_beta2 as f64)? * &g)?)?;
                    let bc2 = Tensor::new(h.bc2_sqrt, slot.param.device())?;
                    let denom = (v.sqrt()?.broadcast_div(&bc2)? + h.eps as f64)?;
                    slot.param.set(&(theta - ((&*m / denom)? * h.step_size as f64)?)?)?;
                }
            }
        }
        Ok(())
    }

    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Puts back the moments of parameter `i` from a checkpoint.
    pub fn restore(&mut self, i: usize, m_in: Vec<f32>, v_in: Vec<f32>) -> Result<()> {
        let slot = &mut self.slots[i];
        let n = slot.param.elem_count();
        if m_in.len() != n || v_in.len() != n {
            return Err(crate::error::Error::Input(format!(
                "checkpoint moments have {} elements, the parameter {n}; the checkpoint belongs to another experiment",
                m_in.len()
            )));
        }
        slot.moments = match &slot.moments {
            Moments::Host { .. } => Moments::Host { m: m_in, v: v_in },
            #[cfg(feature = "cuda")]
            Moments::Cuda(_) => Moments::Cuda(crate::ops::cuda::Moments::from_host(slot.param.device(), &m_in, &v_in)?),
            Moments::Device { .. } => {
                let (shape, dev) = (slot.param.shape().clone(), slot.param.device().clone());
                Moments::Device {
                    m: Tensor::from_vec(m_in, shape.clone(), &dev)?,
                    v: Tensor::from_vec(v_in, shape, &dev)?,
                }
            }
        };
        Ok(())
    }

    /// The moments of parameter `i`, for checkpoints and tests.
    pub fn moments(&self, i: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok(match &self.slots[i].moments {
            Moments::Host { m, v } => (m.clone(), v.clone()),
            Moments::Device { m, v } => (m.flatten_all()?.to_vec1()?, v.flatten_all()?.to_vec1()?),
            #[cfg(feature = "cuda")]
            Moments::Cuda(mv) => mv.to_host(self.slots[i].param.device())?,
        })
    }
}

/// One step's constants. As torch computes them: in f64 (Python floats), then rounded once
/// to f32 where the kernel uses them; `1 − β2` computed in f32 would be 0.00099998713
/// instead of torch's 0.0010000000475.
#[derive(Clone, Copy)]
struct Hyper {
    decay: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    step_size: f32,
    bc2_sqrt: f32,
    eps: f32,
}

impl Hyper {
    /// Constants of a parameter's step `t` (its own count, from 1) at learning rate `lr`.
    fn at(c: AdamWConfig, lr: f64, t: u64) -> Self {
        let t = t.min(i32::MAX as u64) as i32;
        Hyper {
            decay: (1.0 - lr * c.weight_decay) as f32,
            one_minus_beta1: (1.0 - c.beta1) as f32,
            beta2: c.beta2 as f32,
            one_minus_beta2: (1.0 - c.beta2) as f32,
            step_size: (lr / (1.0 - c.beta1.powi(t))) as f32,
            bc2_sqrt: (1.0 - c.beta2.powi(t)).sqrt() as f32,
            eps: c.eps as f32,
        }
    }
}

/// Zero moments kept on a CUDA device, for the fused kernel.
#[cfg(feature = "cuda")]
fn cuda_moments(device: &candle_core::Device, n: usize) -> Result<Moments> {
    Ok(Moments::Cuda(crate::ops::cuda::Moments::zeros(device, n)?))
}

/// Without the CUDA build no parameter lives on a CUDA device.
#[cfg(not(feature = "cuda"))]
fn cuda_moments(device: &candle_core::Device, n: usize) -> Result<Moments> {
    Ok(Moments::Device {
        m: Tensor::zeros(n, candle_core::DType::F32, device)?,
        v: Tensor::zeros(n, candle_core::DType::F32, device)?,
    })
}

/// AdamW's element update, shared by the fused passes.
#[inline(always)]
fn adamw_update(h: Hyper, p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
    for i in 0..p.len() {
        let gi = g[i];
        // torch: exp_avg.lerp_(g, 1 − β1); exp_avg_sq.mul_(β2).addcmul_(g, g, value = 1 − β2).
        let mi = m[i] + h.one_minus_beta1 * (gi - m[i]);
        let vi = h.beta2 * v[i] + h.one_minus_beta2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        let denom = vi.sqrt() / h.bc2_sqrt + h.eps;
        p[i] = p[i] * h.decay - h.step_size * (mi / denom);
    }
}

/// Rows of the head handled together: their gradient (ROWS x d) is computed into a buffer that
/// stays in cache and applied at once.
const OUTER_ROWS: usize = 64;

/// AdamW on a parameter whose gradient is gᵀ·x, computed block by block of rows.
struct FusedOuterAdamW<'a> {
    h: Hyper,
    cols: usize,
    u: usize,
    vocab: usize,
    /// (U, V) row-major.
    g: &'a [f32],
    /// (U, cols) row-major.
    x: &'a [f32],
    m: Mutex<&'a mut Vec<f32>>,
    v: Mutex<&'a mut Vec<f32>>,
}

impl InplaceOp1 for FusedOuterAdamW<'_> {
    fn name(&self) -> &'static str {
        "fused-outer-adamw"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> candle_core::Result<()> {
        let CpuStorage::F32(theta) = s else { candle_core::bail!("fused AdamW needs f32 parameters") };
        let (cols, u, vocab) = (self.cols, self.u, self.vocab);
        let theta = &mut theta[l.start_offset()..l.start_offset() + vocab * cols];
        let mut m = self.m.lock().unwrap();
        let mut v = self.v.lock().unwrap();
        let block = OUTER_ROWS * cols;
        let failed: Mutex<Option<String>> = Mutex::new(None);
        theta.par_chunks_mut(block).zip(m.par_chunks_mut(block)).zip(v.par_chunks_mut(block)).enumerate().for_each(
            |(b, ((p, m), v))| {
                let (r0, rows) = (b * OUTER_ROWS, p.len() / cols);
                let mut grad = vec![0f32; rows * cols];
                // grad (rows x cols) = gᵀ[r0.., :] (rows x U) · x (U x cols); one thread per block,
                // so the sums do not depend on the thread count.
                let gt = View { data: &self.g[r0..], rows, cols: u, row_stride: 1, col_stride: vocab };
                if let Err(e) = matmul(&mut grad, gt, View::row_major(self.x, u, cols), false) {
                    *failed.lock().unwrap() = Some(e.to_string());
                    return;
                }
                adamw_update(self.h, p, m, v, &grad);
            },
        );
        match failed.into_inner().unwrap() {
            Some(e) => candle_core::bail!("{e}"),
            None => Ok(()),
        }
    }
}

/// Which gradient row each parameter row takes, for a row-sparse gradient (u32::MAX: none, the
/// gradient is zero there but decay and moments still apply), on the parameter's side.
enum RowOf<'a> {
    Host(&'a [u32]),
    #[cfg(feature = "cuda")]
    Device(&'a candle_core::cuda_backend::cudarc::driver::CudaSlice<u32>),
}

/// One AdamW step of a parameter in place, its moments beside it: the CPU half a rayon pass over
/// rows, the CUDA half the `adamw` kernel of kernels/model1.cu; both apply [`adamw_update`]'s
/// operations in its order.
struct FusedAdamW<'a> {
    h: Hyper,
    cols: usize,
    row_of: Option<RowOf<'a>>,
    moments: Mutex<&'a mut Moments>,
}

impl InplaceOp2 for FusedAdamW<'_> {
    fn name(&self) -> &'static str {
        "fused-adamw"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<()> {
        let (CpuStorage::F32(theta), CpuStorage::F32(grad)) = (s1, s2) else {
            candle_core::bail!("fused AdamW needs f32 parameters and gradients")
        };
        let n = l1.shape().elem_count();
        let theta = &mut theta[l1.start_offset()..l1.start_offset() + n];
        let grad = &grad[l2.start_offset()..l2.start_offset() + l2.shape().elem_count()];
        let mut moments = self.moments.lock().unwrap();
        let Moments::Host { m, v } = &mut **moments else {
            candle_core::bail!("AdamW: CPU parameters, device moments")
        };
        let row_of = match self.row_of {
            None => None,
            Some(RowOf::Host(r)) => Some(r),
            #[cfg(feature = "cuda")]
            Some(RowOf::Device(_)) => candle_core::bail!("AdamW: a CPU parameter with a device row map"),
        };
        let (h, cols) = (self.h, self.cols);
        let zeros = vec![0f32; cols];
        theta.par_chunks_mut(cols).zip(m.par_chunks_mut(cols)).zip(v.par_chunks_mut(cols)).enumerate().for_each(
            |(r, ((p, m), v))| {
                let g = match row_of {
                    None => &grad[r * cols..(r + 1) * cols],
                    Some(map) if map[r] == u32::MAX => &zeros[..],
                    Some(map) => &grad[map[r] as usize * cols..(map[r] as usize + 1) * cols],
                };
                adamw_update(h, p, m, v, g);
            },
        );
        Ok(())
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        s1: &mut candle_core::CudaStorage,
        l1: &Layout,
        s2: &candle_core::CudaStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let (Some((p0, p1)), Some((g0, g1))) = (l1.contiguous_offsets(), l2.contiguous_offsets()) else {
            candle_core::bail!("AdamW needs contiguous parameters and gradients")
        };
        let n = p1 - p0;
        let mut moments = self.moments.lock().unwrap();
        let Moments::Cuda(mv) = &mut **moments else { candle_core::bail!("AdamW: CUDA parameters with host moments") };
        let row_of = match self.row_of {
            None => None,
            Some(RowOf::Device(r)) => Some(r),
            Some(RowOf::Host(_)) => candle_core::bail!("AdamW: a CUDA parameter with a host row map"),
        };
        let dev = s1.device().clone();
        let g = s2.as_cuda_slice::<f32>()?.slice(g0..g1);
        let theta = s1.as_cuda_slice_mut::<f32>()?;
        let mut theta = theta.slice_mut(p0..p1);
        let (m, v) = (&mut mv.m, &mut mv.v);
        if m.len() != n || v.len() != n {
            candle_core::bail!("AdamW: moments of {} elements for a parameter of {n}", m.len())
        }
        let f = dev.get_or_load_custom_func("adamw", cuda::MODULE, cuda::PTX)?;
        let (n, cols) = (n as u64, self.cols as u64);
        let null = 0u64;
        let mut b = f.builder();
        b.arg(&n).arg(&cols).arg(&mut theta).arg(m).arg(v).arg(&g);
        match row_of {
            Some(r) => b.arg(r),
            None => b.arg(&null),
        };
        let h = self.h;
        let args = [h.decay, h.one_minus_beta1, h.beta2, h.one_minus_beta2, h.step_size, h.bc2_sqrt, h.eps];
        for x in &args {
            b.arg(x);
        }
        let blocks = n.div_ceil(cuda::ADAMW_BLOCK as u64).clamp(1, 1 << 20) as u32;
        let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (cuda::ADAMW_BLOCK, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: n elements of theta, m and v (checked), and of g when dense; row-sparse: every
        // row_of entry is u32::MAX or a row of g (built from ids checked against g's shape).
        unsafe { b.launch(cfg) }.w()?;
        Ok(())
    }
}

/// A gradient as both halves of [`FusedAdamW`] take it, checked against its parameter: dense
/// (gᵀ·h made dense by one GEMM; the CPU handles it before, block by block), or the rows of the
/// tokens in the batch with the map from parameter rows to them (see [`RowOf`]).
fn checked_gradient(param: &Var, grad: &Grad) -> Result<(Tensor, Option<Vec<u32>>)> {
    use crate::error::Error;
    let n = param.elem_count();
    let cols = *param.dims().last().unwrap_or(&1);
    let rows = n / cols.max(1);
    let (g, row_of) = match grad {
        Grad::Dense(g) => (g.contiguous()?, None),
        Grad::Outer { g, h } => (g.t()?.matmul(h)?.contiguous()?, None), // (V, d) = gᵀ·h
        Grad::Rows { ids, rows: g } => {
            let mut map = vec![u32::MAX; rows];
            for (k, &id) in ids.iter().enumerate() {
                let slot = map
                    .get_mut(id as usize)
                    .ok_or_else(|| Error::Input(format!("gradient row for id {id} of a parameter with {rows} rows")))?;
                *slot = k as u32;
            }
            if g.dims() != [ids.len(), cols] {
                return Err(Error::Input(format!("row gradient {:?} for {} ids of width {cols}", g.dims(), ids.len())));
            }
            (g.contiguous()?, Some(map))
        }
    };
    if row_of.is_none() && g.elem_count() != n {
        return Err(Error::Input(format!("gradient {:?} for a parameter of shape {:?}", g.dims(), param.dims())));
    }
    Ok((g, row_of))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// AdamW written out in f64 for one scalar, straight from the formula.
    fn by_hand(theta0: f64, grads: &[f64], c: AdamWConfig) -> f64 {
        let (mut th, mut m, mut v) = (theta0, 0.0, 0.0);
        for (k, g) in grads.iter().enumerate() {
            let t = (k + 1) as i32;
            th *= 1.0 - c.lr * c.weight_decay;
            m = c.beta1 * m + (1.0 - c.beta1) * g;
            v = c.beta2 * v + (1.0 - c.beta2) * g * g;
            let mhat = m / (1.0 - c.beta1.powi(t));
            let vhat = v / (1.0 - c.beta2.powi(t));
            th -= c.lr * mhat / (vhat.sqrt() + c.eps);
        }
        th
    }

    #[test]
    fn steps_match_hand_computation() {
        let c = AdamWConfig { lr: 0.1, weight_decay: 0.5, ..Default::default() };
        let theta0 = [1.0f32, -2.0, 0.5, 3.0];
        let gs = [[0.5f32, -1.0, 0.0, 2.0], [-0.25, 0.5, 1e-3, 2.0], [1.0, 1.0, -1.0, 0.0]];
        // First step by hand: θ(1 − lr·wd) − lr·g/(|g| + eps) = 1·0.95 − 0.1 = 0.85 for θ0 = 1, g = 0.5.
        for (dense, fused) in [(true, true), (false, true), (true, false), (false, false)] {
            let p = Var::from_slice(&theta0, (2, 2), &Device::Cpu).unwrap();
            let mut opt =
                if fused { AdamW::new(vec![p.clone()], c) } else { AdamW::new_unfused(vec![p.clone()], c) }.unwrap();
            for g in &gs {
                let grad = if dense {
                    Grad::Dense(Tensor::from_slice(g, (2, 2), &Device::Cpu).unwrap())
                } else {
                    // Row 1 only; row 0's gradient must then be treated as zero.
                    Grad::Rows { ids: vec![1], rows: Tensor::from_slice(&g[2..], (1, 2), &Device::Cpu).unwrap() }
                };
                opt.step(&[&grad]).unwrap();
                if opt.step == 1 && dense {
                    let got = p.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    assert!((got[0] - 0.85).abs() < 1e-6, "{got:?}");
                }
            }
            let got = p.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for i in 0..4 {
                let g: Vec<f64> = gs.iter().map(|g| if dense || i >= 2 { g[i] as f64 } else { 0.0 }).collect();
                let want = by_hand(theta0[i] as f64, &g, c);
                assert!((got[i] as f64 - want).abs() < 1e-5, "dense={dense} element {i}: {} vs {want}", got[i]);
            }
        }
    }

    /// The fused pass and the tensor-op pass do the same f32 operations in the same order:
    /// equal bits after several steps, dense and row-sparse, with weight decay on.
    #[test]
    fn fused_and_tensor_op_paths_agree_exactly() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let c = AdamWConfig { lr: 3e-3, weight_decay: 0.05, ..Default::default() };
        let theta: Vec<f32> = (0..40 * 6).map(|_| rng.random_range(-1.0..1.0)).collect();
        let a = Var::from_slice(&theta, (40, 6), &Device::Cpu).unwrap();
        let b = Var::from_slice(&theta, (40, 6), &Device::Cpu).unwrap();
        let mut fused = AdamW::new(vec![a.clone()], c).unwrap();
        let mut plain = AdamW::new_unfused(vec![b.clone()], c).unwrap();
        for k in 0..5 {
            let g: Vec<f32> = (0..40 * 6).map(|_| rng.random_range(-2.0..2.0)).collect();
            let grad = if k % 2 == 0 {
                Grad::Dense(Tensor::from_vec(g, (40, 6), &Device::Cpu).unwrap())
            } else {
                Grad::Rows { ids: vec![3, 17], rows: Tensor::from_vec(g[..12].to_vec(), (2, 6), &Device::Cpu).unwrap() }
            };
            fused.step(&[&grad]).unwrap();
            plain.step(&[&grad]).unwrap();
        }
        let bits = |v: &Var| {
            v.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        };
        assert_eq!(bits(&a), bits(&b));
        assert_eq!(fused.moments(0).unwrap(), plain.moments(0).unwrap());
    }

    /// A parameter thawed mid-run joins with zero moments and its own step count, so its
    /// first update is AdamW's first step (|Δ| = lr for a non-zero gradient), as a fresh torch
    /// parameter group would take; the one trained before keeps its state.
    #[test]
    fn thawed_parameter_starts_from_zero_moments() {
        let c = AdamWConfig { lr: 0.1, weight_decay: 0.5, ..Default::default() };
        let g = |x: [f32; 2]| Grad::Dense(Tensor::from_slice(&x, (1, 2), &Device::Cpu).unwrap());
        for fused in [true, false] {
            let a = Var::from_slice(&[1.0f32, 2.0], (1, 2), &Device::Cpu).unwrap();
            let b = Var::from_slice(&[1.0f32, -1.0], (1, 2), &Device::Cpu).unwrap();
            let mut opt =
                if fused { AdamW::new(vec![a.clone()], c) } else { AdamW::new_unfused(vec![a.clone()], c) }.unwrap();
            for _ in 0..3 {
                opt.step(&[&g([0.5, 0.5])]).unwrap();
            }
            let a_moments = opt.moments(0).unwrap();
            opt.add("b", b.clone(), 0.2).unwrap();
            assert_eq!(opt.moments(1).unwrap(), (vec![0.0; 2], vec![0.0; 2]), "thawed moments start at zero");
            opt.step(&[&g([0.5, 0.5]), &g([2.0, -4.0])]).unwrap();
            assert_eq!((opt.slot_steps(0), opt.slot_steps(1)), (4, 1));
            let got = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let c2 = AdamWConfig { lr: 0.2, ..c };
            assert!((got[0] as f64 - by_hand(1.0, &[2.0], c2)).abs() < 1e-5, "{got:?}");
            assert!((got[1] as f64 - by_hand(-1.0, &[-4.0], c2)).abs() < 1e-5, "{got:?}");
            let (m, _) = opt.moments(1).unwrap();
            assert!((m[0] - 0.2).abs() < 1e-7 && (m[1] + 0.4).abs() < 1e-7, "{m:?}");
            assert_ne!(opt.moments(0).unwrap(), a_moments, "the other slot kept training");
        }
    }

    /// The head's gradient left as gᵀ·h and applied block by block gives what the dense
    /// gradient gives, over a row count that is not a multiple of the block.
    #[test]
    fn outer_gradient_matches_dense() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let (u, rows, cols) = (7, 150, 24);
        let c = AdamWConfig { lr: 0.05, weight_decay: 0.1, ..Default::default() };
        let theta: Vec<f32> = (0..rows * cols).map(|_| rng.random_range(-1.0..1.0)).collect();
        let a = Var::from_slice(&theta, (rows, cols), &Device::Cpu).unwrap();
        let b = Var::from_slice(&theta, (rows, cols), &Device::Cpu).unwrap();
        let mut fused = AdamW::new(vec![a.clone()], c).unwrap();
        let mut plain = AdamW::new(vec![b.clone()], c).unwrap();
        for _ in 0..3 {
            let g: Vec<f32> = (0..u * rows).map(|_| rng.random_range(-1.0..1.0)).collect();
            let x: Vec<f32> = (0..u * cols).map(|_| rng.random_range(-1.0..1.0)).collect();
            let outer = Grad::Outer {
                g: Tensor::from_vec(g, (u, rows), &Device::Cpu).unwrap(),
                h: Tensor::from_vec(x, (u, cols), &Device::Cpu).unwrap(),
            };
            let dense = Grad::Dense(outer.to_dense(&[rows, cols], &Device::Cpu).unwrap());
            fused.step(&[&outer]).unwrap();
            plain.step(&[&dense]).unwrap();
        }
        let diff = (a.as_tensor() - b.as_tensor()).unwrap().abs().unwrap().max_all().unwrap();
        let diff = diff.to_scalar::<f32>().unwrap();
        assert!(diff < 1e-6, "fused outer vs dense differ by {diff}");
        let (ma, _) = fused.moments(0).unwrap();
        assert!(ma.iter().all(|x| *x != 0.0), "every row got its gradient");
    }
}
