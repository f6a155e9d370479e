//! RMS normalisation (Llama's pre-attention and pre-FFN norm): `y = x / sqrt(mean(x²) + eps) · w`.

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

#[cfg(test)]
mod tests {
    use super::*;

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
