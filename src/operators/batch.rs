//! Small helpers over Arrow batches that every operator uses: typed column access, row values
//! for templates, lineage ids, and building an output batch from input rows plus new columns.
//!
//! Column types in pipelines are few on purpose: text is `Utf8`, numbers `Int64` or `Float64`,
//! flags `Boolean`. Anything else a value needs (a list, an object) travels as JSON text.

use crate::operators::{OpError, Output, Reject, ROW_ID};
use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatchOptions, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde_json::Value;
use std::sync::Arc;

/// Digits per lineage counter: `0003.0012`.
const ID_WIDTH: usize = 4;

/// The lineage id of child `k` of the row with id `parent`.
pub fn child_id(parent: &str, k: usize) -> String {
    if parent.is_empty() {
        format!("{k:0ID_WIDTH$}")
    } else {
        format!("{parent}.{k:0ID_WIDTH$}")
    }
}

/// The text column `name`, or a schema error naming `operator`.
pub fn text_column<'b>(batch: &'b RecordBatch, name: &str, operator: &str) -> Result<&'b StringArray, OpError> {
    let col = batch.column_by_name(name).ok_or_else(|| missing(batch.schema_ref(), name, operator))?;
    col.as_string_opt::<i32>().ok_or_else(|| OpError::schema(operator, format!("column `{name}` is {}, expected text", col.data_type())))
}

/// The row ids of `batch`.
pub fn row_ids<'b>(batch: &'b RecordBatch, operator: &str) -> Result<&'b StringArray, OpError> {
    text_column(batch, ROW_ID, operator)
}

/// The schema error for a missing column, listing the columns that exist.
pub fn missing(schema: &SchemaRef, name: &str, operator: &str) -> OpError {
    let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).filter(|n| *n != ROW_ID).collect();
    OpError::schema(operator, format!("no column `{name}`; the input has {}", have.join(", ")))
}

/// Check that `schema` has every column in `names`.
pub fn require(schema: &SchemaRef, names: &[&str], operator: &str) -> Result<(), OpError> {
    for n in names {
        if schema.field_with_name(n).is_err() {
            return Err(missing(schema, n, operator));
        }
    }
    Ok(())
}

/// Check that `schema` carries the lineage column [`ROW_ID`].
pub fn row_ids_field(schema: &SchemaRef, operator: &str) -> Result<(), OpError> {
    require(schema, &[ROW_ID], operator)
}

/// `input` with `fields` added; a field whose name exists replaces that column in place.
pub fn schema_with(input: &SchemaRef, fields: &[Field]) -> SchemaRef {
    let mut out: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
    for f in fields {
        match out.iter().position(|o| o.name() == f.name()) {
            Some(i) => out[i] = f.clone(),
            None => out.push(f.clone()),
        }
    }
    Arc::new(Schema::new(out))
}

/// A nullable text field.
pub fn text_field(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

/// The value at `row` of `col` as JSON (null for nulls; JSON text stays text).
pub fn json_value(col: &dyn Array, row: usize) -> Value {
    if col.is_null(row) {
        return Value::Null;
    }
    match col.data_type() {
        DataType::Utf8 => Value::String(col.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => Value::String(col.as_string::<i64>().value(row).to_string()),
        DataType::Boolean => Value::Bool(col.as_boolean().value(row)),
        DataType::Int64 => Value::from(col.as_primitive::<arrow::datatypes::Int64Type>().value(row)),
        DataType::Int32 => Value::from(col.as_primitive::<arrow::datatypes::Int32Type>().value(row)),
        DataType::UInt32 => Value::from(col.as_primitive::<arrow::datatypes::UInt32Type>().value(row)),
        DataType::Float64 => serde_json::Number::from_f64(col.as_primitive::<arrow::datatypes::Float64Type>().value(row))
            .map(Value::Number)
            .unwrap_or(Value::Null),
        other => Value::String(format!("<{other}>")),
    }
}

/// Row `row` of `batch` as a JSON object of column → value (the [`ROW_ID`] column included).
pub fn row_json(batch: &RecordBatch, row: usize) -> serde_json::Map<String, Value> {
    let schema = batch.schema();
    schema.fields().iter().zip(batch.columns()).map(|(f, c)| (f.name().clone(), json_value(c.as_ref(), row))).collect()
}

/// The value at `row` of `col` as text, the way a filter or template sees it (`None` for null).
pub fn text_value(col: &dyn Array, row: usize) -> Option<String> {
    match json_value(col, row) {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// Rows `parents` of `input` (repeats allowed), with `ids` as their new lineage ids and
/// `columns` added or replaced, in `schema` (from [`schema_with`] over the same fields).
///
/// This is how a step that turns one row into k rows builds its output: every input column is
/// carried over by `take`, so no operator rebuilds columns it does not own.
pub fn expand(
    input: &RecordBatch,
    schema: &SchemaRef,
    parents: &[u32],
    ids: Vec<String>,
    columns: Vec<(String, ArrayRef)>,
    operator: &str,
) -> Result<RecordBatch, OpError> {
    let idx = UInt32Array::from(parents.to_vec());
    let mut out: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    let id_array: ArrayRef = Arc::new(StringArray::from(ids));
    for field in schema.fields() {
        let name = field.name();
        if name == ROW_ID {
            out.push(id_array.clone());
        } else if let Some((_, col)) = columns.iter().find(|(n, _)| n == name) {
            out.push(col.clone());
        } else {
            let col = input.column_by_name(name).ok_or_else(|| missing(input.schema_ref(), name, operator))?;
            out.push(arrow::compute::take(col.as_ref(), &idx, None).map_err(|e| OpError::arrow(operator, e))?);
        }
    }
    let options = RecordBatchOptions::new().with_row_count(Some(parents.len()));
    RecordBatch::try_new_with_options(schema.clone(), out, &options).map_err(|e| OpError::arrow(operator, e))
}

/// The rows of `batch` where `keep` is true.
pub fn keep_rows(batch: &RecordBatch, keep: &BooleanArray, operator: &str) -> Result<RecordBatch, OpError> {
    arrow::compute::filter_record_batch(batch, keep).map_err(|e| OpError::arrow(operator, e))
}

/// An empty batch of `schema`.
pub fn empty(schema: &SchemaRef) -> RecordBatch {
    RecordBatch::new_empty(schema.clone())
}

/// A batch of text columns (every value present), with fresh lineage ids `0000`, `0001`, …
/// prepended as [`ROW_ID`]. Seed expansion and tests build their batches with this.
pub fn text_batch(columns: &[(&str, Vec<String>)]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let rows = columns.first().map(|(_, v)| v.len()).unwrap_or(0);
    let mut fields = vec![Field::new(ROW_ID, DataType::Utf8, false)];
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(StringArray::from((0..rows).map(|i| child_id("", i)).collect::<Vec<_>>()))];
    for (name, values) in columns {
        fields.push(text_field(name));
        arrays.push(Arc::new(StringArray::from(values.clone())));
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)
}

/// Concatenate batches of one schema (an empty batch of `schema` when there are none).
pub fn concat(schema: &SchemaRef, batches: &[RecordBatch], operator: &str) -> Result<RecordBatch, OpError> {
    arrow::compute::concat_batches(schema, batches).map_err(|e| OpError::arrow(operator, e))
}

/// `batch` sorted by [`ROW_ID`] (lineage order: the same on every run).
pub fn sort_by_id(batch: &RecordBatch, operator: &str) -> Result<RecordBatch, OpError> {
    let ids = batch.column_by_name(ROW_ID).ok_or_else(|| missing(batch.schema_ref(), ROW_ID, operator))?;
    let order = arrow::compute::sort_to_indices(ids, None, None).map_err(|e| OpError::arrow(operator, e))?;
    let columns = batch
        .columns()
        .iter()
        .map(|c| arrow::compute::take(c.as_ref(), &order, None))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| OpError::arrow(operator, e))?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(batch.schema(), columns, &options).map_err(|e| OpError::arrow(operator, e))
}

/// The field `name` of `schema`, or the schema error for a missing column naming `operator`.
pub fn field<'s>(schema: &'s SchemaRef, name: &str, operator: &str) -> Result<&'s Field, OpError> {
    schema.field_with_name(name).map_err(|_| missing(schema, name, operator))
}

/// Check that column `name` of `schema` exists and has one of the pipeline types (text, Int64,
/// Float64, Boolean), the ones every operator can read as a value.
pub fn pipeline_field<'s>(schema: &'s SchemaRef, name: &str, operator: &str) -> Result<&'s Field, OpError> {
    let f = field(schema, name, operator)?;
    match f.data_type() {
        DataType::Utf8 | DataType::Int64 | DataType::Float64 | DataType::Boolean => Ok(f),
        other => Err(OpError::schema(operator, format!("column `{name}` is {other}; pipelines hold text, Int64, Float64 or Boolean"))),
    }
}

/// `batch` with column `name` set to `column`: replaced in place when it exists (its field takes
/// `column`'s type), appended as a nullable field otherwise.
pub fn with_column(batch: &RecordBatch, name: &str, column: ArrayRef) -> Result<RecordBatch, arrow::error::ArrowError> {
    let field = Field::new(name, column.data_type().clone(), true);
    let schema = schema_with(batch.schema_ref(), &[field]);
    let mut columns = batch.columns().to_vec();
    match batch.schema_ref().index_of(name) {
        Ok(i) => columns[i] = column,
        Err(_) => columns.push(column),
    }
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(schema, columns, &options)
}

/// Split `batch` by a verdict per row: row `i` is kept when `reasons[i]` is `None`, rejected with
/// that reason otherwise. The kept rows keep their order and every column.
pub fn split(batch: &RecordBatch, reasons: Vec<Option<String>>, operator: &str) -> Result<Output, OpError> {
    let keep: BooleanArray = reasons.iter().map(|r| Some(r.is_none())).collect();
    let rows = keep_rows(batch, &keep, operator)?;
    let rejects = reasons.into_iter().enumerate().filter_map(|(row, r)| r.map(|reason| Reject { row, reason })).collect();
    Ok(Output { rows, rejects })
}

/// Text the way `dedup` and `rules` compare it: lowercased, runs of whitespace made one space,
/// trimmed; typographic apostrophes read as `'`.
pub fn normalize_text(s: &str) -> String {
    let lower = s.to_lowercase().replace(['\u{2019}', '\u{2018}'], "'");
    lower.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Characters of a value shown in a reject reason before it is cut.
const SHOWN_CHARS: usize = 60;

/// `s` quoted for a reject reason, cut to a readable length (`"a long questi…"`).
pub fn shown(s: &str) -> String {
    let mut chars = s.chars();
    let head: String = chars.by_ref().take(SHOWN_CHARS).collect();
    let tail = if chars.next().is_some() { "…" } else { "" };
    format!("{:?}", head + tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_repeats_parents_and_adds_columns() {
        let b = text_batch(&[("q", vec!["a".into(), "b".into()])]).unwrap();
        let schema = schema_with(b.schema_ref(), &[text_field("answer")]);
        let answers: ArrayRef = Arc::new(StringArray::from(vec!["x", "y", "z"]));
        let out = expand(
            &b,
            &schema,
            &[1, 1, 0],
            vec!["0001.0000".into(), "0001.0001".into(), "0000.0000".into()],
            vec![("answer".into(), answers)],
            "t",
        )
        .unwrap();
        assert_eq!(out.num_rows(), 3);
        let q = text_column(&out, "q", "t").unwrap();
        assert_eq!((q.value(0), q.value(1), q.value(2)), ("b", "b", "a"));
        let sorted = sort_by_id(&out, "t").unwrap();
        assert_eq!(text_column(&sorted, "answer", "t").unwrap().value(0), "z");
    }

    #[test]
    fn missing_column_names_what_exists() {
        let b = text_batch(&[("q", vec!["a".into()])]).unwrap();
        let e = text_column(&b, "nope", "judge").unwrap_err();
        assert_eq!(e.to_string(), "operator `judge`: no column `nope`; the input has q");
    }

    #[test]
    fn child_ids_sort_in_lineage_order() {
        let mut ids = vec![child_id("0002", 10), child_id("0002", 9), child_id("0010", 0), child_id("", 3)];
        ids.sort();
        assert_eq!(ids, vec!["0002.0009", "0002.0010", "0003", "0010.0000"]);
    }

    #[test]
    fn split_keeps_rows_without_reason() {
        let b = text_batch(&[("q", vec!["a".into(), "b".into(), "c".into()])]).unwrap();
        let out = split(&b, vec![None, Some("no".into()), None], "t").unwrap();
        assert_eq!(out.rows.num_rows(), 2);
        assert_eq!(text_column(&out.rows, "q", "t").unwrap().value(1), "c");
        assert_eq!(out.rejects, vec![Reject { row: 1, reason: "no".into() }]);
    }

    #[test]
    fn normalize_and_shown() {
        assert_eq!(normalize_text("  What  IS\n\tit\u{2019}s  "), "what is it's");
        assert_eq!(shown("ab\"c"), "\"ab\\\"c\"");
        assert_eq!(shown(&"x".repeat(70)), format!("\"{}…\"", "x".repeat(60)));
    }

    #[test]
    fn with_column_replaces_in_place_or_appends() {
        let b = text_batch(&[("q", vec!["a".into()]), ("r", vec!["b".into()])]).unwrap();
        let n: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![7]));
        let out = with_column(&b, "q", n.clone()).unwrap();
        assert_eq!(out.schema().field(1).data_type(), &DataType::Int64);
        let out = with_column(&b, "s", n).unwrap();
        assert_eq!(out.schema().field(3).name(), "s");
    }
}
