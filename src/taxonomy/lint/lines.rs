//! Public entry point, the finding type, and the line-based rules
//! (trailing-spaces, new-lines, new-line-at-end-of-file, empty-lines).

/// One style problem, as yamllint would report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintFinding {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (yamllint's column convention).
    pub column: usize,
    /// yamllint rule name, e.g. "trailing-spaces", "indentation".
    pub rule: &'static str,
    /// Message text, worded like yamllint's (without the "(rule)" suffix).
    pub message: String,
}

/// Lint `text` with the relaxed profile minus line-length. Never panics, for any input.
pub fn lint(text: &str) -> Vec<LintFinding> {
    lint_and_scan(text).0
}

/// [`lint`], plus where PyYAML's scanner would stop with an error (1-based line and column), in
/// one pass over the tokens. See [`super::pyyaml_scan_error`].
pub fn lint_and_scan(text: &str) -> (Vec<LintFinding>, Option<(usize, usize)>) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    line_rules(text, &mut out);
    let failed = super::spacing::token_rules(text, &mut out).map(|m| (m.line + 1, m.col + 1));
    out.sort_by(|a, b| (a.line, a.column, a.rule, &a.message).cmp(&(b.line, b.column, b.rule, &b.message)));
    (out, failed)
}

pub(super) fn push(out: &mut Vec<LintFinding>, line: usize, column: usize, rule: &'static str, message: String) {
    out.push(LintFinding { line, column: column.max(1), rule, message });
}

// ---------------------------------------------------------------- line rules

fn line_rules(text: &str, out: &mut Vec<LintFinding>) {
    if text.is_empty() {
        return;
    }
    let ends_nl = text.ends_with('\n');
    let body = if ends_nl { &text[..text.len() - 1] } else { text };
    let nlines = body.bytes().filter(|&b| b == b'\n').count() + 1;
    let (mut run, mut run_start) = (0usize, 0usize);
    let mut last_len = 0;
    let flush = |out: &mut Vec<LintFinding>, run: usize, start: usize, at_end: bool| {
        let max = if start == 1 || at_end { 0 } else { 2 };
        if run > max {
            let msg = format!("too many blank lines ({} > {})", run, max);
            push(out, start + run - 1, 1, "empty-lines", msg);
        }
    };
    for (i, raw) in body.split('\n').enumerate() {
        let ln = i + 1;
        let terminated = ends_nl || ln < nlines;
        let content = if terminated { raw.strip_suffix('\r').unwrap_or(raw) } else { raw };
        if ln == 1 && (ends_nl || nlines > 1) && raw.ends_with('\r') {
            let col = content.chars().count() + 1;
            push(out, 1, col, "new-lines", "wrong new line character: expected \\n".into());
        }
        let trimmed = content.trim_end_matches([' ', '\t']);
        if trimmed.len() < content.len() {
            push(out, ln, trimmed.chars().count() + 1, "trailing-spaces", "trailing spaces".into());
        }
        if content.is_empty() {
            if run == 0 {
                run_start = ln;
            }
            run += 1;
        } else {
            if run > 0 {
                flush(out, run, run_start, false);
            }
            run = 0;
        }
        last_len = raw.chars().count();
    }
    if run > 0 && nlines > 1 {
        flush(out, run, run_start, true);
    }
    if !ends_nl {
        push(out, nlines, last_len + 1, "new-line-at-end-of-file", "no new line character at the end of file".into());
    }
}
