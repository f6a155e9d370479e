//! Storage: URLs and local paths turned into an [`object_store::ObjectStore`] plus a prefix.
//!
//! Every reader of a taxonomy, a document source or (later) a run folder goes through here, so
//! local folders, `file://`, `s3://` and `memory://` behave the same. Credentials for `s3://`
//! come from the standard `AWS_*` environment variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, and `AWS_ENDPOINT_URL` or `AWS_ENDPOINT` for
//! S3-compatible servers); they are never logged.

pub mod dataset;
mod location;

pub use location::{Location, StoreError};
