//! `generate` from end to end: read the taxonomy, expand each leaf into seed rows, run the plans
//! over them, and commit the run folder (datasets, rejects, response cache, manifest last).
//!
//! Run folder layout (any object store):
//! - `generated/<leaf id>/<run id>.parquet` (+ `.jsonl`): the leaf's rows;
//! - `rejects/<leaf id>/<run id>.parquet` (+ `.jsonl`): rows dropped, with step and reason;
//! - `cache/`: the response cache, so a rerun costs no teacher call for unchanged work;
//! - `summary.json`: counters of the last run; `manifest.json`: written last, lists every
//!   committed file; a reader that goes through it never sees a partial run.
//!
//! A run over a folder that already has a manifest is incremental (`increment`): leaves whose
//! seed rows, pipeline and teacher are unchanged keep their files, every other leaf is computed
//! (through the cache), and leaves the taxonomy lost leave the manifest. After the manifest is
//! committed, dataset files that neither it nor the one before it lists are deleted (a reader
//! still holding the previous manifest can finish reading), which also clears what a killed
//! run left behind.

use crate::documents::{self, ChunkOptions, TokenCount};
use crate::engine::increment::{self, Candidate, Increment};
use crate::engine::report::LeafDone;
use crate::engine::{
    self, EngineError, Job, LeafJob, Manifest, PipelineRecord, ProcessDone, Progress, RunOptions, Summary, MANIFEST_FORMAT,
};
use crate::pipeline::Plan;
use crate::seeds;
use crate::store::dataset::{self, DatasetError};
use crate::store::Location;
use crate::taxonomy::{walk, HashedLeaf, TaxonomyError, WalkOptions};
use crate::teacher::cache::{CacheConfig, CacheError, CachedClient, ResponseCache};
use crate::teacher::counted::Counted;
use crate::teacher::Client;
use arrow::record_batch::RecordBatch;
use std::collections::{BTreeMap, BTreeSet};
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

/// The run folder's manifest file.
pub const MANIFEST: &str = "manifest.json";

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
    /// What the run computed, kept and removed, and why.
    pub increment: Increment,
    /// What went wrong without stopping the run (an unreadable earlier manifest, a file that
    /// could not be deleted), one line each.
    pub warnings: Vec<String>,
}

/// What a run would do (`--dry-run`).
#[derive(Debug, serde::Serialize)]
pub struct DryRun {
    /// Leaves it would compute, keep and remove.
    #[serde(flatten)]
    pub increment: Increment,
    /// Leaves it would leave out.
    pub skipped: Vec<Skipped>,
    /// What it noticed, one line each.
    pub warnings: Vec<String>,
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

/// The leaves expanded and the run planned against the folder's last manifest.
struct Prepared {
    leaves: Vec<LeafJob>,
    skipped: Vec<Skipped>,
    previous: Option<Manifest>,
    increment: Increment,
    warnings: Vec<String>,
}

/// The run folder's manifest, if it has one this labflow can build on. One it cannot read is a
/// warning, not an error: every leaf is then computed, through the cache.
pub async fn read_manifest(out: &Location, warnings: &mut Vec<String>) -> Result<Option<Manifest>, DatasetError> {
    let Some(bytes) = dataset::read_bytes(out, MANIFEST).await? else { return Ok(None) };
    let value: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            warnings.push(format!("{}/{MANIFEST} is not JSON ({e}); computing every leaf (the response cache still answers)", out.display));
            return Ok(None);
        }
    };
    let format = value.get("format").and_then(|f| f.as_u64());
    if format != Some(u64::from(MANIFEST_FORMAT)) {
        warnings.push(format!(
            "{}/{MANIFEST} has format {}, this labflow writes {MANIFEST_FORMAT}; computing every leaf (the response cache still answers)",
            out.display,
            format.map_or("none".to_string(), |f| f.to_string())
        ));
        return Ok(None);
    }
    match serde_json::from_value(value) {
        Ok(m) => Ok(Some(m)),
        Err(e) => {
            warnings.push(format!("{}/{MANIFEST} does not read as a manifest ({e}); computing every leaf", out.display));
            Ok(None)
        }
    }
}

/// Read the taxonomy, expand the leaves to run, and plan against the last manifest.
async fn prepare(cfg: &GenerateConfig) -> Result<Prepared, GenerateError> {
    let report = walk(&cfg.taxonomy, &WalkOptions { docs: cfg.docs.clone(), only: None }).await?;
    let mut skipped: Vec<Skipped> = Vec::new();
    let bad: BTreeSet<&str> = report.diagnostics.iter().filter(|d| d.is_error()).map(|d| d.path.as_str()).collect();
    for path in bad {
        skipped.push(Skipped { leaf: path.to_string(), reason: "invalid leaf; `labflow validate` says why".into() });
    }
    let present: BTreeSet<String> = report.leaves.iter().map(|l| l.leaf.id.clone()).collect();
    if let Some(only) = &cfg.only {
        let unknown: Vec<&str> = only.iter().map(String::as_str).filter(|id| !present.contains(*id)).collect();
        if !unknown.is_empty() {
            return Err(GenerateError::UnknownLeaves(unknown.join(", ")));
        }
    }
    let mut warnings = Vec::new();
    let previous = read_manifest(&cfg.output, &mut warnings).await?;
    let teacher = cfg.teacher.identity();
    // A leaf whose seed key is the one recorded with it keeps its recorded digest unexpanded;
    // only the leaves the plan computes are expanded then (`expand` below).
    let recorded: BTreeMap<&str, &LeafDone> = previous
        .iter()
        .flat_map(|m| &m.leaves)
        .filter(|l| l.error.is_none() && !l.seeds_key.is_empty() && !l.seeds.is_empty())
        .map(|l| (l.leaf.as_str(), l))
        .collect();
    let mut leaves: Vec<Expanded> = Vec::new();
    for hl in &report.leaves {
        let leaf = &hl.leaf;
        if cfg.only.as_ref().is_some_and(|o| !o.contains(&leaf.id)) {
            continue;
        }
        let Some(plan) = cfg.plans.iter().position(|p| p.leaf_kinds.contains(&leaf.kind)) else {
            skipped.push(Skipped { leaf: leaf.id.clone(), reason: format!("no pipeline for {} leaves", leaf.kind.label()) });
            continue;
        };
        let key = increment::seeds_key(&hl.hash, leaf.kind, hl.documents_hashed, &cfg.chunk, &teacher);
        if let Some(done) = recorded.get(leaf.id.as_str()).filter(|d| d.seeds_key == key) {
            leaves.push(Expanded { hl, plan, key, digest: done.seeds.clone(), rows: None });
            continue;
        }
        match expand(cfg, hl).await {
            Ok(rows) => leaves.push(Expanded { hl, plan, key, digest: increment::seeds_digest(&rows), rows: Some(rows) }),
            Err(e) => skipped.push(Skipped { leaf: leaf.id.clone(), reason: e.to_string() }),
        }
    }
    // A leaf that is skipped now is not present: its old output goes, like a removed leaf's.
    let skipped_ids: BTreeSet<&str> = skipped.iter().map(|s| s.leaf.as_str()).collect();
    let runnable: BTreeSet<String> = present.into_iter().filter(|id| !skipped_ids.contains(id.as_str())).collect();
    let records: Vec<PipelineRecord> = cfg.plans.iter().map(|p| PipelineRecord::of(p)).collect();
    let candidates: Vec<Candidate> = leaves
        .iter()
        .map(|l| Candidate {
            id: l.hl.leaf.id.clone(),
            seeds: l.digest.clone(),
            pipeline: records[l.plan].name.clone(),
            fingerprint: records[l.plan].fingerprint.clone(),
        })
        .collect();
    let mut increment = increment::plan(previous.as_ref(), &teacher, &records, &candidates, &runnable);
    if leaves.is_empty() && increment.keep.is_empty() {
        let why = skipped.iter().map(|s| format!("{}: {}", s.leaf, s.reason)).collect::<Vec<_>>().join("; ");
        return Err(GenerateError::Nothing(if why.is_empty() { "the taxonomy has no leaves".into() } else { why }));
    }
    let compute: BTreeSet<String> = increment.compute.iter().map(|c| c.leaf.clone()).collect();
    let mut jobs = Vec::new();
    for l in leaves.into_iter().filter(|l| compute.contains(l.hl.leaf.id.as_str())) {
        let leaf = &l.hl.leaf;
        // A leaf planned from its recorded digest that is computed anyway (its pipeline or
        // teacher changed): the run needs its rows, and records their digest.
        let seeds = match l.rows {
            Some(rows) => rows,
            None => match expand(cfg, l.hl).await {
                Ok(rows) => rows,
                Err(e) => {
                    increment.compute.retain(|c| c.leaf != leaf.id);
                    skipped.push(Skipped { leaf: leaf.id.clone(), reason: e.to_string() });
                    continue;
                }
            },
        };
        let seeds_digest = increment::seeds_digest(&seeds);
        jobs.push(LeafJob {
            id: leaf.id.clone(),
            hash: l.hl.hash.clone(),
            kind: leaf.kind,
            plan: l.plan,
            seeds,
            seeds_digest,
            seeds_key: l.key,
        });
    }
    Ok(Prepared { leaves: jobs, skipped, previous, increment, warnings })
}

/// A leaf with a pipeline, before the plan: its seed digest, and its seed rows unless the
/// manifest's record of it made expanding them unnecessary.
struct Expanded<'a> {
    hl: &'a HashedLeaf,
    plan: usize,
    key: String,
    digest: String,
    rows: Option<RecordBatch>,
}

/// A leaf's seed rows (its documents read and chunked for a knowledge leaf).
async fn expand(cfg: &GenerateConfig, hl: &HashedLeaf) -> Result<RecordBatch, seeds::SeedError> {
    let leaf = &hl.leaf;
    let mut files = Vec::new();
    if let (Some(doc), Some(docs)) = (&leaf.document, &cfg.docs) {
        files = documents::resolve(docs, &leaf.path, doc).await.files;
    }
    seeds::seed_rows(leaf, &files, cfg.counter.as_ref(), &cfg.chunk)
}

/// What `generate` would compute, keep and remove, without calling the teacher or writing.
pub async fn dry_run(cfg: GenerateConfig) -> Result<DryRun, GenerateError> {
    let p = prepare(&cfg).await?;
    Ok(DryRun { increment: p.increment, skipped: p.skipped, warnings: p.warnings })
}

/// Read, expand, plan, run what changed, commit.
pub async fn generate(cfg: GenerateConfig) -> Result<Generated, GenerateError> {
    let started = Instant::now();
    let Prepared { leaves, skipped, previous, increment, mut warnings } = prepare(&cfg).await?;

    let process = cfg.run.process;
    let reports = if leaves.is_empty() {
        // Nothing changed that needs computing: no cache to load, no dataflow, no teacher.
        vec![engine::Report::Process(ProcessDone { process, ..ProcessDone::default() })]
    } else {
        let cache = Arc::new(ResponseCache::open(cfg.output.sub("cache"), CacheConfig::default()).await?);
        let counted = Counted::new(Arc::clone(&cfg.teacher));
        // Durable: a `kill -9` at any moment repeats only the calls in flight (invariant 3).
        let teacher: Arc<dyn Client> = Arc::new(CachedClient::new(Arc::clone(&counted) as Arc<dyn Client>, Arc::clone(&cache)).durable());
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
        let (runtime, opts) = (tokio::runtime::Handle::current(), cfg.run.clone());
        let reports = tokio::task::spawn_blocking(move || engine::run(job, &opts, runtime, progress))
            .await
            .map_err(|e| EngineError::Dataflow(format!("the dataflow thread failed: {e}")))??;
        cache.flush().await?;
        reports
    };
    let removed = increment.removed.len() as u64;
    let (summary, manifest) =
        engine::summarise(&cfg.plans, &cfg.teacher.identity(), reports, increment.keep.clone(), removed, started.elapsed().as_secs_f64());
    if process == 0 {
        dataset::write_json(&cfg.output, "summary.json", &summary).await?;
        dataset::write_json(&cfg.output, MANIFEST, &manifest).await?;
        sweep(&cfg.output, &manifest, previous.as_ref(), &mut warnings).await;
    }
    Ok(Generated { summary, manifest, skipped, increment, warnings })
}

/// Delete the dataset files under `generated/` and `rejects/` that neither `current` nor
/// `previous` lists: superseded outputs and what killed runs left. Failures are warnings.
async fn sweep(out: &Location, current: &Manifest, previous: Option<&Manifest>, warnings: &mut Vec<String>) {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let listed: BTreeSet<&str> =
        current.leaves.iter().chain(previous.iter().flat_map(|m| &m.leaves)).flat_map(|l| &l.files).map(|f| f.path.as_str()).collect();
    for dir in ["generated", "rejects"] {
        let prefix = out.child(dir);
        let found: Vec<object_store::ObjectMeta> = match out.store.list(Some(&prefix)).try_collect().await {
            Ok(f) => f,
            Err(e) => {
                warnings.push(format!("could not list {}/{dir} to delete superseded files: {e}", out.display));
                continue;
            }
        };
        for meta in found {
            let Some(rel) = out.relative(&meta.location) else { continue };
            if listed.contains(rel.as_str()) {
                continue;
            }
            if let Err(e) = out.store.delete(&meta.location).await {
                warnings.push(format!("could not delete superseded {}/{rel}: {e}", out.display));
            }
        }
    }
}
