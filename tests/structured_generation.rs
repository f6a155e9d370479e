//! Structured generation on real parts: the embedded SmolLM2 teacher, the real synonyms leaf,
//! and both labflow's own `full` freeform pipeline and InstructLab's `full` freeform pipeline
//! (instructlab-sdg 0.8.3, unchanged, through `ilab:`). Without constraints the reference's
//! pipeline keeps zero rows with this teacher (issue 10); with them every judge passes rows and
//! the dataset is not empty. No judge threshold is changed: the filters are the pipelines' own.
//!
//! Needs the model (`bash models/fetch.sh`) and, for the ilab run, the instructlab-sdg wheel
//! (`bash tests/reference/fetch_sdg.sh`); each is skipped loudly when missing unless
//! LABFLOW_REQUIRE_MODEL / LABFLOW_REQUIRE_SDG is 1.

mod common;

use serde_json::Value;
use std::path::Path;

const LEAF: &str = "compositional_skills/linguistics/synonyms";

/// `labflow generate` on the synonyms leaf; the `--json` summary, with `seeds_covered` added:
/// how many seed examples have at least one row in the dataset, of how many.
fn generate(pipeline: &str, model: &Path) -> Value {
    let out_dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_labflow"))
        .args(["generate", "--taxonomy", common::data("taxonomy").to_str().unwrap(), "--pipeline", pipeline, "--teacher"])
        .arg(model)
        .args(["--output", out_dir.path().to_str().unwrap(), "--leaf", LEAF, "--scale", "2", "--max-tokens", "128", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "generate failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let mut s: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    // The freeform pipeline's first step reads one row per seed example.
    let seeds = operators(&s, "freeform_skills").first().map_or(0, |o| o["rows_in"].as_u64().unwrap());
    let covered = seeds_with_rows(&out_dir.path().join("generated").join(LEAF));
    s["seeds_covered"] = serde_json::json!([covered, seeds]);
    eprintln!(
        "{pipeline}: {} rows, {} teacher calls, {:.0} s; seed examples with a row: {covered} of {seeds}",
        s["rows"],
        s["teacher_calls"],
        s["wall_seconds"].as_f64().unwrap_or(0.0)
    );
    for o in s["operators"].as_array().unwrap() {
        eprintln!(
            "  {:40} in {:4} out {:4} rejected {:4} unparsed {:3} truncated {:3}",
            o["name"].as_str().unwrap_or(""),
            o["rows_in"],
            o["rows_out"],
            o["rows_rejected"],
            o["unparsed"],
            o["truncated"]
        );
    }
    s
}

/// Distinct `seed_question`s among the rows of a leaf's JSONL datasets under `dir`.
fn seeds_with_rows(dir: &Path) -> usize {
    let mut seeds = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                let row: Value = serde_json::from_str(line).unwrap();
                seeds.insert(row["seed_question"].as_str().unwrap_or_else(|| panic!("no seed_question in {line}")).to_string());
            }
        }
    }
    seeds.len()
}

fn operators<'a>(s: &'a Value, pipeline: &str) -> Vec<&'a Value> {
    s["operators"].as_array().unwrap().iter().filter(|o| o["pipeline"].as_str().unwrap_or("").contains(pipeline)).collect()
}

/// Every step of the freeform pipeline passes rows on, so every judge accepted some; the
/// dataset is not empty; constrained steps parse nearly every completion.
fn assert_rows_through_every_step(s: &Value, pipeline: &str) {
    let ops = operators(s, pipeline);
    assert!(!ops.is_empty(), "no operators of {pipeline} in {s}");
    for o in &ops {
        assert!(o["rows_out"].as_u64().unwrap() > 0, "{pipeline}: step {} kept no row: {o}", o["name"]);
    }
    assert!(s["rows"].as_u64().unwrap() > 0, "{s}");
    let completions: u64 = ops.iter().map(|o| o["completions"].as_u64().unwrap_or(0)).sum();
    let unparsed: u64 = ops.iter().map(|o| o["unparsed"].as_u64().unwrap_or(0)).sum();
    assert!(unparsed * 4 <= completions, "{pipeline}: {unparsed} of {completions} completions did not parse");
}

#[test]
fn labflows_full_freeform_pipeline_keeps_rows_through_every_judge() {
    let Some(model) = common::model() else { return };
    let s = generate("full", &model);
    assert_rows_through_every_step(&s, "freeform_skills");
}

#[test]
fn instructlabs_full_freeform_pipeline_keeps_rows_through_every_judge() {
    let Some(model) = common::model() else { return };
    let Some(dir) = common::sdg::pipelines_dir() else { return };
    let s = generate(&format!("ilab:{}", dir.join("full").display()), &model);
    assert_rows_through_every_step(&s, "freeform_skills");
}
