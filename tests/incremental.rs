//! Incremental regeneration over a copy of the real taxonomy with the deterministic test
//! teacher: what a rerun costs after each kind of edit (counted in the summary's
//! `teacher_calls`), `dry_run`'s plan, and — as a property — that random sequences of edits
//! maintain exactly the output a fresh full run over the final state writes with the same
//! response cache, with 1 and 4 workers.

mod common;

use common::{changed_leaves, copy_tree};
use labflow::documents::{ChunkOptions, WordEstimate};
use labflow::engine::generate::{dry_run, generate, GenerateConfig, Generated};
use labflow::engine::increment::Why;
use labflow::engine::RunOptions;
use labflow::operators::BuildContext;
use labflow::pipeline::{self, DirSource, Plan};
use labflow::store::dataset::read_bytes;
use labflow::store::Location;
use labflow::teacher::test_teacher::TestTeacher;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

/// A scratch taxonomy (a copy of the real one, or of its skills only), pipelines folder and
/// run folder. The skills-only copy puts the foundational skills (which no built-in pipeline
/// generates) under `compositional_skills/foundational/`, so that all 14 of its leaves run.
struct Scratch {
    _dir: tempfile::TempDir,
    taxonomy: PathBuf,
    pipelines: PathBuf,
    runs: u32,
}

impl Scratch {
    fn new(skills_only: bool) -> Scratch {
        let dir = tempfile::tempdir().unwrap();
        let taxonomy = dir.path().join("taxonomy");
        if skills_only {
            copy_tree(&data().join("taxonomy/compositional_skills"), &taxonomy.join("compositional_skills"));
            copy_tree(&data().join("taxonomy/foundational_skills"), &taxonomy.join("compositional_skills/foundational"));
        } else {
            copy_tree(&data().join("taxonomy"), &taxonomy);
        }
        let pipelines = dir.path().join("pipelines");
        copy_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines"), &pipelines);
        Scratch { _dir: dir, taxonomy, pipelines, runs: 0 }
    }

    fn leaves(&self) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap().map(|e| e.unwrap()) {
                if e.file_type().unwrap().is_dir() {
                    walk(root, &e.path(), out);
                } else if e.file_name() == "qna.yaml" {
                    out.push(dir.strip_prefix(root).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        walk(&self.taxonomy, &self.taxonomy, &mut out);
        out.sort();
        out
    }

    /// Rewrite the leaf's task description (which every seed row carries).
    fn edit(&self, leaf: &str, tag: &str) {
        let path = self.taxonomy.join(leaf).join("qna.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let edited: Vec<String> = text
            .lines()
            .map(|l| if l.starts_with("task_description:") { format!("task_description: edited for test {tag}") } else { l.to_string() })
            .collect();
        assert_ne!(edited.join("\n"), text.trim_end(), "{leaf} has no task_description line");
        std::fs::write(path, edited.join("\n") + "\n").unwrap();
    }

    fn move_leaf(&self, leaf: &str, to: &str) {
        let target = self.taxonomy.join(to);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::rename(self.taxonomy.join(leaf), target).unwrap();
    }

    fn delete(&self, leaf: &str) {
        std::fs::remove_dir_all(self.taxonomy.join(leaf)).unwrap();
    }

    /// Give the leaf a copy at `to` (a new leaf with another's content).
    fn add_copy(&self, leaf: &str, to: &str) {
        copy_tree(&self.taxonomy.join(leaf), &self.taxonomy.join(to));
    }

    /// Change the system line of a prompt file under `pipelines/prompts/`.
    fn edit_prompt(&self, file: &str, tag: &str) {
        let path = self.pipelines.join("prompts").join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let edited: Vec<String> =
            text.lines().map(|l| if l.starts_with("system:") { format!("{l} (prompt {tag})") } else { l.to_string() }).collect();
        std::fs::write(path, edited.join("\n") + "\n").unwrap();
    }

    fn plans(&self, set: &str) -> Vec<Arc<Plan>> {
        let ctx = BuildContext { scale: 2, ..BuildContext::default() };
        ["freeform_skills", "grounded_skills", "knowledge"]
            .iter()
            .map(|p| {
                Arc::new(
                    pipeline::load(&DirSource(self.pipelines.clone()), &format!("{set}/{p}.yaml"), &ctx).unwrap_or_else(|e| panic!("{e}")),
                )
            })
            .collect()
    }

    fn config(&mut self, set: &str, out: &Location, teacher: Arc<TestTeacher>, workers: usize) -> GenerateConfig {
        self.runs += 1;
        GenerateConfig {
            taxonomy: Location::open(self.taxonomy.to_str().unwrap()).unwrap(),
            docs: Some(Location::open(data().join("docs").to_str().unwrap()).unwrap()),
            plans: self.plans(set),
            teacher,
            counter: Arc::new(WordEstimate),
            chunk: ChunkOptions { max_tokens: 1500, overlap_tokens: 50 },
            output: out.clone(),
            only: None,
            run: RunOptions { workers, max_in_flight: 8, ..RunOptions::default() },
            run_id: format!("run-{}", self.runs),
            progress: None,
        }
    }

    async fn run(&mut self, set: &str, out: &Location, teacher: Arc<TestTeacher>, workers: usize) -> Generated {
        let g = generate(self.config(set, out, teacher, workers)).await.unwrap_or_else(|e| panic!("generate failed: {e}"));
        assert!(g.summary.failed.is_empty(), "{:?}", g.summary.failed);
        g
    }
}

fn memory() -> Location {
    Location::memory(Arc::new(object_store::memory::InMemory::new()), "run")
}

/// Every leaf's committed files, by leaf id and file kind (run ids differ between runs).
async fn output(out: &Location, g: &Generated) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for leaf in &g.manifest.leaves {
        for f in leaf.files.iter().filter(|f| f.path.ends_with(".jsonl")) {
            let bytes = read_bytes(out, &f.path).await.unwrap().unwrap_or_else(|| panic!("manifest lists {} but it is missing", f.path));
            let kind = f.path.split('/').next().unwrap();
            files.insert(format!("{kind}:{}", leaf.leaf), String::from_utf8(bytes.to_vec()).unwrap());
        }
    }
    files
}

fn why_of<'a>(g: &'a Generated, leaf: &str) -> Option<&'a Why> {
    g.increment.compute.iter().find(|c| c.leaf == leaf).map(|c| &c.why)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_edit_costs_only_what_it_changes() {
    let mut s = Scratch::new(false);
    let out = memory();
    let teacher = || TestTeacher::new(2, Duration::ZERO);
    let first = s.run("full", &out, teacher(), 1).await;
    // The taxonomy's 16 leaves but its foundational ones, which no built-in pipeline generates.
    let n = s.leaves().iter().filter(|l| !l.starts_with("foundational_skills/")).count() as u64;
    assert_eq!((first.summary.computed, first.summary.leaves), (n, n), "{:?}", first.skipped);
    assert!(n >= 5);
    assert!(first.summary.teacher_calls > 0);

    // Unchanged: nothing computed, nothing called, same output.
    let again = s.run("full", &out, teacher(), 1).await;
    assert_eq!((again.summary.teacher_calls, again.summary.computed, again.summary.kept), (0, 0, n), "{:?}", again.summary);
    assert_eq!(output(&out, &again).await, output(&out, &first).await);

    // Unchanged leaves are planned from the seed key recorded with them, without expanding them
    // again; the key covers the chunk sizes, so other sizes recompute the knowledge leaves (their
    // seed rows are other chunks) and nothing else.
    assert!(first.manifest.leaves.iter().all(|l| !l.seeds_key.is_empty()), "{:?}", first.manifest.leaves);
    let knowledge: Vec<&str> = first.manifest.leaves.iter().filter(|l| l.kind == "knowledge").map(|l| l.leaf.as_str()).collect();
    assert!(!knowledge.is_empty());
    let mut cfg = s.config("full", &out, teacher(), 1);
    cfg.chunk.max_tokens = 700;
    let plan = dry_run(cfg).await.unwrap();
    let planned: Vec<(&str, &Why)> = plan.increment.compute.iter().map(|c| (c.leaf.as_str(), &c.why)).collect();
    assert_eq!(planned, knowledge.iter().map(|&l| (l, &Why::Edited)).collect::<Vec<_>>());

    // One leaf edited: the dry run names it, calls nothing; the run computes it alone.
    let edited = "compositional_skills/linguistics/synonyms";
    s.edit(edited, "1");
    let probe = teacher();
    let plan = dry_run(s.config("full", &out, Arc::clone(&probe), 1)).await.unwrap();
    assert_eq!(plan.increment.compute.iter().map(|c| (c.leaf.as_str(), &c.why)).collect::<Vec<_>>(), [(edited, &Why::Edited)]);
    assert!(plan.increment.estimated_requests() > 0);
    assert_eq!(probe.log.lock().unwrap().len(), 0, "a dry run called the teacher");
    let t = teacher();
    let g = s.run("full", &out, Arc::clone(&t), 1).await;
    assert_eq!((g.summary.computed, g.summary.kept), (1, n - 1));
    assert!(g.summary.teacher_calls > 0);
    assert!(
        t.log.lock().unwrap().iter().all(|(_, prompt)| !prompt.contains("to teach a large language model to list the synonyms")),
        "a call still used the old task description"
    );

    // Moved: computed again at its new id, every answer from the cache.
    let moved = "compositional_skills/linguistics/synonyms_moved";
    s.move_leaf(edited, moved);
    let g = s.run("full", &out, teacher(), 1).await;
    assert_eq!(why_of(&g, moved), Some(&Why::Moved { from: edited.into() }));
    assert_eq!((g.summary.teacher_calls, g.summary.computed, g.summary.removed, g.summary.leaves), (0, 1, 1, n));
    assert!(g.manifest.leaves.iter().all(|l| l.leaf != edited));

    // Deleted: gone from the manifest at no cost; its files go once no manifest lists them.
    let deleted = "compositional_skills/grounded/linguistics/writing/rewriting";
    let files: Vec<String> = g.manifest.leaves.iter().find(|l| l.leaf == deleted).unwrap().files.iter().map(|f| f.path.clone()).collect();
    s.delete(deleted);
    let g = s.run("full", &out, teacher(), 1).await;
    assert_eq!((g.summary.teacher_calls, g.summary.computed, g.summary.removed, g.summary.leaves), (0, 0, 1, n - 1));
    assert!(g.manifest.leaves.iter().all(|l| l.leaf != deleted));
    assert!(read_bytes(&out, &files[0]).await.unwrap().is_some(), "a reader of the previous manifest lost its files");
    let g = s.run("full", &out, teacher(), 1).await;
    assert_eq!(g.summary.teacher_calls, 0);
    for f in &files {
        assert!(read_bytes(&out, f).await.unwrap().is_none(), "{f} outlived both manifests that could list it");
    }

    // A judge's prompt edited: every leaf of that pipeline is computed again, and the only calls
    // that reach the teacher are that judge's (the steps before it are answered by the cache).
    s.edit_prompt("skills/freeform_pair_judge.yaml", "1");
    let t = teacher();
    let g = s.run("full", &out, Arc::clone(&t), 1).await;
    let freeform = g.manifest.leaves.iter().filter(|l| l.pipeline == "freeform_skills").count() as u64;
    assert_eq!(g.summary.computed, freeform);
    let downstream = Why::Pipeline { steps: vec!["judge_pairs".into(), "good_pairs".into(), "dataset".into()] };
    assert!(g.increment.compute.iter().all(|c| c.why == downstream), "{:?}", g.increment.compute);
    let log = t.log.lock().unwrap();
    assert!(!log.is_empty());
    assert!(log.iter().all(|(_, prompt)| prompt.contains("(prompt 1)")), "a call other than the edited judge's reached the teacher");
}

/// One edit of the property test.
#[derive(Debug, Clone)]
enum Edit {
    Edit(usize),
    Move(usize),
    Delete(usize),
    Add(usize),
    Prompt,
}

fn edits() -> impl Strategy<Value = Vec<(Edit, bool)>> {
    let edit = prop_oneof![
        (0usize..64).prop_map(Edit::Edit),
        (0usize..64).prop_map(Edit::Move),
        (0usize..64).prop_map(Edit::Delete),
        (0usize..64).prop_map(Edit::Add),
        Just(Edit::Prompt),
    ];
    // Each edit is followed by a run with 1 worker or 4.
    proptest::collection::vec((edit, any::<bool>()), 1..5)
}

/// Each case is several whole runs, so the count is this test's own: the `proptest!` macro
/// would let PROPTEST_CASES (4000 in CI, meant for the parsers' fuzzing) set it.
/// `LABFLOW_INCREMENTAL_CASES=N` runs more.
fn cases() -> u32 {
    std::env::var("LABFLOW_INCREMENTAL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(32)
}

#[test]
fn incremental_runs_equal_a_fresh_run_over_the_final_state() {
    let config = ProptestConfig {
        cases: cases(),
        source_file: Some(file!()),
        test_name: Some("incremental_runs_equal_a_fresh_run_over_the_final_state"),
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let result = runner.run(&edits(), |steps| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let mut s = Scratch::new(true);
            let store = Arc::new(object_store::memory::InMemory::new());
            let out = Location::memory(store.clone(), "run");
            let teacher = || TestTeacher::new(2, Duration::ZERO);
            s.run("simple", &out, teacher(), 1).await;
            for (k, (edit, four)) in steps.iter().enumerate() {
                let leaves = s.leaves();
                let pick = |i: usize| leaves[i % leaves.len()].clone();
                match edit {
                    Edit::Edit(i) => s.edit(&pick(*i), &k.to_string()),
                    Edit::Move(i) => s.move_leaf(&pick(*i), &format!("compositional_skills/moved_{k}")),
                    Edit::Delete(i) if leaves.len() > 1 => s.delete(&pick(*i)),
                    Edit::Delete(_) => {}
                    Edit::Add(i) => s.add_copy(&pick(*i), &format!("compositional_skills/added_{k}")),
                    Edit::Prompt => s.edit_prompt("skills/simple_freeform.yaml", &k.to_string()),
                }
                s.run("simple", &out, teacher(), if *four { 4 } else { 1 }).await;
            }
            let last = s.run("simple", &out, teacher(), 1).await;
            prop_assert_eq!(last.summary.teacher_calls, 0);
            // A fresh run over the final state, with a copy of the same cache.
            let fresh = Location::memory(Arc::new(object_store::memory::InMemory::new()), "fresh");
            copy_cache(&out, &fresh).await;
            let full = s.run("simple", &fresh, teacher(), 1).await;
            prop_assert_eq!(full.summary.computed, full.summary.leaves);
            prop_assert_eq!(output(&out, &last).await, output(&fresh, &full).await);
            Ok(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

async fn copy_cache(from: &Location, to: &Location) {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let listed: Vec<_> = from.store.list(Some(&from.child("cache"))).try_collect().await.unwrap();
    assert!(!listed.is_empty());
    for meta in listed {
        let rel = from.relative(&meta.location).unwrap();
        let bytes = from.store.get(&meta.location).await.unwrap().bytes().await.unwrap();
        to.store.put(&to.child(&rel), bytes.into()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_change_pairs_recompute_exactly_the_changed_leaves() {
    for case in ["tc1_add_knowledge_leaf", "tc2_modify_skill_leaf", "tc4_three_skills_added"] {
        let dir = data().join("changes").join(case);
        let want = changed_leaves(&dir);
        assert!(!want.is_empty(), "{case}: CHANGES.txt lists no leaf");
        let mut s = Scratch::new(false);
        std::fs::remove_dir_all(&s.taxonomy).unwrap();
        copy_tree(&dir.join("before"), &s.taxonomy);
        let out = memory();
        // tc4's before-tree holds only foundational skills, which no built-in pipeline generates.
        let before = match generate(s.config("simple", &out, TestTeacher::new(2, Duration::ZERO), 1)).await {
            Ok(g) => g.manifest.leaves.iter().map(|l| l.leaf.clone()).collect::<Vec<_>>(),
            Err(labflow::engine::generate::GenerateError::Nothing(_)) if case.starts_with("tc4") => Vec::new(),
            Err(e) => panic!("{case}: {e}"),
        };
        std::fs::remove_dir_all(&s.taxonomy).unwrap();
        copy_tree(&dir.join("after"), &s.taxonomy);
        let plan = dry_run(s.config("simple", &out, TestTeacher::new(2, Duration::ZERO), 1)).await.unwrap();
        let after = s.run("simple", &out, TestTeacher::new(2, Duration::ZERO), 1).await;
        let computed: Vec<&str> = after.increment.compute.iter().map(|c| c.leaf.as_str()).collect();
        assert_eq!(computed, want, "{case}: computed other leaves than the change touched");
        assert_eq!(plan.increment.compute, after.increment.compute, "{case}: the dry run planned something else");
        let edited = computed.iter().filter(|c| before.contains(&c.to_string())).count() as u64;
        assert_eq!(edited, u64::from(case.starts_with("tc2")), "{case}");
        assert_eq!(after.summary.kept, before.len() as u64 - edited, "{case}");
        assert_eq!(after.summary.leaves, before.len() as u64 + computed.len() as u64 - edited, "{case}");
        assert!(after.summary.teacher_calls > 0, "{case}");
    }
}
