//! The real public taxonomy and its real change pairs (`../shared/data`): every leaf validates,
//! kinds and hashes are right, the same tree reads the same from memory:// as from disk, and the
//! three "taxonomy changed" pairs diff exactly as their CHANGES.txt says — by tree and by git.

mod common;

use common::{copy_tree, data};
use labflow::store::Location;
use labflow::taxonomy::diff::{self, ChangeKind};
use labflow::taxonomy::{walk, LeafKind, WalkOptions};
use object_store::memory::InMemory;
use object_store::{ObjectStoreExt, PutPayload};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn open(p: &Path) -> Location {
    Location::open(p.to_str().expect("utf-8 path")).expect("open location")
}

fn with_docs() -> WalkOptions {
    WalkOptions { docs: Some(open(&data("docs"))), only: None }
}

#[tokio::test]
async fn all_sixteen_public_leaves_validate_with_documents() {
    let report = walk(&open(&data("taxonomy")), &with_docs()).await.expect("walk");
    let errors: Vec<String> = report.diagnostics.iter().filter(|d| d.is_error()).map(ToString::to_string).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(report.files_checked, 16);
    assert_eq!(report.leaves.len(), 16);
    let count = |k: LeafKind| report.leaves.iter().filter(|l| l.leaf.kind == k).count();
    assert_eq!(
        (count(LeafKind::Knowledge), count(LeafKind::GroundedSkill), count(LeafKind::FreeformSkill), count(LeafKind::Foundational)),
        (2, 2, 1, 11)
    );
    for l in report.leaves.iter().filter(|l| l.leaf.kind == LeafKind::Knowledge) {
        assert!(l.documents_hashed && !l.documents.is_empty(), "{} has no documents: {:?}", l.leaf.id, l.documents);
    }
    // The only warnings are on the version 1 foundational leaves: they ship without
    // attribution.txt upstream, and one has 3 blank lines in a row (the reference does not
    // lint version 1 files, so labflow only warns).
    for d in report.diagnostics.iter() {
        assert!(d.code == "attribution.missing" || d.code == "lint.empty-lines", "{d}");
        assert!(d.path.starts_with("foundational_skills/"), "{d}");
    }
    assert_eq!(report.diagnostics.iter().filter(|d| d.code == "lint.empty-lines").count(), 1);
}

#[tokio::test]
async fn memory_store_reads_the_same_tree_as_the_local_folder() {
    let root = data("taxonomy");
    let store = Arc::new(InMemory::new());
    let mem = Location::memory(store.clone(), "some/prefix");
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(&root).expect("under root").to_str().expect("utf-8").to_string();
                store.put(&mem.child(&rel), PutPayload::from(std::fs::read(&path).expect("read"))).await.expect("put");
            }
        }
    }
    let local = walk(&open(&root), &WalkOptions::default()).await.expect("local walk");
    let remote = walk(&mem, &WalkOptions::default()).await.expect("memory walk");
    let ids = |r: &labflow::taxonomy::TreeReport| r.leaves.iter().map(|l| (l.leaf.id.clone(), l.hash.clone())).collect::<Vec<_>>();
    assert_eq!(ids(&local), ids(&remote));
    assert_eq!(local.diagnostics, remote.diagnostics);
}

/// `A\tpath/qna.yaml` lines of CHANGES.txt → (kind, leaf id).
fn expected_changes(case: &str) -> BTreeSet<(ChangeKind, String)> {
    let text = std::fs::read_to_string(data(&format!("changes/{case}/CHANGES.txt"))).expect("CHANGES.txt");
    text.lines()
        .filter_map(|l| {
            let (status, path) = l.split_once('\t')?;
            let id = path.strip_suffix("/qna.yaml")?;
            let kind = match status {
                "A" => ChangeKind::Added,
                "M" => ChangeKind::Modified,
                "D" => ChangeKind::Removed,
                _ => return None,
            };
            Some((kind, id.to_string()))
        })
        .collect()
}

const CASES: [&str; 3] = ["tc1_add_knowledge_leaf", "tc2_modify_skill_leaf", "tc4_three_skills_added"];

#[tokio::test]
async fn change_pairs_diff_exactly_against_the_other_tree() {
    for case in CASES {
        let before = open(&data(&format!("changes/{case}/before")));
        let after = open(&data(&format!("changes/{case}/after")));
        let got: BTreeSet<(ChangeKind, String)> =
            diff::diff_trees(&before, &after, &with_docs()).await.expect("diff").into_iter().map(|c| (c.change, c.id)).collect();
        assert_eq!(got, expected_changes(case), "{case}");
    }
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn change_pairs_diff_exactly_against_a_git_base_with_uncommitted_and_untracked_leaves() {
    for case in CASES {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = tmp.path().join("taxonomy");
        copy_tree(&data(&format!("changes/{case}/before")), &repo);
        git(&repo, &["init", "-q", "-b", "main"]);
        git(&repo, &["-c", "user.email=t@example.com", "-c", "user.name=t", "add", "-A"]);
        git(&repo, &["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-qm", "before"]);
        git(&repo, &["checkout", "-qb", "work"]);
        // The "after" tree lands as uncommitted edits and untracked files.
        std::fs::remove_dir_all(repo.join("compositional_skills")).ok();
        std::fs::remove_dir_all(repo.join("knowledge")).ok();
        std::fs::remove_dir_all(repo.join("foundational_skills")).ok();
        copy_tree(&data(&format!("changes/{case}/after")), &repo);
        let loc = open(&repo);
        let got: BTreeSet<(ChangeKind, String)> =
            diff::git_base(&loc, "main", &with_docs()).await.expect("git diff").into_iter().map(|c| (c.change, c.id)).collect();
        assert_eq!(got, expected_changes(case), "{case}");
        let everything = diff::git_base(&loc, "empty", &with_docs()).await.expect("empty base");
        assert!(everything.iter().all(|c| c.change == ChangeKind::Added));
        assert_eq!(everything.len(), walk(&loc, &WalkOptions::default()).await.expect("walk").files_checked);
    }
}

#[tokio::test]
async fn hashes_ignore_formatting_but_see_moves_and_document_edits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let leaf = "knowledge/science/animals/birds/black_capped_chickadee";
    let tax = tmp.path().join("tax");
    copy_tree(&data(&format!("taxonomy/{leaf}")), &tax.join(leaf));
    let docs = tmp.path().join("docs");
    copy_tree(&data("docs"), &docs);
    let opts = WalkOptions { docs: Some(open(&docs)), only: None };
    let first = walk(&open(&tax), &opts).await.expect("walk").leaves[0].hash.clone();

    // Reformat: top-level keys in reverse order, a comment added — same content, same hash.
    let text = std::fs::read_to_string(tax.join(leaf).join("qna.yaml")).expect("read");
    let mut blocks: Vec<String> = Vec::new();
    for line in text.lines() {
        if !line.starts_with(' ') && !line.starts_with('-') && !line.is_empty() || blocks.is_empty() {
            blocks.push(String::new());
        }
        let last = blocks.last_mut().expect("a block");
        last.push_str(line);
        last.push('\n');
    }
    blocks.reverse();
    let reformatted = format!("# reformatted\n{}", blocks.concat());
    assert_ne!(reformatted, text);
    std::fs::write(tax.join(leaf).join("qna.yaml"), reformatted).expect("write");
    let after_reformat = walk(&open(&tax), &opts).await.expect("walk");
    assert_eq!(after_reformat.leaves.len(), 1, "{:#?}", after_reformat.diagnostics);
    assert_eq!(after_reformat.leaves[0].hash, first);

    // Edit one referenced document: the leaf's hash changes.
    let commit = after_reformat.leaves[0].leaf.document.as_ref().expect("knowledge leaf").commit.clone();
    let doc_files: Vec<PathBuf> =
        after_reformat.leaves[0].documents.iter().map(|name| docs.join("juliadenham/Summit_knowledge").join(&commit).join(name)).collect();
    assert!(!doc_files.is_empty() && doc_files[0].is_file(), "{doc_files:?}");
    let mut bytes = std::fs::read(&doc_files[0]).expect("read doc");
    bytes.extend_from_slice(b"\nOne more fact.\n");
    std::fs::write(&doc_files[0], bytes).expect("write doc");
    let after_doc_edit = walk(&open(&tax), &opts).await.expect("walk");
    assert_ne!(after_doc_edit.leaves[0].hash, first);
}
