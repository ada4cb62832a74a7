//! The counters every stage reports, in every mode. The boxes count what they do in their own
//! code (fetch the notices it reads, skips and drops; decode the files and bytes; write the
//! chunks; commit the commits and roll events; the bridge what it moves from the publisher's
//! queue onto the feed), so embedded mode's summary and a stage
//! process's `/metrics` come from the same increments. What happens to messages on the bus
//! (acked, retried, dead-lettered) is the bus's to count.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// One counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    /// Feed notices read (a message may hold several).
    Notices,
    /// Feed events that announce no file (S3 test events, removals): dropped.
    Skipped,
    /// Notices for files no dataset here takes: dropped.
    Unmatched,
    /// Files decoded and handed on whole.
    Files,
    /// Files read on the fast path (chunks inflated outside HDF5's lock).
    DirectReads,
    /// Files older than the window: skipped.
    BelowWindow,
    /// Decoded bytes handed to the writers.
    DecodedBytes,
    /// Chunk objects stored.
    Chunks,
    /// Encoded bytes stored.
    StoredBytes,
    /// Commits published.
    Commits,
    /// Roll events folded into the window.
    RollEvents,
    /// Messages the bridge received from the publisher's queue.
    QueueReceived,
    /// Messages the bridge published on the feed (stored by JetStream).
    FeedPublished,
    /// Messages the bridge published that the feed had already stored (same deduplication id).
    FeedDuplicates,
    /// Queue messages no form parses, sent to the dead-letter stream by the bridge.
    QueueDeadLettered,
    /// Messages the bridge deleted from the queue (after the feed stored them).
    QueueDeleted,
    /// Failed requests to the queue (throttling, server errors, network).
    QueueErrors,
}

impl Counter {
    /// Every counter, in the order they are reported.
    pub const ALL: [Self; 17] = [
        Self::Notices,
        Self::Skipped,
        Self::Unmatched,
        Self::Files,
        Self::DirectReads,
        Self::BelowWindow,
        Self::DecodedBytes,
        Self::Chunks,
        Self::StoredBytes,
        Self::Commits,
        Self::RollEvents,
        Self::QueueReceived,
        Self::FeedPublished,
        Self::FeedDuplicates,
        Self::QueueDeadLettered,
        Self::QueueDeleted,
        Self::QueueErrors,
    ];

    /// The Prometheus name (`roller_<name>_total`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Notices => "notices",
            Self::Skipped => "skipped_events",
            Self::Unmatched => "unmatched_notices",
            Self::Files => "files",
            Self::DirectReads => "direct_reads",
            Self::BelowWindow => "files_below_window",
            Self::DecodedBytes => "decoded_bytes",
            Self::Chunks => "chunks",
            Self::StoredBytes => "stored_bytes",
            Self::Commits => "commits",
            Self::RollEvents => "roll_events",
            Self::QueueReceived => "queue_received",
            Self::FeedPublished => "feed_published",
            Self::FeedDuplicates => "feed_duplicates",
            Self::QueueDeadLettered => "queue_dead_lettered",
            Self::QueueDeleted => "queue_deleted",
            Self::QueueErrors => "queue_errors",
        }
    }

    /// What it counts, for Prometheus' `# HELP`.
    pub fn help(self) -> &'static str {
        match self {
            Self::Notices => "Feed notices read.",
            Self::Skipped => "Feed events that announce no file (test events, removals), dropped.",
            Self::Unmatched => "Notices for files no dataset here takes, dropped.",
            Self::Files => "Files decoded and handed to the writers.",
            Self::DirectReads => "Files read on the fast path (inflated outside HDF5's lock).",
            Self::BelowWindow => "Files older than the window, skipped.",
            Self::DecodedBytes => "Decoded bytes handed to the writers.",
            Self::Chunks => "Chunk objects stored.",
            Self::StoredBytes => "Encoded bytes stored.",
            Self::Commits => "Commits published.",
            Self::RollEvents => "Roll events folded into the window.",
            Self::QueueReceived => "Messages received from the publisher's queue.",
            Self::FeedPublished => "Queue messages stored on the feed.",
            Self::FeedDuplicates => "Queue messages the feed had already stored (deduplicated).",
            Self::QueueDeadLettered => "Queue messages no form parses, dead-lettered.",
            Self::QueueDeleted => "Messages deleted from the queue once the feed stored them.",
            Self::QueueErrors => {
                "Failed requests to the queue (throttling, server errors, network)."
            }
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A process's counters, shared by its stages, and one gauge: the age of the oldest message
/// in the bridge's latest batch from the queue (how far behind the publisher it is).
#[derive(Debug, Default)]
pub struct Metrics {
    counters: [AtomicU64; Counter::ALL.len()],
    oldest_queue_message_seconds: AtomicU64,
}

impl Metrics {
    /// Adds `n` to `counter`.
    pub fn add(&self, counter: Counter, n: u64) {
        self.counters[counter.index()].fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one to `counter`.
    pub fn incr(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// The current value of `counter`.
    pub fn get(&self, counter: Counter) -> u64 {
        self.counters[counter.index()].load(Ordering::Relaxed)
    }

    /// Sets the age of the oldest message in the latest batch taken from the queue.
    pub fn set_oldest_queue_message_age(&self, seconds: u64) {
        self.oldest_queue_message_seconds
            .store(seconds, Ordering::Relaxed);
    }

    /// The age of the oldest message in the latest batch taken from the queue, in seconds.
    pub fn oldest_queue_message_age(&self) -> u64 {
        self.oldest_queue_message_seconds.load(Ordering::Relaxed)
    }

    /// Every counter in Prometheus' text format, each with `labels` (`key="value",...`).
    pub fn prometheus(&self, labels: &str) -> String {
        let mut text = String::new();
        for counter in Counter::ALL {
            let name = counter.name();
            let _ = write!(
                text,
                "# HELP roller_{name}_total {}\n# TYPE roller_{name}_total counter\nroller_{name}_total{{{labels}}} {}\n",
                counter.help(),
                self.get(counter)
            );
        }
        let _ = write!(
            text,
            "# HELP roller_queue_oldest_message_age_seconds Age of the oldest message in the bridge's latest batch from the queue.\n# TYPE roller_queue_oldest_message_age_seconds gauge\nroller_queue_oldest_message_age_seconds{{{labels}}} {}\n",
            self.oldest_queue_message_age()
        );
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_renders_every_counter() {
        let metrics = Metrics::default();
        metrics.incr(Counter::Files);
        metrics.add(Counter::StoredBytes, 42);
        assert_eq!(metrics.get(Counter::Files), 1);
        assert_eq!(metrics.get(Counter::Chunks), 0);
        let text = metrics.prometheus("stage=\"s\"");
        assert!(
            text.contains("roller_files_total{stage=\"s\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("roller_stored_bytes_total{stage=\"s\"} 42\n"));
        metrics.set_oldest_queue_message_age(7);
        assert!(metrics
            .prometheus("stage=\"s\"")
            .contains("roller_queue_oldest_message_age_seconds{stage=\"s\"} 7\n"));
        for (i, counter) in Counter::ALL.into_iter().enumerate() {
            assert_eq!(
                counter.index(),
                i,
                "ALL lists every counter in declaration order"
            );
            assert!(text.contains(&format!("# TYPE roller_{}_total counter", counter.name())));
        }
    }
}
