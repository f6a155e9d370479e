//! Document sources: where a knowledge leaf's `document {repo, commit, patterns}` resolves.
//!
//! A source is a folder or object-store prefix laid out as `<owner>/<repo>/<commit>/<path>`
//! (like `../shared/data/docs`), in which `<owner>/<repo>` may instead be a local git clone
//! (then files are read at `commit` through `git`). The reference clones the repository and
//! globs the patterns; we do the same offline, and refuse anything that would leave the
//! repository: `..`, absolute patterns, and (local folders) symlinks pointing outside.

use crate::store::Location;
use crate::taxonomy::diagnostic::{codes, Diagnostic, Pos};
use crate::taxonomy::leaf::DocumentRef;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use std::path::{Path, PathBuf};

/// Document extensions the reference accepts, plus plain text.
pub const ALLOWED_EXTENSIONS: &[&str] = &["md", "txt", "pdf"];

/// A leaf's resolved documents: `(path inside the repo, bytes)`, sorted by path.
#[derive(Debug, Default, Clone)]
pub struct Resolved {
    /// Matched documents.
    pub files: Vec<(String, Vec<u8>)>,
    /// Problems found while resolving.
    pub diagnostics: Vec<Diagnostic>,
}

/// `https://github.com/owner/repo(.git)` or `git@host:owner/repo.git` → `(owner, repo)`.
pub fn repo_slug(repo: &str) -> Option<(String, String)> {
    let trimmed = repo.trim().trim_end_matches('/');
    let trimmed = trimmed.strip_suffix(".git").unwrap_or(trimmed);
    let path = match trimmed.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map(|(_, p)| p)?,
        None => trimmed.split_once(':').map(|(_, p)| p).unwrap_or(trimmed),
    };
    let mut parts = path.rsplit('/').filter(|s| !s.is_empty());
    let name = parts.next()?;
    let owner = parts.next()?;
    let safe = |s: &str| s != ".." && s != "." && !s.contains('\\');
    (safe(owner) && safe(name)).then(|| (owner.to_string(), name.to_string()))
}

/// A pattern must stay inside the repository: relative, without `..`.
fn pattern_escapes(pattern: &str) -> bool {
    pattern.starts_with('/')
        || pattern.starts_with('\\')
        || pattern.contains(':') && pattern.chars().nth(1) == Some(':')
        || pattern.split(['/', '\\']).any(|c| c == "..")
}

/// Resolve `doc` (of the leaf at `leaf_path`) in `source`.
pub async fn resolve(source: &Location, leaf_path: &str, doc: &DocumentRef) -> Resolved {
    let mut out = Resolved::default();
    let err = |pos: Pos, code: &'static str, msg: String, key: &str| Diagnostic::error(leaf_path, pos, code, msg).at_key(key.to_string());
    let Some((owner, name)) = repo_slug(&doc.repo) else {
        out.diagnostics.push(err(
            doc.repo_pos,
            codes::DOC_REPO_NOT_FOUND,
            format!("cannot read an owner/repository from `{}`; use a URL like https://github.com/OWNER/REPO", doc.repo),
            "document.repo",
        ));
        return out;
    };
    let listing = match list_commit(source, &owner, &name, &doc.commit).await {
        Ok(files) => files,
        Err(ListError::Repo) => {
            out.diagnostics.push(err(
                doc.repo_pos,
                codes::DOC_REPO_NOT_FOUND,
                format!(
                    "repository {owner}/{name} is not in the document source {}; put it at {owner}/{name}/{}/ there",
                    source.display, doc.commit
                ),
                "document.repo",
            ));
            return out;
        }
        Err(ListError::Commit) => {
            out.diagnostics.push(err(
                doc.commit_pos,
                codes::DOC_COMMIT_NOT_FOUND,
                format!("commit {} of {owner}/{name} is not in the document source {}", doc.commit, source.display),
                "document.commit",
            ));
            return out;
        }
        Err(ListError::Io(e)) => {
            out.diagnostics.push(err(
                doc.pos,
                codes::DOC_UNREADABLE,
                format!("cannot list documents of {owner}/{name}@{}: {e}", doc.commit),
                "document",
            ));
            return out;
        }
    };
    let mut matched: Vec<String> = Vec::new();
    for (i, pattern) in doc.patterns.iter().enumerate() {
        let pos = doc.pattern_pos.get(i).copied().unwrap_or(doc.pos);
        let key = format!("document.patterns[{i}]");
        if pattern_escapes(pattern) {
            out.diagnostics.push(err(
                pos,
                codes::DOC_ESCAPE,
                format!("pattern `{pattern}` leaves the repository; patterns are relative paths without `..`"),
                &key,
            ));
            continue;
        }
        let glob = match globset::GlobBuilder::new(pattern).literal_separator(true).build() {
            Ok(g) => g.compile_matcher(),
            Err(e) => {
                out.diagnostics.push(err(pos, codes::DOC_BAD_PATTERN, format!("pattern `{pattern}` is not a valid glob: {e}"), &key));
                continue;
            }
        };
        let hits: Vec<&Listed> = listing.files.iter().filter(|f| glob.is_match(&f.path)).collect();
        if hits.is_empty() {
            out.diagnostics.push(err(
                pos,
                codes::DOC_NO_MATCH,
                format!("pattern `{pattern}` matches no file in {owner}/{name}@{}", short(&doc.commit)),
                &key,
            ));
        }
        for hit in hits {
            if listing.escapes(source, hit) {
                out.diagnostics.push(err(
                    pos,
                    codes::DOC_ESCAPE,
                    format!("`{}` is a symlink that points outside the repository; refusing to read it", hit.path),
                    &key,
                ));
                continue;
            }
            let ext = Path::new(&hit.path).extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
            if !ALLOWED_EXTENSIONS.contains(&ext.as_str()) {
                out.diagnostics.push(err(
                    pos,
                    codes::DOC_BAD_EXTENSION,
                    format!("`{}` matched by `{pattern}` is not a .md, .txt or .pdf document", hit.path),
                    &key,
                ));
                continue;
            }
            if !matched.contains(&hit.path) {
                matched.push(hit.path.clone());
            }
        }
    }
    matched.sort();
    for path in matched {
        match read_file(source, &listing, &path).await {
            Ok(bytes) => out.files.push((path, bytes)),
            Err(e) => out.diagnostics.push(err(doc.pos, codes::DOC_UNREADABLE, format!("cannot read `{path}`: {e}"), "document")),
        }
    }
    out
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

struct Listed {
    path: String,
    /// A symlink in a git tree (never followed). Local folders are checked per matched file.
    escapes: bool,
}

struct Listing {
    files: Vec<Listed>,
    /// Where the commit's files are: a folder prefix, or a git clone and commit.
    origin: Origin,
    /// The commit folder with symlinks resolved, when the source is a local folder.
    canonical_commit: Option<PathBuf>,
}

impl Listing {
    /// Whether `file` resolves outside its commit folder (a symlink pointing elsewhere, or one
    /// that cannot be resolved). Only matched files are checked: resolving costs a system call
    /// per path component, and a commit folder may hold far more files than a leaf reads.
    fn escapes(&self, source: &Location, file: &Listed) -> bool {
        match (&self.origin, &source.local_root) {
            (Origin::Git(..), _) => file.escapes,
            (Origin::Prefix(prefix), Some(root)) => match &self.canonical_commit {
                Some(commit_dir) => {
                    std::fs::canonicalize(root.join(prefix).join(&file.path)).map(|p| !p.starts_with(commit_dir)).unwrap_or(true)
                }
                None => false,
            },
            (Origin::Prefix(_), None) => false,
        }
    }
}

enum Origin {
    Prefix(String),
    Git(PathBuf, String),
}

enum ListError {
    Repo,
    Commit,
    Io(String),
}

async fn list_commit(source: &Location, owner: &str, name: &str, commit: &str) -> Result<Listing, ListError> {
    if let Some(root) = &source.local_root {
        let repo_dir = root.join(owner).join(name);
        if !repo_dir.is_dir() {
            return Err(ListError::Repo);
        }
        if repo_dir.join(".git").exists() || repo_dir.join("HEAD").is_file() && repo_dir.join("objects").is_dir() {
            return list_git(&repo_dir, commit).await;
        }
        let commit_dir = repo_dir.join(commit);
        if !commit_dir.is_dir() {
            return Err(ListError::Commit);
        }
    }
    let prefix = format!("{owner}/{name}/{commit}");
    let base = source.child(&prefix);
    let metas: Vec<object_store::ObjectMeta> =
        source.store.list(Some(&base)).try_collect().await.map_err(|e| ListError::Io(e.to_string()))?;
    if metas.is_empty() && source.local_root.is_none() {
        let any_repo: Vec<object_store::ObjectMeta> = source
            .store
            .list(Some(&source.child(&format!("{owner}/{name}"))))
            .try_collect()
            .await
            .map_err(|e| ListError::Io(e.to_string()))?;
        return Err(if any_repo.is_empty() { ListError::Repo } else { ListError::Commit });
    }
    let canonical_commit = source.local_root.as_ref().and_then(|r| std::fs::canonicalize(r.join(&prefix)).ok());
    let mut files = Vec::new();
    for meta in metas {
        let Some(full) = source.relative(&meta.location) else { continue };
        let Some(rel) = full.strip_prefix(&format!("{prefix}/")) else { continue };
        files.push(Listed { path: rel.to_string(), escapes: false });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Listing { files, origin: Origin::Prefix(prefix), canonical_commit })
}

async fn git(repo: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let out =
        tokio::process::Command::new("git").arg("-C").arg(repo).args(args).output().await.map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(out.stdout)
}

async fn list_git(repo: &Path, commit: &str) -> Result<Listing, ListError> {
    if commit.starts_with('-') || git(repo, &["cat-file", "-e", &format!("{commit}^{{commit}}")]).await.is_err() {
        return Err(ListError::Commit);
    }
    let raw = git(repo, &["ls-tree", "-r", "-z", "--full-tree", commit]).await.map_err(ListError::Io)?;
    let mut files = Vec::new();
    for entry in raw.split(|&b| b == 0).filter(|e| !e.is_empty()) {
        let entry = String::from_utf8_lossy(entry);
        let Some((meta, path)) = entry.split_once('\t') else { continue };
        // Mode 120000 is a symlink: never followed, it could point anywhere.
        files.push(Listed { path: path.to_string(), escapes: meta.starts_with("120000") });
    }
    Ok(Listing { files, origin: Origin::Git(repo.to_path_buf(), commit.to_string()), canonical_commit: None })
}

async fn read_file(source: &Location, listing: &Listing, path: &str) -> Result<Vec<u8>, String> {
    match &listing.origin {
        Origin::Prefix(prefix) => {
            let got = source.store.get(&source.child(&format!("{prefix}/{path}"))).await.map_err(|e| e.to_string())?;
            got.bytes().await.map(|b| b.to_vec()).map_err(|e| e.to_string())
        }
        Origin::Git(repo, commit) => git(repo, &["show", &format!("{commit}:{path}")]).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_ignore_dot_git_and_scheme() {
        let want = Some(("juliadenham".to_string(), "Summit_knowledge".to_string()));
        assert_eq!(repo_slug("https://github.com/juliadenham/Summit_knowledge"), want);
        assert_eq!(repo_slug("https://github.com/juliadenham/Summit_knowledge.git"), want);
        assert_eq!(repo_slug("git@github.com:juliadenham/Summit_knowledge.git"), want);
        assert_eq!(repo_slug("https://github.com/../x"), None);
        assert_eq!(repo_slug("nothing"), None);
    }

    #[test]
    fn escaping_patterns_are_caught() {
        assert!(pattern_escapes("../secret.md"));
        assert!(pattern_escapes("a/../../b.md"));
        assert!(pattern_escapes("/etc/passwd"));
        assert!(!pattern_escapes("docs/*.md"));
        assert!(!pattern_escapes("**/*.md"));
    }
}
