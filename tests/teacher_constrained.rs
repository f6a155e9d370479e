//! Decoding constraints on real parts: the embedded SmolLM2 GGUF, `labflow serve` over HTTP, and
//! llama.cpp's server when it is installed.
//!
//! Every constrained completion is checked by an engine other than the one that produced it: the
//! `regex` crate for whole matches, a DFA built here for "still a prefix of a match" (a choice
//! cut by `max_tokens`), serde_json and the `jsonschema` crate for JSON. A choice that ends with
//! `Stop` must match in full; one that ends with `Length` must still be completable.
//!
//! - embedded: choice, tag regex and JSON schema at temperature 1 (several seeds) and greedy; a
//!   constraint met on the last token `max_tokens` allows ends with `Stop`; greedy decoding under
//!   `Regex(escape(T) | zzz)` gives exactly the unconstrained greedy text T.
//! - `labflow serve`: labflow's HTTP client with `constraints: vllm` (and `openai` for
//!   `response_format`) gets the in-process teacher's text for the same seeded request, on both
//!   endpoints and streamed; malformed or oversized constraints are 400s naming the problem; a
//!   second `labflow serve` over the first (`--model http://…?constraints=vllm#…`) passes
//!   constraints on.
//! - llama.cpp's server (`LABFLOW_LLAMA_SERVER_PYTHON`, llama-cpp-python; `tests/common/llama_server.rs`):
//!   outputs under `constraints: llama.cpp` (GBNF grammars, schemas included) match.
//!
//! Needs the model (`bash models/fetch.sh`); without it the tests print SKIPPED, and with
//! `LABFLOW_REQUIRE_MODEL=1` they fail instead.

use labflow::teacher::constraint::{Constraint, Dialect};
use labflow::teacher::{ChatMessage, Client, EmbeddedTeacher, FinishReason, HttpClient, HttpConfig, Prompt, Request, Response, Sampling};
use serde_json::{json, Value};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod common;
use common::llama_server;

fn model_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The teacher with default options (f32 decode, as `labflow serve --model FILE` loads it),
/// loaded once per test binary; `None` (after a SKIPPED line) without the model.
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

/// One or more questions between tags, with a free-text body: what a question-generation
/// step's parser expects.
const TAGS: &str = r"(?:\[Start of Question\][ \n]{0,2}[^\[\s][^\[]*\[End of Question\][ \n]{0,2}){1,3}";

fn person_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 40}, "age": {"type": "integer"}},
        "required": ["name", "age"]
    })
}

fn chat(text: &str) -> Prompt {
    Prompt::Chat(vec![ChatMessage::new("user", text)])
}

fn request(prompt: Prompt, sampling: Sampling) -> Request {
    Request { model: String::new(), prompt, sampling }
}

/// The three constraints with a prompt that asks for that shape, and a `max_tokens` that leaves
/// room to finish.
fn cases() -> Vec<(&'static str, Constraint, Prompt, u32)> {
    vec![
        ("choice", Constraint::Choice(vec!["YES".into(), "NO".into()]), chat("Is the sky blue on a clear day? Answer YES or NO."), 8),
        (
            "tags",
            Constraint::Regex(TAGS.into()),
            chat("Write one short question about photosynthesis, between the tags [Start of Question] and [End of Question]."),
            160,
        ),
        ("json", Constraint::JsonSchema(person_schema()), chat("Describe a person as a JSON object with a name and an age."), 120),
    ]
}

/// Whether `text` can still be completed into a whole match of `regex`: an anchored DFA built
/// here (every match kept, as `MatchKind::All`), walked over the bytes, never dead.
fn viable_prefix(regex: &str, text: &str) -> bool {
    use regex_automata::dfa::{dense, Automaton, StartKind};
    use regex_automata::{util::start, Anchored, MatchKind};
    let dfa = dense::Builder::new()
        .configure(dense::Config::new().start_kind(StartKind::Anchored).match_kind(MatchKind::All))
        .syntax(regex_automata::util::syntax::Config::new().dot_matches_new_line(true))
        .build(&format!(r"(?:{regex})\z"))
        .expect("the constraint's regex builds a DFA");
    let mut state = dfa.start_state(&start::Config::new().anchored(Anchored::Yes)).expect("start state");
    for &b in text.as_bytes() {
        state = dfa.next_state(state, b);
        if dfa.is_dead_state(state) {
            return false;
        }
    }
    true
}

/// Checks one choice against its constraint: `Stop` is a whole match (and, for a schema, a
/// JSON document valid under it), `Length` a prefix of one.
fn check(constraint: &Constraint, text: &str, finish: FinishReason, what: &str) {
    let regex = constraint.regex().expect("constraint converts");
    let whole = regex::Regex::new(&format!("(?s)^(?:{regex})$")).expect("regex compiles");
    match finish {
        FinishReason::Stop => {
            assert!(whole.is_match(text), "{what}: finished with Stop but {text:?} does not match /{regex}/");
            if let Constraint::JsonSchema(schema) = constraint {
                let doc: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: {text:?} is not JSON: {e}"));
                let validator = jsonschema::validator_for(schema).expect("schema compiles");
                assert!(validator.is_valid(&doc), "{what}: {doc} is not valid under {schema}");
            }
        }
        FinishReason::Length => assert!(viable_prefix(&regex, text), "{what}: cut by max_tokens, but {text:?} is no prefix of /{regex}/"),
    }
}

#[tokio::test]
async fn embedded_completions_match_their_constraints() {
    let Some(t) = teacher() else { return };
    // Every request at once, so they decode as one batch.
    let mut jobs = Vec::new();
    for (name, constraint, prompt, max_tokens) in cases() {
        let constrained = Sampling { max_tokens, constraint: Some(constraint.clone()), ..Sampling::default() };
        let samplings = [Sampling { temperature: 0.0, ..constrained.clone() }].into_iter().chain((1..=4).map(|seed| Sampling {
            temperature: 1.0,
            seed: Some(seed),
            ..constrained.clone()
        }));
        for sampling in samplings {
            let label = format!("{name} (temperature {}, seed {:?})", sampling.temperature, sampling.seed);
            jobs.push((label, constraint.clone(), request(prompt.clone(), sampling)));
        }
    }
    let replies = futures::future::join_all(jobs.iter().map(|(_, _, r)| t.complete(r))).await;
    let mut stopped = Vec::new();
    for ((label, constraint, req), reply) in jobs.iter().zip(replies) {
        let reply = reply.unwrap_or_else(|e| panic!("{label}: {e}"));
        let choice = &reply.choices[0];
        println!("{label}: {:?} {:?} ({} tokens)", choice.finish_reason, choice.text, reply.usage.completion_tokens);
        check(constraint, &choice.text, choice.finish_reason, label);
        assert!(reply.usage.completion_tokens <= req.sampling.max_tokens as u64, "{label}");
        if choice.finish_reason == FinishReason::Stop {
            stopped.push(label.as_str());
        }
    }
    // A choice between two short labels always completes; greedy JSON completes well within
    // its 120 tokens.
    assert_eq!(stopped.iter().filter(|l| l.starts_with("choice")).count(), 5, "every YES/NO choice ends with Stop: {stopped:?}");
    assert!(stopped.iter().any(|l| l.starts_with("json (temperature 0")), "greedy JSON completes: {stopped:?}");
}

#[tokio::test]
async fn a_tight_budget_closes_the_format_instead_of_cutting_it() {
    let Some(t) = teacher() else { return };
    let (_, constraint, prompt, _) = cases().remove(2);
    let greedy = |max_tokens| request(prompt.clone(), Sampling { constraint: Some(constraint.clone()), ..Sampling::greedy(max_tokens) });
    let free = t.complete(&greedy(120)).await.expect("complete");
    let used = free.usage.completion_tokens as u32;
    assert_eq!(free.choices[0].finish_reason, FinishReason::Stop);
    // Fewer tokens than the free reply took: once the budget left is no more than the distance
    // to a whole match, only tokens that close the format are allowed, so the reply still ends
    // whole (more compact than the free one), within the budget.
    for budget in [used, used - 2] {
        let tight = t.complete(&greedy(budget)).await.expect("complete");
        let c = &tight.choices[0];
        assert_eq!(c.finish_reason, FinishReason::Stop, "budget {budget}: {:?}", c.text);
        check(&constraint, &c.text, FinishReason::Stop, &format!("budget {budget}"));
        assert!(tight.usage.completion_tokens <= u64::from(budget));
    }
    // A budget below the shortest whole reply: cut, said so, and still a prefix of one.
    let short = t.complete(&greedy(3)).await.expect("complete");
    assert_eq!(short.choices[0].finish_reason, FinishReason::Length);
    check(&constraint, &short.choices[0].text, FinishReason::Length, "3 tokens");
}

#[tokio::test]
async fn greedy_under_a_constraint_that_allows_the_greedy_text_is_that_text() {
    let Some(t) = teacher() else { return };
    let prompts = [Prompt::Text("The capital of France is".into()), chat("Name three colors."), chat("What is 2 + 2?")];
    for prompt in prompts {
        let free = t.complete(&request(prompt.clone(), Sampling::greedy(24))).await.expect("unconstrained");
        let text = free.choices[0].text.clone();
        // The greedy token is allowed at every step, so masking the others changes nothing; once
        // the text is complete nothing can extend it and the choice stops.
        let constraint = Constraint::Regex(format!("{}|zzz", regex::escape(&text)));
        let constrained = Sampling { constraint: Some(constraint), ..Sampling::greedy(32) };
        let got = t.complete(&request(prompt.clone(), constrained)).await.expect("constrained");
        println!("{prompt:?}: {text:?} ({:?}) → {:?}", free.choices[0].finish_reason, got.choices[0]);
        assert_eq!(got.choices[0].text, text, "{prompt:?}");
        assert_eq!(got.choices[0].finish_reason, FinishReason::Stop, "{prompt:?}");
        assert_eq!(got.usage.completion_tokens, free.usage.completion_tokens, "{prompt:?}: the same tokens");
    }
}

/// A `labflow serve` process on a free port, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }
}

fn serve(model: &str, extra: &[&str]) -> Server {
    let port = common::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_labflow"))
        .args(["serve", "--model", model, "--port", &port.to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start labflow serve");
    let server = Server { child, port };
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "labflow serve did not listen on {port} within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

fn http(base_url: &str, constraints: Dialect) -> HttpClient {
    HttpClient::new(HttpConfig { constraints, timeout_secs: 600, max_retries: 0, ..HttpConfig::new(base_url, "smol") }).expect("client")
}

fn texts(r: &Response) -> Vec<(&str, FinishReason)> {
    r.choices.iter().map(|c| (c.text.as_str(), c.finish_reason)).collect()
}

/// POSTs `body` to `path` with `stream: true` and joins the text of the chunks.
async fn streamed(base_url: &str, path: &str, mut body: Value) -> String {
    body["stream"] = json!(true);
    let reply = reqwest::Client::new().post(format!("{base_url}{path}")).json(&body).send().await.expect("stream request");
    assert!(reply.status().is_success(), "{}", reply.status());
    let events = reply.text().await.expect("stream body");
    let mut text = String::new();
    for data in events.lines().filter_map(|l| l.strip_prefix("data: ")).filter(|d| *d != "[DONE]") {
        let chunk: Value = serde_json::from_str(data).expect("chunk JSON");
        for choice in chunk["choices"].as_array().into_iter().flatten() {
            text.push_str(choice["delta"]["content"].as_str().or(choice["text"].as_str()).unwrap_or_default());
        }
    }
    text
}

#[tokio::test]
async fn labflow_serve_decodes_under_the_constraints_it_is_sent() {
    let Some(t) = teacher() else { return };
    let server = serve(model_path().to_str().expect("utf-8 path"), &[]);
    let base = server.base_url();
    let vllm = http(&base, Dialect::Vllm);

    // The same seeded request over HTTP and in-process: the same text, on both endpoints.
    for (name, constraint, prompt, _) in cases() {
        // The chat rendered by hand goes to /v1/completions: the same tokens, the other endpoint.
        let text_prompt = Prompt::Text(t.render(&prompt).expect("render"));
        for prompt in [prompt, text_prompt] {
            let sampling = Sampling {
                temperature: 1.0,
                seed: Some(11),
                n: 2,
                max_tokens: 40,
                constraint: Some(constraint.clone()),
                ..Sampling::default()
            };
            let req = request(prompt, sampling);
            let over = vllm.complete(&req).await.unwrap_or_else(|e| panic!("{name} over HTTP: {e}"));
            let local = t.complete(&req).await.expect("in-process");
            assert_eq!(texts(&over), texts(&local), "{name}");
            for c in &over.choices {
                check(&constraint, &c.text, c.finish_reason, name);
            }
        }
    }

    // OpenAI's response_format carries a schema for chat.
    let openai = http(&base, Dialect::Openai);
    let req = request(cases().remove(2).2, Sampling { constraint: Some(Constraint::JsonSchema(person_schema())), ..Sampling::greedy(120) });
    let over = openai.complete(&req).await.expect("response_format over HTTP");
    assert_eq!(texts(&over), texts(&t.complete(&req).await.expect("in-process")));
    assert_eq!(over.choices[0].finish_reason, FinishReason::Stop, "{:?}", over.choices[0].text);
    check(&Constraint::JsonSchema(person_schema()), &over.choices[0].text, FinishReason::Stop, "response_format");

    // Streamed answers carry the same constrained text.
    let messages = json!([{"role": "user", "content": "Is the sky blue on a clear day? Answer YES or NO."}]);
    let body = json!({"messages": messages, "guided_choice": ["YES", "NO"], "temperature": 1.0, "seed": 3, "max_tokens": 8});
    let want = t
        .complete(&request(
            chat("Is the sky blue on a clear day? Answer YES or NO."),
            Sampling {
                temperature: 1.0,
                seed: Some(3),
                constraint: Some(Constraint::Choice(vec!["YES".into(), "NO".into()])),
                ..Sampling::greedy(8)
            },
        ))
        .await
        .expect("in-process");
    assert_eq!(streamed(&base, "/chat/completions", body).await, want.choices[0].text);
    let body = json!({"prompt": "The capital of France is", "guided_regex": " [A-Z][a-z]{2,12}\\.", "temperature": 0, "max_tokens": 12});
    let got = streamed(&base, "/completions", body).await;
    let want = t
        .complete(&request(
            Prompt::Text("The capital of France is".into()),
            Sampling { constraint: Some(Constraint::Regex(" [A-Z][a-z]{2,12}\\.".into())), ..Sampling::greedy(12) },
        ))
        .await
        .expect("in-process");
    assert_eq!(got, want.choices[0].text);
    assert!(regex::Regex::new(r"^ [A-Z][a-z]{2,12}\.$").expect("regex").is_match(&got), "{got:?}");

    // Malformed constraints are refused before decoding, naming the field and the problem; an
    // oversized one is refused by the teacher when it compiles it, also as a 400.
    let bad = |c: Constraint| request(chat("Hi"), Sampling { constraint: Some(c), ..Sampling::greedy(4) });
    for (constraint, says) in [
        (Constraint::Regex("(unclosed".into()), "bad regex"),
        (Constraint::Regex(r"\bword".into()), "word boundaries"),
        (Constraint::JsonSchema(json!({"type": "string", "pattern": "a+"})), "`pattern` is not supported"),
        (Constraint::Regex(r"(?:[a-z]{1,200}){1,200}\w{1,500}".into()), "too large"),
    ] {
        let e = vllm.complete(&bad(constraint.clone())).await.expect_err("refused");
        let msg = e.to_string();
        assert!(msg.contains("HTTP 400") && msg.contains(says), "{constraint:?}: {msg}");
    }
    let reply = reqwest::Client::new()
        .post(format!("{base}/chat/completions"))
        .json(&json!({"messages": messages, "guided_regex": "(unclosed", "guided_choice": ["a"]}))
        .send()
        .await
        .expect("post");
    assert_eq!(reply.status(), 400);
    let error: Value = reply.json().await.expect("error JSON");
    assert_eq!(error["error"]["param"], "guided_choice", "{error}");
    assert!(error["error"]["message"].as_str().unwrap_or_default().contains("guided_regex and guided_choice are both given"), "{error}");
    let reply = reqwest::Client::new()
        .post(format!("{base}/completions"))
        .json(&json!({"prompt": "x", "guided_regex": "(unclosed"}))
        .send()
        .await
        .expect("post");
    assert_eq!(reply.status(), 400);
    let error: Value = reply.json().await.expect("error JSON");
    assert_eq!(error["error"]["param"], "guided_regex", "{error}");
    assert!(error["error"]["message"].as_str().unwrap_or_default().contains("bad regex"), "{error}");

    // A labflow serve whose teacher is the first server, told its dialect in the teacher spec,
    // passes constraints on.
    // (`--served-model-name` is the upstream's model name: the server passes its own name on as
    // the request's model, which an HTTP teacher refuses unless it is the one it serves.)
    let proxy = serve(&format!("{base}?constraints=vllm#smol"), &["--served-model-name", "smol"]);
    let (_, constraint, prompt, _) = cases().remove(1);
    let req =
        request(prompt, Sampling { temperature: 1.0, seed: Some(5), max_tokens: 40, constraint: Some(constraint), ..Sampling::default() });
    let through = http(&proxy.base_url(), Dialect::Vllm).complete(&req).await.expect("through the proxy");
    assert_eq!(texts(&through), texts(&t.complete(&req).await.expect("in-process")));
}

#[tokio::test]
async fn llama_cpp_server_decodes_under_gbnf_grammars() {
    let Some(python) = llama_server::python("decoding constraints against llama.cpp's server") else { return };
    let Some(model) = common::model() else { return };
    let server = llama_server::start(&python, &model).await;
    let client = http(&server.base_url, Dialect::LlamaCpp);
    for (name, constraint, prompt, max_tokens) in cases() {
        let text_prompt = Prompt::Text("Question: is the sky blue on a clear day?\nAnswer:".into());
        for prompt in [prompt, text_prompt] {
            for sampling in [Sampling::greedy(max_tokens), Sampling { temperature: 1.0, seed: Some(7), ..Sampling::greedy(max_tokens) }] {
                let req = request(prompt.clone(), Sampling { constraint: Some(constraint.clone()), ..sampling });
                let r = client.complete(&req).await.unwrap_or_else(|e| panic!("{name}: {e}"));
                let c = &r.choices[0];
                println!("llama.cpp {name}: {:?} {:?}", c.finish_reason, c.text);
                check(&constraint, &c.text, c.finish_reason, name);
            }
        }
    }
    // The choice also goes as a grammar, and llama.cpp ends it itself.
    let yes_no = Constraint::Choice(vec!["YES".into(), "NO".into()]);
    let r = client
        .complete(&request(chat("Is water wet? Answer YES or NO."), Sampling { constraint: Some(yes_no), ..Sampling::greedy(8) }))
        .await;
    let r = r.expect("choice");
    assert!(["YES", "NO"].contains(&r.choices[0].text.as_str()), "{:?}", r.choices[0]);
}
