//! Constraint tests: conversions, the token automaton on small vocabularies, and property tests
//! that every constrained sample matches its constraint by an independent check (the `regex`
//! crate's own engine for regexes, the `jsonschema` crate for schemas).

use super::*;
use crate::model::sample::Sampler;
use proptest::prelude::*;
use std::sync::Arc;

/// A vocabulary over `alphabet`: every single byte, plus the given multi-byte tokens, plus one
/// end token (the last id) and one control token with no bytes.
fn vocab(alphabet: &[u8], extra: &[&[u8]]) -> (Arc<Vocabulary>, Vec<Vec<u8>>, u32) {
    let mut tokens: Vec<Option<Vec<u8>>> = alphabet.iter().map(|&b| Some(vec![b])).collect();
    tokens.extend(extra.iter().map(|t| Some(t.to_vec())));
    tokens.push(None); // a control token: never allowed
    let end = tokens.len() as u32;
    tokens.push(Some(b"</s>".to_vec()));
    let bytes = tokens.iter().map(|t| t.clone().unwrap_or_default()).collect();
    (Arc::new(Vocabulary::new(&tokens, &[end])), bytes, end)
}

/// Draws a completion from `a` by a seeded random walk over allowed tokens (ends with
/// probability ½ when ending is allowed). `None` if it did not end within `steps`.
fn walk(a: &TokenAutomaton, bytes: &[Vec<u8>], end: u32, seed: u64, steps: usize) -> Option<Vec<u8>> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut state, mut text) = (a.start(), Vec::new());
    for _ in 0..steps {
        let allowed = a.allowed(state);
        if allowed.complete || (allowed.end && rng.random_bool(0.5)) {
            return Some(text);
        }
        let ids: Vec<u32> = (0..bytes.len() as u32).filter(|&i| i != end && allowed.contains(i)).collect();
        assert!(!ids.is_empty(), "a live, incomplete state allows no token");
        let t = ids[rng.random_range(0..ids.len())];
        state = a.advance(state, t);
        text.extend_from_slice(&bytes[t as usize]);
    }
    None
}

#[test]
fn choice_and_regex_automata_allow_exactly_the_continuations() {
    let (v, bytes, end) = vocab(b"ABNOSY", &[b"YES", b"NO", b"YE", b"NOPE"]);
    let a = TokenAutomaton::compile(&Constraint::Choice(vec!["YES".into(), "NO".into()]).regex().unwrap(), v).unwrap();
    let id = |t: &[u8]| bytes.iter().position(|b| b == t).unwrap() as u32;
    let start = a.allowed(a.start());
    for (tok, ok) in [(&b"YES"[..], true), (b"NO", true), (b"YE", true), (b"Y", true), (b"N", true), (b"NOPE", false), (b"A", false)] {
        assert_eq!(start.contains(id(tok)), ok, "{}", String::from_utf8_lossy(tok));
    }
    assert!(!start.contains(end) && !start.end && !start.complete);
    let after = a.allowed(a.advance_bytes(a.start(), b"YES"));
    assert!(after.end && after.complete && after.contains(end) && after.count() == 1, "{after:?}");
    assert!(a.matches(b"NO") && !a.matches(b"N") && !a.matches(b"NOPE"));
    // The control token (no bytes) is never allowed.
    assert!((0..bytes.len() as u32).filter(|&i| bytes[i as usize].is_empty()).all(|i| !start.contains(i)));
}

#[test]
fn closing_tokens_lead_to_the_nearest_match() {
    let (v, bytes, end) = vocab(b"[]EOQ x", &[b"[E]", b"xx"]);
    let a = TokenAutomaton::compile(r"\[Q\][^\[]+\[E\]", v).unwrap();
    let id = |t: &[u8]| bytes.iter().position(|b| b == t).unwrap() as u32;
    let s = a.advance_bytes(a.start(), b"[Q] xx");
    assert_eq!(a.distance(s), Some(3));
    assert_eq!(a.distance(a.start()), Some(7));
    let closing = a.closing(s);
    assert!(closing.contains(id(b"[E]")) && closing.contains(id(b"[")), "{closing:?}");
    assert!(!closing.contains(id(b"x")) && !closing.contains(id(b"xx")) && !closing.contains(end));
    // Closed: only the end token remains.
    let done = a.advance(s, id(b"[E]"));
    assert_eq!(a.distance(done), Some(0));
    assert!(a.closing(done).contains(end));
}

#[test]
fn masking_sets_disallowed_logits_to_minus_infinity() {
    let (v, _, _) = vocab(b"ab", &[]);
    let a = TokenAutomaton::compile("a+", v).unwrap();
    let allowed = a.allowed(a.start());
    let mut logits = vec![1.0f32; 4];
    allowed.mask(&mut logits);
    assert_eq!(logits, vec![1.0, f32::NEG_INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY]);
}

#[test]
fn tokens_may_split_utf8_characters() {
    // "é" is two bytes; a vocabulary with only single bytes can still write it.
    let (v, bytes, end) = vocab(&[0xC3, 0xA9, b'x'], &[]);
    let a = TokenAutomaton::compile("é+", v).unwrap();
    assert!(a.allowed(a.start()).contains(0) && !a.allowed(a.start()).contains(1));
    let text = walk(&a, &bytes, end, 1, 100).unwrap();
    assert!(std::str::from_utf8(&text).unwrap().chars().all(|c| c == 'é'));
}

#[test]
fn refusals_name_the_problem() {
    let (v, _, _) = vocab(b"a", &[]);
    let e = TokenAutomaton::compile(r"\bword", v.clone()).unwrap_err();
    assert!(e.to_string().contains("word boundaries"), "{e}");
    let e = TokenAutomaton::compile("(unclosed", v.clone()).unwrap_err();
    assert!(e.to_string().contains("bad regex"), "{e}");
    let e = TokenAutomaton::compile(r"(?:[a-z]{1,200}){1,200}\w{1,500}", v).unwrap_err();
    assert!(matches!(e, ConstraintError::TooLarge(_)), "{e}");
    assert!(Constraint::Choice(vec![]).regex().is_err());
    let e = json_schema::to_regex(&serde_json::json!({"type": "string", "pattern": "x"})).unwrap_err();
    assert!(e.to_string().contains("`pattern` is not supported"), "{e}");
    let e = json_schema::to_regex(&serde_json::json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["b"]}))
        .unwrap_err();
    assert!(e.to_string().contains("\"b\""), "{e}");
    // `check` refuses the same malformed constraints without building a DFA.
    assert!(Constraint::Regex("(unclosed".into()).check().unwrap_err().to_string().contains("bad regex"));
    assert!(Constraint::Regex(r"\bword".into()).check().unwrap_err().to_string().contains("word boundaries"));
    assert!(Constraint::JsonSchema(serde_json::json!({"type": "string", "pattern": "x"})).check().is_err());
    assert_eq!(Constraint::Choice(vec!["a.b".into()]).check().unwrap(), r"(?:a\.b)");
}

#[test]
fn json_schema_regexes_accept_valid_and_refuse_invalid_documents() {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "question": {"type": "string", "minLength": 1},
            "score": {"enum": [0, 1, 2]},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
            "note": {"type": ["string", "null"]}
        },
        "required": ["question", "score"]
    });
    let re = regex::Regex::new(&format!("^(?:{})$", json_schema::to_regex(&schema).unwrap())).unwrap();
    for ok in [
        r#"{"question": "Why?", "score": 2}"#,
        r#"{"question":"a\"b","score":0,"tags":[]}"#,
        r#"{"question": "x", "score": 1, "tags": ["a", "b"], "note": null}"#,
    ] {
        assert!(re.is_match(ok), "{ok}");
    }
    for bad in [
        r#"{"score": 2}"#,
        r#"{"question": "", "score": 2}"#,
        r#"{"question": "x", "score": 3}"#,
        r#"{"question": "x", "score": 1, "tags": ["a","b","c"]}"#,
    ] {
        assert!(!re.is_match(bad), "{bad}");
    }
}

#[test]
fn gbnf_writes_every_construct() {
    let g = gbnf::from_regex(r#"\[Start\](?:[^\[]+)\[End\](?:YES|NO){1,3}"x\n"?"#).unwrap();
    assert!(g.starts_with("root ::= "), "{g}");
    for part in ["\"[Start]\"", "\"[End]\"", "\"YES\"", "\"NO\"", "{1,3}", "\"\\\"x\\u000A\"", "(\"\\\"\")?", "\\u0000-\\u005A"] {
        assert!(g.contains(part), "{part} missing from {g}");
    }
    assert!(gbnf::from_regex(r"\bx").is_err());
}

#[test]
fn dialects_parse() {
    assert_eq!("labflow".parse::<Dialect>().unwrap(), Dialect::Vllm);
    assert_eq!("llama.cpp".parse::<Dialect>().unwrap(), Dialect::LlamaCpp);
    assert!("gpt".parse::<Dialect>().unwrap_err().contains("none, vllm"));
}

/// Regexes from a small test grammar over the alphabet `abc-` (and `[`/`]`, as the tag
/// constraints use them).
fn arb_regex() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        "[abc\\[\\]-]{1,3}".prop_map(|s| regex_syntax::escape(&s)),
        Just("[a-c]".to_string()),
        Just("[^\\[]".to_string()),
        Just(".".to_string()),
    ];
    leaf.prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(|v| v.concat()),
            prop::collection::vec(inner.clone(), 2..4).prop_map(|v| format!("(?:{})", v.join("|"))),
            (inner.clone(), prop_oneof![Just("?"), Just("*"), Just("+"), Just("{1,3}"), Just("{2}")])
                .prop_map(|(r, q)| format!("(?:{r}){q}")),
        ]
    })
}

/// JSON schemas from a small test grammar.
fn arb_schema() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    let leaf = prop_oneof![
        (0u64..3, 0u64..6).prop_map(|(lo, extra)| json!({"type": "string", "minLength": lo, "maxLength": lo + extra})),
        Just(json!({"type": "integer"})),
        Just(json!({"type": "number"})),
        Just(json!({"type": "boolean"})),
        Just(json!({"enum": ["YES", "NO", 1, null]})),
        Just(json!({"type": ["string", "null"], "maxLength": 4})),
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            (inner.clone(), 0u64..2, 0u64..3)
                .prop_map(|(items, lo, extra)| json!({"type": "array", "items": items, "minItems": lo, "maxItems": lo + extra})),
            (prop::collection::vec(inner.clone(), 1..4), 0usize..4).prop_map(|(props, req)| {
                let names: Vec<String> = (0..props.len()).map(|i| format!("k{i}")).collect();
                let properties: serde_json::Map<String, serde_json::Value> = names.iter().cloned().zip(props).collect();
                json!({"type": "object", "properties": properties, "required": names[..req.min(names.len())]})
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).map_or(256, |c: u32| c.min(512)), ..ProptestConfig::default() })]

    /// Every completion a constrained random walk ends with matches the regex, by the `regex`
    /// crate's own matcher; no live state is a dead end.
    #[test]
    fn constrained_samples_match_their_regex(pattern in arb_regex(), seed in any::<u64>()) {
        let (v, bytes, end) = vocab(b"abc-[]xyz", &[b"ab", b"[a", b"c]", b"--", b"abc"]);
        let a = TokenAutomaton::compile(&pattern, v).unwrap();
        let check_u = regex::Regex::new(&format!("(?s)^(?:{pattern})$")).unwrap();
        for s in 0..4 {
            if let Some(text) = walk(&a, &bytes, end, seed.wrapping_add(s), 64) {
                let text_str = std::str::from_utf8(&text).expect("constrained text is UTF-8");
                prop_assert!(check_u.is_match(text_str), "{:?} does not match /{}/", text_str, pattern);
            }
        }
    }

    /// `permits` and `is_complete` (one token's bytes) agree with the token set `allowed`
    /// computes, in every state a random walk passes; `pick` draws only permitted tokens.
    #[test]
    fn permits_agrees_with_the_allowed_set(pattern in arb_regex(), seed in any::<u64>()) {
        // Out of byte order, a duplicate ("ab" twice), prefixes of longer tokens, and tokens
        // deeper than any other: the flat trie's preorder and subtree jumps must hold for each.
        let (v, bytes, end) = vocab(b"abc-[]xyz", &[b"ab", b"[a", b"c]", b"--", b"abc", b"zz-ab", b"ab", b"abcabc", b"a[]"]);
        let a = TokenAutomaton::compile(&pattern, v).unwrap();
        let mut sampler = Sampler::new(1.0, 1.0, None, Some(seed));
        let flat = vec![0.0f32; bytes.len()];
        let mut state = a.start();
        for _ in 0..24 {
            let allowed = a.allowed(state);
            prop_assert_eq!(a.is_complete(state), allowed.complete);
            for id in 0..bytes.len() as u32 + 1 {
                prop_assert_eq!(a.permits(state, id), allowed.contains(id), "token {} in /{}/", id, pattern);
            }
            match a.pick(state, &flat, 64, |l| sampler.sample(l)) {
                Some(t) if t != end => {
                    prop_assert!(allowed.contains(t));
                    state = a.advance(state, t);
                }
                Some(_) => break,
                None => { prop_assert!(allowed.complete || allowed.count() == 0); break }
            }
        }
    }

    /// Every JSON document a constrained walk ends with parses and validates under its schema
    /// (checked by the `jsonschema` crate).
    #[test]
    fn constrained_json_validates(schema in arb_schema(), seed in any::<u64>()) {
        let (v, bytes, end) = vocab(b"{}[]\":, \n0123456789.-eEtruefalsnYESNOk", &[b"true", b"false", b"null", b"\"k0\"", b"\"k1\"", b"\"k2\""]);
        let a = TokenAutomaton::compile(&json_schema::to_regex(&schema).unwrap(), v).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        for s in 0..4 {
            if let Some(text) = walk(&a, &bytes, end, seed.wrapping_add(s), 400) {
                let doc: serde_json::Value = serde_json::from_slice(&text).map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&text))))?;
                prop_assert!(validator.is_valid(&doc), "{} is not valid under {}", doc, schema);
            }
        }
    }

    /// Where the unconstrained greedy output already satisfies the constraint, constrained
    /// greedy decoding writes the same text (a toy model: logits are a hash of the prefix).
    #[test]
    fn constrained_greedy_equals_unconstrained_when_it_already_matches(salt in any::<u64>(), other in "[abc]{1,4}") {
        let (v, bytes, end) = vocab(b"abc", &[b"ab", b"ca"]);
        let logits = |prefix: &[u32]| -> Vec<f32> {
            (0..bytes.len() as u32).map(|t| {
                let h = blake3::hash(&[&salt.to_le_bytes()[..], &t.to_le_bytes(), bytemuck_ids(prefix).as_slice()].concat());
                // The end token grows likelier with length, so greedy decoding ends; like a
                // real model's output, this one never writes the control token.
                if bytes[t as usize].is_empty() { return f32::NEG_INFINITY; }
                let bonus = if t == end { prefix.len() as f32 * 0.4 } else { 0.0 };
                f32::from(h.as_bytes()[0]) / 64.0 + bonus
            }).collect()
        };
        let decode = |a: Option<&TokenAutomaton>| -> Vec<u8> {
            let mut sampler = Sampler::new(0.0, 1.0, None, None);
            let (mut ids, mut text) = (Vec::new(), Vec::new());
            let mut state = a.map(|a| a.start());
            for _ in 0..32 {
                let l = logits(&ids);
                let t = match (a, state) {
                    (Some(a), Some(s)) => match a.pick(s, &l, 32, |l| sampler.sample(l)) {
                        Some(t) => t,
                        None => break,
                    },
                    _ => sampler.sample(&l),
                };
                if t == end { break; }
                ids.push(t);
                text.extend_from_slice(&bytes[t as usize]);
                state = a.zip(state).map(|(a, s)| a.advance(s, t));
            }
            text
        };
        let free = decode(None);
        let pattern = format!("{}|{}", regex_syntax::escape(std::str::from_utf8(&free).unwrap()), other);
        let a = TokenAutomaton::compile(&pattern, v).unwrap();
        prop_assert_eq!(decode(Some(&a)), free);
    }
}

fn bytemuck_ids(ids: &[u32]) -> Vec<u8> {
    ids.iter().flat_map(|i| i.to_le_bytes()).collect()
}
