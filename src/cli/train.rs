//! `labflow train`: the multi-phase trainer over a recipe, with a progress bar and a summary.

use anyhow::{Context, Result};
use clap::Args;
use labflow::pipeline::DirSource;
use labflow::store::Location;
use labflow::train::{self, recipe, OnChange, Progress, TrainJob};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// The training recipe (see pipelines/train/: lab-multiphase.yaml for the LAB phases,
    /// smoke.yaml for a one-minute look). Relative paths in it start from its folder.
    #[arg(long, value_name = "FILE")]
    pub recipe: String,
    /// Where checkpoints, metrics, the full state and the report go (a folder or an object store
    /// URL). Rerunning with the same output resumes from its newest full state; a finished run
    /// trains nothing. Default: train-out/NAME (NAME: the recipe's name).
    #[arg(long, value_name = "URL")]
    pub output: Option<String>,
    /// The folder (or URL) of the mix files: each phase `data` entry that is a bare file name
    /// (`knowledge_train_msgs.jsonl`) is read from here instead of the recipe's folder.
    #[arg(long, value_name = "URL")]
    pub mix: Option<String>,
    /// At most this many optimizer steps per phase: a quick look at any recipe.
    #[arg(long, value_name = "N")]
    pub max_steps: Option<u64>,
    /// Compute threads. Default: every core.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Print the report as JSON (with `train_steps`: steps this invocation ran) instead of a summary.
    #[arg(long)]
    pub json: bool,
}

/// The recipe `args` name with `--mix` applied, the folder its paths start from, and the
/// output (its spec and location).
fn prepare(args: &TrainArgs) -> Result<(recipe::Recipe, PathBuf, String, Location)> {
    let path = Path::new(&args.recipe);
    if !path.is_file() {
        anyhow::bail!("no recipe file `{}`; pipelines/train/ holds lab-multiphase.yaml and smoke.yaml", args.recipe);
    }
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = path.file_name().and_then(|n| n.to_str()).context("the recipe file name is not UTF-8")?;
    let mut recipe = recipe::load(&DirSource(dir.clone()), name)?;
    if let Some(mix) = &args.mix {
        for phase in &mut recipe.phases {
            for d in &mut phase.data {
                if !d.contains('/') {
                    *d = format!("{}/{d}", mix.trim_end_matches('/'));
                }
            }
        }
    }
    let out_spec = args.output.clone().unwrap_or_else(|| format!("train-out/{}", recipe.name));
    let out = Location::open_or_create(&out_spec).with_context(|| format!("cannot open the output `{out_spec}`"))?;
    Ok((recipe, dir, out_spec, out))
}

/// The phases of the recipe `args` name, and the fingerprint a state must have to be resumed
/// by them ([`train::fingerprint`]).
pub async fn fingerprint(args: &TrainArgs) -> Result<(usize, String)> {
    let (recipe, dir, _, out) = prepare(args)?;
    let job = TrainJob { recipe: &recipe, recipe_dir: Some(dir), out: &out, threads: 1, max_steps: args.max_steps, on_change: OnChange::Refuse };
    Ok((recipe.phases.len(), train::fingerprint(&job).await?))
}

/// Trains as `args` say, with a progress bar on stderr (none with `--json`); returns the report
/// and the output written.
pub async fn execute(args: &TrainArgs, on_change: OnChange) -> Result<(train::TrainReport, String)> {
    let (recipe, dir, out_spec, out) = prepare(args)?;
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    let bar = indicatif::ProgressBar::new(0);
    if args.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} steps, {msg} (eta {eta})")
            .expect("invariant: a valid progress template")
            .progress_chars("=> "),
    );
    let quiet = args.json;
    // Without a terminal the bar draws nothing: say each step on a line of its own instead.
    let lines = !quiet && !std::io::stderr().is_terminal();
    let say = |line: String| if lines { eprintln!("{line}") } else { bar.println(line) };
    let mut on_progress = |p: &Progress| match p {
        Progress::Phase { name, done, total, samples } => {
            bar.set_prefix(name.clone());
            bar.set_length(*total);
            bar.set_position(*done);
            bar.reset_eta();
            if !quiet {
                say(format!("phase {name}: {} samples to train, {} held out, {total} steps{}", samples.0, samples.1, if *done > 0 { format!(" (resuming after step {done})") } else { String::new() }));
            }
        }
        Progress::Step { step, loss, lr, tokens_per_s } => {
            bar.set_position(*step);
            bar.set_message(format!("loss {loss:.4}, lr {lr:.2e}, {tokens_per_s:.0} tok/s"));
            if lines {
                eprintln!("step {step}/{}: loss {loss:.4}, lr {lr:.2e}, {tokens_per_s:.0} tok/s", bar.length().unwrap_or(0));
            }
        }
        Progress::Checkpoint { dir, heldout_loss } => {
            if !quiet {
                say(format!("checkpoint {dir}{}", heldout_loss.map(|l| format!(" (held-out loss {l:.4})")).unwrap_or_default()));
            }
        }
    };
    let job = TrainJob { recipe: &recipe, recipe_dir: Some(dir), out: &out, threads, max_steps: args.max_steps, on_change };
    let report = train::train(job, &mut on_progress).await;
    bar.finish_and_clear();
    Ok((report?, out_spec))
}

pub async fn train(args: TrainArgs) -> Result<ExitCode> {
    let (report, out_spec) = execute(&args, OnChange::Refuse).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    for p in &report.phases {
        let d = &p.dropped;
        println!(
            "{:<10} {} steps, loss {} → {}, chosen {} (held-out loss {}); {} samples, {} held out, dropped {} ({} short, {} long, {} nothing to train, {} unrenderable)",
            p.name,
            p.steps,
            p.first_loss.map_or("-".into(), |l| format!("{l:.4}")),
            p.last_loss.map_or("-".into(), |l| format!("{l:.4}")),
            p.chosen.dir,
            p.chosen.heldout_loss.map_or("-".into(), |l| format!("{l:.4}")),
            p.train_samples,
            p.heldout_samples,
            d.total(),
            d.too_short,
            d.too_long,
            d.nothing_to_train,
            d.unrenderable
        );
    }
    if report.train_steps == 0 {
        println!("nothing to train: every phase of this recipe is already done in {out_spec}");
    } else if let Some(from) = &report.resumed_from {
        println!("resumed from {from}; ran {} steps", report.train_steps);
    }
    if let Some(c) = &report.final_checkpoint {
        println!("final model: {c} (report: {}/train_report.md)", out_spec.trim_end_matches('/'));
    }
    Ok(ExitCode::SUCCESS)
}
