//! Reading a pipeline file and its prompt files into a [`Plan`], with file:line diagnostics.
//!
//! Files come from a [`Source`]: a folder on disk, or the default pipelines compiled into the
//! binary (so `cargo install` needs no data files). YAML is read by the taxonomy's loader, which
//! keeps every node's position; serde errors carry a key path (`serde_path_to_error`), which is
//! turned back into the line and column of the offending node.

use crate::operators::{BuildContext, OpError, Operator, Step};
use crate::pipeline::plan::{Plan, PlanStep};
use crate::pipeline::prompt::PromptConfig;
use crate::pipeline::spec::{PipelineFile, StepSpec, FORMAT_VERSIONS};
use crate::pipeline::{registry, seed_schema};
use crate::taxonomy::yaml::{self, Document};
use crate::taxonomy::LeafKind;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::PathBuf;

/// Where pipeline and prompt files are read from.
pub trait Source: Send + Sync {
    /// The text of `rel` (a `/`-separated path inside the source).
    fn read(&self, rel: &str) -> Result<String, String>;
    /// How to show `rel` to a person (a path they can open).
    fn display(&self, rel: &str) -> String;
}

/// A folder on disk.
#[derive(Debug, Clone)]
pub struct DirSource(pub PathBuf);

impl Source for DirSource {
    fn read(&self, rel: &str) -> Result<String, String> {
        let path = self.0.join(rel);
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    }
    fn display(&self, rel: &str) -> String {
        self.0.join(rel).display().to_string()
    }
}

/// A pipeline file that cannot be used: where, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}{}", if key_path.is_empty() { String::new() } else { format!(" (at {key_path})") })]
pub struct PipelineError {
    /// The file, as [`Source::display`] shows it.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Key path inside the file, `steps[2].parse`; empty for the whole file.
    pub key_path: String,
    /// What is wrong and what to do.
    pub message: String,
}

/// A loaded YAML file and where it came from, for locating errors.
pub(crate) struct Loaded {
    /// The file, as [`Source::display`] shows it.
    pub(crate) file: String,
    doc: Document,
}

impl Loaded {
    /// Read and parse `rel`; a duplicate key is an error.
    pub(crate) fn read(source: &dyn Source, rel: &str) -> Result<(Loaded, Value), PipelineError> {
        let file = source.display(rel);
        let text = source.read(rel).map_err(|message| PipelineError {
            file: file.clone(),
            line: 1,
            column: 1,
            key_path: String::new(),
            message,
        })?;
        let doc = yaml::load(&text).map_err(|e| PipelineError {
            file: file.clone(),
            line: e.pos.line,
            column: e.pos.column,
            key_path: String::new(),
            message: e.message,
        })?;
        if let Some(d) = doc.duplicates.first() {
            return Err(PipelineError {
                file,
                line: d.pos.line,
                column: d.pos.column,
                key_path: d.mapping.clone(),
                message: format!("key `{}` appears twice (first at line {})", d.key, d.first.line),
            });
        }
        let value = doc.value.clone().unwrap_or(Value::Null);
        Ok((Loaded { file, doc }, value))
    }

    /// An error at JSON pointer `pointer`.
    pub(crate) fn at(&self, pointer: &str, message: impl Into<String>) -> PipelineError {
        let (line, column) = self.doc.locate(pointer).map(|(_, n)| (n.pos.line, n.pos.column)).unwrap_or((1, 1));
        PipelineError { file: self.file.clone(), line, column, key_path: key_path(pointer), message: message.into() }
    }

    /// Deserialise `value` (found at `pointer`) as `T`, locating any error.
    pub(crate) fn parse<T: DeserializeOwned>(&self, pointer: &str, value: Value) -> Result<T, PipelineError> {
        serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
            let sub = path_pointer(e.path());
            self.at(&format!("{pointer}{sub}"), e.inner().to_string())
        })
    }
}

/// `/steps/2/parse` → `steps[2].parse`.
fn key_path(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        if seg.chars().all(|c| c.is_ascii_digit()) && !seg.is_empty() {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg.replace("~1", "/").replace("~0", "~"));
        }
    }
    out
}

fn path_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("/{index}")),
            Segment::Map { key } => out.push_str(&format!("/{}", yaml::escape_pointer(key))),
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    out
}

/// The folder part of `rel`, for resolving files it names.
pub(crate) fn dir_of(rel: &str) -> &str {
    rel.rfind('/').map(|i| &rel[..i]).unwrap_or("")
}

/// `base/rel`, with `..` segments resolved; `None` if it climbs out of the source.
pub(crate) fn join(base: &str, rel: &str) -> Option<String> {
    let mut parts: Vec<&str> = base.split('/').filter(|s| !s.is_empty()).collect();
    for seg in rel.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

/// Load the prompt file `name` (relative to `dir`) as a JSON value that `PromptConfig` accepts.
pub(crate) fn load_prompt(source: &dyn Source, dir: &str, name: &str, owner: &Loaded, pointer: &str) -> Result<Value, PipelineError> {
    let rel = join(dir, name).ok_or_else(|| owner.at(pointer, format!("prompt file {name:?} is outside the pipeline folder")))?;
    let (loaded, value) = Loaded::read(source, &rel).map_err(|mut e| {
        if e.message.starts_with("cannot read") {
            // Point at the key that names the missing file, and say where it was looked for.
            e = owner.at(pointer, format!("{}; prompt paths are relative to the pipeline file", e.message));
        }
        e
    })?;
    // Check it here so an error points into the prompt file, not at the step.
    loaded.parse::<PromptConfig>("", value.clone())?;
    Ok(value)
}

/// Replace `prompt: FILE` and `prompts.choices.*: FILE` in step `i` by the files' contents.
fn inline_prompts(
    source: &dyn Source,
    dir: &str,
    loaded: &Loaded,
    i: usize,
    config: &mut serde_json::Map<String, Value>,
) -> Result<(), PipelineError> {
    if let Some(Value::String(name)) = config.get("prompt").cloned() {
        config.insert("prompt".into(), load_prompt(source, dir, &name, loaded, &format!("/steps/{i}/prompt"))?);
    }
    if let Some(Value::Object(choices)) = config.get_mut("prompts").and_then(|p| p.get_mut("choices")) {
        for (k, v) in choices.iter_mut() {
            if let Value::String(name) = v.clone() {
                *v = load_prompt(source, dir, &name, loaded, &format!("/steps/{i}/prompts/choices/{}", yaml::escape_pointer(k)))?;
            }
        }
    }
    Ok(())
}

/// Parse a leaf kind as pipeline files name it.
pub fn parse_kind(s: &str) -> Option<LeafKind> {
    match s {
        "knowledge" => Some(LeafKind::Knowledge),
        "freeform_skill" | "freeform_skills" => Some(LeafKind::FreeformSkill),
        "grounded_skill" | "grounded_skills" => Some(LeafKind::GroundedSkill),
        _ => None,
    }
}

/// Read the pipeline file `rel` from `source` and build its plan.
pub fn load(source: &dyn Source, rel: &str, ctx: &BuildContext) -> Result<Plan, PipelineError> {
    let (loaded, mut value) = Loaded::read(source, rel)?;
    if !value.is_object() {
        return Err(loaded.at("", "a pipeline file is a mapping with `version`, `name`, `leaf_kinds` and `steps`"));
    }
    if let Some(v) = value.get("version") {
        if !v.as_u64().is_some_and(|v| FORMAT_VERSIONS.contains(&(v as u32))) {
            let hint =
                if v.is_string() { "; an InstructLab pipeline (version \"1.0\", `blocks:`) runs with --pipeline ilab:DIR" } else { "" };
            return Err(loaded.at("/version", format!("unsupported pipeline format version {v}; this labflow reads version 1{hint}")));
        }
    }
    let dir = dir_of(rel).to_string();
    if let Some(Value::Array(steps)) = value.get_mut("steps") {
        for (i, step) in steps.iter_mut().enumerate() {
            if let Some(config) = step.as_object_mut() {
                inline_prompts(source, &dir, &loaded, i, config)?;
            }
        }
    }
    let file: PipelineFile = loaded.parse("", value)?;
    compile(&loaded, file, ctx)
}

fn compile(loaded: &Loaded, file: PipelineFile, ctx: &BuildContext) -> Result<Plan, PipelineError> {
    let mut kinds = Vec::new();
    for (i, k) in file.leaf_kinds.iter().enumerate() {
        kinds.push(parse_kind(k).ok_or_else(|| {
            loaded.at(&format!("/leaf_kinds/{i}"), format!("unknown leaf kind {k:?}; use knowledge, freeform_skill or grounded_skill"))
        })?);
    }
    if kinds.is_empty() {
        return Err(loaded.at("/leaf_kinds", "`leaf_kinds` is empty; name the leaves this pipeline is for"));
    }
    if file.steps.is_empty() {
        return Err(loaded.at("/steps", "`steps` is empty; a pipeline needs at least one step"));
    }
    let ctx = BuildContext { sampling: file.sampling.over(&ctx.sampling), ..ctx.clone() };
    let mut builder = PlanBuilder::new(loaded, kinds, ctx);
    for (i, spec) in file.steps.iter().enumerate() {
        let at = format!("/steps/{i}");
        builder.push(spec, &at, &|pointer| format!("{at}{pointer}"))?;
    }
    let output = match &file.output {
        None => None,
        Some(name) => Some(builder.position(name).ok_or_else(|| loaded.at("/output", format!("no step named {name:?}")))?),
    };
    builder.finish(file.name, file.description, output)
}

/// A plan built one step at a time, each step checked against the schema of the step it reads
/// as soon as it is pushed. Labflow's own files and translated InstructLab ones (`ilab.rs`) go
/// through it, so both get the same checks; a translator can read [`PlanBuilder::schema`] to
/// decide its next step (the reference drops only the `drop_columns` that exist).
pub(crate) struct PlanBuilder<'a> {
    loaded: &'a Loaded,
    ctx: BuildContext,
    kinds: Vec<LeafKind>,
    steps: Vec<PlanStep>,
    /// Where each step came from (a JSON pointer into the file), for errors found at `finish`.
    origins: Vec<String>,
    notes: Vec<String>,
}

impl<'a> PlanBuilder<'a> {
    /// An empty plan for `kinds` (at least one), built with `ctx`.
    pub(crate) fn new(loaded: &'a Loaded, kinds: Vec<LeafKind>, ctx: BuildContext) -> PlanBuilder<'a> {
        PlanBuilder { loaded, ctx, kinds, steps: Vec::new(), origins: Vec::new(), notes: Vec::new() }
    }

    /// The columns the next step sees when it reads the last one (the seed rows before any).
    pub(crate) fn schema(&self) -> arrow::datatypes::SchemaRef {
        self.steps.last().map(|s| s.schema_out.clone()).unwrap_or_else(|| seed_schema(self.kinds[0]))
    }

    /// Whether a step is called `name` (or `name` is the reserved `seeds`).
    pub(crate) fn has(&self, name: &str) -> bool {
        name == "seeds" || self.position(name).is_some()
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.name == name)
    }

    /// A line for `explain`: something the file says that the plan does differently or ignores.
    pub(crate) fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Build `spec` and append it. `at` points at the step in the file (its `name`, `op` and
    /// `input` are looked for under it); `config_at` turns a pointer inside the operator's keys
    /// (`/parse/regex`) into a pointer in the file.
    pub(crate) fn push(&mut self, spec: &StepSpec, at: &str, config_at: &dyn Fn(&str) -> String) -> Result<(), PipelineError> {
        let loaded = self.loaded;
        let i = self.steps.len();
        if self.has(&spec.name) {
            return Err(loaded.at(
                &format!("{at}/name"),
                format!("step name {:?} is used twice (or is the reserved `seeds`); step names are unique", spec.name),
            ));
        }
        let input = match spec.input.as_deref() {
            None if i == 0 => None,
            None => Some(i - 1),
            Some("seeds") => None,
            Some(name) => Some(self.position(name).ok_or_else(|| {
                loaded
                    .at(&format!("{at}/input"), format!("no earlier step named {name:?}; `input` names a step above this one, or `seeds`"))
            })?),
        };
        let operator = registry::build(&spec.op, &spec.name, Value::Object(spec.config.clone()), &self.ctx).map_err(|e| match e {
            registry::StepError::UnknownKind(known) => {
                loaded.at(&format!("{at}/op"), format!("unknown operator {:?}; known: {}", spec.op, known.join(", ")))
            }
            registry::StepError::Config { pointer, message } => loaded.at(&config_at(&pointer), message),
            registry::StepError::Build(e) => loaded.at(at, e.to_string()),
        })?;
        let first_kind = self.kinds[0];
        let schema_in = match input {
            None => seed_schema(first_kind),
            Some(j) => self.steps[j].schema_out.clone(),
        };
        let schema_out = operator.schema_out(&schema_in).map_err(|e| {
            let from =
                input.map(|j| format!("step `{}`", self.steps[j].name)).unwrap_or_else(|| format!("the {} seed rows", first_kind.label()));
            loaded.at(at, format!("{e} (input: {from})"))
        })?;
        let cost = match &operator {
            Operator::Teacher(t) => Some(t.cost()),
            _ => None,
        };
        let fingerprint = step_fingerprint(spec, input.map(|j| self.steps[j].fingerprint.as_str()), &self.kinds, &self.ctx);
        self.steps.push(PlanStep {
            name: spec.name.clone(),
            kind: spec.op.clone(),
            input,
            operator,
            schema_in,
            schema_out,
            cost,
            fingerprint,
        });
        self.origins.push(at.to_string());
        Ok(())
    }

    /// The plan, its output the step at `output` (default: the last). Every step must feed
    /// another or be the output, and every leaf kind but the first must fit too.
    pub(crate) fn finish(self, name: String, description: Option<String>, output: Option<usize>) -> Result<Plan, PipelineError> {
        let loaded = self.loaded;
        let steps = self.steps;
        let Some(last) = steps.len().checked_sub(1) else {
            return Err(loaded.at("", "the pipeline has no steps"));
        };
        let output = output.unwrap_or(last);
        for (i, s) in steps.iter().enumerate() {
            let consumed = steps.iter().any(|t| t.input == Some(i));
            if !consumed && i != output {
                return Err(loaded.at(
                    &self.origins[i],
                    format!("the rows of step `{}` go nowhere: no step reads them and it is not the `output`", s.name),
                ));
            }
        }
        for kind in &self.kinds[1..] {
            let mut outs: Vec<arrow::datatypes::SchemaRef> = Vec::new();
            for (i, s) in steps.iter().enumerate() {
                let input = match s.input {
                    None => seed_schema(*kind),
                    Some(j) => outs[j].clone(),
                };
                outs.push(
                    s.operator.schema_out(&input).map_err(|e| loaded.at(&self.origins[i], format!("{e} (for {} leaves)", kind.label())))?,
                );
            }
        }
        Ok(Plan { name, file: loaded.file.clone(), description, leaf_kinds: self.kinds, steps, output, notes: self.notes })
    }
}

/// Domain separation (and format version) of step fingerprints.
const FINGERPRINT_CONTEXT: &str = "labflow step fingerprint v1";

/// What a step computes, as a hash: its name, operator and configuration (prompt files are
/// inlined into it before this point, so a prompt edit changes it), the run's build settings
/// (`--scale`, `--seed`, `--max-tokens`, the pipeline's sampling defaults), the labflow version,
/// and the fingerprint of the step it reads (or the leaf kinds, for a step reading the seeds).
/// Two steps with equal fingerprints compute the same rows from the same input, which is what
/// lets a rerun keep a leaf's committed output (`engine::increment`).
fn step_fingerprint(spec: &StepSpec, input: Option<&str>, kinds: &[LeafKind], ctx: &BuildContext) -> String {
    let kinds: Vec<&str> = kinds.iter().map(|k| k.label()).collect();
    let upstream = match input {
        Some(fp) => serde_json::json!({ "step": fp }),
        None => serde_json::json!({ "seeds": kinds }),
    };
    let settings = serde_json::json!({
        "scale": ctx.scale,
        "seed": ctx.seed,
        "max_tokens": ctx.max_tokens,
        "sampling": ctx.sampling,
    });
    let canonical = serde_json::json!([env!("CARGO_PKG_VERSION"), spec.name, spec.op, spec.config, settings, upstream]);
    let mut hasher = blake3::Hasher::new_derive_key(FINGERPRINT_CONTEXT);
    hasher.update(canonical.to_string().as_bytes());
    hasher.finalize().to_hex()[..32].to_string()
}

/// Deserialise and build one step of kind `T`.
pub(crate) fn build_step<T: Step>(name: &str, value: Value, ctx: &BuildContext) -> Result<Operator, registry::StepError> {
    let config: T = serde_path_to_error::deserialize(value)
        .map_err(|e| registry::StepError::Config { pointer: path_pointer(e.path()), message: e.inner().to_string() })?;
    config.build(name, ctx).map_err(|e: OpError| registry::StepError::Build(e))
}

#[cfg(test)]
mod tests;
