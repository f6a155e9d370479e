//! Knowledge documents: resolving a leaf's `document` reference to files and their bytes.
//!
//! Later work adds markdown/PDF to text and token-aware chunking here; this module never knows
//! about pipelines.

mod source;

pub use source::{repo_slug, resolve, Resolved, ALLOWED_EXTENSIONS};
