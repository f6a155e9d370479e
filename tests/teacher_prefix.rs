//! Prefix KV reuse in the embedded teacher (`teacher::prefill`), on the real SmolLM2 GGUF: a
//! teacher whose prefix cache is warm answers exactly (bit for bit: text, log-probabilities,
//! label scores) what one without a cache answers, whatever order the prompts come in, whether
//! they run one at a time or together through continuous batching, and under a budget so small
//! that chunks are evicted all the time.
//!
//! Without the model file the tests print SKIPPED (run `bash models/fetch.sh`); with
//! `LABFLOW_REQUIRE_MODEL=1` (CI) they fail instead.

use futures::future::join_all;
use labflow::teacher::prefill::PREFILL_CHUNK;
use labflow::teacher::{ChatMessage, Client, EmbeddedTeacher, Prompt, Request, Response, Sampling, TeacherOptions};
use std::path::PathBuf;
use std::sync::OnceLock;

/// Keys and values of one chunk of SmolLM2-135M: 30 blocks × (K and V) × 64 positions × 192 f32.
const CHUNK_BYTES: usize = 30 * 2 * PREFILL_CHUNK * 192 * 4;

/// Three teachers on the same file: no prefix cache (the reference), the default cache, and a
/// cache of three chunks.
struct Teachers {
    cold: EmbeddedTeacher,
    warm: EmbeddedTeacher,
    tiny: EmbeddedTeacher,
}

fn teachers() -> Option<&'static Teachers> {
    static T: OnceLock<Option<Teachers>> = OnceLock::new();
    T.get_or_init(|| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
        if !path.is_file() {
            assert_ne!(std::env::var("LABFLOW_REQUIRE_MODEL").as_deref(), Ok("1"), "model missing: run bash models/fetch.sh");
            eprintln!("SKIPPED: {} missing; run bash models/fetch.sh", path.display());
            return None;
        }
        let load = |bytes| EmbeddedTeacher::load_with(&path, TeacherOptions { prefix_cache_bytes: bytes, ..TeacherOptions::default() }).expect("loads");
        Some(Teachers { cold: load(0), warm: load(TeacherOptions::default().prefix_cache_bytes), tiny: load(3 * CHUNK_BYTES) })
    })
    .as_ref()
}

/// A document of several chunks that every prompt below shares, as the knowledge judges share
/// a document chunk.
fn document() -> String {
    let facts = [
        "The black-capped chickadee is a small songbird of North American forests.",
        "It stores seeds in bark crevices and remembers thousands of hiding places.",
        "In winter it lowers its body temperature at night to save energy.",
        "Its call, chick-a-dee-dee-dee, has more dee notes when a predator is near.",
        "Flocks of chickadees are joined by nuthatches and woodpeckers in winter.",
        "The bird grows new neurons each autumn, when it caches the most food.",
    ];
    (0..2).flat_map(|round| facts.iter().map(move |f| format!("{}. {f}", round + 1))).collect::<Vec<_>>().join("\n")
}

fn judge_prompt(question: &str, answer: &str) -> Prompt {
    Prompt::Chat(vec![
        ChatMessage::new("system", "You are a strict reviewer. You reply with a verdict and nothing else."),
        ChatMessage::new(
            "user",
            format!(
                "[Start of Document]\n{}\n[End of Document]\n[Start of Question]\n{question}\n[End of Question]\n[Start of Answer]\n{answer}\n[End of Answer]\nIs the answer supported by the document? Reply YES or NO.",
                document()
            ),
        ),
    ])
}

/// One prompt's work: a seeded sampled completion with two choices and log-probabilities, and
/// the scores of two labels.
#[derive(Debug, PartialEq)]
struct Outcome {
    response: Response,
    scores: Vec<u64>,
}

async fn outcome(t: &EmbeddedTeacher, prompt: &Prompt, seed: u64) -> Outcome {
    let sampling = Sampling { temperature: 0.8, top_p: 0.95, max_tokens: 6, seed: Some(seed), n: 2, logprobs: Some(2), ..Sampling::default() };
    let response = t.complete(&Request { model: String::new(), prompt: prompt.clone(), sampling }).await.expect("complete");
    let labels = ["YES".to_string(), "NO".to_string()];
    // Bits, so that the comparison is exact (no NaN = NaN subtleties).
    let scores = t.score(prompt, &labels).await.expect("score").iter().map(|s| s.to_bits()).collect();
    Outcome { response, scores }
}

/// Prompts sharing the document at different lengths, plus two raw-text prompts of which the
/// first is a whole number of chunks long and a prefix of the second.
fn prompts(t: &EmbeddedTeacher) -> Vec<Prompt> {
    let mut out: Vec<Prompt> = [
        ("What does the chickadee store?", "Seeds, in bark crevices."),
        ("When does the chickadee grow new neurons?", "Each autumn."),
        ("Why?", "Eagles and hawks."),
    ]
    .iter()
    .map(|(q, a)| judge_prompt(q, a))
    .collect();
    let mut text = document();
    let mut extra = 0;
    while t.tokenize(&text).expect("tokenize").len() % PREFILL_CHUNK != 0 {
        text.push_str(if extra % 2 == 0 { " and" } else { " so" });
        extra += 1;
    }
    let longer = format!("{text} Therefore the chickadee");
    let (whole, more) = (t.tokenize(&text).expect("tokenize"), t.tokenize(&longer).expect("tokenize"));
    assert!(more.starts_with(&whole), "the whole-chunk prompt is a token prefix of the longer one");
    out.push(Prompt::Text(longer));
    out.push(Prompt::Text(text));
    out
}

async fn reference() -> &'static [Outcome] {
    static R: tokio::sync::OnceCell<Vec<Outcome>> = tokio::sync::OnceCell::const_new();
    let t = &teachers().expect("checked by the caller").cold;
    R.get_or_init(|| async {
        let mut out = Vec::new();
        for (i, p) in prompts(t).iter().enumerate() {
            out.push(outcome(t, p, 7 + i as u64).await);
        }
        out
    })
    .await
}

#[tokio::test]
async fn a_warm_cache_gives_the_bits_of_no_cache_in_any_order() {
    let Some(ts) = teachers() else { return };
    let want = reference().await;
    let prompts = prompts(&ts.warm);
    let document = ts.warm.tokenize(&document()).expect("tokenize").len();
    assert!(document >= 3 * PREFILL_CHUNK, "the document spans {document} tokens");
    let before = ts.warm.prefill_stats();
    let forward: Vec<usize> = (0..prompts.len()).collect();
    let backward: Vec<usize> = forward.iter().rev().copied().collect();
    for order in [forward, backward] {
        for i in order {
            assert_eq!(outcome(&ts.warm, &prompts[i], 7 + i as u64).await, want[i], "prompt {i}");
        }
    }
    let stats = ts.warm.prefill_stats();
    // The shared document is at least two chunks, reused by all but the first prompt's calls.
    assert!(stats.reused - before.reused >= (2 * PREFILL_CHUNK * prompts.len()) as u64, "{before:?} → {stats:?}");
    assert!(ts.warm.prefix_cache_bytes() > 0);
}

#[tokio::test]
async fn concurrent_prompts_sharing_a_prefix_through_continuous_batching_give_the_same_bits() {
    let Some(ts) = teachers() else { return };
    let want = reference().await;
    let prompts = prompts(&ts.warm);
    // Everything at once: prefills wait on each other's claims or hit the cache, and all
    // sequences decode in one batch.
    let runs = join_all((0..prompts.len()).map(|i| {
        let (t, p) = (&ts.warm, &prompts[i]);
        async move { (i, outcome(t, p, 7 + i as u64).await) }
    }))
    .await;
    for (i, got) in runs {
        assert_eq!(got, want[i], "prompt {i}");
    }
}

#[tokio::test]
async fn a_three_chunk_budget_evicts_and_still_gives_the_same_bits() {
    let Some(ts) = teachers() else { return };
    let want = reference().await;
    let prompts = prompts(&ts.tiny);
    for (i, p) in prompts.iter().enumerate() {
        assert_eq!(outcome(&ts.tiny, p, 7 + i as u64).await, want[i], "prompt {i}");
        assert!(ts.tiny.prefix_cache_bytes() <= 3 * CHUNK_BYTES, "{} bytes held", ts.tiny.prefix_cache_bytes());
    }
    assert!(ts.tiny.prefill_stats().reused > 0, "the three chunks kept were reused");
}
