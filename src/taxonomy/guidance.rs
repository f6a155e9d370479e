//! The taxonomy README's size guidance, as warnings.
//!
//! The reference does not enforce these, so they never make a leaf invalid; they warn because
//! text past these sizes is truncated or crowds the teacher's prompt during generation:
//! skills ~2300 words of seed text in all; knowledge contexts 500 words; each knowledge
//! question or answer 250 words.

use crate::taxonomy::diagnostic::{codes, Diagnostic, Pos};
use crate::taxonomy::schema::{key_path, SchemaKind};
use crate::taxonomy::yaml::Document;
use serde_json::Value;

/// Words of seed text (questions, answers, contexts) a skill leaf should stay under.
pub const SKILL_SEED_WORDS: usize = 2300;
/// Words a knowledge context should stay under.
pub const KNOWLEDGE_CONTEXT_WORDS: usize = 500;
/// Words a knowledge question or answer should stay under.
pub const KNOWLEDGE_QA_WORDS: usize = 250;

/// Whitespace-separated words, as the taxonomy README counts them.
pub fn words(s: &str) -> usize {
    s.split_whitespace().count()
}

fn text_at<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Guidance warnings for a loaded leaf.
pub fn check(rel_path: &str, doc: &Document, value: &Value) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let Some(seeds) = value.get("seed_examples").and_then(Value::as_array) else {
        return out;
    };
    let pos = |ptr: &str| doc.locate(ptr).map(|(_, n)| n.pos).unwrap_or(Pos::START);
    match SchemaKind::for_leaf(rel_path, value) {
        SchemaKind::Skills => {
            let total: usize =
                seeds.iter().map(|s| words(text_at(s, "question")) + words(text_at(s, "answer")) + words(text_at(s, "context"))).sum();
            if total > SKILL_SEED_WORDS {
                let ptr = "/seed_examples";
                let at = doc.nodes.get(ptr).and_then(|n| n.key_pos).unwrap_or_else(|| pos(ptr));
                out.push(
                    Diagnostic::warning(rel_path, at, codes::GUIDE_SEED_WORDS, format!("seed examples hold {total} words; the taxonomy guidance is about {SKILL_SEED_WORDS} at most, or the teacher's prompt overflows — shorten them"))
                        .at_key("seed_examples"),
                );
            }
        }
        SchemaKind::Knowledge => {
            for (i, seed) in seeds.iter().enumerate() {
                let n = words(text_at(seed, "context"));
                if n > KNOWLEDGE_CONTEXT_WORDS {
                    let ptr = format!("/seed_examples/{i}/context");
                    out.push(
                        Diagnostic::warning(
                            rel_path,
                            pos(&ptr),
                            codes::GUIDE_CONTEXT_WORDS,
                            format!("context has {n} words; the guidance is at most {KNOWLEDGE_CONTEXT_WORDS}"),
                        )
                        .at_key(key_path(&ptr)),
                    );
                }
                let qas = seed.get("questions_and_answers").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
                for (j, qa) in qas.iter().enumerate() {
                    for key in ["question", "answer"] {
                        let n = words(text_at(qa, key));
                        if n > KNOWLEDGE_QA_WORDS {
                            let ptr = format!("/seed_examples/{i}/questions_and_answers/{j}/{key}");
                            out.push(
                                Diagnostic::warning(
                                    rel_path,
                                    pos(&ptr),
                                    codes::GUIDE_QA_WORDS,
                                    format!("{key} has {n} words; the guidance is at most {KNOWLEDGE_QA_WORDS}"),
                                )
                                .at_key(key_path(&ptr)),
                            );
                        }
                    }
                }
            }
        }
    }
    out
}
