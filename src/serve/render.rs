//! Render teacher [`Response`]s as OpenAI response bodies: `chat.completion` and
//! `text_completion` objects, and the chunks of their streamed (`stream: true`) forms.
//!
//! Choices of a request with several prompts (completions' prompt list) are numbered as OpenAI
//! does: choice `j` of prompt `p` has index `p * n + j`.

use super::parse::{ApiRequest, Endpoint};
use crate::teacher::{Choice, FinishReason, Prompt, Response, TokenLogprob};
use serde_json::{json, Value};

/// What every object of one answer shares.
#[derive(Debug, Clone)]
pub struct Meta {
    /// `chatcmpl-…` or `cmpl-…`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The served model's name.
    pub model: String,
}

/// Log-probabilities JSON cannot carry (−∞ for an impossible token) are written as −9999, as
/// OpenAI does.
fn finite(logprob: f64) -> f64 {
    if logprob.is_finite() {
        logprob
    } else {
        -9999.0
    }
}

fn finish(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

/// Every choice with its OpenAI index and the text of its prompt.
fn indexed<'a>(request: &'a ApiRequest, responses: &'a [Response]) -> impl Iterator<Item = (usize, &'a Prompt, &'a Choice)> + 'a {
    request
        .prompts
        .iter()
        .zip(responses)
        .flat_map(|(prompt, response)| response.choices.iter().map(move |c| (prompt, c)))
        .enumerate()
        .map(|(i, (p, c))| (i, p, c))
}

fn usage(responses: &[Response]) -> Value {
    let prompt: u64 = responses.iter().map(|r| r.usage.prompt_tokens).sum();
    let completion: u64 = responses.iter().map(|r| r.usage.completion_tokens).sum();
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

fn prompt_text(prompt: &Prompt) -> &str {
    match prompt {
        Prompt::Text(t) => t,
        Prompt::Chat(_) => "",
    }
}

/// One entry of chat's `logprobs.content`.
fn chat_token(t: &TokenLogprob) -> Value {
    let top: Vec<Value> = t.top.iter().map(|(tok, lp)| json!({"token": tok, "logprob": finite(*lp), "bytes": tok.as_bytes()})).collect();
    json!({"token": t.token, "logprob": finite(t.logprob), "bytes": t.token.as_bytes(), "top_logprobs": top})
}

fn chat_logprobs(tokens: &[TokenLogprob]) -> Value {
    json!({"content": tokens.iter().map(chat_token).collect::<Vec<_>>(), "refusal": null})
}

/// Completions' `logprobs` object; `offset` is the character offset of the first token in the
/// choice's text (the prompt's length with `echo`, or what earlier stream chunks carried).
fn completions_logprobs(tokens: &[TokenLogprob], mut offset: usize) -> Value {
    let mut text_offset = Vec::with_capacity(tokens.len());
    for t in tokens {
        text_offset.push(offset);
        offset += t.token.chars().count();
    }
    let top: Vec<Value> =
        tokens.iter().map(|t| Value::Object(t.top.iter().map(|(tok, lp)| (tok.clone(), json!(finite(*lp)))).collect())).collect();
    json!({
        "tokens": tokens.iter().map(|t| t.token.as_str()).collect::<Vec<_>>(),
        "token_logprobs": tokens.iter().map(|t| finite(t.logprob)).collect::<Vec<_>>(),
        "top_logprobs": top,
        "text_offset": text_offset,
    })
}

/// The complete (non-streamed) response body.
pub fn body(request: &ApiRequest, responses: &[Response], meta: &Meta) -> Value {
    let choices: Vec<Value> = indexed(request, responses)
        .map(|(index, prompt, c)| match request.endpoint {
            Endpoint::Chat => json!({
                "index": index,
                "message": {"role": "assistant", "content": c.text, "refusal": null},
                "logprobs": c.logprobs.as_deref().map(chat_logprobs),
                "finish_reason": finish(c.finish_reason),
            }),
            Endpoint::Completions => {
                let echoed = if request.echo { prompt_text(prompt) } else { "" };
                json!({
                    "text": format!("{echoed}{}", c.text),
                    "index": index,
                    "logprobs": c.logprobs.as_deref().map(|t| completions_logprobs(t, echoed.chars().count())),
                    "finish_reason": finish(c.finish_reason),
                })
            }
        })
        .collect();
    let object = match request.endpoint {
        Endpoint::Chat => "chat.completion",
        Endpoint::Completions => "text_completion",
    };
    json!({
        "id": meta.id,
        "object": object,
        "created": meta.created,
        "model": meta.model,
        "system_fingerprint": null,
        "choices": choices,
        "usage": usage(responses),
    })
}

/// A piece of a choice's text as one stream chunk carries it, with its tokens' log-probabilities.
struct Piece<'a> {
    text: &'a str,
    logprobs: Option<&'a [TokenLogprob]>,
}

/// Cut a choice's text into stream pieces: one per token when the log-probabilities' tokens
/// spell the text exactly, else one per word (each with its leading whitespace). Logprobs that
/// do not spell the text travel whole, with a single piece.
fn pieces(choice: &Choice) -> Vec<Piece<'_>> {
    if let Some(tokens) = choice.logprobs.as_deref() {
        let spelled: String = tokens.iter().map(|t| t.token.as_str()).collect();
        if spelled == choice.text {
            let mut at = 0;
            return tokens
                .chunks(1)
                .map(|one| {
                    let start = at;
                    at += one[0].token.len();
                    Piece { text: &choice.text[start..at], logprobs: Some(one) }
                })
                .collect();
        }
        return vec![Piece { text: &choice.text, logprobs: Some(tokens) }];
    }
    let text = choice.text.as_str();
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_word = false;
    for (i, ch) in text.char_indices() {
        if ch.is_whitespace() && in_word && i > start {
            out.push(Piece { text: &text[start..i], logprobs: None });
            start = i;
        }
        in_word = !ch.is_whitespace();
    }
    if start < text.len() {
        out.push(Piece { text: &text[start..], logprobs: None });
    }
    out
}

/// The last `data:` payload of every stream.
pub const DONE: &str = "[DONE]";

/// Builds the `data:` payloads (chunks) of one streamed answer. Owns what it needs, so a live
/// stream can keep it while the teacher decodes.
#[derive(Debug, Clone)]
pub struct Chunks {
    endpoint: Endpoint,
    include_usage: bool,
    echo: bool,
    meta: Meta,
}

impl Chunks {
    /// The chunks of `request`'s answer.
    pub fn new(request: &ApiRequest, meta: Meta) -> Chunks {
        Chunks { endpoint: request.endpoint, include_usage: request.include_usage, echo: request.echo, meta }
    }

    fn wrap(&self, choice: Value) -> String {
        let object = match self.endpoint {
            Endpoint::Chat => "chat.completion.chunk",
            Endpoint::Completions => "text_completion",
        };
        let mut chunk = json!({
            "id": self.meta.id, "object": object, "created": self.meta.created, "model": self.meta.model,
            "system_fingerprint": null, "choices": [choice],
        });
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk.to_string()
    }

    /// What opens choice `index` before its text: chat's role, or the echoed prompt of a
    /// completion with `echo` (with its length in characters, where the text's offsets start).
    pub fn opening(&self, index: usize, prompt: &Prompt) -> (Option<String>, usize) {
        match self.endpoint {
            Endpoint::Chat => (
                Some(self.wrap(json!({"index": index, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}))),
                0,
            ),
            Endpoint::Completions if self.echo && !prompt_text(prompt).is_empty() => {
                let text = prompt_text(prompt);
                (Some(self.wrap(json!({"text": text, "index": index, "logprobs": null, "finish_reason": null}))), text.chars().count())
            }
            Endpoint::Completions => (None, 0),
        }
    }

    /// A piece of choice `index`'s text, with its tokens' log-probabilities when asked for;
    /// `offset` is the piece's character offset in the completion's text.
    pub fn text(&self, index: usize, text: &str, logprobs: Option<&[TokenLogprob]>, offset: usize) -> String {
        match self.endpoint {
            Endpoint::Chat => self.wrap(json!({
                "index": index, "delta": {"content": text}, "logprobs": logprobs.map(chat_logprobs), "finish_reason": null,
            })),
            Endpoint::Completions => self.wrap(json!({
                "text": text, "index": index, "logprobs": logprobs.map(|t| completions_logprobs(t, offset)), "finish_reason": null,
            })),
        }
    }

    /// The chunk that ends choice `index`.
    pub fn finish(&self, index: usize, reason: FinishReason) -> String {
        match self.endpoint {
            Endpoint::Chat => self.wrap(json!({"index": index, "delta": {}, "logprobs": null, "finish_reason": finish(reason)})),
            Endpoint::Completions => self.wrap(json!({"text": "", "index": index, "logprobs": null, "finish_reason": finish(reason)})),
        }
    }

    /// The usage chunk before `[DONE]`, when `stream_options.include_usage` asked for one.
    pub fn usage(&self, responses: &[Response]) -> Option<String> {
        let object = match self.endpoint {
            Endpoint::Chat => "chat.completion.chunk",
            Endpoint::Completions => "text_completion",
        };
        self.include_usage.then(|| {
            json!({
                "id": self.meta.id, "object": object, "created": self.meta.created, "model": self.meta.model,
                "system_fingerprint": null, "choices": [], "usage": usage(responses),
            })
            .to_string()
        })
    }

    /// Every choice's finish chunk in index order, the usage chunk, and `[DONE]`: the end of a
    /// stream whose texts were sent.
    pub fn ending(&self, request: &ApiRequest, responses: &[Response]) -> Vec<String> {
        let mut out: Vec<String> = indexed(request, responses).map(|(index, _, c)| self.finish(index, c.finish_reason)).collect();
        out.extend(self.usage(responses));
        out.push(DONE.to_string());
        out
    }
}

/// The `data:` payloads of an answer completed before it is streamed, in order, ending with
/// `[DONE]` (`labflow serve` streams this way when log-probabilities are asked for).
///
/// The chunks are cut from finished choices; choices are interleaved round-robin, one piece
/// each, as a server decoding them together would send.
pub fn stream(request: &ApiRequest, responses: &[Response], meta: &Meta) -> Vec<String> {
    let chunks = Chunks::new(request, meta.clone());
    let per_choice: Vec<Vec<String>> = indexed(request, responses)
        .map(|(index, prompt, c)| {
            let (opening, mut offset) = chunks.opening(index, prompt);
            let mut out: Vec<String> = opening.into_iter().collect();
            for p in pieces(c) {
                out.push(chunks.text(index, p.text, p.logprobs, offset));
                offset += p.text.chars().count();
            }
            out
        })
        .collect();
    let mut out = Vec::new();
    let longest = per_choice.iter().map(Vec::len).max().unwrap_or(0);
    for step in 0..longest {
        out.extend(per_choice.iter().filter_map(|chunks| chunks.get(step).cloned()));
    }
    out.extend(chunks.ending(request, responses));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(text: &str, logprobs: Option<Vec<TokenLogprob>>) -> Choice {
        Choice { text: text.into(), finish_reason: FinishReason::Stop, logprobs }
    }

    #[test]
    fn words_keep_their_whitespace() {
        let c = choice("  hello big\nworld ", None);
        let texts: Vec<&str> = pieces(&c).iter().map(|p| p.text).collect();
        assert_eq!(texts, vec!["  hello", " big", "\nworld", " "]);
        assert_eq!(texts.concat(), c.text);
        assert!(pieces(&choice("", None)).is_empty());
    }

    #[test]
    fn tokens_become_pieces_when_they_spell_the_text() {
        let lp = |t: &str| TokenLogprob { token: t.into(), logprob: -1.0, top: vec![] };
        let c = choice("héllo!", Some(vec![lp("hé"), lp("llo"), lp("!")]));
        let texts: Vec<&str> = pieces(&c).iter().map(|p| p.text).collect();
        assert_eq!(texts, vec!["hé", "llo", "!"]);
        let c = choice("abc", Some(vec![lp("ab")]));
        assert_eq!(pieces(&c).len(), 1);
    }

    #[test]
    fn offsets_count_characters_and_infinities_become_finite() {
        let t = vec![
            TokenLogprob { token: "é".into(), logprob: f64::NEG_INFINITY, top: vec![("é".into(), -0.5)] },
            TokenLogprob { token: "x".into(), logprob: -0.1, top: vec![] },
        ];
        let v = completions_logprobs(&t, 3);
        assert_eq!(v["text_offset"], json!([3, 4]));
        assert_eq!(v["token_logprobs"], json!([-9999.0, -0.1]));
        assert_eq!(v["top_logprobs"][0], json!({"é": -0.5}));
    }
}
