//! The run folder's leaves as a differential-dataflow collection (ARCHITECTURE.md: "leaf
//! collection (differential input, one record per leaf version)"): the part of planning
//! ([`super::increment::plan`]) that finds what changed.
//!
//! A leaf's version is what its committed output is a function of: its seed digest, its
//! pipeline's name and fingerprint, the teacher, and whether its last commit failed. The
//! collection `leaves` (by leaf id) holds at epoch 0 the versions the manifest recorded; the
//! taxonomy as it is now arrives at epoch 1 as retractions of the recorded versions and
//! insertions of the current ones. Every operator downstream is fed the epoch-1 updates alone,
//! arranged by leaf (and by content), where a leaf whose version did not change retracts and
//! inserts the same record, the two cancel, and no operator's logic runs for it: the work after
//! the diff is in proportion to what changed, not to the taxonomy.
//!
//! - `verdicts`: per changed leaf id, [`Why`] it is computed, or that it is gone;
//! - `moves`: per content (seeds and fingerprint), each new id that has the content of an id the
//!   taxonomy no longer has: the leaf moved and the response cache has every answer;
//! - `means`: per pipeline, the committed leaves' requests and count, maintained by `count_total`
//!   over the recorded outcomes: what a new leaf of that pipeline is estimated to cost.

use super::increment::{changed_steps, Candidate, Why};
use crate::engine::report::{Manifest, PipelineRecord};
use differential_dataflow::input::Input as _;
use differential_dataflow::operators::CountTotal as _;
use differential_dataflow::AsCollection as _;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use timely::dataflow::operators::vec::Filter as _;

/// What a leaf's committed output is a function of.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Version {
    seeds: String,
    pipeline: String,
    fingerprint: String,
    teacher: String,
    failed: bool,
}

/// What happened to a leaf whose version changed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Verdict {
    /// It is computed, for this reason.
    Compute(Why),
    /// The taxonomy no longer has it.
    Gone,
}

/// What changed between the manifest's record and this run.
#[derive(Debug, Default)]
pub struct Changes {
    /// The leaves whose version changed. A candidate that is not here is unchanged.
    pub verdicts: BTreeMap<String, Verdict>,
    /// Per pipeline, the committed leaves' total requests and their count.
    pub means: BTreeMap<String, (u64, u64)>,
    /// Leaf ids the verdict operator's logic ran for: the changed ones, however many are not.
    pub examined: usize,
}

impl Changes {
    /// The mean requests of `pipeline`'s committed leaves, if it has any.
    pub fn mean_requests(&self, pipeline: &str) -> Option<u64> {
        self.means.get(pipeline).filter(|(_, n)| *n > 0).map(|(sum, n)| sum / n)
    }
}

/// Diff the taxonomy now (`candidates`, the leaves this run may compute, and `present`, every
/// leaf id it has) against `previous`, through a differential dataflow (module docs).
pub fn changes(
    previous: &Manifest,
    teacher: &str,
    pipelines: &[PipelineRecord],
    candidates: &[Candidate],
    present: &BTreeSet<String>,
) -> Changes {
    let candidate_ids: BTreeSet<&str> = candidates.iter().map(|c| c.id.as_str()).collect();
    let recorded: Vec<(String, Version)> = previous
        .leaves
        .iter()
        .map(|l| {
            let version = Version {
                seeds: l.seeds.clone(),
                pipeline: l.pipeline.clone(),
                fingerprint: l.fingerprint.clone(),
                teacher: previous.teacher.clone(),
                failed: l.error.is_some(),
            };
            (l.leaf.clone(), version)
        })
        .collect();
    // The change: each candidate's recorded version (if any) replaced by its version now, and
    // each leaf the taxonomy no longer has retracted. A present leaf outside the candidates
    // (`--leaf`) stays as recorded.
    let mut change: Vec<((String, Version), isize)> =
        recorded.iter().filter(|(id, _)| candidate_ids.contains(id.as_str()) || !present.contains(id)).map(|r| (r.clone(), -1)).collect();
    change.extend(candidates.iter().map(|c| {
        let version = Version {
            seeds: c.seeds.clone(),
            pipeline: c.pipeline.clone(),
            fingerprint: c.fingerprint.clone(),
            teacher: teacher.to_string(),
            failed: false,
        };
        ((c.id.clone(), version), 1)
    }));
    let outcomes: Vec<(String, u64)> = previous
        .leaves
        .iter()
        .filter(|l| l.error.is_none())
        .map(|l| (l.pipeline.clone(), l.steps.iter().map(|s| s.requests).sum()))
        .collect();
    let context = Context {
        same_teacher: previous.teacher == teacher,
        recorded: recorded.iter().map(|(id, _)| id.clone()).collect(),
        present: present.clone(),
        old_pipelines: previous.pipelines.iter().map(|p| (p.name.clone(), p.clone())).collect(),
        new_pipelines: pipelines.iter().map(|p| (p.name.clone(), p.clone())).collect(),
    };
    timely::execute_directly(move |worker| run(worker, recorded, change, outcomes, context))
}

/// What the operators' logic needs besides the updates.
struct Context {
    same_teacher: bool,
    recorded: BTreeSet<String>,
    present: BTreeSet<String>,
    old_pipelines: BTreeMap<String, PipelineRecord>,
    new_pipelines: BTreeMap<String, PipelineRecord>,
}

/// Updates seen at the outputs: `(data, time, diff)`.
type Seen<D> = Rc<RefCell<Vec<(D, u32, isize)>>>;

fn run(
    worker: &mut timely::worker::Worker,
    recorded: Vec<(String, Version)>,
    change: Vec<((String, Version), isize)>,
    outcomes: Vec<(String, u64)>,
    context: Context,
) -> Changes {
    let context = Rc::new(context);
    let verdicts: Seen<(String, Verdict)> = Rc::default();
    let moves: Seen<(String, String)> = Rc::default();
    let examined = Rc::new(std::cell::Cell::new(0usize));
    let means: Seen<((String, bool), isize)> = Rc::default();
    let probe = timely::dataflow::ProbeHandle::new();
    let (mut leaves, mut committed) = worker.dataflow::<u32, _, _>(|scope| {
        let (leaves_in, leaves) = scope.new_collection::<(String, Version), isize>();
        let (committed_in, committed) = scope.new_collection::<(String, u64), isize>();
        let changed = leaves.inner.filter(|(_, t, _)| *t == 1).as_collection();

        let (ctx, seen, count) = (Rc::clone(&context), Rc::clone(&verdicts), Rc::clone(&examined));
        changed
            .clone()
            .reduce(move |leaf: &String, versions: &[(&Version, isize)], out: &mut Vec<(Verdict, isize)>| {
                count.set(count.get() + 1);
                let old = versions.iter().find(|(_, d)| *d < 0).map(|(v, _)| *v);
                let new = versions.iter().find(|(_, d)| *d > 0).map(|(v, _)| *v);
                out.push((verdict(&ctx, leaf, old, new), 1));
            })
            .inspect(move |u| seen.borrow_mut().push(u.clone()))
            .probe_with(&probe);

        let (ctx, seen) = (Rc::clone(&context), Rc::clone(&moves));
        changed
            .map(|(leaf, v)| ((v.seeds, v.fingerprint), leaf))
            .reduce(move |_content: &(String, String), ids: &[(&String, isize)], out: &mut Vec<((String, String), isize)>| {
                // Of several gone leaves with this content, the last id is the one moved from.
                let Some((from, _)) = ids.iter().rev().find(|(id, d)| *d < 0 && !ctx.present.contains(*id)) else { return };
                for (id, _) in ids.iter().filter(|(id, d)| *d > 0 && !ctx.recorded.contains(*id)) {
                    out.push((((*id).clone(), (*from).clone()), 1));
                }
            })
            .map(|(_content, to_from)| to_from)
            .inspect(move |u| seen.borrow_mut().push(u.clone()))
            .probe_with(&probe);

        // Per pipeline: its committed leaves' requests (`true`) and their count (`false`).
        let seen = Rc::clone(&means);
        committed
            .explode(|(pipeline, requests)| [((pipeline.clone(), true), requests as isize), ((pipeline, false), 1)])
            .count_total()
            .inspect(move |u| seen.borrow_mut().push(u.clone()))
            .probe_with(&probe);
        (leaves_in, committed_in)
    });

    for (pipeline, requests) in outcomes {
        committed.insert((pipeline, requests));
    }
    for r in recorded {
        leaves.insert(r);
    }
    leaves.advance_to(1);
    committed.advance_to(1);
    for (r, diff) in change {
        leaves.update(r, diff);
    }
    leaves.advance_to(2);
    committed.advance_to(2);
    leaves.flush();
    committed.flush();
    while probe.less_than(leaves.time()) {
        worker.step();
    }

    let mut changes = Changes { examined: examined.get(), ..Changes::default() };
    let moves: BTreeMap<String, String> = accumulate(&moves).into_iter().map(|(to_from, _)| to_from).collect();
    for ((leaf, verdict), _) in accumulate(&verdicts) {
        let verdict = match verdict {
            Verdict::Compute(Why::New) => match moves.get(&leaf) {
                Some(from) => Verdict::Compute(Why::Moved { from: from.clone() }),
                None => Verdict::Compute(Why::New),
            },
            v => v,
        };
        changes.verdicts.insert(leaf, verdict);
    }
    for (((pipeline, is_sum), value), _) in accumulate(&means) {
        let entry = changes.means.entry(pipeline).or_default();
        let value = u64::try_from(value).unwrap_or(0);
        if is_sum {
            entry.0 = value;
        } else {
            entry.1 = value;
        }
    }
    changes
}

/// Why a leaf whose version changed from `old` to `new` (either absent) is computed.
fn verdict(ctx: &Context, leaf: &str, old: Option<&Version>, new: Option<&Version>) -> Verdict {
    let Some(new) = new else { return Verdict::Gone };
    Verdict::Compute(match old {
        _ if !ctx.same_teacher => Why::Teacher,
        // `moves` tells a moved leaf from a new one.
        None => Why::New,
        Some(b) if b.failed => Why::Failed,
        Some(b) if b.seeds != new.seeds => Why::Edited,
        Some(b) => {
            debug_assert!(b.fingerprint != new.fingerprint || b.pipeline != new.pipeline, "{leaf}: unchanged version in the diff");
            Why::Pipeline { steps: changed_steps(ctx.old_pipelines.get(&b.pipeline), ctx.new_pipelines.get(&new.pipeline)) }
        }
    })
}

/// The updates seen at an output, accumulated: the records it holds, each with a positive count.
fn accumulate<D: Ord + Clone>(seen: &Seen<D>) -> Vec<(D, isize)> {
    let mut acc: BTreeMap<D, isize> = BTreeMap::new();
    for (d, _, diff) in seen.borrow().iter() {
        *acc.entry(d.clone()).or_default() += diff;
    }
    acc.into_iter().filter(|(_, n)| *n != 0).collect()
}
