//! Mixing: a run's per-leaf datasets turned into the training mixes of the LAB method
//! (../shared/docs/LAB.md, "Mixing") by a recipe (`pipelines/mix/lab.yaml` is the reference's).
//!
//! [`mix`] reads the run's manifest and every leaf's generated Parquet partition, any
//! precomputed datasets the recipe names, builds both mixes ([`build`]), and writes to the
//! output folder `knowledge_train_msgs.{jsonl,parquet}` and `skills_train_msgs.{jsonl,parquet}`
//! (plus `_short`/`_long` parts when a mix is split), `mix_report.json`, `mix_report.md`,
//! `mix_lengths.png`, and last `mix_manifest.json`, which lists them (a reader that goes by the
//! manifest never sees a half-written mix; each file appears whole: one put, or a multipart
//! upload completed at its end). The mixes stream: a few leaves are in memory at a time.
//! Mixing again into the same folder builds only the leaves a change touched ([`parts`]).

pub mod build;
pub mod dedup;
pub mod parts;
pub mod recipe;
pub mod records;
pub mod report;

pub use report::{CountRow, Histogram, MixReport, Tally};

use crate::engine::report::FileEntry;
use crate::mix::build::{Dataset, LeafItems, LeafRows, Mixer, Part};
use crate::mix::dedup::Index;
use crate::mix::recipe::{Recipe, SourceSpec, SplitSpec};
use crate::mix::records::Record;
use crate::documents::TokenCount;
use crate::store::dataset::{self, DatasetError};
use crate::store::{Location, StoreError};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{AsyncArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use rayon::prelude::*;
use tokio::io::AsyncWriteExt;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a mix could not be made. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum MixError {
    /// The run folder has no readable manifest.
    #[error("{0} has no run manifest (manifest.json); run `labflow generate --output {0}` first")]
    NoRun(String),
    /// A store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file could not be read or written.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// A dataset's rows are not records.
    #[error("{0}")]
    Records(String),
    /// The recipe asks for something the options cannot give.
    #[error("{0}")]
    Recipe(String),
}

/// How lengths are measured for the report's histogram and for splits.
#[derive(Clone, Default)]
pub enum Measure {
    /// Words separated by ASCII whitespace.
    #[default]
    Words,
    /// Tokens, as this counter (a model's tokenizer) counts them.
    Tokens(Arc<dyn TokenCount + Send + Sync>),
}

impl Measure {
    /// The unit's name.
    pub fn unit(&self) -> &'static str {
        match self {
            Measure::Words => "words",
            Measure::Tokens(_) => "tokens",
        }
    }

    /// The length of `text`.
    pub fn len(&self, text: &str) -> usize {
        match self {
            Measure::Words => words(text),
            Measure::Tokens(t) => t.count(text),
        }
    }
}

/// Words of `text`: runs of bytes that are not ASCII whitespace (as `split_ascii_whitespace`
/// counts them), eight bytes at a time: a mix measures every turn of a million records.
pub fn words(text: &str) -> usize {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let eq = records::bytes_equal;
    let bytes = text.as_bytes();
    let mut n = 0;
    let mut prev_space = true;
    let chunks = bytes.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        let x = u64::from_le_bytes(c.try_into().expect("invariant: 8 bytes"));
        let space = eq(x, b' ') | eq(x, b'\n') | eq(x, b'\t') | eq(x, b'\r') | eq(x, 0x0c);
        let before = (space << 8) | if prev_space { 0x80 } else { 0 };
        n += (!space & HIGH & before).count_ones() as usize;
        prev_space = space >> 63 != 0;
    }
    for &b in rest {
        let space = b.is_ascii_whitespace();
        n += (!space && prev_space) as usize;
        prev_space = space;
    }
    n
}

/// Where a mix reads from and writes to.
pub struct MixJob<'a> {
    /// The run folder (`labflow generate --output`).
    pub run: &'a Location,
    /// The recipe.
    pub recipe: &'a Recipe,
    /// Relative `dataset` paths start here (the recipe's folder); `None`: the working folder.
    pub recipe_dir: Option<PathBuf>,
    /// The output folder.
    pub out: &'a Location,
    /// Length measure.
    pub measure: Measure,
    /// Take unchanged leaves' records from the previous mix in `out` ([`parts`]); `false`
    /// builds every leaf.
    pub reuse: bool,
}

/// The name of the file that lists a mix's outputs; written last.
pub const MIX_MANIFEST: &str = "mix_manifest.json";

/// Read a precomputed dataset (JSONL or Parquet, in the record schema) from a path or URL.
pub async fn read_dataset(path: &str, base: Option<&Path>) -> Result<Vec<Record>, MixError> {
    let full = if path.contains("://") || Path::new(path).is_absolute() {
        path.to_string()
    } else {
        base.map(|b| b.join(path)).unwrap_or_else(|| PathBuf::from(path)).display().to_string()
    };
    let (dir, name) = match full.rsplit_once('/') {
        Some((d, n)) if !d.is_empty() && !d.ends_with(':') => (d.to_string(), n.to_string()),
        _ => (".".to_string(), full.clone()),
    };
    let loc = Location::open(&dir)?;
    if name.ends_with(".parquet") {
        let mut out = Vec::new();
        for b in dataset::read_parquet(&loc, &name).await? {
            out.extend(records::from_batch(&b, &full).map_err(|e| MixError::Records(e.0))?);
        }
        return Ok(out);
    }
    let bytes = dataset::read_bytes(&loc, &name).await?.ok_or_else(|| MixError::Records(format!("{full}: not found")))?;
    let text = String::from_utf8_lossy(&bytes);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        out.push(records::from_json_line(line).map_err(|e| MixError::Records(format!("{full}:{}: {e}", i + 1)))?);
    }
    Ok(out)
}

/// Leaves decoded and mixed at once (each window's leaves are read concurrently, then built on
/// all cores); bounds memory to a few leaves' records.
const WINDOW: usize = 2;

/// A leaf of the run's manifest to mix.
struct LeafFile {
    leaf: String,
    kind: String,
    parquet: String,
}

/// The leaves the manifest lists without an error, by leaf id.
async fn list_run(run: &Location, warnings: &mut Vec<String>) -> Result<Vec<LeafFile>, MixError> {
    let manifest = crate::engine::generate::read_manifest(run, warnings).await?.ok_or_else(|| MixError::NoRun(run.display.clone()))?;
    let mut leaves = Vec::new();
    for leaf in manifest.leaves {
        if let Some(e) = &leaf.error {
            warnings.push(format!("{}: not mixed, its generation failed: {e}", leaf.leaf));
            continue;
        }
        let Some(file) = leaf.files.iter().find(|f| f.path.starts_with("generated/") && f.path.ends_with(".parquet")) else {
            warnings.push(format!("{}: the manifest lists no generated Parquet file; not mixed", leaf.leaf));
            continue;
        };
        leaves.push(LeafFile { leaf: leaf.leaf, kind: leaf.kind, parquet: file.path.clone() });
    }
    leaves.sort_by(|a, b| a.leaf.cmp(&b.leaf));
    Ok(leaves)
}

/// The columns dedup reads (the first pass decodes only these).
const ITEM_COLUMNS: &[&str] = &["_id", "question", "response", "output", "document", "dataset_type"];

/// Read a window of leaves' files concurrently, then decode them on all cores (only `columns`,
/// when given); each with the digest of its file.
async fn read_window(run: &Location, files: &[&LeafFile], columns: Option<&[&str]>) -> Result<Vec<(LeafRows, blake3::Hash)>, MixError> {
    let bytes = futures::future::try_join_all(files.iter().map(|f| async move {
        dataset::read_bytes(run, &f.parquet).await?.ok_or_else(|| MixError::Records(format!("{}/{}: not found", run.display, f.parquet)))
    }))
    .await?;
    files
        .par_iter()
        .zip(bytes)
        .map(|(f, b)| {
            let digest = blake3::hash(&b);
            let reader = ParquetRecordBatchReaderBuilder::try_new(b)
                .and_then(|r| match columns {
                    Some(names) => {
                        let mask = ProjectionMask::columns(r.parquet_schema(), names.iter().copied());
                        r.with_projection(mask).build()
                    }
                    None => r.build(),
                })
                .map_err(|e| MixError::Records(format!("{}/{}: {e}", run.display, f.parquet)))?;
            let mut rows = Vec::new();
            for batch in reader {
                rows.extend(records::rows(&batch.map_err(|e| MixError::Records(format!("{}/{}: {e}", run.display, f.parquet)))?));
            }
            Ok((LeafRows { leaf: f.leaf.clone(), kind: f.kind.clone(), rows }, digest))
        })
        .collect()
}

/// One output file pair (`NAME.jsonl`, `NAME.parquet`), written as records arrive; each object
/// appears whole when it is finished (one put, or a multipart upload completed at the end).
struct Sink {
    name: String,
    jsonl: object_store::buffered::BufWriter,
    parquet: AsyncArrowWriter<object_store::buffered::BufWriter>,
    rows: u64,
    jsonl_bytes: u64,
}

impl Sink {
    fn new(out: &Location, name: String) -> Result<Sink, MixError> {
        let jsonl = object_store::buffered::BufWriter::new(out.store.clone(), out.child(&format!("{name}.jsonl")));
        // Long, mostly distinct texts: no dictionary (it would hash every value, then give up)
        // and no min/max statistics (nobody filters on them).
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::None)
            .set_max_row_group_bytes(Some(16 << 20))
            .build();
        let pq = object_store::buffered::BufWriter::new(out.store.clone(), out.child(&format!("{name}.parquet")));
        let parquet = AsyncArrowWriter::try_new(pq, records::schema(), Some(props)).map_err(|e| MixError::Records(format!("{name}.parquet: {e}")))?;
        Ok(Sink { name, jsonl, parquet, rows: 0, jsonl_bytes: 0 })
    }

    async fn write(&mut self, chunk: &Encoded) -> Result<(), MixError> {
        let err = |e: std::io::Error| MixError::Records(format!("{}.jsonl: {e}", self.name));
        self.jsonl.write_all(&chunk.jsonl).await.map_err(err)?;
        self.jsonl_bytes += chunk.jsonl.len() as u64;
        self.rows += chunk.batch.num_rows() as u64;
        self.parquet.write(&chunk.batch).await.map_err(|e| MixError::Records(format!("{}.parquet: {e}", self.name)))
    }

    async fn finish(mut self) -> Result<Vec<FileEntry>, MixError> {
        self.jsonl.shutdown().await.map_err(|e| MixError::Records(format!("{}.jsonl: {e}", self.name)))?;
        self.parquet.flush().await.map_err(|e| MixError::Records(format!("{}.parquet: {e}", self.name)))?;
        let bytes = self.parquet.bytes_written() as u64;
        self.parquet.close().await.map_err(|e| MixError::Records(format!("{}.parquet: {e}", self.name)))?;
        Ok(vec![
            FileEntry { path: format!("{}.parquet", self.name), rows: self.rows, bytes },
            FileEntry { path: format!("{}.jsonl", self.name), rows: self.rows, bytes: self.jsonl_bytes },
        ])
    }
}

/// Hand each sink its chunk of `part` (at `offsets`, which advance) and add the part's counts
/// to `tally`; returns where its chunks went and its own counts. A sink whose task ended early
/// (an error) is skipped; its error comes out of its join handle at the end.
async fn flush(
    part: EncodedPart,
    senders: &[tokio::sync::mpsc::Sender<Encoded>],
    offsets: &mut [u64],
    tally: &mut Tally,
) -> (Vec<parts::Span>, report::SavedTally) {
    let mut spans = Vec::new();
    for ((tx, chunk), at) in senders.iter().zip(part.chunks).zip(offsets.iter_mut()) {
        spans.push(parts::Span { offset: *at, len: chunk.jsonl.len() as u64, rows: chunk.batch.num_rows() as u64, digest: chunk.digest.clone() });
        *at += chunk.jsonl.len() as u64;
        if tx.send(chunk).await.is_err() {
            break;
        }
    }
    let saved = report::SavedTally::from(&part.tally);
    tally.merge(part.tally);
    (spans, saved)
}

/// One sink's records of one part, encoded, with the digest of `jsonl` ([`parts::Span`]).
struct Encoded {
    jsonl: bytes::Bytes,
    batch: RecordBatch,
    digest: String,
}

/// A part's records encoded for every sink, with their counts.
struct EncodedPart {
    chunks: Vec<Encoded>,
    tally: Tally,
}

fn encode(part: Part, leaf: &str, sinks: &[SinkSpec], measure: &Measure) -> Result<EncodedPart, MixError> {
    let mut tally = Tally::default();
    let mixes = [&part.knowledge, &part.skills];
    let mut responses: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
    let splits = sinks.iter().any(|s| s.split.is_some());
    for (m, rows) in mixes.iter().enumerate() {
        for t in rows.iter() {
            let len: usize = t.record.messages.iter().map(|msg| measure.len(&msg.content)).sum();
            tally.add(m, t.source, if t.source == "dataset" { &t.leaf } else { leaf }, len);
            responses[m].push(if splits { measure.len(t.record.response()) } else { 0 });
        }
    }
    let mut chunks = Vec::new();
    for s in sinks {
        let picked: Vec<&Record> = mixes[s.mix]
            .iter()
            .zip(&responses[s.mix])
            .filter(|(_, &len)| s.split.is_none_or(|(bound, short)| (len < bound) == short))
            .map(|(t, _)| &t.record)
            .collect();
        let (jsonl, batch) = records::encode(&picked).map_err(|e| MixError::Records(format!("{}: {e}", s.name)))?;
        let digest = parts::digest(&jsonl);
        chunks.push(Encoded { jsonl: jsonl.into(), batch, digest });
    }
    tally.omitted = part.omitted;
    tally.warnings = part.warnings;
    Ok(EncodedPart { chunks, tally })
}

/// A part of the previous mix again, from its bytes (one chunk per sink) and its entry; `None`
/// when the bytes are not what the entry recorded.
fn decode(entry: &parts::Entry, chunks: Vec<bytes::Bytes>) -> Option<EncodedPart> {
    let tally = entry.tally.clone().restore()?;
    let chunks = chunks
        .into_iter()
        .zip(&entry.spans)
        .map(|(jsonl, span)| {
            if parts::digest(&jsonl) != span.digest {
                return None;
            }
            let batch = records::batch_from_jsonl(&jsonl, span.rows as usize).ok()?;
            Some(Encoded { batch, jsonl, digest: span.digest.clone() })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(EncodedPart { chunks, tally })
}

/// What a sink takes: a mix (0 knowledge, 1 skills), and with `split: Some((bound, short))`
/// only its records whose response is shorter than `bound` (`short`) or not.
struct SinkSpec {
    name: String,
    mix: usize,
    split: Option<(usize, bool)>,
}

/// Make the mixes of `job` and write them; returns the report (also written).
///
/// Two passes over the run's leaves, a window at a time: the first feeds every item to the
/// dedup index, the second builds each leaf's records (or, with `job.reuse`, takes an unchanged
/// leaf's from the previous mix in the folder) and streams them to the output files.
pub async fn mix(job: MixJob<'_>) -> Result<MixReport, MixError> {
    let start = std::time::Instant::now();
    let recipe = job.recipe;
    let mut tally = Tally::default();
    for spec in [&recipe.knowledge, &recipe.skills] {
        if matches!(spec.split, Some(SplitSpec::Tokens(_))) && matches!(job.measure, Measure::Words) {
            return Err(MixError::Recipe("the recipe splits by tokens; give a tokenizer (--tokenizer MODEL), or split by words".into()));
        }
    }
    let files = list_run(job.run, &mut tally.warnings).await?;
    let mut datasets = Vec::new();
    for spec in [&recipe.knowledge, &recipe.skills] {
        for s in &spec.sources {
            if let SourceSpec::Dataset { path, .. } = s {
                if !datasets.iter().any(|d: &Dataset| &d.path == path) {
                    datasets.push(Dataset { path: path.clone(), records: read_dataset(path, job.recipe_dir.as_deref()).await? });
                }
            }
        }
    }

    // Pass 1: every item into the dedup index; names kept compactly for the report.
    let mut index = Index::new(&recipe.dedup);
    let mut owners: Vec<String> = Vec::new();
    let mut names: Vec<(u32, Box<str>, bool)> = Vec::new();
    for set in &datasets {
        let texts = build::dataset_items(set);
        names.extend((0..texts.len()).map(|i| (owners.len() as u32, i.to_string().into_boxed_str(), false)));
        owners.push(set.path.clone());
        index.add(&texts);
    }
    let mut item_counts = Vec::with_capacity(files.len());
    let mut digests = Vec::with_capacity(files.len());
    for window in files.chunks(WINDOW) {
        let leaves = read_window(job.run, &window.iter().collect::<Vec<_>>(), Some(ITEM_COLUMNS)).await?;
        let items: Vec<LeafItems> = leaves.par_iter().map(|(leaf, _)| build::leaf_items(leaf)).collect();
        for ((leaf, digest), it) in leaves.iter().zip(items) {
            names.extend(it.refs.iter().map(|&(row, aux)| (owners.len() as u32, leaf.rows[row].id.clone().into_boxed_str(), aux)));
            owners.push(leaf.leaf.clone());
            item_counts.push(it.texts.len());
            digests.push(*digest);
            index.add(&it.texts);
        }
    }
    let mut gone = vec![false; names.len()];
    for d in index.resolve() {
        gone[d.index] = true;
        tally.omitted.push(build::duplicate(&d, |i| (owners[names[i].0 as usize].clone(), names[i].1.to_string(), names[i].2)));
    }
    drop(names);

    // Pass 2: records, streamed to the sinks in output order (datasets first, then leaves).
    let mut sinks_spec = Vec::new();
    for (m, (name, spec)) in [("knowledge", &recipe.knowledge), ("skills", &recipe.skills)].into_iter().enumerate() {
        let base = format!("{name}_train_msgs");
        sinks_spec.push(SinkSpec { name: base.clone(), mix: m, split: None });
        if let Some(SplitSpec::Words(n) | SplitSpec::Tokens(n)) = spec.split {
            sinks_spec.push(SinkSpec { name: format!("{base}_short"), mix: m, split: Some((n, true)) });
            sinks_spec.push(SinkSpec { name: format!("{base}_long"), mix: m, split: Some((n, false)) });
        }
    }
    // One task per output file, fed through a short queue: Parquet encoding and the writes of
    // one window overlap the next window's records.
    let mut senders = Vec::new();
    let mut writers = Vec::new();
    for spec in &sinks_spec {
        let mut sink = Sink::new(job.out, spec.name.clone())?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Encoded>(2);
        senders.push(tx);
        writers.push(tokio::spawn(async move {
            while let Some(chunk) = rx.recv().await {
                sink.write(&chunk).await?;
            }
            sink.finish().await
        }));
    }
    let mut at = 0;
    let mut data_gone = Vec::new();
    for set in &datasets {
        data_gone.push(gone[at..at + set.records.len()].to_vec());
        at += set.records.len();
    }
    let (mixer, part) = Mixer::new(recipe, &datasets, &data_gone);
    let mut offsets = vec![0u64; sinks_spec.len()];
    flush(encode(part, "", &sinks_spec, &job.measure)?, &senders, &mut offsets, &mut tally).await;

    // The previous mix's parts (lengths in tokens depend on a tokenizer the key does not
    // cover: then every leaf is built).
    let sink_names: Vec<String> = sinks_spec.iter().map(|s| s.name.clone()).collect();
    let keys = parts::Keys::new(&recipe.fingerprint(), &sink_names, mixer.data_rows());
    let mut previous = HashMap::new();
    if job.reuse && matches!(job.measure, Measure::Words) {
        match parts::Index::load(job.out, &sink_names).await {
            Ok(Some(index)) => previous = index.by_key(),
            Ok(None) => {}
            Err(w) => tally.warnings.push(w),
        }
    }
    let mut part_index = parts::Index::new(sink_names.clone());
    let mut reused = 0;
    let mut counts = item_counts.into_iter();
    let mut digests = digests.into_iter();
    for window in files.chunks(WINDOW) {
        // Each leaf's items in `gone`, the digest pass 1 read, and its key.
        let spans: Vec<(usize, usize, blake3::Hash, String)> = window
            .iter()
            .map(|f| {
                let n = counts.next().unwrap_or(0);
                let digest = digests.next().unwrap_or(blake3::Hash::from_bytes([0; 32]));
                at += n;
                (at - n, at, digest, keys.leaf(&f.leaf, &f.kind, &digest, &gone[at - n..at]))
            })
            .collect();
        let hits: Vec<usize> = (0..window.len()).filter(|&i| previous.contains_key(&spans[i].3)).collect();
        let entries: Vec<&parts::Entry> = hits.iter().map(|&i| &previous[&spans[i].3]).collect();
        let bytes = parts::read(job.out, &sink_names, &entries).await?;
        let decoded: Vec<Option<EncodedPart>> = entries.par_iter().zip(bytes).map(|(e, b)| b.and_then(|chunks| decode(e, chunks))).collect();
        let mut ready: Vec<Option<EncodedPart>> = (0..window.len()).map(|_| None).collect();
        for (i, part) in hits.into_iter().zip(decoded) {
            ready[i] = part;
        }
        reused += ready.iter().filter(|p| p.is_some()).count();
        let todo: Vec<&LeafFile> = window.iter().zip(&ready).filter(|(_, p)| p.is_none()).map(|(f, _)| f).collect();
        let todo_spans: Vec<&(usize, usize, blake3::Hash, String)> =
            spans.iter().zip(&ready).filter(|(_, p)| p.is_none()).map(|(s, _)| s).collect();
        let leaves = read_window(job.run, &todo, None).await?;
        let built: Vec<Result<EncodedPart, MixError>> = leaves
            .par_iter()
            .zip(todo_spans)
            .map(|((leaf, digest), (from, to, first, _))| {
                if digest != first {
                    return Err(MixError::Records(format!("{}: its rows changed while it was being mixed; mix again", leaf.leaf)));
                }
                let items = build::leaf_items(leaf);
                encode(mixer.leaf(leaf, &items, &gone[*from..*to]), &leaf.leaf, &sinks_spec, &job.measure)
            })
            .collect();
        let mut built = built.into_iter();
        for ((f, span), part) in window.iter().zip(spans).zip(ready) {
            let part = match part {
                Some(p) => p,
                None => built.next().expect("invariant: a part is built for each leaf not reused")?,
            };
            let (spans, saved) = flush(part, &senders, &mut offsets, &mut tally).await;
            part_index.parts.push(parts::Entry { key: span.3, leaf: f.leaf.clone(), spans, tally: saved });
        }
    }
    drop(senders);
    let mut written = Vec::new();
    for w in writers {
        written.extend(w.await.map_err(|e| MixError::Records(format!("a mix writer stopped: {e}")))??);
    }
    // The index goes after the files it points into, before the manifest.
    let bytes = part_index.write(job.out).await?;
    written.push(FileEntry { path: parts::PARTS.into(), rows: part_index.parts.len() as u64, bytes });
    let mut report = MixReport::new(recipe, &job.run.display, files.len(), tally, &job.measure);
    report.files = written;
    report.reused = reused;
    report.wall_seconds = start.elapsed().as_secs_f64();
    report.write(job.out).await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    proptest::proptest! {
        #[test]
        fn words_counts_as_split_ascii_whitespace(text in "[ a\\n\\t\\r\\x0b\\x0cé]{0,40}") {
            proptest::prop_assert_eq!(super::words(&text), text.split_ascii_whitespace().count());
        }
    }
}
