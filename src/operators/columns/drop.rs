//! `drop`: remove the listed columns, e.g. the raw judge output once its score is parsed.
//!
//! - Columns in: every listed column, any type (a missing one is an error: a misspelt name would
//!   otherwise drop nothing, unnoticed).
//! - Columns out: the input without the listed columns, order otherwise kept.
//! - Rejected: nothing.
//! - Deterministic: yes.

use crate::operators::batch;
use crate::operators::config::{check_columns, RowId};
use crate::operators::{BuildContext, OpError, Operator, Output, Step, Transform};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use serde::Deserialize;
use std::sync::Arc;

/// The `drop` step as written in a pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The columns to remove. Required, at least one; `_id` may not be listed.
    pub columns: Vec<String>,
}

impl Step for Config {
    const KIND: &'static str = "drop";

    fn build(self, name: &str, _ctx: &BuildContext) -> Result<Operator, OpError> {
        check_columns(&self.columns, "columns", RowId::Forbidden, name)?;
        Ok(Operator::Transform(Arc::new(DropColumns { name: name.to_string(), columns: self.columns })))
    }
}

/// The built `drop` operator.
#[derive(Debug, Clone)]
pub struct DropColumns {
    name: String,
    columns: Vec<String>,
}

impl DropColumns {
    /// Indices of the input columns that stay.
    fn kept(&self, input: &SchemaRef) -> Result<Vec<usize>, OpError> {
        for c in &self.columns {
            batch::field(input, c, &self.name)?;
        }
        Ok((0..input.fields().len()).filter(|&i| !self.columns.iter().any(|c| c == input.field(i).name())).collect())
    }
}

impl Transform for DropColumns {
    fn schema_out(&self, input: &SchemaRef) -> Result<SchemaRef, OpError> {
        let kept = self.kept(input)?;
        Ok(Arc::new(Schema::new(kept.into_iter().map(|i| input.field(i).clone()).collect::<Vec<_>>())))
    }

    fn apply(&self, batch: &RecordBatch) -> Result<Output, OpError> {
        let schema = self.schema_out(batch.schema_ref())?;
        let columns = self.kept(batch.schema_ref())?.into_iter().map(|i| batch.column(i).clone()).collect();
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        let rows = RecordBatch::try_new_with_options(schema, columns, &options).map_err(|e| OpError::arrow(&self.name, e))?;
        Ok(Output { rows, rejects: vec![] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::batch::text_batch;
    use crate::operators::config::testing::transform;
    use serde_json::json;

    fn dropping(columns: serde_json::Value) -> Result<Arc<dyn Transform>, OpError> {
        transform::<Config>(json!({ "columns": columns }), "tidy")
    }

    fn rows() -> RecordBatch {
        let col = |p: &str| (0..2).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
        text_batch(&[("question", col("q")), ("raw", col("r")), ("answer", col("a"))]).unwrap()
    }

    fn names(b: &RecordBatch) -> Vec<String> {
        b.schema().fields().iter().map(|f| f.name().clone()).collect()
    }

    #[test]
    fn drops_listed_columns() {
        let out = dropping(json!(["raw"])).unwrap().apply(&rows()).unwrap();
        assert_eq!(names(&out.rows), vec!["_id", "question", "answer"]);
        assert_eq!(out.rows.num_rows(), 2);
    }

    #[test]
    fn empty_batch() {
        let b = text_batch(&[("question", vec![]), ("raw", vec![])]).unwrap();
        let out = dropping(json!(["raw"])).unwrap().apply(&b).unwrap();
        assert_eq!((out.rows.num_rows(), names(&out.rows)), (0, vec!["_id".into(), "question".into()]));
    }

    #[test]
    fn rejects_nothing() {
        // "All rejected" does not arise: dropping columns never judges a row.
        let out = dropping(json!(["raw", "answer", "question"])).unwrap().apply(&rows()).unwrap();
        assert_eq!((out.rows.num_rows(), out.rejects.len(), names(&out.rows)), (2, 0, vec!["_id".into()]));
    }

    #[test]
    fn schema_mismatch() {
        let e = dropping(json!(["judgment"])).unwrap().apply(&rows()).unwrap_err();
        assert_eq!(e, OpError::schema("tidy", "no column `judgment`; the input has question, raw, answer"));
    }

    #[test]
    fn dropping_the_id_is_a_spec_error() {
        let e = dropping(json!(["raw", "_id"])).unwrap_err();
        assert!(matches!(&e, OpError::Spec { operator, .. } if operator == "tidy"), "{e:?}");
        assert!(dropping(json!([])).unwrap_err().to_string().contains("`columns` is empty"));
    }
}
