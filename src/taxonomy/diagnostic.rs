//! Diagnostics: what the validator says about a leaf, and where.
//!
//! Every check in [`crate::taxonomy`] produces [`Diagnostic`]s rather than errors: a bad leaf is
//! data (ARCHITECTURE.md invariant 5). A diagnostic names the file (relative to the taxonomy
//! root), the 1-based line and column of the offending node, a stable machine-readable code
//! (`yaml.syntax`, `schema.required`, `lint.trailing-spaces`, …) and the key path inside the
//! document (`seed_examples[2].answer`, `.` for the whole document).

use serde::Serialize;
use std::fmt;

/// How bad a finding is. Errors make `labflow validate` exit with status 1; warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The leaf is rejected (the reference validator would reject it too).
    Error,
    /// Worth fixing, but the leaf is still usable.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One finding about one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// File path relative to the taxonomy root, `/`-separated.
    pub path: String,
    /// 1-based line of the offending node (1 when the whole file is meant).
    pub line: usize,
    /// 1-based column of the offending node.
    pub column: usize,
    /// Error or warning.
    pub severity: Severity,
    /// Stable code, `<family>.<name>`; see [`codes`].
    pub code: &'static str,
    /// Human-readable message saying what is wrong and, where it helps, what to do.
    pub message: String,
    /// Key path inside the document (`seed_examples[0].question`); `.` for the document itself.
    pub key_path: String,
}

impl Diagnostic {
    /// An error at `line:column` of `path`.
    pub fn error(path: &str, pos: Pos, code: &'static str, message: impl Into<String>) -> Self {
        Self::new(path, pos, Severity::Error, code, message)
    }

    /// A warning at `line:column` of `path`.
    pub fn warning(path: &str, pos: Pos, code: &'static str, message: impl Into<String>) -> Self {
        Self::new(path, pos, Severity::Warning, code, message)
    }

    fn new(path: &str, pos: Pos, severity: Severity, code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            path: path.to_string(),
            line: pos.line,
            column: pos.column,
            severity,
            code,
            message: message.into(),
            key_path: ".".to_string(),
        }
    }

    /// Attach the key path of the node the diagnostic is about.
    pub fn at_key(mut self, key_path: impl Into<String>) -> Self {
        self.key_path = key_path.into();
        self
    }

    /// True for [`Severity::Error`].
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// `path:line:col: severity[code]: message`, the format of `labflow validate`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}[{}]: {}", self.path, self.line, self.column, self.severity, self.code, self.message)?;
        if self.key_path != "." {
            write!(f, " (at {})", self.key_path)?;
        }
        Ok(())
    }
}

/// A 1-based position in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Pos {
    /// The start of a file.
    pub const START: Pos = Pos { line: 1, column: 1 };

    /// A position from 1-based line and column.
    pub fn new(line: usize, column: usize) -> Self {
        Pos { line, column }
    }
}

/// Every diagnostic code labflow emits, in one place so that docs and tests can list them.
pub mod codes {
    /// The file is not valid YAML (the parser's message says where and why).
    pub const YAML_SYNTAX: &str = "yaml.syntax";
    /// A mapping has the same key twice.
    pub const YAML_DUPLICATE_KEY: &str = "yaml.duplicate-key";
    /// The top-level node is not a mapping.
    pub const YAML_NOT_MAPPING: &str = "yaml.not-mapping";
    /// The file (or its top-level node) is empty.
    pub const YAML_EMPTY: &str = "yaml.empty";
    /// Nesting deeper than the loader accepts.
    pub const YAML_TOO_DEEP: &str = "yaml.too-deep";
    /// The file or the expanded document is larger than the loader accepts.
    pub const YAML_TOO_LARGE: &str = "yaml.too-large";
    /// The file is not UTF-8 text.
    pub const YAML_ENCODING: &str = "yaml.encoding";
    /// A YAML file that looks like a leaf but is not named `qna.yaml`.
    pub const FILE_MISNAMED: &str = "file.misnamed";
    /// A file or folder of the taxonomy could not be read (permissions, symlink loop, …).
    pub const FILE_UNREADABLE: &str = "file.unreadable";
    /// No `attribution.txt` beside the leaf.
    pub const ATTRIBUTION_MISSING: &str = "attribution.missing";
    /// A required key is missing.
    pub const SCHEMA_REQUIRED: &str = "schema.required";
    /// A key the schema does not define.
    pub const SCHEMA_UNKNOWN_KEY: &str = "schema.unknown-key";
    /// A value of the wrong type.
    pub const SCHEMA_TYPE: &str = "schema.type";
    /// Too few items in a list (seed examples, Q&A pairs, patterns).
    pub const SCHEMA_MIN_ITEMS: &str = "schema.min-items";
    /// An empty string where text is required.
    pub const SCHEMA_EMPTY_STRING: &str = "schema.empty-string";
    /// Two equal items in a list that must hold unique items.
    pub const SCHEMA_DUPLICATE_ITEM: &str = "schema.duplicate-item";
    /// The `version` value does not match the schema that was chosen by it.
    pub const SCHEMA_VERSION: &str = "schema.version";
    /// The version has no schema (unknown), or is no longer supported for this kind of leaf.
    pub const SCHEMA_UNSUPPORTED_VERSION: &str = "schema.unsupported-version";
    /// Any other schema rule.
    pub const SCHEMA_OTHER: &str = "schema.other";
    /// The document repository is not in the document source.
    pub const DOC_REPO_NOT_FOUND: &str = "doc.repo-not-found";
    /// The document commit is not in the document source.
    pub const DOC_COMMIT_NOT_FOUND: &str = "doc.commit-not-found";
    /// A document pattern matches no file.
    pub const DOC_NO_MATCH: &str = "doc.no-match";
    /// A matched document is not .md, .txt or .pdf.
    pub const DOC_BAD_EXTENSION: &str = "doc.bad-extension";
    /// A pattern or matched path would leave the repository folder.
    pub const DOC_ESCAPE: &str = "doc.escape";
    /// A pattern that is not a valid glob.
    pub const DOC_BAD_PATTERN: &str = "doc.bad-pattern";
    /// A document could not be read.
    pub const DOC_UNREADABLE: &str = "doc.unreadable";
    /// Skills seed text longer than the taxonomy guidance (~2300 words).
    pub const GUIDE_SEED_WORDS: &str = "guide.seed-words";
    /// A knowledge context over 500 words.
    pub const GUIDE_CONTEXT_WORDS: &str = "guide.context-words";
    /// A knowledge question or answer over 250 words.
    pub const GUIDE_QA_WORDS: &str = "guide.qa-words";
}
