//! The taxonomy, its documents and a change pair read from a real S3-compatible server
//! (`s3s-fs`, which checks request signatures) on 127.0.0.1, through the `labflow` binary.
//!
//! `.ci/run` installs `s3s-fs` and sets `LABFLOW_REQUIRE_S3=1`, so in CI a missing server fails
//! the test; elsewhere it is skipped with a message saying how to enable it.

mod common;

use common::{copy_tree, data};
use serde_json::Value;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BUCKET: &str = "labflow-test";
const KEY: &str = "labflowtestkey";
const SECRET: &str = "labflowtestsecret";

struct Server {
    child: Child,
    port: u16,
    _root: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start s3s-fs over a bucket holding the given `(prefix, source folder)` trees.
fn start(trees: &[(&str, PathBuf)]) -> Option<Server> {
    if Command::new("s3s-fs").arg("--version").stdout(Stdio::null()).status().is_err() {
        let msg = "s3s-fs not installed: `cargo install s3s-fs@0.14.1 --locked --features binary` (or run .ci/run)";
        if std::env::var("LABFLOW_REQUIRE_S3").as_deref() == Ok("1") {
            panic!("{msg}");
        }
        eprintln!("SKIPPED: {msg}");
        return None;
    }
    let root = tempfile::tempdir().expect("tempdir");
    for (prefix, src) in trees {
        copy_tree(src, &root.path().join(BUCKET).join(prefix));
    }
    let port = TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
    let child = Command::new("s3s-fs")
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", KEY, "--secret-key", SECRET])
        .arg(root.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start s3s-fs");
    let server = Server { child, port, _root: root };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "s3s-fs did not start listening on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(server)
}

fn labflow(server: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_labflow"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", server.port))
        .output()
        .expect("labflow runs")
}

fn url(prefix: &str) -> String {
    format!("s3://{BUCKET}/{prefix}")
}

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
