//! Parsing a completion into rows: the `parse` key of `generate` and generative `critique` steps.
//!
//! One completion yields 0..k items, each a value per output column:
//! - `tags` — text between a start and an end tag, one tag pair per output column, every
//!   occurrence (the reference's default: `re.findall(escape(start) + "(.*?)" + escape(end))`,
//!   values stripped). Items pair up the i-th match of each column; the item count is the
//!   smallest match count, as in the reference (its `zip` truncates). A column whose start and
//!   end tags are both empty takes the whole completion.
//! - `regex` — every match of a pattern (`.` matches newlines; look-around allowed, as in
//!   Python's `re`, through `fancy-regex`), one capture group per output column (or the whole
//!   match when there are none), `cleanup` strings removed from each value.
//! - `json` — the completion (or the first `{…}`/`[…]` in it) as a JSON object, or an array of
//!   objects; each output column is read from the key of the same name.
//! - `text` — the whole completion, stripped, as the single output column.
//!
//! Deterministic. A completion with no item is reported by the caller as a reject with
//! [`ParseSpec::describe`] in the reason.

use crate::teacher::constraint::Constraint;
use fancy_regex::Regex;
use serde::Deserialize;
use std::collections::BTreeMap;

/// How to read a completion, as written in a pipeline file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ParseConfig {
    /// Between tags: one `[start, end]` pair per output column. Without pairs, the prompt's
    /// `start_tags` / `end_tags` are used.
    Tags(Option<Vec<(String, String)>>),
    /// A regular expression with one capture group per output column.
    Regex {
        /// The pattern (Rust `regex` syntax; `(?s)` is implied).
        pattern: String,
        /// Strings deleted from every captured value (the reference's `parser_cleanup_tags`).
        #[serde(default)]
        cleanup: Vec<String>,
    },
    /// A JSON object (or an array of objects) with one key per output column.
    Json,
    /// The whole completion.
    Text,
}

/// A compiled parse spec.
#[derive(Debug, Clone)]
pub enum ParseSpec {
    /// See [`ParseConfig::Tags`]; pairs resolved, one per output column.
    Tags(Vec<(String, String)>),
    /// See [`ParseConfig::Regex`].
    Regex {
        /// The compiled pattern.
        re: Regex,
        /// Strings removed from values.
        cleanup: Vec<String>,
    },
    /// See [`ParseConfig::Json`].
    Json,
    /// See [`ParseConfig::Text`].
    Text,
}

impl ParseSpec {
    /// Compile `config` for `columns` output columns; `prompt_tags` are the prompt file's
    /// `start_tags`/`end_tags` pairs, used when the config names none. Errors say what to fix.
    pub fn compile(config: &ParseConfig, columns: usize, prompt_tags: &[(String, String)]) -> Result<ParseSpec, String> {
        match config {
            ParseConfig::Tags(pairs) => {
                let pairs = pairs.clone().unwrap_or_else(|| prompt_tags.to_vec());
                if pairs.len() != columns {
                    return Err(format!(
                        "{} output column(s) but {} start/end tag pair(s); give one pair per column (in `parse: {{tags: …}}` or the prompt's start_tags/end_tags)",
                        columns,
                        pairs.len()
                    ));
                }
                Ok(ParseSpec::Tags(pairs))
            }
            ParseConfig::Regex { pattern, cleanup } => {
                let re = Regex::new(&format!("(?s){pattern}")).map_err(|e| format!("bad regex: {e}"))?;
                let groups = re.captures_len() - 1;
                if groups != columns && !(groups == 0 && columns == 1) {
                    return Err(format!("the pattern has {groups} capture group(s) but there are {columns} output column(s)"));
                }
                Ok(ParseSpec::Regex { re, cleanup: cleanup.clone() })
            }
            ParseConfig::Json => Ok(ParseSpec::Json),
            ParseConfig::Text if columns == 1 => Ok(ParseSpec::Text),
            ParseConfig::Text => Err(format!("`text` fills exactly one output column, not {columns}")),
        }
    }

    /// What a completion must contain, for reject reasons: `[Start of Question]…[End of Question]`.
    pub fn describe(&self) -> String {
        match self {
            ParseSpec::Tags(pairs) => pairs.iter().map(|(s, e)| format!("{s}…{e}")).collect::<Vec<_>>().join(" and "),
            ParseSpec::Regex { re, .. } => format!("a match of /{}/", re.as_str().trim_start_matches("(?s)")),
            ParseSpec::Json => "a JSON object with the output keys".to_string(),
            ParseSpec::Text => "any text".to_string(),
        }
    }

    /// Items found in `text`, each with one value per output column (`columns` names them, for
    /// JSON keys). Empty when nothing matches.
    pub fn parse(&self, text: &str, columns: &[String]) -> Vec<Vec<String>> {
        match self {
            ParseSpec::Tags(pairs) => {
                let per_column: Vec<Vec<String>> = pairs.iter().map(|(s, e)| between(text, s, e)).collect();
                let count = per_column.iter().map(Vec::len).min().unwrap_or(0);
                (0..count).map(|i| per_column.iter().map(|c| c[i].clone()).collect()).collect()
            }
            ParseSpec::Regex { re, cleanup } => re
                .captures_iter(text)
                // A match that exhausts the backtracking limit ends the search: what was found stays.
                .map_while(Result::ok)
                .map(|caps| {
                    let groups: Vec<String> = if caps.len() == 1 {
                        vec![caps[0].to_string()]
                    } else {
                        (1..caps.len()).map(|g| caps.get(g).map(|m| m.as_str()).unwrap_or("").to_string()).collect()
                    };
                    groups
                        .into_iter()
                        .map(|v| {
                            let mut v = v.trim().to_string();
                            for tag in cleanup {
                                v = v.replace(tag.as_str(), "");
                            }
                            v
                        })
                        .collect()
                })
                .collect(),
            ParseSpec::Json => parse_json(text, columns),
            ParseSpec::Text => {
                let t = text.trim();
                if t.is_empty() {
                    Vec::new()
                } else {
                    vec![vec![t.to_string()]]
                }
            }
        }
    }
}

/// Every stripped text between `start` and the next `end` (both empty: the whole text).
fn between(text: &str, start: &str, end: &str) -> Vec<String> {
    if start.is_empty() && end.is_empty() {
        let t = text.trim();
        return if t.is_empty() { Vec::new() } else { vec![t.to_string()] };
    }
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(start) {
        let after = &rest[i + start.len()..];
        let Some(j) = (if end.is_empty() { Some(after.len()) } else { after.find(end) }) else { break };
        out.push(after[..j].trim().to_string());
        rest = &after[(j + end.len()).min(after.len())..];
        if end.is_empty() {
            break;
        }
    }
    out
}

fn parse_json(text: &str, columns: &[String]) -> Vec<Vec<String>> {
    let value = serde_json::from_str::<serde_json::Value>(text.trim()).ok().or_else(|| {
        let start = text.find(['{', '['])?;
        let end = text.rfind(['}', ']'])?;
        (end > start).then(|| serde_json::from_str(&text[start..=end]).ok()).flatten()
    });
    let objects = match value {
        Some(serde_json::Value::Array(items)) => items,
        Some(v @ serde_json::Value::Object(_)) => vec![v],
        _ => return Vec::new(),
    };
    objects
        .iter()
        .filter_map(|o| {
            columns
                .iter()
                .map(|c| match o.get(c)? {
                    serde_json::Value::String(s) => Some(s.trim().to_string()),
                    serde_json::Value::Null => None,
                    other => Some(other.to_string()),
                })
                .collect::<Option<Vec<String>>>()
        })
        .collect()
}

/// What a step knows of its output values beyond the parse spec: the keys `labels`,
/// `numeric` and `max_items` of `generate` (and a judge's labels). It narrows the constraint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shape {
    /// Output column → the values it may take.
    pub labels: BTreeMap<String, Vec<String>>,
    /// Output columns that hold a number (a score read with a numeric cast).
    pub numeric: Vec<String>,
    /// Most items one completion may hold.
    pub max_items: Option<u32>,
}

/// Whitespace allowed around values and between items: bounded, so no completion pads forever.
const WS: &str = "[ \n]{0,4}";
/// A number as judges write scores.
const NUMBER: &str = "[0-9]{1,3}(?:\\.[0-9]{1,2})?";

impl ParseSpec {
    /// The decoding constraint under which every completion parses into 1..=`max_items` items
    /// (ARCHITECTURE.md: the format a step expects is a constraint, not a hope). `None` where
    /// the spec cannot be one: `text` without labels, tags with an empty side, or a regex with
    /// look-around (the reference's knowledge parser) — those completions are parsed and
    /// rejected as they come. Tag values are free text up to the first character of their end
    /// tag (so `[^\[]` for `[End of …]` tags) and must hold a non-space.
    pub fn constraint(&self, columns: &[String], shape: &Shape) -> Option<Constraint> {
        let value = |col: &str, stop: Option<char>| -> String {
            if let Some(labels) = shape.labels.get(col).filter(|l| !l.is_empty()) {
                format!("{WS}{}{WS}", crate::teacher::constraint::choice_regex(labels))
            } else if shape.numeric.iter().any(|c| c == col) {
                format!("{WS}{NUMBER}{WS}")
            } else {
                let not = stop.map(|c| regex_syntax::escape(&c.to_string())).unwrap_or_default();
                format!("{WS}[^{not}\\s][^{not}]*")
            }
        };
        let items = |item: String| -> String {
            let more = match shape.max_items {
                Some(k) => format!("{{0,{}}}", k.saturating_sub(1)),
                None => "*".to_string(),
            };
            format!("{WS}{item}(?:{WS}{item}){more}{WS}")
        };
        match self {
            ParseSpec::Tags(pairs) => {
                if pairs.iter().any(|(s, e)| s.is_empty() || e.is_empty()) {
                    return None;
                }
                let item: Vec<String> = pairs
                    .iter()
                    .zip(columns)
                    .map(|((s, e), col)| format!("{}{}{}", regex_syntax::escape(s), value(col, e.chars().next()), regex_syntax::escape(e)))
                    .collect();
                Some(Constraint::Regex(items(item.join(WS))))
            }
            ParseSpec::Regex { re, .. } => {
                let pattern = re.as_str().trim_start_matches("(?s)");
                let hir = regex_syntax::ParserBuilder::new().dot_matches_new_line(true).build().parse(pattern).ok()?;
                if !hir.properties().look_set().is_empty() {
                    return None;
                }
                Some(Constraint::Regex(items(format!("(?:{pattern})"))))
            }
            ParseSpec::Json => {
                let props: serde_json::Map<String, serde_json::Value> = columns
                    .iter()
                    .map(|c| {
                        let schema = if let Some(labels) = shape.labels.get(c) {
                            serde_json::json!({ "enum": labels })
                        } else if shape.numeric.contains(c) {
                            serde_json::json!({"type": "number"})
                        } else {
                            serde_json::json!({"type": "string", "minLength": 1})
                        };
                        (c.clone(), schema)
                    })
                    .collect();
                let object = serde_json::json!({"type": "object", "properties": props, "required": columns});
                Some(Constraint::JsonSchema(match shape.max_items {
                    Some(1) => object,
                    Some(k) => serde_json::json!({"type": "array", "items": object, "minItems": 1, "maxItems": k}),
                    None => serde_json::json!({"type": "array", "items": object, "minItems": 1}),
                }))
            }
            ParseSpec::Text => {
                let col = columns.first()?;
                if let Some(labels) = shape.labels.get(col).filter(|l| !l.is_empty()) {
                    Some(Constraint::Choice(labels.clone()))
                } else if shape.numeric.contains(col) {
                    Some(Constraint::Regex(NUMBER.to_string()))
                } else {
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tags_pair_up_and_truncate_like_the_reference() {
        let spec =
            ParseSpec::compile(&ParseConfig::Tags(None), 2, &[("[E]".into(), "[/E]".into()), ("[S]".into(), "[/S]".into())]).unwrap();
        let items = spec.parse("[E] good [/E] [S] 1 [/S] [E] second [/E]", &cols(&["evaluation", "score"]));
        assert_eq!(items, vec![vec!["good".to_string(), "1".to_string()]]);
        assert!(spec.parse("no tags at all", &cols(&["evaluation", "score"])).is_empty());
    }

    #[test]
    fn tags_find_every_occurrence() {
        let spec = ParseSpec::compile(&ParseConfig::Tags(Some(vec![("[Q]".into(), "[/Q]".into())])), 1, &[]).unwrap();
        let items = spec.parse("[Q] one? [/Q]\n[Q]\ntwo?\n[/Q] [Q] unterminated", &cols(&["q"]));
        assert_eq!(items, vec![vec!["one?".to_string()], vec!["two?".to_string()]]);
    }

    #[test]
    fn empty_tags_take_the_whole_text() {
        let spec = ParseSpec::compile(&ParseConfig::Tags(None), 1, &[(String::new(), String::new())]).unwrap();
        assert_eq!(spec.parse("  all of it \n", &cols(&["r"])), vec![vec!["all of it".to_string()]]);
    }

    #[test]
    fn regex_groups_and_cleanup_match_the_reference_knowledge_parser() {
        let pattern = r"\[(?:Question|QUESTION)\]\s*(.*?)\s*\[(?:Answer|ANSWER)\]\s*(.*?)\s*(?=\[(?:Question|QUESTION)\]|$)";
        let spec =
            ParseSpec::compile(&ParseConfig::Regex { pattern: pattern.into(), cleanup: vec!["[END]".into(), "[End]".into()] }, 2, &[])
                .unwrap();
        let items = spec.parse("[Question] Why?\n[Answer] Because. [END]\n[QUESTION] How? [ANSWER] So.\n", &cols(&["q", "a"]));
        assert_eq!(items, vec![vec!["Why?".to_string(), "Because. ".to_string()], vec!["How?".to_string(), "So.".to_string()]]);
        let e = ParseSpec::compile(&ParseConfig::Regex { pattern: "(unclosed".into(), cleanup: vec![] }, 1, &[]).unwrap_err();
        assert!(e.contains("bad regex"), "{e}");
    }

    #[test]
    fn json_objects_and_arrays() {
        let spec = ParseSpec::Json;
        let c = cols(&["question", "answer"]);
        assert_eq!(spec.parse(r#"Sure: {"question": "Q", "answer": 3}"#, &c), vec![vec!["Q".to_string(), "3".to_string()]]);
        assert_eq!(spec.parse(r#"[{"question": "a", "answer": "b"}, {"question": "only"}]"#, &c).len(), 1);
        assert!(spec.parse("not json", &c).is_empty());
    }

    #[test]
    fn compile_errors_say_what_to_fix() {
        let e = ParseSpec::compile(&ParseConfig::Tags(None), 2, &[("a".into(), "b".into())]).unwrap_err();
        assert!(e.contains("2 output column(s) but 1 start/end tag pair(s)"), "{e}");
        let e = ParseSpec::compile(&ParseConfig::Regex { pattern: "(a)(b)".into(), cleanup: vec![] }, 1, &[]).unwrap_err();
        assert!(e.contains("2 capture group(s)"), "{e}");
    }

    fn compiled(spec: &ParseSpec, columns: &[String], shape: &Shape) -> crate::teacher::constraint::TokenAutomaton {
        let c = spec.constraint(columns, shape).expect("a constraint");
        let bytes: Vec<Option<Vec<u8>>> = (0..=255u8).map(|b| Some(vec![b])).collect();
        let vocab = std::sync::Arc::new(crate::teacher::constraint::Vocabulary::new(&bytes, &[]));
        crate::teacher::constraint::TokenAutomaton::compile(&c.regex().unwrap(), vocab).unwrap()
    }

    #[test]
    fn constraints_accept_exactly_what_parses() {
        let c = cols(&["evaluation", "score"]);
        let spec =
            ParseSpec::compile(&ParseConfig::Tags(None), 2, &[("[E]".into(), "[/E]".into()), ("[S]".into(), "[/S]".into())]).unwrap();
        let shape = Shape { labels: [("score".to_string(), vec!["0".to_string(), "1".to_string()])].into(), max_items: Some(1), ..Shape::default() };
        let a = compiled(&spec, &c, &shape);
        for ok in ["[E] fine [/E]\n[S] 1 [/S]", "[E]x[/E][S]0[/S]\n"] {
            assert!(a.matches(ok.as_bytes()), "{ok}");
            assert_eq!(spec.parse(ok, &c).len(), 1, "{ok}");
        }
        for bad in ["[E] fine [/E] [S] 2 [/S]", "[E]  [/E][S]1[/S]", "[E]a[/E][S]1[/S][E]b[/E][S]0[/S]", "Sure! [E]a[/E][S]1[/S]"] {
            assert!(!a.matches(bad.as_bytes()), "{bad}");
        }
        // Numbers, and up to three items.
        let shape = Shape { numeric: vec!["score".into()], max_items: Some(3), ..Shape::default() };
        let a = compiled(&spec, &c, &shape);
        assert!(a.matches(b"[E]a[/E][S]2.5[/S] [E]b[/E][S]10[/S]"));
        assert!(!a.matches(b"[E]a[/E][S]two[/S]"));
        assert!(!a.matches("[E]a[/E][S]1[/S]".repeat(4).as_bytes()));
    }

    #[test]
    fn specs_that_cannot_be_constraints_say_so_by_none() {
        let look = ParseSpec::compile(&ParseConfig::Regex { pattern: "(a)(?=b)".into(), cleanup: vec![] }, 1, &[]).unwrap();
        assert!(look.constraint(&cols(&["x"]), &Shape::default()).is_none());
        assert!(ParseSpec::Text.constraint(&cols(&["x"]), &Shape::default()).is_none());
        let labels = Shape { labels: [("x".to_string(), vec!["YES".to_string(), "NO".to_string()])].into(), ..Shape::default() };
        assert_eq!(ParseSpec::Text.constraint(&cols(&["x"]), &labels), Some(Constraint::Choice(vec!["YES".into(), "NO".into()])));
        let empty_end = ParseSpec::compile(&ParseConfig::Tags(Some(vec![("Q:".into(), String::new())])), 1, &[]).unwrap();
        assert!(empty_end.constraint(&cols(&["x"]), &Shape::default()).is_none());
        // A JSON spec becomes a schema the parser's keys come from.
        let Some(Constraint::JsonSchema(s)) = ParseSpec::Json.constraint(&cols(&["q", "a"]), &Shape { max_items: Some(1), ..Shape::default() }) else {
            panic!("a schema")
        };
        assert_eq!(s["required"], serde_json::json!(["q", "a"]));
        let regex = ParseSpec::compile(&ParseConfig::Regex { pattern: r"Q: ([^\n]+)\n".into(), cleanup: vec![] }, 1, &[]).unwrap();
        let a = compiled(&regex, &cols(&["q"]), &Shape::default());
        assert!(a.matches(b"Q: one\nQ: two\n") && !a.matches(b"one"));
    }
}
