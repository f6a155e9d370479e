//! `labflow generate` and `labflow explain`: run pipelines over a taxonomy, or show a plan.

use anyhow::{bail, Context, Result};
use clap::Args;
use labflow::documents::{ChunkOptions, TokenCount, WordEstimate};
use labflow::engine::generate::{dry_run, generate, DryRun, GenerateConfig, Generated};
use labflow::engine::increment::Why;
use labflow::engine::{Progress, RunOptions};
use labflow::model::Precision;
use labflow::operators::BuildContext;
use labflow::pipeline::{self, DirSource, Plan};
use labflow::store::Location;
use labflow::teacher::test_teacher::TestTeacher;
use labflow::teacher::{Client, EmbeddedTeacher, TeacherOptions};
use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// The taxonomy root: a folder, file://, s3:// or memory:// URL.
    #[arg(long, value_name = "URL")]
    pub taxonomy: String,
    /// Where knowledge documents resolve (a folder laid out OWNER/REPO/COMMIT/…, or a URL).
    #[arg(long, value_name = "DIR|URL")]
    pub docs: Option<String>,
    /// The pipelines: a built-in set (`full`, `simple`), a pipeline file, a folder of them, or
    /// `ilab:DIR` for an InstructLab pipeline folder.
    #[arg(long, value_name = "NAME|FILE|DIR", default_value = "full")]
    pub pipeline: String,
    /// The teacher: a GGUF file or Hugging Face safetensors folder (embedded, in-process),
    /// `http://HOST:PORT/v1[?OPTIONS]#MODEL` (any OpenAI-compatible server), or `test` (a
    /// deterministic test teacher for smoke runs; its text is not data; `test?delay_ms=N` makes
    /// each call take N ms, `&journal=FILE` appends a line per call to FILE). OPTIONS, `&`-separated,
    /// stay in labflow: `seeds_choices_independently=true` when the server answers choice i of a
    /// seeded request as one choice with seed + i, as `labflow serve` does, so the cache asks for
    /// a prompt's missing choices in one request; `constraints=vllm|labflow|llama.cpp|openai` to
    /// send steps' decoding constraints in that server's fields (`vllm` and `labflow`:
    /// guided_regex/guided_choice/guided_json; `llama.cpp`: grammar/json_schema; `openai`:
    /// response_format, JSON schemas only); default `none`, not sent.
    #[arg(long, value_name = "SPEC")]
    pub teacher: String,
    /// The run folder: datasets, rejects, the response cache, summary and manifest.
    #[arg(long, value_name = "URL")]
    pub output: String,
    /// Only this leaf (repeatable); default every leaf with a pipeline.
    #[arg(long = "leaf", value_name = "ID")]
    pub leaves: Vec<String>,
    /// Samples per seed wherever a step says `n: scaled` (the reference's --sdg-scale-factor).
    #[arg(long, default_value_t = 2)]
    pub scale: u32,
    /// Base seed of every teacher call (each row's calls are seeded from it and the row's id).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Most rows' teacher calls outstanding at once.
    #[arg(long, default_value_t = 16)]
    pub max_in_flight: usize,
    /// Timely worker threads in this process.
    #[arg(long, short = 'w', default_value_t = 1)]
    pub workers: usize,
    /// Number of processes of a cluster run (with --hostfile).
    #[arg(long, short = 'n', default_value_t = 1)]
    pub processes: usize,
    /// This process's index in a cluster run.
    #[arg(long, short = 'p', default_value_t = 0)]
    pub process: usize,
    /// A file with one `host:port` per process, for a cluster run.
    #[arg(long, value_name = "FILE")]
    pub hostfile: Option<String>,
    /// Cap every teacher step's max_tokens at N (smoke runs; completions cut short are counted
    /// as `truncated` in the summary).
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u32>,
    /// Most tokens per document chunk (knowledge leaves).
    #[arg(long, default_value_t = 500)]
    pub chunk_tokens: usize,
    /// Run id, part of every file name (default: the current time). Give every process of a
    /// cluster run the same one.
    #[arg(long)]
    pub run_id: Option<String>,
    /// Print what the run would compute, keep and remove (and why, with an estimate of the
    /// teacher requests), then stop: no teacher call, nothing written.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// A built-in set (`full`, `simple`), a pipeline file, a folder of them, or `ilab:DIR`.
    pub pipeline: String,
    /// The `--scale` to show costs for.
    #[arg(long, default_value_t = 2)]
    pub scale: u32,
}

/// Load the plans named by `spec`.
pub fn load_plans(spec: &str, ctx: &BuildContext) -> Result<Vec<Plan>> {
    if let Some(dir) = pipeline::ilab::dir_arg(spec) {
        return Ok(pipeline::ilab::load_dir(dir, ctx)?);
    }
    if let Some(files) = pipeline::builtin::set(spec) {
        let source = pipeline::builtin::Builtin;
        return files.iter().map(|f| pipeline::load(&source, f, ctx).map_err(Into::into)).collect();
    }
    let path = Path::new(spec);
    if path.is_file() {
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        return Ok(vec![pipeline::load(&DirSource(dir), name, ctx)?]);
    }
    if path.is_dir() {
        let mut names: Vec<String> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
            .collect();
        names.sort();
        if names.is_empty() {
            bail!("{spec} holds no pipeline files (*.yaml)");
        }
        let source = DirSource(path.to_path_buf());
        return names.iter().map(|n| pipeline::load(&source, n, ctx).map_err(Into::into)).collect();
    }
    bail!("no pipeline `{spec}`: give a built-in set (full, simple), a pipeline file, a folder, or ilab:DIR")
}

/// Counts tokens with the embedded teacher's own tokenizer.
struct TeacherTokens(EmbeddedTeacher);

impl TokenCount for TeacherTokens {
    fn count(&self, text: &str) -> usize {
        self.0.tokenize(text).map(|t| t.len()).unwrap_or(text.len())
    }
}

/// The teacher and the token counter its chunking should use.
fn open(spec: &str, max_in_flight: usize) -> Result<(Arc<dyn Client>, Arc<dyn TokenCount + Send + Sync>)> {
    if let Some(teacher) = TestTeacher::from_spec(spec) {
        return Ok((teacher.map_err(anyhow::Error::msg)?, Arc::new(WordEstimate)));
    }
    let path = Path::new(spec);
    if path.is_file() || path.is_dir() {
        // A GGUF file or a safetensors folder. Generation wants throughput: the Q8 decode path
        // (see benches/README.md).
        let options = TeacherOptions { precision: Precision::Q8, ..TeacherOptions::default() };
        let teacher = EmbeddedTeacher::load_with(path, options)?;
        return Ok((Arc::new(teacher.clone()), Arc::new(TeacherTokens(teacher))));
    }
    // An HTTP teacher gets as many requests in flight as the run keeps teacher calls outstanding
    // (its own default is 8, which left half of a 16-slot server idle: benches/README.md,
    // "generate"), and the openai client's 10-minute timeout: a local CPU server decoding 16
    // sequences at once takes minutes per completion, and a timed-out request is sent again.
    let http = |c: &mut labflow::teacher::HttpConfig| {
        c.max_in_flight = max_in_flight.max(1);
        c.timeout_secs = c.timeout_secs.max(600);
    };
    Ok((super::teacher::open_teacher_with(spec, &http)?, Arc::new(WordEstimate)))
}

pub async fn explain(args: ExplainArgs) -> Result<ExitCode> {
    let ctx = BuildContext { scale: args.scale, ..BuildContext::default() };
    for plan in load_plans(&args.pipeline, &ctx)? {
        println!("{}", plan.explain());
    }
    Ok(ExitCode::SUCCESS)
}

/// `--dry-run`'s report: one line per leaf to compute with why, then the totals.
fn print_dry_run(plan: &DryRun, json: bool) -> Result<()> {
    if json {
        let mut v = serde_json::to_value(plan)?;
        v["estimated_requests"] = plan.increment.estimated_requests().into();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    for w in &plan.warnings {
        eprintln!("warning: {w}");
    }
    for s in &plan.skipped {
        eprintln!("skipped {}: {}", s.leaf, s.reason);
    }
    let inc = &plan.increment;
    for c in &inc.compute {
        let why = match &c.why {
            Why::NoRecord => "no earlier run in this folder".to_string(),
            Why::New => "new leaf".to_string(),
            Why::Edited => "edited".to_string(),
            Why::Moved { from } => format!("moved from {from}; the response cache answers every call"),
            Why::Pipeline { steps } => format!("pipeline changed at {}", steps.join(", ")),
            Why::Teacher => "another teacher".to_string(),
            Why::Failed => "its last commit failed".to_string(),
        };
        let cost = c.estimated_requests.map_or("requests unknown".to_string(), |n| format!("~{n} requests"));
        println!("compute {}: {why} ({cost})", c.leaf);
    }
    for r in &inc.removed {
        println!("remove  {r}");
    }
    let unknown = inc.compute.iter().filter(|c| c.estimated_requests.is_none()).count();
    let unknown = if unknown > 0 { format!(" (+ {unknown} leaves with no earlier counts)") } else { String::new() };
    println!(
        "would compute {} leaves, keep {}, remove {}; about {} teacher requests{unknown}, fewer where the response cache has the answer",
        inc.compute.len(),
        inc.keep.len(),
        inc.removed.len(),
        inc.estimated_requests()
    );
    Ok(())
}

/// Live progress: on a terminal one bar per step (rows done of rows arrived, rejects, calls,
/// tokens/s, ETA); otherwise a plain line every 10 seconds when something moved.
fn progress_display(progress: Arc<Progress>, names: Vec<String>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let tty = std::io::stderr().is_terminal();
        let started = std::time::Instant::now();
        let bars = tty.then(|| {
            let multi = indicatif::MultiProgress::new();
            let style = indicatif::ProgressStyle::with_template("{prefix:>28} {bar:24} {pos:>5}/{len:<5} {msg} eta {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            let bars: Vec<indicatif::ProgressBar> = names
                .iter()
                .map(|n| {
                    let b = multi.add(indicatif::ProgressBar::new(0));
                    b.set_style(style.clone());
                    b.set_prefix(n.clone());
                    b
                })
                .collect();
            (multi, bars)
        });
        let mut last = Vec::new();
        loop {
            tokio::time::sleep(Duration::from_millis(if tty { 500 } else { 10_000 })).await;
            let snap = progress.snapshot();
            let secs = started.elapsed().as_secs_f64().max(1e-3);
            if let Some((_, bars)) = &bars {
                for (b, s) in bars.iter().zip(&snap) {
                    b.set_length(s[0]);
                    b.set_position((s[1] + s[2]).min(s[0]));
                    b.set_message(format!("out {} rej {} calls {} {:.1} tok/s", s[1], s[2], s[3], s[4] as f64 / secs));
                }
            } else if snap != last {
                let done = progress.leaves_done.load(std::sync::atomic::Ordering::Relaxed);
                let leaves = progress.leaves_total.load(std::sync::atomic::Ordering::Relaxed);
                let steps: Vec<String> = names
                    .iter()
                    .zip(&snap)
                    .filter(|(_, s)| s[0] > 0)
                    .map(|(n, s)| format!("{n} {}→{} (-{}, {} calls)", s[0], s[1], s[2], s[3]))
                    .collect();
                eprintln!("[{done}/{leaves} leaves, {secs:.0}s] {}", steps.join(" | "));
            }
            last = snap;
        }
    })
}

/// The engine's configuration for `args`, its progress counters and the step names they count.
fn config(args: &GenerateArgs) -> Result<(GenerateConfig, Arc<Progress>, Vec<String>)> {
    let ctx = BuildContext { scale: args.scale, seed: args.seed, max_tokens: args.max_tokens, ..BuildContext::default() };
    let plans: Vec<Arc<Plan>> = load_plans(&args.pipeline, &ctx)?.into_iter().map(Arc::new).collect();
    let taxonomy = Location::open(&args.taxonomy).with_context(|| format!("cannot open the taxonomy `{}`", args.taxonomy))?;
    let docs = args.docs.as_deref().map(|d| Location::open(d).with_context(|| format!("cannot open the document source `{d}`"))).transpose()?;
    let output = Location::open_or_create(&args.output).with_context(|| format!("cannot open the run folder `{}`", args.output))?;
    let hosts = match &args.hostfile {
        Some(f) => std::fs::read_to_string(f).with_context(|| format!("cannot read the host file {f}"))?.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect(),
        None if args.processes > 1 => bail!("--processes {} needs --hostfile with one host:port per process", args.processes),
        None => Vec::new(),
    };
    if !hosts.is_empty() && hosts.len() != args.processes {
        bail!("--hostfile lists {} hosts but --processes is {}", hosts.len(), args.processes);
    }
    let (teacher, counter) = open(&args.teacher, args.max_in_flight)?;
    let names: Vec<String> = plans.iter().flat_map(|p| p.steps.iter().map(move |s| format!("{}/{}", p.name, s.name))).collect();
    let progress = Arc::new(Progress::new(names.len()));
    let run_id = args.run_id.clone().unwrap_or_else(|| format!("run-{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)));
    let config = GenerateConfig {
        taxonomy,
        docs,
        plans,
        teacher,
        counter,
        chunk: ChunkOptions { max_tokens: args.chunk_tokens, ..ChunkOptions::default() },
        output,
        only: (!args.leaves.is_empty()).then(|| args.leaves.iter().cloned().collect::<BTreeSet<_>>()),
        run: RunOptions { workers: args.workers.max(1), process: args.process, hosts, max_in_flight: args.max_in_flight },
        run_id,
        progress: Some(Arc::clone(&progress)),
    };
    Ok((config, progress, names))
}

/// What `args` would compute, keep and remove; calls no teacher, writes nothing.
pub async fn plan(args: &GenerateArgs) -> Result<DryRun> {
    Ok(dry_run(config(args)?.0).await?)
}

/// Runs the generation `args` describe with live progress on stderr, where skipped leaves and
/// warnings go too; prints nothing on stdout.
pub async fn execute(args: &GenerateArgs) -> Result<Generated> {
    let (config, progress, names) = config(args)?;
    let ticker = progress_display(progress, names);
    let result = generate(config).await;
    ticker.abort();
    let generated = result?;
    for s in &generated.skipped {
        eprintln!("skipped {}: {}", s.leaf, s.reason);
    }
    for w in &generated.warnings {
        eprintln!("warning: {w}");
    }
    Ok(generated)
}

pub async fn run(args: GenerateArgs) -> Result<ExitCode> {
    if args.dry_run {
        print_dry_run(&plan(&args).await?, args.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let Generated { summary, skipped, increment, .. } = execute(&args).await?;
    if args.json {
        let mut v = serde_json::to_value(&summary)?;
        v["skipped"] = serde_json::to_value(&skipped)?;
        v["increment"] = serde_json::to_value(&increment)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{} leaves ({} computed, {} kept unchanged, {} removed), {} rows, {} rejected; {} teacher calls, {} cache hits; {:.1}s",
            summary.leaves, summary.computed, summary.kept, summary.removed, summary.rows, summary.rejects, summary.teacher_calls, summary.cache_hits, summary.wall_seconds
        );
        for op in &summary.operators {
            let c = &op.counts;
            println!(
                "  {}/{} [{}]: {} in, {} out, {} rejected, {} requests, {} unparsed, {} truncated",
                op.pipeline, op.name, op.op, c.rows_in, c.rows_out, c.rows_rejected, c.requests, c.unparsed, c.truncated
            );
        }
        println!("run folder: {} (manifest.json lists every file)", args.output);
    }
    for (leaf, e) in &summary.failed {
        eprintln!("error: leaf {leaf} could not be committed: {e}");
    }
    Ok(if summary.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
