//! AdamW with decoupled weight decay, as `torch.optim.AdamW` computes it, and the squared norm
//! that global-norm gradient clipping needs. The fast path splits the tensor across the current
//! rayon pool; [`adamw_ref`] is the same update element by element in f64, and a test compares.

use rayon::prelude::*;

/// AdamW's hyper-parameters for one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamW {
    /// Learning rate of this step (after warm-up and schedule).
    pub lr: f32,
    /// First-moment decay (0.9).
    pub beta1: f32,
    /// Second-moment decay (0.95 in LAB).
    pub beta2: f32,
    /// Added to the root of the second moment (1e-8).
    pub eps: f32,
    /// Decoupled weight decay (0 in LAB).
    pub weight_decay: f32,
}

/// Elements per parallel task.
const SPLIT: usize = 1 << 14;

/// One AdamW step (`step` counts from 1) on `p` with gradient `grad_scale · g`, updating the
/// moments `m` and `v`:
///
/// `p ← p·(1 − lr·wd)`, `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
/// `p ← p − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)`.
pub fn adamw(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], h: AdamW, step: u64, grad_scale: f32) {
    let n = p.len();
    assert!(g.len() == n && m.len() == n && v.len() == n && step > 0, "invariant: optimizer state matches the parameter");
    let (bc1, bc2) = bias_corrections(h, step);
    let step_size = (f64::from(h.lr) / bc1) as f32;
    let bc2_sqrt = bc2.sqrt() as f32;
    let decay = 1.0 - h.lr * h.weight_decay;
    p.par_chunks_mut(SPLIT).zip(g.par_chunks(SPLIT)).zip(m.par_chunks_mut(SPLIT).zip(v.par_chunks_mut(SPLIT))).for_each(|((p, g), (m, v))| {
        for i in 0..p.len() {
            let gi = g[i] * grad_scale;
            m[i] += (gi - m[i]) * (1.0 - h.beta1);
            v[i] = v[i] * h.beta2 + gi * gi * (1.0 - h.beta2);
            p[i] = p[i] * decay - step_size * m[i] / (v[i].sqrt() / bc2_sqrt + h.eps);
        }
    });
}

fn bias_corrections(h: AdamW, step: u64) -> (f64, f64) {
    let t = step.min(i32::MAX as u64) as i32;
    (1.0 - f64::from(h.beta1).powi(t), 1.0 - f64::from(h.beta2).powi(t))
}

/// The reference for [`adamw`]: the same update, each element in f64.
pub fn adamw_ref(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], h: AdamW, step: u64, grad_scale: f32) {
    let (bc1, bc2) = bias_corrections(h, step);
    let (lr, b1, b2) = (f64::from(h.lr), f64::from(h.beta1), f64::from(h.beta2));
    for i in 0..p.len() {
        let gi = f64::from(g[i]) * f64::from(grad_scale);
        let mi = b1 * f64::from(m[i]) + (1.0 - b1) * gi;
        let vi = b2 * f64::from(v[i]) + (1.0 - b2) * gi * gi;
        let pi = f64::from(p[i]) * (1.0 - lr * f64::from(h.weight_decay));
        p[i] = (pi - lr / bc1 * mi / (vi.sqrt() / bc2.sqrt() + f64::from(h.eps))) as f32;
        m[i] = mi as f32;
        v[i] = vi as f32;
    }
}

/// `Σ x²`, accumulated in f64. Chunk sums are added in chunk order, so the result does not
/// depend on how the pool split the work (a resumed run must reproduce it bit for bit).
pub fn sum_squares(x: &[f32]) -> f64 {
    let parts: Vec<f64> = x.par_chunks(SPLIT).map(|c| c.iter().map(|&a| f64::from(a) * f64::from(a)).sum::<f64>()).collect();
    parts.iter().sum()
}

/// The factor `torch.nn.utils.clip_grad_norm_` multiplies every gradient by: `max_norm / (norm +
/// 1e-6)`, capped at 1.
pub fn clip_factor(norm: f64, max_norm: f64) -> f32 {
    (max_norm / (norm + 1e-6)).min(1.0) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_path_agrees_with_reference_over_steps() {
        let h = AdamW { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 };
        let n = SPLIT + 77;
        let mut a: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
        let mut b = a.clone();
        let (mut ma, mut va, mut mb, mut vb) = (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        for step in 1..=3 {
            let g: Vec<f32> = (0..n).map(|i| ((i * 53 + step * 11) % 97) as f32 / 97.0 - 0.5).collect();
            adamw(&mut a, &g, &mut ma, &mut va, h, step as u64, 0.5);
            adamw_ref(&mut b, &g, &mut mb, &mut vb, h, step as u64, 0.5);
        }
        for i in 0..n {
            assert!((a[i] - b[i]).abs() < 1e-6, "p[{i}] {} vs {}", a[i], b[i]);
            assert!((ma[i] - mb[i]).abs() < 1e-6 && (va[i] - vb[i]).abs() < 1e-7, "moments at {i}");
        }
    }

    #[test]
    fn first_step_moves_by_lr_against_the_gradient_sign() {
        // Bias correction makes the first update lr · g/|g| (for |g| ≫ ε).
        let h = AdamW { lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.0 };
        let (mut p, mut m, mut v) = (vec![1.0, 1.0, 1.0], vec![0.0; 3], vec![0.0; 3]);
        adamw(&mut p, &[3.0, -0.002, 0.0], &mut m, &mut v, h, 1, 1.0);
        assert!((p[0] - 0.99).abs() < 1e-6 && (p[1] - 1.01).abs() < 1e-6 && p[2] == 1.0, "{p:?}");
        assert_eq!(sum_squares(&[3.0, 4.0]), 25.0);
        assert_eq!(clip_factor(0.5, 1.0), 1.0);
        assert!((clip_factor(4.0, 1.0) - 0.25).abs() < 1e-6);
    }
}
