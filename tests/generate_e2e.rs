//! End to end on real parts: the real taxonomy (one freeform skill, one grounded skill, one
//! knowledge leaf with its document), the embedded SmolLM2 teacher, the default `full`
//! pipelines, and the run folder on a real S3-compatible server (s3s-fs on 127.0.0.1) and on
//! local disk. Kept to a few minutes with `--scale 1`, a `--max-tokens` cap and the knowledge
//! document cut to its first paragraphs (one chunk of ~1,500 tokens): over the whole document
//! (8 chunks × 5 seeds of ~1,650-token prompts) the run took 51 minutes here (2026-12-02).
//!
//! Needs the model (`bash models/fetch.sh`) and s3s-fs (both installed by `.ci/run`).

mod common;

use common::s3::{command, start, url, BUCKET};
use common::{copy_tree, data};
use serde_json::Value;

const LEAVES: &[&str] = &[
    "compositional_skills/linguistics/synonyms",
    "compositional_skills/grounded/linguistics/inclusion",
    "knowledge/science/animals/birds/black_capped_chickadee",
];

fn args(taxonomy: &str, docs: &str, model: &str, out: &str) -> Vec<String> {
    let mut a: Vec<String> = [
        "generate",
        "--taxonomy",
        taxonomy,
        "--docs",
        docs,
        "--teacher",
        model,
        "--output",
        out,
        "--scale",
        "1",
        "--max-tokens",
        "96",
        "--chunk-tokens",
        "2000",
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for l in LEAVES {
        a.extend(["--leaf".to_string(), l.to_string()]);
    }
    a
}

fn summary(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "generate failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn step<'a>(s: &'a Value, pipeline: &str, op: &str) -> Vec<&'a Value> {
    s["operators"].as_array().unwrap().iter().filter(|o| o["pipeline"].as_str().unwrap_or("").contains(pipeline) && o["op"] == op).collect()
}

#[test]
fn full_pipelines_with_the_embedded_teacher_into_s3_and_a_local_folder() {
    let Some(model) = common::model() else { return };
    let docs = tempfile::tempdir().unwrap();
    let doc = docs.path().join(common::CHICKADEE_DOC);
    std::fs::create_dir_all(doc.parent().unwrap()).unwrap();
    std::fs::copy(data("docs").join(common::CHICKADEE_DOC), &doc).unwrap();
    common::cut_to_paragraphs(&doc, 6000);
    let Some(server) = start(&[("taxonomy", data("taxonomy")), ("docs", docs.path().to_path_buf())]) else { return };
    let model = model.to_str().unwrap().to_string();

    let out = command(&server).args(args(&url("taxonomy"), &url("docs"), &model, &url("runs/e2e"))).output().unwrap();
    let s = summary(&out);
    eprintln!("{}", serde_json::to_string_pretty(&s).unwrap());
    assert_eq!(s["leaves"], 3, "{s}");
    assert!(s["teacher_calls"].as_u64().unwrap() > 0);
    for kind in ["freeform", "grounded", "knowledge"] {
        let generated: u64 = step(&s, kind, "generate").iter().map(|o| o["rows_out"].as_u64().unwrap()).sum();
        let judged: u64 = step(&s, kind, "critique").iter().map(|o| o["rows_in"].as_u64().unwrap()).sum();
        let filtered: u64 = step(&s, kind, "filter").iter().map(|o| o["rows_in"].as_u64().unwrap()).sum();
        assert!(generated > 0 && judged > 0 && filtered > 0, "{kind}: generated {generated}, judged {judged}, filtered {filtered}");
    }

    // The manifest on S3 lists every leaf's files, and they are there.
    let root = server.root().join(BUCKET).join("runs/e2e");
    let manifest: Value = serde_json::from_slice(&std::fs::read(root.join("manifest.json")).expect("manifest on S3")).unwrap();
    let leaves = manifest["leaves"].as_array().unwrap();
    assert_eq!(leaves.len(), 3);
    for l in leaves {
        assert!(l["error"].is_null(), "{l}");
        for f in l["files"].as_array().unwrap() {
            assert!(root.join(f["path"].as_str().unwrap()).is_file(), "manifest lists {f} but it is not on S3");
        }
    }

    // A local run folder holding the S3 run's response cache costs no teacher call and writes
    // the same rows: the cache is portable across stores.
    let local = tempfile::tempdir().unwrap();
    copy_tree(&root.join("cache"), &local.path().join("cache"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_labflow"))
        .args(args(data("taxonomy").to_str().unwrap(), docs.path().to_str().unwrap(), &model, local.path().to_str().unwrap()))
        .output()
        .unwrap();
    let again = summary(&out);
    assert_eq!(again["teacher_calls"], 0, "{again}");
    assert_eq!(again["rows"], s["rows"]);
    assert!(local.path().join("manifest.json").is_file());
}
