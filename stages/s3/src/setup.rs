//! The storage half of `roller setup`: creates the S3 buckets a config names and installs the
//! lifecycle rule that deletes tagged chunks. Idempotent; local locations need nothing.

use roller_core::config::{DatasetConfig, Location};

use crate::lifecycle;
use crate::open::Backends;

/// Why storage setup failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A bucket could not be created.
    #[error("{0}")]
    Bucket(String),
    /// The lifecycle rule could not be installed.
    #[error(transparent)]
    Lifecycle(#[from] lifecycle::LifecycleError),
    /// The config asks for a rule that would delete chunks still in the window.
    #[error("{0}")]
    Unsafe(String),
}

/// Creates the buckets and installs the lifecycle rule; returns a line per thing done.
pub fn setup_storage(
    config: &DatasetConfig,
    backends: &Backends,
) -> Result<Vec<String>, SetupError> {
    let Some(client) = &backends.client else {
        return Ok(Vec::new());
    };
    let mut done = Vec::new();
    let mut buckets = Vec::new();
    for path in std::iter::once(&config.store.path).chain(config.scratch.iter().map(|s| &s.path)) {
        if let Ok(Location::S3 { bucket, .. }) = Location::parse(path) {
            if !buckets.contains(&bucket) {
                client.create_bucket(&bucket).map_err(SetupError::Bucket)?;
                done.push(format!("bucket {bucket}"));
                buckets.push(bucket);
            }
        }
    }
    if let Some(store) = &backends.s3_store {
        if let Some(problem) = lifecycle::too_short(config, config.expiry.lifecycle_days) {
            return Err(SetupError::Unsafe(problem));
        }
        lifecycle::install(client, store.bucket(), &config.expiry)?;
        done.push(format!(
            "lifecycle rule {} on bucket {}: delete objects tagged {}={} after {} day(s)",
            lifecycle::rule_id(&config.expiry),
            store.bucket(),
            config.expiry.tag_key,
            config.expiry.tag_value,
            config.expiry.lifecycle_days
        ));
    }
    Ok(done)
}
