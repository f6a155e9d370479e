//! Matrix product with a weight stored as GGML/PyTorch store linear layers: one row per output
//! feature. `y = x · Wᵀ`. The fast path hands the product to the `gemm` crate; the reference is
//! the plain triple loop, and a test compares them.

/// `y[t, n] = Σ_k x[t, k] · w[n, k]`, through `gemm`.
///
/// `x: [T, K]`, `w: [N, K]`, `y: [T, N]`, all row-major and contiguous; `y` is overwritten.
pub fn matmul_wt(x: &[f32], w: &[f32], y: &mut [f32], k: usize) {
    matmul_wt_threads(x, w, y, k, 1);
}

/// [`matmul_wt`] on `threads` threads (gemm's rayon pool; 1: the calling thread only).
pub fn matmul_wt_threads(x: &[f32], w: &[f32], y: &mut [f32], k: usize, threads: usize) {
    let t = x.len() / k;
    let n = w.len() / k;
    assert!(x.len() == t * k && w.len() == n * k && y.len() == t * n, "invariant: matmul shapes agree");
    if t == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserted lengths make every index gemm forms (row·rs + col·cs) fall inside the
    // slices: dst [t, n] with strides (n, 1), lhs [t, k] with (k, 1), rhs = wᵀ [k, n] read from
    // w [n, k] with strides (1, k).
    unsafe {
        gemm::gemm(
            t,
            n,
            k,
            y.as_mut_ptr(),
            1,
            n as isize,
            false,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None },
        );
    }
}

/// The reference for [`matmul_wt`]: the same product as a plain loop with f64 accumulation.
pub fn matmul_wt_ref(x: &[f32], w: &[f32], y: &mut [f32], k: usize) {
    let n = w.len() / k;
    // x: [T, K], w: [N, K], y: [T, N]
    for (xr, yr) in x.chunks_exact(k).zip(y.chunks_exact_mut(n)) {
        for (wr, out) in w.chunks_exact(k).zip(yr.iter_mut()) {
            *out = xr.iter().zip(wr).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum::<f64>() as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_agrees_with_reference() {
        for &(t, n, k) in &[(1, 1, 1), (1, 7, 33), (5, 64, 576), (37, 13, 100)] {
            let x: Vec<f32> = (0..t * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
            let w: Vec<f32> = (0..n * k).map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0).collect();
            let (mut fast, mut slow) = (vec![f32::NAN; t * n], vec![0.0; t * n]);
            matmul_wt(&x, &w, &mut fast, k);
            matmul_wt_ref(&x, &w, &mut slow, k);
            for (i, (a, b)) in fast.iter().zip(&slow).enumerate() {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "({t},{n},{k}) at {i}: gemm {a} vs reference {b}");
            }
        }
    }
}
