//! Mix recipes: the declarative files in `pipelines/mix/` that say which sources go into the
//! knowledge mix (phase 1) and the skills mix (phase 2), how each is sampled, and how the mix
//! is deduplicated. Read with the pipeline loader, so a bad recipe is refused with
//! `file:line:column: message (at key.path)`.

use crate::pipeline::load::{Loaded, PipelineError, Source};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The recipe format version this labflow reads.
pub const RECIPE_VERSION: u32 = 1;

/// The system prompt the reference's mixes carry (instructlab-sdg 0.8's default for its
/// granite student, as in `../shared/data/samples/ilab-generate-run-legal-theft`).
pub const REFERENCE_SYSTEM_PROMPT: &str = "I am an advanced AI language model designed to assist you with a wide range of tasks and provide helpful, clear, and accurate responses. My primary role is to serve as a chat assistant, engaging in natural, conversational dialogue, answering questions, generating ideas, and offering support across various topics.";

/// A mix recipe as written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Format version ([`RECIPE_VERSION`]).
    pub version: u32,
    /// A name for reports.
    #[serde(default)]
    pub name: Option<String>,
    /// The system turn every record starts with (an existing system turn is replaced, as the
    /// reference does). Default: the reference's.
    #[serde(default = "default_system_prompt")]
    pub system_prompt: String,
    /// Seed of every draw (sampling, RAFT documents, auxiliary instructions). Default 42, the
    /// reference's `random_state`.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Instructions for the auxiliary rewrite tasks, per `dataset_type` of the generated rows
    /// (InstructLab's knowledge pipeline marks its summaries so); one is drawn per document.
    #[serde(default)]
    pub auxiliary_instructions: BTreeMap<String, Vec<String>>,
    /// Duplicate removal over everything the recipe reads. Default: exact only.
    #[serde(default)]
    pub dedup: DedupSpec,
    /// The knowledge mix (phase 1): `knowledge_train_msgs`.
    pub knowledge: MixSpec,
    /// The skills mix (phase 2): `skills_train_msgs`.
    pub skills: MixSpec,
}

fn default_system_prompt() -> String {
    REFERENCE_SYSTEM_PROMPT.to_string()
}

fn default_seed() -> u64 {
    42
}

/// One mix: its sources in output order, and its options.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MixSpec {
    /// What goes in, in this order.
    pub sources: Vec<SourceSpec>,
    /// Upsample each knowledge leaf's rows in this mix to at least this share of the rows the
    /// mix's `dataset` sources bring (the reference's rule: 0.03). Only with a `dataset` source.
    #[serde(default)]
    pub upsample_knowledge: Option<f64>,
    /// Also write the mix split by the length of the last assistant turn: `<mix>_short` (below
    /// the bound) and `<mix>_long` (at or above it), for the paper's two knowledge steps.
    #[serde(default)]
    pub split: Option<SplitSpec>,
}

/// Where a split falls.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SplitSpec {
    /// Whitespace-separated words of the response.
    Words(usize),
    /// Tokens of the response (needs `--tokenizer`).
    Tokens(usize),
}

/// How many of a leaf's rows a source keeps: the `sample` step's keys (`count` or `fraction`,
/// `replace`, `seed`); neither `count` nor `fraction` keeps every row once.
pub use crate::operators::sample::Config as SampleSpec;

/// One source of a mix.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "source", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceSpec {
    /// Skill leaves' rows: `[system, user: question, assistant: response]`.
    Skills {
        /// Per leaf. The reference: 30 with replacement.
        #[serde(default)]
        sample: SampleSpec,
        /// Train on every turn but the system one. Default false.
        #[serde(default)]
        unmask: bool,
    },
    /// Knowledge leaves' rows with their chunk: user `"{document}\n\n{question}"`.
    KnowledgeQa {
        /// Per leaf. Default: every row.
        #[serde(default)]
        sample: SampleSpec,
        /// Default true (the reference's phase07 rows are unmasked).
        #[serde(default = "yes")]
        unmask: bool,
    },
    /// Knowledge rows RAFT-style: the question with `k` documents; with probability `p` the
    /// gold chunk and `k - 1` distractors, else `k` distractors, drawn from the leaf's other
    /// chunks.
    KnowledgeRaft {
        /// Probability of including the gold chunk. Default 0.4.
        #[serde(default = "default_p")]
        p: f64,
        /// Documents per question. Default 4.
        #[serde(default = "default_k")]
        k: usize,
        /// Per leaf. Default: every row.
        #[serde(default)]
        sample: SampleSpec,
        /// Default false.
        #[serde(default)]
        unmask: bool,
    },
    /// The knowledge mix's rows of this leaf again (the replay of phase 1 in phase 2), from the
    /// knowledge mix's sources named in `of`.
    Replay {
        /// Default: `[knowledge_qa]`, as the reference.
        #[serde(default = "default_replay")]
        of: Vec<String>,
    },
    /// Rewrite tasks over knowledge rows whose `dataset_type` is not `base_document`: user
    /// `"{raw_document}\n\n{instruction}"`, assistant the rewritten document; one per document.
    Auxiliary {
        /// Per leaf. Default: every row.
        #[serde(default)]
        sample: SampleSpec,
        /// Default true in the knowledge mix and false in the skills mix, as the reference.
        #[serde(default)]
        unmask: Option<bool>,
    },
    /// A precomputed dataset in the record schema (`messages`, optional `id`, `metadata`,
    /// `unmask`): JSONL or Parquet, a local path or an object store URL.
    Dataset {
        /// Where it is; a relative path is relative to the recipe file.
        path: String,
        /// Default: every row.
        #[serde(default)]
        sample: SampleSpec,
    },
}

fn yes() -> bool {
    true
}
fn default_p() -> f64 {
    0.4
}
fn default_k() -> usize {
    4
}
fn default_replay() -> Vec<String> {
    vec!["knowledge_qa".into()]
}

impl SourceSpec {
    /// Every source's [`SourceSpec::name`].
    pub const NAMES: [&'static str; 6] = ["skills", "knowledge_qa", "knowledge_raft", "replay", "auxiliary", "dataset"];

    /// The source's name as written (`skills`, `knowledge_raft`, …).
    pub fn name(&self) -> &'static str {
        match self {
            SourceSpec::Skills { .. } => "skills",
            SourceSpec::KnowledgeQa { .. } => "knowledge_qa",
            SourceSpec::KnowledgeRaft { .. } => "knowledge_raft",
            SourceSpec::Replay { .. } => "replay",
            SourceSpec::Auxiliary { .. } => "auxiliary",
            SourceSpec::Dataset { .. } => "dataset",
        }
    }
}

/// Duplicate removal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DedupSpec {
    /// Drop rows whose text, lowercased with whitespace collapsed, equals an earlier row's.
    #[serde(default = "yes")]
    pub exact: bool,
    /// Drop rows whose word shingles overlap an earlier row's by at least `threshold`
    /// (Jaccard), found by MinHash and LSH. Off unless given.
    #[serde(default)]
    pub near: Option<NearSpec>,
}

impl Default for DedupSpec {
    fn default() -> DedupSpec {
        DedupSpec { exact: true, near: None }
    }
}

/// Near-duplicate detection.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NearSpec {
    /// Jaccard similarity of word-shingle sets at which two rows are duplicates. Default 0.8.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Words per shingle. Default 3.
    #[serde(default = "default_shingle")]
    pub shingle: usize,
    /// MinHash functions. Default 64.
    #[serde(default = "default_permutations")]
    pub permutations: usize,
    /// LSH bands (they must divide `permutations`). Default 16: 4 rows a band, so a pair at
    /// Jaccard 0.8 shares a band with probability 1 - (1 - 0.8^4)^16 > 0.9997.
    #[serde(default = "default_bands")]
    pub bands: usize,
}

fn default_threshold() -> f64 {
    0.8
}
fn default_shingle() -> usize {
    3
}
fn default_permutations() -> usize {
    64
}
fn default_bands() -> usize {
    16
}

impl Recipe {
    /// Canonical JSON of the recipe: what a mix's caches are keyed by.
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        blake3::hash(json.as_bytes()).to_hex()[..32].to_string()
    }
}

/// Read recipe `rel` from `source`, checking every number.
pub fn load(source: &dyn Source, rel: &str) -> Result<Recipe, PipelineError> {
    let (loaded, value) = Loaded::read(source, rel)?;
    if !value.is_object() {
        return Err(loaded.at("", "a mix recipe is a mapping with `version`, `knowledge` and `skills`"));
    }
    if let Some(v) = value.get("version") {
        if v.as_u64() != Some(RECIPE_VERSION as u64) {
            return Err(loaded.at("/version", format!("unsupported recipe version {v}; this labflow reads version {RECIPE_VERSION}")));
        }
    }
    let recipe: Recipe = loaded.parse("", value)?;
    check(&recipe, &loaded)?;
    Ok(recipe)
}

fn check(r: &Recipe, loaded: &Loaded) -> Result<(), PipelineError> {
    if let Some(near) = &r.dedup.near {
        if !(near.threshold > 0.0 && near.threshold <= 1.0) {
            return Err(loaded.at("/dedup/near/threshold", format!("threshold {} must be in (0, 1]", near.threshold)));
        }
        if near.shingle == 0 {
            return Err(loaded.at("/dedup/near/shingle", "shingle must be at least 1 word"));
        }
        if near.bands == 0 || near.permutations == 0 || near.permutations % near.bands != 0 {
            return Err(loaded.at(
                "/dedup/near/bands",
                format!("bands ({}) must divide permutations ({}), both at least 1", near.bands, near.permutations),
            ));
        }
    }
    for (mix, spec) in [("knowledge", &r.knowledge), ("skills", &r.skills)] {
        let knowledge_sources: Vec<&str> = r.knowledge.sources.iter().map(|s| s.name()).collect();
        for (i, s) in spec.sources.iter().enumerate() {
            let at = format!("/{mix}/sources/{i}");
            let sample = match s {
                SourceSpec::Skills { sample, .. }
                | SourceSpec::KnowledgeQa { sample, .. }
                | SourceSpec::Auxiliary { sample, .. }
                | SourceSpec::Dataset { sample, .. } => sample,
                SourceSpec::KnowledgeRaft { p, k, sample, .. } => {
                    if !(0.0..=1.0).contains(p) {
                        return Err(loaded.at(&format!("{at}/p"), format!("p {p} must be in [0, 1]")));
                    }
                    if *k == 0 {
                        return Err(loaded.at(&format!("{at}/k"), "k must be at least 1 document"));
                    }
                    sample
                }
                SourceSpec::Replay { of } => {
                    if mix == "knowledge" {
                        return Err(loaded.at(&at, "`replay` repeats the knowledge mix; it belongs in `skills`"));
                    }
                    for (j, name) in of.iter().enumerate() {
                        if !knowledge_sources.contains(&name.as_str()) {
                            return Err(loaded.at(
                                &format!("{at}/of/{j}"),
                                format!("the knowledge mix has no source `{name}`; it has {}", knowledge_sources.join(", ")),
                            ));
                        }
                    }
                    continue;
                }
            };
            check_sample(sample, loaded, &format!("{at}/sample"))?;
        }
        if let Some(f) = spec.upsample_knowledge {
            if !(f > 0.0 && f < 1.0) {
                return Err(loaded.at(&format!("/{mix}/upsample_knowledge"), format!("{f} must be a share in (0, 1), e.g. 0.03")));
            }
            if !spec.sources.iter().any(|s| matches!(s, SourceSpec::Dataset { .. })) {
                return Err(loaded.at(
                    &format!("/{mix}/upsample_knowledge"),
                    "upsampling is relative to the mix's `dataset` sources, and it has none; remove it or add one",
                ));
            }
        }
        if let Some(SplitSpec::Words(0) | SplitSpec::Tokens(0)) = spec.split {
            return Err(loaded.at(&format!("/{mix}/split"), "a split at 0 puts every row in the long part"));
        }
    }
    for (kind, list) in &r.auxiliary_instructions {
        if list.is_empty() {
            return Err(loaded.at(&format!("/auxiliary_instructions/{kind}"), "give at least one instruction"));
        }
    }
    Ok(())
}

fn check_sample(s: &SampleSpec, loaded: &Loaded, at: &str) -> Result<(), PipelineError> {
    s.size().map(|_| ()).map_err(|(key, message)| loaded.at(&if key.is_empty() { at.to_string() } else { format!("{at}/{key}") }, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::builtin::Builtin;

    struct One(String);
    impl Source for One {
        fn read(&self, _: &str) -> Result<String, String> {
            Ok(self.0.clone())
        }
        fn display(&self, rel: &str) -> String {
            rel.to_string()
        }
    }

    #[test]
    fn the_builtin_recipe_is_the_reference_mix() {
        let r = load(&Builtin, "mix/lab.yaml").unwrap();
        assert_eq!(r.seed, 42);
        assert_eq!(r.system_prompt, REFERENCE_SYSTEM_PROMPT);
        let names = |m: &MixSpec| m.sources.iter().map(|s| s.name()).collect::<Vec<_>>();
        assert_eq!(names(&r.knowledge), ["knowledge_qa", "auxiliary"]);
        assert_eq!(names(&r.skills), ["skills", "knowledge_raft", "replay", "auxiliary"]);
        assert!(matches!(r.skills.sources[0], SourceSpec::Skills { sample: SampleSpec { count: Some(30), replace: true, .. }, .. }));
        assert!(matches!(r.skills.sources[1], SourceSpec::KnowledgeRaft { p, k: 4, .. } if p == 0.4));
    }

    #[test]
    fn bad_recipes_are_located() {
        let cases: &[(&str, &str)] = &[
            ("version: 2\nknowledge: {sources: []}\nskills: {sources: []}\n", "1:10: unsupported recipe version 2"),
            ("version: 1\nknowledge: {sources: []}\nskills:\n  sources:\n    - source: skils\n", "unknown variant `skils`"),
            (
                "version: 1\nknowledge: {sources: []}\nskills:\n  sources:\n    - {source: knowledge_raft, p: 1.5}\n",
                "5:35: p 1.5 must be in [0, 1] (at skills.sources[0].p)",
            ),
            (
                "version: 1\nknowledge: {sources: []}\nskills:\n  sources:\n    - {source: skills, sample: {count: 3, fraction: 0.5}}\n",
                "give one of `count` and `fraction`, not both",
            ),
            ("version: 1\nknowledge: {sources: [{source: replay}]}\nskills: {sources: []}\n", "it belongs in `skills`"),
            (
                "version: 1\nknowledge: {sources: [{source: knowledge_qa}]}\nskills: {sources: [{source: replay, of: [auxiliary]}]}\n",
                "the knowledge mix has no source `auxiliary`; it has knowledge_qa",
            ),
            (
                "version: 1\nknowledge: {sources: []}\nskills: {sources: [{source: skills}], upsample_knowledge: 0.03}\n",
                "has none; remove it or add one",
            ),
            ("version: 1\ndedup: {near: {bands: 7}}\nknowledge: {sources: []}\nskills: {sources: []}\n", "bands (7) must divide"),
            ("version: 1\nknowledge: {sources: [], colour: red}\nskills: {sources: []}\n", "unknown field `colour`"),
            ("version: 1\nknowledge: {sources: [{source: skills, unmask: 3}]}\nskills: {sources: []}\n", "invalid type"),
        ];
        for (text, want) in cases {
            let err = load(&One(text.to_string()), "r.yaml").unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: got {err:?}, want {want:?}");
            assert!(err.starts_with("r.yaml:"), "{err}");
        }
    }

    proptest::proptest! {
        /// Any text, and any recipe with a field replaced by junk, is refused with a located
        /// message or accepted; never a panic.
        #[test]
        fn junk_recipes_never_panic(text in "\\PC{0,200}", at in 0usize..400, junk in "[ -~\n]{0,12}") {
            let _ = load(&One(text), "r.yaml");
            let lab = crate::pipeline::builtin::file("mix/lab.yaml").unwrap();
            let cut = lab.char_indices().map(|(i, _)| i).nth(at % lab.chars().count()).unwrap_or(0);
            let mutated = format!("{}{junk}{}", &lab[..cut], &lab[cut..]);
            if let Err(e) = load(&One(mutated), "r.yaml") {
                proptest::prop_assert!(e.to_string().starts_with("r.yaml:"));
            }
        }
    }

    #[test]
    fn fingerprints_follow_every_number() {
        let a = load(&Builtin, "mix/lab.yaml").unwrap();
        let mut b = a.clone();
        assert_eq!(a.fingerprint(), b.fingerprint());
        b.seed = 7;
        assert_ne!(a.fingerprint(), b.fingerprint());
    }
}
