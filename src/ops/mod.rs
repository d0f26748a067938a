//! The numerical kernels under the models: the cross-entropy ([`loss`]), the optimizer
//! ([`adamw`]), Model 5's decoder pieces on the CPU ([`decoder`]), the raw GEMM the fused CPU
//! passes call ([`gemm`]; a BLAS loaded at run time where it is faster, [`blas`]) and, with `--features cuda`, the device side of the same ops ([`cuda`]). Each fused op is one type whose CPU and CUDA
//! halves sit together, beside the plain tensor-op path it is tested against.

use candle_core::{DType, Device, Tensor};

use crate::error::Result;

pub mod adamw;
pub mod blas;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod decoder;
pub mod gemm;
pub mod lanes;
pub mod loss;
pub mod view;

/// A gradient: dense, only some rows (the embedding's gradient touches only the rows of
/// tokens in the batch; the optimizer treats the other rows as zero gradient), or an outer
/// product never materialised (the head's gradient gᵀ·h, which the fused AdamW computes block
/// by block of rows and applies at once, instead of writing and reading back a (V, d) matrix).
pub enum Grad {
    Dense(Tensor),
    Rows {
        ids: Vec<u32>,
        rows: Tensor,
    },
    /// gᵀ · h with g (U, V) and h (U, d): a (V, d) gradient.
    Outer {
        g: Tensor,
        h: Tensor,
    },
}

impl Grad {
    pub fn to_dense(&self, shape: &[usize], device: &Device) -> Result<Tensor> {
        Ok(match self {
            Grad::Dense(t) => t.clone(),
            Grad::Rows { ids, rows } => {
                let idx = Tensor::from_slice(ids, ids.len(), device)?;
                Tensor::zeros(shape, DType::F32, device)?.index_add(&idx, rows, 0)?
            }
            Grad::Outer { g, h } => g.t()?.matmul(h)?,
        })
    }
}
