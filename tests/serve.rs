//! `labflow serve` over a deterministic fake teacher, checked over real HTTP with reqwest and
//! with the official `openai` Python client (tests/reference/openai_client_check.py).
//!
//! `EchoTeacher` answers with the words of the last user message (or the completions prompt)
//! in reverse order, then `#j` for choice `j`: one token per word, `max_tokens` caps the
//! words (finish `length`), stop strings cut the text (finish `stop`), and log-probabilities
//! are a pure function of the position. The prompt `FAIL` makes it fail like an unreachable
//! upstream server.

use futures::future::BoxFuture;
use labflow::serve::{self, ServeOptions};
use labflow::teacher::{Choice, Client, Delta, DeltaSender, FinishReason, Prompt, Request, Response, TeacherError, TokenLogprob, Usage};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;

struct EchoTeacher;

impl EchoTeacher {
    fn source(prompt: &Prompt) -> String {
        match prompt {
            Prompt::Text(t) => t.clone(),
            Prompt::Chat(messages) => messages.iter().rev().find(|m| m.role == "user").map(|m| m.content.clone()).unwrap_or_default(),
        }
    }

    fn choice(request: &Request, j: u32) -> Choice {
        let s = &request.sampling;
        let source = Self::source(&request.prompt);
        let mut words: Vec<String> = source.split_whitespace().rev().map(str::to_string).collect();
        words.push(format!("#{j}"));
        let mut finish = FinishReason::Stop;
        if words.len() > s.max_tokens as usize {
            words.truncate(s.max_tokens as usize);
            finish = FinishReason::Length;
        }
        let tokens: Vec<String> = words.iter().enumerate().map(|(i, w)| if i == 0 { w.clone() } else { format!(" {w}") }).collect();
        let mut text: String = tokens.concat();
        let mut kept = tokens.len();
        if let Some(cut) = s.stop.iter().filter_map(|stop| text.find(stop.as_str())).min() {
            text.truncate(cut);
            finish = FinishReason::Stop;
            let mut end = 0;
            kept = tokens
                .iter()
                .take_while(|t| {
                    end += t.len();
                    end <= cut
                })
                .count();
        }
        let logprobs = s.logprobs.map(|k| {
            tokens[..kept]
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let lp = -0.25 * (i as f64 + 1.0);
                    let mut top = vec![(t.clone(), lp)];
                    top.extend((1..k).map(|a| (format!(" alt{a}"), lp - f64::from(a))));
                    top.truncate(k as usize);
                    TokenLogprob { token: t.clone(), logprob: lp, top }
                })
                .collect()
        });
        Choice { text, finish_reason: finish, logprobs }
    }
}

impl Client for EchoTeacher {
    fn identity(&self) -> String {
        "echo".into()
    }

    fn complete<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Response, TeacherError>> {
        Box::pin(async move {
            if Self::source(&request.prompt) == "FAIL" {
                return Err(TeacherError::External {
                    endpoint: "http://upstream".into(),
                    status: Some(503),
                    message: "unavailable".into(),
                    hint: None,
                    retryable: true,
                });
            }
            let choices: Vec<Choice> = (0..request.sampling.n).map(|j| Self::choice(request, j)).collect();
            let prompt_tokens = Self::source(&request.prompt).split_whitespace().count() as u64;
            let completion_tokens = choices.iter().map(|c| c.text.split_whitespace().count() as u64).sum();
            Ok(Response { choices, usage: Usage { prompt_tokens, completion_tokens } })
        })
    }

    fn score<'a>(&'a self, _prompt: &'a Prompt, continuations: &'a [String]) -> BoxFuture<'a, Result<Vec<f64>, TeacherError>> {
        Box::pin(async move { Ok(continuations.iter().map(|c| -(c.len() as f64)).collect()) })
    }
}

/// Start a server on a free loopback port; it runs until the test's runtime ends.
async fn start(api_key: Option<&str>) -> SocketAddr {
    start_with(ServeOptions { host: "127.0.0.1".into(), port: 0, api_key: api_key.map(str::to_string), access_log: None }).await
}

async fn start_with(options: ServeOptions) -> SocketAddr {
    let listener = serve::bind(&options).await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { serve::serve_on(listener, Arc::new(EchoTeacher), "echo-model".into(), &options).await });
    address
}

async fn post(address: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    let reply = reqwest::Client::new().post(format!("http://{address}{path}")).json(body).send().await.expect("send");
    let status = reply.status().as_u16();
    (status, reply.json().await.expect("JSON reply"))
}

fn chat_body(user: &str) -> Value {
    json!({"model": "anything", "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": user}]})
}

fn assert_error(body: &Value, kind: &str, param: Option<&str>) {
    let e = &body["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert_eq!(e["type"], kind, "{body}");
    if let Some(param) = param {
        assert_eq!(e["param"], param, "{body}");
    }
}

#[tokio::test]
async fn access_log_has_a_line_per_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("access.jsonl");
    let options = ServeOptions { port: 0, api_key: Some("k".into()), access_log: Some(path.clone()), ..ServeOptions::default() };
    let address = start_with(options).await;
    let http = reqwest::Client::new();
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
    let reply = http
        .post(format!("http://{address}/v1/completions"))
        .bearer_auth("k")
        .json(&json!({"prompt": ["a b", "c d e"], "n": 2}))
        .send()
        .await
        .expect("send");
    assert_eq!(reply.status().as_u16(), 200);
    let reply =
        http.post(format!("http://{address}/v1/chat/completions")).bearer_auth("k").json(&chat_body("x y")).send().await.expect("send");
    assert_eq!(reply.status().as_u16(), 200);
    let reply = http.get(format!("http://{address}/v1/models")).send().await.expect("send");
    assert_eq!(reply.status().as_u16(), 401);
    let after = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();

    // Each line is written before its response is sent, so all three are there now.
    let lines: Vec<Value> = std::fs::read_to_string(&path)
        .expect("access log")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let fields = |v: &Value| (v["endpoint"].clone(), v["status"].clone(), v["prompts"].clone(), v["n"].clone());
    assert_eq!(fields(&lines[0]), (json!("/v1/completions"), json!(200), json!(2), json!(2)));
    // Echo: prompt tokens are the words of each prompt (2 + 3); each choice is those words and `#j`.
    assert_eq!((&lines[0]["prompt_tokens"], &lines[0]["completion_tokens"]), (&json!(5), &json!(2 * 3 + 2 * 4)));
    assert_eq!(fields(&lines[1]), (json!("/v1/chat/completions"), json!(200), json!(1), json!(1)));
    assert_eq!(fields(&lines[2]), (json!("/v1/models"), json!(401), json!(0), json!(0)));
    for line in &lines {
        let (start, end) = (line["start"].as_f64().expect("start"), line["end"].as_f64().expect("end"));
        assert!(before - 0.001 <= start && start <= end && end <= after + 0.001, "{line}");
    }
}

#[tokio::test]
async fn models_lists_the_served_model() {
    let address = start(None).await;
    let body: Value = reqwest::get(format!("http://{address}/v1/models")).await.expect("get").json().await.expect("json");
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(1));
    let m = &body["data"][0];
    assert_eq!((&m["id"], &m["object"], &m["owned_by"]), (&json!("echo-model"), &json!("model"), &json!("labflow")));
    assert_eq!(m["labflow"]["seeds_choices_independently"], json!(false), "what the teacher declares (the trait's default here)");
    let one: Value = reqwest::get(format!("http://{address}/v1/models/echo-model")).await.expect("get").json().await.expect("json");
    assert_eq!(&one, m);
    let reply = reqwest::get(format!("http://{address}/v1/models/other")).await.expect("get");
    assert_eq!(reply.status().as_u16(), 404);
    assert_eq!(reply.json::<Value>().await.expect("json")["error"]["code"], "model_not_found");
}

#[tokio::test]
async fn chat_answers_in_openais_shape() {
    let address = start(None).await;
    let (status, body) = post(address, "/v1/chat/completions", &chat_body("one two three")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().is_some_and(|id| id.starts_with("chatcmpl-")));
    assert!(body["created"].as_u64().is_some_and(|t| t > 1_700_000_000));
    assert_eq!(body["model"], "echo-model", "responses name the served model, whatever the request said");
    let c = &body["choices"][0];
    assert_eq!(c["index"], 0);
    assert_eq!(c["message"]["role"], "assistant");
    assert_eq!(c["message"]["content"], "three two one #0");
    assert_eq!(c["finish_reason"], "stop");
    assert_eq!(c["logprobs"], Value::Null);
    assert_eq!(body["usage"], json!({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}));

    let mut capped = chat_body("one two three");
    capped["max_completion_tokens"] = json!(2);
    let (_, body) = post(address, "/v1/chat/completions", &capped).await;
    assert_eq!((&body["choices"][0]["message"]["content"], &body["choices"][0]["finish_reason"]), (&json!("three two"), &json!("length")));

    let mut stopped = chat_body("one two three");
    stopped["stop"] = json!(" one");
    let (_, body) = post(address, "/v1/chat/completions", &stopped).await;
    assert_eq!((&body["choices"][0]["message"]["content"], &body["choices"][0]["finish_reason"]), (&json!("three two"), &json!("stop")));
}

#[tokio::test]
async fn n_gives_indexed_choices() {
    let address = start(None).await;
    let mut body = chat_body("a b");
    body["n"] = json!(3);
    let (status, reply) = post(address, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{reply}");
    let choices = reply["choices"].as_array().expect("choices");
    let got: Vec<(u64, &str)> =
        choices.iter().map(|c| (c["index"].as_u64().unwrap_or(99), c["message"]["content"].as_str().unwrap_or(""))).collect();
    assert_eq!(got, vec![(0, "b a #0"), (1, "b a #1"), (2, "b a #2")]);

    // A completions prompt list: choice j of prompt p has index p * n + j.
    let (_, reply) = post(address, "/v1/completions", &json!({"prompt": ["x", "y"], "n": 2})).await;
    let texts: Vec<&str> = reply["choices"].as_array().expect("choices").iter().map(|c| c["text"].as_str().unwrap_or("")).collect();
    assert_eq!(texts, vec!["x #0", "x #1", "y #0", "y #1"]);
}

#[tokio::test]
async fn completions_answer_with_echo_and_defaults() {
    let address = start(None).await;
    let (status, body) = post(address, "/v1/completions", &json!({"model": "m", "prompt": "hello world", "user": "ignored"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "text_completion");
    assert!(body["id"].as_str().is_some_and(|id| id.starts_with("cmpl-")));
    assert_eq!(body["choices"][0]["text"], "world hello #0");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let (_, body) = post(address, "/v1/completions", &json!({"prompt": ["hello world"], "echo": true, "max_tokens": 1})).await;
    assert_eq!(body["choices"][0]["text"], "hello worldworld");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn logprobs_have_openais_shapes() {
    let address = start(None).await;
    let mut body = chat_body("x y");
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(2);
    let (status, reply) = post(address, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{reply}");
    let content = reply["choices"][0]["logprobs"]["content"].as_array().expect("content");
    assert_eq!(content.len(), 3);
    assert_eq!(
        content[1],
        json!({"token": " x", "logprob": -0.5, "bytes": [32, 120], "top_logprobs": [
            {"token": " x", "logprob": -0.5, "bytes": [32, 120]},
            {"token": " alt1", "logprob": -1.5, "bytes": [32, 97, 108, 116, 49]},
        ]})
    );

    let (status, reply) = post(address, "/v1/completions", &json!({"prompt": "x y", "logprobs": 2})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["choices"][0]["logprobs"],
        json!({
            "tokens": ["y", " x", " #0"],
            "token_logprobs": [-0.25, -0.5, -0.75],
            "top_logprobs": [{"y": -0.25, " alt1": -1.25}, {" x": -0.5, " alt1": -1.5}, {" #0": -0.75, " alt1": -1.75}],
            "text_offset": [0, 1, 3],
        })
    );

    // Prompt log-probabilities (echo + logprobs) are refused with a clear message.
    let (status, reply) = post(address, "/v1/completions", &json!({"prompt": "x", "echo": true, "max_tokens": 0, "logprobs": 1})).await;
    assert_eq!(status, 400);
    assert_error(&reply, "invalid_request_error", Some("echo"));
    assert_eq!(reply["error"]["code"], "unsupported");
}

/// The `data:` payloads of an SSE body.
fn events(body: &str) -> Vec<String> {
    body.lines().filter_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:"))).map(str::to_string).collect()
}

#[tokio::test]
async fn chat_streams_chunks_then_done() {
    let address = start(None).await;
    let mut body = chat_body("one two three");
    body["stream"] = json!(true);
    body["n"] = json!(2);
    body["stream_options"] = json!({"include_usage": true});
    let reply = reqwest::Client::new().post(format!("http://{address}/v1/chat/completions")).json(&body).send().await.expect("send");
    assert_eq!(reply.status().as_u16(), 200);
    let content_type = reply.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(content_type.starts_with("text/event-stream"), "{content_type}");
    let data = events(&reply.text().await.expect("body"));
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).expect("chunk JSON")).collect();
    let mut texts = [String::new(), String::new()];
    let mut roles = [0, 0];
    let mut finishes = [None, None];
    for chunk in &chunks[..chunks.len() - 1] {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], chunks[0]["id"], "one id per stream");
        let c = &chunk["choices"][0];
        let i = c["index"].as_u64().expect("index") as usize;
        assert!(finishes[i].is_none(), "nothing after a choice's finish_reason");
        if c["delta"]["role"] == "assistant" {
            assert_eq!(texts[i], "", "the role comes first");
            roles[i] += 1;
        }
        texts[i] += c["delta"]["content"].as_str().unwrap_or("");
        if let Some(f) = c["finish_reason"].as_str() {
            finishes[i] = Some(f.to_string());
            assert_eq!(c["delta"], json!({}));
        }
    }
    assert_eq!(roles, [1, 1]);
    assert_eq!(texts, ["three two one #0".to_string(), "three two one #1".to_string()]);
    assert_eq!(finishes, [Some("stop".to_string()), Some("stop".to_string())]);
    let usage = &chunks[chunks.len() - 1];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 3 + 8);
}

#[tokio::test]
async fn completions_stream_text_completion_chunks() {
    let address = start(None).await;
    let body = json!({"prompt": "a b c", "stream": true, "logprobs": 1});
    let reply = reqwest::Client::new().post(format!("http://{address}/v1/completions")).json(&body).send().await.expect("send");
    let data = events(&reply.text().await.expect("body"));
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).expect("chunk JSON")).collect();
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    let text: String = chunks.iter().map(|c| c["choices"][0]["text"].as_str().unwrap_or("")).collect();
    assert_eq!(text, "c b a #0");
    // One token per chunk, text_offset counting from the start of the choice.
    assert_eq!(chunks[2]["choices"][0]["logprobs"]["tokens"], json!([" a"]));
    assert_eq!(chunks[2]["choices"][0]["logprobs"]["text_offset"], json!([3]));
    assert_eq!(chunks.last().map(|c| c["choices"][0]["finish_reason"].clone()), Some(json!("stop")));
}

/// A teacher that sends "Hello", waits for the test to open its gate, then sends " world" and
/// finishes (or, with `fail`, fails like an upstream server that went away).
struct GatedTeacher {
    gate: Arc<tokio::sync::Notify>,
    fail: bool,
}

impl Client for GatedTeacher {
    fn identity(&self) -> String {
        "gated".into()
    }

    fn complete<'a>(&'a self, _: &'a Request) -> BoxFuture<'a, Result<Response, TeacherError>> {
        Box::pin(async { Err(TeacherError::Unsupported("this test teacher only streams".into())) })
    }

    fn complete_streaming<'a>(&'a self, _: &'a Request, deltas: DeltaSender) -> BoxFuture<'a, Result<Response, TeacherError>> {
        Box::pin(async move {
            let _ = deltas.send(Delta { choice: 0, text: "Hello".into() });
            self.gate.notified().await;
            if self.fail {
                return Err(TeacherError::External {
                    endpoint: "http://upstream".into(),
                    status: None,
                    message: "connection reset".into(),
                    hint: None,
                    retryable: true,
                });
            }
            let _ = deltas.send(Delta { choice: 0, text: " world".into() });
            let choice = Choice { text: "Hello world".into(), finish_reason: FinishReason::Stop, logprobs: None };
            Ok(Response { choices: vec![choice], usage: Usage { prompt_tokens: 2, completion_tokens: 2 } })
        })
    }

    fn score<'a>(&'a self, _: &'a Prompt, _: &'a [String]) -> BoxFuture<'a, Result<Vec<f64>, TeacherError>> {
        Box::pin(async { Err(TeacherError::Unsupported("no scores".into())) })
    }
}

#[tokio::test]
async fn streams_are_live_the_first_piece_arrives_while_the_teacher_is_still_generating() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("access.jsonl");
    for fail in [false, true] {
        let gate = Arc::new(tokio::sync::Notify::new());
        let options = ServeOptions { port: 0, access_log: Some(log.clone()), ..ServeOptions::default() };
        let listener = serve::bind(&options).await.expect("bind");
        let address = listener.local_addr().expect("address");
        let teacher = Arc::new(GatedTeacher { gate: Arc::clone(&gate), fail });
        tokio::spawn(async move { serve::serve_on(listener, teacher, "gated".into(), &options).await });
        let mut body = chat_body("hi");
        body["stream"] = json!(true);
        let mut reply =
            reqwest::Client::new().post(format!("http://{address}/v1/chat/completions")).json(&body).send().await.expect("send");
        assert_eq!(reply.status().as_u16(), 200);
        let mut seen = String::new();
        let first = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while !seen.contains(r#""content":"Hello""#) {
                let chunk = reply.chunk().await.expect("read").expect("the stream goes on");
                seen.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await;
        assert!(first.is_ok(), "the first piece did not arrive while the teacher was generating: {seen:?}");
        assert!(!seen.contains("finish_reason\":\"stop") && !seen.contains("world"), "{seen}");
        gate.notify_one();
        seen.push_str(&reply.text().await.expect("rest of the stream"));
        let data = events(&seen);
        let chunks: Vec<Value> = data.iter().filter(|d| *d != "[DONE]").map(|d| serde_json::from_str(d).expect("chunk JSON")).collect();
        let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
        if fail {
            assert_eq!(text, "Hello");
            let last = chunks.last().expect("chunks");
            assert_error(last, "upstream_error", None);
            assert!(last["error"]["message"].as_str().is_some_and(|m| m.contains("connection reset")), "{last}");
            assert_ne!(data.last().map(String::as_str), Some("[DONE]"), "a failed stream does not end as if complete");
        } else {
            assert_eq!(text, "Hello world");
            assert_eq!(chunks.last().map(|c| c["choices"][0]["finish_reason"].clone()), Some(json!("stop")));
            assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
            // The access line is written when the stream is complete, with the answer's counts.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let line = loop {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if let Some(line) = text.lines().next() {
                    break serde_json::from_str::<Value>(line).expect("access line JSON");
                }
                assert!(std::time::Instant::now() < deadline, "no access log line after the stream ended");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            };
            assert_eq!((&line["status"], &line["completion_tokens"], &line["prompt_tokens"]), (&json!(200), &json!(2), &json!(2)));
        }
    }
    // A teacher failing before its first piece: an ordinary HTTP error, not a stream.
    let address = start(None).await;
    let mut body = chat_body("FAIL");
    body["stream"] = json!(true);
    let (status, reply) = post(address, "/v1/chat/completions", &body).await;
    assert_eq!(status, 502);
    assert_error(&reply, "upstream_error", None);
}

/// `labflow serve` in front of an HTTP teacher (here: another serve) answers whatever model a
/// request names and whatever name it serves under: the upstream is asked for its own model.
#[tokio::test]
async fn serve_in_front_of_an_http_teacher_answers_under_any_name() {
    let upstream = start(None).await;
    let http = labflow::teacher::HttpClient::new(labflow::teacher::HttpConfig::new(format!("http://{upstream}/v1"), "echo-model")).unwrap();
    let options = ServeOptions { host: "127.0.0.1".into(), port: 0, api_key: None, access_log: None };
    let listener = serve::bind(&options).await.expect("bind");
    let proxy = listener.local_addr().expect("address");
    tokio::spawn(async move { serve::serve_on(listener, Arc::new(http), format!("http://{upstream}/v1#echo-model"), &options).await });
    let (status, body) = post(proxy, "/v1/chat/completions", &chat_body("one two")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "two one #0");
    assert_eq!(body["model"], format!("http://{upstream}/v1#echo-model"));
}

#[tokio::test]
async fn api_key_is_required_when_set() {
    let address = start(Some("sekrit")).await;
    let url = format!("http://{address}/v1/models");
    let http = reqwest::Client::new();
    for auth in [None, Some("Bearer wrong"), Some("sekrit")] {
        let mut req = http.get(&url);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let reply = req.send().await.expect("send");
        assert_eq!(reply.status().as_u16(), 401, "{auth:?}");
        let body: Value = reply.json().await.expect("json");
        assert_error(&body, "authentication_error", None);
        assert!(!body.to_string().contains("sekrit"), "the key never appears in an answer");
    }
    let reply = http.get(&url).bearer_auth("sekrit").send().await.expect("send");
    assert_eq!(reply.status().as_u16(), 200);
    let reply = http.get(&url).header("authorization", "bearer sekrit").send().await.expect("send");
    assert_eq!(reply.status().as_u16(), 200, "the scheme is case-insensitive");
    let reply = http.post(format!("http://{address}/v1/chat/completions")).json(&chat_body("x")).send().await.expect("send");
    assert_eq!(reply.status().as_u16(), 401, "every endpoint is guarded");
}

#[tokio::test]
async fn bad_requests_get_openai_errors_naming_the_field() {
    let address = start(None).await;
    let http = reqwest::Client::new();
    let reply = http.post(format!("http://{address}/v1/chat/completions")).body("{\"messages\": [").send().await.expect("send");
    assert_eq!(reply.status().as_u16(), 400);
    let body: Value = reply.json().await.expect("json");
    assert_error(&body, "invalid_request_error", Some("body"));
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("not valid JSON")), "{body}");

    for (path, request, param) in [
        ("/v1/chat/completions", json!({"messages": [{"role": "user", "content": "x"}], "temperature": "warm"}), "temperature"),
        ("/v1/chat/completions", json!({"messages": [{"role": "user", "content": 3}]}), "messages[0].content"),
        ("/v1/chat/completions", json!({"model": "m"}), "messages"),
        ("/v1/chat/completions", json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}), "max_tokens"),
        ("/v1/completions", json!({"prompt": "x", "logprobs": 21}), "logprobs"),
        ("/v1/completions", json!({"prompt": 5}), "prompt"),
        ("/v1/completions", json!({"prompt": vec!["p"; 9], "n": 128}), "prompt"),
    ] {
        let (status, body) = post(address, path, &request).await;
        assert_eq!(status, 400, "{request}");
        assert_error(&body, "invalid_request_error", Some(param));
        assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains(param.split('[').next().unwrap_or(param))), "{body}");
    }

    let (status, body) = post(address, "/v1/chat/completions", &chat_body("FAIL")).await;
    assert_eq!(status, 502);
    assert_error(&body, "upstream_error", None);
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("unavailable")), "{body}");

    let reply = http.get(format!("http://{address}/v1/embeddings")).send().await.expect("send");
    assert_eq!(reply.status().as_u16(), 404);
    assert_error(&reply.json().await.expect("json"), "invalid_request_error", None);
    let reply = http.get(format!("http://{address}/v1/completions")).send().await.expect("send");
    assert_eq!(reply.status().as_u16(), 405);
    assert_error(&reply.json().await.expect("json"), "invalid_request_error", None);
}

/// The acceptance test: the official `openai` Python client against `labflow serve`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_client() {
    let Some(python) = std::env::var_os("LABFLOW_OPENAI_PYTHON").filter(|p| !p.is_empty()) else {
        assert!(
            std::env::var("LABFLOW_REQUIRE_OPENAI").as_deref() != Ok("1"),
            "LABFLOW_REQUIRE_OPENAI=1 but LABFLOW_OPENAI_PYTHON is not set to a python with `openai` installed"
        );
        eprintln!("SKIPPED: set LABFLOW_OPENAI_PYTHON=/path/to/python (with `pip install openai`) to run the openai client check");
        return;
    };
    let address = start(Some("test-key")).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/openai_client_check.py");
    let output = tokio::process::Command::new(&python)
        .args([script, &format!("http://{address}/v1"), "--api-key", "test-key", "--expect-echo"])
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {python:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(output.status.success(), "openai client check failed ({}):\n{stdout}\n{stderr}", output.status);
    assert!(stdout.contains(": OK: "), "{stdout}");
}

#[test]
fn cli_names_the_fetch_script_and_the_missing_embedded_model() {
    let bin = env!("CARGO_BIN_EXE_labflow");
    let out = std::process::Command::new(bin).args(["serve", "--model", "/no/such/model.gguf", "--port", "0"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bash models/fetch.sh"), "{stderr}");

    let existing = tempfile::NamedTempFile::new().expect("temp file");
    let path = existing.path().to_string_lossy().into_owned();
    let out = std::process::Command::new(bin).args(["chat", "--model", &path, "hello"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a valid GGUF file"), "{stderr}");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = std::process::Command::new(bin).args(["chat", "--model", &dir.path().to_string_lossy(), "hello"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    // An empty folder is read as a Hugging Face model folder: the error names the missing file.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tokenizer.json not found") && stderr.contains("config.json, model.safetensors"), "{stderr}");
}
