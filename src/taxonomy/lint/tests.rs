//! Unit tests for each rule and for hostile inputs.
use super::*;

fn rules(text: &str) -> Vec<(usize, usize, &'static str)> {
    lint(text).into_iter().map(|f| (f.line, f.column, f.rule)).collect()
}

#[test]
fn clean_qna_has_no_findings() {
    let t = "version: 2\ncreated_by: me\nseed_examples:\n  - question: |\n      Why?\n\n      Because.\n    answer: >-\n      Yes\ndocument:\n  repo: r\n  patterns:\n    - '*.md'\n";
    assert_eq!(lint(t), vec![]);
}

#[test]
fn trailing_spaces() {
    assert_eq!(rules("a: 1  \n# c\t\nb: |\n  x \n"), vec![(1, 5, "trailing-spaces"), (2, 4, "trailing-spaces"), (4, 4, "trailing-spaces")]);
}

#[test]
fn final_newline_and_line_endings() {
    let f = lint("a: 1\r\nb: 2");
    assert_eq!(f[0], LintFinding { line: 1, column: 5, rule: "new-lines", message: "wrong new line character: expected \\n".into() });
    assert_eq!((f[1].line, f[1].column, f[1].rule), (2, 5, "new-line-at-end-of-file"));
    assert_eq!(rules("a: 1\nb: 2\r\n"), vec![]);
    assert_eq!(rules(""), vec![]);
}

#[test]
fn empty_lines() {
    assert_eq!(lint("a: 1\n\n\n\nb: 2\n")[0].message, "too many blank lines (3 > 2)");
    assert_eq!(rules("a: 1\n\n\nb: 2\n"), vec![]);
    assert_eq!(rules("\n\na: 1\n"), vec![(2, 1, "empty-lines")]);
    assert_eq!(rules("a: 1\n\n"), vec![(2, 1, "empty-lines")]);
    assert_eq!(rules("\n"), vec![]);
    assert_eq!(rules("a: 1\n  \nb: 1\n"), vec![(2, 1, "trailing-spaces")]);
}

#[test]
fn colons() {
    assert_eq!(rules("key:  value\nk : v\n"), vec![(1, 6, "colons"), (2, 2, "colons")]);
    assert_eq!(lint("? a\n?  b\n")[0].message, "too many spaces after question mark");
    assert_eq!(rules("a: &x 1\nb: {*x : 1}\n"), vec![]);
}

#[test]
fn commas() {
    let f = lint("a: [1,2 ,3,   4]\n");
    let got: Vec<_> = f.iter().map(|f| (f.column, f.message.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (7, "too few spaces after comma"),
            (8, "too many spaces before comma"),
            (10, "too few spaces after comma"),
            (14, "too many spaces after comma")
        ]
    );
    assert_eq!(rules("a: [1,\n    2\n  , 3]\n")[0], (3, 2, "commas"));
}

#[test]
fn hyphens() {
    assert_eq!(rules("-  a\n- b\n-   - c\n"), vec![(1, 3, "hyphens"), (3, 4, "hyphens")]);
}

#[test]
fn braces_and_brackets() {
    assert_eq!(rules("a: {  x: 1  }\n"), vec![(1, 6, "braces"), (1, 12, "braces")]);
    assert_eq!(rules("a: [  ]\nb: { }\nc: []\n"), vec![(1, 6, "brackets")]);
    assert_eq!(lint("a: [  ]\n")[0].message, "too many spaces inside empty brackets");
}

#[test]
fn indentation() {
    let f = lint("a:\n  b: 1\nc:\n    d: 1\n");
    assert_eq!((f[0].line, f[0].column), (4, 5));
    assert_eq!(f[0].message, "wrong indentation: expected 2 but found 4");
    assert_eq!(rules("a:\n  - 1\nb:\n- 2\n"), vec![(4, 1, "indentation")]);
    assert_eq!(rules("a:\n- 1\nb:\n- 2\n"), vec![]);
    assert_eq!(rules("a: [\n  1\n  ]\n"), vec![(3, 3, "indentation")]);
    assert_eq!(rules("a: |\n      x\n  \n      y\nb: 1\n"), vec![(3, 1, "trailing-spaces")]);
}

#[test]
fn hostile_inputs_finish() {
    let deep_flow = "[".repeat(20_000) + &"]".repeat(20_000);
    let deep_block: String = (0..3_000).map(|i| format!("{}- k{}:\n", " ".repeat(i * 2), i)).collect();
    let deep_map: String = (0..3_000).map(|i| format!("{}k{}:\n", " ".repeat(i), i)).collect();
    let long_line = format!("a: {}\n", "x ".repeat(500_000));
    let junk: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let junk = String::from_utf8_lossy(&junk).into_owned();
    let mixed = "\u{feff}a:\r  b\t\r\n\0\u{85}- [ {\u{2028}: ? ' \" | > & * ! % @ `\n".repeat(2_000);
    for t in [deep_flow, deep_block, deep_map, long_line, junk, mixed, "{".repeat(50_000), "- ".repeat(50_000)] {
        let f = lint(&t);
        assert!(f.windows(2).all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column)));
    }
}
