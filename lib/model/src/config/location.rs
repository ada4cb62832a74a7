//! Where a store or scratch area lives: a local directory or `s3://bucket/prefix`.

use std::path::{Path, PathBuf};

/// Where a store or scratch area lives: a local directory or an S3 bucket and key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory on the local file system.
    Local(PathBuf),
    /// `s3://bucket/prefix`: objects are `prefix/key` in `bucket` (the prefix may be empty).
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix, without leading or trailing `/`.
        prefix: String,
    },
}

/// Why an `s3://` location is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// The bucket name breaks S3's rules.
    #[error("`{0}` is not an S3 bucket name (3 to 63 lowercase letters, digits, `-`, `.`)")]
    Bucket(String),
    /// The key prefix climbs out of itself.
    #[error("the key prefix `{0}` must not contain `.` or `..`")]
    Prefix(String),
}

impl Location {
    /// Reads a `path` setting: `s3://bucket/prefix` or a local path.
    pub fn parse(path: &Path) -> Result<Self, LocationError> {
        let Some(text) = path.to_str().and_then(|t| t.strip_prefix("s3://")) else {
            return Ok(Self::Local(path.to_path_buf()));
        };
        let (bucket, prefix) = text.split_once('/').unwrap_or((text, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !valid_bucket {
            return Err(LocationError::Bucket(bucket.to_owned()));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == ".." || p == ".") {
            return Err(LocationError::Prefix(prefix.to_owned()));
        }
        Ok(Self::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }
}
