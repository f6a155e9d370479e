//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod emulators;
pub mod llama_server;
pub mod s3;
pub mod sdg;

use std::path::{Path, PathBuf};

/// A path under `../shared/data`, the real test data beside the repository.
pub fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data").join(rel)
}

/// Copy a folder tree (regular files and folders).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let path = entry.expect("entry").path();
        let dest = to.join(path.file_name().expect("name"));
        if path.is_dir() {
            copy_tree(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).expect("copy");
        }
    }
}

/// The leaf folders a change pair's (`../shared/data/changes/CASE`) CHANGES.txt lists as added or modified.
pub fn changed_leaves(case: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(case.join("CHANGES.txt")).unwrap();
    let mut out: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("A\t").or_else(|| l.strip_prefix("M\t")))
        .filter_map(|p| p.strip_suffix("/qna.yaml"))
        .map(String::from)
        .collect();
    out.sort();
    out
}

/// The knowledge leaf `knowledge/science/animals/birds/black_capped_chickadee`'s document, under
/// a docs folder (`../shared/data/docs`, or the quickstart's copy).
pub const CHICKADEE_DOC: &str = "juliadenham/Summit_knowledge/5f7158a5ce83c4ff493bfe341fe31ecad64ff697/chickadee.md";

/// Cut a markdown document to its paragraphs within the first `bytes` bytes, so a knowledge leaf
/// over it is one chunk: the prompts over a whole document's chunks are most of an embedded-model
/// run's time.
pub fn cut_to_paragraphs(doc: &Path, bytes: usize) {
    let text = std::fs::read_to_string(doc).expect("document");
    let cut = text[..text.floor_char_boundary(bytes)].rfind("\n\n").expect("paragraphs");
    std::fs::write(doc, &text[..cut + 1]).expect("write document");
}

/// The default embedded model (`bash models/fetch.sh`), or `None` after printing SKIPPED; a
/// missing model fails instead when LABFLOW_REQUIRE_MODEL=1 (CI).
pub fn model() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.is_file() {
        return Some(path);
    }
    assert_ne!(std::env::var("LABFLOW_REQUIRE_MODEL").as_deref(), Ok("1"), "model missing: run bash models/fetch.sh");
    eprintln!("SKIPPED: {} missing; run bash models/fetch.sh", path.display());
    None
}

/// A free TCP port on 127.0.0.1 that no other test of this process has been given: two tests
/// of one binary run at once, and the kernel may hand both the same just-freed port, so each
/// would start its server there and one would talk to the other's.
pub fn free_port() -> u16 {
    use std::sync::{Mutex, OnceLock};
    static GIVEN: OnceLock<Mutex<std::collections::HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(Default::default);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        if given.lock().unwrap_or_else(|p| p.into_inner()).insert(port) {
            return port;
        }
    }
}
