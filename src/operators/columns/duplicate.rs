//! `duplicate`: copy columns under new names — InstructLab's DuplicateColumnsBlock, e.g. keeping
//! the seed question as `seed_question` before a step overwrites `question`.
//!
//! - Columns in: every `old` of `columns`, any type.
//! - Columns out: the input plus each `new`, appended in the order written, with `old`'s type.
//! - Rejected: nothing.
//! - Deterministic: yes.

use crate::operators::batch;
use crate::operators::config::{check_name, ColumnMap, RowId};
use crate::operators::{BuildContext, OpError, Operator, Output, Step, Transform};
use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use serde::Deserialize;
use std::collections::HashSet;
use std::sync::Arc;

/// The `duplicate` step as written in a pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `old: new` pairs: copy column `old` into a new column `new`. Required, at least one; a
    /// `new` must not exist yet (drop or rename it first).
    pub columns: ColumnMap,
}

impl Step for Config {
    const KIND: &'static str = "duplicate";

    fn build(self, name: &str, _ctx: &BuildContext) -> Result<Operator, OpError> {
        if self.columns.0.is_empty() {
            return Err(OpError::spec(name, "`columns` is empty; give at least one `old: new` pair"));
        }
        let mut targets = HashSet::new();
        for (old, new) in &self.columns.0 {
            check_name(old, "columns", RowId::Allowed, name)?;
            check_name(new, "columns", RowId::Forbidden, name)?;
            if !targets.insert(new.as_str()) {
                return Err(OpError::spec(name, format!("`columns` writes `{new}` twice")));
            }
        }
        Ok(Operator::Transform(Arc::new(Duplicate { name: name.to_string(), pairs: self.columns.0 })))
    }
}

/// The built `duplicate` operator.
#[derive(Debug, Clone)]
pub struct Duplicate {
    name: String,
    pairs: Vec<(String, String)>,
}

impl Transform for Duplicate {
    fn schema_out(&self, input: &SchemaRef) -> Result<SchemaRef, OpError> {
        let mut fields: Vec<_> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        for (old, new) in &self.pairs {
            let source = batch::field(input, old, &self.name)?;
            if input.field_with_name(new).is_ok() {
                return Err(OpError::schema(
                    &self.name,
                    format!("cannot copy `{old}` to `{new}`: column `{new}` already exists; drop or rename it first"),
                ));
            }
            fields.push(source.clone().with_name(new));
        }
        Ok(Arc::new(Schema::new(fields)))
    }

    fn apply(&self, batch: &RecordBatch) -> Result<Output, OpError> {
        let schema = self.schema_out(batch.schema_ref())?;
        let mut columns = batch.columns().to_vec();
        for (old, _) in &self.pairs {
            columns.push(batch.column_by_name(old).ok_or_else(|| batch::missing(batch.schema_ref(), old, &self.name))?.clone());
        }
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        let rows = RecordBatch::try_new_with_options(schema, columns, &options).map_err(|e| OpError::arrow(&self.name, e))?;
        Ok(Output { rows, rejects: vec![] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::batch::{text_batch, text_column, with_column};
    use crate::operators::config::testing::transform;
    use arrow::array::Int64Array;
    use arrow::datatypes::DataType;
    use serde_json::json;

    fn duplicate(columns: serde_json::Value) -> Result<Arc<dyn Transform>, OpError> {
        transform::<Config>(json!({ "columns": columns }), "keep_seed")
    }

    fn rows() -> RecordBatch {
        text_batch(&[("question", vec!["q0".into(), "q1".into()])]).unwrap()
    }

    #[test]
    fn copies_in_the_order_written_keeping_types() {
        let b = with_column(&rows(), "score", Arc::new(Int64Array::from(vec![1, 2]))).unwrap();
        let out = duplicate(json!({"question": "seed_question", "score": "seed_score"})).unwrap().apply(&b).unwrap();
        let names: Vec<_> = out.rows.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, vec!["_id", "question", "score", "seed_question", "seed_score"]);
        assert_eq!(text_column(&out.rows, "seed_question", "t").unwrap().value(1), "q1");
        assert_eq!(out.rows.schema().field(4).data_type(), &DataType::Int64);
        assert!(out.rejects.is_empty());
    }

    #[test]
    fn empty_batch() {
        let b = text_batch(&[("question", vec![])]).unwrap();
        let out = duplicate(json!({"question": "q2"})).unwrap().apply(&b).unwrap();
        assert_eq!((out.rows.num_rows(), out.rows.num_columns()), (0, 3));
    }

    #[test]
    fn rejects_nothing_even_when_values_are_null() {
        // "All rejected" does not arise: copying never judges a row, nulls are copied as nulls.
        let b = with_column(&rows(), "n", Arc::new(Int64Array::from(vec![None, None]))).unwrap();
        let out = duplicate(json!({"n": "m"})).unwrap().apply(&b).unwrap();
        assert_eq!((out.rows.num_rows(), out.rejects.len()), (2, 0));
        assert_eq!(out.rows.column_by_name("m").unwrap().null_count(), 2);
    }

    #[test]
    fn schema_mismatch() {
        let e = duplicate(json!({"answer": "a2"})).unwrap().apply(&rows()).unwrap_err();
        assert_eq!(e, OpError::schema("keep_seed", "no column `answer`; the input has question"));
        let e = duplicate(json!({"question": "question"})).unwrap().apply(&rows()).unwrap_err();
        assert!(matches!(e, OpError::Schema { .. }) && e.to_string().contains("already exists"), "{e}");
    }

    #[test]
    fn bad_specs() {
        assert!(duplicate(json!({})).unwrap_err().to_string().contains("`columns` is empty"));
        assert!(duplicate(json!({"q": "_id"})).unwrap_err().to_string().contains("row id"));
        assert!(duplicate(json!({"q": "x", "a": "x"})).unwrap_err().to_string().contains("twice"));
    }
}
