//! A read-only matrix view over a slice: what the door to the matrix products
//! ([`crate::ops::gemm`]) and the BLAS behind it ([`crate::ops::blas`]) read.

use crate::error::{Error, Result};

/// A read-only matrix view: element (i, j) is `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> View<'a> {
    /// A row-major (rows, cols) matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        View { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// The transpose of a row-major (cols, rows) matrix, without copying.
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize) -> Self {
        View { data, rows, cols, row_stride: 1, col_stride: rows }
    }

    /// The same values read as the transpose, without copying.
    pub fn t(self) -> Self {
        View { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }

    /// The largest index the view reads, or None for an empty view or one past `usize`.
    fn last_index(&self) -> Option<usize> {
        if self.rows == 0 || self.cols == 0 {
            return None;
        }
        (self.rows - 1).checked_mul(self.row_stride)?.checked_add((self.cols - 1).checked_mul(self.col_stride)?)
    }

    pub(crate) fn check(&self, what: &str) -> Result<()> {
        let fits = self.rows == 0 || self.cols == 0 || self.last_index().is_some_and(|i| i < self.data.len());
        let strides_fit = isize::try_from(self.row_stride).is_ok() && isize::try_from(self.col_stride).is_ok();
        if !(fits && strides_fit) {
            return Err(Error::Input(format!(
                "matrix product: {what} view ({} x {}, strides {} and {}) reaches past its {} values",
                self.rows,
                self.cols,
                self.row_stride,
                self.col_stride,
                self.data.len()
            )));
        }
        Ok(())
    }
}
