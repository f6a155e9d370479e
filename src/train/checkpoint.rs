//! What a training run writes: Hugging Face checkpoint folders (`config.json`,
//! `model.safetensors`, the tokenizer files) that transformers loads, and the full state a run
//! resumes from (weights, AdamW moments, step and data position).
//!
//! Nothing half-written is ever taken for whole: a checkpoint folder's `config.json` is written
//! after its weights (transformers cannot load a folder without it), and the full state is a
//! folder per step that `state/latest.json`, written last, points to; older state folders are
//! deleted only after the pointer moves. Everything goes through [`Location`], so the output may
//! be a local folder or any object store.

use std::borrow::Cow;
use std::collections::HashMap;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use super::TrainError;
use crate::model::{Arch, Config};
use crate::store::dataset;
use crate::store::Location;

/// The pointer to the newest full state.
pub const LATEST: &str = "state/latest.json";

/// Little-endian bytes of f32 values (borrowed where the machine is little-endian).
fn f32_bytes(x: &[f32]) -> Cow<'_, [u8]> {
    if cfg!(target_endian = "little") {
        // SAFETY: f32 has no padding and any byte pattern is a valid u8; the slice covers exactly
        // the values' memory, which outlives the borrow.
        Cow::Borrowed(unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<u8>(), std::mem::size_of_val(x)) })
    } else {
        Cow::Owned(x.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}

/// A safetensors file of F32 tensors, named.
pub fn safetensors_bytes(tensors: &[(String, Vec<usize>, &[f32])]) -> Result<Vec<u8>, TrainError> {
    let bytes: Vec<Cow<[u8]>> = tensors.iter().map(|(_, _, d)| f32_bytes(d)).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| TensorView::new(Dtype::F32, shape.clone(), b).map(|v| (name.clone(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TrainError::Checkpoint(format!("safetensors: {e}")))?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(meta)).map_err(|e| TrainError::Checkpoint(format!("safetensors: {e}")))
}

/// The F32 tensors of a safetensors file, by name (other dtypes are an error naming them).
pub fn read_safetensors(bytes: &[u8], what: &str) -> Result<HashMap<String, Vec<f32>>, TrainError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| TrainError::Checkpoint(format!("{what}: not a safetensors file: {e}")))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(TrainError::Checkpoint(format!("{what}: tensor {name:?} is {:?}; labflow's states are F32", view.dtype())));
        }
        out.insert(name, view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect());
    }
    Ok(out)
}

/// `config.json` for transformers' `LlamaForCausalLM` / `Qwen2ForCausalLM`.
pub fn hf_config_json(c: &Config, tied: bool, bos: Option<u32>, eos: Option<u32>) -> serde_json::Value {
    let (arch, model_type) = match c.arch {
        Arch::Llama => ("LlamaForCausalLM", "llama"),
        Arch::Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
    };
    let mut v = serde_json::json!({
        "architectures": [arch],
        "model_type": model_type,
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden,
        "intermediate_size": c.ffn,
        "num_hidden_layers": c.n_layers,
        "num_attention_heads": c.n_heads,
        "num_key_value_heads": c.n_kv_heads,
        "head_dim": c.head_dim,
        "max_position_embeddings": c.context_length,
        "rms_norm_eps": c.rms_eps,
        "rope_theta": c.rope_base,
        "tie_word_embeddings": tied,
        "hidden_act": "silu",
        "torch_dtype": "float32",
    });
    let o = v.as_object_mut().expect("invariant: a JSON object literal");
    if c.arch == Arch::Llama {
        o.insert("attention_bias".into(), false.into());
        o.insert("mlp_bias".into(), false.into());
    } else {
        o.insert("use_sliding_window".into(), false.into());
    }
    if let Some(b) = bos {
        o.insert("bos_token_id".into(), b.into());
    }
    if let Some(e) = eos {
        o.insert("eos_token_id".into(), e.into());
    }
    v
}

/// Writes one Hugging Face checkpoint folder `rel/` under `out`: the weights first, then the
/// tokenizer files, then `config.json`.
pub async fn write_hf(out: &Location, rel: &str, tensors: &[(String, Vec<usize>, &[f32])], config_json: &serde_json::Value, tokenizer_files: &[(String, Vec<u8>)]) -> Result<(), TrainError> {
    let weights = safetensors_bytes(tensors)?;
    dataset::write_bytes(out, &format!("{rel}/model.safetensors"), weights).await?;
    for (name, bytes) in tokenizer_files {
        dataset::write_bytes(out, &format!("{rel}/{name}"), bytes.clone()).await?;
    }
    let config = serde_json::to_vec_pretty(config_json).expect("invariant: JSON values serialise");
    dataset::write_bytes(out, &format!("{rel}/config.json"), config).await?;
    Ok(())
}

/// Reads a checkpoint folder's weights back.
pub async fn read_hf_weights(out: &Location, rel: &str) -> Result<HashMap<String, Vec<f32>>, TrainError> {
    let path = format!("{rel}/model.safetensors");
    let bytes = dataset::read_bytes(out, &path).await?.ok_or_else(|| TrainError::Checkpoint(format!("{}: missing", out.child(&path))))?;
    read_safetensors(&bytes, &path)
}

/// Deletes every object under `rel/`.
pub async fn delete_folder(out: &Location, rel: &str) -> Result<(), TrainError> {
    let prefix = out.child(rel);
    let paths: Vec<_> = out
        .store
        .list(Some(&prefix))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .map_err(|e| TrainError::Checkpoint(format!("listing {prefix}: {e}")))?;
    for p in paths {
        out.store.delete(&p).await.map_err(|e| TrainError::Checkpoint(format!("deleting {p}: {e}")))?;
    }
    Ok(())
}

/// A Hugging Face checkpoint a phase wrote.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    /// Its folder under the output, `phase-1-knowledge/samples_128`.
    pub dir: String,
    /// Samples of the phase seen when it was written.
    pub samples: u64,
    /// Optimizer steps of the phase.
    pub step: u64,
    /// Mean loss per target on the held-out samples (None without any).
    pub heldout_loss: Option<f64>,
    /// What the phase's scorer said of it (`select: score`), higher is better.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
}

/// Where a run stands: everything but the tensors of the full state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// The recipe's fingerprint; a different recipe does not resume this state.
    pub recipe: String,
    /// Index of the phase in progress (== phases when all are done).
    pub phase: usize,
    /// Epoch in progress (from 0).
    pub epoch: u64,
    /// Steps of this epoch done.
    pub step_in_epoch: usize,
    /// Steps of this phase done (AdamW's step count).
    pub phase_step: u64,
    /// Samples of this phase seen.
    pub samples: u64,
    /// Checkpoints of the phase in progress, oldest first.
    pub checkpoints: Vec<Checkpoint>,
    /// The chosen checkpoint of every finished phase.
    pub chosen: Vec<Checkpoint>,
    /// The folder under `state/` holding the tensors.
    pub tensors: String,
    /// `metrics.jsonl` lines of the phase in progress up to this state.
    pub metrics: Vec<String>,
    /// Reports of the finished phases.
    #[serde(default)]
    pub reports: Vec<super::PhaseReport>,
}

/// The newest state's bookkeeping (where the run is), without its tensors.
pub async fn read_progress(out: &Location) -> Result<Option<State>, TrainError> {
    let Some(bytes) = dataset::read_bytes(out, LATEST).await? else { return Ok(None) };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| TrainError::Checkpoint(format!("{}: {e}; delete the output folder's state/ to start over", out.child(LATEST))))
}

/// Writes the full state: tensors into a fresh `state/step-…/`, then the pointer, then deletes
/// the state folder the pointer named before.
pub async fn write_state(out: &Location, state: &State, tensors: &[(String, Vec<usize>, &[f32])], previous: Option<&str>) -> Result<(), TrainError> {
    let bytes = safetensors_bytes(tensors)?;
    dataset::write_bytes(out, &format!("state/{}/state.safetensors", state.tensors), bytes).await?;
    dataset::write_json(out, LATEST, state).await?;
    if let Some(prev) = previous.filter(|p| *p != state.tensors) {
        delete_folder(out, &format!("state/{prev}")).await?;
    }
    Ok(())
}

/// The newest full state, if any: its description and tensors.
pub async fn read_state(out: &Location) -> Result<Option<(State, HashMap<String, Vec<f32>>)>, TrainError> {
    let Some(state) = read_progress(out).await? else { return Ok(None) };
    let path = format!("state/{}/state.safetensors", state.tensors);
    let bytes = dataset::read_bytes(out, &path).await?.ok_or_else(|| TrainError::Checkpoint(format!("{}: missing, though {LATEST} names it", out.child(&path))))?;
    let tensors = read_safetensors(&bytes, &path)?;
    Ok(Some((state, tensors)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_round_trip() {
        let a = [1.0f32, -2.5, 3.25];
        let b = [0.5f32; 4];
        let bytes = safetensors_bytes(&[("a".into(), vec![3], &a[..]), ("b.x".into(), vec![2, 2], &b[..])]).unwrap();
        let back = read_safetensors(&bytes, "test").unwrap();
        assert_eq!(back["a"], a.to_vec());
        assert_eq!(back["b.x"], b.to_vec());
        assert!(read_safetensors(b"not one", "junk").unwrap_err().to_string().contains("junk: not a safetensors file"));
    }
}
