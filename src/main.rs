//! The `labflow` command line. Parsing, output and exit codes live in [`cli`]; the work is done
//! by the library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
