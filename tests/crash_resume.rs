//! Crash safety: `labflow generate` (the real binary, the `full` pipelines, the real taxonomy,
//! the deterministic test teacher with a delay per call) is SIGKILLed at random moments — during
//! calls, during writes, around the manifest commit — on a local folder and on a real S3
//! server (s3s-fs on 127.0.0.1), then rerun to completion. Each time:
//! - the final output equals an uninterrupted run's, leaf by leaf;
//! - the teacher choices asked for across the killed run and the rerun exceed the uninterrupted
//!   run's by at most what can be in flight at once (`--max-in-flight` rows × the most choices
//!   one row's call asks for), counted from the test teacher's journal, which survives the kill;
//! - a reader polling the run folder throughout never sees a manifest it cannot parse, nor a
//!   file the manifest lists that is missing, short or unreadable. The reader has its own
//!   client: an S3 client's pooled connections belong to the runtime that opened them, and a
//!   connection borrowed from a runtime nobody drives hangs until the request times out.

mod common;

use labflow::operators::BuildContext;
use labflow::pipeline::{self, builtin};
use labflow::store::dataset::{read_bytes, read_parquet};
use labflow::store::Location;
use object_store::ObjectStore;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MAX_IN_FLIGHT: usize = 4;

/// The most choices one row's teacher call asks for in the `full` set at `--scale 2`.
fn most_choices_per_row() -> u64 {
    let ctx = BuildContext { scale: 2, ..BuildContext::default() };
    let mut most = 1;
    for f in builtin::set("full").unwrap() {
        let plan = pipeline::load(&builtin::Builtin, f, &ctx).unwrap();
        for c in plan.steps.iter().filter_map(|s| s.cost) {
            most = most.max(c.completions.max(c.requests));
        }
    }
    most
}

/// Choices the journal records (one line per call: `complete N` or `score 1`).
fn journal_choices(path: &Path) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(|l| l.rsplit(' ').next().and_then(|n| n.parse::<u64>().ok()).unwrap_or_else(|| panic!("journal line {l:?}"))).sum()
}

/// Where a run folder lives, and how to read it as a reader would.
struct Folder {
    url: String,
    loc: Location,
}

impl Folder {
    fn get(&self, rt: &tokio::runtime::Runtime, rel: &str) -> Result<Option<Vec<u8>>, String> {
        rt.block_on(read_bytes(&self.loc, rel)).map(|b| b.map(|b| b.to_vec())).map_err(|e| e.to_string())
    }

    /// The committed output, leaf → (file kind → JSONL text), or what is wrong with it.
    fn read(&self, rt: &tokio::runtime::Runtime) -> Result<Option<BTreeMap<String, String>>, String> {
        let Some(bytes) = self.get(rt, "manifest.json")? else { return Ok(None) };
        let manifest: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| format!("manifest.json does not parse: {e}"))?;
        let mut out = BTreeMap::new();
        for leaf in manifest["leaves"].as_array().ok_or("manifest without leaves")? {
            let id = leaf["leaf"].as_str().ok_or("leaf without id")?;
            for f in leaf["files"].as_array().ok_or("leaf without files")? {
                let path = f["path"].as_str().ok_or("file without path")?;
                let rows = f["rows"].as_u64().ok_or("file without rows")?;
                let bytes = self.get(rt, path)?.ok_or_else(|| format!("the manifest lists {path}, which is missing"))?;
                if path.ends_with(".jsonl") {
                    let text = String::from_utf8(bytes).map_err(|e| format!("{path}: {e}"))?;
                    let lines: Vec<&str> = text.lines().collect();
                    if lines.len() as u64 != rows {
                        return Err(format!("{path}: {} lines, the manifest says {rows}", lines.len()));
                    }
                    for l in &lines {
                        serde_json::from_str::<serde_json::Value>(l).map_err(|e| format!("{path}: a line does not parse: {e}"))?;
                    }
                    out.insert(format!("{}:{id}", path.split('/').next().unwrap_or("")), text);
                } else {
                    let batches = rt.block_on(read_parquet(&self.loc, path)).map_err(|e| e.to_string())?;
                    let n: usize = batches.iter().map(|b| b.num_rows()).sum();
                    if n as u64 != rows {
                        return Err(format!("{path}: {n} rows, the manifest says {rows}"));
                    }
                }
            }
        }
        Ok(Some(out))
    }
}

/// Opens the run folder of a name, with a client of its own.
type Opener = Arc<dyn Fn(&str) -> Folder + Send + Sync>;

/// Polls a folder until stopped, collecting every problem a reader would have hit.
fn poll(open: Opener, name: String, stop: Arc<AtomicBool>, problems: Arc<Mutex<Vec<String>>>) -> std::thread::JoinHandle<u32> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let folder = open(&name);
        let mut reads = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Err(e) = folder.read(&rt) {
                problems.lock().unwrap().push(e);
            }
            reads += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        reads
    })
}

struct Harness {
    command: Box<dyn Fn() -> Command>,
    folder: Opener,
    scratch: tempfile::TempDir,
    /// More arguments for `generate` (`--leaf` to keep a slow store's runs short).
    extra: Vec<String>,
}

impl Harness {
    fn generate(&self, folder: &Folder, journal: &Path) -> Command {
        let mut c = (self.command)();
        c.args(["generate", "--pipeline", "full", "--json"])
            .arg("--taxonomy")
            .arg(common::data("taxonomy"))
            .arg("--docs")
            .arg(common::data("docs"))
            .arg("--teacher")
            .arg(format!("test?delay_ms=2&journal={}", journal.display()))
            .args(["--output", &folder.url, "--max-in-flight", &MAX_IN_FLIGHT.to_string()])
            .args(&self.extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn complete(&self, folder: &Folder, journal: &Path) {
        let out = self.generate(folder, journal).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// `trials` kills at pseudo-random moments within about `t` seconds each.
    fn run(&self, trials: u32) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let reference = (self.folder)("reference");
        let journal0 = self.scratch.path().join("journal-reference");
        let started = Instant::now();
        self.complete(&reference, &journal0);
        let t = started.elapsed();
        let want = reference.read(&rt).unwrap().expect("the uninterrupted run wrote a manifest");
        assert!(want.len() >= 4, "{want:?}");
        let calls = journal_choices(&journal0);
        let bound = MAX_IN_FLIGHT as u64 * most_choices_per_row();
        eprintln!("uninterrupted: {:.2}s, {calls} choices; bound on repeats per kill: {bound}", t.as_secs_f64());
        for trial in 0..trials {
            // Spread over the run, and a third of the kills in its last fifth, where the last
            // leaves and the manifest are written.
            let h = blake3::hash(&trial.to_le_bytes());
            let u = f64::from(u32::from_le_bytes(h.as_bytes()[..4].try_into().unwrap())) / f64::from(u32::MAX);
            let at = if trial % 3 == 2 { 0.8 + 0.25 * u } else { 1.05 * u };
            let name = format!("trial-{trial}");
            let folder = (self.folder)(&name);
            let journal = self.scratch.path().join(format!("journal-{trial}"));
            let (stop, problems) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
            let reader = poll(Arc::clone(&self.folder), name, Arc::clone(&stop), Arc::clone(&problems));
            let mut child = self.generate(&folder, &journal).spawn().unwrap();
            std::thread::sleep(t.mul_f64(at));
            let finished = child.try_wait().unwrap().is_some();
            child.kill().unwrap();
            child.wait().unwrap();
            self.complete(&folder, &journal);
            stop.store(true, Ordering::Relaxed);
            let reads = reader.join().unwrap();
            let got = folder.read(&rt).unwrap().expect("the rerun wrote a manifest");
            assert_eq!(got, want, "trial {trial} (killed at {at:.2} of the run): the output differs from the uninterrupted run's");
            let asked = journal_choices(&journal);
            eprintln!(
                "trial {trial}: killed at {at:.2}{}, {asked} choices asked ({} repeated), {reads} reads",
                if finished { " (after it finished)" } else { "" },
                asked.saturating_sub(calls)
            );
            assert!(asked >= calls, "trial {trial}: fewer choices ({asked}) than the uninterrupted run's ({calls})");
            let repeated = asked - calls;
            assert!(repeated <= bound, "trial {trial}: {repeated} choices repeated, more than can be in flight ({bound})");
            let problems = problems.lock().unwrap();
            assert!(problems.is_empty(), "trial {trial}: a reader saw: {:?}", &problems[..problems.len().min(5)]);
        }
    }
}

#[test]
fn kill_9_at_random_moments_on_a_local_folder_loses_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let root: PathBuf = scratch.path().join("runs");
    std::fs::create_dir_all(&root).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&root).unwrap());
    let harness = Harness {
        command: Box::new(|| Command::new(env!("CARGO_BIN_EXE_labflow"))),
        folder: Arc::new(move |name| Folder {
            url: root.join(name).to_string_lossy().into_owned(),
            loc: Location::memory(Arc::clone(&store), name),
        }),
        scratch,
        extra: Vec::new(),
    };
    harness.run(20);
}

#[test]
fn kill_9_at_random_moments_on_s3_loses_nothing() {
    let Some(server) = common::s3::start(&[]) else { return };
    let endpoint = format!("http://127.0.0.1:{}", server.port);
    let client = move || -> Arc<dyn ObjectStore> {
        Arc::new(
            object_store::aws::AmazonS3Builder::new()
                .with_bucket_name(common::s3::BUCKET)
                .with_access_key_id(common::s3::KEY)
                .with_secret_access_key(common::s3::SECRET)
                .with_region("us-east-1")
                .with_endpoint(&endpoint)
                .with_allow_http(true)
                // A reader that retries would hide what it saw.
                .with_retry(object_store::RetryConfig { max_retries: 0, ..object_store::RetryConfig::default() })
                .build()
                .unwrap(),
        )
    };
    std::fs::create_dir_all(server.root().join(common::s3::BUCKET)).unwrap();
    let server = Arc::new(server);
    let for_command = Arc::clone(&server);
    let harness = Harness {
        command: Box::new(move || common::s3::command(&for_command)),
        folder: Arc::new(move |name| Folder { url: common::s3::url(name), loc: Location::memory(client(), name) }),
        scratch: tempfile::tempdir().unwrap(),
        // s3s-fs answers a request in ~20 ms, and every flush of the cache is one: two leaves
        // keep a run near 10 s.
        extra: ["compositional_skills/linguistics/synonyms", "knowledge/science/animals/birds/black_capped_chickadee"]
            .iter()
            .flat_map(|l| ["--leaf".to_string(), l.to_string()])
            .collect(),
    };
    // ~14 s a trial here: 4 by default, 20 (the count) in `.ci/run`.
    harness.run(std::env::var("CRASH_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(4));
}
