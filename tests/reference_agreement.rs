//! labflow's valid/invalid verdict equals the reference validator's, file by file.
//!
//! The expected verdicts in `tests/fixtures/reference_verdicts.json` were produced by
//! `tests/reference/verdicts.py` (instructlab-schema 0.4.2 + yamllint, schema version from each
//! file, warnings as errors, as the reference CLI runs it) over every `qna.yaml` under
//! `../shared/data`. Regenerate with the command in that script's docstring.

use labflow::taxonomy::check_leaf;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn data_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

/// The path the reference would see relative to a taxonomy root: from the last folder named
/// `knowledge` or `compositional_skills`, or just the file name when there is none.
fn taxonomy_relative(rel: &str) -> String {
    let parts: Vec<&str> = rel.split('/').collect();
    let dirs = &parts[..parts.len() - 1];
    match dirs.iter().rposition(|p| *p == "knowledge" || *p == "compositional_skills") {
        Some(i) => parts[i..].join("/"),
        None => parts[parts.len() - 1].to_string(),
    }
}

#[test]
fn verdicts_agree_with_the_reference_validator() {
    let fixture: Value = serde_json::from_str(include_str!("fixtures/reference_verdicts.json")).expect("fixture is JSON");
    let root = data_root();
    if !root.exists() {
        panic!("../shared/data is missing: the agreement test needs the shared test data beside the repo");
    }
    let mut checked = 0;
    let mut mismatches = Vec::new();
    for (rel, expected) in fixture.as_object().expect("fixture is an object") {
        if rel.starts_with('_') {
            continue;
        }
        let bytes = std::fs::read(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        let check = check_leaf(&taxonomy_relative(rel), &bytes);
        let want_valid = expected["valid"].as_bool().expect("valid is a bool");
        checked += 1;
        if check.has_errors() == want_valid {
            mismatches.push(format!(
                "{rel}: reference says {}, labflow says {}\n  reference: {:?}\n  labflow: {:?}",
                if want_valid { "valid" } else { "invalid" },
                if want_valid { "invalid" } else { "valid" },
                expected["messages"],
                check.diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>()
            ));
        }
    }
    assert!(checked >= 115, "expected every qna.yaml under shared/data, got {checked}");
    assert!(mismatches.is_empty(), "{} of {checked} verdicts differ:\n{}", mismatches.len(), mismatches.join("\n"));
}
