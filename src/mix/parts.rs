//! Incremental re-mixing. Each leaf's records in the mix files are a *part*; the mix folder keeps
//! an index of its parts (`mix_parts.json`, written before the manifest): for each, a key over
//! everything its records depend on, where its bytes lie in each JSONL file with their digest,
//! and its counts for the report. A re-mix into the same folder takes an unchanged part's bytes
//! from the previous files (and its counts from the index) instead of reading and building its
//! leaf again, so only the leaves a change touched are built; the files and the report equal a
//! fresh mix's.
//!
//! A part's key covers the labflow build, the recipe, the output files, the leaf's id, kind and
//! Parquet bytes, which of its items dedup dropped (dedup runs over every leaf each time, so an
//! edit elsewhere that makes one of this leaf's rows a duplicate rebuilds it), and the datasets'
//! record counts (the upsampling rule). Bytes are checked against their digest before use: a
//! file replaced by a mix that stopped before its index was written only costs a rebuild.

use crate::mix::report::SavedTally;
use crate::mix::MixError;
use crate::store::dataset;
use crate::store::Location;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ops::Range;

/// The index's file name.
pub const PARTS: &str = "mix_parts.json";

/// The index's format; a different one is ignored (every part is built).
const FORMAT: u32 = 1;

/// Where one part's records lie in one JSONL file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// Byte offset.
    pub offset: u64,
    /// Bytes.
    pub len: u64,
    /// Records (lines).
    pub rows: u64,
    /// blake3 of the bytes, hex.
    pub digest: String,
}

/// The digest a [`Span`] records of its bytes.
pub fn digest(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

impl Span {
    fn range(&self) -> Range<u64> {
        self.offset..self.offset + self.len
    }
}

/// One leaf's part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The key ([`Keys::leaf`]).
    pub key: String,
    /// The leaf.
    pub leaf: String,
    /// Per output file, in the index's `files` order.
    pub spans: Vec<Span>,
    /// Its counts, omissions and warnings.
    pub tally: SavedTally,
}

/// The index of a mix folder's parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Index {
    format: u32,
    /// The JSONL files, without `.jsonl`.
    pub files: Vec<String>,
    /// The leaves' parts, in output order.
    pub parts: Vec<Entry>,
}

impl Index {
    /// An empty index of `files`.
    pub fn new(files: Vec<String>) -> Index {
        Index {
            format: FORMAT,
            files,
            parts: Vec::new(),
        }
    }

    /// The index in `out`, when there is one this version can use for output files `files`;
    /// else why not (a warning), or `None` when there is none at all.
    pub async fn load(out: &Location, files: &[String]) -> Result<Option<Index>, String> {
        let bytes = match dataset::read_bytes(out, PARTS).await {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(None),
            Err(e) => return Err(format!("{}/{PARTS}: {e}; every leaf is mixed again", out.display)),
        };
        let index: Index =
            serde_json::from_slice(&bytes).map_err(|e| format!("{}/{PARTS}: {e}; every leaf is mixed again", out.display))?;
        if index.format != FORMAT || index.files != files || index.parts.iter().any(|p| p.spans.len() != files.len()) {
            return Ok(None);
        }
        Ok(Some(index))
    }

    /// The parts by key.
    pub fn by_key(self) -> HashMap<String, Entry> {
        self.parts.into_iter().map(|p| (p.key.clone(), p)).collect()
    }

    /// Write the index to `out`; returns its size.
    pub async fn write(&self, out: &Location) -> Result<u64, MixError> {
        Ok(dataset::write_json(out, PARTS, self).await?)
    }
}

/// What every part's key shares, hashed once per mix.
pub struct Keys {
    base: blake3::Hasher,
}

impl Keys {
    /// Keys for parts of `recipe_fingerprint` written to `files`.
    pub fn new(recipe_fingerprint: &str, files: &[String], data_rows: [usize; 2]) -> Keys {
        let mut base = blake3::Hasher::new();
        base.update(&FORMAT.to_le_bytes());
        base.update(build_identity().as_bytes());
        for s in std::iter::once(recipe_fingerprint).chain(files.iter().map(String::as_str)) {
            field(&mut base, s.as_bytes());
        }
        for n in data_rows {
            base.update(&(n as u64).to_le_bytes());
        }
        Keys { base }
    }

    /// The key of leaf `leaf` of `kind` whose Parquet file hashes to `content`, with `gone[k]`
    /// for each of its dedup items.
    pub fn leaf(&self, leaf: &str, kind: &str, content: &blake3::Hash, gone: &[bool]) -> String {
        let mut h = self.base.clone();
        field(&mut h, leaf.as_bytes());
        field(&mut h, kind.as_bytes());
        h.update(content.as_bytes());
        h.update(&(gone.len() as u64).to_le_bytes());
        let mut bits = vec![0u8; gone.len().div_ceil(8)];
        for (i, _) in gone.iter().enumerate().filter(|(_, g)| **g) {
            bits[i / 8] |= 1 << (i % 8);
        }
        h.update(&bits);
        h.finalize().to_hex()[..32].to_string()
    }
}

fn field(h: &mut blake3::Hasher, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// The running labflow build (a rebuilt binary may build records differently): its version
/// and its executable's size and modification time (hashing the file itself would read
/// hundreds of megabytes of a debug build).
fn build_identity() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let exe = std::env::current_exe().and_then(std::fs::metadata).ok();
        let stamp = exe.as_ref().and_then(|m| m.modified().ok()).and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        format!("labflow {} {:?} {:?}", env!("CARGO_PKG_VERSION"), exe.map(|m| m.len()), stamp)
    })
    .clone()
}

/// The previous bytes of `entries`' parts, one `Vec` per part with one chunk per file; `None`
/// for a part whose file is gone or too short (it is built again). The caller checks the
/// digests ([`digest`]), on all cores.
pub async fn read(out: &Location, files: &[String], entries: &[&Entry]) -> Result<Vec<Option<Vec<bytes::Bytes>>>, MixError> {
    let mut got: Vec<Option<Vec<bytes::Bytes>>> = vec![Some(Vec::new()); entries.len()];
    for (f, name) in files.iter().enumerate() {
        let path = out.child(&format!("{name}.jsonl"));
        let ranges: Vec<Range<u64>> = entries.iter().map(|e| e.spans[f].range()).filter(|r| !r.is_empty()).collect();
        let mut chunks = if ranges.is_empty() {
            Vec::new().into_iter()
        } else {
            match object_store::ObjectStore::get_ranges(&*out.store, &path, &ranges).await {
                Ok(c) => c.into_iter(),
                // The previous file is gone or shorter: build these parts again.
                Err(_) => return Ok(vec![None; entries.len()]),
            }
        };
        for (e, slot) in entries.iter().zip(got.iter_mut()) {
            let span = &e.spans[f];
            let bytes = if span.len == 0 {
                bytes::Bytes::new()
            } else {
                chunks.next().unwrap_or_default()
            };
            let whole = bytes.len() as u64 == span.len;
            match slot {
                Some(v) if whole => v.push(bytes),
                _ => *slot = None,
            }
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_follows_every_input() {
        let files = vec!["knowledge_train_msgs".to_string(), "skills_train_msgs".to_string()];
        let content = blake3::hash(b"rows");
        let keys = Keys::new("recipe", &files, [0, 0]);
        let key = keys.leaf("a/b", "freeform_skill", &content, &[false, true, false]);
        assert_eq!(
            key,
            Keys::new("recipe", &files, [0, 0]).leaf("a/b", "freeform_skill", &content, &[false, true, false])
        );
        let others = [
            Keys::new("recipe2", &files, [0, 0]).leaf("a/b", "freeform_skill", &content, &[false, true, false]),
            Keys::new("recipe", &files[..1], [0, 0]).leaf("a/b", "freeform_skill", &content, &[false, true, false]),
            Keys::new("recipe", &files, [0, 1]).leaf("a/b", "freeform_skill", &content, &[false, true, false]),
            keys.leaf("a/c", "freeform_skill", &content, &[false, true, false]),
            keys.leaf("a/b", "knowledge", &content, &[false, true, false]),
            keys.leaf("a/b", "freeform_skill", &blake3::hash(b"rows2"), &[false, true, false]),
            keys.leaf("a/b", "freeform_skill", &content, &[false, false, false]),
            keys.leaf("a/b", "freeform_skill", &content, &[false, true, false, false]),
        ];
        for (i, k) in others.iter().enumerate() {
            assert_ne!(&key, k, "input {i} does not reach the key");
        }
    }
}
