//! [`Location`]: where a tree of objects lives.

use super::cloud;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use std::path::PathBuf;
use std::sync::Arc;

/// Why a location could not be opened. The caller must fix the URL or the environment.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A local folder that does not exist or is not a folder.
    #[error("`{0}` is not a readable folder")]
    NotAFolder(String),
    /// A URL scheme labflow cannot open.
    #[error(
        "unsupported URL scheme in `{0}`: use a local path, file://, s3://, gs://, az:// (or azure://, abfs://, abfss://) or memory://"
    )]
    Scheme(String),
    /// A malformed URL.
    #[error("`{url}` is not a valid URL: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The object store client refused the configuration.
    #[error("cannot open `{url}`: {error}; {hint}")]
    Open {
        /// The URL as given.
        url: String,
        /// The client's error. Not a `#[source]`: its text is already in the message, and a
        /// printed source chain would bury the hint under repeats of it.
        error: object_store::Error,
        /// What to set or check, naming the environment variables for a cloud store.
        hint: &'static str,
    },
    /// A cloud store URL with no credential configured in the environment (labflow refuses
    /// rather than wait on a cloud metadata server that is not there).
    #[error("cannot open `{url}`: no credentials in the environment; {hint}")]
    NoCredentials {
        /// The URL as given.
        url: String,
        /// The environment variables to set.
        hint: &'static str,
    },
}

/// What to set for `s3://`, in every error about one.
const S3_HINT: &str =
    "for s3:// set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and, for an S3-compatible server, AWS_ENDPOINT_URL";

fn parse_url(spec: &str) -> Result<url::Url, StoreError> {
    url::Url::parse(spec).map_err(|e| StoreError::BadUrl { url: spec.into(), reason: e.to_string() })
}

/// A store and the prefix under which a tree lives.
#[derive(Clone, Debug)]
pub struct Location {
    /// The object store.
    pub store: Arc<dyn ObjectStore>,
    /// Prefix of the tree inside the store (empty for the whole store).
    pub prefix: ObjectPath,
    /// The URL or path as the user wrote it, for messages.
    pub display: String,
    /// The local folder, when the location is on the local file system.
    pub local_root: Option<PathBuf>,
}

impl Location {
    /// Open a local path or a URL: `file://`, `s3://bucket/prefix`, `gs://bucket/prefix`,
    /// `az://container/prefix` (also `azure://`, `abfs://`, `abfss://`, as `object_store` parses
    /// them, including `abfss://container@account.dfs.core.windows.net/prefix`), `memory://`.
    pub fn open(spec: &str) -> Result<Location, StoreError> {
        let scheme = spec.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            None => Self::local(spec, PathBuf::from(spec)),
            Some("file") => {
                let url = parse_url(spec)?;
                let path =
                    url.to_file_path().map_err(|_| StoreError::BadUrl { url: spec.into(), reason: "not an absolute file path".into() })?;
                Self::local(spec, path)
            }
            Some("s3") => {
                let url = parse_url(spec)?;
                let mut builder = AmazonS3Builder::from_env().with_url(spec);
                if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
                    builder = builder.with_allow_http(endpoint.starts_with("http://")).with_endpoint(endpoint);
                } else if let Ok(endpoint) = std::env::var("AWS_ENDPOINT") {
                    builder = builder.with_allow_http(endpoint.starts_with("http://"));
                }
                let store = builder.build().map_err(|error| StoreError::Open { url: spec.into(), error, hint: S3_HINT })?;
                Ok(Self::remote(spec, Arc::new(store), &url))
            }
            Some("gs") => {
                let url = parse_url(spec)?;
                Ok(Self::remote(spec, cloud::gcs(spec)?, &url))
            }
            Some(s) if cloud::AZURE_SCHEMES.contains(&s) => {
                let url = parse_url(spec)?;
                Ok(Self::remote(spec, cloud::azure(spec)?, &url))
            }
            Some("memory") => Ok(Self::memory(Arc::new(InMemory::new()), "")),
            Some(_) => Err(StoreError::Scheme(spec.into())),
        }
    }

    /// Like [`Location::open`], for a place labflow writes to: a local folder (or `file://`
    /// folder) that does not exist yet is created first.
    pub fn open_or_create(spec: &str) -> Result<Location, StoreError> {
        let local = match spec.split_once("://") {
            None => Some(PathBuf::from(spec)),
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("file") => url::Url::parse(spec).ok().and_then(|u| u.to_file_path().ok()),
            Some(_) => None,
        };
        if let Some(dir) = local {
            std::fs::create_dir_all(&dir)
                .map_err(|e| StoreError::BadUrl { url: spec.into(), reason: format!("cannot create the folder: {e}") })?;
        }
        Self::open(spec)
    }

    /// A location on a remote store: the tree lives under the URL's path.
    fn remote(spec: &str, store: Arc<dyn ObjectStore>, url: &url::Url) -> Location {
        Location { store, prefix: ObjectPath::from(url.path().trim_matches('/')), display: spec.into(), local_root: None }
    }

    /// A location over an existing store (tests use this with [`InMemory`]).
    pub fn memory(store: Arc<dyn ObjectStore>, prefix: &str) -> Location {
        Location { store, prefix: ObjectPath::from(prefix), display: format!("memory:///{prefix}"), local_root: None }
    }

    fn local(spec: &str, path: PathBuf) -> Result<Location, StoreError> {
        let root = std::fs::canonicalize(&path).map_err(|_| StoreError::NotAFolder(spec.into()))?;
        if !root.is_dir() {
            return Err(StoreError::NotAFolder(spec.into()));
        }
        let store = LocalFileSystem::new_with_prefix(&root).map_err(|error| StoreError::Open {
            url: spec.into(),
            error,
            hint: "check that the folder is readable",
        })?;
        Ok(Location { store: Arc::new(store), prefix: ObjectPath::default(), display: spec.into(), local_root: Some(root) })
    }

    /// The object path of `rel` (a `/`-separated path relative to this location).
    pub fn child(&self, rel: &str) -> ObjectPath {
        let mut parts: Vec<String> = self.prefix.parts().map(|p| p.as_ref().to_string()).collect();
        parts.extend(rel.split('/').filter(|s| !s.is_empty()).map(str::to_string));
        ObjectPath::from_iter(parts)
    }

    /// The location `rel` below this one, on the same store (a local folder is created, since
    /// callers open sub-locations to write to them).
    pub fn sub(&self, rel: &str) -> Location {
        let local_root = self.local_root.as_ref().map(|r| r.join(rel));
        if let Some(dir) = &local_root {
            // A failure here surfaces as the first write's error, with the path in it.
            let _ = std::fs::create_dir_all(dir);
        }
        Location {
            store: Arc::clone(&self.store),
            prefix: self.child(rel),
            display: format!("{}/{rel}", self.display.trim_end_matches('/')),
            local_root,
        }
    }

    /// `path` relative to this location's prefix, `/`-separated.
    pub fn relative(&self, path: &ObjectPath) -> Option<String> {
        let parts: Vec<String> = path.prefix_match(&self.prefix)?.map(|p| p.as_ref().to_string()).collect();
        Some(parts.join("/"))
    }
}
