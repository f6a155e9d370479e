//! Storage: URLs and local paths turned into an [`object_store::ObjectStore`] plus a prefix.
//!
//! Every reader of a taxonomy, a document source or a run folder goes through here, so local
//! folders, `file://`, `s3://`, `gs://`, `az://` and `memory://` behave the same. Credentials
//! come only from the standard environment variables that `object_store`'s builders read, and
//! are never logged:
//!
//! - `s3://bucket/prefix`: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, and
//!   `AWS_ENDPOINT_URL` or `AWS_ENDPOINT` for S3-compatible servers (`http://` allowed).
//! - `gs://bucket/prefix`: `GOOGLE_SERVICE_ACCOUNT` (a service-account JSON file),
//!   `GOOGLE_SERVICE_ACCOUNT_KEY` (its contents) or `GOOGLE_APPLICATION_CREDENTIALS`; an
//!   emulator through `GOOGLE_BASE_URL` or the key's `gcs_base_url` with `disable_oauth`.
//! - `az://container/prefix` (also `azure://`, `abfs://`, `abfss://`): `AZURE_STORAGE_ACCOUNT_NAME`
//!   with `AZURE_STORAGE_ACCOUNT_KEY`, a SAS token, a bearer token or a service principal;
//!   `AZURE_STORAGE_ENDPOINT` for a custom endpoint (`http://` allowed); Azurite through
//!   `AZURE_STORAGE_USE_EMULATOR=true` and `AZURITE_BLOB_STORAGE_URL`.
//!
//! A `gs://` or `az://` URL with no credential at all is refused at once with the variables to
//! set, instead of waiting minutes on a cloud metadata server (the hints in `cloud.rs` say how to choose the
//! metadata path on the cloud itself).

mod cloud;
pub mod dataset;
pub mod sql;
mod location;

pub use location::{Location, StoreError};
