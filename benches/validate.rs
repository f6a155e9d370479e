//! Benchmark: `labflow validate` throughput (leaves per second) over a taxonomy folder.
//!
//! `cargo bench --bench validate -- ROOT [REPEAT]` walks and validates ROOT (all checks, no
//! documents) REPEAT times (default 5) after one warm-up and prints one JSON line in the same
//! shape as `benches/reference_validate.py`, so `benches/run.sh` can set them side by side.
//! Medians, not means: these machines are shared and noisy.

use labflow::store::Location;
use labflow::taxonomy::{walk, WalkOptions};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let Some(root) = args.first() else {
        eprintln!("usage: cargo bench --bench validate -- ROOT [REPEAT]");
        std::process::exit(2);
    };
    let repeat: usize = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let location = Location::open(root).unwrap_or_else(|e| panic!("{e}"));
    let run = || {
        let t = Instant::now();
        let report = runtime.block_on(walk(&location, &WalkOptions::default())).unwrap_or_else(|e| panic!("{e}"));
        (t.elapsed().as_secs_f64(), report.files_checked, report.errors())
    };
    let (_, files, errors) = run();
    let mut runs: Vec<f64> = (0..repeat).map(|_| run().0).collect();
    let shown = runs.clone();
    runs.sort_by(f64::total_cmp);
    let median = runs[runs.len() / 2];
    println!(
        "{}",
        serde_json::json!({"tool": "labflow", "root": root, "files": files, "errors": errors, "seconds_median": median, "leaves_per_second": files as f64 / median, "runs": shown})
    );
}
