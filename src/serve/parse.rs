//! Parse an OpenAI request body (chat or legacy completions) into a teacher [`Prompt`] and
//! [`Sampling`], naming the field at fault in every error.
//!
//! Fields are read from a `serde_json::Value` one by one, not through a derived struct, so an
//! error says `temperature must be a number between 0 and 2` rather than serde's
//! `invalid type at line 1 column 40`. As OpenAI does, unknown fields (`user`, `metadata`, …)
//! are ignored and `null` means "not given". Known fields that would change the answer but that
//! no teacher here implements (penalties, `logit_bias`, tools, JSON mode without a schema,
//! grammars, `suffix`) are refused with a 400 rather than silently ignored.
//!
//! Decoding constraints ([`Constraint`]) come as vLLM's `guided_regex`, `guided_choice` and
//! `guided_json`, or as OpenAI's `response_format: {"type": "json_schema", …}`; at most one per
//! request, on both endpoints. They are checked here ([`Constraint::check`]), so a malformed one
//! is a 400 naming its field before the teacher sees it.

use super::error::ApiError;
use crate::teacher::constraint::Constraint;
use crate::teacher::{ChatMessage, Prompt, Sampling};
use serde_json::{Map, Value};

/// Most choices one request may ask for.
pub const MAX_N: u32 = 128;
/// Most alternatives per position (`top_logprobs`, completions' `logprobs`); OpenAI's limit.
pub const MAX_TOP_LOGPROBS: u32 = 20;
/// Most choices one request may ask for in all (prompts × `n`).
pub const MAX_CHOICES: usize = 1024;
/// `max_tokens` of a completions request that gives none: OpenAI's default.
const COMPLETIONS_DEFAULT_MAX_TOKENS: u32 = 16;

/// Which endpoint a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/completions`.
    Completions,
}

/// A parsed request, ready to become one teacher [`crate::teacher::Request`] per prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    /// Which endpoint, hence which response shape.
    pub endpoint: Endpoint,
    /// One prompt for chat; one or more for completions (OpenAI's batched `prompt` list).
    pub prompts: Vec<Prompt>,
    /// Sampling parameters shared by every prompt.
    pub sampling: Sampling,
    /// Answer as server-sent events.
    pub stream: bool,
    /// `stream_options.include_usage`: one more chunk with the token counts before `[DONE]`.
    pub include_usage: bool,
    /// Completions' `echo`: the prompt is prepended to every choice's text.
    pub echo: bool,
}

/// Parse a request body for `endpoint`.
pub fn parse(endpoint: Endpoint, body: &[u8]) -> Result<ApiRequest, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::invalid("body", format!("the request body is not valid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(ApiError::invalid("body", "the request body must be a JSON object"));
    };
    let f = Fields(&map);
    refuse_unsupported(&f, endpoint)?;

    let mut sampling = Sampling::default();
    if let Some(t) = f.number("temperature")? {
        if !(0.0..=2.0).contains(&t) {
            return Err(ApiError::invalid("temperature", format!("temperature must be between 0 and 2, got {t}")));
        }
        sampling.temperature = t as f32;
    }
    if let Some(p) = f.number("top_p")? {
        if !(p > 0.0 && p <= 1.0) {
            return Err(ApiError::invalid("top_p", format!("top_p must be in (0, 1], got {p}")));
        }
        sampling.top_p = p as f32;
    }
    // An extension (vLLM, llama.cpp): 0 or negative means off.
    if let Some(k) = f.integer("top_k")? {
        sampling.top_k = u32::try_from(k).ok().filter(|&k| k > 0);
    }
    if let Some(n) = f.integer("n")? {
        sampling.n = u32::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_N).contains(n))
            .ok_or_else(|| ApiError::invalid("n", format!("n must be between 1 and {MAX_N}, got {n}")))?;
    }
    // OpenAI's seed is any integer; a negative one is reinterpreted, which keeps it distinct.
    sampling.seed = f.integer("seed")?.map(|s| s as u64);
    sampling.stop = match f.get("stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().map(str::to_string).ok_or_else(|| ApiError::invalid(format!("stop[{i}]"), "stop strings must be strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ApiError::invalid("stop", "stop must be a string or a list of strings")),
    };
    if sampling.stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid("stop", "stop strings must not be empty"));
    }
    sampling.constraint = constraint(&f)?;
    let stream = f.boolean("stream")?.unwrap_or(false);
    let include_usage = match f.get("stream_options") {
        None => false,
        Some(Value::Object(o)) => {
            Fields(o).boolean("include_usage").map_err(|e| rename(e, "stream_options.include_usage"))?.unwrap_or(false)
        }
        Some(_) => return Err(ApiError::invalid("stream_options", "stream_options must be an object")),
    };

    let (prompts, echo) = match endpoint {
        Endpoint::Chat => {
            // max_completion_tokens is the newer name; it wins when both are given.
            let max = f
                .integer("max_completion_tokens")?
                .map(|m| ("max_completion_tokens", m))
                .or(f.integer("max_tokens")?.map(|m| ("max_tokens", m)));
            if let Some((name, m)) = max {
                sampling.max_tokens = non_negative_u32(name, m)?;
            }
            let top = f.integer("top_logprobs")?;
            sampling.logprobs = match (f.boolean("logprobs")?.unwrap_or(false), top) {
                (true, top) => Some(top_logprobs("top_logprobs", top.unwrap_or(0))?),
                (false, Some(_)) => return Err(ApiError::invalid("top_logprobs", "top_logprobs requires logprobs to be true")),
                (false, None) => None,
            };
            (vec![Prompt::Chat(messages(&f)?)], false)
        }
        Endpoint::Completions => {
            sampling.max_tokens = match f.integer("max_tokens")? {
                Some(m) => non_negative_u32("max_tokens", m)?,
                None => COMPLETIONS_DEFAULT_MAX_TOKENS,
            };
            sampling.logprobs = f.integer("logprobs")?.map(|k| top_logprobs("logprobs", k)).transpose()?;
            let echo = f.boolean("echo")?.unwrap_or(false);
            if echo && sampling.logprobs.is_some() {
                return Err(ApiError::unsupported(
                    "echo",
                    "echo with logprobs (log-probabilities of the prompt's tokens) is not supported: the teacher interface \
                     scores a continuation as one summed log-probability, not token by token; ask for logprobs without echo",
                ));
            }
            (text_prompts(&f)?, echo)
        }
    };
    if prompts.len() * sampling.n as usize > MAX_CHOICES {
        return Err(ApiError::invalid(
            "prompt",
            format!("{} prompts × n = {} asks for more than {MAX_CHOICES} choices", prompts.len(), sampling.n),
        ));
    }
    Ok(ApiRequest { endpoint, prompts, sampling, stream, include_usage, echo })
}

/// Refuse known fields that would change the answer but are not implemented.
fn refuse_unsupported(f: &Fields<'_>, endpoint: Endpoint) -> Result<(), ApiError> {
    for name in ["frequency_penalty", "presence_penalty"] {
        if f.number(name)?.is_some_and(|p| p != 0.0) {
            return Err(ApiError::unsupported(name, format!("{name} is not supported (only 0)")));
        }
    }
    if f.get("logit_bias").is_some_and(|b| b.as_object().is_none_or(|o| !o.is_empty())) {
        return Err(ApiError::unsupported("logit_bias", "logit_bias is not supported"));
    }
    for name in ["tools", "functions"] {
        if f.get(name).is_some_and(|t| t.as_array().is_none_or(|a| !a.is_empty())) {
            return Err(ApiError::unsupported(name, format!("{name} (tool calling) is not supported")));
        }
    }
    for (name, instead) in [
        ("guided_grammar", "a grammar"),
        ("grammar", "a grammar (llama.cpp's GBNF)"),
        ("json_schema", "llama.cpp's `json_schema` field"),
        ("guided_whitespace_pattern", "a whitespace pattern"),
    ] {
        if f.get(name).is_some() {
            return Err(ApiError::unsupported(
                name,
                format!("{name} ({instead}) is not supported; constrain the output with guided_regex, guided_choice or guided_json"),
            ));
        }
    }
    if endpoint == Endpoint::Completions {
        if f.get("suffix").is_some_and(|s| s.as_str() != Some("")) {
            return Err(ApiError::unsupported("suffix", "suffix (fill-in-the-middle) is not supported"));
        }
        // best_of = n (or 1) asks for nothing extra; more would need server-side ranking.
        if let Some(b) = f.integer("best_of")? {
            let n = f.integer("n")?.unwrap_or(1);
            if b != 1 && b != n {
                return Err(ApiError::unsupported("best_of", "best_of other than 1 or n is not supported"));
            }
        }
    }
    Ok(())
}

/// The request's decoding constraint, if any: `guided_regex` (a string), `guided_choice` (a
/// non-empty list of strings), `guided_json` (a schema, or a string holding one), or
/// `response_format` of type `json_schema`. Two at once are refused, naming both.
fn constraint(f: &Fields<'_>) -> Result<Option<Constraint>, ApiError> {
    let mut given: Vec<(&str, Constraint)> = Vec::new();
    if let Some(v) = f.get("guided_regex") {
        let regex = v.as_str().ok_or_else(|| ApiError::invalid("guided_regex", "guided_regex must be a string (a regular expression)"))?;
        given.push(("guided_regex", Constraint::Regex(regex.to_string())));
    }
    if let Some(v) = f.get("guided_choice") {
        let items = v
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| ApiError::invalid("guided_choice", "guided_choice must be a non-empty list of strings"))?;
        let labels = items
            .iter()
            .enumerate()
            .map(|(i, l)| {
                l.as_str().map(str::to_string).ok_or_else(|| ApiError::invalid(format!("guided_choice[{i}]"), "choices must be strings"))
            })
            .collect::<Result<_, _>>()?;
        given.push(("guided_choice", Constraint::Choice(labels)));
    }
    if let Some(v) = f.get("guided_json") {
        let schema = match v {
            Value::Object(_) => v.clone(),
            // vLLM takes the schema serialised too (`json.dumps(schema)`).
            Value::String(s) => serde_json::from_str(s)
                .map_err(|e| ApiError::invalid("guided_json", format!("guided_json is a string but not JSON: {e}")))?,
            _ => return Err(ApiError::invalid("guided_json", "guided_json must be a JSON schema: an object, or a string holding one")),
        };
        given.push(("guided_json", Constraint::JsonSchema(schema)));
    }
    if let Some(schema) = response_format(f)? {
        given.push(("response_format", Constraint::JsonSchema(schema)));
    }
    let mut given = given.into_iter();
    let Some((name, constraint)) = given.next() else { return Ok(None) };
    if let Some((other, _)) = given.next() {
        return Err(ApiError::invalid(other, format!("{name} and {other} are both given; a request takes one constraint")));
    }
    let param = if name == "response_format" { "response_format.json_schema.schema" } else { name };
    constraint.check().map_err(|e| ApiError::invalid(param, e.to_string()))?;
    Ok(Some(constraint))
}

/// OpenAI's `response_format`: `text` (no constraint) or `json_schema` (its `schema`).
/// `json_object` ("some JSON object") has no schema to decode by and is refused.
fn response_format(f: &Fields<'_>) -> Result<Option<Value>, ApiError> {
    let Some(format) = f.get("response_format") else { return Ok(None) };
    let Some(format) = format.as_object() else {
        return Err(ApiError::invalid("response_format", "response_format must be an object such as {\"type\": \"json_schema\", …}"));
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_schema") => {
            let schema = format.get("json_schema").and_then(|j| j.get("schema")).filter(|s| !s.is_null()).ok_or_else(|| {
                ApiError::invalid("response_format.json_schema.schema", "response_format of type json_schema needs json_schema.schema")
            })?;
            Ok(Some(schema.clone()))
        }
        Some("json_object") => Err(ApiError::unsupported(
            "response_format",
            "response_format {\"type\": \"json_object\"} (any JSON object) is not supported: give the schema the object follows, \
             as {\"type\": \"json_schema\", \"json_schema\": {\"name\": …, \"schema\": {…}}} (or guided_json)",
        )),
        _ => Err(ApiError::unsupported("response_format", "response_format must be of type text or json_schema")),
    }
}

/// Chat `messages`: roles `system` (or `developer`), `user`, `assistant`; content a string, a
/// list of text parts, or null (an assistant turn with no text).
fn messages(f: &Fields<'_>) -> Result<Vec<ChatMessage>, ApiError> {
    let Some(value) = f.get("messages") else {
        return Err(ApiError::invalid("messages", "messages is required"));
    };
    let Some(items) = value.as_array().filter(|a| !a.is_empty()) else {
        return Err(ApiError::invalid("messages", "messages must be a non-empty list"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let Some(obj) = item.as_object() else {
                return Err(ApiError::invalid(format!("messages[{i}]"), "each message must be an object"));
            };
            let role = match obj.get("role").and_then(Value::as_str) {
                Some("system" | "developer") => "system",
                Some("user") => "user",
                Some("assistant") => "assistant",
                Some(other) => {
                    return Err(ApiError::unsupported(
                        format!("messages[{i}].role"),
                        format!("role `{other}` is not supported (system, developer, user, assistant)"),
                    ))
                }
                None => return Err(ApiError::invalid(format!("messages[{i}].role"), "role is required and must be a string")),
            };
            let content = match obj.get("content") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => text_parts(parts, i)?,
                Some(_) => return Err(ApiError::invalid(format!("messages[{i}].content"), "content must be a string or a list of parts")),
            };
            Ok(ChatMessage::new(role, content))
        })
        .collect()
}

/// The concatenated text of a content-parts list; non-text parts are refused.
fn text_parts(parts: &[Value], message: usize) -> Result<String, ApiError> {
    let mut text = String::new();
    for (j, part) in parts.iter().enumerate() {
        let param = format!("messages[{message}].content[{j}]");
        match (part.get("type").and_then(Value::as_str), part.get("text").and_then(Value::as_str)) {
            (Some("text"), Some(t)) => text.push_str(t),
            (Some("text"), None) => return Err(ApiError::invalid(param, "a text part needs a string `text`")),
            (Some(other), _) => return Err(ApiError::unsupported(param, format!("content parts of type `{other}` are not supported"))),
            (None, _) => return Err(ApiError::invalid(param, "a content part needs a `type`")),
        }
    }
    Ok(text)
}

/// Completions `prompt`: a string or a non-empty list of strings (token-id prompts are refused).
fn text_prompts(f: &Fields<'_>) -> Result<Vec<Prompt>, ApiError> {
    match f.get("prompt") {
        None => Err(ApiError::invalid("prompt", "prompt is required")),
        Some(Value::String(s)) => Ok(vec![Prompt::Text(s.clone())]),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(Prompt::Text(s.clone())),
                Value::Number(_) | Value::Array(_) => {
                    Err(ApiError::unsupported(format!("prompt[{i}]"), "token-id prompts are not supported; send text"))
                }
                _ => Err(ApiError::invalid(format!("prompt[{i}]"), "prompt must be a string or a list of strings")),
            })
            .collect(),
        Some(_) => Err(ApiError::invalid("prompt", "prompt must be a string or a non-empty list of strings")),
    }
}

fn non_negative_u32(name: &str, value: i64) -> Result<u32, ApiError> {
    u32::try_from(value).map_err(|_| ApiError::invalid(name, format!("{name} must be a non-negative integer, got {value}")))
}

fn top_logprobs(name: &str, value: i64) -> Result<u32, ApiError> {
    u32::try_from(value)
        .ok()
        .filter(|&k| k <= MAX_TOP_LOGPROBS)
        .ok_or_else(|| ApiError::invalid(name, format!("{name} must be between 0 and {MAX_TOP_LOGPROBS}, got {value}")))
}

/// Give an error from a nested object its full field path.
fn rename(mut error: ApiError, param: &str) -> ApiError {
    error.param = Some(param.to_string());
    error.message = error.message.replacen(param.rsplit('.').next().unwrap_or(param), param, 1);
    error
}

/// Typed access to the fields of a request object; `null` reads as absent.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    fn number(&self, name: &str) -> Result<Option<f64>, ApiError> {
        self.get(name).map(|v| v.as_f64().ok_or_else(|| ApiError::invalid(name, format!("{name} must be a number, got {v}")))).transpose()
    }

    fn integer(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| {
                // 3.0 is accepted as 3, as Python's json would produce it.
                v.as_i64()
                    .or_else(|| v.as_f64().filter(|x| x.fract() == 0.0 && x.abs() < 9.0e15).map(|x| x as i64))
                    .ok_or_else(|| ApiError::invalid(name, format!("{name} must be an integer, got {v}")))
            })
            .transpose()
    }

    fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.get(name)
            .map(|v| v.as_bool().ok_or_else(|| ApiError::invalid(name, format!("{name} must be true or false, got {v}"))))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<ApiRequest, ApiError> {
        parse(Endpoint::Chat, body.as_bytes())
    }

    #[test]
    fn chat_fields_map_to_sampling() {
        let r = chat(
            r#"{"model":"x","messages":[{"role":"developer","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]}],
                "n":2,"seed":-1,"temperature":0,"top_p":0.5,"top_k":0,"max_tokens":9,"max_completion_tokens":7,"stop":"\n",
                "logprobs":true,"top_logprobs":3,"stream":true,"stream_options":{"include_usage":true},"user":"ignored"}"#,
        )
        .expect("parses");
        assert_eq!(r.prompts, vec![Prompt::Chat(vec![ChatMessage::new("system", "be brief"), ChatMessage::new("user", "hi")])]);
        let s = &r.sampling;
        assert_eq!((s.n, s.seed, s.temperature, s.top_p, s.top_k, s.max_tokens), (2, Some(u64::MAX), 0.0, 0.5, None, 7));
        assert_eq!((s.stop.clone(), s.logprobs), (vec!["\n".to_string()], Some(3)));
        assert!(r.stream && r.include_usage && !r.echo);
    }

    #[test]
    fn completions_defaults_and_prompt_lists() {
        let r = parse(Endpoint::Completions, br#"{"prompt":["a","b"],"logprobs":2}"#).expect("parses");
        assert_eq!(r.prompts, vec![Prompt::Text("a".into()), Prompt::Text("b".into())]);
        assert_eq!((r.sampling.max_tokens, r.sampling.logprobs), (16, Some(2)));
        let err = parse(Endpoint::Completions, br#"{"prompt":[[1,2]]}"#).expect_err("token ids");
        assert_eq!(err.param.as_deref(), Some("prompt[0]"));
    }

    #[test]
    fn errors_name_the_field() {
        for (body, param) in [
            (r#"{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#, "temperature"),
            (r#"{"messages":[{"role":"user","content":"x"}],"n":0}"#, "n"),
            (r#"{"messages":[{"role":"user","content":"x"}],"top_logprobs":2}"#, "top_logprobs"),
            (r#"{"messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":1}}"#, "stream_options.include_usage"),
            (r#"{"messages":[{"role":"tool","content":"x"}]}"#, "messages[0].role"),
            (r#"{"messages":[]}"#, "messages"),
            (r#"{"messages":[{"role":"user","content":"x"}],"presence_penalty":1}"#, "presence_penalty"),
            (r#"{"messages":[{"role":"user","content":"x"}],"stop":[1]}"#, "stop[0]"),
            (r#"{"messages": "#, "body"),
        ] {
            let err = chat(body).expect_err(body);
            assert_eq!(err.param.as_deref(), Some(param), "{body}: {}", err.message);
        }
        let err = parse(Endpoint::Completions, br#"{"prompt":"x","echo":true,"logprobs":1}"#).expect_err("echo+logprobs");
        assert_eq!((err.param.as_deref(), err.code), (Some("echo"), Some("unsupported")));
    }

    #[test]
    fn constraints_in_every_form() {
        let msgs = r#""messages":[{"role":"user","content":"x"}]"#;
        let schema = serde_json::json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]});
        let cases = [
            (format!(r#"{{{msgs},"guided_regex":"a+"}}"#), Some(Constraint::Regex("a+".into()))),
            (format!(r#"{{{msgs},"guided_choice":["YES","NO"]}}"#), Some(Constraint::Choice(vec!["YES".into(), "NO".into()]))),
            (format!(r#"{{{msgs},"guided_json":{schema}}}"#), Some(Constraint::JsonSchema(schema.clone()))),
            (
                format!(r#"{{{msgs},"guided_json":{}}}"#, serde_json::to_string(&schema.to_string()).unwrap()),
                Some(Constraint::JsonSchema(schema.clone())),
            ),
            (
                format!(
                    r#"{{{msgs},"response_format":{{"type":"json_schema","json_schema":{{"name":"n","strict":true,"schema":{schema}}}}}}}"#
                ),
                Some(Constraint::JsonSchema(schema.clone())),
            ),
            (format!(r#"{{{msgs},"response_format":{{"type":"text"}},"guided_regex":null}}"#), None),
        ];
        for (body, want) in cases {
            assert_eq!(chat(&body).expect(&body).sampling.constraint, want, "{body}");
        }
        let r = parse(Endpoint::Completions, br#"{"prompt":"x","guided_choice":["a"],"stream":true}"#).expect("completions");
        assert_eq!(r.sampling.constraint, Some(Constraint::Choice(vec!["a".into()])));
    }

    #[test]
    fn bad_constraints_are_refused_naming_the_field() {
        let msgs = r#""messages":[{"role":"user","content":"x"}]"#;
        for (extra, param, says) in [
            (r#""guided_regex":"a","guided_choice":["b"]"#, "guided_choice", "guided_regex and guided_choice are both given"),
            (
                r#""guided_json":{"type":"integer"},"response_format":{"type":"json_schema","json_schema":{"schema":{"type":"integer"}}}"#,
                "response_format",
                "guided_json and response_format are both given",
            ),
            (r#""guided_regex":"(unclosed""#, "guided_regex", "bad regex"),
            (r#""guided_regex":"\\bword""#, "guided_regex", "word boundaries"),
            (r#""guided_regex":3"#, "guided_regex", "must be a string"),
            (r#""guided_choice":[]"#, "guided_choice", "non-empty list"),
            (r#""guided_choice":["a",1]"#, "guided_choice[1]", "strings"),
            (r#""guided_json":{"type":"string","pattern":"x"}"#, "guided_json", "`pattern` is not supported"),
            (r#""guided_json":"{not json""#, "guided_json", "not JSON"),
            (r#""response_format":{"type":"json_object"}"#, "response_format", "give the schema"),
            (r#""response_format":{"type":"json_schema"}"#, "response_format.json_schema.schema", "needs json_schema.schema"),
            (
                r#""response_format":{"type":"json_schema","json_schema":{"schema":{"type":"object","properties":{"a":{"$ref":"x"}}}}}"#,
                "response_format.json_schema.schema",
                "`$ref` is not supported",
            ),
            (r#""grammar":"root ::= \"a\"""#, "grammar", "guided_regex"),
        ] {
            let body = format!("{{{msgs},{extra}}}");
            let err = chat(&body).expect_err(&body);
            assert_eq!(err.status, axum::http::StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(err.param.as_deref(), Some(param), "{body}: {}", err.message);
            assert!(err.message.contains(says), "{body}: {}", err.message);
        }
    }
}
