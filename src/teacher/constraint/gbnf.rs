//! Regex → GBNF, the grammar format of llama.cpp's server (`grammar` in a completion request).
//!
//! The regex is parsed with `regex-syntax` (the parser of the `regex` crate) and its HIR written
//! out rule for rule: literals as quoted strings, classes as `[…]` ranges with `\u`/`\U`
//! escapes, repetitions as `*`, `+`, `?` and `{m,n}`. The grammar is one `root` rule, and
//! llama.cpp matches it against the whole completion, as the embedded automaton does.

use super::ConstraintError;
use regex_syntax::hir::{Class, Hir, HirKind, Look};
use std::fmt::Write;

/// The GBNF grammar of `regex` (whole-completion match).
pub fn from_regex(regex: &str) -> Result<String, ConstraintError> {
    let hir = regex_syntax::ParserBuilder::new()
        .dot_matches_new_line(true)
        .build()
        .parse(regex)
        .map_err(|e| ConstraintError::Invalid(format!("bad regex: {e}")))?;
    let mut out = String::from("root ::= ");
    write(&hir, &mut out)?;
    out.push('\n');
    Ok(out)
}

fn write(hir: &Hir, out: &mut String) -> Result<(), ConstraintError> {
    match hir.kind() {
        HirKind::Empty => out.push_str("\"\""),
        HirKind::Literal(lit) => {
            let text = std::str::from_utf8(&lit.0).map_err(|_| ConstraintError::Invalid("a literal that is not UTF-8".into()))?;
            out.push('"');
            for c in text.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if c.is_ascii_graphic() || c == ' ' => out.push(c),
                    c => escape(c, out),
                }
            }
            out.push('"');
        }
        HirKind::Class(Class::Unicode(class)) => {
            out.push('[');
            for r in class.ranges() {
                escape(r.start(), out);
                if r.end() != r.start() {
                    out.push('-');
                    escape(r.end(), out);
                }
            }
            out.push(']');
        }
        HirKind::Class(Class::Bytes(class)) => {
            out.push('[');
            for r in class.ranges() {
                if r.end() >= 0x80 {
                    return Err(ConstraintError::Invalid("a byte class beyond ASCII has no GBNF form".into()));
                }
                escape(char::from(r.start()), out);
                if r.end() != r.start() {
                    out.push('-');
                    escape(char::from(r.end()), out);
                }
            }
            out.push(']');
        }
        // The grammar spans the whole completion already.
        HirKind::Look(Look::Start | Look::End) => out.push_str("\"\""),
        HirKind::Look(other) => return Err(ConstraintError::Invalid(format!("{other:?} has no GBNF form"))),
        HirKind::Repetition(rep) => {
            out.push('(');
            write(&rep.sub, out)?;
            out.push(')');
            match (rep.min, rep.max) {
                (0, None) => out.push('*'),
                (1, None) => out.push('+'),
                (0, Some(1)) => out.push('?'),
                (m, None) => {
                    let _ = write!(out, "{{{m},}}");
                }
                (m, Some(n)) if m == n => {
                    let _ = write!(out, "{{{m}}}");
                }
                (m, Some(n)) => {
                    let _ = write!(out, "{{{m},{n}}}");
                }
            }
        }
        HirKind::Capture(cap) => write(&cap.sub, out)?,
        HirKind::Concat(parts) => {
            out.push('(');
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                write(p, out)?;
            }
            out.push(')');
        }
        HirKind::Alternation(parts) => {
            out.push('(');
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    out.push_str(" | ");
                }
                write(p, out)?;
            }
            out.push(')');
        }
    }
    Ok(())
}

/// `c` as a GBNF escape, valid inside quotes and classes.
fn escape(c: char, out: &mut String) {
    let _ = match c as u32 {
        n if n <= 0xFFFF => write!(out, "\\u{n:04X}"),
        n => write!(out, "\\U{n:08X}"),
    };
}
