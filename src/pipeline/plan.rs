//! A validated pipeline: every step built, wired to its input, with its schemas known; and
//! `explain`, which prints it.

use crate::operators::{CallCost, Operator, ROW_ID};
use crate::taxonomy::LeafKind;
use arrow::datatypes::SchemaRef;
use std::fmt::Write;

/// One built step.
#[derive(Debug, Clone)]
pub struct PlanStep {
    /// Its unique name.
    pub name: String,
    /// Its operator kind (`generate`, …).
    pub kind: String,
    /// The step it reads (`None`: the seed rows).
    pub input: Option<usize>,
    /// The built operator.
    pub operator: Operator,
    /// Columns in.
    pub schema_in: SchemaRef,
    /// Columns out.
    pub schema_out: SchemaRef,
    /// Teacher calls per input row, for teacher steps.
    pub cost: Option<CallCost>,
    /// What the step computes, as a hash of its configuration (prompts included), the run's
    /// build settings and its input's fingerprint: equal fingerprints, equal rows.
    pub fingerprint: String,
}

/// A pipeline ready to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The pipeline's name.
    pub name: String,
    /// Where it was read from.
    pub file: String,
    /// What it does.
    pub description: Option<String>,
    /// Leaf kinds it applies to.
    pub leaf_kinds: Vec<LeafKind>,
    /// Steps in file order (every input comes before its reader).
    pub steps: Vec<PlanStep>,
    /// Index of the step whose rows are the dataset.
    pub output: usize,
    /// What the file asks for that this plan does differently or ignores (a translated
    /// InstructLab pipeline's `model_id`, say), one line each; `explain` shows them.
    pub notes: Vec<String>,
}

impl Plan {
    /// What the whole plan computes, as a hash: every step's fingerprint and which one is the
    /// output. A leaf's committed output stays valid while its plan's fingerprint is unchanged.
    pub fn fingerprint(&self) -> String {
        let steps: Vec<&str> = self.steps.iter().map(|s| s.fingerprint.as_str()).collect();
        let canonical = serde_json::json!([steps, self.output]);
        blake3::hash(canonical.to_string().as_bytes()).to_hex()[..32].to_string()
    }
}

fn columns(schema: &SchemaRef) -> Vec<String> {
    schema.fields().iter().filter(|f| f.name() != ROW_ID).map(|f| format!("{}:{}", f.name(), short_type(f.data_type()))).collect()
}

fn short_type(t: &arrow::datatypes::DataType) -> &'static str {
    use arrow::datatypes::DataType::*;
    match t {
        Utf8 | LargeUtf8 => "text",
        Int64 | Int32 | UInt32 | UInt64 => "int",
        Float64 | Float32 => "float",
        Boolean => "bool",
        _ => "other",
    }
}

impl Plan {
    /// The plan as text: one block per step with its input, columns in and out (new ones
    /// marked `+`, removed ones `-`), and teacher calls per input row.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        let kinds: Vec<&str> = self.leaf_kinds.iter().map(|k| k.label()).collect();
        let _ = writeln!(out, "pipeline {} ({}) for {} leaves", self.name, self.file, kinds.join(", "));
        if let Some(d) = &self.description {
            let _ = writeln!(out, "  {}", d.trim());
        }
        for note in &self.notes {
            let _ = writeln!(out, "  note: {note}");
        }
        let _ = writeln!(out, "  seeds: {}", columns(&self.steps[0].schema_in).join(", "));
        for (i, s) in self.steps.iter().enumerate() {
            let from = s.input.map(|j| self.steps[j].name.as_str()).unwrap_or("seeds");
            let marker = if i == self.output { "  => output" } else { "" };
            let _ = writeln!(out, "{:>3}. {} [{}] <- {}{}", i + 1, s.name, s.kind, from, marker);
            let before = columns(&s.schema_in);
            let after = columns(&s.schema_out);
            let added: Vec<String> = after.iter().filter(|c| !before.contains(c)).map(|c| format!("+{c}")).collect();
            let removed: Vec<String> = before.iter().filter(|c| !after.contains(c)).map(|c| format!("-{c}")).collect();
            let change: Vec<String> = added.into_iter().chain(removed).collect();
            let _ = writeln!(out, "     columns: {}", if change.is_empty() { "unchanged".to_string() } else { change.join(" ") });
            if let Some(c) = s.cost {
                let what = if c.completions == 0 {
                    format!("{} scoring request(s)", c.requests)
                } else {
                    format!("{} request(s), {} completion(s)", c.requests, c.completions)
                };
                let _ = writeln!(out, "     teacher: {what} per input row");
            }
            let shape = match s.operator {
                Operator::Aggregate(_) => Some("waits for all rows of a leaf"),
                _ => None,
            };
            if let Some(shape) = shape {
                let _ = writeln!(out, "     {shape}");
            }
        }
        out
    }
}
