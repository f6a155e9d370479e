//! The `labflow` binary as a user runs it: output formats, exit codes, help.

mod common;

use common::data;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn labflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_labflow")).args(args).output().expect("labflow runs")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn validate_the_public_taxonomy_exits_zero() {
    let out = labflow(&["validate", s(&data("taxonomy"))]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("checked 16 leaf files: 16 valid, 0 error(s)"), "{stderr}");
    assert!(stderr.contains("--docs"), "a notice says document checks were skipped: {stderr}");
}

#[test]
fn validate_reports_errors_as_text_and_json_and_exits_one() {
    let root = data("schema/testdata");
    let text = labflow(&["validate", s(&root)]);
    assert_eq!(text.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.lines().any(|l| l.starts_with("compositional_skills/skill_incomplete/qna.yaml:5:1: error[schema.min-items]: ")),
        "{stdout}"
    );
    let json = labflow(&["validate", s(&root), "--format", "json"]);
    assert_eq!(json.status.code(), Some(1));
    let items: Vec<Value> = serde_json::from_slice(&json.stdout).expect("a JSON array");
    assert!(!items.is_empty());
    for item in &items {
        for key in ["path", "line", "column", "severity", "code", "message", "key_path"] {
            assert!(item.get(key).is_some(), "{key} missing in {item}");
        }
        assert!(!item["path"].as_str().unwrap_or("/").starts_with('/'), "paths are relative: {item}");
    }
    assert!(items.iter().any(|i| i["code"] == "schema.unknown-key" && i["key_path"] == "createdby" && i["line"] == 3));
}

#[test]
fn an_unreadable_taxonomy_exits_two_with_a_clear_message() {
    let out = labflow(&["validate", "/definitely/not/here"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a readable folder"));
    let empty = tempfile::tempdir().expect("tempdir");
    let out = labflow(&["validate", s(empty.path())]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("contains no qna.yaml"));
    let out = labflow(&["validate", "ftp://example.com/x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unsupported URL scheme"));
}

#[test]
fn leaves_lists_ids_kinds_versions_seeds_and_hashes() {
    let out = labflow(&["leaves", s(&data("taxonomy")), "--docs", s(&data("docs")), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let leaves: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(leaves.len(), 16);
    let synonyms = leaves.iter().find(|l| l["id"] == "compositional_skills/linguistics/synonyms").expect("synonyms leaf");
    assert_eq!(synonyms["kind"], "freeform_skill");
    assert_eq!(synonyms["version"], 3);
    assert_eq!(synonyms["seed_count"], 6);
    assert_eq!(synonyms["hash"].as_str().map(str::len), Some(64));
    let table = labflow(&["leaves", s(&data("taxonomy"))]);
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("knowledge/science/animals/birds/black_capped_chickadee "))
        .expect("a row")
        .split_whitespace()
        .collect();
    assert_eq!(&row[..4], ["knowledge/science/animals/birds/black_capped_chickadee", "knowledge", "3", "5"]);
}

#[test]
fn diff_against_another_tree() {
    let case = data("changes/tc2_modify_skill_leaf");
    let out = labflow(&["diff", s(&case.join("after")), "--against", s(&case.join("before")), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let changes: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["change"], "modified");
    assert_eq!(changes[0]["id"], "compositional_skills/linguistics/synonyms");
}

#[test]
fn help_explains_every_command() {
    let out = labflow(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["validate", "leaves", "diff"] {
        assert!(text.contains(cmd), "{text}");
    }
    let out = labflow(&["validate", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Exit status") && text.contains("--docs") && text.contains("s3://"), "{text}");
}
