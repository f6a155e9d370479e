//! The teacher response cache: hits and misses per choice, persistence on a local folder and an
//! in-memory object store, damaged segments, and a writer killed with SIGKILL at random moments.
//!
//! `TestTeacher` is a fake [`Client`] whose answer is a pure function of the request and which
//! counts its calls, so a test can tell a hit (no call) from a miss and check a cached answer
//! is intact by recomputing it.

use futures::future::BoxFuture;
use labflow::store::Location;
use labflow::teacher::cache::{CacheConfig, CachedClient, ResponseCache};
use labflow::teacher::{Choice, Client, FinishReason, Prompt, Request, Response, Sampling, TeacherError, Usage};
use object_store::memory::InMemory;
use object_store::ObjectStore;
use proptest::prelude::*;
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A deterministic fake teacher that counts its calls.
struct TestTeacher {
    identity: String,
    calls: AtomicU64,
    score_calls: AtomicU64,
    /// `n` of every completion request it received, in order.
    ns: Mutex<Vec<u32>>,
}

impl TestTeacher {
    fn new(identity: &str) -> Arc<TestTeacher> {
        Arc::new(TestTeacher {
            identity: identity.into(),
            calls: AtomicU64::new(0),
            score_calls: AtomicU64::new(0),
            ns: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// The answer for choice `j` of `request`: a pure function of both.
    fn answer(identity: &str, request: &Request, j: u32) -> Choice {
        let s = &request.sampling;
        Choice {
            text: format!("{identity}|{}|{:?}|t{}|k{}|s{:?}|c{j}", request.model, request.prompt, s.temperature, s.max_tokens, s.seed),
            finish_reason: FinishReason::Stop,
            logprobs: None,
        }
    }
}

impl Client for TestTeacher {
    fn identity(&self) -> String {
        self.identity.clone()
    }

    fn complete<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Response, TeacherError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.ns.lock().expect("lock").push(request.sampling.n);
        let choices = (0..request.sampling.n).map(|j| TestTeacher::answer(&self.identity, request, j)).collect();
        let usage = Usage { prompt_tokens: 3, completion_tokens: u64::from(request.sampling.n) };
        Box::pin(async move { Ok(Response { choices, usage }) })
    }

    fn score<'a>(&'a self, _prompt: &'a Prompt, continuations: &'a [String]) -> BoxFuture<'a, Result<Vec<f64>, TeacherError>> {
        self.score_calls.fetch_add(1, Ordering::SeqCst);
        let scores = continuations.iter().map(|c| if c == "never" { f64::NEG_INFINITY } else { -(c.len() as f64) / 3.0 }).collect();
        Box::pin(async move { Ok(scores) })
    }
}

fn request(prompt: &str, n: u32, seed: Option<u64>) -> Request {
    Request { model: "m".into(), prompt: Prompt::Text(prompt.into()), sampling: Sampling { n, seed, ..Sampling::default() } }
}

/// What the cached client must return for `request` in front of a `TestTeacher` named `identity`.
fn expected(identity: &str, request: &Request) -> Vec<Choice> {
    (0..request.sampling.n)
        .map(|i| match request.sampling.seed {
            // Seeded: one n=1 call per choice with seed + i.
            Some(seed) => {
                let mut one = request.clone();
                one.sampling.n = 1;
                one.sampling.seed = Some(seed + u64::from(i));
                TestTeacher::answer(identity, &one, 0)
            }
            None => TestTeacher::answer(identity, request, i),
        })
        .collect()
}

fn fast() -> CacheConfig {
    CacheConfig { flush_interval: Duration::from_secs(3600), compact_above: 64 }
}

async fn open(location: &Location, config: CacheConfig) -> Arc<ResponseCache> {
    Arc::new(ResponseCache::open(location.clone(), config).await.expect("open cache"))
}

#[tokio::test]
async fn miss_then_hit() {
    let cache = open(&Location::memory(Arc::new(InMemory::new()), ""), fast()).await;
    let teacher = TestTeacher::new("t");
    let client = CachedClient::new(Arc::clone(&teacher), cache);
    let req = request("hello", 1, Some(1));
    let first = client.complete(&req).await.expect("complete");
    assert_eq!(teacher.calls(), 1);
    assert_eq!(first.usage.completion_tokens, 1);
    let second = client.complete(&req).await.expect("complete");
    assert_eq!(teacher.calls(), 1, "a hit costs no call");
    assert_eq!(second.choices, first.choices);
    assert_eq!(second.usage, Usage::default(), "a hit spends nothing");
    let stats = client.cache().stats();
    assert_eq!((stats.hits, stats.misses, stats.entries, stats.pending), (1, 1, 1, 1));
    let json = serde_json::to_value(&stats).expect("stats serialise");
    assert_eq!(json["hits"], 1);
}

#[tokio::test]
async fn n4_with_2_cached_fetches_only_2() {
    let cache = open(&Location::memory(Arc::new(InMemory::new()), ""), fast()).await;
    let teacher = TestTeacher::new("t");
    let client = CachedClient::new(Arc::clone(&teacher), cache);

    // Seeded: one n=1 call per missing choice, seeds 5+2 and 5+3.
    let two = client.complete(&request("q", 2, Some(5))).await.expect("complete");
    assert_eq!(teacher.calls(), 2);
    let four = client.complete(&request("q", 4, Some(5))).await.expect("complete");
    assert_eq!(teacher.calls(), 4, "only choices 2 and 3 are fetched");
    assert_eq!(four.choices[..2], two.choices[..]);
    assert_eq!(four.choices, expected("t", &request("q", 4, Some(5))));
    assert_eq!(*teacher.ns.lock().expect("lock"), vec![1, 1, 1, 1]);

    // Unseeded: one call for all missing choices.
    client.complete(&request("u", 2, None)).await.expect("complete");
    let four = client.complete(&request("u", 4, None)).await.expect("complete");
    assert_eq!(teacher.calls(), 6);
    assert_eq!(teacher.ns.lock().expect("lock")[4..], [2, 2]);
    assert_eq!(four.choices.len(), 4);
    let stats = client.cache().stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (4, 8, 8));
}

#[tokio::test]
async fn identity_seed_and_params_change_the_key() {
    let cache = open(&Location::memory(Arc::new(InMemory::new()), ""), fast()).await;
    let a = TestTeacher::new("model-a");
    let b = TestTeacher::new("model-b");
    let client_a = CachedClient::new(Arc::clone(&a), Arc::clone(&cache));
    let client_b = CachedClient::new(Arc::clone(&b), Arc::clone(&cache));
    let base = request("p", 1, Some(1));
    client_a.complete(&base).await.expect("complete");
    let from_b = client_b.complete(&base).await.expect("complete");
    assert_eq!((a.calls(), b.calls()), (1, 1), "another model never shares answers");
    assert_eq!(from_b.choices, expected("model-b", &base));

    let mut variants = Vec::new();
    let mut v = base.clone();
    v.sampling.seed = Some(2);
    variants.push(v);
    let mut v = base.clone();
    v.sampling.seed = None;
    variants.push(v);
    let mut v = base.clone();
    v.sampling.temperature = 0.7;
    variants.push(v);
    let mut v = base.clone();
    v.sampling.max_tokens = 17;
    variants.push(v);
    let mut v = base.clone();
    v.sampling.stop = vec!["\n".into()];
    variants.push(v);
    let mut v = base.clone();
    v.prompt = Prompt::Text("p ".into());
    variants.push(v);
    let mut v = base.clone();
    v.model = "other".into();
    variants.push(v);
    for (i, v) in variants.iter().enumerate() {
        let got = client_a.complete(v).await.expect("complete");
        assert_eq!(a.calls(), 2 + i as u64, "variant {i} must miss");
        assert_eq!(got.choices, expected("model-a", v));
    }
    client_a.complete(&base).await.expect("complete");
    assert_eq!(a.calls(), 1 + variants.len() as u64, "the base request is still a hit");
}

#[tokio::test]
async fn score_is_cached() {
    let cache = open(&Location::memory(Arc::new(InMemory::new()), ""), fast()).await;
    let teacher = TestTeacher::new("t");
    let client = CachedClient::new(Arc::clone(&teacher), cache);
    let prompt = Prompt::Text("Is it?".into());
    let labels = vec!["YES".to_string(), "never".to_string()];
    let first = client.score(&prompt, &labels).await.expect("score");
    let second = client.score(&prompt, &labels).await.expect("score");
    assert_eq!(teacher.score_calls.load(Ordering::SeqCst), 1);
    assert_eq!(first, second);
    assert_eq!(second[1], f64::NEG_INFINITY);
    client.score(&prompt, &labels[..1]).await.expect("score");
    assert_eq!(teacher.score_calls.load(Ordering::SeqCst), 2, "other continuations, other key");
    assert_eq!(teacher.calls(), 0);
}

/// Write a few entries, flush, reopen: everything is there and costs no call.
async fn persists(location: Location) {
    let requests: Vec<Request> =
        (0..20).map(|i| request(&format!("p{i}"), 1 + i % 3, if i % 2 == 0 { Some(i as u64) } else { None })).collect();
    let prompt = Prompt::Text("score me".into());
    let labels = vec!["A".to_string(), "never".to_string()];
    let mut answers = Vec::new();
    {
        let cache = open(&location, fast()).await;
        let client = CachedClient::new(TestTeacher::new("t"), Arc::clone(&cache));
        for r in &requests {
            answers.push(client.complete(r).await.expect("complete").choices);
        }
        client.score(&prompt, &labels).await.expect("score");
        let written = cache.flush().await.expect("flush");
        assert_eq!(written, cache.stats().entries);
        assert_eq!(cache.flush().await.expect("flush"), 0, "nothing left to write");
    }
    let cache = open(&location, fast()).await;
    let stats = cache.stats();
    assert_eq!(stats.entries, requests.iter().map(|r| u64::from(r.sampling.n)).sum::<u64>() + 1);
    assert_eq!((stats.segments, stats.dropped_records, stats.pending), (1, 0, 0));
    assert!(stats.bytes_on_store > 0);
    let teacher = TestTeacher::new("t");
    let client = CachedClient::new(Arc::clone(&teacher), cache);
    for (r, answer) in requests.iter().zip(&answers) {
        assert_eq!(&client.complete(r).await.expect("complete").choices, answer);
    }
    assert_eq!(client.score(&prompt, &labels).await.expect("score")[1], f64::NEG_INFINITY);
    assert_eq!((teacher.calls(), teacher.score_calls.load(Ordering::SeqCst)), (0, 0));
}

#[tokio::test]
async fn persists_in_memory_store() {
    persists(Location::memory(Arc::new(InMemory::new()), "runs/one")).await;
}

#[tokio::test]
async fn persists_in_local_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    persists(Location::open(&dir.path().to_string_lossy()).expect("location")).await;
    assert!(dir.path().join("cache/seg-0000000000000000.log").is_file());
}

#[tokio::test]
async fn two_writers_sharing_a_cache_never_overwrite_each_other() {
    two_writers(Location::memory(Arc::new(InMemory::new()), "shared")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    two_writers(Location::open(&dir.path().to_string_lossy()).expect("location")).await;
}

async fn two_writers(location: Location) {
    // Both open an empty cache, so both would pick segment 0.
    let one = open(&location, fast()).await;
    let two = open(&location, fast()).await;
    let client_one = CachedClient::new(TestTeacher::new("t"), Arc::clone(&one));
    let client_two = CachedClient::new(TestTeacher::new("t"), Arc::clone(&two));
    client_one.complete(&request("from one", 3, Some(1))).await.expect("complete");
    client_two.complete(&request("from two", 2, Some(1))).await.expect("complete");
    one.flush().await.expect("flush");
    two.flush().await.expect("flush");
    let reopened = open(&location, fast()).await;
    assert_eq!((reopened.stats().entries, reopened.stats().segments), (5, 2));
}

#[tokio::test]
async fn background_flusher_writes_within_the_interval() {
    let location = Location::memory(Arc::new(InMemory::new()), "");
    let cache = open(&location, CacheConfig { flush_interval: Duration::from_millis(50), compact_above: 64 }).await;
    let client = CachedClient::new(TestTeacher::new("t"), Arc::clone(&cache));
    client.complete(&request("bg", 3, Some(1))).await.expect("complete");
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache.stats().pending > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A second reader sees it without any explicit flush.
    let other = open(&location, fast()).await;
    assert_eq!(other.stats().entries, 3);
}

#[tokio::test]
async fn dropping_the_cache_flushes() {
    let location = Location::memory(Arc::new(InMemory::new()), "");
    {
        let cache = open(&location, fast()).await;
        let client = CachedClient::new(TestTeacher::new("t"), cache);
        client.complete(&request("d", 2, None)).await.expect("complete");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let entries = open(&location, fast()).await.stats().entries;
        if entries == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the final flush never happened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn compaction_merges_segments_and_keeps_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let location = Location::open(&dir.path().to_string_lossy()).expect("location");
    let config = CacheConfig { flush_interval: Duration::from_secs(3600), compact_above: 3 };
    let cache = open(&location, config.clone()).await;
    let client = CachedClient::new(TestTeacher::new("t"), Arc::clone(&cache));
    for i in 0..10 {
        client.complete(&request(&format!("c{i}"), 2, Some(i))).await.expect("complete");
        cache.flush().await.expect("flush");
        assert!(cache.stats().segments <= 3);
    }
    assert!(cache.stats().compactions >= 2);
    let on_disk = std::fs::read_dir(dir.path().join("cache")).expect("read dir").count() as u64;
    assert_eq!(on_disk, cache.stats().segments, "old segments are deleted");
    drop(client);
    let reopened = open(&location, config).await;
    assert_eq!((reopened.stats().entries, reopened.stats().dropped_records), (20, 0));
}

/// The same persistence test against a real S3-compatible server (`s3s-fs`, which checks
/// request signatures); skipped with a message when it is not installed.
#[tokio::test]
async fn persists_in_s3() {
    use object_store::aws::AmazonS3Builder;
    if Command::new("s3s-fs").arg("--version").stdout(Stdio::null()).status().is_err() {
        let msg = "s3s-fs not installed: `cargo install s3s-fs@0.14.1 --locked --features binary` (or run .ci/run)";
        assert!(std::env::var("LABFLOW_REQUIRE_S3").as_deref() != Ok("1"), "{msg}");
        eprintln!("SKIPPED: {msg}");
        return;
    }
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(root.path().join("cache-bucket")).expect("bucket");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
    struct Server(std::process::Child);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Server(
        Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", "cachekey", "--secret-key", "cachesecret"])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "s3s-fs did not start listening on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Built directly rather than through `Location::open`, so no process-wide AWS_* variables
    // are set under other tests' feet.
    let s3 = AmazonS3Builder::new()
        .with_bucket_name("cache-bucket")
        .with_region("us-east-1")
        .with_access_key_id("cachekey")
        .with_secret_access_key("cachesecret")
        .with_endpoint(format!("http://127.0.0.1:{port}"))
        .with_allow_http(true)
        .build()
        .expect("s3 client");
    let s3: Arc<dyn ObjectStore> = Arc::new(s3);
    persists(Location::memory(Arc::clone(&s3), "runs/s3")).await;
    two_writers(Location::memory(s3, "runs/shared")).await;
    assert!(root.path().join("cache-bucket/runs/s3/cache/seg-0000000000000000.log").is_file());
}

/// Byte offsets where the records of a segment end, read from the documented format
/// `[len u32 LE][32-byte checksum][payload]`.
fn record_ends(bytes: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        at += 36 + len;
        ends.push(at);
    }
    assert_eq!(at, bytes.len());
    ends
}

/// Three segments of 4 entries each in a local folder; returns the folder and segment paths.
async fn three_segments() -> (tempfile::TempDir, Location, Vec<std::path::PathBuf>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let location = Location::open(&dir.path().to_string_lossy()).expect("location");
    let cache = open(&location, fast()).await;
    let client = CachedClient::new(TestTeacher::new("t"), Arc::clone(&cache));
    for s in 0..3 {
        client.complete(&request(&format!("seg{s}"), 4, Some(s))).await.expect("complete");
        cache.flush().await.expect("flush");
    }
    let segments = (0..3).map(|s| dir.path().join(format!("cache/seg-{s:016}.log"))).collect();
    (dir, location, segments)
}

#[tokio::test]
async fn torn_tail_and_flipped_byte_lose_only_their_records() {
    let (_dir, location, segments) = three_segments().await;
    // Segment 0: cut in the middle of its last record.
    let bytes = std::fs::read(&segments[0]).expect("read");
    let ends = record_ends(&bytes);
    std::fs::write(&segments[0], &bytes[..ends[2] + 10]).expect("truncate");
    // Segment 1: flip one byte inside its second record's payload.
    let mut bytes = std::fs::read(&segments[1]).expect("read");
    let at = record_ends(&bytes)[0] + 60;
    bytes[at] ^= 0xff;
    std::fs::write(&segments[1], &bytes).expect("flip");

    let cache = open(&location, fast()).await;
    let stats = cache.stats();
    assert_eq!((stats.entries, stats.dropped_records), (10, 2), "{stats:?}");
    assert_eq!(stats.warnings.len(), 2);
    let teacher = TestTeacher::new("t");
    let client = CachedClient::new(Arc::clone(&teacher), cache);
    for s in 0..3 {
        let r = request(&format!("seg{s}"), 4, Some(s));
        assert_eq!(client.complete(&r).await.expect("complete").choices, expected("t", &r));
    }
    assert_eq!(teacher.calls(), 2, "exactly the two damaged choices are fetched again");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Any truncation point, plus an optional flipped byte before it: loading keeps exactly the
    /// records that are whole and unflipped, and never fails.
    #[test]
    fn any_truncation_loads_the_intact_prefix(cut_frac in 0.0f64..=1.0, flip in proptest::option::of(0.0f64..1.0)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let store = Arc::new(InMemory::new());
            let location = Location::memory(Arc::clone(&store) as Arc<dyn ObjectStore>, "");
            {
                let cache = open(&location, fast()).await;
                let client = CachedClient::new(TestTeacher::new("t"), Arc::clone(&cache));
                client.complete(&request("prop", 6, Some(9))).await.expect("complete");
                cache.flush().await.expect("flush");
            }
            let path = location.child("cache/seg-0000000000000000.log");
            let bytes = object_store::ObjectStoreExt::get(store.as_ref(), &path).await.expect("get").bytes().await.expect("bytes").to_vec();
            let ends = record_ends(&bytes);
            let cut = ((bytes.len() as f64) * cut_frac) as usize;
            let mut damaged = bytes[..cut].to_vec();
            let mut lost_to_flip = 0;
            if let Some(f) = flip.filter(|_| cut > 0) {
                let at = ((cut as f64) * f) as usize;
                damaged[at] ^= 0x01;
                // The record holding the flipped byte ends at the first end past it; it is lost
                // if it was otherwise whole.
                lost_to_flip = usize::from(ends.iter().find(|&&e| e > at).is_some_and(|&e| e <= cut));
            }
            object_store::ObjectStoreExt::put(store.as_ref(), &path, damaged.into()).await.expect("put");
            let whole = ends.iter().filter(|&&e| e <= cut).count();
            let cache = open(&location, fast()).await;
            let stats = cache.stats();
            prop_assert_eq!(stats.entries as usize, whole - lost_to_flip, "{:?}", stats);
            let torn = usize::from(!ends.contains(&cut) && cut > 0);
            prop_assert!(stats.dropped_records as usize <= torn + lost_to_flip);
            prop_assert!(stats.dropped_records as usize >= usize::from(torn + lost_to_flip > 0));
            Ok(())
        })?;
    }
}

const WRITER_DIR: &str = "LABFLOW_CACHE_WRITER_DIR";
const WRITER_ROUND: &str = "LABFLOW_CACHE_WRITER_ROUND";

/// The request number `i` of writer round `round`.
fn writer_request(round: u64, i: u64) -> Request {
    request(&format!("round {round} request {i}"), 2, Some(i))
}

/// Writer mode of the SIGKILL test: does nothing unless the parent test started this binary
/// with `LABFLOW_CACHE_WRITER_DIR` set. Then it writes to the cache until killed, printing
/// `DURABLE <round> <n>` after each completed flush once requests 0..n are durable.
#[test]
fn cache_writer_child() {
    let (Ok(dir), Ok(round)) = (std::env::var(WRITER_DIR), std::env::var(WRITER_ROUND)) else {
        return;
    };
    let round: u64 = round.parse().expect("round number");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let location = Location::open(&dir).expect("location");
        // A short interval so the background flusher races the explicit flushes, and frequent
        // compactions so some kills land inside one.
        let config = CacheConfig { flush_interval: Duration::from_millis(15), compact_above: 4 };
        let cache = open(&location, config).await;
        let client = CachedClient::new(TestTeacher::new("t"), Arc::clone(&cache));
        let stop = Instant::now() + Duration::from_secs(20);
        let mut i = 0;
        while Instant::now() < stop {
            for _ in 0..5 {
                client.complete(&writer_request(round, i)).await.expect("complete");
                i += 1;
            }
            cache.flush().await.expect("flush");
            println!("DURABLE {round} {i}");
        }
    });
}

/// The acceptance test: SIGKILL a writer at random moments; every entry it reported durable
/// is present and intact afterwards, and loading never fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_sigkill_at_random_moments() {
    use rand::Rng;
    const KILLS: u64 = 10;
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut durable: Vec<u64> = Vec::new();
    let mut rng = rand::rng();
    let started = Instant::now();
    for round in 0..KILLS {
        let mut child = Command::new(&exe)
            .args(["cache_writer_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(WRITER_DIR, dir.path())
            .env(WRITER_ROUND, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().expect("piped stdout");
        let reader = std::thread::spawn(move || {
            let mut reader = std::io::BufReader::new(stdout);
            let mut last = 0u64;
            let mut line = String::new();
            // Only whole lines count: a line cut by the kill proves nothing.
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(rest) = line.strip_suffix('\n').and_then(|l| l.strip_prefix(&format!("DURABLE {round} "))) {
                    last = rest.parse().expect("count");
                }
                line.clear();
            }
            last
        });
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..700))).await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        durable.push(reader.join().expect("reader thread"));

        // Load after every kill: never fails, and holds everything reported so far.
        let location = Location::open(&dir.path().to_string_lossy()).expect("location");
        let cache = open(&location, fast()).await;
        let teacher = TestTeacher::new("t");
        let client = CachedClient::new(Arc::clone(&teacher), Arc::clone(&cache));
        for (r, &n) in durable.iter().enumerate() {
            for i in 0..n {
                let req = writer_request(r as u64, i);
                let got = client.complete(&req).await.expect("complete");
                assert_eq!(got.choices, expected("t", &req), "round {r} request {i} is damaged");
            }
        }
        assert_eq!(teacher.calls(), 0, "an entry reported durable is missing: {:?}", cache.stats());
        eprintln!("kill {round}: {durable:?} requests durable per round, stats {:?}", cache.stats());
    }
    let verified: u64 = durable.iter().sum();
    let left = std::fs::read_dir(dir.path().join("cache")).map(|d| d.count()).unwrap_or(0);
    eprintln!(
        "{KILLS} kills in {:.1}s; {verified} requests ({} entries) verified; {left} files in cache/",
        started.elapsed().as_secs_f64(),
        verified * 2
    );
    assert!(verified > 0, "no writer got as far as one flush; the test proved nothing");
    assert!(Path::new(&dir.path().join("cache")).is_dir());
}
