//! A store in a local directory. Puts go to a temporary file in the same directory, are synced,
//! then renamed into place, so a reader never sees a partial object and a crash never leaves one.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::{Key, Storage, StorageError};

/// Prefix of in-flight temporary files; listing skips them.
const TMP_PREFIX: &str = ".tmp-";

/// A directory used as an object store. Keys map to relative paths below the root.
#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
    fsync: bool,
    prune: bool,
    counter: AtomicU64,
}

impl LocalStore {
    /// Opens (creating if needed) a store rooted at `root`. With `fsync`, every put is synced
    /// to disk before it is renamed into place (durable on return).
    pub fn new(root: impl Into<PathBuf>, fsync: bool) -> Result<Self, StorageError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|source| StorageError::Io {
            key: root.display().to_string(),
            source,
        })?;
        Ok(Self {
            root,
            fsync,
            prune: true,
            counter: AtomicU64::new(0),
        })
    }

    /// Keeps directories a delete empties, instead of removing them. For a store whose few
    /// directories are refilled at once (scratch), pruning would only remove and recreate
    /// them over and over.
    #[must_use]
    pub fn keep_empty_dirs(mut self) -> Self {
        self.prune = false;
        self
    }

    /// The directory this store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &Key) -> PathBuf {
        self.root.join(key.as_str())
    }

    fn io(key: &Key) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
        move |source| StorageError::Io {
            key: key.to_string(),
            source,
        }
    }

    /// A fresh temporary path in `dir`.
    fn tmp_path(&self, dir: &Path) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        dir.join(format!("{TMP_PREFIX}{}-{n}", std::process::id()))
    }

    /// Writes `parts` one after the other to a fresh temporary file in `dir` (synced with
    /// `fsync`) and returns its path.
    fn write_tmp(&self, dir: &Path, parts: &[&[u8]]) -> std::io::Result<PathBuf> {
        let tmp = self.tmp_path(dir);
        let written = fs::File::create(&tmp).and_then(|mut file| {
            for part in parts {
                file.write_all(part)?;
            }
            if self.fsync {
                file.sync_data()?;
            }
            Ok(())
        });
        match written {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Puts a temporary file (made by `fill`) into place at `key`: creates the directory,
    /// renames, and syncs the directory with `fsync`. A concurrent delete may prune the
    /// directory between creating it and filling it: that is tried again once.
    fn put_with(
        &self,
        key: &Key,
        fill: impl Fn(&Path) -> std::io::Result<PathBuf>,
    ) -> Result<(), StorageError> {
        let path = self.path(key);
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        let mut attempt = 0;
        loop {
            fs::create_dir_all(&dir).map_err(Self::io(key))?;
            match fill(&dir) {
                Ok(tmp) => {
                    fs::rename(&tmp, &path).map_err(|e| {
                        let _ = fs::remove_file(&tmp);
                        Self::io(key)(e)
                    })?;
                    if self.fsync {
                        // The rename itself is durable only once the directory is synced.
                        fs::File::open(&dir)
                            .and_then(|d| d.sync_all())
                            .map_err(Self::io(key))?;
                    }
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::NotFound && attempt == 0 => attempt += 1,
                Err(e) => return Err(Self::io(key)(e)),
            }
        }
    }

    /// Links `source` to a fresh temporary file in `dir`, or copies it where a link cannot
    /// be made (another file system, no permission); synced with `fsync`.
    fn link_or_copy_tmp(&self, dir: &Path, source: &Path) -> std::io::Result<PathBuf> {
        let tmp = self.tmp_path(dir);
        let placed = fs::hard_link(source, &tmp).or_else(|_| fs::copy(source, &tmp).map(|_| ()));
        let synced = placed.and_then(|()| {
            if self.fsync {
                fs::File::open(&tmp)?.sync_data()?;
            }
            Ok(())
        });
        match synced {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Removes now-empty directories from `dir` up to (not including) the root, so rolled-off
    /// indices leave no empty directories behind.
    fn prune_empty_dirs(&self, mut dir: &Path) {
        while dir != self.root && dir.starts_with(&self.root) {
            if fs::remove_dir(dir).is_err() {
                break;
            }
            match dir.parent() {
                Some(parent) => dir = parent,
                None => break,
            }
        }
    }
}

impl Storage for LocalStore {
    fn get(&self, key: &Key) -> Result<Option<Bytes>, StorageError> {
        match fs::read(self.path(key)) {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(Self::io(key)(e)),
        }
    }

    fn size(&self, key: &Key) -> Result<Option<u64>, StorageError> {
        match fs::metadata(self.path(key)) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(Self::io(key)(e)),
        }
    }

    fn put(&self, key: &Key, value: Bytes) -> Result<(), StorageError> {
        self.put_parts(key, &[&value])
    }

    fn put_parts(&self, key: &Key, parts: &[&[u8]]) -> Result<(), StorageError> {
        self.put_with(key, |dir| self.write_tmp(dir, parts))
    }

    fn delete(&self, key: &Key) -> Result<(), StorageError> {
        let path = self.path(key);
        match fs::remove_file(&path) {
            Ok(()) => {
                if let Some(dir) = path.parent().filter(|_| self.prune) {
                    self.prune_empty_dirs(dir);
                }
                Ok(())
            }
            Err(e) if is_missing(&e) => Ok(()),
            Err(e) => Err(Self::io(key)(e)),
        }
    }

    /// Links the file into the store where it can (same file system), else copies it.
    fn put_file(&self, key: &Key, source: &Path) -> Result<(), StorageError> {
        self.put_with(key, |dir| self.link_or_copy_tmp(dir, source))
    }

    fn local_path(&self, key: &Key) -> Option<PathBuf> {
        Some(self.path(key))
    }

    fn list_prefix(&self, prefix: &str) -> Result<Vec<Key>, StorageError> {
        let mut keys = Vec::new();
        let mut pending = vec![self.root.clone()];
        while let Some(dir) = pending.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if is_missing(&e) => continue,
                Err(source) => {
                    return Err(StorageError::Io {
                        key: dir.display().to_string(),
                        source,
                    })
                }
            };
            for entry in entries {
                let entry = entry.map_err(|source| StorageError::Io {
                    key: dir.display().to_string(),
                    source,
                })?;
                let path = entry.path();
                if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                    continue;
                }
                if path.is_dir() {
                    pending.push(path);
                } else if let Ok(rel) = path.strip_prefix(&self.root) {
                    let rel = rel
                        .to_string_lossy()
                        .replace(std::path::MAIN_SEPARATOR, "/");
                    if rel.starts_with(prefix) {
                        keys.push(Key::new(rel)?);
                    }
                }
            }
        }
        keys.sort();
        Ok(keys)
    }
}

/// A missing file or a missing parent directory (which shows up as `NotADirectory` when a
/// path segment is a file).
fn is_missing(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Key::new(s).expect("valid key")
    }

    #[test]
    fn put_get_delete_round_trip_and_prune() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(dir.path(), true).expect("store");
        let k = key("chunks/a/c/1/0");
        assert_eq!(store.get(&k).expect("get"), None);
        store.put(&k, Bytes::from_static(b"hello")).expect("put");
        assert_eq!(store.get(&k).expect("get").as_deref(), Some(&b"hello"[..]));
        assert_eq!(store.size(&k).expect("size"), Some(5));
        assert_eq!(
            store.get_range(&k, 1, Some(3)).expect("range").as_deref(),
            Some(&b"ell"[..])
        );
        assert_eq!(store.list_prefix("chunks/").expect("list"), vec![k.clone()]);
        store.delete(&k).expect("delete");
        store.delete(&k).expect("delete twice");
        assert!(
            !dir.path().join("chunks").exists(),
            "empty directories are pruned"
        );
    }

    #[test]
    fn put_parts_writes_the_concatenation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::new(dir.path(), true).expect("store");
        let k = key("slabs/d/1");
        store
            .put_parts(&k, &[b"ab", b"", b"cde"])
            .expect("put parts");
        assert_eq!(store.get(&k).expect("get").as_deref(), Some(&b"abcde"[..]));
    }

    #[test]
    fn put_file_stores_the_file_and_removing_it_keeps_the_source() {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = dir.path().join("source.nc");
        fs::write(&source, b"netcdf bytes").expect("source");
        let store = LocalStore::new(dir.path().join("scratch"), true).expect("store");
        let k = key("fetched/d/1");
        store.put_file(&k, &source).expect("put file");
        assert_eq!(
            store.get(&k).expect("get").as_deref(),
            Some(&b"netcdf bytes"[..])
        );
        store.delete(&k).expect("delete");
        assert_eq!(fs::read(&source).expect("source kept"), b"netcdf bytes");
        let missing = store.put_file(&k, &dir.path().join("absent.nc"));
        assert!(missing.is_err(), "a missing source is an error");
        assert_eq!(store.list_prefix("").expect("list"), Vec::<Key>::new());
    }
}
