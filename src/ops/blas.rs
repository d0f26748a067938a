//! A BLAS loaded at run time for the matrix products where it beats the `gemm` crate: on CPUs
//! without AVX-512 the crate's AVX2 kernels reach about 70 % of OpenBLAS's at the models'
//! shapes (docs/speed.md, "The matrix products"), on AVX-512 they match or beat it. Nothing is linked:
//! a build, the wheel and the tests need no BLAS, and where none loads the `gemm` crate runs.
//!
//! Which library: `EMBGRAFT_BLAS` (a path), else a system OpenBLAS (`libopenblas.so.0`). The
//! Python package points `EMBGRAFT_BLAS` at numpy's own OpenBLAS, which every numpy wheel
//! ships. Its `cblas_sgemm` is found under the names OpenBLAS builds use: plain (32-bit
//! integers), `…64_` (64-bit integers, Debian's libopenblas64) and `scipy_…` (numpy's copy).
//!
//! When it is used: `EMBGRAFT_GEMM=auto` (the default) where the `gemm` crate has no AVX-512
//! kernels to run and the library runs AVX2-wide kernels on this CPU; `blas` always (an error
//! where none loads); `gemm` never.
//!
//! Sums that do not depend on the thread count: OpenBLAS's own threads do not keep them (numpy's
//! 0.3.31 gave 1 and 2 threads different bits in up to 45 % of a product's elements, Debian's
//! 0.3.21 too), so the library never threads here. Each call runs on one thread
//! (`openblas_set_num_threads_local` where the library has it, OpenBLAS 0.3.27 on; otherwise its
//! one global setting), and a parallel product is cut into blocks whose size depends on the shape
//! alone, one rayon task each: every output element is the same one-thread sum at any thread
//! count (`ops::gemm`'s `blas_products_do_not_depend_on_the_thread_count`, and the end-to-end
//! thread-count test under `EMBGRAFT_GEMM=blas` in CI).

use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::ops::view::View;

type Sgemm32 =
    unsafe extern "C" fn(i32, i32, i32, i32, i32, i32, f32, *const f32, i32, *const f32, i32, f32, *mut f32, i32);
type Sgemm64 =
    unsafe extern "C" fn(i32, i32, i32, i64, i64, i64, f32, *const f32, i64, *const f32, i64, f32, *mut f32, i64);
type SetThreads = unsafe extern "C" fn(i32);
type SetThreadsLocal = unsafe extern "C" fn(i32) -> i32;
type GetString = unsafe extern "C" fn() -> *const std::ffi::c_char;

const ROW_MAJOR: i32 = 101;
const NO_TRANS: i32 = 111;
const TRANS: i32 = 112;

enum Sgemm {
    Lp64(Sgemm32),
    Ilp64(Sgemm64),
}

/// A loaded BLAS: its `cblas_sgemm`, how to set its thread count, and what it says it is.
pub struct Blas {
    sgemm: Sgemm,
    set_threads_local: Option<SetThreadsLocal>,
    /// What the library says it is (`OpenBLAS 0.3.31 … Haswell`), for benchmarks and reports.
    pub name: String,
    /// The kernels it picked for this CPU, lower case (`haswell`), where it says.
    pub core: String,
    // Kept loaded for the life of the process: the functions above point into it.
    _lib: libloading::Library,
}

/// Where the gemm-crate-or-BLAS choice comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    Auto,
    Blas,
    Gemm,
}

impl Choice {
    fn from_env() -> Result<Choice> {
        match std::env::var("EMBGRAFT_GEMM").ok().as_deref().map(str::trim) {
            None | Some("") | Some("auto") => Ok(Choice::Auto),
            Some("blas") => Ok(Choice::Blas),
            Some("gemm") => Ok(Choice::Gemm),
            Some(other) => Err(Error::Input(format!(
                "EMBGRAFT_GEMM={other} is not auto, blas or gemm; unset it for the fastest choice on this CPU"
            ))),
        }
    }
}

/// The names `cblas_sgemm` goes by in the OpenBLAS builds users have, with their integer width.
const SGEMM_NAMES: &[(&str, bool)] =
    &[("cblas_sgemm", false), ("cblas_sgemm64_", true), ("scipy_cblas_sgemm64_", true), ("scipy_cblas_sgemm", false)];

impl Blas {
    /// Opens the library at `path` (a file path, or a name the dynamic loader searches for).
    pub fn open(path: &str) -> std::result::Result<Blas, String> {
        // SAFETY: loading a shared library runs its initialisers; OpenBLAS's only start its
        // thread pool. The symbols are looked up by their documented C names and called with the
        // CBLAS signatures declared above.
        // A path (not a bare name for the loader to search) must be a regular file: the loader
        // would block forever opening a FIFO, holding its lock so that not even exit could run.
        if path.contains('/') {
            match std::fs::metadata(path) {
                Ok(m) if m.is_file() => {}
                Ok(_) => return Err(format!("{path} is not a regular file (a FIFO, device or folder)")),
                Err(e) => return Err(format!("{path}: {e}")),
            }
        }
        unsafe {
            let lib = libloading::Library::new(path).map_err(|e| format!("{path}: {e}"))?;
            let mut sgemm = None;
            for &(name, wide) in SGEMM_NAMES {
                if wide {
                    if let Ok(f) = lib.get::<Sgemm64>(name.as_bytes()) {
                        sgemm = Some(Sgemm::Ilp64(*f));
                        break;
                    }
                } else if let Ok(f) = lib.get::<Sgemm32>(name.as_bytes()) {
                    sgemm = Some(Sgemm::Lp64(*f));
                    break;
                }
            }
            let sgemm = sgemm.ok_or_else(|| format!("{path} has no cblas_sgemm"))?;
            let set_threads_local = lib.get::<SetThreadsLocal>(b"openblas_set_num_threads_local").ok().map(|f| *f);
            // The library never threads (see `matmul`): per call where it can say so for one
            // thread, else for the whole process.
            if set_threads_local.is_none() {
                for name in
                    ["openblas_set_num_threads", "openblas_set_num_threads64_", "scipy_openblas_set_num_threads64_"]
                {
                    if let Ok(f) = lib.get::<SetThreads>(name.as_bytes()) {
                        f(1);
                        break;
                    }
                }
            }
            let mut name = String::from("BLAS");
            for (config, core) in [
                ("openblas_get_config", "openblas_get_corename"),
                ("openblas_get_config64_", "openblas_get_corename64_"),
                ("scipy_openblas_get_config64_", "scipy_openblas_get_corename64_"),
            ] {
                let text = |sym: &str| {
                    lib.get::<GetString>(sym.as_bytes()).ok().and_then(|f| {
                        let p = f();
                        (!p.is_null()).then(|| std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned())
                    })
                };
                if let Some(c) = text(config) {
                    name = format!("{} ({})", c.trim(), text(core).unwrap_or_default().trim());
                    break;
                }
            }
            let core = core_of(&name);
            Ok(Blas { sgemm, set_threads_local, name, core, _lib: lib })
        }
    }

    /// `dst = lhs · rhs` (or `+=` when `accumulate`), or false (nothing done) where a view is
    /// not one CBLAS can read (neither stride 1) or a size does not fit the library's integers.
    /// The library never threads: `parallel` cuts the product along its longer output side
    /// into blocks whose size depends only on the shape, one rayon task each, so every output
    /// element is the same one-thread sum at any thread count. `check`ed views and `dst`'s size
    /// are the caller's promise, as for the `gemm` crate.
    pub fn matmul(&self, dst: &mut [f32], lhs: &View, rhs: &View, accumulate: bool, parallel: bool) -> bool {
        use rayon::prelude::*;
        let (m, n) = (lhs.rows, rhs.cols);
        let (Some(a), Some(b)) = (layout(lhs), layout(rhs)) else { return false };
        let ints_fit = [m, n, lhs.cols, a.1, b.1].into_iter().all(|x| i32::try_from(x).is_ok());
        if matches!(self.sgemm, Sgemm::Lp64(_)) && !ints_fit {
            return false;
        }
        // Blocks keep their view's strides, so every call below reads with these layouts.
        if !parallel {
            // SAFETY: dst holds m x n values at leading dimension n; the views were checked.
            unsafe { self.call(dst.as_mut_ptr(), n, (lhs, a), (rhs, b), accumulate) };
            return true;
        }
        if let Some(kc) = inner_block(m, lhs.cols, n) {
            self.matmul_by_inner_blocks(dst, (lhs, a), (rhs, b), kc, accumulate);
        } else if m >= n {
            // Blocks of rows: each a contiguous slice of dst and the same rows of lhs.
            let rows = block(m);
            dst.par_chunks_mut(rows * n).enumerate().for_each(|(i, d)| {
                let sub = View { data: &lhs.data[i * rows * lhs.row_stride..], rows: d.len() / n, ..*lhs };
                // SAFETY: d holds sub.rows x n values at leading dimension n; sub is rows of lhs.
                unsafe { self.call(d.as_mut_ptr(), n, (&sub, a), (rhs, b), accumulate) };
            });
        } else {
            // Blocks of columns: disjoint strided parts of dst, written through its pointer.
            let cols = block(n);
            let out = SendPtr(dst.as_mut_ptr());
            (0..n.div_ceil(cols)).into_par_iter().for_each(|i| {
                let (c0, w) = (i * cols, cols.min(n - i * cols));
                let sub = View { data: &rhs.data[c0 * rhs.col_stride..], cols: w, ..*rhs };
                let at = out;
                // SAFETY: columns c0..c0 + w of every row of dst, at leading dimension n: inside
                // dst, and no other task writes them; sub is columns of rhs.
                unsafe { self.call(at.0.add(c0), n, (lhs, a), (&sub, b), accumulate) };
            });
        }
        true
    }

    /// dst (+)= lhs · rhs as a sum of products over blocks of `kc` of the inner dimension, one
    /// task each into its own buffer, then added in block order: every element is the same sum
    /// at any thread count. For the long inner dimension of the head's input gradient (g · W,
    /// k = V), where cutting the output instead makes every block re-read and re-pack the whole
    /// of the other operand (measured on AVX2: 157 GFLOP/s in 12 column blocks of 512 x 50257 x
    /// 768 against 186 in 7 inner blocks, numpy's OpenBLAS 0.3.31, one thread per call).
    fn matmul_by_inner_blocks(
        &self,
        dst: &mut [f32],
        (lhs, a): (&View, (i32, usize)),
        (rhs, b): (&View, (i32, usize)),
        kc: usize,
        accumulate: bool,
    ) {
        use rayon::prelude::*;
        let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
        let mut parts = vec![0f32; k.div_ceil(kc) * m * n];
        parts.par_chunks_mut(m * n).enumerate().for_each(|(i, p)| {
            let (k0, w) = (i * kc, kc.min(k - i * kc));
            let l = View { data: &lhs.data[k0 * lhs.col_stride..], cols: w, ..*lhs };
            let r = View { data: &rhs.data[k0 * rhs.row_stride..], rows: w, ..*rhs };
            // SAFETY: p holds m x n values at leading dimension n; l and r are the inner block
            // k0..k0 + w of views that were checked, so they lie inside their slices.
            unsafe { self.call(p.as_mut_ptr(), n, (&l, a), (&r, b), false) };
        });
        let rows = block(m);
        dst.par_chunks_mut(rows * n).enumerate().for_each(|(i, d)| {
            let (at, len) = (i * rows * n, d.len());
            if !accumulate {
                d.fill(0.0);
            }
            for part in parts.chunks_exact(m * n) {
                for (x, &y) in d.iter_mut().zip(&part[at..at + len]) {
                    *x += y;
                }
            }
        });
    }

    /// One CBLAS call on the calling thread, with the library held to one thread; each view
    /// with its [`layout`].
    ///
    /// # Safety
    /// `dst` must point to lhs.rows rows of rhs.cols writable values at leading dimension
    /// `ldc`, not written by anyone else during the call; both views must lie inside their
    /// slices, and each layout must be what `layout` gives for its view.
    unsafe fn call(
        &self,
        dst: *mut f32,
        ldc: usize,
        (lhs, (ta, lda)): (&View, (i32, usize)),
        (rhs, (tb, ldb)): (&View, (i32, usize)),
        accumulate: bool,
    ) {
        let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
        let beta = if accumulate { 1.0 } else { 0.0 };
        let previous = self.set_threads_local.map(|local| local(1));
        // The one CBLAS call, with the library's integer width.
        macro_rules! sgemm {
            ($f:expr, $int:ty) => {
                $f(
                    ROW_MAJOR,
                    ta,
                    tb,
                    m as $int,
                    n as $int,
                    k as $int,
                    1.0,
                    lhs.data.as_ptr(),
                    lda as $int,
                    rhs.data.as_ptr(),
                    ldb as $int,
                    beta,
                    dst,
                    ldc as $int,
                )
            };
        }
        match self.sgemm {
            Sgemm::Lp64(f) => sgemm!(f, i32),
            Sgemm::Ilp64(f) => sgemm!(f, i64),
        }
        if let (Some(p), Some(local)) = (previous, self.set_threads_local) {
            local(p);
        }
    }
}

/// dst's pointer, handed to the tasks that write disjoint columns of it.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: each task writes only its own columns (see `Blas::matmul`).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// The block a parallel product is cut into along an output side of `len`: `len` split into 16,
/// 8, 4 or 2 equal blocks (a power of two, so 1, 2, 4 or 8 cores share them evenly), the most
/// that leaves each at least 192 long, a multiple of 16 (whole micro-tiles of OpenBLAS's
/// kernels). Each block re-packs the whole other operand, so narrower blocks cost more than
/// they balance: on AVX2 (2 cores, numpy's OpenBLAS, one thread per call) 512 x 50257 x 768 cut
/// into 64-wide blocks ran at 157 GFLOP/s, into 192-wide ones at 187. It depends on the shape
/// alone, never the thread count.
fn block(len: usize) -> usize {
    let parts = [16, 8, 4, 2].into_iter().find(|&p| len / p >= 192).unwrap_or(1);
    len.div_ceil(parts).next_multiple_of(16)
}

/// The inner block for products whose inner dimension k is long against both output sides
/// (k ≥ 8 · max(m, n): the head's input gradient g · W, k = V), about a 16th of k and at least
/// 1024, a multiple of 16; None for every other product, or where the blocks' buffers would
/// pass 16 M floats. Like [`block`], it depends on the shape alone.
fn inner_block(m: usize, k: usize, n: usize) -> Option<usize> {
    let kc = k.div_ceil(16).max(1024).next_multiple_of(16);
    let floats = k.div_ceil(kc).checked_mul(m)?.checked_mul(n)?;
    (k >= 8 * m.max(n) && k > kc && floats <= 1 << 24).then_some(kc)
}

/// The core name at the end of the library's own description, `… (Haswell)`, lower case.
fn core_of(name: &str) -> String {
    name.rsplit_once('(').map_or("", |(_, c)| c.trim_end_matches(')')).trim().to_lowercase()
}

/// OpenBLAS's kernels of AVX2 width or more, the ones that beat the `gemm` crate's AVX2 kernels.
/// An OpenBLAS older than the CPU falls back to older ones (Debian 12's 0.3.21 runs Prescott's
/// SSE3 kernels on a current Xeon): `auto` leaves such a library alone.
const WIDE_CORES: &[&str] = &["haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"];

/// How CBLAS reads a view in row-major order: as stored (NoTrans, leading dimension its row
/// stride) or as the transpose of what is stored (Trans, leading dimension its column stride).
fn layout(v: &View) -> Option<(i32, usize)> {
    if v.col_stride == 1 && v.row_stride >= v.cols.max(1) {
        Some((NO_TRANS, v.row_stride))
    } else if v.row_stride == 1 && v.col_stride >= v.rows.max(1) {
        Some((TRANS, v.col_stride))
    } else {
        None
    }
}

/// The BLAS the door uses, chosen once per process (None: the `gemm` crate), or why the
/// setting cannot be met.
static CHOSEN: OnceLock<std::result::Result<Option<Blas>, String>> = OnceLock::new();

fn choose(wide_kernels: bool) -> std::result::Result<Option<Blas>, String> {
    let choice = Choice::from_env().map_err(|e| e.to_string())?;
    let wanted = match choice {
        Choice::Gemm => return Ok(None),
        Choice::Auto => !wide_kernels,
        Choice::Blas => true,
    };
    if !wanted {
        return Ok(None);
    }
    let given = std::env::var("EMBGRAFT_BLAS").ok().filter(|p| !p.trim().is_empty());
    let tried: Vec<String> = match &given {
        Some(p) => vec![p.clone()],
        None => vec!["libopenblas.so.0".into(), "libopenblas.so".into()],
    };
    let mut why = Vec::new();
    for path in &tried {
        match Blas::open(path) {
            Ok(b) if choice == Choice::Blas || WIDE_CORES.contains(&b.core.as_str()) => return Ok(Some(b)),
            Ok(b) => why.push(format!("{path} runs {} kernels, slower than the gemm crate's AVX2", b.core)),
            Err(e) => why.push(e),
        }
    }
    match choice {
        // Auto falls back quietly where no fast BLAS is installed, or the one named (by the
        // Python package: numpy's) runs narrow kernels; one named that cannot be opened is
        // worth a line, since somebody asked for it.
        Choice::Auto if given.is_none() || why.iter().all(|w| w.contains(" kernels, slower")) => Ok(None),
        _ => Err(format!(
            "no BLAS could be loaded ({}); install OpenBLAS (Debian: apt-get install libopenblas0), point \
             EMBGRAFT_BLAS at a libopenblas.so, or set EMBGRAFT_GEMM=gemm",
            why.join("; ")
        )),
    }
}

/// The BLAS in use, if any; an error when `EMBGRAFT_GEMM` or `EMBGRAFT_BLAS` asks for one that
/// cannot be had (the same error at every call, so the first product stops the run).
/// `wide_kernels` says whether the `gemm` crate runs AVX-512 kernels here, so that `auto` wants
/// no BLAS; it is asked once, by the first call, which decides for the process.
pub fn chosen(wide_kernels: impl FnOnce() -> bool) -> Result<Option<&'static Blas>> {
    match CHOSEN.get_or_init(|| choose(wide_kernels())) {
        Ok(b) => Ok(b.as_ref()),
        Err(e) => Err(Error::Input(e.clone())),
    }
}

// SAFETY: the handle and the function pointers are plain code addresses into a library that
// stays loaded for the process's life, valid on every thread; OpenBLAS's functions may be called
// from several threads at once (its pthreads builds lock what they share).
unsafe impl Send for Blas {}
unsafe impl Sync for Blas {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_core_is_read_from_the_library_description() {
        assert_eq!(
            core_of("OpenBLAS 0.3.31.188.0  USE64BITINT DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64 (Haswell)"),
            "haswell"
        );
        assert_eq!(core_of("OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH (Prescott)"), "prescott");
        assert_eq!(core_of("BLAS"), "");
        assert!(WIDE_CORES.contains(&"haswell") && !WIDE_CORES.contains(&"prescott"));
    }

    #[test]
    fn views_map_to_cblas_layouts() {
        let a = vec![0f32; 12];
        assert_eq!(layout(&View::row_major(&a, 3, 4)), Some((NO_TRANS, 4)));
        assert_eq!(layout(&View::transposed(&a, 3, 4)), Some((TRANS, 3)));
        assert_eq!(layout(&View { data: &a, rows: 2, cols: 2, row_stride: 2, col_stride: 2 }), None);
    }
}
