//! The counters every stage reports, in every mode. The boxes count what they do in their own
//! code (fetch the notices it reads, skips and drops; decode the files and bytes; write the
//! chunks; commit the commits and roll events), so embedded mode's summary and a stage
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
}

impl Counter {
    /// Every counter, in the order they are reported.
    pub const ALL: [Self; 11] = [
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
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A process's counters, shared by its stages.
#[derive(Debug, Default)]
pub struct Metrics([AtomicU64; Counter::ALL.len()]);

impl Metrics {
    /// Adds `n` to `counter`.
    pub fn add(&self, counter: Counter, n: u64) {
        self.0[counter.index()].fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one to `counter`.
    pub fn incr(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// The current value of `counter`.
    pub fn get(&self, counter: Counter) -> u64 {
        self.0[counter.index()].load(Ordering::Relaxed)
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
