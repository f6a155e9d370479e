//! Batched matrix–vector products for decode steps with f32 weights: `y = x · Wᵀ` for a few rows
//! of `x` (one per sequence), walking `W` once and dotting each weight row with every `x` row while
//! it is in cache. Each output is one dot product computed the same way whatever the other rows
//! are, so a sequence's result does not depend on what it is batched with (a `gemm` with a
//! different row count may round differently). The reference is
//! [`super::matmul::matmul_wt_ref`]; a test compares them.

use super::bands::fill_bands;

/// `y[t, n] = Σ_k x[t, k] · w[n, k]`; `x: [T, K]`, `w: [N, K]`, `y: [T, N]` overwritten. Rows of
/// `W` are split into `threads` bands on the current rayon pool ([`super::bands`]; 1: the calling
/// thread only); the result does not depend on `threads`.
pub fn matvec_wt(x: &[f32], w: &[f32], y: &mut [f32], k: usize, threads: usize) {
    let (t, n) = (x.len() / k, w.len() / k);
    assert!(x.len() == t * k && w.len() == n * k && y.len() == t * n, "invariant: matvec shapes agree");
    if t == 0 || n == 0 {
        return;
    }
    fill_bands(y, n, threads, |rows, out| rows_into(x, w, k, rows, out));
}

/// `out: [T, |rows|]`: every `x` row dotted with weight rows `rows` (one band of
/// [`matvec_wt`]; a thread's share of the product in a decode step, [`super::team`]).
pub fn rows_into(x: &[f32], w: &[f32], k: usize, rows: std::ops::Range<usize>, out: &mut [f32]) {
    let width = rows.len();
    #[cfg(target_arch = "x86_64")]
    let simd = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    for (j, n) in rows.enumerate() {
        let wr = &w[n * k..][..k];
        for (t, xr) in x.chunks_exact(k).enumerate() {
            #[cfg(target_arch = "x86_64")]
            if simd {
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                out[t * width + j] = unsafe { dot_avx2(wr, xr) };
                continue;
            }
            out[t * width + j] = dot_portable(wr, xr);
        }
    }
}

/// `Σ a[i] · b[i]` in f32 (8 lanes, AVX2 where the CPU has it).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { dot_avx2(a, b) };
    }
    dot_portable(a, b)
}

fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let mut chunks = a.chunks_exact(8).zip(b.chunks_exact(8));
    for (ca, cb) in &mut chunks {
        for i in 0..8 {
            lanes[i] = ca[i].mul_add(cb[i], lanes[i]);
        }
    }
    let tail = a.len() / 8 * 8;
    lanes.iter().sum::<f32>() + a[tail..].iter().zip(&b[tail..]).map(|(x, y)| x * y).sum::<f32>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len() / 32 * 32;
    let (mut s0, mut s1, mut s2, mut s3) = (_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut i = 0;
    while i < n {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 16)), _mm256_loadu_ps(pb.add(i + 16)), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 24)), _mm256_loadu_ps(pb.add(i + 24)), s3);
        i += 32;
    }
    let s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    let h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    let h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    _mm_cvtss_f32(h) + a[n..].iter().zip(&b[n..]).map(|(x, y)| x * y).sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::matmul::matmul_wt_ref;

    #[test]
    fn agrees_with_reference_and_does_not_depend_on_the_batch() {
        for &(t, n, k, threads) in &[(1, 1, 1, 1), (1, 7, 33, 1), (5, 64, 576, 2), (16, 13, 100, 3), (1, 13, 100, 2)] {
            let x: Vec<f32> = (0..t * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
            let w: Vec<f32> = (0..n * k).map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0).collect();
            let (mut fast, mut slow) = (vec![f32::NAN; t * n], vec![0.0; t * n]);
            matvec_wt(&x, &w, &mut fast, k, threads);
            matmul_wt_ref(&x, &w, &mut slow, k);
            for (i, (a, b)) in fast.iter().zip(&slow).enumerate() {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "({t},{n},{k}) at {i}: {a} vs reference {b}");
            }
            // The last row alone, on one thread, gives bit-identical outputs.
            let mut alone = vec![0.0; n];
            matvec_wt(&x[(t - 1) * k..], &w, &mut alone, k, 1);
            assert_eq!(alone, fast[(t - 1) * n..]);
            let mut one = vec![f32::NAN; t * n];
            matvec_wt(&x, &w, &mut one, k, 1);
            assert_eq!(one, fast, "({t},{n},{k}): {threads} threads vs 1");
            let p: Vec<f32> = w.chunks_exact(k).map(|wr| dot_portable(wr, &x[..k])).collect();
            for (a, b) in p.iter().zip(&slow) {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()));
            }
        }
    }
}
