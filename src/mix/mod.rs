//! Mixing: a run's per-leaf datasets turned into the training mixes of the LAB method
//! (../shared/docs/LAB.md, "Mixing") by a recipe (`pipelines/mix/lab.yaml` is the reference's).
//!
//! [`mix`] reads the run's manifest and every leaf's generated Parquet partition, any
//! precomputed datasets the recipe names, builds both mixes ([`build`]), and writes to the
//! output folder `knowledge_train_msgs.{jsonl,parquet}` and `skills_train_msgs.{jsonl,parquet}`
//! (plus `_short`/`_long` parts when a mix is split), `mix_report.json`, `mix_report.md`,
//! `mix_lengths.png`, and last `mix_manifest.json`, which lists them (a reader that goes by the
//! manifest never sees a half-written mix; each file is one atomic put).

pub mod build;
pub mod dedup;
pub mod recipe;
pub mod records;
mod report;

pub use report::{CountRow, Histogram, MixReport};

use crate::engine::report::FileEntry;
use crate::mix::build::{Dataset, LeafRows, Tagged};
use crate::mix::recipe::{Recipe, SourceSpec, SplitSpec};
use crate::mix::records::Record;
use crate::documents::TokenCount;
use crate::store::dataset::{self, DatasetError};
use crate::store::{Location, StoreError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a mix could not be made. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum MixError {
    /// The run folder has no readable manifest.
    #[error("{0} has no run manifest (manifest.json); run `labflow generate --output {0}` first")]
    NoRun(String),
    /// A store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file could not be read or written.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// A dataset's rows are not records.
    #[error("{0}")]
    Records(String),
    /// The recipe asks for something the options cannot give.
    #[error("{0}")]
    Recipe(String),
}

/// How lengths are measured for the report's histogram and for splits.
#[derive(Clone, Default)]
pub enum Measure {
    /// Whitespace-separated words.
    #[default]
    Words,
    /// Tokens, as this counter (a model's tokenizer) counts them.
    Tokens(Arc<dyn TokenCount + Send + Sync>),
}

impl Measure {
    /// The unit's name.
    pub fn unit(&self) -> &'static str {
        match self {
            Measure::Words => "words",
            Measure::Tokens(_) => "tokens",
        }
    }

    /// The length of `text`.
    pub fn len(&self, text: &str) -> usize {
        match self {
            Measure::Words => text.split_whitespace().count(),
            Measure::Tokens(t) => t.count(text),
        }
    }
}

/// Where a mix reads from and writes to.
pub struct MixJob<'a> {
    /// The run folder (`labflow generate --output`).
    pub run: &'a Location,
    /// The recipe.
    pub recipe: &'a Recipe,
    /// Relative `dataset` paths start here (the recipe's folder); `None`: the working folder.
    pub recipe_dir: Option<PathBuf>,
    /// The output folder.
    pub out: &'a Location,
    /// Length measure.
    pub measure: Measure,
}

/// The name of the file that lists a mix's outputs; written last.
pub const MIX_MANIFEST: &str = "mix_manifest.json";

/// Read the run's generated rows: every leaf the manifest lists without an error, by leaf id.
pub async fn read_run(run: &Location, warnings: &mut Vec<String>) -> Result<Vec<LeafRows>, MixError> {
    let manifest =
        crate::engine::generate::read_manifest(run, warnings).await?.ok_or_else(|| MixError::NoRun(run.display.clone()))?;
    let mut leaves = Vec::new();
    for leaf in manifest.leaves {
        if let Some(e) = &leaf.error {
            warnings.push(format!("{}: not mixed, its generation failed: {e}", leaf.leaf));
            continue;
        }
        let Some(file) = leaf.files.iter().find(|f| f.path.starts_with("generated/") && f.path.ends_with(".parquet")) else {
            warnings.push(format!("{}: the manifest lists no generated Parquet file; not mixed", leaf.leaf));
            continue;
        };
        let mut rows = Vec::new();
        for batch in dataset::read_parquet(run, &file.path).await? {
            rows.extend(records::rows(&batch));
        }
        leaves.push(LeafRows { leaf: leaf.leaf, kind: leaf.kind, rows });
    }
    leaves.sort_by(|a, b| a.leaf.cmp(&b.leaf));
    Ok(leaves)
}

/// Read a precomputed dataset (JSONL or Parquet, in the record schema) from a path or URL.
pub async fn read_dataset(path: &str, base: Option<&Path>) -> Result<Vec<Record>, MixError> {
    let full = if path.contains("://") || Path::new(path).is_absolute() {
        path.to_string()
    } else {
        base.map(|b| b.join(path)).unwrap_or_else(|| PathBuf::from(path)).display().to_string()
    };
    let (dir, name) = match full.rsplit_once('/') {
        Some((d, n)) if !d.is_empty() && !d.ends_with(':') => (d.to_string(), n.to_string()),
        _ => (".".to_string(), full.clone()),
    };
    let loc = Location::open(&dir)?;
    if name.ends_with(".parquet") {
        let mut out = Vec::new();
        for b in dataset::read_parquet(&loc, &name).await? {
            out.extend(records::from_batch(&b, &full).map_err(|e| MixError::Records(e.0))?);
        }
        return Ok(out);
    }
    let bytes = dataset::read_bytes(&loc, &name).await?.ok_or_else(|| MixError::Records(format!("{full}: not found")))?;
    let text = String::from_utf8_lossy(&bytes);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        out.push(records::from_json_line(line).map_err(|e| MixError::Records(format!("{full}:{}: {e}", i + 1)))?);
    }
    Ok(out)
}

/// Make the mixes of `job` and write them; returns the report (also written).
pub async fn mix(job: MixJob<'_>) -> Result<MixReport, MixError> {
    let start = std::time::Instant::now();
    let mut warnings = Vec::new();
    let recipe = job.recipe;
    for spec in [&recipe.knowledge, &recipe.skills] {
        if matches!(spec.split, Some(SplitSpec::Tokens(_))) && matches!(job.measure, Measure::Words) {
            return Err(MixError::Recipe("the recipe splits by tokens; give a tokenizer (--tokenizer MODEL), or split by words".into()));
        }
    }
    let leaves = read_run(job.run, &mut warnings).await?;
    let mut datasets = Vec::new();
    for spec in [&recipe.knowledge, &recipe.skills] {
        for s in &spec.sources {
            if let SourceSpec::Dataset { path, .. } = s {
                if !datasets.iter().any(|d: &Dataset| &d.path == path) {
                    datasets.push(Dataset { path: path.clone(), records: read_dataset(path, job.recipe_dir.as_deref()).await? });
                }
            }
        }
    }
    let mut mixed = build::build(recipe, &leaves, &datasets);
    warnings.append(&mut mixed.warnings);
    let mut files = Vec::new();
    for (name, spec, rows) in [("knowledge", &recipe.knowledge, &mixed.knowledge), ("skills", &recipe.skills, &mixed.skills)] {
        let base = format!("{name}_train_msgs");
        files.extend(write_mix(job.out, &base, rows).await?);
        if let Some(split) = spec.split {
            let bound = match split {
                SplitSpec::Words(n) | SplitSpec::Tokens(n) => n,
            };
            let (short, long): (Vec<Tagged>, Vec<Tagged>) =
                rows.iter().cloned().partition(|t| job.measure.len(t.record.response()) < bound);
            files.extend(write_mix(job.out, &format!("{base}_short"), &short).await?);
            files.extend(write_mix(job.out, &format!("{base}_long"), &long).await?);
        }
    }
    let mut report = MixReport::new(recipe, &job.run.display, leaves.len(), &mixed, &job.measure);
    report.warnings = warnings;
    report.files = files;
    report.wall_seconds = start.elapsed().as_secs_f64();
    report.write(job.out).await?;
    Ok(report)
}

async fn write_mix(out: &Location, base: &str, rows: &[Tagged]) -> Result<Vec<FileEntry>, MixError> {
    let records: Vec<Record> = rows.iter().map(|t| t.record.clone()).collect();
    let n = records.len() as u64;
    let batch = records::to_batch(&records).map_err(|e| MixError::Records(format!("{base}: {e}")))?;
    let rel = format!("{base}.parquet");
    let bytes = dataset::write_parquet(out, &rel, &batch).await?;
    let mut files = vec![FileEntry { path: rel, rows: n, bytes }];
    let mut text = Vec::new();
    for r in &records {
        serde_json::to_writer(&mut text, &r.to_json()).map_err(|e| MixError::Records(e.to_string()))?;
        text.push(b'\n');
    }
    let rel = format!("{base}.jsonl");
    let bytes = dataset::write_bytes(out, &rel, text).await?;
    files.push(FileEntry { path: rel, rows: n, bytes });
    Ok(files)
}
