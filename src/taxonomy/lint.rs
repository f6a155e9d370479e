//! PLACEHOLDER while the full yamllint port is written: line-based rules only.
/// One style problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintFinding {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// yamllint rule.
    pub rule: &'static str,
    /// Message.
    pub message: String,
}
/// Lint.
pub fn lint(text: &str) -> Vec<LintFinding> {
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let l = line.trim_end_matches('\r');
        let t = l.trim_end_matches([' ', '\t']);
        if t.len() != l.len() {
            out.push(LintFinding { line: i + 1, column: t.chars().count() + 1, rule: "trailing-spaces", message: "trailing spaces".into() });
        }
    }
    if !text.is_empty() && !text.ends_with('\n') {
        out.push(LintFinding { line: text.split('\n').count(), column: text.rsplit('\n').next().unwrap_or("").chars().count() + 1, rule: "new-line-at-end-of-file", message: "no new line character at the end of file".into() });
    }
    out
}
