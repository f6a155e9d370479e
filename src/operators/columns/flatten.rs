//! `flatten`: wide to long — each input row becomes one row per listed column, holding that
//! column's value (InstructLab's FlattenColumnsBlock, pandas `melt`), e.g. the knowledge
//! pipeline's summaries `[detailed, extractive, atomic_facts]` turned into one `document` each.
//!
//! - Columns in: `columns`, all of one type; every other column is repeated on each child row.
//! - Columns out: the other columns, then `value` (the listed columns' type), then `key` (text:
//!   which column the value came from) when asked for. The listed columns are removed.
//! - Row ids: child `k` of row `p` is `child_id(p, k)`, `k` the position in `columns`, so the
//!   output stays in lineage order.
//! - Rejected: nothing; a null value stays a null (a later `filter` can drop it with a reason).
//! - Deterministic: yes.

use crate::operators::batch::{self, child_id, text_field};
use crate::operators::config::{check_columns, check_name, RowId};
use crate::operators::{BuildContext, OpError, Operator, Output, Step, Transform};
use arrow::array::{Array, ArrayRef, StringArray};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::Deserialize;
use std::sync::Arc;

/// The `flatten` step as written in a pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The columns to turn into rows, in child order. Required, at least one, all of one type.
    pub columns: Vec<String>,
    /// Name of the output column holding each value. Required.
    pub value: String,
    /// Name of an output text column holding the source column's name. Default: none.
    #[serde(default)]
    pub key: Option<String>,
}

impl Step for Config {
    const KIND: &'static str = "flatten";

    fn build(self, name: &str, _ctx: &BuildContext) -> Result<Operator, OpError> {
        check_columns(&self.columns, "columns", RowId::Forbidden, name)?;
        check_name(&self.value, "value", RowId::Forbidden, name)?;
        if let Some(key) = &self.key {
            check_name(key, "key", RowId::Forbidden, name)?;
            if *key == self.value {
                return Err(OpError::spec(name, format!("`key` and `value` are both `{key}`; give them different names")));
            }
        }
        Ok(Operator::Transform(Arc::new(Flatten { name: name.to_string(), config: self })))
    }
}

/// The built `flatten` operator.
#[derive(Debug, Clone)]
pub struct Flatten {
    name: String,
    config: Config,
}

impl Transform for Flatten {
    fn schema_out(&self, input: &SchemaRef) -> Result<SchemaRef, OpError> {
        let listed = self.config.columns.iter().map(|c| batch::field(input, c, &self.name)).collect::<Result<Vec<_>, _>>()?;
        let first = listed[0];
        if let Some(other) = listed.iter().find(|f| f.data_type() != first.data_type()) {
            return Err(OpError::schema(
                &self.name,
                format!(
                    "columns to flatten must share one type: `{}` is {}, `{}` is {}",
                    first.name(),
                    first.data_type(),
                    other.name(),
                    other.data_type()
                ),
            ));
        }
        let mut fields: Vec<Field> =
            input.fields().iter().filter(|f| !self.config.columns.contains(f.name())).map(|f| f.as_ref().clone()).collect();
        let mut added = vec![Field::new(&self.config.value, first.data_type().clone(), true)];
        added.extend(self.config.key.iter().map(|k| text_field(k)));
        for f in added {
            if fields.iter().any(|have| have.name() == f.name()) {
                return Err(OpError::schema(
                    &self.name,
                    format!("the output column `{}` is already an input column; rename or drop it first, or choose another name", f.name()),
                ));
            }
            fields.push(f);
        }
        Ok(Arc::new(Schema::new(fields)))
    }

    fn apply(&self, batch: &RecordBatch) -> Result<Output, OpError> {
        let schema = self.schema_out(batch.schema_ref())?;
        let ids = batch::row_ids(batch, &self.name)?;
        let sources = self
            .config
            .columns
            .iter()
            .map(|c| batch.column_by_name(c).map(|a| a.as_ref()).ok_or_else(|| batch::missing(batch.schema_ref(), c, &self.name)))
            .collect::<Result<Vec<&dyn Array>, _>>()?;
        let (rows, width) = (batch.num_rows(), sources.len());
        if u32::try_from(rows * width).is_err() {
            return Err(OpError::Internal {
                operator: self.name.clone(),
                message: format!("{rows} rows × {width} columns exceed a batch's u32 index"),
            });
        }
        let mut parents = Vec::with_capacity(rows * width);
        let mut child_ids = Vec::with_capacity(rows * width);
        // (source column, row) per output row: parent-major, so children follow their parent.
        let mut picks = Vec::with_capacity(rows * width);
        for row in 0..rows {
            for k in 0..width {
                parents.push(row as u32); // fits: checked above
                child_ids.push(child_id(ids.value(row), k));
                picks.push((k, row));
            }
        }
        let values = arrow::compute::interleave(&sources, &picks).map_err(|e| OpError::arrow(&self.name, e))?;
        let mut columns: Vec<(String, ArrayRef)> = vec![(self.config.value.clone(), values)];
        if let Some(key) = &self.config.key {
            let names: StringArray = picks.iter().map(|(k, _)| Some(self.config.columns[*k].as_str())).collect();
            columns.push((key.clone(), Arc::new(names)));
        }
        let out = batch::expand(batch, &schema, &parents, child_ids, columns, &self.name)?;
        Ok(Output { rows: out, rejects: vec![] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::batch::{row_ids, text_batch, text_column, with_column};
    use crate::operators::config::testing::transform;
    use arrow::array::Int64Array;
    use serde_json::json;

    fn flatten(config: serde_json::Value) -> Result<Arc<dyn Transform>, OpError> {
        transform::<Config>(config, "one_per_summary")
    }

    fn rows() -> RecordBatch {
        text_batch(&[
            ("chunk", vec!["c0".into(), "c1".into()]),
            ("detailed", vec!["d0".into(), "d1".into()]),
            ("atomic", vec!["a0".into(), "a1".into()]),
        ])
        .unwrap()
    }

    #[test]
    fn one_row_per_listed_column_with_child_ids() {
        let f = flatten(json!({"columns": ["detailed", "atomic"], "value": "document", "key": "kind"})).unwrap();
        let out = f.apply(&rows()).unwrap();
        let names: Vec<_> = out.rows.schema().fields().iter().map(|f| f.name().clone()).collect();
        assert_eq!(names, vec!["_id", "chunk", "document", "kind"]);
        let ids: Vec<_> = row_ids(&out.rows, "t").unwrap().iter().flatten().collect();
        assert_eq!(ids, vec!["0000.0000", "0000.0001", "0001.0000", "0001.0001"]);
        let docs: Vec<_> = text_column(&out.rows, "document", "t").unwrap().iter().flatten().collect();
        assert_eq!(docs, vec!["d0", "a0", "d1", "a1"]);
        let kinds: Vec<_> = text_column(&out.rows, "kind", "t").unwrap().iter().flatten().collect();
        assert_eq!(kinds, vec!["detailed", "atomic", "detailed", "atomic"]);
        assert_eq!(text_column(&out.rows, "chunk", "t").unwrap().value(3), "c1");
        assert!(out.rejects.is_empty());
    }

    #[test]
    fn value_may_reuse_a_flattened_name_and_keeps_the_type() {
        let b = with_column(&rows(), "s1", Arc::new(Int64Array::from(vec![1, 2]))).unwrap();
        let b = with_column(&b, "s2", Arc::new(Int64Array::from(vec![Some(3), None]))).unwrap();
        let out = flatten(json!({"columns": ["s1", "s2"], "value": "s1"})).unwrap().apply(&b).unwrap();
        let s = out.rows.column_by_name("s1").unwrap();
        assert_eq!(s.data_type(), &arrow::datatypes::DataType::Int64);
        assert_eq!((s.len(), s.null_count()), (4, 1), "the null stays a null");
    }

    #[test]
    fn empty_batch() {
        let b = text_batch(&[("detailed", vec![]), ("atomic", vec![])]).unwrap();
        let out = flatten(json!({"columns": ["detailed", "atomic"], "value": "document"})).unwrap().apply(&b).unwrap();
        assert_eq!((out.rows.num_rows(), out.rows.num_columns()), (0, 2));
    }

    #[test]
    fn rejects_nothing() {
        // "All rejected" does not arise: flattening never judges a row.
        let out = flatten(json!({"columns": ["atomic"], "value": "document"})).unwrap().apply(&rows()).unwrap();
        assert_eq!((out.rows.num_rows(), out.rejects.len()), (2, 0));
    }

    #[test]
    fn schema_mismatch() {
        let f = flatten(json!({"columns": ["detailed", "extractive"], "value": "document"})).unwrap();
        let e = f.apply(&rows()).unwrap_err();
        assert_eq!(e, OpError::schema("one_per_summary", "no column `extractive`; the input has chunk, detailed, atomic"));
        let b = with_column(&rows(), "n", Arc::new(Int64Array::from(vec![1, 2]))).unwrap();
        let e = flatten(json!({"columns": ["detailed", "n"], "value": "document"})).unwrap().apply(&b).unwrap_err();
        assert_eq!(e.to_string(), "operator `one_per_summary`: columns to flatten must share one type: `detailed` is Utf8, `n` is Int64");
        let e = flatten(json!({"columns": ["detailed"], "value": "chunk"})).unwrap().apply(&rows()).unwrap_err();
        assert!(matches!(e, OpError::Schema { .. }) && e.to_string().contains("`chunk` is already an input column"), "{e}");
    }

    #[test]
    fn bad_specs() {
        assert!(flatten(json!({"columns": [], "value": "v"})).unwrap_err().to_string().contains("`columns` is empty"));
        assert!(flatten(json!({"columns": ["a"], "value": "v", "key": "v"})).unwrap_err().to_string().contains("different names"));
        assert!(flatten(json!({"columns": ["a"], "value": "_id"})).unwrap_err().to_string().contains("row id"));
    }
}
