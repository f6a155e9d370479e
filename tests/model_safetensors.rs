//! Hugging Face safetensors folders against the GGUF path and against transformers.
//!
//! Always (no model file needed): small synthetic llama and qwen2 models written both as a
//! folder and as a GGUF file give the same logits (so the rope pairing chosen for each source is
//! right); F16, BF16 and sharded folders give bit-identical logits to an F32 folder of the same
//! rounded values; truncated or corrupt files, missing config keys or files, an unknown
//! architecture, a wrong dtype or shape are errors that name the file and the key or tensor.
//!
//! With the SmolLM2 GGUF (`bash models/fetch.sh`): the test writes a folder from it
//! (`models/hf/labflow-f32`, git-ignored: dequantised weights, Q/K rows un-permuted to Hugging
//! Face's layout, tokenizer.json from the `tokenizers` serialisation). That folder must give the
//! llama.cpp fixture's token ids, next-token logits within [`LOGIT_TOL_GGUF`] of the GGUF path and
//! the same 32 greedy tokens. Then against transformers (`tests/reference/safetensors_fixture.py`
//! → `tests/fixtures/model/safetensors_smollm2.json`): our folder's tensors equal those
//! transformers dequantised from the same GGUF, and our logits and greedy tokens equal torch's.
//! Where the script's own folders exist (`models/hf/smollm2-*`), they are loaded too.
//!
//! Without the GGUF those tests print `SKIPPED: run bash models/fetch.sh` and pass, unless
//! `LABFLOW_REQUIRE_MODEL=1` (CI), where a missing model is a failure.

#[path = "common/hf_folder.rs"]
mod hf_folder;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hf_folder::{round_to, tiny, write_json, write_tiny, write_tiny_gguf, Tiny};
use labflow::model::{ChatTemplate, GgufFile, Model, SafetensorsFolder, Tokenizer};
use labflow::teacher::{ChatMessage, Client, EmbeddedTeacher, Prompt, Request, Sampling};
use safetensors::Dtype;
use serde_json::{json, Value};

/// Largest |folder − GGUF| accepted for a next-token logit of SmolLM2. Both paths hold the same
/// f32 weights and run the same ops; they differ only in the order of the head dimensions that
/// rope pairs (HF layout + half-split vs permuted rows + interleaved), which reorders the f32
/// sums of q·k in the prompt's attention. Measured: 1.8e-5 to 4.5e-5 on the 5 prompts (0, bit
/// for bit, when that attention summed in f64), with every greedy token equal.
const LOGIT_TOL_GGUF: f32 = 2e-4;
/// Largest |labflow − transformers (torch f32, eager attention)| accepted on the recorded logits.
/// torch accumulates its f32 matmuls in f32 (blocked), labflow's reference in f64 over the same
/// weights. Measured on the 5 prompts: 2.2e-5 to 5.2e-5 (F32 weights), 3.3e-5 to 5.7e-5 (BF16
/// weights), on logits of magnitude up to ~30; the tolerance leaves a ~9x margin.
const LOGIT_TOL_TORCH: f32 = 5e-4;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn gguf_path() -> PathBuf {
    root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

struct Loaded {
    gguf: GgufFile,
    gguf_model: Model,
    folder: PathBuf,
    model: Model,
}

/// The GGUF, its model, the folder written from it and the folder's model, once per binary;
/// `None` (after printing SKIPPED) without the GGUF.
fn loaded() -> Option<&'static Loaded> {
    static LOADED: OnceLock<Option<Loaded>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let path = gguf_path();
            if !path.exists() {
                assert_ne!(
                    std::env::var("LABFLOW_REQUIRE_MODEL").as_deref(),
                    Ok("1"),
                    "LABFLOW_REQUIRE_MODEL=1 but {} is missing: run bash models/fetch.sh",
                    path.display()
                );
                return None;
            }
            let gguf = GgufFile::open(&path).expect("GGUF parses");
            let gguf_model = Model::from_gguf(&gguf).expect("GGUF model loads");
            let folder = root().join("models/hf/labflow-f32");
            hf_folder::folder_from_gguf(&gguf, &folder);
            let model = Model::load(&folder).expect("folder model loads");
            Some(Loaded { gguf, gguf_model, folder, model })
        })
        .as_ref()
        .or_else(|| {
            println!("SKIPPED: run bash models/fetch.sh");
            None
        })
}

fn fixture(name: &str) -> Value {
    let path = root().join("tests/fixtures/model").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture readable")).expect("fixture is JSON")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().expect("id array").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Max |Δ| between `logits` and the recorded `[[id, logit]…]` pairs of `r`.
fn diff_recorded(logits: &[f32], r: &Value) -> f32 {
    r["top_logits"]
        .as_array()
        .expect("top")
        .iter()
        .chain(r["sample_logits"].as_array().expect("sample"))
        .map(|p| (logits[p[0].as_u64().expect("id") as usize] - p[1].as_f64().expect("logit") as f32).abs())
        .fold(0.0, f32::max)
}

/// The folder model's 32 greedy tokens after each fixture prompt, computed once for the tests
/// that compare them (debug builds decode slowly).
fn folder_greedy(l: &Loaded, prompt: &[u32]) -> Vec<u32> {
    static CACHE: std::sync::Mutex<Vec<(Vec<u32>, Vec<u32>)>> = std::sync::Mutex::new(Vec::new());
    let cached = CACHE.lock().expect("cache lock").iter().find(|(p, _)| p == prompt).map(|(_, t)| t.clone());
    cached.unwrap_or_else(|| {
        let tokens = l.model.greedy(prompt, 32).expect("greedy");
        CACHE.lock().expect("cache lock").push((prompt.to_vec(), tokens.clone()));
        tokens
    })
}

fn logits_of(model: &Model, prompt: &[u32]) -> Vec<f32> {
    model.forward(prompt, &mut model.new_cache()).expect("forward")
}

// ---- synthetic models: always run ----

fn tiny_logits(model: &Model) -> Vec<f32> {
    let mut cache = model.new_cache();
    model.forward_all(&[3, 17, 42, 5, 63, 0, 9], &mut cache).expect("forward")
}

#[test]
fn tiny_folder_equals_tiny_gguf_for_llama_and_qwen2() {
    for (arch, tied) in [("llama", true), ("llama", false), ("qwen2", false), ("qwen2", true)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = tiny(arch, tied, 7);
        write_tiny(&t, dir.path(), Dtype::F32, 1);
        let gguf = dir.path().join("tiny.gguf");
        write_tiny_gguf(&t, &gguf);
        let from_folder = Model::load(dir.path()).expect("folder loads");
        let from_gguf = Model::load(&gguf).expect("gguf loads");
        assert_eq!(from_folder.config().rope_style, labflow::model::RopeStyle::HalfSplit);
        let (a, b) = (tiny_logits(&from_folder), tiny_logits(&from_gguf));
        let d = max_diff(&a, &b);
        println!("{arch} tied={tied}: max |folder − gguf| = {d:.2e} over {} logits", a.len());
        assert!(d <= 1e-5, "{arch} tied={tied}: folder and GGUF logits differ by {d}");
        assert_eq!(from_folder.greedy(&[1, 2, 3], 8).expect("greedy"), from_gguf.greedy(&[1, 2, 3], 8).expect("greedy"));
    }
}

#[test]
fn the_wrong_rope_pairing_would_be_caught() {
    // Guard for the test above: with the folder's Q/K rows left in GGUF order the logits differ,
    // so equality there really checks the layout.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut t = tiny("llama", true, 7);
    let (h, kv, c) = (4, 2, 32);
    for x in t.tensors.iter_mut() {
        if x.name.ends_with("q_proj.weight") {
            x.data = hf_folder::permute_rows(&x.data, h, c, false);
        } else if x.name.ends_with("k_proj.weight") {
            x.data = hf_folder::permute_rows(&x.data, kv, c, false);
        }
    }
    write_tiny(&t, dir.path(), Dtype::F32, 1);
    let gguf = dir.path().join("tiny.gguf");
    write_tiny_gguf(&tiny("llama", true, 7), &gguf);
    let d = max_diff(&tiny_logits(&Model::load(dir.path()).expect("loads")), &tiny_logits(&Model::load(&gguf).expect("loads")));
    assert!(d > 1e-2, "permuted rows should change the logits, got {d}");
}

#[test]
fn f16_bf16_and_shards_equal_f32_of_the_rounded_values() {
    for arch in ["llama", "qwen2"] {
        for dtype in [Dtype::F32, Dtype::F16, Dtype::BF16] {
            let t = tiny(arch, arch == "llama", 11);
            let rounded = Tiny {
                config: t.config.clone(),
                tensors: t
                    .tensors
                    .iter()
                    .map(|x| hf_folder::Tensor { data: x.data.iter().map(|&v| round_to(dtype, v)).collect(), ..x.clone() })
                    .collect(),
            };
            let reference = tempfile::tempdir().expect("tempdir");
            write_tiny(&rounded, reference.path(), Dtype::F32, 1);
            let want = tiny_logits(&Model::load(reference.path()).expect("loads"));
            for shards in [1, 3] {
                let dir = tempfile::tempdir().expect("tempdir");
                write_tiny(&t, dir.path(), dtype, shards);
                if shards > 1 {
                    assert!(dir.path().join("model.safetensors.index.json").is_file() && !dir.path().join("model.safetensors").exists());
                }
                let got = tiny_logits(&Model::load(dir.path()).expect("loads"));
                assert_eq!(got, want, "{arch} {dtype} in {shards} shard(s): logits must be bit-identical to F32 of the rounded values");
            }
        }
    }
}

/// A tiny llama folder in a fresh temp dir, after `edit` changed its files.
fn broken(edit: impl FnOnce(&Path)) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    write_tiny(&tiny("llama", true, 3), dir.path(), Dtype::F32, 1);
    edit(dir.path());
    let err = Model::load(dir.path()).err().map(|e| e.to_string()).unwrap_or_else(|| "loaded without error".into());
    println!("error: {}", err.replace(&dir.path().display().to_string(), "DIR"));
    (dir, err)
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let path = dir.join("config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    f(v.as_object_mut().expect("object"));
    write_json(dir, "config.json", &v);
}

#[test]
fn truncated_and_corrupt_weights_are_errors_naming_the_file() {
    let (_d, e) = broken(|d| {
        let p = d.join("model.safetensors");
        let b = std::fs::read(&p).expect("read");
        std::fs::write(&p, &b[..b.len() - 100]).expect("truncate");
    });
    assert!(e.contains("model.safetensors") && e.contains("not a valid safetensors file") && e.contains("truncated"), "{e}");
    let (_d, e) = broken(|d| {
        let p = d.join("model.safetensors");
        let mut b = std::fs::read(&p).expect("read");
        b[8] = b'#'; // the header's opening brace
        std::fs::write(&p, &b).expect("corrupt");
    });
    assert!(e.contains("model.safetensors") && e.contains("JSON"), "{e}");
    let (_d, e) = broken(|d| std::fs::write(d.join("model.safetensors"), b"\xff\xff\xff\xff\xff\xff\xff\x7f").expect("write"));
    assert!(e.contains("model.safetensors") && e.contains("header"), "{e}");
    let (_d, e) = broken(|d| std::fs::write(d.join("model.safetensors"), b"").expect("write"));
    assert!(e.contains("truncated") && e.contains("0 bytes"), "{e}");
}

#[test]
fn config_errors_name_the_key() {
    let (_d, e) = broken(|d| edit_config(d, |c| drop(c.remove("num_hidden_layers"))));
    assert!(e.contains("config.json") && e.contains("\"num_hidden_layers\" is missing"), "{e}");
    let (_d, e) = broken(|d| edit_config(d, |c| drop(c.insert("hidden_size".into(), json!("wide")))));
    assert!(e.contains("config.json") && e.contains("hidden_size") && e.contains("invalid type"), "{e}");
    let (_d, e) = broken(|d| {
        edit_config(d, |c| {
            c.insert("model_type".into(), json!("mamba"));
        })
    });
    assert!(e.contains("config.json") && e.contains("unsupported") && e.contains("\"mamba\"") && e.contains("llama, qwen2"), "{e}");
    let (_d, e) = broken(|d| {
        edit_config(d, |c| {
            c.remove("model_type");
            c.insert("architectures".into(), json!(["GPTNeoXForCausalLM"]));
        })
    });
    assert!(e.contains("GPTNeoXForCausalLM") && e.contains("\"architectures\""), "{e}");
    let (_d, e) = broken(|d| edit_config(d, |c| drop(c.insert("rope_parameters".into(), json!({"rope_type": "yarn", "factor": 4.0})))));
    assert!(e.contains("unsupported") && e.contains("yarn"), "{e}");
    let (_d, e) = broken(|d| std::fs::write(d.join("config.json"), "{\"hidden_size\": 32,\n  oops}").expect("write"));
    assert!(e.contains("config.json") && e.contains("not valid JSON") && e.contains("line 2"), "{e}");
}

#[test]
fn tensor_errors_name_the_tensor() {
    // A wrong dtype: the final norm stored as F64.
    let (_d, e) = broken(|d| {
        let t = tiny("llama", true, 3);
        let stored: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = t
            .tensors
            .iter()
            .map(|x| match x.name.as_str() {
                "model.norm.weight" => {
                    (x.name.clone(), Dtype::F64, x.shape.clone(), x.data.iter().flat_map(|&v| f64::from(v).to_le_bytes()).collect())
                }
                _ => (x.name.clone(), Dtype::F32, x.shape.clone(), x.data.iter().flat_map(|v| v.to_le_bytes()).collect()),
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = stored
            .iter()
            .map(|(n, dt, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*dt, s.clone(), b).expect("view")))
            .collect();
        safetensors::serialize_to_file(views, None, &d.join("model.safetensors")).expect("write");
    });
    assert!(
        e.contains("model.safetensors") && e.contains("\"model.norm.weight\"") && e.contains("dtype F64") && e.contains("F32, F16, BF16"),
        "{e}"
    );
    // A shape that disagrees with config.json.
    let (_d, e) = broken(|d| edit_config(d, |c| drop(c.insert("intermediate_size".into(), json!(40)))));
    assert!(e.contains("\"model.layers.0.mlp.gate_proj.weight\" has shape [48, 32], expected [40, 32]"), "{e}");
    // A missing tensor, and an untied head without lm_head.weight.
    let (_d, e) = broken(|d| {
        let mut t = tiny("llama", true, 3);
        t.tensors.retain(|x| x.name != "model.layers.1.self_attn.v_proj.weight");
        hf_folder::write_weights(d, &t.tensors, Dtype::F32, 1);
    });
    assert!(e.contains("\"model.layers.1.self_attn.v_proj.weight\" is absent") && e.contains("model.safetensors"), "{e}");
    let (_d, e) = broken(|d| edit_config(d, |c| drop(c.insert("tie_word_embeddings".into(), json!(false)))));
    assert!(e.contains("\"lm_head.weight\" is absent") && e.contains("tie_word_embeddings"), "{e}");
}

#[test]
fn missing_files_and_bad_shard_indexes_are_named() {
    let (_d, e) = broken(|d| std::fs::remove_file(d.join("config.json")).expect("rm"));
    assert!(e.contains("config.json") && e.contains("not found"), "{e}");
    let (_d, e) = broken(|d| std::fs::remove_file(d.join("model.safetensors")).expect("rm"));
    assert!(e.contains("model.safetensors") && e.contains("not found") && e.contains("model.safetensors.index.json"), "{e}");
    let sharded = |edit: &dyn Fn(&Path)| {
        let dir = tempfile::tempdir().expect("tempdir");
        write_tiny(&tiny("qwen2", false, 5), dir.path(), Dtype::BF16, 3);
        edit(dir.path());
        let e = Model::load(dir.path()).err().map(|e| e.to_string()).unwrap_or_default();
        (dir, e)
    };
    let (_d, e) = sharded(&|d| std::fs::remove_file(d.join("model-00002-of-00003.safetensors")).expect("rm"));
    assert!(e.contains("model-00002-of-00003.safetensors") && e.contains("not found") && e.contains("names it as the shard of"), "{e}");
    let (_d, e) = sharded(&|d| {
        let p = d.join("model.safetensors.index.json");
        let s = std::fs::read_to_string(&p).expect("read").replacen("model-00001-of-00003.safetensors", "../elsewhere.safetensors", 1);
        std::fs::write(&p, s).expect("write");
    });
    assert!(e.contains("model.safetensors.index.json") && e.contains("../elsewhere.safetensors") && e.contains("inside the folder"), "{e}");
    let (_d, e) = sharded(&|d| {
        let p = d.join("model.safetensors.index.json");
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&p).expect("read")).expect("json");
        v["weight_map"]["model.norm.weight"] = json!("model-00001-of-00003.safetensors");
        std::fs::write(&p, v.to_string()).expect("write");
    });
    assert!(e.contains("places tensor \"model.norm.weight\" in this shard"), "{e}");
    // The teacher names a missing tokenizer file before reading any weights.
    let dir = tempfile::tempdir().expect("tempdir");
    write_tiny(&tiny("llama", true, 3), dir.path(), Dtype::F32, 1);
    let e = EmbeddedTeacher::load(dir.path()).expect_err("no tokenizer.json").to_string();
    assert!(e.contains("tokenizer.json") && e.contains("not found"), "{e}");
    // And so does `labflow chat --model FOLDER`.
    std::fs::remove_file(dir.path().join("config.json")).expect("rm");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_labflow"))
        .args(["chat", "--model", dir.path().to_str().expect("utf-8"), "Hi"])
        .output()
        .expect("labflow runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("tokenizer.json"), "{stderr}");
}

// ---- SmolLM2: needs the GGUF ----

#[test]
fn folder_gives_the_gguf_logits_and_greedy_tokens() {
    let Some(l) = loaded() else { return };
    assert_eq!(l.model.config().rope_style, labflow::model::RopeStyle::HalfSplit);
    assert_eq!(l.gguf_model.config().rope_style, labflow::model::RopeStyle::Interleaved);
    let (mut a, mut b) = (l.model.config().clone(), l.gguf_model.config().clone());
    a.rope_style = b.rope_style;
    b.context_length = a.context_length;
    assert_eq!(a, b, "same configuration apart from the rope pairing");
    let fx = fixture("llama_cpp_smollm2.json");
    let mut report = vec!["prompt          tok | max|folder − GGUF| (all 49152 logits) | greedy equal / llama.cpp F32 equal".to_string()];
    let mut failures = Vec::new();
    for case in fx["greedy"].as_array().expect("greedy cases") {
        let name = case["name"].as_str().expect("name");
        let prompt = ids(&case["prompt_ids"]);
        let d = max_diff(&logits_of(&l.model, &prompt), &logits_of(&l.gguf_model, &prompt));
        let want = ids(&case["f32"]["tokens"]);
        let got = folder_greedy(l, &prompt);
        let gguf = l.gguf_model.greedy(&prompt, want.len()).expect("greedy");
        report.push(format!("{name:14} {:3} | {d:.2e} | {} / {}", prompt.len(), got == gguf, got == want));
        if d > LOGIT_TOL_GGUF {
            failures.push(format!("{name}: folder vs GGUF max |Δlogit| {d} > {LOGIT_TOL_GGUF}"));
        }
        if got != gguf || got != want {
            failures.push(format!("{name}: greedy tokens differ: folder {got:?}, GGUF {gguf:?}, llama.cpp F32 {want:?}"));
        }
    }
    println!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{}\n{}", report.join("\n"), failures.join("\n"));
}

/// The folders to check the tokenizer and template of: ours, and the script's when present.
fn folders(l: &Loaded) -> Vec<PathBuf> {
    let mut out = vec![l.folder.clone()];
    for name in ["smollm2-f32", "smollm2-f32-sharded", "smollm2-bf16-sharded"] {
        let p = root().join("models/hf").join(name);
        if p.is_dir() {
            out.push(p);
        } else {
            println!("NOTE: {} absent; run tests/reference/safetensors_fixture.py to check transformers' own folders too", p.display());
        }
    }
    out
}

#[test]
fn tokenizer_and_chat_template_from_the_folder() {
    let Some(l) = loaded() else { return };
    let fx = fixture("llama_cpp_smollm2.json");
    let hf = fixture("safetensors_smollm2.json");
    let gguf_template = ChatTemplate::from_gguf(&l.gguf).expect("template");
    for dir in folders(l) {
        let tok = Tokenizer::from_hf_folder(&dir).expect("tokenizer.json loads");
        assert_eq!((tok.bos_id(), tok.eos_id(), tok.vocab_size()), (Some(1), Some(2), 49152), "{}", dir.display());
        for (case, theirs) in fx["tokenize"].as_array().expect("cases").iter().zip(hf["tokenize"].as_array().expect("hf cases")) {
            let text = case["text"].as_str().expect("text");
            let got = tok.encode(text).expect("encodes");
            assert_eq!(got, ids(&case["ids"]), "{}: ids of {text:?} vs llama.cpp", dir.display());
            assert_eq!(got, ids(&theirs["ids"]), "{}: ids of {text:?} vs transformers", dir.display());
            assert_eq!(tok.decode(&got, false).expect("decodes"), text);
        }
        let template = ChatTemplate::from_hf_folder(&dir).expect("template");
        for case in fx["chat"].as_array().expect("chat") {
            let msgs: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).expect("messages");
            let agp = case["add_generation_prompt"].as_bool().expect("flag");
            assert_eq!(template.render(&msgs, agp).expect("renders"), case["rendered"].as_str().expect("rendered"));
            assert_eq!(template.render(&msgs, agp).expect("renders"), gguf_template.render(&msgs, agp).expect("renders"));
        }
        for case in hf["greedy"].as_array().expect("greedy") {
            if case["kind"] == "chat" {
                let msgs: Vec<ChatMessage> = serde_json::from_value(
                    fx["greedy"].as_array().expect("g").iter().find(|c| c["name"] == case["name"]).expect("case")["prompt"].clone(),
                )
                .expect("messages");
                let prompt = tok.encode(&template.render(&msgs, true).expect("renders")).expect("encodes");
                assert_eq!(prompt, ids(&case["hf_prompt_ids"]), "{}: chat prompt ids vs transformers' apply_chat_template", case["name"]);
            }
        }
    }
}

#[test]
fn weights_equal_what_transformers_dequantised() {
    let Some(l) = loaded() else { return };
    let folder = SafetensorsFolder::open(&l.folder).expect("opens");
    let hf = fixture("safetensors_smollm2.json");
    let tensors = hf["tensors"].as_object().expect("tensors");
    assert_eq!(folder.tensor_names(), tensors.keys().map(String::as_str).collect::<Vec<_>>(), "same tensor names as transformers wrote");
    let (mut worst_head, mut worst_sum) = (0f64, 0f64);
    for (name, want) in tensors {
        let shape: Vec<usize> = want["shape"].as_array().expect("shape").iter().map(|d| d.as_u64().expect("dim") as usize).collect();
        let data = folder.tensor_f32(name, &shape).expect("tensor");
        let head: Vec<f64> = data.iter().take(8).map(|&v| f64::from(v)).collect();
        let want_head: Vec<f64> = want["head"].as_array().expect("head").iter().map(|v| v.as_f64().expect("value")).collect();
        worst_head = head.iter().zip(&want_head).map(|(a, b)| (a - b).abs()).fold(worst_head, f64::max);
        let sum: f64 = data.iter().map(|&v| f64::from(v)).sum();
        let abs_sum: f64 = data.iter().map(|&v| f64::from(v).abs()).sum();
        let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1.0);
        worst_sum = worst_sum.max(rel(sum, want["sum"].as_f64().expect("sum"))).max(rel(abs_sum, want["abs_sum"].as_f64().expect("abs")));
    }
    println!("{} tensors: max |Δ| of the first values {worst_head:.2e}, max relative Δ of sums {worst_sum:.2e}", tensors.len());
    assert!(worst_head == 0.0, "first values differ from transformers' by up to {worst_head}");
    assert!(worst_sum < 1e-9, "sums differ from transformers' by up to {worst_sum} (relative)");
}

#[test]
fn logits_and_greedy_tokens_equal_transformers() {
    let Some(l) = loaded() else { return };
    let hf = fixture("safetensors_smollm2.json");
    let mut report = vec!["prompt          | ours vs torch f32: max|Δlogit| greedy | script folders vs GGUF: max|Δlogit| | bf16 vs torch bf16: max|Δlogit| greedy".to_string()];
    let mut failures = Vec::new();
    let extra: Vec<(String, Model)> = ["smollm2-f32", "smollm2-f32-sharded", "smollm2-bf16-sharded"]
        .iter()
        .map(|n| (n.to_string(), root().join("models/hf").join(n)))
        .filter(|(_, p)| p.is_dir())
        .map(|(n, p)| (n, Model::load(&p).expect("script folder loads")))
        .collect();
    if extra.is_empty() {
        println!("NOTE: models/hf/smollm2-* absent; run tests/reference/safetensors_fixture.py to load transformers' own folders too");
    }
    for case in hf["greedy"].as_array().expect("greedy") {
        let name = case["name"].as_str().expect("name");
        let prompt = ids(&case["prompt_ids"]);
        let ours = logits_of(&l.model, &prompt);
        let d = diff_recorded(&ours, case);
        let want = ids(&case["tokens"]);
        let same = folder_greedy(l, &prompt) == want;
        if d > LOGIT_TOL_TORCH || !same {
            failures.push(format!("{name}: vs torch max |Δlogit| {d} (tolerance {LOGIT_TOL_TORCH}), greedy equal {same}"));
        }
        let mut cols = Vec::new();
        let gguf_logits = logits_of(&l.gguf_model, &prompt);
        for (folder, model) in &extra {
            let logits = logits_of(model, &prompt);
            if folder.contains("bf16") {
                let d16 = diff_recorded(&logits, &case["bf16"]);
                let want16 = ids(&case["bf16"]["tokens"]);
                let same16 = model.greedy(&prompt, want16.len()).expect("greedy") == want16;
                cols.push(format!("{d16:.1e} {same16}"));
                if d16 > LOGIT_TOL_TORCH || !same16 {
                    failures.push(format!("{name}: {folder} vs torch on the same BF16 weights: max |Δlogit| {d16}, greedy equal {same16}"));
                }
            } else {
                let dg = max_diff(&logits, &gguf_logits);
                cols.push(format!("{dg:.1e}"));
                if dg > LOGIT_TOL_GGUF {
                    failures.push(format!("{name}: {folder} (written by transformers) vs GGUF max |Δlogit| {dg} > {LOGIT_TOL_GGUF}"));
                }
            }
        }
        report.push(format!("{name:14} | {d:.1e} {same} | {}", cols.join(" | ")));
    }
    println!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{}\n{}", report.join("\n"), failures.join("\n"));
}

#[tokio::test]
async fn the_teacher_and_the_cli_open_a_folder() {
    let Some(l) = loaded() else { return };
    let folder_teacher = EmbeddedTeacher::load(&l.folder).expect("teacher from folder");
    let gguf_teacher = EmbeddedTeacher::load(gguf_path()).expect("teacher from GGUF");
    let (a, b) = (folder_teacher.identity(), gguf_teacher.identity());
    assert!(a.starts_with("embedded-hf:labflow-f32@") && b.starts_with("embedded:") && a != b, "{a} vs {b}");
    let request = Request {
        model: String::new(),
        prompt: Prompt::Chat(vec![ChatMessage::new("user", "Name a color.")]),
        sampling: Sampling::greedy(8),
    };
    let from_folder = folder_teacher.complete(&request).await.expect("complete");
    let from_gguf = gguf_teacher.complete(&request).await.expect("complete");
    assert_eq!(from_folder.choices, from_gguf.choices, "same greedy text from the folder and the GGUF");
    let scores =
        folder_teacher.score(&Prompt::Text("The capital of France is".into()), &[" Paris".into(), " London".into()]).await.expect("score");
    assert!(scores[0] > scores[1], "{scores:?}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_labflow"))
        .args(["chat", "--model", l.folder.to_str().expect("utf-8"), "--max-tokens", "8", "Name a color."])
        .output()
        .expect("labflow chat runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), from_folder.choices[0].text.trim_end());
}
