//! `filter`: keep the rows whose value in one column passes a test against a value or a list of
//! values — InstructLab's FilterByValueBlock, e.g. a judge's score `ge 2` after `cast: int`.
//!
//! - Columns in: `column` (text, Int64, Float64 or Boolean); every other column passes untouched.
//! - Columns out: the same. With `cast`, `column` holds the cast values in the cast type (Int64,
//!   Float64 or text), as the reference's `convert_dtype` does.
//! - Rejected: rows failing the test (`value 1 is not >= 2 (column pair_score)`), rows with a null
//!   value, and rows whose value cannot be cast — unless `default` stands in for those last two.
//! - Deterministic: yes, a pure function of each row.
//!
//! With a list of values the row passes when the test holds for *any* of them (the reference's
//! rule); for `ne` that is rarely what one wants, so say `in` and negate upstream instead.

use crate::operators::batch::{self, shown};
use crate::operators::{BuildContext, OpError, Operator, Output, Step, Transform};
use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::Deserialize;
use serde_json::Value;
use std::cmp::Ordering;
use std::sync::Arc;

/// The `filter` step as written in a pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The column whose value is tested. Required.
    pub column: String,
    /// The test, required: `eq`, `ne`, `gt`, `ge`, `lt`, `le`, `contains` (the text contains the
    /// value) or `in` (equal to one of a list).
    pub test: String,
    /// What the column's value is compared with, required: a number, text or boolean, or a list of
    /// them (the row passes when the test holds for any). `in` needs a list.
    pub value: Value,
    /// Read the column's value as `int`, `float` or `text` before testing; the output column then
    /// has that type. Default: none, the value is compared as stored.
    #[serde(default)]
    pub cast: Option<String>,
    /// Only with `cast`: the value used when a row's value cannot be cast or is null. Default:
    /// none, such a row is rejected with the reason.
    #[serde(default)]
    pub default: Option<Value>,
}

/// A comparison between a row's value and a configured value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Ge,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
    /// The row's text contains the value.
    Contains,
    /// Equal to one of a list.
    In,
}

impl Test {
    fn parse(s: &str) -> Option<Test> {
        Some(match s {
            "eq" => Test::Eq,
            "ne" => Test::Ne,
            "gt" => Test::Gt,
            "ge" => Test::Ge,
            "lt" => Test::Lt,
            "le" => Test::Le,
            "contains" => Test::Contains,
            "in" => Test::In,
            _ => return None,
        })
    }

    fn symbol(self) -> &'static str {
        match self {
            Test::Eq => "==",
            Test::Ne => "!=",
            Test::Gt => ">",
            Test::Ge => ">=",
            Test::Lt => "<",
            Test::Le => "<=",
            Test::Contains => "contains",
            Test::In => "in",
        }
    }

    /// Whether `row` passes against `value`; values of kinds that do not compare never pass
    /// (schema_out rules those out before any row is seen).
    fn holds(self, row: &Scalar, value: &Scalar) -> bool {
        if self == Test::Contains {
            return matches!((row, value), (Scalar::Text(r), Scalar::Text(v)) if r.contains(v.as_str()));
        }
        let ord = row.compare(value);
        match self {
            Test::Eq | Test::In => ord == Some(Ordering::Equal),
            Test::Ne => ord != Some(Ordering::Equal),
            Test::Gt => ord == Some(Ordering::Greater),
            Test::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
            Test::Lt => ord == Some(Ordering::Less),
            Test::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
            Test::Contains => false,
        }
    }
}

/// The type a value is read as before testing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cast {
    /// 64-bit integer: text is trimmed and parsed, floats must have no fraction.
    Int,
    /// 64-bit float.
    Float,
    /// Text, numbers written the way templates see them.
    Text,
}

impl Cast {
    fn parse(s: &str) -> Option<Cast> {
        Some(match s {
            "int" => Cast::Int,
            "float" => Cast::Float,
            "text" => Cast::Text,
            _ => return None,
        })
    }
    fn name(self) -> &'static str {
        match self {
            Cast::Int => "int",
            Cast::Float => "float",
            Cast::Text => "text",
        }
    }
    fn data_type(self) -> DataType {
        match self {
            Cast::Int => DataType::Int64,
            Cast::Float => DataType::Float64,
            Cast::Text => DataType::Utf8,
        }
    }
}

/// What compares with what: numbers with numbers, text with text, booleans with booleans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Number,
    Text,
    Bool,
}

impl Kind {
    fn of(dt: &DataType) -> Option<Kind> {
        match dt {
            DataType::Int64 | DataType::Float64 => Some(Kind::Number),
            DataType::Utf8 => Some(Kind::Text),
            DataType::Boolean => Some(Kind::Bool),
            _ => None,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Kind::Number => "a number",
            Kind::Text => "text",
            Kind::Bool => "a boolean",
        }
    }
}

/// One value, from a row or from the config.
#[derive(Debug, Clone, PartialEq)]
enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl Scalar {
    fn from_json(v: &Value) -> Option<Scalar> {
        match v {
            Value::Bool(b) => Some(Scalar::Bool(*b)),
            Value::Number(n) => n.as_i64().map(Scalar::Int).or_else(|| n.as_f64().map(Scalar::Float)),
            Value::String(s) => Some(Scalar::Text(s.clone())),
            _ => None,
        }
    }

    /// The value at `row` of `col` (`None` for null); `col` has a type [`Kind::of`] accepts.
    fn read(col: &dyn Array, row: usize) -> Option<Scalar> {
        if col.is_null(row) {
            return None;
        }
        match col.data_type() {
            DataType::Int64 => Some(Scalar::Int(col.as_primitive::<Int64Type>().value(row))),
            DataType::Float64 => Some(Scalar::Float(col.as_primitive::<Float64Type>().value(row))),
            DataType::Boolean => Some(Scalar::Bool(col.as_boolean().value(row))),
            DataType::Utf8 => Some(Scalar::Text(col.as_string::<i32>().value(row).to_string())),
            _ => None,
        }
    }

    fn kind(&self) -> Kind {
        match self {
            Scalar::Int(_) | Scalar::Float(_) => Kind::Number,
            Scalar::Text(_) => Kind::Text,
            Scalar::Bool(_) => Kind::Bool,
        }
    }

    /// This value read as `cast`, or `None` when it cannot be.
    fn cast(&self, cast: Cast) -> Option<Scalar> {
        match (cast, self) {
            (Cast::Int, Scalar::Int(i)) => Some(Scalar::Int(*i)),
            // Exact below 2^63; the range check keeps `as` from saturating silently.
            (Cast::Int, Scalar::Float(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => Some(Scalar::Int(*f as i64)),
            (Cast::Int, Scalar::Float(_)) => None,
            (Cast::Int, Scalar::Text(s)) => s.trim().parse().ok().map(Scalar::Int),
            (Cast::Int, Scalar::Bool(b)) => Some(Scalar::Int(i64::from(*b))),
            (Cast::Float, Scalar::Int(i)) => Some(Scalar::Float(*i as f64)),
            (Cast::Float, Scalar::Float(f)) => Some(Scalar::Float(*f)),
            (Cast::Float, Scalar::Text(s)) => s.trim().parse().ok().map(Scalar::Float),
            (Cast::Float, Scalar::Bool(b)) => Some(Scalar::Float(if *b { 1.0 } else { 0.0 })),
            (Cast::Text, Scalar::Text(s)) => Some(Scalar::Text(s.clone())),
            (Cast::Text, other) => Some(Scalar::Text(other.to_string())),
        }
    }

    fn compare(&self, other: &Scalar) -> Option<Ordering> {
        match (self, other) {
            (Scalar::Int(a), Scalar::Int(b)) => Some(a.cmp(b)),
            (Scalar::Int(a), Scalar::Float(b)) => (*a as f64).partial_cmp(b),
            (Scalar::Float(a), Scalar::Int(b)) => a.partial_cmp(&(*b as f64)),
            (Scalar::Float(a), Scalar::Float(b)) => a.partial_cmp(b),
            (Scalar::Text(a), Scalar::Text(b)) => Some(a.cmp(b)),
            (Scalar::Bool(a), Scalar::Bool(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Int(i) => write!(f, "{i}"),
            // As JSON writes it (`2.0`), the way templates and `text_value` show numbers.
            Scalar::Float(x) => match serde_json::Number::from_f64(*x) {
                Some(n) => write!(f, "{n}"),
                None => write!(f, "{x}"),
            },
            Scalar::Text(s) => f.write_str(s),
        }
    }
}

/// A value as a reject reason shows it: text quoted and cut, numbers as they are.
fn show(v: &Scalar) -> String {
    match v {
        Scalar::Text(s) => shown(s),
        other => other.to_string(),
    }
}

/// The built `filter` operator.
#[derive(Debug, Clone)]
pub struct Filter {
    name: String,
    column: String,
    test: Test,
    /// Already read as `cast` when there is one.
    values: Vec<Scalar>,
    cast: Option<Cast>,
    /// Already read as `cast`.
    default: Option<Scalar>,
}

impl Step for Config {
    const KIND: &'static str = "filter";

    fn build(self, name: &str, _ctx: &BuildContext) -> Result<Operator, OpError> {
        Ok(Operator::Transform(Arc::new(Filter::new(self, name)?)))
    }
}

impl Filter {
    /// Resolve and validate `config` for the operator named `name`.
    pub fn new(config: Config, name: &str) -> Result<Filter, OpError> {
        let spec = |m: String| OpError::spec(name, m);
        if config.column.trim().is_empty() {
            return Err(spec("`column` is empty; name the column to test".into()));
        }
        let test = Test::parse(&config.test)
            .ok_or_else(|| spec(format!("unknown test `{}`; expected one of eq, ne, gt, ge, lt, le, contains, in", config.test)))?;
        let cast = match &config.cast {
            None => None,
            Some(c) => Some(Cast::parse(c).ok_or_else(|| spec(format!("unknown cast `{c}`; expected int, float or text")))?),
        };
        let raw: Vec<&Value> = match &config.value {
            Value::Array(items) if items.is_empty() => return Err(spec("`value` is an empty list; give at least one value".into())),
            Value::Array(items) => items.iter().collect(),
            _ if test == Test::In => return Err(spec("test `in` needs a list of values, e.g. `value: [1, 2]`".into())),
            v => vec![v],
        };
        let read = |v: &Value, key: &str| -> Result<Scalar, OpError> {
            let s = Scalar::from_json(v).ok_or_else(|| spec(format!("`{key}` {v} is not a number, text or boolean")))?;
            match cast {
                Some(c) => s.cast(c).ok_or_else(|| spec(format!("`{key}` {v} cannot be read as {}", c.name()))),
                None => Ok(s),
            }
        };
        let values = raw.into_iter().map(|v| read(v, "value")).collect::<Result<Vec<_>, _>>()?;
        let default = match &config.default {
            Some(_) if cast.is_none() => return Err(spec("`default` applies only with `cast`; add `cast: int`, `float` or `text`".into())),
            Some(v) => Some(read(v, "default")?),
            None => None,
        };
        if test == Test::Contains {
            if matches!(cast, Some(Cast::Int | Cast::Float)) {
                return Err(spec(format!(
                    "test `contains` compares text; `cast: {}` makes the column a number",
                    cast.map(Cast::name).unwrap_or("")
                )));
            }
            if let Some(v) = values.iter().find(|v| v.kind() != Kind::Text) {
                return Err(spec(format!("test `contains` needs text values; {v} is {}", v.kind().name())));
            }
        }
        if cast.is_some() && config.column == crate::operators::ROW_ID {
            return Err(spec("`cast` would change the engine's row id `_id`; filter it without `cast`".into()));
        }
        Ok(Filter { name: name.to_string(), column: config.column, test, values, cast, default })
    }

    /// The verdict for one row: the value it was tested with (cast, or the default), or why it is
    /// rejected.
    fn judge(&self, col: &dyn Array, row: usize) -> Result<Scalar, String> {
        let column = &self.column;
        let value = match (Scalar::read(col, row), self.cast) {
            (None, _) => self.default.clone().ok_or_else(|| format!("no value (null) in column {column}")),
            (Some(v), None) => Ok(v),
            (Some(v), Some(c)) => match v.cast(c) {
                Some(cast) => Ok(cast),
                None => self.default.clone().ok_or_else(|| format!("cannot read {} as {} (column {column})", show(&v), c.name())),
            },
        }?;
        if self.values.iter().any(|v| self.test.holds(&value, v)) {
            return Ok(value);
        }
        let target = match self.values.as_slice() {
            [one] => show(one),
            many => {
                let listed = format!("[{}]", many.iter().map(show).collect::<Vec<_>>().join(", "));
                if self.test == Test::In {
                    listed
                } else {
                    format!("any of {listed}")
                }
            }
        };
        Err(match self.test {
            Test::Contains => format!("value {} does not contain {target} (column {column})", show(&value)),
            t => format!("value {} is not {} {target} (column {column})", show(&value), t.symbol()),
        })
    }

    /// The column built from each kept row's cast value (null where the row is rejected).
    fn cast_column(cast: Cast, values: &[Option<Scalar>]) -> ArrayRef {
        match cast {
            Cast::Int => {
                Arc::new(values.iter().map(|v| if let Some(Scalar::Int(i)) = v { Some(*i) } else { None }).collect::<Int64Array>())
            }
            Cast::Float => {
                Arc::new(values.iter().map(|v| if let Some(Scalar::Float(x)) = v { Some(*x) } else { None }).collect::<Float64Array>())
            }
            Cast::Text => Arc::new(
                values.iter().map(|v| if let Some(Scalar::Text(s)) = v { Some(s.as_str()) } else { None }).collect::<StringArray>(),
            ),
        }
    }
}

impl Transform for Filter {
    fn schema_out(&self, input: &SchemaRef) -> Result<SchemaRef, OpError> {
        let field = batch::field(input, &self.column, &self.name)?;
        let dt = field.data_type();
        let column_kind = Kind::of(dt).ok_or_else(|| {
            OpError::schema(&self.name, format!("column `{}` is {dt}; filter reads text, Int64, Float64 or Boolean columns", self.column))
        })?;
        let Some(cast) = self.cast else {
            if self.test == Test::Contains && column_kind != Kind::Text {
                return Err(OpError::schema(
                    &self.name,
                    format!("test `contains` needs a text column; `{}` is {dt} (add `cast: text`)", self.column),
                ));
            }
            if let Some(v) = self.values.iter().find(|v| v.kind() != column_kind) {
                let hint = match column_kind {
                    Kind::Text if v.kind() == Kind::Number => "; add `cast: int` or `cast: float` to compare numerically",
                    _ => "",
                };
                return Err(OpError::schema(
                    &self.name,
                    format!(
                        "column `{}` holds {} ({dt}) but the value {} is {}{hint}",
                        self.column,
                        column_kind.name(),
                        show(v),
                        v.kind().name()
                    ),
                ));
            }
            return Ok(input.clone());
        };
        Ok(batch::schema_with(input, &[Field::new(&self.column, cast.data_type(), true)]))
    }

    fn apply(&self, batch: &RecordBatch) -> Result<Output, OpError> {
        self.schema_out(batch.schema_ref())?;
        let col = batch.column_by_name(&self.column).ok_or_else(|| batch::missing(batch.schema_ref(), &self.column, &self.name))?;
        let verdicts: Vec<Result<Scalar, String>> = (0..batch.num_rows()).map(|row| self.judge(col.as_ref(), row)).collect();
        let Some(cast) = self.cast else {
            return batch::split(batch, verdicts.into_iter().map(|v| v.err()).collect(), &self.name);
        };
        let values: Vec<Option<Scalar>> = verdicts.iter().map(|v| v.as_ref().ok().cloned()).collect();
        let replaced =
            batch::with_column(batch, &self.column, Self::cast_column(cast, &values)).map_err(|e| OpError::arrow(&self.name, e))?;
        batch::split(&replaced, verdicts.into_iter().map(|v| v.err()).collect(), &self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::batch::{text_batch, with_column};
    use crate::operators::Reject;
    use proptest::prelude::*;
    use serde_json::json;

    fn filter(config: Value) -> Result<Filter, OpError> {
        Filter::new(serde_json::from_value(config).expect("config parses"), "keep_good")
    }

    fn texts(name: &str, values: &[&str]) -> RecordBatch {
        text_batch(&[(name, values.iter().map(|s| s.to_string()).collect())]).unwrap()
    }

    fn ints(values: &[i64]) -> RecordBatch {
        let b = texts("q", &vec!["x"; values.len()]);
        with_column(&b, "score", Arc::new(Int64Array::from(values.to_vec()))).unwrap()
    }

    fn ids(b: &RecordBatch) -> Vec<String> {
        batch::row_ids(b, "t").unwrap().iter().map(|s| s.unwrap_or_default().to_string()).collect()
    }

    #[test]
    fn cast_int_keeps_scores_at_least_two() {
        let f = filter(json!({"column": "score", "test": "ge", "value": 2, "cast": "int"})).unwrap();
        let out = f.apply(&texts("score", &["1", " 2", "3"])).unwrap();
        assert_eq!(ids(&out.rows), vec!["0001", "0002"]);
        let scores = out.rows.column_by_name("score").unwrap().as_primitive::<Int64Type>();
        assert_eq!(scores.values().to_vec(), vec![2, 3]);
        assert_eq!(out.rejects, vec![Reject { row: 0, reason: "value 1 is not >= 2 (column score)".into() }]);
        assert_eq!(out.rows.schema().field_with_name("score").unwrap().data_type(), &DataType::Int64);
    }

    #[test]
    fn numbers_compare_across_int_and_float() {
        let f = filter(json!({"column": "score", "test": "gt", "value": 1.5})).unwrap();
        let out = f.apply(&ints(&[1, 2, 3])).unwrap();
        assert_eq!(ids(&out.rows), vec!["0001", "0002"]);
        assert_eq!(out.rejects[0].reason, "value 1 is not > 1.5 (column score)");
        assert_eq!(out.rows.schema(), ints(&[]).schema(), "no cast: schema unchanged");
    }

    #[test]
    fn a_list_passes_when_any_value_does() {
        let f = filter(json!({"column": "label", "test": "eq", "value": ["YES", "yes"]})).unwrap();
        let out = f.apply(&texts("label", &["YES", "NO", "yes"])).unwrap();
        assert_eq!(ids(&out.rows), vec!["0000", "0002"]);
        assert_eq!(out.rejects[0].reason, r#"value "NO" is not == any of ["YES", "yes"] (column label)"#);
        let f = filter(json!({"column": "score", "test": "in", "value": [1, 3]})).unwrap();
        let out = f.apply(&ints(&[1, 2, 3])).unwrap();
        assert_eq!(ids(&out.rows), vec!["0000", "0002"]);
        assert_eq!(out.rejects[0].reason, "value 2 is not in [1, 3] (column score)");
    }

    #[test]
    fn contains_looks_for_text() {
        let f = filter(json!({"column": "a", "test": "contains", "value": "[End]"})).unwrap();
        let out = f.apply(&texts("a", &["done [End]", "cut off"])).unwrap();
        assert_eq!(out.rows.num_rows(), 1);
        assert_eq!(out.rejects[0].reason, r#"value "cut off" does not contain "[End]" (column a)"#);
    }

    #[test]
    fn failed_casts_reject_or_take_the_default() {
        let b = texts("score", &["2", "two", ""]);
        let f = filter(json!({"column": "score", "test": "ge", "value": 1, "cast": "int"})).unwrap();
        let out = f.apply(&b).unwrap();
        assert_eq!(ids(&out.rows), vec!["0000"]);
        assert_eq!(out.rejects[0], Reject { row: 1, reason: r#"cannot read "two" as int (column score)"#.into() });
        let f = filter(json!({"column": "score", "test": "ge", "value": 0, "cast": "int", "default": 0})).unwrap();
        let out = f.apply(&b).unwrap();
        assert!(out.rejects.is_empty());
        assert_eq!(out.rows.column_by_name("score").unwrap().as_primitive::<Int64Type>().values().to_vec(), vec![2, 0, 0]);
    }

    #[test]
    fn nulls_are_rejected_with_a_reason() {
        let b = texts("q", &["a", "b"]);
        let b = with_column(&b, "score", Arc::new(Int64Array::from(vec![Some(2), None]))).unwrap();
        let out = filter(json!({"column": "score", "test": "eq", "value": 2})).unwrap().apply(&b).unwrap();
        assert_eq!(out.rejects, vec![Reject { row: 1, reason: "no value (null) in column score".into() }]);
    }

    #[test]
    fn empty_batch_gives_empty_output_in_the_cast_type() {
        let f = filter(json!({"column": "score", "test": "ge", "value": 2, "cast": "float"})).unwrap();
        let out = f.apply(&texts("score", &[])).unwrap();
        assert_eq!(out.rows.num_rows(), 0);
        assert!(out.rejects.is_empty());
        assert_eq!(out.rows.schema().field_with_name("score").unwrap().data_type(), &DataType::Float64);
    }

    #[test]
    fn all_rows_rejected() {
        let f = filter(json!({"column": "score", "test": "lt", "value": 0})).unwrap();
        let out = f.apply(&ints(&[0, 5, 9])).unwrap();
        assert_eq!(out.rows.num_rows(), 0);
        assert_eq!(out.rejects.iter().map(|r| r.row).collect::<Vec<_>>(), vec![0, 1, 2]);
    }

    #[test]
    fn schema_mismatch_names_the_column() {
        let f = filter(json!({"column": "score", "test": "ge", "value": 2})).unwrap();
        let e = f.apply(&texts("judgment", &["1"])).unwrap_err();
        assert_eq!(e, OpError::schema("keep_good", "no column `score`; the input has judgment"));
        let e = f.apply(&texts("score", &["1"])).unwrap_err();
        assert!(matches!(e, OpError::Schema { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "operator `keep_good`: column `score` holds text (Utf8) but the value 2 is a number; add `cast: int` or `cast: float` to compare numerically"
        );
        let f = filter(json!({"column": "score", "test": "contains", "value": "1"})).unwrap();
        let e = f.schema_out(ints(&[]).schema_ref()).unwrap_err();
        assert!(matches!(e, OpError::Schema { .. }) && e.to_string().contains("cast: text"), "{e}");
    }

    #[test]
    fn bad_specs_are_caught_at_build() {
        let cases = [
            (json!({"column": "s", "test": "gte", "value": 2}), "unknown test `gte`"),
            (json!({"column": "s", "test": "in", "value": 2}), "needs a list"),
            (json!({"column": "s", "test": "eq", "value": []}), "empty list"),
            (json!({"column": "s", "test": "eq", "value": 2, "cast": "integer"}), "unknown cast"),
            (json!({"column": "s", "test": "eq", "value": "x", "cast": "int"}), "cannot be read as int"),
            (json!({"column": "s", "test": "eq", "value": 2, "default": 0}), "only with `cast`"),
            (json!({"column": "s", "test": "contains", "value": 2}), "needs text values"),
            (json!({"column": "s", "test": "contains", "value": "2", "cast": "int"}), "compares text"),
            (json!({"column": "s", "test": "eq", "value": {"a": 1}}), "not a number"),
            (json!({"column": "", "test": "eq", "value": 1}), "`column` is empty"),
        ];
        for (config, want) in cases {
            let e = filter(config.clone()).unwrap_err();
            assert!(matches!(&e, OpError::Spec { operator, .. } if operator == "keep_good"), "{config}: {e:?}");
            assert!(e.to_string().contains(want), "{config}: {e}");
        }
        assert!(serde_json::from_value::<Config>(json!({"column": "s", "test": "eq", "value": 1, "colour": 1})).is_err());
    }

    #[test]
    fn builds_as_a_transform() {
        let c: Config = serde_json::from_value(json!({"column": "s", "test": "eq", "value": 1})).unwrap();
        assert!(matches!(c.build("f", &BuildContext::default()), Ok(Operator::Transform(_))));
    }

    /// The plain reference the property test compares the operator with.
    fn reference(test: Test, v: i64, threshold: i64) -> bool {
        match test {
            Test::Eq | Test::In => v == threshold,
            Test::Ne => v != threshold,
            Test::Gt => v > threshold,
            Test::Ge => v >= threshold,
            Test::Lt => v < threshold,
            Test::Le => v <= threshold,
            Test::Contains => unreachable!("not generated"),
        }
    }

    proptest! {
        #[test]
        fn kept_plus_rejected_is_every_row_and_kept_rows_pass(
            values in proptest::collection::vec(-50i64..50, 0..40),
            threshold in -50i64..50,
            test in proptest::sample::select(vec!["eq", "ne", "gt", "ge", "lt", "le"]),
            as_text in any::<bool>(),
        ) {
            let parsed = Test::parse(test).unwrap();
            // The same numbers either as Int64, or as text read with `cast: int`.
            let (b, config) = if as_text {
                let strings: Vec<String> = values.iter().map(|v| v.to_string()).collect();
                let b = text_batch(&[("score", strings)]).unwrap();
                (b, json!({"column": "score", "test": test, "value": threshold, "cast": "int"}))
            } else {
                (ints(&values), json!({"column": "score", "test": test, "value": threshold}))
            };
            let out = filter(config).unwrap().apply(&b).unwrap();
            prop_assert_eq!(out.rows.num_rows() + out.rejects.len(), values.len());
            let kept = out.rows.column_by_name("score").unwrap().as_primitive::<Int64Type>();
            prop_assert!(kept.iter().all(|v| v.is_some_and(|v| reference(parsed, v, threshold))));
            let want: Vec<i64> = values.iter().copied().filter(|v| reference(parsed, *v, threshold)).collect();
            prop_assert_eq!(kept.values().to_vec(), want);
            prop_assert!(out.rejects.iter().all(|r| !reference(parsed, values[r.row], threshold)));
        }
    }
}
