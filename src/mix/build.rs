//! Building the two mixes from a run's rows, in memory: dedup over every item the recipe reads,
//! then each source per leaf (records, then its sample), then the knowledge upsampling rule.
//!
//! Every draw is seeded from the recipe's seed, the mix, the source's position and the leaf id
//! alone, so one leaf's records do not depend on any other leaf's rows: re-mixing after a leaf
//! changed gives every other leaf the same records.

use crate::mix::dedup::{dedup, Dropped};
use crate::mix::recipe::{MixSpec, Recipe, SampleSpec, SourceSpec};
use crate::mix::records::{question_response, record_id, Message, Record, Row};
use crate::operators::sample::{draw, Size};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};

/// One leaf's generated rows.
#[derive(Debug, Clone)]
pub struct LeafRows {
    /// Leaf id (its folder path).
    pub leaf: String,
    /// `knowledge`, `freeform_skill` or `grounded_skill`.
    pub kind: String,
    /// Its rows in lineage order.
    pub rows: Vec<Row>,
}

impl LeafRows {
    fn is_knowledge(&self) -> bool {
        self.kind == "knowledge"
    }
}

/// A precomputed dataset a `dataset` source names, already read.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The path as the recipe gives it.
    pub path: String,
    /// Its records.
    pub records: Vec<Record>,
}

/// A record and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Tagged {
    /// The record.
    pub record: Record,
    /// The leaf, or the dataset's path.
    pub leaf: String,
    /// The source's name (`skills`, `knowledge_raft`, …).
    pub source: &'static str,
}

/// A row left out of every mix, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Omitted {
    /// The leaf (or dataset path).
    pub leaf: String,
    /// The row's lineage id (or the dataset row's index).
    pub row: String,
    /// `exact duplicate`, `near duplicate`, `empty turn`, `no question`, `no instruction`.
    pub reason: String,
    /// For duplicates: the kept row's leaf and row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<(String, String)>,
    /// For near duplicates: the Jaccard similarity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f64>,
}

/// Both mixes, in output order, and what was left out.
#[derive(Debug, Clone, Default)]
pub struct Mixed {
    /// Phase 1.
    pub knowledge: Vec<Tagged>,
    /// Phase 2.
    pub skills: Vec<Tagged>,
    /// Rows left out, in input order.
    pub omitted: Vec<Omitted>,
    /// Things a person should know (a source with no rows to read, …).
    pub warnings: Vec<String>,
}

/// What dedup looks at: a generated pair, a rewritten document, or a dataset record.
enum Item<'a> {
    Pair { leaf: usize, row: &'a Row },
    Aux { leaf: usize, row: &'a Row },
    Data { set: usize, index: usize },
}

fn pair_text(row: &Row) -> Option<String> {
    question_response(row).map(|(q, r)| format!("{q}\n{r}"))
}

fn is_auxiliary(row: &Row) -> bool {
    row.get("dataset_type").is_some_and(|t| t != "base_document")
}

/// A seed for one draw: the recipe's seed, what is drawn, and for whom.
fn seed_of(seed: u64, parts: &[&str]) -> u64 {
    let mut h = blake3::Hasher::new_derive_key("labflow 2026 mix draw");
    h.update(&seed.to_le_bytes());
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("invariant: 8 bytes"))
}

/// Keep `sample` of `records`, in their order; a record picked `j > 0` more times gets a child id.
pub fn sample(records: Vec<Tagged>, spec: &SampleSpec, seed: u64) -> Vec<Tagged> {
    let size = match (spec.count, spec.fraction) {
        (Some(c), _) => Size::Count(c as usize),
        (None, Some(f)) => Size::Fraction(f),
        (None, None) => return records,
    };
    let times = draw(records.len(), size.picks(records.len(), spec.replace), spec.replace, seed);
    let mut out = Vec::new();
    for (t, times) in records.into_iter().zip(times) {
        for j in 0..times {
            let mut t = t.clone();
            if j > 0 {
                t.record.id = record_id(&[&t.record.id, &j.to_string()]);
            }
            out.push(t);
        }
    }
    out
}

/// Build both mixes.
pub fn build(recipe: &Recipe, leaves: &[LeafRows], datasets: &[Dataset]) -> Mixed {
    let mut mixed = Mixed::default();
    // Every item, in a fixed order: leaves by id (pairs, then rewritten documents), then datasets.
    let mut items = Vec::new();
    let mut texts = Vec::new();
    for (li, leaf) in leaves.iter().enumerate() {
        for row in &leaf.rows {
            match pair_text(row) {
                Some(t) => {
                    items.push(Item::Pair { leaf: li, row });
                    texts.push(t);
                }
                None => mixed.omitted.push(omit(&leaf.leaf, &row.id, "no question: the row has neither question/response nor output")),
            }
        }
        let mut docs = HashSet::new();
        for row in leaf.rows.iter().filter(|r| is_auxiliary(r)) {
            if let Some(doc) = row.get("document").filter(|d| docs.insert(*d)) {
                items.push(Item::Aux { leaf: li, row });
                texts.push(doc.to_string());
            }
        }
    }
    for (si, set) in datasets.iter().enumerate() {
        for (index, r) in set.records.iter().enumerate() {
            items.push(Item::Data { set: si, index });
            texts.push(r.messages.iter().filter(|m| m.role != "system").map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n"));
        }
    }
    let text_refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let dropped = dedup(&text_refs, &recipe.dedup);
    let gone: HashSet<usize> = dropped.iter().map(|d| d.index).collect();
    let name_of = |i: usize| -> (String, String) {
        match &items[i] {
            Item::Pair { leaf, row } | Item::Aux { leaf, row } => (leaves[*leaf].leaf.clone(), row.id.clone()),
            Item::Data { set, index } => (datasets[*set].path.clone(), index.to_string()),
        }
    };
    for Dropped { index, of, similarity, exact } in &dropped {
        let (leaf, row) = name_of(*index);
        let suffix = if matches!(items[*index], Item::Aux { .. }) { " (rewritten document)" } else { "" };
        mixed.omitted.push(Omitted {
            leaf,
            row,
            reason: format!("{} duplicate{suffix}", if *exact { "exact" } else { "near" }),
            duplicate_of: Some(name_of(*of)),
            similarity: (!exact).then_some(*similarity),
        });
    }
    // What survived, per leaf and per dataset.
    let mut pairs: Vec<Vec<&Row>> = vec![Vec::new(); leaves.len()];
    let mut aux: Vec<Vec<&Row>> = vec![Vec::new(); leaves.len()];
    let mut kept_data: Vec<Vec<&Record>> = vec![Vec::new(); datasets.len()];
    for (_, item) in items.iter().enumerate().filter(|(i, _)| !gone.contains(i)) {
        match item {
            Item::Pair { leaf, row } => pairs[*leaf].push(row),
            Item::Aux { leaf, row } => aux[*leaf].push(row),
            Item::Data { set, index } => kept_data[*set].push(&datasets[*set].records[*index]),
        }
    }
    let ctx = Ctx { recipe, leaves, pairs: &pairs, aux: &aux, data: &kept_data, datasets };
    let knowledge = ctx.mix("knowledge", &recipe.knowledge, None, &mut mixed);
    let skills = ctx.mix("skills", &recipe.skills, Some(&knowledge), &mut mixed);
    mixed.knowledge = knowledge.into_iter().flatten().flatten().collect();
    mixed.skills = skills.into_iter().flatten().flatten().collect();
    mixed
}

fn omit(leaf: &str, row: &str, reason: &str) -> Omitted {
    Omitted { leaf: leaf.to_string(), row: row.to_string(), reason: reason.to_string(), duplicate_of: None, similarity: None }
}

/// A mix's records: per source, per leaf (datasets: per file), in output order.
type Grid = Vec<Vec<Vec<Tagged>>>;

struct Ctx<'a> {
    recipe: &'a Recipe,
    leaves: &'a [LeafRows],
    pairs: &'a [Vec<&'a Row>],
    aux: &'a [Vec<&'a Row>],
    data: &'a [Vec<&'a Record>],
    datasets: &'a [Dataset],
}

impl Ctx<'_> {
    fn mix(&self, mix: &str, spec: &MixSpec, knowledge: Option<&Grid>, out: &mut Mixed) -> Grid {
        let mut grid: Grid = Vec::new();
        for (si, source) in spec.sources.iter().enumerate() {
            let at = si.to_string();
            let mut per_leaf = Vec::new();
            if let SourceSpec::Dataset { path, sample: s } = source {
                for (di, set) in self.datasets.iter().enumerate().filter(|(_, d)| &d.path == path) {
                    let records = self.data[di]
                        .iter()
                        .enumerate()
                        .map(|(i, r)| {
                            let mut r = (*r).clone();
                            if r.id.is_empty() {
                                r.id = record_id(&["dataset", path.as_str(), i.to_string().as_str()]);
                            }
                            Tagged { record: r, leaf: set.path.clone(), source: "dataset" }
                        })
                        .collect();
                    per_leaf.push(self.finish(records, s, &[mix, at.as_str(), path.as_str()], out));
                }
                grid.push(per_leaf);
                continue;
            }
            for (li, leaf) in self.leaves.iter().enumerate() {
                let seed = |what: &str| seed_of(self.recipe.seed, &[mix, at.as_str(), what, leaf.leaf.as_str()]);
                let tag = |record: Record| Tagged { record, leaf: leaf.leaf.clone(), source: source.name() };
                let records = match source {
                    SourceSpec::Skills { sample: s, unmask } if !leaf.is_knowledge() => {
                        let recs = self.pairs[li].iter().map(|row| tag(skill_record(leaf, row, *unmask))).collect();
                        self.finish(recs, s, &[mix, at.as_str(), leaf.leaf.as_str()], out)
                    }
                    SourceSpec::KnowledgeQa { sample: s, unmask } if leaf.is_knowledge() => {
                        let recs = self.pairs[li].iter().map(|row| tag(qa_record(leaf, row, *unmask))).collect();
                        self.finish(recs, s, &[mix, at.as_str(), leaf.leaf.as_str()], out)
                    }
                    SourceSpec::KnowledgeRaft { p, k, sample: s, unmask } if leaf.is_knowledge() => {
                        let mut rng = StdRng::seed_from_u64(seed("raft"));
                        let docs = documents(leaf);
                        if docs.len() < 2 && !self.pairs[li].is_empty() {
                            out.warnings.push(format!(
                                "{}: one document chunk only, so its RAFT rows have no distractors",
                                leaf.leaf
                            ));
                        }
                        let recs =
                            self.pairs[li].iter().map(|row| tag(raft_record(leaf, row, &docs, *p, *k, *unmask, &mut rng))).collect();
                        self.finish(recs, s, &[mix, at.as_str(), leaf.leaf.as_str()], out)
                    }
                    SourceSpec::Auxiliary { sample: s, unmask } if leaf.is_knowledge() => {
                        let unmask = unmask.unwrap_or(mix == "knowledge");
                        let mut rng = StdRng::seed_from_u64(seed("auxiliary"));
                        let mut recs = Vec::new();
                        for row in &self.aux[li] {
                            match aux_record(leaf, row, &self.recipe.auxiliary_instructions, unmask, &mut rng) {
                                Some(r) => recs.push(tag(r)),
                                None => out.omitted.push(omit(
                                    &leaf.leaf,
                                    &row.id,
                                    &format!(
                                        "no instruction: the recipe's auxiliary_instructions have none for dataset_type {:?}",
                                        row.get("dataset_type").unwrap_or("")
                                    ),
                                )),
                            }
                        }
                        self.finish(recs, s, &[mix, at.as_str(), leaf.leaf.as_str()], out)
                    }
                    SourceSpec::Replay { of } => {
                        let knowledge = knowledge.expect("invariant: the skills mix is built after the knowledge mix");
                        let mut recs = Vec::new();
                        for (ki, ks) in self.recipe.knowledge.sources.iter().enumerate() {
                            // Leaf sources' records sit at the leaf's index; datasets are no leaf's.
                            if of.iter().any(|o| o == ks.name()) && !matches!(ks, SourceSpec::Dataset { .. }) {
                                for t in &knowledge[ki][li] {
                                    let mut record = t.record.clone();
                                    record.id = record_id(&["replay", &record.id]);
                                    recs.push(Tagged { record, leaf: leaf.leaf.clone(), source: "replay" });
                                }
                            }
                        }
                        recs
                    }
                    _ => Vec::new(),
                };
                per_leaf.push(records);
            }
            grid.push(per_leaf);
        }
        if let Some(share) = spec.upsample_knowledge {
            self.upsample(mix, spec, share, &mut grid);
        }
        grid
    }

    /// Drop records with an empty turn (reported), then sample.
    fn finish(&self, records: Vec<Tagged>, s: &SampleSpec, scope: &[&str], out: &mut Mixed) -> Vec<Tagged> {
        let (empty, full): (Vec<_>, Vec<_>) = records.into_iter().partition(|t| t.record.has_empty_turn());
        for t in empty {
            let row = t.record.metadata.get("row").and_then(Value::as_str).unwrap_or(&t.record.id).to_string();
            out.omitted.push(omit(&t.leaf, &row, &format!("empty turn ({})", t.source)));
        }
        let mut full = full;
        for t in &mut full {
            t.record.set_system(&self.recipe.system_prompt);
        }
        sample(full, s, seed_of(self.recipe.seed, scope))
    }

    /// The reference's rule: a knowledge leaf whose records in this mix are fewer than `share`
    /// of the mix's dataset records is drawn again, with replacement, up to that many.
    fn upsample(&self, mix: &str, spec: &MixSpec, share: f64, grid: &mut Grid) {
        let data: usize = spec
            .sources
            .iter()
            .zip(grid.iter())
            .filter(|(s, _)| matches!(s, SourceSpec::Dataset { .. }))
            .map(|(_, g)| g.iter().map(Vec::len).sum::<usize>())
            .sum();
        let want = (data as f64 * share) as usize;
        for (li, leaf) in self.leaves.iter().enumerate().filter(|(_, l)| l.is_knowledge()) {
            let cols: Vec<usize> = (0..spec.sources.len()).filter(|&si| !matches!(spec.sources[si], SourceSpec::Dataset { .. })).collect();
            let have: usize = cols.iter().map(|&si| grid[si][li].len()).sum();
            if have == 0 || have >= want {
                continue;
            }
            let all: Vec<Tagged> = cols.iter().flat_map(|&si| std::mem::take(&mut grid[si][li])).collect();
            let up = SampleSpec { count: Some(want as u64), fraction: None, replace: true };
            for t in sample(all, &up, seed_of(self.recipe.seed, &[mix, "upsample", leaf.leaf.as_str()])) {
                let si = cols.iter().copied().find(|&si| spec_name(self.recipe, mix, si) == t.source).unwrap_or(cols[0]);
                grid[si][li].push(t);
            }
        }
    }
}

fn spec_name(recipe: &Recipe, mix: &str, si: usize) -> &'static str {
    let spec = if mix == "knowledge" { &recipe.knowledge } else { &recipe.skills };
    spec.sources[si].name()
}

/// The leaf's distinct document chunks, in first-seen order.
fn documents(leaf: &LeafRows) -> Vec<String> {
    let mut seen = HashSet::new();
    leaf.rows.iter().filter_map(|r| r.get("document")).filter(|d| seen.insert(*d)).map(str::to_string).collect()
}

/// The row's columns other than those a record's turns hold, plus where it came from.
fn metadata(leaf: &LeafRows, row: &Row, skip: &[&str]) -> Map<String, Value> {
    let mut m = Map::new();
    for (k, v) in &row.values {
        if !skip.contains(&k.as_str()) {
            m.insert(k.clone(), v.clone());
        }
    }
    m.insert("leaf".into(), leaf.leaf.clone().into());
    m.insert("row".into(), row.id.clone().into());
    m
}

fn skill_record(leaf: &LeafRows, row: &Row, unmask: bool) -> Record {
    let (q, r) = question_response(row).unwrap_or_default();
    let mut meta = metadata(leaf, row, &["question", "response", "output"]);
    meta.insert("dataset".into(), leaf.kind.clone().into());
    Record {
        id: record_id(&["skills", &leaf.leaf, &row.id]),
        messages: vec![Message::new("user", q), Message::new("assistant", r)],
        metadata: meta,
        unmask,
    }
}

/// Metadata of a knowledge record, as the reference's `_generate_knowledge_qa_dataset`.
fn knowledge_meta(leaf: &LeafRows, row: &Row, dataset: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("sdg_document".into(), row.get("document").unwrap_or("").into());
    m.insert("domain".into(), row.get("domain").unwrap_or("").into());
    m.insert("dataset".into(), dataset.into());
    if let (Some(raw), Some(t)) = (row.get("raw_document"), row.get("dataset_type")) {
        m.insert("raw_document".into(), raw.into());
        m.insert("dataset_type".into(), t.into());
    }
    m.insert("leaf".into(), leaf.leaf.clone().into());
    m.insert("row".into(), row.id.clone().into());
    m
}

fn qa_record(leaf: &LeafRows, row: &Row, unmask: bool) -> Record {
    let (q, r) = question_response(row).unwrap_or_default();
    let doc = row.get("document").unwrap_or("");
    Record {
        id: record_id(&["knowledge_qa", &leaf.leaf, &row.id]),
        messages: vec![Message::new("user", format!("{doc}\n\n{q}")), Message::new("assistant", r)],
        metadata: knowledge_meta(leaf, row, "document_knowledge_qa"),
        unmask,
    }
}

/// The question with `k` documents (the reference's `_add_extra_contexts_to_samples`): with
/// probability `p` the gold chunk and `k - 1` others, else `k` others, shuffled; fewer when the
/// leaf has fewer other chunks.
fn raft_record(leaf: &LeafRows, row: &Row, docs: &[String], p: f64, k: usize, unmask: bool, rng: &mut StdRng) -> Record {
    let (q, r) = question_response(row).unwrap_or_default();
    let gold = row.get("document").unwrap_or("");
    let others: Vec<&str> = docs.iter().map(String::as_str).filter(|d| *d != gold).collect();
    let with_gold = others.is_empty() || rng.random::<f64>() < p;
    let mut picked: Vec<&str> =
        others.choose_multiple(rng, if with_gold { k.saturating_sub(1) } else { k }).copied().collect();
    if with_gold {
        picked.push(gold);
    }
    picked.shuffle(rng);
    let context: String = picked.iter().map(|d| format!("Document:\n{d}\n\n")).collect::<Vec<_>>().join("\n");
    let mut meta = knowledge_meta(leaf, row, &format!("document_knowledge_qa_raft_p{p}"));
    meta.insert("raft_gold".into(), with_gold.into());
    Record {
        id: record_id(&["knowledge_raft", &leaf.leaf, &row.id]),
        messages: vec![Message::new("user", format!("{context}\n\n{q}")), Message::new("assistant", r)],
        metadata: meta,
        unmask,
    }
}

/// A rewrite task (the reference's `_create_auxiliary_dataset`): the original document and an
/// instruction for this `dataset_type`; the answer is the rewritten document.
fn aux_record(
    leaf: &LeafRows,
    row: &Row,
    instructions: &BTreeMap<String, Vec<String>>,
    unmask: bool,
    rng: &mut StdRng,
) -> Option<Record> {
    let kind = row.get("dataset_type")?;
    let instruction = instructions.get(kind)?.choose(rng)?;
    let raw = row.get("raw_document").unwrap_or("");
    let mut meta = Map::new();
    meta.insert("dataset_type".into(), kind.into());
    meta.insert("raw_document".into(), raw.into());
    meta.insert("dataset".into(), format!("document_{kind}").into());
    meta.insert("domain".into(), row.get("domain").unwrap_or("").into());
    meta.insert("leaf".into(), leaf.leaf.clone().into());
    meta.insert("row".into(), row.id.clone().into());
    Some(Record {
        id: record_id(&["auxiliary", &leaf.leaf, &row.id]),
        messages: vec![Message::new("user", format!("{raw}\n\n{instruction}")), Message::new("assistant", row.get("document")?)],
        metadata: meta,
        unmask,
    })
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
