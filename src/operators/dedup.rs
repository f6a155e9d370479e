//! `dedup`: drop rows that repeat an earlier row of the same leaf on some columns — the
//! reference's drop-duplicates after a block, e.g. the same question generated twice.
//!
//! - Columns in: `columns` (default: every column but `_id`), text, Int64, Float64 or Boolean,
//!   compared as text; with `normalize`, lowercased with whitespace collapsed and trimmed.
//! - Columns out: unchanged.
//! - Rejected: every row equal to an earlier one (in `_id` order) on all of `columns`:
//!   `duplicate of 0003.0001 on question`. Two nulls count as equal.
//! - Deterministic: yes; the first row in lineage order is the one kept, whatever order the
//!   teacher answered in. An aggregate: it waits for the whole leaf.

use crate::operators::batch::{self, normalize_text};
use crate::operators::config::{check_columns, RowId};
use crate::operators::{Aggregate, BuildContext, OpError, Operator, Output, Step, ROW_ID};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

/// The `dedup` step as written in a pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The columns two rows must agree on to be duplicates. Default: every column but `_id`.
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Compare text lowercased, with runs of whitespace as one space, trimmed. Default: true.
    #[serde(default = "yes")]
    pub normalize: bool,
}

fn yes() -> bool {
    true
}

impl Step for Config {
    const KIND: &'static str = "dedup";

    fn build(self, name: &str, _ctx: &BuildContext) -> Result<Operator, OpError> {
        if let Some(columns) = &self.columns {
            check_columns(columns, "columns", RowId::Forbidden, name)?;
        }
        Ok(Operator::Aggregate(Arc::new(Dedup { name: name.to_string(), columns: self.columns, normalize: self.normalize })))
    }
}

/// The built `dedup` operator.
#[derive(Debug, Clone)]
pub struct Dedup {
    name: String,
    /// `None`: every column but `_id` of the input at hand.
    columns: Option<Vec<String>>,
    normalize: bool,
}

impl Dedup {
    fn key_columns(&self, input: &SchemaRef) -> Result<Vec<String>, OpError> {
        let columns = match &self.columns {
            Some(c) => c.clone(),
            None => input.fields().iter().map(|f| f.name().clone()).filter(|n| n != ROW_ID).collect(),
        };
        for c in &columns {
            batch::pipeline_field(input, c, &self.name)?;
        }
        Ok(columns)
    }
}

impl Aggregate for Dedup {
    fn schema_out(&self, input: &SchemaRef) -> Result<SchemaRef, OpError> {
        self.key_columns(input)?;
        Ok(input.clone())
    }

    fn finish(&self, rows: &RecordBatch) -> Result<Output, OpError> {
        let columns = self.key_columns(rows.schema_ref())?;
        let ids = batch::row_ids(rows, &self.name)?;
        let arrays = columns
            .iter()
            .map(|c| rows.column_by_name(c).ok_or_else(|| batch::missing(rows.schema_ref(), c, &self.name)))
            .collect::<Result<Vec<_>, _>>()?;
        if columns.is_empty() {
            // Only `_id`: every row is distinct.
            return Ok(Output { rows: rows.clone(), rejects: vec![] });
        }
        let on = columns.join(", ");
        // key → row kept for it
        let mut first: HashMap<Vec<Option<String>>, usize> = HashMap::new();
        let mut reasons = Vec::with_capacity(rows.num_rows());
        for row in 0..rows.num_rows() {
            let key: Vec<Option<String>> = arrays
                .iter()
                .map(|a| batch::text_value(a.as_ref(), row).map(|v| if self.normalize { normalize_text(&v) } else { v }))
                .collect();
            match first.get(&key) {
                Some(&kept) => reasons.push(Some(format!("duplicate of {} on {on}", ids.value(kept)))),
                None => {
                    first.insert(key, row);
                    reasons.push(None);
                }
            }
        }
        batch::split(rows, reasons, &self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::batch::{text_batch, text_column, with_column};
    use crate::operators::config::testing::aggregate;
    use crate::operators::Reject;
    use arrow::array::Int64Array;
    use serde_json::json;

    fn dedup(config: serde_json::Value) -> Result<Arc<dyn Aggregate>, OpError> {
        aggregate::<Config>(config, "unique")
    }

    fn rows() -> RecordBatch {
        let q = ["What is 2+2?", "what  is 2+2? ", "Name a colour.", "WHAT IS 2+2?"];
        let a = ["4", "four", "red", "4"];
        text_batch(&[("question", q.map(String::from).to_vec()), ("answer", a.map(String::from).to_vec())]).unwrap()
    }

    #[test]
    fn keeps_the_first_and_names_it() {
        let out = dedup(json!({"columns": ["question"]})).unwrap().finish(&rows()).unwrap();
        let kept: Vec<_> = text_column(&out.rows, "answer", "t").unwrap().iter().flatten().collect();
        assert_eq!(kept, vec!["4", "red"]);
        assert_eq!(
            out.rejects,
            vec![
                Reject { row: 1, reason: "duplicate of 0000 on question".into() },
                Reject { row: 3, reason: "duplicate of 0000 on question".into() }
            ]
        );
    }

    #[test]
    fn defaults_to_all_columns_but_the_id() {
        let out = dedup(json!({})).unwrap().finish(&rows()).unwrap();
        assert_eq!(out.rejects, vec![Reject { row: 3, reason: "duplicate of 0000 on question, answer".into() }]);
    }

    #[test]
    fn without_normalize_only_exact_repeats_count() {
        let out = dedup(json!({"columns": ["question"], "normalize": false})).unwrap().finish(&rows()).unwrap();
        assert!(out.rejects.is_empty());
        let b = with_column(&rows(), "n", Arc::new(Int64Array::from(vec![Some(1), None, Some(1), None]))).unwrap();
        let out = dedup(json!({"columns": ["n"], "normalize": false})).unwrap().finish(&b).unwrap();
        assert_eq!(out.rejects.iter().map(|r| r.row).collect::<Vec<_>>(), vec![2, 3], "numbers and nulls compare too");
    }

    #[test]
    fn empty_leaf() {
        let b = text_batch(&[("question", vec![])]).unwrap();
        let out = dedup(json!({})).unwrap().finish(&b).unwrap();
        assert_eq!((out.rows.num_rows(), out.rejects.len()), (0, 0));
    }

    #[test]
    fn all_but_the_first_rejected() {
        let b = text_batch(&[("q", vec!["same".into(), "Same".into(), " same".into()])]).unwrap();
        let out = dedup(json!({})).unwrap().finish(&b).unwrap();
        assert_eq!((out.rows.num_rows(), out.rejects.len()), (1, 2));
        assert_eq!(out.rejects[1].reason, "duplicate of 0000 on q");
    }

    #[test]
    fn schema_mismatch() {
        let e = dedup(json!({"columns": ["response"]})).unwrap().finish(&rows()).unwrap_err();
        assert_eq!(e, OpError::schema("unique", "no column `response`; the input has question, answer"));
        let list = arrow::array::ListArray::from_iter_primitive::<arrow::datatypes::Int64Type, _, _>(vec![Some(vec![Some(1)]); 4]);
        let b = with_column(&rows(), "l", Arc::new(list)).unwrap();
        assert!(matches!(dedup(json!({})).unwrap().finish(&b).unwrap_err(), OpError::Schema { .. }));
    }

    #[test]
    fn bad_specs() {
        assert!(matches!(dedup(json!({"columns": []})).unwrap_err(), OpError::Spec { .. }));
        assert!(dedup(json!({"columns": ["_id"]})).unwrap_err().to_string().contains("row id"));
    }
}
