//! `generate` from end to end: read the taxonomy, expand each leaf into seed rows, run the plans
//! over them, and commit the run folder (datasets, rejects, response cache, manifest last).
//!
//! Run folder layout (any object store):
//! - `generated/<leaf id>/<run id>.parquet` (+ `.jsonl`): the leaf's rows;
//! - `rejects/<leaf id>/<run id>.parquet` (+ `.jsonl`): rows dropped, with step and reason;
//! - `cache/`: the response cache, so a rerun costs no teacher call for unchanged work;
//! - `summary.json`: counters of the last run; `manifest.json`: written last, lists every
//!   committed file; a reader that goes through it never sees a partial run.

use crate::documents::{self, ChunkOptions, TokenCount};
use crate::engine::{self, EngineError, Job, LeafJob, Manifest, ProcessDone, Progress, RunOptions, Summary};
use crate::pipeline::Plan;
use crate::seeds;
use crate::store::dataset::{self, DatasetError};
use crate::store::Location;
use crate::taxonomy::{walk, TaxonomyError, WalkOptions};
use crate::teacher::cache::{CacheConfig, CacheError, CachedClient, ResponseCache};
use crate::teacher::counted::Counted;
use crate::teacher::Client;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

/// What to generate.
pub struct GenerateConfig {
    /// The taxonomy root.
    pub taxonomy: Location,
    /// Where knowledge documents resolve (`--docs`).
    pub docs: Option<Location>,
    /// The pipelines; each leaf runs through the first whose `leaf_kinds` has its kind.
    pub plans: Vec<Arc<Plan>>,
    /// The teacher (the response cache is put in front of it here).
    pub teacher: Arc<dyn Client>,
    /// Counts tokens for chunking documents: the teacher's tokenizer when known.
    pub counter: Arc<dyn TokenCount + Send + Sync>,
    /// Chunk sizes.
    pub chunk: ChunkOptions,
    /// The run folder.
    pub output: Location,
    /// Only these leaf ids (`--leaf`); all when `None`.
    pub only: Option<BTreeSet<String>>,
    /// Workers, processes, requests in flight.
    pub run: RunOptions,
    /// Id of this run, part of every file name (the same on every process of a cluster run).
    pub run_id: String,
    /// Live counters for progress lines.
    pub progress: Option<Arc<Progress>>,
}

/// A leaf that was not generated, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// Leaf id (or file, for invalid leaves).
    pub leaf: String,
    /// Why.
    pub reason: String,
}

/// What a run produced.
#[derive(Debug)]
pub struct Generated {
    /// Counters (on process 0; other processes report only what they sent).
    pub summary: Summary,
    /// The manifest written last.
    pub manifest: Manifest,
    /// Leaves left out, with the reason.
    pub skipped: Vec<Skipped>,
}

/// Why a run could not happen at all.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The taxonomy could not be read.
    #[error(transparent)]
    Taxonomy(#[from] TaxonomyError),
    /// `--leaf` named leaves that are not in the taxonomy.
    #[error("no such leaf: {0}; `labflow leaves TAXONOMY` lists them")]
    UnknownLeaves(String),
    /// Nothing to generate.
    #[error("nothing to generate: {0}")]
    Nothing(String),
    /// The response cache could not be opened.
    #[error("response cache: {0}")]
    Cache(#[from] CacheError),
    /// The run failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Writing the manifest or summary failed.
    #[error(transparent)]
    Store(#[from] DatasetError),
}

/// Read, expand, run, commit.
pub async fn generate(cfg: GenerateConfig) -> Result<Generated, GenerateError> {
    let started = Instant::now();
    let report = walk(&cfg.taxonomy, &WalkOptions { docs: cfg.docs.clone(), only: None }).await?;
    let mut skipped: Vec<Skipped> = Vec::new();
    let bad: BTreeSet<&str> = report.diagnostics.iter().filter(|d| d.is_error()).map(|d| d.path.as_str()).collect();
    for path in bad {
        skipped.push(Skipped { leaf: path.to_string(), reason: "invalid leaf; `labflow validate` says why".into() });
    }
    if let Some(only) = &cfg.only {
        let known: BTreeSet<&str> = report.leaves.iter().map(|l| l.leaf.id.as_str()).collect();
        let unknown: Vec<&str> = only.iter().map(String::as_str).filter(|id| !known.contains(id)).collect();
        if !unknown.is_empty() {
            return Err(GenerateError::UnknownLeaves(unknown.join(", ")));
        }
    }
    let mut leaves = Vec::new();
    for hl in &report.leaves {
        let leaf = &hl.leaf;
        if cfg.only.as_ref().is_some_and(|o| !o.contains(&leaf.id)) {
            continue;
        }
        let Some(plan) = cfg.plans.iter().position(|p| p.leaf_kinds.contains(&leaf.kind)) else {
            skipped.push(Skipped { leaf: leaf.id.clone(), reason: format!("no pipeline for {} leaves", leaf.kind.label()) });
            continue;
        };
        let mut files = Vec::new();
        if let (Some(doc), Some(docs)) = (&leaf.document, &cfg.docs) {
            let resolved = documents::resolve(docs, &leaf.path, doc).await;
            files = resolved.files;
        }
        match seeds::seed_rows(leaf, &files, cfg.counter.as_ref(), &cfg.chunk) {
            Ok(rows) => leaves.push(LeafJob { id: leaf.id.clone(), hash: hl.hash.clone(), kind: leaf.kind, plan, seeds: rows }),
            Err(e) => skipped.push(Skipped { leaf: leaf.id.clone(), reason: e.to_string() }),
        }
    }
    if leaves.is_empty() {
        let why = skipped.iter().map(|s| format!("{}: {}", s.leaf, s.reason)).collect::<Vec<_>>().join("; ");
        return Err(GenerateError::Nothing(if why.is_empty() { "the taxonomy has no leaves".into() } else { why }));
    }

    let cache = Arc::new(ResponseCache::open(cfg.output.sub("cache"), CacheConfig::default()).await?);
    let counted = Counted::new(Arc::clone(&cfg.teacher));
    let teacher: Arc<dyn Client> = Arc::new(CachedClient::new(Arc::clone(&counted) as Arc<dyn Client>, Arc::clone(&cache)));
    let process = cfg.run.process;
    let stats = {
        let (counted, cache) = (Arc::clone(&counted), Arc::clone(&cache));
        Arc::new(move || {
            let s = cache.stats();
            ProcessDone { process, teacher_calls: counted.calls(), cache_hits: s.hits, cache_misses: s.misses }
        })
    };
    let job = Arc::new(Job::new(cfg.plans.clone(), leaves, cfg.output.clone(), cfg.run_id.clone(), teacher, stats));
    let progress = cfg.progress.clone().unwrap_or_else(|| Arc::new(Progress::new(job.steps.len())));
    progress.leaves_total.store(job.leaves.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let runtime = tokio::runtime::Handle::current();
    let (job2, opts) = (Arc::clone(&job), cfg.run.clone());
    let reports = tokio::task::spawn_blocking(move || engine::run(job2, &opts, runtime, progress))
        .await
        .map_err(|e| EngineError::Dataflow(format!("the dataflow thread failed: {e}")))??;
    cache.flush().await?;
    let (summary, manifest) = engine::summarise(&job, reports, started.elapsed().as_secs_f64());
    if process == 0 {
        dataset::write_json(&cfg.output, "summary.json", &summary).await?;
        dataset::write_json(&cfg.output, "manifest.json", &manifest).await?;
    }
    Ok(Generated { summary, manifest, skipped })
}
