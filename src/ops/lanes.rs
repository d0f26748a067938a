//! Elementwise kernels written so they vectorise: exp by range reduction and a polynomial,
//! sums over eight lanes. [`wide!`] compiles each for AVX2 where the CPU has it (chosen at run
//! time, as the `gemm` crate chooses its kernels) and as built elsewhere; the arithmetic is
//! the same either way (no fused multiply-adds), so the results are too.
//! Used by Model 5's decoder (its softmax, GELU and head) and Model 1's cross-entropy.

/// e^x to within a few ulp (Cephes' expf polynomial), for x in [-87.3, 88]; clamped there.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    let x = x.clamp(-87.3, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + MAGIC;
    let n = shifted - MAGIC;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    for c in [1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 0.166_666_65, 0.5] {
        p = p * r + c;
    }
    let y = p * r * r + r + 1.0;
    // The integer n sits in the low bits of `shifted`; 2^n is that plus the bias, in the exponent.
    let n_int = shifted.to_bits().wrapping_sub(MAGIC.to_bits()) as i32;
    let two_n = f32::from_bits(((n_int + 127).max(0) as u32) << 23);
    y * two_n
}

/// (1 − tanh x, 1 + tanh x), each without the cancellation of forming tanh first.
#[inline(always)]
pub fn one_minus_plus_tanh(x: f32) -> (f32, f32) {
    let e = exp(2.0 * x);
    let a = 2.0 / (e + 1.0);
    (a, e * a)
}

#[inline(always)]
pub fn max(z: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; 8];
    let mut it = z.chunks_exact(8);
    for c in &mut it {
        for i in 0..8 {
            m[i] = if c[i] > m[i] { c[i] } else { m[i] };
        }
    }
    it.remainder().iter().chain(&m).fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a })
}

/// Σ e^(z − shift), and z replaced by those terms when `keep`.
#[inline(always)]
pub fn exp_sum(z: &mut [f32], shift: f32, keep: bool) -> f64 {
    let mut s = [0f32; 8];
    let mut it = z.chunks_exact_mut(8);
    for c in &mut it {
        for i in 0..8 {
            let e = exp(c[i] - shift);
            s[i] += e;
            if keep {
                c[i] = e;
            }
        }
    }
    let mut total: f64 = s.iter().map(|&v| v as f64).sum();
    for v in it.into_remainder() {
        let e = exp(*v - shift);
        total += e as f64;
        if keep {
            *v = e;
        }
    }
    total
}

/// Defines `fn $name` whose body is compiled twice: for AVX2 (used where the CPU has it) and
/// as built.
macro_rules! wide {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($a:ident: $t:ty),*) $(-> $r:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($a: $t),*) $(-> $r)? {
            #[inline(always)]
            fn body($($a: $t),*) $(-> $r)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn avx2($($a: $t),*) $(-> $r)? {
                    body($($a),*)
                }
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2, checked on the line above.
                    return unsafe { avx2($($a),*) };
                }
            }
            body($($a),*)
        }
    };
}

pub(crate) use wide;
