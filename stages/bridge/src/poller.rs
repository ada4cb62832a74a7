//! A poller: receives batches from the queue, publishes each message on the feed and deletes
//! from the queue what the feed stored. Several pollers (tasks, processes or hosts) can share a
//! queue: the queue hides a message from the others while one holds it, and the feed's
//! deduplication id drops whatever is delivered twice.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use roller_bus::metrics::{Counter, Metrics};
use roller_proto::feed;
use tokio_util::sync::CancellationToken;

use crate::outlet::{Outlet, OutletError, Published};
use crate::queue::{Queue, QueueMessage};

/// How a poller talks to its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollerConfig {
    /// Messages per receive (SQS allows 1 to 10).
    pub batch: u8,
    /// How long a receive waits for messages (long polling; SQS allows up to 20 s).
    pub wait: Duration,
    /// How long a received message stays hidden from other receivers; a publish slower than
    /// half of it extends it.
    pub visibility: Duration,
}

impl Default for PollerConfig {
    fn default() -> Self {
        Self {
            batch: 10,
            wait: Duration::from_secs(20),
            visibility: Duration::from_secs(60),
        }
    }
}

/// The deduplication id of a queue message on the feed: `feed:` and the file it announces
/// (`bucket/key`, with the ETag when the S3 event gives one), or `queue:` and the queue's
/// message id when it announces no file. An error (the reason) when no form of the feed parses
/// the body: the message is poison.
pub fn feed_id(message: &QueueMessage) -> Result<String, String> {
    match feed::feed_msg_id(&message.body) {
        Ok(Some(id)) => Ok(id),
        Ok(None) => Ok(format!("queue:{}", message.id)),
        Err(e) => Err(e.to_string()),
    }
}

/// Waits between failed rounds: doubling from 200 ms up to 30 s, reset by a good round.
#[derive(Debug)]
struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(30);

    fn new() -> Self {
        Self(Self::FIRST)
    }

    fn reset(&mut self) {
        self.0 = Self::FIRST;
    }

    /// Sleeps for the current delay (or until `stop`), then doubles it.
    async fn wait(&mut self, stop: &CancellationToken) {
        tokio::select! {
            () = tokio::time::sleep(self.0) => {}
            () = stop.cancelled() => {}
        }
        self.0 = (self.0 * 2).min(Self::MAX);
    }
}

/// Deletes from the queue the messages the feed stored. If this fails, the messages come back
/// after the visibility timeout and the feed drops them as duplicates.
async fn delete<Q: Queue>(queue: Arc<Q>, receipts: Vec<String>, metrics: Arc<Metrics>) {
    match queue.delete(receipts).await {
        Ok(deleted) => metrics.add(Counter::QueueDeleted, deleted as u64),
        Err(e) => {
            metrics.incr(Counter::QueueErrors);
            tracing::warn!(error = %e, "deleting stored messages from the queue failed; they will be delivered again and deduplicated");
        }
    }
}

/// Moves messages from one queue onto the feed.
#[derive(Debug)]
pub struct Poller<Q, O> {
    queue: Arc<Q>,
    outlet: Arc<O>,
    config: PollerConfig,
    metrics: Arc<Metrics>,
}

impl<Q: Queue, O: Outlet> Poller<Q, O> {
    /// A poller of `queue` into `outlet`, counting into `metrics`.
    pub fn new(queue: Arc<Q>, outlet: Arc<O>, config: PollerConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            queue,
            outlet,
            config,
            metrics,
        }
    }

    /// Polls until `stop` is cancelled; a batch being moved when it is cancelled is finished
    /// (published and deleted) first. A batch's delete runs while the next batch is received, so
    /// one poller keeps the queue busy.
    pub async fn run(&self, stop: &CancellationToken) {
        let mut backoff = Backoff::new();
        let mut deletes = tokio::task::JoinSet::new();
        while !stop.is_cancelled() {
            while deletes.try_join_next().is_some() {}
            let received = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                received = self.queue.receive(self.config.batch, self.config.wait, self.config.visibility) => received,
            };
            let messages = match received {
                Ok(messages) => messages,
                Err(e) => {
                    self.metrics.incr(Counter::QueueErrors);
                    tracing::warn!(error = %e, "receiving from the queue failed; backing off");
                    backoff.wait(stop).await;
                    continue;
                }
            };
            let (stored, all) = self.publish_batch(&messages).await;
            if !stored.is_empty() {
                deletes.spawn(delete(self.queue.clone(), stored, self.metrics.clone()));
            }
            if all {
                backoff.reset();
            } else {
                backoff.wait(stop).await;
            }
        }
        while deletes.join_next().await.is_some() {}
    }

    /// Publishes a batch (dead-lettering poison messages); returns the receipts of the messages
    /// the feed stored, to delete from the queue, and whether that was all of them.
    pub async fn publish_batch(&self, messages: &[QueueMessage]) -> (Vec<String>, bool) {
        if messages.is_empty() {
            return (Vec::new(), true);
        }
        self.metrics
            .add(Counter::QueueReceived, messages.len() as u64);
        if let Some(sent) = messages.iter().filter_map(|m| m.sent_at_ms).min() {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            self.metrics
                .set_oldest_queue_message_age(now.saturating_sub(sent) / 1000);
        }
        let outcomes = self
            .keep_hidden(
                messages,
                futures::future::join_all(messages.iter().map(|m| self.forward(m))),
            )
            .await;
        let stored: Vec<String> = messages
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| outcome.is_ok())
            .map(|(m, _)| m.receipt.clone())
            .collect();
        let failed = messages.len() - stored.len();
        if failed > 0 {
            tracing::warn!(
                failed,
                "the feed did not store every message; they stay in the queue and come back after the visibility timeout"
            );
        }
        (stored, failed == 0)
    }

    /// Publishes one message (or dead-letters it when no form parses it).
    async fn forward(&self, message: &QueueMessage) -> Result<Published, OutletError> {
        match feed_id(message) {
            Ok(id) => {
                let published = self.outlet.publish(&message.body, &id).await;
                match &published {
                    Ok(Published::Stored) => self.metrics.incr(Counter::FeedPublished),
                    Ok(Published::Duplicate) => self.metrics.incr(Counter::FeedDuplicates),
                    Err(e) => {
                        tracing::warn!(message = %message.id, error = %e, "publishing on the feed failed")
                    }
                }
                published
            }
            Err(reason) => {
                tracing::warn!(
                    message = %message.id,
                    queue = %self.queue.url(),
                    reason = ?reason,
                    "a queue message is no notice of the feed; dead-lettering it, then removing it from the queue"
                );
                let stored = self
                    .outlet
                    .dead_letter(message, self.queue.url(), &reason)
                    .await;
                if matches!(stored, Ok(Published::Stored)) {
                    self.metrics.incr(Counter::QueueDeadLettered);
                }
                stored
            }
        }
    }

    /// Runs `work` on a batch, extending every message's visibility each time half of it has
    /// passed, so a slow publish (or a batch waiting on its slowest publish) does not hand
    /// messages to another poller.
    async fn keep_hidden<F: Future>(&self, messages: &[QueueMessage], work: F) -> F::Output {
        let every = self.config.visibility / 2;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = tick.tick() => {
                    for message in messages {
                        match self.queue.extend(&message.receipt, self.config.visibility).await {
                            Ok(()) => tracing::info!(message = %message.id, "publish is slow; message kept hidden longer"),
                            Err(e) => {
                                self.metrics.incr(Counter::QueueErrors);
                                tracing::warn!(message = %message.id, error = %e, "extending the message's visibility failed");
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &str) -> QueueMessage {
        QueueMessage {
            id: "m-1".into(),
            body: body.into(),
            receipt: "r".into(),
            receive_count: Some(1),
            sent_at_ms: None,
        }
    }

    #[test]
    fn the_feed_id_names_the_file_else_the_queue_message() {
        let event = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"uk-deterministic-2km/20250614T0000Z/20250614T0100Z-PT0001H00M-rainfall_rate.nc","eTag":"e1"}}}]}"#;
        assert_eq!(
            feed_id(&message(event)).as_deref(),
            Ok("feed:b/uk-deterministic-2km/20250614T0000Z/20250614T0100Z-PT0001H00M-rainfall_rate.nc@e1")
        );
        let test = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#;
        assert_eq!(feed_id(&message(test)).as_deref(), Ok("queue:m-1"));
        let poison = feed_id(&message("hello")).expect_err("poison");
        assert!(poison.contains("JSON"), "{poison}");
    }
}
