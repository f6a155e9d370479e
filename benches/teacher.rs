//! Benchmark: the embedded teacher's model on the SmolLM2 GGUF, beside `benches/llama_cpp_teacher.py`.
//!
//! `cargo bench --bench teacher -- [--threads N] [--repeat R] [--only a,b]` (or `LABFLOW_THREADS=N`) prints
//! one JSON line per measurement, medians of R runs (default 3) after one warm-up:
//!
//! - `prompt`: prompt processing, one 128-token prompt through `Model::forward` (f32 gemm);
//! - `decode_1`: single-stream decode, 128 tokens, one `forward_batch` step per token (Q8 path,
//!   and the f32 path once for comparison as `decode_1_f32`);
//! - `decode_16`: aggregate decode, 16 sequences (16 different prompts) × 128 tokens, every step one
//!   `forward_batch` over all 16 (Q8);
//! - `teacher_16`: the same through `EmbeddedTeacher` as 16 concurrent seeded requests of 128
//!   tokens (continuous batching scheduler, prefill included in the time; tokens counted are the
//!   generated ones); `teacher_1`: one such request alone;
//! - `teacher_1_constrained`, `teacher_16_constrained`: the same requests under the constraint
//!   [`FREE`], which never ends a choice early, so the difference is the constraint's cost per
//!   token (mask lookup or computation, masking the logits). Warm: the automaton and its masks
//!   are cached from the warm-up run, as for a step that sends every row the same constraint;
//!   `…_constrained_cold` gives each run a constraint of its own (compiled, and every mask
//!   computed, inside the timed run). The model's own pick nearly always fits [`FREE`], so these
//!   measure the fast path (a token kept when the constraint permits it); `…_strict_cold` runs
//!   under [`STRICT`], which refuses the model's pick often (capitals, digits, quotes, new
//!   lines), so token sets of new states are computed inside the timed run: the slow path.
//!   A refused pick often falls to the end of text, so strict choices end early and the batch
//!   thins out, which lowers aggregate tok/s whatever a token costs; `…_strict_lengths` is the
//!   unconstrained run with each request's `max_tokens` set to what its strict twin generated
//!   in the same repeat, the peer a strict run is compared with.
//!
//! - `mask_free`, `mask_strict`: seconds for one token set of a new state (`tokens_per_second`
//!   reads as token sets per second).
//!
//! Tokens fed while decoding are the greedy choices, so the sequences are real text.

use labflow::model::llama::argmax;
use labflow::model::{GgufFile, KvCache, Model, Precision, Tokenizer};
use labflow::teacher::constraint::{Constraint, TokenAutomaton, Vocabulary};
use labflow::teacher::{Client, EmbeddedTeacher, Prompt, Request, Sampling, TeacherOptions};
use std::path::PathBuf;
use std::time::Instant;

const PROMPT: &str = "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg, a goldsmith from Mainz, combined movable metal type, oil-based ink and a wooden screw press into a system that could produce books far faster than any scribe. Within fifty years presses were running in more than two hundred European cities, and the price of books fell sharply. Scholars argue about how much the new technology changed ideas, but few doubt that it changed how quickly they travelled. Write a short essay about what came next, and why it mattered. Consider the spread of literacy, the Reformation, the first scientific journals, newspapers, and the cheap pamphlets that carried arguments across borders faster than any army could march.";

/// The constrained benches' constraint: any text without `[`, up to 2,000 characters — longer
/// than 128 tokens write, so it never completes; every character count is a DFA state of its own,
/// so masks are computed (or looked up) for a new state at almost every token.
const FREE: &str = r"[^\[]{0,2000}";

/// The strict constraint: lower-case words, commas and full stops only, up to 2,000 characters
/// (each run adds a few, so it is new to the run).
const STRICT: &str = r"[a-z ,.]";

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let opt = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse::<usize>().ok());
    let threads = opt("--threads").or_else(|| std::env::var("LABFLOW_THREADS").ok().and_then(|t| t.parse().ok())).unwrap_or(1);
    let repeat = opt("--repeat").unwrap_or(3).max(1);
    // `--only decode_1,decode_16`: just those benches (for profiling one of them).
    let only: Option<Vec<String>> =
        args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).map(|v| v.split(',').map(str::to_string).collect());
    let wanted = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|w| w == name));
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let gguf = GgufFile::open(&path).expect("model present (bash models/fetch.sh)");
    let mut model = Model::from_gguf(&gguf).expect("model loads");
    model.quantize_q8();
    model.set_threads(threads).expect("compute threads start");
    let tok = Tokenizer::from_gguf(&gguf).expect("tokenizer");
    let mut prompt = tok.encode(PROMPT).expect("encodes");
    prompt.truncate(128);
    assert_eq!(prompt.len(), 128, "the bench prompt has at least 128 tokens");
    let n_gen = 128;
    let emit = |what: &str, tokens: usize, runs: Vec<f64>| {
        let med = median(runs.clone());
        println!(
            "{}",
            serde_json::json!({"tool": "labflow", "bench": what, "threads": threads, "tokens": tokens,
                "seconds_median": med, "tokens_per_second": tokens as f64 / med, "runs": runs})
        );
    };
    let time = |f: &mut dyn FnMut()| {
        f();
        (0..repeat)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect::<Vec<f64>>()
    };

    // Prompt processing.
    if wanted("prompt") {
        let runs = time(&mut || {
            let mut cache = KvCache::new(model.config(), prompt.len());
            model.forward(&prompt, &mut cache).expect("prefill");
        });
        emit("prompt", prompt.len(), runs);
    }

    // Decode, B sequences at once; the prompts differ per sequence (a different 64-token window).
    let decode = |b: usize, precision: Precision, n: usize| -> f64 {
        let mut caches: Vec<KvCache> = Vec::new();
        let mut next: Vec<u32> = Vec::new();
        for i in 0..b {
            let p = &prompt[i % 64..i % 64 + 64];
            let mut c = KvCache::new(model.config(), p.len() + n);
            next.push(argmax(&model.forward(p, &mut c).expect("prefill")));
            caches.push(c);
        }
        let t = Instant::now();
        for _ in 0..n {
            let mut steps: Vec<(u32, &mut KvCache)> = next.iter().copied().zip(caches.iter_mut()).collect();
            let out = model.forward_batch(&mut steps, precision).expect("step");
            next = out.iter().map(|l| argmax(l)).collect();
        }
        t.elapsed().as_secs_f64()
    };
    if wanted("decode_1") {
        emit("decode_1", n_gen, (0..repeat + 1).map(|_| decode(1, Precision::Q8, n_gen)).skip(1).collect());
    }
    if wanted("decode_1_f32") {
        emit("decode_1_f32", 32, vec![decode(1, Precision::F32, 32)]);
    }
    if wanted("decode_16") {
        emit("decode_16", 16 * n_gen, (0..repeat).map(|_| decode(16, Precision::Q8, n_gen)).collect());
    }
    if wanted("mask") {
        // The slow path's own cost: the token set of a state no run has met, over the model's
        // whole vocabulary, for the permissive [`FREE`] (nearly every token allowed: the trie
        // walk visits every node) and for [`STRICT`] (most subtrees cut at their first byte).
        let vocab = std::sync::Arc::new(Vocabulary::new(&tok.token_bytes(), &tok.eos_id().into_iter().collect::<Vec<_>>()));
        for (name, regex) in [("mask_free", FREE.to_string()), ("mask_strict", format!("{STRICT}{{0,2000}}"))] {
            let automaton = TokenAutomaton::compile(&regex, vocab.clone()).expect("compiles");
            let runs = (0..repeat)
                .map(|r| {
                    // Each call's state is new: one more character of the repetition.
                    let mut state = automaton.advance_bytes(automaton.start(), &vec![b'a'; 64 * r]);
                    let t = Instant::now();
                    for _ in 0..64 {
                        assert!(automaton.allowed(state).count() > 0);
                        state = automaton.advance_bytes(state, b"a");
                    }
                    t.elapsed().as_secs_f64() / 64.0
                })
                .collect();
            emit(name, 1, runs);
        }
    }
    if !wanted("teacher_1") && !wanted("teacher_16") {
        return;
    }

    // Through the teacher: 1 or 16 concurrent requests, continuous batching, with and without a
    // constraint.
    drop(model);
    let teacher = EmbeddedTeacher::load_with(&path, TeacherOptions { threads, ..TeacherOptions::fast() }).expect("teacher");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    // One run of `b` concurrent requests; `lengths[i]` caps request `i` (default `n_gen`).
    // Returns the seconds, the tokens generated, and each request's count.
    let run_capped = |b: usize, constraint: Option<&str>, lengths: Option<&[u64]>| -> (f64, u64, Vec<u64>) {
        let t = Instant::now();
        let used: Vec<u64> = rt.block_on(async {
            let reqs: Vec<Request> = (0..b)
                .map(|i| Request {
                    model: String::new(),
                    prompt: Prompt::Text(tok.decode(&prompt[i % 64..i % 64 + 64], false).expect("decodes")),
                    // No stop tokens are sampled at this temperature often enough to matter; the
                    // count below is what was generated.
                    sampling: Sampling {
                        temperature: 0.8,
                        max_tokens: lengths.map_or(n_gen as u32, |l| l[i] as u32),
                        seed: Some(i as u64),
                        constraint: constraint.map(|c| Constraint::Regex(c.to_string())),
                        ..Sampling::default()
                    },
                })
                .collect();
            let outs = futures::future::join_all(reqs.iter().map(|r| teacher.complete(r))).await;
            outs.into_iter().map(|o| o.expect("complete").usage.completion_tokens).collect()
        });
        (t.elapsed().as_secs_f64(), used.iter().sum(), used)
    };
    let run = |b: usize, constraint: Option<&str>| -> (f64, u64) {
        let (seconds, tokens, _) = run_capped(b, constraint, None);
        (seconds, tokens)
    };
    // Seconds per run scaled to the fewest tokens any run generated, so runs that stopped early
    // do not look faster.
    let emit_runs = |name: &str, results: Vec<(f64, u64)>| {
        let tokens = results.iter().map(|r| r.1).min().unwrap_or(0) as usize;
        emit(name, tokens, results.iter().map(|r| r.0 * tokens as f64 / r.1 as f64).collect());
    };
    // The three kinds of run take turns, so that a change in the machine's load (these machines
    // are shared) falls on all three rather than on whichever ran last.
    for (b, name) in [(1, "teacher_1"), (16, "teacher_16")].into_iter().filter(|(_, name)| wanted(name)) {
        run(b, None);
        run(b, Some(FREE));
        let (mut free, mut warm, mut cold, mut strict, mut lengths) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for r in 0..repeat {
            free.push(run(b, None));
            warm.push(run(b, Some(FREE)));
            // A constraint no run has used: the same language, a few more characters allowed.
            cold.push(run(b, Some(&format!(r"[^\[]{{0,{}}}", 2001 + b * 10 + r))));
            let (seconds, tokens, each) = run_capped(b, Some(&format!("{STRICT}{{0,{}}}", 2001 + b * 10 + r)), None);
            strict.push((seconds, tokens));
            let (seconds, tokens, _) = run_capped(b, None, Some(&each));
            lengths.push((seconds, tokens));
        }
        emit_runs(name, free);
        emit_runs(&format!("{name}_constrained"), warm);
        emit_runs(&format!("{name}_constrained_cold"), cold);
        emit_runs(&format!("{name}_strict_cold"), strict);
        emit_runs(&format!("{name}_strict_lengths"), lengths);
    }
}
