//! The batched decode step behind [`Model::forward_batch`]: one new token for each of `B`
//! sequences, every projection one `[B, ·] × Wᵀ` product that reads the weights once.
//!
//! It runs as a compute team ([`crate::backend::cpu::team`]): each of the model's threads runs
//! [`Model::step_member`] and takes its share of every phase — a band of each product's weight
//! rows, some (sequence, head) pairs of rope and attention — meeting the others at a spinning
//! barrier between phases. Cheap row-wise work (RMSNorm, activation quantisation, SwiGLU) is done
//! by every member on the whole batch rather than shared, which costs less than a barrier would.
//! Each output is computed by the same code whichever member computes it, so the logits do not
//! depend on the thread count, nor on what a sequence is batched with.
//!
//! Phases of block `l` (`|` is a barrier):
//! 1. `n = rmsnorm(x)`, quantised; `qkv = n · Wqkvᵀ` (bands) |
//! 2. per (sequence, kv head): biases, rope of the query heads of the group and of the key head,
//!    the key and value written into the sequence's cache |
//! 3. per (sequence, query head): attention over the cache, into `att` |
//! 4. `x += att · Woᵀ` (bands) |
//! 5. `n = rmsnorm(x)`, quantised; `gate_up = n · [Wgate; Wup]ᵀ` (bands) |
//! 6. `h = silu(gate) ⊙ up`, quantised; `x += h · Wdownᵀ` (bands) |
//!
//! and after the last block, `logits = rmsnorm(x) · Wheadᵀ` (bands).

use super::{KvCache, Model, Precision, QBlock};
use crate::backend::cpu::attention::{attention_head, AttnShape};
use crate::backend::cpu::matvec;
use crate::backend::cpu::qmatmul::{qmatmul_band, QActs, QMatrix};
use crate::backend::cpu::rmsnorm::rmsnorm;
use crate::backend::cpu::rope::{angles, inv_freq, rotate_token};
use crate::backend::cpu::swiglu::swiglu;
use crate::backend::cpu::team::{run_team, Shared, Team};
use crate::model::ModelError;

/// A weight matrix `[N, K]` a phase multiplies by.
#[derive(Clone, Copy)]
enum Weights<'a> {
    F32 { w: &'a [f32], k: usize },
    Q8(&'a QMatrix),
}

impl Weights<'_> {
    fn rows(&self) -> usize {
        match self {
            Weights::F32 { w, k } => w.len() / k,
            Weights::Q8(m) => m.n,
        }
    }
}

/// A member's copy of a product's input rows: f32, and their Q8 quantisation when the step runs
/// in [`Precision::Q8`].
struct Input {
    x: Vec<f32>,
    k: usize,
    q: Option<QActs>,
}

impl Input {
    fn new(q8: bool) -> Input {
        Input { x: Vec::new(), k: 0, q: q8.then(QActs::default) }
    }

    /// Takes `x: [B, k]` as the next product's input.
    fn set(&mut self, x: &[f32], k: usize) {
        self.x.clear();
        self.x.extend_from_slice(x);
        self.k = k;
        self.quantize();
    }

    /// Quantises `self.x` after an in-place change (a no-op in f32).
    fn quantize(&mut self) {
        if let Some(q) = &mut self.q {
            q.quantize(&self.x, self.k);
        }
    }

    /// `out: [B, |rows|]` = the input times weight rows `rows`.
    fn band(&self, w: Weights, rows: std::ops::Range<usize>, out: &mut [f32]) {
        match (w, &self.q) {
            (Weights::F32 { w, k }, None) => matvec::rows_into(&self.x, w, k, rows, out),
            (Weights::Q8(m), Some(q)) => qmatmul_band(q, m, rows, out),
            _ => unreachable!("invariant: a step's inputs and weights share its precision"),
        }
    }
}

/// Where a product's outputs go: row `b` of the product lands at `dst[b · width + col0 ..]`,
/// overwriting or added to what is there.
struct Dst<'s, 'a> {
    buf: &'s Shared<'a, f32>,
    width: usize,
    col0: usize,
    add: bool,
}

/// One sequence's cache as the members see it: its position and every block's keys and values.
struct SeqCache<'a> {
    pos: usize,
    k: Vec<Shared<'a, f32>>,
    v: Vec<Shared<'a, f32>>,
}

/// What every member reads and writes during one step.
struct StepBuffers<'a> {
    /// `[B, C]`: the residual stream.
    x: Shared<'a, f32>,
    /// `[B, H·D + 2·Hkv·D]`.
    qkv: Shared<'a, f32>,
    /// `[B, H·D]`.
    att: Shared<'a, f32>,
    /// `[B, 2·F]`.
    gate_up: Shared<'a, f32>,
    /// `[B, V]`.
    logits: Shared<'a, f32>,
    caches: Vec<SeqCache<'a>>,
    /// `(cos, sin)` per rope pair for each sequence's position.
    rope: Vec<Vec<(f32, f32)>>,
}

impl Model {
    /// [`Model::forward_batch`]: validates the step, gives every cache room for its new position,
    /// and runs the team.
    pub(super) fn step_batch(&self, steps: &mut [(u32, &mut KvCache)], precision: Precision) -> Result<Vec<Vec<f32>>, ModelError> {
        let cfg = &self.config;
        let (c, kv, q_dim, f, v, bsz) = (cfg.hidden, cfg.kv_dim(), cfg.n_heads * cfg.head_dim, cfg.ffn, cfg.vocab_size, steps.len());
        if bsz == 0 {
            return Ok(Vec::new());
        }
        let q8 = match precision {
            Precision::F32 => None,
            Precision::Q8 => Some(self.q8.as_ref().ok_or_else(|| ModelError::Input("Q8 weights not built (quantize_q8)".into()))?),
        };
        // x: [B, C]
        let mut x = Vec::with_capacity(bsz * c);
        for (tok, cache) in steps.iter() {
            if cache.len + 1 > cache.capacity {
                return Err(ModelError::Input(format!("{} positions exceed the KV cache's capacity {}", cache.len + 1, cache.capacity)));
            }
            if cache.k.len() != cfg.n_layers {
                return Err(ModelError::Input(format!("KV cache has {} blocks, the model {}", cache.k.len(), cfg.n_layers)));
            }
            let row = self
                .tok_embd
                .get(*tok as usize * c..(*tok as usize + 1) * c)
                .ok_or_else(|| ModelError::Input(format!("token id {tok} outside the vocabulary of {}", cfg.vocab_size)))?;
            x.extend_from_slice(row);
        }
        let freq = inv_freq(cfg.rope_dims, cfg.rope_base);
        let rope = steps.iter().map(|(_, cache)| angles(&freq, cache.len, 1.0)).collect();
        let (mut qkv, mut att, mut gate_up, mut logits) =
            (vec![0f32; bsz * (q_dim + 2 * kv)], vec![0f32; bsz * q_dim], vec![0f32; bsz * 2 * f], vec![0f32; bsz * v]);
        {
            let caches = steps
                .iter_mut()
                .map(|(_, cache)| {
                    let pos = cache.len;
                    SeqCache {
                        pos,
                        k: cache.k.iter_mut().map(|rows| room(rows, (pos + 1) * kv)).collect(),
                        v: cache.v.iter_mut().map(|rows| room(rows, (pos + 1) * kv)).collect(),
                    }
                })
                .collect();
            let bufs = StepBuffers {
                x: Shared::new(&mut x),
                qkv: Shared::new(&mut qkv),
                att: Shared::new(&mut att),
                gate_up: Shared::new(&mut gate_up),
                logits: Shared::new(&mut logits),
                caches,
                rope,
            };
            run_team(self.pool.as_ref(), |team| self.step_member(team, &bufs, q8.map(|w| (&w.blocks[..], &w.lm_head))));
        }
        for (_, cache) in steps.iter_mut() {
            cache.len += 1;
        }
        Ok(logits.chunks_exact(v).map(<[f32]>::to_vec).collect())
    }

    /// One member's part of the step (module docs). `q8`: the Q8 blocks and LM head, or `None`
    /// for the f32 weights.
    fn step_member(&self, team: &Team, bufs: &StepBuffers, q8: Option<(&[QBlock], &QMatrix)>) {
        let cfg = &self.config;
        let (c, kv, d, f) = (cfg.hidden, cfg.kv_dim(), cfg.head_dim, cfg.ffn);
        let (n_heads, n_kv) = (cfg.n_heads, cfg.n_kv_heads);
        let (q_dim, group, bsz) = (n_heads * d, n_heads / n_kv, bufs.caches.len());
        let qkv_w = q_dim + 2 * kv;
        let shape = AttnShape { n_heads, n_kv_heads: n_kv, head_dim: d };
        let mut input = Input::new(q8.is_some());
        let mut scratch = Vec::new();
        let mut scores = Vec::new();
        let f32w = |w, k| Weights::F32 { w, k };
        for (l, b) in self.blocks.iter().enumerate() {
            let qb = q8.map(|(blocks, _)| &blocks[l]);
            // 1. qkv = rmsnorm(x) · Wqkvᵀ.
            // SAFETY (every `whole`/`part` below): phases are separated by `sync`, and within a
            // phase each part is this member's share of rows, heads or (sequence, head) pairs,
            // disjoint from every other member's; a buffer read whole is written by no one.
            input.set(unsafe { bufs.x.whole() }, c);
            rmsnorm(&mut input.x, &b.attn_norm, cfg.rms_eps);
            input.quantize();
            let qkv = |col0| Dst { buf: &bufs.qkv, width: qkv_w, col0, add: false };
            match qb {
                Some(qb) => self.share(team, &input, Weights::Q8(&qb.wqkv), qkv(0), &mut scratch),
                None => {
                    self.share(team, &input, f32w(&b.wq, c), qkv(0), &mut scratch);
                    self.share(team, &input, f32w(&b.wk, c), qkv(q_dim), &mut scratch);
                    self.share(team, &input, f32w(&b.wv, c), qkv(q_dim + kv), &mut scratch);
                }
            }
            team.sync();
            // 2. Biases, rope, and the new key and value into each cache, per (sequence, kv head).
            for item in team.share(bsz * n_kv) {
                let (s, g) = (item / n_kv, item % n_kv);
                let row = s * qkv_w;
                let heads = |start: usize, len: usize| unsafe { bufs.qkv.part(row + start..row + start + len) };
                let (q, k, v) = (heads(g * group * d, group * d), heads(q_dim + g * d, d), heads(q_dim + kv + g * d, d));
                if let Some([bq, bk, bv]) = &b.bias {
                    add(q, &bq[g * group * d..][..group * d]);
                    add(k, &bk[g * d..][..d]);
                    add(v, &bv[g * d..][..d]);
                }
                rotate_token(q, d, &bufs.rope[s], cfg.rope_style);
                rotate_token(k, d, &bufs.rope[s], cfg.rope_style);
                let cache = &bufs.caches[s];
                let at = cache.pos * kv + g * d;
                unsafe { cache.k[l].part(at..at + d) }.copy_from_slice(k);
                unsafe { cache.v[l].part(at..at + d) }.copy_from_slice(v);
            }
            team.sync();
            // 3. Attention, per (sequence, query head).
            let qkv_all = unsafe { bufs.qkv.whole() };
            for item in team.share(bsz * n_heads) {
                let (s, h) = (item / n_heads, item % n_heads);
                let cache = &bufs.caches[s];
                let (keys, values) = unsafe { (cache.k[l].whole(), cache.v[l].whole()) };
                let out = unsafe { bufs.att.part(s * q_dim + h * d..s * q_dim + (h + 1) * d) };
                attention_head(&qkv_all[s * qkv_w + h * d..][..d], keys, values, cache.pos, h / group, shape, &mut scores, out);
            }
            team.sync();
            // 4. x += att · Woᵀ.
            input.set(unsafe { bufs.att.whole() }, q_dim);
            let residual = Dst { buf: &bufs.x, width: c, col0: 0, add: true };
            let wo = qb.map_or(f32w(&b.wo, q_dim), |qb| Weights::Q8(&qb.wo));
            self.share(team, &input, wo, residual, &mut scratch);
            team.sync();
            // 5. gate_up = rmsnorm(x) · [Wgate; Wup]ᵀ.
            input.set(unsafe { bufs.x.whole() }, c);
            rmsnorm(&mut input.x, &b.ffn_norm, cfg.rms_eps);
            input.quantize();
            let gate_up = |col0| Dst { buf: &bufs.gate_up, width: 2 * f, col0, add: false };
            match qb {
                Some(qb) => self.share(team, &input, Weights::Q8(&qb.w_gate_up), gate_up(0), &mut scratch),
                None => {
                    self.share(team, &input, f32w(&b.w_gate, c), gate_up(0), &mut scratch);
                    self.share(team, &input, f32w(&b.w_up, c), gate_up(f), &mut scratch);
                }
            }
            team.sync();
            // 6. x += (silu(gate) ⊙ up) · Wdownᵀ.
            let gu = unsafe { bufs.gate_up.whole() };
            input.x.clear();
            input.k = f;
            for row in gu.chunks_exact(2 * f) {
                let start = input.x.len();
                input.x.extend_from_slice(&row[..f]);
                swiglu(&mut input.x[start..], &row[f..]);
            }
            input.quantize();
            let residual = Dst { buf: &bufs.x, width: c, col0: 0, add: true };
            let down = qb.map_or(f32w(&b.w_down, f), |qb| Weights::Q8(&qb.w_down));
            self.share(team, &input, down, residual, &mut scratch);
            team.sync();
        }
        input.set(unsafe { bufs.x.whole() }, c);
        rmsnorm(&mut input.x, &self.out_norm, cfg.rms_eps);
        input.quantize();
        let head = match q8 {
            Some((_, lm_head)) => Weights::Q8(lm_head),
            None => f32w(self.lm_head.as_deref().unwrap_or(&self.tok_embd), c),
        };
        self.share(team, &input, head, Dst { buf: &bufs.logits, width: cfg.vocab_size, col0: 0, add: false }, &mut scratch);
    }

    /// This member's band of `input · wᵀ`, into `dst` (`scratch` holds the band's `[B, rows]`).
    fn share(&self, team: &Team, input: &Input, w: Weights, dst: Dst, scratch: &mut Vec<f32>) {
        let rows = team.share(w.rows());
        if rows.is_empty() {
            return;
        }
        let (bsz, width) = (input.x.len() / input.k, rows.len());
        scratch.clear();
        scratch.resize(bsz * width, 0.0);
        input.band(w, rows.clone(), scratch);
        for (b, band) in scratch.chunks_exact(width).enumerate() {
            let at = b * dst.width + dst.col0 + rows.start;
            // SAFETY: columns `rows` of this phase's destination are this member's alone.
            let out = unsafe { dst.buf.part(at..at + width) };
            match dst.add {
                true => out.iter_mut().zip(band).for_each(|(o, v)| *o += v),
                false => out.copy_from_slice(band),
            }
        }
    }
}

/// A block's cached rows grown to `len` values (the new position zeroed), shared for the step.
fn room(rows: &mut Vec<f32>, len: usize) -> Shared<'_, f32> {
    rows.resize(len, 0.0);
    Shared::new(rows.as_mut_slice())
}

fn add(x: &mut [f32], b: &[f32]) {
    x.iter_mut().zip(b).for_each(|(a, &c)| *a += c);
}
