//! The `[s3]` section: how to reach S3 (read by `roller-s3`).

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// How to reach S3. Credentials come from the standard AWS chain (environment, shared profile,
/// web identity on Kubernetes, instance metadata), never from this file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint of an S3-compatible store (e.g. `http://127.0.0.1:8333`); AWS when unset.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Region; from the AWS chain when unset (`us-east-1` if nothing says).
    #[serde(default)]
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible stores need.
    #[serde(default)]
    pub force_path_style: bool,
    /// Requests in flight at once per process.
    #[serde(default = "default_s3_concurrency")]
    pub max_concurrency: usize,
    /// Attempts per request (throttling, 5xx and network errors are retried with backoff;
    /// other 4xx are not).
    #[serde(default = "default_s3_attempts")]
    pub max_attempts: u32,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint_url: None,
            region: None,
            force_path_style: false,
            max_concurrency: default_s3_concurrency(),
            max_attempts: default_s3_attempts(),
        }
    }
}

fn default_s3_concurrency() -> usize {
    32
}

fn default_s3_attempts() -> u32 {
    6
}

impl S3Config {
    /// Checks the concurrency and the attempts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_concurrency == 0 || self.max_attempts == 0 {
            return Err(invalid(
                "s3",
                "max_concurrency and max_attempts must be positive",
            ));
        }
        Ok(())
    }
}
