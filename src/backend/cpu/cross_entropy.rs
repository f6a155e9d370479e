//! The LM head fused with the cross-entropy loss, forward and backward: the trainer's last op.
//!
//! `logits = h · Wᵀ` for the rows that have a target, `loss_t = logsumexp(logits_t) −
//! logits_t[target_t]`, and, when asked, `∂(scale · Σ loss)/∂h` and `/∂W`. The fast path
//! [`head_cross_entropy`] never holds more than [`CHUNK`] rows of logits (`V` floats each; the full
//! `[T, V]` matrix at T = 1024 and V = 49152 would be 200 MB) and skips rows without a target;
//! [`head_cross_entropy_ref`] materialises everything in f64. A test compares them.

use rayon::prelude::*;

use super::matmul::{matmul_nn, matmul_tn_acc, matmul_wt_threads, matmul_wt_ref};

/// A row with this target is not trained: no loss, zero gradient.
pub const IGNORE: u32 = u32::MAX;

/// Rows of logits the fast path materialises at a time.
pub const CHUNK: usize = 64;

/// Where the gradients go: `dh: [T, C]` is overwritten (zero for rows without a target), `dw:
/// [V, C]` accumulated; both are of `scale · Σ_t loss_t`.
pub struct CeGrads<'a> {
    /// `∂/∂h`, `[T, C]`.
    pub dh: &'a mut [f32],
    /// `∂/∂W`, `[V, C]`, added to.
    pub dw: &'a mut [f32],
    /// The factor on the summed loss (1 / the effective batch's target count).
    pub scale: f32,
}

/// Per-row losses into `losses: [T]` (0 for ignored rows), and the gradients when `grads` is given.
///
/// `h: [T, C]`, `w: [V, C]`, `targets: [T]` (token ids or [`IGNORE`]). Matrix products use
/// `threads`; the softmax rows run on the current rayon pool.
pub fn head_cross_entropy(h: &[f32], w: &[f32], targets: &[u32], losses: &mut [f32], mut grads: Option<CeGrads<'_>>, threads: usize) {
    let t = targets.len();
    let c = h.len() / t.max(1);
    let v = w.len() / c.max(1);
    assert!(h.len() == t * c && w.len() == v * c && losses.len() == t, "invariant: head shapes agree");
    losses.iter_mut().for_each(|l| *l = 0.0);
    if let Some(g) = grads.as_mut() {
        assert!(g.dh.len() == h.len() && g.dw.len() == w.len(), "invariant: head gradient shapes agree");
        g.dh.iter_mut().for_each(|x| *x = 0.0);
    }
    let rows: Vec<usize> = (0..t).filter(|&i| targets[i] != IGNORE).collect();
    if let Some(&bad) = rows.iter().find(|&&i| targets[i] as usize >= v) {
        panic!("invariant: target {} of row {bad} is inside the vocabulary of {v}", targets[bad]);
    }
    let mut hc = vec![0f32; CHUNK * c];
    let mut logits = vec![0f32; CHUNK * v];
    let mut dhc = vec![0f32; CHUNK * c];
    for chunk in rows.chunks(CHUNK) {
        let n = chunk.len();
        for (dst, &i) in hc.chunks_exact_mut(c).zip(chunk) {
            dst.copy_from_slice(&h[i * c..][..c]);
        }
        let (hc, logits) = (&hc[..n * c], &mut logits[..n * v]);
        matmul_wt_threads(hc, w, logits, c, threads);
        let scale = grads.as_ref().map(|g| g.scale);
        let chunk_losses: Vec<f32> = logits
            .par_chunks_mut(v)
            .zip(chunk.par_iter())
            .map(|(row, &i)| {
                let target = targets[i] as usize;
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let total: f64 = row.iter().map(|&x| f64::from((x - max).exp())).sum();
                let lse = f64::from(max) + total.ln();
                let loss = (lse - f64::from(row[target])) as f32;
                if let Some(scale) = scale {
                    // d loss / d logits = softmax − onehot, times the batch scale.
                    let (max, inv) = (max, (1.0 / total) as f32);
                    row.iter_mut().for_each(|x| *x = (*x - max).exp() * inv * scale);
                    row[target] -= scale;
                }
                loss
            })
            .collect();
        for (&i, l) in chunk.iter().zip(chunk_losses) {
            losses[i] = l;
        }
        if let Some(g) = grads.as_mut() {
            let dhc = &mut dhc[..n * c];
            matmul_nn(logits, w, dhc, v, false, threads);
            for (src, &i) in dhc.chunks_exact(c).zip(chunk) {
                g.dh[i * c..][..c].copy_from_slice(src);
            }
            matmul_tn_acc(logits, hc, g.dw, c, threads);
        }
    }
}

/// The reference for [`head_cross_entropy`]: full logits, log-softmax and gradients in f64.
pub fn head_cross_entropy_ref(h: &[f32], w: &[f32], targets: &[u32], losses: &mut [f32], grads: Option<CeGrads<'_>>) {
    let t = targets.len();
    let c = h.len() / t.max(1);
    let v = w.len() / c.max(1);
    let mut logits = vec![0f32; t * v];
    matmul_wt_ref(h, w, &mut logits, c);
    let mut dlogits = vec![0f64; t * v];
    for i in 0..t {
        let row: Vec<f64> = logits[i * v..][..v].iter().map(|&x| f64::from(x)).collect();
        if targets[i] == IGNORE {
            losses[i] = 0.0;
            continue;
        }
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = row.iter().map(|x| (x - max).exp()).sum();
        losses[i] = (max + total.ln() - row[targets[i] as usize]) as f32;
        for (j, x) in row.iter().enumerate() {
            dlogits[i * v + j] = (x - max).exp() / total - f64::from(u8::from(j == targets[i] as usize));
        }
    }
    if let Some(g) = grads {
        let s = f64::from(g.scale);
        for i in 0..t {
            for x in 0..c {
                g.dh[i * c + x] = ((0..v).map(|j| dlogits[i * v + j] * f64::from(w[j * c + x])).sum::<f64>() * s) as f32;
            }
        }
        for j in 0..v {
            for x in 0..c {
                g.dw[j * c + x] += ((0..t).map(|i| dlogits[i * v + j] * f64::from(h[i * c + x])).sum::<f64>() * s) as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_path_agrees_with_reference_across_chunks() {
        let (t, c, v) = (CHUNK + 9, 12, 50);
        let h: Vec<f32> = (0..t * c).map(|i| ((i * 37 % 101) as f32 - 50.0) / 60.0).collect();
        let w: Vec<f32> = (0..v * c).map(|i| ((i * 53 % 97) as f32 - 48.0) / 40.0).collect();
        let targets: Vec<u32> = (0..t).map(|i| if i % 5 == 2 { IGNORE } else { (i * 7 % v) as u32 }).collect();
        let (mut l1, mut l2) = (vec![f32::NAN; t], vec![f32::NAN; t]);
        let (mut dh1, mut dh2) = (vec![f32::NAN; t * c], vec![0.0; t * c]);
        let (mut dw1, mut dw2) = (vec![0.5; v * c], vec![0.5; v * c]);
        let scale = 1.0 / 40.0;
        head_cross_entropy(&h, &w, &targets, &mut l1, Some(CeGrads { dh: &mut dh1, dw: &mut dw1, scale }), 2);
        head_cross_entropy_ref(&h, &w, &targets, &mut l2, Some(CeGrads { dh: &mut dh2, dw: &mut dw2, scale }));
        for (what, a, b) in [("loss", &l1, &l2), ("dh", &dh1, &dh2), ("dw", &dw1, &dw2)] {
            for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
                assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{what}[{i}]: fast {x} vs reference {y}");
            }
        }
        assert_eq!(l1[2], 0.0);
        assert!(dh1[2 * c..3 * c].iter().all(|&x| x == 0.0), "an ignored row has no gradient");
        // Without gradients the losses are the same.
        let mut l3 = vec![0.0; t];
        head_cross_entropy(&h, &w, &targets, &mut l3, None, 1);
        assert_eq!(l1, l3);
    }

    #[test]
    fn uniform_logits_cost_log_v() {
        let (c, v) = (3, 8);
        let mut losses = vec![0.0; 2];
        head_cross_entropy(&[0.0; 6], &vec![1.0; v * c], &[3, 7], &mut losses, None, 1);
        for l in losses {
            assert!((l - (v as f32).ln()).abs() < 1e-6, "{l}");
        }
    }
}
