//! `iterate`: run a teacher step `times` times over the same rows and keep every result (the
//! reference's IterBlock).
//!
//! - Columns in and out: the inner step's.
//! - Each pass is seeded apart (the inner calls' seeds are offset by the pass number), so the
//!   passes differ; output rows get the pass as an extra lineage level (`row.pass.…`).
//! - Rejects: a row is rejected only when every pass rejects it (with the first pass's reason).
//! - Deterministic given the teacher.
//!
//! ```yaml
//! - name: questions
//!   op: iterate
//!   times: 3
//!   step: {op: generate, prompt: ../prompts/q.yaml, output: [question]}
//! ```

use crate::operators::batch::{self, child_id, row_ids};
use crate::operators::{Answer, BuildContext, Call, CallCost, Calls, OpError, Operator, Output, Reject, Step, TeacherStep};
use arrow::array::{Array, StringArray};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use serde::Deserialize;
use std::sync::Arc;

/// `op: iterate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How many passes (at least 1).
    pub times: u32,
    /// The step to repeat: a teacher step (`generate` or `critique`) with its `op` and keys.
    pub step: serde_json::Map<String, serde_json::Value>,
}

/// The built `iterate` step.
pub struct Iterate {
    name: String,
    times: u32,
    inner: Arc<dyn TeacherStep>,
}

impl Step for Config {
    const KIND: &'static str = "iterate";
    fn build(self, name: &str, ctx: &BuildContext) -> Result<Operator, OpError> {
        if self.times == 0 {
            return Err(OpError::spec(name, "times is 0: run the step at least once"));
        }
        let mut step = self.step;
        let kind = match step.remove("op") {
            Some(serde_json::Value::String(k)) => k,
            _ => return Err(OpError::spec(name, "`step` needs `op: generate` or `op: critique`")),
        };
        let inner = crate::pipeline::registry::build(&kind, name, serde_json::Value::Object(step), ctx).map_err(|e| match e {
            crate::pipeline::registry::StepError::UnknownKind(_) => OpError::spec(name, format!("unknown operator {kind:?} in `step`")),
            crate::pipeline::registry::StepError::Config { pointer, message } => OpError::spec(name, format!("step{pointer}: {message}")),
            crate::pipeline::registry::StepError::Build(e) => e,
        })?;
        match inner {
            Operator::Teacher(inner) => Ok(Operator::Teacher(Arc::new(Iterate { name: name.to_string(), times: self.times, inner }))),
            _ => Err(OpError::spec(name, format!("`{kind}` calls no teacher: repeating it would give the same rows; iterate teacher steps"))),
        }
    }
}

/// `call` with its seed moved on by `pass`.
fn reseed(call: Call, pass: u32) -> Call {
    match call {
        Call::Complete(mut r) => {
            // Choices use seed + i; move by a large odd stride so passes never share a seed.
            r.sampling.seed = r.sampling.seed.map(|s| s.wrapping_add(u64::from(pass).wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 1);
            Call::Complete(r)
        }
        score => score,
    }
}

impl TeacherStep for Iterate {
    fn schema_out(&self, input: &SchemaRef) -> Result<SchemaRef, OpError> {
        self.inner.schema_out(input)
    }

    fn calls(&self, batch: &RecordBatch, row: usize) -> Result<Calls, OpError> {
        match self.inner.calls(batch, row)? {
            Calls::Send(calls) => {
                let per = calls.len();
                let all = (0..self.times).flat_map(|p| calls.iter().cloned().map(move |c| reseed(c, p))).collect::<Vec<_>>();
                debug_assert_eq!(all.len(), per * self.times as usize);
                Ok(Calls::Send(all))
            }
            reject => Ok(reject),
        }
    }

    fn assemble(&self, batch: &RecordBatch, row: usize, answers: Vec<Answer>) -> Result<Output, OpError> {
        let schema = self.schema_out(batch.schema_ref())?;
        let per = answers.len() / self.times.max(1) as usize;
        let parent = row_ids(batch, &self.name)?.value(row).to_string();
        let mut outputs = Vec::new();
        let mut first_reject: Option<Reject> = None;
        let mut answers = answers.into_iter();
        for pass in 0..self.times as usize {
            let mine: Vec<Answer> = answers.by_ref().take(per).collect();
            // The inner step sees the row with the pass in its lineage id, so its children
            // carry it: `row.pass.choice.item`.
            let one = with_id(&batch.slice(row, 1), &child_id(&parent, pass), &self.name)?;
            let out = self.inner.assemble(&one, 0, mine)?;
            if out.rows.num_rows() > 0 {
                outputs.push(out.rows);
            } else if first_reject.is_none() {
                first_reject = out.rejects.into_iter().next().map(|r| Reject { row, reason: r.reason });
            }
        }
        if outputs.is_empty() {
            let reason = first_reject.map(|r| r.reason).unwrap_or_else(|| "no pass produced a row".into());
            return Ok(Output { rows: batch::empty(&schema), rejects: vec![Reject { row, reason: format!("every pass failed; first: {reason}") }] });
        }
        Ok(Output { rows: batch::concat(&schema, &outputs, &self.name)?, rejects: Vec::new() })
    }

    fn cost(&self) -> CallCost {
        let c = self.inner.cost();
        CallCost { requests: c.requests * u64::from(self.times), completions: c.completions * u64::from(self.times) }
    }

    fn unparsed(&self, answers: &[Answer]) -> u64 {
        self.inner.unparsed(answers)
    }
}

/// `one` (a single row) with its lineage id replaced by `id`.
fn with_id(one: &RecordBatch, id: &str, operator: &str) -> Result<RecordBatch, OpError> {
    let schema = one.schema();
    let idx = schema.index_of(crate::operators::ROW_ID).map_err(|e| OpError::arrow(operator, e))?;
    let mut columns = one.columns().to_vec();
    columns[idx] = Arc::new(StringArray::from(vec![id; one.num_rows()])) as Arc<dyn Array>;
    RecordBatch::try_new(schema, columns).map_err(|e| OpError::arrow(operator, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::batch::text_batch;
    use crate::teacher::{Choice, FinishReason, Response, Usage};

    fn build(times: u32, step: serde_json::Value) -> Result<Operator, OpError> {
        Config { times, step: step.as_object().cloned().unwrap_or_default() }.build("it", &BuildContext::default())
    }

    fn gen() -> serde_json::Value {
        serde_json::json!({"op": "generate", "prompt": {"generation": "Q like {{ q }}"}, "output": ["question"], "parse": "text"})
    }

    fn reply(t: &str) -> Answer {
        Answer::Complete(Ok(Response { choices: vec![Choice { text: t.into(), finish_reason: FinishReason::Stop, logprobs: None }], usage: Usage::default() }))
    }

    #[test]
    fn passes_are_seeded_apart_and_all_kept() {
        let Operator::Teacher(it) = build(3, gen()).unwrap() else { panic!() };
        assert_eq!(it.cost(), CallCost { requests: 3, completions: 3 });
        let b = text_batch(&[("q", vec!["why?".into()])]).unwrap();
        let Calls::Send(calls) = it.calls(&b, 0).unwrap() else { panic!() };
        let seeds: Vec<Option<u64>> = calls.iter().map(|c| if let Call::Complete(r) = c { r.sampling.seed } else { None }).collect();
        assert_eq!(seeds.len(), 3);
        assert!(seeds[0] != seeds[1] && seeds[1] != seeds[2] && seeds[0] != seeds[2], "{seeds:?}");
        let out = it.assemble(&b, 0, vec![reply("a"), reply(""), reply("c")]).unwrap();
        assert!(out.rejects.is_empty());
        let ids = row_ids(&out.rows, "t").unwrap();
        assert_eq!((ids.value(0), ids.value(1)), ("0000.0000.0000.0000", "0000.0002.0000.0000"));
        let all = it.assemble(&b, 0, vec![reply(""), reply(" "), reply("")]).unwrap();
        assert_eq!(all.rows.num_rows(), 0);
        assert!(all.rejects[0].reason.starts_with("every pass failed; first: none of the 1 completion(s)"), "{:?}", all.rejects);
    }

    #[test]
    fn empty_batch_schema_and_bad_configs() {
        let Operator::Teacher(it) = build(2, gen()).unwrap() else { panic!() };
        let empty = text_batch(&[("q", vec![])]).unwrap();
        assert!(it.schema_out(empty.schema_ref()).unwrap().field_with_name("question").is_ok());
        let no_ids = Arc::new(arrow::datatypes::Schema::new(vec![batch::text_field("q")]));
        assert!(matches!(it.schema_out(&no_ids), Err(OpError::Schema { .. })));
        let err = |t, s| build(t, s).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(0, gen()).contains("times is 0"));
        assert!(err(2, serde_json::json!({"op": "filter", "column": "q", "test": "eq", "value": "x"})).contains("calls no teacher"));
        assert!(err(2, serde_json::json!({"prompt": {}})).contains("needs `op: generate`"));
        assert!(err(2, serde_json::json!({"op": "generate", "output": ["x"], "bogus": 1})).contains("unknown field `bogus`"));
    }
}
