//! [`S3Objects`]: source objects in S3 buckets for the fetch stage (the
//! [`ObjectSource`] seam of `roller-fetch`). Sizes come from `HeadObject`; downloads stream the
//! body to a file and stop once the size cap is passed, so an object that grew after the size
//! check cannot fill the disk.

use std::path::Path;

use roller_fetch::{ObjectError, ObjectSource};
use tokio::io::AsyncWriteExt;

use crate::client::{Failure, S3Client};

/// Reads source objects from any bucket the client can reach (the fetch stage checks the
/// allow-list before asking).
#[derive(Debug, Clone)]
pub struct S3Objects {
    client: S3Client,
}

impl S3Objects {
    /// Sources read with `client`.
    pub fn new(client: S3Client) -> Self {
        Self { client }
    }
}

/// A service answer is permanent when asking again cannot change it: a redirect (the bucket
/// is in another region than `s3.region`) or a client error (403 access denied, 400 bad
/// request...). Throttling (429), timeouts (408), server errors and network failures are worth
/// a retry once the SDK's own retries are spent.
fn classify(failure: Failure) -> ObjectError {
    let permanent = failure
        .status
        .is_some_and(|s| (300..500).contains(&s) && s != 408 && s != 429);
    ObjectError {
        permanent,
        reason: failure.message,
    }
}

fn unavailable(reason: impl std::fmt::Display) -> ObjectError {
    ObjectError {
        permanent: false,
        reason: reason.to_string(),
    }
}

impl ObjectSource for S3Objects {
    fn size(&self, bucket: &str, key: &str) -> Result<Option<u64>, ObjectError> {
        let request = self
            .client
            .sdk()
            .head_object()
            .bucket(bucket)
            .key(key)
            .send();
        let answer = self
            .client
            .run(async move { request.await.map_err(|e| Failure::of(&e)) })
            .map_err(unavailable)?;
        match answer {
            Ok(head) => head
                .content_length()
                .and_then(|n| u64::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| ObjectError {
                    permanent: false,
                    reason: "HeadObject answered without a Content-Length".into(),
                }),
            Err(failure) if failure.is_not_found() => Ok(None),
            Err(failure) => Err(classify(failure)),
        }
    }

    fn download(
        &self,
        bucket: &str,
        key: &str,
        to: &Path,
        max_bytes: u64,
    ) -> Result<u64, ObjectError> {
        let request = self
            .client
            .sdk()
            .get_object()
            .bucket(bucket)
            .key(key)
            .send();
        let to = to.to_path_buf();
        let copied = async move {
            let mut out = request.await.map_err(|e| classify(Failure::of(&e)))?;
            let mut file = tokio::fs::File::create(&to)
                .await
                .map_err(|e| unavailable(format!("creating {}: {e}", to.display())))?;
            let mut written = 0u64;
            while let Some(piece) = out.body.next().await {
                let piece = piece.map_err(|e| unavailable(format!("reading the body: {e}")))?;
                written += piece.len() as u64;
                if written > max_bytes {
                    return Err(ObjectError {
                        permanent: true,
                        reason: format!(
                            "more than source.max_object_bytes = {max_bytes} bytes arrived"
                        ),
                    });
                }
                file.write_all(&piece)
                    .await
                    .map_err(|e| unavailable(format!("writing {}: {e}", to.display())))?;
            }
            file.flush()
                .await
                .map_err(|e| unavailable(format!("writing {}: {e}", to.display())))?;
            Ok(written)
        };
        self.client.run(copied).map_err(unavailable)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(status: Option<u16>) -> Failure {
        Failure {
            status,
            code: None,
            message: String::new(),
        }
    }

    #[test]
    fn refusals_are_permanent_and_outages_are_not() {
        for status in [301, 400, 403, 404] {
            assert!(classify(failure(Some(status))).permanent, "{status}");
        }
        for status in [Some(408), Some(429), Some(500), Some(503), None] {
            assert!(!classify(failure(status)).permanent, "{status:?}");
        }
    }
}
