//! InstructLab pipelines, run unchanged: `--pipeline ilab:DIR` reads the reference's own
//! pipeline files (`version: "1.0"`, a `blocks:` list, as in instructlab-sdg's
//! `pipelines/{full,simple,llama}/*.yaml`) and translates each block into labflow steps, which
//! then go through the same builder as labflow's own files ([`load`](super::load)), so the
//! result is an ordinary [`Plan`] with file:line errors pointing into the InstructLab file.
//!
//! | block | steps |
//! |---|---|
//! | `LLMBlock` (and `LLMLogProbBlock`, which runs as one in the reference) | `generate` |
//! | `ConditionalLLMBlock` | `generate` with `prompts` chosen by the selector column |
//! | `IterBlock` over an LLM block | one `generate` with `n × num_iters` completions |
//! | `FilterByValueBlock` | `filter` |
//! | `CombineColumnsBlock`, `DuplicateColumnsBlock`, `RenameColumnsBlock` | `combine`, `duplicate`, `rename` |
//! | `FlattenColumnsBlock`, `SetToMajorityValueBlock` | `flatten`, `majority` |
//! | `SelectorBlock` | `template` (a lookup in a map literal) |
//! | a block's `drop_columns` / `drop_duplicates` | `drop` (of the columns that exist) / `dedup` (exact) |
//!
//! `LLMMessagesBlock` and `SamplePopulatorBlock` are refused with an error naming them. Keys the
//! reference accepts but labflow does not act on (`model_id`, `gen_kwargs.seed`, …) become
//! notes that `explain` prints; keys that would change the output in a way labflow cannot
//! reproduce are errors. The leaf kind comes from the file name, as in the reference.

use crate::operators::BuildContext;
use crate::pipeline::load::{dir_of, join, load_prompt, Loaded, PipelineError, PlanBuilder, Source};
use crate::pipeline::plan::Plan;
use crate::pipeline::spec::StepSpec;
use crate::taxonomy::LeafKind;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

mod raw;
use raw::{RawBlock, RawColumnsMap, RawCombine, RawFile, RawFilter, RawFlatten, RawGen, RawLlm, RawMajority, RawSelector};

/// The files of an InstructLab pipeline directory and the leaf kind each is for, in the order
/// the reference loads them (it requires all three).
pub const FILES: [(&str, LeafKind); 3] = [
    ("knowledge.yaml", LeafKind::Knowledge),
    ("freeform_skills.yaml", LeafKind::FreeformSkill),
    ("grounded_skills.yaml", LeafKind::GroundedSkill),
];

/// The reference LLMBlock's `max_tokens` when `gen_kwargs` has none (`DEFAULT_MAX_NUM_TOKENS`).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Load every pipeline of an InstructLab pipeline directory (`full/`, `simple/`, `llama/` or
/// one of the user's): `knowledge.yaml`, `freeform_skills.yaml` and `grounded_skills.yaml`, in
/// that order. Prompt files (`config_path`) are read relative to the pipeline file, wherever
/// they are, as the reference does.
pub fn load_dir(dir: &Path, ctx: &BuildContext) -> Result<Vec<Plan>, PipelineError> {
    let whole = |message: String| PipelineError { file: dir.display().to_string(), line: 1, column: 1, key_path: String::new(), message };
    let dir = dir.canonicalize().map_err(|e| whole(format!("cannot read the InstructLab pipeline directory: {e}")))?;
    let (source, base) = rooted(&dir);
    let missing: Vec<&str> = FILES.iter().map(|(f, _)| *f).filter(|f| !dir.join(f).is_file()).collect();
    if !missing.is_empty() {
        return Err(whole(format!(
            "an InstructLab pipeline directory holds knowledge.yaml, freeform_skills.yaml and grounded_skills.yaml; this one lacks {}",
            missing.join(", ")
        )));
    }
    FILES.iter().map(|(f, _)| load_file(&source, &join(&base, f).unwrap_or_default(), ctx)).collect()
}

/// A source at the filesystem root and `path` relative to it: InstructLab's `config_path`s climb
/// out of the pipeline directory (`../../configs/…`), which [`load`](super::load) refuses.
fn rooted(path: &Path) -> (crate::pipeline::DirSource, String) {
    let root: PathBuf = path.ancestors().last().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
    let rel = path.strip_prefix(&root).unwrap_or(path);
    let rel: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    (crate::pipeline::DirSource(root), rel.join("/"))
}

/// The directory of a `--pipeline` argument naming an InstructLab pipeline directory
/// (`ilab:DIR`), or `None` for any other argument.
pub fn dir_arg(arg: &str) -> Option<&Path> {
    arg.strip_prefix("ilab:").map(Path::new)
}

/// The leaf kind of an InstructLab pipeline file, from its name.
pub fn kind_of(rel: &str) -> Option<LeafKind> {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    FILES.iter().find(|(f, _)| *f == name).map(|(_, k)| *k)
}

/// Read the InstructLab pipeline file `rel` from `source` and build its plan.
pub fn load_file(source: &dyn Source, rel: &str, ctx: &BuildContext) -> Result<Plan, PipelineError> {
    let (loaded, value) = Loaded::read(source, rel)?;
    let Some(kind) = kind_of(rel) else {
        return Err(loaded.at("", "the leaf kind of an InstructLab pipeline comes from its file name: knowledge.yaml, freeform_skills.yaml or grounded_skills.yaml"));
    };
    if !value.is_object() {
        return Err(loaded.at("", "an InstructLab pipeline file is a mapping with `version: \"1.0\"` and `blocks`"));
    }
    if let Some(v) = value.get("version").filter(|v| !v.is_string()) {
        let hint = if v.is_u64() { "; a labflow pipeline (version 1, `steps:`) runs with --pipeline DIR" } else { "" };
        return Err(loaded.at("/version", format!("an InstructLab pipeline version is a string such as \"1.0\", not {v}{hint}")));
    }
    let file: RawFile = loaded.parse("", value)?;
    let stem = rel.rsplit('/').next().unwrap_or(rel).trim_end_matches(".yaml");
    let set = dir_of(rel).rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or("ilab");
    let mut t = Translator {
        source,
        loaded: &loaded,
        dir: dir_of(rel).to_string(),
        scale: ctx.scale,
        builder: PlanBuilder::new(&loaded, vec![kind], ctx.clone()),
        numeric: numeric_columns(&file),
    };
    t.header(&file)?;
    for (i, block) in file.blocks.iter().enumerate() {
        t.block(i, block)?;
    }
    let description = format!("InstructLab pipeline (version {}), {} block(s)", file.version, file.blocks.len());
    t.builder.finish(format!("{set}/{stem}"), Some(description), None)
}

/// Translates one file's blocks into steps, pushing each as soon as it is known (a block's
/// `drop_columns` depend on the columns its step leaves).
struct Translator<'a> {
    source: &'a dyn Source,
    loaded: &'a Loaded,
    /// The pipeline file's folder inside `source`; `config_path`s are relative to it.
    dir: String,
    scale: u32,
    builder: PlanBuilder<'a>,
    /// Columns some FilterByValueBlock casts to a number: an LLMBlock writing one is
    /// constrained to write a number there.
    numeric: std::collections::BTreeSet<String>,
}

/// The `filter_column`s of the file's FilterByValueBlocks that cast to float or int.
fn numeric_columns(file: &RawFile) -> std::collections::BTreeSet<String> {
    file.blocks
        .iter()
        .filter(|b| b.kind == "FilterByValueBlock")
        .filter(|b| matches!(b.config.get("convert_dtype").and_then(Value::as_str), Some("float" | "int")))
        .filter_map(|b| b.config.get("filter_column").and_then(Value::as_str).map(String::from))
        .collect()
}

/// Which ilab key each labflow key of an operator came from, for pointing errors at the file.
type KeyMap = &'static [(&'static str, &'static str)];

const GENERATE_KEYS: KeyMap = &[
    ("prompt", "config_path"),
    ("prompts", "config_paths"),
    ("output", "output_cols"),
    ("parse", "parser_kwargs"),
    ("n", "gen_kwargs/n"),
    ("sampling", "gen_kwargs"),
    ("set", "batch_kwargs/num_samples"),
];
const FILTER_KEYS: KeyMap = &[
    ("column", "filter_column"),
    ("test", "operation"),
    ("value", "filter_value"),
    ("cast", "convert_dtype"),
    ("default", "default_value"),
];
const COMBINE_KEYS: KeyMap = &[("columns", "columns"), ("into", "output_col"), ("separator", "separator")];
const MAP_KEYS: KeyMap = &[("columns", "columns_map")];
const FLATTEN_KEYS: KeyMap = &[("columns", "var_cols"), ("value", "value_name"), ("key", "var_name")];
const MAJORITY_KEYS: KeyMap = &[("column", "col_name")];
const SELECTOR_KEYS: KeyMap = &[("into", "output_col"), ("template", "choice_map")];

impl<'a> Translator<'a> {
    fn at(&self, pointer: &str, message: impl Into<String>) -> PipelineError {
        self.loaded.at(pointer, message)
    }

    /// Check the version and note what the file holds for others.
    fn header(&mut self, file: &RawFile) -> Result<(), PipelineError> {
        let parts: Vec<Option<u32>> = file.version.split('.').map(|p| p.parse().ok()).collect();
        let (major, minor) = match parts.as_slice() {
            [Some(major), Some(minor)] => (*major, *minor),
            _ => {
                return Err(self.at("/version", format!("version {:?} is not MAJOR.MINOR; InstructLab pipelines say \"1.0\"", file.version)))
            }
        };
        if major > 1 {
            return Err(self.at(
                "/version",
                format!("InstructLab pipeline format {} is from a future major version; this labflow reads 1.x", file.version),
            ));
        }
        if minor > 0 {
            self.builder.note(format!("format version {} is newer than 1.0; every key was still checked", file.version));
        }
        if file.blocks.is_empty() {
            return Err(self.at("/blocks", "`blocks` is empty; a pipeline needs at least one block"));
        }
        if let Some(mix) = &file.datamixing {
            let kinds: Vec<&str> = mix.auxiliary_instructions.keys().map(String::as_str).collect();
            if !kinds.is_empty() {
                self.builder.note(format!(
                    "datamixing.auxiliary_instructions ({}) are for mixing, not generation; this plan does not use them",
                    kinds.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// A step name not taken yet: `base`, else `base (2)`, `base (3)`, …
    fn fresh(&self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 2;
        while self.builder.has(&name) {
            name = format!("{base} ({k})");
            k += 1;
        }
        name
    }

    /// Push `config` as a step of kind `op`: errors about the step point at `at`, errors in its
    /// keys at `cfg` + the ilab key they came from.
    fn push(&mut self, name: &str, op: &str, config: Value, at: &str, cfg: &str, keys: KeyMap) -> Result<(), PipelineError> {
        let config = match config {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let spec = StepSpec { name: name.to_string(), op: op.to_string(), input: None, config };
        let config_at = |pointer: &str| -> String {
            let first = pointer.trim_start_matches('/').split('/').next().unwrap_or("");
            match keys.iter().find(|(k, _)| *k == first) {
                Some((_, "")) | None => cfg.to_string(),
                Some((_, ilab)) => format!("{cfg}/{ilab}"),
            }
        };
        self.builder.push(&spec, at, &config_at)
    }

    fn block(&mut self, i: usize, block: &RawBlock) -> Result<(), PipelineError> {
        let at = format!("/blocks/{i}");
        let cfg = format!("{at}/config");
        let name = self.fresh(&block.name);
        if name != block.name {
            self.builder.note(format!("block {:?} appears more than once; this one is step {name:?}", block.name));
        }
        let config = block.config.clone();
        match block.kind.as_str() {
            "LLMBlock" | "LLMLogProbBlock" | "ConditionalLLMBlock" => {
                let raw: RawLlm = self.loaded.parse(&cfg, config)?;
                if block.kind == "LLMLogProbBlock" {
                    self.builder.note(format!("{name}: LLMLogProbBlock generates text like an LLMBlock (its log-probability code is commented out in the reference)"));
                }
                let step = self.llm(&name, &block.kind, raw, 1, &cfg)?;
                self.push(&name, "generate", step, &at, &cfg, GENERATE_KEYS)?;
            }
            "IterBlock" => {
                let step = self.iter(&name, config, &cfg)?;
                self.push(&name, "generate", step, &at, &cfg, GENERATE_KEYS)?;
            }
            "FilterByValueBlock" => {
                let raw: RawFilter = self.loaded.parse(&cfg, config)?;
                let step = self.filter(&name, raw, &cfg)?;
                self.push(&name, "filter", step, &at, &cfg, FILTER_KEYS)?;
            }
            "CombineColumnsBlock" => {
                let raw: RawCombine = self.loaded.parse(&cfg, config)?;
                let separator = raw.separator.unwrap_or_else(|| "\n\n".to_string());
                self.push(&name, "combine", json!({"columns": raw.columns, "into": raw.output_col, "separator": separator}), &at, &cfg, COMBINE_KEYS)?;
            }
            "DuplicateColumnsBlock" | "RenameColumnsBlock" => {
                let raw: RawColumnsMap = self.loaded.parse(&cfg, config)?;
                let columns: Map<String, Value> = raw.columns_map.0.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
                let op = if block.kind == "DuplicateColumnsBlock" { "duplicate" } else { "rename" };
                self.push(&name, op, json!({ "columns": columns }), &at, &cfg, MAP_KEYS)?;
            }
            "FlattenColumnsBlock" => {
                let raw: RawFlatten = self.loaded.parse(&cfg, config)?;
                self.push(&name, "flatten", json!({"columns": raw.var_cols, "value": raw.value_name, "key": raw.var_name}), &at, &cfg, FLATTEN_KEYS)?;
            }
            "SetToMajorityValueBlock" => {
                let raw: RawMajority = self.loaded.parse(&cfg, config)?;
                self.push(&name, "majority", json!({ "column": raw.col_name }), &at, &cfg, MAJORITY_KEYS)?;
            }
            "SelectorBlock" => {
                let raw: RawSelector = self.loaded.parse(&cfg, config)?;
                let template = self.selector(&raw, &cfg)?;
                self.push(&name, "template", json!({"into": raw.output_col, "template": template}), &at, &cfg, SELECTOR_KEYS)?;
            }
            "LLMMessagesBlock" => {
                return Err(self.at(
                    &format!("{at}/type"),
                    "LLMMessagesBlock is not supported yet: it sends a column of chat messages as they are, and labflow's `generate` renders a prompt file",
                ))
            }
            "SamplePopulatorBlock" => {
                return Err(self.at(
                    &format!("{at}/type"),
                    "SamplePopulatorBlock is not supported yet: it merges every key of a YAML file chosen by a column into each row; add those columns to the seeds or use `template` steps",
                ))
            }
            other => {
                return Err(self.at(
                    &format!("{at}/type"),
                    format!(
                        "unknown block type {other:?}; known: LLMBlock, ConditionalLLMBlock, LLMLogProbBlock, IterBlock, FilterByValueBlock, \
                         CombineColumnsBlock, DuplicateColumnsBlock, RenameColumnsBlock, FlattenColumnsBlock, SetToMajorityValueBlock, SelectorBlock \
                         (LLMMessagesBlock and SamplePopulatorBlock are not supported yet)"
                    ),
                ))
            }
        }
        self.drops(&name, block, &at)
    }

    /// A block's `drop_columns`, then its `drop_duplicates`, in the reference's order.
    fn drops(&mut self, name: &str, block: &RawBlock, at: &str) -> Result<(), PipelineError> {
        if !block.drop_columns.is_empty() {
            let schema = self.builder.schema();
            let (present, absent): (Vec<&String>, Vec<&String>) =
                block.drop_columns.iter().partition(|c| schema.field_with_name(c).is_ok());
            if !absent.is_empty() {
                let absent: Vec<&str> = absent.iter().map(|s| s.as_str()).collect();
                // The reference drops only the columns the dataset has (`__index_level_0__` is a
                // pandas index column that labflow never makes).
                self.builder
                    .note(format!("{name}: drop_columns {} are not columns here; skipped, as the reference does", absent.join(", ")));
            }
            if !present.is_empty() {
                let step = self.fresh(&format!("{name}.drop_columns"));
                let here = format!("{at}/drop_columns");
                self.push(&step, "drop", json!({ "columns": present }), &here, &here, &[])?;
            }
        }
        if !block.drop_duplicates.is_empty() {
            let step = self.fresh(&format!("{name}.drop_duplicates"));
            // pandas `drop_duplicates(subset=…)`: exact values, first row kept.
            let here = format!("{at}/drop_duplicates");
            self.push(&step, "dedup", json!({"columns": block.drop_duplicates, "normalize": false}), &here, &here, &[])?;
        }
        Ok(())
    }

    /// A prompt file named by `path` (relative to the pipeline file, or absolute), inlined.
    fn prompt(&self, path: &str, pointer: &str) -> Result<Value, PipelineError> {
        match path.strip_prefix('/') {
            Some(abs) => load_prompt(self.source, "", abs, self.loaded, pointer),
            None => load_prompt(self.source, &self.dir, path, self.loaded, pointer),
        }
    }

    /// The `generate` keys of an LLM block; `iters` multiplies `n` (IterBlock).
    fn llm(&mut self, name: &str, kind: &str, raw: RawLlm, iters: u32, cfg: &str) -> Result<Value, PipelineError> {
        let mut step = Map::new();
        // The prompt(s), and the file whose tags parse every completion (the reference parses
        // with its first config's tags, whichever prompt rendered the row).
        let (tags_file, tags_at) = if kind == "ConditionalLLMBlock" {
            if raw.config_path.is_some() {
                return Err(self.at(
                    &format!("{cfg}/config_path"),
                    "ConditionalLLMBlock takes `config_paths` (a list of [file, value]), not `config_path`",
                ));
            }
            let Some(selector) = raw.selector_column_name.clone() else {
                return Err(self.at(cfg, "ConditionalLLMBlock needs `selector_column_name`, the column whose value picks the prompt"));
            };
            let paths = raw.config_paths.clone().unwrap_or_default();
            if paths.is_empty() {
                return Err(self.at(&format!("{cfg}/config_paths"), "`config_paths` needs at least one [file, value] entry"));
            }
            for (j, p) in paths.iter().enumerate() {
                if p.len() != 2 {
                    return Err(
                        self.at(&format!("{cfg}/config_paths/{j}"), "each entry of `config_paths` is [prompt file, selector value]")
                    );
                }
            }
            let first = self.prompt(&paths[0][0], &format!("{cfg}/config_paths/0/0"))?;
            if paths.len() == 1 && paths[0][1] == "All" {
                // The reference's special case: one prompt for every row, the selector unused.
                step.insert("prompt".into(), first.clone());
            } else {
                let mut choices = Map::new();
                for (j, p) in paths.iter().enumerate() {
                    let prompt = self.prompt(&p[0], &format!("{cfg}/config_paths/{j}/0"))?;
                    if choices.insert(p[1].clone(), prompt).is_some() {
                        self.builder
                            .note(format!("{name}: config_paths names value {:?} twice; the last prompt wins, as in the reference", p[1]));
                    }
                }
                step.insert("prompts".into(), json!({"column": selector, "choices": choices}));
            }
            (first, format!("{cfg}/config_paths/0/0"))
        } else {
            for (key, value) in [("config_paths", raw.config_paths.is_some()), ("selector_column_name", raw.selector_column_name.is_some())]
            {
                if value {
                    return Err(
                        self.at(&format!("{cfg}/{key}"), format!("`{key}` belongs to ConditionalLLMBlock; {kind} takes one `config_path`"))
                    );
                }
            }
            let Some(path) = &raw.config_path else {
                return Err(self.at(cfg, format!("{kind} needs `config_path`, the prompt file")));
            };
            let prompt = self.prompt(path, &format!("{cfg}/config_path"))?;
            step.insert("prompt".into(), prompt.clone());
            (prompt, format!("{cfg}/config_path"))
        };
        step.insert("system_in_user".into(), Value::Bool(true));
        step.insert("output".into(), json!(raw.output_cols));
        let numeric: Vec<&String> = raw.output_cols.iter().filter(|c| self.numeric.contains(*c)).collect();
        if !numeric.is_empty() {
            // A judge: one verdict per row. (The reference zips every tag occurrence into rows,
            // so a judge that repeats itself multiplies the row; constrained, it cannot.)
            self.builder.note(format!(
                "{name}: {} read as a number by a later filter: the teacher is constrained to one item with a number there",
                numeric.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
            ));
            step.insert("numeric".into(), json!(numeric));
            step.insert("max_items".into(), json!(1));
        }
        step.insert("parse".into(), self.parse(name, &raw, &tags_file, &tags_at, cfg)?);
        self.gen(name, &raw.gen_kwargs, iters, cfg, &mut step)?;
        if let Some(n) = raw.batch_kwargs.num_samples {
            let n = whole(n)
                .ok_or_else(|| self.at(&format!("{cfg}/batch_kwargs/num_samples"), format!("num_samples {n} is not a whole number")))?;
            if self.builder.schema().field_with_name("num_samples").is_ok() {
                self.builder.note(format!("{name}: the rows already have num_samples; kept, as the reference does"));
            } else {
                step.insert("set".into(), json!({ "num_samples": n }));
            }
        }
        if raw.batch_kwargs.batched.is_some() {
            self.builder.note(format!("{name}: batch_kwargs.batched is ignored (labflow batches requests itself)"));
        }
        for (key, set) in [("model_id", raw.model_id.is_some()), ("model_family", raw.model_family.is_some())] {
            if set {
                self.builder.note(format!("{name}: {key} is ignored; the run's teacher answers every step"));
            }
        }
        if raw.model_prompt.is_some() {
            self.builder.note(format!(
                "{name}: model_prompt is ignored; the prompt goes as one chat user message and the teacher applies its own chat template"
            ));
        }
        Ok(Value::Object(step))
    }

    /// `parse`: the custom regex, or the prompt file's tags (one pair per output column).
    fn parse(&mut self, name: &str, raw: &RawLlm, prompt: &Value, prompt_at: &str, cfg: &str) -> Result<Value, PipelineError> {
        let p = &raw.parser_kwargs;
        let at = format!("{cfg}/parser_kwargs");
        if p.parser_name.as_deref() == Some("custom") {
            let Some(pattern) = &p.parsing_pattern else {
                return Err(self.at(&format!("{at}/parser_name"), "parser_name `custom` needs `parsing_pattern`, a regular expression"));
            };
            let mut cleanup = p.parser_cleanup_tags.clone().unwrap_or_default();
            if raw.output_cols.len() == 1 && !cleanup.is_empty() {
                // The reference removes cleanup tags only when each match is a tuple of groups.
                self.builder.note(format!("{name}: parser_cleanup_tags are not applied with one output column, as in the reference"));
                cleanup.clear();
            }
            return Ok(json!({"regex": {"pattern": pattern, "cleanup": cleanup}}));
        }
        if let Some(other) = &p.parser_name {
            self.builder
                .note(format!("{name}: parser_name {other:?} is not `custom`, so completions are parsed by tags, as in the reference"));
        }
        if p.parsing_pattern.is_some() || p.parser_cleanup_tags.is_some() {
            self.builder.note(format!(
                "{name}: parsing_pattern and parser_cleanup_tags apply only with parser_name `custom`; ignored, as in the reference"
            ));
        }
        let tags = |key: &str| -> Vec<String> {
            prompt
                .get(key)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                .unwrap_or_default()
        };
        let (starts, ends) = (tags("start_tags"), tags("end_tags"));
        let pairs: Vec<(String, String)> = starts.into_iter().zip(ends).collect();
        let cols = raw.output_cols.len();
        if pairs.len() < cols {
            return Err(self.at(
                prompt_at,
                format!(
                    "the prompt file has {} start/end tag pair(s) for {cols} output column(s) ({}); give one pair per column, or a custom parser",
                    pairs.len(),
                    raw.output_cols.join(", ")
                ),
            ));
        }
        if pairs.len() > cols {
            self.builder.note(format!(
                "{name}: the prompt file has {} tag pairs for {cols} output column(s); the first {cols} are used, as in the reference",
                pairs.len()
            ));
        }
        Ok(json!({ "tags": pairs.into_iter().take(cols).map(|(s, e)| vec![s, e]).collect::<Vec<_>>() }))
    }

    /// `n` and `sampling` from `gen_kwargs`, over the reference's defaults.
    fn gen(&mut self, name: &str, g: &RawGen, iters: u32, cfg: &str, step: &mut Map<String, Value>) -> Result<(), PipelineError> {
        let at = format!("{cfg}/gen_kwargs");
        if g.extra_body.is_some() {
            return Err(self.at(&format!("{at}/extra_body"), "gen_kwargs.extra_body (server-specific request fields) is not supported"));
        }
        let mut sampling = Map::new();
        sampling.insert("temperature".into(), json!(g.temperature.unwrap_or(0.0)));
        let max_tokens = match g.max_tokens {
            None => DEFAULT_MAX_TOKENS,
            Some(m) => whole(m)
                .filter(|&m| m > 0)
                .ok_or_else(|| self.at(&format!("{at}/max_tokens"), format!("max_tokens {m} is not a positive whole number")))?,
        };
        sampling.insert("max_tokens".into(), json!(max_tokens));
        if let Some(p) = g.top_p {
            sampling.insert("top_p".into(), json!(p));
        }
        match &g.stop {
            None => {}
            Some(Value::String(s)) => {
                sampling.insert("stop".into(), json!([s]));
            }
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
                sampling.insert("stop".into(), Value::Array(items.clone()));
            }
            Some(_) => return Err(self.at(&format!("{at}/stop"), "stop is a string or a list of strings")),
        }
        step.insert("sampling".into(), Value::Object(sampling));
        let n = match &g.n {
            None => json!(iters),
            Some(Value::String(s)) if s == "scaled" && iters == 1 => json!("scaled"),
            Some(Value::String(s)) if s == "scaled" => json!(self.scale.saturating_mul(iters)),
            Some(Value::Number(v)) => match v.as_f64().and_then(whole).filter(|&n| n > 0) {
                Some(n) => json!(n.saturating_mul(iters)),
                None => return Err(self.at(&format!("{at}/n"), format!("n {v} is not a positive whole number"))),
            },
            Some(other) => return Err(self.at(&format!("{at}/n"), format!("n is a number or \"scaled\", not {other}"))),
        };
        step.insert("n".into(), n);
        if g.seed.is_some() {
            self.builder.note(format!(
                "{name}: gen_kwargs.seed is ignored; each row's request is seeded from the run's --seed, the step and the row"
            ));
        }
        if g.model.is_some() {
            self.builder.note(format!("{name}: gen_kwargs.model is ignored; the run's teacher answers every step"));
        }
        Ok(())
    }

    /// IterBlock: the inner LLM block once, asking for `n × num_iters` completions per row —
    /// the same rows as the reference's `num_iters` passes over the same input (each pass sends
    /// every row again and concatenates), in lineage order instead of pass order.
    fn iter(&mut self, name: &str, config: Value, cfg: &str) -> Result<Value, PipelineError> {
        let Value::Object(mut rest) = config else {
            return Err(self.at(cfg, "IterBlock's config is a mapping with `num_iters`, `block_type` and the inner block's keys"));
        };
        let iters = match rest.remove("num_iters") {
            None => return Err(self.at(cfg, "IterBlock needs `num_iters`")),
            Some(v) => v
                .as_f64()
                .and_then(whole)
                .filter(|&n| n > 0)
                .ok_or_else(|| self.at(&format!("{cfg}/num_iters"), format!("num_iters {v} is not a positive whole number")))?,
        };
        let kind = match rest.remove("block_type") {
            None => return Err(self.at(cfg, "IterBlock needs `block_type`, the block to repeat")),
            Some(Value::String(k)) => k,
            Some(v) => return Err(self.at(&format!("{cfg}/block_type"), format!("block_type is a block type name, not {v}"))),
        };
        if !matches!(kind.as_str(), "LLMBlock" | "LLMLogProbBlock" | "ConditionalLLMBlock") {
            return Err(self.at(
                &format!("{cfg}/block_type"),
                format!("IterBlock over {kind} is not supported; labflow repeats LLM blocks only (as n × num_iters completions)"),
            ));
        }
        // The inner block's keys sit beside num_iters and block_type, so errors keep their place.
        let raw: RawLlm = self.loaded.parse(cfg, Value::Object(rest))?;
        self.llm(name, &kind, raw, iters, cfg)
    }

    /// FilterByValueBlock → `filter`.
    fn filter(&mut self, name: &str, raw: RawFilter, cfg: &str) -> Result<Value, PipelineError> {
        let test = match raw.operation.trim_start_matches("__").trim_end_matches("__") {
            op @ ("eq" | "ne" | "gt" | "ge" | "lt" | "le" | "contains") => op,
            other => {
                return Err(self.at(
                    &format!("{cfg}/operation"),
                    format!("operation {other:?} is not supported; use eq, ne, gt, ge, lt, le or contains (the reference's Python `operator` names)"),
                ))
            }
        };
        let mut step = json!({"column": raw.filter_column, "test": test, "value": raw.filter_value});
        let Some(dtype) = raw.convert_dtype.as_deref() else {
            if raw.default_value.is_some() {
                self.builder.note(format!("{name}: default_value has no effect without convert_dtype; ignored, as in the reference"));
            }
            return Ok(step);
        };
        let zero = match dtype {
            "float" => json!(0.0),
            "int" => json!(0),
            "bool" => {
                return Err(self.at(
                    &format!("{cfg}/convert_dtype"),
                    "convert_dtype `bool` is not supported: Python's bool() makes every non-empty text true, including \"False\"",
                ))
            }
            other => return Err(self.at(&format!("{cfg}/convert_dtype"), format!("unknown convert_dtype {other:?}; use float or int"))),
        };
        if test == "contains" {
            return Err(
                self.at(&format!("{cfg}/operation"), format!("`contains` needs text; convert_dtype `{dtype}` makes the column a number"))
            );
        }
        // A value that does not convert becomes `default_value` (0 / 0.0 unless given) and is
        // then tested like any other: that is the reference's rule.
        let default = match &raw.default_value {
            None => zero,
            Some(v) => {
                let text = match v {
                    Value::String(s) => s.trim().to_string(),
                    Value::Number(n) => n.to_string(),
                    other => other.to_string(),
                };
                let read =
                    if dtype == "int" { text.parse::<i64>().map(|i| json!(i)).ok() } else { text.parse::<f64>().ok().map(|f| json!(f)) };
                read.ok_or_else(|| self.at(&format!("{cfg}/default_value"), format!("default_value {v} cannot be read as {dtype}")))?
            }
        };
        step["cast"] = json!(dtype);
        // When the default fails the test the row is dropped either way; without `default` the
        // reject reason says the value did not convert, which is the useful thing to know.
        if passes(test, default.as_f64().unwrap_or(0.0), &raw.filter_value) {
            step["default"] = default;
        }
        Ok(step)
    }

    /// SelectorBlock (`output_col = row[choice_map[row[choice_col]]]`) as a template: a map
    /// literal of the chosen columns, indexed by the choice column's value. A value with no
    /// entry is undefined, which the strict template rejects.
    fn selector(&self, raw: &RawSelector, cfg: &str) -> Result<String, PipelineError> {
        if raw.choice_map.0.is_empty() {
            return Err(self.at(&format!("{cfg}/choice_map"), "`choice_map` is empty; map each value of the choice column to a column"));
        }
        let mut entries = Vec::new();
        for (value, column) in &raw.choice_map.0 {
            if !is_identifier(column) {
                return Err(self.at(
                    &format!("{cfg}/choice_map"),
                    format!("column {column:?} is not a plain name (letters, digits, _), which the selector needs"),
                ));
            }
            entries.push(format!("{}: {column}", serde_json::to_string(value).unwrap_or_default()));
        }
        if !is_identifier(&raw.choice_col) {
            return Err(self.at(
                &format!("{cfg}/choice_col"),
                format!("column {:?} is not a plain name (letters, digits, _), which the selector needs", raw.choice_col),
            ));
        }
        Ok(format!("{{{{ {{{}}}[{} | string] }}}}", entries.join(", "), raw.choice_col))
    }
}

/// `x` as a u32 when it is a whole number in range.
fn whole(x: f64) -> Option<u32> {
    (x.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&x)).then_some(x as u32)
}

/// Whether `x` passes `test` against any of `values` (numbers, or text that reads as one).
fn passes(test: &str, x: f64, values: &Value) -> bool {
    let one = |v: &Value| -> Option<f64> {
        match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    };
    let list: Vec<f64> = match values {
        Value::Array(items) => items.iter().filter_map(one).collect(),
        v => one(v).into_iter().collect(),
    };
    list.iter().any(|&v| match test {
        "eq" => x == v,
        "ne" => x != v,
        "gt" => x > v,
        "ge" => x >= v,
        "lt" => x < v,
        "le" => x <= v,
        _ => false,
    })
}

/// A name a template can use as a variable.
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !matches!(s, "true" | "false" | "none" | "True" | "False" | "None" | "loop" | "self")
}

#[cfg(test)]
mod tests;
