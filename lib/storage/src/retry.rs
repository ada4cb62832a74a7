//! One answer, in every mode, to "is this failure worth retrying?": every stage's error says so
//! through [`Retryable`]. Embedded mode retries a transient failure a few times in place
//! ([`retry`]); the NATS stages hand the message back for a later delivery, and both send a
//! permanent failure (the input itself is wrong) to the dead letters at once.

use std::time::Duration;

use crate::StorageError;

/// How many times embedded mode retries a transient failure before dead-lettering the message.
pub const RETRIES: u32 = 3;

/// An error that knows whether retrying can help.
pub trait Retryable: std::error::Error {
    /// True for an outage (storage or a source unavailable for now), false when the input or the
    /// configuration is at fault and retrying cannot help.
    fn is_transient(&self) -> bool;
}

impl Retryable for StorageError {
    fn is_transient(&self) -> bool {
        !matches!(self, Self::Key(_))
    }
}

/// Runs `op`, retrying a transient failure up to [`RETRIES`] times with a short, doubling
/// backoff (200 ms, 400 ms, 800 ms); returns the last result.
pub fn retry<T, E: Retryable>(mut op: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let mut attempt = 0;
    loop {
        match op() {
            Err(e) if e.is_transient() && attempt < RETRIES => {
                attempt += 1;
                tracing::warn!(attempt, error = %e, "transient failure; retrying");
                std::thread::sleep(Duration::from_millis(100 << attempt));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Key;

    fn outage() -> StorageError {
        StorageError::Io {
            key: "k".into(),
            source: std::io::Error::other("disk away"),
        }
    }

    #[test]
    fn outages_are_retried_and_refusals_are_not() {
        let mut calls = 0;
        let result: Result<(), StorageError> = retry(|| {
            calls += 1;
            if calls < 3 {
                Err(outage())
            } else {
                Ok(())
            }
        });
        assert!(result.is_ok());
        assert_eq!(calls, 3, "two outages, then success");

        let mut calls = 0;
        let result: Result<(), StorageError> = retry(|| {
            calls += 1;
            let refused = Key::new("../outside").expect_err("a key that climbs out");
            Err(StorageError::Key(refused))
        });
        assert!(result.is_err());
        assert_eq!(calls, 1, "a bad key is not worth retrying");
    }
}
