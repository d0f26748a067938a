//! The one door to the `gemm` crate's raw matrix product, so its unsafe contract is checked in
//! one place: every view's extent is proven inside its slice before the call.

use crate::error::{Error, Result};

pub use crate::ops::view::View;

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

/// Whether the `gemm` crate runs AVX-512 kernels here, where no BLAS beats it (`EMBGRAFT_GEMM=auto`).
fn wide_kernels() -> bool {
    crate_kernels() == "avx512"
}

/// The BLAS the door uses here, if any (None: the `gemm` crate); an error where
/// `EMBGRAFT_GEMM` / `EMBGRAFT_BLAS` ask for one that cannot be had.
pub fn blas() -> Result<Option<&'static crate::ops::blas::Blas>> {
    crate::ops::blas::chosen(wide_kernels)
}

/// What computes the door's products here: the loaded BLAS by its own name, or the `gemm`
/// crate with its kernels. Benchmarks and reports record it: the same CPU runs either,
/// depending on the build and on `EMBGRAFT_GEMM` / `EMBGRAFT_BLAS` ([`crate::ops::blas`]).
pub fn kernels() -> String {
    match blas() {
        Ok(Some(b)) => b.name.clone(),
        Ok(None) => format!("gemm crate, {} kernels", crate_kernels()),
        Err(e) => format!("none ({e})"),
    }
}

/// `a · bᵀ` (`transpose_b`) or `a · b` for 2-D f32 tensors: through the door where it has a BLAS
/// on the CPU (faster there than the `gemm` crate's AVX2 kernels, and a long inner dimension cut
/// as [`crate::ops::blas`] cuts it), else candle's `matmul` (the `gemm` crate, CUDA), so a
/// build that runs the crate multiplies as it always did. Through the door the result is a new
/// tensor outside candle's autograd graph: for forward passes and hand-written gradients only.
pub fn tensor_product(
    a: &candle_core::Tensor,
    b: &candle_core::Tensor,
    transpose_b: bool,
) -> Result<candle_core::Tensor> {
    use candle_core::{CpuStorage, DType, Device, Storage};
    let through_candle =
        || -> Result<candle_core::Tensor> { Ok(if transpose_b { a.matmul(&b.t()?)? } else { a.matmul(b)? }) };
    let f32_cpu = |t: &candle_core::Tensor| t.device().is_cpu() && t.dtype() == DType::F32 && t.is_contiguous();
    if !(f32_cpu(a) && f32_cpu(b)) || blas()?.is_none() {
        return through_candle();
    }
    let ((m, k), (r, c)) = (a.dims2()?, b.dims2()?);
    let n = if transpose_b { r } else { c };
    let mut out = vec![0f32; m * n];
    {
        let ((sa, la), (sb, lb)) = (a.storage_and_layout(), b.storage_and_layout());
        let (Storage::Cpu(CpuStorage::F32(da)), Storage::Cpu(CpuStorage::F32(db))) = (&*sa, &*sb) else {
            unreachable!("checked f32 on the CPU above")
        };
        let lhs = View::row_major(&da[la.start_offset()..], m, k);
        let rhs = &db[lb.start_offset()..];
        let rhs = if transpose_b { View::transposed(rhs, k, n) } else { View::row_major(rhs, k, n) };
        matmul(&mut out, lhs, rhs, true)?;
    }
    Ok(candle_core::Tensor::from_vec(out, (m, n), &Device::Cpu)?)
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
    if let Some(blas) = blas()? {
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

    /// Where a BLAS loads here (a system OpenBLAS, or EMBGRAFT_BLAS): it computes the products
    /// the door asks for, in every layout, bit for bit the same at 1 and at 2 threads, and
    /// within rounding of the `gemm` crate. CI installs one, so this runs there.
    #[test]
    fn blas_products_do_not_depend_on_the_thread_count() {
        let path = std::env::var("EMBGRAFT_BLAS").unwrap_or_else(|_| "libopenblas.so.0".into());
        let b = match crate::ops::blas::Blas::open(&path) {
            Ok(b) => b,
            Err(e) => {
                assert!(std::env::var_os("EMBGRAFT_REQUIRE_BLAS").is_none(), "EMBGRAFT_REQUIRE_BLAS is set: {e}");
                eprintln!("no BLAS here ({e}): skipped");
                return;
            }
        };
        let values = |n: usize, salt: usize| -> Vec<f32> {
            (0..n).map(|i| (((i + salt) * 2_654_435_761) % 4096) as f32 / 4096.0 - 0.5).collect()
        };
        // Cut by rows, by columns, and too small to cut; the long inner dimension of the head's
        // gradients, where OpenBLAS's own threads differed most.
        // The last but one is cut along its inner dimension (k ≥ 8 · max(m, n)).
        for (m, k, n) in [(1030, 301, 129), (67, 301, 1290), (512, 3000, 700), (60, 5000, 90), (5, 30, 17)] {
            let (a, bb) = (values(m * k, 1), values(k * n, 7));
            for (ta, tb) in [(false, false), (false, true), (true, false)] {
                let av = if ta { View::transposed(&a, m, k) } else { View::row_major(&a, m, k) };
                let bv = if tb { View::transposed(&bb, k, n) } else { View::row_major(&bb, k, n) };
                let mut got = Vec::new();
                for threads in [1, 2] {
                    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                    let mut c = vec![f32::NAN; m * n];
                    pool.install(|| assert!(b.matmul(&mut c, &av, &bv, false, true)));
                    got.push(c);
                }
                assert!(got[0].iter().zip(&got[1]).all(|(x, y)| x.to_bits() == y.to_bits()), "{m}x{k}x{n} {ta} {tb}");
                let mut want = vec![0f32; m * n];
                crate_matmul(&mut want, av, bv, false, false).unwrap();
                let worst = got[0].iter().zip(&want).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
                assert!(worst < 1e-3, "{m}x{k}x{n}: {worst}");
                // Accumulating adds to what dst holds.
                let mut acc = got[0].clone();
                assert!(b.matmul(&mut acc, &av, &bv, true, true));
                assert!(acc.iter().zip(&got[0]).all(|(x, y)| (x - 2.0 * y).abs() < 1e-3));
            }
        }
    }
}
