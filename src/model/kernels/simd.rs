//! What the row kernels share: [`multiversion!`], which compiles a kernel for the
//! widest vector instructions the CPU has, and the scalar functions and reductions
//! they are written with (`exp`, row maxima and sums in fixed-width lanes).
//!
//! Why: flex evaluates `exp` one element at a time through libm, which does not
//! vectorise. `exp` here is Cephes' `expf` polynomial (about 1 ulp), branch-free so
//! the compiler vectorises it, flushed to 0 below −87 (masked scores are −∞). Row
//! reductions sum in `LANES` partial sums added in a fixed order, so results do not
//! depend on the thread count or the instruction set.
/// Declares `fn $name(args)` compiled three times (AVX-512, AVX2+FMA, baseline) and
/// picks the widest the CPU supports, so the loops in `$body` vectorise without
/// `target-cpu`.
macro_rules! multiversion {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$meta])*
        #[allow(clippy::too_many_arguments, reason = "the kernel's own arguments, passed through")]
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments, reason = "the kernel's own arguments, passed through")]
            fn imp($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments, reason = "the kernel's own arguments, passed through")]
                unsafe fn v4($($arg: $ty),*) {
                    imp($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments, reason = "the kernel's own arguments, passed through")]
                unsafe fn v3($($arg: $ty),*) {
                    imp($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the features were detected on this CPU.
                    return unsafe { v4($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the features were detected on this CPU.
                    return unsafe { v3($($arg),*) };
                }
            }
            imp($($arg),*)
        }
    };
}
pub(super) use multiversion;

/// Width of the partial sums in row reductions: lanes the compiler keeps in vector
/// registers, added in a fixed order.
pub(super) const LANES: usize = 16;

/// The lanes' partial sums added in order.
#[inline(always)]
pub(super) fn lane_sum(acc: [f32; LANES]) -> f32 {
    acc.iter().sum()
}

/// The largest element of a row (−∞ for an empty row).
#[inline(always)]
pub(super) fn row_max(x: &[f32]) -> f32 {
    let mut max = [f32::NEG_INFINITY; LANES];
    let mut c = x.chunks_exact(LANES);
    for c in &mut c {
        for (m, &v) in max.iter_mut().zip(c) {
            *m = m.max(v);
        }
    }
    let m = max.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    c.remainder().iter().fold(m, |m, &v| m.max(v))
}

/// Σ f(x_i, y_i) over a row, in `LANES` partial sums.
#[inline(always)]
pub(super) fn row_sum2(x: &[f32], y: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let (xc, yc) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (xc, yc) in xc.zip(yc) {
        for ((a, &x), &y) in acc.iter_mut().zip(xc).zip(yc) {
            *a += f(x, y);
        }
    }
    xr.iter()
        .zip(yr)
        .fold(lane_sum(acc), |a, (&x, &y)| a + f(x, y))
}

/// `e^x` for x ≤ 88 (Cephes `expf`); 0 below −87, including −∞.
#[inline(always)]
pub(super) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2²³: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let xc = x.clamp(-87.0, 88.0);
    let shifted = xc * LOG2E + ROUND;
    let k = shifted - ROUND;
    // The integer k read from the mantissa bits of `shifted` (a float-to-int `as`
    // cast would saturate, which does not vectorise).
    let ki = (shifted.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let r = xc - k * LN2_HI - k * LN2_LO;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 1.666_666_5e-1)
        * r
        + 5e-1)
        * (r * r)
        + r
        + 1.0;
    let scale = f32::from_bits(((ki + 127) << 23) as u32);
    if x < -87.0 {
        0.0
    } else {
        p * scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate() {
        for i in -1740..=1760 {
            let x = i as f32 * 0.05;
            let want = (x as f64).exp();
            assert!(((exp(x) as f64 - want) / want).abs() < 3e-7, "exp({x})");
        }
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
    }
}
