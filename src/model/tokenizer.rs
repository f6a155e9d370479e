//! The tokenizer, loaded from a Hugging Face folder's `tokenizer.json` ([`Tokenizer::from_hf_folder`])
//! or rebuilt from GGUF metadata with the `tokenizers` crate ([`Tokenizer::from_gguf`]): a byte-level BPE from
//! `tokenizer.ggml.tokens` and `tokenizer.ggml.merges`, the pre-tokenizer llama.cpp uses for the
//! file's `tokenizer.ggml.pre`, and the control / user-defined tokens as added tokens matched
//! before BPE (so `<|im_start|>` in a prompt is one token, as with llama.cpp's `special=true`).
//!
//! Encoding adds no BOS (SmolLM2's `tokenizer.ggml.add_bos_token` is false; callers that need one
//! prepend [`Tokenizer::bos_id`]). Token ids equal llama.cpp's on the strings in
//! `tests/fixtures/model/llama_cpp_smollm2.json`.

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper};

use std::path::Path;

use super::hf_config::{read_file, HfConfig, HfTokenizerConfig};
use super::{GgufFile, ModelError};

/// GGUF token types (`tokenizer.ggml.token_type`).
const TOKEN_CONTROL: u64 = 3;
const TOKEN_USER_DEFINED: u64 = 4;

/// A tokenizer with the model's special token ids.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos: Option<u32>,
    eos: Option<u32>,
    vocab_size: usize,
}

impl Tokenizer {
    /// Rebuilds the tokenizer stored in a GGUF file's metadata.
    pub fn from_gguf(f: &GgufFile) -> Result<Tokenizer, ModelError> {
        let unsupported = |message: String| ModelError::Unsupported { path: f.path().to_path_buf(), message };
        let model = f.req_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(unsupported(format!("tokenizer model {model:?}; supported: gpt2 (byte-level BPE)")));
        }
        let pre = f.get("tokenizer.ggml.pre").and_then(|v| v.as_str()).unwrap_or("default");
        let pre_tokenizer = match pre {
            // llama.cpp's `smollm` pre-tokenizer: single digits, then GPT-2's byte-level regex.
            "smollm" => Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
            ]),
            other => return Err(unsupported(format!("tokenizer pre-tokenizer {other:?}; supported: smollm"))),
        };
        let tokens = f.req_str_array("tokenizer.ggml.tokens")?;
        let merges = f.req_str_array("tokenizer.ggml.merges")?;
        let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.to_string(), i as u32)).collect();
        let merges = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| ModelError::Tokenizer(format!("merge {m:?} is not two tokens")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bpe =
            BPE::builder().vocab_and_merges(vocab, merges).build().map_err(|e| ModelError::Tokenizer(format!("building BPE: {e}")))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer));
        inner.with_decoder(Some(ByteLevelDecoder::default()));

        let types: Vec<u64> = match f.get("tokenizer.ggml.token_type").and_then(|v| v.as_array()) {
            Some(a) => a.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
            None => Vec::new(),
        };
        let (mut control, mut user) = (Vec::new(), Vec::new());
        for (tok, &ty) in tokens.iter().zip(&types) {
            match ty {
                TOKEN_CONTROL => control.push(AddedToken::from(tok.to_string(), true).normalized(false)),
                TOKEN_USER_DEFINED => user.push(AddedToken::from(tok.to_string(), false).normalized(false)),
                _ => {}
            }
        }
        inner.add_special_tokens(control).map_err(|e| ModelError::Tokenizer(format!("adding control tokens: {e}")))?;
        inner.add_tokens(user).map_err(|e| ModelError::Tokenizer(format!("adding user-defined tokens: {e}")))?;
        let id = |key: &str| f.get(key).and_then(|v| v.as_u64()).and_then(|v| u32::try_from(v).ok());
        Ok(Tokenizer { inner, bos: id("tokenizer.ggml.bos_token_id"), eos: id("tokenizer.ggml.eos_token_id"), vocab_size: tokens.len() })
    }

    /// Loads a Hugging Face folder's `tokenizer.json` (its added tokens, special ones included,
    /// are matched before BPE, as in transformers). BOS/EOS come from `tokenizer_config.json`'s
    /// `bos_token`/`eos_token` when the folder has that file, else from `config.json`'s
    /// `bos_token_id`/`eos_token_id`. A missing `tokenizer.json` is an error naming it.
    pub fn from_hf_folder(dir: impl AsRef<Path>) -> Result<Tokenizer, ModelError> {
        let dir = dir.as_ref();
        let path = dir.join("tokenizer.json");
        let bytes = read_file(&path)?;
        let inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| ModelError::Tokenizer(format!("{}: not a tokenizers tokenizer.json: {e}", path.display())))?;
        let tc_path = dir.join("tokenizer_config.json");
        let tc = if tc_path.is_file() { HfTokenizerConfig::read(&tc_path)? } else { HfTokenizerConfig::default() };
        let cfg_path = dir.join("config.json");
        let cfg = if cfg_path.is_file() { HfConfig::read(&cfg_path)? } else { HfConfig::default() };
        let special = |text: Option<&str>, id: Option<u32>, what: &str| -> Result<Option<u32>, ModelError> {
            match text {
                Some(t) => inner
                    .token_to_id(t)
                    .map(Some)
                    .ok_or_else(|| ModelError::Tokenizer(format!("{}: {what} {t:?} is not in {}", tc_path.display(), path.display()))),
                None => Ok(id),
            }
        };
        let bos = special(tc.bos_text(), cfg.bos_id(), "bos_token")?;
        let eos = special(tc.eos_text(), cfg.eos_id(), "eos_token")?;
        let vocab_size = inner.get_vocab_size(true);
        Ok(Tokenizer { inner, bos, eos, vocab_size })
    }

    /// The tokenizer as `tokenizer.json` text (the `tokenizers` serialisation transformers reads).
    pub fn to_json(&self) -> Result<String, ModelError> {
        self.inner.to_string(true).map_err(|e| ModelError::Tokenizer(format!("serialising: {e}")))
    }

    /// Token ids of `text`; special tokens written in the text become their ids; no BOS is added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        let enc = self.inner.encode(text, false).map_err(|e| ModelError::Tokenizer(format!("encoding: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of `text` as [`Tokenizer::encode`] gives them, each with the byte range of `text`
    /// it came from.
    pub fn encode_with_offsets(&self, text: &str) -> Result<(Vec<u32>, Vec<(usize, usize)>), ModelError> {
        let enc = self.inner.encode(text, false).map_err(|e| ModelError::Tokenizer(format!("encoding: {e}")))?;
        Ok((enc.get_ids().to_vec(), enc.get_offsets().to_vec()))
    }

    /// The text of `ids`; control tokens are dropped when `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, ModelError> {
        self.inner.decode(ids, skip_special).map_err(|e| ModelError::Tokenizer(format!("decoding: {e}")))
    }

    /// The vocabulary entry of a token (byte-level form, e.g. `Ġthe`).
    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The bytes each token id writes, for decoding constraints; `None` for special (control)
    /// tokens. Byte-level BPE entries are mapped back through GPT-2's byte↔character table;
    /// other vocabularies are read as SentencePiece writes them (`▁` is a space, `<0xNN>` a
    /// byte).
    pub fn token_bytes(&self) -> Vec<Option<Vec<u8>>> {
        let added = self.inner.get_added_tokens_decoder();
        let byte_level = matches!(self.inner.get_decoder(), Some(tokenizers::DecoderWrapper::ByteLevel(_)));
        let unicode_to_byte = gpt2_unicode_to_byte();
        (0..self.vocab_size as u32)
            .map(|id| {
                if let Some(t) = added.get(&id) {
                    return (!t.special).then(|| t.content.as_bytes().to_vec());
                }
                let piece = self.inner.id_to_token(id)?;
                if byte_level {
                    piece.chars().map(|c| unicode_to_byte.get(&c).copied()).collect()
                } else if let Some(hex) = piece.strip_prefix("<0x").and_then(|h| h.strip_suffix('>')) {
                    u8::from_str_radix(hex, 16).ok().map(|b| vec![b])
                } else {
                    Some(piece.replace('\u{2581}', " ").into_bytes())
                }
            })
            .collect()
    }

    /// Beginning-of-sequence id, if the model has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// End-of-sequence id, if the model has one.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }
}

/// GPT-2's byte-level alphabet, inverted: the printable bytes stand for themselves, the others
/// (controls, space, 127–160, 173) for the characters from U+0100 on, in byte order.
fn gpt2_unicode_to_byte() -> std::collections::HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut next = 0u32;
    (0..=255u8)
        .map(|b| {
            if printable(b) {
                (char::from(b), b)
            } else {
                next += 1;
                (char::from_u32(255 + next).expect("invariant: U+0100..U+0143 are characters"), b)
            }
        })
        .collect()
}
