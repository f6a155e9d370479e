//! InstructLab's own pipeline directories (instructlab-sdg 0.8.3: `full`, `simple`, `llama`),
//! unchanged, through `--pipeline ilab:DIR`'s loader: every file loads, explains, and ends with
//! the columns the reference's pipeline leaves, after the expected number of steps.
//!
//! The files come from PyPI: `bash tests/reference/fetch_sdg.sh` (run by this test when they are
//! missing) unpacks the wheel into `tests/reference/.cache/` (git-ignored). Without pip or a
//! network the test prints `SKIPPED` and passes, unless `LABFLOW_REQUIRE_SDG=1` (CI), where
//! that is a failure.

use arrow::datatypes::DataType;
use labflow::operators::BuildContext;
use labflow::pipeline::ilab;
use labflow::pipeline::Plan;
use labflow::taxonomy::LeafKind;

mod common;

/// Steps and final columns of one pipeline file.
type Expected = (usize, Vec<String>);

/// The dataset's columns (without `_id`).
fn output_columns(plan: &Plan) -> Vec<String> {
    plan.steps[plan.output].schema_out.fields().iter().map(|f| f.name().clone()).filter(|n| n != "_id").collect()
}

const FREEFORM_END: &[&str] = &["task_description", "seed_question", "seed_response", "leaf_node_type", "question", "response"];
const GROUNDED_END: &[&str] =
    &["task_description", "seed_context", "seed_question", "seed_response", "leaf_node_type", "context", "question", "response", "evaluation", "score"];
const KNOWLEDGE_END: &[&str] = &[
    "raw_document",
    "icl_document",
    "document_outline",
    "domain",
    "icl_query_1",
    "icl_response_1",
    "icl_query_2",
    "icl_response_2",
    "icl_query_3",
    "icl_response_3",
    "leaf_node_type",
    "document",
    "dataset_type",
    "question",
    "response",
];

#[test]
fn every_reference_pipeline_directory_loads_and_explains() {
    let Some(dir) = common::sdg::pipelines_dir() else { return };
    let ctx = BuildContext { scale: 5, ..BuildContext::default() };
    // (set, [(steps, final columns)] for knowledge, freeform, grounded: ilab::FILES' order)
    let simple_end = |seeds: &[&str]| -> Vec<String> { seeds.iter().map(|s| s.to_string()).chain(["output".to_string()]).collect() };
    let knowledge_seeds = [
        "document",
        "icl_document",
        "document_outline",
        "domain",
        "icl_query_1",
        "icl_response_1",
        "icl_query_2",
        "icl_response_2",
        "icl_query_3",
        "icl_response_3",
        "leaf_node_type",
    ];
    let expected: Vec<(&str, [Expected; 3])> = vec![
        ("full", [(15, strings(KNOWLEDGE_END)), (9, strings(FREEFORM_END)), (11, strings(GROUNDED_END))]),
        ("llama", [(16, strings(KNOWLEDGE_END)), (9, strings(FREEFORM_END)), (11, strings(GROUNDED_END))]),
        (
            "simple",
            [
                (2, simple_end(&knowledge_seeds)),
                (2, simple_end(&["task_description", "seed_question", "seed_response", "leaf_node_type"])),
                (2, simple_end(&["task_description", "seed_context", "seed_question", "seed_response", "leaf_node_type"])),
            ],
        ),
    ];
    for (set, files) in expected {
        let plans = match ilab::load_dir(&dir.join(set), &ctx) {
            Ok(p) => p,
            Err(e) => panic!("{set}: {e}"),
        };
        assert_eq!(plans.len(), 3, "{set}");
        for ((plan, (steps, columns)), (file, kind)) in plans.iter().zip(files).zip(ilab::FILES) {
            let text = plan.explain();
            println!("{text}");
            assert_eq!(plan.leaf_kinds, vec![kind], "{set}/{file}");
            assert_eq!(plan.name, format!("{set}/{}", file.trim_end_matches(".yaml")));
            assert_eq!(plan.steps.len(), steps, "{set}/{file}:\n{text}");
            assert_eq!(output_columns(plan), columns, "{set}/{file}:\n{text}");
            assert!(text.contains("InstructLab pipeline (version 1.0)"), "{text}");
            // Every teacher step is a generate with the reference's one-message layout.
            for s in plan.steps.iter().filter(|s| s.cost.is_some()) {
                assert_eq!(s.kind, "generate", "{set}/{file}: {}", s.name);
            }
        }
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn full_pipelines_keep_the_reference_step_order_and_notes() {
    let Some(dir) = common::sdg::pipelines_dir() else { return };
    let plans = ilab::load_dir(&dir.join("full"), &BuildContext::default()).expect("full loads");
    let kinds = |p: &Plan| p.steps.iter().map(|s| format!("{}:{}", s.name, s.kind)).collect::<Vec<_>>();
    assert_eq!(
        kinds(&plans[1]),
        [
            "gen_questions:generate",
            "gen_questions.drop_duplicates:dedup",
            "eval_questions:generate",
            "filter_questions:filter",
            "filter_questions.drop_columns:drop",
            "gen_responses:generate",
            "evaluate_qa_pair:generate",
            "filter_qa_pair:filter",
            "filter_qa_pair.drop_columns:drop",
        ]
    );
    assert_eq!(
        kinds(&plans[0])[..6],
        [
            "duplicate_document_col:duplicate",
            "gen_spellcheck:generate",
            "flatten_auxiliary_columns:flatten",
            "rename_to_document_column:rename",
            "gen_knowledge:generate",
            "gen_knowledge.drop_duplicates:dedup",
        ]
    );
    let knowledge = plans[0].explain();
    assert!(knowledge.contains("drop_columns __index_level_0__ are not columns here"), "{knowledge}");
    assert!(knowledge.contains("datamixing.auxiliary_instructions (spellcheck)"), "{knowledge}");
    // The grounded pipeline's last filter keeps its parsed score, as a float (convert_dtype).
    let grounded = &plans[2];
    let score = grounded.steps[grounded.output].schema_out.field_with_name("score").expect("score").data_type().clone();
    assert_eq!(score, DataType::Float64);
    // Teacher calls per input row: 1 per LLM block, n completions (10 contexts per seed).
    assert_eq!(grounded.steps[0].cost.map(|c| c.completions), Some(10));
    assert_eq!(plans[1].leaf_kinds, vec![LeafKind::FreeformSkill]);
}

#[test]
fn the_eval_directory_is_not_a_pipeline_directory() {
    let Some(dir) = common::sdg::pipelines_dir() else { return };
    let e = ilab::load_dir(&dir.join("eval"), &BuildContext::default()).unwrap_err();
    assert!(e.message.contains("lacks knowledge.yaml, freeform_skills.yaml, grounded_skills.yaml"), "{e}");
}

/// Seed rows of `kind` (two seeds, every seed column filled).
fn seeds(kind: LeafKind) -> arrow::record_batch::RecordBatch {
    let schema = labflow::pipeline::seed_schema(kind);
    let columns: Vec<(&str, Vec<String>)> = schema
        .fields()
        .iter()
        .filter(|f| f.name() != "_id")
        .map(|f| (f.name().as_str(), vec![format!("{} one", f.name()), format!("{} two", f.name())]))
        .collect();
    labflow::operators::batch::text_batch(&columns).expect("seed batch")
}

/// The translated plans run in the engine, unchanged, with the deterministic test teacher (which
/// fills every `[Start of X]`…`[End of X]` pair a prompt mentions): every leaf commits, each
/// step's rows add up, and the skills datasets have the reference's final columns. (The knowledge
/// leaf ends empty: its Q&A step parses `[Question]`/`[Answer]`, which this teacher never writes.)
#[test]
fn translated_plans_run_in_the_engine() {
    use labflow::engine::{self, Job, LeafJob, ProcessDone, Progress, Report, RunOptions};
    use labflow::store::Location;
    use labflow::teacher::test_teacher::TestTeacher;
    use std::sync::Arc;

    let Some(dir) = common::sdg::pipelines_dir() else { return };
    let plans: Vec<Arc<Plan>> =
        ilab::load_dir(&dir.join("full"), &BuildContext::default()).expect("full loads").into_iter().map(Arc::new).collect();
    let leaves: Vec<LeafJob> = ilab::FILES
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| LeafJob {
            id: format!("leaf{i}"),
            hash: format!("h{i}"),
            kind: *kind,
            plan: i,
            seeds: seeds(*kind),
            seeds_digest: String::new(),
            seeds_key: String::new(),
        })
        .collect();
    let out = tempfile::tempdir().expect("tempdir");
    let location = Location::open_or_create(&out.path().display().to_string()).expect("run folder");
    let teacher = TestTeacher::new(4, std::time::Duration::ZERO);
    let job = Arc::new(Job::new(plans.clone(), leaves, location, "run".into(), teacher.clone(), Arc::new(ProcessDone::default)));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let progress = Arc::new(Progress::new(job.steps.len()));
    let reports = engine::run(job.clone(), &RunOptions::default(), runtime.handle().clone(), progress).expect("run");
    let done: Vec<_> = reports.into_iter().filter_map(|r| if let Report::Leaf(l) = r { Some(l) } else { None }).collect();
    assert_eq!(done.len(), 3);
    for leaf in &done {
        assert_eq!(leaf.error, None, "{leaf:?}");
        let p: usize = leaf.leaf.trim_start_matches("leaf").parse().expect("leaf index");
        // A leaf's counters are its own pipeline's, step by step.
        let counts = &leaf.steps;
        assert_eq!(counts.len(), plans[p].steps.len(), "{}", leaf.pipeline);
        assert_eq!(counts[0].rows_in, 2, "{}: {counts:?}", leaf.pipeline);
        for (s, c) in plans[p].steps.iter().zip(counts) {
            if s.cost.is_none() && s.kind != "flatten" {
                assert_eq!(c.rows_in, c.rows_out + c.rows_rejected, "{}: step {}: {c:?}", leaf.pipeline, s.name);
            }
        }
        println!("{}: {} rows, {} rejects", leaf.pipeline, leaf.rows, leaf.rejects);
    }
    assert!(teacher.calls.load(std::sync::atomic::Ordering::SeqCst) > 0);
    // Both skills pipelines get rows through their judges with this teacher (its scores are
    // 0–2, so some pass `eq 1` and some `ge 2`).
    for (p, end) in [(1, FREEFORM_END), (2, GROUNDED_END)] {
        let leaf = done.iter().find(|l| l.leaf == format!("leaf{p}")).expect("leaf");
        assert!(leaf.rows > 0, "{}: no rows survived; rejects: {}", leaf.pipeline, leaf.rejects);
        let file = leaf.files.iter().find(|f| f.path.ends_with(".jsonl") && f.path.starts_with("generated/")).expect("dataset file");
        let text = std::fs::read_to_string(out.path().join(&file.path)).expect("dataset");
        let first: serde_json::Value = serde_json::from_str(text.lines().next().expect("a row")).expect("json row");
        for c in end {
            assert!(first.get(*c).is_some(), "{}: no column {c} in {first}", leaf.pipeline);
        }
    }
}
