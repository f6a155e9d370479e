//! The OpenAI wire format: request bodies built from a `Request`, and replies parsed into a
//! [`Response`] or into continuation scores.
//!
//! Pure functions over `serde_json` values, so the exact JSON can be tested without a server; the
//! client in `http.rs` only moves these bodies over the network. Servers add fields freely (vLLM,
//! llama.cpp and OpenAI all differ), so parsing ignores unknown fields and names the first
//! missing one it needs.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::teacher::constraint::{gbnf, Constraint, ConstraintError, Dialect};
use crate::teacher::{ChatMessage, Choice, FinishReason, Response, Sampling, TeacherError, TokenLogprob, Usage};

/// A float the way a person wrote it: `f32` 0.7 widened to `f64` is 0.699999988079071, which is
/// noise in the request log and in golden tests; the shortest decimal that round-trips is not.
fn float(x: f32) -> Value {
    let shortest: f64 = x.to_string().parse().unwrap_or(f64::from(x));
    serde_json::Number::from_f64(shortest).map(Value::Number).unwrap_or(Value::Null)
}

/// The sampling fields both endpoints share, in a fixed order (the cache hashes rendered requests).
fn sampling_fields(body: &mut Map<String, Value>, s: &Sampling, n: u32, seed: Option<u64>) {
    body.insert("n".into(), json!(n));
    body.insert("temperature".into(), float(s.temperature));
    body.insert("top_p".into(), float(s.top_p));
    body.insert("max_tokens".into(), json!(s.max_tokens));
    if !s.stop.is_empty() {
        body.insert("stop".into(), json!(s.stop));
    }
    if let Some(seed) = seed {
        body.insert("seed".into(), json!(seed));
    }
    // Not in the OpenAI API; vLLM and llama.cpp accept it, hosted APIs ignore or refuse it, so it
    // is only sent when asked for.
    if let Some(k) = s.top_k {
        body.insert("top_k".into(), json!(k));
    }
}

/// Body for `/chat/completions` asking for `n` choices with `seed` (the client may split one
/// request into several when a server returns fewer choices than asked).
pub(crate) fn chat_body(model: &str, messages: &[ChatMessage], s: &Sampling, n: u32, seed: Option<u64>) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    let messages: Vec<Value> = messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect();
    body.insert("messages".into(), Value::Array(messages));
    sampling_fields(&mut body, s, n, seed);
    if let Some(k) = s.logprobs {
        body.insert("logprobs".into(), json!(true));
        body.insert("top_logprobs".into(), json!(k));
    }
    Value::Object(body)
}

/// Body for `/completions`.
pub(crate) fn completion_body(model: &str, prompt: &str, s: &Sampling, n: u32, seed: Option<u64>) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("prompt".into(), json!(prompt));
    sampling_fields(&mut body, s, n, seed);
    if let Some(k) = s.logprobs {
        body.insert("logprobs".into(), json!(k));
    }
    Value::Object(body)
}

/// Adds `constraint` to a request body in the server's `dialect`; a constraint the dialect
/// cannot express is left out (the step parses and rejects as without one). Errors only when
/// the constraint itself is malformed.
pub(crate) fn constraint_fields(body: &mut Value, constraint: Option<&Constraint>, dialect: Dialect) -> Result<(), ConstraintError> {
    let (Some(c), Value::Object(body)) = (constraint, body) else { return Ok(()) };
    match (dialect, c) {
        (Dialect::None, _) => {}
        (Dialect::Vllm, Constraint::Regex(r)) => {
            body.insert("guided_regex".into(), json!(r));
        }
        (Dialect::Vllm, Constraint::Choice(labels)) => {
            body.insert("guided_choice".into(), json!(labels));
        }
        (Dialect::Vllm, Constraint::JsonSchema(schema)) => {
            body.insert("guided_json".into(), schema.clone());
        }
        // Schemas too go as the grammar of their regex: llama-cpp-python's server has no
        // `json_schema` field and ignores it (the output came back unconstrained), while both it
        // and llama.cpp's own llama-server take `grammar` (which refuses the two together).
        (Dialect::LlamaCpp, c) => {
            body.insert("grammar".into(), json!(gbnf::from_regex(&c.regex()?)?));
        }
        (Dialect::Openai, Constraint::JsonSchema(schema)) => {
            body.insert("response_format".into(), json!({"type": "json_schema", "json_schema": {"name": "labflow", "schema": schema}}));
        }
        (Dialect::Openai, _) => {}
    }
    Ok(())
}

/// Body for scoring `text` (prompt + continuation) by echo on `/completions`.
///
/// `max_tokens` is 1, not 0: llama-cpp-python's server reads 0 as "no limit" and generates up to
/// the context size. The one generated token lies past the text and is not scored, but it lets
/// [`score_from_echo`] check the server's alignment. Greedy, so that check is exact.
pub(crate) fn score_body(model: &str, text: &str) -> Value {
    json!({"model": model, "prompt": text, "max_tokens": 1, "temperature": 0, "echo": true, "logprobs": 1})
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

#[derive(Deserialize)]
struct Reply<C> {
    choices: Option<Vec<C>>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct ChatChoice {
    index: Option<u32>,
    message: Option<ChatMessageOut>,
    finish_reason: Option<String>,
    logprobs: Option<ChatLogprobs>,
}

#[derive(Deserialize)]
struct ChatMessageOut {
    content: Option<String>,
}

#[derive(Deserialize)]
struct ChatLogprobs {
    content: Option<Vec<ChatTokenLogprob>>,
}

#[derive(Deserialize)]
struct ChatTokenLogprob {
    token: String,
    logprob: f64,
    #[serde(default)]
    top_logprobs: Vec<ChatTop>,
}

#[derive(Deserialize)]
struct ChatTop {
    token: String,
    logprob: f64,
}

#[derive(Deserialize)]
struct TextChoice {
    index: Option<u32>,
    text: Option<String>,
    finish_reason: Option<String>,
    logprobs: Option<TextLogprobs>,
}

/// The legacy completions shape: parallel arrays, one entry per token. Entries are null where the
/// model had no context (the first echoed token).
#[derive(Deserialize)]
struct TextLogprobs {
    #[serde(default)]
    tokens: Vec<String>,
    #[serde(default)]
    token_logprobs: Vec<Option<f64>>,
    #[serde(default)]
    top_logprobs: Option<Vec<Option<Map<String, Value>>>>,
    #[serde(default)]
    text_offset: Option<Vec<usize>>,
}

fn data(endpoint: &str, message: impl Into<String>) -> TeacherError {
    TeacherError::Data { endpoint: endpoint.to_string(), message: message.into() }
}

fn finish(reason: Option<&str>) -> FinishReason {
    // Only `length` means truncation; `stop`, `eos`, `tool_calls`, `content_filter` and null all
    // mean the model ended the text itself.
    match reason {
        Some("length") => FinishReason::Length,
        _ => FinishReason::Stop,
    }
}

/// Best first, at most `k` (servers such as llama-cpp-python add the chosen token on top of k).
fn best_first(mut top: Vec<(String, f64)>, k: u32) -> Vec<(String, f64)> {
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    top.truncate(k as usize);
    top
}

fn parse<C: for<'de> Deserialize<'de>>(endpoint: &str, reply: Value) -> Result<(Vec<C>, Usage), TeacherError> {
    let reply: Reply<C> =
        serde_json::from_value(reply).map_err(|e| data(endpoint, format!("reply does not have the OpenAI shape: {e}")))?;
    let choices = reply.choices.ok_or_else(|| data(endpoint, "no `choices` in the reply"))?;
    if choices.is_empty() {
        return Err(data(endpoint, "`choices` is empty"));
    }
    let usage = reply.usage.map(|u| Usage { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens }).unwrap_or_default();
    Ok((choices, usage))
}

/// Parse a `/chat/completions` reply; `logprobs` is what was asked for.
pub(crate) fn parse_chat(endpoint: &str, reply: Value, logprobs: Option<u32>) -> Result<Response, TeacherError> {
    let (mut choices, usage) = parse::<ChatChoice>(endpoint, reply)?;
    let position: Vec<u32> = choices.iter().enumerate().map(|(i, c)| c.index.unwrap_or(i as u32)).collect();
    let mut indexed: Vec<(u32, ChatChoice)> = position.into_iter().zip(choices.drain(..)).collect();
    indexed.sort_by_key(|(i, _)| *i);
    let mut out = Vec::with_capacity(indexed.len());
    for (i, c) in indexed {
        let text = c.message.and_then(|m| m.content).ok_or_else(|| data(endpoint, format!("choices[{i}].message.content is missing")))?;
        let logprobs = match logprobs {
            None => None,
            Some(k) => {
                let content = c
                    .logprobs
                    .and_then(|l| l.content)
                    .ok_or_else(|| data(endpoint, format!("logprobs were asked for but choices[{i}].logprobs.content is missing")))?;
                Some(
                    content
                        .into_iter()
                        .map(|t| TokenLogprob {
                            token: t.token,
                            logprob: t.logprob,
                            top: best_first(t.top_logprobs.into_iter().map(|a| (a.token, a.logprob)).collect(), k),
                        })
                        .collect(),
                )
            }
        };
        out.push(Choice { text, finish_reason: finish(c.finish_reason.as_deref()), logprobs });
    }
    Ok(Response { choices: out, usage })
}

fn top_map(endpoint: &str, i: u32, pos: usize, m: Map<String, Value>) -> Result<Vec<(String, f64)>, TeacherError> {
    m.into_iter()
        .map(|(tok, lp)| {
            lp.as_f64()
                .map(|lp| (tok, lp))
                .ok_or_else(|| data(endpoint, format!("choices[{i}].logprobs.top_logprobs[{pos}] holds a non-number")))
        })
        .collect()
}

/// Parse a `/completions` reply; `logprobs` is what was asked for.
pub(crate) fn parse_completion(endpoint: &str, reply: Value, logprobs: Option<u32>) -> Result<Response, TeacherError> {
    let (mut choices, usage) = parse::<TextChoice>(endpoint, reply)?;
    let position: Vec<u32> = choices.iter().enumerate().map(|(i, c)| c.index.unwrap_or(i as u32)).collect();
    let mut indexed: Vec<(u32, TextChoice)> = position.into_iter().zip(choices.drain(..)).collect();
    indexed.sort_by_key(|(i, _)| *i);
    let mut out = Vec::with_capacity(indexed.len());
    for (i, c) in indexed {
        let text = c.text.ok_or_else(|| data(endpoint, format!("choices[{i}].text is missing")))?;
        let logprobs = match logprobs {
            None => None,
            Some(k) => {
                let lp =
                    c.logprobs.ok_or_else(|| data(endpoint, format!("logprobs were asked for but choices[{i}].logprobs is missing")))?;
                if lp.token_logprobs.len() != lp.tokens.len() {
                    return Err(data(
                        endpoint,
                        format!("choices[{i}].logprobs: {} tokens but {} token_logprobs", lp.tokens.len(), lp.token_logprobs.len()),
                    ));
                }
                let mut tops = lp.top_logprobs.unwrap_or_default().into_iter();
                let mut tokens = Vec::with_capacity(lp.tokens.len());
                for (pos, (token, logprob)) in lp.tokens.into_iter().zip(lp.token_logprobs).enumerate() {
                    let logprob = logprob.ok_or_else(|| data(endpoint, format!("choices[{i}].logprobs.token_logprobs[{pos}] is null")))?;
                    let top = match tops.next().flatten() {
                        Some(m) => best_first(top_map(endpoint, i, pos, m)?, k),
                        None => Vec::new(),
                    };
                    tokens.push(TokenLogprob { token, logprob, top });
                }
                Some(tokens)
            }
        };
        out.push(Choice { text, finish_reason: finish(c.finish_reason.as_deref()), logprobs });
    }
    Ok(Response { choices: out, usage })
}

/// Start offsets of the tokens, from `text_offset` when given, else by adding up token lengths.
fn starts(lp: &TextLogprobs) -> Result<Vec<usize>, ScoreFailure> {
    let n = lp.tokens.len();
    match &lp.text_offset {
        Some(o) if o.len() == n => Ok(o.clone()),
        Some(o) => Err(ScoreFailure::Data(format!("{n} tokens but {} text_offset entries", o.len()))),
        None => Ok(lp
            .tokens
            .iter()
            .scan(0usize, |at, t| {
                let s = *at;
                *at += t.chars().count();
                Some(s)
            })
            .collect()),
    }
}

/// The logprob an echo reply gives `token` starting at character `at`, if it has that token there.
///
/// The client's alignment probe: generate one greedy token after a prompt, then echo prompt +
/// token; a server whose echo is right reports the same logprob for it both ways.
pub(crate) fn echoed_logprob(reply: Value, at: usize, token: &str) -> Option<f64> {
    let reply: Reply<TextChoice> = serde_json::from_value(reply).ok()?;
    let lp = reply.choices?.into_iter().next()?.logprobs?;
    let starts = starts(&lp).ok()?;
    let pos = starts.iter().position(|&s| s == at)?;
    (lp.tokens.get(pos)? == token).then_some(())?;
    *lp.token_logprobs.get(pos)?
}

/// Why an echo reply could not be turned into a score.
#[derive(Debug, PartialEq)]
pub(crate) enum ScoreFailure {
    /// The reply is malformed.
    Data(String),
    /// The reply is well-formed but its numbers cannot be right (see [`score_from_echo`]).
    Misaligned(String),
}

/// Sum the log-probabilities of the continuation's tokens in an echo reply for
/// `prompt + continuation` (positions in Unicode scalar values, which is how vLLM and
/// llama-cpp-python count `text_offset`).
///
/// A token belongs to the continuation when it covers any of the continuation's characters; a
/// token straddling the boundary is counted whole, as a tokenizer that merged the two would have
/// produced it. Tokens at or past the end are the one generated token.
///
/// Check: generation was greedy, so a generated token in the arrays must be the most likely one
/// at its position; a server whose echo is shifted by one token fails this. Not every server puts
/// the generated token in the arrays (llama-cpp-python does not), so the client also probes each
/// server once (`HttpClient::check_echo`) before trusting its echo at all.
pub(crate) fn score_from_echo(reply: Value, prompt: &str, continuation: &str) -> Result<f64, ScoreFailure> {
    let prompt_chars = prompt.chars().count();
    let full_chars = prompt_chars + continuation.chars().count();
    let bad = |m: String| ScoreFailure::Data(m);
    let reply: Reply<TextChoice> = serde_json::from_value(reply).map_err(|e| bad(format!("reply does not have the OpenAI shape: {e}")))?;
    let choice = reply.choices.and_then(|c| c.into_iter().next()).ok_or_else(|| bad("no `choices` in the reply".into()))?;
    // A server that ignores `echo` returns only the generated text.
    if let Some(text) = &choice.text {
        if !text.strip_prefix(prompt).is_some_and(|rest| rest.starts_with(continuation)) {
            return Err(bad("the reply does not echo the prompt (does the server support `echo`?)".into()));
        }
    }
    let lp = choice.logprobs.ok_or_else(|| bad("choices[0].logprobs is missing (does the server support echo with logprobs?)".into()))?;
    let n = lp.tokens.len();
    if lp.token_logprobs.len() != n {
        return Err(bad(format!("{n} tokens but {} token_logprobs", lp.token_logprobs.len())));
    }
    let starts = starts(&lp)?;
    if starts.first().is_none_or(|&s| s >= full_chars) {
        return Err(bad("no echoed tokens in the reply (does the server support `echo`?)".into()));
    }
    let mut sum = 0.0;
    for pos in 0..n {
        let start = starts[pos];
        let end = starts.get(pos + 1).copied().unwrap_or(start + lp.tokens[pos].chars().count());
        if start >= full_chars || end <= prompt_chars {
            continue;
        }
        match lp.token_logprobs[pos] {
            Some(x) => sum += x,
            None => {
                return Err(bad(format!("token {pos} ({:?}) of the continuation has no logprob; is the prompt empty?", lp.tokens[pos])))
            }
        }
    }
    // The greedy token past the text, if the server generated one.
    if let Some(pos) = (0..n).find(|&p| starts[p] >= full_chars) {
        let chosen = lp.token_logprobs[pos];
        let best = lp
            .top_logprobs
            .as_ref()
            .and_then(|t| t.get(pos))
            .and_then(|m| m.as_ref())
            .and_then(|m| m.values().filter_map(Value::as_f64).reduce(f64::max));
        if let (Some(chosen), Some(best)) = (chosen, best) {
            if best > chosen + 1e-3 {
                return Err(ScoreFailure::Misaligned(format!(
                    "the greedy token {:?} has logprob {chosen:.4} but its position's best is {best:.4}: the server's echo logprobs are shifted \
                     (known for llama-cpp-python 0.3.x)",
                    lp.tokens[pos]
                )));
            }
        }
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampling() -> Sampling {
        Sampling {
            temperature: 0.7,
            top_p: 0.9,
            top_k: Some(40),
            max_tokens: 64,
            stop: vec!["\n\n".into()],
            seed: Some(42),
            n: 2,
            logprobs: Some(3),
            constraint: None,
        }
    }

    #[test]
    fn chat_body_golden() {
        let msgs = vec![ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hi")];
        let body = chat_body("m", &msgs, &sampling(), 2, Some(42));
        assert_eq!(
            body.to_string(),
            r#"{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}],"n":2,"temperature":0.7,"top_p":0.9,"max_tokens":64,"stop":["\n\n"],"seed":42,"top_k":40,"logprobs":true,"top_logprobs":3}"#
        );
    }

    #[test]
    fn completion_body_golden_defaults_omit_optional_fields() {
        let body = completion_body("m", "Once", &Sampling::default(), 1, None);
        assert_eq!(body.to_string(), r#"{"model":"m","prompt":"Once","n":1,"temperature":1.0,"top_p":1.0,"max_tokens":256}"#);
        let body = completion_body("m", "Once", &sampling(), 2, Some(42));
        assert_eq!(
            body.to_string(),
            r#"{"model":"m","prompt":"Once","n":2,"temperature":0.7,"top_p":0.9,"max_tokens":64,"stop":["\n\n"],"seed":42,"top_k":40,"logprobs":3}"#
        );
    }

    #[test]
    fn score_body_golden() {
        assert_eq!(
            score_body("m", "Q: 2+2? A: 4").to_string(),
            r#"{"model":"m","prompt":"Q: 2+2? A: 4","max_tokens":1,"temperature":0,"echo":true,"logprobs":1}"#
        );
    }

    /// Modelled on the OpenAI chat completion object (with `logprobs`), choices out of order.
    const CHAT_REPLY: &str = r#"{
      "id": "chatcmpl-123", "object": "chat.completion", "created": 1677652288, "model": "gpt-4o-mini",
      "system_fingerprint": "fp_44709d6fcb",
      "choices": [
        {"index": 1, "message": {"role": "assistant", "content": "Hi!", "refusal": null}, "logprobs": {"content": [
            {"token": "Hi", "logprob": -0.5, "bytes": [72, 105], "top_logprobs": [{"token": "Hello", "logprob": -1.2, "bytes": null}, {"token": "Hi", "logprob": -0.5, "bytes": null}]},
            {"token": "!", "logprob": -0.01, "bytes": [33], "top_logprobs": []}], "refusal": null}, "finish_reason": "stop"},
        {"index": 0, "message": {"role": "assistant", "content": "Hello there"}, "logprobs": {"content": [
            {"token": "Hello", "logprob": -0.3, "top_logprobs": [{"token": "Hello", "logprob": -0.3}]},
            {"token": " there", "logprob": -2.0, "top_logprobs": [{"token": " there", "logprob": -2.0}]}]}, "finish_reason": "length"}
      ],
      "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    }"#;

    #[test]
    fn parses_chat_reply_sorted_by_index() {
        let r = parse_chat("E", serde_json::from_str(CHAT_REPLY).unwrap(), Some(1)).unwrap();
        assert_eq!(r.usage, Usage { prompt_tokens: 9, completion_tokens: 4 });
        assert_eq!(r.choices.len(), 2);
        assert_eq!(r.choices[0].text, "Hello there");
        assert_eq!(r.choices[0].finish_reason, FinishReason::Length);
        assert_eq!(r.choices[1].text, "Hi!");
        assert_eq!(r.choices[1].finish_reason, FinishReason::Stop);
        let lp = r.choices[1].logprobs.as_ref().unwrap();
        assert_eq!(lp[0], TokenLogprob { token: "Hi".into(), logprob: -0.5, top: vec![("Hi".into(), -0.5)] });
        assert_eq!(lp[1].top, vec![]);
        // Without logprobs asked, none are returned even when the server sends them.
        let r = parse_chat("E", serde_json::from_str(CHAT_REPLY).unwrap(), None).unwrap();
        assert!(r.choices.iter().all(|c| c.logprobs.is_none()));
    }

    /// Modelled on the OpenAI legacy completion object with `logprobs: 2`.
    const TEXT_REPLY: &str = r#"{
      "id": "cmpl-1", "object": "text_completion", "created": 1, "model": "davinci-002",
      "choices": [{"text": " Paris.", "index": 0, "finish_reason": "eos", "logprobs": {
        "tokens": [" Paris", "."], "token_logprobs": [-0.26, -0.39], "text_offset": [24, 30],
        "top_logprobs": [{" the": -2.8, " Paris": -0.26, " a": -3.0}, {",": -1.6, ".": -0.39}]}}],
      "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    }"#;

    #[test]
    fn parses_completion_reply() {
        let r = parse_completion("E", serde_json::from_str(TEXT_REPLY).unwrap(), Some(2)).unwrap();
        assert_eq!(r.choices[0].text, " Paris.");
        assert_eq!(r.choices[0].finish_reason, FinishReason::Stop);
        let lp = r.choices[0].logprobs.as_ref().unwrap();
        assert_eq!(lp[0].top, vec![(" Paris".to_string(), -0.26), (" the".to_string(), -2.8)]);
        assert_eq!(lp[1].logprob, -0.39);
        assert_eq!(r.usage.completion_tokens, 2);
    }

    #[test]
    fn unparseable_replies_name_endpoint_and_what_is_missing() {
        let cases = [
            (r#"{"object": "error"}"#, "no `choices`"),
            (r#"{"choices": []}"#, "`choices` is empty"),
            (r#"{"choices": [{"index": 0, "finish_reason": "stop"}]}"#, "choices[0].text is missing"),
            (r#"{"choices": "x"}"#, "OpenAI shape"),
        ];
        for (body, want) in cases {
            let e = parse_completion("http://h/v1/completions", serde_json::from_str(body).unwrap(), None).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, TeacherError::Data { .. }), "{msg}");
            assert!(msg.contains("http://h/v1/completions") && msg.contains(want), "{msg}");
        }
        let e = parse_chat("E", serde_json::from_str(r#"{"choices": [{"index": 0, "message": {"content": "x"}}]}"#).unwrap(), Some(1))
            .unwrap_err();
        assert!(e.to_string().contains("choices[0].logprobs.content is missing"), "{e}");
        let e = parse_chat("E", serde_json::from_str(r#"{"choices": [{"index": 0, "message": {"content": null}}]}"#).unwrap(), None)
            .unwrap_err();
        assert!(e.to_string().contains("message.content is missing"), "{e}");
    }

    fn echo(tokens: &[&str], lps: &[Option<f64>], tops: Value) -> Value {
        json!({"choices": [{"index": 0, "text": tokens.concat(), "finish_reason": "length",
            "logprobs": {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops}}]})
    }

    #[test]
    fn score_sums_only_continuation_tokens() {
        // "The sky is" + " blue" + generated "."
        let reply = echo(
            &["The", " sky", " is", " blue", "."],
            &[None, Some(-5.0), Some(-1.0), Some(-0.5), Some(-0.2)],
            json!([null, {" sky": -5.0}, {" is": -1.0}, {" blue": -0.5}, {".": -0.2}]),
        );
        assert_eq!(score_from_echo(reply, "The sky is", " blue"), Ok(-0.5));
        // A token straddling the boundary ("is b" split as " i", "s blue") counts whole.
        let reply =
            echo(&["The sky", " i", "s blue", "."], &[None, Some(-1.0), Some(-3.0), Some(-0.2)], json!([null, null, null, {".": -0.2}]));
        assert_eq!(score_from_echo(reply, "The sky is", " blue"), Ok(-3.0));
    }

    #[test]
    fn score_refuses_shifted_echo_and_missing_pieces() {
        let reply = echo(&["Hi", " there", "!"], &[None, Some(-1.0), Some(-9.0)], json!([null, {" there": -1.0}, {"\n": -0.1, "!": -9.0}]));
        assert!(matches!(score_from_echo(reply, "Hi", " there"), Err(ScoreFailure::Misaligned(_))));
        let reply = echo(&["Hi"], &[None], json!([null]));
        assert!(matches!(score_from_echo(reply, "", "Hi"), Err(ScoreFailure::Data(m)) if m.contains("no logprob")));
        let reply =
            json!({"choices": [{"index": 0, "text": "!", "logprobs": {"tokens": ["!"], "token_logprobs": [-1.0], "text_offset": [5]}}]});
        assert!(matches!(score_from_echo(reply, "Hi", " you"), Err(ScoreFailure::Data(m)) if m.contains("echo")));
        let reply = json!({"choices": [{"index": 0, "text": "Hi you!"}]});
        assert!(matches!(score_from_echo(reply, "Hi", " you"), Err(ScoreFailure::Data(m)) if m.contains("echo")));
    }

    #[test]
    fn echoed_logprob_finds_the_probe_token() {
        let reply = echo(&["1,", " 2,", " 3"], &[None, Some(-0.5), Some(-0.1)], json!(null));
        assert_eq!(echoed_logprob(reply.clone(), 5, " 3"), Some(-0.1));
        assert_eq!(echoed_logprob(reply.clone(), 5, " 4"), None);
        assert_eq!(echoed_logprob(reply, 4, " 3"), None);
    }

    #[test]
    fn floats_are_written_as_given() {
        assert_eq!(float(0.7).to_string(), "0.7");
        assert_eq!(float(1.0).to_string(), "1.0");
        assert_eq!(float(0.95).to_string(), "0.95");
    }

    #[test]
    fn constraints_go_out_in_each_dialect() {
        let with = |c: Constraint, d: Dialect| {
            let mut body = completion_body("m", "x", &Sampling::default(), 1, None);
            constraint_fields(&mut body, Some(&c), d).unwrap();
            body
        };
        let choice = Constraint::Choice(vec!["YES".into(), "NO".into()]);
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]});
        assert_eq!(with(choice.clone(), Dialect::Vllm)["guided_choice"], json!(["YES", "NO"]));
        assert_eq!(with(Constraint::Regex("a+".into()), Dialect::Vllm)["guided_regex"], json!("a+"));
        assert_eq!(with(Constraint::JsonSchema(schema.clone()), Dialect::Vllm)["guided_json"], schema);
        assert_eq!(with(choice.clone(), Dialect::LlamaCpp)["grammar"], json!("root ::= (\"YES\" | \"NO\")\n"));
        let schema_grammar = gbnf::from_regex(&Constraint::JsonSchema(schema.clone()).regex().unwrap()).unwrap();
        assert_eq!(with(Constraint::JsonSchema(schema.clone()), Dialect::LlamaCpp)["grammar"], json!(schema_grammar));
        assert!(with(Constraint::JsonSchema(schema.clone()), Dialect::LlamaCpp).get("json_schema").is_none());
        assert_eq!(with(Constraint::JsonSchema(schema.clone()), Dialect::Openai)["response_format"]["json_schema"]["schema"], schema);
        let plain = completion_body("m", "x", &Sampling::default(), 1, None);
        assert_eq!(with(choice.clone(), Dialect::Openai), plain, "OpenAI takes no choice constraint");
        assert_eq!(with(choice, Dialect::None), plain);
    }
}
