//! The mixer's semantics on planted data (a deterministic stand-in for generated rows; the
//! real run's rows are checked in tests/mix.rs).

use super::*;
use crate::mix::recipe::{load, DedupSpec, NearSpec};
use crate::pipeline::builtin::Builtin;
use serde_json::json;

fn row(id: &str, cols: &[(&str, &str)]) -> Row {
    Row { id: id.into(), values: cols.iter().map(|(k, v)| (k.to_string(), json!(v))).collect() }
}

fn skill_leaf(name: &str, n: usize) -> LeafRows {
    LeafRows {
        leaf: name.into(),
        kind: "freeform_skill".into(),
        rows: (0..n)
            .map(|i| {
                row(&format!("{i:04}"), &[("task_description", "t"), ("question", &format!("{name} question {i}?")), ("response", &format!("answer {i} of {name}"))])
            })
            .collect(),
    }
}

fn knowledge_leaf(name: &str, chunks: usize, n: usize) -> LeafRows {
    LeafRows {
        leaf: name.into(),
        kind: "knowledge".into(),
        rows: (0..n)
            .map(|i| {
                row(
                    &format!("{i:05}"),
                    &[
                        ("domain", "birds"),
                        ("document", &format!("chunk {} of {name}", i % chunks)),
                        ("question", &format!("{name} q{i}?")),
                        ("response", &format!("r{i}")),
                    ],
                )
            })
            .collect(),
    }
}

fn lab() -> Recipe {
    let mut r = load(&Builtin, "mix/lab.yaml").unwrap();
    r.dedup = DedupSpec::default();
    r
}

fn of<'a>(m: &'a [Tagged], source: &str) -> Vec<&'a Tagged> {
    m.iter().filter(|t| t.source == source).collect()
}

#[test]
fn raft_includes_the_gold_chunk_with_probability_p() {
    let leaf = knowledge_leaf("k", 20, 10_000);
    let m = build(&lab(), &[leaf.clone()], &[]);
    let raft = of(&m.skills, "knowledge_raft");
    assert_eq!(raft.len(), 10_000);
    let mut gold = 0;
    for t in &raft {
        let row = leaf.rows.iter().find(|r| Some(r.id.as_str()) == t.record.metadata["row"].as_str()).unwrap();
        let user = &t.record.messages[1].content;
        let has = user.contains(&format!("Document:\n{}\n\n", row.get("document").unwrap()));
        assert_eq!(has, t.record.metadata["raft_gold"] == json!(true));
        assert_eq!(user.matches("Document:\n").count(), 4, "{user}");
        assert!(user.ends_with(&format!("\n\n{}", row.get("question").unwrap())));
        gold += has as usize;
    }
    // Binomial(10000, 0.4): sd 49; 5 sd either side.
    assert!((gold as f64 - 4000.0).abs() < 245.0, "gold in {gold} of 10000");
}

#[test]
fn replay_rows_are_the_phase1_rows_and_skills_get_30_per_leaf() {
    let leaves = [knowledge_leaf("k1", 3, 12), knowledge_leaf("k2", 2, 5), skill_leaf("s1", 4), skill_leaf("s2", 50)];
    let m = build(&lab(), &leaves, &[]);
    let phase1: Vec<_> = of(&m.knowledge, "knowledge_qa").iter().map(|t| (t.record.messages.clone(), t.record.unmask, t.leaf.clone())).collect();
    let replay: Vec<_> = of(&m.skills, "replay").iter().map(|t| (t.record.messages.clone(), t.record.unmask, t.leaf.clone())).collect();
    assert_eq!(phase1.len(), 17);
    assert_eq!(replay, phase1);
    assert!(phase1.iter().all(|(msgs, unmask, _)| *unmask && msgs[0].role == "system" && msgs[1].content.contains("\n\n")));
    for leaf in ["s1", "s2"] {
        let n = of(&m.skills, "skills").iter().filter(|t| t.leaf == leaf).count();
        assert_eq!(n, 30, "{leaf}");
    }
    let ids: HashSet<&str> = m.skills.iter().map(|t| t.record.id.as_str()).collect();
    assert_eq!(ids.len(), m.skills.len(), "ids are distinct within a mix");
    assert!(m.knowledge.iter().all(|t| t.record.messages[0].content == lab().system_prompt));
}

#[test]
fn the_same_seed_gives_the_same_mix_and_another_seed_another() {
    let leaves = [knowledge_leaf("k", 5, 40), skill_leaf("s", 10)];
    let a = build(&lab(), &leaves, &[]);
    let b = build(&lab(), &leaves, &[]);
    assert_eq!(a.skills, b.skills);
    assert_eq!(a.knowledge, b.knowledge);
    let mut r = lab();
    r.seed = 7;
    assert_ne!(build(&r, &leaves, &[]).skills, a.skills);
}

#[test]
fn a_leaf_s_records_do_not_depend_on_other_leaves() {
    let all = [knowledge_leaf("a", 4, 20), skill_leaf("b", 9), knowledge_leaf("c", 3, 11)];
    let full = build(&lab(), &all, &[]);
    let without_b = build(&lab(), &[all[0].clone(), all[2].clone()], &[]);
    let keep = |m: &[Tagged]| m.iter().filter(|t| t.leaf != "b").cloned().collect::<Vec<_>>();
    assert_eq!(keep(&full.skills), without_b.skills);
    assert_eq!(keep(&full.knowledge), without_b.knowledge);
}

/// A sentence of `n` words drawn from a fixed vocabulary by `seed`.
fn sentence(seed: u64, n: usize) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| format!("w{}", rng.random_range(0..5000))).collect()
}

#[test]
fn planted_near_duplicates_are_caught_and_distinct_pairs_kept() {
    let near = NearSpec { threshold: 0.8, shingle: 3, permutations: 64, bands: 16 };
    let mut recipe = lab();
    recipe.dedup = DedupSpec { exact: true, near: Some(near) };
    // 200 originals of 60 words; a copy of each with one word changed (Jaccard of 3-shingles
    // ≈ 55/61 ≈ 0.9), and 200 distinct texts sharing a 20-word preamble with an original
    // (Jaccard ≈ 0.2).
    let mut rows = Vec::new();
    for i in 0..200u64 {
        let a = sentence(i, 60);
        let mut b = a.clone();
        b[30] = "changed".into();
        let mut c = a[..20].to_vec();
        c.extend(sentence(10_000 + i, 40));
        for (k, words) in [("a", a), ("b", b), ("c", c)] {
            rows.push(row(&format!("{k}{i:03}"), &[("question", &words[..10].join(" ")), ("response", &words[10..].join(" "))]));
        }
    }
    let leaf = LeafRows { leaf: "s".into(), kind: "freeform_skill".into(), rows };
    let m = build(&recipe, &[leaf], &[]);
    let dropped: Vec<&Omitted> = m.omitted.iter().filter(|o| o.reason == "near duplicate").collect();
    let caught = dropped.iter().filter(|o| o.row.starts_with('b')).count();
    assert!(caught as f64 >= 0.95 * 200.0, "recall {caught}/200");
    assert!(dropped.iter().all(|o| o.row.starts_with('b')), "a distinct pair was dropped: {:?}", dropped.iter().find(|o| !o.row.starts_with('b')));
    for o in &dropped {
        assert_eq!(o.duplicate_of.as_ref().unwrap().1, format!("a{}", &o.row[1..]));
        assert!(o.similarity.unwrap() >= 0.8);
    }
}

#[test]
fn exact_duplicates_and_empty_turns_are_reported_not_mixed() {
    let mut leaf = skill_leaf("s", 3);
    leaf.rows.push(row("0003", &[("question", "S question 0?"), ("response", "ANSWER  0 of s")]));
    leaf.rows.push(row("0004", &[("question", "Why?"), ("response", " ")]));
    leaf.rows.push(row("0005", &[("task_description", "no pair")]));
    let mut r = lab();
    r.skills.sources = vec![SourceSpec::Skills { sample: SampleSpec::default(), unmask: false }];
    let m = build(&r, &[leaf], &[]);
    assert_eq!(m.skills.len(), 3);
    let reasons: Vec<(&str, &str)> = m.omitted.iter().map(|o| (o.row.as_str(), o.reason.as_str())).collect();
    assert!(reasons.contains(&("0003", "exact duplicate")), "{reasons:?}");
    assert!(reasons.contains(&("0004", "empty turn (skills)")), "{reasons:?}");
    assert!(reasons.iter().any(|(r, why)| *r == "0005" && why.starts_with("no question")), "{reasons:?}");
}

#[test]
fn knowledge_is_upsampled_to_its_share_of_a_precomputed_set() {
    let data = Dataset {
        path: "pre.jsonl".into(),
        records: (0..1000)
            .map(|i| Record {
                id: String::new(),
                messages: vec![Message::new("user", format!("u{i}")), Message::new("assistant", format!("a{i}"))],
                metadata: Map::new(),
                unmask: false,
            })
            .collect(),
    };
    let mut r = lab();
    r.skills.sources.push(SourceSpec::Dataset { path: "pre.jsonl".into(), sample: SampleSpec::default() });
    r.skills.upsample_knowledge = Some(0.03);
    let leaves = [knowledge_leaf("k", 2, 5), knowledge_leaf("big", 2, 40), skill_leaf("s", 3)];
    let m = build(&r, &leaves, &[data]);
    let count = |leaf: &str| m.skills.iter().filter(|t| t.leaf == leaf).count();
    assert_eq!(count("k"), 30, "5 raft + 5 replay rows drawn up to 3% of 1000");
    assert_eq!(count("big"), 80, "already above 3%");
    assert_eq!(count("pre.jsonl"), 1000);
    assert!(m.skills.iter().filter(|t| t.leaf == "pre.jsonl").all(|t| t.record.messages[0].role == "system"));
}

#[test]
fn auxiliary_rows_become_one_rewrite_task_per_document() {
    let mut leaf = knowledge_leaf("k", 2, 4);
    for (i, r) in leaf.rows.iter_mut().enumerate() {
        let t = if i < 2 { "base_document" } else { "spellcheck" };
        r.values.push(("dataset_type".into(), json!(t)));
        r.values.push(("raw_document".into(), json!(format!("raw {}", i % 2))));
    }
    let m = build(&lab(), &[leaf], &[]);
    let aux = of(&m.knowledge, "auxiliary");
    assert_eq!(aux.len(), 2, "rows 2 and 3 hold two distinct documents");
    assert!(aux.iter().all(|t| t.record.unmask && t.record.metadata["dataset"] == json!("document_spellcheck")));
    assert!(of(&m.skills, "auxiliary").iter().all(|t| !t.record.unmask));
    let user = &aux[0].record.messages[1].content;
    assert!(user.starts_with("raw 0\n\n") && lab().auxiliary_instructions["spellcheck"].iter().any(|i| user.ends_with(i.as_str())), "{user}");
}
