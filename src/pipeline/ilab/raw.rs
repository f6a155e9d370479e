//! The InstructLab pipeline file as written: a serde mirror of the reference's format
//! (`pipelines/schema/v1.json` and the block constructors' keyword arguments), every mapping
//! `deny_unknown_fields`, so a key the reference would not accept is an error with its path.
//! [`super`] resolves these into labflow steps.

use crate::operators::config::ColumnMap;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The pipeline file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) version: String,
    pub(super) blocks: Vec<RawBlock>,
    #[serde(default)]
    pub(super) datamixing: Option<RawDatamixing>,
}

/// `datamixing:`, which the reference's mixer reads, not its pipeline.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatamixing {
    #[serde(default)]
    pub(super) auxiliary_instructions: Map<String, Value>,
}

/// One block as written; `config` is read per block type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBlock {
    pub(super) name: String,
    #[serde(rename = "type")]
    pub(super) kind: String,
    pub(super) config: Value,
    #[serde(default)]
    pub(super) drop_columns: Vec<String>,
    #[serde(default)]
    pub(super) drop_duplicates: Vec<String>,
}

/// The keys of LLMBlock, ConditionalLLMBlock and LLMLogProbBlock (which share a constructor in
/// the reference); which of `config_path` / `config_paths` is required depends on the type.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLlm {
    #[serde(default)]
    pub(super) config_path: Option<String>,
    #[serde(default)]
    pub(super) config_paths: Option<Vec<Vec<String>>>,
    #[serde(default)]
    pub(super) selector_column_name: Option<String>,
    pub(super) output_cols: Vec<String>,
    #[serde(default)]
    pub(super) model_id: Option<String>,
    #[serde(default)]
    pub(super) model_family: Option<String>,
    #[serde(default)]
    pub(super) model_prompt: Option<String>,
    #[serde(default)]
    pub(super) gen_kwargs: RawGen,
    #[serde(default)]
    pub(super) parser_kwargs: RawParser,
    #[serde(default)]
    pub(super) batch_kwargs: RawBatch,
}

/// `gen_kwargs`: what the reference passes to the OpenAI client, over its defaults
/// (temperature 0, max_tokens 4096, n 1).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGen {
    #[serde(default)]
    pub(super) model: Option<String>,
    #[serde(default)]
    pub(super) max_tokens: Option<f64>,
    #[serde(default)]
    pub(super) temperature: Option<f64>,
    #[serde(default)]
    pub(super) top_p: Option<f64>,
    #[serde(default)]
    pub(super) n: Option<Value>,
    #[serde(default)]
    pub(super) seed: Option<Value>,
    #[serde(default)]
    pub(super) stop: Option<Value>,
    #[serde(default)]
    pub(super) extra_body: Option<Value>,
}

/// `parser_kwargs`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawParser {
    #[serde(default)]
    pub(super) parser_name: Option<String>,
    #[serde(default)]
    pub(super) parsing_pattern: Option<String>,
    #[serde(default)]
    pub(super) parser_cleanup_tags: Option<Vec<String>>,
}

/// `batch_kwargs`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBatch {
    #[serde(default)]
    pub(super) num_samples: Option<f64>,
    #[serde(default)]
    pub(super) batched: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFilter {
    pub(super) filter_column: String,
    pub(super) filter_value: Value,
    pub(super) operation: String,
    #[serde(default)]
    pub(super) convert_dtype: Option<String>,
    #[serde(default)]
    pub(super) default_value: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCombine {
    pub(super) columns: Vec<String>,
    pub(super) output_col: String,
    #[serde(default)]
    pub(super) separator: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawColumnsMap {
    pub(super) columns_map: ColumnMap,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFlatten {
    pub(super) var_cols: Vec<String>,
    pub(super) value_name: String,
    pub(super) var_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMajority {
    pub(super) col_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSelector {
    pub(super) choice_map: ColumnMap,
    pub(super) choice_col: String,
    pub(super) output_col: String,
}
