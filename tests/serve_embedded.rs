//! `labflow serve` over the real embedded model (the SmolLM2 GGUF), as a user runs it: the
//! binary on 127.0.0.1, driven by the official `openai` Python client
//! (`tests/reference/openai_client_check.py`, the model-independent checks) and by labflow's own
//! HTTP teacher (`teacher::http`), so each side is tested against a server or client someone
//! else wrote as well as against each other.
//!
//! Needs the model (`bash models/fetch.sh`; `LABFLOW_REQUIRE_MODEL=1` makes its absence a
//! failure) and, for the Python part, `LABFLOW_OPENAI_PYTHON` (`LABFLOW_REQUIRE_OPENAI=1` makes
//! its absence a failure).

mod common;

use labflow::store::Location;
use labflow::teacher::cache::{CacheConfig, CachedClient, ResponseCache};
use labflow::teacher::{ChatMessage, Client, HttpClient, HttpConfig, Prompt, Request, Sampling};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

fn model() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.is_file() {
        return Some(path);
    }
    assert_ne!(std::env::var("LABFLOW_REQUIRE_MODEL").as_deref(), Ok("1"), "model missing: run bash models/fetch.sh");
    eprintln!("SKIPPED: model missing; run bash models/fetch.sh");
    None
}

fn start(model: &std::path::Path) -> Server {
    let port = common::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_labflow"))
        .args(["serve", "--model", model.to_str().expect("utf-8"), "--port", &port.to_string(), "--api-key", "embedded-key"])
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

#[tokio::test]
async fn openai_python_client_against_the_embedded_model() {
    let Some(model) = model() else { return };
    let Some(python) = std::env::var_os("LABFLOW_OPENAI_PYTHON").filter(|p| !p.is_empty()) else {
        assert_ne!(std::env::var("LABFLOW_REQUIRE_OPENAI").as_deref(), Ok("1"), "LABFLOW_OPENAI_PYTHON is not set");
        eprintln!("SKIPPED: set LABFLOW_OPENAI_PYTHON=/path/to/python (with `pip install openai`)");
        return;
    };
    let server = start(&model);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/openai_client_check.py");
    let output = tokio::process::Command::new(&python)
        .args([script, &format!("http://127.0.0.1:{}/v1", server.port), "--api-key", "embedded-key"])
        .output()
        .await
        .expect("run the openai client check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(output.status.success(), "openai client check failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains(": OK: "), "{stdout}");
}

#[tokio::test]
async fn http_teacher_against_labflow_serve() {
    let Some(model) = model() else { return };
    let server = start(&model);
    std::env::set_var("LABFLOW_TEST_EMBEDDED_KEY", "embedded-key");
    let mut config = HttpConfig::new(format!("http://127.0.0.1:{}/v1", server.port), "smollm2");
    config.api_key_env = Some("LABFLOW_TEST_EMBEDDED_KEY".to_string());
    let client = HttpClient::new(config).expect("client");
    let chat = Request {
        model: String::new(),
        prompt: Prompt::Chat(vec![ChatMessage::new("user", "What is the capital of France?")]),
        sampling: Sampling { logprobs: Some(2), ..Sampling::greedy(8) },
    };
    let got = client.complete(&chat).await.expect("chat over HTTP");
    // The same request in-process gives the same text: the server adds nothing and loses nothing.
    let local = labflow::teacher::EmbeddedTeacher::load(&model).expect("load");
    let want = local.complete(&chat).await.expect("chat in-process");
    assert_eq!(got.choices[0].text, want.choices[0].text);
    assert_eq!(got.choices[0].logprobs.as_ref().map(Vec::len), want.choices[0].logprobs.as_ref().map(Vec::len));
    let seeded = Request {
        model: String::new(),
        prompt: Prompt::Text("Once upon a time".into()),
        sampling: Sampling { temperature: 0.8, seed: Some(5), n: 2, max_tokens: 5, ..Sampling::default() },
    };
    let a = client.complete(&seeded).await.expect("completions over HTTP");
    let b = local.complete(&seeded).await.expect("completions in-process");
    assert_eq!(a.choices.len(), 2);
    assert_eq!(a.choices.iter().map(|c| &c.text).collect::<Vec<_>>(), b.choices.iter().map(|c| &c.text).collect::<Vec<_>>());

    // The server says it seeds choices as the embedded teacher does; a client told so gets a
    // prompt's missing choices from the response cache in one request, equal to single choices.
    let models: serde_json::Value = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/v1/models", server.port))
        .bearer_auth("embedded-key")
        .send()
        .await
        .expect("models")
        .json()
        .await
        .expect("models JSON");
    assert_eq!(models["data"][0]["labflow"]["seeds_choices_independently"], true, "{models}");
    let mut config = HttpConfig::new(format!("http://127.0.0.1:{}/v1", server.port), "smollm2");
    config.api_key_env = Some("LABFLOW_TEST_EMBEDDED_KEY".to_string());
    config.seeds_choices_independently = true;
    let http = std::sync::Arc::new(HttpClient::new(config).expect("client"));
    let location = Location::memory(std::sync::Arc::new(object_store::memory::InMemory::new()), "");
    let cache = std::sync::Arc::new(ResponseCache::open(location, CacheConfig::default()).await.expect("cache"));
    let cached = CachedClient::new(std::sync::Arc::clone(&http), cache);
    let three =
        cached.complete(&Request { sampling: Sampling { n: 3, ..seeded.sampling.clone() }, ..seeded.clone() }).await.expect("cached");
    assert_eq!(http.stats().requests, 1, "one HTTP request for three choices");
    for (i, choice) in three.choices.iter().enumerate() {
        let one = Request { sampling: Sampling { n: 1, seed: Some(5 + i as u64), ..seeded.sampling.clone() }, ..seeded.clone() };
        assert_eq!(local.complete(&one).await.expect("in-process").choices[0].text, choice.text, "choice {i}");
    }
}
