//! The publisher's queue as the bridge sees it: receive a batch, delete what the feed stored,
//! keep a message hidden while its publish is slow.

use std::future::Future;
use std::time::Duration;

/// One message taken from the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    /// The queue's id of the message (SQS `MessageId`).
    pub id: String,
    /// The body, as text (a notice in any form, or anything else a sender put there).
    pub body: String,
    /// The handle that deletes or hides this delivery of the message.
    pub receipt: String,
    /// How many times the queue has handed the message out (SQS `ApproximateReceiveCount`).
    pub receive_count: Option<u32>,
    /// When the message was sent, in milliseconds since the epoch (SQS `SentTimestamp`).
    pub sent_at_ms: Option<u64>,
}

/// What kind of failure a queue request met: the poller backs off from each, and only a
/// refusal is worth a person's attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueErrorKind {
    /// The service asked us to slow down.
    Throttled,
    /// The service failed (5xx) or could not be reached; it may work later.
    Unavailable,
    /// The request was refused (no such queue, no permission, bad request).
    Refused,
}

/// A failed queue request.
#[derive(Debug, thiserror::Error)]
#[error("{operation} on {queue} failed ({kind:?}): {detail}")]
pub struct QueueError {
    /// What kind of failure.
    pub kind: QueueErrorKind,
    /// Which request (`ReceiveMessage`, `DeleteMessageBatch`, ...).
    pub operation: &'static str,
    /// The queue's URL.
    pub queue: String,
    /// The service's or client's explanation.
    pub detail: String,
    /// The client's error.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// A queue of the publisher's notices.
pub trait Queue: Send + Sync + 'static {
    /// The queue's URL (for logs and dead-letter headers).
    fn url(&self) -> &str;

    /// Waits up to `wait` for at most `max` messages, each hidden from other receivers for
    /// `visibility`.
    fn receive(
        &self,
        max: u8,
        wait: Duration,
        visibility: Duration,
    ) -> impl Future<Output = Result<Vec<QueueMessage>, QueueError>> + Send;

    /// Deletes the deliveries with these receipts; returns how many the queue deleted (a
    /// receipt that failed is logged: its message comes back and is deduplicated on the feed).
    fn delete(
        &self,
        receipts: Vec<String>,
    ) -> impl Future<Output = Result<usize, QueueError>> + Send;

    /// Keeps the delivery with `receipt` hidden for `visibility` from now.
    fn extend(
        &self,
        receipt: &str,
        visibility: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}
