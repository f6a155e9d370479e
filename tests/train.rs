//! The trainer end to end on the smoke recipe (pipelines/train/smoke.yaml: the real taxonomy's
//! seed examples, a small random Llama with SmolLM2's tokenizer and chat template): both phases
//! run, the loss goes down, the checkpoints are Hugging Face folders labflow's own loader reads
//! back to the same losses, a rerun trains nothing, and `kill -9` mid-phase then a rerun ends
//! with the same weights, byte for byte, as a run that was never interrupted.
//! And SmolLM2-135M itself tuned a few steps through both phases on mixes made from the real
//! taxonomy by `labflow generate` and `labflow mix`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use labflow::pipeline::DirSource;
use labflow::store::Location;
use labflow::train::{self, recipe, TrainJob, TrainReport};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn smoke() -> recipe::Recipe {
    recipe::load(&DirSource(repo().join("pipelines/train")), "smoke.yaml").expect("smoke recipe loads")
}

fn run(recipe: &recipe::Recipe, out: &Path, max_steps: Option<u64>) -> TrainReport {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let loc = Location::open_or_create(out.to_str().unwrap()).unwrap();
        let job = TrainJob { recipe, recipe_dir: Some(repo().join("pipelines/train")), out: &loc, threads: 2, max_steps, on_change: train::OnChange::Refuse };
        train::train(job, &mut |_| {}).await.expect("training runs")
    })
}

fn safetensors(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("model.safetensors")).expect("checkpoint weights")
}

#[test]
fn smoke_recipe_trains_both_phases_and_a_rerun_trains_nothing() {
    if common::model().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("smoke");
    let recipe = smoke();
    let report = run(&recipe, &out, None);
    assert_eq!(report.phases.len(), 2);
    for p in &report.phases {
        assert!(p.train_samples > 10 && p.heldout_samples >= 1, "{p:?}");
        assert_eq!(p.dropped.unrenderable, 0, "{:?}", p.dropped);
        let (first, last) = (p.first_loss.unwrap(), p.last_loss.unwrap());
        assert!(last < first, "phase {}: loss {first} → {last} did not go down", p.name);
        let dir = out.join(&p.chosen.dir);
        for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
            assert!(dir.join(f).is_file(), "{} lacks {f}", dir.display());
        }
        assert!(out.join(&p.dir).join("metrics.jsonl").is_file() && out.join(&p.dir).join("loss.png").is_file());
        let lines = std::fs::read_to_string(out.join(&p.dir).join("metrics.jsonl")).unwrap();
        assert_eq!(lines.lines().count() as u64, p.steps, "one metrics line per step");
    }
    // Phase 1's knowledge samples are long; the smoke recipe's 1024-token cap keeps them all.
    assert_eq!(report.phases[0].dropped.too_long, 0);
    assert!(report.train_steps > 0);
    let chosen = out.join(&report.phases[1].chosen.dir);

    // The checkpoint is a Hugging Face folder labflow reads back: the same weights.
    let model = labflow::model::Model::load(&chosen).expect("labflow loads its checkpoint");
    assert_eq!(model.config().hidden, 64);
    assert!(std::fs::read_to_string(chosen.join("tokenizer_config.json")).unwrap().contains("chat_template"));

    // transformers loads it too, and computes the same logits (skipped without torch).
    transformers_agrees(&chosen, &model);

    // A rerun trains nothing and chooses the same checkpoints.
    let again = run(&recipe, &out, None);
    assert_eq!(again.train_steps, 0);
    assert_eq!(again.phases, report.phases);
    assert_eq!(safetensors(&chosen), safetensors(&out.join(&again.phases[1].chosen.dir)));
}

#[test]
fn kill_9_mid_phase_then_rerun_ends_with_the_weights_of_an_uninterrupted_run() {
    if common::model().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // A state every 8 samples (one step), so a kill lands between states.
    let text = std::fs::read_to_string(repo().join("pipelines/train/smoke.yaml")).unwrap().replace("    save_every_samples: 64\n", "").replace("save_per_epoch: true", "save_per_epoch: true\n    save_every_samples: 8");
    let recipe_dir = repo().join("pipelines/train");
    let recipe_path = recipe_dir.join(format!(".resume-test-{}.yaml", std::process::id()));
    std::fs::write(&recipe_path, text).unwrap();
    let cleanup = scopeguard(recipe_path.clone());
    let labflow = |out: &Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_labflow"));
        c.args(["train", "--recipe", recipe_path.to_str().unwrap(), "--output", out.to_str().unwrap(), "--max-steps", "6", "--threads", "2", "--json"]);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    };
    let whole = tmp.path().join("whole");
    let out = labflow(&whole).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let whole_report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let killed = tmp.path().join("killed");
    let mut child = labflow(&killed).spawn().unwrap();
    let latest = killed.join("state/latest.json");
    let deadline = Instant::now() + Duration::from_secs(300);
    // Wait for a state past phase 1's second step, then kill at once.
    loop {
        if let Ok(s) = std::fs::read_to_string(&latest) {
            let v: serde_json::Value = serde_json::from_str(&s).unwrap_or_default();
            if v["phase"] == 0 && v["phase_step"].as_u64().unwrap_or(0) >= 2 || v["phase"] == 1 {
                break;
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        assert!(Instant::now() < deadline, "no state written in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let out = labflow(&killed).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let resumed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(resumed["resumed_from"].is_string(), "{resumed}");
    assert!(resumed["train_steps"].as_u64().unwrap() < whole_report["train_steps"].as_u64().unwrap(), "the rerun repeated finished steps");
    for (a, b) in whole_report["phases"].as_array().unwrap().iter().zip(resumed["phases"].as_array().unwrap()) {
        let (da, db) = (a["chosen"]["dir"].as_str().unwrap(), b["chosen"]["dir"].as_str().unwrap());
        assert_eq!(da, db);
        assert!(safetensors(&whole.join(da)) == safetensors(&killed.join(db)), "{da}: weights differ after the resume");
        assert_eq!(a["last_loss"], b["last_loss"]);
    }
    drop(cleanup);
}

/// The trainer on real parts, kept small: SmolLM2-135M (the GGUF, dequantised at load) tuned
/// through both phases on mixes that `labflow generate` (the real taxonomy's chickadee knowledge
/// leaf and synonyms skill leaf; the deterministic test teacher writes the rows, so their text
/// is not data, but the documents, chunks and records are the real ones) and `labflow mix` made.
/// Each phase trains 3 epochs on a handful of records taken from the head of each mix, one
/// effective batch per epoch, so every step sees the same samples and the loss must go down.
#[test]
fn smollm2_tunes_both_phases_on_mixes_made_from_the_real_taxonomy() {
    let Some(model) = common::model() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let labflow = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_labflow")).args(args).output().unwrap();
        assert!(out.status.success(), "labflow {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let run = tmp.path().join("run");
    let (taxonomy, docs) = (common::data("taxonomy"), common::data("docs"));
    #[rustfmt::skip]
    labflow(&[
        "generate", "--taxonomy", taxonomy.to_str().unwrap(), "--docs", docs.to_str().unwrap(), "--pipeline", "simple",
        "--teacher", "test", "--chunk-tokens", "200", "--output", run.to_str().unwrap(),
        "--leaf", "knowledge/science/animals/birds/black_capped_chickadee", "--leaf", "compositional_skills/linguistics/synonyms",
    ]);
    labflow(&["mix", "--run", run.to_str().unwrap()]);
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for (file, n) in [("knowledge_train_msgs.jsonl", 3), ("skills_train_msgs.jsonl", 4)] {
        let text = std::fs::read_to_string(run.join("mix").join(file)).unwrap();
        let head: Vec<&str> = text.lines().take(n).collect();
        assert_eq!(head.len(), n, "{file} has fewer than {n} records");
        std::fs::write(data.join(file), head.join("\n") + "\n").unwrap();
    }
    let phase = |name: &str, file: &str, batch: usize| {
        format!(
            "  - name: {name}\n    data: [{file}]\n    epochs: 3\n    lr: 1.0e-4\n    warmup_steps: 0\n    schedule: constant\n    batch_size: {batch}\n    max_tokens_per_minibatch: 1024\n    max_seq_len: 1024\n    eval_fraction: 0\n    select: last\n"
        )
    };
    let recipe = tmp.path().join("real.yaml");
    let text = format!(
        "version: 1\nname: smollm2-small\nbase:\n  model: {}\nseed: 7\nmin_tokens: 10\nphases:\n{}{}",
        model.display(),
        phase("knowledge", "knowledge_train_msgs.jsonl", 3),
        phase("skills", "skills_train_msgs.jsonl", 4)
    );
    std::fs::write(&recipe, text).unwrap();
    let out = tmp.path().join("train");
    let (recipe_s, data_s, out_s) = (recipe.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap());
    let stdout = labflow(&["train", "--recipe", recipe_s, "--mix", data_s, "--output", out_s, "--threads", "2", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&stdout).expect("the --json report");
    let phases = report["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 2, "{report}");
    for (p, n) in phases.iter().zip([3, 4]) {
        assert_eq!(p["train_samples"], n, "every record is trained on: {p}");
        assert_eq!(p["steps"], 3, "{p}");
        let (first, last) = (p["first_loss"].as_f64().unwrap(), p["last_loss"].as_f64().unwrap());
        assert!(last < first, "phase {}: loss {first} → {last} did not go down", p["name"]);
    }
    let chosen = PathBuf::from(report["final_checkpoint"].as_str().expect("a final checkpoint"));
    let tuned = labflow::model::Model::load(&chosen).expect("labflow loads the tuned checkpoint");
    assert_eq!(tuned.config().hidden, 576, "SmolLM2-135M's width");
    transformers_agrees(&chosen, &tuned);
}

#[test]
fn a_pluggable_scorer_chooses_the_checkpoint_and_bad_scorers_are_refused() {
    if common::model().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let smoke = std::fs::read_to_string(repo().join("pipelines/train/smoke.yaml")).unwrap();
    // Phase 1: a checkpoint every step (8 samples); the scorer likes the first one best.
    let with = |scorer: &str| {
        let old = "    keep_last: 2\n    eval_fraction: 0.1\n";
        assert!(smoke.contains(old));
        let text = smoke.replacen(old, &format!("    keep_last: 1\n    eval_fraction: 0.1\n    save_every_samples: 8\n    select: score\n    scorer: {scorer}\n"), 1);
        std::fs::write(tmp.path().join("scored.yaml"), text).unwrap();
        recipe::load(&DirSource(tmp.path().to_path_buf()), "scored.yaml")
    };
    let recipe = with(r#"[sh, -c, 'case "$0" in *samples_8) echo "scored"; echo 10 ;; *) echo 1 ;; esac']"#).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let out = tmp.path().join("out");
    let loc = Location::open_or_create(out.to_str().unwrap()).unwrap();
    let job = |recipe| TrainJob { recipe, recipe_dir: Some(repo().join("pipelines/train")), out: &loc, threads: 2, max_steps: Some(3), on_change: train::OnChange::Refuse };
    let report = rt.block_on(train::train(job(&recipe), &mut |_| {})).expect("training runs");
    let p = &report.phases[0];
    assert_eq!(p.chosen.dir, "phase-1-knowledge/samples_8", "{p:?}");
    assert_eq!(p.chosen.score, Some(10.0));
    // The best is kept beside the newest one (keep_last: 1), and phase 2 started from it.
    let kept: Vec<&str> = p.checkpoints.iter().map(|c| c.dir.as_str()).collect();
    assert_eq!(kept, ["phase-1-knowledge/samples_8", "phase-1-knowledge/samples_24"], "{p:?}");
    assert!(out.join("phase-1-knowledge/samples_8/model.safetensors").is_file());
    assert!(!out.join("phase-1-knowledge/samples_16/model.safetensors").exists(), "neither best nor newest: rotated away");

    // A scorer that prints no number stops the run with what it printed.
    let recipe = with("[sh, -c, 'echo fine']").unwrap();
    let loc2 = Location::open_or_create(tmp.path().join("out2").to_str().unwrap()).unwrap();
    let job2 = TrainJob { out: &loc2, ..job(&recipe) };
    let e = rt.block_on(train::train(job2, &mut |_| {})).unwrap_err().to_string();
    assert!(e.contains("printed \"fine\" last") && e.contains("a number"), "{e}");
    let e = with("[]").unwrap_err().to_string();
    assert!(e.contains("phases[0].scorer") && e.contains("needs a program"), "{e}");
    let old = "    keep_last: 2\n    eval_fraction: 0.1\n";
    std::fs::write(tmp.path().join("s.yaml"), smoke.replacen(old, &format!("{old}    select: score\n"), 1)).unwrap();
    let e = recipe::load(&DirSource(tmp.path().to_path_buf()), "s.yaml").unwrap_err().to_string();
    assert!(e.contains("select: score needs `scorer"), "{e}");
}

/// tests/reference/train_load_check.py on the folder: transformers' logits after a few tokens
/// against labflow's own loader's. Needs LABFLOW_TORCH_PYTHON (a python with torch and
/// transformers); skipped with a message without it.
fn transformers_agrees(dir: &Path, model: &labflow::model::Model) {
    let Ok(python) = std::env::var("LABFLOW_TORCH_PYTHON") else {
        eprintln!("SKIPPED: the transformers load check of {}; set LABFLOW_TORCH_PYTHON to a python with torch and transformers", dir.display());
        return;
    };
    let ids = [1u32, 4093, 28, 2683, 314, 253, 1345, 30];
    let mut cmd = Command::new(python);
    cmd.arg(repo().join("tests/reference/train_load_check.py")).arg(dir).args(ids.iter().map(|i| i.to_string()));
    let out = cmd.output().expect("run the transformers check");
    assert!(out.status.success(), "transformers could not load {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON from the check");
    assert!(v["chat"].as_str().unwrap().contains("Hello"), "{v}");
    let logits = model.forward_all(&ids, &mut labflow::model::KvCache::new(model.config(), ids.len())).unwrap();
    let last = &logits[(ids.len() - 1) * model.config().vocab_size..];
    for pair in v["logits"].as_array().unwrap() {
        let (id, want) = (pair[0].as_u64().unwrap() as usize, pair[1].as_f64().unwrap());
        assert!((f64::from(last[id]) - want).abs() < 1e-3, "id {id}: labflow {} vs transformers {want}", last[id]);
    }
}

/// Removes a file when dropped.
struct Guard(PathBuf);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
fn scopeguard(p: PathBuf) -> Guard {
    Guard(p)
}

#[test]
fn loss_masks_train_assistant_turns_with_their_end_token_and_unmask_every_turn_but_system() {
    let Some(path) = common::model() else { return };
    let gguf = labflow::model::GgufFile::open(&path).unwrap();
    let tok = labflow::model::Tokenizer::from_gguf(&gguf).unwrap();
    let renderer = labflow::train::data::Renderer::new(labflow::model::ChatTemplate::from_gguf(&gguf).unwrap(), tok);
    let tok = renderer.tokenizer();
    let msg = |role: &str, content: &str| labflow::mix::records::Message::new(role, content);
    let mut record = labflow::mix::records::Record {
        id: "r1".into(),
        messages: vec![msg("system", "Be brief."), msg("user", "What is the capital of France?"), msg("assistant", "Paris."), msg("user", "And of Italy?"), msg("assistant", "Rome.")],
        metadata: Default::default(),
        unmask: false,
    };
    let trained = |s: &labflow::train::data::Sample| -> String {
        let ids: Vec<u32> = s.tokens.iter().zip(&s.train).filter(|(_, &t)| t).map(|(&i, _)| i).collect();
        tok.decode(&ids, false).unwrap()
    };
    let s = renderer.render(&record).unwrap();
    assert_eq!(s.tokens.len(), s.train.len());
    // Both assistant turns with the <|im_end|> that closes each; no header, no user or system text.
    assert_eq!(trained(&s), "Paris.<|im_end|>Rome.<|im_end|>");
    assert!(!s.train[0]);
    record.unmask = true;
    let s = renderer.render(&record).unwrap();
    assert_eq!(trained(&s), "What is the capital of France?<|im_end|>Paris.<|im_end|>And of Italy?<|im_end|>Rome.<|im_end|>");
    // A conversation with no assistant turn has nothing to train: dropped and counted.
    record.unmask = false;
    record.messages.truncate(2);
    let (kept, dropped) = renderer.prepare(std::slice::from_ref(&record), 1, 4096);
    assert!(kept.is_empty());
    assert_eq!(dropped.nothing_to_train, 1);
    // Too short and too long are counted, not silently lost.
    record.messages.push(msg("assistant", "Paris."));
    let (_, dropped) = renderer.prepare(std::slice::from_ref(&record), 1000, 4096);
    assert_eq!(dropped.too_short, 1);
    let (_, dropped) = renderer.prepare(std::slice::from_ref(&record), 1, 10);
    assert_eq!(dropped.too_long, 1);
}

#[test]
fn bad_recipes_are_refused_with_the_key_path() {
    let tmp = tempfile::tempdir().unwrap();
    let write = |text: &str| {
        std::fs::write(tmp.path().join("r.yaml"), text).unwrap();
        recipe::load(&DirSource(tmp.path().to_path_buf()), "r.yaml").unwrap_err().to_string()
    };
    let good = std::fs::read_to_string(repo().join("pipelines/train/smoke.yaml")).unwrap();
    let e = write(&good.replacen("max_tokens_per_minibatch: 2048", "max_tokens_per_minibatch: 100", 1));
    assert!(e.contains("r.yaml:") && e.contains("phases[0].max_tokens_per_minibatch") && e.contains("at least max_seq_len"), "{e}");
    let e = write(&good.replacen("epochs: 2", "epochs: 0", 1));
    assert!(e.contains("epochs must be at least 1"), "{e}");
    let e = write(&good.replacen("lr: 2.0e-3", "lr: fast", 1));
    assert!(e.contains("r.yaml:") && e.contains("lr"), "{e}");
    let e = write(&good.replacen("version: 1", "version: 9", 1));
    assert!(e.contains("unsupported recipe version 9"), "{e}");
    let e = write(&good.replacen("    hidden: 64", "    hidden: 64\n    colour: red", 1));
    assert!(e.contains("colour"), "{e}");
}

/// Every file under `root`, relative to it, with its bytes.
fn files(root: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// `labflow train --output s3://…` on a real S3-compatible server (s3s-fs): the checkpoints and
/// reports are the files a run into a local folder writes, the weights byte for byte, and a rerun
/// on the bucket resumes from its state there and trains nothing.
#[test]
fn training_into_an_s3_bucket_writes_what_a_local_run_writes_and_resumes_there() {
    if common::model().is_none() {
        return;
    }
    let Some(server) = common::s3::start(&[]) else { return };
    let tmp = tempfile::tempdir().unwrap();
    let recipe = repo().join("pipelines/train/smoke.yaml");
    let local = tmp.path().join("local");
    let args = |out: &str| -> Vec<String> {
        ["train", "--recipe", recipe.to_str().unwrap(), "--output", out, "--max-steps", "2", "--threads", "2", "--json"].map(String::from).to_vec()
    };
    let report = |out: &std::process::Output| -> serde_json::Value {
        assert!(out.status.success(), "labflow train: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("JSON report")
    };
    let local_report = report(&Command::new(env!("CARGO_BIN_EXE_labflow")).args(args(local.to_str().unwrap())).output().unwrap());
    let url = format!("s3://{}/train", common::s3::BUCKET);
    let s3_args = args(&url);
    let s3_report = report(&common::s3::labflow(&server, &s3_args.iter().map(String::as_str).collect::<Vec<_>>()));
    assert_eq!(s3_report["train_steps"], 4, "2 steps in each of the 2 phases");
    assert_eq!(s3_report["phases"], local_report["phases"]);

    let (on_disk, in_bucket) = (files(&local), files(&server.root().join(common::s3::BUCKET).join("train")));
    let names = |m: &std::collections::BTreeMap<String, Vec<u8>>| m.keys().filter(|k| !k.split('/').any(|c| c.starts_with('.'))).cloned().collect::<Vec<_>>();
    assert_eq!(names(&in_bucket), names(&on_disk), "the bucket holds the files of the local run");
    let weights: Vec<&String> = on_disk.keys().filter(|k| k.ends_with("model.safetensors")).collect();
    assert!(weights.len() >= 2, "a checkpoint per phase: {weights:?}");
    for name in weights {
        assert!(in_bucket[name] == on_disk[name], "{name} differs between the bucket and the local run");
    }

    let again = report(&common::s3::labflow(&server, &s3_args.iter().map(String::as_str).collect::<Vec<_>>()));
    assert_eq!(again["train_steps"], 0, "a rerun on the bucket resumes from its state there");
    assert_eq!(again["phases"], s3_report["phases"]);
}
