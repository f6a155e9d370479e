//! `labflow mix` (a run's datasets into the training mixes) and `labflow sql` (SQL over a run).

use anyhow::{bail, Context, Result};
use clap::Args;
use labflow::documents::TokenCount;
use labflow::mix::{self, recipe, Measure, MixJob};
use labflow::model::{GgufFile, Tokenizer};
use labflow::pipeline::{builtin::Builtin, DirSource};
use labflow::store::{sql, Location};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct MixArgs {
    /// The run folder `labflow generate` wrote (a folder or an object store URL).
    #[arg(long, value_name = "URL")]
    pub run: String,
    /// The recipe: `lab` (built in: the reference's knowledge and skills mixes, see
    /// pipelines/mix/lab.yaml) or a recipe file.
    #[arg(long, value_name = "NAME|FILE", default_value = "lab")]
    pub recipe: String,
    /// Where to write the mixes and the report. Default: RUN/mix.
    #[arg(long, value_name = "URL")]
    pub output: Option<String>,
    /// Measure lengths in this model's tokens (a GGUF file or a Hugging Face folder) instead of
    /// words: the report's histogram, and a recipe's `split: {tokens: N}`.
    #[arg(long, value_name = "MODEL")]
    pub tokenizer: Option<String>,
    /// Print the report as JSON instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// Build every leaf's records again. By default a mix into a folder that holds an earlier
    /// mix takes the records of each leaf nothing touched from it (same bytes, checked by digest).
    #[arg(long)]
    pub fresh: bool,
}

#[derive(Args, Debug)]
pub struct SqlArgs {
    /// The run folder.
    #[arg(long, value_name = "URL")]
    pub run: String,
    /// A mix folder (`labflow mix --output`) whose mixes become tables too. Default: RUN/mix
    /// when it holds a mix.
    #[arg(long, value_name = "URL")]
    pub mix: Option<String>,
    /// The query. Tables: `generated` (every leaf's rows, with `leaf` and `kind`), `rejects`,
    /// `leaves` (the manifest), and each mix file (`knowledge_train_msgs`, `skills_train_msgs`).
    pub query: String,
    /// Print the rows as a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A recipe name or file: (the recipe, the folder its relative paths start from).
pub fn load_recipe(spec: &str) -> Result<(recipe::Recipe, Option<std::path::PathBuf>)> {
    let path = Path::new(spec);
    if path.is_file() {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let name = path.file_name().and_then(|n| n.to_str()).context("the recipe file name is not UTF-8")?;
        return Ok((recipe::load(&DirSource(dir.clone()), name)?, Some(dir)));
    }
    if !spec.contains('/') && !spec.ends_with(".yaml") {
        let rel = format!("mix/{spec}.yaml");
        if labflow::pipeline::builtin::file(&rel).is_some() {
            return Ok((recipe::load(&Builtin, &rel)?, None));
        }
    }
    bail!("no recipe `{spec}`: give `lab` (built in) or a recipe file")
}

fn measure(spec: Option<&str>) -> Result<Measure> {
    let Some(spec) = spec else { return Ok(Measure::Words) };
    let path = Path::new(spec);
    let tokenizer = if path.is_dir() {
        Tokenizer::from_hf_folder(path)?
    } else if path.is_file() {
        Tokenizer::from_gguf(&GgufFile::open(path)?)?
    } else {
        bail!("--tokenizer {spec}: no such file or folder; give a GGUF file or a Hugging Face model folder");
    };
    let counter: Arc<dyn TokenCount + Send + Sync> = Arc::new(tokenizer);
    Ok(Measure::Tokens(counter))
}

fn child(url: &str, name: &str) -> String {
    format!("{}/{name}", url.trim_end_matches('/'))
}

/// Mixes as `args` say, returning the report and the folder written; prints nothing.
pub async fn execute(args: &MixArgs) -> Result<(mix::MixReport, String)> {
    let (recipe, recipe_dir) = load_recipe(&args.recipe)?;
    let run = Location::open(&args.run).with_context(|| format!("cannot open the run folder `{}`", args.run))?;
    let out_spec = args.output.clone().unwrap_or_else(|| child(&args.run, "mix"));
    let out = Location::open_or_create(&out_spec).with_context(|| format!("cannot open the mix folder `{out_spec}`"))?;
    let measure = measure(args.tokenizer.as_deref())?;
    Ok((mix::mix(MixJob { run: &run, recipe: &recipe, recipe_dir, out: &out, measure, reuse: !args.fresh }).await?, out_spec))
}

pub async fn mix(args: MixArgs) -> Result<ExitCode> {
    let (report, out_spec) = execute(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        for s in &report.sources {
            println!("{:<10} {:<15} {:>8}", s.mix, s.source, s.rows);
        }
        let omitted: Vec<String> = report.omitted_by_reason.iter().map(|(r, n)| format!("{n} {r}")).collect();
        println!(
            "mixed {} leaves{} into {} knowledge and {} skills records in {:.2}s{}; wrote {out_spec} (report: mix_report.md)",
            report.leaves,
            if report.reused > 0 { format!(" ({} unchanged, taken from the previous mix)", report.reused) } else { String::new() },
            report.rows.get("knowledge").unwrap_or(&0),
            report.rows.get("skills").unwrap_or(&0),
            report.wall_seconds,
            if omitted.is_empty() { String::new() } else { format!("; left out: {}", omitted.join(", ")) },
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn sql(args: SqlArgs) -> Result<ExitCode> {
    let run = Location::open(&args.run).with_context(|| format!("cannot open the run folder `{}`", args.run))?;
    let mix = match &args.mix {
        Some(m) => Some(Location::open(m).with_context(|| format!("cannot open the mix folder `{m}`"))?),
        None => match Location::open(&child(&args.run, "mix")) {
            Ok(loc) if labflow::store::dataset::read_bytes(&loc, mix::MIX_MANIFEST).await.ok().flatten().is_some() => Some(loc),
            _ => None,
        },
    };
    let ctx = sql::session(&run, mix.as_ref()).await?;
    let batches = sql::query(&ctx, &args.query).await?;
    if args.json {
        let mut w = datafusion::arrow::json::ArrayWriter::new(Vec::new());
        for b in &batches {
            w.write(b)?;
        }
        w.finish()?;
        let bytes = w.into_inner();
        println!("{}", if bytes.is_empty() { "[]".into() } else { String::from_utf8_lossy(&bytes).into_owned() });
    } else {
        println!("{}", datafusion::arrow::util::pretty::pretty_format_batches(&batches)?);
    }
    Ok(ExitCode::SUCCESS)
}
