//! The `labflow` command line. Parsing, output and exit codes live in [`cli`]; the work is done
//! by the library.

mod cli;

/// mimalloc instead of glibc's malloc: a mix allocates and frees millions of short strings, and
/// glibc's allocator took 15% of `labflow mix`'s time (benches/README.md, "mix").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
