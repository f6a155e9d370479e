//! Which leaves a run computes, and which committed leaves of the run folder's last manifest it
//! keeps as they are (ARCHITECTURE.md invariant 4).
//!
//! A committed leaf is a function of three things, all recorded in the manifest: its seed rows
//! (the leaf's content, its documents and the chunking, as a hash: [`seeds_digest`]), its
//! pipeline's fingerprint (every step's configuration and prompts, the build settings, the
//! labflow version: [`crate::pipeline::Plan::fingerprint`]) and the teacher's identity. A leaf
//! whose three are unchanged keeps its files and costs nothing; any other leaf is computed,
//! and the response cache answers every call whose prompt did not change, so a moved leaf or
//! a leaf behind an edited step costs teacher calls only where its prompts are new. A leaf the
//! taxonomy no longer has leaves the manifest. The outputs are those of a fresh full run with
//! the same cache, because each kept leaf is exactly what that run would compute.
//!
//! Finding what changed is a differential dataflow ([`ledger`]): the manifest's leaf versions,
//! then the taxonomy's as retractions and insertions; [`plan`] turns its verdicts into the run.

use crate::documents::ChunkOptions;
use crate::engine::ledger::{self, Verdict};
use crate::engine::report::{LeafDone, Manifest, PipelineRecord};
use crate::taxonomy::LeafKind;
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Domain separation (and version) of seed digests.
const SEEDS_CONTEXT: &str = "labflow seed rows v1";

/// A hash of a leaf's seed rows (names, types and values of every column).
pub fn seeds_digest(seeds: &RecordBatch) -> String {
    let mut hasher = blake3::Hasher::new_derive_key(SEEDS_CONTEXT);
    for field in seeds.schema().fields() {
        hasher.update(format!("{}:{}\n", field.name(), field.data_type()).as_bytes());
    }
    let mut writer = arrow::json::LineDelimitedWriter::new(Vec::new());
    // A batch of plain columns always encodes; should one not, the digest differs from any
    // recorded one and the leaf is simply computed again.
    let encoded = writer.write(seeds).and_then(|()| writer.finish()).map(|()| writer.into_inner()).unwrap_or_default();
    hasher.update(&encoded);
    hasher.finalize().to_hex()[..32].to_string()
}

/// Domain separation (and version) of seed keys. Bump it when [`crate::seeds::seed_rows`] comes
/// to give other rows for the same inputs, so recorded digests are not taken for new rows.
const SEEDS_KEY_CONTEXT: &str = "labflow seed key v1";

/// What a leaf's seed rows are a function of: its hash (content and documents, as the walk
/// computed it), its kind, whether the documents were read, the chunk sizes, the teacher (whose
/// tokenizer counts the chunks' tokens) and this labflow. A leaf whose key equals the one the
/// manifest recorded with it has the recorded [`seeds_digest`], so a rerun need not expand it
/// (read and chunk its documents again) to find it unchanged.
pub fn seeds_key(hash: &str, kind: LeafKind, documents_hashed: bool, chunk: &ChunkOptions, teacher: &str) -> String {
    let mut hasher = blake3::Hasher::new_derive_key(SEEDS_KEY_CONTEXT);
    let text = format!(
        "{}\n{hash}\n{}\n{documents_hashed}\n{} {}\n{teacher}",
        env!("CARGO_PKG_VERSION"),
        kind.label(),
        chunk.max_tokens,
        chunk.overlap_tokens
    );
    hasher.update(text.as_bytes());
    hasher.finalize().to_hex()[..32].to_string()
}

/// A leaf of this run, as the planner sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Leaf id.
    pub id: String,
    /// [`seeds_digest`] of its seed rows.
    pub seeds: String,
    /// Its pipeline's name.
    pub pipeline: String,
    /// Its pipeline's fingerprint.
    pub fingerprint: String,
}

/// Why a leaf is computed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "why")]
pub enum Why {
    /// The run folder has no manifest, or one an older labflow wrote.
    NoRecord,
    /// The manifest does not have it.
    New,
    /// Its seed rows are not the same as the same leaf's in the manifest was computed from.
    Edited,
    /// New id, but the manifest has a leaf with the same seed rows and pipeline: the response
    /// cache answers every call.
    Moved {
        /// Where it was.
        from: String,
    },
    /// Its pipeline changed: these steps (and so what follows them) compute differently.
    Pipeline {
        /// The steps whose fingerprint is new.
        steps: Vec<String>,
    },
    /// The teacher is not the one the manifest's leaves were computed with.
    Teacher,
    /// Its last commit failed.
    Failed,
}

/// A leaf to compute, with why, and how many teacher requests it may make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToCompute {
    /// Leaf id.
    pub leaf: String,
    /// Why.
    #[serde(flatten)]
    pub why: Why,
    /// Requests its changed steps made when the manifest's run computed it: an estimate of its
    /// requests now (cache hits included); `None` when the manifest has nothing to go by.
    pub estimated_requests: Option<u64>,
}

/// What a run will do to the run folder.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Increment {
    /// Leaves to compute, in candidate order.
    pub compute: Vec<ToCompute>,
    /// Committed leaves kept as they are (serialised as their ids).
    #[serde(rename = "kept", serialize_with = "leaf_ids")]
    pub keep: Vec<LeafDone>,
    /// Committed leaves that leave the manifest.
    pub removed: Vec<String>,
}

fn leaf_ids<S: serde::Serializer>(leaves: &[LeafDone], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(leaves.iter().map(|l| &l.leaf))
}

impl Increment {
    /// Sum of the known estimates.
    pub fn estimated_requests(&self) -> u64 {
        self.compute.iter().filter_map(|c| c.estimated_requests).sum()
    }
}

/// Plan a run over `candidates` (the leaves it may compute, in run order) against the run
/// folder's `previous` manifest. `teacher` is this run's teacher identity, `pipelines` this
/// run's pipelines, and `present` every leaf id the taxonomy has now: a committed leaf that is
/// present but not a candidate (outside `--leaf`) is kept as it is.
pub fn plan(
    previous: Option<&Manifest>,
    teacher: &str,
    pipelines: &[PipelineRecord],
    candidates: &[Candidate],
    present: &BTreeSet<String>,
) -> Increment {
    let Some(previous) = previous else {
        let compute = candidates.iter().map(|c| ToCompute { leaf: c.id.clone(), why: Why::NoRecord, estimated_requests: None }).collect();
        return Increment { compute, ..Increment::default() };
    };
    let changes = ledger::changes(previous, teacher, pipelines, candidates, present);
    let old: BTreeMap<&str, &LeafDone> = previous.leaves.iter().map(|l| (l.leaf.as_str(), l)).collect();
    let old_pipelines: BTreeMap<&str, &PipelineRecord> = previous.pipelines.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut inc = Increment::default();
    for c in candidates {
        let before = old.get(c.id.as_str()).copied();
        match changes.verdicts.get(&c.id) {
            Some(Verdict::Compute(why)) => {
                let estimated_requests = estimate(why, before, &old_pipelines, changes.mean_requests(&c.pipeline));
                inc.compute.push(ToCompute { leaf: c.id.clone(), why: why.clone(), estimated_requests });
            }
            // A candidate is never gone; unchanged, it keeps its files.
            Some(Verdict::Gone) | None => inc.keep.push(before.expect("invariant: an unchanged candidate was recorded").clone()),
        }
    }
    let candidate_ids: BTreeSet<&str> = candidates.iter().map(|c| c.id.as_str()).collect();
    for l in previous.leaves.iter().filter(|l| !candidate_ids.contains(l.leaf.as_str())) {
        match changes.verdicts.get(&l.leaf) {
            Some(Verdict::Gone) => inc.removed.push(l.leaf.clone()),
            _ => inc.keep.push(l.clone()),
        }
    }
    inc
}

/// Names of the steps of `new` whose fingerprint `old` does not have (all of them when the
/// pipeline is new).
pub(super) fn changed_steps(old: Option<&PipelineRecord>, new: Option<&PipelineRecord>) -> Vec<String> {
    let Some(new) = new else { return Vec::new() };
    let known: BTreeSet<&str> = old.map(|o| o.steps.iter().map(|s| s.fingerprint.as_str()).collect()).unwrap_or_default();
    new.steps.iter().filter(|s| !known.contains(s.fingerprint.as_str())).map(|s| s.name.clone()).collect()
}

/// The requests a leaf's recomputation may make, from what the manifest recorded: a moved leaf
/// none (the cache has every answer), a leaf behind changed steps what those steps made last
/// time, an edited or re-taught leaf what all of its steps made.
fn estimate(why: &Why, before: Option<&LeafDone>, old_pipelines: &BTreeMap<&str, &PipelineRecord>, new_mean: Option<u64>) -> Option<u64> {
    let all = |l: &LeafDone| l.steps.iter().map(|s| s.requests).sum::<u64>();
    match why {
        Why::Moved { .. } => Some(0),
        Why::Edited | Why::Teacher | Why::Failed => before.map(all),
        Why::Pipeline { steps } => {
            let b = before?;
            let names: Vec<&str> = old_pipelines.get(b.pipeline.as_str())?.steps.iter().map(|s| s.name.as_str()).collect();
            let changed: BTreeSet<&str> = steps.iter().map(String::as_str).collect();
            Some(names.iter().zip(&b.steps).filter(|(n, _)| changed.contains(*n)).map(|(_, s)| s.requests).sum())
        }
        // A new leaf: the average of its pipeline's committed leaves, if there are any.
        Why::New | Why::NoRecord => new_mean,
    }
}

#[cfg(test)]
#[path = "increment_tests.rs"]
mod tests;
