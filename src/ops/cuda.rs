//! What the CUDA halves of the fused ops share (`--features cuda`): kernels/model1.cu, compiled to
//! PTX by build.rs and loaded once per device; AdamW's moments kept on the device; the memory
//! pool setting and the benchmark's memory reading. The ops themselves, each one type with its
//! CPU and CUDA halves, are [`crate::ops::loss`]'s cross-entropy and [`crate::ops::adamw`]'s step.

use candle_core::cuda_backend::cudarc::driver::CudaSlice;
use candle_core::cuda_backend::CudaDevice;
use candle_core::Device;

use crate::error::Result;

pub(crate) const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/model1.ptx"));
pub(crate) const MODULE: &str = "embgraft_model1";
/// Threads per block of the cross-entropy (BLOCK in kernels/model1.cu).
pub(crate) const CE_BLOCK: u32 = 512;
pub(crate) const ADAMW_BLOCK: u32 = 256;

pub(crate) fn cuda_device(d: &Device) -> Result<&CudaDevice> {
    Ok(d.as_cuda_device()?)
}

/// AdamW's first and second moments of one parameter, on its device.
pub struct Moments {
    pub(crate) m: CudaSlice<f32>,
    pub(crate) v: CudaSlice<f32>,
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
