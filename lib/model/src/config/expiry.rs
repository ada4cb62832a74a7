//! The `[expiry]` section: what happens to chunks that rolled out of the window (read by commit and
//! `roller-s3`).

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};
use crate::duration::Seconds;

/// What happens to chunks that rolled out of the window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpiryConfig {
    /// `on_roll_off` (default): after a commit moves the offset, chunks below it are tagged
    /// (S3) or deleted (local disk). `at_write`: every per-index chunk is written with the tag
    /// and a lifecycle rule expires it by age; no tagging calls.
    #[serde(default)]
    pub policy: ExpiryPolicy,
    /// Object tag key marking a chunk for expiry.
    #[serde(default = "default_tag_key")]
    pub tag_key: String,
    /// Object tag value marking a chunk for expiry.
    #[serde(default = "default_tag_value")]
    pub tag_value: String,
    /// Days after which the bucket lifecycle rule (`roller setup`) deletes tagged objects.
    #[serde(default = "default_lifecycle_days")]
    pub lifecycle_days: u32,
    /// How long chunks stay readable after the commit that rolled them out of the window, and
    /// how long a replaced generation's snapshot stays readable (default `1h`): a reader that
    /// opened a snapshot before a roll can finish reading it.
    #[serde(default = "default_grace")]
    pub grace: Seconds,
}

impl Default for ExpiryConfig {
    fn default() -> Self {
        Self {
            policy: ExpiryPolicy::default(),
            tag_key: default_tag_key(),
            tag_value: default_tag_value(),
            lifecycle_days: default_lifecycle_days(),
            grace: default_grace(),
        }
    }
}

/// When chunks are marked for expiry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryPolicy {
    /// Tag (or delete) chunks once they are below the committed offset.
    #[default]
    OnRollOff,
    /// Tag every per-index chunk when it is written; expiry is by age only.
    AtWrite,
}

fn default_tag_key() -> String {
    "zarr-roller-expired".into()
}

fn default_tag_value() -> String {
    "true".into()
}

fn default_lifecycle_days() -> u32 {
    1
}

fn default_grace() -> Seconds {
    Seconds(3600)
}

impl ExpiryConfig {
    /// Checks the tag, the lifecycle days and the grace.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let tag_ok = |t: &str| !t.is_empty() && t.len() <= 128 && !t.chars().any(char::is_control);
        if !tag_ok(&self.tag_key) || !tag_ok(&self.tag_value) {
            return Err(invalid(
                "expiry.tag_key",
                "tag key and value must be 1 to 128 printable characters",
            ));
        }
        if self.lifecycle_days == 0 {
            return Err(invalid("expiry.lifecycle_days", "must be at least 1"));
        }
        if self.grace.0 < 0 {
            return Err(invalid(
                "expiry.grace",
                "must not be negative (`0s` removes rolled-out chunks at once)",
            ));
        }
        Ok(())
    }
}
