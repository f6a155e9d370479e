//! `generate` end to end over the real taxonomy with the deterministic test teacher: the
//! built-in pipelines as golden tests (`BLESS=1 cargo test --test generate` rewrites
//! `tests/golden/`), the same output with 1 and 4 workers, reruns served by the cache, and
//! streaming (a judge call goes out before generation is over).

use labflow::documents::{ChunkOptions, WordEstimate};
use labflow::engine::generate::{generate, GenerateConfig, Generated};
use labflow::engine::RunOptions;
use labflow::operators::BuildContext;
use labflow::pipeline::{self, builtin, Plan};
use labflow::store::dataset::read_bytes;
use labflow::store::Location;
use labflow::teacher::test_teacher::TestTeacher;
use labflow::teacher::Client;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One leaf of each kind the pipelines handle.
const LEAVES: &[&str] = &[
    "compositional_skills/linguistics/synonyms",
    "compositional_skills/grounded/linguistics/inclusion",
    "knowledge/science/animals/birds/black_capped_chickadee",
];

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

fn plans(set: &str) -> Vec<Arc<Plan>> {
    let ctx = BuildContext { scale: 2, ..BuildContext::default() };
    let files = builtin::set(set).unwrap_or_else(|| panic!("no built-in set {set}"));
    files.iter().map(|f| Arc::new(pipeline::load(&builtin::Builtin, f, &ctx).unwrap_or_else(|e| panic!("{e}")))).collect()
}

async fn run(set: &str, workers: usize, teacher: Arc<dyn Client>, out: &Location, max_in_flight: usize) -> Generated {
    let config = GenerateConfig {
        taxonomy: Location::open(data().join("taxonomy").to_str().unwrap()).unwrap(),
        docs: Some(Location::open(data().join("docs").to_str().unwrap()).unwrap()),
        plans: plans(set),
        teacher,
        counter: Arc::new(WordEstimate),
        chunk: ChunkOptions { max_tokens: 1500, overlap_tokens: 50 },
        output: out.clone(),
        only: Some(LEAVES.iter().map(|s| s.to_string()).collect()),
        run: RunOptions { workers, max_in_flight, ..RunOptions::default() },
        run_id: "golden".into(),
        progress: None,
    };
    generate(config).await.unwrap_or_else(|e| panic!("generate failed: {e}"))
}

fn memory() -> Location {
    Location::memory(Arc::new(object_store::memory::InMemory::new()), "run")
}

/// A JSON value with every string longer than 100 characters replaced by its length and
/// blake3 hash: golden files stay small (document chunks repeat in every knowledge row) and
/// still change when any text changes. Reject rows (JSON text) are shortened inside.
fn shorten(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) if s.starts_with('{') => match serde_json::from_str::<Value>(&s) {
            Ok(inner) => shorten(inner),
            Err(_) => shorten(Value::String(format!(" {s}"))),
        },
        Value::String(s) if s.chars().count() > 100 => {
            let head: String = s.chars().take(40).collect();
            Value::String(format!("{head}… [{} chars, blake3 {}]", s.chars().count(), &blake3::hash(s.as_bytes()).to_hex()[..16]))
        }
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, shorten(v))).collect()),
        Value::Array(a) => Value::Array(a.into_iter().map(shorten).collect()),
        other => other,
    }
}

/// Every committed JSONL file of a run, by path, read through the manifest, shortened.
async fn dump(out: &Location, g: &Generated) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for leaf in &g.manifest.leaves {
        assert!(leaf.error.is_none(), "{}: {:?}", leaf.leaf, leaf.error);
        for f in leaf.files.iter().filter(|f| f.path.ends_with(".jsonl")) {
            let bytes = read_bytes(out, &f.path).await.unwrap().unwrap_or_else(|| panic!("manifest lists {} but it is missing", f.path));
            let text = String::from_utf8(bytes.to_vec()).unwrap();
            let short: Vec<String> = text.lines().map(|l| shorten(serde_json::from_str(l).unwrap()).to_string()).collect();
            files.insert(f.path.clone(), short.iter().map(|l| format!("{l}\n")).collect::<String>());
        }
    }
    files
}

fn golden_path(set: &str, file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(set).join(file.replace("/golden.jsonl", ".jsonl"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_pipelines_match_their_golden_output_with_1_and_4_workers() {
    for set in ["full", "simple"] {
        let out = memory();
        let g = run(set, 1, TestTeacher::new(2, Duration::ZERO), &out, 8).await;
        assert_eq!(g.manifest.leaves.len(), LEAVES.len(), "{set}: {:?}", g.skipped);
        assert!(g.summary.rows > 0, "{set}: no rows at all: {:?}", g.summary);
        let files = dump(&out, &g).await;
        for (path, text) in &files {
            let golden = golden_path(set, path);
            if std::env::var_os("BLESS").is_some() {
                std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
                std::fs::write(&golden, text).unwrap();
            } else {
                let want = std::fs::read_to_string(&golden)
                    .unwrap_or_else(|_| panic!("{} is missing; run with BLESS=1 to create it", golden.display()));
                assert!(want == *text, "{set}: {path} differs from {} (BLESS=1 regenerates after a deliberate change)", golden.display());
            }
        }
        // Every leaf reached the end of its pipeline and every step saw rows.
        for op in &g.summary.operators {
            if g.manifest.leaves.iter().any(|l| l.pipeline == op.pipeline) {
                assert!(op.counts.rows_in > 0, "{set}: step {}/{} saw no rows", op.pipeline, op.name);
            }
        }

        let out4 = memory();
        let g4 = run(set, 4, TestTeacher::new(2, Duration::ZERO), &out4, 8).await;
        assert_eq!(dump(&out4, &g4).await, files, "{set}: 4 workers wrote something else than 1");
        assert_eq!(g4.summary.rows, g.summary.rows);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_keeps_every_leaf_and_without_a_manifest_the_cache_answers() {
    use object_store::ObjectStoreExt;
    let out = memory();
    let teacher = TestTeacher::new(2, Duration::ZERO);
    let first = run("simple", 2, teacher.clone(), &out, 8).await;
    assert!(first.summary.teacher_calls > 0);
    let files = dump(&out, &first).await;
    let second = run("simple", 2, teacher.clone(), &out, 8).await;
    assert_eq!((second.summary.teacher_calls, second.summary.computed), (0, 0), "{:?}", second.summary);
    assert_eq!(dump(&out, &second).await, files);
    // With the manifest gone every leaf is computed again, all of it from the cache.
    out.store.delete(&out.child("manifest.json")).await.unwrap();
    let third = run("simple", 2, teacher.clone(), &out, 8).await;
    assert_eq!((third.summary.teacher_calls, third.summary.computed), (0, LEAVES.len() as u64), "{:?}", third.summary);
    assert!(third.summary.cache_hits > 0);
    assert_eq!(dump(&out, &third).await, files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judges_run_while_generation_is_still_going() {
    let out = memory();
    let teacher = TestTeacher::new(2, Duration::from_millis(30));
    let g = run("full", 1, teacher.clone(), &out, 4).await;
    assert!(g.summary.rows > 0);
    let log = teacher.log.lock().unwrap().clone();
    let first_score = log.iter().position(|(kind, _)| kind == "score").expect("the full pipelines judge by log-probability");
    let last_complete = log.iter().rposition(|(kind, _)| kind == "complete").unwrap();
    assert!(
        first_score < last_complete,
        "the first judge call ({first_score}) came after the last generation call started ({last_complete}) of {}",
        log.len()
    );
}
