//! `template`: write a text column rendered per row from a minijinja template whose variables are
//! the row's columns — e.g. `"{{ context }}\n\n{{ question }}"`, or a message assembled for mixing.
//!
//! - Columns in: every column the template names (checked when the plan is built); any type,
//!   numbers and booleans as themselves, nulls as `none`.
//! - Columns out: the input plus `into` (text), replacing `into` in place when it exists.
//! - Rejected: rows the template fails on (a filter error, an attribute of a missing value), with
//!   minijinja's message. Undefined variables are errors, not empty text (`UndefinedBehavior::Strict`).
//! - Deterministic: yes.

use crate::operators::batch::{self, text_field};
use crate::operators::config::{check_name, RowId};
use crate::operators::{BuildContext, OpError, Operator, Output, Step, Transform};
use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The `template` step as written in a pipeline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The text column to write. Required.
    pub into: String,
    /// The minijinja (Jinja2) template, rendered once per row with the row's columns as
    /// variables. Required; checked for syntax when the step is built.
    pub template: String,
}

impl Step for Config {
    const KIND: &'static str = "template";

    fn build(self, name: &str, _ctx: &BuildContext) -> Result<Operator, OpError> {
        check_name(&self.into, "into", RowId::Forbidden, name)?;
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // The name is the operator's, so no extension may switch on HTML escaping.
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.add_template_owned(name.to_string(), self.template)
            .map_err(|e| OpError::spec(name, format!("`template` does not parse: {}", describe(&e))))?;
        let template = env.get_template(name).map_err(|e| OpError::spec(name, describe(&e)))?;
        let globals: BTreeSet<&str> = env.globals().map(|(g, _)| g).collect();
        let variables: BTreeSet<String> =
            template.undeclared_variables(false).into_iter().filter(|v| !globals.contains(v.as_str())).collect();
        Ok(Operator::Transform(Arc::new(Template { name: name.to_string(), into: self.into, env, variables })))
    }
}

/// A minijinja error with its detail and place (`undefined value: … (in step:1)`).
fn describe(e: &minijinja::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// The built `template` operator.
#[derive(Debug)]
pub struct Template {
    name: String,
    into: String,
    /// Holds one template, named after the operator.
    env: Environment<'static>,
    /// Top-level variables the template reads that it does not set itself.
    variables: BTreeSet<String>,
}

impl Transform for Template {
    fn schema_out(&self, input: &SchemaRef) -> Result<SchemaRef, OpError> {
        for v in &self.variables {
            if input.field_with_name(v).is_err() {
                let have: Vec<&str> = input.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(OpError::schema(
                    &self.name,
                    format!("the template uses `{v}`, which is not a column; the input has {}", have.join(", ")),
                ));
            }
        }
        Ok(batch::schema_with(input, &[text_field(&self.into)]))
    }

    fn apply(&self, batch: &RecordBatch) -> Result<Output, OpError> {
        self.schema_out(batch.schema_ref())?;
        let template =
            self.env.get_template(&self.name).map_err(|e| OpError::Internal { operator: self.name.clone(), message: describe(&e) })?;
        let mut rendered: Vec<Option<String>> = Vec::with_capacity(batch.num_rows());
        let mut reasons = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            match template.render(minijinja::Value::from_serialize(batch::row_json(batch, row))) {
                Ok(text) => {
                    rendered.push(Some(text));
                    reasons.push(None);
                }
                Err(e) => {
                    rendered.push(None);
                    reasons.push(Some(format!("template failed: {}", describe(&e))));
                }
            }
        }
        let column: ArrayRef = Arc::new(StringArray::from(rendered));
        let with = batch::with_column(batch, &self.into, column).map_err(|e| OpError::arrow(&self.name, e))?;
        batch::split(&with, reasons, &self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::batch::{text_batch, text_column, with_column};
    use crate::operators::config::testing::transform;
    use arrow::array::Int64Array;
    use serde_json::json;

    fn template(text: &str) -> Result<Arc<dyn Transform>, OpError> {
        transform::<Config>(json!({"into": "prompt", "template": text}), "render")
    }

    fn rows() -> RecordBatch {
        text_batch(&[
            ("context", vec!["Paris is in France.".into(), "Rome is in Italy.".into()]),
            ("question", vec!["Where is Paris?".into(), "Rome?".into()]),
        ])
        .unwrap()
    }

    #[test]
    fn renders_each_row_from_its_columns() {
        let t = template("{{ context }}\n\nQ: {{ question | upper }} ({{ _id }})").unwrap();
        let out = t.apply(&rows()).unwrap();
        assert_eq!(text_column(&out.rows, "prompt", "t").unwrap().value(1), "Rome is in Italy.\n\nQ: ROME? (0001)");
        assert!(out.rejects.is_empty());
        let b = with_column(&rows(), "n", Arc::new(Int64Array::from(vec![1, 2]))).unwrap();
        let out = template("{% for i in range(n) %}<{{ i }}>{% endfor %}").unwrap().apply(&b).unwrap();
        assert_eq!(text_column(&out.rows, "prompt", "t").unwrap().value(1), "<0><1>");
    }

    #[test]
    fn empty_batch() {
        let b = text_batch(&[("context", vec![]), ("question", vec![])]).unwrap();
        let out = template("{{ question }}").unwrap().apply(&b).unwrap();
        assert_eq!((out.rows.num_rows(), out.rows.num_columns()), (0, 4));
    }

    #[test]
    fn all_rows_rejected_when_rendering_fails() {
        let out = template("{{ question.text.first }}").unwrap().apply(&rows()).unwrap();
        assert_eq!(out.rows.num_rows(), 0);
        assert_eq!(out.rejects.len(), 2);
        assert!(out.rejects[0].reason.starts_with("template failed: undefined value"), "{}", out.rejects[0].reason);
    }

    #[test]
    fn schema_mismatch_names_the_variable() {
        let e = template("{{ document }} {{ question }}").unwrap().apply(&rows()).unwrap_err();
        assert_eq!(
            e,
            OpError::schema("render", "the template uses `document`, which is not a column; the input has _id, context, question")
        );
    }

    #[test]
    fn a_template_that_does_not_parse_is_a_spec_error() {
        let e = template("{{ question ").unwrap_err();
        assert!(matches!(&e, OpError::Spec { operator, .. } if operator == "render"), "{e:?}");
        assert!(e.to_string().contains("does not parse"), "{e}");
        assert!(template("{% set x = 1 %}{{ x }}").is_ok(), "variables the template sets are not columns");
        assert!(matches!(transform::<Config>(json!({"into": "_id", "template": "x"}), "render"), Err(OpError::Spec { .. })));
    }
}
