//! `critique`: a teacher judges each row and the verdict becomes a column.
//!
//! Two methods:
//! - `logprob` (default): the judge prompt is rendered and each label (`prefix` + label, e.g.
//!   `"[Start of Score]\n1"`) is scored as a continuation of the assistant's reply; the most
//!   probable label wins. A small teacher that cannot write the score format still gives a
//!   valid verdict (STACK.md: SmolLM2 is useless as a generative judge). With `calibrate`
//!   (default), each label's log-probability is taken relative to its log-probability for a
//!   content-free row (every text value replaced by `N/A`, one call per prompt, cached), as in
//!   "Calibrate Before Use" (Zhao et al., 2021): a small judge's preference for one label
//!   whatever the row says cancels out, and what is left is how the row moves it. The labels
//!   and the filters after the judge are unchanged.
//! - `generate`: the judge writes its reply, parsed like `generate` (by default the prompt's
//!   tags: an explanation then the score); a score outside `labels` rejects the row.
//!
//! - Columns in: what the prompt names. Columns out: the input, `output` (the label, text), and
//!   with `generate` the optional `explanation` column.
//! - Rejects: unrenderable prompts, failed calls, unparseable or out-of-label judgments.
//! - Deterministic given the teacher (greedy by default: `temperature: 0`).

use crate::operators::batch::{self, row_ids, row_json, schema_with, text_field};
use crate::operators::generate::{row_seed, Prompts, SamplingConfig, SelectConfig};
use crate::operators::parse::{ParseConfig, ParseSpec, Shape};
use crate::operators::{Answer, BuildContext, Call, CallCost, Calls, OpError, Operator, Output, Reject, Step, TeacherStep};
use crate::pipeline::prompt::PromptConfig;
use crate::teacher::{Request, Sampling};
use arrow::array::{ArrayRef, StringArray};
use arrow::datatypes::{Field, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::Deserialize;
use std::sync::Arc;

/// How the verdict is obtained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Score each label by log-probability.
    #[default]
    Logprob,
    /// Generate a reply and parse the label out of it.
    Generate,
}

/// `op: critique`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The judge prompt file.
    #[serde(default)]
    pub prompt: Option<PromptConfig>,
    /// Judge prompts chosen by a column's value, instead of `prompt`.
    #[serde(default)]
    pub prompts: Option<SelectConfig>,
    /// The verdicts the judge may give, e.g. `["0", "1"]` or `["YES", "NO"]`.
    pub labels: Vec<String>,
    /// `logprob` (default) or `generate`.
    #[serde(default)]
    pub method: Method,
    /// Column receiving the label. Default `score`.
    #[serde(default = "default_output")]
    pub output: String,
    /// Column receiving the judge's explanation (`generate` only).
    #[serde(default)]
    pub explanation: Option<String>,
    /// Text the reply starts with before the label (`logprob` only), e.g. `"[Start of Score]\n"`.
    #[serde(default)]
    pub prefix: String,
    /// How to read a generated reply; default: the prompt's tags (`generate` only).
    #[serde(default)]
    pub parse: Option<ParseConfig>,
    /// Sampling overrides (`generate` only); judges default to greedy.
    #[serde(default)]
    pub sampling: SamplingConfig,
    /// Lay the prompt out as the reference does (every part in one user message).
    #[serde(default)]
    pub system_in_user: bool,
    /// `logprob` only: score labels relative to a content-free row (see the module doc).
    /// Default true.
    #[serde(default = "yes")]
    pub calibrate: bool,
    /// `generate` only: constrain the reply to the parse format with a label from `labels`
    /// (structured generation; teachers that cannot take constraints ignore it). Default true.
    #[serde(default = "yes")]
    pub constrain: bool,
}

fn yes() -> bool {
    true
}

fn default_output() -> String {
    "score".to_string()
}

/// The built `critique` step.
#[derive(Debug)]
pub struct Critique {
    name: String,
    prompts: Prompts,
    labels: Vec<String>,
    output: String,
    explanation: Option<String>,
    prefix: String,
    /// `Some` for the `generate` method.
    parse: Option<ParseSpec>,
    calibrate: bool,
    sampling: Sampling,
    seed: u64,
}

/// What a content-free row says in every text column.
const CONTENT_FREE: &str = "N/A";

impl Step for Config {
    const KIND: &'static str = "critique";
    fn build(self, name: &str, ctx: &BuildContext) -> Result<Operator, OpError> {
        if self.labels.is_empty() {
            return Err(OpError::spec(name, "`labels` is empty; list the verdicts the judge may give, e.g. [\"0\", \"1\"]"));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = self.labels.iter().find(|l| !seen.insert(l.as_str())) {
            return Err(OpError::spec(name, format!("label {dup:?} is listed twice")));
        }
        let prompts = Prompts::compile(name, &self.prompt, &self.prompts, self.system_in_user)?;
        let parse = match self.method {
            Method::Logprob => {
                if self.explanation.is_some() || self.parse.is_some() {
                    return Err(OpError::spec(name, "`explanation` and `parse` need `method: generate`; a logprob judge writes nothing"));
                }
                None
            }
            Method::Generate => {
                let columns = 1 + usize::from(self.explanation.is_some());
                let spec =
                    ParseSpec::compile(self.parse.as_ref().unwrap_or(&ParseConfig::Tags(None)), columns, prompts.tags()).map_err(|e| {
                        let hint = if self.explanation.is_none() {
                            " (set `explanation: COLUMN` when the reply has an explanation part)"
                        } else {
                            ""
                        };
                        OpError::spec(name, format!("parse: {e}{hint}"))
                    })?;
                Some(spec)
            }
        };
        let greedy = Sampling { temperature: 0.0, ..ctx.sampling.clone() };
        let mut sampling = ctx.capped(Sampling { n: 1, ..self.sampling.over(&greedy) });
        if let Some(spec) = &parse {
            // The reply is one explanation-and-label item with the label among `labels`.
            let columns: Vec<String> = self.explanation.iter().cloned().chain(std::iter::once(self.output.clone())).collect();
            let shape = Shape { labels: [(self.output.clone(), self.labels.clone())].into(), max_items: Some(1), ..Shape::default() };
            sampling.constraint = if self.constrain { spec.constraint(&columns, &shape) } else { None };
        }
        Ok(Operator::Teacher(Arc::new(Critique {
            name: name.to_string(),
            prompts,
            labels: self.labels,
            output: self.output,
            explanation: self.explanation,
            prefix: self.prefix,
            calibrate: self.calibrate && parse.is_none(),
            parse,
            sampling,
            seed: ctx.seed,
        })))
    }
}

impl Critique {
    fn out_schema(&self, input: &SchemaRef) -> SchemaRef {
        let mut fields: Vec<Field> = Vec::new();
        if let Some(e) = &self.explanation {
            fields.push(text_field(e));
        }
        fields.push(text_field(&self.output));
        schema_with(input, &fields)
    }

    /// Parse columns in reply order: explanation first, then the score.
    fn parse_columns(&self) -> Vec<String> {
        self.explanation.iter().cloned().chain(std::iter::once(self.output.clone())).collect()
    }
}

impl TeacherStep for Critique {
    fn schema_out(&self, input: &SchemaRef) -> Result<SchemaRef, OpError> {
        batch::row_ids_field(input, &self.name)?;
        self.prompts.check(input, &self.name)?;
        Ok(self.out_schema(input))
    }

    fn calls(&self, batch: &RecordBatch, row: usize) -> Result<Calls, OpError> {
        let template = match self.prompts.pick(batch, row, &self.name)? {
            Ok(t) => t,
            Err(reason) => return Ok(Calls::Reject(reason)),
        };
        let vars = row_json(batch, row);
        let prompt = match template.render(&vars) {
            Ok(p) => p,
            Err(reason) => return Ok(Calls::Reject(reason)),
        };
        let labels: Vec<String> = self.labels.iter().map(|l| format!("{}{l}", self.prefix)).collect();
        if self.calibrate {
            let blank = vars.into_iter().map(|(k, v)| (k, if v.is_string() { serde_json::Value::from(CONTENT_FREE) } else { v })).collect();
            let baseline = match template.render(&blank) {
                Ok(p) => p,
                Err(reason) => return Ok(Calls::Reject(reason)),
            };
            return Ok(Calls::Send(vec![Call::Score { prompt, labels: labels.clone() }, Call::Score { prompt: baseline, labels }]));
        }
        Ok(Calls::Send(vec![match self.parse {
            None => Call::Score { prompt, labels },
            Some(_) => {
                let id = row_ids(batch, &self.name)?.value(row);
                Call::Complete(Request {
                    model: String::new(),
                    prompt,
                    sampling: Sampling { seed: Some(row_seed(self.seed, &self.name, id)), ..self.sampling.clone() },
                })
            }
        }]))
    }

    fn assemble(&self, batch: &RecordBatch, row: usize, answers: Vec<Answer>) -> Result<Output, OpError> {
        let schema = self.out_schema(batch.schema_ref());
        let reject = |reason: String| Output { rows: batch::empty(&schema), rejects: vec![Reject { row, reason }] };
        let mut answers = answers.into_iter();
        let (label, explanation) = match (answers.next(), &self.parse) {
            (Some(Answer::Score(Ok(mut logprobs))), None) => {
                if self.calibrate {
                    match answers.next() {
                        Some(Answer::Score(Ok(base))) if base.len() == logprobs.len() => {
                            logprobs.iter_mut().zip(&base).for_each(|(lp, b)| *lp -= b);
                        }
                        Some(Answer::Score(Err(e))) => return Ok(reject(format!("teacher call failed (content-free baseline): {e}"))),
                        _ => return Err(OpError::Internal { operator: self.name.clone(), message: "critique got no baseline score".into() }),
                    }
                }
                let best = logprobs.iter().enumerate().filter(|(_, lp)| lp.is_finite()).max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i);
                match best.and_then(|i| self.labels.get(i)) {
                    Some(l) => (l.clone(), None),
                    None => return Ok(reject(format!("the judge gave no finite score to any of {}", self.labels.join(", ")))),
                }
            }
            (Some(Answer::Complete(Ok(response))), Some(spec)) => {
                let text = response.choices.first().map(|c| c.text.as_str()).unwrap_or("");
                let Some(item) = spec.parse(text, &self.parse_columns()).into_iter().next() else {
                    return Ok(reject(format!("the judge's reply had no {}", spec.describe())));
                };
                let (explanation, score) = match item.as_slice() {
                    [e, s] => (Some(e.clone()), s.clone()),
                    [s] => (None, s.clone()),
                    _ => {
                        return Err(OpError::Internal {
                            operator: self.name.clone(),
                            message: "parse returned the wrong number of values".into(),
                        })
                    }
                };
                let Some(label) = self.labels.iter().find(|l| l.trim() == score.trim()) else {
                    return Ok(reject(format!("the judge answered {score:?}, not one of {}", self.labels.join(", "))));
                };
                (label.clone(), explanation)
            }
            (Some(Answer::Score(Err(e)) | Answer::Complete(Err(e))), _) => return Ok(reject(format!("teacher call failed: {e}"))),
            _ => return Err(OpError::Internal { operator: self.name.clone(), message: "critique got an answer of the wrong kind".into() }),
        };
        let mut columns: Vec<(String, ArrayRef)> = vec![(self.output.clone(), Arc::new(StringArray::from(vec![label])))];
        if let Some(e) = &self.explanation {
            columns.push((e.clone(), Arc::new(StringArray::from(vec![explanation]))));
        }
        let id = row_ids(batch, &self.name)?.value(row).to_string();
        let out = batch::expand(batch, &schema, &[row as u32], vec![id], columns, &self.name)?;
        Ok(Output { rows: out, rejects: Vec::new() })
    }

    fn cost(&self) -> CallCost {
        CallCost { requests: 1 + u64::from(self.calibrate), completions: if self.parse.is_some() { 1 } else { 0 } }
    }

    fn unparsed(&self, answers: &[Answer]) -> u64 {
        let Some(spec) = &self.parse else { return 0 };
        let columns = self.parse_columns();
        answers
            .iter()
            .filter_map(|a| match a {
                Answer::Complete(Ok(r)) => r.choices.first(),
                _ => None,
            })
            .filter(|c| spec.parse(&c.text, &columns).is_empty())
            .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::batch::text_batch;
    use crate::teacher::{Choice, FinishReason, Prompt, Response, TeacherError, Usage};

    fn judge_prompt() -> PromptConfig {
        PromptConfig {
            generation: Some("Rate: {{ question }}".into()),
            start_tags: vec!["[E]".into(), "[S]".into()],
            end_tags: vec!["[/E]".into(), "[/S]".into()],
            ..PromptConfig::default()
        }
    }

    fn config(method: Method) -> Config {
        Config {
            prompt: Some(judge_prompt()),
            prompts: None,
            labels: vec!["0".into(), "1".into()],
            method,
            output: "score".into(),
            explanation: (method == Method::Generate).then(|| "evaluation".to_string()),
            prefix: if method == Method::Logprob { "[S] ".into() } else { String::new() },
            parse: None,
            sampling: SamplingConfig::default(),
            system_in_user: false,
            calibrate: false,
            constrain: true,
        }
    }

    fn build(c: Config) -> Arc<dyn TeacherStep> {
        match c.build("judge", &BuildContext::default()).unwrap() {
            Operator::Teacher(t) => t,
            other => panic!("{other:?}"),
        }
    }

    fn rows() -> RecordBatch {
        text_batch(&[("question", vec!["Why?".into(), "How?".into()])]).unwrap()
    }

    #[test]
    fn logprob_judge_scores_prefixed_labels_and_takes_the_best() {
        let j = build(config(Method::Logprob));
        let b = rows();
        let Calls::Send(calls) = j.calls(&b, 0).unwrap() else { panic!() };
        let Call::Score { prompt, labels } = &calls[0] else { panic!("score call expected") };
        assert_eq!(labels, &vec!["[S] 0".to_string(), "[S] 1".to_string()]);
        assert!(matches!(prompt, Prompt::Chat(m) if m[0].content == "Rate: Why?"));
        let out = j.assemble(&b, 1, vec![Answer::Score(Ok(vec![-3.0, -0.5]))]).unwrap();
        assert_eq!(batch::text_column(&out.rows, "score", "t").unwrap().value(0), "1");
        assert_eq!(batch::row_ids(&out.rows, "t").unwrap().value(0), "0001");
        assert_eq!(j.cost(), CallCost { requests: 1, completions: 0 });
    }

    #[test]
    fn calibrated_judge_scores_labels_against_a_content_free_row() {
        let j = build(Config { calibrate: true, ..config(Method::Logprob) });
        let b = rows();
        let Calls::Send(calls) = j.calls(&b, 0).unwrap() else { panic!() };
        let [Call::Score { prompt, .. }, Call::Score { prompt: baseline, labels }] = calls.as_slice() else { panic!("{calls:?}") };
        assert!(matches!(prompt, Prompt::Chat(m) if m[0].content == "Rate: Why?"));
        assert!(matches!(baseline, Prompt::Chat(m) if m[0].content == "Rate: N/A"), "{baseline:?}");
        assert_eq!(labels.len(), 2);
        // The judge prefers "0" for every row (-1 vs -2) but this row raises "1" more than the
        // blank row does: calibrated, "1" wins.
        let out = j.assemble(&b, 0, vec![Answer::Score(Ok(vec![-1.0, -2.0])), Answer::Score(Ok(vec![-0.5, -4.0]))]).unwrap();
        assert_eq!(batch::text_column(&out.rows, "score", "t").unwrap().value(0), "1");
        let failed = j.assemble(&b, 0, vec![Answer::Score(Ok(vec![-1.0, -2.0])), Answer::Score(Err(TeacherError::Unsupported("x".into())))]).unwrap();
        assert!(failed.rejects[0].reason.contains("content-free baseline"), "{:?}", failed.rejects);
        assert_eq!(j.cost(), CallCost { requests: 2, completions: 0 });
    }

    #[test]
    fn generative_judge_parses_explanation_and_checks_the_label() {
        let j = build(config(Method::Generate));
        let b = rows();
        let Calls::Send(calls) = j.calls(&b, 0).unwrap() else { panic!() };
        let Call::Complete(req) = &calls[0] else { panic!("completion expected") };
        assert_eq!(req.sampling.temperature, 0.0, "judges are greedy by default");
        let reply = |t: &str| {
            Answer::Complete(Ok(Response {
                choices: vec![Choice { text: t.into(), finish_reason: FinishReason::Stop, logprobs: None }],
                usage: Usage::default(),
            }))
        };
        let out = j.assemble(&b, 0, vec![reply("[E] fine [/E] [S] 1 [/S]")]).unwrap();
        assert_eq!(batch::text_column(&out.rows, "evaluation", "t").unwrap().value(0), "fine");
        assert_eq!(batch::text_column(&out.rows, "score", "t").unwrap().value(0), "1");
        let out = j.assemble(&b, 0, vec![reply("[E] hmm [/E] [S] 7 [/S]")]).unwrap();
        assert_eq!(out.rejects[0].reason, "the judge answered \"7\", not one of 0, 1");
        let out = j.assemble(&b, 1, vec![reply("I think it is good")]).unwrap();
        assert_eq!(out.rejects[0].reason, "the judge's reply had no [E]…[/E] and [S]…[/S]");
    }

    #[test]
    fn all_rejected_when_calls_fail() {
        let j = build(config(Method::Logprob));
        let b = rows();
        for row in 0..2 {
            let out = j.assemble(&b, row, vec![Answer::Score(Err(TeacherError::Unsupported("x".into())))]).unwrap();
            assert_eq!(out.rows.num_rows(), 0);
            assert!(out.rejects[0].reason.starts_with("teacher call failed"));
        }
        let out = j.assemble(&b, 0, vec![Answer::Score(Ok(vec![f64::NEG_INFINITY, f64::NAN]))]).unwrap();
        assert!(out.rejects[0].reason.contains("no finite score"));
    }

    #[test]
    fn empty_batch_and_schema_mismatch() {
        let j = build(config(Method::Logprob));
        let empty = text_batch(&[("question", vec![])]).unwrap();
        let schema = j.schema_out(empty.schema_ref()).unwrap();
        assert_eq!(schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), vec!["_id", "question", "score"]);
        let b = text_batch(&[("answer", vec!["x".into()])]).unwrap();
        let Calls::Reject(reason) = j.calls(&b, 0).unwrap() else { panic!() };
        assert!(reason.contains("lacks"), "{reason}");
    }

    #[test]
    fn bad_configs_say_what_to_fix() {
        let err = |c: Config| c.build("judge", &BuildContext::default()).unwrap_err().to_string();
        assert!(err(Config { labels: vec![], ..config(Method::Logprob) }).contains("`labels` is empty"));
        assert!(err(Config { labels: vec!["1".into(), "1".into()], ..config(Method::Logprob) }).contains("listed twice"));
        assert!(err(Config { explanation: Some("e".into()), ..config(Method::Logprob) }).contains("need `method: generate`"));
        assert!(err(Config { explanation: None, ..config(Method::Generate) }).contains("set `explanation: COLUMN`"));
    }
}
