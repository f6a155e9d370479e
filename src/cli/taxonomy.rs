//! `labflow validate`, `labflow leaves` and `labflow diff`.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use labflow::store::Location;
use labflow::taxonomy::diff::{self, Change};
use labflow::taxonomy::{walk, LeafKind, TreeReport, WalkOptions};
use std::io::Write;
use std::process::ExitCode;

/// Output format of `validate`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// `path:line:col: severity[code]: message`, one per line.
    Text,
    /// A JSON array of `{path, line, column, severity, code, message, key_path}`.
    Json,
}

#[derive(Args, Debug)]
pub struct TaxonomyArgs {
    /// The taxonomy root: a local folder, or a URL (file://, s3://bucket/prefix, memory://).
    pub taxonomy: String,
    /// Where knowledge documents are: a folder or object-store URL laid out as
    /// OWNER/REPO/COMMIT/PATH, where OWNER/REPO may also be a local git clone. Without it,
    /// document checks are skipped and leaf hashes cover the YAML only.
    #[arg(long, value_name = "DIR|URL")]
    pub docs: Option<String>,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub common: TaxonomyArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Print errors only, no warnings.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct LeavesArgs {
    #[command(flatten)]
    pub common: TaxonomyArgs,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    #[command(flatten)]
    pub common: TaxonomyArgs,
    /// Git ref to compare with, as the reference does: the fork point of HEAD from REF, against
    /// the working tree (uncommitted and untracked leaves included). `empty` = every leaf is new.
    /// Default: origin/main.
    #[arg(long, value_name = "REF", conflicts_with = "against")]
    pub base: Option<String>,
    /// Another taxonomy tree (folder or URL) to compare with, for trees without git history.
    #[arg(long, value_name = "OTHER")]
    pub against: Option<String>,
    /// Print JSON instead of lines.
    #[arg(long)]
    pub json: bool,
}

fn options(args: &TaxonomyArgs) -> Result<WalkOptions> {
    let docs = match &args.docs {
        Some(spec) => Some(Location::open(spec).with_context(|| format!("cannot open the document source `{spec}`"))?),
        None => None,
    };
    Ok(WalkOptions { docs, only: None })
}

async fn scan(args: &TaxonomyArgs) -> Result<(TreeReport, WalkOptions)> {
    let root = Location::open(&args.taxonomy)?;
    let opts = options(args)?;
    let report = walk(&root, &opts).await?;
    if opts.docs.is_none() && report.leaves.iter().any(|l| l.leaf.kind == LeafKind::Knowledge) {
        eprintln!("note: knowledge documents not checked (no --docs given); pass --docs DIR to resolve document.repo/commit/patterns");
    }
    Ok((report, opts))
}

pub async fn validate(args: ValidateArgs) -> Result<ExitCode> {
    let (report, _) = scan(&args.common).await?;
    let shown: Vec<_> = report.diagnostics.iter().filter(|d| !args.quiet || d.is_error()).collect();
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&shown)?)?,
        Format::Text => {
            for d in &shown {
                writeln!(out, "{d}")?;
            }
        }
    }
    eprintln!(
        "checked {} leaf files: {} valid, {} error(s), {} warning(s)",
        report.files_checked,
        report.leaves.len(),
        report.errors(),
        report.warnings()
    );
    Ok(if report.errors() > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

pub async fn leaves(args: LeavesArgs) -> Result<ExitCode> {
    let (report, _) = scan(&args.common).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report.leaves)?)?;
    } else {
        let w = report.leaves.iter().map(|l| l.leaf.id.len()).max().unwrap_or(2).max(2);
        writeln!(out, "{:<w$}  {:<14}  {:>7}  {:>5}  hash", "id", "kind", "version", "seeds")?;
        for l in &report.leaves {
            writeln!(
                out,
                "{:<w$}  {:<14}  {:>7}  {:>5}  {}",
                l.leaf.id,
                l.leaf.kind.label(),
                l.leaf.version,
                l.leaf.seed_count,
                &l.hash[..16]
            )?;
        }
    }
    let invalid = report.files_checked - report.leaves.len();
    if invalid > 0 {
        eprintln!("{invalid} leaf file(s) are invalid and not listed; run `labflow validate {}` for details", args.common.taxonomy);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn diff(args: DiffArgs) -> Result<ExitCode> {
    let root = Location::open(&args.common.taxonomy)?;
    let opts = options(&args.common)?;
    let changes: Vec<Change> = match &args.against {
        Some(other) => {
            let before = Location::open(other)?;
            diff::diff_trees(&before, &root, &opts).await?
        }
        None => {
            let base = args.base.as_deref().unwrap_or("origin/main");
            diff::git_base(&root, base, &opts).await.map_err(|e| anyhow::anyhow!("{e}"))?
        }
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&changes)?)?;
    } else {
        for c in &changes {
            let what = format!("{:?}", c.change).to_lowercase();
            match &c.from {
                Some(from) => writeln!(out, "{what:<9} {}  (from {from})", c.id)?,
                None => writeln!(out, "{what:<9} {}{}", c.id, if c.valid { "" } else { "  (invalid)" })?,
            }
        }
        if changes.is_empty() {
            eprintln!("no leaf changed");
        }
    }
    Ok(ExitCode::SUCCESS)
}
