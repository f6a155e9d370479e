//! The default pipelines and their prompt files, compiled into the binary, so that `cargo
//! install labflow` runs the `full` and `simple` sets with no data files beside it.
//!
//! [`FILES`] holds every file under the source tree's `pipelines/` folder (documentation and the
//! training recipes of `pipelines/train/`, which name model and data files on disk, aside)
//! by its path relative to that folder; [`Builtin`] serves them to [`load`](super::load) as a
//! [`Source`], so prompt paths resolve exactly as they do on disk (relative to the pipeline
//! file). A test keeps the table equal to the folder, so a new file cannot be forgotten.

use crate::pipeline::load::Source;

/// Embeds `pipelines/<path>` for each path, as `(path, text)`.
macro_rules! files {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/", $path)))),*]
    };
}

/// Every built-in file: its path under `pipelines/` (`/`-separated) and its text.
pub static FILES: &[(&str, &str)] = files![
    "full/freeform_skills.yaml",
    "full/grounded_skills.yaml",
    "full/knowledge.yaml",
    "simple/freeform_skills.yaml",
    "simple/grounded_skills.yaml",
    "simple/knowledge.yaml",
    "mix/lab.yaml",
    "prompts/knowledge/faithfulness_judge.yaml",
    "prompts/knowledge/qa.yaml",
    "prompts/knowledge/question_judge.yaml",
    "prompts/knowledge/relevancy_judge.yaml",
    "prompts/knowledge/simple_qa.yaml",
    "prompts/knowledge/summary.yaml",
    "prompts/skills/freeform_pair_judge.yaml",
    "prompts/skills/freeform_question_judge.yaml",
    "prompts/skills/freeform_questions.yaml",
    "prompts/skills/freeform_response.yaml",
    "prompts/skills/grounded_contexts.yaml",
    "prompts/skills/grounded_pair_judge.yaml",
    "prompts/skills/grounded_question_judge.yaml",
    "prompts/skills/grounded_questions.yaml",
    "prompts/skills/grounded_response.yaml",
    "prompts/skills/simple_freeform.yaml",
    "prompts/skills/simple_grounded.yaml",
];

/// The built-in pipeline sets, each a folder of pipeline files (one per leaf kind).
pub const SETS: &[&str] = &["full", "simple"];

/// The text of built-in file `rel` (a path under `pipelines/`).
pub fn file(rel: &str) -> Option<&'static str> {
    FILES.iter().find(|(p, _)| *p == rel).map(|(_, t)| *t)
}

/// The pipeline files of set `name` (`full`, `simple`), as paths for [`Builtin`], in table
/// order; `None` for a name that is not a set.
pub fn set(name: &str) -> Option<Vec<&'static str>> {
    if !SETS.contains(&name) {
        return None;
    }
    let files = FILES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| p.strip_prefix(name).and_then(|rest| rest.strip_prefix('/')).is_some_and(|f| !f.contains('/') && f.ends_with(".yaml")))
        .collect();
    Some(files)
}

/// The built-in files as a [`Source`]: `load(&Builtin, "full/knowledge.yaml", &ctx)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Builtin;

impl Source for Builtin {
    fn read(&self, rel: &str) -> Result<String, String> {
        file(rel).map(str::to_string).ok_or_else(|| {
            let sets = SETS.iter().flat_map(|s| set(s).unwrap_or_default()).collect::<Vec<_>>().join(", ");
            format!("no built-in file {rel}; the built-in pipelines are {sets}")
        })
    }

    /// `builtin:full/knowledge.yaml`: the file is `pipelines/full/knowledge.yaml` in labflow's
    /// source.
    fn display(&self, rel: &str) -> String {
        format!("builtin:{rel}")
    }
}

#[cfg(test)]
mod tests;
