//! The taxonomy: `qna.yaml` leaves, their validation, ids, content hashes and change sets.
//!
//! [`walk`] lists a tree on any object store and runs [`check_leaf`] on every leaf: YAML
//! ([`yaml`]), style ([`lint`], yamllint's relaxed profile as the reference runs it), the JSON
//! Schema of the leaf's version and kind ([`schema`]), the README's size guidance ([`guidance`])
//! and, with a document source, the knowledge documents. [`diff`] compares two sets of leaves.
//! Nothing here calls a model.

pub mod diagnostic;
pub mod diff;
pub mod guidance;
pub mod leaf;
pub mod lint;
pub mod schema;
pub mod walk;
pub mod yaml;

pub use diagnostic::{Diagnostic, Pos, Severity};
pub use leaf::{check_leaf, Leaf, LeafCheck, LeafKind};
pub use walk::{walk, HashedLeaf, TaxonomyError, TreeReport, WalkOptions};
