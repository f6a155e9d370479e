//! `majority`: set every value of a column to its most common value over the leaf —
//! InstructLab's SetToMajorityValueBlock, e.g. one agreed `domain` for all of a leaf's rows.
//!
//! - Columns in: `column` (text, Int64, Float64 or Boolean); other columns pass untouched.
//! - Columns out: the same, `column` holding the majority value on every row (nulls included).
//! - Counting: nulls do not count; a column of nulls only stays as it is. A tie goes to the
//!   smallest value (text by bytes, numbers by value), so the result never depends on row order.
//! - Rejected: nothing.
//! - Deterministic: yes. An aggregate: it waits for the whole leaf.

use crate::operators::batch;
use crate::operators::config::{check_name, RowId};
use crate::operators::{Aggregate, BuildContext, OpError, Operator, Output, Step};
use arrow::array::{Array, AsArray, UInt32Array};
use arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::Deserialize;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The `majority` step as written in a pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The column to set to its most common value. Required.
    pub column: String,
}

impl Step for Config {
    const KIND: &'static str = "majority";

    fn build(self, name: &str, _ctx: &BuildContext) -> Result<Operator, OpError> {
        check_name(&self.column, "column", RowId::Forbidden, name)?;
        Ok(Operator::Aggregate(Arc::new(Majority { name: name.to_string(), column: self.column })))
    }
}

/// The built `majority` operator.
#[derive(Debug, Clone)]
pub struct Majority {
    name: String,
    column: String,
}

/// A value as counted: ordered so that the smallest wins a tie.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Bool(bool),
    Int(i64),
    Float(TotalF64),
    Text(String),
}

/// An f64 ordered by `total_cmp`, so that NaN and -0.0 count as values of their own.
#[derive(Debug, Clone, Copy)]
struct TotalF64(f64);

impl PartialEq for TotalF64 {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0) == Ordering::Equal
    }
}
impl Eq for TotalF64 {}
impl PartialOrd for TotalF64 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TotalF64 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

fn key(col: &dyn Array, row: usize) -> Option<Key> {
    if col.is_null(row) {
        return None;
    }
    match col.data_type() {
        DataType::Boolean => Some(Key::Bool(col.as_boolean().value(row))),
        DataType::Int64 => Some(Key::Int(col.as_primitive::<Int64Type>().value(row))),
        DataType::Float64 => Some(Key::Float(TotalF64(col.as_primitive::<Float64Type>().value(row)))),
        DataType::Utf8 => Some(Key::Text(col.as_string::<i32>().value(row).to_string())),
        _ => None,
    }
}

impl Majority {
    /// The row holding the majority value of `col`, or `None` when every value is null.
    fn winner(col: &dyn Array) -> Option<usize> {
        // value → (count, first row holding it); BTreeMap iterates smallest first.
        let mut counts: BTreeMap<Key, (usize, usize)> = BTreeMap::new();
        for row in 0..col.len() {
            if let Some(k) = key(col, row) {
                counts.entry(k).or_insert((0, row)).0 += 1;
            }
        }
        let mut best: Option<(usize, usize)> = None;
        for (count, row) in counts.into_values() {
            if best.is_none_or(|(c, _)| count > c) {
                best = Some((count, row));
            }
        }
        best.map(|(_, row)| row)
    }
}

impl Aggregate for Majority {
    fn schema_out(&self, input: &SchemaRef) -> Result<SchemaRef, OpError> {
        batch::pipeline_field(input, &self.column, &self.name)?;
        Ok(input.clone())
    }

    fn finish(&self, rows: &RecordBatch) -> Result<Output, OpError> {
        self.schema_out(rows.schema_ref())?;
        let col = rows.column_by_name(&self.column).ok_or_else(|| batch::missing(rows.schema_ref(), &self.column, &self.name))?;
        let Some(winner) = Self::winner(col.as_ref()) else {
            return Ok(Output { rows: rows.clone(), rejects: vec![] });
        };
        let winner =
            u32::try_from(winner).map_err(|_| OpError::Internal { operator: self.name.clone(), message: "leaf over u32 rows".into() })?;
        let every = UInt32Array::from(vec![winner; rows.num_rows()]);
        let set = arrow::compute::take(col.as_ref(), &every, None).map_err(|e| OpError::arrow(&self.name, e))?;
        let out = batch::with_column(rows, &self.column, set).map_err(|e| OpError::arrow(&self.name, e))?;
        Ok(Output { rows: out, rejects: vec![] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::batch::{text_batch, text_column, with_column};
    use crate::operators::config::testing::aggregate;
    use arrow::array::{Float64Array, Int64Array};
    use serde_json::json;

    fn majority(column: &str) -> Result<Arc<dyn Aggregate>, OpError> {
        aggregate::<Config>(json!({ "column": column }), "agree")
    }

    fn domains(values: &[&str]) -> RecordBatch {
        text_batch(&[("domain", values.iter().map(|s| s.to_string()).collect())]).unwrap()
    }

    fn texts(b: &RecordBatch) -> Vec<String> {
        text_column(b, "domain", "t").unwrap().iter().map(|s| s.unwrap_or("<null>").to_string()).collect()
    }

    #[test]
    fn sets_every_row_to_the_most_common_value() {
        let out = majority("domain").unwrap().finish(&domains(&["b", "a", "b", "c"])).unwrap();
        assert_eq!(texts(&out.rows), vec!["b"; 4]);
        assert_eq!(batch::row_ids(&out.rows, "t").unwrap().value(3), "0003");
        assert!(out.rejects.is_empty());
    }

    #[test]
    fn ties_go_to_the_smallest_value_whatever_the_order() {
        let m = majority("domain").unwrap();
        assert_eq!(texts(&m.finish(&domains(&["z", "y", "z", "y"])).unwrap().rows), vec!["y"; 4]);
        assert_eq!(texts(&m.finish(&domains(&["y", "z", "y", "z"])).unwrap().rows), vec!["y"; 4]);
        let b = with_column(&domains(&["", "", "", ""]), "n", Arc::new(Int64Array::from(vec![10, 9, 10, 9]))).unwrap();
        let out = majority("n").unwrap().finish(&b).unwrap();
        assert_eq!(out.rows.column_by_name("n").unwrap().as_primitive::<Int64Type>().values().to_vec(), vec![9; 4]);
    }

    #[test]
    fn nulls_do_not_count_but_are_set() {
        let b = with_column(&domains(&["", "", ""]), "x", Arc::new(Float64Array::from(vec![None, Some(0.5), None]))).unwrap();
        let out = majority("x").unwrap().finish(&b).unwrap();
        let x = out.rows.column_by_name("x").unwrap().as_primitive::<Float64Type>();
        assert_eq!((x.null_count(), x.value(0)), (0, 0.5));
        let b = with_column(&b, "x", Arc::new(Float64Array::from(vec![None, None, None]))).unwrap();
        assert_eq!(majority("x").unwrap().finish(&b).unwrap().rows.column_by_name("x").unwrap().null_count(), 3);
    }

    #[test]
    fn empty_leaf() {
        let out = majority("domain").unwrap().finish(&domains(&[])).unwrap();
        assert_eq!((out.rows.num_rows(), out.rejects.len()), (0, 0));
    }

    #[test]
    fn rejects_nothing() {
        // "All rejected" does not arise: every row gets the majority value.
        let out = majority("domain").unwrap().finish(&domains(&["a", "b", "c"])).unwrap();
        assert_eq!((texts(&out.rows), out.rejects.len()), (vec!["a".to_string(); 3], 0));
    }

    #[test]
    fn schema_mismatch() {
        let e = majority("topic").unwrap().finish(&domains(&["a"])).unwrap_err();
        assert_eq!(e, OpError::schema("agree", "no column `topic`; the input has domain"));
        let list = arrow::array::ListArray::from_iter_primitive::<Int64Type, _, _>(vec![Some(vec![Some(1)])]);
        let b = with_column(&domains(&["a"]), "l", Arc::new(list)).unwrap();
        assert!(matches!(majority("l").unwrap().finish(&b).unwrap_err(), OpError::Schema { .. }));
        assert!(matches!(majority("_id").unwrap_err(), OpError::Spec { .. }));
    }
}
