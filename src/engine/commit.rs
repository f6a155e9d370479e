//! Committing one finished leaf: its rows and its rejects as Parquet partitions with JSONL
//! views, under `generated/<leaf>/` and `rejects/<leaf>/` of the run folder.
//!
//! File names carry the run id, so a run never overwrites a file an earlier manifest lists;
//! the manifest written at the end is what makes a run's files visible (invariant 6).

use crate::engine::report::{FileEntry, LeafDone, StepCounts};
use crate::engine::LeafJob;
use crate::store::dataset::{write_jsonl, write_parquet, DatasetError};
use crate::store::Location;
use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use std::sync::Arc;

/// A row a step dropped, with why.
#[derive(Debug, Clone)]
pub struct RejectRow {
    /// Lineage id of the row.
    pub id: String,
    /// The step that dropped it.
    pub step: String,
    /// Why.
    pub reason: String,
    /// The row's values as a JSON object.
    pub row: String,
}

/// The rejects of one leaf as a batch: `_id, step, reason, row`.
pub fn rejects_batch(rows: &[RejectRow]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("_id", DataType::Utf8, false),
        Field::new("step", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("row", DataType::Utf8, false),
    ]));
    let col = |f: fn(&RejectRow) -> &str| -> ArrayRef { Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>())) };
    RecordBatch::try_new(schema, vec![col(|r| &r.id), col(|r| &r.step), col(|r| &r.reason), col(|r| &r.row)])
}

/// What a leaf's commit needs.
pub struct Commit {
    /// The leaf.
    pub leaf: LeafJob,
    /// Its pipeline's name.
    pub pipeline: String,
    /// Its pipeline's fingerprint.
    pub fingerprint: String,
    /// Run id, part of every file name.
    pub run_id: String,
    /// Its rows, sorted by lineage id.
    pub rows: RecordBatch,
    /// Its rejects, sorted by lineage id.
    pub rejects: Vec<RejectRow>,
    /// Its counters per step of its pipeline.
    pub steps: Vec<StepCounts>,
}

/// Write the leaf's files; failures become the leaf's `error`, not a failed run.
pub async fn commit(out: &Location, c: Commit) -> LeafDone {
    let mut done = LeafDone {
        leaf: c.leaf.id.clone(),
        hash: c.leaf.hash.clone(),
        kind: c.leaf.kind.label().to_string(),
        pipeline: c.pipeline.clone(),
        seeds: c.leaf.seeds_digest.clone(),
        seeds_key: c.leaf.seeds_key.clone(),
        fingerprint: c.fingerprint.clone(),
        rows: c.rows.num_rows() as u64,
        rejects: c.rejects.len() as u64,
        files: Vec::new(),
        steps: c.steps.clone(),
        error: None,
    };
    if let Err(e) = write_all(out, &c, &mut done.files).await {
        done.error = Some(e.to_string());
    }
    done
}

async fn write_all(out: &Location, c: &Commit, files: &mut Vec<FileEntry>) -> Result<(), DatasetError> {
    let base = format!("{}/{}", c.leaf.id, c.run_id);
    let rows = c.rows.num_rows() as u64;
    for (rel, bytes) in [
        (format!("generated/{base}.parquet"), write_parquet(out, &format!("generated/{base}.parquet"), &c.rows).await?),
        (format!("generated/{base}.jsonl"), write_jsonl(out, &format!("generated/{base}.jsonl"), &c.rows).await?),
    ] {
        files.push(FileEntry { path: rel, rows, bytes });
    }
    let rejects =
        rejects_batch(&c.rejects).map_err(|e| DatasetError::Format { path: format!("rejects/{base}"), message: e.to_string() })?;
    let n = rejects.num_rows() as u64;
    let rel = format!("rejects/{base}.parquet");
    let bytes = write_parquet(out, &rel, &rejects).await?;
    files.push(FileEntry { path: rel, rows: n, bytes });
    let rel = format!("rejects/{base}.jsonl");
    let bytes = write_jsonl(out, &rel, &rejects).await?;
    files.push(FileEntry { path: rel, rows: n, bytes });
    Ok(())
}
