//! Opening Google Cloud Storage (`gs://`) and Azure Blob Storage (`az://`, `azure://`,
//! `abfs[s]://`) for [`Location::open`](super::Location::open), configured only from the
//! standard environment variables that `object_store`'s builders read (`from_env()`).
//!
//! Both builders, when no credential is configured, fall back to a cloud metadata server
//! (`169.254.169.254`) and retry it for minutes when the machine is not on that cloud. labflow
//! refuses such a URL at once instead, naming the variables to set; naming a metadata endpoint
//! or identity explicitly (see the hints) keeps the metadata path available on the cloud itself.
//! Credentials are never logged or put into messages.

use super::StoreError;
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::ObjectStore;
use std::path::Path;
use std::sync::Arc;

/// What to set for `gs://`, in every error about one.
pub(super) const GCS_HINT: &str = "for gs:// set GOOGLE_SERVICE_ACCOUNT (path of a service-account JSON file), \
GOOGLE_SERVICE_ACCOUNT_KEY (its contents) or GOOGLE_APPLICATION_CREDENTIALS (application default credentials); \
on Google Cloud, GCE_METADATA_HOST=metadata.google.internal uses the instance's service account; \
for a public bucket GOOGLE_SKIP_SIGNATURE=true; for an emulator GOOGLE_BASE_URL (or the key's gcs_base_url)";

/// What to set for `az://`, in every error about one.
pub(super) const AZURE_HINT: &str = "for az:// set AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY \
(or AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_TOKEN, or AZURE_STORAGE_CLIENT_ID, AZURE_STORAGE_CLIENT_SECRET and \
AZURE_STORAGE_TENANT_ID); on Azure, AZURE_STORAGE_CLIENT_ID or AZURE_MSI_ENDPOINT uses a managed identity; \
for a custom endpoint AZURE_STORAGE_ENDPOINT; for Azurite AZURE_STORAGE_USE_EMULATOR=true \
(and AZURITE_BLOB_STORAGE_URL when it is not on http://127.0.0.1:10000)";

/// The URL schemes that open Azure Blob Storage. `adl://` (also parsed by `object_store`) is
/// left out: it names the retired Data Lake Gen1 service.
pub(super) const AZURE_SCHEMES: [&str; 4] = ["az", "azure", "abfs", "abfss"];

/// Open `spec` (`gs://bucket/prefix`) on Google Cloud Storage.
pub(super) fn gcs(spec: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
    gcs_from(GoogleCloudStorageBuilder::from_env(), spec, |k| std::env::var(k).ok())
}

/// [`gcs`] from a given builder and environment lookup.
fn gcs_from(
    builder: GoogleCloudStorageBuilder,
    spec: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let builder = builder.with_url(spec);
    if !gcs_has_credentials(&builder, env) {
        return Err(StoreError::NoCredentials { url: spec.into(), hint: GCS_HINT });
    }
    let store = builder.build().map_err(|error| StoreError::Open { url: spec.into(), error, hint: GCS_HINT })?;
    Ok(Arc::new(store))
}

/// Open `spec` (`az://container/prefix` and the other [`AZURE_SCHEMES`]) on Azure Blob Storage.
pub(super) fn azure(spec: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
    azure_from(MicrosoftAzureBuilder::from_env(), spec)
}

/// [`azure`] from a given builder.
fn azure_from(builder: MicrosoftAzureBuilder, spec: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let mut builder = builder.with_url(spec);
    if !azure_has_credentials(&builder) {
        return Err(StoreError::NoCredentials { url: spec.into(), hint: AZURE_HINT });
    }
    // As for s3://: a self-hosted endpoint on plain HTTP is what the user asked for.
    if builder.get_config_value(&AzureConfigKey::Endpoint).is_some_and(|e| e.starts_with("http://")) {
        builder = builder.with_allow_http(true);
    }
    let store = builder.build().map_err(|error| StoreError::Open { url: spec.into(), error, hint: AZURE_HINT })?;
    Ok(Arc::new(store))
}

/// Whether the builder has a credential source other than the implicit metadata server.
/// `env` looks up a variable (a parameter so tests need not change the process environment).
fn gcs_has_credentials(builder: &GoogleCloudStorageBuilder, env: impl Fn(&str) -> Option<String>) -> bool {
    let set = |k: GoogleConfigKey| builder.get_config_value(&k).is_some_and(|v| !v.is_empty());
    // object_store reads gcloud's application default credentials from here without a variable.
    let gcloud_adc = env("HOME").is_some_and(|h| Path::new(&h).join(".config/gcloud/application_default_credentials.json").is_file());
    set(GoogleConfigKey::ServiceAccount)
        || set(GoogleConfigKey::ServiceAccountKey)
        || set(GoogleConfigKey::ApplicationCredentials)
        || truthy(builder.get_config_value(&GoogleConfigKey::SkipSignature))
        || ["GCE_METADATA_HOST", "GCE_METADATA_IP", "GCE_METADATA_ROOT"].iter().any(|k| env(k).is_some_and(|v| !v.is_empty()))
        || gcloud_adc
}

/// Whether the builder is in emulator mode or has a credential source other than the implicit
/// metadata server.
fn azure_has_credentials(builder: &MicrosoftAzureBuilder) -> bool {
    let set = |k: AzureConfigKey| builder.get_config_value(&k).is_some_and(|v| !v.is_empty());
    let on = |k: AzureConfigKey| truthy(builder.get_config_value(&k));
    on(AzureConfigKey::UseEmulator)
        || on(AzureConfigKey::UseAzureCli)
        || on(AzureConfigKey::SkipSignature)
        || [
            AzureConfigKey::AccessKey,
            AzureConfigKey::SasKey,
            AzureConfigKey::Token,
            AzureConfigKey::ClientSecret,
            AzureConfigKey::FederatedTokenFile,
            AzureConfigKey::FabricSessionToken,
            // A named managed identity or endpoint is an explicit choice of the metadata path.
            AzureConfigKey::ClientId,
            AzureConfigKey::ObjectId,
            AzureConfigKey::MsiResourceId,
            AzureConfigKey::MsiEndpoint,
        ]
        .into_iter()
        .any(set)
}

/// object_store's reading of a boolean setting.
fn truthy(value: Option<String>) -> bool {
    value.is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "on" | "yes" | "y"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn gcs_without_any_credential_is_refused_and_each_source_is_accepted() {
        let bare = || GoogleCloudStorageBuilder::new().with_url("gs://bucket/prefix");
        assert!(!gcs_has_credentials(&bare(), no_env));
        assert!(gcs_has_credentials(&bare().with_service_account_path("/key.json"), no_env));
        assert!(gcs_has_credentials(&bare().with_service_account_key("{}"), no_env));
        assert!(gcs_has_credentials(&bare().with_application_credentials("/adc.json"), no_env));
        assert!(gcs_has_credentials(&bare().with_skip_signature(true), no_env));
        assert!(gcs_has_credentials(&bare(), |k| (k == "GCE_METADATA_HOST").then(|| "metadata.google.internal".to_string())));
        let home = tempfile::tempdir().expect("tempdir");
        let home_env = |k: &str| (k == "HOME").then(|| home.path().to_string_lossy().into_owned());
        assert!(!gcs_has_credentials(&bare(), home_env));
        std::fs::create_dir_all(home.path().join(".config/gcloud")).expect("mkdir");
        std::fs::write(home.path().join(".config/gcloud/application_default_credentials.json"), "{}").expect("write");
        assert!(gcs_has_credentials(&bare(), home_env));
    }

    #[test]
    fn azure_without_any_credential_is_refused_and_each_source_is_accepted() {
        let bare = || MicrosoftAzureBuilder::new().with_url("az://container/prefix").with_account("acct");
        assert!(!azure_has_credentials(&bare()));
        assert!(azure_has_credentials(&bare().with_use_emulator(true)));
        assert!(azure_has_credentials(&bare().with_access_key("a2V5")));
        assert!(azure_has_credentials(&bare().with_config(AzureConfigKey::SasKey, "sv=1&sig=x")));
        assert!(azure_has_credentials(&bare().with_bearer_token_authorization("t")));
        assert!(azure_has_credentials(&bare().with_client_id("id")));
        assert!(azure_has_credentials(&bare().with_use_azure_cli(true)));
        assert!(!azure_has_credentials(&bare().with_use_emulator(false)));
    }

    #[test]
    fn refusals_name_the_variables_to_set_and_configured_stores_open_without_a_request() {
        let err = gcs_from(GoogleCloudStorageBuilder::new(), "gs://bucket/taxonomy", no_env).err().expect("refused");
        let msg = err.to_string();
        assert!(msg.starts_with("cannot open `gs://bucket/taxonomy`: no credentials"), "{msg}");
        for var in ["GOOGLE_SERVICE_ACCOUNT", "GOOGLE_SERVICE_ACCOUNT_KEY", "GOOGLE_APPLICATION_CREDENTIALS"] {
            assert!(msg.contains(var), "{msg}");
        }
        let err = azure_from(MicrosoftAzureBuilder::new().with_account("acct"), "az://container/taxonomy").err().expect("refused");
        let msg = err.to_string();
        assert!(msg.starts_with("cannot open `az://container/taxonomy`: no credentials"), "{msg}");
        for var in ["AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_USE_EMULATOR"] {
            assert!(msg.contains(var), "{msg}");
        }
        // A key but no account: object_store's own refusal, with the same hint.
        let err = azure_from(MicrosoftAzureBuilder::new().with_access_key("a2V5"), "az://container/p").err().expect("refused");
        assert!(matches!(err, StoreError::Open { .. }) && err.to_string().contains("AZURE_STORAGE_ACCOUNT_NAME"), "{err}");
        let err = azure_from(MicrosoftAzureBuilder::new().with_use_emulator(true), "az://a.b/p").err().expect("refused");
        assert!(err.to_string().contains("az://a.b/p"), "{err}");

        // Building sends nothing; the key is never echoed.
        let key =
            r#"{"private_key": "", "private_key_id": "", "client_email": "", "disable_oauth": true, "gcs_base_url": "http://127.0.0.1:9"}"#;
        assert!(gcs_from(GoogleCloudStorageBuilder::new().with_service_account_key(key), "gs://bucket/p", no_env).is_ok());
        for url in ["az://container/p", "azure://container/p", "abfs://container/p", "abfss://fs@acct.dfs.core.windows.net/p"] {
            assert!(azure_from(MicrosoftAzureBuilder::new().with_use_emulator(true), url).is_ok(), "{url}");
        }
        let secret = "c2VjcmV0LWtleS1ub3QtdG8tYmUtcHJpbnRlZA==";
        let err = azure_from(MicrosoftAzureBuilder::new().with_access_key(secret), "az://container/p").err().expect("refused");
        assert!(!err.to_string().contains(secret), "{err}");
    }

    #[test]
    fn truthy_follows_object_store() {
        for v in ["1", "true", "TRUE", "on", "yes", "y"] {
            assert!(truthy(Some(v.into())), "{v}");
        }
        for v in ["0", "false", "", "no", "maybe"] {
            assert!(!truthy(Some(v.into())), "{v}");
        }
        assert!(!truthy(None));
    }
}
