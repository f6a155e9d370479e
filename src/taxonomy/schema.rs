//! Schema validation of a loaded leaf against the taxonomy's own JSON Schemas.
//!
//! The schemas in `src/taxonomy/schema/v{1,2,3}/` are byte-for-byte copies of instructlab/schema
//! (Apache-2.0; see the LICENSE there). They are the source of truth: we run them with the
//! `jsonschema` crate (draft 2020-12, `unevaluatedProperties` included) and only translate each
//! error into a [`Diagnostic`] that points at the offending node and says what to do. The choice
//! of schema follows the reference: the `version` key (none = 1; a non-integer is read the way
//! Python's `int()` would read it), and the kind from the leaf's path.

use crate::taxonomy::diagnostic::{codes, Diagnostic, Pos};
use crate::taxonomy::yaml::{Document, NodeKind};
use jsonschema::error::ValidationErrorKind;
use jsonschema::{Retrieve, Uri, Validator};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::OnceLock;

/// Which schema family a leaf is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaKind {
    /// `knowledge.json`.
    Knowledge,
    /// `compositional_skills.json` (also used for foundational skills, as in the reference).
    Skills,
}

impl SchemaKind {
    /// The schema file stem.
    pub fn name(self) -> &'static str {
        match self {
            SchemaKind::Knowledge => "knowledge",
            SchemaKind::Skills => "compositional_skills",
        }
    }

    /// The reference's rule: the last path component named `knowledge` or `compositional_skills`
    /// picks the schema (for a normal tree, the first component); elsewhere a leaf with a
    /// `document` key is knowledge.
    pub fn for_leaf(rel_path: &str, value: &Value) -> SchemaKind {
        let dirs: Vec<&str> = rel_path.split('/').collect();
        let dirs = &dirs[..dirs.len().saturating_sub(1)];
        for part in dirs.iter().rev() {
            match *part {
                "knowledge" => return SchemaKind::Knowledge,
                "compositional_skills" => return SchemaKind::Skills,
                _ => {}
            }
        }
        if value.get("document").is_some() {
            SchemaKind::Knowledge
        } else {
            SchemaKind::Skills
        }
    }
}

/// The schema version a document asks for, read as the reference reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaVersion {
    /// A version with an integer value (may still be unknown, like 7).
    Number(i64),
    /// `version: true` and other values no schema file can match.
    Invalid,
}

impl SchemaVersion {
    /// `contents.get("version", 1)`, then Python's `int()` for non-integers, falling back to 1.
    pub fn of(value: &Value) -> SchemaVersion {
        match value.get("version") {
            None | Some(Value::Null) => SchemaVersion::Number(1),
            Some(Value::Bool(_)) => SchemaVersion::Invalid,
            Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => SchemaVersion::Number(i),
                (None, Some(f)) if f.is_finite() => SchemaVersion::Number(f.trunc() as i64),
                _ => SchemaVersion::Number(1),
            },
            Some(Value::String(s)) => {
                let t = s.trim();
                let t = t.strip_prefix('+').unwrap_or(t);
                if !t.is_empty() && !t.starts_with('_') && !t.ends_with('_') && !t.contains("__") {
                    if let Ok(i) = t.replace('_', "").parse::<i64>() {
                        return SchemaVersion::Number(i);
                    }
                }
                SchemaVersion::Number(1)
            }
            Some(_) => SchemaVersion::Number(1),
        }
    }

    /// Whether the reference runs yamllint on this file (versions above 1 only).
    pub fn is_linted(self) -> bool {
        matches!(self, SchemaVersion::Number(v) if v > 1)
    }
}

const SCHEMAS: &[(&str, &str)] = &[
    ("v1/compositional_skills.json", include_str!("schema/v1/compositional_skills.json")),
    ("v1/knowledge.json", include_str!("schema/v1/knowledge.json")),
    ("v1/version.json", include_str!("schema/v1/version.json")),
    ("v2/compositional_skills.json", include_str!("schema/v2/compositional_skills.json")),
    ("v2/knowledge.json", include_str!("schema/v2/knowledge.json")),
    ("v2/version.json", include_str!("schema/v2/version.json")),
    ("v3/compositional_skills.json", include_str!("schema/v3/compositional_skills.json")),
    ("v3/knowledge.json", include_str!("schema/v3/knowledge.json")),
    ("v3/version.json", include_str!("schema/v3/version.json")),
];
const BASE: &str = "https://schema.labflow.invalid/";

/// Serves the embedded schema files to `$ref` resolution; nothing is fetched from a network.
struct Embedded;

impl Retrieve for Embedded {
    fn retrieve(&self, uri: &Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let path = uri.as_str().strip_prefix(BASE).unwrap_or(uri.as_str());
        let text = SCHEMAS.iter().find(|(p, _)| *p == path).map(|(_, t)| *t).ok_or_else(|| format!("no embedded schema {path}"))?;
        Ok(serde_json::from_str(text)?)
    }
}

enum Compiled {
    Active(Box<Validator>),
    Deprecated(String),
}

fn compiled() -> &'static HashMap<(i64, SchemaKind), Compiled> {
    static C: OnceLock<HashMap<(i64, SchemaKind), Compiled>> = OnceLock::new();
    C.get_or_init(|| {
        let mut out = HashMap::new();
        for version in 1..=3 {
            for kind in [SchemaKind::Knowledge, SchemaKind::Skills] {
                let path = format!("v{version}/{}.json", kind.name());
                let text = SCHEMAS.iter().find(|(p, _)| *p == path).map(|(_, t)| *t).expect("invariant: every schema file is embedded");
                let schema: Value = serde_json::from_str(text).expect("invariant: embedded schemas are valid JSON");
                if schema.get("deprecated") == Some(&Value::Bool(true)) {
                    let description = schema.get("description").and_then(Value::as_str).unwrap_or("this version is deprecated").to_string();
                    out.insert((version, kind), Compiled::Deprecated(description));
                    continue;
                }
                let validator = jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft202012)
                    .with_base_uri(format!("{BASE}{path}"))
                    .with_retriever(Embedded)
                    .build(&schema)
                    .expect("invariant: embedded schemas compile");
                out.insert((version, kind), Compiled::Active(Box::new(validator)));
            }
        }
        out
    })
}

/// Validate `value` (loaded from `rel_path`) and return one diagnostic per schema problem.
pub fn validate(rel_path: &str, doc: &Document, value: &Value) -> Vec<Diagnostic> {
    let kind = SchemaKind::for_leaf(rel_path, value);
    let version = SchemaVersion::of(value);
    let version_pos = doc.nodes.get("/version").map(|n| n.pos).unwrap_or(Pos::START);
    let SchemaVersion::Number(v) = version else {
        return vec![Diagnostic::error(
            rel_path,
            version_pos,
            codes::SCHEMA_UNSUPPORTED_VERSION,
            "`version` must be an integer: 1, 2 or 3 (3 is current)",
        )
        .at_key("version")];
    };
    let Some(compiled) = compiled().get(&(v, kind)) else {
        return vec![Diagnostic::error(
            rel_path,
            version_pos,
            codes::SCHEMA_UNSUPPORTED_VERSION,
            format!("schema version {v} does not exist; use version 3 (versions 1 and 2 are older skills formats)"),
        )
        .at_key("version")];
    };
    match compiled {
        Compiled::Deprecated(description) => vec![Diagnostic::error(
            rel_path,
            version_pos,
            codes::SCHEMA_UNSUPPORTED_VERSION,
            format!(
                "version {v} is not supported for {}; minimum is 3 ({description}) — set `version: 3` and use the v3 format",
                kind.name()
            ),
        )
        .at_key("version")],
        Compiled::Active(validator) => validator.iter_errors(value).flat_map(|e| translate(rel_path, doc, value, v, kind, &e)).collect(),
    }
}

/// `/seed_examples/0/answer` → `seed_examples[0].answer`; `` → `.`.
pub fn key_path(pointer: &str) -> String {
    if pointer.is_empty() {
        return ".".to_string();
    }
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if seg.parse::<usize>().is_ok() && !out.is_empty() {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

fn translate(
    rel_path: &str,
    doc: &Document,
    value: &Value,
    version: i64,
    kind: SchemaKind,
    e: &jsonschema::ValidationError<'_>,
) -> Vec<Diagnostic> {
    let ptr = e.instance_path().as_str().to_string();
    let (found_ptr, info) = match doc.locate(&ptr) {
        Some((p, i)) => (p.to_string(), Some(*i)),
        None => (String::new(), None),
    };
    let node_pos = info.map(|i| i.pos).unwrap_or(Pos::START);
    let label_pos = info.and_then(|i| i.key_pos).unwrap_or(node_pos);
    let what = describe_location(&ptr);
    let one = |pos: Pos, code: &'static str, msg: String| vec![Diagnostic::error(rel_path, pos, code, msg).at_key(key_path(&ptr))];
    match e.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            one(
                node_pos,
                codes::SCHEMA_REQUIRED,
                format!("{what} is missing the required key `{name}`; add it (see the version {version} {} schema)", kind.name()),
            )
        }
        ValidationErrorKind::UnevaluatedProperties { unexpected } | ValidationErrorKind::AdditionalProperties { unexpected } => unexpected
            .iter()
            .map(|key| {
                let child = format!("{ptr}/{}", crate::taxonomy::yaml::escape_pointer(key));
                let pos = doc.nodes.get(&child).and_then(|i| i.key_pos).unwrap_or(node_pos);
                Diagnostic::error(
                    rel_path,
                    pos,
                    codes::SCHEMA_UNKNOWN_KEY,
                    format!("unknown key `{key}` in {what}; remove it or check its spelling (version {version} {} schema)", kind.name()),
                )
                .at_key(key_path(&child))
            })
            .collect(),
        ValidationErrorKind::Type { kind: expected } => {
            let found = info.filter(|_| found_ptr == ptr).map(|i| i.kind).unwrap_or(NodeKind::Null);
            let expected = match expected {
                jsonschema::error::TypeKind::Single(t) => t.to_string(),
                jsonschema::error::TypeKind::Multiple(ts) => format!("{ts:?}"),
            };
            let hint = if found == NodeKind::Str || expected != "string" {
                String::new()
            } else {
                "; quote the value to make it text".to_string()
            };
            one(node_pos, codes::SCHEMA_TYPE, format!("{what} must be {}, found {}{hint}", article(&expected), found.describe()))
        }
        ValidationErrorKind::MinItems { limit } => {
            let have = lookup(value, &ptr).and_then(Value::as_array).map(|a| a.len()).unwrap_or(0);
            one(
                label_pos,
                codes::SCHEMA_MIN_ITEMS,
                format!("{what} needs at least {limit} items, found {have}; add {}", limit.saturating_sub(have as u64)),
            )
        }
        ValidationErrorKind::MinLength { .. } => one(node_pos, codes::SCHEMA_EMPTY_STRING, format!("{what} must not be empty")),
        ValidationErrorKind::UniqueItems => {
            let items = lookup(value, &ptr).and_then(Value::as_array).cloned().unwrap_or_default();
            let (first, dup) = first_duplicate(&items).unwrap_or((0, 0));
            let dup_ptr = format!("{ptr}/{dup}");
            let pos = doc.nodes.get(&dup_ptr).map(|i| i.pos).unwrap_or(label_pos);
            vec![Diagnostic::error(
                rel_path,
                pos,
                codes::SCHEMA_DUPLICATE_ITEM,
                format!("item {dup} of {what} repeats item {first}; items must be unique"),
            )
            .at_key(key_path(&dup_ptr))]
        }
        ValidationErrorKind::Constant { expected_value } if ptr == "/version" => {
            one(node_pos, codes::SCHEMA_VERSION, format!("`version` must be exactly {expected_value} for this schema"))
        }
        _ => one(node_pos, codes::SCHEMA_OTHER, format!("{what}: {e}")),
    }
}

fn article(t: &str) -> String {
    match t {
        "integer" | "array" | "object" => format!("an {t}"),
        other => format!("a {other}"),
    }
}

fn describe_location(ptr: &str) -> String {
    if ptr.is_empty() {
        "the document".to_string()
    } else {
        format!("`{}`", key_path(ptr))
    }
}

fn lookup<'v>(value: &'v Value, ptr: &str) -> Option<&'v Value> {
    value.pointer(ptr)
}

fn first_duplicate(items: &[Value]) -> Option<(usize, usize)> {
    for j in 1..items.len() {
        for i in 0..j {
            if items[i] == items[j] {
                return Some((i, j));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::taxonomy::yaml::load;

    fn check(path: &str, text: &str) -> Vec<Diagnostic> {
        let doc = load(text).unwrap();
        let value = doc.value.clone().unwrap();
        validate(path, &doc, &value)
    }

    const SKILL: &str = "version: 3\ncreated_by: me\ntask_description: t\nseed_examples:\n  - question: q1\n    answer: a1\n  - question: q2\n    answer: a2\n  - question: q3\n    answer: a3\n  - question: q4\n    answer: a4\n  - question: q5\n    answer: a5\n";

    #[test]
    fn a_valid_skill_passes() {
        assert_eq!(check("compositional_skills/x/qna.yaml", SKILL), vec![]);
    }

    #[test]
    fn wrong_type_deep_in_a_list_points_at_the_value() {
        let text = SKILL.replace("answer: a3", "answer: 2024-01-01");
        let d = check("compositional_skills/x/qna.yaml", &text);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].code, codes::SCHEMA_TYPE);
        assert_eq!((d[0].line, d[0].column), (10, 13));
        assert_eq!(d[0].key_path, "seed_examples[2].answer");
    }

    #[test]
    fn unknown_key_points_at_the_key() {
        let text = SKILL.replace("  - question: q4\n", "  - question: q4\n    extra: 1\n");
        let d = check("compositional_skills/x/qna.yaml", &text);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].code, codes::SCHEMA_UNKNOWN_KEY);
        assert_eq!((d[0].line, d[0].column), (12, 5));
    }

    #[test]
    fn knowledge_v2_is_unsupported() {
        let d = check("knowledge/x/qna.yaml", "version: 2\ncreated_by: me\n");
        assert_eq!(d[0].code, codes::SCHEMA_UNSUPPORTED_VERSION);
        assert!(d[0].message.contains("minimum is 3"), "{}", d[0].message);
    }

    #[test]
    fn four_seed_examples_are_too_few() {
        let text = SKILL.replace("  - question: q5\n    answer: a5\n", "");
        let d = check("compositional_skills/x/qna.yaml", &text);
        assert_eq!(d[0].code, codes::SCHEMA_MIN_ITEMS);
        assert_eq!(d[0].line, 4);
    }

    #[test]
    fn versions_read_like_python_int() {
        assert_eq!(SchemaVersion::of(&serde_json::json!({"version": "3"})), SchemaVersion::Number(3));
        assert_eq!(SchemaVersion::of(&serde_json::json!({"version": 3.7})), SchemaVersion::Number(3));
        assert_eq!(SchemaVersion::of(&serde_json::json!({"version": "x"})), SchemaVersion::Number(1));
        assert_eq!(SchemaVersion::of(&serde_json::json!({})), SchemaVersion::Number(1));
        assert_eq!(SchemaVersion::of(&serde_json::json!({"version": true})), SchemaVersion::Invalid);
    }
}
