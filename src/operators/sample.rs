//! `sample`: keep a random subset of a leaf's rows, `count` of them or a `fraction`, with or
//! without replacement — e.g. the 30 samples per skill leaf the reference's mixer draws with
//! replacement.
//!
//! - Columns in: any; only `_id` is read.
//! - Columns out: unchanged, rows in `_id` order. Without replacement a kept row keeps its id;
//!   with replacement every pick of row `p` becomes a child `child_id(p, j)`, `j` counting that
//!   row's picks, so repeats stay distinct rows.
//! - Rejected: rows never picked, `not sampled`.
//! - Deterministic: yes — rand 0.9's `StdRng` seeded with `seed` (default: the run's seed), over
//!   the leaf's rows in `_id` order. The same leaf rows and seed give the same sample; every leaf
//!   draws from the same seed. An aggregate: it waits for the whole leaf.

use crate::operators::batch::{self, child_id};
use crate::operators::{Aggregate, BuildContext, OpError, Operator, Output, Reject, Step};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The `sample` step as written in a pipeline (and a mix recipe's `sample`, where giving
/// neither `count` nor `fraction` keeps every row once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How many rows to draw per leaf (at least 1). Give exactly one of `count` and `fraction`.
    /// Without replacement a leaf with fewer rows keeps them all.
    #[serde(default)]
    pub count: Option<u64>,
    /// Share of the leaf's rows to draw, rounded to the nearest row: in (0, 1] without
    /// replacement, any positive number with it (2.0 doubles the leaf).
    #[serde(default)]
    pub fraction: Option<f64>,
    /// Draw with replacement (a row may be picked several times). Default: false.
    #[serde(default)]
    pub replace: bool,
    /// Seed of the draw. Default: the run's seed (in a recipe: derived from the recipe's seed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl Config {
    /// The size of the draw, `None` when neither `count` nor `fraction` is given; an error
    /// names the key at fault (`count`, `fraction`, or `""` for both) and says what to do.
    pub fn size(&self) -> Result<Option<Size>, (&'static str, String)> {
        match (self.count, self.fraction) {
            (Some(_), Some(_)) => Err(("", "give one of `count` and `fraction`, not both".into())),
            (None, None) => Ok(None),
            (Some(0), None) => Err(("count", "`count` is 0; draw at least one row, or remove it".into())),
            (Some(c), None) => usize::try_from(c).map(|c| Some(Size::Count(c))).map_err(|_| ("count", format!("`count` {c} is too large"))),
            (None, Some(f)) if !(f.is_finite() && f > 0.0) => Err(("fraction", format!("`fraction` {f} must be a positive number"))),
            (None, Some(f)) if f > 1.0 && !self.replace => {
                Err(("fraction", format!("`fraction` {f} is more than 1; that needs `replace: true`")))
            }
            (None, Some(f)) => Ok(Some(Size::Fraction(f))),
        }
    }
}

/// How many rows to draw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Size {
    /// This many.
    Count(usize),
    /// This share of the rows, rounded to the nearest row.
    Fraction(f64),
}

impl Step for Config {
    const KIND: &'static str = "sample";

    fn build(self, name: &str, ctx: &BuildContext) -> Result<Operator, OpError> {
        let size = self
            .size()
            .map_err(|(_, message)| OpError::spec(name, message))?
            .ok_or_else(|| OpError::spec(name, "give exactly one of `count` and `fraction`"))?;
        Ok(Operator::Aggregate(Arc::new(Sample {
            name: name.to_string(),
            size,
            replace: self.replace,
            seed: self.seed.unwrap_or(ctx.seed),
        })))
    }
}

/// The built `sample` operator.
#[derive(Debug, Clone)]
pub struct Sample {
    name: String,
    size: Size,
    replace: bool,
    seed: u64,
}

impl Sample {
    /// How many times each of `rows` rows is picked.
    fn draw(&self, rows: usize) -> Vec<usize> {
        draw(rows, self.size.picks(rows, self.replace), self.replace, self.seed)
    }
}

impl Size {
    /// How many picks from `rows` rows; without replacement at most `rows`.
    pub fn picks(self, rows: usize, replace: bool) -> usize {
        let k = match self {
            Size::Count(c) => c,
            // Saturating cast: a fraction is bounded by the config checks, rows by memory.
            Size::Fraction(f) => (f * rows as f64).round() as usize,
        };
        if replace {
            k
        } else {
            k.min(rows)
        }
    }
}

/// How many times each of `rows` rows is picked when drawing `picks` of them, with or without
/// replacement, from rand 0.9's `StdRng` seeded with `seed`. Shared by this operator and the
/// mixer, so a recipe's `sample` and a pipeline's `sample` step draw alike.
pub fn draw(rows: usize, picks: usize, replace: bool, seed: u64) -> Vec<usize> {
    let mut times = vec![0usize; rows];
    let k = if replace { picks } else { picks.min(rows) };
    if rows == 0 || k == 0 {
        return times;
    }
    let mut rng = StdRng::seed_from_u64(seed);
    if replace {
        for _ in 0..k {
            times[rng.random_range(0..rows)] += 1;
        }
    } else {
        for i in rand::seq::index::sample(&mut rng, rows, k) {
            times[i] = 1;
        }
    }
    times
}

impl Aggregate for Sample {
    fn schema_out(&self, input: &SchemaRef) -> Result<SchemaRef, OpError> {
        batch::field(input, crate::operators::ROW_ID, &self.name)?;
        Ok(input.clone())
    }

    fn finish(&self, rows: &RecordBatch) -> Result<Output, OpError> {
        let schema = self.schema_out(rows.schema_ref())?;
        let ids = batch::row_ids(rows, &self.name)?;
        let times = self.draw(rows.num_rows());
        let rejects: Vec<Reject> =
            times.iter().enumerate().filter(|(_, t)| **t == 0).map(|(row, _)| Reject { row, reason: "not sampled".into() }).collect();
        let mut parents = Vec::new();
        let mut new_ids = Vec::new();
        for (row, &t) in times.iter().enumerate() {
            let parent =
                u32::try_from(row).map_err(|_| OpError::Internal { operator: self.name.clone(), message: "leaf over u32 rows".into() })?;
            for j in 0..t {
                parents.push(parent);
                new_ids.push(if self.replace { child_id(ids.value(row), j) } else { ids.value(row).to_string() });
            }
        }
        let out = batch::expand(rows, &schema, &parents, new_ids, vec![], &self.name)?;
        Ok(Output { rows: out, rejects })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::batch::text_batch;
    use crate::operators::config::testing::aggregate;
    use serde_json::json;

    fn sample(config: serde_json::Value) -> Result<Arc<dyn Aggregate>, OpError> {
        aggregate::<Config>(config, "pick")
    }

    fn rows(n: usize) -> RecordBatch {
        text_batch(&[("q", (0..n).map(|i| format!("q{i}")).collect())]).unwrap()
    }

    fn ids(b: &RecordBatch) -> Vec<String> {
        batch::row_ids(b, "t").unwrap().iter().flatten().map(String::from).collect()
    }

    #[test]
    fn count_without_replacement_is_seeded_and_sorted() {
        let s = sample(json!({"count": 4, "seed": 7})).unwrap();
        let a = s.finish(&rows(10)).unwrap();
        assert_eq!(a.rows.num_rows(), 4);
        assert_eq!(a.rejects.len(), 6);
        assert!(a.rejects.iter().all(|r| r.reason == "not sampled"));
        let got = ids(&a.rows);
        assert!(got.windows(2).all(|w| w[0] < w[1]), "sorted and distinct: {got:?}");
        assert_eq!(got, ids(&s.finish(&rows(10)).unwrap().rows), "same seed, same sample");
        let other = sample(json!({"count": 4, "seed": 8})).unwrap().finish(&rows(10)).unwrap();
        let third = sample(json!({"count": 4, "seed": 9})).unwrap().finish(&rows(10)).unwrap();
        assert!(ids(&other.rows) != got || ids(&third.rows) != got, "the seed matters");
    }

    #[test]
    fn seed_defaults_to_the_runs() {
        let a = sample(json!({"count": 3})).unwrap().finish(&rows(20)).unwrap();
        let b = sample(json!({"count": 3, "seed": BuildContext::default().seed})).unwrap().finish(&rows(20)).unwrap();
        assert_eq!(ids(&a.rows), ids(&b.rows));
    }

    #[test]
    fn with_replacement_repeats_get_child_ids() {
        let out = sample(json!({"count": 30, "replace": true, "seed": 1})).unwrap().finish(&rows(5)).unwrap();
        assert_eq!(out.rows.num_rows(), 30);
        let got = ids(&out.rows);
        assert!(got.windows(2).all(|w| w[0] < w[1]), "distinct and in lineage order: {got:?}");
        assert!(got.iter().any(|id| id.ends_with(".0001")), "some row was picked twice");
        let kept_parents: std::collections::BTreeSet<&str> = got.iter().map(|id| &id[..4]).collect();
        assert_eq!(kept_parents.len() + out.rejects.len(), 5);
    }

    #[test]
    fn fraction_rounds_and_small_leaves_keep_everything() {
        let out = sample(json!({"fraction": 0.5})).unwrap().finish(&rows(5)).unwrap();
        assert_eq!((out.rows.num_rows(), out.rejects.len()), (3, 2));
        let out = sample(json!({"count": 10})).unwrap().finish(&rows(3)).unwrap();
        assert_eq!((ids(&out.rows), out.rejects.len()), (vec!["0000".into(), "0001".into(), "0002".into()], 0));
        let out = sample(json!({"fraction": 2.0, "replace": true})).unwrap().finish(&rows(3)).unwrap();
        assert_eq!(out.rows.num_rows(), 6);
    }

    #[test]
    fn empty_leaf() {
        let out = sample(json!({"count": 3, "replace": true})).unwrap().finish(&rows(0)).unwrap();
        assert_eq!((out.rows.num_rows(), out.rejects.len()), (0, 0));
    }

    #[test]
    fn all_rejected_when_the_fraction_rounds_to_nothing() {
        let out = sample(json!({"fraction": 0.1})).unwrap().finish(&rows(3)).unwrap();
        assert_eq!((out.rows.num_rows(), out.rejects.len()), (0, 3));
    }

    #[test]
    fn schema_mismatch() {
        let b = crate::operators::batch::with_column(&rows(2), "_id", Arc::new(arrow::array::Int64Array::from(vec![1, 2]))).unwrap();
        let e = sample(json!({"count": 1})).unwrap().finish(&b).unwrap_err();
        assert_eq!(e, OpError::schema("pick", "column `_id` is Int64, expected text"));
    }

    #[test]
    fn bad_specs() {
        for (config, want) in [
            (json!({}), "exactly one"),
            (json!({"count": 2, "fraction": 0.5}), "not both"),
            (json!({"count": 0}), "`count` is 0"),
            (json!({"fraction": 0.0}), "positive"),
            (json!({"fraction": 1.5}), "replace: true"),
        ] {
            let e = sample(config.clone()).unwrap_err();
            assert!(matches!(&e, OpError::Spec { operator, .. } if operator == "pick") && e.to_string().contains(want), "{config}: {e}");
        }
    }
}
