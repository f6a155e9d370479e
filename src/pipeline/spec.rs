//! The pipeline file as written: a serde mirror of the YAML, before anything is checked.
//!
//! ```yaml
//! version: 1                      # the pipeline format version
//! name: freeform_skills
//! description: Questions, judged; answers, judged.
//! leaf_kinds: [freeform_skill]    # knowledge, freeform_skill, grounded_skill
//! sampling: {temperature: 0.7, max_tokens: 1024}   # defaults for every teacher step
//! steps:
//!   - name: questions             # unique
//!     op: generate                # the operator kind
//!     input: seeds                # optional: the previous step (the first reads the seeds)
//!     prompt: prompts/skills/freeform_questions.yaml   # …and the operator's own keys
//! output: answers_kept            # optional: the step whose rows are the dataset (default: last)
//! ```

use crate::operators::generate::SamplingConfig;
use serde::Deserialize;

/// The pipeline format versions this build reads.
pub const FORMAT_VERSIONS: &[u32] = &[1];

/// A pipeline file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    /// Format version (see [`FORMAT_VERSIONS`]).
    pub version: u32,
    /// The pipeline's name, shown in plans and summaries.
    pub name: String,
    /// What it does, for `explain`.
    #[serde(default)]
    pub description: Option<String>,
    /// The leaf kinds it applies to.
    pub leaf_kinds: Vec<String>,
    /// Sampling defaults for every teacher step.
    #[serde(default)]
    pub sampling: SamplingConfig,
    /// The steps, in order.
    pub steps: Vec<StepSpec>,
    /// The step whose rows are the dataset; default the last.
    #[serde(default)]
    pub output: Option<String>,
}

/// One step as written: the common keys, and the operator's own keys left as JSON for the
/// operator's `Config` to read (with `deny_unknown_fields`).
#[derive(Debug, Clone, Deserialize)]
pub struct StepSpec {
    /// Unique step name.
    pub name: String,
    /// Operator kind: `generate`, `critique`, `filter`, …
    pub op: String,
    /// The step this one reads; `seeds` for the leaf's seed rows. Default: the previous step.
    #[serde(default)]
    pub input: Option<String>,
    /// Everything else.
    #[serde(flatten)]
    pub config: serde_json::Map<String, serde_json::Value>,
}
