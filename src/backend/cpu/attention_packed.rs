//! Causal grouped-query attention over packed sequences, forward and backward: the trainer's
//! attention. Several sequences lie end to end in one `[T, ·]` buffer (`seq_lens` sum to `T`);
//! a query sees the keys of its own sequence up to itself, never across a boundary.
//!
//! The forward pass keeps only each row's log-sum-exp of scores (`lse: [T, H]`), not the
//! probabilities; the backward pass recomputes them from it (as FlashAttention does), so memory
//! stays linear in `T` (each task holds one sequence's `[L, L]` scores at a time). The fast
//! paths are matrix products (gemm) per sequence and head, one task per (sequence, key/value
//! head) on the current rayon pool; a task owns its rows of that head and of its query group in
//! every output, so tasks never write the same element. [`forward_ref`] and [`backward_ref`]
//! are the plainly-correct references, materialising the probabilities in f64; tests compare.

use rayon::prelude::*;

use super::attention::AttnShape;
use super::matvec::dot;

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

/// A matrix inside one of the packed buffers: its first element and its row stride (columns
/// are contiguous), or read transposed.
#[derive(Clone, Copy)]
struct Mat {
    ptr: *const f32,
    rs: isize,
    cs: isize,
}

impl Mat {
    /// Rows `row..` of `buf` (row length `width`), from column `col`.
    fn at(buf: &[f32], row: usize, width: usize, col: usize) -> Mat {
        Mat { ptr: buf[row * width + col..].as_ptr(), rs: width as isize, cs: 1 }
    }
    /// A task-local `[rows, cols]` matrix.
    fn local(buf: &[f32], cols: usize) -> Mat {
        Mat { ptr: buf.as_ptr(), rs: cols as isize, cs: 1 }
    }
    fn t(self) -> Mat {
        Mat { ptr: self.ptr, rs: self.cs, cs: self.rs }
    }
}

/// A writable matrix inside a buffer that parallel tasks write disjoint parts of.
#[derive(Clone, Copy)]
struct MatMut {
    ptr: *mut f32,
    rs: isize,
}

/// `dst[m, n] = beta · lhs[m, k] · rhs[k, n]` (+ `dst` when `accumulate`), on the calling thread.
///
/// # Safety
/// Every element the strides reach for these sizes lies inside its buffer, and no other thread
/// reads or writes `dst`'s elements meanwhile.
unsafe fn mm(m: usize, n: usize, k: usize, dst: MatMut, accumulate: bool, lhs: Mat, rhs: Mat, beta: f32) {
    if m == 0 || n == 0 {
        return;
    }
    gemm::gemm(m, n, k, dst.ptr, 1, dst.rs, accumulate, lhs.ptr, lhs.cs, lhs.rs, rhs.ptr, rhs.cs, rhs.rs, 1.0, beta, false, false, false, gemm::Parallelism::None);
}

/// The output buffers of one pass, shared by the tasks that write disjoint parts of them.
struct Outputs<const N: usize>([*mut f32; N]);
// SAFETY: the pointers are only written through by tasks that own disjoint (sequence, key/value
// head) regions of them (see `forward` and `backward`), and the buffers outlive the tasks (the
// parallel loop ends before the function returns).
unsafe impl<const N: usize> Sync for Outputs<N> {}

/// Each sequence's start row and length, times each key/value head: the tasks of a pass. A task
/// owns its sequence's rows of its key/value head and of that head's query group.
fn tasks(seq_lens: &[usize], n_kv_heads: usize) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::with_capacity(seq_lens.len() * n_kv_heads);
    let mut start = 0;
    for &len in seq_lens {
        if len > 0 {
            out.extend((0..n_kv_heads).map(|g| (start, len, g)));
        }
        start += len;
    }
    // The longest first, so the last tasks to start are short ones.
    out.sort_by_key(|&(_, len, _)| std::cmp::Reverse(len));
    out
}

/// Scores of one sequence and query head: `s = scale · q·kᵀ` (`[L, L]`, row-major), of which
/// only the causal part `j ≤ i` is used.
///
/// # Safety
/// `q` and `k` reach `len` rows of `d` columns inside their buffers.
unsafe fn scores(s: &mut [f32], len: usize, d: usize, q: Mat, k: Mat, scale: f32) {
    let out = MatMut { ptr: s.as_mut_ptr(), rs: len as isize };
    mm(len, len, d, out, false, q, k.t(), scale);
}

/// `o = softmax(q·kᵀ/√D + mask)·v` per query head, and `lse[t, h]` = log Σ exp(scores) of row `t`.
///
/// `q, o: [T, H, D]`, `k, v: [T, Hkv, D]`, `lse: [T, H]`. Per sequence and head the scores are one
/// matrix product, softmax runs over each row's causal part, and the output is another product.
pub fn forward(q: &[f32], k: &[f32], v: &[f32], seq_lens: &[usize], shape: AttnShape, o: &mut [f32], lse: &mut [f32]) {
    let AttnShape { n_heads, n_kv_heads, head_dim: d } = shape;
    let t = check(q, k, v, seq_lens, shape);
    assert!(o.len() == q.len() && lse.len() == t * n_heads, "invariant: attention outputs fit");
    let (q_row, kv_row, group) = (n_heads * d, n_kv_heads * d, n_heads / n_kv_heads);
    let scale = 1.0 / (d as f32).sqrt();
    let outputs = Outputs([o.as_mut_ptr(), lse.as_mut_ptr()]);
    tasks(seq_lens, n_kv_heads).into_par_iter().for_each(|(s0, len, g)| {
        let outputs = &outputs;
        let mut p = vec![0f32; len * len];
        let (kg, vg) = (Mat::at(k, s0, kv_row, g * d), Mat::at(v, s0, kv_row, g * d));
        for h in g * group..(g + 1) * group {
            // SAFETY: q/k reach rows s0..s0+len of their buffers (check() bounds T), columns of one head.
            unsafe { scores(&mut p, len, d, Mat::at(q, s0, q_row, h * d), kg, scale) };
            for (i, row) in p.chunks_exact_mut(len).enumerate() {
                let (seen, future) = row.split_at_mut(i + 1);
                let max = seen.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut total = 0f32;
                seen.iter_mut().for_each(|x| {
                    *x = (*x - max).exp();
                    total += *x;
                });
                let inv = 1.0 / total;
                seen.iter_mut().for_each(|x| *x *= inv);
                future.iter_mut().for_each(|x| *x = 0.0);
                // SAFETY: lse[(s0 + i) * H + h] lies in lse; this task alone owns row s0+i of head h.
                unsafe { *outputs.0[1].add((s0 + i) * n_heads + h) = max + total.ln() };
            }
            let out = MatMut { ptr: unsafe { outputs.0[0].add(s0 * q_row + h * d) }, rs: q_row as isize };
            // SAFETY: o's rows s0..s0+len, columns of head h, are this task's alone; p is [len, len].
            unsafe { mm(len, d, len, out, false, Mat::local(&p, len), vg, 1.0) };
        }
    });
}

/// Gradients of [`forward`]: given `dout = ∂L/∂o`, writes `dq, dk, dv` (overwritten).
///
/// With `P = exp(S − lse)` and `Dᵢ = doᵢ · oᵢ`: `dS = P ⊙ (dO·Vᵀ − D)`, `dQ = dS·K/√D`,
/// `dK = dSᵀ·Q/√D`, `dV = Pᵀ·dO`, the key/value heads summing over their query group. Per
/// sequence and head, `S`, `dO·Vᵀ` and the three gradients are matrix products.
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
    // delta[i, h] = dO[i, h] · O[i, h]
    let delta: Vec<f32> = (0..t * n_heads).into_par_iter().map(|ih| dot(&dout[ih * d..][..d], &o[ih * d..][..d])).collect();
    let outputs = Outputs([dq.as_mut_ptr(), dk.as_mut_ptr(), dv.as_mut_ptr()]);
    tasks(seq_lens, n_kv_heads).into_par_iter().for_each(|(s0, len, g)| {
        let outputs = &outputs;
        let (mut p, mut dp) = (vec![0f32; len * len], vec![0f32; len * len]);
        let (kg, vg) = (Mat::at(k, s0, kv_row, g * d), Mat::at(v, s0, kv_row, g * d));
        // SAFETY (every pointer below): rows s0..s0+len of dk/dv at kv head g, and of dq at the
        // group's query heads, are this task's alone; the offsets stay inside the buffers (check()).
        let dkg = MatMut { ptr: unsafe { outputs.0[1].add(s0 * kv_row + g * d) }, rs: kv_row as isize };
        let dvg = MatMut { ptr: unsafe { outputs.0[2].add(s0 * kv_row + g * d) }, rs: kv_row as isize };
        for (n, h) in (g * group..(g + 1) * group).enumerate() {
            let (qh, doh) = (Mat::at(q, s0, q_row, h * d), Mat::at(dout, s0, q_row, h * d));
            unsafe {
                scores(&mut p, len, d, qh, kg, scale);
                // dp = dO·Vᵀ
                mm(len, len, d, MatMut { ptr: dp.as_mut_ptr(), rs: len as isize }, false, doh, vg.t(), 1.0);
            }
            for (i, (prow, dprow)) in p.chunks_exact_mut(len).zip(dp.chunks_exact_mut(len)).enumerate() {
                let (l, dl) = (lse[(s0 + i) * n_heads + h], delta[(s0 + i) * n_heads + h]);
                for (j, (x, dx)) in prow.iter_mut().zip(dprow.iter_mut()).enumerate() {
                    if j <= i {
                        *x = (*x - l).exp();
                        *dx = *x * (*dx - dl) * scale;
                    } else {
                        *x = 0.0;
                        *dx = 0.0;
                    }
                }
            }
            let (pm, dsm) = (Mat::local(&p, len), Mat::local(&dp, len));
            let dqh = MatMut { ptr: unsafe { outputs.0[0].add(s0 * q_row + h * d) }, rs: q_row as isize };
            unsafe {
                // dV += Pᵀ·dO, dQ = dS·K, dK += dSᵀ·Q (the group's first head overwrites).
                mm(len, d, len, dvg, n > 0, pm.t(), doh, 1.0);
                mm(len, d, len, dqh, false, dsm, kg, 1.0);
                mm(len, d, len, dkg, n > 0, dsm.t(), qh, 1.0);
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

    /// The fast forward and backward passes against the references on one packing.
    fn agrees_with_reference(shape: AttnShape, seq_lens: &[usize], seed: usize) {
        let t: usize = seq_lens.iter().sum();
        let (qw, kw) = (shape.n_heads * shape.head_dim, shape.n_kv_heads * shape.head_dim);
        let (q, k, v, dout) = (data(t * qw, seed), data(t * kw, seed + 1), data(t * kw, seed + 2), data(t * qw, seed + 3));
        let (mut o, mut lse, mut o_ref) = (vec![f32::NAN; t * qw], vec![f32::NAN; t * shape.n_heads], vec![0.0; t * qw]);
        forward(&q, &k, &v, seq_lens, shape, &mut o, &mut lse);
        forward_ref(&q, &k, &v, seq_lens, shape, &mut o_ref);
        close(&o, &o_ref, "o");
        let (mut dq, mut dk, mut dv) = (vec![f32::NAN; q.len()], vec![f32::NAN; k.len()], vec![f32::NAN; v.len()]);
        backward(&q, &k, &v, &o, &lse, &dout, seq_lens, shape, &mut dq, &mut dk, &mut dv);
        let (mut rq, mut rk, mut rv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
        backward_ref(&q, &k, &v, &dout, seq_lens, shape, &mut rq, &mut rk, &mut rv);
        close(&dq, &rq, "dq");
        close(&dk, &rk, "dk");
        close(&dv, &rv, "dv");
    }

    #[test]
    fn fast_paths_agree_with_reference() {
        agrees_with_reference(AttnShape { n_heads: 4, n_kv_heads: 2, head_dim: 8 }, &[5, 1, 9], 1);
    }

    #[test]
    fn longer_sequences_and_wide_groups_agree_with_reference() {
        // Sequences longer than gemm's blocks, a one-token sequence, three query heads per group.
        agrees_with_reference(AttnShape { n_heads: 6, n_kv_heads: 2, head_dim: 16 }, &[70, 1, 130], 12);
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
