//! Causal grouped-query attention over a KV cache: query head `h` reads key/value head
//! `h / (n_heads / n_kv_heads)`, and the query at position `p` sees keys `0..=p`.
//!
//! [`attention`] is the reference (f64 accumulation); [`attention_one`] is the decode step's fast
//! path for a single query in f32, and [`attention_rows`] the prompt's (prefill's): every new
//! query row at once, in parallel. Tests compare both with the reference.

use rayon::prelude::*;

/// Shapes of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    /// Query heads `H`.
    pub n_heads: usize,
    /// Key/value heads `Hkv` (divides `H`).
    pub n_kv_heads: usize,
    /// Head size `D`.
    pub head_dim: usize,
}

/// `out = softmax(q·kᵀ / √D + causal mask) · v`, per query head.
///
/// `q: [T, H, D]` for the new tokens at positions `pos0..pos0+T`; `k, v: [S, Hkv, D]` holding
/// every cached position `0..S` with `S = pos0 + T` (the new tokens included); `out: [T, H, D]`.
/// Scores, the softmax and the weighted sum are accumulated in f64.
pub fn attention(q: &[f32], k: &[f32], v: &[f32], pos0: usize, shape: AttnShape, out: &mut [f32]) {
    let AttnShape { n_heads, n_kv_heads, head_dim: d } = shape;
    let (q_row, kv_row) = (n_heads * d, n_kv_heads * d);
    let t_len = q.len() / q_row;
    assert!(n_kv_heads > 0 && n_heads % n_kv_heads == 0, "invariant: kv heads divide query heads");
    assert!(k.len() == v.len() && k.len() >= (pos0 + t_len) * kv_row && out.len() == q.len(), "invariant: attention shapes agree");
    let group = n_heads / n_kv_heads;
    let scale = 1.0 / (d as f64).sqrt();
    let mut scores = Vec::new();
    let mut acc = vec![0f64; d];
    for t in 0..t_len {
        let n_keys = pos0 + t + 1;
        for h in 0..n_heads {
            let kh = h / group;
            let qh = &q[t * q_row + h * d..][..d];
            scores.clear();
            for s in 0..n_keys {
                let ks = &k[s * kv_row + kh * d..][..d];
                let dot: f64 = qh.iter().zip(ks).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
                scores.push(dot * scale);
            }
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut total = 0.0;
            for sc in scores.iter_mut() {
                *sc = (*sc - max).exp();
                total += *sc;
            }
            acc.iter_mut().for_each(|a| *a = 0.0);
            for (s, &p) in scores.iter().enumerate() {
                let vs = &v[s * kv_row + kh * d..][..d];
                for (a, &x) in acc.iter_mut().zip(vs) {
                    *a += p * f64::from(x);
                }
            }
            for (o, &a) in out[t * q_row + h * d..][..d].iter_mut().zip(&acc) {
                *o = (a / total) as f32;
            }
        }
    }
}

/// One query at position `pos` (the last cached one): `q: [H, D]`, `k, v: [S, Hkv, D]` with
/// `S > pos`, `out: [H, D]`. The same result as [`attention`] with `T = 1`, in f32.
pub fn attention_one(q: &[f32], k: &[f32], v: &[f32], pos: usize, shape: AttnShape, out: &mut [f32]) {
    let AttnShape { n_heads, n_kv_heads, head_dim: d } = shape;
    let kv_row = n_kv_heads * d;
    assert!(n_kv_heads > 0 && n_heads % n_kv_heads == 0, "invariant: kv heads divide query heads");
    assert!(
        q.len() == n_heads * d && out.len() == q.len() && k.len() == v.len() && k.len() >= (pos + 1) * kv_row,
        "invariant: attention shapes agree"
    );
    let group = n_heads / n_kv_heads;
    let mut scores = Vec::new();
    for h in 0..n_heads {
        attention_head(&q[h * d..][..d], k, v, pos, h / group, shape, &mut scores, &mut out[h * d..][..d]);
    }
}

/// One query head of [`attention_one`]: `qh: [D]` at position `pos` against key/value head `kh`
/// of `k, v: [S, Hkv, D]`, into `out: [D]`; `scores` is scratch space. The same arithmetic as
/// [`attention_one`]'s, so a decode step may split a row's heads between threads.
#[allow(clippy::too_many_arguments)]
pub fn attention_head(qh: &[f32], k: &[f32], v: &[f32], pos: usize, kh: usize, shape: AttnShape, scores: &mut Vec<f32>, out: &mut [f32]) {
    let d = shape.head_dim;
    let kv_row = shape.n_kv_heads * d;
    assert!(
        qh.len() == d && out.len() == d && kh < shape.n_kv_heads && k.len() == v.len() && k.len() >= (pos + 1) * kv_row,
        "invariant: attention shapes agree"
    );
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { head_avx2(qh, k, v, pos, kh, shape, scores, out) };
    }
    head_body(super::matvec::dot, qh, k, v, pos, kh, shape, scores, out)
}

/// [`attention_head`] compiled for AVX2 (its `dot`, and the loops over `out`, 8 lanes wide)
/// with the feature checked once per head instead of once per key. The arithmetic is the
/// portable path's: `matvec::dot` picks the same kernel, and the loops are element-wise.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn head_avx2(qh: &[f32], k: &[f32], v: &[f32], pos: usize, kh: usize, shape: AttnShape, scores: &mut Vec<f32>, out: &mut [f32]) {
    // SAFETY: this function runs only where the CPU has AVX2 and FMA.
    head_body(|a, b| unsafe { super::matvec::dot_avx2(a, b) }, qh, k, v, pos, kh, shape, scores, out)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn head_body(
    dot: impl Fn(&[f32], &[f32]) -> f32,
    qh: &[f32],
    k: &[f32],
    v: &[f32],
    pos: usize,
    kh: usize,
    shape: AttnShape,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    let d = shape.head_dim;
    let kv_row = shape.n_kv_heads * d;
    let scale = 1.0 / (d as f32).sqrt();
    scores.clear();
    scores.extend((0..=pos).map(|s| dot(qh, &k[s * kv_row + kh * d..][..d]) * scale));
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut total = 0f32;
    for sc in scores.iter_mut() {
        *sc = (*sc - max).exp();
        total += *sc;
    }
    out.iter_mut().for_each(|x| *x = 0.0);
    for (s, &p) in scores.iter().enumerate() {
        let vs = &v[s * kv_row + kh * d..][..d];
        for (a, &x) in out.iter_mut().zip(vs) {
            *a += p * x;
        }
    }
    let inv = 1.0 / total;
    out.iter_mut().for_each(|x| *x *= inv);
}

/// [`attention`] in f32 for `T` new queries at positions `pos0..pos0+T` (a prompt's prefill),
/// the rows in parallel on the current rayon pool: row `t` is [`attention_one`] at `pos0 + t`.
/// Shapes as [`attention`]'s.
pub fn attention_rows(q: &[f32], k: &[f32], v: &[f32], pos0: usize, shape: AttnShape, out: &mut [f32]) {
    let q_row = shape.n_heads * shape.head_dim;
    assert!(q.len() % q_row == 0 && out.len() == q.len(), "invariant: attention shapes agree");
    out.par_chunks_mut(q_row).zip(q.par_chunks(q_row)).enumerate().for_each(|(t, (o, qt))| attention_one(qt, k, v, pos0 + t, shape, o));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_position_copies_its_value_and_groups_share_kv() {
        // 2 query heads share 1 kv head; one token: attention over one key returns its value.
        let shape = AttnShape { n_heads: 2, n_kv_heads: 1, head_dim: 2 };
        let mut out = vec![0.0; 4];
        attention(&[1.0, 0.0, 0.0, 1.0], &[0.3, 0.4], &[5.0, -6.0], 0, shape, &mut out);
        assert_eq!(out, vec![5.0, -6.0, 5.0, -6.0]);
    }

    #[test]
    fn causal_softmax_weights() {
        // Two tokens, one head of size 1: query 1 sees keys 0 and 1 with scores q·k.
        let shape = AttnShape { n_heads: 1, n_kv_heads: 1, head_dim: 1 };
        let (q, k, v) = ([1.0, 2.0], [0.5, -1.0], [10.0, 20.0]);
        let mut out = vec![0.0; 2];
        attention(&q, &k, &v, 0, shape, &mut out);
        let (e0, e1) = (1.0f64.exp(), (-2.0f64).exp()); // scores q1·k0 = 1, q1·k1 = -2
        assert_eq!(out[0], 10.0);
        assert!((f64::from(out[1]) - (10.0 * e0 + 20.0 * e1) / (e0 + e1)).abs() < 1e-5);
        // The same second token computed alone, with the first one cached, gives the same answer.
        let mut alone = vec![0.0; 1];
        attention(&q[1..], &k, &v, 1, shape, &mut alone);
        assert_eq!(alone[0], out[1]);
    }

    #[test]
    fn single_query_fast_path_agrees_with_reference() {
        let shape = AttnShape { n_heads: 6, n_kv_heads: 2, head_dim: 16 };
        let s_len = 37;
        let kv: Vec<f32> = (0..s_len * 32).map(|i| ((i * 29 % 83) as f32 - 41.0) / 20.0).collect();
        let vv: Vec<f32> = (0..s_len * 32).map(|i| ((i * 31 % 89) as f32 - 44.0) / 30.0).collect();
        let q: Vec<f32> = (0..96).map(|i| ((i * 7 % 13) as f32 - 6.0) / 3.0).collect();
        let (mut slow, mut fast) = (vec![0.0; 96], vec![f32::NAN; 96]);
        attention(&q, &kv, &vv, s_len - 1, shape, &mut slow);
        attention_one(&q, &kv, &vv, s_len - 1, shape, &mut fast);
        for (a, b) in fast.iter().zip(&slow) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn prefill_rows_agree_with_reference_after_a_cached_prefix() {
        // 5 cached positions, then 32 new queries (more rows than threads, uneven key counts).
        let shape = AttnShape { n_heads: 6, n_kv_heads: 2, head_dim: 16 };
        let (pos0, t_len) = (5, 32);
        let s_len = pos0 + t_len;
        let k: Vec<f32> = (0..s_len * 32).map(|i| ((i * 29 % 83) as f32 - 41.0) / 20.0).collect();
        let v: Vec<f32> = (0..s_len * 32).map(|i| ((i * 31 % 89) as f32 - 44.0) / 30.0).collect();
        let q: Vec<f32> = (0..t_len * 96).map(|i| ((i * 7 % 13) as f32 - 6.0) / 3.0).collect();
        let (mut slow, mut fast) = (vec![0.0; q.len()], vec![f32::NAN; q.len()]);
        attention(&q, &k, &v, pos0, shape, &mut slow);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        pool.install(|| attention_rows(&q, &k, &v, pos0, shape, &mut fast));
        for (i, (a, b)) in fast.iter().zip(&slow).enumerate() {
            assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "element {i}: {a} vs {b}");
        }
    }
}
