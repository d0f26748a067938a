//! The one door to the `gemm` crate's raw matrix product, so its unsafe contract is checked in
//! one place: every view's extent is proven inside its slice before the call.

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

    fn check(&self, what: &str) -> Result<()> {
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

/// The kernels the `gemm` crate runs on this machine in this build: "avx512" where the CPU has it
/// and the `avx512` feature is on, else "avx2" (with FMA), else "baseline".
pub fn crate_kernels() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if cfg!(feature = "avx512") && std::is_x86_feature_detected!("avx512f") {
            return "avx512";
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return "avx2";
        }
    }
    "baseline"
}

/// What computes the door's products here: the loaded BLAS by its own name, or the `gemm`
/// crate with its kernels. Benchmarks and reports record it: the same CPU runs either,
/// depending on the build and on `EMBGRAFT_GEMM` / `EMBGRAFT_BLAS` ([`crate::ops::blas`]).
pub fn kernels() -> String {
    match crate::ops::blas::chosen() {
        Ok(Some(b)) => b.name.clone(),
        Ok(None) => format!("gemm crate, {} kernels", crate_kernels()),
        Err(e) => format!("none ({e})"),
    }
}

/// `dst = lhs · rhs` with `dst` row-major (lhs.rows, rhs.cols). `parallel` spreads the product
/// over rayon's threads; without it, one thread computes it, so callers that parallelise
/// themselves get sums that do not depend on the thread count.
pub fn matmul(dst: &mut [f32], lhs: View, rhs: View, parallel: bool) -> Result<()> {
    matmul_into(dst, lhs, rhs, false, parallel)
}

/// `dst = lhs · rhs`, or `dst += lhs · rhs` when `accumulate` is set; otherwise as [`matmul`].
/// The output is split among threads, never the inner dimension, so the sums are the same at
/// any thread count. A BLAS computes it where one is chosen ([`crate::ops::blas`]), the `gemm`
/// crate otherwise.
pub fn matmul_into(dst: &mut [f32], lhs: View, rhs: View, accumulate: bool, parallel: bool) -> Result<()> {
    if !prepare(dst, &lhs, &rhs, accumulate)? {
        return Ok(());
    }
    if let Some(blas) = crate::ops::blas::chosen()? {
        if blas.matmul(dst, &lhs, &rhs, accumulate, parallel) {
            return Ok(());
        }
    }
    gemm_crate(dst, lhs, rhs, accumulate, parallel);
    Ok(())
}

/// As [`matmul_into`], through the `gemm` crate whatever the BLAS setting: what another
/// backend is compared against.
pub(crate) fn crate_matmul(dst: &mut [f32], lhs: View, rhs: View, accumulate: bool, parallel: bool) -> Result<()> {
    if prepare(dst, &lhs, &rhs, accumulate)? {
        gemm_crate(dst, lhs, rhs, accumulate, parallel);
    }
    Ok(())
}

/// Checks that both views lie inside their slices and that the shapes and `dst` agree, and
/// settles the empty products; true when a product is left to compute.
fn prepare(dst: &mut [f32], lhs: &View, rhs: &View, accumulate: bool) -> Result<bool> {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    lhs.check("left")?;
    rhs.check("right")?;
    if rhs.rows != k || m.checked_mul(n) != Some(dst.len()) {
        return Err(Error::Input(format!(
            "matrix product of ({m} x {k}) and ({} x {n}) into {} values",
            rhs.rows,
            dst.len()
        )));
    }
    if k == 0 && !accumulate {
        dst.fill(0.0);
    }
    Ok(m > 0 && n > 0 && k > 0)
}

/// The `gemm` crate's product, for views and a `dst` [`prepare`] accepted.
fn gemm_crate(dst: &mut [f32], lhs: View, rhs: View, accumulate: bool, parallel: bool) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    let par = if parallel { gemm::Parallelism::Rayon(rayon::current_num_threads()) } else { gemm::Parallelism::None };
    // SAFETY: `check` proved that every (i, j) of both views indexes inside its slice, and dst
    // holds exactly m x n values written with row stride n; dst's old values are read only when
    // accumulating (they are initialised floats either way), and nothing else holds dst while it
    // is borrowed mutably here.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn matches_the_textbook_product_for_plain_and_transposed_views() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let want = naive(&a, &b, m, k, n);
        let mut got = vec![f32::NAN; m * n];
        matmul(&mut got, View::row_major(&a, m, k), View::row_major(&b, k, n), false).unwrap();
        assert!(got.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-5), "{got:?} vs {want:?}");
        // The same product with b stored transposed, (n, k), read as (k, n).
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let mut got2 = vec![0f32; m * n];
        matmul(&mut got2, View::row_major(&a, m, k), View::transposed(&bt, k, n), true).unwrap();
        assert!(got2.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-5));
    }

    #[test]
    fn views_past_their_slice_are_refused() {
        let a = vec![1f32; 6];
        let mut d = vec![0f32; 4];
        let short = View::row_major(&a[..5], 2, 3);
        assert!(matmul(&mut d[..2 * 2], short, View::row_major(&a, 3, 2), false).is_err());
        assert!(matmul(&mut d[..3], View::row_major(&a, 2, 3), View::row_major(&a, 3, 2), false).is_err());
        let huge = View { data: &a, rows: 2, cols: 2, row_stride: usize::MAX, col_stride: 1 };
        assert!(matmul(&mut d, huge, View::row_major(&a, 2, 2), false).is_err());
    }
}
