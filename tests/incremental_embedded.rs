//! The real "taxonomy changed" pairs (../shared/data/changes: tc1 adds a knowledge leaf, tc2
//! edits a skill, tc4 adds three skills) run incrementally through `labflow generate` with the
//! embedded SmolLM2 teacher: the rerun over the after-tree computes exactly the leaves CHANGES.txt
//! lists, as its dry run planned, keeps every other leaf without a teacher call for it, and leaves
//! the run folder holding what a fresh run over the after-tree writes with the same response cache
//! (which then calls the teacher 0 times). `tests/incremental.rs` checks the same plans with the
//! deterministic test teacher, and every kind of edit and random edit sequences.
//!
//! Kept to about two minutes with the `simple` pipelines, `--scale 1`, a `--max-tokens` cap and
//! every knowledge document cut to its first paragraphs; the cases share one response cache (tc4's
//! after-tree is tc1's before-tree), so each before-run pays only for what the last case did not.
//! Needs the model (`bash models/fetch.sh`, installed by `.ci/run`).

mod common;

use common::{changed_leaves, copy_tree, cut_to_paragraphs, data};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// `labflow generate` over `taxonomy` into `out` (with `--dry-run` when `dry`): its `--json`
/// report, or `None` when the tree holds nothing a built-in pipeline generates.
fn generate(taxonomy: &Path, docs: &Path, model: &Path, out: &Path, dry: bool) -> Option<Value> {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_labflow"));
    cmd.arg("generate").arg("--taxonomy").arg(taxonomy).arg("--docs").arg(docs).arg("--teacher").arg(model).arg("--output").arg(out);
    cmd.args(["--pipeline", "simple", "--scale", "1", "--max-tokens", "32", "--json"]);
    if dry {
        cmd.arg("--dry-run");
    }
    let run = cmd.output().expect("run labflow");
    let stderr = String::from_utf8_lossy(&run.stderr);
    if !run.status.success() && stderr.contains("nothing to generate") {
        return None;
    }
    assert!(run.status.success(), "generate over {} failed:\n{stderr}", taxonomy.display());
    Some(serde_json::from_slice(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&run.stdout))))
}

/// Every JSONL view the run folder's manifest lists, by (leaf, generated|rejects): the rows as a
/// reader of the run sees them.
fn datasets(run: &Path) -> BTreeMap<(String, String), String> {
    let manifest: Value = serde_json::from_slice(&std::fs::read(run.join("manifest.json")).expect("manifest")).unwrap();
    let mut out = BTreeMap::new();
    for leaf in manifest["leaves"].as_array().unwrap() {
        for file in leaf["files"].as_array().unwrap() {
            let path = file["path"].as_str().unwrap();
            if path.ends_with(".jsonl") {
                let kind = path.split('/').next().unwrap().to_string();
                let text = std::fs::read_to_string(run.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
                assert!(out.insert((leaf["leaf"].as_str().unwrap().to_string(), kind), text).is_none(), "{path} listed twice");
            }
        }
    }
    out
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

#[test]
fn the_real_change_pairs_recompute_exactly_the_changed_leaves_with_the_embedded_teacher() {
    let Some(model) = common::model() else { return };
    let docs = tempfile::tempdir().unwrap();
    copy_tree(&data("docs"), docs.path());
    for doc in walk(docs.path()) {
        if doc.extension().is_some_and(|e| e == "md") && std::fs::metadata(&doc).unwrap().len() > 2000 {
            cut_to_paragraphs(&doc, 2000);
        }
    }
    let runs = tempfile::tempdir().unwrap();
    let mut last_cache: Option<std::path::PathBuf> = None;
    for case in ["tc4_three_skills_added", "tc1_add_knowledge_leaf", "tc2_modify_skill_leaf"] {
        let dir = data("changes").join(case);
        let want = changed_leaves(&dir);
        assert!(!want.is_empty(), "{case}: CHANGES.txt lists no leaf");
        let run = runs.path().join(case);
        if let Some(cache) = &last_cache {
            copy_tree(cache, &run.join("cache"));
        }
        // tc4's before-tree holds only foundational skills, which no built-in pipeline generates.
        let before = match generate(&dir.join("before"), docs.path(), &model, &run, false) {
            Some(s) => {
                let mut leaves: Vec<String> =
                    s["increment"]["compute"].as_array().unwrap().iter().map(|c| c["leaf"].as_str().unwrap().to_string()).collect();
                leaves.extend(strings(&s["increment"]["kept"]));
                leaves.sort();
                leaves
            }
            None if case.starts_with("tc4") => Vec::new(),
            None => panic!("{case}: the before-tree has nothing to generate"),
        };
        let after_tree = dir.join("after");
        let plan = generate(&after_tree, docs.path(), &model, &run, true).unwrap();
        let after = generate(&after_tree, docs.path(), &model, &run, false).unwrap();
        eprintln!("{case}: {} teacher calls, {}", after["teacher_calls"], serde_json::to_string(&after["increment"]).unwrap());

        let compute = after["increment"]["compute"].as_array().unwrap();
        let computed: Vec<String> = compute.iter().map(|c| c["leaf"].as_str().unwrap().to_string()).collect();
        assert_eq!(computed, want, "{case}: computed other leaves than the change touched");
        assert_eq!(plan["compute"], after["increment"]["compute"], "{case}: the dry run planned something else");
        let edited: Vec<&String> = computed.iter().filter(|c| before.contains(c)).collect();
        // tc4's before-run was refused, so its folder records no run to compare with.
        let why = match case {
            "tc2_modify_skill_leaf" => "edited",
            _ if before.is_empty() => "no_record",
            _ => "new",
        };
        assert!(compute.iter().all(|c| c["why"] == why), "{case}: every computed leaf should be {why}");
        assert_eq!(edited.len(), usize::from(case.starts_with("tc2")), "{case}");
        let kept: Vec<String> = before.iter().filter(|l| !edited.contains(l)).cloned().collect();
        assert_eq!(strings(&after["increment"]["kept"]), kept, "{case}: kept other leaves than the unchanged ones");
        assert_eq!(after["removed"], 0, "{case}");

        // The rerun's calls are the changed leaves' alone: more than none (their prompts are new),
        // at most what the plan estimated for them (unchanged seeds of an edited leaf hit the cache).
        let calls = after["teacher_calls"].as_u64().unwrap();
        let estimated: u64 = compute.iter().map(|c| c["estimated_requests"].as_u64().unwrap_or(u64::MAX / 8)).sum();
        assert!(calls > 0 && calls <= estimated, "{case}: {calls} teacher calls for an estimate of {estimated}");

        // What the increment left equals a fresh run over the after-tree with the same cache.
        let fresh = runs.path().join(format!("{case}-fresh"));
        copy_tree(&run.join("cache"), &fresh.join("cache"));
        let full = generate(&after_tree, docs.path(), &model, &fresh, false).unwrap();
        assert_eq!(full["teacher_calls"], 0, "{case}: the fresh run over the final state called the teacher");
        assert_eq!(full["leaves"], after["leaves"], "{case}");
        assert_eq!(datasets(&fresh), datasets(&run), "{case}: the incrementally kept run differs from a fresh one");
        last_cache = Some(run.join("cache"));
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
