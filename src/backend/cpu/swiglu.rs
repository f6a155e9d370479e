//! The SwiGLU gate of Llama's feed-forward block: `h = silu(gate) ⊙ up`, with
//! `silu(x) = x · sigmoid(x)`.

/// Overwrites `gate` with `silu(gate) ⊙ up`. `gate, up: [T, F]`.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    assert_eq!(gate.len(), up.len(), "invariant: swiglu operands have one shape");
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let mut g = vec![0.0, 1.0, -1.0, 20.0];
        swiglu(&mut g, &[5.0, 2.0, 1.0, 0.5]);
        let s = |x: f32| x / (1.0 + (-x).exp());
        assert_eq!(g, vec![0.0, 2.0 * s(1.0), s(-1.0), 0.5 * s(20.0)]);
        assert!((g[1] - 2.0 * 0.731_058_6).abs() < 1e-6);
    }
}
