//! `labflow run` and `labflow status`: a project file (`lab.yaml`) end to end — validate the
//! taxonomy, generate (incrementally), mix, train the phases — and what a run would do now.

use anyhow::{Context, Result};
use clap::Args;
use labflow::engine::generate::MANIFEST;
use labflow::project::{self, Project};
use labflow::store::{dataset, Location};
use labflow::taxonomy::{walk, WalkOptions};
use labflow::train::{checkpoint, OnChange};
use serde_json::{json, Value};
use std::path::Path;
use std::process::ExitCode;

use super::generate::GenerateArgs;
use super::mix::MixArgs;
use super::train::TrainArgs;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The project file (`lab.yaml`: the README's `labflow run` section lists every key;
    /// examples/quickstart/lab.yaml is one). Rerunning it does only what changed: unchanged
    /// leaves cost no teacher call, an unchanged mix no training step.
    pub project: String,
    /// Print the summary as JSON: `teacher_calls` and `train_steps` count the work this
    /// invocation did.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The project file.
    pub project: String,
    /// Print the status as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Written at the output's root after each mix: which generation the mix was made from.
const LAB_STATE: &str = "lab_state.json";
/// The last run's summary, at the output's root.
const LAB_SUMMARY: &str = "lab_summary.json";

fn load(path: &str) -> Result<Project> {
    if !Path::new(path).is_file() {
        anyhow::bail!("no project file `{path}`; examples/quickstart/lab.yaml is one to start from");
    }
    Ok(project::load(Path::new(path))?)
}

fn generate_args(p: &Project, dry_run: bool) -> GenerateArgs {
    let g = &p.generate;
    GenerateArgs {
        taxonomy: p.taxonomy.clone(),
        docs: p.docs.clone(),
        pipeline: g.pipeline.clone(),
        teacher: p.teacher.clone(),
        output: p.output.clone(),
        leaves: p.leaves.clone(),
        scale: g.scale,
        seed: g.seed,
        max_in_flight: g.max_in_flight,
        workers: g.workers,
        processes: 1,
        process: 0,
        hostfile: None,
        max_tokens: g.max_tokens,
        chunk_tokens: g.chunk_tokens,
        run_id: None,
        dry_run,
        json: false,
    }
}

fn mix_args(p: &Project) -> MixArgs {
    MixArgs { run: p.output.clone(), recipe: p.mix.recipe.clone(), output: Some(p.mix_output()), tokenizer: p.mix.tokenizer.clone(), json: false, fresh: false }
}

fn train_args(p: &Project, json: bool) -> TrainArgs {
    TrainArgs { recipe: p.train.recipe.clone(), output: Some(p.train_output()), mix: Some(p.mix_output()), max_steps: p.train.max_steps, threads: p.train.threads, json }
}

/// The taxonomy's diagnostics; `Err` when a leaf the project uses has an error.
async fn validate(p: &Project) -> Result<usize> {
    let root = Location::open(&p.taxonomy).with_context(|| format!("cannot open the taxonomy `{}`", p.taxonomy))?;
    let docs = p.docs.as_deref().map(Location::open).transpose().with_context(|| "cannot open the document source")?;
    let report = walk(&root, &WalkOptions { docs, only: None }).await?;
    let used = |path: &str| p.leaves.is_empty() || p.leaves.iter().any(|l| path.starts_with(&format!("{}/", l.trim_end_matches('/'))));
    let errors: Vec<_> = report.diagnostics.iter().filter(|d| d.is_error() && used(&d.path)).collect();
    for d in &errors {
        eprintln!("{d}");
    }
    if !errors.is_empty() {
        anyhow::bail!(
            "the taxonomy has {} error(s) in leaves this project uses (above); fix them (`labflow validate {}` lists every problem), or leave those leaves out with `leaves:`",
            errors.len(),
            p.taxonomy
        );
    }
    Ok(report.leaves.len())
}

async fn manifest_hash(out: &Location) -> Result<Option<String>> {
    Ok(dataset::read_bytes(out, MANIFEST).await?.map(|b| blake3::hash(&b).to_hex()[..16].to_string()))
}

pub async fn run(args: RunArgs) -> Result<ExitCode> {
    let p = load(&args.project)?;
    let valid = validate(&p).await?;
    let say = |line: String| {
        if !args.json {
            eprintln!("{line}");
        }
    };
    say(format!("== {}: {valid} valid leaves in {}; generating into {}", p.name, p.taxonomy, p.output));
    let generated = super::generate::execute(&generate_args(&p, false)).await?;
    let s = &generated.summary;
    if !s.failed.is_empty() {
        for (leaf, e) in &s.failed {
            eprintln!("error: leaf {leaf} could not be committed: {e}");
        }
        anyhow::bail!("{} leaves failed to generate; rerun `labflow run {}` to retry them (finished calls are cached)", s.failed.len(), args.project);
    }
    say(format!(
        "generate: {} leaves ({} computed, {} kept, {} removed), {} rows, {} rejected; {} teacher calls, {} cache hits",
        s.leaves, s.computed, s.kept, s.removed, s.rows, s.rejects, s.teacher_calls, s.cache_hits
    ));
    let out = Location::open_or_create(&p.output)?;
    let (mix, mix_dir) = super::mix::execute(&mix_args(&p)).await?;
    dataset::write_json(&out, LAB_STATE, &json!({ "generated": manifest_hash(&out).await?, "mix_recipe": mix.fingerprint })).await?;
    let rows = |k: &str| mix.rows.get(k).copied().unwrap_or(0);
    say(format!("mix: {} knowledge and {} skills records into {mix_dir}", rows("knowledge"), rows("skills")));
    let (train, train_dir) = super::train::execute(&train_args(&p, args.json), OnChange::Restart).await?;
    for ph in &train.phases {
        let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.4}"));
        say(format!("train {}: {} steps, loss {} → {}, chosen {} (held-out loss {})", ph.name, ph.steps, f(ph.first_loss), f(ph.last_loss), ph.chosen.dir, f(ph.chosen.heldout_loss)));
    }
    let summary = json!({
        "project": p.name,
        "teacher_calls": s.teacher_calls,
        "train_steps": train.train_steps,
        "generate": serde_json::to_value(s)?,
        "mix": {"rows": mix.rows, "output": mix_dir, "report": format!("{mix_dir}/mix_report.md")},
        "train": {"phases": train.phases, "resumed_from": train.resumed_from, "output": train_dir, "report": format!("{train_dir}/train_report.md")},
        "data": p.output,
        "final_checkpoint": train.final_checkpoint,
    });
    dataset::write_json(&out, LAB_SUMMARY, &summary).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(ExitCode::SUCCESS);
    }
    if s.teacher_calls == 0 && train.train_steps == 0 {
        println!("nothing new to do: 0 teacher calls, 0 training steps (everything in {} is up to date)", p.output);
    } else {
        println!("done: {} teacher calls, {} training steps", s.teacher_calls, train.train_steps);
    }
    println!("data:        {} (manifest.json lists every file)", p.output);
    println!("mixes:       {mix_dir} (mix_report.md)");
    if let Some(c) = &train.final_checkpoint {
        println!("checkpoints: {train_dir}; final model {c}");
    }
    println!("report:      {train_dir}/train_report.md, {}/{LAB_SUMMARY}", p.output.trim_end_matches('/'));
    Ok(ExitCode::SUCCESS)
}

pub async fn status(args: StatusArgs) -> Result<ExitCode> {
    let p = load(&args.project)?;
    let plan = super::generate::plan(&generate_args(&p, true)).await?;
    let inc = &plan.increment;
    let out = Location::open_or_create(&p.output)?;
    let generate = if inc.compute.is_empty() && inc.removed.is_empty() {
        format!("up to date ({} leaves)", inc.keep.len())
    } else {
        let leaves: Vec<&str> = inc.compute.iter().map(|c| c.leaf.as_str()).collect();
        format!("{} leaves to compute ({}), {} kept, {} to remove; about {} teacher requests", inc.compute.len(), leaves.join(", "), inc.keep.len(), inc.removed.len(), inc.estimated_requests())
    };
    let generation_pending = !(inc.compute.is_empty() && inc.removed.is_empty());
    let mix_dir = Location::open_or_create(&p.mix_output())?;
    let mixed = dataset::read_bytes(&mix_dir, labflow::mix::MIX_MANIFEST).await?.is_some();
    let state: Option<Value> = dataset::read_bytes(&out, LAB_STATE).await?.and_then(|b| serde_json::from_slice(&b).ok());
    let recorded = |key: &str| state.as_ref().and_then(|s| s[key].as_str().map(String::from));
    let same_data = !generation_pending && recorded("generated") == manifest_hash(&out).await?;
    let same_recipe = recorded("mix_recipe") == Some(super::mix::load_recipe(&p.mix.recipe)?.0.fingerprint());
    let mix_current = mixed && same_data && same_recipe;
    let mix = match (mixed, same_data, same_recipe) {
        (false, ..) => "not made yet".to_string(),
        (true, true, true) => "up to date".to_string(),
        (true, false, _) => "stale: the generated data changed since; a run re-mixes".to_string(),
        (true, true, false) => "stale: the mix recipe changed since; a run re-mixes".to_string(),
    };
    let train_dir = Location::open_or_create(&p.train_output())?;
    let progress = checkpoint::read_progress(&train_dir).await?;
    let train = match progress {
        None => "not started".to_string(),
        Some(_) if !mix_current => "stale: a run re-mixes, then trains again from the base (training is not incremental)".to_string(),
        Some(s) => {
            let (phases, want) = super::train::fingerprint(&train_args(&p, true)).await?;
            if s.recipe != want {
                "stale: the recipe or the mix changed; a run trains again from the base".to_string()
            } else if s.phase >= phases {
                format!("done: {} phases, final model {}", phases, s.chosen.last().map_or("-", |c| c.dir.as_str()))
            } else {
                format!("phase {} of {phases} at step {}: a run resumes there", s.phase + 1, s.phase_step)
            }
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json!({"project": p.name, "output": p.output, "generate": generate, "would_compute": inc.compute.iter().map(|c| &c.leaf).collect::<Vec<_>>(), "mix": mix, "train": train}))?);
    } else {
        println!("project {} → {}\n  generate: {generate}\n  mix:      {mix}\n  train:    {train}", p.name, p.output);
    }
    Ok(ExitCode::SUCCESS)
}
