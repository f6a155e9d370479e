//! The SwiGLU gate of Llama's feed-forward block: `h = silu(gate) ⊙ up`, with
//! `silu(x) = x · sigmoid(x)`, and its backward pass for the trainer.

/// Overwrites `gate` with `silu(gate) ⊙ up`. `gate, up: [T, F]`.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "invariant: swiglu operands have one shape");
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// `h = silu(gate) ⊙ up` into `h`, leaving the operands (which the backward pass needs).
pub fn swiglu_forward(gate: &[f32], up: &[f32], h: &mut [f32]) {
    assert!(gate.len() == up.len() && gate.len() == h.len(), "invariant: swiglu operands have one shape");
    for ((o, &g), &u) in h.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + (-g).exp()) * u;
    }
}

/// Backward of [`swiglu_forward`]: `dgate = dh ⊙ up ⊙ silu'(gate)`, `dup = dh ⊙ silu(gate)`
/// (overwritten), with `silu'(g) = σ(g) · (1 + g · (1 − σ(g)))`.
pub fn swiglu_backward(gate: &[f32], up: &[f32], dh: &[f32], dgate: &mut [f32], dup: &mut [f32]) {
    let n = gate.len();
    assert!(up.len() == n && dh.len() == n && dgate.len() == n && dup.len() == n, "invariant: swiglu operands have one shape");
    for i in 0..n {
        let g = gate[i];
        let s = 1.0 / (1.0 + (-g).exp());
        dup[i] = dh[i] * g * s;
        dgate[i] = dh[i] * up[i] * s * (1.0 + g * (1.0 - s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backward_matches_finite_differences() {
        let gate = [-3.0f32, -0.5, 0.0, 0.7, 2.5];
        let up = [1.5f32, -2.0, 0.3, 0.9, -0.4];
        let dh = [0.2f32, -1.0, 0.5, 1.5, 0.8];
        let (mut dg, mut du) = ([0.0; 5], [0.0; 5]);
        swiglu_backward(&gate, &up, &dh, &mut dg, &mut du);
        let f = |g: f64, u: f64| g / (1.0 + (-g).exp()) * u;
        let h = 1e-4;
        for i in 0..5 {
            let (g, u) = (f64::from(gate[i]), f64::from(up[i]));
            let ng = (f(g + h, u) - f(g - h, u)) / (2.0 * h) * f64::from(dh[i]);
            let nu = (f(g, u + h) - f(g, u - h)) / (2.0 * h) * f64::from(dh[i]);
            assert!((ng - f64::from(dg[i])).abs() < 1e-5, "dgate[{i}] {} vs {ng}", dg[i]);
            assert!((nu - f64::from(du[i])).abs() < 1e-5, "dup[{i}] {} vs {nu}", du[i]);
        }
        let mut h = [0.0; 5];
        swiglu_forward(&gate, &up, &mut h);
        let mut inplace = gate;
        swiglu(&mut inplace, &up);
        assert_eq!(h, inplace);
    }

    #[test]
    fn known_values() {
        let mut g = vec![0.0, 1.0, -1.0, 20.0];
        swiglu(&mut g, &[5.0, 2.0, 1.0, 0.5]);
        let s = |x: f32| x / (1.0 + (-x).exp());
        assert_eq!(g, vec![0.0, 2.0 * s(1.0), s(-1.0), 0.5 * s(20.0)]);
        assert!((g[1] - 2.0 * 0.731_058_6).abs() < 1e-6);
    }
}
