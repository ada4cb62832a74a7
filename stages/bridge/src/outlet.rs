//! The feed as the bridge sees it: store a message once (by its deduplication id), or store a
//! poison message in the dead-letter stream.

use std::future::Future;

use crate::queue::QueueMessage;

/// What the feed did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Stored.
    Stored,
    /// Already stored under the same deduplication id: dropped.
    Duplicate,
}

/// The feed did not store a message (it stays in the queue and comes back).
#[derive(Debug, thiserror::Error)]
#[error("the feed did not store the message: {detail}")]
pub struct OutletError {
    /// The explanation.
    pub detail: String,
    /// The client's error.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Where the bridge puts messages.
pub trait Outlet: Send + Sync + 'static {
    /// Publishes `body` on the feed with the deduplication id `id`, and waits until it is
    /// stored.
    fn publish(
        &self,
        body: &str,
        id: &str,
    ) -> impl Future<Output = Result<Published, OutletError>> + Send;

    /// Stores a message no form parses in the dead-letter stream, with `reason` and the
    /// message's queue attributes, and waits until it is stored.
    fn dead_letter(
        &self,
        message: &QueueMessage,
        queue: &str,
        reason: &str,
    ) -> impl Future<Output = Result<Published, OutletError>> + Send;
}
