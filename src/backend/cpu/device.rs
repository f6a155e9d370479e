//! [`Cpu`]: the [`Backend`] of host memory, each op one of this folder's fast paths, run on a
//! persistent rayon pool of the chosen size.

use rayon::prelude::*;

use super::{adamw, attention_packed, cross_entropy, matmul, rmsnorm, rope, swiglu};
use crate::backend::{AdamW, AttnShape, Backend, Rope};

/// The CPU backend.
pub struct Cpu {
    threads: usize,
    pool: rayon::ThreadPool,
    /// Buffers handed back by [`Backend::recycle`], for [`Backend::zeros`] to reuse.
    free: std::sync::Mutex<Vec<Vec<f32>>>,
}

/// Buffers smaller than this are not kept (the allocator serves them well).
const KEEP_MIN: usize = 1 << 14;
/// At most this many buffers are kept; past it a larger buffer replaces the smallest. A
/// training step keeps ~10 activations per layer until its backward pass, so 256 (the first
/// bound) dropped a third of them at 30 layers and the next step paid page faults for fresh ones.
const KEEP_MAX: usize = 1024;

impl Cpu {
    /// A backend on `threads` threads (at least 1).
    pub fn new(threads: usize) -> Result<Cpu, rayon::ThreadPoolBuildError> {
        let threads = threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).thread_name(|i| format!("labflow-cpu-{i}")).build()?;
        Ok(Cpu { threads, pool, free: std::sync::Mutex::new(Vec::new()) })
    }

    /// Its thread count.
    pub fn threads(&self) -> usize {
        self.threads
    }
}

impl Backend for Cpu {
    type Buf = Vec<f32>;

    fn name(&self) -> String {
        format!("cpu ({} threads)", self.threads)
    }

    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }

    fn zeros(&self, n: usize) -> Vec<f32> {
        if n >= KEEP_MIN {
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            // The smallest kept buffer that holds n.
            let best = free.iter().enumerate().filter(|(_, b)| b.capacity() >= n).min_by_key(|(_, b)| b.capacity()).map(|(i, _)| i);
            if let Some(i) = best {
                let mut b = free.swap_remove(i);
                drop(free);
                b.clear();
                b.resize(n, 0.0);
                return b;
            }
        }
        vec![0.0; n]
    }

    fn recycle(&self, buf: Vec<f32>) {
        if buf.capacity() >= KEEP_MIN {
            let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
            if free.len() < KEEP_MAX {
                free.push(buf);
            } else if let Some(smallest) = free.iter_mut().filter(|b| b.capacity() < buf.capacity()).min_by_key(|b| b.capacity()) {
                *smallest = buf;
            }
        }
    }

    fn upload(&self, data: &[f32]) -> Vec<f32> {
        data.to_vec()
    }

    fn download(&self, buf: &Vec<f32>) -> Vec<f32> {
        buf.clone()
    }

    fn len(&self, buf: &Vec<f32>) -> usize {
        buf.len()
    }

    fn zero(&self, buf: &mut Vec<f32>) {
        buf.par_iter_mut().for_each(|x| *x = 0.0);
    }

    fn copy(&self, src: &Vec<f32>, dst: &mut Vec<f32>) {
        dst.copy_from_slice(src);
    }

    fn add_assign(&self, dst: &mut Vec<f32>, src: &Vec<f32>) {
        assert_eq!(dst.len(), src.len(), "invariant: added buffers have one shape");
        dst.par_iter_mut().zip(src.par_iter()).for_each(|(a, &b)| *a += b);
    }

    fn embed(&self, table: &Vec<f32>, tokens: &[u32], out: &mut Vec<f32>) {
        let c = out.len() / tokens.len().max(1);
        for (row, &t) in out.chunks_exact_mut(c).zip(tokens) {
            row.copy_from_slice(&table[t as usize * c..][..c]);
        }
    }

    fn embed_backward(&self, dout: &Vec<f32>, tokens: &[u32], dtable: &mut Vec<f32>) {
        let c = dout.len() / tokens.len().max(1);
        for (row, &t) in dout.chunks_exact(c).zip(tokens) {
            dtable[t as usize * c..][..c].iter_mut().zip(row).for_each(|(a, &b)| *a += b);
        }
    }

    fn matmul_wt(&self, x: &Vec<f32>, w: &Vec<f32>, y: &mut Vec<f32>, k: usize) {
        matmul::matmul_wt_threads(x, w, y, k, self.threads);
    }

    fn matmul_nn(&self, dy: &Vec<f32>, w: &Vec<f32>, dx: &mut Vec<f32>, n: usize, accumulate: bool) {
        matmul::matmul_nn(dy, w, dx, n, accumulate, self.threads);
    }

    fn matmul_tn_acc(&self, dy: &Vec<f32>, x: &Vec<f32>, dw: &mut Vec<f32>, k: usize) {
        matmul::matmul_tn_acc(dy, x, dw, k, self.threads);
    }

    fn add_rows(&self, x: &mut Vec<f32>, b: &Vec<f32>) {
        for row in x.chunks_exact_mut(b.len()) {
            row.iter_mut().zip(b).for_each(|(a, &v)| *a += v);
        }
    }

    fn sum_rows_acc(&self, dy: &Vec<f32>, db: &mut Vec<f32>) {
        let n = db.len();
        for row in dy.chunks_exact(n) {
            db.iter_mut().zip(row).for_each(|(a, &v)| *a += v);
        }
    }

    fn rmsnorm(&self, x: &Vec<f32>, w: &Vec<f32>, eps: f32, y: &mut Vec<f32>, rstd: &mut Vec<f32>) {
        rmsnorm::rmsnorm_forward(x, w, eps, y, rstd);
    }

    fn rmsnorm_backward(&self, x: &Vec<f32>, w: &Vec<f32>, rstd: &Vec<f32>, dy: &Vec<f32>, dx: &mut Vec<f32>, dw: &mut Vec<f32>) {
        rmsnorm::rmsnorm_backward(x, w, rstd, dy, dx, dw);
    }

    fn rope(&self, x: &mut Vec<f32>, heads: usize, seq_lens: &[usize], r: Rope, inverse: bool) {
        rope::rope_packed(x, heads, r.head_dim, r.n_rot, seq_lens, r.base, r.style, inverse);
    }

    fn attention(&self, q: &Vec<f32>, k: &Vec<f32>, v: &Vec<f32>, seq_lens: &[usize], shape: AttnShape, o: &mut Vec<f32>, lse: &mut Vec<f32>) {
        attention_packed::forward(q, k, v, seq_lens, shape, o, lse);
    }

    fn attention_backward(
        &self,
        [q, k, v, o, lse]: [&Vec<f32>; 5],
        dout: &Vec<f32>,
        seq_lens: &[usize],
        shape: AttnShape,
        dq: &mut Vec<f32>,
        dk: &mut Vec<f32>,
        dv: &mut Vec<f32>,
    ) {
        attention_packed::backward(q, k, v, o, lse, dout, seq_lens, shape, dq, dk, dv);
    }

    fn swiglu(&self, gate: &Vec<f32>, up: &Vec<f32>, h: &mut Vec<f32>) {
        swiglu::swiglu_forward(gate, up, h);
    }

    fn swiglu_backward(&self, gate: &Vec<f32>, up: &Vec<f32>, dh: &Vec<f32>, dgate: &mut Vec<f32>, dup: &mut Vec<f32>) {
        swiglu::swiglu_backward(gate, up, dh, dgate, dup);
    }

    fn head_cross_entropy(&self, h: &Vec<f32>, w: &Vec<f32>, targets: &[u32], grads: Option<(&mut Vec<f32>, &mut Vec<f32>, f32)>) -> Vec<f32> {
        let mut losses = vec![0.0; targets.len()];
        let grads = grads.map(|(dh, dw, scale)| cross_entropy::CeGrads { dh, dw, scale });
        cross_entropy::head_cross_entropy(h, w, targets, &mut losses, grads, self.threads);
        losses
    }

    fn sum_squares(&self, x: &Vec<f32>) -> f64 {
        adamw::sum_squares(x)
    }

    fn adamw(&self, p: &mut Vec<f32>, g: &Vec<f32>, m: &mut Vec<f32>, v: &mut Vec<f32>, h: AdamW, step: u64, grad_scale: f32) {
        adamw::adamw(p, g, m, v, h, step, grad_scale);
    }
}
