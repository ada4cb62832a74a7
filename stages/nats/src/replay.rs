//! Re-ingesting notifications: each line of a JSON-lines file is published on one dataset's
//! ingest subject ([`replay`]) or on the feed subject for every dataset ([`replay_feed`], as
//! the bridge does). A line that parses gets a `Nats-Msg-Id` (`{dataset}:{bucket/key}[@etag]` on an
//! ingest subject, the bridge's `feed:{bucket/key}[@etag]` on the feed), so the same
//! notification twice within the dedup window does no work; a line that does not parse is
//! published as is and ends in the dead-letter stream.

use async_nats::jetstream::Context;
use roller_proto::feed;
use roller_proto::{NotificationError, Subjects};
use tokio_util::sync::CancellationToken;

use crate::publish::{publish, Abandoned, Outgoing};

/// What a replay published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Lines published.
    pub published: u64,
    /// Of those, how many JetStream dropped as duplicates.
    pub duplicates: u64,
    /// Of those, how many did not parse (they will be dead-lettered).
    pub unparsed: u64,
}

/// The deduplication id of `message` on `dataset`'s ingest subject: `{dataset}:` and the
/// message's [`feed::message_id`] (its first file, with the ETag when an S3 event gives one, so
/// a file replaced under the same key is taken again); `None` when it announces no file.
pub fn ingest_msg_id(dataset: &str, message: &str) -> Result<Option<String>, NotificationError> {
    Ok(feed::message_id(message)?.map(|id| for_dataset(dataset, &id)))
}

/// The deduplication id on `dataset`'s ingest subject of a message whose
/// [`feed::message_id`] is `message_id`.
pub fn for_dataset(dataset: &str, message_id: &str) -> String {
    format!("{dataset}:{message_id}")
}

/// Publishes every non-blank line on the feed subject, where fetch's router hands each to every
/// dataset that takes a file of it.
pub async fn replay_feed(
    js: &Context,
    subjects: &Subjects,
    lines: impl IntoIterator<Item = String>,
) -> Result<Replayed, Abandoned> {
    publish_lines(js, subjects.feed(), lines, feed::feed_msg_id).await
}

/// Publishes every non-blank line on `dataset`'s ingest subject.
pub async fn replay(
    js: &Context,
    subjects: &Subjects,
    dataset: &str,
    lines: impl IntoIterator<Item = String>,
) -> Result<Replayed, Abandoned> {
    publish_lines(js, subjects.ingest(dataset), lines, |line| {
        ingest_msg_id(dataset, line)
    })
    .await
}

/// Publishes every non-blank line on `subject`, each with the id `msg_id` gives it (none for a
/// line that does not parse, which is counted).
async fn publish_lines(
    js: &Context,
    subject: String,
    lines: impl IntoIterator<Item = String>,
    msg_id: impl Fn(&str) -> Result<Option<String>, NotificationError>,
) -> Result<Replayed, Abandoned> {
    let never = CancellationToken::new();
    let mut done = Replayed::default();
    for line in lines {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut out = Outgoing::new(subject.clone(), line.to_owned(), String::new());
        out.msg_id = msg_id(line).unwrap_or_else(|_| {
            done.unparsed += 1;
            None
        });
        let ack = publish(js, &out, &never).await?;
        done.published += 1;
        done.duplicates += u64::from(ack.duplicate);
    }
    Ok(done)
}
