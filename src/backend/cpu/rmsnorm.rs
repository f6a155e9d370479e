//! RMS normalisation (Llama's pre-attention and pre-FFN norm): `y = x / sqrt(mean(x²) + eps) · w`,
//! and its backward pass for the trainer.

/// Normalises each row of `x` in place.
///
/// `x: [T, C]` row-major, `w: [C]`. The mean of squares is accumulated in f64 so the reference
/// does not depend on summation order.
pub fn rmsnorm(x: &mut [f32], w: &[f32], eps: f32) {
    let c = w.len();
    // x: [T, C]
    for row in x.chunks_exact_mut(c) {
        let ms = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / c as f64;
        let inv = (1.0 / (ms + f64::from(eps)).sqrt()) as f32;
        for (v, &g) in row.iter_mut().zip(w) {
            *v = *v * inv * g;
        }
    }
}

/// `y = rmsnorm(x) · w` into `y`, and each row's `rstd = 1 / sqrt(mean(x²) + eps)` into `rstd`
/// (what [`rmsnorm_backward`] needs). `x, y: [T, C]`, `w: [C]`, `rstd: [T]`.
pub fn rmsnorm_forward(x: &[f32], w: &[f32], eps: f32, y: &mut [f32], rstd: &mut [f32]) {
    let c = w.len();
    assert!(x.len() == y.len() && x.len() == rstd.len() * c, "invariant: rmsnorm shapes agree");
    for ((row, out), r) in x.chunks_exact(c).zip(y.chunks_exact_mut(c)).zip(rstd.iter_mut()) {
        let ms = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / c as f64;
        *r = (1.0 / (ms + f64::from(eps)).sqrt()) as f32;
        for ((o, &v), &g) in out.iter_mut().zip(row).zip(w) {
            *o = v * *r * g;
        }
    }
}

/// Backward of [`rmsnorm_forward`]: adds `∂L/∂x` to `dx` and `∂L/∂w` to `dw`, given `dy = ∂L/∂y`.
///
/// With `n = x · rstd`: `dx = rstd · (w ⊙ dy − n · mean(w ⊙ dy ⊙ n))`, `dw = Σ_rows dy ⊙ n`.
pub fn rmsnorm_backward(x: &[f32], w: &[f32], rstd: &[f32], dy: &[f32], dx: &mut [f32], dw: &mut [f32]) {
    let c = w.len();
    assert!(
        x.len() == dy.len() && x.len() == dx.len() && x.len() == rstd.len() * c && dw.len() == c,
        "invariant: rmsnorm shapes agree"
    );
    for (((row, g), d), &r) in x.chunks_exact(c).zip(dy.chunks_exact(c)).zip(dx.chunks_exact_mut(c)).zip(rstd) {
        let dot: f64 = row.iter().zip(g).zip(w).map(|((&v, &gy), &wi)| f64::from(gy) * f64::from(wi) * f64::from(v)).sum();
        let k = (dot * f64::from(r) * f64::from(r) / c as f64) as f32;
        for i in 0..c {
            d[i] += r * (w[i] * g[i] - row[i] * k);
            dw[i] += g[i] * row[i] * r;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backward_matches_finite_differences() {
        let (t, c, eps) = (3, 5, 1e-5);
        let x: Vec<f32> = (0..t * c).map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0).collect();
        let w: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 * 0.3).collect();
        let g: Vec<f32> = (0..t * c).map(|i| ((i * 5 % 7) as f32 - 3.0) / 2.0).collect();
        // L = Σ g ⊙ y, so ∂L/∂y = g.
        let loss = |x: &[f32], w: &[f32]| -> f64 {
            let (mut y, mut r) = (vec![0.0; t * c], vec![0.0; t]);
            rmsnorm_forward(x, w, eps, &mut y, &mut r);
            y.iter().zip(&g).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum()
        };
        let (mut y, mut r) = (vec![0.0; t * c], vec![0.0; t]);
        rmsnorm_forward(&x, &w, eps, &mut y, &mut r);
        let (mut dx, mut dw) = (vec![0.0; t * c], vec![0.0; c]);
        rmsnorm_backward(&x, &w, &r, &g, &mut dx, &mut dw);
        let h = 1e-2f32;
        for i in 0..t * c {
            let (mut a, mut b) = (x.clone(), x.clone());
            a[i] += h;
            b[i] -= h;
            let num = (loss(&a, &w) - loss(&b, &w)) / (2.0 * f64::from(h));
            assert!((num - f64::from(dx[i])).abs() < 1e-3 * (1.0 + num.abs()), "dx[{i}]: {} vs {num}", dx[i]);
        }
        for i in 0..c {
            let (mut a, mut b) = (w.clone(), w.clone());
            a[i] += h;
            b[i] -= h;
            let num = (loss(&x, &a) - loss(&x, &b)) / (2.0 * f64::from(h));
            assert!((num - f64::from(dw[i])).abs() < 1e-3 * (1.0 + num.abs()), "dw[{i}]: {} vs {num}", dw[i]);
        }
        // The forward twin equals the in-place inference norm.
        let mut z = x.clone();
        rmsnorm(&mut z, &w, eps);
        assert_eq!(z, y);
    }

    #[test]
    fn unit_rms_after_norm() {
        let mut x = vec![3.0, 4.0, 0.0, 0.0, 1.0, -1.0, 1.0, -1.0];
        rmsnorm(&mut x, &[1.0, 1.0, 1.0, 1.0], 0.0);
        // Row 0: rms = sqrt(25 / 4) = 2.5.
        assert_eq!(&x[..4], &[1.2, 1.6, 0.0, 0.0]);
        assert_eq!(&x[4..], &[1.0, -1.0, 1.0, -1.0]);
        let mut y = vec![2.0, 2.0];
        rmsnorm(&mut y, &[0.5, -1.0], 0.0);
        assert_eq!(y, vec![0.5, -1.0]);
    }
}
