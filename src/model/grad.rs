//! The trainer's pass through the Llama-family decoder: forward over packed sequences with the
//! activations the backward pass needs, then the backward pass into one gradient per weight.
//! The same block as [`super::llama`] (one model implementation): `x += Wo·attn(rope(Wq·n),
//! rope(Wk·n), Wv·n)`, `x += Wdown·(silu(Wgate·n) ⊙ Wup·n)`, final RMSNorm, head, cross-entropy;
//! a test checks its losses against [`Model::forward_all`]'s logits, another every gradient
//! against finite differences.
//!
//! Sequences are packed end to end into one row ([`Packed`]): positions restart at 0 in each and
//! attention never crosses a boundary, so a packed row computes exactly what each sequence would
//! alone. Weights live on a [`Backend`] in [`hf_layout`]'s order (Hugging Face's layout and
//! half-split rope). Kept per block: the block input, the Q/K/V after rope, the attention output
//! and its log-sum-exp, the mid-block residual, the two norms' reciprocal RMS, gate and up
//! (the normalised inputs and the SwiGLU product are recomputed in the backward pass).

use crate::backend::{AttnShape, Backend, Rope};

use super::{hf_layout, Arch, Config, Model, ModelError, RopeStyle};

pub use crate::backend::cpu::cross_entropy::IGNORE;

/// Sequences laid end to end: the tokens, for each row the token it is trained to predict (or
/// [`IGNORE`]), and the sequence lengths.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Packed {
    /// `[T]` token ids.
    pub tokens: Vec<u32>,
    /// `[T]`: row `t` predicts `targets[t]`; the last row of each sequence predicts nothing.
    pub targets: Vec<u32>,
    /// Lengths of the sequences, summing to `T`.
    pub seq_lens: Vec<usize>,
}

impl Packed {
    /// Appends a sequence whose token `i` is a trained target when `train[i]` (the first token
    /// never is: nothing precedes it).
    pub fn push(&mut self, tokens: &[u32], train: &[bool]) {
        assert_eq!(tokens.len(), train.len(), "invariant: one train flag per token");
        if tokens.is_empty() {
            return;
        }
        self.tokens.extend_from_slice(tokens);
        self.targets.extend((1..tokens.len()).map(|i| if train[i] { tokens[i] } else { IGNORE }));
        self.targets.push(IGNORE);
        self.seq_lens.push(tokens.len());
    }

    /// Rows `T`.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Trained targets.
    pub fn n_targets(&self) -> usize {
        self.targets.iter().filter(|&&t| t != IGNORE).count()
    }
}

/// Indices of one block's weights in the layout.
struct BlockIx {
    attn_norm: usize,
    wq: usize,
    wk: usize,
    wv: usize,
    bias: Option<[usize; 3]>,
    wo: usize,
    ffn_norm: usize,
    gate: usize,
    up: usize,
    down: usize,
}

/// A model being trained: its configuration and weights on a backend, in [`hf_layout`]'s order.
pub struct Trainable<B: Backend> {
    config: Config,
    tied: bool,
    /// One buffer per tensor of [`Trainable::layout`].
    pub weights: Vec<B::Buf>,
}

/// What the backward pass of one block reads.
struct Saved<B: Backend> {
    x_in: B::Buf,
    rstd1: B::Buf,
    q: B::Buf,
    k: B::Buf,
    v: B::Buf,
    o: B::Buf,
    lse: B::Buf,
    x_mid: B::Buf,
    rstd2: B::Buf,
    gate: B::Buf,
    up: B::Buf,
}

impl<B: Backend> Saved<B> {
    /// Hands every buffer back to the backend.
    fn recycle(self, b: &B) {
        let Saved { x_in, rstd1, q, k, v, o, lse, x_mid, rstd2, gate, up } = self;
        for buf in [x_in, rstd1, q, k, v, o, lse, x_mid, rstd2, gate, up] {
            b.recycle(buf);
        }
    }
}

impl<B: Backend> Trainable<B> {
    /// The model's weights, uploaded in Hugging Face layout (a GGUF llama file's Q/K rows are
    /// un-permuted, [`Model::to_hf_tensors`]).
    pub fn from_model(backend: &B, model: &Model) -> Result<Trainable<B>, ModelError> {
        let (config, tensors) = model.to_hf_tensors()?;
        Ok(Trainable { config, tied: model.is_tied(), weights: tensors.iter().map(|t| backend.upload(t)).collect() })
    }

    /// Weights given in [`hf_layout`]'s order (checked against it).
    pub fn from_tensors(backend: &B, config: Config, tied: bool, tensors: &[Vec<f32>]) -> Result<Trainable<B>, ModelError> {
        if config.rope_style != RopeStyle::HalfSplit {
            return Err(ModelError::Input("the trainer takes weights in Hugging Face layout (half-split rope)".into()));
        }
        let layout = hf_layout(&config, tied);
        if layout.len() != tensors.len() {
            return Err(ModelError::Input(format!("{} tensors given, the layout has {}", tensors.len(), layout.len())));
        }
        for ((name, shape), t) in layout.iter().zip(tensors) {
            if t.len() != shape.iter().product::<usize>() {
                return Err(ModelError::Input(format!("tensor {name:?} has {} values, its shape {shape:?} needs more or fewer", t.len())));
            }
        }
        Ok(Trainable { config, tied, weights: tensors.iter().map(|t| backend.upload(t)).collect() })
    }

    /// Its configuration (rope half-split).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether the head is the token embedding.
    pub fn tied(&self) -> bool {
        self.tied
    }

    /// Names and shapes of [`Trainable::weights`].
    pub fn layout(&self) -> Vec<(String, Vec<usize>)> {
        hf_layout(&self.config, self.tied)
    }

    /// Zero buffers shaped like the weights (gradients, optimizer moments).
    pub fn zeros_like(&self, backend: &B) -> Vec<B::Buf> {
        self.weights.iter().map(|w| backend.zeros(backend.len(w))).collect()
    }

    /// The weights as an inference [`Model`] (for sampling and evaluation).
    pub fn to_model(&self, backend: &B) -> Result<Model, ModelError> {
        let mut tensors = self.weights.iter().map(|w| backend.download(w));
        Model::from_hf_tensors(self.config.clone(), self.tied, |_, _| Ok(tensors.next().expect("invariant: one buffer per layout entry")))
    }

    fn block_ix(&self, l: usize) -> BlockIx {
        let bias = self.config.arch == Arch::Qwen2;
        let per = if bias { 12 } else { 9 };
        let b = 1 + l * per;
        let o = if bias { 3 } else { 0 };
        BlockIx {
            attn_norm: b,
            wq: b + 1,
            wk: b + 2,
            wv: b + 3,
            bias: bias.then_some([b + 4, b + 5, b + 6]),
            wo: b + 4 + o,
            ffn_norm: b + 5 + o,
            gate: b + 6 + o,
            up: b + 7 + o,
            down: b + 8 + o,
        }
    }

    fn norm_ix(&self) -> usize {
        1 + self.config.n_layers * if self.config.arch == Arch::Qwen2 { 12 } else { 9 }
    }

    fn head_ix(&self) -> usize {
        if self.tied {
            0
        } else {
            self.norm_ix() + 1
        }
    }

    /// Per-row losses of `batch` (0 for rows without a target); no gradients.
    pub fn losses(&self, backend: &B, batch: &Packed) -> Result<Vec<f32>, ModelError> {
        self.check(batch)?;
        Ok(backend.run(|| self.pass(backend, batch, None)))
    }

    /// Per-row losses of `batch`, and the gradients of `scale · Σ losses` added to `grads` (one
    /// buffer per weight, as [`Trainable::zeros_like`] makes).
    pub fn forward_backward(&self, backend: &B, batch: &Packed, scale: f32, grads: &mut [B::Buf]) -> Result<Vec<f32>, ModelError> {
        self.check(batch)?;
        if grads.len() != self.weights.len() {
            return Err(ModelError::Input(format!("{} gradient buffers for {} weights", grads.len(), self.weights.len())));
        }
        Ok(backend.run(|| self.pass(backend, batch, Some((grads, scale)))))
    }

    fn check(&self, batch: &Packed) -> Result<(), ModelError> {
        let v = self.config.vocab_size;
        if batch.is_empty() {
            return Err(ModelError::Input("an empty batch".into()));
        }
        if batch.targets.len() != batch.tokens.len() || batch.seq_lens.iter().sum::<usize>() != batch.tokens.len() {
            return Err(ModelError::Input("a packed batch whose targets or sequence lengths do not match its tokens".into()));
        }
        if let Some(bad) = batch.tokens.iter().chain(batch.targets.iter().filter(|&&t| t != IGNORE)).find(|&&t| t as usize >= v) {
            return Err(ModelError::Input(format!("token id {bad} outside the vocabulary of {v}")));
        }
        Ok(())
    }

    fn pass(&self, b: &B, batch: &Packed, mut grads: Option<(&mut [B::Buf], f32)>) -> Vec<f32> {
        let cfg = &self.config;
        let (t, c, f) = (batch.len(), cfg.hidden, cfg.ffn);
        let (qd, kvd) = (cfg.n_heads * cfg.head_dim, cfg.kv_dim());
        let shape = AttnShape { n_heads: cfg.n_heads, n_kv_heads: cfg.n_kv_heads, head_dim: cfg.head_dim };
        let rope = Rope { head_dim: cfg.head_dim, n_rot: cfg.rope_dims, base: cfg.rope_base, style: cfg.rope_style };
        let (lens, eps, w) = (&batch.seq_lens[..], cfg.rms_eps, &self.weights);
        let training = grads.is_some();

        let mut x = b.zeros(t * c);
        b.embed(&w[0], &batch.tokens, &mut x);
        let mut saved: Vec<Saved<B>> = Vec::with_capacity(if training { cfg.n_layers } else { 0 });
        for l in 0..cfg.n_layers {
            let ix = self.block_ix(l);
            let (mut n, mut rstd1) = (b.zeros(t * c), b.zeros(t));
            b.rmsnorm(&x, &w[ix.attn_norm], eps, &mut n, &mut rstd1);
            let (mut q, mut k, mut v) = (b.zeros(t * qd), b.zeros(t * kvd), b.zeros(t * kvd));
            b.matmul_wt(&n, &w[ix.wq], &mut q, c);
            b.matmul_wt(&n, &w[ix.wk], &mut k, c);
            b.matmul_wt(&n, &w[ix.wv], &mut v, c);
            if let Some([bq, bk, bv]) = ix.bias {
                b.add_rows(&mut q, &w[bq]);
                b.add_rows(&mut k, &w[bk]);
                b.add_rows(&mut v, &w[bv]);
            }
            b.rope(&mut q, cfg.n_heads, lens, rope, false);
            b.rope(&mut k, cfg.n_kv_heads, lens, rope, false);
            let (mut o, mut lse) = (b.zeros(t * qd), b.zeros(t * cfg.n_heads));
            b.attention(&q, &k, &v, lens, shape, &mut o, &mut lse);
            let mut x_mid = b.zeros(t * c);
            b.matmul_wt(&o, &w[ix.wo], &mut x_mid, qd);
            b.add_assign(&mut x_mid, &x);

            let mut rstd2 = b.zeros(t);
            b.rmsnorm(&x_mid, &w[ix.ffn_norm], eps, &mut n, &mut rstd2);
            let (mut gate, mut up, mut h) = (b.zeros(t * f), b.zeros(t * f), b.zeros(t * f));
            b.matmul_wt(&n, &w[ix.gate], &mut gate, c);
            b.matmul_wt(&n, &w[ix.up], &mut up, c);
            b.swiglu(&gate, &up, &mut h);
            let mut x_out = b.zeros(t * c);
            b.matmul_wt(&h, &w[ix.down], &mut x_out, f);
            b.add_assign(&mut x_out, &x_mid);
            let x_in = std::mem::replace(&mut x, x_out);
            for buf in [n, h] {
                b.recycle(buf);
            }
            let s = Saved { x_in, rstd1, q, k, v, o, lse, x_mid, rstd2, gate, up };
            if training {
                saved.push(s);
            } else {
                s.recycle(b);
            }
        }
        let (mut xf, mut rstdf) = (b.zeros(t * c), b.zeros(t));
        b.rmsnorm(&x, &w[self.norm_ix()], eps, &mut xf, &mut rstdf);
        let head = &w[self.head_ix()];
        let Some((g, scale)) = grads.as_mut() else {
            let losses = b.head_cross_entropy(&xf, head, &batch.targets, None);
            for buf in [xf, rstdf, x] {
                b.recycle(buf);
            }
            return losses;
        };

        let mut dxf = b.zeros(t * c);
        let losses = b.head_cross_entropy(&xf, head, &batch.targets, Some((&mut dxf, &mut g[self.head_ix()], *scale)));
        let mut dx = b.zeros(t * c);
        b.rmsnorm_backward(&x, &w[self.norm_ix()], &rstdf, &dxf, &mut dx, &mut g[self.norm_ix()]);
        for buf in [xf, dxf, x, rstdf] {
            b.recycle(buf);
        }
        let (mut n, mut scratch) = (b.zeros(t * c), b.zeros(t));
        let (mut h, mut dh, mut dgate, mut dup) = (b.zeros(t * f), b.zeros(t * f), b.zeros(t * f), b.zeros(t * f));
        let (mut dout, mut dq, mut dk, mut dv) = (b.zeros(t * qd), b.zeros(t * qd), b.zeros(t * kvd), b.zeros(t * kvd));
        for l in (0..cfg.n_layers).rev() {
            let ix = self.block_ix(l);
            let s = saved.pop().expect("invariant: one saved state per block");
            // Feed-forward half: x_out = x_mid + Wdown·(silu(Wgate·n) ⊙ Wup·n), n = rmsnorm(x_mid).
            b.rmsnorm(&s.x_mid, &w[ix.ffn_norm], eps, &mut n, &mut scratch);
            b.swiglu(&s.gate, &s.up, &mut h);
            b.matmul_nn(&dx, &w[ix.down], &mut dh, c, false);
            b.matmul_tn_acc(&dx, &h, &mut g[ix.down], f);
            b.swiglu_backward(&s.gate, &s.up, &dh, &mut dgate, &mut dup);
            let mut dn = b.zeros(t * c);
            b.matmul_nn(&dgate, &w[ix.gate], &mut dn, f, false);
            b.matmul_nn(&dup, &w[ix.up], &mut dn, f, true);
            b.matmul_tn_acc(&dgate, &n, &mut g[ix.gate], c);
            b.matmul_tn_acc(&dup, &n, &mut g[ix.up], c);
            // dx becomes ∂L/∂x_mid: the residual path plus the norm's.
            b.rmsnorm_backward(&s.x_mid, &w[ix.ffn_norm], &s.rstd2, &dn, &mut dx, &mut g[ix.ffn_norm]);

            // Attention half: x_mid = x_in + Wo·attn(q, k, v).
            b.matmul_nn(&dx, &w[ix.wo], &mut dout, c, false);
            b.matmul_tn_acc(&dx, &s.o, &mut g[ix.wo], qd);
            b.attention_backward([&s.q, &s.k, &s.v, &s.o, &s.lse], &dout, lens, shape, &mut dq, &mut dk, &mut dv);
            b.rope(&mut dq, cfg.n_heads, lens, rope, true);
            b.rope(&mut dk, cfg.n_kv_heads, lens, rope, true);
            if let Some([bq, bk, bv]) = ix.bias {
                b.sum_rows_acc(&dq, &mut g[bq]);
                b.sum_rows_acc(&dk, &mut g[bk]);
                b.sum_rows_acc(&dv, &mut g[bv]);
            }
            b.rmsnorm(&s.x_in, &w[ix.attn_norm], eps, &mut n, &mut scratch);
            b.matmul_nn(&dq, &w[ix.wq], &mut dn, qd, false);
            b.matmul_nn(&dk, &w[ix.wk], &mut dn, kvd, true);
            b.matmul_nn(&dv, &w[ix.wv], &mut dn, kvd, true);
            b.matmul_tn_acc(&dq, &n, &mut g[ix.wq], c);
            b.matmul_tn_acc(&dk, &n, &mut g[ix.wk], c);
            b.matmul_tn_acc(&dv, &n, &mut g[ix.wv], c);
            // dx becomes ∂L/∂x_in.
            b.rmsnorm_backward(&s.x_in, &w[ix.attn_norm], &s.rstd1, &dn, &mut dx, &mut g[ix.attn_norm]);
            b.recycle(dn);
            s.recycle(b);
        }
        b.embed_backward(&dx, &batch.tokens, &mut g[0]);
        for buf in [dx, n, scratch, h, dh, dgate, dup, dout, dq, dk, dv] {
            b.recycle(buf);
        }
        losses
    }
}

#[cfg(test)]
#[path = "grad_tests.rs"]
mod tests;
