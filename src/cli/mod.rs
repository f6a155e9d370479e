//! Argument parsing, output formatting and exit codes; the only place `anyhow` is used.
//!
//! Exit codes: 0 success, 1 the input has errors (invalid leaves), 2 the input could not be read
//! at all or the command line is wrong.

mod generate;
mod mix;
mod run;
mod taxonomy;
mod teacher;
mod train;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// labflow: taxonomy-guided synthetic data generation and multi-phase tuning (the LAB method),
/// as a streaming dataflow engine.
#[derive(Parser, Debug)]
#[command(name = "labflow", version, about, long_about = None, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check every qna.yaml leaf of a taxonomy: YAML, style, schema, documents, guidance.
    ///
    /// Prints one line per problem as `path:line:col: error|warning[code]: message`. Exit status
    /// 0 when no leaf has an error, 1 when some do, 2 when the taxonomy cannot be read.
    Validate(taxonomy::ValidateArgs),
    /// List every valid leaf with its id, kind, schema version, seed count and content hash.
    Leaves(taxonomy::LeavesArgs),
    /// Show leaves added, modified, moved or removed against a git base or another tree.
    Diff(taxonomy::DiffArgs),
    /// Generate synthetic data: run pipelines over a taxonomy's leaves with a teacher, writing
    /// per-leaf datasets, rejects, the response cache, a summary and a manifest to a run folder.
    Generate(generate::GenerateArgs),
    /// Mix a run's per-leaf datasets into the training sets of the LAB method: the knowledge mix
    /// (phase 1) and the skills mix with RAFT distractors and replay (phase 2), deduplicated,
    /// as knowledge_train_msgs / skills_train_msgs (JSONL and Parquet) with a report.
    Mix(mix::MixArgs),
    /// Run SQL over a run's datasets (generated rows, rejects, leaves, mixes); a table or --json.
    Sql(mix::SqlArgs),
    /// Train a student phase by phase on the mixes (full fine-tuning on the CPU): Hugging Face
    /// checkpoints, metrics, held-out loss to choose each phase's checkpoint, and resume after a
    /// crash from the newest full state.
    Train(train::TrainArgs),
    /// Run a whole LAB project (lab.yaml) end to end: validate the taxonomy, generate
    /// incrementally, mix, train the phases. Rerunning does only what changed since: unchanged
    /// leaves cost no teacher call; an unchanged mix trains nothing, a changed one trains again
    /// from the base (training is not incremental). Resumes after a crash.
    Run(run::RunArgs),
    /// Say what a project's output holds: what is done, what is stale, and what `labflow run`
    /// would do now (no teacher call, nothing trained).
    Status(run::StatusArgs),
    /// Show a pipeline's validated plan: steps, columns in and out, teacher calls per row.
    Explain(generate::ExplainArgs),
    /// Serve a teacher model over an OpenAI-compatible HTTP API (/v1/models,
    /// /v1/chat/completions, /v1/completions, streaming), on 127.0.0.1 unless told otherwise.
    Serve(teacher::ServeArgs),
    /// Ask a teacher model one chat question (PROMPT, or standard input) and print the answer as it is generated.
    Chat(teacher::ChatArgs),
}

/// Parse arguments, run the command, map the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Validate(args) => taxonomy::validate(args).await,
            Command::Leaves(args) => taxonomy::leaves(args).await,
            Command::Diff(args) => taxonomy::diff(args).await,
            Command::Generate(args) => generate::run(args).await,
            Command::Explain(args) => generate::explain(args).await,
            Command::Mix(args) => mix::mix(args).await,
            Command::Sql(args) => mix::sql(args).await,
            Command::Train(args) => train::train(args).await,
            Command::Run(args) => run::run(args).await,
            Command::Status(args) => run::status(args).await,
            Command::Serve(args) => teacher::serve(args).await,
            Command::Chat(args) => teacher::chat(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
