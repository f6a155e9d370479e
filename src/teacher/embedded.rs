//! The embedded teacher: a GGUF model running inside the labflow process, no server.
//!
//! It renders chat prompts with the model's own template, tokenizes with the tokenizer rebuilt
//! from the GGUF, and decodes with [`crate::model::Model`] (the f32 reference forward pass) and
//! [`crate::model::sample::Sampler`]. Each choice of a request decodes on its own KV cache cloned
//! from one shared prefill of the prompt; choice `i` of a seeded request uses seed `seed + i`, the
//! same convention the response cache uses when it splits a request, so cached and uncached runs
//! agree. Requests run on tokio's blocking pool, so concurrent requests decode in parallel on
//! their own caches — but not yet in one batched forward pass (continuous batching is the next
//! step; see issue 3).

use crate::model::sample::{log_softmax, top_k, Sampler};
use crate::model::{ChatTemplate, GgufFile, KvCache, Model, Tokenizer};
use crate::teacher::{Choice, Client, FinishReason, Prompt, Request, Response, TeacherError, TokenLogprob, Usage};
use futures::future::BoxFuture;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The command that fetches the default model, named in errors about a missing model file.
pub const FETCH_HINT: &str = "bash models/fetch.sh";

struct Inner {
    model: Model,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    identity: String,
    path: PathBuf,
    /// Tokens that end a choice: end-of-sequence and the chat turn terminators.
    stop_ids: Vec<u32>,
}

/// A GGUF model as a [`Client`]. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedTeacher {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedTeacher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedTeacher").field("identity", &self.inner.identity).finish()
    }
}

fn backend(path: &Path, e: impl std::fmt::Display) -> TeacherError {
    TeacherError::Backend { model: path.display().to_string(), message: e.to_string() }
}

impl EmbeddedTeacher {
    /// Load a GGUF model (weights dequantised to f32). A missing file names the fetch command.
    pub fn load(path: impl AsRef<Path>) -> Result<EmbeddedTeacher, TeacherError> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(backend(
                path,
                format!("model file not found; fetch the default model with `{FETCH_HINT}` or pass the path of a GGUF file"),
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| backend(path, e))?;
        let digest = blake3::hash(&bytes).to_hex();
        let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let identity = format!("embedded:{name}@{}", &digest[..16]);
        let file = GgufFile::parse(path, bytes).map_err(|e| backend(path, e))?;
        let model = Model::from_gguf(&file).map_err(|e| backend(path, e))?;
        let tokenizer = Tokenizer::from_gguf(&file).map_err(|e| backend(path, e))?;
        let template = ChatTemplate::from_gguf(&file).map_err(|e| backend(path, e))?;
        let mut stop_ids: Vec<u32> = tokenizer.eos_id().into_iter().collect();
        for special in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>"] {
            if let Ok(ids) = tokenizer.encode(special) {
                if let [id] = ids.as_slice() {
                    if !stop_ids.contains(id) {
                        stop_ids.push(*id);
                    }
                }
            }
        }
        Ok(EmbeddedTeacher { inner: Arc::new(Inner { model, tokenizer, template, identity, path: path.to_path_buf(), stop_ids }) })
    }

    /// The text the model sees for `prompt`: the chat template's rendering, or the text itself.
    pub fn render(&self, prompt: &Prompt) -> Result<String, TeacherError> {
        match prompt {
            Prompt::Text(t) => Ok(t.clone()),
            Prompt::Chat(messages) => self.inner.template.render(messages, true).map_err(|e| self.err(e)),
        }
    }

    /// Token ids of `text`.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, TeacherError> {
        self.inner.tokenizer.encode(text).map_err(|e| self.err(e))
    }

    fn err(&self, e: impl std::fmt::Display) -> TeacherError {
        backend(&self.inner.path, e)
    }

    fn complete_blocking(&self, request: &Request) -> Result<Response, TeacherError> {
        let s = &request.sampling;
        let prompt = self.tokenize(&self.render(&request.prompt)?)?;
        if prompt.is_empty() {
            return Err(TeacherError::Spec { endpoint: self.inner.identity.clone(), message: "the prompt is empty".into() });
        }
        let context = self.inner.model.config().context_length;
        if prompt.len() >= context {
            return Err(TeacherError::Spec {
                endpoint: self.inner.identity.clone(),
                message: format!("the prompt has {} tokens; the model's context is {context}", prompt.len()),
            });
        }
        let capacity = (prompt.len() + s.max_tokens as usize).min(context);
        let mut prefill = KvCache::new(self.inner.model.config(), capacity);
        let first_logits = self.inner.model.forward(&prompt, &mut prefill).map_err(|e| self.err(e))?;
        let mut choices = Vec::with_capacity(s.n as usize);
        let mut completion_tokens = 0;
        for i in 0..s.n.max(1) {
            let mut sampler =
                Sampler::new(s.temperature, s.top_p, s.top_k.map(|k| k as usize), s.seed.map(|seed| seed.wrapping_add(i as u64)));
            let (choice, used) = self.decode(prefill.clone(), first_logits.clone(), &mut sampler, request, capacity - prompt.len())?;
            completion_tokens += used as u64;
            choices.push(choice);
        }
        Ok(Response { choices, usage: Usage { prompt_tokens: prompt.len() as u64, completion_tokens } })
    }

    /// One choice: sample until a stop token, a stop string, or `max_new` tokens (`max_tokens`
    /// unless the context is shorter).
    fn decode(
        &self,
        mut cache: KvCache,
        mut logits: Vec<f32>,
        sampler: &mut Sampler,
        request: &Request,
        max_new: usize,
    ) -> Result<(Choice, usize), TeacherError> {
        let s = &request.sampling;
        let (model, tok) = (&self.inner.model, &self.inner.tokenizer);
        let mut generated: Vec<u32> = Vec::new();
        let mut logprobs: Vec<TokenLogprob> = Vec::new();
        let mut finish = FinishReason::Length;
        let mut text = String::new();
        while generated.len() < max_new {
            let next = sampler.sample(&logits);
            if self.inner.stop_ids.contains(&next) {
                finish = FinishReason::Stop;
                break;
            }
            if let Some(k) = s.logprobs {
                let lp = log_softmax(&logits);
                let top = top_k(&lp, k as usize).into_iter().map(|(id, l)| (tok.decode(&[id], false).unwrap_or_default(), l)).collect();
                logprobs.push(TokenLogprob {
                    token: tok.decode(&[next], false).map_err(|e| self.err(e))?,
                    logprob: lp[next as usize],
                    top,
                });
            }
            generated.push(next);
            text = tok.decode(&generated, true).map_err(|e| self.err(e))?;
            if let Some(cut) = s.stop.iter().filter(|st| !st.is_empty()).filter_map(|st| text.find(st.as_str())).min() {
                text.truncate(cut);
                finish = FinishReason::Stop;
                break;
            }
            if generated.len() < max_new {
                logits = model.forward(&[next], &mut cache).map_err(|e| self.err(e))?;
            }
        }
        let used = generated.len();
        Ok((Choice { text, finish_reason: finish, logprobs: s.logprobs.map(|_| logprobs) }, used))
    }

    fn score_blocking(&self, prompt: &Prompt, continuations: &[String]) -> Result<Vec<f64>, TeacherError> {
        let prompt_ids = self.tokenize(&self.render(prompt)?)?;
        if prompt_ids.is_empty() {
            return Err(TeacherError::Spec { endpoint: self.inner.identity.clone(), message: "the prompt is empty".into() });
        }
        let model = &self.inner.model;
        let conts: Vec<Vec<u32>> = continuations.iter().map(|c| self.tokenize(c)).collect::<Result<_, _>>()?;
        let longest = conts.iter().map(Vec::len).max().unwrap_or(0);
        let mut prefill = KvCache::new(model.config(), prompt_ids.len() + longest);
        let last = model.forward(&prompt_ids, &mut prefill).map_err(|e| self.err(e))?;
        let vocab = model.config().vocab_size;
        conts
            .iter()
            .map(|ids| {
                let Some((&first, rest)) = ids.split_first() else { return Ok(0.0) };
                // The first continuation token is predicted by the prompt's last position; each
                // later one by the position before it.
                let mut total = log_softmax(&last)[first as usize];
                if !rest.is_empty() {
                    let mut cache = prefill.clone();
                    let all = model.forward_all(&ids[..ids.len() - 1], &mut cache).map_err(|e| self.err(e))?;
                    for (pos, &id) in rest.iter().enumerate() {
                        total += log_softmax(&all[pos * vocab..(pos + 1) * vocab])[id as usize];
                    }
                }
                Ok(total)
            })
            .collect()
    }
}

impl Client for EmbeddedTeacher {
    fn identity(&self) -> String {
        self.inner.identity.clone()
    }

    fn complete<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Response, TeacherError>> {
        let me = self.clone();
        let request = request.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || me.complete_blocking(&request))
                .await
                .map_err(|e| TeacherError::Unsupported(format!("decode task failed: {e}")))?
        })
    }

    fn score<'a>(&'a self, prompt: &'a Prompt, continuations: &'a [String]) -> BoxFuture<'a, Result<Vec<f64>, TeacherError>> {
        let me = self.clone();
        let (prompt, continuations) = (prompt.clone(), continuations.to_vec());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || me.score_blocking(&prompt, &continuations))
                .await
                .map_err(|e| TeacherError::Unsupported(format!("score task failed: {e}")))?
        })
    }
}
