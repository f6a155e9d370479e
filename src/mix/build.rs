//! Building the two mixes from a run's rows, a leaf at a time: every item the recipe reads goes
//! through one dedup [`Index`] first, then each leaf's surviving rows become records, source by
//! source (records, then the source's sample), then the knowledge upsampling rule.
//!
//! Every draw is seeded from the recipe's seed, the mix, the source's position and the leaf id
//! alone, so one leaf's records do not depend on any other leaf's rows (dedup aside): re-mixing
//! after a leaf changed gives every other leaf the same records.

use crate::mix::dedup::{Dropped, Index};
use crate::mix::recipe::{MixSpec, Recipe, SampleSpec, SourceSpec};
use crate::mix::records::{question_response, record_id, Message, Record, Row};
use crate::operators::sample::draw;
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
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Omitted {
    /// The leaf (or dataset path).
    pub leaf: String,
    /// The row's lineage id (or the dataset row's index).
    pub row: String,
    /// `exact duplicate`, `near duplicate`, `empty turn`, `no question`, `no instruction`.
    pub reason: String,
    /// For duplicates: the kept row's leaf and row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<(String, String)>,
    /// For near duplicates: the Jaccard similarity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

/// What dedup reads of one leaf, in a fixed order: its pairs (question and response), then its
/// rewritten documents (one per distinct document).
#[derive(Debug, Clone, Default)]
pub struct LeafItems {
    /// Each item's text.
    pub texts: Vec<String>,
    /// Each item's row (its index in the leaf's rows), and whether it is a rewritten document.
    pub refs: Vec<(usize, bool)>,
    /// Rows that are no item (no question and response).
    pub omitted: Vec<Omitted>,
}

/// The items of `leaf`.
pub fn leaf_items(leaf: &LeafRows) -> LeafItems {
    let mut items = LeafItems::default();
    for (i, row) in leaf.rows.iter().enumerate() {
        match question_response(row) {
            Some((q, r)) => {
                items.texts.push(format!("{q}\n{r}"));
                items.refs.push((i, false));
            }
            None => items.omitted.push(omit(&leaf.leaf, &row.id, "no question: the row has neither question/response nor output")),
        }
    }
    let mut docs = HashSet::new();
    for (i, row) in leaf.rows.iter().enumerate().filter(|(_, r)| is_auxiliary(r)) {
        if let Some(doc) = row.get("document").filter(|d| docs.insert(*d)) {
            items.texts.push(doc.to_string());
            items.refs.push((i, true));
        }
    }
    items
}

/// The items of a dataset: each record's non-system turns.
pub fn dataset_items(set: &Dataset) -> Vec<String> {
    set.records
        .iter()
        .map(|r| r.messages.iter().filter(|m| m.role != "system").map(|m| m.content.as_str()).collect::<Vec<_>>().join("\n"))
        .collect()
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
/// `spec.seed`, when given, replaces `seed`.
pub fn sample(records: Vec<Tagged>, spec: &SampleSpec, seed: u64) -> Vec<Tagged> {
    // A recipe's sizes are checked when it is loaded; an unchecked one keeps every row.
    let Ok(Some(size)) = spec.size() else { return records };
    let seed = spec.seed.unwrap_or(seed);
    let times = draw(records.len(), size.picks(records.len(), spec.replace), spec.replace, seed);
    let mut out = Vec::new();
    for (t, times) in records.into_iter().zip(times) {
        if times == 0 {
            continue;
        }
        // The first pick keeps the record (and its id); each further pick is a copy.
        let at = out.len();
        out.push(t);
        for j in 1..times {
            let mut copy = out[at].clone();
            copy.record.id = record_id(&[&out[at].record.id, &j.to_string()]);
            out.push(copy);
        }
    }
    out
}

/// The report line of a dropped item; `name` gives an item's (leaf or dataset, row, whether it
/// is a rewritten document).
pub fn duplicate(d: &Dropped, name: impl Fn(usize) -> (String, String, bool)) -> Omitted {
    let (leaf, row, aux) = name(d.index);
    let (of_leaf, of_row, _) = name(d.of);
    let suffix = if aux { " (rewritten document)" } else { "" };
    Omitted {
        leaf,
        row,
        reason: format!("{} duplicate{suffix}", if d.exact { "exact" } else { "near" }),
        duplicate_of: Some((of_leaf, of_row)),
        similarity: (!d.exact).then_some(d.similarity),
    }
}

/// Records of one leaf (or of the datasets) in both mixes, in output order.
#[derive(Debug, Clone, Default)]
pub struct Part {
    /// Knowledge mix records.
    pub knowledge: Vec<Tagged>,
    /// Skills mix records.
    pub skills: Vec<Tagged>,
    /// Rows left out.
    pub omitted: Vec<Omitted>,
    /// Things to know.
    pub warnings: Vec<String>,
}

/// Both mixes built in memory (what [`crate::mix::mix`] streams): the datasets' records first,
/// then each leaf's in id order.
pub fn build(recipe: &Recipe, leaves: &[LeafRows], datasets: &[Dataset]) -> Mixed {
    let mut index = Index::new(&recipe.dedup);
    let mut names: Vec<(String, String, bool)> = Vec::new();
    for set in datasets {
        let texts = dataset_items(set);
        names.extend((0..texts.len()).map(|i| (set.path.clone(), i.to_string(), false)));
        index.add(&texts);
    }
    let mut items = Vec::new();
    for leaf in leaves {
        let it = leaf_items(leaf);
        names.extend(it.refs.iter().map(|&(row, aux)| (leaf.leaf.clone(), leaf.rows[row].id.clone(), aux)));
        index.add(&it.texts);
        items.push(it);
    }
    let dropped = index.resolve();
    let mut gone = vec![false; names.len()];
    let mut mixed = Mixed::default();
    for it in &items {
        mixed.omitted.extend(it.omitted.iter().cloned());
    }
    for d in &dropped {
        gone[d.index] = true;
        mixed.omitted.push(duplicate(d, |i| names[i].clone()));
    }
    let mut at = 0;
    let mut data_gone = Vec::new();
    for set in datasets {
        data_gone.push(gone[at..at + set.records.len()].to_vec());
        at += set.records.len();
    }
    let (mixer, part) = Mixer::new(recipe, datasets, &data_gone);
    let mut parts = vec![part];
    for (leaf, it) in leaves.iter().zip(&items) {
        parts.push(mixer.leaf(leaf, it, &gone[at..at + it.texts.len()]));
        at += it.texts.len();
    }
    for p in parts {
        mixed.knowledge.extend(p.knowledge);
        mixed.skills.extend(p.skills);
        mixed.omitted.extend(p.omitted);
        mixed.warnings.extend(p.warnings);
    }
    mixed
}

fn omit(leaf: &str, row: &str, reason: &str) -> Omitted {
    Omitted { leaf: leaf.to_string(), row: row.to_string(), reason: reason.to_string(), duplicate_of: None, similarity: None }
}

/// Builds each leaf's records once the datasets are known.
pub struct Mixer<'a> {
    recipe: &'a Recipe,
    /// Dataset records in each mix (knowledge, skills), for the upsampling rule.
    data_rows: [usize; 2],
}

impl<'a> Mixer<'a> {
    /// The mixer, and the datasets' records (`gone[d][i]`: record `i` of dataset `d` is a
    /// duplicate).
    pub fn new(recipe: &'a Recipe, datasets: &[Dataset], gone: &[Vec<bool>]) -> (Mixer<'a>, Part) {
        let mut part = Part::default();
        let mut data_rows = [0; 2];
        for (m, (mix, spec)) in [("knowledge", &recipe.knowledge), ("skills", &recipe.skills)].into_iter().enumerate() {
            for (si, source) in spec.sources.iter().enumerate() {
                let SourceSpec::Dataset { path, sample: s } = source else { continue };
                let Some(d) = datasets.iter().position(|d| &d.path == path) else { continue };
                let records: Vec<Tagged> = datasets[d]
                    .records
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !gone.get(d).and_then(|g| g.get(*i)).copied().unwrap_or(false))
                    .map(|(i, r)| {
                        let mut r = r.clone();
                        if r.id.is_empty() {
                            r.id = record_id(&["dataset", path.as_str(), i.to_string().as_str()]);
                        }
                        Tagged { record: r, leaf: path.clone(), source: "dataset" }
                    })
                    .collect();
                let at = si.to_string();
                let out = finish(recipe, records, s, &[mix, at.as_str(), path.as_str()], &mut part);
                data_rows[m] += out.len();
                if m == 0 {
                    part.knowledge.extend(out)
                } else {
                    part.skills.extend(out)
                }
            }
        }
        (Mixer { recipe, data_rows }, part)
    }

    /// The datasets' records in each mix (knowledge, skills), which the upsampling rule reads.
    pub fn data_rows(&self) -> [usize; 2] {
        self.data_rows
    }

    /// The records of `leaf`, whose items are `items` (`gone[k]`: item `k` is a duplicate).
    pub fn leaf(&self, leaf: &LeafRows, items: &LeafItems, gone: &[bool]) -> Part {
        let mut part = Part::default();
        let mut pairs = Vec::new();
        let mut aux = Vec::new();
        for (&(row, is_aux), _) in items.refs.iter().zip(gone).filter(|(_, g)| !**g) {
            if is_aux {
                aux.push(&leaf.rows[row])
            } else {
                pairs.push(&leaf.rows[row])
            }
        }
        let rows = Rows { leaf, pairs: &pairs, aux: &aux };
        let knowledge = self.mix(&rows, "knowledge", &self.recipe.knowledge, self.data_rows[0], None, &mut part);
        let skills = self.mix(&rows, "skills", &self.recipe.skills, self.data_rows[1], Some(&knowledge), &mut part);
        part.knowledge = knowledge.into_iter().flatten().collect();
        part.skills = skills.into_iter().flatten().collect();
        part
    }

    /// One mix's records of one leaf, per source.
    fn mix(&self, rows: &Rows, mix: &str, spec: &MixSpec, data_rows: usize, knowledge: Option<&Vec<Vec<Tagged>>>, out: &mut Part) -> Vec<Vec<Tagged>> {
        let leaf = rows.leaf;
        let mut grid = Vec::new();
        for (si, source) in spec.sources.iter().enumerate() {
            let at = si.to_string();
            let scope = [mix, at.as_str(), leaf.leaf.as_str()];
            let seed = |what: &str| seed_of(self.recipe.seed, &[mix, at.as_str(), what, leaf.leaf.as_str()]);
            let tag = |record: Record| Tagged { record, leaf: leaf.leaf.clone(), source: source.name() };
            let records = match source {
                SourceSpec::Skills { sample: s, unmask } if !leaf.is_knowledge() => {
                    let recs = rows.pairs.iter().map(|row| tag(skill_record(leaf, row, *unmask))).collect();
                    finish(self.recipe, recs, s, &scope, out)
                }
                SourceSpec::KnowledgeQa { sample: s, unmask } if leaf.is_knowledge() => {
                    let recs = rows.pairs.iter().map(|row| tag(qa_record(leaf, row, *unmask))).collect();
                    finish(self.recipe, recs, s, &scope, out)
                }
                SourceSpec::KnowledgeRaft { p, k, sample: s, unmask } if leaf.is_knowledge() => {
                    let mut rng = StdRng::seed_from_u64(seed("raft"));
                    let docs = documents(leaf);
                    if docs.len() < 2 && !rows.pairs.is_empty() {
                        out.warnings.push(format!("{}: one document chunk only, so its RAFT rows have no distractors", leaf.leaf));
                    }
                    let recs = rows.pairs.iter().map(|row| tag(raft_record(leaf, row, &docs, *p, *k, *unmask, &mut rng))).collect();
                    finish(self.recipe, recs, s, &scope, out)
                }
                SourceSpec::Auxiliary { sample: s, unmask } if leaf.is_knowledge() => {
                    let unmask = unmask.unwrap_or(mix == "knowledge");
                    let mut rng = StdRng::seed_from_u64(seed("auxiliary"));
                    let mut recs = Vec::new();
                    for row in rows.aux {
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
                    finish(self.recipe, recs, s, &scope, out)
                }
                SourceSpec::Replay { of } => {
                    let knowledge = knowledge.expect("invariant: the skills mix is built after the knowledge mix");
                    let mut recs = Vec::new();
                    for (ki, ks) in self.recipe.knowledge.sources.iter().enumerate() {
                        // Datasets are no leaf's; the knowledge mix's own rows of this leaf are.
                        if of.iter().any(|o| o == ks.name()) && !matches!(ks, SourceSpec::Dataset { .. }) {
                            for t in &knowledge[ki] {
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
            grid.push(records);
        }
        if let (Some(share), true) = (spec.upsample_knowledge, leaf.is_knowledge()) {
            self.upsample(leaf, mix, spec, share, data_rows, &mut grid);
        }
        grid
    }

    /// The reference's rule: a knowledge leaf whose records in this mix are fewer than `share`
    /// of the mix's dataset records is drawn again, with replacement, up to that many.
    fn upsample(&self, leaf: &LeafRows, mix: &str, spec: &MixSpec, share: f64, data_rows: usize, grid: &mut [Vec<Tagged>]) {
        let want = (data_rows as f64 * share) as usize;
        let have: usize = grid.iter().map(Vec::len).sum();
        if have == 0 || have >= want {
            return;
        }
        let all: Vec<Tagged> = grid.iter_mut().flat_map(std::mem::take).collect();
        let up = SampleSpec { count: Some(want as u64), replace: true, ..SampleSpec::default() };
        for t in sample(all, &up, seed_of(self.recipe.seed, &[mix, "upsample", leaf.leaf.as_str()])) {
            let si = (0..spec.sources.len()).find(|&si| spec.sources[si].name() == t.source).unwrap_or(0);
            grid[si].push(t);
        }
    }
}

/// A leaf's rows that survived dedup.
struct Rows<'a> {
    leaf: &'a LeafRows,
    pairs: &'a [&'a Row],
    aux: &'a [&'a Row],
}

/// Drop records with an empty turn (reported), put the system prompt first, then sample.
fn finish(recipe: &Recipe, records: Vec<Tagged>, s: &SampleSpec, scope: &[&str], out: &mut Part) -> Vec<Tagged> {
    let (empty, mut full): (Vec<_>, Vec<_>) = records.into_iter().partition(|t| t.record.has_empty_turn());
    for t in empty {
        let row = t.record.metadata.get("row").and_then(Value::as_str).unwrap_or(&t.record.id).to_string();
        out.omitted.push(omit(&t.leaf, &row, &format!("empty turn ({})", t.source)));
    }
    for t in &mut full {
        t.record.set_system(&recipe.system_prompt);
    }
    sample(full, s, seed_of(recipe.seed, scope))
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
    // "Document:\n{d}\n\n" for each, joined by "\n", then "\n\n{q}": written once, in place.
    let mut user = String::with_capacity(picked.iter().map(|d| d.len() + 13).sum::<usize>() + 2 + q.len());
    for (i, d) in picked.iter().enumerate() {
        user.push_str(if i == 0 { "Document:\n" } else { "\nDocument:\n" });
        user.push_str(d);
        user.push_str("\n\n");
    }
    user.push_str("\n\n");
    user.push_str(&q);
    let mut meta = knowledge_meta(leaf, row, &format!("document_knowledge_qa_raft_p{p}"));
    meta.insert("raft_gold".into(), with_gold.into());
    Record {
        id: record_id(&["knowledge_raft", &leaf.leaf, &row.id]),
        messages: vec![Message::new("user", user), Message::new("assistant", r)],
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
