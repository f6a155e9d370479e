//! Git-backed inputs: knowledge documents read from a local git clone at the leaf's commit, and
//! `diff --base` on a taxonomy that lives in a subfolder of its repository.

mod common;

use common::{copy_tree, data};
use labflow::store::Location;
use labflow::taxonomy::diff::{self, ChangeKind};
use labflow::taxonomy::{walk, WalkOptions};
use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.email=t@example.com", "-c", "user.name=t"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const LEAF: &str = "knowledge/science/animals/birds/black_capped_chickadee";

/// A taxonomy holding the chickadee leaf with its document commit replaced by `commit`.
fn taxonomy_pointing_at(root: &Path, commit: &str, pattern: &str) {
    copy_tree(&data(&format!("taxonomy/{LEAF}")), &root.join(LEAF));
    let path = root.join(LEAF).join("qna.yaml");
    let text = std::fs::read_to_string(&path).expect("read leaf");
    let text = text.replace("5f7158a5ce83c4ff493bfe341fe31ecad64ff697", commit).replace("    - chickadee.md", &format!("    - {pattern}"));
    std::fs::write(&path, text).expect("write leaf");
}

#[tokio::test]
async fn documents_resolve_from_a_local_git_clone_at_the_leaf_commit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let clone = tmp.path().join("docs/juliadenham/Summit_knowledge");
    std::fs::create_dir_all(clone.join("birds")).expect("mkdir");
    git(&clone, &["init", "-q"]);
    let source = data("docs/juliadenham/Summit_knowledge/5f7158a5ce83c4ff493bfe341fe31ecad64ff697/chickadee.md");
    std::fs::copy(&source, clone.join("birds/chickadee.md")).expect("copy doc");
    std::fs::write(clone.join("birds/notes.html"), "<p>not a document</p>").expect("write");
    git(&clone, &["add", "-A"]);
    git(&clone, &["commit", "-qm", "docs"]);
    let commit = git(&clone, &["rev-parse", "HEAD"]);
    // A later commit changes the file: the leaf must still read the version at its commit.
    std::fs::write(clone.join("birds/chickadee.md"), "changed later").expect("write");
    git(&clone, &["commit", "-qam", "later"]);

    let docs = Location::open(tmp.path().join("docs").to_str().expect("utf-8")).expect("docs");
    let opts = WalkOptions { docs: Some(docs), only: None };
    let tax = tmp.path().join("tax");
    taxonomy_pointing_at(&tax, &commit, "birds/*.md");
    let report = walk(&Location::open(tax.to_str().expect("utf-8")).expect("tax"), &opts).await.expect("walk");
    assert_eq!(report.errors(), 0, "{:#?}", report.diagnostics);
    assert_eq!(report.leaves[0].documents, vec!["birds/chickadee.md".to_string()]);

    // Same bytes from the plain folder layout give the same hash: the source kind does not matter.
    let plain = tmp.path().join("plain");
    copy_tree(&data("docs"), &plain);
    let plain_dir = plain.join("juliadenham/Summit_knowledge").join(&commit).join("birds");
    std::fs::create_dir_all(&plain_dir).expect("mkdir");
    std::fs::copy(&source, plain_dir.join("chickadee.md")).expect("copy");
    let plain_opts = WalkOptions { docs: Some(Location::open(plain.to_str().expect("utf-8")).expect("plain")), only: None };
    let again = walk(&Location::open(tax.to_str().expect("utf-8")).expect("tax"), &plain_opts).await.expect("walk");
    assert_eq!(again.leaves[0].hash, report.leaves[0].hash);

    // Wrong extension, unknown commit.
    let bad = tmp.path().join("bad");
    taxonomy_pointing_at(&bad, &commit, "birds/*");
    let r = walk(&Location::open(bad.to_str().expect("utf-8")).expect("bad"), &opts).await.expect("walk");
    assert!(r.diagnostics.iter().any(|d| d.code == "doc.bad-extension" && d.message.contains("notes.html")), "{:#?}", r.diagnostics);
    let missing = tmp.path().join("missing");
    taxonomy_pointing_at(&missing, "0123456789abcdef0123456789abcdef01234567", "birds/*.md");
    let r = walk(&Location::open(missing.to_str().expect("utf-8")).expect("missing"), &opts).await.expect("walk");
    assert!(r.diagnostics.iter().any(|d| d.code == "doc.commit-not-found" && d.key_path == "document.commit"), "{:#?}", r.diagnostics);
}

#[tokio::test]
async fn diff_base_works_for_a_taxonomy_in_a_subfolder() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("repo");
    let tax = repo.join("data/taxonomy");
    copy_tree(&data("changes/tc2_modify_skill_leaf/before"), &tax);
    std::fs::write(repo.join("README.md"), "not a leaf").expect("write");
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "before"]);
    git(&repo, &["checkout", "-qb", "edit"]);
    copy_tree(&data("changes/tc2_modify_skill_leaf/after"), &tax);
    git(&repo, &["commit", "-qam", "after"]);
    // A moved leaf, uncommitted: same content, new folder.
    let from = tax.join("foundational_skills/reasoning/theory_of_mind");
    let to = tax.join("foundational_skills/reasoning/mind_theory");
    std::fs::rename(&from, &to).expect("move");

    let loc = Location::open(tax.to_str().expect("utf-8")).expect("tax");
    let mut got: Vec<(ChangeKind, String, Option<String>)> =
        diff::git_base(&loc, "main", &WalkOptions::default()).await.expect("diff").into_iter().map(|c| (c.change, c.id, c.from)).collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            (ChangeKind::Modified, "compositional_skills/linguistics/synonyms".to_string(), None),
            (
                ChangeKind::Moved,
                "foundational_skills/reasoning/mind_theory".to_string(),
                Some("foundational_skills/reasoning/theory_of_mind".to_string())
            ),
        ]
    );
    let err = diff::git_base(&loc, "no-such-branch", &WalkOptions::default()).await.expect_err("unknown ref");
    assert!(err.to_string().contains("--base"), "{err}");
}
