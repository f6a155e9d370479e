//! `select`: keep only the listed columns, in the order listed — the last step of a pipeline
//! usually, so that a dataset holds what the mixer reads and nothing else.
//!
//! - Columns in: every listed column, any type.
//! - Columns out: `_id` (always kept, first unless listed elsewhere), then the listed columns.
//! - Rejected: nothing.
//! - Deterministic: yes.

use crate::operators::batch;
use crate::operators::config::{check_columns, RowId};
use crate::operators::{BuildContext, OpError, Operator, Output, Step, Transform, ROW_ID};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use serde::Deserialize;
use std::sync::Arc;

/// The `select` step as written in a pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The columns to keep, in output order. Required, at least one; `_id` is kept whether
    /// listed or not.
    pub columns: Vec<String>,
}

impl Step for Config {
    const KIND: &'static str = "select";

    fn build(self, name: &str, _ctx: &BuildContext) -> Result<Operator, OpError> {
        check_columns(&self.columns, "columns", RowId::Allowed, name)?;
        let mut columns = self.columns;
        if !columns.iter().any(|c| c == ROW_ID) {
            columns.insert(0, ROW_ID.to_string());
        }
        Ok(Operator::Transform(Arc::new(Select { name: name.to_string(), columns })))
    }
}

/// The built `select` operator.
#[derive(Debug, Clone)]
pub struct Select {
    name: String,
    /// With `_id` among them.
    columns: Vec<String>,
}

impl Transform for Select {
    fn schema_out(&self, input: &SchemaRef) -> Result<SchemaRef, OpError> {
        let fields = self.columns.iter().map(|c| batch::field(input, c, &self.name).cloned()).collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(Schema::new(fields)))
    }

    fn apply(&self, batch: &RecordBatch) -> Result<Output, OpError> {
        let schema = self.schema_out(batch.schema_ref())?;
        let columns = self
            .columns
            .iter()
            .map(|c| batch.column_by_name(c).cloned().ok_or_else(|| batch::missing(batch.schema_ref(), c, &self.name)))
            .collect::<Result<Vec<_>, _>>()?;
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

    fn select(columns: serde_json::Value) -> Result<Arc<dyn Transform>, OpError> {
        transform::<Config>(json!({ "columns": columns }), "keep_pair")
    }

    fn rows() -> RecordBatch {
        let col = |p: &str| (0..2).map(|i| format!("{p}{i}")).collect::<Vec<_>>();
        text_batch(&[("question", col("q")), ("answer", col("a")), ("score", col("s"))]).unwrap()
    }

    fn names(b: &RecordBatch) -> Vec<String> {
        b.schema().fields().iter().map(|f| f.name().clone()).collect()
    }

    #[test]
    fn keeps_listed_columns_in_order_with_the_id() {
        let out = select(json!(["answer", "question"])).unwrap().apply(&rows()).unwrap();
        assert_eq!(names(&out.rows), vec!["_id", "answer", "question"]);
        assert_eq!(out.rows.num_rows(), 2);
        let out = select(json!(["answer", "_id"])).unwrap().apply(&rows()).unwrap();
        assert_eq!(names(&out.rows), vec!["answer", "_id"]);
    }

    #[test]
    fn empty_batch() {
        let b = text_batch(&[("question", vec![]), ("answer", vec![])]).unwrap();
        let out = select(json!(["answer"])).unwrap().apply(&b).unwrap();
        assert_eq!((out.rows.num_rows(), names(&out.rows)), (0, vec!["_id".into(), "answer".into()]));
    }

    #[test]
    fn rejects_nothing() {
        // "All rejected" does not arise: selecting columns never judges a row.
        let out = select(json!(["score"])).unwrap().apply(&rows()).unwrap();
        assert_eq!((out.rows.num_rows(), out.rejects.len()), (2, 0));
    }

    #[test]
    fn schema_mismatch() {
        let e = select(json!(["question", "response"])).unwrap().apply(&rows()).unwrap_err();
        assert_eq!(e, OpError::schema("keep_pair", "no column `response`; the input has question, answer, score"));
    }

    #[test]
    fn bad_specs() {
        assert!(select(json!([])).unwrap_err().to_string().contains("`columns` is empty"));
        assert!(select(json!(["a", "a"])).unwrap_err().to_string().contains("twice"));
    }
}
