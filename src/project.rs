//! The project file (`lab.yaml`): one declarative description of a whole LAB run — the
//! taxonomy and its documents, the teacher, the pipelines, the mix recipe, the training recipe
//! and the output — that `labflow run` carries out end to end and `labflow status` reports on.
//!
//! ```yaml
//! version: 1
//! name: quickstart
//! taxonomy: taxonomy            # a folder or URL; relative paths start at this file's folder
//! docs: docs                    # where knowledge documents resolve (optional)
//! teacher: ../../models/SmolLM2-135M-Instruct.Q4_1.gguf
//! generate: {pipeline: full, scale: 1, max_tokens: 128}
//! mix: {recipe: lab}
//! train: {recipe: train.yaml}
//! output: out                   # a folder or URL: the run, OUT/mix, OUT/train
//! ```
//!
//! The output holds the generation run itself (datasets, rejects, response cache, manifest),
//! the mixes under `mix/` and the trainer's checkpoints and state under `train/`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::pipeline::load::Loaded;
use crate::pipeline::{DirSource, PipelineError};

/// The project format this labflow reads.
pub const PROJECT_VERSION: u32 = 1;

/// A project, its paths resolved against the file's folder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Project {
    /// Format version ([`PROJECT_VERSION`]).
    pub version: u32,
    /// A name for reports.
    pub name: String,
    /// The taxonomy root: a folder or a file://, s3://, gs://, az:// URL.
    pub taxonomy: String,
    /// Where knowledge documents resolve (a folder laid out OWNER/REPO/COMMIT/…, or a URL).
    #[serde(default)]
    pub docs: Option<String>,
    /// Only these leaves (ids as `labflow leaves` prints them); default every leaf.
    #[serde(default)]
    pub leaves: Vec<String>,
    /// The teacher, as `labflow generate --teacher` takes it: a GGUF file or Hugging Face folder
    /// (embedded), `http://HOST:PORT/v1#MODEL`, or `test`.
    pub teacher: String,
    /// Generation settings.
    #[serde(default)]
    pub generate: GenerateSection,
    /// Mixing settings.
    #[serde(default)]
    pub mix: MixSection,
    /// Training settings.
    pub train: TrainSection,
    /// Where everything is written: a folder or an object-store URL.
    pub output: String,
}

/// `generate:` — the `labflow generate` options.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateSection {
    /// A built-in pipeline set (`full`, `simple`), a pipeline file, a folder, or `ilab:DIR`.
    pub pipeline: String,
    /// Samples per seed where a step says `n: scaled`.
    pub scale: u32,
    /// Base seed of every teacher call.
    pub seed: u64,
    /// Cap on every step's `max_tokens`.
    pub max_tokens: Option<u32>,
    /// Most tokens per document chunk.
    pub chunk_tokens: usize,
    /// Most rows' teacher calls outstanding at once.
    pub max_in_flight: usize,
    /// Timely worker threads.
    pub workers: usize,
}

impl Default for GenerateSection {
    fn default() -> Self {
        GenerateSection { pipeline: "full".into(), scale: 2, seed: 42, max_tokens: None, chunk_tokens: 500, max_in_flight: 16, workers: 1 }
    }
}

/// `mix:` — the `labflow mix` options.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MixSection {
    /// `lab` (built in) or a recipe file.
    pub recipe: String,
    /// Measure lengths in this model's tokens instead of words.
    pub tokenizer: Option<String>,
}

impl Default for MixSection {
    fn default() -> Self {
        MixSection { recipe: "lab".into(), tokenizer: None }
    }
}

/// `train:` — the `labflow train` options.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    /// The training recipe file; its bare data file names are read from the mix folder.
    pub recipe: String,
    /// At most this many optimizer steps per phase.
    #[serde(default)]
    pub max_steps: Option<u64>,
    /// Compute threads (default: every core).
    #[serde(default)]
    pub threads: Option<usize>,
}

impl Project {
    /// The mix folder.
    pub fn mix_output(&self) -> String {
        format!("{}/mix", self.output.trim_end_matches('/'))
    }

    /// The trainer's folder.
    pub fn train_output(&self) -> String {
        format!("{}/train", self.output.trim_end_matches('/'))
    }
}

/// Reads the project file at `path`, checking it and resolving its relative paths against the
/// file's folder.
pub fn load(path: &Path) -> Result<Project, PipelineError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    // Absolute, so that paths joined later (the mix folder inside the output, read from the
    // training recipe's folder) do not start from two places.
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let (loaded, value) = Loaded::read(&DirSource(dir.clone()), name)?;
    if !value.is_object() {
        return Err(loaded.at("", "a project file is a mapping with `version`, `name`, `taxonomy`, `teacher`, `train` and `output`"));
    }
    match value.get("version") {
        Some(v) if v.as_u64() == Some(u64::from(PROJECT_VERSION)) => {}
        Some(v) => return Err(loaded.at("/version", format!("unsupported project version {v}; this labflow reads version {PROJECT_VERSION}"))),
        None => return Err(loaded.at("", format!("missing `version: {PROJECT_VERSION}`"))),
    }
    let mut p: Project = loaded.parse("", value)?;
    check(&p, &loaded)?;
    let local = |spec: &str| !spec.contains("://");
    let join = |spec: &str| if local(spec) && Path::new(spec).is_relative() { dir.join(spec).display().to_string() } else { spec.to_string() };
    // A path that names something that exists next to the file; otherwise a name (`full`,
    // `lab`, `test`, an HTTP teacher) passed on as it is.
    let join_existing = |spec: &str| {
        let joined = join(spec);
        if Path::new(&joined).exists() { joined } else { spec.to_string() }
    };
    p.taxonomy = join(&p.taxonomy);
    p.docs = p.docs.as_deref().map(join);
    p.output = join(&p.output);
    p.teacher = join_existing(&p.teacher);
    p.generate.pipeline = match p.generate.pipeline.strip_prefix("ilab:") {
        Some(d) => format!("ilab:{}", join(d)),
        None => join_existing(&p.generate.pipeline),
    };
    p.mix.recipe = join_existing(&p.mix.recipe);
    p.mix.tokenizer = p.mix.tokenizer.as_deref().map(join);
    p.train.recipe = join(&p.train.recipe);
    Ok(p)
}

fn check(p: &Project, loaded: &Loaded) -> Result<(), PipelineError> {
    if p.name.is_empty() || !p.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(loaded.at("/name", format!("name {:?} must be letters, digits, `-`, `_` or `.`", p.name)));
    }
    for (key, v) in [("taxonomy", &p.taxonomy), ("teacher", &p.teacher), ("output", &p.output), ("train/recipe", &p.train.recipe)] {
        if v.trim().is_empty() {
            return Err(loaded.at(&format!("/{key}"), format!("`{}` must not be empty", key.replace('/', "."))));
        }
    }
    let g = &p.generate;
    if g.scale == 0 {
        return Err(loaded.at("/generate/scale", "scale must be at least 1"));
    }
    if g.chunk_tokens < 16 {
        return Err(loaded.at("/generate/chunk_tokens", "chunk_tokens must be at least 16"));
    }
    if g.max_in_flight == 0 || g.workers == 0 {
        let key = if g.workers == 0 { "workers" } else { "max_in_flight" };
        return Err(loaded.at(&format!("/generate/{key}"), format!("{key} must be at least 1")));
    }
    if p.generate.max_tokens == Some(0) {
        return Err(loaded.at("/generate/max_tokens", "max_tokens must be at least 1"));
    }
    if p.train.max_steps == Some(0) || p.train.threads == Some(0) {
        let key = if p.train.threads == Some(0) { "threads" } else { "max_steps" };
        return Err(loaded.at(&format!("/train/{key}"), format!("{key} must be at least 1")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> Result<Project, PipelineError> {
        std::fs::write(dir.join("lab.yaml"), text).unwrap();
        load(&dir.join("lab.yaml"))
    }

    const GOOD: &str = "version: 1\nname: q\ntaxonomy: taxonomy\nteacher: test\ntrain:\n  recipe: train.yaml\noutput: out\n";

    #[test]
    fn relative_paths_start_at_the_file_and_names_pass_through() {
        let tmp = tempfile::tempdir().unwrap();
        let p = write(tmp.path(), GOOD).unwrap();
        let d = std::path::absolute(tmp.path()).unwrap();
        let d = d.display();
        assert_eq!(p.taxonomy, format!("{d}/taxonomy"));
        assert_eq!(p.output, format!("{d}/out"));
        assert_eq!(p.train.recipe, format!("{d}/train.yaml"));
        assert_eq!(p.teacher, "test", "a name that is not a file next to lab.yaml stays a name");
        assert_eq!((p.generate.pipeline.as_str(), p.mix.recipe.as_str()), ("full", "lab"));
        assert_eq!(p.mix_output(), format!("{d}/out/mix"));
        std::fs::write(tmp.path().join("teacher.gguf"), b"").unwrap();
        let p = write(tmp.path(), &GOOD.replace("teacher: test", "teacher: teacher.gguf")).unwrap();
        assert_eq!(p.teacher, format!("{d}/teacher.gguf"));
        let p = write(tmp.path(), &GOOD.replace("output: out", "output: s3://bucket/lab")).unwrap();
        assert_eq!(p.output, "s3://bucket/lab");
        assert_eq!(p.train_output(), "s3://bucket/lab/train");
    }

    #[test]
    fn a_relative_project_path_gives_absolute_paths() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("lab.yaml"), GOOD).unwrap();
        let cwd = std::env::current_dir().unwrap();
        let rel = pathdiff(tmp.path(), &cwd);
        let p = load(&rel.join("lab.yaml")).unwrap();
        assert!(Path::new(&p.output).is_absolute() && Path::new(&p.train.recipe).is_absolute(), "{p:?}");
        let canon = |p: &Path| std::fs::canonicalize(p).unwrap();
        assert_eq!(canon(Path::new(&p.output).parent().unwrap()), canon(tmp.path()));
        assert!(p.output.ends_with("/out"));
    }

    /// `to` as a path relative to `from` (both absolute), through `..`s.
    fn pathdiff(to: &Path, from: &Path) -> std::path::PathBuf {
        let (t, f): (Vec<_>, Vec<_>) = (to.components().collect(), from.components().collect());
        let common = t.iter().zip(&f).take_while(|(a, b)| a == b).count();
        let mut out = std::path::PathBuf::new();
        for _ in common..f.len() {
            out.push("..");
        }
        for c in &t[common..] {
            out.push(c);
        }
        out
    }

    #[test]
    fn bad_project_files_say_where_and_what() {
        let tmp = tempfile::tempdir().unwrap();
        let e = write(tmp.path(), &GOOD.replace("version: 1", "version: 3")).unwrap_err().to_string();
        assert!(e.contains("lab.yaml:1:") && e.contains("unsupported project version 3"), "{e}");
        let e = write(tmp.path(), &GOOD.replace("teacher: test\n", "teacher: test\ngenerate:\n  scale: 0\n")).unwrap_err().to_string();
        assert!(e.contains("lab.yaml:6:") && e.contains("generate.scale") && e.contains("at least 1"), "{e}");
        let e = write(tmp.path(), &GOOD.replace("teacher: test\n", "teacher: test\ngenerate:\n  colour: red\n")).unwrap_err().to_string();
        assert!(e.contains("colour"), "{e}");
        let e = write(tmp.path(), &GOOD.replace("train:\n  recipe: train.yaml\n", "")).unwrap_err().to_string();
        assert!(e.contains("train"), "{e}");
        let e = write(tmp.path(), "version: 1\nname: q\nname: r\n").unwrap_err().to_string();
        assert!(e.contains("appears twice"), "{e}");
        let e = write(tmp.path(), "- a list\n").unwrap_err().to_string();
        assert!(e.contains("a project file is a mapping"), "{e}");
    }
}
