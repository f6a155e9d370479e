//! Causal grouped-query attention over packed sequences, forward and backward: the trainer's
//! attention. Several sequences lie end to end in one `[T, ·]` buffer (`seq_lens` sum to `T`);
//! a query sees the keys of its own sequence up to itself, never across a boundary.
//!
//! The forward pass keeps only each row's log-sum-exp of scores (`lse: [T, H]`), not the
//! probabilities; the backward pass recomputes them from it (as FlashAttention does), so memory
//! stays linear in `T`. The fast paths run rows in parallel on the current rayon pool:
//! [`forward`] and the query gradient by query row, the key/value gradients by key row (each
//! row's gradient is one task's, so nothing is shared). [`forward_ref`] and [`backward_ref`]
//! are the plainly-correct references, materialising the probabilities in f64; tests compare.

use rayon::prelude::*;

use super::attention::AttnShape;
use super::matvec::dot;

/// The first row of the sequence each row belongs to, and one past its last.
fn bounds(seq_lens: &[usize]) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(seq_lens.iter().sum());
    let mut start = 0;
    for &len in seq_lens {
        out.extend(std::iter::repeat_n((start, start + len), len));
        start += len;
    }
    out
}

fn check(q: &[f32], k: &[f32], v: &[f32], seq_lens: &[usize], shape: AttnShape) -> usize {
    let AttnShape { n_heads, n_kv_heads, head_dim } = shape;
    let t: usize = seq_lens.iter().sum();
    assert!(n_kv_heads > 0 && n_heads % n_kv_heads == 0, "invariant: kv heads divide query heads");
    assert!(
        q.len() == t * n_heads * head_dim && k.len() == t * n_kv_heads * head_dim && v.len() == k.len(),
        "invariant: attention shapes agree with the sequence lengths"
    );
    t
}

/// `o = softmax(q·kᵀ/√D + mask)·v` per query head, and `lse[t, h]` = log Σ exp(scores) of row `t`.
///
/// `q, o: [T, H, D]`, `k, v: [T, Hkv, D]`, `lse: [T, H]`.
pub fn forward(q: &[f32], k: &[f32], v: &[f32], seq_lens: &[usize], shape: AttnShape, o: &mut [f32], lse: &mut [f32]) {
    let AttnShape { n_heads, n_kv_heads, head_dim: d } = shape;
    let t = check(q, k, v, seq_lens, shape);
    assert!(o.len() == q.len() && lse.len() == t * n_heads, "invariant: attention outputs fit");
    let (q_row, kv_row, group) = (n_heads * d, n_kv_heads * d, n_heads / n_kv_heads);
    let scale = 1.0 / (d as f32).sqrt();
    let bounds = bounds(seq_lens);
    o.par_chunks_mut(q_row).zip(lse.par_chunks_mut(n_heads)).enumerate().for_each(|(i, (orow, lrow))| {
        let s0 = bounds[i].0;
        let mut scores = vec![0f32; i + 1 - s0];
        for h in 0..n_heads {
            let kh = h / group;
            let qh = &q[i * q_row + h * d..][..d];
            for (j, sc) in (s0..=i).zip(scores.iter_mut()) {
                *sc = dot(qh, &k[j * kv_row + kh * d..][..d]) * scale;
            }
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut total = 0f32;
            scores.iter_mut().for_each(|s| {
                *s = (*s - max).exp();
                total += *s;
            });
            let out = &mut orow[h * d..][..d];
            out.iter_mut().for_each(|x| *x = 0.0);
            for (j, &p) in (s0..=i).zip(&scores) {
                let p = p / total;
                out.iter_mut().zip(&v[j * kv_row + kh * d..][..d]).for_each(|(a, &x)| *a += p * x);
            }
            lrow[h] = max + total.ln();
        }
    });
}

/// Gradients of [`forward`]: given `dout = ∂L/∂o`, writes `dq, dk, dv` (overwritten).
///
/// With `P = exp(S − lse)` and `Dᵢ = doᵢ · oᵢ`: `dS = P ⊙ (dO·Vᵀ − D)`, `dQ = dS·K/√D`,
/// `dK = dSᵀ·Q/√D`, `dV = Pᵀ·dO`, the key/value heads summing over their query group.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    o: &[f32],
    lse: &[f32],
    dout: &[f32],
    seq_lens: &[usize],
    shape: AttnShape,
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    let AttnShape { n_heads, n_kv_heads, head_dim: d } = shape;
    let t = check(q, k, v, seq_lens, shape);
    assert!(
        o.len() == q.len() && dout.len() == q.len() && dq.len() == q.len() && dk.len() == k.len() && dv.len() == v.len() && lse.len() == t * n_heads,
        "invariant: attention gradients fit"
    );
    let (q_row, kv_row, group) = (n_heads * d, n_kv_heads * d, n_heads / n_kv_heads);
    let scale = 1.0 / (d as f32).sqrt();
    let bounds = bounds(seq_lens);
    // delta[i, h] = dO[i, h] · O[i, h]
    let delta: Vec<f32> = (0..t * n_heads).into_par_iter().map(|ih| dot(&dout[ih * d..][..d], &o[ih * d..][..d])).collect();
    dq.par_chunks_mut(q_row).enumerate().for_each(|(i, dqrow)| {
        dqrow.iter_mut().for_each(|x| *x = 0.0);
        let s0 = bounds[i].0;
        for h in 0..n_heads {
            let kh = h / group;
            let (qh, doh) = (&q[i * q_row + h * d..][..d], &dout[i * q_row + h * d..][..d]);
            let (l, dl) = (lse[i * n_heads + h], delta[i * n_heads + h]);
            let acc = &mut dqrow[h * d..][..d];
            for j in s0..=i {
                let kj = &k[j * kv_row + kh * d..][..d];
                let p = (dot(qh, kj) * scale - l).exp();
                let ds = p * (dot(doh, &v[j * kv_row + kh * d..][..d]) - dl) * scale;
                acc.iter_mut().zip(kj).for_each(|(a, &x)| *a += ds * x);
            }
        }
    });
    dk.par_chunks_mut(kv_row).zip(dv.par_chunks_mut(kv_row)).enumerate().for_each(|(j, (dkrow, dvrow))| {
        dkrow.iter_mut().for_each(|x| *x = 0.0);
        dvrow.iter_mut().for_each(|x| *x = 0.0);
        let end = bounds[j].1;
        for kh in 0..n_kv_heads {
            let (kj, vj) = (&k[j * kv_row + kh * d..][..d], &v[j * kv_row + kh * d..][..d]);
            let (dkh, dvh) = (&mut dkrow[kh * d..][..d], &mut dvrow[kh * d..][..d]);
            for h in kh * group..(kh + 1) * group {
                for i in j..end {
                    let (qh, doh) = (&q[i * q_row + h * d..][..d], &dout[i * q_row + h * d..][..d]);
                    let p = (dot(qh, kj) * scale - lse[i * n_heads + h]).exp();
                    dvh.iter_mut().zip(doh).for_each(|(a, &x)| *a += p * x);
                    let ds = p * (dot(doh, vj) - delta[i * n_heads + h]) * scale;
                    dkh.iter_mut().zip(qh).for_each(|(a, &x)| *a += ds * x);
                }
            }
        }
    });
}

/// Per sequence and query head, the probability matrix `P[i][j]` (f64; zero above the diagonal).
fn probabilities(q: &[f32], k: &[f32], start: usize, len: usize, h: usize, shape: AttnShape) -> Vec<Vec<f64>> {
    let AttnShape { n_heads, n_kv_heads, head_dim: d } = shape;
    let kh = h / (n_heads / n_kv_heads);
    let scale = 1.0 / (d as f64).sqrt();
    let at = |x: &[f32], row: usize, heads: usize, hh: usize| -> Vec<f64> { x[row * heads * d + hh * d..][..d].iter().map(|&a| f64::from(a)).collect() };
    (0..len)
        .map(|i| {
            let qi = at(q, start + i, n_heads, h);
            let s: Vec<f64> = (0..=i).map(|j| at(k, start + j, n_kv_heads, kh).iter().zip(&qi).map(|(a, b)| a * b).sum::<f64>() * scale).collect();
            let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = s.iter().map(|x| (x - max).exp()).sum();
            let mut row: Vec<f64> = s.iter().map(|x| (x - max).exp() / total).collect();
            row.resize(len, 0.0);
            row
        })
        .collect()
}

/// The reference for [`forward`]'s `o`: the probabilities materialised, f64.
pub fn forward_ref(q: &[f32], k: &[f32], v: &[f32], seq_lens: &[usize], shape: AttnShape, o: &mut [f32]) {
    let AttnShape { n_heads, n_kv_heads, head_dim: d } = shape;
    check(q, k, v, seq_lens, shape);
    let kh_of = |h: usize| h / (n_heads / n_kv_heads);
    let mut start = 0;
    for &len in seq_lens {
        for h in 0..n_heads {
            let p = probabilities(q, k, start, len, h, shape);
            for i in 0..len {
                for x in 0..d {
                    let s: f64 = (0..=i).map(|j| p[i][j] * f64::from(v[(start + j) * n_kv_heads * d + kh_of(h) * d + x])).sum();
                    o[(start + i) * n_heads * d + h * d + x] = s as f32;
                }
            }
        }
        start += len;
    }
}

/// The reference for [`backward`]: the textbook chain rule through the materialised softmax, f64.
#[allow(clippy::too_many_arguments)]
pub fn backward_ref(q: &[f32], k: &[f32], v: &[f32], dout: &[f32], seq_lens: &[usize], shape: AttnShape, dq: &mut [f32], dk: &mut [f32], dv: &mut [f32]) {
    let AttnShape { n_heads, n_kv_heads, head_dim: d } = shape;
    check(q, k, v, seq_lens, shape);
    let kh_of = |h: usize| h / (n_heads / n_kv_heads);
    let scale = 1.0 / (d as f64).sqrt();
    let (mut gq, mut gk, mut gv) = (vec![0f64; q.len()], vec![0f64; k.len()], vec![0f64; v.len()]);
    let qi = |row: usize, h: usize| row * n_heads * d + h * d;
    let ki = |row: usize, h: usize| row * n_kv_heads * d + kh_of(h) * d;
    let mut start = 0;
    for &len in seq_lens {
        for h in 0..n_heads {
            let p = probabilities(q, k, start, len, h, shape);
            for i in 0..len {
                // dP[i][j] = dO_i · V_j; dS = P ⊙ (dP − Σ_j P dP)
                let dp: Vec<f64> = (0..=i).map(|j| (0..d).map(|x| f64::from(dout[qi(start + i, h) + x]) * f64::from(v[ki(start + j, h) + x])).sum()).collect();
                let mean: f64 = (0..=i).map(|j| p[i][j] * dp[j]).sum();
                for j in 0..=i {
                    let ds = p[i][j] * (dp[j] - mean) * scale;
                    for x in 0..d {
                        gq[qi(start + i, h) + x] += ds * f64::from(k[ki(start + j, h) + x]);
                        gk[ki(start + j, h) + x] += ds * f64::from(q[qi(start + i, h) + x]);
                        gv[ki(start + j, h) + x] += p[i][j] * f64::from(dout[qi(start + i, h) + x]);
                    }
                }
            }
        }
        start += len;
    }
    let put = |dst: &mut [f32], src: &[f64]| dst.iter_mut().zip(src).for_each(|(a, &b)| *a = b as f32);
    put(dq, &gq);
    put(dk, &gk);
    put(dv, &gv);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i * 31 + seed * 17) % 97) as f32 - 48.0) / 40.0).collect()
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 2e-4 * (1.0 + y.abs()), "{what}[{i}]: fast {x} vs reference {y}");
        }
    }

    #[test]
    fn fast_paths_agree_with_reference() {
        let shape = AttnShape { n_heads: 4, n_kv_heads: 2, head_dim: 8 };
        let seq_lens = [5, 1, 9];
        let t: usize = seq_lens.iter().sum();
        let (q, k, v, dout) = (data(t * 32, 1), data(t * 16, 2), data(t * 16, 3), data(t * 32, 4));
        let (mut o, mut lse, mut o_ref) = (vec![f32::NAN; t * 32], vec![f32::NAN; t * 4], vec![0.0; t * 32]);
        forward(&q, &k, &v, &seq_lens, shape, &mut o, &mut lse);
        forward_ref(&q, &k, &v, &seq_lens, shape, &mut o_ref);
        close(&o, &o_ref, "o");
        let (mut dq, mut dk, mut dv) = (vec![f32::NAN; q.len()], vec![f32::NAN; k.len()], vec![f32::NAN; v.len()]);
        backward(&q, &k, &v, &o, &lse, &dout, &seq_lens, shape, &mut dq, &mut dk, &mut dv);
        let (mut rq, mut rk, mut rv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
        backward_ref(&q, &k, &v, &dout, &seq_lens, shape, &mut rq, &mut rk, &mut rv);
        close(&dq, &rq, "dq");
        close(&dk, &rk, "dk");
        close(&dv, &rv, "dv");
    }

    #[test]
    fn packing_equals_each_sequence_alone_and_matches_the_cache_attention() {
        let shape = AttnShape { n_heads: 2, n_kv_heads: 1, head_dim: 4 };
        let (q, k, v) = (data(7 * 8, 5), data(7 * 4, 6), data(7 * 4, 7));
        let (mut packed, mut lse) = (vec![0.0; 7 * 8], vec![0.0; 7 * 2]);
        forward(&q, &k, &v, &[3, 4], shape, &mut packed, &mut lse);
        let mut second = vec![0.0; 4 * 8];
        super::super::attention::attention(&q[3 * 8..], &k[3 * 4..], &v[3 * 4..], 0, shape, &mut second);
        close(&packed[3 * 8..], &second, "second sequence alone");
        let mut first = vec![0.0; 3 * 8];
        super::super::attention::attention(&q[..3 * 8], &k[..3 * 4], &v[..3 * 4], 0, shape, &mut first);
        close(&packed[..3 * 8], &first, "first sequence alone");
    }

    #[test]
    fn backward_matches_finite_differences() {
        let shape = AttnShape { n_heads: 2, n_kv_heads: 1, head_dim: 4 };
        let seq_lens = [3, 2];
        let (q, k, v, g) = (data(5 * 8, 8), data(5 * 4, 9), data(5 * 4, 10), data(5 * 8, 11));
        let loss = |q: &[f32], k: &[f32], v: &[f32]| -> f64 {
            let mut o = vec![0.0; 5 * 8];
            forward_ref(q, k, v, &seq_lens, shape, &mut o);
            o.iter().zip(&g).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum()
        };
        let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
        backward_ref(&q, &k, &v, &g, &seq_lens, shape, &mut dq, &mut dk, &mut dv);
        let h = 1e-2f32;
        for (which, grad) in [(0, &dq), (1, &dk), (2, &dv)] {
            for i in 0..grad.len() {
                let mut xs = [q.clone(), k.clone(), v.clone()];
                xs[which][i] += h;
                let up = loss(&xs[0], &xs[1], &xs[2]);
                xs[which][i] -= 2.0 * h;
                let down = loss(&xs[0], &xs[1], &xs[2]);
                let num = (up - down) / (2.0 * f64::from(h));
                assert!((num - f64::from(grad[i])).abs() < 2e-3 * (1.0 + num.abs()), "tensor {which}[{i}]: {} vs {num}", grad[i]);
            }
        }
    }
}
