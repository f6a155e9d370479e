//! What a run reports: per-leaf results, per-step counters, the run summary and manifest.
//!
//! Counters are kept per leaf inside each worker and travel with the leaf's [`LeafDone`]
//! record to worker 0, so totals are exact however many workers and processes ran. Teacher
//! totals (calls actually sent, cache hits) are per process and travel as [`ProcessDone`].

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one step (for one leaf, or summed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepCounts {
    /// Rows that reached the step.
    pub rows_in: u64,
    /// Rows it passed on.
    pub rows_out: u64,
    /// Rows it rejected.
    pub rows_rejected: u64,
    /// Teacher requests it made (through the cache).
    pub requests: u64,
    /// Completions it received.
    pub completions: u64,
    /// Completions cut by `max_tokens`.
    pub truncated: u64,
    /// Completions that did not parse (no tags, no match, no JSON).
    pub unparsed: u64,
    /// Prompt tokens the teacher processed for it (cache hits cost none).
    pub tokens_in: u64,
    /// Tokens the teacher generated for it.
    pub tokens_out: u64,
}

impl StepCounts {
    /// Add `other` into `self`.
    pub fn add(&mut self, o: &StepCounts) {
        self.rows_in += o.rows_in;
        self.rows_out += o.rows_out;
        self.rows_rejected += o.rows_rejected;
        self.requests += o.requests;
        self.completions += o.completions;
        self.truncated += o.truncated;
        self.unparsed += o.unparsed;
        self.tokens_in += o.tokens_in;
        self.tokens_out += o.tokens_out;
    }
}

/// One file a run wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the run folder.
    pub path: String,
    /// Rows in it.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
}

/// A leaf's result, committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeafDone {
    /// Leaf id (folder path).
    pub leaf: String,
    /// Content hash of the leaf (documents included when read).
    pub hash: String,
    /// Leaf kind label.
    pub kind: String,
    /// Pipeline that ran it.
    pub pipeline: String,
    /// Hash of the seed rows it was computed from (`engine::increment::seeds_digest`).
    #[serde(default)]
    pub seeds: String,
    /// What the seed rows were expanded from (`engine::increment::seeds_key`): a later run
    /// that finds the same key takes `seeds` as it is instead of expanding the leaf again.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub seeds_key: String,
    /// Fingerprint of the pipeline it was computed with.
    #[serde(default)]
    pub fingerprint: String,
    /// Rows generated.
    pub rows: u64,
    /// Rows rejected along the way.
    pub rejects: u64,
    /// The dataset, its JSONL view, and the rejects.
    pub files: Vec<FileEntry>,
    /// Counters per step of its pipeline, in the pipeline's step order, from the run that
    /// computed it.
    pub steps: Vec<StepCounts>,
    /// Why the leaf could not be committed, if it could not.
    pub error: Option<String>,
}

/// A process's teacher totals, sent when its work is done.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessDone {
    /// Process index.
    pub process: usize,
    /// Calls that reached the model (misses of the cache).
    pub teacher_calls: u64,
    /// Cache hits, per choice.
    pub cache_hits: u64,
    /// Cache misses, per choice.
    pub cache_misses: u64,
}

/// What workers send to worker 0.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Report {
    /// A leaf was committed.
    Leaf(LeafDone),
    /// A process finished.
    Process(ProcessDone),
}

/// A step in the summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSummary {
    /// Pipeline name.
    pub pipeline: String,
    /// Step name.
    pub name: String,
    /// Operator kind.
    pub op: String,
    /// Its counters over all leaves.
    #[serde(flatten)]
    pub counts: StepCounts,
}

/// The run summary: printed, written to `summary.json`, and printed as JSON with `--json`.
///
/// `leaves`, `rows` and `rejects` describe the run folder's output (every leaf its manifest
/// lists, computed now or kept from before); `operators`, the teacher and token counters
/// describe the work this run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Leaves in the output.
    pub leaves: u64,
    /// Rows generated over all leaves.
    pub rows: u64,
    /// Rows rejected over all leaves.
    pub rejects: u64,
    /// Leaves this run computed.
    pub computed: u64,
    /// Leaves kept from the run folder's last manifest, unchanged.
    pub kept: u64,
    /// Leaves the last manifest had that the taxonomy no longer has.
    pub removed: u64,
    /// Per-step counters of the leaves this run computed.
    pub operators: Vec<StepSummary>,
    /// Teacher calls actually sent (cache misses).
    pub teacher_calls: u64,
    /// Answers served from the response cache.
    pub cache_hits: u64,
    /// Prompt tokens the teacher processed.
    pub tokens_in: u64,
    /// Tokens the teacher generated.
    pub tokens_out: u64,
    /// Wall time of the run.
    pub wall_seconds: f64,
    /// Leaves that failed to commit, with the reason.
    pub failed: Vec<(String, String)>,
}

/// A step of a pipeline, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Step name.
    pub name: String,
    /// Its fingerprint ([`crate::pipeline::PlanStep::fingerprint`]).
    pub fingerprint: String,
}

/// A pipeline, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineRecord {
    /// Its name.
    pub name: String,
    /// The file it came from.
    pub file: String,
    /// Its fingerprint ([`crate::pipeline::Plan::fingerprint`]).
    pub fingerprint: String,
    /// Its steps in order.
    pub steps: Vec<StepRecord>,
}

impl PipelineRecord {
    /// The record of `plan`.
    pub fn of(plan: &crate::pipeline::Plan) -> PipelineRecord {
        PipelineRecord {
            name: plan.name.clone(),
            file: plan.file.clone(),
            fingerprint: plan.fingerprint(),
            steps: plan.steps.iter().map(|s| StepRecord { name: s.name.clone(), fingerprint: s.fingerprint.clone() }).collect(),
        }
    }
}

/// The manifest format this labflow writes; a run folder whose manifest has another is
/// computed afresh (through the response cache).
pub const MANIFEST_FORMAT: u32 = 2;

/// The run manifest: the last file a run writes; lists every committed file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version ([`MANIFEST_FORMAT`]).
    pub format: u32,
    /// labflow version that wrote it.
    pub labflow: String,
    /// The teacher's identity.
    pub teacher: String,
    /// The pipelines of the run that wrote it.
    pub pipelines: Vec<PipelineRecord>,
    /// One entry per leaf, sorted by leaf id.
    pub leaves: Vec<LeafDone>,
}

/// Process-wide live counters for progress lines (per global step).
#[derive(Debug, Default)]
pub struct Progress {
    /// Per step: rows in, rows out, rows rejected, requests, tokens generated.
    pub steps: Vec<[AtomicU64; 5]>,
    /// Leaves committed by this process.
    pub leaves_done: AtomicU64,
    /// Leaves this run generates (set once the taxonomy is read).
    pub leaves_total: AtomicU64,
}

impl Progress {
    /// Counters for `steps` steps.
    pub fn new(steps: usize) -> Progress {
        Progress {
            steps: (0..steps).map(|_| Default::default()).collect(),
            leaves_done: AtomicU64::new(0),
            leaves_total: AtomicU64::new(0),
        }
    }
    /// Add to counter `k` (0 in, 1 out, 2 rejected, 3 requests, 4 tokens out) of step `step`.
    pub fn add(&self, step: usize, k: usize, n: u64) {
        if let Some(s) = self.steps.get(step) {
            s[k].fetch_add(n, Ordering::Relaxed);
        }
    }
    /// A snapshot: per step `[in, out, rejected, requests, tokens out]`.
    pub fn snapshot(&self) -> Vec<[u64; 5]> {
        self.steps.iter().map(|s| [0, 1, 2, 3, 4].map(|k| s[k].load(Ordering::Relaxed))).collect()
    }
}
