//! The `labflow` command line. Parsing, output and exit codes live in [`cli`]; the work is done
//! by the library.

mod cli;

/// mimalloc instead of glibc's malloc: a mix allocates and frees millions of short strings, and
/// glibc's allocator took 15% of `labflow mix`'s time (benches/README.md, "mix").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's options by their index in its `mi_option_e` (v3, the one libmimalloc-sys builds);
/// the crate's own bindings stop before `purge_delay`. The test below checks the index against
/// the linked library, which reads `MIMALLOC_PURGE_DELAY` into this slot at start-up.
mod mi {
    pub const PURGE_DELAY: std::ffi::c_int = 15;
    extern "C" {
        pub fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
        #[cfg(test)]
        pub fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
    }
}

/// Keep freed memory mapped for a minute before giving it back to the OS (mimalloc's default is
/// one second): a mix's buffers of a few hundred MiB were returned and faulted in again, zeroed
/// by the kernel, and that took 9% of `labflow mix` (benches/README.md, "mix"). A
/// `MIMALLOC_PURGE_DELAY` in the environment still wins.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option; mimalloc reads it on every purge decision.
        unsafe { mi::mi_option_set(mi::PURGE_DELAY, 60_000) };
    }
}

fn main() -> std::process::ExitCode {
    keep_freed_memory();
    cli::main()
}

#[cfg(test)]
mod tests {
    /// `mi::PURGE_DELAY` is the slot mimalloc fills from `MIMALLOC_PURGE_DELAY`: this test runs
    /// itself again with the variable set, and the child reads the slot back.
    #[test]
    fn purge_delay_is_the_option_mimalloc_reads_from_the_environment() {
        const CHILD: &str = "LABFLOW_TEST_MIMALLOC_CHILD";
        if std::env::var_os(CHILD).is_some() {
            // SAFETY: reads one integer option.
            assert_eq!(unsafe { super::mi::mi_option_get(super::mi::PURGE_DELAY) }, 4321);
            return;
        }
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "tests::purge_delay_is_the_option_mimalloc_reads_from_the_environment", "--nocapture"])
            .env(CHILD, "1")
            .env("MIMALLOC_PURGE_DELAY", "4321")
            .status()
            .unwrap();
        assert!(status.success(), "the child found another value in slot {}", super::mi::PURGE_DELAY);
    }
}
