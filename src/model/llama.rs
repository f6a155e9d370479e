//! The Llama-family decoder (architectures `llama` and `qwen2`): configuration from GGUF
//! metadata or a Hugging Face `config.json`, weights converted to f32 at load (dequantised from a
//! GGUF file, or widened from a safetensors folder's F32/F16/BF16), and the forward pass with a
//! KV cache. Both sources build the same [`Model`]; they differ only in tensor names and in the
//! rope pairing of the Q/K rows ([`RopeStyle`]: GGUF `llama` converters permute them).
//!
//! Block `l`: `x += Wo · attn(rope(Wq·n), rope(Wk·n), Wv·n)` with `n = rmsnorm(x)`, then
//! `x += Wdown · (silu(Wgate·n) ⊙ Wup·n)` with `n = rmsnorm(x)`; after the last block a final
//! RMSNorm and the LM head (tied to the token embedding when `output.weight` is absent). This is
//! the reference forward: f32 ops from [`crate::backend::cpu`], the matrix products by gemm and
//! the prompt's attention row-parallel in f32 ([`attention_rows`], tested against the
//! f64-accumulating reference `attention`).
//!
//! Beside it, the decode fast path: [`Model::forward_batch`] runs one step for many sequences
//! (each with its own cache and position) so every projection is one `[B, C] × Wᵀ` product that
//! reads the weights once, and with [`Precision::Q8`] those products use Q8_0 copies of the weights
//! ([`Model::quantize_q8`]) with Q8 activations. Both are tested against `forward`.

use std::path::Path;

use crate::backend::cpu::attention::{attention_rows, AttnShape};
use crate::backend::cpu::matmul::matmul_wt_threads;
use crate::backend::cpu::qmatmul::QMatrix;
use crate::backend::cpu::rmsnorm::rmsnorm;
use crate::backend::cpu::rope::rope;
pub use crate::backend::cpu::rope::RopeStyle;

use super::{GgufFile, ModelError, SafetensorsFolder};

mod step;

/// Architectures this module runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// GGUF `llama` (Llama, SmolLM, Mistral without sliding windows, …).
    Llama,
    /// GGUF `qwen2`: Llama with biases on the Q/K/V projections and half-split rope.
    Qwen2,
}

/// Hyper-parameters of a model, resolved and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Architecture.
    pub arch: Arch,
    /// Vocabulary size `V`.
    pub vocab_size: usize,
    /// Hidden size `C`.
    pub hidden: usize,
    /// Number of blocks.
    pub n_layers: usize,
    /// Query heads `H`.
    pub n_heads: usize,
    /// Key/value heads `Hkv`.
    pub n_kv_heads: usize,
    /// Head size `D = C / H`.
    pub head_dim: usize,
    /// Feed-forward size `F`.
    pub ffn: usize,
    /// Rope base frequency.
    pub rope_base: f32,
    /// Rotated dimensions per head.
    pub rope_dims: usize,
    /// Which dimensions rotate together: from the architecture for GGUF files, always
    /// [`RopeStyle::HalfSplit`] for Hugging Face checkpoints.
    pub rope_style: RopeStyle,
    /// RMSNorm epsilon.
    pub rms_eps: f32,
    /// Longest sequence the model was trained for (the KV cache's default capacity).
    pub context_length: usize,
}

impl Config {
    /// Reads the configuration from GGUF metadata (`{arch}.embedding_length` and friends).
    pub fn from_gguf(f: &GgufFile) -> Result<Config, ModelError> {
        let arch_name = f.req_str("general.architecture")?;
        let (arch, rope_style) = match arch_name {
            "llama" => (Arch::Llama, RopeStyle::Interleaved),
            "qwen2" => (Arch::Qwen2, RopeStyle::HalfSplit),
            other => {
                return Err(ModelError::Unsupported {
                    path: f.path().to_path_buf(),
                    message: format!("architecture {other:?}; supported: llama, qwen2"),
                })
            }
        };
        let key = |k: &str| format!("{arch_name}.{k}");
        let hidden = f.req_usize(&key("embedding_length"))?;
        let n_heads = f.req_usize(&key("attention.head_count"))?;
        let n_kv_heads = match f.get(&key("attention.head_count_kv")) {
            None => n_heads,
            Some(_) => f.req_usize(&key("attention.head_count_kv"))?,
        };
        let bad = |message: String| ModelError::Missing { path: f.path().to_path_buf(), message };
        if n_heads == 0 || n_kv_heads == 0 || hidden % n_heads != 0 || n_heads % n_kv_heads != 0 {
            return Err(bad(format!("inconsistent heads: hidden {hidden}, heads {n_heads}, kv heads {n_kv_heads}")));
        }
        let head_dim = hidden / n_heads;
        let rope_dims = match f.get(&key("rope.dimension_count")) {
            None => head_dim,
            Some(_) => f.req_usize(&key("rope.dimension_count"))?,
        };
        if rope_dims > head_dim || rope_dims % 2 != 0 {
            return Err(bad(format!("rope.dimension_count {rope_dims} does not fit head size {head_dim}")));
        }
        let vocab_size = match f.get(&key("vocab_size")) {
            Some(_) => f.req_usize(&key("vocab_size"))?,
            None => f
                .tensor("token_embd.weight")
                .and_then(|t| t.dims.get(1).copied())
                .ok_or_else(|| bad("no vocab_size and no token_embd.weight".into()))?,
        };
        Ok(Config {
            arch,
            vocab_size,
            hidden,
            n_layers: f.req_usize(&key("block_count"))?,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn: f.req_usize(&key("feed_forward_length"))?,
            rope_base: f.opt_f64(&key("rope.freq_base"))?.unwrap_or(10_000.0) as f32,
            rope_dims,
            rope_style,
            rms_eps: f.opt_f64(&key("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-5) as f32,
            context_length: f.req_usize(&key("context_length"))?,
        })
    }

    pub(super) fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

/// One block's weights, f32, each matrix `[out, in]` row-major.
pub(super) struct Block {
    pub(super) attn_norm: Vec<f32>,
    pub(super) wq: Vec<f32>,
    pub(super) wk: Vec<f32>,
    pub(super) wv: Vec<f32>,
    /// Q/K/V biases (qwen2).
    pub(super) bias: Option<[Vec<f32>; 3]>,
    pub(super) wo: Vec<f32>,
    pub(super) ffn_norm: Vec<f32>,
    pub(super) w_gate: Vec<f32>,
    pub(super) w_up: Vec<f32>,
    pub(super) w_down: Vec<f32>,
}

/// One block's projections as Q8_0, the ones sharing an input stacked into one matrix.
struct QBlock {
    /// `[H·D + 2·Hkv·D, C]`: Wq, Wk, Wv.
    wqkv: QMatrix,
    /// `[C, H·D]`.
    wo: QMatrix,
    /// `[2·F, C]`: Wgate, Wup.
    w_gate_up: QMatrix,
    /// `[C, F]`.
    w_down: QMatrix,
}

/// Q8_0 copies of every matrix (the f32 weights stay: they are the reference).
struct QWeights {
    blocks: Vec<QBlock>,
    /// `[V, C]`.
    lm_head: QMatrix,
}

/// Which weights [`Model::forward_batch`] multiplies by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// The f32 weights (`gemm`): the reference arithmetic, batched.
    F32,
    /// Q8_0 weights and Q8 activations (needs [`Model::quantize_q8`]).
    Q8,
}

/// A loaded model.
pub struct Model {
    pub(super) config: Config,
    /// `[V, C]`.
    pub(super) tok_embd: Vec<f32>,
    pub(super) blocks: Vec<Block>,
    pub(super) out_norm: Vec<f32>,
    /// `[V, C]`; `None` when tied to `tok_embd`.
    pub(super) lm_head: Option<Vec<f32>>,
    /// Q8_0 copies for the decode fast path.
    q8: Option<QWeights>,
    /// Threads each matrix product may use.
    threads: usize,
    /// The persistent workers those threads are (`None` for 1: the calling thread only). Every
    /// forward pass runs inside it, so splitting a product is a `join` between live workers.
    pool: Option<rayon::ThreadPool>,
}

/// Keys and values of every block for the positions seen so far.
#[derive(Clone)]
pub struct KvCache {
    /// Per block `[len, Hkv·D]`.
    k: Vec<Vec<f32>>,
    /// Per block `[len, Hkv·D]`.
    v: Vec<Vec<f32>>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// An empty cache for `config`, holding at most `capacity` positions.
    pub fn new(config: &Config, capacity: usize) -> KvCache {
        KvCache { k: vec![Vec::new(); config.n_layers], v: vec![Vec::new(); config.n_layers], len: 0, capacity }
    }

    /// Positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every position.
    pub fn clear(&mut self) {
        self.k.iter_mut().chain(self.v.iter_mut()).for_each(Vec::clear);
        self.len = 0;
    }

    /// Forgets the positions from `len` on (none when `len` is past the cached ones).
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        for rows in self.k.iter_mut().chain(self.v.iter_mut()) {
            let width = rows.len() / self.len;
            rows.truncate(len * width);
        }
        self.len = len;
    }

    /// A copy of the keys and values of positions `start..end`.
    pub fn span(&self, start: usize, end: usize) -> Result<KvSpan, ModelError> {
        if start > end || end > self.len {
            return Err(ModelError::Input(format!("span {start}..{end} outside the {} cached positions", self.len)));
        }
        let cut = |rows: &Vec<Vec<f32>>| -> Vec<Vec<f32>> {
            rows.iter()
                .map(|r| {
                    let width = r.len().checked_div(self.len).unwrap_or(0);
                    r[start * width..end * width].to_vec()
                })
                .collect()
        };
        Ok(KvSpan { k: cut(&self.k), v: cut(&self.v), len: end - start })
    }

    /// Appends `span`'s positions after the cached ones, as if they had been run here. The caller
    /// vouches that they follow what the cache holds (the same tokens, cut at the same position).
    pub fn append(&mut self, span: &KvSpan) -> Result<(), ModelError> {
        if self.len + span.len > self.capacity {
            return Err(ModelError::Input(format!("{} positions exceed the KV cache's capacity {}", self.len + span.len, self.capacity)));
        }
        let fits = |mine: &[Vec<f32>], theirs: &[Vec<f32>]| {
            mine.len() == theirs.len() && mine.iter().zip(theirs).all(|(m, t)| self.len == 0 || m.len() * span.len == t.len() * self.len)
        };
        if !fits(&self.k, &span.k) || !fits(&self.v, &span.v) {
            return Err(ModelError::Input("KV span's blocks or row width differ from the cache's".into()));
        }
        for (mine, theirs) in self.k.iter_mut().zip(&span.k).chain(self.v.iter_mut().zip(&span.v)) {
            mine.extend_from_slice(theirs);
        }
        self.len += span.len;
        Ok(())
    }
}

/// Keys and values of a run of consecutive positions cut out of a [`KvCache`] ([`KvCache::span`]),
/// to be appended to another ([`KvCache::append`]): how the embedded teacher reuses the prefill of
/// a shared prompt prefix.
#[derive(Clone)]
pub struct KvSpan {
    /// Per block `[len, Hkv·D]`.
    k: Vec<Vec<f32>>,
    /// Per block `[len, Hkv·D]`.
    v: Vec<Vec<f32>>,
    len: usize,
}

impl KvSpan {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Memory held by the keys and values, in bytes.
    pub fn bytes(&self) -> usize {
        self.k.iter().chain(&self.v).map(|r| r.len() * std::mem::size_of::<f32>()).sum()
    }
}

impl Model {
    /// Loads a model, every weight as f32: a folder is a Hugging Face safetensors folder
    /// ([`Model::from_safetensors`]), anything else a GGUF file ([`Model::from_gguf`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Model, ModelError> {
        let path = path.as_ref();
        if path.is_dir() {
            Model::from_safetensors(&SafetensorsFolder::open(path)?)
        } else {
            Model::from_gguf(&GgufFile::open(path)?)
        }
    }

    /// A model of these f32 weights, on one thread, without Q8 copies.
    pub(super) fn assemble(config: Config, tok_embd: Vec<f32>, blocks: Vec<Block>, out_norm: Vec<f32>, lm_head: Option<Vec<f32>>) -> Model {
        Model { config, tok_embd, blocks, out_norm, lm_head, q8: None, threads: 1, pool: None }
    }

    /// Builds the model from a parsed GGUF file.
    pub fn from_gguf(f: &GgufFile) -> Result<Model, ModelError> {
        let c = Config::from_gguf(f)?;
        let (h, kv, q_dim) = (c.hidden, c.kv_dim(), c.n_heads * c.head_dim);
        let tok_embd = f.tensor_f32("token_embd.weight", &[h, c.vocab_size])?;
        let mut blocks = Vec::with_capacity(c.n_layers);
        for l in 0..c.n_layers {
            let t = |name: &str, dims: &[usize]| f.tensor_f32(&format!("blk.{l}.{name}"), dims);
            let bias = match c.arch {
                Arch::Qwen2 => Some([t("attn_q.bias", &[q_dim])?, t("attn_k.bias", &[kv])?, t("attn_v.bias", &[kv])?]),
                Arch::Llama => None,
            };
            blocks.push(Block {
                attn_norm: t("attn_norm.weight", &[h])?,
                wq: t("attn_q.weight", &[h, q_dim])?,
                wk: t("attn_k.weight", &[h, kv])?,
                wv: t("attn_v.weight", &[h, kv])?,
                bias,
                wo: t("attn_output.weight", &[q_dim, h])?,
                ffn_norm: t("ffn_norm.weight", &[h])?,
                w_gate: t("ffn_gate.weight", &[h, c.ffn])?,
                w_up: t("ffn_up.weight", &[h, c.ffn])?,
                w_down: t("ffn_down.weight", &[c.ffn, h])?,
            });
        }
        let out_norm = f.tensor_f32("output_norm.weight", &[h])?;
        let lm_head = match f.tensor("output.weight") {
            Some(_) => Some(f.tensor_f32("output.weight", &[h, c.vocab_size])?),
            None => None,
        };
        Ok(Model::assemble(c, tok_embd, blocks, out_norm, lm_head))
    }

    /// Builds the Q8_0 copies of the weights that [`Precision::Q8`] uses (from the f32 values,
    /// whatever the file stored). About a quarter of the f32 weights' memory.
    pub fn quantize_q8(&mut self) {
        let c = self.config.hidden;
        let q = |w: &[f32], k: usize| QMatrix::from_f32(w, k);
        let blocks = self
            .blocks
            .iter()
            .map(|b| QBlock {
                wqkv: QMatrix::concat(&[q(&b.wq, c), q(&b.wk, c), q(&b.wv, c)]),
                wo: q(&b.wo, self.config.n_heads * self.config.head_dim),
                w_gate_up: QMatrix::concat(&[q(&b.w_gate, c), q(&b.w_up, c)]),
                w_down: q(&b.w_down, self.config.ffn),
            })
            .collect();
        let lm_head = q(self.lm_head.as_deref().unwrap_or(&self.tok_embd), c);
        self.q8 = Some(QWeights { blocks, lm_head });
    }

    /// Whether [`Model::quantize_q8`] has run.
    pub fn has_q8(&self) -> bool {
        self.q8.is_some()
    }

    /// Threads every matrix product may use (default 1). More than one starts a pool of that
    /// many workers, kept for the model's lifetime; forward passes run on it (the caller waits).
    /// Results do not depend on the thread count, except the `gemm` products of
    /// [`Model::forward`] and [`Model::forward_all`], whose blocking follows it.
    pub fn set_threads(&mut self, threads: usize) -> Result<(), ModelError> {
        let threads = threads.max(1);
        self.pool = match threads {
            1 => None,
            _ => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("labflow-model-{i}"))
                    .build()
                    .map_err(|e| ModelError::Threads { threads, message: e.to_string() })?,
            ),
        };
        self.threads = threads;
        Ok(())
    }

    /// Runs `f` on the model's pool (on the calling thread when it has none).
    fn on_pool<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    /// `f` applied to every item, on the model's workers (in order on the calling thread when it
    /// has none), the results in the items' order: per-sequence work between two decode steps
    /// (sampling, constraints) that would otherwise leave all but one core idle.
    pub fn map_on_workers<T: Send, R: Send>(&self, items: &mut [T], f: impl Fn(&mut T) -> R + Sync + Send) -> Vec<R> {
        use rayon::prelude::*;
        match &self.pool {
            Some(pool) => pool.install(|| items.par_iter_mut().with_max_len(1).map(f).collect()),
            None => items.iter_mut().map(f).collect(),
        }
    }

    /// Threads every matrix product may use.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// An empty KV cache holding the model's full context length.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(&self.config, self.config.context_length)
    }

    /// Runs `tokens` (following what `cache` holds) and returns the logits `[V]` of the last one.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>, ModelError> {
        self.on_pool(|| {
            let x = self.hidden_states(tokens, cache)?;
            let c = self.config.hidden;
            Ok(self.logits(&x[x.len() - c..]))
        })
    }

    /// Runs `tokens` into `cache` without computing logits: a prefill chunk that is not the last.
    pub fn extend(&self, tokens: &[u32], cache: &mut KvCache) -> Result<(), ModelError> {
        self.hidden_states(tokens, cache).map(drop)
    }

    /// Runs `tokens` and returns the logits of every one, `[T, V]` row-major.
    pub fn forward_all(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>, ModelError> {
        self.on_pool(|| {
            let x = self.hidden_states(tokens, cache)?;
            Ok(self.logits(&x))
        })
    }

    /// Greedy decoding: feeds `prompt`, then appends the most likely token `n` times (ties go to
    /// the lowest id). End-of-sequence tokens are not special here: the caller stops on them.
    pub fn greedy(&self, prompt: &[u32], n: usize) -> Result<Vec<u32>, ModelError> {
        let mut cache = KvCache::new(&self.config, prompt.len() + n);
        let mut logits = self.forward(prompt, &mut cache)?;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let next = argmax(&logits);
            out.push(next);
            if i + 1 < n {
                logits = self.forward(&[next], &mut cache)?;
            }
        }
        Ok(out)
    }

    /// One decode step for many sequences: `steps[b] = (token, cache)` feeds `token` after what
    /// `cache` holds (each sequence at its own position) and returns its logits `[V]`. Projections,
    /// the FFN and the LM head run as `[B, ·] × Wᵀ` products that read the weights once for the
    /// batch ([`matvec_wt`] for f32, [`qmatmul_wt`] for Q8); rope and attention run per sequence on
    /// its own cache. Every row is computed independently of the others, so a sequence's logits
    /// are bit-identical whatever it is batched with.
    pub fn forward_batch(&self, steps: &mut [(u32, &mut KvCache)], precision: Precision) -> Result<Vec<Vec<f32>>, ModelError> {
        self.step_batch(steps, precision)
    }

    /// Final hidden states after the output norm, `[T, C]`.
    fn hidden_states(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>, ModelError> {
        let cfg = &self.config;
        let (c, kv, t_len, pos0) = (cfg.hidden, cfg.kv_dim(), tokens.len(), cache.len);
        if t_len == 0 {
            return Err(ModelError::Input("no tokens to run".into()));
        }
        if pos0 + t_len > cache.capacity {
            return Err(ModelError::Input(format!("{} positions exceed the KV cache's capacity {}", pos0 + t_len, cache.capacity)));
        }
        if cache.k.len() != cfg.n_layers {
            return Err(ModelError::Input(format!("KV cache has {} blocks, the model {}", cache.k.len(), cfg.n_layers)));
        }
        // x: [T, C]
        let mut x = Vec::with_capacity(t_len * c);
        for &tok in tokens {
            let row = self
                .tok_embd
                .get(tok as usize * c..(tok as usize + 1) * c)
                .ok_or_else(|| ModelError::Input(format!("token id {tok} outside the vocabulary of {}", cfg.vocab_size)))?;
            x.extend_from_slice(row);
        }
        let q_dim = cfg.n_heads * cfg.head_dim;
        let shape = AttnShape { n_heads: cfg.n_heads, n_kv_heads: cfg.n_kv_heads, head_dim: cfg.head_dim };
        let (mut q, mut k, mut v) = (vec![0f32; t_len * q_dim], vec![0f32; t_len * kv], vec![0f32; t_len * kv]);
        let mut att = vec![0f32; t_len * q_dim];
        let mut proj = vec![0f32; t_len * c];
        let (mut gate, mut up) = (vec![0f32; t_len * cfg.ffn], vec![0f32; t_len * cfg.ffn]);
        for (l, b) in self.blocks.iter().enumerate() {
            // n: [T, C]
            let mut n = x.clone();
            rmsnorm(&mut n, &b.attn_norm, cfg.rms_eps);
            matmul_wt_threads(&n, &b.wq, &mut q, c, self.threads); // q: [T, H·D]
            matmul_wt_threads(&n, &b.wk, &mut k, c, self.threads); // k: [T, Hkv·D]
            matmul_wt_threads(&n, &b.wv, &mut v, c, self.threads); // v: [T, Hkv·D]
            if let Some([bq, bk, bv]) = &b.bias {
                add_rows(&mut q, bq);
                add_rows(&mut k, bk);
                add_rows(&mut v, bv);
            }
            rope(&mut q, cfg.n_heads, cfg.head_dim, cfg.rope_dims, pos0, cfg.rope_base, cfg.rope_style);
            rope(&mut k, cfg.n_kv_heads, cfg.head_dim, cfg.rope_dims, pos0, cfg.rope_base, cfg.rope_style);
            cache.k[l].extend_from_slice(&k);
            cache.v[l].extend_from_slice(&v);
            attention_rows(&q, &cache.k[l], &cache.v[l], pos0, shape, &mut att); // att: [T, H·D]
            matmul_wt_threads(&att, &b.wo, &mut proj, q_dim, self.threads); // proj: [T, C]
            x.iter_mut().zip(&proj).for_each(|(a, p)| *a += p);

            let mut n = x.clone();
            rmsnorm(&mut n, &b.ffn_norm, cfg.rms_eps);
            matmul_wt_threads(&n, &b.w_gate, &mut gate, c, self.threads); // gate: [T, F]
            matmul_wt_threads(&n, &b.w_up, &mut up, c, self.threads); // up: [T, F]
            crate::backend::cpu::swiglu::swiglu(&mut gate, &up);
            matmul_wt_threads(&gate, &b.w_down, &mut proj, cfg.ffn, self.threads); // proj: [T, C]
            x.iter_mut().zip(&proj).for_each(|(a, p)| *a += p);
        }
        cache.len += t_len;
        rmsnorm(&mut x, &self.out_norm, cfg.rms_eps);
        Ok(x)
    }

    /// `x: [T, C]` → logits `[T, V]`.
    fn logits(&self, x: &[f32]) -> Vec<f32> {
        let c = self.config.hidden;
        let head = self.lm_head.as_deref().unwrap_or(&self.tok_embd);
        let mut out = vec![0f32; x.len() / c * self.config.vocab_size];
        matmul_wt_threads(x, head, &mut out, c, self.threads);
        out
    }
}

/// Adds `b: [N]` to every row of `x: [T, N]`.
fn add_rows(x: &mut [f32], b: &[f32]) {
    for row in x.chunks_exact_mut(b.len()) {
        row.iter_mut().zip(b).for_each(|(a, &c)| *a += c);
    }
}

/// Index of the largest value (the first one on ties; NaN never wins).
pub fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] || xs[best].is_nan() {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A span of `len` positions over 2 blocks, rows of width 3, values `block·1000 + pos·10 + i`
    /// (keys) and their negatives (values), positions numbered from `from`.
    fn span(from: usize, len: usize) -> KvSpan {
        let rows = |sign: f32| -> Vec<Vec<f32>> {
            (0..2).map(|b| (from..from + len).flat_map(|p| (0..3).map(move |i| sign * (b * 1000 + p * 10 + i) as f32)).collect()).collect()
        };
        KvSpan { k: rows(1.0), v: rows(-1.0), len }
    }

    fn cache(capacity: usize) -> KvCache {
        KvCache { k: vec![Vec::new(); 2], v: vec![Vec::new(); 2], len: 0, capacity }
    }

    #[test]
    fn spans_cut_append_and_truncate_positions() {
        let mut c = cache(10);
        c.append(&span(0, 4)).expect("fits");
        c.append(&span(4, 2)).expect("fits");
        assert_eq!(c.len(), 6);
        let whole = c.span(0, 6).expect("in range");
        assert_eq!((whole.k.clone(), whole.v.clone()), (span(0, 6).k, span(0, 6).v), "appending two spans = one span of both");
        let mid = c.span(2, 5).expect("in range");
        assert_eq!((mid.len(), mid.k.clone(), mid.v.clone()), (3, span(2, 3).k, span(2, 3).v));
        assert_eq!(mid.bytes(), 2 * 2 * 3 * 3 * 4);
        c.truncate(3);
        assert_eq!(c.len(), 3);
        assert_eq!(c.span(0, 3).expect("in range").k, span(0, 3).k);
        c.truncate(7);
        assert_eq!(c.len(), 3, "truncating past the end keeps everything");
        assert!(c.span(2, 4).is_err(), "past the cached positions");
        assert!(c.span(0, 0).expect("empty span").is_empty());
    }

    #[test]
    fn append_refuses_what_does_not_fit() {
        let mut c = cache(5);
        c.append(&span(0, 4)).expect("fits");
        assert!(c.append(&span(4, 2)).is_err(), "over capacity");
        let mut narrow = span(4, 1);
        narrow.k[0].pop();
        assert!(c.append(&narrow).is_err(), "row width differs");
        let mut other = span(4, 1);
        other.k.pop();
        assert!(c.append(&other).is_err(), "block count differs");
        assert_eq!(c.len(), 4, "refused spans change nothing");
    }
}
