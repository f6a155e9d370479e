//! The embedded teacher through the `Client` trait, on the real SmolLM2 GGUF: greedy text equals
//! llama.cpp's (F32 run, from `tests/fixtures/model/llama_cpp_smollm2.json`), seeded sampling
//! is reproducible, the response cache fetches missing choices in one request and agrees with
//! uncached single choices, stop strings and max_tokens end choices, log-probabilities are
//! consistent, and `score` ranks a right label above a wrong one.
//!
//! Without the model file the tests print SKIPPED (run `bash models/fetch.sh`); with
//! `LABFLOW_REQUIRE_MODEL=1` (CI) they fail instead.

use labflow::store::Location;
use labflow::teacher::cache::{CacheConfig, CachedClient, ResponseCache};
use labflow::teacher::counted::Counted;
use labflow::teacher::{ChatMessage, Client, EmbeddedTeacher, FinishReason, Prompt, Request, Sampling};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

fn model_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The teacher, loaded once per test binary; `None` (after a SKIPPED line) without the model.
fn teacher() -> Option<&'static EmbeddedTeacher> {
    static T: OnceLock<Option<EmbeddedTeacher>> = OnceLock::new();
    T.get_or_init(|| {
        let path = model_path();
        if !path.is_file() {
            assert_ne!(std::env::var("LABFLOW_REQUIRE_MODEL").as_deref(), Ok("1"), "model missing: run bash models/fetch.sh");
            eprintln!("SKIPPED: {} missing; run bash models/fetch.sh", path.display());
            return None;
        }
        Some(EmbeddedTeacher::load(&path).expect("model loads"))
    })
    .as_ref()
}

fn request(prompt: Prompt, sampling: Sampling) -> Request {
    Request { model: String::new(), prompt, sampling }
}

#[tokio::test]
async fn greedy_text_matches_llama_cpp_f32_tokens() {
    let Some(t) = teacher() else { return };
    let fixture: Value = serde_json::from_str(include_str!("fixtures/model/llama_cpp_smollm2.json")).expect("fixture");
    for case in
        fixture["greedy"].as_array().expect("greedy cases").iter().filter(|c| c["name"] == "chat_colors" || c["name"] == "raw_story")
    {
        let prompt = match case["kind"].as_str() {
            Some("chat") => Prompt::Chat(serde_json::from_value::<Vec<ChatMessage>>(case["prompt"].clone()).expect("messages")),
            _ => Prompt::Text(case["prompt"].as_str().expect("text").to_string()),
        };
        let want: Vec<u32> = serde_json::from_value(case["f32"]["tokens"].clone()).expect("tokens");
        let n = 12;
        let got = t.complete(&request(prompt.clone(), Sampling::greedy(n))).await.expect("complete");
        let choice = &got.choices[0];
        assert_eq!(choice.finish_reason, FinishReason::Length);
        assert_eq!(got.usage.completion_tokens, n as u64);
        // Decode llama.cpp's tokens with our tokenizer: the teacher's text must be exactly that.
        let want_text = {
            let ids = t.tokenize(&choice.text).expect("tokenize");
            assert_eq!(ids, want[..ids.len()].to_vec(), "{}: tokens of our text vs llama.cpp's", case["name"]);
            choice.text.clone()
        };
        assert!(!want_text.is_empty());
        let rendered = t.render(&prompt).expect("render");
        let prompt_ids: Vec<u32> = serde_json::from_value(case["prompt_ids"].clone()).expect("prompt ids");
        assert_eq!(t.tokenize(&rendered).expect("tokenize"), prompt_ids, "{}: prompt tokens", case["name"]);
    }
}

#[tokio::test]
async fn seeded_sampling_is_reproducible_and_choices_follow_the_seed_convention() {
    let Some(t) = teacher() else { return };
    let prompt = Prompt::Chat(vec![ChatMessage::new("user", "Name a fruit.")]);
    let sampling = Sampling { temperature: 0.9, top_p: 0.95, max_tokens: 6, seed: Some(42), n: 2, ..Sampling::default() };
    let a = t.complete(&request(prompt.clone(), sampling.clone())).await.expect("complete");
    let b = t.complete(&request(prompt.clone(), sampling.clone())).await.expect("complete");
    assert_eq!(a, b, "same seed and request → same text");
    assert_eq!(a.choices.len(), 2);
    let second = t.complete(&request(prompt, Sampling { n: 1, seed: Some(43), ..sampling })).await.expect("complete");
    assert_eq!(second.choices[0], a.choices[1], "choice i of a seeded request uses seed + i");
}

#[tokio::test]
async fn the_cache_asks_for_missing_choices_in_one_request_and_agrees_with_single_choices() {
    let Some(t) = teacher() else { return };
    assert!(t.seeds_choices_independently());
    let counted = Counted::new(Arc::new(t.clone()));
    let location = Location::memory(Arc::new(object_store::memory::InMemory::new()), "");
    let cache = Arc::new(ResponseCache::open(location, CacheConfig::default()).await.expect("open cache"));
    let cached = CachedClient::new(Arc::clone(&counted), cache);
    let prompt = Prompt::Chat(vec![ChatMessage::new("user", "Name a color.")]);
    let sampling = |n, seed| Sampling { temperature: 0.9, top_p: 0.95, max_tokens: 6, seed: Some(seed), n, ..Sampling::default() };
    let three = cached.complete(&request(prompt.clone(), sampling(3, 9))).await.expect("complete");
    assert_eq!(counted.calls(), 1, "one request for three fresh choices");
    let five = cached.complete(&request(prompt.clone(), sampling(5, 9))).await.expect("complete");
    assert_eq!(counted.calls(), 2, "one request for choices 3 and 4");
    assert_eq!(five.choices[..3], three.choices[..]);
    // The reference: uncached, one choice per request with seed 9 + i; and uncached n = 5.
    for (i, choice) in five.choices.iter().enumerate() {
        let one = t.complete(&request(prompt.clone(), sampling(1, 9 + i as u64))).await.expect("complete");
        assert_eq!(&one.choices[0], choice, "choice {i}");
    }
    assert_eq!(t.complete(&request(prompt, sampling(5, 9))).await.expect("complete").choices, five.choices);
}

#[tokio::test]
async fn stop_strings_logprobs_and_max_tokens() {
    let Some(t) = teacher() else { return };
    let prompt = Prompt::Text("Once upon a time, in a small village by the sea,".into());
    let free = t.complete(&request(prompt.clone(), Sampling { logprobs: Some(3), ..Sampling::greedy(6) })).await.expect("complete");
    let text = free.choices[0].text.clone();
    let lps = free.choices[0].logprobs.as_ref().expect("logprobs");
    assert_eq!(lps.len(), 6);
    for lp in lps {
        assert_eq!(lp.top.len(), 3);
        assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1), "top sorted");
        // Greedy: the chosen token is the most likely one.
        assert!((lp.logprob - lp.top[0].1).abs() < 1e-9 && lp.logprob <= 0.0);
    }
    // Stop at the second word of the greedy text: the text ends right before it.
    let words: Vec<&str> = text.split_whitespace().collect();
    assert!(words.len() >= 2, "{text:?}");
    let stop = format!(" {}", words[1]);
    let stopped = t.complete(&request(prompt, Sampling { stop: vec![stop.clone()], ..Sampling::greedy(6) })).await.expect("complete");
    assert_eq!(stopped.choices[0].finish_reason, FinishReason::Stop);
    assert_eq!(stopped.choices[0].text, text[..text.find(&stop).expect("stop in text")]);
}

#[tokio::test]
async fn score_prefers_the_right_label() {
    let Some(t) = teacher() else { return };
    let prompt = Prompt::Text("The capital of France is".into());
    let scores =
        t.score(&prompt, &[" Paris".to_string(), " London".to_string(), " Paris, the city of light".to_string()]).await.expect("score");
    assert!(scores[0] > scores[1], "{scores:?}");
    assert!(scores[2] < scores[0], "a longer continuation has lower joint probability: {scores:?}");
    // A one-token continuation's score is the logprob the decoder reports for it.
    let one = t.complete(&request(prompt, Sampling { logprobs: Some(5), ..Sampling::greedy(1) })).await.expect("complete");
    let lp = &one.choices[0].logprobs.as_ref().expect("logprobs")[0];
    if lp.token == " Paris" {
        assert!((lp.logprob - scores[0]).abs() < 1e-6, "{} vs {}", lp.logprob, scores[0]);
    }
}

#[test]
fn a_missing_model_names_the_fetch_command() {
    let err = EmbeddedTeacher::load("/no/such/model.gguf").expect_err("missing file");
    assert!(err.to_string().contains("bash models/fetch.sh"), "{err}");
}

#[test]
fn chat_with_a_cache_answers_the_second_time_from_it() {
    if teacher().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("not/yet/there");
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_labflow"))
            .args([
                "chat",
                "--model",
                model_path().to_str().expect("utf-8"),
                "--max-tokens",
                "6",
                "--cache",
                cache.to_str().expect("utf-8"),
                "Name a color.",
            ])
            .output()
            .expect("labflow chat runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let first = run();
    assert!(!first.trim().is_empty());
    let segments = std::fs::read_dir(cache.join("cache")).expect("cache folder created").count();
    assert!(segments >= 1);
    assert_eq!(run(), first);
}

#[tokio::test]
async fn concurrent_seeded_requests_give_the_same_text_as_alone() {
    let Some(t) = teacher() else { return };
    let prompts = [
        "Name a fruit.",
        "Write a haiku about rain.",
        "What is 2+2?",
        "Describe a cat.",
        "Say hello in French.",
        "List three colors.",
        "Who wrote Hamlet?",
        "Give me a word that rhymes with moon.",
    ];
    let reqs: Vec<Request> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let max_tokens = 6 + 3 * i as u32; // different lengths: sequences leave the batch at different steps
            request(
                Prompt::Chat(vec![ChatMessage::new("user", *p)]),
                Sampling { temperature: 0.8, top_p: 0.95, max_tokens, seed: Some(100 + i as u64), ..Sampling::default() },
            )
        })
        .collect();
    let mut alone = Vec::new();
    for r in &reqs {
        alone.push(t.complete(r).await.expect("complete"));
    }
    let together = futures::future::join_all(reqs.iter().map(|r| t.complete(r))).await;
    for (i, (a, b)) in alone.iter().zip(together).enumerate() {
        assert_eq!(a, &b.expect("complete"), "request {i}: alone vs batched with 7 others");
    }
}

/// With two compute threads, the sampling between steps runs on the model's workers (each
/// sequence with its own sampler and constraint state): concurrent seeded requests, half of them
/// under a constraint the model's own picks often break, give what the one-thread teacher gives
/// each alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_threads_sampling_on_the_workers_give_what_one_thread_gives_alone() {
    let Some(one) = teacher() else { return };
    let options = labflow::teacher::TeacherOptions { threads: 2, ..labflow::teacher::TeacherOptions::default() };
    let two = EmbeddedTeacher::load_with(model_path(), options).expect("model loads");
    let strict = labflow::teacher::constraint::Constraint::Regex("[a-z ,]{1,40}[.]".into());
    let reqs: Vec<Request> = ["Name a fruit.", "Describe a cat.", "Who wrote Hamlet?", "List three colors.", "Say hello.", "What is rain?"]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let constraint = (i % 2 == 0).then(|| strict.clone());
            request(
                Prompt::Chat(vec![ChatMessage::new("user", *p)]),
                Sampling { temperature: 0.8, max_tokens: 8 + 4 * i as u32, seed: Some(7 + i as u64), constraint, ..Sampling::default() },
            )
        })
        .collect();
    let together = futures::future::join_all(reqs.iter().map(|r| two.complete(r))).await;
    for (i, (r, b)) in reqs.iter().zip(together).enumerate() {
        let a = one.complete(r).await.expect("complete");
        assert_eq!(a, b.expect("complete"), "request {i}: one thread alone vs two threads batched with 5 others");
    }
}

/// `complete_streaming` and what it sent: the response, and each choice's pieces in order.
async fn streamed(client: &dyn Client, request: &Request) -> (labflow::teacher::Response, Vec<Vec<String>>) {
    let (deltas, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let response = client.complete_streaming(request, deltas).await.expect("complete_streaming");
    let mut pieces = vec![Vec::new(); response.choices.len()];
    while let Some(delta) = rx.recv().await {
        pieces[delta.choice as usize].push(delta.text);
    }
    (response, pieces)
}

#[tokio::test]
async fn streaming_sends_the_text_as_it_is_decoded_and_never_takes_a_piece_back() {
    let Some(t) = teacher() else { return };
    let story = Prompt::Text("Once upon a time, in a small village by the sea,".into());
    let chat = Prompt::Chat(vec![ChatMessage::new("user", "Write three short sentences about the sea.")]);
    // A stop string the greedy text reaches (its second word), so a stop is held back and cut.
    let free = t.complete(&request(story.clone(), Sampling::greedy(24))).await.expect("complete");
    let second = format!(" {}", free.choices[0].text.split_whitespace().nth(1).expect("two words"));
    let requests = [
        request(story.clone(), Sampling::greedy(24)),
        request(story, Sampling { stop: vec![second], ..Sampling::greedy(24) }),
        request(
            chat.clone(),
            Sampling { temperature: 1.0, seed: Some(5), n: 2, max_tokens: 40, stop: vec!["\n".into()], ..Sampling::default() },
        ),
        request(chat, Sampling::greedy(40)),
    ];
    for (case, r) in requests.iter().enumerate() {
        let (response, pieces) = streamed(t, r).await;
        assert_eq!(response, t.complete(r).await.expect("complete"), "case {case}: streaming changes nothing in the answer");
        for (choice, sent) in response.choices.iter().zip(&pieces) {
            assert_eq!(sent.concat(), choice.text, "case {case}: the pieces spell the final text");
            assert!(sent.iter().all(|p| !p.is_empty()), "case {case}: no empty pieces");
            if choice.text.split_whitespace().count() >= 3 {
                assert!(sent.len() >= 3, "case {case}: sent as it was decoded, not whole: {sent:?}");
            }
        }
    }

    // Through the response cache: a miss streams from the model, a hit sends each choice whole.
    let location = Location::memory(Arc::new(object_store::memory::InMemory::new()), "");
    let cache = Arc::new(ResponseCache::open(location, CacheConfig::default()).await.expect("open cache"));
    let cached = CachedClient::new(Arc::new(t.clone()), cache);
    let (miss, miss_pieces) = streamed(&cached, &requests[3]).await;
    let (hit, hit_pieces) = streamed(&cached, &requests[3]).await;
    assert_eq!(miss.choices, hit.choices);
    assert!(miss_pieces[0].len() >= 3, "a miss streams: {miss_pieces:?}");
    assert_eq!(hit_pieces, vec![vec![hit.choices[0].text.clone()]], "a hit is sent whole");
}
