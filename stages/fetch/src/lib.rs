//! The fetch box, the first stage after the feed (its handler runs in embedded mode and in
//! `roller-fetch` over NATS): turns a notification into a local file to decode, after checking it.
//!
//! A notification without a `bucket` names a local file: it must be inside an allowed root
//! (no traversal, symlinks resolved). One with a `bucket` names an object: a bucket in
//! `source.mounts` is read from that directory (`<dir>/<key>`, which must resolve inside it);
//! otherwise the bucket must be in `source.buckets`, and the object is downloaded through an
//! [`ObjectSource`] (S3, from `roller-s3`; this crate stays free of any SDK). Either way the source must exist, not be larger
//! than `source.max_object_bytes`, and have the size the notification announced.

pub mod feed;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use roller_proto::Notification;

use roller_model::config::SourceConfig;
use roller_storage::retry::Retryable;

/// Why a source was refused: permanent for that notification, except
/// [`FetchError::Unavailable`] (see [`roller_storage::retry::Retryable`]).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A configured root (`source.local_roots`, or a directory in `source.mounts`) does not
    /// exist or cannot be resolved.
    #[error("source root {root} ({key}) cannot be used: {source}")]
    BadRoot {
        /// The config key naming it.
        key: String,
        /// The root.
        root: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A directory in `source.mounts` is a file.
    #[error("source.mounts.{bucket} = {dir} is not a directory")]
    NotADirectory {
        /// The bucket.
        bucket: String,
        /// The path given for it.
        dir: PathBuf,
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
    /// The object cannot be read, and retrying will not change that (for example access denied).
    #[error("source `{key}` cannot be read: {reason}")]
    Unreadable {
        /// The notification's key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The object store could not be reached or failed; retrying may succeed.
    #[error("source `{key}` is unavailable for now: {reason}")]
    Unavailable {
        /// The notification's key.
        key: String,
        /// Why, as the object store said.
        reason: String,
    },
    /// A local file or directory could not be read (a FUSE mount gone, an I/O error), or a
    /// download file could not be made; retrying may succeed.
    #[error("source `{key}` is unavailable for now: {path}: {source}")]
    Io {
        /// The notification's key.
        key: String,
        /// The path that failed.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
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

/// Why an [`ObjectSource`] call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ObjectError {
    /// Whether retrying cannot help (a refusal rather than an outage).
    pub permanent: bool,
    /// What went wrong, as the object store said it.
    pub reason: String,
}

/// Reads source objects out of buckets: the seam between the fetch stage and an object store.
pub trait ObjectSource: Send + Sync + std::fmt::Debug {
    /// The object's size in bytes, or `None` if it does not exist.
    fn size(&self, bucket: &str, key: &str) -> Result<Option<u64>, ObjectError>;

    /// Downloads the object into the file `to` (created or truncated) and returns its length;
    /// fails, leaving a partial file, once more than `max_bytes` arrive.
    fn download(
        &self,
        bucket: &str,
        key: &str,
        to: &Path,
        max_bytes: u64,
    ) -> Result<u64, ObjectError>;
}

/// A source as a local file to decode: the source itself for local sources, or a download
/// that is removed when this is dropped.
#[derive(Debug)]
pub struct SourceFile {
    place: Place,
    size: u64,
}

/// Where a [`SourceFile`]'s bytes are.
#[derive(Debug)]
enum Place {
    /// The source itself, on local disk.
    Local(PathBuf),
    /// A download, removed on drop.
    Downloaded(tempfile::TempPath),
}

impl SourceFile {
    /// Where to read it.
    pub fn path(&self) -> &Path {
        match &self.place {
            Place::Local(path) => path,
            Place::Downloaded(download) => download,
        }
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// Longest object key S3 accepts, in bytes.
const MAX_OBJECT_KEY_BYTES: usize = 1024;

/// Resolves, checks and (for objects in buckets) downloads sources.
#[derive(Debug, Clone)]
pub struct Fetcher {
    roots: Vec<PathBuf>,
    mounts: Vec<(String, PathBuf)>,
    max_bytes: u64,
    buckets: Vec<String>,
    objects: Option<Arc<dyn ObjectSource>>,
    download_dir: PathBuf,
}

impl Fetcher {
    /// A fetcher for the roots in `config` (each must exist).
    pub fn new(config: &SourceConfig) -> Result<Self, FetchError> {
        let roots = config
            .local_roots
            .iter()
            .map(|root| {
                root.canonicalize().map_err(|source| FetchError::BadRoot {
                    key: "source.local_roots".into(),
                    root: root.clone(),
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        let mounts = config
            .mounts
            .iter()
            .map(|(bucket, dir)| match dir.canonicalize() {
                Ok(dir) if dir.is_dir() => Ok((bucket.clone(), dir)),
                Ok(_) => Err(FetchError::NotADirectory {
                    bucket: bucket.clone(),
                    dir: dir.clone(),
                }),
                Err(source) => Err(FetchError::BadRoot {
                    key: format!("source.mounts.{bucket}"),
                    root: dir.clone(),
                    source,
                }),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            roots,
            mounts,
            max_bytes: config.max_object_bytes,
            buckets: config.buckets.clone(),
            objects: None,
            download_dir: std::env::temp_dir(),
        })
    }

    /// Reads objects in `source.buckets` through `objects`, downloading them into
    /// `download_dir` (which must exist).
    pub fn with_objects(mut self, objects: Arc<dyn ObjectSource>, download_dir: PathBuf) -> Self {
        self.objects = Some(objects);
        self.download_dir = download_dir;
        self
    }

    /// The notification's source as a local file, checked.
    pub fn fetch(&self, notification: &Notification) -> Result<SourceFile, FetchError> {
        let local = |(path, size)| SourceFile {
            place: Place::Local(path),
            size,
        };
        match &notification.bucket {
            Some(bucket) => match self.mounts.iter().find(|(b, _)| b == bucket) {
                Some((_, dir)) => self.mounted(dir, notification).map(local),
                None => self.download(bucket, &notification.key, notification.object_size),
            },
            None => self.local(notification).map(local),
        }
    }

    /// An object of a mounted bucket: `<dir>/<key>`, resolved (symlinks too) inside `dir`.
    fn mounted(
        &self,
        dir: &Path,
        notification: &Notification,
    ) -> Result<(PathBuf, u64), FetchError> {
        let key = &notification.key;
        let refuse = |reason: String| FetchError::NotAllowed {
            key: key.clone(),
            reason,
        };
        if key.is_empty() || key.len() > MAX_OBJECT_KEY_BYTES {
            return Err(refuse(format!(
                "an object key must be 1 to {MAX_OBJECT_KEY_BYTES} bytes long"
            )));
        }
        let relative = Path::new(key);
        if relative.is_absolute()
            || relative
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(refuse(format!(
                "an object key of a mounted bucket must be a plain relative path (no `..`, `.` or leading `/`), to stay inside {}",
                dir.display()
            )));
        }
        let what = format!(
            "source.mounts.{}",
            notification.bucket.as_deref().unwrap_or_default()
        );
        self.regular_file_inside(
            key,
            &dir.join(relative),
            (&what, &[dir.to_path_buf()]),
            notification,
        )
    }

    fn download(
        &self,
        bucket: &str,
        key: &str,
        announced: Option<u64>,
    ) -> Result<SourceFile, FetchError> {
        let refuse = |reason: String| FetchError::NotAllowed {
            key: key.to_owned(),
            reason,
        };
        if !self.buckets.iter().any(|b| b == bucket) {
            return Err(refuse(format!(
                "bucket `{bucket}` is not in source.buckets ({}); add it there to read from it",
                if self.buckets.is_empty() {
                    "empty".to_owned()
                } else {
                    self.buckets.join(", ")
                }
            )));
        }
        if key.is_empty() || key.len() > MAX_OBJECT_KEY_BYTES {
            return Err(refuse(format!(
                "an object key must be 1 to {MAX_OBJECT_KEY_BYTES} bytes long"
            )));
        }
        let Some(objects) = &self.objects else {
            return Err(refuse(
                "this process has no S3 client to read buckets with".into(),
            ));
        };
        let failed = |e: ObjectError| {
            if e.permanent {
                FetchError::Unreadable {
                    key: key.to_owned(),
                    reason: e.reason,
                }
            } else {
                FetchError::Unavailable {
                    key: key.to_owned(),
                    reason: e.reason,
                }
            }
        };
        let size =
            objects
                .size(bucket, key)
                .map_err(failed)?
                .ok_or_else(|| FetchError::Missing {
                    key: key.to_owned(),
                    path: PathBuf::from(format!("s3://{bucket}/{key}")),
                })?;
        self.check_size(key, size, announced)?;
        // Created exclusively under a random name: nobody else's file (or symlink) is written.
        let download = tempfile::Builder::new()
            .prefix("zarr-roller-source-")
            .suffix(".nc")
            .tempfile_in(&self.download_dir)
            .map_err(|source| FetchError::Io {
                key: key.to_owned(),
                path: self.download_dir.clone(),
                source,
            })?
            .into_temp_path();
        let file = SourceFile {
            place: Place::Downloaded(download),
            size,
        };
        let got = objects
            .download(bucket, key, file.path(), self.max_bytes)
            .map_err(failed)?;
        if got != size {
            // Replaced while we read it: try again, and the size checks see the new object.
            return Err(FetchError::Unavailable {
                key: key.to_owned(),
                reason: format!("{got} bytes arrived but the object had {size}; it changed while being downloaded"),
            });
        }
        Ok(file)
    }

    fn check_size(&self, key: &str, size: u64, announced: Option<u64>) -> Result<(), FetchError> {
        if size > self.max_bytes {
            return Err(FetchError::TooLarge {
                key: key.to_owned(),
                size,
                limit: self.max_bytes,
            });
        }
        if let Some(announced) = announced.filter(|&s| s != size) {
            return Err(FetchError::SizeMismatch {
                key: key.to_owned(),
                actual: size,
                announced,
            });
        }
        Ok(())
    }

    fn local(&self, notification: &Notification) -> Result<(PathBuf, u64), FetchError> {
        let key = &notification.key;
        let refuse = |reason: String| FetchError::NotAllowed {
            key: key.clone(),
            reason,
        };
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
        let found = candidates
            .iter()
            .find(|c| c.canonicalize().is_ok())
            .unwrap_or(&candidates[0]);
        self.regular_file_inside(
            key,
            found,
            ("source.local_roots", &self.roots),
            notification,
        )
    }

    /// `path` resolved (symlinks too), refused unless it is a regular file inside one of
    /// `dirs` (the setting named `setting`), of an acceptable size.
    fn regular_file_inside(
        &self,
        key: &str,
        path: &Path,
        (setting, dirs): (&str, &[PathBuf]),
        notification: &Notification,
    ) -> Result<(PathBuf, u64), FetchError> {
        let refuse = |reason: String| FetchError::NotAllowed {
            key: key.to_owned(),
            reason,
        };
        // Not found is the file's fault; anything else (a FUSE mount gone, EIO) may pass.
        let io = |e: std::io::Error, at: &Path| {
            if e.kind() == std::io::ErrorKind::NotFound {
                FetchError::Missing {
                    key: key.to_owned(),
                    path: at.to_path_buf(),
                }
            } else {
                FetchError::Io {
                    key: key.to_owned(),
                    path: at.to_path_buf(),
                    source: e,
                }
            }
        };
        let found = path.canonicalize().map_err(|e| io(e, path))?;
        if !dirs.iter().any(|r| found.starts_with(r)) {
            return Err(refuse(format!(
                "{} is outside {setting} ({})",
                found.display(),
                dirs.iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let meta = std::fs::metadata(&found).map_err(|e| io(e, &found))?;
        if !meta.is_file() {
            return Err(refuse(format!("{} is not a regular file", found.display())));
        }
        self.check_size(key, meta.len(), notification.object_size)?;
        Ok((found, meta.len()))
    }
}

impl Retryable for FetchError {
    fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Io { .. })
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
    fn mounted_buckets_read_keys_inside_their_directory_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mount = dir.path().join("mo");
        let run = mount.join("uk-deterministic-2km/20250614T0000Z");
        std::fs::create_dir_all(&run).expect("mkdir");
        std::fs::write(run.join("f.nc"), b"12345").expect("write");
        std::fs::write(dir.path().join("secret.nc"), b"x").expect("write");
        std::os::unix::fs::symlink(dir.path().join("secret.nc"), mount.join("link.nc"))
            .expect("symlink");
        let fetcher = Fetcher::new(&SourceConfig {
            mounts: [("met-office-atmospheric-model-data".to_owned(), mount)].into(),
            ..SourceConfig::default()
        })
        .expect("fetcher");
        let object = |key: &str, size: Option<u64>| {
            let mut n = note(key, size);
            n.bucket = Some("met-office-atmospheric-model-data".into());
            n
        };
        let got = fetcher
            .fetch(&object("uk-deterministic-2km/20250614T0000Z/f.nc", Some(5)))
            .expect("inside the mount");
        assert_eq!(got.size(), 5);
        assert!(matches!(
            fetcher.fetch(&object("uk-deterministic-2km/20250614T0000Z/f.nc", Some(6))),
            Err(FetchError::SizeMismatch { .. })
        ));
        for escape in ["../secret.nc", "/etc/passwd", "a/../../secret.nc", "./x.nc"] {
            let e = fetcher.fetch(&object(escape, None)).expect_err(escape);
            assert!(
                e.to_string().contains("plain relative path"),
                "{escape}: {e}"
            );
        }
        let e = fetcher
            .fetch(&object("link.nc", None))
            .expect_err("symlink out");
        assert!(
            e.to_string()
                .contains("outside source.mounts.met-office-atmospheric-model-data"),
            "{e}"
        );
        assert!(matches!(
            fetcher.fetch(&object("missing.nc", None)),
            Err(FetchError::Missing { .. })
        ));
        // Other buckets still need source.buckets.
        let mut other = object("uk-deterministic-2km/20250614T0000Z/f.nc", None);
        other.bucket = Some("elsewhere".into());
        assert!(matches!(
            fetcher.fetch(&other),
            Err(FetchError::NotAllowed { .. })
        ));
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
            ..SourceConfig::default()
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
            ..SourceConfig::default()
        })
        .expect("fetcher");
        assert!(matches!(
            small.fetch(&note(&abs, None)),
            Err(FetchError::TooLarge { .. })
        ));
    }

    #[test]
    fn objects_must_be_in_an_allowed_bucket_and_need_an_object_source() {
        let fetcher = Fetcher::new(&SourceConfig {
            buckets: vec!["allowed".into()],
            ..SourceConfig::default()
        })
        .expect("fetcher");
        let in_bucket = |bucket: &str, key: &str| {
            let mut n = note(key, None);
            n.bucket = Some(bucket.into());
            fetcher.fetch(&n)
        };
        let refused = |result: Result<SourceFile, FetchError>, why: &str| match result {
            Err(e @ FetchError::NotAllowed { .. }) => {
                assert!(e.to_string().contains(why), "{e}");
                assert!(!roller_storage::retry::Retryable::is_transient(&e));
            }
            other => panic!("expected a refusal ({why}), got {other:?}"),
        };
        refused(
            in_bucket("other", "a.nc"),
            "not in source.buckets (allowed)",
        );
        refused(in_bucket("allowed", &"k".repeat(1025)), "1 to 1024 bytes");
        refused(in_bucket("allowed", "a.nc"), "no S3 client");
    }
}
