//! Style checks reproducing yamllint's `relaxed` profile with `line-length`
//! disabled, i.e. the configuration `{extends: relaxed, rules: {line-length:
//! disable}}` that InstructLab runs (in strict mode, so every warning counts)
//! on `qna.yaml` files of schema version 2 or later.
//!
//! Rules reproduced, with the settings `relaxed` (which extends `default`)
//! gives them: `trailing-spaces`; `new-line-at-end-of-file`; `new-lines`
//! (type unix, only the first line's ending is inspected, as yamllint does);
//! `empty-lines` (max 2, max-start 0, max-end 0); `colons` (max 0 spaces
//! before, 1 after); `commas` (max 0 before, 1 after, min 1 after); `hyphens`
//! (max 1 after); `braces` and `brackets` (max 1 space inside, also for empty
//! ones); `indentation` (spaces: consistent, indent-sequences: consistent,
//! check-multi-line-strings: false). Syntax errors, `key-duplicates` and
//! `anchors` are left to the YAML loader; every rule `relaxed` disables is
//! absent. The implementation was written from the documented behaviour and
//! black-box comparison with yamllint 1.38, not from its source.
//!
//! Structure: line rules work on the raw text; the token rules run over a
//! small YAML 1.1 scanner (same token model and positions as PyYAML's, which
//! yamllint uses) streamed through a four-token window, so memory stays
//! bounded by nesting depth and nothing recurses. A leading BOM is dropped.
//! When the scanner hits an error it stops, keeping the findings so far.
//!
//! Known differences: a run of blank lines that mixes CRLF and LF line
//! endings (e.g. `"a\n\n\r\n\n\n\nb\n"`) is counted as one run here, while
//! yamllint splits and counts such runs differently (pure LF or pure CRLF
//! files agree); spaces right after a lone CR (`"\r  \n"`) are reported as
//! trailing spaces here but not by yamllint; `# yamllint disable...` directive comments are not
//! honoured; escape sequences inside double-quoted scalars and tag syntax are
//! not validated (yamllint reports those as syntax errors); after a syntax
//! error yamllint drops some cosmetic findings in ways not reproduced here.

mod indentation;
mod lines;
mod scanner;
mod spacing;
#[cfg(test)]
mod tests;

// The public interface lives in `lines.rs` next to the line-based rules.
pub use lines::{lint, lint_and_scan, LintFinding};

/// Where PyYAML's scanner (which the reference loads leaves with) would stop with an error, as
/// 1-based line and column; `None` when it scans to the end. It is stricter than YAML 1.2 in a
/// few places a leaf can hit: a tab inside unquoted text, an anchor name with punctuation.
pub fn pyyaml_scan_error(text: &str) -> Option<(usize, usize)> {
    lint_and_scan(text).1
}
