//! The fetch stage for local sources: turns a notification's `key` into a path to read, after
//! checking it is inside an allowed root (no traversal, symlinks resolved), exists, is not too
//! large, and has the announced size.

use std::path::{Path, PathBuf};

use roller_proto::Notification;

use crate::config::SourceConfig;

/// Why a source was refused. All of these are permanent for that notification.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A configured root does not exist.
    #[error("source root {root} cannot be used: {reason}")]
    BadRoot {
        /// The root.
        root: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key names something outside every allowed root, or a bucket this mode cannot read.
    #[error("source `{key}` is not allowed: {reason}")]
    NotAllowed {
        /// The notification's key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The object does not exist.
    #[error("source `{key}` does not exist ({path})")]
    Missing {
        /// The notification's key.
        key: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The object is larger than `source.max_object_bytes`.
    #[error("source `{key}` is {size} bytes, more than source.max_object_bytes = {limit}")]
    TooLarge {
        /// The notification's key.
        key: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The object's size is not what the notification announced.
    #[error("source `{key}` is {actual} bytes but the notification announced {announced}; it may still be uploading or be corrupt")]
    SizeMismatch {
        /// The notification's key.
        key: String,
        /// Size found.
        actual: u64,
        /// Size announced.
        announced: u64,
    },
}

/// Resolves and checks local source files.
#[derive(Debug, Clone)]
pub struct Fetcher {
    roots: Vec<PathBuf>,
    max_bytes: u64,
}

impl Fetcher {
    /// A fetcher for the roots in `config` (each must exist).
    pub fn new(config: &SourceConfig) -> Result<Self, FetchError> {
        let roots = config
            .local_roots
            .iter()
            .map(|root| {
                root.canonicalize().map_err(|e| FetchError::BadRoot {
                    root: root.clone(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            roots,
            max_bytes: config.max_object_bytes,
        })
    }

    /// The local path of the notification's object, checked.
    pub fn fetch(&self, notification: &Notification) -> Result<PathBuf, FetchError> {
        let key = &notification.key;
        let refuse = |reason: String| FetchError::NotAllowed {
            key: key.clone(),
            reason,
        };
        if let Some(bucket) = &notification.bucket {
            return Err(refuse(format!(
                "it is in bucket `{bucket}`, and this runner reads local files only"
            )));
        }
        if self.roots.is_empty() {
            return Err(refuse("no source.local_roots are configured".into()));
        }
        let raw = key.strip_prefix("file://").unwrap_or(key);
        let path = Path::new(raw);
        let candidates: Vec<PathBuf> = if path.is_absolute() {
            vec![path.to_path_buf()]
        } else {
            self.roots.iter().map(|r| r.join(path)).collect()
        };
        let Some(found) = candidates.iter().find_map(|c| c.canonicalize().ok()) else {
            return Err(FetchError::Missing {
                key: key.clone(),
                path: candidates[0].clone(),
            });
        };
        if !self.roots.iter().any(|r| found.starts_with(r)) {
            return Err(refuse(format!(
                "{} is outside source.local_roots ({})",
                found.display(),
                self.roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let meta = std::fs::metadata(&found).map_err(|_| FetchError::Missing {
            key: key.clone(),
            path: found.clone(),
        })?;
        if !meta.is_file() {
            return Err(refuse(format!("{} is not a regular file", found.display())));
        }
        if meta.len() > self.max_bytes {
            return Err(FetchError::TooLarge {
                key: key.clone(),
                size: meta.len(),
                limit: self.max_bytes,
            });
        }
        if let Some(announced) = notification.object_size.filter(|&s| s != meta.len()) {
            return Err(FetchError::SizeMismatch {
                key: key.clone(),
                actual: meta.len(),
                announced,
            });
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(key: &str, size: Option<u64>) -> Notification {
        let size = size
            .map(|s| format!(r#","object_size":"{s}""#))
            .unwrap_or_default();
        Notification::from_json(&format!(
            r#"{{"model":"m","name":"n","key":"{key}","forecast_reference_time":"2024-01-01T00:00:00Z"{size}}}"#
        ))
        .expect("valid")
    }

    #[test]
    fn resolves_inside_roots_and_refuses_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("in");
        std::fs::create_dir(&root).expect("mkdir");
        std::fs::write(root.join("a.nc"), b"12345").expect("write");
        std::fs::write(dir.path().join("secret"), b"x").expect("write");
        let fetcher = Fetcher::new(&SourceConfig {
            local_roots: vec![root.clone()],
            max_object_bytes: 10,
            buckets: Vec::new(),
        })
        .expect("fetcher");
        let abs = root.join("a.nc").display().to_string();
        assert!(fetcher.fetch(&note(&abs, Some(5))).is_ok());
        assert!(fetcher.fetch(&note("a.nc", None)).is_ok());
        assert!(fetcher.fetch(&note(&format!("file://{abs}"), None)).is_ok());
        assert!(matches!(
            fetcher.fetch(&note(&abs, Some(6))),
            Err(FetchError::SizeMismatch { .. })
        ));
        assert!(matches!(
            fetcher.fetch(&note("../secret", None)),
            Err(FetchError::NotAllowed { .. })
        ));
        assert!(matches!(
            fetcher.fetch(&note("nope.nc", None)),
            Err(FetchError::Missing { .. })
        ));
        let small = Fetcher::new(&SourceConfig {
            local_roots: vec![root],
            max_object_bytes: 4,
            buckets: Vec::new(),
        })
        .expect("fetcher");
        assert!(matches!(
            small.fetch(&note(&abs, None)),
            Err(FetchError::TooLarge { .. })
        ));
    }
}
