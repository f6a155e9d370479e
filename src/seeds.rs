//! Seed expansion: a valid leaf (and, for knowledge, its documents) becomes the Arrow rows a
//! pipeline starts from. Sits between [`taxonomy`](crate::taxonomy), which finds and checks
//! leaves, and the pipeline graph, whose prompt templates read these columns; never calls a model.
//!
//! Column names and meanings are those of the reference implementation (instructlab-sdg 0.8.3,
//! `utils/taxonomy.py`: `_read_taxonomy_file`, `_skill_leaf_node_to_samples`,
//! `map_chunks_to_icls`), so its prompt templates (`{{seed_question}}`, `{{icl_query_1}}`,
//! `{{document_outline}}` …) render unchanged. Every column is `Utf8`; every row carries the
//! engine's lineage id [`ROW_ID`].
//!
//! - **Skill** leaf: one row per seed example, id `child_id("", seed)`: `task_description`,
//!   `seed_question`, `seed_response`, and for a grounded leaf (any seed has a `context`)
//!   `seed_context` — null on a row whose seed has none, as in the reference's table, where such
//!   a row is also typed `freeform_skill` (`leaf_node_type`).
//! - **Knowledge** leaf: one row per (chunk × seed example), chunk-major like the reference, id
//!   `child_id(child_id("", chunk), seed)`: `document` (the chunk), `icl_document` (the seed's
//!   context), `document_outline`, `domain`, `icl_query_1..3` / `icl_response_1..3` (the seed's
//!   first three question/answer pairs; the prompts use three), `leaf_node_type = knowledge`.
//!   Chunks come from each document in path order, never spanning two documents.
//! - **Foundational** leaf: [`SeedError::Foundational`], a skip the engine reports (the
//!   reference reads only `compositional_skills/` and `knowledge/`).
//!
//! `leaf_node_type` is the reference's per-row type (`knowledge`, `grounded_skill`,
//! `freeform_skill`), which its mixing step reads; the leaf's id is not a column (the engine
//! tracks which leaf a batch belongs to).

use crate::documents::{self, ChunkOptions, DocumentError, TokenCount};
use crate::operators::batch::{child_id, text_field};
use crate::operators::ROW_ID;
use crate::taxonomy::{Leaf, LeafKind};
use arrow::array::{ArrayRef, RecordBatchOptions, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use serde_json::Value;
use std::sync::Arc;

/// Question/answer pairs of a knowledge seed that become `icl_query_N` / `icl_response_N`.
pub const ICL_PAIRS: usize = 3;

/// Why a leaf gave no seed rows. Each names the leaf and what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SeedError {
    /// A `foundational_skills/` leaf: skipped, as the reference does. Not a failure.
    #[error("leaf `{leaf}` is skipped: it is under foundational_skills/, which the reference pipelines skip too")]
    Foundational {
        /// The leaf id.
        leaf: String,
    },
    /// A knowledge leaf was given no documents.
    #[error("knowledge leaf `{leaf}` needs its documents: pass --docs DIR where {repo} at commit {commit} is laid out as OWNER/REPO/COMMIT/… (or is a git clone at OWNER/REPO)")]
    NoDocuments {
        /// The leaf id.
        leaf: String,
        /// `document.repo` of the leaf.
        repo: String,
        /// `document.commit` of the leaf.
        commit: String,
    },
    /// A document could not be read as text.
    #[error("knowledge leaf `{leaf}`: {source}")]
    Document {
        /// The leaf id.
        leaf: String,
        /// What was wrong with the document.
        source: DocumentError,
    },
    /// The documents hold no text at all.
    #[error("knowledge leaf `{leaf}`: its documents ({files}) contain no text to generate from; check document.patterns")]
    EmptyDocuments {
        /// The leaf id.
        leaf: String,
        /// The document paths, comma-separated.
        files: String,
    },
    /// The leaf's content lacks something its schema requires; the leaf did not come from
    /// `taxonomy::check_leaf`, or the schema and this code disagree.
    #[error("leaf `{leaf}`: {message}; run `labflow validate` on the taxonomy")]
    Content {
        /// The leaf id.
        leaf: String,
        /// What is missing, by key path.
        message: String,
    },
    /// Building the Arrow batch failed: a bug in labflow.
    #[error("leaf `{leaf}`: internal error building seed rows: {message}")]
    Internal {
        /// The leaf id.
        leaf: String,
        /// Arrow's message.
        message: String,
    },
}

impl SeedError {
    /// True for a leaf that is skipped on purpose (foundational), which the engine counts as
    /// skipped rather than failed.
    pub fn is_skip(&self) -> bool {
        matches!(self, SeedError::Foundational { .. })
    }
}

/// The seed rows of `leaf`. `documents` are the leaf's resolved documents (`(path, bytes)`, as
/// [`documents::resolve`] gives them), needed for knowledge and ignored otherwise; `counter` and
/// `opts` size the knowledge chunks.
pub fn seed_rows(
    leaf: &Leaf,
    documents: &[(String, Vec<u8>)],
    counter: &dyn TokenCount,
    opts: &ChunkOptions,
) -> Result<RecordBatch, SeedError> {
    match leaf.kind {
        LeafKind::Foundational => Err(SeedError::Foundational { leaf: leaf.id.clone() }),
        LeafKind::FreeformSkill | LeafKind::GroundedSkill => skill_rows(leaf),
        LeafKind::Knowledge => {
            let chunks = leaf_chunks(leaf, documents, counter, opts)?;
            knowledge_rows(leaf, &chunks)
        }
    }
}

/// The chunks of all of a knowledge leaf's documents, in document order.
pub fn leaf_chunks(
    leaf: &Leaf,
    documents: &[(String, Vec<u8>)],
    counter: &dyn TokenCount,
    opts: &ChunkOptions,
) -> Result<Vec<String>, SeedError> {
    if documents.is_empty() {
        let (repo, commit) = leaf.document.as_ref().map(|d| (d.repo.clone(), d.commit.clone())).unwrap_or_default();
        return Err(SeedError::NoDocuments { leaf: leaf.id.clone(), repo, commit });
    }
    let mut chunks = Vec::new();
    for (path, bytes) in documents {
        let text = documents::to_text(path, bytes).map_err(|source| SeedError::Document { leaf: leaf.id.clone(), source })?;
        chunks.extend(documents::chunk(&text, counter, opts));
    }
    if chunks.is_empty() {
        let files = documents.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>().join(", ");
        return Err(SeedError::EmptyDocuments { leaf: leaf.id.clone(), files });
    }
    Ok(chunks)
}

/// The schema of the seed rows of a leaf of `kind` (foundational leaves have none; their
/// schema is the freeform one). Pipelines are checked against it when they load.
pub fn schema(kind: LeafKind) -> arrow::datatypes::SchemaRef {
    let names: Vec<String> = match kind {
        LeafKind::Knowledge => knowledge_columns(),
        LeafKind::GroundedSkill => skill_columns(true).into_iter().map(String::from).collect(),
        LeafKind::FreeformSkill | LeafKind::Foundational => skill_columns(false).into_iter().map(String::from).collect(),
    };
    let mut fields = vec![Field::new(ROW_ID, DataType::Utf8, false)];
    fields.extend(names.iter().map(|n| text_field(n)));
    Arc::new(Schema::new(fields))
}

/// Column order of skill rows (after [`ROW_ID`]); `seed_context` only for grounded leaves.
fn skill_columns(grounded: bool) -> Vec<&'static str> {
    let mut cols = vec!["task_description"];
    if grounded {
        cols.push("seed_context");
    }
    cols.extend(["seed_question", "seed_response", "leaf_node_type"]);
    cols
}

fn skill_rows(leaf: &Leaf) -> Result<RecordBatch, SeedError> {
    let grounded = leaf.kind == LeafKind::GroundedSkill;
    let seeds = seed_examples(leaf)?;
    let task = leaf.content.get("task_description").and_then(Value::as_str).map(str::to_string);
    let mut table = Table::new(skill_columns(grounded));
    for (i, seed) in seeds.iter().enumerate() {
        let at = format!("seed_examples[{i}]");
        // The reference tests the context for truth: an empty one is no context.
        let context = seed.get("context").and_then(Value::as_str).filter(|c| !c.is_empty()).map(str::to_string);
        let kind = if context.is_some() { "grounded_skill" } else { "freeform_skill" };
        let mut row = vec![task.clone()];
        if grounded {
            row.push(context);
        }
        row.push(Some(required(leaf, seed, "question", &at)?));
        row.push(Some(required(leaf, seed, "answer", &at)?));
        row.push(Some(kind.to_string()));
        table.push(child_id("", i), row);
    }
    table.finish(leaf)
}

/// Column order of knowledge rows (after [`ROW_ID`]).
fn knowledge_columns() -> Vec<String> {
    let mut cols: Vec<String> = ["document", "icl_document", "document_outline", "domain"].map(String::from).to_vec();
    cols.extend((1..=ICL_PAIRS).flat_map(|n| [format!("icl_query_{n}"), format!("icl_response_{n}")]));
    cols.push("leaf_node_type".to_string());
    cols
}

fn knowledge_rows(leaf: &Leaf, chunks: &[String]) -> Result<RecordBatch, SeedError> {
    let seeds = seed_examples(leaf)?;
    let outline = leaf.content.get("document_outline").and_then(Value::as_str).map(str::to_string);
    let domain = leaf.content.get("domain").and_then(Value::as_str).map(str::to_string);
    // Per seed: everything but the chunk, read once.
    let mut per_seed: Vec<Vec<Option<String>>> = Vec::with_capacity(seeds.len());
    for (i, seed) in seeds.iter().enumerate() {
        let at = format!("seed_examples[{i}]");
        let mut row = vec![Some(required(leaf, seed, "context", &at)?), outline.clone(), domain.clone()];
        let pairs = seed
            .get("questions_and_answers")
            .and_then(Value::as_array)
            .ok_or_else(|| content(leaf, format!("{at}.questions_and_answers is missing")))?;
        for n in 0..ICL_PAIRS {
            match pairs.get(n) {
                Some(qa) => {
                    let at = format!("{at}.questions_and_answers[{n}]");
                    row.push(Some(required(leaf, qa, "question", &at)?));
                    row.push(Some(required(leaf, qa, "answer", &at)?));
                }
                None => row.extend([None, None]),
            }
        }
        row.push(Some("knowledge".to_string()));
        per_seed.push(row);
    }
    let names = knowledge_columns();
    let mut table = Table::new(names.iter().map(String::as_str).collect());
    for (c, chunk) in chunks.iter().enumerate() {
        let chunk_id = child_id("", c);
        for (s, rest) in per_seed.iter().enumerate() {
            let mut row = Vec::with_capacity(names.len());
            row.push(Some(chunk.clone()));
            row.extend(rest.iter().cloned());
            table.push(child_id(&chunk_id, s), row);
        }
    }
    table.finish(leaf)
}

fn seed_examples(leaf: &Leaf) -> Result<&Vec<Value>, SeedError> {
    leaf.content.get("seed_examples").and_then(Value::as_array).ok_or_else(|| content(leaf, "seed_examples is missing".to_string()))
}

fn required(leaf: &Leaf, obj: &Value, key: &str, at: &str) -> Result<String, SeedError> {
    obj.get(key).and_then(Value::as_str).map(str::to_string).ok_or_else(|| content(leaf, format!("{at}.{key} is missing or not text")))
}

fn content(leaf: &Leaf, message: String) -> SeedError {
    SeedError::Content { leaf: leaf.id.clone(), message }
}

/// Rows of nullable text columns with explicit lineage ids, built column-wise at the end.
struct Table<'a> {
    names: Vec<&'a str>,
    ids: Vec<String>,
    columns: Vec<Vec<Option<String>>>,
}

impl<'a> Table<'a> {
    fn new(names: Vec<&'a str>) -> Self {
        let columns = vec![Vec::new(); names.len()];
        Table { names, ids: Vec::new(), columns }
    }

    /// One row, its values in column order.
    fn push(&mut self, id: String, row: Vec<Option<String>>) {
        debug_assert_eq!(row.len(), self.columns.len(), "invariant: a row has a value per column");
        self.ids.push(id);
        for (col, value) in self.columns.iter_mut().zip(row) {
            col.push(value);
        }
    }

    fn finish(self, leaf: &Leaf) -> Result<RecordBatch, SeedError> {
        let rows = self.ids.len();
        let mut fields = vec![Field::new(ROW_ID, DataType::Utf8, false)];
        fields.extend(self.names.iter().map(|n| text_field(n)));
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(StringArray::from(self.ids))];
        arrays.extend(self.columns.into_iter().map(|c| Arc::new(StringArray::from(c)) as ArrayRef));
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
            .map_err(|e| SeedError::Internal { leaf: leaf.id.clone(), message: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::documents::WordEstimate;
    use crate::taxonomy::leaf::DocumentRef;
    use crate::taxonomy::Pos;
    use arrow::array::{Array, AsArray};
    use serde_json::json;

    fn leaf(id: &str, kind: LeafKind, content: Value) -> Leaf {
        let document = content.get("document").map(|d| DocumentRef {
            repo: d["repo"].as_str().unwrap_or_default().to_string(),
            commit: d["commit"].as_str().unwrap_or_default().to_string(),
            patterns: vec!["*.md".into()],
            pos: Pos::START,
            repo_pos: Pos::START,
            commit_pos: Pos::START,
            pattern_pos: vec![Pos::START],
        });
        let seed_count = content["seed_examples"].as_array().map(Vec::len).unwrap_or(0);
        Leaf { id: id.into(), path: format!("{id}/qna.yaml"), kind, version: 3, seed_count, content_hash: String::new(), content, document }
    }

    fn skill(contexts: &[Option<&str>]) -> Leaf {
        let seeds: Vec<Value> = contexts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut s = json!({"question": format!("q{i}"), "answer": format!("a{i}")});
                if let Some(c) = c {
                    s["context"] = json!(c);
                }
                s
            })
            .collect();
        let kind = if contexts.iter().any(Option::is_some) { LeafKind::GroundedSkill } else { LeafKind::FreeformSkill };
        leaf("compositional_skills/x", kind, json!({"version": 3, "task_description": "Do x.", "seed_examples": seeds}))
    }

    fn knowledge(pairs: usize) -> Leaf {
        let seeds: Vec<Value> = (0..5)
            .map(|i| {
                let qa: Vec<Value> = (0..pairs).map(|j| json!({"question": format!("q{i}.{j}"), "answer": format!("a{i}.{j}")})).collect();
                json!({"context": format!("context {i}"), "questions_and_answers": qa})
            })
            .collect();
        leaf(
            "knowledge/birds/chickadee",
            LeafKind::Knowledge,
            json!({"version": 3, "domain": "birds", "document_outline": "About chickadees", "seed_examples": seeds,
                   "document": {"repo": "https://github.com/o/r", "commit": "abc123", "patterns": ["*.md"]}}),
        )
    }

    fn names(b: &RecordBatch) -> Vec<String> {
        b.schema().fields().iter().map(|f| f.name().clone()).collect()
    }

    fn col(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
        let c = b.column_by_name(name).unwrap_or_else(|| panic!("no column {name}")).as_string::<i32>();
        (0..c.len()).map(|i| c.is_valid(i).then(|| c.value(i).to_string())).collect()
    }

    fn rows(l: &Leaf, docs: &[(String, Vec<u8>)]) -> Result<RecordBatch, SeedError> {
        seed_rows(l, docs, &WordEstimate, &ChunkOptions::default())
    }

    #[test]
    fn freeform_skill_is_one_row_per_seed() {
        let b = rows(&skill(&[None; 5]), &[]).unwrap();
        assert_eq!(names(&b), ["_id", "task_description", "seed_question", "seed_response", "leaf_node_type"]);
        assert_eq!(b.num_rows(), 5);
        assert_eq!(col(&b, "_id")[4].as_deref(), Some("0004"));
        assert_eq!(col(&b, "seed_question")[2].as_deref(), Some("q2"));
        assert_eq!(col(&b, "seed_response")[2].as_deref(), Some("a2"));
        assert!(col(&b, "task_description").iter().all(|t| t.as_deref() == Some("Do x.")));
        assert!(col(&b, "leaf_node_type").iter().all(|t| t.as_deref() == Some("freeform_skill")));
        assert!(b.schema().fields().iter().all(|f| f.data_type() == &DataType::Utf8));
    }

    #[test]
    fn grounded_skill_has_seed_context_null_where_a_seed_has_none() {
        let b = rows(&skill(&[Some("c0"), None, Some("c2"), Some("c3"), Some("c4")]), &[]).unwrap();
        assert_eq!(names(&b), ["_id", "task_description", "seed_context", "seed_question", "seed_response", "leaf_node_type"]);
        let ctx = col(&b, "seed_context");
        assert_eq!(ctx, [Some("c0".into()), None, Some("c2".into()), Some("c3".into()), Some("c4".into())]);
        let kinds = col(&b, "leaf_node_type");
        assert_eq!((kinds[0].as_deref(), kinds[1].as_deref()), (Some("grounded_skill"), Some("freeform_skill")));
    }

    #[test]
    fn knowledge_is_chunks_times_seeds_chunk_major() {
        let para = |w: &str| vec![w; 300].join(" ") + ".";
        let docs = vec![("a.md".to_string(), format!("# A\n\n{}", para("x")).into_bytes()), ("b.txt".to_string(), para("y").into_bytes())];
        let l = knowledge(4);
        let b = rows(&l, &docs).unwrap();
        let mut want = vec!["_id", "document", "icl_document", "document_outline", "domain"];
        want.extend(["icl_query_1", "icl_response_1", "icl_query_2", "icl_response_2", "icl_query_3", "icl_response_3", "leaf_node_type"]);
        assert_eq!(names(&b), want);
        let chunks = leaf_chunks(&l, &docs, &WordEstimate, &ChunkOptions::default()).unwrap();
        assert_eq!(chunks.len(), 2, "one chunk per short document, never spanning two");
        assert_eq!(b.num_rows(), chunks.len() * 5);
        let ids = col(&b, "_id");
        assert_eq!((ids[0].as_deref(), ids[4].as_deref(), ids[5].as_deref()), (Some("0000.0000"), Some("0000.0004"), Some("0001.0000")));
        let doc = col(&b, "document");
        assert!(doc[4].as_deref().is_some_and(|d| d.starts_with("# A")) && doc[5].as_deref().is_some_and(|d| d.starts_with("y y")));
        assert_eq!(col(&b, "icl_document")[6].as_deref(), Some("context 1"));
        assert_eq!(col(&b, "icl_query_3")[6].as_deref(), Some("q1.2"));
        assert_eq!(col(&b, "icl_response_1")[6].as_deref(), Some("a1.0"));
        assert!(b.column_by_name("icl_query_4").is_none(), "prompts use the first three pairs");
        assert!(col(&b, "domain").iter().all(|d| d.as_deref() == Some("birds")));
        assert!(col(&b, "document_outline").iter().all(|d| d.as_deref() == Some("About chickadees")));
        assert!(col(&b, "leaf_node_type").iter().all(|d| d.as_deref() == Some("knowledge")));
    }

    #[test]
    fn knowledge_seeds_with_fewer_than_three_pairs_leave_nulls() {
        let b = rows(&knowledge(2), &[("a.md".into(), b"Some text.".to_vec())]).unwrap();
        assert_eq!(col(&b, "icl_query_2")[0].as_deref(), Some("q0.1"));
        assert_eq!(col(&b, "icl_query_3")[0], None);
    }

    #[test]
    fn knowledge_without_documents_asks_for_docs() {
        let e = rows(&knowledge(3), &[]).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, SeedError::NoDocuments { .. }));
        assert!(msg.contains("knowledge/birds/chickadee") && msg.contains("--docs") && msg.contains("abc123"), "{msg}");
    }

    #[test]
    fn bad_documents_name_the_leaf_and_the_file() {
        let l = knowledge(3);
        let e = rows(&l, &[("paper.pdf".into(), b"%PDF".to_vec())]).unwrap_err();
        assert!(
            e.to_string().contains("knowledge/birds/chickadee")
                && e.to_string().contains("`paper.pdf`")
                && e.to_string().contains("convert it to markdown"),
            "{e}"
        );
        let e = rows(&l, &[("x.md".into(), b"\xff".to_vec())]).unwrap_err();
        assert!(matches!(&e, SeedError::Document { source: DocumentError::NotUtf8 { path, .. }, .. } if path == "x.md"), "{e}");
        let e = rows(&l, &[("x.md".into(), b"\n\n".to_vec())]).unwrap_err();
        assert!(matches!(e, SeedError::EmptyDocuments { .. }), "{e}");
    }

    #[test]
    fn foundational_leaves_are_skipped() {
        let l = leaf("foundational_skills/reasoning/x", LeafKind::Foundational, json!({"seed_examples": []}));
        let e = rows(&l, &[]).unwrap_err();
        assert!(e.is_skip() && e.to_string().contains("foundational_skills/"), "{e}");
        assert!(!rows(&knowledge(3), &[]).unwrap_err().is_skip());
    }

    #[test]
    fn missing_content_is_a_content_error_not_a_panic() {
        let mut l = skill(&[None; 5]);
        l.content["seed_examples"][3] = json!({"question": "q"});
        let e = rows(&l, &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "leaf `compositional_skills/x`: seed_examples[3].answer is missing or not text; run `labflow validate` on the taxonomy"
        );
    }

    #[test]
    fn rows_are_deterministic() {
        let docs = vec![("a.md".to_string(), (0..2000).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ").into_bytes())];
        let a = rows(&knowledge(3), &docs).unwrap();
        let b = rows(&knowledge(3), &docs).unwrap();
        assert_eq!(a, b);
        assert!(a.num_rows() > 5);
    }
}
