//! Dead-letter counts for the status page. The server does not know where dead letters are
//! kept: whoever starts it may hand it a [`DeadLetterCounts`] (the stage binaries give it one
//! that reads the JetStream dead-letter stream, `roller_nats::dead_letters`); without one the
//! page says the counts are not configured.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// A dataset's dead letters, as the page shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadCount {
    /// The server was not given a source of dead-letter counts.
    NotConfigured,
    /// A source is configured but the count could not be read (the reason).
    Unavailable(String),
    /// Messages in the dead letters for the dataset.
    Count(u64),
}

/// Why the counts cannot be read now; the text is shown on the page, so it must not carry
/// credentials or internal error detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// The counts of every dataset that has dead letters, by dataset name.
pub type Counts = HashMap<String, u64>;

/// Where the status page reads dead-letter counts from.
pub trait DeadLetterCounts: Send + Sync + fmt::Debug {
    /// Every dataset's count (datasets with none may be left out).
    fn counts(&self) -> Pin<Box<dyn Future<Output = Result<Counts, Unavailable>> + Send + '_>>;
}
