//! `rename`: give columns new names in place — InstructLab's RenameColumns block, e.g. the
//! generated `question` becoming `seed_question` between two generation steps.
//!
//! - Columns in: every `old` of `columns`, any type.
//! - Columns out: the same columns in the same order, `old` names replaced by `new` ones. Swaps
//!   (`{a: b, b: a}`) work: the names are checked after every rename is applied.
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

/// The `rename` step as written in a pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `old: new` pairs: column `old` is called `new` from here on. Required, at least one.
    pub columns: ColumnMap,
}

impl Step for Config {
    const KIND: &'static str = "rename";

    fn build(self, name: &str, _ctx: &BuildContext) -> Result<Operator, OpError> {
        if self.columns.0.is_empty() {
            return Err(OpError::spec(name, "`columns` is empty; give at least one `old: new` pair"));
        }
        let mut sources = HashSet::new();
        for (old, new) in &self.columns.0 {
            check_name(old, "columns", RowId::Forbidden, name)?;
            check_name(new, "columns", RowId::Forbidden, name)?;
            if !sources.insert(old.as_str()) {
                return Err(OpError::spec(name, format!("`columns` renames `{old}` twice")));
            }
        }
        Ok(Operator::Transform(Arc::new(Rename { name: name.to_string(), pairs: self.columns.0 })))
    }
}

/// The built `rename` operator.
#[derive(Debug, Clone)]
pub struct Rename {
    name: String,
    pairs: Vec<(String, String)>,
}

impl Transform for Rename {
    fn schema_out(&self, input: &SchemaRef) -> Result<SchemaRef, OpError> {
        for (old, _) in &self.pairs {
            batch::field(input, old, &self.name)?;
        }
        let fields: Vec<_> = input
            .fields()
            .iter()
            .map(|f| match self.pairs.iter().find(|(old, _)| old == f.name()) {
                Some((_, new)) => f.as_ref().clone().with_name(new),
                None => f.as_ref().clone(),
            })
            .collect();
        let mut seen = HashSet::new();
        for f in &fields {
            if !seen.insert(f.name().as_str()) {
                return Err(OpError::schema(
                    &self.name,
                    format!("renaming would give two columns named `{}`; drop or rename the existing one first", f.name()),
                ));
            }
        }
        Ok(Arc::new(Schema::new(fields)))
    }

    fn apply(&self, batch: &RecordBatch) -> Result<Output, OpError> {
        let schema = self.schema_out(batch.schema_ref())?;
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        let rows =
            RecordBatch::try_new_with_options(schema, batch.columns().to_vec(), &options).map_err(|e| OpError::arrow(&self.name, e))?;
        Ok(Output { rows, rejects: vec![] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::batch::{text_batch, text_column};
    use crate::operators::config::testing::transform;
    use serde_json::json;

    fn rename(columns: serde_json::Value) -> Result<Arc<dyn Transform>, OpError> {
        transform::<Config>(json!({ "columns": columns }), "to_seed")
    }

    fn rows() -> RecordBatch {
        text_batch(&[("question", vec!["q0".into(), "q1".into()]), ("answer", vec!["a0".into(), "a1".into()])]).unwrap()
    }

    fn names(b: &RecordBatch) -> Vec<String> {
        b.schema().fields().iter().map(|f| f.name().clone()).collect()
    }

    #[test]
    fn renames_in_place() {
        let out = rename(json!({"question": "seed_question"})).unwrap().apply(&rows()).unwrap();
        assert_eq!(names(&out.rows), vec!["_id", "seed_question", "answer"]);
        assert_eq!(text_column(&out.rows, "seed_question", "t").unwrap().value(1), "q1");
        assert!(out.rejects.is_empty());
    }

    #[test]
    fn swaps_work() {
        let out = rename(json!({"question": "answer", "answer": "question"})).unwrap().apply(&rows()).unwrap();
        assert_eq!(names(&out.rows), vec!["_id", "answer", "question"]);
        assert_eq!(text_column(&out.rows, "question", "t").unwrap().value(0), "a0");
    }

    #[test]
    fn empty_batch() {
        let b = text_batch(&[("question", vec![]), ("answer", vec![])]).unwrap();
        let out = rename(json!({"answer": "response"})).unwrap().apply(&b).unwrap();
        assert_eq!((out.rows.num_rows(), names(&out.rows)), (0, vec!["_id".into(), "question".into(), "response".into()]));
    }

    #[test]
    fn rejects_nothing() {
        // "All rejected" does not arise: renaming never judges a row.
        let out = rename(json!({"answer": "response"})).unwrap().apply(&rows()).unwrap();
        assert_eq!((out.rows.num_rows(), out.rejects.len()), (2, 0));
    }

    #[test]
    fn schema_mismatch() {
        let e = rename(json!({"response": "answer"})).unwrap().apply(&rows()).unwrap_err();
        assert_eq!(e, OpError::schema("to_seed", "no column `response`; the input has question, answer"));
        let e = rename(json!({"question": "answer"})).unwrap().apply(&rows()).unwrap_err();
        assert!(matches!(e, OpError::Schema { .. }) && e.to_string().contains("two columns named `answer`"), "{e}");
    }

    #[test]
    fn bad_specs() {
        assert!(rename(json!({})).unwrap_err().to_string().contains("`columns` is empty"));
        assert!(rename(json!({"_id": "id"})).unwrap_err().to_string().contains("row id"));
        assert!(rename(json!({"q": "_id"})).unwrap_err().to_string().contains("row id"));
    }
}
