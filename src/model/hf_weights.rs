//! A model's weights in Hugging Face's names and layout: building a [`Model`] from them (a
//! safetensors folder, or tensors in memory such as a trainer's checkpoint) and exporting them
//! (what the trainer starts from and what its checkpoints write). [`hf_layout`] is the one list
//! of names and shapes every path follows.
//!
//! GGUF `llama` files store the Q/K projection rows permuted for interleaved rope
//! ([`RopeStyle::Interleaved`]); [`Model::to_hf_tensors`] undoes that permutation, so an exported
//! model always uses Hugging Face's half-split rope.

use super::llama::Block;
use super::{Arch, Config, Model, ModelError, RopeStyle, SafetensorsFolder};

/// The name and shape of every weight, in a fixed order: the embedding; per block the input
/// norm, the Q/K/V projections (and, for qwen2, their biases), the output projection, the
/// post-attention norm, gate, up and down; the final norm; `lm_head.weight` unless `tied`.
pub fn hf_layout(c: &Config, tied: bool) -> Vec<(String, Vec<usize>)> {
    let (h, kv, q_dim) = (c.hidden, c.kv_dim(), c.n_heads * c.head_dim);
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![c.vocab_size, h])];
    for l in 0..c.n_layers {
        let mut push = |name: &str, shape: Vec<usize>| out.push((format!("model.layers.{l}.{name}"), shape));
        push("input_layernorm.weight", vec![h]);
        push("self_attn.q_proj.weight", vec![q_dim, h]);
        push("self_attn.k_proj.weight", vec![kv, h]);
        push("self_attn.v_proj.weight", vec![kv, h]);
        if c.arch == Arch::Qwen2 {
            push("self_attn.q_proj.bias", vec![q_dim]);
            push("self_attn.k_proj.bias", vec![kv]);
            push("self_attn.v_proj.bias", vec![kv]);
        }
        push("self_attn.o_proj.weight", vec![h, q_dim]);
        push("post_attention_layernorm.weight", vec![h]);
        push("mlp.gate_proj.weight", vec![c.ffn, h]);
        push("mlp.up_proj.weight", vec![c.ffn, h]);
        push("mlp.down_proj.weight", vec![h, c.ffn]);
    }
    out.push(("model.norm.weight".to_string(), vec![h]));
    if !tied {
        out.push(("lm_head.weight".to_string(), vec![c.vocab_size, h]));
    }
    out
}

impl Model {
    /// Builds the model from a Hugging Face folder (`config.json` and the safetensors weights,
    /// named as transformers' `LlamaForCausalLM` / `Qwen2ForCausalLM` name them). Weights keep
    /// Hugging Face's Q/K row layout, so rope pairs dimension `i` with `i + D/2`
    /// ([`RopeStyle::HalfSplit`]); the logits equal those of the GGUF file the folder was made from.
    pub fn from_safetensors(f: &SafetensorsFolder) -> Result<Model, ModelError> {
        let c = f.config().clone().into_config(&f.config_path())?;
        // transformers ties the head to the embedding when `tie_word_embeddings` (default false),
        // ignoring any stored `lm_head.weight`.
        let tied = f.config().tie_word_embeddings.unwrap_or(false);
        if !tied && !f.has("lm_head.weight") {
            return Err(ModelError::Missing {
                path: f.dir().to_path_buf(),
                message: "tensor \"lm_head.weight\" is absent, and config.json does not set tie_word_embeddings: true".into(),
            });
        }
        Model::from_hf_tensors(c, tied, |name, shape| f.tensor_f32(name, shape))
    }

    /// Builds the model from weights in [`hf_layout`]'s names, `get(name, shape)` returning each
    /// (checked against the shape). `config.rope_style` must describe the Q/K layout.
    pub fn from_hf_tensors(c: Config, tied: bool, mut get: impl FnMut(&str, &[usize]) -> Result<Vec<f32>, ModelError>) -> Result<Model, ModelError> {
        let mut tensors = hf_layout(&c, tied).into_iter().map(|(name, shape)| {
            let data = get(&name, &shape)?;
            if data.len() != shape.iter().product::<usize>() {
                return Err(ModelError::Input(format!("tensor {name:?} has {} values, its shape {shape:?} needs {}", data.len(), shape.iter().product::<usize>())));
            }
            Ok(data)
        });
        let mut next = || tensors.next().expect("invariant: hf_layout lists every tensor taken here");
        let tok_embd = next()?;
        let mut blocks = Vec::with_capacity(c.n_layers);
        for _ in 0..c.n_layers {
            let (attn_norm, wq, wk, wv) = (next()?, next()?, next()?, next()?);
            let bias = match c.arch {
                Arch::Qwen2 => Some([next()?, next()?, next()?]),
                Arch::Llama => None,
            };
            let (wo, ffn_norm, w_gate, w_up, w_down) = (next()?, next()?, next()?, next()?, next()?);
            blocks.push(Block { attn_norm, wq, wk, wv, bias, wo, ffn_norm, w_gate, w_up, w_down });
        }
        let out_norm = next()?;
        let lm_head = if tied { None } else { Some(next()?) };
        Ok(Model::assemble(c, tok_embd, blocks, out_norm, lm_head))
    }

    /// Whether the LM head is the token embedding.
    pub fn is_tied(&self) -> bool {
        self.lm_head.is_none()
    }

    /// Every weight in [`hf_layout`]'s order (Hugging Face layout), with the configuration that
    /// describes them (rope [`RopeStyle::HalfSplit`]).
    pub fn to_hf_tensors(&self) -> Result<(Config, Vec<Vec<f32>>), ModelError> {
        let mut c = self.config.clone();
        let unpermute = c.rope_style == RopeStyle::Interleaved;
        if unpermute && c.rope_dims != c.head_dim {
            return Err(ModelError::Input(format!(
                "this GGUF llama model rotates {} of {} head dimensions; only full rope converts to Hugging Face layout",
                c.rope_dims, c.head_dim
            )));
        }
        c.rope_style = RopeStyle::HalfSplit;
        let qk = |w: &[f32], heads: usize| if unpermute { interleaved_to_half_split(w, heads, c.head_dim) } else { w.to_vec() };
        let mut out = vec![self.tok_embd.clone()];
        for b in &self.blocks {
            out.extend([b.attn_norm.clone(), qk(&b.wq, c.n_heads), qk(&b.wk, c.n_kv_heads), b.wv.clone()]);
            if let Some([bq, bk, bv]) = &b.bias {
                out.extend([qk(bq, c.n_heads), qk(bk, c.n_kv_heads), bv.clone()]);
            }
            out.extend([b.wo.clone(), b.ffn_norm.clone(), b.w_gate.clone(), b.w_up.clone(), b.w_down.clone()]);
        }
        out.push(self.out_norm.clone());
        if let Some(head) = &self.lm_head {
            out.push(head.clone());
        }
        Ok((c, out))
    }
}

/// Undoes the GGUF converter's Q/K permutation: row `2i + j` of each head (of `d` rows) goes
/// back to row `j·d/2 + i`. `w: [heads·d, cols]` (a bias is `cols = 1`).
fn interleaved_to_half_split(w: &[f32], heads: usize, d: usize) -> Vec<f32> {
    let cols = w.len() / (heads * d);
    let mut out = vec![0f32; w.len()];
    for h in 0..heads {
        for i in 0..d / 2 {
            for j in 0..2 {
                let (src, dst) = (h * d + 2 * i + j, h * d + j * (d / 2) + i);
                out[dst * cols..][..cols].copy_from_slice(&w[src * cols..][..cols]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_the_converters_permutation() {
        // Hugging Face rows of one head of 4: [a0, a1, b0, b1] (pairs (a_i, b_i) rotate together);
        // the GGUF converter interleaves them to [a0, b0, a1, b1].
        let gguf = [10.0, 20.0, 11.0, 21.0, 12.0, 22.0, 13.0, 23.0]; // rows a0 b0 a1 b1, 2 columns
        assert_eq!(interleaved_to_half_split(&gguf, 1, 4), vec![10.0, 20.0, 12.0, 22.0, 11.0, 21.0, 13.0, 23.0]);
    }
}
