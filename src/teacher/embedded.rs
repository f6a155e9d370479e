//! The embedded teacher: a GGUF model or a Hugging Face safetensors folder running inside the
//! labflow process, no server.
//!
//! It renders chat prompts with the model's own template, tokenizes with the model's tokenizer
//! (rebuilt from the GGUF metadata, or the folder's `tokenizer.json`), and decodes with [`crate::model::Model`] and [`crate::model::sample::Sampler`].
//! Each choice of a request is one sequence on its own KV cache cloned from one shared prefill of
//! the prompt; choice `i` of a seeded request uses seed `seed + i`, so it equals what an `n = 1`
//! request with that seed returns ([`Client::seeds_choices_independently`]). The response cache
//! relies on that to fetch several missing choices in one request, and cached and uncached runs
//! agree.
//!
//! Continuous batching: prefill runs on tokio's blocking pool (f32, in fixed chunks that reuse
//! earlier prompts' shared prefixes from a bounded cache, [`crate::teacher::prefill`]), then the
//! request's sequences go through a channel to one decode thread that owns the decode loop. Every
//! step it samples the next token of each active sequence and runs one
//! [`Model::forward_batch`] over all of them (at most [`TeacherOptions::max_batch`]); sequences
//! join between steps as their prefills finish and leave on a stop token, a stop string or
//! `max_tokens`. A sequence's logits do not depend on what it is batched with (each row is
//! normalised, quantised and multiplied on its own, attention is per sequence), so a seeded
//! request gives the same text alone or among others.
//!
//! Streaming ([`Client::complete_streaming`]): after each step a sequence sends the part of its
//! text no later token can take back (`SeqJob::stream_final_part`), so the pieces always spell
//! the final choice and streaming changes nothing in the answer.

use crate::model::sample::{log_softmax, loop_holdback, repeating_tail, top_k, Sampler};
use crate::model::{ChatTemplate, GgufFile, KvCache, Model, ModelError, Precision, SafetensorsFolder, Tokenizer};
use crate::teacher::constraint::{TokenAutomaton, Vocabulary};
use crate::teacher::prefill::{PrefillStats, Prefiller, DEFAULT_PREFIX_CACHE_BYTES};
use crate::teacher::{Choice, Client, Delta, DeltaSender, FinishReason, Prompt, Request, Response, TeacherError, TokenLogprob, Usage};
use futures::future::BoxFuture;
use regex_automata::util::primitives::StateID;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

/// The command that fetches the default model, named in errors about a missing model file.
pub const FETCH_HINT: &str = "bash models/fetch.sh";

/// How the embedded teacher runs its model.
#[derive(Debug, Clone, PartialEq)]
pub struct TeacherOptions {
    /// Most sequences decoded in one batched step; more wait their turn (default 16).
    pub max_batch: usize,
    /// Threads each matrix product may use (default 1).
    pub threads: usize,
    /// Decode arithmetic; prefill and `score` always use the f32 reference. Default
    /// [`Precision::F32`]: the reference's arithmetic, so greedy text matches llama.cpp's F32 run
    /// token for token. [`Precision::Q8`] is several times faster and close, but not identical,
    /// near ties (see `tests/model_batch.rs` and `benches/README.md`).
    pub precision: Precision,
    /// Most bytes of prompt-prefix keys and values kept for reuse by later prompts (default
    /// [`DEFAULT_PREFIX_CACHE_BYTES`], 512 MiB; 0 keeps none). Results are the same at any size.
    pub prefix_cache_bytes: usize,
}

impl Default for TeacherOptions {
    fn default() -> TeacherOptions {
        TeacherOptions { max_batch: 16, threads: 1, precision: Precision::F32, prefix_cache_bytes: DEFAULT_PREFIX_CACHE_BYTES }
    }
}

impl TeacherOptions {
    /// The fast decode path: Q8_0 weights and activations, batches of 16, one thread.
    pub fn fast() -> TeacherOptions {
        TeacherOptions { precision: Precision::Q8, ..TeacherOptions::default() }
    }
}

/// What the decode thread shares with request handlers.
struct Core {
    model: Model,
    tokenizer: Tokenizer,
    /// Tokens that end a choice: end-of-sequence and the chat turn terminators.
    stop_ids: Vec<u32>,
    path: PathBuf,
    precision: Precision,
    /// The vocabulary as bytes, for decoding constraints.
    vocab: Arc<Vocabulary>,
    /// Compiled constraints by regex (cleared past [`AUTOMATA_CACHE`] entries). Each entry is
    /// compiled once: concurrent requests with a constraint not seen before wait for the first
    /// one's compile instead of each compiling their own.
    automata: Mutex<HashMap<String, Arc<OnceLock<Compiled>>>>,
    /// Prompt prefill, through the prefix cache.
    prefill: Prefiller,
}

/// A constraint's automaton, or why its regex does not compile (kept, so a bad constraint is not
/// recompiled for every request).
type Compiled = Result<Arc<TokenAutomaton>, crate::teacher::constraint::ConstraintError>;

/// Most compiled constraints kept at once.
const AUTOMATA_CACHE: usize = 256;

impl Core {
    /// The automaton of `request`'s constraint, compiled once per regex.
    fn automaton(&self, request: &Request) -> Result<Option<Arc<TokenAutomaton>>, TeacherError> {
        let Some(constraint) = &request.sampling.constraint else { return Ok(None) };
        let spec = |e: crate::teacher::constraint::ConstraintError| TeacherError::Spec {
            endpoint: self.path.display().to_string(),
            message: e.to_string(),
        };
        let regex = constraint.regex().map_err(spec)?;
        let entry = {
            let mut cache = self.automata.lock().expect("invariant: automata lock is never poisoned");
            if cache.len() >= AUTOMATA_CACHE && !cache.contains_key(&regex) {
                cache.clear();
            }
            cache.entry(regex.clone()).or_default().clone()
        };
        // Compiled outside the map's lock: other constraints are not held up by this one.
        let compiled = entry.get_or_init(|| TokenAutomaton::compile(&regex, self.vocab.clone()).map(Arc::new));
        compiled.clone().map(Some).map_err(spec)
    }
}

struct Inner {
    core: Arc<Core>,
    template: ChatTemplate,
    identity: String,
    /// The decode thread's queue; it exits when the last teacher clone drops this.
    jobs: mpsc::Sender<SeqJob>,
}

/// A GGUF model or a Hugging Face folder as a [`Client`]. Cheap to clone.
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

/// One choice on its way through the decode thread.
struct SeqJob {
    cache: KvCache,
    /// Logits for the next token to sample.
    logits: Vec<f32>,
    sampler: Sampler,
    request: Arc<Request>,
    /// Most tokens to generate (`max_tokens`, or less where the context is shorter).
    max_new: usize,
    generated: Vec<u32>,
    /// The request's constraint and this sequence's state in it.
    constraint: Option<(Arc<TokenAutomaton>, StateID)>,
    logprobs: Vec<TokenLogprob>,
    text: String,
    finish: FinishReason,
    reply: tokio::sync::oneshot::Sender<Result<(Choice, usize), TeacherError>>,
    /// Where this choice's text goes while it is generated (`complete_streaming`).
    stream: Option<Stream>,
}

/// A streamed choice: its index in the request, and the text sent so far.
struct Stream {
    deltas: DeltaSender,
    choice: u32,
    sent: String,
}

impl Stream {
    /// Send what `ready` adds to the text sent so far. `ready` only ever grows (it is the text
    /// nothing can take back); if it did not extend what was sent, nothing is sent.
    fn send_up_to(&mut self, ready: &str) {
        if ready.len() > self.sent.len() && ready.starts_with(self.sent.as_str()) {
            let piece = ready[self.sent.len()..].to_string();
            self.sent.push_str(&piece);
            // The reader may have gone away; decoding goes on for the final answer.
            let _ = self.deltas.send(Delta { choice: self.choice, text: piece });
        }
    }
}

/// Bytes at the end of `text` that begin one of `stops` (a proper prefix of it): held back from a
/// stream until the next tokens show whether the stop string follows.
fn stop_holdback(text: &str, stops: &[String]) -> usize {
    stops
        .iter()
        .flat_map(|stop| (1..stop.len()).filter(|&k| stop.is_char_boundary(k)).map(move |k| &stop[..k]))
        .filter(|prefix| text.ends_with(prefix))
        .map(str::len)
        .max()
        .unwrap_or(0)
}

impl SeqJob {
    /// Samples from the current logits: `Some(token)` to feed next, `None` when the choice is done.
    fn advance(&mut self, core: &Core) -> Result<Option<u32>, TeacherError> {
        let s = &self.request.sampling;
        let tok = &core.tokenizer;
        let err = |e: crate::model::ModelError| backend(&core.path, e);
        if self.generated.len() >= self.max_new {
            return Ok(None);
        }
        let next = match &self.constraint {
            None => self.sampler.sample(&self.logits),
            Some((automaton, state)) => {
                let left = (self.max_new - self.generated.len()) as u32;
                let sampler = &mut self.sampler;
                match automaton.pick(*state, &self.logits, left, |logits| sampler.sample(logits)) {
                    Some(next) => next,
                    None => {
                        // A whole match no token can extend (or, never with a byte-level
                        // vocabulary, no token fits): the choice is done.
                        self.finish = FinishReason::Stop;
                        return Ok(None);
                    }
                }
            }
        };
        if let Some((automaton, state)) = &mut self.constraint {
            *state = automaton.advance(*state, next);
        }
        if core.stop_ids.contains(&next) {
            self.finish = FinishReason::Stop;
            return Ok(None);
        }
        if let Some(k) = s.logprobs {
            let lp = log_softmax(&self.logits);
            let top = top_k(&lp, k as usize).into_iter().map(|(id, l)| (tok.decode(&[id], false).unwrap_or_default(), l)).collect();
            self.logprobs.push(TokenLogprob { token: tok.decode(&[next], false).map_err(err)?, logprob: lp[next as usize], top });
        }
        self.generated.push(next);
        if let Some(start) = repeating_tail(&self.generated) {
            // A runaway loop: keep one period of it and end as if cut by max_tokens.
            self.generated.truncate(start);
            self.text = tok.decode(&self.generated, true).map_err(err)?;
            self.finish = FinishReason::Length;
            return Ok(None);
        }
        self.text = tok.decode(&self.generated, true).map_err(err)?;
        if let Some(cut) = s.stop.iter().filter(|st| !st.is_empty()).filter_map(|st| self.text.find(st.as_str())).min() {
            self.text.truncate(cut);
            self.finish = FinishReason::Stop;
            return Ok(None);
        }
        if self.constraint.as_ref().is_some_and(|(automaton, state)| automaton.is_complete(*state)) {
            // This token made the text a whole match nothing can extend: done now, with no
            // forward step for a token that could not be sampled, and `Stop` even when it was the
            // last one `max_tokens` allowed.
            self.finish = FinishReason::Stop;
            return Ok(None);
        }
        Ok((self.generated.len() < self.max_new).then_some(next))
    }

    /// Stream the part of the text that is final now: not the tokens a loop cut could still
    /// drop, not an unfinished UTF-8 character (decoded as U+FFFD), not the start of a stop string.
    fn stream_final_part(&mut self, core: &Core) {
        let Some(stream) = &mut self.stream else { return };
        let hold = loop_holdback(&self.generated);
        let kept;
        let text = if hold == 0 {
            self.text.as_str()
        } else {
            match core.tokenizer.decode(&self.generated[..self.generated.len() - hold], true) {
                Ok(t) => {
                    kept = t;
                    kept.as_str()
                }
                // The whole text decoded; a failure here only delays the stream until the end.
                Err(_) => return,
            }
        };
        let text = text.trim_end_matches('\u{FFFD}');
        let ready = &text[..text.len() - stop_holdback(text, &self.request.sampling.stop)];
        stream.send_up_to(ready);
    }

    fn finish(mut self) {
        if let Some(stream) = &mut self.stream {
            stream.send_up_to(&self.text);
        }
        let choice =
            Choice { text: self.text, finish_reason: self.finish, logprobs: self.request.sampling.logprobs.map(|_| self.logprobs) };
        // The requester may have gone away (cancelled); nothing to do then.
        let _ = self.reply.send(Ok((choice, self.generated.len())));
    }
}

/// The decode loop: admit waiting sequences up to `max_batch`, sample each active one, run one
/// batched step for those that continue, repeat; block on the queue when idle.
fn decode_loop(core: Arc<Core>, jobs: mpsc::Receiver<SeqJob>, max_batch: usize) {
    let mut waiting: VecDeque<SeqJob> = VecDeque::new();
    let mut active: Vec<SeqJob> = Vec::new();
    loop {
        if active.is_empty() && waiting.is_empty() {
            match jobs.recv() {
                Ok(job) => waiting.push_back(job),
                Err(_) => return,
            }
        }
        waiting.extend(jobs.try_iter());
        while active.len() < max_batch {
            match waiting.pop_front() {
                Some(job) => active.push(job),
                None => break,
            }
        }
        // Sample, every sequence on its own (its sampler, its constraint state), spread over the
        // model's workers: a constraint's token set for a new state costs milliseconds, and the
        // whole team would wait for it. Finished sequences leave.
        let picks = core.model.map_on_workers(&mut active, |seq| {
            let pick = seq.advance(&core);
            if let Ok(Some(_)) = pick {
                seq.stream_final_part(&core);
            }
            pick
        });
        let mut feed: Vec<u32> = Vec::with_capacity(active.len());
        let mut kept: Vec<SeqJob> = Vec::with_capacity(active.len());
        for (seq, pick) in active.drain(..).zip(picks) {
            match pick {
                Ok(Some(next)) => {
                    feed.push(next);
                    kept.push(seq);
                }
                Ok(None) => seq.finish(),
                Err(e) => {
                    let _ = seq.reply.send(Err(e));
                }
            }
        }
        active = kept;
        if active.is_empty() {
            continue;
        }
        let mut steps: Vec<(u32, &mut KvCache)> = feed.iter().copied().zip(active.iter_mut().map(|s| &mut s.cache)).collect();
        match core.model.forward_batch(&mut steps, core.precision) {
            Ok(logits) => active.iter_mut().zip(logits).for_each(|(s, l)| s.logits = l),
            Err(e) => {
                for seq in active.drain(..) {
                    let _ = seq.reply.send(Err(backend(&core.path, &e)));
                }
            }
        }
    }
}

/// What a model source yields: the pieces the teacher is built from.
struct Loaded {
    model: Model,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    identity: String,
}

/// A GGUF file; its identity is `embedded:{file name}@{blake3 of the file}`.
fn load_gguf(path: &Path) -> Result<Loaded, TeacherError> {
    let bytes = std::fs::read(path).map_err(|e| backend(path, e))?;
    let digest = blake3::hash(&bytes).to_hex();
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let identity = format!("embedded:{name}@{}", &digest[..16]);
    let file = GgufFile::parse(path, bytes).map_err(|e| backend(path, e))?;
    let model = Model::from_gguf(&file).map_err(|e| backend(path, e))?;
    let tokenizer = Tokenizer::from_gguf(&file).map_err(|e| backend(path, e))?;
    let template = ChatTemplate::from_gguf(&file).map_err(|e| backend(path, e))?;
    Ok(Loaded { model, tokenizer, template, identity })
}

/// The files of a Hugging Face folder besides the weights that go into its identity.
const HF_TOKENIZER_FILES: [&str; 2] = ["tokenizer.json", "tokenizer_config.json"];

/// A Hugging Face safetensors folder; its identity is `embedded-hf:{folder name}@{blake3 of
/// config.json, the weight files and the tokenizer files}`, so it never equals a GGUF file's,
/// even when the weights are the same.
fn load_folder(dir: &Path) -> Result<Loaded, TeacherError> {
    let err = |e: ModelError| backend(dir, e);
    // The small files first, so a folder missing one fails before the weights are read.
    let mut small = Vec::new();
    for name in HF_TOKENIZER_FILES {
        let path = dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => small.push((name, bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(err(ModelError::NotFound { path, hint: Some(crate::model::hf_config::FOLDER_HINT.into()) }))
            }
            Err(source) => return Err(err(ModelError::Io { path, source })),
        }
    }
    if let Ok(bytes) = std::fs::read(dir.join("chat_template.jinja")) {
        small.push(("chat_template.jinja", bytes));
    }
    let tokenizer = Tokenizer::from_hf_folder(dir).map_err(err)?;
    let template = ChatTemplate::from_hf_folder(dir).map_err(err)?;
    let folder = SafetensorsFolder::open(dir).map_err(err)?;
    let mut hasher = blake3::Hasher::new();
    let mut add = |name: &str, bytes: &[u8]| {
        hasher.update(name.as_bytes());
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    for (path, bytes) in folder.files() {
        add(&path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), bytes);
    }
    for (name, bytes) in &small {
        add(name, bytes);
    }
    let model = Model::from_safetensors(&folder).map_err(err)?;
    let name = dir.canonicalize().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).unwrap_or_default();
    let identity = format!("embedded-hf:{name}@{}", &hasher.finalize().to_hex()[..16]);
    Ok(Loaded { model, tokenizer, template, identity })
}

impl EmbeddedTeacher {
    /// Load a model with the default [`TeacherOptions`]: a GGUF file, or a Hugging Face folder
    /// (config.json, safetensors weights, tokenizer.json, tokenizer_config.json). A missing
    /// file names the fetch command; a missing file inside a folder is named.
    pub fn load(path: impl AsRef<Path>) -> Result<EmbeddedTeacher, TeacherError> {
        EmbeddedTeacher::load_with(path, TeacherOptions::default())
    }

    /// Load a GGUF file or a Hugging Face safetensors folder (weights as f32, plus Q8_0 copies
    /// for [`Precision::Q8`]) and start its decode thread.
    pub fn load_with(path: impl AsRef<Path>, options: TeacherOptions) -> Result<EmbeddedTeacher, TeacherError> {
        let path = path.as_ref();
        let Loaded { mut model, tokenizer, template, identity } = if path.is_dir() {
            load_folder(path)?
        } else if path.is_file() {
            load_gguf(path)?
        } else {
            return Err(backend(
                path,
                format!(
                    "model file not found; fetch the default model with `{FETCH_HINT}` or pass the path of a GGUF file or of a Hugging Face safetensors folder"
                ),
            ));
        };
        if options.precision == Precision::Q8 {
            model.quantize_q8();
        }
        model.set_threads(options.threads).map_err(|e| backend(path, e))?;
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
        let vocab = Arc::new(Vocabulary::new(&tokenizer.token_bytes(), &stop_ids));
        let core = Arc::new(Core {
            model,
            tokenizer,
            stop_ids,
            path: path.to_path_buf(),
            precision: options.precision,
            vocab,
            automata: Mutex::new(HashMap::new()),
            prefill: Prefiller::new(options.prefix_cache_bytes),
        });
        let (tx, rx) = mpsc::channel();
        let worker = Arc::clone(&core);
        let max_batch = options.max_batch.max(1);
        std::thread::Builder::new()
            .name("labflow-decode".into())
            .spawn(move || decode_loop(worker, rx, max_batch))
            .map_err(|e| backend(path, format!("cannot start the decode thread: {e}")))?;
        Ok(EmbeddedTeacher { inner: Arc::new(Inner { core, template, identity, jobs: tx }) })
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
        self.inner.core.tokenizer.encode(text).map_err(|e| self.err(e))
    }

    /// Prompt positions prefilled so far: taken from the prefix cache, and run through the model.
    pub fn prefill_stats(&self) -> PrefillStats {
        self.inner.core.prefill.stats()
    }

    /// Bytes of keys and values the prefix cache holds now.
    pub fn prefix_cache_bytes(&self) -> usize {
        self.inner.core.prefill.cached_bytes()
    }

    fn err(&self, e: impl std::fmt::Display) -> TeacherError {
        backend(&self.inner.core.path, e)
    }

    /// Prefill (on the calling thread) and hand every choice to the decode thread; returns the
    /// prompt length and one receiver per choice.
    #[allow(clippy::type_complexity)]
    fn start(
        &self,
        request: Request,
        deltas: Option<DeltaSender>,
    ) -> Result<(usize, Vec<tokio::sync::oneshot::Receiver<Result<(Choice, usize), TeacherError>>>), TeacherError> {
        let s = &request.sampling;
        let automaton = self.inner.core.automaton(&request)?;
        let prompt = self.tokenize(&self.render(&request.prompt)?)?;
        if prompt.is_empty() {
            return Err(TeacherError::Spec { endpoint: self.inner.identity.clone(), message: "the prompt is empty".into() });
        }
        let model = &self.inner.core.model;
        let context = model.config().context_length;
        if prompt.len() >= context {
            return Err(TeacherError::Spec {
                endpoint: self.inner.identity.clone(),
                message: format!("the prompt has {} tokens; the model's context is {context}", prompt.len()),
            });
        }
        let capacity = (prompt.len() + s.max_tokens as usize).min(context);
        let (prefill, first_logits) = self.inner.core.prefill.run(model, &prompt, capacity).map_err(|e| self.err(e))?;
        let request = Arc::new(request);
        let mut receivers = Vec::new();
        for i in 0..request.sampling.n.max(1) {
            let s = &request.sampling;
            let sampler = Sampler::new(s.temperature, s.top_p, s.top_k.map(|k| k as usize), s.seed.map(|seed| seed.wrapping_add(i as u64)));
            let (reply, rx) = tokio::sync::oneshot::channel();
            let job = SeqJob {
                cache: prefill.clone(),
                logits: first_logits.clone(),
                sampler,
                request: Arc::clone(&request),
                max_new: capacity - prompt.len(),
                generated: Vec::new(),
                constraint: automaton.as_ref().map(|a| (a.clone(), a.start())),
                logprobs: Vec::new(),
                text: String::new(),
                finish: FinishReason::Length,
                reply,
                stream: deltas.as_ref().map(|deltas| Stream { deltas: deltas.clone(), choice: i, sent: String::new() }),
            };
            self.inner.jobs.send(job).map_err(|_| self.err("the decode thread has stopped"))?;
            receivers.push(rx);
        }
        Ok((prompt.len(), receivers))
    }

    fn score_blocking(&self, prompt: &Prompt, continuations: &[String]) -> Result<Vec<f64>, TeacherError> {
        let prompt_ids = self.tokenize(&self.render(prompt)?)?;
        if prompt_ids.is_empty() {
            return Err(TeacherError::Spec { endpoint: self.inner.identity.clone(), message: "the prompt is empty".into() });
        }
        let model = &self.inner.core.model;
        let conts: Vec<Vec<u32>> = continuations.iter().map(|c| self.tokenize(c)).collect::<Result<_, _>>()?;
        let longest = conts.iter().map(Vec::len).max().unwrap_or(0);
        let (mut cache, last) = self.inner.core.prefill.run(model, &prompt_ids, prompt_ids.len() + longest).map_err(|e| self.err(e))?;
        let vocab = model.config().vocab_size;
        conts
            .iter()
            .map(|ids| {
                let Some((&first, rest)) = ids.split_first() else { return Ok(0.0) };
                // The first continuation token is predicted by the prompt's last position; each
                // later one by the position before it.
                let mut total = log_softmax(&last)[first as usize];
                if !rest.is_empty() {
                    // On the prompt's cache, cut back to the prompt afterwards (no copy of it).
                    let all = model.forward_all(&ids[..ids.len() - 1], &mut cache).map_err(|e| self.err(e))?;
                    cache.truncate(prompt_ids.len());
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
        self.run(request, None)
    }

    /// Pieces are sent from the decode loop as each token makes more of the text final.
    fn complete_streaming<'a>(&'a self, request: &'a Request, deltas: DeltaSender) -> BoxFuture<'a, Result<Response, TeacherError>> {
        self.run(request, Some(deltas))
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

    /// True: choice `i` samples with seed `seed + i` from the shared prefill, and a sequence's
    /// logits do not depend on the sequences decoded beside it (module doc).
    fn seeds_choices_independently(&self) -> bool {
        true
    }
}

impl EmbeddedTeacher {
    /// `complete`, streaming to `deltas` when given.
    fn run<'a>(&'a self, request: &'a Request, deltas: Option<DeltaSender>) -> BoxFuture<'a, Result<Response, TeacherError>> {
        let me = self.clone();
        let request = request.clone();
        Box::pin(async move {
            let (prompt_tokens, receivers) = tokio::task::spawn_blocking(move || me.start(request, deltas))
                .await
                .map_err(|e| TeacherError::Unsupported(format!("prefill task failed: {e}")))??;
            let mut choices = Vec::with_capacity(receivers.len());
            let mut completion_tokens = 0;
            for rx in receivers {
                let (choice, used) = rx.await.map_err(|_| self.err("the decode thread dropped a sequence"))??;
                completion_tokens += used as u64;
                choices.push(choice);
            }
            Ok(Response { choices, usage: Usage { prompt_tokens: prompt_tokens as u64, completion_tokens } })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::stop_holdback;

    #[test]
    fn the_start_of_a_stop_string_is_held_back() {
        let stops = vec!["\n\n".to_string(), "[End]".to_string(), "é!".to_string()];
        assert_eq!(stop_holdback("answer\n", &stops), 1);
        assert_eq!(stop_holdback("answer [En", &stops), 3);
        assert_eq!(stop_holdback("answer", &stops), 0);
        // Only whole characters of a stop string count as its start.
        assert_eq!(stop_holdback("café", &stops), 2);
        assert_eq!(stop_holdback("x", &[]), 0);
    }
}
