//! Seed rows of the real public taxonomy (`../shared/data/taxonomy`, documents from
//! `../shared/data/docs`): row counts and columns for the freeform skill, the two grounded skills
//! and the two knowledge leaves; the eleven foundational leaves are skipped; knowledge chunks fit
//! 500 tokens of the word estimate and — when the embedded model is present — of SmolLM2's real
//! tokenizer.
//!
//! Without the model file the tokenizer test prints SKIPPED (run `bash models/fetch.sh`); with
//! `LABFLOW_REQUIRE_MODEL=1` (CI) it fails instead.

mod common;

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use common::data;
use labflow::documents::{self, chunk, to_text, ChunkOptions, TokenCount, WordEstimate};
use labflow::model::{GgufFile, Tokenizer};
use labflow::seeds::{leaf_chunks, seed_rows};
use labflow::store::Location;
use labflow::taxonomy::{walk, HashedLeaf, LeafKind, WalkOptions};
use std::path::{Path, PathBuf};

fn open(p: &Path) -> Location {
    Location::open(p.to_str().expect("utf-8 path")).expect("open location")
}

/// Every leaf of the real taxonomy with its resolved documents.
async fn leaves() -> Vec<(HashedLeaf, Vec<(String, Vec<u8>)>)> {
    let docs = open(&data("docs"));
    let report = walk(&open(&data("taxonomy")), &WalkOptions { docs: Some(docs.clone()), only: None }).await.expect("walk");
    assert_eq!(report.errors(), 0, "{:#?}", report.diagnostics);
    let mut out = Vec::new();
    for l in report.leaves {
        let files = match &l.leaf.document {
            Some(d) => {
                let r = documents::resolve(&docs, &l.leaf.path, d).await;
                assert!(r.diagnostics.is_empty(), "{:#?}", r.diagnostics);
                r.files
            }
            None => Vec::new(),
        };
        out.push((l, files));
    }
    out
}

fn names(b: &RecordBatch) -> Vec<String> {
    b.schema().fields().iter().map(|f| f.name().clone()).collect()
}

fn col(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let c = b.column_by_name(name).unwrap_or_else(|| panic!("no column {name}")).as_string::<i32>();
    (0..c.len()).map(|i| c.is_valid(i).then(|| c.value(i).to_string())).collect()
}

fn ids_in_order(b: &RecordBatch) {
    let ids = col(b, "_id");
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "rows are not in lineage order");
    assert!(b.schema().fields().iter().all(|f| f.data_type() == &DataType::Utf8));
}

#[tokio::test]
async fn skills_give_one_row_per_seed_example() {
    let opts = ChunkOptions::default();
    let mut seen = Vec::new();
    for (l, files) in leaves().await {
        let leaf = &l.leaf;
        if !matches!(leaf.kind, LeafKind::FreeformSkill | LeafKind::GroundedSkill) {
            continue;
        }
        let b = seed_rows(leaf, &files, &WordEstimate, &opts).expect("seed rows");
        ids_in_order(&b);
        let grounded = leaf.kind == LeafKind::GroundedSkill;
        let mut want = vec!["_id", "task_description"];
        if grounded {
            want.push("seed_context");
        }
        want.extend(["seed_question", "seed_response", "leaf_node_type"]);
        assert_eq!(names(&b), want, "{}", leaf.id);
        let questions = col(&b, "seed_question");
        let seeds = leaf.content["seed_examples"].as_array().expect("seeds");
        for (i, seed) in seeds.iter().enumerate() {
            assert_eq!(questions[i].as_deref(), seed["question"].as_str(), "{} row {i}", leaf.id);
        }
        if grounded {
            // Every seed of the two public grounded skills has a context.
            assert!(col(&b, "seed_context").iter().all(|c| c.as_deref().is_some_and(|c| !c.is_empty())), "{}", leaf.id);
        }
        let kind = if grounded { "grounded_skill" } else { "freeform_skill" };
        assert!(col(&b, "leaf_node_type").iter().all(|k| k.as_deref() == Some(kind)));
        assert!(col(&b, "task_description").iter().all(|t| t.as_deref() == leaf.content["task_description"].as_str()));
        seen.push((leaf.id.clone(), b.num_rows()));
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("compositional_skills/grounded/linguistics/inclusion".to_string(), 6),
            ("compositional_skills/grounded/linguistics/writing/rewriting".to_string(), 5),
            ("compositional_skills/linguistics/synonyms".to_string(), 6),
        ]
    );
}

/// Checks the chunks of one knowledge leaf under `counter`; returns the number of chunks.
fn check_chunks(leaf: &labflow::taxonomy::Leaf, files: &[(String, Vec<u8>)], counter: &dyn TokenCount, label: &str) -> usize {
    let opts = ChunkOptions::default();
    let chunks = leaf_chunks(leaf, files, counter, &opts).expect("chunks");
    let mut total = 0;
    for (i, c) in chunks.iter().enumerate() {
        let n = counter.count(c);
        assert!(n <= 500, "{} chunk {i}: {n} {label} tokens > 500", leaf.id);
        assert!(!c.trim().is_empty());
        total += n;
    }
    // Greedy packing fills chunks: on average well over half the budget.
    assert!(total / chunks.len() > 250, "{}: mean {} {label} tokens per chunk", leaf.id, total / chunks.len());
    // The document is covered from its first word to its last.
    let text = to_text(&files[0].0, &files[0].1).expect("text");
    let words: Vec<&str> = text.split_whitespace().collect();
    assert!(chunks[0].starts_with(words[0]));
    assert!(chunks.last().is_some_and(|c| c.ends_with(words[words.len() - 1])));
    eprintln!("{}: {} chunks, mean {} {label} tokens", leaf.id, chunks.len(), total / chunks.len());
    chunks.len()
}

#[tokio::test]
async fn knowledge_gives_chunks_times_seed_examples() {
    let opts = ChunkOptions::default();
    let mut seen = Vec::new();
    for (l, files) in leaves().await {
        let leaf = &l.leaf;
        if leaf.kind != LeafKind::Knowledge {
            continue;
        }
        assert_eq!(files.len(), 1, "{}: one document each", leaf.id);
        let n_chunks = check_chunks(leaf, &files, &WordEstimate, "estimated");
        let b = seed_rows(leaf, &files, &WordEstimate, &opts).expect("seed rows");
        ids_in_order(&b);
        let mut want = vec!["_id", "document", "icl_document", "document_outline", "domain"];
        want.extend(["icl_query_1", "icl_response_1", "icl_query_2", "icl_response_2", "icl_query_3", "icl_response_3", "leaf_node_type"]);
        assert_eq!(names(&b), want, "{}", leaf.id);
        assert_eq!(b.num_rows(), n_chunks * 5, "{}", leaf.id);
        let seeds = leaf.content["seed_examples"].as_array().expect("seeds");
        let (docs, icl, q3) = (col(&b, "document"), col(&b, "icl_document"), col(&b, "icl_response_3"));
        for (r, id) in col(&b, "_id").iter().enumerate() {
            let (c, s) = (r / 5, r % 5);
            assert_eq!(id.as_deref(), Some(format!("{c:04}.{s:04}").as_str()));
            assert_eq!(icl[r].as_deref(), seeds[s]["context"].as_str());
            assert_eq!(q3[r].as_deref(), seeds[s]["questions_and_answers"][2]["answer"].as_str());
            assert_eq!(docs[r], docs[c * 5], "one chunk per group of five rows");
        }
        assert!(col(&b, "domain").iter().all(|d| d.as_deref() == leaf.content["domain"].as_str()));
        assert!(col(&b, "document_outline").iter().all(|d| d.as_deref() == leaf.content["document_outline"].as_str()));
        // Without documents the leaf says what to pass.
        let e = seed_rows(leaf, &[], &WordEstimate, &opts).expect_err("no documents");
        assert!(e.to_string().contains("--docs"), "{e}");
        seen.push(leaf.id.clone());
    }
    assert_eq!(seen, ["knowledge/arts/music/fandom/swifties", "knowledge/science/animals/birds/black_capped_chickadee"]);
}

#[tokio::test]
async fn foundational_leaves_are_skipped() {
    let skipped = leaves()
        .await
        .iter()
        .filter(|(l, _)| l.leaf.kind == LeafKind::Foundational)
        .map(|(l, files)| seed_rows(&l.leaf, files, &WordEstimate, &ChunkOptions::default()).expect_err("skipped").is_skip())
        .filter(|&s| s)
        .count();
    assert_eq!(skipped, 11);
}

fn model_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

#[tokio::test]
async fn knowledge_chunks_fit_500_tokens_of_the_real_tokenizer() {
    let path = model_path();
    if !path.is_file() {
        assert_ne!(std::env::var("LABFLOW_REQUIRE_MODEL").as_deref(), Ok("1"), "model missing: run bash models/fetch.sh");
        eprintln!(
            "SKIPPED: real-tokenizer chunk sizes not checked: {} missing (model not fetched); run bash models/fetch.sh",
            path.display()
        );
        return;
    }
    let tokenizer = Tokenizer::from_gguf(&GgufFile::open(&path).expect("gguf")).expect("tokenizer");
    for (l, files) in leaves().await {
        if l.leaf.kind == LeafKind::Knowledge {
            let real = check_chunks(&l.leaf, &files, &tokenizer, "SmolLM2");
            // The estimate and the real count are close for English prose; chunk counts agree
            // within a factor of two.
            let estimated = chunk(&to_text(&files[0].0, &files[0].1).expect("text"), &WordEstimate, &ChunkOptions::default()).len();
            assert!(real <= estimated * 2 && estimated <= real * 2, "{}: {real} vs {estimated} chunks", l.leaf.id);
        }
    }
}
