//! Rotary position embedding. Which pairs of a head's dimensions rotate together depends on how
//! the checkpoint's Q/K weights are laid out:
//!
//! - [`RopeStyle::Interleaved`] rotates adjacent pairs `(2i, 2i+1)`. This is GGML's "normal" rope
//!   mode, used for GGUF `llama` files: the converter permutes the rows of Hugging Face's `q_proj`
//!   and `k_proj` so that Hugging Face's half-split rotation becomes this one.
//! - [`RopeStyle::HalfSplit`] rotates `(i, i + d/2)`: Hugging Face's `rotate_half`, GGML's "NeoX"
//!   mode, used for GGUF `qwen2` files (not permuted) and for safetensors checkpoints.
//!
//! Pair `i` of `n_rot / 2` turns by `pos · base^(−2i / n_rot)`; dimensions past `n_rot` are left
//! alone.

/// Which dimensions rotate together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Pairs `(2i, 2i+1)` (GGML mode 0, GGUF llama).
    Interleaved,
    /// Pairs `(i, i + n_rot/2)` (GGML NeoX mode, Hugging Face `rotate_half`).
    HalfSplit,
}

/// Rotates every head of `x` in place.
///
/// `x: [T, H, D]` row-major with `H = n_heads`, `D = head_dim`; token `t` sits at position
/// `pos0 + t`. Angles are computed in f64.
pub fn rope(x: &mut [f32], n_heads: usize, head_dim: usize, n_rot: usize, pos0: usize, base: f32, style: RopeStyle) {
    rotate(x, n_heads, head_dim, n_rot, base, style, 1.0, |t| pos0 + t);
}

/// [`rope`] over packed sequences, the trainer's layout: `seq_lens` are the lengths of the
/// sequences laid end to end in `x` (they sum to `T`), and positions restart at 0 in each.
/// `inverse` rotates by the opposite angles: the backward pass of a rotation is its inverse.
pub fn rope_packed(x: &mut [f32], n_heads: usize, head_dim: usize, n_rot: usize, seq_lens: &[usize], base: f32, style: RopeStyle, inverse: bool) {
    let mut pos = Vec::with_capacity(x.len() / (n_heads * head_dim).max(1));
    seq_lens.iter().for_each(|&len| pos.extend(0..len));
    assert_eq!(pos.len() * n_heads * head_dim, x.len(), "invariant: sequence lengths cover the packed rows");
    rotate(x, n_heads, head_dim, n_rot, base, style, if inverse { -1.0 } else { 1.0 }, |t| pos[t]);
}

/// `base^(−2i / n_rot)` for each pair `i` of `n_rot / 2`: what [`angles`] turns by per position.
pub fn inv_freq(n_rot: usize, base: f32) -> Vec<f64> {
    (0..n_rot / 2).map(|i| f64::from(base).powf(-2.0 * i as f64 / n_rot as f64)).collect()
}

/// `(cos, sin)` of each pair's angle at position `pos` (`sign` −1: the inverse rotation),
/// computed in f64.
pub fn angles(inv_freq: &[f64], pos: usize, sign: f64) -> Vec<(f32, f32)> {
    let pos = pos as f64;
    inv_freq.iter().map(|&f| ((pos * f).cos() as f32, (sign * (pos * f).sin()) as f32)).collect()
}

/// Rotates every head of one token `x: [H·D]` by `cs` (from [`angles`]; `2 · cs.len()` dims of
/// each head turn, the rest are left alone). [`rope`] is this over every token.
pub fn rotate_token(x: &mut [f32], head_dim: usize, cs: &[(f32, f32)], style: RopeStyle) {
    let half = cs.len();
    // head: [D]
    for head in x.chunks_exact_mut(head_dim) {
        for (i, &(cos, sin)) in cs.iter().enumerate() {
            let (a, b) = match style {
                RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                RopeStyle::HalfSplit => (i, i + half),
            };
            let (x0, x1) = (head[a], head[b]);
            head[a] = x0 * cos - x1 * sin;
            head[b] = x0 * sin + x1 * cos;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn rotate(x: &mut [f32], n_heads: usize, head_dim: usize, n_rot: usize, base: f32, style: RopeStyle, sign: f64, position: impl Fn(usize) -> usize) {
    assert!(n_rot <= head_dim && n_rot.is_multiple_of(2), "invariant: rope dims {n_rot} fit the head {head_dim}");
    let inv_freq = inv_freq(n_rot, base);
    // x: [T, H·D]
    for (t, token) in x.chunks_exact_mut(n_heads * head_dim).enumerate() {
        rotate_token(token, head_dim, &angles(&inv_freq, position(t), sign), style);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_zero_is_identity() {
        let x: Vec<f32> = (0..16).map(|i| i as f32).collect();
        for style in [RopeStyle::Interleaved, RopeStyle::HalfSplit] {
            let mut y = x.clone();
            rope(&mut y, 2, 8, 8, 0, 10000.0, style);
            assert_eq!(y, x);
        }
    }

    #[test]
    fn pairs_and_angles() {
        // One head of 4 dims at position 1, base 100: pair 0 turns by 1 rad, pair 1 by 0.1 rad.
        let (c0, s0, c1, s1) = (1f32.cos(), 1f32.sin(), 0.1f32.cos(), 0.1f32.sin());
        let mut x = vec![1.0, 2.0, 3.0, 4.0];
        rope(&mut x, 1, 4, 4, 1, 100.0, RopeStyle::Interleaved);
        let want = [c0 - 2.0 * s0, s0 + 2.0 * c0, 3.0 * c1 - 4.0 * s1, 3.0 * s1 + 4.0 * c1];
        x.iter().zip(&want).for_each(|(a, b)| assert!((a - b).abs() < 1e-6, "{x:?} vs {want:?}"));
        let mut x = vec![1.0, 2.0, 3.0, 4.0];
        rope(&mut x, 1, 4, 4, 1, 100.0, RopeStyle::HalfSplit);
        let want = [c0 - 3.0 * s0, 2.0 * c1 - 4.0 * s1, s0 + 3.0 * c0, 2.0 * s1 + 4.0 * c1];
        x.iter().zip(&want).for_each(|(a, b)| assert!((a - b).abs() < 1e-6, "{x:?} vs {want:?}"));
    }

    #[test]
    fn packed_positions_restart_and_inverse_undoes() {
        let (h, d) = (2, 8);
        let x: Vec<f32> = (0..5 * h * d).map(|i| ((i * 13 % 17) as f32 - 8.0) / 4.0).collect();
        let mut packed = x.clone();
        rope_packed(&mut packed, h, d, d, &[3, 2], 10000.0, RopeStyle::HalfSplit, false);
        let (mut a, mut b) = (x[..3 * h * d].to_vec(), x[3 * h * d..].to_vec());
        rope(&mut a, h, d, d, 0, 10000.0, RopeStyle::HalfSplit);
        rope(&mut b, h, d, d, 0, 10000.0, RopeStyle::HalfSplit);
        assert_eq!(packed, [a, b].concat());
        rope_packed(&mut packed, h, d, d, &[3, 2], 10000.0, RopeStyle::HalfSplit, true);
        packed.iter().zip(&x).for_each(|(p, v)| assert!((p - v).abs() < 1e-5, "{p} vs {v}"));
    }

    #[test]
    fn interleaved_equals_half_split_on_permuted_dims() {
        // The GGUF converter's permutation: half-split dim i ↔ interleaved dim 2i, i + d/2 ↔ 2i + 1.
        let d = 8;
        let hs: Vec<f32> = (0..d).map(|i| (i as f32 * 0.7).sin()).collect();
        let mut il = vec![0.0; d];
        for i in 0..d / 2 {
            il[2 * i] = hs[i];
            il[2 * i + 1] = hs[i + d / 2];
        }
        let (mut hs2, mut il2) = (hs.clone(), il.clone());
        rope(&mut hs2, 1, d, d, 5, 10000.0, RopeStyle::HalfSplit);
        rope(&mut il2, 1, d, d, 5, 10000.0, RopeStyle::Interleaved);
        for i in 0..d / 2 {
            assert_eq!(il2[2 * i], hs2[i]);
            assert_eq!(il2[2 * i + 1], hs2[i + d / 2]);
        }
    }
}
