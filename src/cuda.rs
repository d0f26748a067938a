//! Model 1's fused step on CUDA (`--features cuda`): the device twins of the CPU passes, as
//! candle custom ops over kernels/model1.cu (compiled to PTX by build.rs, loaded once per
//! device):
//!
//! - the cross-entropy that turns the distinct-token logits (U, V) into their gradient in place
//!   (one block per row; [`crate::loss`] holds the CPU pass and the formulas);
//! - one AdamW pass over each parameter, dense or row-sparse, with the moments kept on the
//!   device ([`crate::optim`] holds the CPU pass).
//!
//! The logits and the head's gradient gᵀ·h are cuBLAS GEMMs over the distinct tokens, and a
//! frozen embedding gets no input gradient, exactly as on the CPU ([`crate::model`]).

use std::sync::Mutex;

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDevice, WrapErr};
use candle_core::{CpuStorage, CudaStorage, Device, InplaceOp1, InplaceOp2, Layout, Tensor, Var};

use crate::error::{Error, Result};
use crate::loss::TokenCounts;
use crate::model::Grad;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/model1.ptx"));
const MODULE: &str = "embgraft_model1";
/// Threads per block of the cross-entropy (BLOCK in kernels/model1.cu).
const CE_BLOCK: u32 = 512;
const ADAMW_BLOCK: u32 = 256;

fn cuda_device(d: &Device) -> Result<&CudaDevice> {
    Ok(d.as_cuda_device()?)
}

/// Sum over positions of −log p(target), and, when `grad` is set, `z` (rows x vocab, f32,
/// contiguous, on a CUDA device) overwritten with the gradient of the mean loss.
pub fn cross_entropy_sum(z: &Tensor, counts: &TokenCounts, grad: bool) -> Result<f64> {
    let op = CrossEntropy { counts, grad, loss: Mutex::new(0.0) };
    z.inplace_op1(&op)?;
    let loss = *op.loss.lock().unwrap();
    Ok(loss)
}

struct CrossEntropy<'a> {
    counts: &'a TokenCounts,
    grad: bool,
    loss: Mutex<f64>,
}

impl InplaceOp1 for CrossEntropy<'_> {
    fn name(&self) -> &'static str {
        "cuda-cross-entropy"
    }

    fn cpu_fwd(&self, _: &mut CpuStorage, _: &Layout) -> candle_core::Result<()> {
        candle_core::bail!("the CUDA cross-entropy was given CPU logits")
    }

    fn cuda_fwd(&self, s: &mut CudaStorage, l: &Layout) -> candle_core::Result<()> {
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
        let f = dev.get_or_load_custom_func("cross_entropy_rows", MODULE, PTX)?;
        let (vocab, n, grad) = (vocab as u64, c.positions as f32, self.grad as i32);
        let mut b = f.builder();
        b.arg(&mut z).arg(&vocab).arg(&row_start).arg(&targets).arg(&counts).arg(&n).arg(&grad).arg(&mut row_loss);
        let cfg = LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (CE_BLOCK, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: the kernel reads rows·vocab floats of z and the row's (target, count) pairs,
        // all of the sizes checked above, and writes z and one loss per row.
        unsafe { b.launch(cfg) }.w()?;
        // Summed in row order on the host, as the CPU pass sums its per-row losses.
        let per_row = dev.clone_dtoh(&row_loss)?;
        *self.loss.lock().unwrap() = per_row.iter().sum();
        Ok(())
    }
}

/// AdamW's first and second moments of one parameter, on its device.
pub struct Moments {
    m: CudaSlice<f32>,
    v: CudaSlice<f32>,
}

impl Moments {
    pub fn zeros(device: &Device, n: usize) -> Result<Self> {
        let d = cuda_device(device)?;
        Ok(Moments { m: d.alloc_zeros::<f32>(n)?, v: d.alloc_zeros::<f32>(n)? })
    }

    pub fn from_host(device: &Device, m: &[f32], v: &[f32]) -> Result<Self> {
        let d = cuda_device(device)?;
        Ok(Moments { m: d.clone_htod(m)?, v: d.clone_htod(v)? })
    }

    pub fn to_host(&self, device: &Device) -> Result<(Vec<f32>, Vec<f32>)> {
        let d = cuda_device(device)?;
        Ok((d.clone_dtoh(&self.m)?, d.clone_dtoh(&self.v)?))
    }
}

/// One step's constants in the kernel's argument order: decay, 1 − β1, β2, 1 − β2, step size,
/// √(bias correction 2), eps (see `optim::Hyper`).
pub type HyperArgs = [f32; 7];

/// One AdamW step of `param` (on a CUDA device) with its gradient: dense, row-sparse (the
/// embedding), or gᵀ·h (the head; one cuBLAS GEMM makes it dense first).
pub fn adamw(param: &Var, moments: &mut Moments, grad: &Grad, h: HyperArgs) -> Result<()> {
    let n = param.elem_count();
    let cols = *param.dims().last().unwrap_or(&1);
    let rows = n / cols.max(1);
    let dev = cuda_device(param.device())?;
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
            (g.contiguous()?, Some(dev.clone_htod(map.as_slice())?))
        }
    };
    if row_of.is_none() && g.elem_count() != n {
        return Err(Error::Input(format!("gradient {:?} for a parameter of shape {:?}", g.dims(), param.dims())));
    }
    let op =
        AdamWOp { h, n, cols, row_of: row_of.as_ref(), m: Mutex::new(&mut moments.m), v: Mutex::new(&mut moments.v) };
    param.as_tensor().inplace_op2(&g, &op)?;
    Ok(())
}

struct AdamWOp<'a> {
    h: HyperArgs,
    n: usize,
    cols: usize,
    row_of: Option<&'a CudaSlice<u32>>,
    m: Mutex<&'a mut CudaSlice<f32>>,
    v: Mutex<&'a mut CudaSlice<f32>>,
}

impl InplaceOp2 for AdamWOp<'_> {
    fn name(&self) -> &'static str {
        "cuda-adamw"
    }

    fn cpu_fwd(&self, _: &mut CpuStorage, _: &Layout, _: &CpuStorage, _: &Layout) -> candle_core::Result<()> {
        candle_core::bail!("the CUDA AdamW was given CPU tensors")
    }

    fn cuda_fwd(&self, s1: &mut CudaStorage, l1: &Layout, s2: &CudaStorage, l2: &Layout) -> candle_core::Result<()> {
        let (Some((p0, p1)), Some((g0, g1))) = (l1.contiguous_offsets(), l2.contiguous_offsets()) else {
            candle_core::bail!("AdamW needs contiguous parameters and gradients")
        };
        if p1 - p0 != self.n {
            candle_core::bail!("AdamW: a parameter of {} elements, {} expected", p1 - p0, self.n)
        }
        let dev = s1.device().clone();
        let g = s2.as_cuda_slice::<f32>()?.slice(g0..g1);
        let theta = s1.as_cuda_slice_mut::<f32>()?;
        let mut theta = theta.slice_mut(p0..p1);
        let mut m = self.m.lock().unwrap();
        let mut v = self.v.lock().unwrap();
        if m.len() != self.n || v.len() != self.n {
            candle_core::bail!("AdamW: moments of {} elements for a parameter of {}", m.len(), self.n)
        }
        let f = dev.get_or_load_custom_func("adamw", MODULE, PTX)?;
        let (n, cols) = (self.n as u64, self.cols as u64);
        let null = 0u64;
        let mut b = f.builder();
        b.arg(&n).arg(&cols).arg(&mut theta).arg(&mut **m).arg(&mut **v).arg(&g);
        match self.row_of {
            Some(r) => b.arg(r),
            None => b.arg(&null),
        };
        for x in &self.h {
            b.arg(x);
        }
        let blocks = (self.n as u64).div_ceil(ADAMW_BLOCK as u64).clamp(1, 1 << 20) as u32;
        let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (ADAMW_BLOCK, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: n elements of theta, m and v (checked), and of g when dense; row-sparse: every
        // row_of entry is u32::MAX or a row of g (built from ids checked against g's shape).
        unsafe { b.launch(cfg) }.w()?;
        Ok(())
    }
}

/// Keeps freed device memory in the device's default pool instead of handing it back to the
/// driver at every synchronisation (the pool's default threshold is 0). A training step frees
/// and allocates the same few hundred MB (logits, the head's gradient) every time; mapping them
/// afresh each step cost more than the step's small kernels. PyTorch's caching allocator keeps
/// its memory the same way. Best effort: on failure memory is simply released as before.
pub fn keep_freed_memory(device: &Device) {
    use candle_core::cuda_backend::cudarc::driver::sys;
    let Ok(d) = device.as_cuda_device() else { return };
    let ctx = d.cuda_stream().context().clone();
    if ctx.bind_to_thread().is_err() {
        return;
    }
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    let mut threshold = u64::MAX;
    // SAFETY: plain driver calls on this context's device with valid out-pointers; the
    // attribute takes a u64 (cuuint64_t).
    unsafe {
        if sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) == sys::CUresult::CUDA_SUCCESS {
            let attr = sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD;
            let _ = sys::cuMemPoolSetAttribute(pool, attr, &mut threshold as *mut u64 as *mut std::ffi::c_void);
        }
    }
}

/// Bytes of device memory in use on `device` (all processes: total − free), for the
/// benchmark's peak-memory column; None off CUDA.
pub fn memory_used(device: &Device) -> Option<usize> {
    let d = device.as_cuda_device().ok()?;
    let (free, total) = d.cuda_stream().context().mem_get_info().ok()?;
    Some(total - free)
}
