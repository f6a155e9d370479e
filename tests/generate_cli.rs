//! `labflow generate` and `labflow explain` as a user runs them: one process, and a cluster of
//! two processes × two workers on loopback, which must write the same datasets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_labflow"))
}

fn data(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data").join(rel).to_string_lossy().into_owned()
}

fn args(out: &Path) -> Vec<String> {
    [
        "generate",
        "--taxonomy",
        &data("taxonomy"),
        "--docs",
        &data("docs"),
        "--pipeline",
        "simple",
        "--teacher",
        "test",
        "--run-id",
        "cli",
        "--leaf",
        "compositional_skills/linguistics/synonyms",
        "--leaf",
        "compositional_skills/grounded/linguistics/inclusion",
        "--leaf",
        "knowledge/science/animals/birds/black_capped_chickadee",
        "--output",
        out.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Every file under `generated/`, by relative path.
fn generated(out: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![out.join("generated")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "jsonl") {
                files.insert(p.strip_prefix(out).unwrap().to_path_buf(), std::fs::read(&p).unwrap());
            }
        }
    }
    files
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn one_process_and_a_two_process_cluster_write_the_same_data() {
    let tmp = tempfile::tempdir().unwrap();
    let single = tmp.path().join("single");
    let out = bin().args(args(&single)).arg("--json").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["leaves"], 3, "{summary}");
    assert!(summary["rows"].as_u64().unwrap() > 0 && summary["teacher_calls"].as_u64().unwrap() > 0, "{summary}");
    assert!(single.join("manifest.json").is_file());
    let expected = generated(&single);
    assert_eq!(expected.len(), 3);

    let cluster = tmp.path().join("cluster");
    let hostfile = tmp.path().join("hosts");
    std::fs::write(&hostfile, format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port())).unwrap();
    let children: Vec<_> = (0..2)
        .map(|p| {
            bin()
                .args(args(&cluster))
                .args(["-w", "2", "-n", "2", "-p", &p.to_string(), "--hostfile", hostfile.to_str().unwrap()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(generated(&cluster), expected, "2 processes x 2 workers wrote other data than 1 worker");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(cluster.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["leaves"].as_array().unwrap().len(), 3);
}

#[test]
fn explain_prints_the_plan_and_bad_files_get_file_line() {
    let out = bin().args(["explain", "full"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[generate] <- seeds") && text.contains("teacher:"), "{text}");

    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(&bad, "version: 1\nname: bad\nleaf_kinds: [freeform_skill]\nsteps:\n  - name: a\n    op: filtre\n").unwrap();
    let out = bin().args(["explain", bad.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml:6:9") && err.contains("unknown operator \"filtre\""), "{err}");
}
