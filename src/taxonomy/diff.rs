//! Change sets: which leaves were added, modified, moved or removed between two taxonomies.
//!
//! Leaves are compared by id (their folder) and content hash, so a whitespace-only reformat is
//! no change and a leaf moved to a new folder with the same content is a move, not a delete plus
//! an add. The "before" side is another tree ([`diff_trees`]) or a git base with the reference's
//! semantics ([`git_base`]): the fork point of `HEAD` from the base, against the working tree,
//! which includes uncommitted and untracked leaves.

use crate::store::Location;
use crate::taxonomy::walk::{walk, TaxonomyError, TreeReport, WalkOptions};
use object_store::memory::InMemory;
use object_store::{ObjectStoreExt, PutPayload};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

/// What happened to a leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// New leaf.
    Added,
    /// Same id, different content.
    Modified,
    /// Same content, new id.
    Moved,
    /// Gone.
    Removed,
}

/// One changed leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What happened.
    pub change: ChangeKind,
    /// Leaf id (after the change; before it for removals).
    pub id: String,
    /// Previous id, for moves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Whether the leaf (after the change) is valid; invalid leaves are compared by raw bytes.
    pub valid: bool,
}

/// A leaf as the diff sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafKey {
    /// Content hash (valid leaves) or `raw:` + hash of the bytes (invalid ones).
    pub hash: String,
    /// Valid or not.
    pub valid: bool,
}

/// Leaf id → key for every leaf file in a report, valid or not.
pub fn keys(report: &TreeReport) -> BTreeMap<String, LeafKey> {
    let mut out: BTreeMap<String, LeafKey> =
        report.raw_hashes.iter().map(|(id, h)| (id.clone(), LeafKey { hash: format!("raw:{h}"), valid: false })).collect();
    for l in &report.leaves {
        out.insert(l.leaf.id.clone(), LeafKey { hash: l.hash.clone(), valid: true });
    }
    out
}

/// Changes from `before` to `after`.
pub fn diff(before: &BTreeMap<String, LeafKey>, after: &BTreeMap<String, LeafKey>) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut removed: Vec<(&String, &LeafKey)> = before.iter().filter(|(id, _)| !after.contains_key(*id)).collect();
    for (id, key) in after {
        match before.get(id) {
            Some(old) if old.hash == key.hash => {}
            Some(_) => changes.push(Change { change: ChangeKind::Modified, id: id.clone(), from: None, valid: key.valid }),
            None => match removed.iter().position(|(_, old)| old.hash == key.hash) {
                Some(i) => {
                    let (old_id, _) = removed.remove(i);
                    changes.push(Change { change: ChangeKind::Moved, id: id.clone(), from: Some(old_id.clone()), valid: key.valid });
                }
                None => changes.push(Change { change: ChangeKind::Added, id: id.clone(), from: None, valid: key.valid }),
            },
        }
    }
    for (id, key) in removed {
        changes.push(Change { change: ChangeKind::Removed, id: id.clone(), from: None, valid: key.valid });
    }
    changes.sort_by(|a, b| (&a.id, a.change).cmp(&(&b.id, b.change)));
    changes
}

/// Walk both trees and diff them (`before` is the base).
pub async fn diff_trees(before: &Location, after: &Location, opts: &WalkOptions) -> Result<Vec<Change>, TaxonomyError> {
    let a = walk_or_empty(before, opts).await?;
    let b = walk_or_empty(after, opts).await?;
    Ok(diff(&keys(&a), &keys(&b)))
}

async fn walk_or_empty(loc: &Location, opts: &WalkOptions) -> Result<TreeReport, TaxonomyError> {
    match walk(loc, opts).await {
        Err(TaxonomyError::Empty(_)) => Ok(TreeReport::default()),
        other => other,
    }
}

/// A failure to read the git history of a taxonomy.
#[derive(Debug, thiserror::Error)]
#[error("git: {0}")]
pub struct GitError(pub String);

fn git(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Result<Vec<u8>, GitError> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| GitError(format!("cannot run git ({e}); install git or use --against")))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        let input = input.to_vec();
        std::thread::spawn(move || pipe.write_all(&input));
    }
    let out = child.wait_with_output().map_err(|e| GitError(e.to_string()))?;
    if !out.status.success() {
        return Err(GitError(format!("`git {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim())));
    }
    Ok(out.stdout)
}

/// The taxonomy at `root` (a local folder in a git work tree) as it was at the fork point of
/// `HEAD` from `base`, loaded into memory. `base = "empty"` gives an empty tree.
pub fn tree_at_base(root: &Path, base: &str) -> Result<Location, GitError> {
    let store = Arc::new(InMemory::new());
    let loc = Location::memory(store.clone(), "");
    if base == "empty" {
        return Ok(loc);
    }
    if base.starts_with('-') {
        return Err(GitError(format!("`{base}` is not a git ref")));
    }
    let prefix = git(root, &["rev-parse", "--show-prefix"], None).map_err(|_| {
        GitError(format!("{} is not inside a git work tree; compare with another tree instead: --against OTHER", root.display()))
    })?;
    let prefix = String::from_utf8_lossy(&prefix).trim().to_string();
    let fork = git(root, &["merge-base", "HEAD", base], None)
        .map_err(|e| GitError(format!("cannot find the fork point of HEAD from `{base}` ({e}); pass --base with a ref that exists here (e.g. --base main), --base empty, or --against OTHER")))?;
    let fork = String::from_utf8_lossy(&fork).trim().to_string();
    let listing = git(root, &["ls-tree", "-r", "-z", &fork, "--", "."], None)?;
    let mut wanted: Vec<(String, String)> = Vec::new();
    for entry in listing.split(|&b| b == 0).filter(|e| !e.is_empty()) {
        let entry = String::from_utf8_lossy(entry);
        let Some((meta, path)) = entry.split_once('\t') else { continue };
        let mut fields = meta.split_whitespace();
        let (Some(_mode), Some("blob"), Some(id)) = (fields.next(), fields.next(), fields.next()) else { continue };
        let rel = path.strip_prefix(&prefix).unwrap_or(path).to_string();
        let name = rel.rsplit('/').next().unwrap_or(&rel);
        if name.eq_ignore_ascii_case("qna.yaml") || name.eq_ignore_ascii_case("qna.yml") || name == "attribution.txt" {
            wanted.push((rel, id.to_string()));
        }
    }
    let ids: String = wanted.iter().map(|(_, id)| format!("{id}\n")).collect();
    let blobs = git(root, &["cat-file", "--batch"], Some(ids.as_bytes()))?;
    let mut at = 0;
    let runtime = tokio::runtime::Builder::new_current_thread().build().map_err(|e| GitError(e.to_string()))?;
    for (rel, _) in &wanted {
        let header_end =
            blobs[at..].iter().position(|&b| b == b'\n').map(|i| at + i).ok_or_else(|| GitError("short cat-file output".into()))?;
        let header = String::from_utf8_lossy(&blobs[at..header_end]).to_string();
        let size: usize = header
            .rsplit(' ')
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| GitError(format!("unexpected cat-file header `{header}`")))?;
        let body = blobs.get(header_end + 1..header_end + 1 + size).ok_or_else(|| GitError("short cat-file output".into()))?.to_vec();
        at = header_end + 1 + size + 1;
        runtime.block_on(store.put(&loc.child(rel), PutPayload::from(body))).map_err(|e| GitError(e.to_string()))?;
    }
    Ok(loc)
}

/// Leaves the reference would call changed relative to `base`: our diff of the fork-point tree
/// against the working tree (uncommitted and untracked leaves included).
pub async fn git_base(root: &Location, base: &str, opts: &WalkOptions) -> Result<Vec<Change>, Box<dyn std::error::Error + Send + Sync>> {
    let Some(dir) = root.local_root.clone() else {
        return Err(Box::new(GitError("--base needs a local git checkout; for object storage use --against".into())));
    };
    let base = base.to_string();
    let before = tokio::task::spawn_blocking(move || tree_at_base(&dir, &base)).await??;
    Ok(diff_trees(&before, root, opts).await?)
}

/// Ids of a set of changes, for selecting leaves.
pub fn changed_ids(changes: &[Change]) -> BTreeSet<String> {
    changes.iter().filter(|c| c.change != ChangeKind::Removed).map(|c| c.id.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(h: &str) -> LeafKey {
        LeafKey { hash: h.into(), valid: true }
    }

    #[test]
    fn classifies_every_kind_of_change() {
        let before: BTreeMap<String, LeafKey> =
            [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")].iter().map(|(i, h)| (i.to_string(), k(h))).collect();
        let after: BTreeMap<String, LeafKey> =
            [("a", "1"), ("b", "9"), ("e", "3"), ("f", "5")].iter().map(|(i, h)| (i.to_string(), k(h))).collect();
        let got: Vec<(ChangeKind, String)> = diff(&before, &after).into_iter().map(|c| (c.change, c.id)).collect();
        assert_eq!(
            got,
            vec![
                (ChangeKind::Modified, "b".into()),
                (ChangeKind::Removed, "d".into()),
                (ChangeKind::Moved, "e".into()),
                (ChangeKind::Added, "f".into())
            ]
        );
    }
}
