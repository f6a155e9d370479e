//! The quickstart (examples/quickstart/lab.yaml) as a user runs it, at a smaller size so CI keeps
//! it from rotting: `labflow run` over its three real leaves with the embedded SmolLM2 as the
//! teacher and as the student (its document cut to one chunk, shorter completions, one training
//! step per phase); a second run does nothing and says so; after one leaf is edited, `labflow
//! status` names that leaf and a stale training, and the next run regenerates that leaf alone,
//! re-mixes and trains again.

mod common;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EDITED: &str = "compositional_skills/grounded/linguistics/inclusion";

fn labflow(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_labflow")).args(args).output().unwrap();
    assert!(out.status.success(), "labflow {args:?} failed:\n{}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    out
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// The example's files (not an `out/` a local run left there) with the smaller sizes.
fn small_quickstart(model: &Path, to: &Path) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    for dir in ["taxonomy", "docs"] {
        common::copy_tree(&from.join(dir), &to.join(dir));
    }
    // The knowledge document cut to its first paragraphs (~1,500 tokens, one chunk): the prompts
    // of all 5 seeds over 7,000 tokens of chunks are most of the quickstart's generation time.
    common::cut_to_paragraphs(&to.join(Path::new("docs").join(common::CHICKADEE_DOC)), 6000);
    let edit = |name: &str, pairs: &[(String, String)]| {
        let mut text = std::fs::read_to_string(from.join(name)).unwrap();
        for (old, new) in pairs {
            assert!(text.contains(old.as_str()), "{name} no longer says {old:?}; update this test");
            text = text.replace(old.as_str(), new);
        }
        std::fs::write(to.join(name), text).unwrap();
    };
    let model_line = |s: &str| (format!("{s}../../models/SmolLM2-135M-Instruct.Q4_1.gguf"), format!("{s}{}", model.display()));
    #[rustfmt::skip]
    edit("lab.yaml", &[
        model_line("teacher: "),
        ("max_tokens: 160".into(), "max_tokens: 48".into()),
        ("chunk_tokens: 1000".into(), "chunk_tokens: 2000".into()),
        ("max_steps: 6".into(), "max_steps: 1".into()),
    ]);
    edit("train.yaml", &[model_line("  model: "), ("batch_size: 4".into(), "batch_size: 2".into())]);
    to.join("lab.yaml")
}

#[test]
fn quickstart_runs_end_to_end_then_does_only_new_work() {
    let Some(model) = common::model() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lab = small_quickstart(&model, tmp.path());
    let lab_s = lab.to_str().unwrap();

    let first = json(&labflow(&["run", lab_s, "--json"]));
    assert_eq!(first["generate"]["computed"], 3, "{first}");
    assert!(first["teacher_calls"].as_u64().unwrap() > 0, "{first}");
    assert_eq!(first["train_steps"], 2, "one step per phase: {first}");
    for mix in ["knowledge", "skills"] {
        assert!(first["mix"]["rows"][mix].as_u64().unwrap() > 0, "an empty {mix} mix: {first}");
    }
    let final_model = PathBuf::from(first["final_checkpoint"].as_str().expect("a final checkpoint"));
    assert!(final_model.join("config.json").is_file() && final_model.join("model.safetensors").is_file());
    let out = tmp.path().join("out");
    for f in ["manifest.json", "mix/knowledge_train_msgs.jsonl", "mix/skills_train_msgs.jsonl", "train/train_report.md", "lab_summary.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }

    // Again, as a person would type it: nothing to do, and it says so and where everything is.
    let again = labflow(&["run", lab_s]);
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(text.contains("nothing new to do: 0 teacher calls, 0 training steps"), "{text}");
    for what in ["data:", "mixes:", "checkpoints:", "report:"] {
        assert!(text.contains(what), "{what} not printed:\n{text}");
    }
    let summary: Value = serde_json::from_slice(&std::fs::read(out.join("lab_summary.json")).unwrap()).unwrap();
    assert_eq!((summary["teacher_calls"].as_u64(), summary["train_steps"].as_u64()), (Some(0), Some(0)), "{summary}");
    let status = json(&labflow(&["status", lab_s, "--json"]));
    assert_eq!(status["would_compute"], serde_json::json!([]), "{status}");
    assert!(status["train"].as_str().unwrap().starts_with("done"), "{status}");

    // Edit one leaf: status names it, and the run regenerates it alone, re-mixes and retrains.
    let leaf = tmp.path().join("taxonomy").join(EDITED).join("qna.yaml");
    let text = std::fs::read_to_string(&leaf).unwrap();
    std::fs::write(&leaf, text.replacen("more inclusive IT terminology.", "more inclusive IT terminology in technical writing.", 1)).unwrap();
    let status = json(&labflow(&["status", lab_s, "--json"]));
    assert_eq!(status["would_compute"], serde_json::json!([EDITED]), "{status}");
    assert!(status["train"].as_str().unwrap().starts_with("stale"), "{status}");
    let third = json(&labflow(&["run", lab_s, "--json"]));
    assert_eq!((third["generate"]["computed"].as_u64(), third["generate"]["kept"].as_u64()), (Some(1), Some(2)), "{third}");
    assert!(third["teacher_calls"].as_u64().unwrap() > 0, "{third}");
    assert_eq!(third["train_steps"], 2, "the changed mix trains again from the base: {third}");
}
