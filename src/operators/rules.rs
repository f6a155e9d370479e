//! `rules`: cheap checks on generated text that need no judge — length bounds, a required tag,
//! refusals ("As an AI language model…"), and copies of the seed — run before a teacher spends
//! calls on rows that are bound to fail.
//!
//! - Columns in: every column a check names, as text.
//! - Columns out: unchanged.
//! - Rejected: rows failing a check, with the first failing check's reason in list order
//!   (`12 words in column answer, more than max_words 10`); a null in a checked column fails.
//! - Deterministic: yes.

use crate::operators::batch::{self, normalize_text, shown};
use crate::operators::config::{check_name, RowId};
use crate::operators::{BuildContext, OpError, Operator, Output, Step, Transform};
use arrow::array::{Array, StringArray};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::Deserialize;
use std::sync::Arc;

/// The `rules` step as written in a pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The checks, in order; a row must pass all of them. Required, at least one. Each is one of
    /// `length`, `contains`, `refusal`, `not_copy`.
    pub checks: Vec<Check>,
}

/// One check, written as a one-key map: `- length: {column: answer, max_words: 250}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Bounds on the number of words (whitespace-separated) or characters.
    Length(Length),
    /// The text must contain a given text (a tag such as `[End]`), case-sensitive.
    Contains(Contains),
    /// The text must not read as a refusal.
    Refusal(Refusal),
    /// The text must not equal or contain another column's text, after normalising both.
    NotCopy(NotCopy),
}

/// Keys of a `length` check; give at least one bound.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Length {
    /// The column checked. Required.
    pub column: String,
    /// Fewest words allowed. Default: no bound.
    #[serde(default)]
    pub min_words: Option<u64>,
    /// Most words allowed. Default: no bound.
    #[serde(default)]
    pub max_words: Option<u64>,
    /// Fewest characters (Unicode scalar values) allowed. Default: no bound.
    #[serde(default)]
    pub min_chars: Option<u64>,
    /// Most characters allowed. Default: no bound.
    #[serde(default)]
    pub max_chars: Option<u64>,
}

/// Keys of a `contains` check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contains {
    /// The column checked. Required.
    pub column: String,
    /// The text that must be present, exactly (not empty). Required.
    pub text: String,
}

/// Keys of a `refusal` check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    /// The column checked. Required.
    pub column: String,
    /// Phrases that mark a refusal anywhere in the text, case-insensitive, whitespace and
    /// typographic apostrophes normalised. Default: [`DEFAULT_REFUSALS`]; a list replaces it.
    #[serde(default)]
    pub phrases: Option<Vec<String>>,
}

/// Keys of a `not_copy` check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotCopy {
    /// The column checked (a generated question, say). Required.
    pub column: String,
    /// The column it must not copy (the seed question). Required. An empty or null value here
    /// passes the check: there is nothing to copy.
    pub of: String,
}

/// Refusal phrases: specific enough that an ordinary answer ("I'm sorry to hear that your flight
/// was cancelled") does not match.
pub const DEFAULT_REFUSALS: &[&str] = &[
    "as an ai language model",
    "as an ai assistant",
    "as a language model",
    "i'm sorry, but i can't",
    "i'm sorry, but i cannot",
    "i am sorry, but i cannot",
    "i apologize, but i can't",
    "i apologize, but i cannot",
    "i cannot help with",
    "i can't help with",
    "i cannot assist with",
    "i can't assist with",
    "i'm unable to help",
    "i'm unable to assist",
    "i am unable to help",
    "i am unable to assist",
    "i'm not able to help",
    "i cannot fulfill",
    "i can't fulfill",
    "i cannot comply",
    "i can't comply",
];

/// A check resolved and validated.
#[derive(Debug, Clone)]
enum Rule {
    Length {
        column: String,
        words: (Option<u64>, Option<u64>),
        chars: (Option<u64>, Option<u64>),
    },
    Contains {
        column: String,
        text: String,
    },
    /// Phrases normalised.
    Refusal {
        column: String,
        phrases: Vec<String>,
    },
    NotCopy {
        column: String,
        of: String,
    },
}

impl Rule {
    fn resolve(check: Check, operator: &str) -> Result<Rule, OpError> {
        let spec = |m: String| OpError::spec(operator, m);
        let bounds = |key: &str, min: Option<u64>, max: Option<u64>| match (min, max) {
            (Some(lo), Some(hi)) if lo > hi => Err(spec(format!("`length` on the same column: min_{key} {lo} is above max_{key} {hi}"))),
            _ => Ok((min, max)),
        };
        Ok(match check {
            Check::Length(l) => {
                check_name(&l.column, "length.column", RowId::Forbidden, operator)?;
                if [l.min_words, l.max_words, l.min_chars, l.max_chars].iter().all(Option::is_none) {
                    return Err(spec(format!(
                        "`length` on `{}` has no bound; give min_words, max_words, min_chars or max_chars",
                        l.column
                    )));
                }
                Rule::Length {
                    words: bounds("words", l.min_words, l.max_words)?,
                    chars: bounds("chars", l.min_chars, l.max_chars)?,
                    column: l.column,
                }
            }
            Check::Contains(c) => {
                check_name(&c.column, "contains.column", RowId::Forbidden, operator)?;
                if c.text.is_empty() {
                    return Err(spec(format!("`contains` on `{}` has an empty `text`", c.column)));
                }
                Rule::Contains { column: c.column, text: c.text }
            }
            Check::Refusal(r) => {
                check_name(&r.column, "refusal.column", RowId::Forbidden, operator)?;
                let phrases: Vec<String> = match r.phrases {
                    Some(p) => p.iter().map(|s| normalize_text(s)).collect(),
                    None => DEFAULT_REFUSALS.iter().map(|s| normalize_text(s)).collect(),
                };
                if phrases.is_empty() || phrases.iter().any(String::is_empty) {
                    return Err(spec(format!("`refusal` on `{}`: `phrases` must be a non-empty list of non-empty phrases", r.column)));
                }
                Rule::Refusal { column: r.column, phrases }
            }
            Check::NotCopy(n) => {
                check_name(&n.column, "not_copy.column", RowId::Forbidden, operator)?;
                check_name(&n.of, "not_copy.of", RowId::Forbidden, operator)?;
                if n.column == n.of {
                    return Err(spec(format!("`not_copy` compares `{}` with itself; `of` names the column it must not copy", n.column)));
                }
                Rule::NotCopy { column: n.column, of: n.of }
            }
        })
    }

    fn columns(&self) -> Vec<&str> {
        match self {
            Rule::Length { column, .. } | Rule::Contains { column, .. } | Rule::Refusal { column, .. } => vec![column],
            Rule::NotCopy { column, of } => vec![column, of],
        }
    }

    /// Why row `row` fails this check, or `None` when it passes.
    fn fails(&self, batch: &RecordBatch, row: usize, operator: &str) -> Result<Option<String>, OpError> {
        let value = |c: &str| -> Result<Option<&str>, OpError> {
            let col: &StringArray = batch::text_column(batch, c, operator)?;
            Ok(col.is_valid(row).then(|| col.value(row)))
        };
        let column = self.columns()[0];
        let Some(text) = value(column)? else {
            return Ok(Some(format!("no value (null) in column {column}")));
        };
        Ok(match self {
            Rule::Length { words, chars, .. } => {
                let count_words = || text.split_whitespace().count() as u64;
                let count_chars = || text.chars().count() as u64;
                bound(count_words, *words, "word", "words", column).or_else(|| bound(count_chars, *chars, "character", "chars", column))
            }
            Rule::Contains { text: wanted, .. } => {
                (!text.contains(wanted.as_str())).then(|| format!("column {column} does not contain {}", shown(wanted)))
            }
            Rule::Refusal { phrases, .. } => {
                let normal = normalize_text(text);
                phrases.iter().find(|p| normal.contains(p.as_str())).map(|p| format!("column {column} reads as a refusal ({})", shown(p)))
            }
            Rule::NotCopy { of, .. } => {
                let original = value(of)?.map(normalize_text).unwrap_or_default();
                let normal = normalize_text(text);
                if original.is_empty() {
                    None
                } else if normal == original {
                    Some(format!("column {column} copies column {of}"))
                } else if normal.contains(&original) {
                    Some(format!("column {column} contains column {of} word for word"))
                } else {
                    None
                }
            }
        })
    }
}

/// The reason a count breaks `(min, max)`, if it does; the count is taken only when bounded.
fn bound(count: impl Fn() -> u64, (min, max): (Option<u64>, Option<u64>), unit: &str, key: &str, column: &str) -> Option<String> {
    if min.is_none() && max.is_none() {
        return None;
    }
    let n = count();
    let unit = if n == 1 { unit.to_string() } else { format!("{unit}s") };
    match (min, max) {
        (Some(lo), _) if n < lo => Some(format!("{n} {unit} in column {column}, fewer than min_{key} {lo}")),
        (_, Some(hi)) if n > hi => Some(format!("{n} {unit} in column {column}, more than max_{key} {hi}")),
        _ => None,
    }
}

impl Step for Config {
    const KIND: &'static str = "rules";

    fn build(self, name: &str, _ctx: &BuildContext) -> Result<Operator, OpError> {
        if self.checks.is_empty() {
            return Err(OpError::spec(name, "`checks` is empty; list at least one of length, contains, refusal, not_copy"));
        }
        let rules = self.checks.into_iter().map(|c| Rule::resolve(c, name)).collect::<Result<Vec<_>, _>>()?;
        Ok(Operator::Transform(Arc::new(Rules { name: name.to_string(), rules })))
    }
}

/// The built `rules` operator.
#[derive(Debug, Clone)]
pub struct Rules {
    name: String,
    rules: Vec<Rule>,
}

impl Transform for Rules {
    fn schema_out(&self, input: &SchemaRef) -> Result<SchemaRef, OpError> {
        for c in self.rules.iter().flat_map(Rule::columns) {
            let f = batch::field(input, c, &self.name)?;
            if f.data_type() != &DataType::Utf8 {
                return Err(OpError::schema(&self.name, format!("column `{c}` is {}; rules check text columns", f.data_type())));
            }
        }
        Ok(input.clone())
    }

    fn apply(&self, batch: &RecordBatch) -> Result<Output, OpError> {
        self.schema_out(batch.schema_ref())?;
        let mut reasons = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let mut reason = None;
            for rule in &self.rules {
                reason = rule.fails(batch, row, &self.name)?;
                if reason.is_some() {
                    break;
                }
            }
            reasons.push(reason);
        }
        batch::split(batch, reasons, &self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::batch::{text_batch, with_column};
    use crate::operators::config::testing::transform;
    use crate::operators::Reject;
    use serde_json::json;

    fn rules(checks: serde_json::Value) -> Result<Arc<dyn Transform>, OpError> {
        transform::<Config>(json!({ "checks": checks }), "sanity")
    }

    fn pairs(rows: &[(&str, &str)]) -> RecordBatch {
        text_batch(&[("seed", rows.iter().map(|r| r.0.to_string()).collect()), ("answer", rows.iter().map(|r| r.1.to_string()).collect())])
            .unwrap()
    }

    fn reasons(out: &Output) -> Vec<(usize, &str)> {
        out.rejects.iter().map(|r| (r.row, r.reason.as_str())).collect()
    }

    #[test]
    fn the_first_failing_check_gives_the_reason() {
        let r = rules(json!([
            {"length": {"column": "answer", "min_words": 2, "max_chars": 40}},
            {"contains": {"column": "answer", "text": "[End]"}},
            {"refusal": {"column": "answer"}},
            {"not_copy": {"column": "answer", "of": "seed"}},
        ]))
        .unwrap();
        let b = pairs(&[
            ("Name a fruit.", "An apple. [End]"),
            ("Name a fruit.", "Apple"),
            ("Name a fruit.", "This answer is far too long to pass. [End]"),
            ("Name a fruit.", "A pear, surely."),
            ("Name a fruit.", "I\u{2019}m sorry,  but I can't do that [End]"),
            ("Name a fruit. [End]", "name a  FRUIT. [End]"),
            ("Name a fruit.", "Q: Name a fruit. [End]"),
        ]);
        let out = r.apply(&b).unwrap();
        assert_eq!(out.rows.num_rows(), 1);
        assert_eq!(
            reasons(&out),
            vec![
                (1, "1 word in column answer, fewer than min_words 2"),
                (2, "42 characters in column answer, more than max_chars 40"),
                (3, r#"column answer does not contain "[End]""#),
                (4, r#"column answer reads as a refusal ("i'm sorry, but i can't")"#),
                (5, "column answer copies column seed"),
                (6, "column answer contains column seed word for word"),
            ]
        );
    }

    #[test]
    fn refusal_phrases_replace_the_defaults() {
        let r = rules(json!([{"refusal": {"column": "answer", "phrases": ["No  comment"]}}])).unwrap();
        let out = r.apply(&pairs(&[("q", "As an AI language model, sure."), ("q", "no comment.")])).unwrap();
        assert_eq!(reasons(&out), vec![(1, r#"column answer reads as a refusal ("no comment")"#)]);
    }

    #[test]
    fn an_empty_original_is_nothing_to_copy() {
        let r = rules(json!([{"not_copy": {"column": "answer", "of": "seed"}}])).unwrap();
        assert!(r.apply(&pairs(&[("  ", "anything")])).unwrap().rejects.is_empty());
    }

    #[test]
    fn empty_batch() {
        let out = rules(json!([{"length": {"column": "answer", "max_words": 3}}])).unwrap().apply(&pairs(&[])).unwrap();
        assert_eq!((out.rows.num_rows(), out.rejects.len()), (0, 0));
    }

    #[test]
    fn all_rows_rejected_including_nulls() {
        let b = with_column(&pairs(&[("a", "b"), ("c", "d")]), "answer", Arc::new(StringArray::from(vec![None, Some("x")]))).unwrap();
        let out = rules(json!([{"contains": {"column": "answer", "text": "[End]"}}])).unwrap().apply(&b).unwrap();
        assert_eq!(out.rows.num_rows(), 0);
        assert_eq!(out.rejects[0], Reject { row: 0, reason: "no value (null) in column answer".into() });
    }

    #[test]
    fn schema_mismatch() {
        let r = rules(json!([{"not_copy": {"column": "question", "of": "seed"}}])).unwrap();
        let e = r.apply(&pairs(&[("a", "b")])).unwrap_err();
        assert_eq!(e, OpError::schema("sanity", "no column `question`; the input has seed, answer"));
        let b = with_column(&pairs(&[("a", "b")]), "answer", Arc::new(arrow::array::Int64Array::from(vec![3]))).unwrap();
        let e = rules(json!([{"length": {"column": "answer", "max_words": 3}}])).unwrap().apply(&b).unwrap_err();
        assert_eq!(e.to_string(), "operator `sanity`: column `answer` is Int64; rules check text columns");
    }

    #[test]
    fn bad_specs() {
        for (checks, want) in [
            (json!([]), "`checks` is empty"),
            (json!([{"length": {"column": "a"}}]), "no bound"),
            (json!([{"length": {"column": "a", "min_words": 5, "max_words": 2}}]), "above max_words"),
            (json!([{"contains": {"column": "a", "text": ""}}]), "empty `text`"),
            (json!([{"refusal": {"column": "a", "phrases": []}}]), "non-empty list"),
            (json!([{"not_copy": {"column": "a", "of": "a"}}]), "with itself"),
        ] {
            let e = rules(checks.clone()).unwrap_err();
            assert!(matches!(&e, OpError::Spec { operator, .. } if operator == "sanity") && e.to_string().contains(want), "{checks}: {e}");
        }
        let unknown = serde_json::from_value::<Config>(json!({"checks": [{"lenght": {"column": "a"}}]})).unwrap_err();
        assert!(unknown.to_string().contains("unknown variant `lenght`"), "{unknown}");
        assert!(serde_json::from_value::<Config>(json!({"checks": [{"length": {"column": "a", "max": 3}}]})).is_err());
    }
}
