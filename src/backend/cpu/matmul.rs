//! Matrix products with a weight stored as GGML/PyTorch store linear layers: one row per output
//! feature. Forward `y = x · Wᵀ` ([`matmul_wt`]); the two products of its backward pass,
//! `dx = dy · W` ([`matmul_nn`]) and `dW += dyᵀ · x` ([`matmul_tn_acc`]). The fast paths hand the
//! product to the `gemm` crate; each reference is the plain triple loop, and tests compare them.

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
            parallelism(threads),
        );
    }
}

/// `dx[t, k] (+)= Σ_n dy[t, n] · w[n, k]`: the input gradient of `y = x · Wᵀ`.
///
/// `dy: [T, N]`, `w: [N, K]`, `dx: [T, K]`; `accumulate` adds to `dx` instead of overwriting it.
pub fn matmul_nn(dy: &[f32], w: &[f32], dx: &mut [f32], n: usize, accumulate: bool, threads: usize) {
    let t = dy.len() / n;
    let k = w.len() / n;
    assert!(dy.len() == t * n && w.len() == n * k && dx.len() == t * k, "invariant: matmul shapes agree");
    if t == 0 || k == 0 {
        return;
    }
    // SAFETY: the asserted lengths bound every index: dst [t, k] strides (k, 1), lhs dy [t, n]
    // strides (n, 1), rhs w [n, k] strides (k, 1).
    unsafe {
        gemm::gemm(
            t,
            k,
            n,
            dx.as_mut_ptr(),
            1,
            k as isize,
            accumulate,
            dy.as_ptr(),
            1,
            n as isize,
            w.as_ptr(),
            1,
            k as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism(threads),
        );
    }
}

/// `dw[n, k] += Σ_t dy[t, n] · x[t, k]`: the weight gradient of `y = x · Wᵀ`, accumulated.
///
/// `dy: [T, N]`, `x: [T, K]`, `dw: [N, K]`.
pub fn matmul_tn_acc(dy: &[f32], x: &[f32], dw: &mut [f32], k: usize, threads: usize) {
    let t = x.len() / k;
    let n = dw.len() / k;
    assert!(x.len() == t * k && dy.len() == t * n && dw.len() == n * k, "invariant: matmul shapes agree");
    if t == 0 || n == 0 {
        return;
    }
    // SAFETY: the asserted lengths bound every index: dst dw [n, k] strides (k, 1); lhs dyᵀ
    // [n, t] read from dy [t, n] (row stride 1, column stride n); rhs x [t, k] strides (k, 1).
    unsafe {
        gemm::gemm(
            n,
            k,
            t,
            dw.as_mut_ptr(),
            1,
            k as isize,
            true,
            dy.as_ptr(),
            n as isize,
            1,
            x.as_ptr(),
            1,
            k as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism(threads),
        );
    }
}

fn parallelism(threads: usize) -> gemm::Parallelism {
    if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
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

/// The reference for [`matmul_nn`] (overwriting), f64 accumulation.
pub fn matmul_nn_ref(dy: &[f32], w: &[f32], dx: &mut [f32], n: usize) {
    let k = w.len() / n;
    for (dyr, dxr) in dy.chunks_exact(n).zip(dx.chunks_exact_mut(k)) {
        for (j, out) in dxr.iter_mut().enumerate() {
            *out = (0..n).map(|i| f64::from(dyr[i]) * f64::from(w[i * k + j])).sum::<f64>() as f32;
        }
    }
}

/// The reference for [`matmul_tn_acc`], f64 accumulation.
pub fn matmul_tn_acc_ref(dy: &[f32], x: &[f32], dw: &mut [f32], k: usize) {
    let t = x.len() / k;
    let n = dw.len() / k;
    for (i, dwr) in dw.chunks_exact_mut(k).enumerate() {
        for (j, out) in dwr.iter_mut().enumerate() {
            let s: f64 = (0..t).map(|r| f64::from(dy[r * n + i]) * f64::from(x[r * k + j])).sum();
            *out += s as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(fast: &[f32], slow: &[f32], what: &str) {
        for (i, (a, b)) in fast.iter().zip(slow).enumerate() {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{what} at {i}: gemm {a} vs reference {b}");
        }
    }

    #[test]
    fn backward_products_agree_with_reference() {
        for &(t, n, k) in &[(1, 1, 1), (3, 7, 33), (17, 64, 40), (37, 13, 100)] {
            let dy: Vec<f32> = (0..t * n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
            let w: Vec<f32> = (0..n * k).map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0).collect();
            let x: Vec<f32> = (0..t * k).map(|i| ((i * 41 % 89) as f32 - 44.0) / 44.0).collect();
            for threads in [1, 2] {
                let (mut fast, mut slow) = (vec![f32::NAN; t * k], vec![0.0; t * k]);
                matmul_nn(&dy, &w, &mut fast, n, false, threads);
                matmul_nn_ref(&dy, &w, &mut slow, n);
                close(&fast, &slow, "matmul_nn");
                // Accumulating adds the same product again.
                matmul_nn(&dy, &w, &mut fast, n, true, threads);
                close(&fast, &slow.iter().map(|v| 2.0 * v).collect::<Vec<_>>(), "matmul_nn accumulate");
                let start: Vec<f32> = (0..n * k).map(|i| i as f32 * 0.01).collect();
                let (mut fast, mut slow) = (start.clone(), start);
                matmul_tn_acc(&dy, &x, &mut fast, k, threads);
                matmul_tn_acc_ref(&dy, &x, &mut slow, k);
                close(&fast, &slow, "matmul_tn_acc");
            }
        }
    }

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
