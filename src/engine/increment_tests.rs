//! The planner against hand-made manifests: each kind of change gets its reason, kept leaves
//! keep their records, and removals are only of leaves the taxonomy lost.

use super::*;
use crate::engine::report::{StepCounts, StepRecord};

fn pipeline(name: &str, steps: &[(&str, &str)]) -> PipelineRecord {
    let steps: Vec<StepRecord> = steps.iter().map(|(n, f)| StepRecord { name: n.to_string(), fingerprint: f.to_string() }).collect();
    let fingerprint = steps.iter().map(|s| s.fingerprint.as_str()).collect::<Vec<_>>().join("+");
    PipelineRecord { name: name.into(), file: format!("{name}.yaml"), fingerprint, steps }
}

fn done(id: &str, seeds: &str, p: &PipelineRecord, requests: &[u64]) -> LeafDone {
    LeafDone {
        leaf: id.into(),
        hash: String::new(),
        kind: "freeform_skill".into(),
        pipeline: p.name.clone(),
        seeds: seeds.into(),
        seeds_key: String::new(),
        fingerprint: p.fingerprint.clone(),
        rows: 1,
        rejects: 0,
        files: Vec::new(),
        steps: requests.iter().map(|&r| StepCounts { requests: r, ..StepCounts::default() }).collect(),
        error: None,
    }
}

fn manifest(p: &PipelineRecord, leaves: Vec<LeafDone>) -> Manifest {
    Manifest { format: 2, labflow: "x".into(), teacher: "t".into(), pipelines: vec![p.clone()], leaves }
}

fn candidate(id: &str, seeds: &str, p: &PipelineRecord) -> Candidate {
    Candidate { id: id.into(), seeds: seeds.into(), pipeline: p.name.clone(), fingerprint: p.fingerprint.clone() }
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

#[test]
fn each_change_gets_its_reason_and_unchanged_leaves_are_kept() {
    let p = pipeline("skills", &[("gen", "g1"), ("judge", "j1")]);
    let before = manifest(&p, vec![done("a", "sa", &p, &[4, 8]), done("b", "sb", &p, &[2, 2]), done("c", "sc", &p, &[1, 1])]);
    // a unchanged, b edited, c moved to d, e new.
    let now = [candidate("a", "sa", &p), candidate("b", "sb2", &p), candidate("d", "sc", &p), candidate("e", "se", &p)];
    let inc = plan(Some(&before), "t", &[p.clone()], &now, &set(&["a", "b", "d", "e"]));
    assert_eq!(inc.keep, vec![before.leaves[0].clone()]);
    let whys: Vec<(&str, &Why, Option<u64>)> = inc.compute.iter().map(|c| (c.leaf.as_str(), &c.why, c.estimated_requests)).collect();
    assert_eq!(
        whys,
        [
            ("b", &Why::Edited, Some(4)),
            ("d", &Why::Moved { from: "c".into() }, Some(0)),
            // The average of the pipeline's leaves: (12 + 4 + 2) / 3.
            ("e", &Why::New, Some(6)),
        ]
    );
    assert_eq!(inc.removed, ["c"]);
    assert_eq!(inc.estimated_requests(), 10);
}

#[test]
fn a_changed_step_recomputes_every_leaf_and_estimates_from_that_step_on() {
    let p = pipeline("skills", &[("gen", "g1"), ("judge", "j1")]);
    let edited = pipeline("skills", &[("gen", "g1"), ("judge", "j2")]);
    let before = manifest(&p, vec![done("a", "sa", &p, &[4, 8]), done("b", "sb", &p, &[2, 3])]);
    let now = [candidate("a", "sa", &edited), candidate("b", "sb", &edited)];
    let inc = plan(Some(&before), "t", &[edited.clone()], &now, &set(&["a", "b"]));
    assert!(inc.keep.is_empty());
    let steps = Why::Pipeline { steps: vec!["judge".into()] };
    assert_eq!(inc.compute.iter().map(|c| (&c.why, c.estimated_requests)).collect::<Vec<_>>(), [(&steps, Some(8)), (&steps, Some(3))]);
}

#[test]
fn another_teacher_or_a_failed_commit_recomputes_and_no_manifest_computes_everything() {
    let p = pipeline("skills", &[("gen", "g1")]);
    let mut failed = done("b", "sb", &p, &[1]);
    failed.error = Some("disk full".into());
    let before = manifest(&p, vec![done("a", "sa", &p, &[1]), failed]);
    let now = [candidate("a", "sa", &p), candidate("b", "sb", &p)];
    let inc = plan(Some(&before), "t", &[p.clone()], &now, &set(&["a", "b"]));
    assert_eq!(inc.compute.iter().map(|c| (c.leaf.as_str(), &c.why)).collect::<Vec<_>>(), [("b", &Why::Failed)]);
    let inc = plan(Some(&before), "other teacher", &[p.clone()], &now, &set(&["a", "b"]));
    assert!(inc.compute.iter().all(|c| c.why == Why::Teacher) && inc.compute.len() == 2);
    let inc = plan(None, "t", &[p.clone()], &now, &set(&["a", "b"]));
    assert!(inc.compute.iter().all(|c| c.why == Why::NoRecord && c.estimated_requests.is_none()) && inc.compute.len() == 2);
}

#[test]
fn leaves_outside_the_selection_are_kept_and_only_lost_ones_removed() {
    let p = pipeline("skills", &[("gen", "g1")]);
    let before = manifest(&p, vec![done("a", "sa", &p, &[1]), done("b", "sb", &p, &[1]), done("gone", "sg", &p, &[1])]);
    // `--leaf a`: b is still in the taxonomy, so it is kept whatever it is now.
    let inc = plan(Some(&before), "t", &[p.clone()], &[candidate("a", "sa2", &p)], &set(&["a", "b"]));
    assert_eq!(inc.compute.len(), 1);
    assert_eq!(inc.keep.iter().map(|l| l.leaf.as_str()).collect::<Vec<_>>(), ["b"]);
    assert_eq!(serde_json::to_value(&inc).unwrap()["kept"], serde_json::json!(["b"]));
    assert_eq!(inc.removed, ["gone"]);
}

#[test]
fn seed_digests_see_values_and_column_names() {
    use crate::operators::batch::text_batch;
    let a = text_batch(&[("q", vec!["x".into(), "y".into()])]).unwrap();
    let same = text_batch(&[("q", vec!["x".into(), "y".into()])]).unwrap();
    let value = text_batch(&[("q", vec!["x".into(), "z".into()])]).unwrap();
    let name = text_batch(&[("r", vec!["x".into(), "y".into()])]).unwrap();
    assert_eq!(seeds_digest(&a), seeds_digest(&same));
    assert_ne!(seeds_digest(&a), seeds_digest(&value));
    assert_ne!(seeds_digest(&a), seeds_digest(&name));
}

#[test]
fn the_ledger_examines_only_the_leaves_that_changed() {
    let p = pipeline("skills", &[("gen", "g1")]);
    let ids: Vec<String> = (0..200).map(|i| format!("leaf{i:03}")).collect();
    let before = manifest(&p, ids.iter().map(|id| done(id, &format!("s{id}"), &p, &[3])).collect());
    let mut now: Vec<Candidate> = ids.iter().map(|id| candidate(id, &format!("s{id}"), &p)).collect();
    now[17].seeds = "edited".into();
    let present: BTreeSet<String> = ids.iter().cloned().collect();
    let changes = ledger::changes(&before, "t", &[p.clone()], &now, &present);
    assert_eq!(changes.examined, 1);
    assert_eq!(changes.verdicts.into_iter().collect::<Vec<_>>(), [(ids[17].clone(), Verdict::Compute(Why::Edited))]);
    assert_eq!(changes.means.get("skills"), Some(&(600, 200)));
}

/// The planner as a direct comparison of maps, the specification the ledger's dataflow is
/// checked against.
fn direct_plan(
    previous: &Manifest,
    teacher: &str,
    pipelines: &[PipelineRecord],
    candidates: &[Candidate],
    present: &BTreeSet<String>,
) -> Increment {
    let old: BTreeMap<&str, &LeafDone> = previous.leaves.iter().map(|l| (l.leaf.as_str(), l)).collect();
    let old_pipelines: BTreeMap<&str, &PipelineRecord> = previous.pipelines.iter().map(|p| (p.name.as_str(), p)).collect();
    let new_pipelines: BTreeMap<&str, &PipelineRecord> = pipelines.iter().map(|p| (p.name.as_str(), p)).collect();
    let gone: BTreeMap<(&str, &str), &str> = previous
        .leaves
        .iter()
        .filter(|l| !present.contains(&l.leaf))
        .map(|l| ((l.seeds.as_str(), l.fingerprint.as_str()), l.leaf.as_str()))
        .collect();
    let mean = |name: &str| {
        let same: Vec<u64> =
            old.values().filter(|l| l.pipeline == name && l.error.is_none()).map(|l| l.steps.iter().map(|s| s.requests).sum()).collect();
        (!same.is_empty()).then(|| same.iter().sum::<u64>() / same.len() as u64)
    };
    let mut inc = Increment::default();
    for c in candidates {
        let before = old.get(c.id.as_str()).copied();
        let why = match before {
            _ if previous.teacher != teacher => Some(Why::Teacher),
            None => Some(gone.get(&(c.seeds.as_str(), c.fingerprint.as_str())).map_or(Why::New, |f| Why::Moved { from: f.to_string() })),
            Some(b) if b.error.is_some() => Some(Why::Failed),
            Some(b) if b.seeds != c.seeds => Some(Why::Edited),
            Some(b) if b.fingerprint != c.fingerprint || b.pipeline != c.pipeline => Some(Why::Pipeline {
                steps: changed_steps(old_pipelines.get(b.pipeline.as_str()).copied(), new_pipelines.get(c.pipeline.as_str()).copied()),
            }),
            Some(_) => None,
        };
        match why {
            None => inc.keep.push(before.unwrap().clone()),
            Some(why) => {
                let estimated_requests = estimate(&why, before, &old_pipelines, mean(&c.pipeline));
                inc.compute.push(ToCompute { leaf: c.id.clone(), why, estimated_requests });
            }
        }
    }
    for l in previous.leaves.iter().filter(|l| !candidates.iter().any(|c| c.id == l.leaf)) {
        if present.contains(&l.leaf) {
            inc.keep.push(l.clone());
        } else {
            inc.removed.push(l.leaf.clone());
        }
    }
    inc
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]
    /// Random records and taxonomies over a few ids, seeds and two versions of a pipeline: the
    /// ledger's plan is the direct comparison's.
    #[test]
    fn the_ledger_plans_what_a_direct_comparison_plans(
        recorded in proptest::collection::btree_map(0u8..8, (0u8..3, proptest::bool::ANY, proptest::bool::ANY, 0u64..9), 0..8),
        now in proptest::collection::btree_map(0u8..8, (0u8..3, proptest::bool::ANY), 0..8),
        extra in proptest::collection::btree_set(0u8..8, 0..3),
        other_teacher in proptest::bool::weighted(0.1),
    ) {
        let v1 = pipeline("skills", &[("gen", "g1"), ("judge", "j1")]);
        let v2 = pipeline("skills", &[("gen", "g1"), ("judge", "j2")]);
        let leaves = recorded
            .iter()
            .map(|(&id, &(seeds, second, failed, requests))| {
                let mut l = done(&format!("l{id}"), &format!("s{seeds}"), if second { &v2 } else { &v1 }, &[requests, 1]);
                l.error = failed.then(|| "failed".to_string());
                l
            })
            .collect();
        let before = manifest(&v1, leaves);
        let candidates: Vec<Candidate> =
            now.iter().map(|(&id, &(seeds, second))| candidate(&format!("l{id}"), &format!("s{seeds}"), if second { &v2 } else { &v1 })).collect();
        let present: BTreeSet<String> = candidates.iter().map(|c| c.id.clone()).chain(extra.iter().map(|i| format!("l{i}"))).collect();
        let teacher = if other_teacher { "u" } else { "t" };
        let got = plan(Some(&before), teacher, &[v2.clone()], &candidates, &present);
        let want = direct_plan(&before, teacher, &[v2.clone()], &candidates, &present);
        proptest::prop_assert_eq!(&got.compute, &want.compute);
        proptest::prop_assert_eq!(got.keep.iter().map(|l| &l.leaf).collect::<Vec<_>>(), want.keep.iter().map(|l| &l.leaf).collect::<Vec<_>>());
        proptest::prop_assert_eq!(&got.removed, &want.removed);
    }
}
