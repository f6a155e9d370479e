//! Property-based fuzzing of the leaf parser + validator (`check_leaf`).
//!
//! Three generators: arbitrary bytes; real leaves with random byte-level edits drawn from the
//! characters that matter to YAML; and structured mutations (truncate, duplicate a line,
//! re-indent a line). For every input: no panic, every diagnostic lies inside the file (line and
//! column), and a leaf comes out exactly when there is no error (or the file is empty). CI bounds the run with
//! `PROPTEST_CASES` (default here: 512 cases per property); run longer locally with e.g.
//! `PROPTEST_CASES=100000 cargo test --test fuzz_leaf`. Failing inputs are shrunk and
//! persisted by proptest under `tests/fuzz_leaf.proptest-regressions`.

use labflow::taxonomy::check_leaf;
use proptest::prelude::*;
use std::path::Path;

const SEEDS: &[&str] = &[
    "compositional_skills/grounded/linguistics/inclusion/qna.yaml",
    "knowledge/science/animals/birds/black_capped_chickadee/qna.yaml",
    "foundational_skills/reasoning/theory_of_mind/qna.yaml",
    "compositional_skills/grounded/linguistics/writing/rewriting/qna.yaml",
];

fn seed_text(i: usize) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/taxonomy").join(SEEDS[i % SEEDS.len()]);
    std::fs::read_to_string(p).expect("seed leaf readable")
}

/// No panic, positions within the file, and a leaf only when error-free.
fn check_invariants(path: &str, bytes: &[u8]) -> Result<(), TestCaseError> {
    let check = check_leaf(path, bytes);
    // Lines as YAML (and the reference, reading with universal newlines) counts them: LF, CRLF
    // or a lone CR ends a line.
    let unix = String::from_utf8_lossy(bytes).replace("\r\n", "\n").replace('\r', "\n");
    let lines = unix.split('\n').count().max(1);
    let longest = bytes.split(|&b| b == b'\n' || b == b'\r').map(|l| l.len()).max().unwrap_or(0);
    for d in &check.diagnostics {
        prop_assert!(d.line >= 1 && d.line <= lines + 1, "line {} outside 1..={} in {d}", d.line, lines + 1);
        prop_assert!(d.column >= 1 && d.column <= longest + 2, "column {} past the longest line ({longest}) in {d}", d.column);
        prop_assert!(!d.code.is_empty() && !d.message.is_empty());
    }
    if check.has_errors() {
        prop_assert!(check.leaf.is_none(), "a leaf despite errors");
    } else if check.leaf.is_none() {
        prop_assert!(
            check.diagnostics.iter().any(|d| d.code == "yaml.empty"),
            "no leaf, no error, no 'empty' warning: {:?}",
            check.diagnostics
        );
    }
    Ok(())
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

const YAML_CHARS: &[u8] = b" \t\n\r-:#'\"|>[]{},&*!%@`?~0123456789abcxyz\\";

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        check_invariants("compositional_skills/x/qna.yaml", &bytes)?;
    }

    #[test]
    fn edited_real_leaves_never_panic(
        seed in 0usize..SEEDS.len(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(YAML_CHARS)), 1..12),
    ) {
        let mut bytes = seed_text(seed).into_bytes();
        for (at, op, c) in edits {
            let i = if bytes.is_empty() { 0 } else { at.index(bytes.len()) };
            match op {
                0 => bytes.insert(i, c),
                1 if !bytes.is_empty() => { bytes.remove(i); }
                _ if !bytes.is_empty() => bytes[i] = c,
                _ => bytes.push(c),
            }
        }
        check_invariants(SEEDS[seed], &bytes)?;
    }

    #[test]
    fn structurally_mutated_leaves_never_panic(
        seed in 0usize..SEEDS.len(),
        cut in any::<prop::sample::Index>(),
        line in any::<prop::sample::Index>(),
        indent in 0usize..9,
        op in 0u8..3,
    ) {
        let text = seed_text(seed);
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let i = line.index(lines.len());
        match op {
            0 => { let n = cut.index(text.len()); lines = text[..text.floor_char_boundary(n)].lines().map(str::to_string).collect(); }
            1 => { let dup = lines[i].clone(); lines.insert(i, dup); }
            _ => { let t = lines[i].trim_start().to_string(); lines[i] = format!("{}{}", " ".repeat(indent), t); }
        }
        let mutated = lines.join("\n") + "\n";
        check_invariants(SEEDS[seed], mutated.as_bytes())?;
    }
}

#[test]
fn unmutated_seeds_are_valid() {
    for (i, path) in SEEDS.iter().enumerate() {
        let check = check_leaf(path, seed_text(i).as_bytes());
        assert!(!check.has_errors(), "{path}: {:?}", check.diagnostics);
    }
}
