//! `combine`: join the values of several columns into one text column with a separator —
//! InstructLab's CombineColumnsBlock, e.g. the grounded-skills step that prepends the context to
//! the question (`columns: [context, question]`, `into: question`).
//!
//! - Columns in: `columns` (text, Int64, Float64 or Boolean, read as text); others pass untouched.
//! - Columns out: the input plus `into` (text), replacing `into` in place when it already exists.
//! - Rejected: rows where a listed column is null (a null would vanish from the join unnoticed).
//! - Deterministic: yes.

use crate::operators::batch::{self, text_field};
use crate::operators::config::{check_columns, check_name, RowId};
use crate::operators::{BuildContext, OpError, Operator, Output, Step, Transform};
use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde::Deserialize;
use std::sync::Arc;

/// The `combine` step as written in a pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The columns to join, in order. Required, at least one.
    pub columns: Vec<String>,
    /// The text column to write; may be one of `columns`. Required.
    pub into: String,
    /// Put between consecutive values. Default: `"\n\n"` (a blank line).
    #[serde(default = "default_separator")]
    pub separator: String,
}

fn default_separator() -> String {
    "\n\n".to_string()
}

impl Step for Config {
    const KIND: &'static str = "combine";

    fn build(self, name: &str, _ctx: &BuildContext) -> Result<Operator, OpError> {
        check_columns(&self.columns, "columns", RowId::Allowed, name)?;
        check_name(&self.into, "into", RowId::Forbidden, name)?;
        Ok(Operator::Transform(Arc::new(Combine { name: name.to_string(), config: self })))
    }
}

/// The built `combine` operator.
#[derive(Debug, Clone)]
pub struct Combine {
    name: String,
    config: Config,
}

impl Transform for Combine {
    fn schema_out(&self, input: &SchemaRef) -> Result<SchemaRef, OpError> {
        for c in &self.config.columns {
            batch::pipeline_field(input, c, &self.name)?;
        }
        Ok(batch::schema_with(input, &[text_field(&self.config.into)]))
    }

    fn apply(&self, batch: &RecordBatch) -> Result<Output, OpError> {
        self.schema_out(batch.schema_ref())?;
        let cols = self
            .config
            .columns
            .iter()
            .map(|c| batch.column_by_name(c).map(|a| (c, a)).ok_or_else(|| batch::missing(batch.schema_ref(), c, &self.name)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut joined: Vec<Option<String>> = Vec::with_capacity(batch.num_rows());
        let mut reasons = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let parts: Result<Vec<String>, String> = cols
                .iter()
                .map(|(name, col)| batch::text_value(col.as_ref(), row).ok_or_else(|| format!("no value (null) in column {name}")))
                .collect();
            match parts {
                Ok(parts) => {
                    joined.push(Some(parts.join(&self.config.separator)));
                    reasons.push(None);
                }
                Err(reason) => {
                    joined.push(None);
                    reasons.push(Some(reason));
                }
            }
        }
        let column: ArrayRef = Arc::new(StringArray::from(joined));
        let with = batch::with_column(batch, &self.config.into, column).map_err(|e| OpError::arrow(&self.name, e))?;
        batch::split(&with, reasons, &self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::batch::{text_batch, text_column, with_column};
    use crate::operators::Reject;
    use arrow::array::Int64Array;
    use serde_json::json;

    fn combine(config: serde_json::Value) -> Result<Arc<dyn Transform>, OpError> {
        crate::operators::config::testing::transform::<Config>(config, "join")
    }

    fn rows() -> RecordBatch {
        text_batch(&[("context", vec!["ctx a".into(), "ctx b".into()]), ("question", vec!["q a".into(), "q b".into()])]).unwrap()
    }

    #[test]
    fn joins_with_a_blank_line_into_an_existing_column() {
        let out = combine(json!({"columns": ["context", "question"], "into": "question"})).unwrap().apply(&rows()).unwrap();
        assert_eq!(text_column(&out.rows, "question", "t").unwrap().value(1), "ctx b\n\nq b");
        assert_eq!(out.rows.schema(), rows().schema(), "`into` replaced in place");
        assert_eq!(batch::row_ids(&out.rows, "t").unwrap().value(0), "0000");
    }

    #[test]
    fn numbers_join_as_text_with_a_custom_separator() {
        let b = with_column(&rows(), "n", Arc::new(Int64Array::from(vec![1, 2]))).unwrap();
        let out = combine(json!({"columns": ["question", "n"], "into": "both", "separator": " #"})).unwrap().apply(&b).unwrap();
        assert_eq!(text_column(&out.rows, "both", "t").unwrap().value(0), "q a #1");
    }

    #[test]
    fn empty_batch() {
        let b = text_batch(&[("context", vec![]), ("question", vec![])]).unwrap();
        let out = combine(json!({"columns": ["context", "question"], "into": "x"})).unwrap().apply(&b).unwrap();
        assert_eq!((out.rows.num_rows(), out.rows.num_columns()), (0, 4));
    }

    #[test]
    fn all_rows_with_a_null_are_rejected() {
        let b = with_column(&rows(), "n", Arc::new(Int64Array::from(vec![None, None]))).unwrap();
        let out = combine(json!({"columns": ["question", "n"], "into": "x"})).unwrap().apply(&b).unwrap();
        assert_eq!(out.rows.num_rows(), 0);
        assert_eq!(out.rejects[1], Reject { row: 1, reason: "no value (null) in column n".into() });
    }

    #[test]
    fn schema_mismatch() {
        let c = combine(json!({"columns": ["context", "answer"], "into": "x"})).unwrap();
        let e = c.apply(&rows()).unwrap_err();
        assert_eq!(e, OpError::schema("join", "no column `answer`; the input has context, question"));
        let list = arrow::array::ListArray::from_iter_primitive::<arrow::datatypes::Int64Type, _, _>(vec![Some(vec![Some(1)]); 2]);
        let b = with_column(&rows(), "answer", Arc::new(list)).unwrap();
        let e = c.apply(&b).unwrap_err();
        assert!(matches!(e, OpError::Schema { .. }) && e.to_string().contains("column `answer` is List"), "{e}");
    }

    #[test]
    fn bad_specs() {
        assert!(combine(json!({"columns": [], "into": "x"})).unwrap_err().to_string().contains("`columns` is empty"));
        assert!(combine(json!({"columns": ["a"], "into": "_id"})).unwrap_err().to_string().contains("row id"));
        let c: Config = serde_json::from_value(json!({"columns": ["a"], "into": "b"})).unwrap();
        assert_eq!(c.separator, "\n\n");
        assert!(serde_json::from_value::<Config>(json!({"columns": ["a"], "into": "b", "sep": ""})).is_err());
    }
}
