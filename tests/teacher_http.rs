//! The HTTP teacher against servers: a fault-injecting OpenAI-shaped server written here (raw TCP,
//! minimal HTTP/1.1, on 127.0.0.1), and llama.cpp's server through `llama-cpp-python` when it is
//! installed (skipped with a message otherwise).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use labflow::teacher::{ChatMessage, Client, FinishReason, HttpClient, HttpConfig, Prompt, Request, Sampling, TeacherError};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod common;
use common::llama_server;

/// What the test server does.
#[derive(Clone, Copy)]
enum Mode {
    /// Answer every request, except that the first attempt of prompt `req-{i}` fails by `i % 10`:
    /// 1 drops the connection, 3 stalls past the client's timeout, 5 answers 500, 7 answers 429
    /// with `Retry-After: 1`.
    Faults,
    /// Answer every request with this status and an OpenAI error body echoing the bearer token
    /// (as some hosted APIs do).
    Status(u16),
    /// Never answer.
    Stall,
}

#[derive(Default)]
struct Gauges {
    /// Requests read in full.
    requests: AtomicU64,
    /// Faults injected.
    faults: AtomicU64,
    /// Requests being answered now; a stalled request leaves the gauge when it stalls, because the
    /// client's timeout, not the server, decides when it ends.
    active: AtomicUsize,
    peak: AtomicUsize,
    /// Prompts seen, so each gets at most one fault.
    seen: Mutex<HashSet<String>>,
    /// The last `Authorization` header received.
    auth: Mutex<Option<String>>,
}

struct Server {
    base_url: String,
    gauges: Arc<Gauges>,
}

async fn serve(mode: Mode) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
    let gauges = Arc::new(Gauges::default());
    let g = gauges.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let g = g.clone();
            tokio::spawn(async move {
                // Bound every connection in time, whatever the client does.
                let _ = tokio::time::timeout(Duration::from_secs(30), handle(socket, mode, g)).await;
            });
        }
    });
    Server { base_url, gauges }
}

/// Read one request: headers up to the blank line, then `Content-Length` bytes of body.
async fn read_request(socket: &mut TcpStream) -> Option<(Vec<String>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if buf.len() > 1 << 20 {
            return None;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let headers: Vec<String> = String::from_utf8_lossy(&buf[..head_end]).split("\r\n").map(str::to_string).collect();
    let len: usize = headers
        .iter()
        .find_map(|h| {
            h.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")).map(|(_, v)| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((headers, body))
}

async fn respond(socket: &mut TcpStream, status: u16, extra: &str, body: &Value) {
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n",
        body.len()
    );
    let _ = socket.write_all(head.as_bytes()).await;
    let _ = socket.write_all(body.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// The OpenAI-shaped answer: choice `j` of prompt `p` reads `echo {p} #{j}`; choices in reverse
/// index order, to check the client sorts them.
fn answer(path: &str, request: &Value) -> Value {
    let n = request["n"].as_u64().unwrap_or(1);
    let chat = path.ends_with("/chat/completions");
    let prompt = if chat { request["messages"][0]["content"].as_str() } else { request["prompt"].as_str() }.unwrap_or("?");
    let choices: Vec<Value> = (0..n)
        .rev()
        .map(|j| {
            let text = format!("echo {prompt} #{j}");
            if chat {
                json!({"index": j, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"})
            } else {
                json!({"index": j, "text": text, "finish_reason": "length"})
            }
        })
        .collect();
    json!({"id": "x", "object": "y", "choices": choices, "usage": {"prompt_tokens": 3, "completion_tokens": 5 * n, "total_tokens": 3 + 5 * n}})
}

async fn handle(mut socket: TcpStream, mode: Mode, g: Arc<Gauges>) {
    let Some((headers, body)) = read_request(&mut socket).await else { return };
    g.requests.fetch_add(1, Ordering::SeqCst);
    let now = g.active.fetch_add(1, Ordering::SeqCst) + 1;
    g.peak.fetch_max(now, Ordering::SeqCst);
    let path = headers.first().and_then(|l| l.split(' ').nth(1)).unwrap_or("").to_string();
    let auth = headers
        .iter()
        .find_map(|h| h.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("authorization")).map(|(_, v)| v.trim().to_string()));
    *g.auth.lock().unwrap() = auth.clone();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let prompt = request["prompt"].as_str().or(request["messages"][0]["content"].as_str()).unwrap_or("").to_string();
    let fault = match mode {
        Mode::Faults => {
            let i: u64 = prompt.strip_prefix("req-").and_then(|s| s.parse().ok()).unwrap_or(0);
            let first = g.seen.lock().unwrap().insert(prompt.clone());
            if first && matches!(i % 10, 1 | 3 | 5 | 7) {
                g.faults.fetch_add(1, Ordering::SeqCst);
                Some(i % 10)
            } else {
                None
            }
        }
        Mode::Stall => Some(3),
        Mode::Status(_) => None,
    };
    match (mode, fault) {
        (_, Some(1)) => {
            g.active.fetch_sub(1, Ordering::SeqCst);
            drop(socket); // the client sees the connection closed with no reply
        }
        (_, Some(3)) => {
            g.active.fetch_sub(1, Ordering::SeqCst);
            // Wait until the client gives up and closes, bounded by the connection's own limit.
            let mut sink = [0u8; 64];
            while let Ok(n) = socket.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        }
        (_, Some(f)) => {
            g.active.fetch_sub(1, Ordering::SeqCst);
            let (status, extra) = if f == 5 { (500, "") } else { (429, "retry-after: 1\r\n") };
            respond(&mut socket, status, extra, &json!({"error": {"message": "injected fault", "type": "server_error"}})).await;
        }
        (Mode::Status(code), None) => {
            g.active.fetch_sub(1, Ordering::SeqCst);
            let token = auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")).unwrap_or("none");
            let message = format!("invalid request; Incorrect API key provided: {token}");
            respond(&mut socket, code, "", &json!({"error": {"message": message, "type": "invalid_request_error"}})).await;
        }
        (_, None) => {
            // A little work, so that requests overlap and the in-flight bound is exercised.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let reply = answer(&path, &request);
            g.active.fetch_sub(1, Ordering::SeqCst);
            respond(&mut socket, 200, "", &reply).await;
        }
    }
}

fn config(base_url: &str) -> HttpConfig {
    HttpConfig {
        max_in_flight: 8,
        timeout_secs: 1,
        max_retries: 5,
        backoff_initial_ms: 10,
        backoff_max_ms: 2_000,
        ..HttpConfig::new(base_url, "test-model")
    }
}

fn request(i: u64) -> Request {
    let text = format!("req-{i}");
    let prompt = if i.is_multiple_of(2) { Prompt::Text(text) } else { Prompt::Chat(vec![ChatMessage::new("user", text)]) };
    Request { model: String::new(), prompt, sampling: Sampling { n: if i.is_multiple_of(4) { 2 } else { 1 }, ..Sampling::greedy(16) } }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_survives_injected_faults() {
    let server = serve(Mode::Faults).await;
    let client = HttpClient::new(config(&server.base_url)).unwrap();
    const N: u64 = 200;
    let started = Instant::now();
    let requests: Vec<Request> = (0..N).map(request).collect();
    let replies = tokio::time::timeout(Duration::from_secs(120), join_all(requests.iter().map(|r| client.complete(r))))
        .await
        .expect("finished in 120 s");
    for (i, reply) in replies.into_iter().enumerate() {
        let reply = reply.unwrap_or_else(|e| panic!("request {i} failed: {e}"));
        let n = requests[i].sampling.n as usize;
        assert_eq!(reply.choices.len(), n, "request {i}");
        for (j, c) in reply.choices.iter().enumerate() {
            assert_eq!(c.text, format!("echo req-{i} #{j}"), "request {i} choice {j}: lost or mixed-up answer");
            assert_eq!(c.finish_reason, if i % 2 == 0 { FinishReason::Length } else { FinishReason::Stop });
        }
    }
    let stats = client.stats();
    let g = &server.gauges;
    let faults = g.faults.load(Ordering::SeqCst);
    let peak = g.peak.load(Ordering::SeqCst);
    println!(
        "{N} requests, {faults} faults injected, stats {stats:?}, peak in flight at the server {peak}, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(faults, 80, "20 each of drop, stall, 500 and 429");
    assert_eq!(stats.retries, faults, "one retry per injected fault, none otherwise");
    assert_eq!(stats.requests, N + faults);
    assert_eq!(g.requests.load(Ordering::SeqCst), N + faults, "the server saw exactly the requests the client counted");
    assert_eq!(stats.failures, 0);
    let choices: u64 = requests.iter().map(|r| u64::from(r.sampling.n)).sum();
    assert_eq!((stats.prompt_tokens, stats.completion_tokens), (3 * N, 5 * choices));
    assert!(peak <= 8, "{peak} requests in flight at once, max_in_flight is 8");
    assert!(peak >= 2, "requests never overlapped (peak {peak})");
    // Twenty 429s each waited the server's Retry-After of 1 s.
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn a_400_is_not_retried_and_says_where_and_what() {
    let server = serve(Mode::Status(400)).await;
    let client = HttpClient::new(config(&server.base_url)).unwrap();
    let e = client.complete(&request(0)).await.unwrap_err();
    let text = e.to_string();
    println!("{text}");
    assert!(matches!(e, TeacherError::External { status: Some(400), retryable: false, .. }), "{e:?}");
    assert!(text.contains(&format!("{}/completions", server.base_url)), "{text}");
    assert!(text.contains("HTTP 400") && text.contains("invalid request") && text.contains("its message says which parameter"), "{text}");
    assert_eq!(server.gauges.requests.load(Ordering::SeqCst), 1);
    let stats = client.stats();
    assert_eq!((stats.requests, stats.retries, stats.failures), (1, 0, 1));
}

#[tokio::test]
async fn a_401_names_the_variable_and_never_shows_the_key() {
    const VAR: &str = "LABFLOW_TEST_HTTP_KEY_401";
    const KEY: &str = "sk-test-do-not-leak-4242";
    // This test binary reads no other environment variable concurrently through libc.
    std::env::set_var(VAR, KEY);
    let server = serve(Mode::Status(401)).await;
    let client = HttpClient::new(HttpConfig { api_key_env: Some(VAR.into()), ..config(&server.base_url) }).unwrap();
    let e = client.complete(&request(1)).await.unwrap_err();
    assert_eq!(server.gauges.auth.lock().unwrap().as_deref(), Some(format!("Bearer {KEY}").as_str()), "the key is sent");
    let (text, debug, client_debug) = (e.to_string(), format!("{e:?}"), format!("{client:?}"));
    println!("{text}\n{client_debug}");
    assert!(text.contains("HTTP 401") && text.contains(&format!("check the API key in ${VAR}")), "{text}");
    assert!(text.contains("<redacted>"), "the server's echo of the key is blanked: {text}");
    for shown in [&text, &debug, &client_debug] {
        assert!(!shown.contains(KEY), "the key leaked: {shown}");
    }
}

#[tokio::test]
async fn timeouts_and_refused_connections_give_hints() {
    let server = serve(Mode::Stall).await;
    let client = HttpClient::new(HttpConfig { max_retries: 1, ..config(&server.base_url) }).unwrap();
    let e = client.complete(&request(2)).await.unwrap_err();
    assert!(matches!(e, TeacherError::External { status: None, retryable: true, .. }), "{e:?}");
    assert!(e.to_string().contains("raise timeout_secs") && e.to_string().contains("gave up after 2 attempts"), "{e}");
    assert_eq!(client.stats().retries, 1);

    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let client = HttpClient::new(HttpConfig { max_retries: 2, ..config(&base) }).unwrap();
    let e = client.complete(&request(3)).await.unwrap_err();
    assert!(e.to_string().contains(&format!("is the server running at {base}?")), "{e}");
    assert_eq!(client.stats().requests, 3);
}

#[tokio::test]
async fn chat_prompts_cannot_be_scored_over_http() {
    let client = HttpClient::new(config("http://127.0.0.1:9/v1")).unwrap();
    let e = client.score(&Prompt::Chat(vec![ChatMessage::new("user", "2+2?")]), &["4".to_string()]).await.unwrap_err();
    assert!(matches!(&e, TeacherError::Unsupported(m) if m.contains("embedded teacher")), "{e}");
}

#[tokio::test]
async fn against_llama_cpp_server() {
    let Some(python) = llama_server::python("the HTTP client against llama.cpp's server") else { return };
    let Some(model) = common::model() else { return };
    let server = llama_server::start(&python, &model).await;
    let client =
        HttpClient::new(HttpConfig { timeout_secs: 120, max_in_flight: 2, ..HttpConfig::new(&server.base_url, "smollm2") }).unwrap();
    let ask = |prompt: Prompt, sampling: Sampling| Request { model: String::new(), prompt, sampling };

    // Chat, greedy.
    let chat = Prompt::Chat(vec![ChatMessage::new("user", "What is the capital of France?")]);
    let r = client.complete(&ask(chat.clone(), Sampling::greedy(12))).await.unwrap();
    println!("chat: {:?}", r.choices[0].text);
    assert_eq!(r.choices.len(), 1);
    assert!(!r.choices[0].text.is_empty() && r.usage.prompt_tokens > 0 && r.usage.completion_tokens > 0, "{r:?}");

    // Completions, greedy, with logprobs.
    let text = Prompt::Text("The capital of France is".into());
    let r = client.complete(&ask(text.clone(), Sampling { logprobs: Some(2), ..Sampling::greedy(3) })).await.unwrap();
    let c = &r.choices[0];
    println!("completion: {:?} {:?}", c.text, c.logprobs);
    assert!(c.text.contains("Paris"), "{c:?}");
    assert_eq!(c.finish_reason, FinishReason::Length);
    let lps = c.logprobs.as_ref().unwrap();
    assert_eq!(lps.len(), 3);
    assert_eq!(lps.iter().map(|t| t.token.as_str()).collect::<String>(), c.text);
    for t in lps {
        assert!(t.logprob <= 0.0 && !t.top.is_empty() && t.top.len() <= 2, "{t:?}");
        assert!(t.top.windows(2).all(|w| w[0].1 >= w[1].1), "best first: {t:?}");
        // Greedy: the chosen token is the best one.
        assert!((t.top[0].1 - t.logprob).abs() < 1e-4, "{t:?}");
    }

    // Chat logprobs.
    let r = client.complete(&ask(chat.clone(), Sampling { logprobs: Some(2), ..Sampling::greedy(4) })).await.unwrap();
    let lps = r.choices[0].logprobs.as_ref().unwrap();
    assert!(!lps.is_empty() && lps.iter().all(|t| t.logprob <= 0.0 && t.top.len() <= 2), "{lps:?}");

    // n = 2, seeded sampling: reproducible, and two choices (the server returns one per request;
    // the client asks again for the rest).
    let sampled = Sampling { n: 2, seed: Some(1234), temperature: 0.9, ..Sampling::greedy(12) };
    let a = client.complete(&ask(text.clone(), sampled.clone())).await.unwrap();
    let b = client.complete(&ask(text.clone(), sampled.clone())).await.unwrap();
    println!("n=2 seeded: {:?}", a.choices.iter().map(|c| &c.text).collect::<Vec<_>>());
    assert_eq!(a.choices.len(), 2);
    assert_eq!(a.choices, b.choices, "same seed, same request, same text");

    // score(): either right, or refused with the reason — never wrong numbers. Checked against
    // the greedy continuation's own logprobs, which the server computes without echo.
    let prompt = "The capital of France is";
    let greedy = client.complete(&ask(text.clone(), Sampling { logprobs: Some(1), ..Sampling::greedy(2) })).await.unwrap();
    let cont = greedy.choices[0].text.clone();
    let expected: f64 = greedy.choices[0].logprobs.as_ref().unwrap().iter().map(|t| t.logprob).sum();
    match client.score(&text, &[cont.clone(), " London".to_string()]).await {
        Ok(scores) => {
            println!("score({prompt:?}, {cont:?}) = {} (generation said {expected}); London {}", scores[0], scores[1]);
            assert!((scores[0] - expected).abs() < 1e-2, "score {} vs generation {expected}", scores[0]);
            assert!(scores[0] > scores[1]);
        }
        Err(TeacherError::Unsupported(why)) => println!("score() refused by design on this server: {why}"),
        Err(e) => panic!("score failed: {e}"),
    }
    let e = client.score(&chat, &["Paris".to_string()]).await.unwrap_err();
    assert!(matches!(e, TeacherError::Unsupported(_)));
    println!("llama.cpp server stats: {:?}", client.stats());
    assert_eq!(client.stats().retries, 0);
}
