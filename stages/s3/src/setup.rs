//! The storage half of `roller setup` and `roller check`: setup creates the S3 buckets a
//! config names and installs the lifecycle rule that deletes tagged chunks (idempotent; local
//! locations need nothing); check reports whether that rule is there and long enough.

use roller_model::config::{DatasetConfig, Location};

use crate::lifecycle;
use crate::open::Backends;

/// Why storage setup failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A bucket could not be created.
    #[error(transparent)]
    Bucket(#[from] crate::client::BucketError),
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
                client.create_bucket(&bucket)?;
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

/// One thing `roller check` looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Whether it is as it should be.
    pub ok: bool,
    /// What was found, and what to do when it is not ok.
    pub message: String,
}

impl Finding {
    fn ok(message: String) -> Self {
        Self { ok: true, message }
    }

    fn problem(message: String) -> Self {
        Self { ok: false, message }
    }
}

/// Checks the dataset store's expiry: on S3, that an enabled lifecycle rule deletes objects
/// with the expiry tag, and (for `at_write`) that its age covers the window plus a day.
pub fn check_storage(config: &DatasetConfig, backends: &Backends) -> Vec<Finding> {
    let (Some(client), Some(store)) = (&backends.client, &backends.s3_store) else {
        return vec![Finding::ok(
            "the store is on local disk: rolled-off chunks are deleted at the commit that rolls them off".into(),
        )];
    };
    let tag = format!("{}={}", config.expiry.tag_key, config.expiry.tag_value);
    match lifecycle::check(client, store.bucket(), &config.expiry) {
        Err(e) => vec![Finding::problem(format!(
            "cannot read the lifecycle rules of bucket {}: {e}",
            store.bucket()
        ))],
        Ok(lifecycle::RuleState::Missing) => vec![Finding::problem(format!(
            "bucket {} has no enabled lifecycle rule deleting objects tagged {tag}: expired chunks are tagged but never deleted; run `roller setup` to install it",
            store.bucket()
        ))],
        Ok(lifecycle::RuleState::Present { days }) => match lifecycle::too_short(config, days) {
            Some(problem) => vec![Finding::problem(format!(
                "bucket {}: {problem}, then run `roller setup`",
                store.bucket()
            ))],
            None => vec![Finding::ok(format!(
                "bucket {} deletes objects tagged {tag} after {days} day(s)",
                store.bucket()
            ))],
        },
    }
}
