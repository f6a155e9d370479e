//! Loading a `qna.yaml` into JSON with the position of every node.
//!
//! The reference validator loads leaves with PyYAML's `safe_load` (YAML 1.1 scalar rules: `yes`
//! is a boolean, `2024-01-01` a date, `010` the octal 8) and then validates the result against a
//! JSON Schema. To reach the same verdicts we parse with `saphyr-parser` (an event parser that
//! keeps spans), resolve plain scalars with the YAML 1.1 rules PyYAML uses, and build a
//! [`serde_json::Value`] plus a side table from JSON pointer to source position, so that a schema
//! error on `/seed_examples/2/answer` can point at line and column of that node.
//!
//! The loader is iterative (no recursion over nesting depth), bounds nesting depth and alias
//! expansion, and turns every problem into a [`LoadError`] with a position — hostile input
//! cannot crash it. Duplicate keys are collected (PyYAML keeps the last value silently; yamllint
//! rejects them), as are PyYAML's "unacceptable characters".

use crate::taxonomy::diagnostic::Pos;
use regex::Regex;
use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Deepest nesting of sequences and mappings accepted. Real leaves use 4 levels.
pub const MAX_DEPTH: usize = 256;
/// Most nodes a document may expand to (aliases included); guards against alias bombs.
pub const MAX_NODES: usize = 2_000_000;

/// What kind of YAML value a node holds, as a user would name it in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// `~`, `null` or nothing.
    Null,
    /// `true`, `yes`, `on`, … (YAML 1.1).
    Bool,
    /// An integer.
    Int,
    /// A floating-point number.
    Float,
    /// A string.
    Str,
    /// A date or timestamp such as `2024-01-01` (YAML 1.1 reads it as a date, not a string).
    Timestamp,
    /// A sequence.
    Seq,
    /// A mapping.
    Map,
}

impl NodeKind {
    /// How a message names this kind: "a string", "a date", ….
    pub fn describe(self) -> &'static str {
        match self {
            NodeKind::Null => "an empty value (null)",
            NodeKind::Bool => "a boolean",
            NodeKind::Int => "an integer",
            NodeKind::Float => "a number",
            NodeKind::Str => "a string",
            NodeKind::Timestamp => "a date",
            NodeKind::Seq => "a list",
            NodeKind::Map => "a mapping",
        }
    }
}

/// Where a node sits in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeInfo {
    /// Start of the value.
    pub pos: Pos,
    /// Start of the key that holds the value, when the node is a mapping value.
    pub key_pos: Option<Pos>,
    /// What the value is.
    pub kind: NodeKind,
}

/// A key that appears twice in one mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateKey {
    /// The key text.
    pub key: String,
    /// JSON pointer of the mapping that holds it.
    pub mapping: String,
    /// Position of the second occurrence.
    pub pos: Pos,
    /// Position of the first occurrence.
    pub first: Pos,
}

/// Why a document could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// Where the problem was found.
    pub pos: Pos,
    /// Which diagnostic code it maps to.
    pub code: &'static str,
    /// What went wrong.
    pub message: String,
}

/// A loaded document.
#[derive(Debug, Clone, Default)]
pub struct Document {
    /// The document as JSON (`None` for an empty stream). Dates become `{"$timestamp": "…"}`
    /// objects so that a schema asking for a string rejects them, as it does in the reference.
    pub value: Option<Value>,
    /// Position of every node by JSON pointer (`""` is the root).
    pub nodes: HashMap<String, NodeInfo>,
    /// Keys repeated within one mapping.
    pub duplicates: Vec<DuplicateKey>,
}

impl Document {
    /// The node at `pointer`, or the nearest ancestor the table knows (aliased subtrees only
    /// record their root).
    pub fn locate(&self, pointer: &str) -> Option<(&str, &NodeInfo)> {
        let mut p = pointer;
        loop {
            if let Some((k, info)) = self.nodes.get_key_value(p) {
                return Some((k.as_str(), info));
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return None,
            }
        }
    }
}

/// Escape one JSON-pointer segment (RFC 6901).
pub fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Load one YAML document from `text`.
pub fn load(text: &str) -> Result<Document, LoadError> {
    if let Some(err) = check_printable(text) {
        return Err(err);
    }
    // PyYAML does not check the indentation of a quoted scalar's continuation lines; YAML 1.2
    // (and so saphyr) does. Their leading spaces are folded away, so indenting them changes no
    // value: do that, one scalar per retry, and parse again, to accept what the reference
    // accepts. The retries are bounded by the bytes they re-parse.
    let mut fixed: Option<String> = None;
    let mut budget = REPARSE_BUDGET;
    let mut last: Option<Pos> = None;
    // Spaces added at the start of each re-indented line (1-based line → count), so that
    // positions found in the re-indented text are reported in the user's file.
    let mut shifts: HashMap<usize, usize> = HashMap::new();
    loop {
        let current = fixed.as_deref().unwrap_or(text);
        match Builder::default().run(current) {
            // Each retry must move past the previous scalar, within the budget.
            Err(e) if budget >= current.len() && last.is_none_or(|p| e.pos > p) => {
                budget -= current.len();
                last = Some(e.pos);
                let next = if e.message == QUOTED_INDENT {
                    reindent_quoted(current, e.pos).map(|(next, pad, lines)| {
                        for line in lines {
                            *shifts.entry(line).or_default() += pad;
                        }
                        next
                    })
                } else if e.message == INDENTING_TAB && crate::taxonomy::lint::pyyaml_scan_error(text).is_none() {
                    // PyYAML takes a tab in the leading whitespace of a quoted scalar's
                    // continuation line as folded-away whitespace; so does a space.
                    replace_tab(current, e.pos)
                } else {
                    None
                };
                match next {
                    Some(next) => fixed = Some(next),
                    None => return Err(LoadError { pos: unshift(&shifts, e.pos), ..e }),
                }
            }
            Err(e) => return Err(LoadError { pos: unshift(&shifts, e.pos), ..e }),
            Ok(mut doc) => {
                if !shifts.is_empty() {
                    for node in doc.nodes.values_mut() {
                        node.pos = unshift(&shifts, node.pos);
                        node.key_pos = node.key_pos.map(|p| unshift(&shifts, p));
                    }
                    for dup in &mut doc.duplicates {
                        dup.pos = unshift(&shifts, dup.pos);
                        dup.first = unshift(&shifts, dup.first);
                    }
                }
                return Ok(doc);
            }
        }
    }
}

/// `pos` in the re-indented text, as a position in the original: the added spaces taken off.
fn unshift(shifts: &HashMap<usize, usize>, pos: Pos) -> Pos {
    match shifts.get(&pos.line) {
        Some(&pad) => Pos::new(pos.line, pos.column.saturating_sub(pad).max(1)),
        None => pos,
    }
}

/// Bytes the quoted-scalar re-indentation may re-parse in all (8 MiB: hundreds of retries for a
/// real leaf, a handful for a huge one).
const REPARSE_BUDGET: usize = 8 * 1024 * 1024;

const QUOTED_INDENT: &str = "invalid indentation in quoted scalar";
const INDENTING_TAB: &str = "a tab is used for indentation; YAML indents with spaces only";

/// `text` with the tab at `at` (1-based line and column) replaced by a space.
fn replace_tab(text: &str, at: Pos) -> Option<String> {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let line = lines.get_mut(at.line.checked_sub(1)?)?;
    let (i, c) = line.char_indices().nth(at.column.checked_sub(1)?)?;
    if c != '\t' {
        return None;
    }
    line.replace_range(i..i + 1, " ");
    Some(lines.join("\n"))
}

/// Indent every continuation line of the quoted scalar that starts at `start` (1-based line and
/// column of its opening quote) past the quote's column. Returns the new text, the number of
/// spaces added and the (1-based) lines they were added to.
fn reindent_quoted(text: &str, start: Pos) -> Option<(String, usize, Vec<usize>)> {
    let lines: Vec<&str> = text.split('\n').collect();
    let first = *lines.get(start.line.checked_sub(1)?)?;
    let quote_at = first.char_indices().nth(start.column.checked_sub(1)?).map(|(i, _)| i)?;
    let quote = first[quote_at..].chars().next()?;
    if quote != '\'' && quote != '"' {
        return None;
    }
    let pad = " ".repeat(start.column);
    let mut out: Vec<String> = lines[..start.line].iter().map(|l| l.to_string()).collect();
    // Find where the scalar closes: '' escapes a single quote, \ escapes in double quotes.
    let mut open = !closes(&first[quote_at + 1..], quote);
    let mut padded = Vec::new();
    for (i, line) in lines[start.line..].iter().enumerate() {
        if open && !line.trim().is_empty() {
            out.push(format!("{pad}{line}"));
            padded.push(start.line + i + 1);
        } else {
            out.push(line.to_string());
        }
        if open && closes(line, quote) {
            open = false;
        }
    }
    Some((out.join("\n"), start.column, padded))
}

/// Whether `segment` (inside a quoted scalar) contains its closing quote.
fn closes(segment: &str, quote: char) -> bool {
    let mut chars = segment.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            ('"', '\\') => {
                chars.next();
            }
            ('\'', '\'') if chars.peek() == Some(&'\'') => {
                chars.next();
            }
            (q, c) if q == c => return true,
            _ => {}
        }
    }
    false
}

/// PyYAML refuses control characters and a few others anywhere in the stream.
fn check_printable(text: &str) -> Option<LoadError> {
    let mut line = 1;
    let mut col = 1;
    for c in text.chars() {
        let ok = matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{7E}' | '\u{85}' | '\u{A0}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..);
        if !ok {
            return Some(LoadError {
                pos: Pos::new(line, col),
                code: crate::taxonomy::diagnostic::codes::YAML_ENCODING,
                message: format!(
                    "unacceptable character #x{:04x}: control characters are not allowed in YAML; is this a text file?",
                    c as u32
                ),
            });
        }
        if c == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    None
}

fn pos_of(span: &Span) -> Pos {
    Pos::new(span.start.line(), span.start.col() + 1)
}

/// A container being filled.
enum Frame {
    Seq { ptr: String, items: Vec<Value>, anchor: usize, nodes: usize },
    Map { ptr: String, map: Map<String, Value>, key: Option<(String, Pos)>, keys: HashMap<String, Pos>, anchor: usize, nodes: usize },
}

#[derive(Default)]
struct Builder<'t> {
    /// The source, by line, for positions the parser does not give (block scalar indicators).
    lines: Vec<&'t str>,
    stack: Vec<Frame>,
    doc: Document,
    /// Anchored values with their node counts.
    anchors: HashMap<usize, (Value, NodeKind, usize)>,
    total_nodes: usize,
    documents: usize,
}

impl<'t> Builder<'t> {
    fn run(mut self, text: &'t str) -> Result<Document, LoadError> {
        self.lines = text.split('\n').collect();
        let mut parser = Parser::new_from_str(text);
        while let Some(next) = parser.next_event() {
            let (event, span) = next.map_err(|e| {
                let pos = Pos::new(e.marker().line(), e.marker().col() + 1);
                // The scanner has its own nesting limit for flow collections.
                if e.info() == "recursion limit exceeded" {
                    return Self::err(
                        pos,
                        crate::taxonomy::diagnostic::codes::YAML_TOO_DEEP,
                        format!("nesting too deep; a qna.yaml needs about 4 levels (limit {MAX_DEPTH})"),
                    );
                }
                if e.info().contains("tab") {
                    if let Some(tab) = self.indenting_tab(pos.line) {
                        return Self::err(tab, crate::taxonomy::diagnostic::codes::YAML_SYNTAX, INDENTING_TAB);
                    }
                }
                Self::err(pos, crate::taxonomy::diagnostic::codes::YAML_SYNTAX, e.info().to_string())
            })?;
            self.event(event, span)?;
        }
        Ok(self.doc)
    }

    /// The first tab in the leading whitespace of a line at or after `from` (1-based), near it.
    fn indenting_tab(&self, from: usize) -> Option<Pos> {
        let start = from.saturating_sub(1);
        self.lines.iter().enumerate().skip(start).take(3).find_map(|(i, line)| {
            let lead: String = line.chars().take_while(|c| *c == ' ' || *c == '\t').collect();
            lead.find('\t').map(|col| Pos::new(i + 1, col + 1))
        })
    }

    /// PyYAML places a block scalar (`|`, `>`) at its indicator; the parser gives the first
    /// content line. Search back from there for the indicator.
    fn block_indicator(&self, content: Pos) -> Pos {
        let mut line = content.line;
        let mut upto = content.column.saturating_sub(1);
        while line >= 1 {
            let Some(text) = self.lines.get(line - 1) else { break };
            let chars: Vec<char> = text.chars().take(upto).collect();
            if let Some(i) = chars.iter().rposition(|c| *c == '|' || *c == '>') {
                return Pos::new(line, i + 1);
            }
            line -= 1;
            upto = usize::MAX;
        }
        content
    }

    fn err(pos: Pos, code: &'static str, message: impl Into<String>) -> LoadError {
        LoadError { pos, code, message: message.into() }
    }

    /// The pointer of the node that starts now, and its key position if it is a mapping value.
    fn child_ptr(&self, pos: Pos) -> Result<(String, Option<Pos>), LoadError> {
        match self.stack.last() {
            None => Ok((String::new(), None)),
            Some(Frame::Seq { ptr, items, .. }) => Ok((format!("{ptr}/{}", items.len()), None)),
            Some(Frame::Map { ptr, key: Some((k, kpos)), .. }) => Ok((format!("{ptr}/{}", escape_pointer(k)), Some(*kpos))),
            Some(Frame::Map { key: None, .. }) => Err(Self::err(
                pos,
                crate::taxonomy::diagnostic::codes::YAML_SYNTAX,
                "a list or mapping used as a mapping key is not supported; keys must be plain text",
            )),
        }
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), LoadError> {
        use crate::taxonomy::diagnostic::codes::*;
        let pos = pos_of(&span);
        match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => Ok(()),
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(Self::err(
                        pos,
                        YAML_SYNTAX,
                        "expected a single document in the stream, but found another document; remove the extra `---`",
                    ));
                }
                Ok(())
            }
            Event::Alias(id) => {
                let Some((value, kind, count)) = self.anchors.get(&id).cloned() else {
                    return Err(Self::err(pos, YAML_SYNTAX, "alias refers to an unknown anchor"));
                };
                if self.at_key_position() {
                    let key = scalar_key_text(&value);
                    return self.push_key(key, pos);
                }
                let (ptr, key_pos) = self.child_ptr(pos)?;
                self.doc.nodes.insert(ptr, NodeInfo { pos, key_pos, kind });
                self.add_value(value, count, pos)
            }
            Event::Scalar(text, style, anchor, tag) => {
                let pos = if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded) { self.block_indicator(pos) } else { pos };
                let (value, kind) = resolve_scalar(&text, style, tag.as_deref()).map_err(|m| Self::err(pos, YAML_SYNTAX, m))?;
                if anchor != 0 {
                    self.anchors.insert(anchor, (value.clone(), kind, 1));
                }
                if self.at_key_position() {
                    return self.push_key(text.into_owned(), pos);
                }
                let (ptr, key_pos) = self.child_ptr(pos)?;
                self.doc.nodes.insert(ptr, NodeInfo { pos, key_pos, kind });
                self.add_value(value, 1, pos)
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag)
                if tag.as_deref().is_some_and(|t| !is_container_tag(t)) =>
            {
                let _ = anchor;
                Err(Self::err(
                    pos,
                    YAML_SYNTAX,
                    format!("unsupported tag `{}` on a collection", tag.map(|t| t.to_string()).unwrap_or_default()),
                ))
            }
            Event::SequenceStart(anchor, _) => {
                let (ptr, key_pos) = self.child_ptr(pos)?;
                self.check_depth(pos)?;
                self.doc.nodes.insert(ptr.clone(), NodeInfo { pos, key_pos, kind: NodeKind::Seq });
                self.stack.push(Frame::Seq { ptr, items: Vec::new(), anchor, nodes: 1 });
                Ok(())
            }
            Event::MappingStart(anchor, _) => {
                let (ptr, key_pos) = self.child_ptr(pos)?;
                self.check_depth(pos)?;
                self.doc.nodes.insert(ptr.clone(), NodeInfo { pos, key_pos, kind: NodeKind::Map });
                self.stack.push(Frame::Map { ptr, map: Map::new(), key: None, keys: HashMap::new(), anchor, nodes: 1 });
                Ok(())
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor, nodes, kind) = match self.stack.pop() {
                    Some(Frame::Seq { items, anchor, nodes, .. }) => (Value::Array(items), anchor, nodes, NodeKind::Seq),
                    Some(Frame::Map { map, anchor, nodes, .. }) => (Value::Object(map), anchor, nodes, NodeKind::Map),
                    None => return Err(Self::err(pos, YAML_SYNTAX, "unbalanced end of collection")),
                };
                if anchor != 0 {
                    self.anchors.insert(anchor, (value.clone(), kind, nodes));
                }
                // The container's own nodes were counted as they arrived.
                self.attach(value, nodes);
                Ok(())
            }
        }
    }

    fn at_key_position(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    fn push_key(&mut self, key: String, pos: Pos) -> Result<(), LoadError> {
        if let Some(Frame::Map { ptr, key: slot, keys, .. }) = self.stack.last_mut() {
            if let Some(first) = keys.get(&key) {
                if key != "<<" {
                    self.doc.duplicates.push(DuplicateKey { key: key.clone(), mapping: ptr.clone(), pos, first: *first });
                }
            } else {
                keys.insert(key.clone(), pos);
            }
            *slot = Some((key, pos));
        }
        Ok(())
    }

    fn check_depth(&self, pos: Pos) -> Result<(), LoadError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(Self::err(
                pos,
                crate::taxonomy::diagnostic::codes::YAML_TOO_DEEP,
                format!("nesting deeper than {MAX_DEPTH} levels; a qna.yaml needs about 4"),
            ));
        }
        Ok(())
    }

    /// A finished scalar or alias value: count it, then attach it to its parent.
    fn add_value(&mut self, value: Value, nodes: usize, pos: Pos) -> Result<(), LoadError> {
        self.total_nodes = self.total_nodes.saturating_add(nodes);
        if self.total_nodes > MAX_NODES {
            return Err(Self::err(
                pos,
                crate::taxonomy::diagnostic::codes::YAML_TOO_LARGE,
                format!("the document expands to more than {MAX_NODES} nodes (aliases included)"),
            ));
        }
        self.attach(value, nodes);
        Ok(())
    }

    fn attach(&mut self, value: Value, nodes: usize) {
        match self.stack.last_mut() {
            None => self.doc.value = Some(value),
            Some(Frame::Seq { items, nodes: n, .. }) => {
                items.push(value);
                *n += nodes;
            }
            Some(Frame::Map { map, key, nodes: n, .. }) => {
                *n += nodes;
                if let Some((k, _)) = key.take() {
                    if k == "<<" {
                        merge_into(map, value);
                    } else {
                        map.insert(k, value);
                    }
                }
            }
        }
    }
}

/// PyYAML's merge key: the merged mapping's keys come in unless already present.
fn merge_into(map: &mut Map<String, Value>, value: Value) {
    let sources = match value {
        Value::Object(m) => vec![m],
        Value::Array(items) => items.into_iter().filter_map(|v| if let Value::Object(m) = v { Some(m) } else { None }).collect(),
        other => {
            map.insert("<<".to_string(), other);
            return;
        }
    };
    for source in sources {
        for (k, v) in source {
            map.entry(k).or_insert(v);
        }
    }
}

fn scalar_key_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn is_container_tag(tag: &Tag) -> bool {
    tag.is_yaml_core_schema() && matches!(tag.suffix.as_str(), "seq" | "map" | "omap" | "set")
}

struct Resolvers {
    bool_: Regex,
    int: Regex,
    float: Regex,
    null: Regex,
    timestamp: Regex,
}

/// The implicit resolvers of PyYAML's SafeLoader (YAML 1.1).
fn resolvers() -> &'static Resolvers {
    static R: OnceLock<Resolvers> = OnceLock::new();
    R.get_or_init(|| {
        let re = |s: &str| Regex::new(s).expect("invariant: the YAML 1.1 resolver patterns are valid");
        Resolvers {
            bool_: re(r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$"),
            int: re(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$"),
            float: re(r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
            null: re(r"^(?:~|null|Null|NULL|)$"),
            timestamp: re(r"^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$"),
        }
    })
}

/// Resolve a scalar the way PyYAML's SafeLoader does.
fn resolve_scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<(Value, NodeKind), String> {
    let str_value = || (Value::String(text.to_string()), NodeKind::Str);
    if let Some(tag) = tag {
        if !tag.is_yaml_core_schema() {
            if tag.handle == "!" && tag.suffix.is_empty() {
                return Ok(str_value());
            }
            return Err(format!("unsupported tag `{tag}`; the reference loader (PyYAML safe_load) cannot construct it"));
        }
        return match tag.suffix.as_str() {
            "str" | "binary" => Ok(str_value()),
            "null" => Ok((Value::Null, NodeKind::Null)),
            "bool" => parse_bool(text).map(|b| (Value::Bool(b), NodeKind::Bool)).ok_or_else(|| format!("`{text}` is not a boolean")),
            "int" => parse_int(text).map(|v| (v, NodeKind::Int)).ok_or_else(|| format!("`{text}` is not an integer")),
            "float" => parse_float(text).map(|v| (v, NodeKind::Float)).ok_or_else(|| format!("`{text}` is not a number")),
            "timestamp" => Ok(timestamp(text)),
            other => Err(format!("unsupported tag `!!{other}` on a scalar")),
        };
    }
    if style != ScalarStyle::Plain {
        return Ok(str_value());
    }
    let r = resolvers();
    if r.null.is_match(text) {
        Ok((Value::Null, NodeKind::Null))
    } else if r.bool_.is_match(text) {
        Ok((Value::Bool(parse_bool(text).unwrap_or(false)), NodeKind::Bool))
    } else if r.int.is_match(text) {
        Ok(parse_int(text).map(|v| (v, NodeKind::Int)).unwrap_or_else(str_value))
    } else if r.float.is_match(text) {
        Ok(parse_float(text).map(|v| (v, NodeKind::Float)).unwrap_or_else(str_value))
    } else if r.timestamp.is_match(text) {
        Ok(timestamp(text))
    } else {
        Ok(str_value())
    }
}

fn timestamp(text: &str) -> (Value, NodeKind) {
    let mut m = Map::new();
    m.insert("$timestamp".to_string(), Value::String(text.to_string()));
    (Value::Object(m), NodeKind::Timestamp)
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" => Some(true),
        "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// YAML 1.1 integers: sign, `_` separators, `0b`, `0x`, leading-zero octal, base 60.
fn parse_int(text: &str) -> Option<Value> {
    let cleaned: String = text.chars().filter(|&c| c != '_').collect();
    let (neg, body) = match cleaned.strip_prefix('-') {
        Some(rest) => (true, rest.to_string()),
        None => (false, cleaned.trim_start_matches('+').to_string()),
    };
    let magnitude: Option<i128> = if body == "0" {
        Some(0)
    } else if let Some(b) = body.strip_prefix("0b") {
        i128::from_str_radix(b, 2).ok()
    } else if let Some(h) = body.strip_prefix("0x") {
        i128::from_str_radix(h, 16).ok()
    } else if body.contains(':') {
        body.split(':').try_fold(0i128, |acc, part| Some(acc.checked_mul(60)? + part.parse::<i128>().ok()?))
    } else if let Some(o) = body.strip_prefix('0') {
        i128::from_str_radix(o, 8).ok()
    } else {
        body.parse::<i128>().ok()
    };
    let v = if neg { -magnitude? } else { magnitude? };
    match i64::try_from(v) {
        Ok(i) => Some(Value::Number(Number::from(i))),
        Err(_) => Number::from_f64(v as f64).map(Value::Number),
    }
}

fn parse_float(text: &str) -> Option<Value> {
    let cleaned: String = text.chars().filter(|&c| c != '_').collect();
    let lower = cleaned.to_ascii_lowercase();
    let v: f64 = if lower.ends_with(".inf") {
        if lower.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        }
    } else if lower == ".nan" {
        f64::NAN
    } else if cleaned.contains(':') {
        let (neg, body) = match cleaned.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, cleaned.trim_start_matches('+')),
        };
        let mut acc = 0.0;
        for part in body.split(':') {
            acc = acc * 60.0 + part.parse::<f64>().ok()?;
        }
        if neg {
            -acc
        } else {
            acc
        }
    } else {
        cleaned.parse::<f64>().ok()?
    };
    // JSON has no infinities or NaN; the schema never asks for a number, so a string stand-in
    // keeps the type error a type error.
    Some(Number::from_f64(v).map(Value::Number).unwrap_or_else(|| Value::String(text.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_1_1_scalars_resolve_like_pyyaml() {
        let doc = load("a: yes\nb: 010\nc: 0x1F\nd: 1_000\ne: 2024-01-01\nf: ~\ng: '3'\nh: 1.5\ni: 09\nj: 1:30\n").unwrap();
        let v = doc.value.unwrap();
        assert_eq!(v["a"], json!(true));
        assert_eq!(v["b"], json!(8));
        assert_eq!(v["c"], json!(31));
        assert_eq!(v["d"], json!(1000));
        assert_eq!(v["e"], json!({"$timestamp": "2024-01-01"}));
        assert_eq!(v["f"], Value::Null);
        assert_eq!(v["g"], json!("3"));
        assert_eq!(v["h"], json!(1.5));
        assert_eq!(v["i"], json!("09"));
        assert_eq!(v["j"], json!(90));
    }

    #[test]
    fn positions_point_at_nodes() {
        let doc = load("version: 3\nseed_examples:\n  - question: q\n    answer: a\n").unwrap();
        let info = doc.nodes["/seed_examples/0/answer"];
        assert_eq!(info.pos, Pos::new(4, 13));
        assert_eq!(info.key_pos, Some(Pos::new(4, 5)));
        assert_eq!(doc.nodes["/seed_examples"].kind, NodeKind::Seq);
    }

    #[test]
    fn block_scalars_sit_at_their_indicator() {
        let doc = load("a:\n  b: |\n    text\n    more\n  c: >-\n\n    folded\n").unwrap();
        assert_eq!(doc.nodes["/a/b"].pos, Pos::new(2, 6));
        assert_eq!(doc.nodes["/a/c"].pos, Pos::new(5, 6));
    }

    #[test]
    fn tabs_in_indentation_point_at_the_tab() {
        let err = load("a:\n  - b: 1\n\tc: 2\n").unwrap_err();
        assert_eq!(err.pos, Pos::new(3, 1), "{err:?}");
    }

    #[test]
    fn duplicate_keys_are_reported_and_last_wins() {
        let doc = load("a: 1\nb: 2\na: 3\n").unwrap();
        assert_eq!(doc.value.unwrap()["a"], json!(3));
        assert_eq!(doc.duplicates.len(), 1);
        assert_eq!(doc.duplicates[0].pos, Pos::new(3, 1));
        assert_eq!(doc.duplicates[0].first, Pos::new(1, 1));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let flow = "[".repeat(10_000) + &"]".repeat(10_000);
        assert_eq!(load(&flow).unwrap_err().code, "yaml.too-deep");
        let block: String = (0..10_000).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect();
        assert_eq!(load(&block).unwrap_err().code, "yaml.too-deep");
    }

    #[test]
    fn alias_bombs_are_bounded() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            text += &format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            );
        }
        assert_eq!(load(&text).unwrap_err().code, "yaml.too-large");
    }

    #[test]
    fn syntax_errors_carry_positions() {
        let err = load("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert_eq!(err.code, "yaml.syntax");
        assert!(err.pos.line >= 2, "{err:?}");
    }

    #[test]
    fn control_characters_are_refused() {
        let err = load("a: \u{1}\n").unwrap_err();
        assert_eq!(err.code, "yaml.encoding");
        assert_eq!(err.pos, Pos::new(1, 4));
    }

    #[test]
    fn under_indented_quoted_continuations_are_accepted_like_pyyaml() {
        let doc = load("- q: 'How many colors: four,\n alpha, pink.\n\n    '\n  a: 'it''s\nok'\n").unwrap();
        let v = doc.value.unwrap();
        assert_eq!(v[0]["q"], serde_json::json!("How many colors: four, alpha, pink.\n"));
        assert_eq!(v[0]["a"], serde_json::json!("it's ok"));
    }

    #[test]
    fn a_tab_leading_a_quoted_continuation_line_is_whitespace_like_in_pyyaml() {
        let doc = load("a: 'one\n\n\t    two'\n").unwrap();
        assert_eq!(doc.value.unwrap()["a"], serde_json::json!("one\ntwo"));
        assert_eq!(load("a:\n\tb: 1\n").unwrap_err().message, INDENTING_TAB);
    }

    #[test]
    fn positions_after_a_reindented_quoted_scalar_are_in_the_users_file() {
        // The continuation line is under-indented (accepted like PyYAML by re-indenting it), and
        // trailing content follows the closing quote: the error points at it in the original.
        let err = load("a: 'one\ntwo' x\n").unwrap_err();
        assert_eq!(err.code, "yaml.syntax");
        assert_eq!(err.pos.line, 2, "{err:?}");
        assert!(err.pos.column <= "two' x".len() + 1, "{err:?}");
        let doc = load("a: 'one\ntwo'\nb: 1\nc: ['x\ny', 2]\n").unwrap();
        assert_eq!(doc.nodes["/c/1"].pos, Pos::new(5, 5));
    }

    #[test]
    fn a_second_document_is_refused() {
        assert_eq!(load("a: 1\n---\nb: 2\n").unwrap_err().code, "yaml.syntax");
    }

    #[test]
    fn empty_stream_has_no_value() {
        assert!(load("").unwrap().value.is_none());
        assert!(load("# just a comment\n").unwrap().value.is_none());
    }
}
