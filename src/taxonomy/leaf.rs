//! Checking one `qna.yaml`: bytes in, diagnostics and (when valid) a [`Leaf`] out.
//!
//! The order follows the reference validator: decode, parse, empty/top-level checks, style
//! (yamllint's relaxed rules, only for schema versions above 1, every finding an error), then
//! the JSON Schema of the leaf's version and kind. labflow adds the taxonomy README's guidance
//! (word counts) as warnings, and reports duplicate keys, which PyYAML silently drops.

use crate::taxonomy::diagnostic::{codes, Diagnostic, Pos, Severity};
use crate::taxonomy::schema::{self, SchemaKind, SchemaVersion};
use crate::taxonomy::{lint, yaml};
use serde::Serialize;
use serde_json::Value;

/// Largest `qna.yaml` accepted; real leaves are a few kilobytes.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

/// What a leaf teaches, as the pipelines need to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeafKind {
    /// A `knowledge/` leaf grounded in documents.
    Knowledge,
    /// A compositional skill whose seed examples have no `context`.
    FreeformSkill,
    /// A compositional skill with a `context` in its seed examples.
    GroundedSkill,
    /// A `foundational_skills/` leaf (the reference pipelines skip these).
    Foundational,
}

impl LeafKind {
    /// The name shown by `labflow leaves`.
    pub fn label(self) -> &'static str {
        match self {
            LeafKind::Knowledge => "knowledge",
            LeafKind::FreeformSkill => "freeform_skill",
            LeafKind::GroundedSkill => "grounded_skill",
            LeafKind::Foundational => "foundational",
        }
    }
}

/// Where a knowledge leaf's documents live, as written in its `document` key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentRef {
    /// Repository URL as written.
    pub repo: String,
    /// Commit id.
    pub commit: String,
    /// Glob patterns inside the repository.
    pub patterns: Vec<String>,
    /// Position of the `document` key, for diagnostics.
    #[serde(skip)]
    pub pos: Pos,
    /// Position of the `repo` value.
    #[serde(skip)]
    pub repo_pos: Pos,
    /// Position of the `commit` value.
    #[serde(skip)]
    pub commit_pos: Pos,
    /// Position of each pattern.
    #[serde(skip)]
    pub pattern_pos: Vec<Pos>,
}

/// A valid leaf.
#[derive(Debug, Clone, Serialize)]
pub struct Leaf {
    /// The leaf id: its folder path under the taxonomy root.
    pub id: String,
    /// Path of the `qna.yaml`, relative to the taxonomy root.
    pub path: String,
    /// What it teaches.
    pub kind: LeafKind,
    /// Schema version (1 when the file has no `version`).
    pub version: i64,
    /// Number of seed examples.
    pub seed_count: usize,
    /// blake3 of the canonical parsed content (keys sorted, no formatting), hex.
    pub content_hash: String,
    /// The parsed document.
    #[serde(skip)]
    pub content: Value,
    /// The documents it references (knowledge only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<DocumentRef>,
}

/// The outcome of checking one file.
#[derive(Debug, Clone, Default)]
pub struct LeafCheck {
    /// Everything found, errors and warnings, sorted by position.
    pub diagnostics: Vec<Diagnostic>,
    /// The leaf, when there was no error.
    pub leaf: Option<Leaf>,
}

impl LeafCheck {
    /// True when some diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Check the bytes of the `qna.yaml` at `rel_path` (relative to the taxonomy root).
pub fn check_leaf(rel_path: &str, bytes: &[u8]) -> LeafCheck {
    let mut out = LeafCheck::default();
    let d = &mut out.diagnostics;
    if bytes.len() > MAX_FILE_BYTES {
        d.push(Diagnostic::error(
            rel_path,
            Pos::START,
            codes::YAML_TOO_LARGE,
            format!("file is {:.1} MiB; a qna.yaml is limited to {} MiB (real leaves are a few KiB) — move long text into the knowledge documents", bytes.len() as f64 / 1048576.0, MAX_FILE_BYTES >> 20),
        ));
        return out;
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            d.push(Diagnostic::error(
                rel_path,
                byte_pos(bytes, e.valid_up_to()),
                codes::YAML_ENCODING,
                "file is not UTF-8 text; save it as UTF-8",
            ));
            return out;
        }
    };
    // The reference reads files with universal newlines before parsing and linting, so PyYAML
    // and yamllint never see a CR; do the same, and say so as a warning. Every position below is
    // therefore in lines as YAML (and the reference) counts them: a lone CR ends a line too.
    let unix_text;
    let text = if text.contains('\r') {
        let first = text.split('\n').position(|l| l.contains('\r')).unwrap_or(0) + 1;
        d.push(Diagnostic::warning(
            rel_path,
            Pos::new(first, 1),
            "lint.new-lines",
            "file uses CR or CRLF line endings; the reference converts them, but save it with \\n line endings (new-lines)",
        ));
        unix_text = text.replace("\r\n", "\n").replace('\r', "\n");
        unix_text.as_str()
    } else {
        text
    };
    let doc = match yaml::load(text) {
        Ok(doc) => doc,
        Err(e) => {
            d.push(Diagnostic::error(rel_path, e.pos, e.code, e.message));
            return out;
        }
    };
    let (style_findings, scan_error) = lint::lint_and_scan(text);
    // saphyr reads YAML 1.2; PyYAML refuses a few things 1.2 allows. Refuse them too.
    if let Some((line, column)) = scan_error {
        d.push(Diagnostic::error(
            rel_path,
            Pos::new(line, column),
            codes::YAML_SYNTAX,
            "the reference's YAML parser (PyYAML) cannot read this: a tab inside unquoted text, or an anchor name with punctuation, are the usual causes; quote the value or use spaces",
        ));
        return out;
    }
    let value = match &doc.value {
        Some(v) if !is_falsy(v) => v.clone(),
        _ => {
            d.push(Diagnostic::warning(rel_path, Pos::START, codes::YAML_EMPTY, "the file is empty; a leaf needs seed examples"));
            return out;
        }
    };
    if !value.is_object() {
        let pos = doc.nodes.get("").map(|n| n.pos).unwrap_or(Pos::START);
        d.push(Diagnostic::error(
            rel_path,
            pos,
            codes::YAML_NOT_MAPPING,
            "the top level must be a mapping of keys to values (version, created_by, seed_examples, …)",
        ));
        return out;
    }
    let version = SchemaVersion::of(&value);
    // The reference lints only files above version 1 and treats every yamllint finding as an
    // error; for version 1 files we still show them, as warnings.
    let style = if version.is_linted() { Severity::Error } else { Severity::Warning };
    for f in style_findings {
        let diag = Diagnostic::error(rel_path, Pos::new(f.line, f.column), lint_code(f.rule), format!("{} ({})", f.message, f.rule));
        d.push(Diagnostic { severity: style, ..diag });
    }
    for dup in &doc.duplicates {
        let diag = Diagnostic::error(
            rel_path,
            dup.pos,
            codes::YAML_DUPLICATE_KEY,
            format!("duplicate key `{}` (first at line {}); remove one — only the last would be kept", dup.key, dup.first.line),
        )
        .at_key(schema::key_path(&format!("{}/{}", dup.mapping, yaml::escape_pointer(&dup.key))));
        d.push(Diagnostic { severity: style, ..diag });
    }
    d.extend(schema::validate(rel_path, &doc, &value));
    d.extend(crate::taxonomy::guidance::check(rel_path, &doc, &value));
    d.sort_by_key(|x| (x.line, x.column));
    if !out.has_errors() {
        out.leaf = Some(make_leaf(rel_path, value, &doc));
    }
    out
}

fn make_leaf(rel_path: &str, value: Value, doc: &yaml::Document) -> Leaf {
    let id = rel_path.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("").to_string();
    let seeds = value.get("seed_examples").and_then(Value::as_array);
    let kind = if rel_path.split('/').next() == Some("foundational_skills") {
        LeafKind::Foundational
    } else if SchemaKind::for_leaf(rel_path, &value) == SchemaKind::Knowledge {
        LeafKind::Knowledge
    } else if seeds.is_some_and(|s| s.iter().any(|e| e.get("context").is_some())) {
        LeafKind::GroundedSkill
    } else {
        LeafKind::FreeformSkill
    };
    let at = |ptr: &str| doc.nodes.get(ptr).map(|n| n.pos).unwrap_or(Pos::START);
    let document = value.get("document").and_then(|d| {
        Some(DocumentRef {
            repo: d.get("repo")?.as_str()?.to_string(),
            commit: d.get("commit")?.as_str()?.to_string(),
            patterns: d.get("patterns")?.as_array()?.iter().filter_map(|p| p.as_str().map(str::to_string)).collect(),
            pos: at("/document"),
            repo_pos: at("/document/repo"),
            commit_pos: at("/document/commit"),
            pattern_pos: (0..d.get("patterns")?.as_array()?.len()).map(|i| at(&format!("/document/patterns/{i}"))).collect(),
        })
    });
    let version = match SchemaVersion::of(&value) {
        SchemaVersion::Number(v) => v,
        SchemaVersion::Invalid => 0,
    };
    Leaf {
        id,
        path: rel_path.to_string(),
        kind,
        version,
        seed_count: seeds.map(Vec::len).unwrap_or(0),
        content_hash: blake3::hash(canonical_json(&value).as_bytes()).to_hex().to_string(),
        content: value,
        document,
    }
}

/// JSON with every mapping's keys sorted: the "normalised parsed content" that leaf hashes cover,
/// so reformatting, reordering keys or changing quoting does not change a hash.
pub fn canonical_json(value: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(keys.into_iter().map(|k| (k.clone(), sort(&m[k]))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(value).to_string()
}

/// Python's truthiness, which the reference uses for "the file is empty".
fn is_falsy(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
    }
}

fn lint_code(rule: &str) -> &'static str {
    match rule {
        "trailing-spaces" => "lint.trailing-spaces",
        "new-line-at-end-of-file" => "lint.new-line-at-end-of-file",
        "new-lines" => "lint.new-lines",
        "empty-lines" => "lint.empty-lines",
        "colons" => "lint.colons",
        "commas" => "lint.commas",
        "hyphens" => "lint.hyphens",
        "braces" => "lint.braces",
        "brackets" => "lint.brackets",
        "indentation" => "lint.indentation",
        _ => "lint.other",
    }
}

/// 1-based line and column of byte offset `at` (columns counted in bytes of invalid text), with
/// lines counted as YAML counts them: LF, CRLF or a lone CR ends a line.
fn byte_pos(bytes: &[u8], at: usize) -> Pos {
    let before = &bytes[..at.min(bytes.len())];
    let breaks = before.iter().enumerate().filter(|&(i, &b)| b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n'))).count();
    let col = before.iter().rev().take_while(|&&b| b != b'\n' && b != b'\r').count() + 1;
    Pos::new(breaks + 1, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_ignores_key_order() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"y":2,"x":3}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":{"x":3,"y":2},"b":1}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
    }

    #[test]
    fn empty_and_falsy_documents_warn() {
        for text in ["", "---\n", "{}\n", "[]\n"] {
            let c = check_leaf("compositional_skills/x/qna.yaml", text.as_bytes());
            assert_eq!(c.diagnostics.len(), 1, "{text:?}");
            assert_eq!(c.diagnostics[0].code, codes::YAML_EMPTY);
            assert!(!c.has_errors());
        }
    }

    /// A lone CR ends a line for YAML and for the reference (universal newlines), so a file with
    /// CR or CRLF line endings gets the positions its LF twin gets, plus the line-endings warning.
    #[test]
    fn positions_in_cr_and_crlf_files_are_those_of_the_lf_file() {
        let lf = "version: 3\ntask_description: 'x'\nseed_examples:\n  - question: a\n    answer: [b\nc: d\n";
        let want = check_leaf("x/qna.yaml", lf.as_bytes());
        let error = |c: &LeafCheck| c.diagnostics.iter().find(|d| d.is_error()).map(|d| (d.code, d.line, d.column));
        assert!(error(&want).is_some(), "{:?}", want.diagnostics);
        for ending in ["\r", "\r\n"] {
            let c = check_leaf("x/qna.yaml", lf.replace('\n', ending).as_bytes());
            assert_eq!(error(&c), error(&want), "{ending:?}: {:?}", c.diagnostics);
            assert!(c.diagnostics.iter().any(|d| d.code == "lint.new-lines"), "{:?}", c.diagnostics);
        }
        let c = check_leaf("x/qna.yaml", b"a: b\rc: \xff\n");
        assert_eq!((c.diagnostics[0].line, c.diagnostics[0].column), (2, 4));
    }

    #[test]
    fn non_utf8_is_an_encoding_error() {
        let c = check_leaf("x/qna.yaml", b"a: b\nc: \xff\xfe\n");
        assert_eq!(c.diagnostics[0].code, codes::YAML_ENCODING);
        assert_eq!((c.diagnostics[0].line, c.diagnostics[0].column), (2, 4));
    }

    #[test]
    fn a_list_at_the_top_is_not_a_leaf() {
        let c = check_leaf("x/qna.yaml", b"- a\n- b\n");
        assert_eq!(c.diagnostics[0].code, codes::YAML_NOT_MAPPING);
    }
}
