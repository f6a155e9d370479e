//! Datasets in a run folder: Arrow batches written as Parquet (the data) with a JSONL view (for
//! people and for tools that read the reference's format), and small JSON documents such as
//! manifests.
//!
//! Every file is written whole with one `put`, which is atomic on every object store (the local
//! one writes a temporary file and renames it), so a reader never sees half a file; a run's
//! manifest is written after its files (ARCHITECTURE.md invariant 6).

use crate::store::Location;
use arrow::record_batch::RecordBatch;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;

/// A dataset file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The object store failed.
    #[error("{path}: {source}")]
    Store {
        /// The file.
        path: String,
        /// What the store said.
        source: object_store::Error,
    },
    /// Encoding or decoding failed.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

fn format_err(loc: &Location, rel: &str, e: impl std::fmt::Display) -> DatasetError {
    DatasetError::Format { path: format!("{}/{rel}", loc.display), message: e.to_string() }
}

async fn put(loc: &Location, rel: &str, bytes: Vec<u8>) -> Result<u64, DatasetError> {
    let len = bytes.len() as u64;
    loc.store
        .put(&loc.child(rel), PutPayload::from(bytes))
        .await
        .map_err(|source| DatasetError::Store { path: format!("{}/{rel}", loc.display), source })?;
    Ok(len)
}

/// Write `batch` as Parquet to `rel` under `loc`; returns the bytes written.
pub async fn write_parquet(loc: &Location, rel: &str, batch: &RecordBatch) -> Result<u64, DatasetError> {
    let mut buf = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buf, batch.schema(), None).map_err(|e| format_err(loc, rel, e))?;
    writer.write(batch).map_err(|e| format_err(loc, rel, e))?;
    writer.close().map_err(|e| format_err(loc, rel, e))?;
    put(loc, rel, buf).await
}

/// Write `batch` as JSON Lines (one object per row) to `rel` under `loc`.
pub async fn write_jsonl(loc: &Location, rel: &str, batch: &RecordBatch) -> Result<u64, DatasetError> {
    let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
    writer.write(batch).map_err(|e| format_err(loc, rel, e))?;
    writer.finish().map_err(|e| format_err(loc, rel, e))?;
    put(loc, rel, writer.into_inner()).await
}

/// Write `bytes` to `rel` under `loc` as one object; returns the bytes written.
pub async fn write_bytes(loc: &Location, rel: &str, bytes: Vec<u8>) -> Result<u64, DatasetError> {
    put(loc, rel, bytes).await
}

/// Write `value` as pretty JSON to `rel` under `loc`.
pub async fn write_json(loc: &Location, rel: &str, value: &impl serde::Serialize) -> Result<u64, DatasetError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| format_err(loc, rel, e))?;
    bytes.push(b'\n');
    put(loc, rel, bytes).await
}

/// Read `rel` under `loc` as bytes; `None` when it does not exist.
pub async fn read_bytes(loc: &Location, rel: &str) -> Result<Option<bytes::Bytes>, DatasetError> {
    match loc.store.get(&loc.child(rel)).await {
        Ok(r) => r.bytes().await.map(Some).map_err(|source| DatasetError::Store { path: format!("{}/{rel}", loc.display), source }),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(source) => Err(DatasetError::Store { path: format!("{}/{rel}", loc.display), source }),
    }
}

/// Read the Parquet file `rel` under `loc` as one batch per row group.
pub async fn read_parquet(loc: &Location, rel: &str) -> Result<Vec<RecordBatch>, DatasetError> {
    let bytes = read_bytes(loc, rel).await?.ok_or_else(|| format_err(loc, rel, "not found"))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).and_then(|b| b.build()).map_err(|e| format_err(loc, rel, e))?;
    reader.collect::<Result<Vec<_>, _>>().map_err(|e| format_err(loc, rel, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::batch::text_batch;
    use std::sync::Arc;

    #[tokio::test]
    async fn parquet_and_jsonl_round_trip() {
        let loc = Location::memory(Arc::new(object_store::memory::InMemory::new()), "run");
        let b = text_batch(&[("question", vec!["Why?".into(), "How \"so\"?".into()])]).unwrap();
        assert!(write_parquet(&loc, "d/x.parquet", &b).await.unwrap() > 0);
        let back = read_parquet(&loc, "d/x.parquet").await.unwrap();
        assert_eq!(back, vec![b.clone()]);
        write_jsonl(&loc, "d/x.jsonl", &b).await.unwrap();
        let text = String::from_utf8(read_bytes(&loc, "d/x.jsonl").await.unwrap().unwrap().to_vec()).unwrap();
        assert_eq!(text, "{\"_id\":\"0000\",\"question\":\"Why?\"}\n{\"_id\":\"0001\",\"question\":\"How \\\"so\\\"?\"}\n");
        assert!(read_bytes(&loc, "nope").await.unwrap().is_none());
        assert!(read_parquet(&loc, "d/x.jsonl").await.is_err());
    }
}
