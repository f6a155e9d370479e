//! The broken-leaf corpus: hand-made `qna.yaml` files, each with exactly one defect, and the
//! diagnostic labflow must report for it.
//!
//! # Layout
//!
//! `tests/fixtures/broken/<case>/` is a tiny taxonomy holding one leaf at a realistic path
//! (`compositional_skills/…`, `knowledge/…` or `foundational_skills/…`; the path picks the
//! schema) plus its `attribution.txt`. Each leaf is one of the valid leaves in
//! `tests/fixtures/broken/make_corpus.py` with a single defect, so the expected code and line
//! are known by construction. `tests/fixtures/broken/docs/` is a document source laid out like
//! `../shared/data/docs` (`<owner>/<repo>/<commit>/<file>`) for the cases with `"docs": true`.
//!
//! `tests/fixtures/broken/cases.json` lists the cases:
//!
//! ```json
//! {"case": "answer_is_number", "file": "compositional_skills/…/qna.yaml", "code": "schema.type",
//!  "line": 10, "column": 13, "severity": "error", "docs": false, "why": "one line"}
//! ```
//!
//! `column` is optional. `known_bug` (one line) marks a case where labflow is known to be wrong
//! today: the test prints it instead of failing, and fails once the case passes (remove the
//! marker then). `reference_differs` documents why labflow's
//! valid/invalid verdict deliberately differs from the reference validator's.
//!
//! For every case the test walks the case folder with [`labflow::taxonomy::walk`] and checks
//! that it does not panic, that the expected diagnostic (code, line, severity, and column when
//! given) is reported for that file, that an error case makes the walk report errors and a
//! warning case reports none, and that the verdict (no errors = valid) equals the one in
//! `tests/fixtures/broken/reference_verdicts.json`, recorded from the reference validator.
//! Inputs that cannot be committed (a 50 MB file, 10,000-level nesting, symlink loops, a
//! document symlink leaving its repository) are generated into a temporary folder.
//!
//! # Adding a case
//!
//! 1. Add a `case(...)` line to `make_corpus.py` (base leaf, one edit, expected code, a marker
//!    string that finds the expected line) and run `python3 tests/fixtures/broken/make_corpus.py`;
//!    or write the folder and the `cases.json` entry by hand.
//! 2. Refresh the reference verdicts (from the repo root, with the reference venv):
//!
//!    ```sh
//!    ../venv-ref/bin/python tests/reference/verdicts.py --base tests/fixtures/broken \
//!        -o tests/fixtures/broken/reference_verdicts.json \
//!        --files $(find tests/fixtures/broken -name qna.yaml | sort)
//!    ```
//! 3. `cargo test --test broken_leaves`.

use labflow::store::Location;
use labflow::taxonomy::diagnostic::codes;
use labflow::taxonomy::{walk, Diagnostic, Severity, TreeReport, WalkOptions};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Every code in `labflow::taxonomy::diagnostic::codes` (naming each keeps this list honest:
/// a code removed there stops this file from compiling).
const KNOWN_CODES: &[&str] = &[
    codes::YAML_SYNTAX,
    codes::YAML_DUPLICATE_KEY,
    codes::YAML_NOT_MAPPING,
    codes::YAML_EMPTY,
    codes::YAML_TOO_DEEP,
    codes::YAML_TOO_LARGE,
    codes::YAML_ENCODING,
    codes::FILE_MISNAMED,
    codes::FILE_UNREADABLE,
    codes::ATTRIBUTION_MISSING,
    codes::SCHEMA_REQUIRED,
    codes::SCHEMA_UNKNOWN_KEY,
    codes::SCHEMA_TYPE,
    codes::SCHEMA_MIN_ITEMS,
    codes::SCHEMA_EMPTY_STRING,
    codes::SCHEMA_DUPLICATE_ITEM,
    codes::SCHEMA_VERSION,
    codes::SCHEMA_UNSUPPORTED_VERSION,
    codes::SCHEMA_OTHER,
    codes::DOC_REPO_NOT_FOUND,
    codes::DOC_COMMIT_NOT_FOUND,
    codes::DOC_NO_MATCH,
    codes::DOC_BAD_EXTENSION,
    codes::DOC_ESCAPE,
    codes::DOC_BAD_PATTERN,
    codes::DOC_UNREADABLE,
    codes::GUIDE_SEED_WORDS,
    codes::GUIDE_CONTEXT_WORDS,
    codes::GUIDE_QA_WORDS,
];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken")
}

/// What a case expects.
#[derive(Debug, Clone)]
struct Expect {
    case: String,
    file: String,
    code: String,
    line: usize,
    column: Option<usize>,
    severity: Severity,
}

impl Expect {
    fn from_manifest(e: &Value) -> Expect {
        let s = |k: &str| e[k].as_str().unwrap_or_else(|| panic!("cases.json: `{k}` missing in {e}")).to_string();
        Expect {
            case: s("case"),
            file: s("file"),
            code: s("code"),
            line: e["line"].as_u64().unwrap_or_else(|| panic!("cases.json: `line` missing in {e}")) as usize,
            column: e.get("column").and_then(Value::as_u64).map(|c| c as usize),
            severity: match s("severity").as_str() {
                "error" => Severity::Error,
                "warning" => Severity::Warning,
                other => panic!("cases.json: severity `{other}` in {e}"),
            },
        }
    }

    fn matches(&self, d: &Diagnostic) -> bool {
        d.path == self.file
            && d.code == self.code
            && d.line == self.line
            && d.severity == self.severity
            && self.column.is_none_or(|c| c == d.column)
    }
}

/// Walk `root` (with `docs` as document source) on a task of its own, so that a panic is caught
/// and reported as a failure of this case rather than aborting the test.
async fn walk_case(root: &Path, docs: Option<&Path>) -> Result<TreeReport, String> {
    let loc = Location::open(root.to_str().expect("utf-8 path")).map_err(|e| format!("cannot open {}: {e}", root.display()))?;
    let docs = match docs {
        Some(d) => Some(Location::open(d.to_str().expect("utf-8 path")).map_err(|e| format!("cannot open {}: {e}", d.display()))?),
        None => None,
    };
    let opts = WalkOptions { docs, only: None };
    match tokio::spawn(async move { walk(&loc, &opts).await }).await {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(e)) => Err(format!("walk failed: {e}")),
        Err(e) if e.is_panic() => Err(format!("walk PANICKED: {e}")),
        Err(e) => Err(format!("walk task failed: {e}")),
    }
}

fn listing(report: &TreeReport) -> String {
    if report.diagnostics.is_empty() {
        return "    (no diagnostics)".to_string();
    }
    report.diagnostics.iter().map(|d| format!("    {d}  [{}]", d.severity)).collect::<Vec<_>>().join("\n")
}

/// Check one walk against its expectation; `Err` carries the failure text.
fn check(expect: &Expect, outcome: &Result<TreeReport, String>) -> Result<(), String> {
    let report = outcome.as_ref().map_err(|e| format!("{}: {e}", expect.case))?;
    let mut problems = Vec::new();
    if !report.diagnostics.iter().any(|d| expect.matches(d)) {
        problems.push(format!(
            "expected {}[{}] at {}:{}{}",
            expect.severity,
            expect.code,
            expect.file,
            expect.line,
            expect.column.map(|c| format!(":{c}")).unwrap_or_default()
        ));
    }
    match expect.severity {
        Severity::Error if report.errors() == 0 => problems.push("an error case, but the walk reports no errors".to_string()),
        Severity::Warning if report.errors() > 0 => {
            problems.push(format!("a warning-only case, but the walk reports {} error(s)", report.errors()))
        }
        _ => {}
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}: {}\n  labflow reported:\n{}", expect.case, problems.join("; "), listing(report)))
    }
}

fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(corpus().join("cases.json")).expect("read cases.json");
    serde_json::from_str::<Value>(&text).expect("cases.json is JSON").as_array().expect("cases.json is a list").clone()
}

#[test]
fn manifest_codes_exist() {
    let cases = manifest();
    assert!(cases.len() >= 30, "the corpus should hold at least 30 cases, found {}", cases.len());
    let mut names = std::collections::BTreeSet::new();
    for e in &cases {
        let expect = Expect::from_manifest(e);
        assert!(names.insert(expect.case.clone()), "case `{}` is listed twice", expect.case);
        assert!(
            KNOWN_CODES.contains(&expect.code.as_str()) || expect.code.starts_with("lint."),
            "case `{}` expects code `{}`, which is not in labflow::taxonomy::diagnostic::codes",
            expect.case,
            expect.code
        );
        let file = corpus().join(&expect.case).join(&expect.file);
        assert!(file.is_file(), "case `{}`: {} does not exist", expect.case, file.display());
        assert!(e.get("why").and_then(Value::as_str).is_some_and(|w| !w.is_empty()), "case `{}` has no `why`", expect.case);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_broken_leaf_gets_its_diagnostic() {
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(corpus().join("reference_verdicts.json")).expect("read reference_verdicts.json"))
            .expect("reference_verdicts.json is JSON");
    let docs = corpus().join("docs");
    let mut failures = Vec::new();
    let mut notes = Vec::new();
    let mut compared = 0;
    for e in manifest() {
        let expect = Expect::from_manifest(&e);
        let known_bug = e.get("known_bug").and_then(Value::as_str);
        let differs = e.get("reference_differs").and_then(Value::as_str);
        let with_docs = e.get("docs").and_then(Value::as_bool).unwrap_or(false);
        let outcome = walk_case(&corpus().join(&expect.case), with_docs.then_some(docs.as_path())).await;
        let mut problems = Vec::new();
        if let Err(msg) = check(&expect, &outcome) {
            problems.push(msg);
        }
        // The verdict on this file must be the reference's, unless documented otherwise.
        let key = format!("{}/{}", expect.case, expect.file);
        if let (Some(want), Ok(report)) = (reference.get(&key), &outcome) {
            compared += 1;
            let ref_valid = want["valid"].as_bool().expect("`valid` is a bool");
            let ours_valid = !report.diagnostics.iter().any(|d| d.path == expect.file && d.is_error());
            match (ref_valid == ours_valid, differs) {
                (false, None) => problems.push(format!(
                    "{}: the reference says {}, labflow says {}\n  reference: {}\n  labflow reported:\n{}",
                    expect.case,
                    if ref_valid { "valid" } else { "invalid" },
                    if ours_valid { "valid" } else { "invalid" },
                    want["messages"],
                    listing(report)
                )),
                (true, Some(why)) => {
                    problems.push(format!("{}: `reference_differs` ({why}) but the verdicts now agree; remove the marker", expect.case))
                }
                _ => {}
            }
        }
        match (problems.is_empty(), known_bug) {
            (false, None) => failures.extend(problems),
            (false, Some(bug)) => notes.push(format!("KNOWN BUG {}: {bug}\n{}", expect.case, problems.join("\n"))),
            (true, Some(bug)) => failures.push(format!("{}: marked known_bug ({bug}) but now passes; remove the marker", expect.case)),
            (true, None) => {}
        }
    }
    for n in &notes {
        eprintln!("{n}");
    }
    assert!(compared >= 30, "only {compared} cases have a reference verdict; regenerate reference_verdicts.json");
    assert!(failures.is_empty(), "{} case(s) failed:\n\n{}", failures.len(), failures.join("\n\n"));
}

// ---- generated at test time ----------------------------------------------------------------

const ATTRIBUTION: &str = "Title of work: generated by tests/broken_leaves.rs\nLicense of the work: Apache-2.0\n";

const GOOD_SKILL: &str = "version: 3
task_description: Answer with the opposite word.
created_by: labflow-tests
seed_examples:
  - question: What is the opposite of hot?
    answer: Cold.
  - question: What is the opposite of up?
    answer: Down.
  - question: What is the opposite of early?
    answer: Late.
  - question: What is the opposite of full?
    answer: Empty.
  - question: What is the opposite of open?
    answer: Closed.
";

/// Write `bytes` as the leaf `rel` (with an attribution.txt) under `root`.
fn put_leaf(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    std::fs::write(path.parent().unwrap().join("attribution.txt"), ATTRIBUTION).unwrap();
}

fn expect(case: &str, file: &str, code: &str, line: usize, severity: Severity) -> Expect {
    Expect { case: case.into(), file: file.into(), code: code.into(), line, column: None, severity }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_leaf_is_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let rel = "compositional_skills/writing/huge/qna.yaml";
    let mut text = GOOD_SKILL.replace("    answer: Closed.\n", "    answer: |\n");
    let line = format!("      {}\n", "padding ".repeat(12));
    while text.len() < 50 * 1024 * 1024 {
        text.push_str(&line);
    }
    put_leaf(dir.path(), rel, text.as_bytes());
    let outcome = walk_case(dir.path(), None).await;
    check(&expect("too_large_50mb", rel, codes::YAML_TOO_LARGE, 1, Severity::Error), &outcome).unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_levels_of_nesting_are_too_deep() {
    let dir = tempfile::tempdir().unwrap();
    let max = labflow::taxonomy::yaml::MAX_DEPTH;
    // Block style, compact: `- - - - … x`, 10,000 nested block sequences on one line (20 KB).
    let compact_rel = "compositional_skills/writing/deep_block_compact/qna.yaml";
    put_leaf(dir.path(), compact_rel, format!("version: 3\nnested:\n{}x\n", "- ".repeat(10_000)).as_bytes());
    // Block style, indented: `k0:` / ` k1:` / `  k2:` …, one space deeper per line. 10,000 such
    // levels take 50 MB of indentation (the size limit answers first; see the 50 MB test), so
    // this one stops at 1,000 levels, still far past the limit.
    let indented_rel = "compositional_skills/writing/deep_block_indented/qna.yaml";
    let indented: String = (0..1_000).map(|i| format!("  {}k{i}:\n", " ".repeat(i))).collect();
    put_leaf(dir.path(), indented_rel, format!("version: 3\nnested:\n{indented}").as_bytes());
    // Flow style: `[[[[…]]]]`.
    let flow_rel = "compositional_skills/writing/deep_flow/qna.yaml";
    put_leaf(dir.path(), flow_rel, format!("version: 3\nnested: {}{}\n", "[".repeat(10_000), "]".repeat(10_000)).as_bytes());
    let outcome = walk_case(dir.path(), None).await;
    // The top-level mapping is depth 1 and the mapping holding `k0` (line 3) depth 2, so the
    // mapping holding `k{i}` (line 3 + i) is depth i + 2: the first past the limit is on line max + 2.
    for (case, rel, line) in
        [("deep_block_compact", compact_rel, 3), ("deep_block_indented", indented_rel, max + 2), ("deep_flow", flow_rel, 2)]
    {
        check(&expect(case, rel, codes::YAML_TOO_DEEP, line, Severity::Error), &outcome).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_loop_is_reported_and_the_walk_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let good = "compositional_skills/writing/opposites/qna.yaml";
    put_leaf(dir.path(), good, GOOD_SKILL.as_bytes());
    // `loop -> .`: following it would list the same folder forever.
    std::os::unix::fs::symlink(".", dir.path().join("compositional_skills/writing/loop")).unwrap();
    let outcome = walk_case(dir.path(), None).await;
    let report = outcome.as_ref().unwrap_or_else(|e| panic!("{e}"));
    let unreadable = report.diagnostics.iter().find(|d| d.code == codes::FILE_UNREADABLE && d.is_error());
    let unreadable = unreadable
        .unwrap_or_else(|| panic!("expected error[file.unreadable] for the symlink loop\n  labflow reported:\n{}", listing(report)));
    // Diagnostic paths are relative to the taxonomy root.
    assert_eq!(unreadable.path, "compositional_skills/writing/loop");
    assert!(report.leaves.iter().any(|l| l.leaf.path == good), "the valid leaf beside the loop was not checked\n{}", listing(report));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_symlink_leaving_the_repository_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let taxonomy = dir.path().join("taxonomy");
    let docs = dir.path().join("docs");
    let commit = "1111111111111111111111111111111111111111";
    let commit_dir = docs.join("labflow-tests/escape").join(commit);
    std::fs::create_dir_all(&commit_dir).unwrap();
    std::fs::create_dir_all(dir.path().join("outside")).unwrap();
    std::fs::write(dir.path().join("outside/secret.md"), "# not part of the repository\n").unwrap();
    std::fs::write(commit_dir.join("real.md"), "# a document\n").unwrap();
    std::os::unix::fs::symlink(dir.path().join("outside/secret.md"), commit_dir.join("leak.md")).unwrap();
    // Reuse the corpus's valid knowledge leaf, pointed at this source.
    let base =
        std::fs::read_to_string(corpus().join("doc_pattern_no_match/knowledge/science/earth/doc_pattern_no_match/qna.yaml")).unwrap();
    let text = base
        .replace("https://github.com/labflow-tests/water_cycle", "https://github.com/labflow-tests/escape")
        .replace("5d0c4a1e9b8f7a6e5d4c3b2a1f0e9d8c7b6a5f40", commit)
        .replace("    - chapters/*.md", "    - leak.md");
    assert!(text.contains("- leak.md") && text.contains(commit), "the base leaf changed; update this test");
    let rel = "knowledge/science/earth/escape/qna.yaml";
    put_leaf(&taxonomy, rel, text.as_bytes());
    let line = text.lines().position(|l| l.contains("- leak.md")).unwrap() + 1;
    let outcome = walk_case(&taxonomy, Some(&docs)).await;
    check(&expect("doc_symlink_escape", rel, codes::DOC_ESCAPE, line, Severity::Error), &outcome).unwrap_or_else(|e| panic!("{e}"));
}
