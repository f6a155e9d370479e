//! InstructLab's pipeline directories from the instructlab-sdg 0.8.3 wheel (PyPI), fetched by
//! `bash tests/reference/fetch_sdg.sh` into `tests/reference/.cache/` (not committed).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The unpacked `pipelines/` folder, fetched at most once per test process (the tests run in
/// parallel); `None`, after printing SKIPPED, when it cannot be had.
pub fn pipelines_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    let dir = DIR.get_or_init(fetch).clone();
    if dir.is_none() {
        println!("SKIPPED: run bash tests/reference/fetch_sdg.sh");
    }
    dir
}

fn fetch() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = root.join("tests/reference/.cache/instructlab-sdg-0.8.3/instructlab/sdg/pipelines");
    if dir.join("full/knowledge.yaml").is_file() {
        return Some(dir);
    }
    let fetched = Command::new("bash").arg(root.join("tests/reference/fetch_sdg.sh")).output();
    let why = match &fetched {
        Ok(out) if out.status.success() && dir.join("full/knowledge.yaml").is_file() => return Some(dir),
        Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
        Err(e) => e.to_string(),
    };
    assert_ne!(
        std::env::var("LABFLOW_REQUIRE_SDG").as_deref(),
        Ok("1"),
        "LABFLOW_REQUIRE_SDG=1 but bash tests/reference/fetch_sdg.sh failed: {why}"
    );
    eprintln!("SKIPPED: the InstructLab pipelines are missing and bash tests/reference/fetch_sdg.sh failed (pip or network?): {why}");
    None
}

