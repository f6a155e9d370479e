//! `generate`: render a prompt per row, ask the teacher for `n` completions, parse each
//! completion into 0..k rows.
//!
//! - Columns in: whatever the prompt's templates name (plus the selector column of `prompts`).
//! - Columns out: the input columns, the `set` constants, and the `output` columns (text).
//! - Rejects: a row whose prompt cannot render (a missing value), whose call failed after the
//!   teacher's retries, or none of whose completions parse.
//! - Deterministic given the teacher: each row's request is seeded from the run seed, the step
//!   name and the row's lineage id, and output rows are ordered by lineage (`row.choice.item`).
//!
//! `prompts: {column, choices}` picks the prompt by a column's value (the reference's
//! ConditionalLLMBlock); a value with no prompt rejects the row.

use crate::operators::batch::{self, child_id, row_ids, row_json, schema_with, text_field};
use crate::operators::parse::{ParseConfig, ParseSpec, Shape};
use crate::operators::{Answer, BuildContext, Call, CallCost, Calls, OpError, Operator, Output, Reject, Step, TeacherStep};
use crate::pipeline::prompt::{PromptConfig, PromptTemplate};
use crate::teacher::{FinishReason, Request, Sampling};
use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, SchemaRef};
use arrow::record_batch::RecordBatch;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// How many completions a step asks for per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Count {
    /// A fixed number.
    Fixed(u32),
    /// `scaled`: the run's `--scale`.
    Scaled(Scaled),
}

/// The word `scaled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scaled {
    /// `n: scaled`.
    Scaled,
}

impl Default for Count {
    fn default() -> Self {
        Count::Fixed(1)
    }
}

impl Count {
    /// The number for this run.
    pub fn resolve(self, ctx: &BuildContext) -> u32 {
        match self {
            Count::Fixed(n) => n,
            Count::Scaled(_) => ctx.scale,
        }
    }
}

/// Sampling keys a step may override; unset keys come from the pipeline's `sampling`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingConfig {
    /// Softmax temperature (0 = greedy).
    pub temperature: Option<f32>,
    /// Nucleus mass in (0, 1].
    pub top_p: Option<f32>,
    /// Keep the k most likely tokens.
    pub top_k: Option<u32>,
    /// Most tokens per completion.
    pub max_tokens: Option<u32>,
    /// Stop strings.
    pub stop: Option<Vec<String>>,
}

impl SamplingConfig {
    /// `base` with these keys applied.
    pub fn over(&self, base: &Sampling) -> Sampling {
        let mut s = base.clone();
        if let Some(t) = self.temperature {
            s.temperature = t;
        }
        if let Some(p) = self.top_p {
            s.top_p = p;
        }
        if self.top_k.is_some() {
            s.top_k = self.top_k;
        }
        if let Some(m) = self.max_tokens {
            s.max_tokens = m;
        }
        if let Some(stop) = &self.stop {
            s.stop = stop.clone();
        }
        s
    }
}

/// Prompts chosen by a column's value.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectConfig {
    /// The column whose value picks the prompt.
    pub column: String,
    /// Value → prompt (each a prompt file, inlined by the pipeline loader).
    pub choices: BTreeMap<String, PromptConfig>,
}

/// `op: generate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The prompt file (the pipeline loader reads `prompt: FILE` relative to the pipeline file).
    #[serde(default)]
    pub prompt: Option<PromptConfig>,
    /// Prompts chosen per row by a column's value, instead of `prompt`.
    #[serde(default)]
    pub prompts: Option<SelectConfig>,
    /// Output columns the parse fills, in order.
    pub output: Vec<String>,
    /// How to read a completion; default: the prompt's start/end tags.
    #[serde(default)]
    pub parse: Option<ParseConfig>,
    /// Completions per row: a number or `scaled` (the run's `--scale`). Default 1.
    #[serde(default)]
    pub n: Count,
    /// Constant columns added to every row before rendering (e.g. `num_samples: 30`).
    #[serde(default)]
    pub set: BTreeMap<String, serde_json::Value>,
    /// Sampling overrides for this step.
    #[serde(default)]
    pub sampling: SamplingConfig,
    /// Lay the prompt out as the reference does (every part in one user message).
    #[serde(default)]
    pub system_in_user: bool,
    /// Output column → the values it may take (e.g. `score: ["0", "1"]`); items with another
    /// value are dropped, and the constraint allows only these.
    #[serde(default)]
    pub labels: BTreeMap<String, Vec<String>>,
    /// Output columns that hold a number (scores a later `filter` casts).
    #[serde(default)]
    pub numeric: Vec<String>,
    /// Most items one completion may hold (default: no limit).
    #[serde(default)]
    pub max_items: Option<u32>,
    /// Constrain decoding to the parse format (structured generation; teachers that cannot take
    /// constraints ignore it). Default true.
    #[serde(default = "yes")]
    pub constrain: bool,
}

fn yes() -> bool {
    true
}

/// The prompt(s) of a step: one, or one per value of a column.
#[derive(Debug, Clone)]
pub enum Prompts {
    /// The same prompt for every row.
    One(PromptTemplate),
    /// Chosen by `column`'s value.
    ByColumn {
        /// The selector column.
        column: String,
        /// Value → prompt.
        choices: BTreeMap<String, PromptTemplate>,
    },
}

impl Prompts {
    /// Compile `prompt` or `prompts` (exactly one must be given).
    pub fn compile(
        name: &str,
        prompt: &Option<PromptConfig>,
        prompts: &Option<SelectConfig>,
        system_in_user: bool,
    ) -> Result<Prompts, OpError> {
        match (prompt, prompts) {
            (Some(p), None) => {
                Ok(Prompts::One(PromptTemplate::compile(p, system_in_user).map_err(|e| OpError::spec(name, format!("prompt: {e}")))?))
            }
            (None, Some(sel)) => {
                if sel.choices.is_empty() {
                    return Err(OpError::spec(name, "prompts.choices is empty; map each value of the column to a prompt file"));
                }
                let mut choices = BTreeMap::new();
                for (value, p) in &sel.choices {
                    let t = PromptTemplate::compile(p, system_in_user)
                        .map_err(|e| OpError::spec(name, format!("prompts.choices.{value}: {e}")))?;
                    choices.insert(value.clone(), t);
                }
                Ok(Prompts::ByColumn { column: sel.column.clone(), choices })
            }
            (Some(_), Some(_)) => Err(OpError::spec(name, "give either `prompt` or `prompts`, not both")),
            (None, None) => Err(OpError::spec(name, "no prompt: add `prompt: FILE`")),
        }
    }

    /// Tag pairs of the (first) prompt.
    pub fn tags(&self) -> &[(String, String)] {
        match self {
            Prompts::One(t) => t.tags(),
            Prompts::ByColumn { choices, .. } => choices.values().next().map(|t| t.tags()).unwrap_or(&[]),
        }
    }

    /// The template for row `row`, or the reason the row cannot have one.
    pub fn pick(&self, batch: &RecordBatch, row: usize, operator: &str) -> Result<Result<&PromptTemplate, String>, OpError> {
        match self {
            Prompts::One(t) => Ok(Ok(t)),
            Prompts::ByColumn { column, choices } => {
                let col = batch.column_by_name(column).ok_or_else(|| batch::missing(batch.schema_ref(), column, operator))?;
                let value = batch::text_value(col.as_ref(), row).unwrap_or_default();
                Ok(choices.get(&value).ok_or_else(|| {
                    format!("no prompt for {column} = {value:?}; known values: {}", choices.keys().cloned().collect::<Vec<_>>().join(", "))
                }))
            }
        }
    }

    /// Check the selector column exists.
    pub fn check(&self, input: &SchemaRef, operator: &str) -> Result<(), OpError> {
        match self {
            Prompts::One(_) => Ok(()),
            Prompts::ByColumn { column, .. } => batch::require(input, &[column.as_str()], operator),
        }
    }
}

/// The seed of one row's calls: the run seed, the step and the row's lineage id, hashed.
pub fn row_seed(base: u64, step: &str, row_id: &str) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&base.to_le_bytes());
    h.update(step.as_bytes());
    h.update(&[0]);
    h.update(row_id.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&h.finalize().as_bytes()[..8]);
    // Keep it within i64 so every OpenAI-compatible server accepts it.
    u64::from_le_bytes(bytes) >> 1
}

/// The built `generate` step.
#[derive(Debug)]
pub struct Generate {
    name: String,
    prompts: Prompts,
    output: Vec<String>,
    parse: ParseSpec,
    n: u32,
    set: Vec<(String, serde_json::Value)>,
    sampling: Sampling,
    seed: u64,
    labels: BTreeMap<String, Vec<String>>,
}

impl Step for Config {
    const KIND: &'static str = "generate";
    fn build(self, name: &str, ctx: &BuildContext) -> Result<Operator, OpError> {
        if self.output.is_empty() {
            return Err(OpError::spec(name, "`output` names no column; list the columns the completion is parsed into"));
        }
        let prompts = Prompts::compile(name, &self.prompt, &self.prompts, self.system_in_user)?;
        let parse = ParseSpec::compile(self.parse.as_ref().unwrap_or(&ParseConfig::Tags(None)), self.output.len(), prompts.tags())
            .map_err(|e| OpError::spec(name, format!("parse: {e}")))?;
        let n = self.n.resolve(ctx);
        if n == 0 {
            return Err(OpError::spec(name, "n is 0: ask for at least one completion"));
        }
        for (k, v) in &self.set {
            if !(v.is_string() || v.is_i64() || v.is_u64()) {
                return Err(OpError::spec(name, format!("set.{k}: only text and whole numbers can be set, not {v}")));
            }
        }
        for col in self.labels.keys().chain(&self.numeric) {
            if !self.output.contains(col) {
                return Err(OpError::spec(name, format!("labels/numeric name {col:?}, which is not an output column ({})", self.output.join(", "))));
            }
        }
        if self.max_items == Some(0) {
            return Err(OpError::spec(name, "max_items is 0: allow at least one item"));
        }
        let mut sampling = ctx.capped(Sampling { n, ..self.sampling.over(&ctx.sampling) });
        if self.constrain {
            let shape = Shape { labels: self.labels.clone(), numeric: self.numeric.clone(), max_items: self.max_items };
            sampling.constraint = parse.constraint(&self.output, &shape);
        }
        Ok(Operator::Teacher(Arc::new(Generate {
            name: name.to_string(),
            prompts,
            output: self.output,
            parse,
            n,
            set: self.set.into_iter().collect(),
            sampling,
            seed: ctx.seed,
            labels: self.labels,
        })))
    }
}

fn set_field(name: &str, v: &serde_json::Value) -> Field {
    if v.is_string() {
        text_field(name)
    } else {
        Field::new(name, DataType::Int64, true)
    }
}

impl Generate {
    /// The items of a completion whose labelled columns hold one of their labels.
    fn items(&self, text: &str) -> Vec<Vec<String>> {
        let mut items = self.parse.parse(text, &self.output);
        items.retain(|item| self.output.iter().zip(item).all(|(col, v)| self.labels.get(col).is_none_or(|l| l.contains(v))));
        items
    }

    fn out_schema(&self, input: &SchemaRef) -> SchemaRef {
        let mut fields: Vec<Field> = self.set.iter().map(|(k, v)| set_field(k, v)).collect();
        fields.extend(self.output.iter().map(|c| text_field(c)));
        schema_with(input, &fields)
    }
}

impl TeacherStep for Generate {
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
        let mut vars = row_json(batch, row);
        for (k, v) in &self.set {
            vars.insert(k.clone(), v.clone());
        }
        let prompt = match template.render(&vars) {
            Ok(p) => p,
            Err(reason) => return Ok(Calls::Reject(reason)),
        };
        let id = row_ids(batch, &self.name)?.value(row);
        let sampling = Sampling { seed: Some(row_seed(self.seed, &self.name, id)), ..self.sampling.clone() };
        Ok(Calls::Send(vec![Call::Complete(Request { model: String::new(), prompt, sampling })]))
    }

    fn assemble(&self, batch: &RecordBatch, row: usize, answers: Vec<Answer>) -> Result<Output, OpError> {
        let schema = self.out_schema(batch.schema_ref());
        let reject = |reason: String| Output { rows: batch::empty(&schema), rejects: vec![Reject { row, reason }] };
        let response = match answers.into_iter().next() {
            Some(Answer::Complete(Ok(r))) => r,
            Some(Answer::Complete(Err(e))) => return Ok(reject(format!("teacher call failed: {e}"))),
            _ => return Err(OpError::Internal { operator: self.name.clone(), message: "generate got no completion answer".into() }),
        };
        let parent = row_ids(batch, &self.name)?.value(row).to_string();
        let mut ids = Vec::new();
        let mut values: Vec<Vec<String>> = vec![Vec::new(); self.output.len()];
        let mut truncated_unparsed = 0;
        for (c, choice) in response.choices.iter().enumerate() {
            let items = self.items(&choice.text);
            if items.is_empty() && choice.finish_reason == FinishReason::Length {
                truncated_unparsed += 1;
            }
            for (k, item) in items.into_iter().enumerate() {
                ids.push(child_id(&child_id(&parent, c), k));
                for (col, v) in values.iter_mut().zip(item) {
                    col.push(v);
                }
            }
        }
        if ids.is_empty() {
            let cut = if truncated_unparsed > 0 { format!(" ({truncated_unparsed} cut by max_tokens)") } else { String::new() };
            return Ok(reject(format!("none of the {} completion(s) had {}{cut}", response.choices.len(), self.parse.describe())));
        }
        let rows = ids.len();
        let mut columns: Vec<(String, ArrayRef)> = Vec::new();
        for (k, v) in &self.set {
            let col: ArrayRef = match v {
                serde_json::Value::String(s) => Arc::new(StringArray::from(vec![s.as_str(); rows])),
                other => Arc::new(Int64Array::from(vec![other.as_i64().unwrap_or_default(); rows])),
            };
            columns.push((k.clone(), col));
        }
        for (name, v) in self.output.iter().zip(values) {
            columns.push((name.clone(), Arc::new(StringArray::from(v))));
        }
        let out = batch::expand(batch, &schema, &vec![row as u32; rows], ids, columns, &self.name)?;
        Ok(Output { rows: out, rejects: Vec::new() })
    }

    fn cost(&self) -> CallCost {
        CallCost { requests: 1, completions: u64::from(self.n) }
    }

    fn unparsed(&self, answers: &[Answer]) -> u64 {
        let choices = answers.iter().flat_map(|a| match a {
            Answer::Complete(Ok(r)) => r.choices.as_slice(),
            _ => &[],
        });
        choices.filter(|c| self.items(&c.text).is_empty()).count() as u64
    }
}

#[cfg(test)]
mod tests;
