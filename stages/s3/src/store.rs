//! [`S3Store`]: the storage abstraction on an S3 bucket and key prefix. A put is one
//! `PutObject` (atomic: readers see the old object or the new one), so the commit's single
//! metadata write stays atomic on S3 too.

use std::path::{Path, PathBuf};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Tag, Tagging};
use bytes::Bytes;
use roller_storage::{Key, Storage, StorageError};

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::client::{Failure, HasStatus, S3Client};

/// A bucket and key prefix used as an object store.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: S3Client,
    bucket: String,
    prefix: String,
    tag_on_put: Option<TagOnPut>,
}

/// Objects whose key starts with `under` are put with the tag set `tagging` (`k=v`, URL-encoded).
#[derive(Debug, Clone)]
struct TagOnPut {
    under: String,
    tagging: String,
}

impl S3Store {
    /// A store on `bucket` under `prefix` (no leading or trailing `/`; empty for the root).
    pub fn new(client: S3Client, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            prefix: prefix.into().trim_matches('/').to_owned(),
            tag_on_put: None,
        }
    }

    /// Puts every object whose key starts with `under` with the tag `tag_key=tag_value` in the
    /// same request (`x-amz-tagging`), for expiry by age (`expiry.policy = "at_write"`).
    pub fn tagging_puts_under(mut self, under: &str, tag_key: &str, tag_value: &str) -> Self {
        self.tag_on_put = Some(TagOnPut {
            under: under.to_owned(),
            tagging: format!("{}={}", url_encode(tag_key), url_encode(tag_value)),
        });
        self
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The client.
    pub fn client(&self) -> &S3Client {
        &self.client
    }

    /// The object key of `key`.
    pub fn object_key(&self, key: &Key) -> String {
        if self.prefix.is_empty() {
            key.as_str().to_owned()
        } else {
            format!("{}/{}", self.prefix, key.as_str())
        }
    }

    fn failed(&self, operation: &str, key: &Key, reason: String) -> StorageError {
        self.failed_at(operation, &self.object_key(key), reason)
    }

    fn failed_at(&self, operation: &str, object: &str, reason: String) -> StorageError {
        StorageError::Backend {
            operation: format!("S3 {operation}"),
            key: format!("s3://{}/{object}", self.bucket),
            reason,
        }
    }

    /// Sets the object tag `tag_key=tag_value` on `key` (replacing its tag set). A missing
    /// object is not an error (it may have expired already).
    pub fn tag(&self, key: &Key, tag_key: &str, tag_value: &str) -> Result<(), StorageError> {
        let tag = Tag::builder()
            .key(tag_key)
            .value(tag_value)
            .build()
            .map_err(|e| self.failed("PutObjectTagging", key, e.to_string()))?;
        let tagging = Tagging::builder()
            .tag_set(tag)
            .build()
            .map_err(|e| self.failed("PutObjectTagging", key, e.to_string()))?;
        let request = self
            .client
            .sdk()
            .put_object_tagging()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .tagging(tagging)
            .send();
        self.call("PutObjectTagging", key, request).map(|_| ())
    }

    /// The object's tags, as key-value pairs (`None` if it does not exist).
    pub fn tags(&self, key: &Key) -> Result<Option<Vec<(String, String)>>, StorageError> {
        let request = self
            .client
            .sdk()
            .get_object_tagging()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .send();
        Ok(self.call("GetObjectTagging", key, request)?.map(|out| {
            out.tag_set()
                .iter()
                .map(|t| (t.key().to_owned(), t.value().to_owned()))
                .collect()
        }))
    }

    /// Runs one SDK request; a not-found answer is `None`, any other failure an error.
    fn call<T, E, R>(
        &self,
        operation: &str,
        key: &Key,
        request: impl std::future::Future<Output = Result<T, SdkError<E, R>>> + Send + 'static,
    ) -> Result<Option<T>, StorageError>
    where
        T: Send + 'static,
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + HasStatus,
    {
        let answer = async move { request.await.map_err(|e| Failure::of(&e)) };
        match self.run(operation, key, answer)? {
            Ok(out) => Ok(Some(out)),
            Err(failure) if failure.is_not_found() => Ok(None),
            Err(failure) => Err(self.failed(operation, key, failure.message)),
        }
    }

    fn run<T: Send + 'static>(
        &self,
        operation: &str,
        key: &Key,
        request: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T, StorageError> {
        self.client
            .run(request)
            .map_err(|e| self.failed(operation, key, e.to_string()))
    }

    fn get_object(&self, key: &Key, range: Option<String>) -> Result<Option<Bytes>, StorageError> {
        let request = self
            .client
            .sdk()
            .get_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .set_range(range)
            .send();
        let body = async move {
            match request.await {
                Ok(out) => out
                    .body
                    .collect()
                    .await
                    .map(|data| Ok(Some(data.into_bytes())))
                    .map_err(|e| e.to_string()),
                Err(e) => Ok(Err(Failure::of(&e))),
            }
        };
        match self.run("GetObject", key, body)? {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(failure)) if failure.is_not_found() => Ok(None),
            Ok(Err(failure)) if failure.status == Some(416) => Ok(Some(Bytes::new())),
            Ok(Err(failure)) => Err(self.failed("GetObject", key, failure.message)),
            Err(reason) => Err(self.failed("GetObject", key, reason)),
        }
    }

    fn put_body(&self, key: &Key, body: impl FnOnce() -> BodySource) -> Result<(), StorageError> {
        let tagging = self
            .tag_on_put
            .as_ref()
            .filter(|t| key.as_str().starts_with(&t.under))
            .map(|t| t.tagging.clone());
        let request = self
            .client
            .sdk()
            .put_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .set_tagging(tagging);
        let source = body();
        let sent = async move {
            let stream = match source {
                BodySource::Bytes(bytes) => ByteStream::from(bytes),
                BodySource::File(path) => ByteStream::from_path(&path)
                    .await
                    .map_err(|e| format!("reading {}: {e}", path.display()))?,
            };
            request
                .body(stream)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| Failure::of(&e).message)
        };
        self.run("PutObject", key, sent)?
            .map_err(|reason| self.failed("PutObject", key, reason))
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (the tagging header is a
/// URL query string).
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// What a put sends.
enum BodySource {
    Bytes(Bytes),
    File(PathBuf),
}

impl Storage for S3Store {
    fn get(&self, key: &Key) -> Result<Option<Bytes>, StorageError> {
        self.get_object(key, None)
    }

    fn get_range(
        &self,
        key: &Key,
        start: u64,
        len: Option<u64>,
    ) -> Result<Option<Bytes>, StorageError> {
        let range = match len {
            Some(0) => return Ok(self.size(key)?.map(|_| Bytes::new())),
            Some(len) => format!("bytes={start}-{}", start + len - 1),
            None => format!("bytes={start}-"),
        };
        self.get_object(key, Some(range))
    }

    fn size(&self, key: &Key) -> Result<Option<u64>, StorageError> {
        let request = self
            .client
            .sdk()
            .head_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .send();
        Ok(self.call("HeadObject", key, request)?.map(|out| {
            out.content_length()
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(0)
        }))
    }

    fn put(&self, key: &Key, value: Bytes) -> Result<(), StorageError> {
        self.put_body(key, || BodySource::Bytes(value))
    }

    fn put_file(&self, key: &Key, path: &Path) -> Result<(), StorageError> {
        let path = path.to_path_buf();
        self.put_body(key, || BodySource::File(path))
    }

    fn delete(&self, key: &Key) -> Result<(), StorageError> {
        let request = self
            .client
            .sdk()
            .delete_object()
            .bucket(&self.bucket)
            .key(self.object_key(key))
            .send();
        self.call("DeleteObject", key, request).map(|_| ())
    }

    fn list_prefix(&self, prefix: &str) -> Result<Vec<Key>, StorageError> {
        let full = if self.prefix.is_empty() {
            prefix.to_owned()
        } else {
            format!("{}/{prefix}", self.prefix)
        };
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let pages = self
            .client
            .sdk()
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&full)
            .into_paginator()
            .send();
        let listing = async move {
            let mut names = Vec::new();
            let mut pages = pages;
            loop {
                match pages.try_next().await {
                    Ok(Some(page)) => names.extend(
                        page.contents()
                            .iter()
                            .filter_map(|o| o.key().map(str::to_owned)),
                    ),
                    Ok(None) => return Ok(names),
                    Err(e) => return Err(Failure::of(&e).message),
                }
            }
        };
        let names = self
            .client
            .run(listing)
            .map_err(|e| self.failed_at("ListObjectsV2", &full, e.to_string()))?
            .map_err(|reason| self.failed_at("ListObjectsV2", &full, reason))?;
        let mut keys: Vec<Key> = names
            .iter()
            .filter_map(|n| n.strip_prefix(&strip))
            .filter_map(|n| Key::new(n).ok())
            .collect();
        keys.sort();
        Ok(keys)
    }
}
