//! The dataflow against a plain expectation: synthetic leaves through an inline pipeline with
//! the deterministic test teacher, with 1 and 4 workers, checking data, rejects and counters.

use super::*;
use crate::operators::batch::text_batch;
use crate::operators::BuildContext;
use crate::pipeline::Source;
use crate::store::dataset::read_parquet;
use crate::teacher::test_teacher::TestTeacher;
use std::time::Duration;

struct Files(Vec<(&'static str, &'static str)>);

impl Source for Files {
    fn read(&self, rel: &str) -> Result<String, String> {
        self.0.iter().find(|(p, _)| *p == rel).map(|(_, t)| t.to_string()).ok_or_else(|| format!("cannot read {rel}"))
    }
    fn display(&self, rel: &str) -> String {
        rel.to_string()
    }
}

const PIPELINE: &str = r#"version: 1
name: t
leaf_kinds: [freeform_skill]
steps:
  - name: questions
    op: generate
    prompt: {generation: "Like {{ seed_question }}: [Start of Question] … [End of Question]", start_tags: ["[Start of Question]"], end_tags: ["[End of Question]"]}
    output: [question]
    n: scaled
  - name: judge
    op: critique
    prompt: {generation: "Rate {{ question }}"}
    labels: ["0", "1", "2"]
  - name: keep
    op: filter
    column: score
    test: ne
    value: "0"
  - name: unique
    op: dedup
    columns: [question]
  - name: few
    op: limit
    count: 5
"#;

fn plan() -> Arc<crate::pipeline::Plan> {
    let ctx = BuildContext { scale: 3, ..BuildContext::default() };
    Arc::new(crate::pipeline::load(&Files(vec![("t.yaml", PIPELINE)]), "t.yaml", &ctx).unwrap_or_else(|e| panic!("{e}")))
}

fn leaves(n: usize) -> Vec<LeafJob> {
    (0..n)
        .map(|i| LeafJob {
            id: format!("skills/leaf{i}"),
            hash: format!("h{i}"),
            kind: LeafKind::FreeformSkill,
            plan: 0,
            seeds: text_batch(&[
                ("task_description", vec![format!("task {i}"); 3]),
                ("seed_question", (0..3).map(|s| format!("question {i}.{s}?")).collect()),
                ("seed_response", vec!["answer".to_string(); 3]),
            ])
            .unwrap(),
            seeds_digest: String::new(),
            seeds_key: String::new(),
        })
        .collect()
}

fn run_job(workers: usize, out: &Location, teacher: Arc<TestTeacher>) -> (Summary, Manifest) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let stats: Arc<dyn Fn() -> ProcessDone + Send + Sync> = Arc::new(|| ProcessDone::default());
    let job = Arc::new(Job::new(vec![plan()], leaves(6), out.clone(), "r".into(), teacher, stats));
    let progress = Arc::new(Progress::new(job.steps.len()));
    let opts = RunOptions { workers, max_in_flight: 4, ..RunOptions::default() };
    let reports = run(Arc::clone(&job), &opts, rt.handle().clone(), progress).unwrap();
    summarise(&job.plans, &job.teacher.identity(), reports, Vec::new(), 0, 0.0)
}

fn data(out: &Location, manifest: &Manifest) -> Vec<RecordBatch> {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    manifest
        .leaves
        .iter()
        .flat_map(|l| l.files.iter().filter(|f| f.path.ends_with(".parquet")))
        .flat_map(|f| rt.block_on(read_parquet(out, &f.path)).unwrap())
        .collect()
}

#[test]
fn one_and_four_workers_commit_the_same_leaves_rows_and_rejects() {
    let out1 = Location::memory(Arc::new(object_store::memory::InMemory::new()), "a");
    let (s1, m1) = run_job(1, &out1, TestTeacher::new(2, Duration::ZERO));
    let out4 = Location::memory(Arc::new(object_store::memory::InMemory::new()), "b");
    let (s4, m4) = run_job(4, &out4, TestTeacher::new(2, Duration::from_millis(2)));
    assert_eq!(m1.leaves.len(), 6);
    assert_eq!(m1.leaves, m4.leaves, "manifests differ between 1 and 4 workers");
    assert_eq!(s1.operators, s4.operators);
    assert_eq!(data(&out1, &m1), data(&out4, &m4));

    // Counters add up: 3 seeds × 3 completions × 2 items per leaf; the judge keeps every row;
    // filter, dedup and limit split theirs into kept and rejected.
    let op = |name: &str| s1.operators.iter().find(|o| o.name == name).unwrap().counts;
    assert_eq!(op("questions").rows_in, 18);
    assert_eq!(op("questions").requests, 18);
    assert_eq!(op("questions").completions, 54);
    assert_eq!(op("questions").rows_out, 108);
    assert_eq!(op("judge").rows_in, 108);
    assert_eq!(op("judge").rows_out, 108);
    for name in ["keep", "unique", "few"] {
        let c = op(name);
        assert_eq!(c.rows_in, c.rows_out + c.rows_rejected, "{name}: {c:?}");
    }
    assert!(op("keep").rows_rejected > 0, "the test teacher's scores put some rows at 0");
    assert!(op("few").rows_out <= 30);
    assert_eq!(s1.rows, op("few").rows_out);
    assert_eq!(s1.rejects, ["keep", "unique", "few"].iter().map(|n| op(n).rows_rejected).sum::<u64>());
    for leaf in &m1.leaves {
        assert_eq!(leaf.files.len(), 4, "{leaf:?}");
        assert!(leaf.rows <= 5);
    }
}

#[test]
fn an_operator_error_stops_every_worker_and_names_the_operator() {
    const FILTER: &str = "version: 1\nname: f\nleaf_kinds: [freeform_skill]\nsteps:\n  - name: only_x\n    op: filter\n    column: task_description\n    test: eq\n    value: x\n";
    let plan = Arc::new(crate::pipeline::load(&Files(vec![("f.yaml", FILTER)]), "f.yaml", &BuildContext::default()).unwrap());
    // Seed rows that do not match the plan (the plan was checked against the real seed schema).
    let leaves: Vec<LeafJob> = (0..8)
        .map(|i| LeafJob {
            id: format!("l{i}"),
            hash: String::new(),
            kind: LeafKind::FreeformSkill,
            plan: 0,
            seeds: text_batch(&[("seed_question", vec!["q".into()])]).unwrap(),
            seeds_digest: String::new(),
            seeds_key: String::new(),
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let out = Location::memory(Arc::new(object_store::memory::InMemory::new()), "e");
    let stats: Arc<dyn Fn() -> ProcessDone + Send + Sync> = Arc::new(ProcessDone::default);
    let job = Arc::new(Job::new(vec![plan], leaves, out, "r".into(), TestTeacher::new(1, Duration::ZERO), stats));
    let opts = RunOptions { workers: 4, ..RunOptions::default() };
    let err = run(Arc::clone(&job), &opts, rt.handle().clone(), Arc::new(Progress::new(1))).unwrap_err().to_string();
    assert!(err.contains("operator `only_x`: no column `task_description`"), "{err}");
}
