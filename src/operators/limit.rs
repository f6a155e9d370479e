//! `limit`: keep the first `count` rows of a leaf in lineage order — a cap on what a leaf
//! contributes, or a quick small run.
//!
//! - Columns in: any; only `_id` is read.
//! - Columns out: unchanged.
//! - Rejected: every row after the first `count`: `over limit 30`.
//! - Deterministic: yes: rows arrive sorted by `_id`, so the same rows are kept on every run
//!   whatever order the teacher answered in. An aggregate: it waits for the whole leaf.

use crate::operators::batch;
use crate::operators::{Aggregate, BuildContext, OpError, Operator, Output, Step, ROW_ID};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde::Deserialize;
use std::sync::Arc;

/// The `limit` step as written in a pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Rows kept per leaf, at least 1. Required.
    pub count: u64,
}

impl Step for Config {
    const KIND: &'static str = "limit";

    fn build(self, name: &str, _ctx: &BuildContext) -> Result<Operator, OpError> {
        if self.count == 0 {
            return Err(OpError::spec(name, "`count` is 0; keep at least one row, or remove the step"));
        }
        // A count beyond usize keeps everything anyway.
        let count = usize::try_from(self.count).unwrap_or(usize::MAX);
        Ok(Operator::Aggregate(Arc::new(Limit { name: name.to_string(), count })))
    }
}

/// The built `limit` operator.
#[derive(Debug, Clone)]
pub struct Limit {
    name: String,
    count: usize,
}

impl Aggregate for Limit {
    fn schema_out(&self, input: &SchemaRef) -> Result<SchemaRef, OpError> {
        batch::field(input, ROW_ID, &self.name)?;
        Ok(input.clone())
    }

    fn finish(&self, rows: &RecordBatch) -> Result<Output, OpError> {
        self.schema_out(rows.schema_ref())?;
        batch::row_ids(rows, &self.name)?;
        let reasons = (0..rows.num_rows()).map(|row| (row >= self.count).then(|| format!("over limit {}", self.count))).collect();
        batch::split(rows, reasons, &self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::batch::text_batch;
    use crate::operators::config::testing::aggregate;
    use crate::operators::Reject;
    use serde_json::json;

    fn limit(count: u64) -> Result<Arc<dyn Aggregate>, OpError> {
        aggregate::<Config>(json!({ "count": count }), "cap")
    }

    fn rows(n: usize) -> RecordBatch {
        text_batch(&[("q", (0..n).map(|i| format!("q{i}")).collect())]).unwrap()
    }

    #[test]
    fn keeps_the_first_rows() {
        let out = limit(2).unwrap().finish(&rows(4)).unwrap();
        let ids: Vec<_> = batch::row_ids(&out.rows, "t").unwrap().iter().flatten().collect();
        assert_eq!(ids, vec!["0000", "0001"]);
        assert_eq!(out.rejects, vec![Reject { row: 2, reason: "over limit 2".into() }, Reject { row: 3, reason: "over limit 2".into() }]);
        assert_eq!(limit(10).unwrap().finish(&rows(4)).unwrap().rows.num_rows(), 4);
    }

    #[test]
    fn empty_leaf() {
        let out = limit(1).unwrap().finish(&rows(0)).unwrap();
        assert_eq!((out.rows.num_rows(), out.rejects.len()), (0, 0));
    }

    #[test]
    fn all_but_the_limit_rejected() {
        let out = limit(1).unwrap().finish(&rows(3)).unwrap();
        assert_eq!((out.rows.num_rows(), out.rejects.len()), (1, 2));
    }

    #[test]
    fn schema_mismatch() {
        let b =
            arrow::record_batch::RecordBatch::try_from_iter([("q", Arc::new(arrow::array::StringArray::from(vec!["a"])) as _)]).unwrap();
        let e = limit(1).unwrap().finish(&b).unwrap_err();
        assert_eq!(e, OpError::schema("cap", "no column `_id`; the input has q"));
    }

    #[test]
    fn zero_is_a_spec_error() {
        assert!(matches!(limit(0).unwrap_err(), OpError::Spec { .. }));
    }
}
