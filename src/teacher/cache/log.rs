//! [`ResponseCache`]: the persistent key → value map behind [`super::CachedClient`].
//!
//! Object stores have no append, so the log is a series of immutable segment objects
//! `cache/seg-<16-digit seq>.log` under a [`Location`], each written with one `put` (atomic on
//! every object_store backend: the local file system writes a temporary file and renames it). New
//! entries wait in memory and a background task writes them as one new segment every
//! `flush_interval`; [`ResponseCache::flush`] does it on demand. When there are more than
//! `compact_above` small segments after the last big one (≥ [`BIG_SEGMENT`] bytes) they are merged
//! into one: the merged segment is written first and the old ones deleted after, so a crash in
//! between leaves duplicates, never a loss. Only that newest run of segments is merged, so a
//! compaction costs at most about `BIG_SEGMENT` bytes of reads however large the cache has
//! grown, and the merged records keep their order after every older segment. Loading reads every
//! segment in sequence order and keeps every record whose checksum matches (`segment`); a value
//! is parsed when it is first asked for, so opening a cache costs its bytes and checksums, not a
//! JSON parse of every entry.
//!
//! Segments are created with `PutMode::Create` where the store supports it, so two processes
//! sharing a cache never overwrite each other's segment: the loser takes the next free number.
//! (On a store without conditional puts, one writer per location.) Durability is what the store
//! gives: on a local disk a `kill -9` loses nothing flushed, but a power cut may, because
//! object_store does not fsync.

use super::segment::{self, Key};
use crate::store::Location;
use crate::teacher::Choice;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Folder of the segments, relative to the cache's location.
const DIR: &str = "cache";
/// A segment this large is left alone by compaction (see the module docs).
pub const BIG_SEGMENT: u64 = 8 << 20;
/// At most this many warnings are kept for [`CacheStats::warnings`].
const MAX_WARNINGS: usize = 32;

/// How the cache persists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Longest time a new entry waits in memory before it is written. Default 2 s: a `kill -9`
    /// loses at most this much work (plus the calls in flight).
    pub flush_interval: Duration,
    /// Merge all segments into one when there are more than this many. Default 64.
    pub compact_above: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig { flush_interval: Duration::from_secs(2), compact_above: 64 }
    }
}

/// Why the cache could not be read or written. The store failed; the message names the object.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A store operation failed.
    #[error("response cache at `{location}`: cannot {op} `{path}`: {source}")]
    Store {
        /// The cache's location, as the user wrote it.
        location: String,
        /// `list`, `read`, `write` or `delete`.
        op: &'static str,
        /// The object.
        path: String,
        /// The store's error.
        source: object_store::Error,
    },
}

/// A cached value: one choice of a completion, or the scores of one `score` call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Entry {
    /// One sampled choice.
    Choice(Choice),
    /// Log-probabilities as `f64::to_bits`: JSON has no -inf, and a log-probability can be one.
    Score(Vec<u64>),
}

/// Counters of a cache, for `explain --analyze` and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    /// Lookups answered from the cache (one per choice, one per `score` call).
    pub hits: u64,
    /// Lookups that went to the teacher.
    pub misses: u64,
    /// Entries held.
    pub entries: u64,
    /// Entries not yet written to the store.
    pub pending: u64,
    /// Bytes of the segments this cache knows on the store.
    pub bytes_on_store: u64,
    /// Segments on the store.
    pub segments: u64,
    /// Damaged stretches skipped while loading (a torn tail or a corrupt record; see `warnings`).
    pub dropped_records: u64,
    /// Flushes that failed (their entries stay pending and are retried).
    pub flush_errors: u64,
    /// Compactions done.
    pub compactions: u64,
    /// Answers that could not be stored (they do not survive a JSON round trip, e.g. NaN).
    pub uncacheable: u64,
    /// What went wrong while loading or writing, first few only.
    pub warnings: Vec<String>,
}

/// The state behind the lock. The lock is a std mutex held only for map operations, never
/// across an `.await`.
#[derive(Default)]
struct State {
    /// Each entry's serialised value, decoded only when it is asked for: a rerun that needs a
    /// few of a large cache's entries does not parse them all at open.
    index: HashMap<Key, bytes::Bytes>,
    /// Encoded records not yet in a segment, and how many.
    pending: Vec<u8>,
    pending_count: u64,
    /// Known segments: sequence number → size in bytes.
    segments: BTreeMap<u64, u64>,
    next_seq: u64,
    /// The store refused `PutMode::Create`; plain puts from then on.
    no_create: bool,
    stats: CacheStats,
}

impl State {
    /// The segments after the last big one: what a compaction merges.
    fn small_tail(&self) -> Vec<u64> {
        small_tail(&self.segments, BIG_SEGMENT)
    }

    fn warn(&mut self, message: String) {
        if self.stats.warnings.len() < MAX_WARNINGS {
            self.stats.warnings.push(message);
        }
    }
}

/// Shared between the handles and the background flusher.
struct Shared {
    location: Location,
    config: CacheConfig,
    state: Mutex<State>,
    /// Serialises flushes and compactions, so segment numbers are written in order and a
    /// compaction never deletes a segment that a flush is still adding.
    flush_lock: tokio::sync::Mutex<()>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// A persistent, content-addressed map from cache keys to teacher answers. See the module docs.
///
/// Dropping it asks the background task for one last flush, which happens only if the tokio
/// runtime is still running; call [`ResponseCache::flush`] to be sure.
pub struct ResponseCache {
    shared: Arc<Shared>,
    /// Dropped with the cache; the flusher sees it and flushes a last time.
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache").field("location", &self.shared.location.display).finish_non_exhaustive()
    }
}

fn segment_name(seq: u64) -> String {
    format!("seg-{seq:016}.log")
}

/// The sequence number of a segment object's file name, or `None` for anything else (such as
/// a staging file a killed writer left behind).
fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    if digits.len() != 16 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl ResponseCache {
    /// Open (or create) the cache under `location`, loading every intact entry, and start the
    /// background flusher. Must be called inside a tokio runtime.
    ///
    /// Damaged segments never make this fail: the damage is skipped and counted in
    /// [`CacheStats::dropped_records`]. Only a store that cannot be listed or read does.
    pub async fn open(location: Location, config: CacheConfig) -> Result<ResponseCache, CacheError> {
        let mut state = State::default();
        load(&location, &mut state).await?;
        let shared = Arc::new(Shared {
            location,
            config,
            state: Mutex::new(state),
            flush_lock: tokio::sync::Mutex::new(()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(run_flusher(Arc::clone(&shared), rx));
        Ok(ResponseCache { shared, _shutdown: tx })
    }

    /// The value under `key`, counting a hit or a miss.
    pub(super) fn get(&self, key: &Key) -> Option<Entry> {
        let stored = self.shared.lock().index.get(key).cloned();
        let found = stored.and_then(|bytes| match serde_json::from_slice::<Entry>(&bytes) {
            Ok(entry) => Some(entry),
            Err(e) => {
                // Checksum right but not a value this version understands: a miss, once.
                let mut state = self.shared.lock();
                state.index.remove(key);
                state.stats.dropped_records += 1;
                state.warn(format!("a cached value is unreadable and is fetched again: {e}"));
                None
            }
        });
        let counter = if found.is_some() { &self.shared.hits } else { &self.shared.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Store `value` under `key` (first value wins; the next flush persists it).
    pub(super) fn insert(&self, key: Key, value: &Entry) {
        let encoded = serde_json::to_vec(value).ok().filter(|bytes| bytes.len() <= segment::MAX_PAYLOAD - segment::KEY);
        // Keep only what reads back equal: what a later run loads must be what this run serves.
        // NaN and infinities become `null` in JSON and fail here.
        let round_trips = encoded.as_deref().and_then(|b| serde_json::from_slice::<Entry>(b).ok()).is_some_and(|back| &back == value);
        let mut state = self.shared.lock();
        let Some(encoded) = encoded.filter(|_| round_trips) else {
            state.stats.uncacheable += 1;
            return;
        };
        if state.index.contains_key(&key) {
            return;
        }
        segment::encode_record(&mut state.pending, &key, &encoded);
        state.pending_count += 1;
        state.index.insert(key, encoded.into());
    }

    /// Write every pending entry to the store now, as one new segment, and compact if there
    /// are too many segments. When it returns `Ok(n)`, every entry inserted before the call is
    /// durable; `n` is how many this call wrote (others may have been written by the background
    /// flusher meanwhile). On error the entries stay pending and the next flush retries them.
    pub async fn flush(&self) -> Result<u64, CacheError> {
        self.shared.flush().await
    }

    /// Counters and sizes.
    pub fn stats(&self) -> CacheStats {
        let state = self.shared.lock();
        let mut stats = state.stats.clone();
        stats.hits = self.shared.hits.load(Ordering::Relaxed);
        stats.misses = self.shared.misses.load(Ordering::Relaxed);
        stats.entries = state.index.len() as u64;
        stats.pending = state.pending_count;
        stats.segments = state.segments.len() as u64;
        stats.bytes_on_store = state.segments.values().sum();
        stats
    }

    /// Where the cache lives, as the user wrote it.
    pub fn location(&self) -> &str {
        &self.shared.location.display
    }
}

/// The sequence numbers after the last segment of at least `big` bytes, in order.
fn small_tail(segments: &BTreeMap<u64, u64>, big: u64) -> Vec<u64> {
    let last_big = segments.iter().rev().find(|(_, &size)| size >= big).map(|(&seq, _)| seq);
    segments.keys().copied().filter(|&seq| last_big.is_none_or(|b| seq > b)).collect()
}

/// Read every segment in sequence order into `state`.
async fn load(location: &Location, state: &mut State) -> Result<(), CacheError> {
    let store_error =
        |op, path: &ObjectPath, source| CacheError::Store { location: location.display.clone(), op, path: path.to_string(), source };
    for (seq, path) in list_segments(location).await? {
        let bytes = match location.store.get(&path).await {
            Ok(got) => got.bytes().await.map_err(|e| store_error("read", &path, e))?,
            // Deleted since the listing (a compaction elsewhere finished): its records are in
            // the merged segment, which sorts later.
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(store_error("read", &path, e)),
        };
        let decoded = segment::decode(&bytes);
        for damage in &decoded.damage {
            state.stats.dropped_records += 1;
            state.warn(format!("{path}: skipped {} damaged bytes at offset {}", damage.len, damage.offset));
        }
        for record in &decoded.records {
            // Values are parsed when asked for (`get`); one that does not parse is a miss then.
            state.index.entry(record.key).or_insert_with(|| bytes.slice_ref(record.value));
        }
        state.segments.insert(seq, bytes.len() as u64);
        state.next_seq = state.next_seq.max(seq + 1);
    }
    Ok(())
}

/// The segments under `location`, in sequence order.
async fn list_segments(location: &Location) -> Result<Vec<(u64, ObjectPath)>, CacheError> {
    let dir = location.child(DIR);
    let listing: Vec<_> = location.store.list(Some(&dir)).try_collect().await.map_err(|source| CacheError::Store {
        location: location.display.clone(),
        op: "list",
        path: dir.to_string(),
        source,
    })?;
    let mut segments: Vec<(u64, ObjectPath)> = listing
        .into_iter()
        .filter_map(|meta| {
            let seq = parse_segment_name(meta.location.filename()?)?;
            // Only direct children of the folder; anything deeper is not ours.
            let direct = meta.location.prefix_match(&dir)?.count() == 1;
            direct.then_some((seq, meta.location))
        })
        .collect();
    segments.sort();
    Ok(segments)
}

/// Flush every `flush_interval`, and once more when the cache is dropped.
async fn run_flusher(shared: Arc<Shared>, mut shutdown: tokio::sync::oneshot::Receiver<()>) {
    let period = shared.config.flush_interval.max(Duration::from_millis(1));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut shutdown => {
                // Errors are recorded in the stats by `flush`; nobody is left to tell.
                let _ = shared.flush().await;
                return;
            }
        }
        let _ = shared.flush().await;
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves only plain maps behind; they are still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn store_error(&self, op: &'static str, path: &ObjectPath, source: object_store::Error) -> CacheError {
        CacheError::Store { location: self.location.display.clone(), op, path: path.to_string(), source }
    }

    fn segment_path(&self, seq: u64) -> ObjectPath {
        self.location.child(&format!("{DIR}/{}", segment_name(seq)))
    }

    async fn flush(&self) -> Result<u64, CacheError> {
        let _serial = self.flush_lock.lock().await;
        let (buf, count) = {
            let mut state = self.lock();
            if state.pending_count == 0 {
                return Ok(0);
            }
            (std::mem::take(&mut state.pending), std::mem::take(&mut state.pending_count))
        };
        let size = buf.len() as u64;
        let seq = match self.put_new(PutPayload::from(buf.clone())).await {
            Ok(seq) => seq,
            Err(error) => {
                let mut state = self.lock();
                // Put the entries back in front of whatever arrived meanwhile; order does not
                // matter to a content-addressed map.
                let newer = std::mem::replace(&mut state.pending, buf);
                state.pending.extend_from_slice(&newer);
                state.pending_count += count;
                state.stats.flush_errors += 1;
                state.warn(error.to_string());
                return Err(error);
            }
        };
        let too_many = {
            let mut state = self.lock();
            state.segments.insert(seq, size);
            state.small_tail().len() > self.config.compact_above
        };
        if too_many {
            // The flushed entries are durable whatever happens here; a failed compaction is
            // retried at the next flush and only recorded.
            if let Err(e) = self.compact().await {
                let mut state = self.lock();
                state.warn(format!("compaction failed: {e}"));
            }
        }
        Ok(count)
    }

    /// Write `payload` as a new segment under the next free sequence number, which it returns.
    async fn put_new(&self, payload: PutPayload) -> Result<u64, CacheError> {
        // A few collisions in a row mean another writer is far ahead: list to catch up.
        const TRIES_BEFORE_LISTING: u32 = 4;
        const MAX_TRIES: u32 = 64;
        let mut tries = 0;
        loop {
            let (seq, create) = {
                let mut state = self.lock();
                let seq = state.next_seq;
                state.next_seq += 1;
                (seq, !state.no_create)
            };
            let path = self.segment_path(seq);
            let result = if create {
                self.location.store.put_opts(&path, payload.clone(), PutMode::Create.into()).await
            } else {
                self.location.store.put(&path, payload.clone()).await
            };
            match result {
                Ok(_) => return Ok(seq),
                Err(object_store::Error::AlreadyExists { .. }) if tries < MAX_TRIES => {
                    tries += 1;
                    if tries % TRIES_BEFORE_LISTING == 0 {
                        let free = list_segments(&self.location).await?.last().map_or(0, |(last, _)| last + 1);
                        let mut state = self.lock();
                        state.next_seq = state.next_seq.max(free);
                    }
                }
                // The retry takes the next number; a gap in the numbering is harmless.
                Err(object_store::Error::NotImplemented { .. }) if create => self.lock().no_create = true,
                Err(e) => return Err(self.store_error("write", &path, e)),
            }
        }
    }

    /// Merge the segments after the last big one into one new segment. Caller holds
    /// `flush_lock`.
    async fn compact(&self) -> Result<(), CacheError> {
        let old: Vec<u64> = self.lock().small_tail();
        if old.len() < 2 {
            return Ok(());
        }
        // Copy intact records unchanged, first occurrence of each key, in sequence order: the
        // same entries a load would keep. Reading back from the store (rather than re-encoding
        // the in-memory map) keeps the state lock free of a long serialisation.
        let mut merged = Vec::new();
        let mut seen: HashSet<Key> = HashSet::new();
        for &old_seq in &old {
            let path = self.segment_path(old_seq);
            let bytes = match self.location.store.get(&path).await {
                Ok(got) => got.bytes().await.map_err(|e| self.store_error("read", &path, e))?,
                // Another writer sharing the cache merged and deleted it; its records are in
                // that writer's merged segment.
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(self.store_error("read", &path, e)),
            };
            for record in segment::decode(&bytes).records {
                if seen.insert(record.key) {
                    merged.extend_from_slice(record.raw);
                }
            }
        }
        let size = merged.len() as u64;
        let seq = self.put_new(PutPayload::from(merged)).await?;
        {
            let mut state = self.lock();
            for old_seq in &old {
                state.segments.remove(old_seq);
            }
            state.segments.insert(seq, size);
            state.stats.compactions += 1;
        }
        // Only now delete: until here a crash leaves the old segments and the merged one, which
        // hold the same records twice. A failed delete leaves a duplicate for the next open.
        for old_seq in old {
            let path = self.segment_path(old_seq);
            match self.location.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    let error = self.store_error("delete", &path, e);
                    self.lock().warn(error.to_string());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_reject_strays() {
        assert_eq!(segment_name(42), "seg-0000000000000042.log");
        assert_eq!(parse_segment_name(&segment_name(42)), Some(42));
        assert_eq!(parse_segment_name("seg-0000000000000042.log#1"), None);
        assert_eq!(parse_segment_name("seg-42.log"), None);
        assert_eq!(parse_segment_name("seg-00000000000000+2.log"), None);
    }

    #[tokio::test]
    async fn answers_that_do_not_round_trip_are_served_but_not_stored() {
        use crate::teacher::{FinishReason, TokenLogprob};
        let store = Arc::new(object_store::memory::InMemory::new());
        let cache = ResponseCache::open(Location::memory(store, ""), CacheConfig::default()).await.expect("open");
        let nan = Entry::Choice(Choice {
            text: "x".into(),
            finish_reason: FinishReason::Stop,
            logprobs: Some(vec![TokenLogprob { token: "x".into(), logprob: f64::NAN, top: Vec::new() }]),
        });
        cache.insert([1; segment::KEY], &nan);
        cache.insert([2; segment::KEY], &Entry::Score(vec![f64::NAN.to_bits()]));
        let stats = cache.stats();
        assert_eq!((stats.uncacheable, stats.entries, stats.pending), (1, 1, 1));
        assert!(cache.get(&[1; segment::KEY]).is_none());
    }

    #[tokio::test]
    async fn a_value_that_does_not_parse_is_a_miss_counted_once() {
        let store = Arc::new(object_store::memory::InMemory::new());
        let location = Location::memory(store, "");
        let good = Entry::Score(vec![1.5f64.to_bits()]);
        let mut segment = Vec::new();
        segment::encode_record(&mut segment, &[1; segment::KEY], &serde_json::to_vec(&good).expect("serialise"));
        // Checksum right, value no version of `Entry` reads.
        segment::encode_record(&mut segment, &[2; segment::KEY], br#"{"bogus":1}"#);
        location.store.put(&location.child(&format!("{DIR}/{}", segment_name(0))), segment.into()).await.expect("put");
        let cache = ResponseCache::open(location, CacheConfig::default()).await.expect("open");
        assert_eq!((cache.stats().entries, cache.stats().dropped_records), (2, 0), "parsed only when asked for");
        assert_eq!(cache.get(&[1; segment::KEY]), Some(good));
        assert_eq!(cache.get(&[2; segment::KEY]), None);
        assert_eq!(cache.get(&[2; segment::KEY]), None);
        let stats = cache.stats();
        assert_eq!((stats.entries, stats.dropped_records, stats.hits, stats.misses), (1, 1, 1, 2), "{stats:?}");
        assert_eq!(stats.warnings.len(), 1);
    }

    #[test]
    fn compaction_takes_only_the_segments_after_the_last_big_one() {
        let segments: BTreeMap<u64, u64> = [(1, 10), (2, 500), (3, 10), (4, 600), (5, 10), (6, 20)].into();
        assert_eq!(small_tail(&segments, 500), [5, 6]);
        assert_eq!(small_tail(&segments, 1000), [1, 2, 3, 4, 5, 6]);
        let ends_big: BTreeMap<u64, u64> = [(1, 10), (2, 900)].into();
        assert!(small_tail(&ends_big, 500).is_empty());
    }

    #[test]
    fn scores_keep_infinities() {
        let entry = Entry::Score(vec![f64::NEG_INFINITY.to_bits(), (-0.25f64).to_bits()]);
        let json = serde_json::to_vec(&entry).expect("serialise");
        let back: Entry = serde_json::from_slice(&json).expect("parse");
        assert_eq!(back, entry);
    }
}
