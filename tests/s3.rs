//! The taxonomy, its documents and a change pair read from a real S3-compatible server
//! (`s3s-fs`, which checks request signatures) on 127.0.0.1, through the `labflow` binary.
//!
//! `.ci/run` installs `s3s-fs` and sets `LABFLOW_REQUIRE_S3=1`, so in CI a missing server fails
//! the test; elsewhere it is skipped with a message saying how to enable it.

mod common;

use common::data;
use common::s3::{labflow, start, url};
use serde_json::Value;
use std::process::Command;

#[test]
fn validate_leaves_and_diff_over_s3_match_the_local_results() {
    let Some(server) = start(&[
        ("taxonomy", data("taxonomy")),
        ("docs", data("docs")),
        ("testdata", data("schema/testdata")),
        ("tc1/before", data("changes/tc1_add_knowledge_leaf/before")),
        ("tc1/after", data("changes/tc1_add_knowledge_leaf/after")),
    ]) else {
        return;
    };

    let out = labflow(&server, &["validate", &url("taxonomy"), "--docs", &url("docs"), "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let diags: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(diags.iter().all(|d| d["severity"] == "warning"), "{diags:#?}");

    let remote = labflow(&server, &["leaves", &url("taxonomy"), "--docs", &url("docs"), "--json"]);
    assert_eq!(remote.status.code(), Some(0), "{}", String::from_utf8_lossy(&remote.stderr));
    let local = Command::new(env!("CARGO_BIN_EXE_labflow"))
        .args(["leaves", data("taxonomy").to_str().expect("utf-8"), "--docs", data("docs").to_str().expect("utf-8"), "--json"])
        .output()
        .expect("labflow runs");
    let remote: Vec<Value> = serde_json::from_slice(&remote.stdout).expect("JSON");
    let local: Vec<Value> = serde_json::from_slice(&local.stdout).expect("JSON");
    assert_eq!(remote.len(), 16);
    assert_eq!(remote, local, "same leaves, kinds and hashes (documents included) from S3 as from disk");
    assert!(remote.iter().filter(|l| l["kind"] == "knowledge").all(|l| l["documents_hashed"] == true));

    let bad = labflow(&server, &["validate", &url("testdata")]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stdout).contains("compositional_skills/skill_incomplete/qna.yaml:5:1: error[schema.min-items]"));

    let diff = labflow(&server, &["diff", &url("tc1/after"), "--against", &url("tc1/before"), "--json"]);
    assert_eq!(diff.status.code(), Some(0), "{}", String::from_utf8_lossy(&diff.stderr));
    let changes: Vec<Value> = serde_json::from_slice(&diff.stdout).expect("JSON");
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(changes[0]["change"], "added");
    assert_eq!(changes[0]["id"], "knowledge/science/animals/birds/black_capped_chickadee");

    let missing = labflow(&server, &["validate", &url("no/such/prefix")]);
    assert_eq!(missing.status.code(), Some(2));
}
