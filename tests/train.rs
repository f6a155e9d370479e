//! The trainer end to end on the smoke recipe (pipelines/train/smoke.yaml: the real taxonomy's
//! seed examples, a small random Llama with SmolLM2's tokenizer and chat template): both phases
//! run, the loss goes down, the checkpoints are Hugging Face folders labflow's own loader reads
//! back to the same losses, a rerun trains nothing, and `kill -9` mid-phase then a rerun ends
//! with the same weights, byte for byte, as a run that was never interrupted.

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
        let job = TrainJob { recipe, recipe_dir: Some(repo().join("pipelines/train")), out: &loc, threads: 2, max_steps };
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
