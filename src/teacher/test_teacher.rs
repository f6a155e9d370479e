//! A deterministic test teacher: answers are a pure function of the request, so golden files,
//! property tests and operator tests can run without a model. Not a model: never use it for data.
//!
//! A completion fills every `[Start of X]` … `[End of X]` pair the prompt mentions, in order of
//! first mention, `items` times, with words derived from a hash of (prompt, seed + choice, X) (so
//! choice `i` of seed `s` is choice 0 of seed `s + i`, as with the embedded teacher); a
//! part whose name contains "score" gets a digit 0–2, after a numbered list of `items` lines (and
//! `Question:`/`Answer:` pairs when the prompt shows that layout). Scores of continuations are hash-derived
//! log-probabilities (all equal for a content-free prompt, one holding `N/A`). An optional delay makes replies take time (for streaming tests).

use crate::teacher::{Choice, Client, FinishReason, Prompt, Request, Response, TeacherError, Usage};
use futures::future::BoxFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The deterministic test teacher.
#[derive(Debug, Default)]
pub struct TestTeacher {
    /// Items (tag groups) per completion.
    pub items: usize,
    /// How long each call takes.
    pub delay: Duration,
    /// Calls answered so far.
    pub calls: AtomicU64,
    /// `(kind, prompt text)` of every call, in the order they started (for streaming tests).
    pub log: std::sync::Mutex<Vec<(String, String)>>,
    /// A file that gets one line per call as it starts, `complete N` (N choices) or `score 1`,
    /// each written with one unbuffered append, so the lines survive a `kill -9` of the
    /// process (for crash tests, which count the calls a killed run made).
    pub journal: Option<std::sync::Mutex<std::fs::File>>,
}

const WORDS: &[&str] = &["river", "stone", "light", "quiet", "amber", "north", "field", "glass", "cedar", "orbit", "delta", "maple"];

fn hash(parts: &[&str]) -> u64 {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update(&[0]);
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_le_bytes(b)
}

fn words(seed: u64, n: usize) -> String {
    (0..n).map(|i| WORDS[((seed >> (i * 4)) as usize + i) % WORDS.len()]).collect::<Vec<_>>().join(" ")
}

/// The prompt as one string.
fn flatten(prompt: &Prompt) -> String {
    match prompt {
        Prompt::Text(t) => t.clone(),
        Prompt::Chat(m) => m.iter().map(|m| format!("{}: {}", m.role, m.content)).collect::<Vec<_>>().join("\n"),
    }
}

/// Names X of every `[Start of X]` with a matching `[End of X]`, in order of first mention.
fn parts(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("[Start of ") {
        let after = &rest[i + "[Start of ".len()..];
        let Some(j) = after.find(']') else { break };
        let name = after[..j].to_string();
        if text.contains(&format!("[End of {name}]")) && !out.contains(&name) {
            out.push(name);
        }
        rest = &after[j..];
    }
    out
}

impl TestTeacher {
    /// A teacher writing `items` groups per completion, answering after `delay`.
    pub fn new(items: usize, delay: Duration) -> Arc<TestTeacher> {
        Arc::new(TestTeacher { items, delay, ..TestTeacher::default() })
    }

    /// The test teacher a `--teacher` spec names: `test`, or `test?OPTIONS` with `&`-separated
    /// `delay_ms=N` (each call takes N ms) and `journal=FILE` (see [`TestTeacher::journal`]).
    /// `None` when `spec` is not a test teacher spec.
    pub fn from_spec(spec: &str) -> Option<Result<Arc<TestTeacher>, String>> {
        let options = match spec.strip_prefix("test") {
            Some("") => "",
            Some(rest) => rest.strip_prefix('?')?,
            None => return None,
        };
        let mut teacher = TestTeacher { items: 2, ..TestTeacher::default() };
        for option in options.split('&').filter(|o| !o.is_empty()) {
            let (key, value) = option.split_once('=').unwrap_or((option, ""));
            match key {
                "delay_ms" => match value.parse::<u64>() {
                    Ok(ms) => teacher.delay = Duration::from_millis(ms),
                    Err(_) => return Some(Err(format!("test teacher: delay_ms={value:?} is not a whole number of milliseconds"))),
                },
                "journal" => match std::fs::OpenOptions::new().create(true).append(true).open(value) {
                    Ok(f) => teacher.journal = Some(std::sync::Mutex::new(f)),
                    Err(e) => return Some(Err(format!("test teacher: cannot open the journal {value}: {e}"))),
                },
                _ => return Some(Err(format!("test teacher: unknown option {key:?}; it takes delay_ms=N and journal=FILE"))),
            }
        }
        Some(Ok(Arc::new(teacher)))
    }

    fn note(&self, line: &str) {
        if let Some(journal) = &self.journal {
            use std::io::Write;
            // One write of the whole line: appends from concurrent calls never interleave.
            let _ = journal.lock().unwrap_or_else(|p| p.into_inner()).write_all(line.as_bytes());
        }
    }

    /// The text of choice `i` for `request`.
    pub fn text(&self, request: &Request, i: u32) -> String {
        let prompt = flatten(&request.prompt);
        let seed = request.sampling.seed.unwrap_or(0).wrapping_add(u64::from(i)).to_string();
        let names = parts(&prompt);
        let mut out = String::new();
        // A numbered list first, for pipelines that parse one item per numbered line.
        for item in 0..self.items.max(1) {
            out.push_str(&format!("{}. {}\n", item + 1, words(hash(&[&prompt, &seed, &item.to_string()]), 8)));
        }
        // "Question: … Answer: …" pairs, when the prompt asks for that layout.
        if prompt.contains("Question:") && prompt.contains("Answer:") {
            for item in 0..self.items.max(1) {
                let h = hash(&[&prompt, &seed, "qa", &item.to_string()]);
                out.push_str(&format!("\nQuestion: {}?\nAnswer: {}.\n", words(h, 7), words(h >> 7, 9)));
            }
            out.push('\n');
        }
        for item in 0..self.items.max(1) {
            for name in &names {
                let h = hash(&[&prompt, &seed, name, &item.to_string()]);
                let body = if name.to_ascii_lowercase().contains("score") { (h % 3).to_string() } else { words(h, 5) };
                out.push_str(&format!("[Start of {name}]\n{body}\n[End of {name}]\n"));
            }
        }
        out
    }
}

impl Client for TestTeacher {
    fn identity(&self) -> String {
        format!("test-teacher(items={})", self.items)
    }

    fn complete<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Response, TeacherError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.log.lock().unwrap_or_else(|p| p.into_inner()).push(("complete".into(), flatten(&request.prompt)));
            self.note(&format!("complete {}\n", request.sampling.n.max(1)));
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            let choices: Vec<Choice> = (0..request.sampling.n.max(1))
                .map(|i| Choice { text: self.text(request, i), finish_reason: FinishReason::Stop, logprobs: None })
                .collect();
            let completion_tokens = choices.iter().map(|c| c.text.split_whitespace().count() as u64).sum();
            let prompt_tokens = flatten(&request.prompt).split_whitespace().count() as u64;
            Ok(Response { choices, usage: Usage { prompt_tokens, completion_tokens } })
        })
    }

    fn score<'a>(&'a self, prompt: &'a Prompt, continuations: &'a [String]) -> BoxFuture<'a, Result<Vec<f64>, TeacherError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let text = flatten(prompt);
            self.log.lock().unwrap_or_else(|p| p.into_inner()).push(("score".into(), text.clone()));
            self.note("score 1\n");
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
            }
            // A content-free prompt (what calibrated judges send as their baseline) has no
            // preference, so calibration leaves this teacher's verdicts as they are.
            if text.contains("N/A") {
                return Ok(vec![-1.0; continuations.len()]);
            }
            Ok(continuations.iter().map(|c| -((hash(&[&text, c]) % 1000) as f64) / 100.0).collect())
        })
    }

    /// True: choice `i` is derived from (prompt, `seed + i`) only ([`TestTeacher::text`]).
    fn seeds_choices_independently(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::teacher::Sampling;

    #[tokio::test]
    async fn answers_fill_the_prompts_tags_deterministically() {
        let t = TestTeacher::new(2, Duration::ZERO);
        let req = Request {
            model: String::new(),
            prompt: Prompt::Text("Write [Start of Question] q [End of Question] and [Start of Score] [End of Score]".into()),
            sampling: Sampling { n: 2, seed: Some(7), ..Sampling::default() },
        };
        let a = t.complete(&req).await.unwrap();
        let b = t.complete(&req).await.unwrap();
        assert_eq!(a, b);
        assert_ne!(a.choices[0].text, a.choices[1].text);
        assert_eq!(a.choices[0].text.matches("[Start of Question]").count(), 2);
        let score = a.choices[0].text.split("[Start of Score]\n").nth(1).unwrap().chars().next().unwrap();
        assert!(score.is_ascii_digit() && score < '3');
        let s = t.score(&req.prompt, &["0".into(), "1".into()]).await.unwrap();
        assert_eq!(s, t.score(&req.prompt, &["0".into(), "1".into()]).await.unwrap());
        assert_eq!(t.calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn choice_i_of_seed_s_is_choice_0_of_seed_s_plus_i() {
        let t = TestTeacher::new(1, Duration::ZERO);
        assert!(t.seeds_choices_independently());
        let req = |n, seed| Request {
            model: String::new(),
            prompt: Prompt::Text("Write [Start of Question] q [End of Question]".into()),
            sampling: Sampling { n, seed: Some(seed), ..Sampling::default() },
        };
        let three = t.complete(&req(3, u64::MAX)).await.unwrap();
        for (i, seed) in [u64::MAX, 0, 1].into_iter().enumerate() {
            assert_eq!(t.complete(&req(1, seed)).await.unwrap().choices[0], three.choices[i], "choice {i}");
        }
    }
}
