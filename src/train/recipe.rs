//! Training recipes: the declarative files in `pipelines/train/` naming the base model and the
//! phases in order, each with its data and every number of its schedule. Read with the pipeline
//! loader, so a bad recipe is refused with `file:line:column: message (at key.path)`. Relative
//! paths are resolved from the recipe's folder.

use crate::pipeline::load::{Loaded, PipelineError, Source};
use serde::{Deserialize, Serialize};

/// The recipe format version this labflow reads.
pub const RECIPE_VERSION: u32 = 1;

/// A training recipe as written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Format version ([`RECIPE_VERSION`]).
    pub version: u32,
    /// A name for reports and the default output folder.
    pub name: String,
    /// The model the first phase starts from.
    pub base: Base,
    /// Seed of the data order and the held-out split (and a random base's weights). Default 42.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Samples with fewer tokens are dropped (and counted). Default 20, the reference's.
    #[serde(default = "default_min_tokens")]
    pub min_tokens: usize,
    /// The phases, in order; each starts from the checkpoint the previous one chose.
    pub phases: Vec<Phase>,
}

/// Where the weights come from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Base {
    /// A Hugging Face safetensors folder or a GGUF file (dequantised to f32 at load).
    Model(String),
    /// A freshly initialised small Llama with the tokenizer and chat template of `tokenizer` (a
    /// model file or folder): for smoke tests and quick looks, not for real training.
    Random(RandomBase),
}

/// The shape of a [`Base::Random`] model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RandomBase {
    /// The model whose tokenizer and chat template to use.
    pub tokenizer: String,
    /// Hidden size.
    pub hidden: usize,
    /// Blocks.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Feed-forward size.
    pub ffn: usize,
}

/// One phase of training.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// Its name (`knowledge`, `skills`): the output folder `phase-N-name/`.
    pub name: String,
    /// Mix files (JSONL or Parquet in the record schema), paths or URLs.
    pub data: Vec<String>,
    /// Passes over the data.
    pub epochs: u32,
    /// Peak learning rate.
    pub lr: f32,
    /// Linear warm-up steps from 0 to `lr`. Default 0.
    #[serde(default)]
    pub warmup_steps: u64,
    /// After warm-up: `constant`, or `cosine` decay to 0 at the last step. Default constant.
    #[serde(default)]
    pub schedule: Schedule,
    /// Samples per optimizer step (the effective batch).
    pub batch_size: usize,
    /// Token budget of one packed minibatch; at least `max_seq_len`.
    pub max_tokens_per_minibatch: usize,
    /// Samples of this many tokens or more are dropped (and counted).
    pub max_seq_len: usize,
    /// AdamW weight decay. Default 0.
    #[serde(default)]
    pub weight_decay: f32,
    /// Global gradient-norm clip. Default 1.0.
    #[serde(default = "default_clip")]
    pub clip: f64,
    /// Write a checkpoint every this many samples (0: never by count). Default 0.
    #[serde(default)]
    pub save_every_samples: u64,
    /// Write a checkpoint at the end of every epoch. Default true. The last step always writes one.
    #[serde(default = "default_true")]
    pub save_per_epoch: bool,
    /// Hugging Face checkpoints kept (the chosen one is kept too). Default 2.
    #[serde(default = "default_keep")]
    pub keep_last: usize,
    /// Share of the samples held out to score checkpoints (at least one sample when there are
    /// two or more). Default 0.05.
    #[serde(default = "default_eval_fraction")]
    pub eval_fraction: f64,
    /// How the phase's checkpoint is chosen: `heldout_loss` (lowest), `last`, or `score` (the
    /// highest number `scorer` prints). Default heldout_loss.
    #[serde(default)]
    pub select: Select,
    /// The pluggable scorer of `select: score`: a command (program and arguments) run on every
    /// checkpoint with its folder appended as the last argument; the last line it prints is the
    /// checkpoint's score, higher is better (an evaluation on a benchmark, a judge). The output
    /// must be a local folder.
    #[serde(default)]
    pub scorer: Option<Vec<String>>,
}

/// Learning-rate schedule after warm-up.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// `lr` until the end.
    #[default]
    Constant,
    /// Half a cosine from `lr` to 0 over the steps after warm-up.
    Cosine,
}

/// Checkpoint choice.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Select {
    /// The lowest loss on the held-out samples.
    #[default]
    HeldoutLoss,
    /// The last one.
    Last,
    /// The highest score from the phase's `scorer`.
    Score,
}

fn default_seed() -> u64 {
    42
}
fn default_min_tokens() -> usize {
    20
}
fn default_clip() -> f64 {
    1.0
}
fn default_true() -> bool {
    true
}
fn default_keep() -> usize {
    2
}
fn default_eval_fraction() -> f64 {
    0.05
}

impl Schedule {
    /// The learning rate of step `step` (from 1) of `total`, peak `lr`, `warmup` warm-up steps.
    pub fn lr(self, lr: f32, step: u64, warmup: u64, total: u64) -> f32 {
        if step <= warmup && warmup > 0 {
            return lr * step as f32 / warmup as f32;
        }
        match self {
            Schedule::Constant => lr,
            Schedule::Cosine => {
                let span = total.saturating_sub(warmup).max(1) as f64;
                let done = (step.saturating_sub(warmup)) as f64 / span;
                (f64::from(lr) * 0.5 * (1.0 + (std::f64::consts::PI * done.min(1.0)).cos())) as f32
            }
        }
    }
}

impl Recipe {
    /// Canonical JSON of the recipe: what a resumed run must match.
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        blake3::hash(json.as_bytes()).to_hex()[..32].to_string()
    }
}

/// Read recipe `rel` from `source`, checking every number.
pub fn load(source: &dyn Source, rel: &str) -> Result<Recipe, PipelineError> {
    let (loaded, value) = Loaded::read(source, rel)?;
    if !value.is_object() {
        return Err(loaded.at("", "a training recipe is a mapping with `version`, `name`, `base` and `phases`"));
    }
    if let Some(v) = value.get("version") {
        if v.as_u64() != Some(RECIPE_VERSION as u64) {
            return Err(loaded.at("/version", format!("unsupported recipe version {v}; this labflow reads version {RECIPE_VERSION}")));
        }
    }
    let recipe: Recipe = loaded.parse("", value)?;
    check(&recipe, &loaded)?;
    Ok(recipe)
}

fn check(r: &Recipe, loaded: &Loaded) -> Result<(), PipelineError> {
    if r.phases.is_empty() {
        return Err(loaded.at("/phases", "a recipe needs at least one phase"));
    }
    if let Base::Random(b) = &r.base {
        if b.hidden == 0 || b.layers == 0 || b.heads == 0 || b.kv_heads == 0 || b.ffn == 0 || b.hidden % b.heads != 0 || b.heads % b.kv_heads != 0 {
            return Err(loaded.at("/base/random", "sizes must be positive, heads must divide hidden and kv_heads divide heads"));
        }
        if (b.hidden / b.heads) % 2 != 0 {
            return Err(loaded.at("/base/random/heads", "the head size (hidden / heads) must be even for rope"));
        }
    }
    let mut names = std::collections::HashSet::new();
    for (i, p) in r.phases.iter().enumerate() {
        let at = |key: &str| format!("/phases/{i}/{key}");
        let bad = |key: &str, msg: String| Err(loaded.at(&at(key), msg));
        if p.name.is_empty() || !p.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return bad("name", format!("phase name {:?} must be letters, digits, `-` or `_` (it names a folder)", p.name));
        }
        if !names.insert(p.name.clone()) {
            return bad("name", format!("two phases are named {:?}", p.name));
        }
        if p.data.is_empty() {
            return bad("data", "a phase needs at least one data file".into());
        }
        if p.epochs == 0 {
            return bad("epochs", "epochs must be at least 1".into());
        }
        if !(p.lr.is_finite() && p.lr > 0.0) {
            return bad("lr", format!("lr {} must be a positive number", p.lr));
        }
        if p.batch_size == 0 {
            return bad("batch_size", "batch_size must be at least 1 sample".into());
        }
        if p.max_seq_len <= r.min_tokens {
            return bad("max_seq_len", format!("max_seq_len {} must exceed min_tokens {}", p.max_seq_len, r.min_tokens));
        }
        if p.max_tokens_per_minibatch < p.max_seq_len {
            return bad(
                "max_tokens_per_minibatch",
                format!("max_tokens_per_minibatch {} must be at least max_seq_len {}: the longest sample must fit one minibatch", p.max_tokens_per_minibatch, p.max_seq_len),
            );
        }
        if !(p.weight_decay.is_finite() && p.weight_decay >= 0.0) {
            return bad("weight_decay", "weight_decay must be 0 or more".into());
        }
        if !(p.clip.is_finite() && p.clip > 0.0) {
            return bad("clip", "clip must be a positive norm".into());
        }
        if p.keep_last == 0 {
            return bad("keep_last", "keep_last must be at least 1".into());
        }
        if !(0.0..0.5).contains(&p.eval_fraction) {
            return bad("eval_fraction", format!("eval_fraction {} must be in [0, 0.5)", p.eval_fraction));
        }
        if p.select == Select::HeldoutLoss && p.eval_fraction == 0.0 {
            return bad("select", "select: heldout_loss needs eval_fraction > 0 (or use select: last)".into());
        }
        match (&p.select, &p.scorer) {
            (Select::Score, None) => return bad("select", "select: score needs `scorer: [PROGRAM, ARGS...]`, run on each checkpoint folder".into()),
            (Select::Score, Some(c)) if c.is_empty() || c[0].is_empty() => return bad("scorer", "scorer needs a program to run".into()),
            (Select::HeldoutLoss | Select::Last, Some(_)) => return bad("scorer", "scorer is used only with select: score".into()),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        let c = Schedule::Constant;
        assert_eq!(c.lr(1.0, 1, 4, 10), 0.25);
        assert_eq!(c.lr(1.0, 4, 4, 10), 1.0);
        assert_eq!(c.lr(1.0, 9, 4, 10), 1.0);
        let cos = Schedule::Cosine;
        assert_eq!(cos.lr(2.0, 2, 2, 10), 2.0, "the peak at the end of warm-up");
        assert!((cos.lr(2.0, 6, 2, 10) - 1.0).abs() < 1e-6, "half way down");
        assert!(cos.lr(2.0, 10, 2, 10).abs() < 1e-6, "0 at the end");
        assert_eq!(c.lr(3.0, 1, 0, 1), 3.0, "no warm-up");
    }
}
