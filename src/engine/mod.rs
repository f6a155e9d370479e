//! The engine: runs plans over leaves as a timely dataflow, writing datasets to a run folder.
//!
//! Each leaf enters the dataflow at its own timestamp (its index in the run), through the input
//! of its pipeline. Steps are timely operators over Arrow batches on the `Pipeline` channel, so
//! a leaf's rows stay on the worker that owns it (leaf `i` belongs to worker `i % peers`) and no
//! batch is ever serialised; the only exchange is the small per-leaf report sent to worker 0.
//! Because times are leaves, a frontier that passes time `t` means leaf `t` is finished at that
//! point of the graph: aggregates (`dedup`, `sample`) run per leaf as soon as their leaf is
//! complete, and the sink commits each leaf's files the moment the leaf is done, while other
//! leaves are still generating (invariant 1).
//!
//! Teacher steps hand their calls to one [`dispatch::Dispatcher`] per process, which keeps up to
//! `max_in_flight` rows' calls outstanding across all workers, leaves and steps (invariant 2);
//! answers come back on tokio threads and wake the operator through a `SyncActivator`.
//!
//! Scaling out uses timely's own cluster: `workers` threads per process, `processes` processes
//! at `hosts` (`host:port` each), all writing to one shared run folder (invariant 9).

mod commit;
mod dataflow;
pub mod dispatch;
pub mod generate;
pub mod increment;
pub mod ledger;
pub mod report;

pub use report::{
    FileEntry, LeafDone, Manifest, PipelineRecord, ProcessDone, Progress, Report, StepCounts, StepRecord, StepSummary, Summary,
    MANIFEST_FORMAT,
};

use crate::pipeline::Plan;
use crate::store::Location;
use crate::taxonomy::LeafKind;
use crate::teacher::Client;
use arrow::record_batch::RecordBatch;
use std::sync::Arc;

/// One leaf to generate.
#[derive(Debug, Clone)]
pub struct LeafJob {
    /// Leaf id (folder path).
    pub id: String,
    /// Content hash (documents included).
    pub hash: String,
    /// Kind.
    pub kind: LeafKind,
    /// Index of its plan in [`Job::plans`].
    pub plan: usize,
    /// Its seed rows.
    pub seeds: RecordBatch,
    /// [`increment::seeds_digest`] of `seeds`, recorded in the manifest.
    pub seeds_digest: String,
    /// [`increment::seeds_key`] of what `seeds` were expanded from, recorded in the manifest
    /// (empty: none; the next run then expands the leaf to compare digests).
    pub seeds_key: String,
}

/// A global step: a step of one of the plans.
#[derive(Debug, Clone)]
pub struct StepRef {
    /// Index of the plan.
    pub plan: usize,
    /// Index of the step in the plan.
    pub step: usize,
}

/// Everything a run computes over.
pub struct Job {
    /// The pipelines.
    pub plans: Vec<Arc<Plan>>,
    /// The leaves, in run order (their index is their dataflow timestamp).
    pub leaves: Vec<LeafJob>,
    /// Every step of every plan, in plan order: the index counters are kept under.
    pub steps: Vec<StepRef>,
    /// Where datasets go.
    pub output: Location,
    /// This run's id, part of every file name it writes.
    pub run_id: String,
    /// The teacher every teacher step calls (with the response cache in front).
    pub teacher: Arc<dyn Client>,
    /// Process-level teacher counters, reported when the process finishes.
    pub teacher_stats: Arc<dyn Fn() -> ProcessDone + Send + Sync>,
}

impl Job {
    /// A job over `plans` and `leaves`; `steps` is derived.
    pub fn new(
        plans: Vec<Arc<Plan>>,
        leaves: Vec<LeafJob>,
        output: Location,
        run_id: String,
        teacher: Arc<dyn Client>,
        teacher_stats: Arc<dyn Fn() -> ProcessDone + Send + Sync>,
    ) -> Job {
        let steps =
            plans.iter().enumerate().flat_map(|(p, plan)| (0..plan.steps.len()).map(move |s| StepRef { plan: p, step: s })).collect();
        Job { plans, leaves, steps, output, run_id, teacher, teacher_stats }
    }

    /// Index of the first global step of plan `p`.
    pub fn step_offset(&self, p: usize) -> usize {
        self.plans[..p].iter().map(|pl| pl.steps.len()).sum()
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Worker threads per process.
    pub workers: usize,
    /// This process's index (0 when running alone).
    pub process: usize,
    /// `host:port` of every process, for a cluster run; empty for one process.
    pub hosts: Vec<String>,
    /// Rows' calls outstanding at once, per process.
    pub max_in_flight: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { workers: 1, process: 0, hosts: Vec::new(), max_in_flight: 16 }
    }
}

/// Why a run could not finish.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// An operator refused a batch (a bug, or a plan that does not fit its data).
    #[error(transparent)]
    Operator(#[from] crate::operators::OpError),
    /// The cluster could not be set up or a worker failed.
    #[error("dataflow: {0}")]
    Dataflow(String),
    /// Writing the run folder failed.
    #[error(transparent)]
    Store(#[from] crate::store::dataset::DatasetError),
}

/// Run `job`; returns the reports worker 0 collected (empty on other processes) and the
/// process's wall time.
pub fn run(job: Arc<Job>, opts: &RunOptions, runtime: tokio::runtime::Handle, progress: Arc<Progress>) -> Result<Vec<Report>, EngineError> {
    dataflow::execute(job, opts, runtime, progress)
}

/// Sum reports into the run summary and manifest of a run over `plans` with the teacher
/// `teacher` (its identity). `kept` are the leaves kept from the run folder's last manifest,
/// `removed` how many of its leaves are gone.
pub fn summarise(
    plans: &[Arc<Plan>],
    teacher: &str,
    reports: Vec<Report>,
    kept: Vec<LeafDone>,
    removed: u64,
    wall_seconds: f64,
) -> (Summary, Manifest) {
    // Per pipeline, its steps' counters summed over the leaves this run computed.
    let mut totals: Vec<Vec<StepCounts>> = plans.iter().map(|p| vec![StepCounts::default(); p.steps.len()]).collect();
    let mut computed = Vec::new();
    let mut processes = Vec::new();
    for r in reports {
        match r {
            Report::Leaf(l) => computed.push(l),
            Report::Process(p) => processes.push(p),
        }
    }
    for l in &computed {
        let Some(p) = plans.iter().position(|p| p.name == l.pipeline) else { continue };
        for (t, c) in totals[p].iter_mut().zip(&l.steps) {
            t.add(c);
        }
    }
    let computed_count = computed.len() as u64;
    let kept_count = kept.len() as u64;
    let mut leaves: Vec<LeafDone> = computed.into_iter().chain(kept).collect();
    leaves.sort_by(|a, b| a.leaf.cmp(&b.leaf));
    let operators = plans
        .iter()
        .zip(&totals)
        .flat_map(|(plan, counts)| {
            plan.steps.iter().zip(counts).map(|(step, c)| StepSummary {
                pipeline: plan.name.clone(),
                name: step.name.clone(),
                op: step.kind.clone(),
                counts: *c,
            })
        })
        .collect();
    let totals: Vec<StepCounts> = totals.into_iter().flatten().collect();
    let summary = Summary {
        leaves: leaves.iter().filter(|l| l.error.is_none()).count() as u64,
        rows: leaves.iter().map(|l| l.rows).sum(),
        rejects: leaves.iter().map(|l| l.rejects).sum(),
        computed: computed_count,
        kept: kept_count,
        removed,
        operators,
        teacher_calls: processes.iter().map(|p| p.teacher_calls).sum(),
        cache_hits: processes.iter().map(|p| p.cache_hits).sum(),
        tokens_in: totals.iter().map(|c| c.tokens_in).sum(),
        tokens_out: totals.iter().map(|c| c.tokens_out).sum(),
        wall_seconds,
        failed: leaves.iter().filter_map(|l| l.error.clone().map(|e| (l.leaf.clone(), e))).collect(),
    };
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        labflow: env!("CARGO_PKG_VERSION").to_string(),
        teacher: teacher.to_string(),
        pipelines: plans.iter().map(|p| PipelineRecord::of(p)).collect(),
        leaves,
    };
    (summary, manifest)
}

#[cfg(test)]
mod tests;
