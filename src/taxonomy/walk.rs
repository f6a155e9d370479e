//! Walking a taxonomy tree on any object store: find every leaf, check it, hash it.
//!
//! Listing goes through `object_store`, so a local folder, `s3://` and `memory://` are walked the
//! same way. Hidden folders (`.git`, `.github`) are skipped. A listing entry that cannot be read
//! (a symlink loop, a permission error) becomes a diagnostic and the walk goes on; only a root that
//! cannot be listed at all is a [`TaxonomyError`].

use crate::documents;
use crate::store::Location;
use crate::taxonomy::diagnostic::{codes, Diagnostic, Pos};
use crate::taxonomy::leaf::{check_leaf, Leaf, LeafCheck, MAX_FILE_BYTES};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use serde::Serialize;
use std::collections::BTreeSet;

/// The taxonomy could not be read at all (exit status 2 in the CLI).
#[derive(Debug, thiserror::Error)]
pub enum TaxonomyError {
    /// The root could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Listing the root failed.
    #[error("cannot list {url}: {source}")]
    List {
        /// The taxonomy URL.
        url: String,
        /// The store's error.
        source: object_store::Error,
    },
    /// The root holds no `qna.yaml` at all.
    #[error("{0} contains no qna.yaml files; is this the taxonomy root?")]
    Empty(String),
}

/// Options for a walk.
#[derive(Debug, Clone, Default)]
pub struct WalkOptions {
    /// Where knowledge documents resolve; `None` skips document checks.
    pub docs: Option<Location>,
    /// Only the leaves whose `qna.yaml` paths are listed here (all when `None`).
    pub only: Option<BTreeSet<String>>,
}

/// A leaf with its documents folded into its hash.
#[derive(Debug, Clone, Serialize)]
pub struct HashedLeaf {
    /// The leaf.
    #[serde(flatten)]
    pub leaf: Leaf,
    /// blake3 over the content hash and every referenced document's path and bytes, hex.
    pub hash: String,
    /// Whether the documents were read into `hash` (false without a document source).
    pub documents_hashed: bool,
    /// Paths of the documents inside their repository.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub documents: Vec<String>,
}

/// Everything a walk found.
#[derive(Debug, Clone, Default)]
pub struct TreeReport {
    /// Valid leaves, sorted by id.
    pub leaves: Vec<HashedLeaf>,
    /// Every diagnostic, sorted by path and position.
    pub diagnostics: Vec<Diagnostic>,
    /// Number of `qna.yaml` files checked.
    pub files_checked: usize,
    /// Leaf id → blake3 of the raw bytes, for leaf files that are not valid (used by diff).
    pub raw_hashes: Vec<(String, String)>,
}

impl TreeReport {
    /// Number of error diagnostics.
    pub fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }
    /// Number of warning diagnostics.
    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }
}

fn is_leaf_name(name: &str) -> bool {
    name == "qna.yaml"
}

fn is_misnamed_leaf(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !is_leaf_name(name) && (lower == "qna.yaml" || lower == "qna.yml")
}

/// Walk the taxonomy at `root`, checking every leaf.
pub async fn walk(root: &Location, opts: &WalkOptions) -> Result<TreeReport, TaxonomyError> {
    let mut report = TreeReport::default();
    let mut files: Vec<String> = Vec::new();
    let mut all: BTreeSet<String> = BTreeSet::new();
    let mut listing = root.store.list(Some(&root.prefix));
    let mut listed_any = false;
    while let Some(item) = listing.next().await {
        match item {
            Ok(meta) => {
                listed_any = true;
                let Some(rel) = root.relative(&meta.location) else { continue };
                if rel.split('/').any(|c| c.starts_with('.')) {
                    continue;
                }
                let name = rel.rsplit('/').next().unwrap_or(&rel);
                if is_leaf_name(name) {
                    if meta.size as usize > MAX_FILE_BYTES {
                        report.files_checked += 1;
                        report.diagnostics.push(Diagnostic::error(
                            &rel,
                            Pos::START,
                            codes::YAML_TOO_LARGE,
                            format!("file is {} bytes; a qna.yaml is limited to {} MiB", meta.size, MAX_FILE_BYTES >> 20),
                        ));
                    } else {
                        files.push(rel.clone());
                    }
                } else if is_misnamed_leaf(name) {
                    report.diagnostics.push(Diagnostic::warning(
                        &rel,
                        Pos::START,
                        codes::FILE_MISNAMED,
                        format!("`{name}` is skipped: a leaf file must be named exactly `qna.yaml`"),
                    ));
                }
                all.insert(rel);
            }
            Err(object_store::Error::NotFound { .. }) if !listed_any => {}
            Err(e) => {
                if !listed_any && root.local_root.is_none() {
                    return Err(TaxonomyError::List { url: root.display.clone(), source: e });
                }
                report.diagnostics.push(Diagnostic::error(
                    &unreadable_path(root, &e),
                    Pos::START,
                    codes::FILE_UNREADABLE,
                    format!("cannot read this part of the taxonomy: {e}"),
                ));
            }
        }
    }
    if files.is_empty() && report.diagnostics.is_empty() {
        return Err(TaxonomyError::Empty(root.display.clone()));
    }
    if let Some(only) = &opts.only {
        files.retain(|f| only.contains(f));
    }
    files.sort();
    let contents: Vec<(String, Result<Vec<u8>, String>)> = futures::stream::iter(files.into_iter().map(|rel| async move {
        let got = root.store.get(&root.child(&rel)).await;
        let bytes = match got {
            Ok(g) => g.bytes().await.map(|b| b.to_vec()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        (rel, bytes)
    }))
    .buffer_unordered(32)
    .collect()
    .await;
    let checks = check_all(contents);
    let mut valid = Vec::new();
    for (rel, check, raw_hash) in checks {
        report.files_checked += 1;
        report.diagnostics.extend(check.diagnostics);
        let dir = rel.rsplit_once('/').map(|(d, _)| d.to_string()).unwrap_or_default();
        let attribution = if dir.is_empty() { "attribution.txt".to_string() } else { format!("{dir}/attribution.txt") };
        if !all.contains(&attribution) {
            report.diagnostics.push(Diagnostic::warning(
                &rel,
                Pos::START,
                codes::ATTRIBUTION_MISSING,
                "no attribution.txt beside this leaf; the taxonomy requires one citing the sources of the seed examples",
            ));
        }
        match check.leaf {
            Some(leaf) => valid.push(leaf),
            None => report.raw_hashes.push((dir, raw_hash)),
        }
    }
    // Knowledge leaves read their documents: several at a time, since each waits on storage.
    let mut hashed = futures::stream::iter(valid.into_iter().map(|leaf| hash_leaf(leaf, opts))).buffered(16);
    while let Some((leaf, diagnostics)) = hashed.next().await {
        report.leaves.push(leaf);
        report.diagnostics.extend(diagnostics);
    }
    report.leaves.sort_by(|a, b| a.leaf.id.cmp(&b.leaf.id));
    report.diagnostics.sort_by(|a, b| (&a.path, a.line, a.column).cmp(&(&b.path, b.line, b.column)));
    Ok(report)
}

/// Check files on all cores; each check is independent and CPU-bound.
fn check_all(contents: Vec<(String, Result<Vec<u8>, String>)>) -> Vec<(String, LeafCheck, String)> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(contents.len().max(1));
    let chunk = contents.len().div_ceil(threads).max(1);
    let mut out: Vec<(String, LeafCheck, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = contents
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|(rel, bytes)| {
                            let check = match bytes {
                                Ok(b) => check_leaf(rel, b),
                                Err(e) => LeafCheck {
                                    diagnostics: vec![Diagnostic::error(
                                        rel,
                                        Pos::START,
                                        codes::FILE_UNREADABLE,
                                        format!("cannot read the file: {e}"),
                                    )],
                                    leaf: None,
                                },
                            };
                            let raw = bytes.as_ref().map(|b| blake3::hash(b).to_hex().to_string()).unwrap_or_default();
                            (rel.clone(), check, raw)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    });
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The leaf with its documents folded into its hash, and the documents' diagnostics.
async fn hash_leaf(leaf: Leaf, opts: &WalkOptions) -> (HashedLeaf, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let mut hasher = blake3::Hasher::new();
    hasher.update(leaf.content_hash.as_bytes());
    let mut names = Vec::new();
    let mut documents_hashed = leaf.document.is_none();
    if let (Some(doc), Some(source)) = (&leaf.document, &opts.docs) {
        let resolved = documents::resolve(source, &leaf.path, doc).await;
        documents_hashed = resolved.diagnostics.is_empty();
        diagnostics.extend(resolved.diagnostics);
        for (path, bytes) in resolved.files {
            hasher.update(&(path.len() as u64).to_le_bytes());
            hasher.update(path.as_bytes());
            hasher.update(&(bytes.len() as u64).to_le_bytes());
            hasher.update(&bytes);
            names.push(path);
        }
    }
    (HashedLeaf { hash: hasher.finalize().to_hex().to_string(), leaf, documents_hashed, documents: names }, diagnostics)
}

/// Best-effort path of an unreadable listing entry, for the diagnostic.
fn unreadable_path(root: &Location, e: &object_store::Error) -> String {
    let text = e.to_string();
    let Some(word) = text.split_whitespace().find(|w| w.contains('/')) else { return ".".to_string() };
    let word = word.trim_matches(|c: char| c == ':' || c == ',' || c == '"' || c == '\'');
    if let Some(local) = &root.local_root {
        if let Ok(rel) = std::path::Path::new(word).strip_prefix(local) {
            return rel.to_string_lossy().replace('\\', "/");
        }
    }
    word.to_string()
}
